"""Normalized gradient difference (NGDiff), Bu et al., NAACL 2025 (arXiv:2410.22086), eq. for d:

    d = g_R / ||g_R|| - g_F / ||g_F||

with global L2 norms over all trainable parameters (across processes) and an epsilon guard
(``||g|| + eps``). Then <d, g_R> = ||g_R||(1 - cos) >= 0 and <d, g_F> = -||g_F||(1 - cos) <= 0:
a small step lowers L_R and raises L_F whatever the gradients' scales, and ||d|| is in [0, 2].
"""
from unlearn.gradients import TaskGradients
from unlearn.methods.base import Method, register_method


@register_method("ngdiff")
class NGDiff(Method):
    def combination(self, grads: TaskGradients) -> dict[str, float]:
        eps = float(self.cfg.get("eps", 1e-8))
        return {"retain": 1.0 / (grads.norm("retain") + eps), "forget": -1.0 / (grads.norm("forget") + eps)}
