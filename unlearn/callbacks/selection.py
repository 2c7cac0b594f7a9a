"""Checkpoint selection along the trajectory (``eval.select``, :mod:`eval.select`): each
trajectory summary is considered as it comes, and the best step's trainable weights are kept (one
copy, on the CPU); the run saves them as ``checkpoint/`` after evaluating the final model."""
from __future__ import annotations

from typing import Any

import torch

from unlearn.callbacks.base import Callback
from unlearn.resume import trainable_state


class Selection(Callback):
    def __init__(self, selector, accelerator) -> None:
        self.selector, self.acc = selector, accelerator
        self.best_weights: dict[str, torch.Tensor] = {}

    def on_evaluate(self, state, step, summary) -> None:
        if self.selector.consider({"step": step, **summary}):
            self.best_weights.clear()
            self.best_weights.update(trainable_state(self.acc.unwrap_model(state.model)))

    def summary(self, final_step: int) -> dict[str, Any]:
        return self.selector.summary(final_step)

    def state_dict(self) -> dict[str, Any]:
        return {"selector": self.selector.state(), "best_weights": dict(self.best_weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.selector.load_state(state["selector"])
        self.best_weights.update(state["best_weights"])
