"""TOFU (METRICS.md §1): the metrics as pure functions (:mod:`.metrics`), the evaluator that turns a
model into per-sample logs in TOFU's schema (:mod:`.evaluate`), and the reader and aggregator of those
logs, ours or TOFU's published ones (:mod:`.logs`, ``python -m eval.tofu.logs``)."""
