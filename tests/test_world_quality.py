"""The default embedded world is meaningful: the target knows the forget facts, the retain model
does not (slow: trains the default models, ~6 min on 2 cores; CI runs it with -m slow)."""
import pytest

from tests.conftest import compose_cfg
from unlearn.pipeline import run


@pytest.mark.slow
def test_default_world_separates_target_and_retain(tmp_path):
    rec = run(compose_cfg([f"paths.root={tmp_path}", "method=ga", "method.max_steps=1"]), run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    target, retain = rec["metrics"]["target"]["summary"], rec["metrics"]["retain"]["summary"]
    assert target["forget_prob"] > 0.9 and retain["forget_prob"] < 0.2
    assert retain["forget_quality"] == 1.0
    assert target["forget_quality"] <= 1e-3  # KS two-sample p-value on forget10 truth ratios
    # the retain model still writes the answer template ("X was born in ..."), so its recall is ~0.56
    assert target["forget_rouge"] > 0.95 and target["forget_rouge"] - retain["forget_rouge"] > 0.3
    assert min(target["retain_rouge"], retain["retain_rouge"]) > 0.9  # both know the retain authors
    # the finetuning replays the base corpus, so both keep the real-author / world-fact analogs
    for model in (target, retain):
        assert min(model["ra_rouge"], model["wf_rouge"]) > 0.9 and model["model_utility"] > 0.6
