"""A finished run is reused only for its own config, code and launch (unlearn/reuse.py), and a
config that fails validation never skips, resumes or replaces a result."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import unlearn.runner
import unlearn.reuse
from eval.records import load_record
from unlearn.pipeline import run
from unlearn.reuse import launch_info
from unlearn.stages import code_fingerprint, content_hash

ROOT = Path(__file__).resolve().parents[1]
ARGS = ("method=ga", "method.max_steps=1", "save_checkpoint=false")


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", *ARGS, *overrides)
    return make


def _on_disk(path):
    return json.loads(Path(path).read_text())


def test_the_record_states_its_code_and_launch(cfg, tmp_path):
    rec = run(cfg(), run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    c = cfg()
    batch = c.method.batch_size * (c.method.get("grad_accum_steps") or 1)  # one process, no effective_batch
    assert rec["result_key"]["code"] == unlearn.reuse.CODE
    assert rec["result_key"]["launch"] == {"processes": 1, "distributed_type": "DistributedType.NO", "effective_batch": batch}
    assert rec["unlearn"]["effective_batch"] == batch
    assert rec["result_hash"] == content_hash(rec["result_key"])


def test_a_record_of_other_code_is_kept_aside_and_the_job_runs_again(cfg, tmp_path, monkeypatch):
    first = run(cfg(), run_dir=tmp_path / "r")
    monkeypatch.setattr(unlearn.reuse, "CODE", "0" * 16)  # e.g. a method's loss changed since
    again = run(cfg(), run_dir=tmp_path / "r")
    assert again["status"] == "ok" and "skipped" not in again and again["started"] != first["started"]
    assert again["result_key"]["code"] == "0" * 16 and again["result_hash"] != first["result_hash"]
    kept = load_record(tmp_path / "r" / f"record.{first['result_hash']}.json")
    assert kept["started"] == first["started"] and kept["result_key"]["code"] == first["result_key"]["code"]


def test_a_record_of_another_launch_is_kept_aside_and_the_job_runs_again(cfg, tmp_path, monkeypatch):
    first = run(cfg(), run_dir=tmp_path / "r")
    real = unlearn.runner.launch_info
    monkeypatch.setattr(unlearn.runner, "launch_info", lambda c, acc: {**real(c, acc), "processes": 2})
    again = run(cfg(), run_dir=tmp_path / "r")
    # (not told apart by their start times, which are to the second: two fast runs can share one)
    assert "skipped" not in again and again["result_hash"] != first["result_hash"]
    assert again["result_key"]["launch"]["processes"] == 2
    kept = load_record(tmp_path / "r" / f"record.{first['result_hash']}.json")
    assert kept["result_key"] == first["result_key"] and kept["result_key"]["launch"]["processes"] == 1


def test_the_launch_holds_the_process_count_and_the_batch_it_makes(cfg):
    one, two = (SimpleNamespace(num_processes=n, distributed_type="MULTI_CPU") for n in (1, 2))
    c = cfg()  # effective_batch null: every process takes method.batch_size
    assert launch_info(c, two)["effective_batch"] == 2 * launch_info(c, one)["effective_batch"]
    fixed = cfg("method.batch_size=2", "method.effective_batch=8")  # the recipes: accumulation makes up the rest
    assert launch_info(fixed, one)["effective_batch"] == launch_info(fixed, two)["effective_batch"] == 8
    assert launch_info(fixed, one) != launch_info(fixed, two)  # still another launch: another summing order


def test_the_run_code_is_every_module_but_those_that_present_or_check(tmp_path):
    for name in ("unlearn/methods/ga.py", "eval/report/build.py", "eval/tofu/evaluate.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    fp = lambda: code_fingerprint(unlearn.reuse.RUN_CODE, tmp_path, unlearn.reuse.NOT_RESULT_CODE)  # noqa: E731
    before = fp()
    (tmp_path / "eval" / "report" / "build.py").write_text("x = 2\n")  # reads records: the same results
    assert fp() == before
    (tmp_path / "unlearn" / "methods" / "ga.py").write_text("x = 2\n")  # a loss: other results
    assert fp() != before
    (tmp_path / "eval" / "new_metric.py").write_text("y = 1\n")  # a module nobody classified: re-run
    assert fp() != before


def test_an_invalid_config_never_replaces_a_result(cfg, tmp_path):
    first = run(cfg(), run_dir=tmp_path / "r")
    result = _on_disk(tmp_path / "r" / "record.json")
    for bad, message in (("overwrite=yes", "overwrite must be true or false, got 'yes'"),
                         ("threads=two", "threads must be null or an integer >= 1, got 'two'")):
        rec = run(cfg(bad), run_dir=tmp_path / "r")
        assert rec["status"] == "failed" and "skipped" not in rec and rec["error"]["message"] == message
        assert _on_disk(tmp_path / "r" / "record.json") == result  # untouched: the metrics are still there
        assert _on_disk(tmp_path / "r" / "record.failed.json")["error"]["message"] == message
        assert sorted(p.name for p in (tmp_path / "r").glob("record*.json")) == ["record.failed.json", "record.json"]
    again = run(cfg(), run_dir=tmp_path / "r")  # a valid config again: the result answers it
    assert again["skipped"] and again["started"] == first["started"]
    assert not (tmp_path / "r" / "record.failed.json").exists()


def test_an_invalid_config_without_a_result_is_the_run_record(cfg, tmp_path):
    rec = run(cfg("overwrite=yes"), run_dir=tmp_path / "f")
    assert rec["status"] == "failed" and _on_disk(tmp_path / "f" / "record.json")["status"] == "failed"
    assert not (tmp_path / "f" / "record.failed.json").exists()


@pytest.mark.slow  # a subprocess (~15 s)
def test_the_command_line_prints_the_error_and_leaves_the_result(cfg, tmp_path):
    run(cfg(), run_dir=tmp_path / "r")
    result = (tmp_path / "r" / "record.json").read_text()
    proc = subprocess.run([sys.executable, "run.py", "debug=tiny", *ARGS, "overwrite=yes", f"hydra.run.dir={tmp_path / 'r'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")})
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("status:")]
    assert line.startswith("status: FAILED: ConfigError:") and "overwrite" in line
    assert f"record: {tmp_path / 'r' / 'record.failed.json'}" in proc.stdout
    assert (tmp_path / "r" / "record.json").read_text() == result


@pytest.mark.slow  # two subprocess runs (~30 s)
def test_a_changed_method_source_reruns_the_job(tmp_path, shared_cache):
    """The real thing: a copy of the code base, a method's source edited between two runs."""
    repo = tmp_path / "repo"
    for part in ("unlearn", "eval", "conf", "sweeps", "run.py"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, repo / part)
    cmd = [sys.executable, "run.py", "debug=tiny", *ARGS, f"paths.cache={shared_cache}", f"hydra.run.dir={tmp_path / 'r'}"]
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out"), "UNLEARN_ROOT": str(repo), "PYTHONPATH": str(repo)}
    first = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    ga = repo / "unlearn" / "methods" / "ga.py"
    ga.write_text(ga.read_text() + "\n# a changed loss\n")
    again = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipped" not in again.stdout + again.stderr
    kept = list((tmp_path / "r").glob("record.*.json"))
    assert len(kept) == 1 and _on_disk(kept[0])["result_key"]["code"] != _on_disk(tmp_path / "r" / "record.json")["result_key"]["code"]
