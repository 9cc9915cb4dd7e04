"""An offline, interactive view of a pruned attribution graph (a `circuit_tracer.graph.Graph`).

    from utils.graph_explorer import explore_graph
    view = explore_graph(graph, node_threshold=0.8, edge_threshold=0.98,
                         supernodes={"Texas": ["2_17_7", "3_40_7"]})
    view                                        # shows inline in Jupyter (print(view): a summary)
    view.save("graph.html")                     # a standalone page: hover, click, details panel
    view.export_circuit_tracer_json("graphs", "dallas")   # the JSON circuit_tracer's viewer reads

The graph is pruned with circuit_tracer's own `prune_graph` and its nodes are made by
circuit_tracer's own `create_nodes`, so node ids are those of circuit_tracer's graph files:
feature `"{layer}_{feature}_{pos}"`, error `"0_{layer}_{pos}"`, token `"E_{token_id}_{pos}"`,
logit `"{n_layers + 1}_{token_id}_{pos}"` (an error node whose id would repeat a feature's is
called `"error_{layer}_{pos}"`). `view.nodes` lists them.

Nodes sit in a grid: one column per token position, one band per layer (token embeddings at the
bottom, logits on top), at most four nodes to a line of a cell, each latent labelled with its
number (its band and column give its layer and position), laid out in pixels so that no two
nodes or labels overlap. A supernode is drawn where its most influential member is, with a grey
bar over the bands its members span; its hover lists the members. An edge's width grows with
|weight|; blue edges excite, red ones inhibit.
Hovering over a node shows its activation and influence on the logits and, for a transcoder
latent of the course world, the planted concept it matches best and its top activating contexts
on held-out text (computed for the shown latents only, and cached). Picking a node in the
"highlight" menu draws its strongest paths to the logits (a path's strength: the product of each
edge's share of its target's input, times the logit's probability); on a saved page, clicking
the node does the same and fills a details panel. (In a notebook a click cannot: the figure is
drawn by plotly's renderer, which runs no code of ours, so the menu is pure figure data.)
The text summary (`print(view)`) lists the most influential nodes with their ids.

Where it renders: Jupyter gets plotly's own mimetype (`application/vnd.plotly.v1+json`), drawn by
the JupyterLab extension that ships inside the `plotly` package, so no plotly.js is stored in the
notebook and it renders offline, in trusted and untrusted notebooks alike (the extension's
renderer is marked safe). Front ends without that extension get a static HTML table of the same
nodes (it survives HTML sanitisation) or a plain-text summary. `save` writes plotly.js, taken
from the `plotly` package, inline into the page: nothing is fetched from the internet.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

KIND_STYLE = {  # marker symbol, colour, size
    "token": ("square", "#7f7f7f", 14),
    "feature": ("circle", "#4c78a8", 12),
    "error": ("diamond", "#bab0ac", 11),
    "logit": ("hexagon", "#54a24b", 16),
    "supernode": ("octagon", "#b279a2", 20),
}
POSITIVE, NEGATIVE, HIGHLIGHT = "31,119,180", "214,39,40", "#ff9f1c"
N_WIDTHS = 4  # edges are drawn in this many width classes per sign
N_PATHS = 3  # strongest paths drawn from a clicked node
N_EXAMPLES = 3  # top activating contexts in a node's hover text
N_DOCS = 120  # held-out documents for concept scores and examples (a few seconds, once per session)
WINDOW = (8, 2)  # tokens shown before and after the max-activating token of an example


@dataclass
class Node:
    id: str  # circuit_tracer's node id (supernodes: their name)
    kind: str  # token, feature, error, logit or supernode
    layer: int | None  # transcoder layer of features and errors, else None
    pos: int  # token position (a supernode: its most influential member's)
    label: str  # short name shown in tables
    activation: float | None = None  # a feature's activation; a logit's probability
    influence: float = 0.0  # influence on the logits (circuit_tracer's node influence); a supernode:
    #                         the sum of its members' (a path through two members counts twice)
    feature: int | None = None  # transcoder latent of a feature node
    latent: dict | None = None  # course-world feature: best concept and top examples (see latent_info)
    hover: str = ""  # plotly hover text
    members: list[str] = field(default_factory=list)  # node ids grouped into a supernode
    member_rows: list[int] = field(default_factory=list)  # bands of a supernode's members (see _row)
    band: int | None = None  # a supernode's band (that of its most influential member)
    x: float = 0.0  # pixels from the plot area's left edge
    y: float = 0.0  # pixels from its bottom edge


@dataclass
class GraphView:
    """An explored attribution graph: displays itself in Jupyter; `save` writes a standalone page."""

    graph: object = field(repr=False)
    title: str
    nodes: dict[str, Node] = field(repr=False)
    edges: list[tuple[str, str, float]] = field(repr=False)  # (source id, target id, weight)
    paths: dict[str, list[list[str]]] = field(repr=False)  # node id -> its strongest paths to a logit
    figure: object = field(repr=False)  # the plotly Figure
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    supernodes: dict[str, list[str]] = field(default_factory=dict, repr=False)

    # -- text and HTML summaries (what shows where scripts and plotly cannot) ------------------

    def summary(self) -> str:
        kinds = {k: sum(n.kind == k for n in self.nodes.values()) for k in KIND_STYLE}
        counts = ", ".join(f"{v} {k}{'s' if v != 1 else ''}" for k, v in kinds.items() if v)
        lines = [self.title,
                 f"{len(self.nodes)} nodes ({counts}) and {len(self.edges)} edges "
                 f"(node_threshold={self.node_threshold}, edge_threshold={self.edge_threshold}).",
                 "Most influential nodes (label, id, influence on the logits):"]
        ranked = sorted((n for n in self.nodes.values() if n.kind in ("feature", "error", "supernode")),
                        key=lambda n: -n.influence)
        for n in ranked[:8]:
            lines.append(f"  {n.label:<16} {n.id:<12} influence {n.influence:.3f}"
                         + (f"  {_concept_text(n)}" if n.latent else ""))
        top = next((n for n in ranked if n.kind != "error"), None)
        if top is not None and self.paths.get(top.id):
            lines.append(f"Strongest path from {top.label} to a logit: "
                         + " → ".join(self.nodes[i].label for i in self.paths[top.id][0]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def html_table(self) -> str:
        """A static HTML grid of the nodes (rows: layers, columns: positions) with plain styles only."""
        n_layers = self.graph.cfg.n_layers
        rows = [("logits", lambda n: n.kind == "logit")]
        rows += [(f"layer {L}", lambda n, L=L: n.layer == L and n.kind in ("feature", "error")) for L in
                 reversed(range(n_layers))]
        rows.insert(1, ("supernodes", lambda n: n.kind == "supernode"))
        rows.append(("tokens", lambda n: n.kind == "token"))
        n_pos = self.graph.n_pos
        cell = "padding:2px 4px;border:1px solid #ddd;vertical-align:top"
        head = "".join(f'<th style="{cell}">{i}<br><code>{html.escape(t)}</code></th>'
                       for i, t in enumerate(_token_strings(self.graph)))
        body = []
        for name, keep in rows:
            chosen = [n for n in self.nodes.values() if keep(n)]
            if not chosen and name == "supernodes":
                continue
            cells = []
            for p in range(n_pos):
                chips = "".join(
                    f'<div class="node" title="{html.escape(_plain(n.hover))}" style="margin:1px 0;padding:0 3px;'
                    f'border-radius:3px;background:{KIND_STYLE[n.kind][1]};color:#fff;white-space:nowrap">'
                    f'{_pe(n.label)}</div>'
                    for n in sorted(chosen, key=lambda n: -n.influence) if n.pos == p)
                cells.append(f'<td style="{cell}">{chips}</td>')
            body.append(f'<tr><th style="{cell};text-align:left">{name}</th>{"".join(cells)}</tr>')
        return (f'<div class="graph-explorer-table" style="font-family:system-ui,sans-serif;font-size:12px">'
                f'<div style="font-weight:600;margin:4px 0">{html.escape(self.title)}</div>'
                f'<div style="color:#555">{len(self.nodes)} nodes, {len(self.edges)} edges; hover a node for '
                f'details (a static table: the interactive graph needs JupyterLab or <code>view.save(...)</code>).</div>'
                f'<div style="overflow-x:auto"><table style="border-collapse:collapse;margin-top:4px">'
                f'<tr><th style="{cell}"></th>{head}</tr>{"".join(body)}</table></div></div>')

    # -- Jupyter ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, include=None, exclude=None):
        figure = self.figure.to_plotly_json()  # its own width: the layout is in pixels (see _layout)
        bundle = {
            "application/vnd.plotly.v1+json": figure | {"config": _CONFIG},
            "text/html": self.html_table(),
            "text/plain": self.summary(),
        }
        if "google.colab" in sys.modules:  # Colab draws no plotly mimetype: give it the whole page
            bundle["text/html"] = self.to_html()
        import plotly.utils

        return json.loads(json.dumps(bundle, cls=plotly.utils.PlotlyJSONEncoder))  # numpy arrays to lists

    # -- standalone page ----------------------------------------------------------------------

    def to_html(self) -> str:
        """A standalone HTML page, plotly.js inline (from the plotly package: no network)."""
        details = {nid: n.hover for nid, n in self.nodes.items()}  # plotly's hover markup is plain HTML too
        script = (_CLICK_JS.replace("__OVERLAY__", json.dumps(self._overlay_index()))
                  .replace("__DETAILS__", json.dumps(details)))
        div = self.figure.to_html(full_html=False, include_plotlyjs=True, config=_CONFIG, post_script=script,
                                  div_id="attribution-graph")
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
                f'</head><body style="margin:12px;font-family:system-ui,sans-serif">{div}'
                f'<div id="details" style="border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:8px 0;'
                f'font-size:14px">Click a node to see its details and highlight its strongest paths to the logits.'
                f'</div><pre id="summary" style="font-size:12px;color:#444">{html.escape(self.summary())}</pre>'
                f'</body></html>')

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def _overlay_index(self) -> dict[str, int]:
        return {trace.meta["paths_from"]: i for i, trace in enumerate(self.figure.data)
                if isinstance(trace.meta, dict) and "paths_from" in trace.meta}

    # -- circuit_tracer's graph files ---------------------------------------------------------

    def export_circuit_tracer_json(self, folder, slug: str) -> Path:
        """Write `{folder}/{slug}.json` (and graph-metadata.json) with circuit_tracer's
        `create_graph_files`, at this view's thresholds, adding the supernodes and each course
        latent's best planted concept (its "clerp") to the file."""
        from circuit_tracer.utils.create_graph_files import create_graph_files

        folder = Path(folder)
        with _tokenizer_name_for(self.graph):
            create_graph_files(self.graph, slug, str(folder), scan=self.graph.scan or "unknown",
                               node_threshold=self.node_threshold, edge_threshold=self.edge_threshold)
        path = folder / f"{slug}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        for node in data["nodes"]:
            ours = self.nodes.get(node["node_id"]) or next(
                (self.nodes[s] for s, members in self.supernodes.items() if node["node_id"] in members), None)
            if ours is not None and ours.kind == "feature" and ours.latent:
                node["clerp"] = _concept_text(ours)
        data["qParams"]["supernodes"] = [[name, *members] for name, members in self.supernodes.items()]
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path


class _tokenizer_name_for:
    """Work around circuit_tracer 0.5's `create_graph_files`, which always reloads the tokenizer by
    `graph.cfg.tokenizer_name` (None for a model built from a config, like the course model): point
    it at the course tokenizer's local folder while the files are written."""

    def __init__(self, graph):
        self.cfg = graph.cfg
        self.graph_scan = graph.scan
        self.old = getattr(self.cfg, "tokenizer_name", None)

    def __enter__(self):
        if not self.old:
            from utils.world import world_named
            from utils.world import TOKENIZER_DIR

            world = world_named(self.graph_scan)
            self.cfg.tokenizer_name = str(world.TOKENIZER_DIR if world else TOKENIZER_DIR)

    def __exit__(self, *exc):
        self.cfg.tokenizer_name = self.old


# Not "responsive": in JupyterLab a responsive figure collapses to its title after a menu restyle.
_CONFIG = {"displaylogo": False, "scrollZoom": False}

# Runs after plotly has drawn the figure in a saved page (plotly substitutes {plot_id}).
_CLICK_JS = """
var gd = document.getElementById('{plot_id}');
var overlay = __OVERLAY__, details = __DETAILS__, shown = null;
var overlayIdx = Object.values(overlay);
gd.on('plotly_click', function (ev) {
  var p = ev.points[0], id = p && p.customdata;
  if (Array.isArray(id)) { id = id[0]; }
  if (typeof id !== 'string' || !(id in details)) { return; }
  shown = (shown === id) ? null : id;
  var vis = overlayIdx.map(function (i) { return shown !== null && overlay[shown] === i; });
  Plotly.restyle(gd, {visible: vis}, overlayIdx);
  document.getElementById('details').innerHTML = shown === null ?
    'Click a node to see its details and highlight its strongest paths to the logits.' : details[shown];
  gd.setAttribute('data-highlighted', shown === null ? '' : shown);
});
"""


# -- course-world latent information (only for the latents shown, cached) ---------------------


@lru_cache(maxsize=1)
def _course_world(world_name: str, n_docs: int):
    """Course model, transcoders, labelled held-out corpus and each transcoder's input on it."""
    from utils.world import world_named

    world = world_named(world_name)
    model = world.load_model()
    transcoders = world.load_transcoders(model.cfg.n_layers)
    data = world.labelled_corpus(n_docs)
    hooks = {layer: tc.cfg.metadata.hook_name for layer, tc in transcoders.items()}
    with torch.no_grad():
        _, cache = model.run_with_cache(data.tokens, names_filter=sorted(hooks.values()),
                                        stop_at_layer=max(hooks) + 1)
    inputs = {layer: cache[hook] for layer, hook in hooks.items()}
    return model, transcoders, data, inputs


_LATENT_INFO: dict[tuple, dict] = {}  # (world, n_docs, layer, latent) -> concept and examples


def latent_info(layer: int, latents: list[int], n_docs: int = N_DOCS, world: str = "course-world-v2") -> dict[int, dict]:
    """{latent: {"concept", "precision", "recall", "f1", "examples": [(activation, html)]}} for
    transcoder latents at `layer` of the course world named `world` (by default "course-world-v2",
    the world every chapter runs on), on `n_docs` held-out documents (cached per latent)."""
    from utils.world.concepts import concept_scores

    todo = sorted({k for k in latents if (world, n_docs, layer, k) not in _LATENT_INFO})
    if todo:
        model, transcoders, data, inputs = _course_world(world, n_docs)
        with torch.no_grad():
            acts = torch.cat([transcoders[layer].encode(inputs[layer][i:i + 40])[..., todo]
                              for i in range(0, len(data.tokens), 40)])
        scores = concept_scores(acts, data)
        acts = acts * data.mask[..., None]
        for j, k in enumerate(todo):
            c = int(scores.f1[:, j].argmax())
            a = acts[..., j]
            per_doc, where = a.max(1)
            examples = [(float(per_doc[d]), _example(model, data, int(d), int(where[d])))
                        for d in per_doc.argsort(descending=True, stable=True)[:N_EXAMPLES].tolist() if per_doc[d] > 0]
            _LATENT_INFO[world, n_docs, layer, k] = dict(
                concept=scores.concepts[c], precision=float(scores.precision[c, j]),
                recall=float(scores.recall[c, j]), f1=float(scores.f1[c, j]),
                density=float(scores.density[j]), examples=examples, n_docs=n_docs)
    return {k: _LATENT_INFO[world, n_docs, layer, k] for k in latents}


def _example(model, data, doc: int, p: int) -> str:
    """Tokens around position p of document doc, the max-activating one bracketed and bold."""
    real = data.mask[doc].nonzero().flatten()
    lo, hi = max(p - WINDOW[0], int(real[0])), min(p + WINDOW[1], int(real[-1]))
    toks = model.tokenizer.convert_ids_to_tokens(data.tokens[doc, lo:hi + 1].tolist())
    return "".join(f"<b>[{_pe(t)}]</b>" if lo + i == p else _pe(t)
                   for i, t in enumerate(toks))


def _pe(text: str) -> str:
    """Escape text for plotly's markup, which decodes &lt; &gt; &amp; but shows &quot; literally."""
    return html.escape(text, quote=False)


def _concept_text(n: Node) -> str:
    i = n.latent
    return f"best concept {i['concept']} (P {i['precision']:.2f}, R {i['recall']:.2f}, F1 {i['f1']:.2f})"


def _plain(text: str) -> str:
    """Plotly hover markup to plain text (for title attributes)."""
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", text.replace("<br>", "\n")))


# -- building the view --------------------------------------------------------------------------


def _token_strings(graph) -> list[str]:
    tok = _tokenizer(graph)
    ids = graph.input_tokens.tolist()
    return tok.convert_ids_to_tokens(ids) if tok is not None else [str(i) for i in ids]


def _tokenizer(graph):
    if getattr(graph, "_explorer_tokenizer", None) is not None:
        return graph._explorer_tokenizer
    from utils.world import world_named

    world = world_named(graph.scan)
    if world is not None:
        return _course_tokenizer(world.load_tokenizer)
    name = getattr(graph.cfg, "tokenizer_name", None)
    if name:
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(name)
        except Exception:  # offline and not cached: fall back to token ids
            return None
    return None


@lru_cache(maxsize=2)
def _course_tokenizer(load):
    return load()


def _strongest_paths(nodes, edges, k: int = N_PATHS) -> dict[str, list[list[str]]]:
    """For every node, its k strongest paths to a logit. A path's strength is the product, along
    it, of each edge's share of its target's total |input| (circuit_tracer's normalisation), times
    the logit's probability."""
    incoming: dict[str, float] = {}
    for s, t, w in edges:
        incoming[t] = incoming.get(t, 0.0) + abs(w)
    out: dict[str, list[tuple[str, float]]] = {}
    for s, t, w in edges:
        out.setdefault(s, []).append((t, abs(w) / max(incoming[t], 1e-12)))
    best: dict[str, list[tuple[float, list[str]]]] = {}

    def visit(n: str, seen: frozenset) -> list[tuple[float, list[str]]]:
        if n in best:
            return best[n]
        if nodes[n].kind == "logit":
            result = [(nodes[n].activation or 1.0, [n])]
        else:
            cand = [(share * s, [n, *p]) for m, share in out.get(n, []) if m not in seen
                    for s, p in visit(m, seen | {n})]
            result = sorted(cand, key=lambda c: -c[0])[:k]
        best[n] = result
        return result

    for n in nodes:
        visit(n, frozenset())
    return {n: [p for _, p in best[n]] for n in nodes}


def explore_graph(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98,
                  supernodes: dict[str, list[str]] | None = None, title: str | None = None,
                  latent_details: bool | None = None, n_docs: int = N_DOCS) -> GraphView:
    """An interactive view of `graph` pruned at the given thresholds (see the module docstring).

    supernodes: {name: [node ids]} draws each group as one node whose edges are the sums of its
        members' edges (ids as in `view.nodes`; a view without supernodes lists them).
    latent_details: concept matches and top examples of each feature on the course world's
        held-out text; by default on for graphs of a course world's transcoders (scan
        "course-world-v2", or another name `utils.world.world_named` knows).
    """
    from circuit_tracer.graph import Graph, compute_node_influence, prune_graph
    from circuit_tracer.utils.create_graph_files import create_nodes

    if not isinstance(graph, Graph):
        raise TypeError(f"explore_graph needs a circuit_tracer Graph (from circuit_tracer.attribute), "
                        f"not {type(graph).__name__}.")
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}.")
    graph.to("cpu")
    node_mask, edge_mask, _ = prune_graph(graph, node_threshold, edge_threshold)
    ct_nodes = create_nodes(graph, node_mask, None, torch.zeros(len(node_mask)))  # (tokenizer is unused)
    ids = _unique_ids(ct_nodes)
    # Edges by matrix index, as circuit_tracer's create_used_nodes_and_edges keeps them (both ends
    # kept), but without going through node ids, which can collide (see _unique_ids).
    edges = [(ids[s], ids[t], float(graph.adjacency_matrix[t, s])) for t, s in edge_mask.nonzero().tolist()
             if s in ct_nodes and t in ct_nodes]
    connected = {i for s, t, _ in edges for i in (s, t)}
    logit_weights = torch.zeros(len(graph.adjacency_matrix))
    logit_weights[-len(graph.logit_targets):] = graph.logit_probabilities
    influence = compute_node_influence(graph.adjacency_matrix, logit_weights)
    toks = _token_strings(graph)

    nodes: dict[str, Node] = {}
    for i, ct in ct_nodes.items():
        kind = {"embedding": "token", "logit": "logit", "mlp reconstruction error": "error"}.get(ct.feature_type,
                                                                                               "feature")
        if ids[i] not in connected and kind not in ("token", "logit"):
            continue  # left without edges by the edge threshold (circuit_tracer drops these too)
        pos = ct.ctx_idx
        layer = int(ct.layer) if kind in ("feature", "error") else None
        feature = int(graph.active_features[graph.selected_features[i], 2]) if kind == "feature" else None
        label = {"token": f"{toks[pos]!r}@{pos}", "feature": f"L{layer}#{feature}@{pos}",
                 "error": f"error L{layer}@{pos}"}.get(kind)
        if kind == "logit":
            target = graph.logit_targets[i - (len(graph.adjacency_matrix) - len(graph.logit_targets))]
            label = f"logit {target.token_str!r}"
        nodes[ids[i]] = Node(ids[i], kind, layer, pos, label,
                             activation=ct.token_prob if kind == "logit" else ct.activation,
                             influence=float(influence[i]), feature=feature)

    if latent_details is None:
        from utils.world import world_named

        latent_details = world_named(graph.scan) is not None
    if latent_details:
        for layer in sorted({n.layer for n in nodes.values() if n.kind == "feature"}):
            feats = [n for n in nodes.values() if n.kind == "feature" and n.layer == layer]
            info = latent_info(layer, [n.feature for n in feats], n_docs, graph.scan)
            for n in feats:
                n.latent = info[n.feature]
    for n in nodes.values():
        n.hover = _hover(n, toks)

    if supernodes is not None and not isinstance(supernodes, dict):
        raise TypeError(f"supernodes must be a dict {{name: [node ids]}}, not {type(supernodes).__name__}.")
    supernodes = {str(k): list(v) for k, v in (supernodes or {}).items()}
    if supernodes:
        nodes, edges = _group(nodes, edges, supernodes, toks, graph.cfg.n_layers)
    paths = _strongest_paths(nodes, edges)
    layout = _layout(nodes, graph.n_pos, graph.cfg.n_layers)
    if title is None:
        top = graph.logit_targets[0]
        more = len(graph.logit_targets) - 1
        title = (f"Attribution graph: {graph.input_string!r} → {top.token_str!r} (p={float(graph.logit_probabilities[0]):.2f})"
                 + (f" and {more} other logit{'s' if more > 1 else ''}" if more else ""))
    figure = _figure(nodes, edges, paths, toks, layout, graph.cfg.n_layers, title)
    return GraphView(graph, title, nodes, edges, paths, figure, node_threshold, edge_threshold, supernodes)


def _unique_ids(ct_nodes: dict) -> dict[int, str]:
    """circuit_tracer's node id of each kept node, except where two collide: an error node's id
    "0_{layer}_{pos}" equals that of layer-0 feature number `layer` at the same position (circuit_tracer
    0.5 bug), and then the error node is called "error_{layer}_{pos}" here."""
    ids = {i: ct.node_id for i, ct in ct_nodes.items()}
    taken = [ct.node_id for ct in ct_nodes.values() if ct.feature_type != "mlp reconstruction error"]
    for i, ct in ct_nodes.items():
        if ct.feature_type == "mlp reconstruction error" and ct.node_id in taken:
            ids[i] = f"error_{ct.layer}_{ct.ctx_idx}"
    return ids


def _hover(n: Node, toks: list[str]) -> str:
    where = f" at {_pe(repr(toks[n.pos]))}" if n.kind in ("feature", "error") else ""
    lines = [f"<b>{_pe(n.label)}</b>  ({n.kind}{where}, id {n.id})"]
    if n.kind == "logit":
        lines.append(f"probability {n.activation:.3f}")
    elif n.activation is not None:
        lines.append(f"activation {n.activation:.4g}")
    if n.kind != "logit":
        lines.append(f"influence on the logits {n.influence:.3f}")
    if n.kind == "supernode":
        lines.append("members: " + ", ".join(_pe(m) for m in n.members))
    if n.latent:
        i = n.latent
        lines.append(f"best planted concept: <b>{_pe(i['concept'])}</b> "
                     f"(precision {i['precision']:.2f}, recall {i['recall']:.2f}, F1 {i['f1']:.2f})")
        lines.append(f"top examples ({i['n_docs']} held-out documents; density {i['density']:.2%}):")
        lines += [f"  {a:.3g}: {ex}" for a, ex in i["examples"]] or ["  (never fires on them)"]
    return "<br>".join(lines)


def _group(nodes, edges, supernodes, toks, n_layers):
    """Merge each supernode's members into one node; edges to and from members are summed."""
    owner: dict[str, str] = {}
    for name, members in supernodes.items():
        if not members:
            raise ValueError(f"supernode {name!r} has no members.")
        if name in nodes:
            raise ValueError(f"supernode name {name!r} is already a node id; pick another name.")
        unknown = [m for m in members if m not in nodes]
        if unknown:
            raise ValueError(f"supernode {name!r}: {unknown} not in the pruned graph (ids are in view.nodes; "
                             f"lower node_threshold to keep more nodes).")
        for m in members:
            if m in owner:
                raise ValueError(f"node {m!r} is in two supernodes, {owner[m]!r} and {name!r}.")
            owner[m] = name
    grouped = {k: v for k, v in nodes.items() if k not in owner}
    for name, members in supernodes.items():
        ms = [nodes[m] for m in members]
        top = max(ms, key=lambda m: m.influence)  # drawn where its most influential member is
        grouped[name] = Node(name, "supernode", top.layer, top.pos, name,
                             influence=sum(m.influence for m in ms), members=list(members))
        grouped[name].member_rows = [_row(m, n_layers) for m in ms]
        grouped[name].band = _row(top, n_layers)
        layers = sorted({m.layer for m in ms if m.layer is not None})
        spans = (f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}–{layers[-1]}") if layers else ""
        grouped[name].hover = (_hover(grouped[name], toks) + f"<br>drawn at its most influential member, {_pe(top.label)}"
                               + (f"; its members span {spans} (the grey bar)" if len(layers) > 1 else "")
                               + "<br>" + "<br>".join(f"  {_pe(m.label)}" + (f": {_pe(m.latent['concept'])}" if m.latent else "")
                                                      for m in ms))
    summed: dict[tuple[str, str], float] = {}
    for s, t, w in edges:
        s, t = owner.get(s, s), owner.get(t, t)
        if s != t:
            summed[s, t] = summed.get((s, t), 0.0) + w
    return grouped, [(s, t, w) for (s, t), w in summed.items()]


def _row(n: Node, n_layers: int) -> int:
    """The band a node is drawn in: 0 tokens, 1 + layer for features and errors, n_layers + 1 logits;
    a supernode sits in the band and column of its most influential member (see _group)."""
    if n.kind == "token":
        return 0
    if n.kind == "logit":
        return n_layers + 1
    if n.kind == "supernode":
        return n.band
    return 1 + n.layer


# The layout is in pixels: the figure's axes span exactly its plot area, so one unit is one pixel and
# the distances below are what a reader sees (and what tests/test_graph_explorer.py measures).
LABEL_FONT = 10  # px; a label's width is estimated as CHAR_PX per character
CHAR_PX = 6.4
SLOT_PX = 40  # least horizontal room per node in a cell
LINE_PX = 38  # vertical room per line of nodes in a cell: marker, label above it, a gap
PER_LINE = 4  # nodes per line of a cell; more go to further lines
COLUMN_PAD, BAND_PAD = 26, 30  # space around each cell
MIN_COLUMN, MIN_BAND = 70, 70
MARGIN = dict(l=70, r=24, t=110, b=60)


def _label_px(n: Node) -> float:
    return CHAR_PX * len(_short(n)) + 6


def _slot_px(n: Node) -> float:
    return max(SLOT_PX, _label_px(n), KIND_STYLE[n.kind][2] + 12)


def _layout(nodes: dict[str, Node], n_pos: int, n_layers: int) -> dict:
    """Place nodes in (band, position) cells, PER_LINE to a line, in pixels; columns and bands are as
    wide and tall as their fullest cell needs. Returns the column centres, band centres and size."""
    cells: dict[tuple[int, int], list[Node]] = {}
    for n in nodes.values():
        cells.setdefault((_row(n, n_layers), n.pos), []).append(n)
    lines: dict[tuple[int, int], list[list[Node]]] = {}
    for key, members in cells.items():
        members.sort(key=lambda n: ({"supernode": 0, "feature": 1}.get(n.kind, 2), -n.influence))
        lines[key] = [members[i:i + PER_LINE] for i in range(0, len(members), PER_LINE)]
    widths = [float(MIN_COLUMN)] * n_pos
    heights = [float(MIN_BAND)] * (n_layers + 2)
    for (band, pos), rows in lines.items():
        widths[pos] = max(widths[pos], max(sum(map(_slot_px, row)) for row in rows) + COLUMN_PAD)
        heights[band] = max(heights[band], LINE_PX * len(rows) + BAND_PAD)
    columns = [sum(widths[:p]) + widths[p] / 2 for p in range(n_pos)]
    bands = [sum(heights[:b]) + heights[b] / 2 for b in range(n_layers + 2)]
    for (band, pos), rows in lines.items():
        for j, row in enumerate(rows):
            x = columns[pos] - sum(map(_slot_px, row)) / 2
            for n in row:
                n.x = x + _slot_px(n) / 2
                n.y = bands[band] + ((len(rows) - 1) / 2 - j) * LINE_PX  # first line on top
                x += _slot_px(n)
    return {"columns": columns, "bands": bands, "width": sum(widths), "height": sum(heights)}


EDGE_HOVER_CLEARANCE = 18  # px: an edge's hover point closer than this to a node is left out (the node wins)


def _edge_hover_points(nodes, edges) -> list[tuple[float, float, str]]:
    """The middle of each edge, carrying its hover text, unless it falls on or near a node, where it
    would take the node's hover (plotly shows the closest point)."""
    points = []
    for s, t, w in edges:
        x, y = (nodes[s].x + nodes[t].x) / 2, (nodes[s].y + nodes[t].y) / 2
        if all((x - n.x) ** 2 + (y - n.y) ** 2 >= EDGE_HOVER_CLEARANCE ** 2 for n in nodes.values()):
            points.append((x, y, f"{_pe(nodes[s].label)} → {_pe(nodes[t].label)}: {w:+.4g}"))
    return points


def _figure(nodes, edges, paths, toks, layout, n_layers, title):
    import plotly.graph_objects as go

    fig = go.Figure()
    for n in nodes.values():  # a supernode's grey bar spans its members' bands
        if n.kind == "supernode" and len(set(n.member_rows)) > 1:
            fig.add_trace(go.Scatter(x=[n.x, n.x], y=[layout["bands"][min(n.member_rows)], layout["bands"][max(n.member_rows)]],
                                     mode="lines", hoverinfo="skip", showlegend=False, name=f"span of {n.label}",
                                     line=dict(width=14, color="rgba(120,120,120,0.3)")))
    top = max((abs(w) for _, _, w in edges), default=1.0) or 1.0
    classes: dict[tuple[bool, int], list[tuple[str, str]]] = {}
    for s, t, w in edges:
        level = min(int(abs(w) / top * N_WIDTHS), N_WIDTHS - 1)
        classes.setdefault((w >= 0, level), []).append((s, t))
    for (positive, level), pairs in sorted(classes.items()):
        xs, ys = [], []
        for s, t in pairs:
            xs += [nodes[s].x, nodes[t].x, None]
            ys += [nodes[s].y, nodes[t].y, None]
        rgb = POSITIVE if positive else NEGATIVE
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(width=0.6 + 1.6 * level, color=f"rgba({rgb},{0.25 + 0.18 * level:.2f})"),
                                 name=f"{'excitatory' if positive else 'inhibitory'} edges, width class {level}"))
    points = _edge_hover_points(nodes, edges)
    fig.add_trace(go.Scatter(  # invisible points in the middle of edges carry their hover text
        x=[x for x, _, _ in points], y=[y for _, y, _ in points],
        mode="markers", marker=dict(size=7, color="rgba(0,0,0,0)"), showlegend=False, name="edges",
        hovertemplate="%{text}<extra></extra>", text=[text for _, _, text in points]))
    for kind, (symbol, colour, size) in KIND_STYLE.items():
        chosen = [n for n in nodes.values() if n.kind == kind]
        if not chosen:
            continue
        fig.add_trace(go.Scatter(
            x=[n.x for n in chosen], y=[n.y for n in chosen], mode="markers+text",
            text=[_short(n) for n in chosen], textposition=_text_positions(chosen, kind),
            textfont=dict(size=LABEL_FONT), customdata=[n.id for n in chosen], hovertext=[n.hover for n in chosen],
            hovertemplate="%{hovertext}<extra></extra>", name=kind + "s",
            marker=dict(symbol=symbol, color=colour, size=size, line=dict(width=1, color="#333"))))
    for nid, n in nodes.items():  # one hidden trace per node: its strongest paths (shown on click / menu)
        xs, ys = [], []
        for path in paths.get(nid, []):
            xs += [nodes[m].x for m in path] + [None]
            ys += [nodes[m].y for m in path] + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", visible=False, showlegend=False,
                                 hoverinfo="skip", meta={"paths_from": nid}, name=f"paths from {n.label}",
                                 line=dict(width=4, color=HIGHLIGHT), marker=dict(size=18, color="rgba(255,159,28,0.35)")))
    overlays = [i for i, tr in enumerate(fig.data) if isinstance(tr.meta, dict) and "paths_from" in tr.meta]
    ranked = sorted(((nodes[fig.data[i].meta["paths_from"]], i) for i in overlays), key=lambda ni: -ni[0].influence)
    ranked = [(n, i) for n, i in ranked if n.kind != "logit"][:60]  # the menu lists the 60 most influential
    buttons = [dict(label="highlight: none", method="restyle", args=[{"visible": [False] * len(overlays)}, overlays])]
    buttons += [dict(label=f"paths from {n.label}" + (f" ({_pe(n.latent['concept'])})" if n.latent else ""),
                     method="restyle",
                     args=[{"visible": [j == i for j in overlays]}, overlays]) for n, i in ranked]
    fig.update_layout(
        title=dict(text=_pe(title), font=dict(size=14), y=0.985, yanchor="top", x=0.01, xanchor="left"), template="plotly_white",
        height=int(layout["height"]) + MARGIN["t"] + MARGIN["b"], width=int(layout["width"]) + MARGIN["l"] + MARGIN["r"],
        autosize=False, hovermode="closest", clickmode="event",
        hoverlabel=dict(align="left", font=dict(size=11, family="monospace")), margin=dict(**MARGIN, autoexpand=False),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
        updatemenus=[dict(buttons=buttons, direction="down", x=0, xanchor="left", y=1.02, yanchor="bottom",
                          showactive=True, font=dict(size=11))],
        xaxis=dict(tickmode="array", tickvals=layout["columns"],
                   ticktext=[f"{t}<br>{i}" for i, t in enumerate(map(_pe, toks))],
                   range=[0, int(layout["width"])], showgrid=False, zeroline=False, title="token position"),
        yaxis=dict(tickmode="array", tickvals=layout["bands"],
                   ticktext=["tokens", *[f"layer {L}" for L in range(n_layers)], "logits"],
                   range=[0, int(layout["height"])], showgrid=True, zeroline=False),
    )
    return fig


def _text_positions(chosen: list[Node], kind: str) -> list[str]:
    """Labels go above their node (the layout leaves a line's room for them); tokens have none."""
    return ["bottom center" if kind == "token" else "top center"] * len(chosen)


def _short(n: Node) -> str:
    """A node's label on the figure (its band and column say its layer and position)."""
    if n.kind == "token":
        return ""  # the axis already names each position's token
    if n.kind == "logit":
        return _pe(n.label.removeprefix("logit "))
    if n.kind == "feature":
        return f"#{n.feature}"
    if n.kind == "supernode":
        return _pe(n.label)
    return "err"
