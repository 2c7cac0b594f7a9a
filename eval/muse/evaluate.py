"""MUSE evaluation of one model, exact to MUSE's ``eval.py`` + ``metrics/*.py`` (METRICS.md §2).

* ``verbmem``: greedy continuation (``verbmem.max_new_tokens`` = 128 new tokens) of each
  ``verbmem/forget`` prompt, ROUGE-L F1 against the gt cut to its first 127 tokens (128 with BOS);
* ``knowmem_forget`` / ``knowmem_retain``: greedy answer (32 new tokens, cut at MUSE's stop
  strings) after the in-context prompt built from ``*_qa_icl``, ROUGE-L F1 against the answer;
* ``privleak``: the MIA suite (:mod:`eval.mia`) on the ``privleak`` forget / holdout / retain texts,
  every attack from ONE teacher-forced pass over the unique texts (each encoded as MUSE's
  ``compute_ppl`` does: BOS + text, no EOS, every text token scored); ``eval.mia.extra_attacks``
  adds ``gradnorm`` / ``reference`` (:mod:`eval.mia.extra`) on the forget and holdout texts.

Logs keep every per-example value (generations, ROUGE, attack scores) in TOFU's ``{"0": v0, ...}``
layout; :func:`summarize` derives every aggregate from them: ``verbmem_f``, ``knowmem_f``,
``knowmem_r`` (x100, as MUSE reports them), the AUC of each attack (MUSE's orientation) and
PrivLeak = (AUC - AUC_ref) / AUC_ref x 100 against :func:`privleak_reference`.

``rouge`` picks the scoring: ``muse`` (F1, no stemmer, VerbMem gt cut to 127 tokens) or ``ou``
(open-unlearning: F1 with the stemmer, the whole gt). ``compat=open_unlearning``
(:mod:`eval.compat`) also takes open-unlearning's ground truths decoded from the tokens (VerbMem:
at most 2048 tokens of ``prompt + " " + gt``; KnowMem: the 512-token prompt cut, as the
generation's), its fractions instead of x100, its AUC orientation and its PrivLeak guard and
fallback reference.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from eval.muse import metrics as mm
from eval.compat import (OU_KNOWMEM_MAX_LENGTH, OU_MUSE_MAX_LENGTH, OU_PRIVLEAK_REF, is_ou, ou_ground_truth,
                         ou_scored_text)
from eval.generation import greedy_generate
from eval.likelihood import score
from eval.mia.attacks import ATTACKS, MiaSettings, group_scores, mia_aucs, privleak_score
from eval.mia.extra import extra_scores
from eval.per_item import indexed
from unlearn.data import encode_text

EVAL_VERSION = 2  # part of the cached reference evals' key: bump when what is computed changes
ROUGE_VARIANTS = {"muse": {"stemmer": False, "cut_gt": True}, "ou": {"stemmer": True, "cut_gt": False}}
PRIVLEAK_GROUPS = ("forget", "holdout", "retain")  # retain: MUSE scores it too; here its mean loss is a utility probe
EXTRA_GROUPS = ("forget", "holdout")  # where eval.mia.extra_attacks (gradnorm, reference) are scored
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
    feats = [encode_text(tok, t, max_length) for t in slot]
    s = score(model, feats, int(cfg["batch_size"]), tok.pad_token_id, tokens=True)
    settings = MiaSettings.from_cfg(mia)
    # what the zlib attack compresses: the text (MUSE); open-unlearning: its scored tokens decoded
    # (cut at its max_length)
    zt = [ou_scored_text(tok, f) for f in feats] if is_ou(cfg) else list(slot)
    out: dict[str, Any] = {}
    for g, texts in groups.items():
        out[g] = {a: indexed(v) for a, v in group_scores(s, [(slot[t], zt[slot[t]]) for t in texts], settings).items()}
        out[g]["num_tokens"] = indexed(s.counts[[slot[t] for t in texts]])
    # the opt-in attacks on what their AUC needs only: forget and holdout (not the retain probe)
    both = [slot[t] for g in EXTRA_GROUPS for t in groups[g]]
    extra = extra_scores(model, prepared, [feats[i] for i in both], s.per_token[both], settings, int(cfg["batch_size"]))
    start = 0
    for g in EXTRA_GROUPS:
        n = len(groups[g])
        out[g].update({a: indexed(v[start : start + n]) for a, v in extra.items()})
        start += n
    return out


def verbmem_log(model, prepared, cfg) -> dict[str, Any]:
    tok, rows = prepared.tokenizer, prepared.data.rows("verbmem", "forget")
    n, variant, ou = int(cfg["verbmem"]["max_new_tokens"]), _rouge(cfg), is_ou(cfg)
    prompts = list(rows["prompt"])
    gens = greedy_generate(model, tok, prompts, batch_size=int(cfg["verbmem"]["batch_size"]), mode="new_tokens",
                           max_new_tokens=n, clean_up=ou or None)
    if ou:  # open-unlearning: the continuation's tokens in prompt + " " + gt, decoded
        gts = []
        for p, gt in zip(prompts, rows["gt"]):
            pre = tok(p, add_special_tokens=True)["input_ids"]
            full = tok(p + " " + gt, add_special_tokens=True)["input_ids"][: len(pre) + OU_MUSE_MAX_LENGTH]
            gts.append(ou_ground_truth(tok, full[len(pre):], pre))
        gens = [g.strip() for g in gens]
    else:  # MUSE cuts the BOS-encoded gt at max_new_tokens (so 127 gt tokens); open-unlearning keeps it whole
        gts = [mm.truncate_gt_tokens(tok, gt, n) if variant["cut_gt"] else gt for gt in rows["gt"]]
    _, per_item = mm.verbmem_score(gts, gens, stemmer=variant["stemmer"])
    return {"generated_text": indexed([[p, g, gt] for p, g, gt in zip(prompts, gens, gts)]),
            "rougeL_f1": indexed(per_item)}


def knowmem_log(model, prepared, cfg, side: str) -> dict[str, Any]:
    data, kcfg, tok, ou = prepared.data, cfg["knowmem"], prepared.tokenizer, is_ou(cfg)
    icl, rows = list(data.rows("knowmem", f"{side}_qa_icl")), data.rows("knowmem", f"{side}_qa")
    stops = tuple(kcfg["stop_strings"])
    prompts = [mm.knowmem_prompt(icl, q) for q in rows["question"]]
    answers = list(rows["answer"])
    if ou:  # the prompt cut at 512 tokens; the reference decoded from prompt + answer (+ EOS)
        cut = dict(add_special_tokens=True, truncation=True, max_length=OU_KNOWMEM_MAX_LENGTH)
        inputs = [tok(p, **cut)["input_ids"] for p in prompts]
        answers = [ou_ground_truth(tok, tok(p + a, **cut)["input_ids"] + [tok.eos_token_id], ids)
                   for p, a, ids in zip(prompts, answers, inputs)]
    gens = greedy_generate(model, tok, inputs if ou else prompts, batch_size=int(kcfg["batch_size"]),
                           mode="new_tokens", max_new_tokens=int(kcfg["max_new_tokens"]), stop_strings=stops,
                           clean_up=ou or None)
    gens = [g.strip() for g in gens] if ou else gens
    _, per_item = mm.knowmem_score(answers, gens, stops=stops, stemmer=_rouge(cfg)["stemmer"])
    # the prompt generation started from (open-unlearning's log: decoded from its cut ids)
    shown = [tok.decode(i, skip_special_tokens=True, clean_up_tokenization_spaces=True) for i in inputs] if ou else prompts
    return {"generated_text": indexed([[p, g, a] for p, g, a in zip(shown, gens, answers)]),
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
        if retrain_logs is None and is_ou(cfg):  # its privleak.yaml falls back to ref_value
            return None, f"open-unlearning's ref_value {OU_PRIVLEAK_REF} (no retain model logs)"
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


def retain_logs_reference(path: str, cfg: Mapping[str, Any]):
    """(attack -> reference AUC, description) from published retain-model logs: open-unlearning's
    ``MUSE_EVAL.json`` (its ``mia_*`` AUCs, turned to MUSE's orientation) or one of our runs (the
    retain model's ``privleak`` log)."""
    import json
    from pathlib import Path

    from eval.ou.read import load_ou_eval, ou_eval_file, ou_mia_aucs

    attack = str(cfg["privleak_attack"])
    if ou_eval_file(path) is not None:
        aucs = ou_mia_aucs(load_ou_eval(path))
    else:
        record = Path(path) / "record.json" if Path(path).is_dir() else Path(path)
        if not record.is_file():
            raise FileNotFoundError(f"eval.retain_logs={path}: neither open-unlearning's MUSE_EVAL.json nor a run record")
        retain = (json.loads(record.read_text()).get("metrics") or {}).get("retain")
        if not retain:
            raise ValueError(f"eval.retain_logs={path}: the run has no retain model logs")
        aucs = mia_aucs(retain["logs"]["privleak"]["forget"], retain["logs"]["privleak"]["holdout"])
    if attack not in aucs:
        raise ValueError(f"eval.retain_logs={path}: no {attack!r} AUC (eval.privleak_attack); present: {', '.join(aucs)}")
    return aucs, f"retain logs {path}: AUC forget/holdout {attack} = {aucs[attack]:.4f} (MUSE's orientation)"


def _mean(per_item: Mapping[str, Any]) -> float:
    return float(np.mean([per_item[k] for k in per_item]))


def summarize(logs: Mapping[str, Any], reference: Mapping[str, float] | None, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """MUSE's numbers of one model, all from the per-example logs (and the reference AUCs);
    open-unlearning's (fractions, its AUC orientation and PrivLeak) under ``compat``."""
    ou = is_ou(cfg)
    scale = 1.0 if ou else mm.MUSE_SCALE
    out: dict[str, Any] = {}
    for key, name in (("verbmem_f", "verbmem"), ("knowmem_f", "knowmem_forget"), ("knowmem_r", "knowmem_retain")):
        if name in logs:
            out[key] = scale * _mean(logs[name]["rougeL_f1"])
    priv = logs["privleak"]
    aucs = mia_aucs(priv["forget"], priv["holdout"])
    attack = str(cfg["privleak_attack"])
    if ou:
        out.update({f"mia_auc_{a}": 1.0 - v for a, v in aucs.items()})
        ref = (reference or {}).get(attack, 1.0 - OU_PRIVLEAK_REF)
        out["privleak_reference_auc"] = 1.0 - ref  # its orientation, as the AUCs
        out["privleak"] = privleak_score(aucs[attack], ref, open_unlearning=True)
    else:
        out.update({f"mia_auc_{a}": v for a, v in aucs.items()})
    out["mia_auc"] = out[f"mia_auc_{attack}"]
    if reference is not None and not ou:
        out["privleak_reference_auc"] = reference[attack]
        out["privleak"] = privleak_score(aucs[attack], reference[attack])
        out.update({f"privleak_{a}": privleak_score(aucs[a], ref) for a, ref in reference.items() if a in aucs})
    for g in PRIVLEAK_GROUPS:  # mean token NLL: the LOSS attack's score
        out[f"loss_{g}"] = _mean(priv[g]["loss"])
    out["n_items"] = {**{name: len(log["rougeL_f1"]) for name, log in logs.items() if name != "privleak"},
                      **{f"privleak_{g}": len(priv[g]["loss"]) for g in PRIVLEAK_GROUPS}}
    return out
