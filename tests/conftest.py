"""Shared fixtures: compose configs exactly as run.py does, without starting a Hydra app."""
from __future__ import annotations

from pathlib import Path

import pytest
from unlearn.config import compose_config

SHARED = Path(__file__).resolve().parents[2] / "shared"


compose_cfg = compose_config  # the short name the tests use


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
