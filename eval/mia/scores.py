"""Membership-inference scores as pure functions of per-token log-probs, their AUC and PrivLeak.

They reproduce MUSE's code (``swj0419/muse_bench`` @ ``fcd6651``, ``shared/reference/METRICS.md``
§2.3); open-unlearning's (OU) variants are named options. Both benchmarks' attacks
(:mod:`eval.mia.attacks`) score with them.

MIA scores are *loss-like*: higher means "looks less like training data". Their input is, per text,
the 1-D array of ``log p(token)`` for every text token after BOS (MUSE's ``compute_ppl``: the text
encoded with BOS, no truncation, no EOS; the first text token is predicted from BOS). AUCs are
fractions, PrivLeak is a percentage.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = [
    "MIN_K_VARIANTS",
    "AUC_ORIENTATIONS",
    "loss_score",
    "zlib_score",
    "min_k_score",
    "next_token_logprob_stats",
    "min_k_plus_plus_score",
    "mia_auc",
    "privleak",
]

#: Min-k% conventions: MUSE ``privleak.py`` L43-46 scores every text token and has no guard
#: (``k_len = 0`` -> NaN); OU ``mia/min_k.py`` drops the last scored token (meant for an EOS that
#: MUSE texts do not have) and takes at least one token.
MIN_K_VARIANTS: dict[str, dict[str, bool]] = {
    "muse": {"guard": False, "drop_last": False},
    "ou": {"guard": True, "drop_last": True},
}

#: ``"muse"``: forget = label 0, holdout = label 1, ROC on ``-score`` (``privleak.py`` L58-61,
#: L81-90). ``"ou"``: same labels, ROC on the raw score (``mia/utils.py``).
AUC_ORIENTATIONS = ("muse", "ou")


# ----------------------------------------------------------------------------------------
# MIA scores (METRICS.md §2.3): loss-like, one per text
# ----------------------------------------------------------------------------------------
def _logps(logps: Any, name: str = "logps") -> np.ndarray:
    a = np.asarray(logps, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-token log-probs, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def loss_score(logps: Any) -> float:
    """Mean NLL of the text's tokens (MUSE's ``PPL`` key is this loss, not its exp); NaN if empty."""
    a = _logps(logps)
    return float(-a.mean()) if a.size else float("nan")


def zlib_score(logps: Any, text: str, *, reduction: str = "mean") -> float:
    """zlib-normalised loss: ``NLL / len(zlib.compress(text.encode("utf-8")))``.

    The zlib attack of Carlini et al., "Extracting Training Data from Large Language Models"
    (USENIX Security 2021) divides the *log-perplexity*, i.e. the **mean** token NLL, by the
    zlib-compressed size of the text in bytes (default level). That is what MUSE's (commented-out)
    ``PPL/zlib`` (``privleak.py``: ``loss / zlib_entropy``), the Min-K% repository
    (``log(ppl) / zlib_entropy``) and OU ``mia/zlib.py`` (``avg_loss / zlib_entropy``) compute, so
    ``reduction="mean"`` is the default. ``reduction="sum"`` divides the summed NLL instead.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"unknown zlib reduction {reduction!r}; valid: mean, sum")
    a = _logps(logps)
    if a.size == 0:
        return float("nan")
    nll = float(-a.sum()) if reduction == "sum" else float(-a.mean())
    return nll / len(zlib.compress(text.encode("utf-8")))


def _lowest_k_mean(values: np.ndarray, k: float, guard: bool, drop_last: bool) -> float:
    """``-mean`` of the ``int(len * k)`` smallest values (NaN when that is 0, unless ``guard``)."""
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k!r}")
    if drop_last:
        values = values[:-1]
    # Same float expression as the references: int(100 * 0.29) == 28, not 29.
    k_len = int(len(values) * k)
    if guard:
        k_len = max(1, k_len)
    if k_len == 0 or len(values) == 0:
        return float("nan")  # MUSE: mean of an empty slice (NaN, with a numpy warning there)
    return float(-np.sort(values)[:k_len].mean())


def min_k_score(logps: Any, k: float = 0.4, *, guard: bool = False, drop_last: bool = False) -> float:
    """Min-k% Prob (Shi et al. 2024): ``-mean`` of the ``k_len = int(len * k)`` lowest log-probs.

    Defaults are MUSE's (``privleak.py`` L43-46, the PrivLeak score at ``k=0.4``): all tokens, no
    guard, so a text with ``int(len * k) == 0`` (fewer than 3 tokens at k=0.4) scores **NaN**, which
    :func:`mia_auc` rejects. ``guard=True`` takes at least one token; ``drop_last=True`` ignores the
    last token; ``**MIN_K_VARIANTS["ou"]`` sets both (OU ``mia/min_k.py``).
    """
    return _lowest_k_mean(_logps(logps), k, guard, drop_last)


def next_token_logprob_stats(vocab_logps: Any, *, min_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``log p`` under the model's next-token distribution, per position.

    ``vocab_logps``: shape ``(T, V)``, the log-softmax at the positions that predict the scored
    tokens. ``mu = sum_v p_v log p_v``, ``sigma = sqrt(sum_v p_v (log p_v)^2 - mu^2)`` (Min-K%++,
    Zhang et al. 2024). ``min_var`` floors the variance: 0 is the Min-K%++ repository, 1e-6 is OU's
    clamp (``mia/min_k_plus_plus.py``). Returns ``(mu, sigma)``, each of shape ``(T,)``.
    """
    lp = np.asarray(vocab_logps, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"vocab_logps must have shape (T, V), got {lp.shape}")
    p = np.exp(lp)
    # p log p -> 0 as p -> 0: zero the -inf log-probs so that 0 * -inf does not give NaN.
    lp = np.where(p > 0, lp, 0.0)
    mu = (p * lp).sum(-1)
    var = np.maximum((p * lp * lp).sum(-1) - mu * mu, min_var)
    return mu, np.sqrt(var)


def min_k_plus_plus_score(
    logps: Any, mu: Any, sigma: Any, k: float = 0.4, *, guard: bool = False,
    drop_last: bool = False,
) -> float:
    """Min-K%++ (Zhang et al. 2024): Min-k% over the standardised ``(log p - mu) / sigma``.

    ``mu`` / ``sigma`` per token from :func:`next_token_logprob_stats`. Returned negated (``-mean``
    of the lowest ``int(len * k)``), loss-like like the other scores here and as in OU; the Min-K%++
    repository reports the un-negated mean. ``guard`` / ``drop_last`` as in :func:`min_k_score`.
    """
    lp = _logps(logps)
    mu_a = _logps(mu, "mu")
    sigma_a = _logps(sigma, "sigma")
    if not lp.shape == mu_a.shape == sigma_a.shape:
        raise ValueError(f"logps, mu, sigma must have one value per token; got shapes "
                         f"{lp.shape}, {mu_a.shape}, {sigma_a.shape}")
    if (sigma_a <= 0).any():
        raise ValueError("sigma must be > 0 (floor the variance with next_token_logprob_stats"
                         "(min_var=...))")
    return _lowest_k_mean((lp - mu_a) / sigma_a, k, guard, drop_last)


# ----------------------------------------------------------------------------------------
# AUC and PrivLeak
# ----------------------------------------------------------------------------------------
def _scores(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores, got shape {a.shape}")
    bad = np.flatnonzero(np.isnan(a))
    if bad.size:
        raise ValueError(
            f"{name} has NaN scores at items {bad[:10].tolist()} (Min-k% of a text shorter than "
            "1/k tokens is NaN in MUSE; use guard=True or drop such texts)"
        )
    return a


def mia_auc(scores_forget: Any, scores_holdout: Any, orientation: str = "muse") -> float:
    """ROC AUC of the membership attack with forget = label 0 and holdout = label 1.

    * ``"muse"`` (default): ROC on ``-score`` (MUSE ``privleak.py``), so
      ``AUC = P(s_holdout < s_forget) + P(tie) / 2``: about 0 when the model memorised the forget
      set (its scores are lowest), about 0.5 when it saw neither set.
    * ``"ou"``: ROC on the raw score (OU ``roc_auc_score``), ``P(s_holdout > s_forget) + P(tie)/2``.

    Computed with the Mann-Whitney rank formula (average ranks for ties), which equals sklearn's
    trapezoidal ``roc_curve`` + ``auc`` / ``roc_auc_score``. With ties counted as half, the two
    orientations always sum to 1.
    """
    if orientation not in AUC_ORIENTATIONS:
        raise ValueError(f"unknown AUC orientation {orientation!r}; valid: {', '.join(AUC_ORIENTATIONS)}")
    neg = _scores(scores_forget, "scores_forget")
    pos = _scores(scores_holdout, "scores_holdout")
    if orientation == "muse":
        neg, pos = -neg, -pos
    from scipy import stats  # here: scipy.stats takes seconds to import

    ranks = stats.rankdata(np.concatenate([pos, neg]))  # average ranks: ties count 1/2
    n_pos, n_neg = pos.size, neg.size
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def privleak(auc_unlearned: float, auc_retrain: float) -> float:
    """PrivLeak = ``(AUC_unlearned - AUC_retrain) / AUC_retrain x 100`` (MUSE ``eval.py`` L78).

    Both AUCs in MUSE's orientation. ``auc_retrain`` is either :data:`eval.muse.metrics.MUSE_AUC_RETRAIN` (the
    published constant for Min-40%, real corpora only) or the AUC measured on the retrain model;
    record which. Negative = under-unlearning (the target model is near -100), positive =
    over-unlearning. OU adds 1e-10 to the denominator; here ``auc_retrain <= 0`` is an error.
    """
    u, r = float(auc_unlearned), float(auc_retrain)
    if not (0.0 <= u <= 1.0):
        raise ValueError(f"auc_unlearned must be in [0, 1], got {auc_unlearned!r}")
    if not (0.0 < r <= 1.0):
        raise ValueError(f"auc_retrain must be in (0, 1], got {auc_retrain!r}")
    return (u - r) / r * 100.0
