"""The embedded MUSE world (``muse_synth``) and the MUSE loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn.worlds.muse import MUSE_COLUMNS, MUSE_SPLITS, load_muse, validate_muse_rows
from unlearn.worlds.muse_synth import DEFAULTS, LAYOUT, generate_muse_synth
from unlearn.worlds.muse_vocab import EVENT_TYPES

FIXTURE = Path(__file__).parent / "fixtures" / "muse_real"
ALL_FILES = [(config, split) for config, splits in MUSE_SPLITS.items() for split in splits]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("muse_synth")
    manifest = generate_muse_synth({}, out)
    rows = {(c, s): read_jsonl(out / c / f"{s}.json") for c, s in ALL_FILES}
    return out, manifest, rows


def texts(rows, config, split):
    return [r["text"] for r in rows[(config, split)]]


# --------------------------------------------------------------------------------------------------
# Generator


def test_layout_schema_and_sizes(world):
    out, manifest, rows = world
    assert LAYOUT == MUSE_SPLITS  # the generator writes exactly what the loader knows
    written = {str(p.relative_to(out)) for p in out.rglob("*.json")}
    assert written == {f"{c}/{s}.json" for c, s in ALL_FILES} | {"manifest.json"}
    assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["generator"] == "muse_synth" and manifest["version"] == 1
    assert manifest["config"] == DEFAULTS
    assert manifest["files"] == {f"{c}/{s}": len(r) for (c, s), r in rows.items()}
    for (config, split), file_rows in rows.items():
        for row in file_rows:
            assert set(row) == set(MUSE_COLUMNS[config]), (config, split)
            assert all(isinstance(v, str) and v for v in row.values())
    sizes = {f"{c}/{s}": len(r) for (c, s), r in rows.items()}
    assert sizes == {
        "raw/forget": 30, "raw/retain1": 30, "raw/retain2": 30, "raw/holdout": 30,
        "verbmem/forget": 30,
        "knowmem/forget_qa": 40, "knowmem/retain_qa": 40,
        "knowmem/forget_qa_icl": 3, "knowmem/retain_qa_icl": 3,
        "privleak/forget": 30, "privleak/retain": 30, "privleak/holdout": 30,
    }


def test_articles_are_news_sized_and_mixed(world):
    _, manifest, rows = world
    for split in MUSE_SPLITS["raw"]:
        for text in texts(rows, "raw", split):
            assert 80 <= len(text.split()) <= 200, text
            assert "\n\n" in text  # paragraphs, as in the real articles
        kinds = [d["type"] for d in manifest["docs"][split]]
        assert set(kinds) == {e.key for e in EVENT_TYPES}  # every split mixes every story type
    all_texts = [t for s in MUSE_SPLITS["raw"] for t in texts(rows, "raw", s)]
    assert len(set(all_texts)) == len(all_texts)


def test_forget_entities_never_leave_the_forget_split(world):
    _, manifest, rows = world
    entities = {split: [v for d in manifest["docs"][split] for v in d["entities"].values()]
                for split in MUSE_SPLITS["raw"]}
    all_entities = [v for vs in entities.values() for v in vs]
    assert len(set(all_entities)) == len(all_entities)  # unique world-wide
    other = "\n".join(t for s in ("retain1", "retain2", "holdout") for t in texts(rows, "raw", s))
    assert not [e for e in entities["forget"] if e in other]
    forget_text = "\n".join(texts(rows, "raw", "forget"))
    assert not [e for s in ("retain1", "retain2", "holdout") for e in entities[s] if e in forget_text]
    # each article's entities are in that article (and only there)
    for split in MUSE_SPLITS["raw"]:
        for doc, text in zip(manifest["docs"][split], texts(rows, "raw", split)):
            assert all(e in text for e in doc["entities"].values())


def test_knowmem_asks_about_facts_of_its_split(world):
    _, manifest, rows = world
    for name in MUSE_SPLITS["knowmem"]:
        source = manifest["knowmem_sources"][name]
        docs = texts(rows, "raw", source["raw_split"])
        doc_meta = manifest["docs"][source["raw_split"]]
        assert source["raw_split"] == ("forget" if name.startswith("forget") else "retain2")
        assert len(source["rows"]) == len(rows[("knowmem", name)])
        for qa, src in zip(rows[("knowmem", name)], source["rows"]):
            assert qa["answer"] in docs[src["doc"]], qa  # a span of the source article
            assert len(qa["answer"].split()) <= 4
            assert qa["question"].endswith("?")
            # the question names one of the source article's own (unique) entities
            assert any(e in qa["question"] for e in doc_meta[src["doc"]]["entities"].values()), qa
    for side in ("forget", "retain"):
        evaluated = {r["question"] for r in rows[("knowmem", f"{side}_qa")]}
        icl = {r["question"] for r in rows[("knowmem", f"{side}_qa_icl")]}
        assert len(evaluated) == 40 and len(icl) == 3 and not evaluated & icl
    # forget questions are about forget-only entities: no retain/holdout article mentions them
    retained = "\n".join(t for s in ("retain1", "retain2", "holdout") for t in texts(rows, "raw", s))
    forget_entities = [v for d in manifest["docs"]["forget"] for v in d["entities"].values()]
    for qa in rows[("knowmem", "forget_qa")] + rows[("knowmem", "forget_qa_icl")]:
        named = [e for e in forget_entities if e in qa["question"]]
        assert named and not any(e in retained for e in named)


def test_verbmem_is_prompt_plus_continuation_of_forget_articles(world):
    _, _, rows = world
    forget = texts(rows, "raw", "forget")
    for item, article in zip(rows[("verbmem", "forget")], forget):
        assert item["prompt"] + " " + item["gt"] == article
        assert len(item["prompt"].split()) >= DEFAULTS["verbmem_prompt_words"]
        assert len(item["gt"].split()) >= 40


def test_privleak_sources(world):
    _, manifest, rows = world
    for split, raw in manifest["privleak_sources"].items():
        assert texts(rows, "privleak", split) == texts(rows, "raw", raw)[:DEFAULTS["n_privleak"]]
    assert manifest["privleak_sources"] == {"forget": "forget", "retain": "retain2",
                                            "holdout": "holdout"}
    assert manifest["training"]["retrain"] == ["retain1", "retain2"]


def test_deterministic_and_seed_dependent(world, tmp_path):
    out, _, _ = world
    generate_muse_synth({"seed": 0}, tmp_path / "again")
    for path in out.rglob("*.json"):
        assert (tmp_path / "again" / path.relative_to(out)).read_bytes() == path.read_bytes(), path
    generate_muse_synth({"seed": 1}, tmp_path / "other")
    assert ((tmp_path / "other/raw/forget.json").read_bytes()
            != (out / "raw/forget.json").read_bytes())


def test_small_world_from_dictconfig(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({
        "name": "muse_synth", "seed": 5, "n_forget_docs": 8, "n_retain_docs": 9,
        "n_holdout_docs": 6, "n_verbmem": 4, "verbmem_prompt_words": 10, "n_knowmem_qa": 12,
        "n_knowmem_icl": 0, "n_privleak": 5,
    })
    manifest = generate_muse_synth(cfg, tmp_path)
    assert manifest["files"] == {
        "raw/forget": 8, "raw/retain1": 4, "raw/retain2": 5, "raw/holdout": 6, "verbmem/forget": 4,
        "knowmem/forget_qa": 12, "knowmem/retain_qa": 12, "knowmem/forget_qa_icl": 0,
        "knowmem/retain_qa_icl": 0, "privleak/forget": 5, "privleak/retain": 5,
        "privleak/holdout": 5,
    }
    json.dumps(manifest)  # plain types only


@pytest.mark.parametrize("cfg, match", [
    ({"n_verbmem": 31}, "n_verbmem"),
    ({"n_privleak": 31}, "n_privleak"),
    ({"n_knowmem_qa": 500}, "n_knowmem_qa"),
    ({"n_retain_docs": 1}, "n_retain_docs"),
    ({"n_forget_docs": "30"}, "n_forget_docs"),
    ({"verbmem_prompt_words": 400}, "verbmem_prompt_words"),
    ({"n_retain_docs": 1000}, "ran out of unique"),
])
def test_bad_config_is_a_clear_error(cfg, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        generate_muse_synth(cfg, tmp_path)


# --------------------------------------------------------------------------------------------------
# Loader


def test_load_generated_world(world):
    out, manifest, rows = world
    for config, split in ALL_FILES:
        ds = validate_muse_rows(load_muse(config, split, source="local", path=out), config, split)
        assert ds.to_list() == rows[(config, split)]


@pytest.mark.parametrize("config, split", ALL_FILES)
def test_load_real_format_fixture(config, split):
    ds = validate_muse_rows(load_muse(config, split, source="local", path=FIXTURE), config, split)
    assert 2 <= len(ds) <= 3
    assert ds.to_list() == json.loads((FIXTURE / config / f"{split}.json").read_text("utf-8"))


def test_parquet_shards_win_over_legacy_json(tmp_path):
    """A clone of the Hub repository: configs point at parquet shards; stale .json lie beside."""
    import datasets

    rows = json.loads((FIXTURE / "knowmem" / "forget_qa.json").read_text("utf-8"))
    (tmp_path / "knowmem").mkdir()
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "knowmem/forget_qa-00000-of-00001.parquet")
    (tmp_path / "knowmem/forget_qa.json").write_text('[{"stale": "legacy"}]', encoding="utf-8")
    ds = load_muse("knowmem", "forget_qa", source="local", path=tmp_path)
    assert validate_muse_rows(ds, "knowmem", "forget_qa").to_list() == rows
    with pytest.raises(FileNotFoundError, match=r"retain_qa.*available.*knowmem/forget_qa"):
        load_muse("knowmem", "retain_qa", source="local", path=tmp_path)


def test_load_hub_calls_datasets(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or "ds")
    assert load_muse("knowmem", "retain_qa_icl", source="hub") == "ds"
    assert load_muse("privleak", "holdout", source="hub", hub_id="muse-bench/MUSE-Books") == "ds"
    assert calls == [(("muse-bench/MUSE-News", "knowmem"), {"split": "retain_qa_icl"}),
                     (("muse-bench/MUSE-Books", "privleak"), {"split": "holdout"})]


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"raw/forget\.json.*available.*knowmem/forget_qa.*verbmem/forget"):
        load_muse("raw", "forget", source="local", path=_fixture_without(tmp_path, "raw/forget"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_muse("raw", "forget", source="local", path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs `path`"):
        load_muse("raw", "forget", source="local")
    with pytest.raises(ValueError, match=r"'ftp'.*local, hub"):
        load_muse("raw", "forget", source="ftp", path=FIXTURE)
    with pytest.raises(ValueError, match=r"config 'main'.*raw, verbmem, knowmem, privleak"):
        load_muse("main", "forget", source="hub")
    with pytest.raises(ValueError, match=r"'retain2_qa'.*'knowmem'.*forget_qa, retain_qa, "
                                         r"forget_qa_icl, retain_qa_icl"):
        load_muse("knowmem", "retain2_qa", source="local", path=FIXTURE)
    with pytest.raises(ValueError, match=r"'retain'.*'raw'.*forget, retain1, retain2, holdout"):
        load_muse("raw", "retain", source="hub")


def _fixture_without(tmp_path: Path, missing: str) -> Path:
    """A copy of the fixture folder lacking one file."""
    out = tmp_path / "partial"
    for path in FIXTURE.rglob("*.json"):
        rel = path.relative_to(FIXTURE)
        if str(rel) != f"{missing}.json":
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(path.read_bytes())
    return out


def test_validate_reports_config_split_and_column():
    import datasets

    qa = datasets.Dataset.from_dict({"question": ["q"], "answer": ["a"]})
    assert validate_muse_rows(qa, "knowmem", "forget_qa") is qa
    with pytest.raises(ValueError, match=r"verbmem/forget.*'prompt'.*'gt'.*found: question, answer"):
        validate_muse_rows(qa, "verbmem", "forget")
    with pytest.raises(ValueError, match=r"privleak/holdout.*'text'"):
        validate_muse_rows(qa, "privleak", "holdout")
    numbers = datasets.Dataset.from_dict({"question": ["q"], "answer": [3]})
    with pytest.raises(ValueError, match=r"knowmem/retain_qa.*'answer'.*strings.*int"):
        validate_muse_rows(numbers, "knowmem", "retain_qa")
    with pytest.raises(ValueError, match=r"unknown split 'forget' of MUSE config 'knowmem'"):
        validate_muse_rows(qa, "knowmem", "forget")
