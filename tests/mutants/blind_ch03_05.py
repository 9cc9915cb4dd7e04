"""Blind mutants of the exercises of chapters 03, 04 and 05.

Written blind on 2026-12-07: from the exercise text (the markdown cells of
chapters/0{3,4,5}_*/source.py) and the reference solutions (solutions/ch0{3,4,5}_*.py) only,
without reading the checks (chapters/*/tests.py, utils/checks.py, the tests of the checks) or the
earlier variant sets (tests/mutants/ch01.py, mutants_ch02.py, mutants_heldout*.py,
check_mutants.py). NOT YET RUN: no variant here has been put through its check cell.

Each wrong variant is the reference solution with one mistake a student could make from the
exercise text; each correct variant is another way of doing what the text asks. A variant
replaces names of the notebook namespace (`overrides`); when the exercise calls another
exercise, the inner one is in `overrides` too, and the outer function calls that same inner one.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

import solutions.ch03_attribution_graphs as ref3
import solutions.ch04_interventions as ref4
import solutions.ch05_understanding_latents as ref5
from utils.attribution import EMBEDDING, ERROR, LATENT, LOGIT, GraphNodes, run_prompt
from utils.interventions import next_token_probs


@dataclass
class Variant:
    exercise: str          # the exercise function/class name, as the check cell passes it
    name: str              # short description of the mistake
    correct: bool          # True: a correct alternative the text allows (must pass); False: wrong (must fail)
    overrides: dict[str, Any]  # names of the notebook namespace replaced by this variant (usually {exercise: fn})
    want: str | None = None    # one word or short phrase the failure message SHOULD contain to name the mistake
    notes: str = ""


def _refs(module, *names: str) -> dict[str, Any]:
    """The reference versions of the inner exercises a variant's outer function calls."""
    return {name: getattr(module, name) for name in names}


# =============================================================================================
# Chapter 03 · attribution graphs
# =============================================================================================


# --- local_replacement_hooks ------------------------------------------------------------------

def lrh_late_binding(model, transcoders: dict, run, latent_acts: Tensor | None = None) -> list:
    # lambdas close over the loop variable `layer`: every hook reads the last layer's values
    latent_acts = run.latents if latent_acts is None else latent_acts
    hooks = [("ln_final.hook_scale", lambda activation, hook: run.final_scale.expand_as(activation))]
    for layer in range(model.cfg.n_layers):
        hooks += [
            (f"blocks.{layer}.attn.hook_pattern", lambda a, hook: run.patterns[layer].expand_as(a)),
            (f"blocks.{layer}.ln1.hook_scale", lambda a, hook: run.ln1_scale[layer].expand_as(a)),
            (f"blocks.{layer}.ln2.hook_scale", lambda a, hook: run.ln2_scale[layer].expand_as(a)),
            (f"blocks.{layer}.hook_mlp_out", lambda a, hook: (
                latent_acts[layer] @ transcoders[layer].W_dec + transcoders[layer].b_dec + run.errors[layer]
            ).expand_as(a)),
        ]
    return hooks


def lrh_no_error(model, transcoders: dict, run, latent_acts: Tensor | None = None) -> list:
    # the MLP hook forgets the error term: the replacement is no longer exact
    latent_acts = run.latents if latent_acts is None else latent_acts

    def frozen(value):
        return lambda activation, hook: value.expand_as(activation)

    def replaced_mlp(layer):
        tc = transcoders[layer]
        return lambda activation, hook: (latent_acts[layer] @ tc.W_dec + tc.b_dec).expand_as(activation)

    hooks = [("ln_final.hook_scale", frozen(run.final_scale))]
    for layer in range(model.cfg.n_layers):
        hooks += [(f"blocks.{layer}.attn.hook_pattern", frozen(run.patterns[layer])),
                  (f"blocks.{layer}.ln1.hook_scale", frozen(run.ln1_scale[layer])),
                  (f"blocks.{layer}.ln2.hook_scale", frozen(run.ln2_scale[layer])),
                  (f"blocks.{layer}.hook_mlp_out", replaced_mlp(layer))]
    return hooks




# --- node_vectors -----------------------------------------------------------------------------

def nv_logit_not_demeaned(model, transcoders: dict, run, nodes: GraphNodes) -> tuple[Tensor, Tensor]:
    # the logits' reading vectors are the raw unembedding columns, not minus their mean
    reading = torch.zeros(len(nodes), model.cfg.d_model)
    writing = torch.zeros(len(nodes), model.cfg.d_model)
    kind, layer, pos, index = nodes.kind, nodes.layer, nodes.pos, nodes.index
    embedding = kind == EMBEDDING
    writing[embedding] = model.W_E[index[embedding]]
    for L, tc in transcoders.items():
        latent = (kind == LATENT) & (layer == L)
        reading[latent] = tc.W_enc[:, index[latent]].T
        writing[latent] = tc.W_dec[index[latent]]
        error = (kind == ERROR) & (layer == L)
        writing[error] = run.errors[L, pos[error]]
    logit = kind == LOGIT
    reading[logit] = model.W_U[:, index[logit]].T
    return reading, writing




# --- compute_salient_logits -------------------------------------------------------------------

def csl_no_clamp(logits: Tensor, W_U: Tensor, max_n_logits: int = 10, desired_logit_prob: float = 0.95):
    # topk(max_n_logits) without clamping k to the vocabulary size: fails on fewer than 10 logits
    top = logits.softmax(dim=-1).topk(max_n_logits)
    n = min(int((top.values.cumsum(0) < desired_logit_prob).sum()) + 1, len(top.values))
    ids = top.indices[:n]
    return ids, top.values[:n], (W_U[:, ids] - W_U.mean(dim=1, keepdim=True)).T




def csl_loop(logits: Tensor, W_U: Tensor, max_n_logits: int = 10, desired_logit_prob: float = 0.95):
    # CORRECT: add tokens one at a time until the cumulative probability reaches the target
    probs = logits.softmax(dim=-1)
    order = probs.argsort(descending=True)[:max_n_logits]
    cumulative = probs[order].cumsum(0)
    n = len(order)
    for i in range(len(order)):
        if cumulative[i] >= desired_logit_prob:
            n = i + 1
            break
    ids = order[:n]
    return ids, probs[ids], (W_U[:, ids] - W_U.mean(dim=1, keepdim=True)).T


# --- build_graph_nodes ------------------------------------------------------------------------

def _node_block(kind: int, layer: int, pos: Tensor, index: Tensor, activation: Tensor) -> tuple:
    return (torch.full((len(pos),), kind), torch.full((len(pos),), layer), pos, index, activation)


def bgn_bos_error_active(model, run, max_n_logits: int = 10, desired_logit_prob: float = 0.95) -> GraphNodes:
    # every error node gets activation 1, the one at BOS too
    n_layers, n_pos = run.latents.shape[:2]
    positions = torch.arange(n_pos)
    parts = [_node_block(EMBEDDING, -1, positions, run.tokens, torch.ones(n_pos))]
    for layer in range(n_layers):
        pos, latent = run.latents[layer].nonzero(as_tuple=True)
        parts.append(_node_block(LATENT, layer, pos, latent, run.latents[layer][pos, latent].float()))
        parts.append(_node_block(ERROR, layer, positions, torch.full((n_pos,), -1), torch.ones(n_pos)))
    ids, probs, _ = ref3.compute_salient_logits(run.logits[-1], model.W_U, max_n_logits, desired_logit_prob)
    parts.append(_node_block(LOGIT, n_layers, torch.full((len(ids),), n_pos - 1), ids, probs.float()))
    return GraphNodes(*(torch.cat(field) for field in zip(*parts)))


def bgn_errors_after_all_latents(model, run, max_n_logits: int = 10, desired_logit_prob: float = 0.95) -> GraphNodes:
    # order: all the latents of every layer first, then all the error nodes (not layer by layer)
    n_layers, n_pos = run.latents.shape[:2]
    positions = torch.arange(n_pos)
    parts = [_node_block(EMBEDDING, -1, positions, run.tokens, torch.ones(n_pos))]
    for layer in range(n_layers):
        pos, latent = run.latents[layer].nonzero(as_tuple=True)
        parts.append(_node_block(LATENT, layer, pos, latent, run.latents[layer][pos, latent].float()))
    for layer in range(n_layers):
        parts.append(_node_block(ERROR, layer, positions, torch.full((n_pos,), -1), (positions > 0).float()))
    ids, probs, _ = ref3.compute_salient_logits(run.logits[-1], model.W_U, max_n_logits, desired_logit_prob)
    parts.append(_node_block(LOGIT, n_layers, torch.full((len(ids),), n_pos - 1), ids, probs.float()))
    return GraphNodes(*(torch.cat(field) for field in zip(*parts)))


def bgn_float64_activation(model, run, max_n_logits: int = 10, desired_logit_prob: float = 0.95) -> GraphNodes:
    # the error activations come from numpy (float64), and torch.cat promotes the whole field to float64
    n_layers, n_pos = run.latents.shape[:2]
    positions = torch.arange(n_pos)
    error_acts = torch.from_numpy((np.arange(n_pos) > 0).astype(float))
    parts = [_node_block(EMBEDDING, -1, positions, run.tokens, torch.ones(n_pos))]
    for layer in range(n_layers):
        pos, latent = run.latents[layer].nonzero(as_tuple=True)
        parts.append(_node_block(LATENT, layer, pos, latent, run.latents[layer][pos, latent]))
        parts.append(_node_block(ERROR, layer, positions, torch.full((n_pos,), -1), error_acts))
    ids, probs, _ = ref3.compute_salient_logits(run.logits[-1], model.W_U, max_n_logits, desired_logit_prob)
    parts.append(_node_block(LOGIT, n_layers, torch.full((len(ids),), n_pos - 1), ids, probs))
    return GraphNodes(*(torch.cat(field) for field in zip(*parts)))


# --- compute_attribution_matrix ---------------------------------------------------------------

def cam_no_activation(model, transcoders: dict, run, nodes: GraphNodes, batch_size: int = 256) -> Tensor:
    # forgets `× activation[s]`: the edges use the bare writing vectors (as if every activation were 1)
    ones = GraphNodes(nodes.kind, nodes.layer, nodes.pos, nodes.index, torch.ones_like(nodes.activation))
    return ref3.compute_attribution_matrix(model, transcoders, run, ones, batch_size)






def cam_no_ln_final(model, transcoders: dict, run, nodes: GraphNodes, batch_size: int = 256) -> Tensor:
    # the logits read the residual stream before `model.ln_final` (forgot to apply it)
    n_layers = model.cfg.n_layers
    reading, writing = ref3.node_vectors(model, transcoders, run, nodes)
    writing = writing * nodes.activation[:, None]
    targets = ((nodes.kind == LATENT) | (nodes.kind == LOGIT)).nonzero()[:, 0]
    adjacency = torch.zeros(len(nodes), len(nodes))
    if len(targets) == 0:
        return adjacency
    batch = min(batch_size, len(targets))
    writers = ["hook_embed"] + [f"blocks.{L}.hook_mlp_out" for L in range(n_layers)]
    leaves, points = {}, {}

    def make_leaf(activation, hook):
        leaves[hook.name] = leaf = activation.detach().requires_grad_(True)
        return leaf

    def keep_point(activation, hook):
        points[hook.layer()] = activation

    hooks = ref3.local_replacement_hooks(model, transcoders, run)
    hooks += [(name, make_leaf) for name in writers]
    hooks += [(f"blocks.{L}.ln2.hook_normalized", keep_point) for L in range(n_layers)]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        points[n_layers] = model(run.tokens.expand(batch, -1), stop_at_layer=n_layers)  # no ln_final
    leaf_list = [leaves[name] for name in writers]
    for start in range(0, len(targets), batch):
        rows = targets[start:start + batch]
        with torch.enable_grad():
            objective = sum((points[int(nodes.layer[t])][b, int(nodes.pos[t])] * reading[t]).sum()
                            for b, t in enumerate(rows.tolist()))
            grads = torch.autograd.grad(objective, leaf_list, retain_graph=True, allow_unused=True)
        for layer, grad in zip(range(-1, n_layers), grads):
            if grad is None:
                continue
            sources = ((nodes.layer == layer) & (nodes.kind != LOGIT)).nonzero()[:, 0]
            edges = torch.einsum("bsd,sd->bs", grad[: len(rows)][:, nodes.pos[sources]], writing[sources])
            adjacency[rows[:, None], sources[None, :]] = edges
    return adjacency


# --- normalize_matrix / compute_influence -----------------------------------------------------

def normalize_abs_in_place(adjacency: Tensor) -> Tensor:
    # `.abs_()` overwrites the caller's adjacency matrix with its absolute values
    absolute = adjacency.abs_()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)


def normalize_columns(adjacency: Tensor) -> Tensor:
    # divides by the column sums (dim=0) instead of the row sums
    absolute = adjacency.abs()
    return absolute / absolute.sum(dim=0, keepdim=True).clamp(min=1e-10)


def normalize_with_F(adjacency: Tensor) -> Tensor:
    # CORRECT: an L1 normalisation of the rows of |A| (F.normalize divides by max(norm, eps))
    return torch.nn.functional.normalize(adjacency.abs(), p=1, dim=1, eps=1e-10)


def influence_transposed(normalized: Tensor, logit_weights: Tensor, max_iter: int = 1000) -> Tensor:
    # Â @ w instead of w @ Â: walks the edges from sources to targets
    term = normalized @ logit_weights
    influence = term.clone()
    for _ in range(max_iter):
        if not term.any():
            return influence
        term = normalized @ term
        influence += term
    raise RuntimeError(f"the influence did not converge in {max_iter} steps")


def influence_no_error(normalized: Tensor, logit_weights: Tensor, max_iter: int = 1000) -> Tensor:
    # stops silently after max_iter steps instead of raising a RuntimeError
    term = logit_weights @ normalized
    influence = term.clone()
    for _ in range(max_iter):
        if not term.any():
            break
        term = term @ normalized
        influence += term
    return influence


# --- prune_graph ------------------------------------------------------------------------------

def prune_edges_by_source(adjacency: Tensor, nodes: GraphNodes, node_threshold: float = 0.8,
                          edge_threshold: float = 0.98):
    # edge score weighted by the influence of the edge's *source* ([None, :]) instead of its target
    weights = nodes.logit_weights
    influence = ref3.compute_influence(ref3.normalize_matrix(adjacency), weights)
    keep = influence >= ref3.find_threshold(influence, node_threshold)
    keep |= (nodes.kind == LOGIT) | (nodes.kind == EMBEDDING)
    pruned = ref3.normalize_matrix(adjacency * keep[:, None] * keep[None, :])
    edge_scores = pruned * (ref3.compute_influence(pruned, weights) + weights)[None, :]
    edge_mask = edge_scores >= ref3.find_threshold(edge_scores.flatten(), edge_threshold)
    needs_output = (nodes.kind == LATENT) | (nodes.kind == ERROR)
    needs_input = nodes.kind == LATENT
    while True:
        before = keep.clone()
        edge_mask &= keep[:, None] & keep[None, :]
        keep &= ~needs_output | edge_mask.any(dim=0)
        keep &= ~needs_input | edge_mask.any(dim=1)
        if torch.equal(before, keep):
            break
    ordered = influence.sort(descending=True)
    cumulative = torch.zeros_like(influence)
    cumulative[ordered.indices] = ordered.values.cumsum(0) / ordered.values.sum()
    return ref3.PruneResult(keep, edge_mask, cumulative)




# --- attribute / compute_graph_scores ---------------------------------------------------------

def attribute_ignores_options(model, transcoders: dict, tokens: Tensor, max_n_logits: int = 10,
                              desired_logit_prob: float = 0.95, batch_size: int = 256):
    # does not pass max_n_logits / desired_logit_prob / batch_size on: the defaults are always used
    run = run_prompt(model, transcoders, tokens)
    nodes = ref3.build_graph_nodes(model, run)
    adjacency = ref3.compute_attribution_matrix(model, transcoders, run, nodes)
    return ref3.AttributionGraph(run.tokens, nodes, adjacency, run)


def scores_completeness_by_influence(adjacency: Tensor, nodes: GraphNodes) -> tuple[float, float]:
    # completeness weighted by the influence alone, forgetting the logits' own weight w
    weights = nodes.logit_weights
    normalized = ref3.normalize_matrix(adjacency)
    influence = ref3.compute_influence(normalized, weights)
    errors = nodes.kind == ERROR
    from_tokens, from_errors = influence[nodes.kind == EMBEDDING].sum(), influence[errors].sum()
    replacement = from_tokens / (from_tokens + from_errors)
    not_from_errors = 1 - normalized[:, errors].sum(dim=1)
    completeness = (not_from_errors * influence).sum() / influence.sum()
    return float(replacement), float(completeness)


# --- edge_by_hand (with map_through_ln / _attn / _mlp) ----------------------------------------

def _edge_by_hand_with(map_attn, map_mlp, map_ln):
    """The reference edge_by_hand, calling the given map_through_* functions (as a notebook would)."""

    def edge_by_hand(model, transcoders: dict, run, nodes: GraphNodes, target: int, source: int) -> float:
        n_layers = model.cfg.n_layers
        reading, writing = ref3.node_vectors(model, transcoders, run, nodes)
        v = torch.zeros(run.n_pos, model.cfg.d_model)
        v[int(nodes.pos[source])] = nodes.activation[source] * writing[source]
        src_layer, tgt_layer = int(nodes.layer[source]), int(nodes.layer[target])
        for layer in range(src_layer + 1, tgt_layer + 1 if tgt_layer < n_layers else n_layers):
            v = map_attn(model, run, v, layer)
            if layer < tgt_layer:
                v = map_mlp(model, run, v, layer)
        pos = int(nodes.pos[target])
        if tgt_layer == n_layers:
            read = map_ln(v[pos], run.final_scale[pos], model.ln_final.w)
        else:
            read = map_ln(v[pos], run.ln2_scale[tgt_layer, pos], torch.ones(()))
        return float(read @ reading[target])

    return edge_by_hand


def attn_no_residual(model, run, v: Tensor, layer: int) -> Tensor:
    # returns only what attention adds, dropping the residual stream `v` that passes by it
    block = model.blocks[layer]
    x = ref3.map_through_ln(v, run.ln1_scale[layer], block.ln1.w)
    values = torch.einsum("pd,hde->hpe", x, block.attn.W_V)
    moved = torch.einsum("hqp,hpe->hqe", run.patterns[layer], values)
    return torch.einsum("hqe,hed->qd", moved, block.attn.W_O)


def attn_loop_over_heads(model, run, v: Tensor, layer: int) -> Tensor:
    # CORRECT: the same sum over heads, one head at a time with plain matrix products
    block = model.blocks[layer]
    x = ref3.map_through_ln(v, run.ln1_scale[layer], block.ln1.w)
    out = v.clone()
    for h in range(block.attn.W_V.shape[0]):
        out = out + run.patterns[layer, h] @ (x @ block.attn.W_V[h]) @ block.attn.W_O[h]
    return out


def ebh_starts_at_source_layer(model, transcoders: dict, run, nodes: GraphNodes, target: int, source: int) -> float:
    # off by one: the loop starts at the source's own layer (an embedding's layer -1 picks blocks[-1])
    n_layers = model.cfg.n_layers
    reading, writing = ref3.node_vectors(model, transcoders, run, nodes)
    v = torch.zeros(run.n_pos, model.cfg.d_model)
    v[int(nodes.pos[source])] = nodes.activation[source] * writing[source]
    src_layer, tgt_layer = int(nodes.layer[source]), int(nodes.layer[target])
    for layer in range(src_layer, tgt_layer + 1 if tgt_layer < n_layers else n_layers):
        v = ref3.map_through_attn(model, run, v, layer)
        if layer < tgt_layer:
            v = ref3.map_through_mlp(model, run, v, layer)
    pos = int(nodes.pos[target])
    if tgt_layer == n_layers:
        read = ref3.map_through_ln(v[pos], run.final_scale[pos], model.ln_final.w)
    else:
        read = ref3.map_through_ln(v[pos], run.ln2_scale[tgt_layer, pos], torch.ones(()))
    return float(read @ reading[target])


_EBH_INNER = ("node_vectors", "map_through_ln", "map_through_attn", "map_through_mlp")

VARIANTS_CH03: list[Variant] = [
    Variant("local_replacement_hooks", "closure over the loop's layer", False,
            {"local_replacement_hooks": lrh_late_binding}, want="layer",
            notes="all hooks late-bind `layer`: patterns, scales and MLP of the last layer everywhere"),
    Variant("local_replacement_hooks", "MLP hook forgets the error term", False,
            {"local_replacement_hooks": lrh_no_error}, want="error"),
    Variant("node_vectors", "logit reading vectors not demeaned", False,
            {"node_vectors": nv_logit_not_demeaned}, want="mean"),
    Variant("compute_salient_logits", "topk k not clamped to the vocabulary", False,
            {"compute_salient_logits": csl_no_clamp}, want="topk",
            notes="fails only on fewer logits than max_n_logits, e.g. the 4-probability hand example"),
    Variant("compute_salient_logits", "loop until the cumulative sum reaches the target", True,
            {"compute_salient_logits": csl_loop}),
    Variant("build_graph_nodes", "error at BOS has activation 1", False,
            {"build_graph_nodes": bgn_bos_error_active, **_refs(ref3, "compute_salient_logits")}, want="BOS"),
    Variant("build_graph_nodes", "all latents before all errors", False,
            {"build_graph_nodes": bgn_errors_after_all_latents, **_refs(ref3, "compute_salient_logits")},
            want="order", notes="not topological: a layer-0 error comes after layer-3 latents"),
    Variant("build_graph_nodes", "activation field float64", False,
            {"build_graph_nodes": bgn_float64_activation, **_refs(ref3, "compute_salient_logits")},
            want="float32"),
    Variant("compute_attribution_matrix", "edges not multiplied by the source activation", False,
            {"compute_attribution_matrix": cam_no_activation,
             **_refs(ref3, "node_vectors", "local_replacement_hooks")}, want="activation"),
    Variant("compute_attribution_matrix", "logits read before ln_final", False,
            {"compute_attribution_matrix": cam_no_ln_final,
             **_refs(ref3, "node_vectors", "local_replacement_hooks")}, want="ln_final",
            notes="latent rows are right (einsum per leaf, as the hint); only the logit rows are off"),
    Variant("normalize_matrix", "abs_() modifies the input in place", False,
            {"normalize_matrix": normalize_abs_in_place}, want="in place",
            notes="the returned matrix is right"),
    Variant("normalize_matrix", "normalises columns (dim=0)", False,
            {"normalize_matrix": normalize_columns}, want="row"),
    Variant("normalize_matrix", "F.normalize(|A|, p=1, dim=1)", True,
            {"normalize_matrix": normalize_with_F}),
    Variant("compute_influence", "Â @ w instead of w @ Â", False,
            {"compute_influence": influence_transposed}, want="transpose"),
    Variant("compute_influence", "no RuntimeError after max_iter", False,
            {"compute_influence": influence_no_error}, want="RuntimeError"),
    Variant("prune_graph", "edge score uses the source's influence", False,
            {"prune_graph": prune_edges_by_source, **_refs(ref3, "compute_influence", "normalize_matrix")},
            want="target"),
    Variant("attribute", "options not passed on", False,
            {"attribute": attribute_ignores_options,
             **_refs(ref3, "build_graph_nodes", "compute_attribution_matrix", "compute_salient_logits",
                     "node_vectors", "local_replacement_hooks")}, want="max_n_logits",
            notes="right with the default options; needs a check with non-default max_n_logits or desired_logit_prob"),
    Variant("compute_graph_scores", "completeness weighted by influence without w", False,
            {"compute_graph_scores": scores_completeness_by_influence,
             **_refs(ref3, "normalize_matrix", "compute_influence")}, want="weight",
            notes="replacement score right"),
    Variant("edge_by_hand", "map_through_attn drops the residual", False,
            {"edge_by_hand": _edge_by_hand_with(attn_no_residual, ref3.map_through_mlp, ref3.map_through_ln),
             "map_through_attn": attn_no_residual, **_refs(ref3, "node_vectors", "map_through_ln", "map_through_mlp")},
            want="residual"),
    Variant("edge_by_hand", "layer loop starts at the source's layer", False,
            {"edge_by_hand": ebh_starts_at_source_layer, **_refs(ref3, *_EBH_INNER)}, want="layer"),
    Variant("edge_by_hand", "map_through_attn as a loop over heads", True,
            {"edge_by_hand": _edge_by_hand_with(attn_loop_over_heads, ref3.map_through_mlp, ref3.map_through_ln),
             "map_through_attn": attn_loop_over_heads, **_refs(ref3, "node_vectors", "map_through_ln", "map_through_mlp")}),
]


# =============================================================================================
# Chapter 04 · interventions
# =============================================================================================

GraphLatent = ref4.GraphLatent


# --- graph_latent_table -----------------------------------------------------------------------

def glt_ignores_selected_features(graph, k: int = 10) -> list:
    # reads (layer, pos, latent) from active_features[i], not active_features[selected_features[i]]
    from circuit_tracer.graph import compute_node_influence

    n_latents = len(graph.selected_features)
    influence = compute_node_influence(graph.adjacency_matrix, ref4.logit_weights(graph))[:n_latents]
    order = influence.argsort(descending=True, stable=True)[:k]
    return [GraphLatent(int(i), *(int(x) for x in graph.active_features[i]), float(graph.activation_values[i]),
                        float(influence[i])) for i in order]


def glt_ascending(graph, k: int = 10) -> list:
    # argsort ascending: the k *least* influential latents, smallest first
    from circuit_tracer.graph import compute_node_influence

    n_latents = len(graph.selected_features)
    influence = compute_node_influence(graph.adjacency_matrix, ref4.logit_weights(graph))[:n_latents]
    features = graph.active_features[graph.selected_features]
    order = influence.argsort(stable=True)[:k]
    return [GraphLatent(int(i), *(int(x) for x in features[i]), float(graph.activation_values[i]), float(influence[i]))
            for i in order]




# --- hand_supernodes / supernodes_from_labels / supernode_graph -------------------------------

def hand_latent_in_two_groups() -> dict[str, list[str]]:
    # L0 #206 @8 put in two groups ("each latent in at most one group")
    return {"Texas": ["L0 #206 @8", "L1 #569 @8"],
            "say a state": ["L0 #495 @8", "L0 #13 @8", "L0 #662 @8"],
            "say a capital": ["L2 #672 @8", "L1 #362 @8", "L0 #206 @8"],
            "other": ["L0 #724 @8", "L0 #636 @8", "L3 #856 @8"]}


def hand_other_grouping() -> dict[str, list[str]]:
    # CORRECT: another reasoned grouping of the same ten labels, one left out
    return {"state": ["L0 #206 @8", "L1 #569 @8", "L0 #495 @8", "L0 #13 @8"],
            "capital": ["L2 #672 @8", "L1 #362 @8", "L0 #662 @8"],
            "unclear": ["L0 #724 @8", "L0 #636 @8"]}


def sfl_substring(latents: list, concept_of, families: tuple[str, ...]) -> dict:
    # `family in concept` instead of startswith: "in_state:Texas" counts as family "state:"
    groups: dict = {}
    for latent in latents:
        concept = concept_of(latent)
        if any(family in concept for family in families):
            groups.setdefault(concept, []).append(latent)
    return groups


def sfl_pops_input(latents: list, concept_of, families: tuple[str, ...]) -> dict:
    # consumes the caller's list with `.pop(0)`: `latents` is empty afterwards
    groups: dict = {}
    while latents:
        latent = latents.pop(0)
        concept = concept_of(latent)
        if concept.startswith(tuple(families)):
            groups.setdefault(concept, []).append(latent)
    return groups


def sg_transposed(graph, supernodes: dict) -> tuple[list[str], Tensor]:
    # fills weights[source, target] instead of [target, source]
    n_logits, n_nodes = len(graph.logit_targets), len(graph.adjacency_matrix)
    groups = [[g.node for g in members] for members in supernodes.values()]
    groups.append(list(range(n_nodes - n_logits, n_nodes)))
    weights = torch.zeros(len(groups), len(groups))
    for t, targets in enumerate(groups):
        for s, sources in enumerate(groups):
            weights[s, t] = graph.adjacency_matrix[targets][:, sources].sum()
    return [*supernodes, "logits"], weights


def sg_membership_matrices(graph, supernodes: dict) -> tuple[list[str], Tensor]:
    # CORRECT: one membership matrix M (groups × nodes); the block sums are M @ A @ M.T
    n_logits, n_nodes = len(graph.logit_targets), len(graph.adjacency_matrix)
    groups = [[g.node for g in members] for members in supernodes.values()]
    groups.append(list(range(n_nodes - n_logits, n_nodes)))
    member = torch.zeros(len(groups), n_nodes)
    for i, nodes in enumerate(groups):
        member[i, nodes] = 1.0
    adjacency = graph.adjacency_matrix.float()
    return [*supernodes, "logits"], member @ adjacency @ member.T


# --- ablation_predictions / scale_interventions -----------------------------------------------

def predictions_up_down() -> dict[str, str]:
    # uses "down" / "up" / "none" instead of "lower" / "higher" / "same"
    return {"Texas": "down", "say a state": "down", "say a capital": "down", "other": "none"}


def predictions_other_guesses() -> dict[str, str]:
    # CORRECT: other reasoned guesses, three supernodes
    return {"Texas": "lower", "say a state": "higher", "other": "same"}


def scale_as_change(members: list, factor: float) -> list[tuple[int, int, int, float]]:
    # gives the change (factor - 1) * activation, not the new activation
    return [(g.layer, g.pos, g.latent, (factor - 1) * g.activation) for g in members]


# --- contrast_latents / swap_interventions / from_position_on ---------------------------------

def contrast_keeps_nonpositive(acts: Tensor, other: Tensor, k: int = 8):
    # keeps all k of topk, even differences that are 0 or negative
    d = acts.shape[-1]

    def largest(diff):
        top = diff.flatten().topk(k)
        return [(int(i) // d, int(i) % d) for i in top.indices]

    return largest(acts - other), largest(other - acts)


def contrast_wrong_unflatten(acts: Tensor, other: Tensor, k: int = 8):
    # unflattens the index with n_layers as the divisor instead of d_transcoder
    n_layers = acts.shape[0]

    def largest(diff):
        top = diff.flatten().topk(k)
        return [(int(i) // n_layers, int(i) % n_layers) for v, i in zip(top.values, top.indices) if v > 0]

    return largest(acts - other), largest(other - acts)


def swap_roles_swapped(own: list, new: list, other: Tensor, pos: int) -> list:
    # zeroes `new` and writes in `own`: the two sides exchanged
    return ([(layer, pos, latent, 0.0) for layer, latent in new]
            + [(layer, pos, latent, float(other[layer, latent])) for layer, latent in own])


def from_position_up_to(interventions: list) -> list:
    # slice(pos) means "up to pos", not "from pos on"
    return [(layer, slice(pos), latent, value) for layer, pos, latent, value in interventions]


# --- flip_rate --------------------------------------------------------------------------------

def flip_rate_prob_rises(rm, prompts: list, answers: list, pos: int, k: int = 8) -> float:
    # counts a pair as flipped when P(other answer) merely rises, not when it becomes the top-1
    acts = [ref4.acts_at(rm, tokens, pos) for tokens in prompts]
    flipped = pairs = 0
    for i, (tokens, answer) in enumerate(zip(prompts, answers)):
        base = next_token_probs(rm, tokens)
        for j, other_answer in enumerate(answers):
            if other_answer == answer:
                continue
            own, new = ref4.contrast_latents(acts[i], acts[j], k)
            probs = next_token_probs(rm, tokens, ref4.swap_interventions(own, new, acts[j], pos))
            flipped += bool(probs[other_answer] > base[other_answer])
            pairs += 1
    return flipped / pairs


def flip_rate_same_answer_pairs(rm, prompts: list, answers: list, pos: int, k: int = 8) -> float:
    # skips only i == j: pairs of prompts with the same answer are counted too
    acts = [ref4.acts_at(rm, tokens, pos) for tokens in prompts]
    flipped = pairs = 0
    for i, tokens in enumerate(prompts):
        for j, other_answer in enumerate(answers):
            if i == j:
                continue
            own, new = ref4.contrast_latents(acts[i], acts[j], k)
            probs = next_token_probs(rm, tokens, ref4.swap_interventions(own, new, acts[j], pos))
            flipped += int(probs.argmax()) == other_answer
            pairs += 1
    return flipped / pairs


def flip_rate_last_position_acts(rm, prompts: list, answers: list, pos: int, k: int = 8) -> float:
    # reads the activations at the last position (-1) instead of at `pos`
    acts = [ref4.acts_at(rm, tokens, -1) for tokens in prompts]
    flipped = pairs = 0
    for i, (tokens, answer) in enumerate(zip(prompts, answers)):
        for j, other_answer in enumerate(answers):
            if other_answer == answer:
                continue
            own, new = ref4.contrast_latents(acts[i], acts[j], k)
            probs = next_token_probs(rm, tokens, ref4.swap_interventions(own, new, acts[j], pos))
            flipped += int(probs.argmax()) == other_answer
            pairs += 1
    return flipped / pairs


_FLIP_INNER = ("contrast_latents", "swap_interventions")

VARIANTS_CH04: list[Variant] = [
    Variant("graph_latent_table", "active_features[i] without selected_features", False,
            {"graph_latent_table": glt_ignores_selected_features}, want="selected_features",
            notes="identical on the Dallas graph, where every active latent is selected"),
    Variant("graph_latent_table", "ascending sort", False,
            {"graph_latent_table": glt_ascending}, want="descending"),
    Variant("hand_supernodes", "a latent in two groups", False,
            {"hand_supernodes": hand_latent_in_two_groups}, want="one group"),
    Variant("hand_supernodes", "another grouping, one latent left out", True,
            {"hand_supernodes": hand_other_grouping}),
    Variant("supernodes_from_labels", "substring test instead of startswith", False,
            {"supernodes_from_labels": sfl_substring}, want="startswith",
            notes="only visible with families such as ('state:',), where 'in_state:' also contains it"),
    Variant("supernodes_from_labels", "pops the given list", False,
            {"supernodes_from_labels": sfl_pops_input}, want="in place"),
    Variant("supernode_graph", "weights[source, target]", False,
            {"supernode_graph": sg_transposed}, want="transpose"),
    Variant("supernode_graph", "membership matrices M @ A @ M.T", True,
            {"supernode_graph": sg_membership_matrices}, notes="float sums in another order: allclose, not equal"),
    Variant("ablation_predictions", "'down'/'up'/'none' instead of lower/higher/same", False,
            {"ablation_predictions": predictions_up_down}, want="lower"),
    Variant("ablation_predictions", "other guesses for three supernodes", True,
            {"ablation_predictions": predictions_other_guesses}),
    Variant("scale_interventions", "value is the change, not the new activation", False,
            {"scale_interventions": scale_as_change}, want="value"),
    Variant("contrast_latents", "non-positive differences kept", False,
            {"contrast_latents": contrast_keeps_nonpositive}, want="positive",
            notes="only differs when fewer than k differences are positive"),
    Variant("contrast_latents", "flat index unflattened with n_layers", False,
            {"contrast_latents": contrast_wrong_unflatten}, want="layer"),
    Variant("swap_interventions", "own and new exchanged", False,
            {"swap_interventions": swap_roles_swapped}, want="own"),
    Variant("from_position_on", "slice(pos) instead of slice(pos, None)", False,
            {"from_position_on": from_position_up_to}, want="slice"),
    Variant("flip_rate", "P(other answer) rises counts as a flip", False,
            {"flip_rate": flip_rate_prob_rises, **_refs(ref4, *_FLIP_INNER)}, want="top-1"),
    Variant("flip_rate", "pairs with the same answer counted", False,
            {"flip_rate": flip_rate_same_answer_pairs, **_refs(ref4, *_FLIP_INNER)}, want="same answer",
            notes="needs prompts with repeated answers (e.g. two landmarks of one city)"),
    Variant("flip_rate", "activations read at the last position, not pos", False,
            {"flip_rate": flip_rate_last_position_acts, **_refs(ref4, *_FLIP_INNER)}, want="position",
            notes="right when pos is the last position"),
]


# =============================================================================================
# Chapter 05 · understanding latents
# =============================================================================================


# --- node_f1 / cooccurrence -------------------------------------------------------------------

def node_f1_nan(fires: Tensor, truth: Tensor) -> Tensor:
    # no clamp: a latent that never fires against a node that never holds gives 0/0 = NaN
    fires, truth = fires.float(), truth.float()
    tp = fires.T @ truth
    return 2 * tp / (fires.sum(0)[:, None] + truth.sum(0)[None, :])


def node_f1_precision_recall(fires: Tensor, truth: Tensor) -> Tensor:
    # CORRECT: precision and recall first, then their harmonic mean, 0 where tp = 0
    fires, truth = fires.float(), truth.float()
    tp = fires.T @ truth
    precision = tp / fires.sum(0)[:, None].clamp_min(1)
    recall = tp / truth.sum(0)[None, :].clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return torch.where(tp > 0, f1, torch.zeros_like(f1))


def cooccurrence_divides_by_b(fires_a: Tensor, fires_b: Tensor) -> Tensor:
    # divides by where b fires: P(a fires | b fires), not P(b | a)
    fires_a, fires_b = fires_a.float(), fires_b.float()
    return (fires_a.T @ fires_b) / fires_b.sum(0)[None, :].clamp_min(1)


# --- cluster_purity ---------------------------------------------------------------------------

def purity_keeps_unlabelled(clusters: np.ndarray, concepts: list[str]) -> float:
    # drops the noise (-1) but keeps the "(none)" labels
    keep = [(c, k) for c, k in zip(np.asarray(clusters).tolist(), concepts) if c != -1]
    if not keep:
        return 0.0
    by_cluster: dict = {}
    for c, k in keep:
        by_cluster.setdefault(c, Counter())[k] += 1
    return sum(counts.most_common(1)[0][1] for counts in by_cluster.values()) / len(keep)




# --- train_probe / decoder_cosines ------------------------------------------------------------

def probe_bias_not_scaled(acts: Tensor, labels: Tensor) -> tuple[Tensor, float]:
    # divides the weights by their norm but not the bias
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(class_weight="balanced", max_iter=2000)
    clf.fit(acts.double().numpy(), labels.numpy())
    w = torch.tensor(clf.coef_[0], dtype=acts.dtype)
    return w / w.norm(), float(clf.intercept_[0])


def probe_centres_in_place(acts: Tensor, labels: Tensor) -> tuple[Tensor, float]:
    # centres the caller's acts in place (`acts -= mean`) before fitting; the bias is corrected back
    from sklearn.linear_model import LogisticRegression

    mean = acts.mean(0)
    acts -= mean
    clf = LogisticRegression(class_weight="balanced", max_iter=2000)
    clf.fit(acts.double().numpy(), labels.numpy())
    w = torch.tensor(clf.coef_[0], dtype=acts.dtype)
    bias = float(clf.intercept_[0]) - float(w @ mean)
    return w / w.norm(), bias / float(w.norm())


def cosines_absolute(direction: Tensor, sae) -> Tensor:
    # takes |cos|: a latent pointing against the probe looks like a main latent
    W_dec = sae.W_dec
    return ((W_dec @ direction) / (W_dec.norm(dim=-1) * direction.norm()).clamp_min(1e-12)).abs()




def cosines_sklearn_numpy(direction: Tensor, sae) -> Tensor:
    # sklearn's cosine_similarity: right values, but a numpy array, not a torch tensor
    from sklearn.metrics.pairwise import cosine_similarity

    return cosine_similarity(sae.W_dec.detach().numpy(), direction[None].detach().numpy())[:, 0]


# --- absorption -------------------------------------------------------------------------------

def absorption_negative_in_total(latent_acts: Tensor, W_dec: Tensor, direction: Tensor, probe_yes: Tensor,
                                 truth: Tensor, main: list[int], min_cos: float = 0.025, min_share: float = 0.4):
    # the total of projections includes the negative ones (no clamp_min(0))
    fires = latent_acts > 0
    is_main = torch.zeros(W_dec.shape[0], dtype=torch.bool)
    is_main[list(main)] = True
    missed = probe_yes & truth & ~fires[:, is_main].any(-1)
    along = W_dec @ direction
    cos = along / (W_dec.norm(dim=-1) * direction.norm()).clamp_min(1e-12)
    proj = latent_acts * along
    total = proj.sum(-1, keepdim=True)
    carrier = fires & ~is_main & (cos >= min_cos) & (proj >= min_share * total)
    return missed, missed & carrier.any(-1)


# --- topk_encode ------------------------------------------------------------------------------

def topk_subtracts_in_place(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int) -> Tensor:
    # `x -= b_dec` shifts the caller's tensor in place
    x -= b_dec
    pre = x @ W_enc + b_enc
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())


def topk_no_relu(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int) -> Tensor:
    # keeps negative values among the top k
    pre = (x - b_dec) @ W_enc + b_enc
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


def topk_relu_first(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int) -> Tensor:
    # CORRECT: ReLU before the top k gives the same activations
    pre = ((x - b_dec) @ W_enc + b_enc).relu()
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


# --- meta_latent_concepts ---------------------------------------------------------------------

def meta_skips_unused(meta_acts: Tensor, concepts: list[str]) -> list[tuple[str, float, int]]:
    # skips unused meta-latents instead of giving them ("(unused)", 0.0, 0): the list is too short
    out = []
    for m in range(meta_acts.shape[1]):
        loading = (meta_acts[:, m] > 0).nonzero().flatten().tolist()
        if not loading:
            continue
        concept, count = Counter(concepts[i] for i in loading).most_common(1)[0]
        out.append((concept, count / len(loading), len(loading)))
    return out


def meta_max_of_counts(meta_acts: Tensor, concepts: list[str]) -> list[tuple[str, float, int]]:
    # CORRECT: max over the Counter's keys (insertion order, so ties go to the label met first)
    out = []
    for m in range(meta_acts.shape[1]):
        loading = (meta_acts[:, m] > 0).nonzero().flatten().tolist()
        if not loading:
            out.append(("(unused)", 0.0, 0))
            continue
        counts = Counter(concepts[i] for i in loading)
        concept = max(counts, key=counts.get)
        out.append((concept, counts[concept] / len(loading), len(loading)))
    return out


# --- logit_lens / enrichment_pvalue -----------------------------------------------------------

def lens_bottom_least_suppressed_first(sae, W_U: Tensor, latents: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
    # bottom k taken from the end of a descending sort: least suppressed first
    logits = sae.W_dec[latents] @ W_U
    return logits.topk(k, dim=-1).indices, logits.argsort(dim=-1, descending=True)[:, -k:]


def enrichment_sf_of_x(top: Tensor, token_class: Tensor, vocab_size: int) -> float:
    # sf(x) is P(X > x): misses the "at least" (should be sf(x - 1))
    from scipy.stats import hypergeom

    top, token_class = set(top.tolist()), set(token_class.tolist())
    overlap = len(top & token_class)
    return float(hypergeom(vocab_size, len(token_class), len(top)).sf(overlap))


# --- autointerp -------------------------------------------------------------------------------

def autointerp_detects_on_explained(latent_acts: Tensor, data, to_str_tokens, client, concept: str,
                                    n_explain: int = 10, n_detect: int = 5, n_random: int = 10, seed: int = 0) -> dict:
    # detects on top[:n_detect], examples the explanation was written from
    from utils.autointerp import concept_truth, detect, detection_scores, explain, mix_for_detection, random_examples, top_examples

    top = top_examples(latent_acts, data, to_str_tokens, n=n_explain + n_detect)
    if len(top) <= n_explain:
        raise ValueError(f"the latent fires in {len(top)} documents; need at least {n_explain + 1}")
    explanation = explain(top[:n_explain], client)
    others = random_examples(latent_acts, data, to_str_tokens, n=n_random, seed=seed, exclude=top)
    sequences, fires = mix_for_detection(top[:n_detect], others, seed=seed)
    predicted = detect(explanation, sequences, client)
    return {"explanation": explanation,
            "vs activations": detection_scores(predicted, fires, len(sequences)),
            "vs concept": detection_scores(predicted, concept_truth(sequences, concept), len(sequences))}


def autointerp_no_exclude(latent_acts: Tensor, data, to_str_tokens, client, concept: str,
                          n_explain: int = 10, n_detect: int = 5, n_random: int = 10, seed: int = 0) -> dict:
    # random examples may come from the top examples' documents (no exclude=top)
    from utils.autointerp import concept_truth, detect, detection_scores, explain, mix_for_detection, random_examples, top_examples

    top = top_examples(latent_acts, data, to_str_tokens, n=n_explain + n_detect)
    if len(top) <= n_explain:
        raise ValueError(f"the latent fires in {len(top)} documents; need at least {n_explain + 1}")
    explanation = explain(top[:n_explain], client)
    others = random_examples(latent_acts, data, to_str_tokens, n=n_random, seed=seed)
    sequences, fires = mix_for_detection(top[n_explain:], others, seed=seed)
    predicted = detect(explanation, sequences, client)
    return {"explanation": explanation,
            "vs activations": detection_scores(predicted, fires, len(sequences)),
            "vs concept": detection_scores(predicted, concept_truth(sequences, concept), len(sequences))}


# --- patch_scope ------------------------------------------------------------------------------

def patch_scope_adds(model, tokens: Tensor, position: int, directions: Tensor, scales: list[float],
                     hook_name: str) -> Tensor:
    # adds scale * direction to the activation instead of replacing it
    scales_t = torch.tensor(scales, dtype=directions.dtype)
    patched = (directions[:, None, :] * scales_t[None, :, None]).flatten(0, 1)
    batch = tokens[None].expand(len(patched), -1)

    def add(activation, hook):
        activation[:, position] += patched
        return activation

    logits = model.run_with_hooks(batch, fwd_hooks=[(hook_name, add)])[:, -1]
    return logits.reshape(len(directions), len(scales), -1)


def patch_scope_scale_major(model, tokens: Tensor, position: int, directions: Tensor, scales: list[float],
                            hook_name: str) -> Tensor:
    # builds the batch scale by scale, then reshapes as (n_directions, n_scales): rows mixed up
    scales_t = torch.tensor(scales, dtype=directions.dtype)
    patched = (scales_t[:, None, None] * directions[None, :, :]).flatten(0, 1)
    batch = tokens[None].expand(len(patched), -1)

    def replace(activation, hook):
        activation[:, position] = patched
        return activation

    logits = model.run_with_hooks(batch, fwd_hooks=[(hook_name, replace)])[:, -1]
    return logits.reshape(len(directions), len(scales), -1)


# --- score_hypothesis / capstone_hypothesis ---------------------------------------------------

def score_shifts_labels_in_place(latent_acts: Tensor, data, concept: str, fires_on: str = "input"):
    # shifts the concept's column of data.labels itself (a view) for "prediction"
    holds = data.labels[..., data.concept_index(concept)]
    if fires_on == "prediction":
        holds[:, :-1] = holds[:, 1:] & data.mask[:, 1:]
        holds[:, -1] = False
    elif fires_on != "input":
        raise ValueError(f"fires_on must be 'input' or 'prediction', not {fires_on!r}")
    fires = (latent_acts > 0) & data.mask
    holds = holds & data.mask
    tp, n_fires, n_holds = int((fires & holds).sum()), int(fires.sum()), int(holds.sum())
    return tp / max(n_fires, 1), tp / max(n_holds, 1), 2 * tp / max(n_fires + n_holds, 1)


def score_fires_unmasked(latent_acts: Tensor, data, concept: str, fires_on: str = "input"):
    # counts firings on BOS and padding: `fires` not and-ed with data.mask
    holds = data.labels[..., data.concept_index(concept)]
    if fires_on == "prediction":
        holds = torch.cat([holds[:, 1:] & data.mask[:, 1:], torch.zeros_like(holds[:, :1])], 1)
    elif fires_on != "input":
        raise ValueError(f"fires_on must be 'input' or 'prediction', not {fires_on!r}")
    fires = latent_acts > 0
    holds = holds & data.mask
    tp, n_fires, n_holds = int((fires & holds).sum()), int(fires.sum()), int(holds.sum())
    return tp / max(n_fires, 1), tp / max(n_holds, 1), 2 * tp / max(n_fires + n_holds, 1)


def capstone_on_input() -> dict:
    # the right concept on the wrong token: the latent predicts the defined word, it does not sit on it
    return {"latent": 268, "concept": "definition_word", "fires_on": "input",
            "description": "fires on the word being defined"}


VARIANTS_CH05: list[Variant] = [
    Variant("node_f1", "0/0 = NaN for a latent that never fires", False,
            {"node_f1": node_f1_nan}, want="NaN"),
    Variant("node_f1", "precision and recall, then harmonic mean", True,
            {"node_f1": node_f1_precision_recall}),
    Variant("cooccurrence", "P(a | b): divided by where b fires", False,
            {"cooccurrence": cooccurrence_divides_by_b}, want="row"),
    Variant("cluster_purity", "'(none)' labels kept", False,
            {"cluster_purity": purity_keeps_unlabelled}, want="(none)"),
    Variant("train_probe", "bias not divided by the norm", False,
            {"train_probe": probe_bias_not_scaled}, want="bias"),
    Variant("train_probe", "acts centred in place", False,
            {"train_probe": probe_centres_in_place}, want="in place",
            notes="the probe itself is right (bias corrected for the mean)"),
    Variant("decoder_cosines", "absolute value of the cosine", False,
            {"decoder_cosines": cosines_absolute}, want="sign"),
    Variant("decoder_cosines", "numpy array from sklearn", False,
            {"decoder_cosines": cosines_sklearn_numpy}, want="Tensor", notes="values right, type wrong"),
    Variant("absorption", "negative projections in the total", False,
            {"absorption": absorption_negative_in_total}, want="negative"),
    Variant("topk_encode", "x -= b_dec in place", False,
            {"topk_encode": topk_subtracts_in_place}, want="in place"),
    Variant("topk_encode", "negative values kept", False,
            {"topk_encode": topk_no_relu}, want="negative"),
    Variant("topk_encode", "ReLU before the top k", True,
            {"topk_encode": topk_relu_first}),
    Variant("meta_latent_concepts", "unused meta-latents left out", False,
            {"meta_latent_concepts": meta_skips_unused}, want="unused"),
    Variant("meta_latent_concepts", "max(counts, key=counts.get)", True,
            {"meta_latent_concepts": meta_max_of_counts}),
    Variant("logit_lens", "bottom tokens least suppressed first", False,
            {"logit_lens": lens_bottom_least_suppressed_first}, want="order"),
    Variant("enrichment_pvalue", "sf(x) instead of sf(x - 1)", False,
            {"enrichment_pvalue": enrichment_sf_of_x}, want="at least"),
    Variant("autointerp", "detects on examples used to explain", False,
            {"autointerp": autointerp_detects_on_explained}, want="explanation"),
    Variant("autointerp", "random examples not excluding the top documents", False,
            {"autointerp": autointerp_no_exclude}, want="exclude"),
    Variant("patch_scope", "adds the direction instead of replacing", False,
            {"patch_scope": patch_scope_adds}, want="replace"),
    Variant("patch_scope", "batch built scale-major, reshaped direction-major", False,
            {"patch_scope": patch_scope_scale_major}, want="order",
            notes="right when there is one direction or one scale"),
    Variant("score_hypothesis", "shifts data.labels in place", False,
            {"score_hypothesis": score_shifts_labels_in_place}, want="in place",
            notes="the first call's numbers are right; the corpus's labels are changed for the next"),
    Variant("score_hypothesis", "firings on BOS/padding counted", False,
            {"score_hypothesis": score_fires_unmasked}, want="mask",
            notes="only differs where the latent is > 0 outside data.mask"),
    Variant("capstone_hypothesis", "right concept, input instead of prediction", False,
            {"capstone_hypothesis": capstone_on_input}, want="next",
            notes="assumes the shipped world's capstone latent 268 (definition_word as a prediction)"),
]
