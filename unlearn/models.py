"""Models: tiny Llamas built from a config, or any causal-LM checkpoint by path / Hub id."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

if TYPE_CHECKING:  # transformers is imported where a model or tokenizer is made: seconds a config error skips
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}") from None


def build_tiny_llama(arch: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(arch["hidden_size"]),
        intermediate_size=int(arch["intermediate_size"]),
        num_hidden_layers=int(arch["num_hidden_layers"]),
        num_attention_heads=int(arch["num_attention_heads"]),
        num_key_value_heads=int(arch.get("num_key_value_heads", arch["num_attention_heads"])),
        max_position_embeddings=int(arch["max_position_embeddings"]),
        tie_word_embeddings=bool(arch.get("tie_word_embeddings", True)),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_causal_lm(path: str | Path, dtype: str = "float32", attn_implementation: str | None = None,
                   revision: str | None = None) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if revision:  # a Hub branch, tag or commit (a local folder ignores it)
        kwargs["revision"] = revision
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load a causal LM from {path!r} (a local folder with config.json and weights, "
            f"or a Hub id reachable from this machine): {e}"
        ) from e


def load_tokenizer(path: str | Path, revision: str | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), **({"revision": revision} if revision else {}))
    if tok.pad_token is None:  # Llama-2 / phi ship no pad token; TOFU pads with EOS
        tok.pad_token = tok.eos_token
    return tok


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    """A reference model: eval mode, no gradients (never a second trainable copy)."""
    model.eval()
    model.requires_grad_(False)
    return model


def apply_lora(model: torch.nn.Module, cfg: Mapping[str, Any]) -> torch.nn.Module:
    """Wrap with LoRA adapters (peft): only the adapters train, so every gradient norm and
    direction (NGDiff's included) is over the adapter parameters; ``save_pretrained`` then saves
    the adapter alone, loadable with :func:`load_lora`."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=int(cfg["r"]), lora_alpha=float(cfg["alpha"]), lora_dropout=float(cfg.get("dropout", 0.0)),
        target_modules=list(cfg["target_modules"]), bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def load_lora(base_path: str | Path, adapter_path: str | Path, dtype: str = "float32",
              attn_implementation: str | None = None, revision: str | None = None) -> torch.nn.Module:
    """A saved adapter on top of its base model (the target it was trained from), unmerged: the
    model a run evaluates after training its adapters. ``revision``: the base's (a Hub id)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_causal_lm(base_path, dtype, attn_implementation, revision), str(adapter_path))


def configure_training(model: torch.nn.Module, cfg: Mapping[str, Any]) -> torch.nn.Module:
    """The model options of config: LoRA, gradient checkpointing (with the input-grad hook LoRA needs)."""
    if cfg.get("lora"):
        model = apply_lora(model, cfg["lora"])
    if cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.get("lora"):  # frozen embeddings: let checkpointed blocks see inputs that need grad
            model.enable_input_require_grads()
    return model
