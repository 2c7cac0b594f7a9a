"""The resumable state (``resume_every``): saved every ``every`` steps, after the last one (a kill
during evaluation then redoes no step) and when the job is preempted (SLURM: the requeued job
continues from this step). Restoring it is the loop's :func:`unlearn.engine.restore`; the state
itself is :func:`unlearn.resume.state`."""
from __future__ import annotations

from typing import Callable

from unlearn.callbacks.base import Callback
from unlearn.resume import Resume


class ResumeSaving(Callback):
    """Last in the list: the state it saves holds what the other callbacks did at this step."""

    def __init__(self, resume: Resume, build: Callable[[object], dict], any_process: Callable[[bool], bool]) -> None:
        self.resume, self.build, self.any_process = resume, build, any_process
        self.preempt = None

    def on_train_start(self, state) -> None:
        self.preempt = state.stack.enter_context(self.resume.preemption())

    def on_step_end(self, state, row) -> None:
        if row.get("diverged"):
            return
        every, step = self.resume.every, state.step
        preempted = (self.preempt.signum is not None  # every process at the same step
                     and self.any_process(self.preempt.requested))
        if every > 0 and (step % every == 0 or step == state.total_steps or preempted):
            self.resume.save(lambda: self.build(state), state.main)
            if preempted:
                self.preempt.hand_over()
