"""MUSE evaluation of one model, exact to MUSE's ``eval.py`` + ``metrics/*.py`` (METRICS.md §2).

* ``verbmem``: greedy continuation (``verbmem.max_new_tokens`` = 128 new tokens) of each
  ``verbmem/forget`` prompt, ROUGE-L F1 against the gt cut to its first 127 tokens (128 with BOS);
* ``knowmem_forget`` / ``knowmem_retain``: greedy answer (32 new tokens, cut at MUSE's stop
  strings) after the in-context prompt built from ``*_qa_icl``, ROUGE-L F1 against the answer;
* ``privleak``: the MIA suite (:mod:`eval.mia`) on the ``privleak`` forget / holdout / retain texts,
  every attack from ONE teacher-forced pass over the unique texts (each encoded as MUSE's
  ``compute_ppl`` does: BOS + text, no EOS, every text token scored).

Logs keep every per-example value (generations, ROUGE, attack scores) in TOFU's ``{"0": v0, ...}``
layout; :func:`summarize` derives every aggregate from them: ``verbmem_f``, ``knowmem_f``,
``knowmem_r`` (x100, as MUSE reports them), the AUC of each attack (MUSE's orientation) and
PrivLeak = (AUC - AUC_ref) / AUC_ref x 100 against :func:`privleak_reference`.

``rouge`` picks the scoring: ``muse`` (F1, no stemmer, VerbMem gt cut to 127 tokens) or ``ou``
(open-unlearning: F1 with the stemmer, the whole gt).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from eval import muse_metrics as mm
from eval.generation import greedy_generate
from eval.likelihood import score
from eval.mia import ATTACKS, MiaSettings, group_scores, mia_aucs
from eval.tofu_eval import indexed
from unlearn.data import encode_text

EVAL_VERSION = 1  # part of the cached reference evals' key: bump when what is computed changes
ROUGE_VARIANTS = {"muse": {"stemmer": False, "cut_gt": True}, "ou": {"stemmer": True, "cut_gt": False}}
PRIVLEAK_GROUPS = ("forget", "holdout", "retain")  # retain: MUSE scores it too; here its mean loss is a utility probe
REFERENCES = ("retrain", "constant")
NO_TRUNCATION = 1 << 30  # MUSE scores whole texts (compute_ppl does not truncate)


def _rouge(cfg: Mapping[str, Any]) -> dict[str, bool]:
    name = str(cfg.get("rouge", "muse"))
    if name not in ROUGE_VARIANTS:
        raise ValueError(f"unknown eval.rouge {name!r}; valid: {', '.join(ROUGE_VARIANTS)}")
    return ROUGE_VARIANTS[name]


def evaluate_muse(model: torch.nn.Module, prepared, cfg: Mapping[str, Any], *, generate: bool = True) -> dict[str, Any]:
    """Per-example logs: ``privleak`` always (one scoring pass), ``verbmem`` / ``knowmem_*`` when
    ``generate`` (the trajectory subset skips generation unless asked)."""
    logs = {"privleak": privleak_log(model, prepared, cfg)}
    if generate:
        logs["verbmem"] = verbmem_log(model, prepared, cfg)
        for side in ("forget", "retain"):
            logs[f"knowmem_{side}"] = knowmem_log(model, prepared, cfg, side)
    return logs


def privleak_log(model, prepared, cfg) -> dict[str, Any]:
    """Per-text attack scores of each privleak group, from one pass over the unique texts."""
    data, tok = prepared.data, prepared.tokenizer
    groups = {g: list(data.rows("privleak", g)["text"]) for g in PRIVLEAK_GROUPS}
    slot: dict[str, int] = {}
    for texts in groups.values():
        for t in texts:
            slot.setdefault(t, len(slot))
    mia = cfg["mia"]
    max_length = int(mia.get("max_length") or NO_TRUNCATION)
    s = score(model, [encode_text(tok, t, max_length) for t in slot], int(cfg["batch_size"]), tok.pad_token_id,
              tokens=True)
    settings = MiaSettings.from_cfg(mia)
    out: dict[str, Any] = {}
    for g, texts in groups.items():
        out[g] = {a: indexed(v) for a, v in group_scores(s, [(slot[t], t) for t in texts], settings).items()}
        out[g]["num_tokens"] = indexed(s.counts[[slot[t] for t in texts]])
    return out


def verbmem_log(model, prepared, cfg) -> dict[str, Any]:
    tok, rows = prepared.tokenizer, prepared.data.rows("verbmem", "forget")
    n, variant = int(cfg["verbmem"]["max_new_tokens"]), _rouge(cfg)
    prompts = list(rows["prompt"])
    gens = greedy_generate(model, tok, prompts, batch_size=int(cfg["verbmem"]["batch_size"]), mode="new_tokens",
                           max_new_tokens=n)
    # MUSE cuts the BOS-encoded gt at max_new_tokens (so 127 gt tokens); open-unlearning keeps it whole
    gts = [mm.truncate_gt_tokens(tok, gt, n) if variant["cut_gt"] else gt for gt in rows["gt"]]
    _, per_item = mm.verbmem_score(gts, gens, stemmer=variant["stemmer"])
    return {"generated_text": indexed([[p, g, gt] for p, g, gt in zip(prompts, gens, gts)]),
            "rougeL_f1": indexed(per_item)}


def knowmem_log(model, prepared, cfg, side: str) -> dict[str, Any]:
    data, kcfg = prepared.data, cfg["knowmem"]
    icl, rows = list(data.rows("knowmem", f"{side}_qa_icl")), data.rows("knowmem", f"{side}_qa")
    stops = tuple(kcfg["stop_strings"])
    gens = greedy_generate(model, prepared.tokenizer, [mm.knowmem_prompt(icl, q) for q in rows["question"]],
                           batch_size=int(kcfg["batch_size"]), mode="new_tokens",
                           max_new_tokens=int(kcfg["max_new_tokens"]), stop_strings=stops)
    answers = list(rows["answer"])
    _, per_item = mm.knowmem_score(answers, gens, stops=stops, stemmer=_rouge(cfg)["stemmer"])
    return {"generated_text": indexed([[q, g, a] for q, g, a in zip(rows["question"], gens, answers)]),
            "rougeL_f1": indexed(per_item)}


def privleak_reference(retrain_logs: Mapping[str, Any] | None, cfg: Mapping[str, Any], corpus: str):
    """(attack -> reference AUC, description for the record).

    ``retrain`` (default): the AUCs measured on the retrain model's own ``privleak`` log (cached
    with its eval), as open-unlearning's ``retain_logs_path``. ``constant``: MUSE's published
    retrain AUC (``constants.py``), which exists for Min-40% in MUSE's convention only.
    """
    kind, attack = str(cfg["privleak_reference"]), str(cfg["privleak_attack"])
    if attack not in ATTACKS:
        raise ValueError(f"unknown eval.privleak_attack {attack!r}; valid: {', '.join(ATTACKS)}")
    if kind == "retrain":
        if retrain_logs is None:
            raise ValueError("eval.privleak_reference=retrain needs the retrain model (model.retain); "
                             "or use eval.privleak_reference=constant (MUSE's published AUC)")
        aucs = mia_aucs(retrain_logs["privleak"]["forget"], retrain_logs["privleak"]["holdout"])
        return aucs, f"retrain model (measured): AUC forget/holdout {attack} = {aucs[attack]:.4f}"
    if kind == "constant":
        settings = MiaSettings.from_cfg(cfg["mia"])
        if attack != "min_k" or settings.k != 0.4 or settings.min_k_variant != "muse":
            raise ValueError("MUSE's constant retrain AUC is that of Min-40% in MUSE's convention: it needs "
                             "eval.privleak_attack=min_k, eval.mia.k=0.4, eval.mia.min_k_variant=muse")
        if corpus not in mm.MUSE_AUC_RETRAIN:
            raise ValueError(f"no MUSE constant for corpus {corpus!r}; valid: {', '.join(mm.MUSE_AUC_RETRAIN)}")
        auc = mm.MUSE_AUC_RETRAIN[corpus]
        return {"min_k": auc}, f"MUSE constant ({corpus}): retrain AUC forget_holdout_Min-40% = {auc}"
    raise ValueError(f"unknown eval.privleak_reference {kind!r}; valid: {', '.join(REFERENCES)}")


def _privleak(auc: float, reference: float) -> float:
    # MUSE's ratio is undefined against a reference AUC of 0 (a measured one can be, on a few
    # texts): NaN (null in the record), not the huge number open-unlearning's +1e-10 would give
    return mm.privleak(auc, reference) if reference > 0 else float("nan")


def _mean(per_item: Mapping[str, Any]) -> float:
    return float(np.mean([per_item[k] for k in per_item]))


def summarize(logs: Mapping[str, Any], reference: Mapping[str, float] | None, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """MUSE's numbers of one model, all from the per-example logs (and the reference AUCs)."""
    out: dict[str, Any] = {}
    for key, name in (("verbmem_f", "verbmem"), ("knowmem_f", "knowmem_forget"), ("knowmem_r", "knowmem_retain")):
        if name in logs:
            out[key] = mm.MUSE_SCALE * _mean(logs[name]["rougeL_f1"])
    priv = logs["privleak"]
    aucs = mia_aucs(priv["forget"], priv["holdout"])
    out.update({f"mia_auc_{a}": v for a, v in aucs.items()})
    attack = str(cfg["privleak_attack"])
    out["mia_auc"] = aucs[attack]
    if reference is not None:
        out["privleak_reference_auc"] = reference[attack]
        out["privleak"] = _privleak(aucs[attack], reference[attack])
        out.update({f"privleak_{a}": _privleak(aucs[a], ref) for a, ref in reference.items()})
    for g in PRIVLEAK_GROUPS:  # mean token NLL: the LOSS attack's score
        out[f"loss_{g}"] = _mean(priv[g]["loss"])
    out["n_items"] = {**{name: len(log["rougeL_f1"]) for name, log in logs.items() if name != "privleak"},
                      **{f"privleak_{g}": len(priv[g]["loss"]) for g in PRIVLEAK_GROUPS}}
    return out
