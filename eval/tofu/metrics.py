"""TOFU metrics as pure functions of per-item quantities.

Everything here reproduces the reference TOFU implementation
(``locuslab/tofu`` @ ``bdc209e``), as documented in
``shared/reference/METRICS.md`` §1.3-1.7 and §3:

* Prob. (retain / forget)  -> ``aggregate_eval_stat.py`` L46-49
* Prob. (Real Authors / World Facts, option-normalised) -> ``aggregate_eval_stat.py`` L50-54
* Truth ratio, geometric    -> ``aggregate_eval_stat.py`` L61-71 (the documented path, also OU)
* Truth ratio, arithmetic   -> ``utils.py`` L117-132 (``forget.py``'s in-training eval)
* Forget quality            -> ``aggregate_eval_stat.py`` L10-26 (= ``utils.py`` L142-158)
* Model utility             -> ``aggregate_eval_stat.py`` L74-78
* ROUGE-L recall            -> ``evaluate_util.py`` L348-358 (:func:`eval.rouge.rouge_l`, shared with MUSE)

The inputs are per-token (length-normalised) NLLs, i.e. the ``avg_*`` fields of
TOFU's per-sample logs; the functions do not care where they come from.

Convention: ``R`` is *perturbed over base* (wrong over right), so a model that
knows the answer has ``R < 1`` (METRICS.md §1.5, "Direction").
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from eval.compat import OU_EPS

__all__ = [
    "TR_VARIANTS",
    "TR_STAT_KINDS",
    "MODEL_UTILITY_KEYS",
    "probability",
    "normalized_probability",
    "truth_ratio",
    "truth_ratio_stat",
    "forget_quality",
    "model_utility",
]

#: Per-item truth-ratio variants. "geometric" is ``aggregate_eval_stat.py`` (and OU);
#: "arithmetic" is TOFU ``utils.py``. They differ by ~0.04 in MU on real logs (§1.5).
TR_VARIANTS = ("geometric", "arithmetic", "open_unlearning")


def tr_eps(variant: str) -> float:
    """The guard a truth-ratio variant adds to its denominators: open-unlearning's 1e-10, else 0."""
    return OU_EPS if variant == "open_unlearning" else 0.0

#: Aggregations of the per-item ratio: forget set vs. retain/RA/WF (§1.5 "Aggregation").
TR_STAT_KINDS = ("forget", "utility")

#: The nine numbers whose harmonic mean is Model Utility (§1.7):
#: {retain, ra, wf} x {prob, rouge, truth_ratio}.
MODEL_UTILITY_KEYS = tuple(
    f"{task}_{metric}"
    for task in ("retain", "ra", "wf")
    for metric in ("prob", "rouge", "truth_ratio")
)


# ----------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------
def _vector(x, name: str) -> np.ndarray:
    """1-D, non-empty float64 array without NaN (fail loudly instead of averaging NaN)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per item), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN at items {np.flatnonzero(np.isnan(a))[:10].tolist()}")
    return a


def _matrix(x, name: str, n: int) -> np.ndarray:
    """(n, K) float64 array, K >= 1, without NaN (per-item perturbed-answer losses)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n={n}, K>=1), got {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


# ----------------------------------------------------------------------------------------
# Probability (METRICS.md §1.3)
# ----------------------------------------------------------------------------------------
def probability(avg_loss) -> float:
    """TOFU "Prob." of the retain and forget sets: ``mean_i exp(-avg_loss_i)``.

    Reference: TOFU ``aggregate_eval_stat.py`` L46-49 (same in ``utils.py`` L102-110),
    applied to ``avg_gt_loss`` of ``eval_log.json`` / ``eval_log_forget.json``.
    ``avg_loss`` is the per-token NLL, so this is the mean *length-normalised*
    probability of the answer, not the probability of the whole sequence.
    """
    a = _vector(avg_loss, "avg_loss")
    return float(np.mean(np.exp(-a)))


def normalized_probability(avg_gt_loss, avg_perturb_loss, eps: float = 0.0) -> tuple[float, np.ndarray]:
    """TOFU "Prob." of Real Authors / World Facts: ``p / (p + sum_k p_k)``, averaged.

    ``p = exp(-avg_gt_loss_i)`` and ``p_k = exp(-avg_perturb_loss_ik)`` are
    length-normalised probabilities (the code, not the paper's unnormalised form:
    METRICS.md §1.3 "Paper vs code"). Reference: ``aggregate_eval_stat.py`` L50-54.

    To match the TOFU logs bit-for-bit pass ``avg_gt_loss`` (answer loader, batch 30),
    *not* ``avg_paraphrased_loss`` (METRICS.md §3.2).

    Returns ``(mean, per_item)``; ``avg_perturb_loss`` has shape ``(n, K)``. ``eps`` is added
    to the denominator (open-unlearning: :data:`OU_EPS`; TOFU: none).
    """
    gt = _vector(avg_gt_loss, "avg_gt_loss")
    pert = _matrix(avg_perturb_loss, "avg_perturb_loss", gt.size)
    p = np.exp(-gt)
    # Same op order as the reference: concatenate [p, p_1..p_K] and sum along the row.
    denom = np.concatenate([p[:, None], np.exp(-pert)], axis=1).sum(-1)
    per_item = p / (denom + eps)
    return float(np.mean(per_item)), per_item


# ----------------------------------------------------------------------------------------
# Truth ratio (METRICS.md §1.5)
# ----------------------------------------------------------------------------------------
def truth_ratio(avg_base_loss, avg_perturb_loss, variant: str = "geometric") -> np.ndarray:
    """Per-item truth ratio ``R`` = perturbed over base (wrong over right).

    ``avg_base_loss``: per-token NLL of the *base* answer -- ``avg_paraphrased_loss``
    in TOFU logs (paraphrased answer for retain/forget, the answer itself for RA/WF,
    scored by the base loader). ``avg_perturb_loss``: shape ``(n, K)``.

    Variants (METRICS.md §1.5 table):

    * ``"geometric"`` -- ``R = exp(L_base - mean_k L_k)``: geometric mean of the
      perturbed probabilities over ``p_base``. TOFU ``aggregate_eval_stat.py`` L61-66,
      the log field ``truth_ratio`` and OU all use this one; it is the default.
    * ``"arithmetic"`` -- ``R = mean_k exp(-L_k) / exp(-L_base)``. TOFU ``utils.py``
      L117-127 (``forget.py``'s ``aggregate_stat.csv``). Note the reference computes
      this one in float32 torch; here it is float64 (differences ~1e-7 relative).

    * ``"open_unlearning"`` -- the geometric R as open-unlearning computes it,
      ``exp(-mean_k L_k) / (exp(-L_base) + 1e-10)`` (``memorization.py`` ``truth_ratio``).

    By AM >= GM the arithmetic R is never below the geometric R.
    """
    if variant not in TR_VARIANTS:
        raise ValueError(f"unknown truth-ratio variant {variant!r}; valid: {', '.join(TR_VARIANTS)}")
    base = _vector(avg_base_loss, "avg_base_loss")
    pert = _matrix(avg_perturb_loss, "avg_perturb_loss", base.size)
    if variant == "geometric":
        # The reference computes curr = exp(mean_k L_k - L_base) (= 1/R) and then uses
        # 1/curr; computing R the same way keeps max(0, 1-R) bit-identical to it.
        return 1.0 / np.exp(pert.mean(axis=-1) - base)
    if variant == "open_unlearning":
        return np.exp(-pert.mean(axis=-1)) / (np.exp(-base) + OU_EPS)
    return np.exp(-pert).mean(axis=-1) / np.exp(-base)


def truth_ratio_stat(R, kind: str, eps: float = 0.0) -> float:
    """Aggregate per-item truth ratios the way TOFU reports them.

    * ``kind="forget"``  -> ``mean_i min(R_i, 1/R_i)`` (forget set; 1 is best: the model
      is as unsure of the true answer as of the perturbed ones).
    * ``kind="utility"`` -> ``mean_i max(0, 1 - R_i)`` (retain / RA / WF; enters MU).

    Applied per item, then averaged -- not applied to an averaged R (METRICS.md §1.5,
    "Answer to the brief's question"). Reference: ``aggregate_eval_stat.py`` L68-71,
    ``utils.py`` L129-132. ``eps``: open-unlearning's ``min(R, 1/(R + 1e-10))``.
    """
    if kind not in TR_STAT_KINDS:
        raise ValueError(f"unknown truth-ratio statistic {kind!r}; valid: {', '.join(TR_STAT_KINDS)}")
    r = _vector(R, "R")
    if kind == "forget":
        # R == 0 (exp underflow) gives 1/R = inf and min = 0: fine, just silence numpy.
        with np.errstate(divide="ignore"):
            return float(np.mean(np.minimum(r, 1.0 / (r + eps))))
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


# ----------------------------------------------------------------------------------------
# Forget quality (METRICS.md §1.6)
# ----------------------------------------------------------------------------------------
def forget_quality(tr_model, tr_retain) -> tuple[float, float]:
    """Forget Quality: p-value of the two-sided two-sample KS test.

    Compares the per-item forget-set truth ratios of the evaluated model with those
    of the *retain* model evaluated on the *same forget split*. Samples are unpaired.

    Reference: ``aggregate_eval_stat.py`` L10-26 calls ``ks_2samp`` with scipy's default
    ``method='auto'``, which is the exact distribution for ``max(n, m) <= 10000`` -- always
    the case for TOFU (40/200/300 items). We request ``method="exact"`` explicitly because
    the asymptotic formula is off by ~2x around p ~ 1e-21 (METRICS.md §1.6). If scipy cannot
    compute the exact value it falls back to asymptotic with a ``RuntimeWarning`` -- the
    same thing the reference's ``auto`` does.

    KS is invariant under a strictly monotone map applied to both samples, so passing
    ``R`` (OU) or ``1/R`` (TOFU's ``curr``) gives the same result; pass the same kind for
    both samples.

    Returns ``(pvalue, D)`` where D is TOFU's "KS Test Forget".
    """
    a = _vector(tr_model, "tr_model")
    b = _vector(tr_retain, "tr_retain")
    from scipy import stats  # here, not at import: scipy.stats takes seconds a config error should not wait

    res = stats.ks_2samp(a, b, alternative="two-sided", method="exact")
    return float(res.pvalue), float(res.statistic)


# ----------------------------------------------------------------------------------------
# Model utility (METRICS.md §1.7)
# ----------------------------------------------------------------------------------------
def model_utility(values: Mapping[str, float]) -> float:
    """Harmonic mean of exactly the nine numbers in :data:`MODEL_UTILITY_KEYS`.

    ``{retain, ra, wf} x {prob, rouge, truth_ratio}``: retain Prob is the raw
    probability, RA/WF Prob the option-normalised one, ROUGE is ROUGE-L recall and
    Truth Ratio is ``mean max(0, 1-R)``. Extra keys (e.g. ``forget_*``) are ignored, so
    the dict from :func:`eval.tofu.logs.aggregate_tofu_run` can be passed directly.

    Reference: ``aggregate_eval_stat.py`` L74-78 (``scipy.stats.hmean`` of all keys
    without "Forget"); OU ``utility.py`` L13-16. hmean semantics: any 0 gives 0.
    A missing key raises (TOFU would silently hmean an empty list), and so does a
    negative or NaN value (recent scipy returns NaN with a warning instead of raising).
    """
    missing = [k for k in MODEL_UTILITY_KEYS if k not in values]
    if missing:
        raise ValueError(f"model_utility: missing key(s) {', '.join(missing)}; need {', '.join(MODEL_UTILITY_KEYS)}")
    vals = np.array([float(values[k]) for k in MODEL_UTILITY_KEYS], dtype=np.float64)
    bad = [k for k, v in zip(MODEL_UTILITY_KEYS, vals) if np.isnan(v) or v < 0]
    if bad:
        raise ValueError(f"model_utility: values must be >= 0 and not NaN; bad: "
                         + ", ".join(f"{k}={values[k]!r}" for k in bad))
    if (vals == 0).any():
        # hmean's value for a zero entry; returning directly avoids a divide warning.
        return 0.0
    from scipy import stats

    return float(stats.hmean(vals))
