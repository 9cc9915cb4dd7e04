"""A second held-out set of wrong implementations and correct alternatives for chapters 01 and 02.

Written blind: from the exercise texts and the reference solutions only, without reading the checks,
utils/checks.py or the earlier variant sets (mutants_ch01/ch02/heldout), so that its mistakes are not
the ones the checks were tuned on. `python -m benchmarks.check_mutants --heldout2` runs it.

Conventions as in mutants_ch01.py: a `Variant` replaces names of the notebook's namespace. A nested
exercise (one whose check is given the outer and the inner function) gets both names, and the outer
function here calls the inner one it was built with. `want` is a word the failure message should hold.

Measured once, at commit 5389691 (the only run): 114/116 wrong caught, 107/114 of them named, 25/27
alternatives accepted. The two rejected alternatives were this file's own bugs (`model.ln_final` on the
paper world's model, which has none; an einops split of a `z` that `decode` had already split); they
were fixed afterwards, without re-running, so that no variant was tuned against the checks' answers.
"""

from __future__ import annotations

import heapq

import einops
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import solutions.ch01_latent_gradients as ref1
import solutions.ch02_transcoders as ref2
from tests.mutants.ch01 import Variant, sparse_class
from solutions.ch01_latent_gradients import SparseTensor, hook_layer, sae_acts_name
from utils.transcoders import (
    acts_name,
    hook_names,
    layer_of,
    reading_vector,
    show_top_tokens,
    standardise,
)

VARIANTS_CH01: list[Variant] = []
VARIANTS_CH02: list[Variant] = []


def wrong(target: list, exercise: str, name: str, want: str | None = None, **overrides) -> None:
    target.append(Variant(exercise, name, False, overrides, want))


def right(target: list, exercise: str, name: str, **overrides) -> None:
    target.append(Variant(exercise, name, True, overrides))


C1, C2 = VARIANTS_CH01, VARIANTS_CH02


def dense_of(values, inds, shape):
    return SparseTensor.from_sparse((values, inds, shape)).dense


# =================================================================================================
# Chapter 01 · SparseTensor

S = "sparse_tensor"


def fd_float64(cls, dense):
    mask = dense != 0
    return cls((dense[mask].double(), mask.nonzero(), tuple(dense.shape)), dense)


def fd_indices_kn(cls, dense):  # indices as (k, n_nonzero), the layout torch.sparse uses
    mask = dense != 0
    return cls((dense[mask], mask.nonzero().T, tuple(dense.shape)), dense)


def fd_via_list(cls, dense):  # rebuilt from Python numbers: the graph is cut
    mask = dense != 0
    values = torch.tensor(dense[mask].tolist(), dtype=dense.dtype, device=dense.device)
    return cls((values, mask.nonzero(), tuple(dense.shape)), dense)


def fd_positive_only(cls, dense):  # "active" read as "positive": negative entries are lost
    mask = dense > 0
    return cls((dense[mask], mask.nonzero(), tuple(dense.shape)), dense)


def fd_shape_as_size(cls, dense):  # correct: torch.Size is a tuple
    mask = dense != 0
    return cls((dense[mask], mask.nonzero(), dense.shape), dense)


def fd_argwhere(cls, dense):  # correct: coordinates first, values read at them
    indices = torch.argwhere(dense)
    return cls((dense[tuple(indices.T)], indices, tuple(dense.shape)), dense)


def fs_default_dtype(cls, sparse):
    values, indices, shape = sparse
    return cls(sparse, torch.zeros(shape).index_put(tuple(indices.T), values.float()))


def fs_detached(cls, sparse):
    values, indices, shape = sparse
    dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
    dense[tuple(indices.T)] = values.detach()
    return cls(sparse, dense)


def fs_rows_not_columns(cls, sparse):  # forgot to transpose the (n, k) indices
    values, indices, shape = sparse
    dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
    return cls(sparse, dense.index_put(tuple(indices), values))


def fs_first_coordinate(cls, sparse):  # treats every tensor as 1-D
    values, indices, shape = sparse
    flat = torch.zeros(int(torch.tensor(shape).prod()), dtype=values.dtype, device=values.device)
    flat = flat.index_put((indices[:, 0],), values)
    return cls(sparse, flat.reshape(shape))


def fs_scatter_flat(cls, sparse):  # correct: flat positions from the strides, scatter, reshape
    values, indices, shape = sparse
    strides = torch.ones(len(shape), dtype=torch.long, device=indices.device)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    flat_pos = (indices * strides).sum(-1)
    n = 1
    for s in shape:
        n *= s
    flat = values.new_zeros(n).scatter(0, flat_pos, values)
    return cls(sparse, flat.reshape(shape))


wrong(C1, S, "from_dense casts values to float64", "dtype", SparseTensor=sparse_class(from_dense=fd_float64))
wrong(C1, S, "from_dense indices laid out (k, n)", "indices", SparseTensor=sparse_class(from_dense=fd_indices_kn))
wrong(C1, S, "from_dense values rebuilt from a Python list", "gradient", SparseTensor=sparse_class(from_dense=fd_via_list))
wrong(C1, S, "from_dense keeps only positive entries", "negative", SparseTensor=sparse_class(from_dense=fd_positive_only))
wrong(C1, S, "from_sparse in default float32", "dtype", SparseTensor=sparse_class(from_sparse=fs_default_dtype))
wrong(C1, S, "from_sparse writes detached values", "gradient", SparseTensor=sparse_class(from_sparse=fs_detached))
wrong(C1, S, "from_sparse indexes with rows of indices", None, SparseTensor=sparse_class(from_sparse=fs_rows_not_columns))
wrong(C1, S, "from_sparse uses first coordinate only", None, SparseTensor=sparse_class(from_sparse=fs_first_coordinate))
right(C1, S, "argwhere + tuple indexing", SparseTensor=sparse_class(from_dense=fd_argwhere))
right(C1, S, "from_sparse by flat scatter", SparseTensor=sparse_class(from_sparse=fs_scatter_flat))
right(C1, S, "shape kept as torch.Size", SparseTensor=sparse_class(from_dense=fd_shape_as_size))

# =================================================================================================
# Chapter 01 · latent_acts_to_later_latent_acts

X = "latent_acts_to_later_latent_acts"


def make_later(*, start=0, stop=0, decode_with="from", encode_with="to", swap=False, no_bias=False, all_values=False,
               block_loop=False):
    def f(values, inds, shape, sae_from, sae_to, model):
        acts = dense_of(values, inds, shape)
        dec = sae_from if decode_with == "from" else sae_to
        resid = acts @ dec.W_dec if no_bias else dec.decode(acts)
        a, b = hook_layer(sae_from) + start, hook_layer(sae_to) + stop
        if block_loop:
            for block in model.blocks[a:b]:
                resid = block(resid)
        else:
            resid = model(resid, start_at_layer=a, stop_at_layer=b)
        enc = sae_to if encode_with == "to" else sae_from
        later = enc.encode(resid)
        out = SparseTensor.from_dense(later)
        vals = later.flatten() if all_values else out.sparse[0]
        return (later, (vals,)) if swap else (vals, (later,))
    return f


wrong(C1, X, "runs one block too many (stop + 1)", "layer", **{X: make_later(stop=1)})
wrong(C1, X, "skips the first block (start + 1)", "layer", **{X: make_later(start=1)})
wrong(C1, X, "decodes without b_dec", "b_dec", **{X: make_later(no_bias=True)})
wrong(C1, X, "encodes with sae_from", "sae_to", **{X: make_later(encode_with="from")})
wrong(C1, X, "returns every value, zeros included", "nonzero", **{X: make_later(all_values=True)})
wrong(C1, X, "returns (dense, (values,))", "order", **{X: make_later(swap=True)})
right(C1, X, "runs the blocks one by one", **{X: make_later(block_loop=True)})

# =================================================================================================
# Chapter 01 · latent_to_latent_gradients

G = "latent_to_latent_gradients"


def make_grads(inner=ref1.latent_acts_to_later_latent_acts, *, error_term=True, transpose=False, order="ok",
               recon_is_true=False, attribute=False, restore=True):
    def f(tokens, sae_from, sae_to, model):
        names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
        with torch.no_grad():
            if attribute:
                old = (sae_from.use_error_term, sae_to.use_error_term)
                sae_from.use_error_term = sae_to.use_error_term = True
                _, cache = model.run_with_cache_with_saes(tokens, saes=[sae_from, sae_to], names_filter=names,
                                                          stop_at_layer=hook_layer(sae_to) + 1)
                if restore:
                    sae_from.use_error_term, sae_to.use_error_term = old
            else:
                _, cache = model.run_with_cache_with_saes(tokens, saes=[sae_from, sae_to], use_error_term=error_term,
                                                          names_filter=names, stop_at_layer=hook_layer(sae_to) + 1)
        prev = SparseTensor.from_dense(cache[names[0]])
        nxt = SparseTensor.from_dense(cache[names[1]])
        jac, (recon_dense,) = torch.func.jacrev(inner, has_aux=True)(*prev.sparse, sae_from, sae_to, model)
        recon = nxt if recon_is_true else SparseTensor.from_dense(recon_dense)
        if transpose:
            jac = jac.T
        if order == "swap":
            return jac, nxt, prev, recon
        return jac, prev, nxt, recon
    return f


def _g(inner=ref1.latent_acts_to_later_latent_acts, **kw):
    return {G: make_grads(inner, **kw), X: inner}


wrong(C1, G, "no error term: later true acts are the reconstruction's", "error", **_g(error_term=False))
wrong(C1, G, "Jacobian transposed", "transpose", **_g(transpose=True))
wrong(C1, G, "prev and next swapped in the output", "order", **_g(order="swap"))
wrong(C1, G, "true later acts returned as the recon", "recon", **_g(recon_is_true=True))
wrong(C1, G, "sets use_error_term and leaves it set", "use_error_term", **_g(attribute=True, restore=False))
wrong(C1, G, "correct outer, inner runs one block too many", "layer", **_g(make_later(stop=1)))
right(C1, G, "sets the use_error_term attribute, restores it", **_g(attribute=True))

# =================================================================================================
# Chapter 01 · tokens_to_latent_acts

T = "tokens_to_latent_acts"


def make_token_acts(how="ok", stop=0):
    def f(token_scales, tokens, sae, model):
        if how == "embed_only":
            resid = model.embed(tokens) * token_scales[..., None] + model.pos_embed(tokens)
        elif how == "add":
            resid = model(tokens, stop_at_layer=0) + token_scales[..., None]
        elif how == "squared":
            resid = model(tokens, stop_at_layer=0) * (token_scales ** 2)[..., None]
        elif how == "embed_sum":  # correct: token + positional embedding, scaled by broadcasting
            resid = (model.embed(tokens) + model.pos_embed(tokens)) * token_scales.unsqueeze(-1)
        else:
            resid = model(tokens, stop_at_layer=0) * token_scales[..., None]
        if how == "no_start":
            resid = model(resid, stop_at_layer=hook_layer(sae) + stop)
        else:
            resid = model(resid, start_at_layer=0, stop_at_layer=hook_layer(sae) + stop)
        acts = SparseTensor.from_dense(sae.encode(resid))
        return acts.sparse[0], (acts.dense,)
    return f


wrong(C1, T, "scales the token embedding only, not the positional one", "positional", **{T: make_token_acts("embed_only")})
wrong(C1, T, "adds the scale instead of multiplying", "scale", **{T: make_token_acts("add")})
wrong(C1, T, "scales by the square of the scale", "scale", **{T: make_token_acts("squared")})
wrong(C1, T, "runs one block too many", "layer", **{T: make_token_acts(stop=1)})
wrong(C1, T, "forgets start_at_layer=0", "start_at_layer", **{T: make_token_acts("no_start")})
right(C1, T, "broadcast multiply, not einsum", **{T: make_token_acts()})
right(C1, T, "embed + pos_embed by hand", **{T: make_token_acts("embed_sum")})

# =================================================================================================
# Chapter 01 · token_to_latent_gradients

TG = "token_to_latent_gradients"


def make_token_grads(inner=ref1.tokens_to_latent_acts, *, how="ok"):
    def f(tokens, sae, model):
        if how == "zeros":
            scales = torch.zeros(tokens.shape, device=tokens.device)
        elif how == "long":
            scales = torch.ones_like(tokens)
        else:
            scales = torch.ones_like(tokens, dtype=torch.float32)
        jac, (dense,) = torch.func.jacrev(inner, has_aux=True)(scales, tokens, sae, model)
        if how == "no_rearrange":
            out = jac
        elif how == "wrong_rearrange":
            out = einops.rearrange(jac, "n batch seq -> seq batch n")
        else:
            out = jac.permute(1, 2, 0)
        acts = dense if how == "dense_acts" else SparseTensor.from_dense(dense)
        return out, acts
    return f


def _tg(inner=ref1.tokens_to_latent_acts, **kw):
    return {TG: make_token_grads(inner, **kw), T: inner}


wrong(C1, TG, "no rearrange: (n_active, batch, seq)", "shape", **_tg(how="no_rearrange"))
wrong(C1, TG, "rearranged to (seq, batch, n_active)", "shape", **_tg(how="wrong_rearrange"))
wrong(C1, TG, "differentiates at scales of zero", "ones", **_tg(how="zeros"))
wrong(C1, TG, "integer scales (ones_like(tokens))", "float", **_tg(how="long"))
wrong(C1, TG, "returns the dense activations, not a SparseTensor", "SparseTensor", **_tg(how="dense_acts"))
wrong(C1, TG, "correct outer, inner scales the token embedding only", "positional", **_tg(make_token_acts("embed_only")))
right(C1, TG, "permute and ones_like(float)", **_tg())

# =================================================================================================
# Chapter 01 · latent_acts_to_logits

LA = "latent_acts_to_logits"


def make_logits(*, pos=-1, keep_batch=False, start=0, log_softmax=False, aux_selected=False, none_index=False,
                by_hand=False):
    def f(values, inds, shape, sae, model, token_ids=None):
        acts = dense_of(values, inds, shape)
        resid = sae.decode(acts)
        if by_hand:
            for block in model.blocks[hook_layer(sae):]:
                resid = block(resid)
            if hasattr(model, "ln_final"):  # the paper world's model has no LayerNorm at all
                resid = model.ln_final(resid)
            logits = model.unembed(resid)
        else:
            logits = model(resid, start_at_layer=hook_layer(sae) + start)
        if log_softmax:
            logits = logits.log_softmax(-1)
        logits = logits[:, pos] if keep_batch else logits[0, pos]
        if none_index:
            selected = logits[token_ids]
        elif token_ids is None:
            selected = logits
        elif by_hand:
            selected = logits.index_select(-1, torch.tensor(token_ids, device=logits.device))
        else:
            selected = logits[token_ids]
        return selected, ((selected if aux_selected else logits),)
    return f


wrong(C1, LA, "first position, not the last", "last", **{LA: make_logits(pos=0)})
wrong(C1, LA, "keeps the batch dimension", "shape", **{LA: make_logits(keep_batch=True)})
wrong(C1, LA, "starts one block late", "layer", **{LA: make_logits(start=1)})
wrong(C1, LA, "log-softmax of the logits", "softmax", **{LA: make_logits(log_softmax=True)})
wrong(C1, LA, "aux holds the selected logits, not all", "aux", **{LA: make_logits(aux_selected=True)})
wrong(C1, LA, "indexes with token_ids=None (adds an axis)", "None", **{LA: make_logits(none_index=True)})
right(C1, LA, "blocks, ln_final and unembed by hand; index_select", **{LA: make_logits(by_hand=True)})

# =================================================================================================
# Chapter 01 · latent_to_logit_gradients

LG = "latent_to_logit_gradients"


def make_logit_grads(inner=ref1.latent_acts_to_logits, *, error_term=True, ascending=False, ids_from_recon=False,
                     full_logits=False, swap=False, ids_tensor=False):
    def f(tokens, sae, model, k=None):
        with torch.no_grad():
            logits, cache = model.run_with_cache_with_saes(tokens, saes=[sae], use_error_term=error_term,
                                                           names_filter=[sae_acts_name(sae)])
        acts = SparseTensor.from_dense(cache[sae_acts_name(sae)])
        last = logits[0, -1]
        if ids_from_recon and k is not None:
            with torch.no_grad():
                recon = inner(*acts.sparse, sae, model, None)[0]
            ids = recon.topk(k).indices.tolist()
        elif k is None:
            ids = None
        elif ascending:
            ids = last.argsort()[-k:].tolist()
        elif ids_tensor:
            ids = last.topk(k).indices
        else:
            ids = last.topk(k).indices.tolist()
        jac, (recon_logits,) = torch.func.jacrev(inner, has_aux=True)(*acts.sparse, sae, model, ids)
        true = logits if full_logits else last
        if swap:
            return jac, recon_logits, true, ids, acts
        return jac, true, recon_logits, ids, acts
    return f


def _lg(inner=ref1.latent_acts_to_logits, **kw):
    return {LG: make_logit_grads(inner, **kw), LA: inner}


wrong(C1, LG, "no error term: true logits are the reconstruction's", "error", **_lg(error_term=False))
wrong(C1, LG, "top k in ascending order", "largest", **_lg(ascending=True))
wrong(C1, LG, "token_ids picked from the reconstructed logits", "true", **_lg(ids_from_recon=True))
wrong(C1, LG, "returns the full (1, seq, d_vocab) logits", "shape", **_lg(full_logits=True))
wrong(C1, LG, "true and reconstructed logits swapped", "recon", **_lg(swap=True))
wrong(C1, LG, "correct outer, inner takes the first position", "last", **_lg(make_logits(pos=0)))
right(C1, LG, "token_ids as a tensor of ids", **_lg(ids_tensor=True))

# =================================================================================================
# Chapter 01 · attention SAEs

XA = "latent_acts_to_later_latent_acts_attn"
GA = "latent_to_latent_gradients_attn"


def make_later_attn(*, reshape="ok", stop=1, start=0, no_return=False, decode_with="from", clone=False):
    def f(values, inds, shape, sae_from, sae_to, model, resid_pre_clean):
        acts = dense_of(values, inds, shape)
        z_recon = (sae_from if decode_with == "from" else sae_to).decode(acts)
        stored = {}

        def replace_z(z, hook):
            if no_return:
                return None
            if reshape == "heads_last":  # (.., d_head, n_heads) then swapped: the wrong split
                return z_recon.reshape(*z.shape[:2], z.shape[3], z.shape[2]).transpose(-1, -2)
            if reshape == "einops":
                flat = z_recon.reshape(*z.shape[:2], -1)  # decode may already split the heads: flatten first
                return einops.rearrange(flat, "b s (h d) -> b s h d", h=z.shape[2])
            return z_recon.reshape(z.shape)

        def store_z(z, hook):
            stored["z"] = z.clone() if clone else z

        model.run_with_hooks(resid_pre_clean, start_at_layer=hook_layer(sae_from) + start,
                             stop_at_layer=hook_layer(sae_to) + stop,
                             fwd_hooks=[(sae_from.cfg.metadata.hook_name, replace_z),
                                        (sae_to.cfg.metadata.hook_name, store_z)])
        later = SparseTensor.from_dense(sae_to.encode(stored["z"]))
        return later.sparse[0], (later.dense,)
    return f


wrong(C1, XA, "reshapes z as (d_head, n_heads) then transposes", "shape", **{XA: make_later_attn(reshape="heads_last")})
wrong(C1, XA, "stops before the later layer (hook never runs)", "layer", **{XA: make_later_attn(stop=0)})
wrong(C1, XA, "starts one block late", "layer", **{XA: make_later_attn(start=1)})
wrong(C1, XA, "replacement hook returns nothing", "return", **{XA: make_later_attn(no_return=True)})
wrong(C1, XA, "decodes with sae_to", "sae_from", **{XA: make_later_attn(decode_with="to")})
right(C1, XA, "einops split of heads; stored z cloned", **{XA: make_later_attn(reshape="einops", clone=True)})


def make_grads_attn(inner=ref1.latent_acts_to_later_latent_acts_attn, *, error_term=True, resid="pre", order="ok",
                    transpose=False, plain_run=False):
    def f(tokens, sae_from, sae_to, model):
        L1 = hook_layer(sae_from)
        resid_name = {"pre": f"blocks.{L1}.hook_resid_pre", "next": f"blocks.{L1 + 1}.hook_resid_pre",
                      "mid": f"blocks.{L1}.hook_resid_mid"}[resid]
        names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
        with torch.no_grad():
            _, cache = model.run_with_cache_with_saes(tokens, saes=[sae_from, sae_to], use_error_term=error_term,
                                                      names_filter=[resid_name, *names],
                                                      stop_at_layer=hook_layer(sae_to) + 1)
            resid_pre = cache[resid_name]
            if plain_run:  # correct: with the error term the SAEs change nothing, so a plain run gives it too
                _, plain = model.run_with_cache(tokens, names_filter=[resid_name], stop_at_layer=L1 + 1)
                resid_pre = plain[resid_name]
        prev = SparseTensor.from_dense(cache[names[0]])
        nxt = SparseTensor.from_dense(cache[names[1]])
        jac, (recon,) = torch.func.jacrev(inner, has_aux=True)(*prev.sparse, sae_from, sae_to, model, resid_pre)
        if transpose:
            jac = jac.T
        recon = SparseTensor.from_dense(recon)
        if order == "swap":
            return jac, nxt, prev, recon
        return jac, prev, nxt, recon
    return f


def _ga(inner=ref1.latent_acts_to_later_latent_acts_attn, **kw):
    return {GA: make_grads_attn(inner, **kw), XA: inner}


wrong(C1, GA, "no error term", "error", **_ga(error_term=False))
wrong(C1, GA, "residual stream of the next layer", "resid", **_ga(resid="next"))
wrong(C1, GA, "resid_mid instead of resid_pre", "resid", **_ga(resid="mid"))
wrong(C1, GA, "prev and next swapped", "order", **_ga(order="swap"))
wrong(C1, GA, "Jacobian transposed", "transpose", **_ga(transpose=True))
wrong(C1, GA, "correct outer, inner replacement hook returns nothing", "return", **_ga(make_later_attn(no_return=True)))
right(C1, GA, "resid_pre from a plain run", **_ga(plain_run=True))

# =================================================================================================
# Chapter 02 · get_k_largest_indices

K = "get_k_largest_indices"


def make_topk(*, ascending=False, divisor="seq", any_row=False, strict=False, as_list=False, ignore_overlap=False,
              transposed=False, unravel=False):
    def f(x, k, buffer=0, no_overlap=True):
        order = x.flatten().argsort(descending=not ascending, stable=True)
        width = x.shape[1] if divisor == "seq" else x.shape[0]
        if unravel:
            rows, cols = torch.unravel_index(order, x.shape)
        else:
            rows, cols = order // width, order % width
        chosen: list[tuple[int, int]] = []
        for r, c in zip(rows.tolist(), cols.tolist()):
            if len(chosen) == k:
                break
            if no_overlap and not ignore_overlap:
                def near(rr, cc, r=r, c=c):
                    same_row = any_row or rr == r
                    return same_row and (abs(cc - c) < buffer if strict else abs(cc - c) <= buffer)
                if any(near(rr, cc) for rr, cc in chosen):
                    continue
            chosen.append((r, c))
        if as_list:
            return chosen
        out = torch.tensor(chosen, dtype=torch.long, device=x.device).reshape(-1, 2)
        return out.T if transposed else out
    return f


wrong(C2, K, "smallest first", "largest", **{K: make_topk(ascending=True)})
wrong(C2, K, "rows and columns from the batch size", "column", **{K: make_topk(divisor="batch")})
wrong(C2, K, "overlap tested across rows too", "row", **{K: make_topk(any_row=True)})
wrong(C2, K, "overlap with < buffer, not <=", "buffer", **{K: make_topk(strict=True)})
wrong(C2, K, "returns a list of pairs", "tensor", **{K: make_topk(as_list=True)})
wrong(C2, K, "ignores no_overlap", "overlap", **{K: make_topk(ignore_overlap=True)})
wrong(C2, K, "returns (2, k)", "shape", **{K: make_topk(transposed=True)})
right(C2, K, "python loop over unravel_index", **{K: make_topk(unravel=True)})

# =================================================================================================
# Chapter 02 · index_with_buffer

IB = "index_with_buffer"


def make_window(*, clamp="ok", width_extra=1, inplace=False, none_how="ok", swap=False, how="gather"):
    def f(x, indices, buffer=None):
        if buffer is None:
            if none_how == "raw":
                return x[indices]
            rows, cols = indices[:, 0], indices[:, 1]
            return x[cols, rows] if swap else x[rows, cols]
        rows, cols = indices.unbind(1)
        width = 2 * buffer + width_extra
        if inplace:
            cols.sub_(buffer).clamp_(0, x.shape[1] - width)
            starts = cols
        elif clamp == "none":
            starts = cols - buffer
        elif clamp == "upper_buffer":
            starts = (cols - buffer).clamp(0, x.shape[1] - buffer)
        else:
            starts = (cols - buffer).clamp(0, x.shape[1] - width)
        if how == "loop":
            return torch.stack([x[r, s: s + width] for r, s in zip(rows.tolist(), starts.tolist())])
        if how == "unfold":
            return x.unfold(1, width, 1)[rows, starts]
        return x[rows[:, None], starts[:, None] + torch.arange(width, device=x.device)]
    return f


wrong(C2, IB, "no shift at the edges", "edge", **{IB: make_window(clamp="none")})
wrong(C2, IB, "edits indices in place", "modif", **{IB: make_window(inplace=True)})
wrong(C2, IB, "window of 2 * buffer", "width", **{IB: make_window(width_extra=0)})
wrong(C2, IB, "clamps the start to seq - buffer", "edge", **{IB: make_window(clamp="upper_buffer")})
wrong(C2, IB, "x[indices] for buffer=None", "shape", **{IB: make_window(none_how="raw")})
wrong(C2, IB, "x[col, row] for buffer=None", None, **{IB: make_window(swap=True)})
right(C2, IB, "python loop of slices", **{IB: make_window(how="loop")})
right(C2, IB, "unfold", **{IB: make_window(how="unfold")})

# =================================================================================================
# Chapter 02 · fetch_max_activating_examples

FM = "fetch_max_activating_examples"


def make_fetch(*, mask_bos=True, mask_pad=True, drop_pad=True, fixed_pos=False, global_sort=True, keep_zero=False,
               hook_out=False, tensor_value=False, first_batch_only=False, heap=False):
    def f(model, transcoder, tokens, latent_idx, k=10, buffer=10, batch_size=100, display=False):
        hook = hook_names(transcoder)[1 if hook_out else 0]
        layer = layer_of(transcoder)
        tok = model.tokenizer
        width = 2 * buffer + 1
        found = []
        for start in tqdm(range(0, len(tokens), batch_size), leave=False):
            batch = tokens[start:start + batch_size]
            _, cache = model.run_with_cache(batch, names_filter=[hook], stop_at_layer=layer + 1)
            acts = transcoder.encode(cache[hook])[..., latent_idx]
            if heap:
                acts = acts.masked_fill((batch == tok.pad_token_id) | (batch == tok.bos_token_id), 0.0)
            else:
                if mask_bos:
                    acts = acts * (batch != tok.bos_token_id)
                if mask_pad:
                    acts = acts * (batch != tok.pad_token_id)
            top = ref2.get_k_largest_indices(acts, k, buffer)
            values = ref2.index_with_buffer(acts, top)
            windows = ref2.index_with_buffer(batch, top, buffer)
            for value, window, (row, col) in zip(values, windows, top.tolist()):
                if value > 0 or (keep_zero and value >= 0):
                    window_start = min(max(col - buffer, 0), batch.shape[1] - width)
                    strs = model.to_str_tokens(window)
                    if drop_pad:
                        strs = [s for s in strs if s != tok.pad_token]
                    pos = buffer if fixed_pos else col - window_start
                    found.append((value if tensor_value else float(value), strs, pos))
            if first_batch_only:
                break
        if heap:
            found = heapq.nlargest(k, found, key=lambda e: e[0])
        elif global_sort:
            found = sorted(found, key=lambda e: float(e[0]), reverse=True)[:k]
        else:
            found = found[:k]
        if display:
            ref2.display_top_seqs(found)
        return found
    return f


def _fm(**kw):
    return {FM: make_fetch(**kw)}


wrong(C2, FM, "BOS not masked", "BOS", **_fm(mask_bos=False))
wrong(C2, FM, "padding not masked", "pad", **_fm(mask_pad=False))
wrong(C2, FM, "padding kept in the string tokens", "pad", **_fm(drop_pad=False))
wrong(C2, FM, "seq_pos always buffer", "position", **_fm(fixed_pos=True))
wrong(C2, FM, "batches' examples not merged by activation", "sort", **_fm(global_sort=False))
wrong(C2, FM, "keeps zero activations", "positive", **_fm(keep_zero=True))
wrong(C2, FM, "reads the output hook (mlp_out)", "hook", **_fm(hook_out=True))
wrong(C2, FM, "activation left as a 0-d tensor", "float", **_fm(tensor_value=True))
wrong(C2, FM, "stops after the first batch", None, **_fm(first_batch_only=True))
right(C2, FM, "masked_fill and heapq.nlargest", **_fm(heap=True))

# =================================================================================================
# Chapter 02 · show_top_deembeddings

D = "show_top_deembeddings"


def make_deembed(how="ok", *, ret=True):
    def f(model, transcoder, latent_idx, k=10):
        col = transcoder.W_enc[:, latent_idx]
        if how == "raw":
            scores = model.W_E @ col
        elif how == "W_dec":
            scores = standardise(model.W_E) @ transcoder.W_dec[latent_idx]
        elif how == "W_U":
            scores = standardise(model.W_U.T) @ col
        elif how == "axis0":
            W = model.W_E
            W = (W - W.mean(0, keepdim=True)) / (W.pow(2).mean(0, keepdim=True) + 1e-5).sqrt()
            scores = W @ col
        elif how == "reading":  # correct: standardised rows are centred, so centring the column changes nothing
            scores = standardise(model.W_E) @ reading_vector(transcoder, latent_idx)
        elif how == "layer_norm":
            scores = F.layer_norm(model.W_E, (model.cfg.d_model,), eps=1e-5) @ col
        else:
            scores = standardise(model.W_E) @ col
        show_top_tokens(model, scores, k)
        return scores if ret else None
    return f


wrong(C2, D, "raw W_E, not standardised", "standardise", **{D: make_deembed("raw")})
wrong(C2, D, "decoder row instead of encoder column", "W_enc", **{D: make_deembed("W_dec")})
wrong(C2, D, "unembedding instead of embedding", "W_E", **{D: make_deembed("W_U")})
wrong(C2, D, "standardised over tokens (axis 0)", "standardise", **{D: make_deembed("axis0")})
wrong(C2, D, "prints but returns nothing", "return", **{D: make_deembed(ret=False)})
right(C2, D, "reading_vector (centred column)", **{D: make_deembed("reading")})
right(C2, D, "F.layer_norm without weight", **{D: make_deembed("layer_norm")})

# =================================================================================================
# Chapter 02 · create_extended_embedding

E = "create_extended_embedding"


def make_extended(how="ok"):
    def f(model):
        W_E = model.W_E.unsqueeze(1)
        b0 = model.blocks[0]
        if how == "no_ln":
            mlp = b0.mlp(W_E)
        elif how == "ln1":
            mlp = b0.mlp(b0.ln1(W_E))
        elif how == "layer1":
            mlp = model.blocks[1].mlp(model.blocks[1].ln2(W_E))
        elif how == "with_pos":
            x = W_E + model.W_pos[0]
            mlp = b0.mlp(b0.ln2(x))
            W_E = x
        else:
            mlp = b0.mlp(b0.ln2(W_E))
        x = mlp if how == "no_add" else W_E + mlp
        x = x.squeeze(1)
        if how == "no_std":
            return x
        if how == "std":  # allowed: (x - mean) / std
            return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
        if how == "layer_norm":
            return F.layer_norm(x, (x.shape[-1],))
        return standardise(x)
    return f


wrong(C2, E, "no ln2 before the MLP", "ln2", **{E: make_extended("no_ln")})
wrong(C2, E, "MLP output not added to W_E", "add", **{E: make_extended("no_add")})
wrong(C2, E, "not standardised", "standardise", **{E: make_extended("no_std")})
wrong(C2, E, "ln1 instead of ln2", "ln2", **{E: make_extended("ln1")})
wrong(C2, E, "layer 1's MLP", "layer", **{E: make_extended("layer1")})
wrong(C2, E, "adds the position-0 embedding", None, **{E: make_extended("with_pos")})
right(C2, E, "(x - mean) / std", **{E: make_extended("std")})
right(C2, E, "F.layer_norm", **{E: make_extended("layer_norm")})

# =================================================================================================
# Chapter 02 · show_top_deembeddings_extended

DE = "show_top_deembeddings_extended"


def make_deembed_ext(inner=ref2.create_extended_embedding, how="ok"):
    def f(model, transcoder, latent_idx, k=10):
        emb = standardise(model.W_E) if how == "plain" else inner(model)
        if how == "W_dec":
            scores = emb @ transcoder.W_dec[latent_idx]
        elif how == "reading":
            scores = einops.einsum(emb, reading_vector(transcoder, latent_idx), "v d, d -> v")
        elif how == "neg":
            scores = -(emb @ transcoder.W_enc[:, latent_idx])
        else:
            scores = emb @ transcoder.W_enc[:, latent_idx]
        show_top_tokens(model, scores, k)
        return None if how == "no_return" else scores
    return f


def _de(inner=ref2.create_extended_embedding, how="ok"):
    return {DE: make_deembed_ext(inner, how), E: inner}


wrong(C2, DE, "plain standardised W_E", "extended", **_de(how="plain"))
wrong(C2, DE, "decoder row", "W_enc", **_de(how="W_dec"))
wrong(C2, DE, "sign flipped", None, **_de(how="neg"))
wrong(C2, DE, "returns nothing", "return", **_de(how="no_return"))
wrong(C2, DE, "correct outer, inner without ln2", "ln2", **_de(make_extended("no_ln")))
right(C2, DE, "einsum with reading_vector", **_de(how="reading"))

# =================================================================================================
# Chapter 02 · pullback

P = "pullback"


def make_pullback(how="ok"):
    def f(early, later, latent_idx):
        r = reading_vector(later, latent_idx)
        if how == "uncentred":
            return early.W_dec @ later.W_enc[:, latent_idx]
        if how == "swapped":
            return later.W_dec @ reading_vector(early, latent_idx)
        if how == "encoder":
            return early.W_enc.T @ r
        if how == "unit":
            return early.W_dec @ (r / r.norm())
        if how == "centre_rows":  # correct: centring either side of the dot product is the same
            W = early.W_dec
            return (W - W.mean(-1, keepdim=True)) @ later.W_enc[:, latent_idx]
        return einops.einsum(early.W_dec, r, "d_sae d_model, d_model -> d_sae")
    return f


wrong(C2, P, "encoder column not centred", "centre", **{P: make_pullback("uncentred")})
wrong(C2, P, "early and later swapped", "early", **{P: make_pullback("swapped")})
wrong(C2, P, "early encoder instead of decoder", "W_dec", **{P: make_pullback("encoder")})
wrong(C2, P, "reading vector normalised to unit length", "norm", **{P: make_pullback("unit")})
right(C2, P, "einsum", **{P: make_pullback()})
right(C2, P, "centred decoder rows, raw encoder column", **{P: make_pullback("centre_rows")})

# =================================================================================================
# Chapter 02 · direct_influence

DI = "direct_influence"


def make_direct(inner=ref2.pullback, how="ok"):
    def f(cache, early, later, latent_idx):
        kind = "hook_sae_acts_pre" if how == "pre" else "hook_sae_acts_post"
        acts = cache[acts_name(early, kind)]
        L = layer_of(early) if how == "early_scale" else layer_of(later)
        ln = "ln1" if how == "ln1" else "ln2"
        scale = cache[f"blocks.{L}.{ln}.hook_scale"]
        p = inner(early, later, latent_idx)
        if how == "times":
            return acts * p * scale
        if how == "no_scale":
            return acts * p
        if how == "einsum":
            return einops.einsum(acts / scale, p, "b s d, d -> b s d")
        return acts * p / scale
    return f


def _di(inner=ref2.pullback, how="ok"):
    return {DI: make_direct(inner, how), P: inner}


wrong(C2, DI, "multiplies by the scale", "scale", **_di(how="times"))
wrong(C2, DI, "no LayerNorm scale", "scale", **_di(how="no_scale"))
wrong(C2, DI, "pre-activation latents", "post", **_di(how="pre"))
wrong(C2, DI, "scale of the early layer", "layer", **_di(how="early_scale"))
wrong(C2, DI, "ln1 scale of the later layer", "ln2", **_di(how="ln1"))
wrong(C2, DI, "correct outer, uncentred pullback", "centre", **_di(make_pullback("uncentred")))
right(C2, DI, "einsum", **_di(how="einsum"))

# =================================================================================================
# Chapter 02 · head_influence

H = "head_influence"


def make_head(how="ok"):
    def f(model, cache, early, later, latent_idx, head_layer, head, batch_idx, dest_pos):
        L = layer_of(later)
        r = reading_vector(later, latent_idx)
        if how == "full_matrix":
            through = (model.W_V[head_layer, head] @ model.W_O[head_layer, head]) @ r
        else:
            through = model.W_V[head_layer, head] @ (model.W_O[head_layer, head] @ r)
        ln_layer = L if how == "ln1_later" else head_layer
        w = model.blocks[ln_layer].ln1.w
        src = through if how == "no_w" else w * through
        if how == "no_centre":
            per_latent = early.W_dec @ src
        elif how == "centre_rows":  # correct: centre the decoder rows instead of the vector
            Wd = early.W_dec
            per_latent = (Wd - Wd.mean(-1, keepdim=True)) @ src
        else:
            per_latent = early.W_dec @ (src - src.mean())
        pat = cache[f"blocks.{head_layer}.attn.hook_pattern"]
        pattern = pat[batch_idx, head, :, dest_pos] if how == "pattern_T" else pat[batch_idx, head, dest_pos]
        s1 = cache[f"blocks.{head_layer}.ln1.hook_scale"][batch_idx, :, 0]
        if how == "src_at_dest":
            s1 = s1[dest_pos].expand_as(s1)
        s2 = cache[f"blocks.{L}.ln2.hook_scale"][batch_idx, dest_pos, 0]
        acts = cache[acts_name(early)][batch_idx]
        if how == "no_src_scale":
            return pattern[:, None] * acts * per_latent / s2
        if how == "times_dest":
            return (pattern / s1)[:, None] * acts * per_latent * s2
        return einops.einsum(pattern / s1, acts, per_latent, "s, s d, d -> s d") / s2
    return f


wrong(C2, H, "pulled-back vector not centred", "centre", **{H: make_head("no_centre")})
wrong(C2, H, "no ln1 weight", "ln1", **{H: make_head("no_w")})
wrong(C2, H, "ln1 weight of the later layer", "ln1", **{H: make_head("ln1_later")})
wrong(C2, H, "pattern column (src = dest_pos) instead of row", "pattern", **{H: make_head("pattern_T")})
wrong(C2, H, "source scale not divided", "scale", **{H: make_head("no_src_scale")})
wrong(C2, H, "source scale read at the destination", "scale", **{H: make_head("src_at_dest")})
wrong(C2, H, "multiplies by the destination scale", "scale", **{H: make_head("times_dest")})
right(C2, H, "W_V @ W_O as one matrix; einsum", **{H: make_head("full_matrix")})
right(C2, H, "centred decoder rows", **{H: make_head("centre_rows")})

# =================================================================================================
# Chapter 02 · component_attribution

CA = "component_attribution"


def make_components(how="ok"):
    def f(model, cache, later, latent_idx, batch_idx, pos):
        L, n_heads = layer_of(later), model.cfg.n_heads
        r = later.W_enc[:, latent_idx] if how == "raw_col" else reading_vector(later, latent_idx)
        scale = cache[f"blocks.{L}.ln2.hook_scale"][batch_idx, pos, 0]
        read = r if how == "no_scale" else r / scale
        out = torch.zeros(model.cfg.n_layers + 1, n_heads + 1)
        out[0, 0] = cache["hook_embed"][batch_idx, pos] @ read
        out[0, 1] = cache["hook_pos_embed"][batch_idx, pos] @ read
        head_layers = range(L) if how == "heads_before_L" else range(L + 1)
        for layer in head_layers:
            z = cache[f"blocks.{layer}.attn.hook_z"][batch_idx, pos]
            row = layer if how == "row_off" else layer + 1
            if how == "per_head":
                for h in range(n_heads):
                    out[row, h] = (z[h] @ model.W_O[layer, h]) @ read
            else:
                out[row, :n_heads] = einops.einsum(z, model.W_O[layer], read, "h dh, h dh dm, dm -> h")
            if how != "no_b_O" and not (how == "last_b_O" and layer != L):
                out[0, 2] += model.b_O[layer] @ read
        mlp_layers = range(L + 1) if how == "mlp_L" else range(L)
        for layer in mlp_layers:
            out[layer + 1, n_heads] = cache[f"blocks.{layer}.hook_mlp_out"][batch_idx, pos] @ read
        return out
    return f


wrong(C2, CA, "not divided by the ln2 scale", "scale", **{CA: make_components("no_scale")})
wrong(C2, CA, "includes MLP L itself", "MLP", **{CA: make_components("mlp_L")})
wrong(C2, CA, "b_O left out", "b_O", **{CA: make_components("no_b_O")})
wrong(C2, CA, "b_O of layer L only", "b_O", **{CA: make_components("last_b_O")})
wrong(C2, CA, "heads written one row too high", "row", **{CA: make_components("row_off")})
wrong(C2, CA, "raw encoder column, not centred", "centre", **{CA: make_components("raw_col")})
wrong(C2, CA, "heads of layers 0..L-1 only", "head", **{CA: make_components("heads_before_L")})
right(C2, CA, "loop over heads", **{CA: make_components("per_head")})
