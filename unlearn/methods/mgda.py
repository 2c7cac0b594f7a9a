"""MGDA (Désidéri 2012; Sener & Koltun, "Multi-task learning as multi-objective optimization",
NeurIPS 2018) for the two descent task vectors u = g_R and v = -g_F: the min-norm point of
their convex hull,

    d = alpha u + (1 - alpha) v,   alpha = clip(<v - u, v> / ||u - v||^2, 0, 1)

(the minimizer of ||alpha u + (1 - alpha) v||^2 over [0, 1]). d = 0 exactly at Pareto-stationary
points; clipping gives d = v when <u, v> >= ||v||^2 and d = u when <u, v> >= ||u||^2.
"""
from unlearn.methods.base import TwoTaskDirection, register_method


@register_method("mgda")
class MGDA(TwoTaskDirection):
    def coefficients(self, uu, vv, uv):
        dist2 = uu + vv - 2 * uv  # ||u - v||^2
        alpha = 0.5 if dist2 <= 0 else min(1.0, max(0.0, (vv - uv) / dist2))  # u == v: any alpha
        return alpha, 1.0 - alpha
