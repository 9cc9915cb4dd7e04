"""The attribution-graph explorer (utils/graph_explorer.py) on a graph of the course world (v2).

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
from utils.world import labelled_corpus, load_model, load_transcoders, replacement_model

PROMPT = "The state containing Dallas has its capital in"  # v2 text: no leading space; -> " Austin"
N_DOCS = 40  # held-out documents for the concept and example checks (quick)


@pytest.fixture(scope="module")
def graph():
    import circuit_tracer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's full-backward-hook notice inside circuit_tracer
        model = load_model()
        return circuit_tracer.attribute(model.to_tokens(PROMPT)[0], replacement_model(model), verbose=False)


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


def test_layout_bands_are_layers_and_columns_positions(graph, view):
    edges = [0.0]  # bands stack from the bottom; each is centred on its tick
    for centre in view.figure.layout.yaxis.tickvals:
        edges.append(2 * centre - edges[-1])
    assert edges[-1] == view.figure.layout.yaxis.range[1]
    band = {"token": 0, "logit": graph.cfg.n_layers + 1}
    for n in view.nodes.values():
        b = band.get(n.kind, (n.layer or 0) + 1)
        assert edges[b] < n.y < edges[b + 1], n.id  # inside its layer's band
    by_pos = {}
    for n in view.nodes.values():
        by_pos.setdefault(n.pos, []).append(n.x)
    ordered = [by_pos[p] for p in sorted(by_pos)]
    for left, right in itertools.pairwise(ordered):
        assert max(left) < min(right)  # columns never overlap
    # one axis unit is one pixel of the plot area, so the distances below are what a reader sees
    layout = view.figure.layout
    assert layout.width - layout.margin.l - layout.margin.r == layout.xaxis.range[1] - layout.xaxis.range[0]
    assert layout.height - layout.margin.t - layout.margin.b == layout.yaxis.range[1] - layout.yaxis.range[0]


def _boxes(view):
    """Each node's marker and label as (left, bottom, right, top) in pixels, from the layout's
    estimate of a label's width (utils.graph_explorer.CHAR_PX per character)."""
    from utils.graph_explorer import KIND_STYLE, LABEL_FONT, _label_px, _short

    markers, labels = {}, {}
    for n in view.nodes.values():
        r = KIND_STYLE[n.kind][2] / 2 + 1
        markers[n.id] = (n.x - r, n.y - r, n.x + r, n.y + r)
        if _short(n):
            w = _label_px(n)
            labels[n.id] = (n.x - w / 2, n.y + r, n.x + w / 2, n.y + r + LABEL_FONT + 3)
    return markers, labels


def _overlapping(boxes: dict, others: dict | None = None) -> list:
    """Pairs of boxes (left, bottom, right, top) that intersect: within `boxes`, or between `boxes`
    and `others` (a node's own label and marker are not a pair)."""
    def meet(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    if others is None:
        return [(i, j) for i, a in boxes.items() for j, b in boxes.items() if i < j and meet(a, b)]
    return [(i, j) for i, a in boxes.items() for j, b in others.items() if i != j and meet(a, b)]


def _group_across_layers(view) -> list[str]:
    """The most influential latent and the next two of other layers (a supernode over 2-3 bands)."""
    top = sorted((n for n in view.nodes.values() if n.kind == "feature"), key=lambda n: -n.influence)
    return [top[0].id] + [n.id for n in top if n.layer != top[0].layer][:2]


def test_no_two_nodes_or_labels_overlap(graph, view):
    """The 9-token Dallas graph (on world v2: 61 nodes, 44 latents in the last position's column) and
    the same graph with a supernode over several layers: no marker meets another marker or a label, no
    label another label."""
    assert graph.n_pos == 9 and len(view.nodes) >= 40
    grouped = explore_graph(graph, n_docs=N_DOCS, supernodes={"a group over layers": _group_across_layers(view)})
    for v in (view, grouped):
        markers, labels = _boxes(v)
        assert not _overlapping(markers), _overlapping(markers)
        assert not _overlapping(labels), _overlapping(labels)
        assert not _overlapping(labels, markers), _overlapping(labels, markers)


def test_a_supernode_sits_at_its_most_influential_member(graph, view):
    members = [view.nodes[m] for m in _group_across_layers(view)]
    grouped = explore_graph(graph, n_docs=N_DOCS, supernodes={"group": [m.id for m in reversed(members)]})
    node, top = grouped.nodes["group"], members[0]
    assert (node.layer, node.pos) == (top.layer, top.pos)
    layers = sorted({m.layer for m in members})
    assert f"drawn at its most influential member, {top.label}" in node.hover
    assert f"its members span layers {layers[0]}–{layers[-1]}" in node.hover
    bar = next(t for t in grouped.figure.data if t.name == "span of group")
    bands = grouped.figure.layout.yaxis.tickvals
    assert list(bar.y) == [bands[layers[0] + 1], bands[layers[-1] + 1]] and set(bar.x) == {node.x}


def test_no_edge_hover_point_sits_on_a_node(view):
    from utils.graph_explorer import EDGE_HOVER_CLEARANCE

    points = next(t for t in view.figure.data if t.name == "edges")
    assert len(points.x) > 0.5 * len(view.edges)  # most edges keep their hover text
    for x, y in zip(points.x, points.y):
        assert min((x - n.x) ** 2 + (y - n.y) ** 2 for n in view.nodes.values()) >= EDGE_HOVER_CLEARANCE ** 2


def test_in_chromium_nodes_and_labels_do_not_overlap_and_each_hover_names_its_node(graph, view, tmp_path):
    """The saved page, drawn by plotly.js in headless Chromium (with a supernode): the rendered
    bounding boxes of node markers and labels never intersect, and hovering each node's centre
    shows that node's own hover text (not an edge's, not a neighbour's). A screenshot is saved."""
    grouped = explore_graph(graph, n_docs=N_DOCS, supernodes={"group": _group_across_layers(view)})
    path = grouped.save(tmp_path / "graph.html")
    names = [t.name for t in grouped.figure.data]
    node_traces = [i for i, name in enumerate(names) if name in ("tokens", "features", "errors", "logits", "supernodes")]
    with chromium(tmp_path, width=1600, height=1000) as (context, _):
        page = context.new_page()
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_selector("#attribution-graph .main-svg", timeout=20_000)
        drawn = []  # (node id, marker box, label box or None)
        for i in node_traces:
            trace = page.locator(".scatterlayer .trace").nth(i)
            points, texts = trace.locator("path.point"), trace.locator("g.textpoint text")
            for k, nid in enumerate(grouped.figure.data[i].customdata):
                label = texts.nth(k).bounding_box() if grouped.figure.data[i].text[k] else None
                drawn.append((nid, points.nth(k).bounding_box(), label))
        hovers = {}
        for nid, box, _ in drawn:
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector(".hoverlayer .hovertext", timeout=5_000)
            hovers[nid] = page.evaluate("document.querySelector('.hoverlayer').textContent")
            page.mouse.move(2, 2)
        page.screenshot(path=str(tmp_path / "graph.png"), full_page=True)

    def corners(b):
        return (b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"])

    markers = {nid: corners(b) for nid, b, _ in drawn}
    labels = {nid: corners(b) for nid, _, b in drawn if b is not None and b["width"] > 0}
    assert len(markers) == len(grouped.nodes) and len(labels) == len(grouped.nodes) - graph.n_pos
    assert not _overlapping(markers), _overlapping(markers)
    assert not _overlapping(labels), _overlapping(labels)
    assert not _overlapping(labels, markers), _overlapping(labels, markers)
    wrong = {nid: text[:80] for nid, text in hovers.items() if f"id {nid})" not in text}
    assert not wrong, wrong


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
