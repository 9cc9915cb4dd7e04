"""World v2 mechanism measurements (utils/world/mechanisms.py), on inputs whose answer is known.

The IOI attention is checked on a model whose queries are zero, so every head attends uniformly
and the expected attention is a count divided by the prompt length. The supernode choice is
checked on activations with planted latents. The full measurement needs a trained run and its
transcoders; it is run by `python -m utils.world.mechanisms` and reported in the issue.
"""

from __future__ import annotations

import pytest
import torch

from utils.world import facts as F
from utils.world.mechanisms import (
    best_io_head, contrast_latents, ioi_head_attention, natural_values, select_supernodes, two_hop_prompts, with_city,
)
from utils.world.prompts import Prompt


@pytest.fixture(scope="module")
def uniform_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from utils.world.tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=64,
                                  d_vocab=len(tok), act_fn="gelu", seed=0)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()  # all scores 0: causal attention is uniform over positions 0..q
    model.tokenizer = tok
    return model


def _ioi_prompt(io: str, s: str) -> Prompt:
    words = ["<|bos|>", "When", f" {io}", " and", f" {s}", " went", " to", " the", " park", ",", f" {s}", " gave",
             " a", " kite", " to"]
    return Prompt(tuple(words), f" {io}", wrong=f" {s}")


def test_ioi_attention_by_hand_on_uniform_heads(uniform_model):
    prompts = [_ioi_prompt("Mary", "John"), _ioi_prompt("Anna", "Tom")]
    att = ioi_head_attention(uniform_model, prompts)
    n = len(prompts[0].tokens)
    assert att.shape == (2, 2, 2)
    # the final position attends 1/n to each position: IO occurs once, the subject twice
    assert torch.allclose(att[..., 0], torch.full((2, 2), 1 / n), atol=1e-5)
    assert torch.allclose(att[..., 1], torch.full((2, 2), 2 / n), atol=1e-5)


def test_ioi_attention_averages_prompts_of_different_lengths(uniform_model):
    short = Prompt(("<|bos|>", "Mary", " and", " John", " saw", " John", " and"), " Mary", wrong=" John")
    att = ioi_head_attention(uniform_model, [short, _ioi_prompt("Mary", "John")])
    expected_io = (1 / 7 + 1 / 15) / 2
    assert att[0, 0, 0].item() == pytest.approx(expected_io, abs=1e-5)


def test_ioi_attention_bad_prompts_get_one_line_errors(uniform_model):
    with pytest.raises(ValueError, match="no IOI prompts"):
        ioi_head_attention(uniform_model, [])
    with pytest.raises(ValueError, match="does not contain both names"):
        ioi_head_attention(uniform_model, [Prompt(("<|bos|>", "Mary", " ran"), " Anna", wrong=" Tom")])
    with pytest.raises(ValueError, match="subject's name"):
        ioi_head_attention(uniform_model, [Prompt(("<|bos|>", "Mary", " ran"), " Mary")])


def test_best_io_head_skips_layer_zero():
    att = torch.zeros(3, 2, 2)
    att[0, 1, 0] = 0.9  # layer 0 is excluded by default
    att[2, 0, 0] = 0.5
    att[1, 1, 0] = 0.3
    assert best_io_head(att) == (2, 0, 0.5)
    assert best_io_head(att, min_layer=0) == (0, 1, pytest.approx(0.9))


def test_supernodes_find_latents_shared_by_every_city_of_a_state():
    cities = ["Dallas", "Houston", "Dallas", "Houston", "Toledo", "Dayton", "Portland", "Eugene"]
    states = ["Texas"] * 4 + ["Ohio"] * 2 + ["Oregon"] * 2
    acts = torch.zeros(len(cities), 20)
    acts[:4, 4] = 2.0                  # Texas: latent 4 fires on both Texas cities ...
    acts[[0, 2], 5] = 9.0              # ... latent 5 only on Dallas (a city-token latent): not a state latent
    acts[[0, 1, 2, 3], 9] = torch.tensor([1.0, 3.0, 1.0, 3.0])   # latent 9: per-city means 1 and 3, so min 1
    acts[4:6, 7] = 3.0                 # Ohio: latent 7 (3.0) ...
    acts[6, 7] = 1.0                   # ... which one Oregon city has at 1.0: score 3 - 1 = 2
    acts[6:, 11] = 0.5                 # Oregon: latent 11
    acts[7, 7] = 4.0                   # Eugene has latent 7 above Ohio's cities: Oregon's min is 1.0 < 3.0
    nodes = select_supernodes(acts, states, cities, size=3)
    assert nodes["Texas"] == [4, 9]    # scores 2 and 1; latent 5's Houston mean is 0
    assert nodes["Ohio"] == []         # latent 7: min over Ohio 3.0 - max elsewhere (Eugene) 4.0 < 0
    assert nodes["Oregon"] == [11]     # latent 7: min(1, 4) - 3 < 0; latent 11: 0.5 - 0
    assert natural_values(acts, states, {"Texas": [4, 9], "Oregon": [11]}) == {"Texas": [2.0, 2.0], "Oregon": [0.5]}


def test_supernodes_need_two_states_and_one_state_per_city():
    with pytest.raises(ValueError, match="at least two states"):
        select_supernodes(torch.ones(3, 5), ["Texas"] * 3, ["Dallas"] * 3)
    with pytest.raises(ValueError, match="two states"):
        select_supernodes(torch.ones(2, 5), ["Texas", "Ohio"], ["Dallas", "Dallas"])


def test_two_hop_prompts_mark_the_city_and_end_before_the_capital():
    prompts = two_hop_prompts(["Dallas", "Yuma"], per_city=3)
    assert len(prompts) == 6
    for cp in prompts:
        assert cp.prompt.tokens[cp.city_pos].strip() == cp.city
        assert cp.prompt.answer.strip() == F.STATE_TO_CAPITAL[cp.state]
        assert cp.state == F.CITY_TO_STATE[cp.city]
        assert cp.prompt.tokens[0] == "<|bos|>"


def test_with_city_changes_only_the_city_and_the_answer():
    cp = two_hop_prompts(["Dallas"], per_city=1)[0]
    other = with_city(cp, "Yuma")
    changed = [i for i, (a, b) in enumerate(zip(cp.prompt.tokens, other.prompt.tokens)) if a != b]
    assert changed == [cp.city_pos] and other.prompt.tokens[cp.city_pos] == " Yuma"
    assert (other.state, other.prompt.answer, other.city) == ("Arizona", " Phoenix", "Yuma")


def test_contrast_latents_by_hand():
    acts = torch.tensor([3.0, 0.0, 1.0, 0.5, 0.0])
    other = torch.tensor([0.0, 2.0, 1.0, 0.0, 0.25])
    # differences +3, -2, 0, +0.5, -0.25: the prompt's side is [0, 3], the other side [1, 4]
    assert contrast_latents(acts, other, size=3) == ([0, 3], [1, 4])
    assert contrast_latents(acts, other, size=1) == ([0], [1])
    assert contrast_latents(acts, acts, size=2) == ([], [])
