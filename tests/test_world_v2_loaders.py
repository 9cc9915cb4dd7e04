"""utils.world.v2's loaders (v1's names for the shipped v2 world) and the world registry.

These run without shipped v2 artifacts: the tokenizer check and the label filter are tested with a
tokenizer built from the current frames, and one whose vocabulary differs."""

from __future__ import annotations

import pytest

import utils.world as v1
import utils.world.v2 as v2
from utils.world.v2.dictionaries import labelled_corpus as with_bookkeeping
from utils.world.v2.tokenizer import build_tokenizer


class _Renamed:
    """A tokenizer whose vocabulary lost one token: what an edit of the frames after shipping gives."""

    def __init__(self, tokenizer):
        self.vocab = dict(tokenizer.get_vocab())
        self.vocab.pop(sorted(self.vocab)[-1])

    def get_vocab(self):
        return self.vocab


def test_labelled_corpus_drops_only_the_bookkeeping_labels(monkeypatch):
    monkeypatch.setattr(v2, "load_tokenizer", build_tokenizer)
    full = with_bookkeeping(12)
    data = v2.labelled_corpus.__wrapped__(12)  # past the cache: the monkeypatch must be seen
    dropped = [c for c in full.concepts if c not in data.concepts]
    assert dropped and all(c.startswith(("frame:", "heldout_frame", "heldout_content")) for c in dropped)
    assert not any(c.startswith("frame:") for c in data.concepts)
    assert (data.tokens == full.tokens).all() and (data.mask == full.mask).all()
    for concept in ("answer", "two_hop", "city:Dallas"):
        if concept in full.concepts:
            assert (data.labels[..., data.concept_index(concept)] == full.labels[..., full.concept_index(concept)]).all()


def test_labelled_corpus_refuses_a_tokenizer_the_frames_no_longer_match(monkeypatch):
    monkeypatch.setattr(v2, "load_tokenizer", lambda: _Renamed(build_tokenizer()))
    with pytest.raises(RuntimeError, match="changed since the world was shipped"):
        v2.labelled_corpus.__wrapped__(2)


def test_the_registry_names_both_worlds_and_nothing_else():
    assert v1.world_named("course-world") is v1
    assert v1.world_named("course-world-v2") is v2
    assert v1.world_named("course-world-v2-pilot") is None and v1.world_named(None) is None
    for world in (v1, v2):
        for name in ("load_model", "load_tokenizer", "load_transcoders", "replacement_model", "labelled_corpus",
                     "explain_concept", "concept_legend_table", "TOKENIZER_DIR"):
            assert hasattr(world, name), (world.__name__, name)
    assert v2.DICT_DIR == v2.ARTIFACTS / "dictionaries" and v2.TOKENIZER_DIR.parent == v2.ARTIFACTS


def test_every_v2_label_has_a_legend_entry_and_every_entry_is_still_written():
    """The v2 legend against 200 held-out documents (bookkeeping labels aside): a label without an
    entry would show as a bare code on a dashboard, an entry without a label is stale."""
    from utils.world.v2.concepts import CONCEPT_LEGEND

    concepts = [c for c in with_bookkeeping(200).concepts if not c.startswith(v2.BOOKKEEPING_LABELS)]
    family = {c: c.split(":", 1)[0] + ":" if ":" in c else c for c in concepts}
    assert sorted(c for c in concepts if c not in CONCEPT_LEGEND and family[c] not in CONCEPT_LEGEND) == []
    assert sorted(set(CONCEPT_LEGEND) - set(family.values())) == []
    # v2's own words where v1's differ, and families resolved through their prefix
    assert v2.explain_concept("two_hop").startswith("every token of a city -> capital sentence")
    assert v2.explain_concept("city:Dallas") == CONCEPT_LEGEND["city:"] == v1.explain_concept("city:Dallas")
    assert v2.explain_concept("answer") != v2.explain_concept("two_hop")
    with pytest.raises(KeyError, match="no legend for concept 'p6'"):  # v1's name for the same sentences
        v2.explain_concept("p6")
    assert v1.explain_concept("p6").startswith("every token of a two-hop geography sentence")
    table = v2.concept_legend_table(["two_hop", "city:"])
    assert table.splitlines()[2].startswith("| `two_hop` | every token") and "| `city:…` |" in table
