"""ROUGE-L via google ``rouge-score``, shared by the TOFU and MUSE metrics and open-unlearning's files.

TOFU scores recall with the Porter stemmer (METRICS.md §1.4); MUSE scores F1 without it (§2.1, §3.4).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

__all__ = ["ROUGE_KINDS", "rouge_l", "rouge_l_batch"]

#: Which field of rouge-score's ``Score`` tuple to return.
ROUGE_KINDS = {"recall": "recall", "precision": "precision", "f1": "fmeasure"}


@functools.lru_cache(maxsize=None)
def _scorer(stemmer: bool, types: tuple[str, ...] = ("rougeL",)):
    # Imported lazily: rouge-score pulls in nltk, which the numeric metrics don't need.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(types), use_stemmer=stemmer)


def rouge_l(gt: str, gen: str, *, kind: str = "recall", stemmer: bool = True, scorer=None) -> float:
    """ROUGE-L of generation ``gen`` against reference ``gt`` via google ``rouge-score``.

    TOFU (``evaluate_util.py`` L348-358): ``RougeScorer(..., use_stemmer=True)
    .score(gt, gen)['rougeL'].recall`` -- recall, with the Porter stemmer, target first.
    MUSE uses ``kind="f1", stemmer=False`` (METRICS.md §2.1/§3.4). Only the ``rougeL``
    type is computed; adding ``rouge1`` to the scorer does not change ``rougeL``.
    Pin ``rouge-score==0.1.2``: nltk's stemmer can change scores across versions. ``scorer``:
    one built by :func:`rouge_l_batch` (``stemmer`` is then its own).
    """
    if kind not in ROUGE_KINDS:
        raise ValueError(f"unknown ROUGE kind {kind!r}; valid: {', '.join(ROUGE_KINDS)}")
    if not isinstance(gt, str) or not isinstance(gen, str):
        raise TypeError(f"rouge_l expects str, got {type(gt).__name__} and {type(gen).__name__}")
    score = (scorer or _scorer(bool(stemmer))).score(target=gt, prediction=gen)["rougeL"]
    return float(getattr(score, ROUGE_KINDS[kind]))


def rouge_l_batch(gts: Sequence[str], gens: Sequence[str], *, kind: str = "recall", stemmer: bool = True) -> np.ndarray:
    """:func:`rouge_l` item by item; returns a float64 array of len(gts). One scorer serves the
    batch, its Porter stemmer memoized: each distinct word is stemmed once (rouge-score stems
    word by word, so the tokens are its own)."""
    gts, gens = list(gts), list(gens)
    if len(gts) != len(gens):
        raise ValueError(f"rouge_l_batch: {len(gts)} references vs {len(gens)} generations")
    scorer = _memo_scorer(bool(stemmer))
    return np.array([rouge_l(g, p, kind=kind, scorer=scorer) for g, p in zip(gts, gens)], dtype=np.float64)


class _MemoStemmer:
    """A Porter stemmer that stems each distinct word once."""

    def __init__(self, stemmer) -> None:
        self._stem, self._memo = stemmer.stem, {}

    def stem(self, word: str) -> str:
        out = self._memo.get(word)
        if out is None:
            out = self._memo[word] = self._stem(word)
        return out


def _memo_scorer(stemmer: bool):
    """A fresh ROUGE-L scorer (its memo lives as long as the batch), the stemmer memoized."""
    from rouge_score import rouge_scorer, tokenizers

    tok = tokenizers.DefaultTokenizer(use_stemmer=stemmer)
    if stemmer:
        tok._stemmer = _MemoStemmer(tok._stemmer)  # rouge-score's tokenize() calls only .stem(word)
    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=tok)
