"""lm-eval's output (``simple_evaluate(..., log_samples=True)``) as our logs: per task its
aggregate metrics and per-item values in TOFU's per-sample layout (:mod:`eval.per_item`)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from eval.per_item import indexed


def metric_name(key: str) -> str:
    """lm-eval's ``metric,filter`` key as ours: ``acc,none`` -> ``acc``, ``exact_match,strict-match`` ->
    ``exact_match/strict-match``."""
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else f"{metric}/{filt}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def task_results(out: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task and group lm-eval reported: ``metrics`` (its aggregates, stderr left out),
    ``subtasks`` (a group's), and for a task ``n`` and ``items`` (:func:`items`)."""
    samples, configs = out.get("samples") or {}, out.get("configs") or {}
    subtasks = out.get("group_subtasks") or {}
    res: dict[str, dict[str, Any]] = {}
    for name, row in out["results"].items():
        entry: dict[str, Any] = {"metrics": {metric_name(k): float(v) for k, v in row.items()
                                             if "," in k and not k.partition(",")[0].endswith("_stderr") and _number(v)}}
        if subtasks.get(name):
            entry["subtasks"] = list(subtasks[name])
        if samples.get(name):
            entry["items"] = items(samples[name], (configs.get(name) or {}).get("output_type"))
            entry["n"] = len(entry["items"]["doc_id"])
        res[name] = entry
    return res


def items(samples: Sequence[Mapping[str, Any]], output_type: str | None) -> dict[str, Any]:
    """Per item (in document order): ``doc_id``, each numeric metric's value and, for a
    multiple-choice task, ``gold`` (the answer's index), ``pred`` (argmax of the choices'
    log-likelihoods, as ``acc`` takes it) and ``loglikelihoods`` (one per choice: the sum of the
    continuation tokens' log-probabilities)."""
    by_filter: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in samples:  # a task with several filters logs each item once per filter
        by_filter[s["filter"]].append(s)
    rows = sorted(next(iter(by_filter.values())), key=lambda s: s["doc_id"])
    log: dict[str, Any] = {"doc_id": indexed([int(s["doc_id"]) for s in rows])}
    if output_type == "multiple_choice":
        lls = [[float(r[0]) for r in s["filtered_resps"]] for s in rows]
        log["gold"] = indexed([s["target"] for s in rows])
        log["pred"] = indexed([int(np.argmax(ll)) for ll in lls])
        log["loglikelihoods"] = indexed(lls)
    for filt, group in by_filter.items():
        group = sorted(group, key=lambda s: s["doc_id"])
        for metric in group[0].get("metrics", ()):
            values = [s.get(metric) for s in group]
            if all(_number(v) for v in values):  # f1, bleu, ... keep (gold, pred) pairs: their aggregate says it
                log[metric_name(f"{metric},{filt}")] = indexed([float(v) for v in values])
    return log


def top_level(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The tasks and groups that are no group's subtask: what was asked for (a tag's tasks, each)."""
    inner = {t for r in results.values() for t in r.get("subtasks", ())}
    return [name for name in results if name not in inner]
