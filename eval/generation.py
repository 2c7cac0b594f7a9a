"""Batched greedy generation with a KV cache; each sequence stops at EOS.

Two length conventions (METRICS.md §1.4): ``total_length`` is TOFU's ``generate(max_length=200)``,
where the budget counts the batch's left-padded prompt (so new tokens = max_length - padded prompt
length); ``new_tokens`` is open-unlearning's ``max_new_tokens``. Prompts are grouped by length so
batches carry little padding. Output is decoded with ``skip_special_tokens=True``; optional stop
strings cut the decoded text at their first occurrence (MUSE's KnowMem post-processing).

Under several processes (``shard``, or inside :func:`unlearn.distributed.sharded_eval`) each
process generates every W-th batch of the length-sorted prompts (the very batches of a 1-process
run, so ``total_length`` budgets and texts are the same) and the texts are gathered back in input
order; every process returns all of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from unlearn.distributed import current_shard

if TYPE_CHECKING:  # annotations only: transformers takes seconds to import
    from transformers import PreTrainedTokenizerBase

MODES = ("total_length", "new_tokens")


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """Text up to the first occurrence of any stop string."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def greedy_generate(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str | Sequence[int]],
    *,
    batch_size: int,
    mode: str = "new_tokens",
    max_new_tokens: int = 200,
    max_length: int = 200,
    stop_strings: Sequence[str] = (),
    shard: Any = None,
    clean_up: bool | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts`` (texts, tokenized with special tokens, or token ids),
    in order. ``clean_up``: the decoder's ``clean_up_tokenization_spaces`` (None: the
    tokenizer's own; open-unlearning passes True). ``shard``: a :class:`unlearn.distributed.Shard`
    or an Accelerator to split the work across processes (default: the ambient
    :func:`~unlearn.distributed.sharded_eval`)."""
    if mode not in MODES:
        raise ValueError(f"unknown generation mode {mode!r}; valid: {', '.join(MODES)}")
    encoded = [list(p) if not isinstance(p, str) else tokenizer(p, add_special_tokens=True)["input_ids"]
               for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    kwargs = dict(mode=mode, max_new_tokens=max_new_tokens, max_length=max_length, stop_strings=stop_strings,
                  clean_up=clean_up)
    part = current_shard(shard)
    if part is None or not batches:
        return _assemble(len(prompts), [_generate(model, tokenizer, encoded, batches, synced=False, **kwargs)])
    # whole batches per process: a prompt is padded exactly as in a 1-process run, so its budget
    # (``total_length``) and its text are the same
    mine, real = part.take(batches)  # FSDP: as many generate() calls everywhere (extras dropped)
    done = _generate(model, tokenizer, encoded, mine, synced=part.synced, **kwargs)
    return _assemble(len(prompts), part.gather(done[:real]))


def _assemble(n: int, pieces) -> list[str]:
    out: list[str] = [""] * n
    for piece in pieces:
        for idx, texts in piece:
            for j, t in zip(idx, texts):
                out[j] = t
    return out


@torch.inference_mode()
def _generate(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    encoded: Sequence[Sequence[int]],
    batches: Sequence[Sequence[int]],
    *,
    mode: str,
    max_new_tokens: int,
    max_length: int,
    stop_strings: Sequence[str],
    synced: bool,
    clean_up: bool | None = None,
) -> list[tuple[list[int], list[str]]]:
    """(prompt indices, texts) of each batch of indices into ``encoded``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[tuple[list[int], list[str]]] = []
    pad = tokenizer.pad_token_id
    extra = {"synced_gpus": True} if synced else {}
    for idx in batches:
        idx = list(idx)
        width = max(len(encoded[j]) for j in idx)
        budget = max_new_tokens if mode == "new_tokens" else max_length - width
        if budget <= 0 and not synced:
            out.append((idx, [""] * len(idx)))  # the prompt fills max_length: nothing to generate
            continue
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        for row, j in enumerate(idx):  # left padding, as generation needs
            ids[row, width - len(encoded[j]) :] = torch.tensor(encoded[j])
            att[row, width - len(encoded[j]) :] = 1
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=att.to(device), max_new_tokens=max(budget, 1),
            do_sample=False, use_cache=True, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **extra,
        )
        if budget <= 0:  # synced: one token generated only to stay in step with the other processes
            out.append((idx, [""] * len(idx)))
            continue
        texts = tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True,
                                       **({} if clean_up is None else {"clean_up_tokenization_spaces": clean_up}))
        out.append((idx, [cut_at_stops(t, stop_strings) if stop_strings else t for t in texts]))
    model.train(was_training)
    return out
