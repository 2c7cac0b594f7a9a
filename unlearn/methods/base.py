"""The method interface: batches -> named task losses, and how they combine.

A method never runs the loop. The engine asks it for one loss closure per task, computes the
per-task gradients (or a single backward of the weighted sum, for scalarizations when no
per-task statistics are wanted) and asks it for the update direction ``d``; ``d`` is handed to
the optimizer as the gradient, i.e. the update is ``w <- w - lr * precond(d)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from unlearn.gradients import Grad, TaskGradients
from unlearn.losses import Batch, lm_loss
from unlearn.registry import Registry

METHODS: Registry[type["Method"]] = Registry("method")
register_method = METHODS.register


@dataclass
class MethodContext:
    """What a method may use besides its batches, handed to :meth:`Method.setup` once per run.

    Batches carry ``index``: the positions of their examples in ``forget_rows`` / ``retain_rows``,
    so per-example quantities precomputed in ``setup`` (reference log-probs, alternative answers)
    can be gathered every step without recomputation.
    """

    encode: Callable[[str, str], Any]  # (question, answer) -> feature, with the run's template
    forget_rows: Sequence[Mapping[str, Any]]
    retain_rows: Sequence[Mapping[str, Any]]
    forget_features: Sequence[Any]
    retain_features: Sequence[Any]
    pad_id: int
    device: torch.device
    load_reference: Callable[[], torch.nn.Module] | None = None  # a frozen copy of the target


class Method:
    """Base: each task's loss is the LM loss on its batch; subclasses set ``tasks`` and the combination."""

    tasks: tuple[str, ...] = ("forget", "retain")

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg

    def setup(self, ctx: MethodContext) -> None:
        """Precompute what stays fixed during the run (called once, before the first step)."""

    def task_losses(
        self, model: torch.nn.Module, batches: Mapping[str, Batch]
    ) -> dict[str, Callable[[], Tensor]]:
        """One closure per task; the engine runs each in its own forward/backward."""
        return {t: (lambda b=batches[t]: lm_loss(model, b)) for t in self.tasks}

    def weights(self) -> dict[str, float] | None:
        """Scalarization weights w_t (d = sum_t w_t g_t); ``None`` for a direction method."""
        return None

    def direction(self, grads: TaskGradients) -> Grad:
        w = self.weights()
        if w is None:
            raise NotImplementedError(f"{type(self).__name__} must define weights() or direction()")
        return grads.combine(w)


def build_method(cfg: Mapping[str, Any]) -> Method:
    return METHODS.get(cfg["name"])(cfg)
