"""Config plumbing that must exist before Hydra composes: resolvers and the config directory."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def _tag(override_dirname: str) -> str:
    """The path component for a run's non-group overrides ('' -> 'default'; '/' never nests)."""
    return override_dirname.replace("/", "_") or "default"


if not OmegaConf.has_resolver("tag"):
    OmegaConf.register_new_resolver("tag", _tag)
