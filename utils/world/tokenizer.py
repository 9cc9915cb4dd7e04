"""The v2 tokenizer: the corpus's words as whole tokens, and single characters for the rest.

Design choice (issue 11: "students cannot type natural prompts"): word level with a
character fallback, not byte-level BPE.
- Every token the v2 generator can emit (`corpus.token_inventory()`: " Paris", "What", '."',
  the P1 pieces " E" "iff" "el", ...) is one vocabulary entry, so a corpus document tokenizes
  into exactly the tokens that carry its ground-truth labels, by construction rather than by
  aligning BPE merges to label spans after the fact.
- Every ASCII character, alone and after a space (" x"), and a lone space are tokens too. A
  word the corpus never writes ("Eiffelturm", "pizzza") falls apart into characters instead of
  becoming <|unk|>, so any ASCII text tokenizes, and decode(encode(text)) == text exactly: there
  is no normaliser and the decoder concatenates. (Only non-ASCII characters give <|unk|>.)
- A BPE would also never say <|unk|>, but it would cut the planted words where its merges fall
  (" Dall" "as"), break the designed P1 pieces unless forced, and make every label span depend
  on training statistics. Whole words keep one token per concept, which is what the lessons
  read off graphs and dashboards.

How a text is split (one regular expression, the same rules corpus.py renders with): the P1
pieces, but only inside their whole landmark word (" E" before "iffel"); then punctuation tokens
('."' before "."); then whole words, with their leading space or, at the start of a text / after
a quote or newline, without one, each only if no letter or digit follows; then one character
(with its leading space, if any); then a lone space. BOS sits at id 1 (circuit-tracer skips id 0);
PAD is 0.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from . import facts as F
from .corpus import BOS, PAD, SPECIAL_TOKENS, UNK, token_inventory

_WORD = re.compile(r" ?[A-Za-z0-9]+")
_NOT_WORD_AFTER = "(?![A-Za-z0-9])"


def fallback_tokens() -> list[str]:
    """Every ASCII character alone and after a space, and a lone space."""
    chars = [chr(i) for i in range(128) if chr(i) != " "]
    return chars + [" " + c for c in chars] + [" "]


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, int]:
    """token -> id: the specials first (PAD 0, BOS 1, UNK 2), then every other token sorted."""
    rest = sorted((set(token_inventory()) | set(fallback_tokens())) - set(SPECIAL_TOKENS))
    return {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *rest])}


def _esc(text: str) -> str:
    """Escape for Oniguruma (the regex engine of `tokenizers`): hex for every non-alphanumeric."""
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in text)


def split_pattern() -> str:
    pieces = []
    for lm in F.LANDMARKS:  # each piece only where the whole landmark word follows / precedes
        for k, piece in enumerate(lm.pieces):
            before, after = "".join(lm.pieces[:k]), "".join(lm.pieces[k + 1:])
            pieces.append((f"(?<={_esc(before)})" if before else "") + _esc(piece)
                          + (f"(?={_esc(after)}{_NOT_WORD_AFTER})" if after else _NOT_WORD_AFTER))
    inventory = token_inventory()
    words = [t for t in inventory if _WORD.fullmatch(t)]
    spaced = sorted((w[1:] for w in words if w.startswith(" ")), key=lambda w: (-len(w), w))
    bare = sorted((w for w in words if not w.startswith(" ")), key=lambda w: (-len(w), w))
    marks = sorted((t for t in inventory if not _WORD.fullmatch(t) and len(t) > 1), key=lambda t: (-len(t), t))
    return "|".join([
        *pieces,
        *(_esc(m) for m in marks),
        f"\\x20(?:{'|'.join(map(_esc, spaced))}){_NOT_WORD_AFTER}",
        f"(?<![A-Za-z0-9])(?:{'|'.join(map(_esc, bare))}){_NOT_WORD_AFTER}",
        "\\x20?[^\\x20]",
        "\\x20",
    ])


def build_tokenizer():
    """A `PreTrainedTokenizerFast` for course world v2 (not saved)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(split_pattern()), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, vocab[BOS])])
    # clean_up_tokenization_spaces would turn "a ." into "a." on decode; some transformers
    # versions default it to True, so it is set (and saved) explicitly.
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD,
                                   unk_token=UNK, model_max_length=1_000_000, clean_up_tokenization_spaces=False)
    fast.add_bos_token = True
    return fast


def save_tokenizer(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(str(path))


def load_tokenizer(path: Path):
    """Load a saved v2 tokenizer folder (TransformerLens needs one it can reload by path)."""
    from transformers import AutoTokenizer

    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"No v2 tokenizer at {path}: write one with utils.world.tokenizer.save_tokenizer.")
    return AutoTokenizer.from_pretrained(str(path))


def check_tokenizer_matches_corpus() -> None:
    """Refuse to label text when the frames in the code no longer give the shipped tokenizer's
    vocabulary (token ids would silently mean other tokens)."""
    from .model import TOKENIZER_DIR

    if load_tokenizer(TOKENIZER_DIR).get_vocab() != vocabulary():
        raise RuntimeError("The world's frames or facts changed since it was shipped: the corpus's token ids no "
                           "longer match the shipped tokenizer. Retrain and ship the world "
                           "(python -m utils.world.train, then python -m utils.world.report ship).")
