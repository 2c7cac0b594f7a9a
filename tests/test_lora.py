"""LoRA: only adapter parameters change, NGDiff's geometry holds over them, the artifact is the
adapter and it loads for evaluation; gradient checkpointing works with it."""
import json

import torch

from tests.tiny import fixed_features, tiny_llama
from unlearn.engine import unlearn
from unlearn.methods import build_method
from unlearn.models import apply_lora, configure_training, load_lora
from unlearn.pipeline import STEP_LOG, run
from unlearn.schedulers import build_scheduler

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def test_only_adapters_change_and_ngdiff_geometry_holds(tmp_path):
    model = apply_lora(tiny_llama(), LORA)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = {"name": "ngdiff", "eps": 1e-8, "lr": 1e-2, "epochs": 2, "batch_size": 4, "optimizer": "adamw",
           "weight_decay": 0.0}
    res = unlearn(model, build_method(cfg), lambda t, e: build_scheduler({"name": "constant"}, 1e-2, t, e),
                  fixed_features(8, 1), fixed_features(16, 2), cfg, pad_id=0, seed=0, log_path=tmp_path / "s.jsonl")
    assert res.status == "ok" and res.steps == 4
    for n, p in model.named_parameters():
        if n not in trainable:
            assert torch.equal(p.detach(), before[n]), f"frozen base weight {n} changed"
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if n in trainable)
    for row in map(json.loads, (tmp_path / "s.jsonl").read_text().splitlines()):
        assert row["dot/dir_retain"] >= -1e-9 and row["dot/dir_forget"] <= 1e-9  # the green area
        assert row["dir_norm"] <= 2.0 + 1e-6


def test_lora_with_gradient_checkpointing_runs():
    model = configure_training(tiny_llama(), {"lora": LORA, "gradient_checkpointing": True})
    model.train()
    b = fixed_features(2, 3)
    ids = torch.tensor([f["input_ids"] for f in b])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_pipeline_saves_and_reloads_the_adapter(debug_cfg, shared_cache, tmp_path):
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=2",
                        "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}"), run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    ckpt = tmp_path / "r" / "checkpoint"
    assert (ckpt / "adapter_config.json").exists() and not (ckpt / "model.safetensors").exists()
    model = load_lora(rec["stages"]["target"]["path"], ckpt)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
