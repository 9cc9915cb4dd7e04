"""Chapter 07's checks against wrong implementations: each must fail with the message meant for it;
correct alternatives the text allows must pass.

(That the reference solutions pass every check is tested for all chapters in test_chapter_checks.py.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import solutions.ch07_sae_circuits as ref
from check_helpers import fails_with, passes
from utils import course


@pytest.fixture(scope="module")
def checks07():
    return course.load_checks("07_sae_circuits")


# -------------------------------------------------------------------------------------------------
# closer_positions


def closers_own_positions(is_closer, tokens):
    docs, where = torch.nonzero(is_closer, as_tuple=True)
    keep = where > 0
    return docs[keep], where[keep], tokens[docs[keep], where[keep]]


def closers_answer_before(is_closer, tokens):
    docs, where = torch.nonzero(is_closer, as_tuple=True)
    keep = where > 0
    docs, pos = docs[keep], where[keep] - 1
    return docs, pos, tokens[docs, pos]


def closers_keep_position_0(is_closer, tokens):
    docs, where = torch.nonzero(is_closer, as_tuple=True)
    return docs, where - 1, tokens[docs, where]


def closers_flat(is_closer, tokens):
    flat = torch.nonzero(is_closer.flatten())[:, 0]
    flat = flat[flat % is_closer.shape[1] > 0]
    docs = flat // is_closer.shape[1]
    return docs, flat - 1, tokens.flatten()[flat]


def closers_by_loop(is_closer, tokens):
    """A correct alternative: a Python loop."""
    out = [(d, p - 1, int(tokens[d, p])) for d in range(len(is_closer)) for p in range(1, is_closer.shape[1])
           if is_closer[d, p]]
    return tuple(torch.tensor(col) for col in zip(*out))


@pytest.mark.parametrize("variant, messages", [
    (closers_own_positions, ["two documents", "closers' own positions", "step back by one"]),
    (closers_answer_before, ["answer", "read the token at the closer's position"]),
    (closers_keep_position_0, ["a closer at position 0 has no position before it"]),
    (closers_flat, ["flattened"]),
])
def test_wrong_closer_positions(checks07, variant, messages):
    fails_with(checks07.test_closer_positions, variant, *messages)


def test_closer_positions_by_loop_passes(checks07, capsys):
    passes(checks07.test_closer_positions, closers_by_loop, capsys)


# -------------------------------------------------------------------------------------------------
# component_dla


def dla_variant(*, centre=True, scale_op="div", ln_weight=True, first_other=False, sign=1):
    def component_dla(components, scale, model, answer, other):
        if other.ndim == 1:
            other = other[:, None]
        wrong = model.W_U[:, other[:, 0]] if first_other else model.W_U[:, other].mean(-1)
        direction = model.W_U[:, answer] - wrong
        if ln_weight:
            direction = model.ln_final.w[:, None] * direction
        x = components - components.mean(-1, keepdim=True) if centre else components
        x = {"div": x / scale, "mul": x * scale, "none": x}[scale_op]
        return sign * (x * direction.T).sum(-1)

    return component_dla


def dla_with_einsum(components, scale, model, answer, other):
    """A correct alternative: the whole ln_final without its bias, then logits of the full vocabulary."""
    normed = model.ln_final.w * (components - components.mean(-1, keepdim=True)) / scale
    logits = torch.einsum("cnd,dv->cnv", normed, model.W_U)
    other = other if other.ndim == 2 else other[:, None]
    rows = torch.arange(len(answer))
    return logits[:, rows, answer] - logits[:, rows[:, None], other].mean(-1)


@pytest.mark.parametrize("variant, messages", [
    (dla_variant(centre=False), ["closer - plain mark", "centre every component"]),
    (dla_variant(scale_op="none"), ["divide by ln_final's scale"]),
    (dla_variant(scale_op="mul"), ["divide by the scale, do not multiply"]),
    (dla_variant(ln_weight=False), ["model.ln_final.w", "not folded"]),
    (dla_variant(sign=-1), ["the sign is flipped"]),
    (dla_variant(first_other=True), ["right closer - the other three", "the *mean* logit of the k tokens"]),
])
def test_wrong_component_dla(checks07, variant, messages):
    fails_with(checks07.test_component_dla, variant, *messages)


def test_component_dla_by_einsum_passes(checks07, capsys):
    passes(checks07.test_component_dla, dla_with_einsum, capsys)


# -------------------------------------------------------------------------------------------------
# mlp_parts


def parts_variant(*, b_dec=True, bias_in="none", to_residual=True):
    def mlp_parts(post, sae, W_out, b_out):
        acts = sae.encode(post)
        recon = acts @ sae.W_dec + (sae.b_dec if b_dec else 0)
        bias = b_out.expand(*post.shape[:-1], b_out.shape[-1])
        if not to_residual:
            return torch.stack([recon, post - recon, torch.zeros_like(post)])
        r, e = recon @ W_out, (post - recon) @ W_out
        if bias_in == "recon":
            r = r + b_out
        if bias_in == "error":
            e = e + b_out
        return torch.stack([r, e, bias])

    return mlp_parts


def parts_with_forward(post, sae, W_out, b_out):
    """A correct alternative: the SAE's own forward pass, and the error as the MLP output minus the rest."""
    recon = sae(post)
    out = post @ W_out + b_out
    return torch.stack([recon @ W_out, out - recon @ W_out - b_out, torch.zeros_like(out) + b_out])


@pytest.mark.parametrize("variant, messages", [
    (parts_variant(b_dec=False), ["12 documents", "includes the decoder bias b_dec"]),
    (parts_variant(bias_in="recon"), ["b_out is counted twice", "reconstruction"]),
    (parts_variant(bias_in="error"), ["b_out is counted twice", "error"]),
    (parts_variant(to_residual=False), ["multiply each piece of post by W_out"]),
])
def test_wrong_mlp_parts(checks07, variant, messages):
    fails_with(checks07.test_mlp_parts, variant, *messages)


def test_mlp_parts_by_forward_passes(checks07, capsys):
    passes(checks07.test_mlp_parts, parts_with_forward, capsys)


# -------------------------------------------------------------------------------------------------
# loss_recovered


def recovered_variant(*, mean_of_ratios=False, lost=False, unpaired=False, against_clean=False, no_interval=False):
    def loss_recovered(clean, ablated, spliced, n_boot=1000, seed=0):
        c, a, s = clean.numpy(), ablated.numpy(), spliced.numpy()

        def ratio(ci, ai, si):
            if mean_of_ratios:
                return ((a[ai] - s[si]) / (a[ai] - c[ci])).mean(-1)
            top = (s[si].mean(-1) - c[ci].mean(-1)) if (lost or against_clean) else (a[ai].mean(-1) - s[si].mean(-1))
            return top / (a[ai].mean(-1) - c[ci].mean(-1))

        n = len(c)
        point = float(ratio(np.arange(n), np.arange(n), np.arange(n)))
        if no_interval:
            return point, point, point
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, (n_boot, n))
        j, k = (rng.integers(0, n, (n_boot, n)), rng.integers(0, n, (n_boot, n))) if unpaired else (i, i)
        boots = ratio(i, j, k)
        return point, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))

    return loss_recovered


def recovered_in_torch(clean, ablated, spliced, n_boot=1000, seed=0):
    """A correct alternative: a torch generator instead of numpy's (other draws, the same interval)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(clean), (2000, len(clean)), generator=gen)
    boot = (ablated[idx].mean(1) - spliced[idx].mean(1)) / (ablated[idx].mean(1) - clean[idx].mean(1))
    point = (ablated.mean() - spliced.mean()) / (ablated.mean() - clean.mean())
    return float(point), float(boot.quantile(0.025)), float(boot.quantile(0.975))


@pytest.mark.parametrize("variant, messages", [
    (recovered_variant(mean_of_ratios=True), ["mean of the per-position fractions"]),
    (recovered_variant(lost=True), ["the share of the loss *not* recovered"]),
    (recovered_variant(unpaired=True), ["200 positions", "resampling each condition on its own"]),
    (recovered_variant(no_interval=True), ["200 positions", "has (almost) no width"]),
])
def test_wrong_loss_recovered(checks07, variant, messages):
    fails_with(checks07.test_loss_recovered, variant, *messages)


def test_loss_recovered_in_torch_passes(checks07, capsys):
    passes(checks07.test_loss_recovered, recovered_in_torch, capsys)


# -------------------------------------------------------------------------------------------------
# ablate_latents


def ablate_variant(*, keep_error=True, weighted=True, b_dec=False, use_where=True):
    def ablate_latents(post, sae, latents, where=None):
        acts = sae.encode(post)
        removed = acts[..., latents] @ sae.W_dec[latents] if weighted else sae.W_dec[latents].sum(0).expand_as(post)
        if b_dec:
            removed = removed + sae.b_dec
        if where is not None and use_where:
            removed = removed * where[..., None]
        base = post if keep_error else sae.decode(acts)
        return base - removed

    return ablate_latents


def ablate_by_zeroing(post, sae, latents, where=None):
    """A correct alternative: zero the latents in the code, decode, and add the error back."""
    acts = sae.encode(post)
    error = post - sae.decode(acts)
    zeroed = acts.clone()
    if where is None:
        zeroed[..., latents] = 0
    else:
        zeroed[..., latents] = torch.where(where[..., None], 0.0, acts[..., latents])
    return sae.decode(zeroed) + error


@pytest.mark.parametrize("variant, messages", [
    (ablate_variant(keep_error=False), ["everywhere", "keep the SAE's error"]),
    (ablate_variant(weighted=False), ["scaled by the latent's activation"]),
    (ablate_variant(b_dec=True), ["b_dec belongs to no latent"]),
    (ablate_variant(use_where=False), ["half of the positions", "ablate only where"]),
])
def test_wrong_ablate_latents(checks07, variant, messages):
    fails_with(checks07.test_ablate_latents, variant, *messages)


def test_ablate_by_zeroing_passes(checks07, capsys):
    passes(checks07.test_ablate_latents, ablate_by_zeroing, capsys)


# -------------------------------------------------------------------------------------------------
# pairwise_cosines


def cosine_variant(*, tril=False, w_out=True, w_in=True, normalise=True, wrong_dims=False):
    def pairwise_cosines(W_dec_a, W_out_a, W_in_b, W_enc_b):
        write = W_dec_a @ W_out_a if w_out else W_dec_a
        read = W_in_b @ W_enc_b if w_in else W_enc_b
        if normalise:
            wd, rd = (0, -1) if wrong_dims else (-1, 0)
            write = write / write.norm(dim=wd, keepdim=True)
            read = read / read.norm(dim=rd, keepdim=True)
        cos = write @ read
        return torch.tril(cos) if tril else cos

    return pairwise_cosines


def cosines_by_functional(W_dec_a, W_out_a, W_in_b, W_enc_b):
    """A correct alternative: F.normalize and an explicit transpose."""
    write = torch.nn.functional.normalize(W_dec_a @ W_out_a, dim=-1)
    read = torch.nn.functional.normalize((W_in_b @ W_enc_b).T, dim=-1)
    return write @ read.T


@pytest.mark.parametrize("variant, messages", [
    (cosine_variant(tril=True), ["do not apply torch.tril", "different layers"]),
    (cosine_variant(w_out=False), ["W_out_a is missing"]),
    (cosine_variant(w_in=False), ["W_in_b is missing"]),
    (cosine_variant(w_out=False, w_in=False), ["both W_out_a and W_in_b are missing"]),
    (cosine_variant(normalise=False), ["a cosine divides by the norms"]),
    (cosine_variant(wrong_dims=True), ["you normalised the other dimension"]),
])
def test_wrong_pairwise_cosines(checks07, variant, messages):
    fails_with(checks07.test_pairwise_cosines, variant, *messages)


def test_cosines_by_functional_pass(checks07, capsys):
    passes(checks07.test_pairwise_cosines, cosines_by_functional, capsys)


# -------------------------------------------------------------------------------------------------
# and_or_table


def table_variant(*, per_position=False, swapped=False, all_pairs=False, left=False, flipped_interaction=False):
    def and_or_table(base, single, pair, tol=0.1):
        if per_position:
            d1 = (1 - single / base).mean(-1)
            d2 = (1 - pair / base).mean(-1)
        else:
            d1 = 1 - single.mean(-1) / base.mean()
            d2 = 1 - pair.mean(-1) / base.mean()
        if left:
            d1, d2 = 1 - d1, 1 - d2
        rows = []
        k = len(single)
        for i in range(k):
            for j in range(k) if all_pairs else range(i + 1, k):
                inter = float(d2[i, j] - d1[i] - d1[j])
                if flipped_interaction:
                    inter = -inter
                kind = "AND" if inter < -tol else "OR" if inter > tol else "additive"
                if swapped:
                    kind = {"AND": "OR", "OR": "AND"}.get(kind, kind)
                rows.append({"i": i, "j": j, "drop_i": float(d1[i]), "drop_j": float(d1[j]), "drop_ij": float(d2[i, j]),
                             "interaction": inter, "kind": kind})
        return pd.DataFrame(rows)

    return and_or_table


def table_vectorised(base, single, pair, tol=0.1):
    """A correct alternative: the upper triangle by torch.triu_indices, rows built at once."""
    d1 = 1 - single.mean(-1) / base.mean()
    d2 = 1 - pair.mean(-1) / base.mean()
    i, j = torch.triu_indices(len(single), len(single), offset=1)
    inter = d2[i, j] - d1[i] - d1[j]
    kind = np.where(inter < -tol, "AND", np.where(inter > tol, "OR", "additive"))
    return pd.DataFrame({"i": i.numpy(), "j": j.numpy(), "drop_i": d1[i].numpy(), "drop_j": d1[j].numpy(),
                         "drop_ij": d2[i, j].numpy(), "interaction": inter.numpy(), "kind": kind})


@pytest.mark.parametrize("variant, messages", [
    (table_variant(per_position=True), ["ratio of means"]),
    (table_variant(swapped=True), ["AND and OR are swapped"]),
    (table_variant(all_pairs=True), ["has 16 rows", "one row per pair with i < j"]),
    (table_variant(left=True), ["the share that is lost"]),
    (table_variant(flipped_interaction=True), ["the sign is flipped"]),
])
def test_wrong_and_or_table(checks07, variant, messages):
    fails_with(checks07.test_and_or_table, variant, *messages)


def test_and_or_table_vectorised_passes(checks07, capsys):
    passes(checks07.test_and_or_table, table_vectorised, capsys)


# -------------------------------------------------------------------------------------------------
# neurons_for_mass


def mass_variant(*, squares=True, descending=True, plus_one=True, strict=False):
    def neurons_for_mass(W, share=0.9):
        x = W.pow(2) if squares else W.abs()
        x = x.sort(-1, descending=descending).values
        cum = x.cumsum(-1) / x.sum(-1, keepdim=True)
        count = ((cum <= share + 1e-9) if strict else (cum < share - 1e-9)).sum(-1)
        return count + 1 if plus_one else count

    return neurons_for_mass


def mass_by_searchsorted(W, share=0.9):
    """A correct alternative: searchsorted on the running share."""
    sq = W.double().pow(2).sort(-1, descending=True).values
    cum = sq.cumsum(-1) / sq.sum(-1, keepdim=True)
    return torch.searchsorted(cum, torch.full((len(W), 1), share, dtype=cum.dtype) - 1e-12)[:, 0] + 1


@pytest.mark.parametrize("variant, messages", [
    (mass_variant(squares=False), ["share=0.75", "*squared* weight"]),
    (mass_variant(plus_one=False), ["off by one"]),
    (mass_variant(strict=True), ["a share reached exactly counts"]),
    (mass_variant(descending=False), ["sort from the largest down"]),
])
def test_wrong_neurons_for_mass(checks07, variant, messages):
    fails_with(checks07.test_neurons_for_mass, variant, *messages)


def test_neurons_by_searchsorted_pass(checks07, capsys):
    passes(checks07.test_neurons_for_mass, mass_by_searchsorted, capsys)


# -------------------------------------------------------------------------------------------------
# capstone


def capstone_variant(*, everywhere=False, same_token=False, layers_swapped=False, mlp2_rows=False):
    def capstone(data, acts3, mlp_dla):
        answer = ref.capstone(data, acts3, mlp_dla)
        if layers_swapped:
            answer["closer_vs_plain"], answer["which_closer"] = answer["which_closer"], answer["closer_vs_plain"]
        if everywhere or same_token:
            fires = acts3[data.mask] > 0
            for key, concept in [("closer", "quote_close"), ("period", "quote_close:period"),
                                 ("question", "quote_close:question"), ("exclamation", "quote_close:exclamation")]:
                truth = (ref.next_token_labels(data, concept) if everywhere
                         else data.labels[..., data.concept_index(concept)].bool())[data.mask]
                answer[key] = int(ref.f1_scores(fires, truth).argmax())
        return answer

    return capstone


@pytest.mark.parametrize("variant, messages", [
    (capstone_variant(everywhere=True), ["best latent over *all* positions"]),
    (capstone_variant(same_token=True), ["label of the token it sits on"]),
    (capstone_variant(layers_swapped=True), ["closer_vs_plain is 3", "writes the most of closer - plain mark"]),
])
def test_wrong_capstone(checks07, variant, messages):
    fails_with(checks07.test_capstone, variant, *messages)


# -------------------------------------------------------------------------------------------------
# token_concentration


def concentration_variant(*, use_mask=True, all_positive=False, global_max=False, last_tie=False):
    def token_concentration(acts, tokens, mask, share=0.5):
        m = mask if use_mask else torch.ones_like(mask)
        a, t = acts[m], tokens[m]
        top_value = a.max() if global_max else a.max(0).values
        strong = (a > 0) if all_positive else (a > 0) & (a >= share * top_value)
        counts = torch.zeros(a.shape[1], int(tokens.max()) + 1)
        lat, pos = torch.nonzero(strong.T, as_tuple=True)
        counts.index_put_((lat, t[pos]), torch.ones(len(lat)), accumulate=True)
        if last_tie:
            best, top = counts.flip(1).max(1)
            top = counts.shape[1] - 1 - top
        else:
            best, top = counts.max(1)
        total = counts.sum(1)
        alive = total > 0
        return torch.where(alive, top, -1), torch.where(alive, best / total.clamp_min(1), 0.0)

    return token_concentration


def concentration_by_bincount(acts, tokens, mask, share=0.5):
    """A correct alternative: a loop over latents with bincount."""
    a, t = acts[mask], tokens[mask]
    tops, concs = [], []
    for j in range(a.shape[1]):
        col = a[:, j]
        if col.max() <= 0:
            tops.append(-1)
            concs.append(0.0)
            continue
        counts = torch.bincount(t[(col > 0) & (col >= share * col.max())])
        tops.append(int(counts.argmax()))
        concs.append(float(counts.max() / counts.sum()))
    return torch.tensor(tops), torch.tensor(concs)


@pytest.mark.parametrize("variant, messages", [
    (concentration_variant(use_mask=False), ["top_token", "fires only on padding"]),
    (concentration_variant(all_positive=True), ["concentration", "count only the strong activations"]),
    (concentration_variant(global_max=True), ["each latent's own maximum"]),
    (concentration_variant(last_tie=True), ["share=0.99", "ties go to the lowest token id"]),
])
def test_wrong_token_concentration(checks07, variant, messages):
    fails_with(checks07.test_token_concentration, variant, *messages)


def test_token_concentration_by_bincount_passes(checks07, capsys):
    passes(checks07.test_token_concentration, concentration_by_bincount, capsys)


# -------------------------------------------------------------------------------------------------
# prompt_boosts


def boosts_variant(*, logits=False, sign=1, no_floor=False, all_positions=False, floor_on_ablated=False):
    def prompt_boosts(clean_logits, ablated_logits, floor=-9.0):
        c, a = (clean_logits, ablated_logits) if logits else (clean_logits.log_softmax(-1), ablated_logits.log_softmax(-1))
        gate = a if floor_on_ablated else c
        keep = torch.ones_like(c) if no_floor else (gate >= floor).float()
        denominator = torch.full_like(keep[0], len(c)) if all_positions else keep.sum(0).clamp_min(1)
        return sign * ((c - a) * keep).sum(0) / denominator

    return prompt_boosts


def boosts_with_nan_mean(clean_logits, ablated_logits, floor=-9.0):
    """A correct alternative: NaN where not counted, nanmean, then 0 for tokens never counted."""
    c, a = torch.log_softmax(clean_logits.double(), -1), torch.log_softmax(ablated_logits.double(), -1)
    diff = torch.where(c >= floor, c - a, torch.nan)
    return torch.nan_to_num(diff.nanmean(0), nan=0.0).float()


@pytest.mark.parametrize("variant, messages", [
    (boosts_variant(logits=True), ["compare log-probabilities"]),
    (boosts_variant(sign=-1), ["the sign is flipped"]),
    (boosts_variant(no_floor=True), ["below the floor"]),
    (boosts_variant(all_positions=True), ["average over the positions you counted"]),
    (boosts_variant(floor_on_ablated=True), ["the floor applies to the *clean* log-prob"]),
])
def test_wrong_prompt_boosts(checks07, variant, messages):
    fails_with(checks07.test_prompt_boosts, variant, *messages)


def test_prompt_boosts_with_nan_mean_passes(checks07, capsys):
    passes(checks07.test_prompt_boosts, boosts_with_nan_mean, capsys)


# -------------------------------------------------------------------------------------------------
# active_latents


def active_variant(*, mean_over_all=False, ascending=False, no_filter=False, signed_sum=False):
    def active_latents(acts, min_share=0.05):
        on = acts > 0
        share = on.float().mean(0)
        if mean_over_all:
            mean_active = acts.mean(0)
        elif signed_sum:
            mean_active = acts.sum(0) / on.sum(0).clamp_min(1)
        else:
            mean_active = (acts * on).sum(0) / on.sum(0).clamp_min(1)
        keep = torch.arange(acts.shape[1]) if no_filter else torch.nonzero(share >= min_share)[:, 0]
        order = mean_active[keep].argsort(descending=not ascending, stable=True)
        return keep[order], share, mean_active

    return active_latents


def active_with_pandas(acts, min_share=0.05):
    """A correct alternative: a DataFrame sorted by two keys."""
    on = acts > 0
    share = on.float().mean(0)
    mean_active = torch.where(on, acts, torch.nan).nanmean(0).nan_to_num(0.0)
    table = pd.DataFrame({"id": range(acts.shape[1]), "share": share.numpy(), "mean": -mean_active.numpy()})
    table = table[table["share"] >= min_share].sort_values(["mean", "id"])
    return torch.tensor(table["id"].to_numpy()), share, mean_active


@pytest.mark.parametrize("variant, messages", [
    (active_variant(mean_over_all=True), ["mean_active", "not over all positions"]),
    (active_variant(signed_sum=True), ["count only the positive activations"]),
    (active_variant(ascending=True), ["ranked", "from the largest mean activation down"]),
    (active_variant(no_filter=True), ["ranked", "share >= min_share"]),
])
def test_wrong_active_latents(checks07, variant, messages):
    fails_with(checks07.test_active_latents, variant, *messages)


def test_active_latents_with_pandas_passes(checks07, capsys):
    passes(checks07.test_active_latents, active_with_pandas, capsys)
