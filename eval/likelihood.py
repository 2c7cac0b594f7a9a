"""Teacher-forced scoring: one pass per unique text gives every likelihood-based number.

Per item: the summed NLL and the scored-token count (probability, truth ratio, LOSS attack), and
on request the per-token arrays (exact memorization, extraction strength, Min-k%, Min-k%++):
``logp`` (log-prob of each scored token), ``correct`` (argmax == token), and ``mu`` / ``sigma``
(mean and standard deviation of log p(.) under the model's own next-token distribution, for
Min-k%++). Items are scored in length-sorted batches (little padding) under inference mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from unlearn.data import Feature, collate


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


@torch.inference_mode()
def score(
    model: torch.nn.Module, features: Sequence[Feature], batch_size: int, pad_id: int, tokens: bool = False
) -> Scores:
    n = len(features)
    out = Scores(np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64))
    if tokens:
        out.logp, out.correct, out.mu, out.sigma = ([np.zeros(0)] * n for _ in range(4))
    if n == 0:
        return out
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(n), key=lambda i: len(features[i]["input_ids"]))
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        batch = {k: v.to(device) for k, v in collate([features[j] for j in idx], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        tok_logp = logprobs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        sums = -(tok_logp * mask).sum(-1)
        out.sums[idx] = sums.double().cpu().numpy()
        out.counts[idx] = mask.sum(-1).cpu().numpy()
        if tokens:
            correct = logprobs.argmax(-1) == labels
            probs = logprobs.exp()
            mu = (probs * logprobs).sum(-1)
            sigma = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
            for row, j in enumerate(idx):
                m = mask[row]
                out.logp[j] = tok_logp[row][m].double().cpu().numpy()
                out.correct[j] = correct[row][m].cpu().numpy()
                out.mu[j] = mu[row][m].double().cpu().numpy()
                out.sigma[j] = sigma[row][m].double().cpu().numpy()
    model.train(was_training)
    return out


def score_features(
    model: torch.nn.Module, features: Sequence[Feature], batch_size: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(summed NLL, scored-token count) per feature, in the input order."""
    s = score(model, features, batch_size, pad_id)
    return s.sums, s.counts
