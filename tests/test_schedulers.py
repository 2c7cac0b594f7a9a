"""Fixed schedules as pure functions of the step; GeN on quadratics where the answer is known."""
import math

import pytest

from unlearn.schedulers import GeN, build_scheduler


def test_constant_linear_cosine():
    c = build_scheduler({"name": "constant"}, 1.0, 10)
    assert [c.lr(s) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    lin = build_scheduler({"name": "linear", "warmup_ratio": 0.2}, 1.0, 10)  # 2 warmup steps
    assert [lin.lr(s) for s in range(4)] == pytest.approx([0.5, 1.0, 1.0, 7 / 8])
    assert lin.lr(10) == 0.0
    cos = build_scheduler({"name": "cosine", "warmup_ratio": 0.0, "min_lr_ratio": 0.1}, 2.0, 10)
    assert cos.lr(0) == pytest.approx(2.0)
    assert cos.lr(5) == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cos.lr(10) == pytest.approx(0.2)


def test_bad_scheduler_input():
    with pytest.raises(KeyError, match="valid schedulers: constant, cosine, gen, linear"):
        build_scheduler({"name": "step"}, 1.0, 10)
    with pytest.raises(ValueError, match="positive"):
        build_scheduler({"name": "constant"}, 0.0, 10)
    with pytest.raises(ValueError, match="clip"):
        GeN(1.0, 10, {"clip": [2.0, 3.0]})


def quad(h, x0):
    return lambda x: 0.5 * h * (x - x0) ** 2


def probe(f, w, g, eta):
    """The engine's protocol for plain GD (delta = -eta * g): L0, L(w + delta), L(w - delta)."""
    return f(w), f(w - eta * g), f(w + eta * g)


def test_gen_single_fit_recovers_the_vertex_of_a_quadratic():
    # f(w) = h/2 (w - x0)^2; along d = g the exact minimizer is eta* = 1/h
    h, x0, w = 4.0, 1.0, 3.0
    g = h * (w - x0)
    sched = GeN(0.2, 100, {"ema": 0.0, "clip": [0.5, 2.0]})  # no smoothing: the rate is the fit
    fit = sched.observe(0, *probe(quad(h, x0), w, g, 0.2), eta=0.2)
    assert fit.accepted
    assert fit.a == pytest.approx(h * g**2)  # curvature along the step, per unit rate
    assert fit.b == pytest.approx(g**2)
    assert fit.candidate == pytest.approx(1 / h)
    assert sched.eta == pytest.approx(1 / h)


def test_gen_converges_to_the_vertex_with_clip_and_ema():
    h, x0 = 10.0, 0.0
    f = quad(h, x0)
    sched = GeN(1e-3, 1000, {"lazy": 1})  # start 100x too small
    w = 5.0
    for step in range(200):
        eta = sched.lr(step)
        g = h * (w - x0)
        if sched.should_probe(step) and abs(g) > 1e-300:
            sched.observe(step, *probe(f, w, g, eta), eta=eta)
        w -= eta * g
        w = w if abs(w) > 1e-6 else 5.0  # keep the problem non-degenerate
    assert sched.eta == pytest.approx(1 / h, rel=0.02)


def test_gen_clip_and_ema_rules():
    sched = GeN(1.0, 100, {})
    # a quadratic whose vertex is at 100 x the current rate: clipped to 2x, then EMA 0.9/0.1
    h = 0.01
    fit = sched.observe(0, *probe(quad(h, 0.0), 1.0, h * 1.0, 1.0), eta=1.0)
    assert fit.accepted and fit.candidate == pytest.approx(2.0)
    assert sched.eta == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)
    # vertex far below: clipped to lr/2
    sched = GeN(1.0, 100, {})
    h = 100.0
    fit = sched.observe(0, *probe(quad(h, 0.0), 1.0, h * 1.0, 1.0), eta=1.0)
    assert fit.candidate == pytest.approx(0.5) and sched.eta == pytest.approx(0.95)


def test_gen_acceptance_and_halving():
    sched = GeN(1.0, 100, {})
    # concave along the step (a < 0): rejected, rate kept
    fit = sched.observe(0, l0=1.0, l_step=0.5, l_back=0.9, eta=1.0)
    assert fit.a < 0 and not fit.accepted and sched.eta == 1.0
    # ascent (b < 0: the step raised the loss more than its reverse): rejected, rate kept
    fit = sched.observe(0, l0=1.0, l_step=1.5, l_back=1.2, eta=1.0)
    assert fit.b < 0 and not fit.accepted and sched.eta == 1.0
    # numerical failure: halved
    fit = sched.observe(0, l0=1.0, l_step=float("nan"), l_back=1.2, eta=1.0)
    assert not fit.accepted and sched.eta == 0.5
    # on_reject=halve halves on a rejected fit too
    sched = GeN(1.0, 100, {"on_reject": "halve"})
    sched.observe(0, l0=1.0, l_step=0.5, l_back=0.9, eta=1.0)
    assert sched.eta == 0.5


def test_gen_lazy_cadence_and_horizon():
    sched = GeN(1.0, 8, {"lazy": 4, "horizon": True, "ema": 0.0})
    assert [s for s in range(9) if sched.should_probe(s)] == [0, 4, 8]
    h = 1.0  # vertex at 1.0 = current rate; the horizon factor at step 4 of 8 halves it
    sched.observe(4, *probe(quad(h, 0.0), 1.0, 1.0, 1.0), eta=1.0)
    assert sched.eta == pytest.approx(0.5)
