"""Chapter 02's checks against wrong implementations: each must fail with the message meant for it.

(That the reference solutions pass every check is tested for all chapters in test_chapter_checks.py.)
"""

from __future__ import annotations

import pytest
import torch

import solutions.ch02_transcoders as ref
from utils import course
from check_helpers import fails_with
from utils.checks import CheckFailed
from utils.transcoders import acts_name, layer_of, reading_vector, show_top_tokens, standardise


@pytest.fixture(scope="module")
def checks02():
    return course.load_checks("02_transcoders")


# -------------------------------------------------------------------------------------------------
# get_k_largest_indices


def k_largest_variant(*, same_row=True, overlap=True, swap=False, ascending=False, cut_edges=False):
    def get_k_largest_indices(x, k, buffer=0, no_overlap=True):
        if cut_edges and buffer > 0:
            x = x[:, buffer:-buffer]
        order = x.flatten().argsort(descending=not ascending, stable=True)
        rows, cols = order // x.shape[1], order % x.shape[1] + (buffer if cut_edges else 0)
        if not (no_overlap and overlap):
            out = torch.stack((rows, cols), 1)[:k]
        else:
            chosen = []
            while len(chosen) < k and len(rows):
                r, c = rows[0], cols[0]
                chosen.append(torch.stack((r, c)))
                near = (cols - c).abs() <= buffer
                if same_row:
                    near &= rows == r
                rows, cols = rows[~near], cols[~near]
            out = torch.stack(chosen)
        return out[:, [1, 0]] if swap else out

    return get_k_largest_indices


@pytest.mark.parametrize("variant, message", [
    (k_largest_variant(overlap=False), "Hint: with no_overlap=True, skip every entry within `buffer` positions"),
    (k_largest_variant(swap=True), "no_overlap=False) has wrong values: 6 of 6 elements differ, first at index (0, 0) "
                                   "(got 1, expected 0). Hint: each row of the result is (row, column)"),
    (k_largest_variant(ascending=True), "Hint: largest first: sort in descending order."),
    (k_largest_variant(cut_edges=True), "Hint: do not drop the first and last `buffer` columns"),
    (k_largest_variant(same_row=False), "Hint: an entry only blocks entries of its own row"),
])
def test_wrong_get_k_largest_indices(checks02, variant, message):
    fails_with(checks02.test_get_k_largest_indices, variant, "get_k_largest_indices(hand example", message)


# -------------------------------------------------------------------------------------------------
# index_with_buffer


def windows_wrapping(x, indices, buffer=None):
    rows, cols = indices[:, 0], indices[:, 1]
    if buffer is None:
        return x[rows, cols]
    return x[rows[:, None], cols[:, None] + torch.arange(-buffer, buffer + 1)]


def windows_clamped_each(x, indices, buffer=None):
    rows, cols = indices[:, 0], indices[:, 1]
    if buffer is None:
        return x[rows, cols]
    return x[rows[:, None], (cols[:, None] + torch.arange(-buffer, buffer + 1)).clamp(0, x.shape[1] - 1)]


def windows_in_place(x, indices, buffer=None):
    rows, cols = indices.unbind(-1)  # views: assigning into cols changes `indices`
    if buffer is None:
        return x[rows, cols]
    cols[cols < buffer] = buffer
    cols[cols > x.shape[1] - buffer - 1] = x.shape[1] - buffer - 1
    return x[rows[:, None], cols[:, None] + torch.arange(-buffer, buffer + 1)]


def windows_too_narrow(x, indices, buffer=None):
    rows, cols = indices[:, 0], indices[:, 1]
    if buffer is None:
        return x[rows, cols]
    starts = (cols - buffer).clamp(0, x.shape[1] - 2 * buffer)
    return x[rows[:, None], starts[:, None] + torch.arange(2 * buffer)]


@pytest.mark.parametrize("variant, message", [
    (windows_wrapping, "Hint: a window that would start before column 0 must be shifted right"),
    (windows_clamped_each, "Hint: shift the whole window inwards, keeping 2 * buffer + 1 different positions"),
    (windows_in_place, "changed its `indices` argument to [[0, 2], [0, 1]]"),
    (windows_too_narrow, "has shape (2, 2) but should have shape (2, 3). Hint: a window has 2 * buffer + 1 = 3 entries"),
])
def test_wrong_index_with_buffer(checks02, variant, message):
    fails_with(checks02.test_index_with_buffer, variant, "index_with_buffer(hand rows, [[0, 2], [0, 0]], buffer=1)", message)


# -------------------------------------------------------------------------------------------------
# fetch_max_activating_examples


def fetch_variant(*, mask=True, truncate=True, true_seq_pos=True, drop_pads=True, skip_last=False):
    def fetch_max_activating_examples(model, transcoder, tokens, latent_idx, k=10, buffer=10, batch_size=100, display=False):
        hook = transcoder.cfg.metadata.hook_name
        layer = layer_of(transcoder)
        found = []
        starts = list(range(0, len(tokens), batch_size))
        for start in starts[:-1] if skip_last else starts:
            batch = tokens[start : start + batch_size]
            _, cache = model.run_with_cache(batch, names_filter=[hook], stop_at_layer=layer + 1)
            acts = transcoder.encode(cache[hook])[..., latent_idx]
            if mask:
                acts = acts * ((batch != model.tokenizer.pad_token_id) & (batch != model.tokenizer.bos_token_id))
            top = ref.get_k_largest_indices(acts, k, buffer)
            values = ref.index_with_buffer(acts, top)
            windows = ref.index_with_buffer(batch, top, buffer)
            starts = (top[:, 1] - buffer).clamp(0, batch.shape[1] - 2 * buffer - 1)
            for value, window, col, s in zip(values.tolist(), windows, top[:, 1].tolist(), starts.tolist()):
                if value > 0:
                    toks = model.to_str_tokens(window)
                    if drop_pads:
                        toks = [t for t in toks if t != model.tokenizer.pad_token]
                    found.append((value, toks, col - s if true_seq_pos else buffer))
        found.sort(key=lambda e: e[0], reverse=True)
        return found[:k] if truncate else found

    return fetch_max_activating_examples


@pytest.mark.parametrize("variant, message", [
    (fetch_variant(truncate=False), "keep only the overall top k after going through all batches."),
    (fetch_variant(true_seq_pos=False), "seq_pos is the max token's position in its window, which is not `buffer`"),
    (fetch_variant(drop_pads=False), "a window contains padding tokens; drop them"),
    (fetch_variant(skip_last=True), "is missing; yours are real examples, but not the top k of all documents. Did you "
                                    "skip a batch"),
])
def test_wrong_fetch_max_activating_examples(checks02, variant, message):
    fails_with(checks02.test_fetch_max_activating_examples, variant, "fetch_max_activating_examples(transcoder 1, latent", message)


def test_fetch_without_a_bos_mask_always_fails(checks02):
    # The shipped transcoders may have no latent that fires most on BOS, so the check builds one; it must
    # exist on this world, or the missing mask would go unseen (a blind spot found by a blind mutant set).
    assert checks02._bos_loving_transcoder(40) is not None
    fails_with(checks02.test_fetch_max_activating_examples, fetch_variant(mask=False),
               "BOS and padding are not examples of anything")


def test_a_stub_fetch_is_not_implemented_yet(checks02):
    def fetch_max_activating_examples(model, transcoder, tokens, latent_idx, k=10, buffer=10, batch_size=100, display=False):
        # YOUR CODE HERE
        raise NotImplementedError("fetch_max_activating_examples is not implemented yet")

    with pytest.raises(CheckFailed) as failure:
        checks02.test_fetch_max_activating_examples(fetch_max_activating_examples)
    assert str(failure.value).startswith("test_fetch_max_activating_examples: not implemented yet (")


# -------------------------------------------------------------------------------------------------
# De-embeddings and the extended embedding


def deembedding(make_scores, show=True):
    def show_top_deembeddings(model, transcoder, latent_idx, k=10):
        scores = make_scores(model, transcoder, latent_idx)
        if show:
            show_top_tokens(model, scores, k)
        return scores

    return show_top_deembeddings


@pytest.mark.parametrize("variant, message", [
    (deembedding(lambda m, tc, j: standardise(m.W_E) @ tc.W_dec[j]), "Hint: a de-embedding uses the latent's *reading* vector"),
    (deembedding(lambda m, tc, j: m.W_E @ tc.W_enc[:, j]), "Hint: standardise W_E first"),
    (deembedding(lambda m, tc, j: tc.W_dec[j] @ m.W_U), "Hint: that is the logit lens"),
    (deembedding(lambda m, tc, j: standardise(m.W_E) @ tc.W_enc[:, j], show=False), "printed nothing"),
    (deembedding(lambda m, tc, j: ((m.W_E - m.W_E.mean(0)) / m.W_E.std(0)) @ tc.W_enc[:, j]),
     "Hint: W_E was standardised along the vocabulary (each column)"),
])
def test_wrong_show_top_deembeddings(checks02, variant, message):
    fails_with(checks02.test_show_top_deembeddings, variant, "show_top_deembeddings(toy model, toy transcoder, latent 0)", message)


def test_show_top_deembeddings_must_return_its_scores(checks02):
    def show_top_deembeddings(model, transcoder, latent_idx, k=10):
        show_top_tokens(model, standardise(model.W_E) @ transcoder.W_enc[:, latent_idx], k)

    fails_with(checks02.test_show_top_deembeddings, show_top_deembeddings, "returned None: return the (d_vocab,) scores")


def extended_variant(*, norm="ln2", add_back=True, final=True, start="W_E", std="rms", squeeze=True, mlp=True):
    def create_extended_embedding(model):
        W_E = (model.W_U.T if start == "W_U" else model.W_E)[:, None]
        block = model.blocks[0]
        normed = {"ln2": block.ln2, "ln1": block.ln1, None: lambda x: x}[norm](W_E)
        out = (block.mlp(normed) if mlp else 0) + (W_E if add_back else 0)
        out = out[:, 0] if squeeze else out
        if not final:
            return out
        if std == "rms":
            return standardise(out)
        return (out - out.mean(-1, keepdim=True)) / out.std(-1, keepdim=True)

    return create_extended_embedding


@pytest.mark.parametrize("variant, message", [
    (extended_variant(mlp=False), "Hint: that is standardise(W_E) alone"),
    (extended_variant(norm=None), "Hint: the MLP reads ln2's output, not the raw embedding"),
    (extended_variant(add_back=False), "Hint: MLP 0's output is *added* to the residual stream"),
    (extended_variant(add_back=False, std="unbiased"), "Hint: MLP 0's output is *added* to the residual stream"),
    (extended_variant(start="W_U"), "Hint: start from the embedding W_E (model.W_E), not the unembedding"),
    (extended_variant(final=False), "Hint: standardise the result"),
    (extended_variant(norm="ln1"), "Hint: the MLP's LayerNorm is ln2"),
    (extended_variant(squeeze=False), "has shape (3, 1, 4) but should have shape (3, 4). Hint: drop the length-1 position dimension"),
])
def test_wrong_create_extended_embedding(checks02, variant, message):
    fails_with(checks02.test_create_extended_embedding, variant, "create_extended_embedding(toy model)", message)


@pytest.mark.parametrize("std", ["rms", "unbiased"])
def test_either_std_convention_passes_create_extended_embedding(checks02, std, capsys):
    checks02.test_create_extended_embedding(extended_variant(std=std))
    assert "✅ test_create_extended_embedding passed" in capsys.readouterr().out


@pytest.mark.parametrize("variant, message", [
    (deembedding(lambda m, tc, j: standardise(m.W_E) @ tc.W_enc[:, j]), "Hint: that is the plain de-embedding"),
    (deembedding(lambda m, tc, j: ref.create_extended_embedding(m) @ tc.W_dec[j]), "Hint: a de-embedding uses the latent's *reading* vector"),
    (deembedding(lambda m, tc, j: (m.W_E + m.blocks[0].mlp(m.blocks[0].ln2(m.W_E[None]))[0]) @ tc.W_enc[:, j]),
     "Hint: the extended embedding is not standardised"),
])
def test_wrong_show_top_deembeddings_extended(checks02, variant, message):
    fails_with(checks02.test_show_top_deembeddings_extended, variant, "show_top_deembeddings_extended(toy model", message)


# -------------------------------------------------------------------------------------------------
# Pullbacks and influence


@pytest.mark.parametrize("variant, message", [
    (lambda early, later, j: early.W_dec @ later.W_enc[:, j],
     "pullback(toy transcoder 0, toy transcoder 1, latent 0) has wrong values: 3 of 3 elements differ, first at index (0,) "
     "(got 2, expected 0.5). Hint: centre the later latent's encoder column first"),
    (lambda early, later, j: early.W_enc.T @ reading_vector(later, j), "Hint: the earlier latents *write* into the residual stream"),
    (lambda early, later, j: later.W_dec[j], "has shape (4,) but should have shape (3,)"),
    (lambda early, later, j: early.W_dec @ reading_vector(early, j), "Hint: the two transcoders' roles are mixed up"),
])
def test_wrong_pullback(checks02, variant, message):
    fails_with(checks02.test_pullback, variant, message)


def direct_variant(*, scale=True, kind="hook_sae_acts_post", centre=True):
    def direct_influence(cache, early, later, latent_idx):
        column = later.W_enc[:, latent_idx]
        pull = early.W_dec @ (column - column.mean() if centre else column)
        out = cache[acts_name(early, kind)] * pull
        return out / cache[f"blocks.{layer_of(later)}.ln2.hook_scale"] if scale else out

    return direct_influence


@pytest.mark.parametrize("variant, message", [
    (direct_variant(scale=False), "Hint: divide by the later layer's LayerNorm scale"),
    (direct_variant(kind="hook_sae_acts_pre"), "Hint: use the earlier latents' activations after the JumpReLU"),
    (direct_variant(centre=False), "Hint: centre the later latent's encoder column"),
])
def test_wrong_direct_influence(checks02, variant, message):
    fails_with(checks02.test_direct_influence, variant, "direct_influence(toy model on tokens [0, 1, 2]", message)


def head_variant(*, transpose=False, pattern=True, ln1_weight=True, scales=True, centre=True):
    def head_influence(model, cache, early, later, latent_idx, head_layer, head, batch_idx, dest_pos):
        through = model.W_V[head_layer, head] @ (model.W_O[head_layer, head] @ reading_vector(later, latent_idx))
        src = model.blocks[head_layer].ln1.w * through if ln1_weight else through
        per_latent = early.W_dec @ (src - src.mean() if centre else src)
        p = cache[f"blocks.{head_layer}.attn.hook_pattern"][batch_idx, head]
        p = p[:, dest_pos] if transpose else p[dest_pos]
        s1 = cache[f"blocks.{head_layer}.ln1.hook_scale"][batch_idx, :, 0]
        s2 = cache[f"blocks.{layer_of(later)}.ln2.hook_scale"][batch_idx, dest_pos, 0]
        out = cache[acts_name(early)][batch_idx] * per_latent
        if pattern:
            out = out * p[:, None]
        return out / (s1[:, None] * s2) if scales else out

    return head_influence


@pytest.mark.parametrize("variant, message", [
    (head_variant(transpose=True), "Hint: the pattern is indexed [batch, head, destination, source]"),
    (head_variant(pattern=False), "Hint: multiply by the attention pattern"),
    (head_variant(ln1_weight=False), "Hint: the head reads ln1's output, which is multiplied by ln1's weight"),
    (head_variant(scales=False), "Hint: divide by both LayerNorm scales"),
    (head_variant(centre=False), "Hint: centre the source reading vector"),
])
def test_wrong_head_influence(checks02, variant, message):
    fails_with(checks02.test_head_influence, variant, "head_influence(toy model on [0, 1, 2]", message)


def attribution_variant(*, scale=True, own_mlp=False, b_o=True):
    def component_attribution(model, cache, later, latent_idx, batch_idx, pos):
        out = ref.component_attribution(model, cache, later, latent_idx, batch_idx, pos)
        L = layer_of(later)
        s = cache[f"blocks.{L}.ln2.hook_scale"][batch_idx, pos, 0]
        if own_mlp:
            out[L + 1, -1] = cache[f"blocks.{L}.hook_mlp_out"][batch_idx, pos] @ reading_vector(later, latent_idx) / s
        if not b_o:
            out[0, 2] = 0
        return out * s if not scale else out

    return component_attribution


@pytest.mark.parametrize("variant, message", [
    (attribution_variant(scale=False), "Hint: divide by the LayerNorm scale"),
    (attribution_variant(own_mlp=True), "Hint: MLP L comes after the transcoder's input"),
    (attribution_variant(b_o=False), "Hint: add the attention output biases b_O"),
])
def test_wrong_component_attribution(checks02, variant, message):
    text = fails_with(checks02.test_component_attribution, variant, "component_attribution(toy model on [0, 2, 1]", message)
    assert "but the pre-activation minus b_enc is" in text


def test_an_exception_in_component_attribution_names_the_learner_line(checks02):
    def component_attribution(model, cache, later, latent_idx, batch_idx, pos):
        return cache["blocks.9.hook_mlp_out"]  # no such layer

    line = component_attribution.__code__.co_firstlineno + 1
    text = fails_with(checks02.test_component_attribution, component_attribution, "your function raised KeyError")
    assert text.endswith(f"(in component_attribution, tests/test_ch02_checks.py, line {line}: "
                         '`return cache["blocks.9.hook_mlp_out"] # no such layer`)')


def test_score_hypothesis_against_the_latent_and_the_labels(capsys):
    # An oracle rule (exactly where the latent fires), a rule that never fires, and "every token",
    # each compared with values computed here from the activations and labels directly.
    from utils.transcoders import latent_activations, score_hypothesis
    from utils.world.concepts import streamed_concept_scores  # world-agnostic: takes the model and corpus
    from utils.world import labelled_corpus, load_dictionary, load_model

    model, tc, data = load_model(), load_dictionary("transcoder_2"), labelled_corpus(30)
    layer_scores = streamed_concept_scores(model, {2: tc}, data, progress=False)[2]
    latent = int(layer_scores.f1.max(0).values.argmax())  # some latent that matches a concept
    acts = latent_activations(model, tc, data.tokens, latent)
    per_doc = iter([(a[m] > 0).tolist() for a, m in zip(acts, data.mask)])

    oracle = score_hypothesis(lambda toks: next(per_doc), model, tc, latent, data, layer_scores)
    assert oracle["vs latent"][:2] == (1.0, 1.0) and oracle["activation share"] == pytest.approx(1.0)
    # a rule that picks every token of the first document only: its share is computed here
    docs = iter(range(len(data.tokens)))
    first_only = score_hypothesis(lambda toks: [next(docs) == 0] * len(toks), model, tc, latent, data, layer_scores)
    real = acts[data.mask]
    assert first_only["activation share"] == pytest.approx((acts[0][data.mask[0]].sum() / real.sum()).item())
    assert first_only["activation share"] < 0.5
    never = score_hypothesis(lambda toks: [False] * len(toks), model, tc, latent, data, layer_scores)
    assert never["vs latent"][1] == 0.0 and never["activation share"] == 0.0
    always = score_hypothesis(lambda toks: [True] * len(toks), model, tc, latent, data, layer_scores)
    labels = data.labels[..., data.concept_index(always["concept"])][data.mask].float()
    assert always["vs concept"][:2] == pytest.approx((labels.mean().item(), 1.0))
    assert "share of the latent's total activation" in capsys.readouterr().out

    assert score_hypothesis(lambda toks: [True], model, tc, latent, data, layer_scores) is None
    assert "return one bool per token" in capsys.readouterr().out
