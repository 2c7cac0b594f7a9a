"""lm-evaluation-harness run on the model object in hand: lm-eval's ``HFLM`` wraps the model and
tokenizer as they are (no re-load from disk), ``simple_evaluate`` runs the tasks. The model comes
back as it went in -- each module's train/eval mode, the global random states that
``simple_evaluate`` seeds -- and lm-eval's messages, progress bars and prints go to the run log
(the root logger's log files), not to the terminal."""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from eval.lm_eval.output import library_output
from eval.lm_eval.results import task_results, top_level
from eval.lm_eval.tasks import write_task

log = logging.getLogger(__name__)


def run_tasks(model: torch.nn.Module, tokenizer, tasks: Sequence[str | dict[str, Any]], *,
              include_path: str | Path | None = None, batch_size: int = 16, limit: int | float | None = None,
              num_fewshot: int = 0) -> dict[str, dict[str, Any]]:
    """Run lm-eval ``tasks`` (names found in ``include_path`` or among lm-eval's own, or task configs
    such as :func:`eval.lm_eval.tasks.local_task`'s) on ``model`` as it is: a ``PreTrainedModel``,
    a PEFT model, one accelerate prepared (a DDP wrapper is looked through; an FSDP model runs as
    its forward runs, every process taking part).

    ``limit``: the first N items of each task (a fraction below 1: that share); ``num_fewshot``:
    examples before each question. Returns, per task and group lm-eval reported,
    :func:`eval.lm_eval.results.task_results`'s entry: ``metrics`` (``acc``, ``acc_norm``, ...) and,
    per item, ``items`` (``doc_id``, ``gold``, ``pred``, ``loglikelihoods``, the metrics' values).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module  # HFLM reads the model's config and device; the wrapper has neither
    t = time.perf_counter()
    with (untouched(model), library_output(), every_process_answered(), no_environment_report(),
          tempfile.TemporaryDirectory(prefix="lm_eval_tasks_") as given):
        # a task config goes in as a YAML file of a folder lm-eval searches: lm-eval 0.4.10 and
        # 0.4.11 fail on configs passed as dicts, and every version reads a folder
        names = [write_task(task, given).stem if isinstance(task, dict) else task for task in tasks]
        folders = [given] + ([str(include_path)] if include_path is not None else [])
        lm = HFLM(pretrained=model, tokenizer=unshared(tokenizer), batch_size=int(batch_size))
        out = lm_eval.simple_evaluate(
            model=lm, tasks=names, task_manager=task_manager(names, folders), num_fewshot=num_fewshot,
            limit=limit, log_samples=True,
            bootstrap_iters=0)  # no bootstrap for the standard errors, which nothing here reads
    results = task_results(out)
    for name in top_level(results):
        numbers = ", ".join(f"{k} {v:.4f}" for k, v in results[name]["metrics"].items())
        log.info("lm-eval %s: %s (%s items)", name, numbers, results[name].get("n", "-"))
    log.info("lm-eval: %d task(s) in %.1f s", len(tasks), time.perf_counter() - t)
    return results


def task_manager(names: Sequence[str], folders: list[str]):
    """A TaskManager over ``folders``; over lm-eval's own tasks too only when a name asks for one
    (indexing its thousands of YAML files takes seconds)."""
    from lm_eval.tasks import TaskManager

    local = TaskManager(include_path=folders, include_defaults=False)
    if all(name in local.all_tasks for name in names):
        return local
    return TaskManager(include_path=folders)


def unshared(tokenizer):
    """The tokenizer HFLM may change: it gives one without a pad token a pad token in place
    (``configure_pad_token``), so such a tokenizer goes in as a copy."""
    return copy.deepcopy(tokenizer) if tokenizer.pad_token is None else tokenizer


@contextlib.contextmanager
def every_process_answered() -> Iterator[None]:
    """``LOCAL_RANK`` reads 0 during the call: ``simple_evaluate`` (0.4.12 on) returns its results
    only where it is 0, a tensor-parallel launcher's rule, whereas HFLM given a model object scores
    every item in every process (its rank is 0 in each) and each process here needs the results."""
    saved = os.environ.get("LOCAL_RANK")
    os.environ["LOCAL_RANK"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LOCAL_RANK", None)
        else:
            os.environ["LOCAL_RANK"] = saved


@contextlib.contextmanager
def no_environment_report() -> Iterator[None]:
    """``simple_evaluate`` ends by adding torch's environment report to its results
    (``torch.utils.collect_env``: ``pip list``, ``nvidia-smi`` ... in subprocesses, ~1.3 s a call, most
    of a small task's time), which nothing here reads: the run's record has its own environment. During
    the call only the versions are added."""
    import lm_eval.evaluator as evaluator

    saved = evaluator.add_env_info

    def versions(storage: dict[str, Any]) -> None:
        storage.update({f"{name}_version": metadata.version(name) for name in ("lm_eval", "transformers")})

    evaluator.add_env_info = versions
    try:
        yield
    finally:
        evaluator.add_env_info = saved


@contextlib.contextmanager
def untouched(model: torch.nn.Module) -> Iterator[None]:
    """Afterwards, every module's train/eval mode as before (HFLM calls ``model.eval()``) and the
    python, numpy and torch random states as before (``simple_evaluate`` seeds all three)."""
    modes = [(m, m.training) for m in model.modules()]
    states = random.getstate(), np.random.get_state()
    cuda = sorted({torch.cuda.current_device() if p.device.index is None else p.device.index
                   for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        random.setstate(states[0])
        np.random.set_state(states[1])
