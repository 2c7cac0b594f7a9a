"""Resume after a real SIGKILL of a stage build, of the final evaluation and of the record write: a
training stage keeps its last epoch's state in the cache's ``.partial-<key>/`` folder and the next
build continues from it; a kill during the evaluation or while the record is written keeps
unlearning's final state, so the re-run redoes no step. (SIGKILL during unlearning: test_resume.py.)"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.tiny import tiny_llama, varied_features
from unlearn.stages import StageCache
from unlearn.train import STATE, finetune

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"batch_size": 4, "epochs": 5, "lr": 1e-2, "weight_decay": 0.01, "warmup_ratio": 0.1}


def _weights_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_finetune_resumes_after_its_last_saved_epoch_bit_for_bit(tmp_path, monkeypatch):
    feats = varied_features(10, seed=3)
    full = tiny_llama(seed=1)
    full_losses = finetune(full, feats, RECIPE, 0, seed=7)

    import unlearn.train as train

    real = train._save_state
    saves = []

    def dies_after_epoch_3(folder, state):
        real(folder, state)
        saves.append(len(state["epoch_losses"]))
        if len(state["epoch_losses"]) == 3:
            raise RuntimeError("killed after epoch 3")

    monkeypatch.setattr(train, "_save_state", dies_after_epoch_3)
    with pytest.raises(RuntimeError, match="killed"):
        finetune(tiny_llama(seed=1), feats, RECIPE, 0, seed=7, resume_dir=tmp_path / "partial")
    assert saves == [1, 2, 3]
    monkeypatch.setattr(train, "_save_state", real)
    resumed = tiny_llama(seed=1)  # a fresh init, as a re-run builds: the saved state replaces it
    losses = finetune(resumed, feats, RECIPE, 0, seed=7, resume_dir=tmp_path / "partial")
    assert losses == full_losses and _weights_equal(resumed, full)


def test_a_state_of_another_recipe_is_not_resumed(tmp_path):
    feats = varied_features(8, seed=0)
    finetune(tiny_llama(), feats, {**RECIPE, "epochs": 9}, 0, seed=0, resume_dir=tmp_path)  # saves epochs 1..8
    assert (tmp_path / STATE).exists()
    fresh, reference = tiny_llama(), tiny_llama()
    assert finetune(fresh, feats, RECIPE, 0, seed=0, resume_dir=tmp_path) == finetune(reference, feats, RECIPE, 0, seed=0)
    assert _weights_equal(fresh, reference)


def test_the_partial_folder_outlives_a_failed_build_and_goes_with_success(tmp_path):
    cache, seen = StageCache(tmp_path), []

    def fails(out, partial):
        partial.mkdir(parents=True)
        (partial / "epoch").write_text("2")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("target", {"a": 1}, fails, resumable=True)

    def builds(out, partial):
        seen.append((partial / "epoch").read_text())
        (out / "model").write_text("w")

    art = cache.get_or_build("target", {"a": 1}, builds, resumable=True)
    assert seen == ["2"] and (art.path / "model").exists() and not (tmp_path / "target" / f".partial-{art.key}").exists()


# a real SIGKILL (no handler, no finally) at a chosen point of a real run, in a child process
_KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import {module} as target
    real = target.{name}
    def dies(*args, **kwargs):
        {when}
        return real(*args, **kwargs)
    target.{name} = dies
    sys.argv = ["run.py", *{args!r}]
    import runpy
    runpy.run_path({root!r} + "/run.py", run_name="__main__")
""")


def _run_killed(tmp_path, args, module, name, when):
    script = tmp_path / "killer.py"
    script.write_text(_KILLER.format(root=str(ROOT), module=module, name=name, when=when, args=list(args)))
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def _run(args):
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _rows(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run_dir / "steps.jsonl").read_text().splitlines()]


# where a kill after the last step lands: (module, function, what the patched function does first)
LATE_KILLS = {
    # the record is written by os.replace of a finished temporary file: die just before it
    "record_write": ("eval.records", "write_json_atomic",
                     "os.kill(os.getpid(), signal.SIGKILL) if str(args[0]).endswith('record.json') else None"),
    "final_evaluation": ("unlearn.distributed", "sharded_eval", "os.kill(os.getpid(), signal.SIGKILL)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("point, resume_every", [("record_write", 2), ("final_evaluation", 3)])
def test_sigkill_after_the_last_step_then_the_rerun_redoes_no_step(tmp_path, shared_cache, point, resume_every):
    args = ["debug=tiny", f"paths.cache={shared_cache}", f"resume_every={resume_every}", "save_checkpoint=false"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run([*args, f"hydra.run.dir={full}"])
    _run_killed(tmp_path, [*args, f"hydra.run.dir={killed}"], *LATE_KILLS[point])
    assert not (killed / "record.json").exists() and (killed / "resume" / "state.pt").exists()
    _run([*args, f"hydra.run.dir={killed}"])
    a, b = (json.loads((d / "record.json").read_text()) for d in (full, killed))
    assert b["status"] == "ok" and b["unlearn"]["resumed_from"] == b["unlearn"]["steps"] == a["unlearn"]["steps"]
    assert a["metrics"]["unlearned"]["summary"] == b["metrics"]["unlearned"]["summary"]
    assert _rows(full) == _rows(killed) and not (killed / "resume").exists()


@pytest.mark.slow
def test_sigkill_during_a_stage_build_then_the_rerun_continues_it(tmp_path):
    """The target stage is killed after its 3rd of 6 epochs; the re-run trains epochs 4-6 only and the
    stage's weights, and the run's record, equal an uninterrupted build's (~1 min: slow tier)."""
    base = ["debug=tiny", "model.finetune.epochs=6", "save_checkpoint=false", "method.max_steps=2"]
    _run([*base, f"paths.cache={tmp_path / 'cache_full'}", f"hydra.run.dir={tmp_path / 'full'}"])
    args = [*base, f"paths.cache={tmp_path / 'cache_k'}", f"hydra.run.dir={tmp_path / 'killed'}"]
    _run_killed(tmp_path, args, "unlearn.train", "_save_state",
                "real(*args, **kwargs); os.kill(os.getpid(), signal.SIGKILL) "
                "if 'target' in str(args[0]) and len(args[1]['epoch_losses']) == 3 else None")
    partial = list((tmp_path / "cache_k" / "target").glob(".partial-*"))
    assert len(partial) == 1 and len(torch.load(partial[0] / STATE, weights_only=False)["epoch_losses"]) == 3
    proc = _run(args)
    assert "resuming after epoch 3 of 6" in (tmp_path / "killed" / "run.log").read_text() + proc.stderr
    from safetensors.torch import load_file

    for stage in ("base", "target", "retain"):
        (a,), (b,) = ((tmp_path / c / stage).glob("*/model.safetensors") for c in ("cache_full", "cache_k"))
        wa, wb = load_file(str(a)), load_file(str(b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), stage
    ra, rb = (json.loads((tmp_path / d / "record.json").read_text()) for d in ("full", "killed"))
    assert ra["metrics"]["unlearned"]["summary"] == rb["metrics"]["unlearned"]["summary"]
    assert not list((tmp_path / "cache_k" / "target").glob(".partial-*"))
