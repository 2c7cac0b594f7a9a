"""The generators' size settings: one rule for every embedded world."""
from collections.abc import Mapping
from typing import Any


def integer_settings(world: str, cfg: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                     minimums: Mapping[str, int | None] | None = None, other: tuple[str, ...] = ()) -> dict[str, Any]:
    """``defaults`` with the values ``cfg`` sets (``None`` keeps the default; other keys are ignored, so a
    whole ``dataset`` node can be passed). Each value is an integer, at least its minimum in ``minimums``
    (1 for a key it leaves out, no bound for ``None``); the keys in ``other`` are copied unchecked.
    A bad value raises one ValueError naming ``world``, the key and the bound."""
    cfg, minimums = cfg or {}, {"seed": None, **(minimums or {})}
    out = {key: default if cfg.get(key) is None else cfg.get(key) for key, default in defaults.items()}
    for key, value in out.items():
        if key in other:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{world}: `{key}` must be an integer, got {value!r}")
        minimum = minimums.get(key, 1)
        if minimum is not None and value < minimum:
            raise ValueError(f"{world}: `{key}` must be >= {minimum}, got {value}")
    return out
