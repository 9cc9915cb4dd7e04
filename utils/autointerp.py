"""Automated interpretability: explain a latent with a language model, then score the explanation.

Generation shows an LLM the latent's top activating examples (the tokens it fires on marked
`<<token|activation>>`) and asks for a short explanation. Detection scoring gives the explanation
back to an LLM with N numbered sequences, a shuffled mix of held-out top examples and random text,
asks on which ones the latent fires, and compares the answer with where it really fires:

    client = client_from_env()                       # an API client if a key is set, else OfflineClient
    explanation = explain(top[:10], client)          # Example lists, e.g. from top_examples(...)
    sequences, truth = mix_for_detection(top[10:], random_examples(..., silent=True), seed=0)
    predicted = detect(explanation, sequences, client)
    print(detection_scores(predicted, truth, len(sequences)))

The course world also knows what every token *is* (its planted concepts, as in
`utils.latent_truth`), so an explanation can be scored against the truth as well:
`score_against_concept(explanation, sequences, "city:Paris", client)`.

Sequences are numbered from 1 everywhere (prompts, answers, sets of indices), as the LLM sees them.
A latent "fires" on a token when its activation is above `threshold` (default 0, as in
`utils.latent_truth`).

Clients. Anything with a `complete(messages) -> str` method is a client; `messages` is a list of
`{"role": "system" | "user" | "assistant", "content": str}` dicts. `client_from_env()` reads:

    AUTOINTERP_PROVIDER   "offline", "openai" or "anthropic"; unset: the provider whose key is set
    AUTOINTERP_MODEL      the model name; required when an API client is used
    OPENAI_API_KEY        key of an OpenAI-compatible chat-completions API
    OPENAI_BASE_URL       its base URL (default https://api.openai.com/v1; a local server works too)
    ANTHROPIC_API_KEY     key of the Anthropic messages API
    ANTHROPIC_BASE_URL    its base URL (default https://api.anthropic.com)

Without a key it returns `OfflineClient()`, which needs no network: it reads the same prompts and
answers in the same format, from simple token statistics (see its docstring). Nothing here touches
the network until an API client's `complete` is called.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from math import isfinite
from typing import Protocol

Messages = list[dict[str, str]]

WINDOW = (10, 3)  # tokens before and after the max token of a top example (as utils.dashboard.WINDOW)
NEWLINE = "↵"  # how a newline inside a token is shown, so that every sequence stays on one line

# -- examples -----------------------------------------------------------------------------------


def _as_floats(values, what: str) -> list[float]:
    """A plain list of floats from a list, tuple or 1-D tensor / array."""
    if hasattr(values, "tolist"):  # torch tensor or numpy array
        if getattr(values, "ndim", 1) != 1:
            raise ValueError(f"{what} must be 1-D (one value per token), got shape {tuple(values.shape)}.")
        values = values.tolist()
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers, one per token.") from None
    if not all(isfinite(v) for v in out):
        raise ValueError(f"{what} contain NaN or infinity.")
    return out


@dataclass(frozen=True)
class Example:
    """A token sequence with one latent's activation on each token.

    tokens:   token strings as the tokenizer shows them, leading spaces kept (" Paris"), e.g.
              `tokenizer.convert_ids_to_tokens(ids)` as in `utils.dashboard`
    acts:     the latent's activation on each token (a list, or a 1-D tensor: stored as floats)
    concepts: optionally, the planted concepts of each token (a set of names per token, like the
              `labels` of the course corpus's tokens), for scoring explanations against the truth
    where:    optionally, (document, position of the first token) in the corpus it was cut from
    """

    tokens: tuple[str, ...]
    acts: tuple[float, ...]
    concepts: tuple[frozenset[str], ...] | None = None
    where: tuple[int, int] | None = None

    def __post_init__(self):
        tokens = tuple(self.tokens)
        if not tokens:
            raise ValueError("an Example needs at least one token.")
        if not all(isinstance(t, str) for t in tokens):
            raise TypeError("Example tokens must be strings (token ids: convert them with the tokenizer first).")
        acts = tuple(_as_floats(self.acts, "Example activations"))
        if len(acts) != len(tokens):
            raise ValueError(f"an Example needs one activation per token: got {len(tokens)} tokens "
                             f"and {len(acts)} activations.")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "acts", acts)
        if self.concepts is not None:
            if any(isinstance(c, str) for c in self.concepts):
                raise TypeError("Example concepts need one *set* of concept names per token, e.g. "
                                "[set(), {'city:Paris'}], not one string per token.")
            concepts = tuple(frozenset(c) for c in self.concepts)
            if len(concepts) != len(tokens):
                raise ValueError(f"an Example needs one set of concepts per token: got {len(tokens)} tokens "
                                 f"and {len(concepts)} concept sets.")
            object.__setattr__(self, "concepts", concepts)

    @property
    def max_act(self) -> float:
        return max(self.acts)

    def fires(self, threshold: float = 0.0) -> bool:
        """Whether the latent fires anywhere in the sequence (an activation above `threshold`)."""
        return any(a > threshold for a in self.acts)

    def text(self, highlight: bool = False, threshold: float = 0.0) -> str:
        """The sequence as one line of text; with `highlight`, every token whose activation is above
        `threshold` is shown as `<<token|activation>>` (activation with 2 decimals)."""
        return "".join(f"<<{_show(t)}|{a:.2f}>>" if highlight and a > threshold else _show(t)
                       for t, a in zip(self.tokens, self.acts))

    def has_concept(self, concept: str) -> bool:
        if self.concepts is None:
            raise ValueError("this Example has no concept labels (build it with `concepts=...`, e.g. from "
                             "top_examples / random_examples on a labelled corpus).")
        return any(concept in c for c in self.concepts)


def _show(token: str) -> str:
    return token.replace("\r\n", NEWLINE).replace("\n", NEWLINE)


def _quote(text: str) -> str:
    """A token in double quotes, JSON-escaped so that tokens such as '."' stay readable and parseable."""
    return json.dumps(_show(text), ensure_ascii=False)


def _check_examples(examples, what: str) -> list[Example]:
    examples = list(examples)
    if not examples:
        raise ValueError(f"{what}: got no examples, need at least one.")
    bad = [type(e).__name__ for e in examples if not isinstance(e, Example)]
    if bad:
        raise TypeError(f"{what}: expected Example objects, got {bad[0]}.")
    return examples


# -- examples from a labelled corpus (utils.world.labelled_corpus's LabelledCorpus or any object with the
# same fields: tokens and mask (n_docs, n_ctx), labels (n_docs, n_ctx, n_concepts), concepts) --


def _check_corpus(latent_acts, data):
    import torch

    acts = torch.as_tensor(latent_acts).detach().float().cpu()
    if acts.shape != data.tokens.shape:
        raise ValueError(f"latent_acts must hold one activation per corpus token, shape {tuple(data.tokens.shape)} "
                         f"(documents, positions), got {tuple(acts.shape)}: select one latent, e.g. acts[..., k].")
    return acts


def _cut(data, acts, to_str_tokens: Callable, doc: int, lo: int, hi: int) -> Example:
    """Tokens lo..hi (inclusive) of a document, with activations and concept labels."""
    labels = data.labels[doc, lo:hi + 1]
    concepts = [frozenset(data.concepts[c] for c in row.nonzero().flatten().tolist()) for row in labels]
    return Example(list(to_str_tokens(data.tokens[doc, lo:hi + 1].tolist())), acts[doc, lo:hi + 1], concepts,
                   (doc, lo))


def top_examples(latent_acts, data, to_str_tokens: Callable, n: int = 10, window: tuple[int, int] = WINDOW,
                 threshold: float = 0.0) -> list[Example]:
    """The latent's top activating examples on a labelled corpus, as on the dashboards: one window
    per document (so the examples differ) of `window` = (before, after) tokens around the
    document's max-activating token, in decreasing order of that activation; BOS and padding left
    out. Only documents where the latent fires (max > `threshold`) count, so fewer than `n`
    examples may come back.

    latent_acts:   one latent's activations on the corpus, shape (n_docs, n_ctx), e.g. acts[..., k]
    to_str_tokens: token ids -> token strings, e.g. model.tokenizer.convert_ids_to_tokens
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    acts = _check_corpus(latent_acts, data)
    best, pos = acts.masked_fill(~data.mask, float("-inf")).max(dim=1)
    out = []
    for doc in best.argsort(descending=True, stable=True).tolist():
        if len(out) == n or not best[doc] > threshold:
            break
        real = data.mask[doc].nonzero().flatten()
        p = int(pos[doc])
        out.append(_cut(data, acts, to_str_tokens, doc, max(p - window[0], int(real[0])),
                        min(p + window[1], int(real[-1]))))
    return out


def random_examples(latent_acts, data, to_str_tokens: Callable, n: int = 10, length: int = sum(WINDOW) + 1,
                    seed: int = 0, exclude: Sequence[Example] = (), silent: bool = False) -> list[Example]:
    """`n` windows of `length` real tokens at random places of distinct random documents
    (reproducible by `seed`), skipping the documents the `exclude` examples were cut from (e.g. the
    top examples). Their activations are real: the latent may fire on some of them, unless `silent`,
    which keeps only windows where it never fires (delphi's non-activating negatives; fewer than
    `n` come back if the corpus has too few)."""
    if n < 1 or length < 1:
        raise ValueError(f"n and length must be at least 1, got n={n}, length={length}.")
    acts = _check_corpus(latent_acts, data)
    skip = {e.where[0] for e in exclude if e.where is not None}
    docs = [d for d in range(len(data.tokens)) if d not in skip and bool(data.mask[d].any())]
    rng = random.Random(seed)
    out = []
    if not silent:
        for doc in rng.sample(docs, min(n, len(docs))):
            real = data.mask[doc].nonzero().flatten()
            first, last = int(real[0]), int(real[-1])
            lo = rng.randint(first, max(first, last - length + 1))
            out.append(_cut(data, acts, to_str_tokens, doc, lo, min(lo + length - 1, last)))
        return out
    for doc in rng.sample(docs, len(docs)):  # every document in a random order, until n are found
        real = data.mask[doc].nonzero().flatten()
        first, last = int(real[0]), int(real[-1])
        quiet = [lo for lo in range(first, max(first, last - length + 1) + 1)
                 if not bool((acts[doc, lo:min(lo + length - 1, last) + 1] > 0).any())]
        if quiet:
            lo = rng.choice(quiet)
            out.append(_cut(data, acts, to_str_tokens, doc, lo, min(lo + length - 1, last)))
            if len(out) == n:
                break
    return out


# -- prompts ------------------------------------------------------------------------------------

EXPLAIN_HEADER = "Top activating examples:"
EXPLANATION_HEADER = "Explanation:"
SEQUENCES_HEADER = "Sequences:"

_EXPLAIN_SYSTEM = (
    "You explain what one latent of a sparse dictionary trained on a language model responds to. "
    "You see text excerpts on which it is most active. The tokens it fires on are marked "
    "<<token|activation>>, for example in<< Paris|3.10>> (a token keeps its leading space). "
    "Reply with one short sentence of at most {max_words} words saying what it fires on. "
    "Put any specific token you name in double quotes."
)

_DETECT_SYSTEM = (
    "You are given an explanation of what one latent of a language model's sparse dictionary fires on, "
    "and {n} numbered text sequences. It may fire on any number of them, none or all included. "
    "Reply with the numbers of the sequences on which it fires, separated by commas (for example: 2, 5), "
    "or with None if it fires on none of them. Reply with nothing else."
)


def explanation_prompt(top_examples: Sequence[Example], top_logits: Sequence[str] | None = None,
                       threshold: float = 0.0, max_words: int = 25) -> Messages:
    """Chat messages asking for an explanation of a latent from its top activating examples.

    Each example is one numbered line, its active tokens (activation > `threshold`) shown as
    `<<token|activation>>`. `top_logits`, optionally, are the tokens the latent's decoder direction
    boosts most (logit lens); they are listed, quoted, after the examples.
    """
    examples = _check_examples(top_examples, "explanation_prompt")
    lines = [f"{i}. {e.text(highlight=True, threshold=threshold)}" for i, e in enumerate(examples, 1)]
    user = EXPLAIN_HEADER + "\n" + "\n".join(lines)
    if top_logits:
        user += "\n\nTokens whose logits the latent boosts most: " + ", ".join(_quote(t) for t in top_logits)
    return [{"role": "system", "content": _EXPLAIN_SYSTEM.format(max_words=max_words)},
            {"role": "user", "content": user}]


def detection_prompt(explanation: str, sequences: Sequence[Example | str]) -> Messages:
    """Chat messages asking on which of the numbered `sequences` (Examples, shown without any
    highlighting, or plain strings) the latent described by `explanation` fires."""
    if not isinstance(explanation, str) or not explanation.strip():
        raise ValueError("detection_prompt needs a non-empty explanation string.")
    sequences = list(sequences)
    if not sequences:
        raise ValueError("detection_prompt: got no sequences, need at least one.")
    lines = [f"{i}. {s.text() if isinstance(s, Example) else _show(s)}" for i, s in enumerate(sequences, 1)]
    user = f"{EXPLANATION_HEADER} {explanation.strip()}\n\n{SEQUENCES_HEADER}\n" + "\n".join(lines)
    return [{"role": "system", "content": _DETECT_SYSTEM.format(n=len(sequences))},
            {"role": "user", "content": user}]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of sequences must be a positive integer, got {n!r}.")
    return n


_RANGE = re.compile(r"(?<![\w.])(\d+)\s*[-–]\s*(\d+)(?![\w]|\.\d)")
_NUMBER = re.compile(r"(?<![\w.])(\d+)(?!\w|\.\d)")


def parse_detection_answer(text: str, n: int, strict: bool = True) -> set[int]:
    """The sequence numbers (1 to n) named in an LLM's detection answer.

    Reads "1, 3 and 7", "[1,3,7]", "#1 #3 #7", "Sequences 2-4" (a range) and "None" (the empty set).
    If the answer has several lines, only the last non-empty one is read (a model that thinks aloud
    puts its answer last). Decimals such as "0.5" are not sequence numbers.

    With `strict` (the default), an answer that names no number and does not say "none" (junk, an
    empty reply) or names a number outside 1..n raises a one-line ValueError. With `strict=False`
    such an answer counts as "no prediction": junk gives the empty set, out-of-range numbers are dropped.
    """
    n = _check_n(n)
    if not isinstance(text, str):
        raise TypeError(f"a detection answer must be a string, got {type(text).__name__}.")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    answer = lines[-1] if lines else ""
    numbers: set[int] = set()
    for lo, hi in _RANGE.findall(answer):
        numbers.update(range(int(lo), int(hi) + 1))
    numbers.update(int(k) for k in _NUMBER.findall(_RANGE.sub(" ", answer)))
    if not numbers:
        if re.search(r"\bnone\b", answer, re.IGNORECASE) or re.fullmatch(r"\s*[\[({]\s*[\])}]\s*", answer):
            return set()
        if strict:
            shown = answer if len(answer) <= 60 else answer[:57] + "..."
            raise ValueError(f"could not read sequence numbers from the answer {shown!r}: expected e.g. "
                             f"'1, 3, 7' or 'None'.")
        return set()
    outside = sorted(k for k in numbers if not 1 <= k <= n)
    if outside and strict:
        raise ValueError(f"the answer names sequence {outside[0]}, but the sequences are numbered 1 to {n}.")
    return {k for k in numbers if 1 <= k <= n}


# -- detection scores ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionScores:
    """How well a predicted set of firing sequences matches the true one, over n sequences.

    accuracy  = (tp + tn) / n: the fraction of sequences classified right
    precision = tp / (tp + fp), recall = tp / (tp + fn), f1 their harmonic mean.
    A ratio with a zero denominator (nothing predicted, or nothing to find) is 1.0 when the
    prediction is exactly right (both sets empty) and 0.0 otherwise; f1 is 0.0 when precision and
    recall are both 0.
    """

    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def __str__(self) -> str:
        return (f"accuracy {self.accuracy:.2f} ({self.tp + self.tn}/{self.n}), precision {self.precision:.2f}, "
                f"recall {self.recall:.2f}, F1 {self.f1:.2f}")


def _index_set(values, n: int, what: str) -> set[int]:
    try:
        out = set(values)
    except TypeError:
        raise ValueError(f"{what} must be a set of sequence numbers, got {type(values).__name__}.") from None
    for k in sorted(out, key=repr):
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"{what} must hold integer sequence numbers, got {k!r}.")
        if not 1 <= k <= n:
            hint = " (sequences are numbered from 1, as in the prompt)" if k == 0 else ""
            raise ValueError(f"{what} holds {k}, which is not a sequence number 1 to {n}{hint}.")
    return out


def detection_scores(predicted: set[int], truth: set[int], n: int) -> DetectionScores:
    """Accuracy, precision, recall and F1 of the `predicted` firing sequences against the `truth`,
    both sets of sequence numbers 1..n (see `DetectionScores` for the edge cases)."""
    n = _check_n(n)
    predicted, truth = _index_set(predicted, n, "predicted"), _index_set(truth, n, "truth")
    tp, fp, fn = len(predicted & truth), len(predicted - truth), len(truth - predicted)
    tn = n - tp - fp - fn
    exact = predicted == truth
    precision = tp / (tp + fp) if tp + fp else float(exact)
    recall = tp / (tp + fn) if tp + fn else float(exact)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionScores((tp + tn) / n, precision, recall, f1, tp, fp, fn, tn)


def mix_for_detection(top: Sequence[Example], random_: Sequence[Example], seed: int = 0,
                      threshold: float = 0.0) -> tuple[list[Example], set[int]]:
    """Shuffle held-out top examples and random ones together (reproducibly, by `seed`).

    Returns the sequences and the true set of sequence numbers (1-based) on which the latent fires
    (an activation above `threshold`), read from the activations: a random sequence on which the
    latent happens to fire counts as firing, a top example on which it does not as not firing.
    """
    sequences = _check_examples(list(top) + list(random_), "mix_for_detection")
    random.Random(seed).shuffle(sequences)
    return sequences, {i for i, s in enumerate(sequences, 1) if s.fires(threshold)}


# -- clients ------------------------------------------------------------------------------------


class LLMClient(Protocol):
    """Anything that answers chat messages with text."""

    def complete(self, messages: Messages) -> str: ...


class LLMError(RuntimeError):
    """An API call failed (HTTP error, unreachable server, unexpected reply); the message is one line."""


def check_messages(messages) -> Messages:
    """`messages` as a list of {"role", "content"} dicts, or a one-line ValueError."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts.")
    for i, m in enumerate(messages):
        if (not isinstance(m, dict) or set(m) != {"role", "content"} or m["role"] not in ("system", "user", "assistant")
                or not isinstance(m["content"], str)):
            raise ValueError(f"message {i} must be a dict with a role ('system', 'user' or 'assistant') and a "
                             f"string content, got {str(m)[:80]}.")
    return messages


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _post_json(url: str, headers: dict[str, str], body: dict, opener, timeout: float, name: str) -> dict:
    """POST a JSON body, return the JSON reply; every failure is an LLMError with a one-line message."""
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with opener(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace") if e.fp is not None else ""
        try:
            error = json.loads(detail).get("error", detail)
            detail = error.get("message", error) if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            pass
        raise LLMError(_one_line(f"{name} at {url} answered HTTP {e.code} {e.reason}: {detail}", 300)) from None
    except urllib.error.URLError as e:
        raise LLMError(_one_line(f"could not reach {name} at {url}: {e.reason}", 300)) from None
    except TimeoutError:
        raise LLMError(f"{name} at {url} did not answer within {timeout} s.") from None
    except (OSError, http.client.HTTPException) as e:  # e.g. the connection was reset or cut short
        raise LLMError(_one_line(f"the connection to {name} at {url} failed: {type(e).__name__} {e}", 300)) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise LLMError(_one_line(f"{name} at {url} did not answer with JSON: {raw[:100]!r}", 300)) from None


def _body(client, body: dict) -> dict:
    settings = {"max_tokens": client.max_tokens, "temperature": client.temperature}
    return {**body, **{k: v for k, v in settings.items() if v is not None}, **client.extra}


@dataclass
class _HTTPClient:
    """The settings both API clients share; `base_url` gets its default in each client."""

    model: str
    api_key: str = field(repr=False)
    base_url: str = ""
    max_tokens: int | None = 200
    temperature: float | None = 0.0
    timeout: float = 60.0
    opener: Callable = field(default=urllib.request.urlopen, repr=False)
    extra: dict = field(default_factory=dict)


@dataclass
class OpenAIClient(_HTTPClient):
    """An OpenAI-compatible chat-completions API (OpenAI, or a local server such as vLLM or Ollama).

    POSTs {"model", "messages", "max_tokens", "temperature"} to `{base_url}/chat/completions` with
    `Authorization: Bearer <api_key>` and returns `choices[0].message.content`. A field set to None
    is left out of the body, and `extra` is added to it (some newer OpenAI models refuse
    "max_tokens" and want e.g. `max_tokens=None, extra={"max_completion_tokens": 200}`). `opener` is
    `urllib.request.urlopen` unless a test passes a fake one.
    """

    base_url: str = "https://api.openai.com/v1"

    def complete(self, messages: Messages) -> str:
        body = _body(self, {"model": self.model, "messages": check_messages(messages)})
        url = self.base_url.rstrip("/") + "/chat/completions"
        reply = _post_json(url, {"Authorization": f"Bearer {self.api_key}"}, body, self.opener, self.timeout,
                           "the OpenAI-compatible API")
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMError(_one_line(f"unexpected reply from {url} (no choices[0].message.content): {reply}")) from None
        return content if isinstance(content, str) else ""


@dataclass
class AnthropicClient(_HTTPClient):
    """The Anthropic messages API.

    POSTs {"model", "max_tokens", "temperature", "system", "messages"} to `{base_url}/v1/messages`
    with the headers `x-api-key` and `anthropic-version`; system messages go to the "system"
    field. Returns the text blocks of the reply's content, joined. The API requires max_tokens;
    `extra` is added to the body as for `OpenAIClient`.
    """

    base_url: str = "https://api.anthropic.com"
    version: str = "2023-06-01"

    def complete(self, messages: Messages) -> str:
        messages = check_messages(messages)
        body = _body(self, {"model": self.model, "messages": [m for m in messages if m["role"] != "system"]})
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        if system:
            body["system"] = system
        url = self.base_url.rstrip("/") + "/v1/messages"
        reply = _post_json(url, {"x-api-key": self.api_key, "anthropic-version": self.version}, body,
                           self.opener, self.timeout, "the Anthropic API")
        try:
            return "".join(block["text"] for block in reply["content"] if block.get("type") == "text")
        except (KeyError, TypeError, AttributeError):
            raise LLMError(_one_line(f"unexpected reply from {url} (no text content): {reply}")) from None


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_HIGHLIGHT = re.compile(r"<<(.*?)\|([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)>>")
_NUMBERED = re.compile(r"^(\d+)\. (.*)$")


def _unquote(body: str) -> str:
    try:
        return json.loads(f'"{body}"')
    except ValueError:
        return body


@dataclass
class OfflineClient:
    """A stand-in for an LLM that needs no network and answers the two prompts of this module.

    Explanation prompt: it reads the highlighted tokens of the examples and, for each, the word or
    run of punctuation just before it (with word-level tokens such as the course world's, the
    previous token: " the", ","). It ranks both by how often they occur (ties: first seen) and takes
    the most frequent, up to `max_items`, until they cover at least `coverage` of the highlighted
    tokens. If the preceding words cover more of them (or as many with fewer items), it says
    'Fires on the token right after " the" (9 of 10 highlighted tokens).', otherwise
    'Fires on the token " Paris" (10 of 10 highlighted tokens).' or, with several,
    'Fires on the tokens " Paris", " Lyon" or " Rome" (...)'. It ignores the boosted logit tokens.

    Detection prompt: it takes the explanation literally. It reads the double-quoted strings of
    the explanation and says a sequence fires if one of them occurs in its text. A quoted string
    that starts (ends) with a letter or digit must start (end) at a word boundary, so " the" does
    not match " there". If the explanation says "after", the quoted string must be followed by
    more text. An explanation that quotes nothing predicts None. It reads text like a person, not
    token ids: a quoted word piece such as " E" (of " E" "iff" "el") does not match inside "Eiffel".
    """

    max_items: int = 3
    coverage: float = 0.8

    def complete(self, messages: Messages) -> str:
        user = "\n".join(m["content"] for m in check_messages(messages) if m["role"] == "user")
        if user.startswith(EXPLAIN_HEADER):
            return self._explain(user)
        if user.startswith(EXPLANATION_HEADER) and f"\n\n{SEQUENCES_HEADER}\n" in user:
            return self._detect(user)
        raise ValueError("OfflineClient answers only the prompts made by explanation_prompt and detection_prompt; "
                         "use an API client (client_from_env) for other prompts.")

    def _rank(self, counts: Counter, total: int) -> tuple[list[str], int]:
        chosen, covered = [], 0
        for item, count in sorted(counts.items(), key=lambda kv: -kv[1]):  # stable: first seen wins ties
            chosen.append(item)
            covered += count
            if len(chosen) == self.max_items or covered >= self.coverage * total:
                break
        return chosen, covered

    def _explain(self, user: str) -> str:
        block = user[len(EXPLAIN_HEADER):].split("\n\n")[0]
        tokens, before = Counter(), Counter()
        for line in block.splitlines():
            if not (m := _NUMBERED.match(line)):
                continue
            text = m.group(2)
            for h in _HIGHLIGHT.finditer(text):
                tokens[h.group(1)] += 1
                plain = _HIGHLIGHT.sub(r"\1", text[:h.start()])
                if word := re.search(r"\s?(?:\w+|[^\w\s]+)$", plain):
                    before[word.group(0)] += 1
        total = sum(tokens.values())
        if total == 0:
            return "No token is highlighted in these examples."
        chosen, covered = self._rank(tokens, total)
        prev, prev_covered = self._rank(before, total)
        if prev and (prev_covered > covered or (prev_covered == covered and len(prev) < len(chosen))):
            return (f"Fires on the token right after {' or '.join(_quote(w) for w in prev)} "
                    f"({prev_covered} of {total} highlighted tokens).")
        names = ", ".join(_quote(t) for t in chosen[:-1]) + " or " * (len(chosen) > 1) + _quote(chosen[-1])
        return f"Fires on the token{'s' * (len(chosen) > 1)} {names} ({covered} of {total} highlighted tokens)."

    def _detect(self, user: str) -> str:
        explanation, sequences = user[len(EXPLANATION_HEADER):].split(f"\n\n{SEQUENCES_HEADER}\n", 1)
        patterns = [predicts_pattern(_unquote(q), after=bool(re.search(r"\bafter\b", explanation, re.IGNORECASE)))
                    for q in _QUOTED.findall(explanation) if q]
        fired = [int(m.group(1)) for line in sequences.splitlines() if (m := _NUMBERED.match(line))
                 and any(p.search(m.group(2)) for p in patterns)]
        return ", ".join(map(str, fired)) if fired else "None"


def predicts_pattern(quoted: str, after: bool = False) -> re.Pattern:
    """The regular expression with which OfflineClient looks for a quoted string in a sequence."""
    start = r"(?<![A-Za-z0-9])" if quoted[:1].isalnum() else ""
    end = r"(?![A-Za-z0-9])" if quoted[-1:].isalnum() else ""
    return re.compile(start + re.escape(quoted) + end + (r"(?=.)" if after else ""))


def client_from_env(environ: Mapping[str, str] | None = None) -> LLMClient:
    """The LLM client the environment asks for (see the module docstring for the variables):
    an API client when its key is set, otherwise `OfflineClient()`. Makes no network call."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    provider = (get("AUTOINTERP_PROVIDER") or "").lower()
    if provider not in ("", "offline", "openai", "anthropic"):
        raise ValueError(f"AUTOINTERP_PROVIDER={provider!r} is not one of 'offline', 'openai', 'anthropic'.")
    keys = {"openai": get("OPENAI_API_KEY"), "anthropic": get("ANTHROPIC_API_KEY")}
    if provider == "offline" or (not provider and not any(keys.values())):
        return OfflineClient()
    if not provider:
        if all(keys.values()):
            raise ValueError("both OPENAI_API_KEY and ANTHROPIC_API_KEY are set: set AUTOINTERP_PROVIDER to "
                             "'openai' or 'anthropic' (or 'offline') to choose.")
        provider = "openai" if keys["openai"] else "anthropic"
    key_name = f"{provider.upper()}_API_KEY"
    if not keys[provider]:
        raise ValueError(f"AUTOINTERP_PROVIDER={provider} but {key_name} is not set.")
    model = get("AUTOINTERP_MODEL")
    if model is None:
        raise ValueError(f"{key_name} is set, so autointerp would call the {provider} API, but AUTOINTERP_MODEL "
                         f"is not: set it to a model name, or set AUTOINTERP_PROVIDER=offline.")
    if provider == "openai":
        return OpenAIClient(model, keys["openai"], base_url=get("OPENAI_BASE_URL") or OpenAIClient.base_url)
    return AnthropicClient(model, keys["anthropic"], base_url=get("ANTHROPIC_BASE_URL") or AnthropicClient.base_url)


# -- the pipeline -------------------------------------------------------------------------------


def explain(top_examples: Sequence[Example], client: LLMClient, top_logits: Sequence[str] | None = None,
            threshold: float = 0.0) -> str:
    """An explanation of the latent from `client`, through `explanation_prompt`."""
    return client.complete(explanation_prompt(top_examples, top_logits, threshold)).strip()


def detect(explanation: str, sequences: Sequence[Example | str], client: LLMClient, strict: bool = True) -> set[int]:
    """The sequence numbers on which `client` predicts the latent fires, from the explanation alone.
    A reply that cannot be read raises ValueError; with `strict=False` it counts as predicting
    nothing (see `parse_detection_answer`)."""
    return parse_detection_answer(client.complete(detection_prompt(explanation, sequences)), len(sequences), strict)


def concept_truth(sequences: Sequence[Example], concept: str) -> set[int]:
    """Sequence numbers (1-based) of the sequences in which some token carries `concept` (an exact
    concept name of the labels, e.g. "city:Paris")."""
    return {i for i, s in enumerate(_check_examples(sequences, "concept_truth"), 1) if s.has_concept(concept)}


def score_against_concept(explanation: str, sequences: Sequence[Example], concept: str,
                          client: LLMClient) -> DetectionScores:
    """How well the explanation describes a planted concept: detection scores of the sequences
    `client` predicts from the explanation against the sequences that contain a token labelled
    `concept`. The latent's activations play no part: this scores the words of the explanation
    against the truth, so a fluent explanation of the wrong thing scores low, and comparing it
    with `detection_scores` against the activations shows whether the explanation or the latent
    misses the concept. Use sequences of which some contain the concept: if none does, an
    explanation that predicts nothing scores 1.0 (see `DetectionScores`)."""
    truth = concept_truth(sequences, concept)
    return detection_scores(detect(explanation, sequences, client), truth, len(sequences))
