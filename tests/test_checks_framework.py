"""utils.checks on its own: comparisons, hints, the pass line, stubs, learner errors, records."""

from pathlib import Path

import pytest
import torch

from utils import checks
from utils.checks import CheckFailed, Mistake, assert_tensor, check


def test_assert_tensor_accepts_close_values():
    assert_tensor(torch.tensor([1.0, 2.0]) + 1e-9, torch.tensor([1.0, 2.0]), "x")


@pytest.mark.parametrize(
    "actual, message",
    [
        ([1.0, 2.0], "x should be a torch.Tensor, but is a list of length 2."),
        (torch.zeros(3), "x has shape (3,) but should have shape (2,)."),
        (torch.zeros(2, dtype=torch.float64), "x has dtype torch.float64 but should have dtype torch.float32."),
        (torch.tensor([1.0, 5.0]), "x has wrong values: 1 of 2 elements differ, first at index (1,) (got 5, expected 2)."),
    ],
)
def test_assert_tensor_says_what_differs(actual, message):
    with pytest.raises(CheckFailed) as failure:
        assert_tensor(actual, torch.tensor([1.0, 2.0]), "x")
    assert str(failure.value) == message


def test_a_matching_mistake_adds_its_hint_and_a_crashing_one_is_skipped():
    mistakes = [
        Mistake(lambda a: a.no_such_attribute, "never shown"),
        Mistake.looks_like(torch.tensor([2.0, 1.0]), "did you reverse it?"),
    ]
    with pytest.raises(CheckFailed, match=r"differ.*\. Hint: did you reverse it\?$"):
        assert_tensor(torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0]), "x", mistakes=mistakes)


@check
def test_double(fn):
    """A toy check: fn must double its input."""
    assert_tensor(fn(torch.tensor([1.0, 2.0])), torch.tensor([2.0, 4.0]), "fn([1, 2])")


test_double.__test__ = False  # a check under test, not a test for pytest to collect


def test_every_outcome_reaches_the_record_hook_the_grader_replaces(monkeypatch, capsys):
    records = []
    monkeypatch.setattr(checks, "_record", lambda exercise, status, message: records.append((exercise, status, message)))
    test_double(lambda x: 2 * x)
    assert capsys.readouterr().out == "✅ test_double passed\n"
    with pytest.raises(CheckFailed) as failure:
        test_double(lambda x: x + 1)
    assert str(failure.value).startswith("test_double failed: fn([1, 2]) has wrong values")
    assert records == [("double", "passed", "test_double passed"), ("double", "failed", str(failure.value))]


def test_a_stub_is_not_implemented_yet():
    def double(x):
        # YOUR CODE HERE
        raise NotImplementedError("double is not implemented yet")

    with pytest.raises(CheckFailed, match=r"^test_double: not implemented yet \(.*double still raises"):
        test_double(double)


def test_a_not_implemented_error_from_a_library_is_not_a_stub():
    def double(x):
        return torch.zeros(2, device="meta").tolist()  # torch raises NotImplementedError here

    with pytest.raises(CheckFailed, match="your function raised NotImplementedError"):
        test_double(double)


def test_a_learner_exception_points_at_the_learner_line():
    def double(x):
        factor = {"two": 2}
        return x * factor["three"]

    line = double.__code__.co_firstlineno + 2
    with pytest.raises(CheckFailed) as failure:
        test_double(double)
    assert str(failure.value) == (
        "test_double failed: your function raised KeyError: 'three' "
        f"(in double, tests/test_checks_framework.py, line {line}: `return x * factor[\"three\"]`)"
    )


def test_an_error_inside_the_check_itself_is_reported_as_such(monkeypatch):
    @check
    def test_length(fn):
        assert fn().shape == (2,)

    # Pretend this file is ours, like a chapter's tests.py, so the error is not the learner's.
    monkeypatch.setattr(checks, "_OUR_DIRS", (*checks._OUR_DIRS, Path(__file__).parent))
    with pytest.raises(CheckFailed, match="^test_length failed: the check raised AttributeError"):
        test_length(lambda: "not a tensor")


# -------------------------------------------------------------------------------------------------
# What kind of difference: describe_difference on hand-made tensors

E = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0], [0.5, 1.5, 2.5]])


@pytest.mark.parametrize(
    "actual, words",
    [
        (-E, "with its sign flipped"),
        (E.abs(), "the absolute value of the expected result"),
        (E.clamp(min=0), "negative entries are zero"),
        (2.5 * E, "scaled by a constant factor, 2.5."),
        (E + 1, "plus a constant, +1."),
        (E.T, "transposed (dimensions 0 and 1 swapped)"),
        (torch.cat([torch.zeros(1, 3), E[:-1]]), "shifted by one along dimension 0: your index i + 1 holds the expected index i"),
        (torch.cat([E[1:], torch.zeros(1, 3)]), "shifted by one along dimension 0: your index i holds the expected index i + 1"),
        (E[:1].expand(3, 3), "every entry along dimension 0 equals the expected entry 0"),
        (E.flatten().flip(0).reshape(3, 3), "the right values, in a different order"),
        (torch.cat([E[:1], E[1:] * torch.tensor([[3.0], [-1.0]]) + 1]), "only some entries along dimension 0 are wrong: 2 of 3 (index 1, 2)"),
        (E * torch.tensor([[1.0], [2.0], [3.0]]), "each row (along the last dimension) is the expected row times its own factor"),
        (E - E.logsumexp(-1, keepdim=True), "each row (along the last dimension) is the expected row plus its own constant"),
        (torch.zeros(3, 3), "your result is all zeros"),
        (torch.full((3, 3), float("nan")), "your result contains NaN (9 entries)"),
    ],
)
def test_describe_difference_names_the_kind(actual, words):
    assert words in checks.describe_difference(actual, E)


def test_describe_difference_stays_silent_when_nothing_fits():
    generator = torch.Generator().manual_seed(0)
    assert checks.describe_difference(torch.randn(3, 3, generator=generator), E) is None
    assert checks.describe_difference(torch.zeros(2), E) is None  # another shape: the shape message says it


def test_a_failure_without_a_hint_says_the_kind_of_difference():
    with pytest.raises(CheckFailed) as failure:
        assert_tensor(-E, E, "x")
    assert str(failure.value) == ("x has wrong values: 9 of 9 elements differ, first at index (0, 0) (got -1, expected 1). "
                                  "Difference: it is the expected result with its sign flipped (× -1).")


def test_a_hint_replaces_the_kind_of_difference():
    with pytest.raises(CheckFailed) as failure:
        assert_tensor(-E, E, "x", mistakes=[Mistake.looks_like(-E, "mind the sign.")])
    assert str(failure.value).endswith("(got -1, expected 1). Hint: mind the sign.")


def test_another_dtype_is_compared_and_named_never_a_crash():
    with pytest.raises(CheckFailed) as failure:
        assert_tensor(E.double(), E, "x")
    assert str(failure.value) == ("x has dtype torch.float64 but should have dtype torch.float32; its values are right, "
                                  "only the dtype differs.")
    assert_tensor(E.double(), E, "x", check_dtype=False)  # compared in a common dtype
    with pytest.raises(CheckFailed, match=r"scaled by a constant factor, 2\."):
        assert_tensor(2 * E.double(), E, "x", check_dtype=False)


def test_a_numpy_array_is_named():
    with pytest.raises(CheckFailed) as failure:
        assert_tensor(E.numpy(), E, "x")
    assert str(failure.value) == ("x should be a torch.Tensor, but is a numpy array of shape (3, 3). Hint: stay in torch "
                                  "(no .numpy()), or convert back with torch.from_numpy(...).")


# -------------------------------------------------------------------------------------------------
# An exercise that calls another: the inner one is checked first


@check
def test_quadruple(quadruple, double=None):
    """A toy nested check: quadruple calls double."""
    with checks.inner_exercise_first("double", double, test_double):
        assert_tensor(quadruple(torch.tensor([1.0, 2.0])), torch.tensor([4.0, 8.0]), "quadruple([1, 2])")


test_quadruple.__test__ = False


def test_a_wrong_inner_exercise_is_named_first(capsys):
    def double(x):
        return x + 1

    with pytest.raises(CheckFailed) as failure:
        test_quadruple(lambda x: double(double(x)), double)
    assert str(failure.value).startswith("test_quadruple failed: it calls your double, which fails its own check: "
                                         "fn([1, 2]) has wrong values")
    assert str(failure.value).endswith("Fix double first.")
    assert "✅" not in capsys.readouterr().out  # the inner check ran quietly


def test_a_right_inner_exercise_leaves_the_outer_message():
    def double(x):
        return 2 * x

    with pytest.raises(CheckFailed) as failure:
        test_quadruple(lambda x: double(x) + 1, double)
    assert str(failure.value).startswith("test_quadruple failed: quadruple([1, 2]) has wrong values")


def test_a_wrong_inner_exercise_the_outer_does_not_use_is_not_blamed(capsys):
    test_quadruple(lambda x: 4 * x, lambda x: x + 1)
    assert capsys.readouterr().out == "✅ test_quadruple passed\n"


def test_the_inner_exercise_is_found_where_the_outer_looks_it_up():
    namespace = {}
    exec("def double(x):\n    return x + 1\n\ndef quadruple(x):\n    return double(double(x))\n", namespace)
    assert checks.learner_function(namespace["quadruple"], "double") is namespace["double"]
    with pytest.raises(CheckFailed, match="it calls your double, which fails its own check"):
        test_quadruple(namespace["quadruple"], checks.learner_function(namespace["quadruple"], "double"))


@pytest.mark.parametrize(
    "actual, words",
    [
        (E.sum(0, keepdim=True).expand(3, 3), "equals the sum of the expected entries along it"),
        (E.mean(1, keepdim=True).expand(3, 3), "equals the mean of the expected entries along it"),
        (E.softmax(-1), "it sums to 1 along the last dimension, like probabilities"),
    ],
)
def test_describe_difference_names_a_reduction_or_a_softmax(actual, words):
    assert words in checks.describe_difference(actual, E)


def _standardise(x, dim):
    x = x - x.mean(dim, keepdim=True)
    return x / x.pow(2).mean(dim, keepdim=True).sqrt()


M = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0], [0.5, 1.5, 2.5], [2.0, 0.0, -1.0]])  # (4, 3): not square


@pytest.mark.parametrize(
    "actual, expected, words",
    [
        (_standardise(M, 0), _standardise(M, 1), "standardised (mean 0, variance 1) along dimension 0, where the "
                                                 "expected result is so along dimension 1"),
        (M / M.norm(dim=1, keepdim=True), M / M.norm(dim=0, keepdim=True), "scaled to unit norm along dimension 1"),
        (M.softmax(0), M.softmax(1), "a probability distribution (non-negative, summing to 1) along dimension 0"),
    ],
)
def test_describe_difference_names_a_normalisation_along_another_dimension(actual, expected, words):
    assert words in checks.describe_difference(actual, expected)


def test_a_normalisation_along_another_dimension_is_named_only_when_it_holds():
    expected = _standardise(M, 1)
    # Standardised along the right dimension but wrong, or not normalised at all: not this diagnosis.
    for actual in (_standardise(M.flip(1), 1), M, 2 * expected[torch.tensor([1, 0, 2, 3])]):
        assert "wrong dimension" not in (checks.describe_difference(actual, expected) or "")
    # The expected result is not normalised: an actual one that is tells nothing about a dimension.
    assert "wrong dimension" not in (checks.describe_difference(_standardise(M, 0), M) or "")


def test_describe_difference_names_a_factor_per_feature_and_a_vector_added_to_every_row():
    per_feature = E * torch.tensor([2.0, 0.5, -1.0])
    assert "each entry along the last dimension has its own factor, the same in every row" in \
        checks.describe_difference(per_feature, E)
    with_bias = E + torch.tensor([0.5, -1.0, 2.0])
    assert "every row differs from the expected one by the same vector" in checks.describe_difference(with_bias, E)
    # Rows with different differences: neither diagnosis.
    other = E + torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
    message = checks.describe_difference(other, E) or ""
    assert "same vector" not in message and "its own factor, the same in every row" not in message


def test_describe_difference_names_entries_wrong_only_where_one_side_is_zero():
    causal = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    unmasked = causal + torch.triu(torch.full((3, 3), 0.25), 1)
    assert "right wherever the expected result is nonzero, but has nonzero entries (3) where it should be zero" in \
        checks.describe_difference(unmasked, causal)
    dropped = causal.clone()
    dropped[1, 0] = dropped[2, 1] = 0.0
    assert "right except for 2 entries that are zero where the expected ones are not" in \
        checks.describe_difference(dropped, causal)
    # Wrong on both zero and nonzero entries: no such claim.
    both = unmasked.clone()
    both[2, 2] = 0.9
    message = checks.describe_difference(both, causal) or ""
    assert "where it should be zero" not in message and "where the expected ones are not" not in message


@pytest.mark.parametrize(
    "actual, words",
    [
        (E * torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]]),
         "the magnitudes are right, but 2 entries have the wrong sign"),
        (E * E, "it is the square of the expected result"),
    ],
)
def test_describe_difference_names_a_partial_sign_flip_or_a_square(actual, words):
    assert words in checks.describe_difference(actual, E)


def test_describe_difference_names_a_square_root():
    positive = E.abs() + 1
    assert "it is the square root of the expected result" in checks.describe_difference(positive.sqrt(), positive)


def test_describe_difference_names_a_total_split_differently():
    moved = E.clone()
    moved[0, 0] += 1.0
    moved[1, 1] -= 1.5
    moved[2, 2] += 0.5
    assert "add up to the right total, but it is split differently" in checks.describe_difference(moved, E)
    # A different total, or an expected total of zero (a centred result): no such claim.
    assert "right total" not in (checks.describe_difference(moved + torch.eye(3) * 0.3, E) or "")
    centred = E - E.mean()
    assert "right total" not in (checks.describe_difference(moved - E.mean(), centred) or "")


@pytest.mark.parametrize(
    "actual, words",
    [
        (torch.zeros(4, 1, 3), "x has shape (4, 1, 3) but should have shape (1, 3, 4). Difference: the right dimensions "
                               "in another order"),
        (torch.zeros(3, 4), "x has shape (3, 4) but should have shape (1, 3, 4). Difference: only dimensions of size 1 differ"),
        (torch.zeros(2, 3, 4), "x has shape (2, 3, 4) but should have shape (1, 3, 4)."),
    ],
)
def test_a_shape_difference_is_named_when_it_has_a_kind(actual, words):
    with pytest.raises(CheckFailed) as failure:
        assert_tensor(actual, torch.zeros(1, 3, 4), "x")
    assert str(failure.value).startswith(words)
