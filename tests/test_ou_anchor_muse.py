"""Anchor: MUSE under ``eval.compat=open_unlearning`` gives the numbers open-unlearning's own code computes.

open-unlearning's MUSE metric code (``memorization.py`` ``rouge`` / ``extraction_strength``,
``utils.py`` ``eval_text_similarity`` with its stop-word criteria and cut, ``privacy.py``
``privleak``, the MIA attack classes, its ``QADataset`` with few-shot examples and
``CompletionDataset``, ``preprocess_chat_instance`` / ``preprocess_pretraining_instance``, the padding
collator) is *run* -- read from its git repository at test time (:mod:`tests.ou_reference`), never
copied -- wired by its own configs (``configs/eval/muse.yaml``, ``muse_metrics/*.yaml``,
``data/datasets/MUSE_*.yaml``, the ``Llama-2-7b-hf`` template), on the debug MUSE world's files
(Hub paths swapped for them) and the same tiny models as our evaluator
(:func:`eval.muse.evaluate.evaluate_muse` after :func:`eval.compat.apply_compat`). Compared item by
item: KnowMem forget / retain and VerbMem generations, ground truths and ROUGE-L F1; the privleak
texts' scores of every attack and their AUCs; PrivLeak against the retain model and against
``ref_value``; the aggregates as they report them (fractions); and the MUSE_EVAL.json we write
(:func:`eval.ou.write.write_ou_logs`) against the metric cache their evaluator stores. Then texts
beyond their datasets' ``max_length``: privleak texts over 2048 tokens, KnowMem prompts around 512
(an answer cut, prompts cut), which the debug world never reaches.

Their one incompatibility with this environment, worked around in :mod:`tests.ou_reference`:
``QADataset``'s few-shot columns are turned into lists (their pinned ``datasets==3.0.1`` returns
lists; 4+ returns a ``Column`` their ``+ [question]`` cannot extend).

The world's target barely learned anything in the debug recipe (empty generations, every ROUGE 0),
so it is first trained on half of each generation task's items: KnowMem prompt -> answer + "\\n\\n"
(so their stop-word criteria fire) and VerbMem prompt + the 128 tokens it continues with (the
start of a privleak forget text too, which separates those from the holdout ones).

Tolerances are those of ``tests/test_ou_anchor.py``: likelihood numbers (the MIA scores) are the
same float32 arithmetic in another order (their fused cross-entropy over padded batches of 8, our
length-sorted pass), so :data:`RTOL`; texts, ROUGE and AUCs are compared exactly; generation runs one
prompt at a time on both sides (no padding: bitwise the same logits).

Known difference, not a mismatch: our MUSE evaluation computes no ``extraction_strength`` (their
``muse.yaml`` has it; ``exact_memorization`` is commented out there), so our MUSE_EVAL.json has none.

Skipped when the repository is absent (``OPEN_UNLEARNING_REPO``, default
``/work/.mirror/locuslab+open-unlearning/repo``) or git is missing.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests import ou_reference as ref
from tests.conftest import compose_cfg

RTOL = 4e-6   # float32 noise of two orderings of the same likelihood arithmetic (test_ou_anchor.py)
GENERATION_BATCH = 1
EPOCHS = 200                # the target's extra training (see _memorising_half)
VERBMEM_TRAIN_TOKENS = 128  # VerbMem's max_new_tokens: the article beyond them is never generated
#: our log -> their metric
ROUGE = {"knowmem_forget": "forget_knowmem_ROUGE", "knowmem_retain": "retain_knowmem_ROUGE",
         "verbmem": "forget_verbmem_ROUGE"}
SUMMARY = {"knowmem_forget": "knowmem_f", "knowmem_retain": "knowmem_r", "verbmem": "verbmem_f"}
ATTACKS = {a: m for m, (a, _, _) in ref.MIA_ATTACKS.items()}  # our attack -> their metric
#: what their MUSE suite stores that our MUSE evaluation does not compute (a known difference)
NOT_OURS = {"extraction_strength"}

_skip = ref.unavailable_reason()
pytestmark = pytest.mark.skipif(_skip is not None, reason=str(_skip))


def _approx(x, rel=RTOL, abs=0):
    return pytest.approx(x, rel=rel, abs=abs)


def _memorising_half(model, prepared):
    """Train the target on half of each task's items (see the module docstring)."""
    from eval.muse.metrics import knowmem_prompt
    from unlearn.benchmarks.muse import DOC_SEPARATOR, encode_prompt_answer
    from unlearn.train import finetune

    tok, data, feats = prepared.tokenizer, prepared.data, []
    for side in ("forget", "retain"):
        icl = list(data.rows("knowmem", f"{side}_qa_icl"))
        for r in list(data.rows("knowmem", f"{side}_qa"))[::2]:  # prompt tokens as generation sees them
            feats.append(encode_prompt_answer(tok, knowmem_prompt(icl, r["question"]), r["answer"] + DOC_SEPARATOR,
                                              1 << 20))
    for r in list(data.rows("verbmem", "forget"))[::2]:  # the prompt and what VerbMem generates
        prompt = tok(r["prompt"])["input_ids"]
        ids = tok(r["prompt"] + " " + r["gt"])["input_ids"][: len(prompt) + VERBMEM_TRAIN_TOKENS]
        assert ids[: len(prompt)] == prompt
        feats.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] + ids[1:]})
    finetune(model, feats, {"batch_size": len(feats), "epochs": EPOCHS, "lr": 3e-3, "weight_decay": 0.0},
             tok.pad_token_id, seed=0, device="cpu")
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model's ops gain nothing from a second thread, and with another process busy on
    the machine two spinning OpenMP threads made this module up to 15x slower (measured: 13 s with
    one thread, 67-210 s with two). Both sides run under it; restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _their_module_names() -> set[str]:
    return {n for n in sys.modules if n.split(".")[0] in ("data", "evals")}


@pytest.fixture(scope="module")
def anchor(tmp_path_factory, shared_cache):
    from eval.compat import apply_compat
    from eval.muse.evaluate import evaluate_muse, privleak_reference, retain_logs_reference, summarize
    from eval.ou.write import write_ou_logs
    from unlearn.benchmarks import get_benchmark
    from unlearn.stages import StageCache

    tmp = tmp_path_factory.mktemp("ou_anchor_muse")
    cfg = apply_compat(compose_cfg(["debug=tiny", f"paths.root={tmp / 'outputs'}", "dataset=muse_synth", "eval=muse",
                                    "eval.compat=open_unlearning", f"eval.verbmem.batch_size={GENERATION_BATCH}",
                                    f"eval.knowmem.batch_size={GENERATION_BATCH}"]))
    ev = cfg.eval
    prepared = get_benchmark("muse").prepare(cfg, StageCache(shared_cache))
    tok, folder = prepared.tokenizer, Path(prepared.data.path)
    target = _memorising_half(prepared.load("target"), prepared)
    retain = prepared.load("retain").eval()

    # ours
    ours_retain = evaluate_muse(retain, prepared, ev, generate=False)
    ours = evaluate_muse(target, prepared, ev)
    reference, _ = privleak_reference({"privleak": ours_retain["privleak"]}, ev, corpus=str(cfg.dataset.split))
    summary = summarize(ours, reference, ev)
    noref, _ = privleak_reference(None, ev, corpus=str(cfg.dataset.split))  # their ref_value fallback
    summary_noref = summarize(ours, noref, ev)
    written = json.loads(write_ou_logs(tmp / "ours", "muse", ours, summary).read_text())

    # theirs, on the same models and files
    before = _their_module_names()
    with ref.load_open_unlearning_muse(tmp / "open-unlearning") as ou:
        loaded = _their_module_names()
        suite = ref.muse_suite(ou)
        # their evaluator saves its metric cache with json.dump: string item indices, plain floats
        theirs_retain = json.loads(json.dumps(ref.ou_muse_eval(ou, retain, tok, folder, generate=False,
                                                               extra_attacks=())))
        theirs = json.loads(json.dumps(ref.ou_muse_eval(ou, target, tok, folder, retain_logs=theirs_retain,
                                                        generation_batch_size=GENERATION_BATCH)))
        theirs_noref = ou.privacy.privleak._metric_fn(target, pre_compute={"forget": theirs["mia_min_k"]},
                                                      ref_value=0.5)["agg_value"]
        # their Min-k%++ on a float64 copy (in float32 their E[lp^2] - mu^2 loses digits)
        minkpp64 = ref.ou_muse_mia(ou, copy.deepcopy(target).double(), tok, folder, ("mia_min_k_plus_plus",))
        commit = ou.commit
    after = _their_module_names()
    # the retain model's MUSE_EVAL.json as they write it, read as our eval.retain_logs
    (tmp / "theirs_retain").mkdir()
    (tmp / "theirs_retain" / "MUSE_EVAL.json").write_text(json.dumps(theirs_retain))
    their_ref, _ = retain_logs_reference(str(tmp / "theirs_retain"), ev)
    summary_their_ref = summarize(ours, their_ref, ev)
    return SimpleNamespace(tmp=tmp, ev=ev, prepared=prepared, tok=tok, target=target, ours=ours, summary=summary,
                           summary_noref=summary_noref, summary_their_ref=summary_their_ref, written=written,
                           theirs=theirs, theirs_retain=theirs_retain, theirs_noref=theirs_noref, minkpp64=minkpp64,
                           suite=suite, commit=commit, before=before, loaded=loaded, after=after)


def _per_item(result, stat):
    per = result["value_by_index"]
    return [per[k][stat] for k in sorted(per, key=int)]


def _ours(values):
    return [values[k] for k in sorted(values, key=int)]


def test_their_code_is_what_ran(anchor):
    assert set(ref.MODULES) | set(ref.MUSE_MODULES) <= anchor.loaded  # their modules, under their names ...
    assert anchor.after == anchor.before  # ... and gone again
    assert len(anchor.commit) == 40
    # their default MUSE suite (muse.yaml) and privleak's pre-computed mia_min_k, stored by their evaluator
    assert set(anchor.suite) | {"mia_min_k"} <= set(anchor.theirs)
    # every metric they store is one we write, but extraction_strength (we compute none for MUSE)
    assert set(anchor.theirs) - set(anchor.written) == NOT_OURS


def test_the_world_is_non_trivial(anchor):
    """The comparison means something: generations of varied quality, separable privleak texts."""
    for log in ROUGE:
        f1 = _ours(anchor.ours[log]["rougeL_f1"])
        assert min(f1) < max(f1) and max(f1) > 0, log
        assert all(g[1] for g in anchor.ours[log]["generated_text"].values()), log
    # KnowMem answers exactly right (the model learned answer + "\n\n": cut at their first stop word)
    # and wrong ones; VerbMem continuations partly right
    for log in ("knowmem_forget", "knowmem_retain"):
        assert max(_ours(anchor.ours[log]["rougeL_f1"])) == 1.0 > min(_ours(anchor.ours[log]["rougeL_f1"])), log
    assert 0 < anchor.summary["knowmem_f"] < 1 and 0 < anchor.summary["verbmem_f"] < 1
    # their orientation: the forget texts score lower; some attack does not separate them fully
    aucs = [anchor.summary[f"mia_auc_{a}"] for a in ATTACKS]
    assert all(0.5 < a <= 1 for a in aucs) and min(aucs) < 1, aucs


# ----------------------------------------------------------------------------------------
# generations
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("log", list(ROUGE))
def test_generations_ground_truths_and_rouge(anchor, log):
    ours, theirs = anchor.ours[log], anchor.theirs[ROUGE[log]]
    texts = _ours(ours["generated_text"])
    assert [t[1] for t in texts] == _per_item(theirs, "generation")   # their stop-word cut, then strip
    assert [t[2] for t in texts] == _per_item(theirs, "ground_truth")  # decoded from the tokens
    assert _ours(ours["rougeL_f1"]) == _per_item(theirs, "rougeL_f1")  # F1, stemmer
    assert len(texts) == anchor.summary["n_items"][log]


@pytest.mark.parametrize("log", list(ROUGE))
def test_aggregates_are_their_fractions(anchor, log):
    theirs = anchor.theirs[ROUGE[log]]["agg_value"]
    assert 0 < theirs < 1
    assert anchor.summary[SUMMARY[log]] == pytest.approx(theirs, rel=1e-12)


# ----------------------------------------------------------------------------------------
# membership inference and PrivLeak
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", ("loss", "zlib", "min_k"))
def test_mia_scores(anchor, attack):
    for group in ("forget", "holdout"):
        ours = np.asarray(_ours(anchor.ours["privleak"][group][attack]))
        assert np.asarray(_per_item(anchor.theirs[ATTACKS[attack]][group], "score")) == _approx(ours), group


def test_mia_min_k_plus_plus_scores(anchor):
    """Against their attack on a float64 copy of the model (test_ou_anchor.py's reasoning); against
    their float32 numbers within the bound that float32 cancellation in their variance allows."""
    for group in ("forget", "holdout"):
        ours = np.asarray(_ours(anchor.ours["privleak"][group]["min_k_plus_plus"]))
        exact = np.asarray(_per_item(anchor.minkpp64["mia_min_k_plus_plus"][group], "score"))
        assert ours == _approx(exact), group
        theirs = np.asarray(_per_item(anchor.theirs["mia_min_k_plus_plus"][group], "score"))
        assert ours == pytest.approx(theirs, rel=0, abs=5e-4), group


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_mia_aucs_in_their_orientation(anchor, attack):
    assert anchor.summary[f"mia_auc_{attack}"] == anchor.theirs[ATTACKS[attack]]["auc"]


def test_privleak(anchor):
    theirs = anchor.theirs["privleak"]["agg_value"]  # against the retain model's mia_min_k
    assert theirs == pytest.approx(
        (anchor.theirs["mia_min_k"]["auc"] - anchor.theirs_retain["mia_min_k"]["auc"])
        / (1 - anchor.theirs_retain["mia_min_k"]["auc"] + 1e-10) * -100, rel=1e-12)  # it used the retain logs
    assert anchor.summary["privleak"] == pytest.approx(theirs, rel=1e-12, abs=1e-9)
    assert anchor.summary["privleak_reference_auc"] == pytest.approx(anchor.theirs_retain["mia_min_k"]["auc"],
                                                                     rel=1e-12)
    # the retain model's MUSE_EVAL.json as they write it, read as our eval.retain_logs
    assert anchor.summary_their_ref["privleak"] == pytest.approx(theirs, rel=1e-12, abs=1e-9)


def test_privleak_without_retain_logs(anchor):
    assert anchor.summary_noref["privleak"] == pytest.approx(anchor.theirs_noref, rel=1e-12, abs=1e-9)
    assert anchor.summary_noref["privleak_reference_auc"] == 0.5


def _long_knowmem_icl(tok, icl, rows, limit):
    """In-context examples that put the KnowMem prompts around ``limit`` tokens: the world's own,
    repeated, and a filler pair sized so that one item's answer is cut by ``limit`` (its prompt fits)
    and another's prompt is cut too (the most varied split of the items the sizes allow)."""
    from eval.muse.metrics import knowmem_prompt

    def kinds(m):
        pairs = icl * 8 + [{"question": "Which words fill this example?", "answer": " ".join(["filler"] * m)}]
        out = set()
        for r in rows:
            p, full = (len(tok(t)["input_ids"]) for t in (knowmem_prompt(pairs, r["question"]),
                                                           knowmem_prompt(pairs, r["question"]) + r["answer"]))
            out.add("fits" if full <= limit else "answer cut" if p < limit else "prompt cut")
        return out, pairs

    best = max((kinds(m) for m in range(0, 400, 3)), key=lambda k: ("answer cut" in k[0], len(k[0])))
    assert "answer cut" in best[0] and len(best[0]) >= 2, best[0]
    return best[1], best[0]


@pytest.fixture(scope="module")
def long_texts(anchor, tmp_path_factory):
    """Texts longer than their datasets' max_length: privleak texts over MUSE_MIA.yaml's 2048
    tokens after BOS (the debug world's articles joined, ~2,300 tokens; one per group, among two of
    its own texts), and KnowMem prompts around MUSE_forget_knowmem.yaml's 512 tokens."""
    import datasets
    from eval.muse.evaluate import knowmem_log, privleak_log

    tmp, tok, data = tmp_path_factory.mktemp("ou_anchor_muse_long"), anchor.tok, anchor.prepared.data
    texts = {g: list(data.rows("privleak", g)["text"]) for g in ("forget", "holdout")}
    files = {("privleak", g): [{"text": "\n\n".join(t + t[:2])}] + [{"text": x} for x in t[1:3]]
             for g, t in texts.items()}
    files["privleak", "retain"] = files["privleak", "forget"][:1]
    qa = list(data.rows("knowmem", "forget_qa"))
    files["knowmem", "forget_qa"] = qa
    files["knowmem", "forget_qa_icl"], kinds = _long_knowmem_icl(tok, list(data.rows("knowmem", "forget_qa_icl")), qa,
                                                                 512)
    for (config, split), rows in files.items():
        (tmp / config).mkdir(exist_ok=True)
        (tmp / config / f"{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = SimpleNamespace(rows=lambda config, split: datasets.load_dataset(
        "json", data_files=str(tmp / config / f"{split}.json"), split="train"))
    prepared = SimpleNamespace(data=local, tokenizer=tok)
    ours = {"privleak": privleak_log(anchor.target, prepared, anchor.ev),
            "knowmem_forget": knowmem_log(anchor.target, prepared, anchor.ev, "forget")}
    with ref.load_open_unlearning_muse(tmp / "open-unlearning") as ou:
        theirs = json.loads(json.dumps({
            **ref.ou_muse_mia(ou, anchor.target, tok, tmp, ("mia_min_k", "mia_loss", "mia_zlib")),
            **ref.ou_muse_rouge(ou, anchor.target, tok, tmp, ("forget_knowmem_ROUGE",),
                                generation_batch_size=GENERATION_BATCH)}))
    return SimpleNamespace(files=files, kinds=kinds, ours=ours, theirs=theirs)


def test_knowmem_prompts_longer_than_their_max_length(long_texts):
    """MUSE_forget_knowmem.yaml's max_length 512 cuts the prompt (the generation's input) and
    prompt + answer (the ground truth's tokens): the same generations, ground truths and ROUGE."""
    ours, theirs = long_texts.ours["knowmem_forget"], long_texts.theirs["forget_knowmem_ROUGE"]
    texts = _ours(ours["generated_text"])
    assert [t[1] for t in texts] == _per_item(theirs, "generation")
    assert [t[2] for t in texts] == _per_item(theirs, "ground_truth")
    assert _ours(ours["rougeL_f1"]) == _per_item(theirs, "rougeL_f1")
    answers = [r["answer"] for r in long_texts.files["knowmem", "forget_qa"]]
    assert any(gt != a for gt, a in zip(_per_item(theirs, "ground_truth"), answers))  # the cut is exercised


@pytest.mark.parametrize("attack", ("loss", "min_k"))
def test_privleak_texts_longer_than_their_max_length(long_texts, anchor, attack):
    """Ours (mia.max_length = 2049 under compat: BOS + 2048) scores the tokens they score."""
    ours = long_texts.ours["privleak"]
    for g in ("forget", "holdout"):
        assert len(anchor.tok(long_texts.files["privleak", g][0]["text"])["input_ids"]) > 2049
        assert ours[g]["num_tokens"]["0"] == 2048
        assert np.asarray(_per_item(long_texts.theirs[ATTACKS[attack]][g], "score")) == _approx(
            np.asarray(_ours(ours[g][attack]))), g


def test_zlib_of_privleak_texts_longer_than_their_max_length(long_texts):
    for g in ("forget", "holdout"):
        assert np.asarray(_per_item(long_texts.theirs["mia_zlib"][g], "score")) == _approx(
            np.asarray(_ours(long_texts.ours["privleak"][g]["zlib"]))), g


# ----------------------------------------------------------------------------------------
# the MUSE_EVAL.json we write against the one they would write
# ----------------------------------------------------------------------------------------
_ROUGE_STATS = ("rouge1_recall", "rougeL_f1", "rougeL_recall", "ground_truth", "generation")


@pytest.mark.parametrize("log", list(ROUGE))
def test_written_rouge(anchor, log):
    name = ROUGE[log]
    ours, theirs = anchor.written[name], anchor.theirs[name]
    assert ours["agg_value"] == pytest.approx(theirs["agg_value"], rel=1e-12)
    assert ours["value_by_index"].keys() == theirs["value_by_index"].keys()
    for stat in _ROUGE_STATS:
        assert _per_item(ours, stat) == _per_item(theirs, stat), stat


@pytest.mark.parametrize("log", [
    "verbmem",
    "knowmem_forget", "knowmem_retain"])
def test_written_rouge_inputs(anchor, log):
    name = ROUGE[log]
    assert _per_item(anchor.written[name], "input") == _per_item(anchor.theirs[name], "input")


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_written_mia(anchor, attack):
    name = ATTACKS[attack]
    ours, theirs = anchor.written[name], anchor.theirs[name]
    assert ours["auc"] == theirs["auc"] and ours["agg_value"] == theirs["agg_value"]
    for group in ("forget", "holdout"):
        assert ours[group]["value_by_index"].keys() == theirs[group]["value_by_index"].keys()
        got = np.asarray(_per_item(ours[group], "score"))
        if attack == "min_k_plus_plus":  # their float32 variance: see test_mia_min_k_plus_plus_scores
            assert got == pytest.approx(np.asarray(_per_item(theirs[group], "score")), rel=0, abs=5e-4), group
        else:
            assert got == _approx(np.asarray(_per_item(theirs[group], "score"))), group
        assert ours[group]["agg_value"] == _approx(theirs[group]["agg_value"], abs=5e-4 if
                                                   attack == "min_k_plus_plus" else 0), group


def test_written_privleak(anchor):
    assert anchor.written["privleak"]["agg_value"] == pytest.approx(anchor.theirs["privleak"]["agg_value"],
                                                                    rel=1e-12, abs=1e-9)


def test_written_summary(anchor):
    """MUSE_SUMMARY.json: the agg_value of each metric of their suite that we write."""
    summary = json.loads((anchor.tmp / "ours" / "MUSE_SUMMARY.json").read_text())
    expected = {m for m in {*anchor.suite, "mia_min_k"} if m not in NOT_OURS}
    assert expected <= set(summary)
    for m in expected:
        assert summary[m] == pytest.approx(anchor.theirs[m]["agg_value"], rel=1e-12, abs=1e-9), m


