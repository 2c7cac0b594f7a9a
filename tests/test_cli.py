"""The command line as a user types it: a multirun whose jobs land in distinct directories."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a subprocess multirun / two processes: the slow tier (CI runs it)
def test_multirun_jobs_never_collide_and_rerun_skips(tmp_path):
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    # a scheduler preset (gen_calib configures gen) gets a directory of its own
    cmd = [sys.executable, "run.py", "-m", "debug=tiny", "method=ngdiff", "scheduler=gen,gen_calib",
           "method.lr=1e-4,2e-4", "method.max_steps=2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sorted((tmp_path / "out" / "debug" / "runs").rglob("record.json"))
    rel = sorted(str(p.parent.relative_to(tmp_path / "out" / "debug" / "runs")) for p in records)
    assert rel == [
        "tofu_synth/forget10/tiny_llama/ngdiff-gen/method.lr=0.0001,method.max_steps=2/seed0",
        "tofu_synth/forget10/tiny_llama/ngdiff-gen/method.lr=0.0002,method.max_steps=2/seed0",
        "tofu_synth/forget10/tiny_llama/ngdiff-gen_calib/method.lr=0.0001,method.max_steps=2/seed0",
        "tofu_synth/forget10/tiny_llama/ngdiff-gen_calib/method.lr=0.0002,method.max_steps=2/seed0",
    ]
    recs = [json.loads(p.read_text()) for p in records]
    assert all(r["status"] == "ok" for r in recs)
    assert [r["config"]["method"]["lr"] for r in recs] == [1e-4, 2e-4, 1e-4, 2e-4]
    # the world, tokenizer and models were built by the first job and reused by the others
    assert [r["stages"]["target"]["reused"] for r in recs].count(False) == 1
    assert all((p.parent / "run.log").stat().st_size > 0 for p in records)
    mtimes = [p.stat().st_mtime for p in records]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert [p.stat().st_mtime for p in records] == mtimes  # complete records: skipped, not rewritten
    assert "multirun: 4 jobs: 0 ok, 0 diverged, 0 failed, 0 interrupted, 4 skipped" in proc.stdout


def _multirun(tmp_path, *args, timeout=600):
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    proc = subprocess.run([sys.executable, "run.py", "-m", "debug=tiny", "method.max_steps=1", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    records = {str(p.parent.relative_to(tmp_path / "out" / "debug" / "runs")): json.loads(p.read_text())
               for p in (tmp_path / "out" / "debug" / "runs").rglob("record.json")}
    return proc, records


@pytest.mark.slow  # a subprocess multirun / two processes: the slow tier (CI runs it)
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    proc, records = _multirun(tmp_path, "dataset.split=forget42,forget10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {k.split("/")[1]: r["status"] for k, r in records.items()}
    assert status == {"forget42": "failed", "forget10": "ok"}
    failed = next(r for k, r in records.items() if "forget42" in k)
    assert "forget42" in failed["error"]["message"]
    # the multirun ends with one line that counts its jobs and names the failed one's directory
    # (and how many records carry a health warning: the tiny world's unlearned utility is low)
    (summary,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("multirun:")]
    warned = sum(1 for r in records.values() if r.get("warnings"))
    assert summary == (f"multirun: 2 jobs: 1 ok, 0 diverged, 1 failed, 0 interrupted, 0 skipped; "
                       + (f"{warned} with warnings (printed under their tables, in their records); " if warned else "")
                       + f"failed: {failed['run_dir']}")


@pytest.mark.slow
def test_parallel_sweep_with_the_joblib_launcher(tmp_path):
    proc, records = _multirun(tmp_path, "method=ga,ngdiff", "hydra/launcher=local_parallel", "threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["config"]["method"]["name"] for r in records.values()) == ["ga", "ngdiff"]
    assert all(r["status"] == "ok" and r["config"]["threads"] == 1 for r in records.values())


@pytest.mark.slow
def test_submitit_launcher_in_local_executor_mode(tmp_path):
    """The SLURM path's launcher (submitit) with its local executor: each job a separate process."""
    proc, records = _multirun(tmp_path, "seed=0,1", "hydra/launcher=submitit_local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["seed"] for r in records.values()) == [0, 1]
    assert all(r["status"] == "ok" for r in records.values())
    assert list((tmp_path / "out" / "debug" / "runs" / ".submitit").rglob("*_log.out"))


def test_tag_names_are_short_shell_friendly_and_distinct():
    from unlearn.config import TAG_MAX_BYTES, dir_tag

    assert dir_tag("") == "default" and dir_tag("method.lr=0.0003") == "method.lr=0.0003"  # short and plain: as is
    assert dir_tag("eval.retain_logs=/data/x") == "eval.retain_logs=_data_x"
    lora = dir_tag("model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj]}")
    assert lora.startswith("model.lora=r-8,alpha-16,target_modules-q_proj,v_proj_")
    assert re.fullmatch(r"[A-Za-z0-9._,=+%@-]+", lora) and lora == dir_tag("model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj]}")
    assert dir_tag("model.lora={r: 8}") != dir_tag("model.lora=[r: 8]")  # cleaned alike, told apart by the hash
    long = ",".join(f"method.key{i}=value{i}" for i in range(40))
    assert len(dir_tag(long).encode()) <= TAG_MAX_BYTES and dir_tag(long) != dir_tag(long + ",x=1")


@pytest.mark.slow  # a subprocess multirun / two processes: the slow tier (CI runs it)
def test_a_long_override_list_runs_and_is_reported(tmp_path):
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    overrides = ["method.max_steps=1", "'model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}'",
                 "eval.batch_size=16", "eval.generation.batch_size=16", "method.weight_decay=0.02",
                 "method.eps=0.0000001", "eval.generation.max_new_tokens=150", "save_checkpoint=false",
                 "method.task_grad_stats=true", "eval.ds_size=50"]
    cmd = " ".join([sys.executable, "run.py", "debug=tiny", *overrides])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, shell=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "out").rglob("record.json"))
    assert len(records) == 1
    run_dir = records[0].parent
    name = run_dir.parent.name
    assert len(name.encode()) <= 120 and re.fullmatch(r"[A-Za-z0-9._,=+%@-]+", name)
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "ok", rec.get("error")
    assert "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}" in rec["overrides"]["variant"]
    assert (run_dir / "overrides.txt").read_text().splitlines()[0] == "debug=tiny"
    from eval.report.tables import record_rows

    assert record_rows(records[0])[0]["variant"] == rec["overrides"]["variant"]  # not the shortened name


def _task_pids(marker: str) -> list[int]:
    """The processes submitit's local executor started as tasks whose environment names ``marker``."""
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            data = env.read_bytes()
        except OSError:
            continue
        if b"SUBMITIT_LOCAL_GLOBALID=" in data and marker.encode() in data:
            pids.append(int(env.parent.name))
    return pids


@pytest.mark.slow
def test_submitit_preemption_requeues_the_job_and_it_resumes_from_the_saved_step(tmp_path):
    """A SIGUSR2 (submitit's preemption signal) mid-unlearning: the state is saved at the end of that
    step, submitit requeues the job, and the requeued job continues from there to the uninterrupted result."""
    import signal
    import time

    args = ["debug=tiny", "method.epochs=60", "resume_every=1000", "scheduler=constant", "save_checkpoint=false"]
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "full")}
    full = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    proc = subprocess.Popen([sys.executable, "run.py", "-m", *args, "hydra/launcher=submitit_local"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, pids = time.time() + 400, []
    while time.time() < deadline and not pids:
        steps = list((tmp_path / "out").rglob("steps.jsonl"))
        if steps and len(steps[0].read_text().splitlines()) >= 5:
            pids = _task_pids(str(tmp_path / "out"))
        time.sleep(0.2)
    assert pids, "the job never reached step 5"
    os.kill(pids[0], signal.SIGUSR2)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    (rec_path,) = (tmp_path / "out").rglob("record.json")
    rec = json.loads(rec_path.read_text())
    (full_path,) = (tmp_path / "full").rglob("record.json")
    ref = json.loads(full_path.read_text())
    assert rec["status"] == "ok" and 5 <= rec["unlearn"]["resumed_from"] < rec["unlearn"]["steps"] == ref["unlearn"]["steps"]
    assert rec["metrics"]["unlearned"]["summary"] == ref["metrics"]["unlearned"]["summary"]
    logs = "".join(p.read_text() for p in (tmp_path / "out").rglob("*_log.*"))
    assert "preemption signal SIGUSR2" in logs + (rec_path.parent / "run.log").read_text()
