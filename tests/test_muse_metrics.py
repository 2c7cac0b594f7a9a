"""Tests for eval.muse.metrics: hand-computed values, rouge-score itself, brute-force AUC."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
from rouge_score import rouge_scorer

from eval.mia import scores as ms
from eval.muse import metrics as mm


# ========================================================================================
# stop strings (MUSE knowmem.py L50)
# ========================================================================================
@pytest.mark.parametrize("text, expected", [
    ("Paris\n\nQuestion: What is", "Paris"),
    ("Paris\nQuestion", "Paris"),
    ("Paris. Question: next", "Paris. "),
    ("a\nQuestion: b\n\nc", "a"),          # "\nQuestion" (index 1) comes before "\n\n" (index 12)
    ("a\n\nQuestion: b", "a"),             # "\n\n" at 1 wins over "Question:" at 3
    ("12 March 2021\nThe", "12 March 2021\nThe"),  # a single newline is no stop
    ("Question: at the start", ""),
    ("no stop here ", "no stop here "),    # nothing stripped
    ("", ""),
])
def test_cut_at_stop_strings(text, expected):
    assert mm.cut_at_stop_strings(text) == expected
    assert mm.cut_at_stop_strings(expected) == expected  # idempotent


def test_cut_equals_muse_sequential_split():
    def muse(string, words):  # MUSE's get_prefix_before_words_occur, re-stated
        for word in words:
            string = string.split(word)[0]
        return string

    rng = np.random.default_rng(0)
    alphabet = list("ab Q\n") + ["Question", "Question:"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet, size=rng.integers(0, 12)))
        assert mm.cut_at_stop_strings(text) == muse(text, mm.STOP_STRINGS), repr(text)
    assert mm.cut_at_stop_strings("x END y", stops=("END",)) == "x "
    with pytest.raises(ValueError, match="empty stop"):
        mm.cut_at_stop_strings("x", stops=("",))


# ========================================================================================
# ROUGE-L F1 (METRICS.md §2.1/§2.2: F1, no stemmer)
# ========================================================================================
def test_rouge_l_f1_by_hand():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 of 6 tokens each: P = R = F = 5/6
    assert mm.rouge_l_f1("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # LCS("a b c d", "a c") = 2: P = 1, R = 1/2, F = 2PR/(P+R) = 2/3
    assert mm.rouge_l_f1("a b c d", "a c") == pytest.approx(2 / 3)
    assert mm.rouge_l_f1("a b", "c d") == 0.0
    # no stemmer by default (MUSE); OU's stemmer maps "cats"/"running" to "cat"/"run"
    assert mm.rouge_l_f1("cats running", "cat run") == 0.0
    assert mm.rouge_l_f1("cats running", "cat run", stemmer=True) == 1.0


def test_rouge_l_f1_equals_rouge_score_as_muse_calls_it():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)
    cases = [
        ("The plant opened 29 years ago.", "The plant opened 29 years ago and closed"),
        ("£4.1m", "It cost £4.1m in total"),
        ("Storm Kelwick flooded 1,240 homes", "1,240 homes were flooded by the storm"),
        ("running dogs", "the dogs were running"),
        ("", "something"),
    ]
    for gt, gen in cases:
        assert mm.rouge_l_f1(gt, gen) == scorer.score(gt, gen)["rougeL"].fmeasure


# ========================================================================================
# VerbMem (§2.1)
# ========================================================================================
class WordTokenizer:
    """A Llama-like toy tokenizer: one token per word, BOS (id 0) prepended."""

    def __init__(self, bos: bool = True):
        self.bos = bos
        self.vocab: dict[str, int] = {"<s>": 0}

    def __call__(self, text, add_special_tokens=True):
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return {"input_ids": ([0] if add_special_tokens and self.bos else []) + ids}

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=True):
        inverse = {i: w for w, i in self.vocab.items()}
        return " ".join(inverse[i] for i in ids if not (skip_special_tokens and i == 0))


def test_truncate_gt_keeps_127_tokens_after_bos():
    gt = " ".join(f"w{i}" for i in range(1, 201))
    assert mm.truncate_gt_tokens(WordTokenizer(), gt) == " ".join(f"w{i}" for i in range(1, 128))
    assert mm.truncate_gt_tokens(WordTokenizer(), gt, max_tokens=4) == "w1 w2 w3"
    assert mm.truncate_gt_tokens(WordTokenizer(), "short gt") == "short gt"
    # no BOS: all 128 places go to the text
    assert mm.truncate_gt_tokens(WordTokenizer(bos=False), gt).split()[-1] == "w128"


def test_truncate_gt_with_a_real_bpe_tokenizer(tmp_path):
    from unlearn.tokenizer import train_bpe_tokenizer

    words = [f"token{i}" for i in range(300)]
    tok = train_bpe_tokenizer([" ".join(words)] * 3, 400, tmp_path / "tok")
    gt = " ".join(words)
    ids = tok(gt, add_special_tokens=True).input_ids
    assert ids[0] == tok.bos_token_id and len(ids) > 128
    short = mm.truncate_gt_tokens(tok, gt)
    assert short == tok.decode(ids[1:128])
    assert gt.startswith(short) and len(tok(short, add_special_tokens=False).input_ids) == 127


def test_verbmem_score_by_hand():
    score, per_item = mm.verbmem_score(["a b c d", "the cat sat"], ["a c", "the cat sat"])
    np.testing.assert_allclose(per_item, [2 / 3, 1.0])
    assert score == pytest.approx(100 * (2 / 3 + 1) / 2)  # 83.333...
    with pytest.raises(ValueError, match="2 references vs 1 generations"):
        mm.verbmem_score(["a", "b"], ["a"])


# ========================================================================================
# KnowMem (§2.2)
# ========================================================================================
def test_knowmem_prompt_exact_string():
    prompt = mm.knowmem_prompt([("Q1?", "A1"), {"question": "Q2?", "answer": "A2"}], "Q3?")
    assert prompt == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "
    assert mm.knowmem_prompt([], "Q?") == "Question: Q?\nAnswer: "
    assert prompt.endswith("Answer: ")  # the trailing space is part of MUSE's prompt


def test_knowmem_score_cuts_then_scores():
    answers = ["Dunmere", "1,240"]
    gens = ["Dunmere\n\nQuestion: How many", "1,240 jobs\nQuestion: next"]
    # item 0: cut -> "Dunmere", F1 = 1. item 1: cut -> "1,240 jobs"; rouge tokenizes "1,240" as
    # "1" "240": LCS 2, P = 2/3, R = 1, F = 0.8. Mean 0.9 -> 90.
    score, per_item = mm.knowmem_score(answers, gens)
    np.testing.assert_allclose(per_item, [1.0, 0.8])
    assert score == pytest.approx(90.0)
    # without cutting, the "Question: How many" tail lowers item 0: P = 1/4 -> F = 0.4
    _, raw = mm.knowmem_score(answers, gens, stops=())
    assert raw[0] == pytest.approx(0.4)


# ========================================================================================
# MIA scores (§2.3)
# ========================================================================================
def test_loss_and_zlib_scores():
    logps = [-1.0, -2.0, -3.0]
    assert ms.loss_score(logps) == 2.0
    text = "The river rose by 3 metres."
    z = len(zlib.compress(text.encode("utf-8")))
    assert ms.zlib_score(logps, text) == pytest.approx(2.0 / z)           # mean NLL / zlib bytes
    assert ms.zlib_score(logps, text, reduction="sum") == pytest.approx(6.0 / z)
    # multi-byte characters count in bytes: "£" is 2 bytes in UTF-8
    assert ms.zlib_score([-1.0], "£") == pytest.approx(1.0 / len(zlib.compress("£".encode())))
    assert math.isnan(ms.loss_score([]))
    with pytest.raises(ValueError, match="reduction"):
        ms.zlib_score(logps, text, reduction="max")


def test_min_k_by_hand():
    lp = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert ms.min_k_score(lp) == 4.5             # k_len = int(5*0.4) = 2: -(-5-4)/2
    assert ms.min_k_score(lp, k=0.2) == 5.0      # k_len = 1
    assert ms.min_k_score(lp, k=1.0) == 3.0      # all: mean NLL
    assert math.isnan(ms.min_k_score(lp, k=0.1))  # k_len = int(0.5) = 0: MUSE gives NaN
    assert ms.min_k_score(lp, k=0.1, guard=True) == 5.0
    # OU: drop the last token (-3) -> 4 tokens, int(1.6) = 1 -> 5.0
    assert ms.min_k_score(lp, **ms.MIN_K_VARIANTS["ou"]) == 5.0
    # 2 tokens at k=0.4: int(0.8) = 0 -> NaN in MUSE; OU keeps [-1] and max(1, 0) = 1 -> 1.0
    assert math.isnan(ms.min_k_score([-1.0, -2.0]))
    assert ms.min_k_score([-1.0, -2.0], **ms.MIN_K_VARIANTS["ou"]) == 1.0
    assert math.isnan(ms.min_k_score([]))
    assert math.isnan(ms.min_k_score([-1.0], **ms.MIN_K_VARIANTS["ou"]))  # nothing left
    # int(len * k) with the references' float arithmetic: 100 * 0.29 = 28.999999999999996 -> 28
    lp100 = -np.arange(1, 101, dtype=float)      # NLLs 1..100
    assert ms.min_k_score(lp100, k=0.29) == pytest.approx(np.mean(np.arange(100, 72, -1)))
    with pytest.raises(ValueError, match="k must be"):
        ms.min_k_score(lp, k=0.0)


def test_next_token_stats_by_hand():
    ln2 = math.log(2)
    # p = (1/2, 1/4, 1/4): mu = -(1/2)ln2 - (1/2)2ln2 = -1.5 ln2;
    # E[(log p)^2] = (1/2)ln2^2 + (1/2)4 ln2^2 = 2.5 ln2^2 -> var = 0.25 ln2^2, sigma = 0.5 ln2
    with np.errstate(divide="ignore"):
        vocab = np.log([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])  # row 2: a point mass, log 0 = -inf
    mu, sigma = ms.next_token_logprob_stats(vocab)
    _, floored = ms.next_token_logprob_stats(vocab, min_var=1e-6)
    np.testing.assert_allclose(mu, [-1.5 * ln2, 0.0])
    np.testing.assert_allclose(sigma, [0.5 * ln2, 0.0])
    assert floored[1] == pytest.approx(1e-3)


def test_min_k_plus_plus_by_hand():
    lp, mu, sigma = [-1.0, -3.0, -2.0], [-1.5] * 3, [0.5, 1.0, 2.0]
    # z = ((-1+1.5)/0.5, (-3+1.5)/1, (-2+1.5)/2) = (1, -1.5, -0.25)
    assert ms.min_k_plus_plus_score(lp, mu, sigma) == 1.5            # int(1.2) = 1: -(-1.5)
    assert ms.min_k_plus_plus_score(lp, mu, sigma, k=0.7) == 0.875   # -(-1.5-0.25)/2
    assert math.isnan(ms.min_k_plus_plus_score(lp, mu, sigma, k=0.3))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ms.min_k_plus_plus_score(lp, mu, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="one value per token"):
        ms.min_k_plus_plus_score(lp, mu[:2], sigma)


# ========================================================================================
# AUC and PrivLeak
# ========================================================================================
def brute_force_auc(neg, pos):
    """P(pos > neg) + P(pos == neg)/2 over all pairs."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for n, p in itertools.product(neg, pos))
    return wins / (len(neg) * len(pos))


def test_mia_auc_by_hand():
    forget, holdout = [1.0, 3.0], [2.0, 4.0]
    # MUSE: P(s_holdout < s_forget): only (h=2, f=3) of 4 pairs -> 0.25
    assert ms.mia_auc(forget, holdout) == 0.25
    # OU: P(s_holdout > s_forget): (2>1), (4>1), (4>3) -> 0.75
    assert ms.mia_auc(forget, holdout, orientation="ou") == 0.75
    assert ms.mia_auc([1.0], [1.0]) == 0.5  # a tie counts one half


def test_mia_auc_against_brute_force_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(30):
        f = np.round(rng.normal(size=rng.integers(1, 15)), 1)
        h = np.round(rng.normal(0.3, size=rng.integers(1, 15)), 1)  # rounding makes ties
        muse = ms.mia_auc(f, h)
        ou = ms.mia_auc(f, h, orientation="ou")
        assert muse == pytest.approx(brute_force_auc(-f, -h))
        assert ou == pytest.approx(brute_force_auc(f, h))
        assert muse + ou == pytest.approx(1.0)  # holds even with ties (counted as halves)


def test_memorised_forget_set_gives_privleak_minus_100():
    rng = np.random.default_rng(2)
    # target model: forget texts are memorised (low Min-k loss), holdout texts are not
    forget = rng.uniform(0.1, 0.5, size=50)
    holdout = rng.uniform(2.0, 4.0, size=50)
    auc = ms.mia_auc(forget, holdout)
    assert auc == 0.0
    assert ms.privleak(auc, 0.5) == -100.0
    # a model that saw neither set: same score distribution -> AUC 0.5 -> PrivLeak 0
    same = rng.uniform(2.0, 4.0, size=50)
    assert ms.mia_auc(same, same.copy()) == 0.5
    assert ms.privleak(ms.mia_auc(same, same.copy()), 0.5) == 0.0
    # roughly 0.5 on independent draws from one distribution
    assert abs(ms.mia_auc(rng.normal(size=400), rng.normal(size=400)) - 0.5) < 0.07


def test_privleak_by_hand_and_constants():
    assert ms.privleak(0.25, 0.5) == -50.0
    assert ms.privleak(0.75, 0.5) == 50.0
    assert mm.MUSE_AUC_RETRAIN == {"news": 0.4772, "books": 0.5393}
    assert ms.privleak(0.4772, mm.MUSE_AUC_RETRAIN["news"]) == 0.0
    # (0 - 0.4772) / 0.4772 * 100 = -100 for a fully memorised forget set
    assert ms.privleak(0.0, mm.MUSE_AUC_RETRAIN["news"]) == pytest.approx(-100.0)
    with pytest.raises(ValueError, match="auc_retrain"):
        ms.privleak(0.3, 0.0)
    with pytest.raises(ValueError, match="auc_unlearned"):
        ms.privleak(1.3, 0.5)


def test_mia_auc_errors():
    with pytest.raises(ValueError, match=r"scores_holdout has NaN scores at items \[1\]"):
        ms.mia_auc([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="scores_forget must be a non-empty"):
        ms.mia_auc([], [1.0])
    with pytest.raises(ValueError, match=r"'roc'.*muse, ou"):
        ms.mia_auc([1.0], [2.0], orientation="roc")
