"""Benchmarks: what differs between TOFU, MUSE and WMDP, behind one small interface.

The pipeline asks the benchmark of ``cfg.dataset.benchmark`` to prepare the world (data,
tokenizer, target / retain models), to provide the unlearning data, to evaluate a model into
per-example logs, to pick the reference its metrics are measured against (TOFU: the retain
model's forget-set truth ratios; MUSE: the retrain model's MIA AUC; WMDP: none, its accuracies
are absolute) and to summarize logs into its table row. Everything else -- the loop, the methods,
the schedulers, records -- is shared.

A benchmark's module is imported when a run first asks for it (:func:`get_benchmark`): each one
pulls in transformers and its metrics' libraries (scipy), seconds that a config error, rejected
before any work, should not wait for.
"""
from __future__ import annotations

import importlib

from unlearn.benchmarks.base import BENCHMARKS, Benchmark

__all__ = ["BENCHMARKS", "MODULES", "Benchmark", "get_benchmark"]

# name -> the module that registers it (dataset.benchmark's valid values)
MODULES = {"tofu": "unlearn.benchmarks.tofu", "muse": "unlearn.benchmarks.muse", "wmdp": "unlearn.benchmarks.wmdp"}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark ``name`` (one of :data:`MODULES`, or one your code registered in :data:`BENCHMARKS`)."""
    if name not in BENCHMARKS and name in MODULES:
        importlib.import_module(MODULES[name])
    if name not in BENCHMARKS:
        valid = sorted(set(MODULES) | set(BENCHMARKS))
        raise KeyError(f"unknown benchmark {name!r}; valid benchmarks: {', '.join(valid)}")
    return BENCHMARKS.get(name)()
