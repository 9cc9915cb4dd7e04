"""Checks for chapter 01. The notebook calls them as `tests.test_<exercise>(learner_code)`."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from solutions import ch01_latent_gradients as solution
from solutions.ch01_latent_gradients import SparseTensor as Reference
from utils.checks import Mistake, assert_tensor, check, expect, fail, inner_exercise_first, learner_function

# The hand-computable example of the notebook, with its sparse form written out.
HAND_DENSE = torch.tensor([[0.0, 2.0, 0.0], [1.5, 0.0, 3.0]])
HAND_VALUES = torch.tensor([2.0, 1.5, 3.0])
HAND_INDICES = torch.tensor([[0, 1], [1, 0], [1, 2]])


def _examples() -> dict[str, Tensor]:
    """Dense tensors covering 1-D, 2-D and 3-D inputs, other dtypes, all-zero and all-nonzero."""
    generator = torch.Generator().manual_seed(0)

    def sparse_random(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        # Non-negative like latent activations, about a quarter of the entries nonzero.
        values = torch.rand(shape, generator=generator, dtype=dtype) + 0.1
        return values * (torch.rand(shape, generator=generator) < 0.25)

    return {
        "the 2×3 example": HAND_DENSE,
        "a 1-D tensor": sparse_random(30),
        "a 2-D tensor": sparse_random(6, 7),
        "a 3-D float64 tensor": sparse_random(3, 4, 5, dtype=torch.float64),
        "a tensor with negative entries": torch.tensor([[0.0, -1.5, 2.0, 0.0], [-0.5, 0.0, 0.0, 3.0], [0.0, 0.0, -2.0, 0.0]]),
        "an all-zero tensor": torch.zeros(4, 3),
        "an all-nonzero tensor": torch.rand(2, 3, generator=generator) + 0.1,
    }


@check
def test_sparse_tensor(SparseTensor) -> None:
    """`from_dense` and `from_sparse` agree with the reference on every example."""
    _check_hand_example(SparseTensor)
    for name, dense in _examples().items():
        _check_from_dense(SparseTensor, dense, name)
        _check_from_sparse(SparseTensor, dense, name)
    _check_device(SparseTensor)
    _check_gradient(SparseTensor)
    _check_from_dense_gradient(SparseTensor)


def _check_hand_example(SparseTensor) -> None:
    where = "SparseTensor.from_dense(the 2×3 example)"
    result = _as_sparse_tensor(SparseTensor.from_dense(HAND_DENSE), where)
    _check_sparse_form(result, HAND_DENSE, HAND_VALUES, HAND_INDICES, where)
    # The given properties read the sparse form.
    assert_tensor(result.values, HAND_VALUES, f"{where}.values")
    assert_tensor(result.indices, HAND_INDICES, f"{where}.indices")
    _check_shape(result.shape, HAND_DENSE, f"{where}.shape")


def _check_from_dense(SparseTensor, dense: Tensor, name: str) -> None:
    where = f"SparseTensor.from_dense({name})"
    result = _as_sparse_tensor(SparseTensor.from_dense(dense), where)
    reference = Reference.from_dense(dense)
    _check_sparse_form(result, dense, reference.sparse[0], reference.sparse[1], where)
    assert_tensor(result.indices, reference.indices, f"{where}.indices")


def _check_sparse_form(result, dense: Tensor, values: Tensor, indices: Tensor, where: str) -> None:
    """`result.sparse` is (values, indices, dense.shape) and `result.dense` is `dense`."""
    actual_values, actual_indices, actual_shape = _unpack(result.sparse, f"{where}.sparse")
    assert_tensor(actual_indices, indices, f"{where}: indices", mistakes=_index_mistakes(dense))
    assert_tensor(actual_values, values, f"{where}: values", mistakes=_value_mistakes(dense))
    _check_shape(actual_shape, dense, f"{where}: shape")
    assert_tensor(result.dense, dense, f"{where}.dense")


def _check_from_sparse(SparseTensor, dense: Tensor, name: str) -> None:
    where = f"SparseTensor.from_sparse(sparse form of {name})"
    values, indices, shape = Reference.from_dense(dense).sparse
    result = _as_sparse_tensor(SparseTensor.from_sparse((values, indices, shape)), where)
    wrong_dtype = Mistake(
        lambda actual: actual.dtype != values.dtype,
        "create the dense tensor with the dtype (and device) of values, "
        "e.g. torch.zeros(shape, dtype=values.dtype, device=values.device).",
    )
    assert_tensor(result.dense, dense, f"{where}.dense", mistakes=[wrong_dtype])
    _unpack(result.sparse, f"{where}.sparse")
    assert_tensor(result.values, values, f"{where}.values")
    _check_shape(result.shape, dense, f"{where}.shape")


def _check_device(SparseTensor) -> None:
    """`dense` must follow the values' device. Without a GPU, the "meta" device stands in for one."""
    device = torch.device("cuda" if torch.cuda.is_available() else "meta")
    values = torch.ones(2, dtype=torch.float16, device=device)
    indices = torch.tensor([[0, 1], [1, 0]], device=device)
    try:
        dense = SparseTensor.from_sparse((values, indices, (2, 2))).dense
    except Exception:
        return  # code that needs real data cannot run on "meta"; the other examples cover it
    expect(
        isinstance(dense, Tensor) and dense.device == device and dense.dtype == torch.float16,
        f"SparseTensor.from_sparse(float16 values on {device}).dense is "
        f"{getattr(dense, 'dtype', '?')} on {getattr(dense, 'device', '?')}: it should follow the values "
        "(float16, on the same device). Pass dtype=values.dtype, device=values.device when you create it.",
    )


def _check_gradient(SparseTensor) -> None:
    values = torch.tensor([2.0, 1.5, 3.0], requires_grad=True)
    with torch.enable_grad():  # the notebook switches gradients off globally
        dense = SparseTensor.from_sparse((values, HAND_INDICES, (2, 3))).dense
    expect(
        dense.requires_grad,
        "SparseTensor.from_sparse(...).dense does not depend on values through autograd, so the "
        "later exercises cannot differentiate through it. Write the values in with tensor "
        "indexing rather than Python numbers (.item(), .tolist(), torch.tensor(...)).",
    )
    with torch.enable_grad():
        dense.sum().backward()
    assert_tensor(values.grad, torch.ones(3), "the gradient of from_sparse(...).dense.sum() w.r.t. values")


def _check_from_dense_gradient(SparseTensor) -> None:
    """The later exercises differentiate through from_dense(...).values too (the later latents' values)."""
    dense = HAND_DENSE.clone().requires_grad_(True)
    with torch.enable_grad():
        values = SparseTensor.from_dense(dense).sparse[0]
    expect(
        isinstance(values, Tensor) and values.requires_grad,
        "SparseTensor.from_dense(dense).values does not depend on dense through autograd, so the later exercises "
        "cannot differentiate through it. Take the values out of dense by indexing (dense[dense != 0]), without "
        ".detach(), .tolist() or torch.tensor(...).",
    )


# -------------------------------------------------------------------------------------------------
# Shared pieces


def _as_sparse_tensor(result, where: str):
    if not (hasattr(result, "sparse") and hasattr(result, "dense")):
        fail(
            f"{where} returned {type(result).__name__}, not a SparseTensor. "
            "End with `return cls(sparse, dense)`."
        )
    return result


def _unpack(sparse, where: str) -> tuple:
    expect(
        isinstance(sparse, (tuple, list)) and len(sparse) == 3,
        f"{where} should be a tuple (values, indices, shape), but is {type(sparse).__name__}"
        + (f" of length {len(sparse)}." if isinstance(sparse, (tuple, list)) else "."),
    )
    return tuple(sparse)


def _check_shape(shape, dense: Tensor, where: str) -> None:
    expected = tuple(dense.shape)
    expect(
        isinstance(shape, tuple),  # torch.Size is a tuple too
        f"{where} should be a tuple of ints, but is {type(shape).__name__}.",
        shape,
        [Mistake(lambda s: isinstance(s, Tensor), "use tuple(dense.shape), not a tensor.")],
    )
    expect(
        tuple(shape) == expected,
        f"{where} is {tuple(shape)} but should be {expected}.",
        shape,
        [
            Mistake(
                lambda s: tuple(s) == (math.prod(expected),) and len(expected) > 1,
                "shape is the dense tensor's full shape, not its number of entries: "
                "did you flatten the tensor?",
            )
        ],
    )


def _index_mistakes(dense: Tensor) -> list[Mistake]:
    rows = Reference.from_dense(dense).sparse[1]
    flat_positions = (dense.flatten() != 0).nonzero()
    return [
        Mistake(
            lambda a: isinstance(a, (tuple, list)),
            "indices should be one tensor of shape (n_nonzero, k). nonzero(as_tuple=True) gives "
            "one tensor per dimension instead: use nonzero() without as_tuple.",
        ),
        Mistake(
            lambda a: a.ndim == 2 and a.shape == rows.T.shape and rows.ndim == 2 and a.shape != rows.shape,
            f"indices should have shape (n_nonzero, k) = {tuple(rows.shape)}, one row per nonzero "
            "entry, not one row per dimension. Did you transpose it, e.g. argwhere(...).T or "
            "torch.stack(dense.nonzero(as_tuple=True))?",
        ),
        Mistake(
            lambda a: dense.ndim == 1 and a.ndim == 1,
            "indices keeps its last dimension: for a 1-D tensor its shape is (n_nonzero, 1). "
            "Did you squeeze it, e.g. nonzero().squeeze() or nonzero(as_tuple=True)[0]?",
        ),
        Mistake(
            lambda a: dense.ndim > 1 and a.numel() == len(rows) and a.flatten().tolist() == flat_positions.flatten().tolist(),
            "indices should hold one coordinate per dimension, not positions in the flattened "
            "tensor. Did you flatten the tensor before calling nonzero()?",
        ),
        Mistake(
            lambda a: a.is_floating_point(),
            "indices are coordinates and must be integers (torch.long); torch.nonzero returns them so.",
        ),
        Mistake(
            lambda a: len(a) == int((dense > 0).sum()) != len(rows),
            "nonzero means != 0: negative entries are nonzero too. Did you test dense > 0?",
        ),
    ]


def _value_mistakes(dense: Tensor) -> list[Mistake]:
    values = Reference.from_dense(dense).sparse[0]
    return [
        Mistake(
            lambda a: a.numel() == dense.numel() != values.numel(),
            "values should hold only the nonzero entries, but it holds every entry of the tensor.",
        ),
        Mistake(
            lambda a: isinstance(a, Tensor) and a.dtype != dense.dtype,
            f"values keeps the dtype of the dense tensor ({dense.dtype}). Take the entries out of "
            "the tensor by indexing rather than building a new tensor (torch.tensor(...), .float()).",
        ),
        Mistake(
            lambda a: a.shape == values.shape and torch.equal(a.sort().values, values.sort().values),
            "values has the right entries in the wrong order: list them in row-major order, "
            "the order of the rows of indices (the order torch.nonzero uses).",
        ),
        Mistake(
            lambda a: bool((values < 0).any()) and a.shape == values.shape and torch.equal(a, values.abs()),
            "values keeps the sign of each entry: these are the absolute values.",
        ),
        Mistake(
            lambda a: len(a) == int((dense > 0).sum()) != len(values),
            "nonzero means != 0: negative entries are nonzero too. Did you test dense > 0?",
        ),
    ]


# =================================================================================================
# Gradient exercises
#
# Every check below runs the learner's function twice:
# - on the *paper world*, a 2-layer model with d_model 2 and hand-set weights, small enough to
#   work out on paper. Its attention has zero queries and keys, so every head averages over the
#   prefix, and W_V = W_O = I; its MLP is a ReLU with W_in = W_out = I, which doubles a positive
#   input. So with all activations positive, each block maps a residual stream r to
#       block(r)_p = 2 (r_p + mean_{q <= p} r_q),
#   and the expected activations and gradients below follow from that formula alone;
# - on the course world, against the reference solution.
# Wrong answers are recognised by comparing them with the outputs of known wrong variants,
# computed only when a check has already failed.

PAPER_TOKENS = torch.tensor([[2, 0, 1]])
# A batch of two sequences, to catch code that uses only the first one; compared with the reference
# solution, which the one-sequence cases above check against hand-computed numbers.
PAPER_BATCH = torch.tensor([[2, 0, 1], [1, 2, 2]])
BATCH_HINT = Mistake(lambda a: isinstance(a, Tensor) and a.ndim >= 1 and a.shape[0] == 1,
                     "the batch has 2 sequences, but your result has 1: keep the whole batch (no tokens[0] or [:1]).")
PAPER_W_E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
PAPER_W_POS = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.0, 0.0]])
PAPER_W_U = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
# Two SAEs per kind, both linear + ReLU without biases: "early" has 3 latents, "late" has 2.
EARLY_W_ENC = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
EARLY_W_DEC = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0]])  # latent 2 reconstructs badly on purpose
LATE_W_ENC = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
LATE_W_DEC = torch.tensor([[1.0, 0.0], [1.0, 1.0]])

COURSE_PROMPT = "The Eiffel tower is in the city of"


def _paper_resid0(tokens: Tensor) -> Tensor:
    return PAPER_W_E[tokens] + PAPER_W_POS[: tokens.shape[1]]


@dataclass
class PaperWorld:
    model: Any
    saes: dict[str, Any]  # resid_0, resid_1 (hook_resid_pre) and z_0, z_1 (attn.hook_z)
    tokens: Tensor

    @property
    def resid0(self) -> Tensor:
        """The residual stream before block 0: token + positional embeddings."""
        return PAPER_W_E[self.tokens] + PAPER_W_POS[: self.tokens.shape[1]]


@lru_cache(maxsize=1)
def _paper_world() -> PaperWorld:
    from sae_lens import HookedSAETransformer, StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=2, n_heads=1, d_head=2, d_mlp=2, d_vocab=3, n_ctx=4,
                                  act_fn="relu", normalization_type=None, seed=0)
    model = HookedSAETransformer(cfg)
    state = {k: (v if k.endswith(("mask", "IGNORE")) else torch.zeros_like(v)) for k, v in model.state_dict().items()}
    state.update({"embed.W_E": PAPER_W_E, "pos_embed.W_pos": PAPER_W_POS, "unembed.W_U": PAPER_W_U})
    for layer in range(2):
        for name in ("attn.W_V", "attn.W_O"):
            state[f"blocks.{layer}.{name}"] = torch.eye(2)[None]
        for name in ("mlp.W_in", "mlp.W_out"):
            state[f"blocks.{layer}.{name}"] = torch.eye(2)
    model.load_state_dict(state)
    model.eval()

    def sae(hook: str, w_enc: Tensor, w_dec: Tensor):
        config = StandardSAEConfig(d_in=2, d_sae=w_enc.shape[1], apply_b_dec_to_input=False,
                                   reshape_activations="hook_z" if hook.endswith("hook_z") else "none",
                                   metadata=SAEMetadata(hook_name=hook))
        dictionary = StandardSAE(config)
        with torch.no_grad():
            dictionary.W_enc.copy_(w_enc)
            dictionary.W_dec.copy_(w_dec)
            dictionary.b_enc.zero_()
            dictionary.b_dec.zero_()
        if hook.endswith("hook_z"):
            dictionary.encode(torch.zeros(1, 1, 1, 2))  # sae_lens learns d_head from its first input
        return dictionary

    saes = {
        "resid_0": sae("blocks.0.hook_resid_pre", EARLY_W_ENC, EARLY_W_DEC),
        "resid_1": sae("blocks.1.hook_resid_pre", LATE_W_ENC, LATE_W_DEC),
        "z_0": sae("blocks.0.attn.hook_z", EARLY_W_ENC, EARLY_W_DEC),
        "z_1": sae("blocks.1.attn.hook_z", LATE_W_ENC, LATE_W_DEC),
    }
    return PaperWorld(model, saes, PAPER_TOKENS)


def _paper_block(r: Tensor) -> Tensor:
    """One block of the paper world: 2 (r_p + mean_{q <= p} r_q)."""
    return 2 * (r + _prefix_mean(r))


def _prefix_mean(r: Tensor) -> Tensor:
    return r.cumsum(-2) / torch.arange(1, r.shape[-2] + 1)[:, None]


def _block_jacobian(seq: int) -> Tensor:
    """C[p, q] = d block(r)_p / d r_q (a multiple of the identity): 2 (δ_pq + [q <= p] / (p + 1))."""
    return 2 * (torch.eye(seq) + torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None])


def _encode(r: Tensor, w_enc: Tensor) -> Tensor:
    return torch.relu(r @ w_enc)


def _sparse_jacobian(rows: Tensor, cols: Tensor, position_factor: Tensor, latent_factor: Tensor) -> Tensor:
    """J[r, c] = position_factor[p_r, q_c] * latent_factor[i_c, j_r] for rows (batch, p, j), cols (batch, q, i)."""
    return position_factor[rows[:, 1]][:, cols[:, 1]] * latent_factor[cols[:, 2]][:, rows[:, 2]].T


@lru_cache(maxsize=1)
def _course_world():
    from utils.world import load_attn_saes, load_model, load_resid_saes

    model = load_model()
    return model, load_resid_saes(), load_attn_saes()


def _course_tokens(model) -> Tensor:
    return model.to_tokens(COURSE_PROMPT)


def _repeated_tokens(model, half: int = 6) -> Tensor:
    from utils.world.prompts import repeated_random_tokens

    return torch.tensor([model.tokenizer.convert_tokens_to_ids(repeated_random_tokens(1, half, seed=1)[0])])


@contextmanager
def _clean_state(*saes):
    """Start with use_error_term False and put it back afterwards, whatever the learner did."""
    for sae in saes:
        sae.use_error_term = False
    try:
        with torch.enable_grad():
            yield
    finally:
        for sae in saes:
            sae.use_error_term = False


def _true_acts(model, tokens: Tensor, *saes) -> list[Tensor]:
    """True activations of each SAE (error terms on, so none changes what the model sees)."""
    names = [solution.sae_acts_name(s) for s in saes]
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(tokens, saes=list(saes), use_error_term=True, names_filter=names)
    return [cache[name] for name in names]


# -------------------------------------------------------------------------------------------------
# Checking the shape of what the learner returns


def _sparse_and_aux(result, where: str) -> tuple[Tensor, Tensor]:
    """`result` must be (values, (dense,)): what jacrev(..., has_aux=True) needs."""
    expect(isinstance(result, tuple) and len(result) == 2,
           f"{where} should return a pair (values, (dense,)), but returned {_describe(result)}.")
    values, aux = result
    if isinstance(aux, Tensor):
        fail(f"{where}: the second output should be a 1-tuple (dense,), but it is a bare tensor. "
             "Return `values, (dense,)`: jacrev(..., has_aux=True) passes the tuple through.")
    expect(isinstance(aux, tuple) and len(aux) == 1,
           f"{where}: the second output should be a 1-tuple (dense,), but is {_describe(aux)}.")
    return values, aux[0]


def _outputs(result, names: tuple[str, ...], where: str) -> tuple:
    expect(isinstance(result, (tuple, list)) and len(result) == len(names),
           f"{where} should return {len(names)} things ({', '.join(names)}), but returned {_describe(result)}.")
    return tuple(result)


def _as_sparse(result, where: str):
    if isinstance(result, Tensor):
        fail(f"{where} should be a SparseTensor, but is a dense Tensor: wrap it with SparseTensor.from_dense(...).")
    return _as_sparse_tensor(result, where)


def _describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    return "None" if value is None else f"a {type(value).__name__}"


def _jacobian(fn, args: tuple, where: str) -> Tensor:
    try:
        jacobian, _ = torch.func.jacrev(fn, has_aux=True)(*args)
    except Exception as err:
        if isinstance(err, NotImplementedError):
            raise
        fail(f"torch.func.jacrev could not differentiate {where} ({type(err).__name__}: {str(err)[:160]}). "
             "Keep every step a tensor operation on the input: no .item(), .tolist(), .detach(), torch.tensor(...) "
             "or in-place writes into a tensor made outside the function.")
    return jacobian


def _error_term_restored(where: str, *saes) -> None:
    left_on = [s.cfg.metadata.hook_name for s in saes if s.use_error_term]
    expect(not left_on,
           f"{where} left sae.use_error_term = True on the SAE at {', '.join(left_on)}. Pass use_error_term=True "
           "to run_with_cache_with_saes instead (it holds for that run only), or put back the old value "
           "(try/finally): otherwise later runs with that SAE spliced in silently keep the true activations.")


NOT_DIFFERENTIABLE = Mistake(lambda j: isinstance(j, Tensor) and bool((j == 0).all()),
                             "every gradient is zero: the output does not depend on the input through autograd. "
                             "Build the dense activations with SparseTensor.from_sparse(...) from the values "
                             "you were given, and don't detach anything on the way.")
TRANSPOSED = "the Jacobian is transposed: jacrev gives one row per output (later latent) and one column per input."


def _jacobian_mistakes(expected: Tensor, input_shape: tuple[int, ...]) -> list[Mistake]:
    return [
        Mistake(lambda j: j.shape == expected.T.shape and j.shape != expected.shape, TRANSPOSED),
        Mistake(lambda j: j.ndim > 2 and tuple(j.shape[1:]) == tuple(input_shape),
                "the Jacobian is taken with respect to the dense activations: pass the *sparse* values "
                "(SparseTensor.sparse, unpacked) to the jacrev-wrapped function, so it has one column per active latent."),
        NOT_DIFFERENTIABLE,
    ]


# -------------------------------------------------------------------------------------------------
# latent_acts_to_later_latent_acts


RESIDUAL_TWICE_HINT = ("the blocks' output already contains their input (each block adds to the residual stream): "
                       "use it as it is, without adding the residual stream again.")


def _decoder_bias_mistakes(variant, sae) -> list[Mistake]:
    """The reconstruction's decoder bias missing, subtracted or added twice; variant(decode) -> the result."""
    return [Mistake(lambda a, f=f: _close(a, variant(lambda x: x @ sae.W_dec + f * sae.b_dec)),
                    f"the decoder bias is {how}: use sae_from.decode(...), which adds b_dec once.")
            for f, how in ((0, "missing"), (-1, "subtracted"), (2, "added twice"))]


@check
def test_latent_acts_to_later_latent_acts(latent_acts_to_later_latent_acts) -> None:
    fn = latent_acts_to_later_latent_acts
    world = _paper_world()
    early, late = world.saes["resid_0"], world.saes["resid_1"]
    with _clean_state(early, late):
        acts = Reference.from_dense(_encode(world.resid0, EARLY_W_ENC))
        recon = acts.dense @ EARLY_W_DEC
        expected = _encode(_paper_block(recon), LATE_W_ENC)  # [[0, 4], [6.75, 1], [0, 4.667]]
        where = "latent_acts_to_later_latent_acts(paper world, layer 0 → layer 1)"
        args = (*acts.sparse, early, late, world.model)
        values, dense = _sparse_and_aux(fn(*args), where)
        wrong_layers = {
            "one block too many": _encode(_paper_block(_paper_block(recon)), LATE_W_ENC),
            "no block at all": _encode(recon, LATE_W_ENC),
        }
        layer_hint = Mistake(
            lambda a: any(_close(a, w) for w in wrong_layers.values()),
            "the later SAE got the residual stream after the wrong number of blocks. An SAE on "
            "blocks.ℓ.hook_resid_pre reads the input of block ℓ, so run start_at_layer=hook_layer(sae_from), "
            "stop_at_layer=hook_layer(sae_to) (stop_at_layer is exclusive).",
        )
        assert_tensor(dense, expected, f"{where}: the dense later activations", rtol=1e-4, atol=1e-5,
                      mistakes=[layer_hint,
                                Mistake(lambda a: _close(a, _encode(recon + _paper_block(recon), LATE_W_ENC)),
                                        RESIDUAL_TWICE_HINT),
                                Mistake(lambda a: a.shape[-1] == EARLY_W_ENC.shape[1] != expected.shape[-1],
                                        f"your result has sae_from's number of latents ({EARLY_W_ENC.shape[1]}), not "
                                        f"sae_to's ({expected.shape[-1]}): encode with sae_to, the later SAE.")])
        assert_tensor(values, expected[expected != 0], f"{where}: the values", rtol=1e-4, atol=1e-5, mistakes=[
            Mistake(lambda a: a.shape == expected.shape,
                    "the first output should be the nonzero values (SparseTensor.sparse[0]), not the dense tensor."),
        ])
        rows = expected.nonzero()
        expected_jacobian = _sparse_jacobian(rows, acts.sparse[1], _block_jacobian(3), EARLY_W_DEC @ LATE_W_ENC)
        assert_tensor(_jacobian(fn, args, where), expected_jacobian, f"{where}: its Jacobian", rtol=1e-4, atol=1e-5,
                      mistakes=[NOT_DIFFERENTIABLE])

        batch_acts = Reference.from_dense(_encode(_paper_resid0(PAPER_BATCH), EARLY_W_ENC))
        args = (*batch_acts.sparse, early, late, world.model)
        where = "latent_acts_to_later_latent_acts(paper world, a batch of 2 sequences)"
        values, dense = _sparse_and_aux(fn(*args), where)
        want_values, (want_dense,) = solution.latent_acts_to_later_latent_acts(*args)
        assert_tensor(dense, want_dense.detach(), f"{where}: the dense later activations", rtol=1e-4, atol=1e-5,
                      mistakes=[BATCH_HINT])
        assert_tensor(values, want_values.detach(), f"{where}: the values", rtol=1e-4, atol=1e-5)

    model, resid_saes, _ = _course_world()
    sae_from, sae_to = resid_saes[1], resid_saes[3]
    with _clean_state(sae_from, sae_to):
        acts = Reference.from_dense(_true_acts(model, _course_tokens(model), sae_from)[0])
        args = (*acts.sparse, sae_from, sae_to, model)
        where = "latent_acts_to_later_latent_acts(course world, resid_pre_1 → resid_pre_3)"
        values, dense = _sparse_and_aux(fn(*args), where)
        want_values, (want_dense,) = solution.latent_acts_to_later_latent_acts(*args)

        def variant(start: int, stop: int, decode=None, residual_twice: bool = False) -> Tensor:
            resid = (decode or sae_from.decode)(acts.dense)
            out = model(resid, start_at_layer=start, stop_at_layer=stop)
            return sae_to.encode(out + resid if residual_twice else out)

        mistakes = [
            Mistake(lambda a: _close(a, variant(0, 3)),
                    "the blocks ran from layer 0: start at the earlier SAE's layer, start_at_layer=hook_layer(sae_from)."),
            Mistake(lambda a: _close(a, variant(1, 4)), "one block too many: stop_at_layer=hook_layer(sae_to)."),
            *_decoder_bias_mistakes(lambda decode: variant(1, 3, decode), sae_from),
            Mistake(lambda a: _close(a, variant(1, 3, residual_twice=True)), RESIDUAL_TWICE_HINT),
            Mistake(lambda a: _close(a, sae_to.encode(sae_to.decode(want_dense.detach()))),
                    "these are sae_to's activations on its own reconstruction: encode the residual stream itself, "
                    "sae_to.encode(resid), once."),
        ]
        assert_tensor(dense, want_dense.detach(), f"{where}: the dense later activations", rtol=1e-4, atol=1e-4,
                      mistakes=mistakes)
        assert_tensor(values, want_values.detach(), f"{where}: the values", rtol=1e-4, atol=1e-4)


def _close(actual, expected: Tensor) -> bool:
    return (isinstance(actual, Tensor) and actual.shape == expected.shape
            and torch.allclose(actual.detach().double(), expected.detach().double(), rtol=1e-4, atol=1e-4))


# -------------------------------------------------------------------------------------------------
# latent_to_latent_gradients (and the attention version: the same outputs, checked the same way)


GRADIENT_OUTPUTS = ("latent_latent_gradients", "latent_acts_prev", "latent_acts_next", "latent_acts_next_recon")


def _check_gradient_outputs(result, expected: dict[str, Tensor], where: str, sparse_input_shape: tuple[int, ...],
                            recon_hint: str, inner: str = "latent_acts_to_later_latent_acts") -> None:
    """Compare the four outputs of a latent_to_latent_gradients function with the expected ones
    (expected: the gradients and the three dense activations)."""
    grads, prev, nxt, recon = _outputs(result, GRADIENT_OUTPUTS, where)
    prev, nxt, recon = (_as_sparse(x, f"{where}: {name}") for x, name in zip((prev, nxt, recon), GRADIENT_OUTPUTS[1:]))
    assert_tensor(prev.dense, expected["prev"], f"{where}: latent_acts_prev.dense", rtol=1e-4, atol=1e-4)
    assert_tensor(nxt.dense, expected["next"], f"{where}: latent_acts_next.dense", rtol=1e-4, atol=1e-4, mistakes=[
        Mistake(lambda a: _close(a, expected["recon"]) and not _close(a, expected["next"]),
                "latent_acts_next equals the activations computed from the earlier SAE's reconstruction: the "
                "earlier SAE replaced the model's activations in your first run. Pass use_error_term=True to "
                "run_with_cache_with_saes, so the model runs on its true activations."),
    ])
    assert_tensor(recon.dense, expected["recon"], f"{where}: latent_acts_next_recon.dense", rtol=1e-4, atol=1e-4,
                  mistakes=[Mistake(lambda a: _close(a, expected["next"]), recon_hint),
                            Mistake(lambda a: isinstance(a, Tensor) and a.shape == expected["recon"].shape,
                                    "the true activations are right, so look at what you pass to "
                                    f"{inner}: the sparse form of latent_acts_prev"
                                    + (" and resid_pre_clean, the clean blocks.ℓ1.hook_resid_pre of sae_from's layer."
                                       if inner.endswith("_attn") else "."))])
    assert_tensor(grads, expected["grads"], f"{where}: latent_latent_gradients", rtol=1e-4, atol=1e-4,
                  mistakes=_jacobian_mistakes(expected["grads"], sparse_input_shape))


@check
def test_latent_to_latent_gradients(latent_to_latent_gradients, latent_acts_to_later_latent_acts=None) -> None:
    inner = latent_acts_to_later_latent_acts or learner_function(latent_to_latent_gradients, "latent_acts_to_later_latent_acts")
    with inner_exercise_first("latent_acts_to_later_latent_acts", inner, test_latent_acts_to_later_latent_acts):
        _latent_to_latent_gradients_cases(latent_to_latent_gradients)


def _latent_to_latent_gradients_cases(latent_to_latent_gradients) -> None:
    recon_hint = ("latent_acts_next_recon equals the true later activations: it should be the aux output of "
                  "latent_acts_to_later_latent_acts, computed from the earlier SAE's reconstruction.")
    world = _paper_world()
    early, late = world.saes["resid_0"], world.saes["resid_1"]
    where = "latent_to_latent_gradients(paper world, layer 0 → layer 1)"
    with _clean_state(early, late):
        result = latent_to_latent_gradients(world.tokens, early, late, world.model)
        _error_term_restored(where, early, late)
        prev = _encode(world.resid0, EARLY_W_ENC)  # [[1, 1, 0], [1.5, 0, 1.5], [0, 1.5, 0]]
        recon = _encode(_paper_block(prev @ EARLY_W_DEC), LATE_W_ENC)
        grads = _sparse_jacobian(recon.nonzero(), prev.nonzero(), _block_jacobian(3), EARLY_W_DEC @ LATE_W_ENC)
        expected = {"prev": prev, "next": _encode(_paper_block(world.resid0), LATE_W_ENC), "recon": recon,
                    "grads": grads}
        _check_gradient_outputs(result, expected, where, tuple(prev.shape), recon_hint)

        where = "latent_to_latent_gradients(paper world, a batch of 2 sequences)"
        _check_batch_of_two(latent_to_latent_gradients, solution.latent_to_latent_gradients, world, early, late, where,
                            recon_hint)

    model, resid_saes, _ = _course_world()
    sae_from, sae_to = resid_saes[0], resid_saes[2]
    where = "latent_to_latent_gradients(course world, resid_pre_0 → resid_pre_2)"
    with _clean_state(sae_from, sae_to):
        tokens = _course_tokens(model)
        result = latent_to_latent_gradients(tokens, sae_from, sae_to, model)
        _error_term_restored(where, sae_from, sae_to)
        want = solution.latent_to_latent_gradients(tokens, sae_from, sae_to, model)
        expected = {"grads": want[0].detach(), "prev": want[1].dense, "next": want[2].dense, "recon": want[3].dense}
        _check_gradient_outputs(result, expected, where, tuple(want[1].shape), recon_hint)


def _check_batch_of_two(fn, reference, world, early, late, where: str, recon_hint: str,
                        inner: str = "latent_acts_to_later_latent_acts") -> None:
    result = fn(PAPER_BATCH, early, late, world.model)
    _error_term_restored(where, early, late)
    grads, prev, nxt, recon = _outputs(result, GRADIENT_OUTPUTS, where)
    prev = _as_sparse(prev, f"{where}: latent_acts_prev")
    want = reference(PAPER_BATCH, early, late, world.model)
    assert_tensor(prev.dense, want[1].dense, f"{where}: latent_acts_prev.dense", rtol=1e-4, atol=1e-4,
                  mistakes=[BATCH_HINT])
    expected = {"grads": want[0].detach(), "prev": want[1].dense, "next": want[2].dense, "recon": want[3].dense}
    _check_gradient_outputs(result, expected, where, tuple(want[1].shape), recon_hint, inner)


# -------------------------------------------------------------------------------------------------
# tokens_to_latent_acts and token_to_latent_gradients


def _paper_token_acts(scales: Tensor, scale_positions: bool = True, scale_tokens: bool = True) -> Tensor:
    """The late SAE's activations at layer 1 when each position's input is scaled."""
    tokens = PAPER_W_E[PAPER_TOKENS] * (scales[..., None] if scale_tokens else 1)
    positions = PAPER_W_POS[:3] * (scales[..., None] if scale_positions else 1)
    return _encode(_paper_block(tokens + positions), LATE_W_ENC)


def _paper_token_gradients(acts: Tensor) -> Tensor:
    """d a_(p, j) / d s_q = C[p, q] (x_q · W_enc[:, j]) with x the unscaled input, as (batch, q, n_active)."""
    rows = acts.nonzero()
    resid0 = PAPER_W_E[PAPER_TOKENS] + PAPER_W_POS[:3]  # (1, 3, 2)
    per_latent = resid0[0] @ LATE_W_ENC  # (q, j)
    grads = _block_jacobian(3)[rows[:, 1]] * per_latent[:, rows[:, 2]].T  # (n_active, q)
    return grads.T[None]


TOKEN_ONLY_HINT = ("only the token embeddings were scaled: scale the whole input of block 0, token plus positional "
                   "embedding, i.e. the output of model(tokens, stop_at_layer=0).")


@check
def test_tokens_to_latent_acts(tokens_to_latent_acts) -> None:
    world = _paper_world()
    late = world.saes["resid_1"]
    where = "tokens_to_latent_acts(paper world, SAE at layer 1)"
    scales = torch.tensor([[1.0, 0.5, 2.0]])
    with _clean_state(late):
        values, dense = _sparse_and_aux(tokens_to_latent_acts(scales, world.tokens, late, world.model), where)
        expected = _paper_token_acts(scales)
        assert_tensor(dense, expected, f"{where}: the dense activations", rtol=1e-4, atol=1e-5, mistakes=[
            Mistake(lambda a: _close(a, _paper_token_acts(torch.ones(1, 3))),
                    "the activations do not depend on token_scales: multiply position p of the input by token_scales[..., p]."),
            Mistake(lambda a: _close(a, _paper_token_acts(scales, scale_positions=False)), TOKEN_ONLY_HINT),
            Mistake(lambda a: _close(a, _encode(_paper_block(_paper_block(_paper_token_acts_input(scales))), LATE_W_ENC)),
                    "one block too many: run the model up to stop_at_layer=hook_layer(sae)."),
            Mistake(lambda a: _close(a, _paper_token_acts(scales, scale_tokens=False)),
                    "only the positional embeddings were scaled: scale the whole input of block 0, token plus "
                    "positional embedding, i.e. the output of model(tokens, stop_at_layer=0)."),
            Mistake(lambda a: _close(a, _encode(_paper_block(_paper_token_acts_input(torch.ones(1, 3)) + scales[..., None]),
                                                LATE_W_ENC)),
                    "the scales were added to the input: multiply each position's input by its scale, "
                    "x * token_scales[..., None]."),
            Mistake(lambda a: _close(a, _paper_token_acts(scales ** 2)),
                    "the input was scaled twice (by token_scales squared): scale it once."),
            Mistake(lambda a: _close(a, _encode(_paper_block(_paper_token_acts_input(torch.ones(1, 3))) * scales[..., None],
                                                LATE_W_ENC)),
                    "the scales were applied after block 0: scale the input of block 0, model(tokens, stop_at_layer=0), "
                    "then run the blocks."),
        ])
        assert_tensor(values, expected[expected != 0], f"{where}: the values", rtol=1e-4, atol=1e-5, mistakes=[
            Mistake(lambda a: a.shape == expected.shape,
                    "the first output should be the nonzero values (SparseTensor.sparse[0]), not the dense tensor."),
        ])
        ones = torch.ones(1, 3)
        jacobian = _jacobian(tokens_to_latent_acts, (ones, world.tokens, late, world.model), where)
        expected_jacobian = _paper_token_gradients(_paper_token_acts(ones))[0].T[:, None, :]  # (n_active, batch, seq)
        assert_tensor(jacobian, expected_jacobian, f"{where}: its Jacobian with respect to token_scales",
                      rtol=1e-4, atol=1e-5, mistakes=[NOT_DIFFERENTIABLE])

        batch_scales = torch.tensor([[1.0, 0.5, 2.0], [0.25, 1.5, 1.0]])
        where = "tokens_to_latent_acts(paper world, a batch of 2 sequences with different token_scales)"
        values, dense = _sparse_and_aux(tokens_to_latent_acts(batch_scales, PAPER_BATCH, late, world.model), where)
        want_values, (want_dense,) = solution.tokens_to_latent_acts(batch_scales, PAPER_BATCH, late, world.model)
        assert_tensor(dense, want_dense.detach(), f"{where}: the dense activations", rtol=1e-4, atol=1e-5, mistakes=[
            BATCH_HINT,
            Mistake(lambda a: _close(a, solution.tokens_to_latent_acts(batch_scales[:1].expand(2, 3), PAPER_BATCH, late,
                                                                       world.model)[1][0]),
                    "every sequence was scaled with the first sequence's scales: sequence b uses token_scales[b]."),
        ])
        assert_tensor(values, want_values.detach(), f"{where}: the values", rtol=1e-4, atol=1e-5)

    model, resid_saes, _ = _course_world()
    sae = resid_saes[2]
    tokens = _course_tokens(model)
    scales = 0.5 + torch.rand(tokens.shape, generator=torch.Generator().manual_seed(0))
    where = "tokens_to_latent_acts(course world, resid_pre_2, random token_scales)"
    with _clean_state(sae):
        values, dense = _sparse_and_aux(tokens_to_latent_acts(scales, tokens, sae, model), where)
        want_values, (want_dense,) = solution.tokens_to_latent_acts(scales, tokens, sae, model)
        assert_tensor(dense, want_dense.detach(), f"{where}: the dense activations", rtol=1e-4, atol=1e-4)
        assert_tensor(values, want_values.detach(), f"{where}: the values", rtol=1e-4, atol=1e-4)


def _paper_token_acts_input(scales: Tensor) -> Tensor:
    return (PAPER_W_E[PAPER_TOKENS] + PAPER_W_POS[:3]) * scales[..., None]


@check
def test_token_to_latent_gradients(token_to_latent_gradients, tokens_to_latent_acts=None) -> None:
    inner = tokens_to_latent_acts or learner_function(token_to_latent_gradients, "tokens_to_latent_acts")
    with inner_exercise_first("tokens_to_latent_acts", inner, test_tokens_to_latent_acts):
        _token_to_latent_gradients_cases(token_to_latent_gradients)


def _token_to_latent_gradients_cases(token_to_latent_gradients) -> None:
    world = _paper_world()
    late = world.saes["resid_1"]
    where = "token_to_latent_gradients(paper world, SAE at layer 1)"
    with _clean_state(late):
        grads, acts = _outputs(token_to_latent_gradients(world.tokens, late, world.model),
                               ("token_latent_gradients", "latent_acts"), where)
        acts = _as_sparse(acts, f"{where}: latent_acts")
        expected_acts = _paper_token_acts(torch.ones(1, 3))  # [[0, 4], [4.5, 1], [0, 4.667]]
        assert_tensor(acts.dense, expected_acts, f"{where}: latent_acts.dense", rtol=1e-4, atol=1e-5, mistakes=[
            Mistake(lambda a: _close(a, _paper_token_acts(torch.zeros(1, 3))),
                    "these are the activations at token_scales = 0: differentiate at token_scales = torch.ones(tokens.shape)."),
        ])
        expected = _paper_token_gradients(expected_acts)  # (1, 3, 4)
        assert_tensor(grads, expected, f"{where}: the gradients", rtol=1e-4, atol=1e-5, mistakes=[
            Mistake(lambda g: g.shape == (expected.shape[2], *expected.shape[:2]),
                    "jacrev puts the output dimension first, (n_active, batch, seq): rearrange it to "
                    "(batch, seq, n_active), e.g. einops.rearrange(grads, 'n batch seq -> batch seq n')."),
            Mistake(lambda g: _close(g, _token_only_gradients(expected_acts)), TOKEN_ONLY_HINT),
            NOT_DIFFERENTIABLE,
        ])

        where = "token_to_latent_gradients(paper world, a batch of 2 sequences)"
        grads, acts = _outputs(token_to_latent_gradients(PAPER_BATCH, late, world.model),
                               ("token_latent_gradients", "latent_acts"), where)
        acts = _as_sparse(acts, f"{where}: latent_acts")
        want_grads, want_acts = solution.token_to_latent_gradients(PAPER_BATCH, late, world.model)
        assert_tensor(acts.dense, want_acts.dense.detach(), f"{where}: latent_acts.dense", rtol=1e-4, atol=1e-5,
                      mistakes=[BATCH_HINT])
        assert_tensor(grads, want_grads.detach(), f"{where}: the gradients", rtol=1e-4, atol=1e-5, mistakes=[BATCH_HINT])

    model, resid_saes, _ = _course_world()
    sae = resid_saes[3]
    tokens = _course_tokens(model)
    where = "token_to_latent_gradients(course world, resid_pre_3)"
    with _clean_state(sae):
        grads, acts = _outputs(token_to_latent_gradients(tokens, sae, model), ("token_latent_gradients", "latent_acts"), where)
        acts = _as_sparse(acts, f"{where}: latent_acts")
        want_grads, want_acts = solution.token_to_latent_gradients(tokens, sae, model)
        assert_tensor(acts.dense, want_acts.dense.detach(), f"{where}: latent_acts.dense", rtol=1e-4, atol=1e-4)
        assert_tensor(grads, want_grads.detach(), f"{where}: the gradients", rtol=1e-4, atol=1e-4)


def _token_only_gradients(acts: Tensor) -> Tensor:
    """The paper world's gradients had only the token embeddings been scaled."""
    rows = acts.nonzero()
    per_latent = PAPER_W_E[PAPER_TOKENS][0] @ LATE_W_ENC
    return (_block_jacobian(3)[rows[:, 1]] * per_latent[:, rows[:, 2]].T).T[None]


# -------------------------------------------------------------------------------------------------
# latent_acts_to_logits and latent_to_logit_gradients


def _paper_logits(late_acts: Tensor) -> Tensor:
    """All positions' logits when the late SAE's reconstruction replaces resid_pre_1: block 1, then W_U."""
    return _paper_block(late_acts @ LATE_W_DEC) @ PAPER_W_U


def _paper_logit_jacobian(acts: Tensor, token_ids: list[int]) -> Tensor:
    """d logit_t(last) / d a_(q, j) = C[last, q] (W_dec[j] · W_U[:, t]), for acts of shape (1, seq, d_sae)."""
    cols = acts.nonzero()
    position_factor = _block_jacobian(acts.shape[1])[-1][cols[:, 1]]  # (n_active,)
    per_latent = (LATE_W_DEC @ PAPER_W_U)[:, token_ids]  # (j, t)
    return per_latent[cols[:, 2]].T * position_factor[None, :]


@check
def test_latent_acts_to_logits(latent_acts_to_logits) -> None:
    world = _paper_world()
    late = world.saes["resid_1"]
    acts = Reference.from_dense(_encode(_paper_block(world.resid0), LATE_W_ENC))  # [[0, 4], [4.5, 1], [0, 4.667]]
    logits_all = _paper_logits(acts.dense)[0]  # (seq, d_vocab)
    with _clean_state(late):
        for token_ids in (None, [2, 0]):
            where = f"latent_acts_to_logits(paper world, token_ids={token_ids})"
            selected, logits = _sparse_and_aux(latent_acts_to_logits(*acts.sparse, late, world.model, token_ids), where)
            position_mistakes = [
                Mistake(lambda a: a.shape == logits_all.shape, "return the logits of the last position only, logits[0, -1]."),
                Mistake(lambda a: _close(a, logits_all[0]), "these are the logits of the first position: take logits[0, -1]."),
                Mistake(lambda a: a.ndim == 2 and a.shape[0] == 1,
                        "your result has an extra leading dimension of size 1: index the first sequence as well, "
                        "logits[0, -1] (not logits[:, -1], nor logits[None])."),
                Mistake(lambda a: _close(a, (acts.dense @ LATE_W_DEC @ PAPER_W_U)[0, -1]),
                        "these logits skip a block: run the model from start_at_layer=hook_layer(sae), the layer whose "
                        "residual stream the SAE reconstructs."),
            ]
            assert_tensor(logits, logits_all[-1], f"{where}: the logits (aux)", rtol=1e-4, atol=1e-4,
                          mistakes=position_mistakes)
            want = logits_all[-1] if token_ids is None else logits_all[-1, token_ids]
            assert_tensor(selected, want, f"{where}: the selected logits", rtol=1e-4, atol=1e-4,
                          mistakes=position_mistakes)
        jacobian = _jacobian(latent_acts_to_logits, (*acts.sparse, late, world.model, [2, 0]), where)
        assert_tensor(jacobian, _paper_logit_jacobian(acts.dense, [2, 0]), f"{where}: its Jacobian",
                      rtol=1e-4, atol=1e-4, mistakes=[NOT_DIFFERENTIABLE])

        batch_acts = Reference.from_dense(_encode(_paper_block(_paper_resid0(PAPER_BATCH)), LATE_W_ENC))
        batch_logits = _paper_logits(batch_acts.dense)  # (2, seq, d_vocab)
        where = "latent_acts_to_logits(paper world, a batch of 2 sequences, token_ids=None)"
        _, logits = _sparse_and_aux(latent_acts_to_logits(*batch_acts.sparse, late, world.model), where)
        assert_tensor(logits, batch_logits[0, -1], f"{where}: the logits (aux)", rtol=1e-4, atol=1e-4, mistakes=[
            Mistake(lambda a: _close(a, batch_logits[-1, -1]),
                    "these are the logits of the last sequence of the batch: take the first, logits[0, -1]."),
            Mistake(lambda a: a.shape == batch_logits[:, -1].shape,
                    "these are the last position's logits of every sequence: take the first sequence, logits[0, -1]."),
            Mistake(lambda a: a.shape == batch_logits[-1].shape,
                    "return the logits of the first sequence's last position only, logits[0, -1]."),
        ])

    model, resid_saes, _ = _course_world()
    sae = resid_saes[2]
    tokens = _course_tokens(model)
    where = "latent_acts_to_logits(course world, resid_pre_2)"
    with _clean_state(sae):
        acts = Reference.from_dense(_true_acts(model, tokens, sae)[0])
        token_ids = [model.to_single_token(t) for t in (" Paris", " Rome", " France")]
        selected, logits = _sparse_and_aux(latent_acts_to_logits(*acts.sparse, sae, model, token_ids), where)
        want_selected, (want_logits,) = solution.latent_acts_to_logits(*acts.sparse, sae, model, token_ids)
        assert_tensor(logits, want_logits.detach(), f"{where}: the logits (aux)", rtol=1e-4, atol=1e-3, mistakes=[
            Mistake(lambda a: _close(a, model(tokens)[0, -1]),
                    "these are the model's true logits: compute them from the SAE's reconstruction, "
                    "model(sae.decode(...), start_at_layer=hook_layer(sae)), with no error term."),
            Mistake(lambda a: _close(a, model(acts.dense @ sae.W_dec, start_at_layer=solution.hook_layer(sae))[0, -1]),
                    "the decoder bias is missing: use sae.decode(...), which adds b_dec."),
        ])
        assert_tensor(selected, want_selected.detach(), f"{where}: the selected logits", rtol=1e-4, atol=1e-3)


LOGIT_OUTPUTS = ("latent_logit_gradients", "logits", "logits_recon", "token_ids", "latent_acts")


def _check_logit_outputs(result, expected: dict, where: str, k: int) -> None:
    grads, logits, logits_recon, token_ids, acts = _outputs(result, LOGIT_OUTPUTS, where)
    acts = _as_sparse(acts, f"{where}: latent_acts")
    assert_tensor(acts.dense, expected["acts"], f"{where}: latent_acts.dense", rtol=1e-4, atol=1e-4)
    assert_tensor(logits, expected["logits"], f"{where}: logits", rtol=1e-4, atol=1e-3, mistakes=[
        Mistake(lambda a: _close(a, expected["logits_recon"]),
                "logits equals the reconstructed logits: the SAE replaced the model's activations. Pass "
                "use_error_term=True to the run that gives the true logits and activations."),
        Mistake(lambda a: a.ndim > 1, "return the logits of the last position only, shape (d_vocab,)."),
        *[Mistake(lambda a, p=p: _close(a, expected["logits_per_position"][p]),
                  f"these are the true logits of position {p}: take the last position, logits[0, -1].")
          for p in range(len(expected.get("logits_per_position", ())) - 1)],
    ])
    assert_tensor(logits_recon, expected["logits_recon"], f"{where}: logits_recon", rtol=1e-4, atol=1e-3, mistakes=[
        Mistake(lambda a: _close(a, expected["logits"]),
                "logits_recon equals the true logits: take it from the aux output of latent_acts_to_logits."),
    ])
    ids = token_ids.tolist() if isinstance(token_ids, Tensor) else token_ids
    expect(isinstance(ids, list) and ids == expected["token_ids"],
           f"{where}: token_ids is {ids!r} but should be {expected['token_ids']}, the {k} largest true logits, "
           "largest first.", ids, [
               Mistake(lambda a: a == expected["logits_recon"].topk(k).indices.tolist(),
                       "these are the top logits of the reconstruction: pick them from the true logits."),
               Mistake(lambda a: sorted(a) == sorted(expected["token_ids"]),
                       "the right tokens in the wrong order: keep topk's order, largest first."),
           ])
    assert_tensor(grads, expected["grads"], f"{where}: latent_logit_gradients", rtol=1e-4, atol=1e-3,
                  mistakes=_jacobian_mistakes(expected["grads"], tuple(expected["acts"].shape)))


@check
def test_latent_to_logit_gradients(latent_to_logit_gradients, latent_acts_to_logits=None) -> None:
    inner = latent_acts_to_logits or learner_function(latent_to_logit_gradients, "latent_acts_to_logits")
    with inner_exercise_first("latent_acts_to_logits", inner, test_latent_acts_to_logits):
        _latent_to_logit_gradients_cases(latent_to_logit_gradients)


def _latent_to_logit_gradients_cases(latent_to_logit_gradients) -> None:
    world = _paper_world()
    late = world.saes["resid_1"]
    where = "latent_to_logit_gradients(paper world, SAE at layer 1, k=2)"
    with _clean_state(late):
        result = latent_to_logit_gradients(world.tokens, late, world.model, k=2)
        _error_term_restored(where, late)
        acts = _encode(_paper_block(world.resid0), LATE_W_ENC)
        logits = (_paper_block(_paper_block(world.resid0)) @ PAPER_W_U)[0, -1]  # [10.78, 15.78, 37.33]
        expected = {"acts": acts, "logits": logits, "logits_recon": _paper_logits(acts)[0, -1], "token_ids": [2, 1],
                    "logits_per_position": (_paper_block(_paper_block(world.resid0)) @ PAPER_W_U)[0]}
        expected["grads"] = _paper_logit_jacobian(acts, [2, 1])
        _check_logit_outputs(result, expected, where, k=2)
        _check_k_none(latent_to_logit_gradients, world, late, expected)

    model, resid_saes, _ = _course_world()
    sae = resid_saes[2]
    tokens = _course_tokens(model)
    where = "latent_to_logit_gradients(course world, resid_pre_2, k=5)"
    with _clean_state(sae):
        result = latent_to_logit_gradients(tokens, sae, model, k=5)
        _error_term_restored(where, sae)
        grads, logits, logits_recon, token_ids, acts = solution.latent_to_logit_gradients(tokens, sae, model, k=5)
        expected = {"grads": grads.detach(), "logits": logits, "logits_recon": logits_recon.detach(),
                    "token_ids": token_ids, "acts": acts.dense, "logits_per_position": model(tokens)[0].detach()}
        _check_logit_outputs(result, expected, where, k=5)


def _check_k_none(latent_to_logit_gradients, world, late, expected: dict) -> None:
    """k=None: every logit. token_ids is None (the docstring), or every id, in vocabulary or in logit order."""
    where = "latent_to_logit_gradients(paper world, SAE at layer 1, k=None)"
    try:
        result = latent_to_logit_gradients(world.tokens, late, world.model, k=None)
    except NotImplementedError:
        raise
    except Exception as err:
        fail(f"{where} raised {type(err).__name__}: {str(err)[:120]}. With k=None, differentiate every logit: "
             "token_ids = None (latent_acts_to_logits then returns all logits).")
    _error_term_restored(where, late)
    grads, logits, _, token_ids, _ = _outputs(result, LOGIT_OUTPUTS, where)
    ids = token_ids.tolist() if isinstance(token_ids, Tensor) else token_ids
    d_vocab = len(expected["logits"])
    allowed = (None, list(range(d_vocab)), expected["logits"].argsort(descending=True).tolist())
    expect(ids in allowed, f"{where}: token_ids is {ids!r}; with k=None it should be None (every logit, in vocabulary "
                           "order).")
    rows = list(range(d_vocab)) if ids is None else ids
    assert_tensor(grads, _paper_logit_jacobian(expected["acts"], rows), f"{where}: latent_logit_gradients",
                  rtol=1e-4, atol=1e-3, mistakes=_jacobian_mistakes(_paper_logit_jacobian(expected["acts"], rows),
                                                                    tuple(expected["acts"].shape)))


# -------------------------------------------------------------------------------------------------
# Attention SAEs


def _paper_attn_expected(z_prev: Tensor) -> dict[str, Tensor]:
    """The paper world with the early z SAE at layer 0 and the late one at layer 1.

    z_0 = prefix mean of x; with z_0 replaced by r, resid_pre_1 = 2 (x + r) (the MLP doubles the
    residual stream x + attention output r), and z_1 = prefix mean of resid_pre_1.
    """
    x = PAPER_W_E[PAPER_TOKENS] + PAPER_W_POS[:3]
    recon = z_prev @ EARLY_W_DEC
    late_from = lambda r: _encode(_prefix_mean(2 * (x + r)), LATE_W_ENC)  # noqa: E731
    out = {"x": x, "next": late_from(_prefix_mean(x)), "recon": late_from(recon)}
    seq = x.shape[1]
    mean_factor = 2 * torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None]  # d z1_p / d r_q
    out["grads"] = _sparse_jacobian(out["recon"].nonzero(), z_prev.nonzero(), mean_factor, EARLY_W_DEC @ LATE_W_ENC)
    return out


NOT_SPLICED_HINT = ("the later latents are those of the clean run: the reconstruction never replaced z. The hook on "
                    "sae_from's hook_z must *return* the reconstruction (reshaped like z), and no error term may be "
                    "added back.")


ADDED_TO_Z_HINT = ("the reconstruction was added to z: the hook must return the reconstruction in place of z "
                   "(reshaped like it), not z plus the reconstruction.")


@check
def test_latent_acts_to_later_latent_acts_attn(latent_acts_to_later_latent_acts_attn) -> None:
    fn = latent_acts_to_later_latent_acts_attn
    world = _paper_world()
    early, late = world.saes["z_0"], world.saes["z_1"]
    where = "latent_acts_to_later_latent_acts_attn(paper world, z layer 0 → z layer 1)"
    with _clean_state(early, late):
        x = PAPER_W_E[PAPER_TOKENS] + PAPER_W_POS[:3]
        acts = Reference.from_dense(_encode(_prefix_mean(x), EARLY_W_ENC))  # [[1, 1, 0], [1.25, .5, .75], [.83, .83, 0]]
        expected = _paper_attn_expected(acts.dense)
        args = (*acts.sparse, early, late, world.model, x)
        values, dense = _sparse_and_aux(fn(*args), where)
        assert_tensor(dense, expected["recon"], f"{where}: the dense later activations", rtol=1e-4, atol=1e-5, mistakes=[
            Mistake(lambda a: _close(a, expected["next"]), NOT_SPLICED_HINT),
            Mistake(lambda a: _close(a, _encode(_prefix_mean(2 * (x + _prefix_mean(x) + acts.dense @ EARLY_W_DEC)),
                                                LATE_W_ENC)), ADDED_TO_Z_HINT),
            Mistake(lambda a: _close(a, _encode(_prefix_mean(x + acts.dense @ EARLY_W_DEC), LATE_W_ENC)),
                    "the MLP of the earlier SAE's block is missing: run the model from resid_pre of sae_from's layer "
                    "so that the rest of that block (its MLP) runs too."),
        ])
        assert_tensor(values, expected["recon"][expected["recon"] != 0], f"{where}: the values", rtol=1e-4, atol=1e-5)
        assert_tensor(_jacobian(fn, args, where), expected["grads"], f"{where}: its Jacobian", rtol=1e-4, atol=1e-5,
                      mistakes=[NOT_DIFFERENTIABLE])

        x2 = _paper_resid0(PAPER_BATCH)
        batch_acts = Reference.from_dense(_encode(_prefix_mean(x2), EARLY_W_ENC))
        args = (*batch_acts.sparse, early, late, world.model, x2)
        where = "latent_acts_to_later_latent_acts_attn(paper world, a batch of 2 sequences)"
        values, dense = _sparse_and_aux(fn(*args), where)
        want_values, (want_dense,) = solution.latent_acts_to_later_latent_acts_attn(*args)
        assert_tensor(dense, want_dense.detach(), f"{where}: the dense later activations", rtol=1e-4, atol=1e-5,
                      mistakes=[BATCH_HINT])
        assert_tensor(values, want_values.detach(), f"{where}: the values", rtol=1e-4, atol=1e-5)

    model, _, attn_saes = _course_world()
    sae_from, sae_to = attn_saes[1], attn_saes[2]
    tokens = _repeated_tokens(model)
    where = "latent_acts_to_later_latent_acts_attn(course world, attn_z_1 → attn_z_2)"
    with _clean_state(sae_from, sae_to):
        _, cache = model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_pre"])
        acts = Reference.from_dense(_true_acts(model, tokens, sae_from)[0])
        args = (*acts.sparse, sae_from, sae_to, model, cache["blocks.1.hook_resid_pre"])
        values, dense = _sparse_and_aux(fn(*args), where)
        want_values, (want_dense,) = solution.latent_acts_to_later_latent_acts_attn(*args)
        true_next = _true_acts(model, tokens, sae_to)[0]
        assert_tensor(dense, want_dense.detach(), f"{where}: the dense later activations", rtol=1e-4, atol=1e-4,
                      mistakes=[Mistake(lambda a: _close(a, true_next), NOT_SPLICED_HINT),
                                Mistake(lambda a: _close(a, _attn_variant(acts, sae_from, sae_to, model, args[-1], no_bias=True)),
                                        "the decoder bias is missing: use sae_from.decode(...), which adds b_dec."),
                                Mistake(lambda a: _close(a, _attn_variant(acts, sae_from, sae_to, model, args[-1], added=True)),
                                        ADDED_TO_Z_HINT),
                                Mistake(lambda a: _close(a, _attn_variant(acts, sae_from, sae_to, model, args[-1], start=0)),
                                        "the model ran from layer 0: resid_pre_clean is the residual stream before "
                                        "sae_from's block, so start_at_layer=hook_layer(sae_from).")])
        assert_tensor(values, want_values.detach(), f"{where}: the values", rtol=1e-4, atol=1e-4)


def _attn_variant(acts, sae_from, sae_to, model, resid, start=None, no_bias=False, added=False) -> Tensor:
    """The later latents when the reconstruction replaces z, with a known mistake."""
    z_recon = acts.dense @ sae_from.W_dec if no_bias else sae_from.decode(acts.dense)
    stored = {}
    layer_from, layer_to = solution.hook_layer(sae_from), solution.hook_layer(sae_to)
    model.run_with_hooks(resid, start_at_layer=layer_from if start is None else start, stop_at_layer=layer_to + 1,
                         fwd_hooks=[(sae_from.cfg.metadata.hook_name,
                                     lambda z, hook: z_recon.reshape(z.shape) + (z if added else 0)),
                                    (sae_to.cfg.metadata.hook_name, lambda z, hook: stored.update(z=z))])
    return sae_to.encode(stored["z"])


@check
def test_latent_to_latent_gradients_attn(latent_to_latent_gradients_attn, latent_acts_to_later_latent_acts_attn=None) -> None:
    inner = latent_acts_to_later_latent_acts_attn or learner_function(latent_to_latent_gradients_attn,
                                                                      "latent_acts_to_later_latent_acts_attn")
    with inner_exercise_first("latent_acts_to_later_latent_acts_attn", inner, test_latent_acts_to_later_latent_acts_attn):
        _latent_to_latent_gradients_attn_cases(latent_to_latent_gradients_attn)


def _latent_to_latent_gradients_attn_cases(latent_to_latent_gradients_attn) -> None:
    recon_hint = ("latent_acts_next_recon equals the true later activations: it should be the aux output of "
                  "latent_acts_to_later_latent_acts_attn, computed from the earlier SAE's reconstruction.")
    world = _paper_world()
    early, late = world.saes["z_0"], world.saes["z_1"]
    where = "latent_to_latent_gradients_attn(paper world, z layer 0 → z layer 1)"
    with _clean_state(early, late):
        result = latent_to_latent_gradients_attn(world.tokens, early, late, world.model)
        _error_term_restored(where, early, late)
        x = PAPER_W_E[PAPER_TOKENS] + PAPER_W_POS[:3]
        prev = _encode(_prefix_mean(x), EARLY_W_ENC)
        expected = {"prev": prev, **_paper_attn_expected(prev)}
        _check_gradient_outputs(result, expected, where, tuple(prev.shape), recon_hint, ATTN_INNER)

        where = "latent_to_latent_gradients_attn(paper world, a batch of 2 sequences)"
        _check_batch_of_two(latent_to_latent_gradients_attn, solution.latent_to_latent_gradients_attn, world, early, late,
                            where, recon_hint, ATTN_INNER)

    model, _, attn_saes = _course_world()
    sae_from, sae_to = attn_saes[0], attn_saes[2]
    tokens = _repeated_tokens(model)
    where = "latent_to_latent_gradients_attn(course world, attn_z_0 → attn_z_2)"
    with _clean_state(sae_from, sae_to):
        result = latent_to_latent_gradients_attn(tokens, sae_from, sae_to, model)
        _error_term_restored(where, sae_from, sae_to)
        want = solution.latent_to_latent_gradients_attn(tokens, sae_from, sae_to, model)
        expected = {"grads": want[0].detach(), "prev": want[1].dense, "next": want[2].dense, "recon": want[3].dense}
        _check_gradient_outputs(result, expected, where, tuple(want[1].shape), recon_hint, ATTN_INNER)


ATTN_INNER = "latent_acts_to_later_latent_acts_attn"
