"""Loss pieces shared by every method and by evaluation (they exist once, here)."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

Batch = Mapping[str, Tensor]  # input_ids, attention_mask, labels (-100 = not scored)


def lm_loss(model: torch.nn.Module, batch: Batch) -> Tensor:
    """Next-token cross-entropy averaged over every scored token of the batch.

    This is the loss TOFU's ``forget.py`` and MUSE's unlearning code take from ``outputs.loss``:
    a token-level mean over the batch (not a mean of per-sequence means).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_mean_nll(logits, batch["labels"])


def token_mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100
    )


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
