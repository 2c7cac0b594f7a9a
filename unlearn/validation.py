"""Checks before any work: the schema (unlearn/schema.py) and each component's own options."""
from __future__ import annotations

import os
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from eval.compat import check_compat
from eval.lm_eval import step as lm_eval_step
from eval.select import parse_criterion
from unlearn.callbacks import resolve_callback
from unlearn.batching import batch_plan, check_step_rule
from unlearn.benchmarks import get_benchmark
from unlearn.config import compose_isolated
from unlearn.gradients import max_grad_norm
from unlearn.methods import build_method
from unlearn.optimizers import check_optimizer
from unlearn.precision import Precision, check_launcher_precision
from unlearn.preparation import check_sources
from unlearn.schedulers import SCHEDULERS, build_scheduler
from unlearn.schema import ConfigError, base_config, check_overrides, check_ranges
from unlearn.sources import Source
from unlearn.trackers import check_logger


# a named lm-eval task whose data is neither cached nor reachable: the way round it
TASK_DATA_INSTEAD = "give the task as a YAML over local files in its include_path (eval/lm_eval/tasks.py: local_task)"


def run_precision(cfg: DictConfig) -> Precision:
    return Precision(str(cfg.model.get("precision", "32-true")))


def validate(cfg: DictConfig, processes: int = 1, overrides: dict[str, Any] | None = None) -> None:
    """Fail before any work on choices that would otherwise fail deep inside a library: the
    schema (:mod:`unlearn.schema`: the command line's keys and types against the files the same
    group choices compose, when run under Hydra; the ranges always), then each component's own."""
    check_schema(cfg, overrides)
    build_method(cfg.method).check_model(cfg.get("model"))  # unknown method -> lists the valid ones; RMU: its layer
    SCHEDULERS.get(cfg.scheduler.name)
    if float(cfg.method.lr) <= 0:
        raise ValueError(f"method.lr must be positive, got {cfg.method.lr}")
    build_scheduler(cfg.scheduler, float(cfg.method.lr), 1, 1.0)  # its options checked now, not after the stages
    if int(cfg.method.epochs) < 1:
        raise ValueError("method.epochs must be >= 1")
    batch_plan(cfg.method, processes)
    check_step_rule(str(cfg.method.get("step_rule", "epochs")))
    max_grad_norm(cfg.method)
    check_optimizer(str(cfg.method.get("optimizer", "adamw")))
    check_launcher_precision(run_precision(cfg))
    check_selection(cfg)
    check_evaluation(cfg)


def check_schema(cfg: DictConfig, overrides: dict[str, Any] | None = None) -> None:
    """The command line's keys and types against the files (when its overrides are known: under Hydra,
    or given by ``python -m eval.evaluate``), the ranges always."""
    if overrides and overrides.get("choices") is not None:
        check_overrides(cfg, overrides["task"], base_config(overrides["choices"], compose_isolated))
    check_ranges(cfg)


def check_evaluation(cfg: DictConfig, extra_sources: Sequence[Source] = ()) -> None:
    """What every run that evaluates reads besides the method: ``eval.compat``, ``eval.lm_eval``'s
    tasks, the callbacks, the tracker, and every model and data location (the config's and ``extra_sources``, e.g. the
    checkpoint ``python -m eval.evaluate`` scores)."""
    check_compat(str(cfg.dataset.benchmark), cfg.eval)
    try:  # the task names (and their folder); lm-eval imported only when there are some
        benchmark = get_benchmark(str(cfg.dataset.benchmark))
        asked = lm_eval_step.check(benchmark.lm_eval_requests(cfg))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for name in cfg.get("callbacks") or ():
        resolve_callback(str(name))  # an unknown name lists the registered ones
    try:
        check_logger(cfg.get("logger"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    tasks_data = [Source(key, dataset, False, "dataset", instead=TASK_DATA_INSTEAD) for key, dataset in asked]
    check_sources(cfg, [*extra_sources, *benchmark.sources(cfg), *tasks_data])  # last (it may take a connection check): local folders exist, Hub ids reachable or cached


def check_selection(cfg: DictConfig):
    """``eval.select``'s criterion (or None), checked before any work."""
    floor = cfg.eval.get("select_floor")
    try:
        criterion = parse_criterion(cfg.eval.get("select"),
                                    OmegaConf.to_container(floor, resolve=True) if isinstance(floor, DictConfig) else floor)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if criterion is not None and int(cfg.eval.get("trajectory_every", 0)) <= 0:
        raise ConfigError(f"eval.select={cfg.eval.select} needs trajectory evaluation: set eval.trajectory_every "
                          "to a number of steps >= 1")
    if criterion is not None and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        raise ConfigError("eval.select keeps a copy of the best weights, not supported with FSDP yet")
    return criterion
