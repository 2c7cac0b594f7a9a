"""WMDP's questions scored by lm-evaluation-harness (the default evaluator) equal our own
log-likelihood scorer's (eval/wmdp/choices.py), written independently of the harness, on the debug
world's target and retain models; an lm-eval task by name (a task YAML) replaces a question set."""
import json

import numpy as np
import pytest

from eval.lm_eval import local_task, write_task
from eval.wmdp.choices import question_log
from eval.wmdp.evaluate import harness_log, summarize
from unlearn.benchmarks import get_benchmark
from tests.conftest import compose_cfg, sampled
from unlearn.stages import StageCache


@pytest.fixture(scope="module")
def prepared(shared_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("wmdp_harness")
    cfg = compose_cfg(["debug=tiny", f"paths.root={out}", f"paths.cache={shared_cache}", "dataset=wmdp_synth"])
    return get_benchmark("wmdp").prepare(cfg, StageCache(shared_cache))


@pytest.mark.parametrize("which, part", sampled([("target", "questions"), ("retain", "general"), ("target", "general"),
                                                 ("retain", "questions")], (("target", "questions"), ("retain", "general"))))
def test_the_harness_scores_the_questions_as_our_scorer(prepared, which, part):
    model, tok = prepared.load(which), prepared.tokenizer
    rows = prepared.data.questions(part)
    ours = question_log(model, tok, rows, 8, int(prepared.max_length))
    harness = harness_log(model, tok, rows, part, 8)
    a = np.array([ours["choice_loglik"][k] for k in ours["choice_loglik"]])
    b = np.array([harness["choice_loglik"][k] for k in harness["choice_loglik"]])
    assert a.shape == b.shape == (len(rows), 4)
    np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-5)
    assert harness["pred"] == ours["pred"] and harness["correct"] == ours["correct"]
    assert summarize({"forget_qa": harness}) == summarize({"forget_qa": ours})


def test_a_named_task_replaces_the_question_set(prepared, tmp_path):
    """eval.tasks.forget=<name>: the harness runs that task (here a letter-prompt YAML in include_path,
    as lm-eval's wmdp_* tasks prompt) and the summary's forget_acc is its acc."""
    rows = prepared.data.questions("questions")
    file = tmp_path / "q.jsonl"
    file.write_text("".join(json.dumps({k: r[k] for k in ("question", "choices", "answer")}) + "\n" for r in rows))
    write_task(local_task("synth_letter", file, "letter"), tmp_path / "tasks")
    model = prepared.load("target")
    log = harness_log(model, prepared.tokenizer, "synth_letter", "forget_qa", 8, str(tmp_path / "tasks"))
    acc = log["harness"]["acc"]
    items = log["harness"]["results"]["synth_letter"]["items"]
    assert acc == pytest.approx(np.mean([items["acc"][k] for k in items["acc"]]))
    assert summarize({"forget_qa": log})["forget_acc"] == acc
