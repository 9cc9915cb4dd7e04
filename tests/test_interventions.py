"""utils.interventions: circuit_tracer interventions on one prompt, checked against plain
TransformerLens hooks on the course model, world v2 (an independent route to the same numbers)."""

from __future__ import annotations

import pytest
import torch

from utils.interventions import generate_with_interventions, intervened_logits, next_token_probs
from utils.world import load_model, load_transcoders, replacement_model

PROMPT = "The state containing Dallas has its capital in"  # v2 text: no leading space


@pytest.fixture(scope="module")
def world():
    model = load_model()  # (no global torch.set_grad_enabled: it would leak into later test files)
    transcoders = load_transcoders()
    rm = replacement_model(model, transcoders)
    tokens = model.to_tokens(PROMPT)[0]
    return model, transcoders, rm, tokens


def _active_last_layer_latents(rm, tokens):
    _, acts = rm.get_activations(tokens)
    last = rm.cfg.n_layers - 1
    idx = acts[last, -1].nonzero().flatten()
    return last, idx, acts[last, -1, idx]


def test_no_intervention_is_the_model(world):
    model, _, rm, tokens = world
    assert torch.allclose(intervened_logits(rm, tokens), model(tokens)[0], atol=1e-4)


@pytest.mark.parametrize("freeze_attention", [True, False])
def test_last_layer_ablation_matches_a_hook_that_subtracts_the_decoder_rows(world, freeze_attention):
    """Zeroing the last layer's active latents at the final position removes exactly
    sum_i a_i W_dec[i] from that MLP's output there; a TransformerLens hook does that by hand.
    Both 1-D and (1, n) tokens (circuit_tracer needs different shapes in different calls)."""
    model, transcoders, rm, tokens = world
    layer, idx, values = _active_last_layer_latents(rm, tokens)
    assert len(idx) >= 2
    removed = values @ transcoders[layer].W_dec[idx]

    def subtract(mlp_out, hook):
        mlp_out[0, -1] -= removed
        return mlp_out

    expected = model.run_with_hooks(tokens[None], fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", subtract)])[0]
    interventions = [(layer, len(tokens) - 1, int(i), 0.0) for i in idx]
    for shape in (tokens, tokens[None]):
        got = intervened_logits(rm, shape, interventions, freeze_attention=freeze_attention)
        assert torch.allclose(got, expected, atol=1e-3), (tuple(shape.shape), (got - expected).abs().max())
    assert not torch.allclose(expected[-1], model(tokens)[0, -1], atol=1e-2)  # the ablation did something


def test_scaling_by_minus_two_in_the_last_layer_is_linear(world):
    model, transcoders, rm, tokens = world
    layer, idx, values = _active_last_layer_latents(rm, tokens)
    change = -3 * values @ transcoders[layer].W_dec[idx]  # from a to -2a

    def add(mlp_out, hook):
        mlp_out[0, -1] += change
        return mlp_out

    expected = model.run_with_hooks(tokens[None], fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", add)])[0, -1].softmax(-1)
    interventions = [(layer, -1, int(i), float(-2 * v)) for i, v in zip(idx, values)]
    assert torch.allclose(next_token_probs(rm, tokens, interventions), expected, atol=1e-4)


def test_generation_without_interventions_is_greedy_generation(world):
    model, _, rm, tokens = world
    expected = model.generate(tokens[None], max_new_tokens=4, do_sample=False, verbose=False)[0]
    got = generate_with_interventions(rm, tokens, [], max_new_tokens=4)
    assert got.tolist() == expected.tolist()
    assert model.to_string(got[len(tokens):]).startswith(" Austin")


def test_generation_with_a_persistent_ablation_changes_the_continuation(world):
    model, _, rm, tokens = world
    _, acts = rm.get_activations(tokens)
    n = len(tokens) - 1
    # every active latent at the final position, in every layer, zeroed from there on
    interventions = [(int(l), slice(n, None), int(f), 0.0) for l, f in acts[:, n].nonzero()]
    got = generate_with_interventions(rm, tokens[None], interventions, max_new_tokens=3)
    assert got[: len(tokens)].tolist() == tokens.tolist() and len(got) == len(tokens) + 3
    assert model.to_string(got[len(tokens):len(tokens) + 1]) != " Austin"


@pytest.mark.parametrize("bad, message", [
    ([(7, 1, 0, 0.0)], "layer 7 does not exist"),
    ([(0, 40, 0, 0.0)], "position 40 is outside the prompt"),
    ([(0, 1, 5000, 0.0)], "latent 5000 does not exist"),
    ([(0, 1, 0)], "each one is a tuple"),
])
def test_bad_interventions_get_a_clear_message(world, bad, message):
    _, _, rm, tokens = world
    with pytest.raises(ValueError, match=message):
        next_token_probs(rm, tokens, bad)


def test_a_batch_of_prompts_is_refused(world):
    _, _, rm, tokens = world
    with pytest.raises(ValueError, match="one prompt"):
        intervened_logits(rm, torch.stack([tokens, tokens]), [(0, 1, 0, 0.0)])


def test_a_negative_position_counts_from_the_end(world):
    _, _, rm, tokens = world
    layer, idx, _ = _active_last_layer_latents(rm, tokens)
    end = next_token_probs(rm, tokens, [(layer, len(tokens) - 1, int(idx[0]), -5.0)])
    assert torch.allclose(next_token_probs(rm, tokens, [(layer, -1, int(idx[0]), -5.0)]), end)
    assert not torch.allclose(end, next_token_probs(rm, tokens), atol=1e-3)  # the intervention did something


def test_other_types_of_tokens_and_values_give_the_same_result(world):
    """What a learner might pass: ids as a (1, n) tensor, int32 or a list; a value as an int, a
    float64 or 0-d tensor (e.g. `other[layer, latent]`), numpy numbers, a layer as a 0-d tensor."""
    import numpy as np

    _, _, rm, tokens = world
    layer, idx, acts = _active_last_layer_latents(rm, tokens)
    latent, value = int(idx[0]), float(acts[0]) * -2
    want = next_token_probs(rm, tokens, [(layer, len(tokens) - 1, latent, value)])
    assert not torch.allclose(want, next_token_probs(rm, tokens), atol=1e-3)
    same_tokens = [tokens[None], tokens.to(torch.int32), tokens.tolist()]
    same_values = [torch.tensor(value, dtype=torch.float64), np.float32(value), torch.tensor([value])[0]]
    for t in same_tokens:
        assert torch.allclose(next_token_probs(rm, t, [(layer, len(tokens) - 1, latent, value)]), want, atol=1e-6)
    for v in same_values:
        assert torch.allclose(next_token_probs(rm, tokens, [(layer, len(tokens) - 1, latent, v)]), want, atol=1e-5)
    assert torch.allclose(next_token_probs(rm, tokens, [(torch.tensor(layer), np.int64(len(tokens) - 1), latent, value)]),
                          want, atol=1e-6)
    zero = next_token_probs(rm, tokens, [(layer, -1, latent, 0.0)])
    assert torch.allclose(next_token_probs(rm, tokens, [(layer, -1, latent, 0)]), zero)  # an int value
