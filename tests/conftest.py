"""Shared fixtures: compose configs exactly as run.py does, without starting a Hydra app."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import unlearn.config  # noqa: F401  (resolvers)
from unlearn.config import CONFIG_DIR

SHARED = Path(__file__).resolve().parents[2] / "shared"


def compose_cfg(overrides: list[str] = (), return_hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


@pytest.fixture
def debug_cfg(tmp_path):
    """A debug=tiny config writing under tmp_path; call with extra overrides."""

    def make(*overrides: str):
        return compose_cfg(["debug=tiny", f"paths.root={tmp_path / 'outputs'}", *overrides])

    return make


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One stage cache for the whole session, so the debug world and models are built once."""
    return tmp_path_factory.mktemp("cache")
