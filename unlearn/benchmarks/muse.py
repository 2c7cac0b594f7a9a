"""MUSE: news articles, VerbMem / KnowMem / PrivLeak against the retrain model (METRICS.md §2).

Stages. Embedded world (``dataset.source=synth``, ``model.source=scratch``)::

    world (generated MUSE-News files) -> tokenizer -> target  (forget + retain1 + retain2 text, forget + retain QA)
                                                   -> retrain (retain1 + retain2 text, retain QA)

Both models are trained from the same fresh tiny Llama with ``dataset.train`` (the embedded world's
recipe; ``model.pretrain``, the from-scratch one, for a dataset without it), as MUSE's target and
retrain models both start from Llama-2-7b. There is no base model. The pipeline calls the retrain
model ``retain``, as TOFU's. Real MUSE (``model.source=pretrained``): the target / retrain
checkpoints by path or Hub id, the data from the Hub or a local folder through
:func:`unlearn.worlds.muse.load_muse`.

Deviation from MUSE, to make KnowMem meaningful for a model of about a million parameters: the
embedded models are also trained on the knowmem QA of their splits, each example being MUSE's own
in-context prompt (:func:`eval.muse.metrics.knowmem_prompt`) followed by the answer, with the
prompt masked. A tiny model does not turn facts read in articles into answers to questions, and a
Llama-2 does; the QA training stands in for that ability. The prompt and the answer are tokenized
separately and concatenated, because that is the token sequence KnowMem evaluates (the prompt
ends with a space, which a byte-level BPE keeps as a token of its own).

Unlearning data (MUSE ``baselines/dataset.py`` ``DefaultDataset``): the forget (``raw/forget``)
and retain (``raw/retain1``) corpora are each joined into one text, tokenized, cut into chunks of
``dataset.chunk_length - 1`` tokens and given a BOS; every method and scheduler uses them as they
use TOFU's QA features (causal-LM loss on every token).

IDK and IDK-DPO on raw text (a framework-defined extension: MUSE has no IDK baseline). They need a
prompt and an answer (:meth:`Muse.answer_feature`): a forget chunk's prompt is BOS and its first
``method.prefix_tokens`` tokens (VerbMem's prefix -> continuation setting; at most all but the last
token), its true answer the rest of the chunk. IDK trains the IDK answer after the prompt (only its
tokens scored); IDK-DPO prefers it to the true continuation, both scored after the same prompt. The
cut is made in the chunk's token ids, so prompt and continuation are exactly its unlearning
feature's tokens (decoding a prefix and re-encoding it could tokenize its last word differently);
the IDK sentence is tokenized as running text after a space, with no EOS (a chunk has none either).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from eval.muse.evaluate import EVAL_VERSION, evaluate_muse, privleak_reference, summarize
from eval.muse.metrics import knowmem_prompt
from unlearn.benchmarks.base import BENCHMARKS, Benchmark
from unlearn.benchmarks.raw_text import (DOC_SEPARATOR, chunk_answer_feature, chunk_rows, prompt_answer_feature,
                                         text_chunks)
from unlearn.data import Feature, encode_text
from unlearn.preparation import (Prepared, check_sources, checkpoints, model_settings, prepare_from_scratch,
                                 world_stage)
from unlearn.templates import build_template
from unlearn.worlds import MUSE_HUB_IDS, generate_muse_synth, load_muse, validate_muse_rows

CORPORA = tuple(MUSE_HUB_IDS)  # dataset.split: news | books
# What each embedded model is trained on: raw splits, and knowmem (QA, in-context examples) pairs.
TRAINING = {
    "target": {"raw": ("forget", "retain1", "retain2"),
               "knowmem": (("forget_qa", "forget_qa_icl"), ("retain_qa", "retain_qa_icl"))},
    "retain": {"raw": ("retain1", "retain2"), "knowmem": (("retain_qa", "retain_qa_icl"),)},
}
UNLEARN_SPLITS = ("forget", "retain1")  # raw splits of the forget / retain losses (MUSE unlearn_news.sh)


@dataclass
class MuseData:
    """Access to one MUSE-format dataset (generated folder, local folder, or the Hub)."""

    source: str  # "local" or "hub" (a generated world is a local folder)
    path: str | None
    hub_id: str
    split: str  # the corpus, news | books (MUSE's PrivLeak constant is per corpus)
    chunk_length: int
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def rows(self, config: str, split: str):
        if (config, split) not in self._cache:
            ds = load_muse(config, split, source=self.source, path=self.path, hub_id=self.hub_id)
            self._cache[(config, split)] = validate_muse_rows(ds, config, split)
        return self._cache[(config, split)]

    def texts(self, split: str) -> list[str]:
        return list(self.rows("raw", split)["text"])


def encode_prompt_answer(tokenizer, prompt: str, answer: str, max_length: int) -> Feature:
    """``BOS + tokens(prompt) + tokens(answer)``, the prompt masked: the answer is scored exactly
    as KnowMem's greedy decoding produces it after the separately tokenized prompt."""
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if len(p) >= max_length:
        raise ValueError(f"a KnowMem training prompt has {len(p)} tokens, more than dataset.chunk_length="
                         f"{max_length}: lower dataset.synth.n_knowmem_icl or raise the chunk length")
    return prompt_answer_feature(p, tokenizer(answer, add_special_tokens=False)["input_ids"], max_length)


def training_features(tokenizer, data: MuseData, which: str) -> list[Feature]:
    """The embedded target / retrain model's training set (see the module docstring)."""
    spec, n = TRAINING[which], data.chunk_length
    chunks = text_chunks(tokenizer, [t for s in spec["raw"] for t in data.texts(s)], n)
    feats = [encode_text(tokenizer, c, n) for c in chunks]
    for qa_split, icl_split in spec["knowmem"]:
        icl = list(data.rows("knowmem", icl_split))
        # the answer ends like an in-context example, so the model learns where to stop
        feats += [encode_prompt_answer(tokenizer, knowmem_prompt(icl, r["question"]), r["answer"] + DOC_SEPARATOR, n)
                  for r in data.rows("knowmem", qa_split)]
    return feats


def _data(cfg: DictConfig, cache) -> tuple[MuseData, dict]:
    ds = cfg.dataset
    if ds.split not in CORPORA:
        raise ValueError(f"unknown MUSE corpus dataset.split={ds.split!r}; valid: {', '.join(CORPORA)}")
    stages: dict = {}
    chunk = int(ds.chunk_length)
    if ds.source == "synth":
        stages["world"] = world_stage(cache, ds, "muse_synth", generate_muse_synth)
        return MuseData("local", str(stages["world"].path), ds.hub_id, ds.split, chunk), stages
    if ds.source == "local":  # check_sources: the folder exists
        return MuseData("local", str(ds.path), ds.hub_id, ds.split, chunk), stages
    return MuseData("hub", None, ds.hub_id, ds.split, chunk), stages


def prepare_muse(cfg: DictConfig, cache) -> Prepared:
    check_sources(cfg)
    if "verbmem" not in cfg.eval:
        raise ValueError(f"dataset={cfg.dataset.name} is a MUSE dataset and needs MUSE's evaluation: add eval=muse")
    data, stages = _data(cfg, cache)
    m = cfg.model
    template = build_template(m.template)  # unused by MUSE's raw-text rows; Prepared has one
    common = model_settings(m)
    if m.source == "pretrained":
        return Prepared(data, template, str(m.tokenizer), *checkpoints(m), stages, **common)

    def tokenizer_texts() -> list[str]:
        texts = [t for s in ("forget", "retain1", "retain2", "holdout") for t in data.texts(s)]
        for split in ("forget_qa", "forget_qa_icl", "retain_qa", "retain_qa_icl"):
            texts += [knowmem_prompt([], r["question"]) + r["answer"] for r in data.rows("knowmem", split)]
        return texts

    # every split, holdout included: its names must not fall apart into more tokens than forget's,
    # or the MIA would separate them by tokenization instead of membership
    return prepare_from_scratch(cfg, cache, data, template, stages, common, tokenizer_texts=tokenizer_texts,
                                training=TRAINING, features=lambda tok, which: training_features(tok, data, which))


@BENCHMARKS.register("muse")
class Muse(Benchmark):
    name = "muse"
    # MUSE's eval.py keys; mia_auc: the PrivLeak attack's AUC; loss_*: mean NLL of the privleak texts
    table_columns = ["verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mia_auc", "loss_forget", "loss_retain"]

    def prepare(self, cfg: DictConfig, cache):
        return prepare_muse(cfg, cache)

    def unlearning_data(self, prepared):
        data, tok = prepared.data, prepared.tokenizer
        (forget_rows, forget), (retain_rows, retain) = (chunk_rows(tok, data.texts(s), data.chunk_length)
                                                        for s in UNLEARN_SPLITS)
        return forget_rows, retain_rows, forget, retain

    def answer_feature(self, prepared, row, answer, prefix_tokens):
        """A chunk's prompt, then its continuation (``answer=None``) or ``answer`` as running text
        (see the module docstring)."""
        return chunk_answer_feature(prepared.tokenizer, row, answer, prepared.data.chunk_length, prefix_tokens)

    def _eval_spec(self, cfg: DictConfig) -> dict[str, Any]:
        return {"version": EVAL_VERSION,
                **{k: cfg.eval.get(k) for k in ("batch_size", "rouge", "verbmem", "knowmem", "mia")}}

    def _evaluate(self, model, prepared, cfg: DictConfig, *, cheap: bool) -> dict[str, Any]:
        generate = not cheap or bool(cfg.eval.get("trajectory_generate", False))
        return evaluate_muse(model, prepared, cfg.eval, generate=generate)

    def _reference(self, logs: dict[str, Any], cfg: DictConfig):
        """PrivLeak's reference AUC: the retrain model's measured one (or that of published retain
        logs, ``eval.retain_logs``: open-unlearning's MUSE_EVAL.json or one of our runs), or MUSE's
        constant."""
        if cfg.eval.get("retain_logs"):
            from eval.muse.evaluate import retain_logs_reference

            return retain_logs_reference(str(cfg.eval.retain_logs), cfg.eval)
        return privleak_reference(logs.get("retain"), cfg.eval, corpus=str(cfg.dataset.split))

    def _summarize(self, logs: dict[str, Any], reference: Any, cfg: DictConfig) -> dict[str, Any]:
        return summarize(logs, reference, cfg.eval)
