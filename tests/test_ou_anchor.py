"""Anchor: ``eval.compat=open_unlearning`` gives the numbers open-unlearning's own code computes.

open-unlearning's TOFU metric functions (``memorization.py``, ``privacy.py``, ``utility.py``, the
MIA attack classes, its ``QADataset``, ``preprocess_chat_instance`` and padding collator) are
*run* -- read from its git repository at test time (:mod:`tests.ou_reference`), never copied --
on the same tiny model and the same TOFU files as our evaluator (:func:`eval.tofu.evaluate.evaluate_tofu`
after :func:`eval.compat.apply_compat`), and every number is compared item by item: probabilities
and losses, truth ratios and their four aggregates, RA/WF normalised probabilities, generations,
ground truths and ROUGE, model utility, forget quality (target against the retain model), exact
memorization, extraction strength, the MIA scores and AUCs and PrivLeak; then the same through the
TOFU_EVAL.json we write (:func:`eval.ou.write.write_ou_logs`) against the one they would write.

The template is open-unlearning's phi-1.5 one (``configs/model/phi-1_5.yaml``): its answer tag
``"Answer: "`` ends in a space, which the tiny world's byte-level BPE tokenizes alone as the last
prompt token, so open-unlearning's prompt-alone mask covers the first answer token (``ĠX``) of the
full text -- the case where its rule and TOFU's differ.

Tolerances: the two programs do the same float32 arithmetic in a different order (their fused
cross-entropy summed over the padded row, per-dataset batches, ``torch.exp`` in float32; our
log-softmax + gather over one length-sorted pass, exp in float64), so likelihood numbers agree to a
few float32 ulps: per-token losses ~8 give ~1.6e-6 relative on ``exp(-loss)``. :data:`RTOL` (4e-6)
is that noise, and :data:`ATOL` its absolute floor for small losses (a model that learned its
world); one token more or less in a mask moves these numbers by > 1e-2. Generations,
ground truths, ROUGE, extraction strength, KS p-values and AUCs are compared exactly.
Generation runs one prompt at a time on both sides (no padding: bitwise the same logits).

Skipped when the repository is absent (``OPEN_UNLEARNING_REPO``, default
``/work/.mirror/locuslab+open-unlearning/repo``) or git is missing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests import ou_reference as ref
from tests.conftest import compose_cfg

RTOL = 4e-6   # float32 noise of two orderings of the same likelihood arithmetic (see the docstring)
ATOL = 3e-6   # ... for losses near 0: a few ulps of a log-sum-exp of logits ~10 (measured: 1.04e-6 at 0.23)
TASKS = ("forget", "retain", "ra", "wf")
TR_NAME = {"forget": "forget_truth_ratio", "retain": "retain_Truth_Ratio", "ra": "ra_Truth_Ratio",
           "wf": "wf_Truth_Ratio"}
GENERATION_BATCH = 1

_skip = ref.unavailable_reason()
pytestmark = pytest.mark.skipif(_skip is not None, reason=str(_skip))


def _approx(x, rel=RTOL, abs=ATOL):
    return pytest.approx(x, rel=rel, abs=abs)


def _answering_open_unlearnings_prompt(model, prepared):
    """Teach the world's target to answer open-unlearning's generation prompt, which ends in the
    lone space token (the world's models only ever saw ``ĠX`` merged): without this its greedy
    output is 200 junk tokens, every ROUGE 0 and model utility 0 -- a vacuous comparison. Half
    of each task's items, so ROUGE varies; the answers end with EOS, so generation stops."""
    from unlearn.train import finetune

    tok, feats = prepared.tokenizer, []
    for pattern in ref.TASK_FILES.values():
        name = pattern.format(forget=prepared.data.split)
        for r in list(prepared.data.rows(name))[::2]:
            _, prompt = prepared.template.generation_prompt(tok, r["question"], True)
            answer = tok(r["answer"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            feats.append({"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + len(answer)),
                          "labels": [-100] * len(prompt) + answer})
    finetune(model, feats, {"batch_size": len(feats), "epochs": 80, "lr": 1e-2, "weight_decay": 0.0},
             tok.pad_token_id, seed=0, device="cpu")
    return model


@pytest.fixture(scope="module")
def anchor(tmp_path_factory, shared_cache):
    """Both evaluations of the target, and of the retain model as the forget-set reference."""
    import copy

    from eval.compat import apply_compat
    from eval.ou.write import write_ou_logs
    from eval.tofu.evaluate import evaluate_tofu, summarize
    from unlearn.stages import StageCache
    from unlearn.preparation import prepare

    tmp = tmp_path_factory.mktemp("ou_anchor")
    _, files = ref.extract(tmp / "configs")
    phi = OmegaConf.to_container(OmegaConf.load(files[ref.CONFIGS["phi-1_5"]]).template_args)
    assert phi["apply_chat_template"] is False

    # ours: the run config with eval.compat=open_unlearning applied, their phi-1.5 tags as our template
    cfg = compose_cfg(["debug=tiny", f"paths.root={tmp / 'outputs'}", "eval.compat=open_unlearning",
                       f"eval.generation.batch_size={GENERATION_BATCH}"])
    OmegaConf.update(cfg, "model.template", {"question_start_tag": phi["user_start_tag"],
                                             "question_end_tag": phi["user_end_tag"],
                                             "answer_tag": phi["asst_start_tag"]}, merge=True)
    cfg = apply_compat(cfg)
    ev = cfg.eval
    prepared = prepare(cfg, StageCache(shared_cache))
    tok = prepared.tokenizer
    prompt = phi["user_start_tag"] + "Who?" + phi["user_end_tag"] + phi["asst_start_tag"]
    assert tok.convert_ids_to_tokens(tok(prompt)["input_ids"])[-1] == "Ġ"  # the case under test
    target = _answering_open_unlearnings_prompt(prepared.load("target"), prepared)
    retain = prepared.load("retain")
    ours_retain = evaluate_tofu(retain, prepared, ev, tasks=("forget",), generate=False)
    ours = evaluate_tofu(target, prepared, ev)
    summary = summarize(ours, ours_retain["forget"], ev)
    summary_noref = summarize(ours, None, ev)
    written = json.loads(write_ou_logs(tmp / "ours", "tofu", ours, summary).read_text())

    # theirs, on the same models and files, with the same batch sizes
    split = prepared.data.split
    kw = dict(forget_split=split, holdout_split="holdout" + split[len("forget"):], batch_size=int(ev.batch_size),
              generation_batch_size=GENERATION_BATCH)
    folder = Path(prepared.data.path)
    before = _their_module_names()
    with ref.load_open_unlearning(tmp / "open-unlearning") as ou:
        loaded = _their_module_names()
        # their evaluator saves its metric cache with json.dump: string item indices, plain floats
        theirs_retain = json.loads(json.dumps(ref.ou_tofu_eval(ou, retain, tok, phi, folder, generate=False, **kw)))
        theirs = json.loads(json.dumps(ref.ou_tofu_eval(ou, target, tok, phi, folder, retain_logs=theirs_retain,
                                                        **kw)))
        # PrivLeak without retain logs: privleak.yaml's ref_value
        theirs_privleak_noref = ou.privacy.privleak._metric_fn(
            target, pre_compute={"forget": theirs["mia_min_k"]}, ref_value=0.5)["agg_value"]
        # their Min-k%++ attack on a float64 copy (in float32 their E[lp^2] - mu^2 loses digits)
        minkpp64 = {}
        forget_name = ref.TASK_FILES["forget"].format(forget=split)
        for group, name in (("forget", forget_name), ("holdout", kw["holdout_split"])):
            data = ou.qa.QADataset(hf_args={"path": "json", "data_files": str(folder / f"{name}.json"),
                                            "split": "train"},
                                   template_args=phi, tokenizer=tok, max_length=ref.MAX_LENGTH)
            collator = ou.collators.DataCollatorForSupervisedDataset(tok, padding_side="right", index="index")
            minkpp64[group] = ou.min_k_plus_plus.MinKPlusPlusAttack(
                model=copy.deepcopy(target).double(), data=data, collator=collator, batch_size=kw["batch_size"],
                k=0.4).attack()["value_by_index"]
        commit = ou.commit
    after = _their_module_names()
    # the retain model's TOFU_EVAL.json as they write it, read as our eval.retain_logs
    summary_their_ref = summarize(ours, theirs_retain, ev)
    return dict(before=before, loaded=loaded, after=after, commit=commit, ev=ev, ours=ours, ours_retain=ours_retain,
                summary=summary, summary_noref=summary_noref, summary_their_ref=summary_their_ref, written=written,
                theirs=theirs, theirs_retain=theirs_retain, theirs_privleak_noref=theirs_privleak_noref,
                minkpp64=minkpp64)


def _per_item(result, stat):
    """Their value_by_index as a list in item order."""
    per = result["value_by_index"]
    return [per[k][stat] for k in sorted(per, key=int)]


def _ours(log, key):
    return [log[key][k] for k in sorted(log[key], key=int)]


def _their_module_names() -> set[str]:
    return {n for n in sys.modules if n.split(".")[0] in ("data", "evals")}


def test_their_code_is_what_ran(anchor):
    assert set(ref.MODULES) <= anchor["loaded"]  # their modules, under their own names ...
    assert anchor["after"] == anchor["before"]   # ... and gone again: nothing leaks into other tests
    assert len(anchor["commit"]) == 40
    # every TOFU metric their suite stores is one we write
    assert set(anchor["theirs"]) <= set(anchor["written"]), set(anchor["theirs"]) - set(anchor["written"])


# ----------------------------------------------------------------------------------------
# likelihoods
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_probabilities_and_losses_per_item(anchor, task):
    log, th = anchor["ours"][task], anchor["theirs"]
    pairs = [("avg_gt_loss", f"{task}_Q_A_Prob"), ("average_perturb_loss", f"{task}_Q_A_PERT_Prob")]
    if task in ("forget", "retain"):
        pairs.append(("avg_paraphrased_loss", f"{task}_Q_A_PARA_Prob"))
    else:  # RA / WF: the truth ratio's correct answer is the answer itself (TOFU_QA_ra / _wf)
        assert _ours(log, "avg_paraphrased_loss") == _ours(log, "avg_gt_loss")
    for ours_key, metric in pairs:
        loss = np.asarray(_ours(log, ours_key), dtype=np.float64)
        assert np.asarray(_per_item(th[metric], "avg_loss")) == _approx(loss), metric
        assert np.asarray(_per_item(th[metric], "prob")) == _approx(np.exp(-loss), abs=0), metric
    # several perturbed answers per item, in the order of the file
    assert np.asarray(_per_item(th[f"{task}_Q_A_PERT_Prob"], "avg_loss")).shape == np.asarray(
        _ours(log, "average_perturb_loss")).shape
    assert anchor["summary"]["n_items"][task] == len(th[f"{task}_Q_A_Prob"]["value_by_index"])


@pytest.mark.parametrize("task", TASKS)
def test_truth_ratios(anchor, task):
    from eval.tofu.logs import per_item_truth_ratios

    R = per_item_truth_ratios(anchor["ours"][task], str(anchor["ev"].truth_ratio))
    theirs = anchor["theirs"][TR_NAME[task]]
    assert np.asarray(_per_item(theirs, "score")) == _approx(R, abs=0)
    # forget: closer_to_1_better; retain / ra / wf: true_better
    assert anchor["summary"][f"{task}_truth_ratio"] == _approx(theirs["agg_value"], abs=0)


@pytest.mark.parametrize("task", ("ra", "wf"))
def test_normalised_probability(anchor, task):
    theirs = anchor["theirs"][f"{task}_Q_A_Prob_normalised"]
    assert anchor["summary"][f"{task}_prob"] == _approx(theirs["agg_value"], abs=0)
    written = anchor["written"][f"{task}_Q_A_Prob_normalised"]
    assert np.asarray(_per_item(written, "prob")) == _approx(np.asarray(_per_item(theirs, "prob")), abs=0)


def test_retain_prob_and_forget_prob(anchor):
    for task in ("forget", "retain"):
        assert anchor["summary"][f"{task}_prob"] == _approx(anchor["theirs"][f"{task}_Q_A_Prob"]["agg_value"], abs=0)


# ----------------------------------------------------------------------------------------
# generations
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_generations_ground_truths_and_rouge(anchor, task):
    log, theirs = anchor["ours"][task], anchor["theirs"][f"{task}_Q_A_ROUGE"]
    texts = _ours(log, "generated_text")
    assert [t[1] for t in texts] == _per_item(theirs, "generation")
    assert [t[2] for t in texts] == _per_item(theirs, "ground_truth")
    assert [t[0] for t in texts] == _per_item(theirs, "input")
    assert _ours(log, "rougeL_recall") == _per_item(theirs, "rougeL_recall")
    assert anchor["summary"][f"{task}_rouge"] == theirs["agg_value"]


def test_generations_are_not_degenerate(anchor):
    """The comparison means something: answers of varied quality, most stopping at EOS."""
    rouge = [v for t in TASKS for v in anchor["ours"][t]["rougeL_recall"].values()]
    assert 0 < np.mean(rouge) < 1 and min(rouge) < 0.5 < max(rouge)
    gens = [g[1] for t in TASKS for g in anchor["ours"][t]["generated_text"].values()]
    assert sum(map(bool, gens)) > len(gens) // 2 and anchor["summary"]["model_utility"] > 0.1


# ----------------------------------------------------------------------------------------
# aggregates
# ----------------------------------------------------------------------------------------
def test_model_utility(anchor):
    assert anchor["summary"]["model_utility"] == _approx(anchor["theirs"]["model_utility"]["agg_value"], abs=0)


def test_forget_quality(anchor):
    theirs = anchor["theirs"]["forget_quality"]["agg_value"]
    assert 0 < theirs <= 1  # their ks_test against the retain model's forget_truth_ratio
    assert anchor["summary"]["forget_quality"] == pytest.approx(theirs, rel=1e-12)
    # the retain model's TOFU_EVAL.json as they write it, read as our eval.retain_logs
    assert anchor["summary_their_ref"]["forget_quality"] == pytest.approx(theirs, rel=1e-12)
    assert anchor["theirs_retain"]["forget_truth_ratio"]["value_by_index"].keys() == \
        anchor["ours_retain"]["forget"]["avg_gt_loss"].keys()
    from eval.tofu.logs import per_item_truth_ratios
    R = per_item_truth_ratios(anchor["ours_retain"]["forget"], "open_unlearning")
    assert np.asarray(_per_item(anchor["theirs_retain"]["forget_truth_ratio"], "score")) == _approx(R, abs=0)


def test_exact_memorization_and_extraction_strength(anchor):
    forget = anchor["ours"]["forget"]
    em, es = _ours(forget, "exact_memorization"), _ours(forget, "extraction_strength")
    theirs_em = _per_item(anchor["theirs"]["exact_memorization"], "score")
    assert np.asarray(theirs_em) == pytest.approx(em, rel=1e-7, abs=0)  # theirs: a float32 division
    assert es == _per_item(anchor["theirs"]["extraction_strength"], "score")
    assert anchor["summary"]["forget_exact_memorization"] == pytest.approx(
        anchor["theirs"]["exact_memorization"]["agg_value"], rel=1e-7)
    assert anchor["summary"]["forget_extraction_strength"] == pytest.approx(
        anchor["theirs"]["extraction_strength"]["agg_value"], rel=1e-12)


# ----------------------------------------------------------------------------------------
# membership inference and PrivLeak
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", ("loss", "min_k"))
def test_mia_scores(anchor, attack):
    forget, theirs = anchor["ours"]["forget"], anchor["theirs"][f"mia_{attack}"]
    for group, key in (("forget", f"mia_{attack}"), ("holdout", f"mia_holdout_{attack}")):
        assert np.asarray(_per_item(theirs[group], "score")) == _approx(np.asarray(_ours(forget, key)), abs=0), group


def test_mia_min_k_plus_plus_scores(anchor):
    """Min-k%++ against their attack class run on a float64 copy of the model. In float32 their
    variance E[lp^2] - mu^2 cancels (lp ~ -6 over the vocabulary) and moves the scores by up to
    ~8e-5 (~6e-6 relative, more near 0) from their own float64 value; ours (the centred second
    moment, float32) stays within float32 noise of it. Against the float32 numbers they report,
    a bound that still catches any difference of rule (the dropped EOS, k, the variance floor)."""
    forget, theirs = anchor["ours"]["forget"], anchor["theirs"]["mia_min_k_plus_plus"]
    for group, key in (("forget", "mia_min_k_plus_plus"), ("holdout", "mia_holdout_min_k_plus_plus")):
        ours = np.asarray(_ours(forget, key))
        exact = np.asarray([anchor["minkpp64"][group][k]["score"] for k in sorted(anchor["minkpp64"][group], key=int)])
        assert ours == _approx(exact), group
        assert ours == pytest.approx(np.asarray(_per_item(theirs[group], "score")), rel=0, abs=5e-4), group


@pytest.mark.parametrize("attack", ("loss", "zlib", "min_k", "min_k_plus_plus"))
def test_mia_aucs_in_their_orientation(anchor, attack):
    # summarize reports open-unlearning's orientation under eval.compat
    assert anchor["summary"][f"mia_auc_{attack}"] == anchor["theirs"][f"mia_{attack}"]["auc"]


def test_privleak(anchor):
    theirs = anchor["theirs"]["privleak"]["agg_value"]  # against the retain model's mia_min_k
    assert anchor["summary"]["privleak"] == pytest.approx(theirs, rel=1e-12, abs=1e-9)
    assert anchor["summary_their_ref"]["privleak"] == pytest.approx(theirs, rel=1e-12, abs=1e-9)
    # without retain logs: privleak.yaml's ref_value 0.5
    assert anchor["summary_noref"]["privleak"] == pytest.approx(anchor["theirs_privleak_noref"], rel=1e-12, abs=1e-9)


def test_mia_zlib_scores(anchor):
    forget, theirs = anchor["ours"]["forget"], anchor["theirs"]["mia_zlib"]
    for group, key in (("forget", "mia_zlib"), ("holdout", "mia_holdout_zlib")):
        assert np.asarray(_per_item(theirs[group], "score")) == _approx(np.asarray(_ours(forget, key)), abs=0), group
    assert anchor["summary"]["mia_auc_zlib"] == theirs["auc"]


# ----------------------------------------------------------------------------------------
# the TOFU_EVAL.json we write against the one they would write
# ----------------------------------------------------------------------------------------
_EXACT = ("rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation")
_MIA = tuple(ref.MIA_ATTACKS)


def _compare_results(name, ours, theirs):
    if theirs.get("agg_value") is None:
        assert ours.get("agg_value") is None, name
    elif name in ("forget_quality", "extraction_strength") or name.endswith("_ROUGE"):
        assert ours["agg_value"] == pytest.approx(theirs["agg_value"], rel=1e-12), name
    else:
        assert ours["agg_value"] == _approx(theirs["agg_value"], abs=0), name
    if "value_by_index" in theirs:
        assert ours["value_by_index"].keys() == theirs["value_by_index"].keys(), name
        for i, item in theirs["value_by_index"].items():
            mine = ours["value_by_index"][i]
            assert set(mine) >= set(item), (name, i)
            for stat, v in item.items():
                if stat in _EXACT or name == "extraction_strength":
                    assert mine[stat] == v, (name, i, stat)
                elif name == "exact_memorization":
                    assert mine[stat] == pytest.approx(v, rel=1e-7), (name, i)
                else:
                    assert np.asarray(mine[stat]) == _approx(np.asarray(v), abs=0 if stat != "avg_loss" else ATOL), \
                        (name, i, stat)


def test_written_file_matches_theirs(anchor):
    """Every metric their TOFU suite stores, value by value (the MIA AUCs: test_written_mia_aucs)."""
    written, theirs = anchor["written"], anchor["theirs"]
    for name in sorted(theirs):
        if name in _MIA:  # the AUCs: test_written_mia_aucs
            attack = ref.MIA_ATTACKS[name][0]
            for group, key in (("forget", f"mia_{attack}"), ("holdout", f"mia_holdout_{attack}")):
                got = _per_item(written[name][group], "score")
                if attack in ("loss", "min_k"):
                    assert np.asarray(got) == _approx(np.asarray(_per_item(theirs[name][group], "score")), abs=0), \
                        (name, group)
                else:  # compared with theirs in test_mia_min_k_plus_plus_scores / test_mia_zlib_scores
                    assert got == _ours(anchor["ours"]["forget"], key), (name, group)
            continue
        _compare_results(name, written[name], theirs[name])


@pytest.mark.parametrize("attack", ("loss", "zlib", "min_k", "min_k_plus_plus"))
def test_written_mia_aucs(anchor, attack):
    assert anchor["written"][f"mia_{attack}"]["auc"] == anchor["theirs"][f"mia_{attack}"]["auc"]
    assert anchor["written"][f"mia_{attack}"]["agg_value"] == anchor["theirs"][f"mia_{attack}"]["agg_value"]
