"""One run, start to finish: decide (validate, reuse or not) -> prepare (stages, reference
evaluations, model) -> unlearn -> save -> evaluate -> record. ``run.py`` and the tests call
:func:`run`; nothing here needs Hydra to have started.

One Accelerator per run, created here and handed down: under several processes (``torchrun``,
``accelerate launch``; see :mod:`unlearn.distributed` for the commands) the main process prepares
the stages and the reference evaluations first and the others then read them from the cache,
unlearning is data-parallel, evaluations are sharded and gathered, and only the main process
writes the record, the step log, ``run.log`` and the checkpoint. What a run does along the way
(trackers, checkpoint selection, open-unlearning's files, your own) are callbacks
(:mod:`unlearn.callbacks`), built by :func:`run_callbacks`.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from eval.compat import apply_compat
from eval.records import (FAILED_RECORD_NAME, RECORD_NAME, complete_record, environment_info, git_info,
                          load_record, write_json_atomic, write_record)
from eval.select import Selector
from unlearn import distributed as dist_utils
from unlearn.benchmarks import Benchmark, get_benchmark
from unlearn.callbacks import STEP_LOG, Callback, HealthCheck, build_callback
from unlearn.callbacks.ou_files import OU_LOGS, OpenUnlearningFiles
from unlearn.callbacks.selection import Selection
from unlearn.callbacks.tracking import Tracking
from unlearn.engine import EngineResult, unlearn
from unlearn.methods import build_method
from unlearn.models import configure_training, torch_dtype
from unlearn.precision import to_storage
from unlearn.resume import Resume, load_trainable_state
from unlearn.reuse import SKIP_STATUSES, launch_info, result_hash, result_key, reusable
from unlearn.run_logs import (RUN_LOG, attach_log_file, detach_log_file, job_overrides, log_file_only,
                              quiet_libraries, resolve_run_dir)
from unlearn.schedulers import build_scheduler
from unlearn.stages import StageCache, content_hash, fingerprint
from unlearn.trackers import RunTracker, accelerator_kwargs
from unlearn.validation import check_selection, run_precision, validate
from unlearn.preparation import Prepared

log = logging.getLogger("unlearn")

__all__ = ["OU_LOGS", "RUN_LOG", "STEP_LOG", "run", "reference_eval", "reference_eval_spec"]
OVERRIDES = "overrides.txt"
RESUME_DIR = "resume"  # <run>/resume/state.pt: unlearning's resumable state, every `resume_every` steps
RESUME_STATE = "state.pt"


@dataclass
class Start:
    """What is decided before any work: the config as it runs, its validity, its result key,
    whether a complete record of it is reused, and which file the record goes to."""

    cfg: DictConfig
    invalid: Exception | None
    key: dict[str, Any] | None
    skip: bool
    record_path: Path
    overrides: dict[str, Any] | None
    existing: str | None  # the status of the complete record already there


@dataclass
class Run:
    """One run as it goes: filled phase by phase."""

    cfg: DictConfig
    run_dir: Path
    acc: Any
    record: dict[str, Any]
    resume: Resume | None = None  # set once the config is known valid
    callbacks: list[Callback] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    bench: Benchmark | None = None
    prepared: Prepared | None = None
    logs: dict[str, Any] = field(default_factory=dict)
    reference: Any = None

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    def callback(self, kind: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)


def run(cfg: DictConfig, run_dir: str | Path | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Run one config; ``callbacks``: yours, called after the built-in ones (:mod:`unlearn.callbacks`)."""
    quiet_libraries()
    run_dir = resolve_run_dir(run_dir)
    acc = dist_utils.make_accelerator(**accelerator_kwargs(cfg.get("logger"), run_dir))
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    start = decide(cfg, run_dir, acc)
    if dist_utils.broadcast_object(acc, start.skip):  # the main process decides for all
        log.info("%s holds a complete record (status %s): skipped (overwrite=true re-runs it)",
                 run_dir / RECORD_NAME, start.existing or "?")
        dist_utils.finish(acc)
        return {**load_record(run_dir), "skipped": True}  # "skipped": not on disk, for the sweep summary
    handler = attach_log_file(run_dir) if acc.is_main_process else None
    restore_logging = dist_utils.quiet_other_processes(acc, run_dir)
    r = Run(start.cfg, run_dir, acc, new_record(start, run_dir, acc))
    t_start = time.perf_counter()
    failed = attempt(r, start, callbacks)
    close_record(r, t_start, start.record_path)
    detach_log_file(handler)
    restore_logging()
    if failed and not dist_utils.failed_together(acc):
        # the others wait in a collective: this process must end, so that the launcher stops the job
        dist_utils.abandon()
        err = r.record["error"]
        raise dist_utils.FailedAlone(f"process {acc.process_index} failed alone: {err['type']}: {err['message']}")
    dist_utils.finish(acc)  # barrier: the record is on disk (the process group is torn down at exit)
    return load_record(start.record_path)  # what is on disk (versioned, NaN as null) is what callers see


def decide(cfg: DictConfig, run_dir: Path, acc) -> Start:
    """Validated before anything is decided: a config that cannot run (overwrite=yes) never skips,
    resumes or replaces a result. An invalid config's record goes beside a result, which stays."""
    overrides = job_overrides()
    invalid = validation_error(cfg, acc.num_processes, overrides)
    key = None
    if invalid is None:
        cfg = apply_compat(cfg)  # eval.compat's settings in place: the record shows what ran
        key = result_key(cfg, launch_info(cfg, acc))
    existing = complete_record(run_dir)
    skip = False
    if acc.is_main_process and key is not None:
        (run_dir / FAILED_RECORD_NAME).unlink(missing_ok=True)  # an earlier invalid config's record
        skip = reusable(existing, cfg.overwrite, key, run_dir)
        if cfg.overwrite:  # starts over: no state is resumed either (removed before any process reads it)
            Resume(run_dir / RESUME_DIR / RESUME_STATE).clear()
    aside = invalid is not None and existing is not None and existing["status"] in SKIP_STATUSES
    return Start(cfg, invalid, key, skip, run_dir / (FAILED_RECORD_NAME if aside else RECORD_NAME), overrides,
                 existing["status"] if existing else None)


def validation_error(cfg: DictConfig, processes: int, overrides: dict[str, Any] | None) -> Exception | None:
    """:func:`validate`'s error, or None; the same on every process (a function of the config and
    the process count)."""
    try:
        validate(cfg, processes, overrides)
    except Exception as e:  # noqa: BLE001 - the run's failure, recorded like any other (never over a result)
        return e
    return None


def new_record(start: Start, run_dir: Path, acc) -> dict[str, Any]:
    cfg, main = start.cfg, acc.is_main_process
    record: dict[str, Any] = {
        "status": "failed", "run_dir": str(run_dir), "seed": cfg.seed,  # checked by validate (an int)
        "config": OmegaConf.to_container(cfg, resolve=True), "config_hash": content_hash(cfg),
        "result_hash": None if start.key is None else result_hash(start.key), "result_key": start.key,
        "git": git_info() if main else {}, "environment": environment_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "logs": {"steps": STEP_LOG, "run": RUN_LOG},
        "processes": {"count": acc.num_processes, "distributed_type": str(acc.distributed_type),
                      "backend": acc.state.backend, "device": str(acc.device)},
    }
    if start.overrides is not None:
        record["overrides"] = start.overrides
        if main and start.record_path.name == RECORD_NAME:  # the exact overrides beside the (shortened) directory name
            (run_dir / OVERRIDES).write_text("\n".join(start.overrides["task"]) + "\n")
    return record


def attempt(r: Run, start: Start, callbacks: Sequence[Callback]) -> bool:
    """The phases; a failure or an interrupt is recorded, not lost. True when this process failed."""
    try:
        if start.invalid is not None:
            raise start.invalid
        r.resume = resumable(r)
        r.callbacks = run_callbacks(r, callbacks)
        prepare(r)
        result = unlearn_phase(r)
        trained = save(r, result)
        evaluate(r, trained)
        save_selected(r, trained, result)
        r.record["status"] = result.status
        return False
    except Exception as e:  # recorded, not lost: the record says what failed and where
        r.record["error"] = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
        log_file_only(r.run_dir if r.main else None, f"run failed: {type(e).__name__}: {e}\n{r.record['error']['traceback']}")
        return True
    except KeyboardInterrupt:  # Ctrl-C / SIGINT: recorded as such; a re-run resumes it (resume_every)
        r.record["status"] = "interrupted"
        r.record["error"] = {"type": "KeyboardInterrupt", "message": "interrupted (Ctrl-C or SIGINT)",
                             "traceback": traceback.format_exc()}
        log_file_only(r.run_dir if r.main else None, f"run interrupted\n{r.record['error']['traceback']}")
        return False


def resumable(r: Run) -> Resume:
    """Where unlearning's resumable state is saved every ``resume_every`` steps, for this result
    key only (FSDP runs save none)."""
    every = 0 if dist_utils.is_fsdp(r.acc) else int(r.cfg.get("resume_every", 0))
    return Resume(r.run_dir / RESUME_DIR / RESUME_STATE, every=every, key=r.record["result_hash"])


def run_callbacks(r: Run, extra: Sequence[Callback]) -> list[Callback]:
    """The run's callbacks, in the order they are called: the warnings (:mod:`eval.health`),
    open-unlearning's files, the tracker, checkpoint selection, the config's ``callbacks``, the caller's."""
    cfg = r.cfg
    # a resumed run continues its tracker run and leaves out the rows the tracker already has
    tracker = RunTracker(r.acc, cfg.get("logger"), r.run_dir, r.record["config"], resuming=r.resume.exists())
    criterion = check_selection(cfg)
    out: list[Callback] = [HealthCheck()]
    if cfg.eval.get("ou_logs"):  # every model's results in open-unlearning's format too
        out.append(OpenUnlearningFiles(r.run_dir, str(cfg.dataset.benchmark), r.main))
    out.append(Tracking(tracker))
    if criterion is not None:
        out.append(Selection(Selector(criterion), r.acc))
    out += [build_callback(str(name), cfg, r.run_dir) for name in cfg.get("callbacks") or ()]
    return out + list(extra)


def prepare(r: Run) -> None:
    """The stages and the reference evaluations: built by the main process alone (plain
    single-process work, no collective), then read from the cache by the others."""
    cfg = r.cfg
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    cache = StageCache(cfg.paths.cache)
    r.bench = get_benchmark(str(cfg.dataset.benchmark))

    def prepare_and_reference():
        t = time.perf_counter()
        prepared = r.bench.prepare(cfg, cache)
        t_prepare = time.perf_counter() - t
        t = time.perf_counter()
        logs = {"target": reference_eval("target", r.bench, prepared, cfg, cache)}
        if prepared.retain_path is not None:
            logs["retain"] = reference_eval("retain", r.bench, prepared, cfg, cache)
        return prepared, logs, t_prepare, time.perf_counter() - t

    r.prepared, r.logs, r.timings["prepare"], r.timings["reference_eval"] = dist_utils.main_process_first(
        r.acc, prepare_and_reference)
    r.record["stages"] = {k: a.info() for k, a in r.prepared.stages.items()}
    r.reference, r.record["reference"] = r.bench.reference(r.logs, cfg)


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


def evaluate(r: Run, trained: torch.nn.Module | None) -> None:
    """The unlearned model's full evaluation (sharded across processes) beside the references'."""
    t = time.perf_counter()
    if trained is not None:
        with dist_utils.sharded_eval(r.acc):
            r.logs["unlearned"] = r.bench.evaluate(dist_utils.eval_model(r.acc, trained), r.prepared, r.cfg)
    r.timings["eval"] = time.perf_counter() - t
    r.record["metrics"] = {name: {"summary": r.bench.summarize(lg, r.reference, r.cfg), "logs": lg}
                           for name, lg in r.logs.items()}


def save_selected(r: Run, trained: torch.nn.Module | None, result: EngineResult) -> None:
    """``checkpoint/``: the selected step's weights, once the final ones were evaluated."""
    if trained is None or not r.cfg.get("save_checkpoint", True) or not selected_other_step(r.record, result):
        return
    load_trainable_state(r.acc.unwrap_model(trained), r.callback(Selection).best_weights)
    save_checkpoint(r, trained, "checkpoint")
    r.record["selection"]["checkpoint"] = "checkpoint"


def close_record(r: Run, t_start: float, record_path: Path) -> None:
    """Every callback's ``on_record`` (each one, even after another failed), the timings, then the
    record on disk; a completed run's resumable state is cleared once its record is written."""
    record = r.record
    if not (r.run_dir / STEP_LOG).exists():
        record["logs"].pop("steps")  # failed before unlearning: no step log to point at
    for c in r.callbacks:
        try:
            c.on_record(record)
        except Exception as e:  # noqa: BLE001 - the run's failure; the other callbacks still run
            if "error" not in record:  # the first failure is the run's
                record["status"], record["error"] = "failed", {"type": type(e).__name__, "message": str(e),
                                                               "traceback": traceback.format_exc()}
                log_file_only(r.run_dir if r.main else None, f"callback {c.name} failed:\n{traceback.format_exc()}")
    r.timings["total"] = time.perf_counter() - t_start
    record["timings"] = r.timings
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if r.main:
        write_record(r.run_dir, record, record_path.name)
        if record["status"] in ("ok", "diverged"):
            r.resume.clear()  # the record is complete: nothing left to resume


def reference_eval(which: str, bench: Benchmark, prepared: Prepared, cfg: DictConfig, cache: StageCache) -> dict[str, Any]:
    """Logs of the target / retain model, once per (model, eval settings, split): a cached stage.

    The retain model's evaluation is what every run's forget quality (TOFU) or PrivLeak (MUSE)
    is measured against, so a sweep evaluates it once.
    """
    spec = reference_eval_spec(which, bench, prepared, cfg)

    def build(out: Path) -> None:
        write_json_atomic(out / "logs.json", bench.evaluate(prepared.load(which), prepared, cfg))

    art = cache.get_or_build(f"eval_{which}", spec, build)
    return json.loads((art.path / "logs.json").read_text())


def reference_eval_spec(which: str, bench: Benchmark, prepared: Prepared, cfg: DictConfig) -> dict[str, Any]:
    """What a reference evaluation's numbers depend on, and nothing else: the model as loaded
    (:meth:`unlearn.preparation.Prepared.model_identity`), the data (the generated world's key, or the
    dataset's location with a fingerprint of a local folder), the split and the eval settings."""
    ds = cfg.dataset
    data = ({"world": prepared.stages["world"].key} if "world" in prepared.stages else
            {"source": ds.get("source"), "path": ds.get("path"), "hub_id": ds.get("hub_id"),
             "files": fingerprint(ds.get("path"))})
    return {"benchmark": bench.name, "model": prepared.model_identity(which), "split": ds.get("split"),
            "eval": bench.eval_spec(cfg), "data": data}


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
