"""Resume after a kill: unlearning saves its state every `resume_every` steps (atomically); a re-run
continues from it and ends with the record, step log and checkpoint of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import unlearn.trackers
from tests.conftest import sampled
from unlearn.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["method.epochs=8", "resume_every=2", "eval.trajectory_every=3", "eval.select=min:forget_prob"]


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _same_result(a, b):
    assert _rows(a) == _rows(b)
    ra, rb = (json.loads((d / "record.json").read_text()) for d in (a, b))
    assert ra["metrics"]["unlearned"]["summary"] == rb["metrics"]["unlearned"]["summary"]
    assert ra["trajectory"] == rb["trajectory"] and ra["selection"] == rb["selection"]
    wa, wb = (load_file(str(d / "checkpoint" / "model.safetensors")) for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    return ra, rb


def test_a_failed_run_resumes_bit_for_bit(debug_cfg, shared_cache, tmp_path, monkeypatch):
    cfg = lambda: debug_cfg(f"paths.cache={shared_cache}", *ARGS)  # noqa: E731
    full = run(cfg(), run_dir=tmp_path / "full")
    assert full["status"] == "ok" and full["unlearn"]["steps"] == 8 and not (tmp_path / "full" / "resume").exists()

    real = unlearn.trackers.RunTracker.step

    def dies_at_step_5(self, row):
        if row["step"] == 5:
            raise RuntimeError("killed")
        real(self, row)

    monkeypatch.setattr(unlearn.trackers.RunTracker, "step", dies_at_step_5)
    broken = run(cfg(), run_dir=tmp_path / "b")
    assert broken["status"] == "failed" and (tmp_path / "b" / "resume" / "state.pt").exists()
    assert torch.load(tmp_path / "b" / "resume" / "state.pt", weights_only=False)["step"] == 4
    monkeypatch.setattr(unlearn.trackers.RunTracker, "step", real)
    resumed = run(cfg(), run_dir=tmp_path / "b")
    assert resumed["status"] == "ok" and resumed["unlearn"]["resumed_from"] == 4
    assert not (tmp_path / "b" / "resume").exists()
    _same_result(tmp_path / "full", tmp_path / "b")


def test_a_kill_during_evaluation_redoes_no_step(debug_cfg, shared_cache, tmp_path, monkeypatch):
    import unlearn.pipeline as pipeline

    cfg = lambda: debug_cfg(f"paths.cache={shared_cache}", "method.epochs=3", "resume_every=2")  # noqa: E731
    full = run(cfg(), run_dir=tmp_path / "full")
    real = pipeline.dist_utils.sharded_eval

    def eval_dies(acc):
        raise RuntimeError("killed during evaluation")

    monkeypatch.setattr(pipeline.dist_utils, "sharded_eval", eval_dies)
    assert run(cfg(), run_dir=tmp_path / "e")["status"] == "failed"
    monkeypatch.setattr(pipeline.dist_utils, "sharded_eval", real)
    rec = run(cfg(), run_dir=tmp_path / "e")
    assert rec["unlearn"]["resumed_from"] == 3 == rec["unlearn"]["steps"]
    assert rec["metrics"]["unlearned"]["summary"] == full["metrics"]["unlearned"]["summary"]
    assert _rows(tmp_path / "e") == _rows(tmp_path / "full")


def test_a_state_of_another_config_is_not_resumed(debug_cfg, shared_cache, tmp_path, monkeypatch):
    real = unlearn.trackers.RunTracker.step
    monkeypatch.setattr(unlearn.trackers.RunTracker, "step",
                        lambda self, row: (_ for _ in ()).throw(RuntimeError("killed")) if row["step"] == 3 else real(self, row))
    run(debug_cfg(f"paths.cache={shared_cache}", *ARGS), run_dir=tmp_path / "r")
    monkeypatch.setattr(unlearn.trackers.RunTracker, "step", real)
    rec = run(debug_cfg(f"paths.cache={shared_cache}", *ARGS, "method.lr=2e-4"), run_dir=tmp_path / "r")
    assert rec["status"] == "ok" and "resumed_from" not in rec["unlearn"]


def _killed_at_step_3(cfg, run_dir, monkeypatch):
    """A run whose state was saved at step 2 when it died at step 3."""
    real = unlearn.trackers.RunTracker.step

    def dies_at_step_3(self, row):
        if row["step"] == 3:
            raise RuntimeError("killed")
        real(self, row)

    monkeypatch.setattr(unlearn.trackers.RunTracker, "step", dies_at_step_3)
    assert run(cfg, run_dir=run_dir)["status"] == "failed"
    monkeypatch.setattr(unlearn.trackers.RunTracker, "step", real)
    assert torch.load(run_dir / "resume" / "state.pt", weights_only=False)["step"] == 2


@pytest.mark.parametrize("change", sampled(["code", "launch", "overwrite"], ["code"]))
def test_a_state_of_other_code_or_launch_or_under_overwrite_is_not_resumed(debug_cfg, shared_cache, tmp_path,
                                                                            monkeypatch, change):
    """A state left by the code before a change, by another process count, or when overwrite=true
    asks to start over: the run starts from step 0."""
    import unlearn.reuse
    import unlearn.runner

    args = (f"paths.cache={shared_cache}", *ARGS)
    _killed_at_step_3(debug_cfg(*args), tmp_path / "r", monkeypatch)
    if change == "code":
        monkeypatch.setattr(unlearn.reuse, "CODE", "0" * 16)
    elif change == "launch":
        real = unlearn.runner.launch_info
        monkeypatch.setattr(unlearn.runner, "launch_info", lambda c, acc: {**real(c, acc), "processes": 2})
    rec = run(debug_cfg(*args, *(["overwrite=true"] if change == "overwrite" else [])), run_dir=tmp_path / "r")
    assert rec["status"] == "ok" and "resumed_from" not in rec["unlearn"]
    assert len(_rows(tmp_path / "r")) == rec["unlearn"]["steps"] == 8 and not (tmp_path / "r" / "resume").exists()


def test_a_state_is_fsynced_under_a_temporary_name_of_its_own_and_a_failed_write_leaves_the_last(tmp_path,
                                                                                                   monkeypatch):
    from unlearn.resume import Resume

    resume = Resume(tmp_path / "resume" / "state.pt", every=1, key="k")
    resume.save(lambda: {"step": 1}, main=True)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a).name, Path(b).name)),
                                                     real_replace(a, b))[1])
    resume.save(lambda: {"step": 2}, main=True)
    (replace,) = [e for e in events if e[0] == "replace"]
    assert replace[2] == "state.pt" and replace[1] not in ("state.tmp", "state.pt")
    i = events.index(replace)
    assert ("fsync", False) in events[:i] and ("fsync", True) in events[i:]  # the data, then the folder's entry
    assert resume.load()["step"] == 2

    def dies_mid_write(obj, fh):
        fh.write(b"half a state")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError):
        resume.save(lambda: {"step": 3}, main=True)
    assert resume.load()["step"] == 2 and os.listdir(tmp_path / "resume") == ["state.pt"]


def test_only_the_main_process_builds_the_state(tmp_path, monkeypatch):
    """Every process reaches the save; only the main one copies the weights and optimizer state."""
    from accelerate import Accelerator

    import unlearn.engine
    from tests.tiny import fixed_features, tiny_llama
    from unlearn.distributed import make_accelerator
    from unlearn.methods import build_method
    from unlearn.resume import Resume
    from unlearn.schedulers import build_scheduler

    built = []
    real = unlearn.engine._state
    monkeypatch.setattr(unlearn.engine, "_state", lambda *a: built.append(a[0]) or real(*a))
    cfg = {"name": "gdiff", "lr": 1e-3, "epochs": 3, "batch_size": 4, "optimizer": "adamw", "weight_decay": 0.0,
           "retain_weight": 1.0, "forget_weight": 1.0}
    constant = lambda t, e: build_scheduler({"name": "constant"}, 1e-3, t, e)  # noqa: E731
    for main in (True, False):
        monkeypatch.setattr(Accelerator, "is_main_process", property(lambda self, m=main: m))
        built.clear()
        resume = Resume(tmp_path / str(main) / "state.pt", every=1)
        unlearn.engine.unlearn(tiny_llama(), build_method(cfg), constant, fixed_features(4, 0), fixed_features(8, 1),
                               cfg, pad_id=0, seed=0, resume=resume, log_path=tmp_path / str(main) / "steps.jsonl",
                               accelerator=make_accelerator())
        assert built == ([1, 2, 3] if main else []) and resume.path.exists() == main


@pytest.mark.slow
def test_sigkill_during_unlearning_then_the_same_command_finishes_it(tmp_path):
    """SIGKILL (no handler runs, no record is written) after a state was saved (~1 min: slow tier)."""
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    args = [sys.executable, "run.py", "debug=tiny", "method.epochs=120", "resume_every=10", "scheduler=constant"]
    full = subprocess.run(args + ["hydra.run.dir=" + str(tmp_path / "full")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = tmp_path / "k"
    proc = subprocess.Popen(args + [f"hydra.run.dir={killed}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "resume" / "state.pt").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(killed / "resume" / "state.pt", weights_only=False)
    assert 10 <= state["step"] < 120 and not (killed / "record.json").exists()
    again = subprocess.run(args + [f"hydra.run.dir={killed}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    rec = json.loads((killed / "record.json").read_text())
    assert rec["unlearn"]["resumed_from"] >= state["step"]
    assert _rows(tmp_path / "full") == _rows(killed)
    full_rec = json.loads((tmp_path / "full" / "record.json").read_text())
    assert rec["metrics"]["unlearned"]["summary"] == full_rec["metrics"]["unlearned"]["summary"]


def test_a_preemption_signal_waits_for_the_end_of_the_step_then_requeues_from_its_state(debug_cfg, shared_cache,
                                                                                         tmp_path):
    """submitit's preemption handler (here a stand-in on SIGUSR2) runs only after the step's state is saved."""
    cfg = lambda: debug_cfg(f"paths.cache={shared_cache}", "method.epochs=4", "resume_every=1000")  # noqa: E731
    full = run(cfg(), run_dir=tmp_path / "full")
    seen = []

    class Requeued(BaseException):  # submitit's handler exits the job (SystemExit) after requeueing it
        pass

    def submitit_handler(signum, frame):
        state = torch.load(tmp_path / "p" / "resume" / "state.pt", weights_only=False)
        seen.append(state["step"])
        raise Requeued

    real = unlearn.trackers.RunTracker.step

    def preempted_during_step_2(self, row):
        real(self, row)
        if row["step"] == 2:
            os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        unlearn.trackers.RunTracker.step = preempted_during_step_2
        with pytest.raises(Requeued):
            run(cfg(), run_dir=tmp_path / "p")
    finally:
        unlearn.trackers.RunTracker.step = real
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [3]  # the state after step index 2, i.e. 3 steps done, though resume_every is 1000
    rec = run(cfg(), run_dir=tmp_path / "p")  # the requeued job: the same command, the same directory
    assert rec["status"] == "ok" and rec["unlearn"]["resumed_from"] == 3
    assert rec["metrics"]["unlearned"]["summary"] == full["metrics"]["unlearned"]["summary"]
    assert _rows(tmp_path / "p") == _rows(tmp_path / "full")
