"""Chapter 03's checks against wrong implementations: each must fail with the message meant for it;
correct alternatives the text allows must pass.

(That the reference solutions pass every check is tested for all chapters in test_chapter_checks.py.)
"""

from __future__ import annotations

import inspect
import textwrap
import types

import pytest
import torch

import solutions.ch03_attribution_graphs as ref
from utils import course
from utils.attribution import EMBEDDING, ERROR, LATENT, LOGIT, GraphNodes, circuit_tracer_order
from check_helpers import fails_with, passes


@pytest.fixture(scope="module")
def checks03():
    return course.load_checks("03_attribution_graphs")


# -------------------------------------------------------------------------------------------------
# local_replacement_hooks


def hooks_variant(*, freeze_pattern=True, freeze_ln1=True, freeze_ln2=True, freeze_final=True, error="frozen",
                  use_given=True, late_binding=False):
    def local_replacement_hooks(model, transcoders, run, latent_acts=None):
        acts = run.latents if (latent_acts is None or not use_given) else latent_acts

        def frozen(value):
            return lambda a, hook: value.expand_as(a)

        hooks = [("ln_final.hook_scale", frozen(run.final_scale))] if freeze_final else []
        for layer in range(model.cfg.n_layers):
            tc = transcoders[layer]
            if freeze_pattern:
                hooks.append((f"blocks.{layer}.attn.hook_pattern", frozen(run.patterns[layer])))
            if freeze_ln1:
                hooks.append((f"blocks.{layer}.ln1.hook_scale", frozen(run.ln1_scale[layer])))
            if freeze_ln2:
                hooks.append((f"blocks.{layer}.ln2.hook_scale", frozen(run.ln2_scale[layer])))

            def mlp(a, hook, tc=tc, layer=layer):
                if late_binding:
                    tc_, layer_ = transcoders[model.cfg.n_layers - 1], model.cfg.n_layers - 1
                else:
                    tc_, layer_ = tc, layer
                decoded = acts[layer_] @ tc_.W_dec + tc_.b_dec
                if error == "frozen":
                    return (decoded + run.errors[layer_]).expand_as(a)
                if error == "missing":
                    return decoded.expand_as(a)
                if error == "live":  # a - reconstruction, not detached: the real MLP comes back
                    return decoded + (a - decoded)
                raise ValueError(error)

            hooks.append((f"blocks.{layer}.hook_mlp_out", mlp))
        return hooks

    return local_replacement_hooks


@pytest.mark.parametrize("variant, message", [
    (hooks_variant(freeze_pattern=False), "Hint: attention is not frozen"),
    (hooks_variant(freeze_ln2=False), "the ln2 scale of layer 1 changed when the latents changed. Hint: the LayerNorm scale is not frozen"),
    (hooks_variant(freeze_ln1=False, freeze_ln2=False, freeze_final=False), "Hint: the LayerNorm scale is not frozen"),
    (hooks_variant(freeze_final=False), "ln_final's scale changed"),
    (hooks_variant(error="missing"), "Hint: the error term is missing"),
    (hooks_variant(error="live"), "Hint: the error term is not detached"),
    (hooks_variant(use_given=False), "Hint: build it from latent_acts[0], not from run.latents"),
    (hooks_variant(late_binding=True), "the logits has wrong values"),
])
def test_wrong_local_replacement_hooks(checks03, variant, message):
    fails_with(checks03.test_local_replacement_hooks, variant, message)


def test_hooks_closing_over_the_loop_variable_are_named(checks03):
    def local_replacement_hooks(model, transcoders, run, latent_acts=None):
        acts = run.latents if latent_acts is None else latent_acts
        hooks = [("ln_final.hook_scale", lambda a, hook: run.final_scale.expand_as(a))]
        for layer in range(model.cfg.n_layers):  # every lambda sees the last value of `layer`
            hooks += [(f"blocks.{layer}.attn.hook_pattern", lambda a, hook: run.patterns[layer].expand_as(a)),
                      (f"blocks.{layer}.ln1.hook_scale", lambda a, hook: run.ln1_scale[layer].expand_as(a)),
                      (f"blocks.{layer}.ln2.hook_scale", lambda a, hook: run.ln2_scale[layer].expand_as(a)),
                      (f"blocks.{layer}.hook_mlp_out", lambda a, hook: (
                          acts[layer] @ transcoders[layer].W_dec + transcoders[layer].b_dec + run.errors[layer]).expand_as(a))]
        return hooks

    fails_with(checks03.test_local_replacement_hooks, local_replacement_hooks, "Hint: every hook uses the last layer's values")


def test_local_replacement_hooks_alternative(checks03, capsys):
    """sae_lens's decode, and frozen values repeated (not expanded) over the batch, are fine."""

    def local_replacement_hooks(model, transcoders, run, latent_acts=None):
        acts = run.latents if latent_acts is None else latent_acts
        hooks = []
        for name, values in (("attn.hook_pattern", run.patterns), ("ln1.hook_scale", run.ln1_scale),
                             ("ln2.hook_scale", run.ln2_scale)):
            for layer in range(model.cfg.n_layers):
                hooks.append((f"blocks.{layer}.{name}",
                              lambda a, hook, v=values[layer]: v.repeat(a.shape[0], *[1] * v.ndim)))
        hooks.append(("ln_final.hook_scale", lambda a, hook: run.final_scale.repeat(a.shape[0], 1, 1)))
        for layer, tc in transcoders.items():
            hooks.append((f"blocks.{layer}.hook_mlp_out",
                          lambda a, hook, tc=tc, layer=layer: (tc.decode(acts[layer]) + run.errors[layer]).repeat(a.shape[0], 1, 1)))
        return hooks

    passes(checks03.test_local_replacement_hooks, local_replacement_hooks, capsys)


# -------------------------------------------------------------------------------------------------
# node_vectors


def vectors_variant(*, swap=False, scaled=False, demean=True, demean_axis=1, with_pos=False):
    def node_vectors(model, transcoders, run, nodes):
        reading, writing = ref.node_vectors(model, transcoders, run, nodes)
        latent = nodes.kind == LATENT
        if swap:
            reading[latent], writing[latent] = writing[latent].clone(), reading[latent].clone()
        if scaled:
            writing[latent] *= nodes.activation[latent][:, None]
        logit = nodes.kind == LOGIT
        ids = nodes.index[logit]
        if not demean:
            reading[logit] = model.W_U[:, ids].T
        elif demean_axis == 0:
            reading[logit] = model.W_U[:, ids].T - model.W_U.mean(0)[ids, None]
        if with_pos:
            emb = nodes.kind == EMBEDDING
            writing[emb] = writing[emb] + model.W_pos[nodes.pos[emb]]
        return reading, writing

    return node_vectors


@pytest.mark.parametrize("variant, message", [
    (vectors_variant(swap=True), "Hint: the reading vector of a latent is its encoder column"),
    (vectors_variant(scaled=True), "Hint: writing vectors are not multiplied by the activation"),
    (vectors_variant(demean=False), "reading vectors of the logits has wrong values"),
    (vectors_variant(demean=False), "Hint: demean the unembedding columns"),
    (vectors_variant(demean_axis=0), "Hint: the mean to subtract is over the vocabulary"),
    (vectors_variant(with_pos=True), "Hint: the positional embedding is a constant"),
])
def test_wrong_node_vectors(checks03, variant, message):
    fails_with(checks03.test_node_vectors, variant, message)


def test_node_vectors_alternative(checks03, capsys):
    """A plain loop over nodes is slower but right."""

    def node_vectors(model, transcoders, run, nodes):
        reading = torch.zeros(len(nodes), model.cfg.d_model)
        writing = torch.zeros(len(nodes), model.cfg.d_model)
        mean_column = model.W_U.mean(1)
        for i in range(len(nodes)):
            kind, layer, pos, index = (int(x[i]) for x in (nodes.kind, nodes.layer, nodes.pos, nodes.index))
            if kind == EMBEDDING:
                writing[i] = model.W_E[index]
            elif kind == LATENT:
                reading[i], writing[i] = transcoders[layer].W_enc[:, index], transcoders[layer].W_dec[index]
            elif kind == ERROR:
                writing[i] = run.errors[layer, pos]
            else:
                reading[i] = model.W_U[:, index] - mean_column
        return reading, writing

    passes(checks03.test_node_vectors, node_vectors, capsys)


# -------------------------------------------------------------------------------------------------
# compute_salient_logits


def salient_variant(*, extra=0, demean=True, logits_out=False):
    def compute_salient_logits(logits, W_U, max_n_logits=10, desired_logit_prob=0.95):
        top = logits.softmax(-1).topk(max_n_logits)
        n = int((top.values.cumsum(0) < desired_logit_prob).sum()) + 1 + extra
        n = max(1, min(n, max_n_logits))
        ids = top.indices[:n]
        vecs = W_U[:, ids] - (W_U.mean(1, keepdim=True) if demean else 0)
        return ids, logits[ids] if logits_out else top.values[:n], vecs.T

    return compute_salient_logits


@pytest.mark.parametrize("variant, message", [
    (salient_variant(extra=-1), "Hint: keep logits until the cumulative probability *reaches*"),
    (salient_variant(extra=1), "Hint: one logit too many"),
    (salient_variant(demean=False), "Hint: demean the unembedding columns"),
    (salient_variant(logits_out=True), "Hint: return the probabilities"),
])
def test_wrong_compute_salient_logits(checks03, variant, message):
    fails_with(checks03.test_compute_salient_logits, variant, message)


def test_salient_logits_on_a_vocabulary_smaller_than_max_n_logits(checks03):
    def compute_salient_logits(logits, W_U, max_n_logits=10, desired_logit_prob=0.95):
        top = logits.softmax(-1).topk(max_n_logits)  # k not clamped to the vocabulary
        n = min(int((top.values.cumsum(0) < desired_logit_prob).sum()) + 1, len(top.values))
        return top.indices[:n], top.values[:n], (W_U[:, top.indices[:n]] - W_U.mean(1, keepdim=True)).T

    fails_with(checks03.test_compute_salient_logits, compute_salient_logits, "Hint: a vocabulary can be smaller than max_n_logits")


def test_compute_salient_logits_alternative(checks03, capsys):
    def compute_salient_logits(logits, W_U, max_n_logits=10, desired_logit_prob=0.95):
        probs = logits.softmax(-1)
        order = probs.argsort(descending=True)
        ids, total = [], 0.0
        for i in order[:max_n_logits].tolist():
            ids.append(i)
            total += float(probs[i])
            if total >= desired_logit_prob:
                break
        ids = torch.tensor(ids)
        return ids, probs[ids], (W_U[:, ids] - W_U.mean(1, keepdim=True)).T

    passes(checks03.test_compute_salient_logits, compute_salient_logits, capsys)


# -------------------------------------------------------------------------------------------------
# build_graph_nodes


def nodes_variant(*, ct_order=False, bos_error=False, logit_act=False, emb_layer=False):
    def build_graph_nodes(model, run, max_n_logits=10, desired_logit_prob=0.95):
        nodes = ref.build_graph_nodes(model, run, max_n_logits, desired_logit_prob)
        if ct_order:
            nodes = nodes[circuit_tracer_order(nodes)]
        if bos_error:
            nodes.activation[(nodes.kind == ERROR) & (nodes.pos == 0)] = 1.0
        if logit_act:
            logit = nodes.kind == LOGIT
            nodes.activation[logit] = run.logits[-1, nodes.index[logit]]
        if emb_layer:
            nodes.layer[nodes.kind == EMBEDDING] = 0
        return nodes

    return build_graph_nodes


@pytest.mark.parametrize("variant, message", [
    (nodes_variant(ct_order=True), "Hint: this is circuit_tracer's order"),
    (nodes_variant(bos_error=True), "Hint: the error node at BOS (position 0) has activation 0"),
    (nodes_variant(logit_act=True), "Hint: a logit node's activation is its probability"),
    (nodes_variant(emb_layer=True), "Hint: embeddings have layer -1"),
])
def test_wrong_build_graph_nodes(checks03, variant, message):
    fails_with(checks03.test_build_graph_nodes, variant, message)


# -------------------------------------------------------------------------------------------------
# compute_attribution_matrix


def attribution_variant(*, transpose=False, no_activation=False, raw_logits=False, one_copy=False):
    def compute_attribution_matrix(model, transcoders, run, nodes, batch_size=256):
        if raw_logits or one_copy:
            return _slow_attribution(model, transcoders, run, nodes, raw_logits=raw_logits, one_copy=one_copy)
        adjacency = ref.compute_attribution_matrix(model, transcoders, run, nodes, batch_size)
        if no_activation:
            adjacency = adjacency / torch.where(nodes.activation == 0, torch.ones(()), nodes.activation)[None, :]
        return adjacency.T if transpose else adjacency

    return compute_attribution_matrix


def _slow_attribution(model, transcoders, run, nodes, *, raw_logits=False, one_copy=False):
    """One backward pass per target on a single copy of the prompt (a correct alternative by default)."""
    n_layers = model.cfg.n_layers
    reading, writing = ref.node_vectors(model, transcoders, run, nodes)
    if raw_logits:
        logit = nodes.kind == LOGIT
        reading[logit] = model.W_U[:, nodes.index[logit]].T
    writing = writing * nodes.activation[:, None]
    adjacency = torch.zeros(len(nodes), len(nodes))
    leaves, points = {}, {}

    def leaf(a, hook):
        leaves[hook.name] = x = a.detach().requires_grad_(True)
        return x

    writers = ["hook_embed"] + [f"blocks.{layer}.hook_mlp_out" for layer in range(n_layers)]
    hooks = ref.local_replacement_hooks(model, transcoders, run) + [(w, leaf) for w in writers]
    hooks += [(f"blocks.{layer}.ln2.hook_normalized", lambda a, hook: points.__setitem__(hook.layer(), a))
              for layer in range(n_layers)]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        points[n_layers] = model.ln_final(model(run.tokens[None], stop_at_layer=n_layers))
    targets = ((nodes.kind == LATENT) | (nodes.kind == LOGIT)).nonzero()[:, 0].tolist()
    for t in targets:
        with torch.enable_grad():
            objective = points[int(nodes.layer[t])][0, nodes.pos[t]] @ reading[t]
            grads = torch.autograd.grad(objective, [leaves[w] for w in writers], retain_graph=True, allow_unused=True)
        for layer, grad in zip(range(-1, n_layers), grads):
            if grad is None:
                continue
            sources = ((nodes.layer == layer) & (nodes.kind != LOGIT)).nonzero()[:, 0]
            row = (grad[0, nodes.pos[sources]] * writing[sources]).sum(-1)
            adjacency[(targets[0] if one_copy else t), sources] += row
    return adjacency


@pytest.mark.parametrize("variant, message", [
    (attribution_variant(transpose=True), "Hint: the matrix is A[target, source]: one row per target. Yours is transposed."),
    (attribution_variant(no_activation=True), "Hint: multiply each edge by its source's activation"),
    (attribution_variant(raw_logits=True), "by target ← source kind: logit ← embedding"),
    (attribution_variant(one_copy=True), "edges that differ from circuit_tracer's"),
])
def test_wrong_compute_attribution_matrix(checks03, variant, message):
    fails_with(checks03.test_compute_attribution_matrix, variant, message)


def test_edges_without_the_source_activation_are_named(checks03):
    """Every activation taken as 1, the BOS error's 0 included: the latent columns still name the mistake."""
    def compute_attribution_matrix(model, transcoders, run, nodes, batch_size=256):
        ones = GraphNodes(nodes.kind, nodes.layer, nodes.pos, nodes.index, torch.ones_like(nodes.activation))
        return ref.compute_attribution_matrix(model, transcoders, run, ones, batch_size)

    fails_with(checks03.test_compute_attribution_matrix, compute_attribution_matrix,
               "Hint: multiply each edge by its source's activation")


def test_compute_attribution_matrix_alternative(checks03, capsys):
    """One backward pass per target, on a single copy of the prompt: slow, and right."""
    passes(checks03.test_compute_attribution_matrix, lambda m, t, r, n, batch_size=256: _slow_attribution(m, t, r, n), capsys)


# -------------------------------------------------------------------------------------------------
# normalize_matrix and compute_influence


@pytest.mark.parametrize("variant, message", [
    (lambda A: A / A.sum(1, keepdim=True).clamp(min=1e-10), "Hint: take absolute values first"),
    (lambda A: A.abs() / A.abs().sum(0, keepdim=True).clamp(min=1e-10), "Hint: normalise each *row*"),
    (lambda A: A.abs() / A.abs().sum(1, keepdim=True), "Hint: a row of zeros (a node with no inputs) must stay zero"),
    (lambda A: A.abs_() / A.sum(1, keepdim=True).clamp(min=1e-10), "Hint: use adjacency.abs(), not abs_()"),
])
def test_wrong_normalize_matrix(checks03, variant, message):
    fails_with(checks03.test_normalize_matrix, variant, message)


def influence_variant(*, first_only=False, with_w=False, transposed=False):
    def compute_influence(A, w, max_iter=1000):
        if transposed:
            A = A.T
        term = w @ A
        total = term.clone()
        for _ in range(0 if first_only else max_iter):
            if not term.any():
                break
            term = term @ A
            total += term
        else:
            if not first_only:
                raise RuntimeError("no convergence")
        return total + w if with_w else total

    return compute_influence


def influence_never_raises(A, w, max_iter=1000):
    term, total = w @ A, (w @ A).clone()
    for _ in range(max_iter):
        term = term @ A
        total += term
    return total


@pytest.mark.parametrize("variant, message", [
    (influence_variant(first_only=True), "Hint: that is only the direct term w @ Â"),
    (influence_variant(with_w=True), "Hint: the sum starts at w @ Â, not at w"),
    (influence_variant(transposed=True), "Hint: multiply the row vector from the left"),
    (influence_never_raises, "should raise a RuntimeError"),
])
def test_wrong_compute_influence(checks03, variant, message):
    fails_with(checks03.test_compute_influence, variant, message)


def test_compute_influence_alternative(checks03, capsys):
    """The closed form w @ ((I - Â)^-1 - I); a matrix with a cycle makes I - Â singular, which raises."""

    def compute_influence(A, w, max_iter=1000):
        eye = torch.eye(len(A), dtype=A.dtype)
        return w @ (torch.linalg.inv(eye - A) - eye)

    passes(checks03.test_compute_influence, compute_influence, capsys)


# -------------------------------------------------------------------------------------------------
# prune_graph


def prune_variant(*, keep_always=True, orphans=True, edge_w=True, recompute=True):
    def prune_graph(adjacency, nodes, node_threshold=0.8, edge_threshold=0.98):
        weights = nodes.logit_weights
        influence = ref.compute_influence(ref.normalize_matrix(adjacency), weights)
        keep = influence >= ref.find_threshold(influence, node_threshold)
        if keep_always:
            keep |= (nodes.kind == LOGIT) | (nodes.kind == EMBEDDING)
        if recompute:
            pruned = ref.normalize_matrix(adjacency * keep[:, None] * keep[None, :])
            edge_scores = pruned * (ref.compute_influence(pruned, weights) + (weights if edge_w else 0))[:, None]
        else:  # edge scores from the whole graph's normalised matrix and influence
            edge_scores = ref.normalize_matrix(adjacency) * (influence + weights)[:, None]
        edge_mask = edge_scores >= ref.find_threshold(edge_scores.flatten(), edge_threshold)
        needs_output = (nodes.kind == LATENT) | (nodes.kind == ERROR)
        while orphans:
            before = keep.clone()
            edge_mask &= keep[:, None] & keep[None, :]
            keep &= ~needs_output | edge_mask.any(0)
            keep &= (nodes.kind != LATENT) | edge_mask.any(1)
            if torch.equal(before, keep):
                break
        ordered = influence.sort(descending=True)
        cumulative = torch.zeros_like(influence)
        cumulative[ordered.indices] = ordered.values.cumsum(0) / ordered.values.sum()
        return ref.PruneResult(keep, edge_mask, cumulative)

    return prune_graph


@pytest.mark.parametrize("variant, message", [
    (prune_variant(keep_always=False), "Hint: embeddings and logits are always kept"),
    (prune_variant(orphans=False), "Hint: remove orphans"),
    (prune_variant(edge_w=False), "Hint: an edge's score is Â[t, s] · (influence[t] + w[t]): without w"),
])
def test_wrong_prune_graph(checks03, variant, message):
    fails_with(checks03.test_prune_graph, variant, message)


def test_edge_scores_not_recomputed_after_node_pruning_are_named(checks03):
    text = fails_with(checks03.test_prune_graph, prune_variant(recompute=False), "edge_mask keeps",
                      "Hint: score the edges on the graph left after node pruning")
    assert "without w" not in text


# -------------------------------------------------------------------------------------------------
# attribute


def attribute_fixed_logits(model, transcoders, tokens, max_n_logits=10, desired_logit_prob=0.95, batch_size=256):
    return ref.attribute(model, transcoders, tokens, batch_size=batch_size)


def attribute_ct_order(model, transcoders, tokens, max_n_logits=10, desired_logit_prob=0.95, batch_size=256):
    graph = ref.attribute(model, transcoders, tokens, max_n_logits, desired_logit_prob, batch_size)
    perm = circuit_tracer_order(graph.nodes)
    return ref.AttributionGraph(graph.tokens, graph.nodes, graph.adjacency[perm][:, perm], graph.run)


@pytest.mark.parametrize("variant, message", [
    (attribute_fixed_logits, "should have one logit node: pass max_n_logits and desired_logit_prob on"),
    (attribute_ct_order, "the adjacency matrix (in circuit_tracer's order) has wrong values"),
])
def test_wrong_attribute(checks03, variant, message):
    fails_with(checks03.test_attribute, variant, message)


# -------------------------------------------------------------------------------------------------
# compute_graph_scores


def scores_variant(*, swapped=False, plain_mean=False, no_w=False):
    def compute_graph_scores(adjacency, nodes):
        w = nodes.logit_weights
        normalized = ref.normalize_matrix(adjacency)
        influence = ref.compute_influence(normalized, w)
        errors = nodes.kind == ERROR
        tokens, errs = influence[nodes.kind == EMBEDDING].sum(), influence[errors].sum()
        replacement = (errs if swapped else tokens) / (tokens + errs)
        not_from_errors = 1 - normalized[:, errors].sum(1)
        weight = torch.ones_like(influence) if plain_mean else influence + (0 if no_w else w)
        return float(replacement), float((not_from_errors * weight).sum() / weight.sum())

    return compute_graph_scores


@pytest.mark.parametrize("variant, message", [
    (scores_variant(swapped=True), "Hint: the replacement score is the embeddings' share"),
    (scores_variant(plain_mean=True), "Hint: weight each node by influence + logit weight"),
    (scores_variant(no_w=True), "Hint: weight by influence + w"),
])
def test_wrong_compute_graph_scores(checks03, variant, message):
    fails_with(checks03.test_compute_graph_scores, variant, message)


def _reference_edited(name: str, old: str, new: str, **overrides):
    """The reference function `name` with one line of its source edited (a wrong implementation as
    a learner would write it), run with the reference module's globals (and `overrides`)."""
    source = textwrap.dedent(inspect.getsource(getattr(ref, name)))
    assert old in source, f"{old!r} is not in the reference {name}"
    namespace = dict(vars(ref), **overrides)
    exec(compile(source.replace(old, new), f"<wrong {name}>", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("old, new, message", [
    ("points[n_layers] = model.ln_final(residual)", "points[n_layers] = residual",
     "Hint: only the edges into the logits are wrong: the logits read the residual stream after ln_final"),
])
def test_the_cause_of_wrong_edges_is_named(checks03, old, new, message):
    fails_with(checks03.test_compute_attribution_matrix, _reference_edited("compute_attribution_matrix", old, new), message)


def test_wrong_hooks_are_blamed_before_the_matrix(checks03):
    """A compute_attribution_matrix that is right but calls hooks that leave ln_final's scale free:
    the message names the inner exercise, which is the cause."""
    def hooks_without_ln_final(model, transcoders, run, latent_acts=None):
        return [h for h in ref.local_replacement_hooks(model, transcoders, run, latent_acts) if h[0] != "ln_final.hook_scale"]

    wrong = _reference_edited("compute_attribution_matrix", "n_layers = model.cfg.n_layers", "n_layers = model.cfg.n_layers",
                              local_replacement_hooks=hooks_without_ln_final)
    fails_with(checks03.test_compute_attribution_matrix, wrong,
               "it calls your local_replacement_hooks, which fails its own check", "Fix local_replacement_hooks first.")


# -------------------------------------------------------------------------------------------------
# edge_by_hand (bonus)


def edge_variant(*, attention=True, ln_scale=True):
    def edge_by_hand(model, transcoders, run, nodes, target, source):
        n_layers = model.cfg.n_layers
        reading, writing = ref.node_vectors(model, transcoders, run, nodes)
        v = torch.zeros(run.n_pos, model.cfg.d_model)
        v[int(nodes.pos[source])] = nodes.activation[source] * writing[source]
        src, tgt = int(nodes.layer[source]), int(nodes.layer[target])
        for layer in range(src + 1, min(tgt + 1, n_layers)):
            if attention:
                v = ref.map_through_attn(model, run, v, layer)
        pos = int(nodes.pos[target])
        scale = (run.final_scale[pos] if tgt == n_layers else run.ln2_scale[tgt, pos]) if ln_scale else torch.ones(1)
        weight = model.ln_final.w if tgt == n_layers else torch.ones(())
        return float(ref.map_through_ln(v[pos], scale, weight) @ reading[target])

    return edge_by_hand


@pytest.mark.parametrize("variant, message", [
    (edge_variant(attention=False), "Hint: the source is at another position, and only attention moves it there"),
    (edge_variant(ln_scale=False), "Hint: divide by the frozen LayerNorm scale"),
])
def test_wrong_edge_by_hand(checks03, variant, message):
    fails_with(checks03.test_edge_by_hand, variant, "circuit_tracer's edge is", message)


def _edge_by_hand_with(map_through_attn):
    """The reference edge_by_hand, calling the given map_through_attn (as a notebook's would, by name)."""
    namespace = dict(vars(ref), map_through_attn=map_through_attn)
    return types.FunctionType(ref.edge_by_hand.__code__, namespace, "edge_by_hand")


def test_a_transposed_attention_pattern_is_named(checks03):
    def map_through_attn(model, run, v, layer):  # the pattern read as [head, key, query]
        block = model.blocks[layer]
        x = ref.map_through_ln(v, run.ln1_scale[layer], block.ln1.w)
        values = torch.einsum("pd,hde->hpe", x, block.attn.W_V)
        moved = torch.einsum("hpq,hpe->hqe", run.patterns[layer], values)
        return v + torch.einsum("hqe,hed->qd", moved, block.attn.W_O)

    text = fails_with(checks03.test_edge_by_hand, _edge_by_hand_with(map_through_attn), "circuit_tracer's edge is",
                      "Hint: map_through_attn moves information backwards")
    assert "apply map_through_attn at every layer" not in text

    def without_w_o(model, run, v, layer):  # another wrong attention: the heads' outputs never leave head space
        block = model.blocks[layer]
        x = ref.map_through_ln(v, run.ln1_scale[layer], block.ln1.w)
        moved = torch.einsum("hqp,hpe->hqe", run.patterns[layer], torch.einsum("pd,hde->hpe", x, block.attn.W_V))
        return v + moved.sum(0).repeat(1, v.shape[1] // moved.shape[-1])

    fails_with(checks03.test_edge_by_hand, _edge_by_hand_with(without_w_o), "Hint: map_through_attn(model, run, v, layer=1) "
               "gives other values than the frozen attention layer")


def test_edge_by_hand_alternative(checks03, capsys):
    """Following the edge with autograd on a single source (no batching) is another right answer."""

    def edge_by_hand(model, transcoders, run, nodes, target, source):
        return float(ref.compute_attribution_matrix(model, transcoders, run, nodes[torch.tensor(sorted({source, target}))])[-1, 0]) \
            if source < target else 0.0

    passes(checks03.test_edge_by_hand, edge_by_hand, capsys)


# -------------------------------------------------------------------------------------------------
# the conversion helper shared with chapter 04


def test_our_graph_converts_to_circuit_tracer_and_prunes_the_same():
    from circuit_tracer import attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    from utils.attribution import to_circuit_tracer_graph
    from utils.world import load_model, load_transcoders, replacement_model

    model, transcoders = load_model(), load_transcoders()
    tokens = model.to_tokens("The state containing Dallas has its capital in")[0]
    ours = ref.attribute(model, transcoders, tokens)
    converted = to_circuit_tracer_graph(model, ours.tokens, ours.nodes, ours.adjacency)
    theirs = attribute(tokens, replacement_model(model, transcoders), batch_size=256)
    assert torch.equal(converted.active_features, theirs.active_features)
    assert converted.logit_token_ids.tolist() == theirs.logit_token_ids.tolist()
    assert torch.allclose(converted.adjacency_matrix, theirs.adjacency_matrix, rtol=1e-4, atol=1e-5)
    a, b = prune_graph(converted), prune_graph(theirs)
    assert torch.equal(a.node_mask, b.node_mask) and torch.equal(a.edge_mask, b.edge_mask)
    assert compute_graph_scores(converted) == pytest.approx(compute_graph_scores(theirs), abs=1e-5)
    assert isinstance(ours.nodes, GraphNodes) and torch.equal(ours.adjacency, ours.adjacency.tril(-1))
