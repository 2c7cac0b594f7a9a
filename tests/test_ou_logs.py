"""open-unlearning's eval files (TOFU_EVAL.json / MUSE_EVAL.json) read and written, and the
``eval.compat=open_unlearning`` switches, on hand-made logs and tiny runs."""
import json
import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from eval.muse import evaluate as muse_eval
from eval.tofu import metrics as tm
from eval.compat import OU_SETTINGS, apply_compat
from eval.ou.read import load_ou_eval, ou_mia_aucs, ou_truth_ratios
from eval.ou.write import muse_ou_eval, tofu_ou_eval, write_ou_eval
from eval.tofu.evaluate import summarize
from eval.tofu.logs import forget_quality_against, load_retain_logs
from unlearn.pipeline import OU_LOGS, run


def _ou_file(scores: dict[str, float], **extra) -> dict:
    """A retain model's TOFU_EVAL.json as open-unlearning writes it (only what FQ / PrivLeak read)."""
    return {"forget_truth_ratio": {"agg_value": 0.5, "value_by_index": {k: {"score": v} for k, v in scores.items()}},
            "forget_Q_A_Prob": {"agg_value": 0.1, "value_by_index": {k: {"prob": 0.1, "avg_loss": 2.3} for k in scores}},
            **extra}


def _forget_log(para, pert) -> dict:
    """A forget-set log in our (TOFU's) per-sample schema: R_i = exp(para_i - mean_k pert_ik)."""
    return {"avg_gt_loss": {str(i): 1.0 for i in range(len(para))},
            "avg_paraphrased_loss": {str(i): p for i, p in enumerate(para)},
            "average_perturb_loss": {str(i): list(q) for i, q in enumerate(pert)}}


PARA = [1.0, 2.0, 0.5, 3.0, 1.5]
PERT = [[1.5, 2.5], [2.0, 2.2], [0.1, 0.3], [4.0, 5.0], [1.0, 1.0]]
THEIR_R = {"0": 0.2, "1": 0.9, "2": 1.7, "3": 0.05, "4": 3.0}


def test_forget_quality_against_an_open_unlearning_file(tmp_path):
    ours = [math.exp(p - np.mean(q)) for p, q in zip(PARA, PERT)]  # by hand
    expected = ks_2samp(ours, list(THEIR_R.values())).pvalue
    file = tmp_path / "TOFU_EVAL.json"
    file.write_text(json.dumps(_ou_file(THEIR_R)))
    for given in (file, tmp_path, str(tmp_path), load_ou_eval(file)):  # the file, its folder, the object
        p, d = forget_quality_against(_forget_log(PARA, PERT), given)
        assert p == pytest.approx(expected, rel=1e-12)
    assert ou_truth_ratios(load_retain_logs(tmp_path)) == THEIR_R


def test_open_unlearning_file_errors(tmp_path):
    (tmp_path / "TOFU_EVAL.json").write_text(json.dumps(_ou_file({"0": 1.0, "1": 2.0})))
    with pytest.raises(ValueError, match="not the same forget split or eval.ds_size"):
        forget_quality_against(_forget_log(PARA, PERT), tmp_path)
    (tmp_path / "TOFU_EVAL.json").write_text(json.dumps({"model_utility": {"agg_value": 0.6}}))
    with pytest.raises(ValueError, match="no 'forget_truth_ratio' result; present: model_utility"):
        forget_quality_against(_forget_log(PARA, PERT), tmp_path)
    (tmp_path / "TOFU_EVAL.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ou_eval(tmp_path)
    with pytest.raises(FileNotFoundError, match="no open-unlearning eval file"):
        load_ou_eval(tmp_path / "nowhere")


def _tofu_logs():
    """Two items per task, two perturbed answers; generations and MIA scores on the forget task."""
    def task(base, pert, gt):
        return {"avg_gt_loss": {"0": gt[0], "1": gt[1]}, "avg_paraphrased_loss": {"0": base[0], "1": base[1]},
                "average_perturb_loss": {"0": pert[0], "1": pert[1]},
                "rougeL_recall": {"0": 0.5, "1": 1.0},
                "generated_text": {"0": ["Q: a?\n", "the cat sat", "the cat sat down"],
                                   "1": ["Q: b?\n", "dogs running", "dogs running"]}}
    logs = {t: task([1.0, 2.0], [[1.5, 2.5], [3.0, 1.0]], [0.7, 1.2]) for t in ("forget", "retain", "ra", "wf")}
    logs["forget"].update({"exact_memorization": {"0": 0.5, "1": 1.0}, "extraction_strength": {"0": 0.25, "1": 1.0},
                           "mia_min_k": {"0": 2.0, "1": 3.0}, "mia_holdout_min_k": {"0": 4.0, "1": 1.0}})
    return logs


def test_tofu_results_written_in_open_unlearning_format(tmp_path):
    logs = _tofu_logs()
    summary = {"forget_truth_ratio": 0.4, "mia_auc_min_k": 0.25, "model_utility": 0.6, "forget_quality": 0.9,
               "privleak": -50.0, "forget_rouge": 0.75}
    ou = tofu_ou_eval(logs, summary)
    p = ou["forget_Q_A_Prob"]["value_by_index"]["1"]
    assert p == {"prob": pytest.approx(math.exp(-1.2)), "avg_loss": 1.2}
    pert = ou["forget_Q_A_PERT_Prob"]["value_by_index"]["0"]
    assert pert["avg_loss"] == [1.5, 2.5] and pert["prob"] == pytest.approx([math.exp(-1.5), math.exp(-2.5)])
    assert ou["forget_Q_A_PERT_Prob"]["agg_value"] == pytest.approx(
        np.mean([np.mean([math.exp(-1.5), math.exp(-2.5)]), np.mean([math.exp(-3.0), math.exp(-1.0)])]))
    # their truth ratio: exp(-mean pert) / (exp(-para) + 1e-10)
    assert ou["forget_truth_ratio"]["value_by_index"]["0"]["score"] == pytest.approx(
        math.exp(-2.0) / (math.exp(-1.0) + 1e-10), rel=1e-12)
    assert ou["forget_truth_ratio"]["agg_value"] == 0.4 and "retain_Truth_Ratio" in ou and "ra_Truth_Ratio" in ou
    assert "forget_Q_A_PARA_Prob" in ou and "ra_Q_A_PARA_Prob" not in ou
    norm = ou["ra_Q_A_Prob_normalised"]["value_by_index"]["0"]["prob"]
    assert norm == pytest.approx(math.exp(-0.7) / (math.exp(-0.7) + math.exp(-1.5) + math.exp(-2.5) + 1e-10))
    rouge = ou["forget_Q_A_ROUGE"]["value_by_index"]["0"]
    assert rouge["rougeL_recall"] == pytest.approx(0.75) and rouge["rouge1_recall"] == pytest.approx(0.75)
    assert rouge["rougeL_f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    assert (rouge["input"], rouge["generation"], rouge["ground_truth"]) == ("Q: a?\n", "the cat sat", "the cat sat down")
    mia = ou["mia_min_k"]
    # their orientation, from the scores: P(holdout score > forget score) over {2, 3} x {4, 1}
    assert mia["auc"] == mia["agg_value"] == 0.5
    assert mia["forget"]["value_by_index"] == {"0": {"score": 2.0}, "1": {"score": 3.0}}
    assert mia["holdout"]["agg_value"] == 2.5
    assert ou["extraction_strength"]["agg_value"] == 0.625
    assert {k: ou[k]["agg_value"] for k in ("model_utility", "forget_quality", "privleak")} == {
        "model_utility": 0.6, "forget_quality": 0.9, "privleak": -50.0}
    write_ou_eval(tmp_path, "tofu", ou)
    back = json.loads((tmp_path / "TOFU_EVAL.json").read_text())
    assert list(back) == sorted(back)  # sorted by metric, as open-unlearning saves
    s = json.loads((tmp_path / "TOFU_SUMMARY.json").read_text())
    assert s["forget_truth_ratio"] == 0.4 and s["mia_min_k"] == 0.5 and "forget_Q_A_PARA_Prob" not in s
    # and read back: the written file is a retain reference with its truth ratios (its formula)
    theirs = [math.exp(-2.0) / (math.exp(-1.0) + 1e-10), math.exp(-2.0) / (math.exp(-2.0) + 1e-10)]
    ours = [math.exp(-1.0), 1.0]
    assert forget_quality_against(logs["forget"], tmp_path) == pytest.approx(
        (ks_2samp(ours, theirs).pvalue, ks_2samp(ours, theirs).statistic))
    assert ou_mia_aucs(back) == {"min_k": 0.5}


def test_muse_results_written_and_read_as_reference(tmp_path):
    logs = {"verbmem": {"rougeL_f1": {"0": 0.4}, "generated_text": {"0": ["p", "a b", "a b c"]}},
            "privleak": {"forget": {"min_k": {"0": 1.0, "1": 2.0}}, "holdout": {"min_k": {"0": 3.0, "1": 4.0}}}}
    ou = muse_ou_eval(logs, {"mia_auc_min_k": 0.25, "privleak": 12.0})
    assert ou["forget_verbmem_ROUGE"]["value_by_index"]["0"]["rougeL_f1"] == 0.4  # our scoring kept
    # holdout scores all above the forget ones: their AUC 1, ours 0
    assert ou["forget_verbmem_ROUGE"]["agg_value"] == 0.4 and ou["mia_min_k"]["agg_value"] == 1.0
    write_ou_eval(tmp_path, "muse", ou)
    cfg = {"privleak_attack": "min_k"}
    aucs, note = muse_eval.retain_logs_reference(str(tmp_path), cfg)
    assert aucs == {"min_k": 0.0} and "MUSE_EVAL.json" not in note
    with pytest.raises(ValueError, match="no 'zlib' AUC"):
        muse_eval.retain_logs_reference(str(tmp_path / "MUSE_EVAL.json"), {"privleak_attack": "zlib"})


def _muse_logs(forget, holdout):
    scores = {"loss": forget, "zlib": forget, "min_k": forget, "min_k_plus_plus": forget}
    held = {a: holdout for a in scores}
    return {"knowmem_forget": {"rougeL_f1": {"0": 0.5, "1": 0.25}},
            "privleak": {g: {**(scores if g == "forget" else held)} for g in ("forget", "holdout", "retain")}}


def test_muse_summary_in_open_unlearning_convention():
    """Fractions instead of x100, AUC = 1 - MUSE's, PrivLeak with its guard, 0.5 without retain logs."""
    logs = _muse_logs({"0": 1.0, "1": 2.0, "2": 3.0}, {"0": 2.5, "1": 4.0, "2": 5.0})
    # MUSE orientation by hand: P(holdout score < forget score) + ties/2 over 9 pairs: only (2.5 < 3.0)
    auc_muse = 1 / 9
    base = {"privleak_attack": "min_k"}
    muse = muse_eval.summarize(logs, {"min_k": 0.5}, base)
    assert muse["knowmem_f"] == pytest.approx(37.5) and muse["mia_auc"] == pytest.approx(auc_muse)
    assert muse["privleak"] == pytest.approx((auc_muse - 0.5) / 0.5 * 100)
    ou = muse_eval.summarize(logs, None, {**base, "compat": "open_unlearning"})
    assert ou["knowmem_f"] == pytest.approx(0.375) and ou["mia_auc"] == pytest.approx(1 - auc_muse)
    assert ou["privleak"] == pytest.approx((auc_muse - 0.5) / (0.5 + 1e-10) * 100, rel=1e-12)
    assert ou["privleak_reference_auc"] == 0.5
    measured = muse_eval.summarize(logs, {"min_k": 0.4}, {**base, "compat": "open_unlearning"})
    assert measured["privleak"] == pytest.approx((auc_muse - 0.4) / (0.4 + 1e-10) * 100, rel=1e-12)
    assert muse_eval.privleak_reference(None, {**base, "privleak_reference": "retrain", "compat": "open_unlearning"},
                                        "news")[0] is None


def test_tofu_ratios_with_open_unlearning_guards():
    """Strong unlearning: p_base = exp(-30) ~ 1e-13 << 1e-10, where the +1e-10 moves the numbers."""
    base, pert = np.array([30.0, 1.0]), np.array([[2.0, 2.0], [1.0, 3.0]])
    geo = tm.truth_ratio(base, pert)
    ou = tm.truth_ratio(base, pert, "open_unlearning")
    assert geo[0] == pytest.approx(math.exp(28.0)) and ou[0] == pytest.approx(math.exp(-2.0) / (math.exp(-30.0) + 1e-10))
    assert ou[1] == pytest.approx(geo[1], rel=1e-9)
    assert tm.truth_ratio_stat(ou, "forget", 1e-10) == pytest.approx(
        np.mean([min(ou[0], 1 / (ou[0] + 1e-10)), min(ou[1], 1 / (ou[1] + 1e-10))]))
    mean, per = tm.normalized_probability([40.0], [[39.0, 41.0]], eps=1e-10)
    p = np.exp(-np.array([40.0, 39.0, 41.0]))
    assert per[0] == pytest.approx(p[0] / (p.sum() + 1e-10)) and per[0] < p[0] / p.sum() / 100


def test_tofu_summary_privleak_and_orientation():
    logs = _tofu_logs()
    for t in ("retain", "ra", "wf"):
        for k in ("rougeL_recall", "generated_text"):
            logs[t].pop(k)
    logs["forget"].pop("rougeL_recall")
    logs["forget"].pop("generated_text")
    for a in ("loss", "zlib", "min_k_plus_plus"):
        logs["forget"][f"mia_{a}"], logs["forget"][f"mia_holdout_{a}"] = logs["forget"]["mia_min_k"], logs["forget"]["mia_holdout_min_k"]
    # forget {2, 3} vs holdout {4, 1}: MUSE's AUC = P(holdout < forget) = 2/4
    ours = summarize(logs, logs["forget"], {"truth_ratio": "geometric"})
    assert ours["mia_auc_min_k"] == 0.5 and ours["privleak"] == 0.0  # against itself
    ou = summarize(logs, None, {"truth_ratio": "open_unlearning", "compat": "open_unlearning"})
    assert ou["mia_auc_min_k"] == 0.5 and ou["privleak"] == pytest.approx(0.0)  # fallback ref 0.5
    theirs = _ou_file({"0": 1.0, "1": 2.0}, mia_min_k={"agg_value": 0.8})
    ou = summarize(logs, theirs, {"truth_ratio": "open_unlearning", "compat": "open_unlearning"})
    assert ou["privleak"] == pytest.approx((0.5 - 0.2) / (0.2 + 1e-10) * 100) and "forget_quality" in ou


def test_apply_compat_sets_open_unlearnings_settings(debug_cfg):
    cfg = apply_compat(debug_cfg("eval.compat=open_unlearning"))
    for key, value in OU_SETTINGS["tofu"].items():
        node = cfg.eval
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    default = debug_cfg()
    assert apply_compat(default) is default
    muse = apply_compat(debug_cfg("dataset=muse_synth", "eval=muse", "eval.compat=open_unlearning"))
    assert muse.eval.rouge == "ou" and muse.eval.mia.max_length == 2049 and muse.eval.mia.min_k_variant == "ou"


def test_a_config_composed_outside_run_evaluates_as_run_does(shared_cache, tmp_path):
    """A notebook's config with eval.compat=open_unlearning, never passed through apply_compat, gives
    the applied config's numbers (not open-unlearning's masks with TOFU's generation settings)."""
    from hydra import compose, initialize_config_dir

    from unlearn.benchmarks import get_benchmark
    from unlearn.config import CONFIG_DIR, compose_config
    from unlearn.stages import StageCache

    overrides = ["debug=tiny", f"paths.root={tmp_path}", f"paths.cache={shared_cache}", "eval.compat=open_unlearning"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=overrides)  # Hydra's own compose: nothing applied
    applied = apply_compat(raw)
    assert raw.eval.generation.mode != applied.eval.generation.mode  # TOFU's generation, OU's masks (is_ou)
    bench = get_benchmark("tofu")
    prepared = bench.prepare(applied, StageCache(shared_cache))
    model = prepared.load("target")
    ours, theirs = (bench.evaluate(model, prepared, c) for c in (raw, applied))
    assert ours == theirs
    reference = theirs["forget"]  # the target against itself: any reference serves
    assert bench.summarize(ours, reference, raw) == bench.summarize(theirs, reference, applied)
    assert bench.eval_spec(raw) == bench.eval_spec(applied)  # the same cached reference evaluations
    assert compose_config(overrides) == applied  # the composer notebooks use shows what evaluates


def test_unknown_compat_fails_before_any_work(debug_cfg, tmp_path):
    rec = run(debug_cfg("eval.compat=ou"), run_dir=tmp_path / "bad")
    assert rec["status"] == "failed" and "stages" not in rec
    assert rec["error"]["message"] == "unknown eval.compat 'ou' for tofu; valid: tofu, open_unlearning"


def test_run_writes_open_unlearning_files_that_serve_as_retain_logs(debug_cfg, shared_cache, tmp_path):
    cfg = lambda *o: debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=1", *o)  # noqa: E731
    first = run(cfg("eval.ou_logs=true"), run_dir=tmp_path / "a")
    assert first["status"] == "ok" and first["ou_logs"] == OU_LOGS
    for model in ("target", "retain", "unlearned"):
        ou = load_ou_eval(tmp_path / "a" / OU_LOGS / model)
        summary = first["metrics"][model]["summary"]
        assert ou["model_utility"]["agg_value"] == pytest.approx(summary["model_utility"])
        assert ou["forget_Q_A_Prob"]["agg_value"] == pytest.approx(summary["forget_prob"])
        assert len(ou["forget_truth_ratio"]["value_by_index"]) == summary["n_items"]["forget"]
    second = run(cfg(f"eval.retain_logs={tmp_path / 'a' / OU_LOGS / 'retain' / 'TOFU_EVAL.json'}"), run_dir=tmp_path / "b")
    assert second["status"] == "ok", second.get("error")
    for model in ("target", "unlearned"):
        assert second["metrics"][model]["summary"]["forget_quality"] == pytest.approx(
            first["metrics"][model]["summary"]["forget_quality"], rel=1e-9)


def test_tofu_mia_skipped_when_an_answer_keeps_too_few_tokens():
    from eval.likelihood import Scores
    from eval.tofu.evaluate import _mia_scores

    arr = lambda *v: np.array(v, dtype=np.float64)  # noqa: E731
    s = Scores(arr(6.0, 3.0, 0.0), np.array([3, 3, 0]), logp=[arr(-1, -2, -3), arr(-1, -1, -1), arr()],
               correct=[arr(1, 0, 1)] * 2 + [arr()], mu=[arr(-1, -1, -1)] * 2 + [arr()],
               sigma=[arr(1, 1, 1)] * 2 + [arr()])
    texts = ["a b c", "d e f", ""]
    ok = _mia_scores(s, texts, [0], [1], {})
    assert set(ok) == {f"mia_{g}{a}" for g in ("", "holdout_") for a in ("loss", "zlib", "min_k", "min_k_plus_plus")}
    assert ok["mia_loss"] == {"0": 2.0}
    assert _mia_scores(s, texts, [0], [2], {}) == {}  # the holdout answer was truncated away


@pytest.mark.parametrize("compat, expected", [("tofu", None), ("open_unlearning", True)])
def test_generations_decode_as_each_reference_does(debug_cfg, shared_cache, tmp_path, monkeypatch, compat, expected):
    """TOFU decodes with the tokenizer's own clean-up setting; open-unlearning passes True."""
    import eval.tofu.evaluate as te

    seen, real = [], te.greedy_generate

    def spy(*a, **k):
        seen.append(k.get("clean_up"))
        return real(*a, **k)

    monkeypatch.setattr(te, "greedy_generate", spy)
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "method.max_steps=1", f"eval.compat={compat}"),
              run_dir=tmp_path / compat)
    assert rec["status"] == "ok", rec.get("error")
    assert seen and all(v is expected for v in seen)
