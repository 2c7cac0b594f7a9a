"""open-unlearning's evaluation output, read: ``TOFU_EVAL.json`` / ``MUSE_EVAL.json``.

open-unlearning's evaluator writes one JSON object per model, ``{metric: result}``, where a
result is ``{"agg_value": number, "value_by_index": {"<idx>": {stat: value}}}`` (its
``src/evals/base.py`` and metric handlers), and ``<NAME>_SUMMARY.json`` with the ``agg_value`` of
each configured metric. Metric names are its config names (``forget_truth_ratio``,
``forget_Q_A_Prob``, ``ra_Q_A_Prob_normalised``, ``mia_min_k``, ``privleak``, ...). A membership
attack's result also holds ``forget`` and ``holdout`` results of per-item ``score`` and an
``auc`` in its orientation (members = label 0, ROC on the raw loss-like score: 1 - MUSE's AUC).

Reading serves ``eval.retain_logs``: forget quality against a published retain model's
``forget_truth_ratio`` per-item scores, PrivLeak against its ``mia_*`` AUC. It needs nothing of
either benchmark, so both evaluators read through it; writing is :mod:`eval.ou.write`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

EVAL_FILES = {"tofu": "TOFU_EVAL.json", "muse": "MUSE_EVAL.json"}
#: our attack name -> open-unlearning's metric name
MIA_METRICS = {"loss": "mia_loss", "zlib": "mia_zlib", "min_k": "mia_min_k", "min_k_plus_plus": "mia_min_k_plus_plus",
               "gradnorm": "mia_gradnorm", "reference": "mia_reference"}  # the last two where eval.mia.extra_attacks ran

def ou_eval_file(path: str | Path) -> Path | None:
    """The open-unlearning eval file ``path`` names (the file, or a folder holding one), else None."""
    p = Path(path)
    if p.is_file():
        return p if p.name.endswith("_EVAL.json") else None
    for name in EVAL_FILES.values():
        if (p / name).is_file():
            return p / name
    return None


def is_ou_eval(obj: Any) -> bool:
    """An open-unlearning eval object: metric -> result with ``agg_value`` / ``value_by_index``."""
    return isinstance(obj, Mapping) and any(
        isinstance(v, Mapping) and ("agg_value" in v or "value_by_index" in v) for v in obj.values())


def load_ou_eval(path: str | Path) -> dict[str, Any]:
    """Load and check one ``*_EVAL.json`` (a file or a folder holding ``TOFU_EVAL.json`` / ``MUSE_EVAL.json``)."""
    file = ou_eval_file(path)
    if file is None:
        raise FileNotFoundError(f"no open-unlearning eval file at {path} (expected {' or '.join(EVAL_FILES.values())})")
    try:
        obj = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    if not is_ou_eval(obj):
        raise ValueError(f"{file}: not an open-unlearning eval log ({{metric: {{agg_value, value_by_index}}}})")
    return obj


def _metric(ou: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    if not isinstance(ou.get(name), Mapping):
        raise ValueError(f"{source}: no {name!r} result; present: {', '.join(sorted(ou))}")
    return ou[name]


def ou_per_item(result: Mapping[str, Any], stat: str, source: str = "<log>") -> dict[str, float]:
    """``value_by_index`` of one result as ``{index: stat}`` in index order (None entries dropped,
    as open-unlearning's aggregations drop them)."""
    per = result.get("value_by_index")
    if not isinstance(per, Mapping) or not per:
        raise ValueError(f"{source}: result has no value_by_index")
    out = {}
    for k in sorted(per, key=int):
        v = per[k]
        if v is not None and v.get(stat) is not None:
            out[str(k)] = float(v[stat])
    return out


def ou_truth_ratios(ou: Mapping[str, Any], source: str = "<log>") -> dict[str, float]:
    """A model's per-item forget truth ratios R (``forget_truth_ratio.value_by_index.*.score``)."""
    return ou_per_item(_metric(ou, "forget_truth_ratio", source), "score", source)


def ou_mia_aucs(ou: Mapping[str, Any]) -> dict[str, float]:
    """attack -> AUC in MUSE's orientation (our convention), from the ``mia_*`` results present."""
    return {a: 1.0 - float(ou[m]["agg_value"]) for a, m in MIA_METRICS.items()
            if isinstance(ou.get(m), Mapping) and ou[m].get("agg_value") is not None}


__all__ = ["EVAL_FILES", "MIA_METRICS", "ou_eval_file", "is_ou_eval", "load_ou_eval", "ou_per_item",
           "ou_truth_ratios", "ou_mia_aucs"]
