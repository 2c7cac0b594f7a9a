"""A callback defined here, in the test file, sees the whole run without a line of the loop or
the run changed: the hooks in order, every step's row, every trajectory evaluation, the record;
keys it adds to a row are logged; it can stop the loop; it is named on the command line."""
import json

import pytest
import torch

from unlearn.callbacks import Callback, register_callback
from unlearn.pipeline import STEP_LOG, run

ARGS = ("method.epochs=4", "eval.trajectory_every=2", "save_checkpoint=false")


class Recorder(Callback):
    """Writes down every hook call; adds a key of its own to every row."""

    def __init__(self, stop_at=None):
        self.calls, self.rows, self.evaluated, self.stop_at = [], [], [], stop_at

    def on_train_start(self, state):
        self.calls.append(("train_start", state.step, state.total_steps))

    def on_step_end(self, state, row):
        self.calls.append(("step_end", state.step))
        row["recorder/updates"] = state.step
        self.rows.append(dict(row))
        if self.stop_at is not None and state.step == self.stop_at:
            state.stop = f"recorder: {self.stop_at} steps are enough"

    def on_evaluate(self, state, step, summary):
        self.calls.append(("evaluate", step))
        self.evaluated.append({"step": step, **summary})

    def on_train_end(self, state, result):
        self.calls.append(("train_end", result.steps))

    def on_record(self, record):
        self.calls.append(("record", record["status"]))
        record["recorder"] = {"rows": len(self.rows)}


def test_a_callback_from_a_test_file_sees_every_step_evaluation_and_the_record(debug_cfg, shared_cache, tmp_path):
    rec_cb = Recorder()
    rec = run(debug_cfg(f"paths.cache={shared_cache}", *ARGS), run_dir=tmp_path / "r", callbacks=[rec_cb])
    assert rec["status"] == "ok"
    total = rec["unlearn"]["total_steps"]
    assert rec["unlearn"]["steps"] == total == 4
    logged = [json.loads(line) for line in (tmp_path / "r" / STEP_LOG).read_text().splitlines()]
    assert [r["step"] for r in rec_cb.rows] == [r["step"] for r in logged] == list(range(total))
    assert [r["recorder/updates"] for r in logged] == list(range(1, total + 1))  # its key, logged
    assert rec_cb.evaluated == rec["trajectory"] and [t["step"] for t in rec["trajectory"]] == [0, 2, 4]
    assert rec_cb.calls == [("train_start", 0, 4), ("evaluate", 0), ("step_end", 1), ("step_end", 2), ("evaluate", 2),
                            ("step_end", 3), ("step_end", 4), ("evaluate", 4), ("train_end", 4), ("record", "ok")]
    assert rec["recorder"] == {"rows": 4}  # on_record's additions are in the record on disk


def test_a_callback_stops_the_loop_and_the_record_says_why(debug_cfg, shared_cache, tmp_path):
    rec = run(debug_cfg(f"paths.cache={shared_cache}", *ARGS), run_dir=tmp_path / "s", callbacks=[Recorder(stop_at=3)])
    assert rec["status"] == "ok" and rec["unlearn"]["steps"] == 3 and rec["unlearn"]["total_steps"] == 4
    assert rec["unlearn"]["stopped"] == "recorder: 3 steps are enough"
    assert len((tmp_path / "s" / STEP_LOG).read_text().splitlines()) == 3
    assert "unlearned" in rec["metrics"]  # the stopped model is evaluated like a finished one


@register_callback("test_counter")
class Counter(Callback):
    """Registered by name and built from the config (``callbacks=[test_counter]``), or named by its
    import path (``callbacks=[tests.test_callbacks:Counter]``)."""

    def __init__(self, cfg, run_dir):
        self.steps, self.run_dir = 0, run_dir

    def on_step_end(self, state, row):
        self.steps += 1

    def on_record(self, record):
        record.setdefault("counted", []).append({"steps": self.steps, "run_dir": str(self.run_dir)})


def test_callbacks_named_on_the_command_line_are_built_from_the_config(debug_cfg, shared_cache, tmp_path):
    rec = run(debug_cfg(f"paths.cache={shared_cache}", *ARGS, "callbacks=[test_counter,tests.test_callbacks:Counter]"),
              run_dir=tmp_path / "n")
    assert rec["status"] == "ok"
    assert rec["counted"] == [{"steps": 4, "run_dir": str(tmp_path / "n")}] * 2


def test_an_unknown_callback_fails_before_any_work_naming_the_valid_ones(debug_cfg, tmp_path):
    rec = run(debug_cfg(f"paths.cache={tmp_path / 'empty_cache'}", "callbacks=[no_such_callback]"), run_dir=tmp_path / "u")
    assert rec["status"] == "failed" and "unknown callback 'no_such_callback'" in rec["error"]["message"]
    assert "test_counter" in rec["error"]["message"] and "stages" not in rec  # nothing was built
    assert not (tmp_path / "empty_cache").exists()


class Broken(Callback):
    def __init__(self, hook):
        self.hook = hook

    def on_step_end(self, state, row):
        if self.hook == "on_step_end":
            raise RuntimeError("broken on_step_end")

    def on_record(self, record):
        if self.hook == "on_record":
            raise RuntimeError("broken on_record")


@pytest.mark.parametrize("hook", ["on_step_end", "on_record"])
def test_a_failing_callback_fails_the_run_and_the_others_still_see_the_record(debug_cfg, shared_cache, tmp_path, hook):
    seen = Recorder()
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=1", "save_checkpoint=false"),
              run_dir=tmp_path / hook, callbacks=[Broken(hook), seen])
    assert rec["status"] == "failed" and rec["error"]["message"] == f"broken {hook}"
    assert seen.calls[-1] == ("record", "failed")  # the callbacks after the broken one still ran
    assert ("unlearned" in rec.get("metrics", {})) == (hook == "on_record")  # a step failure ends the run there


class _Acc:
    is_main_process = True


def _state(total=5, resumed=None):
    from unlearn.callbacks import Callbacks, LoopState
    from unlearn.engine import EngineResult

    return LoopState(model=torch.nn.Linear(1, 1), optimizer=None, scheduler=None, accelerator=_Acc(), method=None,
                     total_steps=total, result=EngineResult("ok", 0, total), callbacks=Callbacks(), resumed=resumed)


def test_the_step_log_alone_writes_nan_as_text_and_a_resume_truncates_it_to_the_saved_length(tmp_path):
    from unlearn.callbacks import StepLog

    path, state = tmp_path / "steps.jsonl", _state()
    log = StepLog(path)
    with state.stack:
        log.on_train_start(state)
        for step in range(3):
            log.on_step_end(state, {"step": step, "loss/forget": float("nan") if step == 1 else 1.0})
            if step == 0:
                saved = state.log_bytes
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[1]["loss/forget"] == "nan"
    state = _state(resumed={"log_bytes": saved})
    with state.stack:
        StepLog(path).on_train_start(state)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0]


def test_trajectory_evaluation_alone_runs_at_zero_every_k_and_the_last_step_and_tells_the_others(tmp_path):
    from unlearn.callbacks import Callbacks, TrajectoryEvaluation
    import contextlib

    seen = Recorder()
    traj = TrajectoryEvaluation(lambda step, model: {"metric": step * 10}, every=2, autocast=contextlib.nullcontext)
    state = _state(total=5)
    state.callbacks = Callbacks([seen, traj])
    traj.on_train_start(state)
    for step in range(1, 6):
        state.step = step
        traj.on_step_end(state, {"step": step - 1})
    assert [t["step"] for t in state.result.trajectory] == [0, 2, 4, 5]
    assert seen.evaluated == state.result.trajectory and state.result.trajectory[1] == {"step": 2, "metric": 20}
    resumed = _state(total=5, resumed={"log_bytes": 0})
    traj.on_train_start(resumed)  # a resumed run has its step-0 evaluation already
    assert resumed.result.trajectory == []
