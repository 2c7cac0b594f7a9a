"""The unlearning optimizer, by name (``method.optimizer``).

``adamw`` is ``torch.optim.AdamW`` with its defaults (betas 0.9 / 0.999, eps 1e-8), which are the
Trainer's defaults too (TOFU, MUSE). ``sgd`` takes ``method.momentum``. The ``bitsandbytes`` ones
(optional extra ``pip install -e ".[bnb]"``, CUDA only) are the Trainer's ``optim=`` choices of the
same names: ``paged_adamw_32bit`` (open-unlearning's trainer default), ``paged_adamw_8bit``,
``adamw_8bit``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

BNB_OPTIMIZERS = {"adamw_8bit": "AdamW8bit", "paged_adamw_8bit": "PagedAdamW8bit",
                  "paged_adamw_32bit": "PagedAdamW32bit"}
OPTIMIZERS = ("adamw", "sgd", *BNB_OPTIMIZERS)


def check_optimizer(name: str, on_gpu: bool | None = None) -> None:
    """Fail before any work: an unknown name, or a bitsandbytes optimizer without the package or a GPU."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown method.optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if name not in BNB_OPTIMIZERS:
        return
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError(f"method.optimizer={name} needs bitsandbytes: pip install -e \".[bnb]\"") from None
    if not (torch.cuda.is_available() if on_gpu is None else on_gpu):
        raise ValueError(f"method.optimizer={name} (bitsandbytes) needs a CUDA GPU; on CPU use adamw")


def build_optimizer(params: Sequence[torch.nn.Parameter], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(cfg.get("optimizer", "adamw"))
    check_optimizer(name)
    lr, wd = float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(cfg.get("momentum", 0.0)))
    import bitsandbytes as bnb

    return getattr(bnb.optim, BNB_OPTIMIZERS[name])(params, lr=lr, weight_decay=wd)
