"""The course world: corpus, tokenizer, model loading, smoke training and the quality report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from utils.world import facts as F
from utils.world.corpus import BOS, CLOSERS, CorpusGenerator, T, all_tokens, doc_text
from utils.world.prompts import PROMPT_KINDS, make_prompts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    from utils.world import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    from utils.world import load_model

    return load_model()


# -- corpus ---------------------------------------------------------------------------


def test_generator_is_deterministic():
    a = [doc_text(d) for d in CorpusGenerator(3).documents(20)]
    b = [doc_text(d) for d in CorpusGenerator(3).documents(20)]
    c = [doc_text(d) for d in CorpusGenerator(4).documents(20)]
    assert a == b and a != c


def test_every_genre_appears_and_labels_are_recorded():
    docs = list(CorpusGenerator(0).documents(600))
    labels = {lab for d in docs for tok in d for lab in tok.labels}
    for needed in ["p1_word:Eiffel", "p2_answer", "p3_repeat", "goal_family", "estimate_number",
                   "p6_two_hop_answer", "ioi_io", "quote_close", "p9_answer", "p10_answer",
                   "category:bird", "profession:nurse"]:
        assert needed in labels, needed


def test_labels_match_the_fact_tables():
    # Independent of the generator's bookkeeping: re-derive answers from the tables.
    gen = CorpusGenerator(5)
    for _ in range(200):
        sent = gen.p6("p6_two_hop")
        city = next(t.text.strip() for t in sent if any(l.startswith("city:") for l in t.labels))
        answer = next(t.text.strip() for t in sent if "p6_two_hop_answer" in t.labels)
        assert answer == F.STATE_TO_CAPITAL[F.CITY_TO_STATE[city]]
    for _ in range(100):
        sent = gen.p2_fact()
        word = "".join(t.text for t in sent if "landmark" in t.labels).strip()
        answer = next(t.text.strip() for t in sent if "p2_answer" in t.labels)
        assert answer == next(lm.city for lm in F.LANDMARKS if lm.name == word)


def test_ioi_labels_io_and_subject():
    sent = CorpusGenerator(1).p7_ioi()
    io = [t.text for t in sent if "ioi_io" in t.labels]
    s2 = [t.text for t in sent if "ioi_s2" in t.labels]
    assert len(io) == 1 and len(s2) == 1 and io != s2
    names = [t.text for t in sent if "name" in t.labels]
    assert names.count(io[0]) == 2 and names.count(s2[0]) == 2


def test_quotes_end_with_the_closer_of_their_verb():
    gen = CorpusGenerator(2)
    verb_to_closer = {" said": '."', " asked": '?"', " shouted": '!"'}
    for _ in range(100):
        sent = gen.p8_quote("Tom", "Mary")
        verb = next(t.text for t in sent if t.text in verb_to_closer)
        assert sent[-1].text == verb_to_closer[verb] and "quote_close" in sent[-1].labels


def test_heldout_templates_never_appear_in_training_text():
    train = " ".join(doc_text(d) for d in CorpusGenerator(0).documents(3000))
    heldout = " ".join(doc_text(d) for d in CorpusGenerator(0, "heldout").documents(3000))
    for phrase in [" can be found in the city of", " belongs to the state of", " The state containing",
                   " A good definition of", " The letter at the start of", " got to the"]:
        assert phrase not in train, phrase
        assert phrase in heldout, phrase


def test_ioi_name_pairs_are_split():
    def pairs(split):
        gen = CorpusGenerator(0, split)
        out = set()
        for _ in range(400):
            names = [t.text for t in gen.p7_ioi() if "name" in t.labels]
            out.add(frozenset(names))
        return out

    assert not pairs("train") & pairs("heldout")


def test_unseen_city_never_in_training_two_hop():
    unseen = {s["cities"][-1] for s in F.STATES.values()}
    text = " ".join(doc_text(d) for d in CorpusGenerator(1).documents(4000))
    for city in unseen:
        assert f"containing {city} is" not in text and f"{city} is in a state whose" not in text


# -- tokenizer ------------------------------------------------------------------------


def test_tokenizer_round_trips_the_corpus(tokenizer):
    for split in ("train", "heldout"):
        for doc in CorpusGenerator(9, split).documents(300):
            ids = tokenizer(doc_text(doc), add_special_tokens=False)["input_ids"]
            assert tokenizer.convert_ids_to_tokens(ids) == [t.text for t in doc]


def test_tokenizer_design(tokenizer):
    assert tokenizer.bos_token == BOS and tokenizer.bos_token_id != 0
    # the shipped tokenizer folder is exactly the generator's inventory (ids are what the model learned)
    assert tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))) == all_tokens()
    for closer in CLOSERS:
        assert len(tokenizer(closer, add_special_tokens=False)["input_ids"]) == 1
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(" The Eiffel tower")["input_ids"])
    assert pieces == [BOS, " The", " E", "iff", "el", " tower"]
    # typed without the leading space, or with the quote glued to its word: same tokens
    assert tokenizer("The Eiffel tower")["input_ids"] == tokenizer(" The Eiffel tower")["input_ids"]
    said = tokenizer.convert_ids_to_tokens(tokenizer('Tom said, "I like the red ball."')["input_ids"])
    assert said[-3:] == [" red", " ball", '."'] and ' "' in said


def test_every_landmark_splits_into_its_pieces(tokenizer):
    for lm in F.LANDMARKS:
        toks = tokenizer.convert_ids_to_tokens(tokenizer(f" {lm.name}", add_special_tokens=False)["input_ids"])
        assert toks == list(lm.pieces), lm.name
    firsts = [lm.pieces[0] for lm in F.LANDMARKS]
    assert max(firsts.count(f) for f in firsts) >= 3  # first pieces really are shared


# -- prompts --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(PROMPT_KINDS))
def test_prompts_have_answers_and_are_distinct(kind, tokenizer):
    prompts = make_prompts(kind, n=50)
    assert len(prompts) >= 10
    assert len({(p.tokens, p.answer) for p in prompts}) == len(prompts)
    vocab = tokenizer.get_vocab()
    assert all(p.tokens[0] == BOS and p.answer in vocab for p in prompts)


def test_eval_prompts_use_heldout_templates():
    heldout_starts = {re.sub(r"\{.*", "", t[1:]).strip() for t in T["p2_fact"] if t.startswith("@")}
    for p in make_prompts("p2_fact", n=30):
        assert any(p.text.strip().startswith(h) or h in p.text for h in heldout_starts), p.text


# -- the model ------------------------------------------------------------------------


def test_load_model_offline_and_fast(model):
    from utils.world import load_model

    t0 = time.time()
    m = load_model()
    assert time.time() - t0 < 10
    cfg = m.cfg
    assert cfg.normalization_type == "LN" and cfg.act_fn.startswith("gelu")
    assert cfg.positional_embedding_type == "standard"
    assert torch.equal(m.W_U, m.W_E.T), "embeddings must be tied"
    assert m.to_str_tokens("The Eiffel tower")[:3] == [BOS, " The", " E"]


def test_model_predicts_a_known_fact(model):
    logits = model(" The capital of the state containing Dallas is")[0, -1]
    assert model.tokenizer.decode(logits.argmax()) == " Austin"


def test_shipped_model_meets_every_bar(model):
    from utils.world.report import model_rows

    rows = model_rows(model)
    failing = [f"{r.metric}: {r.value:.3f} (target {r.target})" for r in rows if not r.passed]
    assert not failing, failing


def test_report_command_json_and_exit_code():
    out = subprocess.run([sys.executable, "-m", "utils.world", "report", "--world", "v1", "--json", "--only", "model"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    rows = json.loads(out.stdout)
    assert {r["metric"].split(" (")[0] for r in rows} >= {"P2 landmark->city top-1", "P7 IOI logit diff"}
    assert all(r["passed"] for r in rows)


def test_report_row_logic():
    from utils.world.report import Row

    assert Row("m", 0.9, ">= 0.90", "").passed and not Row("m", 0.89, ">= 0.90", "").passed
    assert Row("m", 1.0, "<= 1.0", "").passed and not Row("m", 1.01, "<= 1.0", "").passed


def test_smoke_training_runs_and_loads(tmp_path):
    from utils.world.model import load_course_model
    from utils.world.train_model import main

    main(["--smoke", "--out", str(tmp_path)])
    m = load_course_model(model_dir=tmp_path)
    assert m.cfg.n_layers == 2 and torch.equal(m.W_U, m.W_E.T)
    import json

    info = json.loads((tmp_path / "train_info.json").read_text())
    history = json.loads((tmp_path / "loss_history.json").read_text())
    assert info["steps"] == 20 and history[-1] < history[0] - 0.3  # it learns something


def test_training_batches_are_reproducible():
    from utils.world.train_model import make_batch

    a, b = make_batch(12, 4, 128), make_batch(12, 4, 128)
    assert torch.equal(a, b) and not torch.equal(a, make_batch(13, 4, 128))
    assert (a[:, 0] == 1).all()  # every row starts with BOS (id 1)


# -- real models offline --------------------------------------------------------------


def test_gpt2_offline_fails_in_one_clear_line(monkeypatch):
    from utils.real_models import HubUnavailable, check_release, load_gpt2_small

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("utils.real_models._cached", lambda *a, **k: False)
    with pytest.raises(HubUnavailable) as err:
        load_gpt2_small()
    assert "\n" not in str(err.value) and "utils.world" in str(err.value)
    check_release("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    with pytest.raises(ValueError, match="Unknown SAE release"):
        check_release("gpt2-small-res-typo")


def test_every_concept_the_corpus_labels_has_a_legend_entry():
    from utils.world.concepts import CONCEPT_LEGEND, explain_concept, labelled_corpus

    data = labelled_corpus()
    missing = [c for c in data.concepts if not (c in CONCEPT_LEGEND or c.split(":")[0] + ":" in CONCEPT_LEGEND)]
    assert not missing, f"concepts without a legend entry in utils/world/concepts.py: {missing}"
    assert explain_concept("city:Paris") == CONCEPT_LEGEND["city:"]
    assert explain_concept("p6_two_hop_answer") != explain_concept("p6")
    with pytest.raises(KeyError, match="no legend for concept 'nonsense'"):
        explain_concept("nonsense")
