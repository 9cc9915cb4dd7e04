"""utils/autointerp.py on small hand-made examples: every expected value below is worked out by
hand from the example (the comments show how), never read back from the code under test.

No network: the HTTP clients get a fake opener that records the request and returns a canned reply.
"""

from __future__ import annotations

import io
import json
import urllib.error

import pytest
import torch

from utils.autointerp import (
    AnthropicClient,
    Example,
    LLMError,
    OfflineClient,
    OpenAIClient,
    client_from_env,
    concept_truth,
    detect,
    detection_prompt,
    detection_scores,
    explain,
    explanation_prompt,
    mix_for_detection,
    parse_detection_answer,
    random_examples,
    score_against_concept,
    top_examples,
)


def ex(text: str, fire: dict[int, float] | None = None, concepts: dict[int, set[str]] | None = None) -> Example:
    """An Example from space-separated words (each becomes a token with its leading space)."""
    tokens = [" " + w for w in text.split()]
    acts = [0.0] * len(tokens)
    for i, a in (fire or {}).items():
        acts[i] = a
    labels = None if concepts is None else [concepts.get(i, set()) for i in range(len(tokens))]
    return Example(tokens, acts, labels)


# -- Example ------------------------------------------------------------------------------------


def test_example_highlighting_and_threshold():
    e = Example(["The", " E", "iff", "el", "\n"], [0, 2.0, 0.5, 0, 0])
    assert e.text() == "The Eiffel↵"
    assert e.text(highlight=True) == "The<< E|2.00>><<iff|0.50>>el↵"
    assert e.text(highlight=True, threshold=1.0) == "The<< E|2.00>>iffel↵"
    assert e.max_act == 2.0 and e.fires() and not e.fires(threshold=2.0)


def test_example_accepts_a_tensor_and_stores_floats():
    e = Example([" a", " b"], torch.tensor([0.0, 1.5]))
    assert e.acts == (0.0, 1.5) and all(type(a) is float for a in e.acts)


@pytest.mark.parametrize("tokens, acts, message", [
    ([], [], "at least one token"),
    ([" a", " b"], [1.0, 2.0, 3.0], "2 tokens and 3 activations"),
    ([" a"], torch.zeros(1, 1), "1-D"),
    ([" a"], [float("nan")], "NaN"),
    ([" a"], ["x"], "numbers"),
])
def test_example_rejects_bad_input(tokens, acts, message):
    with pytest.raises(ValueError, match=message):
        Example(tokens, acts)


def test_example_rejects_token_ids_and_mismatched_concepts():
    with pytest.raises(TypeError, match="strings"):
        Example([101, 102], [0, 1])
    with pytest.raises(ValueError, match="2 tokens and 1 concept sets"):
        Example([" a", " b"], [0, 1], [{"x"}])
    with pytest.raises(TypeError, match="one \\*set\\* of concept names per token"):
        Example([" a", " b"], [0, 1], ["x", "y"])
    with pytest.raises(ValueError, match="no concept labels"):
        concept_truth([ex("a b")], "x")


# -- prompts ------------------------------------------------------------------------------------


def test_explanation_prompt_highlights_numbers_and_lists_logits():
    messages = explanation_prompt([ex("in Paris today", {1: 3.1}), ex("Lyon and Paris", {0: 1.25, 2: 2})],
                                  top_logits=[" Paris", '."'], max_words=12)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "at most 12 words" in messages[0]["content"]
    assert messages[1]["content"] == (
        "Top activating examples:\n"
        "1.  in<< Paris|3.10>> today\n"
        "2. << Lyon|1.25>> and<< Paris|2.00>>\n"
        "\n"
        'Tokens whose logits the latent boosts most: " Paris", ".\\""')


def test_explanation_prompt_threshold_and_bad_input():
    user = explanation_prompt([ex("a b c", {0: 0.2, 1: 5})], threshold=1.0)[1]["content"]
    assert user.endswith("1.  a<< b|5.00>> c")  # 0.2 is not above the threshold 1.0
    with pytest.raises(ValueError, match="no examples"):
        explanation_prompt([])
    with pytest.raises(TypeError, match="Example"):
        explanation_prompt([" a b"])


def test_detection_prompt_numbers_sequences_without_highlights():
    messages = detection_prompt("  Fires on Paris. ", [ex("in Paris", {1: 3.0}), ex("x y"), "plain\ntext"])
    assert "3 numbered text sequences" in messages[0]["content"]
    assert messages[1]["content"] == ("Explanation: Fires on Paris.\n\nSequences:\n"
                                      "1.  in Paris\n2.  x y\n3. plain↵text")
    assert "<<" not in messages[1]["content"]  # the activations must not leak into the question
    with pytest.raises(ValueError, match="explanation"):
        detection_prompt("  ", [ex("a")])
    with pytest.raises(ValueError, match="no sequences"):
        detection_prompt("Paris", [])


# -- parsing answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("answer, expected", [
    ("1, 3 and 7", {1, 3, 7}),
    ("[1,3,7]", {1, 3, 7}),
    ("#1 #3 #7.", {1, 3, 7}),
    ("Sequences 2-4", {2, 3, 4}),
    ("None", set()),
    ("none of them.", set()),
    ("[]", set()),
    ("Sequence 3 mentions Paris, so does 8.\nAnswer: 2, 5", {2, 5}),  # only the last line counts
    ("  7  ", {7}),
])
def test_parse_detection_answer(answer, expected):
    assert parse_detection_answer(answer, 8) == expected


def test_parse_detection_answer_junk_and_out_of_range():
    for junk in ("I cannot tell.", "", "0.5"):
        with pytest.raises(ValueError, match="could not read sequence numbers"):
            parse_detection_answer(junk, 8)
        assert parse_detection_answer(junk, 8, strict=False) == set()
    with pytest.raises(ValueError, match="names sequence 9, but the sequences are numbered 1 to 8"):
        parse_detection_answer("1, 9", 8)
    assert parse_detection_answer("1, 9", 8, strict=False) == {1}
    with pytest.raises(ValueError, match="positive integer"):
        parse_detection_answer("1", 0)


# -- detection scores ---------------------------------------------------------------------------


def test_detection_scores_worked_example():
    # 8 sequences, the latent fires on 1, 3, 7; predicted 1, 3, 6: right on 1, 3 (tp) and on
    # 2, 4, 5, 8 (tn), wrong on 6 (fp) and 7 (fn): accuracy 6/8, precision 2/3, recall 2/3.
    s = detection_scores({1, 3, 6}, {1, 3, 7}, 8)
    assert (s.tp, s.fp, s.fn, s.tn, s.n) == (2, 1, 1, 4, 8)
    assert s.accuracy == 0.75
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3) and s.f1 == pytest.approx(2 / 3)
    assert str(s) == "accuracy 0.75 (6/8), precision 0.67, recall 0.67, F1 0.67"


def test_detection_scores_unbalanced_case():
    # predicted 1-4, true 1-2, of 5: tp 2, fp 2, fn 0, tn 1 (sequence 5).
    s = detection_scores({1, 2, 3, 4}, {1, 2}, 5)
    assert (s.accuracy, s.precision, s.recall) == (0.6, 0.5, 1.0)
    assert s.f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)


@pytest.mark.parametrize("predicted, truth, n, expected", [
    (set(), {1, 2}, 4, (0.5, 0.0, 0.0, 0.0)),  # nothing predicted: precision 0 (not exactly right)
    (set(), set(), 3, (1.0, 1.0, 1.0, 1.0)),  # nothing to find, nothing claimed: exactly right
    ({1}, set(), 2, (0.5, 0.0, 0.0, 0.0)),  # nothing to find, one false alarm
])
def test_detection_scores_edge_cases(predicted, truth, n, expected):
    s = detection_scores(predicted, truth, n)
    assert (s.accuracy, s.precision, s.recall, s.f1) == expected


def test_detection_scores_bad_input():
    with pytest.raises(ValueError, match="positive integer"):
        detection_scores(set(), set(), 0)
    with pytest.raises(ValueError, match="numbered from 1"):
        detection_scores({0, 2}, {2}, 3)  # the classic off-by-one: 0-based indices
    with pytest.raises(ValueError, match="truth holds 4, which is not a sequence number 1 to 3"):
        detection_scores({1}, {4}, 3)
    with pytest.raises(TypeError, match="integer"):
        detection_scores({"1"}, {1}, 3)


def test_mix_for_detection_truth_follows_activations():
    top = [ex("a Paris", {1: 2.0}), ex("b Paris", {1: 1.0})]
    lucky = ex("c Paris", {1: 0.3})  # a random sequence on which the latent happens to fire
    rest = [ex("d e"), ex("f g")]
    sequences, truth = mix_for_detection(top, [lucky, *rest], seed=3)
    firing = [top[0], top[1], lucky]
    assert sorted(map(id, sequences)) == sorted(map(id, top + [lucky] + rest))
    assert truth == {next(i for i, s in enumerate(sequences, 1) if s is f) for f in firing}
    assert mix_for_detection(top, [lucky, *rest], seed=3)[0] == sequences  # reproducible
    assert mix_for_detection(top, [lucky, *rest], seed=3, threshold=0.5)[1] == truth - {sequences.index(lucky) + 1}


# -- the offline client -------------------------------------------------------------------------


def offline_explanation(examples) -> str:
    return OfflineClient().complete(explanation_prompt(examples))


def test_offline_explains_a_single_token_latent():
    examples = [ex("we went to Paris", {3: 4.0}), ex("Paris is big", {0: 3.0}), ex("near Paris and Rome", {1: 2.5}),
                ex("a Paris day", {1: 1.0})]
    assert offline_explanation(examples) == 'Fires on the token " Paris" (4 of 4 highlighted tokens).'


def test_offline_explains_a_previous_token_latent():
    # The tokens differ (" cat", " dog", " sun") but the word before them is always " the".
    examples = [ex("see the cat", {2: 2.0}), ex("the dog ran", {1: 1.0}), ex("under the sun", {2: 3.0})]
    assert offline_explanation(examples) == 'Fires on the token right after " the" (3 of 3 highlighted tokens).'


def test_offline_previous_word_stops_at_punctuation():
    # After " red,", " big,", " one,": the previous token is "," each time, which covers 3 of 3
    # with one item, while the tokens " blue", " small", " two" need three.
    examples = [Example([" red", ",", " blue"], [0, 0, 1]), Example([" big", ",", " small"], [0, 0, 2]),
                Example([" one", ",", " two"], [0, 0, 3])]
    assert offline_explanation(examples) == 'Fires on the token right after "," (3 of 3 highlighted tokens).'


def test_offline_explanation_names_tokens_until_they_cover_most_highlights():
    # " Paris" 3 of 5 = 0.6 < 0.8, with " Lyon" 4 of 5 = 0.8: two tokens; the words before vary.
    examples = [ex("in Paris", {1: 3}), ex("to Paris", {1: 3}), ex("from Paris", {1: 3}), ex("at Lyon", {1: 2}),
                ex("by Rome", {1: 1})]
    assert offline_explanation(examples) == 'Fires on the tokens " Paris" or " Lyon" (4 of 5 highlighted tokens).'


def test_offline_explanation_quotes_odd_tokens_and_handles_no_highlight():
    assert offline_explanation([Example([" He", " said", ' "', " hi", '."'], [0, 0, 0, 0, 2])]) == \
        'Fires on the token ".\\"" (1 of 1 highlighted tokens).'
    assert offline_explanation([ex("a b")]) == "No token is highlighted in these examples."


def test_offline_detection_reads_quoted_tokens_as_words():
    client = OfflineClient()
    sequences = ["I like Paris", "I like Parisian food", "Rome is far", "Paris!"]
    # " Paris" must end at a word boundary: not inside "Parisian"; "Paris!" has no space before it.
    assert client.complete(detection_prompt('Fires on " Paris".', sequences)) == "1"
    assert client.complete(detection_prompt('Fires on "Paris".', sequences)) == "1, 4"
    after = ["the cat", "go to the", "there is", "see the sun"]
    assert client.complete(detection_prompt('Fires on the token right after " the".', after)) == "4"
    assert client.complete(detection_prompt('Fires on the token right after "the".', after)) == "1, 4"
    quotes = ['He said, "hi."', "He said hi."]
    assert client.complete(detection_prompt('Fires on the token ".\\""', quotes)) == "1"
    assert client.complete(detection_prompt("Fires on French city names.", sequences)) == "None"


def test_offline_client_refuses_other_prompts():
    with pytest.raises(ValueError, match="only the prompts"):
        OfflineClient().complete([{"role": "user", "content": "Hello"}])
    with pytest.raises(ValueError, match="role"):
        OfflineClient().complete([{"role": "robot", "content": "Hello"}])


def test_offline_end_to_end_single_token_latent_scores_perfectly():
    # The latent fires on " Paris" and nowhere else.
    contexts = ["we flew to Paris", "Paris was rainy", "the road to Paris is long", "I love Paris in spring",
                "Paris and London", "maps of Paris", "her Paris flat", "from Paris with love",
                "Paris again", "a Paris cafe", "north of Paris", "Paris at night", "visit Paris soon", "old Paris"]
    top = [ex(c, {c.split().index("Paris"): 5.0 - 0.1 * i}) for i, c in enumerate(contexts)]
    others = [ex(c) for c in ["the cat sat", "Rome is old", "a parish church", "we ate bread", "London bridge",
                              "the sun rose", "Parisian style", "ten apples"]]
    client = OfflineClient()
    explanation = explain(top[:10], client)
    assert explanation == 'Fires on the token " Paris" (10 of 10 highlighted tokens).'
    sequences, truth = mix_for_detection(top[10:], others, seed=0)
    assert len(truth) == 4
    scores = detection_scores(detect(explanation, sequences, client), truth, len(sequences))
    assert (scores.accuracy, scores.f1) == (1.0, 1.0)


def test_offline_end_to_end_scattered_latent_scores_low():
    # A latent that fires once per example on a different token each time: no token or previous
    # word repeats, so the explainer names the first three seen (" apple", " blue", " chair"),
    # which cover 3 of 10 highlights; the held-out examples fire on other words, so nothing is
    # predicted: 8 of 12 right (the random ones), recall 0.
    words = ["apple", "blue", "chair", "dance", "eagle", "fifty", "green", "house", "ivory", "jelly"]
    top = [ex(f"w{i} {w}", {1: 3.0 - 0.1 * i}) for i, w in enumerate(words)]
    explanation = explain(top, OfflineClient())
    assert explanation == 'Fires on the tokens " apple", " blue" or " chair" (3 of 10 highlighted tokens).'
    held_out = [ex(f"v{i} {w}", {1: 1.0}) for i, w in enumerate(["kite", "lemon", "mango", "night"])]
    others = [ex(f"u{i} plain words") for i in range(8)]
    sequences, truth = mix_for_detection(held_out, others, seed=1)
    scores = detection_scores(detect(explanation, sequences, OfflineClient()), truth, len(sequences))
    assert scores.accuracy == pytest.approx(8 / 12)
    assert (scores.recall, scores.f1) == (0.0, 0.0)


# -- scoring against the planted concepts -------------------------------------------------------


FRANCE = {"country:France"}
LABELLED = [ex("I like Paris", {2: 2.0}, {2: FRANCE}), ex("Lyon is big", concepts={0: FRANCE}),
            ex("Rome is far", concepts={0: {"country:Italy"}}), ex("Paris and Lyon", {0: 2.0}, {0: FRANCE, 2: FRANCE})]


def test_concept_truth():
    assert concept_truth(LABELLED, "country:France") == {1, 2, 4}
    assert concept_truth(LABELLED, "country:Italy") == {3}
    assert concept_truth(LABELLED, "country:Spain") == set()


def test_score_against_concept():
    client = OfflineClient()
    # The " Paris" explanation predicts 1 and 4 against the France sequences 1, 2, 4:
    # tp 2, fp 0, fn 1 (Lyon), tn 1 (Rome): accuracy 3/4, precision 1, recall 2/3, F1 0.8.
    s = score_against_concept('Fires on the token " Paris".', LABELLED, "country:France", client)
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 0, 1, 1)
    assert s.accuracy == 0.75 and s.precision == 1.0
    assert s.recall == pytest.approx(2 / 3) and s.f1 == pytest.approx(0.8)
    # A fluent explanation of the wrong thing: it predicts only sequence 3, which is not French.
    s = score_against_concept('Fires on Italian places such as "Rome".', LABELLED, "country:France", client)
    assert (s.accuracy, s.f1) == (0.0, 0.0)


# -- corpus helpers -----------------------------------------------------------------------------


VOCAB = ["<pad>", "<bos>", " the", " Paris", " is", " in", " France", " Rome", " big", " old"]


def tiny_corpus():
    """3 documents, BOS first and padding after, in the LabelledCorpus layout."""
    from utils.world.concepts import LabelledCorpus  # the corpus type of world v2's labelled_corpus

    docs = [[2, 3, 4, 8], [7, 4, 9, 5, 2, 3], [2, 6, 4, 8, 5]]
    tokens = torch.zeros(3, 8, dtype=torch.long)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    for i, d in enumerate(docs):
        tokens[i, 0] = 1
        tokens[i, 1:len(d) + 1] = torch.tensor(d)
        mask[i, 1:len(d) + 1] = True
    concepts = ["city:Paris", "country:France"]
    labels = torch.zeros(3, 8, 2, dtype=torch.bool)
    labels[..., 0] = tokens == 3
    labels[..., 1] = (tokens == 3) | (tokens == 6)
    acts = torch.zeros(3, 8)
    acts[0, 2] = 2.0  # " Paris" in document 0
    acts[1, 6] = 5.0  # " Paris" in document 1 (strongest)
    acts[1, 0] = 9.0  # on BOS: must be ignored
    return LabelledCorpus(tokens, concepts, labels, mask), acts


def to_str(ids):
    return [VOCAB[i] for i in ids]


def test_top_examples_windows_around_the_max_token():
    data, acts = tiny_corpus()
    top = top_examples(acts, data, to_str, n=5, window=(2, 1))
    # Only documents 0 and 1 fire. Document 1 first (5.0 at position 6: positions 4-6, the window
    # end 7 is padding); then document 0 (2.0 at position 2: window 1-3, BOS at 0 left out).
    assert [e.where for e in top] == [(1, 4), (0, 1)]
    assert top[0].tokens == (" in", " the", " Paris") and top[0].acts == (0.0, 0.0, 5.0)
    assert top[1].tokens == (" the", " Paris", " is") and top[1].acts == (0.0, 2.0, 0.0)
    assert top[1].concepts == (frozenset(), frozenset({"city:Paris", "country:France"}), frozenset())
    assert len(top_examples(acts, data, to_str, n=1)) == 1


def test_random_examples_skip_the_top_documents():
    data, acts = tiny_corpus()
    top = top_examples(acts, data, to_str, n=2)
    rand = random_examples(acts, data, to_str, n=3, length=3, seed=0, exclude=top)
    assert len(rand) == 1 and rand[0].where[0] == 2  # only document 2 is left
    doc, lo = rand[0].where
    assert 1 <= lo <= 3 and rand[0].tokens == tuple(to_str(data.tokens[doc, lo:lo + 3].tolist()))
    # Document 2 is BOS " the" " France" " is" " big" " in": " France" (position 2) is in the window iff lo <= 2.
    assert rand[0].has_concept("country:France") == (lo <= 2)
    assert random_examples(acts, data, to_str, n=3, length=3, seed=0, exclude=top) == rand  # reproducible


def test_silent_random_examples_are_windows_where_the_latent_never_fires():
    """Worked out by hand on the tiny corpus: document 0 fires at position 2 only (real tokens 1-4),
    document 1 at position 6 only (real tokens 1-6), document 2 never."""
    data, acts = tiny_corpus()
    for seed in range(6):
        rand = random_examples(acts, data, to_str, n=3, length=2, seed=seed, silent=True)
        where = dict(r.where for r in rand)
        assert sorted(where) == [0, 1, 2] and all(max(r.acts) == 0 for r in rand)
        assert where[0] == 3 and 1 <= where[1] <= 4 and 1 <= where[2] <= 4  # the only quiet pair of doc 0 is 3-4
    # length 4: document 0 has no quiet window, so only two come back; document 1's must end before position 6
    rand = random_examples(acts, data, to_str, n=3, length=4, seed=0, silent=True)
    assert sorted(r.where[0] for r in rand) == [1, 2] and dict(r.where for r in rand)[1] in (1, 2)
    # without silent, the same call keeps a window that fires (document 0's only window contains position 2)
    assert any(max(r.acts) > 0 for r in random_examples(acts, data, to_str, n=3, length=4, seed=0))


def test_corpus_helpers_bad_input():
    data, acts = tiny_corpus()
    with pytest.raises(ValueError, match=r"shape \(3, 8\)"):
        top_examples(acts[..., None].expand(3, 8, 4), data, to_str)
    with pytest.raises(ValueError, match="at least 1"):
        top_examples(acts, data, to_str, n=0)


def test_window_matches_the_dashboard():
    from utils.autointerp import WINDOW
    from utils.dashboard import WINDOW as DASHBOARD_WINDOW

    assert WINDOW == DASHBOARD_WINDOW


# -- clients: environment and HTTP --------------------------------------------------------------


ENV_VARS = ("AUTOINTERP_PROVIDER", "AUTOINTERP_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL")


@pytest.fixture
def env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_client_from_env_without_key_is_offline(env):
    assert isinstance(client_from_env(), OfflineClient)
    env.setenv("AUTOINTERP_MODEL", "some-model")  # a model alone calls nothing
    assert isinstance(client_from_env(), OfflineClient)


def test_client_from_env_picks_the_client_of_the_key(env):
    env.setenv("AUTOINTERP_MODEL", "gpt-test")
    env.setenv("OPENAI_API_KEY", "sk-secret")
    client = client_from_env()
    assert isinstance(client, OpenAIClient)
    assert (client.model, client.api_key, client.base_url) == ("gpt-test", "sk-secret", "https://api.openai.com/v1")
    assert "sk-secret" not in repr(client)
    env.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    assert client_from_env().base_url == "http://localhost:8000/v1"

    env.delenv("OPENAI_API_KEY")
    env.setenv("ANTHROPIC_API_KEY", "ak-secret")
    client = client_from_env()
    assert isinstance(client, AnthropicClient)
    assert (client.model, client.api_key, client.base_url) == ("gpt-test", "ak-secret", "https://api.anthropic.com")


def test_client_from_env_messages(env):
    env.setenv("OPENAI_API_KEY", "sk-secret")
    with pytest.raises(ValueError, match="OPENAI_API_KEY is set.*AUTOINTERP_MODEL is not"):
        client_from_env()
    env.setenv("AUTOINTERP_MODEL", "m")
    env.setenv("ANTHROPIC_API_KEY", "ak-secret")
    with pytest.raises(ValueError, match="both OPENAI_API_KEY and ANTHROPIC_API_KEY"):
        client_from_env()
    env.setenv("AUTOINTERP_PROVIDER", "anthropic")
    assert isinstance(client_from_env(), AnthropicClient)
    env.setenv("AUTOINTERP_PROVIDER", "offline")
    assert isinstance(client_from_env(), OfflineClient)
    env.setenv("AUTOINTERP_PROVIDER", "gemini")
    with pytest.raises(ValueError, match="not one of"):
        client_from_env()
    env.delenv("ANTHROPIC_API_KEY")
    env.setenv("AUTOINTERP_PROVIDER", "anthropic")
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY is not set"):
        client_from_env()


class FakeOpener:
    """Records the request and returns a canned JSON reply (or raises a canned error)."""

    def __init__(self, reply=None, error=None):
        self.reply, self.error, self.requests = reply, error, []

    def __call__(self, request, timeout):
        self.requests.append((request, timeout))
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.reply if isinstance(self.reply, bytes) else json.dumps(self.reply).encode())


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which fire?"}]


def test_openai_client_request_and_reply():
    opener = FakeOpener({"choices": [{"message": {"role": "assistant", "content": "1, 3"}}]})
    client = OpenAIClient("gpt-test", "sk-secret", base_url="https://example.test/v1/", max_tokens=50,
                          timeout=7, opener=opener)
    assert client.complete(MESSAGES) == "1, 3"
    (request, timeout), = opener.requests
    assert request.full_url == "https://example.test/v1/chat/completions" and request.get_method() == "POST"
    assert request.get_header("Authorization") == "Bearer sk-secret"
    assert request.get_header("Content-type") == "application/json"
    assert json.loads(request.data) == {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 50, "temperature": 0.0}
    assert timeout == 7
    # Settings set to None are left out, `extra` goes in (newer OpenAI models want other fields).
    client = OpenAIClient("o-test", "k", max_tokens=None, temperature=None, extra={"max_completion_tokens": 9},
                          opener=opener)
    client.complete(MESSAGES)
    assert json.loads(opener.requests[-1][0].data) == {"model": "o-test", "messages": MESSAGES,
                                                       "max_completion_tokens": 9}


def test_anthropic_client_request_and_reply():
    opener = FakeOpener({"content": [{"type": "text", "text": "Fires on"}, {"type": "text", "text": ' " Paris".'}]})
    client = AnthropicClient("claude-test", "ak-secret", base_url="https://example.test", opener=opener)
    assert client.complete(MESSAGES) == 'Fires on " Paris".'
    (request, _), = opener.requests
    assert request.full_url == "https://example.test/v1/messages"
    assert request.get_header("X-api-key") == "ak-secret"
    assert request.get_header("Anthropic-version") == "2023-06-01"
    assert json.loads(request.data) == {"model": "claude-test", "max_tokens": 200, "temperature": 0.0,
                                        "system": "Be brief.", "messages": [MESSAGES[1]]}


def test_api_clients_run_the_same_pipeline():
    opener = FakeOpener({"choices": [{"message": {"content": "Answer:\n2"}}]})
    client = OpenAIClient("gpt-test", "sk-secret", opener=opener)
    assert detect('Fires on " Paris".', ["a b", "in Paris"], client) == {2}
    user = json.loads(opener.requests[0][0].data)["messages"][1]["content"]
    assert user == 'Explanation: Fires on " Paris".\n\nSequences:\n1. a b\n2. in Paris'


def test_http_error_is_one_clear_line():
    body = io.BytesIO(b'{"error": {"message": "invalid\\n api key"}}')
    error = urllib.error.HTTPError("https://example.test/v1/chat/completions", 401, "Unauthorized", {}, body)
    client = OpenAIClient("gpt-test", "sk-secret", base_url="https://example.test/v1", opener=FakeOpener(error=error))
    with pytest.raises(LLMError) as info:
        client.complete(MESSAGES)
    message = str(info.value)
    assert "\n" not in message and "sk-secret" not in message
    assert message == ("the OpenAI-compatible API at https://example.test/v1/chat/completions answered HTTP 401 "
                       "Unauthorized: invalid api key")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_other_api_failures_are_clear():
    unreachable = AnthropicClient("c", "k", opener=FakeOpener(error=urllib.error.URLError("Name or service not known")))
    with pytest.raises(LLMError, match="could not reach the Anthropic API at https://api.anthropic.com/v1/messages"):
        unreachable.complete(MESSAGES)
    reset = OpenAIClient("m", "k", opener=FakeOpener(error=ConnectionResetError(104, "Connection reset by peer")))
    with pytest.raises(LLMError, match="connection to the OpenAI-compatible API at .* failed: ConnectionResetError"):
        reset.complete(MESSAGES)
    with pytest.raises(LLMError, match="did not answer with JSON"):
        OpenAIClient("m", "k", opener=FakeOpener(b"<html>gateway</html>")).complete(MESSAGES)
    with pytest.raises(LLMError, match="no choices"):
        OpenAIClient("m", "k", opener=FakeOpener({"id": "x"})).complete(MESSAGES)
    with pytest.raises(ValueError, match="non-empty list"):
        OpenAIClient("m", "k", opener=FakeOpener({})).complete([])
