"""utils.world's loaders, the labelled corpus, the concept legend and the world registry.

The tokenizer check and the label filter are tested with a tokenizer built from the current frames,
and one whose vocabulary differs, so they do not depend on the shipped artifacts."""

from __future__ import annotations

import pytest

import utils.world as world
import utils.world.tokenizer as tokenizer_module
from utils.world.concepts import BOOKKEEPING_LABELS, CONCEPT_LEGEND, labelled_corpus
from utils.world.tokenizer import build_tokenizer


class _Renamed:
    """A tokenizer whose vocabulary lost one token: what an edit of the frames after shipping gives."""

    def __init__(self, tokenizer):
        self.vocab = dict(tokenizer.get_vocab())
        self.vocab.pop(sorted(self.vocab)[-1])

    def get_vocab(self):
        return self.vocab


def test_labelled_corpus_drops_only_the_bookkeeping_labels(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "load_tokenizer", lambda path: build_tokenizer())
    full = labelled_corpus.__wrapped__(12, bookkeeping=True)  # past the cache: the monkeypatch must be seen
    data = labelled_corpus.__wrapped__(12)
    dropped = [c for c in full.concepts if c not in data.concepts]
    assert dropped and all(c.startswith(("frame:", "heldout_frame", "heldout_content")) for c in dropped)
    assert not any(c.startswith("frame:") for c in data.concepts)
    assert (data.tokens == full.tokens).all() and (data.mask == full.mask).all()
    for concept in ("answer", "two_hop", "city:Dallas"):
        if concept in full.concepts:
            assert (data.labels[..., data.concept_index(concept)] == full.labels[..., full.concept_index(concept)]).all()


def test_labelled_corpus_refuses_a_tokenizer_the_frames_no_longer_match(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "load_tokenizer", lambda path: _Renamed(build_tokenizer()))
    with pytest.raises(RuntimeError, match="changed since it was shipped"):
        labelled_corpus.__wrapped__(2)
    with pytest.raises(RuntimeError, match="changed since it was shipped"):
        world.labelled_corpus(3)


def test_the_registry_names_the_world_and_nothing_else():
    assert world.world_named("course-world-v2") is world
    for other in ("course-world", "course-world-v2-pilot", "gpt2", "", None):  # v1's name is gone with v1
        assert world.world_named(other) is None
    for name in ("load_model", "load_tokenizer", "load_transcoders", "load_dictionary", "replacement_model",
                 "labelled_corpus", "explain_concept", "concept_legend_table", "TOKENIZER_DIR"):
        assert hasattr(world, name), name
    assert world.DICT_DIR == world.ARTIFACTS / "dictionaries" and world.TOKENIZER_DIR.parent == world.ARTIFACTS
    assert world.ARTIFACTS.parent.name == "world" and (world.ARTIFACTS / "model.pt").exists()


def test_every_label_has_a_legend_entry_and_every_entry_is_still_written():
    """The legend against 200 held-out documents (bookkeeping labels aside): a label without an
    entry would show as a bare code on a dashboard, an entry without a label is stale."""
    concepts = [c for c in labelled_corpus(200, bookkeeping=True).concepts if not c.startswith(BOOKKEEPING_LABELS)]
    family = {c: c.split(":", 1)[0] + ":" if ":" in c else c for c in concepts}
    assert sorted(c for c in concepts if c not in CONCEPT_LEGEND and family[c] not in CONCEPT_LEGEND) == []
    assert sorted(set(CONCEPT_LEGEND) - set(family.values())) == []
    # exact codes, and families resolved through their prefix
    assert world.explain_concept("two_hop").startswith("every token of a city -> capital sentence")
    assert world.explain_concept("city:Dallas") == CONCEPT_LEGEND["city:"]
    assert world.explain_concept("answer") != world.explain_concept("two_hop")
    with pytest.raises(KeyError, match="no legend for concept 'p6'"):  # v1's name for the same sentences
        world.explain_concept("p6")
    table = world.concept_legend_table(["two_hop", "city:"])
    assert table.splitlines()[2].startswith("| `two_hop` | every token") and "| `city:…` |" in table
