"""NGDiff / GDiff / GA directions on toy problems whose gradients are known in closed form."""
import math

import pytest
import torch

from unlearn.gradients import TaskGradients, collect_task_gradients, set_gradient
from unlearn.methods import METHODS, build_method


def grads(gf, gr):
    return TaskGradients({"forget": [torch.tensor(gf, dtype=torch.float64)],
                          "retain": [torch.tensor(gr, dtype=torch.float64)]})


def ngdiff():
    return build_method({"name": "ngdiff", "eps": 0.0})


def test_ngdiff_direction_is_difference_of_unit_gradients():
    g = grads([3.0, 4.0], [0.0, 2.0])  # ||g_F|| = 5, ||g_R|| = 2
    d = ngdiff().direction(g)[0]
    assert torch.allclose(d, torch.tensor([-0.6, 0.2], dtype=torch.float64), atol=1e-12)


def test_ngdiff_norms_are_global_over_all_parameters():
    # two parameter tensors: the norm is over both, not per tensor
    g = TaskGradients({"forget": [torch.tensor([3.0]), torch.tensor([4.0])],
                       "retain": [torch.tensor([0.0]), torch.tensor([2.0])]})
    d = ngdiff().direction(g)
    assert torch.allclose(torch.cat(d), torch.tensor([-0.6, 1.0 - 0.8]), atol=1e-6)


@pytest.mark.parametrize("seed", range(20))
def test_ngdiff_stays_in_the_green_area(seed):
    gen = torch.Generator().manual_seed(seed)
    scale_f, scale_r = 10 ** (4 * torch.rand(2, generator=gen) - 2)  # scales 1e-2 .. 1e2 apart
    gf = (torch.randn(5, generator=gen) * scale_f).double()
    gr = (torch.randn(5, generator=gen) * scale_r).double()
    g = grads(gf.tolist(), gr.tolist())
    d = ngdiff().direction(g)
    cos = g.cos("forget", "retain")
    # <d, g_R> = ||g_R|| (1 - cos) >= 0, <d, g_F> = -||g_F|| (1 - cos) <= 0, ||d|| in [0, 2]
    assert g.dot(d, "retain") == pytest.approx(g.norm("retain") * (1 - cos), rel=1e-9, abs=1e-12)
    assert g.dot(d, "forget") == pytest.approx(-g.norm("forget") * (1 - cos), rel=1e-9, abs=1e-12)
    assert g.dot(d, "retain") >= 0 >= g.dot(d, "forget")
    assert 0.0 <= g.norm(d) <= 2.0 + 1e-12


def test_gdiff_leaves_the_green_area_when_forget_gradient_dominates():
    # ||g_F|| cos(theta) > ||g_R||: GDiff's step raises the retain loss, NGDiff's does not
    g = grads([10.0, 1.0], [1.0, 0.0])
    assert g.norm("forget") * g.cos("forget", "retain") > g.norm("retain")
    d_gd = build_method({"name": "gdiff", "retain_weight": 1.0, "forget_weight": 1.0}).direction(g)
    d_ng = ngdiff().direction(g)
    assert g.dot(d_gd, "retain") == pytest.approx(1.0 - 10.0)  # <g_R - g_F, g_R> = 1 - 10
    assert g.dot(d_gd, "retain") < 0
    assert g.dot(d_ng, "retain") > 0


def test_gdiff_weights_and_ga():
    g = grads([1.0, 2.0], [3.0, -1.0])
    d = build_method({"name": "gdiff", "retain_weight": 0.5, "forget_weight": 2.0}).direction(g)[0]
    assert torch.allclose(d, torch.tensor([0.5 * 3 - 2 * 1, 0.5 * -1 - 2 * 2], dtype=torch.float64))
    d = build_method({"name": "ga"}).direction(g)[0]
    assert torch.allclose(d, torch.tensor([-1.0, -2.0], dtype=torch.float64))


def test_ngdiff_epsilon_guards_a_zero_gradient():
    g = grads([0.0, 0.0], [0.0, 2.0])
    d = build_method({"name": "ngdiff", "eps": 1e-8}).direction(g)[0]
    assert torch.all(torch.isfinite(d))
    assert torch.allclose(d, torch.tensor([0.0, 2.0 / (2.0 + 1e-8)], dtype=torch.float64))


def test_collect_task_gradients_on_a_toy_model():
    # L_F = 0.5 ||w - a||^2, L_R = 0.5 ||w - b||^2 -> g_F = w - a, g_R = w - b
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    a, b = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 4.0, 3.0])
    losses, g = collect_task_gradients(
        [w], {"forget": lambda: 0.5 * ((w - a) ** 2).sum(), "retain": lambda: 0.5 * ((w - b) ** 2).sum()},
        lambda loss: loss.backward(),
    )
    assert torch.allclose(g["forget"][0], w.detach() - a)
    assert torch.allclose(g["retain"][0], w.detach() - b)
    assert float(losses["forget"]) == pytest.approx(0.5 * (1 + 4 + 4))
    assert w.grad is None  # the facility leaves no stale gradient behind
    coeffs = ngdiff().combination(g)
    stats = g.stats(coeffs)
    assert stats["grad_norm/forget"] == pytest.approx(3.0)
    assert stats["grad_norm/retain"] == pytest.approx(2.0)
    assert stats["cos/forget_retain"] == pytest.approx(((1 * 0) + (2 * -2) + (2 * 0)) / 6)
    # <d, g_t> from the Gram matrix equals the dot with d itself: g_F = (1, 2, 2), g_R = (0, -2, 0)
    d = torch.tensor([0.0, -1.0, 0.0]) - torch.tensor([1.0, 2.0, 2.0]) / 3
    assert stats["dot/dir_forget"] == pytest.approx(float(d @ torch.tensor([1.0, 2.0, 2.0])), rel=1e-6)
    assert stats["dot/dir_retain"] == pytest.approx(float(d @ torch.tensor([0.0, -2.0, 0.0])), rel=1e-6)
    # formed in place over the last task's buffer: no new tensor, the object is spent
    retain_buffer = g["retain"][0]
    formed = g.combine_into_place(coeffs)
    assert formed[0] is retain_buffer and torch.allclose(formed[0], d)
    with pytest.raises(ValueError, match="already"):
        g.combine_into_place(coeffs)
    set_gradient([w], [torch.ones(3)])
    assert torch.equal(w.grad, torch.ones(3))


def test_a_parameter_no_task_reaches_keeps_no_gradient():
    # as one backward of the summed loss leaves it: None, not zeros, so that AdamW's weight decay skips it
    w, idle = torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([3.0]))
    _, g = collect_task_gradients([w, idle], {"forget": lambda: (w ** 2).sum(), "retain": lambda: 3 * w.sum()},
                                  lambda loss: loss.backward())
    assert torch.equal(g["forget"][1], torch.zeros(1))  # for the geometry a zero entry: <g_F, g_R> = 12
    assert g.dot("forget", "retain") == pytest.approx(2 * 3 + 4 * 3)
    d = g.combine_into_place({"forget": -1.0, "retain": 1.0})
    assert torch.equal(d[0], torch.tensor([1.0, -1.0])) and d[1] is None  # -(2, 4) + (3, 3)
    set_gradient([w, idle], d)
    assert idle.grad is None
    torch.optim.AdamW([w, idle], lr=0.1, weight_decay=0.5).step()
    assert float(idle) == 3.0


def test_dot_products_accumulate_in_fp32_for_bf16_gradients():
    # two close bf16 gradients: ||u - v||^2 = uu + vv - 2uv (MGDA, CAGrad) must not cancel to noise
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(4096, generator=gen).bfloat16()
    v = (u.float() + 0.01 * torch.randn(4096, generator=gen)).bfloat16()
    g = TaskGradients({"retain": [u], "forget": [v]})
    exact = float(((u.double() - v.double()) ** 2).sum())
    dist2 = g.dot("retain", "retain") + g.dot("forget", "forget") - 2 * g.dot("retain", "forget")
    assert dist2 == pytest.approx(exact, rel=1e-2)
    rounded = float(torch.dot(u, u)) + float(torch.dot(v, v)) - 2 * float(torch.dot(u, v))  # bf16 results
    assert abs(rounded - exact) > 10 * abs(dist2 - exact)


def test_unknown_method_lists_valid_names():
    with pytest.raises(KeyError, match="unknown method 'gradient_magic'; valid methods: .*ga, gdiff.*ngdiff"):
        build_method({"name": "gradient_magic"})
    assert {"ga", "gdiff", "ngdiff"} <= set(METHODS)
