"""Learning-rate schedules: pure functions of the step (warmup, then constant, linear or cosine), and
:func:`build_scheduler`, which also finds GeN, the automatic learning rate (:mod:`unlearn.gen`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from unlearn.gen import GeN, GeNFit  # noqa: F401  (importing it registers "gen")
from unlearn.scheduler_base import SCHEDULERS, Scheduler

__all__ = ["SCHEDULERS", "Scheduler", "GeN", "GeNFit", "build_scheduler"]


@SCHEDULERS.register("constant")
class Constant(Scheduler):
    def lr(self, step: int) -> float:
        w = self._warm(step)
        return self.base_lr if w is None else w


@SCHEDULERS.register("linear")
class Linear(Scheduler):
    """Warmup, then linear decay to 0 at ``total_steps`` (transformers' linear schedule)."""

    def lr(self, step: int) -> float:
        w = self._warm(step)
        if w is not None:
            return w
        span = max(1, self.total_steps - self.warmup)
        return self.base_lr * max(0.0, (self.total_steps - step) / span)


@SCHEDULERS.register("cosine")
class Cosine(Scheduler):
    """Warmup, then half a cosine from lr down to ``min_lr_ratio * lr`` at ``total_steps``."""

    def lr(self, step: int) -> float:
        w = self._warm(step)
        if w is not None:
            return w
        floor = float(self.cfg.get("min_lr_ratio", 0.0)) * self.base_lr
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return floor + (self.base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(cfg: Mapping[str, Any], lr: float, total_steps: int, epoch_batches: float | None = None) -> Scheduler:
    """``epoch_batches``: forget examples / effective batch (what ``warmup_epochs`` counts in)."""
    return SCHEDULERS.get(cfg["name"])(lr, total_steps, cfg, epoch_batches)
