"""WMDP (Li et al. 2024, "The WMDP Benchmark"): unlearn a hazardous-knowledge corpus, keep general
knowledge; 4-choice question accuracy on the forget domain should fall to chance (0.25) and MMLU's
should stay.

Stages. Embedded world (``dataset.source=synth``, ``model.source=scratch``)::

    world (generated, WMDP's layouts) -> tokenizer -> target (forget + retain corpus, forget + general questions)
                                                   -> retain (retain corpus, general questions)

Both models are trained from the same fresh tiny Llama with ``dataset.train``, as MUSE's
(:mod:`unlearn.benchmarks.muse`). The retain model is the gold standard WMDP itself has none of: it
never saw the forget domain, so it answers its questions at chance. Real WMDP
(``model.source=pretrained``): the model to unlearn by path or Hub id (the paper's
``HuggingFaceH4/zephyr-7b-beta``), no retain model (``model.retain=null``), the data from the Hub or
a local folder through :func:`unlearn.worlds.wmdp.load_wmdp`.

Deviation from WMDP, to make its questions meaningful for a model of about a million parameters
(as MUSE's embedded world does for KnowMem): the embedded models are also trained on the questions
of their splits, each example being the question's cloze prompt followed by its right choice,
exactly the sequence the evaluation scores for that choice (:func:`eval.wmdp.choices.answer_feature`,
only the choice's tokens labelled), ``dataset.train.question_repeats`` times an epoch (the corpora's
chunks once). A 7B model answers WMDP's questions from what it read; a tiny model does not turn
facts read in documents into answers to questions, and the question training stands in for that
ability. The embedded world also scores the cloze form (``Question: ...\\nAnswer:``
then each choice's text, lm-evaluation-harness's ``mmlu_continuation`` format) rather than the
letter form of lm-evaluation-harness's ``wmdp_*`` / ``mmlu`` tasks, which asks a model to read
four options and name one by its letter, beyond a tiny model.

Unlearning data: the forget corpus and the retain corpus (``dataset.retain_corpus``: WikiText as
RMU's code, or ``<domain>-retain-corpus`` as open-unlearning's WMDP configs) each joined into one
text and cut into chunks of ``dataset.chunk_length`` tokens (:mod:`unlearn.benchmarks.raw_text`,
as open-unlearning's ``PretrainingDataset`` cuts them); IDK and IDK-DPO read a chunk's prompt and
continuation as on MUSE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from eval.lm_eval import step as lm_eval_step
from eval.wmdp.choices import CHANCE, answer_feature
from eval.wmdp.evaluate import EVAL_VERSION, TASK_KEYS, evaluate_wmdp, summarize
from unlearn.benchmarks.base import BENCHMARKS, Benchmark
from unlearn.benchmarks.raw_text import chunk_answer_feature, chunk_rows, text_chunks
from unlearn.data import Feature, encode_text
from unlearn.preparation import (Prepared, check_sources, checkpoints, model_settings, prepare_from_scratch,
                                 world_stage)
from unlearn.schema import ConfigError
from unlearn.sources import classify_source
from unlearn.templates import build_template
from unlearn.worlds.wmdp import HUB_IDS, load_wmdp, wmdp_part
from unlearn.worlds.wmdp_synth import DOMAIN, generate_wmdp_synth

HUB_DOMAINS = ("bio", "cyber")  # dataset.split on the Hub: the domains with a forget corpus
# What each embedded model is trained on: corpora (raw text) and question sets (cloze prompt + answer)
TRAINING = {
    "target": {"corpora": ("forget", "retain"), "questions": ("questions", "general")},
    "retain": {"corpora": ("retain",), "questions": ("general",)},
}


@dataclass
class WmdpData:
    """Access to one WMDP run's data (a generated folder, a local folder, or the Hub)."""

    source: str  # "local" or "hub" (a generated world is a local folder)
    path: str | None
    domain: str  # bio | cyber (the generated world's: synth)
    retain_corpus: str  # wikitext | corpus (unlearn.worlds.wmdp.RETAIN_CORPORA)
    hub_ids: Mapping[str, str]
    chunk_length: int
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def rows(self, part: str):
        if part not in self._cache:
            self._cache[part] = load_wmdp(part, self.domain, source=self.source, path=self.path,
                                          hub_ids=self.hub_ids, retain=self.retain_corpus)
        return self._cache[part]

    def texts(self, part: str) -> list[str]:
        """A corpus's documents; empty ones (WikiText's blank lines) are left out, as RMU's
        ``get_data`` leaves out texts of ``min_len`` = 0 characters."""
        return [t for t in self.rows(part)["text"] if t.strip()]

    def questions(self, part: str) -> list[dict[str, Any]]:
        key = f"questions:{part}"
        if key not in self._cache:
            self._cache[key] = list(self.rows(part))
        return self._cache[key]

    def chunks(self, part: str, tokenizer) -> tuple[list, list[Feature]]:
        """A corpus's unlearning rows and features (:func:`unlearn.benchmarks.raw_text.chunk_rows`),
        cut once (the unlearning loop and every evaluation read the same)."""
        key = f"chunks:{part}"
        if key not in self._cache:
            self._cache[key] = chunk_rows(tokenizer, self.texts(part), self.chunk_length)
        return self._cache[key]


def training_features(tokenizer, data: WmdpData, which: str, question_repeats: int = 1) -> list[Feature]:
    """The embedded target / retain model's training set (see the module docstring): the corpora's
    chunks once, each question's answer example ``question_repeats`` times."""
    spec, n = TRAINING[which], data.chunk_length
    chunks = text_chunks(tokenizer, [t for part in spec["corpora"] for t in data.texts(part)], n)
    answers = [answer_feature(tokenizer, r, n) for part in spec["questions"] for r in data.questions(part)]
    return [encode_text(tokenizer, c, n) for c in chunks] + answers * int(question_repeats)


def _hub_ids(ds: DictConfig) -> dict[str, str]:
    """The Hub repository of each role: ``dataset.hub_id`` (the questions), ``dataset.hub`` (the others)."""
    given = OmegaConf.to_container(ds.hub, resolve=True) if ds.get("hub") else {}
    return {**HUB_IDS, **given, "questions": str(ds.hub_id)}


def _data(cfg: DictConfig, cache) -> tuple[WmdpData, dict]:
    ds = cfg.dataset
    domain, retain, chunk = str(ds.split), str(ds.retain_corpus), int(ds.chunk_length)
    hub_ids = _hub_ids(ds)
    if ds.source == "synth":
        if domain != DOMAIN:
            raise ConfigError(f"dataset.split={domain!r}: the embedded WMDP world's domain is {DOMAIN!r}")
        stages = {"world": world_stage(cache, ds, "wmdp_synth", generate_wmdp_synth)}
        return WmdpData("local", str(stages["world"].path), domain, retain, hub_ids, chunk), stages
    if ds.source == "hub" and domain not in HUB_DOMAINS:
        raise ConfigError(f"unknown WMDP domain dataset.split={domain!r}; valid: {', '.join(HUB_DOMAINS)}")
    path = str(ds.path) if ds.source == "local" else None  # check_sources: the folder exists
    return WmdpData(ds.source, path, domain, retain, hub_ids, chunk), {}


def hub_sources(cfg: DictConfig) -> list:
    """The Hub repositories a ``dataset.source=hub`` run reads besides ``dataset.hub_id`` (the
    questions, which every run's source check covers): checked before any work as they are."""
    ds = cfg.dataset
    if ds.source != "hub":
        return []
    hub = _hub_ids(ds)
    parts = [wmdp_part(p, str(ds.split), str(ds.retain_corpus)) for p in ("forget", "retain", "general")]
    return [classify_source(f"dataset.hub.{p.hub}", hub[p.hub], "dataset") for p in parts]


def prepare_wmdp(cfg: DictConfig, cache) -> Prepared:
    wmdp_part("retain", str(cfg.dataset.split), str(cfg.dataset.retain_corpus))  # a bad name fails first
    check_sources(cfg, hub_sources(cfg))
    data, stages = _data(cfg, cache)
    m = cfg.model
    template = build_template(m.template)  # unused by WMDP's rows; Prepared has one
    common = model_settings(m)
    if m.source == "pretrained":
        return Prepared(data, template, str(m.tokenizer), *checkpoints(m), stages, **common)

    def tokenizer_texts() -> list[str]:
        texts = [t for part in ("forget", "retain") for t in data.texts(part)]
        for part in ("questions", "general"):
            texts += [f"Question: {r['question']}\nAnswer: " + " ".join(r["choices"]) for r in data.questions(part)]
        return texts

    repeats = (cfg.dataset.get("train") or m.pretrain).get("question_repeats", 1)
    return prepare_from_scratch(cfg, cache, data, template, stages, common, tokenizer_texts=tokenizer_texts,
                                training=TRAINING, features=lambda tok, which: training_features(tok, data, which, repeats))


@BENCHMARKS.register("wmdp")
class Wmdp(Benchmark):
    name = "wmdp"
    # forget_acc: WMDP's (the forget domain's questions), general_acc: MMLU's; loss_*: mean token NLL
    table_columns = ["forget_acc", "general_acc", "loss_forget", "loss_retain"]

    def prepare(self, cfg: DictConfig, cache):
        return prepare_wmdp(cfg, cache)

    def unlearning_data(self, prepared):
        (forget_rows, forget), (retain_rows, retain) = (prepared.data.chunks(p, prepared.tokenizer)
                                                        for p in ("forget", "retain"))
        return forget_rows, retain_rows, forget, retain

    def answer_feature(self, prepared, row, answer, prefix_tokens):
        """A chunk's prompt, then its continuation (``answer=None``) or ``answer`` (as on MUSE)."""
        return chunk_answer_feature(prepared.tokenizer, row, answer, prepared.data.chunk_length, prefix_tokens)

    def sources(self, cfg: DictConfig) -> list:
        return hub_sources(cfg)

    def lm_eval_requests(self, cfg: DictConfig) -> list[tuple[str, list[str], str | None]]:
        """``eval.lm_eval``'s, and the tasks ``eval.tasks`` names for the question sets (when the harness scores them)."""
        tasks = cfg.eval.get("tasks") or {}
        own = [(f"eval.tasks.{k}", [str(tasks[k])], tasks.get("include_path"))
               for k in TASK_KEYS.values() if tasks.get(k) and cfg.eval.get("questions", "harness") == "harness"]
        return super().lm_eval_requests(cfg) + own

    def _eval_spec(self, cfg: DictConfig) -> dict[str, Any]:
        tasks = OmegaConf.to_container(cfg.eval.tasks, resolve=True) if cfg.eval.get("tasks") else None
        named = [tasks[k] for k in TASK_KEYS.values() if tasks and tasks.get(k)]
        return {"version": EVAL_VERSION, "retain_corpus": cfg.dataset.retain_corpus,
                "chunk_length": cfg.dataset.chunk_length,
                **{k: cfg.eval.get(k) for k in ("batch_size", "corpus_loss_chunks", "questions")}, "tasks": tasks,
                **({"task_files": lm_eval_step.folder_spec(tasks.get("include_path"), named)} if named else {})}

    def _evaluate(self, model, prepared, cfg: DictConfig, *, cheap: bool) -> dict[str, Any]:
        return evaluate_wmdp(model, prepared, cfg.eval, cheap=cheap)

    def _reference(self, logs: dict[str, Any], cfg: DictConfig):
        """None: WMDP's accuracies are absolute (the retain model, when there is one, is a row of
        the table, not a reference its numbers are computed against)."""
        return None, f"none: accuracies are absolute (chance {CHANCE})"

    def _summarize(self, logs: dict[str, Any], reference: Any, cfg: DictConfig) -> dict[str, Any]:
        return summarize(logs)
