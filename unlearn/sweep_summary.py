"""One line at the end of a multirun: how many jobs were ok, diverged, failed, interrupted or
skipped (a complete record already there), with the failed jobs' directories, and how many have
warnings (:mod:`eval.health`).

A Hydra callback (``conf/config.yaml``: ``hydra.callbacks``). At the multirun's start it names a
file in the sweep directory and exports it as ``UNLEARN_MULTIRUN_LOG``; each job (``run.py``, in
this process or in a launcher's worker, which inherits the variable) appends one JSON line to it;
at the end the callback counts them. A job that never reached ``run.py``'s main (a config that
Hydra itself rejects) is counted as missing against the number of jobs launched.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

ENV = "UNLEARN_MULTIRUN_LOG"
ORDER = ("ok", "diverged", "failed", "interrupted", "skipped")


def note_job(record: dict[str, Any]) -> None:
    """Append this job's outcome to the multirun's log (no-op outside a multirun)."""
    path = os.environ.get(ENV)
    if not path:
        return
    status = "skipped" if record.get("skipped") else record.get("status", "failed")
    line = json.dumps({"status": status, "run_dir": record.get("run_dir"),
                       "warnings": len(record.get("warnings") or ())}) + "\n"
    with open(path, "a") as f:  # one short O_APPEND write per job: safe across processes
        f.write(line)


def summary_line(rows: list[dict[str, Any]], launched: int | None = None) -> str:
    counts = Counter(r["status"] for r in rows)
    parts = [f"{counts.get(s, 0)} {s}" for s in ORDER] + [f"{n} {s}" for s, n in counts.items() if s not in ORDER]
    missing = (launched - len(rows)) if launched is not None and launched > len(rows) else 0
    if missing:
        parts.append(f"{missing} without a record (see the launcher's output)")
    line = f"multirun: {len(rows) + missing} jobs: " + ", ".join(parts)
    warned = sum(1 for r in rows if r.get("warnings"))
    if warned:
        line += f"; {warned} with warnings (printed under their tables, in their records)"
    failed = [r["run_dir"] for r in rows if r["status"] in ("failed", "interrupted")]
    if failed:
        line += "; failed: " + " ".join(failed)
    return line


class MultirunSummary(Callback):
    def __init__(self) -> None:
        self.path: Path | None = None
        self.launched = 0

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.path = sweep_dir / f".multirun-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        self.path.write_text("")
        os.environ[ENV] = str(self.path)

    def on_job_start(self, config, **kwargs) -> None:  # in the launching process for local launchers
        self.launched += 1

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.path is None or not self.path.exists():
            return
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        # on_job_start runs in the worker under joblib / submitit: no count of launched jobs then
        print(summary_line(rows, self.launched or None))
        self.path.unlink()
        os.environ.pop(ENV, None)
