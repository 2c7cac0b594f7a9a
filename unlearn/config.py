"""Config plumbing that must exist before Hydra composes: resolvers and the config directory."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "conf"
# conf/config.yaml adds the repository root to Hydra's search path through this variable, so that
# the sweep files in sweeps/ form the `sweeps` config group wherever the command is run from.
os.environ.setdefault("UNLEARN_ROOT", str(ROOT))


def _tag(override_dirname: str) -> str:
    """The path component for a run's non-group overrides ('' -> 'default'; '/' never nests)."""
    return override_dirname.replace("/", "_") or "default"


def _retain_of(forget_split: str) -> str:
    """forget10 -> retain90: the retain split (and retain-model suffix) paired with a forget split."""
    from unlearn.worlds.tofu import retain_split_for

    return retain_split_for(forget_split)


if not OmegaConf.has_resolver("tag"):
    OmegaConf.register_new_resolver("tag", _tag)
if not OmegaConf.has_resolver("retain_of"):
    OmegaConf.register_new_resolver("retain_of", _retain_of)


def compose_config(overrides=(), return_hydra_config: bool = False):
    """The config ``python run.py <overrides>`` would run, composed without starting an app
    (tests, benchmarks, notebooks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
