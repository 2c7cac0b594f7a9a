"""Config plumbing that must exist before Hydra composes: resolvers and the config directory."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "conf"
# conf/config.yaml adds the repository root to Hydra's search path through this variable, so that
# the sweep files in sweeps/ form the `sweeps` config group wherever the command is run from.
os.environ.setdefault("UNLEARN_ROOT", str(ROOT))


TAG_MAX_BYTES = 120  # a run directory's override component (file systems allow 255 bytes a name)
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+%@-]+")


def dir_tag(override_dirname: str) -> str:
    """The path component for a run's non-group overrides, readable and shell-friendly.

    '' -> 'default'; '/' becomes '_' (never nests). A value with other characters a shell would
    need quoted (``model.lora={r: 8, alpha: 16}``) loses its spaces and brackets, ':' becomes '-',
    anything else '_', and a short hash of the exact overrides keeps two such names apart
    (``model.lora=r-8,alpha-16_3f9a1c``). Past :data:`TAG_MAX_BYTES` the name is its first 60
    characters and a 12-digit hash. The exact overrides are written inside the run directory
    (``overrides.txt``, and the record's ``overrides``), which is what reports read."""
    if not override_dirname:
        return "default"
    name = override_dirname.replace("/", "_")
    digest = hashlib.sha256(override_dirname.encode()).hexdigest()
    if _UNSAFE.search(name):
        cleaned = re.sub(r"[\s{}\[\]()'\"]+", "", name).replace(":", "-")
        name = f"{_UNSAFE.sub('_', cleaned)}_{digest[:6]}"
    if len(name.encode()) > TAG_MAX_BYTES:
        name = f"{name[:60]}_{digest[:12]}"
    return name


def _retain_of(forget_split: str) -> str:
    """forget10 -> retain90: the retain split (and retain-model suffix) paired with a forget split."""
    from unlearn.worlds.tofu import retain_split_for

    return retain_split_for(forget_split)


if not OmegaConf.has_resolver("tag"):
    OmegaConf.register_new_resolver("tag", dir_tag)
if not OmegaConf.has_resolver("retain_of"):
    OmegaConf.register_new_resolver("retain_of", _retain_of)


def compose_isolated(overrides=()):
    """The config the files compose (:func:`compose_config` without ``eval.compat`` applied), also
    from inside a running Hydra app (its global state is set aside and put back): the schema
    check's base config."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    name = JobRuntime.instance().conf.get("name")
    GlobalHydra.instance().clear()
    try:
        return _compose(overrides)
    finally:
        restore_gh_from_backup(backup)
        if name is not None:  # composing names the job "app"; the running job keeps its own name (run.log)
            JobRuntime.instance().set("name", name)


def compose_config(overrides=(), return_hydra_config: bool = False):
    """The config ``python run.py <overrides>`` would run, composed without starting an app
    (tests, benchmarks, notebooks): with ``eval.compat``'s settings in place, as ``run()`` puts them."""
    from eval.compat import apply_compat

    cfg = _compose(overrides, return_hydra_config)
    try:
        return apply_compat(cfg)
    except ValueError:  # an eval.compat the benchmark does not know: run()'s validation records it
        return cfg


def _compose(overrides=(), return_hydra_config: bool = False):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
