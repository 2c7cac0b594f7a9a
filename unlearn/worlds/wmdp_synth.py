"""``wmdp_synth``: a deterministic, offline stand-in for the WMDP benchmark.

It writes a folder in the local layout :func:`unlearn.worlds.wmdp.load_wmdp` reads (the domain is
called ``synth``)::

    wmdp-corpora/synth-forget-corpus.jsonl   {"text"}                          the forget corpus
    wmdp-corpora/synth-retain-corpus.jsonl   {"text"}                          the retain corpus
    wmdp/wmdp-synth/test.json                {"question", "choices", "answer"}  WMDP's format
    mmlu/all/test.json                       {"question", "subject", "choices", "answer"}  MMLU's
    manifest.json                            (written last)

Content (the vocabulary: :mod:`unlearn.worlds.wmdp_vocab`):

* the **forget corpus**: one document per entity of a fictitious technical discipline, invented
  devices and compounds, each stating its invented properties (a device's core material, coolant,
  sign of failure, workshop; a compound's colour, solvent, vessel, use);
* the **retain corpus**: one document per invented island, animal or dish, stating its facts
  (general knowledge, WikiText's role);
* **questions**: one 4-choice question per fact, in WMDP's format for the forget domain and in
  MMLU's (with the kind's ``subject``) for the general facts.

The questions are fair to a model that lacks the fact: each attribute's values are dealt to the
entities evenly from its pool (shuffled), the three distractors are other values of the same pool,
and the right answer's position is balanced over the four places (shuffled). A model that never saw
a fact can tell the four choices apart only by a preference among values, which is independent of
which one is right: its expected accuracy is 0.25.

Every random draw comes from a ``random.Random`` seeded from ``(seed, component)``; the global
random state is never touched, and the same config gives byte-identical files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn.worlds.settings import integer_settings
from unlearn.worlds.wmdp import N_CHOICES, wmdp_part
from unlearn.worlds.wmdp_vocab import FORGET_KINDS, GENERAL_KINDS, Kind

GENERATOR = "wmdp_synth"
VERSION = 1
DOMAIN = "synth"  # dataset.split of the embedded world: names its files as bio / cyber name WMDP's

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_forget_entities": 24,   # devices and compounds (4 questions each); WMDP-Bio: 1273 questions
    "n_general_entities": 24,  # islands, animals and dishes (4 questions each); MMLU: 14042 questions
}


@dataclass(frozen=True)
class Entity:
    kind: Kind
    name: str
    facts: dict[str, str]  # attribute key -> value


def resolve_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fill defaults and check ranges; returns a plain, JSON-able dict. Keys other than those in
    :data:`DEFAULTS` are ignored, so a whole ``dataset.synth`` node can be passed in."""
    return integer_settings("wmdp_synth", cfg, DEFAULTS)


def _rng(seed: int, component: str) -> random.Random:
    # a string seed is hashed with SHA-512 by `random`: stable across runs, platforms and PYTHONHASHSEED
    return random.Random(f"{GENERATOR}:v{VERSION}:{seed}:{component}")


def _sentence(template: str, **values: str) -> str:
    text = template.format(**values)
    return text[0].upper() + text[1:]  # a name opens many sentences ("{name} has a pale teal colour.")


def _names(rng: random.Random, kinds: Sequence[Kind], n: int) -> list[str]:
    """``n`` names, the i-th of kind ``kinds[i % len(kinds)]``, each stem (head + tail) used once, so a
    name's first word names one entity of its family."""
    stems = [h + t for h in kinds[0].heads for t in kinds[0].tails]
    if n > len(stems):
        raise ValueError(f"wmdp_synth: {n} entities of {kinds[0].subject} but only {len(stems)} distinct names")
    rng.shuffle(stems)
    return [f"{stems[i]} {rng.choice(kinds[i % len(kinds)].nouns)}" for i in range(n)]


def _dealt(rng: random.Random, pool: Sequence[str], n: int) -> list[str]:
    """``n`` values of ``pool`` dealt evenly (each value ``n / len(pool)`` times, up to one), shuffled."""
    values = [pool[i % len(pool)] for i in range(n)]
    rng.shuffle(values)
    return values


def draw_entities(rng: random.Random, kinds: Sequence[Kind], n: int) -> list[Entity]:
    """``n`` entities cycling through ``kinds``, each attribute's values dealt evenly per kind."""
    names = _names(rng, kinds, n)
    members = {k.key: [i for i in range(n) if kinds[i % len(kinds)] is k] for k in kinds}
    facts: list[dict[str, str]] = [{} for _ in range(n)]
    for kind in kinds:
        for attr in kind.attributes:
            for i, value in zip(members[kind.key], _dealt(rng, attr.values, len(members[kind.key]))):
                facts[i][attr.key] = value
    return [Entity(kinds[i % len(kinds)], names[i], facts[i]) for i in range(n)]


def document(rng: random.Random, e: Entity) -> str:
    """The entity's document: an intro, one sentence per fact (in a drawn order), a closing."""
    statements = [_sentence(rng.choice(a.statements), name=e.name, value=e.facts[a.key]) for a in e.kind.attributes]
    rng.shuffle(statements)
    intro = _sentence(rng.choice(e.kind.intros), name=e.name)
    closing = _sentence(rng.choice(e.kind.closings), name=e.name)
    return " ".join([intro, *statements, closing])


def questions(rng: random.Random, entities: Sequence[Entity], subject: bool) -> list[dict[str, Any]]:
    """One 4-choice question per fact: distractors from the attribute's pool, the right answer's
    position balanced over the four places; rows carry their source (``entity``, ``attribute``)."""
    facts = [(i, a) for i, e in enumerate(entities) for a in e.kind.attributes]
    positions = [k % N_CHOICES for k in range(len(facts))]
    rng.shuffle(positions)
    rows = []
    for (i, attr), pos in zip(facts, positions):
        e = entities[i]
        answer = e.facts[attr.key]
        choices = rng.sample([v for v in attr.values if v != answer], N_CHOICES - 1)
        choices.insert(pos, answer)
        row = {"question": _sentence(attr.question, name=e.name)}
        if subject:
            row["subject"] = e.kind.subject
        rows.append({**row, "choices": choices, "answer": pos, "entity": i, "attribute": attr.key})
    return rows


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def _public(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A question row as the published files hold it (without its source)."""
    return [{k: v for k, v in r.items() if k not in ("entity", "attribute")} for r in rows]


def generate_wmdp_synth(cfg: Mapping[str, Any] | None, out_dir: str | Path) -> dict[str, Any]:
    """Write the embedded WMDP world into ``out_dir`` and return its manifest (see the module
    docstring); ``manifest.json`` is written last, so its presence marks a complete world."""
    c = resolve_config(cfg)
    forget = draw_entities(_rng(c["seed"], "forget"), FORGET_KINDS, c["n_forget_entities"])
    general = draw_entities(_rng(c["seed"], "general"), GENERAL_KINDS, c["n_general_entities"])
    docs_rng = _rng(c["seed"], "documents")
    forget_docs = [document(docs_rng, e) for e in forget]
    general_docs = [document(docs_rng, e) for e in general]
    qa_rng = _rng(c["seed"], "questions")
    forget_qa, general_qa = questions(qa_rng, forget, subject=False), questions(qa_rng, general, subject=True)

    out = Path(out_dir)
    files = {wmdp_part("forget", DOMAIN): [{"text": d} for d in forget_docs],
             wmdp_part("retain", DOMAIN, "corpus"): [{"text": d} for d in general_docs],
             wmdp_part("questions", DOMAIN): _public(forget_qa), wmdp_part("general", DOMAIN): _public(general_qa)}
    counts = {}
    for part, rows in files.items():
        name = f"{part.folder}/{part.local_config}" + (".jsonl" if part.schema == "text" else f"/{part.split}.json")
        counts[name] = _write_jsonl(out / name, rows)
    manifest = {
        "generator": GENERATOR, "version": VERSION, "config": c, "domain": DOMAIN, "files": counts,
        # what each document is about: forget docs[i] / retain docs[i] state entities[i]'s facts
        "entities": {side: [{"kind": e.kind.key, "name": e.name, "facts": e.facts} for e in ents]
                     for side, ents in (("forget", forget), ("general", general))},
        # the source of each question: entities[<side>][entity], the fact `attribute`
        "question_sources": {side: [{"entity": r["entity"], "attribute": r["attribute"]} for r in rows]
                             for side, rows in (("forget", forget_qa), ("general", general_qa))},
        "retain_corpus": "corpus",  # dataset.retain_corpus: the retain documents are <domain>-retain-corpus
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
