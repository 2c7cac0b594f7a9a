"""Learning-rate schedules: pure functions of the step, and GeN, the automatic learning rate.

Every scheduler answers ``lr(step)``. GeN also answers ``should_probe(step)`` and learns from
``observe(...)``, which the engine calls with the fitted loss measured along the step it just
took (PAPER.md §2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
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


@dataclass
class GeNFit:
    """What one probe found: the fitted parabola f(x) = a x^2 / 2 - b x and the decision."""

    a: float
    b: float
    candidate: float | None
    accepted: bool
    reason: str
    lr_before: float
    lr_after: float
    losses: dict[str, float] = field(default_factory=dict)


@SCHEDULERS.register("gen")
class GeN(Scheduler):
    """The automatic learning rate (GeN, Bu & Xu, ICLR 2025; PAPER.md §2).

    Along the step the optimizer actually took, ``w1 = w0 + delta`` at rate ``eta``, the engine
    measures the fitted loss at ``w0`` (L0, reused from the step), ``w0 + delta`` (the step) and
    ``w0 - delta`` (the step reversed). With x the distance along the descent direction in units
    of the rate, the parabola ``f(x) = a x^2 / 2 - b x`` through (-eta, L_back - L0), (0, 0) and
    (eta, L_step - L0) has ``a = (L_step + L_back - 2 L0) / eta^2`` and
    ``b = (L_back - L_step) / (2 eta)``; its vertex is ``b / a``.

    Safeguards (official GeN): accept only a > 0 (curvature) and b > 0 (descent); clip the
    candidate to [clip_low * eta, clip_high * eta]; smooth ``eta <- ema * eta + (1 - ema) * cand``;
    optionally scale the candidate by a horizon factor decaying 1 -> 0 over training; on a
    numerical failure (non-finite probe) halve eta. A rejected fit keeps eta (``on_reject: keep``)
    or halves it (``on_reject: halve``).
    """

    probes = True

    def __init__(self, lr: float, total_steps: int, cfg: Mapping[str, Any], epoch_batches: float | None = None) -> None:
        super().__init__(lr, total_steps, cfg, epoch_batches)
        self.eta = self.base_lr
        self.lazy = int(cfg.get("lazy", 4))
        self.ema = float(cfg.get("ema", 0.9))
        clip = cfg.get("clip", (0.5, 2.0))
        self.clip_low, self.clip_high = float(clip[0]), float(clip[1])
        self.on_reject = str(cfg.get("on_reject", "keep"))
        self.horizon = bool(cfg.get("horizon", False))
        if self.lazy < 1:
            raise ValueError(f"gen.lazy must be >= 1, got {self.lazy}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"gen.ema must be in [0, 1), got {self.ema}")
        if not 0.0 < self.clip_low <= 1.0 <= self.clip_high:
            raise ValueError(f"gen.clip must satisfy 0 < low <= 1 <= high, got {clip}")
        if self.on_reject not in ("keep", "halve"):
            raise ValueError(f"gen.on_reject must be 'keep' or 'halve', got {self.on_reject!r}")
        self.n_probes = 0
        self.n_accepted = 0

    def lr(self, step: int) -> float:
        w = self._warm(step)
        return self.eta if w is None else min(w, self.eta)

    def should_probe(self, step: int) -> bool:
        return step >= self.warmup and step % self.lazy == 0

    def observe(self, step: int, l0: float, l_step: float, l_back: float, eta: float) -> GeNFit:
        """Update the rate from the three losses measured at w0, w0 + delta, w0 - delta (rate eta)."""
        self.n_probes += 1
        before = self.eta
        losses = {"l0": l0, "l_step": l_step, "l_back": l_back}
        if not all(math.isfinite(v) for v in (l0, l_step, l_back)) or eta <= 0:
            self.eta = before / 2
            return GeNFit(math.nan, math.nan, None, False, "non-finite probe: halved", before, self.eta, losses)
        a = (l_step + l_back - 2.0 * l0) / eta**2
        b = (l_back - l_step) / (2.0 * eta)
        if not (a > 0 and b > 0):
            reason = "a<=0" if a <= 0 else "b<=0"
            if self.on_reject == "halve":
                self.eta = before / 2
            return GeNFit(a, b, None, False, reason, before, self.eta, losses)
        cand = min(max(b / a, self.clip_low * before), self.clip_high * before)
        if self.horizon:  # GeN's optional decay of the proposal, 1 at the start -> 0 at the end
            cand *= max(0.0, 1.0 - step / self.total_steps)
        self.eta = self.ema * before + (1.0 - self.ema) * cand
        self.n_accepted += 1
        return GeNFit(a, b, cand, True, "accepted", before, self.eta, losses)

    def state(self) -> dict[str, float]:
        return {"gen_eta": self.eta, "gen_probes": self.n_probes, "gen_accepted": self.n_accepted}


def build_scheduler(cfg: Mapping[str, Any], lr: float, total_steps: int, epoch_batches: float | None = None) -> Scheduler:
    """``epoch_batches``: forget examples / effective batch (what ``warmup_epochs`` counts in)."""
    return SCHEDULERS.get(cfg["name"])(lr, total_steps, cfg, epoch_batches)
