"""open-unlearning's own TOFU metric code, run from its git repository (never copied here).

:func:`load_open_unlearning` extracts the few source files the TOFU metrics need from the bare
repository (``git show <rev>:<path>``) into a folder and imports them under their own module
names (``data.utils``, ``evals.metrics.memorization``, ...). The package ``__init__`` files are
*not* executed (they import every dataset / metric / the Hub): their parents are stub packages in
``sys.modules``. :func:`ou_tofu_eval` then evaluates one model the way ``configs/eval/tofu.yaml``
and ``configs/eval/tofu_metrics/*.yaml`` wire those functions (datasets, answer keys, collators,
aggregators, pre-computes), and returns what its evaluator would save in ``TOFU_EVAL.json``: the
metric cache, ``{metric name: result}``.

The only piece not run from their code is the ROC AUC of ``mia/utils.py`` ``mia_auc`` (it imports
sklearn, which this environment lacks): with sklearn missing it is the Mann-Whitney statistic
(``scipy.stats.mannwhitneyu``), which is ``roc_auc_score`` for two classes.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

DEFAULT_REPO = "/work/.mirror/locuslab+open-unlearning/repo"
REPO_ENV = "OPEN_UNLEARNING_REPO"
REV_ENV = "OPEN_UNLEARNING_REV"  # the commit / branch to read (default HEAD)

#: module name -> file in their repository, in import order (each imports only earlier ones)
MODULES = {
    "data.utils": "src/data/utils.py",
    "data.collators": "src/data/collators.py",
    "data.qa": "src/data/qa.py",
    "evals.metrics.base": "src/evals/metrics/base.py",
    "evals.metrics.utils": "src/evals/metrics/utils.py",
    "evals.metrics.memorization": "src/evals/metrics/memorization.py",
    "evals.metrics.privacy": "src/evals/metrics/privacy.py",
    "evals.metrics.utility": "src/evals/metrics/utility.py",
    "evals.metrics.mia.all_attacks": "src/evals/metrics/mia/all_attacks.py",
    "evals.metrics.mia.loss": "src/evals/metrics/mia/loss.py",
    "evals.metrics.mia.zlib": "src/evals/metrics/mia/zlib.py",
    "evals.metrics.mia.min_k": "src/evals/metrics/mia/min_k.py",
    "evals.metrics.mia.min_k_plus_plus": "src/evals/metrics/mia/min_k_plus_plus.py",
}
#: stub packages (their real __init__ files import everything: datasets from the Hub, sklearn, ...)
PACKAGES = ("data", "evals", "evals.metrics", "evals.metrics.mia")
#: config files read as they are
CONFIGS = {
    "generation": "configs/generation/default.yaml",
    "phi-1_5": "configs/model/phi-1_5.yaml",
}


def repo_path() -> Path:
    return Path(os.environ.get(REPO_ENV, DEFAULT_REPO))


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def unavailable_reason() -> str | None:
    """Why open-unlearning's code cannot be run here (None: it can)."""
    repo = repo_path()
    if shutil.which("git") is None:
        return "git is not installed"
    if not repo.exists():
        return f"open-unlearning's repository is not at {repo} (set {REPO_ENV})"
    rev = os.environ.get(REV_ENV, "HEAD")
    r = subprocess.run(["git", "--git-dir", str(_git_dir(repo)), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"{repo} is not a git repository with revision {rev}: {r.stderr.strip()}"
    return None


def extract(dest: Path) -> tuple[str, dict[str, Path]]:
    """Their files, ``git show``-n into ``dest``: (commit, {repository path: local file})."""
    git = ["git", "--git-dir", str(_git_dir(repo_path()))]
    rev = os.environ.get(REV_ENV, "HEAD")
    commit = subprocess.run([*git, "rev-parse", f"{rev}^{{commit}}"], check=True, capture_output=True,
                            text=True).stdout.strip()
    out = {}
    for path in [*MODULES.values(), *CONFIGS.values()]:
        text = subprocess.run([*git, "show", f"{commit}:{path}"], check=True, capture_output=True).stdout
        file = dest / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(text)
        out[path] = file
    return commit, out


def _never_called(*args, **kwargs):
    raise AssertionError("the anchor hands open-unlearning's metric functions their datasets and collators itself")


@dataclass
class OpenUnlearning:
    commit: str
    modules: dict[str, types.ModuleType]
    configs: dict[str, Path]

    def __getattr__(self, short: str) -> types.ModuleType:
        """``ou.memorization``, ``ou.qa``, ``ou.min_k``, ...: a module by its last name part
        (``ou.utils`` is ``evals.metrics.utils``, ``ou.data_utils`` is ``data.utils``)."""
        name = "data.utils" if short == "data_utils" else next(
            (n for n in self.modules if n.rsplit(".", 1)[-1] == short and n != "data.utils"), None)
        if name is None:
            raise AttributeError(short)
        return self.modules[name]


@contextlib.contextmanager
def load_open_unlearning(dest: Path) -> Iterator[OpenUnlearning]:
    """Their metric modules, importable by their own names while the context is open; every
    ``sys.modules`` entry it adds or replaces is restored on exit."""
    commit, files = extract(dest)
    names = [*PACKAGES, *MODULES]
    saved = {n: sys.modules[n] for n in names if n in sys.modules}
    try:
        for name in PACKAGES:
            pkg = types.ModuleType(name)
            pkg.__path__ = []  # a package: submodules resolve through sys.modules
            pkg.__package__ = name
            if name == "data":  # evals/metrics/base.py: from data import get_datasets, get_collators
                pkg.get_datasets = pkg.get_collators = _never_called
            sys.modules[name] = pkg
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, pkg)
        modules = {name: _import(name, files[path]) for name, path in MODULES.items()}
        yield OpenUnlearning(commit, modules, {k: files[v] for k, v in CONFIGS.items()})
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


# ----------------------------------------------------------------------------------------
# their TOFU evaluation suite, wired as configs/eval/tofu_metrics/*.yaml wire it
# ----------------------------------------------------------------------------------------
TASK_FILES = {"forget": "{forget}_perturbed", "retain": "retain_perturbed", "ra": "real_authors_perturbed",
              "wf": "world_facts_perturbed"}
#: their metric -> (our attack name, their attack class in evals.metrics.mia.<our name>, its extra
#: arguments: configs/eval/tofu_metrics/mia_*.yaml; the zlib attack gets the tokenizer)
MIA_ATTACKS = {"mia_loss": ("loss", "LOSSAttack", {}), "mia_zlib": ("zlib", "ZLIBAttack", {"tokenizer": None}),
               "mia_min_k": ("min_k", "MinKProbAttack", {"k": 0.4}),
               "mia_min_k_plus_plus": ("min_k_plus_plus", "MinKPlusPlusAttack", {"k": 0.4})}
MAX_LENGTH = 512  # configs/data/datasets/TOFU_*.yaml


def roc_auc(labels, scores) -> float:
    """``sklearn.metrics.roc_auc_score`` when sklearn is installed, else the same number as the
    Mann-Whitney U of the positives (label 1) over the negatives, divided by n1 * n0."""
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        import numpy as np
        from scipy.stats import mannwhitneyu

        labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
        pos, neg = scores[labels == 1], scores[labels == 0]
        return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))
    return float(roc_auc_score(labels, scores))


def ou_tofu_eval(ou: OpenUnlearning, model, tokenizer, template_args: Mapping[str, Any], folder: Path, *,
                 forget_split: str, holdout_split: str, batch_size: int = 32, generation_batch_size: int = 32,
                 retain_logs: Mapping[str, Any] | None = None, generate: bool = True) -> dict[str, Any]:
    """One model's TOFU_EVAL.json as open-unlearning computes it (the metric cache), on the TOFU
    json files in ``folder`` (read by their ``QADataset`` through ``datasets.load_dataset("json")``).
    ``retain_logs``: the retain model's eval (their ``retain_logs_path``) for forget quality and
    PrivLeak; without it they are None / against ``ref_value`` 0.5, as their code does."""
    from omegaconf import OmegaConf

    mem, priv, util = ou.memorization, ou.privacy, ou.utility
    model.eval()

    def dataset(name: str, answer_key: str, generation: bool = False):
        hf_args = {"path": "json", "data_files": str(folder / f"{name}.json"), "split": "train"}
        return ou.qa.QADataset(hf_args=hf_args, template_args=dict(template_args), tokenizer=tokenizer,
                               question_key="question", answer_key=answer_key, max_length=MAX_LENGTH,
                               predict_with_generate=generation)

    right = ou.collators.DataCollatorForSupervisedDataset(tokenizer, padding_side="right", index="index")
    left = ou.collators.DataCollatorForSupervisedDataset(tokenizer, padding_side="left", index="index")
    generation_args = OmegaConf.load(ou.configs["generation"])

    def prob(name: str, key: str):
        return mem.probability._metric_fn(model, data=dataset(name, key), collators=right, batch_size=batch_size)

    logs: dict[str, Any] = {}
    for t, pattern in TASK_FILES.items():
        name = pattern.format(forget=forget_split)
        logs[f"{t}_Q_A_Prob"] = prob(name, "answer")
        logs[f"{t}_Q_A_PERT_Prob"] = wrong = prob(name, "perturbed_answer")
        if t in ("forget", "retain"):  # forget_/retain_Truth_Ratio: PARA is the correct answer
            logs[f"{t}_Q_A_PARA_Prob"] = correct = prob(name, "paraphrased_answer")
        else:  # ra_/wf_: the answer is, and the option-normalised probability
            correct = logs[f"{t}_Q_A_Prob"]
            logs[f"{t}_Q_A_Prob_normalised"] = mem.probability_w_options._metric_fn(
                model, pre_compute={"correct": correct, "wrong": wrong})
        tr_name = "forget_truth_ratio" if t == "forget" else f"{t}_Truth_Ratio"
        logs[tr_name] = mem.truth_ratio._metric_fn(
            model, pre_compute={"correct": correct, "wrong": wrong},
            aggregator="closer_to_1_better" if t == "forget" else "true_better")
        if generate:
            logs[f"{t}_Q_A_ROUGE"] = mem.rouge._metric_fn(
                model, data=dataset(name, "answer", generation=True), collators=left,
                batch_size=generation_batch_size, generation_args=generation_args, rouge_type="rougeL_recall",
                tokenizer=tokenizer)
    if generate:
        logs["model_utility"] = util.hm_aggregate._metric_fn(model, pre_compute={
            k: logs[k] for k in ("retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
                                 "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
                                 "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio")})
    forget = TASK_FILES["forget"].format(forget=forget_split)
    for metric in ("exact_memorization", "extraction_strength"):
        logs[metric] = getattr(mem, metric)._metric_fn(model, data=dataset(forget, "answer"), collators=right,
                                                       batch_size=batch_size)
    # mia/utils.py mia_auc, with the attacks' own classes
    for metric, (module, cls_name, extra) in MIA_ATTACKS.items():
        cls = getattr(ou.modules[f"evals.metrics.mia.{module}"], cls_name)
        args = {"model": model, "collator": right, "batch_size": batch_size,
                **{k: (tokenizer if k == "tokenizer" else v) for k, v in extra.items()}}
        out = {"forget": cls(data=dataset(forget, "answer"), **args).attack(),
               "holdout": cls(data=dataset(holdout_split, "answer"), **args).attack()}
        f = [e["score"] for e in out["forget"]["value_by_index"].values()]
        h = [e["score"] for e in out["holdout"]["value_by_index"].values()]
        out["auc"] = out["agg_value"] = roc_auc([0] * len(f) + [1] * len(h), f + h)
        logs[metric] = out
    reference = {}
    if retain_logs is not None:
        reference = {"reference_logs": {"retain_model_logs": {"retain": retain_logs["forget_truth_ratio"]}}}
    logs["forget_quality"] = priv.ks_test._metric_fn(model, pre_compute={"forget": logs["forget_truth_ratio"]},
                                                     **reference)
    reference = {}
    if retain_logs is not None:
        reference = {"reference_logs": {"retain_model_logs": {"retain": retain_logs["mia_min_k"]}}}
    logs["privleak"] = priv.privleak._metric_fn(model, pre_compute={"forget": logs["mia_min_k"]}, ref_value=0.5,
                                                **reference)
    return logs


# ----------------------------------------------------------------------------------------
# their MUSE evaluation suite, wired as configs/eval/muse.yaml and muse_metrics/*.yaml wire it
# ----------------------------------------------------------------------------------------
#: the modules MUSE needs beyond :data:`MODULES` (its CompletionDataset), imported after them
MUSE_MODULES = {"data.pretraining": "src/data/pretraining.py"}
#: the MUSE config files, read as they are: the suite, the template, each metric and its dataset
MUSE_CONFIGS = {
    "muse": "configs/eval/muse.yaml",
    "Llama-2-7b-hf": "configs/model/Llama-2-7b-hf.yaml",  # the template of their MUSE models
    "collator": "configs/collator/DataCollatorForSupervisedDataset.yaml",
    **{m: f"configs/eval/muse_metrics/{m}.yaml" for m in (
        "forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE", "privleak", "extraction_strength",
        "mia_min_k", "mia_loss", "mia_zlib", "mia_min_k_plus_plus")},
    **{d: f"configs/data/datasets/{d}.yaml" for d in (
        "MUSE_forget_knowmem", "MUSE_retain_knowmem", "MUSE_forget_verbmem", "MUSE_MIA")},
}
MUSE_ROUGE_METRICS = ("forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE")
#: their MUSE attack metrics -> (attack module, class): muse_metrics/mia_*.yaml handlers
MUSE_MIA_ATTACKS = {m: (module, cls) for m, (module, cls, _) in MIA_ATTACKS.items()}


def _show(commit: str, paths, dest: Path) -> dict[str, Path]:
    git = ["git", "--git-dir", str(_git_dir(repo_path()))]
    out = {}
    for path in paths:
        text = subprocess.run([*git, "show", f"{commit}:{path}"], check=True, capture_output=True).stdout
        file = dest / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(text)
        out[path] = file
    return out


def read(path: str) -> str:
    """One file of their repository at the revision read (``OPEN_UNLEARNING_REV``, default HEAD)."""
    git = ["git", "--git-dir", str(_git_dir(repo_path()))]
    rev = os.environ.get(REV_ENV, "HEAD")
    return subprocess.run([*git, "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout


def _import(name: str, path: Path):
    """Import one extracted file as module ``name`` (its stub parent package already in place)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, mod)
    return mod


@contextlib.contextmanager
def load_open_unlearning_muse(dest: Path) -> Iterator[OpenUnlearning]:
    """:func:`load_open_unlearning` plus what MUSE needs (``data.pretraining``, the MUSE configs),
    from the same commit; everything it adds to ``sys.modules`` is gone again on exit."""
    with load_open_unlearning(dest) as ou:
        files = _show(ou.commit, [*MUSE_MODULES.values(), *MUSE_CONFIGS.values()], dest)
        saved = {n: sys.modules[n] for n in MUSE_MODULES if n in sys.modules}
        try:
            for name, path in MUSE_MODULES.items():
                ou.modules[name] = _import(name, files[path])
            ou.configs.update({k: files[v] for k, v in MUSE_CONFIGS.items()})
            yield ou
        finally:
            for name in MUSE_MODULES:
                sys.modules.pop(name, None)
            sys.modules.update(saved)


def muse_suite(ou: OpenUnlearning) -> list[str]:
    """The metrics ``configs/eval/muse.yaml`` enables (its ``muse_metrics`` defaults list)."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(ou.configs["muse"]).defaults)
    return next(d["muse_metrics"] for d in defaults if isinstance(d, dict) and "muse_metrics" in d)


class _MuseWiring:
    """Their MUSE configs, read: datasets (Hub (name, split) -> ``folder/<name>/<split>.json``) and
    collators per metric, as their evaluator builds them from ``muse_metrics/<metric>.yaml``."""

    def __init__(self, ou: OpenUnlearning, tokenizer, folder: Path):
        from omegaconf import OmegaConf

        self.ou, self.tokenizer, self.folder = ou, tokenizer, Path(folder)
        self.cfg = {name: OmegaConf.load(ou.configs[name]) for name in MUSE_CONFIGS}
        self.template_args = OmegaConf.to_container(self.cfg["Llama-2-7b-hf"].template_args)
        self.generation = OmegaConf.load(ou.configs["generation"])

    def local(self, hf_args: Mapping[str, Any]) -> dict[str, Any]:
        return {"path": "json", "data_files": str(self.folder / hf_args["name"] / f"{hf_args['split']}.json"),
                "split": "train"}

    def datasets(self, metric: str) -> dict[str, Any]:
        """access key -> their dataset object: the dataset file's args merged with the metric's."""
        from omegaconf import OmegaConf

        m = self.cfg[metric]
        (file,) = [next(iter(d.values())) for d in OmegaConf.to_container(m.defaults)
                   if isinstance(d, dict) and next(iter(d)).endswith("@datasets")]
        out = {}
        for key, entry in self.cfg[file].items():
            override = m.get("datasets", {}).get(key, {})
            args = OmegaConf.to_container(OmegaConf.merge(entry.args, override.get("args", {})), resolve=False)
            for h in ("hf_args", "few_shot_dataset_hf_args"):
                if h in args:  # their Hub dataset (name, split) as the local file
                    args[h] = self.local(OmegaConf.to_container(entry.args[h]))
            module = "data.qa" if entry.handler == "QADataset" else "data.pretraining"
            data = getattr(self.ou.modules[module], entry.handler)(**args, template_args=self.template_args,
                                                                   tokenizer=self.tokenizer)
            if getattr(data, "fs_data", None) is not None:
                # their pinned datasets (3.0.1) returns a column as a list; 4+ as a Column, which
                # their ``fs_data[question_key] + [question]`` cannot concatenate
                data.fs_data = {k: list(v) for k, v in data.fs_data.items()}
            out[override.get("access_key", entry.get("access_key", key))] = data
        return out

    def collator(self, metric: str):
        default = self.cfg["collator"].DataCollatorForSupervisedDataset.args.padding_side
        args = self.cfg[metric].get("collators", {}).get("DataCollatorForSupervisedDataset", {}).get("args", {})
        return self.ou.collators.DataCollatorForSupervisedDataset(
            self.tokenizer, padding_side=args.get("padding_side", default), index="index")


def ou_muse_mia(ou: OpenUnlearning, model, tokenizer, folder: Path, metrics=("mia_min_k",)) -> dict[str, Any]:
    """Their ``mia_*`` results on ``folder/privleak/{forget,holdout}.json`` (``MUSE_MIA.yaml``):
    ``mia/utils.py`` ``mia_auc`` with the attacks' own classes and :func:`roc_auc` for sklearn's."""
    w = _MuseWiring(ou, tokenizer, folder)
    model.eval()
    logs = {}
    for metric in metrics:
        m = w.cfg[metric]
        module, cls_name = MUSE_MIA_ATTACKS[metric]
        assert m.handler == metric
        cls = getattr(ou.modules[f"evals.metrics.mia.{module}"], cls_name)
        args = {"model": model, "collator": w.collator(metric), "batch_size": int(m.batch_size),
                **({"k": float(m.k)} if "k" in m else {}), **({"tokenizer": tokenizer} if module == "zlib" else {})}
        data = w.datasets(metric)
        out = {g: cls(data=data[g], **args).attack() for g in ("forget", "holdout")}
        f = [e["score"] for e in out["forget"]["value_by_index"].values()]
        h = [e["score"] for e in out["holdout"]["value_by_index"].values()]
        out["auc"] = out["agg_value"] = roc_auc([0] * len(f) + [1] * len(h), f + h)
        logs[metric] = out
    return logs


def ou_muse_rouge(ou: OpenUnlearning, model, tokenizer, folder: Path, metrics=MUSE_ROUGE_METRICS, *,
                  generation_batch_size: int | None = None) -> dict[str, Any]:
    """Their ROUGE results (``memorization.py`` ``rouge``: generation, stop words, ground truths) of
    the KnowMem / VerbMem metrics, on the files in ``folder``; ``generation_batch_size`` replaces
    the configs' batch size when given."""
    from omegaconf import OmegaConf

    w = _MuseWiring(ou, tokenizer, folder)
    model.eval()
    logs = {}
    for metric in metrics:
        m = w.cfg[metric]
        assert m.handler == "rouge"
        (data,) = w.datasets(metric).values()
        logs[metric] = ou.memorization.rouge._metric_fn(
            model, data=data, collators=w.collator(metric), tokenizer=tokenizer, rouge_type=m.rouge_type,
            batch_size=generation_batch_size or int(m.batch_size),
            generation_args=OmegaConf.merge(w.generation, m.generation_args))
    return logs


def ou_muse_eval(ou: OpenUnlearning, model, tokenizer, folder: Path, *, retain_logs: Mapping[str, Any] | None = None,
                 generation_batch_size: int | None = None,
                 extra_attacks=("mia_loss", "mia_zlib", "mia_min_k_plus_plus"), generate: bool = True) -> dict[str, Any]:
    """One model's MUSE_EVAL.json as open-unlearning computes it (the metric cache) on the MUSE
    files in ``folder`` (``<config>/<split>.json``, read by their ``QADataset`` /
    ``CompletionDataset`` through ``datasets.load_dataset("json")``): the suite of ``muse.yaml``
    (its ROUGE metrics, ``privleak`` and the ``mia_min_k`` it pre-computes, which their evaluator
    stores too, ``extraction_strength``) and ``extra_attacks`` (their configs, commented out in
    ``muse.yaml``). Every dataset key, length, collator side, batch size, generation argument, k,
    ROUGE type and ``ref_value`` is read from their configs; only the Hub paths become local files
    (and ``generation_batch_size``, when given, replaces the ROUGE metrics' batch size).
    ``retain_logs``: the retain model's eval (their ``retain_logs_path``) for PrivLeak; without it,
    ``ref_value``."""
    mem, priv = ou.memorization, ou.privacy
    w = _MuseWiring(ou, tokenizer, folder)
    model.eval()
    logs: dict[str, Any] = {}
    if generate:
        logs.update(ou_muse_rouge(ou, model, tokenizer, folder, generation_batch_size=generation_batch_size))
    logs.update(ou_muse_mia(ou, model, tokenizer, folder, ("mia_min_k", *extra_attacks)))
    p = w.cfg["privleak"]
    assert p.handler == "privleak" and list(p.pre_compute) == ["mia_min_k"]
    assert p.pre_compute.mia_min_k.access_key == "forget"
    reference = {}
    if retain_logs is not None:  # their retain_logs_path: the file's entries under their access keys
        include = p.reference_logs.retain_model_logs.include
        reference = {"reference_logs": {"retain_model_logs": {
            include[k].get("access_key", k): retain_logs.get(k) for k in include}}}
    logs["privleak"] = priv.privleak._metric_fn(model, pre_compute={"forget": logs["mia_min_k"]},
                                                ref_value=p.ref_value, **reference)
    m = w.cfg["extraction_strength"]
    (data,) = w.datasets("extraction_strength").values()
    logs["extraction_strength"] = mem.extraction_strength._metric_fn(
        model, data=data, collators=w.collator("extraction_strength"), batch_size=int(m.batch_size))
    return logs
