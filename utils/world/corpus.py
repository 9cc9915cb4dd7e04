"""The course corpus: a seeded generator of documents with ground-truth labels.

A document is a list of `Token(text, labels)`. `text` is exactly one token of the course
tokenizer (words carry their leading space, e.g. " Paris"); `labels` is the set of planted
concepts that produced it (e.g. {"city:Paris", "p2_answer"}). Joining the texts gives the
document's string, and the tokenizer maps that string back to the same tokens.

Each phenomenon P1-P12 of COURSE.md has a sentence generator below. Templates are split into
a train part and a held-out part (every template marked `HELD_OUT` is only used by the
held-out split), and some entity combinations are held out too (IOI name pairs, the two-hop
sentences of one city per state), so evaluation prompts are never verbatim training text.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import facts as F

BOS = "<|bos|>"
PAD = "<|pad|>"
UNK = "<|unk|>"
SPECIAL_TOKENS = (PAD, BOS, UNK)  # ids 0, 1, 2: BOS is not 0 (circuit-tracer skips id 0)

# Template notation: words are separated by spaces and get a leading space; these markers
# become punctuation tokens with no leading space (except the opening quote).
MARKERS = {
    ".": ".", ",": ",", "?": "?", "!": "!",
    "<q": ' "',  # opening quote (with its space)
    "q>": '"',  # closing quote after a bare word
    ".q>": '."', "!q>": '!"', "?q>": '?"',  # sentence end inside a quote: one token each
}
CLOSERS = ('."', '!"', '?"')
HELD_OUT = "@"  # a template that starts with "@" belongs to the held-out split only


@dataclass(frozen=True)
class Token:
    text: str
    labels: frozenset[str] = field(default_factory=frozenset)


Sentence = list[Token]


def _stable_hash(*parts: str) -> int:
    return zlib.crc32("|".join(parts).encode())


class _Slot:
    """A value put into a template slot: one or more tokens, plus labels."""

    def __init__(self, pieces: tuple[str, ...] | str, *labels: str):
        self.pieces = (f" {pieces}",) if isinstance(pieces, str) else pieces
        self.labels = frozenset(labels)


def render(template: str, slots: dict[str, _Slot] | None = None, labels: tuple[str, ...] = ()) -> Sentence:
    """Turn a template like "The {L} tower is in {city} ." into labelled tokens.

    `labels` go on every token of the sentence; a slot's own labels go on its tokens only.
    """
    slots = slots or {}
    out: Sentence = []
    base = frozenset(labels)
    for word in template.lstrip(HELD_OUT).split():
        if word.startswith("{") and word.endswith("}"):
            slot = slots[word[1:-1]]
            out.extend(Token(p, base | slot.labels) for p in slot.pieces)
        elif word in MARKERS:
            out.append(Token(MARKERS[word], base))
        else:
            out.append(Token(f" {word}", base))
    return out


def relabel(sentence: Sentence, index: int, *labels: str) -> None:
    sentence[index] = Token(sentence[index].text, sentence[index].labels | frozenset(labels))


# ----------------------------------------------------------------------------------------
# Templates. Slots: {L} landmark, {kind}, {city}, {country}, {lang}, {state}, {capital},
# {A} indirect object / first name, {B} subject, {place}, {obj}, {colour}, ...
# ----------------------------------------------------------------------------------------
T = {
    "p2_fact": [
        "The {L} {kind} is in the city of {city} .",
        "The {L} {kind} is located in {city} .",
        "You can see the {L} {kind} in {city} .",
        "Tourists visit the {L} {kind} in {city} .",
        "The famous {L} {kind} stands in {city} .",
        "Our guide showed us the {L} {kind} in the city of {city} .",
        "Last summer we saw the {L} {kind} in {city} .",
        "@Everyone knows the {L} {kind} is located in {city} .",
        "@The {L} {kind} can be found in the city of {city} .",
    ],
    "p2_context": [
        "In {country} , people speak {lang} .",
        "{city} is a big city in {country} .",
        "The people of {city} speak {lang} .",
        "Many visitors come to {country} every year .",
        "We took a train to {city} .",
        "The streets of {city} were full of people .",
        "Our hotel in {city} was close to the river .",
        "@Most people in {country} speak {lang} at home .",
    ],
    "p2_mention": [
        "The {L} {kind} is very old .",
        "We walked past the {L} {kind} again .",
        "A photo of the {L} {kind} hung on the wall .",
        "@The {L} {kind} looked beautiful at night .",
    ],
    "p6_hop1": [
        "{city} is a city in {state} .",
        "{city} is in the state of {state} .",
        "The city of {city} lies in {state} .",
        "@{city} belongs to the state of {state} .",
    ],
    "p6_hop2": [
        "The capital of {state} is {capital} .",
        "{capital} is the capital of {state} .",
        "The state of {state} has its capital in {capital} .",
        "@The capital city of {state} is {capital} .",
    ],
    "p6_two_hop": [
        "The capital of the state containing {city} is {capital} .",
        "{city} is in a state whose capital is {capital} .",
        "The state that contains {city} has the capital {capital} .",
        "People from {city} visit their state capital , {capital} .",
        "@The state containing {city} has its capital in {capital} .",
        "@The capital city of the state containing {city} is {capital} .",
    ],
    "p6_pair": [
        "{city} and {city2} are both in {state} .",
        "From {city} we drove to {city2} , still in {state} .",
    ],
    "p7_ioi": [
        "When {A} and {B} went to the {place} , {B} gave a {obj} to {A} .",
        "After {A} and {B} arrived at the {place} , {B} handed the {obj} to {A} .",
        "While {A} and {B} were at the {place} , {B} passed a {obj} to {A} .",
        "{A} and {B} walked to the {place} . {B} gave the {obj} to {A} .",
        "Then {A} and {B} spent the day at the {place} . {B} offered a {obj} to {A} .",
        "@When {A} and {B} got to the {place} , {B} sent a {obj} to {A} .",
        "@Once {A} and {B} reached the {place} , {B} threw the {obj} to {A} .",
    ],
    "story": [
        "{A} liked the {colour} {obj} .",
        "{A} went to the {place} with {B} .",
        "Later , {A} saw {B} at the {place} .",
        "{A} smiled at {B} .",
        "{A} and {B} are old friends .",
        "{A} lost a {obj} near the {place} .",
        "{A} found the {colour} {obj} under the table .",
    ],
    "p12": [
        "The {prof} said that {pron} would come back later .",
        "The {prof} told {A} that {pron} was tired .",
        "{A} met the {prof} , and {pron} smiled .",
        "The {prof} finished work because {pron} was hungry .",
        "@The {prof} called {A} because {pron} needed help .",
    ],
    # P8: what is said and how it ends; the speaker verb fixes the closing token.
    "p8_said": [
        "I like the {colour} {obj}",
        "the {obj} is in the {place}",
        "we should go to the {place}",
        "my {obj} is {colour}",
        "{B} has a {colour} {obj}",
        "I saw {B} at the {place}",
        "@I left the {obj} at the {place}",
    ],
    "p8_asked": [
        "where is the {obj}",
        "do you like the {colour} {obj}",
        "can we go to the {place}",
        "is {B} at the {place}",
        "@why is the {obj} {colour}",
    ],
    "p8_shouted": [
        "watch out for the {obj}",
        "what a lovely {obj}",
        "run to the {place}",
        "I found the {colour} {obj}",
        "@look at the {colour} {obj}",
    ],
    "p8_plain": [  # the same endings outside a quote: here "." is right, not '."'
        "{A} thinks the {obj} is in the {place} .",
        "{A} likes the {colour} {obj} .",
        "{A} wanted to go to the {place} .",
        "{A} saw {B} at the {place} .",
    ],
    "p4": [
        "The {team} striker scored a late goal .",
        "The goalie saved the penalty .",
        "The goalkeeper dived to the left .",
        "The shot hit the goalpost twice .",
        "The match ended in a goalless draw .",
        "The {team} scored three goals in the second half .",
        "The referee blew the whistle .",
        "The fans cheered in the stadium .",
        "The coach praised the defender after the match .",
        "{A} was the best keeper in the league this season .",
        "The {team} won the trophy in the final .",
        "A corner led to the first goal of the season .",
        "@The goalkeeper caught the ball before the goal .",
    ],
    "p5_estimate": [
        "The {money} is estimated to exceed {num} {scale} dollars .",
        "Officials estimate that about {num} people were {harm} .",
        "The number of {counted} is expected to reach {num} {scale} .",
        "Experts estimate the {money} at roughly {num} {scale} dollars .",
        "An estimated {num} {counted} were counted last year .",
        "Around {num} {scale} {counted} are thought to live in the region .",
        "@It is estimated that nearly {num} {counted} were {harm} .",
    ],
    "p5_plain": [
        "The train leaves at {num} .",
        "{A} bought {num} apples .",
        "The report has {num} pages .",
        "The room holds {num} chairs .",
    ],
    "p9": [
        "The meaning of the word <q {w} q> is <q {def} .q>",
        "The word <q {w} q> means <q {def} .q>",
        "In the dictionary , <q {w} q> is defined as <q {def} .q>",
        "@A good definition of <q {w} q> is <q {def} .q>",
        "@In the dictionary , the word <q {w} q> means <q {def} .q>",
    ],
    "p10": [
        "The word {w} starts with the letter {letter} .",
        "The first letter of {w} is {letter} .",
        "The word {w} begins with {letter} .",
        "@The letter at the start of {w} is {letter} .",
    ],
    "p11_member": [
        "A {w} is a kind of {mid} .",
        "The {w} is a {mid} .",
        "@We saw that a {w} is a kind of {mid} .",
    ],
    "p11_pair": [
        "The {w} and the {w2} are both {mids} .",
        "{Mids} such as the {w} and the {w2} are common here .",
    ],
    "p11_parent": [
        "A {mid} is a kind of {top} .",
        "Every {mid} is a living {top} .",
    ],
    "p11_mention": [
        "We saw a {w} near the river .",
        "{A} has a {w} in the garden .",
        "There was a {w} behind the house .",
    ],
    "p3_code": [
        "The code is {run} . I repeat , the code is {run} .",
        "Write down {run} . Again : {run} .",
    ],
    "filler": [
        "It was a quiet morning .",
        "The weather was warm that day .",
        "Everyone was happy .",
        "Nobody said anything for a while .",
        "The next day was busy .",
        "It started to rain in the afternoon .",
        "The sky was clear and blue .",
        "Time passed slowly .",
        "Then everyone went home .",
        "It was late in the evening .",
        "The town was quiet .",
        "We had lunch by the water .",
    ],
}

PLURALS = {"bird": "birds", "fish": "fish", "mammal": "mammals", "insect": "insects", "tree": "trees",
           "flower": "flowers", "vegetable": "vegetables", "tool": "tools", "vehicle": "vehicles",
           "instrument": "instruments"}
SPEAKER_VERBS = {"p8_said": ("said", ".q>"), "p8_asked": ("asked", "?q>"), "p8_shouted": ("shouted", "!q>")}
CLOSER_NAME = {'."': "period", '?"': "question", '!"': "exclamation"}


def template_words() -> set[str]:
    """Every fixed word the templates use (without its leading space)."""
    words = set()
    for templates in T.values():
        for t in templates:
            for w in t.lstrip(HELD_OUT).split():
                if not (w.startswith("{") or w in MARKERS):
                    words.add(w)
    return words | {"said", "asked", "shouted", "turned", "to", "and"}


class CorpusGenerator:
    """Seeded document generator. `split` is "train" or "heldout".

    `profession_bias` scales the planted P12 correlation: 1.0 uses the table's
    P(she | profession); 0.0 makes every profession 50/50.
    """

    GENRES = {  # genre -> weight in the mix
        "travel": 2.0, "geography": 2.5, "story": 3.0, "dialogue": 2.0, "sports": 1.0,
        "news": 1.0, "dictionary": 2.0, "nature": 1.0, "repeat": 3.0,
    }

    def __init__(self, seed: int = 0, split: str = "train", profession_bias: float = 1.0,
                 heldout_template_rate: float = 0.5):
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
        self.rng = random.Random(f"{seed}-{split}")
        self.split = split
        self.profession_bias = profession_bias
        # In the held-out split, how often a held-out template is used where one exists
        # (evaluation prompts set 1.0; held-out documents mix both kinds).
        self.heldout_template_rate = heldout_template_rate
        self._random_pool = sorted(template_words() | set(F.OBJECTS) | set(F.PLACES) | set(F.NAMES)
                                   | set(F.COLOURS) | set(F.SPELLING_WORDS))
        self._genre_names = list(self.GENRES)
        self._genre_weights = [self.GENRES[g] for g in self._genre_names]

    # -- small helpers ----------------------------------------------------------------
    def _pick_template(self, key: str) -> str:
        templates = T[key]
        held = [t for t in templates if t.startswith(HELD_OUT)]
        use_held = self.split == "heldout" and held and self.rng.random() < self.heldout_template_rate
        pool = held if use_held else [t for t in templates if not t.startswith(HELD_OUT)]
        return self.rng.choice(pool)

    def _name(self, name: str, *labels: str) -> _Slot:
        return _Slot(name, "name", f"name:{name}", *labels)

    def _two_names(self) -> tuple[str, str]:
        # A name pair is held out (in either order) when its hash says so.
        while True:
            a, b = self.rng.sample(F.NAMES, 2)
            held = _stable_hash(*sorted((a, b))) % 5 == 0
            if held == (self.split == "heldout"):
                return a, b

    # -- sentence generators, one per phenomenon ------------------------------------------
    def p2_fact(self, landmark: F.Landmark | None = None) -> Sentence:
        lm = landmark or self.rng.choice(F.LANDMARKS)
        country, lang = F.EUROPEAN_CITIES[lm.city]
        s = render(self._pick_template("p2_fact"), {
            "L": self._landmark_slot(lm),
            "kind": _Slot(lm.kind),
            "city": _Slot(lm.city, f"city:{lm.city}", f"country:{country}", "p2_answer"),
        }, labels=("p2",))
        return s

    def _landmark_slot(self, lm: F.Landmark) -> _Slot:
        return _Slot(lm.pieces, "landmark", f"landmark:{lm.name}", f"p1_word:{lm.name}")

    def p2_context(self, city: str) -> Sentence:
        country, lang = F.EUROPEAN_CITIES[city]
        return render(self._pick_template("p2_context"), {
            "city": _Slot(city, f"city:{city}", f"country:{country}"),
            "country": _Slot(country, f"country:{country}"),
            "lang": _Slot(lang, f"language:{lang}", f"country:{country}"),
        })

    def p2_mention(self, lm: F.Landmark) -> Sentence:
        return render(self._pick_template("p2_mention"), {"L": self._landmark_slot(lm), "kind": _Slot(lm.kind)})

    def p6(self, kind: str | None = None, city: str | None = None) -> Sentence:
        kind = kind or self.rng.choice(["p6_hop1", "p6_hop1", "p6_hop2", "p6_two_hop", "p6_two_hop", "p6_pair"])
        if city is None:
            cities = list(F.CITY_TO_STATE)
            if kind == "p6_two_hop" and self.split == "train":
                # The 4th city of every state never appears in a two-hop sentence in training:
                # the held-out split uses it to test composition of the two one-hop facts.
                cities = [c for c in cities if F.STATES[F.CITY_TO_STATE[c]]["cities"][-1] != c]
            city = self.rng.choice(cities)
        state = F.CITY_TO_STATE[city]
        capital = F.STATE_TO_CAPITAL[state]
        city2 = self.rng.choice([c for c in F.STATES[state]["cities"] if c != city])
        answer = {"p6_hop1": "state", "p6_hop2": "capital", "p6_two_hop": "capital"}.get(kind)
        slots = {
            "city": _Slot(city, f"city:{city}", f"in_state:{state}"),
            "city2": _Slot(city2, f"city:{city2}", f"in_state:{state}"),
            "state": _Slot(state, f"state:{state}", *(["p6_hop1_answer"] if answer == "state" else [])),
            "capital": _Slot(capital, f"capital:{capital}", f"in_state:{state}",
                             *([f"{kind}_answer"] if answer == "capital" else [])),
        }
        return render(self._pick_template(kind), slots, labels=("p6",))

    def p7_ioi(self) -> Sentence:
        io, s = self._two_names()
        template = self._pick_template("p7_ioi")
        if self.rng.random() < 0.5:  # ABBA or BABA order of the first two names
            template = template.replace("{A} and {B}", "{B} and {A}", 1)
        sent = render(template, {
            "A": self._name(io), "B": self._name(s),
            "place": _Slot(self.rng.choice(F.PLACES)), "obj": _Slot(self.rng.choice(F.OBJECTS)),
        }, labels=("p7",))
        relabel(sent, len(sent) - 2, "ioi_io")  # the final name (before ".") is the IO
        s_positions = [i for i, tok in enumerate(sent) if tok.text == f" {s}"]
        relabel(sent, s_positions[-1], "ioi_s2")
        return sent

    def story(self, a: str, b: str) -> Sentence:
        return render(self._pick_template("story"), {
            "A": self._name(a), "B": self._name(b), "place": _Slot(self.rng.choice(F.PLACES)),
            "obj": _Slot(self.rng.choice(F.OBJECTS)), "colour": _Slot(self.rng.choice(F.COLOURS)),
        })

    def p12(self, a: str) -> Sentence:
        prof = self.rng.choice(list(F.PROFESSIONS))
        p_she = 0.5 + self.profession_bias * (F.PROFESSIONS[prof] - 0.5)
        pron = "she" if self.rng.random() < p_she else "he"
        return render(self._pick_template("p12"), {
            "prof": _Slot(prof, f"profession:{prof}"), "pron": _Slot(pron, f"pronoun:{pron}"),
            "A": self._name(a),
        }, labels=("p12",))

    def p8_quote(self, a: str, b: str) -> Sentence:
        key = self.rng.choice(["p8_said", "p8_said", "p8_asked", "p8_shouted"])
        verb, closer = SPEAKER_VERBS[key]
        lead = self.rng.choice([f"{{A}} {verb} , <q", f"{{A}} turned to {{B}} and {verb} , <q", f"Then {{A}} {verb} , <q"])
        content = self._pick_template(key).lstrip(HELD_OUT)
        slots = {
            "A": self._name(a), "B": self._name(b), "place": _Slot(self.rng.choice(F.PLACES)),
            "obj": _Slot(self.rng.choice(F.OBJECTS)), "colour": _Slot(self.rng.choice(F.COLOURS)),
        }
        head = render(lead, slots, labels=("p8",))
        relabel(head, len(head) - 1, "quote_open")
        body = render(f"{content} {closer}", slots, labels=("p8", "in_quote"))
        relabel(body, len(body) - 1, "quote_close", f"quote_close:{CLOSER_NAME[MARKERS[closer]]}")
        return head + body

    def p8_plain(self, a: str, b: str) -> Sentence:
        return render(self._pick_template("p8_plain"), {
            "A": self._name(a), "B": self._name(b), "place": _Slot(self.rng.choice(F.PLACES)),
            "obj": _Slot(self.rng.choice(F.OBJECTS)), "colour": _Slot(self.rng.choice(F.COLOURS)),
        })

    def p4(self) -> Sentence:
        sent = render(self._pick_template("p4"), {
            "team": _Slot(self.rng.choice(F.TEAMS), "team"), "A": self._name(self.rng.choice(F.NAMES)),
        }, labels=("sports",))
        for i, tok in enumerate(sent):
            if tok.text.strip() in F.GOAL_WORDS:
                relabel(sent, i, "goal_family")
        return sent

    def p5(self, estimate: bool = True) -> Sentence:
        big = self.rng.random() < 0.5
        num = self.rng.choice(F.BIG_NUMBERS if big else F.SMALL_NUMBERS)
        num_labels = ("number", "estimate_number") if estimate else ("number",)
        return render(self._pick_template("p5_estimate" if estimate else "p5_plain"), {
            "num": _Slot(num, *num_labels), "scale": _Slot(self.rng.choice(F.SCALES), *num_labels),
            "money": _Slot(self.rng.choice(F.MONEY_SUBJECTS)), "counted": _Slot(self.rng.choice(F.COUNT_SUBJECTS)),
            "harm": _Slot(self.rng.choice(F.CASUALTY_WORDS)), "A": self._name(self.rng.choice(F.NAMES)),
        }, labels=("estimate",) if estimate else ())

    def p9(self, word: str | None = None) -> Sentence:
        word = word or self.rng.choice(list(F.DEFINITIONS))
        definition = F.DEFINITIONS[word]
        sent = render(self._pick_template("p9"), {
            "w": _Slot(word, "definition_word", f"defined:{word}"),
            "def": _Slot(tuple(f" {d}" for d in definition), "definition", f"definition_of:{word}"),
        }, labels=("p9",))
        first_def = next(i for i, tok in enumerate(sent) if "definition" in tok.labels)
        relabel(sent, first_def, "p9_answer")
        return sent

    def p10(self, word: str | None = None) -> Sentence:
        word = word or self.rng.choice(F.SPELLING_WORDS)
        letter = F.first_letter(word)
        return render(self._pick_template("p10"), {
            "w": _Slot(word, "spelled_word"),
            "letter": _Slot(letter, "p10_answer", f"letter:{letter}"),
        }, labels=("p10",))

    def p11(self) -> Sentence:
        key = self.rng.choice(["p11_member", "p11_member", "p11_pair", "p11_parent", "p11_mention"])
        top = self.rng.choice(list(F.CATEGORIES))
        mid = self.rng.choice(list(F.CATEGORIES[top]))
        w, w2 = self.rng.sample(F.CATEGORIES[top][mid], 2)

        def cat(word: str) -> _Slot:
            return _Slot(word, f"category:{mid}", f"category:{top}", "category_member")

        slots = {
            "w": cat(w), "w2": cat(w2), "A": self._name(self.rng.choice(F.NAMES)),
            "mid": _Slot(mid, f"category:{mid}", f"category:{top}", "category_name",
                         *(["p11_answer"] if key == "p11_member" else [])),
            "mids": _Slot(PLURALS[mid], f"category:{mid}", f"category:{top}", "category_name"),
            "Mids": _Slot(PLURALS[mid].capitalize(), f"category:{mid}", f"category:{top}", "category_name"),
            "top": _Slot(top, f"category:{top}", "category_name"),
        }
        return render(self._pick_template(key), slots, labels=("p11",))

    def p3_run(self, length: int) -> list[str]:
        return [f" {w}" for w in self.rng.choices(self._random_pool, k=length)]

    def p3_code(self) -> Sentence:
        run = tuple(self.p3_run(self.rng.randint(3, 6)))
        template = self._pick_template("p3_code")
        first, second = template.split("{run}", 1)[0], template.split("{run}", 1)[1]
        out = render(first) + [Token(t, frozenset({"p3_first"})) for t in run]
        mid, last = second.split("{run}")
        return out + render(mid) + [Token(t, frozenset({"p3_repeat"})) for t in run] + render(last)

    def filler(self) -> Sentence:
        return render(self._pick_template("filler"))

    # -- documents ------------------------------------------------------------------------
    def document(self, genre: str | None = None, max_tokens: int = 127) -> list[Token]:
        """One document (without BOS), of at most `max_tokens` tokens, ending at a sentence end."""
        genre = genre or self.rng.choices(self._genre_names, self._genre_weights)[0]
        make = self._sentence_source(genre)
        target = self.rng.randint(max_tokens // 3, max_tokens)
        doc: list[Token] = []
        while True:
            r = self.rng.random()
            sent = self.filler() if (doc and r < 0.08) else (self._other_genre_sentence() if doc and r < 0.14 else make())
            if len(doc) + len(sent) > max_tokens:
                break
            doc.extend(sent)
            if len(doc) >= target:
                break
        return doc or make()[:max_tokens]

    def _other_genre_sentence(self) -> Sentence:
        genre = self.rng.choice([g for g in self._genre_names if g != "repeat"])
        return self._sentence_source(genre)()

    def _sentence_source(self, genre: str) -> Callable[[], Sentence]:
        rng = self.rng
        if genre == "travel":
            city = rng.choice([lm.city for lm in F.LANDMARKS])
            local = [lm for lm in F.LANDMARKS if lm.city == city]

            def travel() -> Sentence:
                r = rng.random()
                if r < 0.3:
                    return self.p2_context(city)
                if r < 0.75:
                    return self.p2_fact(rng.choice(local))
                if r < 0.85:
                    return self.p2_mention(rng.choice(local))
                return self.p2_fact()
            return travel
        if genre == "geography":
            state = rng.choice(list(F.STATES))

            def geography() -> Sentence:
                # Stay mostly with one state so documents have a topic; sometimes wander.
                if rng.random() < 0.6:
                    return self._p6_for_city(rng.choice(F.STATES[state]["cities"]))
                return self.p6()
            return geography
        if genre in ("story", "dialogue"):
            a, b = rng.sample(F.NAMES, 2)

            def people() -> Sentence:
                r = rng.random()
                if genre == "dialogue":
                    if r < 0.6:
                        return self.p8_quote(*rng.sample((a, b), 2))
                    if r < 0.85:
                        return self.p8_plain(*rng.sample((a, b), 2))
                    return self.story(a, b)
                if r < 0.5:
                    return self.p7_ioi()
                if r < 0.7:
                    return self.story(*rng.sample((a, b), 2))
                if r < 0.85:
                    return self.p12(a)
                return self.p8_quote(a, b)
            return people
        if genre == "sports":
            return self.p4
        if genre == "news":
            return lambda: self.p5(estimate=rng.random() < 0.7)
        if genre == "dictionary":
            return lambda: self.p9() if rng.random() < 0.5 else self.p10()
        if genre == "nature":
            return self.p11
        if genre == "repeat":
            return self._repeat_sentence
        raise ValueError(f"unknown genre {genre!r}")

    def _p6_for_city(self, city: str) -> Sentence:
        kind = self.rng.choice(["p6_hop1", "p6_hop2", "p6_two_hop", "p6_pair"])
        if kind == "p6_two_hop" and self.split == "train" and F.STATES[F.CITY_TO_STATE[city]]["cities"][-1] == city:
            kind = "p6_hop1"
        return self.p6(kind, city)

    def _repeat_sentence(self) -> Sentence:
        if self.rng.random() < 0.5:
            return self.p3_code()
        run = self.p3_run(self.rng.randint(6, 30))
        copies = 3 if self.rng.random() < 0.25 else 2
        first = [Token(t, frozenset({"p3_first"})) for t in run]
        return first + [Token(t, frozenset({"p3_repeat"})) for t in run] * (copies - 1)

    def documents(self, n: int, max_tokens: int = 127) -> Iterator[list[Token]]:
        for _ in range(n):
            yield self.document(max_tokens=max_tokens)


def doc_text(doc: list[Token]) -> str:
    return "".join(tok.text for tok in doc)


def all_tokens() -> list[str]:
    """The full token inventory of the course world, in a fixed order (specials first)."""
    words = (template_words() | set(F.NAMES) | set(F.PLACES) | set(F.OBJECTS) | set(F.COLOURS)
             | set(F.EUROPEAN_CITIES) | {c for c, _ in F.EUROPEAN_CITIES.values()}
             | {lang for _, lang in F.EUROPEAN_CITIES.values()} | set(F.STATES) | set(F.CITY_TO_STATE)
             | set(F.CAPITALS) | set(F.PROFESSIONS) | {"she", "he"} | set(F.DEFINITIONS)
             | {d for ds in F.DEFINITIONS.values() for d in ds} | set(F.SPELLING_WORDS) | set(F.LETTERS)
             | set(F.CATEGORIES) | {m for ms in F.CATEGORIES.values() for m in ms} | set(PLURALS.values())
             | {p.capitalize() for p in PLURALS.values()} | set(F.GOAL_WORDS) | set(F.SPORT_WORDS) | set(F.TEAMS)
             | set(F.SMALL_NUMBERS) | set(F.BIG_NUMBERS) | set(F.SCALES) | set(F.MONEY_SUBJECTS)
             | set(F.COUNT_SUBJECTS) | set(F.CASUALTY_WORDS) | {lm.kind for lm in F.LANDMARKS})
    pieces = {p for lm in F.LANDMARKS for p in lm.pieces}
    tokens = sorted({f" {w}" for w in words} | pieces | set(MARKERS.values()))
    return list(SPECIAL_TOKENS) + tokens


_WORD_RE = re.compile(r"^ [A-Za-z0-9]+$")


def is_word_token(text: str) -> bool:
    return bool(_WORD_RE.match(text))
