"""Unlearning's resumable state (``resume_every``): what a killed run needs to continue exactly
where it stopped, saved atomically in ``<run dir>/resume/state.pt`` and read back by the engine."""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """Where the resumable state of a run lives (``<run dir>/resume/state.pt``), how often it is
    saved, and what the caller adds to it (``extra``: e.g. the selected step's weights)."""
    path: Path
    every: int = 0
    extra: Callable[[], dict[str, Any]] | None = None
    restore_extra: Callable[[dict[str, Any]], None] | None = None
    key: str = ""  # the run's result hash: a state saved under another config is not resumed

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("key") != self.key:
            log.warning("%s was saved by another config: not resumed (starting from step 0)", self.path)
            return None
        return state

    def save(self, state: dict[str, Any], main: bool) -> None:
        """Atomically (a temporary file renamed over the old one): a kill mid-write leaves the last state."""
        if not main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "key": self.key}, tmp)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        for p in (self.path, self.path.with_suffix(".tmp")):
            p.unlink(missing_ok=True)
        if self.path.parent.is_dir() and not any(self.path.parent.iterdir()):
            self.path.parent.rmdir()


def state(step, epoch, pos, model, acc, optim, sched, pairs, scaler, result, log_bytes, extra) -> dict[str, Any]:
    """Everything the next step depends on: weights, optimizer and scheduler state, the random
    streams, the batch position, what the result holds so far and the step log's length."""
    inner = acc.unwrap_model(model)
    return {
        "step": step, "epoch": epoch, "pos": pos, "log_bytes": log_bytes,
        "model": trainable_state(inner),
        "optim": copy.deepcopy(optim.state_dict()), "sched": copy.deepcopy(sched.__dict__),
        "pairs": pairs.state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "scaler": None if scaler is None else copy.deepcopy(scaler.__dict__),
        "result": {"trajectory": list(result.trajectory), "skipped_steps": result.skipped_steps,
                   "final": dict(result.final)},
        "extra": extra,
    }


def restore_state(state, model, acc, optim, sched, pairs, scaler, result) -> tuple[int, int, int]:
    load_trainable_state(acc.unwrap_model(model), state["model"])
    optim.load_state_dict(state["optim"])
    sched.__dict__.update(state["sched"])
    pairs.load_state(state["pairs"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.__dict__.update(state["scaler"])
    result.trajectory = list(state["result"]["trajectory"])
    result.skipped_steps = state["result"]["skipped_steps"]
    result.final = dict(state["result"]["final"])
    return state["step"], state["epoch"], state["pos"]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights unlearning changes (all, or LoRA's adapters)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in state:
                p.copy_(state[n].to(p.device, p.dtype))
