"""The opt-in MIA attacks (eval/mia/extra.py): gradnorm against gradients written out by hand on a
bigram table, vmap against the per-text backward loop, reference against hand-computed losses of
two toy models, the AUC orientation, no cost when off, and both attacks end to end on TOFU and MUSE."""
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from eval.mia import extra as mia_extra
from eval.mia import scores as ms
from eval.muse import evaluate as muse_eval
from eval.mia.attacks import ATTACKS, MiaSettings, mia_aucs
from eval.mia.extra import extra_scores, gradnorm_scores, sample_loss
from eval.per_item import indexed
from eval.tofu.evaluate import forget_mia_aucs
from tests.conftest import compose_cfg
from eval.ou.read import load_ou_eval
from unlearn.pipeline import OU_LOGS, run

P = [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.2, 0.2], [0.4, 0.3, 0.2, 0.1]]  # target
Q = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.2, 0.2]]  # reference


class BigramLM(torch.nn.Module):
    """logits[b, t] = table[x_t] (+ bias): a softmax row per previous token; ``unused`` never enters
    the forward (open-unlearning leaves a parameter without gradient out of the mean)."""

    def __init__(self, table, bias=False):
        super().__init__()
        self.table = torch.nn.Parameter(torch.log(torch.tensor(table, dtype=torch.float64)))
        self.bias = torch.nn.Parameter(torch.zeros(len(table), dtype=torch.float64)) if bias else None
        self.unused = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None):
        logits = self.table[input_ids]
        return SimpleNamespace(logits=logits if self.bias is None else logits + self.bias)


def feat(ids, n_prompt=1):
    return {"input_ids": list(ids), "attention_mask": [1] * len(ids), "labels": [-100] * n_prompt + list(ids[n_prompt:])}


FEATS = [feat([0, 1, 2, 3]), feat([0, 2, 1]), feat([3, 3, 0, 1, 1], n_prompt=2)]


def hand_gradnorm(table, f, p, bias):
    """d mean-NLL / d logits at a scored position t is softmax(row x_{t-1}) - onehot(x_t), / n, over
    the scored tokens but the last (open-unlearning's tokenwise_logprobs)."""
    ids, labels = f["input_ids"], f["labels"]
    scored = [t for t in range(1, len(ids)) if labels[t] != -100][:-1]
    P_ = np.array(table)
    g_table, g_bias = np.zeros_like(P_), np.zeros(len(P_))
    for t in scored:
        d = P_[ids[t - 1]].copy()  # the table holds log-probs: its softmax is the row itself
        d[ids[t]] -= 1
        g_table[ids[t - 1]] += d / len(scored)
        g_bias += d / len(scored)
    norm = lambda g: np.linalg.norm(g.ravel(), ord=p)  # noqa: E731
    return (norm(g_table) + norm(g_bias)) / 2 if bias else norm(g_table)


@pytest.mark.parametrize("per_sample", ["vmap", "loop"])
@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
@pytest.mark.parametrize("bias", [False, True])
def test_gradnorm_is_the_mean_per_tensor_norm_of_the_loss_gradient(per_sample, p, bias):
    model = BigramLM(P, bias=bias)
    got = gradnorm_scores(model, FEATS, p=p, per_sample=per_sample, batch_size=2)
    want = [hand_gradnorm(P, f, p, bias) for f in FEATS]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert all(q.grad is None for q in model.parameters())  # a training loop's .grad is never touched


def test_sample_loss_drops_the_last_scored_token_as_open_unlearning():
    logits = torch.log(torch.tensor(P))[torch.tensor([0, 1, 2, 3, 0])]
    labels = torch.tensor([-100, 1, 2, 3, -100])  # the last position is padding
    lp = [math.log(P[0][1]), math.log(P[1][2]), math.log(P[2][3])]
    assert sample_loss(logits, labels).item() == pytest.approx(-sum(lp[:2]) / 2)  # not -sum(lp) / 3
    assert math.isnan(sample_loss(logits, torch.tensor([-100, 1, -100, -100, -100])).item())


def tiny_llama(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      **kw)
    return LlamaForCausalLM(cfg)


LLAMA_FEATS = [feat([1, *range(5, 5 + n)], n_prompt=1 + n // 3) for n in (3, 9, 6, 12, 4)]


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_vmap_equals_the_backward_loop_on_a_tiny_llama(p, caplog):
    model = tiny_llama()
    vm = gradnorm_scores(model, LLAMA_FEATS, p=p, batch_size=3, per_sample="vmap")  # right-padded batches
    assert "vmap failed" not in caplog.text  # traced, not fallen back
    loop = gradnorm_scores(model, LLAMA_FEATS, p=p, batch_size=3, per_sample="loop")
    np.testing.assert_allclose(vm, loop, rtol=1e-4)
    assert model.training  # the mode it came in
    # a frozen model: gradients w.r.t. all its weights, its requires_grad left as it was
    model.requires_grad_(False)
    np.testing.assert_allclose(gradnorm_scores(model, LLAMA_FEATS[:2], p=p, per_sample="loop"), loop[:2], rtol=1e-5)
    assert not any(q.requires_grad for q in model.parameters())


def plain_gradnorm(model, f, p=2.0):
    """Independently of eval/mia_extra: a copy with every parameter trainable, one autograd.grad over
    all of them of the mean NLL of the scored tokens but the last, the mean of the tensors' p-norms."""
    import copy

    m = copy.deepcopy(model).requires_grad_(True)
    params = [q for q in m.parameters() if q.is_floating_point()]
    ids, labels = torch.tensor([f["input_ids"]]), torch.tensor(f["labels"])
    scored = (labels[1:] != -100).nonzero().squeeze(-1)[:-1]  # open-unlearning: the last scored token out
    logits = m(input_ids=ids).logits[0, :-1].double()
    loss = F.cross_entropy(logits[scored], ids[0, 1:][scored])
    grads = [g for g in torch.autograd.grad(loss, params, allow_unused=True) if g is not None]
    return float(torch.stack([torch.linalg.vector_norm(g.double().flatten(), ord=p) for g in grads]).mean())


@pytest.mark.parametrize("per_sample", ["vmap", "loop"])
def test_gradnorm_is_over_every_parameter_whatever_requires_grad(per_sample):
    """RMU leaves 1 of the model's tensors trainable: the unlearned model is scored on the same
    parameters as the target and retain models, all of them (open-unlearning re-loads the checkpoint)."""
    model = tiny_llama()
    for n, q in model.named_parameters():
        q.requires_grad_(n == "model.layers.1.mlp.down_proj.weight")
    got = gradnorm_scores(model, LLAMA_FEATS, per_sample=per_sample, batch_size=3)
    np.testing.assert_allclose(got, [plain_gradnorm(model, f) for f in LLAMA_FEATS], rtol=1e-4)
    assert [n for n, q in model.named_parameters() if q.requires_grad] == ["model.layers.1.mlp.down_proj.weight"]


def test_gradnorm_of_a_lora_model_is_the_merged_checkpoints():
    """LoRA: the base weights' gradients, which are the merged weights' (W + s B A is linear in W),
    not the adapters': the number open-unlearning gets from the merged checkpoint."""
    from tests.test_lora import LORA
    from unlearn.models import apply_lora

    model = apply_lora(tiny_llama(), LORA)
    torch.manual_seed(1)
    for n, q in model.named_parameters():
        if "lora_B" in n:
            q.data.normal_(0, 0.5)  # a trained adapter (B starts at 0: merged == base)
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    got = gradnorm_scores(model, LLAMA_FEATS, per_sample="loop")
    np.testing.assert_allclose(got, [plain_gradnorm(merged, f) for f in LLAMA_FEATS], rtol=1e-4)


def test_muse_gradnorm_drops_the_last_text_token_as_open_unlearning():
    """MUSE's own code has no gradnorm: open-unlearning's rule (tokenwise_logprobs drops the last
    scored token; a MUSE text has no EOS, so that is its last word piece) under either compat."""
    texts = [feat([1, 0, 2, 3]), feat([1, 3, 3, 0, 2])]  # encode_text's shape: BOS unscored, no EOS
    for variant in ("muse", "ou"):
        settings = MiaSettings(min_k_variant=variant, extra_attacks=("gradnorm",))
        got = extra_scores(BigramLM(P), None, texts, np.zeros(2), settings, batch_size=2)["gradnorm"]
        np.testing.assert_allclose(got, [hand_gradnorm(P, f, 2, False) for f in texts], rtol=1e-10)


class ItemLM(BigramLM):
    """Data-dependent control flow in the forward: vmap cannot trace it."""

    def forward(self, input_ids, attention_mask=None):
        if int(input_ids.max().item()) >= len(P):
            raise ValueError("token out of range")
        return super().forward(input_ids, attention_mask)


def test_vmap_falls_back_to_the_loop_on_a_model_it_cannot_trace(caplog):
    with caplog.at_level(logging.WARNING, logger="eval.mia.extra"):
        got = gradnorm_scores(ItemLM(P), FEATS, per_sample="vmap")
    assert "vmap failed on ItemLM" in caplog.text
    np.testing.assert_allclose(got, [hand_gradnorm(P, f, 2, False) for f in FEATS], rtol=1e-10)


def fake_prepared(models):
    loads = []

    def load(name):
        loads.append(name)
        return models[name]()

    return SimpleNamespace(load=load, model_identity=lambda name: {"stage": name}, dtype="float32",
                           tokenizer=SimpleNamespace(pad_token_id=0), stages={}), loads


def nll(table, f):
    ids, labels = f["input_ids"], f["labels"]
    terms = [-math.log(table[ids[t - 1]][ids[t]]) for t in range(1, len(ids)) if labels[t] != -100]
    return sum(terms) / len(terms)


def test_reference_is_target_minus_reference_loss_and_scored_once():
    mia_extra.clear_reference_cache()
    prepared, loads = fake_prepared({"retain": lambda: BigramLM(Q)})
    settings = MiaSettings(extra_attacks=("reference",))
    target_loss = np.array([nll(P, f) for f in FEATS])
    want = [nll(P, f) - nll(Q, f) for f in FEATS]
    for _ in range(3):  # every evaluation of a run: the reference model is loaded and scored once
        out = extra_scores(BigramLM(P), prepared, FEATS, target_loss, settings, batch_size=2)
        np.testing.assert_allclose(out["reference"], want, rtol=1e-6)
    assert set(out) == {"reference"} and loads == ["retain"]
    extra_scores(BigramLM(P), prepared, FEATS[:2], target_loss[:2], settings, batch_size=2)  # other texts
    assert loads == ["retain", "retain"]
    mia_extra.clear_reference_cache()


def test_auc_orientation_members_have_smaller_gradient_norms():
    """A bigram that learned the members' transitions (r -> r+1): members sit near a minimum."""
    peaked = [[0.97 if c == (r + 1) % 4 else 0.01 for c in range(4)] for r in range(4)]
    members = [feat([0, 1, 2, 3, 0]), feat([1, 2, 3, 0]), feat([2, 3, 0, 1, 2])]
    holdout = [feat([0, 2, 0, 2, 0]), feat([3, 1, 3, 1]), feat([1, 3, 0, 2, 1])]
    scores = gradnorm_scores(BigramLM(peaked), members + holdout)
    assert scores[:3].max() < scores[3:].min()
    forget = {f"mia_{a}": indexed(scores[:3]) for a in (*ATTACKS, "gradnorm")}
    forget.update({f"mia_holdout_{a}": indexed(scores[3:]) for a in (*ATTACKS, "gradnorm")})
    assert forget_mia_aucs(forget)["gradnorm"] == 0.0  # MUSE's orientation: memorised -> 0
    assert ms.mia_auc(scores[:3], scores[3:], "ou") == 1.0  # open-unlearning's number: 1 - ours
    members_log = {a: indexed(scores[:3]) for a in (*ATTACKS, "gradnorm")}
    assert mia_aucs(members_log, {a: indexed(scores[3:]) for a in ATTACKS})["loss"] == 0.0  # gradnorm: one side only
    assert "gradnorm" not in mia_aucs(members_log, {a: indexed(scores[3:]) for a in ATTACKS})


def test_off_means_no_gradient_and_no_reference(tmp_path, monkeypatch):
    from unlearn.models import build_tiny_llama
    from unlearn.tokenizer import train_bpe_tokenizer

    texts = {g: [f"{g} text {i} about the mill of Dunmere." for i in range(3)] for g in muse_eval.PRIVLEAK_GROUPS}
    tok = train_bpe_tokenizer([t for ts in texts.values() for t in ts] * 3, 300, tmp_path / "tok")
    model = build_tiny_llama({"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "max_position_embeddings": 64}, tok, seed=0)
    prepared = SimpleNamespace(data=SimpleNamespace(rows=lambda config, split: {"text": texts[split]}), tokenizer=tok)

    def forbidden(*a, **k):
        raise AssertionError("a gradient / reference pass with the extra attacks off")

    for name in ("gradnorm_scores", "reference_losses"):
        monkeypatch.setattr(mia_extra, name, forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    cfg = compose_cfg(["eval=muse"]).eval
    log = muse_eval.privleak_log(model, prepared, cfg)
    assert set(log["forget"]) == set(ATTACKS) | {"num_tokens"}
    cfg.mia.extra_attacks = ["gradnorm"]
    with pytest.raises(AssertionError, match="extra attacks off"):
        muse_eval.privleak_log(model, prepared, cfg)


def test_bad_settings_fail_before_any_work():
    from unlearn.schema import ConfigError, check_ranges

    for bad in ("eval.mia.extra_attacks=[recall]", "eval.mia.gradnorm_p=3", "eval.mia.gradnorm_batch_size=0",
                "eval.mia.gradnorm_per_sample=jit"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            check_ranges(compose_cfg(["debug=tiny", bad]))
    with pytest.raises(ValueError, match="gradnorm_p"):
        MiaSettings(gradnorm_p=3)


# ---------------------------------------------------------------------------------------- end to end
EXTRA = "eval.mia.extra_attacks=[gradnorm,reference]"


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=1", "save_checkpoint=false", EXTRA, *overrides)
    return make


def _counting_loads(monkeypatch):
    loads = []
    real = mia_extra.load_reference
    monkeypatch.setattr(mia_extra, "load_reference", lambda prepared, name: loads.append(name) or real(prepared, name))
    mia_extra.clear_reference_cache()
    return loads


def test_tofu_end_to_end_with_both_extra_attacks(cfg, tmp_path, monkeypatch):
    from eval.tofu.evaluate import summarize

    loads = _counting_loads(monkeypatch)
    c = cfg("method=ga", "eval.trajectory_every=1", "eval.ou_logs=true")
    rec = run(c, run_dir=tmp_path / "t")
    assert rec["status"] == "ok", rec.get("error")
    assert loads == ["retain"]  # target, retain, 2 trajectory steps and the unlearned model: one reference pass
    for name, m in rec["metrics"].items():
        s, forget = m["summary"], m["logs"]["forget"]
        assert {"mia_auc_gradnorm", "mia_auc_reference"} <= set(s), name
        for a in ("gradnorm", "reference"):
            assert len(forget[f"mia_{a}"]) == len(forget[f"mia_holdout_{a}"]) == len(forget["avg_gt_loss"])
        assert min(forget["mia_gradnorm"].values()) > 0
        assert summarize(m["logs"], rec["metrics"]["retain"]["logs"]["forget"], c.eval) == s
    # the reference is the retain model itself: 0 up to float32 (the two passes batch the texts differently)
    assert np.allclose(list(rec["metrics"]["retain"]["logs"]["forget"]["mia_reference"].values()), 0, atol=1e-5)
    assert "mia_auc_gradnorm" in rec["trajectory"][0]
    ou = load_ou_eval(tmp_path / "t" / OU_LOGS / "unlearned")  # open-unlearning's file: its orientation
    for a in ("gradnorm", "reference"):
        assert ou[f"mia_{a}"]["agg_value"] == pytest.approx(1 - rec["metrics"]["unlearned"]["summary"][f"mia_auc_{a}"])


def test_muse_end_to_end_with_both_extra_attacks(cfg, tmp_path, monkeypatch):
    loads = _counting_loads(monkeypatch)
    rec = run(cfg("dataset=muse_synth", "eval=muse", "eval.mia.reference_model=target"), run_dir=tmp_path / "m")
    assert rec["status"] == "ok", rec.get("error")
    assert loads == ["target"]
    for name, m in rec["metrics"].items():
        priv = m["logs"]["privleak"]
        assert {"mia_auc_gradnorm", "mia_auc_reference", "privleak_gradnorm"} <= set(m["summary"]), name
        assert set(priv["forget"]) == set(priv["holdout"]) == set(ATTACKS) | {"num_tokens", "gradnorm", "reference"}
        assert set(priv["retain"]) == set(ATTACKS) | {"num_tokens"}  # the retain probe: no extra cost
    target = rec["metrics"]["target"]["logs"]["privleak"]  # the target against itself
    assert np.allclose(list(target["forget"]["reference"].values()), 0, atol=1e-5)
