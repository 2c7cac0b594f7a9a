"""TOFU evaluation of one model from per-item teacher-forced losses.

Sets (METRICS.md §1.1): ``forget`` = the run's ``forgetXX_perturbed`` rows, ``retain`` =
``retain_perturbed``; each capped at ``ds_size`` items (TOFU: the first 300; null = all).
Every text of a set -- answers, paraphrased answers and all perturbed answers -- goes through
one flattened, length-sorted pass; each metric is derived from those per-item losses:

* answer loss: TOFU's per-token NLL (answer tokens + EOS); Prob = mean exp(-loss);
* truth ratio R = P(perturbed) / P(paraphrased), length-normalised, geometric over the
  perturbed answers; the forget set reports mean min(R, 1/R), the retain set mean max(0, 1-R);
* forget quality: exact KS p-value of the forget-set R against the retain model's.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from eval.likelihood import score_features
from eval.tofu_metrics import forget_quality, probability, truth_ratio, truth_ratio_stat

EVAL_VERSION = 2  # part of the cached reference evals' key: bump when what is computed changes


def eval_sets(prepared, ds_size: int | None) -> dict[str, Any]:
    names = {"forget": f"{prepared.data.split}_perturbed", "retain": "retain_perturbed"}
    out = {}
    for key, name in names.items():
        rows = prepared.data.rows(name)
        n = len(rows) if ds_size is None else min(int(ds_size), len(rows))
        out[key] = rows.select(range(n))
    return out


def _per_token(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return sums / np.maximum(counts, 1)


def score_perturbed_set(model: torch.nn.Module, prepared, rows: Sequence[Mapping[str, Any]], batch_size: int):
    """Per-token NLL of answer, paraphrased answer and each perturbed answer, in one pass."""
    questions = [r["question"] for r in rows]
    k = len(rows[0]["perturbed_answer"]) if len(rows) else 0
    if any(len(r["perturbed_answer"]) != k for r in rows):
        raise ValueError("every item of a set must have the same number of perturbed answers")
    texts = ([(q, r["answer"]) for q, r in zip(questions, rows)]
             + [(q, r["paraphrased_answer"]) for q, r in zip(questions, rows)]
             + [(q, p) for q, r in zip(questions, rows) for p in r["perturbed_answer"]])
    feats = [prepared.features([{"question": q, "answer": a}])[0] for q, a in texts]
    sums, counts = score_features(model, feats, batch_size, prepared.tokenizer.pad_token_id)
    loss = _per_token(sums, counts)
    n = len(rows)
    return loss[:n], loss[n : 2 * n], loss[2 * n :].reshape(n, k)


def evaluate_basic(model: torch.nn.Module, prepared, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Forget/retain answer loss and probability and truth ratios, with per-example values."""
    metrics: dict[str, Any] = {}
    bs = int(cfg["batch_size"])
    for key, rows in eval_sets(prepared, cfg.get("ds_size")).items():
        ans, para, pert = score_perturbed_set(model, prepared, rows, bs)
        R = truth_ratio(para, pert, variant=str(cfg.get("truth_ratio", "geometric")))
        metrics[f"{key}_loss"] = {"value": float(ans.mean()), "per_example": ans.tolist()}
        metrics[f"{key}_prob"] = {"value": probability(ans), "per_example": np.exp(-ans).tolist()}
        metrics[f"{key}_truth_ratio"] = {
            "value": truth_ratio_stat(R, "forget" if key == "forget" else "utility"),
            "per_example": R.tolist(),  # raw R; the value aggregates it as TOFU does
        }
    return metrics


def add_forget_quality(metrics: dict[str, Any], retain_metrics: Mapping[str, Any]) -> None:
    """Forget quality of a model against the retain model's forget-set truth ratios (in place)."""
    p, d = forget_quality(metrics["forget_truth_ratio"]["per_example"],
                          retain_metrics["forget_truth_ratio"]["per_example"])
    metrics["forget_quality"] = {"value": p, "ks_statistic": d}
