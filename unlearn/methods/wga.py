"""Weighted gradient ascent (WGA), Wang et al., "Rethinking LLM unlearning objectives: a gradient
perspective and go beyond" (ICLR 2025, arXiv:2502.19301), with the retain term:

    L_WGA = -(1/N) sum_{scored tokens t} w_t * nll_t,   nll_t = -log p_t,   w_t = sg(p_t)^beta
    minimize c_F L_WGA + c_R L_R

p_t = pi_theta(y_t | x, y_<t) and sg a stop-gradient: the weight is the model's own confidence,
detached, so grad L_WGA = -(1/N) sum_t p_t^beta grad nll_t -- gradient ascent whose step on a token
fades once the token is unlikely (GA's 1/p_t inverse-confidence factor is what makes it run away).
beta = 0 is GA on the token mean.

N is the number of scored tokens of the step's effective batch (over its micro-batches and
processes, through the batch's ``token_normalizer`` as for the LM loss), so that every split of a
step takes the same update. Open-unlearning's ``compute_wga_loss`` (src/trainer/utils.py) takes
``.mean()`` over one micro-batch's tokens, which the HF Trainer then averages over accumulation
steps and DDP over processes: the same number with one micro-batch per step on one process, a
share-weighted mean of micro-batch means otherwise.
"""
from typing import Callable

import torch
from torch import Tensor

from unlearn.losses import Batch, scored_mean, token_nll
from unlearn.methods.base import RetainRegularized, nonnegative, register_method


def reweighted_ascent(model: torch.nn.Module, batch: Batch, weight: Callable[[Tensor], Tensor]) -> Tensor:
    """-(1/N) sum_t weight(sg(p_t)) nll_t over the scored tokens: WGA's and SatImp's forget objective."""
    nll, mask = token_nll(model, batch)
    return -scored_mean(weight(torch.exp(-nll.detach())) * nll, mask, batch)


class ReweightedAscent(RetainRegularized):
    """Token-level ascent weighted by ``weight(sg(p))`` (WGA, SatImp), plus the retain NLL."""

    def weight(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def token_mean_tasks(self):
        return self.tasks  # the forget loss is the effective batch's token mean too (scored_mean)

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        return reweighted_ascent(model, batch, self.weight)


@register_method("wga", forget_task=True)
class WGA(ReweightedAscent):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.beta = nonnegative(cfg, "beta", 1.0, "wga")

    def weight(self, p):
        return p ** self.beta
