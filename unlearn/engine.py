"""The unlearning loop: forget/retain pairing, per-task gradients, directions, GeN probes, logs.

One step (DESIGN.md §5, §8):
1. set the scheduler's learning rate;
2. draw the effective batch -- ``batch_size x grad_accum_steps x processes`` forget examples,
   each paired with a seeded random retain example (TOFU's pairing) -- as one batch; this
   process takes its slice ``[rank::W]`` and cuts it into micro-batches of ``batch_size``
   (:mod:`unlearn.batching`);
3. per task, the gradient accumulated over the micro-batches (synchronized across processes once,
   on the last) -> the method's combination d = sum_t c_t g_t of the accumulated task gradients,
   formed once per step in place and handed to the optimizer as the gradient (scalarizations
   without per-task statistics accumulate sum_t w_t g_t straight into ``p.grad``); LM losses are token means
   over the whole effective batch, so every split of it takes the same update;
4. a non-finite loss stops the run before the update (status ``diverged``); under ``16-mixed`` a
   non-finite gradient skips the update and lowers the loss scale (:mod:`unlearn.precision`);
5. ``max_grad_norm`` clips d (its pre-clip norm ``dir_norm`` is logged every step);
6. GeN probe steps measure the fitted loss on the effective batch at w0 + delta and w0 - delta, in
   fp32 whatever the run's precision (:mod:`unlearn.probes`);
7. one JSONL row (main process): task losses, task gradient norms, cos(g_F, g_R), <d, g_t>, ||d||,
   lr, step time -- every value global, the same on every process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from unlearn.batching import PairedBatches, batch_plan, global_means, normalize_batches
from unlearn.data import Feature
from unlearn.distributed import find_unused_parameters, is_fsdp, make_accelerator, sum_across
from unlearn.gradients import (clip_direction, collect_task_gradients, max_grad_norm, set_gradient,
                               trainable_parameters)
from unlearn.methods import Method, MethodContext
from unlearn.optimizers import build_optimizer
from unlearn.precision import Precision
from unlearn.probes import Prober, fit_loss_value
from unlearn.resume import Resume, restore_state as _restore, state as _state
from unlearn.schedulers import Scheduler

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
    scheduler: dict[str, Any] = field(default_factory=dict)  # its final state (GeN: rate, probes, accepted, noise)


@dataclass
class _Step:
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
    on_row: Callable[[dict[str, Any]], None] | None = None,
    resume: Resume | None = None,
) -> EngineResult:
    """Unlearn in place. ``cfg`` is the method node (lr, epochs, batch_size, grad_accum_steps,
    max_grad_norm, optimizer, ...); ``scheduler_factory(total_steps, steps_per_epoch)``;
    ``on_row``: called with each step's log row (an experiment tracker), after it is written;
    ``resume``: where the resumable state is saved every ``resume.every`` steps, and the state a
    killed run left there to continue from (:class:`Resume`)."""
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
    max_norm = max_grad_norm(cfg)
    method.prepare_model(model)  # e.g. RMU trains only its layers: before the optimizer sees them
    optim = build_optimizer(trainable_parameters(model), cfg)
    find_unused_parameters(acc, method.unused_parameters)
    if is_fsdp(acc):
        from unlearn.fsdp import configure_accelerate_fsdp

        configure_accelerate_fsdp(acc, model, precision.fsdp_policy())
    model, optim = acc.prepare(model, optim)
    params = trainable_parameters(model)  # after prepare: FSDP replaces the parameters by shards
    st = _Step(model, params, method, acc, precision, is_fsdp(acc), sum_across(acc))
    prober = Prober(st, sched, fit) if sched.probes else None
    scaler = precision.loss_scaler()
    backward = acc.backward if scaler is None else scaler.scaled(acc.backward)
    if context is not None:
        method.setup(dataclasses.replace(context, device=acc.device))
    elif method.needs_context():
        raise ValueError(f"method {cfg['name']!r} precomputes from its data (reference model, alternative "
                         "answers): unlearn() needs its `context`")
    model.train()
    summed = method.weights() is not None and not bool(cfg.get("task_grad_stats", True))
    token_tasks = set(method.token_mean_tasks)
    result = EngineResult(status="ok", steps=0, total_steps=total, batch=plan)
    t_start = time.perf_counter()
    log_path = Path(log_path)
    main = acc.is_main_process
    if main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=total, desc=f"unlearn[{cfg['name']}]", disable=not main)

    def evaluate(step: int) -> None:
        with st.autocast():
            result.trajectory.append({"step": step, **trajectory(step, model)})
        model.train()

    step, start_epoch, start_pos = 0, 0, 0
    loaded = resume.load() if resume is not None else None
    if loaded is not None:  # continue a killed or interrupted run exactly where its state was saved
        step, start_epoch, start_pos = _restore(loaded, model, acc, optim, sched, pairs, scaler, result)
        result.resumed_from = step
        method.load_state_dict(loaded.get("method") or {})
        if resume.restore_extra is not None:
            resume.restore_extra(loaded.get("extra") or {})
        bar.update(step)
        log.info("resuming from step %d of %d (%s)", step, total, resume.path)
    mode = "w" if loaded is None else "r+"
    guard = resume.preemption() if resume is not None else contextlib.nullcontext()
    with guard as preempt, (open(log_path, mode) if main else contextlib.nullcontext()) as jsonl:
        if loaded is not None and jsonl is not None:  # the step log as it was when the state was saved
            jsonl.truncate(loaded["log_bytes"])
            jsonl.seek(loaded["log_bytes"])
        if trajectory is not None and trajectory_every > 0 and loaded is None:
            evaluate(0)
        for epoch in itertools.count(start_epoch):  # until `total` updates (step_rule tofu may end mid-epoch)
            pos = start_pos if epoch == start_epoch else 0
            for plan_step in pairs.steps(epoch, plan["batch_size"], synced=st.sharded, start=pos):
                if step >= total:
                    break
                t0 = time.perf_counter()
                lr = sched.lr(step)
                for g in optim.param_groups:
                    g["lr"] = lr
                micro, mweights, shares = _materialize(pairs, plan_step, pad_id, acc)
                tasks: dict[str, list[Callable[[], torch.Tensor]]] = {}
                for mb, w, share in zip(micro, mweights, shares):
                    for t, fn in method.task_losses(model, mb).items():
                        # token means are normalized by the batch itself; per-sequence means by share
                        tasks.setdefault(t, []).append(st.closure(fn, w * (1.0 if t in token_tasks else share[t])))
                row: dict[str, Any] = {"step": step, "epoch": epoch, "lr": lr}
                if summed:
                    # d = sum_t w_t g_t accumulated straight into p.grad, one task's forward and backward
                    # at a time (a backward of the summed loss would hold every pending parameter
                    # gradient beside the accumulated one: two gradient-sized buffers, not one)
                    optim.zero_grad(set_to_none=True)
                    weights, n = method.weights(), len(micro)  # per step: PDU's weights move
                    values = {}
                    for j in range(n):
                        for k, (t, fns) in enumerate(tasks.items()):
                            with st.sync(j == n - 1 and k == len(tasks) - 1):
                                loss = fns[j]()
                                backward(weights[t] * loss)
                            values[t] = loss.detach() if t not in values else values[t] + loss.detach()
                    found_inf = scaler is not None and not scaler.unscale_([p.grad for p in params])
                else:
                    values, grads = collect_task_gradients(params, tasks, backward, st.reduce, st.sync)
                    found_inf = scaler is not None and not all([scaler.unscale_(g) for g in grads.values()])
                found_inf = st.any_process(found_inf) if scaler is not None else False
                if not summed and not found_inf:
                    coeffs = method.combination(grads)
                    row.update(grads.stats(coeffs))
                    set_gradient(params, grads.combine_into_place(coeffs))
                if not summed:
                    del grads
                losses = global_means(values, acc)
                row.update({f"loss/{t}": v for t, v in losses.items()})
                if not all(math.isfinite(v) for v in losses.values()):
                    result.status, result.diverged_at = "diverged", step
                    result.reason = f"non-finite loss at step {step}: {losses}"
                    log.error("diverged: %s", result.reason)
                    optim.zero_grad(set_to_none=True)
                    row["diverged"] = True
                    if jsonl is not None:
                        jsonl.write(json.dumps(_finite(row)) + "\n")
                    break
                if found_inf:  # 16-mixed: an overflowing gradient, the update is skipped
                    optim.zero_grad(set_to_none=True)
                    scaler.update(True)
                    result.skipped_steps += 1
                    row["skipped"] = "non-finite gradient (fp16 overflow): update skipped, loss scale lowered"
                else:
                    row.update(clip_direction(params, max_norm, st.reduce))
                    probe = prober is not None and sched.should_probe(step)
                    delta = None
                    if probe:
                        w0, batches, l0 = _probe_inputs(prober, pairs, plan, micro, mweights, losses, pad_id, acc)
                        if sched.trial(step) or sched.order == "official":  # the update then at the fitted rate
                            lr = prober.trial(optim, w0, batches, l0, lr, step, row, undo_state=sched.order != "official")
                        delta = prober.step(optim, w0, lr)
                    else:
                        optim.step()
                    optim.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.update(False)
                    if probe and sched.order != "official":
                        row.update(prober.probe(w0, delta, batches, l0, lr, step))
                    if probe:
                        del w0, delta
                if scaler is not None:
                    row.update(scaler.state())
                row.update(method.after_step(losses, epoch))  # e.g. PDU's dual update, logged in the row
                row.update(sched.state())
                row["time"] = time.perf_counter() - t0
                if jsonl is not None:
                    jsonl.write(json.dumps(_finite(row)) + "\n")
                    jsonl.flush()
                if on_row is not None:
                    on_row(row)
                result.final = losses
                step += 1
                bar.update(1)
                bar.set_postfix({k.split("/")[-1][:6]: f"{v:.3g}" for k, v in row.items() if k.startswith("loss/")} | {"lr": f"{lr:.2e}"})
                if trajectory is not None and trajectory_every > 0 and (step % trajectory_every == 0 or step == total):
                    evaluate(step)
                pos += 1
                # every `every` steps, after the last one (a kill during evaluation then redoes no step) and
                # when the job is preempted (SLURM: the requeued job continues from this step)
                preempted = (preempt is not None and preempt.signum is not None  # every process at the same step
                             and st.any_process(preempt.requested))
                if resume is not None and resume.every > 0 and (step % resume.every == 0 or step == total or preempted):
                    if jsonl is not None:
                        jsonl.flush()
                    resume.save(lambda: _state(step, epoch, pos, model, acc, optim, sched, pairs, scaler, result,
                                               jsonl.tell() if jsonl is not None else 0,
                                               resume.extra() if resume.extra is not None else None)
                                | {"method": method.state_dict()}, main)
                    if preempted:
                        preempt.hand_over()
            if result.status != "ok" or step >= total:
                break
    bar.close()
    result.scheduler = sched.state()
    if result.scheduler.get("gen_noise"):
        log.warning("GeN: %d of %d probes were below the noise floor of %s and were not taken (the rate "
                    "stayed): the update is too small to measure; raise method.lr", result.scheduler["gen_noise"],
                    result.scheduler["gen_probes"], precision.name)
    result.steps = step
    result.seconds = time.perf_counter() - t_start
    result.model = model
    model.eval()
    return result


def _finite(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: write them as strings so the log stays valid and the value visible."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _materialize(pairs: PairedBatches, plan_step, pad_id: int, acc):
    """(micro-batches on the device, their weights, their sequence shares) of one planned step."""
    micro = [{"forget": pairs.batch("forget", m.forget, pad_id, acc.device),
              "retain": pairs.batch("retain", m.retain, pad_id, acc.device)} for m in plan_step]
    weights = [m.weight for m in plan_step]
    return micro, weights, normalize_batches(micro, weights, acc)


def _probe_inputs(prober: Prober, pairs, plan, micro, mweights, losses, pad_id: int, acc):
    """A probe step's w0 (the weights before the update), its batches (the step's own, or with
    ``probe_batch: fresh`` a new random one) and L0: the step's loss when the probes compute the
    way the step did and the fitted tasks are plain LM losses, else None (measured at w0)."""
    fresh = prober.sched.probe_batch == "fresh"
    lm = {t: losses[t] for t in prober.st.method.lm_tasks if t in losses}
    try:
        l0 = None if fresh or not prober.reuses_step_loss() else fit_loss_value(prober.fit, lm)
    except KeyError:
        l0 = None
    w0 = [p.detach().clone() for p in prober.st.params]
    batches = (_materialize(pairs, pairs.fresh(plan["batch_size"]), pad_id, acc)[:2] if fresh
               else (micro, mweights))
    return w0, batches, l0
