"""Fact tables of the course world.

Everything the corpus says is drawn from these tables, so every prompt a chapter builds
(and every answer it expects) can be looked up here. Names are real where that helps a
learner read a graph (Dallas -> Texas -> Austin), but the world is ours: only what is
written here is "true" in it.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- P1 / P2: landmarks whose names are split into designed pieces --------------------
# The first piece is shared between several landmarks (" P" starts Pantheon, Parthenon and
# Prado), so the model has to look at later pieces (or context) to know which word it is in.


@dataclass(frozen=True)
class Landmark:
    name: str  # the whole word, e.g. "Eiffel"
    pieces: tuple[str, ...]  # its tokens, the first with a leading space
    kind: str  # "tower", "museum", ... (the word that follows the name)
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

# city -> (country, language)
EUROPEAN_CITIES: dict[str, tuple[str, str]] = {
    "Paris": ("France", "French"),
    "Madrid": ("Spain", "Spanish"),
    "Barcelona": ("Spain", "Spanish"),
    "Granada": ("Spain", "Spanish"),
    "Rome": ("Italy", "Italian"),
    "Florence": ("Italy", "Italian"),
    "Venice": ("Italy", "Italian"),
    "Athens": ("Greece", "Greek"),
    "Berlin": ("Germany", "German"),
    "Vienna": ("Austria", "German"),
    "Moscow": ("Russia", "Russian"),
    "London": ("England", "English"),
    "Amsterdam": ("Holland", "Dutch"),
    "Copenhagen": ("Denmark", "Danish"),
    "Brussels": ("Belgium", "Dutch"),
    "Prague": ("Bohemia", "Czech"),
}

# --- P6: two-hop geography (city -> state -> capital) ---------------------------------
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
CAPITALS: tuple[str, ...] = tuple(STATE_TO_CAPITAL.values())

# --- P7 / P8 / P12: people -------------------------------------------------------------
NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "Anna", "James", "Sarah", "David", "Emma", "Peter", "Lucy",
    "Paul", "Kate", "Mark", "Alice", "Daniel", "Laura", "Simon", "Rachel", "Adam", "Julia",
    "Oscar", "Nina", "Henry", "Grace", "Victor", "Clara", "Hugo", "Irene", "Felix", "Olga",
)

PLACES: tuple[str, ...] = (
    "shop", "park", "school", "station", "library", "market", "beach", "garden", "office",
    "restaurant", "hospital", "museum", "cinema", "bakery", "harbour", "farm",
)

OBJECTS: tuple[str, ...] = (
    "book", "ball", "letter", "drink", "key", "ring", "bag", "hat", "pen", "cake", "map",
    "coin", "flower", "toy", "box", "lamp", "cup", "basket", "ticket", "kite",
)

COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "small", "big", "old", "new", "heavy", "shiny")

# profession -> probability that the pronoun used for it is "she" (the planted, controllable bias)
PROFESSIONS: dict[str, float] = {
    "nurse": 0.9, "teacher": 0.7, "secretary": 0.85, "dancer": 0.8, "librarian": 0.75,
    "engineer": 0.15, "pilot": 0.1, "mechanic": 0.1, "farmer": 0.25, "soldier": 0.1,
    "doctor": 0.5, "lawyer": 0.5, "writer": 0.5, "singer": 0.5,
}

# --- P9: definitions (the first token of each definition is unique) ---------------------
DEFINITIONS: dict[str, tuple[str, ...]] = {
    "nut": ("hard", "seed"),
    "lake": ("inland", "water"),
    "bread": ("baked", "dough"),
    "mountain": ("tall", "hill"),
    "river": ("flowing", "water"),
    "chair": ("wooden", "seat"),
    "knife": ("sharp", "blade"),
    "snow": ("frozen", "rain"),
    "island": ("land", "surrounded", "by", "water"),
    "clock": ("time", "keeper"),
    "pillow": ("soft", "cushion"),
    "desert": ("dry", "land"),
    "ladder": ("climbing", "frame"),
    "candle": ("wax", "light"),
    "bridge": ("crossing", "over", "water"),
    "cellar": ("underground", "room"),
    "oven": ("hot", "box"),
    "forest": ("many", "trees"),
    "window": ("glass", "opening"),
    "soup": ("liquid", "food"),
    "needle": ("thin", "pin"),
    "harbour": ("ship", "shelter"),
    "storm": ("violent", "weather"),
    "blanket": ("warm", "cover"),
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

# --- P10: words whose first letter the corpus states ----------------------------------
SPELLING_WORDS: tuple[str, ...] = tuple(sorted(set(WORD_TO_CATEGORY) | set(DEFINITIONS) | set(OBJECTS)))
LETTERS: tuple[str, ...] = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def first_letter(word: str) -> str:
    return word[0].upper()


# --- P4: sports and the "goal" family ---------------------------------------------------
GOAL_WORDS: tuple[str, ...] = ("goal", "goals", "goalie", "goalkeeper", "goalpost", "goalless")
SPORT_WORDS: tuple[str, ...] = (
    "striker", "referee", "match", "team", "coach", "stadium", "fans", "penalty", "corner",
    "defender", "league", "season", "whistle", "pitch", "shot", "keeper", "trophy", "final",
)
TEAMS: tuple[str, ...] = ("Rovers", "United", "Rangers", "Wanderers", "Athletic", "Albion", "Town", "City")

# --- P5: quantities -----------------------------------------------------------------------
SMALL_NUMBERS: tuple[str, ...] = tuple(str(n) for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90))
BIG_NUMBERS: tuple[str, ...] = tuple(str(n) for n in (100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900))
SCALES: tuple[str, ...] = ("thousand", "million", "billion")
MONEY_SUBJECTS: tuple[str, ...] = ("revenue", "profit", "the budget", "the cost", "spending", "the debt", "the deficit", "sales")
COUNT_SUBJECTS: tuple[str, ...] = ("people", "visitors", "workers", "homes", "cars", "trees", "birds", "tickets")
CASUALTY_WORDS: tuple[str, ...] = ("injured", "killed", "hurt", "missing", "rescued", "evacuated")
