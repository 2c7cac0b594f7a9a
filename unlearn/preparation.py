"""Build (or load) everything a run needs before unlearning, each piece a cached stage.

Embedded world (``model.source=scratch``)::

    world (generated TOFU files) -> tokenizer -> base model -> target (full)
                                                             -> retain (retainXX)

Real world (``model.source=pretrained``): data from a local TOFU folder or the Hub, the target
and retain checkpoints from config paths / Hub ids.

The stage builders (:func:`world_stage`, :func:`tokenizer_stage`, :func:`trained_stage`) are
shared with MUSE (:mod:`unlearn.benchmarks.muse`), which has no base model: its target and retrain
models are trained from scratch on the news corpus.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig

from unlearn.data import Feature, encode_rows
from unlearn.models import build_tiny_llama, load_causal_lm, load_tokenizer
from unlearn.schema import ConfigError
from unlearn.sources import Source, config_sources, ensure_hub_access
from unlearn.templates import PromptTemplate, Template, build_template
from unlearn.stages import TOKENIZER_FILES, Artifact, StageCache, fingerprint
from unlearn.worlds import generate_tofu_synth, load_tofu, retain_split_for, validate_tofu_rows

log = logging.getLogger(__name__)

DATA_SOURCES = ("synth", "local", "hub")
MODEL_SOURCES = ("scratch", "pretrained")


@dataclass
class TofuData:
    """Access to one TOFU-format dataset (generated folder, local folder, or the Hub)."""

    source: str  # "local" or "hub" (a generated world is a local folder)
    path: str | None
    hub_id: str
    split: str
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def retain_split(self) -> str:
        return retain_split_for(self.split)

    def rows(self, name: str):
        if name not in self._cache:
            ds = load_tofu(name, source=self.source, path=self.path, hub_id=self.hub_id)
            self._cache[name] = validate_tofu_rows(ds, name)
        return self._cache[name]

    def pretrain_rows(self) -> list[dict[str, str]]:
        """The base model's corpus: ``pretrain.json`` if the world has one, else RA + WF QA."""
        if self.source == "local" and self.path and (Path(self.path) / "pretrain.json").exists():
            return list(self.rows("pretrain"))
        return list(self.rows("real_authors_perturbed")) + list(self.rows("world_facts_perturbed"))


@dataclass
class Prepared:
    """What the pipeline gets: data, tokenizer, template and model locations, with stage info."""

    data: Any  # TofuData, or unlearn.benchmarks.muse.MuseData
    template: Template
    tokenizer_path: str
    target_path: str | None  # None: no target model (an evaluation of a checkpoint without one)
    retain_path: str | None
    stages: dict[str, Artifact]
    max_length: int  # tokens per evaluated QA text (TOFU's eval: 200)
    dtype: str  # the storage dtype: frozen and evaluated models load in it
    attn_implementation: str | None
    train_max_length: int | None = None  # tokens per unlearning example (TOFU's forget.py: 500); None: max_length
    revision: str | None = None  # the Hub revision of the checkpoints and tokenizer (model.revision)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_path, self.revision)

    def load(self, which: str):
        path = {"target": self.target_path, "retain": self.retain_path}[which]
        if path is None:
            raise ValueError(f"no {which} model configured (model.{which} is null)")
        return load_causal_lm(path, self.dtype, self.attn_implementation, self.revision)

    def model_identity(self, which: str) -> dict[str, Any]:
        """Everything about the target / retain model that changes its numbers: what it is (its
        stage key, or its path or Hub id with the revision and, for a local folder, a fingerprint
        of its files), the dtype and attention it is loaded with, the tokenizer (same rule) and
        the prompt template. The key of its cached evaluation (``runner.reference_eval``)."""
        path = {"target": self.target_path, "retain": self.retain_path}[which]

        def ident(stage: str, location: str | None, patterns=None) -> dict[str, Any]:
            if stage in self.stages:
                return {"stage": self.stages[stage].key}
            return {"path": location, "revision": self.revision, "files": fingerprint(location, patterns)}

        return {"model": ident(which, path), "tokenizer": ident("tokenizer", self.tokenizer_path, TOKENIZER_FILES),
                "dtype": self.dtype, "attn_implementation": self.attn_implementation,
                "template": {"kind": type(self.template).__name__, **dataclasses.asdict(self.template)},
                "max_length": self.max_length}

    def features(self, rows, answer_key: str = "answer", train: bool = False, rule: str = "tofu",
                 max_length: int | None = None) -> list[Feature]:
        """QA features, cut at ``max_length`` (default: the model's for evaluation, or
        ``train_max_length`` with ``train``: unlearning); ``rule``: the prompt-mask rule
        (:data:`unlearn.templates.MASK_RULES`)."""
        n = max_length or ((self.train_max_length or self.max_length) if train else self.max_length)
        return encode_rows(self.tokenizer, self.template, rows, n, answer_key, rule)


def check_sources(cfg: DictConfig, extra: Sequence[Source] = ()) -> bool:
    """Before anything is built: a bad ``dataset.source`` / ``model.source``, then every model and
    data location the config names (:mod:`unlearn.sources`: a missing local folder, a malformed Hub
    id, a Hub id offline and not cached); sets the Hub mode. True when offline."""
    if cfg.dataset.source not in DATA_SOURCES:
        raise ConfigError(f"unknown dataset.source {cfg.dataset.source!r}; valid: {', '.join(DATA_SOURCES)}")
    if cfg.model.source not in MODEL_SOURCES:
        raise ConfigError(f"unknown model.source {cfg.model.source!r}; valid: {', '.join(MODEL_SOURCES)}")
    return ensure_hub_access([*config_sources(cfg), *extra])


def model_settings(model_cfg: DictConfig) -> dict[str, Any]:
    """The :class:`Prepared` fields every benchmark takes from ``cfg.model`` alone."""
    train_max_length = model_cfg.get("train_max_length")
    return dict(max_length=int(model_cfg.max_length), dtype=str(model_cfg.dtype),
                attn_implementation=model_cfg.get("attn_implementation"),
                train_max_length=None if train_max_length is None else int(train_max_length),
                revision=model_cfg.get("revision"))


def world_stage(cache: StageCache, ds: DictConfig, generator: str, generate: Callable[[Any, Path], Any]) -> Artifact:
    """The generated data of an embedded world (``dataset.source=synth``), keyed by its sizes."""
    return cache.get_or_build("world", {"generator": generator, "synth": ds.synth},
                              lambda out: generate(ds.synth, out))


def prepare(cfg: DictConfig, cache: StageCache) -> Prepared:
    ds, model_cfg = cfg.dataset, cfg.model
    check_sources(cfg)
    retain_split_for(ds.split)  # a bad split name fails here, before anything is built
    stages: dict[str, Artifact] = {}
    if ds.source == "synth":
        stages["world"] = world_stage(cache, ds, "tofu_synth", generate_tofu_synth)
        data = TofuData("local", str(stages["world"].path), ds.hub_id, ds.split)
    elif ds.source == "local":  # check_sources: the folder exists
        data = TofuData("local", str(ds.path), ds.hub_id, ds.split)
    else:
        data = TofuData("hub", None, ds.hub_id, ds.split)
    template = build_template(model_cfg.template)
    common = model_settings(model_cfg)
    if model_cfg.source == "pretrained":
        return Prepared(data, template, str(model_cfg.tokenizer), *checkpoints(model_cfg), stages, **common)
    return _prepare_scratch(cfg, cache, data, template, stages, common)


def checkpoints(model_cfg: DictConfig) -> tuple[str | None, str | None]:
    """``model.target`` and ``model.retain`` of a pretrained model: paths or Hub ids, or None."""
    return tuple(None if model_cfg.get(k) is None else str(model_cfg[k]) for k in ("target", "retain"))


def data_identity(cfg: DictConfig, stages: dict[str, Artifact]) -> dict[str, Any]:
    """What the data stages are keyed by: the generated world, or where the data is read from."""
    ds = cfg.dataset
    if "world" in stages:
        return {"world": stages["world"].key}
    return {"source": ds.source, "path": str(Path(ds.path).resolve()) if ds.path else None, "hub_id": ds.hub_id}


def tokenizer_stage(cache: StageCache, m: DictConfig, data_id: dict[str, Any],
                    texts: Callable[[], list[str]]) -> Artifact:
    """A byte-level BPE trained on ``texts()`` (called only when the stage is built)."""

    def build(out: Path) -> None:
        from unlearn.tokenizer import train_bpe_tokenizer

        train_bpe_tokenizer(texts(), int(m.tokenizer.vocab_size), out)

    return cache.get_or_build("tokenizer", {"data": data_id, "tokenizer": m.tokenizer}, build)


def model_spec(m: DictConfig, tokenizer_key: str) -> dict[str, Any]:
    """What every trained model stage of ``model.source=scratch`` is keyed by, besides its data."""
    return {"tokenizer": tokenizer_key, "arch": m.arch, "template": m.template, "max_length": m.max_length,
            "seed": m.seed}


def trained_stage(cache: StageCache, stage: str, spec: dict[str, Any], *, m: DictConfig, tokenizer,
                  features: Callable[[], Sequence[Feature]], recipe, seed: int,
                  init_from: Path | None = None) -> Artifact:
    """A model finetuned with ``recipe`` on ``features()`` -- from ``init_from`` or, when it is
    None, from a fresh tiny Llama -- saved with its tokenizer and per-epoch losses."""

    def build(out: Path, partial: Path) -> None:
        from unlearn.train import finetune

        model = (load_causal_lm(init_from) if init_from is not None
                 else build_tiny_llama(m.arch, tokenizer, seed))
        feats = features()
        # a killed build left its last epoch's state in `partial`: continue from it
        losses = finetune(model, feats, recipe, tokenizer.pad_token_id, seed, desc=f"train {stage}",
                          resume_dir=partial)
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        (out / "train_log.json").write_text(json.dumps({"epoch_losses": losses, "n_examples": len(feats)}))

    return cache.get_or_build(stage, spec, build, resumable=True)


def prepare_from_scratch(cfg: DictConfig, cache: StageCache, data, template, stages: dict[str, Artifact],
                         common: dict[str, Any], *, tokenizer_texts: Callable[[], list[str]],
                         training: dict[str, Any], features: Callable[[Any, str], Sequence[Feature]]) -> Prepared:
    """A raw-text benchmark's embedded world without a base model (MUSE, WMDP): the tokenizer, then
    the target and retain models each trained from a fresh tiny Llama with ``dataset.train`` (else
    ``model.pretrain``) on ``features(tokenizer, which)``; ``training[which]`` (what each model is
    trained on) is part of its key."""
    m = cfg.model
    data_id = data_identity(cfg, stages)
    stages["tokenizer"] = tokenizer_stage(cache, m, data_id, tokenizer_texts)
    tokenizer = load_tokenizer(stages["tokenizer"].path)
    spec = model_spec(m, stages["tokenizer"].key)
    recipe = cfg.dataset.get("train") or m.pretrain
    for which in ("target", "retain"):
        stages[which] = trained_stage(
            cache, which, {**spec, "data": data_id, "train": training[which], "chunk_length": data.chunk_length,
                           "recipe": recipe},
            m=m, tokenizer=tokenizer, features=lambda w=which: features(tokenizer, w), recipe=recipe, seed=int(m.seed))
    return Prepared(data, template, str(stages["tokenizer"].path), str(stages["target"].path),
                    str(stages["retain"].path), stages, **common)


def _prepare_scratch(cfg, cache, data, template, stages, common) -> Prepared:
    m = cfg.model
    if not isinstance(template, PromptTemplate):
        raise ValueError("model.template.chat=true needs a pretrained tokenizer that has a chat template "
                         "(model.source=pretrained); the embedded world's tokenizer has none: give the tags")
    data_id = data_identity(cfg, stages)

    def tokenizer_texts() -> list[str]:
        texts = [template.question_start_tag + template.question_end_tag + template.answer_tag]
        names = ["full", f"{data.split}_perturbed", "retain_perturbed", "real_authors_perturbed",
                 "world_facts_perturbed"]
        for name in names:
            for r in data.rows(name):
                texts += [r["question"], r["answer"], r.get("paraphrased_answer") or ""]
                texts += list(r.get("perturbed_answer") or [])
        texts += [r["question"] + " " + r["answer"] for r in data.pretrain_rows()]
        return texts

    stages["tokenizer"] = tokenizer_stage(cache, m, data_id, tokenizer_texts)
    tok_path = str(stages["tokenizer"].path)
    tokenizer = load_tokenizer(tok_path)
    spec = model_spec(m, stages["tokenizer"].key)

    def qa(rows: Callable[[], Any]) -> Callable[[], list[Feature]]:
        return lambda: encode_rows(tokenizer, template, rows(), int(m.max_length))

    def finetune_rows(name: str) -> Callable[[], list[dict[str, str]]]:
        # TOFU's finetuning starts from a chat model that keeps its general knowledge; a 1M-parameter
        # base forgets its corpus in 30 epochs on the authors, so a share of that corpus is replayed
        # (the same rows for target and retain: they differ only by the forget authors)
        def rows() -> list[dict[str, str]]:
            return list(data.rows(name)) + replay_rows(data.pretrain_rows(), m.finetune.get("replay_pretrain", 0.0),
                                                        int(m.seed))
        return rows

    train = dict(m=m, tokenizer=tokenizer)
    stages["base"] = trained_stage(cache, "base", {**spec, "data": data_id, "recipe": m.pretrain},
                                   features=qa(data.pretrain_rows), recipe=m.pretrain, seed=int(m.seed), **train)
    base = stages["base"].path
    stages["target"] = trained_stage(
        cache, "target", {"base": stages["base"].key, "data": data_id, "rows": "full", "recipe": m.finetune},
        features=qa(finetune_rows("full")), recipe=m.finetune, seed=int(m.seed) + 1, init_from=base, **train)
    stages["retain"] = trained_stage(
        cache, "retain", {"base": stages["base"].key, "data": data_id, "rows": data.retain_split, "recipe": m.finetune},
        features=qa(finetune_rows(data.retain_split)), recipe=m.finetune, seed=int(m.seed) + 1, init_from=base,
        **train)
    return Prepared(data, template, tok_path, str(stages["target"].path), str(stages["retain"].path), stages, **common)


def replay_rows(rows: Sequence[dict[str, str]], fraction: float, seed: int) -> list[dict[str, str]]:
    """A fixed ``fraction`` (0..1) of the base corpus, drawn once with ``seed``, to mix into finetuning."""
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"model.finetune.replay_pretrain must be in [0, 1], got {fraction}")
    rows = list(rows)
    n = round(fraction * len(rows))
    if n == len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]
