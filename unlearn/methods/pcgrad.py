"""PCGrad (Yu et al., "Gradient surgery for multi-task learning", NeurIPS 2020) for the two
descent task vectors u = g_R and v = -g_F: when they conflict (<u, v> < 0), each is projected onto
the normal plane of the other (the other's *original* vector, as in the paper), then summed:

    d = (u - <u,v>/||v||^2 v) + (v - <u,v>/||u||^2 u)   if <u, v> < 0,   else d = u + v

With two tasks the random task order of the paper does not matter.
"""
from unlearn.methods.base import TwoTaskDirection, register_method


@register_method("pcgrad")
class PCGrad(TwoTaskDirection):
    def coefficients(self, uu, vv, uv):
        if uv >= 0:  # no conflict: plain sum (GDiff with weights 1, 1)
            return 1.0, 1.0
        return 1.0 - uv / uu, 1.0 - uv / vv  # uv < 0 implies both norms > 0
