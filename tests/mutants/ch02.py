"""Plausible wrong implementations and correct alternatives of chapter 02's exercises (see mutants_ch01.py)."""

from __future__ import annotations


import einops
import torch
import torch.nn.functional as F

import solutions.ch02_transcoders as ref
from tests.mutants.ch01 import Variant
from utils.transcoders import acts_name, hook_names, layer_of, reading_vector, show_top_tokens, standardise

VARIANTS: list[Variant] = []


def wrong(exercise: str, name: str, want: str | None = None, **overrides) -> None:
    VARIANTS.append(Variant(exercise, name, False, overrides, want))


def right(exercise: str, name: str, **overrides) -> None:
    VARIANTS.append(Variant(exercise, name, True, overrides))


# =================================================================================================
# get_k_largest_indices


def k_largest(x, k, buffer=0, no_overlap=True, *, strict=False, in_place=False, as_list=False, float_out=False,
              topk=False, python=False, always_overlap=False, mod_rows=False):
    if in_place:  # pick the maximum, blank out its neighbourhood in x itself
        chosen = []
        while len(chosen) < k:
            flat = int(x.argmax())
            r, c = divmod(flat, x.shape[1])
            if x[r, c] == -torch.inf:
                break
            chosen.append([r, c])
            if no_overlap:
                x[r, max(0, c - buffer): c + buffer + 1] = -torch.inf
            else:
                x[r, c] = -torch.inf
        return torch.tensor(chosen, dtype=torch.long).reshape(-1, 2)
    if topk:
        order = x.flatten().topk(x.numel()).indices
    else:
        order = x.flatten().argsort(descending=True, stable=True)
    if mod_rows:
        rows, cols = order % x.shape[0], order // x.shape[0]
    else:
        rows, cols = order // x.shape[1], order % x.shape[1]
    if not no_overlap and not always_overlap:
        out = torch.stack((rows, cols), 1)[:k]
    elif python:
        picked = []
        for r, c in zip(rows.tolist(), cols.tolist()):
            if len(picked) == k:
                break
            if all(r != pr or abs(c - pc) > buffer for pr, pc in picked):
                picked.append((r, c))
        out = torch.tensor(picked, dtype=torch.long).reshape(-1, 2)
    else:
        chosen = []
        while len(chosen) < k and len(rows):
            r, c = rows[0], cols[0]
            chosen.append(torch.stack((r, c)))
            dist = (cols - c).abs()
            near = (rows == r) & ((dist < buffer) if strict else (dist <= buffer))
            near[0] = True
            rows, cols = rows[~near], cols[~near]
        out = torch.stack(chosen)
    if float_out:
        out = out.float()
    if as_list:
        return out.tolist()
    return out


def _k(**kw):
    return lambda x, k, buffer=0, no_overlap=True: k_largest(x, k, buffer, no_overlap, **kw)


K = "get_k_largest_indices"
wrong(K, "blocks only entries strictly closer than buffer (<)", "buffer", **{K: _k(strict=True)})
wrong(K, "blanks out chosen entries in x itself (in-place)", "modif", **{K: _k(in_place=True)})
wrong(K, "returns a list", "Tensor", **{K: _k(as_list=True)})
wrong(K, "returns float coordinates", "dtype", **{K: _k(float_out=True)})
wrong(K, "no_overlap ignored when False", "no_overlap", **{K: _k(always_overlap=True)})
wrong(K, "rows and columns from the wrong dimension (% batch)", None, **{K: _k(mod_rows=True)})
right(K, "topk over the flattened tensor", **{K: _k(topk=True)})
right(K, "Python loop over the sorted entries", **{K: _k(python=True)})


# =================================================================================================
# index_with_buffer


def windows(x, indices, buffer=None, *, how="ok"):
    rows, cols = indices[:, 0], indices[:, 1]
    if buffer is None or (how == "falsy buffer" and not buffer):
        return x[rows, cols]
    width = 2 * buffer + 1
    if how == "centre clamp off by one":
        centres = cols.clamp(buffer, x.shape[1] - buffer)
        return x[rows[:, None], centres[:, None] + torch.arange(-buffer, buffer + 1)]
    if how == "first row":
        starts = (cols - buffer).clamp(0, x.shape[1] - width)
        return x[0][starts[:, None] + torch.arange(width)]
    if how == "transposed":
        starts = (cols - buffer).clamp(0, x.shape[1] - width)
        return x[rows[None, :], starts[None, :] + torch.arange(width)[:, None]]
    if how == "unfold":  # correct
        starts = (cols - buffer).clamp(0, x.shape[1] - width)
        return x.unfold(1, width, 1)[rows, starts]
    if how == "loop":  # correct
        out = []
        for r, c in indices.tolist():
            s = min(max(c - buffer, 0), x.shape[1] - width)
            out.append(x[r, s: s + width])
        return torch.stack(out)
    if how == "clone and edit":  # correct: edits a copy
        idx = indices.clone()
        idx[:, 1] = idx[:, 1].clamp(buffer, x.shape[1] - buffer - 1)
        return x[idx[:, :1], idx[:, 1:] + torch.arange(-buffer, buffer + 1)]
    if how == "edge only left":
        starts = (cols - buffer).clamp(min=0)
        return x[rows[:, None], (starts[:, None] + torch.arange(width)).clamp(max=x.shape[1] - 1)]
    starts = (cols - buffer).clamp(0, x.shape[1] - width)
    return x[rows[:, None], starts[:, None] + torch.arange(width)]


def _w(how):
    return lambda x, indices, buffer=None: windows(x, indices, buffer, how=how)


W = "index_with_buffer"
wrong(W, "buffer=0 treated as None (if not buffer)", "buffer=0", **{W: _w("falsy buffer")})
wrong(W, "centre clamped to seq - buffer (off by one)", None, **{W: _w("centre clamp off by one")})
wrong(W, "rows ignored (x[0])", "row", **{W: _w("first row")})
wrong(W, "windows transposed", "transpose", **{W: _w("transposed")})
wrong(W, "only the left edge shifted", None, **{W: _w("edge only left")})
right(W, "unfold", **{W: _w("unfold")})
right(W, "Python loop", **{W: _w("loop")})
right(W, "edits a clone of indices", **{W: _w("clone and edit")})


# =================================================================================================
# fetch_max_activating_examples


def fetch(model, transcoder, tokens, latent_idx, k=10, buffer=10, batch_size=100, display=False, *,
          mask="both", positive=True, n_ctx_fixed=False, order="ok", tensor_pos=False, skip_last_batch=False,
          whole=False, pre_acts=False, k_largest=None, windows_fn=None):
    k_largest = k_largest or ref.get_k_largest_indices
    windows_fn = windows_fn or ref.index_with_buffer
    hook, layer = hook_names(transcoder)[0], layer_of(transcoder)
    pad, bos = model.tokenizer.pad_token_id, model.tokenizer.bos_token_id
    width = 2 * buffer + 1
    found = []
    size = len(tokens) if whole else batch_size
    stop = len(tokens) - size + 1 if skip_last_batch else len(tokens)
    for start in range(0, stop, size):
        batch = tokens[start: start + size]
        _, cache = model.run_with_cache(batch, names_filter=[hook], stop_at_layer=layer + 1)
        if pre_acts:
            acts = (cache[hook] @ transcoder.W_enc + transcoder.b_enc)[..., latent_idx]
        else:
            acts = transcoder.encode(cache[hook])[..., latent_idx]
        if mask == "both":
            acts = acts * ((batch != pad) & (batch != bos))
        elif mask == "bos":
            acts = acts * (batch != bos)
        top = k_largest(acts, k, buffer)
        values = windows_fn(acts, top)
        windows = windows_fn(batch, top, buffer)
        seq = model.cfg.n_ctx if n_ctx_fixed else batch.shape[1]
        starts = (top[:, 1] - buffer).clamp(0, seq - width)
        for value, window, col, s in zip(values.tolist(), windows, top[:, 1], starts):
            if value > 0 or not positive:
                toks = [t for t in model.to_str_tokens(window) if t != model.tokenizer.pad_token]
                pos = col - s if tensor_pos else int(col - s)
                example = (value, toks, pos)
                found.append((toks, value, pos) if order == "swapped" else example)
    key = (lambda e: e[1]) if order == "swapped" else (lambda e: e[0])
    found = sorted(found, key=key, reverse=True)[:k]
    if display:
        ref.display_top_seqs(found)
    return found


def _f(**kw):
    return lambda *a, **k: fetch(*a, **k, **kw)


FE = "fetch_max_activating_examples"
wrong(FE, "no '> 0' filter", "positive", **{FE: _f(positive=False)})
wrong(FE, "mask of BOS only (padding kept)", "padding", **{FE: _f(mask="bos")})
wrong(FE, "window start clamped with model.cfg.n_ctx", "length", **{FE: _f(n_ctx_fixed=True)})
wrong(FE, "examples as (str_tokens, activation, seq_pos)", "order", **{FE: _f(order="swapped")})
wrong(FE, "seq_pos is a tensor", "int", **{FE: _f(tensor_pos=True)})
wrong(FE, "last partial batch skipped", "batch", **{FE: _f(skip_last_batch=True)})
wrong(FE, "pre-activations (no JumpReLU)", "JumpReLU", **{FE: _f(pre_acts=True)})
wrong(FE, "uses a get_k_largest_indices that ignores rows", "get_k_largest_indices",
      get_k_largest_indices=_k(mod_rows=True), **{FE: _f(k_largest=_k(mod_rows=True))})
wrong(FE, "uses an index_with_buffer that shifts only the left edge", "index_with_buffer",
      index_with_buffer=_w("edge only left"), **{FE: _f(windows_fn=_w("edge only left"))})
right(FE, "all documents in one batch", **{FE: _f(whole=True)})
right(FE, "own helpers written with topk and unfold",
      get_k_largest_indices=_k(topk=True), index_with_buffer=_w("unfold"),
      **{FE: _f(k_largest=_k(topk=True), windows_fn=_w("unfold"))})


# =================================================================================================
# De-embeddings and the extended embedding


def deemb(make, show=True):
    def show_top(model, transcoder, latent_idx, k=10):
        scores = make(model, transcoder, latent_idx)
        if show:
            show_top_tokens(model, scores, k)
        return scores
    return show_top


def std_unbiased(x):
    x = x - x.mean(-1, keepdim=True)
    return x / x.std(-1, keepdim=True)


def rms_no_eps(x):
    x = x - x.mean(-1, keepdim=True)
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


D = "show_top_deembeddings"
wrong(D, "W_U.T instead of W_E", "W_E", **{D: deemb(lambda m, tc, j: standardise(m.W_U.T) @ tc.W_enc[:, j])})
wrong(D, "scores sorted", "order", **{D: deemb(lambda m, tc, j: (standardise(m.W_E) @ tc.W_enc[:, j]).sort(descending=True).values)})
wrong(D, "only the top-k scores returned", None, **{D: deemb(lambda m, tc, j: (standardise(m.W_E) @ tc.W_enc[:, j]).topk(10).values)})
wrong(D, "ln2 of layer 0 applied (with its weight and bias)", None,
      **{D: deemb(lambda m, tc, j: m.blocks[0].ln2(m.W_E[:, None])[:, 0] @ tc.W_enc[:, j])})
wrong(D, "centred but not scaled", "scale", **{D: deemb(lambda m, tc, j: (m.W_E - m.W_E.mean(-1, keepdim=True)) @ tc.W_enc[:, j])})
wrong(D, "returns numpy", "numpy", **{D: deemb(lambda m, tc, j: (standardise(m.W_E) @ tc.W_enc[:, j]).numpy())})
right(D, "root-mean-square without eps", **{D: deemb(lambda m, tc, j: rms_no_eps(m.W_E) @ tc.W_enc[:, j])})
right(D, "F.layer_norm without weight", **{D: deemb(lambda m, tc, j: F.layer_norm(m.W_E, (m.cfg.d_model,)) @ tc.W_enc[:, j])})
right(D, "reading_vector instead of the raw column", **{D: deemb(lambda m, tc, j: standardise(m.W_E) @ reading_vector(tc, j))})


def extended(model, *, norm="ln2", whole_block=False, add_back=True, std=standardise, double=False, pos=False,
             standardise_first=False):
    W_E = model.W_E[:, None]
    block = model.blocks[0]
    if whole_block:
        out = block(W_E)[:, 0]
        return std(out)
    inp = W_E + model.W_pos[0] if pos else W_E
    normed = {"ln2": block.ln2, "ln1": block.ln1}[norm](inp)
    out = block.mlp(normed) + ((standardise(W_E) if standardise_first else W_E) if add_back else 0)
    out = std(out[:, 0])
    return out.double() if double else out


def _e(**kw):
    return lambda model: extended(model, **kw)


E = "create_extended_embedding"
wrong(E, "the whole block 0 (attention included)", "block", **{E: _e(whole_block=True)})
wrong(E, "returns float64", "dtype", **{E: _e(double=True)})
wrong(E, "standardised W_E added back", "add back W_E itself", **{E: _e(standardise_first=True)})
wrong(E, "positional embedding of position 0 added", None, **{E: _e(pos=True)})
wrong(E, "ln1", "ln2", **{E: _e(norm="ln1")})
wrong(E, "MLP output only", "added", **{E: _e(add_back=False)})
right(E, "(x - mean) / x.std()", **{E: _e(std=std_unbiased)})
right(E, "root-mean-square without eps", **{E: _e(std=rms_no_eps)})
right(E, "F.layer_norm", **{E: _e(std=lambda x: F.layer_norm(x, (x.shape[-1],)))})


DE = "show_top_deembeddings_extended"
wrong(DE, "plain de-embedding", "extended", **{DE: deemb(lambda m, tc, j: standardise(m.W_E) @ tc.W_enc[:, j])})
wrong(DE, "decoder row", "reading", **{DE: deemb(lambda m, tc, j: ref.create_extended_embedding(m) @ tc.W_dec[j])})
wrong(DE, "prints nothing", "print", **{DE: deemb(lambda m, tc, j: ref.create_extended_embedding(m) @ tc.W_enc[:, j], show=False)})
for label, kw in (("the whole block 0", dict(whole_block=True)), ("MLP output only", dict(add_back=False)),
                  ("ln1", dict(norm="ln1"))):
    inner = _e(**kw)
    wrong(DE, f"inner create_extended_embedding: {label}", E,
          **{E: inner, DE: deemb(lambda m, tc, j, inner=inner: inner(m) @ tc.W_enc[:, j])})
right(DE, "inner with (x - mean) / x.std()", **{E: _e(std=std_unbiased),
                                                  DE: deemb(lambda m, tc, j: _e(std=std_unbiased)(m) @ tc.W_enc[:, j])})
right(DE, "reading_vector", **{DE: deemb(lambda m, tc, j: ref.create_extended_embedding(m) @ reading_vector(tc, j))})


# =================================================================================================
# Pullbacks and influence


def pull_in_place(early, later, j):
    column = later.W_enc[:, j]
    column -= column.mean()  # edits the transcoder's weights
    return early.W_dec @ column


P = "pullback"
wrong(P, "centres W_enc's column in place", "modif", **{P: pull_in_place})
wrong(P, "reading vector normalised to unit length", "scale",
      **{P: lambda e, l, j: e.W_dec @ (reading_vector(l, j) / reading_vector(l, j).norm())})
wrong(P, "standardised column", "scale", **{P: lambda e, l, j: e.W_dec @ standardise(l.W_enc[:, j][None])[0]})
wrong(P, "uncentred column", "centre", **{P: lambda e, l, j: e.W_dec @ l.W_enc[:, j]})
wrong(P, "sign flipped (column minus its mean, reversed)", "sign",
      **{P: lambda e, l, j: e.W_dec @ (l.W_enc[:, j].mean() - l.W_enc[:, j])})
wrong(P, "encoder row of the earlier transcoder", "W_dec", **{P: lambda e, l, j: e.W_enc.T @ reading_vector(l, j)})
right(P, "centred decoder rows instead", **{P: lambda e, l, j: (e.W_dec - e.W_dec.mean(-1, keepdim=True)) @ l.W_enc[:, j]})
right(P, "einsum", **{P: lambda e, l, j: torch.einsum("id,d->i", e.W_dec, reading_vector(l, j))})


def direct(cache, early, later, j, *, pull=ref.pullback, scale_layer=None, scale_hook="ln2", batch0=False, mul=False,
           double=False, einsum=False):
    acts = cache[acts_name(early)]
    L = layer_of(later) if scale_layer is None else scale_layer(early, later)
    scale = cache[f"blocks.{L}.{scale_hook}.hook_scale"]
    if batch0:
        acts, scale = acts[:1], scale[:1]
    if einsum:
        return torch.einsum("bpi,i->bpi", acts, pull(early, later, j)) / scale
    out = acts * pull(early, later, j) * scale if mul else acts * pull(early, later, j) / scale
    return out.double() if double else out


def _d(**kw):
    return lambda *a: direct(*a, **kw)


DI = "direct_influence"
wrong(DI, "ln2 scale of the earlier layer", "scale", **{DI: _d(scale_layer=lambda e, l: layer_of(e))})
wrong(DI, "ln1 scale of the later layer", "ln2", **{DI: _d(scale_hook="ln1")})
wrong(DI, "multiplied by the scale", "divide", **{DI: _d(mul=True)})
wrong(DI, "first document only", "row", **{DI: _d(batch0=True)})
for label, inner in (("uncentred column", lambda e, l, j: e.W_dec @ l.W_enc[:, j]),
                     ("encoder of the earlier transcoder", lambda e, l, j: e.W_enc.T @ reading_vector(l, j)),
                     ("normalised reading vector", lambda e, l, j: e.W_dec @ (reading_vector(l, j) / reading_vector(l, j).norm()))):
    wrong(DI, f"inner pullback: {label}", "pullback", pullback=inner, **{DI: _d(pull=inner)})
right(DI, "einsum", **{DI: _d(einsum=True)})
right(DI, "own pullback with centred decoder rows",
      pullback=lambda e, l, j: (e.W_dec - e.W_dec.mean(-1, keepdim=True)) @ l.W_enc[:, j],
      **{DI: _d(pull=lambda e, l, j: (e.W_dec - e.W_dec.mean(-1, keepdim=True)) @ l.W_enc[:, j])})


def head(model, cache, early, later, j, H, h, b, d, *, only="both", ln_w="ln1", src_scale_at_dest=False, batch0=False,
         product=False, w_o_first=False):
    r = reading_vector(later, j)
    if product:
        through = (model.W_V[H, h] @ model.W_O[H, h]) @ r
    else:
        through = model.W_V[H, h] @ (model.W_O[H, h] @ r)
    w = {"ln1": model.blocks[H].ln1.w, "ln2": model.blocks[H].ln2.w}[ln_w]
    src = w * through
    per_latent = early.W_dec @ (src - src.mean())
    bb = 0 if batch0 else b
    pattern = cache[f"blocks.{H}.attn.hook_pattern"][b, h, d]
    s1 = cache[f"blocks.{H}.ln1.hook_scale"][b, :, 0]
    if src_scale_at_dest:
        s1 = s1[d].expand_as(s1)
    s2 = cache[f"blocks.{layer_of(later)}.ln2.hook_scale"][b, d, 0]
    acts = cache[acts_name(early)][bb]
    scale = {"both": s1[:, None] * s2, "src": s1[:, None], "dest": s2}[only]
    return pattern[:, None] * acts * per_latent / scale


def _h(**kw):
    return lambda *a: head(*a, **kw)


HI = "head_influence"
wrong(HI, "only the source scale", "scale", **{HI: _h(only="src")})
wrong(HI, "only the destination scale", "scale", **{HI: _h(only="dest")})
wrong(HI, "ln2.w of the head's layer", "ln1", **{HI: _h(ln_w="ln2")})
wrong(HI, "source scale taken at the destination", "scale", **{HI: _h(src_scale_at_dest=True)})
wrong(HI, "activations of document 0", "batch", **{HI: _h(batch0=True)})
right(HI, "(W_V @ W_O) @ r", **{HI: _h(product=True)})


def attribution(model, cache, later, j, b, p, *, mlp_row_offset=1, b_o="all", heads_all_layers=False,
                swap_embed=False, double=False, batch0=False, stack=False):
    L, n_heads = layer_of(later), model.cfg.n_heads
    bb = 0 if batch0 else b
    read = reading_vector(later, j) / cache[f"blocks.{L}.ln2.hook_scale"][bb, p, 0]
    out = torch.zeros(model.cfg.n_layers + 1, n_heads + 1, dtype=torch.float64 if double else torch.float32)
    out[0, 1 if swap_embed else 0] = cache["hook_embed"][bb, p] @ read
    out[0, 0 if swap_embed else 1] = cache["hook_pos_embed"][bb, p] @ read
    head_layers = range(model.cfg.n_layers) if heads_all_layers else range(L + 1)
    for layer in head_layers:
        z = cache[f"blocks.{layer}.attn.hook_z"][bb, p]
        out[layer + 1, :n_heads] = einops.einsum(z, model.W_O[layer], "h d, h d m -> h m") @ read
    if b_o == "all":
        out[0, 2] = model.b_O[: L + 1].sum(0) @ read
    elif b_o == "L":
        out[0, 2] = model.b_O[L] @ read
    for layer in range(L):
        out[layer + mlp_row_offset, n_heads] = cache[f"blocks.{layer}.hook_mlp_out"][bb, p] @ read
    return out


def _c(**kw):
    return lambda *a: attribution(*a, **kw)


C = "component_attribution"
wrong(C, "MLP l in row l (off by one layer)", "layer", **{C: _c(mlp_row_offset=0)})
wrong(C, "b_O of layer L only", "b_O", **{C: _c(b_o="L")})
wrong(C, "heads of every layer", "layer", **{C: _c(heads_all_layers=True)})
wrong(C, "token and positional embedding swapped", None, **{C: _c(swap_embed=True)})
wrong(C, "document 0 instead of batch_idx", "batch", **{C: _c(batch0=True)})
right(C, "float64 result", **{C: _c(double=True)})
right(C, "b_O summed over layers at once", **{C: _c()})
