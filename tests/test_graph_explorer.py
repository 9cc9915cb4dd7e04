"""The attribution-graph explorer (utils/graph_explorer.py) on a graph of the course world.

What the view shows is compared with quantities computed here another way: activations by running
the model and encoding with the transcoder, concept matches from the labels, edges from the
adjacency matrix, the strongest path by enumerating every path. The browser test opens the saved
page in headless Chromium, hovers and clicks a node, and checks that no request leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import warnings

import pytest
import torch

from browser import chromium, non_local
from utils.graph_explorer import GraphView, explore_graph
from utils.world import load_model
from utils.world.concepts import labelled_corpus
from utils.world.dictionaries import load_transcoders, replacement_model

PROMPT = "The capital of the state containing Dallas is"
N_DOCS = 40  # held-out documents for the concept and example checks (quick)


@pytest.fixture(scope="module")
def graph():
    import circuit_tracer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's full-backward-hook notice inside circuit_tracer
        return circuit_tracer.attribute(PROMPT, replacement_model(), verbose=False)


@pytest.fixture(scope="module")
def view(graph) -> GraphView:
    return explore_graph(graph, n_docs=N_DOCS)


def node_index(graph, node_id: str) -> int:
    """Row/column of a circuit_tracer node id in the adjacency matrix, decoded from the id alone."""
    n_feat, n_pos, n_layers = len(graph.selected_features), graph.n_pos, graph.cfg.n_layers
    a, b, c = node_id.split("_")
    if a == "error":  # renamed error node (see test_colliding_ids_are_told_apart)
        return n_feat + int(b) * n_pos + int(c)
    if a == "E":
        return n_feat + n_layers * n_pos + int(c)
    if a == str(n_layers + 1):
        ids = [t.vocab_idx for t in graph.logit_targets]
        return len(graph.adjacency_matrix) - len(ids) + ids.index(int(b))
    if a == "0" and int(b) < n_layers and not _is_feature(graph, 0, int(b), int(c)):
        return n_feat + int(b) * n_pos + int(c)  # error node "0_{layer}_{pos}" (not a layer-0 feature's id)
    layer, feat, pos = int(a), int(b), int(c)
    rows = graph.active_features[graph.selected_features]
    return int(((rows == torch.tensor([layer, pos, feat])).all(1)).nonzero().item())


def _is_feature(graph, layer, feat, pos) -> bool:
    rows = graph.active_features[graph.selected_features]
    return bool((rows == torch.tensor([layer, pos, feat])).all(1).any())


def test_nodes_and_edges_are_circuit_tracers_pruned_graph(graph, view):
    from circuit_tracer.graph import prune_graph

    node_mask, edge_mask, _ = prune_graph(graph, 0.8, 0.98)
    kept = {node_index(graph, i) for i in view.nodes}
    assert kept <= set(node_mask.nonzero().flatten().tolist())
    n_tokens = graph.n_pos + len(graph.logit_targets)
    assert set(range(len(node_mask) - n_tokens, len(node_mask))) <= kept  # every token and logit
    expected = {(s, t) for t, s in edge_mask.nonzero().tolist() if s in kept and t in kept}
    shown = {(node_index(graph, s), node_index(graph, t)): w for s, t, w in view.edges}
    assert set(shown) == expected
    for (s, t), w in shown.items():
        assert w == pytest.approx(graph.adjacency_matrix[t, s].item(), rel=1e-6)
    # every feature or error shown has an edge in and out (prune_graph's guarantee)
    for nid, n in view.nodes.items():
        if n.kind in ("feature", "error"):
            assert any(s == nid for s, _, _ in view.edges), nid


def test_hover_shows_the_activation_computed_by_the_transcoder(graph, view):
    model, transcoders = load_model(), load_transcoders()
    tokens = graph.input_tokens[None]
    feats = [n for n in view.nodes.values() if n.kind == "feature"]
    assert len(feats) >= 5
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("ln2.hook_normalized"))
    for n in feats:
        hook = transcoders[n.layer].cfg.metadata.hook_name
        act = transcoders[n.layer].encode(cache[hook][0, n.pos])[n.feature].item()
        assert n.activation == pytest.approx(act, rel=1e-3, abs=1e-4), n.id
        assert f"activation {n.activation:.4g}" in n.hover


def test_hover_shows_the_best_planted_concept_from_the_labels(view):
    data = labelled_corpus(N_DOCS)
    model, transcoders = load_model(), load_transcoders()
    feats = sorted((n for n in view.nodes.values() if n.kind == "feature"), key=lambda n: -n.influence)[:4]
    for n in feats:
        hook = transcoders[n.layer].cfg.metadata.hook_name
        with torch.no_grad():
            _, cache = model.run_with_cache(data.tokens, names_filter=hook)
            fires = transcoders[n.layer].encode(cache[hook])[..., n.feature][data.mask] > 0
        labels = data.labels[data.mask]
        true_pos = (labels & fires[:, None]).sum(0).float()
        precision, recall = true_pos / max(int(fires.sum()), 1), true_pos / labels.sum(0).clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
        c = data.concepts.index(n.latent["concept"])
        assert f1[c] == pytest.approx(f1.max().item(), abs=1e-6), n.id  # the best (or tied with it)
        assert n.latent["f1"] == pytest.approx(f1[c].item(), abs=1e-6)
        assert f"<b>{n.latent['concept']}</b>" in n.hover
        if fires.any():  # top example: the document holding the max activation, its max token bracketed
            assert n.latent["examples"] and "<b>[" in n.latent["examples"][0][1]


def _all_paths(edges, start, is_logit):
    out = {}
    for s, t, _ in edges:
        out.setdefault(s, []).append(t)
    stack, paths = [[start]], []
    while stack:
        path = stack.pop()
        if is_logit(path[-1]):
            paths.append(path)
        stack += [path + [t] for t in out.get(path[-1], [])]
    return paths


def test_click_path_is_the_strongest_path_by_enumeration(graph, view):
    a = graph.adjacency_matrix
    kept = [node_index(graph, i) for i in view.nodes]
    inputs = {t: a[t, kept].abs().sum().item() for t in kept}  # |input| from kept nodes ...
    edge_set = {(node_index(graph, s), node_index(graph, t)) for s, t, _ in view.edges}
    for t in kept:  # ... over kept edges only
        inputs[t] = sum(abs(a[t, s].item()) for s in kept if (s, t) in edge_set)
    prob = {view.nodes[i].id: view.nodes[i].activation for i in view.nodes if view.nodes[i].kind == "logit"}

    def strength(path):
        value = prob[path[-1]]
        for s, t in itertools.pairwise(path):
            value *= abs(a[node_index(graph, t), node_index(graph, s)].item()) / inputs[node_index(graph, t)]
        return value

    feats = sorted((n for n in view.nodes.values() if n.kind == "feature"), key=lambda n: -n.influence)[:3]
    for n in feats:
        paths = _all_paths(view.edges, n.id, lambda i: view.nodes[i].kind == "logit")
        best = max(strength(p) for p in paths)
        assert strength(view.paths[n.id][0]) == pytest.approx(best, rel=1e-6)
        assert len(view.paths[n.id]) == min(3, len(paths))


def test_layout_rows_are_layers_and_columns_positions(graph, view):
    rows = {"token": 0, "logit": graph.cfg.n_layers + 1}
    for n in view.nodes.values():
        assert n.y == pytest.approx(rows.get(n.kind, (n.layer or 0) + 1), abs=0.11), n.id
    by_pos = {}
    for n in view.nodes.values():
        by_pos.setdefault(n.pos, []).append(n.x)
    ordered = [by_pos[p] for p in sorted(by_pos)]
    for left, right in itertools.pairwise(ordered):
        assert max(left) < min(right)  # columns never overlap



def test_labels_of_neighbouring_nodes_in_a_row_take_opposite_sides(view):
    """Two logits of one position (' Austin', ' Texas') sit 0.3 apart: one label above, one below, so
    they cannot print over each other. Nodes far apart, or in other rows, keep theirs above; tokens
    keep theirs below the axis row."""
    from utils.graph_explorer import Node, _text_positions

    def node(x, y):
        return Node(f"n{x}_{y}", "logit", None, 0, "x", x=x, y=y)

    row = [node(8.0, 5), node(8.3, 5), node(8.6, 5), node(2.0, 5), node(8.3, 4)]
    assert _text_positions(row, "logit") == ["top center", "bottom center", "top center", "top center", "top center"]
    trace = {t.name: t for t in view.figure.data}
    assert set(trace["tokens"].textposition) == {"bottom center"}
    assert len(trace["logits"].textposition) == len(trace["logits"].x)


def test_supernodes_sum_their_members_edges(graph):
    base = explore_graph(graph, n_docs=N_DOCS)
    feats = sorted((n for n in base.nodes.values() if n.kind == "feature" and n.layer == 0),
                   key=lambda n: -n.influence)[:3]
    members = [n.id for n in feats]
    grouped = explore_graph(graph, supernodes={"early": members}, n_docs=N_DOCS)
    assert "early" in grouped.nodes and not set(members) & set(grouped.nodes)
    assert grouped.nodes["early"].kind == "supernode" and grouped.nodes["early"].members == members
    a = graph.adjacency_matrix
    for s, t, w in grouped.edges:
        if s == "early":
            expected = sum(a[node_index(graph, t), node_index(graph, m)].item() for m in members
                           if (m, t) in {(x, y) for x, y, _ in base.edges})
            assert w == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="not in the pruned graph"):
        explore_graph(graph, supernodes={"x": ["9_9_9"]}, n_docs=N_DOCS)
    with pytest.raises(ValueError, match="in two supernodes"):
        explore_graph(graph, supernodes={"x": members[:2], "y": members[1:]}, n_docs=N_DOCS)
    with pytest.raises(TypeError, match="circuit_tracer Graph"):
        explore_graph("not a graph")
    with pytest.raises(ValueError, match="between 0 and 1"):
        explore_graph(graph, node_threshold=1.5)


def test_notebook_bundle_is_small_and_offline(view):
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.plotly.v1+json", "text/html", "text/plain"}
    size = len(json.dumps(bundle))
    assert size < 400_000, size  # the figure, not a 4 MB copy of plotly.js
    assert "<script" not in bundle["text/html"] and "<svg" not in bundle["text/html"]
    assert "Attribution graph" in bundle["text/plain"] and "nodes" in bundle["text/plain"]
    figure = bundle["application/vnd.plotly.v1+json"]
    assert figure["data"] and figure["layout"]["updatemenus"][0]["buttons"]


def test_export_is_circuit_tracers_graph_json(graph, view, tmp_path):
    grouped = explore_graph(graph, supernodes={"a": list(view.nodes)[:2]}, n_docs=N_DOCS)
    path = grouped.export_circuit_tracer_json(tmp_path, "dallas")
    data = json.loads(path.read_text())
    from circuit_tracer.frontend.graph_models import Model

    Model.model_validate(data)  # the schema circuit_tracer's viewer is served from
    assert {n["node_id"] for n in data["nodes"]} == set(view.nodes)
    assert {(e["source"], e["target"]) for e in data["links"]} == {(s, t) for s, t, _ in view.edges}
    assert data["metadata"]["slug"] == "dallas" and data["metadata"]["prompt"] == graph.input_string
    assert data["qParams"]["supernodes"] == [["a", *list(view.nodes)[:2]]]
    meta = json.loads((tmp_path / "graph-metadata.json").read_text())
    assert [g["slug"] for g in meta["graphs"]] == ["dallas"]
    assert graph.cfg.tokenizer_name is None  # the workaround put it back


def test_saved_page_renders_offline_hover_and_click(view, tmp_path):
    path = view.save(tmp_path / "graph.html")
    text = path.read_text()
    assert "<script src" not in text and "plotly.js v" in text  # plotly.js inline, from the package
    feature_trace = next(i for i, tr in enumerate(view.figure.data) if tr.name == "features")
    top = max((n for n in view.nodes.values() if n.kind == "feature"), key=lambda n: n.influence)
    point = list(view.figure.data[feature_trace].customdata).index(top.id)
    with chromium(tmp_path) as (context, requests):
        page = context.new_page()
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_selector("#attribution-graph .main-svg", timeout=20_000)
        dot = page.locator(".scatterlayer .trace").nth(feature_trace).locator("path.point").nth(point)
        box = dot.bounding_box()
        assert box, "the node is not drawn"
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_selector(".hoverlayer .hovertext", timeout=5_000)
        hover = page.evaluate("document.querySelector('.hoverlayer').textContent")
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("document.getElementById('attribution-graph').getAttribute('data-highlighted')",
                               timeout=5_000)
        highlighted = page.get_attribute("#attribution-graph", "data-highlighted")
        visible = page.evaluate("Array.from(document.getElementById('attribution-graph').data)"
                                ".filter(t => t.meta && t.meta.paths_from && t.visible === true)"
                                ".map(t => t.meta.paths_from)")
        details = page.inner_text("#details")
        page.screenshot(path=str(tmp_path / "graph.png"), full_page=True)
    assert "activation" in hover and top.label in hover and top.latent["concept"] in hover
    assert highlighted == top.id and visible == [top.id]
    assert top.label in details and "best planted concept" in details
    assert requests and not non_local(requests), non_local(requests)


def test_colliding_ids_are_told_apart():
    from circuit_tracer.frontend.graph_models import Node

    from utils.graph_explorer import _unique_ids

    feature, error = Node.feature_node(0, 8, 1), Node.error_node(1, 8)  # layer-0 feature 1, error of layer 1
    assert feature.node_id == error.node_id == "0_1_8"  # circuit_tracer gives both the same id
    assert _unique_ids({0: feature, 1: error}) == {0: "0_1_8", 1: "error_1_8"}


def test_influence_is_the_total_normalised_effect_on_the_logits(graph, view):
    # w^T (Â + Â² + ...) = w^T ((I - Â)^-1 - I), Â = |A| with rows scaled to sum to 1, w = logit probabilities
    a = graph.adjacency_matrix.abs().double()
    a = a / a.sum(1, keepdim=True).clamp_min(1e-10)
    w = torch.zeros(len(a), dtype=torch.double)
    w[-len(graph.logit_targets):] = graph.logit_probabilities.double()
    eye = torch.eye(len(a), dtype=torch.double)
    expected = torch.linalg.solve((eye - a).T, w) - w
    for nid, n in view.nodes.items():
        if n.kind != "logit":
            assert n.influence == pytest.approx(expected[node_index(graph, nid)].item(), rel=1e-4, abs=1e-7), nid
    assert f"{max(n.influence for n in view.nodes.values() if n.kind in ('feature', 'error')):.3f}" in view.summary()
