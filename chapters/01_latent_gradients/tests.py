"""Checks for chapter 01. The notebook calls them as `tests.test_<exercise>(learner_code)`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from solutions.ch01_latent_gradients import SparseTensor as Reference
from utils.checks import Mistake, assert_tensor, check, expect, fail

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
    dense = SparseTensor.from_sparse((values, HAND_INDICES, (2, 3))).dense
    expect(
        dense.requires_grad,
        "SparseTensor.from_sparse(...).dense does not depend on values through autograd, so the "
        "later exercises cannot differentiate through it. Write the values in with tensor "
        "indexing rather than Python numbers (.item(), .tolist(), torch.tensor(...)).",
    )
    dense.sum().backward()
    assert_tensor(values.grad, torch.ones(3), "the gradient of from_sparse(...).dense.sum() w.r.t. values")


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
    ]


def _value_mistakes(dense: Tensor) -> list[Mistake]:
    values = Reference.from_dense(dense).sparse[0]
    return [
        Mistake(
            lambda a: a.numel() == dense.numel() != values.numel(),
            "values should hold only the nonzero entries, but it holds every entry of the tensor.",
        ),
        Mistake(
            lambda a: a.dtype != dense.dtype,
            f"values keeps the dtype of the dense tensor ({dense.dtype}). Take the entries out of "
            "the tensor by indexing rather than building a new tensor (torch.tensor(...), .float()).",
        ),
        Mistake(
            lambda a: a.shape == values.shape and torch.equal(a.sort().values, values.sort().values),
            "values has the right entries in the wrong order: list them in row-major order, "
            "the order of the rows of indices (the order torch.nonzero uses).",
        ),
    ]
