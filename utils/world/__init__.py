"""The course world (COURSE.md §3): a generated language with planted phenomena, its tokenizer, a
4-layer model trained on it, and sparse dictionaries trained on the model, all shipped in
utils/world/artifacts and loaded offline:

    from utils.world import load_model, load_dictionary, load_transcoders, replacement_model, labelled_corpus
    model = load_model()                      # HookedSAETransformer with the course tokenizer, ~1 s

One job per module:

    facts.py      the fact tables (what is true in the world)
    frames.py     every way a relation is stated; validation frames marked "@"
    test_set_frames.py  the test frames ("#"), written before any model was measured on them
    corpus.py     the seeded generator of labelled documents, and the token inventory
    tokenizer.py  whole words + character fallback: never <|unk|> on ASCII text
    prompts.py    evaluation prompts cut from held-out frames, and natural prompts
    concepts.py   labelled held-out text, what each label means, latent-vs-concept scores
    model.py      where the shipped world lives, the model's configuration, loading a run
    train.py      training a model (python -m utils.world train-model)
    dictionaries.py        loading SAEs and transcoders, circuit_tracer's replacement model
    train_dictionaries.py  training them (python -m utils.world train-dicts)
    dictionary_quality.py  their quality measures and bars
    bars.py       the behaviour bars, frame-balanced rows with bootstrap intervals, run selection
    mechanisms.py the chapter 04/06 targets: IOI head attention, state supernode ablation/swap
    mechanisms_model.py  two-hop patching by layer and position, closer stages, head-local z latents
    bios.py       P12 for SHIFT: bios (field intended, narrative person spurious), probes, SHIFT
    report.py     all of the above in one command (python -m utils.world report), `select` and `ship`

Decisions worth knowing:
- Text convention: no normaliser. A document starts with a no-space word ("What"), every later
  word carries its space (" is"), so a prompt typed the natural way ("What is the capital of
  Texas?") is exactly corpus text, and decode(encode(text)) == text.
- Vocabulary: corpus tokens (words with and without a leading space, where the corpus writes
  them so) plus 255 character tokens, some of which are also corpus tokens (" E", "."); d_vocab
  1,905 (issue 26's corpus). The inventory is derived from the frames, so it changes whenever a
  frame or a fact changes (and a model trained on one version cannot be scored with another:
  bars.py and labelled_corpus refuse).
- Held-out scheme: whole frames with syntax the train frames lack but only tokens the train split
  has: validation frames ("@", they choose among runs and have informed decisions) and test frames
  ("#", at least 8 per probed relation, measured once after the choice); plus one fact (the last
  city of every state never appears in a two-hop frame in training).
- P5's scale word follows from the estimated subject (facts.SCALE_OF), so it is predictable.
"""

from __future__ import annotations

from functools import lru_cache

from .concepts import BOOKKEEPING_LABELS
from .dictionaries import (load_attn_saes, load_dictionary, load_resid_saes, load_transcoders, load_width_family,
                           replacement_model)
from .model import ARTIFACTS, DICT_DIR, TOKENIZER_DIR, WORLD_NAME


def load_model(device: str = "cpu"):
    """The shipped model (a `HookedSAETransformer`) with its tokenizer. No network."""
    from .model import load_model as load_run

    return load_run(ARTIFACTS, device)


@lru_cache(maxsize=1)
def load_tokenizer():
    """The shipped tokenizer (a `PreTrainedTokenizerFast`)."""
    from .tokenizer import load_tokenizer as load_folder

    return load_folder(TOKENIZER_DIR)


def labelled_corpus(n_docs: int = 300, n_ctx: int = 128, split: str = "heldout", seed: int = 11):
    """`n_docs` held-out documents with their token-level concept labels (a `concepts.LabelledCorpus`),
    without the bookkeeping labels (BOOKKEEPING_LABELS)."""
    from .concepts import labelled_corpus as label

    return label(n_docs, n_ctx, split, seed)


def explain_concept(code: str) -> str:
    """What one of the world's concept codes means (utils.world.concepts.CONCEPT_LEGEND)."""
    from .concepts import explain_concept as explain

    return explain(code)


def concept_legend_table(codes=None) -> str:
    """A markdown table of the world's concept codes and their meanings."""
    from .concepts import concept_legend_table as table

    return table(codes)


def world_named(name: str | None):
    """This module if `name` is the course world's (a model's `cfg.model_name`, a dictionary's
    `cfg.metadata.model_name` or a circuit_tracer graph's `scan`), else None."""
    import sys

    return sys.modules[__name__] if name == WORLD_NAME else None


__all__ = ["load_model", "load_tokenizer", "load_dictionary", "load_resid_saes", "load_attn_saes", "load_transcoders",
           "load_width_family", "replacement_model", "labelled_corpus", "explain_concept", "concept_legend_table",
           "world_named", "WORLD_NAME", "ARTIFACTS", "TOKENIZER_DIR", "DICT_DIR", "BOOKKEEPING_LABELS"]
