"""The two opt-in membership attacks that the single no-grad pass of :mod:`eval.mia` cannot give:
``gradnorm`` needs a gradient per text, ``reference`` a second model. Enabled by
``eval.mia.extra_attacks`` (:class:`eval.mia.MiaSettings`); off, nothing here runs.

* **gradnorm** (open-unlearning ``mia/gradnorm.py`` L19-38, after Wang et al. 2024,
  arXiv:2402.17012): the loss of one text is its mean NLL over the scored tokens but the last (OU's
  ``tokenwise_logprobs``, ``utils.py`` L129-131, drops it to ignore an EOS prediction; a MUSE text
  has no EOS, so there it is the last word piece -- MUSE's own code has no gradnorm, so OU's rule is
  the only reference and holds under either ``eval.compat``), and the score is the **mean over
  parameter tensors of each tensor's p-norm** of that loss's gradient (p = 2 by default), not one
  global norm. Loss-like, as OU returns it (its docstring says "negative"; its code returns the norm
  itself): a memorised text sits near a minimum, so members have the *smaller* norms.
  The tensors are **every floating-point parameter** of the model, whatever ``requires_grad`` says:
  OU scores a checkpoint it re-loads, where all of them require grad, so a model that trained only
  some (RMU's layers) is scored on the same tensors as the target and retain models. LoRA: the base
  weights, not the adapters -- the merged checkpoint's tensors (OU evaluates a saved model; with
  W' = W + s B A linear in W, the gradient w.r.t. W is the one w.r.t. the merged W').
  Cost: a forward *and* a backward pass per text, and with ``vmap`` memory of about
  ``gradnorm_batch_size x`` the parameters for the per-text gradients. Measured on one
  CPU thread: the debug world's whole TOFU eval of a model 0.10 s -> 0.19 s (vmap) / 0.25 s (loop);
  32 texts of ~60 tokens on a 1.2M-parameter Llama: no-grad pass 0.6 s, gradnorm 0.8 s (vmap) /
  0.95 s (loop). Every trajectory evaluation pays it too; on a 7B model plan memory, or use ``loop``.
* **reference** (OU ``mia/reference.py`` L14-25): the text's per-token loss under the evaluated
  model minus that under a reference model (OU ``evaluate_probability``: every scored token). The
  reference model's losses are the same for every evaluation of a run (target, retain, each
  trajectory step, the unlearned model), so they are computed once per (reference model, texts)
  and kept in memory (:func:`reference_losses`).

Departures from OU, deliberate: the gradient is taken in eval mode (OU switches to ``train()``,
which makes any dropout random; the Llama family has none) and with ``torch.autograd.grad`` /
``torch.func`` (OU calls ``zero_grad`` + ``backward``, clearing gradients a training loop holds).
"""
from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eval.likelihood import map_batches, score
from eval.mia.attacks import MiaSettings
from unlearn.data import Feature, collate

logger = logging.getLogger(__name__)

STAGE_MODELS = ("target", "retain")  # Prepared.load's names; any other stage with a model folder (base) loads by path
_REFERENCE_CACHE: "OrderedDict[str, np.ndarray]" = OrderedDict()
_REFERENCE_CACHE_SIZE = 8  # (reference model, texts) pairs kept: TOFU + MUSE worlds of a sweep process


def extra_scores(model: torch.nn.Module, prepared, features: Sequence[Feature], target_loss: np.ndarray,
                 settings: MiaSettings, batch_size: int) -> dict[str, np.ndarray]:
    """Per-feature scores of each enabled extra attack (none when none is enabled).

    ``target_loss``: the evaluated model's per-token loss of each feature, from the evaluator's own
    pass (so ``reference`` costs the evaluated model nothing more)."""
    out: dict[str, np.ndarray] = {}
    if "gradnorm" in settings.extra_attacks:
        t = time.perf_counter()
        out["gradnorm"] = gradnorm_scores(model, features, p=settings.gradnorm_p,
                                          batch_size=settings.gradnorm_batch_size, per_sample=settings.gradnorm_per_sample)
        logger.info("MIA gradnorm: %d texts in %.1f s (%s)", len(features), time.perf_counter() - t,
                    settings.gradnorm_per_sample)
    if "reference" in settings.extra_attacks:
        ref = reference_losses(prepared, settings.reference_model, features, batch_size)
        out["reference"] = np.asarray(target_loss, dtype=np.float64) - ref
    return out


# ---------------------------------------------------------------------------------------- gradnorm
def gradnorm_scores(model: torch.nn.Module, features: Sequence[Feature], *, p: float = 2.0, batch_size: int = 4,
                    per_sample: str = "vmap", shard: Any = None) -> np.ndarray:
    """Per feature: the mean over parameter tensors of ``||d loss / d theta||_p`` (module docstring).

    ``per_sample="vmap"`` takes each batch's per-text gradients at once (``torch.func``: ``vmap``
    of ``grad`` over ``functional_call``); a model that ``vmap`` cannot trace (data-dependent
    control flow, ``.item()``, fused kernels without a batching rule, FSDP) falls back, logged, to
    ``"loop"``: one ``torch.autograd.grad`` per text. The parameters are :func:`_scored_parameters`
    (every floating-point one, LoRA's adapters aside); a parameter the forward never uses has no
    gradient and is left out (OU's ``param.grad is not None``). ``shard`` as in
    :func:`eval.likelihood.score`."""
    n = len(features)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    pieces = map_batches(features, batch_size, shard,
                         lambda batches: _gradnorms(model, features, batches, p, per_sample))
    for piece in pieces:
        for idx, norms in piece:
            out[idx] = norms
    return out


def _gradnorms(model, features, batches, p, per_sample) -> list[tuple[list[int], np.ndarray]]:
    was_training = model.training
    model.eval()
    names = _differentiated(model, features[batches[0][0]]) if batches else []
    out = []
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for idx in batches:
                idx = list(idx)
                if per_sample == "vmap":
                    try:
                        out.append((idx, _vmap_norms(model, names, [features[j] for j in idx], p)))
                        continue
                    except Exception as e:  # noqa: BLE001 -- whatever vmap cannot trace: the loop can
                        logger.warning("MIA gradnorm: vmap failed on %s (%s: %s); one backward pass per text "
                                       "instead", type(model).__name__, type(e).__name__, str(e).split("\n")[0][:200])
                        per_sample = "loop"
                out.append((idx, np.array([_loop_norm(model, names, features[j], p) for j in idx])))
    finally:
        model.train(was_training)
    return out


def sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One text's mean NLL over its scored tokens but the last (``logits`` ``(T, V)``, ``labels``
    ``(T,)``, -100 unscored); NaN when none is left (as OU). No data-dependent control flow, so
    ``vmap`` traces it."""
    logp = F.log_softmax(_at_least_float32(logits[:-1]), dim=-1)
    target = labels[1:]
    mask = target != -100
    pos = torch.arange(mask.shape[0], device=mask.device)
    mask = mask & (pos != (pos * mask).argmax())  # the last scored position: argmax of position x mask
    tok = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    m = mask.to(tok.dtype)
    return -(tok * m).sum() / m.sum()


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 computed in float32 (as the no-grad pass); a float64 model stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _scored_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """Every floating-point parameter, tied weights once (``named_parameters`` deduplicates), but a
    peft model's adapter tensors: its base weights stand for the merged checkpoint (module docstring)."""
    adapters = _adapter_parameters(model)
    return [(n, q) for n, q in model.named_parameters() if q.is_floating_point() and id(q) not in adapters]


def _adapter_parameters(model) -> set[int]:
    """ids of the tensors of peft's tuner layers' adapters (LoRA's A and B); none without peft."""
    if not any(type(m).__module__.startswith("peft.") for m in model.modules()):
        return set()
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {id(q) for m in model.modules() if isinstance(m, BaseTunerLayer)
            for name in m.adapter_layer_names for q in getattr(m, name).parameters()}


@contextmanager
def _requiring_grad(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Frozen parameters require grad for the duration (restored after)."""
    before = [q.requires_grad for q in params]
    for q in params:
        q.requires_grad_(True)
    try:
        yield
    finally:
        for q, r in zip(params, before):
            q.requires_grad_(r)


def _grads(model, names: Sequence[str], feature: Feature, allow_unused: bool = False):
    params = dict(_scored_parameters(model))
    chosen = [params[n] for n in names]
    with torch.inference_mode(False), torch.enable_grad(), _requiring_grad(chosen):
        device = chosen[0].device
        batch = {k: v.to(device) for k, v in collate([feature], 0).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0]
        loss = sample_loss(logits, batch["labels"][0])
        return torch.autograd.grad(loss, chosen, allow_unused=allow_unused)


def _differentiated(model, feature: Feature) -> list[str]:
    """The parameters the loss has a gradient for (one probe backward pass)."""
    names = [n for n, _ in _scored_parameters(model)]
    grads = _grads(model, names, feature, allow_unused=True)
    return [n for n, g in zip(names, grads) if g is not None]


def _mean_norm(grads: Sequence[torch.Tensor], p: float) -> torch.Tensor:
    """OU's ``stack([g.norm(p) for g in grads]).mean()``: each tensor's norm over all its entries."""
    return torch.stack([torch.linalg.vector_norm(_at_least_float32(g).flatten(), ord=p) for g in grads]).mean()


def _loop_norm(model, names: Sequence[str], feature: Feature, p: float) -> float:
    """One text, unpadded, with its attention mask (OU's batch of 1): the reference computation."""
    return float(_mean_norm(_grads(model, names, feature), p))


def _vmap_norms(model, names: Sequence[str], features: Sequence[Feature], p: float) -> np.ndarray:
    """Per-text gradients of a right-padded batch in one ``vmap(grad)``. No attention mask is passed:
    under causal attention a text's logits never see the padding after it, and a mask sends HF
    models into data-dependent checks that ``vmap`` rejects."""
    from torch.func import functional_call, grad, vmap

    named = dict(model.named_parameters())
    params = {n: named[n].detach() for n in names}
    device = next(iter(params.values())).device
    batch = collate(features, 0)
    ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)

    def norm_of(theta, x, y):
        def loss(th):
            logits = functional_call(model, th, args=(), kwargs={"input_ids": x.unsqueeze(0)}).logits[0]
            return sample_loss(logits, y)
        g = grad(loss)(theta)
        return _mean_norm([g[n] for n in names], p)

    with warnings.catch_warnings():  # "no batching rule for ... (slower fallback)": still exact
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        norms = vmap(norm_of, in_dims=(None, 0, 0))(params, ids, labels)
    return norms.double().cpu().numpy()


# ---------------------------------------------------------------------------------------- reference
def reference_losses(prepared, name: str, features: Sequence[Feature], batch_size: int) -> np.ndarray:
    """The reference model's per-token loss of each feature, computed once per (model, texts) in
    this process and then served from memory: a trajectory's every evaluation reuses it."""
    ident = reference_identity(prepared, name)
    h = hashlib.sha256(repr(ident).encode())
    for f in features:
        h.update(np.asarray(f["input_ids"], dtype=np.int64).tobytes() + b"|")
        h.update(np.asarray(f["labels"], dtype=np.int64).tobytes() + b"#")
    key = h.hexdigest()
    if key in _REFERENCE_CACHE:
        _REFERENCE_CACHE.move_to_end(key)
        return _REFERENCE_CACHE[key]
    t = time.perf_counter()
    model = load_reference(prepared, name)
    losses = score(model, features, batch_size, prepared.tokenizer.pad_token_id).per_token
    del model
    logger.info("MIA reference: %s scored %d texts in %.1f s (cached for this run)", name, len(features),
                time.perf_counter() - t)
    _REFERENCE_CACHE[key] = losses
    while len(_REFERENCE_CACHE) > _REFERENCE_CACHE_SIZE:
        _REFERENCE_CACHE.popitem(last=False)
    return losses


def clear_reference_cache() -> None:
    _REFERENCE_CACHE.clear()


def _stage_path(prepared, name: str):
    stage = getattr(prepared, "stages", {}).get(name)
    return stage.path if stage is not None and (stage.path / "config.json").exists() else None


def reference_identity(prepared, name: str) -> Mapping[str, Any]:
    """What the reference model's losses depend on: its stage key, or its path and files."""
    from unlearn.stages import fingerprint

    if name in STAGE_MODELS:
        return prepared.model_identity(name)
    if _stage_path(prepared, name) is not None:
        return {"stage": prepared.stages[name].key, "dtype": prepared.dtype}
    return {"path": name, "files": fingerprint(name), "dtype": prepared.dtype}


def load_reference(prepared, name: str) -> torch.nn.Module:
    """``target`` / ``retain`` as the pipeline loads them, another model stage (the embedded
    world's ``base``) from its folder, else a checkpoint path or Hub id in the run's dtype. It must
    share the evaluated model's tokenizer (the features are scored as they are)."""
    from unlearn.models import frozen, load_causal_lm

    if name in STAGE_MODELS:
        return frozen(prepared.load(name))
    path = _stage_path(prepared, name) or name
    return frozen(load_causal_lm(path, prepared.dtype, prepared.attn_implementation))
