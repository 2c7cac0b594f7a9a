"""lm-evaluation-harness run on the model object in hand: lm-eval's ``HFLM`` wraps the model and
tokenizer as they are (no re-load from disk), ``simple_evaluate`` runs the tasks. The model comes
back as it went in -- each module's train/eval mode, the global random states that
``simple_evaluate`` seeds -- and lm-eval's messages, progress bars and prints go to the run log
(the root logger's log files), not to the terminal."""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import random
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from eval.lm_eval.results import task_results, top_level

log = logging.getLogger(__name__)
LIBRARY_LOGGERS = ("lm_eval", "lm-eval")  # its logger's name from 0.4.8 on, and before


def run_tasks(model: torch.nn.Module, tokenizer, tasks: Sequence[str | dict[str, Any]], *,
              include_path: str | Path | None = None, batch_size: int = 16, limit: int | float | None = None,
              num_fewshot: int = 0) -> dict[str, dict[str, Any]]:
    """Run lm-eval ``tasks`` (names found in ``include_path`` or among lm-eval's own, or task configs
    such as :func:`eval.lm_eval.tasks.local_task`'s) on ``model`` as it is.

    ``limit``: the first N items of each task (a fraction below 1: that share); ``num_fewshot``:
    examples before each question. Returns, per task and group lm-eval reported,
    :func:`eval.lm_eval.results.task_results`'s entry: ``metrics`` (``acc``, ``acc_norm``, ...) and,
    per item, ``items`` (``doc_id``, ``gold``, ``pred``, ``loglikelihoods``, the metrics' values).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    t = time.perf_counter()
    with untouched(model), library_output():
        lm = HFLM(pretrained=model, tokenizer=unshared(tokenizer), batch_size=int(batch_size))
        out = lm_eval.simple_evaluate(
            model=lm, tasks=list(tasks), task_manager=task_manager(tasks, include_path), num_fewshot=num_fewshot,
            limit=limit, log_samples=True,
            bootstrap_iters=0)  # no bootstrap for the standard errors, which nothing here reads
    results = task_results(out)
    for name in top_level(results):
        numbers = ", ".join(f"{k} {v:.4f}" for k, v in results[name]["metrics"].items())
        log.info("lm-eval %s: %s (%s items)", name, numbers, results[name].get("n", "-"))
    log.info("lm-eval: %d task(s) in %.1f s", len(tasks), time.perf_counter() - t)
    return results


def task_manager(tasks: Sequence[str | dict[str, Any]], include_path: str | Path | None):
    """A TaskManager over ``include_path``; over lm-eval's own tasks too only when a name asks for
    one (indexing its thousands of YAML files takes seconds)."""
    from lm_eval.tasks import TaskManager

    path = None if include_path is None else str(include_path)
    local = TaskManager(include_path=path, include_defaults=False)
    if all(isinstance(t, dict) or t in local.all_tasks for t in tasks):
        return local
    return TaskManager(include_path=path)


def unshared(tokenizer):
    """The tokenizer HFLM may change: it gives one without a pad token a pad token in place
    (``configure_pad_token``), so such a tokenizer goes in as a copy."""
    return copy.deepcopy(tokenizer) if tokenizer.pad_token is None else tokenizer


@contextlib.contextmanager
def untouched(model: torch.nn.Module) -> Iterator[None]:
    """Afterwards, every module's train/eval mode as before (HFLM calls ``model.eval()``) and the
    python, numpy and torch random states as before (``simple_evaluate`` seeds all three)."""
    modes = [(m, m.training) for m in model.modules()]
    states = random.getstate(), np.random.get_state()
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        random.setstate(states[0])
        np.random.set_state(states[1])


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """lm-eval's log records, and what it prints (progress bars, notes), into the run log -- the
    root logger's log files -- and not onto the terminal. Without a log file (a script, a notebook)
    its warnings go where the root logger sends them and its prints nowhere."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers, logger.propagate = list(files), not files
        logger.setLevel(logging.INFO if files else logging.WARNING)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield
    finally:
        printed_log = logging.getLogger(f"{LIBRARY_LOGGERS[0]}.printed")  # goes to lm_eval's handlers: the files
        for line in printed_lines(printed.getvalue()):
            printed_log.info(line)
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def printed_lines(text: str) -> list[str]:
    """Printed text as log lines: a progress bar's last state (what follows its last carriage return)."""
    return [last for line in text.splitlines() if (last := line.split("\r")[-1].strip())]
