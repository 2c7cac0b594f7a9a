"""Tiny end-to-end runs (debug=tiny) through the same function run.py calls."""
import json

import pytest

from eval.health import record_warnings
from eval.records import load_record
from eval.tofu.evaluate import summarize
from unlearn.pipeline import STEP_LOG, run

STEP_KEYS = {"step", "epoch", "lr", "time", "loss/forget", "loss/retain", "grad_norm/forget",
             "grad_norm/retain", "cos/forget_retain", "dot/dir_forget", "dot/dir_retain", "dir_norm"}
SUMMARY_KEYS = {"forget_quality", "ks_statistic", "model_utility", "forget_rouge", "forget_truth_ratio", "forget_prob",
                "forget_exact_memorization", "forget_extraction_strength", "retain_prob", "retain_rouge",
                "retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio", "wf_prob", "wf_rouge", "wf_truth_ratio"}
LOG_KEYS = {"avg_gt_loss", "gt_loss", "num_token_gt", "avg_paraphrased_loss", "average_perturb_loss", "truth_ratio",
            "generated_text", "rougeL_recall", "exact_memorization", "extraction_strength"}
RECORD_KEYS = {"record_version", "status", "reference", "run_dir", "seed", "config", "config_hash", "result_hash", "git", "environment",
               "stages", "unlearn", "metrics", "timings", "started", "finished", "logs"}


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", *overrides)
    return make


def test_debug_run_writes_record_and_step_log(cfg, tmp_path):
    rec = run(cfg(), run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    assert RECORD_KEYS <= set(rec)
    on_disk = load_record(tmp_path / "run")
    assert on_disk["status"] == "ok" and on_disk["record_version"] == 2
    assert set(on_disk["metrics"]) == {"target", "retain", "unlearned"}
    summary, logs = on_disk["metrics"]["unlearned"]["summary"], on_disk["metrics"]["unlearned"]["logs"]
    assert set(logs) == {"forget", "retain", "ra", "wf"}
    assert SUMMARY_KEYS <= set(summary)
    assert summary["n_items"] == {"forget": 4, "retain": 8, "ra": 4, "wf": 8}  # the debug world's sizes
    assert LOG_KEYS <= set(logs["forget"]) and len(logs["forget"]["avg_gt_loss"]) == 4
    assert len(logs["forget"]["average_perturb_loss"]["0"]) == 5 and len(logs["ra"]["average_perturb_loss"]["0"]) == 3
    # every aggregate can be recomputed from the record's per-example values alone
    assert summarize(logs, on_disk["metrics"]["retain"]["logs"]["forget"]) == summary
    assert on_disk["metrics"]["retain"]["summary"]["forget_quality"] == 1.0  # the retain model vs itself
    rows = [json.loads(line) for line in (tmp_path / "run" / STEP_LOG).read_text().splitlines()]
    assert len(rows) == rec["unlearn"]["steps"] == rec["unlearn"]["total_steps"] > 0
    assert STEP_KEYS <= set(rows[0])
    assert "gen/a" in rows[0] and "gen_eta" in rows[0]  # step 0 is a GeN probe step (lazy 4)
    assert on_disk["git"].keys() == {"commit", "dirty"}
    assert on_disk["environment"]["packages"]["torch"]
    assert (tmp_path / "run" / "run.log").read_text()
    assert (tmp_path / "run" / "checkpoint" / "config.json").exists()
    # the run's warnings (eval/health.py) as recomputed from the record and its step log, also in run.log
    assert on_disk["warnings"] == record_warnings(on_disk, rows)
    # the debug world at GeN's default: the rate goes from 1e-4 to ~3e-3 and world-fact ROUGE to 0
    assert [w["kind"] for w in on_disk["warnings"]] == ["lr_moved", "utility_collapse"]
    for w in on_disk["warnings"]:
        assert f"[WARNING] - {w['message']}" in (tmp_path / "run" / "run.log").read_text()


def test_complete_record_is_skipped_unless_overwrite(cfg, tmp_path):
    first = run(cfg("method=ga", "method.max_steps=1"), run_dir=tmp_path / "r")
    again = run(cfg("method=ga", "method.max_steps=1"), run_dir=tmp_path / "r")
    assert again["started"] == first["started"] and again["finished"] == first["finished"]
    forced = run(cfg("method=ga", "method.max_steps=1", "overwrite=true"), run_dir=tmp_path / "r")
    assert forced["status"] == "ok" and forced["timings"] != first["timings"]


def test_record_of_another_config_is_kept_aside_and_the_job_runs_again(cfg, tmp_path):
    first = run(cfg("method=ga", "method.max_steps=1"), run_dir=tmp_path / "r")
    # threads and paths do not change a result: the record is reused
    same = run(cfg("method=ga", "method.max_steps=1", "threads=1"), run_dir=tmp_path / "r")
    assert same["started"] == first["started"]
    # a changed default (here the unlearning rate, as a new default of a config group would) re-runs
    changed = run(cfg("method=ga", "method.max_steps=1", "method.lr=2e-4"), run_dir=tmp_path / "r")
    assert changed["status"] == "ok" and changed["result_hash"] != first["result_hash"]
    kept = load_record(tmp_path / "r" / f"record.{first['result_hash']}.json")
    assert kept["started"] == first["started"] and kept["config"]["method"]["lr"] != 2e-4


def test_stages_are_reused_and_rebuilt_when_their_config_changes(debug_cfg, tmp_path, warm_cache):
    # warm_cache: a copy of the session's debug stages in a folder of their own; keys are content, not paths
    a = run(debug_cfg(f"paths.cache={warm_cache}", "method.max_steps=1"), run_dir=tmp_path / "a")
    assert all(s["reused"] for s in a["stages"].values())
    b = run(debug_cfg(f"paths.cache={warm_cache}", "method.max_steps=1", "method=gdiff"), run_dir=tmp_path / "b")
    assert all(s["reused"] for s in b["stages"].values())
    assert {k: s["key"] for k, s in b["stages"].items()} == {k: s["key"] for k, s in a["stages"].items()}
    c = run(debug_cfg(f"paths.cache={warm_cache}", "method.max_steps=1", "model.finetune.epochs=1"), run_dir=tmp_path / "c")
    assert c["stages"]["world"]["reused"] and c["stages"]["base"]["reused"]
    assert not c["stages"]["target"]["reused"] and not c["stages"]["retain"]["reused"]
    assert c["stages"]["target"]["key"] != a["stages"]["target"]["key"]


def test_nan_loss_stops_cleanly_and_is_recorded_as_diverged(cfg, tmp_path):
    rec = run(cfg("method=gdiff", "scheduler=constant", "method.lr=1e30", "method.epochs=3"), run_dir=tmp_path / "d")
    assert rec["status"] == "diverged"
    assert rec["unlearn"]["diverged_at"] is not None and rec["unlearn"]["steps"] == rec["unlearn"]["diverged_at"]
    rows = [json.loads(x) for x in (tmp_path / "d" / STEP_LOG).read_text().splitlines()]
    assert rows[-1]["diverged"] is True
    assert load_record(tmp_path / "d")["status"] == "diverged"


def test_bad_input_is_a_failed_record_with_a_clear_error(cfg, tmp_path):
    rec = run(cfg("dataset.split=forget42"), run_dir=tmp_path / "f")
    assert rec["status"] == "failed"
    assert "forget42" in rec["error"]["message"] and "forget10" in rec["error"]["message"]
    rec = run(cfg("dataset.source=local", "dataset.path=/nonexistent/tofu"), run_dir=tmp_path / "g")
    assert rec["status"] == "failed" and "/nonexistent/tofu" in rec["error"]["message"]
    assert load_record(tmp_path / "g")["status"] == "failed"


def test_trajectory_evaluation_is_appended_to_the_record(cfg, tmp_path):
    rec = run(cfg("method.epochs=5", "method.max_steps=3", "eval.trajectory_every=2"), run_dir=tmp_path / "t")
    traj = rec["trajectory"]
    assert [t["step"] for t in traj] == [0, 2, 3]  # start, every 2 steps, and the last step
    for point in traj:
        assert {"forget_quality", "forget_prob", "forget_truth_ratio", "retain_prob", "retain_truth_ratio",
                "model_utility_no_rouge", "forget_exact_memorization"} <= set(point)
        assert "model_utility" not in point  # no generation in the cheap subset unless asked
    # step 0 is the target model itself: the same numbers as its cached reference evaluation
    target = rec["metrics"]["target"]["summary"]
    assert traj[0]["forget_prob"] == pytest.approx(target["forget_prob"], rel=1e-5)
    assert traj[0]["forget_quality"] == pytest.approx(target["forget_quality"], rel=1e-5)


def test_forget_quality_against_given_retain_logs(cfg, tmp_path):
    """eval.retain_logs: FQ against another run's retain logs (here: a run whose retain model is the same)."""
    first = run(cfg("method.max_steps=1"), run_dir=tmp_path / "a")
    rec = run(cfg("method.max_steps=1", f"eval.retain_logs={tmp_path / 'a'}"), run_dir=tmp_path / "b")
    assert rec["reference"] == str(tmp_path / "a") and first["reference"] == "retain model"
    assert rec["metrics"]["target"]["summary"]["forget_quality"] == first["metrics"]["target"]["summary"]["forget_quality"]


def test_gen_fits_the_lm_retain_loss_even_when_the_retain_task_is_a_kl(cfg, tmp_path):
    """kl's retain task is KL(target || model) (0 at step 0); GeN must fit L_R, the LM loss."""
    rec = run(cfg("method=kl", "scheduler=gen", "method.max_steps=1"), run_dir=tmp_path / "k")
    assert rec["status"] == "ok", rec.get("error")
    row = json.loads((tmp_path / "k" / STEP_LOG).read_text().splitlines()[0])
    assert abs(row["loss/retain"]) < 1e-4  # the KL term: the model is still the target
    assert row["gen/l0"] > 0.1  # the retain NLL of the debug model (~0.7), not the KL (~0)
