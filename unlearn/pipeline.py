"""An unlearning run, start to finish: decide (validate, reuse or not) -> prepare (stages,
reference evaluations) -> unlearn -> save -> evaluate -> record. ``run.py`` and the tests call
:func:`run`; nothing here needs Hydra to have started. What every run shares (deciding, preparing,
evaluating, recording; also the evaluation of a saved checkpoint, :mod:`unlearn.checkpoint_eval`)
is :mod:`unlearn.runner`; the phases only unlearning has are here.

Under several processes (``torchrun``, ``accelerate launch``; see :mod:`unlearn.distributed` for
the commands) unlearning is data-parallel and only the main process writes the step log and the
checkpoint. What a run does along the way (trackers, checkpoint selection, open-unlearning's files,
your own) are callbacks (:mod:`unlearn.callbacks`), built by :func:`unlearn.runner.run_callbacks`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from unlearn import distributed as dist_utils
from unlearn.benchmarks import Benchmark
from unlearn.callbacks import STEP_LOG, Callback
from unlearn.callbacks.ou_files import OU_LOGS
from unlearn.callbacks.selection import Selection
from unlearn.engine import EngineResult, unlearn
from unlearn.methods import build_method
from unlearn.models import configure_training, torch_dtype
from unlearn.precision import to_storage
from unlearn.preparation import Prepared
from unlearn.resume import Resume, load_trainable_state
from unlearn.run_logs import RUN_LOG
from unlearn.runner import RESUME_DIR, RESUME_STATE, Flow, Run, evaluate, execute, prepare, run_callbacks
from unlearn.schedulers import build_scheduler
from unlearn.validation import run_precision, validate

__all__ = ["OU_LOGS", "RUN_LOG", "STEP_LOG", "UNLEARN", "run"]


def run(cfg: DictConfig, run_dir: str | Path | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Run one config; ``callbacks``: yours, called after the built-in ones (:mod:`unlearn.callbacks`)."""
    return execute(UNLEARN, cfg, run_dir, callbacks)


def unlearning(r: Run, callbacks: Sequence[Callback]) -> str:
    """The phases of an unlearning run; its status."""
    r.resume = resumable(r)
    r.callbacks = run_callbacks(r, callbacks)
    prepare(r)
    result = unlearn_phase(r)
    trained = save(r, result)
    evaluate(r, trained)
    save_selected(r, trained, result)
    return result.status


UNLEARN = Flow("unlearn", validate, unlearning)  # the run :func:`run` runs


def resumable(r: Run) -> Resume:
    """Where unlearning's resumable state is saved every ``resume_every`` steps, for this result
    key only (FSDP runs save none)."""
    every = 0 if dist_utils.is_fsdp(r.acc) else int(r.cfg.get("resume_every", 0))
    return Resume(r.run_dir / RESUME_DIR / RESUME_STATE, every=every, key=r.record["result_hash"])


def unlearn_phase(r: Run) -> EngineResult:
    """The target in its storage dtype, trainable weights (all, or LoRA's adapters) in the
    precision's, unlearned; back in the storage dtype after; the record's ``unlearn`` part."""
    cfg, prepared, t = r.cfg, r.prepared, time.perf_counter()
    precision = run_precision(cfg)
    model = precision.prepare_trainable(configure_training(prepared.load("target"), cfg.model))
    context, forget, retain = r.bench.method_context(prepared)
    result = unlearn(
        model, build_method(cfg.method),
        lambda total, per_epoch: build_scheduler(cfg.scheduler, float(cfg.method.lr), total, per_epoch),
        forget, retain, cfg.method, pad_id=prepared.tokenizer.pad_token_id, seed=int(cfg.seed),
        log_path=r.run_dir / STEP_LOG, accelerator=r.acc, fit=str(cfg.scheduler.get("fit", "retain")),
        context=context, trajectory=trajectory_fn(r.bench, prepared, cfg, r.reference, r.acc),
        trajectory_every=int(cfg.eval.trajectory_every), precision=precision, resume=r.resume, callbacks=r.callbacks)
    if not dist_utils.is_fsdp(r.acc):  # FSDP: the policy already computes in the half dtype
        to_storage(r.acc.unwrap_model(result.model), torch_dtype(prepared.dtype))
    if result.trajectory:
        r.record["trajectory"] = result.trajectory
    r.timings["unlearn"] = time.perf_counter() - t
    r.record["unlearn"] = unlearn_summary(result, precision.name)
    return result


def unlearn_summary(result: EngineResult, precision: str) -> dict[str, Any]:
    out = {"status": result.status, "steps": result.steps, "total_steps": result.total_steps,
           "diverged_at": result.diverged_at, "reason": result.reason, "final_losses": result.final,
           "seconds": result.seconds, "precision": precision, **result.batch}
    if result.skipped_steps:
        out["skipped_steps"] = result.skipped_steps
    if result.resumed_from is not None:
        out["resumed_from"] = result.resumed_from
    if result.stopped is not None:  # a callback's stopping rule
        out["stopped"] = result.stopped
    if result.scheduler:  # GeN: its final rate, probes taken, accepted, rejected as noise
        out["scheduler"] = result.scheduler
    return out


def save(r: Run, result: EngineResult) -> torch.nn.Module | None:
    """The final weights as ``checkpoint/`` (or ``checkpoint_final/`` beside a selected step);
    the trained model, or None when a diverged update left inf/NaN weights (nothing to save or
    evaluate)."""
    trained, record = result.model, r.record
    finite = dist_utils.all_finite(r.acc, trained)
    selection = r.callback(Selection)
    if selection is not None:
        record["selection"] = selection.summary(result.steps)
    if not finite:
        record["unlearn"]["weights_finite"] = False
        return None
    if r.cfg.get("save_checkpoint", True) and not selected_other_step(record, result):
        save_checkpoint(r, trained, "checkpoint")
    elif r.cfg.get("save_checkpoint", True) and r.cfg.eval.get("select_save_final"):
        save_checkpoint(r, trained, "checkpoint_final")
    return trained


def selected_other_step(record: dict[str, Any], result: EngineResult) -> bool:
    sel = record.get("selection")
    return sel is not None and sel["step"] is not None and sel["step"] != result.steps


def save_checkpoint(r: Run, model: torch.nn.Module, name: str) -> None:
    dist_utils.save_model(r.acc, model, r.prepared.tokenizer, r.run_dir / name, torch_dtype(r.prepared.dtype))
    r.record[name] = name


def save_selected(r: Run, trained: torch.nn.Module | None, result: EngineResult) -> None:
    """``checkpoint/``: the selected step's weights, once the final ones were evaluated."""
    if trained is None or not r.cfg.get("save_checkpoint", True) or not selected_other_step(r.record, result):
        return
    load_trainable_state(r.acc.unwrap_model(trained), r.callback(Selection).best_weights)
    save_checkpoint(r, trained, "checkpoint")
    r.record["selection"]["checkpoint"] = "checkpoint"


def trajectory_fn(bench: Benchmark, prepared: Prepared, cfg: DictConfig, reference: Any, accelerator=None):
    """The cheap subset evaluated every ``eval.trajectory_every`` steps (sharded across processes;
    every process gets the same summary)."""

    def evaluate_at(step: int, model: torch.nn.Module) -> dict[str, Any]:
        with dist_utils.sharded_eval(accelerator):
            logs = bench.evaluate(dist_utils.eval_model(accelerator, model), prepared, cfg, cheap=True)
        summary = bench.summarize(logs, reference, cfg)
        summary.pop("n_items", None)
        return summary

    return evaluate_at
