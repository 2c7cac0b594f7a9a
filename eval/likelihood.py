"""Teacher-forced scoring: one pass per unique text gives per-item summed NLL and token counts.

Every likelihood metric (probability, truth ratio, MIA scores) is derived from these numbers.
Items are scored in length-sorted batches (little padding) under ``torch.inference_mode``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from unlearn.data import Feature, collate
from unlearn.losses import sequence_nll


@torch.inference_mode()
def score_features(
    model: torch.nn.Module, features: Sequence[Feature], batch_size: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (summed NLL, scored-token count) per feature, in the input order."""
    n = len(features)
    sums = np.zeros(n, dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0:
        return sums, counts
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(n), key=lambda i: len(features[i]["input_ids"]))
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        batch = {k: v.to(device) for k, v in collate([features[j] for j in idx], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        s, c = sequence_nll(logits, batch["labels"])
        sums[idx] = s.double().cpu().numpy()
        counts[idx] = c.cpu().numpy()
    model.train(was_training)
    return sums, counts
