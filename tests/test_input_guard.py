"""The inputs-unchanged guard that every check puts around the functions it is given
(utils/input_guard.py, applied by utils.checks.check)."""

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from utils.checks import CheckFailed, check, expect, learner_function
from utils.input_guard import InputChanged, guarded


def helper_of_the_learner(x):
    return x + 1


def calls_its_helper(x):
    return helper_of_the_learner(x)


@dataclasses.dataclass
class Corpus:
    tokens: torch.Tensor
    labels: torch.Tensor


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(InputChanged) as caught:
        guarded(fn)(*args, **kwargs)
    return str(caught.value)


def test_in_place_edits_are_named_with_the_argument_and_where():
    def abs_in_place(adjacency):
        return adjacency.abs_()

    assert _message(abs_in_place, torch.tensor([[-1.0, 2.0]])).startswith(
        "abs_in_place changed its argument `adjacency` (to [[1.0, 2.0]]) in place.")

    def pops(latents):
        while latents:
            latents.pop()
        return []

    assert "`latents` (its length went from 3 to 0) in place" in _message(pops, [1, 2, 3])

    def shifts_labels(data):
        data.labels[0] = 1 - data.labels[0]
        return data

    corpus = Corpus(torch.zeros(2, 3), torch.zeros(2, 3))
    assert "`data.labels` in place" in _message(shifts_labels, corpus)

    def edits_second_tuple(items):
        items[1][0] += 1
        return items

    assert "`items[1]` in place" in _message(edits_second_tuple, [(0,), torch.zeros(2)])

    def sets_key(d):
        d["b"] = 2

    assert "`d` (its keys changed) in place" in _message(sets_key, {"a": 1})

    def replaces_value(d):
        d["a"] = torch.ones(1)

    assert "`d['a']` in place" in _message(replaces_value, {"a": torch.zeros(1)})

    def centres_numpy(acts):
        acts -= acts.mean()
        return acts

    assert "`acts` in place" in _message(centres_numpy, np.array([1.0, 3.0]))

    def normalises_weights(sae):
        sae.weight.data /= 2
        return sae

    assert "`sae.weight` in place" in _message(normalises_weights, torch.nn.Linear(2, 2))


def test_unchanged_inputs_pass_through_with_the_result():
    def out_of_place(x, xs, d, module, *, k=2):
        return (x.abs(), sorted(xs), dict(d), module(torch.ones(1, 2)).shape, k)

    x = torch.tensor([float("nan"), -1.0])  # NaN equals NaN here: an unchanged NaN is not an edit
    result = guarded(out_of_place)(x, [3, 1], {"a": 1}, torch.nn.Linear(2, 2), k=5)
    assert result[1:] == ([1, 3], {"a": 1}, torch.Size([1, 2]), 5)
    assert torch.equal(result[0][1:], torch.tensor([1.0]))


def test_an_argument_the_exercise_must_change_can_be_named():
    def hook(activation, hook=None):
        activation[:] = 0
        return activation

    assert torch.equal(guarded(hook, mutates=("activation",))(torch.ones(2)), torch.zeros(2))
    with pytest.raises(InputChanged):
        guarded(hook)(torch.ones(2))


def test_the_guarded_function_keeps_globals_name_and_signature():
    wrapped = guarded(calls_its_helper)
    assert wrapped(torch.tensor(1)) == 2
    assert wrapped.__name__ == "calls_its_helper"
    assert str(inspect.signature(wrapped)) == "(x)"
    assert learner_function(wrapped, "helper_of_the_learner") is helper_of_the_learner
    with pytest.raises(TypeError):  # a wrong call raises the learner's own TypeError
        wrapped(1, 2)


def test_a_check_reports_an_in_place_edit_as_its_failure():
    @check
    def test_normalize(normalize):
        a = torch.tensor([[-1.0, 3.0]])
        out = normalize(a)
        assert torch.allclose(out, torch.tensor([[0.25, 0.75]]))

    def in_place(adjacency):
        adjacency.abs_()
        return adjacency / adjacency.sum(dim=1, keepdim=True)

    def honest(adjacency):
        return adjacency.abs() / adjacency.abs().sum(dim=1, keepdim=True)

    with pytest.raises(CheckFailed) as caught:
        test_normalize(in_place)
    assert str(caught.value).startswith("test_normalize failed: in_place changed its argument `adjacency` (to [[1.0, 3.0]]) in place.")
    test_normalize(honest)

    # An edit is reported even when the check would pass, or crash on the changed input...
    def pops(latents):
        out = list(latents)
        latents.clear()
        return out

    @check
    def test_group(group):
        latents = [1, 2]
        assert group(latents) == [1, 2]
        assert latents[0] == 1  # crashes with IndexError on the emptied list

    with pytest.raises(CheckFailed, match="^test_group failed: pops changed its argument `latents` "
                                          r"\(its length went from 2 to 0\) in place"):
        test_group(pops)

    # ... but a check's own message about the edit wins: it knows which call it was.
    @check
    def test_own(normalize):
        a = torch.tensor([-1.0])
        normalize(a)
        expect(a.item() == -1.0, "normalize(a) changed a to 1")

    with pytest.raises(CheckFailed, match="^test_own failed: normalize\\(a\\) changed a to 1$"):
        test_own(lambda adjacency: adjacency.abs_())


def test_check_with_mutates_exempts_only_that_argument():
    @check(mutates=("act",))
    def test_hook(hook_fn):
        act = torch.ones(3)
        hook_fn(act, torch.ones(3))

    def zeroes(act, other):
        act.zero_()

    def zeroes_the_other(act, other):
        other.zero_()

    test_hook(zeroes)
    with pytest.raises(CheckFailed, match=r"`other` \(to \[0.0, 0.0, 0.0\]\) in place"):
        test_hook(zeroes_the_other)
