"""One run, start to finish: prepare stages -> unlearn -> evaluate -> record. ``run.py`` and the
tests call :func:`run`; nothing here needs Hydra to have started.

One Accelerator per run, created here and handed down: under several processes (``torchrun``,
``accelerate launch``; see :mod:`unlearn.distributed` for the commands) the main process prepares
the stages and the reference evaluations first and the others then read them from the cache,
unlearning is data-parallel, evaluations are sharded and gathered, and only the main process
writes the record, the step log, ``run.log`` and the checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from eval.compat import apply_compat
from eval.ou.write import write_ou_logs
from eval.select import Selector
from eval.records import (FAILED_RECORD_NAME, RECORD_NAME, complete_record, environment_info, git_info,
                          load_record, write_json_atomic, write_record)
from unlearn import distributed as dist_utils
from unlearn.engine import unlearn
from unlearn.methods import build_method
from unlearn.models import configure_training, torch_dtype
from unlearn.precision import to_storage
from unlearn.resume import Resume, load_trainable_state, trainable_state
from unlearn.reuse import SKIP_STATUSES, launch_info, result_hash, result_key, reusable
from unlearn.validation import check_selection, run_precision, validate
from unlearn.schedulers import build_scheduler
from unlearn.trackers import RunTracker, accelerator_kwargs
from unlearn.stages import StageCache, content_hash, fingerprint
from unlearn.benchmarks import Benchmark, get_benchmark
from unlearn.world import Prepared

log = logging.getLogger("unlearn")

STEP_LOG = "steps.jsonl"
RUN_LOG = "run.log"
OVERRIDES = "overrides.txt"
RESUME_DIR = "resume"  # <run>/resume/state.pt: unlearning's resumable state, every `resume_every` steps
RESUME_STATE = "state.pt"
OU_LOGS = "open_unlearning"  # eval.ou_logs: <run>/open_unlearning/<model>/{TOFU,MUSE}_{EVAL,SUMMARY}.json
def job_overrides() -> dict[str, Any] | None:
    """Under Hydra: the command line's overrides (``task``) and those that name the run's
    directory (``variant``, Hydra's override_dirname, which ``conf/config.yaml``'s ``tag``
    resolver shortens past a length); None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return {"task": list(hc.overrides.task), "variant": hc.job.override_dirname,
            "choices": {g: c for g, c in hc.runtime.choices.items() if not g.startswith("hydra")}}


def resolve_run_dir(run_dir: str | Path | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise ValueError("run() outside a Hydra app needs run_dir")
    return Path(HydraConfig.get().runtime.output_dir)


def _attach_log_file(run_dir: Path) -> logging.Handler | None:
    """Hydra already logs to <run_dir>/run.log; outside Hydra (tests, notebooks) we do it."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return None
    handler = logging.FileHandler(run_dir / RUN_LOG)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return handler


def log_file_only(run_dir: Path | None, text: str) -> None:
    """Into ``run.log`` and not onto the terminal (a traceback: the terminal gets one line)."""
    if run_dir is None:
        return
    logger = logging.getLogger("unlearn.trace")
    logger.propagate = False
    handler = logging.FileHandler(run_dir / RUN_LOG)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logger.addHandler(handler)
    try:
        logger.error(text)
    finally:
        logger.removeHandler(handler)
        handler.close()


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
    (:meth:`unlearn.world.Prepared.model_identity`), the data (the generated world's key, or the
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

    def evaluate(step: int, model: torch.nn.Module) -> dict[str, Any]:
        with dist_utils.sharded_eval(accelerator):
            logs = bench.evaluate(dist_utils.eval_model(accelerator, model), prepared, cfg, cheap=True)
        summary = bench.summarize(logs, reference, cfg)
        summary.pop("n_items", None)
        return summary

    return evaluate


def quiet_libraries() -> None:
    """Our own progress bars carry the losses; the libraries' per-file bars only add noise."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def validation_error(cfg: DictConfig, processes: int, overrides: dict[str, Any] | None) -> Exception | None:
    """:func:`validate`'s error, or None; the same on every process (a function of the config and
    the process count)."""
    try:
        validate(cfg, processes, overrides)
    except Exception as e:  # noqa: BLE001 - the run's failure, recorded like any other (never over a result)
        return e
    return None


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    quiet_libraries()
    run_dir = resolve_run_dir(run_dir)
    acc = dist_utils.make_accelerator(**accelerator_kwargs(cfg.get("logger"), run_dir))
    main = acc.is_main_process
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    overrides = job_overrides()
    # validated before anything is decided: a config that cannot run (overwrite=yes) never skips,
    # resumes or replaces a result
    invalid = validation_error(cfg, acc.num_processes, overrides)
    key = None
    if invalid is None:
        cfg = apply_compat(cfg)  # eval.compat's settings in place: the record shows what ran
        key = result_key(cfg, launch_info(cfg, acc))
    state_path = run_dir / RESUME_DIR / RESUME_STATE
    existing = complete_record(run_dir)
    skip = False
    if main and key is not None:
        (run_dir / FAILED_RECORD_NAME).unlink(missing_ok=True)  # an earlier invalid config's record
        skip = reusable(existing, cfg.overwrite, key, run_dir)
        if cfg.overwrite:  # starts over: no state is resumed either (removed before any process reads it)
            Resume(state_path).clear()
    if dist_utils.broadcast_object(acc, skip):  # the main process decides for all
        log.info("%s holds a complete record (status %s): skipped (overwrite=true re-runs it)",
                 run_dir / RECORD_NAME, existing["status"] if existing else "?")
        dist_utils.finish(acc)
        return {**load_record(run_dir), "skipped": True}  # "skipped": not on disk, for the sweep summary
    # an invalid config's record goes beside a result, which stays as it is
    record_path = run_dir / (FAILED_RECORD_NAME if invalid is not None and existing is not None
                             and existing["status"] in SKIP_STATUSES else RECORD_NAME)
    handler = _attach_log_file(run_dir) if main else None
    restore_logging = dist_utils.quiet_other_processes(acc, run_dir)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    record: dict[str, Any] = {
        "status": "failed", "run_dir": str(run_dir), "seed": cfg.seed,  # checked below (an int)
        "config": OmegaConf.to_container(cfg, resolve=True), "config_hash": content_hash(cfg),
        "result_hash": None if key is None else result_hash(key), "result_key": key,
        "git": git_info() if main else {}, "environment": environment_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "logs": {"steps": STEP_LOG, "run": RUN_LOG},
    }
    record["processes"] = {"count": acc.num_processes, "distributed_type": str(acc.distributed_type),
                           "backend": acc.state.backend, "device": str(acc.device)}
    if overrides is not None:
        record["overrides"] = overrides
        if main and record_path.name == RECORD_NAME:  # the exact overrides beside the (shortened) directory name
            (run_dir / OVERRIDES).write_text("\n".join(overrides["task"]) + "\n")
    failed = False
    tracker: RunTracker | None = None
    finished: Resume | None = None
    try:
        if invalid is not None:
            raise invalid
        criterion = check_selection(cfg)
        selector = Selector(criterion) if criterion is not None else None
        best_weights: dict[str, torch.Tensor] = {}
        resume = Resume(state_path, every=0 if dist_utils.is_fsdp(acc) else int(cfg.get("resume_every", 0)),
                        key=record["result_hash"],
                        extra=(lambda: {"selector": selector.state(), "best_weights": dict(best_weights)})
                        if selector is not None else None,
                        restore_extra=(lambda d: (selector.load_state(d["selector"]), best_weights.update(d["best_weights"])))
                        if selector is not None else None)
        # a resumed run continues its tracker run and leaves out the rows the tracker already has
        tracker = RunTracker(acc, cfg.get("logger"), run_dir, record["config"], resuming=resume.exists())
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg.threads))
        torch.manual_seed(int(cfg.seed))
        cache = StageCache(cfg.paths.cache)
        bench = get_benchmark(str(cfg.dataset.benchmark))

        def prepare_and_reference():
            # the stages and the reference evaluations: built by the main process alone (plain
            # single-process work, no collective), then read from the cache by the others
            t = time.perf_counter()
            prepared = bench.prepare(cfg, cache)
            t_prepare = time.perf_counter() - t
            t = time.perf_counter()
            logs = {"target": reference_eval("target", bench, prepared, cfg, cache)}
            if prepared.retain_path is not None:
                logs["retain"] = reference_eval("retain", bench, prepared, cfg, cache)
            return prepared, logs, t_prepare, time.perf_counter() - t

        prepared, logs, timings["prepare"], timings["reference_eval"] = dist_utils.main_process_first(
            acc, prepare_and_reference)
        record["stages"] = {k: a.info() for k, a in prepared.stages.items()}
        reference, record["reference"] = bench.reference(logs, cfg)

        t = time.perf_counter()
        precision = run_precision(cfg)
        # the target in its storage dtype; trainable weights (all, or LoRA's adapters) in the precision's
        model = precision.prepare_trainable(configure_training(prepared.load("target"), cfg.model))
        context, forget, retain = bench.method_context(prepared)
        evaluate_at = trajectory_fn(bench, prepared, cfg, reference, acc)

        def trajectory(step: int, m: torch.nn.Module) -> dict[str, Any]:
            summary = evaluate_at(step, m)
            tracker.trajectory(step, summary)
            if selector is not None and selector.consider({"step": step, **summary}):
                best_weights.clear()  # one copy: the best step's trainable weights, on the CPU
                best_weights.update(trainable_state(acc.unwrap_model(m)))
            return summary

        result = unlearn(
            model, build_method(cfg.method), lambda total, per_epoch: build_scheduler(cfg.scheduler, float(cfg.method.lr), total, per_epoch),
            forget, retain, cfg.method, pad_id=prepared.tokenizer.pad_token_id, seed=int(cfg.seed),
            log_path=run_dir / STEP_LOG, accelerator=acc, fit=str(cfg.scheduler.get("fit", "retain")),
            context=context, trajectory=trajectory, on_row=tracker.step, resume=resume,
            trajectory_every=int(cfg.eval.trajectory_every), precision=precision,
        )
        trained = result.model
        if not dist_utils.is_fsdp(acc):  # FSDP: the policy already computes in the half dtype
            to_storage(acc.unwrap_model(trained), torch_dtype(prepared.dtype))
        if result.trajectory:
            record["trajectory"] = result.trajectory
        timings["unlearn"] = time.perf_counter() - t
        record["unlearn"] = {"status": result.status, "steps": result.steps, "total_steps": result.total_steps,
                             "diverged_at": result.diverged_at, "reason": result.reason,
                             "final_losses": result.final, "seconds": result.seconds,
                             "precision": precision.name, **result.batch}
        if result.skipped_steps:
            record["unlearn"]["skipped_steps"] = result.skipped_steps
        if result.resumed_from is not None:
            record["unlearn"]["resumed_from"] = result.resumed_from
        if result.scheduler:  # GeN: its final rate, probes taken, accepted, rejected as noise
            record["unlearn"]["scheduler"] = result.scheduler
        finite = dist_utils.all_finite(acc, trained)
        selection = selector.summary(result.steps) if selector is not None else None
        other_step = selection is not None and selection["step"] is not None and selection["step"] != result.steps
        if selection is not None:
            record["selection"] = selection
        save = finite and cfg.get("save_checkpoint", True)
        if not finite:  # a diverged update left inf/NaN weights: nothing to save or evaluate
            record["unlearn"]["weights_finite"] = False
        elif save and not other_step:
            dist_utils.save_model(acc, trained, prepared.tokenizer, run_dir / "checkpoint", torch_dtype(prepared.dtype))
            record["checkpoint"] = "checkpoint"
        elif save and cfg.eval.get("select_save_final"):
            dist_utils.save_model(acc, trained, prepared.tokenizer, run_dir / "checkpoint_final", torch_dtype(prepared.dtype))
            record["checkpoint_final"] = "checkpoint_final"

        t = time.perf_counter()
        if finite:
            with dist_utils.sharded_eval(acc):
                logs["unlearned"] = bench.evaluate(dist_utils.eval_model(acc, trained), prepared, cfg)
        timings["eval"] = time.perf_counter() - t
        record["metrics"] = {name: {"summary": bench.summarize(lg, reference, cfg), "logs": lg}
                             for name, lg in logs.items()}
        if save and other_step:  # checkpoint/: the selected step's weights (the final ones were evaluated)
            load_trainable_state(acc.unwrap_model(trained), best_weights)
            dist_utils.save_model(acc, trained, prepared.tokenizer, run_dir / "checkpoint", torch_dtype(prepared.dtype))
            record["checkpoint"] = "checkpoint"
            record["selection"]["checkpoint"] = "checkpoint"
        if main and cfg.eval.get("ou_logs"):  # every model's results in open-unlearning's format too
            for name, m in record["metrics"].items():
                write_ou_logs(run_dir / OU_LOGS / name, bench.name, m["logs"], m["summary"])
            record["ou_logs"] = OU_LOGS
        record["status"] = result.status
        finished = resume  # cleared once the record is on disk (a kill while writing it resumes at the end)
    except Exception as e:  # recorded, not lost: the record says what failed and where
        failed = True
        record["error"] = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
        log_file_only(run_dir if main else None, f"run failed: {type(e).__name__}: {e}\n{record['error']['traceback']}")
    except KeyboardInterrupt:  # Ctrl-C / SIGINT: recorded as such; a re-run resumes it (resume_every)
        record["status"] = "interrupted"
        record["error"] = {"type": "KeyboardInterrupt", "message": "interrupted (Ctrl-C or SIGINT)",
                           "traceback": traceback.format_exc()}
        log_file_only(run_dir if main else None, f"run interrupted\n{record['error']['traceback']}")
    if not (run_dir / STEP_LOG).exists():
        record["logs"].pop("steps")  # failed before unlearning: no step log to point at
    if tracker is not None and tracker.on:
        try:
            tracker.final(record, (record.get("unlearn") or {}).get("steps") or 0)
            record["tracker"] = {"name": tracker.name, "dir": tracker.dir}
        finally:
            tracker.close()
    timings["total"] = time.perf_counter() - t_start
    record["timings"] = timings
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if main:
        write_record(run_dir, record, record_path.name)
        log.info("record: %s", record_path)
        if finished is not None:
            finished.clear()  # the record is complete: nothing left to resume
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
    restore_logging()
    if failed and not dist_utils.failed_together(acc):
        # this process failed alone (the others wait in a collective): end it, so that the
        # launcher stops the job; the main process has written the failed record
        dist_utils.abandon()
        raise RuntimeError(f"process {acc.process_index} failed alone: {record['error']['message']}")
    dist_utils.finish(acc)  # barrier: the record is on disk (the process group is torn down at exit)
    return load_record(record_path)  # what is on disk (versioned, NaN as null) is what callers see


def summary_table(record: dict[str, Any]) -> str:
    """The benchmark's table rows the run prints: target, retain and unlearned model."""
    import pandas as pd

    cols = get_benchmark(record["config"]["dataset"]["benchmark"]).table_columns
    rows = {name: {c: m["summary"].get(c) for c in cols} for name, m in record.get("metrics", {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols).to_string(
        float_format=lambda x: f"{x:.4g}", na_rep="-")


def report_run(record: dict[str, Any]) -> None:
    """Print what a person wants to see after a run: the table, the status, where things are
    (the main process only, when several run)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    run_dir = Path(record["run_dir"])
    print()
    if record.get("metrics"):
        print(summary_table(record))
    status = record["status"]
    if status == "diverged":
        print(f"\nstatus: diverged ({record['unlearn']['reason']})")
    elif status == "failed":
        err = record.get("error", {})
        print(f"\nstatus: FAILED: {err.get('type')}: {err.get('message')}")
    elif status == "interrupted":
        print("\nstatus: interrupted (the record says so; the same command runs it again)")
    else:
        print(f"\nstatus: ok ({record['unlearn']['steps']} steps, {record['timings']['total']:.1f} s)")
    sel = record.get("selection")
    if sel:
        print(f"selected: step {sel['step']} of {sel['final_step']} ({sel['criterion']}: "
              f"{sel['metric']} {sel['metrics'][sel['metric']]:.4g})" if sel.get("step") is not None
              else f"selected: none ({sel['criterion']}): {sel['note']}")
    aside = run_dir / FAILED_RECORD_NAME  # only there while the last config given failed validation
    if status == "failed" and aside.exists():
        print(f"record: {aside} ({run_dir / RECORD_NAME}, a result, is untouched)")
    else:
        print(f"record: {run_dir / RECORD_NAME}")
    if (run_dir / STEP_LOG).exists():
        print(f"step log: {run_dir / STEP_LOG}")
    print(f"run log: {run_dir / RUN_LOG}" + (" (the traceback)" if status in ("failed", "interrupted") else ""))
