"""RMU and UNDIAL: each loss against numbers worked out by hand, RMU's parameter selection, UNDIAL's
adjusted target, both as the forget task of a direction method, and that one end to end."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.test_accumulation import train
from tests.test_methods import FORGET, P, Q, BigramLM, batch, context
from tests.tiny import tiny_llama
from unlearn.losses import lm_loss
from unlearn.methods import METHODS, build_method
from unlearn.methods.rmu import decoder_layers, layer_output
from unlearn.methods.undial import adjusted_target
from unlearn.pipeline import STEP_LOG, run

# ---------------------------------------------------------------------------------------------
# a residual stack whose activations are hand-computable: h <- h + w h per layer, so after layers
# 0..l the hidden state of token v is (1 + w)^(l+1) E[v]


class Block(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.mlp = torch.nn.Module()
        self.mlp.down_proj = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.mlp.down_proj.weight.copy_(w * torch.eye(2))
            self.mlp.down_proj.bias.zero_()
        self.scale = torch.nn.Parameter(torch.ones(2))  # a parameter of the layer outside its MLP

    def forward(self, h):
        return h + self.scale * self.mlp.down_proj(h)


class Stack(torch.nn.Module):
    def __init__(self, ws=(0.5, 0.5, 0.5)):
        super().__init__()
        self.embed = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        self.layers = torch.nn.ModuleList(Block(w) for w in ws)
        self.forwards = 0

    def forward(self, input_ids, attention_mask=None):
        self.forwards += 1
        h = self.embed[input_ids]
        for block in self.layers:
            h = block(h)
        return SimpleNamespace(logits=h @ self.embed.T)


class Wrapped(torch.nn.Module):
    """What DDP does to a model's names: everything under ``module.``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, **kw):
        return self.module(**kw)


# sequence 0: tokens 0, 1, 2 (1 and 2 scored); sequence 1: tokens 2, 0 (0 scored), padded with 0
ACT = [{"input_ids": [0, 1, 2], "attention_mask": [1, 1, 1], "labels": [-100, 1, 2]},
       {"input_ids": [2, 0], "attention_mask": [1, 1], "labels": [-100, 0]}]
E = {0: [1.0, 0.0], 1: [0.0, 1.0], 2: [1.0, 1.0]}


def rmu(**cfg):
    return build_method({"name": "rmu", "layer": 1, "steering_coeff": 0.0, **cfg})


def loss(method, task, model, b=None):
    b = batch(ACT, [0, 1]) if b is None else b
    return float(method.task_losses(model, {"forget": b, "retain": b})[task]().detach())


def test_rmu_forget_loss_by_hand():
    # c = 0: the target is 0 and h = 1.5^2 E[v] after layer 1: mean_d h^2 = 2.53125 (E = e_i), 5.0625 (E = 1, 1)
    assert loss(rmu(retain_weight=0), "forget", Stack()) == pytest.approx(((2.53125 + 5.0625) / 2 + 2.53125) / 2)
    assert loss(rmu(retain_weight=0, positions="attended"), "forget", Stack()) == pytest.approx(
        ((2 * 2.53125 + 5.0625) / 3 + (5.0625 + 2.53125) / 2) / 2)  # the unscored first tokens count too
    assert loss(rmu(retain_weight=0, hidden_reduction="sum"), "forget", Stack()) == pytest.approx(
        2 * ((2.53125 + 5.0625) / 2 + 2.53125) / 2)  # the squared norm: width 2 times the mean
    # c = 3: || h - 3 u ||^2 / 2 per scored token, u a fixed random unit vector with entries in [0, 1)
    method = rmu(retain_weight=0, steering_coeff=3.0)
    got = loss(method, "forget", Stack())
    u = method.u.numpy()
    assert np.linalg.norm(u) == pytest.approx(1.0) and (u >= 0).all()

    def term(v):
        return float(np.mean((2.25 * np.array(E[v]) - 3 * u) ** 2))

    assert got == pytest.approx(((term(1) + term(2)) / 2 + term(0)) / 2, rel=1e-6)
    assert loss(method, "forget", Stack()) == pytest.approx(got)  # u is drawn once
    twin, other = rmu(retain_weight=0), rmu(retain_weight=0, direction_seed=1)
    twin.direction(2), other.direction(2)
    assert torch.equal(twin.u, method.u) and not torch.equal(other.u, method.u)


def test_rmu_retain_losses_by_hand():
    ref, loads = Stack(), []
    method = rmu(retain_weight=2.0)
    method.setup(context(ref, loads))
    assert loads == [1] and method.lm_tasks == () and method.weights() == {"forget": 1.0, "retain": 2.0}
    # the model's first layer is the identity: h = 1.5 E[v] against the reference's 2.25 E[v]: a
    # difference of 0.75 E[v], mean_d 0.28125 (E = e_i) or 0.5625 (E = 1, 1)
    model = Stack(ws=(0.0, 0.5, 0.5))
    assert loss(method, "retain", model) == pytest.approx(((0.28125 + 0.5625) / 2 + 0.28125) / 2)
    assert ref.forwards == 1 and all(p.grad is None for p in ref.parameters())
    assert loss(method, "retain", Stack()) == 0.0  # at the target
    nll = rmu(retain_loss="nll")
    nll.setup(context())  # the LM retain loss needs no reference
    b = batch(ACT, [0, 1])
    assert nll.lm_tasks == ("retain",)
    assert loss(nll, "retain", model) == pytest.approx(float(lm_loss(model, b).detach()))
    kl = rmu(retain_loss="kl")
    kl.setup(context(Stack(), []))
    with torch.no_grad():
        logp, ref_logp = (torch.log_softmax(m(b["input_ids"]).logits, -1) for m in (model, Stack()))
    by_hand = float((ref_logp.exp() * (ref_logp - logp)).sum(-1).mean())  # every position of the padded batch
    assert loss(kl, "retain", model) == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="valid: embed_diff, nll, kl"):
        rmu(retain_loss="mse")


def test_rmu_trains_only_the_chosen_layers():
    model, start = Stack(), Stack()
    method = rmu(steering_coeff=3.0)  # layer 1 with update_layers 3: layers 0 and 1 (there is no layer -1)
    method.prepare_model(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f"layers.{i}.mlp.down_proj.{k}" for i in (0, 1) for k in ("weight", "bias")}
    method.setup(context(Stack(), []))
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    for fn in method.task_losses(model, {"forget": batch(ACT, [0, 1]), "retain": batch(ACT, [1])}).values():
        fn().backward()
    optim.step()
    for (name, p), p0 in zip(model.named_parameters(), start.parameters()):
        assert torch.equal(p, p0) != p.requires_grad, name
    one = Stack()
    rmu(update_layers=1).prepare_model(one)
    assert {n for n, p in one.named_parameters() if p.requires_grad} == {"layers.1.mlp.down_proj.weight",
                                                                         "layers.1.mlp.down_proj.bias"}
    every = Stack()
    rmu(update_params="all").prepare_model(every)  # open-unlearning's RMU.yaml: every parameter
    assert all(p.requires_grad for p in every.parameters())
    with pytest.raises(ValueError, match="matches update_params"):
        rmu(update_params="attn.*").prepare_model(Stack())


def test_only_rmu_training_every_parameter_leaves_some_without_gradient():
    # the search for unused parameters (DDP's find_unused_parameters) is asked for exactly then
    assert rmu(update_params="all").unused_parameters and not rmu().unused_parameters
    forget_rmu = {"forget_loss": "rmu", "forget_args": {"update_params": "all"}}
    assert build_method({"name": "ngdiff", **forget_rmu}).unused_parameters
    assert not build_method({"name": "ngdiff", "forget_loss": "rmu"}).unused_parameters
    assert not any(build_method({"name": m}).unused_parameters for m in METHODS if m != "rmu")


def test_rmu_on_a_llama_layer_names_and_range():
    model = tiny_llama()  # 2 decoder layers
    rmu().prepare_model(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"}
    with pytest.raises(ValueError, match=r"method.layer=2 is out of range .* valid 0..1"):
        rmu(layer=2).prepare_model(tiny_llama())
    with pytest.raises(ValueError, match="layer >= 0"):
        rmu(layer=-1)
    # the hook's activation is the layer's output, hidden_states[l + 1]; found under a DDP-style wrapper too
    b = {"input_ids": torch.tensor([[1, 5, 7, 9]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        states = model(**b, output_hidden_states=True).hidden_states
        assert torch.allclose(layer_output(model, decoder_layers(model, "layers")[0], b), states[1])
        wrapped = Wrapped(model)
        assert torch.allclose(layer_output(wrapped, decoder_layers(wrapped, "layers")[0], b), states[1])
    assert loss(rmu(layer=0), "forget", Wrapped(Stack())) == pytest.approx(loss(rmu(layer=0), "forget", Stack()))


def test_rmu_through_the_engine_moves_only_its_layers_and_splits_exactly(tmp_path):
    # per-sequence means: k micro-batches of b take the update of one batch of k*b
    args = {"layer": 1, "steering_coeff": 2.0, "retain_weight": 1.0}
    one, _, rows = train("rmu", tmp_path, 4, 1, **args)
    two, _, _ = train("rmu", tmp_path, 2, 2, **args)
    start, p1, p2 = tiny_llama().state_dict(), one.state_dict(), two.state_dict()
    assert {k for k in p1 if not torch.equal(p1[k], start[k])} == {
        "model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"}
    assert max(float((p2[k] - p1[k]).abs().max()) for k in p1) < 2e-5
    assert rows[0]["loss/retain"] == 0.0 and rows[-1]["loss/retain"] > 0  # starts at the target


# ---------------------------------------------------------------------------------------------
# UNDIAL


def test_undial_adjusted_target_on_hand_made_distributions():
    ref = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.5, 0.3, 0.2], [1.0, 1.0, 1.0]],
                                  [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [1.0, 1.0, 1.0]]]))
    # row 0: position 0 predicts label 0, position 1 nothing; row 1: position 0 predicts 1, 1 predicts 2
    labels = torch.tensor([[-100, 0, -100], [-100, 1, 2]])
    q = adjusted_target(ref, labels, math.log(2))
    assert q[0, 0].tolist() == pytest.approx([1 / 3] * 3)  # 0.5 / 2 = 0.25: uniform
    assert q[0, 1].tolist() == pytest.approx([0.5, 0.3, 0.2])  # unscored: the target's own distribution
    assert q[1, 0].tolist() == pytest.approx([0.5 / 0.85, 0.15 / 0.85, 0.2 / 0.85])
    assert q[1, 1].tolist() == pytest.approx([0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9])
    assert adjusted_target(ref, labels, math.log(3))[1, 0].tolist() == pytest.approx([0.625, 0.125, 0.25])


def undial_by_hand(b, beta, scored_only):
    """mean over positions of -sum_v q(v) log P[a][v], q = Q[a] with Q[a][y] scaled by e^-beta, renormalized."""
    terms = []
    for ids, labels in zip(b["input_ids"].tolist(), b["labels"].tolist()):
        for t in range(len(ids) - 1):
            a, y = ids[t], labels[t + 1]
            if scored_only and y == -100:
                continue
            q = [Q[a][v] * (math.exp(-beta) if v == y else 1.0) for v in range(4)]
            terms.append(-sum(qv / sum(q) * math.log(P[a][v]) for v, qv in enumerate(q)))
    return sum(terms) / len(terms)


def test_undial_loss_by_hand_and_one_reference_forward_per_batch():
    ref, loads = BigramLM(Q), []
    method = build_method({"name": "undial", "beta": 1.5, "retain_weight": 0.0})  # conf/method/undial.yaml's
    method.setup(context(ref, loads))
    assert loads == [1] and method.tasks == ("forget",) and method.lm_tasks == ()
    b = batch(FORGET, [0, 1])  # row 1 is padded at its last position
    model = BigramLM(P)
    for step in range(2):
        assert loss(method, "forget", model, b) == pytest.approx(undial_by_hand(b, 1.5, True), rel=1e-5)
        assert ref.forwards == step + 1
    every = build_method({"name": "undial", "beta": 1.5, "positions": "all"})
    every.setup(context(BigramLM(Q), []))
    assert loss(every, "forget", model, b) == pytest.approx(undial_by_hand(b, 1.5, False), rel=1e-5)
    retained = build_method({"name": "undial", "retain_weight": 0.5})
    assert retained.weights() == {"forget": 1.0, "retain": 0.5} and retained.lm_tasks == ("retain",)
    with pytest.raises(ValueError, match="valid: all, scored"):
        build_method({"name": "undial", "positions": "answer"})
    with pytest.raises(ValueError, match="beta > 0"):
        build_method({"name": "undial", "beta": 0})


# ---------------------------------------------------------------------------------------------
# as a direction method's forget task


def test_rmu_and_undial_as_the_forget_task_of_ngdiff():
    ng = build_method({"name": "ngdiff", "forget_loss": "rmu", "forget_args": {"layer": 1, "steering_coeff": 3.0}})
    assert ng.forget_objective.tasks == ("forget",)
    model = Stack()
    ng.prepare_model(model)  # the objective's selection: only RMU's layers train, for both tasks
    assert sum(p.requires_grad for p in model.parameters()) == 4
    ng.setup(context())  # RMU's forget loss needs no reference
    alone = rmu(retain_weight=0, steering_coeff=3.0)
    assert loss(ng, "forget", model) == pytest.approx(-loss(alone, "forget", model))
    assert ng.lm_tasks == ("retain",)
    ng = build_method({"name": "ngdiff", "forget_loss": "undial", "forget_args": {"beta": 2.0}})
    ng.setup(context(BigramLM(Q), []))
    b = batch(FORGET, [0, 1])
    assert loss(ng, "forget", BigramLM(P), b) == pytest.approx(-undial_by_hand(b, 2.0, True), rel=1e-5)
    assert loss(ng, "retain", BigramLM(P), b) == pytest.approx(float(lm_loss(BigramLM(P), b).detach()))


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=2", "save_checkpoint=false", *overrides)
    return make


@pytest.mark.parametrize("objective", ["rmu", "undial"])
def test_ngdiff_with_either_forget_loss_runs_end_to_end(cfg, tmp_path, objective):
    args = ["method.forget_args={layer:1}"] if objective == "rmu" else []  # debug=tiny: 2 layers
    rec = run(cfg("method=ngdiff", f"method.forget_loss={objective}", "scheduler=constant", *args),
              run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    rows = [json.loads(line) for line in (tmp_path / "run" / STEP_LOG).read_text().splitlines()]
    assert rec["unlearn"]["steps"] == 2 and all(math.isfinite(r["loss/forget"]) and r["loss/forget"] < 0 for r in rows)


@pytest.mark.parametrize("n_layers, expected", [(32, 7), (16, 4), (28, 6), (4, 1), (2, 0), (1, 0)])
def test_rmu_default_layer_is_the_papers_depth(n_layers, expected):
    # layer 7 of 32 (WMDP, open-unlearning) at the same relative depth: round(7 n / 32)
    assert build_method({"name": "rmu"}).layer_index(n_layers) == expected
    if n_layers > 3:  # an explicit layer is taken as it is
        assert build_method({"name": "rmu", "layer": 3}).layer_index(n_layers) == 3


def test_rmu_layer_out_of_range_is_rejected_before_any_work(debug_cfg, tmp_path):
    rec = run(debug_cfg("method=rmu", "method.layer=5"), run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and "method.layer=5 is out of range for a model of 2 decoder layers" in rec["error"]["message"]
    assert not (tmp_path / "outputs" / "debug" / "cache").exists()  # no stage was built
