"""Experiment trackers through accelerate (logger=...): TensorBoard's event files read back and
compared with the run's own step log, trajectory and record."""
import importlib.util
import json

import pytest

from unlearn.pipeline import run
from unlearn.trackers import check_logger, flat, numbers


def test_flat_config_and_numbers():
    assert flat({"method": {"lr": 1e-3, "clip": [0.5, 2.0]}, "seed": 0, "x": None}) == {
        "method.lr": 1e-3, "method.clip": "[0.5, 2.0]", "seed": 0, "x": "None"}
    assert numbers({"a": 1, "b": True, "c": "s", "d": float("nan"), "e": 2.5}, "p/") == {"p/a": 1.0, "p/b": 1.0, "p/e": 2.5}


def test_unknown_or_missing_tracker_is_a_one_line_error(debug_cfg, tmp_path):
    with pytest.raises(ValueError, match="unknown logger 'tensorbord'; valid: none, tensorboard, wandb, mlflow"):
        check_logger({"name": "tensorbord"})
    for name in ("wandb", "mlflow"):
        if importlib.util.find_spec(name) is None:
            rec = run(debug_cfg(f"logger={name}"), run_dir=tmp_path / name)
            assert rec["status"] == "failed" and rec["error"]["message"] == (
                f"logger={name} needs the {name} package: pip install {name} (or pip install -e '.[{name}]')")
            assert not (tmp_path / "outputs" / "cache").exists()


def test_tensorboard_holds_the_config_steps_trajectory_and_summary(debug_cfg, shared_cache, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rec = run(debug_cfg(f"paths.cache={shared_cache}", "logger=tensorboard", "method.epochs=3", "eval.trajectory_every=1"),
              run_dir=tmp_path / "r")
    assert rec["status"] == "ok" and rec["tracker"]["name"] == "tensorboard"
    files = sorted((tmp_path / "r" / "tracker").rglob("events.out.tfevents*"))
    scalars = {}
    for f in files:
        ea = EventAccumulator(str(f))
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            scalars[tag] = [(e.step, e.value) for e in ea.Scalars(tag)]
    rows = [json.loads(line) for line in (tmp_path / "r" / "steps.jsonl").read_text().splitlines()]
    assert [s for s, _ in scalars["step/loss/forget"]] == [r["step"] for r in rows] == [0, 1, 2]
    assert [v for _, v in scalars["step/loss/forget"]] == pytest.approx([r["loss/forget"] for r in rows], rel=1e-6)
    assert [v for _, v in scalars["step/lr"]] == pytest.approx([r["lr"] for r in rows], rel=1e-6)
    traj = rec["trajectory"]
    assert [s for s, _ in scalars["trajectory/forget_prob"]] == [p["step"] for p in traj] == [0, 1, 2, 3]
    assert [v for _, v in scalars["trajectory/forget_prob"]] == pytest.approx([p["forget_prob"] for p in traj], rel=1e-6)
    final = rec["metrics"]["unlearned"]["summary"]
    assert scalars["final/unlearned/forget_prob"] == [(3, pytest.approx(final["forget_prob"], rel=1e-6))]
    assert scalars["final/status_ok"] == [(3, 1.0)]
    hparams = next((tmp_path / "r" / "tracker").rglob("hparams.yml")).read_text()
    assert "method.lr: 0.0001" in hparams and "scheduler.name: gen" in hparams


def _die_at_step_7(monkeypatch):
    """Kill the run as the tracker is sent step 7: rows 0-6 and trajectory points 0, 3, 6 were sent,
    and the last state (resume_every=4) is that after step 4."""
    import unlearn.trackers

    real = unlearn.trackers.RunTracker.step

    def dies(self, row):
        if row["step"] == 7:
            raise RuntimeError("killed")
        real(self, row)

    monkeypatch.setattr(unlearn.trackers.RunTracker, "step", dies)
    return lambda: monkeypatch.setattr(unlearn.trackers.RunTracker, "step", real)


RESUMED = ("method.epochs=8", "resume_every=4", "eval.trajectory_every=3")


def _events(folder, tag):
    """(step, value) of every event of ``tag`` in every event file under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for f in sorted(folder.rglob("events.out.tfevents*")):
        ea = EventAccumulator(str(f))
        ea.Reload()
        if tag in ea.Tags()["scalars"]:
            out += [(e.step, e.value) for e in ea.Scalars(tag)]
    return out


def test_a_resumed_run_sends_tensorboard_each_step_once(debug_cfg, shared_cache, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    cfg = lambda: debug_cfg(f"paths.cache={shared_cache}", "logger=tensorboard", *RESUMED)  # noqa: E731
    revive = _die_at_step_7(monkeypatch)
    assert run(cfg(), run_dir=tmp_path / "r")["status"] == "failed"
    revive()
    rec = run(cfg(), run_dir=tmp_path / "r")
    assert rec["status"] == "ok" and rec["unlearn"]["resumed_from"] == 4
    rows = [json.loads(line) for line in (tmp_path / "r" / "steps.jsonl").read_text().splitlines()]
    sent = _events(tmp_path / "r" / "tracker", "step/loss/forget")
    assert [s for s, _ in sent] == [r["step"] for r in rows] == list(range(8))  # 4, 5, 6 once
    assert [v for _, v in sent] == pytest.approx([r["loss/forget"] for r in rows], rel=1e-6)
    assert [s for s, _ in _events(tmp_path / "r" / "tracker", "trajectory/forget_prob")] == [0, 3, 6, 8]
    assert _events(tmp_path / "r" / "tracker", "final/status_ok")[-1] == (8, 1.0)
    assert len(list((tmp_path / "r" / "tracker").rglob("hparams.yml"))) == 1  # the config, logged once


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run_and_sends_each_step_once(debug_cfg, shared_cache, tmp_path,
                                                                        monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = lambda: debug_cfg(f"paths.cache={shared_cache}", "logger=mlflow", *RESUMED)  # noqa: E731
    revive = _die_at_step_7(monkeypatch)
    assert run(cfg(), run_dir=tmp_path / "r")["status"] == "failed"
    revive()
    rec = run(cfg(), run_dir=tmp_path / "r")
    assert rec["status"] == "ok" and rec["unlearn"]["resumed_from"] == 4
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "r" / "tracker").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "unlearn"]
    (logged,) = client.search_runs([experiment.experiment_id])  # the resumed attempt logged into the same run
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "step/loss/forget")] == list(range(8))
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "trajectory/forget_prob")] == [0, 3, 6, 8]
    assert logged.data.metrics["final/status_ok"] == 1.0


@pytest.mark.slow
def test_mlflow_file_store_holds_the_config_steps_trajectory_and_summary(debug_cfg, shared_cache, tmp_path, monkeypatch):
    """Read back through MLflow's own client (``pip install -e '.[mlflow]'``; skipped without it)."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "logger=mlflow", "method.epochs=3", "eval.trajectory_every=1"),
              run_dir=tmp_path / "r")
    assert rec["status"] == "ok" and rec["tracker"]["name"] == "mlflow"
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "r" / "tracker").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "unlearn"]
    (logged,) = client.search_runs([experiment.experiment_id])
    rows = [json.loads(line) for line in (tmp_path / "r" / "steps.jsonl").read_text().splitlines()]
    history = client.get_metric_history(logged.info.run_id, "step/loss/forget")
    assert [m.step for m in history] == [r["step"] for r in rows] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx([r["loss/forget"] for r in rows], rel=1e-6)
    traj = client.get_metric_history(logged.info.run_id, "trajectory/forget_prob")
    assert [(m.step, m.value) for m in traj] == [(p["step"], pytest.approx(p["forget_prob"], rel=1e-6))
                                                  for p in rec["trajectory"]]
    final = rec["metrics"]["unlearned"]["summary"]["forget_prob"]
    assert logged.data.metrics["final/unlearned/forget_prob"] == pytest.approx(final, rel=1e-6)
    assert logged.data.params["method.lr"] == "0.0001" and logged.data.params["scheduler.name"] == "gen"
