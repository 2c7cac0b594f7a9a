"""When a run directory's record, or its resumable state, answers a run: the result key.

A run's numbers follow from three things, and its key (:func:`result_key`) holds all three:

* the config, less :data:`NON_RESULT_KEYS`;
* the code that computes results (:data:`RUN_CODE`), fingerprinted as the stage cache fingerprints
  the code that builds stages: a changed loss or metric never reuses the old code's numbers;
* the launch: the number of processes, the effective batch they make and the distributed type
  (with ``method.effective_batch`` null, 2 processes take twice the batch; and several processes
  sum in another order and skip a trailing batch too short to split).

The key decides both whether a complete record is reused (:func:`reusable`) and whether a saved
unlearning state is resumed (:class:`unlearn.resume.Resume`); the record states it, so that a
reader sees why a record was or was not reused.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from eval.records import RECORD_NAME
from unlearn.batching import batch_plan
from unlearn.stages import code_fingerprint, content_hash

log = logging.getLogger("unlearn")

SKIP_STATUSES = ("ok", "diverged")  # a failed run is run again; these are results
# keys that do not change a run's result: a record made under other values of these is still valid
NON_RESULT_KEYS = ("overwrite", "threads", "paths", "logger", "resume_every")
# every module of the two packages is taken to compute results unless it is named below, so that a
# new module can only cause a re-run, never a stale reuse; those named read records (tables,
# figures), check configs or talk to trackers
RUN_CODE = ("unlearn/**/*.py", "eval/**/*.py")
NOT_RESULT_CODE = ("eval/report/*.py", "eval/evaluate.py",
                   "unlearn/config.py", "unlearn/schema.py", "unlearn/validation.py", "unlearn/trackers.py",
                   "unlearn/sweep_summary.py")
CODE = code_fingerprint(RUN_CODE, exclude=NOT_RESULT_CODE)  # the code this process imported, read once


def launch_info(cfg: DictConfig, acc) -> dict[str, Any]:
    """What the launch adds to the config (``acc``: the run's Accelerator); for an unlearning run
    (a config with a method), the effective batch its processes make."""
    launch = {"processes": acc.num_processes, "distributed_type": str(acc.distributed_type)}
    if "method" in cfg:
        launch["effective_batch"] = batch_plan(cfg.method, acc.num_processes)["effective_batch"]
    return launch


def result_key(cfg: DictConfig, launch: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's hash (less :data:`NON_RESULT_KEYS`: a changed default, e.g. of the embedded
    world, re-runs the job), the code's fingerprint and the launch; ``inputs``: what else the
    result is computed from (an evaluated checkpoint and a fingerprint of its files)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    key = {"config": content_hash({k: v for k, v in plain.items() if k not in NON_RESULT_KEYS}),
           "code": CODE, "launch": dict(launch)}
    if inputs is not None:
        key["inputs"] = dict(inputs)
    return key


def result_hash(key: Mapping[str, Any]) -> str:
    return content_hash(key)


def reusable(existing: Mapping[str, Any] | None, overwrite: bool, key: Mapping[str, Any], run_dir: Path) -> bool:
    """Whether the run's complete record answers ``key``; a result computed under another key is
    kept beside it as ``record.<its hash>.json`` and the job runs again."""
    if existing is None or existing["status"] not in SKIP_STATUSES or overwrite:
        return False
    if existing.get("result_hash") == result_hash(key):
        return True
    old = existing.get("result_hash") or existing.get("config_hash") or "old"
    log.warning("%s was computed from another %s: kept as record.%s.json, running again", run_dir / RECORD_NAME,
                changes(existing.get("result_key"), key), old)
    (run_dir / RECORD_NAME).replace(run_dir / f"record.{old}.json")
    return False


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """What differs between two result keys, for the log: 'code 1f0c.. -> 9ab2..', ..."""
    if not old:  # a record from before records stated their key
        return "config, code or launch (the record states no result key)"
    return "; ".join(f"{part} {old.get(part)} -> {now}" for part, now in new.items() if old.get(part) != now)
