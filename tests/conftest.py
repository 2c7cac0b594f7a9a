"""Shared fixtures: compose configs exactly as run.py does, without starting a Hydra app."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Sequence

import pytest
from unlearn.config import compose_config

SHARED = Path(__file__).resolve().parents[2] / "shared"


compose_cfg = compose_config  # the short name the tests use

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N processes share the cores, one thread each
    import torch

    torch.set_num_threads(1)


def sampled(values: Sequence, fast: Sequence) -> list:
    """``values`` as parameters (a tuple: one per argument name): those in ``fast`` run in the fast
    tier, the others in the slow one."""
    return [pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=() if v in fast else pytest.mark.slow)
            for v in values]


def covering(a: Sequence[str], b: Sequence[str]) -> list:
    """Every pair of two option lists as parameters: the slow tier runs them all, the fast tier a
    covering subset in which each option of either list appears at least once (pairs
    ``(a[i mod |a|], b[i mod |b|])``)."""
    n = max(len(a), len(b))
    fast = {(a[i % len(a)], b[i % len(b)]) for i in range(n)}
    return [pytest.param(x, y, id=f"{x}-{y}", marks=() if (x, y) in fast else pytest.mark.slow) for x in a for y in b]


@pytest.fixture
def debug_cfg(tmp_path):
    """A debug=tiny config writing under tmp_path; call with extra overrides."""

    def make(*overrides: str):
        return compose_cfg(["debug=tiny", f"paths.root={tmp_path / 'outputs'}", *overrides])

    return make


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One stage cache for the whole session, so the debug world and models are built once: under
    ``pytest -n N`` one for all N processes (the stage cache's file locks let one build while the
    others wait, as in a parallel sweep)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "cache"
        path.mkdir(exist_ok=True)
        return path
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def warm_cache(shared_cache, tmp_path):
    """A stage cache of this test's own holding a copy of the session's built debug stages (the
    world, tokenizer and models, not the reference evaluations): a test of what a cache reuses and
    rebuilds starts from the models it would otherwise build first."""
    import shutil

    from unlearn.preparation import prepare
    from unlearn.stages import StageCache

    built = prepare(compose_cfg(["debug=tiny", f"paths.root={tmp_path / 'outputs'}"]), StageCache(shared_cache)).stages
    cache = tmp_path / "cache"
    for art in built.values():  # the default debug stages only (others built in the session stay out)
        shutil.copytree(art.path, cache / art.stage / art.path.name)
    return cache


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache, no proxy, the person's own HF_HUB_OFFLINE unset, and the
    offline switches restored afterwards; ``hub(up)`` points the endpoint at a local port that
    accepts connections (up) or refuses them."""
    import datasets
    from huggingface_hub import constants

    from unlearn import sources

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", datasets.config.HF_DATASETS_OFFLINE)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "_USER_OFFLINE", None)
    monkeypatch.setattr(sources.urllib.request, "getproxies", lambda: {})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))

    def endpoint(up: bool) -> None:
        if up:
            listener.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")

    yield endpoint
    listener.close()
