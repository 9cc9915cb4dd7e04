"""Checks for chapter 03. The notebook calls them as `tests.test_<exercise>(learner_code, ...)`.

Each check compares the learner's function with circuit_tracer run on the same course model and
transcoders (its replacement model, `attribute`, `prune_graph`, `compute_graph_scores`), with
quantities computed here by hand (a 4-node DAG, single edges through the frozen layers), and with
interventions in the local replacement model; the reference module supplies inputs only where a
check needs the output of an earlier exercise.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

import solutions.ch03_attribution_graphs as ref
from utils.attribution import EMBEDDING, ERROR, KIND_NAMES, LATENT, LOGIT, GraphNodes, circuit_tracer_order, run_prompt
from utils.checks import Mistake, assert_tensor, check, expect, fail, inner_exercise_first, learner_function

PROMPTS = {
    "the Dallas prompt": "The state containing Dallas has its capital in",  # one salient logit (' Austin')
    "the Eiffel prompt": "Everyone knows the Eiffel tower is located in",  # five salient logits
}

# -------------------------------------------------------------------------------------------------
# The course world and circuit_tracer's results on it (computed once, when a check needs them)


@lru_cache(maxsize=1)
def _world():
    from utils.world import load_model, load_transcoders, replacement_model

    model = load_model()
    for param in model.parameters():
        param.requires_grad_(False)
    transcoders = load_transcoders()
    for transcoder in transcoders.values():
        transcoder.requires_grad_(False)
    return model, transcoders, replacement_model(model, transcoders)


@lru_cache(maxsize=4)
def _prompt(name: str):
    """(tokens, PromptRun, reference GraphNodes) of a named prompt."""
    model, transcoders, _ = _world()
    tokens = model.to_tokens(PROMPTS[name])[0]
    with torch.no_grad():
        run = run_prompt(model, transcoders, tokens)
        nodes = ref.build_graph_nodes(model, run)
    return tokens, run, nodes


@lru_cache(maxsize=4)
def _ct_graph(name: str):
    """circuit_tracer's unpruned graph of a named prompt."""
    from circuit_tracer import attribute

    _, _, rm = _world()
    tokens, _, _ = _prompt(name)
    with warnings.catch_warnings(), torch.enable_grad():  # the notebook turns gradients off; attribute needs them
        warnings.simplefilter("ignore")  # circuit_tracer's backward warns about a non-leaf .grad it never reads
        return attribute(tokens, rm, batch_size=256)


@lru_cache(maxsize=4)
def _ct_context(name: str):
    """circuit_tracer's attribution context (its node vectors) for a named prompt."""
    _, _, rm = _world()
    tokens, _, _ = _prompt(name)
    return rm.setup_attribution(tokens)


def _ct_adjacency_ours(name: str) -> Tensor:
    """circuit_tracer's adjacency matrix, permuted into our node order."""
    _, _, nodes = _prompt(name)
    perm = circuit_tracer_order(nodes)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    return _ct_graph(name).adjacency_matrix[inverse][:, inverse]


def _edge_tolerance(expected: Tensor) -> dict:
    return {"rtol": 1e-4, "atol": 1e-5 * float(expected.abs().max())}


def _close(a, b: Tensor, **tolerance) -> bool:
    return isinstance(a, Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), **tolerance)


# -------------------------------------------------------------------------------------------------
# local_replacement_hooks


def _run_hooks(hooks, tokens: Tensor, batch: int = 1, probes=(), grad: bool = False):
    model, _, _ = _world()
    with torch.set_grad_enabled(grad):
        return model.run_with_hooks(tokens.expand(batch, -1), fwd_hooks=list(hooks) + list(probes))


def _recorder(store: dict):
    def record(activation, hook):
        store[hook.name] = activation
        return activation

    return record


def _probe_names(n_layers: int) -> list[str]:
    names = ["ln_final.hook_scale"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.ln1.hook_scale", f"blocks.{layer}.ln2.hook_scale",
                  f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"]
    return names


def _check_hooks_shape(hooks, where: str) -> None:
    expect(isinstance(hooks, (list, tuple)) and all(isinstance(h, (list, tuple)) and len(h) == 2 and isinstance(h[0], str)
                                                     and callable(h[1]) for h in hooks),
           f"{where} should return a list of (hook_name, function) pairs.")


def _diagnose_probes(store: dict, run, latent_acts: Tensor, where: str, gradient_through_mlp: bool) -> None:
    """With latents that differ from the prompt's, every frozen quantity must keep its value."""
    model, transcoders, _ = _world()
    n_layers = model.cfg.n_layers
    for layer in range(n_layers):
        pattern = store[f"blocks.{layer}.attn.hook_pattern"]
        expect(pattern.shape[1:] == run.patterns[layer].shape and torch.allclose(pattern, run.patterns[layer].expand_as(pattern), atol=1e-6),
               f"{where}: the attention pattern of layer {layer} changed when the latents changed. Hint: attention "
               f"is not frozen: blocks.{layer}.attn.hook_pattern must return run.patterns[{layer}] (expanded to the batch).")
        for ln in ("ln1", "ln2"):
            scale, frozen = store[f"blocks.{layer}.{ln}.hook_scale"], getattr(run, f"{ln}_scale")[layer]
            expect(scale.shape[1:] == frozen.shape and torch.allclose(scale, frozen.expand_as(scale), rtol=1e-6),
                   f"{where}: the {ln} scale of layer {layer} changed when the latents changed. Hint: the LayerNorm "
                   f"scale is not frozen: blocks.{layer}.{ln}.hook_scale must return run.{ln}_scale[{layer}].")
    final = store["ln_final.hook_scale"]
    expect(torch.allclose(final, run.final_scale.expand_as(final), rtol=1e-6),
           f"{where}: ln_final's scale changed when the latents changed. Hint: the LayerNorm scale is not frozen: "
           "ln_final.hook_scale must return run.final_scale.")
    ambiguous = []
    for layer in range(n_layers):
        tc = transcoders[layer]
        got = store[f"blocks.{layer}.hook_mlp_out"][0]
        decoded = (latent_acts[layer] @ tc.W_dec + tc.b_dec).detach()
        if torch.allclose(got, decoded + run.errors[layer], atol=1e-4):
            continue
        if torch.allclose(got, decoded, atol=1e-4):
            fail(f"{where}: MLP {layer}'s output is the transcoder's output alone. Hint: the error term is missing: "
                 f"add run.errors[{layer}], which makes the local replacement model exact.")
        block = model.blocks[layer]
        normalized = store[f"blocks.{layer}.ln2.hook_normalized"][0]
        is_real = torch.allclose(got, block.mlp(normalized * block.ln2.w + block.ln2.b), atol=1e-4)
        is_clean = torch.allclose(got, run.mlp_out[layer], atol=1e-4)
        if is_real and is_clean:  # layer 0 sees no change of its input: look at a later layer
            ambiguous.append(layer)
            continue
        if is_real:
            fail(f"{where}: MLP {layer}'s output is the real MLP's output on the current input. Hint: the error "
                 "term is not detached: `activation - reconstruction` brings the real MLP back (and its gradients); "
                 f"use the constant run.errors[{layer}].")
        if is_clean:
            fail(f"{where}: MLP {layer}'s output did not change when the latents changed. Hint: build it from "
                 f"latent_acts[{layer}], not from run.latents or run.mlp_out.")
        fail(f"{where}: MLP {layer}'s output is not latent_acts[{layer}] @ W_dec + b_dec + run.errors[{layer}].")
    if ambiguous:
        layer = ambiguous[0]
        if gradient_through_mlp:
            fail(f"{where}: MLP {layer}'s output is the real MLP's output, with its gradients. Hint: the error term "
                 "is not detached: `activation - reconstruction` brings the real MLP back; use the constant "
                 f"run.errors[{layer}].")
        fail(f"{where}: MLP {layer}'s output did not change when the latents changed. Hint: build it from "
             f"latent_acts[{layer}], not from run.latents or run.mlp_out.")


def _gradient_through_mlp(local_replacement_hooks, tokens: Tensor, run) -> bool:
    """Whether MLP 0's output, under the learner's hooks, has a gradient with respect to its own input."""
    model, transcoders, _ = _world()
    store = {}

    def make_leaf(activation, hook):
        store["x"] = x = activation.detach().requires_grad_(True)
        return x

    with torch.enable_grad():
        hooks = local_replacement_hooks(model, transcoders, run, run.latents.clone())
        _run_hooks(hooks, tokens, probes=[("blocks.0.hook_resid_pre", make_leaf), ("blocks.0.hook_mlp_out", _recorder(store))],
                   grad=True)
        out = store["blocks.0.hook_mlp_out"]
        if not out.requires_grad:
            return False
        grad = torch.autograd.grad(out.sum(), store["x"], allow_unused=True)[0]
    return grad is not None and bool(grad.abs().sum() > 0)


def _vjp(hooks_fn, tokens: Tensor, run, latent_acts: Tensor, vectors: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Vector-Jacobian products of (last-position logits, layer-3 latent pre-activations) with respect to
    the latents and the first residual stream, at the given latents."""
    model, transcoders, _ = _world()
    n_layers = model.cfg.n_layers
    leaf = latent_acts.detach().clone().requires_grad_(True)
    store = {}

    def make_resid_leaf(activation, hook):
        store["resid"] = x = activation.detach().requires_grad_(True)
        return x

    with torch.enable_grad():
        hooks = hooks_fn(model, transcoders, run, leaf)
        probes = [("blocks.0.hook_resid_pre", make_resid_leaf),
                  (f"blocks.{n_layers - 1}.ln2.hook_normalized", _recorder(store))]
        logits = _run_hooks(hooks, tokens, probes=probes, grad=True)
        pre = store[f"blocks.{n_layers - 1}.ln2.hook_normalized"][0] @ transcoders[n_layers - 1].W_enc
        objective = (logits[0, -1] * vectors[0]).sum() + (pre * vectors[1]).sum()
        grads = torch.autograd.grad(objective, [leaf, store["resid"]], allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, (leaf, store["resid"])))


@check
def test_local_replacement_hooks(local_replacement_hooks) -> None:
    """Exact forward; frozen patterns, scales and error under other latents; a Jacobian that does not change."""
    model, transcoders, _ = _world()
    tokens, run, _ = _prompt("the Dallas prompt")
    where = "local_replacement_hooks(model, transcoders, run of the Dallas prompt)"
    hooks = local_replacement_hooks(model, transcoders, run)
    _check_hooks_shape(hooks, where)
    no_error = dataclasses.replace(run, errors=torch.zeros_like(run.errors))
    last = [model.cfg.n_layers - 1] * model.cfg.n_layers  # every layer given the last layer's frozen values
    late = dataclasses.replace(run, **{f: getattr(run, f)[last] for f in ("patterns", "ln1_scale", "ln2_scale", "errors", "latents")})
    late_transcoders = {layer: transcoders[last[0]] for layer in transcoders}
    logits = _run_hooks(hooks, tokens)[0]
    assert_tensor(logits, run.logits, f"{where}: the logits", atol=1e-4, rtol=1e-4,
                  mistakes=[Mistake.looks_like(_run_hooks(ref.local_replacement_hooks(model, transcoders, no_error), tokens)[0],
                                               "the error term is missing: each MLP's output must be the transcoder's "
                                               "output plus run.errors[layer], so that the forward pass is exact."),
                            Mistake.looks_like(_run_hooks(ref.local_replacement_hooks(model, late_transcoders, late), tokens)[0],
                                               "every hook uses the last layer's values: a lambda in a loop sees the loop "
                                               "variable's final value. Bind the layer (layer=layer) or build each hook "
                                               "in a small function.")])
    batch_logits = _run_hooks(hooks, tokens, batch=3)
    expect(batch_logits.shape[0] == 3 and torch.allclose(batch_logits, run.logits.expand_as(batch_logits), atol=1e-4),
           f"{where}: on a batch of 3 copies of the prompt, the logits should be the model's for every copy "
           "(expand the frozen values to the batch: value.expand_as(activation)).")

    generator = torch.Generator().manual_seed(0)
    for scale in (2.0, 0.5):
        latent_acts = scale * run.latents
        store = {}
        probes = [(name, _recorder(store)) for name in _probe_names(model.cfg.n_layers)]
        _run_hooks(local_replacement_hooks(model, transcoders, run, latent_acts.clone()), tokens, probes=probes)
        _diagnose_probes(store, run, latent_acts, f"{where} with the latents × {scale}",
                         _gradient_through_mlp(local_replacement_hooks, tokens, run))

    vectors = (torch.randn(model.cfg.d_vocab, generator=generator),
               torch.randn(len(tokens), transcoders[0].cfg.d_sae, generator=generator) / 30)
    at_one = _vjp(local_replacement_hooks, tokens, run, run.latents, vectors)
    expect(bool(at_one[0].abs().sum() > 0),
           f"{where}: the logits do not depend on latent_acts through autograd. Hint: use latent_acts as given "
           "(do not detach it, and do not use run.latents in its place).")
    wanted = ref.local_replacement_hooks
    reference = _vjp(wanted, tokens, run, run.latents, vectors)
    for scale in (0.5, 2.0):
        other = _vjp(local_replacement_hooks, tokens, run, scale * run.latents, vectors)
        for name, a, b, r in zip(("latents", "first residual stream"), at_one, other, reference):
            expect(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(r.abs().max())),
                   f"{where}: the Jacobian with respect to the {name} changes when the latents are scaled by {scale}: "
                   "the local replacement model is not linear. Hint: freeze every attention pattern and LayerNorm "
                   "scale, and make each MLP output depend on nothing but latent_acts and the constant error.")
            assert_tensor(a, r, f"{where}: the Jacobian of logits and pre-activations with respect to the {name}",
                          **_edge_tolerance(r))


# -------------------------------------------------------------------------------------------------
# node_vectors


def _kind_blocks(nodes: GraphNodes):
    for kind, name in KIND_NAMES.items():
        yield kind, name, (nodes.kind == kind)


@check
def test_node_vectors(node_vectors) -> None:
    """Every kind of node against circuit_tracer's own vectors for the same prompt, and a small node list."""
    model, transcoders, _ = _world()
    for prompt in PROMPTS:
        tokens, run, nodes = _prompt(prompt)
        ctx, graph = _ct_context(prompt), _ct_graph(prompt)
        where = f"node_vectors(..., nodes of {prompt})"
        result = node_vectors(model, transcoders, run, nodes)
        expect(isinstance(result, (tuple, list)) and len(result) == 2,
               f"{where} should return a pair (reading, writing).")
        reading, writing = result
        d = model.cfg.d_model
        for name, x in (("reading", reading), ("writing", writing)):
            expect(isinstance(x, Tensor) and x.shape == (len(nodes), d),
                   f"{where}: {name} should be a tensor of shape ({len(nodes)}, {d}), one row per node.")
        latent, error, emb, logit = (nodes.kind == k for k in (LATENT, ERROR, EMBEDDING, LOGIT))
        W_U = model.W_U
        acts = nodes.activation[latent][:, None]
        assert_tensor(reading[latent], ctx.encoder_vecs, f"{where}: reading vectors of the latents", rtol=1e-5, atol=1e-6,
                      mistakes=[Mistake(lambda a: _close(a, ctx.decoder_vecs / acts, atol=1e-5),
                                        "the reading vector of a latent is its encoder column W_enc[:, i], and the "
                                        "writing vector its decoder row W_dec[i]: you have them swapped.")])
        assert_tensor(writing[latent], ctx.decoder_vecs / acts, f"{where}: writing vectors of the latents", rtol=1e-4, atol=1e-6,
                      mistakes=[Mistake(lambda a: _close(a, ctx.decoder_vecs, atol=1e-5),
                                        "writing vectors are not multiplied by the activation (the edges do that)."),
                                Mistake(lambda a: _close(a, ctx.encoder_vecs, atol=1e-5),
                                        "the writing vector of a latent is W_dec[i], the reading vector W_enc[:, i]: "
                                        "you have them swapped.")])
        assert_tensor(writing[emb], ctx.token_vectors, f"{where}: writing vectors of the embeddings",
                      mistakes=[Mistake(lambda a: _close(a, ctx.token_vectors + model.W_pos[: len(tokens)], atol=1e-6),
                                        "the positional embedding is a constant of every prompt, not part of an "
                                        "embedding node's writing vector: use W_E[token] alone.")])
        errors = ctx.error_vectors.reshape(-1, d)
        bos = torch.arange(len(errors)) % len(tokens) == 0
        assert_tensor(writing[error][~bos], errors[~bos], f"{where}: writing vectors of the error nodes", rtol=1e-4, atol=1e-5)
        demeaned = (W_U[:, graph.logit_token_ids] - W_U.mean(1, keepdim=True)).T
        assert_tensor(reading[logit], demeaned, f"{where}: reading vectors of the logits", rtol=1e-5, atol=1e-6,
                      mistakes=[Mistake(lambda a: _close(a, W_U[:, graph.logit_token_ids].T, atol=1e-6),
                                        "demean the unembedding columns: subtract W_U.mean(dim=1), the mean column."),
                                Mistake(lambda a: _close(a, W_U[:, graph.logit_token_ids].T - W_U.mean(0)[graph.logit_token_ids, None], atol=1e-6),
                                        "the mean to subtract is over the vocabulary, W_U.mean(dim=1) of shape "
                                        "(d_model,), not over d_model.")])
        for name, x, mask in (("reading", reading, emb | error), ("writing", writing, logit)):
            expect(bool((x[mask] == 0).all()), f"{where}: {name} vectors must be zero for nodes that do not {name[:-3]} "
                                               f"({'embeddings and errors' if name == 'reading' else 'logits'}).")


# -------------------------------------------------------------------------------------------------
# compute_salient_logits


HAND_PROBS = torch.tensor([0.08, 0.5, 0.12, 0.3])  # sorted: 0.5, 0.3, 0.12, 0.08 -> tokens 1, 3, 2, 0
HAND_W_U = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, -4.0, 4.0, 4.0]])  # column means (3, 1)


def _salient_mistakes(result, logits: Tensor, W_U: Tensor, expected) -> list[Mistake]:
    """Mistakes recognised on the whole result (each field's comparison gets the same hints)."""
    ids = expected[0]
    n = len(result[0]) if isinstance(result[0], Tensor) else -1
    return [
        Mistake(lambda _: n == len(ids) - 1,
                "keep logits until the cumulative probability *reaches* desired_logit_prob: the last one kept is "
                "the one that crosses it."),
        Mistake(lambda _: n == len(ids) + 1,
                "one logit too many: stop at the first one whose cumulative probability reaches desired_logit_prob."),
        Mistake(lambda _: _close(result[2], W_U[:, ids].T), "demean the unembedding columns: subtract W_U.mean(dim=1)."),
        Mistake(lambda _: _close(result[1], logits[ids]), "return the probabilities (softmax of the logits), not the logits."),
    ]


def _check_salient(fn, logits, W_U, max_n, p, where, expected) -> None:
    result = fn(logits, W_U, max_n, p)
    expect(isinstance(result, (tuple, list)) and len(result) == 3,
           f"{where} should return (token_ids, probabilities, reading_vectors).")
    ids, probs, vecs = expected
    mistakes = _salient_mistakes(result, logits, W_U, expected)
    assert_tensor(result[0], ids, f"{where}: token ids", check_dtype=False, mistakes=mistakes)
    assert_tensor(result[1], probs, f"{where}: probabilities", rtol=1e-5, atol=1e-7, mistakes=mistakes)
    assert_tensor(result[2], vecs, f"{where}: reading vectors", rtol=1e-5, atol=1e-6, mistakes=mistakes)


@check
def test_compute_salient_logits(compute_salient_logits) -> None:
    """The hand example at three settings, then circuit_tracer's choice on course-world prompts."""
    from circuit_tracer.attribution.targets import AttributionTargets

    logits = HAND_PROBS.log()
    demeaned = HAND_W_U - torch.tensor([[3.0], [1.0]])
    for max_n, p, ids in ((4, 0.95, [1, 3, 2, 0]), (4, 0.9, [1, 3, 2]), (2, 0.95, [1, 3])):
        want = (torch.tensor(ids), HAND_PROBS[ids], demeaned[:, ids].T)
        _check_salient(compute_salient_logits, logits, HAND_W_U, max_n, p,
                       f"compute_salient_logits(hand example, max_n_logits={max_n}, desired_logit_prob={p})", want)
    where = "compute_salient_logits(hand example of 4 tokens, default max_n_logits=10)"
    try:
        compute_salient_logits(logits, HAND_W_U)
    except RuntimeError as err:
        if "out of range" in str(err):
            fail(f"{where} raised '{err}'. Hint: a vocabulary can be smaller than max_n_logits: "
                 "take topk(min(max_n_logits, len(logits))).")
        raise
    want = (torch.tensor([1, 3, 2, 0]), HAND_PROBS[[1, 3, 2, 0]], demeaned[:, [1, 3, 2, 0]].T)
    _check_salient(compute_salient_logits, logits, HAND_W_U, 10, 0.95, where, want)
    model, _, rm = _world()
    for prompt in PROMPTS:
        _, run, _ = _prompt(prompt)
        for max_n, p in ((10, 0.95), (3, 0.5), (10, 0.999)):
            targets, probs, vecs = AttributionTargets._from_salient(run.logits[-1], rm.unembed.W_U, max_n, p, model.tokenizer)
            want = (torch.tensor([t.vocab_idx for t in targets]), probs, vecs)
            _check_salient(compute_salient_logits, run.logits[-1], model.W_U, max_n, p,
                           f"compute_salient_logits(last logits of {prompt}, {max_n}, {p}) against circuit_tracer", want)


# -------------------------------------------------------------------------------------------------
# build_graph_nodes


FIELDS = ("kind", "layer", "pos", "index", "activation")


@check
def test_build_graph_nodes(build_graph_nodes) -> None:
    """Node fields and order, against circuit_tracer's active features and logits for two prompts."""
    model, _, _ = _world()
    for prompt in PROMPTS:
        tokens, run, _ = _prompt(prompt)
        graph = _ct_graph(prompt)
        where = f"build_graph_nodes(model, run of {prompt})"
        nodes = build_graph_nodes(model, run)
        expect(isinstance(nodes, GraphNodes), f"{where} should return a GraphNodes, not {type(nodes).__name__}.")
        n_layers, n_pos = model.cfg.n_layers, len(tokens)
        n_latents = len(graph.active_features)
        expected_n = n_pos + n_latents + n_layers * n_pos + len(graph.logit_targets)
        for field in FIELDS:
            value = getattr(nodes, field)
            expect(isinstance(value, Tensor) and value.shape == (expected_n,),
                   f"{where}: nodes.{field} should be a tensor of shape ({expected_n},) (one entry per node: {n_pos} "
                   f"embeddings, {n_latents} active latents, {n_layers * n_pos} errors, {len(graph.logit_targets)} logits), "
                   f"got {tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}.")
        counts = {name: int((nodes.kind == kind).sum()) for kind, name in KIND_NAMES.items()}
        want_counts = {"embedding": n_pos, "latent": n_latents, "error": n_layers * n_pos, "logit": len(graph.logit_targets)}
        expect(counts == want_counts, f"{where}: {counts} nodes of each kind, expected {want_counts}.")
        expected = ref.build_graph_nodes(model, run)
        if not torch.equal(nodes.kind, expected.kind):
            ct_order = expected[circuit_tracer_order(expected)]
            hint = ("this is circuit_tracer's order (all latents, then all errors, ...); ours is topological: "
                    "embeddings, then for each layer its latents and then its errors, then the logits."
                    if torch.equal(nodes.kind, ct_order.kind) else
                    "the order is embeddings, then for each layer its latents followed by its errors, then the logits.")
            fail(f"{where}: the kinds are not in the expected order. Hint: {hint}")
        for field in FIELDS:
            value = getattr(nodes, field)
            mistakes = []
            if field == "activation":
                bos_error = expected.activation.clone()
                bos_error[(expected.kind == ERROR) & (expected.pos == 0)] = 1
                mistakes = [Mistake.looks_like(bos_error, "the error node at BOS (position 0) has activation 0: BOS is "
                                                          "never attributed."),
                            Mistake(lambda a: _close(a[expected.kind == LOGIT], run.logits[-1, expected.index[expected.kind == LOGIT]]),
                                    "a logit node's activation is its probability, not its logit.")]
            if field == "layer":
                mistakes = [Mistake(lambda a: bool((a[expected.kind == EMBEDDING] == 0).all()),
                                    "embeddings have layer -1 (they write before layer 0) and logits n_layers.")]
            if field == "index":
                mistakes = [Mistake(lambda a: bool((a[expected.kind == ERROR] != -1).any()), "error nodes have index -1.")]
            assert_tensor(value, expected.__getattribute__(field), f"{where}: nodes.{field}", rtol=1e-6, atol=1e-7,
                          mistakes=mistakes)
        latents = nodes[nodes.kind == LATENT]
        assert_tensor(torch.stack([latents.layer, latents.pos, latents.index], 1), graph.active_features,
                      f"{where}: (layer, pos, latent) of the latent nodes against circuit_tracer's active features")
        assert_tensor(latents.activation, graph.activation_values, f"{where}: latent activations against circuit_tracer",
                      rtol=1e-5, atol=1e-6)
    _, run, _ = _prompt("the Eiffel prompt")  # 5 salient logits by default
    few = build_graph_nodes(model, run, max_n_logits=1)
    expect(int((few.kind == LOGIT).sum()) == 1, "build_graph_nodes(..., max_n_logits=1) should make exactly one logit "
                                                 "node: pass max_n_logits and desired_logit_prob on to compute_salient_logits.")


# -------------------------------------------------------------------------------------------------
# compute_attribution_matrix


def _describe_difference(actual: Tensor, expected: Tensor, nodes: GraphNodes, tolerance: dict) -> str:
    """Which (target kind/layer, source kind/layer) blocks differ."""
    wrong = ~torch.isclose(actual, expected, **tolerance)
    blocks = []
    for t_kind, t_name, t_mask in _kind_blocks(nodes):
        for s_kind, s_name, s_mask in _kind_blocks(nodes):
            n = int(wrong[t_mask][:, s_mask].sum())
            if n:
                blocks.append(f"{t_name} ← {s_name}: {n}")
    return "; ".join(blocks)


def _wrong_only_in(actual: Any, expected: Tensor, rows: Tensor) -> bool:
    """Whether `actual` differs from `expected` somewhere, and only in the given rows."""
    if not isinstance(actual, Tensor) or actual.shape != expected.shape:
        return False
    wrong = ~torch.isclose(actual.detach().float(), expected, **_edge_tolerance(expected))
    return bool(wrong.any()) and not bool(wrong[~rows].any())


def _attribution_mistakes(expected: Tensor, nodes: GraphNodes) -> list[Mistake]:
    per_activation = expected / torch.where(nodes.activation == 0, torch.ones(()), nodes.activation)[None, :]
    logit_rows = nodes.kind == LOGIT
    return [
        Mistake(lambda a: _close(a, expected.T, rtol=1e-4, atol=1e-5 * float(expected.abs().max())),
                "the matrix is A[target, source]: one row per target. Yours is transposed."),
        Mistake(lambda a: _close(a, per_activation, rtol=1e-4, atol=1e-5 * float(expected.abs().max())) or (
                    isinstance(a, Tensor) and a.shape == expected.shape
                    and _close(a[:, nodes.kind == LATENT], per_activation[:, nodes.kind == LATENT], rtol=1e-4,
                               atol=1e-5 * float(expected.abs().max()))),
                "multiply each edge by its source's activation (a_s · writing vector)."),
        Mistake(lambda a: _close(a, -expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())),
                "every edge has the opposite sign."),
        Mistake(lambda a: _wrong_only_in(a, expected, logit_rows),
                "only the edges into the logits are wrong: the logits read the residual stream after ln_final, with "
                "its scale frozen at run.final_scale (model.ln_final applied under the frozen-scale hook), and "
                "their reading vectors are the demeaned unembedding columns."),
    ]


@torch.no_grad()
def _hand_edge(run, nodes: GraphNodes, target: int, source: int) -> float:
    """A latent(layer l, pos p) -> latent(layer l + 1, pos q) edge through one frozen attention layer, by hand."""
    model, transcoders, _ = _world()
    l, p = int(nodes.layer[source]), int(nodes.pos[source])
    L, q = int(nodes.layer[target]), int(nodes.pos[target])
    assert L == l + 1 and int(nodes.kind[source]) == LATENT == int(nodes.kind[target])
    v = float(nodes.activation[source]) * transcoders[l].W_dec[int(nodes.index[source])]
    block = model.blocks[L]
    centred = v - v.mean()
    through_attention = torch.zeros(model.cfg.d_model)
    for h in range(model.cfg.n_heads):
        head_in = centred / run.ln1_scale[L, p] * block.ln1.w
        through_attention += run.patterns[L, h, q, p] * (head_in @ block.attn.W_V[h] @ block.attn.W_O[h])
    at_target = through_attention + (v if p == q else 0.0)
    read = (at_target - at_target.mean()) / run.ln2_scale[L, q]
    return float(read @ transcoders[L].W_enc[:, int(nodes.index[target])])


def _intervention_edges(run, nodes: GraphNodes, adjacency: Tensor, n: int = 3) -> list[tuple[int, int, float]]:
    """(target, source, effect) for the strongest latent->latent edges into the last layer: raise the source's
    activation by δ in the local replacement model and measure the target's pre-activation."""
    model, transcoders, _ = _world()
    last = model.cfg.n_layers - 1
    targets = ((nodes.kind == LATENT) & (nodes.layer == last)).nonzero()[:, 0]
    latent_sources = (nodes.kind == LATENT) & (nodes.layer < last)
    block = adjacency[targets][:, latent_sources].abs()
    top = block.flatten().topk(n).indices
    source_ids = latent_sources.nonzero()[:, 0]
    found = []
    for flat in top.tolist():
        t, s = int(targets[flat // block.shape[1]]), int(source_ids[flat % block.shape[1]])
        delta = 0.5
        pre = []
        for bump in (0.0, delta):
            acts = run.latents.clone()
            acts[nodes.layer[s], nodes.pos[s], nodes.index[s]] += bump
            store = {}
            name = f"blocks.{last}.ln2.hook_normalized"
            _run_hooks(ref.local_replacement_hooks(model, transcoders, run, acts), run.tokens, probes=[(name, _recorder(store))])
            pre.append(float(store[name][0, nodes.pos[t]] @ transcoders[last].W_enc[:, nodes.index[t]]))
        found.append((t, s, (pre[1] - pre[0]) / delta * float(nodes.activation[s])))
    return found


@check
def test_compute_attribution_matrix(compute_attribution_matrix) -> None:
    """Every edge against circuit_tracer (two prompts, two batch sizes), one edge by hand, interventions."""
    model, transcoders, _ = _world()
    for prompt, batch_size in (("the Dallas prompt", 256), ("the Eiffel prompt", 7)):
        tokens, run, nodes = _prompt(prompt)
        where = f"compute_attribution_matrix(..., {prompt}, batch_size={batch_size})"
        expected = _ct_adjacency_ours(prompt)
        actual = compute_attribution_matrix(model, transcoders, run, nodes, batch_size=batch_size)
        tolerance = _edge_tolerance(expected)
        if isinstance(actual, Tensor) and actual.shape == expected.shape and not torch.allclose(actual, expected, **tolerance):
            where += f" (edges that differ from circuit_tracer's, by target ← source kind: {_describe_difference(actual, expected, nodes, tolerance)})"
        with inner_exercise_first("local_replacement_hooks", learner_function(compute_attribution_matrix,
                                                                            "local_replacement_hooks"),
                                  test_local_replacement_hooks):
            assert_tensor(actual, expected, where, check_dtype=False, mistakes=_attribution_mistakes(expected, nodes),
                          **tolerance)

    tokens, run, nodes = _prompt("the Dallas prompt")
    adjacency = compute_attribution_matrix(model, transcoders, run, nodes)
    # one edge by hand: the strongest latent(layer 0) -> latent(layer 1) edge across positions
    targets = ((nodes.kind == LATENT) & (nodes.layer == 1)).nonzero()[:, 0]
    sources = ((nodes.kind == LATENT) & (nodes.layer == 0)).nonzero()[:, 0]
    block = adjacency[targets][:, sources].clone()
    block[nodes.pos[targets][:, None] == nodes.pos[sources][None, :]] = 0  # across positions: through attention only
    flat = int(block.abs().argmax())
    t, s = int(targets[flat // len(sources)]), int(sources[flat % len(sources)])
    by_hand = _hand_edge(run, nodes, t, s)
    expect(abs(float(adjacency[t, s]) - by_hand) <= 1e-4 * abs(by_hand) + 1e-6,
           f"compute_attribution_matrix: the edge {nodes.describe(s)} -> {nodes.describe(t)} is {float(adjacency[t, s]):.6f}, "
           f"but by hand (through layer 1's frozen attention) it is {by_hand:.6f}.")
    for t, s, effect in _intervention_edges(run, nodes, adjacency):
        expect(abs(float(adjacency[t, s]) - effect) <= 1e-3 * abs(effect) + 1e-5,
               f"compute_attribution_matrix: raising {nodes.describe(s)} by δ in the local replacement model moves the "
               f"pre-activation of {nodes.describe(t)} by δ · {effect / float(nodes.activation[s]):.5f}, so the edge should be "
               f"{effect:.5f}, but it is {float(adjacency[t, s]):.5f}.")


# -------------------------------------------------------------------------------------------------
# normalize_matrix, compute_influence


HAND_DAG = torch.tensor([  # [embedding, latent f, latent g, logit]; rows are targets
    [0.0, 0.0, 0.0, 0.0],
    [2.0, 0.0, 0.0, 0.0],
    [-1.0, 3.0, 0.0, 0.0],
    [0.0, 1.0, -3.0, 0.0],
])
HAND_NORMALIZED = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [0.25, 0.75, 0, 0], [0, 0.25, 0.75, 0]])
HAND_WEIGHTS = torch.tensor([0.0, 0.0, 0.0, 1.0])
HAND_INFLUENCE = torch.tensor([1.0, 0.8125, 0.75, 0.0])


def _hand_nodes() -> GraphNodes:
    return GraphNodes(torch.tensor([EMBEDDING, LATENT, LATENT, LOGIT]), torch.tensor([-1, 0, 1, 2]),
                      torch.tensor([0, 0, 0, 0]), torch.tensor([5, 10, 11, 5]), torch.tensor([1.0, 2.0, 1.0, 1.0]))


@check
def test_normalize_matrix(normalize_matrix) -> None:
    """The hand DAG (negative edges, a zero row), then a course-world graph."""
    where = "normalize_matrix(the hand DAG)"
    given = HAND_DAG.clone()
    result = normalize_matrix(given)
    expect(torch.equal(given, HAND_DAG), f"{where} changed the matrix it was given. Hint: use adjacency.abs(), not "
                                         "abs_(): the caller's graph keeps its signed edges.")
    assert_tensor(result, HAND_NORMALIZED, where, mistakes=[
        Mistake(lambda a: bool(torch.isnan(a).any()), "a row of zeros (a node with no inputs) must stay zero: clamp "
                                                       "the row sums below at 1e-10 before dividing."),
        Mistake.looks_like(HAND_DAG / HAND_DAG.sum(1, keepdim=True).clamp(min=1e-10),
                           "take absolute values first: a negative edge matters as much as a positive one."),
        Mistake.looks_like(HAND_DAG.abs() / HAND_DAG.abs().sum(0, keepdim=True).clamp(min=1e-10),
                           "normalise each *row* (a target's incoming edges), not each column: sum over dim=1."),
    ])
    from circuit_tracer.graph import normalize_matrix as ct_normalize

    adjacency = _ct_adjacency_ours("the Dallas prompt")
    assert_tensor(normalize_matrix(adjacency), ct_normalize(adjacency), "normalize_matrix(Dallas graph)", rtol=1e-5, atol=1e-7)


@check
def test_compute_influence(compute_influence) -> None:
    """The hand DAG's influences (written out in the notebook), course-world graphs, and a cycle."""
    where = "compute_influence(the normalised hand DAG, logit weights [0, 0, 0, 1])"
    result = compute_influence(HAND_NORMALIZED.clone(), HAND_WEIGHTS.clone())
    assert_tensor(result, HAND_INFLUENCE, where, mistakes=[
        Mistake.looks_like(torch.tensor([0.0, 0.25, 0.75, 0.0]), "that is only the direct term w @ Â: add w @ Â², "
                                                                 "w @ Â³, ... until the term is zero."),
        Mistake.looks_like(HAND_INFLUENCE + HAND_WEIGHTS, "the sum starts at w @ Â, not at w: a logit has no "
                                                          "influence on itself."),
        Mistake.looks_like(HAND_NORMALIZED @ HAND_WEIGHTS + HAND_NORMALIZED @ HAND_NORMALIZED @ HAND_WEIGHTS,
                           "multiply the row vector from the left, w @ Â (influence flows from targets to sources)."),
    ])
    from circuit_tracer.graph import compute_influence as ct_influence
    from circuit_tracer.graph import normalize_matrix as ct_normalize

    for prompt in PROMPTS:
        _, _, nodes = _prompt(prompt)
        normalized = ct_normalize(_ct_adjacency_ours(prompt))
        assert_tensor(compute_influence(normalized, nodes.logit_weights), ct_influence(normalized, nodes.logit_weights),
                      f"compute_influence(normalised graph of {prompt}) against circuit_tracer", rtol=1e-4, atol=1e-6)
    cycle = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    try:
        compute_influence(cycle, torch.tensor([1.0, 0.0]), max_iter=20)
    except RuntimeError:
        pass
    else:
        fail("compute_influence(a 2-cycle, max_iter=20) should raise a RuntimeError: the series never ends on a "
             "matrix that is not nilpotent.")


# -------------------------------------------------------------------------------------------------
# prune_graph


def _edge_mask_variant(adjacency: Tensor, nodes: GraphNodes, node_threshold: float, edge_threshold: float, *,
                       recompute: bool = True, with_w: bool = True) -> Tensor:
    """The edge mask that prune_graph's steps give with one known mistake: edge scores from the
    unpruned graph (recompute=False), or without the logit weights (with_w=False)."""
    weights = nodes.logit_weights
    full = ref.normalize_matrix(adjacency)
    influence = ref.compute_influence(full, weights)
    keep = influence >= ref.find_threshold(influence, node_threshold)
    keep |= (nodes.kind == LOGIT) | (nodes.kind == EMBEDDING)
    pruned = ref.normalize_matrix(adjacency * keep[:, None] * keep[None, :]) if recompute else full
    target_influence = ref.compute_influence(pruned, weights) if recompute else influence
    scores = pruned * (target_influence + (weights if with_w else 0))[:, None]
    edge_mask = scores >= ref.find_threshold(scores.flatten(), edge_threshold)
    needs_output, needs_input = (nodes.kind == LATENT) | (nodes.kind == ERROR), nodes.kind == LATENT
    while True:
        before = keep.clone()
        edge_mask &= keep[:, None] & keep[None, :]
        keep &= ~needs_output | edge_mask.any(dim=0)
        keep &= ~needs_input | edge_mask.any(dim=1)
        if torch.equal(before, keep):
            return edge_mask


def _check_prune(result, want_nodes: Tensor, want_edges: Tensor, want_scores: Tensor, where: str, nodes: GraphNodes,
                 inputs: tuple | None = None) -> None:
    """`inputs`: (adjacency, node_threshold, edge_threshold), to name a known mistake in the edge mask."""
    expect(all(hasattr(result, f) for f in ("node_mask", "edge_mask", "cumulative_scores")),
           f"{where} should return a PruneResult(node_mask, edge_mask, cumulative_scores).")
    always = (nodes.kind == LOGIT) | (nodes.kind == EMBEDDING)
    node_mask = result.node_mask
    expect(isinstance(node_mask, Tensor) and node_mask.shape == want_nodes.shape,
           f"{where}: node_mask should be a bool tensor of shape {tuple(want_nodes.shape)}.")
    expect(bool(node_mask[always].all()), f"{where}: some embeddings or logits were dropped. Hint: embeddings and "
                                          "logits are always kept.")
    logit_rows = nodes.kind == LOGIT
    edge_mask = result.edge_mask
    if (isinstance(edge_mask, Tensor) and edge_mask.shape == want_edges.shape and not bool(edge_mask[logit_rows].any())
            and bool(want_edges[logit_rows].any())):
        fail(f"{where}: no edge into a logit is kept. Hint: an edge's score is Â[t, s] · (influence[t] + w[t]): "
             "without w, edges into the logits score 0.")
    if not torch.equal(node_mask.bool(), want_nodes):
        extra = node_mask.bool() & ~want_nodes
        orphan = extra & ((want_edges.any(0) == 0) | (nodes.kind == LATENT) & (want_edges.any(1) == 0))
        hint = (" Hint: remove orphans: a latent or error with no kept outgoing edge, or a latent with no kept "
                "incoming edge; repeat until nothing changes." if bool(orphan.any()) else "")
        fail(f"{where}: node_mask keeps {int(node_mask.sum())} nodes, expected {int(want_nodes.sum())} "
             f"({int(extra.sum())} kept that should go, {int((want_nodes & ~node_mask.bool()).sum())} dropped that "
             f"should stay).{hint}")
    expect(isinstance(edge_mask, Tensor) and edge_mask.shape == want_edges.shape,
           f"{where}: edge_mask should be a bool tensor of shape {tuple(want_edges.shape)}.")
    if not torch.equal(edge_mask.bool(), want_edges):
        into_logits = (nodes.kind == LOGIT)[:, None] & (edge_mask.bool() != want_edges)
        without_w = " Hint: an edge's score is Â[t, s] · (influence[t] + w[t]): without w, edges into the logits score 0."
        stale = (" Hint: score the edges on the graph left after node pruning: normalise the pruned adjacency again "
                 "and recompute the influence on it, then Â[t, s] · (influence[t] + w[t]).")
        hint = ""
        if inputs is not None:
            if torch.equal(edge_mask.bool(), _edge_mask_variant(*inputs[:1], nodes, *inputs[1:], recompute=False)):
                hint = stale
            elif torch.equal(edge_mask.bool(), _edge_mask_variant(*inputs[:1], nodes, *inputs[1:], with_w=False)):
                hint = without_w
        if not hint and bool(into_logits.any()):
            hint = without_w
        fail(f"{where}: edge_mask keeps {int(edge_mask.sum())} edges, expected {int(want_edges.sum())}.{hint}")
    assert_tensor(result.cumulative_scores, want_scores, f"{where}: cumulative_scores", rtol=1e-4, atol=1e-6)


@check
def test_prune_graph(prune_graph) -> None:
    """circuit_tracer's prune_graph on course-world graphs at several thresholds, and the hand DAG."""
    from circuit_tracer.graph import prune_graph as ct_prune

    for prompt in PROMPTS:
        _, _, nodes = _prompt(prompt)
        graph = _ct_graph(prompt)
        perm = circuit_tracer_order(nodes)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(len(perm))
        adjacency = _ct_adjacency_ours(prompt)
        for node_threshold, edge_threshold in ((0.8, 0.98), (0.9, 0.8)):
            want = ct_prune(graph, node_threshold, edge_threshold)
            result = prune_graph(adjacency.clone(), nodes, node_threshold, edge_threshold)
            _check_prune(result, want.node_mask[inverse], want.edge_mask[inverse][:, inverse], want.cumulative_scores[inverse],
                         f"prune_graph({prompt}, node_threshold={node_threshold}, edge_threshold={edge_threshold})", nodes,
                         (adjacency, node_threshold, edge_threshold))
    # the hand DAG: at node_threshold 0.5 only the embedding (influence 1 of 2.5625) and f pass; g goes
    hand = _hand_nodes()
    want_nodes = torch.tensor([True, True, False, True])
    want_edges = torch.tensor([[False] * 4, [True, False, False, False], [False] * 4, [False, True, False, False]])
    scores = torch.tensor([1.0, 1.8125, 2.5625, 2.5625]) / 2.5625
    _check_prune(prune_graph(HAND_DAG.clone(), hand, 0.5, 0.98), want_nodes, want_edges, scores,
                 "prune_graph(the hand DAG, node_threshold=0.5)", hand)


# -------------------------------------------------------------------------------------------------
# attribute


@check
def test_attribute(attribute) -> None:
    """End to end against circuit_tracer's attribute on a third prompt."""
    model, transcoders, rm = _world()
    from circuit_tracer import attribute as ct_attribute

    tokens = model.to_tokens("Dallas is a city in the state of")[0]
    result = attribute(model, transcoders, tokens)
    for field in ("tokens", "nodes", "adjacency"):
        expect(hasattr(result, field), f"attribute(...) should return an AttributionGraph with .{field}.")
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        graph = ct_attribute(tokens, rm, batch_size=256, max_n_logits=10, desired_logit_prob=0.95)
    nodes = result.nodes
    expect(isinstance(nodes, GraphNodes) and int((nodes.kind == LOGIT).sum()) == len(graph.logit_targets),
           "attribute(...): the logit nodes differ from circuit_tracer's salient logits.")
    perm = circuit_tracer_order(nodes)
    assert_tensor(result.adjacency[perm][:, perm], graph.adjacency_matrix,
                  "attribute('Dallas is a city in the state of'): the adjacency matrix (in circuit_tracer's order)",
                  check_dtype=False, **_edge_tolerance(graph.adjacency_matrix))
    few = attribute(model, transcoders, _prompt("the Eiffel prompt")[0], max_n_logits=1)  # 5 salient logits by default
    expect(int((few.nodes.kind == LOGIT).sum()) == 1, "attribute(..., max_n_logits=1) should have one logit node: pass "
                                                       "max_n_logits and desired_logit_prob on.")


# -------------------------------------------------------------------------------------------------
# compute_graph_scores


def _hand_scores_graph():
    """[embedding, latent f, error, logit]: f <- embedding 2, logit <- f 3, logit <- error 1."""
    nodes = GraphNodes(torch.tensor([EMBEDDING, LATENT, ERROR, LOGIT]), torch.tensor([-1, 0, 0, 1]),
                       torch.tensor([0, 0, 0, 0]), torch.tensor([5, 10, -1, 5]), torch.tensor([1.0, 2.0, 1.0, 1.0]))
    adjacency = torch.tensor([[0.0, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0], [0, 3, -1, 0]])
    # influence: f 0.75, error 0.25, embedding 0.75 -> replacement 0.75 / 1.0;
    # completeness: weights influence + w = [0.75, 0.75, 0.25, 1]; non-error fractions [1, 1, 1, 0.75]
    return adjacency, nodes, 0.75, (0.75 + 0.75 + 0.25 + 0.75) / 2.75


@check
def test_compute_graph_scores(compute_graph_scores) -> None:
    """A hand graph with an error node, then circuit_tracer's compute_graph_scores on course-world graphs."""
    from circuit_tracer.graph import compute_graph_scores as ct_scores

    adjacency, nodes, replacement, completeness = _hand_scores_graph()
    result = compute_graph_scores(adjacency, nodes)
    expect(isinstance(result, (tuple, list)) and len(result) == 2,
           "compute_graph_scores should return (replacement_score, completeness_score).")
    got = tuple(float(x) for x in result)
    where = "compute_graph_scores(hand graph: embedding -> f -> logit, error -> logit)"
    if abs(got[0] - replacement) > 1e-5:
        hint = (" Hint: the replacement score is the embeddings' share, I_emb / (I_emb + I_err), not the errors'."
                if abs(got[0] - (1 - replacement)) < 1e-5 else "")
        fail(f"{where}: replacement score {got[0]:.4f}, expected {replacement:.4f}.{hint}")
    if abs(got[1] - completeness) > 1e-5:
        plain = (1 + 1 + 1 + 0.75) / 4
        no_w = (0.75 + 0.75 + 0.25) / 1.75
        hint = (" Hint: weight each node by influence + logit weight; a plain mean ignores how much a node matters."
                if abs(got[1] - plain) < 1e-5 else
                " Hint: weight by influence + w: without w, the logits (which read the errors directly) count for nothing."
                if abs(got[1] - no_w) < 1e-5 else "")
        fail(f"{where}: completeness score {got[1]:.4f}, expected {completeness:.4f}.{hint}")
    for prompt in PROMPTS:
        _, _, nodes = _prompt(prompt)
        want = ct_scores(_ct_graph(prompt))
        got = tuple(float(x) for x in compute_graph_scores(_ct_adjacency_ours(prompt), nodes))
        expect(all(abs(a - b) < 1e-4 for a, b in zip(got, want)),
               f"compute_graph_scores(graph of {prompt}) gives {got[0]:.4f}, {got[1]:.4f}; circuit_tracer gives "
               f"{want[0]:.4f}, {want[1]:.4f}.")


# -------------------------------------------------------------------------------------------------
# edge_by_hand (bonus)


def _attention_hint(map_through_attn, model, run) -> str:
    """Why the learner's map_through_attn (used by edge_by_hand) is wrong, if it is: "" when it agrees
    with the reference on a vector at every position, or cannot be called."""
    if map_through_attn is None:
        return ""
    v = torch.randn(run.n_pos, model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    layer = 1
    try:
        got = map_through_attn(model, run, v.clone(), layer)
    except Exception:
        return ""
    want = ref.map_through_attn(model, run, v, layer)
    if not isinstance(got, Tensor) or got.shape != want.shape or torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        return ""
    backwards = dataclasses.replace(run, patterns=run.patterns.transpose(-1, -2))
    if torch.allclose(got, ref.map_through_attn(model, backwards, v, layer), rtol=1e-4, atol=1e-5):
        return (" Hint: map_through_attn moves information backwards: run.patterns[layer] is [head, query, key], "
                "so the output at query q sums the values of the keys k <= q (einsum \"hqk,hke->hqe\"); the "
                "pattern was used transposed.")
    return (" Hint: map_through_attn(model, run, v, layer=1) gives other values than the frozen attention "
            "layer: v plus the heads' outputs, each the pattern times (ln1(v) @ W_V), then @ W_O.")


@check
def test_edge_by_hand(edge_by_hand) -> None:
    """Edges of every kind of path against circuit_tracer's matrix."""
    model, transcoders, _ = _world()
    _, run, nodes = _prompt("the Dallas prompt")
    adjacency = _ct_adjacency_ours("the Dallas prompt")
    pairs = []
    for t_mask, s_mask in (
        ((nodes.kind == LATENT) & (nodes.layer == 3), (nodes.kind == LATENT) & (nodes.layer == 0)),
        ((nodes.kind == LATENT) & (nodes.layer == 2), nodes.kind == EMBEDDING),
        (nodes.kind == LOGIT, nodes.kind == ERROR),
        (nodes.kind == LOGIT, nodes.kind == EMBEDDING),
        ((nodes.kind == LATENT) & (nodes.layer == 1), (nodes.kind == LATENT) & (nodes.layer == 0)),
    ):
        block = adjacency[t_mask][:, s_mask]
        cross = nodes.pos[t_mask][:, None] != nodes.pos[s_mask][None, :]
        for candidates in (block * cross, block):
            flat = int(candidates.abs().argmax())
            pairs.append((int(t_mask.nonzero()[flat // block.shape[1], 0]), int(s_mask.nonzero()[flat % block.shape[1], 0])))
    for t, s in pairs:
        got = float(edge_by_hand(model, transcoders, run, nodes, t, s))
        want = float(adjacency[t, s])
        if abs(got - want) <= 1e-4 * abs(want) + 1e-5:
            continue
        layer, pos = int(nodes.layer[t]), int(nodes.pos[t])
        scale = float(run.final_scale[pos] if layer == model.cfg.n_layers else run.ln2_scale[layer, pos])
        hint = _attention_hint(learner_function(edge_by_hand, "map_through_attn"), model, run)
        if hint:
            pass
        elif got == 0 and int(nodes.pos[s]) != pos:
            hint = (" Hint: the source is at another position, and only attention moves it there: apply "
                    "map_through_attn at every layer from the source's layer + 1 to the target's layer.")
        elif abs(got - want * scale) <= 1e-3 * abs(want * scale):
            hint = " Hint: divide by the frozen LayerNorm scale at the target's reading point (ln2, or ln_final for a logit)."
        elif abs(got + want) <= 1e-4 * abs(want):
            hint = " Hint: the sign is wrong."
        fail(f"edge_by_hand(Dallas prompt, target {nodes.describe(t)}, source {nodes.describe(s)}) = {got:.6f}, "
             f"circuit_tracer's edge is {want:.6f}.{hint}")
