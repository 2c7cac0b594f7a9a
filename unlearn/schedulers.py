"""Learning-rate schedules: pure functions of the step, and GeN, the automatic learning rate.

Every scheduler answers ``lr(step)``. GeN also answers ``should_probe(step)`` and learns from
``observe(...)``, which the engine calls with the fitted loss measured along the step it just
took (PAPER.md §2).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from unlearn.registry import Registry

SCHEDULERS: Registry[type["Scheduler"]] = Registry("scheduler")


class Scheduler:
    probes = False  # True for schedulers that need loss probes along the update

    def __init__(self, lr: float, total_steps: int, cfg: Mapping[str, Any], epoch_batches: float | None = None) -> None:
        if lr <= 0 or not math.isfinite(lr):
            raise ValueError(f"the initial learning rate must be positive and finite, got {lr}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.base_lr = float(lr)
        self.total_steps = int(total_steps)
        self.cfg = cfg
        self.epoch_batches = epoch_batches
        self.warmup = self._warmup_steps(cfg)
        self.from_zero = bool(cfg.get("warmup_from_zero", False))

    def _warmup_steps(self, cfg: Mapping[str, Any]) -> int:
        """The largest of ``warmup_steps``, ``warmup_ratio`` x total steps and ``warmup_epochs``
        epochs of full batches: max(1, floor(warmup_epochs x N_forget / effective batch)) -- TOFU's
        ``warmup_steps=max(1, steps_per_epoch)`` and open-unlearning's ``warmup_epochs``."""
        steps = int(cfg.get("warmup_steps", 0) or 0)
        ratio = float(cfg.get("warmup_ratio", 0.0) or 0.0)
        epochs = float(cfg.get("warmup_epochs", 0.0) or 0.0)
        if epochs and self.epoch_batches is None:
            raise ValueError("scheduler.warmup_epochs needs the number of batches in an epoch")
        by_epochs = max(1, math.floor(epochs * self.epoch_batches + 1e-9)) if epochs else 0
        return max(steps, int(round(ratio * self.total_steps)), by_epochs)

    def _warm(self, step: int) -> float | None:
        """Linear warmup over the first ``warmup`` steps (None after it): lr (step + 1) / warmup, or
        with ``warmup_from_zero`` transformers' lr step / warmup (the first update at rate 0, as in
        TOFU and open-unlearning, whose Trainer uses ``get_linear_schedule_with_warmup``)."""
        if step < self.warmup:
            return self.base_lr * (step if self.from_zero else step + 1) / self.warmup
        return None

    def lr(self, step: int) -> float:
        raise NotImplementedError

    def should_probe(self, step: int) -> bool:
        return False

    def state(self) -> dict[str, float]:
        return {}


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


# GeN lives in its own module (its options and probe fit); importing it registers "gen"
from unlearn.gen import GeN, GeNFit  # noqa: E402,F401
