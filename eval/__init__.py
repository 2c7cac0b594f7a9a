"""Evaluation: the benchmarks' metrics and evaluators, and the tables and figures made from records.

Imports go one way, down this list (``tests/test_layout.py`` checks that no import closes a circle):

* ``eval.evaluate`` -- the command that evaluates a saved checkpoint (``python -m eval.evaluate``;
  the work is :mod:`unlearn.checkpoint_eval`'s); nothing imports it.
* ``eval.report`` -- tables, figures, spreads, paired comparisons from records (``python -m
  eval.report``); it may import everything, nothing imports it.
* ``eval.ou.write`` -- our logs of either benchmark in open-unlearning's format (the pipeline calls it).
* ``eval.health`` -- the warnings a run's numbers deserve (a collapsed utility, a learning rate GeN
  moved far), for the run's record and for reports.
* ``eval.tofu``, ``eval.muse`` -- one package per benchmark: its metrics and its evaluator. Neither
  imports the other.
* ``eval.lm_eval`` -- lm-evaluation-harness tasks run on the model in hand (``eval.lm_eval.tasks``),
  added to every benchmark's evaluation by :class:`unlearn.benchmarks.base.Benchmark`; it imports
  only the shared modules below, and lm-eval itself only when there are tasks.
* shared, imported by both benchmarks and never importing them: ``eval.mia`` (the membership
  attacks, their scores, AUC and PrivLeak), ``eval.ou.read``, ``likelihood``, ``generation``,
  ``rouge``, ``per_item`` (the per-sample log layout), ``compat``, ``records``, ``select``,
  ``directions``.
"""
