"""``eval.ou_logs``: every evaluated model's results also in open-unlearning's files
(``<run>/open_unlearning/<model>/{TOFU,MUSE}_{EVAL,SUMMARY}.json``, :mod:`eval.ou.write`)."""
from __future__ import annotations

from pathlib import Path

from eval.ou.write import write_ou_logs
from unlearn.callbacks.base import Callback

OU_LOGS = "open_unlearning"


class OpenUnlearningFiles(Callback):
    def __init__(self, run_dir: Path, benchmark: str, main: bool) -> None:
        self.run_dir, self.benchmark, self.main = Path(run_dir), benchmark, main

    def on_record(self, record) -> None:
        if record["status"] not in ("ok", "diverged") or not record.get("metrics"):
            return
        if self.main:
            for name, m in record["metrics"].items():
                write_ou_logs(self.run_dir / OU_LOGS / name, self.benchmark, m["logs"], m["summary"])
        record["ou_logs"] = OU_LOGS
