"""What a person sees after a run: the benchmark's table (target, retain, unlearned), the status
and where the record and logs are (the main process only, when several run)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eval.records import FAILED_RECORD_NAME, RECORD_NAME
from unlearn.benchmarks import get_benchmark
from unlearn.callbacks import STEP_LOG
from unlearn.run_logs import RUN_LOG


def summary_table(record: dict[str, Any]) -> str:
    """The benchmark's table rows the run prints: target, retain and unlearned model (an
    evaluation's: the evaluated checkpoint, by its label)."""
    import pandas as pd

    cols = get_benchmark(record["config"]["dataset"]["benchmark"]).table_columns
    label = {"unlearned": record["evaluated"]["name"]} if "evaluated" in record else {}
    rows = {label.get(name, name): {c: m["summary"].get(c) for c in cols} for name, m in record.get("metrics", {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols).to_string(
        float_format=lambda x: f"{x:.4g}", na_rep="-")


def status_line(record: dict[str, Any]) -> str:
    status = record["status"]
    if status == "diverged":
        return f"status: diverged ({record['unlearn']['reason']})"
    if status == "failed":
        err = record.get("error", {})
        return f"status: FAILED: {err.get('type')}: {err.get('message')}"
    if status == "interrupted":
        return "status: interrupted (the record says so; the same command runs it again)"
    if "evaluated" in record:
        return f"status: ok (evaluated {record['evaluated']['checkpoint']}, {record['timings']['total']:.1f} s)"
    return f"status: ok ({record['unlearn']['steps']} steps, {record['timings']['total']:.1f} s)"


def report_run(record: dict[str, Any]) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    run_dir = Path(record["run_dir"])
    print()
    if record.get("metrics"):
        print(summary_table(record))
    print("\n" + status_line(record))
    sel = record.get("selection")
    if sel:
        print(f"selected: step {sel['step']} of {sel['final_step']} ({sel['criterion']}: "
              f"{sel['metric']} {sel['metrics'][sel['metric']]:.4g})" if sel.get("step") is not None
              else f"selected: none ({sel['criterion']}): {sel['note']}")
    status = record["status"]
    aside = run_dir / FAILED_RECORD_NAME  # only there while the last config given failed validation
    if status == "failed" and aside.exists():
        print(f"record: {aside} ({run_dir / RECORD_NAME}, a result, is untouched)")
    else:
        print(f"record: {run_dir / RECORD_NAME}")
    if (run_dir / STEP_LOG).exists():
        print(f"step log: {run_dir / STEP_LOG}")
    print(f"run log: {run_dir / RUN_LOG}" + (" (the traceback)" if status in ("failed", "interrupted") else ""))


def conclude(record: dict[str, Any]) -> None:
    """What a command does with its record (``run.py``, ``python -m eval.evaluate``): print it, note
    it for the multirun's summary, and exit as its status says."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unlearn.sweep_summary import note_job

    report_run(record)
    note_job(record)
    if record["status"] == "interrupted":  # Ctrl-C: the record says so; a sweep stops here too
        raise SystemExit(130)
    # A failed single run exits non-zero; in a sweep the failure is recorded and the sweep goes on.
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if record["status"] == "failed" and not in_sweep:
        raise SystemExit(1)
