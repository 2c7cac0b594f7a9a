"""Loss pieces shared by every method and by evaluation (they exist once, here)."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

Batch = Mapping[str, Tensor]  # input_ids, attention_mask, labels (-100 = not scored)


TOKEN_NORMALIZER = "token_normalizer"  # optional batch entry: the denominator of the token mean


def lm_loss(model: torch.nn.Module, batch: Batch) -> Tensor:
    """Next-token cross-entropy averaged over every scored token of the batch.

    This is the loss TOFU's ``forget.py`` and MUSE's unlearning code take from ``outputs.loss``:
    a token-level mean over the batch (not a mean of per-sequence means).

    A batch carrying ``token_normalizer`` is one process's part of a global batch: the summed NLL is
    divided by it instead of by the local count. The engine sets it to (global scored-token count)
    / (number of processes), so that the processes' mean of this loss -- and DDP's average of its
    gradients -- is the token mean of the global batch (:mod:`unlearn.distributed`).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    normalizer = batch.get(TOKEN_NORMALIZER) if isinstance(batch, Mapping) else None
    if normalizer is None:
        return token_mean_nll(logits, batch["labels"])
    return token_sum_nll(logits, batch["labels"]) / normalizer


def token_mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100
    )


def token_sum_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """The summed next-token NLL over the scored tokens (the numerator of :func:`token_mean_nll`)."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100,
        reduction="sum",
    )


def scored_tokens(labels: Tensor) -> Tensor:
    """How many tokens :func:`lm_loss` scores in a batch (labels after the shift that are not -100)."""
    return (labels[:, 1:] != -100).sum()


def sequence_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sequence summed NLL over scored tokens and the number of scored tokens.

    TOFU's ``get_batch_loss``: shift by one, cross-entropy with ignore_index=-100, sum per row.
    The per-token loss of an item is ``sum / count`` (METRICS.md §1.2).
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(
        shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none"
    )
    return nll.sum(-1), (shift_labels != -100).sum(-1)


def token_nll(model: torch.nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """The next-token NLL at every position (B, T-1; 0 where not scored) and the scored mask."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return nll, labels != -100


def scored_mean(values: Tensor, mask: Tensor, batch: Batch | None = None) -> Tensor:
    """The mean of ``values`` over the masked positions (0, not NaN, for a batch with none).

    ``mask`` must be the batch's scored positions (``labels[:, 1:] != -100``) when ``batch`` is
    given: a batch that carries ``token_normalizer`` (one micro-batch of an effective batch, see
    :func:`lm_loss`) is then divided by it, so the token mean is the effective batch's, exactly as
    :func:`lm_loss`'s; a method that uses this for a task lists it in ``token_mean_tasks``."""
    normalizer = batch.get(TOKEN_NORMALIZER) if isinstance(batch, Mapping) else None
    if normalizer is not None:
        return values[mask].sum() / normalizer
    return values[mask].sum() / mask.sum().clamp(min=1)


def sequence_logprob(model: torch.nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """log pi(y|x) of each sequence (summed over its scored tokens) and its scored-token count |y|.

    The sequence likelihood of NPO, SimNPO and DPO (TOFU's ``get_batch_loss``, open-unlearning's
    ``compute_batch_nll``, negated).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    nll, count = sequence_nll(logits, batch["labels"])
    return -nll, count


def preference_loss(z: Tensor, beta: float) -> Tensor:
    """-(2/beta) * mean log sigmoid(z): the common form of NPO, SimNPO and DPO.

    The 2/beta factor is NPO's (Zhang et al. 2024), kept by open-unlearning for DPO too: with
    z = -beta * t the loss tends to mean(t) + const as beta -> 0, so the gradient keeps its scale
    whatever beta is (NPO -> gradient ascent in that limit).
    """
    return -(2.0 / beta) * F.logsigmoid(z).mean()


KL_POSITIONS = ("all", "scored")


def kl_to_reference(logits: Tensor, ref_logits: Tensor, labels: Tensor, positions: str = "all",
                    batch: Batch | None = None) -> Tensor:
    """KL(p_ref || p_theta) of the next-token distributions, averaged over positions.

    ``all`` (TOFU ``forget.py`` "KL", open-unlearning ``compute_kl_divergence``): every position of
    the padded batch -- prompt, answer, padding and the last one, which predicts nothing -- as
    ``kl_div(reduction="batchmean")`` over the flattened (batch * length, vocab) rows does.
    ``scored``: only the positions whose next token is scored (labels != -100 after the shift),
    the positions ``lm_loss`` averages over -- with ``batch``, as the effective batch's token mean
    (:func:`scored_mean`).
    """
    logp, ref_logp = F.log_softmax(logits.float(), -1), F.log_softmax(ref_logits.float(), -1)
    per_position = F.kl_div(logp, ref_logp, reduction="none", log_target=True).sum(-1)  # (B, T)
    if positions == "all":
        return per_position.mean()
    if positions == "scored":
        return scored_mean(per_position[:, :-1], labels[:, 1:] != -100, batch)
    raise ValueError(f"unknown KL positions {positions!r}; valid: {', '.join(KL_POSITIONS)}")
