"""TOFU evaluation of one model, exact to TOFU's ``evaluate_util.py`` + ``aggregate_eval_stat.py``.

Tasks (METRICS.md §1.1): ``forget`` = the run's ``forgetXX_perturbed``, ``retain`` =
``retain_perturbed``, ``ra`` = ``real_authors_perturbed``, ``wf`` = ``world_facts_perturbed``;
each capped at ``ds_size`` items (TOFU: the first 300; null = all, as open-unlearning).

How it runs: every unique (question, text) of every task -- answers, base answers, all perturbed
answers -- is scored in ONE flattened, length-sorted teacher-forced pass; each task's per-item
log is then written in TOFU's own per-sample schema (``avg_gt_loss``, ``avg_paraphrased_loss``,
``average_perturb_loss``, ``rougeL_recall``, ``generated_text``, ...), so the very same
aggregation code (:func:`eval.tofu.logs.aggregate_tofu_run`) serves our runs and TOFU's published
logs. Greedy generations are batched with a KV cache and stop at EOS.

Membership inference (:mod:`eval.mia`, as open-unlearning's TOFU ``mia_*`` metrics): the forget
answers against the answers of never-trained holdout authors (``holdoutXX``, as many items as
``forgetXX``), every attack from the same pass. A task log must stay one TOFU per-sample log (every
metric keyed by the same item indices: :func:`eval.tofu.logs.validate_tofu_log`), so the forget log
holds ``mia_<attack>`` (forget item i) and ``mia_holdout_<attack>`` (holdout item i) per index;
``eval.mia.extra_attacks`` adds ``gradnorm`` / ``reference`` (:mod:`eval.mia.extra`) the same way.
Scored answers end with the appended EOS, which open-unlearning's Min-k drops: its ``ou`` Min-k
variant is the default (``eval.mia`` overrides :class:`eval.mia.attacks.MiaSettings`). Without a usable
holdout split (``holdoutXX`` missing or smaller than the forget set), or when answers truncated at
``max_length`` keep too few scored tokens, the MIA is skipped and the summary says so.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from eval.tofu import metrics as tm
from eval.compat import OU_PRIVLEAK_REF, OU_TOFU_MAX_LENGTH, is_ou, ou_ground_truths, ou_scored_texts
from eval.generation import greedy_generate
from eval.likelihood import score
from eval.mia.attacks import ATTACKS, EXTRA_ATTACKS, MiaSettings, group_scores, mia_aucs, privleak_score
from eval.mia.extra import extra_scores
from eval.per_item import indexed, log_array
from eval.rouge import rouge_l_batch
from eval.tofu.logs import per_item_truth_ratios

logger = logging.getLogger(__name__)

EVAL_VERSION = 7  # part of the cached reference evals' key: bump when what is computed changes
TASKS = ("forget", "retain", "ra", "wf")
# task -> (TOFU file name pattern, the truth ratio's base answer key)  (TOFU eval_everything.yaml)
TASK_SOURCES = {
    "forget": ("{split}_perturbed", "paraphrased_answer"),
    "retain": ("retain_perturbed", "paraphrased_answer"),
    "ra": ("real_authors_perturbed", "answer"),
    "wf": ("world_facts_perturbed", "answer"),
}


def _capped(rows, ds_size: int | None):
    n = len(rows) if ds_size is None else min(int(ds_size), len(rows))
    return rows.select(range(n))


def task_rows(prepared, task: str, ds_size: int | None):
    return _capped(prepared.data.rows(TASK_SOURCES[task][0].format(split=prepared.data.split)), ds_size)


def holdout_rows(prepared, n_forget: int):
    """The first ``n_forget`` rows of ``holdoutXX`` (open-unlearning: forget and holdout sets of one
    size), or None when the dataset has no such split or a smaller one (logged)."""
    name = "holdout" + prepared.data.split[len("forget"):]
    try:
        rows = prepared.data.rows(name)
    except (OSError, ValueError) as e:  # a local folder / Hub repository without it (or offline)
        logger.warning("TOFU MIA skipped: %s", e)
        return None
    if len(rows) < n_forget:
        logger.warning("TOFU MIA skipped: %s has %d items, the forget set %d", name, len(rows), n_forget)
        return None
    return rows.select(range(n_forget))


def answer_hits(correct: Sequence[np.ndarray], features: Sequence[dict], eos_id: int) -> list[np.ndarray]:
    """Per item, argmax == token over the answer's own tokens: a final EOS -- TOFU's appended one,
    or a chat template's end of turn -- is left out, as open-unlearning (where exact memorization
    and extraction strength come from) drops the EOS prediction. A text truncated at
    ``max_length`` ends without EOS and keeps every scored token."""
    return [c[:-1] if len(c) and f["labels"][-1] == eos_id else c for c, f in zip(correct, features, strict=True)]


def exact_memorization(correct: Sequence[np.ndarray]) -> np.ndarray:
    """open-unlearning ``exact_memorization``: fraction of answer tokens that are the argmax."""
    return np.array([c.mean() if len(c) else 0.0 for c in correct])


def extraction_strength(correct: Sequence[np.ndarray]) -> np.ndarray:
    """open-unlearning ``extraction_strength``: 1 - k/|y| for the smallest k from which every
    argmax prediction matches (teacher-forced). Like the reference loop, k stops at |y| - 1 when
    not even the last token matches, giving 1/|y|."""
    out = []
    for c in correct:
        n = len(c)
        k = 0
        for k in range(n):
            if c[k:].all():
                break
        out.append(1.0 - k / n if n else 0.0)
    return np.array(out)


def eval_features(prepared, cfg: Mapping[str, Any], pairs: Sequence[tuple[str, str]]) -> list[dict]:
    """The scored QA texts of (question, answer) pairs, tokenized in one batch: TOFU's mask and
    length, or open-unlearning's (``eval.compat``: the prompt tokenized alone, 512 tokens, EOS always)."""
    ou = is_ou(cfg)
    return prepared.features([{"question": q, "answer": a} for q, a in pairs], rule="open_unlearning" if ou else "tofu",
                             max_length=OU_TOFU_MAX_LENGTH if ou else None)


def _plan(rows: Mapping[str, Any], holdout) -> tuple[list[tuple[str, str]], dict[str, list], list[int]]:
    """Every unique (question, text) of every task, scored once: (the texts, per task and item the
    indices of its answer, base answer and perturbed answers, the holdout answers' indices)."""
    slot: dict[tuple[str, str], int] = {}
    texts: list[tuple[str, str]] = []

    def need(q: str, a: str) -> int:
        if (q, a) not in slot:
            slot[(q, a)] = len(texts)
            texts.append((q, a))
        return slot[(q, a)]

    plan = {}
    for t, rs in rows.items():
        base_key = TASK_SOURCES[t][1]
        plan[t] = [(need(r["question"], r["answer"]), need(r["question"], r[base_key]),
                    [need(r["question"], p) for p in r["perturbed_answer"]]) for r in rs]
    held = [need(r["question"], r["answer"]) for r in holdout] if holdout is not None else []
    return texts, plan, held


def evaluate_tofu(
    model: torch.nn.Module,
    prepared,
    cfg: Mapping[str, Any],
    *,
    tasks: Sequence[str] = TASKS,
    generate: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per-task logs in TOFU's per-sample schema (plus ``exact_memorization`` and
    ``extraction_strength`` and the MIA scores on the forget task)."""
    rows = {t: task_rows(prepared, t, cfg.get("ds_size")) for t in tasks}
    holdout = holdout_rows(prepared, len(rows["forget"])) if "forget" in tasks else None
    texts, plan, held = _plan(rows, holdout)
    feats = eval_features(prepared, cfg, texts)
    # per-token arrays only where they are read: the forget answers (EM, ES, MIA) and the holdout's
    tokens = [p[0] for p in plan["forget"]] + held if "forget" in tasks else False
    s = score(model, feats, int(cfg["batch_size"]), prepared.tokenizer.pad_token_id, tokens=tokens, share_prefixes=True)
    logs = {t: _task_log(t, plan[t], s) for t in tasks}
    if "forget" in tasks:
        ans = [p[0] for p in plan["forget"]]
        log = logs["forget"]
        correct = answer_hits([s.correct[i] for i in ans], [feats[i] for i in ans], prepared.tokenizer.eos_token_id)
        log["exact_memorization"] = indexed(exact_memorization(correct))
        log["extraction_strength"] = indexed(extraction_strength(correct))
        if held:
            both = ans + held
            zt = dict(zip(both, scored_texts(prepared, cfg, [feats[i] for i in both], [texts[i][1] for i in both])))
            log.update(_mia_scores(s, zt, ans, held, cfg, model, prepared, feats))
    if generate:
        _add_generations(model, prepared, cfg, rows, logs, {t: [feats[p[0]] for p in plan[t]] for t in tasks})
    return logs


def _task_log(t: str, plan: Sequence[tuple[int, int, list[int]]], s) -> dict[str, Any]:
    """One task's per-sample log from the pass's scores."""
    per_token = s.per_token
    ans = np.array([p[0] for p in plan], dtype=np.int64)
    base = np.array([p[1] for p in plan], dtype=np.int64)
    k = {len(p[2]) for p in plan}
    if len(k) > 1:
        raise ValueError(f"TOFU task {t}: items have different numbers of perturbed answers {sorted(k)}")
    pert = np.array([p[2] for p in plan], dtype=np.int64).reshape(len(plan), -1)
    return {
        "avg_gt_loss": indexed(per_token[ans]), "gt_loss": indexed(s.sums[ans]),
        "num_token_gt": indexed(s.counts[ans]),
        "avg_paraphrased_loss": indexed(per_token[base]), "paraphrased_loss": indexed(s.sums[base]),
        "num_token_paraphrased": indexed(s.counts[base]),
        "average_perturb_loss": indexed(per_token[pert]), "perturb_loss": indexed(s.sums[pert]),
        "num_token_perturb": indexed(s.counts[pert]),
        "truth_ratio": indexed(np.exp(per_token[base] - per_token[pert].mean(-1))),
    }


def _mia_scores(s, texts: Mapping[int, str], ans, held, cfg, model=None, prepared=None, feats=None) -> dict[str, Any]:
    """Every attack's per-item scores of the forget and holdout answers (``texts``: what the zlib
    attack compresses, per scored item), the enabled extra attacks (:mod:`eval.mia.extra`) too;
    none (logged) when an answer has too few scored tokens for an attack (truncated away at
    ``max_length``)."""
    settings = MiaSettings.from_cfg(cfg.get("mia"), min_k_variant="ou")
    both = [int(i) for i in ans] + [int(i) for i in held]
    extra = (extra_scores(model, prepared, [feats[i] for i in both], s.per_token[both], settings, int(cfg["batch_size"]))
             if settings.extra_attacks else {})
    out = {}
    for group, idx, part in (("", ans, slice(0, len(ans))), ("holdout_", held, slice(len(ans), None))):
        scores = {**group_scores(s, [(i, texts[i]) for i in idx], settings), **{a: v[part] for a, v in extra.items()}}
        for attack, v in scores.items():
            if not np.isfinite(v).all():
                logger.warning("TOFU MIA skipped: %d %s answers have too few scored tokens for %s (max_length)",
                               int((~np.isfinite(v)).sum()), group.rstrip("_") or "forget", attack)
                return {}
            out[f"mia_{group}{attack}"] = indexed(v)
    return out


def scored_texts(prepared, cfg: Mapping[str, Any], features: Sequence[dict], answers: Sequence[str]) -> list[str]:
    """What the zlib attack compresses, per scored item: the answer (open-unlearning: the
    feature's scored tokens decoded, which its mask may have cut)."""
    return ou_scored_texts(prepared.tokenizer, features) if is_ou(cfg) else list(answers)


def generation_items(prepared, cfg: Mapping[str, Any], rows,
                     answer_features: Sequence[dict] | None = None) -> tuple[list[str], list[list[int]], list[str]]:
    """Per row: the generation prompt, its token ids and the ROUGE reference (TOFU: the answer
    string; open-unlearning: decoded from the scored answer's tokens, ``answer_features`` when
    the caller has them)."""
    tok, answer_tag = prepared.tokenizer, bool(cfg["generation"].get("prompt_answer_tag"))
    prompts = prepared.template.generation_prompts(tok, [r["question"] for r in rows], answer_tag)
    if is_ou(cfg):
        if answer_features is None:
            answer_features = eval_features(prepared, cfg, [(r["question"], r["answer"]) for r in rows])
        gts = ou_ground_truths(tok, [f["input_ids"] for f in answer_features], [ids for _, ids in prompts])
    else:
        gts = [r["answer"] for r in rows]
    return [text for text, _ in prompts], [ids for _, ids in prompts], gts


def _add_generations(model, prepared, cfg, rows, logs, answer_features) -> None:
    gen_cfg, ou = cfg["generation"], is_ou(cfg)
    prompts, prompt_ids, owners = [], [], []
    for t, rs in rows.items():
        p, ids, gts = generation_items(prepared, cfg, rs, answer_features[t])
        prompts += p
        prompt_ids += ids
        owners += [(t, i, gt) for i, gt in enumerate(gts)]
    gens = greedy_generate(
        model, prepared.tokenizer, prompt_ids, batch_size=int(gen_cfg["batch_size"]), mode=str(gen_cfg["mode"]),
        max_new_tokens=int(gen_cfg["max_new_tokens"]), max_length=int(gen_cfg["max_length"]),
        clean_up=ou or None,  # TOFU: the tokenizer's own decoding; open-unlearning: clean_up_tokenization_spaces
    )
    gens = [g.strip() for g in gens] if ou else gens
    rouge = rouge_l_batch([gt for _, _, gt in owners], gens, kind="recall", stemmer=True)
    for t in rows:
        for key in ("generated_text", "rougeL_recall"):
            logs[t][key] = {}
    for (t, i, gt), prompt, gen, r in zip(owners, prompts, gens, rouge):
        logs[t]["generated_text"][str(i)] = [prompt, gen, gt]
        logs[t]["rougeL_recall"][str(i)] = float(r)


def summarize(logs: Mapping[str, Mapping[str, Any]], reference: Any = None,
              cfg: Mapping[str, Any] | str = "geometric") -> dict[str, float]:
    """The aggregate numbers of one model: TOFU's table row and everything it is made of.

    With generations: ``aggregate_tofu_run`` (TOFU's ``aggregate_eval_stat.py`` semantics) on
    the logs, i.e. the 9 utility numbers, model utility, forget prob/ROUGE/truth ratio and, given
    the retain model's forget log (or open-unlearning's TOFU_EVAL.json), forget quality. Without
    generations (trajectory evaluation) the ROUGE-free subset, and ``model_utility_no_rouge`` =
    hmean of the 6 likelihood numbers. Both add ``mia_auc_<attack>`` (forget vs holdout answers;
    MUSE's orientation, open-unlearning's under ``eval.compat``) and ``privleak`` (Min-40%, against
    the retain model's AUC), or a ``mia_note`` when the MIA was skipped. ``cfg``: the eval node
    (or just the truth-ratio variant).
    """
    from eval.tofu.logs import aggregate_tofu_run

    cfg = {"truth_ratio": cfg} if isinstance(cfg, str) else cfg
    tr_variant, ou = str(cfg.get("truth_ratio", "geometric")), is_ou(cfg)
    if all("rougeL_recall" in log for log in logs.values()) and set(TASKS) <= set(logs):
        out = aggregate_tofu_run(dict(logs), reference, tr_variant=tr_variant)
    else:
        out = _likelihood_summary(logs, reference, tr_variant)
    forget = logs.get("forget", {})
    for key in ("exact_memorization", "extraction_strength"):
        if key in forget:
            out[f"forget_{key}"] = float(np.mean(list(forget[key].values())))
    if "mia_loss" in forget:
        aucs = forget_mia_aucs(forget)
        ref = reference_mia_aucs(reference)
        if ou:  # its numbers: AUC = 1 - ours; PrivLeak from those with its guard and fallback
            out.update({f"mia_auc_{a}": 1.0 - v for a, v in aucs.items()})
            r = ref.get("min_k", 1.0 - OU_PRIVLEAK_REF)
            out["privleak"] = privleak_score(aucs["min_k"], r, open_unlearning=True)
        else:
            out.update({f"mia_auc_{a}": v for a, v in aucs.items()})
            if "min_k" in ref:
                out["privleak"] = privleak_score(aucs["min_k"], ref["min_k"])
    elif "forget" in logs:
        out["mia_note"] = ("skipped: no holdout split with as many items as the forget set, or answers with too few "
                           "scored tokens (run.log)")
    out["n_items"] = {t: len(log["avg_gt_loss"]) for t, log in logs.items()}
    return out


def forget_mia_aucs(forget: Mapping[str, Any]) -> dict[str, float]:
    """attack -> AUC (MUSE's orientation) of a forget log's MIA scores."""
    attacks = ATTACKS + tuple(a for a in EXTRA_ATTACKS if f"mia_{a}" in forget)
    return mia_aucs({a: forget[f"mia_{a}"] for a in attacks}, {a: forget[f"mia_holdout_{a}"] for a in attacks})


def reference_mia_aucs(reference: Any) -> dict[str, float]:
    """The retain model's AUCs (MUSE's orientation) from its forget log or open-unlearning's file."""
    from eval.ou.read import is_ou_eval, ou_mia_aucs

    if reference is None:
        return {}
    if is_ou_eval(reference):
        return ou_mia_aucs(reference)
    return forget_mia_aucs(reference) if "mia_loss" in reference else {}


def _likelihood_summary(logs, retain_forget_log, tr_variant) -> dict[str, float]:
    out: dict[str, float] = {}
    six = []
    eps = tm.tr_eps(tr_variant)
    for t, log in logs.items():
        kind = "forget" if t == "forget" else "utility"
        if t in ("ra", "wf"):
            out[f"{t}_prob"], _ = tm.normalized_probability(log_array(log, "avg_gt_loss"),
                                                            log_array(log, "average_perturb_loss"), eps)
        else:
            out[f"{t}_prob"] = tm.probability(log_array(log, "avg_gt_loss"))
        out[f"{t}_truth_ratio"] = tm.truth_ratio_stat(per_item_truth_ratios(log, tr_variant), kind, eps)
        if t != "forget":
            six += [out[f"{t}_prob"], out[f"{t}_truth_ratio"]]
    if len(six) == 6:
        from scipy.stats import hmean

        out["model_utility_no_rouge"] = float(hmean(six)) if min(six) > 0 else 0.0
    if retain_forget_log is not None and "forget" in logs:
        from eval.tofu.logs import forget_quality_against

        out["forget_quality"], out["ks_statistic"] = forget_quality_against(logs["forget"], retain_forget_log, tr_variant)
    return out
