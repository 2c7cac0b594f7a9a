"""Callbacks: objects the loop and the run call at fixed points, so that a capability (a tracker,
a step log, a stopping or selection rule, a kind of checkpoint) is one module, not a branch.

The hooks, in the order one run calls them (Lightning's ``Callback`` and Hugging Face's
``TrainerCallback`` are the models; every hook is optional)::

    on_train_start(state)               before the first step (after a resumed state is restored)
    on_step_end(state, row)             after each update; ``row`` is the step's log row (add keys
                                        to log them); ``state.step`` counts the updates taken.
                                        A diverged step (``row["diverged"]``) ends the loop after it;
                                        a callback ends it by setting ``state.stop`` to a reason
    on_evaluate(state, step, summary)   each trajectory evaluation (``eval.trajectory_every``)
    on_train_end(state, result)         after the last step (not after an exception)
    on_record(record)                   the run's record, before it is written (also a failed run's)

``state_dict()`` / ``load_state_dict(d)``: what a callback must carry across a resume (saved with
the resumable state, restored before ``on_train_start``). A callback that holds files or signal
handlers for the loop's length enters them on ``state.stack`` (a :class:`contextlib.ExitStack`
closed when the loop ends, also on an exception).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


class Callback:
    """Override any hook; the defaults do nothing. ``name`` keys the callback's resumable state."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def on_train_start(self, state: "LoopState") -> None: ...

    def on_step_end(self, state: "LoopState", row: dict[str, Any]) -> None: ...

    def on_evaluate(self, state: "LoopState", step: int, summary: dict[str, Any]) -> None: ...

    def on_train_end(self, state: "LoopState", result: Any) -> None: ...

    def on_record(self, record: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Callbacks:
    """An ordered list of callbacks, called as one: ``callbacks.on_step_end(state, row)`` calls each
    callback's hook in order. (``on_record`` is the run's: :func:`unlearn.runner.close_record`
    calls each callback's, even after another one failed.)"""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.items = [c for c in callbacks if c is not None]

    def _call(self, hook: str, *args) -> None:
        for c in self.items:
            getattr(c, hook)(*args)

    def on_train_start(self, state):
        self._call("on_train_start", state)

    def on_step_end(self, state, row):
        self._call("on_step_end", state, row)

    def on_evaluate(self, state, step, summary):
        self._call("on_evaluate", state, step, summary)

    def on_train_end(self, state, result):
        self._call("on_train_end", state, result)

    def state_dict(self) -> dict[str, Any]:
        return {c.name: s for c in self.items if (s := c.state_dict()) is not None}

    def load_state_dict(self, states: dict[str, Any]) -> None:
        for c in self.items:
            if c.name in states:
                c.load_state_dict(states[c.name])


@dataclass
class LoopState:
    """What the callbacks see: the run's pieces and where the loop stands."""

    model: Any
    optimizer: Any
    scheduler: Any
    accelerator: Any
    method: Any
    total_steps: int
    result: Any  # unlearn.engine.EngineResult, filled as the loop goes
    callbacks: Callbacks
    step: int = 0  # updates taken
    epoch: int = 0
    pos: int = 0  # the next step's position in its epoch
    log_bytes: int = 0  # the step log's length after the last row (main process)
    resumed: dict[str, Any] | None = None  # the resumable state this run continued from
    stop: str | None = None  # set by a callback (the reason): the loop ends after this step
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


CALLBACKS: dict[str, Callable[..., Callback]] = {}


def register_callback(name: str):
    """Register a callback factory (a class, or a function of ``(cfg, run_dir)``) for ``callbacks=[name]``."""

    def deco(factory):
        CALLBACKS[name] = factory
        return factory

    return deco


def resolve_callback(name: str) -> Callable[..., Callback]:
    """A registered name, or ``package.module:Name`` (imported, which also registers what it defines)."""
    if name in CALLBACKS:
        return CALLBACKS[name]
    module, _, attr = name.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        mod = None
    found = getattr(mod, attr, None) if attr else CALLBACKS.get(name)
    if found is None:
        raise ValueError(f"callbacks: unknown callback {name!r}; valid: a registered name "
                         f"({', '.join(sorted(CALLBACKS)) or 'none registered'}) or package.module:Name")
    return found


def build_callback(name: str, cfg: Any, run_dir: Any) -> Callback:
    """The callback ``name`` for one run: its factory gets ``(cfg, run_dir)`` when it takes them."""
    factory = resolve_callback(name)
    try:
        takes = len(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes = 0
    return factory(cfg, run_dir) if takes >= 2 else factory()
