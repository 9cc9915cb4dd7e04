"""A held-out set of wrong implementations and correct alternatives for chapters 01 and 02.

Written after the checks were changed against tests/mutants/ch01.py and mutants_ch02.py, and not
used to change them: `python -m benchmarks.check_mutants --heldout` measures how well the fixes carry
over to mistakes they were not tuned on. Same conventions as mutants_ch01.py.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F

import solutions.ch01_latent_gradients as ref1
import solutions.ch02_transcoders as ref2
from tests.mutants.ch01 import Variant, sparse_class
from solutions.ch01_latent_gradients import SparseTensor, hook_layer, sae_acts_name
from utils.transcoders import acts_name, hook_names, layer_of, reading_vector, show_top_tokens, standardise

VARIANTS_CH01: list[Variant] = []
VARIANTS_CH02: list[Variant] = []


def wrong(target: list, exercise: str, name: str, **overrides) -> None:
    target.append(Variant(exercise, name, False, overrides))


def right(target: list, exercise: str, name: str, **overrides) -> None:
    target.append(Variant(exercise, name, True, overrides))


C1, C2 = VARIANTS_CH01, VARIANTS_CH02

# =================================================================================================
# Chapter 01


def fd_values_2d(cls, dense):
    flat = dense.flatten()
    return cls((flat[flat.nonzero()], dense.nonzero(), tuple(dense.shape)), dense)  # values (n, 1)


def fd_where(cls, dense):  # correct
    return cls((dense[dense != 0], torch.stack(torch.where(dense != 0), dim=1), tuple(dense.shape)), dense)


def fs_inferred_shape(cls, sparse):
    values, indices, shape = sparse
    inferred = tuple((indices.max(0).values + 1).tolist()) if len(indices) else tuple(shape)
    dense = values.new_zeros(inferred).index_put(tuple(indices.T), values)
    return cls(sparse, dense)


def fs_in_place(cls, sparse):  # correct: a fresh tensor, written in place
    values, indices, shape = sparse
    dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
    dense[tuple(indices.T)] = values
    return cls(sparse, dense)


def fs_no_device(cls, sparse):
    values, indices, shape = sparse
    dense = torch.zeros(shape, dtype=values.dtype)
    dense[tuple(indices.T)] = values
    return cls(sparse, dense)


wrong(C1, "sparse_tensor", "values of shape (n, 1)", SparseTensor=sparse_class(fd_values_2d))
wrong(C1, "sparse_tensor", "from_sparse infers the shape from the indices", SparseTensor=sparse_class(from_sparse=fs_inferred_shape))
wrong(C1, "sparse_tensor", "from_sparse on the CPU always", SparseTensor=sparse_class(from_sparse=fs_no_device))
right(C1, "sparse_tensor", "torch.where and stack", SparseTensor=sparse_class(fd_where))
right(C1, "sparse_tensor", "from_sparse writes into fresh zeros in place", SparseTensor=sparse_class(from_sparse=fs_in_place))

X = "latent_acts_to_later_latent_acts"


def later(values, inds, shape, sae_from, sae_to, model, *, mistake=None):
    acts = SparseTensor.from_sparse((values, inds, shape)).dense
    resid = sae_from.decode(acts)
    l1, l2 = hook_layer(sae_from), hook_layer(sae_to)
    if mistake == "blocks loop inclusive":
        for block in model.blocks[l1: l2 + 1]:
            resid = block(resid)
    elif mistake == "residual added":
        resid = resid + model(resid, start_at_layer=l1, stop_at_layer=l2)
    else:
        resid = model(resid, start_at_layer=l1, stop_at_layer=l2)
    dense = sae_to.encode(resid)
    if mistake == "relu again":
        dense = torch.relu(dense)  # harmless: activations are never negative
    if mistake == "recon of sae_to":
        dense = sae_to.encode(sae_to.decode(dense))
    return dense[dense != 0], (dense,)


wrong(C1, X, "blocks l1..l2 inclusive", **{X: lambda *a: later(*a, mistake="blocks loop inclusive")})
wrong(C1, X, "residual added to the blocks' output", **{X: lambda *a: later(*a, mistake="residual added")})
wrong(C1, X, "encodes sae_to's reconstruction", **{X: lambda *a: later(*a, mistake="recon of sae_to")})
right(C1, X, "an extra ReLU", **{X: lambda *a: later(*a, mistake="relu again")})

G = "latent_to_latent_gradients"


def grads(tokens, sae_from, sae_to, model, *, mistake=None):
    names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(tokens, saes=[sae_from, sae_to], use_error_term=True)
    prev = SparseTensor.from_dense(cache[names[0]])
    nxt = SparseTensor.from_dense(cache[names[0] if mistake == "next from sae_from" else names[1]])
    fn = ref1.latent_acts_to_later_latent_acts
    if mistake == "wrapper":  # correct
        jac, (recon,) = torch.func.jacrev(lambda v: fn(v, prev.sparse[1], prev.sparse[2], sae_from, sae_to, model),
                                          has_aux=True)(prev.sparse[0])
    else:
        jac, (recon,) = torch.func.jacrev(fn, has_aux=True)(*prev.sparse, sae_from, sae_to, model)
    if mistake == "abs":
        jac = jac.abs()
    return jac, prev, nxt, SparseTensor.from_dense(recon)


wrong(C1, G, "latent_acts_next from sae_from", **{G: lambda *a: grads(*a, mistake="next from sae_from")})
wrong(C1, G, "absolute gradients", **{G: lambda *a: grads(*a, mistake="abs")})
right(C1, G, "jacrev of a one-argument wrapper", **{G: lambda *a: grads(*a, mistake="wrapper")})

T = "tokens_to_latent_acts"


def token_acts(token_scales, tokens, sae, model, *, mistake=None):
    resid = model(tokens, stop_at_layer=0)
    if mistake == "added":
        resid = resid + token_scales[..., None]
    elif mistake == "unsqueeze":  # correct
        resid = resid * token_scales.unsqueeze(-1)
    elif mistake == "normalised":
        resid = resid * (token_scales / token_scales.sum(-1, keepdim=True))[..., None]
    else:
        resid = einops.einsum(resid, token_scales, "b s d, b s -> b s d")
    dense = sae.encode(model(resid, start_at_layer=0, stop_at_layer=hook_layer(sae)))
    return dense[dense != 0], (dense,)


wrong(C1, T, "scales added, not multiplied", **{T: lambda *a: token_acts(*a, mistake="added")})
wrong(C1, T, "scales normalised to sum 1", **{T: lambda *a: token_acts(*a, mistake="normalised")})
right(C1, T, "unsqueeze(-1)", **{T: lambda *a: token_acts(*a, mistake="unsqueeze")})

TG = "token_to_latent_gradients"


def token_grads(tokens, sae, model, *, mistake=None):
    scales = torch.ones_like(tokens, dtype=torch.float32)
    g, (dense,) = torch.func.jacrev(ref1.tokens_to_latent_acts, has_aux=True)(scales, tokens, sae, model)
    if mistake == "batch n seq":
        g = einops.rearrange(g, "n b s -> b n s")
    elif mistake == "sum over batch":
        g = einops.rearrange(g, "n b s -> b s n").sum(0, keepdim=True).expand(tokens.shape[0], -1, -1)
    else:
        g = einops.rearrange(g, "n b s -> b s n")
    return g, SparseTensor.from_dense(dense)


wrong(C1, TG, "rearranged to (batch, n, seq)", **{TG: lambda *a: token_grads(*a, mistake="batch n seq")})
wrong(C1, TG, "gradients summed over the batch", **{TG: lambda *a: token_grads(*a, mistake="sum over batch")})
right(C1, TG, "ones_like(tokens, dtype=float32)", **{TG: lambda *a: token_grads(*a)})

LG = "latent_acts_to_logits"


def logits_fn(values, inds, shape, sae, model, token_ids=None, *, mistake=None):
    acts = SparseTensor.from_sparse((values, inds, shape)).dense
    logits = model(sae.decode(acts), start_at_layer=hook_layer(sae))[0, -1]
    if mistake == "softmax":
        logits = logits.softmax(-1)
    if token_ids is None:
        return logits, (logits,)
    if mistake == "gather":  # correct
        return logits.gather(0, torch.tensor(token_ids)), (logits,)
    if mistake == "sorted ids":
        return logits[sorted(token_ids)], (logits,)
    return logits[token_ids], (logits,)


wrong(C1, LG, "softmax", **{LG: lambda *a, **k: logits_fn(*a, **k, mistake="softmax")})
wrong(C1, LG, "token_ids sorted first", **{LG: lambda *a, **k: logits_fn(*a, **k, mistake="sorted ids")})
right(C1, LG, "gather", **{LG: lambda *a, **k: logits_fn(*a, **k, mistake="gather")})

LGG = "latent_to_logit_gradients"


def logit_grads(tokens, sae, model, k=None, *, mistake=None):
    with torch.no_grad():
        if mistake == "separate runs":  # correct: the SAE's own activations do not depend on its error term
            logits = model(tokens)[0, -1]
            _, cache = model.run_with_cache_with_saes(tokens, saes=[sae])
        else:
            logits, cache = model.run_with_cache_with_saes(tokens, saes=[sae], use_error_term=True)
            logits = logits[0, 0] if mistake == "position 0" else logits[0, -1]
    acts = SparseTensor.from_dense(cache[sae_acts_name(sae)])
    if k is None:
        ids = None
    elif mistake == "argsort tail":
        ids = logits.argsort()[-k:].tolist()
    else:
        ids = logits.topk(k).indices.tolist()
    g, (recon,) = torch.func.jacrev(ref1.latent_acts_to_logits, has_aux=True)(*acts.sparse, sae, model, ids)
    return g, logits, recon, ids, acts


wrong(C1, LGG, "top k by argsort()[-k:] (smallest of them first)", **{LGG: lambda *a, **k: logit_grads(*a, **k, mistake="argsort tail")})
wrong(C1, LGG, "true logits of position 0", **{LGG: lambda *a, **k: logit_grads(*a, **k, mistake="position 0")})
right(C1, LGG, "true logits from a separate clean run", **{LGG: lambda *a, **k: logit_grads(*a, **k, mistake="separate runs")})

A = "latent_acts_to_later_latent_acts_attn"


def later_attn(values, inds, shape, sae_from, sae_to, model, resid_pre, *, mistake=None):
    z_recon = sae_from.decode(SparseTensor.from_sparse((values, inds, shape)).dense)
    stored = {}

    def replace(z, hook):
        if mistake == "added":
            return z + z_recon.reshape(z.shape)
        return z_recon.reshape(z.shape)

    def store(z, hook):
        stored["z"] = z.clone() if mistake == "clone" else z

    model.run_with_hooks(resid_pre, start_at_layer=hook_layer(sae_from), stop_at_layer=hook_layer(sae_to) + 1,
                         fwd_hooks=[(sae_from.cfg.metadata.hook_name, replace), (sae_to.cfg.metadata.hook_name, store)])
    dense = sae_to.encode(stored["z"])
    return dense[dense != 0], (dense,)


wrong(C1, A, "reconstruction added to z", **{A: lambda *a: later_attn(*a, mistake="added")})
right(C1, A, "stored z cloned", **{A: lambda *a: later_attn(*a, mistake="clone")})

GA = "latent_to_latent_gradients_attn"


def grads_attn(tokens, sae_from, sae_to, model, *, mistake=None):
    l1 = hook_layer(sae_from)
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(tokens, saes=[sae_from, sae_to], use_error_term=True)
    resid = cache[f"blocks.{l1}.hook_resid_mid" if mistake == "resid_mid" else f"blocks.{l1}.hook_resid_pre"]
    prev = SparseTensor.from_dense(cache[sae_acts_name(sae_from)])
    nxt = SparseTensor.from_dense(cache[sae_acts_name(sae_to)])
    g, (recon,) = torch.func.jacrev(ref1.latent_acts_to_later_latent_acts_attn, has_aux=True)(
        *prev.sparse, sae_from, sae_to, model, resid)
    return g, prev, nxt, SparseTensor.from_dense(recon)


wrong(C1, GA, "hook_resid_mid instead of hook_resid_pre", **{GA: lambda *a: grads_attn(*a, mistake="resid_mid")})
right(C1, GA, "one cached run of everything", **{GA: lambda *a: grads_attn(*a)})

# =================================================================================================
# Chapter 02

K = "get_k_largest_indices"


def k_largest(x, k, buffer=0, no_overlap=True, *, mistake=None):
    order = x.flatten().argsort(descending=True, stable=True)
    if mistake == "unravel":  # correct
        rows, cols = torch.unravel_index(order, x.shape)
    else:
        rows, cols = order // x.shape[1], order % x.shape[1]
    if not no_overlap:
        return torch.stack((rows, cols), 1)[:k]
    chosen, flat_chosen = [], []
    for r, c, f in zip(rows.tolist(), cols.tolist(), order.tolist()):
        if len(chosen) == k:
            break
        if mistake == "flat distance":
            if any(abs(f - g) <= buffer for g in flat_chosen):
                continue
        elif mistake == "last only":
            if chosen and chosen[-1][0] == r and abs(chosen[-1][1] - c) <= buffer:
                continue
        elif any(r == pr and abs(c - pc) <= buffer for pr, pc in chosen):
            continue
        chosen.append((r, c))
        flat_chosen.append(f)
    out = torch.tensor(chosen, dtype=torch.int32 if mistake == "int32" else torch.long).reshape(-1, 2)
    return out


def _k(mistake=None):
    return lambda x, k, buffer=0, no_overlap=True: k_largest(x, k, buffer, no_overlap, mistake=mistake)


wrong(C2, K, "distance measured in the flattened tensor", **{K: _k("flat distance")})
wrong(C2, K, "compared with the last chosen entry only", **{K: _k("last only")})
wrong(C2, K, "int32 result", **{K: _k("int32")})
wrong(C2, K, "top k of each row", **{K: lambda x, k, buffer=0, no_overlap=True: torch.stack(
    (torch.arange(x.shape[0]).repeat_interleave(k), x.topk(k, dim=1).indices.flatten()), 1)[:k]})
right(C2, K, "unravel_index", **{K: _k("unravel")})

W = "index_with_buffer"


def windows(x, indices, buffer=None, *, mistake=None):
    rows, cols = indices[:, 0], indices[:, 1]
    if buffer is None:
        return x[rows][:, cols] if mistake == "outer" else x[rows, cols]
    width = 2 * buffer + 1
    starts = (cols - buffer).clamp(0, x.shape[1] - width)
    if mistake == "gather":  # correct
        return x[rows].gather(1, starts[:, None] + torch.arange(width))
    if mistake == "centred, not shifted":
        return x[rows[:, None], (cols[:, None] + torch.arange(-buffer, buffer + 1)).clamp(0, x.shape[1] - 1)]
    return x[rows[:, None], starts[:, None] + torch.arange(width)]


wrong(C2, W, "buffer=None gives x[rows][:, cols]", **{W: lambda *a, **k: windows(*a, **k, mistake="outer")})
right(C2, W, "gather", **{W: lambda *a, **k: windows(*a, **k, mistake="gather")})

FE = "fetch_max_activating_examples"


def fetch(model, transcoder, tokens, latent_idx, k=10, buffer=10, batch_size=100, display=False, *, mistake=None):
    hook, layer = hook_names(transcoder)[0], layer_of(transcoder)
    if mistake == "output hook":
        hook = hook_names(transcoder)[1]
    pad, bos = model.tokenizer.pad_token_id, model.tokenizer.bos_token_id
    found = []
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start: start + batch_size]
        _, cache = model.run_with_cache(batch, names_filter=[hook], stop_at_layer=layer + 1)
        acts = transcoder.encode(cache[hook])[..., latent_idx]
        acts = acts.masked_fill((batch == pad) | (batch == bos), 0.0)
        top = ref2.get_k_largest_indices(acts, k, buffer)
        values = ref2.index_with_buffer(acts, top)
        windows = ref2.index_with_buffer(batch, top, buffer)
        starts = (top[:, 1] - buffer).clamp(0, batch.shape[1] - 2 * buffer - 1)
        for value, window, col, s in zip(values, windows, top[:, 1].tolist(), starts.tolist()):
            if value > 0:
                toks = [t for t in model.to_str_tokens(window) if t != model.tokenizer.pad_token]
                pos = col if mistake == "position in document" else col - s
                found.append((value if mistake == "tensor activation" else float(value), toks, pos))
    found = sorted(found, key=lambda e: float(e[0]), reverse=mistake != "ascending")[:k]
    return found


wrong(C2, FE, "examples sorted ascending", **{FE: lambda *a, **k: fetch(*a, **k, mistake="ascending")})
wrong(C2, FE, "seq_pos is the position in the document", **{FE: lambda *a, **k: fetch(*a, **k, mistake="position in document")})
wrong(C2, FE, "encodes the output hook", **{FE: lambda *a, **k: fetch(*a, **k, mistake="output hook")})
right(C2, FE, "activation left as a 0-d tensor, masked_fill", **{FE: lambda *a, **k: fetch(*a, **k, mistake="tensor activation")})


def deemb(make, show=True):
    def show_top(model, transcoder, latent_idx, k=10):
        scores = make(model, transcoder, latent_idx)
        if show:
            show_top_tokens(model, scores, k)
        return scores
    return show_top


D = "show_top_deembeddings"
wrong(C2, D, "standardised along the vocabulary", **{D: deemb(lambda m, tc, j: standardise(m.W_E.T).T @ tc.W_enc[:, j])})
wrong(C2, D, "standardised reading vector as well", **{D: deemb(lambda m, tc, j: standardise(m.W_E) @ standardise(tc.W_enc[:, j][None])[0])})
right(C2, D, "elementwise product and sum", **{D: deemb(lambda m, tc, j: (standardise(m.W_E) * tc.W_enc[:, j]).sum(-1))})

E = "create_extended_embedding"


def extended(model, *, mistake=None):
    W_E = model.W_E[:, None]
    block = model.blocks[0]
    out = W_E + block.mlp(block.ln2(W_E))
    if mistake == "mlp twice":
        out = out + block.mlp(block.ln2(out))
    out = out[:, 0]
    if mistake == "wrong dim":
        return standardise(out.T).T
    if mistake == "layer_norm module":  # correct: the same normalisation as standardise
        return F.layer_norm(out, (out.shape[-1],), eps=1e-5)
    return standardise(out)


wrong(C2, E, "standardised along the vocabulary", **{E: lambda m: extended(m, mistake="wrong dim")})
wrong(C2, E, "MLP 0 applied twice", **{E: lambda m: extended(m, mistake="mlp twice")})
right(C2, E, "F.layer_norm with eps", **{E: lambda m: extended(m, mistake="layer_norm module")})

DE = "show_top_deembeddings_extended"
wrong(C2, DE, "extended embedding without standardising", **{DE: deemb(
    lambda m, tc, j: (m.W_E + m.blocks[0].mlp(m.blocks[0].ln2(m.W_E[:, None]))[:, 0]) @ tc.W_enc[:, j])})
right(C2, DE, "elementwise product and sum", **{DE: deemb(
    lambda m, tc, j: (ref2.create_extended_embedding(m) * tc.W_enc[:, j]).sum(-1))})

P = "pullback"
wrong(C2, P, "column centred with the mean of the whole W_enc", **{P: lambda e, l, j: e.W_dec @ (l.W_enc[:, j] - l.W_enc.mean())})
wrong(C2, P, "decoder of the later transcoder", **{P: lambda e, l, j: l.W_dec @ reading_vector(l, j)})
right(C2, P, "torch.mv", **{P: lambda e, l, j: torch.mv(e.W_dec, reading_vector(l, j))})

DI = "direct_influence"


def direct(cache, early, later, j, *, mistake=None):
    acts = cache[acts_name(early)]
    scale = cache[f"blocks.{layer_of(later)}.ln2.hook_scale"]
    pull = ref2.pullback(early, later, j)
    if mistake == "sqrt":
        return acts * pull / scale.sqrt()
    if mistake == "squeeze":  # correct
        return acts * pull / scale.squeeze(-1)[..., None]
    if mistake == "later acts":
        return cache[acts_name(later)] * pull / scale
    return acts * pull / scale


wrong(C2, DI, "divided by the square root of the scale", **{DI: lambda *a: direct(*a, mistake="sqrt")})
wrong(C2, DI, "later transcoder's activations", **{DI: lambda *a: direct(*a, mistake="later acts")})
right(C2, DI, "scale squeezed and unsqueezed", **{DI: lambda *a: direct(*a, mistake="squeeze")})

HI = "head_influence"


def head(model, cache, early, later, j, H, h, b, d, *, mistake=None):
    through = model.W_V[H, h] @ (model.W_O[H, h] @ reading_vector(later, j))
    w = model.blocks[H].ln1.w
    if mistake == "centre before weight":
        src = w * (through - through.mean())
    else:
        src = w * through
        src = src - src.mean()
    pattern = cache[f"blocks.{H}.attn.hook_pattern"][b, h, d]
    s1 = cache[f"blocks.{H}.ln1.hook_scale"][b, :, 0]
    s2 = cache[f"blocks.{layer_of(later)}.ln2.hook_scale"][b, d, 0]
    if mistake == "later ln1 scale":
        s1 = cache[f"blocks.{layer_of(later)}.ln1.hook_scale"][b, :, 0]
    acts = cache[acts_name(early)][b]
    if mistake == "einsum":  # correct
        return torch.einsum("s,si,i->si", pattern / s1, acts, early.W_dec @ src) / s2
    return (pattern / s1)[:, None] * acts * (early.W_dec @ src) / s2


wrong(C2, HI, "centred before multiplying by ln1.w", **{HI: lambda *a: head(*a, mistake="centre before weight")})
wrong(C2, HI, "ln1 scale of the later layer", **{HI: lambda *a: head(*a, mistake="later ln1 scale")})
right(C2, HI, "einsum", **{HI: lambda *a: head(*a, mistake="einsum")})

CA = "component_attribution"


def attribution(model, cache, later, j, b, p, *, mistake=None):
    out = ref2.component_attribution(model, cache, later, j, b, p)
    L = layer_of(later)
    read = reading_vector(later, j) / cache[f"blocks.{L}.ln2.hook_scale"][b, p, 0]
    if mistake == "pos 0":
        out[0, 1] = cache["hook_pos_embed"][b, 0] @ read
    if mistake == "ln1 scale":
        out = out * cache[f"blocks.{L}.ln2.hook_scale"][b, p, 0] / cache[f"blocks.{L}.ln1.hook_scale"][b, p, 0]
    if mistake == "b_O per head":
        out[0, 2] = 0
        for layer in range(L + 1):
            out[layer + 1, :model.cfg.n_heads] += (model.b_O[layer] @ read) / model.cfg.n_heads
    return out


wrong(C2, CA, "positional embedding of position 0", **{CA: lambda *a: attribution(*a, mistake="pos 0")})
wrong(C2, CA, "divided by ln1's scale", **{CA: lambda *a: attribution(*a, mistake="ln1 scale")})
wrong(C2, CA, "b_O spread over the heads", **{CA: lambda *a: attribution(*a, mistake="b_O per head")})
right(C2, CA, "the reference, built on a float64 canvas", **{CA: lambda *a: attribution(*a).double()})
