"""The scheduler interface and its registry (the fixed schedules in :mod:`unlearn.schedulers`, GeN in
:mod:`unlearn.gen`; both import this module, never each other).

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
