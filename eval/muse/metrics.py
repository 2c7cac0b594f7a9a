"""MUSE metrics as pure functions of generations and per-token log-probs.

By default everything reproduces the original MUSE code (``swj0419/muse_bench`` @ ``fcd6651``,
``shared/reference/METRICS.md`` §2); open-unlearning's (OU) variants are named options.

* VerbMem  -> ``metrics/verbmem.py`` + ``logger.py``: ROUGE-L **F1**, no stemmer, against the first
  127 gt tokens (:func:`truncate_gt_tokens`), x100 (§2.1)
* KnowMem  -> ``metrics/knowmem.py``: ICL prompt (:func:`knowmem_prompt`), output cut at stop
  strings (:func:`cut_at_stop_strings`), ROUGE-L F1, x100 (§2.2). On ``retain_qa`` it is MUSE's
  *utility preservation*.
* PrivLeak -> ``metrics/privleak.py`` + ``eval.py`` L78: Min-40% scores, AUC with forget = label 0
  and holdout = label 1 on ``-score``, ``(AUC - AUC_retrain) / AUC_retrain x 100`` (§2.3); the
  scores, the AUC and the ratio are :mod:`eval.mia.scores` (TOFU's membership attacks use them too)

Scales: per-item values are fractions (as in MUSE's logs); the aggregated VerbMem / KnowMem scores
are x100 (as MUSE reports them; OU reports fractions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eval.rouge import rouge_l

__all__ = [
    "STOP_STRINGS",
    "MUSE_SCALE",
    "MUSE_AUC_RETRAIN",
    "cut_at_stop_strings",
    "rouge_l_f1",
    "truncate_gt_tokens",
    "verbmem_score",
    "knowmem_prompt",
    "knowmem_score",
]

#: KnowMem stop strings (``metrics/knowmem.py`` L50), applied to the decoded new tokens.
STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")

#: MUSE reports VerbMem / KnowMem as 100 x mean ROUGE-L F1 (``eval.py`` L65, L95, L112).
MUSE_SCALE = 100.0

#: AUC of the *retrained* model for ``forget_holdout_Min-40%`` (MUSE ``constants.py`` L62 / L163,
#: stored there as 0.47719999999999996 / 0.5392999999999999), the PrivLeak reference.
MUSE_AUC_RETRAIN = {"news": 0.4772, "books": 0.5393}


# ----------------------------------------------------------------------------------------
# Generation-based metrics (METRICS.md §2.1, §2.2)
# ----------------------------------------------------------------------------------------
def cut_at_stop_strings(text: str, stops: Sequence[str] = STOP_STRINGS) -> str:
    """``text`` up to (excluding) the first occurrence of any of ``stops``; no stripping.

    MUSE's ``get_prefix_before_words_occur`` splits on each stop in turn and keeps part 0, which is
    the same as cutting at the earliest occurrence of any of them. Idempotent.
    """
    cut = len(text)
    for stop in stops:
        if not stop:
            raise ValueError("cut_at_stop_strings: empty stop string")
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def rouge_l_f1(gt: str, gen: str, stemmer: bool = False) -> float:
    """ROUGE-L F1 of ``gen`` against ``gt`` (rouge-score, ``use_stemmer=False`` as in MUSE;
    OU uses ``stemmer=True``)."""
    return rouge_l(gt, gen, kind="f1", stemmer=stemmer)


def _rouge_items(gts: Sequence[str], gens: Sequence[str], stemmer: bool) -> np.ndarray:
    gts, gens = list(gts), list(gens)
    if len(gts) != len(gens):
        raise ValueError(f"{len(gts)} references vs {len(gens)} generations")
    if not gts:
        raise ValueError("no items to score")
    return np.array([rouge_l_f1(g, p, stemmer=stemmer) for g, p in zip(gts, gens)],
                    dtype=np.float64)


def truncate_gt_tokens(tokenizer: Any, gt: str, max_tokens: int = 128) -> str:
    """MUSE's VerbMem reference: ``decode(tokenizer(gt, add_special_tokens=True).input_ids[:128])``.

    ``metrics/verbmem.py`` cuts the *encoded-with-BOS* gt at ``max_new_tokens`` (128), so with a
    Llama-style tokenizer the BOS takes one place and the first **127** gt tokens remain; decoding
    uses ``skip_special_tokens=True, clean_up_tokenization_spaces=True``. A tokenizer that adds no
    BOS keeps 128 tokens. ``tokenizer`` is any HF tokenizer (callable, with ``decode``).
    """
    ids = tokenizer(gt, add_special_tokens=True)["input_ids"][:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


def verbmem_score(
    gts: Sequence[str], gens: Sequence[str], *, stemmer: bool = False
) -> tuple[float, np.ndarray]:
    """VerbMem: ``(100 x mean ROUGE-L F1, per-item F1)``.

    ``gts`` are the references already cut by :func:`truncate_gt_tokens`, ``gens`` the decoded
    greedy continuations (128 new tokens in MUSE; no stop strings). ``stemmer=True`` is OU's
    scoring (OU also uses the full gt, not 127 tokens: pass untruncated gts for that).
    """
    per_item = _rouge_items(gts, gens, stemmer)
    return MUSE_SCALE * float(per_item.mean()), per_item


def knowmem_prompt(icl_pairs: Sequence[Any], question: str) -> str:
    """MUSE's in-context prompt (``metrics/knowmem.py``), ending with ``"Answer: "``.

    ``"".join(f"Question: {q}\\nAnswer: {a}\\n\\n" for q, a in icl_pairs) +
    f"Question: {question}\\nAnswer: "``. ``icl_pairs`` holds ``(question, answer)`` pairs or rows
    with ``question`` / ``answer`` keys (e.g. the ``*_qa_icl`` dataset itself).
    """
    parts = []
    for pair in icl_pairs:
        q, a = (pair["question"], pair["answer"]) if isinstance(pair, Mapping) else pair
        parts.append(f"Question: {q}\nAnswer: {a}\n\n")
    return "".join(parts) + f"Question: {question}\nAnswer: "


def knowmem_score(
    answers: Sequence[str],
    gens: Sequence[str],
    *,
    stops: Sequence[str] = STOP_STRINGS,
    stemmer: bool = False,
) -> tuple[float, np.ndarray]:
    """KnowMem: ``(100 x mean ROUGE-L F1, per-item F1)`` of the generations against the raw answers.

    Each generation (the decoded new tokens, up to 32 in MUSE) is first cut with
    :func:`cut_at_stop_strings` (idempotent, so pre-cut generations are fine; ``stops=()`` skips
    it). ``stemmer=True`` is OU's scoring.
    """
    cut = [cut_at_stop_strings(g, stops) for g in gens] if stops else list(gens)
    per_item = _rouge_items(answers, cut, stemmer)
    return MUSE_SCALE * float(per_item.mean()), per_item
