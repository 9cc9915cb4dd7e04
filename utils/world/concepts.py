"""Ground truth for latents: labelled held-out text, dictionary activations on it, and
precision/recall of every latent against every planted concept.

    data = labelled_corpus(n_docs=300)                 # tokens + concept labels, held-out split
    acts = dictionary_activations(model, sae, data.tokens)  # (n_docs, n_ctx, d_sae)
    scores = concept_scores(acts, data)                # precision / recall / f1 per (concept, latent)
    by_name = streamed_concept_scores(model, {"resid_pre_2": sae}, data)  # the same, batch by batch

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


def _layer_of(hook: str) -> int:
    return int(hook.split(".")[1])


@torch.no_grad()
def corpus_activations(model, dictionaries: dict, tokens: torch.Tensor, batch_size: int = 50) -> dict:
    """{key: latent activations (n_docs, n_ctx, d_sae)} of several SAEs or transcoders, sharing
    the forward passes and stopping after the last layer any of them reads."""
    hooks = {key: d.cfg.metadata.hook_name for key, d in dictionaries.items()}
    stop = max(_layer_of(h) for h in hooks.values()) + 1
    out: dict = {key: [] for key in dictionaries}
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[i:i + batch_size], names_filter=sorted(set(hooks.values())),
                                        stop_at_layer=stop)
        for key, dictionary in dictionaries.items():
            out[key].append(dictionary.encode(cache[hooks[key]]))
    return {key: torch.cat(parts) for key, parts in out.items()}


def dictionary_activations(model, dictionary, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Latent activations of one SAE or transcoder on `tokens`, shape (n_docs, n_ctx, d_sae)."""
    return corpus_activations(model, {0: dictionary}, tokens, batch_size)[0]


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


def _scores(concepts: list[str], true_pos: torch.Tensor, fired: torch.Tensor, per_concept: torch.Tensor,
            n_tokens: int) -> ConceptScores:
    """ConceptScores from counts: true positives (n_concepts, d_sae), firings (d_sae,), labels (n_concepts,)."""
    precision = true_pos / fired.clamp_min(1)
    recall = true_pos / per_concept.clamp_min(1)[:, None]
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
    return ConceptScores(list(concepts), precision, recall, f1, fired / n_tokens)


def concept_scores(acts: torch.Tensor, data: LabelledCorpus) -> ConceptScores:
    """Scores of every latent from its activations on the whole corpus, (n_docs, n_ctx, d_sae)."""
    fires = (acts[data.mask] > 0).float()  # (n_tokens, d_sae)
    labels = data.labels[data.mask].float()  # (n_tokens, n_concepts)
    return _scores(data.concepts, labels.T @ fires, fires.sum(0), labels.sum(0), len(fires))


@torch.no_grad()
def streamed_concept_scores(model, dictionaries: dict, data: LabelledCorpus, batch_size: int = 50,
                            progress: bool = True) -> dict:
    """{key: ConceptScores} of several dictionaries, the same numbers as `concept_scores`, but
    batch by batch: the whole corpus's activations, (n_docs, n_ctx, d_sae) each, are never held."""
    from tqdm.auto import tqdm

    hooks = {key: d.cfg.metadata.hook_name for key, d in dictionaries.items()}
    stop = max(_layer_of(h) for h in hooks.values()) + 1
    true_pos = {key: torch.zeros(len(data.concepts), d.cfg.d_sae) for key, d in dictionaries.items()}
    fired = {key: torch.zeros(d.cfg.d_sae) for key, d in dictionaries.items()}
    for start in tqdm(range(0, len(data.tokens), batch_size), desc="dictionaries on the corpus", disable=not progress):
        batch = slice(start, start + batch_size)
        _, cache = model.run_with_cache(data.tokens[batch], names_filter=sorted(set(hooks.values())),
                                        stop_at_layer=stop)
        mask = data.mask[batch]
        labels = data.labels[batch][mask].float()  # (n_tokens, n_concepts)
        for key, dictionary in dictionaries.items():
            fires = (dictionary.encode(cache[hooks[key]])[mask] > 0).float()  # (n_tokens, d_sae)
            true_pos[key] += labels.T @ fires
            fired[key] += fires.sum(0)
    per_concept = data.labels[data.mask].float().sum(0)
    n_tokens = int(data.mask.sum())
    return {key: _scores(data.concepts, true_pos[key], fired[key], per_concept, n_tokens) for key in dictionaries}
