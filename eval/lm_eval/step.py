"""lm-eval in a TOFU or MUSE run: the ``eval.lm_eval`` node read for the evaluation every
benchmark runs (:class:`unlearn.benchmarks.base.Benchmark` calls these, nothing else does).

``eval.lm_eval.tasks`` empty (the default): every function here is a no-op and lm-eval is never
imported. Otherwise a model's full evaluation (not the trajectory's cheap subset) also runs those
tasks; their results sit in the model's logs under ``lm_eval`` and their aggregates in its summary
as ``lm_eval/<task>/<metric>`` (``lm_eval/wmdp_bio/acc``), which report tables show as columns.
"""
from __future__ import annotations

from importlib import metadata
from typing import Any, Iterable, Mapping

LOG_KEY = "lm_eval"  # the logs' entry, and the summary keys' prefix
SETTINGS = ("tasks", "include_path", "batch_size", "num_fewshot", "limit")
EVAL_VERSION = 1  # part of the cached reference evals' key: bump when what is recorded changes


def settings(eval_cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``eval.lm_eval`` node as plain values, or None when it asks for no task."""
    node = eval_cfg.get(LOG_KEY) if eval_cfg is not None else None
    if not node or not node.get("tasks"):
        return None
    return {k: (list(node[k]) if k == "tasks" else node.get(k)) for k in SETTINGS}


def requests(eval_cfg: Mapping[str, Any]) -> list[tuple[str, list[str], str | None]]:
    """The tasks ``eval.lm_eval`` asks for as (config key, names, include_path); none without tasks."""
    s = settings(eval_cfg)
    return [] if s is None else [("eval.lm_eval.tasks", s["tasks"], s["include_path"])]


def check(asked: Iterable[tuple[str, list[str], str | None]]) -> list[tuple[str, str]]:
    """Tasks asked for by name (:func:`requests`, a benchmark's own), before any work: each name
    exists (a ValueError: one line) and, returned, the Hub data sets they read, as (``key (task)``,
    dataset id), for the run's source check (cached when offline). lm-eval is imported only when
    some task is asked for."""
    asked = list(asked)
    if not asked:
        return []
    from eval.lm_eval.tasks import check_tasks, hub_datasets

    out: dict[str, str] = {}
    for key, names, include_path in asked:
        check_tasks(names, include_path, key)
        for task, dataset in hub_datasets(names, include_path):
            out.setdefault(dataset, f"{key} ({task})")
    return [(where, dataset) for dataset, where in out.items()]


def folder_spec(include_path: str | None, names: Iterable[str]) -> dict[str, Any]:
    """A task folder's part of a cache key: its fingerprint and the data files its YAMLs of ``names`` read."""
    from eval.lm_eval.tasks import data_files
    from unlearn.stages import fingerprint

    files = [] if include_path is None else data_files(include_path, list(names))
    return {"folder": fingerprint(include_path), "data_files": {str(f): fingerprint(f) for f in files}}


def spec(eval_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the lm-eval results depend on, for the reference evals' cache key: the settings, the
    task files (the include_path folder and the data files its YAMLs name) and lm-eval's version;
    nothing when no task is asked for, so that other runs keep their keys."""
    s = settings(eval_cfg)
    if s is None:
        return {}
    return {LOG_KEY: {**s, "version": EVAL_VERSION, "lm_eval": metadata.version("lm_eval"),
                      **folder_spec(s["include_path"], s["tasks"])}}


def evaluate(model, tokenizer, eval_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"lm_eval": results}`` (:func:`eval.lm_eval.harness.run_tasks`), or ``{}`` without tasks."""
    s = settings(eval_cfg)
    if s is None:
        return {}
    from eval.lm_eval.harness import run_tasks

    return {LOG_KEY: run_tasks(model, tokenizer, s["tasks"], include_path=s["include_path"],
                               batch_size=s["batch_size"], limit=s["limit"], num_fewshot=s["num_fewshot"])}


def split(logs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the benchmark's own logs, the lm-eval results or None): readers of a benchmark's task
    logs see only those."""
    return {k: v for k, v in logs.items() if k != LOG_KEY}, logs.get(LOG_KEY)


def summary(results: Mapping[str, Any] | None) -> dict[str, float]:
    """``lm_eval/<task>/<metric>`` of each task or group asked for (a group's aggregate, not its
    subtasks': those stay in the logs)."""
    if not results:
        return {}
    from eval.lm_eval.results import top_level

    return {f"{LOG_KEY}/{t}/{m}": v for t in top_level(results) for m, v in results[t]["metrics"].items()}


def columns(names: Iterable[str]) -> list[str]:
    """The lm-eval summary keys among ``names`` (a record's summary, a table's columns), sorted."""
    return sorted({n for n in names if isinstance(n, str) and n.startswith(f"{LOG_KEY}/")})
