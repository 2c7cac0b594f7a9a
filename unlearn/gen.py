"""GeN, the automatic learning rate (Bu & Xu, ICLR 2025; PAPER.md §2), and its options.

Along the step the optimizer took, ``w1 = w0 + delta`` at rate ``eta``, the engine measures the
fitted loss at ``w0 + r delta`` for each probe ratio ``r`` (``scheduler.points``: official GeN
``[-1, 1]`` beside 0). With ``x = r eta`` and ``y = L(w0 + r delta) - L(w0)`` the parabola
``f(x) = a x^2 / 2 - b x`` is fitted by least squares (exact through two points); its vertex
``b / a`` is the rate that minimizes the loss along the step, and ``R^2`` (over every point, the
origin included, as ``sklearn.metrics.r2_score``) says how well a parabola describes it.

Safeguards (official GeN, ``scheduler=gen_official``): accept only ``a > 0`` (curvature), ``b > 0``
(descent) and ``R^2 >= min_r2``; clip the candidate to ``[clip_low, clip_high] x eta``; smooth
``eta <- ema eta + (1 - ema) cand``; optionally scale the candidate by the horizon factor
``1 - step / total``; halve on a numerical failure. Options studied here (issue 13):

* ``calibrate: K`` -- the first K steps after warmup probe every step, with the wide
  ``calib_clip`` and no EMA or horizon: the rate jumps to the vertex instead of creeping towards
  it (one accepted probe moves it by at most 0.95-1.10x under the steady safeguards);
* ``cap: [lo, hi]`` -- after calibration the rate stays within ``[lo, hi] x`` the calibrated rate;
* ``trial_probe: true`` -- the first probe (whenever it falls) is made on a trial step that is
  undone (weights and optimizer state), so that update is taken at the fitted rate instead of the
  initial one;
* ``order: official`` -- AutoGeN's ``lr_parabola`` order (``scheduler=gen_official``): a probe step
  takes a trial step at the current rate, probes along it, puts the weights back (not the
  optimizer's state: its moments advance twice on that step) and takes the update at the new rate;
  it probes when ``(step + 1) % lazy == 0``. ``order: after`` (ours): the probed step is the update
  and the new rate serves the following steps; it probes when ``step % lazy == 0``;
* ``vertex_scale: s`` -- the candidate is ``s x b / a`` (before the clip): a rate short of the
  minimizer along the step, which a short horizon with a moving loss may prefer;
* ``probe_batch: fresh`` (the official code's next batch) or ``step`` (the step's own batch),
  ``probe_eval: true`` (probes without dropout), ``fit`` (retain / forget / objective loss): the
  engine's side (:mod:`unlearn.engine`).

Every probe reports the raw vertex (before any clip), ``R^2``, which bound acted (``bound``), the
phase (``calibrate`` / ``steady``) and its signal against the precision's noise floor (a fit below
the floor is rejected as ``noise`` and the rate kept: :mod:`unlearn.probes`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from unlearn.scheduler_base import SCHEDULERS, Scheduler

PROBE_BATCHES = ("step", "fresh")
PROBE_PRECISIONS = ("fp32", "run")  # where the probes compute (:mod:`unlearn.probes`)
ORDERS = ("after", "official")


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
    vertex: float | None = None  # b / a before any clip (None when a == 0 or the probe failed)
    r2: float = math.nan
    bound: str = ""  # which safeguard set the rate: clip_low | clip_high | cap_low | cap_high | ""
    phase: str = "steady"
    signal: float = math.nan  # min(|b| x, |a| x^2 / 2) at the farthest probe x: the loss change the fit rests on


def fit_parabola(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares ``y = a x^2 / 2 - b x`` (through the origin): ``(a, b, R^2)``. ``R^2`` counts
    the origin as a point, as a fit of ``L - L0`` over the probe rates and 0 does."""
    u = [x * x / 2 for x in xs]
    v = [-x for x in xs]
    suu, suv, svv = sum(p * p for p in u), sum(p * q for p, q in zip(u, v)), sum(q * q for q in v)
    suy, svy = sum(p * y for p, y in zip(u, ys)), sum(q * y for q, y in zip(v, ys))
    det = suu * svv - suv * suv
    if det == 0:
        raise ValueError("GeN needs probes at two or more distinct non-zero rates")
    a = (suy * svv - svy * suv) / det
    b = (svy * suu - suy * suv) / det
    y_all = [0.0, *ys]
    fitted = [0.0, *(a * p + b * q for p, q in zip(u, v))]
    mean = sum(y_all) / len(y_all)
    ss_res = sum((y - f) ** 2 for y, f in zip(y_all, fitted))
    ss_tot = sum((y - mean) ** 2 for y in y_all)
    r2 = (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return a, b, r2


def _pair(cfg: Mapping[str, Any], key: str, default) -> tuple[float, float] | None:
    value = cfg.get(key, default)
    if value is None:
        return None
    lo, hi = (float(v) for v in value)
    if not 0.0 < lo <= 1.0 <= hi:
        raise ValueError(f"gen.{key} must satisfy 0 < low <= 1 <= high, got {list(value)}")
    return lo, hi


@SCHEDULERS.register("gen")
class GeN(Scheduler):
    """The automatic learning rate; see the module docstring for the rule and its options."""

    probes = True

    def __init__(self, lr: float, total_steps: int, cfg: Mapping[str, Any], epoch_batches: float | None = None) -> None:
        super().__init__(lr, total_steps, cfg, epoch_batches)
        self.eta = self.base_lr
        self.lazy = int(cfg.get("lazy", 4))
        self.ema = float(cfg.get("ema", 0.9))
        self.clip_low, self.clip_high = _pair(cfg, "clip", (0.5, 2.0))
        self.on_reject = str(cfg.get("on_reject", "keep"))
        self.horizon = bool(cfg.get("horizon", False))
        self.points = tuple(float(r) for r in cfg.get("points", (-1.0, 1.0)))
        self.min_r2 = None if cfg.get("min_r2") is None else float(cfg["min_r2"])
        self.calibrate = int(cfg.get("calibrate", 0) or 0)
        self.calib_clip = _pair(cfg, "calib_clip", (0.01, 100.0))
        self.cap = _pair(cfg, "cap", None)
        self.probe_batch = str(cfg.get("probe_batch", "step"))
        self.vertex_scale = float(cfg.get("vertex_scale", 1.0))
        self.order = str(cfg.get("order", "after"))
        if self.order not in ORDERS:
            raise ValueError(f"gen.order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.order == "official" and (cfg.get("trial_probe") or self.calibrate):
            raise ValueError("gen.order=official probes on an undone trial step every time, with AutoGeN's "
                             "safeguards: set gen.trial_probe=false and gen.calibrate=0")
        if str(cfg.get("probe_precision", "fp32")) not in PROBE_PRECISIONS:
            raise ValueError(f"gen.probe_precision must be one of {', '.join(PROBE_PRECISIONS)}, "
                             f"got {cfg.get('probe_precision')!r}")
        if float(cfg.get("noise_floor", 1.0)) < 0:
            raise ValueError(f"gen.noise_floor must be >= 0, got {cfg.get('noise_floor')}")
        if not self.vertex_scale > 0:
            raise ValueError(f"gen.vertex_scale must be positive, got {self.vertex_scale}")
        if self.lazy < 1:
            raise ValueError(f"gen.lazy must be >= 1, got {self.lazy}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"gen.ema must be in [0, 1), got {self.ema}")
        if self.on_reject not in ("keep", "halve"):
            raise ValueError(f"gen.on_reject must be 'keep' or 'halve', got {self.on_reject!r}")
        if 0.0 in self.points or len(set(self.points)) < 2:
            raise ValueError(f"gen.points must hold two or more distinct non-zero ratios (0 is L0), got {list(self.points)}")
        if self.calibrate < 0:
            raise ValueError(f"gen.calibrate must be >= 0, got {self.calibrate}")
        if self.probe_batch not in PROBE_BATCHES:
            raise ValueError(f"gen.probe_batch must be one of {', '.join(PROBE_BATCHES)}, got {self.probe_batch!r}")
        self.n_probes = 0
        self.n_accepted = 0
        self.n_noise = 0  # fits rejected below the precision's noise floor
        self.eta_cal: float | None = None  # the rate calibration ended with (what ``cap`` is relative to)

    def lr(self, step: int) -> float:
        w = self._warm(step)
        return self.eta if w is None else min(w, self.eta)

    def trial(self, step: int) -> bool:
        """``trial_probe``: the first probe (at whatever step it falls) is made on a trial step that
        the engine undoes, weights and optimizer state, so that update is taken at the fitted rate."""
        return bool(self.cfg.get("trial_probe")) and self.n_probes == 0 and self.should_probe(step)

    def calibrating(self, step: int) -> bool:
        return self.warmup <= step < self.warmup + self.calibrate

    def should_probe(self, step: int) -> bool:
        if self.order == "official":  # lr_parabola is called when (batch_idx + 1) % lazy_freq == 0
            return step >= self.warmup and (step + 1) % self.lazy == 0
        return step >= self.warmup and (self.calibrating(step) or step % self.lazy == 0)

    def observe(self, step: int, l0: float, l_step: float, l_back: float, eta: float) -> GeNFit:
        """The three-point probe: losses at w0, w0 + delta, w0 - delta (rate eta)."""
        return self.observe_points(step, l0, {1.0: l_step, -1.0: l_back}, eta)

    def observe_points(self, step: int, l0: float, losses: Mapping[float, float], eta: float,
                       floor: float = 0.0) -> GeNFit:
        """Update the rate from L0 and the losses at ``w0 + r delta`` for each ratio r. ``floor``:
        the probe precision's noise on a loss difference; a fit whose signal is below it is noise."""
        self.n_probes += 1
        before = self.eta
        phase = "calibrate" if self.calibrating(step) else "steady"
        if phase == "steady" and self.eta_cal is None:
            self.eta_cal = before
        named = {"l0": l0, **{_name(r): v for r, v in losses.items()}}
        if not all(math.isfinite(v) for v in (l0, *losses.values())) or eta <= 0:
            self.eta = before / 2
            return GeNFit(math.nan, math.nan, None, False, "non-finite probe: halved", before, self.eta, named,
                          phase=phase)
        ratios = sorted(losses)
        a, b, r2 = fit_parabola([r * eta for r in ratios], [losses[r] - l0 for r in ratios])
        vertex = b / a if a != 0 else None
        x = max(abs(r) for r in ratios) * eta
        signal = min(abs(b) * x, abs(a) * x * x / 2)
        if signal < floor:  # rounding noise: no information on the rate, which stays (halving would only shrink the signal)
            self.n_noise += 1
            return GeNFit(a, b, None, False, "noise", before, self.eta, named, vertex, r2, phase=phase, signal=signal)
        reason = "a<=0" if a <= 0 else "b<=0" if b <= 0 else (
            "r2<min_r2" if self.min_r2 is not None and r2 < self.min_r2 else "")
        if reason:
            if self.on_reject == "halve":
                self.eta = before / 2
            return GeNFit(a, b, None, False, reason, before, self.eta, named, vertex, r2, phase=phase, signal=signal)
        lo, hi = self.calib_clip if phase == "calibrate" else (self.clip_low, self.clip_high)
        cand, bound = _clip(self.vertex_scale * vertex, lo * before, hi * before, "clip")
        if phase == "calibrate":  # straight to the (clipped) vertex: no smoothing, no horizon
            self.eta = cand
        else:
            if self.horizon:  # GeN's optional decay of the proposal, 1 at the start -> 0 at the end
                cand *= max(0.0, 1.0 - step / self.total_steps)
            self.eta = self.ema * before + (1.0 - self.ema) * cand
            if self.cap is not None:
                self.eta, capped = _clip(self.eta, self.cap[0] * self.eta_cal, self.cap[1] * self.eta_cal, "cap")
                bound = capped or bound
        self.n_accepted += 1
        return GeNFit(a, b, cand, True, "accepted", before, self.eta, named, vertex, r2, bound, phase, signal)

    def state(self) -> dict[str, float]:
        return {"gen_eta": self.eta, "gen_probes": self.n_probes, "gen_accepted": self.n_accepted,
                "gen_noise": self.n_noise}


def _clip(x: float, lo: float, hi: float, name: str) -> tuple[float, str]:
    if x < lo:
        return lo, f"{name}_low"
    if x > hi:
        return hi, f"{name}_high"
    return x, ""


def _name(r: float) -> str:
    """The log key of a probe ratio: l_step (+1), l_back (-1), else l_<r>."""
    return {1.0: "l_step", -1.0: "l_back"}.get(r, f"l_{r:g}")
