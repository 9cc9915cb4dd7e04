"""Ground truth for latents: labelled held-out text, dictionary activations on it, and
precision/recall of every latent against every planted concept.

    data = labelled_corpus(n_docs=300)                 # tokens + concept labels, held-out split
    acts = dictionary_activations(model, sae, data.tokens)  # (n_docs, n_ctx, d_sae)
    scores = concept_scores(acts, data)                # precision / recall / f1 per (concept, latent)

A latent "fires" on a token when its activation is > 0. Precision is P(concept | fires),
recall is P(fires | concept), both over non-padding, non-BOS tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .corpus import BOS, PAD, CorpusGenerator, all_tokens

# The concepts the quality report scores (a readable subset of all labels the corpus records).
KEY_CONCEPTS = (
    "landmark", "city:Paris", "country:France", "state:Texas", "in_state:Texas", "p3_repeat",
    "goal_family", "sports", "estimate_number", "number", "in_quote", "quote_close",
    "definition", "category:bird", "category_name", "name", "pronoun:she", "profession:nurse",
)


@dataclass
class LabelledCorpus:
    tokens: torch.Tensor  # (n_docs, n_ctx) token ids, BOS first, PAD after the document
    concepts: list[str]  # concept names, one per column of `labels`
    labels: torch.Tensor  # (n_docs, n_ctx, n_concepts) bool
    mask: torch.Tensor  # (n_docs, n_ctx) bool: real tokens (not BOS, not PAD)

    def concept_index(self, name: str) -> int:
        try:
            return self.concepts.index(name)
        except ValueError:
            raise KeyError(f"unknown concept {name!r}; known: {self.concepts[:20]} ...") from None


@lru_cache(maxsize=4)
def labelled_corpus(n_docs: int = 300, n_ctx: int = 128, split: str = "heldout", seed: int = 11) -> LabelledCorpus:
    """`n_docs` documents of the given split with their token-level concept labels."""
    vocab = {t: i for i, t in enumerate(all_tokens())}
    gen = CorpusGenerator(seed=seed, split=split)
    docs = [gen.document(max_tokens=n_ctx - 1) for _ in range(n_docs)]
    concepts = sorted({lab for d in docs for tok in d for lab in tok.labels})
    col = {c: i for i, c in enumerate(concepts)}
    tokens = torch.full((n_docs, n_ctx), vocab[PAD], dtype=torch.long)
    labels = torch.zeros(n_docs, n_ctx, len(concepts), dtype=torch.bool)
    mask = torch.zeros(n_docs, n_ctx, dtype=torch.bool)
    for i, doc in enumerate(docs):
        tokens[i, 0] = vocab[BOS]
        for j, tok in enumerate(doc, start=1):
            tokens[i, j] = vocab[tok.text]
            mask[i, j] = True
            for lab in tok.labels:
                labels[i, j, col[lab]] = True
    return LabelledCorpus(tokens, concepts, labels, mask)


@torch.no_grad()
def dictionary_activations(model, dictionary, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Latent activations of an SAE or transcoder on `tokens`, shape (n_docs, n_ctx, d_sae)."""
    hook = dictionary.cfg.metadata.hook_name
    out = []
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[i:i + batch_size], names_filter=hook)
        out.append(dictionary.encode(cache[hook]))
    return torch.cat(out)


@dataclass
class ConceptScores:
    concepts: list[str]
    precision: torch.Tensor  # (n_concepts, d_sae)
    recall: torch.Tensor
    f1: torch.Tensor
    density: torch.Tensor  # (d_sae,) fraction of tokens on which each latent fires

    def best_latent(self, concept: str) -> tuple[int, float, float, float]:
        """(latent, precision, recall, f1) of the latent with the highest F1 for `concept`."""
        c = self.concepts.index(concept)
        j = int(self.f1[c].argmax())
        return j, float(self.precision[c, j]), float(self.recall[c, j]), float(self.f1[c, j])

    def best_concept(self, latent: int) -> tuple[str, float, float, float]:
        """(concept, precision, recall, f1) that latent `latent` matches best."""
        c = int(self.f1[:, latent].argmax())
        return self.concepts[c], float(self.precision[c, latent]), float(self.recall[c, latent]), float(self.f1[c, latent])


def concept_scores(acts: torch.Tensor, data: LabelledCorpus) -> ConceptScores:
    fires = (acts[data.mask] > 0).float()  # (n_tokens, d_sae)
    labels = data.labels[data.mask].float()  # (n_tokens, n_concepts)
    true_pos = labels.T @ fires
    precision = true_pos / fires.sum(0).clamp_min(1)
    recall = true_pos / labels.sum(0).clamp_min(1)[:, None]
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
    return ConceptScores(data.concepts, precision, recall, f1, fires.mean(0))
