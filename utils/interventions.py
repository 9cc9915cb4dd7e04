"""Interventions on transcoder latents of one prompt, through circuit_tracer (chapter 04 and the
world's mechanism measurements).

    from utils.interventions import next_token_probs, generate_with_interventions
    probs = next_token_probs(rm, tokens, [(layer, position, latent, 0.0)])   # zero one latent
    text = generate_with_interventions(rm, tokens, interventions, max_new_tokens=8)

`rm` is a circuit_tracer ReplacementModel (`utils.world.replacement_model`). An
intervention is `(layer, position, latent, value)`: the latent's activation at that position is
set to `value` (0 ablates it; `-2 * a` flips and doubles it). `position` may be a slice, e.g.
`slice(n, None)` for "from position n on", which also covers tokens generated later.

This module is the one place that works around a circuit_tracer 0.5.0 inconsistency (see
`_one_prompt`): the two intervention calls want different token shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Intervention = tuple[int, "int | slice", int, float]


def _one_prompt(tokens) -> Tensor:
    """One prompt's token ids as a 1-D tensor, or a clear error."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 1 or len(tokens) == 0:
        raise ValueError(f"Interventions run on one prompt: give its token ids as a 1-D tensor (or shape (1, n)), "
                         f"not a tensor of shape {tuple(tokens.shape)}.")
    return tokens.long()


def check_interventions(rm, tokens: Tensor, interventions: Sequence) -> list[tuple]:
    """The interventions as plain tuples, after checking each names an existing layer, position and latent."""
    n_layers, n_pos = rm.cfg.n_layers, len(tokens)
    d_transcoder = rm.transcoders.d_transcoder
    out = []
    for i, item in enumerate(interventions):
        if not isinstance(item, Sequence) or len(item) != 4:
            raise ValueError(f"Intervention {i} is {item!r}; each one is a tuple (layer, position, latent, value).")
        layer, pos, latent, value = item
        layer, latent = int(layer), int(latent)
        if not 0 <= layer < n_layers:
            raise ValueError(f"Intervention {i}: layer {layer} does not exist (the model has layers 0..{n_layers - 1}).")
        if not isinstance(pos, slice) and not -n_pos <= int(pos) < n_pos:
            raise ValueError(f"Intervention {i}: position {pos} is outside the prompt ({n_pos} tokens, BOS included).")
        if not 0 <= latent < d_transcoder:
            raise ValueError(f"Intervention {i}: latent {latent} does not exist (each transcoder has {d_transcoder}).")
        out.append((layer, pos if isinstance(pos, slice) else int(pos), latent, float(value)))
    return out


@torch.no_grad()
def intervened_logits(rm, tokens, interventions: Sequence = (), freeze_attention: bool = True,
                      constrained_layers: range | None = None) -> Tensor:
    """Logits (n_pos, d_vocab) of `tokens` with the interventions applied (none: the plain model).

    freeze_attention: keep every attention pattern as on the clean run (True), or let attention
        react to the change (False). constrained_layers: layers whose transcoder latents are also
        frozen at their clean values, so an intervention reaches them only through attention and
        the error terms (circuit_tracer's option; None lets every later latent react).
    """
    tokens = _one_prompt(tokens)
    interventions = check_interventions(rm, tokens, interventions)
    if not interventions:
        return rm(tokens).reshape(len(tokens), -1)
    # circuit_tracer 0.5.0: with freeze_attention=False, a (1, n) tensor is read as n = 1 position
    # ("index 8 is out of bounds for dimension 0 with size 1"); a 1-D tensor works in both modes.
    logits, _ = rm.feature_intervention(tokens, interventions, constrained_layers=constrained_layers,
                                        freeze_attention=freeze_attention, return_activations=False)
    return logits.reshape(len(tokens), -1)


def next_token_probs(rm, tokens, interventions: Sequence = (), **kwargs) -> Tensor:
    """The next-token distribution (d_vocab,) after the last token, with the interventions applied."""
    return intervened_logits(rm, tokens, interventions, **kwargs)[-1].softmax(-1)


@torch.no_grad()
def generate_with_interventions(rm, tokens, interventions: Sequence = (), max_new_tokens: int = 8,
                                freeze_attention: bool = True) -> Tensor:
    """Greedy continuation of `tokens` with the interventions held during generation; returns all
    token ids (prompt and new tokens, 1-D). Use `slice(n, None)` positions to keep an intervention
    on the tokens it generates too."""
    tokens = _one_prompt(tokens)
    interventions = check_interventions(rm, tokens, interventions)
    # circuit_tracer 0.5.0: feature_intervention_generate indexes input.shape[1], so it needs (1, n).
    out = rm.feature_intervention_generate(tokens[None], interventions, max_new_tokens=max_new_tokens,
                                           do_sample=False, verbose=False, freeze_attention=freeze_attention,
                                           return_activations=False)
    return out[0].reshape(-1)  # (token ids (1, n + new), logits of the new tokens, activations)
