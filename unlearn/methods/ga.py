"""Gradient ascent (GA): minimize -L_F, i.e. d = -g_F.

Jang et al., "Knowledge unlearning for mitigating privacy risks in language models" (ACL 2023);
the GA baseline of TOFU (Maini et al., 2024).
"""
from unlearn.methods.base import Method, register_method


@register_method("ga")
class GradientAscent(Method):
    tasks = ("forget",)

    def weights(self) -> dict[str, float]:
        return {"forget": -1.0}
