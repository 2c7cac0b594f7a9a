"""lm-evaluation-harness on our model objects (eval/lm_eval): its per-choice log-likelihoods and
accuracies equal a scorer written here from plain forward passes, in both prompt styles; the model
and tokenizer come back unchanged and lm-eval's output stays off the terminal; a TOFU run's record
and report carry the tasks' accuracies; bad task names and question files stop with one line,
before any work; an empty task list never imports lm-eval."""
import copy
import json
import logging
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from eval.lm_eval import MMLU_DESCRIPTION, local_task, read_questions, run_tasks, write_task
from eval.lm_eval import step, tasks as lm_tasks
from eval.records import load_record
from eval.report.build import report
from unlearn.benchmarks import get_benchmark
from unlearn.config import compose_config
from unlearn.models import build_tiny_llama
from unlearn.pipeline import OU_LOGS, run
from unlearn.run_logs import FORMAT
from unlearn.tokenizer import train_bpe_tokenizer

ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 256}
LONG = "In the story the old captain tells, before the storm and after the long winter at sea, " * 12
QUESTIONS = [  # trailing spaces (stripped by the prompt), a quote in an option, options of unequal length,
    # a question longer than the model's 256 positions (HFLM keeps a text's last 257 tokens)
    {"question": "Which gas do plants take in? ", "choices": ["carbon dioxide", "helium", "neon", "argon gas"], "answer": 0},
    {"question": "Who wrote 'The Red Lantern'?", "choices": ["Mara Voss", "Ian O'Dell", "Lee Park", "Ana Ruiz"], "answer": 1},
    {"question": "What is two plus two?", "choices": ["three", "five", "four", "twenty-two"], "answer": 2},
    {"question": "Which city is a capital?", "choices": ["Smalltown", "Riverbend", "Oakvale", "Paris"], "answer": 3},
    {"question": "What colour is the sky at noon?", "choices": ["blue", "green", "red", "black"], "answer": 0},
    {"question": "Which animal barks?", "choices": ["cat", "dog", "fish", "owl"], "answer": 1},
    {"question": LONG + "which animal barks?", "choices": ["cat", "dog", "fish", "owl"], "answer": 1},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A question file, a BPE tokenizer trained on it and a random tiny Llama (seconds)."""
    root = tmp_path_factory.mktemp("lm_eval")
    data = root / "questions.jsonl"
    data.write_text("".join(json.dumps({**q, "subject": "general_knowledge"}) + "\n" for q in QUESTIONS))
    texts = [q["question"] + " " + " ".join(q["choices"]) for q in QUESTIONS] * 20
    tok = train_bpe_tokenizer(texts + ["Question: Answer: A. B. C. D."] * 20, 300, root / "tok")
    model = build_tiny_llama(ARCH, tok, seed=0).eval()
    with torch.no_grad():  # initialised at 5x the scale: a model whose numbers hang on the whole prompt
        for name, p in model.named_parameters():  # (at 1x a change far back moves them by ~1e-3)
            if "norm" not in name:
                p.mul_(5)
    return {"root": root, "data": data, "tok": tok, "model": model}


# ------------------------------------------------------------------------------------------------
# an independent scorer: plain forward passes, the harness's prompts written out by hand
# ------------------------------------------------------------------------------------------------
def continuation_logprob(model, tok, context: str, continuation: str) -> float:
    """Sum of log p over the continuation's tokens. As lm-eval's HFLM ``_encode_pair``: the
    context's trailing spaces move to the continuation, the whole text is tokenized (BOS first)
    and the continuation's tokens are those after the context's own tokenization; the model reads
    at most its ``max_position_embeddings`` tokens, the text's last ones but the final one."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole = tok(context + continuation)["input_ids"]
    n_cont = len(whole) - len(tok(context)["input_ids"])
    inputs = whole[-(ARCH["max_position_embeddings"] + 1):][:-1]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([inputs])).logits[0].float(), -1)
    first = len(inputs) - n_cont  # the position whose logits score the continuation's first token
    return float(sum(logp[first + i, t] for i, t in enumerate(whole[-n_cont:])))


def hand_scored(model, tok, style: str) -> dict:
    lls, preds, accs, norms = [], [], [], []
    for q in QUESTIONS:
        c = q["choices"]
        if style == "letter":  # lm_eval/tasks/wmdp/_default_template_yaml
            prompt = f"{q['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"
            options = ["A", "B", "C", "D"]
        else:  # lm_eval/tasks/mmlu/continuation
            prompt, options = f"Question: {q['question'].strip()}\nAnswer:", c
        if style == "spaced":  # the space ends the prompt, no delimiter: HFLM moves it to the option
            prompt, delimiter = prompt + " ", ""
        else:
            delimiter = " "  # lm-eval's target_delimiter
        ll = [continuation_logprob(model, tok, prompt, delimiter + o) for o in options]
        lls.append(ll)
        preds.append(int(np.argmax(ll)))
        accs.append(float(preds[-1] == q["answer"]))
        norms.append(float(np.argmax(np.array(ll) / [len(o) for o in options]) == q["answer"]))
    return {"lls": lls, "pred": preds, "acc": float(np.mean(accs)), "acc_norm": float(np.mean(norms))}


def ordered(per_item: dict) -> list:
    return [per_item[k] for k in sorted(per_item, key=int)]


@pytest.fixture(scope="module")
def harness(world):
    """Both styles in one lm-eval call, and the cloze one with a prompt that ends in a space."""
    cloze = local_task("qa_cloze", world["data"], "cloze")
    spaced = {**cloze, "task": "qa_spaced", "doc_to_text": cloze["doc_to_text"] + " ", "target_delimiter": ""}
    ts = [local_task("qa_letter", world["data"], "letter"), cloze, spaced]
    return run_tasks(world["model"], world["tok"], ts, batch_size=4)


@pytest.mark.parametrize("style", ["letter", "cloze", "spaced"])
def test_the_harness_scores_as_plain_forward_passes(world, harness, style):
    res = harness[f"qa_{style}"]
    mine = hand_scored(world["model"], world["tok"], style)
    items = res["items"]
    assert res["n"] == len(QUESTIONS) and ordered(items["doc_id"]) == list(range(len(QUESTIONS)))
    np.testing.assert_allclose(ordered(items["loglikelihoods"]), mine["lls"], rtol=1e-5, atol=1e-4)
    assert ordered(items["pred"]) == mine["pred"]
    assert ordered(items["gold"]) == [q["answer"] for q in QUESTIONS]
    assert res["metrics"]["acc"] == pytest.approx(mine["acc"])
    assert np.mean(ordered(items["acc"])) == pytest.approx(mine["acc"])
    if style != "letter":
        assert res["metrics"]["acc_norm"] == pytest.approx(mine["acc_norm"])
    else:
        assert set(res["metrics"]) == {"acc"}  # WMDP's and MMLU's metric list


def test_mmlus_description_and_few_shot_examples_go_before_the_question(world, tmp_path):
    """MMLU's layout: its per-subject description, then the dev split's first examples, each
    answered, two newlines apart, then the question (all within the model's 256 positions)."""
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS[4:6]))
    task = local_task("qa_mmlu", world["data"], "letter", description=MMLU_DESCRIPTION, fewshot_file=dev)
    res = run_tasks(world["model"], world["tok"], [task], num_fewshot=1, limit=2)["qa_mmlu"]

    def letter_prompt(q):
        c = q["choices"]
        return f"{q['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"

    shots = "".join(f"{letter_prompt(q)} {'ABCD'[q['answer']]}\n\n" for q in QUESTIONS[4:5])
    head = "The following are multiple choice questions (with answers) about general knowledge.\n\n" + shots
    mine = [[continuation_logprob(world["model"], world["tok"], head + letter_prompt(q), " " + o) for o in "ABCD"]
            for q in QUESTIONS[:2]]
    assert len(world["tok"](head + letter_prompt(QUESTIONS[1]) + " A")["input_ids"]) <= ARCH["max_position_embeddings"]
    np.testing.assert_allclose(ordered(res["items"]["loglikelihoods"]), mine, rtol=1e-5, atol=1e-4)


def test_the_model_tokenizer_and_random_states_are_as_before(world, tmp_path, capfd, monkeypatch):
    model, tok = world["model"], world["tok"]
    model.train()
    model.model.layers[0].eval()  # a mixed state comes back mixed
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    padless = copy.deepcopy(tok)
    padless.pad_token = None  # HFLM would give it one
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of a torchrun launch answers too
    import lm_eval.evaluator
    from torch.utils import collect_env

    report = lm_eval.evaluator.add_env_info
    monkeypatch.setattr(collect_env, "get_pretty_env_info", lambda: pytest.fail("environment report ran"))
    log_file = logging.FileHandler(tmp_path / "run.log")  # what a run attaches (unlearn/run_logs.py)
    log_file.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(log_file)
    try:
        res = run_tasks(model, padless, [local_task("qa", world["data"], "cloze")], batch_size=2, limit=3)
    finally:
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    try:
        assert res["qa"]["n"] == 3  # limit: the first 3 items
        assert lm_eval.evaluator.add_env_info is report  # its environment report left out during the call only
        assert os.environ["LOCAL_RANK"] == "1"
        assert [m.training for m in model.modules()] == modes
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
        assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
        assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]
        assert np.array_equal(np.random.get_state()[1], rng[2])
        assert padless.pad_token is None and len(padless) == len(tok)
        out, err = capfd.readouterr()
        assert out == "" and err == "", (out, err)  # lm-eval's logging and progress bars: the run log
        logged = (tmp_path / "run.log").read_text()
        assert "[lm_eval.printed][INFO] - Running loglikelihood requests: 100%" in logged  # its progress bar, done,
        assert "Running loglikelihood requests:   0%" not in logged  # not each update
        assert "[lm_eval.models.huggingface][WARNING]" in logged  # and its own logging
    finally:
        model.eval()


# ------------------------------------------------------------------------------------------------
# task files and names
# ------------------------------------------------------------------------------------------------
def test_a_task_yaml_is_found_through_include_path_and_scores_the_same(world, harness, tmp_path):
    task = local_task("qa_letter", world["data"], "letter")
    path = write_task(task, tmp_path / "tasks")
    assert path.name == "qa_letter.yaml"
    res = run_tasks(world["model"], world["tok"], ["qa_letter"], include_path=tmp_path / "tasks", batch_size=4)
    np.testing.assert_allclose(ordered(res["qa_letter"]["items"]["loglikelihoods"]),
                               ordered(harness["qa_letter"]["items"]["loglikelihoods"]), rtol=1e-5, atol=1e-4)
    assert lm_tasks.data_files(tmp_path / "tasks", ["qa_letter"]) == [world["data"].absolute()]


@pytest.mark.parametrize("item, problem", [
    ({"question": "q", "choices": ["a", "b", "c"], "answer": 0}, "the letter style has 4 options (A-D), this item 3"),
    ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": 4}, "answer must be an index into its 4 choices, got 4"),
    ({"question": "q", "choices": ["a", "b", "c", "d"]}, "no answer (WMDP's fields: question, choices, answer)"),
    ({"question": "q", "choices": "abcd", "answer": 0}, "choices must be a list of at least 2 strings"),
])
def test_a_bad_question_file_is_one_line_naming_the_item(tmp_path, item, problem):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps(item) + "\n")
    with pytest.raises(ValueError) as e:
        local_task("t", f, "letter")
    assert str(e.value).startswith(f"question file {f}, item 1: {problem}") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown prompt style 'mcq'; valid: letter, cloze"):
        local_task("t", f, "mcq")


def test_a_question_file_is_json_lines_or_a_json_array(world, tmp_path):
    array = tmp_path / "questions.json"
    array.write_text(json.dumps(QUESTIONS))
    lines = read_questions(world["data"], "letter")
    assert read_questions(array) == [{k: v for k, v in q.items() if k != "subject"} for q in lines] == QUESTIONS


def test_an_unknown_task_lists_the_local_ones(world, tmp_path, monkeypatch):
    write_task(local_task("bio_forget", world["data"]), tmp_path / "tasks")
    write_task(local_task("general", world["data"], "cloze"), tmp_path / "tasks")
    monkeypatch.setattr(lm_tasks, "builtin_names", lambda: ["mmlu", "wmdp_bio"])  # lm-eval's index: seconds
    lm_tasks.check_tasks(["general", "wmdp_bio"], tmp_path / "tasks")
    with pytest.raises(ValueError) as e:
        lm_tasks.check_tasks(["general", "bio_forgett"], tmp_path / "tasks")
    assert str(e.value) == (f"unknown lm-eval task 'bio_forgett' (did you mean 'bio_forget'?); tasks in "
                            f"eval.lm_eval.include_path={tmp_path / 'tasks'}: bio_forget, general; "
                            "lm-eval's own tasks: lm-eval ls tasks")
    with pytest.raises(ValueError, match="eval.lm_eval.include_path=/no/such is not a folder"):
        lm_tasks.check_tasks(["general"], "/no/such")


def test_a_bad_task_name_fails_the_run_before_any_work(world, tmp_path, monkeypatch):
    write_task(local_task("general", world["data"], "cloze"), tmp_path / "tasks")
    monkeypatch.setattr(lm_tasks, "builtin_names", lambda: ["mmlu"])
    cache = tmp_path / "cache"
    rec = run(compose_config(["debug=tiny", f"paths.root={tmp_path / 'out'}", f"paths.cache={cache}",
                              "eval.lm_eval.tasks=[generl]", f"eval.lm_eval.include_path={tmp_path / 'tasks'}"]),
              run_dir=tmp_path / "run")
    assert rec["status"] == "failed" and rec["error"]["type"] == "ConfigError"
    assert rec["error"]["message"].startswith("unknown lm-eval task 'generl' (did you mean 'general'?)")
    assert not cache.exists()  # no world, no model: nothing was built


def _entry(name, kind, cfg, tags=()):
    from lm_eval.tasks._index import Entry, Kind

    return Entry(name=name, kind=Kind[kind], yaml_path=None, cfg=cfg, tags=set(tags))


def test_the_hub_data_a_task_group_or_tag_reads(monkeypatch, tmp_path):
    """From the index alone (no data loaded): a task's dataset_path, a group's members (a nested group, an
    inline config), a tag's tasks; each Hub id once, named by the first task asked for that reads it;
    packaged builders (json) and local folders left out."""
    (tmp_path / "folder").mkdir()
    index = {
        "qa": _entry("qa", "TASK", {"task": "qa", "dataset_path": "org/qa"}),
        "qa_json": _entry("qa_json", "TASK", {"task": "qa_json", "dataset_path": "json"}, tags=["suite"]),
        "qa_local": _entry("qa_local", "TASK", {"task": "qa_local", "dataset_path": str(tmp_path / "folder")}),
        "sub_a": _entry("sub_a", "TASK", {"task": "sub_a", "dataset_path": "org/bench"}, tags=["suite"]),
        "sub_b": _entry("sub_b", "TASK", {"task": "sub_b", "dataset_path": "org/bench"}),
        "inner": _entry("inner", "GROUP", {"group": "inner", "task": ["sub_b", "suite"]}),
        "outer": _entry("outer", "GROUP", {"group": "outer", "task": ["inner", {"task": "x", "dataset_path": "org/x"}]}),
        "suite": _entry("suite", "TAG", {}),
    }
    monkeypatch.setattr(lm_tasks, "builtin_index", lambda: index)
    assert lm_tasks.hub_datasets(["qa"]) == [("qa", "org/qa")]
    assert lm_tasks.hub_datasets(["suite", "qa_json", "qa_local"]) == [("suite", "org/bench")]
    assert lm_tasks.hub_datasets(["outer", "qa", "sub_a"]) == [("outer", "org/bench"), ("outer", "org/x"), ("qa", "org/qa")]


def test_a_task_whose_hub_data_is_not_cached_fails_offline_before_any_work(world, hub, tmp_path, monkeypatch):
    """A task YAML of include_path that reads a Hub data set, offline and not cached: one line naming the
    task, its data and the way round; nothing built. The same task over a local file runs the check clean."""
    from unlearn import sources

    monkeypatch.setattr(sources, "_USER_OFFLINE", "1")
    task = {**local_task("qa", world["data"], "cloze"), "dataset_path": "someorg/qa_data"}
    task.pop("dataset_kwargs")
    write_task(task, tmp_path / "tasks")
    cache = tmp_path / "cache"
    rec = run(compose_config(["debug=tiny", f"paths.root={tmp_path / 'out'}", f"paths.cache={cache}",
                              "eval.lm_eval.tasks=[qa]", f"eval.lm_eval.include_path={tmp_path / 'tasks'}"]),
              run_dir=tmp_path / "run")
    assert rec["status"] == "failed" and rec["error"]["type"] == "ConfigError", rec.get("error")
    message = rec["error"]["message"]
    assert message.startswith("eval.lm_eval.tasks (qa)='someorg/qa_data' is not a local folder and not in the Hugging Face cache")
    assert message.endswith("HF_HUB_OFFLINE=1 is set: unset it to download it, or give the task as a YAML over local "
                            "files in its include_path (eval/lm_eval/tasks.py: local_task)")
    assert not cache.exists()
    write_task(local_task("qa", world["data"], "cloze"), tmp_path / "tasks")
    assert step.check(step.requests(compose_config(["debug=tiny", "eval.lm_eval.tasks=[qa]",
                                                    f"eval.lm_eval.include_path={tmp_path / 'tasks'}"]).eval)) == []


def test_a_wmdp_question_task_is_checked_before_any_work(world, tmp_path, monkeypatch):
    """WMDP's eval.tasks names (the harness's tasks for its question sets) are checked as eval.lm_eval's are."""
    monkeypatch.setattr(lm_tasks, "builtin_names", lambda: ["mmlu"])  # lm-eval's own index: seconds
    write_task(local_task("bio_local", world["data"], "letter"), tmp_path / "tasks")
    cache = tmp_path / "cache"
    rec = run(compose_config(["debug=tiny", "dataset=wmdp_synth", f"paths.root={tmp_path / 'out'}",
                              f"paths.cache={cache}", "eval.tasks.forget=bio_locl",
                              f"eval.tasks.include_path={tmp_path / 'tasks'}"]), run_dir=tmp_path / "run")
    assert rec["status"] == "failed" and rec["error"]["type"] == "ConfigError"
    assert rec["error"]["message"].startswith("unknown lm-eval task 'bio_locl' (did you mean 'bio_local'?); tasks in "
                                              f"eval.tasks.include_path={tmp_path / 'tasks'}: bio_local;")
    assert not cache.exists()
    scorer = compose_config(["debug=tiny", "dataset=wmdp_synth", "eval.tasks.forget=bio_locl", "eval.questions=scorer"])
    assert get_benchmark("wmdp").lm_eval_requests(scorer) == []  # the scorer runs no task: nothing to check


def test_lm_eval_results_as_open_unlearnings_files():
    """A group (its aggregate in the summary, its subtasks' items in the eval file) and a task, as
    open-unlearning's LMEvalEvaluator keys them: ``<task>/<metric>``, ``{task: {subtask: [samples]}}``."""
    from eval.ou.lm_eval_files import lm_eval_ou

    def task(acc, golds):
        return {"metrics": {"acc": acc}, "items": {"doc_id": {"1": 1, "0": 0}, "gold": {"0": golds[0], "1": golds[1]},
                                                   "acc": {"0": 1.0, "1": acc * 2 - 1.0}}}

    results = {"mmlu": {"metrics": {"acc": 0.75}, "subtasks": ["mmlu_stem"]},
               "mmlu_stem": {"metrics": {"acc": 0.75}, "subtasks": ["mmlu_anatomy"]},
               "mmlu_anatomy": task(0.75, (2, 3)), "arc": {**task(0.5, (0, 1)), "metrics": {"acc": 0.5, "acc_norm": 0.6}}}
    evals, summary = lm_eval_ou(results)
    assert summary == {"mmlu/acc": 0.75, "arc/acc": 0.5, "arc/acc_norm": 0.6}  # the subtasks' own stay in the eval file
    assert evals["mmlu"] == {"mmlu_anatomy": [{"doc_id": 0, "target": 2, "acc": 1.0}, {"doc_id": 1, "target": 3, "acc": 0.5}]}
    assert [s["target"] for s in evals["arc"]["arc"]] == [0, 1]


@pytest.mark.slow
def test_a_misspelt_lm_eval_task_is_named_among_its_own():
    """lm-eval's own index (thousands of task files)."""
    lm_tasks.check_tasks(["wmdp_bio"], None)
    with pytest.raises(ValueError, match="unknown lm-eval task 'wmdp_bioo' \\(did you mean 'wmdp_bio'\\?\\); no "):
        lm_tasks.check_tasks(["wmdp_bioo"], None)
    # the Hub data sets WMDP's real evaluation reads (a group's 57 subtasks: one repository)
    assert lm_tasks.hub_datasets(["wmdp_cyber", "mmlu", "wmdp"]) == [("wmdp_cyber", "cais/wmdp"), ("mmlu", "cais/mmlu")]


def test_the_eval_spec_keys_the_tasks_and_their_files(world, tmp_path):
    bench = get_benchmark("tofu")
    base = compose_config(["debug=tiny"])
    assert "lm_eval" not in bench.eval_spec(base)  # no task: every other run keeps its cache keys
    data = tmp_path / "q.jsonl"
    data.write_text(world["data"].read_text())
    write_task(local_task("general", data, "cloze"), tmp_path / "tasks")
    with_tasks = compose_config(["debug=tiny", "eval.lm_eval.tasks=[general]", f"eval.lm_eval.include_path={tmp_path / 'tasks'}"])
    first = bench.eval_spec(with_tasks)["lm_eval"]
    assert first["tasks"] == ["general"] and first["lm_eval"] and str(data) in first["data_files"]
    data.write_text(json.dumps(QUESTIONS[0]) + "\n")  # other questions: another key
    assert bench.eval_spec(with_tasks)["lm_eval"]["data_files"] != first["data_files"]


def test_no_task_no_lm_eval_import():
    code = ("import sys; from unlearn.config import compose_config; from unlearn.benchmarks import get_benchmark; "
            "from unlearn.validation import check_evaluation; import unlearn.pipeline, eval.report.build; "
            "cfg = compose_config(['debug=tiny']); check_evaluation(cfg); get_benchmark('tofu').eval_spec(cfg); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lm_eval'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_summary_holds_what_was_asked_for_not_a_groups_subtasks():
    results = {"mmlu": {"metrics": {"acc": 0.3}, "subtasks": ["mmlu_stem"]},
               "mmlu_stem": {"metrics": {"acc": 0.2}, "subtasks": ["mmlu_anatomy"]},
               "mmlu_anatomy": {"metrics": {"acc": 0.1}, "n": 3, "items": {}},
               "bio_forget": {"metrics": {"acc": 0.25, "acc_norm": 0.5}, "n": 8, "items": {}}}
    assert step.summary(results) == {"lm_eval/mmlu/acc": 0.3, "lm_eval/bio_forget/acc": 0.25,
                                     "lm_eval/bio_forget/acc_norm": 0.5}
    logs = {"forget": {"x": 1}, "lm_eval": results}
    assert step.split(logs) == ({"forget": {"x": 1}}, results)
    assert step.columns(["forget_quality", "lm_eval/b/acc", "lm_eval/a/acc"]) == ["lm_eval/a/acc", "lm_eval/b/acc"]


# ------------------------------------------------------------------------------------------------
# in a TOFU run
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow  # 23 s with the world built; 77-139 s when it builds its reference evaluations
def test_a_tofu_run_records_and_reports_the_tasks_accuracy(world, shared_cache, tmp_path):
    write_task(local_task("general", world["data"], "cloze"), tmp_path / "tasks")
    cfg = compose_config(["debug=tiny", f"paths.root={tmp_path / 'out'}", f"paths.cache={shared_cache}",
                          "method.max_steps=2", "save_checkpoint=false", "eval.ou_logs=true",
                          "eval.lm_eval.tasks=[general]", f"eval.lm_eval.include_path={tmp_path / 'tasks'}"])
    rec = run(cfg, run_dir=tmp_path / "runs" / "tofu_synth" / "forget10" / "ngdiff-gen" / "default" / "seed0")
    assert rec["status"] == "ok", rec.get("error")
    for model in ("target", "retain", "unlearned"):
        m = rec["metrics"][model]
        assert 0 <= m["summary"]["lm_eval/general/acc"] <= 1 and "lm_eval/general/acc_norm" in m["summary"]
        assert "model_utility" in m["summary"] and "forget_quality" in m["summary"]  # TOFU's own, beside
        items = m["logs"]["lm_eval"]["general"]["items"]
        assert len(items["loglikelihoods"]) == len(QUESTIONS)
        assert m["summary"]["lm_eval/general/acc"] == pytest.approx(np.mean(ordered(items["acc"])))
    ou = tmp_path / "runs" / "tofu_synth" / "forget10" / "ngdiff-gen" / "default" / "seed0" / OU_LOGS / "unlearned"
    assert (ou / "TOFU_EVAL.json").is_file()  # TOFU's file, and lm-eval's as open-unlearning's LMEvalEvaluator writes it
    summary = rec["metrics"]["unlearned"]["summary"]
    assert json.loads((ou / "LMEval_SUMMARY.json").read_text()) == {
        "general/acc": summary["lm_eval/general/acc"], "general/acc_norm": summary["lm_eval/general/acc_norm"]}
    assert len(json.loads((ou / "LMEval_EVAL.json").read_text())["general"]["general"]) == len(QUESTIONS)
    assert load_record(rec["run_dir"])["environment"]["packages"]["lm-eval"]
    table = report(tmp_path / "runs", tmp_path / "report")["table"]
    assert any(c.startswith("lm_eval/general/acc ") for c in table.columns), list(table.columns)
