"""Evaluation prompts built from the corpus generator.

A prompt is a sentence of the corpus cut just before the token a phenomenon predicts (the
answer), so prompts come with their ground truth. By default they are drawn from the
held-out split with held-out templates only, so they are never verbatim training text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import facts as F
from .corpus import BOS, CorpusGenerator, Sentence


@dataclass(frozen=True)
class Prompt:
    tokens: tuple[str, ...]  # starts with BOS
    answer: str  # the token that should come next
    wrong: str | None = None  # the competing token, where there is one (IOI: the subject)
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def text(self) -> str:
        """The prompt as a string (without BOS), e.g. for `model.to_tokens`."""
        return "".join(self.tokens[1:])


def _cut(sentence: Sentence, label: str, **meta) -> Prompt | None:
    idx = next((i for i, tok in enumerate(sentence) if label in tok.labels), None)
    if idx is None:
        return None
    return Prompt((BOS, *(t.text for t in sentence[:idx])), sentence[idx].text, meta=meta)


def _generator(split: str, seed: int, heldout_templates: bool) -> CorpusGenerator:
    return CorpusGenerator(seed=seed, split=split, heldout_template_rate=1.0 if heldout_templates else 0.0)


def _collect(make, n: int, max_tries: int) -> list[Prompt]:
    seen, out = set(), []
    for _ in range(max_tries):
        p = make()
        if p is None or (p.tokens, p.answer) in seen:
            continue
        seen.add((p.tokens, p.answer))
        out.append(p)
        if len(out) == n:
            break
    return out


def make_prompts(kind: str, n: int = 200, seed: int = 1234, split: str = "heldout",
                 heldout_templates: bool = True) -> list[Prompt]:
    """Up to `n` distinct prompts of one kind. Kinds: see `PROMPT_KINDS`."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; choose one of {sorted(PROMPT_KINDS)}")
    gen = _generator(split, seed, heldout_templates)
    return _collect(lambda: PROMPT_KINDS[kind](gen), n, max_tries=20 * n)


def _two_hop(gen: CorpusGenerator, unseen_city: bool = False) -> Prompt | None:
    cities = [c for s in F.STATES.values() for c in (s["cities"][-1:] if unseen_city else s["cities"][:-1])]
    city = gen.rng.choice(cities)
    return _cut(gen.p6("p6_two_hop", city), "p6_two_hop_answer", city=city, state=F.CITY_TO_STATE[city])


def _ioi(gen: CorpusGenerator) -> Prompt | None:
    sent = gen.p7_ioi()
    p = _cut(sent, "ioi_io")
    s_tok = next(t.text for t in sent if "ioi_s2" in t.labels)
    return Prompt(p.tokens, p.answer, wrong=s_tok)


def _piece(gen: CorpusGenerator) -> Prompt | None:
    lm = gen.rng.choice(F.LANDMARKS)
    sent = gen.p2_fact(lm) if gen.rng.random() < 0.5 else gen.p2_mention(lm)
    idx = [i for i, t in enumerate(sent) if "landmark" in t.labels][-1]
    return Prompt((BOS, *(t.text for t in sent[:idx])), sent[idx].text, meta={"landmark": lm.name})


def _plain_period(gen: CorpusGenerator) -> Prompt | None:
    sent = gen.p8_plain(*gen.rng.sample(F.NAMES, 2))
    return Prompt((BOS, *(t.text for t in sent[:-1])), sent[-1].text)


def _p11(gen: CorpusGenerator) -> Prompt | None:
    return _cut(gen.p11(), "p11_answer")


PROMPT_KINDS = {
    "p1_piece": _piece,
    "p2_fact": lambda g: _cut(g.p2_fact(), "p2_answer"),
    "p6_hop1": lambda g: _cut(g.p6("p6_hop1"), "p6_hop1_answer"),
    "p6_hop2": lambda g: _cut(g.p6("p6_hop2"), "p6_hop2_answer"),
    "p6_two_hop": _two_hop,
    "p6_two_hop_unseen_city": lambda g: _two_hop(g, unseen_city=True),
    "p7_ioi": _ioi,
    "p8_close_quote": lambda g: _cut(g.p8_quote(*g.rng.sample(F.NAMES, 2)), "quote_close"),
    "p8_plain_period": _plain_period,
    "p9_definition": lambda g: _cut(g.p9(), "p9_answer"),
    "p10_first_letter": lambda g: _cut(g.p10(), "p10_answer"),
    "p11_category": _p11,
}


def repeated_random_tokens(n_seqs: int, half_len: int, seed: int = 0) -> list[list[str]]:
    """P3: BOS + a random run of words + the same run again."""
    gen = CorpusGenerator(seed=seed, split="heldout")
    runs = [gen.p3_run(half_len) for _ in range(n_seqs)]
    return [[BOS, *run, *run] for run in runs]
