"""Per-task gradients: the one piece of gradient bookkeeping every direction method shares.

A *direction method* (NGDiff, MGDA, PCGrad, ...) needs each task's gradient separately. The
engine computes them with one backward pass per task (measured on this machine: two separate
backward passes cost 0.95-1.08x one combined backward) and hands a :class:`TaskGradients` to the
method, which combines them with the inner products and norms defined here.

All inner products are *global*: over every trainable parameter and, when parameters are
sharded across processes (FSDP), summed across processes through ``reduce``
(:func:`unlearn.distributed.sum_across`). Under plain DDP the gradients are already all-reduced
after backward, so the local sum is the global one and ``reduce`` stays ``None``. Sharded
gradients are used through their local shard (FSDP2's DTensors: ``to_local()``), so each process
sums its own part and ``reduce`` adds the parts.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

Grad = list[Tensor]  # one tensor per trainable parameter, same order as the parameter list


class TaskGradients(Mapping[str, Grad]):
    """Named per-task gradients plus the geometry a direction method needs."""

    def __init__(
        self, grads: Mapping[str, Grad], reduce: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        self._grads = dict(grads)
        self._reduce = reduce
        self._dots: dict[tuple[str, str], float] = {}  # named pairs are reused by method + stats

    def __getitem__(self, name: str) -> Grad:
        return self._grads[name]

    def __iter__(self):
        return iter(self._grads)

    def __len__(self) -> int:
        return len(self._grads)

    def _vec(self, g: str | Grad) -> Grad:
        return self._grads[g] if isinstance(g, str) else g

    def dot(self, a: str | Grad, b: str | Grad) -> float:
        """<a, b> over all parameters (per-tensor dots summed in float64)."""
        if isinstance(a, str) and isinstance(b, str):
            key = (a, b) if a <= b else (b, a)
            if key not in self._dots:
                self._dots[key] = self._dot(self._grads[a], self._grads[b])
            return self._dots[key]
        return self._dot(self._vec(a), self._vec(b))

    def _dot(self, va: Grad, vb: Grad) -> float:
        # per-tensor dots in the gradients' own dtype (no float64 copies of whole gradients),
        # summed across tensors in float64
        parts = [torch.dot(_local(x).reshape(-1), _local(y).reshape(-1)) for x, y in zip(va, vb, strict=True)]
        total = torch.stack(parts).double().sum()
        if self._reduce is not None:
            total = self._reduce(total)
        return float(total)

    def norm(self, a: str | Grad) -> float:
        return self.dot(a, a) ** 0.5

    def cos(self, a: str | Grad, b: str | Grad, eps: float = 1e-12) -> float:
        return self.dot(a, b) / (self.norm(a) * self.norm(b) + eps)

    def combine(self, coeffs: Mapping[str, float] | Sequence[tuple[str | Grad, float]]) -> Grad:
        """sum_i c_i g_i, as fresh tensors (the task gradients are left untouched)."""
        items = coeffs.items() if isinstance(coeffs, Mapping) else coeffs
        out: Grad | None = None
        for g, c in items:
            v = self._vec(g)
            if out is None:
                out = [x * c for x in v]
            else:
                torch._foreach_add_(out, v, alpha=c)
        if out is None:
            raise ValueError("combine() needs at least one gradient")
        return out

    def stats(self, direction: Grad | None = None) -> dict[str, float]:
        """Per-task norms, pairwise cosine of forget/retain, and <d, g_t> for the realized direction."""
        out = {f"grad_norm/{t}": self.norm(t) for t in self._grads}
        if "forget" in self._grads and "retain" in self._grads:
            out["cos/forget_retain"] = self.cos("forget", "retain")
        if direction is not None:
            out["dir_norm"] = self.norm(direction)
            for t in self._grads:
                out[f"dot/dir_{t}"] = self.dot(direction, t)
        return out


def _local(t: Tensor) -> Tensor:
    """This process's shard of a sharded tensor (a DTensor), else the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def collect_task_gradients(
    params: Sequence[torch.nn.Parameter],
    losses: Mapping[str, Callable[[], Tensor]],
    backward: Callable[[Tensor], None],
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[dict[str, Tensor], TaskGradients]:
    """Run each task's loss closure and backward separately; return detached losses and gradients.

    The last task's gradient is taken from ``p.grad`` without a copy (the buffers are detached and
    then cleared), so a two-task step holds one extra gradient copy, not two.
    """
    names = list(losses)
    grads: dict[str, Grad] = {}
    values: dict[str, Tensor] = {}
    for i, name in enumerate(names):
        for p in params:
            p.grad = None
        loss = losses[name]()
        backward(loss)
        values[name] = loss.detach()
        last = i == len(names) - 1
        grads[name] = [
            (p.grad if last else p.grad.detach().clone()) if p.grad is not None else torch.zeros_like(p)
            for p in params
        ]
    for p in params:
        p.grad = None
    return values, TaskGradients(grads, reduce)


def set_gradient(params: Iterable[torch.nn.Parameter], direction: Grad) -> None:
    """Hand a direction to the optimizer as the gradient (no clipping, no rescaling)."""
    for p, d in zip(params, direction, strict=True):
        p.grad = d.to(p.dtype)
