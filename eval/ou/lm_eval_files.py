"""open-unlearning's lm-eval files: what its ``LMEvalEvaluator`` (src/evals/lm_eval.py; WMDP's
evaluation, ``configs/experiment/eval/wmdp/default.yaml``) writes, from our lm-eval results.

* ``LMEval_SUMMARY.json``: ``{"<task>/<metric>": value}`` for each task asked for -- a group's
  aggregate (``mmlu/acc``), a task's own (``wmdp_cyber/acc``) -- lm-eval's metric names without their
  ``,none`` filter suffix. Ours runs lm-eval without bootstrap, so no ``*_stderr`` entries.
* ``LMEval_EVAL.json``: ``{"<task>": {"<task or subtask>": [item, ...]}}`` -- where open-unlearning
  keeps lm-eval's whole samples (prompt, arguments, raw responses), an item here holds what our
  logs keep of one: ``doc_id``, ``target`` (the answer's index), ``pred``, ``loglikelihoods`` (one per
  choice) and each metric's value (``acc``, ...).

The results come in :func:`eval.lm_eval.results.task_results`'s layout (``metrics``, ``items``,
``subtasks``), keyed by every task and group one lm-eval call reported: ``eval.lm_eval``'s tasks in any
benchmark, and WMDP's question sets (:func:`eval.wmdp.evaluate.harness_results`).
"""
from __future__ import annotations

from typing import Any, Mapping

from eval.lm_eval.results import top_level

LM_EVAL_FILES = {"eval": "LMEval_EVAL.json", "summary": "LMEval_SUMMARY.json"}
ITEM_NAMES = {"gold": "target"}  # ours -> lm-eval's sample field


def lm_eval_ou(results: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, float]]:
    """(LMEval_EVAL, LMEval_SUMMARY) of the tasks asked for among ``results``."""
    evals: dict[str, Any] = {}
    summary: dict[str, float] = {}
    for task in top_level(results):
        summary.update({f"{task}/{m}": float(v) for m, v in results[task]["metrics"].items()})
        evals[task] = {name: samples(results[name]["items"]) for name in members(results, task)
                       if results.get(name, {}).get("items")}
    return evals, summary


def members(results: Mapping[str, Mapping[str, Any]], task: str) -> list[str]:
    """``task`` and, for a group, its subtasks at every depth."""
    out = [task]
    for sub in results.get(task, {}).get("subtasks", ()):
        out += members(results, sub)
    return out


def samples(items: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-item logs (``{"field": {"0": v0, ...}}``) as a list of items in document order."""
    keys = sorted(items["doc_id"], key=int)
    return [{ITEM_NAMES.get(field, field): values[k] for field, values in items.items()} for k in keys]

