"""MUSE end to end (debug world, the real layout on the local fixture), the MIA suite computed from
one teacher-forced pass, the MIA on TOFU, and (slow) that the default embedded MUSE world is
meaningful."""
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.muse import evaluate as muse_eval
from eval.mia import scores as ms
from eval.likelihood import score
from eval.mia.attacks import ATTACKS, SIGMA_FLOOR, MiaSettings, group_scores
from eval.records import load_record
from tests.conftest import compose_cfg, sampled
from unlearn.benchmarks import get_benchmark
from unlearn.data import encode_text
from unlearn.methods import METHODS
from unlearn.models import build_tiny_llama
from unlearn.pipeline import STEP_LOG, run
from unlearn.run_report import summary_table
from unlearn.tokenizer import train_bpe_tokenizer
from unlearn.worlds import load_muse

FIXTURE = Path(__file__).parent / "fixtures" / "muse_real"
TINY_ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "max_position_embeddings": 128}
MUSE = ("dataset=muse_synth", "eval=muse")
SUMMARY_KEYS = {"verbmem_f", "knowmem_f", "knowmem_r", "privleak", "privleak_reference_auc", "mia_auc", "loss_forget",
                "loss_holdout", "loss_retain", "n_items"} | {f"mia_auc_{a}" for a in ATTACKS}


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", *MUSE, *overrides)
    return make


def test_debug_muse_run(cfg, tmp_path):
    c = cfg("eval.trajectory_every=3", "method.max_steps=3")
    rec = run(c, run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    on_disk = load_record(tmp_path / "run")
    assert set(on_disk["metrics"]) == {"target", "retain", "unlearned"}
    assert on_disk["reference"].startswith("retrain model (measured)")
    assert set(on_disk["stages"]) == {"world", "tokenizer", "target", "retain"}  # no base model in MUSE
    # every aggregate is recomputed from the record's per-example values alone
    reference, _ = get_benchmark("muse").reference({"retain": on_disk["metrics"]["retain"]["logs"]}, c)
    for name, m in on_disk["metrics"].items():
        assert SUMMARY_KEYS <= set(m["summary"]), name
        assert set(m["logs"]) == {"verbmem", "knowmem_forget", "knowmem_retain", "privleak"}
        assert muse_eval.summarize(m["logs"], reference, c.eval) == m["summary"]
    retain, target = on_disk["metrics"]["retain"]["summary"], on_disk["metrics"]["target"]["summary"]
    assert retain["privleak"] == 0.0 and retain["mia_auc"] == retain["privleak_reference_auc"]
    assert target["n_items"] == {"verbmem": 4, "knowmem_forget": 4, "knowmem_retain": 4, "privleak_forget": 4,
                                 "privleak_holdout": 4, "privleak_retain": 4}  # the debug world's sizes
    forget_log = on_disk["metrics"]["unlearned"]["logs"]["privleak"]["forget"]
    assert set(forget_log) == set(ATTACKS) | {"num_tokens"} and len(forget_log["min_k"]) == 4
    prompt, generation, gt = on_disk["metrics"]["target"]["logs"]["verbmem"]["generated_text"]["0"]
    assert isinstance(generation, str) and gt  # the reference ROUGE was computed against
    table = summary_table(on_disk)
    for column in ("verbmem_f", "knowmem_f", "knowmem_r", "privleak"):
        assert column in table
    # the cheap trajectory subset: the MIA pass, no generation
    traj = on_disk["trajectory"]
    assert [t["step"] for t in traj] == [0, 3]
    assert {"privleak", "mia_auc", "loss_forget"} <= set(traj[0]) and "verbmem_f" not in traj[0]
    assert traj[0]["mia_auc"] == pytest.approx(target["mia_auc"])


def test_unlearning_data_is_fixed_length_text_chunks(cfg, shared_cache):
    from unlearn.stages import StageCache

    c = cfg()
    bench = get_benchmark("muse")
    prepared = bench.prepare(c, StageCache(shared_cache))
    forget_rows, retain_rows, forget, retain = bench.unlearning_data(prepared)
    n = int(c.dataset.chunk_length)
    assert all(set(r) == {"text"} for r in forget_rows + retain_rows)
    assert all(len(f["input_ids"]) <= n and f["labels"][0] == -100 for f in forget + retain)
    # chunks are full except the last, up to a token where a cut splits a word
    assert all(len(f["input_ids"]) >= n - 2 for f in forget[:-1])
    corpus = "\n\n".join(prepared.data.texts("forget"))
    assert "".join(r["text"] for r in forget_rows) == corpus  # nothing lost or added


def test_privleak_against_muse_constant(cfg, tmp_path):
    rec = run(cfg("eval.privleak_reference=constant", "method.max_steps=1"), run_dir=tmp_path / "c")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["reference"].startswith("MUSE constant (news)") and "0.4772" in rec["reference"]
    s = rec["metrics"]["target"]["summary"]
    assert s["privleak_reference_auc"] == 0.4772
    assert s["privleak"] == pytest.approx((s["mia_auc_min_k"] - 0.4772) / 0.4772 * 100)
    bad = run(cfg("eval.privleak_reference=constant", "eval.mia.k=0.2"), run_dir=tmp_path / "k")
    assert bad["status"] == "failed" and "Min-40%" in bad["error"]["message"]


def test_bad_choices_fail_clearly(cfg, debug_cfg, shared_cache, tmp_path):
    # dataset=muse_synth selects eval=muse itself; forcing TOFU's evaluator is a clear error
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "dataset=muse_synth", "eval=tofu"), run_dir=tmp_path / "e")
    assert rec["status"] == "failed" and "eval=muse" in rec["error"]["message"]
    rec = run(cfg("dataset.split=poems"), run_dir=tmp_path / "p")
    assert rec["status"] == "failed" and "news, books" in rec["error"]["message"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A target and a retrain 'checkpoint' (random tiny Llamas) with a tokenizer of the fixture."""
    root = tmp_path_factory.mktemp("muse_ckpt")
    texts = [r["text"] for s in ("forget", "retain1", "retain2", "holdout")
             for r in load_muse("raw", s, source="local", path=FIXTURE)]
    tok = train_bpe_tokenizer(texts * 3, 300, root / "tok")
    for i, name in enumerate(("target", "retain")):
        build_tiny_llama(TINY_ARCH, tok, seed=i).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def test_real_layout_from_a_local_folder(checkpoints, tmp_path):
    common = [f"paths.root={tmp_path}", "dataset=muse", "eval=muse", "dataset.source=local", "model=hf",
              f"model.target={checkpoints / 'target'}", f"model.retain={checkpoints / 'retain'}", "model.max_length=64",
              "dataset.chunk_length=64", "eval.verbmem.max_new_tokens=8", "method.batch_size=2", "method.max_steps=2"]
    rec = run(compose_cfg([*common, f"dataset.path={FIXTURE}"]), run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["stages"] == {}  # nothing built: data and models come from config
    n = rec["metrics"]["unlearned"]["summary"]["n_items"]
    assert n == {"verbmem": 2, "knowmem_forget": 3, "knowmem_retain": 3, "privleak_forget": 2, "privleak_holdout": 2,
                 "privleak_retain": 2}  # the fixture's files
    rec = run(compose_cfg([*common, f"dataset.path={tmp_path / 'missing'}"]), run_dir=tmp_path / "m")
    assert rec["status"] == "failed" and str(tmp_path / "missing") in rec["error"]["message"]


def _per_text(model, ids: list[int]):
    """One text alone, the textbook way: log-softmax over the vocabulary at every position."""
    with torch.no_grad():
        lp = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].double(), -1)
    return lp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1).numpy(), lp.numpy()


@pytest.mark.parametrize("variant", ["muse", "ou"])
def test_mia_from_one_pass_equals_per_attack_recomputation(variant, tmp_path):
    texts = ["The mill in Dunmere will close with the loss of 240 jobs, the firm said on Monday.",
             "Storm Ashby flooded 30 homes.", "A new library opened in Pellam after nine months of work, "
             "and about 400 people came to see it on its first day.", "Voters chose Orla Varnek."]
    tok = train_bpe_tokenizer(texts * 4, 300, tmp_path / "tok")
    model = build_tiny_llama(TINY_ARCH, tok, seed=0).eval()
    with torch.no_grad():  # peaked next-token distributions, as a trained model has: at init they
        model.lm_head.weight.mul_(50)  # are nearly uniform and sigma is too small for float32 digits
    settings = MiaSettings(k=0.4, min_k_variant=variant)
    feats = [encode_text(tok, t, 128) for t in texts]
    one_pass = group_scores(score(model, feats, 3, tok.pad_token_id, tokens=True), list(enumerate(texts)), settings)
    kw = ms.MIN_K_VARIANTS[variant]
    for j, (t, f) in enumerate(zip(texts, feats)):
        logp, vocab = _per_text(model, f["input_ids"])
        mu, sigma = ms.next_token_logprob_stats(vocab)
        expected = {"loss": ms.loss_score(logp), "zlib": ms.zlib_score(logp, t), "min_k": ms.min_k_score(logp, 0.4, **kw),
                    "min_k_plus_plus": ms.min_k_plus_plus_score(logp, mu, np.maximum(sigma, SIGMA_FLOOR), 0.4, **kw)}
        for attack in ATTACKS:
            assert one_pass[attack][j] == pytest.approx(expected[attack], rel=1e-5, abs=1e-6), (attack, j)


def test_muse_eval_scores_every_privleak_text_in_one_pass(tmp_path, monkeypatch):
    texts = {g: [f"{g} text number {i} about the town of Dunmere and its mill." for i in range(3)]
             for g in muse_eval.PRIVLEAK_GROUPS}
    texts["retain"][0] = texts["forget"][0]  # a text in two groups is scored once
    tok = train_bpe_tokenizer([t for ts in texts.values() for t in ts] * 3, 300, tmp_path / "tok")
    model = build_tiny_llama(TINY_ARCH, tok, seed=0)
    data = SimpleNamespace(rows=lambda config, split: {"text": texts[split]})
    calls = []

    def counting_score(*args, **kwargs):
        calls.append(len(args[1]))
        return score(*args, **kwargs)

    monkeypatch.setattr(muse_eval, "score", counting_score)
    cfg = compose_cfg(["eval=muse"]).eval
    log = muse_eval.privleak_log(model, SimpleNamespace(data=data, tokenizer=tok), cfg)
    assert calls == [8]  # 9 texts, 8 unique, one pass
    assert log["retain"]["loss"]["0"] == log["forget"]["loss"]["0"]


def test_tofu_mia_from_the_same_pass(debug_cfg, shared_cache, tmp_path):
    rec = run(debug_cfg(f"paths.cache={shared_cache}", "method=ga", "method.max_steps=1"), run_dir=tmp_path / "t")
    assert rec["status"] == "ok", rec.get("error")
    for m in rec["metrics"].values():
        assert {f"mia_auc_{a}" for a in ATTACKS} <= set(m["summary"])
        forget = m["logs"]["forget"]
        for a in ATTACKS:  # per forget item: its score, and holdout item i's
            assert len(forget[f"mia_{a}"]) == len(forget[f"mia_holdout_{a}"]) == len(forget["avg_gt_loss"])


@pytest.mark.slow
def test_default_muse_world_is_meaningful(tmp_path):
    """The target memorised the forget articles and knows their facts; the retrain model does not
    (trains the default target and retrain models: ~15 min on one busy core)."""
    rec = run(compose_cfg([f"paths.root={tmp_path}", *MUSE, "method=ga", "method.max_steps=1"]), run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    target, retrain = rec["metrics"]["target"]["summary"], rec["metrics"]["retain"]["summary"]
    print({k: {m: round(s[m], 2) for m in ("verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mia_auc")}
           for k, s in (("target", target), ("retrain", retrain))}, rec["timings"])
    # the articles share their event type's sentence templates, so a model that never saw the forget
    # articles still continues them at ROUGE-L ~50 (measured: target 73, retrain 50)
    assert target["verbmem_f"] > retrain["verbmem_f"] + 15
    assert target["knowmem_f"] > retrain["knowmem_f"] + 40
    assert target["privleak"] < -60 and retrain["privleak"] == 0.0
    assert min(target["knowmem_r"], retrain["knowmem_r"]) > 50  # both learned the retain facts


# every method runs unchanged on MUSE's raw-text chunks (idk / idk_dpo: a chunk's prefix is the prompt)
# the fast tier runs a method of each kind (TOFU runs every method there), the slow tier all with both rates
@pytest.mark.parametrize("scheduler", [pytest.param("constant", marks=pytest.mark.slow), "gen"])
@pytest.mark.parametrize("method", sampled(list(METHODS), ("ngdiff", "gdiff", "npo", "rmu", "idk_dpo")))
def test_every_method_runs_on_muse(cfg, tmp_path, method, scheduler):
    rec = run(cfg(f"method={method}", f"scheduler={scheduler}", "method.max_steps=1", "save_checkpoint=false"),
              run_dir=tmp_path / method)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["unlearn"]["steps"] == 1 and rec["metrics"]["unlearned"]["summary"]["n_items"]
    if method == "idk_dpo":  # at the target, pi = pi_ref on both answers: the loss is (2/beta) log 2
        row = json.loads((tmp_path / method / STEP_LOG).read_text().splitlines()[0])
        assert row["loss/forget"] == pytest.approx(2 / rec["config"]["method"]["beta"] * math.log(2), rel=1e-4)


def test_idk_features_on_raw_text_split_a_chunk_after_its_prefix(tmp_path):
    """A tokenizer of bytes alone (no merges: one token a character) makes the counts hand-checkable."""
    tok = train_bpe_tokenizer(["The cat sat. No idea."] * 3, 260, tmp_path / "bytes")
    prepared = SimpleNamespace(tokenizer=tok, data=SimpleNamespace(chunk_length=64))
    muse, chunk = get_benchmark("muse"), {"text": "The cat sat."}

    def parts(feature):  # (prompt text, scored text): the labels are -100 exactly on the prompt
        ids, labels = feature["input_ids"], feature["labels"]
        n = labels.count(-100)
        assert labels[n:] == ids[n:] and ids[0] == tok.bos_token_id and len(feature["attention_mask"]) == len(ids)
        return tok.decode(ids[1:n]), tok.decode(labels[n:])

    true = muse.answer_feature(prepared, chunk, None, 3)
    assert true["input_ids"] == encode_text(tok, chunk["text"], 64)["input_ids"]  # the chunk's own tokens
    assert parts(true) == ("The", " cat sat.") and true["labels"].count(-100) == 1 + 3
    idk = muse.answer_feature(prepared, chunk, "No idea.", 3)  # running text: after a space, no EOS
    assert parts(idk) == ("The", " No idea.") and len(idk["input_ids"]) == 1 + 3 + 9
    assert idk["input_ids"][:4] == true["input_ids"][:4]  # the same prompt tokens
    # a prefix longer than the chunk leaves it one token of continuation
    assert parts(muse.answer_feature(prepared, chunk, None, 32)) == ("The cat sat", ".")
    # with merges, the IDK sentence's first token carries its space as in running text
    merging = train_bpe_tokenizer(["The cat sat. No idea. No, no idea at all."] * 3, 300, tmp_path / "bpe")
    feature = muse.answer_feature(SimpleNamespace(tokenizer=merging, data=prepared.data), chunk, "No idea.", 2)
    n = feature["labels"].count(-100)
    assert merging.decode(feature["labels"][n:]) == " No idea." and n == 1 + 2
    assert feature["labels"][n:] == merging(" No idea.", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("experiment", sampled(["muse_news", "muse_books"], ("muse_news",)))
def test_real_setting_experiments_on_a_local_mimic(experiment, checkpoints, tmp_path):
    """The MUSE paper-setting experiments, Hub ids swapped for a local folder and local checkpoints."""
    cfg = compose_cfg([f"paths.root={tmp_path}", f"experiment={experiment}", "dataset.source=local",
                       f"dataset.path={FIXTURE}", f"model.target={checkpoints / 'target'}",
                       f"model.retain={checkpoints / 'retain'}", f"model.tokenizer={checkpoints / 'target'}",
                       "model.max_length=64", "dataset.chunk_length=64", "eval.verbmem.max_new_tokens=8",
                       "method.batch_size=2", "method.max_steps=1"])
    assert cfg.eval.get("verbmem") and cfg.method.name == "ngdiff" and cfg.method.lr == 1e-5
    from tests.test_recipes import assert_recipe

    assert_recipe(compose_cfg([f"experiment={experiment}"]), "muse")  # MUSE's recipe, before the local swaps
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    # batch_size=2 on the recipe's effective batch 4: two micro-batches, pure bf16 as MUSE trains
    assert (rec["unlearn"]["grad_accum_steps"], rec["unlearn"]["precision"]) == (2, "bf16-true")
    assert rec["config"]["dataset"]["split"] == experiment.split("_")[1]
