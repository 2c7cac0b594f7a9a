"""Build (or load) everything a run needs before unlearning, each piece a cached stage.

Embedded world (``model.source=scratch``)::

    world (generated TOFU files) -> tokenizer -> base model -> target (full)
                                                             -> retain (retainXX)

Real world (``model.source=pretrained``): data from a local TOFU folder or the Hub, the target
and retain checkpoints from config paths / Hub ids.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from unlearn.data import Feature, encode_rows
from unlearn.models import PromptTemplate, build_tiny_llama, load_causal_lm, load_tokenizer
from unlearn.stages import Artifact, StageCache
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

    data: TofuData
    template: PromptTemplate
    tokenizer_path: str
    target_path: str
    retain_path: str | None
    stages: dict[str, Artifact]
    max_length: int
    dtype: str
    attn_implementation: str | None

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_path)

    def load(self, which: str):
        path = {"target": self.target_path, "retain": self.retain_path}[which]
        if path is None:
            raise ValueError(f"no {which} model configured (model.{which} is null)")
        return load_causal_lm(path, self.dtype, self.attn_implementation)

    def features(self, rows, answer_key: str = "answer") -> list[Feature]:
        return encode_rows(self.tokenizer, self.template, rows, self.max_length, answer_key)


def prepare(cfg: DictConfig, cache: StageCache) -> Prepared:
    ds, model_cfg = cfg.dataset, cfg.model
    if ds.source not in DATA_SOURCES:
        raise ValueError(f"unknown dataset.source {ds.source!r}; valid: {', '.join(DATA_SOURCES)}")
    if model_cfg.source not in MODEL_SOURCES:
        raise ValueError(f"unknown model.source {model_cfg.source!r}; valid: {', '.join(MODEL_SOURCES)}")
    retain_split_for(ds.split)  # a bad split name fails here, before anything is built
    stages: dict[str, Artifact] = {}
    if ds.source == "synth":
        stages["world"] = cache.get_or_build(
            "world", {"generator": "tofu_synth", "synth": ds.synth},
            lambda out: generate_tofu_synth(ds.synth, out),
        )
        data = TofuData("local", str(stages["world"].path), ds.hub_id, ds.split)
    elif ds.source == "local":
        if not ds.path or not Path(ds.path).is_dir():
            raise FileNotFoundError(f"dataset.path {ds.path!r} is not a folder of TOFU json files")
        data = TofuData("local", str(ds.path), ds.hub_id, ds.split)
    else:
        data = TofuData("hub", None, ds.hub_id, ds.split)
    template = PromptTemplate.from_cfg(model_cfg.template)
    common = dict(max_length=int(model_cfg.max_length), dtype=str(model_cfg.dtype),
                  attn_implementation=model_cfg.get("attn_implementation"))
    if model_cfg.source == "pretrained":
        return Prepared(data, template, str(model_cfg.tokenizer), str(model_cfg.target),
                        None if model_cfg.retain is None else str(model_cfg.retain), stages, **common)
    return _prepare_scratch(cfg, cache, data, template, stages, common)


def _data_identity(cfg: DictConfig, stages: dict[str, Artifact]) -> dict[str, Any]:
    ds = cfg.dataset
    if "world" in stages:
        return {"world": stages["world"].key}
    return {"source": ds.source, "path": str(Path(ds.path).resolve()) if ds.path else None, "hub_id": ds.hub_id}


def _prepare_scratch(cfg, cache, data, template, stages, common) -> Prepared:
    m = cfg.model
    data_id = _data_identity(cfg, stages)

    def build_tokenizer(out: Path) -> None:
        from unlearn.tokenizer import train_bpe_tokenizer

        texts = [template.question_start_tag + template.question_end_tag + template.answer_tag]
        names = ["full", f"{data.split}_perturbed", "retain_perturbed", "real_authors_perturbed",
                 "world_facts_perturbed"]
        for name in names:
            for r in data.rows(name):
                texts += [r["question"], r["answer"], r.get("paraphrased_answer") or ""]
                texts += list(r.get("perturbed_answer") or [])
        texts += [r["question"] + " " + r["answer"] for r in data.pretrain_rows()]
        train_bpe_tokenizer(texts, int(m.tokenizer.vocab_size), out)

    stages["tokenizer"] = cache.get_or_build("tokenizer", {"data": data_id, "tokenizer": m.tokenizer}, build_tokenizer)
    tok_path = str(stages["tokenizer"].path)
    tokenizer = load_tokenizer(tok_path)
    model_spec = {"tokenizer": stages["tokenizer"].key, "arch": m.arch, "template": m.template,
                  "max_length": m.max_length, "seed": m.seed}

    def trained(stage: str, init_from: Path | None, rows, recipe, seed: int):
        def build(out: Path) -> None:
            from unlearn.train import finetune

            model = (load_causal_lm(init_from) if init_from is not None
                     else build_tiny_llama(m.arch, tokenizer, seed))
            feats = encode_rows(tokenizer, template, rows, int(m.max_length))
            losses = finetune(model, feats, recipe, tokenizer.pad_token_id, seed, desc=f"train {stage}")
            model.save_pretrained(str(out))
            tokenizer.save_pretrained(str(out))
            (out / "train_log.json").write_text(json.dumps({"epoch_losses": losses, "n_examples": len(feats)}))
        return build

    stages["base"] = cache.get_or_build(
        "base", {**model_spec, "data": data_id, "recipe": m.pretrain},
        trained("base", None, data.pretrain_rows(), m.pretrain, int(m.seed)),
    )
    base = stages["base"].path
    stages["target"] = cache.get_or_build(
        "target", {"base": stages["base"].key, "data": data_id, "rows": "full", "recipe": m.finetune},
        trained("target", base, data.rows("full"), m.finetune, int(m.seed) + 1),
    )
    stages["retain"] = cache.get_or_build(
        "retain", {"base": stages["base"].key, "data": data_id, "rows": data.retain_split, "recipe": m.finetune},
        trained("retain", base, data.rows(data.retain_split), m.finetune, int(m.seed) + 1),
    )
    return Prepared(data, template, tok_path, str(stages["target"].path), str(stages["retain"].path), stages, **common)
