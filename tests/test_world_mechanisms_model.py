"""World v2 mechanism figures that need no dictionary (utils/world/mechanisms_model.py) and the
P12 bios (utils/world/bios.py), checked against identities that hold for ANY model.

- Patching the whole final residual stream at the last position gives the other prompt's own
  logits, so its flip rate is how often the other prompt is answered with its own capital.
- Patching the embedding (resid_pre 0) at the city position, when the prompts differ only in
  the city, IS running the other prompt: the same flip rate.
- The logit lens of the last layer's output is the model's own logits.
"""

from __future__ import annotations

import pytest
import torch

from utils.world import bios as B
from utils.world import facts as F
from utils.world.bars import _ids
from utils.world.mechanisms import two_hop_prompts, with_city
from utils.world.mechanisms_model import CLOSERS, closer_stages, state_from_embedding, state_patching


@pytest.fixture(scope="module")
def tiny_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from utils.world.tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=128,
                                  d_vocab=len(tok), act_fn="gelu", normalization_type="LN", seed=3)
    model = HookedTransformer(cfg)
    model.tokenizer = tok
    return model


@torch.no_grad()
def test_state_patching_identities(tiny_model):
    model = tiny_model
    prompts = two_hop_prompts(F.TWO_HOP_UNSEEN_CITIES[:3], per_city=1, seed=8765)
    result = state_patching(model, prompts, n_other=2)
    states = sorted(F.STATES)
    expected, pairs = 0, 0
    for i, cp in enumerate(prompts):
        others = [s for s in states if s != cp.state]
        for k in range(2):
            other = with_city(cp, F.STATES[others[(i * 2 + k) % len(others)]]["cities"][0])
            logits = model(torch.tensor([_ids(model, other.prompt.tokens)]))[0, -1]
            expected += int(logits.argmax()) == _ids(model, [other.prompt.answer])[0]
            pairs += 1
    assert result["pairs"] == pairs
    assert result["final"][-1] == pytest.approx(expected / pairs)  # whole final residual patched
    assert result["city"][0] == pytest.approx(expected / pairs)  # the embedding at the only differing token
    assert len(result["city"]) == len(result["layers"]) == model.cfg.n_layers + 1


@torch.no_grad()
def test_closer_stages_last_layer_is_the_models_own_ranking(tiny_model):
    from utils.world.prompts import make_prompts

    model = tiny_model
    result = closer_stages(model, n=20)
    prompts = make_prompts("p8_closer", n=20)
    ids = _ids(model, CLOSERS)
    right = 0
    for p in prompts:
        logits = model(torch.tensor([_ids(model, p.tokens)]))[0, -1]
        right += int(logits[ids].argmax()) == CLOSERS.index(p.answer)
    assert result["prompts"] == len(prompts)
    assert result["which_closer"][-1] == pytest.approx(right / len(prompts))


def test_state_from_embedding_by_hand():
    """Embeddings that ARE their state's direction give every city; embeddings that carry nothing
    about the state (one shared direction plus a city's own) give none right by design here."""
    from utils.world.tokenizer import build_tokenizer

    tok = build_tokenizer()
    states = sorted(F.STATES)

    class Stub:
        tokenizer = tok

    stub = Stub()
    stub.W_E = torch.zeros(len(tok), len(states) + len(F.CITY_TO_STATE))
    for j, city in enumerate(sorted(F.CITY_TO_STATE)):
        stub.W_E[tok.convert_tokens_to_ids(" " + city), states.index(F.CITY_TO_STATE[city])] = 1.0
    result = state_from_embedding(stub)
    assert result["accuracy"] == 1.0 and result["cities"] == len(F.CITY_TO_STATE)
    assert result["chance"] == pytest.approx(1 / len(states))
    for j, city in enumerate(sorted(F.CITY_TO_STATE)):  # orthogonal cities: every centroid is as far
        row = torch.zeros(stub.W_E.shape[1])
        row[len(states) + j] = 1.0
        stub.W_E[tok.convert_tokens_to_ids(" " + city)] = row
    assert state_from_embedding(stub)["correct"] <= len(F.CITY_TO_STATE) // len(states) + 1


def test_bios_are_balanced_and_deleting_pronouns_keeps_verb_agreement():
    bios = B.make_bios(8, B.GROUPS, seed=4)
    assert [(b.person, b.field) for b in bios] == list(B.GROUPS) * 2
    for b in bios:
        text = "".join(b.tokens[1:])
        prof = next(t.strip() for t in b.tokens if t.strip() in F.BIO_FIELD_OF)
        assert F.BIO_FIELD_OF[prof] == b.field
        assert (" I " in f" {text}") == (b.person == "first")
        kept = B.delete_tokens(b)
        assert not set(kept.tokens) & set(B.PRONOUNS)
        if b.person == "first":  # agreement survives: " am" / " have" / a bare verb after the deleted " I"
            assert {" am", " have", " work", " help", " know", " spend", " live", " like", " eat", " read",
                    " love"} & set(kept.tokens)
    assert B.make_bios(4, B.AMBIGUOUS, seed=1)[0].person == "first"
    held = B.make_bios(8, B.GROUPS, split="heldout", seed=3)
    assert [(b.person, b.field) for b in held] == list(B.GROUPS) * 2


def test_group_accuracy_and_probe_by_hand():
    bios = B.make_bios(8, B.GROUPS, seed=4)
    # a predictor that says "law" exactly for third-person bios: it follows the person
    x = torch.tensor([[float(b.person == "third")] for b in bios])
    result = B.group_accuracy(lambda z: (z[:, 0] > 0.5).long(), x, bios)
    assert result["person_accuracy"] == 1.0 and result["field_accuracy"] == 0.5
    assert result["groups"] == {"first/medicine": 1.0, "first/law": 0.0, "third/medicine": 0.0, "third/law": 1.0}
    assert result["worst_group"] == 0.0
    # a separable problem: the probe learns it
    y = B.field_labels(bios)
    x = torch.stack([y.float() * 2 - 1, torch.randn(len(bios))], 1)
    predict = B.train_probe(x, y)
    assert torch.equal(predict(x), y)


def test_head_locality_by_hand():
    from types import SimpleNamespace

    from utils.world.mechanisms_model import head_locality

    # 2 heads of width 2: latent 0 lives in head 0, latent 1 is split 50/50, latent 2 has 0.9 in head 1
    w = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.1 ** 0.5, 0.0, 0.9 ** 0.5, 0.0]])
    result = head_locality(SimpleNamespace(W_dec=w), n_heads=2)
    assert result["latents"] == 3 and result["head_local_share"] == pytest.approx(2 / 3)
    assert result["median_top_head_share"] == pytest.approx(0.9)
