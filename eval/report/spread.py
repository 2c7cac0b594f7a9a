"""Robustness to a setting (issue 13: the initial learning rate): how much each method + scheduler's
seed-mean numbers move across the values of ``over``, and whether it forgets as well as the best
cell of a baseline scheduler (the fixed rate) at no lower utility.

Configured by a sweep file's ``report.spread``::

    spread:
      over: lr                      # the setting varied
      baseline: constant            # the scheduler whose best cell is the yardstick
      best_by: forget_quality       # the baseline's best cell: the best value of this metric
      ranges: [model_utility, forget_truth_ratio]   # each may vary by at most `tolerance`
      tolerance: 0.05
      no_worse: [forget_quality, forget_prob, model_utility]  # worst case over `over` vs the best baseline cell

Worst case means the least favourable value over ``over`` in each metric's direction
(:data:`eval.directions.DIRECTION`): the smallest forget quality, the largest forget probability.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd


def _worst(values: pd.Series, direction: str) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return math.nan
    return float(v.min() if direction == "max" else v.max() if direction == "min" else v.abs().max())


def _no_worse(value: float, ref: float, direction: str) -> bool:
    if math.isnan(value) or math.isnan(ref):
        return False
    return value >= ref if direction == "max" else value <= ref if direction == "min" else abs(value) <= abs(ref)


def spread_table(agg: pd.DataFrame, spec: Mapping[str, Any], direction: Mapping[str, str],
                 rows: tuple[str, ...] = ("method", "scheduler"), columns: str | None = "split") -> pd.DataFrame:
    """One line per (rows, split): the range over ``spec['over']`` of each ``ranges`` metric, the worst
    case of each ``no_worse`` metric beside the baseline's best cell, and whether the goal holds."""
    over, baseline, best_by = spec.get("over", "lr"), spec.get("baseline", "constant"), spec["best_by"]
    ranges, no_worse = list(spec.get("ranges", [])), list(spec.get("no_worse", []))
    tol = float(spec.get("tolerance", 0.05))
    keys = [k for k in rows if k != over] + ([columns] if columns else [])
    out = []
    for key, g in agg.groupby(keys, dropna=False, sort=True):
        line = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        same = agg[(agg["method"] == line["method"]) & (agg["scheduler"] == baseline)]
        if columns:
            same = same[same[columns] == line[columns]]
        best = None
        if not same.empty and same[f"{best_by}_mean"].notna().any():
            m = pd.to_numeric(same[f"{best_by}_mean"], errors="coerce")
            best = same.loc[m.idxmax() if direction.get(best_by, "max") == "max" else m.idxmin()]
        line[f"n_{over}"] = int(g[over].nunique())
        goal = line["scheduler"] != baseline
        for m in ranges:
            v = pd.to_numeric(g[f"{m}_mean"], errors="coerce")
            line[f"{m} range"] = float(v.max() - v.min()) if v.notna().any() else math.nan
            goal = goal and line[f"{m} range"] <= tol
        if best is not None:
            line[f"baseline {over}"] = best[over]
        for m in no_worse:
            d = direction.get(m, "max")
            line[f"{m} worst"] = _worst(g[f"{m}_mean"], d)
            ref = float(best[f"{m}_mean"]) if best is not None else math.nan
            line[f"{m} baseline"] = ref
            goal = goal and _no_worse(line[f"{m} worst"], ref, d)
        line["goal"] = "-" if line["scheduler"] == baseline else ("met" if goal else "not met")
        out.append(line)
    return pd.DataFrame(out)


def spread_markdown(table: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else (f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) or abs(v) >= 1e4 else f"{v:.3f}")
        return str(v)

    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    return header + "\n".join("| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)) + "\n"
