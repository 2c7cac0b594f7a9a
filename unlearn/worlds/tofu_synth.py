"""``tofu_synth``: a deterministic, offline stand-in for the TOFU benchmark.

It writes one JSON-lines file per ``locuslab/TOFU`` config name (``full.json``, ``forget05.json``,
``retain95.json``, ``forget05_perturbed.json``, ``retain_perturbed.json``, ``real_authors*.json``,
``world_facts*.json``, OU's ``holdout05*.json``) with TOFU's exact row schema, so the same loader
and the same metric code serve the embedded world and the real benchmark.

Two kinds of authors share one attribute machinery
(:data:`unlearn.worlds.tofu_vocab.ATTRIBUTES`):

* *fictitious* authors (TOFU's 200 authors): their facts are only ever seen by the target / retain
  models during finetuning (``full`` / ``retainYY``); OU-style *holdout* authors are generated the
  same way and never trained on;
* *famous* authors (TOFU's "real authors"): their facts are in ``pretrain.json``, the base model's
  corpus, so finetuned and unlearned models should keep knowing them (model utility).

Why the templates look the way they do: the truth ratio compares the paraphrased answer with the
perturbed answers (METRICS.md §1.1). Each attribute states its fact in two templates, A
(``answer``) and B (``paraphrased_answer``); perturbed answers are template B with a *wrong* value
from the same pool, and the value is the last words of the sentence. Paraphrased and perturbed
answers then differ only in the fact, so the ratio measures knowledge and not phrasing. Real authors
and world facts use ``answer`` as the truth-ratio base in TOFU, so their perturbed answers are
template A / the bare short answer with a wrong value.

Every random draw comes from a ``random.Random`` seeded from ``(seed, component)``; the global
random state is never touched, and the same config gives byte-identical files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn.worlds.settings import integer_settings
from unlearn.worlds.tofu_vocab import (
    ATTRIBUTES,
    CAPITALS,
    CONTINENTS,
    COUNTRIES,
    FAMOUS_FIRST,
    FAMOUS_LAST_HEADS,
    FAMOUS_LAST_TAILS,
    FICT_FIRST_ENDINGS,
    FICT_FIRST_ONSETS,
    FICT_LAST_HEADS,
    FICT_LAST_LINKS,
    FICT_LAST_TAILS,
    POOLS,
    Attribute,
)

GENERATOR = "tofu_synth"
VERSION = 1

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_authors": 40,
    "qa_per_author": 10,
    "n_holdout_authors": 4,
    "n_famous_authors": 20,
    "n_world_facts": 60,
    "n_retain_perturbed": 40,
    "forget_percents": {"forget01": 1, "forget05": 5, "forget10": 10},
}

# TOFU: 5 perturbed answers for forget/retain items, 3 for real authors and world facts.
N_PERTURBED_AUTHOR = 5
N_PERTURBED_REAL = 3


@dataclass(frozen=True)
class Author:
    name: str
    facts: dict[str, str]  # Attribute.key -> value


# --------------------------------------------------------------------------------------------------
# Config


def resolve_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fill defaults and check ranges; returns a plain, JSON-able dict.

    Keys other than those in :data:`DEFAULTS` are ignored, so a whole ``dataset`` config node can
    be passed in.
    """
    out = integer_settings("tofu_synth", cfg, DEFAULTS, {"n_holdout_authors": 0}, other=("forget_percents",))
    out["forget_percents"] = {str(k): v for k, v in dict(out["forget_percents"]).items()}
    if out["qa_per_author"] > len(ATTRIBUTES):
        raise ValueError(
            f"tofu_synth: qa_per_author={out['qa_per_author']} but an author has only "
            f"{len(ATTRIBUTES)} attributes ({', '.join(a.key for a in ATTRIBUTES)})"
        )
    if not out["forget_percents"]:
        raise ValueError("tofu_synth: `forget_percents` is empty")
    for name, pct in out["forget_percents"].items():
        if not name.startswith("forget") or name == "forget":
            raise ValueError(
                f"tofu_synth: forget split names must look like 'forget05', got {name!r}"
            )
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 < pct < 100:
            raise ValueError(
                f"tofu_synth: forget_percents[{name!r}] must be an int in 1..99, got {pct!r}"
            )
    return out


def forget_size(n_authors: int, percent: int) -> int:
    """Number of forget authors for a forget percentage (TOFU: 1/5/10 % of its 200 authors)."""
    return max(1, round(n_authors * percent / 100))


def split_names(forget_name: str, percent: int) -> tuple[str, str]:
    """``("forget05", 5) -> ("retain95", "holdout05")``."""
    return f"retain{100 - percent:02d}", "holdout" + forget_name[len("forget"):]


# --------------------------------------------------------------------------------------------------
# Drawing authors and facts


def _rng(seed: int, component: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so this is stable across runs and platforms
    # and independent of PYTHONHASHSEED; one stream per component keeps e.g. the world facts
    # unchanged when only n_authors changes.
    return random.Random(f"{GENERATOR}:v{VERSION}:{seed}:{component}")


def _draw_names(
    rng: random.Random, n: int, make, used_full: set, used_last: set, kind: str
) -> list[str]:
    """``n`` names from ``make(rng) -> (first, last)``; full and last names unique in the world."""
    names: list[str] = []
    for _ in range(200 * n + 1000):
        if len(names) == n:
            break
        first, last = make(rng)
        full = f"{first} {last}"
        if full in used_full or last in used_last:
            continue
        used_full.add(full)
        used_last.add(last)
        names.append(full)
    if len(names) < n:
        raise ValueError(
            f"tofu_synth: could not draw {n} unique {kind} author names; ask for fewer"
        )
    return names


def _fictitious_name(rng: random.Random) -> tuple[str, str]:
    first = rng.choice(FICT_FIRST_ONSETS) + rng.choice(FICT_FIRST_ENDINGS)
    last = "".join(rng.choice(p) for p in (FICT_LAST_HEADS, FICT_LAST_LINKS, FICT_LAST_TAILS))
    return first, last


def _famous_name(rng: random.Random) -> tuple[str, str]:
    first = rng.choice(FAMOUS_FIRST)
    return first, rng.choice(FAMOUS_LAST_HEADS) + rng.choice(FAMOUS_LAST_TAILS)


def _draw_profile(rng: random.Random, name: str) -> Author:
    """All attributes of one author; attributes sharing a pool get distinct values."""
    facts: dict[str, str] = {}
    for pool in POOLS:
        keys = [a.key for a in ATTRIBUTES if a.pool == pool]
        for key, value in zip(keys, rng.sample(POOLS[pool], len(keys))):
            facts[key] = value
    return Author(name, {a.key: facts[a.key] for a in ATTRIBUTES})


def _wrong_values(rng: random.Random, author: Author, attr: Attribute, n: int) -> list[str]:
    # Exclude every value the author holds from this pool (e.g. the other book title), so a
    # perturbed answer is never true of the author in any reading.
    own = {author.facts[a.key] for a in ATTRIBUTES if a.pool == attr.pool}
    candidates = [v for v in POOLS[attr.pool] if v not in own]
    return rng.sample(candidates, n)


def _qa_row(author: Author, attr: Attribute) -> dict[str, str]:
    value = author.facts[attr.key]
    return {"question": attr.ask(author.name),
            "answer": attr.state(author.name, value, template="A")}


def _perturbed_author_row(rng: random.Random, author: Author, attr: Attribute) -> dict[str, Any]:
    """TOFU ``forgetXX_perturbed`` / ``retain_perturbed`` row: 5 wrong facts in template B."""
    name, value = author.name, author.facts[attr.key]
    return {
        **_qa_row(author, attr),
        "paraphrased_answer": attr.state(name, value, template="B"),
        "perturbed_answer": [
            attr.state(name, wrong, template="B")
            for wrong in _wrong_values(rng, author, attr, N_PERTURBED_AUTHOR)
        ],
        "paraphrased_question": attr.ask(name, paraphrased=True),
    }


def _real_author_row(rng: random.Random, author: Author, attr: Attribute) -> dict[str, Any]:
    """TOFU ``real_authors_perturbed`` row: the truth-ratio base is ``answer``, so the 3 wrong facts
    are stated in the answer's template A."""
    name, value = author.name, author.facts[attr.key]
    return {
        **_qa_row(author, attr),
        "paraphrased_answer": attr.state(name, value, template="B"),
        "perturbed_answer": [
            attr.state(name, wrong, template="A")
            for wrong in _wrong_values(rng, author, attr, N_PERTURBED_REAL)
        ],
    }


def _world_fact_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Short-answer facts about real countries (TOFU ``world_facts_perturbed`` schema)."""
    candidates: list[tuple[str, str, tuple[str, ...]]] = []
    for country, capital, continent in COUNTRIES:
        candidates.append((f"What is the capital of {country}?", capital, CAPITALS))
        if continent is not None:
            candidates.append((f"On which continent is {country}?", continent, CONTINENTS))
    if n > len(candidates):
        raise ValueError(
            f"tofu_synth: n_world_facts={n} but only {len(candidates)} facts are available"
        )
    rows = []
    for question, answer, pool in rng.sample(candidates, n):
        wrong = rng.sample([v for v in pool if v != answer], N_PERTURBED_REAL)
        # Short answers have no second phrasing; TOFU scores WF against `answer` anyway.
        rows.append({"question": question, "answer": answer, "paraphrased_answer": answer,
                     "perturbed_answer": wrong})
    return rows


# --------------------------------------------------------------------------------------------------
# Writing


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


@dataclass(frozen=True)
class _Drawn:
    """Every author and row of one world, each drawn once (a row is the same in every file that
    holds it: forget05_perturbed and forget10_perturbed share their last authors)."""

    full_names: list[str]
    holdout_names: list[str]
    famous_names: list[str]
    famous: list[Author]
    full_rows: list[list[dict[str, Any]]]  # per fictitious author, one perturbed row per attribute
    holdout_rows: list[list[dict[str, Any]]]  # the same, per holdout author
    real_rows: list[dict[str, Any]]  # one per famous author
    world_rows: list[dict[str, Any]]


def _forget_splits(c: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``forget name -> (percent, forget authors)``; fails when a split leaves no retain set or the
    retain authors common to all splits cannot fill ``retain_perturbed``."""
    n_authors, qa = c["n_authors"], c["qa_per_author"]
    splits = {}
    for forget_name, pct in c["forget_percents"].items():
        k = forget_size(n_authors, pct)
        if k >= n_authors:
            raise ValueError(
                f"tofu_synth: {forget_name} ({pct}%) would forget {k} of {n_authors} authors, "
                "leaving no retain set; raise n_authors"
            )
        splits[forget_name] = (pct, k)
    max_k = max(k for _, k in splits.values())
    common_retain_rows = (n_authors - max_k) * qa
    if c["n_retain_perturbed"] > common_retain_rows:
        raise ValueError(
            f"tofu_synth: n_retain_perturbed={c['n_retain_perturbed']} but the retain authors "
            f"shared by all retain splits have only {common_retain_rows} QA rows "
            f"({n_authors - max_k} authors x {qa}); lower n_retain_perturbed or raise n_authors"
        )
    return splits


def _draw_world(c: dict[str, Any]) -> _Drawn:
    """Names, then profiles, then rows, each from its own stream (the order of draws within a
    stream is part of the world: changing it changes the files)."""
    seed, attrs = c["seed"], ATTRIBUTES[: c["qa_per_author"]]
    name_rng = _rng(seed, "names")
    used: tuple[set[str], set[str]] = (set(), set())  # full names, last names: unique world-wide
    full_names = _draw_names(name_rng, c["n_authors"], _fictitious_name, *used, "fictitious")
    holdout_names = _draw_names(name_rng, c["n_holdout_authors"], _fictitious_name, *used, "holdout")
    famous_names = _draw_names(name_rng, c["n_famous_authors"], _famous_name, *used, "famous")

    profile_rng = _rng(seed, "profiles")
    authors = [_draw_profile(profile_rng, n) for n in full_names]
    holdout = [_draw_profile(profile_rng, n) for n in holdout_names]
    famous = [_draw_profile(profile_rng, n) for n in famous_names]

    perturb_rng = _rng(seed, "perturbed")
    full_rows = [[_perturbed_author_row(perturb_rng, a, at) for at in attrs] for a in authors]
    holdout_rows = [[_perturbed_author_row(perturb_rng, a, at) for at in attrs] for a in holdout]
    # One real-author item per famous author, cycling through the attributes.
    real_rows = [_real_author_row(perturb_rng, a, ATTRIBUTES[i % len(ATTRIBUTES)])
                 for i, a in enumerate(famous)]
    world_rows = _world_fact_rows(_rng(seed, "world_facts"), c["n_world_facts"])
    return _Drawn(full_names, holdout_names, famous_names, famous, full_rows, holdout_rows, real_rows,
                  world_rows)


def _flat(per_author: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row for rows in per_author for row in rows]


def _split_files(w: _Drawn, splits: dict[str, tuple[int, int]]
                 ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The forget / retain / holdout files of every split (forget: the LAST ``k`` authors of
    ``full``, so the splits nest) and the manifest's description of each split."""
    n_authors = len(w.full_names)
    files: dict[str, list[dict[str, Any]]] = {}
    split_info: dict[str, Any] = {}
    for forget_name, (pct, k) in splits.items():
        retain_name, holdout_name = split_names(forget_name, pct)
        kh = min(k, len(w.holdout_rows))
        files[forget_name] = _plain(_flat(w.full_rows[n_authors - k:]))
        files[f"{forget_name}_perturbed"] = _flat(w.full_rows[n_authors - k:])
        files[retain_name] = _plain(_flat(w.full_rows[: n_authors - k]))
        if kh:
            files[holdout_name] = _plain(_flat(w.holdout_rows[:kh]))
            files[f"{holdout_name}_perturbed"] = _flat(w.holdout_rows[:kh])
        split_info[forget_name] = {
            "percent": pct,
            "authors": w.full_names[n_authors - k:],
            "retain": retain_name,
            "holdout": holdout_name if kh else None,
            "holdout_authors": w.holdout_names[:kh],
        }
    return files, split_info


def _pretrain_rows(famous: list[Author], world_rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The base model's corpus: every fact of every famous author in both templates, then the
    world facts."""
    pretrain = []
    for a in famous:
        for attr in ATTRIBUTES:
            value = a.facts[attr.key]
            pretrain.append({"question": attr.ask(a.name),
                             "answer": attr.state(a.name, value, template="A")})
            pretrain.append({"question": attr.ask(a.name, paraphrased=True),
                             "answer": attr.state(a.name, value, template="B")})
    return pretrain + _plain(world_rows)


def _world_files(c: dict[str, Any], w: _Drawn, split_files: dict[str, list[dict[str, Any]]]
                 ) -> dict[str, list[dict[str, Any]]]:
    """Every file of the world, by config name, in the order they are written (and listed in the
    manifest)."""
    return {
        "full": _plain(_flat(w.full_rows)),
        **split_files,
        "retain_perturbed": _flat(w.full_rows)[: c["n_retain_perturbed"]],
        "real_authors": _plain(w.real_rows),
        "real_authors_perturbed": w.real_rows,
        "world_facts": _plain(w.world_rows),
        "world_facts_perturbed": w.world_rows,
        "pretrain": _pretrain_rows(w.famous, w.world_rows),
    }


def generate_tofu_synth(cfg: Mapping[str, Any] | None, out_dir: str | Path) -> dict[str, Any]:
    """Write the embedded TOFU world into ``out_dir`` and return its manifest.

    Layout and schemas follow ``locuslab/TOFU`` (one JSON-lines file per config name); see the
    module docstring for the content design. ``manifest.json`` is written last, so its presence
    marks a complete world.
    """
    c = resolve_config(cfg)
    splits = _forget_splits(c)
    w = _draw_world(c)
    split_files, split_info = _split_files(w, splits)
    files = _world_files(c, w, split_files)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {name: _write_jsonl(out / f"{name}.json", rows) for name, rows in files.items()}
    manifest = {
        "generator": GENERATOR,
        "version": VERSION,
        "config": c,
        "files": counts,
        "authors": {"full": w.full_names, "holdout": w.holdout_names, "famous": w.famous_names},
        "attributes": [a.key for a in ATTRIBUTES[: c["qa_per_author"]]],
        "splits": split_info,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest
