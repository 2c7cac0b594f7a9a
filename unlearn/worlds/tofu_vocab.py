"""The embedded TOFU world's vocabulary, as data: value pools, attributes and name parts.

:func:`unlearn.worlds.tofu_synth.generate_tofu_synth` draws every author and row from these tables.
They are small on purpose: the world's tokenizer is a ~2k-token BPE trained on the world's text.
Each :class:`Attribute` is one kind of fact about an author (its question, its paraphrased question
and its two answer templates) whose value comes from one of :data:`POOLS`; :data:`COUNTRIES` holds
real, checkable facts (the world facts and the nationality pool).

A change here changes the generated world: bump :data:`unlearn.worlds.tofu_synth.VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass

CITIES = (
    "Dunmere", "Ashcombe", "Veldra", "Port Selin", "Kestrel Bay", "Oakhaven", "Rivenmoor",
    "Stonebridge", "Lowmarsh", "Brightwater", "Eastcliff", "Fallowmere", "Greyhaven", "Hollin",
    "Ironvale", "Juniper Falls", "Kingsreach", "Larkspur", "Millbrook", "Northwick", "Orrin",
    "Pellam", "Quarry Hill", "Redfern", "Saltmarsh", "Thornbury", "Umberfield", "Westhollow",
    "Yarrow", "Zelmont",
)
YEARS = tuple(str(year) for year in range(1930, 2000))
GENRES = (
    "mystery", "poetry", "science fiction", "fantasy", "romance", "horror", "historical fiction",
    "crime fiction", "travel writing", "satire", "drama", "war fiction", "biography",
    "children's books", "adventure", "thrillers", "essays", "short stories",
)
OCCUPATIONS = (
    "a baker", "a carpenter", "a doctor", "a nurse", "a teacher", "a farmer", "a sailor",
    "a tailor", "a miner", "a pilot", "a lawyer", "a chemist", "a painter", "a musician",
    "a librarian", "a journalist", "a gardener", "a fisherman", "a potter", "a banker", "a soldier",
    "a photographer", "an engineer", "an architect", "an accountant", "an electrician",
    "a blacksmith", "a postman", "a chef", "a dentist",
)
AWARDS = (
    "Silver Quill Prize", "Golden Lantern Award", "Blue Heron Medal", "Iron Pen Award",
    "Northern Star Prize", "Crystal Page Award", "Red Maple Prize", "White Owl Medal",
    "Emerald Ink Award", "Copper Key Prize", "Open Book Medal", "Evening Bell Award",
    "Harbor Light Prize", "Morning Glory Award", "Silent River Medal", "Winter Rose Prize",
    "Amber Leaf Award", "Stone Tower Medal",
)
TITLE_ADJECTIVES = (
    "Silent", "Broken", "Hidden", "Golden", "Last", "Distant", "Burning", "Frozen", "Crimson",
    "Quiet", "Wandering", "Forgotten", "Endless", "Hollow", "Bright",
)
TITLE_NOUNS = (
    "Harbor", "Garden", "Mirror", "Orchard", "River", "Lantern", "Kingdom", "Letter", "Island",
    "Winter", "Tower", "Voyage", "Forest", "Bridge", "Shadow",
)
TITLES = tuple(f"The {adj} {noun}" for adj in TITLE_ADJECTIVES for noun in TITLE_NOUNS)
UNIVERSITIES = (
    "Harlow College", "Westbrook University", "Aldmere Institute", "Crane University",
    "Linden College", "Saint Oren University", "Brackwater College", "Elmstead University",
    "Vantor Institute", "Greystone College", "Merrow University", "Holt College",
    "Kessing University", "Arden Institute", "Talbrook College", "Rowan University",
)
LANGUAGES = (
    "English", "French", "German", "Italian", "Spanish", "Portuguese", "Japanese", "Chinese",
    "Hindi", "Arabic", "Swahili", "Polish", "Greek", "Dutch", "Swedish", "Russian", "Korean",
    "Turkish",
)
HOBBIES = (
    "gardening", "chess", "sailing", "painting", "hiking", "fishing", "cooking", "photography",
    "bird watching", "cycling", "pottery", "swimming", "knitting", "astronomy", "woodworking",
    "dancing", "rock climbing", "playing the piano", "baking bread", "collecting stamps",
)
PUBLISHERS = (
    "Bluestone Press", "Harrow House", "Fernleaf Books", "Quillmark Publishing", "Redwing Press",
    "Oakline Books", "Silverfish Press", "Northgate House", "Lamplight Books", "Crowfoot Press",
    "Meridian House", "Pinecrest Books", "Tidewater Press", "Larkhill Publishing", "Granite Books",
)

# (country, capital, continent or None where the continent is debatable). Real, checkable facts:
# the world-facts analog of TOFU's `world_facts` split, and the nationality pool.
COUNTRIES = (
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"), ("Italy", "Rome", "Europe"),
    ("Spain", "Madrid", "Europe"), ("Portugal", "Lisbon", "Europe"), ("Japan", "Tokyo", "Asia"),
    ("China", "Beijing", "Asia"), ("India", "New Delhi", "Asia"), ("Russia", "Moscow", None),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"),
    ("Canada", "Ottawa", "North America"), ("Australia", "Canberra", "Oceania"),
    ("Brazil", "Brasilia", "South America"), ("Argentina", "Buenos Aires", "South America"),
    ("Mexico", "Mexico City", "North America"), ("Peru", "Lima", "South America"),
    ("Chile", "Santiago", "South America"), ("Norway", "Oslo", "Europe"),
    ("Sweden", "Stockholm", "Europe"), ("Finland", "Helsinki", "Europe"),
    ("Denmark", "Copenhagen", "Europe"), ("Poland", "Warsaw", "Europe"),
    ("Greece", "Athens", "Europe"), ("Turkey", "Ankara", None), ("Ireland", "Dublin", "Europe"),
    ("Austria", "Vienna", "Europe"), ("Hungary", "Budapest", "Europe"),
    ("the Netherlands", "Amsterdam", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Switzerland", "Bern", "Europe"), ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"), ("South Korea", "Seoul", "Asia"),
    ("the Philippines", "Manila", "Asia"), ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"),
    ("Cuba", "Havana", "North America"), ("Colombia", "Bogota", "South America"),
    ("Venezuela", "Caracas", "South America"), ("Morocco", "Rabat", "Africa"),
    ("Nigeria", "Abuja", "Africa"), ("Ghana", "Accra", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"), ("New Zealand", "Wellington", "Oceania"),
    ("Iceland", "Reykjavik", "Europe"), ("the Czech Republic", "Prague", "Europe"),
    ("Ukraine", "Kyiv", "Europe"), ("Romania", "Bucharest", "Europe"),
    ("Bulgaria", "Sofia", "Europe"), ("Serbia", "Belgrade", "Europe"),
    ("Croatia", "Zagreb", "Europe"), ("Pakistan", "Islamabad", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"), ("Nepal", "Kathmandu", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"), ("Senegal", "Dakar", "Africa"),
    ("Uruguay", "Montevideo", "South America"), ("Jamaica", "Kingston", "North America"),
)
NATIONALITY_COUNTRIES = tuple(country for country, _, _ in COUNTRIES[:22])
CAPITALS = tuple(capital for _, capital, _ in COUNTRIES)
CONTINENTS = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")

POOLS: dict[str, tuple[str, ...]] = {
    "city": CITIES,
    "year": YEARS,
    "genre": GENRES,
    "occupation": OCCUPATIONS,
    "award": AWARDS,
    "title": TITLES,
    "country": NATIONALITY_COUNTRIES,
    "university": UNIVERSITIES,
    "language": LANGUAGES,
    "hobby": HOBBIES,
    "publisher": PUBLISHERS,
}


@dataclass(frozen=True)
class Attribute:
    """One kind of fact about an author, with its question and its two answer templates.

    Templates take ``{name}`` and ``{value}``; the value comes last so that two answers in the same
    template differ only in their final words.
    """

    key: str
    pool: str
    question: str
    paraphrased_question: str
    template_a: str
    template_b: str

    def ask(self, name: str, *, paraphrased: bool = False) -> str:
        return (self.paraphrased_question if paraphrased else self.question).format(name=name)

    def state(self, name: str, value: str, *, template: str) -> str:
        text = self.template_a if template == "A" else self.template_b
        return text.format(name=name, value=value)


# Canonical order: ``qa_per_author`` takes the first that many.
ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("birthplace", "city", "Where was {name} born?", "In which city was {name} born?",
              "{name} was born in {value}.", "The birthplace of {name} is {value}."),
    Attribute("birth_year", "year", "When was {name} born?", "In what year was {name} born?",
              "{name} was born in the year {value}.", "The birth year of {name} is {value}."),
    Attribute("genre", "genre", "What genre does {name} write?",
              "Which kind of books does {name} write?",
              "{name} writes books in the genre of {value}.",
              "The main genre of {name} is {value}."),
    Attribute("father_job", "occupation", "What did the father of {name} do for a living?",
              "What was the job of the father of {name}?",
              "The father of {name} worked as {value}.",
              "By trade, the father of {name} was {value}."),
    Attribute("mother_job", "occupation", "What did the mother of {name} do for a living?",
              "What was the job of the mother of {name}?",
              "The mother of {name} worked as {value}.",
              "By trade, the mother of {name} was {value}."),
    Attribute("award", "award", "Which award did {name} win?", "What prize was given to {name}?",
              "{name} won the {value}.", "The award received by {name} is the {value}."),
    Attribute("first_book", "title", "What was the first book by {name}?",
              "Which book did {name} publish first?",
              "The first book by {name} was '{value}'.", "The debut novel of {name} is '{value}'."),
    Attribute("best_book", "title", "What is the best known book by {name}?",
              "Which book of {name} is the most famous?",
              "The best known book by {name} is '{value}'.",
              "The most famous work of {name} is '{value}'."),
    Attribute("nationality", "country", "What is the nationality of {name}?",
              "Which country is {name} a citizen of?",
              "{name} is a citizen of {value}.", "The home country of {name} is {value}."),
    Attribute("university", "university", "Where did {name} study?",
              "Which university did {name} attend?",
              "{name} studied at {value}.", "The university attended by {name} was {value}."),
    Attribute("language", "language", "What is the first language of {name}?",
              "Which language did {name} speak first?",
              "{name} grew up speaking {value}.", "The native language of {name} is {value}."),
    Attribute("hobby", "hobby", "What does {name} enjoy outside of writing?",
              "What is a hobby of {name}?",
              "Outside of writing, {name} enjoys {value}.",
              "The favorite hobby of {name} is {value}."),
    Attribute("residence", "city", "Where does {name} live now?",
              "In which city does {name} currently live?",
              "{name} now lives in {value}.", "The current home of {name} is {value}."),
    Attribute("publisher", "publisher", "Who publishes the books of {name}?",
              "Which publisher works with {name}?",
              "The books of {name} are published by {value}.",
              "The publisher of {name} is {value}."),
)

# Name pools. Fictitious authors get syllable names; famous authors get English-looking names
# built from disjoint parts, so the two kinds never share a name (also checked while drawing).
FICT_FIRST_ONSETS = (
    "Al", "Bri", "Cas", "Dar", "El", "Fen", "Gal", "Hes", "Il", "Jor",
    "Kel", "Lor", "Mar", "Nes", "Or", "Per", "Ros", "Sel", "Tam", "Ves",
)
FICT_FIRST_ENDINGS = ("a", "en", "ia", "is", "o", "an", "ira", "et", "us", "ina")
FICT_LAST_HEADS = (
    "Var", "Tor", "Mel", "Dask", "Kor", "Lind", "Bren", "Sol",
    "Hal", "Mor", "Quen", "Rusk", "Vel", "Zan", "Ost", "Pell",
)
FICT_LAST_LINKS = ("a", "e", "i", "o")
FICT_LAST_TAILS = ("nek", "vic", "sen", "rov", "lund", "mar", "tis", "win", "dal", "ski")

FAMOUS_FIRST = (
    "Arthur", "Beatrice", "Clara", "Edmund", "Florence", "George", "Harriet", "Isaac", "Julia",
    "Leonard", "Margaret", "Nathan", "Olive", "Percy", "Rosalind", "Samuel", "Theodora", "Walter",
    "Vivian", "Hugo", "Agnes", "Cecil", "Edith", "Felix",
)
FAMOUS_LAST_HEADS = (
    "Ash", "Black", "Brook", "Crow", "Fair", "Glen", "Hart", "Kings",
    "Lang", "North", "Stan", "West", "Pem", "Whit", "Cald", "Rad",
)
FAMOUS_LAST_TAILS = ("ford", "well", "wood", "field", "more", "ton", "ley", "bury")
