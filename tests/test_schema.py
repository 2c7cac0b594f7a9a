"""Bad input is rejected before any work, with one line that names the key, what it got and what
is valid; the traceback goes to run.log, not the terminal; Ctrl-C leaves an `interrupted` record."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import compose_cfg
from unlearn.pipeline import run
from unlearn.validation import validate
from unlearn.schema import ConfigError, base_config, check_overrides, check_ranges, nearest

ROOT = Path(__file__).resolve().parents[1]
CHOICES = {"method": "ngdiff", "model": "tiny_llama", "eval": "tofu", "dataset": "tofu_synth", "scheduler": "gen",
           "paths": "default", "debug": "tiny"}


def check(*overrides: str) -> None:
    cfg = compose_cfg(["debug=tiny", *overrides])
    validate(cfg, 1, {"task": ["debug=tiny", *overrides], "choices": CHOICES})


@pytest.mark.parametrize("override,message", [
    ("+method.lrr=1e-3", "unknown config key method.lrr (from +method.lrr=1e-3); did you mean method.lr?"),
    ("++method.lrr=1e-3", "unknown config key method.lrr (from ++method.lrr=1e-3); did you mean method.lr?"),
    ("+scheduler.lazzy=2", "unknown config key scheduler.lazzy (from +scheduler.lazzy=2); did you mean scheduler.lazy?"),
    ("+eval.generation.zzz=1", "unknown config key eval.generation.zzz (from +eval.generation.zzz=1); valid keys under "
                               "eval.generation: batch_size,"),
    ("+methd.lr=1e-3", "unknown config key methd.lr (from +methd.lr=1e-3); did you mean method.lr?"),
    ("seed=1.5", "seed must be an integer (as in its config file: seed: 0), got 1.5 (from seed=1.5)"),
    ("seed=abc", "seed must be an integer (as in its config file: seed: 0), got 'abc' (from seed=abc)"),
    ("method.epochs=2.5", "method.epochs must be an integer (as in its config file: method.epochs: 2), got 2.5"),
    ("save_checkpoint=1", "save_checkpoint must be true or false (as in its config file: save_checkpoint: true), got 1"),
    ("scheduler.clip=2", "scheduler.clip must be a list (as in its config file: scheduler.clip: [0.5, 2.0]), got 2"),
    ("method.lr=abc", "method.lr must be a number (as in its config file: method.lr: 0.0001), got 'abc'"),
])
def test_keys_and_types_against_the_config_files(override, message):
    with pytest.raises(ConfigError) as e:
        check(override)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides", [
    ["method.lr=1"], ["++method.lr=2e-4"], ["dataset.split=forget05"], ["model.lora={r: 8}", "+model.lora.dropout=0.1"],
    ["scheduler.warmup_epochs=0.5"], ["dataset.hub_id=1234"], ["eval.ds_size=null"], ["~eval.ds_size"],
    ["experiment=ngdiff_fixed_lr"],
])
def test_valid_overrides_pass(overrides):
    cfg = compose_cfg(["debug=tiny", *overrides])
    check_overrides(cfg, overrides, compose_cfg(["debug=tiny"]))


@pytest.mark.parametrize("key,value,valid", [
    ("eval.ds_size", -5, "null (every item) or an integer >= 1"), ("scheduler.lazy", 0, "an integer >= 1"),
    ("method.lr", 0.0, "a positive number"), ("method.max_steps", 0, "null or an integer >= 1"),
    ("threads", 0, "null or an integer >= 1"), ("eval.trajectory_every", -1, "an integer >= 0 (0: off)"),
])
def test_ranges(key, value, valid):
    cfg = compose_cfg(["debug=tiny", f"{key}={value}"])
    with pytest.raises(ConfigError, match=f"^{key} must be {valid.replace('(', '[(]').replace(')', '[)]')}, got {value}$"):
        check_ranges(cfg)


def test_nearest_key():
    keys = ["method.lr", "method.epochs", "scheduler.lazy", "seed"]
    assert nearest("method.lrr", keys) == "; did you mean method.lr?"
    assert nearest("sede", keys) == "; did you mean seed?"
    assert nearest("method.qqq", keys) == "; valid keys under method: epochs, lr"


def test_base_config_composes_the_choices_only():
    base = base_config({**CHOICES, "hydra/launcher": "basic", "sweeps": None}, compose_cfg)
    assert base.method.name == "ngdiff" and base.method.lr == 1e-4 and base.scheduler.calibrate == 5


@pytest.mark.parametrize("override", ["eval.ds_size=-5", "scheduler.lazy=0", "method.batch_size=0"])
def test_a_bad_range_fails_the_run_before_anything_is_built(tmp_path, override):
    cfg = compose_cfg(["debug=tiny", f"paths.root={tmp_path / 'out'}", override])
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and override.split("=")[0] in rec["error"]["message"]
    assert not (tmp_path / "out" / "cache").exists()  # no stage was built
    assert "steps" not in rec["logs"] and not (tmp_path / "r" / "steps.jsonl").exists()
    assert "Traceback" in (tmp_path / "r" / "run.log").read_text()  # the traceback: in the run log


def _run_py(tmp_path, *args, **kw):
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, **kw)


def test_the_terminal_gets_one_line_and_the_record_says_failed(tmp_path):
    proc = _run_py(tmp_path, "debug=tiny", "+method.lrr=1e-3")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines[0] == ("status: FAILED: ConfigError: unknown config key method.lrr (from +method.lrr=1e-3); "
                        "did you mean method.lr?")
    assert [ln.split(":")[0] for ln in lines[1:]] == ["record", "run log"]  # and nothing else
    (record,) = (tmp_path / "out" / "debug" / "runs").rglob("record.json")
    rec = json.loads(record.read_text())
    assert rec["status"] == "failed" and rec["error"]["type"] == "ConfigError"
    assert "Traceback" in (record.parent / "run.log").read_text()
    assert not (tmp_path / "out" / "debug" / "cache").exists()
    assert "step log" not in out


HEAVY = ("transformers", "datasets", "scipy", "peft", "pandas", "matplotlib")


def test_a_config_error_imports_no_heavy_library(tmp_path):
    """A config error is rejected before the libraries the work needs are imported (seconds each)."""
    code = ("import runpy, sys\n"
            "sys.argv = ['run.py', 'debug=tiny', '+method.lrr=1e-3']\n"
            "try:\n    runpy.run_path('run.py', run_name='__main__')\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            f"print('heavy', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "exit 1" in proc.stdout and "heavy []" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_ctrl_c_ends_with_one_line_and_an_interrupted_record(tmp_path):
    proc = subprocess.Popen([sys.executable, "run.py", "debug=tiny", "method.epochs=3000", "scheduler=constant"],
                            cwd=ROOT, env={**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a child of a background job inherits SIGINT ignored; a terminal's Ctrl-C is not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "out" / "debug" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until unlearning has taken a few steps
        logs = list(runs.rglob("steps.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    after = err[err.rfind("unlearn[ngdiff]"):].splitlines()[1:]  # what the terminal shows after the bar
    assert len([ln for ln in after if ln.strip()]) <= 2, after
    assert "status: interrupted" in out
    (record,) = runs.rglob("record.json")
    rec = json.loads(record.read_text())
    assert rec["status"] == "interrupted" and rec["error"]["type"] == "KeyboardInterrupt"
    assert "KeyboardInterrupt" in (record.parent / "run.log").read_text()


def test_a_failed_worker_hands_its_line_to_the_launcher(tmp_path, monkeypatch, capsys):
    """torchrun / accelerate launch print their failure report from each worker's error file: the
    root cause is then the run's one line (not a pointer to torch's docs, nor a traceback)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from unlearn.distributed import FailedAlone
    from unlearn.run_report import end_alone

    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    with pytest.raises(SystemExit) as e:
        end_alone(FailedAlone("process 1 failed alone: OutOfMemoryError: CUDA out of memory"))
    assert e.value.code == 1
    line = "status: FAILED: process 1 failed alone: OutOfMemoryError: CUDA out of memory"
    assert capsys.readouterr().err == line + "\n"
    report = ChildFailedError("run.py", {1: ProcessFailure(1, 123, 1, str(tmp_path / "error.json"))}).format_msg()
    assert f"traceback : {line}" in report and "To enable traceback" not in report
