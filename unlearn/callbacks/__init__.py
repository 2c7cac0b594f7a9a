"""Callbacks the loop and the run call (:mod:`unlearn.callbacks.base` documents the hooks)."""
from unlearn.callbacks.base import (CALLBACKS, Callback, Callbacks, LoopState, build_callback, register_callback,
                                    resolve_callback)
from unlearn.callbacks.health import HealthCheck
from unlearn.callbacks.progress import Progress
from unlearn.callbacks.resumable import ResumeSaving
from unlearn.callbacks.step_log import STEP_LOG, StepLog, finite_json
from unlearn.callbacks.trajectory import TrajectoryEvaluation

__all__ = ["CALLBACKS", "STEP_LOG", "Callback", "Callbacks", "HealthCheck", "LoopState", "Progress", "ResumeSaving", "StepLog", "TrajectoryEvaluation",
           "build_callback", "finite_json", "register_callback", "resolve_callback"]
