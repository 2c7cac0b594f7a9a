"""The WMDP loaders on local folders in the published layouts (good and bad input), and the
embedded WMDP world (``wmdp_synth``)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.wmdp_fixture import MMLU, QUESTION, write_jsonl, write_real_layout
from unlearn.worlds.wmdp import HUB_IDS, load_wmdp, wmdp_part
from unlearn.worlds.wmdp_synth import DEFAULTS, DOMAIN, generate_wmdp_synth
from unlearn.worlds.wmdp_vocab import FORGET_KINDS, GENERAL_KINDS


@pytest.fixture
def real(tmp_path):
    return write_real_layout(tmp_path / "wmdp_data")


def load(part, domain, root, **kw):
    return load_wmdp(part, domain, source="local", path=root, **kw)


# --------------------------------------------------------------------------------------------------
# Loaders


def test_published_layouts_load(real):
    assert load("forget", "bio", real)["text"] == ["First forget document.", "Second forget document."]
    assert load("forget", "cyber", real)["text"] == ["plain line one", "plain line two"]  # RMU reads lines as they are
    assert load("retain", "cyber", real, retain="corpus")["text"] == ["a JSON string document", "another"]
    assert load("retain", "bio", real)["text"] == ["", " = Heading = \n", "A paragraph.\n"]  # filtered by the benchmark
    q = load("questions", "bio", real)
    assert q["answer"] == [2, 0] and q["choices"][0] == QUESTION["choices"]
    g = load("general", "bio", real)
    assert g["answer"] == [2, 3] and g["subject"] == ["elementary_mathematics"] * 2  # ClassLabel -> its index


def test_json_rows_and_arrays_load(tmp_path):
    write_jsonl(tmp_path / "wmdp/wmdp-cyber/test.json", [QUESTION])
    (tmp_path / "mmlu/all").mkdir(parents=True)
    (tmp_path / "mmlu/all/test.json").write_text(json.dumps([MMLU, MMLU]))
    assert len(load("questions", "cyber", tmp_path)) == 1 and len(load("general", "cyber", tmp_path)) == 2


def test_hub_coordinates():
    def hub(part, domain, retain="wikitext"):
        p = wmdp_part(part, domain, retain)
        return p.hub, p.config, p.split

    assert hub("forget", "bio") == ("bio_forget", None, "train")
    assert hub("forget", "cyber") == ("corpora", "cyber-forget-corpus", "train")
    assert hub("retain", "bio") == ("wikitext", "wikitext-2-raw-v1", "test")
    assert hub("retain", "cyber", "corpus") == ("corpora", "cyber-retain-corpus", "train")
    assert hub("questions", "chem") == ("questions", "wmdp-chem", "test")
    assert hub("general", "bio") == ("general", "all", "test")
    assert HUB_IDS["questions"] == "cais/wmdp" and HUB_IDS["general"] == "cais/mmlu"


@pytest.mark.parametrize("file, content, part, message", [
    ("wmdp/wmdp-bio/test.json", {**QUESTION, "answer": 4}, "questions",
     r"row 0: 'answer' must be the index of the right choice, an integer 0..3, got 4"),
    ("wmdp/wmdp-bio/test.json", {**QUESTION, "answer": "C"}, "questions", r"got 'C'"),
    ("wmdp/wmdp-bio/test.json", {**QUESTION, "choices": ["a", "b", "c"]}, "questions",
     r"'choices' must be a list of 4 strings"),
    ("wmdp/wmdp-bio/test.json", {"question": "q", "answer": 0}, "questions",
     r"row 0 lacks 'choices'; required: question, choices, answer; found: question, answer"),
    ("mmlu/all/test.json", QUESTION, "general", r"lacks 'subject'"),
    ("wmdp-corpora/bio-forget-corpus.jsonl", {"body": "x"}, "forget", r"lacks 'text'"),
    ("wmdp-corpora/bio-forget-corpus.jsonl", {"text": 3}, "forget", r"'text' must be a string, got int"),
])
def test_bad_rows_fail_with_one_line(tmp_path, file, content, part, message):
    write_jsonl(tmp_path / file, [content])
    with pytest.raises(ValueError, match=message) as e:
        load(part, "bio", tmp_path)
    assert file in str(e.value) and "\n" not in str(e.value)  # where, in one line


def test_bad_files_fail_clearly(tmp_path, real):
    (real / "wmdp/wmdp-cyber").mkdir(parents=True)
    (real / "wmdp/wmdp-cyber/test.json").write_text('{"question": "q", "choices": ["a","b","c","d"], "answer": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"wmdp-cyber/test.json' line 2: not JSON"):
        load("questions", "cyber", real)
    with pytest.raises(FileNotFoundError, match=r"WMDP questions data not found .*no wmdp/wmdp-chem/test-\*\.parquet, "
                                                r"wmdp/wmdp-chem/test\.json.*data files there: .*wmdp/wmdp-bio/test-00000"):
        load("questions", "chem", real)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load("forget", "bio", tmp_path / "nowhere")
    (real / "wmdp-corpora/bio-retain-corpus.jsonl").write_text("")
    with pytest.raises(ValueError, match="has no rows"):
        load("retain", "bio", real, retain="corpus")
    with pytest.raises(ValueError, match="unknown WMDP retain corpus 'books'; valid: wikitext, corpus"):
        load("retain", "bio", real, retain="books")
    with pytest.raises(ValueError, match="unknown WMDP part 'holdout'"):
        load("holdout", "bio", real)


# --------------------------------------------------------------------------------------------------
# The embedded world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("wmdp_synth")
    manifest = generate_wmdp_synth({}, out)
    parts = {p: list(load_wmdp(p, DOMAIN, source="local", path=out, retain="corpus")) for p in
             ("forget", "retain", "questions", "general")}
    return out, manifest, parts


def test_layout_is_what_the_loader_reads(world):
    out, manifest, parts = world
    written = {str(p.relative_to(out)) for p in out.rglob("*.json*")}
    assert written == set(manifest["files"]) | {"manifest.json"}
    assert manifest["config"] == DEFAULTS and manifest["domain"] == DOMAIN
    n_f, n_g = DEFAULTS["n_forget_entities"], DEFAULTS["n_general_entities"]
    assert [len(parts[p]) for p in parts] == [n_f, n_g, 4 * n_f, 4 * n_g]
    assert set(parts["questions"][0]) == {"question", "choices", "answer"}  # WMDP's columns exactly
    assert set(parts["general"][0]) == {"question", "subject", "choices", "answer"}  # MMLU's
    assert {r["subject"] for r in parts["general"]} == {k.subject for k in GENERAL_KINDS}


def test_documents_state_the_facts_their_questions_ask(world):
    _, manifest, parts = world
    for side, corpus, qa in (("forget", "forget", "questions"), ("general", "retain", "general")):
        entities = manifest["entities"][side]
        for e, doc in zip(entities, parts[corpus]):
            assert e["name"] in doc["text"] and all(v in doc["text"] for v in e["facts"].values())
        for row, src in zip(parts[qa], manifest["question_sources"][side]):
            e = entities[src["entity"]]
            assert e["name"] in row["question"] and row["choices"][row["answer"]] == e["facts"][src["attribute"]]


def test_choices_are_fair(world):
    _, manifest, parts = world
    pools = {a.key: set(a.values) for k in FORGET_KINDS + GENERAL_KINDS for a in k.attributes}
    values = [v for k in FORGET_KINDS + GENERAL_KINDS for a in k.attributes for v in a.values]
    assert len(set(values)) == len(values) and min(map(len, pools.values())) >= 4  # one pool per value
    for side, qa in (("forget", "questions"), ("general", "general")):
        rows, sources = parts[qa], manifest["question_sources"][side]
        for row, src in zip(rows, sources):
            assert len(set(row["choices"])) == 4  # no distractor equals the answer (or another distractor)
            assert set(row["choices"]) <= pools[src["attribute"]]  # all from the attribute's own pool
        positions = Counter(r["answer"] for r in rows)
        assert max(positions.values()) - min(positions.values()) <= 1 and set(positions) == {0, 1, 2, 3}
        # answers are dealt evenly over each attribute's pool: no value is a safe guess
        for attr in {s["attribute"] for s in sources}:
            counts = Counter(r["choices"][r["answer"]] for r, s in zip(rows, sources) if s["attribute"] == attr)
            assert max(counts.values()) - min(counts.values()) <= 1


def test_forget_domain_stays_out_of_general_text(world):
    _, manifest, parts = world
    general_text = " ".join(r["text"] for r in parts["retain"]) + " ".join(
        r["question"] + " ".join(r["choices"]) for r in parts["general"])
    forget_words = {w for e in manifest["entities"]["forget"] for w in [e["name"].split()[0], *e["facts"].values()]}
    assert not [w for w in forget_words if w in general_text]
    assert len({e["name"] for side in ("forget", "general") for e in manifest["entities"][side]}) == \
        DEFAULTS["n_forget_entities"] + DEFAULTS["n_general_entities"]


def test_deterministic_and_seed_dependent(world, tmp_path):
    out, _, _ = world
    generate_wmdp_synth({"seed": 0}, tmp_path / "again")
    for path in out.rglob("*.json*"):
        assert (tmp_path / "again" / path.relative_to(out)).read_bytes() == path.read_bytes(), path
    generate_wmdp_synth({"seed": 1}, tmp_path / "other")
    assert (tmp_path / "other/wmdp/wmdp-synth/test.json").read_bytes() != (out / "wmdp/wmdp-synth/test.json").read_bytes()


@pytest.mark.parametrize("cfg, message", [
    ({"n_forget_entities": 0}, "`n_forget_entities` must be >= 1"),
    ({"n_general_entities": 2.5}, "`n_general_entities` must be an integer"),
    ({"n_forget_entities": 1000}, "1000 entities of resonance craft but only 120 distinct names"),
])
def test_bad_sizes_fail_clearly(tmp_path, cfg, message):
    with pytest.raises(ValueError, match=message):
        generate_wmdp_synth(cfg, tmp_path)
