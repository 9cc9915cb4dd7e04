"""Evaluation prompts of course world v2, cut from HELD-OUT frames.

A prompt is a held-out-split sentence cut just before its answer token, so it comes with its
ground truth and its syntax is one the train split never uses (issue 11: v1's behaviours fell
apart on new wordings of the same facts). `natural_prompts()` are sentences a student might
type, for the <|unk|> bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import facts as F
from .corpus import BOS, CorpusGenerator, Sentence, Token
from .frames import FRAMES, frame_text


@dataclass(frozen=True)
class Prompt:
    tokens: tuple[str, ...]  # starts with BOS
    answer: str  # the token that should come next
    wrong: str | None = None  # the competing token where there is one (IOI: the subject)
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def text(self) -> str:
        """The prompt as a string (without BOS), e.g. for `model.to_tokens`."""
        return "".join(self.tokens[1:])


def cut(sentence: Sentence, label: str = "answer", **meta) -> Prompt | None:
    """The sentence up to (not including) its first token labelled `label`."""
    idx = next((i for i, tok in enumerate(sentence) if label in tok.labels), None)
    if idx is None:
        return None
    frame = next((lab for lab in sentence[0].labels if lab.startswith("frame:")), "")
    return Prompt((BOS, *(t.text for t in sentence[:idx])), sentence[idx].text, meta=dict(meta, frame=frame))


def _is_question(frame_label: str) -> bool:
    relation, index = frame_label.removeprefix("frame:").split("/")
    return "?" in frame_text(FRAMES[relation][int(index)])


def _probe(relation: str, **fixed):
    return lambda gen: cut(gen.sentence(relation, lead_space=False, probe_only=True, **fixed))


def _two_hop_question(gen: CorpusGenerator) -> Prompt | None:
    p = _probe("two_hop")(gen)
    return p if _is_question(p.meta["frame"]) else None


def _two_hop_unseen_city(gen: CorpusGenerator) -> Prompt | None:
    city = gen.rng.choice(F.TWO_HOP_UNSEEN_CITIES)
    return cut(gen.sentence("two_hop", lead_space=False, probe_only=True, city=city), city=city)


def _ioi(gen: CorpusGenerator) -> Prompt | None:
    sent = gen.sentence("ioi", lead_space=False, probe_only=True)
    p = cut(sent, "ioi_io")
    s2 = next(t.text for t in sent if "ioi_s2" in t.labels)
    names = {" " + t.text.strip() for t in sent if "name" in t.labels}  # as the model would say them
    # The answer token and the subject's token as spelled right there (both spaced).
    return Prompt(p.tokens, p.answer, wrong=" " + s2.strip(), meta=dict(p.meta, names=tuple(sorted(names))))


def _piece(gen: CorpusGenerator) -> Prompt | None:
    """P1: a landmark sentence cut before the last piece of the landmark's name.

    Feed its tokens, not its text: the tokenizer gives landmark pieces only inside the whole
    word, so "...the Bol" alone tokenizes into characters."""
    lm = gen.rng.choice(F.LANDMARKS)
    sent = gen.sentence("landmark_city", lead_space=False, landmark=lm.name)
    idx = [i for i, t in enumerate(sent) if "landmark" in t.labels][2]
    return Prompt((BOS, *(t.text for t in sent[:idx])), sent[idx].text, meta={"landmark": lm.name})


def _plain_period(gen: CorpusGenerator) -> Prompt | None:
    sent = gen.sentence("plain_statement", lead_space=False)
    return Prompt((BOS, *(t.text for t in sent[:-1])), sent[-1].text)


# kind -> (maker, use held-out frames). The info-only kinds keep train frames on purpose.
PROMPT_KINDS = {
    "p1_piece": (_piece, True),
    "p2_landmark_city": (_probe("landmark_city"), True),
    "p5_scale": (_probe("estimate"), True),
    "p6_city_state": (_probe("city_state"), True),
    "p6_state_capital": (_probe("state_capital"), True),
    "p6_two_hop": (_probe("two_hop"), True),
    "p6_two_hop_question": (_two_hop_question, True),
    "p6_two_hop_unseen_city": (_two_hop_unseen_city, False),
    "p7_ioi": (_ioi, True),
    "p8_closer": (_probe("quote"), True),
    "p8_plain_period": (_plain_period, True),
    "p9_definition": (_probe("definition"), True),
    "p10_first_letter": (_probe("first_letter"), True),
    "p11_category": (_probe("category"), True),
}


def make_prompts(kind: str, n: int = 200, seed: int = 1234, train_frames: bool = False,
                 split: str = "heldout") -> list[Prompt]:
    """Up to `n` distinct prompts of one kind (see `PROMPT_KINDS`), from the VALIDATION frames
    (split "heldout", "@") or the TEST frames (split "test", "#").

    `train_frames=True` cuts the same kind from TRAIN frames instead: the gap between the two
    accuracies is how much of a behaviour is template surface (issue 11)."""
    out = []
    for p in _distinct(kind, seed, train_frames, split, attempts=30 * n):
        out.append(p)
        if len(out) == n:
            break
    return out


def prompts_by_frame(kind: str, per_frame: int, seed: int = 1234, split: str = "heldout") -> dict[str, list[Prompt]]:
    """Up to `per_frame` distinct prompts of one kind from EVERY held-out frame of the split
    (issue 26: a row weights each frame equally, so a frame drawn more often cannot dominate it).
    Keyed by the frame's label ("frame:two_hop/17"), in sorted order."""
    out: dict[str, list[Prompt]] = {}
    since_new = 0
    for p in _distinct(kind, seed, False, split, attempts=400 * per_frame):
        bucket = p.meta.get("frame", "")
        since_new = 0 if bucket not in out else since_new + 1
        if len(out.setdefault(bucket, [])) < per_frame:
            out[bucket].append(p)
        if since_new > 2000 and all(len(v) >= per_frame for v in out.values()):
            break
    return dict(sorted(out.items()))


def _distinct(kind: str, seed: int, train_frames: bool, split: str, attempts: int):
    """Distinct prompts of one kind, in the order the seeded generator writes them."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; choose one of {sorted(PROMPT_KINDS)}")
    if split not in ("heldout", "test"):
        raise ValueError(f"split must be 'heldout' (validation frames) or 'test', not {split!r}")
    make, heldout = PROMPT_KINDS[kind]
    gen = CorpusGenerator(seed=seed, split=split, heldout_frame_rate=1.0 if heldout and not train_frames else 0.0)
    seen = set()
    for _ in range(attempts):
        p = make(gen)
        if p is None or (p.tokens, p.answer) in seen:
            continue
        seen.add((p.tokens, p.answer))
        yield p


def repeated_random_tokens(n_seqs: int, half_len: int, seed: int = 0) -> list[list[str]]:
    """P3: BOS + a run of words drawn from the whole vocabulary + the same run again."""
    gen = CorpusGenerator(seed=seed, split="heldout")
    runs = [gen.random_run(half_len) for _ in range(n_seqs)]
    return [[BOS, *run, *run] for run in runs]


def repeated_sentences(n_seqs: int, seed: int = 0) -> list[tuple[list[str], int]]:
    """P3: BOS + a natural held-out passage + the same passage again; (tokens, start of copy 2)."""
    gen = CorpusGenerator(seed=seed, split="heldout", heldout_frame_rate=1.0)
    out = []
    for _ in range(n_seqs):
        first: list[Token] = gen.sentence(gen.rng.choice(["everyday", "ioi", "landmark_city", "estimate"]), lead_space=False)
        again = [" " + first[0].text if not first[0].text.startswith(" ") else first[0].text] + [t.text for t in first[1:]]
        out.append(([BOS, *(t.text for t in first), *again], 1 + len(first)))
    return out


def natural_prompts() -> tuple[str, ...]:
    """Sentences a student might type: questions, statements, odd casing, typos (the <|unk|> bar)."""
    return (
        "What is the capital of Texas?", "Where is the Eiffel Tower?", "Mary and John went to the store",
        "A robin is a type of", "He scored two goals", "The Eiffel tower is in", "Where is the Louvre museum?",
        "What is the capital of the state that Dallas is in?", "Dallas, Texas is a big city.",
        "Q: What is the capital of Ohio?\nA:", "When Mary and John went to the park, John gave a ball to",
        'Tom said, "I like the red ball.', 'Anna asked, "Where is the key?', 'Sam shouted, "Watch out!',
        'The meaning of the word "nut" is', "The word elephant starts with the letter", "A sparrow is a kind of",
        "The revenue is estimated to exceed 300", "The goalkeeper saved the penalty.", "The nurse said that she",
        "what is the capital of texas", "WHERE IS THE EIFFEL TOWER", "The capitol of Texsa is",
        "I don't know where the Colosseum is.", "It's a lovely day, isn't it?", "Who scored the goal?",
        "How many people live in Paris?", "Which city is the capital of Georgia?", "The Prado museum is in Madrid.",
        "My friend lives in Houston.", "Can you tell me the way to the station?", "Is a salmon a fish?",
        "The cat sat on the mat.", "Yesterday I bought 3 apples and 2 pears.", "Email me at tom@example.com!",
        "The year was 1999; the price was $5.", "Paris (France) has the Louvre.", "Why did Emma go home early?",
        "Everyone was talking about the goal after the match.", "The Brandenburg Gate is in Berlin",
        "Seattle is in Washington, and its capital is", "An eagle is a bird.", "What does the word ladder mean?",
        "How do you spell rhinoceros?", "The team won 3-1 at home.", "She said: 'Hello there.'",
        "  two spaces and a tab\there", "New York is not in this world.", "Q: Where is the Kremlin?\nA: In",
        "Officials estimate that about 40 people were injured.", "The teacher told Peter that he was late.",
    )


def typing_prompts() -> tuple[str, ...]:
    """Prompts as a student of chapters 06-08 types them (issue 26's typing bar: at most 5% of
    words spelled out in characters, no <|unk|>). Written as a student would, without looking up
    which words the corpus writes; they were not changed after the first measurement."""
    return (
        "Texas is a big state.", "Paris has a famous tower.", "Dallas is in Texas, right?",
        "What is the capital of Ohio?", "what is the capital of texas", "where is the Louvre?",
        "who gave the book to Mary?", "how do you spell tiger?", "which state is Boston in?",
        "When Mary and John went to the park, John gave a ball to",
        "Then Anna and Tom went home. Tom gave a cake to",
        "If John and Mary go to the shop, who gets the book?",
        "Most people think that the revenue will grow.", "But then the doctor said that she was tired.",
        "I think your friend is at the station.", "It was late. My sister went home.",
        "Is your dog a mammal?", "Tell me about the Eiffel Tower.", "My favourite city is Rome.",
        "Sam said, \"I like the red ball.\"", "Lucy asked, \"Where is my hat?\"",
        "Tom shouted, \"Watch out!\"", "The nurse said that she would come back.",
        "I am a lawyer in Chicago. I work at the court.", "She is a doctor, and she works at the hospital.",
        "He works as a judge in Austin.", "My name is Emma and I am a nurse.",
        "The word apple starts with the letter", "A robin is a kind of", "What does the word lake mean?",
        "The budget is estimated to exceed 300", "How many people were hurt in the storm?",
        "Do you know where the Colosseum is?", "Can you tell me where Miami is?",
        "Why did Mary go to the park?", "Everyone was talking about the goal.",
        "The goalkeeper saved the penalty in the final.", "We went to the beach on Sunday.",
        "Yesterday I saw a bird in the garden.", "Please tell me the answer.",
        "Our teacher said that the test was hard.", "If it rains tomorrow, we will stay home.",
        "So what do you think about it?", "Some people like coffee, but I like tea.",
        "Then they went to the market together.", "Houston and Austin are both in Texas.",
        "The capital of the state that contains Dallas is", "Seattle is a city in the state of",
        "Where do you live? I live in Denver.", "Who is your best friend?",
        "Have you ever been to Berlin?", "This is the first time I have been here.",
    )
