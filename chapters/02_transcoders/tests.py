"""Checks for chapter 02. The notebook calls them as `tests.test_<exercise>(learner_code, ...)`.

Each check compares the learner's function with the reference (solutions/ch02_transcoders.py) on
course-world inputs and on a toy case small enough to work out by hand (a 2-layer model with
d_model 4 and 3 tokens, and transcoders with 3 latents, built below).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from functools import lru_cache

import torch
from torch import Tensor

import solutions.ch02_transcoders as ref
from utils.checks import (Mistake, assert_tensor, check, describe_difference, expect, fail, hint_for,
                          inner_exercise_first, learner_function)
from utils.transcoders import acts_name, hook_names, reading_vector, run_with_cache_with_transcoder, standardise

# -------------------------------------------------------------------------------------------------
# The toy world


TOY_W_E = torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 0.0, 0.0, -2.0], [0.0, 3.0, 0.0, -3.0]])


@lru_cache(maxsize=1)
def toy_model():
    """2 layers, d_model 4, 3 tokens, two heads of size 2 (head 0 copies coordinates 0, 1 to 0, 2; head 1 copies 2, 3 to 1, 3), ReLU MLPs that are the identity before the ReLU.

    Layer 0: ln2 has weight 1 and bias 0, so MLP0(ln2(x)) = relu(standardise(x)); ln1 has weight 2
    (so using ln1 instead of ln2 shows). The unembedding is *not* tied (columns of W_E.T permuted),
    so using W_U instead of W_E shows.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from utils.world import load_tokenizer

    cfg = HookedTransformerConfig(n_layers=2, d_model=4, n_heads=2, d_head=2, d_mlp=4, d_vocab=3, n_ctx=4,
                                  act_fn="relu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg)
    eye = torch.eye(4)
    with torch.no_grad():
        model.embed.W_E.copy_(TOY_W_E)
        model.pos_embed.W_pos.copy_(0.1 * torch.arange(16.0).reshape(4, 4) - 0.5)
        model.unembed.W_U.copy_(TOY_W_E.T[:, [2, 0, 1]])
        for layer, block in enumerate(model.blocks):
            block.mlp.W_in.copy_(eye)
            block.mlp.b_in.zero_()
            block.mlp.W_out.copy_(eye * (1 + layer))
            block.mlp.b_out.zero_()
            block.ln1.w.fill_(2.0)
            block.ln1.b.zero_()
            block.ln2.w.fill_(1.0)
            block.ln2.b.zero_()
            block.attn.W_V.copy_(torch.stack([torch.eye(4)[:, :2], torch.eye(4)[:, 2:]]))
            block.attn.W_O.copy_(torch.stack([torch.eye(4)[[0, 2]], torch.eye(4)[[1, 3]]]))
            block.attn.b_O.copy_(torch.tensor([0.25, 0.0, -0.1, 0.3]))
    model.tokenizer = load_tokenizer()  # only for to_str_tokens in the tables: ids 0-2 are special tokens
    model.eval()
    return model


def toy_transcoder(layer: int, W_enc: Tensor, W_dec: Tensor, b_enc: Tensor | None = None):
    from sae_lens import JumpReLUTranscoder, JumpReLUTranscoderConfig
    from sae_lens.saes.sae import SAEMetadata

    d_in, d_sae = W_enc.shape
    cfg = JumpReLUTranscoderConfig(
        d_in=d_in, d_sae=d_sae, d_out=W_dec.shape[1], apply_b_dec_to_input=False,
        metadata=SAEMetadata(hook_name=f"blocks.{layer}.ln2.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out"),
    )
    tc = JumpReLUTranscoder(cfg)
    with torch.no_grad():
        tc.W_enc.copy_(W_enc)
        tc.W_dec.copy_(W_dec)
        tc.b_enc.copy_(torch.zeros(d_sae) if b_enc is None else b_enc)
        tc.b_dec.zero_()
        tc.threshold.zero_()
    tc.eval()
    return tc


@lru_cache(maxsize=1)
def toy_transcoders() -> dict:
    """Transcoder 0: latent j reads coordinate j and writes e_j (+ 1 on the last coordinate, so rows are not centred).
    Transcoder 1: latent 0 reads (1, 0, 0, 0) + 0.5 (an uncentred column), latent 1 reads (0, 1, -1, 0),
    latent 2 reads e_3; latent j writes e_(j+1)."""
    W_enc0 = torch.eye(4)[:, :3]
    W_dec0 = torch.eye(4)[:3] + torch.tensor([0.0, 0.0, 0.0, 1.0])
    W_enc1 = torch.tensor([[1.5, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, -1.0, 0.0], [0.5, 0.0, 1.0]])
    W_dec1 = torch.eye(4)[[1, 2, 3]]
    return {0: toy_transcoder(0, W_enc0, W_dec0), 1: toy_transcoder(1, W_enc1, W_dec1, b_enc=torch.tensor([0.1, 0.0, 0.0]))}


def _quiet(fn, *args, **kwargs):
    """Call fn, capturing what it prints; return (result, printed text)."""
    out = io.StringIO()
    quiet_bars = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # no progress bars from inside a check (tqdm reads this when a bar starts)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            result = fn(*args, **kwargs)
    finally:
        if quiet_bars is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = quiet_bars
    return result, out.getvalue()


# -------------------------------------------------------------------------------------------------
# The course world (loaded once, only when a check needs it)


@lru_cache(maxsize=1)
def _world():
    from utils.world import labelled_corpus, load_model, load_transcoders

    return load_model(), load_transcoders(), labelled_corpus().tokens


@lru_cache(maxsize=8)
def _layer_acts(layer: int, n_docs: int) -> Tensor:
    """Course-world activations (n_docs, n_ctx, d_sae) of transcoder `layer` on the first n_docs documents."""
    model, transcoders, tokens = _world()
    with torch.no_grad():
        cache = run_with_cache_with_transcoder(model, [transcoders[layer]], tokens[:n_docs], names_filter=[])
    return cache[acts_name(transcoders[layer])]


def _real(n_docs: int) -> Tensor:
    model, _, tokens = _world()
    docs = tokens[:n_docs]
    return (docs != model.tokenizer.pad_token_id) & (docs != model.tokenizer.bos_token_id)


def _most_active_latent(layer: int, n_docs: int) -> int:
    """The latent of transcoder `layer` with the largest total activation on the real tokens of the first documents."""
    return int((_layer_acts(layer, n_docs) * _real(n_docs)[..., None]).sum((0, 1)).argmax())


# -------------------------------------------------------------------------------------------------
# get_k_largest_indices

HAND_X = torch.tensor([[0.0, 5.0, 4.0, 0.0], [3.0, 0.0, 0.0, 1.0]])
EDGES_HINT = ("do not drop the first and last `buffer` columns: entries near the edges count too "
              "(index_with_buffer keeps their windows inside the row).")


def _edges_cut(x: Tensor, k: int, buffer: int, no_overlap: bool = True) -> Tensor:
    """A version that drops the first and last `buffer` columns first (a common variant)."""
    inner = x[:, buffer : x.shape[1] - buffer]
    result = ref.get_k_largest_indices(inner, k, buffer, no_overlap)
    return result + torch.tensor([0, buffer])


def _k_largest_mistakes(x: Tensor, k: int, buffer: int) -> list[Mistake]:
    right = ref.get_k_largest_indices(x, k, buffer)
    return [
        Mistake.looks_like(ref.get_k_largest_indices(x, k, buffer, no_overlap=False),
                           "with no_overlap=True, skip every entry within `buffer` positions of an entry you "
                           "already chose in the same row."),
        Mistake(lambda a: a.shape == right.shape and torch.equal(a, right[:, [1, 0]]),
                "each row of the result is (row, column): you have them the other way round."),
        Mistake.looks_like(ref.get_k_largest_indices(-x, k, buffer), "largest first: sort in descending order."),
        Mistake(lambda a: a.shape == _edges_cut(x, k, buffer).shape and torch.equal(a, _edges_cut(x, k, buffer)),
                EDGES_HINT),
        Mistake.looks_like(_row_blind(x, k, buffer),
                           "an entry only blocks entries of its own row: compare rows as well as columns."),
        Mistake.looks_like(_by_batch(x, k, buffer), BY_BATCH_HINT),
        Mistake.looks_like(_flat_blind(x, k, buffer),
                           "entries of different rows never block each other, even when they are neighbours in the "
                           "flattened tensor (the end of one row and the start of the next): compare rows and columns."),
    ]


def _flat_blind(x: Tensor, k: int, buffer: int) -> Tensor:
    """A version that measures the distance between entries in the flattened tensor."""
    order = x.flatten().argsort(descending=True, stable=True)
    chosen = []
    while len(chosen) < k and len(order):
        chosen.append(order[0])
        order = order[(order - order[0]).abs() > buffer]
    flat = torch.stack(chosen)
    return torch.stack((flat // x.shape[1], flat % x.shape[1]), 1)


def _row_blind(x: Tensor, k: int, buffer: int) -> Tensor:
    """A version whose chosen entries block nearby columns of every row."""
    order = x.flatten().argsort(descending=True, stable=True)
    rows, cols = order // x.shape[1], order % x.shape[1]
    chosen = []
    while len(chosen) < k and len(rows):
        chosen.append(torch.stack((rows[0], cols[0])))
        near = (cols - cols[0]).abs() <= buffer
        rows, cols = rows[~near], cols[~near]
    return torch.stack(chosen)


def _by_batch(x: Tensor, k: int, buffer: int, no_overlap: bool = True) -> Tensor:
    """A version that turns flat positions into (row, column) with the number of rows instead of columns."""
    order = x.flatten().argsort(descending=True, stable=True)
    rows, cols = order % x.shape[0], order // x.shape[0]
    chosen = []
    while len(chosen) < k and len(rows):
        chosen.append(torch.stack((rows[0], cols[0])))
        near = (rows == rows[0]) & ((cols - cols[0]).abs() <= (buffer if no_overlap else -1))
        near[0] = True
        rows, cols = rows[~near], cols[~near]
    return torch.stack(chosen)


def _call_unchanged(fn, x: Tensor, *args, where: str):
    """Call fn on a copy of x and check that it did not edit it."""
    given = x.clone()
    result = fn(given, *args)
    expect(torch.equal(given, x), f"{where} changed its input x in place. fetch_max_activating_examples reads the "
                                  "activations again after choosing the indices: work on a copy (or on new tensors).")
    return result


def _check_k_largest(fn, x: Tensor, k: int, buffer: int, no_overlap: bool, where: str) -> None:
    expected = ref.get_k_largest_indices(x, k, buffer, no_overlap)
    name = f"get_k_largest_indices({where})"
    actual = _call_unchanged(fn, x, k, buffer, no_overlap, where=name)
    assert_tensor(actual, expected, name, mistakes=_k_largest_mistakes(x, k, buffer) if no_overlap
                  else _k_largest_overlap_mistakes(x, k, buffer))


def _k_largest_overlap_mistakes(x: Tensor, k: int, buffer: int) -> list[Mistake]:
    return [
        Mistake(lambda a: a.shape == (k, 2) and torch.equal(a, ref.get_k_largest_indices(x, k, buffer, False)[:, [1, 0]]),
                "each row of the result is (row, column): you have them the other way round."),
        Mistake.looks_like(ref.get_k_largest_indices(-x, k, buffer, False), "largest first: sort in descending order."),
        Mistake.looks_like(_edges_cut(x, k, buffer, False), EDGES_HINT),
        Mistake.looks_like(ref.get_k_largest_indices(x, k, buffer, True),
                           "with no_overlap=False, return the k largest entries even when they are neighbours."),
        Mistake.looks_like(_by_batch(x, k, buffer, False), BY_BATCH_HINT),
    ]


BY_BATCH_HINT = ("a flat position i of x (batch, seq) is row i // seq and column i % seq, with seq = x.shape[1], "
                 "the length of a row.")


@check
def test_get_k_largest_indices(get_k_largest_indices) -> None:
    """The hand example, ties to edges and rows, short supply, then course-world activations."""
    where = "get_k_largest_indices(hand example, k=3, buffer=1, no_overlap=False)"
    assert_tensor(_call_unchanged(get_k_largest_indices, HAND_X, 3, 1, False, where=where),
                  torch.tensor([[0, 1], [0, 2], [1, 0]]), where, mistakes=_k_largest_overlap_mistakes(HAND_X, 3, 1))
    expected = torch.tensor([[0, 1], [1, 0], [1, 3]])
    where = "get_k_largest_indices(hand example, k=3, buffer=1)"
    assert_tensor(_call_unchanged(get_k_largest_indices, HAND_X, 3, 1, where=where), expected, where,
                  mistakes=_k_largest_mistakes(HAND_X, 3, 1))
    # The same column in two rows: both count.
    _check_k_largest(get_k_largest_indices, torch.tensor([[0.0, 5.0, 0.0], [0.0, 4.0, 0.0]]), 2, 1, True,
                     "two rows with their maximum in the same column, k=2, buffer=1")
    # Neighbours in the flattened tensor, but in different rows: they do not block each other.
    _check_k_largest(get_k_largest_indices, torch.tensor([[0.0, 0.0, 0.0, 5.0], [4.0, 0.0, 0.0, 0.0]]), 2, 1, True,
                     "the end of row 0 and the start of row 1, k=2, buffer=1")
    # Fewer than k entries qualify.
    _check_k_largest(get_k_largest_indices, torch.tensor([[1.0, 2.0, 3.0]]), 3, 2, True,
                     "a 1×3 row, k=3, buffer=2 (only one entry qualifies)")
    model, transcoders, tokens = _world()
    latent = _most_active_latent(1, 16)
    acts = _layer_acts(1, 16)[..., latent]
    for k, buffer in ((10, 5), (6, 0)):
        _check_k_largest(get_k_largest_indices, acts, k, buffer, True,
                         f"course-world activations of transcoder 1, latent {latent}, k={k}, buffer={buffer}")


# -------------------------------------------------------------------------------------------------
# index_with_buffer

HAND_ROWS = torch.tensor([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])


def _window_mistakes(x: Tensor, indices: Tensor, buffer: int) -> list[Mistake]:
    width = 2 * buffer + 1
    offsets = torch.arange(-buffer, buffer + 1)
    rows, cols = indices[:, 0:1], indices[:, 1:2]
    wrapped = x[rows, (cols + offsets) % x.shape[1]]
    clamped_each = x[rows, (cols + offsets).clamp(0, x.shape[1] - 1)]
    left_only = x[rows, ((cols - buffer).clamp(min=0) + offsets + buffer).clamp(max=x.shape[1] - 1)]
    return [
        Mistake(lambda a: a.ndim == 2 and a.shape == (width, len(indices)) != (len(indices), width),
                f"one row per index: the result has shape (k, 2 * buffer + 1) = ({len(indices)}, {width})."),
        Mistake.looks_like(x[0][(cols[:, 0] - buffer).clamp(0, x.shape[1] - width)[:, None] + offsets + buffer],
                           "take each window from its own row, indices[:, 0], not from row 0."),
        Mistake.looks_like(left_only, "a window that would run past the end of the row must be shifted left, "
                                      "as one that would start before column 0 is shifted right."),
        Mistake.looks_like(wrapped, "a window that would start before column 0 must be shifted right "
                                    "(and one past the end shifted left); negative indices wrap around instead."),
        Mistake.looks_like(clamped_each, "shift the whole window inwards, keeping 2 * buffer + 1 different "
                                         "positions; clamping each position repeats the edge token."),
        Mistake(lambda a: a.ndim == 2 and a.shape[1] in (width - 1, width + 1),
                f"a window has 2 * buffer + 1 = {width} entries: `buffer` on each side of the centre, plus the centre."),
    ]


@check
def test_index_with_buffer(index_with_buffer) -> None:
    """The hand example (both edges), indices left untouched, then windows of course-world tokens."""
    indices = torch.tensor([[0, 2], [1, 4]])
    assert_tensor(index_with_buffer(HAND_ROWS, indices.clone()), torch.tensor([12, 24]),
                  "index_with_buffer(hand rows, [[0, 2], [1, 4]])")
    for idx, expected in (
        ([[0, 2], [0, 0]], [[11, 12, 13], [10, 11, 12]]),
        ([[0, 2], [0, 0], [1, 5]], [[11, 12, 13], [10, 11, 12], [23, 24, 25]]),
    ):
        idx = torch.tensor(idx)
        given = idx.clone()
        actual = index_with_buffer(HAND_ROWS, given, 1)
        where = f"index_with_buffer(hand rows, {idx.tolist()}, buffer=1)"
        expect(torch.equal(given, idx), f"{where} changed its `indices` argument to {given.tolist()}: "
                                        "work on new tensors (e.g. clamp() returns one) instead of assigning into it.")
        assert_tensor(actual, torch.tensor(expected), where, mistakes=_window_mistakes(HAND_ROWS, idx, 1))
    where = "index_with_buffer(hand rows, [[0, 2], [1, 5]], buffer=0)"
    assert_tensor(index_with_buffer(HAND_ROWS, torch.tensor([[0, 2], [1, 5]]), 0), torch.tensor([[12], [25]]), where,
                  mistakes=[Mistake(lambda a: a.shape == (2,), "buffer=0 asks for windows of one entry, shape (k, 1): "
                                                              "test `buffer is None`, not `not buffer`.")])
    model, transcoders, tokens = _world()
    x = tokens[:20]
    generator = torch.Generator().manual_seed(2)
    idx = torch.stack((torch.randint(0, 20, (12,), generator=generator), torch.randint(0, 128, (12,), generator=generator)), 1)
    idx[:2, 1] = torch.tensor([0, 127])
    for buffer in (None, 4):
        assert_tensor(index_with_buffer(x, idx.clone(), buffer), ref.index_with_buffer(x, idx, buffer),
                      f"index_with_buffer(course-world tokens, 12 indices, buffer={buffer})",
                      mistakes=_window_mistakes(x, idx, buffer) if buffer else ())


# -------------------------------------------------------------------------------------------------
# fetch_max_activating_examples


def _special_latent(layer: int, n_docs: int) -> int | None:
    """A latent whose largest activation is on BOS or padding, if there is one (to catch a missing mask)."""
    acts, real = _layer_acts(layer, n_docs), _real(n_docs)
    special_max = (acts * ~real[..., None]).flatten(0, 1).max(0).values
    real_max = (acts * real[..., None]).flatten(0, 1).max(0).values
    candidates = ((special_max > real_max) & (real_max > 0)).nonzero().flatten()
    return int(candidates[0]) if len(candidates) else None


@lru_cache(maxsize=1)
def _bos_loving_transcoder(n_docs: int):
    """(a copy of transcoder 1, latent) whose latent fires most on BOS and also on some real tokens, so that a
    missing BOS mask always shows (the shipped transcoders may have no such latent). The latent's encoder reads
    the direction of BOS's input; its bias lets the top 5% of real tokens through the threshold."""
    model, transcoders, tokens = _world()
    tc = copy.deepcopy(transcoders[1])
    latent = _most_active_latent(1, n_docs)
    with torch.no_grad():
        hook = hook_names(tc)[0]
        _, cache = model.run_with_cache(tokens[:n_docs], names_filter=[hook], stop_at_layer=2)
        x = cache[hook] - tc.b_dec  # (doc, pos, d_model): what the encoder reads
        direction = x[0, 0] / x[0, 0].norm()  # BOS is position 0 of every document
        projection = x @ direction
        real = _real(n_docs)
        cut = projection[real].quantile(0.95)
        if not projection[:, 0].min() > projection[real].max():
            return None  # BOS does not stand out along its own direction: no such latent can be built
        tc.W_enc[:, latent] = direction
        tc.b_enc[latent] = float(tc.threshold[latent]) - float(cut)
    return tc, latent


def _describe_types(example) -> str:
    return "(" + ", ".join(type(part).__name__ for part in example) + ")"


def _check_examples(actual, expected, model, k: int, buffer: int, where: str, short: bool = False,
                    windows: bool = True) -> None:
    """windows=False skips comparing windows one by one: where activations tie, any order of the tied
    examples is right."""
    expect(isinstance(actual, list), f"{where} should return a list of (activation, str_tokens, seq_pos) "
                                     f"tuples, but returned {type(actual).__name__}.")
    for i, example in enumerate(actual):
        expect(isinstance(example, (tuple, list)) and len(example) == 3,
               f"{where}: every example should be a tuple (activation, str_tokens, seq_pos), but one is {example!r:.80}.")
        act, str_toks, seq_pos = example
        number = isinstance(act, (int, float)) or (isinstance(act, Tensor) and act.numel() == 1)
        expect(number and isinstance(str_toks, (list, tuple)) and all(isinstance(t, str) for t in str_toks),
               f"{where}: every example should be (activation: float, str_tokens: list of str, seq_pos: int), in this "
               f"order, but example {i} holds {_describe_types(example)}.")
        if isinstance(seq_pos, Tensor):
            fail(f"{where}: seq_pos of example {i} is a tensor ({seq_pos!r}); make it a Python int, e.g. int(...) or "
                 ".item(), as the type annotation says.")
        expect(isinstance(seq_pos, int), f"{where}: seq_pos of example {i} should be an int, but is "
                                         f"{type(seq_pos).__name__}.")
    acts = [float(a) for a, _, _ in actual]
    if any(a <= 0 for a in acts):
        fail(f"{where}: an example has activation {min(acts):g}. Keep only positive activations: where the latent "
             "does not fire there is nothing to show (a latent can fire on fewer than k tokens of a batch).")
    specials = {model.tokenizer.pad_token, model.tokenizer.bos_token}
    for act, str_toks, seq_pos in actual:
        dropped = seq_pos >= len(str_toks) and len(str_toks) < 2 * buffer + 1
        expect(0 <= seq_pos < len(str_toks),
               f"{where}: seq_pos {seq_pos!r} is not a position in its window of {len(str_toks)} tokens."
               + (" Hint: was the max token padding, dropped from the window? BOS and padding are not examples of "
                  "anything: multiply the activations by a mask of the real tokens before taking the top k."
                  if dropped else ""))
        expect(str_toks[seq_pos] not in specials,
               f"{where}: an example's max token is {str_toks[seq_pos]!r}. BOS and padding are not examples of "
               "anything: multiply the activations by a mask of the real tokens before taking the top k.")
        expect(model.tokenizer.pad_token not in str_toks,
               f"{where}: a window contains padding tokens; drop them from str_tokens (they only follow a document).")
    expect(acts == sorted(acts, reverse=True), f"{where}: the examples should be sorted by activation, largest first.")
    if len(actual) > k:
        reason = "keep only the overall top k after going through all batches."
    elif len(actual) > len(expected):
        reason = (f"only {len(expected)} tokens (in windows that do not overlap) have a positive activation: use the "
                  "activations after the JumpReLU (transcoder.encode, or hook_sae_acts_post), and keep only positive ones.")
    else:
        reason = "did you take the top k of one batch only, skip the last (shorter) batch, or drop too many?"
    expect(len(actual) == len(expected),
           f"{where} returned {len(actual)} examples, but there are {len(expected)} (k={k}): " + reason)
    want = [float(a) for a, _, _ in expected]

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-4 * abs(b) + 1e-5

    missing = [w for w in want if not any(near(a, w) for a in acts)]
    if missing and all(any(near(a, w) for w in want) or a <= min(want) for a in acts):
        fail(f"{where}: the example with activation {missing[0]:.6g} is missing; yours are real examples, but not the "
             "top k of all documents. Did you skip a batch (e.g. the last, shorter one) or keep the top k of one "
             "batch only?")
    assert_tensor(torch.tensor(acts), torch.tensor(want), f"{where}: the activations", rtol=1e-4, atol=1e-5)
    if not windows:
        return
    for i, ((_, toks, pos), (_, want_toks, want_pos)) in enumerate(zip(actual, expected)):
        expect(list(toks) == want_toks, f"{where}: example {i} has the window {toks!r}, expected {want_toks!r}.")
        hint = ""
        if short:  # the last case: one with seq_pos == buffer everywhere has failed an earlier case already
            hint = (": these documents are shorter than the model's context; where a window is shifted depends on "
                    "the length of the rows you were given (tokens.shape[1]), not on model.cfg.n_ctx.")
        elif pos == buffer:
            hint = (": seq_pos is the max token's position in its window, which is not `buffer` when the window was "
                    "shifted at the start or the end of a document.")
        expect(pos == want_pos, f"{where}: example {i} has seq_pos {pos}, expected {want_pos}" + (hint or "."))


@check
def test_fetch_max_activating_examples(fetch_max_activating_examples, get_k_largest_indices=None,
                                       index_with_buffer=None) -> None:
    """Course-world examples (several batches) for an ordinary latent, on documents cut short, and, if any, for
    one that likes BOS/padding. (The hand-computable parts, get_k_largest_indices and index_with_buffer, have
    their own checks, and run first if this one fails.)"""
    fn = fetch_max_activating_examples
    k_largest = get_k_largest_indices or learner_function(fn, "get_k_largest_indices")
    windows = index_with_buffer or learner_function(fn, "index_with_buffer")
    with inner_exercise_first("get_k_largest_indices", k_largest, test_get_k_largest_indices):
        with inner_exercise_first("index_with_buffer", windows, test_index_with_buffer):
            _fetch_cases(fn)


SHORT_DOCS = (32, 8)  # documents cut to 32 tokens, buffer 8: top windows are shifted at both ends
PADDED_DOCS = (12, 32, 8)  # 12 real tokens then padding up to 32, buffer 8: every window holds padding


def _given_docs(tokens: Tensor, n_docs: int, length: int | None, real: int | None, pad: int) -> Tensor:
    """The first n_docs documents, cut to `length` tokens, and padded after their first `real` tokens."""
    docs = tokens[:n_docs] if length is None else tokens[:n_docs, :length].clone()
    if real is not None:
        docs[:, real:] = pad
    return docs


def _fetch_cases(fetch_max_activating_examples) -> None:
    model, transcoders, tokens = _world()
    n_docs = 40
    docs, tc = tokens[:n_docs], transcoders[1]
    ordinary = _most_active_latent(1, n_docs)
    cases = [(ordinary, 6, _shifting_buffer(model, tc, docs, ordinary), None, None)]
    special = _special_latent(1, n_docs)
    if special is not None:
        cases.insert(0, (special, 6, 3, None, None))
    cases.append((ordinary, 6, SHORT_DOCS[1], SHORT_DOCS[0], None))
    # windows that must reach into padding (the shipped corpus's top windows may all lie inside documents)
    cases.append((ordinary, 6, PADDED_DOCS[2], PADDED_DOCS[1], PADDED_DOCS[0]))
    for latent, k, buffer, length, real in cases:
        where = (f"fetch_max_activating_examples(transcoder 1, latent {latent}, {n_docs} documents"
                 + (f" cut to their first {length} tokens" if length else "")
                 + (f", padding after token {real}" if real else "") + f", k={k}, buffer={buffer}, batch_size=15)")
        expected = _reference_examples(latent, k, buffer, length=length, real=real)
        given = _given_docs(tokens, n_docs, length, real, model.tokenizer.pad_token_id)
        actual, _ = _quiet(fetch_max_activating_examples, model, tc, given, latent, k=k, buffer=buffer, batch_size=15)
        _check_examples(actual, expected, model, k, buffer, where, short=length is not None)
    bos_loving = _bos_loving_transcoder(n_docs)
    if bos_loving is not None:  # a latent whose largest activations are all on BOS
        bos_tc, latent = bos_loving
        few = docs[:15]  # one batch is enough: every document starts with BOS
        where = (f"fetch_max_activating_examples(a transcoder whose latent {latent} fires most on BOS, {len(few)} documents, "
                 "k=6, buffer=3, batch_size=15)")
        expected, _ = _quiet(ref.fetch_max_activating_examples, model, bos_tc, few, latent, k=6, buffer=3, batch_size=15)
        actual, _ = _quiet(fetch_max_activating_examples, model, bos_tc, few, latent, k=6, buffer=3, batch_size=15)
        _check_examples(actual, expected, model, 6, 3, where, windows=False)  # its top real tokens tie (' The' after BOS)


@lru_cache(maxsize=16)
def _reference_examples(latent: int, k: int, buffer: int, n_docs: int = 40, length: int | None = None,
                        real: int | None = None) -> list:
    model, transcoders, tokens = _world()
    docs = _given_docs(tokens, n_docs, length, real, model.tokenizer.pad_token_id)
    examples, _ = _quiet(ref.fetch_max_activating_examples, model, transcoders[1], docs, latent,
                         k=k, buffer=buffer, batch_size=15)
    return examples


def _shifting_buffer(model, tc, docs, latent: int) -> int:
    """The first buffer (of a few) for which some top example's window is shifted at an edge, so that
    seq_pos differs from buffer there (to catch a seq_pos that is always `buffer`)."""
    for buffer in (12, 30, 50):
        if any(pos != buffer for _, _, pos in _reference_examples(latent, 6, buffer)):
            return buffer
    return 50


# -------------------------------------------------------------------------------------------------
# De-embeddings and the extended embedding


def _scores_call(fn, model, tc, latent: int, where: str) -> Tensor:
    result, printed = _quiet(fn, model, tc, latent, k=2)
    expect(result is not None, f"{where} returned None: return the (d_vocab,) scores as well as printing them.")
    expect(bool(printed.strip()), f"{where} printed nothing: print the table with show_top_tokens(model, scores, k).")
    return result


def _rms_no_eps(x: Tensor) -> Tensor:
    """standardise without LayerNorm's eps: the root-mean-square of the text's definition."""
    x = x - x.mean(-1, keepdim=True)
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


def _close_to_any(actual, candidates: list[Tensor]) -> bool:
    """actual matches one of the versions the text allows (compared in float64)."""
    return isinstance(actual, Tensor) and any(
        actual.shape == c.shape and torch.allclose(actual.detach().double(), c.detach().double(), rtol=1e-4, atol=1e-5)
        for c in candidates)


def _deembedding_mistakes(model, tc, latent: int, W: Tensor) -> list[Mistake]:
    scores = W @ tc.W_enc[:, latent]
    return [
        Mistake.looks_like(scores.sort(descending=True).values,
                           "return the scores in token order (scores[t] for token t), not sorted; show_top_tokens sorts "
                           "them for the table."),
        Mistake(lambda a: isinstance(a, Tensor) and a.ndim == 1 and len(a) < len(scores),
                f"return every token's score, shape (d_vocab,) = ({len(scores)},), not only the top ones."),
        Mistake.looks_like(W @ tc.W_dec[latent], "a de-embedding uses the latent's *reading* vector, the "
                                                 "encoder column W_enc[:, latent], not its decoder row."),
        Mistake.looks_like(tc.W_dec[latent] @ model.W_U, "that is the logit lens (what the latent writes); the "
                                                         "de-embedding is about what it reads: embedding @ W_enc[:, latent]."),
    ]


def _normalisation_mistakes(raw: Tensor, reading: Tensor, what: str) -> list[Mistake]:
    """The scores `embedding @ reading` with the embedding `raw` normalised wrongly: not at all, only centred,
    only scaled, or standardised along the vocabulary (per column) instead of per token (per row)."""
    centred = raw - raw.mean(-1, keepdim=True)
    per_column = [standardise(raw.T).T, (raw - raw.mean(0)) / raw.std(0)]
    return [
        Mistake(lambda a: _close_to_any(a, [raw @ reading]),
                f"{what} is not standardised: the transcoder reads LayerNorm's normalised residual stream, so "
                "standardise each token's row first."),
        Mistake(lambda a: _close_to_any(a, [centred @ reading]),
                f"{what} was only centred: standardising also divides each row by its root-mean-square."),
        Mistake(lambda a: _close_to_any(a, [raw / raw.pow(2).mean(-1, keepdim=True).sqrt() @ reading]),
                f"{what} was only scaled: standardising also centres each row (subtracts its mean) first."),
        Mistake(lambda a: _close_to_any(a, [w @ reading for w in per_column]),
                f"{what} was standardised along the vocabulary (each column): standardise each token's row, "
                "over d_model (the last dimension)."),
    ]


@check
def test_show_top_deembeddings(show_top_deembeddings) -> None:
    model, transcoders, _ = _world()
    toy, toy_tc = toy_model(), toy_transcoders()[1]
    # standardise(W_E) has rows (1,-1,1,-1), (√2,0,0,-√2), (0,√2,0,-√2); latent 0 reads (1.5, 0.5, 0.5, 0.5).
    hand = torch.tensor([1.0, math.sqrt(2), 0.0])
    where = "show_top_deembeddings(toy model, toy transcoder, latent 0)"
    assert_tensor(_scores_call(show_top_deembeddings, toy, toy_tc, 0, where), hand, where, rtol=1e-4, atol=1e-5,
                  mistakes=[Mistake.looks_like(TOY_W_E @ toy_tc.W_enc[:, 0],
                                               "standardise W_E first: the transcoder reads LayerNorm's normalised "
                                               "residual stream, not the raw embedding."),
                            *_plain_mistakes(toy, toy_tc, 0),
                            *_deembedding_mistakes(toy, toy_tc, 0, standardise(TOY_W_E)),
                            *_normalisation_mistakes(TOY_W_E, toy_tc.W_enc[:, 0], "W_E")])
    for layer, latent in ((2, 0), (3, 5)):
        tc = transcoders[layer]
        where = f"show_top_deembeddings(course model, transcoder {layer}, latent {latent})"
        expected, _ = _quiet(ref.show_top_deembeddings, model, tc, latent)
        actual = _scores_call(show_top_deembeddings, model, tc, latent, where)
        if _close_to_any(actual, [_rms_no_eps(model.W_E) @ tc.W_enc[:, latent]]):
            continue  # the root-mean-square without LayerNorm's eps: the text's own definition
        assert_tensor(actual, expected, where, rtol=1e-4, atol=1e-4,
                      mistakes=[Mistake.looks_like(model.W_E @ tc.W_enc[:, latent],
                                                   "standardise W_E first: the transcoder reads LayerNorm's normalised "
                                                   "residual stream, not the raw embedding."),
                                *_plain_mistakes(model, tc, latent),
                                *_deembedding_mistakes(model, tc, latent, standardise(model.W_E)),
                                *_normalisation_mistakes(model.W_E, tc.W_enc[:, latent], "W_E")])


def _plain_mistakes(model, tc, latent: int) -> list[Mistake]:
    ln2 = model.blocks[0].ln2
    return [
        Mistake.looks_like(standardise(model.W_U.T) @ tc.W_enc[:, latent],
                           "start from the embedding W_E (model.W_E), not the unembedding W_U (tied in the course "
                           "model, but not in every model)."),
        Mistake.looks_like(ln2(model.W_E[:, None])[:, 0] @ tc.W_enc[:, latent],
                           "ln2 also multiplies by its weight and adds its bias; the transcoder reads "
                           "ln2.hook_normalized, before them: use standardise(W_E)."),
    ]


def _extended_variants(model) -> dict[str, Tensor]:
    """Wrong versions of the extended embedding, by name."""
    W_E = model.W_E[:, None]
    block = model.blocks[0]

    def ext(emb, norm=block.ln2, add_back=True, final=True):
        out = block.mlp(norm(emb) if norm is not None else emb) + (emb if add_back else 0)
        return standardise(out[:, 0]) if final else out[:, 0]

    return {
        "only standardised W_E": standardise(model.W_E),
        "skipped ln2": ext(W_E, norm=None),
        "forgot to add W_E back": ext(W_E, add_back=False),
        "used W_U instead of W_E": ext(model.W_U.T[:, None]),
        "forgot to standardise": ext(W_E, final=False),
        "used ln1 instead of ln2": ext(W_E, norm=block.ln1),
        "the whole block 0": standardise(block(W_E)[:, 0]),
        "standardised W_E added back": standardise((standardise(model.W_E)[:, None] + block.mlp(block.ln2(W_E)))[:, 0]),
        "positional embedding added": ext(W_E + model.W_pos[0]),
        "positional embedding added to the MLP's input": standardise(
            (block.mlp(block.ln2(W_E + model.W_pos[0])) + W_E)[:, 0]),
    }


EXTENDED_HINTS = {
    "the whole block 0": "use only layer 0's ln2 and MLP (model.blocks[0].ln2, model.blocks[0].mlp), not the whole block: "
                         "the extended embedding leaves out attention.",
    "standardised W_E added back": "add back W_E itself, not standardise(W_E): standardise once, at the end.",
    "positional embedding added": "the extended embedding leaves out the positional embedding: start from W_E alone.",
    "positional embedding added to the MLP's input": "the extended embedding leaves out the positional embedding: "
                                                     "start from W_E alone.",
    "only standardised W_E": "that is standardise(W_E) alone: put W_E through layer 0's ln2 and MLP and add the "
                             "MLP's output to W_E before standardising.",
    "skipped ln2": "the MLP reads ln2's output, not the raw embedding: apply model.blocks[0].ln2 before model.blocks[0].mlp.",
    "forgot to add W_E back": "MLP 0's output is *added* to the residual stream: the extended embedding is "
                              "W_E + MLP0(ln2(W_E)), not MLP0(ln2(W_E)) alone.",
    "used W_U instead of W_E": "start from the embedding W_E (model.W_E), not the unembedding (in the course model "
                               "they are tied, but not in every model).",
    "forgot to standardise": "standardise the result (the form in which later transcoders read it).",
    "used ln1 instead of ln2": "the MLP's LayerNorm is ln2 (ln1 belongs to attention).",
}


def _extended_expected(model) -> tuple[Tensor, Tensor]:
    """The reference with the root-mean-square convention, and with (x - mean) / x.std()."""
    W_E = model.W_E[:, None]
    raw = (W_E + model.blocks[0].mlp(model.blocks[0].ln2(W_E)))[:, 0]
    centred = raw - raw.mean(-1, keepdim=True)
    return ref.create_extended_embedding(model), centred / raw.std(-1, keepdim=True)


def _check_extended(create_extended_embedding, model, where: str, confirm=None) -> None:
    """`confirm`: (another model, the learner's result on it). Some wrong variants coincide on the toy model (its ln2
    and ReLU MLP commute with scaling), so a hint is given only if the same mistake explains the other model too."""
    actual = create_extended_embedding(model)
    rms_version, std_version = _extended_expected(model)
    if _close_to_any(actual, [std_version]) and actual.dtype == std_version.dtype:
        return
    variants = _extended_variants(model)
    other_variants = _extended_variants(confirm[0]) if confirm else None

    def explains(a, name: str) -> bool:
        if not _same_upto_std(a, variants[name]):
            return False
        return confirm is None or _same_upto_std(confirm[1], other_variants[name])

    squeeze_hint = Mistake(lambda a: a.ndim == 3 and a.shape[1] == 1,
                           "drop the length-1 position dimension at the end, e.g. with [:, 0] or .squeeze(1).")
    mistakes = [squeeze_hint] + [Mistake(lambda a, name=name: explains(a, name), EXTENDED_HINTS[name]) for name in variants]
    assert_tensor(actual, rms_version, where, rtol=1e-4, atol=1e-5, mistakes=mistakes)


def _same_upto_std(actual: Tensor, wrong: Tensor) -> bool:
    """actual equals `wrong`, or `wrong` with the other standard-deviation convention."""
    if actual.shape != wrong.shape:
        return False
    n = wrong.shape[-1]
    return _close_to_any(actual, [wrong, wrong * math.sqrt((n - 1) / n)])


@check
def test_create_extended_embedding(create_extended_embedding) -> None:
    model, _, _ = _world()
    toy = toy_model()
    # Row 0 by hand: standardise((1,-1,1,-1)) = (1,-1,1,-1); ReLU keeps (1,0,1,0); the sum (2,-1,2,-1)
    # standardises back to (1,-1,1,-1). Rows 1 and 2 follow the same steps.
    rms_version, _ = _extended_expected(toy)
    assert torch.allclose(rms_version[0], torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-4)
    course_result = create_extended_embedding(model)  # to tell apart mistakes that coincide on the toy model
    _check_extended(create_extended_embedding, toy, "create_extended_embedding(toy model)", confirm=(model, course_result))
    _check_extended(create_extended_embedding, model, "create_extended_embedding(course model)")


@check
def test_show_top_deembeddings_extended(show_top_deembeddings_extended, create_extended_embedding=None) -> None:
    inner = create_extended_embedding or learner_function(show_top_deembeddings_extended, "create_extended_embedding")
    with inner_exercise_first("create_extended_embedding", inner, test_create_extended_embedding):
        _extended_deembedding_cases(show_top_deembeddings_extended)


def _extended_deembedding_cases(show_top_deembeddings_extended) -> None:
    model, transcoders, _ = _world()
    toy, toy_tc = toy_model(), toy_transcoders()[1]
    for m, tc, latent, where in (
        (toy, toy_tc, 0, "show_top_deembeddings_extended(toy model, toy transcoder, latent 0)"),
        (model, transcoders[2], 0, "show_top_deembeddings_extended(course model, transcoder 2, latent 0)"),
        (model, transcoders[3], 7, "show_top_deembeddings_extended(course model, transcoder 3, latent 7)"),
    ):
        extended = ref.create_extended_embedding(m)
        expected = extended @ tc.W_enc[:, latent]
        actual = _scores_call(show_top_deembeddings_extended, m, tc, latent, where)
        n = extended.shape[-1]
        if _close_to_any(actual, [expected * math.sqrt((n - 1) / n)]):
            continue  # an extended embedding standardised with (x - mean) / x.std(), which its check accepts too
        assert_tensor(actual, expected, where,
                      rtol=1e-4, atol=1e-4,
                      mistakes=[Mistake.looks_like(standardise(m.W_E) @ tc.W_enc[:, latent],
                                                   "that is the plain de-embedding: use create_extended_embedding(model) "
                                                   "instead of standardise(W_E)."),
                                *_deembedding_mistakes(m, tc, latent, extended),
                                *_normalisation_mistakes(_extended_raw(m), tc.W_enc[:, latent], "the extended embedding")])


def _extended_raw(model) -> Tensor:
    """The extended embedding before its final standardisation: W_E + MLP0(ln2(W_E))."""
    W_E = model.W_E[:, None]
    return (W_E + model.blocks[0].mlp(model.blocks[0].ln2(W_E)))[:, 0]


# -------------------------------------------------------------------------------------------------
# Pullbacks and influence


def _pullback_mistakes(early, later, latent: int) -> list[Mistake]:
    swapped = [early.W_dec @ reading_vector(early, latent), later.W_dec @ reading_vector(later, latent),
               later.W_dec @ reading_vector(early, latent)] if latent < min(early.W_enc.shape[1], later.W_enc.shape[1]) else []
    return [
        Mistake(lambda a: _close_to_any(a, swapped),
                "the two transcoders' roles are mixed up: the earlier one writes (use early.W_dec), the later one "
                "reads (use reading_vector(later, latent_idx))."),
        Mistake.looks_like(early.W_dec @ later.W_enc[:, latent],
                           "centre the later latent's encoder column first (reading_vector does): the transcoder "
                           "reads a centred residual stream, so the column's mean does not count."),
        Mistake.looks_like(early.W_enc.T @ (later.W_enc[:, latent] - later.W_enc[:, latent].mean()),
                           "the earlier latents *write* into the residual stream: use their decoder rows W_dec, "
                           "not their encoder columns."),
    ]


@contextlib.contextmanager
def _weights_kept(where: str, *transcoders):
    """Fail if the learner's code edits a transcoder's weights in place (and put them back)."""
    saved = [{name: p.detach().clone() for name, p in tc.named_parameters()} for tc in transcoders]
    yield
    for tc, weights in zip(transcoders, saved):
        changed = [name for name, p in tc.named_parameters() if not torch.equal(p.detach(), weights[name])]
        if changed:
            with torch.no_grad():
                for name, p in tc.named_parameters():
                    p.copy_(weights[name])
            fail(f"{where} changed the transcoder's {', '.join(changed)} in place (an in-place operation such as -= "
                 "on a column of W_enc edits the weights themselves). Compute on new tensors: "
                 "column - column.mean(), not column -= column.mean().")


@check
def test_pullback(pullback) -> None:
    with _weights_kept("pullback", *toy_transcoders().values(), *_world()[1].values()):
        _pullback_cases(pullback)


def _pullback_cases(pullback) -> None:
    _, transcoders, _ = _world()
    early, later = toy_transcoders()[0], toy_transcoders()[1]
    # Later latent 0 reads (1.5, 0.5, 0.5, 0.5), centred (0.75, -0.25, -0.25, -0.25). Early latent j writes
    # e_j + e_3: (1,0,0,1) -> 0.75 - 0.25 = 0.5; (0,1,0,1) -> -0.5; (0,0,1,1) -> -0.5.
    assert_tensor(pullback(early, later, 0), torch.tensor([0.5, -0.5, -0.5]), "pullback(toy transcoder 0, toy transcoder 1, latent 0)",
                  rtol=1e-5, atol=1e-6, mistakes=_pullback_mistakes(early, later, 0))
    for e, l, latent in ((0, 2, 3), (1, 3, 10)):
        early, later = transcoders[e], transcoders[l]
        assert_tensor(pullback(early, later, latent), ref.pullback(early, later, latent),
                      f"pullback(transcoder {e}, transcoder {l}, latent {latent})", rtol=1e-4, atol=1e-5,
                      mistakes=_pullback_mistakes(early, later, latent))


def _direct_mistakes(cache, early, later, latent: int, right: Tensor) -> list[Mistake]:
    L = int(hook_names(later)[0].split('.')[1])
    scale = cache[f"blocks.{L}.ln2.hook_scale"]
    other_scales = [name for name in cache.keys() if name.endswith("hook_scale") and name != f"blocks.{L}.ln2.hook_scale"]
    wrong_scale = [Mistake(lambda a, name=name: _close_to_any(a, [right * scale / cache[name]]),
                           f"you divided by {name}: the later transcoder reads ln2 of its own layer, so divide by "
                           f"blocks.{L}.ln2.hook_scale.") for name in other_scales]
    return [
        *wrong_scale,
        Mistake.looks_like(right * scale * scale, "multiply by the activations and the pullback, and *divide* by the "
                                                  "LayerNorm scale."),
        Mistake.looks_like(right * scale, "divide by the later layer's LayerNorm scale (blocks.L.ln2.hook_scale): the "
                                          "transcoder reads the residual stream divided by it."),
        Mistake.looks_like(cache[acts_name(early, "hook_sae_acts_pre")] * ref.pullback(early, later, latent) / scale,
                           "use the earlier latents' activations after the JumpReLU (hook_sae_acts_post): "
                           "a latent that does not fire writes nothing."),
        Mistake.looks_like(cache[acts_name(early)] * (early.W_dec @ later.W_enc[:, latent]) / scale,
                           "centre the later latent's encoder column (reading_vector does)."),
    ]


@check
def test_direct_influence(direct_influence, pullback=None) -> None:
    inner = pullback or learner_function(direct_influence, "pullback")
    with inner_exercise_first("pullback", inner, test_pullback):
        _direct_influence_cases(direct_influence)


def _direct_influence_cases(direct_influence) -> None:
    model, transcoders, tokens = _world()
    toy, toys = toy_model(), toy_transcoders()
    cache = run_with_cache_with_transcoder(toy, [toys[0]], torch.tensor([[0, 1, 2]]))
    expected = cache[acts_name(toys[0])] * torch.tensor([0.5, -0.5, -0.5]) / cache["blocks.1.ln2.hook_scale"]
    assert_tensor(direct_influence(cache, toys[0], toys[1], 0), expected,
                  "direct_influence(toy model on tokens [0, 1, 2], toy transcoder 0 -> 1, latent 0)", rtol=1e-4, atol=1e-6,
                  mistakes=_direct_mistakes(cache, toys[0], toys[1], 0, expected))
    docs = tokens[:4]
    cache = run_with_cache_with_transcoder(model, [transcoders[0], transcoders[1]], docs)
    for e, l in ((0, 2), (1, 3)):
        latent = _most_active_latent(l, 4)
        early, later = transcoders[e], transcoders[l]
        expected = ref.direct_influence(cache, early, later, latent)
        assert_tensor(direct_influence(cache, early, later, latent), expected,
                      f"direct_influence(course world, transcoder {e} -> {l}, latent {latent})", rtol=1e-4, atol=1e-5,
                      mistakes=[Mistake(lambda a: a.ndim == 3 and a.shape[0] == 1 != expected.shape[0],
                                        "keep every document of the cache: the result is (batch, pos, d_sae_early)."),
                                *_direct_mistakes(cache, early, later, latent, expected)])


def _head_mistakes(model, cache, early, later, latent, head_layer, head, b, d, right: Tensor) -> list[Mistake]:
    L = int(hook_names(later)[0].split(".")[1])
    pattern = cache[f"blocks.{head_layer}.attn.hook_pattern"][b, head]
    s1 = cache[f"blocks.{head_layer}.ln1.hook_scale"][b, :, 0]
    s2 = cache[f"blocks.{L}.ln2.hook_scale"][b, d, 0]
    through = model.W_V[head_layer, head] @ (model.W_O[head_layer, head] @ (later.W_enc[:, latent] - later.W_enc[:, latent].mean()))
    acts = cache[acts_name(early)][b]

    def variant(pat, src, scale=True):
        per_latent = early.W_dec @ (src - src.mean())
        scales = (s1[:, None] * s2) if scale else 1.0
        return pat[:, None] * acts * per_latent / scales

    w = model.blocks[head_layer].ln1.w
    safe = pattern[d].clamp_min(1e-12)
    base = pattern[d][:, None] * (early.W_dec @ ((w * through) - (w * through).mean()))
    return [
        Mistake.looks_like(base * acts / s1[:, None],
                           "divide by the later layer's ln2 scale at the destination as well as by ln1's at the sources."),
        Mistake.looks_like(base * acts / s2, "divide by ln1's scale at each source position as well as by the later "
                                             "ln2's scale at the destination."),
        Mistake.looks_like(base * acts / (s1[d] * s2), "ln1's scale is taken at each source position "
                                                       "(ln1.hook_scale[batch_idx, :, 0]), not at the destination."),
        Mistake.looks_like(base * cache[acts_name(early)][0] / (s1[:, None] * s2),
                           "take the earlier activations of document batch_idx, not of document 0."),
        Mistake.looks_like(variant(pattern[:, d], w * through),
                           "the pattern is indexed [batch, head, destination, source]: take pattern[batch_idx, head, dest_pos] "
                           "for the weights of every source position."),
        Mistake(lambda a: a.shape == right.shape and torch.allclose(a * safe[:, None], right, rtol=1e-4, atol=1e-6)
                and not torch.allclose(a, right, rtol=1e-4, atol=1e-6),
                "multiply by the attention pattern: a source position contributes in proportion to how much the "
                "destination attends to it."),
        Mistake.looks_like(variant(pattern[d], through), "the head reads ln1's output, which is multiplied by ln1's "
                                                         "weight: multiply the pulled-back reading vector by model.blocks[H].ln1.w."),
        Mistake.looks_like(variant(pattern[d], w * through, scale=False),
                           "divide by both LayerNorm scales: ln1's at the source positions and the later ln2's at the destination."),
        Mistake.looks_like(pattern[d][:, None] * acts * (early.W_dec @ (w * through)) / (s1[:, None] * s2),
                           "centre the source reading vector: ln1 centres the residual stream at the source."),
    ]


@check
def test_head_influence(head_influence) -> None:
    model, transcoders, tokens = _world()
    toy, toys = toy_model(), toy_transcoders()
    cache = run_with_cache_with_transcoder(toy, [toys[0]], torch.tensor([[0, 1, 2]]))
    cases = [(toy, cache, toys[0], toys[1], 1, 1, 0, 0, 2, "toy model on [0, 1, 2], toy transcoder 0 -> 1, latent 1, head L1H0, dest 2")]
    docs = tokens[:3]
    world_cache = run_with_cache_with_transcoder(model, [transcoders[0], transcoders[1]], docs)
    latent = _most_active_latent(2, 3)
    for e, H, h in ((0, 1, 0), (1, 2, 3), (0, 2, 1)):
        cases.append((model, world_cache, transcoders[e], transcoders[2], latent, H, h, 1, 20,
                      f"course world, transcoder {e} -> 2, latent {latent}, head L{H}H{h}, document 1, dest 20"))
    for m, c, early, later, latent, H, h, b, d, label in cases:
        expected = ref.head_influence(m, c, early, later, latent, H, h, b, d)
        assert_tensor(head_influence(m, c, early, later, latent, H, h, b, d), expected, f"head_influence({label})",
                      rtol=1e-4, atol=1e-6, mistakes=_head_mistakes(m, c, early, later, latent, H, h, b, d, expected))


def _attribution_mistakes(model, cache, later, latent, b, p, right: Tensor) -> list[Mistake]:
    L = int(hook_names(later)[0].split(".")[1])
    s = cache[f"blocks.{L}.ln2.hook_scale"][b, p, 0]
    mlp_own = torch.zeros_like(right)
    mlp_own[L + 1, -1] = cache[f"blocks.{L}.hook_mlp_out"][b, p] @ ref.reading_vector(later, latent) / s
    b_o = torch.zeros_like(right)
    b_o[0, 2] = right[0, 2]
    read = ref.reading_vector(later, latent) / s
    n_layers, n_heads = right.shape[0] - 1, right.shape[1] - 1
    mlp_up = right.clone()
    mlp_up[:, -1] = 0
    for layer in range(L):
        mlp_up[layer, -1] = cache[f"blocks.{layer}.hook_mlp_out"][b, p] @ read
    b_o_last = right.clone()
    b_o_last[0, 2] = model.b_O[L] @ read
    all_heads = right.clone()
    for layer in range(L + 1, n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][b, p]
        all_heads[layer + 1, :n_heads] = torch.einsum("hd,hdm->hm", z, model.W_O[layer]) @ read
    swapped = right.clone()
    swapped[0, [0, 1]] = right[0, [1, 0]]
    return [
        Mistake.looks_like(mlp_up, "MLP l goes in row l + 1 (row 0 holds the embeddings and b_O)."),
        Mistake.looks_like(b_o_last, "row 0, column 2 holds the b_O of every layer 0..L, summed, not only layer L's."),
        Mistake.looks_like(all_heads, "heads of layers after L come after the transcoder's input: leave their rows "
                                      "zero (only layers 0..L contribute)."),
        Mistake.looks_like(swapped, "row 0 starts with the token embedding (column 0), then the positional "
                                    "embedding (column 1)."),
        Mistake.looks_like(right * s, "divide by the LayerNorm scale blocks.L.ln2.hook_scale at this position."),
        Mistake.looks_like(right + mlp_own, "MLP L comes after the transcoder's input (it is what the transcoder replaces): "
                                            "only MLPs of earlier layers contribute."),
        Mistake.looks_like(right - b_o, "add the attention output biases b_O (of layers 0..L) in row 0, column 2: "
                                        "without them the entries do not add up to the pre-activation."),
    ]


@check
def test_component_attribution(component_attribution) -> None:
    model, transcoders, tokens = _world()
    toy, toys = toy_model(), toy_transcoders()
    cases = [(toy, run_with_cache_with_transcoder(toy, [toys[1]], torch.tensor([[0, 2, 1]])), toys[1], 0, 0, 2,
              "toy model on [0, 2, 1], toy transcoder 1, latent 0, position 2")]
    docs = tokens[:3]
    for layer in (1, 3):
        cache = run_with_cache_with_transcoder(model, [transcoders[layer]], docs)
        latent = _most_active_latent(layer, 3)
        cases.append((model, cache, transcoders[layer], latent, 2, 15,
                      f"course world, transcoder {layer}, latent {latent}, document 2, position 15"))
    for m, cache, later, latent, b, p, label in cases:
        where = f"component_attribution({label})"
        actual = component_attribution(m, cache, later, latent, b, p)
        expected = ref.component_attribution(m, cache, later, latent, b, p)
        mistakes = _attribution_mistakes(m, cache, later, latent, b, p, expected)
        if b != 0:
            mistakes.append(Mistake.looks_like(ref.component_attribution(m, cache, later, latent, 0, p),
                                               "use document batch_idx of the cache, not document 0."))
        pre = cache[acts_name(later, "hook_sae_acts_pre")][b, p, latent] - later.b_enc[latent]
        if isinstance(actual, Tensor) and actual.shape == expected.shape and not torch.allclose(
                actual.sum().double(), pre.double(), rtol=1e-3, atol=1e-4):
            message = (f"{where}: the entries add up to {float(actual.sum()):.4f}, but the pre-activation minus b_enc is "
                       f"{float(pre):.4f}; the split should be exact.")
            kind = None if hint_for(actual, mistakes) else describe_difference(actual, expected, rtol=1e-4, atol=1e-5)
            fail(message + (f" Difference: {kind}" if kind else ""), actual, mistakes)
        assert_tensor(actual, expected, where, rtol=1e-4, atol=1e-5, check_dtype=False, mistakes=mistakes)
