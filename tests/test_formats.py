"""The local fixtures against the published TOFU / MUSE formats, column for column.

The expected layouts are written out here from docs/real_formats.md, which cites where each fact
comes from. They are facts about the Hub datasets, not about our code: when a test here fails
after a code change, the code (or a fixture) moved away from the real format.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.tofu.evaluate import TASK_SOURCES
from unlearn.worlds.muse import (
    MUSE_COLUMNS,
    MUSE_EXTRA_SPLITS,
    MUSE_SPLITS,
    load_muse,
    validate_muse_rows,
)
from unlearn.worlds.tofu import load_tofu, retain_split_for, validate_tofu_rows

FIXTURES = Path(__file__).parent / "fixtures"
TOFU_FIXTURE = FIXTURES / "tofu_real"
MUSE_FIXTURE = FIXTURES / "muse_real"
SHARED_LOGS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tofu_eval_logs"

# --------------------------------------------------------------------------------------------------
# TOFU (locuslab/TOFU): one config per file, each with the single split "train".
# Config names: the Hub README `configs` + file tree (huggingface.co/datasets/locuslab/TOFU, with
# holdout01/05/10.json), open-unlearning configs/data/datasets/TOFU_*.yaml (`name:`, `split: train`).
# Columns: TOFU config/eval_everything.yaml (question_key, answer_key, base_answer_key,
# perturbed_answer_key), open-unlearning TOFU_QA_*.yaml (question_key / answer_key) and
# configs/eval/tofu.yaml (`paraphrased_question` as an alternative question_key), and for
# real_authors_perturbed / world_facts_perturbed the copies in locuslab/tofu data/ (same byte size as
# the Hub files). Perturbed-answer counts: locuslab/tofu's published eval logs (5 for retain / forget,
# 3 for real authors / world facts).
QA = frozenset({"question", "answer"})
AUTHOR_PERTURBED = QA | {"paraphrased_answer", "paraphrased_question", "perturbed_answer"}
REAL_PERTURBED = QA | {"perturbed_answer"}
TOFU_PUBLISHED: dict[str, tuple[frozenset, int | None]] = {  # config -> (columns, n perturbed)
    "full": (QA, None),
    **{f"forget{p}": (QA, None) for p in ("01", "05", "10")},
    **{f"retain{p}": (QA, None) for p in ("90", "95", "99")},
    **{f"holdout{p}": (QA, None) for p in ("01", "05", "10")},
    **{f"forget{p}_perturbed": (AUTHOR_PERTURBED, 5) for p in ("01", "05", "10")},
    "retain_perturbed": (AUTHOR_PERTURBED, 5),
    "real_authors_perturbed": (REAL_PERTURBED, 3),
    "world_facts_perturbed": (REAL_PERTURBED, 3),
    # `real_authors` / `world_facts` (multiple choice: question, option1..4, answer) are published
    # too, but their columns are not verified here and nothing reads them: no fixture.
}
TOFU_FILES = sorted(p.stem for p in TOFU_FIXTURE.glob("*.json"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tofu_fixture_holds_what_the_code_and_open_unlearning_read():
    split = "forget01"
    read = {src.format(split=split) for src, _ in TASK_SOURCES.values()}  # the evaluation
    read |= {split, retain_split_for(split), "full"}  # unlearning; finetuning a target here
    read.add("holdout" + split[len("forget"):])  # the MIA (open-unlearning TOFU_MIA.yaml)
    assert read == set(TOFU_FILES)
    assert set(TOFU_FILES) <= set(TOFU_PUBLISHED)


@pytest.mark.parametrize("name", TOFU_FILES)
def test_tofu_fixture_has_exactly_the_published_columns(name):
    columns, n_perturbed = TOFU_PUBLISHED[name]
    rows = read_jsonl(TOFU_FIXTURE / f"{name}.json")  # JSON lines, as on the Hub
    assert rows
    for row in rows:
        assert set(row) == columns, (name, row)
        assert all(isinstance(row[c], str) and row[c] for c in columns - {"perturbed_answer"})
        if n_perturbed:
            assert len(row["perturbed_answer"]) == n_perturbed
            assert all(isinstance(p, str) and p for p in row["perturbed_answer"])
    ds = validate_tofu_rows(load_tofu(name, source="local", path=TOFU_FIXTURE), name)
    assert ds.to_list() == rows


def test_tofu_fixture_files_relate_as_on_the_hub():
    """forgetXX_perturbed holds forgetXX's items (the Hub's have the same row count); full is
    forget + retain; the holdout authors are in neither; retain_perturbed is drawn from retain."""
    qa = lambda rows: [(r["question"], r["answer"]) for r in rows]  # noqa: E731
    rows = {name: read_jsonl(TOFU_FIXTURE / f"{name}.json") for name in TOFU_FILES}
    assert qa(rows["forget01_perturbed"]) == qa(rows["forget01"])
    assert sorted(qa(rows["full"])) == sorted(qa(rows["retain99"]) + qa(rows["forget01"]))
    assert not set(qa(rows["holdout01"])) & set(qa(rows["full"]))
    assert len(rows["holdout01"]) >= len(rows["forget01_perturbed"])  # the MIA pairs them up
    assert set(qa(rows["retain_perturbed"])) <= set(qa(rows["retain99"]))
    for row in rows["forget01_perturbed"] + rows["retain_perturbed"]:
        assert row["paraphrased_question"] != row["question"]
        assert row["answer"] not in row["perturbed_answer"]


def test_tofu_loader_accepts_the_real_author_and_world_fact_files():
    """TOFU's real_authors_perturbed / world_facts_perturbed have no paraphrased_answer (their
    truth-ratio base is `answer`); the fictitious-author files need it."""
    import datasets

    real = datasets.Dataset.from_dict({"question": ["q"], "answer": ["a"], "perturbed_answer": [["x", "y", "z"]]})
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        assert validate_tofu_rows(real, name) is real
    for name in ("forget01_perturbed", "retain_perturbed", "holdout01_perturbed"):
        with pytest.raises(ValueError, match=rf"'{name}'.*'paraphrased_answer'"):
            validate_tofu_rows(real, name)
    with pytest.raises(ValueError, match=r"'real_authors_perturbed'.*'perturbed_answer'"):
        validate_tofu_rows(datasets.Dataset.from_dict({"question": ["q"], "answer": ["a"]}), "real_authors_perturbed")


@pytest.mark.skipif(not SHARED_LOGS.is_dir(), reason="needs ../shared (TOFU's published eval logs)")
@pytest.mark.parametrize("log, name", [("eval_log.json", "retain_perturbed"), ("eval_log_forget.json", "forget10_perturbed"),
                                       ("eval_real_author_wo_options.json", "real_authors_perturbed"),
                                       ("eval_real_world_wo_options.json", "world_facts_perturbed")])
def test_tofu_perturbed_counts_match_the_published_logs(log, name):
    """Each item of TOFU's own logs (computed on the Hub data) has one loss per perturbed answer."""
    run = next(p for p in sorted(SHARED_LOGS.iterdir()) if p.is_dir())
    losses = json.loads((run / log).read_text(encoding="utf-8"))["average_perturb_loss"]
    assert {len(v) for v in losses.values()} == {TOFU_PUBLISHED[name][1]}


# --------------------------------------------------------------------------------------------------
# MUSE (muse-bench/MUSE-News, muse-bench/MUSE-Books): config -> split -> columns, all strings.
# Source: the Hub READMEs' `dataset_info` (huggingface.co/datasets/muse-bench/MUSE-News and
# .../MUSE-Books, blob/main/README.md); the same names in MUSE's load_data.py (swj0419/muse_bench)
# and open-unlearning's configs/data/datasets/MUSE_*.yaml (text_key / prefix_key / question_key ...).
TEXT = ("text",)
_COMMON = {
    "raw": {s: TEXT for s in ("forget", "retain1", "retain2", "holdout")},
    "verbmem": {"forget": ("prompt", "gt")},
    "knowmem": {s: ("question", "answer") for s in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl")},
    "privleak": {s: TEXT for s in ("forget", "retain", "holdout")},
    "train": {s: TEXT for s in ("forget", "retain1", "retain2")},
}
MUSE_PUBLISHED = {
    "news": {**_COMMON, "scal": {f"forget_{k}": TEXT for k in range(1, 5)},
             "sust": {f"forget_{k}": TEXT for k in range(1, 5)}},
    "books": _COMMON,  # MUSE-Books: 5 subsets, no scal / sust
}
MUSE_FILES = sorted((p.parent.name, p.stem) for p in MUSE_FIXTURE.glob("*/*.json"))


def test_muse_fixture_is_the_news_layout_and_the_loader_knows_it():
    assert set(MUSE_FILES) == {(c, s) for c, splits in MUSE_PUBLISHED["news"].items() for s in splits}
    known = {**MUSE_SPLITS, **MUSE_EXTRA_SPLITS}
    assert {c: set(s) for c, s in known.items()} == {c: set(s) for c, s in MUSE_PUBLISHED["news"].items()}
    for corpus in ("news", "books"):  # what the evaluation reads exists in both corpora
        assert all(set(splits) <= set(MUSE_PUBLISHED[corpus][c]) for c, splits in MUSE_SPLITS.items())
    assert all(MUSE_COLUMNS[c] == MUSE_PUBLISHED["news"][c][s] for c, s in MUSE_FILES)


@pytest.mark.parametrize("config, split", MUSE_FILES)
def test_muse_fixture_has_exactly_the_published_columns(config, split):
    rows = json.loads((MUSE_FIXTURE / config / f"{split}.json").read_text(encoding="utf-8"))
    assert rows
    for row in rows:
        assert tuple(sorted(row)) == tuple(sorted(MUSE_PUBLISHED["news"][config][split])), (config, split)
        assert all(isinstance(v, str) and v for v in row.values())
    ds = validate_muse_rows(load_muse(config, split, source="local", path=MUSE_FIXTURE), config, split)
    assert ds.to_list() == rows


def test_muse_fixture_splits_relate_as_on_the_hub():
    """From the MUSE-News card's byte counts: sust forget_1..4 are disjoint folds, the first being
    raw/forget; scal forget_k is the union of the first k folds; train is scal forget_4 plus raw's
    retain1 / retain2."""
    def texts(config, split):
        return [r["text"] for r in json.loads((MUSE_FIXTURE / config / f"{split}.json").read_text("utf-8"))]

    folds = [texts("sust", f"forget_{k}") for k in range(1, 5)]
    assert folds[0] == texts("raw", "forget")
    assert len({t for f in folds for t in f}) == sum(len(f) for f in folds)
    for k in range(1, 5):
        assert texts("scal", f"forget_{k}") == [t for f in folds[:k] for t in f]
    assert texts("train", "forget") == texts("scal", "forget_4")
    assert texts("train", "retain1") == texts("raw", "retain1")
    assert texts("train", "retain2") == texts("raw", "retain2")


def test_muse_loader_reads_muse_own_data_folder(tmp_path):
    """MUSE's load_data.py writes raw / privleak / scal / sust as JSON arrays of strings and
    verbmem / knowmem as arrays of rows: the same folder loads, texts as a `text` column."""
    (tmp_path / "privleak").mkdir()
    (tmp_path / "verbmem").mkdir()
    texts = ["First article.\n\nSecond paragraph.", "Another \"quoted\" article."]
    (tmp_path / "privleak" / "holdout.json").write_text(json.dumps(texts), encoding="utf-8")
    verbmem = [{"prompt": "A prefix", "gt": "and its continuation."}]
    (tmp_path / "verbmem" / "forget.json").write_text(json.dumps(verbmem), encoding="utf-8")
    ds = validate_muse_rows(load_muse("privleak", "holdout", source="local", path=tmp_path), "privleak", "holdout")
    assert ds.column_names == ["text"] and ds["text"] == texts
    assert load_muse("verbmem", "forget", source="local", path=tmp_path).to_list() == verbmem
    (tmp_path / "privleak" / "forget.json").write_text(json.dumps(["a text", {"text": "a row"}]), encoding="utf-8")
    with pytest.raises(ValueError, match="only strings or only rows"):
        load_muse("privleak", "forget", source="local", path=tmp_path)


def test_muse_loader_accepts_the_other_hub_configs(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or "ds")
    for config, split in (("scal", "forget_4"), ("sust", "forget_1"), ("train", "retain2")):
        assert load_muse(config, split, source="hub") == "ds"
    assert calls[0] == (("muse-bench/MUSE-News", "scal"), {"split": "forget_4"})  # open-unlearning's
    with pytest.raises(ValueError, match=r"'forget_5'.*'scal'.*forget_1, forget_2, forget_3, forget_4"):
        load_muse("scal", "forget_5", source="hub")
