"""Teacher-forced scoring: one pass per unique text gives every likelihood-based number.

Per item: the summed NLL and the scored-token count (probability, truth ratio, LOSS attack), and
on request the per-token arrays (exact memorization, extraction strength, Min-k%, Min-k%++):
``logp`` (log-prob of each scored token), ``correct`` (argmax == token), and ``mu`` / ``sigma``
(mean and standard deviation of log p(.) under the model's own next-token distribution, for
Min-k%++). Items are scored in length-sorted batches (little padding) under inference mode.

``share_prefixes``: texts that begin with the same unscored tokens (a TOFU question's answer,
paraphrase and perturbed answers share its prompt) run that prefix once. Up to ``batch_size``
distinct prefixes (sorted by length, left-padded) form a unit: one forward pass over them fills a
KV cache, then the texts' remaining tokens run in batches of ``batch_size`` against it, from the
prompt's last token (whose logits score the first answer token) to the last token but one (whose
logits score nothing). Every number is the plain pass's up to float32 rounding (the attention is
summed in two pieces; ``bench/eval_speed.py`` measures it); on the embedded TOFU world it runs half
the tokens.

Under several processes (``shard``, or inside :func:`unlearn.distributed.sharded_eval`) each
process scores every W-th batch (unit) of the length-sorted items (the very batches of a 1-process
run) and the results are gathered back in input order, so every process returns the full
:class:`Scores`.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Callable, Collection, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from unlearn.data import Feature, collate
from unlearn.distributed import current_shard


@dataclass
class Scores:
    sums: np.ndarray  # summed NLL over scored tokens, per item
    counts: np.ndarray  # number of scored tokens, per item
    logp: list[np.ndarray] = field(default_factory=list)
    correct: list[np.ndarray] = field(default_factory=list)
    mu: list[np.ndarray] = field(default_factory=list)
    sigma: list[np.ndarray] = field(default_factory=list)

    @property
    def per_token(self) -> np.ndarray:
        """TOFU's per-token loss: summed NLL / number of scored tokens."""
        return self.sums / np.maximum(self.counts, 1)


def score(
    model: torch.nn.Module, features: Sequence[Feature], batch_size: int, pad_id: int,
    tokens: bool | Collection[int] = False, *, shard: Any = None, share_prefixes: bool = False,
) -> Scores:
    """Score every feature. ``tokens``: the per-token arrays too, of every feature (True) or of
    the features whose indices it holds (the others get empty arrays). ``share_prefixes``: run
    each shared unscored prefix once (module docstring). ``shard``: a
    :class:`unlearn.distributed.Shard` or an Accelerator to split the batches across processes
    (default: the ambient :func:`~unlearn.distributed.sharded_eval`)."""
    n = len(features)
    out = Scores(np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64))
    if tokens is not False:
        out.logp, out.correct, out.mu, out.sigma = ([np.zeros(0)] * n for _ in range(4))
    if n == 0:
        return out
    want = None if isinstance(tokens, bool) else frozenset(int(i) for i in tokens)
    if share_prefixes:
        units = prefix_units(features, batch_size)
        part = current_shard(shard)
        width = max(map(_forwards, units)) if part is not None and part.synced else 0
        pieces = map_units(units, shard, lambda mine: _score_shared(model, features, mine, pad_id, bool(tokens),
                                                                     want, width))
    else:  # a unit per batch
        pieces = map_batches(features, batch_size, shard,
                             lambda batches: [[r] for r in _score(model, features, batches, pad_id, bool(tokens), want)])
    for unit in (u for piece in pieces for u in piece):
        for idx, sums, counts, arrays in unit:
            out.sums[idx], out.counts[idx] = sums, counts
            for key, (rows, values) in arrays.items():
                target = getattr(out, key)
                for j, v in zip(rows, values):
                    target[j] = v
    return out


def map_batches(features: Sequence[Feature], batch_size: int, shard, run) -> list[list[Any]]:
    """``run(batches)`` over the length-sorted batches of ``features`` (lists of indices; one result
    per batch), split across processes as whole batches -- the batches a 1-process run forms --
    and gathered: every process's results, in order (one piece without processes)."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    return map_units([order[i : i + batch_size] for i in range(0, len(order), batch_size)], shard, run)


def map_units(units: Sequence[Any], shard, run: Callable[[list[Any]], list[Any]]) -> list[list[Any]]:
    """``run(units)`` (one result per unit) split across processes as whole units and gathered."""
    part = current_shard(shard)
    if part is None:
        return [run(list(units))]
    mine, real = part.take(units)
    return part.gather(run(mine)[:real])


@dataclass(frozen=True)
class PrefixUnit:
    """Prefixes run together (left-padded to the longest), and the batches of (feature index,
    prefix row) that continue them."""

    prefixes: list[tuple[int, ...]]
    batches: list[list[tuple[int, int]]]


def prefix_length(feature: Feature) -> int:
    """How many leading tokens can be shared: those before the last one whose logits are not
    scored (the token before the first label), attended, and at least one token left to run."""
    labels, att = feature["labels"], feature["attention_mask"]
    first = next((i for i, label in enumerate(labels) if label != -100), len(labels))
    unattended = next((i for i, a in enumerate(att) if not a), len(att))
    return max(0, min(first - 1, unattended, len(feature["input_ids"]) - 1))


def prefix_units(features: Sequence[Feature], batch_size: int) -> list[PrefixUnit]:
    """The plan of a prefix-sharing pass: the distinct prefixes sorted by length, ``batch_size`` of
    them per unit, their texts in length-sorted batches of ``batch_size``. Texts with nothing to
    share (an empty prefix) form units of their own."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, f in enumerate(features):
        groups.setdefault(tuple(f["input_ids"][: prefix_length(f)]), []).append(i)
    longest = {k: max(len(features[i]["input_ids"]) for i in v) for k, v in groups.items()}
    units = []
    for _, same in groupby(sorted(groups, key=lambda k: (len(k), longest[k], k)), key=lambda k: len(k) > 0):
        same = list(same)
        for j in range(0, len(same), batch_size):
            prefixes = same[j : j + batch_size]
            rows = sorted(((i, r) for r, k in enumerate(prefixes) for i in groups[k]),
                          key=lambda m: (len(features[m[0]]["input_ids"]) - len(prefixes[m[1]]), m[0]))
            units.append(PrefixUnit(prefixes, [rows[a : a + batch_size] for a in range(0, len(rows), batch_size)]))
    return units


def _forwards(unit: PrefixUnit) -> int:
    return (len(unit.prefixes[-1]) > 0) + len(unit.batches)


@torch.inference_mode()
def _score(
    model: torch.nn.Module, features: Sequence[Feature], batches: Sequence[Sequence[int]], pad_id: int,
    tokens: bool, want: frozenset[int] | None = None,
) -> list[tuple[list[int], np.ndarray, np.ndarray, dict[str, tuple[list[int], list[np.ndarray]]]]]:
    """Per batch of feature indices: (indices, summed NLLs, counts, per-token arrays if ``tokens``:
    name -> (feature indices, one array each), of the features in ``want``, or all if None)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for idx in batches:
        idx = list(idx)
        batch = {k: v.to(device) for k, v in collate([features[j] for j in idx], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out.append(_batch_scores(logits[:, :-1], batch["labels"][:, 1:], idx, tokens, want))
    model.train(was_training)
    return out


@torch.inference_mode()
def _score_shared(model: torch.nn.Module, features: Sequence[Feature], units: Sequence[PrefixUnit], pad_id: int,
                  tokens: bool, want: frozenset[int] | None, width: int = 0) -> list[list[tuple]]:
    """Per unit, :func:`_score`'s per-batch results; ``width``: forward passes per unit (FSDP:
    every process runs as many; the last batch is repeated and its repeats dropped)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    from transformers import DynamicCache  # here, not at import: transformers takes seconds to import

    params = _forward_parameters(model)
    kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5 renamed it
    out = []
    for unit in units:
        lengths = torch.tensor([len(p) for p in unit.prefixes], device=device)
        width_p = int(lengths.max())
        cache, prefix_att = None, None
        if width_p:
            ids = torch.tensor([[pad_id] * (width_p - len(p)) + list(p) for p in unit.prefixes], device=device)
            prefix_att = (torch.arange(width_p, device=device) >= (width_p - lengths)[:, None]).long()
            cache = DynamicCache()
            model(input_ids=ids, attention_mask=prefix_att, position_ids=(prefix_att.cumsum(-1) - 1).clamp_min(0),
                  use_cache=True, **{kw: cache}, **({"logits_to_keep": 1} if "logits_to_keep" in params else {}))
        batches = unit.batches + [unit.batches[-1]] * max(0, width - _forwards(unit))
        results = []
        for rows in batches:
            idx, owner = [i for i, _ in rows], torch.tensor([r for _, r in rows], device=device)
            batch = {k: v.to(device) for k, v in collate(
                [_continuation(features[i], len(unit.prefixes[r])) for i, r in rows], pad_id).items()}
            att, extra = batch["attention_mask"], {}
            if cache is not None:
                mine = copy.deepcopy(cache)
                mine.reorder_cache(owner)
                att = torch.cat([prefix_att[owner], att], 1)
                extra = {kw: mine, "use_cache": True}
            positions = lengths[owner][:, None] + torch.arange(batch["input_ids"].shape[1], device=device)
            logits = model(input_ids=batch["input_ids"], attention_mask=att, position_ids=positions, **extra).logits
            results.append(_batch_scores(logits, batch["labels"], idx, tokens, want))
        out.append(results[: len(unit.batches)])
    model.train(was_training)
    return out


def _continuation(feature: Feature, start: int) -> Feature:
    """What runs after a shared prefix of ``start`` tokens: the tokens from there on but the last
    (whose logits would score nothing), with the labels their logits score (already shifted)."""
    end = max(len(feature["input_ids"]) - 1, start + 1)
    return {"input_ids": feature["input_ids"][start:end], "attention_mask": feature["attention_mask"][start:end],
            "labels": (list(feature["labels"][start + 1 :]) + [-100])[: end - start]}


def _forward_parameters(model: torch.nn.Module) -> set[str]:
    """The named arguments of the model's forward, read through DDP / FSDP / PEFT wrappers."""
    inner = model
    while hasattr(inner, "module"):
        inner = inner.module
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return set(inspect.signature(inner.forward).parameters)


def _batch_scores(logits: torch.Tensor, labels: torch.Tensor, idx: list[int], tokens: bool,
                  want: frozenset[int] | None) -> tuple:
    """One batch's (indices, summed NLLs, counts, per-token arrays) from its logits and the labels
    they score (aligned: position t's logits score labels[:, t])."""
    logprobs = F.log_softmax(logits.float(), dim=-1)
    mask = labels != -100
    tok_logp = logprobs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    sums = -(tok_logp * mask).sum(-1)
    rows = [r for r, j in enumerate(idx) if want is None or j in want] if tokens else []
    arrays = _token_arrays(logprobs, labels, mask, tok_logp, rows, len(idx))
    return (idx, sums.double().cpu().numpy(), mask.sum(-1).cpu().numpy(),
            {k: ([idx[r] for r in rows], v) for k, v in arrays.items()})


def _token_arrays(logprobs, labels, mask, tok_logp, rows: list[int], n: int) -> dict[str, list[np.ndarray]]:
    """The scored tokens' arrays of the batch rows ``rows`` (per row, in order): log p, argmax ==
    token, and mean and std of log p(.) under the model's next-token distribution."""
    if not rows:
        return {}
    if len(rows) < n:  # only what is needed: the vocabulary-wide moments cost more than the pass
        sel = torch.tensor(rows, device=logprobs.device)
        logprobs, labels, mask, tok_logp = logprobs[sel], labels[sel], mask[sel], tok_logp[sel]
    correct = logprobs.argmax(-1) == labels
    probs = logprobs.exp()
    mu = (probs * logprobs).sum(-1)
    # centred second moment: E[lp^2] - mu^2 loses digits on near-uniform distributions
    sigma = (probs * (logprobs - mu.unsqueeze(-1)).square()).sum(-1).sqrt()
    cuts = np.cumsum(mask.sum(-1).cpu().numpy())[:-1]
    return {"logp": np.split(tok_logp[mask].double().cpu().numpy(), cuts),
            "correct": np.split(correct[mask].cpu().numpy(), cuts),
            "mu": np.split(mu[mask].double().cpu().numpy(), cuts),
            "sigma": np.split(sigma[mask].double().cpu().numpy(), cuts)}


def score_features(
    model: torch.nn.Module, features: Sequence[Feature], batch_size: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(summed NLL, scored-token count) per feature, in the input order."""
    s = score(model, features, batch_size, pad_id)
    return s.sums, s.counts
