"""WMDP end to end: the debug world through the same function run.py calls, the real layouts from a
local folder with checkpoints, clear failures, and (slow) that the default embedded world is
learnable: the target knows the forget domain, the retain model answers it at chance."""
import json
import time

import pytest

from eval.records import load_record
from eval.wmdp.evaluate import summarize
from tests.conftest import compose_cfg, sampled
from tests.wmdp_fixture import write_real_layout
from unlearn.benchmarks import get_benchmark
from unlearn.methods import METHODS
from unlearn.models import build_tiny_llama
from unlearn.pipeline import run
from unlearn.run_report import summary_table
from unlearn.stages import StageCache
from unlearn.tokenizer import train_bpe_tokenizer

WMDP = ("dataset=wmdp_synth",)
TINY_ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "max_position_embeddings": 128}


@pytest.fixture
def cfg(debug_cfg, shared_cache):
    def make(*overrides):
        return debug_cfg(f"paths.cache={shared_cache}", *WMDP, *overrides)
    return make


def test_debug_wmdp_run(cfg, tmp_path):
    c = cfg("eval.trajectory_every=2", "method.max_steps=2", "eval.ou_logs=true")  # NGDiff + GeN, the defaults
    assert c.eval.compat == "wmdp"  # dataset=wmdp_synth selects eval=wmdp itself
    rec = run(c, run_dir=tmp_path / "run")
    assert rec["status"] == "ok", rec.get("error")
    on_disk = load_record(tmp_path / "run")
    assert set(on_disk["metrics"]) == {"target", "retain", "unlearned"}
    assert set(on_disk["stages"]) == {"world", "tokenizer", "target", "retain"}
    assert on_disk["reference"].startswith("none")
    for name, m in on_disk["metrics"].items():
        assert set(m["logs"]) == {"forget_qa", "general_qa", "loss"}
        assert summarize(m["logs"]) == m["summary"], name  # every number from the per-question logs alone
        assert m["summary"]["n_items"]["forget_qa"] == m["summary"]["n_items"]["general_qa"] == 16  # debug sizes
        assert 0.0 <= m["summary"]["forget_acc"] <= 1.0
        assert set(m["summary"]["general_acc_by_subject"]) == {"geography", "zoology", "cookery"}
    question = on_disk["metrics"]["target"]["logs"]["forget_qa"]
    assert len(question["choice_loglik"]["0"]) == 4 and question["pred"]["0"] in range(4)
    table = summary_table(on_disk)
    assert all(c in table for c in ("forget_acc", "general_acc", "loss_forget", "loss_retain"))
    assert [t["step"] for t in on_disk["trajectory"]] == [0, 2]
    assert on_disk["trajectory"][0]["forget_acc"] == on_disk["metrics"]["target"]["summary"]["forget_acc"]
    # eval.ou_logs: each model's files as open-unlearning's WMDP evaluation (lm-eval) writes them
    for name, m in on_disk["metrics"].items():
        folder = tmp_path / "run" / "open_unlearning" / name
        assert json.loads((folder / "LMEval_SUMMARY.json").read_text()) == {
            "wmdp_forget_qa/acc": m["summary"]["forget_acc"], "wmdp_general_qa/acc": m["summary"]["general_acc"]}
        items = json.loads((folder / "LMEval_EVAL.json").read_text())["wmdp_forget_qa"]["wmdp_forget_qa"]
        log = m["logs"]["forget_qa"]
        assert [i["target"] for i in items] == [log["answer"][str(k)] for k in range(16)]
        assert [i["loglikelihoods"] for i in items] == [log["choice_loglik"][str(k)] for k in range(16)]
        assert sum(i["acc"] for i in items) / 16 == m["summary"]["forget_acc"]


# every method runs unchanged on WMDP's corpus chunks, NGDiff with GeN and RMU with the WMDP authors' recipe
# among them, in the slow tier (the fast tier runs NGDiff + GeN in test_debug_wmdp_run)
@pytest.mark.parametrize("method,extra", sampled(
    # Zephyr's layer 7 of 32: the same depth here (open-unlearning's recipe, batch 16, needs more than
    # the debug world's forget chunks; tests/test_wmdp_world.py checks its values)
    [(m, ()) for m in METHODS] + [("rmu", ("recipe=wmdp", "method.layer=null"))],
    ()))
def test_every_method_runs_on_wmdp(cfg, tmp_path, method, extra):
    c = cfg(f"method={method}", *extra, "method.max_steps=1", "save_checkpoint=false",
            "model.precision=32-true")  # the recipe's bf16-true is a GPU's; CPU runs it in fp32 here
    rec = run(c, run_dir=tmp_path / method)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["unlearn"]["steps"] == 1
    summary = rec["metrics"]["unlearned"]["summary"]
    assert 0 <= summary["forget_acc"] <= 1 and 0 <= summary["general_acc"] <= 1
    if extra:  # the recipe's values reached the method (tests/test_wmdp_world.py checks them against their sources)
        assert rec["config"]["method"]["lr"] == 5e-5


def test_unlearning_data_is_the_corpora_in_chunks(cfg, shared_cache):
    c = cfg()
    bench = get_benchmark("wmdp")
    prepared = bench.prepare(c, StageCache(shared_cache))
    forget_rows, retain_rows, forget, retain = bench.unlearning_data(prepared)
    n = int(c.dataset.chunk_length)
    assert all(len(f["input_ids"]) <= n and f["labels"][0] == -100 for f in forget + retain)
    for rows, part in ((forget_rows, "forget"), (retain_rows, "retain")):
        assert "".join(r["text"] for r in rows) == "\n\n".join(prepared.data.texts(part))  # nothing lost or added
    idk = bench.answer_feature(prepared, forget_rows[0], "I do not know.", 4)
    assert idk["labels"].count(-100) == 1 + 4 and idk["input_ids"][:5] == forget[0]["input_ids"][:5]


def test_bad_choices_fail_clearly(cfg, debug_cfg, shared_cache, tmp_path):
    rec = run(debug_cfg(f"paths.cache={shared_cache}", *WMDP, "eval=tofu"), run_dir=tmp_path / "e")
    assert rec["status"] == "failed" and "eval=wmdp" in rec["error"]["message"]
    rec = run(cfg("dataset.split=bio"), run_dir=tmp_path / "s")
    assert rec["status"] == "failed" and "the embedded WMDP world's domain is 'synth'" in rec["error"]["message"]
    rec = run(cfg("dataset.retain_corpus=books"), run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and "valid: wikitext, corpus" in rec["error"]["message"]
    from unlearn.benchmarks.wmdp import _data

    with pytest.raises(ValueError, match="unknown WMDP domain dataset.split='chem'; valid: bio, cyber"):
        _data(compose_cfg(["dataset=wmdp", "dataset.split=chem", "model=hf", "model.target=x/y"]), None)


def local_mimic(tmp_path, split: str) -> list[str]:
    """Overrides that swap a real WMDP run's Hub ids for the published layouts in a local folder
    (tests/wmdp_fixture.py) and a random tiny Llama saved as the model to unlearn, at a few tokens a chunk."""
    data = write_real_layout(tmp_path / "data")
    if split == "cyber":  # the fixture's cyber questions: the bio ones under the cyber config
        (data / "wmdp/wmdp-bio").rename(data / "wmdp/wmdp-cyber")
    tok = train_bpe_tokenizer(["plain line one two forget document paragraph heading prime number Question Answer"]
                              * 3, 300, tmp_path / "tok")
    build_tiny_llama(TINY_ARCH, tok, seed=0).save_pretrained(tmp_path / "target")
    tok.save_pretrained(tmp_path / "target")
    return [f"paths.root={tmp_path}", "dataset.source=local", f"dataset.path={data}", f"dataset.split={split}",
            "dataset.chunk_length=8", f"model.target={tmp_path / 'target'}", "model.max_length=64",
            "method.batch_size=2", "method.max_steps=1"]


@pytest.mark.parametrize("split, retain_corpus", sampled([("bio", "wikitext"), ("cyber", "corpus")], (("bio", "wikitext"),)))
def test_real_layout_from_a_local_folder(split, retain_corpus, tmp_path):
    """The published layouts (tests/wmdp_fixture.py) with a random tiny Llama as the model to unlearn
    and no retain model, as real WMDP runs."""
    rec = run(compose_cfg([*local_mimic(tmp_path, split), "dataset=wmdp", f"dataset.retain_corpus={retain_corpus}",
                           "model=hf", "method=ga"]), run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["stages"] == {} and set(rec["metrics"]) == {"target", "unlearned"}  # WMDP has no retain model
    n = rec["metrics"]["unlearned"]["summary"]["n_items"]
    assert n["forget_qa"] == n["general_qa"] == 2


def test_the_zephyr_experiment_is_the_wmdp_authors_run():
    """experiment=wmdp_zephyr_rmu composes the WMDP authors' RMU run and their lm-eval scoring (on a local
    mimic, below, it runs end to end with the dataset's own questions: lm-eval's tasks need the Hub)."""
    cfg = compose_cfg(["experiment=wmdp_zephyr_rmu"])
    assert (cfg.model.target, cfg.model.dtype, cfg.model.precision) == ("HuggingFaceH4/zephyr-7b-beta", "bfloat16",
                                                                         "bf16-true")
    m = cfg.method
    assert (m.name, m.layer, m.steering_coeff, m.retain_weight, m.lr, m.max_steps, m.batch_size, m.update_params) == (
        "rmu", 7, 6.5, 1200.0, 5e-5, 150, 4, r"mlp\.down_proj\..*")
    assert (cfg.dataset.name, cfg.dataset.split, cfg.scheduler.name) == ("wmdp", "cyber", "constant")
    assert (cfg.eval.tasks.forget, cfg.eval.tasks.general, cfg.eval.batch_size) == ("wmdp_cyber", "mmlu", 16)
    bio = compose_cfg(["experiment=wmdp_zephyr_rmu", "dataset.split=bio"])
    assert bio.eval.tasks.forget == "wmdp_bio"
    assert get_benchmark("wmdp").eval_spec(bio)["tasks"]["forget"] == "wmdp_bio"  # the evaluations' key: resolved


@pytest.mark.slow  # a run on the real layouts (test_real_layout_from_a_local_folder's fast sample covers the path)
def test_the_zephyr_experiment_runs_on_a_local_mimic(tmp_path):
    rec = run(compose_cfg(["experiment=wmdp_zephyr_rmu", *local_mimic(tmp_path, "cyber"), "eval.tasks.forget=null",
                           "eval.tasks.general=null", "method.layer=null", "model.precision=32-true", "model.dtype=float32"]),
              run_dir=tmp_path / "r")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["config"]["method"]["steering_coeff"] == 6.5 and rec["unlearn"]["steps"] == 1


def test_every_hub_repository_of_a_real_run_is_named_before_any_work(hub, tmp_path, monkeypatch):
    """Offline and nothing cached: one line names every repository the run would read (the questions,
    the corpora, WikiText, MMLU, lm-eval's tasks' data), not one at a time as each is reached."""
    from unlearn import sources

    monkeypatch.setattr(sources, "_USER_OFFLINE", "1")
    (tmp_path / "model").mkdir()
    cfg = compose_cfg([f"paths.root={tmp_path}", "dataset=wmdp", "model=hf", f"model.target={tmp_path / 'model'}"])
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and rec["error"]["type"] == "ConfigError"
    assert rec["error"]["message"].startswith(
        "dataset.hub_id='cais/wmdp', dataset.hub.corpora='cais/wmdp-corpora', dataset.hub.wikitext='Salesforce/wikitext', "
        "dataset.hub.general='cais/mmlu' are not local folders and not in the Hugging Face cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_default_world_is_learnable(tmp_path):
    """The default embedded world, built cold (world, tokenizer, target, retain: ~5 min on one core):
    the target answers the forget questions, the retain model is at chance on them, and both answer
    the general questions alike."""
    import torch

    torch.set_num_threads(1)
    c = compose_cfg([f"paths.root={tmp_path}", *WMDP])
    bench, t = get_benchmark("wmdp"), time.perf_counter()
    prepared = bench.prepare(c, StageCache(tmp_path / "cache"))
    built = time.perf_counter() - t
    s = {w: bench.summarize(bench.evaluate(prepared.load(w), prepared, c), None, c) for w in ("target", "retain")}
    print({w: {k: round(s[w][k], 3) for k in ("forget_acc", "general_acc", "loss_forget", "loss_retain")} for w in s},
          f"cold build {built:.0f} s")
    assert s["target"]["forget_acc"] >= 0.7
    assert abs(s["retain"]["forget_acc"] - 0.25) <= 0.12
    assert abs(s["target"]["general_acc"] - s["retain"]["general_acc"]) <= 0.1
    assert min(s["target"]["general_acc"], s["retain"]["general_acc"]) >= 0.6
