"""Checkpoint selection along unlearning (open-unlearning's users asked for it: its issue 187).

With trajectory evaluation on (``eval.trajectory_every > 0``), ``eval.select`` names a metric of
the trajectory's summary to maximize or minimize (``forget_quality``; ``min:forget_prob``;
``max:...``; the direction defaults to the metric's better one), and ``eval.select_floor`` may
add constraints relative to the target, which is the trajectory's step 0: ``{model_utility_no_rouge:
0.95}`` keeps only the steps whose value is at least 0.95 x the target's (floors take metrics that
are better higher). The best feasible step wins; equal values go to the earliest step (fewer
updates). No feasible step: no selection, and the record says so.

:class:`Selector` decides online, one trajectory point at a time, so that the engine needs to keep
one copy of the weights (the best so far); :func:`select_offline` is the same rule on a finished
trajectory (reports, tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from eval.directions import DIRECTION

# the metrics a trajectory summary holds, by their better direction (eval/directions.py, plus the
# trajectory's own: the ROUGE-free utility and the per-task probabilities and truth ratios)
MAX_METRICS = {k for k, v in DIRECTION.items() if v == "max"} | {
    "model_utility_no_rouge", "ra_prob", "wf_prob", "ra_truth_ratio", "wf_truth_ratio"}
MIN_METRICS = {k for k, v in DIRECTION.items() if v == "min"}
ZERO_METRICS = {k for k, v in DIRECTION.items() if v == "zero"}


@dataclass
class Criterion:
    metric: str
    mode: str  # max | min | zero (closest to 0)
    floor: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        s = f"{self.mode} {self.metric}"
        if self.floor:
            s += " subject to " + ", ".join(f"{k} >= {v:g} x target's" for k, v in self.floor.items())
        return s


def parse_criterion(select: Any, floor: Mapping[str, Any] | None = None) -> Criterion | None:
    """``eval.select`` (+ ``eval.select_floor``) -> a :class:`Criterion`, or None when off.
    Raises ValueError (one line) on an unknown metric, mode or floor."""
    if select in (None, "", False):
        if floor:
            raise ValueError("eval.select_floor needs eval.select (the metric to optimize)")
        return None
    mode, _, metric = str(select).rpartition(":")
    known = MAX_METRICS | MIN_METRICS | ZERO_METRICS
    if metric not in known and not metric.startswith("mia_auc_"):
        raise ValueError(f"eval.select: unknown metric {metric!r}; valid: {', '.join(sorted(known))}")
    default = "max" if metric in MAX_METRICS else "min" if metric in MIN_METRICS else "zero" if metric in ZERO_METRICS else "max"
    mode = mode or default
    if mode not in ("max", "min", "zero"):
        raise ValueError(f"eval.select: unknown direction {mode!r} in {select!r}; valid: max, min, zero")
    floors = {}
    for k, v in dict(floor or {}).items():
        if k not in MAX_METRICS:
            raise ValueError(f"eval.select_floor: {k!r} is not a metric that is better higher; valid: "
                             f"{', '.join(sorted(MAX_METRICS))}")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v:
            raise ValueError(f"eval.select_floor.{k} must be a positive fraction of the target's value, got {v!r}")
        floors[k] = float(v)
    return Criterion(metric, mode, floors)


def _score(c: Criterion, value: float) -> float:
    return value if c.mode == "max" else -value if c.mode == "min" else -abs(value)


class Selector:
    """The best feasible trajectory point so far; ``consider`` returns True when ``point`` is a new
    best (the caller then keeps a copy of the weights)."""

    def __init__(self, criterion: Criterion):
        self.c = criterion
        self.reference: Mapping[str, Any] | None = None  # step 0: the target
        self.best: dict[str, Any] | None = None
        self.considered = 0

    def feasible(self, point: Mapping[str, Any]) -> bool:
        ref = self.reference or point
        for k, frac in self.c.floor.items():
            if k not in point or k not in ref:
                raise ValueError(f"eval.select_floor: the trajectory has no {k!r} (it has: "
                                 f"{', '.join(sorted(x for x in point if isinstance(point[x], (int, float))))})")
            if not point[k] >= frac * ref[k]:
                return False
        return True

    def consider(self, point: Mapping[str, Any]) -> bool:
        if self.c.metric not in point:
            raise ValueError(f"eval.select: the trajectory has no {self.c.metric!r} (it has: "
                             f"{', '.join(sorted(x for x in point if isinstance(point[x], (int, float))))}); "
                             "eval.trajectory_generate=true adds the ROUGE-based ones")
        if self.reference is None:
            self.reference = dict(point)
        self.considered += 1
        value = point[self.c.metric]
        if value is None or (isinstance(value, float) and math.isnan(value)) or not self.feasible(point):
            return False
        if self.best is None or _score(self.c, value) > _score(self.c, self.best[self.c.metric]):
            self.best = dict(point)
            return True
        return False

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to go on deciding as this one would (the criterion is the config's)."""
        return {"reference": self.reference, "best": self.best, "considered": self.considered}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.reference, self.best, self.considered = state["reference"], state["best"], state["considered"]

    def summary(self, final_step: int) -> dict[str, Any]:
        out = {"criterion": self.c.describe(), "metric": self.c.metric, "mode": self.c.mode, "floor": self.c.floor,
               "points": self.considered, "final_step": final_step}
        if self.best is None:
            return {**out, "step": None, "note": "no trajectory step met the floor: the checkpoint is the final model"}
        return {**out, "step": self.best["step"], "metrics": self.best}


def select_offline(points: Sequence[Mapping[str, Any]], criterion: Criterion) -> dict[str, Any]:
    """The rule of :class:`Selector` on a finished trajectory (step 0 first)."""
    sel = Selector(criterion)
    for p in points:
        sel.consider(p)
    return sel.summary(points[-1]["step"] if points else 0)
