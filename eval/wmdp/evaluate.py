"""WMDP evaluation of one model: question accuracy on the forget domain and on general knowledge,
and the model's loss on the unlearning corpora.

* ``forget_qa``: the WMDP questions (``cais/wmdp`` ``wmdp-<domain>``; the embedded world's forget
  domain); unlearning should bring ``forget_acc`` down to chance, 0.25;
* ``general_qa``: the MMLU questions (``cais/mmlu`` ``all``; the embedded world's general facts);
  ``general_acc`` should stay where the target has it (WMDP's utility);
* ``loss``: the mean token NLL of the first ``eval.corpus_loss_chunks`` unlearning chunks of the
  forget and the retain corpus (the features unlearning trains on), a cheap view of what the loop
  does to each corpus.

Who scores the questions (``eval.questions``): ``harness`` (the default), lm-evaluation-harness
(:mod:`eval.lm_eval`) on the model in hand -- the dataset's questions as local ``cloze`` tasks, or
with ``eval.tasks.forget`` / ``eval.tasks.general`` lm-eval's own tasks by name (``wmdp_bio``,
``mmlu``: its letter prompt, the published numbers); ``scorer``, our own log-likelihood scorer
(:mod:`eval.wmdp.choices`), which gives the harness's numbers on the cloze tasks (tests/test_wmdp_harness.py)
in a fraction of its time. The trajectory's cheap subset always uses the scorer.

Logs keep every per-question value (TOFU's ``{"0": v0, ...}`` layout); :func:`summarize` derives
every number from them. WMDP's accuracies are absolute (chance is 0.25): no reference model's
numbers enter them.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from eval.likelihood import score
from eval.per_item import indexed
from eval.wmdp.choices import accuracy, accuracy_by_subject, accuracy_log, question_log

EVAL_VERSION = 2  # part of the cached reference evals' key: bump when what is computed changes
QUESTION_SETS = {"forget_qa": "questions", "general_qa": "general"}  # log -> data part
TASK_KEYS = {"forget_qa": "forget", "general_qa": "general"}  # log -> its eval.tasks key
SCORERS = ("harness", "scorer")  # eval.questions
CORPORA = ("forget", "retain")


def evaluate_wmdp(model, prepared, cfg: Mapping[str, Any], *, cheap: bool = False) -> dict[str, Any]:
    """Per-example logs; ``cheap`` (the trajectory subset) leaves out the general questions unless
    ``eval.trajectory_general``."""
    data, tok = prepared.data, prepared.tokenizer
    batch_size, max_length = int(cfg["batch_size"]), int(prepared.max_length)
    logs: dict[str, Any] = {}
    for name, part in QUESTION_SETS.items():
        if name == "general_qa" and cheap and not cfg.get("trajectory_general", True):
            continue
        if cheap or cfg.get("questions", "harness") == "scorer":
            logs[name] = question_log(model, tok, data.questions(part), batch_size, max_length)
        else:
            tasks = cfg.get("tasks") or {}
            logs[name] = harness_log(model, tok, tasks.get(TASK_KEYS[name]) or data.questions(part), name, batch_size,
                                     tasks.get("include_path"))
    limit = cfg.get("corpus_loss_chunks")
    if limit is None or int(limit) > 0:
        logs["loss"] = {}
        for part in CORPORA:
            feats = data.chunks(part, tok)[1][: None if limit is None else int(limit)]
            logs["loss"][part] = indexed(score(model, feats, batch_size, tok.pad_token_id).per_token)
    return logs


def harness_log(model, tokenizer, questions: str | list[dict[str, Any]], name: str, batch_size: int,
                include_path: str | None = None) -> dict[str, Any]:
    """One question set scored by lm-evaluation-harness: ``questions`` as a local cloze task (written
    to a temporary file in WMDP's / MMLU's format), or an lm-eval task's name. A local task's log is
    the scorer's layout, from the harness's per-choice log-likelihoods; a named task's keeps the
    harness's results (a group such as ``mmlu``: its aggregate ``acc``) under ``harness``; ``include_path``:
    a folder of task YAMLs searched before lm-eval's own tasks."""
    from eval.lm_eval import local_task, run_tasks  # lm-eval itself is imported by run_tasks

    if isinstance(questions, str):
        results = run_tasks(model, tokenizer, [questions], include_path=include_path, batch_size=batch_size)
        return {"harness": {"task": questions, "acc": results[questions]["metrics"]["acc"], "results": results}}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"{name}.jsonl"
        file.write_text("".join(json.dumps({k: r[k] for k in ("question", "choices", "answer", "subject") if k in r})
                                + "\n" for r in questions))
        results = run_tasks(model, tokenizer, [local_task(f"wmdp_{name}", file, "cloze")], batch_size=batch_size)
    items = results[f"wmdp_{name}"]["items"]
    logliks = np.array([items["loglikelihoods"][str(i)] for i in range(len(questions))])
    return accuracy_log(logliks, questions)


def harness_results(logs: Mapping[str, Any]) -> dict[str, Any]:
    """Both question sets as lm-eval results (:func:`eval.lm_eval.results.task_results`'s layout): a
    named task's own; a question set's under the name of its local task (``wmdp_forget_qa``), its
    ``acc`` and per item the answer, the prediction and the choices' log-likelihoods."""
    out: dict[str, Any] = {}
    for name in QUESTION_SETS:
        log = logs.get(name)
        if log is not None and "harness" in log:
            out.update(log["harness"]["results"])
        elif log is not None:
            items = {"doc_id": {k: int(k) for k in log["correct"]}, "gold": log["answer"], "pred": log["pred"],
                     "loglikelihoods": log["choice_loglik"], "acc": log["correct"]}
            out[f"wmdp_{name}"] = {"metrics": {"acc": accuracy(log)}, "items": items}
    return out


def summarize(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of one model, from its logs alone: each accuracy, MMLU's per subject, the
    corpora's mean token NLL and the item counts."""
    out: dict[str, Any] = {}
    for name, key in (("forget_qa", "forget_acc"), ("general_qa", "general_acc")):
        log = logs.get(name)
        if log is not None:
            out[key] = log["harness"]["acc"] if "harness" in log else accuracy(log)
    if "subject" in logs.get("general_qa", {}):
        out["general_acc_by_subject"] = accuracy_by_subject(logs["general_qa"])
    for part, per_chunk in (logs.get("loss") or {}).items():
        out[f"loss_{part}"] = float(np.mean([per_chunk[k] for k in per_chunk]))
    out["n_items"] = {**{name: len(logs[name]["correct"]) for name in QUESTION_SETS if "correct" in logs.get(name, {})},
                      **{f"loss_{p}": len(v) for p, v in (logs.get("loss") or {}).items()}}
    return out
