"""What makes the TOFU evaluation fast changes no number.

Each shortcut against the plain computation it replaces: texts and prompts tokenized in batches
against one tokenizer call per text; per-token arrays of only the items that need them against
those of every item; the batched ROUGE scorer (memoized stemmer) against rouge-score's own; the
batched open-unlearning decodes against one decode per text. Then the whole evaluator against the
straightforward per-metric evaluation of ``bench/eval_speed.py`` on the debug world, in both
conventions: one item per batch on both sides, so every number must be the same bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from eval.compat import ou_ground_truth, ou_ground_truths, ou_scored_text, ou_scored_texts
from eval.likelihood import prefix_length, prefix_units, score
from eval.rouge import rouge_l, rouge_l_batch
from tests.conftest import compose_cfg
from tests.tiny import tiny_llama, varied_features
from unlearn.data import encode_qa, encode_rows
from unlearn.templates import PromptTemplate
from unlearn.tokenizer import train_bpe_tokenizer

TEMPLATE = PromptTemplate("Question: ", "\nAnswer:", " ")
QA = [("Where was Ada born?", "Ada was born in Lima."), ("Where was Ada born?", "In Lima, a city in Peru."),
      ("Who wrote Stone Rivers?", "Bo Lin wrote it " + "and more " * 30), ("Who?", "")]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = [TEMPLATE.full(q, a) for q, a in QA] * 10 + ["The birthplace of Ada is Lima."] * 10
    return train_bpe_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("rule", ["tofu", "open_unlearning"])
def test_qa_texts_tokenized_in_a_batch_are_tokenized_one_by_one(tok, rule):
    kw = dict(add_special_tokens=True, truncation=True, max_length=24)
    tag = TEMPLATE.answer_tag if rule == "open_unlearning" else ""
    by_hand = [(tok(TEMPLATE.full(q, a), **kw)["input_ids"], len(tok(TEMPLATE.prompt(q) + tag, **kw)["input_ids"]))
               for q, a in QA]
    assert TEMPLATE.tokenize_many(tok, QA, 24, rule) == by_hand
    assert any(len(ids) == 24 for ids, _ in by_hand)  # one is truncated
    rows = [{"question": q, "answer": a} for q, a in QA]
    assert encode_rows(tok, TEMPLATE, rows, 24, rule=rule) == [encode_qa(tok, TEMPLATE, q, a, 24, rule) for q, a in QA]
    assert TEMPLATE.tokenize_many(tok, [], 24, rule) == []


@pytest.mark.parametrize("answer_tag", [False, True])
def test_generation_prompts_in_a_batch(tok, answer_tag):
    questions = [q for q, _ in QA]
    out = TEMPLATE.generation_prompts(tok, questions, answer_tag)
    texts = [TEMPLATE.prompt(q) + (TEMPLATE.answer_tag if answer_tag else "") for q in questions]
    assert out == [(t, tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
    assert TEMPLATE.generation_prompt(tok, questions[0], answer_tag) == out[0]


def test_open_unlearning_decodes_in_a_batch(tok):
    feats = [encode_qa(tok, TEMPLATE, q, a, 64, "open_unlearning") for q, a in QA]
    prompts = [TEMPLATE.generation_prompt(tok, q, True)[1] for q, _ in QA]
    kw = dict(skip_special_tokens=True, clean_up_tokenization_spaces=True)
    by_hand = [tok.decode(f["input_ids"], **kw).replace(tok.decode(p, **kw), "").strip() for f, p in zip(feats, prompts)]
    assert ou_ground_truths(tok, [f["input_ids"] for f in feats], prompts) == by_hand
    assert [ou_ground_truth(tok, f["input_ids"], p) for f, p in zip(feats, prompts)] == by_hand
    scored = [tok.decode([t for t in f["labels"] if t != -100], skip_special_tokens=True) for f in feats]
    assert ou_scored_texts(tok, feats) == scored == [ou_scored_text(tok, f) for f in feats]


def test_per_token_arrays_of_some_items_are_those_of_all():
    model, feats = tiny_llama(seed=3), varied_features(23, seed=5)
    full = score(model, feats, 8, 0, tokens=True)
    some = [0, 4, 5, 17, 22]
    part = score(model, feats, 8, 0, tokens=some)
    np.testing.assert_array_equal(part.sums, full.sums)
    np.testing.assert_array_equal(part.counts, full.counts)
    for key in ("logp", "correct", "mu", "sigma"):
        for i in range(len(feats)):
            got, want = getattr(part, key)[i], getattr(full, key)[i]
            if i in some:
                assert got.dtype == want.dtype and np.array_equal(got, want), (key, i)
                assert len(got) == full.counts[i]
            else:
                assert len(got) == 0
    assert score(model, feats, 8, 0).logp == []  # no arrays asked: none made


def test_batched_rouge_with_the_stemmer_is_rouge_score():
    gts = ["The running dogs were running quickly", "Ada was born in Lima", "", "organizational studies"]
    gens = ["dogs run quickly and runs", "She was born in Lima, Peru", "anything", "organization study organizes"]
    gts, gens = gts * 3, gens[::-1] * 3
    np.testing.assert_array_equal(rouge_l_batch(gts, gens), [rouge_l(g, p) for g, p in zip(gts, gens)])
    np.testing.assert_array_equal(rouge_l_batch(gts, gens, kind="f1", stemmer=False),
                                  [rouge_l(g, p, kind="f1", stemmer=False) for g, p in zip(gts, gens)])


def _questions_with_answers() -> list[dict[str, list[int]]]:
    """Four prompts (two of one length) with four answers each, TOFU-style (EOS appended with
    attention 0), a text with nothing to share, and two with nothing to score."""
    import torch

    g = torch.Generator().manual_seed(0)
    prompts = [[1] + torch.randint(3, 50, (n,), generator=g).tolist() for n in (4, 4, 6, 9)]
    feats = []
    for p in prompts:
        for k in (1, 3, 5, 8):
            answer = torch.randint(3, 50, (k,), generator=g).tolist()
            ids = p + answer + [2]
            feats.append({"input_ids": ids, "attention_mask": [1] * (len(ids) - 1) + [0],
                          "labels": [-100] * len(p) + answer + [2]})
    return feats + [{"input_ids": [1, 5, 6], "attention_mask": [1, 1, 1], "labels": [-100, 5, 6]},
                    {"input_ids": [1], "attention_mask": [1], "labels": [-100]},
                    {"input_ids": [1, 7, 8], "attention_mask": [1, 1, 1], "labels": [-100, -100, -100]}]


def test_shared_prefixes_score_as_the_plain_pass():
    """Texts sharing their unscored prefix (one prompt, several answers), run as a prefix pass and
    continuations against its KV cache: the plain pass's numbers up to float32 rounding, the same
    token counts, argmax hits and array lengths."""
    feats = _questions_with_answers()
    model = tiny_llama(seed=1)
    plain = score(model, feats, 5, 0, tokens=True)
    shared = score(model, feats, 5, 0, tokens=True, share_prefixes=True)
    np.testing.assert_array_equal(shared.counts, plain.counts)
    np.testing.assert_allclose(shared.sums, plain.sums, rtol=1e-5, atol=1e-6)
    for key in ("logp", "mu", "sigma"):
        for a, b in zip(getattr(shared, key), getattr(plain, key)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(shared.correct, plain.correct))
    units = prefix_units(feats, 5)
    assert sorted(i for u in units for b in u.batches for i, _ in b) == list(range(len(feats)))
    assert all(len(u.prefixes) <= 5 and u.prefixes == sorted(u.prefixes, key=len) for u in units)
    assert len({len(p) for p in units[-1].prefixes}) > 1  # prefixes of several lengths, left-padded
    assert all(len(b) <= 5 for u in units for b in u.batches)
    assert [prefix_length(f) for f in feats[:4]] == [4] * 4  # the prompt less its last token


def test_shared_prefixes_split_across_processes_as_one_process_runs_them(monkeypatch):
    """Each process runs whole units, those of a 1-process run (so the same numbers); under FSDP
    (synced) every process runs as many forward passes."""
    from unlearn.distributed import Shard

    feats, model = _questions_with_answers(), tiny_llama(seed=1)
    one = score(model, feats, 3, 0, tokens=True, share_prefixes=True)
    units = prefix_units(feats, 3)
    width = max((len(u.prefixes[0]) > 0) + len(u.batches) for u in units)
    assert len(units) >= 3 and len({len(u.batches) for u in units}) > 1  # uneven units: padding matters
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    monkeypatch.setattr(Shard, "gather", lambda self, obj: [obj])  # this process's results only
    seen = []
    for index in (0, 1):
        calls.clear()
        part = score(model, feats, 3, 0, tokens=True, share_prefixes=True, shard=Shard(index, 2, synced=True))
        assert len(calls) == -(-len(units) // 2) * width
        mine = [i for u in units[index::2] for b in u.batches for i, _ in b]
        np.testing.assert_array_equal(part.sums[mine], one.sums[mine])  # bit for bit
        np.testing.assert_array_equal(part.counts[mine], one.counts[mine])
        assert all(np.array_equal(part.logp[i], one.logp[i]) for i in mine)
        seen += mine
    assert sorted(seen) == list(range(len(feats)))


def _same(ours, theirs, where) -> None:
    """Texts exactly; numbers up to the float32 rounding of the shared-prefix pass."""
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), where
        for k in ours:
            _same(ours[k], theirs[k], f"{where}/{k}")
    elif isinstance(ours, (list, tuple)) and ours and isinstance(ours[0], str):
        assert list(ours) == list(theirs), where
    elif isinstance(ours, str) or ours is None:
        assert ours == theirs, where
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7, err_msg=where)


@pytest.mark.parametrize("compat", ["tofu", "open_unlearning"])
def test_evaluator_equals_the_straightforward_evaluation(shared_cache, tmp_path, compat):
    """``bench/eval_speed.py``'s equality check as a test: one pass over every unique text (shared
    prompts, per-token arrays only where read), batched tokenization and ROUGE, against a pass per
    metric. One item per batch and per generation on both sides (no padding): generations, ROUGE
    and every argmax-based number are equal, the likelihoods up to float32 rounding."""
    from bench.eval_speed import naive_evaluate
    from eval.tofu.evaluate import evaluate_tofu, summarize
    from unlearn.preparation import prepare
    from unlearn.stages import StageCache

    cfg = compose_cfg(["debug=tiny", f"paths.root={tmp_path}", f"eval.compat={compat}"])
    for key, value in (("batch_size", 1), ("generation.batch_size", 1), ("generation.max_new_tokens", 12),
                       ("generation.mode", "new_tokens")):
        OmegaConf.update(cfg.eval, key, value)
    prepared = prepare(cfg, StageCache(shared_cache))
    model = prepared.load("target")
    ours, naive = evaluate_tofu(model, prepared, cfg.eval), naive_evaluate(model, prepared, cfg.eval)
    for t, log in naive.items():
        for key, values in log.items():
            if key in ("generated_text", "rougeL_recall", "exact_memorization", "extraction_strength"):
                assert ours[t][key] == values, (t, key)
            _same(ours[t][key], values, f"{t}/{key}")
    assert "mia_min_k" in naive["forget"] and any(g[1] for g in naive["forget"]["generated_text"].values())
    _same(summarize(ours, None, cfg.eval), summarize(naive, None, cfg.eval), "summary")
