"""Score single latents of the course world against its ground truth.

Every token of the held-out course corpus carries the concepts that produced it
(`utils.world.labelled_corpus`), and its own and its previous token are known. So a claim such as
"F0.17 fires on ' E'" or "this latent fires on the repeated half of a random run" can be
checked with a precision and a recall instead of by eye:

    from utils.world import labelled_corpus, load_dictionary, load_model
    model, sae, data = load_model(), load_dictionary("resid_pre_0"), labelled_corpus()
    acts = corpus_activations(model, {"resid_pre_0": sae}, data)     # one forward pass
    print(score(acts["resid_pre_0"][..., 17], token_is(data, model.to_single_token(" E")), data))

A latent "fires" on a token when its activation is > 0; BOS and padding are left out, as in
`concept_scores` (utils/world/concepts.py, the world-agnostic scoring that both worlds' corpora use).
The functions here take any labelled corpus and model; none of them loads a world.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from utils.world import concepts
from utils.world.concepts import LabelledCorpus


@dataclass(frozen=True)
class Match:
    """How well "the latent fires" predicts a ground-truth set of tokens."""

    truth: str  # what the set is, e.g. "concept p3_repeat" or "token ' E'"
    precision: float  # P(truth | fires)
    recall: float  # P(fires | truth)
    n_fires: int
    n_truth: int

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def __str__(self) -> str:
        return (f"{self.truth}: precision {self.precision:.2f}, recall {self.recall:.2f} "
                f"({self.n_fires} tokens fire, {self.n_truth} tokens true)")


def corpus_activations(model, dictionaries: dict, data: LabelledCorpus, batch_size: int = 50) -> dict[str, Tensor]:
    """{name: latent activations (n_docs, n_ctx, d_sae)} of several dictionaries on the corpus,
    sharing the forward passes."""
    return concepts.corpus_activations(model, dictionaries, data.tokens, batch_size)


def concept(data: LabelledCorpus, name: str) -> Tensor:
    """Tokens labelled with a planted concept, shape (n_docs, n_ctx)."""
    return data.labels[..., data.concept_index(name)]


def token_is(data: LabelledCorpus, token_id: int) -> Tensor:
    return data.tokens == token_id


def score(latent_acts: Tensor, truth: Tensor, data: LabelledCorpus, name: str = "truth") -> Match:
    """Precision and recall of "latent_acts > 0" for the tokens where `truth` holds."""
    fires = (latent_acts > 0) & data.mask
    truth = truth & data.mask
    hits = int((fires & truth).sum())
    n_fires, n_truth = int(fires.sum()), int(truth.sum())
    return Match(name, hits / max(n_fires, 1), hits / max(n_truth, 1), n_fires, n_truth)


def best_concepts(latent_acts: Tensor, data: LabelledCorpus, n: int = 3) -> list[Match]:
    """The `n` planted concepts that the latent matches best (by F1)."""
    fires = ((latent_acts > 0) & data.mask)[data.mask].float()  # (n_tokens,)
    labels = data.labels[data.mask].float()  # (n_tokens, n_concepts)
    hits = fires @ labels
    precision = hits / fires.sum().clamp_min(1)
    recall = hits / labels.sum(0).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
    return [Match(f"concept {data.concepts[c]}", float(precision[c]), float(recall[c]), int(fires.sum()),
                  int(labels[:, c].sum()))
            for c in f1.argsort(descending=True, stable=True)[:n].tolist()]


def best_token(latent_acts: Tensor, data: LabelledCorpus, tokenizer, previous: bool = False) -> Match:
    """The single token (or previous token) whose identity best predicts where the latent fires."""
    fires = (latent_acts > 0) & data.mask
    tokens = data.tokens if not previous else torch.cat([data.tokens[:, :1], data.tokens[:, :-1]], 1)
    ids, truth_counts = tokens[data.mask].unique(return_counts=True)
    hit_counts = torch.bincount(tokens[fires], minlength=int(ids.max()) + 1)[ids].float()
    precision = hit_counts / max(int(fires.sum()), 1)
    recall = hit_counts / truth_counts
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
    best = int(f1.argmax())
    word = "previous token" if previous else "token"
    text = tokenizer.convert_ids_to_tokens(int(ids[best]))
    return Match(f"{word} {text!r}", float(precision[best]), float(recall[best]), int(fires.sum()),
                 int(truth_counts[best]))


def token_dependence(latent_acts: Tensor, data: LabelledCorpus, previous: bool = False) -> float:
    """Share of the variance of a latent's activation explained by the identity of the token it
    sits on (or of the token before it): the between-token variance over the total (η²).

    A previous-token latent is explained much better by the previous token than by its own.
    """
    tokens = data.tokens if not previous else torch.cat([data.tokens[:, :1], data.tokens[:, :-1]], 1)
    values, ids = latent_acts[data.mask].double(), tokens[data.mask]
    total = ((values - values.mean()) ** 2).sum()
    if total == 0:
        return 0.0  # a latent that never varies (e.g. dead) depends on nothing
    n = int(ids.max()) + 1
    sums = torch.zeros(n, dtype=torch.double).index_add_(0, ids, values)
    counts = torch.zeros(n, dtype=torch.double).index_add_(0, ids, torch.ones_like(values))
    means = sums / counts.clamp_min(1)
    return float(((means[ids] - values.mean()) ** 2).sum() / total)


def top_share(latent_acts: Tensor, truth: Tensor, data: LabelledCorpus, n: int = 20) -> float:
    """Share of the latent's `n` strongest activations that fall on `truth` tokens: what its
    top activating examples (as on a dashboard) say, where weak firings do not count."""
    values, hits = latent_acts[data.mask], truth[data.mask]
    top = values.topk(min(n, len(values)))
    strong = top.indices[top.values > 0]
    return float(hits[strong].float().mean()) if len(strong) else 0.0
