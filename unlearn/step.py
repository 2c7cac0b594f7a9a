"""One unlearning step, as its phases (DESIGN.md §5, §8): draw the effective batch, the task
gradients, their combination, clipping, the update. :func:`take_step` reads as that list; the loop
(:mod:`unlearn.engine`) runs it once per step and hands the row to the callbacks.

- **Draw**: ``batch_size x grad_accum_steps x processes`` forget examples, each paired with a seeded
  random retain example (TOFU's pairing), as one batch; this process takes its slice and cuts it
  into micro-batches (:mod:`unlearn.batching`).
- **Task gradients**: per task, the gradient accumulated over the micro-batches (synchronized across
  processes once, on the last); LM losses are token means over the whole effective batch, so every
  split of it takes the same update. Scalarizations without per-task statistics
  (``task_grad_stats: false``) accumulate ``sum_t w_t g_t`` straight into ``p.grad`` instead.
- **Combine**: the method's ``d = sum_t c_t g_t``, formed once in place and handed to the optimizer.
- **Divergence**: a non-finite loss stops the run before the update (status ``diverged``); under
  ``16-mixed`` a non-finite gradient skips the update and lowers the loss scale.
- **Clip** ``d`` to ``max_grad_norm`` (its pre-clip norm ``dir_norm`` is logged every step).
- **Update**: the optimizer's step, or GeN's probed step (:class:`unlearn.probes.ProbedUpdate`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from accelerate import Accelerator

from unlearn.batching import global_means, materialize
from unlearn.gradients import clip_direction, collect_task_gradients, set_gradient
from unlearn.methods import Method
from unlearn.precision import Precision

log = logging.getLogger("unlearn.engine")


@dataclass
class StepContext:
    """The pieces of the loop that stay fixed for a run."""

    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    method: Method
    acc: Accelerator
    precision: Precision
    sharded: bool
    reduce: Callable | None

    def autocast(self):
        return self.precision.autocast(self.acc.device, self.sharded)

    def closure(self, fn: Callable[[], torch.Tensor], factor: float) -> Callable[[], torch.Tensor]:
        """A task loss of one micro-batch, computed in the run's precision and scaled by its share."""
        def run() -> torch.Tensor:
            with self.autocast():
                loss = fn()
            return loss if factor == 1.0 else loss * factor
        return run

    def sync(self, last: bool):
        """Gradient synchronization only on a task's last micro-batch (DDP ``no_sync``, FSDP2's
        ``set_requires_gradient_sync``, both behind ``accelerator.no_sync``)."""
        return contextlib.nullcontext() if last or self.acc.num_processes == 1 else self.acc.no_sync(self.model)

    def any_process(self, flag: bool) -> bool:
        if self.acc.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.acc.device)
        return bool(self.acc.reduce(t, "sum").item() > 0)


@dataclass
class Loop:
    """One run's loop: the fixed step context and what each step uses."""

    st: StepContext
    optim: torch.optim.Optimizer
    sched: Any  # unlearn.scheduler_base.Scheduler
    pairs: Any  # unlearn.batching.PairedBatches
    plan: dict[str, int]
    total: int
    pad_id: int
    scaler: Any  # unlearn.precision.LossScaler or NoScaling
    backward: Callable[[torch.Tensor], None]
    update: Callable[..., float]  # plain_update or a ProbedUpdate
    max_norm: float | None
    summed: bool  # gradients accumulated as sum_t w_t g_t straight into p.grad


def take_step(loop: Loop, state, plan_step) -> dict[str, Any]:
    """One update (or a skipped or diverged step) of the planned micro-batches; the step's log row."""
    t0 = time.perf_counter()
    lr = set_rate(loop, state.step)
    drawn = materialize(loop.pairs, plan_step, loop.pad_id, loop.st.acc)
    tasks = task_closures(loop.st, *drawn)
    row: dict[str, Any] = {"step": state.step, "epoch": state.epoch, "lr": lr}
    values, found_inf = (summed_gradients if loop.summed else combined_gradients)(loop, tasks, row)
    losses = global_means(values, loop.st.acc)
    row.update({f"loss/{t}": v for t, v in losses.items()})
    if not all(math.isfinite(v) for v in losses.values()):
        return diverge(loop, state, row, losses)
    if found_inf:
        skip_update(loop, state, row)
    else:
        row.update(clip_direction(loop.st.params, loop.max_norm, loop.st.reduce))
        loop.update(loop, state, row, lr, drawn, losses)
    row.update(loop.scaler.state())
    row.update(loop.st.method.after_step(losses, state.epoch))  # e.g. PDU's dual update, logged in the row
    row.update(loop.sched.state())
    row["time"] = time.perf_counter() - t0
    state.result.final = losses
    return row


def set_rate(loop: Loop, step: int) -> float:
    lr = loop.sched.lr(step)
    for g in loop.optim.param_groups:
        g["lr"] = lr
    return lr


def task_closures(st: StepContext, micro, mweights, shares) -> dict[str, list[Callable[[], torch.Tensor]]]:
    """Per task, one loss closure per micro-batch, scaled by the micro-batch's share: token means
    are normalized by the batch itself, per-sequence means by ``share``."""
    token_tasks = set(st.method.token_mean_tasks)
    tasks: dict[str, list[Callable[[], torch.Tensor]]] = {}
    for mb, w, share in zip(micro, mweights, shares):
        for t, fn in st.method.task_losses(st.model, mb).items():
            tasks.setdefault(t, []).append(st.closure(fn, w * (1.0 if t in token_tasks else share[t])))
    return tasks


def combined_gradients(loop: Loop, tasks, row) -> tuple[dict[str, torch.Tensor], bool]:
    """Each task's gradient, then the method's combination of them as the parameters' gradient
    (not formed on an fp16 overflow); the per-task statistics go into ``row``."""
    st = loop.st
    values, grads = collect_task_gradients(st.params, tasks, loop.backward, st.reduce, st.sync)
    found_inf = overflowed(loop, grads.values())
    if not found_inf:
        coeffs = st.method.combination(grads)
        row.update(grads.stats(coeffs))
        set_gradient(st.params, grads.combine_into_place(coeffs))
    return values, found_inf


def summed_gradients(loop: Loop, tasks, row) -> tuple[dict[str, torch.Tensor], bool]:
    """``d = sum_t w_t g_t`` accumulated straight into ``p.grad``, one task's forward and backward at
    a time (a backward of the summed loss would hold every pending parameter gradient beside the
    accumulated one: two gradient-sized buffers, not one)."""
    st = loop.st
    loop.optim.zero_grad(set_to_none=True)
    weights = st.method.weights()  # per step: PDU's weights move
    n = len(next(iter(tasks.values())))
    values: dict[str, torch.Tensor] = {}
    for j in range(n):
        for k, (t, fns) in enumerate(tasks.items()):
            with st.sync(j == n - 1 and k == len(tasks) - 1):
                loss = fns[j]()
                loop.backward(weights[t] * loss)
            values[t] = loss.detach() if t not in values else values[t] + loss.detach()
    return values, overflowed(loop, [[p.grad for p in st.params]])


def overflowed(loop: Loop, grads) -> bool:
    """16-mixed: unscale the gradients; True when any process found a non-finite value."""
    if not loop.scaler.active:
        return False
    return loop.st.any_process(not all([loop.scaler.unscale_(g) for g in grads]))


def diverge(loop: Loop, state, row, losses) -> dict[str, Any]:
    result = state.result
    result.status, result.diverged_at = "diverged", state.step
    result.reason = f"non-finite loss at step {state.step}: {losses}"
    log.error("diverged: %s", result.reason)
    loop.optim.zero_grad(set_to_none=True)
    row["diverged"] = True
    return row


def skip_update(loop: Loop, state, row) -> None:
    """16-mixed: an overflowing gradient, the update is skipped and the loss scale lowered."""
    loop.optim.zero_grad(set_to_none=True)
    loop.scaler.update(True)
    state.result.skipped_steps += 1
    row["skipped"] = "non-finite gradient (fp16 overflow): update skipped, loss scale lowered"


def plain_update(loop: Loop, state, row, lr, drawn, losses) -> None:
    loop.optim.step()
    loop.optim.zero_grad(set_to_none=True)
    loop.scaler.update(False)
