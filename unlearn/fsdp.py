"""FSDP for any causal LM: the unit of sharding is the model's own decoder block.

Which class is "the decoder block" comes from the model, not from a hard-coded name: transformers
declares it in ``_no_split_modules`` (``{"LlamaDecoderLayer"}``, ``{"PhiDecoderLayer"}``,
``{"Qwen2DecoderLayer"}``, ...). Two paths use it:

* :func:`configure_accelerate_fsdp` -- the ``accelerate launch --config_file conf/accelerate/fsdp.yaml``
  path: puts those names into the FSDP plugin before ``accelerator.prepare(model, optimizer)``;
* :func:`shard_model` -- FSDP2 (``fully_shard``) directly, the grouping accelerate 1.15's
  ``fsdp2_prepare_model`` builds (it also runs on CPU over gloo, where accelerate refuses FSDP).

Sharded parameters (and their ``.grad``) are DTensors sharded on dim 0; the task-gradient inner
products sum each process's shard and all-reduce (:class:`unlearn.gradients.TaskGradients`).
"""
from __future__ import annotations

import functools
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (``PeftModel.get_base_model()``, or a peft tuner
    such as ``LoraModel`` passed directly: its ``.model``); any other model itself."""
    get = getattr(model, "get_base_model", None)
    if callable(get):
        model = get()
    inner = getattr(model, "model", None)
    if type(model).__module__.startswith("peft.") and isinstance(inner, nn.Module):
        model = inner
    return model


def layer_classes(model: nn.Module) -> list[type[nn.Module]]:
    """The decoder-block classes to wrap: ``_no_split_modules`` of the (peft-unwrapped) model,
    resolved to the classes of ``model.modules()``, in order of first appearance. Names the model
    declares but does not instantiate are skipped; ValueError when none is declared or found."""
    base = base_model(model)
    names = set(getattr(base, "_no_split_modules", None) or getattr(model, "_no_split_modules", None) or ())
    if not names:
        raise ValueError(f"{type(base).__name__} declares no `_no_split_modules`, so FSDP does not know its "
                         "decoder-block class: set `model._no_split_modules = ['<BlockClass>']` (or accelerate's "
                         "fsdp_transformer_layer_cls_to_wrap)")
    found: dict[str, type[nn.Module]] = {}
    for m in model.modules():
        if type(m).__name__ in names:
            found.setdefault(type(m).__name__, type(m))
    if not found:
        raise ValueError(f"{type(base).__name__}'s `_no_split_modules` {sorted(names)} name no module of the model")
    return list(found.values())


def _final_norm(model: nn.Module) -> nn.Module | None:
    """The last ``*Norm*`` among the direct children of the base model (``model.norm``,
    ``model.final_layernorm``, ``transformer.ln_f``), like accelerate's ``_find_final_norm``."""
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else model
    if not isinstance(inner, nn.Module):
        return None
    norms = [m for m in inner.children() if "Norm" in type(m).__name__]
    return norms[-1] if norms else None


def shard_model(model: nn.Module, mesh=None, mp_policy=None, reshard_after_forward: bool = True) -> nn.Module:
    """FSDP2 in place, grouped as accelerate 1.15's ``fsdp2_prepare_model`` groups (returns ``model``):

    1. every decoder block (:func:`layer_classes`), bottom-up;
    2. the input embedding, unless tied to the output embedding;
    3. one "tail" group ``[final norm, output embedding]`` -- with the input embedding too when the
       two are tied (per accelerate, torch >= 2.13 refuses a parameter in two groups) -- kept unsharded
       after forward (``reshard_after_forward=False``: backward starts there);
    4. the root (whatever is left: a norm not found in step 3, ...), with torch's default
       ``reshard_after_forward=None`` (False for the root).

    ``mesh``: a 1-D DeviceMesh (None: every process of the default group, on CUDA if available,
    else CPU -- gloo works). ``mp_policy``: a ``MixedPrecisionPolicy`` (None: full precision).
    """
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    kw = {"mesh": mesh, "mp_policy": mp_policy or MixedPrecisionPolicy()}
    classes = tuple(layer_classes(model))
    for module in reversed(list(model.modules())):  # descendants before their ancestors
        if isinstance(module, classes) and not isinstance(module, FSDPModule):
            fully_shard(module, reshard_after_forward=reshard_after_forward, **kw)

    base = base_model(model)
    embed = getattr(base, "get_input_embeddings", lambda: None)()
    head = getattr(base, "get_output_embeddings", lambda: None)()
    weight = getattr(embed, "weight", None)
    tied = weight is not None and weight is getattr(head, "weight", None)
    if embed is not None and not tied and not isinstance(embed, FSDPModule):
        fully_shard(embed, reshard_after_forward=reshard_after_forward, **kw)
    tail = [m for m in ((_final_norm(base), embed, head) if tied else (_final_norm(base), head))
            if m is not None and not isinstance(m, FSDPModule)]
    if tail:
        fully_shard(tail, reshard_after_forward=False, **kw)
    if not isinstance(model, FSDPModule):
        fully_shard(model, **kw)
    return model


def configure_accelerate_fsdp(accelerator, model: nn.Module, mp_policy=None) -> list[str] | None:
    """Before ``accelerator.prepare(model, optimizer)``: make accelerate's FSDP wrap ``model``'s
    decoder blocks, with the run's precision policy (``mp_policy``, from
    :meth:`unlearn.precision.Precision.fsdp_policy`; None: full precision). Returns the class names
    set, or None (not FSDP, or a non-transformer wrap policy chosen explicitly -- size-based or
    NO_WRAP are left as configured; the precision policy is set either way).

    Sets ``accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap`` (a list of class names)
    and resets ``auto_wrap_policy`` to the bare ``transformer_auto_wrap_policy``. accelerate 1.15
    resolves both inside ``prepare``: ``set_auto_wrap_policy(model)`` binds the classes into a
    ``functools.partial`` (FSDP1 then uses that partial, so a partial left by an earlier prepare
    must be reset, as done here) and FSDP2's ``fsdp2_prepare_auto_wrap_policy`` re-reads the names.
    Unset names (``fsdp_transformer_layer_cls_to_wrap`` absent, env ``FSDP_TRANSFORMER_CLS_TO_WRAP``
    unset) already fall back to the prepared model's ``_no_split_modules`` in accelerate (a
    ``PeftModel`` forwards the attribute to its base model) -- but only at the first prepare (the
    fallback is then stored in the plugin: a later model of another class fails), and raising on any
    declared name the model lacks; this function makes the choice explicit, per model.
    """
    from unlearn.distributed import is_fsdp

    if not is_fsdp(accelerator):
        return None
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = accelerator.state.fsdp_plugin
    plugin.mixed_precision_policy = mp_policy  # accelerate's own is None: the Accelerator runs mixed_precision="no"
    policy = plugin.auto_wrap_policy
    if (policy.func if isinstance(policy, functools.partial) else policy) is not transformer_auto_wrap_policy:
        log.warning("FSDP auto wrap policy is %r, not TRANSFORMER_BASED_WRAP: decoder blocks are not wrapped "
                    "one by one", policy)
        return None
    names = [c.__name__ for c in layer_classes(model)]
    plugin.transformer_cls_names_to_wrap = names
    plugin.auto_wrap_policy = transformer_auto_wrap_policy
    log.info("FSDP wraps each %s", ", ".join(names))
    return names
