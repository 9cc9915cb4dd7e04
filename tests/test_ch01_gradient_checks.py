"""The gradient checks of chapter 01 against wrong implementations: each must fail with the
message meant for its mistake, a stub must be "not implemented yet", and the paper world the
checks compute by hand must agree with numbers worked out on paper."""

from __future__ import annotations

import einops
import pytest
import torch

from solutions import ch01_latent_gradients as ref
from solutions.ch01_latent_gradients import SparseTensor, hook_layer, sae_acts_name
from utils.checks import CheckFailed

# -------------------------------------------------------------------------------------------------
# Wrong implementations, one mistake each (the rest as in the reference)


def later_acts(values, inds, shape, sae_from, sae_to, model, start=None, extra_blocks=0, decode=None, detach=False,
               output="sparse"):
    """latent_acts_to_later_latent_acts with a configurable mistake."""
    acts = SparseTensor.from_sparse((values.detach() if detach else values, inds, shape)).dense
    resid = decode(sae_from, acts) if decode else sae_from.decode(acts)
    start = hook_layer(sae_from) if start is None else start
    nxt = SparseTensor.from_dense(sae_to.encode(model(resid, start_at_layer=start,
                                                      stop_at_layer=hook_layer(sae_to) + extra_blocks)))
    if output == "dense first":
        return nxt.dense, (nxt.dense,)
    if output == "bare aux":
        return nxt.sparse[0], nxt.dense
    return nxt.sparse[0], (nxt.dense,)


def _residual_twice(values, inds, shape, sae_from, sae_to, model):
    resid = sae_from.decode(SparseTensor.from_sparse((values, inds, shape)).dense)
    out = resid
    for block in model.blocks[hook_layer(sae_from):hook_layer(sae_to)]:
        out = block(out)
    nxt = SparseTensor.from_dense(sae_to.encode(resid + out))
    return nxt.sparse[0], (nxt.dense,)


def _encoded_with_sae_from(values, inds, shape, sae_from, sae_to, model):
    resid = sae_from.decode(SparseTensor.from_sparse((values, inds, shape)).dense)
    out = model(resid, start_at_layer=hook_layer(sae_from), stop_at_layer=hook_layer(sae_to))
    nxt = SparseTensor.from_dense(sae_from.encode(out))
    return nxt.sparse[0], (nxt.dense,)


def _recon_encoded(*args):
    sae_to = args[4]
    _, (dense,) = ref.latent_acts_to_later_latent_acts(*args)
    nxt = SparseTensor.from_dense(sae_to.encode(sae_to.decode(dense)))
    return nxt.sparse[0], (nxt.dense,)


WRONG_LATER = {
    "one block too many": (
        lambda *a: later_acts(*a, extra_blocks=1),
        "the dense later activations has wrong values",
        "Hint: the later SAE got the residual stream after the wrong number of blocks",
    ),
    "dense first output": (
        lambda *a: later_acts(*a, output="dense first"),
        "the values has shape (1, 3, 2) but should have shape (4,)",
        "Hint: the first output should be the nonzero values (SparseTensor.sparse[0])",
    ),
    "aux not a tuple": (
        lambda *a: later_acts(*a, output="bare aux"),
        "the second output should be a 1-tuple (dense,), but it is a bare tensor",
        "",
    ),
    "detached input": (
        lambda *a: later_acts(*a, detach=True),
        "its Jacobian has wrong values",
        "Hint: every gradient is zero",
    ),
    "started from layer 0": (  # invisible in the paper world, whose earlier SAE is at layer 0
        lambda *a: later_acts(*a, start=0),
        "(course world, resid_pre_1 → resid_pre_3): the dense later activations has wrong values",
        "Hint: the blocks ran from layer 0",
    ),
    "no decoder bias": (  # the paper world's SAEs have no biases
        lambda *a: later_acts(*a, decode=lambda sae, x: x @ sae.W_dec),
        "(course world, resid_pre_1 → resid_pre_3)",
        "Hint: the decoder bias is missing",
    ),
    "decoder bias added twice": (
        lambda *a: later_acts(*a, decode=lambda sae, x: sae.decode(x) + sae.b_dec),
        "(course world, resid_pre_1 → resid_pre_3)",
        "Hint: the decoder bias is added twice",
    ),
    "the blocks' input added to their output": (
        _residual_twice,
        "(paper world, layer 0 → layer 1): the dense later activations has wrong values",
        "Hint: the blocks' output already contains their input",
    ),
    "encoded with sae_from": (
        _encoded_with_sae_from,  # the SAEs of the paper world differ in size: the shape gives it away
        "(paper world, layer 0 → layer 1): the dense later activations has shape (1, 3, 3) but should have shape "
        "(1, 3, 2)",
        "Hint: your result has sae_from's number of latents (3), not sae_to's (2)",
    ),
    "sae_to's reconstruction encoded": (
        lambda *a: _recon_encoded(*a),
        "(course world, resid_pre_1 → resid_pre_3)",
        "Hint: these are sae_to's activations on its own reconstruction",
    ),
}


def gradients(tokens, sae_from, sae_to, model, error_term=True, set_attribute=False, transpose=False, dense=False,
              plain_tensors=False, later=ref.latent_acts_to_later_latent_acts, extra_names=()):
    """latent_to_latent_gradients (either kind, via `later`) with a configurable mistake."""
    names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
    if set_attribute:
        sae_from.use_error_term = sae_to.use_error_term = True  # ... and never put back
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(
            tokens, saes=[sae_from, sae_to], names_filter=[*extra_names, *names],
            use_error_term=None if set_attribute else error_term, stop_at_layer=hook_layer(sae_to) + 1,
        )
    prev, nxt = SparseTensor.from_dense(cache[names[0]]), SparseTensor.from_dense(cache[names[1]])
    extra = [cache[n] for n in extra_names]
    if dense:
        def from_dense(d, *args):
            values, (recon,) = later(*SparseTensor.from_dense(d).sparse, *args)
            return SparseTensor.from_dense(recon).sparse[0], (recon,)

        with torch.enable_grad():
            grads, (recon,) = torch.func.jacrev(from_dense, has_aux=True)(prev.dense, sae_from, sae_to, model, *extra)
    else:
        grads, (recon,) = torch.func.jacrev(later, has_aux=True)(*prev.sparse, sae_from, sae_to, model, *extra)
    outputs = [grads.T if transpose else grads, prev, nxt, SparseTensor.from_dense(recon)]
    if plain_tensors:
        outputs[1:] = [x.dense for x in outputs[1:]]
    return tuple(outputs)


NO_ERROR_TERM_HINT = "Hint: latent_acts_next equals the activations computed from the earlier SAE's reconstruction"
TRANSPOSED_HINT = "Hint: the Jacobian is transposed"

WRONG_GRADIENTS = {
    "no error term": (lambda *a: gradients(*a, error_term=False), "latent_acts_next.dense has wrong values", NO_ERROR_TERM_HINT),
    "transposed": (lambda *a: gradients(*a, transpose=True),
                   "latent_latent_gradients has shape (5, 4) but should have shape (4, 5)", TRANSPOSED_HINT),
    "error term left on": (lambda *a: gradients(*a, set_attribute=True),
                           "left sae.use_error_term = True on the SAE at blocks.0.hook_resid_pre, blocks.1.hook_resid_pre", ""),
    "Jacobian of the dense tensor": (lambda *a: gradients(*a, dense=True),
                                     "latent_latent_gradients has shape (4, 1, 3, 3) but should have shape (4, 5)",
                                     "Hint: the Jacobian is taken with respect to the dense activations"),
    "dense outputs": (lambda *a: gradients(*a, plain_tensors=True),
                      "latent_acts_prev should be a SparseTensor, but is a dense Tensor", ""),
}


def token_acts(token_scales, tokens, sae, model, token_only=False, ignore_scales=False, extra_blocks=0):
    """tokens_to_latent_acts with a configurable mistake."""
    if token_only:
        resid = model.embed(tokens) * token_scales[..., None] + model.pos_embed(tokens)
    else:
        resid = model(tokens, stop_at_layer=0) * (1 if ignore_scales else token_scales[..., None])
    resid = model(resid, start_at_layer=0, stop_at_layer=hook_layer(sae) + extra_blocks)
    acts = SparseTensor.from_dense(sae.encode(resid))
    return acts.sparse[0], (acts.dense,)


TOKEN_ONLY_HINT = "Hint: only the token embeddings were scaled"
WRONG_TOKEN_ACTS = {
    "token embeddings only": (lambda *a: token_acts(*a, token_only=True), TOKEN_ONLY_HINT),
    "scales ignored": (lambda *a: token_acts(*a, ignore_scales=True), "Hint: the activations do not depend on token_scales"),
    "one block too many": (lambda *a: token_acts(*a, extra_blocks=1), "Hint: one block too many"),
    "scales added": (lambda *a: _scales_added(*a), "Hint: the scales were added to the input"),
}


def _scales_added(token_scales, tokens, sae, model):
    resid = model(tokens, stop_at_layer=0) + token_scales.unsqueeze(-1)
    acts = SparseTensor.from_dense(sae.encode(model(resid, start_at_layer=0, stop_at_layer=hook_layer(sae))))
    return acts.sparse[0], (acts.dense,)


def token_gradients(tokens, sae, model, rearrange=True, acts_fn=ref.tokens_to_latent_acts):
    grads, (dense,) = torch.func.jacrev(acts_fn, has_aux=True)(torch.ones(tokens.shape), tokens, sae, model)
    if rearrange:
        grads = einops.rearrange(grads, "n batch seq -> batch seq n")
    return grads, SparseTensor.from_dense(dense)


WRONG_TOKEN_GRADIENTS = {
    "not rearranged": (lambda *a: token_gradients(*a, rearrange=False),
                       "the gradients has shape (4, 1, 3) but should have shape (1, 3, 4). Hint: jacrev puts the output dimension first"),
    "token embeddings only": (lambda *a: token_gradients(*a, acts_fn=WRONG_TOKEN_ACTS["token embeddings only"][0]),
                              f"the gradients has wrong values: 2 of 12 elements differ, first at index (0, 1, 1) "
                              f"(got 3, expected 4.5). {TOKEN_ONLY_HINT}"),
}


def logits_fn(values, inds, shape, sae, model, token_ids=None, position=-1, none_index=False):
    acts = SparseTensor.from_sparse((values, inds, shape)).dense
    logits = model(sae.decode(acts), start_at_layer=hook_layer(sae))[0]
    logits = logits if position is None else logits[position]
    if none_index or token_ids is not None:
        return logits[token_ids], (logits,)
    return logits, (logits,)


WRONG_LOGITS = {
    "first position": (lambda *a: logits_fn(*a, position=0),
                       "the logits (aux) has wrong values", "Hint: these are the logits of the first position"),
    "every position": (lambda *a: logits_fn(*a, position=None),
                       "the logits (aux) has shape (3, 3) but should have shape (3,)",
                       "Hint: return the logits of the last position only"),
    "logits[None]": (lambda *a: logits_fn(*a, none_index=True),
                     "token_ids=None): the selected logits has shape (1, 3) but should have shape (3,)",
                     "Hint: your result has an extra leading dimension of size 1"),
}


def logit_gradients(tokens, sae, model, k=None, error_term=True, ids_from_recon=False, transpose=False,
                    set_attribute=False):
    if set_attribute:
        sae.use_error_term = True
    with torch.no_grad():
        logits, cache = model.run_with_cache_with_saes(tokens, saes=[sae], names_filter=[sae_acts_name(sae)],
                                                       use_error_term=None if set_attribute else error_term)
    acts = SparseTensor.from_dense(cache[sae_acts_name(sae)])
    logits = logits[0, -1]
    _, (recon,) = ref.latent_acts_to_logits(*acts.sparse, sae, model)
    token_ids = (recon if ids_from_recon else logits).topk(k).indices.tolist()
    grads, (recon,) = torch.func.jacrev(ref.latent_acts_to_logits, has_aux=True)(*acts.sparse, sae, model, token_ids)
    return grads.T if transpose else grads, logits, recon, token_ids, acts


WRONG_LOGIT_GRADIENTS = {
    "no error term": (lambda *a, **k: logit_gradients(*a, **k, error_term=False),
                      "Hint: logits equals the reconstructed logits"),
    "top logits of the reconstruction": (
        lambda *a, **k: logit_gradients(*a, **k, ids_from_recon=True),
        "(paper world, SAE at layer 1, k=2): token_ids is [2, 0] but should be [2, 1], the 2 largest true logits, "
        "largest first. Hint: these are the top logits of the reconstruction"),
    "transposed": (lambda *a, **k: logit_gradients(*a, **k, transpose=True),
                   "latent_logit_gradients has shape (4, 2) but should have shape (2, 4). " + TRANSPOSED_HINT),
    "error term left on": (lambda *a, **k: logit_gradients(*a, **k, set_attribute=True),
                           "left sae.use_error_term = True on the SAE at blocks.1.hook_resid_pre"),
    "logits of the middle position": (lambda *a, **k: _middle_logits(*a, **k),
                                      "Hint: these are the true logits of position 1"),
}


def _middle_logits(tokens, sae, model, k=None):
    grads, _, recon, token_ids, acts = ref.latent_to_logit_gradients(tokens, sae, model, k)
    with torch.no_grad():
        logits = model(tokens)[0, 1]
    return grads, logits, recon, token_ids, acts


def later_acts_attn(values, inds, shape, sae_from, sae_to, model, resid_pre, mistake=None):
    """latent_acts_to_later_latent_acts_attn with a configurable mistake."""
    z_recon = sae_from.decode(SparseTensor.from_sparse((values, inds, shape)).dense)
    stored = {}

    def replace(z, hook):
        if mistake == "hook returns nothing":
            z = z_recon.reshape(z.shape)  # rebinding a name does not change what the model sees
            return None
        if mistake == "added":
            return z + z_recon.reshape(z.shape)
        if mistake == "error term kept":
            with torch.no_grad():
                clean = sae_from.decode(sae_from.encode(z))
            return z_recon.reshape(z.shape) + (z - clean.reshape(z.shape))
        return z_recon.reshape(z.shape)

    def store(z, hook):
        stored["z"] = z

    hooks = [(sae_from.cfg.metadata.hook_name, replace), (sae_to.cfg.metadata.hook_name, store)]
    if mistake == "no MLP":
        hooks.append((f"blocks.{hook_layer(sae_from)}.hook_mlp_out", lambda x, hook: torch.zeros_like(x)))
    model.run_with_hooks(resid_pre, start_at_layer=hook_layer(sae_from), stop_at_layer=hook_layer(sae_to) + 1,
                         fwd_hooks=hooks)
    nxt = SparseTensor.from_dense(sae_to.encode(stored["z"]))
    return nxt.sparse[0], (nxt.dense,)


NOT_SPLICED_HINT = "Hint: the later latents are those of the clean run: the reconstruction never replaced z"
WRONG_LATER_ATTN = {
    "hook returns nothing": (lambda *a: later_acts_attn(*a, mistake="hook returns nothing"), NOT_SPLICED_HINT),
    "error term kept": (lambda *a: later_acts_attn(*a, mistake="error term kept"), NOT_SPLICED_HINT),
    "no MLP": (lambda *a: later_acts_attn(*a, mistake="no MLP"),
               "Hint: the MLP of the earlier SAE's block is missing"),
    "reconstruction added to z": (lambda *a: later_acts_attn(*a, mistake="added"),
                                  "Hint: the reconstruction was added to z"),
}


def gradients_attn(tokens, sae_from, sae_to, model, **mistake):
    resid = [f"blocks.{hook_layer(sae_from)}.hook_resid_pre"]
    return gradients(tokens, sae_from, sae_to, model, later=ref.latent_acts_to_later_latent_acts_attn,
                     extra_names=resid, **mistake)


WRONG_GRADIENTS_ATTN = {
    "no error term": (lambda *a: gradients_attn(*a, error_term=False), NO_ERROR_TERM_HINT),
    "transposed": (lambda *a: gradients_attn(*a, transpose=True),
                   "latent_latent_gradients has shape (7, 5) but should have shape (5, 7). " + TRANSPOSED_HINT),
    "error term left on": (lambda *a: gradients_attn(*a, set_attribute=True),
                           "left sae.use_error_term = True on the SAE at blocks.0.attn.hook_z, blocks.1.attn.hook_z"),
}


def failure(check, *args) -> str:
    with pytest.raises(CheckFailed) as raised:
        check(*args)
    return str(raised.value)


# -------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("mistake", WRONG_LATER)
def test_a_wrong_latent_acts_to_later_latent_acts_fails(checks01, mistake):
    fn, where, hint = WRONG_LATER[mistake]
    message = failure(checks01.test_latent_acts_to_later_latent_acts, fn)
    assert message.startswith("test_latent_acts_to_later_latent_acts failed: ")
    assert where in message and hint in message


@pytest.mark.parametrize("mistake", WRONG_GRADIENTS)
def test_a_wrong_latent_to_latent_gradients_fails(checks01, mistake):
    fn, where, hint = WRONG_GRADIENTS[mistake]
    message = failure(checks01.test_latent_to_latent_gradients, fn)
    assert message.startswith("test_latent_to_latent_gradients failed: latent_to_latent_gradients(paper world")
    assert where in message and hint in message


@pytest.mark.parametrize("mistake", WRONG_TOKEN_ACTS)
def test_a_wrong_tokens_to_latent_acts_fails(checks01, mistake):
    fn, hint = WRONG_TOKEN_ACTS[mistake]
    message = failure(checks01.test_tokens_to_latent_acts, fn)
    assert message.startswith("test_tokens_to_latent_acts failed: tokens_to_latent_acts(paper world, SAE at layer 1): "
                              "the dense activations has wrong values")
    assert hint in message


@pytest.mark.parametrize("mistake", WRONG_TOKEN_GRADIENTS)
def test_a_wrong_token_to_latent_gradients_fails(checks01, mistake):
    fn, expected = WRONG_TOKEN_GRADIENTS[mistake]
    message = failure(checks01.test_token_to_latent_gradients, fn)
    assert expected in message


@pytest.mark.parametrize("mistake", WRONG_LOGITS)
def test_a_wrong_latent_acts_to_logits_fails(checks01, mistake):
    fn, where, hint = WRONG_LOGITS[mistake]
    message = failure(checks01.test_latent_acts_to_logits, fn)
    assert where in message and hint in message


@pytest.mark.parametrize("mistake", WRONG_LOGIT_GRADIENTS)
def test_a_wrong_latent_to_logit_gradients_fails(checks01, mistake):
    fn, expected = WRONG_LOGIT_GRADIENTS[mistake]
    message = failure(checks01.test_latent_to_logit_gradients, fn)
    assert message.startswith("test_latent_to_logit_gradients failed: latent_to_logit_gradients(paper world")
    assert expected in message


@pytest.mark.parametrize("mistake", WRONG_LATER_ATTN)
def test_a_wrong_latent_acts_to_later_latent_acts_attn_fails(checks01, mistake):
    fn, hint = WRONG_LATER_ATTN[mistake]
    message = failure(checks01.test_latent_acts_to_later_latent_acts_attn, fn)
    assert "(paper world, z layer 0 → z layer 1): the dense later activations has wrong values" in message
    assert hint in message


@pytest.mark.parametrize("mistake", WRONG_GRADIENTS_ATTN)
def test_a_wrong_latent_to_latent_gradients_attn_fails(checks01, mistake):
    fn, expected = WRONG_GRADIENTS_ATTN[mistake]
    message = failure(checks01.test_latent_to_latent_gradients_attn, fn)
    assert message.startswith("test_latent_to_latent_gradients_attn failed: latent_to_latent_gradients_attn(paper world")
    assert expected in message


def test_a_missing_cache_entry_names_the_learner_line(checks01):
    def latent_to_latent_gradients_attn(tokens, sae_from, sae_to, model):
        names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
        _, cache = model.run_with_cache_with_saes(tokens, saes=[sae_from, sae_to], use_error_term=True, names_filter=names)
        resid_pre = cache[f"blocks.{hook_layer(sae_from)}.hook_resid_pre"]  # not cached: KeyError
        return resid_pre

    message = failure(checks01.test_latent_to_latent_gradients_attn, latent_to_latent_gradients_attn)
    assert message.startswith("test_latent_to_latent_gradients_attn failed: your function raised KeyError")
    assert "tests/test_ch01_gradient_checks.py" in message and "resid_pre = cache[" in message


def test_a_wrong_number_of_outputs_is_named(checks01):
    message = failure(checks01.test_latent_to_latent_gradients, lambda *a: ref.latent_to_latent_gradients(*a)[:2])
    assert message.endswith("should return 4 things (latent_latent_gradients, latent_acts_prev, latent_acts_next, "
                            "latent_acts_next_recon), but returned a tuple of length 2.")


STUBS = ["latent_acts_to_later_latent_acts", "latent_to_latent_gradients", "tokens_to_latent_acts",
         "token_to_latent_gradients", "latent_acts_to_logits", "latent_to_logit_gradients",
         "latent_acts_to_later_latent_acts_attn", "latent_to_latent_gradients_attn"]


@pytest.mark.parametrize("exercise", STUBS)
def test_a_stub_is_not_implemented_yet(checks01, exercise):
    def stub(*args, **kwargs):
        # YOUR CODE HERE
        raise NotImplementedError("not implemented yet")

    message = failure(getattr(checks01, f"test_{exercise}"), stub)
    assert message.startswith(f"test_{exercise}: not implemented yet (")


# -------------------------------------------------------------------------------------------------
# The paper world agrees with numbers worked out by hand


def test_the_paper_world_matches_the_hand_computation(checks01):
    world = checks01._paper_world()
    # Block 0 on x = [(1, 1), (1.5, 0), (0, 1.5)]: 2 (x_p + mean_{q<=p} x_q).
    _, cache = world.model.run_with_cache(world.tokens)
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"][0],
                               torch.tensor([[4.0, 4.0], [5.5, 1.0], [5 / 3, 14 / 3]]))
    # Early SAE on resid_pre_0: relu(x @ W_enc) = (x0, x1, x0 - x1).
    torch.testing.assert_close(world.saes["resid_0"].encode(cache["blocks.0.hook_resid_pre"])[0],
                               torch.tensor([[1.0, 1.0, 0.0], [1.5, 0.0, 1.5], [0.0, 1.5, 0.0]]))
    # The early SAE reconstructs r = [(1, 1), (2.25, 0), (0, 1.5)]; block 0 turns it into
    # [(4, 4), (7.75, 1), (2.167, 4.667)], and the late SAE's latents are relu(x0 - x1) and relu(x1).
    grads, prev, nxt, recon = ref.latent_to_latent_gradients(world.tokens, world.saes["resid_0"], world.saes["resid_1"],
                                                             world.model)
    torch.testing.assert_close(recon.dense[0], torch.tensor([[0.0, 4.0], [6.75, 1.0], [0.0, 14 / 3]]))
    # Row 1 is latent 0 at position 1. Position 1 reads r_0 with weight 2 · 1/2 = 1 and r_1 with
    # 2 · (1 + 1/2) = 3; latent i of the early SAE moves it by W_dec[i] · (1, -1) = 1, -1, 0.5.
    # The active early latents are (pos 0: 0, 1), (pos 1: 0, 2), (pos 2: 1), so the row is
    # (1·1, 1·(-1), 3·1, 3·0.5, 0).
    torch.testing.assert_close(grads[1], torch.tensor([1.0, -1.0, 3.0, 1.5, 0.0]))


def test_the_memory_helpers_report_the_biggest_objects(capsys):
    from utils.memory import memory_table, print_memory_status, profile_pytorch_memory

    namespace = {"big": torch.zeros(1024, 1024), "small": torch.zeros(10), "layer": torch.nn.Linear(512, 512),
                 "not_a_tensor": "hello", "_private": torch.zeros(2048, 2048)}
    rows = memory_table(namespace)
    assert [row[0] for row in rows] == ["big", "layer", "small"]
    assert rows[0] == ("big", "Tensor (1024, 1024)", "cpu", 4.0)
    assert rows[1][3] == pytest.approx((512 * 512 + 512) * 4 / 2**20)
    assert memory_table(namespace, min_mb=1.0) == rows[:2]
    profile_pytorch_memory(namespace, top=1)
    printed = capsys.readouterr().out
    assert "Process:" in printed and "big" in printed and "layer" not in printed
    print_memory_status()
    assert "MB resident" in capsys.readouterr().out


def test_latent_truth_scores_a_latent_against_labels_and_tokens():
    from utils.latent_truth import best_concepts, best_token, concept, score, token_dependence, token_is
    from utils.world.concepts import LabelledCorpus

    # One document: BOS, then tokens 5 6 5 6 8 6; concept "x" on positions 1 and 3.
    tokens = torch.tensor([[1, 5, 6, 5, 6, 8, 6]])
    labels = torch.zeros(1, 7, 1, dtype=torch.bool)
    labels[0, [1, 3], 0] = True
    data = LabelledCorpus(tokens, ["x"], labels, torch.tensor([[False] + [True] * 6]))
    fires = torch.tensor([[9.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0]])  # fires on BOS (ignored) and positions 1, 3
    match = score(fires, token_is(data, 5), data, "token 5")
    assert (match.precision, match.recall, match.n_fires, match.n_truth) == (1.0, 1.0, 2, 2)
    assert best_concepts(fires, data, n=1)[0].f1 == 1.0
    assert str(best_token(fires, data, FakeTokenizer())) == "token 't5': precision 1.00, recall 1.00 (2 tokens fire, 2 tokens true)"
    # Fires after token 5 only: the previous token explains it all, its own token half (worked out by hand).
    after_5 = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]])
    assert token_dependence(after_5, data, previous=True) == pytest.approx(1.0)
    assert token_dependence(after_5, data) == pytest.approx(0.5)
    assert best_token(after_5, data, FakeTokenizer(), previous=True).truth == "previous token 't5'"
    assert score(after_5, concept(data, "x"), data).precision == 0.0


class FakeTokenizer:
    def convert_ids_to_tokens(self, i):
        return f"t{i}"
