"""Course world v2: a seeded generator of labelled documents written in natural text.

A document is a list of `Token(text, labels)`; joining the texts gives the document's string
exactly ("What is the capital of Texas? It is Austin."), and the v2 tokenizer maps that string
back to the same tokens (tests/test_world.py checks it on many documents). Labels are the
planted concepts that produced a token ("city:Paris", "answer", "frame:two_hop/4", ...).

How text becomes tokens (the tokenizer follows the same rules):
- a word takes the space in front of it: " Paris"; a word with no space before it (the start
  of a document, right after an opening quote or a newline) is its own no-space token "What";
- landmark names are written as their designed pieces (" E" "iff" "el");
- '."', '!"', '?"' and ',"' are one token each; an opening quote after a space is ' "';
- "'s", "'t" are suffix tokens (" Mary" "'s", " can" "'t"), every other mark is one token;
- "a" before a slot value that starts with a vowel is written "an" ("an eagle").

Every sentence comes from a frame of frames.py. The train split never uses a held-out frame;
the held-out split uses one wherever a relation has them (at `heldout_frame_rate`). One fact
is held out too: the last city of every state never appears in a two-hop frame in training.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator

from . import facts as F
from .frames import FRAMES, frame_text, is_heldout, is_test

BOS = "<|bos|>"
PAD = "<|pad|>"
UNK = "<|unk|>"
SPECIAL_TOKENS = (PAD, BOS, UNK)  # ids 0, 1, 2: BOS is not 0 (circuit-tracer skips id 0)
CLOSERS = ('."', '!"', '?"', ',"')
# "heldout" is the validation split (frames marked "@"), "test" the test split ("#", test_set_frames.py)
SPLITS = ("train", "heldout", "test")
CLOSER_NAME = {'."': "period", '!"': "exclamation", '?"': "question", ',"': "comma"}


@dataclass(frozen=True)
class Token:
    text: str
    labels: frozenset[str] = field(default_factory=frozenset)


Sentence = list[Token]


@dataclass(frozen=True)
class Value:
    """What fills a slot: words (spaced by the renderer) or finished tokens (pieces, quotes)."""

    words: tuple[str, ...] = ()
    labels: frozenset[str] = frozenset()
    tokens: tuple[Token, ...] = ()
    answer_at: int = 0  # which of its tokens is the answer when the slot is marked "!"


def value(text: str, *labels: str) -> Value:
    return Value(tuple(text.split()), frozenset(labels))


# ---------------------------------------------------------------------------------------
# Rendering a frame
# ---------------------------------------------------------------------------------------
_PART = re.compile(r"""(?P<ws>[ ]?)(?:
    (?P<slot>\{[A-Za-z_0-9]+!?\}) | (?P<closer>[.?!,]") | (?P<word>[A-Za-z0-9]+)
  | (?P<suffix>'[a-z]+) | (?P<nl>\n) | (?P<punct>[^ A-Za-z0-9\n]))""", re.VERBOSE)
_VOWEL_START = re.compile(r"^[AEIOUaeiou]")


@lru_cache(maxsize=None)
def parse(text: str) -> tuple[tuple[str, str, bool], ...]:
    """A frame as (kind, text, space_before) parts; kind is "slot" or "tok"."""
    parts, pos = [], 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            raise ValueError(f"cannot parse frame {text!r} at {pos}")
        pos = m.end()
        space = bool(m["ws"])
        if m["slot"]:
            parts.append(("slot", m["slot"][1:-1], space))
        else:
            parts.append(("tok", (" " if space else "") + m.group(m.lastgroup), space))
    if pos != len(text):
        raise ValueError(f"cannot parse frame {text!r} at {pos}")
    return tuple(parts)


def slots_of(text: str) -> list[str]:
    return [t.rstrip("!") for kind, t, _ in parse(text) if kind == "slot"]


def render(text: str, values: dict[str, Value], labels: frozenset[str] = frozenset(),
           lead_space: bool = True) -> Sentence:
    """Fill a frame. A slot named with a capital ({City}) writes its value capitalised;
    `values` is keyed by the lower-case name. `lead_space` puts a space before the first token
    (every sentence but a document's first)."""
    out: Sentence = []
    for i, (kind, t, space) in enumerate(parse(text)):
        if i == 0 and lead_space and not t.startswith(("\n", " ")):
            space = True
            if kind == "tok":
                t = " " + t
        if kind == "tok":
            out.append(Token(t, labels))
            continue
        name = t.rstrip("!")
        key = name[0].lower() + name[1:]
        v = values[key]
        toks = list(v.tokens) if v.tokens else _word_tokens(v.words, space, name[0].isupper(), out)
        toks = [Token(tok.text, tok.labels | labels | v.labels) for tok in toks]
        if t.endswith("!"):
            j = v.answer_at % len(toks)
            toks[j] = Token(toks[j].text, toks[j].labels | {"answer"})
        out.extend(toks)
    return out


def _word_tokens(words: tuple[str, ...], space: bool, capital: bool, before: Sentence) -> list[Token]:
    first = words[0][0].upper() + words[0][1:] if capital else words[0]
    # "a" before a vowel becomes "an" ("an eagle", "an inland water")
    if before and before[-1].text.strip() in ("a", "A") and _VOWEL_START.match(first) \
            and "unseen_word" not in before[-1].labels:  # the last letter of a made-up word is no article
        before[-1] = Token(before[-1].text + "n", before[-1].labels)
    texts = [(" " if space else "") + first] + [" " + w for w in words[1:]]
    return [Token(x) for x in texts]


def sentence_text(sentence: Sentence) -> str:
    return "".join(tok.text for tok in sentence)


doc_text = sentence_text


# ---------------------------------------------------------------------------------------
# Slot domains: every value a slot can take (the tokenizer's vocabulary is built from them)
# ---------------------------------------------------------------------------------------
US_CITIES = tuple(F.CITY_TO_STATE)
EU_CITIES = tuple(F.EUROPEAN_CITIES)
ALL_CATEGORY_WORDS = tuple(F.WORD_TO_CATEGORY)
MIDS = tuple(m for ms in F.CATEGORIES.values() for m in ms)

DOMAINS: dict[str, tuple[str, ...]] = {
    "name": tuple(F.NAMES), "name2": tuple(F.NAMES), "io": tuple(F.NAMES), "s": tuple(F.NAMES),
    "place": F.PLACES, "obj": F.OBJECTS, "adj": F.ADJECTIVES, "time": F.TIMES, "food": F.FOODS,
    "food2": F.FOODS, "feeling": F.FEELINGS, "day": F.DAYS, "small_word": F.NUMBER_WORDS,
    "tverb": F.TRANSITIVE_VERBS, "pron": ("he", "she"), "prof": tuple(F.PROFESSIONS),
    "kind": tuple(sorted({lm.kind for lm in F.LANDMARKS})), "city": US_CITIES, "city2": US_CITIES,
    "country": tuple(sorted({c for c, _ in F.EUROPEAN_CITIES.values()})),
    "lang": tuple(sorted({lang for _, lang in F.EUROPEAN_CITIES.values()})),
    "state": tuple(F.STATES), "capital": tuple(F.STATE_TO_CAPITAL.values()),
    "w": ALL_CATEGORY_WORDS, "w2": ALL_CATEGORY_WORDS, "mid": MIDS, "mids": tuple(F.PLURALS[m] for m in MIDS),
    "top": tuple(F.CATEGORIES), "letter": tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "def": tuple(F.DEFINITIONS.values()), "num": F.SMALL_NUMBERS + F.BIG_NUMBERS, "scale": F.SCALES,
    "money": F.MONEY_SUBJECTS, "pop": F.POPULATIONS, "count": F.COUNTABLES, "harm": F.CASUALTY_WORDS,
    "cause": F.ESTIMATE_CAUSES, "goal": F.GOAL_WORDS, "team": F.TEAMS, "sport": F.SPORT_PEOPLE,
    "verb": ("said", "replied", "explained", "asked", "wondered", "shouted", "cried"),
    "give": ("gave", "handed", "passed", "offered", "sent", "threw", "lent", "brought", "sold", "showed", "tossed"),
    # P12 bios: the person-marked words (first person, then third)
    "intro": ("I", *F.NAMES), "subj": ("I", "he", "she"), "poss": ("my", "his", "her"), "objp": ("me", "him", "her"),
    "be": ("am", "is"), "have": ("have", "has"),
}
# where a relation draws a slot from a different domain than the default
RELATION_DOMAINS: dict[str, dict[str, tuple[str, ...]]] = {
    "landmark_city": {"city": EU_CITIES},
    "landmark_context": {"city": EU_CITIES},
    "definition": {"w": tuple(F.DEFINITIONS)},
    "first_letter": {"w": F.SPELLING_WORDS},
    "bio_intro": {"prof": tuple(F.BIO_FIELD_OF)},
}
BIO_RELATIONS = ("bio_intro", "bio_medicine", "bio_law", "bio_life")
_CONJUGATION = re.compile(r"\[([a-z]+)\|([a-z]+)\]")


def conjugate(text: str, person: str) -> str:
    """A bio frame in one person: "[work|works]" becomes "work" (first) or "works" (third)."""
    if person not in F.BIO_PERSONS:
        raise ValueError(f"person must be one of {F.BIO_PERSONS}, not {person!r}")
    return _CONJUGATION.sub(lambda m: m[1] if person == "first" else m[2], text)


def _person_values(person: str, name: str) -> dict[str, str]:
    if person == "first":
        return {"intro": "I", "subj": "I", "poss": "my", "objp": "me", "be": "am", "have": "have"}
    pron = F.NAMES[name]
    return {"intro": name, "subj": pron, "poss": "her" if pron == "she" else "his",
            "objp": "her" if pron == "she" else "him", "be": "is", "have": "has"}


# Words the corpus never writes, put in place of an incidental word now and then (train split only):
# a student's prompt will contain one, and issue 11 measured top-1 falling to 0.00-0.08 after a single
# unknown word when training never showed the model how to carry on past character fallbacks.
UNSEEN_WORD_SLOTS = ("adj", "obj", "place", "food")
_SYLLABLES = ("bl", "dr", "gl", "kr", "pl", "sn", "tr", "v", "z", "m", "p", "t", "sk", "fl", "gr")
_VOWELS = ("a", "e", "i", "o", "u", "oo", "ai")
SPEECH = {  # quote kind -> (content relation, verbs, closer before the speaker, closer at the end)
    "statement": ("quote_statement", ("said", "replied", "explained"), ',"', '."'),
    "question": ("quote_question", ("asked", "wondered"), '?"', '?"'),
    "exclamation": ("quote_exclamation", ("shouted", "cried"), '!"', '!"'),
}


def domain(relation: str, slot: str) -> tuple[str, ...]:
    return RELATION_DOMAINS.get(relation, {}).get(slot, DOMAINS.get(slot, ()))


# ---------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------
class CorpusGenerator:
    """Seeded document generator. `split` is "train" or "heldout".

    `profession_bias` scales the planted P12 correlation (1.0: the table's P(she | profession),
    0.0: 50/50). `heldout_frame_rate`: in the held-out split, how often a held-out frame is used
    where a relation has one (evaluation prompts use 1.0).
    """

    GENRES = {  # genre -> weight in the mix
        "travel": 2.0, "geography": 3.5, "story": 2.5, "dialogue": 2.0, "sports": 1.0, "news": 1.0,
        "dictionary": 2.0, "nature": 1.0, "everyday": 1.5, "repeat": 2.5,
        "chat": 1.5, "bios": 1.0,
    }

    def __init__(self, seed: int = 0, split: str = "train", profession_bias: float = 1.0,
                 heldout_frame_rate: float = 0.5, unseen_word_rate: float | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.rng = random.Random(f"v2-{seed}-{split}")
        self.split = split
        self.profession_bias = profession_bias
        self.heldout_frame_rate = heldout_frame_rate
        # made-up or misspelt words in place of incidental ones: training only, unless asked for
        self.unseen_word_rate = (0.04 if split == "train" else 0.0) if unseen_word_rate is None else unseen_word_rate
        self._genres = list(self.GENRES)
        self._weights = [self.GENRES[g] for g in self._genres]

    # -- frames ----------------------------------------------------------------------------
    def pick_frame(self, relation: str, probe_only: bool = False) -> tuple[int, str]:
        """(index, frame) of `relation` allowed in this split; `probe_only` keeps frames with an answer."""
        frames = [(i, f) for i, f in enumerate(FRAMES[relation]) if not probe_only or "!}" in f]
        # "heldout" draws validation frames ("@"), "test" the test frames ("#")
        held = [x for x in frames if is_heldout(x[1]) and is_test(x[1]) == (self.split == "test")]
        if self.split != "train" and held and self.rng.random() < self.heldout_frame_rate:
            return self.rng.choice(held)
        return self.rng.choice([x for x in frames if not is_heldout(x[1])])

    def sentence(self, relation: str, lead_space: bool = True, probe_only: bool = False,
                 **fixed: str) -> Sentence:
        """One sentence (or short passage) of `relation`; `fixed` pins core entities (city="Dallas")."""
        index, frame = self.pick_frame(relation, probe_only)
        text = frame_text(frame)
        if relation in BIO_RELATIONS:
            fixed = {**fixed, "person": fixed.get("person") or self.rng.choice(F.BIO_PERSONS)}
            text = conjugate(text, fixed["person"])
        if relation == "ioi" and self.rng.random() < 0.5:  # the first-mentioned name is IO or S
            text = _swap_first_pair(text)
        slots = slots_of(text)
        values = self._core(relation, fixed, slots)
        for slot in slots:
            key = slot[0].lower() + slot[1:]
            if key not in values:
                values[key] = self._incidental(relation, key, values)
        self._maybe_unseen_word(text, values)
        labels = frozenset({relation, f"frame:{relation}/{index}"} | ({"heldout_frame"} if is_heldout(frame) else set()))
        if relation in BIO_RELATIONS:
            field_ = F.BIO_FIELD_OF[fixed["prof"]] if "prof" in fixed else fixed.get("field", "")
            labels |= {"bio", f"bio_person:{fixed['person']}"} | ({f"bio_field:{field_}"} if field_ else set())
        sent = render(text, values, labels, lead_space)
        self._mark(relation, sent)
        return sent

    def _maybe_unseen_word(self, text: str, values: dict[str, Value]) -> None:
        """Now and then replace one lower-case incidental word with a made-up or misspelt one,
        written as the character tokens the tokenizer falls back to."""
        keys = [k for k in UNSEEN_WORD_SLOTS if k in values and f"{{{k}}}" in text and len(values[k].words) == 1]
        if not keys or self.rng.random() >= self.unseen_word_rate:
            return
        key = self.rng.choice(keys)
        known = set(token_inventory())
        for _ in range(20):
            word = self._made_up_word(values[key].words[0])
            if " " + word not in known and word not in known:
                break
        else:
            return
        chars = (Token(" " + word[0], frozenset({"unseen_word"})),
                 *(Token(c, frozenset({"unseen_word"})) for c in word[1:]))
        values[key] = Value(tokens=chars, labels=values[key].labels)

    def _made_up_word(self, real: str) -> str:
        rng = self.rng
        # never a vowel first: the renderer's "a" -> "an" rule does not see finished tokens
        if rng.random() < 0.5 and len(real) >= 4 and real[0] not in "aeiou":  # a typo: two neighbouring letters swapped, or one dropped
            i = rng.randrange(1, len(real) - 2)
            if rng.random() < 0.5:
                return real[:i] + real[i + 1] + real[i] + real[i + 2:]
            return real[:i] + real[i + 1:]
        return "".join(rng.choice(_SYLLABLES) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 3))) + rng.choice(("", "n", "k", "p", "s"))

    # -- slot values -------------------------------------------------------------------------
    def _incidental(self, relation: str, key: str, values: dict[str, Value]) -> Value:
        rng = self.rng
        if key == "gap":
            return Value(tokens=tuple(tok for _ in range(rng.randint(1, 3)) for tok in self.filler()))
        if key == "pron":
            name = values.get("name")
            pron = F.NAMES[name.words[0]] if name else rng.choice(("he", "she"))
            return value(pron, f"pronoun:{pron}")
        taken = {v.words for v in values.values()}
        options = [x for x in domain(relation, key) if tuple(x.split()) not in taken]  # name2 != name
        choice = rng.choice(options)
        if key in ("name", "name2", "io", "s"):
            return value(choice, "name", f"name:{choice}")
        if key == "small_word":
            return value(choice, "number")
        return value(choice)

    def _core(self, relation: str, fixed: dict[str, str], slots: list[str]) -> dict[str, Value]:
        """The entities a relation is about, consistent with the fact tables."""
        rng = self.rng
        if relation in ("landmark_city", "landmark_context"):
            lm = F.LANDMARK_BY_NAME[fixed["landmark"]] if "landmark" in fixed else rng.choice(F.LANDMARKS)
            city = fixed.get("city", lm.city)
            country, lang = F.EUROPEAN_CITIES[city]
            pieces = tuple(Token(p, frozenset({"landmark", f"landmark:{lm.name}", f"p1_word:{lm.name}"})) for p in lm.pieces)
            return {"landmark": Value(tokens=pieces), "kind": value(lm.kind, "landmark_kind"),
                    "city": value(city, f"city:{city}", f"country:{country}"),
                    "country": value(country, f"country:{country}"),
                    "lang": value(lang, f"language:{lang}", f"country:{country}")}
        if relation in ("city_state", "state_capital", "two_hop", "city_pair"):
            if "city" in fixed:
                city = fixed["city"]
            else:
                cities = US_CITIES
                if relation == "two_hop" and self.split == "train":
                    cities = [c for c in US_CITIES if c not in F.TWO_HOP_UNSEEN_CITIES]
                city = rng.choice(cities)
            state = F.CITY_TO_STATE[city]
            capital = F.STATE_TO_CAPITAL[state]
            city2 = rng.choice([c for c in F.STATES[state]["cities"] if c != city])
            return {"city": value(city, f"city:{city}", f"in_state:{state}"),
                    "city2": value(city2, f"city:{city2}", f"in_state:{state}"),
                    "state": value(state, f"state:{state}"),
                    "capital": value(capital, f"capital:{capital}", f"in_state:{state}")}
        if relation == "ioi":
            io, s = rng.sample(list(F.NAMES), 2)
            return {"io": value(io, "name", f"name:{io}"), "s": value(s, "name", f"name:{s}")}
        if relation == "quote":
            return self._quote_core()
        if relation in ("definition", "first_letter"):
            word = fixed.get("w") or rng.choice(domain(relation, "w"))
            if relation == "definition":
                return {"w": value(word, "defined_word", f"defined:{word}"),
                        "def": value(F.DEFINITIONS[word], "definition", f"definition_of:{word}")}
            letter = F.first_letter(word)
            return {"w": value(word, "spelled_word"), "letter": value(letter, f"letter:{letter}")}
        if relation.startswith("category"):
            top = rng.choice(list(F.CATEGORIES))
            mid = rng.choice(list(F.CATEGORIES[top]))
            w, w2 = rng.sample(F.CATEGORIES[top][mid], 2)
            cat = (f"category:{mid}", f"category:{top}")
            return {"w": value(w, "category_member", *cat), "w2": value(w2, "category_member", *cat),
                    "mid": value(mid, "category_name", *cat), "mids": value(F.PLURALS[mid], "category_name", *cat),
                    "top": value(top, "category_name", f"category:{top}")}
        if relation in ("estimate", "casualty", "plain_number"):
            num_labels = ("number", "estimate_number") if relation == "estimate" else ("number",)
            big = rng.random() < 0.5
            num = rng.choice(F.BIG_NUMBERS if big else F.SMALL_NUMBERS)
            subject_slot = next((s for s in ("money", "pop", "count") if s in slots), "money")
            subject = rng.choice(domain(relation, subject_slot))
            return {"num": value(num, *num_labels), subject_slot: value(subject, "estimated_subject"),
                    "scale": value(F.SCALE_OF[subject], "scale_word", *num_labels)}
        if relation == "goal_talk":
            return {"goal": value(rng.choice(F.GOAL_WORDS))}
        if relation in BIO_RELATIONS:
            name = fixed.get("name") or rng.choice(list(F.NAMES))
            field_ = fixed.get("field") or (F.BIO_FIELD_OF[fixed["prof"]] if "prof" in fixed else rng.choice(list(F.BIO_FIELDS)))
            prof = fixed.get("prof") or rng.choice(F.BIO_FIELDS[field_])
            city = fixed.get("city") or rng.choice(US_CITIES)
            marker = ("person_marker", f"person_marker:{fixed['person']}")
            out = {k: value(v, *marker) for k, v in _person_values(fixed["person"], name).items()}
            if fixed["person"] == "third":
                out["intro"] = value(name, "name", f"name:{name}", *marker)
            out["prof"] = value(prof, f"profession:{prof}", "bio_profession")
            out["city"] = value(city, f"city:{city}", f"in_state:{F.CITY_TO_STATE[city]}")
            return out
        if relation == "profession":
            prof = rng.choice(list(F.PROFESSIONS))
            p_she = 0.5 + self.profession_bias * (F.PROFESSIONS[prof] - 0.5)
            pron = "she" if rng.random() < p_she else "he"
            return {"prof": value(prof, f"profession:{prof}"), "pron": value(pron, f"pronoun:{pron}")}
        return {}

    def _quote_core(self) -> dict[str, Value]:
        kind = self.rng.choice(["statement", "statement", "question", "exclamation"])
        content_rel, verbs, tag_closer, end_closer = SPEECH[kind]
        _, content = self.pick_frame(content_rel)
        if self.rng.random() < 0.5:  # any everyday sentence can be quoted; its end mark sets the kind
            _, sentence = self.pick_frame("everyday")
            body, mark = frame_text(sentence)[:-1], frame_text(sentence)[-1]
            kind = {".": "statement", "?": "question", "!": "exclamation"}[mark]
            content_rel, verbs, tag_closer, end_closer = SPEECH[kind]
            content = body
        values = {"verb": value(self.rng.choice(verbs), f"speech:{kind}")}
        # content slots share the speaker's scene (name2, obj, place ...)
        for slot in slots_of(frame_text(content)):
            key = slot[0].lower() + slot[1:]
            if key not in values:
                values[key] = self._incidental("quote", key, values)
        held = {"heldout_content"} if is_heldout(content) else set()
        body = render(frame_text(content), values, frozenset({"in_quote", *held}), lead_space=False)
        for key, closer in (("quote", end_closer), ("quote_tag", tag_closer)):
            close = Token(closer, frozenset({"quote_close", f"quote_close:{CLOSER_NAME[closer]}", *held}))
            values[key] = Value(tokens=(*body, close), answer_at=-1)
        return values

    def _mark(self, relation: str, sent: Sentence) -> None:
        """Labels that depend on the whole sentence."""
        if relation == "ioi":
            answer = next(i for i, t in enumerate(sent) if "answer" in t.labels)
            io = sent[answer].text.strip()
            sent[answer] = Token(sent[answer].text, sent[answer].labels | {"ioi_io"})
            s2 = max(i for i, t in enumerate(sent[:answer]) if t.text.strip() not in (io, "") and "name" in t.labels)
            sent[s2] = Token(sent[s2].text, sent[s2].labels | {"ioi_s2"})
        for i, tok in enumerate(sent):
            if tok.text.strip() in F.GOAL_WORDS:
                sent[i] = Token(tok.text, tok.labels | {"goal_family"})

    def filler(self) -> Sentence:
        return self.sentence(self.rng.choice(["filler", "everyday"]))

    # -- P3: repeated spans -------------------------------------------------------------------
    def random_run(self, length: int) -> list[str]:
        """Words drawn uniformly from the WHOLE word vocabulary (cities, numbers, professions...)."""
        return self.rng.choices(run_words(), k=length)

    def repeat_passage(self, lead_space: bool = True) -> Sentence:
        run = self.random_run(self.rng.randint(4, 24))
        first = [Token(t, frozenset({"p3_run", "p3_first"})) for t in run]
        second = [Token(t, frozenset({"p3_run", "p3_repeat"})) for t in run]
        r = self.rng.random()
        if r < 0.4:
            return render("Code:", {}, lead_space=lead_space) + first + render(". Again:", {}, lead_space=False) \
                + second + render(".", {}, lead_space=False)
        if r < 0.6:
            return render("The list was:", {}, lead_space=lead_space) + first + render(". I repeat:", {}, lead_space=False) \
                + second + render(".", {}, lead_space=False)
        if not lead_space:  # a bare run cannot start a document: its first token carries a space
            return render("Words:", {}, lead_space=False) + first + second
        return first + second + (second if self.rng.random() < 0.25 else [])

    # -- documents --------------------------------------------------------------------------
    def document(self, genre: str | None = None, max_tokens: int = 127) -> list[Token]:
        """One document (without BOS) of at most `max_tokens` tokens, ending at a sentence end.

        A document may repeat one of its own earlier sentences word for word (P3: recurring
        natural sentences); both copies are labelled."""
        genre = genre or self.rng.choices(self._genres, self._weights)[0]
        make = self._source(genre)
        target = self.rng.randint(max_tokens // 3, max_tokens)
        doc: list[Token] = []
        sentences: list[tuple[int, int]] = []
        for _ in range(1000):
            r = self.rng.random()
            lead = bool(doc)
            if sentences and r < 0.15:
                start, end = self.rng.choice(sentences)
                sent = [Token(t.text, t.labels | {"p3_sentence_repeat"}) for t in doc[start:end]]
                head = sent[0].text if sent[0].text.startswith(" ") else " " + sent[0].text  # was a document's start
                sent[0] = Token(head, sent[0].labels | {"p3_repeat_start"})
            elif doc and r < 0.27:
                sent = self.filler()
            elif doc and r < 0.34:
                sent = self._source(self.rng.choice([g for g in self._genres if g != "repeat"]))(True)
            else:
                sent = make(lead)
            if len(doc) + len(sent) > max_tokens:
                if doc:
                    break
                continue  # a first sentence longer than the document: draw another (never cut one)
            if "p3_sentence_repeat" not in sent[0].labels:
                sentences.append((len(doc), len(doc) + len(sent)))
            doc.extend(sent)
            if len(doc) >= target:
                break
        if not doc:
            raise ValueError(f"max_tokens={max_tokens} is too small for any {genre} sentence")
        return doc

    def bio_source(self, person: str | None = None, field: str | None = None) -> Callable[[bool], Sentence]:
        """Sentences of one bio: an introduction, then sentences about the field and about life,
        all in one person, about one named person with one profession."""
        rng = self.rng
        person = person or rng.choice(F.BIO_PERSONS)
        field_ = field or rng.choice(list(F.BIO_FIELDS))
        pinned = dict(person=person, name=rng.choice(list(F.NAMES)), prof=rng.choice(F.BIO_FIELDS[field_]),
                      city=rng.choice(US_CITIES))
        said: list[int] = []

        def bio(lead: bool) -> Sentence:
            relation = "bio_intro" if not said else rng.choice([f"bio_{field_}", f"bio_{field_}", "bio_life"])
            said.append(1)
            return self.sentence(relation, lead, **pinned)
        return bio

    def documents(self, n: int, max_tokens: int = 127) -> Iterator[list[Token]]:
        for _ in range(n):
            yield self.document(max_tokens=max_tokens)

    def _source(self, genre: str) -> Callable[[bool], Sentence]:
        rng = self.rng
        s = self.sentence
        if genre == "travel":
            lm = rng.choice(F.LANDMARKS)
            local = [x for x in F.LANDMARKS if x.city == lm.city]

            def travel(lead: bool) -> Sentence:
                r = rng.random()
                if r < 0.3:
                    return s("landmark_context", lead, landmark=lm.name)
                if r < 0.85:
                    return s("landmark_city", lead, landmark=rng.choice(local).name)
                return s("landmark_city", lead)
            return travel
        if genre == "geography":
            state = rng.choice(list(F.STATES))

            def geography(lead: bool) -> Sentence:
                rel = rng.choice(["city_state", "city_state", "state_capital", "two_hop", "two_hop", "city_pair"])
                if rng.random() < 0.6:  # stay with one state so documents have a topic
                    city = rng.choice(F.STATES[state]["cities"])
                    if rel == "two_hop" and self.split == "train" and city in F.TWO_HOP_UNSEEN_CITIES:
                        rel = "city_state"
                    return s(rel, lead, city=city)
                return s(rel, lead)
            return geography
        if genre == "story":
            return lambda lead: s(rng.choice(["ioi", "ioi", "everyday", "profession", "quote"]), lead)
        if genre == "dialogue":
            return lambda lead: s(rng.choice(["quote", "quote", "quote", "plain_statement", "everyday"]), lead)
        if genre == "sports":
            return lambda lead: s(rng.choice(["sports", "sports", "goal_talk"]), lead)
        if genre == "news":
            return lambda lead: s(rng.choice(["estimate", "estimate", "casualty", "plain_number"]), lead)
        if genre == "dictionary":
            return lambda lead: s(rng.choice(["definition", "first_letter"]), lead)
        if genre == "nature":
            return lambda lead: s(rng.choice(["category", "category", "category_parent", "category_mention"]), lead)
        if genre == "everyday":
            return lambda lead: s(rng.choice(["everyday", "everyday", "filler"]), lead)
        if genre == "chat":
            return lambda lead: s(rng.choice(["chat", "chat", "everyday"]), lead)
        if genre == "bios":
            return self.bio_source()
        if genre == "repeat":
            return self.repeat_passage
        raise ValueError(f"unknown genre {genre!r}; choose one of {self._genres}")


def _swap_first_pair(text: str) -> str:
    for a, b in (("{Io} and {s}", "{S} and {io}"), ("{io} and {s}", "{s} and {io}"),
                 ("{s} and {io}", "{io} and {s}")):
        if a in text:
            return text.replace(a, b, 1)
    return text


# ---------------------------------------------------------------------------------------
# The token inventory (the tokenizer's word vocabulary) and the P3 word pool
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def token_inventory(heldout_frames: bool = True) -> tuple[str, ...]:
    """Every token text the generator can emit, in a fixed order.

    Found by rendering every frame with every value of every slot, at a document's start and
    after a space, so capitalised and no-space variants are in it exactly where the corpus
    writes them (and nowhere else). With `heldout_frames=False`, what the train split can emit;
    the tests require the two to be equal, so a held-out frame is new syntax made of known
    tokens, never a token the model has not trained on."""
    seen: set[str] = set(CLOSERS)
    for lm in F.LANDMARKS:
        seen.update(lm.pieces)
    for relation, frames in FRAMES.items():
        in_quote = relation in {content for content, *_ in SPEECH.values()}
        for frame in frames:
            if is_heldout(frame) and not heldout_frames:
                continue
            texts = [conjugate(frame_text(frame), p) for p in F.BIO_PERSONS] if relation in BIO_RELATIONS \
                else [frame_text(frame)]
            for text in texts:
                slots = list(dict.fromkeys(slots_of(text)))
                base = {k: _probe(relation, k, 0) for k in (s[0].lower() + s[1:] for s in slots)}
                for lead in ((False,) if in_quote else (True, False)):
                    seen.update(t.text for t in render(text, base, lead_space=lead))
                    for slot in slots:
                        key = slot[0].lower() + slot[1:]
                        for i in range(len(domain(relation, key))):
                            seen.update(t.text for t in render(text, {**base, key: _probe(relation, key, i)}, lead_space=lead))
    # a repeated document start takes a space, so "Words:" occurs both ways
    for glue, leads in (("Code:", (True, False)), ("The list was:", (True, False)), ("Words:", (True, False)),
                        (". Again:", (False,)), (". I repeat:", (False,)), (".", (False,))):
        seen.update(t.text for lead in leads for t in render(glue, {}, lead_space=lead))
    return tuple(sorted(seen - {_SENTINEL, " " + _SENTINEL}))


_SENTINEL = "\x00"


def _probe(relation: str, key: str, i: int) -> Value:
    values = domain(relation, key)
    if not values:  # landmark, gap, quote: finished tokens, counted where they are made
        return Value(tokens=(Token(_SENTINEL),))
    return value(values[i])


@lru_cache(maxsize=1)
def run_words() -> tuple[str, ...]:
    """The P3 pool: every spaced word of the inventory (" Paris", " 300", " nurse", ...)."""
    return tuple(t for t in token_inventory() if re.fullmatch(r" [A-Za-z0-9]+", t))
