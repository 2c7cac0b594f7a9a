"""lm-evaluation-harness on our model (eval/lm_eval) against our own teacher-forced scorer, on the
same multiple-choice questions: their time and their largest log-likelihood difference.

    python bench/lm_eval_speed.py [--items 200] [--reps 3] [--style cloze] [overrides...]   (default: debug=tiny)

The questions are the world's own: each TOFU question with its answer and three other questions'
answers as options (the answer's place drawn per item), written as a local question file
(:func:`eval.lm_eval.local_task`). Timed, best of ``--reps`` after a warm-up each, on the target model:

* **lm-eval**: :func:`eval.lm_eval.run_tasks` -- HFLM over the model object, ``simple_evaluate``
  (its task loading and request building included -- what a run pays; not torch's environment
  report, which run_tasks leaves out);
* **ours**: :func:`eval.likelihood.score` over the very (context, continuation) token pairs lm-eval
  builds (HFLM's ``_encode_pair``), prompts shared (``share_prefixes``), as our TOFU evaluator runs.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.lm_eval import local_task, run_tasks  # noqa: E402
from eval.likelihood import score  # noqa: E402
from unlearn.config import compose_config  # noqa: E402
from unlearn.preparation import prepare  # noqa: E402
from unlearn.stages import StageCache  # noqa: E402


def questions(prepared, n: int) -> list[dict]:
    """The world's QA pairs (``full``: every author) as four-option questions: the answer and three
    other questions' answers, in a random order."""
    rows = list(prepared.data.rows("full"))
    rng, out = random.Random(0), []
    for i, row in enumerate(rows[:n]):
        others = rng.sample([r["answer"] for j, r in enumerate(rows) if j != i], 3)
        answer = rng.randrange(4)
        out.append({"question": row["question"], "choices": others[:answer] + [row["answer"]] + others[answer:],
                    "answer": answer})
    return out


def pairs(items: list[dict], style: str) -> list[tuple[str, str]]:
    """(context, continuation) per item and option, the harness's prompts (eval/lm_eval/tasks.py)."""
    out = []
    for q in items:
        c = q["choices"]
        if style == "letter":
            context, options = (f"{q['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:",
                                ["A", "B", "C", "D"])
        else:
            context, options = f"Question: {q['question'].strip()}\nAnswer:", c
        out += [(context, " " + o) for o in options]
    return out


def features(tok, context_continuations: list[tuple[str, str]], max_length: int) -> list[dict]:
    """HFLM's encoding (its ``_encode_pair``): the whole text tokenized, the context's tokens
    unscored; a text longer than the model's ``max_length`` + 1 loses its first tokens, as HFLM
    cuts it (the letter prompt's four options outgrow the tiny model's 128 positions)."""
    feats = []
    for context, cont in context_continuations:
        whole, ctx = tok(context + cont)["input_ids"], tok(context)["input_ids"]
        labels = [-100] * len(ctx) + whole[len(ctx):]
        whole, labels = whole[-(max_length + 1):], labels[-(max_length + 1):]
        feats.append({"input_ids": whole, "attention_mask": [1] * len(whole), "labels": labels})
    return feats


def best_of(fn, reps: int):
    fn()  # warm-up: imports, the dataset builder's first call
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--style", choices=["cloze", "letter"], default="cloze")
    ap.add_argument("--batch-size", type=int, default=16)
    args, overrides = ap.parse_known_args(argv)
    cfg = compose_config(overrides or ["debug=tiny"])
    prepared = prepare(cfg, StageCache(cfg.paths.cache))
    model, tok = prepared.load("target"), prepared.tokenizer
    items = questions(prepared, args.items)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "questions.jsonl"
        data.write_text("".join(json.dumps(q) + "\n" for q in items))
        task = local_task("bench", data, args.style)
        t_lm, res = best_of(lambda: run_tasks(model, tok, [task], batch_size=args.batch_size), args.reps)
    feats = features(tok, pairs(items, args.style), int(model.config.max_position_embeddings))
    t_ours, s = best_of(lambda: score(model, feats, args.batch_size, tok.pad_token_id, share_prefixes=True), args.reps)
    theirs = np.array([ll for _, ll in sorted(res["bench"]["items"]["loglikelihoods"].items(), key=lambda kv: int(kv[0]))])
    ours = -s.sums.reshape(len(items), -1)
    print(f"{len(items)} questions x 4 options ({args.style}), batch {args.batch_size}, best of {args.reps}:")
    print(f"  lm-eval run_tasks: {t_lm:.2f} s   ours (eval.likelihood.score): {t_ours:.2f} s   "
          f"ratio {t_lm / t_ours:.1f}x")
    print(f"  max |log-likelihood difference| {np.abs(theirs - ours).max():.2e}; "
          f"acc {res['bench']['metrics']['acc']:.3f} (ours {np.mean(ours.argmax(1) == [q['answer'] for q in items]):.3f})")


if __name__ == "__main__":
    main()
