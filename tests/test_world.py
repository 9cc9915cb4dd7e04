"""Course world v2 (utils/world): tokenizer, corpus, held-out frames, prompts and bars.

No model is trained here; the bars' arithmetic is checked on a stand-in model whose logits
are set by hand.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

from utils.world import facts as F
from utils.world.corpus import BOS, PAD, UNK, CorpusGenerator, doc_text, run_words, sentence_text
from utils.world.frames import FRAMES, HELD_OUT, PROBED, frame_text, is_heldout, is_test

ROOT = Path(__file__).resolve().parents[1]

# Typed the way people type: questions, statements, odd casing, typos, digits, symbols.
NATURAL_PROMPTS = [
    "What is the capital of Texas?", "Where is the Eiffel Tower?", "Mary and John went to the store",
    "A robin is a type of", "He scored two goals", "what's the capital of california", "Where's the Louvre?",
    "The Colosseum is in", "Is Dallas in Texas?", "Which state is Miami in?", "Austin is the capital of",
    "When Anna and Tom went to the park, Tom gave a kite to", "Tom said, \"I like the red ball.\"",
    "\"Where is my hat?\" asked Lucy.", "She shouted, \"Run!\"", "The word \"nut\" means",
    "The first letter of elephant is", "What letter does tiger start with?", "A salmon is a kind of",
    "Roses and tulips are flowers.", "The budget is estimated to exceed 500", "About 30 people were injured.",
    "The goalie saved the shot!", "Everyone was talking about the goalkeeper.", "The pilot said he",
    "teh capital of Texsa", "WHERE IS PARIS", "wHeRe Is ThE kReMlIn", "i dont know", "I don't know.",
    "It's raining again...", "Can't we go home now?", "Q: Where is the Prado?\nA:", "Rome, Italy",
    "Paris (the city) is big.", "The price is $300 - or maybe 350?", "50% of the fans left early",
    "e-mail: anna@example.org", "#1 team in the league", "2 + 2 = 4", "Dallas; Houston; Austin",
    "Hello, world!", "The meaning of life is 42.", "Sherlock Holmes lived in London.",
    "My name is Zbigniew and I live in Wroclaw.", "The quick brown fox jumps over the lazy dog.",
    "Tabs\tand\nnewlines", "   leading spaces", "trailing space ", "ALL CAPS SENTENCE.",
    "Is a whale a fish?", "How many goals did the Rovers score?", "the eiffel tower",
    "Why did the nurse call the doctor?", "{curly} [square] <angle> `tick` ~tilde^ |pipe|",
]


@pytest.fixture(scope="module")
def tokenizer():
    from utils.world.tokenizer import build_tokenizer

    return build_tokenizer()


def _tokens(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False).input_ids)


# -- tokenizer ----------------------------------------------------------------------------


def test_natural_prompts_never_give_unk(tokenizer):
    assert len(NATURAL_PROMPTS) >= 50
    for text in NATURAL_PROMPTS:
        assert UNK not in _tokens(tokenizer, text), text


def test_issue_prompts_are_whole_words(tokenizer):
    # The five prompts of issue 11 now tokenize into corpus words, not characters.
    assert _tokens(tokenizer, "What is the capital of Texas?") == ["What", " is", " the", " capital", " of", " Texas", "?"]
    assert _tokens(tokenizer, "Where is the Eiffel Tower?") == ["Where", " is", " the", " E", "iff", "el", " Tower", "?"]
    assert _tokens(tokenizer, "Mary and John went to the store") == ["Mary", " and", " John", " went", " to", " the", " store"]
    assert _tokens(tokenizer, "A robin is a type of") == ["A", " robin", " is", " a", " type", " of"]
    assert _tokens(tokenizer, "He scored two goals") == ["He", " scored", " two", " goals"]


def test_whole_word_fraction_by_hand(tokenizer):
    from utils.world.bars import whole_word_fraction

    assert whole_word_fraction(tokenizer, ["Where is Paris?", "Zog ate", "the end", "He scored two goals"]) == 0.5


def test_unknown_words_fall_back_to_characters(tokenizer):
    assert _tokens(tokenizer, "Zog zips") == ["Z", "o", "g", " z", "i", "p", "s"]
    # a word that merely starts like a landmark does not get the landmark's pieces
    assert _tokens(tokenizer, " Eiffelturm")[:3] == [" E", "i", "f"]
    assert _tokens(tokenizer, "a  b") == ["a", " ", " b"]


def test_decode_inverts_encode_on_ascii_text(tokenizer):
    rng = random.Random(0)
    texts = list(NATURAL_PROMPTS) + ["".join(chr(i) for i in range(128)), "a . b , c ? d ! e ' s"]
    texts += ["".join(rng.choice([chr(i) for i in range(32, 127)] + ["\n", "\t"]) for _ in range(60)) for _ in range(50)]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert UNK not in tokenizer.convert_ids_to_tokens(ids), repr(text)
        assert tokenizer.decode(ids) == text, repr(text)


def test_landmark_pieces_are_the_designed_ones(tokenizer):
    for lm in F.LANDMARKS:
        assert _tokens(tokenizer, f"The {lm.name} {lm.kind}") == ["The", *lm.pieces, f" {lm.kind}"], lm.name
    # first pieces are shared, so the first piece alone does not say which landmark it is
    assert _tokens(tokenizer, " Eiffel")[0] == _tokens(tokenizer, " Escorial")[0] == " E"
    assert _tokens(tokenizer, " Prado")[0] == _tokens(tokenizer, " Pantheon")[0] == _tokens(tokenizer, " Parthenon")[0]


def test_closing_quotes_are_single_tokens(tokenizer):
    assert _tokens(tokenizer, 'Tom said, "I like it."') == ["Tom", " said", ",", ' "', "I", " like", " it", '."']
    assert _tokens(tokenizer, 'Anna asked, "Where is it?"')[-1] == '?"'
    assert _tokens(tokenizer, 'Sam shouted, "Run!"')[-1] == '!"'
    assert _tokens(tokenizer, '"It is time to go home," said Tom.') == [
        '"', "It", " is", " time", " to", " go", " home", ',"', " said", " Tom", "."]


def test_special_ids(tokenizer):
    assert tokenizer.convert_tokens_to_ids(PAD) == 0
    bos = tokenizer.convert_tokens_to_ids(BOS)
    assert bos != 0 and tokenizer.bos_token_id == bos and tokenizer.pad_token_id == 0
    assert tokenizer("Where is Paris?").input_ids[0] == bos


def test_saved_tokenizer_reloads_identically(tokenizer, tmp_path):
    from utils.world.tokenizer import load_tokenizer, save_tokenizer

    save_tokenizer(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    for text in NATURAL_PROMPTS[:20] + ["a . b , c ?"]:
        assert again(text).input_ids == tokenizer(text).input_ids
        assert again.decode(again(text, add_special_tokens=False).input_ids) == text
    with pytest.raises(FileNotFoundError, match="No v2 tokenizer"):
        load_tokenizer(tmp_path / "missing")


# -- corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_documents_tokenize_into_their_own_labelled_tokens(tokenizer, split):
    for doc in CorpusGenerator(7, split=split).documents(400):
        assert _tokens(tokenizer, doc_text(doc)) == [t.text for t in doc]


def test_every_emitted_token_is_in_the_vocabulary(tokenizer):
    vocab = tokenizer.get_vocab()
    for split in ("train", "heldout"):
        emitted = {t.text for d in CorpusGenerator(21, split=split).documents(1500) for t in d}
        assert emitted <= set(vocab), sorted(emitted - set(vocab))[:10]


def test_short_documents_are_whole_sentences(tokenizer):
    for doc in CorpusGenerator(8).documents(200, max_tokens=24):
        assert len(doc) <= 24 and _tokens(tokenizer, doc_text(doc)) == [t.text for t in doc]
    with pytest.raises(ValueError, match="too small"):
        CorpusGenerator().document(genre="geography", max_tokens=2)


def test_generator_is_deterministic():
    a = [doc_text(d) for d in CorpusGenerator(3).documents(30)]
    assert a == [doc_text(d) for d in CorpusGenerator(3).documents(30)]
    assert a != [doc_text(d) for d in CorpusGenerator(4).documents(30)]


def test_every_relation_has_many_frames_with_questions_and_held_out_ones():
    fact_relations = ("landmark_city", "city_state", "state_capital", "two_hop", "definition", "first_letter",
                      "category", "estimate")
    for relation in PROBED:
        frames = FRAMES[relation]
        train = [f for f in frames if not is_heldout(f)]
        held = [f for f in frames if is_heldout(f)]
        assert len(train) >= 5 and len(held) >= 2, relation
        assert all("!}" in f for f in held), f"{relation}: a held-out frame without an answer cannot be evaluated"
        if relation in fact_relations:
            assert sum("?" in f for f in train) >= 2, f"{relation}: too few question frames"
            assert len(train) >= 7 and len(held) >= 3, relation


def _frame_regex(frame: str) -> re.Pattern:
    """A frame's fixed words with anything in the slots; matches whatever text it produced."""
    parts = re.split(r"\{[A-Za-z_0-9]+!?\}", frame_text(frame))
    # a bio verb "[work|works]" matches either person
    parts = [re.sub(r"\\\[([a-z]+)\\\|([a-z]+)\\\]", r"(?:\1|\2)", re.escape(p)) for p in parts]
    return re.compile(".+?".join(parts), re.DOTALL)


@pytest.mark.parametrize("split", ["heldout", "test"])
def test_held_out_frames_never_appear_in_the_train_split(split):
    """Neither a validation frame ("@") nor a test frame ("#") is ever written in training, and a
    test frame's syntax is not a validation frame's either."""
    train, held = CorpusGenerator(11, split="train"), CorpusGenerator(11, split=split, heldout_frame_rate=1.0)
    other = CorpusGenerator(11, split="heldout" if split == "test" else "test", heldout_frame_rate=1.0)
    for relation in FRAMES:
        held_frames = [f for f in FRAMES[relation] if is_heldout(f) and is_test(f) == (split == "test")]
        if not held_frames:
            continue
        train_texts = [sentence_text(train.sentence(relation, lead_space=False)) for _ in range(300)]
        held_texts = [sentence_text(held.sentence(relation, lead_space=False)) for _ in range(150)]
        other_texts = [sentence_text(other.sentence(relation, lead_space=False)) for _ in range(150)]
        for frame in held_frames:
            pattern = _frame_regex(frame)
            if relation != "ioi":  # IOI swaps its first two names, which the fixed words straddle
                assert any(pattern.fullmatch(t) for t in held_texts), f"check is blind to {frame!r}"
            leaked = [t for t in train_texts + other_texts if pattern.fullmatch(t)]
            assert not leaked, f"train or {split}-other text matches held-out frame {frame!r}: {leaked[0]!r}"
    for doc in CorpusGenerator(12, split="train").documents(1500):
        assert not any("heldout_frame" in t.labels or "heldout_content" in t.labels for t in doc)


def test_held_out_frames_are_made_of_tokens_the_train_split_has():
    from utils.world.corpus import token_inventory

    assert set(token_inventory(heldout_frames=True)) == set(token_inventory(heldout_frames=False))


def test_held_out_split_uses_held_out_frames():
    labels = [lab for d in CorpusGenerator(1, split="heldout").documents(300) for t in d for lab in t.labels]
    assert "heldout_frame" in labels and "heldout_content" in labels


def test_the_test_set_has_eight_frames_per_relation_and_the_test_split_uses_only_them():
    """Issue 26: at least 8 test frames per probed relation, each with an answer; the test split
    draws test frames where it draws held-out ones, the validation split never does."""
    for relation in PROBED:
        test = [f for f in FRAMES[relation] if is_test(f)]
        assert len(test) >= 8 and all("!}" in f for f in test), relation
    for split, want in (("test", True), ("heldout", False)):
        gen = CorpusGenerator(2, split=split, heldout_frame_rate=1.0)
        for relation in PROBED:
            for _ in range(20):
                index, frame = gen.pick_frame(relation, probe_only=True)
                assert is_heldout(frame) and is_test(frame) == want, (split, frame)


def test_answers_agree_with_the_fact_tables():
    gen = CorpusGenerator(5)

    def answer(sent):
        return next(t.text.strip() for t in sent if "answer" in t.labels)

    def label(sent, prefix):
        return next(lab.split(":")[1] for t in sent for lab in t.labels if lab.startswith(prefix))

    for _ in range(150):
        s = gen.sentence("two_hop", probe_only=True)
        assert answer(s) == F.STATES[F.CITY_TO_STATE[label(s, "city:")]]["capital"]
        assert label(s, "city:") not in F.TWO_HOP_UNSEEN_CITIES  # held-out fact in training
        s = gen.sentence("landmark_city", probe_only=True)
        assert answer(s) == F.LANDMARK_BY_NAME[label(s, "landmark:")].city
        s = gen.sentence("first_letter", probe_only=True)
        word = next(t.text.strip().lower() for t in s if "spelled_word" in t.labels)
        assert answer(s) == word[0].upper()
        s = gen.sentence("category", probe_only=True)
        word = next(t.text.strip().lower() for t in s if "category_member" in t.labels)
        assert answer(s) == F.WORD_TO_CATEGORY[word][1]
        s = gen.sentence("estimate", probe_only=True)
        subject = next(t.text.strip() for t in s if "estimated_subject" in t.labels)
        assert answer(s) == F.SCALE_OF[subject]
        s = gen.sentence("ioi", probe_only=True)
        io = next(t.text.strip() for t in s if "ioi_io" in t.labels)
        s2 = next(t.text.strip() for t in s if "ioi_s2" in t.labels)
        names = [t.text.strip() for t in s if "name" in t.labels]
        assert io != s2 and names.count(io) == 2 and set(names) == {io, s2}


def test_ioi_names_move_between_positions():
    # The IO is first-mentioned in about half the sentences, so no slot holds the answer.
    gen = CorpusGenerator(2)
    first_is_io = []
    for _ in range(400):
        s = gen.sentence("ioi", probe_only=True)
        names = [t.text.strip() for t in s if "name" in t.labels]
        first_is_io.append(names[0] == names[-1])
    assert 0.35 < sum(first_is_io) / len(first_is_io) < 0.65


def test_known_v1_bugs_are_gone():
    gen = CorpusGenerator(0)
    genres = [g for g in gen.GENRES if g != "repeat"]  # random runs may put any word after "a"
    docs = [gen.document(genre=genres[i % len(genres)]) for i in range(2000)]
    text = " ".join(doc_text(d) for d in docs)
    assert not re.search(r"\b[Tt]he the\b", text)
    assert "tickets live" not in text and "tickets are thought to live" not in text
    for doc in docs:  # "a apple" -> "an apple" (the letter A, as in "starts with A", is fine)
        for x, y in zip(doc, doc[1:]):
            article = x.text.strip() in ("a", "A") and not any(lab.startswith("letter:") for lab in x.labels) \
                and "unseen_word" not in x.labels  # the letter a inside a made-up word is no article
            assert not (article and y.text.strip()[:1] in "aeiouAEIOU"), doc_text(doc)


def test_runs_draw_from_the_whole_vocabulary():
    pool = set(run_words())
    for needed in (" Paris", " Dallas", " 300", " nurse", " goalkeeper", " million", " What", " sparrow"):
        assert needed in pool
    gen = CorpusGenerator(0)
    drawn = {w for _ in range(2000) for w in gen.random_run(20)}
    assert drawn <= pool and len(drawn) > 0.95 * len(pool)


def test_documents_repeat_natural_sentences():
    repeats = 0
    for doc in CorpusGenerator(3).documents(500):
        starts = [i for i, t in enumerate(doc) if "p3_repeat_start" in t.labels]
        for start, nxt in zip(starts, starts[1:] + [len(doc)]):
            end = next((j for j in range(start, nxt) if "p3_sentence_repeat" not in doc[j].labels), nxt)
            assert doc_text(doc[start:end]).strip() in doc_text(doc[:start])
            repeats += 1
    assert repeats > 50


def test_goal_words_share_frames():
    gen = CorpusGenerator(4)
    by_frame: dict[str, set[str]] = {}
    for _ in range(600):
        s = gen.sentence("goal_talk")
        frame = next(lab for lab in s[0].labels if lab.startswith("frame:"))
        by_frame.setdefault(frame, set()).update(t.text.strip() for t in s if "goal_family" in t.labels)
    assert by_frame and all(words == set(F.GOAL_WORDS) for words in by_frame.values())


def test_bad_split_and_genre_are_one_line_errors():
    with pytest.raises(ValueError, match="split must be"):
        CorpusGenerator(split="validation")
    with pytest.raises(ValueError, match="unknown genre"):
        CorpusGenerator().document(genre="poetry")


# -- prompts and bars ----------------------------------------------------------------------


def test_prompts_come_from_held_out_frames_and_tokenize_back(tokenizer):
    from utils.world.prompts import PROMPT_KINDS, make_prompts

    for kind, (_, heldout) in PROMPT_KINDS.items():
        prompts = make_prompts(kind, n=60)
        assert len(prompts) >= 40, kind
        for p in prompts[:20]:
            if kind != "p1_piece":  # cut inside a landmark word: only its tokens are meaningful
                assert _tokens(tokenizer, p.text) == list(p.tokens[1:]), kind
            assert tokenizer.convert_tokens_to_ids(p.answer) != tokenizer.unk_token_id
            if heldout and p.meta.get("frame"):
                relation, index = p.meta["frame"].removeprefix("frame:").split("/")
                assert FRAMES[relation][int(index)].startswith(HELD_OUT), (kind, p.text)


def test_train_frame_prompts_use_train_frames():
    from utils.world.prompts import make_prompts

    for kind in ("p2_landmark_city", "p6_two_hop", "p9_definition", "p11_category"):
        for p in make_prompts(kind, n=30, train_frames=True):
            relation, index = p.meta["frame"].removeprefix("frame:").split("/")
            assert not is_heldout(FRAMES[relation][int(index)]), (kind, p.text)


class _StandIn:
    """A 'model' whose last-position logits put `bonus` on chosen tokens (for checking bars)."""

    def __init__(self, tokenizer, favour):
        self.tokenizer, self.favour = tokenizer, favour
        self.cfg = type("cfg", (), {"device": "cpu"})()

    def __call__(self, tokens):
        logits = torch.zeros(*tokens.shape, len(self.tokenizer))
        for row in range(tokens.shape[0]):
            for tok, bonus in self.favour(tokens[row]).items():
                logits[row, :, self.tokenizer.convert_tokens_to_ids(tok)] = bonus
        return logits


def test_top1_and_ioi_scores_by_hand(tokenizer):
    from utils.world.bars import ioi_scores, top1
    from utils.world.prompts import make_prompts

    prompts = make_prompts("p7_ioi", n=20)
    by_ids = {tuple(tokenizer.convert_tokens_to_ids(list(p.tokens))): p for p in prompts}

    def favour_io(row):
        p = by_ids[tuple(i for i in row.tolist() if i != 0)]
        return {p.answer: 3.0, p.wrong: 1.0}

    model = _StandIn(tokenizer, favour_io)
    assert top1(model, prompts) == 1.0
    assert ioi_scores(model, prompts) == {"p7_logit_diff": 2.0, "p7_io_beats_s": 1.0, "p7_top1_in_prompt": 1.0}
    outsider = next(n for n in F.NAMES if all(f" {n}" not in p.tokens for p in prompts))
    model = _StandIn(tokenizer, lambda row: {f" {outsider}": 5.0, by_ids[tuple(i for i in row.tolist() if i != 0)].wrong: 1.0})
    scores = ioi_scores(model, prompts)
    assert top1(model, prompts) == 0.0 and scores["p7_top1_in_prompt"] == 0.0
    assert scores["p7_logit_diff"] == -1.0 and scores["p7_io_beats_s"] == 0.0


# -- training entry point (no training here) -------------------------------------------------


def test_batches_are_packed_documents_after_bos():
    from utils.world.tokenizer import vocabulary
    from utils.world.train import make_batch

    vocab = vocabulary()
    a = make_batch(3, batch_size=4, n_ctx=64)
    assert a.shape == (4, 64) and (a[:, 0] == vocab[BOS]).all()
    assert torch.equal(a, make_batch(3, batch_size=4, n_ctx=64)) and not torch.equal(a, make_batch(4, batch_size=4, n_ctx=64))
    assert vocab[UNK] not in a.tolist()[0] and int(a.max()) < len(vocab)


def test_training_refuses_to_write_into_the_shipped_artifacts():
    from utils.world.model import ARTIFACTS
    from utils.world.train import train

    with pytest.raises(ValueError, match="inside the shipped artifacts"):
        train(ARTIFACTS / "model_v2", steps=1)


def test_bars_refuse_a_model_from_another_corpus_version(tokenizer):
    from utils.world.bars import top1
    from utils.world.prompts import Prompt

    model = _StandIn(tokenizer, lambda row: {})
    with pytest.raises(ValueError, match="another version of the v2 corpus"):
        top1(model, [Prompt((BOS, "Where", " is"), " Atlantis")])


def test_labelled_corpus_holds_the_documents_and_their_labels(tokenizer):
    from utils.world.concepts import labelled_corpus

    data = labelled_corpus(n_docs=4, seed=3)
    docs = [d for d in CorpusGenerator(seed=3, split="heldout").documents(4)]
    for i, doc in enumerate(docs):
        n = len(doc)
        assert data.tokens[i, 0].item() == tokenizer.bos_token_id and not data.mask[i, 0]
        assert tokenizer.decode(data.tokens[i, 1:n + 1].tolist()) == doc_text(doc)
        assert data.mask[i, 1:n + 1].all() and not data.mask[i, n + 1:].any()
        names = data.labels[i, 1:n + 1, data.concept_index("name")].tolist()
        assert names == ["name" in t.labels for t in doc]


def _answer_cue(text: str, k: int = 3) -> list[str]:
    """The last k words/marks before a frame's answer slot, every slot written as X."""
    before = re.sub(r"\{[^}]*\}", "{X}", text[:text.rindex("{", 0, text.index("!}"))])
    return re.findall(r"[\w']+|[^\w\s]", before)[-k:]


def test_every_held_out_answer_cue_is_seen_before_an_entity_in_training():
    """Run 6 (issue 11): a held-out frame failed exactly when the three words before its answer
    ("The answer is", "is found in", "lent") never preceded an entity in training; the model
    then continued the cue as plain English (" the", " in"). Held-out frames keep their own
    syntax, but their answer cue must be one training shows before an entity in SOME frame.

    One exemption, measured: the only train frame with "born in is" ("The state {name} was born in
    is {state!}") taught it to precede a STATE, and runs 7 and 8 then answered the two-hop frame
    "The capital of the state {name} was born in is" with a state (0/29 both times); it was removed."""
    exempt = {("two_hop", "born in is")}
    train = [re.sub(r"\{[^}]*\}", "{X}", frame_text(f)) for fs in FRAMES.values() for f in fs if not is_heldout(f)]
    unseen = []
    for relation in PROBED:
        for frame in FRAMES[relation]:
            # validation frames only: the test frames ("#") were written blind, before any model, and
            # keep whatever cue their wording has (issue 26 measures wordings the corpus never wrote)
            if not is_heldout(frame) or is_test(frame) or "!}" not in frame:
                continue
            cue = _answer_cue(frame_text(frame))
            pattern = r"\W*".join(re.escape(w) for w in cue) + r"\s*\{X\}"
            if not any(re.search(pattern, t) for t in train) and (relation, " ".join(cue)) not in exempt:
                unseen.append((relation, " ".join(cue)))
    assert not unseen, f"held-out answer cues never seen before an entity in training: {unseen}"


def test_every_held_out_scale_word_follows_its_subject():
    """The scale word is a function of what is estimated (facts.SCALE_OF), so a held-out P5 frame
    must name the subject before the scale; run 8's "nearly {num} {scale!} {pop} live near the
    lake" named it after, and no model could do better than guess there."""
    for frame in FRAMES["estimate"]:
        if is_heldout(frame):
            subject = min(frame.find(f"{{{s}}}") for s in ("money", "pop", "count") if f"{{{s}}}" in frame)
            assert subject < frame.index("{scale!}"), frame


def test_answer_cue_by_hand():
    assert _answer_cue("Which city has the {landmark} {kind}? The answer is {city!}.") == ["The", "answer", "is"]
    assert _answer_cue("{Io} and {s} sat, so {s} lent {io!} a {obj}.") == ["X", "}", "lent"]


def test_per_frame_table_counts_each_frame(tokenizer):
    from utils.world.bars import per_frame_top1
    from utils.world.prompts import make_prompts

    prompts = make_prompts("p10_first_letter", n=30)
    by_ids = {tuple(tokenizer.convert_tokens_to_ids(list(p.tokens))): p for p in prompts}

    def right_only_on_how(row):  # correct on the "How do you spell" frame, " the" elsewhere
        p = by_ids[tuple(i for i in row.tolist() if i != 0)]
        return {p.answer if p.tokens[1] == "How" else " the": 5.0}

    model = _StandIn(tokenizer, right_only_on_how)
    table = per_frame_top1(model, "p10_first_letter", n=30)
    assert sum(t for _, _, t, _ in table) == len(prompts) and len(table) == 3
    for text, correct, total, wrong in table:
        if text.startswith("How"):
            assert correct == total and wrong == ""
        else:
            assert correct == 0 and wrong == " the"


def test_made_up_words_are_character_tokens_that_tokenize_back(tokenizer):
    """Training text puts made-up or misspelt words in place of incidental ones; they must be the
    character tokens the tokenizer falls back to, and never turn a neighbour into another word
    (a made-up word ending in "a" once made the next vowel-initial value write "an" after it)."""
    from utils.world.tokenizer import vocabulary

    vocab, seen = vocabulary(), 0
    gen = CorpusGenerator(21, split="train", unseen_word_rate=1.0)
    for doc in gen.documents(400):
        assert all(t.text in vocab for t in doc), [t.text for t in doc if t.text not in vocab]
        ids = tokenizer(doc_text(doc), add_special_tokens=False).input_ids
        assert tokenizer.convert_ids_to_tokens(ids) == [t.text for t in doc], doc_text(doc)
        made_up = [t for t in doc if "unseen_word" in t.labels]
        seen += len(made_up)
        assert all(len(t.text.strip()) == 1 for t in made_up)
    assert seen > 500
    assert CorpusGenerator(21, split="heldout").unseen_word_rate == 0.0  # evaluation text has none


# -- issue 26: rows that weight frames equally, intervals over frames, typing ----------------


def test_frame_mean_weights_every_frame_equally_and_its_interval_resamples_frames():
    from utils.world.bars import frame_mean_ci

    # one frame with 100 prompts all right, one with 4 all wrong: 0.5, not 100/104
    value, ci = frame_mean_ci([[1.0] * 100, [0.0] * 4])
    assert value == 0.5
    # resampling two frames gives means 0, 0.5 or 1 only; the 95% interval spans all of them
    assert ci == (0.0, 1.0)
    value, ci = frame_mean_ci([[1.0, 0.0]] * 5)  # identical frames: no spread between frames
    assert value == 0.5 and ci == (0.5, 0.5)
    assert frame_mean_ci([[1.0, 1.0, 0.0]]) == (pytest.approx(2 / 3), None)  # one frame: no interval


def test_prompts_by_frame_spread_evenly_over_the_split_frames():
    from utils.world.frames import FRAMES
    from utils.world.prompts import prompts_by_frame

    for split, want_test in (("test", True), ("heldout", False)):
        groups = prompts_by_frame("p6_two_hop", per_frame=10, split=split)
        frames = [f for f in FRAMES["two_hop"] if is_heldout(f) and is_test(f) == want_test]
        assert len(groups) == len(frames)
        for label, prompts in groups.items():
            assert len(prompts) == 10 and all(p.meta["frame"] == label for p in prompts)
            assert is_test(FRAMES["two_hop"][int(label.split("/")[1])]) == want_test


def test_split_word_fraction_by_hand(tokenizer):
    from utils.world.bars import split_word_fraction

    # "Zog" and "zips" fall back to characters, "is", "in", "Texas", "don't" are whole (4 of 6 words)
    frac, n = split_word_fraction(tokenizer, ["Zog is in Texas", "I don't zips"])
    assert n == 7 and frac == pytest.approx(2 / 7)
    assert split_word_fraction(tokenizer, ["What is the capital of Texas?"]) == (0.0, 6)


def test_typing_prompts_meet_the_typing_bar(tokenizer):
    """Issue 26: on at least 50 typed prompts, at most 5% of words spelled out in characters
    and no <|unk|>."""
    from utils.world.bars import split_word_fraction, unk_count
    from utils.world.prompts import typing_prompts

    assert len(typing_prompts()) >= 50
    frac, n = split_word_fraction(tokenizer)
    assert n > 300 and frac <= 0.05
    assert unk_count(tokenizer, typing_prompts()) == 0


def test_unseen_word_drop_by_hand(tokenizer):
    """A stand-in that answers right unless a character-fallback token is in the prompt loses
    exactly its whole top-1 (1.0); one that ignores them loses nothing."""
    from utils.world.bars import unseen_word_drop
    from utils.world.corpus import token_inventory
    from utils.world.prompts import make_prompts

    corpus = set(token_inventory()) | {BOS}
    answers = {}
    for kind in ("p2_landmark_city", "p6_two_hop", "p9_definition", "p11_category", "p8_closer"):
        for p in make_prompts(kind, n=8):
            answers[tuple(tokenizer.convert_tokens_to_ids(list(p.tokens)))] = p.answer

    def lookup(row, strict):
        ids = [i for i in row.tolist() if i != 0]
        toks = tokenizer.convert_ids_to_tokens(ids)
        if any(t not in corpus for t in toks):
            if strict:
                return {" the": 5.0}
            ids = [i for i, t in zip(ids, toks) if t in corpus]
        return {answers[tuple(ids)]: 5.0}

    drop, n = unseen_word_drop(_StandIn(tokenizer, lambda r: lookup(r, True)), n=40)
    assert n > 20 and drop == 1.0
    drop, _ = unseen_word_drop(_StandIn(tokenizer, lambda r: lookup(r, False)), n=40)
    assert drop == 0.0
