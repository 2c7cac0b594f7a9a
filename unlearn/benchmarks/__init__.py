"""Benchmarks: what differs between TOFU, MUSE and WMDP, behind one small interface.

The pipeline asks the benchmark of ``cfg.dataset.benchmark`` to prepare the world (data,
tokenizer, target / retain models), to provide the unlearning data, to evaluate a model into
per-example logs, to pick the reference its metrics are measured against (TOFU: the retain
model's forget-set truth ratios; MUSE: the retrain model's MIA AUC; WMDP: none, its accuracies
are absolute) and to summarize logs into its table row. Everything else -- the loop, the methods, the schedulers, records -- is shared.
"""
from __future__ import annotations

from unlearn.benchmarks import muse, tofu, wmdp  # noqa: F401  (registration)
from unlearn.benchmarks.base import BENCHMARKS, Benchmark

__all__ = ["BENCHMARKS", "Benchmark", "get_benchmark"]


def get_benchmark(name: str) -> Benchmark:
    return BENCHMARKS.get(name)()
