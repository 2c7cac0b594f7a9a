"""Unlearning's resumable state (``resume_every``): what a killed run needs to continue exactly
where it stopped, saved atomically in ``<run dir>/resume/state.pt`` and read back by the engine."""
from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from eval.records import write_atomic

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """Where the resumable state of a run lives (``<run dir>/resume/state.pt``), how often it is
    saved, and the result key it belongs to. What else the state holds (the callbacks' state,
    e.g. the selected step's weights) is the engine's (:func:`unlearn.engine.resumable_state`)."""
    path: Path
    every: int = 0
    key: str = ""  # the run's result hash (unlearn.reuse): a state of another config, code or launch is not resumed

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("key") != self.key:
            log.warning("%s was saved by another config, code or launch: not resumed (starting from step 0)",
                        self.path)
            return None
        return state

    def exists(self) -> bool:
        """Whether :meth:`load` would resume a state, read without its tensors (memory-mapped)."""
        if not self.path.exists():
            return False
        return torch.load(self.path, map_location="cpu", weights_only=False, mmap=True).get("key") == self.key

    def save(self, build: Callable[[], dict[str, Any]], main: bool) -> None:
        """The state ``build()`` returns, written atomically (:func:`eval.records.write_atomic`: a kill
        mid-write leaves the last state). The main process alone builds it: the weights and the
        optimizer state are local to each process under DDP (no collective), and FSDP, whose
        shards would need one, saves no state (``resume.every`` 0, see the pipeline)."""
        if not main:
            return
        state = {**build(), "key": self.key}
        write_atomic(self.path, lambda fh: torch.save(state, fh))

    def preemption(self) -> "Preemption":
        """The guard the engine runs under: a preemption signal waits for the step's end (state saved)."""
        return Preemption(enabled=self.every > 0)

    def clear(self) -> None:
        for p in (self.path, *self.path.parent.glob(f".{self.path.name}.*.tmp")):  # and a killed write's
            p.unlink(missing_ok=True)
        if self.path.parent.is_dir() and not any(self.path.parent.iterdir()):
            self.path.parent.rmdir()


class Preemption:
    """Defers a scheduler's preemption signal to the end of the current unlearning step.

    Under SLURM (or submitit's local executor) submitit handles its preemption signal (SIGUSR2, or
    ``SUBMITIT_PREEMPT_SIGNAL``) by pickling the job and requeueing it; Hydra's submitit launcher
    requeues the same job, i.e. the same run directory. While unlearning, this guard takes that
    handler's place: the signal only sets :attr:`requested`; the engine saves the resumable state
    at the end of the step and calls :meth:`hand_over`, which runs submitit's handler (requeue,
    exit). The requeued job resumes from that very step. Outside unlearning (stage builds,
    evaluation) submitit's handler acts at once: stages resume from their last epoch, an
    evaluation is redone from the state saved after the last step. Nothing is deferred when no
    Python handler is installed for the signal (a plain run), or off the main thread.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.requested = enabled, False
        self.signum: int | None = None
        self.previous: Any = None

    def __enter__(self) -> "Preemption":
        sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
        if not self.enabled or sig is None or threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(sig)
        if callable(previous):
            self.signum, self.previous = sig, previous
            signal.signal(sig, self._defer)
        return self

    def _defer(self, signum, frame) -> None:
        self.requested = True
        log.warning("preemption signal %s: saving the state at the end of this step, then requeueing",
                    signal.Signals(signum).name)

    def hand_over(self) -> None:
        """Give the signal back to its handler and run it now (submitit: checkpoint, requeue, exit)."""
        if self.signum is None:
            return
        signum, previous = self.signum, self.previous
        signal.signal(signum, previous)
        self.signum = None
        if self.requested:
            previous(signum, None)

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.hand_over()  # a signal in the last step: the final state is saved, requeue now
        elif self.signum is not None:
            signal.signal(self.signum, self.previous)


def state(step, epoch, pos, model, acc, optim, sched, pairs, scaler, result, log_bytes, extra) -> dict[str, Any]:
    # extra: the callbacks' states (unlearn.callbacks.Callbacks.state_dict)
    """Everything the next step depends on: weights, optimizer and scheduler state, the random
    streams, the batch position, what the result holds so far and the step log's length."""
    inner = acc.unwrap_model(model)
    return {
        "step": step, "epoch": epoch, "pos": pos, "log_bytes": log_bytes,
        "model": trainable_state(inner),
        # no copies: the state is serialized at once (Resume.save), before the next step changes them
        "optim": optim.state_dict(), "sched": dict(sched.__dict__),
        "pairs": pairs.state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "scaler": None if scaler is None else dict(scaler.__dict__),
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
