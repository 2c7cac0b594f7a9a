"""One update, however it is computed: k micro-batches of b take the update of one batch of k*b
(the 2-process versions are in tests/test_distributed.py), the effective batch is what the config
says, FSDP's short steps are padded, and clipping acts on the final direction."""
import json

import pytest
import torch

from tests.conftest import sampled
from tests.tiny import tiny_llama, varied_features
from unlearn.batching import PairedBatches, batch_plan
from unlearn.engine import unlearn
from unlearn.gradients import clip_direction
from unlearn.methods import MethodContext, build_method
from unlearn.schedulers import build_scheduler

METHODS = {"gdiff": {"retain_weight": 1.0, "forget_weight": 1.0}, "ngdiff": {"eps": 1e-8}, "npo": {"beta": 0.1},
           "mgda": {}, "pcgrad": {},
           # token-level objectives: token means of the effective batch (scored_mean), not of a micro-batch
           "wga": {"beta": 1.0}, "satimp": {}, "undial": {"beta": 10.0, "retain_weight": 1.0},
           "pdu": {"eps": 0.3, "dual_init": 1.0, "dual_lr": 0.1}, "kl": {"kl_positions": "scored", "retain_weight": 1.0, "forget_weight": 1.0}}
GEN = {"name": "gen", "lazy": 2, "fit": "retain", "ema": 0.5, "clip": [0.5, 2.0]}


feats = varied_features  # different lengths: micro-batches hold different token counts
FORGET, RETAIN = feats(12, 1), feats(30, 2)


def context():
    return MethodContext(encode=None, forget_rows=[{}] * len(FORGET), retain_rows=[], forget_features=FORGET,
                         retain_features=[], pad_id=0, device=torch.device("cpu"),
                         load_reference=lambda: tiny_llama())


def train(method, tmp_path, batch_size, accum, sched=GEN, **extra):
    cfg = {"name": method, **METHODS.get(method, {}), "lr": 3e-3, "epochs": 2, "batch_size": batch_size,
           "grad_accum_steps": accum, "optimizer": "adamw", "weight_decay": 0.01, **extra}
    model = tiny_llama()
    path = tmp_path / f"{method}-{batch_size}x{accum}.jsonl"
    res = unlearn(model, build_method(cfg), lambda t, e: build_scheduler(sched, cfg["lr"], t, e), FORGET, RETAIN,
                  cfg, pad_id=0, seed=5, log_path=path, context=context())
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return model, res, rows


# every method in the slow tier; the fast one: the normalized, plain, KL, preference and solver-based kinds
@pytest.mark.parametrize("method", sampled(list(METHODS), ("ngdiff", "gdiff", "kl", "npo", "mgda")))
def test_accumulated_micro_batches_take_the_big_batch_update(method, tmp_path):
    one, res1, rows1 = train(method, tmp_path, 4, 1)
    assert res1.batch == {"batch_size": 4, "grad_accum_steps": 1, "processes": 1, "effective_batch": 4}
    assert res1.steps == 6 and sum("gen/a" in r for r in rows1) == 3  # 3 steps an epoch; GeN probes 0, 2, 4
    start = tiny_llama().state_dict()
    p1 = one.state_dict()
    moved = max(float((p1[k] - start[k]).abs().max()) for k in p1)
    for b, k in ((2, 2), (1, 4)):
        model, res, rows = train(method, tmp_path, b, k)
        assert res.batch["effective_batch"] == 4 and res.steps == 6
        p = model.state_dict()
        diff = max(float((p[n] - p1[n]).abs().max()) for n in p1)
        print(f"{method} {b}x{k}: max |param - param(4x1)| = {diff:.2e} (largest update {moved:.2e})")
        assert moved > 1e-3 and diff < 2e-5
        for r, r1 in zip(rows, rows1):  # the same losses, geometry, probes and rates along the way
            # a cosine of a vanishing gradient (KL to the reference at step 0) is rounding noise
            tiny = min((v for k, v in r1.items() if k.startswith("grad_norm/")), default=1.0) < 1e-5
            for key, v in r1.items():
                if key.startswith("cos/") and tiny:
                    continue
                if key.startswith(("loss/", "grad_norm/", "cos/", "dir_norm", "gen/l", "gen_eta")) or key == "lr":
                    assert r[key] == pytest.approx(v, rel=1e-4, abs=1e-6), key


def test_effective_batch_sets_the_accumulation():
    assert batch_plan({"batch_size": 4, "effective_batch": 32}, 2)["grad_accum_steps"] == 4
    assert batch_plan({"batch_size": 4, "effective_batch": 32}, 1)["grad_accum_steps"] == 8
    assert batch_plan({"batch_size": 8, "grad_accum_steps": None}, 1)["effective_batch"] == 8
    assert batch_plan({"batch_size": 2, "grad_accum_steps": 3}, 2)["effective_batch"] == 12
    with pytest.raises(ValueError, match="effective_batch=32 is not method.batch_size=4 x grad_accum_steps=\\? x 3"):
        batch_plan({"batch_size": 4, "effective_batch": 32}, 3)
    with pytest.raises(ValueError, match="effective_batch=32 is not method.batch_size=4 x grad_accum_steps=2 x 1"):
        batch_plan({"batch_size": 4, "grad_accum_steps": 2, "effective_batch": 32}, 1)
    with pytest.raises(ValueError, match=">= 1"):
        batch_plan({"batch_size": 4, "grad_accum_steps": 0}, 1)


def test_micro_batches_of_a_step_and_fsdp_padding():
    forget, retain = feats(10, 3), feats(20, 4)
    # effective batch 8 on 2 processes, micro-batches of 2: steps of 8 and the rest, 2
    plans = {r: list(PairedBatches(forget, retain, 8, 0, rank=r, world=2).steps(0, 2)) for r in (0, 1)}
    assert [[len(m.forget) for m in s] for s in plans[0]] == [[2, 2], [1]]
    union = sorted(i for r in (0, 1) for s in plans[r] for m in s for i in m.forget)
    assert union == list(range(10))
    # under FSDP (synced: every forward is a collective) every rank runs rank 0's number of micro-batches
    even = {r: list(PairedBatches(forget, retain, 10, 0, rank=r, world=2).steps(0, 4, synced=True))[0]
            for r in (0, 1)}
    assert [(len(m.forget), m.weight) for m in even[0]] == [(4, 1.0), (1, 1.0)] == \
        [(len(m.forget), m.weight) for m in even[1]]  # 5 items each: nothing to pad
    for micro, sizes0, sizes1 in ((4, [4, 1], [(4, 1.0), (4, 0.0)]), (2, [2, 2, 1], [(2, 1.0), (2, 1.0), (2, 0.0)])):
        short = {r: list(PairedBatches(forget[:9], retain, 10, 0, rank=r, world=2).steps(0, micro, synced=True))[0]
                 for r in (0, 1)}  # 9 items: rank 0 holds 5, rank 1 holds 4
        assert [len(m.forget) for m in short[0]] == sizes0 and all(m.weight == 1.0 for m in short[0])
        assert [(len(m.forget), m.weight) for m in short[1]] == sizes1  # padded with a weight-0 copy
        unsynced = list(PairedBatches(forget[:9], retain, 10, 0, rank=1, world=2).steps(0, micro))[0]
        assert len(unsynced) == len(sizes1) - 1  # DDP: no padding (one synced backward per task each)


def test_drop_last_uses_full_batches_only():
    pairs = PairedBatches(feats(10, 3), feats(5, 4), 4, 0, drop_last=True)
    assert pairs.steps_per_epoch == 2 and [len(f) for f, _ in pairs.epoch(0)] == [4, 4]
    with pytest.raises(ValueError, match="no full batch"):
        PairedBatches(feats(3, 3), feats(5, 4), 4, 0, drop_last=True)


def test_clip_rule_on_a_hand_made_gradient():
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([3.0, 4.0])
    out = clip_direction([w], 1.0, None)
    assert out["dir_norm"] == pytest.approx(5.0) and out["clip_coef"] == pytest.approx(1 / (5 + 1e-6))
    assert w.grad.tolist() == pytest.approx([0.6, 0.8], rel=1e-6)
    w.grad = torch.tensor([0.3, 0.4])
    assert clip_direction([w], 1.0, None) == {"dir_norm": pytest.approx(0.5), "clip_coef": 1.0}
    assert w.grad.tolist() == pytest.approx([0.3, 0.4])  # shorter than max_norm: untouched
    assert set(clip_direction([w], None, None)) == {"dir_norm"}


@pytest.mark.parametrize("method", ["ngdiff", "gdiff"])
def test_clipping_scales_the_final_direction(method, tmp_path):
    # SGD at lr 1 without decay: the update is -d, so its norm is the direction's norm
    sgd = {"optimizer": "sgd", "lr": 1.0, "weight_decay": 0.0, "max_steps": 1, "task_grad_stats": method != "gdiff"}
    start = [p.detach().clone() for p in tiny_llama().parameters()]

    def update(**extra):
        cfg = {"name": method, **METHODS[method], "epochs": 1, "batch_size": 4, **sgd, **extra}
        model = tiny_llama()
        path = tmp_path / f"clip{len(extra)}.jsonl"
        unlearn(model, build_method(cfg), lambda t, e: build_scheduler({"name": "constant"}, 1.0, t, e),
                FORGET, RETAIN, cfg, pad_id=0, seed=5, log_path=path)
        delta = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)])
        return delta, json.loads(path.read_text().splitlines()[0])

    free, row = update()
    assert "clip_coef" not in row and row["dir_norm"] == pytest.approx(float(free.norm()), rel=1e-4)
    clipped, row = update(max_grad_norm=0.1)
    assert row["dir_norm"] == pytest.approx(float(free.norm()), rel=1e-4) and row["dir_norm"] > 0.1
    assert row["clip_coef"] == pytest.approx(0.1 / (row["dir_norm"] + 1e-6))
    assert float(clipped.norm()) == pytest.approx(0.1, rel=1e-4)
    assert torch.allclose(clipped, free * row["clip_coef"], atol=1e-6)
