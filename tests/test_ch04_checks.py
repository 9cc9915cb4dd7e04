"""Chapter 04's checks against wrong implementations: each must fail with the message meant for it;
correct alternatives the text allows must pass.

(That the reference solutions pass every check is tested for all chapters in test_chapter_checks.py.)
"""

from __future__ import annotations

import pytest
import torch

import solutions.ch04_interventions as ref
from check_helpers import fails_with, passes
from utils import course
from utils.checks import CheckFailed


@pytest.fixture(scope="module")
def checks04():
    return course.load_checks("04_interventions")


# -------------------------------------------------------------------------------------------------
# graph_latent_table


def table_variant(*, index_active_directly=False, by_activation=False, ascending=False, normalise_first=False,
                  ignore_k=False):
    from circuit_tracer.graph import compute_node_influence, normalize_matrix

    def graph_latent_table(graph, k=10):
        n = len(graph.selected_features)
        matrix = normalize_matrix(graph.adjacency_matrix) if normalise_first else graph.adjacency_matrix
        influence = compute_node_influence(matrix, ref.logit_weights(graph))[:n]
        features = graph.active_features[:n] if index_active_directly else graph.active_features[graph.selected_features]
        key = graph.activation_values if by_activation else influence
        order = key.argsort(descending=not ascending)
        order = order if ignore_k else order[:k]
        return [ref.GraphLatent(int(i), *(int(x) for x in features[i]), float(graph.activation_values[i]),
                                float(influence[i])) for i in order]

    return graph_latent_table


@pytest.mark.parametrize("wrong, messages", [
    (table_variant(index_active_directly=True), ["node 2 is (layer, pos, latent) = (2, 1, 4), expected (1, 1, 9)",
                                                 "graph.active_features[graph.selected_features[i]]"]),
    (table_variant(by_activation=True), ["in the order [0, 2, 1]", "sort by influence, not by activation"]),
    (table_variant(ascending=True), ["in the order [0, 1, 2]", "largest influence first"]),
    (table_variant(ignore_k=True), ["k=2) should return the 2 most influential"]),
])
def test_graph_latent_table_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_graph_latent_table, wrong, *messages)


def test_graph_latent_table_influence_from_a_normalised_matrix_is_the_same(checks04, capsys):
    """circuit_tracer normalises inside compute_node_influence, and normalising twice changes nothing:
    an allowed alternative."""
    passes(checks04.test_graph_latent_table, table_variant(normalise_first=True), capsys)


def test_graph_latent_table_wrong_type_gets_a_clear_message(checks04):
    fails_with(checks04.test_graph_latent_table, lambda graph, k=10: [(0, 1, 2)] * k, "should be a GraphLatent")


# -------------------------------------------------------------------------------------------------
# supernodes_from_labels


def groups_variant(*, contains=False, no_filter=False, sorted_members=False):
    def supernodes_from_labels(latents, concept_of, families):
        groups = {}
        for g in latents:
            c = concept_of(g)
            keep = True if no_filter else (any(f in c for f in families) if contains else c.startswith(tuple(families)))
            if keep:
                groups.setdefault(c, []).append(g)
        if sorted_members:
            groups = {c: sorted(m, key=lambda g: -g.node) for c, m in groups.items()}
        return groups

    return supernodes_from_labels


@pytest.mark.parametrize("wrong, messages", [
    (groups_variant(contains=True), ["'in_state:Texas' contains 'state:' but does not start with it"]),
    (groups_variant(no_filter=True), ["keep only concepts that start with one of the families"]),
    (groups_variant(sorted_members=True), ["[latents 0 and 3, in that order]"]),
])
def test_supernodes_from_labels_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_supernodes_from_labels, wrong, *messages)


def test_supernodes_from_labels_with_families_only_as_a_tuple_fails_on_a_list(checks04):
    def tuple_only(latents, concept_of, families):
        return {c: m for c, m in ref.supernodes_from_labels(latents, concept_of, families).items()} if isinstance(
            families, tuple) else {"x": []}

    fails_with(checks04.test_supernodes_from_labels, tuple_only, "should accept families as a list too")


# -------------------------------------------------------------------------------------------------
# supernode_graph


def supernode_graph_variant(*, transpose=False, absolute=False, no_logits=False):
    def supernode_graph(graph, supernodes):
        names, weights = ref.supernode_graph(graph, supernodes)
        if absolute:
            adjacency = graph.adjacency_matrix.abs()
            groups = [[g.node for g in m] for m in supernodes.values()]
            groups.append(list(range(len(adjacency) - len(graph.logit_targets), len(adjacency))))
            weights = torch.tensor([[float(adjacency[t][:, s].sum()) for s in groups] for t in groups])
        if transpose:
            weights = weights.T
        if no_logits:
            return names[:-1], weights[:-1, :-1]
        return names, weights

    return supernode_graph


@pytest.mark.parametrize("wrong, messages", [
    (supernode_graph_variant(transpose=True), ["the matrix is [target, source]"]),
    (supernode_graph_variant(absolute=True), ["sum the signed edges"]),
    (supernode_graph_variant(no_logits=True), ["names ['A', 'B'], expected ['A', 'B', 'logits']"]),
])
def test_supernode_graph_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_supernode_graph, wrong, *messages)


# -------------------------------------------------------------------------------------------------
# hand_supernodes and ablation_predictions: only their form is checked (no grouping or prediction is
# "right" before the interventions), so the wrong ones here are malformed, and unusual but
# well-formed answers must pass.


@pytest.fixture(scope="module")
def shown(checks04):
    """The ten latent labels the check offers, from the reference table of the Dallas graph."""
    labels = checks04._dallas_top_labels()
    assert len(labels) == 10 and all(label.startswith("L") and " #" in label and " @" in label for label in labels)
    return labels


@pytest.mark.parametrize("make, messages", [  # both built from the shown labels
    (lambda shown: [list(shown)], lambda shown: ["should return a dict", "not list"]),
    (lambda shown: {"all": list(shown)}, lambda shown: ["1 group(s)", "at least two"]),
    (lambda shown: {"a": list(shown[:2]), "b": []}, lambda shown: ["group 'b' should be a non-empty list"]),
    (lambda shown: {"a": list(shown[:2]), "b": list(shown[1:3])},
     lambda shown: [f"{shown[1]!r} is in two groups, 'a' and 'b'"]),
    (lambda shown: {"a": [shown[0].replace(" ", "")], "b": [shown[1]]},
     lambda shown: [f"{shown[0].replace(' ', '')!r} is not one of the ten latents shown",
                    f"write it as printed, {shown[0]!r}"]),
    (lambda shown: {"a": ["L9 #1 @8"], "b": [shown[1]]},
     lambda shown: ["'L9 #1 @8' is not one of the ten latents shown", shown[0]]),
    (lambda shown: {"": [shown[0]], "b": [shown[1]]}, lambda shown: ["group names should be non-empty strings"]),
    (lambda shown: {"a": shown[0], "b": [shown[1]]},  # one label, not a list of labels
     lambda shown: ["group 'a' should be a non-empty list of latent labels", repr(shown[0])]),
    (lambda shown: {"a": [[shown[0]]], "b": [shown[1]]}, lambda shown: ["is not one of the ten latents shown"]),
])
def test_hand_supernodes_names_a_malformed_grouping(checks04, shown, make, messages):
    fails_with(checks04.test_hand_supernodes, lambda: make(shown), *messages(shown))


@pytest.mark.parametrize("make", [
    lambda shown: {"one": [shown[0]], "rest": list(shown[1:])},  # uneven, but two groups
    lambda shown: {"x": (shown[3],), "y": (shown[7], shown[2])},  # tuples, and latents left out
])
def test_hand_supernodes_accepts_any_wellformed_grouping(checks04, shown, make, capsys):
    passes(checks04.test_hand_supernodes, lambda: make(shown), capsys)


@pytest.mark.parametrize("predictions, messages", [
    (["lower", "higher", "same"], ["should return a dict", "not list"]),
    ({"Texas": "lower", "other": "same"}, ["predicts 2 supernode(s)", "at least three"]),
    ({"Texas": "down", "other": "same", "say a state": "lower"}, ["'Texas' is 'down'", "write 'lower'"]),
    ({"Texas": "lower", "other": 0.5, "say a state": "lower"}, ["'other' is 0.5", "'lower', 'higher', 'same'"]),
    ({"Texas": "lower", 3: "same", "say a state": "lower"}, ["names should be non-empty strings"]),
    ({"Texas": "lower", "  ": "same", "say a state": "lower"}, ["names should be non-empty strings", "got ' "]),
    ({"Texas": "lower", "": "same", "say a state": "lower"}, ["names should be non-empty strings"]),
])
def test_ablation_predictions_names_a_malformed_answer(checks04, predictions, messages):
    fails_with(checks04.test_ablation_predictions, lambda: predictions, *messages)


def test_ablation_predictions_may_be_wrong(checks04, capsys):
    """Predictions opposite to the reference's still pass: the check is about committing, not guessing."""
    flipped = {name: {"lower": "higher", "higher": "same", "same": "lower"}[p] for name, p in ref.ablation_predictions().items()}
    passes(checks04.test_ablation_predictions, lambda: flipped, capsys)


def test_a_stub_is_not_implemented_yet(checks04):
    """The exercise notebook's untouched cells: 'not implemented', not a crash in the check."""
    def stub():
        raise NotImplementedError("hand_supernodes is not implemented yet")

    for check in (checks04.test_hand_supernodes, checks04.test_ablation_predictions):
        with pytest.raises(CheckFailed) as failure:
            check(stub)
        assert str(failure.value).startswith(f"{check.__name__}: not implemented yet ("), failure.value


# -------------------------------------------------------------------------------------------------
# scale_interventions, contrast_latents, swap_interventions, from_position_on


@pytest.mark.parametrize("wrong, messages", [
    (lambda members, factor: [(g.layer, g.pos, g.latent, (factor - 1) * g.activation) for g in members],
     ["not the change from it"]),
    (lambda members, factor: [(g.pos, g.layer, g.latent, factor * g.activation) for g in members], ["layer first"]),
    (lambda members, factor: [(g.layer, g.pos, g.latent, factor) for g in members], ["factor=-2.0) gives", "expected [(1, 4, 17, -5.0)"]),
])
def test_scale_interventions_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_scale_interventions, wrong, *messages)


def test_scale_interventions_may_return_tensors_for_values(checks04, capsys):
    passes(checks04.test_scale_interventions,
           lambda members, factor: [(g.layer, g.pos, g.latent, torch.tensor(factor * g.activation)) for g in members], capsys)


def contrast_variant(*, divide_by_layers=False, absolute=False, keep_non_positive=False):
    def contrast_latents(acts, other, k=8):
        n_layers, d = acts.shape
        width = n_layers if divide_by_layers else d

        def largest(diff):
            top = diff.flatten().topk(k)
            return [(int(i) // width, int(i) % width) for v, i in zip(top.values, top.indices) if keep_non_positive or v > 0]

        own = largest(acts - other)
        return own, largest((acts - other).abs()) if absolute else largest(other - acts)

    return contrast_latents


@pytest.mark.parametrize("wrong, messages", [
    (contrast_variant(divide_by_layers=True), ["(i // d, i % d) with d = latents per layer"]),
    (contrast_variant(absolute=True), ["|acts - other| mixes both directions"]),
    (contrast_variant(keep_non_positive=True), ["leave out differences that are not positive"]),
])
def test_contrast_latents_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_contrast_latents, wrong, *messages)


@pytest.mark.parametrize("wrong, messages", [
    (lambda own, new, other, pos: [(l, pos, i, float(other[l, i])) for l, i in new], ["zero the prompt's own latents too"]),
    (lambda own, new, other, pos: [(l, pos, i, 0.0) for l, i in own] + [(l, pos, i, float(other[i, l])) for l, i in new],
     ["index the layer first"]),
    (lambda own, new, other, pos: [(l, pos, i, 0.0) for l, i in own] + [(l, pos - 1, i, float(other[l, i])) for l, i in new],
     ["expected [(0, 6, 1, 0.0)"]),
])
def test_swap_interventions_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_swap_interventions, wrong, *messages)


@pytest.mark.parametrize("wrong, messages", [
    (lambda ivs: [(l, slice(None, p), i, v) for l, p, i, v in ivs], ["slice(pos, None) is 'from pos on'"]),
    (lambda ivs: [(l, slice(p, p + 1), i, v) for l, p, i, v in ivs], ["expected [(0, slice(3, None, None), 17, 0.0)"]),
])
def test_from_position_on_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_from_position_on, wrong, *messages)


# -------------------------------------------------------------------------------------------------
# flip_rate


def flip_rate_variant(*, same_answer_pairs=False, rise_counts=False, own_values=False, read_last=False,
                      one_at_a_time=False, first_position_only=False):
    def flip_rate(rm, prompts, answers, positions, k=8):
        positions = [positions] if isinstance(positions, int) else list(positions)
        if first_position_only:
            positions = positions[:1]
        acts = [{p: ref.acts_at(rm, t, -1 if read_last else p) for p in positions} for t in prompts]
        flipped = pairs = 0
        for i, (tokens, answer) in enumerate(zip(prompts, answers)):
            before = ref.next_token_probs(rm, tokens)
            for j, other_answer in enumerate(answers):
                if i == j or (other_answer == answer and not same_answer_pairs):
                    continue
                runs = []
                for p in positions:
                    own, new = ref.contrast_latents(acts[i][p], acts[j][p], k)
                    values = acts[i][p] if own_values else acts[j][p]
                    runs.append(ref.swap_interventions(own, new, values, p))
                hit = False
                for interventions in (runs if one_at_a_time else [[x for run in runs for x in run]]):
                    probs = ref.next_token_probs(rm, tokens, interventions)
                    hit |= bool(probs[other_answer] > before[other_answer]) if rise_counts else int(probs.argmax()) == other_answer
                flipped += int(hit)
                pairs += 1
        return flipped / pairs

    return flip_rate


@pytest.mark.parametrize("wrong, messages", [
    (flip_rate_variant(same_answer_pairs=True), ["positions=10", "pairs with the same answer"]),
    (flip_rate_variant(rise_counts=True), ["positions=10", "not when its probability rises"]),
    (flip_rate_variant(read_last=True), ["positions=[4, 5, 6, 10]", "not at the last position"]),
    (flip_rate_variant(one_at_a_time=True), ["positions=[4, 5, 6, 10]", "in one run per pair"]),
    (flip_rate_variant(own_values=True), ["positions=10", "expected", "ordered pairs with different answers"]),
    (flip_rate_variant(first_position_only=True), ["positions=[4, 5, 6, 10]", "expected",
                                                   "ordered pairs with different answers"]),
])
def test_flip_rate_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_flip_rate, wrong, *messages)


# -------------------------------------------------------------------------------------------------
# random_groups


def random_groups_variant(*, keep_members=False, wrong_size=False, with_replacement=False, one_draw=False,
                          global_rng=False, skip_first=False):
    def random_groups(group, pool, n_draws, generator):
        rest = list(pool) if keep_members else [g for g in pool if g not in group]
        rest = rest[1:] if skip_first else rest
        size = 2 if wrong_size else len(group)
        gen = None if global_rng else generator

        def draw():
            if with_replacement:
                return [rest[int(i)] for i in torch.randint(len(rest), (size,), generator=gen)]
            return [rest[i] for i in torch.randperm(len(rest), generator=gen)[:size].tolist()]

        if one_draw:
            once = draw()
            return [list(once) for _ in range(n_draws)]
        return [draw() for _ in range(n_draws)]

    return random_groups


@pytest.mark.parametrize("wrong, messages", [
    (random_groups_variant(keep_members=True), ["holds a member of the group", "without the group's members"]),
    (random_groups_variant(wrong_size=True), ["a group of 2 latents", "size-matched"]),
    (random_groups_variant(with_replacement=True), ["the same latent twice", "without replacement"]),
    (random_groups_variant(one_draw=True), ["only 1 different groups", "draw anew"]),
    (random_groups_variant(global_rng=True), ["seeded alike gave different draws"]),
    (random_groups_variant(skip_first=True), ["drawn far less often", "equally likely"]),
])
def test_random_groups_names_the_mistake(checks04, wrong, messages):
    fails_with(checks04.test_random_groups, wrong, *messages)


def test_random_groups_accepts_another_sampler(checks04, capsys):
    """Any uniform draw without replacement from the pool minus the group passes (here torch.multinomial)."""
    def random_groups(group, pool, n_draws, generator):
        rest = [g for g in pool if g not in group]
        return [[rest[int(i)] for i in torch.multinomial(torch.ones(len(rest)), len(group), generator=generator)]
                for _ in range(n_draws)]

    passes(checks04.test_random_groups, random_groups, capsys)


# -------------------------------------------------------------------------------------------------
# position_sets (section 7: choosing the positions)


def test_the_solution_position_sets_are_the_tables(checks04):
    """The chapter's table rows, written out by hand: last piece, last position, the pieces, pieces + last."""
    assert ref.position_sets([4, 5, 6], 8) == [[6], [8], [4, 5, 6], [4, 5, 6, 8]]


@pytest.mark.parametrize("wrong, message", [
    (lambda pieces, last: [[p] for p in [*pieces, last]], "every set has one position"),
    (lambda pieces, last: [[0], [pieces[-1]], [*pieces, last]], "position 0 is BOS"),
    (lambda pieces, last: [[pieces[-1]], [last], list(pieces)], "no set holds all the pieces and the last position"),
    (lambda pieces, last: [list(pieces), [*pieces, last]], "no single position is tested"),
    (lambda pieces, last: [[pieces[0]], [*pieces, last]], "test the pieces together"),
    (lambda pieces, last: [[4], [5], [6], [8], [4, 5, 6], [4, 5, 6, 8]], "position 8 is past the last position (7)"),
    (lambda pieces, last: [[p] for p in range(1, last + 1)] + [list(range(1, last + 1))] * 2, "choose the few"),
    (lambda pieces, last: [[last], []], "an empty set"),
])
def test_wrong_position_sets(checks04, wrong, message):
    fails_with(checks04.test_position_sets, wrong, message)


@pytest.mark.parametrize("alternative", [
    lambda pieces, last: [[p] for p in pieces] + [[last], list(pieces), [*pieces, last]],  # every piece alone too
    lambda pieces, last: ((last,), tuple(pieces), (pieces[-1],), (last, *pieces)),  # tuples, any order
])
def test_other_good_position_sets_pass(checks04, alternative, capsys):
    passes(checks04.test_position_sets, alternative, capsys)


# -------------------------------------------------------------------------------------------------
# same_state_donors (section 4: choosing the control)


def test_the_solution_donors_on_a_hand_table():
    table = {"North": ["Ava", "Bo", "Cy"], "South": ["Di", "Ed"], "Isle": ["Fy"]}
    assert ref.same_state_donors("Bo", table) == ["Ava", "Cy"] and ref.same_state_donors("Fy", table) == []


def _state_of(city, table):
    return next(s for s, cities in table.items() if city in cities)


@pytest.mark.parametrize("wrong, message", [
    (lambda city, t: list(t[_state_of(city, t)]), "a swap with the same city changes nothing"),
    (lambda city, t: [c for s, cs in t.items() if s != _state_of(city, t) for c in cs], "is the experiment itself"),
    (lambda city, t: [c for c in t[_state_of(city, t)] if c != city][:1], "every other city of"),
    (lambda city, t: sorted(c for c in t[_state_of(city, t)] if c != city)[::-1], "keep the table's order"),
    (lambda city, t: {c for c in t[_state_of(city, t)] if c != city}, "should return a list"),
])
def test_wrong_same_state_donors(checks04, wrong, message):
    fails_with(checks04.test_same_state_donors, wrong, message)


def test_donors_as_a_tuple_pass(checks04, capsys):
    passes(checks04.test_same_state_donors, lambda city, t: tuple(c for c in t[_state_of(city, t)] if c != city), capsys)
