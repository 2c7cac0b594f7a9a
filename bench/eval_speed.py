"""TOFU evaluation speed: ours against open-unlearning's own evaluator and a straightforward one.

    python bench/eval_speed.py [--reps 3] [overrides...]   (default: the embedded world's target model)

Everything runs in compat mode (``eval.compat=open_unlearning``: every item, its prompts, its
200-new-token greedy generation, its MIA suite), so all three do the same work on the same model
and the same TOFU files:

* **ours**: :func:`eval.tofu.evaluate.evaluate_tofu` + :func:`~eval.tofu.evaluate.summarize`;
* **open-unlearning**: its own metric code, run from its git repository by
  :func:`tests.ou_reference.ou_tofu_eval` (as its ``configs/eval/tofu.yaml`` wires it), when the
  repository is there (``OPEN_UNLEARNING_REPO``, default the mirror path ``tests/ou_reference.py``
  names);
* **straightforward**: :func:`naive_evaluate`, the obvious per-metric evaluation -- one
  teacher-forced pass per metric, per perturbed answer and per attack, batches in dataset order,
  generation of the full new-token budget cut at EOS afterwards.

Each evaluator runs once to warm up, then ``--reps`` times, interleaved; the best time counts.
The numbers must agree: the max |difference| of every metric (open-unlearning's ``agg_value`` of
each metric in its ``TOFU_EVAL.json``, our summary against the straightforward one's) is printed.
Target: ours >= 3x open-unlearning's (issue 24).

``--profile`` then runs each evaluator once under :mod:`cProfile` and splits its time into
generation (``GenerationMixin.generate``), set-up (tokenizing and loading the data: the tokenizer's
calls, ``datasets.load_dataset``) and the rest, scoring (teacher-forced passes and the metrics'
arithmetic). Profiled seconds run slower than the timed ones; the shares are what count.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import math
import pstats
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.compat import is_ou  # noqa: E402
from eval.likelihood import score  # noqa: E402
from eval.mia.attacks import ATTACKS, MiaSettings, group_scores  # noqa: E402
from eval.ou.write import tofu_ou_eval  # noqa: E402
from eval.per_item import indexed  # noqa: E402
from eval.rouge import rouge_l  # noqa: E402
from eval.tofu.evaluate import (TASK_SOURCES, TASKS, answer_hits, eval_features, evaluate_tofu,  # noqa: E402
                                exact_memorization, extraction_strength, generation_items, holdout_rows,
                                scored_texts, summarize, task_rows)
from unlearn.config import compose_config  # noqa: E402
from unlearn.preparation import prepare  # noqa: E402
from unlearn.stages import StageCache  # noqa: E402
from unlearn.templates import ChatTemplate  # noqa: E402


# ----------------------------------------------------------------------------------------
# the straightforward evaluation
# ----------------------------------------------------------------------------------------
def naive_pass(model, prepared, cfg, pairs, tokens: bool = False):
    """One teacher-forced pass over (question, answer) pairs, batches in dataset order: the
    :class:`eval.likelihood.Scores` and the features."""
    feats = eval_features(prepared, cfg, pairs)
    bs, pad = int(cfg.batch_size), prepared.tokenizer.pad_token_id
    parts = [score(model, feats[i : i + bs], bs, pad, tokens=tokens) for i in range(0, len(feats), bs)]
    s = parts[0]
    for p in parts[1:]:
        s.sums, s.counts = np.concatenate([s.sums, p.sums]), np.concatenate([s.counts, p.counts])
        for key in ("logp", "correct", "mu", "sigma"):
            getattr(s, key).extend(getattr(p, key))
    return s, feats


@torch.inference_mode()
def naive_generate(model, tokenizer, prompt_ids, bs: int, max_new: int, clean_up: bool | None):
    """Batches in dataset order, always ``max_new`` new tokens (no early stop), cut at EOS afterwards."""
    saved, model.generation_config.eos_token_id = model.generation_config.eos_token_id, None
    pad, eos, outs = tokenizer.pad_token_id, tokenizer.eos_token_id, []
    kw = {} if clean_up is None else {"clean_up_tokenization_spaces": clean_up}
    try:
        for i in range(0, len(prompt_ids), bs):
            enc = prompt_ids[i : i + bs]
            w = max(map(len, enc))
            ids = torch.tensor([[pad] * (w - len(e)) + list(e) for e in enc])
            att = (torch.arange(w)[None, :] >= torch.tensor([w - len(e) for e in enc])[:, None]).long()
            gen = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=pad)
            for row in gen[:, w:].tolist():
                outs.append(tokenizer.decode(row[: row.index(eos)] if eos in row else row, skip_special_tokens=True,
                                             **kw))
    finally:
        model.generation_config.eos_token_id = saved
    return outs


def _naive_forget_extras(model, prepared, cfg, rows) -> dict[str, Any]:
    """Exact memorization, extraction strength and each attack on forget and holdout: a pass each."""
    qa = [(r["question"], r["answer"]) for r in rows]
    out = {}
    for metric, fn in (("exact_memorization", exact_memorization), ("extraction_strength", extraction_strength)):
        s, feats = naive_pass(model, prepared, cfg, qa, tokens=True)
        out[metric] = indexed(fn(answer_hits(s.correct, feats, prepared.tokenizer.eos_token_id)))
    holdout = holdout_rows(prepared, len(rows))
    if holdout is None:
        return out
    settings = MiaSettings.from_cfg(cfg.get("mia"), min_k_variant="ou")
    for attack in ATTACKS:
        for group, rs in (("", qa), ("holdout_", [(r["question"], r["answer"]) for r in holdout])):
            s, feats = naive_pass(model, prepared, cfg, rs, tokens=True)
            texts = scored_texts(prepared, cfg, feats, [a for _, a in rs])
            out[f"mia_{group}{attack}"] = indexed(group_scores(s, list(enumerate(texts)), settings)[attack])
    return out


def naive_evaluate(model, prepared, cfg) -> dict[str, dict[str, Any]]:
    """Per-task logs in our schema, computed the straightforward way (same numbers as ours)."""
    logs, gen = {}, cfg.generation
    tok = prepared.tokenizer
    for t in TASKS:
        rows = task_rows(prepared, t, cfg.get("ds_size"))
        qs = [r["question"] for r in rows]

        def per_token(key: str, j: int | None = None) -> np.ndarray:
            s, _ = naive_pass(model, prepared, cfg, [(q, r[key] if j is None else r[key][j]) for q, r in zip(qs, rows)])
            return s.per_token

        pert = np.stack([per_token("perturbed_answer", j) for j in range(len(rows[0]["perturbed_answer"]))], axis=1)
        log = {"avg_gt_loss": indexed(per_token("answer")), "avg_paraphrased_loss": indexed(per_token(TASK_SOURCES[t][1])),
               "average_perturb_loss": indexed(pert)}
        if t == "forget":
            log.update(_naive_forget_extras(model, prepared, cfg, rows))
        prompts, prompt_ids, gts = generation_items(prepared, cfg, rows)
        gens = naive_generate(model, tok, prompt_ids, int(gen.batch_size), int(gen.max_new_tokens), is_ou(cfg) or None)
        gens = [g.strip() for g in gens] if is_ou(cfg) else gens
        log["generated_text"] = indexed([[p, g, gt] for p, g, gt in zip(prompts, gens, gts)])
        log["rougeL_recall"] = indexed([rouge_l(gt, g) for g, gt in zip(gens, gts)])
        logs[t] = log
    return logs


# ----------------------------------------------------------------------------------------
# open-unlearning's evaluator on the same model and files
# ----------------------------------------------------------------------------------------
def template_args(template) -> dict[str, Any]:
    """Our prompt template as open-unlearning's ``template_args``."""
    if isinstance(template, ChatTemplate):
        return {"apply_chat_template": True, "system_prompt": template.system_prompt,
                "date_string": template.date_string}
    return {"apply_chat_template": False, "user_start_tag": template.question_start_tag,
            "user_end_tag": template.question_end_tag, "asst_start_tag": template.answer_tag, "asst_end_tag": ""}


def open_unlearning_runner(stack: ExitStack, model, prepared, cfg) -> Callable[[], dict[str, Any]] | None:
    """A call of open-unlearning's evaluator, or None (the reason printed) when it cannot run."""
    from tests import ou_reference as ref

    logging.getLogger("metrics").setLevel(logging.ERROR)  # its notes on the missing retain logs, every call
    reason = ref.unavailable_reason()
    if reason is not None:
        print(f"open-unlearning's evaluator skipped: {reason}")
        return None
    ou = stack.enter_context(ref.load_open_unlearning(Path(stack.enter_context(tempfile.TemporaryDirectory()))))
    split = prepared.data.split
    kw = dict(forget_split=split, holdout_split="holdout" + split[len("forget"):], batch_size=int(cfg.batch_size),
              generation_batch_size=int(cfg.generation.batch_size))
    args, folder = template_args(prepared.template), Path(prepared.data.path)

    def run():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return ref.ou_tofu_eval(ou, model, prepared.tokenizer, args, folder, **kw)  # quiet: progress bars, prints

    return run


def max_difference(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> tuple[float, str]:
    """The largest |difference| of the metrics both hold (numbers, or open-unlearning's
    ``agg_value``s), and its metric."""
    def value(v):
        return v.get("agg_value") if isinstance(v, Mapping) else v

    worst, name = 0.0, "-"
    for k in sorted(set(ours) & set(theirs)):
        a, b = value(ours[k]), value(theirs[k])
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool):
            continue
        d = abs(a - b) if not (math.isnan(a) and math.isnan(b)) else 0.0
        if d > worst or math.isnan(d):
            worst, name = d, k
    return worst, name


def timed(runs: Mapping[str, Callable[[], Any]], reps: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Best-of-``reps`` seconds of each run (after one warm-up call each, interleaved), and its last result."""
    out = {name: run() for name, run in runs.items()}  # warm-up: kernels, caches, lazy imports
    best = {name: math.inf for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            t = time.perf_counter()
            out[name] = run()
            best[name] = min(best[name], time.perf_counter() - t)
    return best, out


# (file suffix, function name) of each phase's entry points; a phase's time is their cumulative time
PHASES = {
    "generation": (("generation/utils.py", "generate"),),
    "set-up": (("tokenization_utils_base.py", "__call__"), ("tokenization_utils_base.py", "apply_chat_template"),
               ("datasets/load.py", "load_dataset")),
}


def profile(run: Callable[[], Any]) -> dict[str, float]:
    """Seconds of one profiled call of ``run`` per phase (:data:`PHASES`, then ``scoring``: the rest).

    A phase's entry points that call each other (a tokenizer call inside ``apply_chat_template``)
    are counted once: cumulative time already holds the inner call."""
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, ncalls, tottime, cumtime, callers)
    total = sum(tt for _, _, tt, _, _ in stats.values())
    out = {}
    for phase, entries in PHASES.items():
        keys = {k for k in stats if any(k[0].endswith(f) and k[2] == n for f, n in entries)}
        # drop an entry point whose every caller is itself an entry point of the phase (counted there)
        outer = [k for k in keys if not set(stats[k][4]) or not set(stats[k][4]) <= keys]
        out[phase] = sum(stats[k][3] for k in outer)
    out["scoring"] = total - sum(out.values())
    out["total"] = total
    return out


def print_profile(runs: Mapping[str, Callable[[], Any]]) -> None:
    print("\nwhere the time goes (one cProfile'd call each; seconds, share of the call):")
    for name, run in runs.items():
        p = profile(run)
        parts = ", ".join(f"{k} {p[k]:.2f} s ({p[k] / p['total']:.0%})" for k in ("generation", "set-up", "scoring"))
        print(f"{name:>16}: {p['total']:6.2f} s = {parts}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3, help="timed repetitions of each evaluator (best counts)")
    p.add_argument("--no-naive", action="store_true", help="skip the straightforward evaluation")
    p.add_argument("--profile", action="store_true", help="then split each evaluator's time into phases")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the run config")
    a = p.parse_args(argv)
    cfg = compose_config(["eval.compat=open_unlearning", *a.overrides])
    prepared = prepare(cfg, StageCache(cfg.paths.cache))
    model, ev = prepared.load("target"), cfg.eval

    def ours():
        logs = evaluate_tofu(model, prepared, ev)
        return logs, summarize(logs, None, ev)

    with ExitStack() as stack:
        runs: dict[str, Callable[[], Any]] = {"ours": ours}
        theirs = open_unlearning_runner(stack, model, prepared, ev)
        if theirs is not None:
            runs["open-unlearning"] = theirs
        if not a.no_naive:
            runs["straightforward"] = lambda: (lambda logs: summarize(logs, None, ev))(naive_evaluate(model, prepared, ev))
        best, out = timed(runs, a.reps)
        report(best, out, a.reps)
        if a.profile:
            print_profile(runs)


def report(best: Mapping[str, float], out: Mapping[str, Any], reps: int) -> None:
    logs, summary = out["ours"]
    print(f"items per task: {summary['n_items']}, torch threads {torch.get_num_threads()}, best of {reps}")
    for name, t in best.items():
        print(f"{name:>16}: {t:7.3f} s" + ("" if name == "ours" else f"   ours is {t / best['ours']:5.2f}x faster"))
    if "open-unlearning" in out:
        diff, metric = max_difference(tofu_ou_eval(logs, summary), out["open-unlearning"])
        print(f"max |ours - open-unlearning| over every metric: {diff:.2e} ({metric})")
    if "straightforward" in out:
        diff, metric = max_difference(summary, out["straightforward"])
        print(f"max |ours - straightforward| over every metric: {diff:.2e} ({metric})")
    print(f"model utility {summary['model_utility']:.6f}, forget truth ratio {summary['forget_truth_ratio']:.6f}")


if __name__ == "__main__":
    main()
