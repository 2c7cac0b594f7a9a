"""Trajectory evaluation: the benchmark's cheap subset at step 0, every ``every`` steps and after
the last; each summary goes into the result's trajectory and to every callback's ``on_evaluate``
(trackers, checkpoint selection)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from unlearn.callbacks.base import Callback


class TrajectoryEvaluation(Callback):
    def __init__(self, evaluate: Callable[[int, torch.nn.Module], dict[str, Any]], every: int,
                 autocast: Callable[[], Any]) -> None:
        self.evaluate, self.every, self.autocast = evaluate, every, autocast

    def on_train_start(self, state) -> None:
        if state.resumed is None:
            self.run(state, 0)

    def on_step_end(self, state, row) -> None:
        if not row.get("diverged") and (state.step % self.every == 0 or state.step == state.total_steps):
            self.run(state, state.step)

    def run(self, state, step: int) -> None:
        with self.autocast():
            summary = self.evaluate(step, state.model)
        state.result.trajectory.append({"step": step, **summary})
        state.model.train()
        state.callbacks.on_evaluate(state, step, summary)
