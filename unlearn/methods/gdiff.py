"""Gradient difference (GDiff): minimize c_R L_R - c_F L_F, i.e. d = c_R g_R - c_F g_F.

Liu et al., "Continual learning and private unlearning" (CoLLAs 2022); TOFU's ``grad_diff``
uses c_R = c_F = 1. With other weights it is the weighted linear scalarization of the two tasks.
"""
from unlearn.methods.base import Method, register_method


@register_method("gdiff")
class GradDiff(Method):
    def weights(self) -> dict[str, float]:
        return {"retain": float(self.cfg["retain_weight"]), "forget": -float(self.cfg["forget_weight"])}
