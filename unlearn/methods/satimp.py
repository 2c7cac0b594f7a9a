"""SatImp, Yang et al., "Exploring criteria of loss reweighting to enhance LLM unlearning" (ICML 2025,
arXiv:2505.11953): token-weighted gradient ascent whose weight joins saturation (p^beta1: tokens
already unlikely -- saturated -- get little weight) and importance ((1-p)^beta2), plus the retain term:

    L_SatImp = -(1/N) sum_{scored tokens t} sg(p_t)^beta1 (1 - sg(p_t))^beta2 nll_t
    minimize c_F L_SatImp + c_R L_R

p_t = pi_theta(y_t | x, y_<t), detached (sg); beta2 = 0 is WGA with beta = beta1. N is the
effective batch's scored-token count, as for WGA (open-unlearning ``compute_satimp_loss``,
src/trainer/utils.py; the normalization is discussed in :mod:`unlearn.methods.wga`).

Weights: open-unlearning's class and its community README (the paper's setting, which selects by
ES) use c_F = gamma = 1, c_R = alpha = 0.1, the defaults here; its configs/trainer/SatImp.yaml swaps
them (gamma 0.1, alpha 1), which ``recipe=tofu_open_unlearning`` / ``muse_open_unlearning`` set
(conf/method_recipe/).
"""
from unlearn.methods.base import nonnegative, register_method
from unlearn.methods.wga import ReweightedAscent


@register_method("satimp", forget_task=True)
class SatImp(ReweightedAscent):
    def __init__(self, cfg) -> None:
        super().__init__({"retain_weight": 0.1, **cfg})  # the README's c_R (see above)
        self.beta1 = nonnegative(cfg, "beta1", 5.0, "satimp")
        self.beta2 = nonnegative(cfg, "beta2", 1.0, "satimp")

    def weight(self, p):
        return p ** self.beta1 * (1 - p) ** self.beta2
