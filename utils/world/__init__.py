"""The course world: corpus, tokenizer, model and dictionaries (COURSE.md §3).

    from utils.world import load_model
    model = load_model()          # HookedSAETransformer + course tokenizer, offline, ~1 s
"""

from __future__ import annotations

from . import facts
from .model import ARTIFACTS, MODEL_DIR, TOKENIZER_DIR


def load_model(device: str = "cpu"):
    """The shipped course model (a `HookedSAETransformer`) with its tokenizer. No network."""
    from .model import load_course_model

    return load_course_model(device=device)


def load_tokenizer():
    """The course tokenizer (a `PreTrainedTokenizerFast`)."""
    from .tokenizer import load_tokenizer as _load

    return _load(TOKENIZER_DIR)


__all__ = ["load_model", "load_tokenizer", "facts", "ARTIFACTS", "MODEL_DIR", "TOKENIZER_DIR"]
