"""IMTL-G (Liu et al., "Towards impartial multi-task learning", ICLR 2021), the gradient part, for
the two descent task vectors u = g_R and v = -g_F, with unit vectors e_u = u/||u||, e_v = v/||v||:
the combination g = (1 - alpha) u + alpha v whose projections on e_u and e_v are equal,
<g, e_u - e_v> = 0. The paper's closed form alpha_{2:K} = g_1 U^T (D U^T)^{-1}, with
D = g_1 - g_2 and U = e_1 - e_2, reads for two tasks

    alpha = <u, e_u - e_v> / <u - v, e_u - e_v> = ||u|| / (||u|| + ||v||),

so g = ||u|| ||v|| / (||u|| + ||v||) (e_u + e_v): NGDiff's direction g_R/||g_R|| - g_F/||g_F||
up to a positive scale (PAPER.md §1). When u and v are parallel the system is singular (every
alpha equalizes the projections) and the limit ||u|| / (||u|| + ||v||) is used.
"""
import math

from unlearn.methods.base import TwoTaskDirection, register_method


@register_method("imtlg")
class IMTLG(TwoTaskDirection):
    def coefficients(self, uu, vv, uv):
        eps = float(self.cfg.get("eps", 1e-8))
        nu, nv = math.sqrt(uu), math.sqrt(vv)
        num = nu - uv / (nv + eps)  # <u, e_u - e_v>
        den = num + nv - uv / (nu + eps)  # <u - v, e_u - e_v> = (||u|| + ||v||)(1 - cos)
        alpha = num / den if den > eps * (nu + nv) else nu / (nu + nv + eps)
        return 1.0 - alpha, alpha
