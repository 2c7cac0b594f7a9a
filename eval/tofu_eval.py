"""TOFU evaluation of one model from per-item teacher-forced losses.

Sets (METRICS.md §1.1): ``forget`` = the run's ``forgetXX_perturbed`` rows, ``retain`` =
``retain_perturbed``; each capped at ``ds_size`` items (TOFU: 300; null = all). The answer loss
is TOFU's per-token NLL (answer tokens + EOS); Prob = mean exp(-loss).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from eval.likelihood import score_features
from eval.tofu_metrics import probability


def eval_sets(prepared, ds_size: int | None) -> dict[str, Any]:
    names = {"forget": f"{prepared.data.split}_perturbed", "retain": "retain_perturbed"}
    out = {}
    for key, name in names.items():
        rows = prepared.data.rows(name)
        n = len(rows) if ds_size is None else min(int(ds_size), len(rows))
        out[key] = rows.select(range(n))
    return out


def evaluate_basic(model: torch.nn.Module, prepared, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Forget and retain mean answer loss and probability, with per-example values."""
    metrics: dict[str, Any] = {}
    bs = int(cfg["batch_size"])
    for key, rows in eval_sets(prepared, cfg.get("ds_size")).items():
        sums, counts = score_features(model, prepared.features(rows), bs, prepared.tokenizer.pad_token_id)
        avg = sums / np.maximum(counts, 1)
        metrics[f"{key}_loss"] = {"value": float(avg.mean()), "per_example": avg.tolist()}
        metrics[f"{key}_prob"] = {"value": probability(avg), "per_example": np.exp(-avg).tolist()}
    return metrics
