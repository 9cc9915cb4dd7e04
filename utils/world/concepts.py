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

from .corpus import BOS, PAD, CorpusGenerator

# Labels that name the sentence frame a token came from, or whether the frame or content is held out:
# bookkeeping for the bars, not concepts. Kept out of the chapters' corpus, where 293 per-frame labels
# would otherwise win "best concept" for any latent that tracks one sentence.
BOOKKEEPING_LABELS = ("frame:", "heldout_frame", "heldout_content")

# The concepts the quality report scores (a readable subset of all labels the corpus records).
KEY_CONCEPTS = (
    "landmark", "city:Paris", "country:France", "state:Texas", "in_state:Texas", "p3_repeat",
    "goal_family", "sports", "estimate_number", "number", "in_quote", "quote_close",
    "definition", "category:bird", "category_name", "name", "pronoun:she", "profession:nurse",
)

# What every concept code on a dashboard means. A code ending in ":" is a family: "city:Paris" is
# every " Paris" token, and so on. The world labels every token of a sentence with its relation
# (`two_hop`, `ioi`, ...) and marks the token a probe sentence asks for with one generic `answer`
# label. tests/test_world_loaders.py checks that every label the corpus writes is explained here
# (and that every entry is still written), so a new relation cannot ship without its legend.
CONCEPT_LEGEND = {
    # landmarks (P1, P2)
    "landmark_city": "every token of a landmark -> city sentence ('The Eiffel tower is in the city of Paris.')",
    "landmark_context": "every token of a sentence about a landmark's country or language ('In France, people speak French.')",
    "landmark": "every piece of a landmark name (' E', 'iff', 'el')",
    "landmark:": "the pieces of one landmark's name",
    "p1_word:": "the pieces of one multi-token landmark word (the same tokens as landmark:)",
    "landmark_kind": "the noun after a landmark's name (' tower', ' museum')",
    "city:": "one city's name, wherever it appears",
    "country:": "a country, and the cities and languages that belong to it",
    "language:": "one language's name",
    # geography (P6)
    "city_state": "every token of a city -> state sentence ('Dallas is a city in Texas.')",
    "state_capital": "every token of a state -> capital sentence ('The capital of Texas is Austin.')",
    "two_hop": "every token of a city -> capital sentence that skips the state "
               "('The capital of the state containing Dallas is Austin.')",
    "city_pair": "every token of a sentence naming two cities of one state ('Dallas and Houston are both in Texas.')",
    "state:": "one state's name",
    "in_state:": "a city or capital that lies in that state",
    "capital:": "one state capital's name",
    # the token a probe sentence asks for
    "answer": "the first token of what a sentence asks for: the capital, the city, the indirect object, "
              "the quotation's closer, a definition's first word, the letter, the category, the scale word",
    # repeated spans (P3)
    "p3_run": "every token of a run of random words that is repeated, both copies",
    "p3_first": "the first copy of a repeated run of words",
    "p3_repeat": "the second and later copies of a repeated run: what induction can predict",
    "p3_sentence_repeat": "every token of a sentence that repeats an earlier sentence of its document word for word",
    "p3_repeat_start": "the first token of such a repeated sentence",
    # sports and goals (P4)
    "sports": "every token of a sports sentence ('The United striker scored a late goal.')",
    "goal_talk": "every token of a sentence about a goal word outside a match report "
                 "('Everyone was talking about the goal after the match.')",
    "goal_family": "the goal words (' goal', ' goals', ' goalie', ' goalkeeper', ' goalpost', ' goalless')",
    # numbers (P5)
    "estimate": "every token of an estimate sentence ('The revenue is estimated to exceed 500 million dollars.')",
    "casualty": "every token of a casualty estimate ('Officials estimate that about 40 people were injured in the storm.')",
    "plain_number": "every token of a sentence with a number that is not an estimate ('The train leaves at 9.')",
    "number": "a number, and the scale word after it",
    "estimate_number": "a number or scale word inside an estimate sentence",
    "scale_word": "the scale word after a number (' thousand', ' million', ' billion')",
    "estimated_subject": "what a number sentence counts or prices (' revenue', ' people', ' visitors')",
    # indirect objects (P7)
    "ioi": "every token of an indirect-object sentence ('When Mary and John went to the shop, John gave a book to Mary.')",
    "ioi_io": "the indirect object: the final name, the one the model should predict",
    "ioi_s2": "the second mention of the subject (the name the model should not predict)",
    "name": "any person's name",
    "name:": "one person's name",
    # quotations (P8)
    "quote": "every token of a sentence with a quotation ('Mary said, \"I like the red car.\"')",
    "in_quote": "every token inside a quotation, its closer included",
    "quote_close": "the token that closes a quotation ('.\"', '!\"', '?\"', ',\"')",
    "quote_close:": "closers of one kind (period, comma, question, exclamation)",
    "speech:": "the verb that introduces a quotation, by the quotation's kind (statement, question, exclamation)",
    "plain_statement": "every token of a statement outside quotation marks, where '.' is the right ending",
    # definitions (P9)
    "definition": "every token of a definition sentence ('The meaning of the word \"lake\" is \"still water\".')",
    "defined_word": "the word being defined",
    "defined:": "one defined word",
    "definition_of:": "the definition of one word",
    # spelling (P10)
    "first_letter": "every token of a spelling sentence ('The word lake starts with the letter L.')",
    "spelled_word": "the word being spelled",
    "letter:": "one letter as an answer",
    # categories (P11)
    "category": "every token of a member -> category sentence ('A sparrow is a kind of bird.')",
    "category_parent": "every token of a category -> parent sentence ('A bird is a kind of animal.')",
    "category_mention": "every token of a sentence that mentions a category member in passing ('We saw a sparrow near the river.')",
    "category_member": "a member of a category (' sparrow')",
    "category_name": "a category's name (' bird', ' birds', ' animal')",
    "category:": "a member or the name of one category; a member carries its parent category too",
    # professions (P12)
    "profession": "every token of a profession sentence ('The nurse said that she would come back later.')",
    "profession:": "one profession",
    # bios for SHIFT (P12, chapter 08): intended = the field, spurious = the narrative person
    "bio": "every token of a short bio ('I am a nurse in Dallas. I work at the hospital.')",
    "bio_intro": "every token of a bio's introduction, which names the profession",
    "bio_medicine": "every token of a bio sentence about medical work ('She works at the hospital.')",
    "bio_law": "every token of a bio sentence about legal work ('I work at the court.')",
    "bio_life": "every token of a bio sentence about life outside work ('He lives in Austin with his family.')",
    "bio_field:": "every token of a bio whose profession is in that field (medicine or law): the intended attribute",
    "bio_person:": "every token of a bio told in that person (first: 'I am'; third: 'Mary is'): the spurious attribute",
    "bio_profession": "the profession named in a bio's introduction",
    "person_marker": "a word that shows a bio's person: its pronoun, possessive, 'am'/'is', 'have'/'has', or the name",
    "person_marker:": "the person-showing words of one person (first or third)",
    "chat": "every token of a chatty sentence with everyday words ('What is your name? My name is Anna.')",
    "pronoun:": "one pronoun",
    # everything else
    "everyday": "every token of an everyday sentence ('Mary bought the red car yesterday.')",
    "filler": "every token of a filler sentence ('It was a quiet morning.')",
}


def explain_concept(code: str, legend: dict[str, str] | None = None) -> str:
    """What a concept code means: the exact code first, then its family ("city:Paris" -> "city:").
    `legend`: another legend to look in; this world's by default."""
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


@lru_cache(maxsize=8)
def labelled_corpus(n_docs: int = 300, n_ctx: int = 128, split: str = "heldout", seed: int = 11,
                    bookkeeping: bool = False) -> LabelledCorpus:
    """`n_docs` documents of the given split with their token-level concept labels; the bookkeeping
    labels (BOOKKEEPING_LABELS) only if asked for."""
    from .tokenizer import check_tokenizer_matches_corpus, vocabulary

    check_tokenizer_matches_corpus()
    gen = CorpusGenerator(seed=seed, split=split)
    data = label_documents([gen.document(max_tokens=n_ctx - 1) for _ in range(n_docs)], vocabulary(), n_ctx, BOS, PAD)
    if bookkeeping:
        return data
    keep = [i for i, c in enumerate(data.concepts) if not c.startswith(BOOKKEEPING_LABELS)]
    return LabelledCorpus(data.tokens, [data.concepts[i] for i in keep], data.labels[..., keep], data.mask)


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
