"""A sweep file's grid and its runs: where they land, which records belong to it, and Hydra's
variant directory names (``override_dirname``) read back as overrides."""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Iterable, Mapping


def sweep_spec(name: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from unlearn.config import ROOT

    path = ROOT / "sweeps" / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
        raise FileNotFoundError(f"unknown sweep {name!r}; valid: {', '.join(valid)}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def sweep_runs_dir(name: str, extra: Mapping[str, str] | None = None) -> Path:
    """Where a sweep's runs land: ``paths.runs`` of its grid's first job, composed as ``run.py``
    would (``sweeps/smoke.yaml`` sets ``debug: tiny``, whose runs are under ``outputs/debug/runs``)."""
    from unlearn.config import compose_config

    params = sweep_spec(name).get("params", {})
    first = [f"{k}={str(v).split(',')[0].strip()}" for k, v in params.items()]
    cfg = compose_config([*first, *(f"{k}={v}" for k, v in (extra or {}).items())])
    return Path(str(cfg.paths.runs))


@functools.lru_cache(maxsize=1)
def variant_keys_excluded() -> frozenset[str]:
    """The overrides that never name the variant directory (conf/config.yaml's override_dirname)."""
    from omegaconf import OmegaConf

    from unlearn.config import CONFIG_DIR

    conf = OmegaConf.load(CONFIG_DIR / "config.yaml")
    return frozenset(OmegaConf.select(conf, "hydra.job.config.override_dirname.exclude_keys") or [])


def variant_items(variant: Any) -> dict[str, str]:
    """``'method.lr=0.001,eval.x=2'`` -> ``{'method.lr': '0.001', 'eval.x': '2'}`` (Hydra's
    override_dirname: ``key=value`` items joined by commas; 'default' -> {})."""
    if variant in (None, "", "default") or (isinstance(variant, float) and math.isnan(variant)):
        return {}
    items: dict[str, str] = {}
    last = None
    for piece in str(variant).split(","):
        if "=" in piece:
            last, value = piece.split("=", 1)
            items[last] = value
        elif last is not None:  # a comma inside a value (a list)
            items[last] += "," + piece
    return items


def _matches(row: Mapping[str, Any], params: Mapping[str, Any], excluded: set[str] = frozenset()) -> bool:
    """Does a run (its DataFrame row) belong to a sweep grid? Its group/split/seed choices must be in
    the grid, and its variant directory must hold exactly the grid's other keys, with values in the
    grid (a run of another sweep over the same methods, e.g. ``method.lr=1e-3``, does not belong)."""
    key_of = {"method": "method", "scheduler": "scheduler", "dataset": "dataset", "dataset.split": "split",
              "seed": "seed", "model": "model"}
    items = row.get("variant_items")
    variant = dict(items) if isinstance(items, tuple) else variant_items(row.get("variant"))
    swept = {k: v for k, v in params.items() if k not in key_of and k not in excluded}
    if set(variant) != set(swept):
        return False
    for k, v in params.items():
        if k in excluded and k not in key_of:
            continue
        allowed = {_canon(s.strip()) for s in str(v).split(",")}
        value = row.get(key_of[k]) if k in key_of else variant[k]
        if _canon(value) not in allowed:
            return False
    return True


def _canon(x: Any) -> str:
    """'1', 1 and 1.0 (a seed column with a missing value becomes float) compare equal."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return str(int(f)) if f.is_integer() else repr(f)


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["method.max_steps=2"]`` -> ``{"method.max_steps": "2"}`` (a bad item is a clear error)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--with takes KEY=VALUE (an override the sweep was run with), got {item!r}")
        out[key] = value
    return out
