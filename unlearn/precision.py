"""Training precision, by Lightning's names: what the trainable weights are stored in, what the
forward computes in, and (fp16) the loss scale. The one home of precision; the engine and the
pipeline ask it, nothing else branches on dtypes.

========== ===================== ================ ==============================================
name       trainable weights +    compute          how
           optimizer state
========== ===================== ================ ==============================================
32-true    fp32                  fp32             plain
bf16-mixed fp32 (master)         bf16             ``torch.autocast``; FSDP2: ``MixedPrecisionPolicy``
16-mixed   fp32 (master)         fp16             the same + a dynamic loss scale (GradScaler's rule)
bf16-true  bf16                  bf16             the weights themselves (warned: updates round away)
========== ===================== ================ ==============================================

``model.dtype`` stays the *storage* dtype: frozen models (the reference of NPO / KL / DPO, the
target and retain models under evaluation) load in it, and the unlearned model is cast back to it
before it is saved and evaluated -- as the references save their checkpoints and reload them to
evaluate (TOFU under DeepSpeed keeps fp32 masters and saves bf16; MUSE trains and saves bf16).

Why not ``Accelerator(mixed_precision=...)``: accelerate's precision is process-global
(``AcceleratorState`` refuses a second value, so a multirun could not mix precisions), it silently
ignores fp16 on CPU, and its loss scaler unscales the *summed* gradient inside
``optimizer.step``, while a direction method must see each task's gradient unscaled before it
combines them (NGDiff's normalization is not linear). The autocast context and the scale rule
are the ones accelerate / ``torch.amp.GradScaler`` use.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar, Callable, Mapping, Sequence

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
_HALF = {"bf16": torch.bfloat16, "16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str = "32-true"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"unknown model.precision {self.name!r}; valid: {', '.join(PRECISIONS)}")

    @property
    def mixed(self) -> bool:
        return self.name.endswith("-mixed")

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32 if self.name == "32-true" else _HALF[self.name.split("-")[0]]

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype of the trainable weights (and so of their gradients and the optimizer state)."""
        return torch.bfloat16 if self.name == "bf16-true" else torch.float32

    def prepare_trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        """Cast the trainable parameters to :attr:`weight_dtype` in place (frozen ones -- LoRA's base
        weights -- stay in the storage dtype they were loaded in, as peft + autocast do)."""
        if self.name == "bf16-true":
            log.warning("model.precision=bf16-true: pure bf16 weights and optimizer state; an update "
                        "smaller than half a bf16 step of a weight rounds away (MUSE trains this way)")
        for p in model.parameters():
            if p.requires_grad and p.dtype != self.weight_dtype:
                p.data = p.data.to(self.weight_dtype)
        return model

    def autocast(self, device: torch.device | str, sharded: bool = False) -> contextlib.AbstractContextManager:
        """The forward's context: autocast to the half dtype for ``*-mixed`` (not under FSDP, whose
        :meth:`fsdp_policy` casts the gathered parameters instead)."""
        if not self.mixed or sharded:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=self.compute_dtype)

    def fsdp_policy(self):
        """FSDP2's policy for ``*-mixed``: half-precision gathered parameters (the compute),
        fp32 gradient reduction (exact sharded sums); None otherwise."""
        if not self.mixed:
            return None
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=self.compute_dtype, reduce_dtype=torch.float32)

    def loss_scaler(self) -> "LossScaler | None":
        return LossScaler() if self.name == "16-mixed" else None


@dataclass
class LossScaler:
    """fp16's dynamic loss scale, with ``torch.amp.GradScaler``'s defaults and rule: scale the loss
    before backward, unscale each task's gradient after it; a non-finite gradient skips the step
    and halves the scale, ``growth_interval`` finite steps in a row double it."""

    scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    _good_steps: int = field(default=0, repr=False)
    active: ClassVar[bool] = True  # the loop unscales and checks the gradients

    def scaled(self, backward: Callable[[torch.Tensor], None]) -> Callable[[torch.Tensor], None]:
        return lambda loss: backward(loss * self.scale)

    def unscale_(self, grads: Sequence[torch.Tensor]) -> bool:
        """Divide ``grads`` by the scale in place; True when every value is finite (this process)."""
        grads = [g for g in grads if g is not None]
        if grads:
            torch._foreach_mul_(grads, 1.0 / self.scale)
        return all(bool(torch.isfinite(g).all()) for g in grads)

    def update(self, found_inf: bool) -> None:
        if found_inf:
            self.scale *= self.backoff_factor
            self._good_steps = 0
            return
        self._good_steps += 1
        if self._good_steps == self.growth_interval:
            self.scale *= self.growth_factor
            self._good_steps = 0

    def state(self) -> dict[str, float]:
        return {"loss_scale": self.scale}


class NoScaling:
    """No loss scale (every precision but 16-mixed): the loop calls it like a :class:`LossScaler`."""

    active = False

    def scaled(self, backward: Callable[[torch.Tensor], None]) -> Callable[[torch.Tensor], None]:
        return backward

    def update(self, found_inf: bool) -> None:
        pass

    def state(self) -> dict[str, float]:
        return {}


def to_storage(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """The trained (unwrapped) model in its storage dtype, in place, before saving and evaluating."""
    if any(p.dtype != dtype for p in model.parameters() if p.is_floating_point()):
        model.to(dtype)
    return model



LAUNCHER_PRECISION = {"bf16": "bf16-mixed", "fp16": "16-mixed"}


def check_launcher_precision(precision: Precision, env: Mapping[str, str] | None = None) -> None:
    """``accelerate launch --mixed_precision`` (or a config file's ``mixed_precision``) must agree
    with ``model.precision``: the run's precision is applied here, never twice (the Accelerator is
    made with ``mixed_precision="no"``)."""
    asked = (os.environ if env is None else env).get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked in ("no", "") or LAUNCHER_PRECISION.get(asked) == precision.name:
        return
    raise ValueError(f"the launcher asks for mixed_precision={asked!r} but model.precision={precision.name}: "
                     f"set model.precision={LAUNCHER_PRECISION.get(asked, '<one of ' + ', '.join(PRECISIONS) + '>')} "
                     "(the run's precision) or launch without mixed precision")
