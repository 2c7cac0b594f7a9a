"""Warnings a finished run's numbers deserve: a collapsed model should never pass for a result.

A run's record keeps them as ``record["warnings"]``, a list of ``{"kind", "message", ...}`` (the
kind's numbers beside the message); the run prints them under its table and into ``run.log``
(:class:`unlearn.callbacks.health.HealthCheck`), and ``python -m eval.report`` counts and lists them
(and computes them for a record written before they existed). The kinds:

* ``lr_moved`` -- GeN moved the learning rate more than :data:`RATE_FACTOR` times away from its
  start (``method.lr``), up or down, at some step (its own rate ``gen_eta`` in the step log; the
  warmup's smaller rates are a schedule, not GeN's doing);
* ``utility_collapse`` -- the unlearned model's utility fell below :data:`UTILITY_FRACTION` of the
  target's (the benchmark's utility: :data:`UTILITY`); for a utility that combines several numbers
  (TOFU's harmonic mean of nine) the message names the parts that fell most, so that a 0 is
  explained (one ROUGE at 0 makes the harmonic mean 0).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from eval.tofu.metrics import MODEL_UTILITY_KEYS

RATE_FACTOR = 10.0  # more than this many times from its start, either way
UTILITY_FRACTION = 0.5  # below this fraction of the target's utility
# benchmark -> (its utility metric, the numbers that metric combines): TOFU's model utility is the
# harmonic mean of nine (METRICS.md §1.7); MUSE reports utility preservation as KnowMem on D_r, WMDP
# as MMLU accuracy
UTILITY: dict[str, tuple[str, tuple[str, ...]]] = {"tofu": ("model_utility", MODEL_UTILITY_KEYS),
                                                     "muse": ("knowmem_r", ()), "wmdp": ("general_acc", ())}


def _finite(x: Any) -> float | None:
    """A positive finite number, or None (the step log writes inf/NaN as strings)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def rate_warning(start: float, rates: Iterable[tuple[int | None, Any]]) -> dict[str, Any] | None:
    """``rates``: (step, the rate GeN set after that step). A warning when the farthest one is more
    than :data:`RATE_FACTOR` times its start, up or down."""
    start_ = _finite(start)
    points = [(s, v) for s, r in rates if (v := _finite(r)) is not None]
    if start_ is None or not points:
        return None
    hi, lo = max(points, key=lambda p: p[1]), min(points, key=lambda p: p[1])
    up, down = hi[1] / start_, start_ / lo[1]
    factor = max(up, down)
    if not factor > RATE_FACTOR:
        return None
    step, rate = hi if up >= down else lo
    where = f" after step {step}" if step is not None else ""
    return {"kind": "lr_moved", "factor": factor, "start": start_, "rate": rate, "step": step,
            "final": points[-1][1],
            "message": f"GeN moved the learning rate {factor:.3g}x {'above' if up >= down else 'below'} its start "
                       f"({start_:.3g} -> {rate:.3g}{where}; final {points[-1][1]:.3g}); scheduler=constant keeps "
                       f"the rate, scheduler.calib_clip and scheduler.cap bound GeN"}


def utility_warning(unlearned: Mapping[str, Any], target: Mapping[str, Any], metric: str,
                    parts: Sequence[str] = (), who: str = "the unlearned model") -> dict[str, Any] | None:
    """A warning when the unlearned model's ``metric`` is below :data:`UTILITY_FRACTION` of the
    target's; the parts (of a combined metric) below that fraction of theirs are named, lowest first.
    ``who``: the model the message names."""
    u, t = unlearned.get(metric), target.get(metric)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (u, t)) or t <= 0:
        return None
    if not u < UTILITY_FRACTION * t:
        return None
    fell = sorted(((unlearned[p] / target[p], p) for p in parts
                   if isinstance(unlearned.get(p), (int, float)) and isinstance(target.get(p), (int, float))
                   and target[p] > 0 and unlearned[p] < UTILITY_FRACTION * target[p]))
    why = ("; the parts that fell most: " + ", ".join(f"{p} {unlearned[p]:.3g} (target {target[p]:.3g})"
                                                      for _, p in fell[:3]) if fell else "")
    return {"kind": "utility_collapse", "metric": metric, "unlearned": u, "target": t, "parts": [p for _, p in fell],
            "message": f"{who}'s {metric} is {u:.3g}, below {UTILITY_FRACTION:g} x the target's "
                       f"({t:.3g}){why}"}


def read_steps(path: str | Path) -> list[dict[str, Any]]:
    """A step log's rows (none when it is missing); a torn last line (a killed run) is left out."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def record_warnings(record: Mapping[str, Any], steps: Sequence[Mapping[str, Any]] = (),
                    selected: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every warning a record (and its step log's rows) deserves, in :data:`UTILITY`'s and the
    module docstring's order; none for a run without an unlearned model's numbers or GeN.
    ``selected``: the numbers of the trajectory step ``eval.select`` chose (``record["selection"]
    ["metrics"]``), whose utility is checked instead of the final model's."""
    out = []
    cfg = record.get("config") or {}
    rates = [(row.get("step"), row["gen_eta"]) for row in steps if "gen_eta" in row]
    final = ((record.get("unlearn") or {}).get("scheduler") or {}).get("gen_eta")
    if not rates and final is not None:  # no step log: GeN's final rate alone
        rates = [(None, final)]
    w = rate_warning((cfg.get("method") or {}).get("lr"), rates)
    if w:
        out.append(w)
    metrics = record.get("metrics") or {}
    metric, parts = UTILITY.get((cfg.get("dataset") or {}).get("benchmark"), (None, ()))
    if metric and "unlearned" in metrics and "target" in metrics:
        unlearned = selected if selected else metrics["unlearned"].get("summary") or {}
        who = f"the selected model (step {selected.get('step')})" if selected else "the unlearned model"
        w = utility_warning(unlearned, metrics["target"].get("summary") or {}, metric, parts, who)
        if w:
            out.append(w)
    return out
