"""The embedded TOFU world (``tofu_synth``) and the TOFU loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn.worlds.tofu import (
    FORGET_TO_RETAIN,
    load_tofu,
    retain_split_for,
    validate_tofu_rows,
)
from unlearn.worlds.tofu_synth import DEFAULTS, generate_tofu_synth
from unlearn.worlds.tofu_vocab import ATTRIBUTES

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_real"
QA_KEYS = {"question", "answer"}
AUTHOR_PERTURBED_KEYS = QA_KEYS | {"paraphrased_answer", "perturbed_answer", "paraphrased_question"}
REAL_PERTURBED_KEYS = QA_KEYS | {"paraphrased_answer", "perturbed_answer"}
SPLITS = {"forget01": ("retain99", "holdout01"), "forget05": ("retain95", "holdout05"),
          "forget10": ("retain90", "holdout10")}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("tofu_synth")
    manifest = generate_tofu_synth({}, out)
    rows = {p.stem: read_jsonl(p) for p in out.glob("*.json") if p.stem != "manifest"}
    return out, manifest, rows


def row_authors(rows: list[dict], names: list[str]) -> list[str]:
    """The author each row is about (exactly one name of `names` must occur in the question)."""
    found = []
    for row in rows:
        hits = [n for n in names if n in row["question"]]
        assert len(hits) == 1, row
        found.append(hits[0])
    return found


# --------------------------------------------------------------------------------------------------
# Generator


def test_files_and_manifest(world):
    out, manifest, rows = world
    expected = {"full", "retain_perturbed", "real_authors", "real_authors_perturbed", "world_facts",
                "world_facts_perturbed", "pretrain"}
    for forget, (retain, holdout) in SPLITS.items():
        expected |= {forget, f"{forget}_perturbed", retain, holdout, f"{holdout}_perturbed"}
    assert set(rows) == expected
    assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["generator"] == "tofu_synth" and manifest["version"] == 1
    assert manifest["config"] == DEFAULTS
    assert manifest["files"] == {name: len(r) for name, r in rows.items()}
    for forget, (retain, holdout) in SPLITS.items():
        assert manifest["splits"][forget]["retain"] == retain == FORGET_TO_RETAIN[forget]
        assert manifest["splits"][forget]["holdout"] == holdout


def test_schema_exact(world):
    _, _, rows = world
    for name, file_rows in rows.items():
        if name in ("real_authors_perturbed", "world_facts_perturbed"):
            keys, n_perturbed = REAL_PERTURBED_KEYS, 3
        elif name.endswith("_perturbed"):
            keys, n_perturbed = AUTHOR_PERTURBED_KEYS, 5
        else:
            keys, n_perturbed = QA_KEYS, None
        for row in file_rows:
            assert set(row) == keys, name
            assert all(isinstance(row[k], str) for k in keys - {"perturbed_answer"})
            if n_perturbed is not None:
                assert len(row["perturbed_answer"]) == n_perturbed, name
                assert all(isinstance(p, str) for p in row["perturbed_answer"])
            assert len(row["answer"].split()) <= 20


def test_splits_by_author_complementary_and_nested(world):
    _, manifest, rows = world
    names, qa = manifest["authors"]["full"], DEFAULTS["qa_per_author"]
    full = rows["full"]
    assert len(full) == len(names) * qa
    # Author-major order: author i owns rows [i*qa, (i+1)*qa).
    assert row_authors(full, names) == [n for n in names for _ in range(qa)]
    expected_k = {"forget01": 1, "forget05": 2, "forget10": 4}  # max(1, round(40 * pct / 100))
    previous: list[dict] = []
    for forget, (retain, _) in SPLITS.items():
        k = expected_k[forget]
        assert manifest["splits"][forget]["authors"] == names[-k:]
        assert len(rows[forget]) == k * qa
        assert rows[retain] + rows[forget] == full  # complementary, rows and order
        assert set(row_authors(rows[forget], names)) == set(names[-k:])
        assert set(row_authors(rows[retain], names)).isdisjoint(names[-k:])
        if previous:  # nested: forget01 ⊂ forget05 ⊂ forget10, all taken from the end of `full`
            assert rows[forget][-len(previous):] == previous
        previous = rows[forget]
        perturbed = rows[f"{forget}_perturbed"]
        assert [{k: r[k] for k in QA_KEYS} for r in perturbed] == rows[forget]


def test_perturbed_answers_are_wrong_facts_in_the_paraphrase_template(world):
    _, manifest, rows = world
    names = manifest["authors"]["full"] + manifest["authors"]["holdout"]
    checked = 0
    for name, file_rows in rows.items():
        if not name.endswith("_perturbed") or name.startswith(("real_", "world_")):
            continue
        for row, author in zip(file_rows, row_authors(file_rows, names)):
            perturbed = row["perturbed_answer"]
            assert len(set(perturbed)) == 5
            assert row["paraphrased_answer"] != row["answer"]
            assert row["paraphrased_question"] != row["question"]
            assert row["answer"] not in perturbed and row["paraphrased_answer"] not in perturbed
            # Same template B as the paraphrase: the texts differ only after the template prefix.
            prefixes = [a.template_b.split("{value}")[0].format(name=author) for a in ATTRIBUTES]
            prefix = max((p for p in prefixes if row["paraphrased_answer"].startswith(p)), key=len)
            assert all(p.startswith(prefix) for p in perturbed)
            checked += 1
    assert checked > 0


def test_retain_perturbed_comes_from_the_common_retain_authors(world):
    _, manifest, rows = world
    n = DEFAULTS["n_retain_perturbed"]
    rp = rows["retain_perturbed"]
    assert len(rp) == n
    assert [{"question": r["question"], "answer": r["answer"]} for r in rp] == rows["full"][:n]
    common = set(manifest["authors"]["full"][:-4])  # outside the largest forget set (forget10)
    assert set(row_authors(rp, manifest["authors"]["full"])) <= common


def test_holdout_authors_never_in_full(world):
    _, manifest, rows = world
    holdout, full_names = manifest["authors"]["holdout"], manifest["authors"]["full"]
    assert len(holdout) == DEFAULTS["n_holdout_authors"]
    assert set(holdout).isdisjoint(full_names)
    text = json.dumps(rows["full"])
    assert not any(h in text for h in holdout)
    for forget, (_, holdout_name) in SPLITS.items():
        k = len(manifest["splits"][forget]["authors"])
        assert len(rows[holdout_name]) == k * DEFAULTS["qa_per_author"]
        assert set(row_authors(rows[holdout_name], holdout)) == set(holdout[:k])


def test_real_authors_and_world_facts_are_in_pretrain(world):
    _, manifest, rows = world
    pretrain = {(r["question"], r["answer"]) for r in rows["pretrain"]}
    famous = manifest["authors"]["famous"]
    assert len(rows["pretrain"]) == (len(famous) * len(ATTRIBUTES) * 2 + DEFAULTS["n_world_facts"])
    assert not any(f in json.dumps(rows["full"]) for f in famous)
    for name in ("real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed"):
        assert rows[name], name
        for row in rows[name]:
            assert (row["question"], row["answer"]) in pretrain, row
    # The paraphrase of every real-author fact was also seen by the base model.
    pretrain_answers = {a for _, a in pretrain}
    for row in rows["real_authors_perturbed"]:
        assert row["paraphrased_answer"] in pretrain_answers
        assert row["paraphrased_answer"] != row["answer"]
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        for row in rows[name]:
            perturbed = row["perturbed_answer"]
            assert len(set(perturbed)) == 3 and row["answer"] not in perturbed
    # RA perturbed answers use the answer's own template (TOFU's RA truth-ratio base is `answer`).
    for row in rows["real_authors_perturbed"]:
        author = next(f for f in famous if f in row["question"])
        prefixes = [a.template_a.split("{value}")[0].format(name=author) for a in ATTRIBUTES]
        prefix = max((p for p in prefixes if row["answer"].startswith(p)), key=len)
        assert all(p.startswith(prefix) for p in row["perturbed_answer"])
    assert len(rows["world_facts"]) == DEFAULTS["n_world_facts"]
    assert len({r["question"] for r in rows["world_facts"]}) == DEFAULTS["n_world_facts"]


def test_deterministic_and_seed_dependent(world, tmp_path):
    out, _, _ = world
    again = generate_tofu_synth({"seed": 0}, tmp_path / "again")
    for path in out.glob("*.json"):
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name
    other = generate_tofu_synth({"seed": 1}, tmp_path / "other")
    assert other["authors"] != again["authors"]
    assert (tmp_path / "other" / "full.json").read_bytes() != (out / "full.json").read_bytes()


def test_dictconfig_small_world_and_few_holdout_authors(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({
        "name": "tofu_synth", "seed": 3, "n_authors": 10, "qa_per_author": 14,
        "n_holdout_authors": 0, "n_famous_authors": 2, "n_world_facts": 5, "n_retain_perturbed": 20,
        "forget_percents": {"forget10": 10, "forget20": 20},
    })
    manifest = generate_tofu_synth(cfg, tmp_path)
    assert manifest["files"]["forget10"] == 14 and manifest["files"]["retain90"] == 126
    assert manifest["files"]["forget20"] == 28 and manifest["files"]["retain80"] == 112
    assert manifest["splits"]["forget10"]["holdout"] is None
    assert not (tmp_path / "holdout10.json").exists()
    json.dumps(manifest)  # plain types only

    manifest = generate_tofu_synth({"n_authors": 10, "n_holdout_authors": 1}, tmp_path / "h")
    assert manifest["files"]["holdout10"] == manifest["files"]["holdout01"] == 10
    assert manifest["splits"]["forget10"]["holdout_authors"] == manifest["authors"]["holdout"]


@pytest.mark.parametrize("cfg, match", [
    ({"qa_per_author": len(ATTRIBUTES) + 1}, "qa_per_author"),
    ({"n_authors": 4, "qa_per_author": 5}, "n_retain_perturbed"),
    ({"n_authors": 2, "forget_percents": {"forget50": 50, "forget90": 90}}, "forget90"),
    ({"forget_percents": {"retain05": 5}}, "forget"),
    ({"n_world_facts": 10_000}, "n_world_facts"),
    ({"n_authors": "40"}, "n_authors"),
])
def test_bad_config_is_a_clear_error(cfg, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        generate_tofu_synth(cfg, tmp_path)


# --------------------------------------------------------------------------------------------------
# Loader


def test_load_generated_world(world):
    out, manifest, _ = world
    for name in ("forget05", "retain95", "forget05_perturbed", "retain_perturbed", "pretrain",
                 "real_authors_perturbed", "world_facts_perturbed", "holdout05_perturbed"):
        ds = validate_tofu_rows(load_tofu(name, source="local", path=out), name)
        assert len(ds) == manifest["files"][name]
    ds = load_tofu("forget01_perturbed", source="local", path=str(out))
    assert ds[0] == read_jsonl(out / "forget01_perturbed.json")[0]


@pytest.mark.parametrize("name, n, n_perturbed", [
    ("forget01", 4, None), ("retain99", 4, None), ("forget01_perturbed", 4, 5),
    ("retain_perturbed", 3, 5), ("real_authors_perturbed", 3, 3), ("world_facts_perturbed", 3, 3),
])
def test_load_real_format_fixture(name, n, n_perturbed):
    ds = validate_tofu_rows(load_tofu(name, source="local", path=FIXTURE), name)
    assert len(ds) == n
    if n_perturbed:
        assert all(len(p) == n_perturbed for p in ds["perturbed_answer"])


def test_load_json_array_file(tmp_path):
    rows = read_jsonl(FIXTURE / "forget01_perturbed.json")
    (tmp_path / "forget01_perturbed.json").write_text(json.dumps(rows), encoding="utf-8")
    ds = validate_tofu_rows(load_tofu("forget01_perturbed", source="local", path=tmp_path),
                            "forget01_perturbed")
    assert ds.to_list() == rows


def test_load_hub_calls_datasets(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or "ds")
    assert load_tofu("forget10_perturbed", source="hub") == "ds"
    assert load_tofu("retain90", source="hub", hub_id="me/TOFU-copy") == "ds"
    assert calls == [(("locuslab/TOFU", "forget10_perturbed"), {"split": "train"}),
                     (("me/TOFU-copy", "retain90"), {"split": "train"})]


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"forget07\.json.*forget01.*retain99"):
        load_tofu("forget07", source="local", path=FIXTURE)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tofu("forget01", source="local", path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs `path`"):
        load_tofu("forget01", source="local")
    with pytest.raises(ValueError, match=r"'ftp'.*local, hub"):
        load_tofu("forget01", source="ftp", path=FIXTURE)


def test_retain_split_for():
    assert [retain_split_for(f) for f in ("forget01", "forget05", "forget10")] == [
        "retain99", "retain95", "retain90"]
    with pytest.raises(ValueError, match=r"'forget20'.*forget01, forget05, forget10"):
        retain_split_for("forget20")


def test_validate_reports_file_and_column():
    import datasets

    qa_only = datasets.Dataset.from_dict({"question": ["q"], "answer": ["a"]})
    assert validate_tofu_rows(qa_only, "forget01") is qa_only
    missing_both = r"'forget01_perturbed'.*'paraphrased_answer'.*'perturbed_answer'"
    with pytest.raises(ValueError, match=missing_both):
        validate_tofu_rows(qa_only, "forget01_perturbed")
    with pytest.raises(ValueError, match=r"'retain99'.*'answer'"):
        validate_tofu_rows(datasets.Dataset.from_dict({"question": ["q"]}), "retain99")
    not_a_list = datasets.Dataset.from_dict(
        {"question": ["q"], "answer": ["a"], "paraphrased_answer": ["p"], "perturbed_answer": ["x"]}
    )
    with pytest.raises(ValueError, match=r"'world_facts_perturbed'.*list of strings"):
        validate_tofu_rows(not_a_list, "world_facts_perturbed")
