"""Teacher-forced scoring: one pass per unique text gives every likelihood-based number.

Per item: the summed NLL and the scored-token count (probability, truth ratio, LOSS attack), and
on request the per-token arrays (exact memorization, extraction strength, Min-k%, Min-k%++):
``logp`` (log-prob of each scored token), ``correct`` (argmax == token), and ``mu`` / ``sigma``
(mean and standard deviation of log p(.) under the model's own next-token distribution, for
Min-k%++). Items are scored in length-sorted batches (little padding) under inference mode.

Under several processes (``shard``, or inside :func:`unlearn.distributed.sharded_eval`) each
process scores every W-th batch of the length-sorted items (the very batches of a 1-process run)
and the results are gathered back in input order, so every process returns the full
:class:`Scores`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

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
    tokens: bool | Collection[int] = False, *, shard: Any = None,
) -> Scores:
    """Score every feature. ``tokens``: the per-token arrays too, of every feature (True) or of
    the features whose indices it holds (the others get empty arrays). ``shard``: a
    :class:`unlearn.distributed.Shard` or an Accelerator to split the batches across processes
    (default: the ambient :func:`~unlearn.distributed.sharded_eval`)."""
    n = len(features)
    out = Scores(np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64))
    if tokens is not False:
        out.logp, out.correct, out.mu, out.sigma = ([np.zeros(0)] * n for _ in range(4))
    if n == 0:
        return out
    want = None if isinstance(tokens, bool) else frozenset(int(i) for i in tokens)
    pieces = map_batches(features, batch_size, shard,
                         lambda batches: _score(model, features, batches, pad_id, bool(tokens), want))
    for piece in pieces:
        for idx, sums, counts, arrays in piece:
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
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    part = current_shard(shard)
    if part is None:
        return [run(batches)]
    mine, real = part.take(batches)
    return part.gather(run(mine)[:real])


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
        logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        tok_logp = logprobs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        sums = -(tok_logp * mask).sum(-1)
        rows = [r for r, j in enumerate(idx) if want is None or j in want] if tokens else []
        arrays = _token_arrays(logprobs, labels, mask, tok_logp, rows, len(idx))
        out.append((idx, sums.double().cpu().numpy(), mask.sum(-1).cpu().numpy(),
                    {k: ([idx[r] for r in rows], v) for k, v in arrays.items()}))
    model.train(was_training)
    return out


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
