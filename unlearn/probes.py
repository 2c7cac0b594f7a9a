"""GeN's probes, the engine's side: the fitted loss along the update, measured where the update is
representable, whatever the run's precision.

GeN (:mod:`unlearn.gen`) fits a parabola to ``L(w0 + r delta) - L(w0)`` over a few ratios ``r``.
At an unlearning rate of 1e-5 the update moves a weight by ~1e-5 and the loss by ~1e-3 (first
order) and ~1e-6 (second order, what the vertex rests on). bf16 resolves neither:

* ``bf16-mixed`` / ``16-mixed``: the masters move exactly, but under autocast every matmul reads
  them rounded to bf16 (a weight of 0.02 has a bf16 step of 1.2e-4), so ``w0 + delta`` and ``w0``
  mostly read as the same weights and the loss differences are rounding noise;
* ``bf16-true``: the update itself rounds away (``w0 - 1e-5 u`` is ``w0`` for most weights).

So by default (``scheduler.probe_precision: fp32``) every probe forward runs in fp32:

* mixed: without autocast, from the fp32 masters (a frozen half-precision weight -- LoRA's base --
  is read in fp32 for the probe and put back bit-exact); L0 is measured in fp32 too (the step's own
  loss was computed in the half dtype). Cost: one more forward per probe (L0), and the probe
  forwards in fp32 instead of the half dtype; no memory beyond fp32 activations of a no-grad pass.
* ``bf16-true``: an fp32 shadow of the step. The optimizer steps at ``k x lr`` (``k`` a power of two
  with ``k lr ~ 1``, where a bf16 weight resolves the move to ~0.4 %; every optimizer here moves
  the weights linearly in the rate and its moments do not depend on it), ``delta = (w_k - w0) / k``
  in fp32 is the update the optimizer proposes at ``lr``, the probes read ``w0 + r delta`` from
  fp32 weights (the model is held in fp32 for the probe's duration: one fp32 copy of the weights,
  plus ``delta`` in fp32), and the update taken is ``w0 + delta`` rounded to bf16 -- the step a
  bf16 optimizer takes, up to the rounding of its own arithmetic.
* FSDP: the sharded parameters' dtypes belong to FSDP (its policy casts the gathered weights), so
  the probes run in the policy's compute dtype (logged once) and rest on the noise floor below.

``probe_precision: run`` measures in the run's precision (the cheaper, noisier choice). Either way
each probe's signal -- the smaller of the fitted parabola's first- and second-order loss change at
the farthest probe, ``|b| x`` and ``|a| x^2 / 2`` -- is logged against the noise floor
``noise_floor x eps(probe dtype) x max |L|`` (``gen/signal``, ``gen/floor``); a fit below it is
rejected (``gen/reason: noise``), never taken, and counted (``gen_noise``, in the record).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from unlearn.batching import global_means, materialize
from unlearn.losses import Batch, lm_loss
from unlearn.step import plain_update

log = logging.getLogger(__name__)

FIT_LOSSES = ("retain", "forget", "objective")
SHADOW_REACH = 1.0  # bf16-true's shadow step moves a weight by ~k lr |u| ~ 1: bf16 resolves it to 2^-8


def fit_loss_value(kind: str, losses: Mapping[str, float]) -> float:
    """The scalar GeN fits along the step: L_R, -L_F (the ascent objective) or L_R - L_F."""
    if kind == "retain":
        return losses["retain"]
    if kind == "forget":
        return -losses["forget"]
    if kind == "objective":
        return losses["retain"] - losses["forget"]
    raise ValueError(f"unknown gen fit loss {kind!r}; valid: {', '.join(FIT_LOSSES)}")


class Prober:
    """The probes of one run: where (fp32 or the run's precision) and how the update is taken on a
    probe step. ``st`` is the engine's fixed step state (model, params, accelerator, precision)."""

    def __init__(self, st, sched, fit: str) -> None:
        if fit not in FIT_LOSSES:
            raise ValueError(f"unknown gen fit loss {fit!r}; valid: {', '.join(FIT_LOSSES)}")
        self.st, self.sched, self.fit = st, sched, fit
        mode = str(sched.cfg.get("probe_precision", "fp32"))  # checked by GeN itself, before any work
        half = st.precision.name != "32-true"
        if half and mode == "fp32" and st.sharded:
            log.warning("GeN under FSDP: the probes run in %s, the policy's compute dtype (FSDP owns the "
                        "sharded weights' dtype); fits below its noise floor are rejected", st.precision.compute_dtype)
        self.fp32 = half and mode == "fp32" and not st.sharded
        self.shadow = self.fp32 and st.precision.weight_dtype != torch.float32  # bf16-true
        probe_dtype = torch.float32 if (self.fp32 or not half) else st.precision.compute_dtype
        self.eps = torch.finfo(probe_dtype).eps
        self.noise_factor = float(sched.cfg.get("noise_floor", 1.0))

    def reuses_step_loss(self) -> bool:
        """L0 may be the step's own loss only when it was computed the way the probes compute."""
        return not self.fp32

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Around the probes: in fp32 mode every floating parameter is read in fp32 and put back to
        its dtype afterwards (trainable ones are then set by the caller)."""
        if not self.fp32:
            yield
            return
        cast = [(p, p.dtype) for p in self.st.model.parameters() if p.is_floating_point() and p.dtype != torch.float32]
        for p, _ in cast:
            p.data = p.data.float()
        try:
            yield
        finally:
            for p, dtype in cast:
                p.data = p.data.to(dtype)

    @torch.no_grad()
    def fit_losses(self, micro: Sequence[Mapping[str, Batch]], weights: Sequence[float]) -> float:
        """GeN's fitted loss on the effective batch (the batches carry its token normalizer), in the
        probes' precision; call inside :meth:`measuring`."""
        need = ("retain",) if self.fit == "retain" else ("forget",) if self.fit == "forget" else ("retain", "forget")
        # one autocast region per probe point: autocast caches its casts of the weights for the
        # region's length, and the weights change between the points
        with contextlib.nullcontext() if self.fp32 else self.st.autocast():
            sums = {t: sum(w * lm_loss(self.st.model, mb[t]) for mb, w in zip(micro, weights)) for t in need}
        return fit_loss_value(self.fit, global_means(sums, self.st.acc))

    def step(self, optim: torch.optim.Optimizer, w0: Sequence[torch.Tensor], lr: float) -> list[torch.Tensor] | None:
        """Take the update at ``lr``; under bf16-true's shadow return it in fp32 (None otherwise:
        the probes read it off the weights)."""
        if not self.shadow:
            optim.step()
            return None
        k = 2.0 ** max(0, math.ceil(math.log2(SHADOW_REACH / lr)))
        for g in optim.param_groups:
            g["lr"] = lr * k
        optim.step()
        for g in optim.param_groups:
            g["lr"] = lr
        with torch.no_grad():
            delta = [(p.float() - a.float()) / k for p, a in zip(self.st.params, w0)]
            for p, a, d in zip(self.st.params, w0, delta):
                p.copy_(a.float() + d)  # rounded to the weights' bf16: the update at lr
        return delta

    @torch.no_grad()
    def probe(self, w0, delta, batches, l0, lr, step: int) -> dict[str, Any]:
        """Measure the fitted loss at ``w0 + r delta`` for each of GeN's ratios ``r`` (and at w0 when
        ``l0`` is None), leave the weights at the update ``w1``, update the rate; the row's ``gen/``
        entries. ``scheduler.probe_eval``: the probes run in eval mode (no dropout)."""
        micro, weights = batches
        st = self.st
        w1 = [p.detach().clone() for p in st.params]
        if delta is None:
            at_ratio = _interpolate(st.params, w0, w1)
        else:
            at_ratio = lambda r: [p.copy_(a.float() + r * d) for p, a, d in zip(st.params, w0, delta)]  # noqa: E731
        training = st.model.training
        if self.sched.cfg.get("probe_eval"):
            st.model.eval()
        try:
            with self.measuring():
                def at(r: float) -> float:
                    at_ratio(r)
                    return self.fit_losses(micro, weights)

                l0 = at(0.0) if l0 is None else l0
                losses = {r: at(r) for r in self.sched.points}
        finally:
            for p, b in zip(st.params, w1):
                p.copy_(b)
            st.model.train(training)
        finite = [abs(v) for v in (l0, *losses.values()) if math.isfinite(v)]
        floor = self.noise_factor * self.eps * max(finite, default=0.0)
        res = self.sched.observe_points(step, l0, losses, lr, floor=floor)
        return {"gen/a": res.a, "gen/b": res.b, "gen/vertex": res.vertex, "gen/r2": res.r2,
                "gen/candidate": res.candidate, "gen/accepted": res.accepted, "gen/reason": res.reason,
                "gen/bound": res.bound, "gen/phase": res.phase, "gen/signal": res.signal, "gen/floor": floor,
                **{f"gen/{k}": v for k, v in res.losses.items()}}

    def trial(self, optim, w0, batches, l0, lr: float, step: int, row: dict[str, Any], *, undo_state: bool) -> float:
        """A probe made on a trial step: step at ``lr``, probe along it, put the weights back to w0 and
        return the new rate, at which the caller then takes the step's update. ``undo_state``: the
        optimizer's state is put back too (``trial_probe``: the update is a fixed-rate update at the
        fitted rate); not (``order: official``, AutoGeN's ``lr_parabola``: its moments advance twice)."""
        saved = copy.deepcopy(optim.state_dict()) if undo_state else None
        delta = self.step(optim, w0, lr)
        key = "trial/" if undo_state else "gen/"
        row.update({key + k.split("/", 1)[1]: v for k, v in self.probe(w0, delta, batches, l0, lr, step).items()})
        with torch.no_grad():
            for p, a in zip(self.st.params, w0):
                p.copy_(a)
        if saved is not None:
            optim.load_state_dict(saved)
        lr = self.sched.lr(step)
        for g in optim.param_groups:
            g["lr"] = lr
        row["lr"] = lr
        return lr


def _interpolate(params, w0, w1) -> Callable[[float], None]:
    """Set the weights to ``w0 + r (w1 - w0)``, the common ratios exactly as w1, w0 and 2 w0 - w1."""
    def at(r: float) -> None:
        for p, a, b in zip(params, w0, w1):
            p.copy_(b if r == 1 else a if r == 0 else 2 * a - b if r == -1 else a + r * (b - a))
    return at


class ProbedUpdate:
    """GeN's update (``loop.update`` when the scheduler probes): on a probe step, the weights before
    the update (w0), the probe batches and L0, an optional trial probe that sets the rate first
    (``trial_probe``, ``order: official``), the update, then the probes along it."""

    def __init__(self, prober: Prober) -> None:
        self.prober = prober

    def __call__(self, loop, state, row, lr, drawn, losses) -> None:
        sched, step, optim = loop.sched, state.step, loop.optim
        if not sched.should_probe(step):
            plain_update(loop, state, row, lr, drawn, losses)
            return
        w0, batches, l0 = self.inputs(loop, drawn, losses)
        official = sched.order == "official"
        if sched.trial(step) or official:  # the update then at the fitted rate
            lr = self.prober.trial(optim, w0, batches, l0, lr, step, row, undo_state=not official)
        delta = self.prober.step(optim, w0, lr)
        optim.zero_grad(set_to_none=True)
        loop.scaler.update(False)
        if not official:
            row.update(self.prober.probe(w0, delta, batches, l0, lr, step))

    def inputs(self, loop, drawn, losses):
        """A probe step's w0 (the weights before the update), its batches (the step's own, or with
        ``probe_batch: fresh`` a new random one) and L0: the step's loss when the probes compute
        the way the step did and the fitted tasks are plain LM losses, else None (measured at w0)."""
        prober = self.prober
        fresh = prober.sched.probe_batch == "fresh"
        lm = {t: losses[t] for t in prober.st.method.lm_tasks if t in losses}
        try:
            l0 = None if fresh or not prober.reuses_step_loss() else fit_loss_value(prober.fit, lm)
        except KeyError:
            l0 = None
        w0 = [p.detach().clone() for p in prober.st.params]
        micro, mweights = drawn[:2]
        if fresh:
            micro, mweights = materialize(loop.pairs, loop.pairs.fresh(loop.plan["batch_size"]), loop.pad_id,
                                          prober.st.acc)[:2]
        return w0, (micro, mweights), l0
