# Source of chapter 03. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch03_attribution_graphs.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 03 · Attribution graphs from scratch
#
# Chapter 02 connected two transcoder latents by a dot product: one latent's writing vector
# against the other's reading vector. An **attribution graph** does this for *every* pair of nodes
# on one prompt at once, through attention and across positions, and then keeps the small part of
# the graph that explains the model's answer.
#
# The recipe has four steps, and you will write each of them:
#
# 1. **Linearise** the model around the prompt: freeze its attention patterns and LayerNorm
#    scales, and replace each MLP by its transcoder plus an error term. This *local replacement
#    model* gives exactly the model's output on this prompt, and every quantity inside it is a
#    *linear* function of the nodes' activations.
# 2. **Name the nodes**: token embeddings, active transcoder latents, error terms and the output
#    logits, each with a reading vector (what it reads from the residual stream) and a writing
#    vector (what it adds to it).
# 3. **Compute the edges**: the direct effect of each node on each later node, by backward passes
#    through the frozen model, many nodes at a time.
# 4. **Prune**: weight every node by its influence on the output, and keep the nodes and edges
#    that carry most of it.
#
# Every step is compared with `circuit_tracer`, the library that implements the method of
# [Ameisen et al. (2025)](https://transformer-circuits.pub/2025/attribution-graphs/methods.html),
# run on the same course model and transcoders: your graph must agree with its graph edge by edge.
# Everything runs offline on the course world: a 4-layer model with `d_model = 128` and one
# transcoder per layer (1024 latents each).
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by
# hints (collapsed) and a check cell that prints "✅ ... passed" or says what is wrong.

# %% [module]
from dataclasses import dataclass

import torch
from torch import Tensor

from utils.attribution import EMBEDDING, ERROR, LATENT, LOGIT, GraphNodes, PromptRun, run_prompt, to_circuit_tracer_graph

# %%
import inspect
import time

import plotly.express as px
import plotly.io as pio

import tests  # this chapter's checks: chapters/03_attribution_graphs/tests.py
from utils import attribution
from utils.attribution import circuit_tracer_order
from utils.world import load_model, load_transcoders, replacement_model

torch.set_grad_enabled(False)  # gradients are switched on only where we need them
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"  # plotly's bundled JavaScript: the plots work offline

# %% [markdown]
# ## 1 · The model, the transcoders and the prompt
#
# We load the course model and its four transcoders, and build `circuit_tracer`'s replacement
# model from the same weights (`replacement_model()`, in `utils/world/__init__.py`): that is our
# reference throughout. The prompt is a two-hop question of the course world: the answer needs the
# state that contains the city, then that state's capital. Its sentence form is one of the world's
# *validation* frames: the model never saw a sentence of this shape in training, only the facts.

# %%
model = load_model()
for param in model.parameters():
    param.requires_grad_(False)  # we never train; gradients flow only to the tensors we ask about
transcoders = load_transcoders()
for transcoder in transcoders.values():
    transcoder.requires_grad_(False)
reference_model = replacement_model(model, transcoders)  # circuit_tracer, same weights and transcoders

prompt = "The state containing Dallas has its capital in"
tokens = model.to_tokens(prompt)[0]  # BOS first
print(model.to_str_tokens(tokens))
probs = model(tokens)[0, -1].softmax(-1)
top = probs.topk(3)
print("top next tokens:", [(model.tokenizer.decode([int(i)]), round(float(p), 3)) for p, i in zip(top.values, top.indices)])

# %% [markdown]
# Expected output: 9 tokens, and the model answers ' Austin' with probability {{0.994}}; the
# intermediate hop, ' Texas', comes second with {{0.005}}.
#
# `run_prompt` (in `utils/attribution.py`) runs the model once and keeps everything the local
# replacement model will freeze, plus every transcoder's latents and error. Read it: the fields of
# the `PromptRun` it returns are used everywhere below.

# %%
print(inspect.getsource(attribution.PromptRun))
print(inspect.getsource(attribution.run_prompt))
run = run_prompt(model, transcoders, tokens)
print({name: tuple(value.shape) for name, value in vars(run).items()})

# %% [markdown]
# Two details of `run_prompt`:
#
# - **BOS.** Position 0 holds the BOS token in every prompt. Attention there can only look at
#   itself, so its residual stream is the same on every prompt and says nothing about this one.
#   Like circuit_tracer, we never make nodes of its latents: they are set to 0, and the whole MLP
#   output at BOS goes into the error term there.
# - **The error term.** `errors = mlp_out − decode(latents)`: what the transcoder misses. Adding it
#   back makes the replacement exact.
#
# ## 2 · The local replacement model
#
# A transformer is not linear in its residual stream: attention patterns come from a softmax of
# the residual stream, LayerNorm divides by its norm, MLPs are nonlinear. The **local replacement
# model** of one prompt removes all three nonlinearities while keeping the model's output on that
# prompt exactly:
#
# - every **attention pattern** is frozen to its value on the prompt: attention still moves
#   information between positions, but how much it moves no longer depends on what is moved;
# - every **LayerNorm scale** (the root-mean-square LayerNorm divides by, `hook_scale`) is frozen,
#   so LayerNorm becomes "subtract the mean, divide by a constant, multiply by the weight";
# - every **MLP** is replaced by its transcoder *as a function of its latents*: its output is
#   `latents @ W_dec + b_dec + error`, where the latents are given (they are the nodes of the graph),
#   and the error is a constant, detached from everything.
#
# Now the residual stream at every point is the embeddings plus the latents' and errors'
# writing vectors, mixed by fixed linear maps: an affine function of the node activations. Its
# Jacobian with respect to them is the same whatever their values.
#
# ### Exercise: `local_replacement_hooks`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵🔵 · about 20 minutes
#
# Return a list of TransformerLens forward hooks `(hook_name, function)` that turn `model` into the
# local replacement model of `run`'s prompt, with `latent_acts` (shape `(n_layers, n_pos, d_sae)`,
# default `run.latents`) as the latent activations:
#
# - `blocks.{L}.attn.hook_pattern` → `run.patterns[L]`;
# - `blocks.{L}.ln1.hook_scale`, `blocks.{L}.ln2.hook_scale`, `ln_final.hook_scale` → `run.ln1_scale[L]`,
#   `run.ln2_scale[L]`, `run.final_scale`;
# - `blocks.{L}.hook_mlp_out` → `latent_acts[L] @ W_dec + b_dec + run.errors[L]`, with the weights of
#   `transcoders[L]`.
#
# The model will be run on a *batch* of copies of the prompt (`tokens.expand(batch, -1)`), and the
# frozen values have no batch dimension: return `value.expand_as(activation)`. Keep `latent_acts`
# as it is (no `.detach()`): the checks differentiate through it.

# %% [exercise]
def local_replacement_hooks(model, transcoders: dict, run: PromptRun, latent_acts: Tensor | None = None) -> list:
    """Forward hooks that make `model` the local replacement model of `run`'s prompt, its latents set to `latent_acts`."""
    # BEGIN SOLUTION
    latent_acts = run.latents if latent_acts is None else latent_acts

    def frozen(value: Tensor):
        return lambda activation, hook: value.expand_as(activation)

    def replaced_mlp(layer: int):
        transcoder = transcoders[layer]
        return lambda activation, hook: (
            latent_acts[layer] @ transcoder.W_dec + transcoder.b_dec + run.errors[layer]
        ).expand_as(activation)

    hooks = [("ln_final.hook_scale", frozen(run.final_scale))]
    for layer in range(model.cfg.n_layers):
        hooks += [
            (f"blocks.{layer}.attn.hook_pattern", frozen(run.patterns[layer])),
            (f"blocks.{layer}.ln1.hook_scale", frozen(run.ln1_scale[layer])),
            (f"blocks.{layer}.ln2.hook_scale", frozen(run.ln2_scale[layer])),
            (f"blocks.{layer}.hook_mlp_out", replaced_mlp(layer)),
        ]
    return hooks
    # END SOLUTION


# %% [hint]
# The local replacement model freezes, at the values recorded in `run`, everything that is not
# linear: every attention pattern and every LayerNorm scale (`ln1`, `ln2`, `ln_final`). It also
# replaces each MLP's output by what the transcoder reconstructs from the given latents, plus the
# recorded error, so that the output is exactly the real MLP's on this prompt. Each of these is a
# forward hook that returns a fixed tensor and ignores what the model computed.

# %% [hint]
# Beware of closures in a loop over layers: build each hook in a small function (or bind
# `layer=layer` as a default), or every hook sees the last layer. The MLP hook must not use
# `activation` at all; its output is the decoded latents plus `b_dec` plus the error, broadcast to
# the activation's shape with `expand_as`.

# %% [check]
tests.test_local_replacement_hooks(local_replacement_hooks)

# %% [markdown]
# The check ran your hooks three ways: with the prompt's own latents (the logits must equal the
# model's), with the latents scaled by ½ and by 2 (the Jacobian of the logits and of the latents'
# pre-activations with respect to the latents must not change), and with probes after your hooks
# that look at the patterns, scales and MLP outputs (they must not move when the latents move).
#
# Let's see the linearity directly: scale all latents by a factor `s` and watch one logit.

# %%
def answer_logit(latent_acts: Tensor) -> float:
    hooks = local_replacement_hooks(model, transcoders, run, latent_acts)
    return float(model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0, -1, model.to_single_token(" Austin")])


austin = model.to_single_token(" Austin")
print(f"model: {float(run.logits[-1, austin]):.4f}, local replacement: {answer_logit(run.latents):.4f}")
values = {s: answer_logit(s * run.latents) for s in (0.0, 0.5, 1.0, 1.5, 2.0)}
for s, v in values.items():
    print(f"latents × {s}: ' Austin' logit {v:8.4f}")
print(f"second differences (zero for an affine function): "
      f"{[round(values[a] - 2 * values[b] + values[c], 4) for a, b, c in ((0.0, 0.5, 1.0), (1.0, 1.5, 2.0))]}")

# %% [markdown]
# The logit moves along a straight line as the latents are scaled: the second differences are 0
# up to float rounding. In the real model the same scaling would change attention patterns and
# LayerNorm scales, and the line would bend.
#
# ## 3 · Nodes, reading vectors and writing vectors
#
# A node of the graph is something that writes into the residual stream, reads from it, or both:
#
# | node | one per | reads (at) | writes (at) | activation |
# |---|---|---|---|---|
# | embedding | position | – | `W_E[token]` (`hook_embed`) | 1 |
# | latent | active latent at a layer and position | `W_enc[:, i]` (`ln2.hook_normalized`) | `W_dec[i]` (`hook_mlp_out`) | its activation |
# | error | layer and position | – | `run.errors[L, pos]` (`hook_mlp_out`) | 1 (0 at BOS) |
# | logit | salient output token | `W_U[:, t] − mean of W_U's columns` (after `ln_final`, last position) | – | its probability |
#
# A node's contribution to the residual stream is *activation × writing vector*; a node's input is
# *reading vector · residual stream* at its reading point. Three remarks:
#
# - The latents read `ln2.hook_normalized`, after LayerNorm's centring and (frozen) scaling. So
#   a latent's **pre-activation** is exactly `W_enc[:, i] · normalized + b_enc[i]`: linear in the
#   residual stream in the local replacement model.
# - A logit is read *after* `ln_final`. We read the logit **minus the mean logit** (the logits'
#   softmax does not change if all of them move together), whence the demeaned unembedding column.
# - The positional embedding is not a node: like the biases (`b_enc`, `b_dec`, attention's `b_O`,
#   LayerNorm's bias) it is the same on every prompt, a constant of the linearised model that is
#   not attributed to anything. circuit_tracer makes the same choice.
#
# The nodes of a graph are stored in a `GraphNodes` (in `utils/attribution.py`): five tensors with one
# entry per node.

# %%
print(inspect.getsource(attribution.GraphNodes)[:1200])

# %% [markdown]
# ### Exercise: `node_vectors`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 15 minutes
#
# Return `(reading, writing)`, two `(n_nodes, d_model)` tensors, following the table: zeros where a
# node does not read (embeddings, errors) or does not write (logits). Writing vectors are *not*
# multiplied by the activation. Index with masks (`nodes.kind == LATENT`, `nodes.layer == L`) rather
# than looping over nodes: graphs have thousands of nodes.

# %% [exercise]
def node_vectors(model, transcoders: dict, run: PromptRun, nodes: GraphNodes) -> tuple[Tensor, Tensor]:
    """(reading, writing) vectors of every node, each (n_nodes, d_model)."""
    # BEGIN SOLUTION
    reading = torch.zeros(len(nodes), model.cfg.d_model)
    writing = torch.zeros(len(nodes), model.cfg.d_model)
    kind, layer, pos, index = nodes.kind, nodes.layer, nodes.pos, nodes.index
    embedding = kind == EMBEDDING
    writing[embedding] = model.W_E[index[embedding]]
    for L, transcoder in transcoders.items():
        latent = (kind == LATENT) & (layer == L)
        reading[latent] = transcoder.W_enc[:, index[latent]].T
        writing[latent] = transcoder.W_dec[index[latent]]
        error = (kind == ERROR) & (layer == L)
        writing[error] = run.errors[L, pos[error]]
    logit = kind == LOGIT
    reading[logit] = (model.W_U[:, index[logit]] - model.W_U.mean(dim=1, keepdim=True)).T
    return reading, writing
    # END SOLUTION


# %% [hint]
# Each kind of node interacts with the residual stream in its own way. A token embedding writes its
# token's embedding row and reads nothing. A latent reads its encoder direction and writes its
# decoder direction. An error node writes the recorded error at its layer and position and reads
# nothing. A logit reads its unembedding column, taken relative to the average over the vocabulary,
# and writes nothing. Fill each kind's rows with boolean masks; every other row stays zero.

# %% [hint]
# Latent `i` of `transcoders[L]` reads column `i` of `W_enc` (shape `(d_model, d_sae)`, so
# transpose) and writes row `i` of `W_dec`. The mean to subtract from a logit's unembedding column
# is over the vocabulary: `model.W_U.mean(dim=1, keepdim=True)` has shape `(d_model, 1)`.

# %% [check]
tests.test_node_vectors(node_vectors)

# %% [markdown]
# ## 4 · Which logits?
#
# The output is a distribution over the vocabulary; we attribute only its most likely tokens: the
# **salient logits**, the fewest top tokens whose probabilities add up to `desired_logit_prob`
# (0.95 by default), and never more than `max_n_logits` (10).
#
# ### Exercise: `compute_salient_logits`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# Given the last position's logits `(d_vocab,)` and `W_U` `(d_model, d_vocab)`, return
# `(token_ids, probabilities, reading_vectors)`: the salient tokens from most to least likely,
# their probabilities and their demeaned unembedding columns `(n, d_model)`.
#
# Hand example: probabilities `[0.5, 0.3, 0.12, 0.08]` give 4 tokens at 0.95 (the first three only
# reach 0.92), 3 at 0.9, and 2 with `max_n_logits=2`.

# %% [exercise]
def compute_salient_logits(logits: Tensor, W_U: Tensor, max_n_logits: int = 10,
                           desired_logit_prob: float = 0.95) -> tuple[Tensor, Tensor, Tensor]:
    """(token ids, probabilities, demeaned unembedding columns) of the salient logits, most likely first."""
    # BEGIN SOLUTION
    top = logits.softmax(dim=-1).topk(min(max_n_logits, len(logits)))
    n = min(int((top.values.cumsum(0) < desired_logit_prob).sum()) + 1, len(top.values))
    ids = top.indices[:n]
    return ids, top.values[:n], (W_U[:, ids] - W_U.mean(dim=1, keepdim=True)).T
    # END SOLUTION


# %% [hint]
# The graph explains only the logits that matter: the most likely next tokens, taken in order of
# probability until together they reach `desired_logit_prob`, but never more than `max_n_logits`.
# Return their ids, their probabilities, and their unembedding columns with the vocabulary mean
# subtracted, one row per token.

# %% [hint]
# Candidates come from the softmax's `topk`. The off-by-one: keep one more than the number of
# cumulative sums still *below* the target (the token that crosses it is kept), capped at the
# number of candidates.

# %% [check]
tests.test_compute_salient_logits(compute_salient_logits)

# %% [markdown]
# ## 5 · Building the nodes
#
# The order of the nodes matters. A node can only affect nodes that read *after* it writes:
# an embedding affects everything, a latent or error of layer `L` affects latents of later layers
# and the logits. If the nodes are sorted **topologically**, every edge `A[target, source]` has
# `source < target`: the adjacency matrix is *strictly lower-triangular*. We use this order:
#
# 1. the embeddings, by position;
# 2. for each layer `L` in turn: its active latents, sorted by position then latent id, then its
#    `n_pos` error nodes, by position;
# 3. the salient logits, most likely first.
#
# ### Exercise: `build_graph_nodes`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 15 minutes
#
# Build the `GraphNodes` of `run`'s prompt in that order, with the `layer`, `pos`, `index` and
# `activation` conventions of the table above (`layer` is -1 for embeddings and `n_layers` for
# logits; `index` is -1 for errors). Dtypes: long for the first four fields, float32 for
# `activation`. `run.latents[L].nonzero(as_tuple=True)` lists the active latents in the right order.

# %% [exercise]
def build_graph_nodes(model, run: PromptRun, max_n_logits: int = 10, desired_logit_prob: float = 0.95) -> GraphNodes:
    """The nodes of the prompt's graph, in topological order (embeddings, per layer latents then errors, logits)."""
    # BEGIN SOLUTION
    n_layers, n_pos = run.latents.shape[:2]
    positions = torch.arange(n_pos)
    parts = []

    def add(kind: int, layer: int, pos: Tensor, index: Tensor, activation: Tensor) -> None:
        parts.append((torch.full((len(pos),), kind), torch.full((len(pos),), layer), pos, index, activation.float()))

    add(EMBEDDING, -1, positions, run.tokens, torch.ones(n_pos))
    for layer in range(n_layers):
        pos, latent = run.latents[layer].nonzero(as_tuple=True)
        add(LATENT, layer, pos, latent, run.latents[layer][pos, latent])
        add(ERROR, layer, positions, torch.full((n_pos,), -1), (positions > 0).float())
    ids, probs, _ = compute_salient_logits(run.logits[-1], model.W_U, max_n_logits, desired_logit_prob)
    add(LOGIT, n_layers, torch.full((len(ids),), n_pos - 1), ids, probs)
    return GraphNodes(*(torch.cat(field) for field in zip(*parts)))
    # END SOLUTION


# %% [hint]
# List the nodes in topological order: one embedding per position; then for each layer its active
# latents (every nonzero entry of that layer's latent activations) followed by one error node per
# position; then the salient logits, all at the last position. Every node carries five fields:
# kind, layer, position, index and activation.

# %% [hint]
# Build each block as five small tensors and `torch.cat` them field by field at the end. Embeddings
# have layer -1 and activation 1; errors have index -1 and activation 1, except at BOS (position
# 0), where it is 0; logits have layer `n_layers` and the probability as activation.

# %% [check]
tests.test_build_graph_nodes(build_graph_nodes)

# %%
nodes = build_graph_nodes(model, run)
for kind, name in attribution.KIND_NAMES.items():
    print(f"{name:>9}: {int((nodes.kind == kind).sum())} nodes")
print("logits:", [nodes.describe(i, model.tokenizer) for i in (nodes.kind == LOGIT).nonzero()[:, 0].tolist()])

# %% [markdown]
# Expected output: 9 embeddings, {{544}} active latents (17 per layer and position on average, BOS
# excluded), 36 error nodes and a single logit, ' Austin', whose probability alone passes 0.95.
#
# ## 6 · Edges by backward passes
#
# The **edge** from a source node `s` to a target node `t` is the direct effect of `s` on `t` in
# the local replacement model:
#
# $$A[t, s] = a_s \; \text{reading}_t^\top \, J_{s \to t} \, \text{writing}_s,$$
#
# where `a_s` is the source's activation and `J` the (constant) Jacobian of the residual stream at
# the target's reading point with respect to the residual stream where `s` writes (at the source's
# position). For a latent
# target, `A[t, s]` is the part of its pre-activation that `s` puts there; the pre-activation is
# the sum of its edges plus constants (biases, positional embeddings, BOS).
#
# *Direct* means through the residual stream and attention only: every MLP is frozen, so a path
# through a latent in between is not part of this edge (it is two edges). That is why the MLP
# outputs of the local replacement model are constants for gradients.
#
# One backward pass gives a whole **row** of `A`: put the target's reading vector as the gradient
# at its reading point, and the gradient that arrives where each source writes, dotted with its
# writing vector and times its activation, is `A[t, s]` for every source at once. With a batch of
# `B` copies of the prompt, `B` rows come from one backward pass: copy `b` carries target `b`.
#
# ### Exercise: `compute_attribution_matrix`
#
# > Difficulty: 🔴🔴🔴🔴⚪ · Importance: 🔵🔵🔵🔵🔵 · about 40 minutes
#
# Return the `(n_nodes, n_nodes)` matrix `A[target, source]` (zero rows for embeddings and errors,
# which read nothing). The plan:
#
# 1. Forward **once** under your `local_replacement_hooks` on `run.tokens.expand(B, -1)`, with
#    `B = min(batch_size, n_targets)`, under `torch.enable_grad()` (this notebook switches gradients
#    off globally, so the backward passes need it too), with extra hooks added *after* them that:
#    - at `hook_embed` and each `blocks.{L}.hook_mlp_out`, replace the activation by a leaf,
#      `activation.detach().requires_grad_(True)`, and keep it: the gradients are read there;
#    - at each `blocks.{L}.ln2.hook_normalized`, keep the activation: the latents read there.
#
#    Use `model.hooks(fwd_hooks=...)` as a context manager, run `model(..., stop_at_layer=n_layers)`
#    and apply `model.ln_final` to its output yourself: that is where the logits read.
# 2. For each batch of up to `B` target nodes (latents and logits): the objective is the sum over
#    `b` of `reading[t_b] · point[b, pos_{t_b}]`, where `point` is the reading point of `t_b`'s layer.
#    `torch.autograd.grad(objective, leaves, retain_graph=True, allow_unused=True)` gives the
#    gradient at every writing point (`None` where nothing reached).
# 3. For the sources that write at a leaf (embeddings at `hook_embed`, layer `L`'s latents and
#    errors at `hook_mlp_out` of layer `L`): `A[t_b, s] = grad[b, pos_s] · writing[s] × activation[s]`.

# %% [exercise]
def compute_attribution_matrix(model, transcoders: dict, run: PromptRun, nodes: GraphNodes,
                               batch_size: int = 256) -> Tensor:
    """A[target, source]: the direct effect of every node on every node, in target pre-activation units."""
    # BEGIN SOLUTION
    n_layers = model.cfg.n_layers
    reading, writing = node_vectors(model, transcoders, run, nodes)
    writing = writing * nodes.activation[:, None]
    targets = ((nodes.kind == LATENT) | (nodes.kind == LOGIT)).nonzero()[:, 0]
    adjacency = torch.zeros(len(nodes), len(nodes))
    if len(targets) == 0:
        return adjacency
    batch = min(batch_size, len(targets))

    leaves, points = {}, {}
    writers = ["hook_embed"] + [f"blocks.{layer}.hook_mlp_out" for layer in range(n_layers)]

    def make_leaf(activation, hook):
        leaves[hook.name] = leaf = activation.detach().requires_grad_(True)
        return leaf

    def keep_point(activation, hook):
        points[hook.layer()] = activation

    hooks = local_replacement_hooks(model, transcoders, run)
    hooks += [(name, make_leaf) for name in writers]
    hooks += [(f"blocks.{layer}.ln2.hook_normalized", keep_point) for layer in range(n_layers)]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        residual = model(run.tokens.expand(batch, -1), stop_at_layer=n_layers)
        points[n_layers] = model.ln_final(residual)  # where the logits read

    # The sources that write at each leaf: embeddings (layer -1) at hook_embed, layer L's latents and
    # errors at its hook_mlp_out. Within a leaf they come in runs of equal position; one small matrix
    # product per run gives the edges of all its sources for the whole batch of targets.
    sources = []
    for layer in range(-1, n_layers):
        ids = ((nodes.layer == layer) & (nodes.kind != LOGIT)).nonzero()[:, 0]
        positions, counts = torch.unique_consecutive(nodes.pos[ids], return_counts=True)
        ends = counts.cumsum(0).tolist()
        runs = [(p, ids[end - n : end]) for p, n, end in zip(positions.tolist(), counts.tolist(), ends)]
        sources.append([(p, run, writing[run].T) for p, run in runs])
    leaf_list = [leaves[name] for name in writers]

    edges = torch.zeros(len(targets), len(nodes))  # one row per target
    for start in range(0, len(targets), batch):
        rows = targets[start : start + batch]
        with torch.enable_grad():
            objective = 0.0
            for layer in nodes.layer[rows].unique().tolist():
                b = (nodes.layer[rows] == layer).nonzero()[:, 0]
                objective = objective + (points[layer][b, nodes.pos[rows[b]]] * reading[rows[b]]).sum()
            grads = torch.autograd.grad(objective, leaf_list, retain_graph=True, allow_unused=True)
        for grad, runs in zip(grads, sources):
            if grad is None:
                continue
            grad = grad[: len(rows)]
            for p, run, vectors in runs:
                edges[start : start + len(rows), run] = grad[:, p] @ vectors
    adjacency[targets] = edges
    return adjacency
    # END SOLUTION


# %% [hint]
# Every edge is a gradient in the local replacement model, where everything nonlinear is frozen so
# the model is linear in what the nodes write. For a target, take the dot product of its reading
# vector with the residual stream where it reads (after the LayerNorm), backpropagate it to the
# places where sources write (the embedding hook and each layer's MLP output), and dot the gradient
# at each source's position with that source's writing vector times its activation. To do many
# targets at once, run a batch of copies of the prompt and give each copy one target, so one
# backward pass gives one row of edges per copy.

# %% [hint]
# Keep the leaves (detached `hook_embed` and `hook_mlp_out`, with `requires_grad`) in a dict filled
# by a hook, and the reading points (`ln2.hook_normalized`, keyed by `hook.layer()`, plus
# `ln_final` of the final residual for logits). Targets of different layers can share a batch: add
# one term to the objective per layer present. For the sources at one leaf, an einsum
# `"bsd,sd->bs"` of the gradient at their positions with their scaled writing vectors gives their
# edges.

# %% [check]
tests.test_compute_attribution_matrix(compute_attribution_matrix)

# %% [markdown]
# The check compared your matrix with circuit_tracer's on this prompt and another (every edge, to a
# relative 1e-4), with a single edge computed by hand, and with interventions: raising a source
# latent's activation by δ in the local replacement model moves a target's pre-activation by
# δ · A[t, s] / a_s.
#
# Let's do the comparison in the open. circuit_tracer orders its nodes [latents, errors,
# embeddings, logits]; `circuit_tracer_order` gives the permutation from ours.

# %%
start = time.perf_counter()
adjacency = compute_attribution_matrix(model, transcoders, run, nodes)
ours_s = time.perf_counter() - start

from circuit_tracer import attribute as ct_attribute  # noqa: E402

start = time.perf_counter()
with torch.enable_grad():  # circuit_tracer's backward passes need gradients on
    ct_graph = ct_attribute(tokens, reference_model, batch_size=256)
ct_s = time.perf_counter() - start
perm = circuit_tracer_order(nodes)
difference = (adjacency[perm][:, perm] - ct_graph.adjacency_matrix).abs().max()
print(f"{len(nodes)} nodes; largest |edge| {adjacency.abs().max():.3f}; "
      f"largest difference from circuit_tracer {difference:.1e}")
print(f"strictly lower-triangular: {bool((adjacency.triu() == 0).all())}; nonzero edges: {int((adjacency != 0).sum())}")
print(f"time: ours {ours_s:.2f} s, circuit_tracer {ct_s:.2f} s (one run each; see benchmarks/attribution.py)")

# %% [markdown]
# Every edge agrees with circuit_tracer to float rounding (differences of a few 1e-6 on edges up to
# {{5.490}}), and the matrix is strictly lower-triangular.
#
# **What is an edge worth?** The edges into a latent add up to its pre-activation, less the
# constants. Let's check on the most active latent of the last layer at the last position.

# %%
last = nodes.kind == LATENT
last &= (nodes.layer == model.cfg.n_layers - 1) & (nodes.pos == len(tokens) - 1)
target = int(torch.where(last, nodes.activation, torch.zeros(())).argmax())
layer, latent = int(nodes.layer[target]), int(nodes.index[target])
tc = transcoders[layer]
pre_activation = float(run.normalized[layer, -1] @ tc.W_enc[:, latent] + tc.b_enc[latent])
print(f"target {nodes.describe(target)}: pre-activation {pre_activation:.3f}, "
      f"sum of its incoming edges {float(adjacency[target].sum()):.3f}")
strongest = adjacency[target].abs().topk(5).indices
for s in strongest.tolist():
    print(f"  {float(adjacency[target, s]):+.3f}  from {nodes.describe(s, model.tokenizer)}")

# %% [markdown]
# The two differ by the constants: `b_enc`, and the biases, positional embeddings and BOS
# contributions that reach the latent. The strongest sources are listed: embeddings and earlier
# latents at the same or earlier positions, and error nodes, which stand for what the transcoders
# miss.
#
# ## 7 · Influence and pruning
#
# The full graph has hundreds of nodes and thousands of edges; most matter little for the answer.
# To rank nodes by how much they matter *for the output*, we
#
# 1. **normalise** the matrix: take absolute values and divide each row by its sum, so each
#    target's incoming edges become fractions adding up to 1 (rows that are all zero stay zero);
# 2. compute each node's **influence** on the logits: with `w` the logits' probabilities (zero on
#    other nodes), the direct influence is `w @ Â`, through one intermediate node `w @ Â²`, and so
#    on: `influence = w @ (Â + Â² + Â³ + ...)`. Because `Â` is strictly lower-triangular it is
#    *nilpotent*: `Â^k = 0` as soon as `k` exceeds the longest path (here `n_layers + 1` edges:
#    embedding, a latent in each layer, logit),
#    so this Neumann series is a finite sum, `w @ ((I − Â)⁻¹ − I)`, computed by multiplying until
#    the term is zero.
#
# A hand example, with nodes `[embedding, latent f, latent g, logit]` (probability 1) and edges
# embedding→f = 2, embedding→g = −1, f→g = 3, f→logit = 1, g→logit = −3. Normalised rows: f gets
# everything from the embedding; g gets ¼ from the embedding and ¾ from f; the logit gets ¼ from f
# and ¾ from g. The terms of the series, written out:
#
# | term | embedding | f | g | logit |
# |---|---|---|---|---|
# | `w Â` | 0 | 0.25 | 0.75 | 0 |
# | `w Â²` | 0.4375 | 0.5625 | 0 | 0 |
# | `w Â³` | 0.5625 | 0 | 0 | 0 |
# | influence | **1** | **0.8125** | **0.75** | 0 |
#
# All the influence ends at the embedding, since every path starts there.
#
# ### Exercise: `normalize_matrix` and `compute_influence`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# `normalize_matrix(A)` returns `|A|` divided by its row sums (clamped below at 1e-10).
# `compute_influence(A, logit_weights, max_iter=1000)` returns the `(n_nodes,)` influence for an
# already normalised `A`; raise a `RuntimeError` if the terms are not all zero after `max_iter`
# multiplications.

# %% [exercise]
def normalize_matrix(adjacency: Tensor) -> Tensor:
    """|A| with each row divided by its sum (rows of zeros stay zero)."""
    # BEGIN SOLUTION
    absolute = adjacency.abs()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)
    # END SOLUTION


# %% [hint]
# Normalise the graph so that each target's incoming edges say what share of its input comes from
# each source, regardless of sign: take magnitudes, then divide every row by its total. A target
# with no incoming edges must keep a row of zeros, not NaN.

# %% [hint]
# Row sums with `keepdim=True` so they divide each row; clamp them away from zero before dividing.

# %% [check]
tests.test_normalize_matrix(normalize_matrix)

# %% [exercise]
def compute_influence(normalized: Tensor, logit_weights: Tensor, max_iter: int = 1000) -> Tensor:
    """w @ (Â + Â² + ...) for a nilpotent Â, summed until the terms vanish."""
    # BEGIN SOLUTION
    term = logit_weights @ normalized
    influence = term.clone()
    for _ in range(max_iter):
        if not term.any():
            return influence
        term = term @ normalized
        influence += term
    raise RuntimeError(f"the influence did not converge in {max_iter} steps: is the matrix nilpotent?")
    # END SOLUTION


# %% [hint]
# A node's influence on the logits is the sum, over paths of every length, of the products of
# normalised edge weights from the logits back to it, weighted by the logit weights. That is `w Â +
# w Â² + w Â³ + ...`; because the graph has no cycles, Â is nilpotent and the terms become exactly
# zero after at most as many steps as the graph is deep. Add terms until one is zero.

# %% [hint]
# Keep a *row vector* and multiply it by the matrix at each step (`term @ normalized`); never form
# `Â²`, which costs n_nodes³ instead of n_nodes². If the terms never vanish within `max_iter`,
# raise rather than return a wrong sum.

# %% [check]
tests.test_compute_influence(compute_influence)

# %% [markdown]
# ### Exercise: `prune_graph`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 25 minutes
#
# Pruning keeps the nodes and edges that carry most of the influence:
#
# 1. **Nodes.** Compute every node's influence on the normalised matrix. Keep the nodes whose
#    influence is at least `find_threshold(influence, node_threshold)` (below): the most influential
#    nodes that together carry `node_threshold` (0.8) of the total. Always keep the embeddings and
#    the logits.
# 2. **Edges.** Zero the rows and columns of dropped nodes, normalise again and compute the influence
#    again, on this pruned matrix. An edge's score is its normalised weight times the influence of
#    its *target* plus the target's logit weight: `Â[t, s] · (influence[t] + w[t])`. Keep the edges
#    with score at least `find_threshold(scores.flatten(), edge_threshold)` (0.98).
# 3. **Orphans.** A latent or error node with no kept outgoing edge goes, and so does a latent with
#    no kept incoming edge; then drop the edges of dropped nodes, and repeat until nothing changes.
#
# Return `PruneResult(node_mask, edge_mask, cumulative_scores)`, where `cumulative_scores[i]` is the
# fraction of the total node influence held by the nodes at least as influential as node `i` (from
# step 1: the sorted influences' cumulative sum over their total, put back in node order).

# %% [module]
def find_threshold(scores: Tensor, fraction: float) -> Tensor:
    """The smallest score among the top scores that together hold `fraction` of the total."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    return ordered[min(int(torch.searchsorted(cumulative, fraction)), len(ordered) - 1)]


@dataclass
class PruneResult:
    node_mask: Tensor  # (n_nodes,) bool
    edge_mask: Tensor  # (n_nodes, n_nodes) bool, [target, source]
    cumulative_scores: Tensor  # (n_nodes,)


# %% [exercise]
def prune_graph(adjacency: Tensor, nodes: GraphNodes, node_threshold: float = 0.8,
                edge_threshold: float = 0.98) -> PruneResult:
    """Keep the nodes and edges that carry most of the influence on the logits."""
    # BEGIN SOLUTION
    weights = nodes.logit_weights
    influence = compute_influence(normalize_matrix(adjacency), weights)
    keep = influence >= find_threshold(influence, node_threshold)
    keep |= (nodes.kind == LOGIT) | (nodes.kind == EMBEDDING)

    pruned = normalize_matrix(adjacency * keep[:, None] * keep[None, :])
    edge_scores = pruned * (compute_influence(pruned, weights) + weights)[:, None]
    edge_mask = edge_scores >= find_threshold(edge_scores.flatten(), edge_threshold)

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
    return PruneResult(keep, edge_mask, cumulative)
    # END SOLUTION


# %% [hint]
# Two rounds of pruning by cumulative influence, then cleaning up. Nodes: compute each node's
# influence on the logits and keep the most influential ones until they carry `node_threshold` of
# the total (`find_threshold`), always keeping logits and embeddings. Edges: re-normalise the graph
# restricted to the kept nodes and score each edge by its weight times how much its target matters
# (its influence plus its logit weight); keep edges the same way with `edge_threshold`. Finally
# drop nodes left dangling, and report each node's cumulative influence share.

# %% [hint]
# Masks broadcast: `adjacency * keep[:, None] * keep[None, :]` zeroes dropped rows and columns;
# `edge_mask.any(dim=0)[s]` says whether source `s` keeps an outgoing edge, `.any(dim=1)[t]`
# whether target `t` keeps an incoming one. Dropping a node can orphan another, so repeat until
# `keep` stops changing: remove the edges of dropped nodes, drop latents and errors without an
# outgoing edge and latents without an incoming one.

# %% [check]
tests.test_prune_graph(prune_graph)

# %% [markdown]
# ### Exercise: `attribute`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# Put the pipeline together: run the prompt, build its nodes, compute the matrix. Return an
# `AttributionGraph` (below), unpruned, as circuit_tracer's `attribute` does.

# %% [module]
@dataclass
class AttributionGraph:
    tokens: Tensor
    nodes: GraphNodes
    adjacency: Tensor  # [target, source], nodes in topological order
    run: PromptRun

    def to_circuit_tracer(self, model):
        """The same graph as a circuit_tracer `Graph` (for its pruning, scores and viewers)."""
        return to_circuit_tracer_graph(model, self.tokens, self.nodes, self.adjacency)


# %% [exercise]
def attribute(model, transcoders: dict, tokens: Tensor, max_n_logits: int = 10, desired_logit_prob: float = 0.95,
              batch_size: int = 256) -> AttributionGraph:
    """The attribution graph of a prompt (a 1-D tensor of token ids starting with BOS), unpruned."""
    # BEGIN SOLUTION
    run = run_prompt(model, transcoders, tokens)
    nodes = build_graph_nodes(model, run, max_n_logits, desired_logit_prob)
    adjacency = compute_attribution_matrix(model, transcoders, run, nodes, batch_size)
    return AttributionGraph(run.tokens, nodes, adjacency, run)
    # END SOLUTION


# %% [hint]
# Chain what you have built: run the prompt once to record everything the replacement model
# freezes, list the graph's nodes, then compute the matrix of direct effects between them, and
# package the result as an `AttributionGraph`.

# %% [hint]
# `run_prompt`, `build_graph_nodes`, `compute_attribution_matrix`, in that order, passing
# `max_n_logits`, `desired_logit_prob` and `batch_size` on.

# %% [check]
tests.test_attribute(attribute)

# %%
graph = attribute(model, transcoders, tokens)
pruned = prune_graph(graph.adjacency, graph.nodes)
kept = graph.nodes[pruned.node_mask]
print(f"kept {int(pruned.node_mask.sum())} of {len(graph.nodes)} nodes and "
      f"{int(pruned.edge_mask.sum())} of {int((graph.adjacency != 0).sum())} edges")
for kind, name in attribution.KIND_NAMES.items():
    print(f"{name:>9}: {int((kept.kind == kind).sum())}")

# %% [markdown]
# Expected output: the pruned graph keeps {{61}} of the {{590}} nodes, of which {{47}} latents, and {{779}}
# of the {{59232}} nonzero edges.
#
# ## 8 · How much do the latents explain?
#
# Error nodes are the part of the computation the transcoders miss. Two scores (both from the
# unpruned graph) say how much of the answer goes through them:
#
# - **replacement score**: of the influence that reaches the inputs (embeddings) or stops at an
#   error node, the fraction that reaches the embeddings, `I_emb / (I_emb + I_err)` with `I` the
#   summed influence of each kind. 1 means every path from the logits back to the tokens runs
#   through latents only.
# - **completeness score**: for each node, the fraction of its (normalised) input that does *not*
#   come from error nodes, `1 − Σ_errors Â[t, e]`, averaged over nodes with weights `influence + w`.
#   It gives partial credit to nodes mostly explained by latents.
#
# ### Exercise: `compute_graph_scores`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# Return `(replacement_score, completeness_score)` as two floats.

# %% [exercise]
def compute_graph_scores(adjacency: Tensor, nodes: GraphNodes) -> tuple[float, float]:
    """(replacement, completeness) scores of an unpruned graph."""
    # BEGIN SOLUTION
    weights = nodes.logit_weights
    normalized = normalize_matrix(adjacency)
    influence = compute_influence(normalized, weights)
    errors = nodes.kind == ERROR
    from_tokens, from_errors = influence[nodes.kind == EMBEDDING].sum(), influence[errors].sum()
    replacement = from_tokens / (from_tokens + from_errors)
    not_from_errors = 1 - normalized[:, errors].sum(dim=1)
    output_weight = influence + weights
    completeness = (not_from_errors * output_weight).sum() / output_weight.sum()
    return float(replacement), float(completeness)
    # END SOLUTION


# %% [hint]
# Both scores ask how much of the graph's explanation goes through the transcoders rather than
# their errors. Replacement: of all the influence on the logits that starts at the graph's inputs
# (token embeddings and error nodes), the share that starts at tokens. Completeness: for each node,
# the share of its normalised input that does not come from error nodes, averaged over nodes with
# weights saying how much each node matters.

# %% [hint]
# Reuse `normalize_matrix` and `compute_influence` with `nodes.logit_weights`; masks on
# `nodes.kind` pick the influences to sum. The weights of the completeness average are `influence +
# nodes.logit_weights`, so that logits count too.

# %% [check]
tests.test_compute_graph_scores(compute_graph_scores)

# %%
replacement, completeness = compute_graph_scores(graph.adjacency, graph.nodes)
print(f"replacement score {replacement:.3f}, completeness score {completeness:.3f}")
print(f"share of the influence reaching an end of the graph that ends at error nodes (1 - replacement): {1 - replacement:.3f}")

# %% [markdown]
# On this prompt the replacement score is {{0.687}}: of the influence that reaches an end of the
# graph, about two thirds reach the tokens through latents and {{0.313}} stops at error nodes. The
# completeness score, {{0.904}}, is higher, because most nodes get only a small part of their input
# from errors.
#
# One prompt is one sample. The cell below counts each kind of node's share of the *total*
# influence (latents in the middle of paths included), and repeats the scores on the same sentence
# about each **held-out city** of the world: the last city of every state, which never appears in a
# two-hop sentence in training.

# %%
from utils.world import facts  # noqa: E402

frame = "The state containing {} has its capital in"
city_pos = 4  # every city of the world is one token, at position 4 of this frame
held_out = facts.TWO_HOP_UNSEEN_CITIES


def influence_shares(g) -> dict:
    """Each kind of node's share of the total influence on the logits."""
    infl = compute_influence(normalize_matrix(g.adjacency), g.nodes.logit_weights)
    return {name: round(float(infl[g.nodes.kind == kind].sum() / infl.sum()), 3) for kind, name in attribution.KIND_NAMES.items()}


print("Dallas, share of the total influence by kind of node:", influence_shares(graph))
rows = []
for city in held_out:
    g = attribute(model, transcoders, model.to_tokens(frame.format(city))[0])
    infl = compute_influence(normalize_matrix(g.adjacency), g.nodes.logit_weights)
    emb = (g.nodes.kind == EMBEDDING).nonzero()[:, 0]
    rows.append((*compute_graph_scores(g.adjacency, g.nodes), influence_shares(g)["error"],
                 int(g.nodes.pos[emb[infl[emb].argmax()]]) == city_pos))
rows = torch.tensor(rows)
for name, column in zip(("replacement score", "completeness score", "error nodes' share"), rows.T[:3]):
    print(f"{len(held_out)} held-out cities, {name:<18}: min {column.min():.3f}, median {column.median():.3f}, max {column.max():.3f}")
print(f"the city is the most influential embedding in {int(rows[:, 3].sum())} of {len(held_out)} held-out-city graphs")

# %% [markdown]
# Error nodes hold {{0.139}} of the total influence on the Dallas graph. Over the {{14}} held-out
# cities the replacement score ranges from {{0.599}} to {{0.740}} (median {{0.685}}) and the error
# nodes' share from {{0.116}} to {{0.199}}: Dallas is a typical prompt, and on each of them between
# a quarter and two fifths of the influence that reaches an end of the graph stops at an error node.
# Whatever the latents show below, they show part of the story. The world's report
# (`python -m utils.world report`) lists the transcoders' quality bars on held-out text.
#
# ## 9 · Reading the graph
#
# Now the payoff. Which nodes does the pruned graph keep, and what are they? We have three ways to
# name a latent without running anything new: its **logit lens** (the tokens its writing vector
# pushes up, `W_dec[i] @ W_U`), its **dashboard** (chapter 02: where it fires in the corpus), and,
# in the course world, the **ground-truth concept** it matches best on the labelled corpus
# (precision: how often it fires on the concept; recall: how much of the concept it covers). The
# planted concepts include the kind of sentence (`two_hop`, `city_pair`, ...) and entities such as
# `city:Dallas`, `in_state:Texas` (tokens of a sentence about a place in Texas), `state:Texas` and
# `capital:Austin`; we show the best concept overall and the best *entity* concept.

# %%
from utils.world.concepts import streamed_concept_scores  # noqa: E402
from utils.world import labelled_corpus  # noqa: E402

corpus = labelled_corpus(n_docs=100)
concept_scores = streamed_concept_scores(model, transcoders, corpus, progress=False)
concepts = concept_scores[0].concepts
entity = torch.tensor([c.split(":")[0] in ("city", "state", "capital", "in_state") for c in concepts])
influence = compute_influence(normalize_matrix(graph.adjacency), graph.nodes.logit_weights)


def best_concepts(i: int) -> list[tuple[str, float, float]]:
    """(concept, precision, recall) of latent node i's best concept and of its best entity concept."""
    layer, latent = int(graph.nodes.layer[i]), int(graph.nodes.index[i])
    scores = concept_scores[layer]
    best = int(scores.f1[:, latent].argmax())
    best_entity = int(torch.where(entity, scores.f1[:, latent], torch.tensor(-1.0)).argmax())
    return [(concepts[c], float(scores.precision[c, latent]), float(scores.recall[c, latent])) for c in (best, best_entity)]


def name_latent(i: int) -> str:
    """Logit lens, best concept and best entity concept of latent node i, as one line."""
    layer, latent = int(graph.nodes.layer[i]), int(graph.nodes.index[i])
    lens = model.to_str_tokens((transcoders[layer].W_dec[latent] @ model.W_U).topk(3).indices)
    return f"lens {lens}; " + "; ".join(f"{c} ({p:.2f}, {r:.2f})" for c, p, r in best_concepts(i))


kept_latents = (pruned.node_mask & (graph.nodes.kind == LATENT)).nonzero()[:, 0]
kept_latents = kept_latents[influence[kept_latents].argsort(descending=True)]
print(f"kept latents by position: {torch.bincount(graph.nodes.pos[kept_latents], minlength=len(tokens)).tolist()}")
print(f"kept latents by layer: {torch.bincount(graph.nodes.layer[kept_latents], minlength=4).tolist()}")
print("\nthe 8 most influential kept latents (influence; logit lens; best concept and best entity (precision, recall)):")
for i in kept_latents[:8].tolist():
    print(f"{graph.nodes.describe(i):<12} {float(influence[i]):.3f}  {name_latent(i)}")
print(f"highest precision of a kept latent's best entity concept: {max(best_concepts(i)[1][1] for i in kept_latents.tolist()):.2f}")
print("\ninfluence of the embeddings:")
for i in (graph.nodes.kind == EMBEDDING).nonzero()[:, 0].tolist():
    print(f"  {graph.nodes.describe(i, model.tokenizer):<22} {float(influence[i]):.3f}")

# %% [markdown]
# Expected output: {{44}} of the {{47}} kept latents sit at the last position (' in'), the other
# three at 'The'; {{23}} of them are in layer 0. Nothing is kept at the city's position. Of the
# inputs, ' Dallas' has the largest influence ({{0.141}}), then ' in' ({{0.119}}) and ' capital'
# ({{0.095}}); section 8 found the city to be the most influential embedding on every held-out-city
# graph as well.
#
# The labels name these latents poorly. The best concept of a kept latent is mostly the kind of
# sentence (`two_hop`, `city_pair`), and its best *entity* concept is never precise: the highest
# precision is {{0.08}}, so each such latent fires mostly on tokens that are not that entity. The
# logit lenses are a mix of place names and unrelated words. Let's look at edges instead:

# %%
def strongest_inputs(t: int, k: int = 4) -> str:
    sources = pruned.edge_mask[t].nonzero()[:, 0]
    sources = sources[graph.adjacency[t, sources].abs().argsort(descending=True)][:k]
    return ", ".join(f"{graph.nodes.describe(s, model.tokenizer)} ({float(graph.adjacency[t, s]):+.2f})"
                     for s in sources.tolist())


for t in kept_latents[:3].tolist() + (graph.nodes.kind == LOGIT).nonzero()[:, 0].tolist():
    print(f"{graph.nodes.describe(t, model.tokenizer)} <- {strongest_inputs(t)}")

# %% [markdown]
# Expected output: the top latent, {{L0 #339 @8}}, gets {{+1.42}} from the ' Dallas' embedding four
# positions back, which can only arrive through layer 0's attention, and {{+1.18}} from ' in'
# itself. The logit ' Austin' gets its largest edges from error nodes at the last position (layer
# 3: {{+2.29}}, layer 0: {{+2.08}}); its strongest latent input, {{L3 #131 @8}}, *lowers* it
# ({{-1.01}}).
#
# The dashboard of the top latent shows where it fires in the corpus:

# %%
from utils.dashboard import display_dashboard  # noqa: E402

top = int(kept_latents[0])
display_dashboard(transcoders[int(graph.nodes.layer[top])], int(graph.nodes.index[top]), model=model, data=corpus)

# %% [markdown]
# ### Where does the state come from?
#
# The graph says: the city is read at the last position, through layer 0's attention. That part of
# the computation, attention, is frozen in the graph, so the graph cannot say which head does it.
# We look at the model itself. First, where layer 0's heads look from the last position:

# %%
run = graph.run
print("layer-0 attention from ' in' (last position) to each position:")
print("        " + " ".join(f"{t!r:>12}" for t in model.to_str_tokens(tokens)))
for head in range(model.cfg.n_heads):
    print(f"  L0H{head}: " + " ".join(f"{float(a):>12.2f}" for a in run.patterns[0][head, -1]))

# %% [markdown]
# Head {{L0H1}} puts {{0.88}} of its attention on ' Dallas'; the other three spread theirs over the
# words of the question. Where a head looks is not what it carries, so we **patch**: run the sentence
# about a held-out city, copy one activation from the same sentence about a city of another state,
# and count how often the answer becomes the other state's capital. Each head of layers 0 and 1 is
# patched in turn at the last position (the other heads are the controls for L0H1), and so are the
# city's embedding and the residual stream at the city's position and at the last position after
# layer 0.

# %%
cities = sorted(facts.CITY_TO_STATE)
city_tokens = torch.stack([model.to_tokens(frame.format(c))[0] for c in cities])  # the same frame for every city
capital_of = {c: model.to_single_token(" " + facts.STATE_TO_CAPITAL[facts.CITY_TO_STATE[c]]) for c in cities}
city_logits, city_cache = model.run_with_cache(city_tokens)
answered = [int(city_logits[k, -1].argmax()) == capital_of[c] for k, c in enumerate(cities)]
print(f"capital top-1 in this frame: {sum(answered)} of {len(cities)} cities, "
      f"{sum(answered[cities.index(c)] for c in held_out)} of {len(held_out)} held-out cities")

sites = {f"L{layer}H{head} output (hook_z) at the last position": (f"blocks.{layer}.attn.hook_z", -1, head)
         for layer in range(2) for head in range(model.cfg.n_heads)}
sites["embedding of the city"] = ("hook_embed", city_pos, None)
sites["residual stream at the city after layer 0"] = ("blocks.1.hook_resid_pre", city_pos, None)
sites["residual stream at the last position after layer 0"] = ("blocks.1.hook_resid_pre", -1, None)


def patched_top1(k: int, donor: int, hook_name: str, pos: int, head: int | None) -> int:
    """Top-1 token of city k's prompt with one activation taken from city `donor`'s prompt."""
    def patch(activation, hook):
        if head is None:
            activation[:, pos] = city_cache[hook_name][donor, pos]
        else:
            activation[:, pos, head] = city_cache[hook_name][donor, pos, head]
        return activation
    return int(model.run_with_hooks(city_tokens[k : k + 1], fwd_hooks=[(hook_name, patch)])[0, -1].argmax())


states = sorted(facts.STATES)
flips, pairs = dict.fromkeys(sites, 0), 0
for n, city in enumerate(held_out):
    others = [s for s in states if s != facts.CITY_TO_STATE[city]]
    for donor_state in (others[(3 * n + r) % len(others)] for r in range(3)):  # 3 other states per city
        donor = facts.STATES[donor_state]["cities"][0]
        pairs += 1
        for site, (hook_name, pos, head) in sites.items():
            flips[site] += patched_top1(cities.index(city), cities.index(donor), hook_name, pos, head) == capital_of[donor]
print(f"\n{pairs} (held-out city, city of another state) pairs: how often the answer becomes the other state's capital")
for site, count in flips.items():
    print(f"  {site:<52} {count:>2} / {pairs}")

# %% [markdown]
# Expected output: the model names the right capital for all cities in this frame
# ({{56 of 56 cities}}), the held-out ones included ({{14 of 14 held-out cities}}). Patching L0H1's
# output at the last position hands the answer to the other state in {{42 / 42}} pairs; no other head of layers 0 and 1 does it once ({{0 / 42}}). Patching the
# city's embedding does it too, and patching the residual stream at the city's position after
# layer 0 never does: from layer 1 on, what sits at the city's position no longer decides the
# answer. One head moves the state, at layer 0, straight from the city's token.
#
# That leaves the question a sceptic asks first: is there a first hop (city → state) computed
# anywhere, or does a city's token embedding already say its state? A control that needs no
# model run: classify each city's embedding by the nearest centroid of the other cities' embeddings
# of each state (the city itself left out).

# %%
from utils.world.mechanisms_model import state_from_embedding  # noqa: E402

lookup = state_from_embedding(model)
print(f"a city's state from its token embedding alone (nearest state centroid, the city left out): "
      f"{lookup['correct']} of {lookup['cities']} (chance {lookup['chance']:.2f})")

# %% [markdown]
# It does, for every city: {{56 of 56}} against a chance level of {{0.07}}. So no first hop needs to
# be computed: the city's embedding already separates the states, L0H1 copies it to the last
# position, and the layers after it produce the capital there. (Whether they build an explicit
# "Texas" on the way, these experiments do not say.) That is why the graph keeps nothing at the
# city's position, and why held-out cities work as well as the others: their embeddings were learned
# from the other sentences that mention them. It is also a warning about the word *two-hop*: a
# prompt that needs two facts need not make a model compute them in two steps. (This is one frame;
# on the world's test frames the two-hop answer is right only about half the time, see
# `python -m utils.world report`.)
#
# ### A "Texas" supernode?
#
# A **supernode** groups latents that you believe play one role. The tempting group here: the kept
# latents whose best entity concept is about Texas. Two checks before believing in it. Is each
# member about Texas, i.e. does it fire, at the last position of this same sentence, for Texas cities
# and not for other states' cities? And does removing the group matter more than removing a random
# group of the same size? We remove a group by subtracting what its members write
# (`activation × W_dec`) from their layers' MLP outputs at the last position, in the real model,
# and read P(capital); the random groups are 50 draws of as many other kept latents at the last
# position.

# %%
texas = [i for i in kept_latents.tolist() if "Texas" in best_concepts(i)[1][0]]
texas_cities = [cities.index(c) for c in facts.STATES["Texas"]["cities"]]
other_cities = [k for k in range(len(cities)) if k not in texas_cities]
acts_last = torch.stack([transcoders[layer].encode(city_cache[f"blocks.{layer}.ln2.hook_normalized"][:, -1])
                         for layer in range(model.cfg.n_layers)], 1)  # (cities, n_layers, d_sae)


def fires(i: int) -> Tensor:
    """For each city, whether latent node i's latent is active at the last position of its sentence."""
    return acts_last[:, int(graph.nodes.layer[i]), int(graph.nodes.index[i])] > 0


print(f"{len(texas)} kept latents have a Texas entity as best entity concept; each fires on:")
for i in texas:
    print(f"  {graph.nodes.describe(i):<12} {best_concepts(i)[1][0]:<16} Texas cities {int(fires(i)[texas_cities].sum())} / "
          f"{len(texas_cities)}, other states' cities {int(fires(i)[other_cities].sum())} / {len(other_cities)}")
last_kept = [i for i in kept_latents.tolist() if int(graph.nodes.pos[i]) == len(tokens) - 1]
specific = [i for i in last_kept if fires(i)[texas_cities].float().mean() >= 0.5 and fires(i)[other_cities].float().mean() <= 0.1]
print(f"kept latents at the last position firing on >= half the Texas cities and <= 10% of the others: "
      f"{[graph.nodes.describe(i) for i in specific]}, of which {sum(bool(fires(i)[cities.index('Amarillo')]) for i in specific)} "
      f"of {len(specific)} fire for Amarillo")


def p_capital_without(city: str, group: list[int]) -> float:
    """P(capital) for `city` when the group's latents stop writing at the last position (the rest recomputes)."""
    k, hooks = cities.index(city), []
    for layer in range(model.cfg.n_layers):
        ids = [int(graph.nodes.index[i]) for i in group if int(graph.nodes.layer[i]) == layer]
        if ids:
            written = acts_last[k, layer, ids] @ transcoders[layer].W_dec[ids]

            def remove(activation, hook, written=written):
                activation[:, -1] -= written
                return activation
            hooks.append((f"blocks.{layer}.hook_mlp_out", remove))
    return float(model.run_with_hooks(city_tokens[k : k + 1], fwd_hooks=hooks)[0, -1].softmax(-1)[capital_of[city]])


generator = torch.Generator().manual_seed(0)
for name, group in (("labelled Texas", texas), ("Texas-specific", specific)):
    rest = [i for i in last_kept if i not in group]
    for city in ("Dallas", "Amarillo"):  # Amarillo: held out
        draws = torch.tensor([p_capital_without(city, [rest[j] for j in torch.randperm(len(rest), generator=generator)[: len(group)].tolist()])
                              for _ in range(50)])
        q = draws.quantile(torch.tensor([0.1, 0.5, 0.9]))
        removed = p_capital_without(city, group)
        print(f"{name} group ({len(group)}), {city}: P(capital) {p_capital_without(city, []):.3f} -> {removed:.3f}; "
              f"50 random groups: 10th/50th/90th percentile {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}, "
              f"{int((draws < removed).sum())} of 50 lower")

# %% [markdown]
# Expected output: the label-based group has {{8}} members, and it is not a Texas group. Five of them
# fire on all four Texas cities but also on {{20 / 52}} to {{49 / 52}} of the other states' cities;
# the two that fire on few other cities ({{8 / 52}} and {{9 / 52}}) miss half of the Texas cities.
# Removing all eight leaves P(' Austin') almost where it was ({{0.994 -> 0.983}} for Dallas,
# {{0.990 -> 0.988}} for the held-out Amarillo), a smaller drop than half the random groups of eight
# other kept latents give ({{26 of 50}} random groups end lower for Dallas, {{41 of 50}} for
# Amarillo). Random groups can hurt (their 10th percentile is {{0.795}} for Dallas), so some kept
# latents matter; the Texas label does not tell which.
#
# The specificity screen finds five kept latents that do prefer Texas cities, none of them in the
# labelled group. Removing them lowers P(' Austin') for Dallas to {{0.969}}, more than most random
# groups of five do (only {{9 of 50}} end lower), and does nothing for Amarillo
# ({{0.990 -> 0.990}}), for which only {{1 of 5}} of them fires. The screen was chosen on the
# same sentences, so neither figure is a held-out test. What the evidence supports: the answer does
# not rest on a small set of Texas latents at the last position. The state arrives there through
# L0H1, and the transcoders spread what happens next over latents that also fire for other states,
# and over error nodes.

# %% [markdown]
# ### The graph, to explore
#
# `explore_graph` (in `utils/graph_explorer.py`) draws a pruned graph offline: one column per
# position, one row per layer, edges blue (excite) or red (inhibit) with width growing with the
# weight. Hover over a latent for its activation, influence, best concept and top examples; click
# it to highlight its strongest paths to the logits. It takes a circuit_tracer `Graph`, so we convert
# ours (`AttributionGraph.to_circuit_tracer`, which permutes our nodes into circuit_tracer's order):
# the explorer then prunes it with circuit_tracer's own `prune_graph`, which keeps exactly the nodes
# yours kept. A supernode's edges are the sums of its members' edges; we draw the labelled group
# as one, knowing now what it is worth.

# %%
from utils.graph_explorer import explore_graph  # noqa: E402

ct_view_graph = graph.to_circuit_tracer(model)
texas_ids = [f"{int(graph.nodes.layer[i])}_{int(graph.nodes.index[i])}_{int(graph.nodes.pos[i])}" for i in texas]
view = explore_graph(ct_view_graph, node_threshold=0.8, edge_threshold=0.98, supernodes={"labelled Texas": texas_ids},
                     title="The state containing Dallas has its capital in", n_docs=len(corpus.tokens))
view

# %% [markdown]
# `view.save("dallas_graph.html")` writes a standalone page you can open in any browser, and
# `view.export_circuit_tracer_json(folder, "dallas")` the JSON files circuit_tracer's own viewer reads.
#
# ### Your hypothesis
#
# Write down, in a few lines, the circuit you believe this prompt runs, from the graph and the
# experiments above. Some questions to answer: where is the city read from (which position, which
# head)? Where is the state, and how would you tell a state *representation* from a state
# *computation*? Which latents carry the answer at the last position, and how would you test that a
# group of them matters more than a random group of the same size? How much of the answer is left to
# error nodes, and what does that do to any claim about latents? Name latents by their
# `L{layer} #{id} @{pos}` labels.
#
# Chapter 04 tests such hypotheses with interventions on many prompts.
#
# *Hypothesis (yours):* ...
#
# ## 10 · Bonus: the same edges by hand
#
# An edge is a product of linear maps. Starting from the source's `activation × writing vector` at
# its position, follow the residual stream up to the target's reading point:
#
# - `map_through_ln(v, scale, weight)`: frozen LayerNorm, `(v − mean(v)) / scale × weight`
#   (the bias is a constant, so it drops out);
# - `map_through_attn(v, layer)`: `v` is a `(n_pos, d_model)` change of the residual stream; attention
#   adds `Σ_heads pattern[h] @ (map_through_ln(v) @ W_V[h]) @ W_O[h]` to it (frozen pattern, ln1's
#   frozen scale and weight; no biases);
# - `map_through_mlp(v, layer)`: in the local replacement model the MLP output is frozen, so the MLP
#   adds nothing: `v` passes through on the residual stream unchanged.
#
# A source writing after the MLP of layer `l` (latents and errors) passes through the attention
# of layers `l+1 … L` and the MLPs of layers `l+1 … L−1` to reach a latent of layer `L`, which reads
# `(v − mean(v)) / ln2_scale` at its position; an embedding starts before layer 0's attention; a
# logit reads after every layer, through `ln_final` (frozen scale, times its weight).
#
# ### Exercise (bonus): `edge_by_hand`
#
# > Difficulty: 🔴🔴🔴🔴⚪ · Importance: 🔵🔵⚪⚪⚪ · about 30 minutes
#
# Return `A[target, source]` for one pair of node indices, computed this way, without autograd.

# %% [exercise]
def map_through_ln(v: Tensor, scale: Tensor, weight: Tensor) -> Tensor:
    """A frozen LayerNorm: centre, divide by the frozen scale, multiply by the weight (no bias)."""
    # BEGIN SOLUTION
    return (v - v.mean(dim=-1, keepdim=True)) / scale * weight
    # END SOLUTION


def map_through_attn(model, run: PromptRun, v: Tensor, layer: int) -> Tensor:
    """The change (n_pos, d_model) of the residual stream after layer `layer`'s attention, frozen."""
    # BEGIN SOLUTION
    block = model.blocks[layer]
    x = map_through_ln(v, run.ln1_scale[layer], block.ln1.w)
    values = torch.einsum("pd,hde->hpe", x, block.attn.W_V)
    moved = torch.einsum("hqp,hpe->hqe", run.patterns[layer], values)
    return v + torch.einsum("hqe,hed->qd", moved, block.attn.W_O)
    # END SOLUTION


def map_through_mlp(model, run: PromptRun, v: Tensor, layer: int) -> Tensor:
    """The change of the residual stream after layer `layer`'s (frozen) MLP."""
    # BEGIN SOLUTION
    return v
    # END SOLUTION


def edge_by_hand(model, transcoders: dict, run: PromptRun, nodes: GraphNodes, target: int, source: int) -> float:
    """A[target, source] by following the source's writing vector through the frozen layers."""
    # BEGIN SOLUTION
    n_layers = model.cfg.n_layers
    reading, writing = node_vectors(model, transcoders, run, nodes)
    v = torch.zeros(run.n_pos, model.cfg.d_model)
    v[int(nodes.pos[source])] = nodes.activation[source] * writing[source]
    src_layer, tgt_layer = int(nodes.layer[source]), int(nodes.layer[target])
    for layer in range(src_layer + 1, tgt_layer + 1 if tgt_layer < n_layers else n_layers):
        v = map_through_attn(model, run, v, layer)
        if layer < tgt_layer:
            v = map_through_mlp(model, run, v, layer)
    pos = int(nodes.pos[target])
    if tgt_layer == n_layers:
        read = map_through_ln(v[pos], run.final_scale[pos], model.ln_final.w)
    else:
        read = map_through_ln(v[pos], run.ln2_scale[tgt_layer, pos], torch.ones(()))
    return float(read @ reading[target])
    # END SOLUTION


# %% [hint]
# A direct effect can be followed by hand, because in the local replacement model every layer is
# linear in a change to the residual stream. Put the source's contribution (its activation times
# its writing vector) at its position in an otherwise zero residual stream, and carry that change
# forward layer by layer: through each attention layer with its frozen LayerNorm scale and frozen
# patterns, while an MLP passes it on unchanged (its output is fixed by the frozen latents and
# errors). Stop where the target reads, put the change through the target's frozen LayerNorm at its
# position, and dot it with the target's reading vector.

# %% [hint]
# An embedding starts before layer 0 (its layer is -1), so the loop starts at the source layer + 1
# in every case; it includes the target layer's attention but not its MLP. A latent reads after
# `ln2` with its scale only (weight 1); a logit reads after `ln_final`, with its weight. For
# attention, with `x` the frozen-LN input: values `einsum("pd,hde->hpe", x, W_V)`, then mixed by
# the pattern over source positions, then through `W_O`, added to `v`.

# %% [check]
tests.test_edge_by_hand(edge_by_hand)

# %%
t = int((nodes.kind == LOGIT).nonzero()[0, 0])
s = int(adjacency[t].abs().argmax())
print(f"{nodes.describe(s, model.tokenizer)} -> {nodes.describe(t, model.tokenizer)}: "
      f"by hand {edge_by_hand(model, transcoders, run, nodes, t, s):+.5f}, by backward pass {float(adjacency[t, s]):+.5f}")
