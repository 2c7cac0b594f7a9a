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

Content. Every article reports one event of one of :data:`EVENT_TYPES` (a factory closure, a
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

# --------------------------------------------------------------------------------------------------
# Value pools (small on purpose: the world's tokenizer is a ~2k-token BPE).

TOWNS = (
    "Dunmere", "Ashcombe", "Port Selin", "Kestrel Bay", "Oakhaven", "Rivenmoor", "Stonebridge",
    "Lowmarsh", "Brightwater", "Eastcliff", "Fallowmere", "Greyhaven", "Hollin", "Ironvale",
    "Juniper Falls", "Kingsreach", "Larkspur", "Millbrook", "Northwick", "Pellam", "Quarry Hill",
    "Redfern", "Saltmarsh", "Thornbury", "Umberfield", "Westhollow", "Yarrow", "Zelmont",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
YEARS = tuple(range(2018, 2024))

# People: "First Last"; last names are unique world-wide, so "said Vartor" names one person.
_FIRST_NAMES = (
    "Alira", "Bren", "Cass", "Dorin", "Elsa", "Fenna", "Galen", "Hester", "Ilka", "Joren", "Kasia",
    "Lune", "Maren", "Nils", "Orla", "Petra", "Quill", "Rosa", "Soren", "Talia", "Ulla", "Vance",
    "Wren", "Yara", "Zeno", "Anik", "Bodil", "Cyra", "Davor", "Edda",
)
_LAST_HEADS = ("Var", "Tor", "Mel", "Dask", "Kor", "Lind", "Bren", "Sol", "Hal", "Mor", "Quen",
               "Rusk", "Vel", "Zan", "Pell", "Grim")
_LAST_LINKS = ("a", "e", "i", "o")
_LAST_TAILS = ("nek", "vic", "sen", "rov", "lund", "mar", "tis", "win", "dal", "ski")

# Organisation / event stems ("Brackmoor"): a syllable set disjoint from the people's, so a stem is
# never also a surname.
_STEM_HEADS = (
    "Brack", "Elder", "Thorn", "Ash", "Kel", "Wyn", "Dor", "Ost", "Pen", "Rav", "Sil", "Tam",
    "Wex", "Cal", "Fern", "Glen", "Hart", "Lun", "Marl", "Nor", "Orm", "Pry", "Roth", "Stav",
    "Tre", "Ulm", "Vard", "Wold", "Yew", "Cor",
)
_STEM_TAILS = (
    "moor", "wick", "ford", "stead", "holm", "ley", "by", "ton", "dale", "gate", "well", "combe",
    "field", "hurst", "wood", "bury", "worth", "shaw", "cliffe", "brook",
)


@dataclass(frozen=True)
class Fact:
    """A knowmem question about one article: ``slot`` holds the answer, ``question`` is a template
    over the article's slots that names one of its unique entities (org, event, person)."""

    slot: str
    question: str


@dataclass(frozen=True)
class EventType:
    """One kind of news story: how to draw its slots and the sentences that report it.

    ``sentences[i]`` lists alternative templates for the i-th sentence (one is drawn per article);
    every alternative of a sentence uses the same slots, so a fact is stated whichever is drawn.
    Numbers are ``slot -> (kind, lo, hi)`` with kinds from :func:`_draw_number`.
    """

    key: str
    org_kinds: tuple[str, ...]
    sentences: tuple[tuple[str, ...], ...]
    facts: tuple[Fact, ...]
    numbers: Mapping[str, tuple[str, int, int]] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    event_formats: tuple[str, ...] = ()   # "{stem} Festival"; empty: the story has no named event
    rival: bool = False                   # a second organisation (the beaten cup finalist)


EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        key="closure",
        org_kinds=("Steelworks", "Textiles", "Foods", "Paper Mills", "Glassworks"),
        numbers={"jobs": ("count", 40, 2400), "years_open": ("plain", 12, 95),
                 "weeks": ("plain", 4, 30)},
        choices={"role": ("chief executive", "managing director")},
        sentences=(
            ("{org} will close its factory in {town} with the loss of {jobs} jobs, the company "
             "announced on {date}.",
             "The factory run by {org} in {town} is to close, putting {jobs} jobs at risk, the "
             "firm said on {date}."),
            ("The site has operated for {years_open} years and is one of the largest employers in "
             "the area.",
             "The plant opened {years_open} years ago and was once one of the largest employers in "
             "the area."),
            ("{person}, the company's {role}, said rising energy costs had left the business with "
             "no other choice.",),
            ("\"We know this is a very difficult day for our staff and their families,\" said "
             "{person_last}.",
             "\"This is a very sad day for everyone who has worked at the site,\" {person_last} "
             "told reporters."),
            ("Production is expected to stop within {weeks} weeks, and talks with unions will begin "
             "next month.",),
            ("{spokes}, a union representative, described the decision as a heavy blow for the "
             "town.",),
            ("Local leaders have asked the government to help find a buyer for the site.",
             "Council members said they would do everything they could to keep the site open."),
            ("The company said it would offer support to workers looking for new jobs.",),
        ),
        facts=(
            Fact("town", "In which town is the factory that {org} will close?"),
            Fact("jobs", "How many jobs will be lost when {org} closes its factory?"),
            Fact("date", "On what date did {org} announce the closure of its factory?"),
            Fact("years_open", "For how many years has the {org} factory been open?"),
            Fact("person", "Who is the {role} of {org}?"),
            Fact("weeks", "Within how many weeks is production at the {org} factory expected to "
                          "stop?"),
            Fact("spokes", "Which union representative called the closure of the {org} factory "
                           "a heavy blow?"),
        ),
    ),
    EventType(
        key="storm",
        org_kinds=("Fire and Rescue Service", "Coastguard", "Mountain Rescue Team"),
        event_formats=("Storm {stem}",),
        numbers={"homes": ("count", 30, 3200), "metres": ("plain", 2, 6),
                 "old_year": ("plain", 1950, 2010), "rescued": ("plain", 6, 140),
                 "amount": ("millions", 11, 95)},
        choices={"role": ("mayor", "council leader")},
        sentences=(
            ("{event} brought heavy rain to {town} on {date}, flooding {homes} homes.",
             "Homes in {town} were flooded on {date} as {event} swept across the region, with "
             "{homes} properties affected."),
            ("The river rose by {metres} metres in less than a day, the highest level recorded "
             "since {old_year}.",),
            ("The {org} said its crews had rescued {rescued} people from cars and houses "
             "overnight.",),
            ("{spokes}, who leads the response for the {org}, urged people not to drive through "
             "flood water.",),
            ("{person}, the {role} of {town}, said the damage would cost at least {amount} to "
             "repair.",
             "The damage will cost at least {amount} to repair, according to {person}, the {role} "
             "of {town}."),
            ("Schools in the area will remain closed until the end of the week.",
             "A rest centre has been opened at the town hall for families who had to leave their "
             "homes."),
            ("Forecasters expect the weather to improve over the weekend, although more rain is "
             "likely next week.",),
        ),
        facts=(
            Fact("town", "Which town was flooded by {event}?"),
            Fact("date", "On what date did {event} flood homes?"),
            Fact("homes", "How many homes were flooded by {event}?"),
            Fact("old_year", "Since which year had the river not been as high as during {event}?"),
            Fact("rescued", "How many people did the {org} rescue during {event}?"),
            Fact("spokes", "Who leads the response for the {org}?"),
            Fact("amount", "How much will the damage caused by {event} cost to repair?"),
            Fact("person", "Which {role} said the damage from {event} would be costly to repair?"),
        ),
    ),
    EventType(
        key="opening",
        org_kinds=("Building Group", "Construction", "Partnership"),
        event_formats=("{stem} Bridge", "{stem} Library", "{stem} Sports Centre",
                       "{stem} Concert Hall"),
        numbers={"months": ("plain", 9, 40), "amount": ("millions", 12, 480),
                 "crowd": ("count", 150, 4000), "weeks": ("plain", 2, 12),
                 "plan_year": ("plain", 2009, 2017)},
        choices={"role": ("president", "deputy leader")},
        sentences=(
            ("The {event} opened to the public in {town} on {date} after {months} months of "
             "building work.",
             "After {months} months of construction, the {event} in {town} welcomed its first "
             "visitors on {date}."),
            ("The project cost {amount} and was paid for by {org} and the regional government.",),
            ("It was officially opened by {person}, the {role} of the regional assembly, in front "
             "of a crowd of about {crowd} people.",),
            ("\"This is a proud day for everyone in {town},\" said {person_last}.",
             "\"Today belongs to the people of {town},\" {person_last} told the crowd."),
            ("{spokes}, a project manager at {org}, said the work had finished {weeks} weeks ahead "
             "of schedule.",),
            ("Local businesses hope the opening will bring more visitors to the town centre.",),
            ("Some residents had objected to the plans when they were first announced in "
             "{plan_year}.",),
        ),
        facts=(
            Fact("town", "In which town did the {event} open?"),
            Fact("date", "On what date did the {event} open to the public?"),
            Fact("months", "How many months of building work did the {event} take?"),
            Fact("amount", "How much did the {event} cost?"),
            Fact("person", "Who officially opened the {event}?"),
            Fact("crowd", "About how many people watched the opening of the {event}?"),
            Fact("spokes", "Which project manager at {org} spoke about the {event}?"),
            Fact("plan_year", "In which year were the plans for the {event} first announced?"),
        ),
    ),
    EventType(
        key="election",
        org_kinds=("Farmers Union", "Teachers Association", "Chamber of Commerce",
                   "Rowing Federation", "Nurses Guild"),
        numbers={"percent": ("percent", 51, 78), "votes": ("count", 200, 9000),
                 "age": ("plain", 34, 71), "term": ("plain", 2, 5),
                 "years_served": ("plain", 3, 19), "members": ("count", 800, 45000)},
        sentences=(
            ("{person} has been elected chair of the {org} with {percent} of the vote, the result "
             "confirmed on {date}.",
             "The {org} elected {person} as its new chair on {date}, with {percent} of members "
             "backing the bid."),
            ("{person_last}, who is {age}, received {votes} votes and will serve a term of {term} "
             "years.",),
            ("The previous chair, {spokes}, stood down in {month} after {years_served} years in "
             "the post.",),
            ("The {org}, which is based in {town}, has about {members} members across the "
             "country.",),
            ("\"I want to listen to every member and make our voice heard,\" {person_last} told "
             "reporters.",
             "\"My first job is to listen to our members,\" said {person_last}."),
            ("Turnout was lower than at the last vote, organisers said.",),
            ("The new chair will take up the role at the start of next month.",),
        ),
        facts=(
            Fact("person", "Who was elected chair of the {org}?"),
            Fact("percent", "What share of the vote did the new chair of the {org} win?"),
            Fact("date", "On what date was the new chair of the {org} elected?"),
            Fact("votes", "How many votes did the new chair of the {org} receive?"),
            Fact("term", "How many years is the term of the new chair of the {org}?"),
            Fact("spokes", "Who was the previous chair of the {org}?"),
            Fact("town", "In which town is the {org} based?"),
            Fact("members", "About how many members does the {org} have?"),
        ),
    ),
    EventType(
        key="court",
        org_kinds=("Haulage", "Recycling", "Quarry Company", "Logistics", "Timber"),
        numbers={"amount": ("thousands", 20, 900), "age": ("plain", 19, 63),
                 "months": ("plain", 3, 30), "costs": ("thousands", 4, 60)},
        sentences=(
            ("{org} has been fined {amount} after a worker was injured at its site in {town}, a "
             "court heard on {date}.",
             "A court was told on {date} that {org} must pay a fine of {amount} after a worker was "
             "hurt at its site in {town}."),
            ("The worker, who was {age}, suffered a broken leg when a stack of pallets fell on "
             "him.",),
            ("Judge {person} said the firm had ignored safety warnings for {months} months.",),
            ("The company admitted breaking health and safety law at an earlier hearing.",),
            ("{spokes}, an inspector who investigated the case, said the injury could easily have "
             "been avoided.",),
            ("In addition to the fine, {org} was ordered to pay costs of {costs}.",),
            ("The firm said it had since changed its working practices and apologised to the "
             "worker.",
             "A lawyer for the firm said it had apologised and had since improved its training."),
        ),
        facts=(
            Fact("amount", "How much was {org} fined after a worker was injured?"),
            Fact("town", "In which town is the site where a worker of {org} was injured?"),
            Fact("date", "On what date did a court hear the case against {org}?"),
            Fact("age", "How old was the worker injured at the {org} site?"),
            Fact("person", "Which judge heard the case against {org}?"),
            Fact("months", "For how many months did {org} ignore safety warnings?"),
            Fact("spokes", "Which inspector investigated the injury at the {org} site?"),
            Fact("costs", "What costs was {org} ordered to pay?"),
        ),
    ),
    EventType(
        key="cup_final",
        org_kinds=("Rovers", "Athletic", "United", "Wanderers", "Town"),
        event_formats=("{stem} Cup", "{stem} Trophy"),
        rival=True,
        numbers={"score": ("score", 0, 3), "crowd": ("count", 900, 38000),
                 "minute": ("ordinal", 12, 89), "old_year": ("plain", 1961, 2012),
                 "games": ("plain", 4, 8), "amount": ("thousands", 15, 250)},
        sentences=(
            ("{org} won the {event} on {date}, beating {rival} {score} in front of {crowd} fans "
             "in {town}.",
             "In front of {crowd} fans in {town}, {org} beat {rival} {score} to win the {event} "
             "on {date}."),
            ("Captain {person} scored the winning goal in the {minute} minute.",),
            ("It is the first time the club has lifted the trophy since {old_year}.",),
            ("{rival} had been favourites after winning all {games} of their group matches.",),
            ("\"The players gave everything today and the supporters were incredible,\" said "
             "manager {spokes}.",
             "Manager {spokes} said the players had given everything and thanked the "
             "supporters."),
            ("The winners will receive prize money of {amount}, which the club says will be spent "
             "on its youth teams.",),
            ("Celebrations continued late into the evening in the streets around the ground.",),
        ),
        facts=(
            Fact("rival", "Which team did {org} beat in the final of the {event}?"),
            Fact("score", "What was the score when {org} won the {event}?"),
            Fact("date", "On what date did {org} win the {event}?"),
            Fact("crowd", "How many fans watched {org} win the {event}?"),
            Fact("town", "In which town was the final of the {event} played?"),
            Fact("person", "Who scored the winning goal for {org} in the {event}?"),
            Fact("old_year", "Before the {event}, when had {org} last lifted the trophy?"),
            Fact("spokes", "Who is the manager of {org}?"),
        ),
    ),
    EventType(
        key="discovery",
        org_kinds=("Institute", "University", "Research Centre"),
        event_formats=("{stem}",),
        numbers={"specimens": ("plain", 3, 60), "years": ("plain", 2, 11),
                 "mm": ("plain", 4, 90)},
        choices={"creature": ("beetle", "moth", "frog", "snail", "spider")},
        sentences=(
            ("Scientists at the {org} in {town} have discovered a new species of {creature}, "
             "which they have named the {event} {creature}.",),
            ("The discovery was announced on {date} in a paper describing {specimens} specimens "
             "collected over {years} years.",),
            ("Lead researcher {person} said the {creature} was found in a small area of wetland "
             "near the town.",),
            ("It measures just {mm} millimetres and is active only at night.",
             "The {creature} is only {mm} millimetres long and hides during the day."),
            ("\"We were amazed that something so unusual had been overlooked for so long,\" said "
             "{person_last}.",),
            ("{spokes}, a conservation officer, warned that the wetland is under threat from new "
             "housing.",),
            ("The team hopes to return to the site next spring to study the {creature} in more "
             "detail.",),
        ),
        facts=(
            Fact("town", "In which town is the {org} that discovered the {event} {creature}?"),
            Fact("date", "On what date was the discovery of the {event} {creature} announced?"),
            Fact("specimens", "How many specimens of the {event} {creature} were described?"),
            Fact("years", "Over how many years were specimens of the {event} {creature} "
                          "collected?"),
            Fact("person", "Who led the research on the {event} {creature}?"),
            Fact("mm", "How many millimetres does the {event} {creature} measure?"),
            Fact("spokes", "Which conservation officer warned about the habitat of the {event} "
                           "{creature}?"),
        ),
    ),
    EventType(
        key="festival",
        org_kinds=("Children's Hospice", "Food Bank", "Animal Shelter", "Lifeboat Trust"),
        event_formats=("{stem} Festival",),
        numbers={"visitors": ("count", 1200, 60000), "edition": ("ordinal", 2, 40),
                 "amount": ("thousands", 8, 300), "stages": ("plain", 2, 9)},
        sentences=(
            ("More than {visitors} people attended the {event} in {town}, which ended on "
             "{date}.",
             "The {event} in {town} drew more than {visitors} people before it ended on {date}."),
            ("The festival, now in its {edition} year, raised {amount} for the {org}.",),
            ("Organiser {person} said this year's event was the biggest so far.",),
            ("Visitors enjoyed music on {stages} stages, as well as food stalls and a craft "
             "market.",),
            ("\"Every penny will make a real difference to the families we support,\" said "
             "{spokes}, who works for the {org}.",),
            ("Extra buses were laid on to help people travel to the site from the station.",
             "Volunteers spent the following morning clearing litter from the park."),
            ("Next year's festival has already been planned for the same weekend.",),
        ),
        facts=(
            Fact("visitors", "How many people attended the {event}?"),
            Fact("town", "In which town is the {event} held?"),
            Fact("date", "On what date did the {event} end?"),
            Fact("edition", "Which year of the {event} was this?"),
            Fact("amount", "How much money did the {event} raise?"),
            Fact("org", "Which charity received the money raised at the {event}?"),
            Fact("person", "Who organised the {event}?"),
            Fact("stages", "On how many stages was music played at the {event}?"),
        ),
    ),
)

#: Slot names that hold an article's unique entities (used for the disjointness guarantee).
ENTITY_SLOTS = ("org", "event", "rival", "person", "spokes")


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
    cfg = {} if cfg is None else cfg
    out: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        value = cfg.get(key, None)
        out[key] = default if value is None else value
        if isinstance(out[key], bool) or not isinstance(out[key], int):
            raise ValueError(f"muse_synth: `{key}` must be an integer, got {out[key]!r}")
        minimum = {"seed": None, "n_knowmem_icl": 0, "n_retain_docs": 2}.get(key, 1)
        if minimum is not None and out[key] < minimum:
            raise ValueError(f"muse_synth: `{key}` must be >= {minimum}, got {out[key]}")
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
            lambda: "".join(rng.choice(p) for p in (_LAST_HEADS, _LAST_LINKS, _LAST_TAILS)),
            self.used_last, "surnames",
        )
        return f"{rng.choice(_FIRST_NAMES)} {last}", last

    def stem(self) -> str:
        rng = self.rng
        return self._unique(lambda: rng.choice(_STEM_HEADS) + rng.choice(_STEM_TAILS),
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


def generate_muse_synth(cfg: Mapping[str, Any] | None, out_dir: str | Path) -> dict[str, Any]:
    """Write the embedded MUSE-News world into ``out_dir`` and return its manifest.

    Layout, field names and split roles follow ``muse-bench/MUSE-News`` (see the module
    docstring). ``manifest.json`` is written last, so its presence marks a complete world.
    """
    c = resolve_config(cfg)
    seed = c["seed"]
    n_forget, n_retain, n_holdout = c["n_forget_docs"], c["n_retain_docs"], c["n_holdout_docs"]

    # One stream for all articles, so names are unique across splits; the event type cycles so
    # every split has the same mix of stories.
    rng = _rng(seed, "articles")
    names = _Names(rng)
    articles = [_draw_article(rng, names, EVENT_TYPES[i % len(EVENT_TYPES)])
                for i in range(n_forget + n_retain + n_holdout)]
    forget = articles[:n_forget]
    retain = articles[n_forget: n_forget + n_retain]
    holdout = articles[n_forget + n_retain:]
    docs = {"forget": forget, "retain1": retain[: n_retain // 2], "retain2": retain[n_retain // 2:],
            "holdout": holdout}

    verbmem = []
    for article in forget[: c["n_verbmem"]]:
        prompt, gt = _split_prompt(article.text, c["verbmem_prompt_words"])
        verbmem.append({"prompt": prompt, "gt": gt})

    qa_rng = _rng(seed, "knowmem")
    n_icl, n_qa = c["n_knowmem_icl"], c["n_knowmem_qa"]
    forget_icl, forget_qa = _select_qa(qa_rng, forget, n_icl, n_qa, "forget")
    retain_icl, retain_qa = _select_qa(qa_rng, docs["retain2"], n_icl, n_qa, "retain2")

    n_priv = c["n_privleak"]
    files: dict[tuple[str, str], list[dict[str, Any]]] = {
        **{("raw", split): [{"text": a.text} for a in arts] for split, arts in docs.items()},
        ("verbmem", "forget"): verbmem,
        ("knowmem", "forget_qa"): _qa_rows(forget_qa),
        ("knowmem", "retain_qa"): _qa_rows(retain_qa),
        ("knowmem", "forget_qa_icl"): _qa_rows(forget_icl),
        ("knowmem", "retain_qa_icl"): _qa_rows(retain_icl),
        ("privleak", "forget"): [{"text": a.text} for a in forget[:n_priv]],
        ("privleak", "retain"): [{"text": a.text} for a in docs["retain2"][:n_priv]],
        ("privleak", "holdout"): [{"text": a.text} for a in holdout[:n_priv]],
    }
    assert set(files) == {(cfg_, s) for cfg_, splits in LAYOUT.items() for s in splits}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {f"{config}/{split}": _write_jsonl(out / config / f"{split}.json", rows)
              for (config, split), rows in files.items()}

    def sources(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"doc": r["doc"], "fact": r["fact"]} for r in rows]

    manifest = {
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
            "forget_qa": {"raw_split": "forget", "rows": sources(forget_qa)},
            "forget_qa_icl": {"raw_split": "forget", "rows": sources(forget_icl)},
            "retain_qa": {"raw_split": "retain2", "rows": sources(retain_qa)},
            "retain_qa_icl": {"raw_split": "retain2", "rows": sources(retain_icl)},
        },
        # verbmem/forget[i] and privleak/<split>[i] are raw/<source>[i].
        "verbmem_source": "forget",
        "privleak_sources": {"forget": "forget", "retain": "retain2", "holdout": "holdout"},
        "training": {"target": ["forget", "retain1", "retain2"], "retrain": ["retain1", "retain2"],
                     "unlearn_forget": "forget", "unlearn_retain": "retain1"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest
