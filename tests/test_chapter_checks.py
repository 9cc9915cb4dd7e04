"""The chapter checks themselves are tested: the solutions pass them, known mistakes fail them
with the message meant for that mistake."""

import importlib

import pytest
import torch

from solutions.ch01_latent_gradients import SparseTensor as Reference
from utils import build, course
from utils.checks import CheckFailed


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_the_solutions_pass_every_check(chapter, capsys):
    """Each check cell, run with the solutions module standing in for the learner's notebook."""
    solutions = importlib.import_module(f"solutions.{course.solution_module_name(chapter)}")
    namespace = {**vars(solutions), "tests": course.load_checks(chapter)}
    parsed = build.parse(chapter)
    for cell in parsed.cells:
        if cell.kind == "check":
            exec(cell.text, namespace)
    printed = capsys.readouterr().out
    for exercise in parsed.exercises:
        assert f"✅ test_{exercise} passed" in printed


def variant(from_dense=None, from_sparse=None):
    """The reference SparseTensor with some methods replaced by wrong ones."""
    methods = {"from_dense": from_dense, "from_sparse": from_sparse}
    return type("SparseTensor", (Reference,), {k: classmethod(f) for k, f in methods.items() if f})


def dense_with(indices=None, values=None, shape=None):
    """A from_dense that builds the sparse form with the given wrong parts."""

    def from_dense(cls, dense):
        mask = dense != 0
        sparse = (
            values(dense) if values else dense[mask],
            indices(dense) if indices else mask.nonzero(),
            shape(dense) if shape else tuple(dense.shape),
        )
        return cls(sparse, dense)

    return from_dense


def sparse_with(make_dense):
    return lambda cls, sparse: cls(sparse, make_dense(*sparse))


TRANSPOSED_HINT = "indices should have shape (n_nonzero, k) = (3, 2), one row per nonzero entry"

WRONG = {
    "argwhere(...).T": (
        variant(dense_with(indices=lambda d: torch.argwhere(d).T)),
        "from_dense(the 2×3 example): indices has shape (2, 3) but should have shape (3, 2). "
        f"Hint: {TRANSPOSED_HINT}",
    ),
    "stacked as_tuple": (
        variant(dense_with(indices=lambda d: torch.stack(d.nonzero(as_tuple=True)))),
        TRANSPOSED_HINT,
    ),
    "squeezed": (
        variant(dense_with(indices=lambda d: d.nonzero().squeeze())),
        "from_dense(a 1-D tensor): indices has shape (12,) but should have shape (12, 1). "
        "Hint: indices keeps its last dimension",
    ),
    "as_tuple": (
        variant(dense_with(indices=lambda d: d.nonzero(as_tuple=True))),
        "indices should be a torch.Tensor, but is a tuple of length 2. Hint: indices should be one tensor",
    ),
    "flat positions": (
        variant(dense_with(indices=lambda d: d.flatten().nonzero())),
        "not positions in the flattened tensor",
    ),
    "float indices": (
        variant(dense_with(indices=lambda d: d.nonzero().float())),
        "indices has dtype torch.float32 but should have dtype torch.int64. Hint: indices are coordinates",
    ),
    "flattened shape": (
        variant(dense_with(shape=lambda d: (d.numel(),))),
        "shape is (6,) but should be (2, 3). Hint: shape is the dense tensor's full shape",
    ),
    "shape as a tensor": (
        variant(dense_with(shape=lambda d: torch.tensor(d.shape))),
        "shape should be a tuple of ints, but is Tensor. Hint: use tuple(dense.shape)",
    ),
    "float32 values": (
        variant(dense_with(values=lambda d: torch.tensor(d[d != 0].tolist()))),
        "from_dense(a 3-D float64 tensor): values has dtype torch.float32 but should have dtype "
        "torch.float64. Hint: values keeps the dtype of the dense tensor",
    ),
    "zeros kept": (
        variant(dense_with(values=lambda d: d.flatten())),
        "values has shape (6,) but should have shape (3,). Hint: values should hold only the nonzero entries",
    ),
    "sorted values": (
        variant(dense_with(values=lambda d: d[d != 0].sort().values)),
        "values has wrong values: 2 of 3 elements differ, first at index (0,) (got 1.5, expected 2). "
        "Hint: values has the right entries in the wrong order",
    ),
    "returns a tuple": (
        variant(lambda cls, dense: Reference.from_dense(dense).sparse),
        "from_dense(the 2×3 example) returned tuple, not a SparseTensor",
    ),
    "dense without dtype": (
        variant(from_sparse=sparse_with(lambda v, i, s: torch.zeros(s).index_put(tuple(i.T), v.float()))),
        "from_sparse(sparse form of a 3-D float64 tensor).dense has dtype torch.float32 but should "
        "have dtype torch.float64. Hint: create the dense tensor with the dtype (and device) of values",
    ),
    "dense without device": (
        variant(from_sparse=sparse_with(lambda v, i, s: torch.zeros(s, dtype=v.dtype).index_put(tuple(i.T), v))),
        "from_sparse(float16 values on meta).dense is torch.float16 on cpu: it should follow the values",
    ),
    "dense detached": (
        variant(
            from_sparse=sparse_with(lambda v, i, s: torch.zeros(s, dtype=v.dtype, device=v.device).index_put(tuple(i.T), v.detach()))
        ),
        "from_sparse(...).dense does not depend on values through autograd",
    ),
}


@pytest.mark.parametrize("mistake", WRONG)
def test_a_wrong_sparse_tensor_fails_with_its_message(checks01, mistake):
    wrong_class, message = WRONG[mistake]
    with pytest.raises(CheckFailed) as failure:
        checks01.test_sparse_tensor(wrong_class)
    assert str(failure.value).startswith("test_sparse_tensor failed: ")
    assert message in str(failure.value)


def test_a_stub_sparse_tensor_is_not_implemented_yet(checks01):
    def from_dense(cls, dense):
        # YOUR CODE HERE
        raise NotImplementedError("SparseTensor.from_dense is not implemented yet")

    with pytest.raises(CheckFailed) as failure:
        checks01.test_sparse_tensor(variant(from_dense))
    assert str(failure.value).startswith("test_sparse_tensor: not implemented yet (")


def test_an_exception_in_sparse_tensor_names_the_learner_line(checks01):
    def from_sparse(cls, sparse):
        values, indices, shape = sparse
        # Indexing with the whole (n_nonzero, k) table reads rows, and goes out of bounds.
        dense = torch.zeros(shape)[indices]
        return cls(sparse, dense)

    line = from_sparse.__code__.co_firstlineno + 3
    with pytest.raises(CheckFailed) as failure:
        checks01.test_sparse_tensor(variant(from_sparse=from_sparse))
    assert str(failure.value).startswith("test_sparse_tensor failed: your function raised IndexError: ")
    assert str(failure.value).endswith(
        f"(in from_sparse, tests/test_chapter_checks.py, line {line}: "
        "`dense = torch.zeros(shape)[indices]`)"
    )
