"""The run's warnings (:mod:`eval.health`: GeN moved the rate more than 10x, utility below half the
target's) into its record as ``record["warnings"]`` and, one line each, into ``run.log`` and onto
the terminal; the printed summary repeats them under the table (:mod:`unlearn.run_report`)."""
from __future__ import annotations

import logging
from pathlib import Path

from eval.health import read_steps, record_warnings
from unlearn.callbacks.base import Callback
from unlearn.callbacks.step_log import STEP_LOG

log = logging.getLogger("unlearn")


class HealthCheck(Callback):
    def on_record(self, record) -> None:
        steps = read_steps(Path(record["run_dir"]) / (record.get("logs") or {}).get("steps", STEP_LOG))
        record["warnings"] = record_warnings(record, steps)
        for w in record["warnings"]:
            log.warning("%s", w["message"])
