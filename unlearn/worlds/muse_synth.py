"""``muse_synth``: a deterministic, offline stand-in for the MUSE-News benchmark.

It writes a corpus of synthetic news articles in the layout and field names of the Hugging Face
dataset ``muse-bench/MUSE-News``, one JSON-lines file per (config, split)::

    raw/{forget,retain1,retain2,holdout}.json                  {"text"}
    verbmem/forget.json                                        {"prompt", "gt"}
    knowmem/{forget_qa,retain_qa,forget_qa_icl,retain_qa_icl}.json   {"question", "answer"}
    privleak/{forget,retain,holdout}.json                      {"text"}
    manifest.json                                              (written last)

so :func:`unlearn.worlds.muse.load_muse` reads the embedded world and a user's local copy of the
real one the same way.

Roles of the splits, as in MUSE (``muse_bench`` ``baselines/scripts/unlearn_news.sh``; METRICS.md §2):

* ``raw/forget`` is what unlearning removes; the *target* model is trained on forget + retain1 +
  retain2, the *retrain* (gold-standard) model on retain1 + retain2;
* ``raw/retain1`` is the retain set the unlearning methods regularise on;
* ``raw/retain2`` is where the utility probes come from: ``knowmem/retain_qa`` and
  ``privleak/retain`` (the Hub's older split names were ``retain2_qa`` and ``privleak/retain2``), so
  utility is measured on retained knowledge the unlearning loop never sees;
* ``raw/holdout`` is same-distribution text no model is trained on: the non-member side of the
  PrivLeak MIA (``privleak/holdout``).

Content. Every article reports one event of one of :data:`unlearn.worlds.muse_vocab.EVENT_TYPES` (a factory closure, a
storm, an opening, an election, a court fine, a cup final, a species discovery, a festival) with a
date, a town, numbers and people. Each article owns *unique* entities — its people (full and last
names are unique world-wide), its organisation and, for most types, a named event — so a fact
("the Brackmoor Steelworks will cut 1,240 jobs") lives in exactly one document, and forget facts
never appear in retain or holdout text. Towns, months and number ranges are shared pools: they are
the values, not the subjects, of facts. Articles cycle through the event types, so forget and
holdout have the same distribution and a model that saw neither cannot tell them apart (PrivLeak's
AUC ≈ 0.5 for the retrain model).

* ``verbmem/forget``: ``prompt`` is the first ``verbmem_prompt_words`` words of a forget article,
  cut at a single space, and ``gt`` the rest, so ``article == prompt + " " + gt`` (the real data also
  drops the separating space; OU re-inserts it with ``insert_space``).
* ``knowmem/*_qa``: questions name the article's own entity; answers are short spans copied from
  the article (a town, a date, a number, a name). ``*_qa_icl`` are QA from the same split that are
  not among the evaluated ones (MUSE uses 10 in-context examples; the default here is 3, to keep
  the prompt inside a tiny model's context).

Every random draw comes from a ``random.Random`` seeded from ``(seed, component)``; the global
random state is never touched, and the same config gives byte-identical files.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn.worlds.muse_vocab import (
    ENTITY_SLOTS,
    EVENT_TYPES,
    FIRST_NAMES,
    LAST_HEADS,
    LAST_LINKS,
    LAST_TAILS,
    MONTHS,
    STEM_HEADS,
    STEM_TAILS,
    TOWNS,
    YEARS,
    EventType,
)
from unlearn.worlds.settings import integer_settings

GENERATOR = "muse_synth"
VERSION = 1

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_forget_docs": 30,
    "n_retain_docs": 60,       # split in half: retain1 (unlearning regulariser), retain2 (probes)
    "n_holdout_docs": 30,      # the name pools hold about 250 articles in all
    "n_verbmem": 30,           # MUSE-News: 100
    "verbmem_prompt_words": 24,
    "n_knowmem_qa": 40,        # per side (forget / retain); MUSE-News: 100
    "n_knowmem_icl": 3,        # MUSE-News: 10
    "n_privleak": 30,          # per split (forget / retain / holdout); MUSE-News: 100
}

#: The (config, split) files written, in the real dataset's config and split names.
LAYOUT: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
}

#: The raw split each privleak split's texts come from (``privleak/<split>[i]`` is ``raw/<source>[i]``).
PRIVLEAK_SOURCES: dict[str, str] = {"forget": "forget", "retain": "retain2", "holdout": "holdout"}


@dataclass(frozen=True)
class Article:
    kind: str
    text: str
    entities: dict[str, str]   # ENTITY_SLOTS present in this article -> value
    qa: tuple[tuple[str, str, str], ...]   # (fact slot, question, answer)


# --------------------------------------------------------------------------------------------------
# Config


def resolve_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fill defaults and check ranges; returns a plain, JSON-able dict.

    Keys other than those in :data:`DEFAULTS` are ignored, so a whole ``dataset`` config node can
    be passed in.
    """
    out = integer_settings("muse_synth", cfg, DEFAULTS, {"n_knowmem_icl": 0, "n_retain_docs": 2})
    if out["n_verbmem"] > out["n_forget_docs"]:
        raise ValueError(
            f"muse_synth: n_verbmem={out['n_verbmem']} but there are only "
            f"n_forget_docs={out['n_forget_docs']} forget articles (one verbmem item each)"
        )
    n_retain2 = out["n_retain_docs"] - out["n_retain_docs"] // 2
    for split, available in (("forget", out["n_forget_docs"]), ("retain2", n_retain2),
                             ("holdout", out["n_holdout_docs"])):
        if out["n_privleak"] > available:
            raise ValueError(
                f"muse_synth: n_privleak={out['n_privleak']} but raw/{split} has only {available} "
                "articles; lower n_privleak or add articles"
            )
    return out


# --------------------------------------------------------------------------------------------------
# Drawing articles


def _rng(seed: int, component: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`: stable across runs, platforms and
    # PYTHONHASHSEED; one stream per component.
    return random.Random(f"{GENERATOR}:v{VERSION}:{seed}:{component}")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _draw_number(rng: random.Random, kind: str, lo: int, hi: int) -> str:
    """One number as it is written in the article (and in a knowmem answer)."""
    if kind == "score":  # "3-1": the loser scores lo..hi goals, the winner 1 to 3 more
        loser = rng.randint(lo, hi)
        return f"{loser + rng.randint(1, 3)}-{loser}"
    n = rng.randint(lo, hi)
    if kind == "count":
        return f"{n:,}"
    if kind == "plain":
        return str(n)
    if kind == "millions":  # lo/hi in tenths of a million
        return f"£{n / 10:.1f}m"
    if kind == "thousands":
        return f"£{n * 1000:,}"
    if kind == "percent":
        return f"{n}%"
    if kind == "ordinal":
        return _ordinal(n)
    raise ValueError(f"muse_synth: unknown number kind {kind!r}")


# "Thorn" + "bury" is also a town: a stem must never read as a town.
_TOWN_WORDS = frozenset(word for town in TOWNS for word in town.split())


class _Names:
    """Draws people and stems that are unique world-wide (across all splits) and are no town."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used_last: set[str] = set()
        self.used_stems: set[str] = set()

    def _unique(self, make, used: set[str], what: str) -> str:
        for _ in range(2000):
            value = make()
            # Not even a substring of another name ("Ashley" / "Washley"), so a name found in a
            # text names one entity.
            if value not in _TOWN_WORDS and not any(value in u or u in value for u in used):
                used.add(value)
                return value
        raise ValueError(f"muse_synth: ran out of unique {what}; ask for fewer articles")

    def person(self) -> tuple[str, str]:
        rng = self.rng
        last = self._unique(
            lambda: "".join(rng.choice(p) for p in (LAST_HEADS, LAST_LINKS, LAST_TAILS)),
            self.used_last, "surnames",
        )
        return f"{rng.choice(FIRST_NAMES)} {last}", last

    def stem(self) -> str:
        rng = self.rng
        return self._unique(lambda: rng.choice(STEM_HEADS) + rng.choice(STEM_TAILS),
                            self.used_stems, "organisation/event names")


def _draw_article(rng: random.Random, names: _Names, etype: EventType) -> Article:
    values: dict[str, str] = {}
    values["org"] = f"{names.stem()} {rng.choice(etype.org_kinds)}"
    if etype.event_formats:
        values["event"] = rng.choice(etype.event_formats).format(stem=names.stem())
    if etype.rival:
        rival_kinds = [k for k in etype.org_kinds if not values["org"].endswith(k)]
        values["rival"] = f"{names.stem()} {rng.choice(rival_kinds)}"
    values["person"], values["person_last"] = names.person()
    values["spokes"], values["spokes_last"] = names.person()
    values["town"] = rng.choice(TOWNS)
    year, month, day = rng.choice(YEARS), rng.choice(MONTHS), rng.randint(1, 28)
    values.update(date=f"{day} {month} {year}", month=month, year=str(year))
    for slot, (kind, lo, hi) in etype.numbers.items():
        values[slot] = _draw_number(rng, kind, lo, hi)
    for slot, pool in etype.choices.items():
        values[slot] = rng.choice(pool)

    sentences = [rng.choice(alternatives).format(**values) for alternatives in etype.sentences]
    # BBC-style paragraphs: the lead alone, then paragraphs of one or two sentences.
    paragraphs, rest = [sentences[0]], sentences[1:]
    while rest:
        take = 1 if len(rest) == 1 else rng.choice((1, 2))
        paragraphs.append(" ".join(rest[:take]))
        rest = rest[take:]
    text = "\n\n".join(paragraphs)

    qa = []
    for fact in etype.facts:
        answer = values[fact.slot]
        if answer not in text:  # every alternative states every fact: a template bug otherwise
            raise RuntimeError(f"muse_synth: {etype.key} fact {fact.slot!r} not in the article")
        qa.append((fact.slot, fact.question.format(**values), answer))
    entities = {slot: values[slot] for slot in ENTITY_SLOTS if slot in values}
    return Article(etype.key, text, entities, tuple(qa))


def _select_qa(
    rng: random.Random, articles: list[Article], n_icl: int, n_qa: int, split: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n_icl`` in-context and ``n_qa`` evaluated QA, disjoint, spread over the articles.

    Round-robin over the articles in a shuffled order, each article's facts shuffled: round r takes
    the r-th fact of every article, so QA cover as many articles as possible. Returned rows carry
    their source (``doc`` index in the raw split, ``fact`` slot) for the manifest.
    """
    need = n_icl + n_qa
    total = sum(len(a.qa) for a in articles)
    if need > total:
        raise ValueError(
            f"muse_synth: n_knowmem_qa + n_knowmem_icl = {need} but the {split} articles state only "
            f"{total} facts; lower them or add articles"
        )
    order = list(range(len(articles)))
    rng.shuffle(order)
    per_doc = {i: rng.sample(articles[i].qa, len(articles[i].qa)) for i in order}
    picked: list[dict[str, Any]] = []
    for r in range(max(len(q) for q in per_doc.values())):
        for i in order:
            if r < len(per_doc[i]) and len(picked) < need:
                slot, question, answer = per_doc[i][r]
                picked.append({"question": question, "answer": answer, "doc": i, "fact": slot})
    return picked[:n_icl], picked[n_icl:]


def _split_prompt(text: str, n_words: int) -> tuple[str, str]:
    """Cut ``text`` after its ``n_words``-th word (or the first later word followed by a single
    space), so that ``text == prompt + " " + gt``."""
    for match in re.finditer(r"\s+", text):
        if len(text[: match.start()].split()) >= n_words and match.group() == " ":
            return text[: match.start()], text[match.end():]
    raise ValueError(
        f"muse_synth: an article has no single-space word boundary after {n_words} words; "
        "lower verbmem_prompt_words"
    )


# --------------------------------------------------------------------------------------------------
# Writing


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _qa_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def _draw_docs(c: dict[str, Any]) -> dict[str, list[Article]]:
    """The raw articles by split (``forget``, ``retain1``, ``retain2``, ``holdout``)."""
    n_forget, n_retain, n_holdout = c["n_forget_docs"], c["n_retain_docs"], c["n_holdout_docs"]
    # One stream for all articles, so names are unique across splits; the event type cycles so
    # every split has the same mix of stories.
    rng = _rng(c["seed"], "articles")
    names = _Names(rng)
    articles = [_draw_article(rng, names, EVENT_TYPES[i % len(EVENT_TYPES)])
                for i in range(n_forget + n_retain + n_holdout)]
    retain = articles[n_forget: n_forget + n_retain]
    return {"forget": articles[:n_forget], "retain1": retain[: n_retain // 2],
            "retain2": retain[n_retain // 2:], "holdout": articles[n_forget + n_retain:]}


def _verbmem_rows(forget: list[Article], n: int, prompt_words: int) -> list[dict[str, str]]:
    rows = []
    for article in forget[:n]:
        prompt, gt = _split_prompt(article.text, prompt_words)
        rows.append({"prompt": prompt, "gt": gt})
    return rows


def _knowmem_rows(c: dict[str, Any], docs: dict[str, list[Article]]) -> dict[str, list[dict[str, Any]]]:
    """The four knowmem files' rows (with their sources), by split name, in :data:`LAYOUT` order."""
    qa_rng = _rng(c["seed"], "knowmem")
    n_icl, n_qa = c["n_knowmem_icl"], c["n_knowmem_qa"]
    forget_icl, forget_qa = _select_qa(qa_rng, docs["forget"], n_icl, n_qa, "forget")
    retain_icl, retain_qa = _select_qa(qa_rng, docs["retain2"], n_icl, n_qa, "retain2")
    return {"forget_qa": forget_qa, "retain_qa": retain_qa, "forget_qa_icl": forget_icl,
            "retain_qa_icl": retain_icl}


def _manifest(c: dict[str, Any], counts: dict[str, int], docs: dict[str, list[Article]],
              knowmem: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def sources(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"doc": r["doc"], "fact": r["fact"]} for r in rows]

    return {
        "generator": GENERATOR,
        "version": VERSION,
        "config": c,
        "files": counts,
        "layout": {config: list(splits) for config, splits in LAYOUT.items()},
        # What each raw article is about; `entities` are unique to the article world-wide.
        "docs": {split: [{"type": a.kind, "entities": a.entities} for a in arts]
                 for split, arts in docs.items()},
        # Where each knowmem row comes from: raw split, article index there, fact slot.
        "knowmem_sources": {
            "forget_qa": {"raw_split": "forget", "rows": sources(knowmem["forget_qa"])},
            "forget_qa_icl": {"raw_split": "forget", "rows": sources(knowmem["forget_qa_icl"])},
            "retain_qa": {"raw_split": "retain2", "rows": sources(knowmem["retain_qa"])},
            "retain_qa_icl": {"raw_split": "retain2", "rows": sources(knowmem["retain_qa_icl"])},
        },
        # verbmem/forget[i] and privleak/<split>[i] are raw/<source>[i].
        "verbmem_source": "forget",
        "privleak_sources": dict(PRIVLEAK_SOURCES),
        "training": {"target": ["forget", "retain1", "retain2"], "retrain": ["retain1", "retain2"],
                     "unlearn_forget": "forget", "unlearn_retain": "retain1"},
    }


def generate_muse_synth(cfg: Mapping[str, Any] | None, out_dir: str | Path) -> dict[str, Any]:
    """Write the embedded MUSE-News world into ``out_dir`` and return its manifest.

    Layout, field names and split roles follow ``muse-bench/MUSE-News`` (see the module
    docstring). ``manifest.json`` is written last, so its presence marks a complete world.
    """
    c = resolve_config(cfg)
    docs = _draw_docs(c)
    knowmem = _knowmem_rows(c, docs)
    n_priv = c["n_privleak"]
    files: dict[tuple[str, str], list[dict[str, Any]]] = {
        **{("raw", split): [{"text": a.text} for a in arts] for split, arts in docs.items()},
        ("verbmem", "forget"): _verbmem_rows(docs["forget"], c["n_verbmem"], c["verbmem_prompt_words"]),
        **{("knowmem", split): _qa_rows(rows) for split, rows in knowmem.items()},
        **{("privleak", split): [{"text": a.text} for a in docs[source][:n_priv]]
           for split, source in PRIVLEAK_SOURCES.items()},
    }
    assert set(files) == {(cfg_, s) for cfg_, splits in LAYOUT.items() for s in splits}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {f"{config}/{split}": _write_jsonl(out / config / f"{split}.json", rows)
              for (config, split), rows in files.items()}
    manifest = _manifest(c, counts, docs, knowmem)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest
