"""The unlearning loop: forget/retain pairing, per-task gradients, directions, GeN probes, logs.

One step (DESIGN.md §5):
1. set the scheduler's learning rate;
2. take the next forget batch and a seeded random retain batch (TOFU pairs every forget example
   with a random retain example); under W processes both global batches are drawn as in one
   process and each process takes its slice ``[rank::W]``;
3. per-task losses and gradients -> the method's direction d, handed to the optimizer as the
   gradient (scalarizations may instead use one backward of their weighted sum); LM losses are
   token means over the GLOBAL batch (the batch's ``token_normalizer``), so a W-process step is
   the 1-process step on the concatenated batch (:mod:`unlearn.distributed`);
4. a non-finite loss stops the run before the update (status ``diverged``);
5. GeN probe steps measure the fitted loss at w0 + delta and w0 - delta and update the rate;
6. one JSONL row (main process): task losses, task gradient norms, cos(g_F, g_R), <d, g_t>, lr,
   step time -- every value global, the same on every process.
"""
from __future__ import annotations

import contextlib
import dataclasses
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

from unlearn.data import Feature, collate
from unlearn.distributed import make_accelerator, sum_across
from unlearn.gradients import collect_task_gradients, set_gradient, trainable_parameters
from unlearn.losses import TOKEN_NORMALIZER, Batch, lm_loss, scored_tokens
from unlearn.methods import Method, MethodContext
from unlearn.schedulers import Scheduler

log = logging.getLogger(__name__)

FIT_LOSSES = ("retain", "forget", "objective")


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


class PairedBatches:
    """Epochs over the forget set, each forget batch paired with random retain examples.

    Global batches are formed exactly as in one process: the forget order is seeded by (seed,
    epoch), and each step draws one retain index per forget example from ONE generator seeded by
    the run seed only. Process r of W then takes items r, r+W, ... of both, so the processes see
    different retain samples and their union is the 1-process batch. A trailing forget batch with
    fewer than W examples (some process would get none) is skipped when W > 1.
    """

    def __init__(
        self,
        forget: Sequence[Feature],
        retain: Sequence[Feature],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not forget:
            raise ValueError("the forget set is empty")
        if not retain:
            raise ValueError("the retain set is empty")
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world} processes")
        self.forget, self.retain = forget, retain
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        # one stream for every process (the stream a 1-process run drew before: rank 0's seed)
        self.retain_gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919)
        if len(forget) < world:
            raise ValueError(f"the forget set ({len(forget)} examples) is smaller than the {world} processes")
        rest = len(forget) % batch_size
        if rest and rest < world:
            log.warning("the last forget batch of each epoch (%d examples) is skipped: fewer than the %d processes",
                        rest, world)

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(len(self.forget), self.batch_size)
        return full + (1 if rest >= self.world else 0)

    def epoch(self, epoch: int):
        """Yield (forget indices, retain indices) of this process, step by step."""
        order = torch.randperm(len(self.forget), generator=torch.Generator().manual_seed(self.seed + 104729 * epoch)).tolist()
        for i in range(0, len(order), self.batch_size):
            forget = order[i : i + self.batch_size]
            if len(forget) < self.world:
                continue
            retain = torch.randint(len(self.retain), (len(forget),), generator=self.retain_gen).tolist()
            yield forget[self.rank :: self.world], retain[self.rank :: self.world]

    def batch(self, which: str, index: Sequence[int], pad_id: int, device) -> dict[str, torch.Tensor]:
        feats = self.forget if which == "forget" else self.retain
        out = _to(collate([feats[j] for j in index], pad_id), device)
        out["index"] = torch.tensor(index, dtype=torch.long, device=device)
        return out


def _to(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def build_optimizer(params: Sequence[torch.nn.Parameter], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(cfg.get("optimizer", "adamw"))
    lr, wd = float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(cfg.get("momentum", 0.0)))
    raise ValueError(f"unknown optimizer {name!r}; valid: adamw, sgd")


def fit_loss_value(kind: str, losses: Mapping[str, float]) -> float:
    """The scalar GeN fits along the step: L_R, -L_F (the ascent objective) or L_R - L_F."""
    if kind == "retain":
        return losses["retain"]
    if kind == "forget":
        return -losses["forget"]
    if kind == "objective":
        return losses["retain"] - losses["forget"]
    raise ValueError(f"unknown gen fit loss {kind!r}; valid: {', '.join(FIT_LOSSES)}")


def unlearn(
    model: torch.nn.Module,
    method: Method,
    scheduler_factory: Callable[[int], Scheduler],
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
) -> EngineResult:
    """Unlearn in place. ``cfg`` is the method node (lr, epochs, batch_size, optimizer, ...)."""
    if fit not in FIT_LOSSES:
        raise ValueError(f"unknown gen fit loss {fit!r}; valid: {', '.join(FIT_LOSSES)}")
    acc = accelerator if accelerator is not None else make_accelerator()
    pairs = PairedBatches(forget, retain, int(cfg["batch_size"]), seed, acc.process_index, acc.num_processes)
    total = pairs.steps_per_epoch * int(cfg["epochs"])
    if cfg.get("max_steps"):
        total = min(total, int(cfg["max_steps"]))
    sched = scheduler_factory(total)
    optim = build_optimizer(trainable_parameters(model), cfg)
    model, optim = acc.prepare(model, optim)
    params = trainable_parameters(model)  # after prepare: FSDP replaces the parameters by shards
    reduce = sum_across(acc)  # FSDP: per-shard inner products summed across processes
    if context is not None:
        method.setup(dataclasses.replace(context, device=acc.device))
    elif type(method).setup is not Method.setup:
        raise ValueError(f"method {cfg['name']!r} precomputes from its data (reference model, alternative "
                         "answers): unlearn() needs its `context`")
    model.train()
    stats_for_scalarization = bool(cfg.get("task_grad_stats", True))
    weights = method.weights()
    lm_tasks = set(method.lm_tasks)
    result = EngineResult(status="ok", steps=0, total_steps=total)
    t_start = time.perf_counter()
    log_path = Path(log_path)
    main = acc.is_main_process
    if main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=total, desc=f"unlearn[{cfg['name']}]", disable=not main)
    step = 0
    with (open(log_path, "w") if main else contextlib.nullcontext()) as jsonl:
        if trajectory is not None and trajectory_every > 0:
            result.trajectory.append({"step": 0, **trajectory(0, model)})
        for epoch in range(int(cfg["epochs"])):
            for f_idx, r_idx in pairs.epoch(epoch):
                if step >= total:
                    break
                t0 = time.perf_counter()
                lr = sched.lr(step)
                for g in optim.param_groups:
                    g["lr"] = lr
                batches: dict[str, Batch] = {
                    "forget": pairs.batch("forget", f_idx, pad_id, acc.device),
                    "retain": pairs.batch("retain", r_idx, pad_id, acc.device),
                }
                shares = normalize_batches(batches, acc)
                closures = method.task_losses(model, batches)
                for t, share in shares.items():  # per-sequence means of an uneven split (see below)
                    if t in closures and t not in lm_tasks and share != 1.0:
                        closures[t] = _scaled(closures[t], share)
                row: dict[str, Any] = {"step": step, "epoch": epoch, "lr": lr}
                if weights is not None and not stats_for_scalarization:
                    optim.zero_grad(set_to_none=True)
                    parts = {t: fn() for t, fn in closures.items()}
                    acc.backward(sum(weights[t] * parts[t] for t in parts))
                    values = {t: v.detach() for t, v in parts.items()}
                else:
                    values, grads = collect_task_gradients(params, closures, acc.backward, reduce)
                    direction = method.direction(grads)
                    row.update(grads.stats(direction))
                    set_gradient(params, direction)
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
                probe = sched.probes and sched.should_probe(step)
                if probe:
                    # L0 reuses the step's values only for tasks whose loss is the plain LM loss
                    lm = {t: losses[t] for t in method.lm_tasks if t in losses}
                    l0 = _fit_at_current(model, fit, batches, lm, acc)
                    w0 = [p.detach().clone() for p in params]
                optim.step()
                optim.zero_grad(set_to_none=True)
                if probe:
                    row.update(_probe(model, params, w0, fit, batches, l0, lr, sched, step, acc))
                    del w0
                row.update(sched.state())
                row["time"] = time.perf_counter() - t0
                if jsonl is not None:
                    jsonl.write(json.dumps(_finite(row)) + "\n")
                    jsonl.flush()
                result.final = losses
                step += 1
                bar.update(1)
                bar.set_postfix({k.split("/")[-1][:6]: f"{v:.3g}" for k, v in row.items() if k.startswith("loss/")} | {"lr": f"{lr:.2e}"})
                if trajectory is not None and trajectory_every > 0 and (step % trajectory_every == 0 or step == total):
                    result.trajectory.append({"step": step, **trajectory(step, model)})
                    model.train()
            if result.status != "ok" or step >= total:
                break
    bar.close()
    result.steps = step
    result.seconds = time.perf_counter() - t_start
    result.model = model
    model.eval()
    return result


def normalize_batches(batches: dict[str, dict[str, torch.Tensor]], acc: Accelerator) -> dict[str, float]:
    """Make this process's losses parts of the global batch's losses (one all-reduce per step).

    Each batch gets ``token_normalizer`` = (global scored-token count) / W, so :func:`lm_loss` on
    it is this process's summed NLL over that: the mean across processes of the loss (and DDP's
    average of the gradients) is the global token mean. Returns each batch's sequence share
    ``n_local * W / n_global`` (1 when the batch is split evenly), the factor that makes a
    per-sequence mean of this process's part average to the global per-sequence mean.
    """
    names = list(batches)
    local = [float(scored_tokens(batches[t]["labels"])) for t in names] + \
            [float(batches[t]["input_ids"].shape[0]) for t in names]
    world = acc.num_processes
    counts = torch.tensor(local, dtype=torch.float64, device=acc.device)
    if world > 1:
        counts = acc.reduce(counts, "sum")
    counts = counts.tolist()
    shares = {}
    for k, t in enumerate(names):
        tokens, seqs = counts[k], counts[len(names) + k]
        batches[t][TOKEN_NORMALIZER] = torch.tensor(max(tokens, 1.0) / world, dtype=torch.float32,
                                                    device=acc.device)
        shares[t] = local[len(names) + k] * world / seqs
    return shares


def global_means(values: Mapping[str, torch.Tensor], acc: Accelerator) -> dict[str, float]:
    """Each task's loss averaged across processes (one all-reduce): with the normalization of
    :func:`normalize_batches`, the loss of the global batch -- the same number on every process."""
    names = list(values)
    if not names:
        return {}
    stacked = torch.stack([values[t].detach().float().reshape(()) for t in names])
    if acc.num_processes > 1:
        stacked = acc.reduce(stacked, "mean")
    return dict(zip(names, (float(v) for v in stacked.tolist())))


def _scaled(fn: Callable[[], torch.Tensor], factor: float) -> Callable[[], torch.Tensor]:
    return lambda: fn() * factor


def _finite(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: write them as strings so the log stays valid and the value visible."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


@torch.no_grad()
def _fit_losses(model: torch.nn.Module, fit: str, batches: Mapping[str, Batch], acc: Accelerator) -> float:
    need = ("retain",) if fit == "retain" else ("forget",) if fit == "forget" else ("retain", "forget")
    # the batches carry the step's token normalizer: the mean across processes is the global loss
    return fit_loss_value(fit, global_means({t: lm_loss(model, batches[t]) for t in need}, acc))


def _fit_at_current(model, fit, batches, losses, acc) -> float:
    """L0: reuse the step's own losses when they cover the fitted loss (no extra forward)."""
    try:
        return fit_loss_value(fit, losses)
    except KeyError:
        return _fit_losses(model, fit, batches, acc)


@torch.no_grad()
def _probe(model, params, w0, fit, batches, l0, lr, sched, step, acc) -> dict[str, Any]:
    """Measure the fitted loss at w1 = w0 + delta and at w0 - delta, restore w1, update the rate."""
    l_step = _fit_losses(model, fit, batches, acc)
    w1 = [p.detach().clone() for p in params]
    for p, a, b in zip(params, w0, w1):
        p.copy_(2 * a - b)  # w0 - delta
    l_back = _fit_losses(model, fit, batches, acc)
    for p, b in zip(params, w1):
        p.copy_(b)
    res = sched.observe(step, l0, l_step, l_back, lr)
    return {
        "gen/a": res.a, "gen/b": res.b, "gen/candidate": res.candidate, "gen/accepted": res.accepted,
        "gen/reason": res.reason, "gen/l0": l0, "gen/l_step": l_step, "gen/l_back": l_back,
    }
