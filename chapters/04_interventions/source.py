# Source of chapter 04. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch04_interventions.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 04 · Circuits and interventions with circuit-tracer
#
# Chapter 03 built an attribution graph by hand and ended with a hypothesis about the two-hop
# prompt "The state containing Dallas has its capital in": some latents carry "Texas", and they
# push ' Austin'. A graph is a *linear* account of one forward pass, so a hypothesis read off it is
# only a guess until we change the model and watch the answer move. This chapter uses
# `circuit_tracer` itself, on the course model and its transcoders, to:
#
# 1. attribute a prompt and read the `Graph` it returns;
# 2. group latents into **supernodes**, by hand and from the course world's ground-truth labels,
#    and look at the graph one supernode at a time;
# 3. **ablate** a supernode (set its latents to 0, or to −2× their value) after predicting what
#    that will do, with attention frozen or free;
# 4. **swap** the latents that distinguish two prompts: put a California prompt's latents into the
#    Dallas prompt and see whether the model says ' Sacramento', over many pairs of cities.
#
# An intervention here is circuit_tracer's tuple `(layer, position, latent, value)`: during the
# forward pass, that transcoder latent's activation at that position is replaced by `value`, and
# everything downstream is recomputed (the MLP output changes by `(value − a) · W_dec[latent]`).
# The helpers in `utils/interventions.py` run them on one prompt (read them: they are short).
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by
# hints (collapsed) and a check cell that prints "✅ ... passed" or says what is wrong. Numbers and
# latent ids in this text are those the solution notebook prints on the shipped course world (a
# test checks that each is still printed); trust the printed values if the world is retrained.

# %% [module]
from dataclasses import dataclass

import torch
from torch import Tensor

from utils.interventions import next_token_probs


@dataclass(frozen=True)
class GraphLatent:
    """One transcoder latent node of a circuit_tracer `Graph`."""

    node: int  # its row and column in graph.adjacency_matrix
    layer: int
    pos: int
    latent: int  # index in the layer's transcoder
    activation: float
    influence: float  # on the logits (circuit_tracer's influence, see chapter 03)

    @property
    def label(self) -> str:
        return f"L{self.layer} #{self.latent} @{self.pos}"


def acts_at(rm, tokens: Tensor, pos: int) -> Tensor:
    """Every transcoder latent of the replacement model `rm` at position `pos` of `tokens`, (n_layers, d_transcoder)."""
    _, acts = rm.get_activations(tokens)
    return acts[:, pos]


def logit_weights(graph) -> Tensor:
    """Per node of `graph`: the probability of each logit node, 0 elsewhere (where influence starts)."""
    weights = torch.zeros(len(graph.adjacency_matrix))
    weights[-len(graph.logit_targets):] = graph.logit_probabilities
    return weights

# %%
import tempfile
import warnings
from pathlib import Path

import plotly.express as px
import plotly.io as pio
from tabulate import tabulate

import tests  # this chapter's checks: chapters/04_interventions/tests.py
from utils.interventions import generate_with_interventions
from utils.world import labelled_corpus, load_model, load_transcoders, replacement_model

torch.set_grad_enabled(False)  # we never train; attribute() below needs them, inside torch.enable_grad()
warnings.filterwarnings("ignore", message=".*non-leaf Tensor.*")  # circuit_tracer's backward, harmless
warnings.filterwarnings("ignore", message=".*Full backward hook.*")  # the same backward, also harmless
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"  # plotly's bundled JavaScript: the plots work offline

model = load_model()
transcoders = load_transcoders()
rm = replacement_model(model, transcoders)  # circuit_tracer's ReplacementModel on the course weights

# %% [markdown]
# ## 1 · Attributing a prompt, and reading the graph
#
# `circuit_tracer.attribute(tokens, model)` runs the whole of chapter 03 (the local replacement
# model, the salient logits, the active latents, the edges by batched backward passes) and returns
# an unpruned `Graph`. A graph can be saved with `graph.to_pt(path)` and loaded back with
# `Graph.from_pt(path)`, so an expensive graph is computed once.

# %%
from circuit_tracer import attribute  # noqa: E402
from circuit_tracer.graph import Graph  # noqa: E402

prompt = " The state containing Dallas has its capital in"
tokens = model.to_tokens(prompt)[0]
with torch.enable_grad():  # attribute() runs backward passes
    graph = attribute(tokens, rm, batch_size=256, verbose=False)
saved = Path(tempfile.mkdtemp()) / "dallas_graph.pt"  # a scratch folder, not the repository
graph.to_pt(str(saved))
graph = Graph.from_pt(str(saved))
probs = next_token_probs(rm, tokens)
AUSTIN, SACRAMENTO, TEXAS = (model.to_single_token(t) for t in (" Austin", " Sacramento", " Texas"))
print(f"{len(graph.active_features)} active latents, {len(graph.selected_features)} of them nodes; "
      f"{len(graph.logit_targets)} logit nodes; adjacency {tuple(graph.adjacency_matrix.shape)}")
print(f"P(' Austin') = {float(probs[AUSTIN]):.3f}, P(' Texas') = {float(probs[TEXAS]):.3f}")

# %% [markdown]
# Expected output: {{508}} latents, all of them nodes, and P(' Austin') = {{0.811}}.
#
# The matrix is ordered [latents, error nodes, embeddings, logits] (chapter 03 used a topological
# order instead; the content is the same). Row = target, column = source. The latent nodes are
# indexed through two tensors:
#
# - `graph.active_features` is `(n_active, 3)`: `(layer, pos, latent)` of every active latent;
# - `graph.selected_features` holds, for latent node `i`, its row in `active_features` (attribute
#   can keep only some of the active latents as nodes; here it keeps all, but do not rely on that);
# - `graph.activation_values[i]` is node `i`'s activation.
#
# ### Exercise 1 · `graph_latent_table`
#
# Return the `k` latent nodes with the largest influence on the logits, largest first, as
# `GraphLatent`s. Influence is chapter 03's: circuit_tracer's `compute_node_influence(adjacency,
# logit_weights)` (`from circuit_tracer.graph import compute_node_influence`; `logit_weights(graph)`
# is defined above).

# %% [exercise]
def graph_latent_table(graph, k: int = 10) -> list[GraphLatent]:
    """The k latent nodes of `graph` with the largest influence on its logits, largest first."""
    # BEGIN SOLUTION
    from circuit_tracer.graph import compute_node_influence

    n_latents = len(graph.selected_features)
    influence = compute_node_influence(graph.adjacency_matrix, logit_weights(graph))[:n_latents]
    features = graph.active_features[graph.selected_features]
    order = influence.argsort(descending=True, stable=True)[:k]
    return [GraphLatent(int(i), *(int(x) for x in features[i]), float(graph.activation_values[i]), float(influence[i]))
            for i in order]
    # END SOLUTION

# %% [hint]
# The first `len(graph.selected_features)` nodes are the latents; their `(layer, pos, latent)` is
# `graph.active_features[graph.selected_features[i]]`, not `graph.active_features[i]`.

# %% [hint]
# Influence comes from the whole (unnormalised) adjacency matrix: `compute_node_influence` normalises
# it itself. Sort by influence, not by activation.

# %% [check]
tests.test_graph_latent_table(graph_latent_table)

# %%
top = graph_latent_table(graph, k=10)
print(tabulate([(g.label, model.to_str_tokens(tokens[g.pos:g.pos + 1])[0], f"{g.activation:.2f}", f"{g.influence:.3f}")
                for g in top], headers=["latent", "token", "activation", "influence"]))

# %% [markdown]
# Expected output: the most influential latent is {{L0 #206 @8}}, as in chapter 03, and all ten sit
# at the last position (' in'): the graph reads the city from four positions back through
# attention, and computes nothing at the city's own position.
#
# ## 2 · Supernodes
#
# A single latent rarely explains an answer; a **supernode** is a group of latents we believe play
# one role ("Texas", "say a capital"). We group them twice: first by hand, from what each latent
# fires on, as you would on a real model; then automatically, from the course world's planted
# labels, which `circuit_tracer` cannot do on a real model, where no labels exist.
#
# ### By hand, from the top examples
#
# Below, each of the ten latents above with the three held-out contexts where it fires most (the
# top examples of its dashboard: a few tokens around the one it fires on, which is in
# [brackets]). `display_dashboard(transcoders[layer], latent, model=model)` (from
# `utils.dashboard`) shows a latent's whole dashboard.

# %%
import html  # noqa: E402
import re  # noqa: E402

from utils.graph_explorer import latent_info  # noqa: E402


def top_contexts(g: GraphLatent, n: int = 3) -> list[str]:
    """The n held-out contexts where latent g fires most, as plain text (the firing token in [brackets])."""
    examples = latent_info(g.layer, [g.latent])[g.latent]["examples"][:n]
    return [html.unescape(re.sub("</?b>", "", text)).strip() for _, text in examples]


print(tabulate([(g.label, " | ".join(top_contexts(g))) for g in top], headers=["latent", "top contexts"]))

# %% [markdown]
# ### Exercise 2 · `hand_supernodes`
#
# Read the contexts and group the ten latents by the role they suggest on this prompt, for example
# "Texas" (fires in sentences about Texas), "say a state" (fires where a state name comes next),
# "say a capital" (where a capital comes next), and "other" for the ones that look unrelated.
# Return `{group name: [latent labels]}`, labels written as printed (`"L0 #206 @8"`), each latent in
# at most one group, at least two groups. There is no single right answer, so the check only
# checks the form; section 3 tests your groups by ablating them.

# %% [exercise]
def hand_supernodes() -> dict[str, list[str]]:
    """Your grouping of the ten most influential latents, {group name: [labels]}."""
    # BEGIN SOLUTION
    # Read from the contexts printed above on the shipped world: 206 fires after sentences about
    # Texas and 569 just before ' Austin'; 495, 13 and 662 on ' in' / ' of' before a state name;
    # 672 and 362 where a capital follows; 724 (' is' after "the number of"), 636 ("goal of") and
    # 856 (inside landmark names) look unrelated to this prompt.
    return {"Texas": ["L0 #206 @8", "L1 #569 @8"],
            "say a state": ["L0 #495 @8", "L0 #13 @8", "L0 #662 @8"],
            "say a capital": ["L2 #672 @8", "L1 #362 @8"],
            "other": ["L0 #724 @8", "L0 #636 @8", "L3 #856 @8"]}
    # END SOLUTION

# %% [hint]
# Look at the token in [brackets] and at what comes right after it: a latent at the last position
# of this prompt is more often about what comes next than about the token it sits on.

# %% [check]
tests.test_hand_supernodes(hand_supernodes)

# %%
by_label = {g.label: g for g in top}
hand = {name: [by_label[label] for label in labels] for name, labels in hand_supernodes().items()}
for name, members in hand.items():
    print(f"{name:14} {len(members)} latents, influence {sum(g.influence for g in members):.3f}")

# %% [markdown]
# ### From the planted labels
#
# The course world labels each latent automatically: its best *planted concept* on the labelled
# corpus (its F1 against the labels) names a role. We keep only the entity families of this
# prompt: `city:`, `state:`, `in_state:` (tokens of a sentence about a place in that state) and
# `capital:`.

# %%
from utils.world.concepts import streamed_concept_scores  # noqa: E402

corpus = labelled_corpus(n_docs=100)
scores = streamed_concept_scores(model, transcoders, corpus, progress=False)  # per layer: concept x latent
ENTITY_FAMILIES = ("city:", "state:", "in_state:", "capital:")
entity = torch.tensor([c.startswith(ENTITY_FAMILIES) for c in scores[0].concepts])


def best_entity_concept(layer: int, latent: int) -> str:
    """The entity concept a latent matches best (F1 on the labelled corpus)."""
    f1 = torch.where(entity, scores[layer].f1[:, latent], torch.tensor(-1.0))
    return scores[layer].concepts[int(f1.argmax())]


print(best_entity_concept(top[0].layer, top[0].latent))

# %% [markdown]
# ### Exercise 3 · `supernodes_from_labels`
#
# Group latents by a label: `concept_of(latent)` gives a `GraphLatent`'s concept (e.g.
# `"in_state:Texas"`). Return `{concept: [latents with that concept]}`, keeping each group's
# latents in the order given and only concepts that start with one of `families`.

# %% [exercise]
def supernodes_from_labels(latents: list[GraphLatent], concept_of, families: tuple[str, ...]) -> dict[str, list[GraphLatent]]:
    """{concept: its latents, in the given order}, for the concepts that start with one of `families`."""
    # BEGIN SOLUTION
    groups: dict[str, list[GraphLatent]] = {}
    for latent in latents:
        concept = concept_of(latent)
        if concept.startswith(tuple(families)):
            groups.setdefault(concept, []).append(latent)
    return groups
    # END SOLUTION

# %% [hint]
# One pass over `latents`, `dict.setdefault(concept, []).append(latent)`; `str.startswith` accepts a
# tuple of prefixes.

# %% [check]
tests.test_supernodes_from_labels(supernodes_from_labels)

# %%
kept = graph_latent_table(graph, k=40)
supernodes = supernodes_from_labels(kept, lambda g: best_entity_concept(g.layer, g.latent), ENTITY_FAMILIES)
for concept, members in sorted(supernodes.items(), key=lambda kv: -sum(g.influence for g in kv[1]))[:8]:
    print(f"{concept:22} {len(members)} latents, influence {sum(g.influence for g in members):.3f}: "
          f"{', '.join(g.label for g in members)}")

# %% [markdown]
# Expected output: the four largest groups are `capital:Austin` (influence {{0.217}}),
# `in_state:Texas` ({{0.206}}), then `capital:Sacramento` ({{0.125}}) and `in_state:California`
# ({{0.120}}). Labels for the *other* state appear as large groups on a Texas prompt. A latent's
# best entity concept names what it fires on most *among the labels*, often with low precision
# (chapter 03 found 0.10 for the top latent), not necessarily its role on this prompt. The
# interventions below will tell.
#
# ### Exercise 4 · `supernode_graph`
#
# A supernode graph sums edges: the edge from supernode A to supernode B is the sum of the
# adjacency entries from every member of A to every member of B. Return the names (the
# supernodes', then `"logits"`) and the `(n + 1, n + 1)` matrix `[target, source]`, where the
# `"logits"` row sums the edges into all logit nodes.

# %% [exercise]
def supernode_graph(graph, supernodes: dict[str, list[GraphLatent]]) -> tuple[list[str], Tensor]:
    """(names, weights[target, source]) of the supernodes and one "logits" node."""
    # BEGIN SOLUTION
    n_logits = len(graph.logit_targets)
    n_nodes = len(graph.adjacency_matrix)
    groups = [[g.node for g in members] for members in supernodes.values()]
    groups.append(list(range(n_nodes - n_logits, n_nodes)))
    weights = torch.zeros(len(groups), len(groups))
    for t, targets in enumerate(groups):
        for s, sources in enumerate(groups):
            weights[t, s] = graph.adjacency_matrix[targets][:, sources].sum()
    return [*supernodes, "logits"], weights
    # END SOLUTION

# %% [hint]
# `graph.adjacency_matrix[targets][:, sources].sum()` sums a block; the logit nodes are the last
# `len(graph.logit_targets)` rows.

# %% [check]
tests.test_supernode_graph(supernode_graph)

# %%
biggest = dict(sorted(supernodes.items(), key=lambda kv: -sum(g.influence for g in kv[1]))[:6])
names, weights = supernode_graph(graph, biggest)
side = 160 + 70 * len(names)  # room for each supernode's name and its cell's value
px.imshow(weights.numpy(), x=names, y=names, color_continuous_scale="RdBu", color_continuous_midpoint=0,
          text_auto=".2f", width=side + 260, height=side + 120,
          labels=dict(x="source", y="target", color="edge"), title="Supernode graph of the Dallas prompt")

# %% [markdown]
# ### The graph, one supernode at a time
#
# `explore_graph` (chapter 03) draws a pruned graph and merges each supernode into one node whose
# edges are the sums of its members' edges. Here are your hand groups on the Dallas graph (a
# member that pruning removed is left out). Hover over a supernode to see its members; pick one in
# the "highlight" menu to see its strongest paths to the logits.

# %%
from utils.graph_explorer import explore_graph  # noqa: E402

view = explore_graph(graph, node_threshold=0.8, edge_threshold=0.98, latent_details=False)  # which nodes pruning keeps
node_ids = {name: [i for i in (f"{g.layer}_{g.latent}_{g.pos}" for g in members) if i in view.nodes]
            for name, members in hand.items()}
view = explore_graph(graph, node_threshold=0.8, edge_threshold=0.98, title="The Dallas prompt, your supernodes",
                     supernodes={name: ids for name, ids in node_ids.items() if ids})
coarse = [(view.nodes[s].label, view.nodes[t].label, w) for s, t, w in view.edges
          if "supernode" in (view.nodes[s].kind, view.nodes[t].kind)
          and {view.nodes[s].kind, view.nodes[t].kind} <= {"supernode", "token", "logit"}]
print(tabulate(sorted(coarse, key=lambda e: -abs(e[2]))[:10], headers=["from", "to", "edge"], floatfmt="+.2f"))
view

# %% [markdown]
# Expected output, with the reference's groups (the solution's `hand_supernodes`): the strongest
# edges into the supernodes come from the tokens. ' Dallas' (position 4) feeds "say a state" with
# weight {{+7.06}} and "Texas" with {{+3.24}}, through attention. The supernodes then push the two
# logits: "Texas" both ' Austin' ({{+2.27}}) and ' Texas' ({{+1.93}}), "say a state" ' Texas'
# ({{+1.75}}), "say a capital" ' Austin' ({{+1.68}}). So this world's two-hop circuit sits at one
# position: the city's token is read by attention into the last position, where the state and
# capital latents act; there is no "Texas" step at the city's own position. Edges are linear
# estimates of one forward pass; the next sections test them.
#
# ## 3 · Ablations, with predictions first
#
# Before running an intervention, write down what you expect: it is the only way to find out that
# your picture of the circuit is wrong.
#
# ### Exercise 5 · `ablation_predictions`
#
# For each supernode of this section you have an opinion about (your hand groups, and the label
# groups printed above, such as `"in_state:Texas"`), predict what **zeroing** it (attention frozen)
# does to P(' Austin'): `"lower"`, `"higher"` or `"same"` (within 0.05). Return
# `{supernode name: prediction}` for at least three of them. The check only checks the form;
# the table below scores your predictions.

# %% [exercise]
def ablation_predictions() -> dict[str, str]:
    """Your predictions, {supernode name: "lower" | "higher" | "same"}, for zeroing each supernode."""
    # BEGIN SOLUTION
    # What a reader of the top examples and labels above might predict (most turn out wrong: see below).
    return {"Texas": "lower", "say a state": "lower", "say a capital": "lower", "other": "same",
            "capital:Austin": "lower", "in_state:Texas": "lower", "in_state:California": "same",
            "in_state:Arizona": "same"}
    # END SOLUTION

# %% [hint]
# Any reasoned guess passes: what the check wants is that you commit to one before seeing the
# numbers. A group that carries the answer should lower it; a group that carries a competitor
# (another state, ' Texas' itself) might raise it.

# %% [check]
tests.test_ablation_predictions(ablation_predictions)

# %% [markdown]
# ### Exercise 6 · `scale_interventions`
#
# Return circuit_tracer's intervention tuples that set every latent of `members` to `factor` times
# its activation on the prompt: `(layer, pos, latent, factor * activation)`.

# %% [exercise]
def scale_interventions(members: list[GraphLatent], factor: float) -> list[tuple[int, int, int, float]]:
    """(layer, pos, latent, factor * activation) for each latent of `members`."""
    # BEGIN SOLUTION
    return [(g.layer, g.pos, g.latent, factor * g.activation) for g in members]
    # END SOLUTION

# %% [hint]
# The value is the new activation, not a change: zero ablation is `factor = 0`.

# %% [check]
tests.test_scale_interventions(scale_interventions)

# %% [markdown]
# Now measure. `freeze_attention=True` keeps every attention pattern as on the clean prompt (the
# setting of the attribution graph), `False` lets attention react to the change. circuit_tracer's
# `constrained_layers` (not used here) would also freeze the latents of chosen layers, so that an
# intervention could reach them only through attention and the error terms. The last column
# compares your prediction with the zeroing (attention frozen).

# %%
base_austin = float(probs[AUSTIN])


def direction(p: float) -> str:
    return "same" if abs(p - base_austin) <= 0.05 else ("lower" if p < base_austin else "higher")


predictions = ablation_predictions()
rows, right = [], []
for concept, members in {**biggest, **hand}.items():
    row = [concept, len(members)]
    for factor in (0.0, -2.0):
        for frozen in (True, False):
            p = next_token_probs(rm, tokens, scale_interventions(members, factor), freeze_attention=frozen)
            row.append(f"{float(p[AUSTIN]):.3f}")
    measured = direction(float(row[2]))
    if concept in predictions:
        right.append(predictions[concept] == measured)
        row.append(f"{predictions[concept]}: {'right' if right[-1] else 'wrong, ' + measured}")
    rows.append(row)
print(f"P(' Austin') before any intervention: {base_austin:.3f}")
print(tabulate(rows, headers=["supernode", "latents", "x0 frozen", "x0 free", "x-2 frozen", "x-2 free", "you predicted"]))
print(f"{sum(right)} of {len(right)} predictions right; not a supernode above: "
      f"{sorted(set(predictions) - set(biggest) - set(hand)) or 'none'}")

# %% [markdown]
# Expected output, in three findings:
#
# - **Neither the top examples nor the labels predicted the roles.** The reference predictions get
#   {{2 of 8}} right. The hand group that looked unrelated to the prompt, "other" (' is' after
#   "the number of", "goal of", a piece of a landmark's name), gives the largest drop of all:
#   P(' Austin') {{0.169}}. Top examples show where a latent fires most strongly, which need not be
#   what it does on this prompt. Zeroing "say a capital" lowers P(' Austin') to
#   {{0.447}}, while zeroing "say a state" *raises* it to {{0.992}}, consistent with its edge to
#   ' Texas': it supported the competing answer. Among the label groups, zeroing `capital:Austin`
#   raises P(' Austin') to {{0.982}}, zeroing `in_state:Texas` lowers it only to {{0.6}}, and a group
#   labelled with the *other* capital, `capital:Sacramento`, lowers it to {{0.363}}.
# - **−2× is a blunt tool.** Flipping and doubling almost any group of several latents sends
#   P(' Austin') near 0 (`in_state:Texas`: {{0}}), even groups labelled California. A large push
#   off the model's usual activations breaks the answer whatever the latents mean, so a −2× drop
#   says little on its own; compare it with a group that should not matter (`in_state:Arizona`
#   stays at {{0.928}}).
# - **Frozen or free attention** differs little when zeroing, more for −2× (`capital:Austin`:
#   {{0.199}} frozen, {{0.017}} free). All these latents sit at the last position, but the last
#   position's own queries in later layers read its residual stream: free attention lets a large
#   change there redirect what those layers look at.
#
# So neither kind of group isolates "Texas". In this small world the state is spread over many
# weak latents, and a latent's best label is not its role. We need the latents that carry *this*
# prompt's state, and the model can tell us which: compare it with a prompt about another state.
#
# ## 4 · Cross-prompt swaps
#
# Take two prompts that differ only in the city: Dallas (Texas) and Oakland (California). The
# latents whose activations differ most between them, at the last position, are the candidates
# for "which state". If they really carry it, then zeroing the Dallas prompt's side and writing in
# the Oakland prompt's values should make the model answer ' Sacramento'.
#
# ### Exercise 7 · `contrast_latents`
#
# `acts` and `other` are the activations `(n_layers, d_transcoder)` of two prompts at one
# position. Return the latents more active on `acts` (the `k` largest positive differences
# `acts − other`, largest first) and those more active on `other` (the `k` largest positive
# differences `other − acts`), each as a list of `(layer, latent)`. Leave out differences that are
# not positive.

# %% [exercise]
def contrast_latents(acts: Tensor, other: Tensor, k: int = 8) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(latents more active on `acts`, latents more active on `other`), at most k each, largest first."""
    # BEGIN SOLUTION
    d = acts.shape[-1]

    def largest(diff: Tensor) -> list[tuple[int, int]]:
        top = diff.flatten().topk(k)
        return [(int(i) // d, int(i) % d) for v, i in zip(top.values, top.indices) if v > 0]

    return largest(acts - other), largest(other - acts)
    # END SOLUTION

# %% [hint]
# Flatten `(n_layers, d)` to one axis, `topk`, then turn each flat index `i` back into
# `(i // d, i % d)`. Do it once for `acts − other` and once for `other − acts`.

# %% [check]
tests.test_contrast_latents(contrast_latents)

# %% [markdown]
# ### Exercise 8 · `swap_interventions`
#
# Given `acts` and `other` (both `(n_layers, d_transcoder)` at position `pos`), return the
# interventions that zero the prompt's own side and set the other side to its activations on the
# other prompt: first every `(layer, pos, latent, 0.0)` of `own`, then every
# `(layer, pos, latent, other[layer, latent])` of `new`.

# %% [exercise]
def swap_interventions(own: list[tuple[int, int]], new: list[tuple[int, int]], other: Tensor,
                       pos: int) -> list[tuple[int, int, int, float]]:
    """Zero `own` and write in `new` at the other prompt's values, all at position `pos`."""
    # BEGIN SOLUTION
    return ([(layer, pos, latent, 0.0) for layer, latent in own]
            + [(layer, pos, latent, float(other[layer, latent])) for layer, latent in new])
    # END SOLUTION

# %% [hint]
# The other prompt's value of latent `(layer, latent)` is `other[layer, latent]`; the position is
# the same in both prompts because they differ only in one single-token city.

# %% [check]
tests.test_swap_interventions(swap_interventions)

# %%
def last_position_acts(prompt_tokens: Tensor) -> Tensor:
    """Every transcoder latent at the last position, (n_layers, d_transcoder)."""
    return acts_at(rm, prompt_tokens, -1)


other_tokens = model.to_tokens(" The state containing Oakland has its capital in")[0]
pos = len(tokens) - 1
acts, other = last_position_acts(tokens), last_position_acts(other_tokens)
rows = []
for k in (4, 8, 16):
    own, new = contrast_latents(acts, other, k)
    zeroed = next_token_probs(rm, tokens, [(layer, pos, latent, 0.0) for layer, latent in own])
    swapped = next_token_probs(rm, tokens, swap_interventions(own, new, other, pos))
    rows.append([k, f"{float(zeroed[AUSTIN]):.3f}", f"{float(swapped[AUSTIN]):.3f}", f"{float(swapped[SACRAMENTO]):.3f}",
                 model.to_str_tokens(swapped.argmax())[0]])
print(tabulate(rows, headers=["k each way", "zeroed: P(Austin)", "swapped: P(Austin)", "swapped: P(Sacramento)", "top-1"]))

# %% [markdown]
# Expected output: with 8 latents each way, zeroing the Dallas side lowers P(' Austin') from 0.811
# to {{0.186}}, and the swap makes ' Sacramento' the answer with P = {{0.713}}. With 4 each way
# nothing flips (P(' Sacramento') {{0.016}}); with 16 the swap is stronger ({{0.829}}). A handful
# of latents at the last position, chosen by contrast rather than by label, carry the state.
#
# ### Many pairs
#
# One pair can be luck. `flip_table` takes one city per state (the first of each state in the fact
# table), runs the same swap with `k = 8` for every ordered pair of different states, and counts
# a pair as flipped when the other state's capital becomes the top-1.

# %%
import functools  # noqa: E402

from utils.world import facts as world_facts  # noqa: E402

CITIES = {state: next(c for c, s in world_facts.CITY_TO_STATE.items() if s == state) for state in world_facts.STATES}


def two_hop_tokens(city: str) -> Tensor:
    return model.to_tokens(f" The state containing {city} has its capital in")[0]


@functools.lru_cache(maxsize=None)
def city_acts(city: str) -> Tensor:
    """The last position's latents of the city's two-hop prompt (computed once per city)."""
    return last_position_acts(two_hop_tokens(city))


def flip_table(cities: dict[str, str], k: int = 8, only: set[str] | None = None) -> list[dict]:
    """For every ordered pair of the cities (one per state): the swap of exercise 8 with k latents each way
    (with `only`: just the pairs whose first city is in it)."""
    acts = {state: city_acts(city) for state, city in cities.items()}
    rows = []
    for state, city in cities.items():
        if only is not None and city not in only:
            continue
        city_tokens = two_hop_tokens(city)
        base = next_token_probs(rm, city_tokens)
        for other_state, other_city in cities.items():
            if other_state == state:
                continue
            own, new = contrast_latents(acts[state], acts[other_state], k)
            swapped = next_token_probs(rm, city_tokens, swap_interventions(own, new, acts[other_state], len(city_tokens) - 1))
            target = model.to_single_token(" " + world_facts.STATE_TO_CAPITAL[other_state])
            rows.append(dict(city=city, other=other_city, base_correct=int(base.argmax()) == model.to_single_token(
                " " + world_facts.STATE_TO_CAPITAL[state]), top1=model.to_str_tokens(swapped.argmax())[0],
                p_other=float(swapped[target]), flipped=int(swapped.argmax()) == target))
    return rows


rows = flip_table(CITIES)
print(f"flip rate over {len(rows)} ordered pairs: {sum(r['flipped'] for r in rows) / len(rows):.2f}")
by_city = {}
for r in rows:
    by_city.setdefault(r["city"], []).append(r)
print(tabulate([(city, "yes" if rs[0]["base_correct"] else "no", f"{sum(r['flipped'] for r in rs)}/{len(rs)}",
                 f"{sum(r['flipped'] for r in rows if r['other'] == city)}/{len(rs)}") for city, rs in by_city.items()],
               headers=["city", "answered before", "flipped away from it", "flipped towards its capital"]))

# %% [markdown]
# Expected output: the swap flips {{0.74}} of the 182 ordered pairs. It fails most often on
# Philadelphia and Tucson ({{5/13}} flipped away from each). The model gets Philadelphia's and
# Portland's prompts wrong before any intervention, yet Portland flips away in {{13/13}} pairs:
# a swap removes whatever state the model had, right or wrong, and writes in the other one.
#
# Why do some cities resist? One guess: their state is spread over more than 8 latents. Test it on
# the cities that flipped away in fewer than 8 of their 13 pairs, with more latents each way.

# %%
resisting = {city for city, rs in by_city.items() if sum(r["flipped"] for r in rs) < 8}
more = {k: flip_table(CITIES, k, only=resisting) for k in (16, 32)}
print(tabulate([(city, f"{sum(r['flipped'] for r in by_city[city])}/13",
                 *(f"{sum(r['flipped'] for r in more[k] if r['city'] == city)}/13" for k in (16, 32)))
                for city in sorted(resisting)], headers=["city", "k = 8", "k = 16", "k = 32"]))

# %% [markdown]
# Expected output: with 32 latents each way, Tucson flips away in {{13/13}} pairs and Philadelphia
# in {{11/13}}, consistent with the state of these cities being carried by more latents than the
# 8 swapped. But more is not always better: Detroit falls from {{7/13}} at k = 8 to {{5/13}} at
# k = 16 before rising again. A likely reason, not measured here: the latents that differ most between two prompts
# also carry differences other than the state, and swapping more of them writes those in too.
#
# ## 5 · Generation with interventions
#
# An intervention can also be held while the model writes. `generate_with_interventions` (in
# `utils/interventions.py`, around circuit_tracer's `feature_intervention_generate`) continues the
# prompt greedily. A position can be a `slice`: `slice(n, None)` means "position n and every
# position after it", including the tokens the model generates.
#
# ### Exercise 9 · `from_position_on`
#
# Return the same interventions with each position `pos` replaced by `slice(pos, None)`, so that
# they are applied at that position and every later one.

# %% [exercise]
def from_position_on(interventions: list[tuple]) -> list[tuple]:
    """The interventions, each held from its position to the end of the text (generated tokens included)."""
    # BEGIN SOLUTION
    return [(layer, slice(pos, None), latent, value) for layer, pos, latent, value in interventions]
    # END SOLUTION

# %% [hint]
# Keep layer, latent and value; only the position changes, to `slice(pos, None)`.

# %% [check]
tests.test_from_position_on(from_position_on)

# %%
own, new = contrast_latents(acts, other, 8)
swap = swap_interventions(own, new, other, pos)
for name, chosen in [("no intervention", []), ("swap at the last position", swap),
                     ("swap held on every later position", from_position_on(swap))]:
    out = generate_with_interventions(rm, tokens, chosen, max_new_tokens=8)
    print(f"{name:34} ->{model.tokenizer.decode(out[len(tokens):].tolist())}")

# %% [markdown]
# Expected output: without intervention the model goes on "{{Austin. The state of Texas has its}}".
# With the swap at the last position only, it writes "{{Sacramento. The state of California has its}}":
# once ' Sacramento' is written, the model reads its own answer and carries on about California.
# Held on every later position, the swap keeps pushing each new token, and the text drifts into
# "{{The state that contains Pasadena}}" (a California city): the intervention no longer answers
# one question but rewrites whatever comes after. Try other prompts and other `k`.

# %% [markdown]
# ## 6 · How much does a graph explain?
#
# Chapter 03 computed two graph scores by hand; circuit_tracer has them as `compute_graph_scores`.
# The **replacement score** is the share of the embeddings' influence on the logits that does not
# pass through error nodes; the **completeness score** is, weighted by influence, the share of
# each node's input that comes from latents and embeddings rather than errors. An intervention
# can only test what the graph names, so a low score warns that much of the answer lives in the
# error nodes, where no latent can be swapped.

# %%
from circuit_tracer.graph import compute_graph_scores  # noqa: E402


def attribute_prompt(text: str):
    with torch.enable_grad(), warnings.catch_warnings():  # attribute() runs backward passes
        warnings.simplefilter("ignore")  # circuit_tracer's backward warns about a .grad it never reads
        return attribute(model.to_tokens(text)[0], rm, batch_size=256, verbose=False)


LANDMARK_PROMPT = " Everyone knows the Eiffel tower is located in"
landmark_graph = attribute_prompt(LANDMARK_PROMPT)
for name, g in [("Dallas (two-hop)", graph), ("Eiffel (landmark)", landmark_graph)]:
    replacement, completeness = compute_graph_scores(g)
    print(f"{name:18} replacement {replacement:.3f}  completeness {completeness:.3f}")

# %% [markdown]
# Expected output: the Dallas graph scores {{0.793}} and {{0.936}}, the Eiffel graph {{0.620}} and
# {{0.871}}. About a fifth of the Dallas prompt's influence, and nearly two fifths of the Eiffel prompt's,
# reaches the answer through error nodes: what the transcoders of this small world do not
# capture. The swaps above worked *despite* that, because they only need the latents that differ
# between two prompts, not a complete account of either.
#
# ## 7 · A second circuit, found blind
#
# Now the landmark facts: "Everyone knows the Eiffel tower is located in" → ' Paris'. Every
# landmark is written in three pieces (' E', 'iff', 'el'), so all such prompts have the same
# length and a swap between two of them lines up position by position. Where does the model
# hold "which city"? At the landmark's pieces, at the kind word, or only at the last position?
# Find out with swaps, before looking at any label.
#
# ### Exercise 10 · `flip_rate`
#
# For prompts of equal length and their answer token ids, return the fraction of ordered pairs
# `(i, j)` with different answers for which swapping prompt `j`'s contrast latents into prompt
# `i` at position `pos` (exercises 7 and 8, `k` each way, activations from `acts_at(rm, tokens, pos)`,
# defined at the top)
# makes `answers[j]` the top-1 next token of prompt `i`. Use `next_token_probs(rm, tokens,
# interventions)`.

# %% [exercise]
def flip_rate(rm, prompts: list[Tensor], answers: list[int], pos: int, k: int = 8) -> float:
    """Fraction of ordered pairs with different answers that the swap at `pos` flips to the other answer."""
    # BEGIN SOLUTION
    acts = [acts_at(rm, tokens, pos) for tokens in prompts]
    flipped = pairs = 0
    for i, (tokens, answer) in enumerate(zip(prompts, answers)):
        for j, other_answer in enumerate(answers):
            if other_answer == answer:
                continue
            own, new = contrast_latents(acts[i], acts[j], k)
            probs = next_token_probs(rm, tokens, swap_interventions(own, new, acts[j], pos))
            flipped += int(probs.argmax()) == other_answer
            pairs += 1
    return flipped / pairs
    # END SOLUTION

# %% [hint]
# Compute each prompt's activations once. Two nested loops over the prompts; skip pairs whose
# answers are equal (a prompt with itself, or two landmarks of one city).

# %% [hint]
# A pair is flipped when `int(probs.argmax()) == answers[j]`, not when P(answers[j]) merely rises.

# %% [check]
tests.test_flip_rate(flip_rate)

# %%
first_per_city: dict = {}
for lm in world_facts.LANDMARKS:
    first_per_city.setdefault(lm.city, lm)
landmarks = list(first_per_city.values())[:12]  # the first landmark of each of 12 cities
landmark_prompts = [model.to_tokens(f" Everyone knows the {''.join(lm.pieces).strip()} {lm.kind} is located in")[0]
                    for lm in landmarks]
landmark_answers = [model.to_single_token(" " + lm.city) for lm in landmarks]
print(model.to_str_tokens(landmark_prompts[0]))
rows = []
for pos, where, ks in [(6, "last landmark piece", (16,)), (7, "kind word", (16,)), (10, "last position", (8, 16))]:
    rates = {k: f"{flip_rate(rm, landmark_prompts, landmark_answers, pos, k):.2f}" for k in ks}
    rows.append([pos, where, rates.get(8, "-"), rates[16]])
print(tabulate(rows, headers=["position", "token", "flip rate, k=8", "k=16"]))

# %% [markdown]
# *Your hypothesis, before the reveal:* where is "which city" held, and by how many latents?
#
# Expected output: swapping at the landmark's last piece or at the kind word flips nothing
# ({{0}} at both with 16 latents each way), while at the last position {{0.18}} of the pairs
# flip with 8 latents each way and {{0.33}} with 16. Two readings fit: the city is not in the
# transcoder latents at the landmark's positions at all, or it is there but also carried by the
# other pieces (' E' and 'iff' as well as 'el') and by error nodes, so that one position's swap is
# outvoted. Either way, the landmark circuit is less concentrated at the last position than the
# two-hop one (0.74 of pairs flipped there).
#
# ### The reveal
#
# The planted labels say what the swapped latents are. For one pair, Eiffel (Paris) and Colosseum
# (Rome), here are the latents the swap at the last position moves, with their best planted
# concept on the labelled corpus:

# %%
eiffel = landmark_prompts[0]
colosseum = landmark_prompts[[lm.name for lm in landmarks].index("Colosseum")]
own, new = contrast_latents(acts_at(rm, eiffel, 10), acts_at(rm, colosseum, 10), 8)


def best_concept(layer: int, latent: int) -> str:
    f1 = scores[layer].f1[:, latent]
    return f"{scores[layer].concepts[int(f1.argmax())]} (F1 {float(f1.max()):.2f})"


print("zeroed (more active on Eiffel):   ", "; ".join(f"L{l} #{i}: {best_concept(l, i)}" for l, i in own))
print("written in (more active on Colosseum):", "; ".join(f"L{l} #{i}: {best_concept(l, i)}" for l, i in new))
probs = next_token_probs(rm, eiffel, swap_interventions(own, new, acts_at(rm, colosseum, 10), 10))
print("after the swap, top-1:", model.to_str_tokens(probs.argmax())[0])

# %% [markdown]
# Expected output: of the 16 latents the swap moves, only one has a landmark or city as its best
# planted concept ({{landmark:Colosseum}}, F1 {{0.20}}); the others match unrelated concepts
# (sports, repeated spans, the two-hop template) with F1 below 0.6, and this pair does not
# flip: the top-1 stays ' Paris'. So the latents that *differ* between two landmark prompts at the
# last position are mostly not about landmarks, and the ones that are carry too little to move
# the answer. Together with the low replacement score, the honest conclusion on this world is that
# the landmark → city lookup is done largely outside clean transcoder latents (in the error nodes
# and in many weak latents), unlike the two-hop state, which a handful of latents carries.
# Chapter 05 looks at why a dictionary can split or blur a concept like this.
