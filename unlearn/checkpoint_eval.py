"""Evaluate a saved checkpoint without unlearning it (``python -m eval.evaluate``, :mod:`eval.evaluate`).

The run of :mod:`unlearn.runner` with other phases: decide (validate; a complete record of the
same config, checkpoint and code is reused) -> prepare (the world, the target and retain models
and their cached evaluations, exactly as an unlearning run prepares them) -> load the checkpoint
-> evaluate it -> record. The record has a run's keys -- ``metrics.target``, ``metrics.retain`` and
the evaluated model under ``metrics.unlearned`` -- so every reader of records reads it; ``kind:
evaluate`` and ``evaluated`` (the checkpoint as given, how it was found and loaded, its label) say
what it is. The config is the run's less what only unlearning reads (:data:`UNLEARNING_KEYS`).

A checkpoint is one of
* a folder saved by ``save_pretrained`` (a run's ``checkpoint/``), loaded as a run loads its models
  (``model.dtype``, ``model.attn_implementation``);
* a LoRA adapter folder (``adapter_config.json``), applied to the base model it names when that is
  a folder on this machine or a Hub id, else to the configured target (the model a run's adapter
  was trained on), and evaluated unmerged, as a run evaluates its adapter;
* a Hub id (``org/name``), loaded as ``model.target`` is.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from unlearn.callbacks import Callback
from unlearn.config import dir_tag
from unlearn.models import load_causal_lm, load_lora
from unlearn.preparation import Prepared
from unlearn.runner import Flow, Run, evaluate, execute, prepare, run_callbacks
from unlearn.schema import ConfigError
from unlearn.sources import Source, classify_source
from unlearn.stages import fingerprint
from unlearn.validation import check_evaluation, check_schema

log = logging.getLogger("unlearn")

KIND = "evaluate"  # the record's kind (an unlearning run's: "unlearn")
EVALUATIONS = "evaluate"  # <paths.runs>/evaluate/...: where evaluations go by default
UNLEARNING_KEYS = ("method", "scheduler", "resume_every", "save_checkpoint")  # dropped from an evaluation's config
ADAPTER_CONFIG = "adapter_config.json"
GENERIC_NAMES = re.compile(r"checkpoint(_final|-\d+)?|default|seed\d+|final|model|adapter")
VALID = "a folder saved by save_pretrained, a LoRA adapter folder (adapter_config.json) or a Hub id org/name"


@dataclass(frozen=True)
class Checkpoint:
    given: str  # as the command line gave it
    kind: str  # folder | adapter | hub
    location: str  # the absolute folder, or the Hub id


def locate(given: str | None) -> Checkpoint:
    """What ``given`` is (:class:`Checkpoint`), or a one-line :class:`ConfigError` naming it; a local
    folder or a Hub id as every model location is told apart (:func:`unlearn.sources.classify_source`)."""
    if not given:
        raise ConfigError(f"checkpoint is required: checkpoint=... ({VALID})")
    try:
        source = checkpoint_source(given)
    except ConfigError as e:
        raise ConfigError(f"{e} (valid: {VALID})") from None
    if not source.local:
        return Checkpoint(given, "hub", given)
    path = source.path
    if (path / ADAPTER_CONFIG).is_file():
        adapter_config(path)  # readable, or one line now
        return Checkpoint(given, "adapter", str(path.resolve()))
    if (path / "config.json").is_file():
        return Checkpoint(given, "folder", str(path.resolve()))
    raise ConfigError(f"checkpoint={given} holds neither config.json (a model saved by save_pretrained) "
                      f"nor {ADAPTER_CONFIG} (a LoRA adapter)")


def checkpoint_source(given: str) -> Source:
    return classify_source("checkpoint", given, kind="model")


def adapter_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"checkpoint={folder}: {ADAPTER_CONFIG} is not readable JSON ({e})") from None


def checkpoint_label(checkpoint: str) -> str:
    """A short name for a checkpoint: its last path component that is not a generic one
    (``checkpoint``, ``checkpoint_final``, ``checkpoint-500``, ``default``, ``seedN``, ...):
    ``outputs/runs/.../ngdiff-gen/default/seed0/checkpoint`` -> ``ngdiff-gen``; ``org/name`` -> ``name``."""
    parts = [p for p in Path(str(checkpoint)).expanduser().parts if p not in ("/", ".", "..")]
    return next((p for p in reversed(parts) if not GENERIC_NAMES.fullmatch(p)), parts[-1] if parts else "checkpoint")


def evaluation_dir(cfg: DictConfig, checkpoint: str, name: str | None, variant: str = "") -> Path:
    """``<paths.runs>/evaluate/<dataset>/<split>/<model>/<label>-<hash>/<overrides>``: the label and
    a short hash of the checkpoint as given (two checkpoints of one label, e.g. two seeds' runs, never
    share a directory), then the other overrides as a run's directory names them (``default``)."""
    digest = hashlib.sha256(str(checkpoint).encode()).hexdigest()[:6]
    label = dir_tag(str(name) if name is not None else checkpoint_label(checkpoint))
    return (Path(str(cfg.paths.runs)) / EVALUATIONS / str(cfg.dataset.name) / str(cfg.dataset.split)
            / str(cfg.model.name) / f"{label}-{digest}" / dir_tag(variant))


def evaluation_config(cfg: DictConfig, checkpoint: str) -> DictConfig:
    """The config an evaluation runs: :data:`UNLEARNING_KEYS` dropped; a pretrained model given
    without a target has none (the references are then the retain model or ``eval.retain_logs``)
    and, without a tokenizer, reads the checkpoint's (an adapter without one: its base's)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key in UNLEARNING_KEYS:
            cfg.pop(key, None)
        m = cfg.model
        if m.get("source") == "pretrained":
            if OmegaConf.is_missing(m, "target"):
                m.target = None
            if m.get("tokenizer") is None:
                m.tokenizer = tokenizer_source(str(checkpoint))
    return cfg


def tokenizer_source(checkpoint: str) -> str:
    folder = Path(checkpoint).expanduser()
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "tokenizer_config.json").is_file():
        try:
            return adapter_config(folder).get("base_model_name_or_path") or checkpoint
        except ConfigError:  # reported by the validation, in one line
            return checkpoint
    return checkpoint


def usable_location(value: str) -> bool:
    """A folder here or a well-formed Hub id (:func:`unlearn.sources.classify_source`)."""
    try:
        checkpoint_source(value)
    except ConfigError:
        return False
    return True


def adapter_base(named: str | None, target: str | None) -> str:
    """The model an adapter is applied to: the base it names when that is a folder here or a Hub
    id, else the configured target (a run's adapter names the cached target it was trained on)."""
    if named and usable_location(named):
        return named
    if target is None:
        raise FileNotFoundError(f"the adapter's base model {named!r} is not on this machine and no target "
                                "is configured: give its base as model.target")
    log.warning("the adapter's base model %r is not on this machine: applying it to the target %s", named, target)
    return target


def load_checkpoint(ckpt: Checkpoint, prepared: Prepared) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model to evaluate, in the storage dtype a run evaluates in, and how it was loaded."""
    if ckpt.kind != "adapter":
        return load_causal_lm(ckpt.location, prepared.dtype, prepared.attn_implementation), {}
    base = adapter_base(adapter_config(Path(ckpt.location)).get("base_model_name_or_path"), prepared.target_path)
    revision = prepared.revision if base == prepared.target_path else None
    return load_lora(base, ckpt.location, prepared.dtype, prepared.attn_implementation, revision), {"base": base}


@dataclass(frozen=True)
class CheckpointEvaluation:
    """One checkpoint's evaluation as a :class:`unlearn.runner.Flow`."""

    checkpoint: str
    name: str | None = None

    @property
    def label(self) -> str:
        return str(self.name) if self.name is not None else checkpoint_label(self.checkpoint)

    def check(self, cfg: DictConfig, processes: int, overrides: dict[str, Any] | None) -> None:
        locate(self.checkpoint)
        check_schema(cfg, overrides)
        check_evaluation(cfg, [checkpoint_source(self.checkpoint)])  # a Hub checkpoint: reachable or cached

    def inputs(self) -> dict[str, Any]:
        ckpt = locate(self.checkpoint)
        return {"checkpoint": ckpt.location, "files": fingerprint(ckpt.location if ckpt.kind != "hub" else None),
                "name": self.label}

    def phases(self, r: Run, callbacks: Sequence[Callback]) -> str:
        r.callbacks = run_callbacks(r, callbacks)
        ckpt = locate(self.checkpoint)
        r.record["evaluated"].update(kind=ckpt.kind, location=ckpt.location)
        prepare(r)
        t = time.perf_counter()
        model, loaded = load_checkpoint(ckpt, r.prepared)
        r.timings["load"] = time.perf_counter() - t
        r.record["evaluated"].update(loaded)
        log.info("evaluating %s (%s) as %s", ckpt.location, ckpt.kind, self.label)
        evaluate(r, model)
        return "ok"

    def flow(self) -> Flow:
        return Flow(KIND, self.check, self.phases, self.inputs,
                    {"evaluated": {"checkpoint": self.checkpoint, "name": self.label}})


def evaluate_checkpoint(cfg: DictConfig, checkpoint: str, run_dir: str | Path, name: str | None = None,
                        callbacks: Sequence[Callback] = (), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` (a folder, an adapter folder or a Hub id) on ``cfg``'s benchmark
    beside its target and retain models, into ``run_dir``; the record, as :func:`unlearn.pipeline.run`
    returns a run's. ``name``: its label (default :func:`checkpoint_label`)."""
    job = CheckpointEvaluation(str(checkpoint), name)
    return execute(job.flow(), evaluation_config(cfg, job.checkpoint), run_dir, callbacks, overrides)
