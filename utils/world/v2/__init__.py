"""Course world v2 (issue 11): a corpus, tokenizer and evaluation built for natural prompts.

The same loaders as v1, for the shipped v2 world (utils/world/v2/artifacts), so a chapter moves to
v2 by changing its imports:

    from utils.world.v2 import load_model, load_transcoders, replacement_model, labelled_corpus

v1 never imports v2. One job per module:

    facts.py      the fact tables (what is true in the world)
    frames.py     every way a relation is stated; validation frames marked "@"
    test_set_frames.py  the test frames ("#"), written before any model was measured on them
    corpus.py     the seeded generator of labelled documents, and the token inventory
    tokenizer.py  whole words + character fallback: never <|unk|> on ASCII text
    prompts.py    evaluation prompts cut from held-out frames, and natural prompts
    bars.py       the v2 quality bars, frame-balanced rows with bootstrap intervals, run selection
    train.py      the training entry point (reuses v1's model helpers)
    dictionaries.py  v1's dictionary specs trained on a v2 run, and their bars on v2 text
    mechanisms.py the chapter 04/06 targets: IOI head attention, state supernode ablation/swap
    mechanisms_model.py  two-hop patching by layer and position, closer stages, head-local z latents
    bios.py       P12 for SHIFT: bios (field intended, narrative person spurious), probes, SHIFT
    report.py     all of the above in one command, `select` (on validation frames) and `ship`

Decisions a switch-over should know:
- Text convention: no normaliser. A document starts with a no-space word ("What"), every later
  word carries its space (" is"), so a prompt typed the natural way ("What is the capital of
  Texas?") is exactly corpus text, and decode(encode(text)) == text.
- Vocabulary: corpus tokens (words with and without a leading space, where the corpus writes
  them so) plus 255 character tokens, some of which are also corpus tokens (" E", "."); d_vocab
  1,905 at the time of writing (issue 26's corpus). The
  inventory is derived from the frames, so it changes whenever a frame or a fact changes (and a
  model trained on one version cannot be scored with another: bars.py refuses).
- Held-out scheme: whole frames with syntax the train frames lack but only tokens the train split
  has: validation frames ("@", they choose among runs and have informed decisions) and test frames
  ("#", at least 8 per probed relation, measured once after the choice); plus one fact (the last
  city of every state never appears in a two-hop frame in training).
- P5's scale word follows from the estimated subject (facts.SCALE_OF), so it is predictable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # written by `python -m utils.world.v2.report ship`
TOKENIZER_DIR = ARTIFACTS / "tokenizer"
DICT_DIR = ARTIFACTS / "dictionaries"
WORLD_NAME = "course-world-v2"  # the model's cfg.model_name, its dictionaries' metadata and its graphs' scan

# Labels that name the sentence frame a token came from, or whether the frame or content is held out:
# bookkeeping for the bars, not concepts. Kept out of the chapters' corpus, where 293 per-frame labels
# would otherwise win "best concept" for any latent that tracks one sentence.
BOOKKEEPING_LABELS = ("frame:", "heldout_frame", "heldout_content")


def load_model(device: str = "cpu"):
    """The shipped v2 model (a `HookedSAETransformer`) with its tokenizer. No network."""
    from .train import load_model as load_run

    return load_run(ARTIFACTS, device)


def load_tokenizer():
    """The shipped v2 tokenizer (a `PreTrainedTokenizerFast`)."""
    from .tokenizer import load_tokenizer as load_folder

    return load_folder(TOKENIZER_DIR)


def load_dictionary(name: str, device: str = "cpu"):
    """One shipped v2 SAE or transcoder by folder name (the names are v1's)."""
    from ..dictionaries import load_dictionary as load_named

    return load_named(name, device, DICT_DIR)


def load_resid_saes(n_layers: int = 4, device: str = "cpu") -> dict:
    from ..dictionaries import load_resid_saes as load

    return load(n_layers, device, DICT_DIR)


def load_attn_saes(n_layers: int = 4, device: str = "cpu") -> dict:
    from ..dictionaries import load_attn_saes as load

    return load(n_layers, device, DICT_DIR)


def load_transcoders(n_layers: int = 4, device: str = "cpu") -> dict:
    from ..dictionaries import load_transcoders as load

    return load(n_layers, device, DICT_DIR)


def load_width_family(layer: int = 2, device: str = "cpu") -> dict:
    from ..dictionaries import load_width_family as load

    return load(layer, device, DICT_DIR)


def replacement_model(model=None, transcoders: dict | None = None, device: str = "cpu"):
    """circuit_tracer's replacement model of the v2 world (its model and transcoders by default)."""
    from ..dictionaries import replacement_model as build

    model = model or load_model(device)
    return build(model, transcoders or load_transcoders(model.cfg.n_layers, device), device)


@lru_cache(maxsize=4)
def labelled_corpus(n_docs: int = 300, n_ctx: int = 128, split: str = "heldout", seed: int = 11):
    """`n_docs` held-out v2 documents with their token-level concept labels (v1's `LabelledCorpus`),
    without the bookkeeping labels (BOOKKEEPING_LABELS)."""
    from .dictionaries import labelled_corpus as with_bookkeeping

    check_tokenizer_matches_corpus()
    data = with_bookkeeping(n_docs, n_ctx, split, seed)
    keep = [i for i, c in enumerate(data.concepts) if not c.startswith(BOOKKEEPING_LABELS)]
    return type(data)(data.tokens, [data.concepts[i] for i in keep], data.labels[..., keep], data.mask)


def explain_concept(code: str) -> str:
    """What one of v2's concept codes means (utils.world.v2.concepts.CONCEPT_LEGEND)."""
    from .concepts import explain_concept as explain

    return explain(code)


def concept_legend_table(codes=None) -> str:
    """A markdown table of v2's concept codes and their meanings."""
    from .concepts import concept_legend_table as table

    return table(codes)


def check_tokenizer_matches_corpus() -> None:
    """Refuse to label text when the frames in the code no longer give the shipped tokenizer's
    vocabulary (token ids would silently mean other tokens)."""
    from .tokenizer import vocabulary

    shipped = load_tokenizer().get_vocab()
    if shipped != vocabulary():
        raise RuntimeError("The v2 frames or facts changed since the world was shipped: the corpus's token ids no "
                           "longer match the shipped tokenizer. Retrain and ship the world "
                           "(python -m utils.world.v2.train, then python -m utils.world.v2.report ship).")
