"""Tests for eval.tofu.metrics and eval.tofu.logs.

Three layers:
1. each metric against numbers worked out by hand in the test;
2. forget quality / ROUGE against scipy / rouge-score called directly;
3. the real TOFU per-sample logs in ../shared/reference/tofu_eval_logs (skipped when
   absent, e.g. in a user's clone), checked against an independent loop implementation
   written here from METRICS.md, against the stored per-item fields, and against the
   public sanity anchors of METRICS.md §1.9.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer
from scipy import stats

from eval.tofu import logs as tl
from eval.per_item import log_array
from eval.rouge import rouge_l, rouge_l_batch
from eval.tofu import metrics as tm

LOG_ROOT = Path(__file__).resolve().parents[2] / "shared/reference/tofu_eval_logs"
RUNS = {
    ("llama", "full"): "ft_epoch5_lr1e-05_llama2-7b_full_wd0.01",
    ("llama", "retain90"): "ft_epoch5_lr1e-05_llama2-7b_retain90_wd0.01",
    ("phi", "full"): "ft_epoch5_lr2e-05_phi_full_wd0.01",
    ("phi", "retain90"): "ft_epoch5_lr2e-05_phi_retain90_wd0.01",
}
needs_logs = pytest.mark.skipif(not LOG_ROOT.is_dir(), reason=f"TOFU reference logs absent ({LOG_ROOT})")

E = math.e


# ========================================================================================
# 1. hand-computed values
# ========================================================================================
def test_probability_by_hand():
    # exp(-0.5) = 0.6065306597, exp(-1) = 0.3678794412 -> mean 0.4872050504
    assert tm.probability([0.5, 1.0]) == pytest.approx((0.6065306597 + 0.3678794412) / 2, abs=1e-10)
    assert tm.probability([0.5, 1.0]) == pytest.approx(0.4872050504, abs=1e-10)
    assert tm.probability([0.0]) == 1.0
    assert tm.probability([np.inf]) == 0.0  # exp(-inf) = 0 is a legitimate value


def test_normalized_probability_by_hand():
    ln2, ln4 = math.log(2), math.log(4)
    gt = [ln2, 0.0]  # p = 0.5, 1
    pert = [[ln4, ln4], [ln2, ln4]]  # p_k = (0.25, 0.25), (0.5, 0.25)
    # item 0: 0.5 / (0.5 + 0.25 + 0.25) = 0.5; item 1: 1 / (1 + 0.5 + 0.25) = 0.5714285714
    mean, per_item = tm.normalized_probability(gt, pert)
    np.testing.assert_allclose(per_item, [0.5, 1 / 1.75], rtol=1e-12)
    assert mean == pytest.approx((0.5 + 0.5714285714) / 2, abs=1e-10)  # 0.5357142857
    # length-normalised: multiplying all losses by a token count is NOT what TOFU does, so
    # equal per-token losses give equal weights whatever the answer lengths.
    m3, _ = tm.normalized_probability([1.0], [[1.0, 1.0, 1.0]])
    assert m3 == pytest.approx(0.25)


def test_truth_ratio_geometric_vs_arithmetic_by_hand():
    base = [1.0]
    pert = [[0.0, 2.0]]
    # geometric: exp(L_base - mean_k L_k) = exp(1 - 1) = 1
    assert tm.truth_ratio(base, pert, "geometric")[0] == pytest.approx(1.0, abs=1e-15)
    # arithmetic: mean(exp(-0), exp(-2)) / exp(-1) = (1 + 0.1353352832)/2 / 0.3678794412
    #           = 0.5676676416 / 0.3678794412 = 1.5430806348 (= cosh 1)
    arith = tm.truth_ratio(base, pert, "arithmetic")[0]
    assert arith == pytest.approx(0.5676676416 / 0.3678794412, rel=1e-9)
    assert arith == pytest.approx(math.cosh(1.0), rel=1e-12)
    # ...and the two aggregated stats differ materially:
    # utility: max(0, 1-1) = 0 vs max(0, 1-1.543) = 0 (same here); forget: min(1, 1) = 1 vs
    # min(1.5430806348, 1/1.5430806348) = 0.6480542737
    assert tm.truth_ratio_stat([1.0], "forget") == 1.0
    assert tm.truth_ratio_stat([arith], "forget") == pytest.approx(0.6480542737, rel=1e-9)
    # second case where the utility stat differs: base 0.5, pert (0, 3)
    # geo: exp(0.5 - 1.5) = exp(-1) = 0.3678794412 -> 1-R = 0.6321205588
    # arith: (1 + exp(-3))/2 / exp(-0.5) = (1 + 0.0497870684)/2 / 0.6065306597
    #        = 0.5248935342 / 0.6065306597 = 0.8654031347 -> 1-R = 0.1345968653
    r_geo = tm.truth_ratio([0.5], [[0.0, 3.0]], "geometric")
    r_ari = tm.truth_ratio([0.5], [[0.0, 3.0]], "arithmetic")
    assert r_geo[0] == pytest.approx(0.3678794412, rel=1e-9)
    assert r_ari[0] == pytest.approx(1.0497870684 / 2 / 0.6065306597, rel=1e-9)
    assert tm.truth_ratio_stat(r_geo, "utility") == pytest.approx(0.6321205588, rel=1e-9)
    assert tm.truth_ratio_stat(r_ari, "utility") == pytest.approx(0.1345968653, rel=1e-8)


def test_truth_ratio_direction_and_am_gm():
    # A model that knows the answer (low base loss, high perturbed loss) has R < 1.
    assert tm.truth_ratio([0.1], [[3.0, 4.0, 5.0]])[0] < 1
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 3, 50)
    pert = rng.uniform(0, 5, (50, 5))
    geo = tm.truth_ratio(base, pert, "geometric")
    ari = tm.truth_ratio(base, pert, "arithmetic")
    assert np.all(ari >= geo * (1 - 1e-12))  # AM >= GM
    # K = 1: the two variants coincide
    np.testing.assert_allclose(tm.truth_ratio(base, pert[:, :1], "geometric"),
                               tm.truth_ratio(base, pert[:, :1], "arithmetic"), rtol=1e-12)


def test_truth_ratio_unknown_variant():
    with pytest.raises(ValueError, match="geometric.*arithmetic"):
        tm.truth_ratio([1.0], [[1.0]], "harmonic")


def test_truth_ratio_stat_by_hand():
    R = [0.5, 2.0, 1.0, 0.25]
    # forget: min(R, 1/R) = 0.5, 0.5, 1, 0.25 -> 2.25/4 = 0.5625
    assert tm.truth_ratio_stat(R, "forget") == pytest.approx(0.5625, abs=1e-15)
    # utility: max(0, 1-R) = 0.5, 0, 0, 0.75 -> 1.25/4 = 0.3125
    assert tm.truth_ratio_stat(R, "utility") == pytest.approx(0.3125, abs=1e-15)
    # NOT the stat of the averaged R: mean R = 0.9375 -> 1 - 0.9375 = 0.0625 != 0.3125
    assert tm.truth_ratio_stat([np.mean(R)], "utility") == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="forget.*utility"):
        tm.truth_ratio_stat(R, "retain")


def _mu_values(vals):
    return dict(zip(tm.MODEL_UTILITY_KEYS, vals))


def test_model_utility_by_hand():
    assert tm.MODEL_UTILITY_KEYS == (
        "retain_prob", "retain_rouge", "retain_truth_ratio",
        "ra_prob", "ra_rouge", "ra_truth_ratio",
        "wf_prob", "wf_rouge", "wf_truth_ratio",
    )
    assert tm.model_utility(_mu_values([0.5] * 9)) == pytest.approx(0.5)
    # 1/x sums: 3*1 + 3*2 + 3*4 = 21 -> hmean = 9/21 = 0.4285714286
    vals = [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert tm.model_utility(_mu_values(vals)) == pytest.approx(9 / 21, rel=1e-12)
    assert tm.model_utility(_mu_values(vals)) == pytest.approx(0.4285714286, abs=1e-10)
    # extra keys (forget_*) are ignored
    assert tm.model_utility({**_mu_values(vals), "forget_prob": 1e-9}) == pytest.approx(9 / 21)


def test_model_utility_zero_and_errors():
    vals = [0.5] * 9
    vals[4] = 0.0
    assert tm.model_utility(_mu_values(vals)) == 0.0  # hmean semantics
    assert stats.hmean(vals) == 0.0  # ...which is scipy's too
    d = _mu_values([0.5] * 9)
    del d["wf_rouge"]
    with pytest.raises(ValueError, match="wf_rouge"):
        tm.model_utility(d)
    with pytest.raises(ValueError, match="ra_prob"):
        tm.model_utility({**_mu_values([0.5] * 9), "ra_prob": -0.1})
    with pytest.raises(ValueError, match="retain_prob"):
        tm.model_utility({**_mu_values([0.5] * 9), "retain_prob": float("nan")})


def test_input_errors():
    with pytest.raises(ValueError, match="empty"):
        tm.probability([])
    with pytest.raises(ValueError, match="NaN"):
        tm.probability([0.1, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        tm.normalized_probability([0.1, 0.2], [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="1-D"):
        tm.truth_ratio_stat([[0.5]], "forget")


# ========================================================================================
# 2. forget quality and ROUGE against the libraries
# ========================================================================================
@pytest.mark.parametrize("n", [40, 200, 300])
def test_forget_quality_is_exact_ks(n):
    rng = np.random.default_rng(n)
    a = rng.lognormal(-0.7, 0.6, n)
    b = rng.lognormal(-0.4, 0.5, n)
    p, d = tm.forget_quality(a, b)
    ref = stats.ks_2samp(a, b, method="exact")
    assert p == ref.pvalue
    assert d == ref.statistic
    # the reference's default method='auto' is exact at these sizes
    assert p == stats.ks_2samp(a, b).pvalue
    # KS is invariant under the monotone map R -> 1/R applied to both samples
    p_inv, d_inv = tm.forget_quality(1 / a, 1 / b)
    assert p_inv == pytest.approx(p, rel=1e-12)
    assert d_inv == pytest.approx(d, rel=1e-12)


def test_forget_quality_identical_samples_is_one():
    a = np.linspace(0.1, 2.0, 300)
    assert tm.forget_quality(a, a) == (1.0, 0.0)


def test_forget_quality_asymptotic_differs_when_separated():
    # Strongly separated 300/300: D = 121/300, p ~ 1e-22. The asymptotic formula is off by
    # more than 2x here, which is why the exact distribution is required (METRICS.md §1.6).
    a = np.arange(300) / 300.0
    b = a + 0.4
    p, d = tm.forget_quality(a, b)
    assert d == pytest.approx(121 / 300)
    assert 1e-23 < p < 1e-20
    p_asymp = stats.ks_2samp(a, b, method="asymp").pvalue
    assert p / p_asymp > 2.0


def test_forget_quality_errors():
    with pytest.raises(ValueError, match="empty"):
        tm.forget_quality([], [0.5])
    with pytest.raises(ValueError, match="empty"):
        tm.forget_quality([0.5], [])
    with pytest.raises(ValueError, match="NaN"):
        tm.forget_quality([0.5, float("nan")], [0.5, 0.6])


ROUGE_PAIRS = [
    ("The cat sat on the mat.", "the cat is on a mat"),
    ("Hsiao Yun-Hwa's first book, 'Leading Lights', won awards!", "Yun Hwa wrote Leading-Lights; it won an award."),
    ("He was running with dogs", "he runs with the dog"),
    ("Paris", "The Eiffel Tower is located in Paris, France."),
    ("Café Müller — naïve résumé", "cafe muller naive resume"),
    ("", "something"),
    ("something", ""),
    ("!!!", "???"),
]


@pytest.mark.parametrize("stemmer", [True, False])
@pytest.mark.parametrize("gt,gen", ROUGE_PAIRS)
def test_rouge_l_matches_rouge_score(gt, gen, stemmer):
    score = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=stemmer).score(gt, gen)["rougeL"]
    assert rouge_l(gt, gen, stemmer=stemmer) == score.recall
    assert rouge_l(gt, gen, kind="precision", stemmer=stemmer) == score.precision
    assert rouge_l(gt, gen, kind="f1", stemmer=stemmer) == score.fmeasure


def test_rouge_l_by_hand():
    # tokens: gt [the cat sat on the mat] (6), gen [cat on mat] (3); LCS = 3
    gt, gen = "The cat sat on the mat.", "cat on mat"
    assert rouge_l(gt, gen) == pytest.approx(3 / 6)
    assert rouge_l(gt, gen, kind="precision") == pytest.approx(3 / 3)
    assert rouge_l(gt, gen, kind="f1") == pytest.approx(2 * 0.5 * 1 / 1.5)  # 0.6667
    # stemming (Porter on tokens > 3 chars): running->run, dogs->dog
    assert rouge_l("running dogs", "run dog", stemmer=True) == 1.0
    assert rouge_l("running dogs", "run dog", stemmer=False) == 0.0
    # punctuation and case are separators / ignored: "yun hwa s book"
    assert rouge_l("Yun-Hwa's book!", "yun hwa s BOOK") == 1.0
    # target first: recall is over the ground-truth tokens
    assert rouge_l("Paris", "The Eiffel Tower is located in Paris, France.") == 1.0
    assert rouge_l("", "x") == 0.0 and rouge_l("x", "") == 0.0
    with pytest.raises(ValueError, match="recall"):
        rouge_l("a", "a", kind="rougeL")
    with pytest.raises(TypeError):
        rouge_l(None, "a")


def test_rouge_l_batch():
    gts = [g for g, _ in ROUGE_PAIRS]
    gens = [p for _, p in ROUGE_PAIRS]
    out = rouge_l_batch(gts, gens, kind="f1", stemmer=False)
    assert out.dtype == np.float64 and out.shape == (len(ROUGE_PAIRS),)
    np.testing.assert_array_equal(out, [rouge_l(g, p, kind="f1", stemmer=False) for g, p in ROUGE_PAIRS])
    with pytest.raises(ValueError, match="2 references vs 1"):
        rouge_l_batch(["a", "b"], ["a"])


# ========================================================================================
# log loading (synthetic files)
# ========================================================================================
def _tiny_log(n=3, K=2, base=1.0, seed=0):
    rng = np.random.default_rng(seed)
    log = {
        "avg_gt_loss": {str(i): float(rng.uniform(0, 1)) for i in range(n)},
        "average_perturb_loss": {str(i): rng.uniform(0.5, 3, K).tolist() for i in range(n)},
        "avg_paraphrased_loss": {str(i): float(base + rng.uniform(0, 1)) for i in range(n)},
        "rougeL_recall": {str(i): float(rng.uniform(0, 1)) for i in range(n)},
    }
    return log


def _write_run(folder: Path, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    logs = {}
    for j, (task, fname) in enumerate(tl.TASK_FILES.items()):
        logs[fname] = _tiny_log(n=4, K=5 if task in ("retain", "forget") else 3, seed=seed + j)
        (folder / fname).write_text(json.dumps(logs[fname]))
    return logs


def test_load_tofu_log_missing_key_names_file_and_key(tmp_path):
    log = _tiny_log()
    del log["avg_paraphrased_loss"]
    p = tmp_path / "eval_log.json"
    p.write_text(json.dumps(log))
    with pytest.raises(ValueError) as e:
        tl.load_tofu_log(p)
    assert "eval_log.json" in str(e.value) and "avg_paraphrased_loss" in str(e.value)


def test_load_tofu_log_index_checks(tmp_path):
    log = _tiny_log(n=3)
    del log["rougeL_recall"]["2"]
    p = tmp_path / "eval_x.json"
    p.write_text(json.dumps(log))
    with pytest.raises(ValueError, match="rougeL_recall.*differ"):
        tl.load_tofu_log(p)
    log = _tiny_log(n=3)
    log["average_perturb_loss"]["1"] = [1.0]
    p.write_text(json.dumps(log))
    with pytest.raises(ValueError, match="average_perturb_loss"):
        tl.load_tofu_log(p)


def test_load_tofu_log_orders_by_integer_index(tmp_path):
    log = _tiny_log(n=12)
    shuffled = {k: {i: v[i] for i in sorted(v, key=str)} for k, v in log.items()}  # "0","1","10","11","2",..
    p = tmp_path / "eval_log.json"
    p.write_text(json.dumps(shuffled))
    loaded = tl.load_tofu_log(p)
    assert list(loaded["avg_gt_loss"]) == [str(i) for i in range(12)]
    np.testing.assert_array_equal(log_array(loaded, "avg_gt_loss"),
                                  [log["avg_gt_loss"][str(i)] for i in range(12)])


def test_load_tofu_run_files_and_aggregated(tmp_path):
    logs = _write_run(tmp_path / "run")
    run = tl.load_tofu_run(tmp_path / "run")
    assert set(run) == {"retain", "forget", "ra", "wf"}
    agg_dir = tmp_path / "agg"
    agg_dir.mkdir()
    (agg_dir / tl.AGGREGATED_FILE).write_text(json.dumps(logs))
    assert tl.load_tofu_run(agg_dir) == run
    assert tl.load_tofu_run(agg_dir / tl.AGGREGATED_FILE) == run
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="eval_log_forget.json"):
        tl.load_tofu_run(tmp_path / "empty")
    del logs["eval_real_world_wo_options.json"]
    (agg_dir / tl.AGGREGATED_FILE).write_text(json.dumps(logs))
    with pytest.raises(ValueError, match="eval_real_world_wo_options.json"):
        tl.load_tofu_run(agg_dir)
    assert set(tl.load_tofu_run(agg_dir, tasks=("forget",))) == {"forget"}


def test_aggregate_tofu_run_synthetic(tmp_path):
    logs = _write_run(tmp_path / "model", seed=0)
    retain_logs = _write_run(tmp_path / "retain", seed=10)
    out = tl.aggregate_tofu_run(tmp_path / "model", tmp_path / "retain")
    ra = logs["eval_real_author_wo_options.json"]
    n = len(ra["avg_gt_loss"])
    # RA prob by hand: p/(p + sum_k p_k) per item with avg_gt_loss (answer loader)
    manual = statistics.fmean(
        math.exp(-ra["avg_gt_loss"][i]) / (math.exp(-ra["avg_gt_loss"][i])
                                           + sum(math.exp(-x) for x in ra["average_perturb_loss"][i]))
        for i in map(str, range(n)))
    assert out["ra_prob"] == pytest.approx(manual, rel=1e-12)
    fq = stats.ks_2samp(tl.per_item_truth_ratios(tl.validate_tofu_log(logs["eval_log_forget.json"])),
                        tl.per_item_truth_ratios(tl.validate_tofu_log(retain_logs["eval_log_forget.json"])))
    assert out["forget_quality"] == fq.pvalue and out["ks_statistic"] == fq.statistic
    # same result from dicts keyed by file name, by task name, or a bare forget log
    same = tl.aggregate_tofu_run(logs, retain_logs["eval_log_forget.json"])
    assert same == out
    # FQ ignores tr_variant (always geometric, as both TOFU copies)
    ari = tl.aggregate_tofu_run(logs, retain_logs, tr_variant="arithmetic")
    assert ari["forget_quality"] == out["forget_quality"]
    assert ari["retain_prob"] == out["retain_prob"] and ari["retain_truth_ratio"] != out["retain_truth_ratio"]
    assert "forget_quality" not in tl.aggregate_tofu_run(logs)
    with pytest.raises(ValueError, match="geometric"):
        tl.aggregate_tofu_run(logs, tr_variant="paper")
    with pytest.raises(ValueError, match="ra"):
        tl.aggregate_tofu_run({k: v for k, v in logs.items() if "real_author" not in k})
    short = _tiny_log(n=2)
    with pytest.raises(ValueError, match="same forget split"):
        tl.aggregate_tofu_run(logs, short)


# ========================================================================================
# 3. real TOFU logs
# ========================================================================================
def _raw(run: str, fname: str) -> dict:
    with open(LOG_ROOT / run / fname) as f:
        return json.load(f)


def _independent_aggregate(run: str, variant: str = "geometric") -> dict:
    """Straightforward loop implementation written from METRICS.md §1.3-1.7."""
    names = {"retain": "eval_log.json", "ra": "eval_real_author_wo_options.json",
             "wf": "eval_real_world_wo_options.json", "forget": "eval_log_forget.json"}
    out = {}
    for task, fname in names.items():
        d = _raw(run, fname)
        idx = list(d["avg_gt_loss"])
        probs, trs = [], []
        for i in idx:
            p = math.exp(-d["avg_gt_loss"][i])
            pk = [math.exp(-x) for x in d["average_perturb_loss"][i]]
            probs.append(p if task in ("retain", "forget") else p / (p + sum(pk)))
            base = d["avg_paraphrased_loss"][i]
            if variant == "geometric":
                r = math.exp(base - sum(d["average_perturb_loss"][i]) / len(pk))
            else:
                r = (sum(pk) / len(pk)) / math.exp(-base)
            trs.append(min(r, 1 / r) if task == "forget" else max(0.0, 1 - r))
        out[f"{task}_prob"] = sum(probs) / len(probs)
        out[f"{task}_rouge"] = sum(d["rougeL_recall"][i] for i in idx) / len(idx)
        out[f"{task}_truth_ratio"] = sum(trs) / len(trs)
    out["model_utility"] = float(stats.hmean([out[f"{t}_{m}"] for t in ("retain", "ra", "wf")
                                              for m in ("prob", "rouge", "truth_ratio")]))
    return out


def _independent_fq(run: str, retain_run: str):
    """TOFU aggregate_eval_stat.py L10-26: ks_2samp (method 'auto') on curr = 1/R."""
    def curr(r):
        d = _raw(r, "eval_log_forget.json")
        return [math.exp(sum(d["average_perturb_loss"][i]) / len(d["average_perturb_loss"][i])
                         - d["avg_paraphrased_loss"][i]) for i in d["avg_paraphrased_loss"]]
    res = stats.ks_2samp(curr(run), curr(retain_run))
    return res.pvalue, res.statistic


@pytest.fixture(scope="module")
def real_runs():
    return {key: tl.load_tofu_run(LOG_ROOT / run) for key, run in RUNS.items()}


@needs_logs
@pytest.mark.parametrize("variant", ["geometric", "arithmetic"])
@pytest.mark.parametrize("key", list(RUNS))
def test_real_aggregate_matches_independent(real_runs, key, variant):
    model = key[0]
    out = tl.aggregate_tofu_run(real_runs[key], real_runs[(model, "retain90")], tr_variant=variant)
    ref = _independent_aggregate(RUNS[key], variant)
    for k, v in ref.items():
        assert out[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    p, d = _independent_fq(RUNS[key], RUNS[(model, "retain90")])
    assert out["forget_quality"] == pytest.approx(p, rel=1e-9)
    assert out["ks_statistic"] == pytest.approx(d, rel=1e-12)


@needs_logs
def test_real_sanity_anchors(real_runs):
    res = {(k, v): tl.aggregate_tofu_run(real_runs[k], real_runs[(k[0], "retain90")], tr_variant=v)
           for k in RUNS for v in ("geometric", "arithmetic")}
    llama_full = res[(("llama", "full"), "geometric")]
    # METRICS.md §1.9: finetuned Llama-2 MU ~0.63 (OU, geometric), forget TR ~0.52
    assert 0.60 < llama_full["model_utility"] < 0.65
    assert 0.48 < llama_full["forget_truth_ratio"] < 0.56
    # arithmetic utils.py variant ~0.04 lower
    for k in RUNS:
        drop = res[(k, "geometric")]["model_utility"] - res[(k, "arithmetic")]["model_utility"]
        assert 0.01 < drop < 0.06, (k, drop)
        assert 0.4 < res[(k, "geometric")]["model_utility"] < 0.7
    # FQ of the finetuned target vs its retain model is tiny (OU: 4.35e-25 with 400 items;
    # TOFU scores 300, so larger), and the retain model against itself is exactly 1.
    for model in ("llama", "phi"):
        full = res[((model, "full"), "geometric")]
        assert full["forget_quality"] < 1e-12
        assert full["ks_statistic"] > 0.3
        own = res[((model, "retain90"), "geometric")]
        assert own["forget_quality"] == 1.0 and own["ks_statistic"] == 0.0
        # full model memorised the forget set, retain model did not
        assert full["forget_prob"] > 0.9 > 0.2 > own["forget_prob"]
    assert 1e-22 < llama_full["forget_quality"] < 1e-20


@needs_logs
def test_real_fq_exact_vs_asymptotic(real_runs):
    a = tl.per_item_truth_ratios(real_runs[("llama", "full")]["forget"])
    b = tl.per_item_truth_ratios(real_runs[("llama", "retain90")]["forget"])
    p, _ = tm.forget_quality(a, b)
    assert p == pytest.approx(tm.forget_quality(1 / a, 1 / b)[0], rel=1e-12)
    assert p / stats.ks_2samp(a, b, method="asymp").pvalue > 1.5


@needs_logs
def test_real_rouge_recomputed_from_generated_text(real_runs):
    n = 0
    for key, run in real_runs.items():
        for task, log in run.items():
            gen = log["generated_text"]
            gts = [gen[i][2] for i in gen]
            outs = [gen[i][1] for i in gen]
            ours = rouge_l_batch(gts, outs)
            stored = log_array(log, "rougeL_recall")
            assert np.max(np.abs(ours - stored)) <= 1e-9, (key, task)
            n += len(ours)
    assert n == 4 * (300 + 300 + 100 + 117)


@needs_logs
def test_real_per_item_fields(real_runs):
    for key, run in real_runs.items():
        for task, log in run.items():
            R = tl.per_item_truth_ratios(log, "geometric")
            np.testing.assert_allclose(R, log_array(log, "truth_ratio"), rtol=1e-5, err_msg=str((key, task)))
            if task in ("ra", "wf"):
                # stored normalized_gt_loss = -log(p/(p+sum p_k)) uses avg_gt_loss...
                _, per_item = tm.normalized_probability(log_array(log, "avg_gt_loss"),
                                                        log_array(log, "average_perturb_loss"))
                np.testing.assert_allclose(-np.log(per_item), log_array(log, "normalized_gt_loss"),
                                           rtol=1e-12, atol=1e-12)


@needs_logs
def test_real_inputs_must_not_be_swapped(real_runs):
    # METRICS.md §3.2: RA/WF avg_gt_loss (batch 30) != avg_paraphrased_loss (batch 7) for llama;
    # using the base-loader loss for Prob would not reproduce the stored normalized_gt_loss.
    log = real_runs[("llama", "full")]["wf"]
    gt, para = log_array(log, "avg_gt_loss"), log_array(log, "avg_paraphrased_loss")
    assert np.max(np.abs(gt - para)) > 0.05
    _, wrong = tm.normalized_probability(para, log_array(log, "average_perturb_loss"))
    assert np.max(np.abs(-np.log(wrong) - log_array(log, "normalized_gt_loss"))) > 0.05


@needs_logs
def test_real_aggregated_only_folder(tmp_path, real_runs):
    shutil.copy(LOG_ROOT / RUNS[("phi", "full")] / tl.AGGREGATED_FILE, tmp_path / tl.AGGREGATED_FILE)
    assert tl.load_tofu_run(tmp_path) == real_runs[("phi", "full")]


def test_command_line_aggregates_tofu_logs(capsys):
    import json as _json

    full, retain = LOG_ROOT / "ft_epoch5_lr1e-05_llama2-7b_full_wd0.01", LOG_ROOT / "ft_epoch5_lr1e-05_llama2-7b_retain90_wd0.01"
    if not full.exists():
        pytest.skip("reference logs absent")
    tl.main([str(full), "--retain", str(retain)])
    out = _json.loads(capsys.readouterr().out)
    assert out["forget_quality"] == pytest.approx(tl.aggregate_tofu_run(full, retain)["forget_quality"], rel=1e-12)


def test_exact_memorization_and_extraction_strength_leave_out_the_appended_eos():
    """Hand-made logits: the model predicts every answer token but not the EOS TOFU appends (or a
    chat template ends its turn with), so open-unlearning's definitions (no EOS scored) give
    EM = ES = 1; a truncated text (no EOS) keeps every scored token."""
    import torch

    from eval.likelihood import score
    from eval.tofu.evaluate import answer_hits, exact_memorization, extraction_strength

    nxt = {5: 6, 6: 7, 7: 8, 8: 9}  # the next token the model is sure of (8 -> 9, not EOS 2)

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # scoring reads the device from it

        def forward(self, input_ids, attention_mask=None):
            logits = torch.full((*input_ids.shape, 12), -10.0)
            for b, row in enumerate(input_ids.tolist()):
                for t, tok in enumerate(row):
                    logits[b, t, nxt.get(tok, 0)] = 10.0
            return type("Out", (), {"logits": logits})()

    with_eos = {"input_ids": [1, 5, 6, 7, 8, 2], "attention_mask": [1, 1, 1, 1, 1, 0],
                "labels": [-100, -100, 6, 7, 8, 2]}  # prompt [1, 5]; answer 6 7 8, then EOS
    truncated = {"input_ids": [1, 5, 6, 7, 8], "attention_mask": [1] * 5, "labels": [-100, -100, 6, 7, 8]}
    s = score(Table(), [with_eos, truncated], 2, 0, tokens=True)
    assert [c.tolist() for c in s.correct] == [[True, True, True, False], [True, True, True]]  # EOS missed
    hits = answer_hits(s.correct, [with_eos, truncated], eos_id=2)
    assert [h.tolist() for h in hits] == [[True, True, True], [True, True, True]]
    assert exact_memorization(hits).tolist() == [1.0, 1.0]
    assert extraction_strength(hits).tolist() == [1.0, 1.0]
    in_text = {**with_eos, "attention_mask": [1] * 6}  # a chat template's own end-of-turn EOS
    assert answer_hits(s.correct[:1], [in_text], eos_id=2)[0].tolist() == [True, True, True]
    # counting the EOS (the previous rule) gave 3/4 and 1 - 3/4
    assert exact_memorization(s.correct)[0] == pytest.approx(3 / 4)
    assert extraction_strength(s.correct)[0] == pytest.approx(1 / 4)
