"""The membership-inference suite shared by the TOFU and MUSE evaluators: LOSS, zlib, Min-k%,
Min-k%++, all from the per-token arrays of ONE teacher-forced pass (:func:`eval.likelihood.score`
with ``tokens=True``) -- never a forward pass per attack.

Two more attacks need more than that pass and are opt-in (``extra_attacks``, :mod:`eval.mia.extra`):
``gradnorm`` (a backward pass per text) and ``reference`` (a second model's pass).

The score functions are :mod:`eval.mia.scores`'s (loss-like: higher = "looks less like training
data"); this module only maps a pass's arrays onto them and turns per-example scores into AUCs.
The evaluators keep the per-example scores in their logs, so every AUC can be recomputed from a
record.

AUCs are in MUSE's orientation (METRICS.md §2.3): members (``forget``) = label 0, non-members
(``holdout``) = label 1, ROC on ``-score``; about 0 when the model memorised the members, 0.5 when
it cannot tell them apart. open-unlearning's ``mia_*`` numbers are ``1 - AUC``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from eval.compat import OU_EPS
from eval.likelihood import Scores
from eval.mia import scores as ms
from eval.per_item import log_array

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")
EXTRA_ATTACKS = ("gradnorm", "reference")  # opt-in, eval/mia/extra.py; logged and AUC'd beside ATTACKS
GRADNORM_P = (1.0, 2.0, float("inf"))  # open-unlearning mia/gradnorm.py L15: p in [1, 2, inf]
PER_SAMPLE = ("vmap", "loop")  # how gradnorm's per-text gradients are taken
# Min-k%++ divides by sigma, the std of log p under the model's next-token distribution; a model
# that is certain of a token has sigma = 0 in float32. open-unlearning clamps the variance at 1e-6.
SIGMA_FLOOR = 1e-3


@dataclass(frozen=True)
class MiaSettings:
    k: float = 0.4                 # Min-k% / Min-k%++ ratio (MUSE's PrivLeak key: Min-40%)
    min_k_variant: str = "muse"    # muse: all tokens, no guard | ou: drop the last token, >= 1 token
    zlib_reduction: str = "mean"   # mean NLL / zlib bytes (Carlini et al., MUSE, OU) | sum
    extra_attacks: tuple[str, ...] = ()  # of EXTRA_ATTACKS; none by default (they cost more than the pass)
    gradnorm_p: float = 2.0        # per-parameter p-norm (OU tofu/muse_metrics/mia_gradnorm.yaml: p: 2)
    gradnorm_batch_size: int = 4   # texts per vmap call: memory ~ batch x parameters
    gradnorm_per_sample: str = "vmap"  # vmap: torch.func, batched | loop: one backward per text
    reference_model: str = "retain"  # target | retain | base (a stage) | a checkpoint path / Hub id

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_attacks", tuple(self.extra_attacks or ()))
        object.__setattr__(self, "gradnorm_p", float(self.gradnorm_p))
        bad = sorted(set(self.extra_attacks) - set(EXTRA_ATTACKS))
        if bad:
            raise ValueError(f"unknown MIA extra_attacks {bad}; valid: {', '.join(EXTRA_ATTACKS)}")
        if self.gradnorm_p not in GRADNORM_P:
            raise ValueError(f"MIA gradnorm_p must be 1, 2 or inf, got {self.gradnorm_p!r}")
        if self.gradnorm_per_sample not in PER_SAMPLE:
            raise ValueError(f"unknown MIA gradnorm_per_sample {self.gradnorm_per_sample!r}; valid: {', '.join(PER_SAMPLE)}")
        if self.min_k_variant not in ms.MIN_K_VARIANTS:
            raise ValueError(f"unknown Min-k variant {self.min_k_variant!r}; valid: {', '.join(ms.MIN_K_VARIANTS)}")
        if not 0 < float(self.k) <= 1:
            raise ValueError(f"MIA k must be in (0, 1], got {self.k!r}")

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | None, **defaults: Any) -> "MiaSettings":
        """From an ``eval.mia`` node (unknown keys ignored); ``defaults`` fill what it lacks."""
        values = {**defaults, **{k: v for k, v in dict(cfg or {}).items() if k in cls.__dataclass_fields__}}
        return cls(**values)


def attack_scores(logp: np.ndarray, mu: np.ndarray, sigma: np.ndarray, text: str, settings: MiaSettings) -> dict[str, float]:
    """Every attack's score of one text from its scored tokens' log p, mu and sigma."""
    variant = ms.MIN_K_VARIANTS[settings.min_k_variant]
    return {
        "loss": ms.loss_score(logp),
        "zlib": ms.zlib_score(logp, text, reduction=settings.zlib_reduction),
        "min_k": ms.min_k_score(logp, settings.k, **variant),
        "min_k_plus_plus": ms.min_k_plus_plus_score(logp, mu, np.maximum(sigma, SIGMA_FLOOR), settings.k, **variant),
    }


def group_scores(scores: Scores, items: Sequence[tuple[int, str]], settings: MiaSettings) -> dict[str, np.ndarray]:
    """Per-item scores of each attack for one group of texts (``forget``, ``holdout``, ...).

    ``items`` lists ``(index into the pass, text)``; the text is what the zlib attack compresses
    (the scored text itself: a MUSE document, a TOFU answer).
    """
    if not scores.logp:
        raise ValueError("MIA needs the per-token arrays: score(..., tokens=True)")
    per = [attack_scores(scores.logp[i], scores.mu[i], scores.sigma[i], text, settings) for i, text in items]
    return {a: np.array([p[a] for p in per], dtype=np.float64) for a in ATTACKS}


def logged_attacks(members: Mapping[str, Any], non_members: Mapping[str, Any]) -> tuple[str, ...]:
    """Every attack of :data:`ATTACKS` and those of :data:`EXTRA_ATTACKS` that both logs hold."""
    return ATTACKS + tuple(a for a in EXTRA_ATTACKS if a in members and a in non_members)


def mia_aucs(members: Mapping[str, Any], non_members: Mapping[str, Any], orientation: str = "muse") -> dict[str, float]:
    """AUC of each attack separating members (forget) from non-members (holdout); the arguments
    are logs, attack -> ``{"0": score0, "1": score1, ...}`` (the extra attacks where logged)."""
    return {a: ms.mia_auc(log_array(members, a), log_array(non_members, a), orientation)
            for a in logged_attacks(members, non_members)}


def privleak_score(auc: float, reference: float, open_unlearning: bool = False) -> float:
    """PrivLeak of an AUC against a reference AUC, both in MUSE's orientation: MUSE's ratio
    (:func:`eval.mia.scores.privleak`), NaN against a reference of 0 (a measured one can be, on a
    few texts); or open-unlearning's, whose ``+ 1e-10`` gives a huge number there instead."""
    if open_unlearning:
        return (auc - reference) / (reference + OU_EPS) * 100
    return ms.privleak(auc, reference) if reference > 0 else float("nan")
