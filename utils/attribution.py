"""Attribution-graph data shared by chapters 03 and 04.

    from utils.attribution import run_prompt, GraphNodes, to_circuit_tracer_graph
    run = run_prompt(model, transcoders, tokens)      # everything the local replacement model freezes
    graph = to_circuit_tracer_graph(model, nodes, adjacency, prompt=...)   # a circuit_tracer Graph

Chapter 03 builds graphs from scratch with its nodes in *topological* order (embeddings, then per
layer its latents and its error nodes, then the logits), which makes the adjacency matrix strictly
lower-triangular. circuit_tracer orders the same nodes [latents, errors, embeddings, logits];
`circuit_tracer_order` gives the permutation between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EMBEDDING, LATENT, ERROR, LOGIT = 0, 1, 2, 3
KIND_NAMES = {EMBEDDING: "embedding", LATENT: "latent", ERROR: "error", LOGIT: "logit"}


@dataclass
class PromptRun:
    """One clean run of the model on a prompt (no batch dimension), with its transcoders read.

    Shapes: `tokens` (n_pos,), `logits` (n_pos, d_vocab); per layer, stacked on dimension 0:
    `patterns` (n_layers, n_heads, n_pos, n_pos), `ln1_scale` and `ln2_scale` (n_layers, n_pos, 1),
    `normalized` = ln2.hook_normalized (n_layers, n_pos, d_model), `mlp_out` (n_layers, n_pos, d_model),
    `latents` (n_layers, n_pos, d_sae) and `errors` (n_layers, n_pos, d_model); `final_scale`
    (n_pos, 1) is ln_final's scale. Latents at position 0 (BOS) are set to 0, as circuit_tracer does,
    and `errors = mlp_out - decode(latents)`, so that decode(latents) + errors is exactly the MLP output.
    """

    tokens: Tensor
    logits: Tensor
    patterns: Tensor
    ln1_scale: Tensor
    ln2_scale: Tensor
    final_scale: Tensor
    normalized: Tensor
    mlp_out: Tensor
    latents: Tensor
    errors: Tensor

    @property
    def n_pos(self) -> int:
        return len(self.tokens)


def _frozen_names(name: str) -> bool:
    return name.endswith(("hook_pattern", "hook_scale", "ln2.hook_normalized", "hook_mlp_out"))


@torch.no_grad()
def run_prompt(model, transcoders: dict, tokens) -> PromptRun:
    """Run `model` once on `tokens` (a 1-D tensor or list of ids starting with BOS) and read every transcoder."""
    tokens = torch.as_tensor(tokens).flatten()
    if tokens.ndim != 1 or len(tokens) < 2:
        raise ValueError(f"run_prompt wants one prompt as a 1-D tensor of at least 2 token ids, got shape {tuple(tokens.shape)}")
    if model.tokenizer is not None and int(tokens[0]) != model.tokenizer.bos_token_id:
        raise ValueError("the prompt must start with BOS (model.to_tokens(text) adds it)")
    n_layers = model.cfg.n_layers
    logits, cache = model.run_with_cache(tokens[None], names_filter=_frozen_names)

    def stacked(name: str) -> Tensor:
        return torch.stack([cache[name.format(layer)][0] for layer in range(n_layers)])

    normalized = stacked("blocks.{}.ln2.hook_normalized")
    latents = torch.stack([transcoders[layer].encode(normalized[layer]) for layer in range(n_layers)])
    latents[:, 0] = 0  # BOS: the same in every prompt, never a node
    mlp_out = stacked("blocks.{}.hook_mlp_out")
    reconstruction = torch.stack([transcoders[layer].decode(latents[layer]) for layer in range(n_layers)])
    return PromptRun(
        tokens=tokens, logits=logits[0], patterns=stacked("blocks.{}.attn.hook_pattern"),
        ln1_scale=stacked("blocks.{}.ln1.hook_scale"), ln2_scale=stacked("blocks.{}.ln2.hook_scale"),
        final_scale=cache["ln_final.hook_scale"][0], normalized=normalized, mlp_out=mlp_out, latents=latents,
        errors=mlp_out - reconstruction,
    )


@dataclass
class GraphNodes:
    """The nodes of an attribution graph, one entry per node in every tensor (all of length n_nodes).

    kind: EMBEDDING, LATENT, ERROR or LOGIT (0-3)
    layer: -1 for embeddings, the layer for latents and errors, n_layers for logits
    pos: the token position (logits: the last position)
    index: the token id (embeddings, logits), the latent id (latents), -1 (errors)
    activation: the latent's activation (latents); 1 for embeddings and errors (0 for the error at BOS,
        which is never attributed); the probability of the token (logits)
    """

    kind: Tensor
    layer: Tensor
    pos: Tensor
    index: Tensor
    activation: Tensor

    def __len__(self) -> int:
        return len(self.kind)

    def __getitem__(self, which) -> "GraphNodes":
        """The nodes selected by a mask or index tensor, in that order."""
        return GraphNodes(self.kind[which], self.layer[which], self.pos[which], self.index[which], self.activation[which])

    @property
    def logit_weights(self) -> Tensor:
        """(n_nodes,) the probability of each logit node, 0 for other nodes: the weights of influence."""
        return torch.where(self.kind == LOGIT, self.activation, torch.zeros_like(self.activation))

    def describe(self, i: int, tokenizer=None) -> str:
        """A short name for node i, e.g. 'L2 #589 @4', 'err L1 @3', 'emb ' Dallas' @4', 'logit ' Austin''."""
        kind, layer, pos, index = (int(t[i]) for t in (self.kind, self.layer, self.pos, self.index))
        text = repr(tokenizer.decode([index])) if tokenizer is not None and index >= 0 else f"#{index}"
        if kind == LATENT:
            return f"L{layer} #{index} @{pos}"
        if kind == ERROR:
            return f"err L{layer} @{pos}"
        if kind == EMBEDDING:
            return f"emb {text} @{pos}"
        return f"logit {text}"


def circuit_tracer_order(nodes: GraphNodes) -> Tensor:
    """Indices of our nodes in circuit_tracer's order: latents, errors, embeddings, logits.

    `adjacency[perm][:, perm]` is then circuit_tracer's adjacency matrix, if within each kind our nodes
    are sorted as circuit_tracer sorts them (latents by layer, position, id; errors by layer, position).
    """
    return torch.cat([(nodes.kind == kind).nonzero()[:, 0] for kind in (LATENT, ERROR, EMBEDDING, LOGIT)])


def to_circuit_tracer_graph(model, tokens: Tensor, nodes: GraphNodes, adjacency: Tensor, scan: str | None = None):
    """Our graph as a `circuit_tracer.graph.Graph` (for prune_graph, compute_graph_scores, the explorer...).

    `adjacency[target, source]` in the order of `nodes`; latents must be sorted by (layer, pos, id) and
    errors by (layer, pos), which is the order `build_graph_nodes` makes. `scan` defaults to the
    model's name (the course world's is "course-world-v2"), which tells the explorer which world it is.
    """
    from circuit_tracer.attribution.targets import LogitTarget
    from circuit_tracer.graph import Graph

    perm = circuit_tracer_order(nodes)
    latents = nodes[nodes.kind == LATENT]
    logits = nodes[nodes.kind == LOGIT]
    n_errors = int((nodes.kind == ERROR).sum())
    if n_errors != model.cfg.n_layers * len(tokens) or int((nodes.kind == EMBEDDING).sum()) != len(tokens):
        raise ValueError("a circuit_tracer graph needs one error node per layer and position and one embedding per position")
    tokens = torch.as_tensor(tokens).flatten()
    targets = [LogitTarget(token_str=model.tokenizer.decode([int(i)]), vocab_idx=int(i)) for i in logits.index]
    return Graph(
        input_string=model.tokenizer.decode(tokens.tolist()),
        input_tokens=tokens,
        active_features=torch.stack([latents.layer, latents.pos, latents.index], dim=1),
        adjacency_matrix=adjacency[perm][:, perm].detach().clone(),
        cfg=model.cfg,
        selected_features=torch.arange(len(latents)),
        activation_values=latents.activation.clone(),
        logit_targets=targets,
        logit_probabilities=logits.activation.clone(),
        vocab_size=model.cfg.d_vocab,
        scan=scan or model.cfg.model_name,
    )
