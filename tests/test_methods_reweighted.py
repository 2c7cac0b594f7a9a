"""The token-reweighted forget objectives (WGA, SatImp, CE-U) and primal-dual unlearning (PDU): each
loss against the bigram table's probabilities written out by hand, PDU's dual ascent over hand-fed
losses, the objectives as NGDiff's forget task, and PDU's state in the engine's step rows."""
import json
import math

import pytest
import torch

from tests.test_methods import FORGET, P, BigramLM, batch
from unlearn.losses import lm_loss
from unlearn.methods import build_method
from unlearn.methods.base import method_defaults
from unlearn.pipeline import STEP_LOG, run

# the scored tokens of FORGET under P, as (previous token, token): example 0 scores 1, 2, 3 after
# 0, 1, 2; example 1 scores 2, 1 after 0, 2
SCORED = [(0, 1), (1, 2), (2, 3), (0, 2), (2, 1)]
PROBS = [P[a][y] for a, y in SCORED]  # 0.2, 0.25, 0.2, 0.3, 0.1


def forget_objective(method, model=None, index=(1, 0)):
    b = batch(FORGET, list(index))
    return method.task_losses(model or BigramLM(P), {"forget": b, "retain": b})["forget"]()


def value(method, **kw):
    return float(forget_objective(method, **kw).detach())


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
def test_wga_is_the_p_beta_weighted_token_mean_of_the_log_likelihood(beta):
    # -(1/N) sum_t p_t^beta (-log p_t), N = 5 scored tokens of the batch
    expected = sum(p ** beta * math.log(p) for p in PROBS) / 5
    method = build_method({"name": "wga", "beta": beta})
    assert value(method) == pytest.approx(expected, rel=1e-5)
    assert method.weights() == {"forget": 1.0, "retain": 1.0}


def test_wga_weights_are_detached_and_beta_zero_is_token_mean_ascent():
    model = BigramLM(P)
    forget_objective(build_method({"name": "wga", "beta": 1.0}), model).backward()
    g_wga, model.logp.grad = model.logp.grad.clone(), None
    # the same gradient as -(1/5) sum_t c_t (-log p_t) with the weights c_t = p_t as constants
    logp = [torch.log_softmax(model.logp, -1)[a, y] for a, y in SCORED]
    (sum(p * lp for p, lp in zip(PROBS, logp)) / 5).backward()
    assert torch.allclose(g_wga, model.logp.grad, atol=1e-6)
    b = batch(FORGET, [1, 0])
    with torch.no_grad():  # beta = 0: minus the batch's token-mean LM loss (not a mean of sequence means)
        assert value(build_method({"name": "wga", "beta": 0.0})) == pytest.approx(
            -float(lm_loss(BigramLM(P), b)), rel=1e-6)


@pytest.mark.parametrize("beta1, beta2", [(5.0, 1.0), (2.0, 3.0), (1.5, 0.0)])
def test_satimp_weights_are_p_beta1_times_one_minus_p_beta2(beta1, beta2):
    expected = sum(p ** beta1 * (1 - p) ** beta2 * math.log(p) for p in PROBS) / 5
    method = build_method({"name": "satimp", "beta1": beta1, "beta2": beta2, "forget_weight": 1.0,
                           "retain_weight": 0.1})
    assert value(method) == pytest.approx(expected, rel=1e-5)
    assert method.weights() == {"forget": 1.0, "retain": 0.1}
    if beta2 == 0:  # SatImp without importance is WGA
        wga = build_method({"name": "wga", "beta": beta1})
        assert value(method) == pytest.approx(value(wga), rel=1e-6)


def ce_u(a, y):
    """-sum_{v != y} q(v) log P[a][v], q = P[a] without y, renormalized."""
    return -sum(P[a][v] / (1 - P[a][y]) * math.log(P[a][v]) for v in range(4) if v != y)


def test_ceu_loss_masks_the_true_token_and_skips_the_first_answer_token():
    # skip 1: example 0 keeps (1 -> 2), (2 -> 3); example 1 keeps (2 -> 1)
    expected = (ce_u(1, 2) + ce_u(2, 3) + ce_u(2, 1)) / 3
    assert ce_u(1, 2) == pytest.approx(math.log(4))  # uniform row: q uniform over the other three
    method = build_method({"name": "ceu", "ignore_first_n_answer_tokens": 1})
    assert method.tasks == ("forget",) and method.weights() == {"forget": 1.0}  # CE-U alone by default
    assert value(method) == pytest.approx(expected, rel=1e-5)
    every = build_method({"name": "ceu", "ignore_first_n_answer_tokens": 0})
    assert value(every) == pytest.approx(sum(ce_u(a, y) for a, y in SCORED) / 5, rel=1e-5)
    # the gradient in the logits is (p - q) / N: q is the model's own distribution, detached
    model = BigramLM(P)
    forget_objective(method, model).backward()

    def p_minus_q(a, y):
        return torch.tensor([P[a][v] - (0.0 if v == y else P[a][v] / (1 - P[a][y])) for v in range(4)])

    expected_grad = torch.zeros(4, 4)
    expected_grad[1] = p_minus_q(1, 2) / 3
    expected_grad[2] = (p_minus_q(2, 3) + p_minus_q(2, 1)) / 3
    assert torch.allclose(model.logp.grad, expected_grad, atol=1e-6)
    assert value(build_method({"name": "ceu", "ignore_first_n_answer_tokens": 5})) == 0.0


def margin(a):
    """(max_v z - mean_v z)^2 of the logits log P[a]."""
    z = [math.log(p) for p in P[a]]
    return (max(z) - sum(z) / 4) ** 2


def test_pdu_margin_loss_on_scored_or_label_positions():
    # scored: the positions predicting answer tokens, after tokens 0, 1, 2 and 0, 2
    method = build_method({"name": "pdu"})
    assert margin(1) == 0.0
    assert value(method) == pytest.approx((2 * margin(0) + margin(1) + 2 * margin(2)) / 5, rel=1e-5)
    # labels (open-unlearning's code): the answer tokens' own positions, tokens 1, 2, 3 and 2, 1
    labels = build_method({"name": "pdu", "margin_positions": "labels"})
    assert value(labels) == pytest.approx((2 * margin(1) + 2 * margin(2) + margin(3)) / 5, rel=1e-5)
    assert method.lm_tasks == ("retain",)
    with pytest.raises(ValueError, match="valid: scored, labels"):
        build_method({"name": "pdu", "margin_positions": "answer"})


def test_pdu_dual_ascent_is_clipped_at_zero_and_resumes():
    method = build_method({"name": "pdu", "dual_init": 0.5, "dual_lr": 2.0, "eps": 1.0, "forget_weight": 1.0})
    seen = []
    for l_r in (1.5, 0.2, 0.1, 2.0):
        seen.append(method.weights()["retain"])
        row = method.after_step({"forget": 3.0, "retain": l_r})
        assert row["pdu/lambda"] == seen[-1] and row["pdu/constraint"] == pytest.approx(l_r - 1.0)
    # 0.5 + 2 (0.5) = 1.5; 1.5 + 2 (-0.8) < 0 -> 0; 0 + 2 (-0.9) -> 0; 0 + 2 (1.0) = 2
    assert seen == pytest.approx([0.5, 1.5, 0.0, 0.0]) and method.weights() == pytest.approx({"forget": 1.0, "retain": 2.0})
    resumed = build_method({"name": "pdu", "dual_init": 0.5, "dual_lr": 2.0, "eps": 1.0})
    resumed.load_state_dict(method.state_dict())
    assert resumed.weights() == method.weights()
    assert resumed.after_step({"retain": 0.5}) == method.after_step({"retain": 0.5})
    assert resumed.state_dict() == method.state_dict() == {"lambda": pytest.approx(1.0), "eps": 1.0, "steps": 5}


def test_pdu_warmup_holds_lambda_and_relative_eps_is_set_at_the_first_step():
    method = build_method({"name": "pdu", "dual_init": 1.0, "dual_lr": 1.0, "eps_relative": 0.5,
                           "dual_warmup_steps": 2})
    rows = [method.after_step({"retain": l_r}) for l_r in (2.0, 4.0, 4.0, 1.0)]
    assert [r["pdu/eps"] for r in rows] == [3.0] * 4  # (1 + 0.5) x the first step's L_R
    assert [r["pdu/lambda"] for r in rows] == [1.0, 1.0, 1.0, 2.0]  # two warm-up steps, then 1 + (4 - 3)
    assert method.weights()["retain"] == 0.0  # 2 + (1 - 3) = 0


@pytest.mark.parametrize("warmup, held", [(2, 4), (0.5, 2), (0, 0)])
def test_pdu_warmup_in_epochs_holds_lambda_until_that_many_epochs_ended(warmup, held):
    # open-unlearning's dual_warmup_epochs (PDU.yaml: 5): updates are enabled at the end of the first
    # epoch e with e >= warmup (pdu.py DualOptimizationCallback); two steps an epoch here
    method = build_method({"name": "pdu", "dual_init": 1.0, "dual_lr": 1.0, "eps": 1.0, "dual_warmup_epochs": warmup})
    epochs, l_r = [0, 0, 1, 1, 2, 2], [3.0, 2.0, 4.0, 0.5, 2.0, 1.5]
    lam = [method.after_step({"retain": r}, epoch=e)["pdu/lambda"] for r, e in zip(l_r, epochs)]
    want = [1.0]
    for i, r in enumerate(l_r[:-1]):  # lambda <- max(0, lambda + (L_R - 1)) after each step past the warm-up
        want.append(max(0.0, want[-1] + (r - 1.0)) if i >= held else want[-1])
    assert lam == pytest.approx(want)


def test_defaults_in_code_are_the_yaml_defaults():
    for name in ("wga", "satimp", "ceu", "pdu"):
        a, b = build_method({"name": name}), build_method({**method_defaults(name), "name": name})
        assert a.weights() == b.weights() and a.tasks == b.tasks, name
        assert value(a) == pytest.approx(value(b)), name


@pytest.mark.parametrize("name", ["wga", "satimp", "ceu"])
def test_each_objective_is_a_forget_task_of_ngdiff(name):
    objective = build_method({**method_defaults(name), "name": name, "retain_weight": 0.0})
    ngdiff = build_method({"name": "ngdiff", "forget_loss": name})
    assert ngdiff.lm_tasks == ("retain",)
    with torch.no_grad():
        assert value(ngdiff) == pytest.approx(-value(objective), rel=1e-6)
    args = {"wga": {"beta": 2.0}, "satimp": {"beta1": 1.0}, "ceu": {"ignore_first_n_answer_tokens": 0}}[name]
    tuned = build_method({"name": "ngdiff", "forget_loss": name, "forget_args": args})
    direct = build_method({**method_defaults(name), **args, "name": name})
    with torch.no_grad():
        assert value(tuned) == pytest.approx(-value(direct), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# through the engine: an objective as NGDiff's forget task; PDU's lambda in the step rows and in the update


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=2", "save_checkpoint=false", *overrides)
    return make


@pytest.mark.parametrize("stats", [True, False])  # per-task combination() / summed weights() path
def test_pdu_step_rows_carry_the_dual_state_and_the_update_uses_it(cfg, tmp_path, stats):
    rec = run(cfg("method=pdu", "scheduler=constant", "method.dual_init=0.5", "method.dual_lr=2.0",
                  f"method.task_grad_stats={str(stats).lower()}"), run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    rows = [json.loads(line) for line in (tmp_path / "run" / STEP_LOG).read_text().splitlines()]
    eps = rec["config"]["method"]["eps"]
    lam = [r["pdu/lambda"] for r in rows]
    assert lam[0] == 0.5 and lam[1] == pytest.approx(max(0.0, 0.5 + 2.0 * (rows[0]["loss/retain"] - eps)), rel=1e-6)
    for r, l in zip(rows, lam):
        assert r["pdu/constraint"] == pytest.approx(r["loss/retain"] - eps, rel=1e-6)
        if not stats:
            continue
        # d = c_F g_F + lambda g_R: <d, g_R> = c_F <g_F, g_R> + lambda ||g_R||^2, from the row's own geometry
        gf, gr, cos = r["grad_norm/forget"], r["grad_norm/retain"], r["cos/forget_retain"]
        assert r["dot/dir_retain"] == pytest.approx(cos * gf * gr + l * gr * gr, rel=1e-4)


def test_ngdiff_with_a_reweighted_forget_task_runs_end_to_end(cfg, tmp_path):
    rec = run(cfg("method=ngdiff", "method.forget_loss=wga", "scheduler=constant"), run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    rows = [json.loads(line) for line in (tmp_path / "run" / STEP_LOG).read_text().splitlines()]
    # the forget task is minus L_WGA = the p-weighted token-mean NLL: positive, raised by NGDiff
    assert len(rows) == 2 and all(r["loss/forget"] > 0 for r in rows) and rows[0]["dot/dir_forget"] < 0
