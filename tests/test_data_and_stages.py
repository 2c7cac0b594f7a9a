"""TOFU masking/EOS conventions on a real tokenizer, the stage cache, and forget/retain pairing."""
import json
from pathlib import Path

import pytest
import torch

from unlearn.data import collate, encode_qa
from unlearn.batching import PairedBatches
from unlearn.losses import sequence_nll, token_mean_nll
from unlearn.templates import PromptTemplate
from unlearn.stages import StageCache
from unlearn.tokenizer import train_bpe_tokenizer
from unlearn.preparation import replay_rows

TEMPLATE = PromptTemplate("Question: ", "\nAnswer:", " ")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = ["Question: Where was Ada born?\nAnswer: Ada was born in Lima.", "The birthplace of Ada is Lima."] * 20
    return train_bpe_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))


def test_tokenizer_adds_bos_like_llama_and_round_trips(tok):
    ids = tok("Ada was born in Lima.", add_special_tokens=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] != tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "Ada was born in Lima."


def test_encode_qa_masks_the_prompt_and_scores_answer_plus_eos(tok):
    f = encode_qa(tok, TEMPLATE, "Where was Ada born?", "Ada was born in Lima.", max_length=64)
    prompt = tok("Question: Where was Ada born?\nAnswer:", add_special_tokens=True)["input_ids"]
    full = tok("Question: Where was Ada born?\nAnswer: Ada was born in Lima.", add_special_tokens=True)["input_ids"]
    assert full[: len(prompt)] == prompt  # the prompt tokenizes the same inside the full text
    assert f["input_ids"] == full + [tok.eos_token_id]
    assert f["attention_mask"] == [1] * len(full) + [0]
    assert f["labels"] == [-100] * len(prompt) + full[len(prompt):] + [tok.eos_token_id]
    answer_tokens = len(full) - len(prompt)
    assert sum(x != -100 for x in f["labels"]) == answer_tokens + 1  # answer + EOS (TOFU)


def test_encode_qa_truncated_text_gets_no_eos(tok):
    f = encode_qa(tok, TEMPLATE, "Where was Ada born?", "Ada was born in Lima. " * 10, max_length=16)
    assert len(f["input_ids"]) == 16 and tok.eos_token_id not in f["labels"]


def test_sequence_nll_matches_hand_computation():
    # vocab 3, one sequence of 3 positions; labels[0] is never scored (shift), -100 ignored
    logits = torch.log(torch.tensor([[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]]))
    labels = torch.tensor([[-100, 1, 2]])
    s, c = sequence_nll(logits, labels)
    expected = -(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.8)))
    assert torch.allclose(s, expected.unsqueeze(0), atol=1e-6) and c.tolist() == [2]
    labels2 = torch.tensor([[-100, -100, 2]])
    assert torch.allclose(token_mean_nll(logits, labels2), -torch.log(torch.tensor(0.8)), atol=1e-6)


def test_collate_pads_right_with_ignored_labels():
    b = collate([{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 0], "labels": [-100, 2, 3]},
                 {"input_ids": [1], "attention_mask": [1], "labels": [-100]}], pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3], [1, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert b["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]


def test_stage_cache_builds_once_and_rebuilds_on_a_new_spec(tmp_path):
    cache, calls = StageCache(tmp_path), []

    def build(out):
        calls.append(out)
        (out / "x.txt").write_text("artifact")

    a = cache.get_or_build("model", {"lr": 1}, build)
    b = cache.get_or_build("model", {"lr": 1}, build)
    c = cache.get_or_build("model", {"lr": 2}, build)
    assert (a.built, b.built, c.built) == (True, False, True) and len(calls) == 2
    assert a.path == b.path != c.path and (a.path / "x.txt").read_text() == "artifact"
    assert json.loads((a.path / "stage.json").read_text())["spec"] == {"lr": 1}


def test_stage_cache_never_keeps_a_failed_build(tmp_path):
    cache = StageCache(tmp_path)

    def boom(out):
        (out / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("model", {"lr": 1}, boom)
    art = cache.get_or_build("model", {"lr": 1}, lambda out: (out / "ok.txt").write_text("ok"))
    assert art.built and not (art.path / "half.txt").exists()


def feats(n, start=0):
    return [{"input_ids": [i], "attention_mask": [1], "labels": [i]} for i in range(start, start + n)]


def test_pairing_covers_the_forget_set_each_epoch_and_shards_it_across_processes():
    forget, retain = feats(10), feats(50, start=100)
    one = PairedBatches(forget, retain, batch_size=4, seed=3)
    seen = [i for fb, _ in one.epoch(0) for i in fb]
    assert sorted(seen) == list(range(10)) and one.steps_per_epoch == 3
    r0 = PairedBatches(forget, retain, 4, seed=3, rank=0, world=2)
    r1 = PairedBatches(forget, retain, 4, seed=3, rank=1, world=2)
    steps0, steps1 = list(r0.epoch(0)), list(r1.epoch(0))
    for (f0, q0), (f1, q1), (fb, _) in zip(steps0, steps1, one.epoch(0)):
        assert sorted(f0 + f1) == sorted(fb)  # the same global batch, split across the processes
        assert len(q0) == len(f0) and len(q1) == len(f1)  # each forget example has a retain partner
    draws0 = [i for _, q in steps0 for i in q]
    draws1 = [i for _, q in steps1 for i in q]
    assert draws0 != draws1  # processes draw different retain samples
    again = [i for _, q in PairedBatches(forget, retain, 4, seed=3, rank=0, world=2).epoch(0) for i in q]
    assert again == draws0  # ... deterministically
    b = one.batch("retain", [3, 0], pad_id=0, device="cpu")
    assert b["input_ids"].tolist() == [[103], [100]] and b["index"].tolist() == [3, 0]


def test_pairing_rejects_bad_input():
    with pytest.raises(ValueError, match="forget set is empty"):
        PairedBatches([], feats(3), 2, 0)
    with pytest.raises(ValueError, match="divisible"):
        PairedBatches(feats(3), feats(3), 3, 0, rank=0, world=2)


def test_replay_rows_are_a_fixed_seeded_share_of_the_base_corpus():
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(10)]
    assert replay_rows(rows, 0.0, 0) == [] and replay_rows(rows, 1.0, 0) == rows
    half = replay_rows(rows, 0.5, 3)
    assert len(half) == 5 and half == replay_rows(rows, 0.5, 3)  # the same rows every time
    assert half == sorted(half, key=lambda r: int(r["question"][1:]))  # corpus order kept
    assert {r["question"] for r in half} < {r["question"] for r in rows}
    assert any(replay_rows(rows, 0.5, s) != half for s in range(4, 10))  # the seed draws them
    with pytest.raises(ValueError, match="replay_pretrain must be in"):
        replay_rows(rows, 1.5, 0)


def test_finetuning_stages_replay_the_base_corpus(debug_cfg, tmp_path, warm_cache):
    from unlearn.pipeline import run

    # the tiny model's default replays the whole base corpus (replay_pretrain 1.0): warm_cache holds it
    a = run(debug_cfg(f"paths.cache={warm_cache}", "method.max_steps=1", "model.finetune.replay_pretrain=0"),
            run_dir=tmp_path / "a")
    b = run(debug_cfg(f"paths.cache={warm_cache}", "method.max_steps=1"), run_dir=tmp_path / "b")
    n = {}
    for name, rec in (("a", a), ("b", b)):
        n[name] = {s: json.loads((Path(rec["stages"][s]["path"]) / "train_log.json").read_text())["n_examples"]
                   for s in ("target", "retain")}
    world = Path(a["stages"]["world"]["path"])
    pretrain = len((world / "pretrain.json").read_text().splitlines())
    assert a["stages"]["base"]["reused"] and not a["stages"]["target"]["reused"] and b["stages"]["target"]["reused"]
    assert n["b"]["target"] == n["a"]["target"] + pretrain and n["b"]["retain"] == n["a"]["retain"] + pretrain


def test_stage_keys_follow_the_stage_building_code(tmp_path):
    """A change to the code that builds stages gives new keys (a stale model is never reused)."""
    from unlearn.stages import STAGE_CODE, code_fingerprint

    (tmp_path / "unlearn").mkdir()
    (tmp_path / "unlearn" / "train.py").write_text("lr = 1\n")
    before = code_fingerprint(STAGE_CODE, tmp_path)
    (tmp_path / "unlearn" / "train.py").write_text("lr = 2\n")
    after = code_fingerprint(STAGE_CODE, tmp_path)
    assert after != before
    (tmp_path / "unlearn" / "unrelated.py").write_text("x = 1\n")  # not stage-building code
    assert code_fingerprint(STAGE_CODE, tmp_path) == after
    # every pattern names real files: a moved or renamed module must be renamed here too, or it
    # silently leaves the fingerprint
    root = Path(__file__).resolve().parents[1]
    assert not [pat for pat in STAGE_CODE if not list(root.glob(pat))]
    assert len({p for pat in STAGE_CODE for p in root.glob(pat)}) >= 14
