"""The unlearning loop: build it, restore a resumed state, then one step at a time
(:func:`unlearn.step.take_step`: draw, task gradients, combine, clip, update) with the callbacks
(:mod:`unlearn.callbacks`) called after each step. Everything else a run does along the way is a
callback: the JSONL step log, the progress bar, trackers, trajectory evaluation and checkpoint
selection, the resumable state and preemption."""
from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from accelerate import Accelerator

from unlearn.batching import PairedBatches, batch_plan
from unlearn.callbacks import Callback, Callbacks, LoopState, Progress, ResumeSaving, StepLog, TrajectoryEvaluation
from unlearn.data import Feature
from unlearn.distributed import find_unused_parameters, is_fsdp, make_accelerator, sum_across
from unlearn.gradients import max_grad_norm, trainable_parameters
from unlearn.methods import Method, MethodContext
from unlearn.optimizers import build_optimizer
from unlearn.precision import NoScaling, Precision
from unlearn.probes import ProbedUpdate, Prober
from unlearn.resume import Resume, restore_state as _restore, state as _state
from unlearn.scheduler_base import Scheduler
from unlearn.step import Loop, StepContext, plain_update, take_step

log = logging.getLogger(__name__)


@dataclass
class EngineResult:
    status: str  # "ok" or "diverged"
    steps: int
    total_steps: int
    diverged_at: int | None = None
    reason: str | None = None
    final: dict[str, float] = field(default_factory=dict)
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    model: Any = None  # the trained model as the accelerator prepared it (DDP / FSDP wrapper)
    batch: dict[str, Any] = field(default_factory=dict)  # micro-batch, accumulation, processes, effective
    skipped_steps: int = 0  # 16-mixed: updates skipped on a non-finite gradient
    resumed_from: int | None = None  # the step a resumed run continued from
    stopped: str | None = None  # why a callback ended the loop before total_steps
    scheduler: dict[str, Any] = field(default_factory=dict)  # its final state (GeN: rate, probes, accepted, noise)


def unlearn(
    model: torch.nn.Module,
    method: Method,
    scheduler_factory: Callable[[int, int], Scheduler],
    forget: Sequence[Feature],
    retain: Sequence[Feature],
    cfg: Mapping[str, Any],
    *,
    pad_id: int,
    seed: int,
    log_path: str | Path,
    accelerator: Accelerator | None = None,
    fit: str = "retain",
    trajectory: Callable[[int, torch.nn.Module], dict[str, Any]] | None = None,
    trajectory_every: int = 0,
    context: MethodContext | None = None,
    precision: Precision | None = None,
    resume: Resume | None = None,
    callbacks: Sequence[Callback] = (),
) -> EngineResult:
    """Unlearn in place. ``cfg`` is the method node (lr, epochs, batch_size, grad_accum_steps,
    max_grad_norm, optimizer, ...); ``scheduler_factory(total_steps, steps_per_epoch)``;
    ``trajectory(step, model)``: the summary evaluated every ``trajectory_every`` steps;
    ``resume``: where the
    resumable state is saved every ``resume.every`` steps, and the state a killed run left there
    to continue from; ``callbacks``: called in order before the step log (keys they add to a row
    are logged), the progress bar, trajectory evaluation and the resumable state
    (:mod:`unlearn.callbacks`)."""
    loop = build_loop(model, method, scheduler_factory, forget, retain, cfg, pad_id=pad_id, seed=seed,
                      accelerator=accelerator, fit=fit, context=context, precision=precision)
    called = Callbacks([
        *callbacks, StepLog(log_path), Progress(f"unlearn[{cfg['name']}]"),
        TrajectoryEvaluation(trajectory, trajectory_every, loop.st.autocast)
        if trajectory is not None and trajectory_every > 0 else None,
        ResumeSaving(resume, lambda s: resumable_state(loop, s), loop.st.any_process) if resume is not None else None,
    ])
    state = LoopState(model=loop.st.model, optimizer=loop.optim, scheduler=loop.sched, accelerator=loop.st.acc,
                      method=method, total_steps=loop.total, callbacks=called,
                      result=EngineResult(status="ok", steps=0, total_steps=loop.total, batch=loop.plan))
    t_start = time.perf_counter()
    restore(loop, state, resume)
    with state.stack:
        state.callbacks.on_train_start(state)
        for plan_step in planned_steps(loop, state):
            row = take_step(loop, state, plan_step)
            if not row.get("diverged"):
                state.step += 1
                state.pos += 1
            state.callbacks.on_step_end(state, row)
    return finish(loop, state, t_start)


def build_loop(model, method: Method, scheduler_factory, forget, retain, cfg, *, pad_id: int, seed: int,
               accelerator, fit: str, context: MethodContext | None, precision: Precision | None) -> Loop:
    """The batches and their plan, the scheduler, the optimizer, the model as the accelerator
    prepares it (DDP, FSDP2), the loss scale and the update (plain, or GeN's probed one)."""
    acc = accelerator if accelerator is not None else make_accelerator()
    precision = precision or Precision()
    plan = batch_plan(cfg, acc.num_processes)
    rule = str(cfg.get("step_rule", "epochs"))
    pairs = PairedBatches(forget, retain, plan["effective_batch"], seed, acc.process_index, acc.num_processes,
                          drop_last=rule == "full_batches")
    total = pairs.total_steps(rule, int(cfg["epochs"]))
    if cfg.get("max_steps"):
        total = min(total, int(cfg["max_steps"]))
    sched = scheduler_factory(total, len(forget) / plan["effective_batch"])
    method.prepare_model(model)  # e.g. RMU trains only its layers: before the optimizer sees them
    optim = build_optimizer(trainable_parameters(model), cfg)
    find_unused_parameters(acc, method.unused_parameters)
    if is_fsdp(acc):
        from unlearn.fsdp import configure_accelerate_fsdp

        configure_accelerate_fsdp(acc, model, precision.fsdp_policy())
    model, optim = acc.prepare(model, optim)
    params = trainable_parameters(model)  # after prepare: FSDP replaces the parameters by shards
    st = StepContext(model, params, method, acc, precision, is_fsdp(acc), sum_across(acc))
    update = ProbedUpdate(Prober(st, sched, fit)) if sched.probes else plain_update
    scaler = precision.loss_scaler() or NoScaling()
    setup_method(method, context, acc, cfg)
    model.train()
    summed = method.weights() is not None and not bool(cfg.get("task_grad_stats", True))
    return Loop(st, optim, sched, pairs, plan, total, pad_id, scaler, scaler.scaled(acc.backward), update,
                max_grad_norm(cfg), summed)


def setup_method(method: Method, context: MethodContext | None, acc, cfg) -> None:
    if context is not None:
        method.setup(dataclasses.replace(context, device=acc.device))
    elif method.needs_context():
        raise ValueError(f"method {cfg['name']!r} precomputes from its data (reference model, alternative "
                         "answers): unlearn() needs its `context`")


def planned_steps(loop: Loop, state: LoopState) -> Iterator[Any]:
    """The planned micro-batches of each step, epoch after epoch from the state's position, until
    ``total`` updates (``step_rule: tofu`` may end mid-epoch), a diverged step or a callback's
    ``state.stop``."""
    start_epoch, start_pos = state.epoch, state.pos
    for epoch in itertools.count(start_epoch):
        state.epoch, state.pos = epoch, (start_pos if epoch == start_epoch else 0)
        for plan_step in loop.pairs.steps(epoch, loop.plan["batch_size"], synced=loop.st.sharded, start=state.pos):
            if state.step >= loop.total:
                return
            yield plan_step
            if state.result.status != "ok" or state.stop is not None:
                return
        if state.step >= loop.total:
            return


def restore(loop: Loop, state: LoopState, resume: Resume | None) -> None:
    """Continue a killed or interrupted run exactly where its state was saved (nothing to do
    without a saved state of this run)."""
    loaded = resume.load() if resume is not None else None
    if loaded is None:
        return
    state.step, state.epoch, state.pos = _restore(loaded, loop.st.model, loop.st.acc, loop.optim, loop.sched,
                                                  loop.pairs, loop.scaler, state.result)
    state.resumed, state.log_bytes = loaded, loaded["log_bytes"]
    state.result.resumed_from = state.step
    state.method.load_state_dict(loaded.get("method") or {})
    state.callbacks.load_state_dict(loaded.get("extra") or {})
    log.info("resuming from step %d of %d (%s)", state.step, loop.total, resume.path)


def resumable_state(loop: Loop, state: LoopState) -> dict[str, Any]:
    """Everything the next step depends on (:func:`unlearn.resume.state`), the method's state and
    the callbacks' (``extra``)."""
    return _state(state.step, state.epoch, state.pos, loop.st.model, loop.st.acc, loop.optim, loop.sched, loop.pairs,
                  loop.scaler, state.result, state.log_bytes, state.callbacks.state_dict()) | {
        "method": state.method.state_dict()}


def finish(loop: Loop, state: LoopState, t_start: float) -> EngineResult:
    result = state.result
    result.scheduler = loop.sched.state()
    if result.scheduler.get("gen_noise"):
        log.warning("GeN: %d of %d probes were below the noise floor of %s and were not taken (the rate "
                    "stayed): the update is too small to measure; raise method.lr", result.scheduler["gen_noise"],
                    result.scheduler["gen_probes"], loop.st.precision.name)
    result.steps, result.stopped = state.step, state.stop
    if state.stop is not None:
        log.info("stopped after step %d of %d: %s", state.step, loop.total, state.stop)
    result.seconds = time.perf_counter() - t_start
    result.model = loop.st.model
    loop.st.model.eval()
    state.callbacks.on_train_end(state, result)
    return result
