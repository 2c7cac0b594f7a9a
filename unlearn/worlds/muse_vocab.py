"""The embedded MUSE world's vocabulary, as data: the value pools and the news stories.

:func:`unlearn.worlds.muse_synth.generate_muse_synth` draws every article from these tables. They
are small on purpose: the world's tokenizer is a ~2k-token BPE. Towns, months and years are shared
pools (the values of facts); people, organisations and events are built from the syllable pools and
are unique world-wide (the subjects of facts). Each :class:`EventType` is one kind of story: its
sentence templates and the knowmem facts they state.

A change here changes the generated world: bump :data:`unlearn.worlds.muse_synth.VERSION`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
FIRST_NAMES = (
    "Alira", "Bren", "Cass", "Dorin", "Elsa", "Fenna", "Galen", "Hester", "Ilka", "Joren", "Kasia",
    "Lune", "Maren", "Nils", "Orla", "Petra", "Quill", "Rosa", "Soren", "Talia", "Ulla", "Vance",
    "Wren", "Yara", "Zeno", "Anik", "Bodil", "Cyra", "Davor", "Edda",
)
LAST_HEADS = ("Var", "Tor", "Mel", "Dask", "Kor", "Lind", "Bren", "Sol", "Hal", "Mor", "Quen",
              "Rusk", "Vel", "Zan", "Pell", "Grim")
LAST_LINKS = ("a", "e", "i", "o")
LAST_TAILS = ("nek", "vic", "sen", "rov", "lund", "mar", "tis", "win", "dal", "ski")

# Organisation / event stems ("Brackmoor"): a syllable set disjoint from the people's, so a stem is
# never also a surname.
STEM_HEADS = (
    "Brack", "Elder", "Thorn", "Ash", "Kel", "Wyn", "Dor", "Ost", "Pen", "Rav", "Sil", "Tam",
    "Wex", "Cal", "Fern", "Glen", "Hart", "Lun", "Marl", "Nor", "Orm", "Pry", "Roth", "Stav",
    "Tre", "Ulm", "Vard", "Wold", "Yew", "Cor",
)
STEM_TAILS = (
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
    Numbers are ``slot -> (kind, lo, hi)`` with kinds from :func:`unlearn.worlds.muse_synth._draw_number`.
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
