"""Benchmark worlds: synthetic generators in the real benchmarks' formats, and their loaders."""

from unlearn.worlds.tofu import (
    FORGET_TO_RETAIN,
    load_tofu,
    retain_split_for,
    validate_tofu_rows,
)
from unlearn.worlds.tofu_synth import generate_tofu_synth

__all__ = [
    "FORGET_TO_RETAIN",
    "generate_tofu_synth",
    "load_tofu",
    "retain_split_for",
    "validate_tofu_rows",
]
