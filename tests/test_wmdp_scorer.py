"""The 4-choice scorer (eval/wmdp/choices.py): tokenization as lm-evaluation-harness splits a
(context, continuation) pair, and accuracy against numbers computed by hand on a bigram model."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eval.wmdp.choices import (accuracy, accuracy_by_subject, answer_feature, choice_features, choice_logliks,
                               encode_pair, pair_feature, prompt, question_log)

BOS, PAD = 1, 0


class CharTokenizer:
    """One token per character (ids from 2), a BOS first unless ``add_special_tokens=False``."""

    pad_token_id = PAD

    def __init__(self, alphabet: str):
        self.ids = {c: i + 2 for i, c in enumerate(dict.fromkeys(alphabet))}

    def __call__(self, text: str, add_special_tokens: bool = True):
        return {"input_ids": ([BOS] if add_special_tokens else []) + [self.ids[c] for c in text]}


class Bigram(torch.nn.Module):
    """Logits at a position depend on that position's token only: ``log_p[prev]`` (rows normalized),
    so every score is a sum of table entries, whatever the batching or prefix caching."""

    def __init__(self, log_p: torch.Tensor):
        super().__init__()
        self.log_p = torch.nn.Parameter(log_p, requires_grad=False)

    def forward(self, input_ids, attention_mask=None, **_):
        return SimpleNamespace(logits=self.log_p[input_ids])


QUESTIONS = [
    {"question": " ab ", "choices": ["a", "b", "ab", "ba"], "answer": 1, "subject": "s1"},
    {"question": "ba", "choices": ["b", "a", "bb", "aa"], "answer": 0, "subject": "s2"},
]
TEXT = "Question: \nAnswer" + "ab"


@pytest.fixture
def tok():
    return CharTokenizer(TEXT)


FIXED = {(":", " "): 0.5, (" ", "a"): 0.5, (" ", "b"): 0.25, ("b", "a"): 0.5}  # p(next | prev)


@pytest.fixture
def model(tok):
    """The next-token distribution after each token: :data:`FIXED` where it says, the rest of the
    row's mass spread evenly over the other tokens (a row FIXED does not name: uniform)."""
    v = max(tok.ids.values()) + 1
    p = torch.full((v, v), 1.0 / v)
    for prev in {prev for prev, _ in FIXED}:
        fixed = {tok.ids[n]: q for (pv, n), q in FIXED.items() if pv == prev}
        free = [j for j in range(v) if j not in fixed]
        p[tok.ids[prev], free] = (1 - sum(fixed.values())) / len(free)
        for j, q in fixed.items():
            p[tok.ids[prev], j] = q
    return Bigram(p.log())


def test_encode_pair_moves_trailing_spaces_and_splits_the_whole(tok):
    context, cont = encode_pair(tok, "Question: ab\nAnswer: ", "b")
    assert context == tok("Question: ab\nAnswer:")["input_ids"]  # the space went to the continuation
    assert cont == [tok.ids[" "], tok.ids["b"]]
    assert prompt("  ab ") == "Question: ab\nAnswer:"  # the question stripped, as lm-evaluation-harness's task


def test_encode_pair_matches_lm_evaluation_harness(tok):
    lm_eval_model = pytest.importorskip("lm_eval.api.model")
    harness = SimpleNamespace(backend="causal", tok_encode=lambda s, **kw: tok(s, **kw)["input_ids"])
    for context, cont in (("Question: ab\nAnswer:", " ba"), ("Question: b\nAnswer:  ", "a")):
        assert encode_pair(tok, context, cont) == lm_eval_model.TemplateLM._encode_pair(harness, context, cont)


def test_pair_feature_labels_the_continuation_and_cuts_from_the_left():
    f = pair_feature([1, 5, 6, 7], [8, 9], max_length=10)
    assert f == {"input_ids": [1, 5, 6, 7, 8, 9], "attention_mask": [1] * 6, "labels": [-100] * 4 + [8, 9]}
    cut = pair_feature([1, 5, 6, 7], [8, 9], max_length=3)  # lm-evaluation-harness keeps max_length + 1 tokens
    assert cut["input_ids"] == [6, 7, 8, 9] and cut["labels"] == [-100, -100, 8, 9]


def test_choice_logliks_by_hand(tok, model):
    ll = choice_logliks(model, tok, QUESTIONS, batch_size=3, max_length=64)
    v = max(tok.ids.values()) + 1
    u = 1.0 / v  # ':' is followed by ' ' (1/2) in every prompt; the rest of each row shares what is left
    after_space = {"a": 0.5, "b": 0.25}
    rest_space = (1 - 0.75) / (v - 2)
    rest_b = (1 - 0.5) / (v - 1)

    def space(c):  # p(first char | ' ')
        return after_space.get(c, rest_space)

    expected = np.log([
        [0.5 * space("a"), 0.5 * space("b"), 0.5 * space("a") * u, 0.5 * space("b") * 0.5],
        [0.5 * space("b"), 0.5 * space("a"), 0.5 * space("b") * rest_b, 0.5 * space("a") * u],
    ])
    assert ll == pytest.approx(expected, abs=1e-5)
    # " a" is the most likely continuation of both prompts (choice 0, then choice 1); the answers are 1 and 0
    log = question_log(model, tok, QUESTIONS, batch_size=2, max_length=64)
    assert [log["pred"][k] for k in "01"] == [0, 1]
    assert accuracy(log) == 0.0 and log["correct"] == {"0": 0.0, "1": 0.0}
    assert math.isclose(log["choice_loglik"]["0"][0], math.log(0.25), abs_tol=1e-6)


def test_accuracy_counts_the_right_choice(tok, model):
    rows = [{**QUESTIONS[0], "answer": 0}, QUESTIONS[1]]  # question 0 right (" a" is the most likely)
    log = question_log(model, tok, rows, batch_size=8, max_length=64)
    assert accuracy(log) == 0.5 and accuracy_by_subject(log) == {"s1": 1.0, "s2": 0.0}


def test_ties_go_to_the_first_choice(tok, model):
    row = {"question": "ab", "choices": ["b", "b", "a", "a"], "answer": 1}
    log = question_log(model, tok, [row], batch_size=4, max_length=64)
    assert log["pred"]["0"] == 2  # " a" (1/2) beats " b" (1/4); of the two " a" the first


def test_answer_feature_is_the_scored_right_choice(tok):
    feats = choice_features(tok, QUESTIONS, max_length=64)
    for i, row in enumerate(QUESTIONS):
        assert answer_feature(tok, row, 64) == feats[4 * i + row["answer"]]
