"""``python -m eval.evaluate``: a saved checkpoint scored without unlearning -- exactly the numbers its
run recorded, against the retain model or open-unlearning's file, a LoRA adapter as its merged
model, one line for a missing folder, MUSE, and the report reading the record (debug world)."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from eval.evaluate import main as evaluate_command
from eval.ou.read import load_ou_eval
from eval.records import load_record
from eval.report.build import report
from unlearn.benchmarks import get_benchmark
from unlearn.checkpoint_eval import checkpoint_label, evaluate_checkpoint, evaluation_config
from unlearn.config import compose_config
from unlearn.models import load_lora
from unlearn.pipeline import OU_LOGS, run
from unlearn.stages import StageCache

LORA = "model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def cfg(root, shared_cache):
    return lambda *o: compose_config(["debug=tiny", f"paths.root={root / 'outputs'}", f"paths.cache={shared_cache}", *o])


@pytest.fixture(scope="module")
def tofu_run(cfg, root):
    """An unlearning run (two steps), with open-unlearning's files."""
    rec = run(cfg("method.max_steps=2", "eval.ou_logs=true"), run_dir=root / "runs" / "ngdiff-gen" / "seed0")
    assert rec["status"] == "ok", rec.get("error")
    return rec


def command(root, shared_cache, *args):
    """The documented command, in this process (the environment names the output and cache roots)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARN_OUTPUTS", str(root / "cli"))
        mp.setenv("UNLEARN_CACHE", str(shared_cache))
        evaluate_command(["debug=tiny", *args])


@pytest.fixture(scope="module")
def evaluated(tofu_run, root, shared_cache):
    """``python -m eval.evaluate debug=tiny checkpoint=<run>/checkpoint eval.ou_logs=true``."""
    command(root, shared_cache, f"checkpoint={tofu_run['run_dir']}/checkpoint", "eval.ou_logs=true")
    (path,) = (root / "cli").rglob("record.json")
    return load_record(path)


def numbers(tree, prefix=""):
    """Every number of a nested summary, by its dotted key."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in numbers(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def test_a_runs_checkpoint_evaluates_to_exactly_the_numbers_the_run_recorded(tofu_run, evaluated, root):
    assert evaluated["status"] == "ok", evaluated.get("error")
    assert evaluated["metrics"] == tofu_run["metrics"]  # every summary value and per-item log of all three models
    checkpoint = Path(tofu_run["run_dir"]) / "checkpoint"
    run_dir = Path(evaluated["run_dir"])  # <runs>/evaluate/<dataset>/<split>/<model>/<label>-<hash>/<overrides>
    digest = hashlib.sha256(str(checkpoint).encode()).hexdigest()[:6]
    assert run_dir == (root / "cli" / "debug" / "runs" / "evaluate" / "tofu_synth" / "forget10" / "tiny_llama"
                       / f"ngdiff-gen-{digest}" / "eval.ou_logs=true")
    assert evaluated["kind"] == "evaluate" and tofu_run["kind"] == "unlearn"
    assert evaluated["evaluated"] == {"checkpoint": str(checkpoint), "name": "ngdiff-gen", "kind": "folder",
                                      "location": str(checkpoint.resolve())}
    assert "method" not in evaluated["config"] and "unlearn" not in evaluated and "steps" not in evaluated["logs"]
    assert (run_dir / "overrides.txt").read_text().split() == ["debug=tiny", "eval.ou_logs=true"]
    assert "evaluating" in (run_dir / "run.log").read_text()
    for model in ("target", "retain", "unlearned"):  # open-unlearning's files, the run's to the byte
        ours, theirs = (Path(d) / OU_LOGS / model / "TOFU_EVAL.json" for d in (run_dir, tofu_run["run_dir"]))
        assert ours.read_bytes() == theirs.read_bytes()


def test_a_complete_evaluation_is_reused_until_the_checkpoint_changes(tofu_run, evaluated, cfg, root):
    checkpoint = Path(tofu_run["run_dir"]) / "checkpoint"
    out = Path(evaluated["run_dir"])
    again = evaluate_checkpoint(cfg("eval.ou_logs=true"), str(checkpoint), out)
    assert again.get("skipped") and again["started"] == evaluated["started"]
    copy = root / "copied" / "checkpoint"
    shutil.copytree(checkpoint, copy)
    first = evaluate_checkpoint(cfg(), str(copy), root / "copied_eval")
    weights = copy / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # rewritten in place
    second = evaluate_checkpoint(cfg(), str(copy), root / "copied_eval")
    assert "skipped" not in second and second["result_hash"] != first["result_hash"]
    assert second["result_key"]["inputs"]["files"] != first["result_key"]["inputs"]["files"]
    assert second["metrics"] == first["metrics"] == tofu_run["metrics"]


def test_forget_quality_against_the_runs_open_unlearning_file(tofu_run, cfg, root):
    ou_file = Path(tofu_run["run_dir"]) / OU_LOGS / "retain" / "TOFU_EVAL.json"
    assert load_ou_eval(ou_file)["forget_truth_ratio"]["value_by_index"]  # written by the run (eval.ou_logs=true)
    rec = evaluate_checkpoint(cfg(f"eval.retain_logs={ou_file}"), Path(tofu_run["run_dir"]) / "checkpoint",
                              root / "against_file", name="ngdiff")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["reference"] == str(ou_file) and rec["evaluated"]["name"] == "ngdiff"
    for model in ("target", "unlearned"):
        assert rec["metrics"][model]["summary"]["forget_quality"] == pytest.approx(
            tofu_run["metrics"][model]["summary"]["forget_quality"], rel=1e-9)


def test_a_lora_adapter_evaluates_as_its_run_and_as_its_merged_model(cfg, root):
    lora_run = run(cfg("method.max_steps=2", LORA), run_dir=root / "lora_run")
    assert lora_run["status"] == "ok", lora_run.get("error")
    adapter = root / "lora_run" / "checkpoint"
    rec = evaluate_checkpoint(cfg(), adapter, root / "lora_eval")
    target = lora_run["stages"]["target"]["path"]
    assert rec["evaluated"]["kind"] == "adapter" and rec["evaluated"]["base"] == target
    assert rec["metrics"] == lora_run["metrics"]  # evaluated unmerged, as the run evaluated it
    merged = root / "merged"
    load_lora(target, adapter).merge_and_unload().save_pretrained(merged)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (adapter / name).exists():
            shutil.copy(adapter / name, merged / name)
    as_merged = evaluate_checkpoint(cfg(), merged, root / "merged_eval")
    assert as_merged["evaluated"]["kind"] == "folder"
    got, want = numbers(as_merged["metrics"]["unlearned"]["summary"]), numbers(rec["metrics"]["unlearned"]["summary"])
    assert got.keys() == want.keys()
    for key, value in want.items():  # W + BA in one matrix: float32 rounding only
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    # an adapter whose named base is not on this machine is applied to the configured target
    moved = root / "moved_adapter"
    shutil.copytree(adapter, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone/target"}))
    elsewhere = evaluate_checkpoint(cfg(), moved, root / "moved_eval")
    assert elsewhere["evaluated"]["base"] == target and elsewhere["metrics"] == lora_run["metrics"]


def test_a_missing_folder_fails_in_one_line_before_any_work(root, tmp_path, capsys):
    cache = tmp_path / "untouched_cache"
    with pytest.raises(SystemExit) as exit_:
        command(root / "missing", cache, "checkpoint=/nowhere/unlearned")
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    line = ("checkpoint: no such folder '/nowhere/unlearned' (valid: a folder saved by save_pretrained, a LoRA adapter "
            "folder (adapter_config.json) or a Hub id org/name)")
    assert f"status: FAILED: ConfigError: {line}\n" in out and "Traceback" not in out
    (path,) = (root / "missing").rglob("record.json")
    rec = load_record(path)
    assert rec["status"] == "failed" and rec["error"]["message"] == line and "stages" not in rec
    assert not cache.exists()  # nothing was built
    assert "Traceback" in (path.parent / "run.log").read_text()
    (tmp_path / "empty").mkdir()
    rec = evaluate_checkpoint(compose_config(["debug=tiny", f"paths.cache={cache}"]), tmp_path / "empty", tmp_path / "e")
    assert rec["error"]["message"] == (f"checkpoint={tmp_path / 'empty'} holds neither config.json (a model saved by "
                                       "save_pretrained) nor adapter_config.json (a LoRA adapter)")
    (tmp_path / "empty" / "config.json").write_text("{}")  # the run's checks too, from the command line
    with pytest.raises(SystemExit):
        command(root / "typed", cache, f"checkpoint={tmp_path / 'empty'}", "eval.ds_size=0")
    assert "status: FAILED: ConfigError: eval.ds_size must be null (every item) or an integer >= 1, got 0\n" in (
        capsys.readouterr().out)
    assert not cache.exists()


def test_the_muse_world_target_evaluates_to_its_reference_evaluation(root, shared_cache):
    cfg = compose_config(["debug=tiny", "dataset=muse_synth", f"paths.root={root / 'muse'}", f"paths.cache={shared_cache}"])
    target = get_benchmark("muse").prepare(cfg, StageCache(shared_cache)).target_path
    rec = evaluate_checkpoint(cfg, target, root / "muse_eval", name="target_again")
    assert rec["status"] == "ok", rec.get("error")
    metrics = rec["metrics"]
    assert set(metrics) == {"target", "retain", "unlearned"}
    assert metrics["unlearned"] == metrics["target"]  # loaded from the folder vs the cached reference evaluation
    assert "privleak" in metrics["unlearned"]["summary"]


def test_the_report_reads_an_evaluation_beside_runs(tofu_run, evaluated, tmp_path):
    for name, rec in (("run", tofu_run), ("evaluation", evaluated)):  # a folder of the two records
        (tmp_path / "runs" / name).mkdir(parents=True)
        shutil.copy(Path(rec["run_dir"]) / "record.json", tmp_path / "runs" / name / "record.json")
    res = report(tmp_path / "runs", tmp_path / "report")
    rows = pd.read_csv(tmp_path / "report" / "runs.csv")
    row = rows[rows["run_dir"].str.endswith("evaluation") & (rows["model_role"] == "unlearned")].iloc[0]
    assert row["kind"] == "evaluate" and row["method"] == "ngdiff-gen"
    assert row["forget_quality"] == pytest.approx(tofu_run["metrics"]["unlearned"]["summary"]["forget_quality"])
    assert "ngdiff-gen" in set(res["table"]["method"]) and (tmp_path / "report" / "table.md").exists()


def test_labels_and_the_config_an_evaluation_runs():
    assert checkpoint_label("outputs/runs/tofu_synth/forget10/tiny_llama/ngdiff-gen/default/seed0/checkpoint") == "ngdiff-gen"
    assert checkpoint_label("open-unlearning/tofu_Llama-3.2-1B_NPO") == "tofu_Llama-3.2-1B_NPO"
    assert checkpoint_label("/ckpt/npo/checkpoint_final/") == "npo"
    cfg = evaluation_config(compose_config(["model=hf"]), "/ckpt/npo")
    assert cfg.model.target is None and cfg.model.tokenizer == "/ckpt/npo"  # no target: the checkpoint's tokenizer
    assert "method" not in cfg and "scheduler" not in cfg
    given = evaluation_config(compose_config(["model=hf", "model.target=/ckpt/full"]), "/ckpt/npo")
    assert given.model.target == given.model.tokenizer == "/ckpt/full"
