"""Checkpoint selection along unlearning (eval.select): the rule on hand-made trajectories, and a
run whose checkpoint/ holds the chosen step's weights."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eval.report.tables import load_runs
from eval.select import Selector, parse_criterion, select_offline
from unlearn.pipeline import run

# step 0 is the target; utility falls as forgetting rises
TRAJ = [
    {"step": 0, "forget_quality": 0.01, "model_utility_no_rouge": 0.80, "forget_prob": 0.99, "privleak": -90.0},
    {"step": 2, "forget_quality": 0.30, "model_utility_no_rouge": 0.79, "forget_prob": 0.50, "privleak": -20.0},
    {"step": 4, "forget_quality": 0.70, "model_utility_no_rouge": 0.77, "forget_prob": 0.20, "privleak": 5.0},
    {"step": 6, "forget_quality": 0.90, "model_utility_no_rouge": 0.70, "forget_prob": 0.05, "privleak": 30.0},
    {"step": 8, "forget_quality": 0.90, "model_utility_no_rouge": 0.60, "forget_prob": 0.01, "privleak": 40.0},
]


@pytest.mark.parametrize("select,floor,step", [
    ("forget_quality", None, 6),                                  # max; the tie 6 / 8 goes to the earlier step
    ("forget_quality", {"model_utility_no_rouge": 0.95}, 4),      # 0.95 x 0.80 = 0.76: steps 0, 2, 4 qualify
    ("forget_quality", {"model_utility_no_rouge": 0.99}, 0),      # 0.792 > step 2's 0.79: only the target qualifies
    ("forget_prob", None, 8),                                     # its direction: lower is better
    ("max:forget_prob", None, 0),
    ("privleak", None, 4),                                        # closest to 0
    ("forget_quality", {"model_utility_no_rouge": 1.01}, None),   # nothing meets the floor (not even the target)
])
def test_the_rule_on_a_hand_made_trajectory(select, floor, step):
    res = select_offline(TRAJ, parse_criterion(select, floor))
    assert res["step"] == step
    if step is not None:
        assert res["metrics"] == next(p for p in TRAJ if p["step"] == step)
    else:
        assert "no trajectory step met the floor" in res["note"]


def test_online_decisions_match_offline_and_flag_each_new_best():
    sel = Selector(parse_criterion("forget_quality", {"model_utility_no_rouge": 0.95}))
    assert [sel.consider(p) for p in TRAJ] == [True, True, True, False, False]


@pytest.mark.parametrize("select,floor,message", [
    ("forget_qualty", None, "eval.select: unknown metric 'forget_qualty'"),
    ("best:forget_quality", None, "unknown direction 'best'"),
    ("forget_quality", {"forget_prob": 0.9}, "'forget_prob' is not a metric that is better higher"),
    ("forget_quality", {"model_utility": -1}, "must be a positive fraction"),
    (None, {"model_utility": 0.9}, "eval.select_floor needs eval.select"),
])
def test_bad_criteria_are_one_line_errors(select, floor, message):
    with pytest.raises(ValueError, match=message):
        parse_criterion(select, floor)


def test_a_selection_needs_trajectory_evaluation(debug_cfg, tmp_path):
    rec = run(debug_cfg("eval.select=forget_quality"), run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and "needs trajectory evaluation" in rec["error"]["message"]
    assert not (tmp_path / "outputs" / "cache").exists()


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_the_checkpoint_is_the_selected_step(debug_cfg, shared_cache, tmp_path):
    common = [f"paths.cache={shared_cache}", "scheduler=constant", "method.lr=1e-3", "method.epochs=3",
              "eval.trajectory_every=1"]
    # max forget_prob picks the target itself (step 0): checkpoint/ is the target, the final one beside it
    rec = run(debug_cfg(*common, "eval.select=max:forget_prob", "eval.select_save_final=true"), run_dir=tmp_path / "a")
    assert rec["status"] == "ok" and rec["selection"]["step"] == 0 and rec["selection"]["final_step"] == 3
    assert rec["selection"]["metrics"] == rec["trajectory"][0]
    target = _weights(Path(rec["stages"]["target"]["path"]))  # the run's own target (the cache holds others too)
    chosen, final = _weights(tmp_path / "a" / "checkpoint"), _weights(tmp_path / "a" / "checkpoint_final")
    assert all(torch.equal(chosen[k], target[k]) for k in target)
    # the final model is the one an unselected run saves, and the one the record's metrics describe
    plain = run(debug_cfg(*common), run_dir=tmp_path / "b")
    other = _weights(tmp_path / "b" / "checkpoint")
    assert all(torch.equal(final[k], other[k]) for k in other) and not all(torch.equal(final[k], target[k]) for k in target)
    assert rec["metrics"]["unlearned"]["summary"]["forget_prob"] == plain["metrics"]["unlearned"]["summary"]["forget_prob"]
    # a criterion the final step meets best: checkpoint/ is the final model, nothing else is written
    last = run(debug_cfg(*common, "eval.select=forget_prob", "eval.select_save_final=true"), run_dir=tmp_path / "c")
    assert last["selection"]["step"] == 3 and not (tmp_path / "c" / "checkpoint_final").exists()
    assert all(torch.equal(_weights(tmp_path / "c" / "checkpoint")[k], other[k]) for k in other)
    # the report shows the selected or the final numbers
    sel = load_runs(tmp_path, records=[tmp_path / "a" / "record.json"], selected=True)
    fin = load_runs(tmp_path, records=[tmp_path / "a" / "record.json"])
    un = lambda df: df[df["model_role"] == "unlearned"].iloc[0]  # noqa: E731
    assert un(sel)["forget_prob"] == rec["trajectory"][0]["forget_prob"] and un(sel)["selected_step"] == 0
    assert un(fin)["forget_prob"] == rec["metrics"]["unlearned"]["summary"]["forget_prob"]
    assert json.loads((tmp_path / "a" / "record.json").read_text())["selection"]["checkpoint"] == "checkpoint"
