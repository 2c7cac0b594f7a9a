"""The baselines (KL, NPO, SimNPO, IDK, IDK-DPO) and the multi-task directions (MGDA, PCGrad, CAGrad,
IMTL-G): each against its formula written out by hand, then every method end to end."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearn.data import collate
from unlearn.gradients import TaskGradients, collect_task_gradients
from unlearn.losses import kl_to_reference, lm_loss, sequence_nll
from unlearn.methods import METHODS, MethodContext, build_method
from unlearn.methods.idk import load_idk_answers
from tests.conftest import covering
from unlearn.pipeline import STEP_LOG, run

# ---------------------------------------------------------------------------------------------
# A bigram "LM" whose next-token probabilities are a hand-written table: logits[b, t] = log P[x_t]


class BigramLM(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.logp = torch.nn.Parameter(torch.log(torch.tensor(table)))
        self.forwards = 0

    def forward(self, input_ids, attention_mask=None):
        self.forwards += 1
        return SimpleNamespace(logits=self.logp[input_ids])


P = [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.2, 0.2], [0.4, 0.3, 0.2, 0.1]]  # model
Q = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.2, 0.2]]  # reference

# forget example 0 scores tokens 1, 2, 3 after 0, 1, 2; example 1 scores 2, 1 after 0, 2
FORGET = [{"input_ids": [0, 1, 2, 3], "attention_mask": [1, 1, 1, 1], "labels": [-100, 1, 2, 3]},
          {"input_ids": [0, 2, 1], "attention_mask": [1, 1, 1], "labels": [-100, 2, 1]}]
LOGP_P = [math.log(0.2) + math.log(0.25) + math.log(0.2), math.log(0.3) + math.log(0.1)]
LOGP_Q = [math.log(0.3) + math.log(0.3) + math.log(0.25), math.log(0.2) + math.log(0.25)]


def encode(row, answer=None, prefix_tokens=32):
    """A toy template: BOS 0, then one token per character (ord % 4); the question is masked."""
    q = [ord(c) % 4 for c in row["question"]]
    a = [ord(c) % 4 for c in (row["answer"] if answer is None else answer)]
    return {"input_ids": [0, *q, *a], "attention_mask": [1] * (1 + len(q) + len(a)),
            "labels": [-100] * (1 + len(q)) + a}


def table_logp(table, feature):
    """log P(answer) summed over the scored tokens, by hand: each label given the previous token."""
    ids, labels = feature["input_ids"], feature["labels"]
    return sum(math.log(table[ids[t - 1]][labels[t]]) for t in range(1, len(ids)) if labels[t] != -100)


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def rows(n):
    return [{"question": f"q{i}", "answer": "ab"[: 1 + i % 2] + "c"} for i in range(n)]


def context(reference=None, loads=None, forget=FORGET):
    rows_ = rows(len(forget))

    def load():
        loads.append(1)
        return reference

    return MethodContext(encode=encode, forget_rows=rows_, retain_rows=rows_, forget_features=forget,
                         retain_features=forget, pad_id=0, device=torch.device("cpu"),
                         load_reference=load if reference is not None else None)


def batch(features, index):
    b = collate([features[i] for i in index], pad_id=0)
    b["index"] = torch.tensor(index)
    return b


def forget_loss(method, model, index=(1, 0)):
    b = batch(FORGET, list(index))
    return float(method.task_losses(model, {"forget": b, "retain": b})["forget"]().detach())


# ---------------------------------------------------------------------------------------------
# losses


def test_npo_loss_and_reference_logprobs_computed_once():
    ref, loads = BigramLM(Q), []
    method = build_method({"name": "npo", "beta": 0.1, "retain_weight": 1.0, "ref_batch_size": 1})
    method.setup(context(ref, loads))
    assert loads == [1] and ref.forwards == 2  # two examples, batch 1: two forwards, in setup only
    assert not any(p.requires_grad for p in ref.parameters())
    assert method.ref_logp.tolist() == pytest.approx(LOGP_Q, abs=1e-5)
    # L = -(2/b) mean_i log sigmoid(-b (log pi(y_i) - log pi_ref(y_i))), batch in the order (1, 0)
    b = 0.1
    expected = -(2 / b) * (log_sigmoid(-b * (LOGP_P[1] - LOGP_Q[1])) + log_sigmoid(-b * (LOGP_P[0] - LOGP_Q[0]))) / 2
    model = BigramLM(P)
    for _ in range(3):
        assert forget_loss(method, model) == pytest.approx(expected, rel=1e-5)
    assert ref.forwards == 2  # no reference forward during training
    assert method.weights() == {"forget": 1.0, "retain": 1.0}


def test_npo_alone_has_only_the_forget_task():
    method = build_method({"name": "npo", "beta": 0.1, "retain_weight": 0.0})
    assert method.tasks == ("forget",) and method.weights() == {"forget": 1.0}


def test_npo_tends_to_gradient_ascent_as_beta_vanishes():
    # -(2/b) log sigmoid(-b r) = (2/b) log 2 + r + O(b): the gradient of sum_i log pi(y_i) / n
    method = build_method({"name": "npo", "beta": 1e-4})
    method.setup(context(BigramLM(Q), []))
    model = BigramLM(P)
    method.task_losses(model, {"forget": batch(FORGET, [0, 1]), "retain": None})["forget"]().backward()
    g_npo = model.logp.grad.clone()
    model.logp.grad = None
    nll, _ = sequence_nll(model(batch(FORGET, [0, 1])["input_ids"]).logits, batch(FORGET, [0, 1])["labels"])
    (-nll.mean()).backward()  # gradient ascent on the mean sequence NLL
    assert torch.allclose(g_npo, model.logp.grad, atol=1e-4)


def test_simnpo_loss():
    b, d = 2.0, 0.5
    method = build_method({"name": "simnpo", "beta": b, "delta": d, "forget_weight": 0.125, "retain_weight": 1.0})
    # L = -(2/b) mean_i log sigmoid(-(b/|y_i|) log pi(y_i) - d); |y| = 3 and 2
    expected = -(2 / b) * (log_sigmoid(-b / 2 * LOGP_P[1] - d) + log_sigmoid(-b / 3 * LOGP_P[0] - d)) / 2
    assert forget_loss(method, BigramLM(P)) == pytest.approx(expected, rel=1e-5)
    assert method.weights() == {"forget": 0.125, "retain": 1.0}


def test_idk_answers_are_packaged_seeded_and_fixed():
    answers = load_idk_answers()
    assert 50 <= len(answers) <= 100 and len(set(answers)) == len(answers)
    forget = FORGET * 10
    a = build_method({"name": "idk", "idk_seed": 3})
    a.setup(context(forget=forget))
    b = build_method({"name": "idk", "idk_seed": 3})
    b.setup(context(forget=forget))
    c = build_method({"name": "idk", "idk_seed": 4})
    c.setup(context(forget=forget))
    assert a.idk_answers == b.idk_answers != c.idk_answers
    assert set(a.idk_answers) <= set(answers) and len(set(a.idk_answers)) > 1
    assert a.idk_features[5] == encode(rows(20)[5], a.idk_answers[5])


def test_idk_loss_is_the_lm_loss_of_the_idk_answers(tmp_path):
    (tmp_path / "idk.txt").write_text("abc\n\nba\n")
    method = build_method({"name": "idk", "idk_file": str(tmp_path / "idk.txt"), "idk_seed": 0})
    method.setup(context())
    feats = [encode(r, a) for r, a in zip(rows(2), method.idk_answers)]
    # token mean over the batch (1, 0): summed NLL of both IDK answers / their total answer tokens
    n_tokens = sum(len(method.idk_answers[i]) for i in (1, 0))
    expected = -(table_logp(P, feats[1]) + table_logp(P, feats[0])) / n_tokens
    assert forget_loss(method, BigramLM(P)) == pytest.approx(expected, rel=1e-5)
    assert method.weights() == {"forget": 1.0, "retain": 1.0}  # descent on the IDK answers


def test_idk_dpo_loss_and_reference_logprobs_computed_once(tmp_path):
    (tmp_path / "idk.txt").write_text("abc\nba\n")
    ref, loads = BigramLM(Q), []
    method = build_method({"name": "idk_dpo", "beta": 0.5, "idk_file": str(tmp_path / "idk.txt"), "ref_batch_size": 8})
    method.setup(context(ref, loads))
    assert loads == [1] and ref.forwards == 2  # one batch of IDK answers, one of true answers
    idk = [encode(r, a) for r, a in zip(rows(2), method.idk_answers)]
    true = [encode(r) for r in rows(2)]  # the rejected y: each row's own answer after its question
    b = 0.5

    def term(i):  # log sigmoid(b [(log pi(idk) - log ref(idk)) - (log pi(y) - log ref(y))])
        return log_sigmoid(b * ((table_logp(P, idk[i]) - table_logp(Q, idk[i]))
                                - (table_logp(P, true[i]) - table_logp(Q, true[i]))))

    expected = -(2 / b) * (term(1) + term(0)) / 2
    model = BigramLM(P)
    assert forget_loss(method, model) == pytest.approx(expected, rel=1e-5)
    assert forget_loss(method, model, index=(0,)) == pytest.approx(-(2 / b) * term(0), rel=1e-5)
    assert ref.forwards == 2


RETAIN = [{"input_ids": [0, 3, 1, 2], "attention_mask": [1, 1, 1, 0], "labels": [-100, -100, 1, 2]},
          {"input_ids": [0, 2], "attention_mask": [1, 1], "labels": [-100, 2]}]


def test_kl_to_reference_over_all_positions_and_scored_positions():
    b = collate(RETAIN, pad_id=0)  # row 1 is padded with token 0 at positions 2, 3

    def kl(i):  # KL(Q[i] || P[i]) of the next-token distributions after token i
        return sum(q * (math.log(q) - math.log(p)) for q, p in zip(Q[i], P[i]))

    with torch.no_grad():
        logits, ref_logits = BigramLM(P)(b["input_ids"]).logits, BigramLM(Q)(b["input_ids"]).logits
    # all 2 x 4 positions, padding and last position included (TOFU / open-unlearning)
    expected_all = (kl(0) + kl(3) + kl(1) + kl(2) + kl(0) + kl(2) + kl(0) + kl(0)) / 8
    got = kl_to_reference(logits, ref_logits, b["labels"], "all")
    assert float(got) == pytest.approx(expected_all, rel=1e-5)
    tofu = F.kl_div(F.log_softmax(logits, -1).view(-1, 4), F.log_softmax(ref_logits, -1).view(-1, 4),
                    reduction="batchmean", log_target=True)  # the reference's own expression
    assert float(got) == pytest.approx(float(tofu), rel=1e-6)
    # scored: positions predicting a scored label: row 0 after tokens 3, 1; row 1 after token 0
    expected_scored = (kl(3) + kl(1) + kl(0)) / 3
    assert float(kl_to_reference(logits, ref_logits, b["labels"], "scored")) == pytest.approx(expected_scored, rel=1e-5)
    with pytest.raises(ValueError, match="valid: all, scored"):
        kl_to_reference(logits, ref_logits, b["labels"], "answer")


@pytest.mark.parametrize("name", ["kl", "gdiff_kl"])
def test_kl_methods_load_a_frozen_reference_once(name):
    ref, loads = BigramLM(Q), []
    method = build_method({"name": name, "retain_weight": 2.0, "forget_weight": 0.5, "kl_positions": "scored"})
    method.setup(context(ref, loads))
    assert loads == [1] and not any(p.requires_grad for p in method.reference.parameters())
    model = BigramLM(P)
    b = batch(RETAIN, [0, 1])
    for step in range(3):  # the retain batch changes every step: one reference forward per step
        model.logp.grad = None
        loss = method.task_losses(model, {"forget": b, "retain": b})["retain"]()
        loss.backward()
        assert ref.forwards == step + 1 and ref.logp.grad is None and model.logp.grad is not None
    assert float(loss) == pytest.approx(float(kl_to_reference(model(b["input_ids"]).logits, ref(b["input_ids"]).logits,
                                                              b["labels"], "scored")))
    assert method.weights() == {"retain": 2.0, "forget": -0.5}
    with pytest.raises(ValueError, match="kl_positions"):
        build_method({"name": name, "retain_weight": 1.0, "forget_weight": 1.0, "kl_positions": "answers"})


def test_reference_methods_say_when_there_is_no_reference():
    with pytest.raises(ValueError, match="reference model"):
        build_method({"name": "npo"}).setup(context())


@pytest.mark.parametrize("name", list(METHODS))
def test_lm_tasks_are_the_tasks_whose_loss_is_the_lm_loss(name):
    # what GeN may reuse as L0 (the engine's probes measure lm_loss)
    if name == "rmu":
        pytest.skip("RMU reads a decoder layer's activations, which BigramLM lacks (tests/test_methods_rmu_undial.py)")
    method = build_method({"name": name, "retain_weight": 1.0, "forget_weight": 1.0})
    method.setup(context(BigramLM(Q), []))
    model, b = BigramLM(P), batch(FORGET, [0, 1])
    with torch.no_grad():
        for task, loss in method.task_losses(model, {"forget": b, "retain": b}).items():
            assert (float(loss()) == pytest.approx(float(lm_loss(model, b)))) == (task in method.lm_tasks), task


def test_weighted_linear_scalarization_is_gdiff():
    # one backward of w_R L_R - w_F L_F gives the same d as combining the per-task gradients
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    a, c = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 0.0, -1.0])
    losses = {"forget": lambda: ((w - a) ** 2).sum() / 2, "retain": lambda: ((w * c) ** 2).sum() / 2}
    method = build_method({"name": "gdiff", "retain_weight": 0.3, "forget_weight": 2.0})
    _, grads = collect_task_gradients([w], losses, lambda loss: loss.backward())
    d = method.direction(grads)[0]
    (0.3 * losses["retain"]() - 2.0 * losses["forget"]()).backward()
    hand = 0.3 * (w.detach() * c * c) - 2.0 * (w.detach() - a)
    assert torch.allclose(d, hand) and torch.allclose(w.grad, hand)


# ---------------------------------------------------------------------------------------------
# directions on toy gradients; u = g_R, v = -g_F


def uv(u, v):
    return TaskGradients({"retain": [torch.tensor(u, dtype=torch.float64)],
                          "forget": [-torch.tensor(v, dtype=torch.float64)]})


def direction(cfg, u, v):
    return build_method(cfg).direction(uv(u, v))[0].tolist()


@pytest.mark.parametrize("u, v, expected", [
    ([1.0, 0.0], [0.0, 1.0], [0.5, 0.5]),     # symmetric: alpha = 1/2
    ([3.0, 0.0], [0.0, 1.0], [0.3, 0.9]),     # d/da (9a^2 + (1-a)^2) = 0 -> a = 0.1
    ([1.0, 0.0], [2.0, 1.0], [1.0, 0.0]),     # <u,v> = 2 >= ||u||^2: clipped at alpha = 1, d = u
    ([2.0, 1.0], [1.0, 0.0], [1.0, 0.0]),     # <u,v> = 2 >= ||v||^2: clipped at alpha = 0, d = v
    ([1.0, 0.0], [-2.0, 0.0], [0.0, 0.0]),    # opposed: Pareto-stationary, alpha = 2/3, d = 0
    ([1.0, 2.0], [1.0, 2.0], [1.0, 2.0]),     # u == v
])
def test_mgda_min_norm_point(u, v, expected):
    assert direction({"name": "mgda"}, u, v) == pytest.approx(expected, abs=1e-12)


def test_mgda_interior_point_is_orthogonal_to_the_hull_edge():
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        u, v = torch.randn(3, generator=gen).double(), torch.randn(3, generator=gen).double()
        d = torch.tensor(direction({"name": "mgda"}, u.tolist(), v.tolist()), dtype=torch.float64)
        grid = torch.linspace(0, 1, 100001, dtype=torch.float64)[:, None]
        assert float(d.norm()) == pytest.approx(float((grid * u + (1 - grid) * v).norm(dim=1).min()), abs=1e-9)


def test_pcgrad_projects_conflicting_gradients():
    # <u,v> = -1: u' = u + v/2 = (0.5, 0.5), v' = v + u = (0, 1)
    assert direction({"name": "pcgrad"}, [1.0, 0.0], [-1.0, 1.0]) == pytest.approx([0.5, 1.5])
    # 3-D: u = (1, 2, 0), v = (0, -1, 1), <u,v> = -2: u' = u + v = (1, 1, 1); v' = v + (2/5) u
    assert direction({"name": "pcgrad"}, [1.0, 2.0, 0.0], [0.0, -1.0, 1.0]) == pytest.approx(
        [1 + 0.4, 1 - 1 + 0.8, 1 + 1])
    assert direction({"name": "pcgrad"}, [1.0, 0.0], [1.0, 1.0]) == pytest.approx([2.0, 1.0])  # no conflict: u + v


def cagrad_by_grid(u, v, c):
    """The dual min_p <g_w, g0> + c ||g0|| ||g_w|| over a grid of the simplex, then d = g0 + s g_w / ||g_w||."""
    u, v = np.asarray(u), np.asarray(v)
    g0 = (u + v) / 2
    s = c * np.linalg.norm(g0)
    p = np.linspace(0, 1, 200001)[:, None]
    gw = p * u + (1 - p) * v
    best = gw[np.argmin(gw @ g0 + s * np.linalg.norm(gw, axis=1))]
    return g0 + s * best / np.linalg.norm(best)


@pytest.mark.parametrize("c", [0.0, 0.2, 0.5, 1.0, 3.0])
def test_cagrad_matches_a_grid_over_the_simplex(c):
    rng = np.random.default_rng(int(10 * c))
    cases = [rng.normal(size=(2, 3)) * rng.uniform(0.1, 10, size=(2, 1)) for _ in range(20)]
    cases += [np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([[5.0, 1.0, 0.0], [-0.2, 1.0, 0.0]]),
              np.array([[1.0, 0.0, 0.0], [3.0, 0.1, 0.0]])]  # symmetric; conflicting; aligned (p at an end)
    for u, v in cases:
        d = direction({"name": "cagrad", "c": c}, u.tolist(), v.tolist())
        assert d == pytest.approx(cagrad_by_grid(u, v, c).tolist(), abs=1e-3 * np.linalg.norm(u + v))


def test_cagrad_solves_the_primal_and_rescales():
    rng = np.random.default_rng(1)
    u, v = np.array([2.0, 0.5, 0.0]), np.array([-1.0, 1.0, 0.5])
    g0, c = (u + v) / 2, 0.5
    d = np.array(direction({"name": "cagrad", "c": c}, u.tolist(), v.tolist()))
    assert np.linalg.norm(d - g0) == pytest.approx(c * np.linalg.norm(g0))  # on the ball's boundary
    # no point of the ball ||d' - g0|| <= c ||g0|| does better on the worse task
    z = rng.normal(size=(20000, 3))
    radius = c * np.linalg.norm(g0) * rng.uniform(0, 1, (20000, 1)) ** (1 / 3)  # uniform in the ball
    ball = g0 + radius * z / np.linalg.norm(z, axis=1, keepdims=True)
    assert min(d @ u, d @ v) >= np.minimum(ball @ u, ball @ v).max() - 1e-9
    scaled = direction({"name": "cagrad", "c": c, "rescale": True}, u.tolist(), v.tolist())
    assert scaled == pytest.approx((d / (1 + c * c)).tolist())
    assert direction({"name": "cagrad", "c": 0.0}, u.tolist(), v.tolist()) == pytest.approx(g0.tolist())


def test_imtlg_is_ngdiff_up_to_a_positive_scale():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        u, v = (torch.randn(3, generator=gen) * 10 ** (2 * torch.rand(1, generator=gen) - 1)).double().tolist(), \
               (torch.randn(3, generator=gen) * 10 ** (2 * torch.rand(1, generator=gen) - 1)).double().tolist()
        g = uv(u, v)
        d = build_method({"name": "imtlg", "eps": 0.0}).direction(g)[0]
        d_ng = build_method({"name": "ngdiff", "eps": 0.0}).direction(g)[0]
        nu, nv = math.dist(u, [0] * 3), math.dist(v, [0] * 3)
        assert torch.allclose(d, nu * nv / (nu + nv) * d_ng, atol=1e-10)
        # equal projections on the unit task vectors (the IMTL-G condition)
        assert g.dot([d], "retain") / nu == pytest.approx(-g.dot([d], "forget") / nv, rel=1e-9)
    # parallel gradients: the singular system falls back to the same limit
    assert direction({"name": "imtlg"}, [2.0, 0.0], [1.0, 0.0]) == pytest.approx([4 / 3, 0.0])


def test_every_direction_method_is_registered_without_weights():
    for name in ("mgda", "pcgrad", "cagrad", "imtlg"):
        assert name in METHODS and build_method({"name": name}).weights() is None


# ---------------------------------------------------------------------------------------------
# every method end to end, through the function run.py calls

DIRECTION_METHODS = {"ngdiff", "mgda", "pcgrad", "cagrad", "imtlg"}


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=2", "save_checkpoint=false", *overrides)
    return make


@pytest.mark.parametrize(("method", "scheduler"), covering(list(METHODS), ["constant", "gen"]))
def test_every_method_runs_end_to_end(cfg, tmp_path, method, scheduler):
    rec = run(cfg(f"method={method}", f"scheduler={scheduler}"), run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["unlearn"]["steps"] == 2 and rec["metrics"]["unlearned"]
    rows = [json.loads(line) for line in (tmp_path / "run" / STEP_LOG).read_text().splitlines()]
    assert len(rows) == 2 and all(math.isfinite(r["loss/forget"]) for r in rows)
    assert (build_method(rec["config"]["method"]).weights() is None) == (method in DIRECTION_METHODS)
    if method in DIRECTION_METHODS:
        assert {"dot/dir_forget", "dot/dir_retain"} <= set(rows[0])
    beta = rec["config"]["method"].get("beta")
    if method in ("npo", "idk_dpo"):  # at the target, pi = pi_ref: the loss is (2/beta) log 2
        assert rows[0]["loss/forget"] == pytest.approx(2 / beta * math.log(2), rel=1e-4)
    if method in ("kl", "gdiff_kl"):  # KL(target || target) = 0
        assert rows[0]["loss/retain"] == pytest.approx(0.0, abs=1e-6)


def test_npo_alone_runs_end_to_end_with_one_task(cfg, tmp_path):
    rec = run(cfg("method=npo", "method.retain_weight=0", "scheduler=constant"), run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    row = json.loads((tmp_path / "run" / STEP_LOG).read_text().splitlines()[0])
    assert "loss/forget" in row and "loss/retain" not in row


# ---------------------------------------------------------------------------------------------
# another method's forget objective as a direction method's forget task (method.forget_loss)

def test_forget_loss_is_minus_the_objective_configured_by_its_file_and_forget_args():
    ng = build_method({"name": "ngdiff", "forget_loss": "npo", "forget_args": {"beta": 0.5}})
    npo = build_method({"name": "npo", "beta": 0.5, "retain_weight": 0.0})
    ctx = context(BigramLM(Q), [])
    ng.setup(ctx), npo.setup(ctx)
    model, b = BigramLM(P), batch(FORGET, [1, 0])
    with torch.no_grad():
        assert float(ng.task_loss("forget", model, b)) == pytest.approx(-float(npo.task_loss("forget", model, b)))
        assert float(ng.task_loss("retain", model, b)) == pytest.approx(float(lm_loss(model, b)))
    assert ng.forget_objective.beta == 0.5 and ng.forget_objective.tasks == ("forget",)
    assert ng.lm_tasks == ("retain",) and ng.needs_context()  # L_F no longer stands in for GeN's L0
    plain = build_method({"name": "ngdiff", "forget_loss": "ga"})
    assert plain.forget_objective is None and plain.lm_tasks == ("forget", "retain") and not plain.needs_context()


def test_forget_loss_names_and_keys_are_checked_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"method.forget_loss=gdiff is not a forget objective; valid: ga, .*npo"):
        build_method({"name": "ngdiff", "forget_loss": "gdiff"})
    with pytest.raises(ValueError, match=r"method.forget_args.bta is not a key of npo .* valid: beta, "):
        build_method({"name": "ngdiff", "forget_loss": "npo", "forget_args": {"bta": 1}})
