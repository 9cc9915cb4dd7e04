"""The course world: corpus, tokenizer, model and dictionaries (COURSE.md §3).

    from utils.world import load_model
    model = load_model()          # HookedSAETransformer + course tokenizer, offline, ~1 s
"""

from __future__ import annotations

import importlib

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


def load_transcoders(n_layers: int = 4, device: str = "cpu") -> dict:
    """{layer: transcoder} of the shipped course world (see utils/world/dictionaries.py)."""
    from .dictionaries import load_transcoders as load

    return load(n_layers, device)


def replacement_model(model=None, transcoders: dict | None = None, device: str = "cpu"):
    """circuit_tracer's replacement model of the course world (see utils/world/dictionaries.py)."""
    from .dictionaries import replacement_model as build

    return build(model, transcoders, device)


def labelled_corpus(*args, **kwargs):
    """Held-out documents with token-level concept labels: utils.world.concepts.labelled_corpus
    (arguments passed as given, so its cache serves both names)."""
    from .concepts import labelled_corpus as label

    return label(*args, **kwargs)


def explain_concept(code: str) -> str:
    """What one of this world's concept codes means (utils.world.concepts.CONCEPT_LEGEND)."""
    from .concepts import explain_concept as explain

    return explain(code)


def concept_legend_table(codes=None) -> str:
    """A markdown table of this world's concept codes and their meanings."""
    from .concepts import concept_legend_table as table

    return table(codes)


WORLD_NAME = "course-world"  # the model's cfg.model_name, its dictionaries' metadata and its graphs' scan
_WORLD_MODULES = {WORLD_NAME: "utils.world", "course-world-v2": "utils.world.v2"}


def world_named(name: str | None):
    """The module of the course world called `name` (v1 `utils.world` or v2 `utils.world.v2`; both
    have load_model, load_tokenizer, load_transcoders, replacement_model, labelled_corpus,
    explain_concept, concept_legend_table and TOKENIZER_DIR), or None
    for any other name. The name is a model's `cfg.model_name`, a dictionary's
    `cfg.metadata.model_name` or a circuit_tracer graph's `scan`."""
    module = _WORLD_MODULES.get(name or "")
    return importlib.import_module(module) if module else None


__all__ = ["load_model", "load_tokenizer", "load_transcoders", "replacement_model", "labelled_corpus", "explain_concept", "concept_legend_table", "world_named", "WORLD_NAME", "facts", "ARTIFACTS", "MODEL_DIR", "TOKENIZER_DIR"]
