"""The course tokenizer, built offline with the `tokenizers` library.

It is word-level: every token of `corpus.all_tokens()` is one vocabulary entry, words carry
their leading space (" Paris"), P1 landmark names are split into designed pieces
(" E" + "iff" + "el"), and '."', '!"' and '?"' are single tokens. A pre-tokenizer splits text
into the longest vocabulary entries (a regex alternation, longest first), and the decoder
just concatenates tokens, so decode(encode(text)) == text for any course text.
"""

from __future__ import annotations

import re
from pathlib import Path

from .corpus import BOS, PAD, UNK, all_tokens


def build_tokenizer():
    """Return a `PreTrainedTokenizerFast` for the course world (not saved)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(all_tokens())}
    # Longest first, so " Eiffel"-like text splits into the longest pieces the vocabulary has;
    # a final catch-all turns anything unknown into single characters (-> <|unk|>).
    alternatives = sorted((t for t in vocab if t not in (BOS, PAD, UNK)), key=lambda t: (-len(t), t))
    pattern = "|".join(re.escape(t) for t in alternatives) + r"| ?[^ ]"
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Text may be typed without its leading space ("The Eiffel tower"): add one, then fold the
    # double space that appears when the text already had it. An opening quote glued to its
    # word ('"I like') gets the space our tokens expect (' " I like').
    tok.normalizer = normalizers.Sequence([
        normalizers.Prepend(" "), normalizers.Replace("  ", " "),
        normalizers.Replace(Regex("^ (?=[.,?!])"), ""),  # punctuation alone ('."') takes no space
        normalizers.Replace(Regex(' "(?=[^ ])'), ' " '),
    ])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    bos_id = vocab[BOS]
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD,
                                   unk_token=UNK, model_max_length=1_000_000)
    fast.add_bos_token = True
    return fast


def save_tokenizer(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(str(path))


def load_tokenizer(path: Path):
    """Load the saved tokenizer folder (TransformerLens needs one it can reload by path)."""
    from transformers import AutoTokenizer

    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"No course tokenizer at {path}. Rebuild it with `python -m utils.world tokenizer`.")
    return AutoTokenizer.from_pretrained(str(path))
