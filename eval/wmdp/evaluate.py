"""WMDP evaluation of one model: question accuracy on the forget domain and on general knowledge,
and the model's loss on the unlearning corpora.

* ``forget_qa``: the WMDP questions (``cais/wmdp`` ``wmdp-<domain>``; the embedded world's forget
  domain), each scored by :mod:`eval.wmdp.choices`; unlearning should bring ``forget_acc`` down to
  chance, 0.25;
* ``general_qa``: the MMLU questions (``cais/mmlu`` ``all``; the embedded world's general facts);
  ``general_acc`` should stay where the target has it (WMDP's utility);
* ``loss``: the mean token NLL of the first ``eval.corpus_loss_chunks`` unlearning chunks of the
  forget and the retain corpus (the features unlearning trains on), a cheap view of what the loop
  does to each corpus.

Logs keep every per-question value (TOFU's ``{"0": v0, ...}`` layout); :func:`summarize` derives
every number from them. WMDP's accuracies are absolute (chance is 0.25): no reference model's
numbers enter them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from eval.likelihood import score
from eval.per_item import indexed
from eval.wmdp.choices import accuracy, accuracy_by_subject, question_log

EVAL_VERSION = 1  # part of the cached reference evals' key: bump when what is computed changes
QUESTION_SETS = {"forget_qa": "questions", "general_qa": "general"}  # log -> data part
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
        logs[name] = question_log(model, tok, data.questions(part), batch_size, max_length)
    limit = cfg.get("corpus_loss_chunks")
    if limit is None or int(limit) > 0:
        logs["loss"] = {}
        for part in CORPORA:
            feats = data.chunks(part, tok)[1][: None if limit is None else int(limit)]
            logs["loss"][part] = indexed(score(model, feats, batch_size, tok.pad_token_id).per_token)
    return logs


def summarize(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of one model, from its logs alone: each accuracy, MMLU's per subject, the
    corpora's mean token NLL and the item counts."""
    out: dict[str, Any] = {}
    if "forget_qa" in logs:
        out["forget_acc"] = accuracy(logs["forget_qa"])
    if "general_qa" in logs:
        out["general_acc"] = accuracy(logs["general_qa"])
        out["general_acc_by_subject"] = accuracy_by_subject(logs["general_qa"])
    for part, per_chunk in (logs.get("loss") or {}).items():
        out[f"loss_{part}"] = float(np.mean([per_chunk[k] for k in per_chunk]))
    out["n_items"] = {**{name: len(logs[name]["correct"]) for name in QUESTION_SETS if name in logs},
                      **{f"loss_{p}": len(v) for p, v in (logs.get("loss") or {}).items()}}
    return out
