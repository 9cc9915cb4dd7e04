"""utils.checks on its own: comparisons, hints, the pass line, stubs, learner errors, records."""

import json
from pathlib import Path

import pytest
import torch

from utils import checks
from utils.checks import RECORD_ENV, CheckFailed, Mistake, assert_tensor, check, read_records


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


def test_a_pass_prints_one_line_and_is_recorded(tmp_path, monkeypatch, capsys):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(log))
    test_double(lambda x: 2 * x)
    assert capsys.readouterr().out == "✅ test_double passed\n"
    assert json.loads(log.read_text()) == {
        "exercise": "double",
        "passed": True,
        "status": "passed",
        "message": "test_double passed",
    }


def test_a_failure_is_recorded_with_its_message(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(log))
    with pytest.raises(CheckFailed) as failure:
        test_double(lambda x: x + 1)
    assert str(failure.value).startswith("test_double failed: fn([1, 2]) has wrong values")
    assert read_records(log)["double"]["message"] == str(failure.value)


def test_nothing_is_written_without_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(RECORD_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    test_double(lambda x: 2 * x)
    assert list(tmp_path.iterdir()) == []


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
