"""The cached target / retain evaluations are keyed on everything that changes their numbers --
the model's dtype, attention, tokenizer, template, Hub revision and the content of a local
checkpoint -- and on nothing else."""
from pathlib import Path

import pytest

from tests.conftest import compose_cfg
from tests.tiny import tiny_llama
from unlearn.benchmarks import get_benchmark
from unlearn.pipeline import run
from unlearn.runner import reference_eval_spec
from unlearn.stages import StageCache, content_hash, fingerprint
from unlearn.tokenizer import train_bpe_tokenizer
from unlearn.worlds import load_tofu

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_real"


@pytest.fixture
def checkpoints(tmp_path):
    texts = [r["question"] + " " + r["answer"] for r in load_tofu("forget01", source="local", path=FIXTURE)]
    tok = train_bpe_tokenizer(texts * 5, 300, tmp_path / "tok")
    for name, seed in (("target", 0), ("retain", 1)):
        tiny_llama(seed).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    return tmp_path


def key(tmp_path, checkpoints, *overrides):
    cfg = compose_cfg([f"paths.root={tmp_path / 'out'}", "dataset=tofu", "dataset.source=local",
                       f"dataset.path={FIXTURE}", "dataset.split=forget01", "model=hf",
                       f"model.target={checkpoints / 'target'}", f"model.retain={checkpoints / 'retain'}", *overrides])
    bench = get_benchmark("tofu")
    prepared = bench.prepare(cfg, StageCache(cfg.paths.cache))
    return {w: content_hash(reference_eval_spec(w, bench, prepared, cfg)) for w in ("target", "retain")}


def test_every_model_setting_that_changes_numbers_is_in_the_key(tmp_path, checkpoints):
    base = key(tmp_path, checkpoints)
    assert key(tmp_path, checkpoints) == base  # deterministic
    for override in ("model.dtype=bfloat16", "model.attn_implementation=eager", "model.revision=v1",
                     "model.template.answer_tag=A:", "model.max_length=100",
                     f"model.tokenizer={checkpoints / 'tok'}", "eval.ds_size=2"):
        changed = key(tmp_path, checkpoints, override)
        assert changed["target"] != base["target"] and changed["retain"] != base["retain"], override
    for override in ("method.lr=1e-3", "method=gdiff", "scheduler=constant", "seed=3", "model.precision=bf16-mixed",
                     "method.batch_size=2", "eval.trajectory_every=5"):
        assert key(tmp_path, checkpoints, override) == base, override


def test_a_checkpoint_overwritten_in_place_is_evaluated_again(tmp_path, checkpoints):
    before = key(tmp_path, checkpoints)
    tiny_llama(seed=7).save_pretrained(checkpoints / "target")  # other weights, same folder
    after = key(tmp_path, checkpoints)
    assert after["target"] != before["target"] and after["retain"] == before["retain"]


def test_fingerprint_reads_content_size_and_time(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 10)
    first = fingerprint(f)
    assert fingerprint(f) == first and fingerprint(tmp_path) is not None
    f.write_bytes(b"b" * 10)
    assert fingerprint(f) != first
    assert fingerprint("meta-llama/Llama-2-7b-hf") is None and fingerprint(None) is None


def test_a_bf16_run_does_not_reuse_the_fp32_evaluations(debug_cfg, tmp_path, warm_cache):
    cache = warm_cache  # the debug models, no reference evaluation yet

    def evaluations():
        return sorted(p.name for p in (cache / "eval_target").iterdir() if not p.name.startswith((".", "_")) and p.is_dir())

    args = (f"paths.cache={cache}", "method.max_steps=1", "save_checkpoint=false")
    assert run(debug_cfg(*args), run_dir=tmp_path / "a")["status"] == "ok"
    first = evaluations()
    assert len(first) == 1
    assert run(debug_cfg(*args, "method.lr=1e-3"), run_dir=tmp_path / "b")["status"] == "ok"
    assert evaluations() == first  # an unlearning setting: the same target evaluation
    rec = run(debug_cfg(*args, "model.dtype=bfloat16"), run_dir=tmp_path / "c")
    assert rec["status"] == "ok" and len(evaluations()) == 2  # the bf16 target is evaluated anew
