"""The command line as a user types it: a multirun whose jobs land in distinct directories."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_multirun_jobs_never_collide_and_rerun_skips(tmp_path):
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path / "out")}
    cmd = [sys.executable, "run.py", "-m", "debug=tiny", "method=ga,ngdiff", "method.lr=1e-4,2e-4",
           "method.max_steps=2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sorted((tmp_path / "out" / "debug" / "runs").rglob("record.json"))
    rel = sorted(str(p.parent.relative_to(tmp_path / "out" / "debug" / "runs")) for p in records)
    assert rel == [
        "tofu_synth/forget10/tiny_llama/ga-gen/method.lr=0.0001,method.max_steps=2/seed0",
        "tofu_synth/forget10/tiny_llama/ga-gen/method.lr=0.0002,method.max_steps=2/seed0",
        "tofu_synth/forget10/tiny_llama/ngdiff-gen/method.lr=0.0001,method.max_steps=2/seed0",
        "tofu_synth/forget10/tiny_llama/ngdiff-gen/method.lr=0.0002,method.max_steps=2/seed0",
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
