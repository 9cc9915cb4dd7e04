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

# What every concept code on a dashboard means. A code ending in ":" is a family: "city:Paris" is
# every " Paris" token, and so on. tests/test_world.py checks that every label the corpus writes
# is explained here, so a new phenomenon cannot ship without its legend.
CONCEPT_LEGEND = {
    "p2": "every token of a landmark-fact sentence (P2: 'The Eiffel tower is in Paris')",
    "p2_answer": "the city that answers a landmark fact",
    "landmark": "every piece of a landmark name (P1: ' E', 'iff', 'el')",
    "landmark:": "the pieces of one landmark's name",
    "p1_word:": "the pieces of one multi-token landmark word (the same tokens as landmark:)",
    "city:": "one city's name, wherever it appears",
    "country:": "a country, and the cities and languages that belong to it",
    "language:": "one language's name",
    "p6": "every token of a two-hop geography sentence (P6: city, state, capital)",
    "state:": "one state's name",
    "in_state:": "a city or capital that lies in that state",
    "capital:": "one state capital's name",
    "p6_hop1_answer": "the state that answers 'which state is this city in'",
    "p6_hop2_answer": "the capital that answers 'what is the capital of this state'",
    "p6_two_hop_answer": "the capital that answers 'the capital of the state containing this city'",
    "p3_first": "the first copy of a repeated run of tokens (P3)",
    "p3_repeat": "the second and later copies of a repeated run: what induction can predict",
    "sports": "every token of a sports sentence (P4)",
    "team": "a team's name",
    "goal_family": "the goal words (' goal', ' goals', ' goalie', ' goalkeeper', ' goalpost', ' goalless')",
    "estimate": "every token of an estimate sentence (P5: 'revenue is estimated to exceed ...')",
    "number": "a number, and the scale word after it in estimates",
    "estimate_number": "a number or scale word inside an estimate",
    "p7": "every token of an indirect-object sentence (P7)",
    "ioi_io": "the indirect object: the final name, the one the model should predict",
    "ioi_s2": "the second mention of the subject (the name the model should not predict)",
    "name": "any person's name",
    "name:": "one person's name",
    "p8": "every token of a dialogue sentence with a quotation (P8)",
    "quote_open": "the opening quotation mark",
    "in_quote": "every token inside a quotation, its closer included",
    "quote_close": "the token that closes a quotation ('.\"', '!\"', '?\"')",
    "quote_close:": "closers of one kind (statement, exclamation, question)",
    "p9": "every token of a definition sentence (P9)",
    "definition_word": "the word being defined",
    "defined:": "one defined word",
    "definition": "the tokens of a definition",
    "definition_of:": "the definition of one word",
    "p9_answer": "the first token of a definition: what the model should predict",
    "p10": "every token of a spelling sentence (P10: 'elephant starts with the letter E')",
    "spelled_word": "the word being spelled",
    "p10_answer": "the letter that answers a spelling question",
    "letter:": "one letter as an answer",
    "p11": "every token of a category sentence (P11: 'sparrows and robins are birds')",
    "category_member": "a member of a category (' sparrow')",
    "category_name": "a category's name (' bird', ' birds', ' animal')",
    "category:": "a member or the name of one category; a member carries its parent category too",
    "p11_answer": "the category that answers 'a sparrow is a kind of'",
    "p12": "every token of a profession sentence (P12: 'the nurse said she ...')",
    "profession:": "one profession",
    "pronoun:": "one pronoun",
}


def explain_concept(code: str, legend: dict[str, str] | None = None) -> str:
    """What a concept code means: the exact code first, then its family ("city:Paris" -> "city:").
    `legend`: another world's legend (a later world passes its own); this world's by default."""
    legend = CONCEPT_LEGEND if legend is None else legend
    family = code.split(":", 1)[0] + ":" if ":" in code else None
    meaning = legend.get(code) or legend.get(family)
    if meaning is None:
        raise KeyError(f"no legend for concept {code!r}")
    return meaning


def concept_legend_table(codes=None, legend: dict[str, str] | None = None) -> str:
    """A markdown table of concept codes and their meanings (all of the legend's by default)."""
    legend = CONCEPT_LEGEND if legend is None else legend
    rows = [f"| `{code}{'…' if code.endswith(':') else ''}` | {explain_concept(code, legend)} |"
            for code in (codes or legend)]
    return "\n".join(["| concept | what it labels |", "|---|---|", *rows])


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
    return label_documents([gen.document(max_tokens=n_ctx - 1) for _ in range(n_docs)], vocab, n_ctx, BOS, PAD)


def label_documents(docs, vocab: dict[str, int], n_ctx: int, bos: str, pad: str) -> LabelledCorpus:
    """Token ids (BOS first, PAD after) and a label matrix for documents of labelled tokens."""
    n_docs = len(docs)
    concepts = sorted({lab for d in docs for tok in d for lab in tok.labels})
    col = {c: i for i, c in enumerate(concepts)}
    tokens = torch.full((n_docs, n_ctx), vocab[pad], dtype=torch.long)
    labels = torch.zeros(n_docs, n_ctx, len(concepts), dtype=torch.bool)
    mask = torch.zeros(n_docs, n_ctx, dtype=torch.bool)
    for i, doc in enumerate(docs):
        tokens[i, 0] = vocab[bos]
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
