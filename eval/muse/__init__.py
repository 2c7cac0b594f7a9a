"""MUSE (METRICS.md §2): VerbMem / KnowMem as pure functions (:mod:`.metrics`) and the evaluator
(:mod:`.evaluate`); its PrivLeak scores are :mod:`eval.mia.scores`."""
