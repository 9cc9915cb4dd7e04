"""Checks for chapter 04. The notebook calls them as `tests.test_<exercise>(learner_code, ...)`.

Graph reading is checked on small graphs built here by hand (their influences worked out from the
definition) and against circuit_tracer on the course model's Dallas prompt; the intervention
helpers against values written out here. Each check names the known mistakes it recognises.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch

import solutions.ch04_interventions as ref
from utils.checks import Mistake, check, expect, fail

DALLAS = "The state containing Dallas has its capital in"


@lru_cache(maxsize=1)
def _world():
    from utils.world import load_model, load_transcoders, replacement_model

    model = load_model()
    return model, replacement_model(model, load_transcoders())


@lru_cache(maxsize=1)
def _dallas_graph():
    from circuit_tracer import attribute

    model, rm = _world()
    with warnings.catch_warnings(), torch.enable_grad():  # the notebook turns gradients off; attribute needs them
        warnings.simplefilter("ignore")
        return attribute(model.to_tokens(DALLAS)[0], rm, batch_size=256, verbose=False)


def _hand_graph():
    """Five active latents of which three are nodes, in the order [L0#7@1, L2#3@2, L1#9@1] (not the
    order of active_features), one error node per (layer, position) for 3 layers x 3 positions, 3
    embeddings and 1 logit. Edges: embedding 0 -> node 0 (2.0), node 0 -> node 1 (1.0), node 2 ->
    node 1 (-3.0), node 1 -> logit (1.0), node 2 -> logit (0.5), embedding 2 -> logit (1.0)."""
    from circuit_tracer.attribution.targets import LogitTarget
    from circuit_tracer.graph import Graph
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=3, d_model=4, n_ctx=8, d_head=2, n_heads=2, d_mlp=8, d_vocab=10, act_fn="gelu")
    active = torch.tensor([[0, 0, 1], [1, 1, 9], [2, 1, 4], [0, 1, 7], [2, 2, 3]])
    selected = torch.tensor([3, 4, 1])
    n_latents, n_errors, n_embeddings = 3, 9, 3
    n = n_latents + n_errors + n_embeddings + 1
    emb, logit = n_latents + n_errors, n - 1
    adjacency = torch.zeros(n, n)
    adjacency[0, emb] = 2.0
    adjacency[1, 0] = 1.0
    adjacency[1, 2] = -3.0
    adjacency[logit, 1] = 1.0
    adjacency[logit, 2] = 0.5
    adjacency[logit, emb + 2] = 1.0
    return Graph(input_string="a b c", input_tokens=torch.tensor([1, 5, 6]), active_features=active,
                 adjacency_matrix=adjacency, cfg=cfg, selected_features=selected,
                 activation_values=torch.tensor([5.0, 0.5, 2.0]),
                 logit_targets=[LogitTarget(token_str="x", vocab_idx=3)], logit_probabilities=torch.tensor([1.0]),
                 scan="hand", vocab_size=10)


# Influence on the logit in the hand graph, by hand. Normalise each row by its total |input|:
# node 1 <- node 0 (1/4), node 2 (-3/4: |.| = 3/4); logit <- node 1 (1/2.5), node 2 (.5/2.5), emb 2.
# Influence = sum over paths of |normalised weights| products, times P(logit) = 1:
#   node 1: 0.4; node 2: 0.2 + 0.75 * 0.4 = 0.5; node 0: 0.25 * 0.4 = 0.1.
HAND_INFLUENCE = {0: 0.1, 1: 0.4, 2: 0.5}
HAND_LATENTS = {0: (0, 1, 7, 5.0), 1: (2, 2, 3, 0.5), 2: (1, 1, 9, 2.0)}  # node -> layer, pos, latent, activation


def _rows(result, where: str) -> list[tuple]:
    expect(isinstance(result, (list, tuple)), f"{where} should return a list of GraphLatent, not {type(result).__name__}.")
    fields = ("node", "layer", "pos", "latent", "activation", "influence")
    for item in result:
        missing = [f for f in fields if not hasattr(item, f)]
        expect(not missing, f"{where}: each item should be a GraphLatent (with {', '.join(fields)}); "
                            f"got {type(item).__name__} without {', '.join(missing)}.")
    return [(int(g.node), int(g.layer), int(g.pos), int(g.latent), float(g.activation), float(g.influence)) for g in result]


@check
def test_graph_latent_table(graph_latent_table) -> None:
    """A hand graph whose nodes are not in active_features order, then the Dallas graph."""
    where = "graph_latent_table(hand graph, k=3)"
    got = _rows(graph_latent_table(_hand_graph(), k=3), where)
    expect(len(got) == 3, f"{where} returned {len(got)} latents; the graph has 3 latent nodes and k=3.")
    want = sorted(HAND_INFLUENCE, key=HAND_INFLUENCE.get, reverse=True)
    nodes = [r[0] for r in got]
    if sorted(nodes) != [0, 1, 2]:
        fail(f"{where} returned nodes {nodes}; the latent nodes are 0, 1 and 2 (the first "
             f"len(graph.selected_features) rows of the adjacency matrix).")
    for node, layer, pos, latent, activation, influence in got:
        true = HAND_LATENTS[node]
        if (layer, pos, latent) != true[:3]:
            wrong_row = tuple(int(x) for x in _hand_graph().active_features[node])
            hint = (" Hint: node i is graph.active_features[graph.selected_features[i]], not graph.active_features[i]."
                    if (layer, pos, latent) == wrong_row else "")
            fail(f"{where}: node {node} is (layer, pos, latent) = {(layer, pos, latent)}, expected {true[:3]}.{hint}")
        expect(abs(activation - true[3]) < 1e-6, f"{where}: node {node} has activation {activation}, expected {true[3]} "
                                                  f"(graph.activation_values[{node}]).")
        expect(abs(influence - HAND_INFLUENCE[node]) < 1e-5,
               f"{where}: node {node} has influence {influence:.4f}, expected {HAND_INFLUENCE[node]:.4f}. Hint: use "
               f"compute_node_influence(graph.adjacency_matrix, logit_weights(graph)) on the whole matrix.")
    if nodes != want:
        by_activation = sorted(HAND_LATENTS, key=lambda i: HAND_LATENTS[i][3], reverse=True)
        hint = (" Hint: sort by influence, not by activation." if nodes == by_activation else
                " Hint: largest influence first." if nodes == want[::-1] else "")
        fail(f"{where} returned nodes in the order {nodes}, expected {want} (largest influence first).{hint}")
    got = _rows(graph_latent_table(_hand_graph(), k=2), "graph_latent_table(hand graph, k=2)")
    expect([r[0] for r in got] == want[:2], f"graph_latent_table(hand graph, k=2) should return the 2 most influential "
                                            f"latents {want[:2]}, got nodes {[r[0] for r in got]}.")
    graph = _dallas_graph()
    got = _rows(graph_latent_table(graph, k=10), "graph_latent_table(Dallas graph, k=10)")
    want = _rows(ref.graph_latent_table(graph, k=10), "reference")
    for (g, w) in zip(got, want):
        expect(g[:4] == w[:4] and abs(g[5] - w[5]) < 1e-5,
               f"graph_latent_table(Dallas graph, k=10) gives {g[:4]} with influence {g[5]:.4f} where circuit_tracer's "
               f"influence ranks {w[:4]} ({w[5]:.4f}) (node, layer, pos, latent).")


@lru_cache(maxsize=1)
def _dallas_top_labels() -> tuple[str, ...]:
    return tuple(g.label for g in ref.graph_latent_table(_dallas_graph(), k=10))


@check
def test_hand_supernodes(hand_supernodes) -> None:
    """Only the form: any grouping of the ten latents shown is allowed (section 3 tests it)."""
    groups = hand_supernodes()
    shown = _dallas_top_labels()
    expect(isinstance(groups, dict), f"hand_supernodes() should return a dict {{group name: [latent labels]}}, "
                                     f"not {type(groups).__name__}.")
    expect(len(groups) >= 2, f"hand_supernodes() has {len(groups)} group(s); make at least two, so that the groups "
                             "say something different from 'all of them'.")
    seen: dict[str, str] = {}
    for name, labels in groups.items():
        expect(isinstance(name, str) and name.strip() != "", f"group names should be non-empty strings, got {name!r}.")
        expect(isinstance(labels, (list, tuple)) and len(labels) > 0,
               f"group {name!r} should be a non-empty list of latent labels, got {labels!r}.")
        for label in labels:
            if label not in shown:
                near = [s for s in shown if isinstance(label, str) and s.replace(" ", "") == label.replace(" ", "")]
                fail(f"group {name!r}: {label!r} is not one of the ten latents shown"
                     + (f"; write it as printed, {near[0]!r}." if near else f" ({', '.join(shown)})."))
            expect(label not in seen, f"{label!r} is in two groups, {seen.get(label)!r} and {name!r}; put each "
                                      "latent in one group (or in none).")
            seen[label] = name


def _latent(node: int, layer: int = 0, pos: int = 1, latent: int = 0, activation: float = 1.0) -> "ref.GraphLatent":
    return ref.GraphLatent(node, layer, pos, latent, activation, 0.1)


@check
def test_supernodes_from_labels(supernodes_from_labels) -> None:
    latents = [_latent(i, latent=i) for i in range(6)]
    labels = {0: "in_state:Texas", 1: "state:Texas", 2: "capital:Austin", 3: "in_state:Texas", 4: "p6", 5: "state:Ohio"}
    where = "supernodes_from_labels(6 latents, families=('state:', 'capital:'))"
    got = supernodes_from_labels(latents, lambda g: labels[g.latent], ("state:", "capital:"))
    expect(isinstance(got, dict), f"{where} should return a dict {{concept: [latents]}}, not {type(got).__name__}.")
    want = {"state:Texas": [latents[1]], "capital:Austin": [latents[2]], "state:Ohio": [latents[5]]}
    if set(got) != set(want):
        hint = (" Hint: keep only concepts that start with one of the families." if "p6" in got else
                " Hint: 'in_state:Texas' contains 'state:' but does not start with it: use str.startswith."
                if "in_state:Texas" in got else "")
        fail(f"{where} has groups {sorted(got)}, expected {sorted(want)}.{hint}")
    for concept, members in want.items():
        expect(list(got[concept]) == members, f"{where}: group {concept!r} holds {list(got[concept])}, expected {members}.")
    where = "supernodes_from_labels(6 latents, families=('in_state:',))"
    got = supernodes_from_labels(latents, lambda g: labels[g.latent], ("in_state:",))
    expect(set(got) == {"in_state:Texas"} and [g.node for g in got["in_state:Texas"]] == [0, 3],
           f"{where} should be {{'in_state:Texas': [latents 0 and 3, in that order]}}, got "
           f"{ {k: [g.node for g in v] for k, v in got.items()} }.")
    got = supernodes_from_labels(latents, lambda g: labels[g.latent], ["capital:"])
    expect(set(got) == {"capital:Austin"}, "supernodes_from_labels should accept families as a list too "
                                           f"(['capital:'] gave groups {sorted(got)}).")


@check
def test_supernode_graph(supernode_graph) -> None:
    graph = _hand_graph()
    latents = {node: _latent(node) for node in range(3)}
    groups = {"A": [latents[0], latents[2]], "B": [latents[1]]}
    where = "supernode_graph(hand graph, {'A': nodes 0 and 2, 'B': node 1})"
    result = supernode_graph(graph, groups)
    expect(isinstance(result, (tuple, list)) and len(result) == 2, f"{where} should return (names, weights).")
    names, weights = result
    expect(list(names) == ["A", "B", "logits"], f"{where}: names {list(names)}, expected ['A', 'B', 'logits'].")
    expect(isinstance(weights, torch.Tensor) and weights.shape == (3, 3),
           f"{where}: weights should be a (3, 3) tensor, got {getattr(weights, 'shape', type(weights).__name__)}.")
    # by hand: B <- A = 1.0 + (-3.0); logits <- A = 0.5; logits <- B = 1.0; nothing else between groups
    want = torch.tensor([[0.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [0.5, 1.0, 0.0]])
    transposed, absolute = want.T, torch.tensor([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.5, 1.0, 0.0]])
    expect(torch.allclose(weights.float(), want), f"{where} gives {weights.tolist()}, expected {want.tolist()} "
                                                  "(row = target, column = source).", weights,
           [Mistake.looks_like(transposed, "the matrix is [target, source], as graph.adjacency_matrix is."),
            Mistake.looks_like(absolute, "sum the signed edges: an inhibiting edge (negative) cancels an exciting one.")])


@check
def test_ablation_predictions(ablation_predictions) -> None:
    """Only the form: a prediction may be wrong (the table after the measurement scores it)."""
    predictions = ablation_predictions()
    expect(isinstance(predictions, dict), "ablation_predictions() should return a dict {supernode name: 'lower' | "
                                          f"'higher' | 'same'}}, not {type(predictions).__name__}.")
    expect(len(predictions) >= 3, f"ablation_predictions() predicts {len(predictions)} supernode(s); predict at "
                                  "least three, before measuring.")
    allowed = ("lower", "higher", "same")
    synonyms = {"down": "lower", "decrease": "lower", "up": "higher", "increase": "higher", "unchanged": "same",
                "none": "same"}
    for name, value in predictions.items():
        expect(isinstance(name, str) and name.strip() != "",
               f"supernode names should be non-empty strings as printed above, got {name!r}.")
        if value not in allowed:
            hint = f" (write {synonyms[value.lower()]!r})" if isinstance(value, str) and value.lower() in synonyms else ""
            fail(f"the prediction for {name!r} is {value!r}; it should be one of {', '.join(map(repr, allowed))}{hint}.")


@check
def test_scale_interventions(scale_interventions) -> None:
    members = [_latent(0, layer=1, pos=4, latent=17, activation=2.5), _latent(1, layer=3, pos=4, latent=2, activation=-0.5)]
    for factor in (0.0, -2.0, 3.0):
        got = scale_interventions(members, factor)
        want = [(1, 4, 17, 2.5 * factor), (3, 4, 2, -0.5 * factor)]
        expect(isinstance(got, (list, tuple)) and len(got) == 2,
               f"scale_interventions(2 latents, {factor}) should return 2 tuples, got {got!r}.")
        got = [tuple(x) for x in got]
        ok = all(len(g) == 4 and g[:3] == w[:3] and abs(float(g[3]) - w[3]) < 1e-6 for g, w in zip(got, want))
        change = [(l, p, i, (factor - 1) * a) for l, p, i, a in [(1, 4, 17, 2.5), (3, 4, 2, -0.5)]]
        expect(ok, f"scale_interventions(2 latents, factor={factor}) gives {got}, expected {want} "
                   "((layer, pos, latent, new value)).", got,
               [Mistake(lambda g: all(abs(float(a[3]) - b[3]) < 1e-6 for a, b in zip(g, change)) and factor != 1,
                        "the value is the latent's new activation, factor * activation, not the change from it."),
                Mistake(lambda g: [tuple(a[:3]) for a in g] == [(4, 1, 17), (4, 3, 2)],
                        "the tuple is (layer, pos, latent, value): layer first.")])


@check
def test_contrast_latents(contrast_latents) -> None:
    acts = torch.zeros(3, 5)
    other = torch.zeros(3, 5)
    acts[0, 1], acts[2, 4], acts[1, 0] = 3.0, 2.0, 1.0
    other[1, 3], other[2, 4], other[0, 2] = 4.0, 1.5, 0.5
    where = "contrast_latents(acts, other, k=2) on (3 layers, 5 latents)"
    result = contrast_latents(acts, other, k=2)
    expect(isinstance(result, (tuple, list)) and len(result) == 2, f"{where} should return (own, new).")
    own, new = ([tuple(int(v) for v in x) for x in side] for side in result)
    expect(own == [(0, 1), (1, 0)], f"{where}: the latents more active on acts should be [(0, 1), (1, 0)] "
                                    f"(differences 3.0 and 1.0; (2, 4) differs by only 0.5), got {own}.", own,
           [Mistake(lambda o: o == [(0, 1), (1, 2)],
                    "turn a flat index i back into (i // d, i % d) with d = latents per layer, not the number of layers.")])
    expect(new == [(1, 3), (0, 2)], f"{where}: the latents more active on other should be [(1, 3), (0, 2)] "
                                    f"(differences 4.0 and 0.5), got {new}.", new,
           [Mistake(lambda n: n == [(1, 3), (0, 1)],
                    "rank other - acts on its own: |acts - other| mixes both directions.")])
    result = contrast_latents(acts, other, k=4)
    own, new = ([tuple(int(v) for v in x) for x in side] for side in result)
    expect(own == [(0, 1), (1, 0), (2, 4)] and new == [(1, 3), (0, 2)],
           f"contrast_latents(acts, other, k=4) should leave out differences that are not positive: expected "
           f"own [(0, 1), (1, 0), (2, 4)] and new [(1, 3), (0, 2)], got {own} and {new}.")


@check
def test_swap_interventions(swap_interventions) -> None:
    other = torch.arange(12.0).reshape(3, 4)
    own, new = [(0, 1), (2, 3)], [(1, 2), (0, 0)]
    got = [tuple(x) for x in swap_interventions(own, new, other, pos=6)]
    want = [(0, 6, 1, 0.0), (2, 6, 3, 0.0), (1, 6, 2, 6.0), (0, 6, 0, 0.0)]
    ok = len(got) == 4 and all(g[:3] == w[:3] and abs(float(g[3]) - w[3]) < 1e-6 for g, w in zip(got, want))
    expect(ok, f"swap_interventions(own={own}, new={new}, other=arange(12).reshape(3, 4), pos=6) gives {got}, "
               f"expected {want}: own zeroed, then new set to other[layer, latent].", got,
           [Mistake(lambda g: len(g) == 2, "zero the prompt's own latents too, not only write in the new ones."),
            Mistake(lambda g: len(g) == 4 and float(g[2][3]) == 9.0,
                    "other[layer, latent] is other[1, 2] = 6.0 for (1, 2); index the layer first.")])


@check
def test_from_position_on(from_position_on) -> None:
    given = [(0, 3, 17, 0.0), (2, 8, 5, 1.5)]
    got = [tuple(x) for x in from_position_on(given)]
    want = [(0, slice(3, None), 17, 0.0), (2, slice(8, None), 5, 1.5)]
    expect(got == want, f"from_position_on({given}) gives {got}, expected {want}.", got,
           [Mistake(lambda g: [x[1] for x in g] == [slice(None, 3), slice(None, 8)],
                    "slice(pos, None) is 'from pos on'; slice(None, pos) is 'before pos'.")])


LANDMARK_CHECK = ("Eiffel", "Louvre", "Colosseum", "Kremlin", "Westminster")  # Eiffel and Louvre: both Paris
LANDMARK_SWAP = [4, 5, 6, 10]  # the three pieces of the landmark's name and the last position


@lru_cache(maxsize=1)
def _landmark_prompts():
    from utils.world import facts as F

    model, _ = _world()
    chosen = [F.LANDMARK_BY_NAME[name] for name in LANDMARK_CHECK]
    prompts = [model.to_tokens(f"Everyone knows the {lm.name} {lm.kind} is located in")[0] for lm in chosen]
    return prompts, [model.to_single_token(" " + lm.city) for lm in chosen]


def _flip_rate_by_hand(rm, prompts, answers, positions, k, *, read_at=None, one_position_at_a_time=False,
                       same_answers=False, rise=False) -> float:
    """The flip rate from the chapter's building blocks, and the variants a learner may write instead:
    activations read at position `read_at` for every position, each position swapped in its own run (a
    pair flipped if any run flips it), pairs with equal answers counted, a rise of P(other) counted."""
    from utils.interventions import next_token_probs

    acts = [{p: ref.acts_at(rm, tokens, p if read_at is None else read_at) for p in positions} for tokens in prompts]
    base = [next_token_probs(rm, tokens) for tokens in prompts] if rise else None
    flipped = pairs = 0
    for i, tokens in enumerate(prompts):
        for j, other in enumerate(answers):
            if i == j or (other == answers[i] and not same_answers):
                continue
            runs = []
            for p in positions:
                own, new = ref.contrast_latents(acts[i][p], acts[j][p], k)
                runs.append(ref.swap_interventions(own, new, acts[j][p], p))
            groups = runs if one_position_at_a_time else [[x for run in runs for x in run]]
            hit = False
            for interventions in groups:
                probs = next_token_probs(rm, tokens, interventions)
                hit |= (float(probs[other]) > float(base[i][other])) if rise else int(probs.argmax()) == other
            flipped += int(hit)
            pairs += 1
    return flipped / pairs


@check
def test_flip_rate(flip_rate) -> None:
    """On five landmark prompts (two of them about Paris): at the last position alone, then at the
    landmark's pieces and the last position together, against the rate computed here from the
    chapter's building blocks."""
    _, rm = _world()
    prompts, answers = _landmark_prompts()
    n_pairs = sum(a != b for a in answers for b in answers)
    for positions, k in ((10, 16), (LANDMARK_SWAP, 16)):
        where = f"flip_rate(rm, 5 landmark prompts, positions={positions}, k={k})"
        got = flip_rate(rm, prompts, answers, positions, k)
        expect(isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1),
               f"{where} should return one number, the fraction of pairs flipped; got {type(got).__name__}.")
        listed = [positions] if isinstance(positions, int) else positions
        want = _flip_rate_by_hand(rm, prompts, answers, listed, k)
        if abs(float(got) - want) < 1e-9:
            continue
        variants = [
            (dict(same_answers=True), "pairs with the same answer (Eiffel and Louvre are both Paris) are counted; skip them."),
            (dict(rise=True), "count a pair only when the other answer becomes the top-1, not when its probability rises."),
            (dict(read_at=-1), "read each position's activations at that position (acts_at(rm, tokens, p)), not at the "
                               "last position."),
            (dict(one_position_at_a_time=True), "apply the swaps of all positions together, in one run per pair, not "
                                                "one position at a time."),
        ]
        if len(listed) == 1:  # with one position, reading elsewhere or running positions apart cannot be told
            variants = variants[:2]
        hints = [h for kw, h in variants if abs(float(got) - _flip_rate_by_hand(rm, prompts, answers, listed, k, **kw)) < 1e-9]
        hint = " Or: ".join(hints) if hints else None  # two mistakes can give the same rate on these prompts
        fail(f"{where} = {float(got):.4f}, expected {want:.4f} ({round(want * n_pairs)} of the {n_pairs} ordered pairs "
             f"with different answers)." + (f" Hint: {hint}" if hint else
                                           " Count only pairs whose answers differ, a flip only when the other answer "
                                           "becomes the top-1, and swap at every position given, in one run."))


@check
def test_random_groups(random_groups) -> None:
    """Properties of the draws on a hand pool (any sampler that has them passes), then reproducibility."""
    pool = [_latent(i, latent=i) for i in range(12)]
    group = [pool[2], pool[7], pool[9]]
    where = "random_groups(3 latents, a pool of 12 that holds them, n_draws=200, generator)"
    draws = random_groups(group, pool, 200, torch.Generator().manual_seed(1))
    expect(isinstance(draws, (list, tuple)) and len(draws) == 200,
           f"{where} should return a list of 200 groups, got {type(draws).__name__} of length "
           f"{len(draws) if hasattr(draws, '__len__') else '?'}.")
    members = {g.node for g in group}
    for draw in draws:
        nodes = [g.node for g in draw]
        expect(len(nodes) == len(group), f"{where}: a group of {len(nodes)} latents; each random group has as many "
                                         f"latents as the group ({len(group)}): a size-matched baseline.")
        expect(not members & set(nodes), f"{where}: a random group holds a member of the group ({sorted(members & set(nodes))}); "
                                         "draw from the pool without the group's members.")
        expect(set(nodes) <= {g.node for g in pool}, f"{where}: a random group holds latents that are not in the pool.")
        expect(len(set(nodes)) == len(nodes), f"{where}: a random group holds the same latent twice ({nodes}); draw "
                                              "without replacement (torch.randperm).")
    distinct = {tuple(sorted(g.node for g in d)) for d in draws}
    expect(len(distinct) > 20, f"{where} gave only {len(distinct)} different groups in 200 draws: draw anew for each "
                               "group, not once for all.")
    counts = torch.bincount(torch.tensor([g.node for d in draws for g in d]), minlength=12).float()
    eligible = counts[[i for i in range(12) if i not in members]]
    expect(float(eligible.min()) > 0.5 * float(eligible.mean()),
           f"{where}: some latents of the pool are drawn far less often than others ({eligible.int().tolist()} times); "
           "every latent outside the group should be equally likely.")
    again = random_groups(group, pool, 5, torch.Generator().manual_seed(3))
    torch.manual_seed(0)  # a sampler that ignores the generator would now draw differently
    repeat = random_groups(group, pool, 5, torch.Generator().manual_seed(3))
    expect([[g.node for g in d] for d in again] == [[g.node for g in d] for d in repeat],
           "random_groups with two generators seeded alike gave different draws; draw with the generator given "
           "(torch.randperm(n, generator=generator)), so that a seed repeats the baseline.")


@check
def test_position_sets(position_sets) -> None:
    """The design's properties on the chapter's landmark layout (pieces 4-6, last 8), then on another layout."""
    for pieces, last in (([4, 5, 6], 8), ([2, 3], 7)):
        where = f"position_sets(pieces={pieces}, last={last})"
        sets = position_sets(list(pieces), last)
        expect(isinstance(sets, (list, tuple)) and all(isinstance(x, (list, tuple)) for x in sets) and sets,
               f"{where} should return a non-empty list of lists of positions, got {sets!r}.")
        sets = [sorted(int(p) for p in x) for x in sets]
        expect(all(x for x in sets), f"{where} holds an empty set: swapping at no position measures nothing.")
        beyond = sorted({p for x in sets for p in x if p > last})
        expect(not beyond, f"{where}: position {beyond[0] if beyond else ''} is past the last position ({last}): build "
                           "the sets from `pieces` and `last` as given, not from the chapter's numbers.")
        expect(all(p > 0 for x in sets for p in x),
               f"{where}: every position must be a real one, 1 to {last}; position 0 is BOS, the same in every "
               "prompt, so a swap there moves nothing that tells two landmarks apart.")
        expect(len(sets) <= 8, f"{where} returns {len(sets)} sets; each one costs a flip_rate run over 56 pairs: "
                               "choose the few that answer the question.")
        expect(any(len(x) > 1 for x in sets),
               f"{where}: every set has one position. A city held at several positions at once is outvoted at "
               "each single one, so a one-position-at-a-time search would conclude that nothing carries it: "
               "test sets of positions too.")
        expect(any(len(x) == 1 for x in sets),
               f"{where}: no single position is tested, so a place that holds the city alone could not be seen; "
               "keep at least one one-position set beside the larger ones.")
        whole = sorted([*pieces, last])
        expect(any(set(whole) <= set(x) for x in sets),
               f"{where}: no set holds all the pieces and the last position together, the two places a landmark "
               "prompt can keep its city; the union is the test that a spread-out city needs.")
        expect(any(sorted(x) == sorted(pieces) for x in sets) and [last] in sets,
               f"{where}: test the pieces together ({list(pieces)}) and the last position alone ([{last}]) too, so "
               "that the union can be compared with each of its parts.")


@check
def test_same_state_donors(same_state_donors) -> None:
    """A hand table (a city in a state of one, the first and the last of a list), then the world's states."""
    from utils.world import facts as world_facts

    hand = {"North": ["Ava", "Bo", "Cy"], "South": ["Di", "Ed"], "Isle": ["Fy"]}
    world = {state: list(d["cities"]) for state, d in world_facts.STATES.items()}
    cases = [(hand, "Ava"), (hand, "Cy"), (hand, "Ed"), (hand, "Fy")]
    cases += [(world, cities[i]) for cities in list(world.values())[:3] for i in (0, -1)]
    for table, city in cases:
        where = f"same_state_donors({city!r}, " + ("a hand table" if table is hand else "the world's states") + ")"
        state = next(s for s, cities in table.items() if city in cities)
        got = same_state_donors(city, {s: list(c) for s, c in table.items()})
        expect(isinstance(got, (list, tuple)), f"{where} should return a list of cities, got {type(got).__name__}.")
        got = list(got)
        expect(city not in got, f"{where} returns {city!r} itself: a swap with the same city changes nothing, so "
                                "that control cannot fail and shows nothing.")
        elsewhere = [c for c in got if c not in table[state]]
        expect(not elsewhere, f"{where} returns {elsewhere[:3]}, cities outside {state}: a swap with another "
                              "state's city is the experiment itself, not its control.")
        want = [c for c in table[state] if c != city]
        expect(sorted(got) == sorted(want), f"{where} returns {got}; every other city of {state} can serve "
                                            f"({want}): more controls, less luck.")
        expect(got == want, f"{where} returns {got}: the right cities, keep the table's order ({want}).")
