"""Precision by Lightning's names: fp32 master weights make small updates land where pure bf16
rounds them away; fp16's loss scale unscales each task's gradient and skips an overflowing step;
the run loads, trains and saves in the right dtypes; a launcher's precision must agree."""
import json

import pytest
import torch

from tests.tiny import fixed_features, tiny_llama
from unlearn.engine import unlearn
from unlearn.methods import build_method
from unlearn.pipeline import run
from unlearn.precision import LossScaler, Precision, check_launcher_precision
from unlearn.schedulers import build_scheduler

def one_step(precision: str, tmp_path, method="ngdiff", lr=1e-5, optimizer="adamw", model=None, steps=1):
    """``steps`` updates of a bf16-stored tiny Llama in ``precision``; (trainable before, after, result)."""
    model = model if model is not None else tiny_llama().to(torch.bfloat16)
    prec = Precision(precision)
    prec.prepare_trainable(model)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    cfg = {"name": method, "eps": 1e-8, "retain_weight": 1.0, "forget_weight": 1.0, "lr": lr, "epochs": 1,
           "batch_size": 4, "optimizer": optimizer, "weight_decay": 0.01, "max_steps": steps}
    res = unlearn(model, build_method(cfg), lambda t, e: build_scheduler({"name": "constant"}, lr, t, e),
                  fixed_features(8, 1), fixed_features(8, 2), cfg, pad_id=0, seed=0, log_path=tmp_path / f"{precision}.jsonl",
                  precision=prec)
    after = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    return before, after, res


def changed(before, after) -> float:
    return sum(int((a != b).sum()) for a, b in zip(before, after)) / sum(a.numel() for a in before)


def test_mixed_precision_keeps_the_small_updates_that_pure_bf16_rounds_away(tmp_path):
    before, after, _ = one_step("bf16-mixed", tmp_path)
    assert all(p.dtype == torch.float32 for p in after)  # fp32 masters (and fp32 AdamW state)
    mixed = changed(before, after)
    b16, a16, _ = one_step("bf16-true", tmp_path)
    assert all(p.dtype == torch.bfloat16 for p in a16)
    pure = changed(b16, a16)
    print(f"weights changed by one AdamW step at lr 1e-5: bf16-mixed {mixed:.4f}, bf16-true {pure:.4f}")
    assert mixed >= 0.99
    assert pure < 0.3 and pure < mixed / 3


@pytest.mark.parametrize("precision, compute", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16),
                                                ("32-true", torch.float32)])
def test_mixed_precision_computes_in_half_over_fp32_masters(precision, compute, tmp_path):
    seen = []
    model = tiny_llama()
    model.lm_head.register_forward_hook(lambda m, i, o: seen.append((o.dtype, m.weight.dtype)))
    one_step(precision, tmp_path, model=model)
    assert seen and set(seen) == {(compute, torch.float32)}  # autocast: half matmuls, fp32 weights


def test_16_mixed_takes_the_32_true_update(tmp_path):
    # SGD: the update is lr x the unscaled gradient; fp16 compute differs from fp32 only by rounding
    b32, a32, _ = one_step("32-true", tmp_path, method="gdiff", lr=0.1, optimizer="sgd",
                           model=tiny_llama())
    b16, a16, res = one_step("16-mixed", tmp_path, method="gdiff", lr=0.1, optimizer="sgd",
                             model=tiny_llama())
    d32 = torch.cat([(a - b).flatten() for a, b in zip(a32, b32)])
    d16 = torch.cat([(a - b).flatten() for a, b in zip(a16, b16)])
    assert res.skipped_steps == 0 and float(d32.norm()) > 0
    assert float((d16 - d32).norm() / d32.norm()) < 0.02  # unscaled: not 2^16 times too large
    rows = [json.loads(x) for x in (tmp_path / "16-mixed.jsonl").read_text().splitlines()]
    assert rows[0]["loss_scale"] == 2.0**16


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_lowered(tmp_path, monkeypatch):
    monkeypatch.setattr(Precision, "loss_scaler", lambda self: LossScaler(scale=2.0**60))
    before, after, res = one_step("16-mixed", tmp_path, steps=2)
    rows = [json.loads(x) for x in (tmp_path / "16-mixed.jsonl").read_text().splitlines()]
    assert res.status == "ok" and res.skipped_steps == 2
    assert all("fp16 overflow" in r["skipped"] for r in rows)
    assert [r["loss_scale"] for r in rows] == [2.0**59, 2.0**58]  # halved after each overflow
    assert changed(before, after) == 0.0


def test_loss_scaler_rule():
    s = LossScaler(scale=8.0, growth_interval=2)
    g = [torch.tensor([8.0, -16.0])]
    assert s.unscale_(g) and g[0].tolist() == [1.0, -2.0]
    assert not s.unscale_([torch.tensor([float("inf")])])
    s.update(True)
    assert s.scale == 4.0
    s.update(False)
    s.update(False)
    assert s.scale == 8.0  # growth_interval finite steps in a row double it


def test_precision_names_and_launcher_agreement():
    with pytest.raises(ValueError, match="unknown model.precision 'bf16'; valid: 32-true, bf16-mixed, 16-mixed, bf16-true"):
        Precision("bf16")
    assert Precision("bf16-mixed").weight_dtype == torch.float32 and Precision("bf16-mixed").compute_dtype == torch.bfloat16
    assert Precision("bf16-true").weight_dtype == torch.bfloat16
    assert Precision("bf16-mixed").fsdp_policy().reduce_dtype == torch.float32
    assert Precision("32-true").fsdp_policy() is None
    check_launcher_precision(Precision("bf16-mixed"), {"ACCELERATE_MIXED_PRECISION": "bf16"})
    check_launcher_precision(Precision("32-true"), {"ACCELERATE_MIXED_PRECISION": "no"})
    with pytest.raises(ValueError, match="mixed_precision='fp16' but model.precision=32-true: set model.precision=16-mixed"):
        check_launcher_precision(Precision("32-true"), {"ACCELERATE_MIXED_PRECISION": "fp16"})


def test_lora_adapters_train_in_fp32_over_a_bf16_base():
    from unlearn.models import apply_lora

    model = apply_lora(tiny_llama().to(torch.bfloat16),
                       {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    Precision("bf16-mixed").prepare_trainable(model)
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}  # the frozen base stays in storage


def test_a_bf16_run_trains_fp32_masters_and_saves_bf16(debug_cfg, shared_cache, tmp_path, caplog):
    cfg = debug_cfg(f"paths.cache={shared_cache}", "model.dtype=bfloat16", "model.precision=bf16-mixed",
                    "method.max_steps=2")
    rec = run(cfg, run_dir=tmp_path / "mixed")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["unlearn"]["precision"] == "bf16-mixed"
    assert json.loads((tmp_path / "mixed" / "checkpoint" / "config.json").read_text())["dtype"] == "bfloat16"
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "model.precision=bf16-true", "method.max_steps=1"),
              run_dir=tmp_path / "pure")
    assert rec["status"] == "ok" and rec["unlearn"]["precision"] == "bf16-true"
    assert "pure bf16" in (tmp_path / "pure" / "run.log").read_text()
    # stored float32, trained in bf16: saved back in the storage dtype
    assert json.loads((tmp_path / "pure" / "checkpoint" / "config.json").read_text())["dtype"] == "float32"
    bad = run(debug_cfg(f"paths.cache={shared_cache}", "model.precision=fp8"), run_dir=tmp_path / "bad")
    assert bad["status"] == "failed" and "valid: 32-true" in bad["error"]["message"] and "stages" not in bad
