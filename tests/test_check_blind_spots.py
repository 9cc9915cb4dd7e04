"""The blind spots of issue 15 in the checks of chapters 01 and 02, closed and kept closed.

The wrong implementations and correct alternatives are those of tests/mutants/ch01.py and
tests/mutants/ch02.py (written from the exercise text, which `python -m benchmarks.check_mutants`
measures the checks against). Each is run the way a notebook runs it: the chapter's check cell, in a
namespace where the learner's names replace the solutions'. Here:

- every wrong implementation that a check used to let pass, or failed with no hint or a misleading one,
  must fail with the message meant for its mistake;
- every correct alternative the text allows must pass.
"""

from __future__ import annotations

import importlib

import pytest

from tests.mutants import ch01 as mutants_ch01, ch02 as mutants_ch02, heldout as mutants_heldout
from benchmarks.check_mutants import WorldGuard, check_cells, run_variant
from utils import course

INNER = "which fails its own check"

# (exercise, variant) -> the words its failure message must contain
EXPECTED = {
    # inputs that never exercised a branch: negative values, batch > 1, optional arguments, short documents
    ("sparse_tensor", "values of positive entries only (> 0)"): "Hint: nonzero means != 0: negative entries are nonzero too",
    ("sparse_tensor", "abs() of the values"): "Hint: values keeps the sign of each entry",
    ("sparse_tensor", "from_dense detaches the values"): "from_dense(dense).values does not depend on dense through autograd",
    ("sparse_tensor", "values as a numpy array"): "is a numpy array of shape (3,). Hint: stay in torch",
    ("latent_acts_to_later_latent_acts", "only the first sequence of the batch"):
        "(paper world, a batch of 2 sequences): the dense later activations has wrong values",
    ("latent_to_latent_gradients", "only the first sequence of the batch"): "Hint: the batch has 2 sequences",
    ("tokens_to_latent_acts", "scales of the first sequence used for every sequence"):
        "Hint: every sequence was scaled with the first sequence's scales",
    ("token_to_latent_gradients", "only the first sequence"): "Hint: the batch has 2 sequences",
    ("latent_acts_to_logits", "last sequence of the batch, last position"):
        "Hint: these are the logits of the last sequence of the batch",
    ("latent_acts_to_logits", "logits.squeeze()[-1]"): "Hint: return the logits of the first sequence's last position only",
    ("latent_to_logit_gradients", "k=None not handled (topk(None))"): "With k=None, differentiate every logit",
    ("latent_acts_to_later_latent_acts_attn", "only the first sequence's reconstruction"):
        "Difference: only some entries along dimension 0 are wrong: 1 of 2 (index 1)",
    ("latent_to_latent_gradients_attn", "only the first sequence"): "Hint: the batch has 2 sequences",
    ("index_with_buffer", "buffer=0 treated as None (if not buffer)"): "Hint: buffer=0 asks for windows of one entry",
    ("fetch_max_activating_examples", "window start clamped with model.cfg.n_ctx"): "not on model.cfg.n_ctx",
    # inputs edited in place
    ("get_k_largest_indices", "blanks out chosen entries in x itself (in-place)"): "changed its input x in place",
    ("pullback", "centres W_enc's column in place"): "changed the transcoder's W_enc in place",
    # another dtype: compared or named, never a crash of the check
    ("create_extended_embedding", "returns float64"):
        "has dtype torch.float64 but should have dtype torch.float32; its values are right",
    # a nested exercise: the inner one is checked first, and named
    ("latent_to_latent_gradients", "inner latent_acts_to_later_latent_acts runs one block too many"):
        f"it calls your latent_acts_to_later_latent_acts, {INNER}",
    ("latent_to_latent_gradients", "inner latent_acts_to_later_latent_acts misses the decoder bias"):
        "Hint: the decoder bias is missing",
    ("token_to_latent_gradients", "inner tokens_to_latent_acts: only the token embeddings scaled"):
        f"it calls your tokens_to_latent_acts, {INNER}",
    ("token_to_latent_gradients", "inner tokens_to_latent_acts: scales squared"): "Hint: the input was scaled twice",
    ("token_to_latent_gradients", "inner tokens_to_latent_acts: one block too many"): "Hint: one block too many",
    ("latent_to_logit_gradients", "inner latent_acts_to_logits: first position"):
        f"it calls your latent_acts_to_logits, {INNER}",
    ("latent_to_logit_gradients", "inner latent_acts_to_logits: log_softmax"): "Difference: it is the expected result plus a constant",
    ("latent_to_latent_gradients_attn", "inner latent_acts_to_later_latent_acts_attn: decoder bias missing"):
        f"it calls your latent_acts_to_later_latent_acts_attn, {INNER}",
    ("fetch_max_activating_examples", "uses a get_k_largest_indices that ignores rows"):
        f"it calls your get_k_largest_indices, {INNER}",
    ("fetch_max_activating_examples", "uses an index_with_buffer that shifts only the left edge"):
        f"it calls your index_with_buffer, {INNER}",
    ("show_top_deembeddings_extended", "inner create_extended_embedding: the whole block 0"):
        f"it calls your create_extended_embedding, {INNER}",
    ("show_top_deembeddings_extended", "inner create_extended_embedding: MLP output only"): "Hint: MLP 0's output is *added*",
    ("direct_influence", "inner pullback: encoder of the earlier transcoder"): f"it calls your pullback, {INNER}",
    ("direct_influence", "inner pullback: normalised reading vector"): "scaled by a constant factor",
    # hints that pointed at the wrong mistake, or no hint at all
    ("fetch_max_activating_examples", "no '> 0' filter"): "Keep only positive activations",
    ("fetch_max_activating_examples", "pre-activations (no JumpReLU)"): "use the activations after the JumpReLU",
    ("fetch_max_activating_examples", "seq_pos is a tensor"): "is a tensor (tensor(3)); make it a Python int",
    ("fetch_max_activating_examples", "examples as (str_tokens, activation, seq_pos)"): "example 0 holds (list, float, int)",
    ("tokens_to_latent_acts", "only the positional embeddings scaled"): "Hint: only the positional embeddings were scaled",
    ("tokens_to_latent_acts", "scales squared"): "Hint: the input was scaled twice",
    ("tokens_to_latent_acts", "scaled after block 0"): "Hint: the scales were applied after block 0",
    ("token_to_latent_gradients", "gradient at scales 0"): "Hint: these are the activations at token_scales = 0",
    ("latent_acts_to_logits", "log_softmax instead of logits"): "Difference: it is the expected result plus a constant",
    ("latent_acts_to_logits", "one block skipped"): "Hint: these logits skip a block",
    ("latent_acts_to_logits", "decoder bias missing"): "Hint: the decoder bias is missing",
    ("latent_acts_to_later_latent_acts_attn", "decoder bias missing"): "Hint: the decoder bias is missing",
    ("latent_acts_to_later_latent_acts_attn", "runs from layer 0"): "Hint: the model ran from layer 0",
    ("latent_to_latent_gradients_attn", "resid_pre of the layer after sae_from"):
        "Hint: the true activations are right, so look at what you pass",
    ("get_k_largest_indices", "no_overlap ignored when False"): "Hint: with no_overlap=False, return the k largest entries",
    ("get_k_largest_indices", "rows and columns from the wrong dimension (% batch)"): "is row i // seq and column i % seq",
    ("index_with_buffer", "rows ignored (x[0])"): "Hint: take each window from its own row",
    ("index_with_buffer", "windows transposed"): "Hint: one row per index",
    ("index_with_buffer", "only the left edge shifted"): "must be shifted left",
    ("show_top_deembeddings", "W_U.T instead of W_E"): "Hint: start from the embedding W_E",
    ("show_top_deembeddings", "scores sorted"): "Hint: return the scores in token order",
    ("show_top_deembeddings", "ln2 of layer 0 applied (with its weight and bias)"): "Hint: ln2 also multiplies by its weight",
    ("create_extended_embedding", "the whole block 0 (attention included)"): "Hint: use only layer 0's ln2 and MLP",
    ("create_extended_embedding", "standardised W_E added back"): "Hint: add back W_E itself, not standardise(W_E)",
    ("create_extended_embedding", "positional embedding of position 0 added"): "Hint: the extended embedding leaves out the positional",
    ("pullback", "reading vector normalised to unit length"): "Difference: it is the expected result scaled by a constant factor",
    ("pullback", "sign flipped (column minus its mean, reversed)"): "Difference: it is the expected result with its sign flipped",
    ("direct_influence", "ln2 scale of the earlier layer"): "Hint: you divided by blocks.0.ln2.hook_scale",
    ("direct_influence", "ln1 scale of the later layer"): "Hint: you divided by blocks.1.ln1.hook_scale",
    ("direct_influence", "multiplied by the scale"): "and *divide* by the LayerNorm scale",
    ("direct_influence", "first document only"): "Hint: keep every document of the cache",
    ("head_influence", "only the source scale"): "Hint: divide by the later layer's ln2 scale at the destination",
    ("head_influence", "only the destination scale"): "Hint: divide by ln1's scale at each source position",
    ("head_influence", "source scale taken at the destination"): "Hint: ln1's scale is taken at each source position",
    ("head_influence", "activations of document 0"): "Hint: take the earlier activations of document batch_idx",
    ("component_attribution", "MLP l in row l (off by one layer)"): "Hint: MLP l goes in row l + 1",
    ("component_attribution", "b_O of layer L only"): "Hint: row 0, column 2 holds the b_O of every layer",
    ("component_attribution", "heads of every layer"): "Hint: heads of layers after L come after the transcoder's input",
    ("component_attribution", "token and positional embedding swapped"): "Hint: row 0 starts with the token embedding",
    ("component_attribution", "document 0 instead of batch_idx"): "Hint: use document batch_idx of the cache",
    # found by the held-out set (tests/mutants/heldout.py)
    ("get_k_largest_indices", "distance measured in the flattened tensor"):
        "Hint: entries of different rows never block each other",
    ("token_to_latent_gradients", "gradients summed over the batch"):
        "Difference: every entry along dimension 0 equals the sum of the expected entries along it",
    ("fetch_max_activating_examples", "encodes the output hook"):  # the check itself used to crash here
        "returned 0 examples, but there are",
    ("latent_acts_to_logits", "softmax"): "like probabilities: a softmax where none belongs?",
}

CHAPTERS = {"01_latent_gradients": mutants_ch01.VARIANTS + mutants_heldout.VARIANTS_CH01,
            "02_transcoders": mutants_ch02.VARIANTS + mutants_heldout.VARIANTS_CH02}
CHAPTER_OF = {id(v): chapter for chapter, variants in CHAPTERS.items() for v in variants}
ALL = [v for variants in CHAPTERS.values() for v in variants]
WRONG = [v for v in ALL if (v.exercise, v.name) in EXPECTED]
RIGHT = [v for v in mutants_ch01.VARIANTS + mutants_ch02.VARIANTS if v.correct]  # the held-out ones: the benchmark


@pytest.fixture(scope="module")
def runner():
    """Run a variant's check cell as a notebook would, putting back any weights a variant edits."""
    setups = {}
    for chapter in CHAPTERS:
        checks = course.load_checks(chapter)
        solutions = importlib.import_module(f"solutions.{course.solution_module_name(chapter)}")
        setups[chapter] = ({**vars(solutions), "tests": checks}, check_cells(chapter), WorldGuard(checks))

    def run(variant):
        base, cells, guard = setups[CHAPTER_OF[id(variant)]]
        try:
            return run_variant(variant, base, cells[variant.exercise])
        finally:
            guard.restore()

    return run


def test_every_expected_variant_exists():
    names = {(v.exercise, v.name) for v in ALL}
    assert set(EXPECTED) <= names, set(EXPECTED) - names


@pytest.mark.parametrize("variant", WRONG, ids=lambda v: f"{v.exercise}: {v.name}")
def test_a_wrong_implementation_fails_with_its_message(runner, variant):
    status, message = runner(variant)
    assert status == "failed", message
    assert message.startswith(f"test_{variant.exercise} failed: "), message
    assert EXPECTED[(variant.exercise, variant.name)] in message, message


@pytest.mark.parametrize("variant", RIGHT, ids=lambda v: f"{v.exercise}: {v.name}")
def test_a_correct_alternative_passes(runner, variant):
    status, message = runner(variant)
    assert status == "passed", message
