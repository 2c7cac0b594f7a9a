"""Full TOFU suite on one model: our evaluator vs a straightforward per-metric evaluation.

    python bench/eval_speed.py [overrides...]      (default: the embedded world's target model)

The straightforward way (how open-unlearning evaluates): one teacher-forced pass per metric
and per perturbed answer (answer loss, paraphrase loss, each of the K perturbed answers, exact
memorization and extraction strength again), batches in dataset order (more padding), and
generation of a fixed number of new tokens (no early stop), cut at EOS afterwards. Ours: one flattened, length-sorted pass for
every unique text and length-sorted generation that stops at EOS. Both produce the same numbers
(checked below); target ratio >= 3x (issue 3).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.likelihood import score  # noqa: E402
from eval.rouge import rouge_l  # noqa: E402
from eval.tofu.evaluate import TASK_SOURCES, TASKS, evaluate_tofu, exact_memorization, extraction_strength, summarize, task_rows  # noqa: E402
from eval.tofu.logs import aggregate_tofu_run  # noqa: E402
from unlearn.config import compose_config as compose_cfg  # noqa: E402
from unlearn.stages import StageCache  # noqa: E402
from unlearn.preparation import prepare  # noqa: E402


def naive_pass(model, prepared, pairs, bs):
    """Per-token loss and per-token correctness, one unsorted batch after another."""
    feats = [prepared.features([{"question": q, "answer": a}])[0] for q, a in pairs]
    out_loss, out_correct = [], []
    for i in range(0, len(feats), bs):
        s = score(model, feats[i : i + bs], bs, prepared.tokenizer.pad_token_id, tokens=True)
        out_loss += list(s.per_token)
        out_correct += s.correct
    return np.array(out_loss), out_correct


@torch.inference_mode()
def naive_generate(model, prepared, prompts, bs, max_new):
    """Batches in dataset order, always max_new new tokens (no early stop), cut at EOS afterwards."""
    tok = prepared.tokenizer
    saved, model.generation_config.eos_token_id = model.generation_config.eos_token_id, None
    outs = []
    try:
        for i in range(0, len(prompts), bs):
            enc = [tok(p)["input_ids"] for p in prompts[i : i + bs]]
            w = max(map(len, enc))
            ids = torch.tensor([[tok.pad_token_id] * (w - len(e)) + e for e in enc])
            att = (torch.arange(w)[None, :] >= torch.tensor([w - len(e) for e in enc])[:, None]).long()
            gen = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            for row in gen[:, w:].tolist():
                row = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
                outs.append(tok.decode(row, skip_special_tokens=True))
    finally:
        model.generation_config.eos_token_id = saved
    return outs


def naive_evaluate(model, prepared, cfg):
    bs, gen = int(cfg.batch_size), cfg.generation
    logs = {}
    for t in TASKS:
        rows = task_rows(prepared, t, cfg.ds_size)
        qs = [r["question"] for r in rows]
        ans, correct = naive_pass(model, prepared, list(zip(qs, [r["answer"] for r in rows])), bs)
        base, _ = naive_pass(model, prepared, list(zip(qs, [r[TASK_SOURCES[t][1]] for r in rows])), bs)
        k = len(rows[0]["perturbed_answer"])
        pert = np.stack([naive_pass(model, prepared, list(zip(qs, [r["perturbed_answer"][j] for r in rows])), bs)[0]
                         for j in range(k)], axis=1)
        ix = lambda v: {str(i): x for i, x in enumerate(np.asarray(v).tolist())}  # noqa: E731
        log = {"avg_gt_loss": ix(ans), "avg_paraphrased_loss": ix(base), "average_perturb_loss": ix(pert)}
        if t == "forget":  # separate passes, as separate metrics do
            log["exact_memorization"] = ix(exact_memorization(naive_pass(model, prepared, list(zip(qs, [r["answer"] for r in rows])), bs)[1]))
            log["extraction_strength"] = ix(extraction_strength(naive_pass(model, prepared, list(zip(qs, [r["answer"] for r in rows])), bs)[1]))
        prompts = [prepared.template.prompt(q) for q in qs]
        gens = naive_generate(model, prepared, prompts, int(gen.batch_size), int(gen.max_new_tokens))
        log["rougeL_recall"] = ix([rouge_l(r["answer"], g) for r, g in zip(rows, gens)])
        logs[t] = log
    return logs


def main() -> None:
    cfg = compose_cfg(["eval.generation.mode=new_tokens", "eval.generation.max_new_tokens=200", *sys.argv[1:]])
    prepared = prepare(cfg, StageCache(cfg.paths.cache))
    model = prepared.load("target")
    evaluate_tofu(model, prepared, cfg.eval, tasks=("wf",))  # warm up kernels for both
    t = time.perf_counter()
    ours = evaluate_tofu(model, prepared, cfg.eval)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    naive = naive_evaluate(model, prepared, cfg.eval)
    t_naive = time.perf_counter() - t
    a, b = aggregate_tofu_run(ours), aggregate_tofu_run(naive)
    diff = max(abs(a[k] - b[k]) for k in a)
    n = {t: len(ours[t]["avg_gt_loss"]) for t in TASKS}
    print(f"items per task: {n}")
    print(f"ours (one pass, sorted, EOS stop): {t_ours:7.2f} s")
    print(f"straightforward per-metric       : {t_naive:7.2f} s")
    print(f"speed-up                         : {t_naive / t_ours:7.2f}x  (target >= 3x)")
    print(f"max |difference| of the aggregates: {diff:.2e}")
    print(f"model utility ours / naive: {a['model_utility']:.6f} / {b['model_utility']:.6f}")
    print(f"forget extras ours: {summarize(ours, None)['forget_exact_memorization']:.4f} (EM)")


if __name__ == "__main__":
    main()
