"""One run, start to finish: prepare stages -> unlearn -> evaluate -> record. ``run.py`` and the
tests call :func:`run`; nothing here needs Hydra to have started."""
from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from eval.records import (RECORD_NAME, complete_record, environment_info, git_info, load_record,
                          write_json_atomic, write_record)
from eval.tofu_eval import EVAL_VERSION, add_forget_quality, evaluate_basic
from unlearn.engine import unlearn
from unlearn.methods import MethodContext, build_method
from unlearn.models import frozen
from unlearn.schedulers import SCHEDULERS, build_scheduler
from unlearn.stages import StageCache, content_hash
from unlearn.world import Prepared, prepare

log = logging.getLogger("unlearn")

STEP_LOG = "steps.jsonl"
RUN_LOG = "run.log"
SKIP_STATUSES = ("ok", "diverged")  # a failed run is run again; these are results


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


def validate(cfg: DictConfig) -> None:
    """Fail before any work on choices that would otherwise fail deep inside a library."""
    build_method(cfg.method)  # unknown method -> lists the valid ones
    SCHEDULERS.get(cfg.scheduler.name)
    if float(cfg.method.lr) <= 0:
        raise ValueError(f"method.lr must be positive, got {cfg.method.lr}")
    if int(cfg.method.batch_size) < 1 or int(cfg.method.epochs) < 1:
        raise ValueError("method.batch_size and method.epochs must be >= 1")


def reference_eval(which: str, prepared: Prepared, cfg: DictConfig, cache: StageCache) -> dict[str, Any]:
    """Evaluate the target / retain model once per (model, eval settings, split); cached as a stage."""
    model_id = prepared.stages[which].key if which in prepared.stages else getattr(prepared, f"{which}_path")
    spec = {"model": model_id, "split": prepared.data.split, "version": EVAL_VERSION,
            "eval": {k: cfg.eval.get(k) for k in ("ds_size", "batch_size", "truth_ratio")},
            "data": prepared.stages["world"].key if "world" in prepared.stages else cfg.dataset.get("path")}

    def build(out: Path) -> None:
        model = prepared.load(which)
        write_json_atomic(out / "metrics.json", evaluate_basic(model, prepared, cfg.eval))

    art = cache.get_or_build(f"eval_{which}", spec, build)
    import json

    return json.loads((art.path / "metrics.json").read_text())


def quiet_libraries() -> None:
    """Our own progress bars carry the losses; the libraries' per-file bars only add noise."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    quiet_libraries()
    run_dir = resolve_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = complete_record(run_dir)
    if existing is not None and existing["status"] in SKIP_STATUSES and not cfg.overwrite:
        log.info("%s holds a complete record (status %s): skipped (overwrite=true re-runs it)",
                 run_dir / RECORD_NAME, existing["status"])
        return existing
    handler = _attach_log_file(run_dir)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    record: dict[str, Any] = {
        "status": "failed", "run_dir": str(run_dir), "seed": int(cfg.seed),
        "config": OmegaConf.to_container(cfg, resolve=True), "config_hash": content_hash(cfg),
        "git": git_info(), "environment": environment_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "logs": {"steps": STEP_LOG, "run": RUN_LOG},
    }
    try:
        validate(cfg)
        torch.manual_seed(int(cfg.seed))
        t = time.perf_counter()
        cache = StageCache(cfg.paths.cache)
        prepared = prepare(cfg, cache)
        record["stages"] = {k: a.info() for k, a in prepared.stages.items()}
        timings["prepare"] = time.perf_counter() - t

        t = time.perf_counter()
        metrics: dict[str, Any] = {"target": reference_eval("target", prepared, cfg, cache)}
        if prepared.retain_path is not None:
            metrics["retain"] = reference_eval("retain", prepared, cfg, cache)
        timings["reference_eval"] = time.perf_counter() - t

        t = time.perf_counter()
        model = prepared.load("target")
        data = prepared.data
        forget_rows, retain_rows = list(data.rows(data.split)), list(data.rows(data.retain_split))
        forget, retain = prepared.features(forget_rows), prepared.features(retain_rows)
        context = MethodContext(
            encode=lambda q, a: prepared.features([{"question": q, "answer": a}])[0],
            forget_rows=forget_rows, retain_rows=retain_rows, forget_features=forget, retain_features=retain,
            pad_id=prepared.tokenizer.pad_token_id, device=torch.device("cpu"),
            load_reference=lambda: frozen(prepared.load("target")),
        )
        result = unlearn(
            model, build_method(cfg.method), lambda total: build_scheduler(cfg.scheduler, float(cfg.method.lr), total),
            forget, retain, cfg.method, pad_id=prepared.tokenizer.pad_token_id, seed=int(cfg.seed),
            log_path=run_dir / STEP_LOG, fit=str(cfg.scheduler.get("fit", "retain")), context=context,
        )
        timings["unlearn"] = time.perf_counter() - t
        record["unlearn"] = {"status": result.status, "steps": result.steps, "total_steps": result.total_steps,
                             "diverged_at": result.diverged_at, "reason": result.reason,
                             "final_losses": result.final, "seconds": result.seconds}
        finite = all(torch.isfinite(p).all() for p in model.parameters())
        if not finite:  # a diverged update left inf/NaN weights: nothing to save or evaluate
            record["unlearn"]["weights_finite"] = False
        elif cfg.get("save_checkpoint", True):
            model.save_pretrained(str(run_dir / "checkpoint"))
            prepared.tokenizer.save_pretrained(str(run_dir / "checkpoint"))
            record["checkpoint"] = "checkpoint"

        t = time.perf_counter()
        metrics["unlearned"] = evaluate_basic(model, prepared, cfg.eval) if finite else None
        timings["eval"] = time.perf_counter() - t
        if "retain" in metrics:
            for name in ("target", "retain", "unlearned"):
                if metrics.get(name):
                    add_forget_quality(metrics[name], metrics["retain"])
        record["metrics"] = metrics
        record["status"] = result.status
    except Exception as e:  # recorded, not lost: the record says what failed and where
        log.exception("run failed")
        record["error"] = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
    timings["total"] = time.perf_counter() - t_start
    record["timings"] = timings
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = write_record(run_dir, record)
    log.info("record: %s", path)
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return load_record(path)  # what is on disk (versioned, NaN as null) is what callers see


def summary_table(record: dict[str, Any]) -> str:
    """The short table the default run prints: target / retain / unlearned, forget vs retain."""
    import pandas as pd

    cols = ["forget_quality", "forget_loss", "forget_prob", "forget_truth_ratio", "retain_loss", "retain_prob",
            "retain_truth_ratio"]
    rows = {name: {c: m[c]["value"] for c in cols if c in m} if m else {}
            for name, m in record.get("metrics", {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols).to_string(float_format=lambda x: f"{x:.4g}")


def report_run(record: dict[str, Any]) -> None:
    """Print what a person wants to see after a run: the table, the status, where things are."""
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
    else:
        print(f"\nstatus: ok ({record['unlearn']['steps']} steps, {record['timings']['total']:.1f} s)")
    print(f"record: {run_dir / RECORD_NAME}\nstep log: {run_dir / STEP_LOG}\nrun log: {run_dir / RUN_LOG}")
