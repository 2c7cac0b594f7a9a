"""Per-item logs, TOFU's per-sample layout ``{metric: {"0": v0, "1": v1, ...}}``, which every
evaluator writes (TOFU, MUSE, the membership attacks) and open-unlearning's files carry too."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def indexed(values) -> dict[str, Any]:
    """TOFU's per-sample layout: {"0": v0, "1": v1, ...}."""
    return {str(i): (v.tolist() if hasattr(v, "tolist") else v) for i, v in enumerate(values)}


def log_array(log: Mapping, key: str) -> np.ndarray:
    """Values of ``log[key]`` in item-index order as float64 (2-D for list-valued metrics)."""
    if key not in log:
        raise ValueError(f"log has no metric {key!r}")
    per_item = log[key]
    order = sorted(per_item, key=int)
    return np.asarray([per_item[k] for k in order], dtype=np.float64)
