"""Benchmark worlds: synthetic generators in the real benchmarks' formats, and their loaders."""

from unlearn.worlds.muse import (
    MUSE_EXTRA_SPLITS,
    MUSE_HUB_IDS,
    MUSE_SPLITS,
    load_muse,
    validate_muse_rows,
)
from unlearn.worlds.muse_synth import generate_muse_synth
from unlearn.worlds.tofu import (
    FORGET_TO_RETAIN,
    load_tofu,
    retain_split_for,
    validate_tofu_rows,
)
from unlearn.worlds.tofu_synth import generate_tofu_synth

__all__ = [
    "FORGET_TO_RETAIN",
    "MUSE_EXTRA_SPLITS",
    "MUSE_HUB_IDS",
    "MUSE_SPLITS",
    "generate_muse_synth",
    "generate_tofu_synth",
    "load_muse",
    "load_tofu",
    "retain_split_for",
    "validate_muse_rows",
    "validate_tofu_rows",
]
