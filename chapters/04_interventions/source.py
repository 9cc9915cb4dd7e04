# Source of chapter 04. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch04_interventions.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 04 · Circuits and interventions with circuit-tracer
#
# Chapter 03 built an attribution graph by hand for the two-hop prompt "The state containing
# Dallas has its capital in" and found, by patching the model, that the state comes from the
# city's token embedding, copied to the last position by one layer-0 head. The graph itself puts
# the action at the last position, in many latents at once. A graph is a *linear* account of one
# forward pass, so what it suggests about roles is only a guess until we change the model and watch
# the answer move. This chapter uses `circuit_tracer` itself, on the course model and its
# transcoders, to:
#
# 1. attribute a prompt and read the `Graph` it returns;
# 2. group latents into **supernodes**, by hand and from the course world's ground-truth labels,
#    and look at the graph one supernode at a time;
# 3. **ablate** a supernode (set its latents to 0, or to −2× their value) after predicting what
#    that will do, with attention frozen or free, and compare it with random groups of its size;
# 4. **swap** the latents that distinguish two prompts: put a California prompt's latents into the
#    Dallas prompt and see whether the model says ' Sacramento', over many pairs of cities, with a
#    same-state swap and random swaps as controls;
# 5. hold a swap while the model writes, read the graph scores, and find where a second fact
#    (landmark → city) is held, by swapping sets of positions.
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

prompt = "The state containing Dallas has its capital in"
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
# Expected output: {{544}} latents, all of them nodes, and P(' Austin') = {{0.994}}. The model is
# nearly certain, which matters below: removing a little of the evidence for ' Austin' can leave a
# probability this close to 1 almost unchanged.
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
# Rank the graph's latent nodes by their influence on the logits, the effect summed over every path
# through the graph (not their activation), and describe the top `k`: the node's index, its layer,
# position and latent id, its activation and its influence.

# %% [hint]
# The first `len(graph.selected_features)` nodes are the latents; their `(layer, pos, latent)` is
# `graph.active_features[graph.selected_features[i]]`, not `graph.active_features[i]`.
# `compute_node_influence` takes the whole unnormalised adjacency matrix (it normalises it itself)
# and `logit_weights(graph)`.

# %% [check]
tests.test_graph_latent_table(graph_latent_table)

# %%
top = graph_latent_table(graph, k=10)
print(tabulate([(g.label, model.to_str_tokens(tokens[g.pos:g.pos + 1])[0], f"{g.activation:.2f}", f"{g.influence:.3f}")
                for g in top], headers=["latent", "token", "activation", "influence"]))

# %% [markdown]
# Expected output: the most influential latent is {{L0 #339 @8}}, as in chapter 03, and all ten sit
# at the last position (' in'): the city is read from four positions back through layer-0
# attention, and no latent at the city's own position makes the top ten. No single latent
# dominates: the largest influence is {{0.047}}.
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
from utils.world import WORLD_NAME  # noqa: E402  ("course-world-v2")


def top_contexts(g: GraphLatent, n: int = 3) -> list[str]:
    """The n held-out contexts where latent g fires most, as plain text (the firing token in [brackets])."""
    examples = latent_info(g.layer, [g.latent], world=WORLD_NAME)[g.latent]["examples"][:n]
    return [html.unescape(re.sub("</?b>", "", text)).strip() for _, text in examples]


print(tabulate([(g.label, " | ".join(top_contexts(g))) for g in top], headers=["latent", "top contexts"]))

# %% [markdown]
# ### Exercise 2 · `hand_supernodes`
#
# Read the contexts and group the ten latents by the role they suggest on this prompt, for example
# "Texas" (fires in sentences about Texas), "say a state" (fires where a state name comes next),
# "say a capital" (where a capital comes next), and "other" for the ones that look unrelated.
# Return `{group name: [latent labels]}`, labels written as printed (`"L0 #339 @8"`), each latent in
# at most one group, at least two groups. There is no single right answer, so the check only
# checks the form; section 3 tests your groups by ablating them.

# %% [exercise]
def hand_supernodes() -> dict[str, list[str]]:
    """Your grouping of the ten most influential latents, {group name: [labels]}."""
    # BEGIN SOLUTION
    # Read from the contexts printed above on the shipped world: 131, 158 and 290 fire in sentences
    # about Texas (Lubbock, Houston, Austin); 339, 868 and 160 on ' in' or ',' right before a state
    # name; 813, 783 and 791 on ',', ' is' or ' of' right before a capital (or a city); 150 fires on
    # unrelated words (' B', ' home', ' slowly').
    return {"Texas": ["L3 #131 @8", "L2 #158 @8", "L1 #290 @8"],
            "say a state": ["L0 #339 @8", "L0 #868 @8", "L0 #160 @8"],
            "say a capital": ["L0 #813 @8", "L0 #783 @8", "L2 #791 @8"],
            "other": ["L2 #150 @8"]}
    # END SOLUTION

# %% [hint]
# Group the ten latents by the job they seem to do, judging from their top contexts: latents that
# fire on the same kind of thing, or seem to prepare the same kind of next token, belong together.
# Give each group a short name; a few groups are enough, and an "other" group is fine for latents
# that fit nowhere.

# %% [hint]
# Look at the token in [brackets] and at what comes right after it: a latent at the last position
# of this prompt is more often about what comes next than about the token it sits on. Write the
# labels exactly as printed, and put each in one group only.

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
# `capital:`. (`streamed_concept_scores` computes every latent's precision, recall and F1 against
# every label of the labelled corpus.)

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
# Let the planted labels do the grouping: ask each latent for its concept, keep only the concepts
# that belong to one of the requested families, and collect the latents of each concept together,
# in the order they came.

# %% [hint]
# One pass over `latents`; `dict.setdefault(concept, []).append(latent)` builds the groups, and
# `str.startswith` accepts a tuple of prefixes.

# %% [check]
tests.test_supernodes_from_labels(supernodes_from_labels)

# %%
kept = graph_latent_table(graph, k=40)
supernodes = supernodes_from_labels(kept, lambda g: best_entity_concept(g.layer, g.latent), ENTITY_FAMILIES)
for concept, members in sorted(supernodes.items(), key=lambda kv: -sum(g.influence for g in kv[1]))[:8]:
    print(f"{concept:22} {len(members)} latents, influence {sum(g.influence for g in members):.3f}: "
          f"{', '.join(g.label for g in members)}")

# %% [markdown]
# Expected output: the two largest groups are `in_state:Texas` ({{7 latents}}, influence {{0.150}})
# and `capital:Atlanta` ({{11 latents}}, {{0.142}}); then come groups labelled with Ohio, Austin and
# Colorado. Labels of *other* states and capitals appear as large groups on a Texas prompt, and the
# top latent, whose contexts are about Texas, California and Oregon, is labelled `in_state:Ohio`.
# A latent's best entity concept names what it fires on most *among the labels*, often with low
# precision (chapter 03 found at most 0.08 among the latents its pruned graph kept), not its role
# on this prompt. The interventions below will tell.
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
# Collapse the graph onto the supernodes: the weight from one supernode to another is the total of
# every direct edge from any member of the source to any member of the target. Add one more node
# that stands for all the logits together, so you can see which groups feed the answer.

# %% [hint]
# Each member's node index is its `.node`. `graph.adjacency_matrix[targets][:, sources].sum()` sums
# a block (rows are targets, columns sources); the logit nodes are the last
# `len(graph.logit_targets)` rows. The names are the supernodes' in order, then "logits".

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
# weight {{+3.67}}, and ' capital' feeds "say a capital" ({{+3.10}}). "say a state" feeds "Texas"
# ({{+2.09}}), and both "say a state" ({{+1.33}}) and "say a capital" ({{+1.22}}) push ' Austin'.
# Every group sits at the last position; the city's token reaches it through attention. These
# edges are linear estimates of one forward pass, and a group's edges say nothing about whether a
# random group of latents would have edges as large; the next sections test the groups by
# changing the model.
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
# does to P(' Austin'): `"lower"`, `"higher"` or `"same"` (no more change than removing a random
# group of as many latents: the band is defined with the measurement below). Return
# `{supernode name: prediction}` for at least three of them. The check only checks the form;
# the table below scores your predictions.

# %% [exercise]
def ablation_predictions() -> dict[str, str]:
    """Your predictions, {supernode name: "lower" | "higher" | "same"}, for zeroing each supernode."""
    # BEGIN SOLUTION
    # What a reader of the top examples and labels above might predict.
    return {"Texas": "lower", "say a state": "higher", "say a capital": "lower", "other": "same",
            "in_state:Texas": "lower", "capital:Austin": "lower", "capital:Atlanta": "same",
            "in_state:Ohio": "same"}
    # END SOLUTION

# %% [hint]
# Before measuring, decide for each supernode what zeroing it should do to the probability of the
# correct answer, from what you know of what the group carries. The check only wants you to commit:
# any reasoned guess passes, and the notebook scores it afterwards.

# %% [hint]
# A group that carries the answer should lower it; a group that pushes a competitor (another state,
# ' Texas' itself) might raise it; an unrelated one should leave it about the same. Predict at
# least three supernodes, each value exactly "lower", "higher" or "same".

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
# An intervention sets one latent, at one layer and position, to a new value. Scaling a group means
# setting each member to the factor times the activation it has on this prompt.

# %% [hint]
# The value is the new activation, not a change: zero ablation is `factor = 0`, and −2× ablation is
# `factor = -2`. Each tuple is `(layer, pos, latent, value)`.

# %% [check]
tests.test_scale_interventions(scale_interventions)

# %% [markdown]
# ### Exercise 7 · `random_groups`
#
# A group's effect means little alone: zeroing *any* few latents moves the answer a little, and
# −2× of any several latents may break it. The control is a **size-matched random group**: as many
# latents, drawn from the pool the group itself was chosen from (the ten latents shown for your
# hand groups, the 40 most influential for the label groups), none of them a member of the group.
# The pool matters: latents of the top ten have more influence than most, so a baseline drawn
# from a wider pool could make any group of top latents look special. One draw is luck, so we
# take many and look at their spread.
#
# Return `n_draws` lists, each of `len(group)` different latents of `pool` that are not in `group`,
# drawn with `torch.randperm(..., generator=generator)` so that a seeded generator repeats them.

# %% [exercise]
def random_groups(group: list[GraphLatent], pool: list[GraphLatent], n_draws: int,
                  generator: torch.Generator) -> list[list[GraphLatent]]:
    """n_draws random groups of len(group) distinct latents from `pool`, none of them in `group`."""
    # BEGIN SOLUTION
    rest = [g for g in pool if g not in group]
    return [[rest[i] for i in torch.randperm(len(rest), generator=generator)[:len(group)].tolist()]
            for _ in range(n_draws)]
    # END SOLUTION

# %% [hint]
# A control group has to be comparable with the group it controls: the same size, drawn from the
# same pool, with none of the group's own members and no latent twice within one draw. Draw every
# group independently, from the generator given, so the draws are reproducible.

# %% [hint]
# Remove the group's members from the pool first. Then, per draw, a fresh `torch.randperm(...,
# generator=generator)` and its first `len(group)` indices: a permutation never repeats an index,
# so no latent is drawn twice within a group.

# %% [check]
tests.test_random_groups(random_groups)

# %% [markdown]
# Now measure. `freeze_attention=True` keeps every attention pattern as on the clean prompt (the
# setting of the attribution graph), `False` lets attention react to the change. circuit_tracer's
# `constrained_layers` (not used here) would also freeze the latents of chosen layers. Each group
# is compared with 20 random groups of its size from its own pool (attention frozen), summarised
# as median (10th–90th percentile). Your prediction counts as "same" when the zeroed group lands
# inside the middle 80% of its random groups, and as "lower" or "higher" outside it: the band is
# the noise of removing that many latents, not a number chosen in advance.

# %%
base_austin = float(probs[AUSTIN])
generator = torch.Generator().manual_seed(0)


def p_austin(members: list[GraphLatent], factor: float, frozen: bool = True) -> float:
    return float(next_token_probs(rm, tokens, scale_interventions(members, factor), freeze_attention=frozen)[AUSTIN])


def spread(values) -> str:
    """median (10th-90th percentile) of some values."""
    q = torch.tensor(values).quantile(torch.tensor([0.1, 0.5, 0.9]))
    return f"{q[1]:.3f} ({q[0]:.3f}-{q[2]:.3f})"


predictions = ablation_predictions()
rows, right = [], []
for concept, members in {**biggest, **hand}.items():
    pool = top if concept in hand else kept  # where the group was chosen from: the ten shown, or the 40 labelled
    draws = random_groups(members, pool, 20, generator)
    zero_draws = [p_austin(d, 0.0) for d in draws]
    row = [concept, len(members), f"{p_austin(members, 0.0):.3f}", f"{p_austin(members, 0.0, False):.3f}", spread(zero_draws),
           f"{p_austin(members, -2.0):.3f}", f"{p_austin(members, -2.0, False):.3f}", spread([p_austin(d, -2.0) for d in draws])]
    low, high = torch.tensor(zero_draws).quantile(torch.tensor([0.1, 0.9])).tolist()
    measured = "same" if low <= float(row[2]) <= high else ("lower" if float(row[2]) < low else "higher")
    if concept in predictions:
        right.append(predictions[concept] == measured)
        row.append(f"{predictions[concept]}: {'right' if right[-1] else 'wrong, ' + measured}")
    rows.append(row)
print(f"P(' Austin') before any intervention: {base_austin:.3f}")
print(tabulate(rows, headers=["supernode", "n", "x0 frozen", "x0 free", "x0, random n", "x-2 frozen", "x-2 free",
                              "x-2, random n", "you predicted"]))
print(f"{sum(right)} of {len(right)} predictions right; not a supernode above: "
      f"{sorted(set(predictions) - set(biggest) - set(hand)) or 'none'}")

# %% [markdown]
# Expected output, read against the random columns:
#
# - **Zeroing moves P(' Austin') little, for any group.** Random groups of 1–4 latents leave it
#   above about 0.89 in 90% of draws, and most groups land inside their band: `in_state:Texas`
#   gives {{0.969}} against {{0.976 (0.739-0.997)}} for random groups of 7. Two groups fall below:
#   "say a capital" ({{0.92}}, random {{0.996 (0.989-0.998)}}) and, labelled with another state,
#   `in_state:Colorado` ({{0.845}}, random {{0.994 (0.988-0.997)}}). Both of its latents are in the
#   top ten, but that alone does not explain it: random triples of the top ten (one latent more
#   than this pair), zeroed, give {{0.983 (0.937-0.998)}} (the "say a state" row). With P this close to 1, "same" mostly means the
#   model has other evidence left, not that the group plays no part.
# - **Labels and top examples do not predict the effect.** The reference predictions get
#   {{3 of 8}} right. The label group of the prompt's own state does no more than random groups,
#   nor does the hand group "Texas" ({{0.997}} zeroed), while a group labelled Colorado has one of
#   the largest effects.
# - **−2× of several latents breaks the answer whatever they are.** Random groups of 7 fall to
#   {{0.005 (0.000-0.310)}} and of 11 to {{0.000 (0.000-0.000)}}, and even random triples of the top
#   ten mostly do ({{0.175 (0.003-0.817)}} for the "say a state" row). So the collapse of
#   `in_state:Texas` ({{0.029}}), `capital:Atlanta` ({{0.004}}) or "say a state" ({{0.005}}) says
#   nothing about them. Against the baseline, −2× finds the exception instead: the hand group
#   "Texas" keeps P(' Austin') at {{0.904}}, where random triples of the top ten fall to
#   {{0.005 (0.000-0.142)}}. A push far off the usual activations tests what latents *can* write,
#   and only a baseline drawn from the same pool says whether a drop is special.
# - **Frozen or free attention** changes little here: the largest gap is `capital:Atlanta` zeroed
#   ({{0.826}} frozen, {{0.658}} free). All but one of these latents sit at the last position,
#   where only later layers' attention *from* that position can react to the change.
#
# So neither kind of group isolates "Texas". We need the latents that carry *this* prompt's state,
# and the model can tell us which: compare it with a prompt about another state.

# %% [markdown]
# ## 4 · Cross-prompt swaps
#
# Take two prompts that differ only in the city: Dallas (Texas) and Oakland (California). The
# latents whose activations differ most between them, at the last position, are the candidates
# for "which state". If they really carry it, then zeroing the Dallas prompt's side and writing in
# the Oakland prompt's values should make the model answer ' Sacramento'.
#
# ### Exercise 8 · `contrast_latents`
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
# The latents that tell two prompts apart are those whose activations differ most between them, at
# any layer. Compare the two activation tables entry by entry and take the largest differences in
# each direction: what is more active on the first prompt, and what is more active on the other.
# Name each latent by its `(layer, latent)`.

# %% [hint]
# Flatten `(n_layers, d)` to one axis and `topk`, then turn each flat index `i` back into `(i // d,
# i % d)`; do it for `acts − other` and for `other − acts`. `topk` also returns differences that
# are zero or negative when few latents differ: keep only positive ones.

# %% [check]
tests.test_contrast_latents(contrast_latents)

# %% [markdown]
# ### Exercise 9 · `swap_interventions`
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
# A swap makes this prompt's position look like the other prompt's for the latents that tell them
# apart: switch off the latents specific to this prompt, and switch on the latents specific to the
# other one, at the values they have there.

# %% [hint]
# `own` latents get value 0; each `new` latent gets the other prompt's value, `other[layer,
# latent]`. The position is the same in both prompts, because they differ only in one single-token
# city.

# %% [check]
tests.test_swap_interventions(swap_interventions)

# %% [markdown]
# Two controls come with every swap. A **same-state swap** (Dallas ← Houston, both in Texas) moves
# as many latents but should leave ' Austin' the answer: if it also breaks the answer, the swap
# works by damage, not by writing in a state. A **random swap** zeroes `k` random latents active
# on the Dallas prompt and writes in `k` random latents active on the Oakland prompt (at their
# Oakland values): the same amount of editing, not chosen by contrast (20 draws). Attention is
# frozen in this table.

# %%
def random_swap(acts: Tensor, other: Tensor, k: int, generator: torch.Generator) -> tuple[list, list]:
    """k random latents active on `acts` and k random latents active on `other`, as (layer, latent) lists."""
    def draw(a: Tensor) -> list[tuple[int, int]]:
        active = a.flatten().nonzero().flatten()
        chosen = active[torch.randperm(len(active), generator=generator)[:k]]
        return [(int(i) // a.shape[-1], int(i) % a.shape[-1]) for i in chosen]
    return draw(acts), draw(other)


other_tokens = model.to_tokens("The state containing Oakland has its capital in")[0]
same_tokens = model.to_tokens("The state containing Houston has its capital in")[0]
pos = len(tokens) - 1
acts, other, same = (acts_at(rm, t, pos) for t in (tokens, other_tokens, same_tokens))
generator = torch.Generator().manual_seed(1)  # each baseline its own seed: its draws do not depend on earlier cells
rows = []
for k in (4, 8, 16, 32):
    own, new = contrast_latents(acts, other, k)
    zeroed = next_token_probs(rm, tokens, [(layer, pos, latent, 0.0) for layer, latent in own])
    swapped = next_token_probs(rm, tokens, swap_interventions(own, new, other, pos))
    control = next_token_probs(rm, tokens, swap_interventions(*contrast_latents(acts, same, k), same, pos))
    randomly = [float(next_token_probs(rm, tokens, swap_interventions(*random_swap(acts, other, k, generator), other, pos))[SACRAMENTO])
                for _ in range(20)]
    rows.append([k, f"{float(zeroed[AUSTIN]):.3f}", f"{float(swapped[SACRAMENTO]):.3f}", model.to_str_tokens(swapped.argmax())[0],
                 spread(randomly), f"{float(control[AUSTIN]):.3f}", model.to_str_tokens(control.argmax())[0]])
print(tabulate(rows, headers=["k each way", "Dallas side zeroed: P(Austin)", "swap: P(Sacramento)", "swap: top-1",
                              "random swap: P(Sacramento)", "Dallas <- Houston: P(Austin)", "top-1"]))

# %% [markdown]
# Expected output: for this pair the swap needs many latents. With 16 each way P(' Sacramento')
# rises to {{0.263}} but ' Austin' stays top-1; with 32 the answer flips (P(' Sacramento') =
# {{0.737}}), while zeroing the same 32 Dallas-side latents alone leaves P(' Austin') at {{0.198}}.
# The controls hold: a random swap of 32 each way gives P(' Sacramento') {{0.011 (0.002-0.029)}},
# and swapping in Houston's 32 most different latents keeps ' Austin' ({{0.897}}). So the flip
# comes from *which* latents are swapped, not from damage. Whether they carry the state or already
# the capital, a swap at the last position cannot tell: both differ between the two prompts.

# %% [markdown]
# ### Exercise 10 · `same_state_donors`
#
# Over many pairs, every swap needs its control. For a swap into `city`'s prompt, the control swaps
# in a city that changes as much text as the experiment's donor but not the thing being tested, the
# state. `state_cities` maps each state to its cities (`world_facts.STATES[state]["cities"]`
# gives them). Return every city that can serve as `city`'s control donor, in the table's order.

# %% [exercise]
def same_state_donors(city: str, state_cities: dict[str, list[str]]) -> list[str]:
    """The control donors of a swap into `city`'s prompt."""
    # BEGIN SOLUTION
    state = next(s for s, cities in state_cities.items() if city in cities)
    return [c for c in state_cities[state] if c != city]
    # END SOLUTION

# %% [hint]
# A control keeps everything of the experiment except what is tested. Here a swap with a city of
# another state tests "which state"; the control swaps with a city of the *same* state, so the
# amount of editing is alike but the answer should not move. A swap with the city itself cannot
# fail, so it controls nothing.

# %% [hint]
# Find the state whose list holds `city`, then return that list without `city`.

# %% [check]
tests.test_same_state_donors(same_state_donors)

# %% [markdown]
# ### Many pairs
#
# One pair can be luck. `flip_rate_table` takes one city per state (the first of each state in the
# fact table) and runs the swap for every ordered pair of different states (182 pairs): a pair
# counts as flipped when the other state's capital becomes the top-1. Its controls: the same swap
# between cities of the *same* state (each state's first city ← its three other cities, 42 pairs),
# counted as kept when the own capital stays top-1, and the random swap, on 14 pairs (each state ←
# the next state in the table), 20 draws. Attention is free in this table (a free run costs half a
# frozen one), controls included; one column repeats k = 16 with attention frozen.

# %%
from utils.world import facts as world_facts  # noqa: E402

CITIES = {state: d["cities"][0] for state, d in world_facts.STATES.items()}
CAPITAL = {city: model.to_single_token(" " + world_facts.STATE_TO_CAPITAL[state])
           for city, state in world_facts.CITY_TO_STATE.items()}
city_tokens = {city: model.to_tokens(f"The state containing {city} has its capital in")[0] for city in CAPITAL}
city_acts = {city: acts_at(rm, t, pos) for city, t in city_tokens.items()}  # every prompt has 9 tokens


def top1_after_swap(city: str, donor: str, k: int, frozen: bool = True, chooser=contrast_latents) -> int:
    """Top-1 next token of the city's prompt with the donor's latents swapped in at the last position."""
    own, new = chooser(city_acts[city], city_acts[donor], k)
    probs = next_token_probs(rm, city_tokens[city], swap_interventions(own, new, city_acts[donor], pos), freeze_attention=frozen)
    return int(probs.argmax())


different = [(a, b) for a in CITIES.values() for b in CITIES.values() if a != b]
STATE_CITIES = {state: d["cities"] for state, d in world_facts.STATES.items()}
same_state = [(city, donor) for city in CITIES.values() for donor in same_state_donors(city, STATE_CITIES)]
neighbours = list(zip(CITIES.values(), [*list(CITIES.values())[1:], list(CITIES.values())[0]]))


def flip_rate_table(k: int, frozen: bool = False) -> float:
    return sum(top1_after_swap(a, b, k, frozen) == CAPITAL[b] for a, b in different) / len(different)


rows = []  # attention free in every column but one (half the cost of a frozen run); frozen at k = 16 for comparison
for k in (8, 16, 32):
    kept_rate = sum(top1_after_swap(a, b, k, frozen=False) == CAPITAL[a] for a, b in same_state) / len(same_state)
    rows.append([k, f"{flip_rate_table(k):.2f}", f"{flip_rate_table(k, frozen=True):.2f}" if k == 16 else "-", f"{kept_rate:.2f}"])
print(tabulate(rows, headers=["k each way", "flip rate, free (182 pairs)", "frozen", "same state: kept, free (42 pairs)"]))
generator = torch.Generator().manual_seed(2)
for k in (16,):
    chooser = lambda a, o, k: random_swap(a, o, k, generator)  # noqa: E731
    rates = [sum(top1_after_swap(a, b, k, frozen=False, chooser=chooser) == CAPITAL[b] for a, b in neighbours) / len(neighbours)
             for _ in range(20)]
    print(f"random swap, k = {k}, free, 14 pairs x 20 draws: flip rate {spread(rates)}")

# %% [markdown]
# Expected output: the flip rate grows with k, {{0.36}} at 8 latents each way, {{0.86}} at 16 and
# {{0.98}} at 32 (attention free), and freezing attention changes it little (at k = 16: {{0.87}}
# frozen). The controls bound how far k can go: a random swap of 16 flips
# {{0.000 (0.000-0.079)}} of its pairs, and same-state swaps keep the answer in {{0.98}} of pairs
# at k = 16 but only {{0.83}} at k = 32, where the swap starts to damage answers it should leave
# alone. Around 16 latents each way at the last position carry enough to hand the answer to
# another state in most pairs; Dallas ← Oakland, which needed 32, is one of the pairs that 16
# leaves unflipped.
#
# ## 5 · Generation with interventions
#
# An intervention can also be held while the model writes. `generate_with_interventions` (in
# `utils/interventions.py`, around circuit_tracer's `feature_intervention_generate`) continues the
# prompt greedily. A position can be a `slice`: `slice(n, None)` means "position n and every
# position after it", including the tokens the model generates.
#
# ### Exercise 11 · `from_position_on`
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
# While generating, the text grows, so an intervention tied to one position would not touch the new
# tokens. Hold each intervention instead from its position to the end of the text, however long
# that becomes.

# %% [hint]
# Keep layer, latent and value; only the position changes, to a slice that has no end: `slice(pos,
# None)`.

# %% [check]
tests.test_from_position_on(from_position_on)

# %%
own, new = contrast_latents(acts, other, 32)  # the k at which this pair flips (section 4)
swap = swap_interventions(own, new, other, pos)
for name, chosen in [("no intervention", []), ("swap at the last position", swap),
                     ("swap held on every later position", from_position_on(swap))]:
    out = generate_with_interventions(rm, tokens, chosen, max_new_tokens=8)
    print(f"{name:34} ->{model.tokenizer.decode(out[len(tokens):].tolist())}")

# %% [markdown]
# Expected output: without intervention the model goes on "{{Austin. The state that contains Dallas has}}".
# With the swap (32 each way) at the last position only, it writes "{{Sacramento. The state that contains Dallas has}}":
# the answer changes, and the next sentence still reads ' Dallas' from the prompt, which the swap
# never touched. Held on every later position, the swap writes latents taken from the position
# right before the answer into every new position, and the text degenerates into
# "{{Sacramento, Sacramento Sacramento}}": a likely reading (not measured here) is that every
# position now looks like one where a capital comes next.

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


LANDMARK_PROMPT = "Everyone knows the Eiffel tower is located in"
landmark_graph = attribute_prompt(LANDMARK_PROMPT)
for name, g in [("Dallas (two-hop)", graph), ("Eiffel (landmark)", landmark_graph)]:
    replacement, completeness = compute_graph_scores(g)
    print(f"{name:18} replacement {replacement:.3f}  completeness {completeness:.3f}")

# %% [markdown]
# Expected output: the Dallas graph scores {{0.687}} and {{0.904}} (as in chapter 03), the Eiffel
# graph {{0.648}} and {{0.885}}. On both prompts about a third of the embeddings' influence reaches
# the answer through error nodes. These are two prompts: chapter 03 showed how the error share
# varies over the held-out cities. The swaps above worked despite the errors because they only
# need the latents that differ between two prompts, not a complete account of either.
#
# ## 7 · A second circuit, found blind
#
# Now the landmark facts: "Everyone knows the Eiffel tower is located in" → ' Paris'. Every
# landmark is written in three pieces (' E', 'iff', 'el'), so all such prompts have the same
# length and a swap between two of them lines up position by position. Where does the model
# hold "which city"? At the landmark's pieces, only at the last position, or spread over
# several? Find out with swaps, before looking at any label. A swap can now cover a
# *set* of positions: at each one, the `k` latents each way that differ most there.
#
# ### Exercise 12 · `flip_rate`
#
# For prompts of equal length and their answer token ids, return the fraction of ordered pairs
# `(i, j)` with different answers for which swapping prompt `j`'s contrast latents into prompt
# `i` makes `answers[j]` the top-1 next token of prompt `i`. `positions` is one position or a list
# of them; at each position `p`, take the contrast latents (exercises 8 and 9, `k` each way) from
# the two prompts' activations at `p` (`acts_at(rm, tokens, p)`, defined at the top), and apply all
# positions' swaps together in one run of `next_token_probs(rm, tokens, interventions)`.

# %% [exercise]
def flip_rate(rm, prompts: list[Tensor], answers: list[int], positions: int | list[int], k: int = 8) -> float:
    """Fraction of ordered pairs with different answers that the swap at `positions` flips to the other answer."""
    # BEGIN SOLUTION
    positions = [positions] if isinstance(positions, int) else list(positions)
    acts = [{p: acts_at(rm, tokens, p) for p in positions} for tokens in prompts]
    flipped = pairs = 0
    for i, (tokens, answer) in enumerate(zip(prompts, answers)):
        for j, other_answer in enumerate(answers):
            if other_answer == answer:
                continue
            interventions = []
            for p in positions:
                own, new = contrast_latents(acts[i][p], acts[j][p], k)
                interventions += swap_interventions(own, new, acts[j][p], p)
            probs = next_token_probs(rm, tokens, interventions)
            flipped += int(probs.argmax()) == other_answer
            pairs += 1
    return flipped / pairs
    # END SOLUTION

# %% [hint]
# For every ordered pair of prompts with different answers, swap prompt i's distinguishing latents
# for prompt j's at the given positions and see whether the model's top prediction becomes j's
# answer. The flip rate is the fraction of those pairs that flip. Reuse `contrast_latents` and
# `swap_interventions` for each position.

# %% [hint]
# Compute each prompt's activations once per position, outside the pair loop, and skip pairs with
# equal answers. Collect the interventions of every position in one list before running the model:
# swapping one position at a time measures something else. A pair is flipped when the argmax equals
# `answers[j]`, not when P(`answers[j]`) merely rises.

# %% [check]
tests.test_flip_rate(flip_rate)

# %% [markdown]
# ### Exercise 13 · `position_sets`
#
# The experiment's design is yours. A landmark prompt has the landmark's pieces (positions
# `pieces`, here the three pieces of the name) and the last position `last`, where the model
# answers. Return the **sets of positions** whose flip rates will answer "where is the city held",
# each set a list of positions, as `flip_rate` takes them. The answer must be readable whatever it
# turns out to be: a single position, the pieces, the last position, or several of these together.
# Position 0 is the BOS token, which is the same in every prompt.

# %% [exercise]
def position_sets(pieces: list[int], last: int) -> list[list[int]]:
    """The sets of positions to swap at, to find where the landmark prompts hold their city."""
    # BEGIN SOLUTION
    return [[pieces[-1]], [last], list(pieces), [*pieces, last]]
    # END SOLUTION

# %% [hint]
# Test single positions, so you can see a place that holds the city alone, but also sets: if the
# city is spread over several positions, a swap at one of them is outvoted by the others, and a
# search that only tries one position at a time concludes that nothing carries it.

# %% [hint]
# Four sets are enough here: one piece alone, the last position alone, all the pieces together,
# and all the pieces with the last position. Each costs one `flip_rate` run (56 pairs), so keep the
# list short.

# %% [check]
tests.test_position_sets(position_sets)

# %%
first_per_city: dict = {}
for lm in world_facts.LANDMARKS:
    first_per_city.setdefault(lm.city, lm)
landmarks = list(first_per_city.values())[:8]  # the first landmark of each of 8 cities
landmark_prompts = [model.to_tokens(f"Everyone knows the {lm.name} {lm.kind} is located in")[0] for lm in landmarks]
landmark_answers = [model.to_single_token(" " + lm.city) for lm in landmarks]
print(model.to_str_tokens(landmark_prompts[0]))
answered = sum(int(next_token_probs(rm, t).argmax()) == a for t, a in zip(landmark_prompts, landmark_answers))
print(f"the replacement model answers {answered} of {len(landmarks)} landmark prompts")
last = len(landmark_prompts[0]) - 1
PIECES = [4, 5, 6]
NAMES = {(PIECES[-1],): "last piece", (last,): "last position", tuple(PIECES): "the three pieces",
         (*PIECES, last): "pieces + last"}
rows = []
for positions in position_sets(PIECES, last):
    where = NAMES.get(tuple(sorted(positions)), "")
    ks = (16, 32) if len(positions) > len(PIECES) else (16,)  # k matters where something flips
    rates = {k: f"{flip_rate(rm, landmark_prompts, landmark_answers, positions, k):.2f}" for k in ks}
    rows.append([positions, where, rates[16], rates.get(32, "-")])
print(tabulate(rows, headers=["positions", "", "flip rate, k=16", "k=32"]))
print(f"last position alone, 64 each way (as many latents as 16 at each of four positions): "
      f"{flip_rate(rm, landmark_prompts, landmark_answers, last, 64):.2f}")

# %%
generator = torch.Generator().manual_seed(3)
rates = []
for _ in range(20):
    flipped = 0
    for i in range(len(landmarks)):
        j = (i + 1) % len(landmarks)
        interventions = []
        for p in [*PIECES, last]:
            a, o = acts_at(rm, landmark_prompts[i], p), acts_at(rm, landmark_prompts[j], p)
            interventions += swap_interventions(*random_swap(a, o, 16, generator), o, p)
        flipped += int(next_token_probs(rm, landmark_prompts[i], interventions).argmax()) == landmark_answers[j]
    rates.append(flipped / len(landmarks))
print(f"random swap at the pieces and the last position, k = 16, 8 pairs x 20 draws: flip rate {spread(rates)}")

# %% [markdown]
# *Your hypothesis, before the reveal:* where is "which city" held, and by how many latents?
#
# Expected output: the replacement model answers all {{8 of 8}} landmark prompts. Swapping at any
# one position flips almost nothing (at most {{0.07}} of the 56 pairs with 16 latents each way, at
# the three pieces together), but swapping at the pieces *and* the last position together flips
# {{0.38}} with 16 each way and {{0.55}} with 32. The city is not held at one place: it is spread
# over the landmark's pieces and the last position, and a swap at the pieces alone, or at the
# last position alone, is outvoted by what the other positions still hold. It is not the number
# of latents: 64 each way at the last position alone, as many as 16 at each of the four
# positions, flip {{0.02}}. (A one-position-at-a-time search would have concluded that no latents
# carry it.) Random swaps of the same size at the same four positions flip {{0.000 (0.000-0.000)}} of their
# pairs: the flips come from the contrast latents, not from editing that many activations.

# %% [markdown]
# ### The reveal
#
# The planted labels say what the swapped latents are. For one pair, Eiffel (Paris) ← Colosseum
# (Rome), here are the latents the swap at the pieces and the last position moves, with their
# best planted concept on the labelled corpus, and for comparison the share of *all* latents
# active at those positions whose best concept is a landmark or a city:

# %%
eiffel = landmark_prompts[0]
colosseum = landmark_prompts[[lm.name for lm in landmarks].index("Colosseum")]


def best_concept(layer: int, latent: int) -> str:
    return scores[layer].concepts[int(scores[layer].f1[:, latent].argmax())]


def about_places(concept: str) -> bool:
    return concept.startswith(("landmark", "city:", "country:"))


interventions, moved = [], []
for p in [*PIECES, last]:
    a, o = acts_at(rm, eiffel, p), acts_at(rm, colosseum, p)
    own, new = contrast_latents(a, o, 16)
    interventions += swap_interventions(own, new, o, p)
    moved += [(p, layer, latent) for layer, latent in own + new]
active = [(p, int(layer), int(latent)) for p in [*PIECES, last]
          for layer, latent in acts_at(rm, eiffel, p).nonzero().tolist()]
print(f"swapped latents about a place: {sum(about_places(best_concept(l, i)) for _, l, i in moved)} of {len(moved)}; "
      f"among all {len(active)} latents active at those positions on Eiffel: "
      f"{sum(about_places(best_concept(l, i)) for _, l, i in active) / len(active):.2f}")
print("place-labelled swapped latents:", "; ".join(f"L{l} #{i} @{p}: {best_concept(l, i)}" for p, l, i in moved
                                                    if about_places(best_concept(l, i))))
probs = next_token_probs(rm, eiffel, interventions)
print("after the swap, top-1:", model.to_str_tokens(probs.argmax())[0])

# %% [markdown]
# Expected output: this pair flips (top-1 {{Rome}}). Of the {{128}} latents the swap moves,
# {{48}} have a place concept (a landmark, a city) as best concept, a smaller share than among all
# {{283}} latents active at those positions ({{0.46}}), and only three name one landmark
# ({{landmark:Eiffel}}, {{landmark:Colosseum}}, {{landmark:Reichstag}}); most carry the generic
# `landmark` or `landmark_city` labels. The labels do not single out the latents that carry the
# city; the contrast between two prompts does, once it covers every position that holds the fact.
# Chapter 05 looks at why a dictionary can split or blur a concept like this.
