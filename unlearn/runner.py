"""What every run is made of, whatever it does in between: decide (validate, reuse or not) ->
attempt its phases -> record. Two kinds of run share it (:class:`Flow`): an unlearning run
(:mod:`unlearn.pipeline`: prepare -> unlearn -> save -> evaluate) and the evaluation of a saved
checkpoint (:mod:`unlearn.checkpoint_eval`: prepare -> load -> evaluate). The phases both use live
here: :func:`prepare` (the stages and the cached reference evaluations of the target and retain
models), :func:`evaluate` (the evaluated model beside the references) and :func:`close_record`.

One Accelerator per run, created here and handed down: under several processes the main process
prepares the stages and the reference evaluations first and the others then read them from the
cache, evaluations are sharded and gathered, and only the main process writes the record and
``run.log``.
"""
from __future__ import annotations

import copy
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from eval.compat import apply_compat
from eval.records import (FAILED_RECORD_NAME, RECORD_NAME, complete_record, environment_info, git_info,
                          load_record, write_json_atomic, write_record)
from eval.select import Selector
from unlearn import distributed as dist_utils
from unlearn.benchmarks import Benchmark, get_benchmark
from unlearn.callbacks import STEP_LOG, Callback, HealthCheck, build_callback
from unlearn.callbacks.ou_files import OpenUnlearningFiles
from unlearn.callbacks.selection import Selection
from unlearn.callbacks.tracking import Tracking
from unlearn.preparation import Prepared
from unlearn.resume import Resume
from unlearn.reuse import SKIP_STATUSES, launch_info, result_hash, result_key, reusable
from unlearn.run_logs import (RUN_LOG, attach_log_file, detach_log_file, job_overrides, log_file_only,
                              quiet_libraries, resolve_run_dir)
from unlearn.stages import StageCache, content_hash, fingerprint
from unlearn.trackers import RunTracker, accelerator_kwargs
from unlearn.validation import check_selection

log = logging.getLogger("unlearn")

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
    resume: Resume | None = None  # an unlearning run's, set once the config is known valid
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


@dataclass(frozen=True)
class Flow:
    """One kind of run: what its record calls it (``kind``), how its config is checked before any
    work (``check(cfg, processes, overrides)`` raises the one-line error), its phases
    (``phases(run, callbacks)``, returning the run's status), what its result depends on besides
    the config, code and launch (``inputs()``, called once the config is valid: part of the result
    key) and what its record says from the start (``details``)."""

    kind: str
    check: Callable[[DictConfig, int, dict[str, Any] | None], None]
    phases: Callable[[Run, Sequence[Callback]], str]
    inputs: Callable[[], dict[str, Any]] | None = None
    details: dict[str, Any] = field(default_factory=dict)


def execute(flow: Flow, cfg: DictConfig, run_dir: str | Path | None = None, callbacks: Sequence[Callback] = (),
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one config as ``flow``; ``callbacks``: yours, called after the built-in ones;
    ``overrides``: the command line's (:func:`unlearn.run_logs.job_overrides`), Hydra's by default."""
    run_dir = resolve_run_dir(run_dir)
    acc = dist_utils.make_accelerator(**accelerator_kwargs(cfg.get("logger"), run_dir))
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    start = decide(flow, cfg, run_dir, acc, job_overrides() if overrides is None else overrides)
    if dist_utils.broadcast_object(acc, start.skip):  # the main process decides for all
        log.info("%s holds a complete record (status %s): skipped (overwrite=true re-runs it)",
                 run_dir / RECORD_NAME, start.existing or "?")
        dist_utils.finish(acc)
        return {**load_record(run_dir), "skipped": True}  # "skipped": not on disk, for the sweep summary
    handler = attach_log_file(run_dir) if acc.is_main_process else None
    restore_logging = dist_utils.quiet_other_processes(acc, run_dir)
    r = Run(start.cfg, run_dir, acc, {**new_record(flow.kind, start, run_dir, acc), **copy.deepcopy(flow.details)})
    t_start = time.perf_counter()
    failed = attempt(r, start, flow, callbacks)
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


def decide(flow: Flow, cfg: DictConfig, run_dir: Path, acc, overrides: dict[str, Any] | None) -> Start:
    """Validated before anything is decided: a config that cannot run (overwrite=yes) never skips,
    resumes or replaces a result. An invalid config's record goes beside a result, which stays."""
    invalid = validation_error(flow, cfg, acc.num_processes, overrides)
    key = None
    if invalid is None:
        cfg = apply_compat(cfg)  # eval.compat's settings in place: the record shows what ran
        key = result_key(cfg, launch_info(cfg, acc), flow.inputs() if flow.inputs else None)
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


def validation_error(flow: Flow, cfg: DictConfig, processes: int, overrides: dict[str, Any] | None) -> Exception | None:
    """``flow.check``'s error, or None; the same on every process (a function of the config and
    the process count)."""
    try:
        flow.check(cfg, processes, overrides)
    except Exception as e:  # noqa: BLE001 - the run's failure, recorded like any other (never over a result)
        return e
    return None


def new_record(kind: str, start: Start, run_dir: Path, acc) -> dict[str, Any]:
    cfg, main = start.cfg, acc.is_main_process
    record: dict[str, Any] = {
        "status": "failed", "kind": kind, "run_dir": str(run_dir), "seed": cfg.seed,  # checked by validate (an int)
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


def attempt(r: Run, start: Start, flow: Flow, callbacks: Sequence[Callback]) -> bool:
    """The flow's phases; a failure or an interrupt is recorded, not lost. True when this process failed."""
    try:
        if start.invalid is not None:
            raise start.invalid
        quiet_libraries()  # imports transformers and datasets: only once the config is known valid
        r.record["status"] = flow.phases(r, callbacks)
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


def run_callbacks(r: Run, extra: Sequence[Callback]) -> list[Callback]:
    """The run's callbacks, in the order they are called: the warnings (:mod:`eval.health`),
    open-unlearning's files, the tracker, checkpoint selection, the config's ``callbacks``, the caller's."""
    cfg = r.cfg
    # a resumed run continues its tracker run and leaves out the rows the tracker already has
    resuming = r.resume is not None and r.resume.exists()
    tracker = RunTracker(r.acc, cfg.get("logger"), r.run_dir, r.record["config"], resuming=resuming)
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
        logs = {which: reference_eval(which, r.bench, prepared, cfg, cache)
                for which, path in (("target", prepared.target_path), ("retain", prepared.retain_path))
                if path is not None}
        return prepared, logs, t_prepare, time.perf_counter() - t

    r.prepared, r.logs, r.timings["prepare"], r.timings["reference_eval"] = dist_utils.main_process_first(
        r.acc, prepare_and_reference)
    r.record["stages"] = {k: a.info() for k, a in r.prepared.stages.items()}
    r.reference, r.record["reference"] = r.bench.reference(r.logs, cfg)


def evaluate(r: Run, model: torch.nn.Module | None) -> None:
    """The evaluated model's full evaluation (sharded across processes) beside the references':
    the record's ``metrics``, the evaluated model under ``unlearned``."""
    t = time.perf_counter()
    if model is not None:
        with dist_utils.sharded_eval(r.acc):
            r.logs["unlearned"] = r.bench.evaluate(dist_utils.eval_model(r.acc, model), r.prepared, r.cfg)
    r.timings["eval"] = time.perf_counter() - t
    r.record["metrics"] = {name: {"summary": r.bench.summarize(lg, r.reference, r.cfg), "logs": lg}
                           for name, lg in r.logs.items()}


def close_record(r: Run, t_start: float, record_path: Path) -> None:
    """Every callback's ``on_record`` (each one, even after another failed), the timings, then the
    record on disk; a completed run's resumable state is cleared once its record is written."""
    record = r.record
    if not (r.run_dir / STEP_LOG).exists():
        record["logs"].pop("steps")  # failed before unlearning, or no unlearning: no step log to point at
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
        log_file_only(r.run_dir, f"record: {record_path}", logging.INFO)
        if record["status"] in ("ok", "diverged") and r.resume is not None:
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
