"""The experiment tracker (``logger=``, :class:`unlearn.trackers.RunTracker`) as a callback: each
step's row, each trajectory summary, the final summary with the record (a failed run's too)."""
from __future__ import annotations

from unlearn.callbacks.base import Callback


class Tracking(Callback):
    def __init__(self, tracker) -> None:
        self.tracker = tracker

    def on_step_end(self, state, row) -> None:
        if not row.get("diverged"):  # the record carries the divergence (final/status_ok 0)
            self.tracker.step(row)

    def on_evaluate(self, state, step, summary) -> None:
        self.tracker.trajectory(step, summary)

    def on_record(self, record) -> None:
        if not self.tracker.on:
            return
        try:
            self.tracker.final(record, (record.get("unlearn") or {}).get("steps") or 0)
            record["tracker"] = {"name": self.tracker.name, "dir": self.tracker.dir}
        finally:
            self.tracker.close()
