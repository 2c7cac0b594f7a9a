"""The real-scale path on small local stand-ins: TOFU's file layout and a saved HF checkpoint."""
import json
from pathlib import Path

import pytest

from tests.conftest import compose_cfg, sampled
from unlearn.models import build_tiny_llama
from unlearn.pipeline import run
from unlearn.tokenizer import train_bpe_tokenizer
from unlearn.worlds import load_tofu

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_real"
ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A target and a retain 'checkpoint' saved by save_pretrained, with their tokenizer."""
    root = tmp_path_factory.mktemp("ckpt")
    texts = [r["question"] + " " + r["answer"] for name in ("forget01", "retain99")
             for r in load_tofu(name, source="local", path=FIXTURE)]
    tok = train_bpe_tokenizer(texts * 5, 300, root / "tok")
    paths = {}
    for i, name in enumerate(("target", "retain")):
        model = build_tiny_llama(ARCH, tok, seed=i)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = root / name
    return paths


def test_pretrained_checkpoints_on_a_local_tofu_folder(checkpoints, tmp_path):
    # no debug=tiny here: it shrinks the *tiny_llama* recipe, and these models come from checkpoints
    cfg = compose_cfg([f"paths.root={tmp_path}", "dataset=tofu", "dataset.source=local", f"dataset.path={FIXTURE}", "dataset.split=forget01",
                    "model=hf", f"model.target={checkpoints['target']}", f"model.retain={checkpoints['retain']}",
                    "model.max_length=64", "method.batch_size=2", "method.max_steps=2"])
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["stages"] == {}  # nothing built: data and models come from config
    n_forget = sum(1 for _ in open(FIXTURE / "forget01_perturbed.json"))
    assert rec["metrics"]["unlearned"]["summary"]["n_items"]["forget"] == n_forget
    assert rec["metrics"]["retain"]["summary"]["forget_quality"] == 1.0
    assert (tmp_path / "r" / "checkpoint" / "config.json").exists()


def test_models_trained_here_on_a_local_tofu_folder(tmp_path, debug_cfg):
    cfg = debug_cfg("dataset=tofu", "dataset.source=local", f"dataset.path={FIXTURE}", "dataset.split=forget01",
                    "model=tiny_llama", "model.tokenizer.vocab_size=300", "model.arch.hidden_size=32",
                    "model.arch.intermediate_size=64", "model.arch.num_hidden_layers=1", "model.pretrain.epochs=1",
                    "model.finetune.epochs=1", "method.batch_size=2", "method.max_steps=1")
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    assert set(rec["stages"]) == {"tokenizer", "base", "target", "retain"}  # no world stage: data is given


def test_missing_checkpoint_is_a_clear_failure(tmp_path):
    cfg = compose_cfg([f"paths.root={tmp_path}", "dataset=tofu", "dataset.source=local", f"dataset.path={FIXTURE}",
                       "dataset.split=forget01", "model=hf", f"model.target={tmp_path / 'nothing_here'}"])
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and "nothing_here" in rec["error"]["message"]


# the fast tier: one model, one split and open-unlearning's recipe; the slow tier every experiment
@pytest.mark.parametrize("experiment, recipe", sampled(
    [(f"tofu_{m}_forget{s}", "tofu") for m in ("phi", "llama2") for s in ("01", "05", "10")]
    + [("tofu_llama2_forget01", "tofu_open_unlearning")],
    [("tofu_phi_forget10", "tofu"), ("tofu_llama2_forget01", "tofu_open_unlearning")]))
def test_real_setting_experiments_run_on_local_mimics(experiment, recipe, checkpoints, tmp_path):
    """The paper-setting experiment files, with the Hub ids swapped for local save_pretrained folders,
    in their recipe's precision (bf16 storage, bf16-mixed training); the split is the fixture's."""
    from tests.test_recipes import assert_recipe

    composed = compose_cfg([f"experiment={experiment}", f"recipe={recipe}"])
    assert_recipe(composed, recipe)  # the recipe as the experiment composes it, before the local swaps
    cfg = compose_cfg([f"paths.root={tmp_path}", f"experiment={experiment}", f"recipe={recipe}",
                       "dataset.source=local", f"dataset.path={FIXTURE}", "dataset.split=forget01",
                       f"model.target={checkpoints['target']}", f"model.retain={checkpoints['retain']}",
                       "model.max_length=64", "method.batch_size=2", "method.effective_batch=4", "method.max_steps=2",
                       "eval.generation.max_length=64"])
    assert cfg.model.dtype == "bfloat16" and cfg.model.precision == "bf16-mixed"
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["unlearn"]["precision"] == "bf16-mixed" and rec["unlearn"]["grad_accum_steps"] == 2
    assert rec["unlearn"]["effective_batch"] == 4 and rec["unlearn"]["steps"] == 2
    assert rec["metrics"]["retain"]["summary"]["forget_quality"] == 1.0
    rows = [json.loads(x) for x in (tmp_path / "r" / "steps.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] == pytest.approx(1e-5)  # transformers' warmup from 0
