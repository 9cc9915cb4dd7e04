"""The course model: where the shipped world lives, its configuration, tied embeddings, and
loading the weights a run wrote (by default the shipped ones)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # written by `python -m utils.world.report ship`
TOKENIZER_DIR = ARTIFACTS / "tokenizer"
DICT_DIR = ARTIFACTS / "dictionaries"
WORLD_NAME = "course-world-v2"  # the model's cfg.model_name, its dictionaries' metadata and its graphs' scan

# GPT-2 style: LayerNorm, GELU, learned positions. Small enough that every notebook cell runs
# in well under a second on a laptop CPU, big enough to learn most of P1-P12 (see the report).
MODEL_CONFIG = dict(
    n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=128,
    act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard",
    default_prepend_bos=True, original_architecture="GPT2LMHeadModel", model_name=WORLD_NAME,
)


def make_config(d_vocab: int, overrides: dict | None = None, device: str = "cpu"):
    from transformer_lens import HookedTransformerConfig

    cfg = dict(MODEL_CONFIG if overrides is None else overrides)
    return HookedTransformerConfig(d_vocab=d_vocab, device=device, seed=0, **cfg)


def tie_embeddings(model) -> None:
    """Make the unembedding the transpose of the embedding (one shared parameter).

    HookedTransformer has no tying option, so for training we drop W_U and recompute it from
    W_E before every unembedding. `untie_for_saving` writes a plain copy back for loading.
    """
    unembed = model.unembed
    if "W_U" in unembed._parameters:
        del unembed._parameters["W_U"]
    unembed.b_U.requires_grad_(False)
    with torch.no_grad():
        unembed.b_U.zero_()
    unembed.W_U = model.embed.W_E.T
    unembed.register_forward_pre_hook(lambda module, args: setattr(module, "W_U", model.embed.W_E.T))


def plain_state_dict(model) -> dict[str, torch.Tensor]:
    """State dict in the ordinary HookedTransformer layout (W_U materialised from W_E)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["unembed.W_U"] = model.embed.W_E.detach().T.clone()
    return state


def load_model(run_dir: Path = ARTIFACTS, device: str = "cpu"):
    """The model a run wrote (default: the shipped world), as a `HookedSAETransformer` carrying its
    tokenizer. No network."""
    from sae_lens import HookedSAETransformer

    from .tokenizer import load_tokenizer

    if not (run_dir / "model.pt").exists():
        hint = ("they ship with the repository; restore them with `git checkout -- utils/world/artifacts`"
                if Path(run_dir).resolve() == ARTIFACTS else f"train one with `python -m utils.world.train --out {run_dir}`")
        raise FileNotFoundError(f"No course model in {run_dir}: {hint}.")
    overrides = json.loads((run_dir / "config.json").read_text())
    cfg = make_config(overrides.pop("d_vocab"), overrides, device=device)
    model = HookedSAETransformer(cfg, tokenizer=load_tokenizer(run_dir / "tokenizer"))
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location=device, weights_only=True))
    model.eval()
    return model
