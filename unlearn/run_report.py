"""What a person sees after a run: the benchmark's table (target, retain, unlearned; the selected
step beside the final model), the status, the selection, the run's warnings (:mod:`eval.health`)
and where the record and logs are (the main process only, when several run); how ``run.py``'s
process then ends (its exit status, and under a launcher the line its failure report shows)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from eval.lm_eval.step import columns as lm_eval_columns
from eval.records import FAILED_RECORD_NAME, RECORD_NAME
from unlearn.benchmarks import get_benchmark
from unlearn.callbacks import STEP_LOG
from unlearn.distributed import FailedAlone, tell_launcher
from unlearn.run_logs import RUN_LOG


def summary_table(record: dict[str, Any]) -> str:
    """The benchmark's table rows the run prints: target, retain and unlearned model (an evaluation's:
    the evaluated checkpoint, by its label). With checkpoint
    selection the unlearned row says it is the final model (``unlearned (final, step N)``) and the
    selected step's trajectory metrics follow (``selected (step K)``; ``-`` where the trajectory's
    cheap subset has no value), so that a reader never takes one for the other."""
    import pandas as pd

    summaries = [m["summary"] for m in record.get("metrics", {}).values()]
    cols = get_benchmark(record["config"]["dataset"]["benchmark"]).table_columns + lm_eval_columns(
        k for s in summaries for k in s)  # the lm-eval tasks' accuracies (eval.lm_eval.tasks), when run
    sel = record.get("selection")
    final = f"unlearned (final, step {(record.get('unlearn') or {}).get('steps')})" if sel else "unlearned"
    final = record["evaluated"]["name"] if "evaluated" in record else final
    rows = {final if name == "unlearned" else name: {c: m["summary"].get(c) for c in cols}
            for name, m in record.get("metrics", {}).items()}
    if sel and sel.get("step") is not None:
        rows[f"selected (step {sel['step']})"] = {c: sel["metrics"].get(c) for c in cols}
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols).to_string(
        float_format=lambda x: f"{x:.4g}", na_rep="-")


def selection_line(sel: dict[str, Any]) -> str:
    """Which step ``checkpoint/`` holds and why; step 0 is the target itself."""
    if sel.get("step") is None:
        return f"selected: none ({sel['criterion']}): {sel['note']}"
    line = (f"selected: step {sel['step']} of {sel['final_step']} ({sel['criterion']}: "
            f"{sel['metric']} {sel['metrics'][sel['metric']]:.4g}); checkpoint/ holds it")
    if sel["step"] == 0:
        line += " -- step 0 is the target before any update: no later step did better under the criterion"
    return line


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
    if record.get("metrics"):
        print("\n" + summary_table(record))
    print("\n" + status_line(record))
    if record.get("selection"):
        print(selection_line(record["selection"]))
    for w in record.get("warnings") or ():
        print(f"warning: {w['message']}")
    status = record["status"]
    aside = run_dir / FAILED_RECORD_NAME  # only there while the last config given failed validation
    if status == "failed" and aside.exists():
        print(f"record: {aside} ({run_dir / RECORD_NAME}, a result, is untouched)")
    else:
        print(f"record: {run_dir / RECORD_NAME}")
    if (run_dir / STEP_LOG).exists():
        print(f"step log: {run_dir / STEP_LOG}")
    print(f"run log: {run_dir / RUN_LOG}" + (" (the traceback)" if status in ("failed", "interrupted") else ""))


def end_job(record: dict[str, Any]) -> None:
    """After a run under ``run.py`` or ``python -m eval.evaluate``: the report and the sweep summary's note, then the exit. Ctrl-C
    exits 130 (a sweep stops too); a failed single run exits 1 -- no traceback: it is in ``run.log``
    -- after handing its status line to the launcher, if any (:func:`~unlearn.distributed.tell_launcher`);
    in a sweep the failure is recorded and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unlearn.sweep_summary import note_job

    report_run(record)
    note_job(record)
    if record["status"] == "interrupted":
        raise SystemExit(130)
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if record["status"] == "failed" and not in_sweep:
        tell_launcher(status_line(record))
        raise SystemExit(1)


def end_alone(error: FailedAlone) -> NoReturn:
    """This process failed alone (:class:`~unlearn.distributed.FailedAlone`): its one line on the
    terminal and to the launcher, exit 1 (the launcher then stops the other processes)."""
    line = f"status: FAILED: {error}"
    print(line, file=sys.stderr)
    tell_launcher(line)
    raise SystemExit(1)
