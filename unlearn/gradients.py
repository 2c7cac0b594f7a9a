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

import contextlib
from typing import Callable, ContextManager, Iterable, Mapping, Sequence

import torch
from torch import Tensor

Grad = list[Tensor]  # one tensor per trainable parameter, same order as the parameter list
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s: coef = max_norm / (norm + 1e-6)


class TaskGradients(Mapping[str, Grad]):
    """Named per-task gradients plus the geometry a direction method needs."""

    def __init__(
        self, grads: Mapping[str, Grad], reduce: Callable[[Tensor], Tensor] | None = None,
        reached: Sequence[bool] | None = None,
    ) -> None:
        self._grads = dict(grads)
        self._reduce = reduce
        # per parameter: did any task's backward give it a gradient (None: every one did)
        self._reached = None if reached is None or all(reached) else list(reached)
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
        """<a, b> over all parameters (:func:`global_dot`; named pairs are computed once)."""
        if isinstance(a, str) and isinstance(b, str):
            key = (a, b) if a <= b else (b, a)
            if key not in self._dots:
                self._dots[key] = self._dot(self._grads[a], self._grads[b])
            return self._dots[key]
        return self._dot(self._vec(a), self._vec(b))

    def _dot(self, va: Grad, vb: Grad) -> float:
        return global_dot(va, vb, self._reduce)

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

    def combine_into_place(self, coeffs: Mapping[str, float]) -> list[Tensor | None]:
        """sum_t c_t g_t written over the buffers of the last task, the others released: the
        update costs no buffer beyond the task gradients themselves (a two-task step holds two
        gradient-sized buffers at its peak, and one once the direction is formed). The object
        is spent afterwards.

        A parameter that no task's backward reached (RMU's layers after l) gets None, not zeros:
        as one backward of the summed loss leaves its ``.grad``, so that AdamW skips it (no weight
        decay, no moment update) in either path, on any number of processes."""
        if not self._grads:
            raise ValueError("no task gradients left (combine_into_place was called already)")
        names = list(self._grads)
        last = names[-1]
        out = self._grads[last]
        torch._foreach_mul_(out, float(coeffs.get(last, 0.0)))
        for t in names[:-1]:
            if coeffs.get(t, 0.0):
                torch._foreach_add_(out, self._grads[t], alpha=float(coeffs[t]))
        self._grads = {}
        if self._reached is None:
            return out
        return [x if r else None for x, r in zip(out, self._reached)]

    def stats(self, coeffs: Mapping[str, float] | None = None) -> dict[str, float]:
        """Per-task norms, the cosine of forget/retain, and, for the direction d = sum_s c_s g_s,
        <d, g_t> = sum_s c_s <g_s, g_t> (from the Gram matrix: no pass over d itself)."""
        out = {f"grad_norm/{t}": self.norm(t) for t in self._grads}
        if "forget" in self._grads and "retain" in self._grads:
            out["cos/forget_retain"] = self.cos("forget", "retain")
        if coeffs is not None:
            for t in self._grads:
                out[f"dot/dir_{t}"] = sum(float(c) * self.dot(s, t) for s, c in coeffs.items() if c)
        return out


def global_dot(va: Grad, vb: Grad, reduce: Callable[[Tensor], Tensor] | None = None) -> float:
    """<a, b> over every parameter: each tensor's dot accumulated in fp32 whatever the gradient
    dtype (a bf16 dot rounds its result to 3 digits: MGDA's ||u - v||^2 = uu + vv - 2uv would
    cancel to noise), summed across tensors in float64, and across processes by ``reduce``."""
    parts = [torch.dot(_fp32(_local(x)), _fp32(_local(y))) for x, y in zip(va, vb, strict=True)]
    total = torch.stack(parts).double().sum() if parts else torch.zeros((), dtype=torch.float64)
    if reduce is not None:
        total = reduce(total)
    return float(total)


def _fp32(t: Tensor) -> Tensor:
    t = t.reshape(-1)
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _local(t: Tensor) -> Tensor:
    """This process's shard of a sharded tensor (a DTensor), else the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def collect_task_gradients(
    params: Sequence[torch.nn.Parameter],
    losses: Mapping[str, Callable[[], Tensor] | Sequence[Callable[[], Tensor]]],
    backward: Callable[[Tensor], None],
    reduce: Callable[[Tensor], Tensor] | None = None,
    sync: Callable[[bool], ContextManager] | None = None,
) -> tuple[dict[str, Tensor], TaskGradients]:
    """Each task's gradient, accumulated over its micro-batches; return summed losses and gradients.

    ``losses[t]`` is one loss closure, or one per micro-batch (gradient accumulation): their
    gradients add up in ``p.grad``, and ``sync(last)`` is the context of each backward --
    gradient synchronization off for all but a task's last micro-batch (DDP's ``no_sync``), so
    each task's gradient is all-reduced once. A task's gradient is then moved out of ``p.grad``
    (no copy) before the next task's backward, so the per-task gradients cost one buffer per
    task and nothing more.
    """
    grads: dict[str, Grad] = {}
    values: dict[str, Tensor] = {}
    reached = [False] * len(params)
    for name, fns in losses.items():
        fns = [fns] if callable(fns) else list(fns)
        for p in params:
            p.grad = None
        total = None
        for j, fn in enumerate(fns):
            with sync(j == len(fns) - 1) if sync is not None else contextlib.nullcontext():
                loss = fn()
                backward(loss)
            total = loss.detach() if total is None else total + loss.detach()
        values[name] = total
        reached = [r or p.grad is not None for r, p in zip(reached, params)]
        grads[name] = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    return values, TaskGradients(grads, reduce, reached)


def set_gradient(params: Iterable[torch.nn.Parameter], direction: Sequence[Tensor | None]) -> None:
    """Hand a direction to the optimizer as the gradient (no clipping, no rescaling; None: none)."""
    for p, d in zip(params, direction, strict=True):
        p.grad = None if d is None else d.to(p.dtype)


def max_grad_norm(cfg: Mapping) -> float | None:
    """``method.max_grad_norm``: a positive norm, or None (no clipping)."""
    value = cfg.get("max_grad_norm")
    if value is None:
        return None
    if not float(value) > 0:
        raise ValueError(f"method.max_grad_norm must be > 0 or null, got {value}")
    return float(value)


def clip_direction(params: Sequence[torch.nn.Parameter], max_norm: float | None, reduce) -> dict[str, float]:
    """||d|| before clipping (global, fp32-accumulated), and d scaled to ``max_norm`` if longer
    (torch's ``clip_grad_norm_`` rule, on the final update direction -- as the Trainer clips the
    accumulated gradient)."""
    d = [p.grad for p in params if p.grad is not None]
    norm = global_dot(d, d, reduce) ** 0.5
    out = {"dir_norm": norm}
    if max_norm is not None:
        coef = min(1.0, max_norm / (norm + CLIP_EPS))
        if coef < 1.0:
            torch._foreach_mul_(d, coef)
        out["clip_coef"] = coef
    return out
