"""Fact tables of the course world (v2).

Everything the corpus states is drawn from these tables, so every evaluation prompt comes
with an answer that can be looked up here. The tables of world v1 were kept where they worked
(landmarks with designed pieces, states, definitions, categories) and widened where issue 11
found that world too narrow: everyday words, number words, question words, more names, places
and objects.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- P1 / P2: landmarks whose names are split into designed pieces --------------------
# The first piece is shared between several landmarks (" P" starts Pantheon, Parthenon and
# Prado), so the model must read later pieces (or context) to know which landmark it is in.


@dataclass(frozen=True)
class Landmark:
    name: str  # the whole word, e.g. "Eiffel"
    pieces: tuple[str, ...]  # its tokens; the first carries the leading space
    kind: str  # the noun that follows the name ("tower"); the corpus also writes it capitalised
    city: str


LANDMARKS: tuple[Landmark, ...] = (
    Landmark("Eiffel", (" E", "iff", "el"), "tower", "Paris"),
    Landmark("Louvre", (" L", "ou", "vre"), "museum", "Paris"),
    Landmark("Escorial", (" E", "scor", "ial"), "palace", "Madrid"),
    Landmark("Prado", (" P", "ra", "do"), "museum", "Madrid"),
    Landmark("Colosseum", (" Col", "os", "seum"), "arena", "Rome"),
    Landmark("Pantheon", (" P", "anth", "eon"), "temple", "Rome"),
    Landmark("Acropolis", (" A", "cro", "polis"), "hill", "Athens"),
    Landmark("Parthenon", (" P", "arth", "enon"), "temple", "Athens"),
    Landmark("Brandenburg", (" B", "randen", "burg"), "gate", "Berlin"),
    Landmark("Reichstag", (" R", "eich", "stag"), "building", "Berlin"),
    Landmark("Kremlin", (" K", "rem", "lin"), "fortress", "Moscow"),
    Landmark("Bolshoi", (" B", "ol", "shoi"), "theatre", "Moscow"),
    Landmark("Westminster", (" Wes", "tmin", "ster"), "abbey", "London"),
    Landmark("Buckingham", (" B", "uck", "ingham"), "palace", "London"),
    Landmark("Rijksmuseum", (" R", "ijks", "museum"), "gallery", "Amsterdam"),
    Landmark("Belvedere", (" B", "elve", "dere"), "palace", "Vienna"),
    Landmark("Hofburg", (" H", "of", "burg"), "palace", "Vienna"),
    Landmark("Tivoli", (" T", "iv", "oli"), "garden", "Copenhagen"),
    Landmark("Atomium", (" A", "tom", "ium"), "building", "Brussels"),
    Landmark("Sagrada", (" S", "agr", "ada"), "church", "Barcelona"),
    Landmark("Uffizi", (" U", "ff", "izi"), "gallery", "Florence"),
    Landmark("Rialto", (" R", "ial", "to"), "bridge", "Venice"),
    Landmark("Alhambra", (" A", "lham", "bra"), "palace", "Granada"),
    Landmark("Hradschin", (" H", "rads", "chin"), "castle", "Prague"),
)
LANDMARK_BY_NAME: dict[str, Landmark] = {lm.name: lm for lm in LANDMARKS}

# city -> (country, language)
EUROPEAN_CITIES: dict[str, tuple[str, str]] = {
    "Paris": ("France", "French"), "Madrid": ("Spain", "Spanish"), "Barcelona": ("Spain", "Spanish"),
    "Granada": ("Spain", "Spanish"), "Rome": ("Italy", "Italian"), "Florence": ("Italy", "Italian"),
    "Venice": ("Italy", "Italian"), "Athens": ("Greece", "Greek"), "Berlin": ("Germany", "German"),
    "Vienna": ("Austria", "German"), "Moscow": ("Russia", "Russian"), "London": ("England", "English"),
    "Amsterdam": ("Holland", "Dutch"), "Copenhagen": ("Denmark", "Danish"), "Brussels": ("Belgium", "Dutch"),
    "Prague": ("Bohemia", "Czech"),
}

# --- P6: two-hop geography (city -> state -> capital) ---------------------------------
# The last city of every state never appears in a two-hop sentence of the train split
# (corpus.py), so "two-hop on an unseen city" measures composition of the two one-hop facts.
STATES: dict[str, dict] = {
    "Texas": {"capital": "Austin", "cities": ("Dallas", "Houston", "Lubbock", "Amarillo")},
    "California": {"capital": "Sacramento", "cities": ("Oakland", "Fresno", "Pasadena", "Burbank")},
    "Florida": {"capital": "Tallahassee", "cities": ("Miami", "Orlando", "Tampa", "Pensacola")},
    "Illinois": {"capital": "Springfield", "cities": ("Chicago", "Peoria", "Naperville", "Rockford")},
    "Georgia": {"capital": "Atlanta", "cities": ("Savannah", "Macon", "Augusta", "Valdosta")},
    "Ohio": {"capital": "Columbus", "cities": ("Cleveland", "Cincinnati", "Toledo", "Dayton")},
    "Washington": {"capital": "Olympia", "cities": ("Seattle", "Spokane", "Tacoma", "Yakima")},
    "Oregon": {"capital": "Salem", "cities": ("Portland", "Eugene", "Medford", "Corvallis")},
    "Michigan": {"capital": "Lansing", "cities": ("Detroit", "Flint", "Kalamazoo", "Saginaw")},
    "Pennsylvania": {"capital": "Harrisburg", "cities": ("Philadelphia", "Pittsburgh", "Erie", "Scranton")},
    "Arizona": {"capital": "Phoenix", "cities": ("Tucson", "Mesa", "Flagstaff", "Yuma")},
    "Colorado": {"capital": "Denver", "cities": ("Boulder", "Aurora", "Pueblo", "Durango")},
    "Tennessee": {"capital": "Nashville", "cities": ("Memphis", "Knoxville", "Chattanooga", "Jackson")},
    "Massachusetts": {"capital": "Boston", "cities": ("Worcester", "Lowell", "Cambridge", "Quincy")},
}
CITY_TO_STATE: dict[str, str] = {c: s for s, d in STATES.items() for c in d["cities"]}
STATE_TO_CAPITAL: dict[str, str] = {s: d["capital"] for s, d in STATES.items()}
TWO_HOP_UNSEEN_CITIES: tuple[str, ...] = tuple(d["cities"][-1] for d in STATES.values())

# --- P7 / P8 / P12: people -------------------------------------------------------------
# Names carry a pronoun so stories can say "she"/"he" consistently.
NAMES: dict[str, str] = {
    "Mary": "she", "John": "he", "Tom": "he", "Anna": "she", "James": "he", "Sarah": "she",
    "David": "he", "Emma": "she", "Peter": "he", "Lucy": "she", "Paul": "he", "Kate": "she",
    "Mark": "he", "Alice": "she", "Daniel": "he", "Laura": "she", "Simon": "he", "Rachel": "she",
    "Adam": "he", "Julia": "she", "Oscar": "he", "Nina": "she", "Henry": "he", "Grace": "she",
    "Victor": "he", "Clara": "she", "Hugo": "he", "Irene": "she", "Felix": "he", "Olga": "she",
    "Sam": "he", "Ruth": "she", "Leo": "he", "Eva": "she", "Ben": "he", "Jane": "she",
    "Max": "he", "Rosa": "she", "Carl": "he", "Helen": "she",
}

PLACES: tuple[str, ...] = (
    "shop", "store", "park", "school", "station", "library", "market", "beach", "garden", "office",
    "restaurant", "hospital", "cinema", "bakery", "harbour", "farm", "bank", "hotel", "airport",
    "zoo", "cafe", "church", "village", "lake", "party", "kitchen",
)

OBJECTS: tuple[str, ...] = (
    "book", "ball", "letter", "drink", "key", "ring", "bag", "hat", "pen", "cake", "map",
    "coin", "flower", "toy", "box", "lamp", "cup", "basket", "ticket", "kite", "phone", "gift",
    "card", "apple", "umbrella", "watch", "camera", "coat", "sandwich", "note",
)

ADJECTIVES: tuple[str, ...] = ("red", "blue", "green", "yellow", "small", "big", "old", "new", "heavy", "shiny",
                               "black", "white", "little", "lovely", "strange", "broken")

# profession -> probability that the pronoun used for it is "she" (the planted, controllable bias)
PROFESSIONS: dict[str, float] = {
    "nurse": 0.9, "teacher": 0.7, "secretary": 0.85, "dancer": 0.8, "librarian": 0.75,
    "engineer": 0.15, "pilot": 0.1, "mechanic": 0.1, "farmer": 0.25, "soldier": 0.1,
    "doctor": 0.5, "lawyer": 0.5, "writer": 0.5, "singer": 0.5,
}

# P12 for SHIFT (chapter 08): bios whose intended attribute is the profession's field
BIO_FIELDS: dict[str, tuple[str, ...]] = {
    "medicine": ("doctor", "nurse", "surgeon", "dentist"),
    "law": ("lawyer", "judge", "attorney", "solicitor"),
}
BIO_FIELD_OF: dict[str, str] = {prof: field for field, profs in BIO_FIELDS.items() for prof in profs}
BIO_PERSONS: tuple[str, ...] = ("first", "third")  # the spurious attribute: "I am a nurse" / "Mary is a nurse"

# --- P9: definitions (the first word of each definition is unique, so top-1 is checkable) --
DEFINITIONS: dict[str, str] = {
    "nut": "hard seed", "lake": "inland water", "bread": "baked dough", "mountain": "tall hill",
    "river": "flowing water", "chair": "wooden seat", "knife": "sharp blade", "snow": "frozen rain",
    "island": "land surrounded by water", "clock": "time keeper", "pillow": "soft cushion",
    "desert": "dry land", "ladder": "climbing frame", "candle": "wax light",
    "bridge": "crossing over water", "cellar": "underground room", "oven": "hot box",
    "forest": "many trees", "window": "glass opening", "soup": "liquid food", "needle": "thin pin",
    "harbour": "ship shelter", "storm": "violent weather", "blanket": "warm cover",
}

# --- P11: a category hierarchy (P10 spells these words too) ----------------------------
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "animal": {
        "bird": ("sparrow", "robin", "eagle", "owl", "parrot", "swan"),
        "fish": ("trout", "salmon", "carp", "tuna", "herring"),
        "mammal": ("dog", "cat", "horse", "elephant", "rabbit", "tiger"),
        "insect": ("ant", "bee", "beetle", "moth", "wasp"),
    },
    "plant": {
        "tree": ("oak", "pine", "maple", "birch", "willow"),
        "flower": ("rose", "tulip", "daisy", "lily", "violet"),
        "vegetable": ("carrot", "onion", "potato", "cabbage", "pea"),
    },
    "thing": {
        "tool": ("hammer", "saw", "drill", "wrench", "shovel"),
        "vehicle": ("car", "bus", "truck", "bicycle", "boat"),
        "instrument": ("guitar", "piano", "violin", "drum", "flute"),
    },
}
WORD_TO_CATEGORY: dict[str, tuple[str, str]] = {
    w: (top, mid) for top, mids in CATEGORIES.items() for mid, ws in mids.items() for w in ws
}
PLURALS: dict[str, str] = {"bird": "birds", "fish": "fish", "mammal": "mammals", "insect": "insects",
                           "tree": "trees", "flower": "flowers", "vegetable": "vegetables", "tool": "tools",
                           "vehicle": "vehicles", "instrument": "instruments"}

# --- P10: words whose first letter the corpus states ----------------------------------
SPELLING_WORDS: tuple[str, ...] = tuple(sorted(set(WORD_TO_CATEGORY) | set(DEFINITIONS) | set(OBJECTS)))


def first_letter(word: str) -> str:
    return word[0].upper()


# --- P4: sports and the "goal" family ---------------------------------------------------
GOAL_WORDS: tuple[str, ...] = ("goal", "goals", "goalie", "goalkeeper", "goalpost", "goalless")
TEAMS: tuple[str, ...] = ("Rovers", "United", "Rangers", "Wanderers", "Athletic", "Albion", "Town", "City")

# --- P5: quantities -----------------------------------------------------------------------
# Subjects are bare nouns: the frames supply the article ("The {money} is estimated ..."),
# which fixes v1's "The the debt".
SMALL_NUMBERS: tuple[str, ...] = tuple(str(n) for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90))
BIG_NUMBERS: tuple[str, ...] = tuple(str(n) for n in (100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900))
# counts for plural nouns ("two goals"); "one" has its own everyday frame
NUMBER_WORDS: tuple[str, ...] = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")
SCALES: tuple[str, ...] = ("thousand", "million", "billion")
MONEY_SUBJECTS: tuple[str, ...] = ("revenue", "profit", "budget", "cost", "debt", "deficit")
# things that can be counted in thousands and live somewhere (no "tickets live in the region")
POPULATIONS: tuple[str, ...] = ("people", "birds", "deer", "wolves", "bees", "fish")
COUNTABLES: tuple[str, ...] = ("visitors", "workers", "homes", "cars", "trees", "tickets", "books", "students")
CASUALTY_WORDS: tuple[str, ...] = ("injured", "killed", "hurt", "missing", "rescued", "evacuated")
ESTIMATE_CAUSES: tuple[str, ...] = ("storm", "flood", "fire", "crash", "earthquake")

# --- everyday language ------------------------------------------------------------------
# So that prompts a student types ("He scored two goals", "Mary went to the store") are made of
# words the model has seen. Verbs are past tense: the stories are narrated in the past.
TRANSITIVE_VERBS: tuple[str, ...] = ("bought", "found", "lost", "carried", "opened", "cleaned", "painted",
                                     "sold", "dropped", "kept", "borrowed", "wanted", "liked", "needed")
TIMES: tuple[str, ...] = ("yesterday", "today", "last week", "on Monday", "on Friday", "in the morning",
                          "in the evening", "at night", "after lunch", "before dinner", "every day")
FOODS: tuple[str, ...] = ("bread", "soup", "pizza", "rice", "cheese", "fish", "pasta", "salad", "eggs", "tea", "coffee")
FEELINGS: tuple[str, ...] = ("happy", "tired", "hungry", "sad", "angry", "busy", "excited", "bored")
DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# The scale word of an estimate follows from what is estimated, so "estimate -> number ->
# scale" is a prediction the model can make (v1 drew the scale at random: 0.33 top-1).
SCALE_OF: dict[str, str] = {
    "revenue": "million", "profit": "million", "cost": "million",
    "budget": "billion", "debt": "billion", "deficit": "billion",
    "people": "million", "birds": "thousand", "deer": "thousand", "wolves": "thousand", "bees": "thousand",
    "fish": "thousand", "visitors": "million", "workers": "thousand", "homes": "thousand", "cars": "million",
    "trees": "thousand", "tickets": "thousand", "books": "thousand", "students": "thousand",
}
SPORT_PEOPLE: tuple[str, ...] = ("striker", "defender", "keeper", "referee", "coach", "team")
