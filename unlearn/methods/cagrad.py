"""CAGrad (Liu et al., "Conflict-averse gradient descent for multi-task learning", NeurIPS 2021)
for the two descent task vectors u = g_R and v = -g_F, with g0 = (u + v) / 2:

    max_d min_i <g_i, d>   s.t.  ||d - g0|| <= c ||g0||

Its dual over the simplex, w = (p, 1 - p), g_w = p u + (1 - p) v, s = c ||g0||:

    p* = argmin_{p in [0,1]} F(p) = <g_w, g0> + s ||g_w||,     d = g0 + (s / ||g_w||) g_w*

``rescale: true`` divides d by 1 + c^2 as the official K-task code does by default; its two-task
code (and our default) does not.

F is convex in p, so for two tasks the dual is solved exactly: with a = u - v, A = ||a||^2,
B = <a, v>, D = A ||v||^2 - B^2 (>= 0), k = <a, g0>, and t = A p + B,
F'(p) = k + s t sqrt(A) / sqrt(t^2 + D), increasing in t. F' = 0 at
t = r sqrt(D / (A - r^2)), r = -k / s, when r^2 < A; otherwise F' keeps one sign and p* is the
end of [0, 1] it points to. p* = clip((t - B) / A, 0, 1). (No iterative solver: the official
code's SLSQP call is replaced by this closed form, checked against a grid in the tests.)
At a Pareto-stationary point (g_w* = 0) the correction has no direction and d = g0.
"""
import math

from unlearn.methods.base import TwoTaskDirection, register_method


def cagrad_weight(uu: float, vv: float, uv: float, s: float) -> float:
    """p* in [0, 1]: the weight of u in the dual's minimizer g_w = p u + (1 - p) v."""
    A, B = uu + vv - 2 * uv, uv - vv
    k = (uu - vv) / 2  # <u - v, (u + v) / 2>
    if A <= 0:  # u == v: g_w does not depend on p
        return 0.5
    if s <= 0:  # F is linear in p with slope k
        return 0.0 if k > 0 else 1.0
    r = -k / s
    if r * r >= A:  # no stationary point: F decreases (r > 0) or increases on [0, 1]
        return 1.0 if r > 0 else 0.0
    t = r * math.sqrt(max(A * vv - B * B, 0.0) / (A - r * r))
    return min(1.0, max(0.0, (t - B) / A))


@register_method("cagrad")
class CAGrad(TwoTaskDirection):
    def coefficients(self, uu, vv, uv):
        c = float(self.cfg.get("c", 0.5))
        s = c * math.sqrt(max(uu + vv + 2 * uv, 0.0)) / 2  # c ||g0||
        p = cagrad_weight(uu, vv, uv, s)
        gw_norm = math.sqrt(max(p * p * uu + (1 - p) ** 2 * vv + 2 * p * (1 - p) * uv, 0.0))
        # g_w = 0 (a Pareto-stationary point) leaves the correction without a direction; near it
        # lam * (p u + (1-p) v) is a float32 cancellation of huge terms, so it is dropped (d = g0)
        # where the official code's s / (||g_w|| + 1e-8) would amplify rounding noise.
        lam = s / gw_norm if gw_norm > 1e-6 * math.sqrt(max(uu, vv)) else 0.0
        scale = 1.0 / (1.0 + c * c) if self.cfg.get("rescale", False) else 1.0
        return scale * (0.5 + lam * p), scale * (0.5 + lam * (1 - p))
