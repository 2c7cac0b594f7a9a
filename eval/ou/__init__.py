"""open-unlearning's eval files: :mod:`.read` (shared: the evaluators read retain logs through it) and
:mod:`.write` (our logs of either benchmark in its format; above the benchmarks, the pipeline calls it)."""
