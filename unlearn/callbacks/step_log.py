"""The step log: one JSON line per step (``<run>/steps.jsonl``), written by the main process and
flushed at once, so a killed run leaves every finished step on disk."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from unlearn.callbacks.base import Callback

STEP_LOG = "steps.jsonl"  # its name in the run directory


def finite_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: write them as strings so the log stays valid and the value visible."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


class StepLog(Callback):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = None

    def on_train_start(self, state) -> None:
        if not state.main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        resumed = state.resumed
        self.file = state.stack.enter_context(open(self.path, "w" if resumed is None else "r+"))
        if resumed is not None:  # the step log as it was when the state was saved
            self.file.truncate(resumed["log_bytes"])
            self.file.seek(resumed["log_bytes"])

    def on_step_end(self, state, row) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(finite_json(row)) + "\n")
        self.file.flush()
        state.log_bytes = self.file.tell()
