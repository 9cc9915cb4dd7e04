"""Checks for chapter 07. The notebook calls them as `tests.test_<exercise>(learner_code, ...)`.

Each check runs the learner's function on a case small enough to work out by hand (the expected
values are written here) and on course-world inputs, where the expected values are computed here
by another route (loops, the model's own logits and MLP output, F1 from the planted labels); the
reference solutions (solutions/ch07_sae_circuits.py) only supply the corpus and shared helpers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from torch import Tensor

import solutions.ch07_sae_circuits as ref
from utils.checks import Mistake, assert_tensor, check, expect, fail

# -------------------------------------------------------------------------------------------------
# The course world (loaded once, only when a check needs it)


@lru_cache(maxsize=1)
def _world():
    """(model, {2: mlp_post_2, 3: mlp_post_3}, the chapter's corpus, its cache)."""
    from utils.world import load_dictionary, load_model

    model = load_model()
    saes = {layer: load_dictionary(f"mlp_post_{layer}") for layer in (2, 3)}
    data = ref.closer_corpus(300)
    with torch.no_grad():
        _, cache = model.run_with_cache(data.tokens[:12])
    return model, saes, data, cache


def _near(wrong: Tensor, hint: str, tol: float = 1e-4) -> Mistake:
    """A known wrong answer recognised up to float32 noise (allclose's default atol is too tight near 0)."""
    return Mistake(lambda a: isinstance(a, Tensor) and a.shape == wrong.shape
                   and torch.allclose(a.detach().double(), wrong.detach().double(), atol=tol, rtol=tol), hint)


def _closers(data, n_docs: int | None = None):
    """(docs, pos, answer) of the closers, by a loop over the labels."""
    is_closer = data.labels[..., data.concept_index("quote_close")]
    docs, pos, answer = [], [], []
    for d in range(len(is_closer) if n_docs is None else n_docs):
        for p in range(1, is_closer.shape[1]):
            if is_closer[d, p]:
                docs.append(d)
                pos.append(p - 1)
                answer.append(int(data.tokens[d, p]))
    return torch.tensor(docs), torch.tensor(pos), torch.tensor(answer)


# -------------------------------------------------------------------------------------------------
# closer_positions


def _check_triple(result, expected: tuple[Tensor, Tensor, Tensor], where: str, mistakes) -> None:
    expect(isinstance(result, tuple) and len(result) == 3,
           f"closer_positions({where}) should return a tuple (docs, pos, answer), but returned "
           f"{type(result).__name__}.")
    for name, got, want in zip(("docs", "pos", "answer"), result, expected):
        assert_tensor(got, want, f"closer_positions({where}): {name}", check_dtype=False, mistakes=mistakes)


@check
def test_closer_positions(closer_positions) -> None:
    """Two hand-made documents (one closer at position 0), then the chapter's corpus."""
    is_closer = torch.zeros(2, 6, dtype=torch.bool)
    is_closer[0, 1] = is_closer[0, 4] = is_closer[1, 0] = is_closer[1, 5] = True
    tokens = torch.tensor([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    want = (torch.tensor([0, 0, 1]), torch.tensor([0, 3, 4]), torch.tensor([11, 14, 25]))
    mistakes = [
        Mistake(lambda a: torch.equal(a, torch.tensor([1, 4, 0, 5])) or torch.equal(a, torch.tensor([1, 4, 5])),
                "these are the closers' own positions: the model predicts a token one position earlier, so step "
                "back by one."),
        Mistake(lambda a: torch.equal(a, torch.tensor([10, 13, 24])),
                "the answer is the closer itself: read the token at the closer's position, not at the position "
                "before it."),
        Mistake(lambda a: len(a) == 4, "a closer at position 0 has no position before it: leave it out (here "
                                       "-1 would wrap around to the last position)."),
        Mistake(lambda a: torch.equal(a, torch.tensor([0, 3, 10])),
                "these are positions in the flattened (n_docs * n_ctx) tensor: keep the document and the "
                "position apart (torch.nonzero(..., as_tuple=True))."),
    ]
    _check_triple(closer_positions(is_closer, tokens), want, "two documents of 6 tokens", mistakes)
    _, _, data, _ = _world()
    result = closer_positions(data.labels[..., data.concept_index("quote_close")], data.tokens)
    _check_triple(result, _closers(data), "the chapter's corpus", mistakes)


# -------------------------------------------------------------------------------------------------
# component_dla


def _dla_by_another_route(model, parts: Tensor, scale: Tensor, answer: Tensor, other: Tensor) -> Tensor:
    """Every component through the frozen ln_final (without its bias) to the full vocabulary, then the
    difference of the two logits."""
    normed = (parts - parts.mean(-1, keepdim=True)) / scale * model.ln_final.w  # (c, n, d)
    logits = normed @ model.W_U  # (c, n, vocab)
    rows = torch.arange(len(answer))
    right = logits[:, rows, answer]
    other = other if other.ndim == 2 else other[:, None]
    wrong = torch.stack([logits[:, rows, other[:, k]] for k in range(other.shape[1])]).mean(0)
    return right - wrong


def _dla_mistakes(model, parts, scale, answer, other) -> list[Mistake]:
    o = other if other.ndim == 2 else other[:, None]
    diff = model.W_U[:, answer] - model.W_U[:, o].mean(-1)
    w = model.ln_final.w[:, None]
    centred = parts - parts.mean(-1, keepdim=True)
    mistakes = [
        _near(((parts / scale) * (w * diff).T).sum(-1),
                           "ln_final subtracts each vector's mean before scaling: centre every component "
                           "(components - components.mean(-1, keepdim=True))."),
        _near((centred * (w * diff).T).sum(-1),
                           "divide by ln_final's scale: the final residual stream is divided by it before the "
                           "unembedding."),
        _near(((centred * scale) * (w * diff).T).sum(-1),
                           "divide by the scale, do not multiply."),
        _near(((centred / scale) * diff.T).sum(-1),
                           "multiply by ln_final's weight (model.ln_final.w): this model's LayerNorm is not folded "
                           "into W_U."),
        _near(-((centred / scale) * (w * diff).T).sum(-1),
                           "the sign is flipped: it is logit[answer] - logit[other]."),
    ]
    if other.ndim == 2:
        first = w * (model.W_U[:, answer] - model.W_U[:, other[:, 0]])
        mistakes.append(_near(((centred / scale) * first.T).sum(-1),
                                           "with other of shape (n, k), compare with the *mean* logit of the k "
                                           "tokens, not the first one."))
    return mistakes


@check
def test_component_dla(component_dla) -> None:
    """The course model at 12 documents' closers: against ln_final applied to each component, and the
    parts plus the constant must give the model's own logit difference."""
    model, _, data, cache = _world()
    docs, pos, answer = _closers(data, 12)
    from utils.world import load_tokenizer

    ids = load_tokenizer().get_vocab()
    closer_ids = torch.tensor([ids[c] for c in ref.CLOSERS])
    plain = torch.tensor([ids[c] for c in ref.PLAIN])[(answer[:, None] == closer_ids).int().argmax(-1)]
    others = torch.stack([closer_ids[closer_ids != a] for a in answer])
    parts = cache.get_full_resid_decomposition(expand_neurons=False)[:, docs, pos]
    scale = cache["ln_final.hook_scale"][docs, pos]
    with torch.no_grad():
        logits = model.unembed(model.ln_final(cache["blocks.3.hook_resid_post"]))[docs, pos]
    rows = torch.arange(len(docs))
    for other, what in [(plain, "closer - plain mark (other of shape (n,))"),
                        (others, "right closer - the other three (other of shape (n, 3))")]:
        with torch.no_grad():
            got = component_dla(parts, scale, model, answer, other)
            want = _dla_by_another_route(model, parts, scale, answer, other)
            mistakes = _dla_mistakes(model, parts, scale, answer, other)
            constant = ref.dla_constant(model, answer, other)
        assert_tensor(got, want, f"component_dla, {what}", atol=1e-4, rtol=1e-4, mistakes=mistakes)
        o = other if other.ndim == 2 else other[:, None]
        diff = logits[rows, answer] - torch.stack([logits[rows, o[:, k]] for k in range(o.shape[1])]).mean(0)
        total = got.detach().sum(0) + constant
        gap = float((total - diff).abs().max())
        expect(gap < 1e-3, f"component_dla, {what}: the parts plus the constant differ from the model's logit "
                           f"difference by up to {gap:.3g}; they should add up exactly.")


# -------------------------------------------------------------------------------------------------
# mlp_parts


@check
def test_mlp_parts(mlp_parts) -> None:
    """MLP2 of the course model on 12 documents ((docs, pos, d_mlp) input) and on 5 positions
    ((n, d_mlp) input): the parts against the SAE's own equations, and their sum against the MLP output."""
    model, saes, _, cache = _world()
    sae, mlp = saes[2], model.blocks[2].mlp
    post_all = cache["blocks.2.mlp.hook_post"]
    for post, out, where in [(post_all, cache["blocks.2.hook_mlp_out"], "12 documents, post of shape (12, n_ctx, 512)"),
                             (post_all[0, :5], cache["blocks.2.hook_mlp_out"][0, :5], "5 positions, post of shape (5, 512)")]:
        with torch.no_grad():
            got = mlp_parts(post, sae, mlp.W_out, mlp.b_out)
            acts = sae.encode(post)
            recon_post = acts @ sae.W_dec + sae.b_dec
            want = torch.stack([recon_post @ mlp.W_out, (post - recon_post) @ mlp.W_out,
                                mlp.b_out.expand(*post.shape[:-1], -1)])
            no_b_dec = acts @ sae.W_dec
        mistakes = [
            Mistake(lambda a: a.shape[-1] == post.shape[-1],
                    "the parts should be in the residual stream (d_model): multiply each piece of post by W_out."),
            _near(torch.stack([no_b_dec @ mlp.W_out, (post - no_b_dec) @ mlp.W_out, want[2]]),
                               "the reconstruction includes the decoder bias b_dec: use sae.decode(sae.encode(post))."),
            _near(torch.stack([want[0] + mlp.b_out, want[1], want[2]]),
                               "b_out is counted twice: it is the third part, so leave it out of the reconstruction."),
            _near(torch.stack([want[0], want[1] + mlp.b_out, want[2]]),
                               "b_out is counted twice: it is the third part, so leave it out of the error."),
        ]
        expect(isinstance(got, Tensor) and got.shape[0] == 3,
               f"mlp_parts({where}) should return a tensor whose first dimension holds the 3 parts, but returned "
               f"{getattr(got, 'shape', type(got).__name__)}.")
        assert_tensor(got, want, f"mlp_parts({where})", atol=1e-4, rtol=1e-4, mistakes=mistakes)
        gap = float((got.sum(0) - out).abs().max())
        expect(gap < 1e-3, f"mlp_parts({where}): the three parts sum to something {gap:.3g} away from the MLP's "
                           "output; they should add up to it exactly.")


# -------------------------------------------------------------------------------------------------
# loss_recovered


def _correlated_losses(n: int = 200, seed: int = 0):
    """Losses that vary a lot between positions but move together across the conditions."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.empty(n).exponential_(1.0, generator=gen) * 3
    clean = base
    ablated = base + 1.0 + 0.1 * torch.randn(n, generator=gen)
    spliced = base + 0.2 + 0.1 * torch.randn(n, generator=gen)
    return clean, ablated, spliced


def _bootstrap(clean, ablated, spliced, n_boot: int, seed: int, paired: bool = True):
    rng = np.random.default_rng(seed)
    c, a, s = clean.numpy(), ablated.numpy(), spliced.numpy()
    n = len(c)
    i = rng.integers(0, n, (n_boot, n))
    j = i if paired else rng.integers(0, n, (n_boot, n))
    k = i if paired else rng.integers(0, n, (n_boot, n))
    ratio = (a[i].mean(1) - s[j].mean(1)) / (a[i].mean(1) - c[k].mean(1))
    return np.percentile(ratio, [2.5, 97.5])


@check
def test_loss_recovered(loss_recovered) -> None:
    """Two positions worked out by hand, then 200 positions whose losses move together (the interval
    is compared with a paired bootstrap of 4000 draws, within a quarter of its width)."""
    clean, ablated, spliced = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]), torch.tensor([2.0, 2.0])
    got = loss_recovered(clean, ablated, spliced, n_boot=50)
    expect(isinstance(got, tuple) and len(got) == 3,
           f"loss_recovered should return a tuple (recovered, low, high), but returned {type(got).__name__}.")
    want = (4.5 - 2.0) / (4.5 - 1.5)
    mistakes = [
        Mistake(lambda r: abs(float(r) - 0.75) < 1e-6,
                "that is the mean of the per-position fractions; take the fraction of the mean losses "
                "(a position where the ablation costs little would dominate its own ratio)."),
        Mistake(lambda r: abs(float(r) - (1 - want)) < 1e-6,
                "that is the share of the loss *not* recovered: (ablated - spliced) / (ablated - clean)."),
        Mistake(lambda r: abs(float(r) - (2.0 - 1.5) / (4.5 - 1.5)) < 1e-6,
                "the numerator compares the splice with the ablation, not with the clean run."),
    ]
    expect(abs(float(got[0]) - want) < 1e-6,
           f"loss_recovered on clean [1, 2], ablated [3, 6], spliced [2, 2] gives {float(got[0]):.4g}; expected "
           f"{want:.4g} = (4.5 - 2) / (4.5 - 1.5).", got[0], mistakes)
    clean, ablated, spliced = _correlated_losses()
    point, low, high = (float(x) for x in loss_recovered(clean, ablated, spliced))
    a, s, c = float(ablated.mean()), float(spliced.mean()), float(clean.mean())
    expect(abs(point - (a - s) / (a - c)) < 1e-5, f"loss_recovered on 200 positions: {point:.4f}, expected "
                                                   f"{(a - s) / (a - c):.4f}.")
    lo, hi = _bootstrap(clean, ablated, spliced, 4000, 123)
    expect(low <= point <= high, f"loss_recovered: the interval ({low:.3f}, {high:.3f}) should contain the "
                                 f"point estimate {point:.3f}.")
    width = hi - lo
    if abs(low - lo) <= 0.25 * width and abs(high - hi) <= 0.25 * width:
        return
    ulo, uhi = _bootstrap(clean, ablated, spliced, 4000, 123, paired=False)
    message = (f"loss_recovered on 200 positions: the 95% interval is ({low:.3f}, {high:.3f}); a paired bootstrap "
               f"gives about ({lo:.3f}, {hi:.3f}).")
    if high - low < 0.1 * width:
        fail(message + " Hint: your interval has (almost) no width: recompute the ratio on n_boot resamplings of the "
                       "positions and take the 2.5th and 97.5th percentiles of those ratios.")
    if (high - low) > 2 * width and abs((high - low) - (uhi - ulo)) < 0.5 * (uhi - ulo):
        fail(message + " Hint: your interval is as wide as resampling each condition on its own: the three losses "
                       "are measured on the same positions, so draw one set of indices per resampling and use it "
                       "for all three.")
    fail(message + " Hint: resample positions with replacement (n_boot times), recompute the ratio of means each "
                   "time, and take the 2.5th and 97.5th percentiles.")


# -------------------------------------------------------------------------------------------------
# ablate_latents


@check
def test_ablate_latents(ablate_latents) -> None:
    """MLP2's neurons on 3 documents (negative values included), two latents, with and without a mask."""
    model, saes, _, cache = _world()
    sae = saes[2]
    post = cache["blocks.2.mlp.hook_post"][:3]
    acts = sae.encode(post)
    latents = torch.topk((acts > 0).float().sum((0, 1)), 2).indices  # two latents that fire often here
    gen = torch.Generator().manual_seed(0)
    where = torch.rand(post.shape[:-1], generator=gen) < 0.5
    for mask, what in [(None, "everywhere"), (where, "at half of the positions (where=...)")]:
        removed = torch.zeros_like(post)
        for latent in latents.tolist():
            removed += acts[..., latent, None] * sae.W_dec[latent]
        if mask is not None:
            removed = removed * mask[..., None]
        want = post - removed
        recon = sae.decode(acts)
        unweighted = post - sae.W_dec[latents].sum(0) * (1 if mask is None else mask[..., None])
        mistakes = [
            _near(recon - removed, "keep the SAE's error: subtract the latents' terms from post itself, "
                                                "not from the reconstruction."),
            _near(unweighted, "each decoder row is scaled by the latent's activation there: subtract "
                                           "acts[..., latents] @ W_dec[latents]."),
            _near(want - sae.b_dec * (1 if mask is None else mask[..., None]),
                               "the decoder bias b_dec belongs to no latent: leave it in."),
        ]
        if mask is not None:
            full = post - sum(acts[..., i, None] * sae.W_dec[i] for i in latents.tolist())
            mistakes.append(_near(full, "ablate only where `where` is True."))
        with torch.no_grad():
            got = ablate_latents(post.clone(), sae, latents, mask)
        assert_tensor(got, want, f"ablate_latents(post of shape {tuple(post.shape)}, 2 latents, {what})",
                      atol=1e-4, rtol=1e-4, mistakes=mistakes)


# -------------------------------------------------------------------------------------------------
# pairwise_cosines


def _cosines_by_loop(W_dec_a, W_out_a, W_in_b, W_enc_b) -> Tensor:
    write = W_dec_a @ W_out_a
    read = (W_in_b @ W_enc_b).T
    return torch.stack([torch.nn.functional.cosine_similarity(w[None], read, dim=-1) for w in write])


def _cosine_mistakes(W_dec_a, W_out_a, W_in_b, W_enc_b) -> list[Mistake]:
    def cos(write, read):  # rows of write against columns of read
        return (write / write.norm(dim=-1, keepdim=True)) @ (read / read.norm(dim=0, keepdim=True))

    right = cos(W_dec_a @ W_out_a, W_in_b @ W_enc_b)
    write, read = W_dec_a @ W_out_a, W_in_b @ W_enc_b
    mistakes = [
        _near(torch.tril(right), "do not apply torch.tril: the two dictionaries belong to different "
                                              "layers, so every (earlier latent, later latent) pair is a candidate "
                                              "edge; a triangle only makes sense for a square matrix of one layer "
                                              "against itself."),
        _near(torch.triu(right), "do not keep a triangle: every pair of the two layers counts."),
        _near(write @ read, "normalise: a cosine divides by the norms of both vectors."),
        _near((write / write.norm(dim=0, keepdim=True)) @ (read / read.norm(dim=-1, keepdim=True)),
                           "normalise each latent's vector: the rows of W_dec_a @ W_out_a and the columns of "
                           "W_in_b @ W_enc_b (you normalised the other dimension)."),
    ]
    if W_out_a.shape[0] == W_out_a.shape[1]:  # only then does a missing matrix still give a result
        mistakes += [
            _near(cos(W_dec_a, W_enc_b), "both W_out_a and W_in_b are missing: the latents write and "
                                                      "read the residual stream through the MLPs' weights."),
            _near(cos(W_dec_a, W_in_b @ W_enc_b), "W_out_a is missing: an earlier latent's decoder "
                                                               "direction lives among the MLP's neurons; W_out_a "
                                                               "takes it to the residual stream."),
            _near(cos(W_dec_a @ W_out_a, W_enc_b), "W_in_b is missing: the later latent reads "
                                                                "neurons, which read the residual stream through "
                                                                "W_in_b."),
        ]
    return mistakes


@check
def test_pairwise_cosines(pairwise_cosines) -> None:
    """A small case with d_mlp = d_model = 3 (4 earlier and 5 later latents), then MLP2 -> MLP3."""
    gen = torch.Generator().manual_seed(0)
    small = (torch.randn(4, 3, generator=gen), torch.randn(3, 3, generator=gen), torch.randn(3, 3, generator=gen),
             torch.randn(3, 5, generator=gen))
    assert_tensor(pairwise_cosines(*small), _cosines_by_loop(*small), "pairwise_cosines(4 x 5 latents, d_mlp = "
                  "d_model = 3)", atol=1e-5, rtol=1e-4, mistakes=_cosine_mistakes(*small))
    model, saes, _, _ = _world()
    W_in3 = model.blocks[3].ln2.w[:, None] * model.blocks[3].mlp.W_in
    world = (saes[2].W_dec, model.blocks[2].mlp.W_out, W_in3, saes[3].W_enc)
    with torch.no_grad():
        got = pairwise_cosines(*world)
        want = _cosines_by_loop(*[w.detach() for w in world])
        mistakes = _cosine_mistakes(*world)
    assert_tensor(got, want, "pairwise_cosines(mlp_post_2 -> mlp_post_3)", atol=1e-4, rtol=1e-3,
                  mistakes=mistakes)


# -------------------------------------------------------------------------------------------------
# and_or_table

COLUMNS = ["i", "j", "drop_i", "drop_j", "drop_ij", "interaction", "kind"]


def _table(drops: list[float], pair_drops: dict, tol: float) -> pd.DataFrame:
    rows = []
    for i in range(len(drops)):
        for j in range(i + 1, len(drops)):
            inter = pair_drops[i, j] - drops[i] - drops[j]
            kind = "AND" if inter < -tol else "OR" if inter > tol else "additive"
            rows.append([i, j, drops[i], drops[j], pair_drops[i, j], inter, kind])
    return pd.DataFrame(rows, columns=COLUMNS)


def _and_or_case():
    """Four upstream latents at two positions where the target is 1 and 3: 0 and 1 are an AND (either
    alone removes everything), 2 and 3 an OR (alone, 2 removes nothing and 3 half; together, all).
    Returns (base, single, pair, drops by means, drops by per-position ratios, pair drops)."""
    base = torch.tensor([1.0, 3.0])
    single = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 3.0], [0.8, 1.2]])
    pair = torch.zeros(4, 4, 2)  # every pair removes the target completely
    by_means = [1.0, 1.0, 0.0, 0.5]  # 1 - mean(after) / mean(base), mean(base) = 2
    per_position = [1.0, 1.0, 0.0, 0.4]  # mean of (1 - 0.8/1, 1 - 1.2/3) for latent 3
    return base, single, pair, by_means, per_position, {(i, j): 1.0 for i in range(4) for j in range(4)}


def _compare_tables(got, want: pd.DataFrame, where: str, wrong_per_position: pd.DataFrame) -> None:
    expect(isinstance(got, pd.DataFrame), f"and_or_table({where}) should return a pandas DataFrame, but returned "
                                          f"{type(got).__name__}.")
    missing = [c for c in COLUMNS if c not in got.columns]
    expect(not missing, f"and_or_table({where}): the columns {missing} are missing (expected {COLUMNS}).")
    if len(got) != len(want):
        k = int(want["j"].max()) + 1
        hint = (" Hint: one row per pair with i < j (not i >= j, and not i == j)." if len(got) in (k * k, k * (k - 1))
                else "")
        fail(f"and_or_table({where}) has {len(got)} rows; expected {len(want)}, one per pair i < j.{hint}")
    got = got.sort_values(["i", "j"]).reset_index(drop=True)
    expect(got["i"].tolist() == want["i"].tolist() and got["j"].tolist() == want["j"].tolist(),
           f"and_or_table({where}): the pairs (i, j) should be {list(zip(want['i'], want['j']))}, got "
           f"{list(zip(got['i'], got['j']))}.")
    for column in ("drop_i", "drop_j", "drop_ij"):
        g, w = got[column].to_numpy(float), want[column].to_numpy(float)
        if not np.allclose(g, w, atol=1e-5):
            hint = ""
            if np.allclose(g, wrong_per_position[column].to_numpy(float), atol=1e-5):
                hint = (" Hint: average the activations over positions first, then divide (a ratio of means), rather "
                        "than averaging per-position drops.")
            elif np.allclose(g, 1 - w, atol=1e-5):
                hint = " Hint: a drop is 1 - after / base, the share that is lost, not the share that is left."
            fail(f"and_or_table({where}): {column} is {np.round(g, 3).tolist()}, expected {np.round(w, 3).tolist()}.{hint}")
    g, w = got["interaction"].to_numpy(float), want["interaction"].to_numpy(float)
    if not np.allclose(g, w, atol=1e-5):
        hint = " Hint: interaction = drop_ij - drop_i - drop_j." if not np.allclose(g, -w, atol=1e-5) else \
            " Hint: the sign is flipped: interaction = drop_ij - (drop_i + drop_j)."
        fail(f"and_or_table({where}): interaction is {np.round(g, 3).tolist()}, expected {np.round(w, 3).tolist()}.{hint}")
    kinds, want_kinds = got["kind"].tolist(), want["kind"].tolist()
    if kinds != want_kinds:
        swapped = {"AND": "OR", "OR": "AND", "additive": "additive"}
        if [swapped.get(k, k) for k in kinds] == want_kinds:
            fail(f"and_or_table({where}): kind is {kinds}, expected {want_kinds}. Hint: AND and OR are swapped: in an "
                 "AND gate either input alone removes most of the target, so the pair does *less* than the sum "
                 "(interaction < -tol).")
        fail(f"and_or_table({where}): kind is {kinds}, expected {want_kinds}. Hint: 'AND' when interaction < -tol, "
             "'OR' when interaction > tol, else 'additive'.")
@check
def test_and_or_table(and_or_table) -> None:
    """Four latents at two positions with two AND pairs and an OR pair (worked out by hand), then the
    same with tol=0.6, where only the strongest interaction counts."""
    base, single, pair, by_means, per_position, pair_drops = _and_or_case()
    for tol, what in [(None, "4 latents at 2 positions"), (0.6, "the same with tol=0.6")]:
        want = _table(by_means, pair_drops, 0.1 if tol is None else tol)
        wrong = _table(per_position, pair_drops, 0.1 if tol is None else tol)
        got = and_or_table(base, single, pair) if tol is None else and_or_table(base, single, pair, tol=tol)
        _compare_tables(got, want, what, wrong)


# -------------------------------------------------------------------------------------------------
# neurons_for_mass


def _neurons_by_loop(W: Tensor, share: float) -> Tensor:
    out = []
    for row in W.double():
        sq = sorted((x * x for x in row.tolist()), reverse=True)
        total, running, k = sum(sq), 0.0, 0
        while running < share * total - 1e-9:
            running += sq[k]
            k += 1
        out.append(max(k, 1))
    return torch.tensor(out)


@check
def test_neurons_for_mass(neurons_for_mass) -> None:
    """Four hand-made rows (a negative weight, a share reached exactly), with share 0.9 and 0.75, then
    the decoder rows of mlp_post_2."""
    W = torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0], [-5.0, 0.0, 0.0, 0.0, 0.0],
                      [2.0, 1.0, 1.0, 1.0, 1.0]])
    for share, want in [(0.9, torch.tensor([2, 4, 1, 5])), (0.75, torch.tensor([2, 3, 1, 3]))]:
        got = neurons_for_mass(W, share) if share != 0.9 else neurons_for_mass(W)
        sq = W.pow(2)
        mistakes = [
            Mistake.looks_like(_neurons_by_loop(W.abs().sqrt(), share),
                               "weigh each neuron by its *squared* weight: the share is of the squared norm."),
            Mistake.looks_like(want - 1, "off by one: count the neurons needed to *reach* the share, including the "
                                         "one that gets there."),
            Mistake(lambda a: torch.equal(torch.as_tensor(a), torch.tensor([2, 4, 1, 4])) and share == 0.75,
                    "a share reached exactly counts: stop at the first count whose running share is >= share."),
            Mistake(lambda a: torch.equal(torch.as_tensor(a), ((sq.sort(-1).values.cumsum(-1) / sq.sum(-1, keepdim=True))
                                                               < share).sum(-1) + 1),
                    "sort from the largest down: the fewest neurons that hold the share are the largest ones."),
        ]
        assert_tensor(got, want, f"neurons_for_mass(4 rows, share={share})", check_dtype=False, mistakes=mistakes)
    _, saes, _, _ = _world()
    W = saes[2].W_dec.detach()[:64]
    with torch.no_grad():
        assert_tensor(neurons_for_mass(W), _neurons_by_loop(W, 0.9), "neurons_for_mass(64 decoder rows of mlp_post_2)",
                      check_dtype=False)


# -------------------------------------------------------------------------------------------------
# capstone

PASS_SHARE = 0.9  # a latent passes at F1 >= PASS_SHARE x the best any mlp_post_3 latent reaches
KEYS = {"closer": "quote_close", "period": "quote_close:period", "question": "quote_close:question",
        "exclamation": "quote_close:exclamation"}


@lru_cache(maxsize=1)
def _capstone_world():
    """(corpus, mlp_post_3 activations, (2, 4) mean MLP DLA, end-of-sentence mask), computed here."""
    from utils.world import load_tokenizer

    model, saes, data, _ = _world()
    ids = load_tokenizer().get_vocab()
    closer_ids = torch.tensor([ids[c] for c in ref.CLOSERS])
    plain_ids = torch.tensor([ids[c] for c in ref.PLAIN])
    with torch.no_grad():
        _, cache = model.run_with_cache(data.tokens)
        acts3 = saes[3].encode(cache["blocks.3.mlp.hook_post"])
        docs, pos, answer = _closers(data)
        plain = plain_ids[(answer[:, None] == closer_ids).int().argmax(-1)]
        others = torch.stack([closer_ids[closer_ids != a] for a in answer])
        scale = cache["ln_final.hook_scale"][docs, pos]
        dla = torch.zeros(2, 4)
        for layer in range(4):
            part = cache[f"blocks.{layer}.hook_mlp_out"][docs, pos][None]
            dla[0, layer] = _dla_by_another_route(model, part, scale, answer, plain).mean()
            dla[1, layer] = _dla_by_another_route(model, part, scale, answer, others).mean()
    nxt = torch.zeros_like(data.tokens)
    nxt[:, :-1] = data.tokens[:, 1:]
    eos = torch.isin(nxt, torch.cat([closer_ids, plain_ids[:3]])) & data.mask
    return data, acts3, dla, eos


def _f1(fires: Tensor, truth: Tensor) -> Tensor:
    tp = (fires & truth[:, None]).sum(0).float()
    return 2 * tp / (fires.sum(0) + truth.sum()).clamp_min(1)


@check
def test_capstone(capstone) -> None:
    """The check computes the corpus, the activations and the DLA itself, calls your function with them,
    and scores each latent against the planted labels at end-of-sentence positions."""
    data, acts3, dla, eos = _capstone_world()
    answer = capstone(data, acts3, dla.clone())
    expect(isinstance(answer, dict), f"capstone should return a dict, but returned {type(answer).__name__}.")
    missing = [k for k in ("closer_vs_plain", "which_closer", *KEYS) if k not in answer]
    expect(not missing, f"capstone's answer lacks the keys {missing}.")
    names = ["closer - plain mark", "right closer - other closers"]
    for row, key in enumerate(("closer_vs_plain", "which_closer")):
        want = int(dla[row].argmax())
        expect(answer[key] == want, f"capstone: {key} is {answer[key]!r}, but MLP{want} writes the most of "
                                    f"{names[row]} (mean DLA of MLP0..3: {', '.join(f'{v:.2f}' for v in dla[row])}).")
    fires = acts3 > 0
    for key, concept in KEYS.items():
        latent = answer[key]
        expect(isinstance(latent, int) and 0 <= latent < acts3.shape[-1],
               f"capstone: {key} should be an mlp_post_3 latent id (an int from 0 to {acts3.shape[-1] - 1}), not "
               f"{latent!r}.")
        truth = ref.next_token_labels(data, concept)
        f1 = _f1(fires[eos], truth[eos])
        best = float(f1.max())
        if float(f1[latent]) >= PASS_SHARE * best:
            continue
        message = (f"capstone: latent {latent} has F1 {float(f1[latent]):.2f} at end-of-sentence positions for "
                   f"'{key}' next; the best mlp_post_3 latent reaches {best:.2f} (pass: {PASS_SHARE} x best).")
        everywhere = _f1(fires[data.mask], truth[data.mask])
        same_token = _f1(fires[eos], data.labels[..., data.concept_index(concept)][eos].bool())
        if latent == int(everywhere.argmax()):
            fail(message + " It is the best latent over *all* positions: there, firing at any sentence end already "
                           "looks like a closer detector. Compare only positions where a closer could come (the "
                           "next token is a closer or a plain '.', '?' or '!').")
        if latent == int(same_token.argmax()) or latent == int(_f1(fires[data.mask], data.labels[..., data.concept_index(concept)][data.mask].bool()).argmax()):
            fail(message + " You scored it against the label of the token it sits on; the latent should predict "
                           "the *next* token (next_token_labels).")
        fail(message + " Score every mlp_post_3 latent with F1 at those positions and take the best.")


# -------------------------------------------------------------------------------------------------
# token_concentration


def _concentration_by_loop(acts: Tensor, tokens: Tensor, mask: Tensor, share: float, latents) -> tuple[list, list]:
    from collections import Counter

    tops, concs = [], []
    for latent in latents:
        values = acts[..., latent][mask]
        toks = tokens[mask]
        top_value = float(values.max()) if len(values) else 0.0
        if top_value <= 0:
            tops.append(-1)
            concs.append(0.0)
            continue
        strong = [int(t) for v, t in zip(values.tolist(), toks.tolist()) if v > 0 and v >= share * top_value]
        counts = Counter(strong)
        best = max(counts.values())
        tops.append(min(t for t, c in counts.items() if c == best))
        concs.append(best / len(strong))
    return tops, concs


@check
def test_token_concentration(token_concentration) -> None:
    """Two hand-made documents with padding (3 latents: token-level, contextual with a tie, never
    firing), with share 0.5 and 0.9, then 40 mlp_post_3 latents on the chapter's corpus."""
    tokens = torch.tensor([[5, 7, 5, 9, 0], [7, 5, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    acts = torch.zeros(2, 5, 3)
    acts[0, 0, 0], acts[0, 2, 0], acts[1, 1, 0], acts[0, 1, 0] = 4.0, 3.0, 2.5, 1.0  # strong on 5 only
    acts[0, 1, 1], acts[0, 3, 1], acts[1, 0, 1], acts[1, 2, 1] = 2.0, 2.0, 1.9, 0.5  # 7, 9, 7 strong; 9 weak
    acts[0, 4, 2] = 9.0  # fires only on padding: never on a real token
    acts[1, 2, 2] = -1.0  # and negative elsewhere
    cases = [(0.5, torch.tensor([5, 7, -1]), torch.tensor([1.0, 2 / 3, 0.0])),
             (0.99, torch.tensor([5, 7, -1]), torch.tensor([1.0, 0.5, 0.0]))]
    for share, want_top, want_conc in cases:
        got = token_concentration(acts, tokens, mask, share) if share != 0.5 else token_concentration(acts, tokens, mask)
        where = f"2 documents, share={share}"
        expect(isinstance(got, tuple) and len(got) == 2,
               f"token_concentration({where}) should return (top_token, concentration), not {type(got).__name__}.")
        top, conc = got
        mistakes_top = [
            Mistake(lambda a: int(torch.as_tensor(a)[2]) == 0,
                    "a latent that fires only on padding never fires on a real token: index acts and tokens with "
                    "the mask first; it gets top_token -1."),
            Mistake(lambda a: int(torch.as_tensor(a)[1]) == 9 and share == 0.99,
                    "ties go to the lowest token id."),
        ]
        assert_tensor(torch.as_tensor(top), want_top, f"token_concentration({where}): top_token", check_dtype=False,
                      mistakes=mistakes_top)
        mistakes_conc = [
            Mistake(lambda a: abs(float(torch.as_tensor(a)[0]) - 0.75) < 1e-6,
                    "count only the strong activations (>= share x the latent's maximum), not every positive one."),
            Mistake(lambda a: share == 0.5 and min(abs(float(torch.as_tensor(a)[1]) - x) for x in (0.0, 0.5)) < 1e-6,
                    "the threshold is relative to each latent's own maximum, not to the largest activation of all "
                    "latents."),
        ]
        assert_tensor(torch.as_tensor(conc).float(), want_conc, f"token_concentration({where}): concentration",
                      check_dtype=False, atol=1e-5, mistakes=mistakes_conc)
    model, saes, data, _ = _world()
    with torch.no_grad():
        _, cache = model.run_with_cache(data.tokens[:20], names_filter="blocks.3.mlp.hook_post")
        acts3 = saes[3].encode(cache["blocks.3.mlp.hook_post"])
    tokens, mask = data.tokens[:20], data.mask[:20]
    latents = list(range(0, 1024, 26))
    want_top, want_conc = _concentration_by_loop(acts3, tokens, mask, 0.5, latents)
    top, conc = token_concentration(acts3, tokens, mask)
    assert_tensor(torch.as_tensor(top)[latents], torch.tensor(want_top),
                  "token_concentration(mlp_post_3 on 20 documents): top_token of latents 0, 26, 52, ...",
                  check_dtype=False)
    assert_tensor(torch.as_tensor(conc).float()[latents], torch.tensor(want_conc),
                  "token_concentration(mlp_post_3 on 20 documents): concentration of latents 0, 26, 52, ...",
                  check_dtype=False, atol=1e-5)


# -------------------------------------------------------------------------------------------------
# prompt_boosts


def _boosts_by_loop(clean: Tensor, ablated: Tensor, floor: float) -> Tensor:
    import math

    def log_softmax(row):
        top = max(row)
        total = math.log(sum(math.exp(x - top) for x in row)) + top
        return [x - total for x in row]

    c = [log_softmax(r) for r in clean.double().tolist()]
    a = [log_softmax(r) for r in ablated.double().tolist()]
    out = []
    for v in range(clean.shape[1]):
        diffs = [c[i][v] - a[i][v] for i in range(len(c)) if c[i][v] >= floor]
        out.append(sum(diffs) / len(diffs) if diffs else 0.0)
    return torch.tensor(out)


@check
def test_prompt_boosts(prompt_boosts) -> None:
    """Three positions over a vocabulary of 4 (one token below the floor at some positions, logits
    shifted by a constant at one), with the default floor and floor=-2, then 6 positions x 40 tokens."""
    clean = torch.tensor([[2.0, 0.0, -1.0, -12.0], [1.0, 1.0, 0.0, -12.0], [0.0, 3.0, 1.0, 0.5]])
    ablated = torch.tensor([[1.0, 0.0, -1.0, -12.0], [3.0, 3.0, 2.0, -10.0], [0.5, 2.0, 1.0, 0.0]])
    gen = torch.Generator().manual_seed(0)
    big_clean, big_ablated = 3 * torch.randn(6, 40, generator=gen), 3 * torch.randn(6, 40, generator=gen)
    cases = [(clean, ablated, -9.0, "3 positions x 4 tokens"), (clean, ablated, -2.0, "3 positions x 4 tokens, floor=-2"),
             (big_clean, big_ablated, -9.0, "6 positions x 40 tokens")]
    for c, a, floor, where in cases:
        got = prompt_boosts(c, a) if floor == -9.0 else prompt_boosts(c, a, floor)
        want = _boosts_by_loop(c, a, floor).float()
        clp, alp = c.log_softmax(-1), a.log_softmax(-1)
        keep = (clp >= floor).float()
        mistakes = [
            _near(((c - a) * (c >= floor)).sum(0) / (c >= floor).sum(0).clamp_min(1),
                  "compare log-probabilities (log_softmax), not logits: raising every logit by the same amount "
                  "changes no probability."),
            _near(-want, "the sign is flipped: a boost is clean - ablated (how much the latent raises the token)."),
            _near((clp - alp).mean(0), "leave out the positions where the clean log-prob is below the floor."),
            _near(((clp - alp) * keep).sum(0) / len(c), "average over the positions you counted, not over all "
                                                        "positions."),
            _near(((clp - alp) * (alp >= floor)).sum(0) / (alp >= floor).sum(0).clamp_min(1),
                  "the floor applies to the *clean* log-prob."),
        ]
        assert_tensor(torch.as_tensor(got).float(), want, f"prompt_boosts({where})", check_dtype=False,
                      atol=1e-5, rtol=1e-4, mistakes=mistakes)


# -------------------------------------------------------------------------------------------------
# active_latents


def _active_by_loop(acts: Tensor, min_share: float):
    n, d = acts.shape
    share, mean_active = [], []
    for j in range(d):
        values = [float(v) for v in acts[:, j].tolist() if v > 0]
        share.append(len(values) / n)
        mean_active.append(sum(values) / len(values) if values else 0.0)
    keep = [j for j in range(d) if share[j] >= min_share]
    ranked = sorted(keep, key=lambda j: (-mean_active[j], j))
    return torch.tensor(ranked, dtype=torch.long), torch.tensor(share), torch.tensor(mean_active)


@check
def test_active_latents(active_latents) -> None:
    """Five positions and five latents (negative values, a latent never active, one active once but
    strongly, a tie), with min_share 0.05 and 0.4, then mlp_post_2 at the closers of 12 documents."""
    acts = torch.tensor([[1.0, 0.0, 9.0, -1.0, 2.0],
                         [3.0, 0.0, 0.0, -2.0, 2.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0],
                         [2.0, 0.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0]])
    cases = [(acts, 0.05, "5 positions x 5 latents"), (acts, 0.4, "5 positions x 5 latents, min_share=0.4")]
    model, saes, data, cache = _world()
    docs, pos, _ = _closers(data, 12)
    with torch.no_grad():
        world = saes[2].encode(cache["blocks.2.mlp.hook_post"][docs, pos])
    cases.append((world, 0.05, f"mlp_post_2 at {len(docs)} closers"))
    for a, min_share, where in cases:
        got = active_latents(a) if min_share == 0.05 else active_latents(a, min_share)
        expect(isinstance(got, tuple) and len(got) == 3,
               f"active_latents({where}) should return (ranked, share, mean_active), not {type(got).__name__}.")
        ranked, share, mean_active = got
        want_ranked, want_share, want_mean = _active_by_loop(a, min_share)
        on = a > 0
        assert_tensor(torch.as_tensor(share).float(), want_share.float(), f"active_latents({where}): share",
                      check_dtype=False, atol=1e-5)
        mistakes = [
            _near(a.mean(0), "average over the positions where the latent is active, not over all positions."),
            _near(a.sum(0) / on.sum(0).clamp_min(1), "count only the positive activations in the sum (a JumpReLU "
                                                     "code is never negative, but inputs here can be)."),
        ]
        assert_tensor(torch.as_tensor(mean_active).float(), want_mean.float(), f"active_latents({where}): "
                      "mean_active", check_dtype=False, atol=1e-4, rtol=1e-4, mistakes=mistakes)
        by_all = torch.nonzero(want_share >= min_share)[:, 0]
        rank_mistakes = [
            Mistake(lambda r: torch.equal(torch.as_tensor(r), by_all[want_mean[by_all].float().argsort(stable=True)])
                    or torch.equal(torch.as_tensor(r), want_ranked.flip(0)),
                    "rank from the largest mean activation down."),
            Mistake(lambda r: torch.equal(torch.as_tensor(r), by_all[a.mean(0)[by_all].argsort(descending=True,
                                                                                                 stable=True)]),
                    "rank by the mean activation *where active*, not by the mean over all positions."),
            Mistake(lambda r: len(r) > len(want_ranked),
                    "keep only the latents active at a share >= min_share of the positions."),
        ]
        assert_tensor(torch.as_tensor(ranked).long(), want_ranked, f"active_latents({where}): ranked",
                      check_dtype=False, mistakes=rank_mistakes)
