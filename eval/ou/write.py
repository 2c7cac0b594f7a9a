"""open-unlearning's evaluation output, written: our per-sample logs of either benchmark as its
``TOFU_EVAL.json`` / ``MUSE_EVAL.json`` and ``<NAME>_SUMMARY.json`` (``eval.ou_logs: true``), lm-eval's
results (WMDP's too) as its ``LMEval_EVAL.json`` / ``LMEval_SUMMARY.json``, so
open-unlearning's tools and ours read each other's results. The format is described in
:mod:`eval.ou.read`. This module converts both benchmarks' logs, so it sits above them: the
pipeline imports it, neither evaluator does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from eval.compat import OU_EPS
from eval.lm_eval.step import split
from eval.mia.scores import mia_auc
from eval.ou.lm_eval_files import LM_EVAL_FILES, lm_eval_ou
from eval.ou.read import EVAL_FILES, MIA_METRICS
from eval.per_item import log_array
from eval.records import write_json_atomic
from eval.rouge import _scorer
from eval.tofu import metrics as tm
from eval.wmdp.evaluate import harness_results

#: the metrics open-unlearning's default eval suites configure (what its SUMMARY lists)
SUMMARY_METRICS = {
    "tofu": ("forget_quality", "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "model_utility",
             "privleak", "extraction_strength", "exact_memorization", *MIA_METRICS.values()),
    "muse": ("forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE", "privleak",
             "extraction_strength", "exact_memorization", *MIA_METRICS.values()),
}



def _result(per_item: Mapping[str, Any], agg: Any) -> dict[str, Any]:
    return {"agg_value": None if agg is None else float(agg), "value_by_index": dict(per_item)}


def _probs(log: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A ``probability`` result (``prob``, ``avg_loss`` per item; lists for several answers)."""
    loss = log_array(log, key)
    per = {str(i): {"prob": np.exp(-l).tolist(), "avg_loss": l.tolist()} for i, l in enumerate(loss)}
    return _result(per, np.mean(np.exp(-loss).reshape(len(loss), -1).mean(-1)))


def _scores(values: Mapping[str, Any]) -> dict[str, Any]:
    per = {k: {"score": float(v)} for k, v in values.items()}
    return _result(per, np.mean([p["score"] for p in per.values()]))


def _rouge(log: Mapping[str, Any], texts_key: str = "generated_text") -> dict[str, Any]:
    """A ``rouge`` result: rouge1 recall, rougeL F1 and recall (stemmer) with input, ground truth
    and generation, from the stored [prompt, generation, ground truth] triples."""
    scorer = _scorer(True, ("rouge1", "rougeL"))
    per = {}
    for k in sorted(log[texts_key], key=int):
        prompt, gen, gt = log[texts_key][k]
        s = scorer.score(gt, gen)
        per[k] = {"rouge1_recall": s["rouge1"].recall, "rougeL_f1": s["rougeL"].fmeasure,
                  "rougeL_recall": s["rougeL"].recall, "input": prompt, "ground_truth": gt, "generation": gen}
    return per


def _mia(forget: Mapping[str, Any], holdout: Mapping[str, Any]) -> dict[str, Any]:
    """An attack's result: per-item scores and the AUC in its orientation (from the scores, so
    whichever convention the summary uses)."""
    auc = mia_auc(log_array({"s": forget}, "s"), log_array({"s": holdout}, "s"), "ou")
    return {"forget": _scores(forget), "holdout": _scores(holdout), "auc": auc, "agg_value": auc}


def tofu_ou_eval(logs: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, Any]:
    """One model's TOFU logs (our per-sample schema) and summary as open-unlearning's TOFU_EVAL.json."""
    out: dict[str, Any] = {}
    for t, log in logs.items():
        out[f"{t}_Q_A_Prob"] = _probs(log, "avg_gt_loss")
        out[f"{t}_Q_A_PERT_Prob"] = _probs(log, "average_perturb_loss")
        if t in ("forget", "retain"):
            out[f"{t}_Q_A_PARA_Prob"] = _probs(log, "avg_paraphrased_loss")
        else:
            _, norm = tm.normalized_probability(log_array(log, "avg_gt_loss"), log_array(log, "average_perturb_loss"),
                                                eps=OU_EPS)
            out[f"{t}_Q_A_Prob_normalised"] = _result({str(i): {"prob": float(p)} for i, p in enumerate(norm)},
                                                      summary.get(f"{t}_prob", float(norm.mean())))
        R = tm.truth_ratio(log_array(log, "avg_paraphrased_loss"), log_array(log, "average_perturb_loss"),
                           "open_unlearning")
        name = "forget_truth_ratio" if t == "forget" else f"{t}_Truth_Ratio"
        out[name] = _result({str(i): {"score": float(r)} for i, r in enumerate(R)}, summary.get(f"{t}_truth_ratio"))
        if "generated_text" in log:
            out[f"{t}_Q_A_ROUGE"] = _result(_rouge(log), summary.get(f"{t}_rouge"))
    forget = logs.get("forget", {})
    for key in ("exact_memorization", "extraction_strength"):
        if key in forget:
            out[key] = _scores(forget[key])
    for a, m in MIA_METRICS.items():
        if f"mia_{a}" in forget:
            out[m] = _mia(forget[f"mia_{a}"], forget[f"mia_holdout_{a}"])
    for key in ("model_utility", "forget_quality", "privleak"):
        if key in summary:
            out[key] = {"agg_value": summary[key]}
    return out


def muse_ou_eval(logs: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """One model's MUSE logs and summary as open-unlearning's MUSE_EVAL.json (ROUGE as fractions)."""
    out: dict[str, Any] = {}
    for ours, theirs in (("verbmem", "forget_verbmem_ROUGE"), ("knowmem_forget", "forget_knowmem_ROUGE"),
                         ("knowmem_retain", "retain_knowmem_ROUGE")):
        if ours in logs:
            per = _rouge(logs[ours])
            for k, v in logs[ours]["rougeL_f1"].items():  # our scoring (MUSE's or OU's rule) is the value
                per[k]["rougeL_f1"] = float(v)
            out[theirs] = _result(per, np.mean([p["rougeL_f1"] for p in per.values()]))
    priv = logs["privleak"]
    for a, m in MIA_METRICS.items():
        if a in priv["forget"]:
            out[m] = _mia(priv["forget"][a], priv["holdout"][a])
    if summary.get("privleak") is not None:
        out["privleak"] = {"agg_value": summary["privleak"]}
    return out


def write_ou_logs(folder: str | Path, benchmark: str, logs: Mapping[str, Any], summary: Mapping[str, Any]) -> Path | None:
    """One model's logs and summary written as open-unlearning's files: its benchmark's eval and
    summary files (TOFU, MUSE) and, for lm-eval's results (``eval.lm_eval``'s tasks; WMDP's question
    sets, which open-unlearning scores with lm-eval), ``LMEval_EVAL.json`` / ``LMEval_SUMMARY.json``
    (:mod:`eval.ou.lm_eval_files`). Returns the benchmark's eval file (WMDP: ``LMEval_EVAL.json``)."""
    own, harness = split(logs)
    written = None
    if benchmark in CONVERT:
        written = write_ou_eval(folder, benchmark, CONVERT[benchmark](own, summary))
    results = {**(HARNESS_RESULTS[benchmark](own) if benchmark in HARNESS_RESULTS else {}), **(harness or {})}
    if results:
        evals, lm_summary = lm_eval_ou(results)
        write_json_atomic(Path(folder) / LM_EVAL_FILES["summary"], dict(sorted(lm_summary.items())))
        written = written or Path(folder) / LM_EVAL_FILES["eval"]
        write_json_atomic(Path(folder) / LM_EVAL_FILES["eval"], evals)
    return written


def write_ou_eval(folder: str | Path, benchmark: str, ou: Mapping[str, Any]) -> Path:
    """``<folder>/<NAME>_EVAL.json`` (sorted by metric, as open-unlearning saves) and ``_SUMMARY.json``."""
    folder = Path(folder)
    name = EVAL_FILES[benchmark]
    write_json_atomic(folder / name, dict(sorted(ou.items())))
    summary = {m: ou[m]["agg_value"] for m in SUMMARY_METRICS[benchmark] if m in ou}
    write_json_atomic(folder / name.replace("_EVAL", "_SUMMARY"), dict(sorted(summary.items())))
    return folder / name


CONVERT = {"tofu": tofu_ou_eval, "muse": muse_ou_eval}  # benchmark -> its open-unlearning eval file
HARNESS_RESULTS = {"wmdp": harness_results}  # benchmark -> its own logs scored as lm-eval tasks

__all__ = ["SUMMARY_METRICS", "tofu_ou_eval", "muse_ou_eval", "write_ou_logs", "write_ou_eval"]
