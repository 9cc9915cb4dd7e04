"""Plausible wrong implementations and correct alternatives of chapter 01's exercises.

Written from the exercise text (chapters/01_latent_gradients/source.py), not from the checks: each is
what a learner might write. `benchmarks/check_mutants.py` runs every check on them.

A `Variant` replaces names of the notebook's namespace (`overrides`), then the exercise's check cell
runs. A nested exercise (one that calls another) is given its wrong inner function the way a notebook
gives it: both names are replaced, and the outer one calls the inner one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import einops
import torch

from solutions import ch01_latent_gradients as ref
from solutions.ch01_latent_gradients import SparseTensor, hook_layer, sae_acts_name


@dataclass
class Variant:
    exercise: str
    name: str
    correct: bool  # a correct alternative the text allows (must pass), or a wrong implementation (must fail)
    overrides: dict[str, Any]
    want: str | None = None  # a word the failure message should contain (the mistake it should name)
    notes: str = ""


VARIANTS: list[Variant] = []


def wrong(exercise: str, name: str, want: str | None = None, **overrides) -> None:
    VARIANTS.append(Variant(exercise, name, False, overrides or {exercise: None}, want))


def right(exercise: str, name: str, **overrides) -> None:
    VARIANTS.append(Variant(exercise, name, True, overrides))


# =================================================================================================
# SparseTensor


def sparse_class(from_dense=None, from_sparse=None) -> type:
    methods = {}
    if from_dense:
        methods["from_dense"] = classmethod(from_dense)
    if from_sparse:
        methods["from_sparse"] = classmethod(from_sparse)
    return type("SparseTensor", (ref.SparseTensor,), methods)


def fd_positive(cls, dense):
    mask = dense > 0  # only positive entries count as nonzero
    return cls((dense[mask], mask.nonzero(), tuple(dense.shape)), dense)


def fd_abs(cls, dense):
    mask = dense != 0
    return cls((dense.abs()[mask], mask.nonzero(), tuple(dense.shape)), dense)


def fd_detached(cls, dense):
    mask = dense != 0
    return cls((dense[mask].detach().clone(), mask.nonzero(), tuple(dense.shape)), dense)


def fd_transposed(cls, dense):
    mask = dense != 0
    return cls((dense[mask], torch.stack(mask.nonzero(as_tuple=True)), tuple(dense.shape)), dense)


def fd_numpy(cls, dense):
    mask = dense != 0
    return cls((dense[mask].numpy(), mask.nonzero(), tuple(dense.shape)), dense)


def fd_flat_order(cls, dense):  # correct: flattening keeps row-major order
    flat = dense.flatten()
    return cls((flat[flat != 0], (dense != 0).nonzero(), dense.shape), dense)


def fd_index_tuple(cls, dense):  # correct: values read at the coordinates
    indices = torch.nonzero(dense)
    return cls((dense[tuple(indices.T)], indices, tuple(dense.shape)), dense)


def fs_2d_only(cls, sparse):
    values, indices, shape = sparse
    dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
    dense = dense.index_put((indices[:, 0], indices[:, -1]), values)  # assumes two dimensions
    return cls(sparse, dense)


def fs_float32(cls, sparse):
    values, indices, shape = sparse
    dense = torch.zeros(shape).index_put(tuple(indices.T), values.float())
    return cls(sparse, dense)


def fs_python_loop(cls, sparse):
    values, indices, shape = sparse
    dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
    for value, index in zip(values.tolist(), indices.tolist()):
        dense[tuple(index)] = value  # Python numbers: no gradient
    return cls(sparse, dense)


def fs_sparse_coo(cls, sparse):  # correct: torch's own sparse format
    values, indices, shape = sparse
    dense = torch.sparse_coo_tensor(indices.T, values, shape).to_dense()
    return cls(sparse, dense)


def fs_accumulate(cls, sparse):  # correct: no coordinate repeats, so accumulating changes nothing
    values, indices, shape = sparse
    dense = values.new_zeros(shape).index_put(tuple(indices.unbind(-1)), values, accumulate=True)
    return cls(sparse, dense)


wrong("sparse_tensor", "values of positive entries only (> 0)", "negative", SparseTensor=sparse_class(fd_positive))
wrong("sparse_tensor", "abs() of the values", "sign", SparseTensor=sparse_class(fd_abs))
wrong("sparse_tensor", "from_dense detaches the values", "autograd", SparseTensor=sparse_class(fd_detached))
wrong("sparse_tensor", "indices stacked per dimension (transposed)", "transpose", SparseTensor=sparse_class(fd_transposed))
wrong("sparse_tensor", "values as a numpy array", "numpy", SparseTensor=sparse_class(fd_numpy))
wrong("sparse_tensor", "from_sparse assumes 2-D", None, SparseTensor=sparse_class(from_sparse=fs_2d_only))
wrong("sparse_tensor", "from_sparse makes float32", "dtype", SparseTensor=sparse_class(from_sparse=fs_float32))
wrong("sparse_tensor", "from_sparse writes Python numbers", "autograd", SparseTensor=sparse_class(from_sparse=fs_python_loop))
right("sparse_tensor", "flattened values, torch.Size shape", SparseTensor=sparse_class(fd_flat_order))
right("sparse_tensor", "values read at the coordinates", SparseTensor=sparse_class(fd_index_tuple))
right("sparse_tensor", "from_sparse via sparse_coo_tensor", SparseTensor=sparse_class(from_sparse=fs_sparse_coo))
right("sparse_tensor", "from_sparse with accumulate=True", SparseTensor=sparse_class(from_sparse=fs_accumulate))


# =================================================================================================
# latent_acts_to_later_latent_acts


def later(values, inds, shape, sae_from, sae_to, model, *, start=None, stop_extra=0, decode=None, first_row=False,
          blocks_loop=False, values_of=None, detach=False, double=False):
    acts = SparseTensor.from_sparse((values.detach() if detach else values, inds, shape)).dense
    if first_row:
        acts = acts[:1]
    resid = decode(sae_from, acts) if decode else sae_from.decode(acts)
    l1, l2 = hook_layer(sae_from), hook_layer(sae_to)
    if blocks_loop:
        for block in model.blocks[l1:l2]:
            resid = block(resid)
    else:
        resid = model(resid, start_at_layer=l1 if start is None else start, stop_at_layer=l2 + stop_extra)
    dense = sae_to.encode(resid)
    if first_row:
        dense = dense.expand(shape[0], *dense.shape[1:])
    if double:
        dense = dense.double()
    nonzero = values_of(dense) if values_of else SparseTensor.from_dense(dense).sparse[0]
    return nonzero, (dense,)


def _v(**kw) -> Callable:
    return lambda *a: later(*a, **kw)


X = "latent_acts_to_later_latent_acts"
wrong(X, "one block too many (stop_at_layer = layer + 1)", "block", **{X: _v(stop_extra=1)})
wrong(X, "blocks from layer 0", "layer 0", **{X: _v(start=0)})
wrong(X, "decoder bias missing (x @ W_dec)", "bias", **{X: _v(decode=lambda s, x: x @ s.W_dec)})
wrong(X, "decoder bias subtracted", None, **{X: _v(decode=lambda s, x: x @ s.W_dec - s.b_dec)})
wrong(X, "only the first sequence of the batch", "row", **{X: _v(first_row=True)})
wrong(X, "input detached", "gradient", **{X: _v(detach=True)})
wrong(X, "encoded with sae_from instead of sae_to", None,
      **{X: lambda v, i, s, sae_from, sae_to, model: later(v, i, s, sae_from, sae_from, model, stop_extra=hook_layer(sae_to) - hook_layer(sae_from))})
wrong(X, "float64 activations", "dtype", **{X: _v(double=True)})
right(X, "loop over model.blocks", **{X: _v(blocks_loop=True)})
right(X, "values = dense[dense > 0] (ReLU outputs are never negative)", **{X: _v(values_of=lambda d: d[d > 0])})


# =================================================================================================
# latent_to_latent_gradients


def grads_fn(tokens, sae_from, sae_to, model, *, inner=ref.latent_acts_to_later_latent_acts, error_term=True,
             transpose=False, first_seq=False, separate_runs=False, no_stop=False, swap=False):
    names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
    run_tokens = tokens[0] if first_seq else tokens
    with torch.no_grad():
        if separate_runs:  # true activations from a clean run, encoded by hand
            _, cache0 = model.run_with_cache(run_tokens)
            cache = {names[0]: sae_from.encode(cache0[sae_from.cfg.metadata.hook_name]),
                     names[1]: sae_to.encode(cache0[sae_to.cfg.metadata.hook_name])}
        else:
            _, cache = model.run_with_cache_with_saes(run_tokens, saes=[sae_from, sae_to], use_error_term=error_term,
                                                      stop_at_layer=None if no_stop else hook_layer(sae_to) + 1)
    prev = SparseTensor.from_dense(cache[names[0]])
    nxt = SparseTensor.from_dense(cache[names[1]])
    grads, (recon,) = torch.func.jacrev(inner, has_aux=True)(*prev.sparse, sae_from, sae_to, model)
    if transpose:
        grads = grads.T
    outputs = (grads, prev, nxt, SparseTensor.from_dense(recon))
    return (grads, nxt, prev, outputs[3]) if swap else outputs


def _g(**kw) -> Callable:
    return lambda *a: grads_fn(*a, **kw)


G = "latent_to_latent_gradients"
wrong(G, "no error term", "error", **{G: _g(error_term=False)})
wrong(G, "transposed Jacobian", "transpose", **{G: _g(transpose=True)})
wrong(G, "only the first sequence of the batch", "row", **{G: _g(first_seq=True)})
wrong(G, "prev and next swapped", None, **{G: _g(swap=True)})
inner_block = _v(stop_extra=1)
wrong(G, "inner latent_acts_to_later_latent_acts runs one block too many", X,
      **{X: inner_block, G: _g(inner=inner_block)})
inner_bias = _v(decode=lambda s, x: x @ s.W_dec)
wrong(G, "inner latent_acts_to_later_latent_acts misses the decoder bias", X,
      **{X: inner_bias, G: _g(inner=inner_bias)})
right(G, "true activations from a clean run, encoded by hand", **{G: _g(separate_runs=True)})
right(G, "no stop_at_layer", **{G: _g(no_stop=True)})


# =================================================================================================
# tokens_to_latent_acts and token_to_latent_gradients


def token_acts(token_scales, tokens, sae, model, *, how="ok", first_row=False):
    scales = token_scales[:1] if first_row else token_scales
    if how == "token only":
        resid = model.embed(tokens) * scales[..., None] + model.pos_embed(tokens)
    elif how == "position only":
        resid = model.embed(tokens) + model.pos_embed(tokens) * scales[..., None]
    elif how == "by hand":  # correct
        resid = (model.W_E[tokens] + model.W_pos[: tokens.shape[-1]]) * scales[..., None]
    elif how == "scaled twice":
        resid = model(tokens, stop_at_layer=0) * (scales[..., None] ** 2)
    elif how == "scaled after block 0":
        resid = model(model(tokens, stop_at_layer=0), start_at_layer=0, stop_at_layer=1) * scales[..., None]
        resid = model(resid, start_at_layer=1, stop_at_layer=hook_layer(sae))
        dense = sae.encode(resid)
        return dense[dense != 0], (dense,)
    else:
        resid = model(tokens, stop_at_layer=0) * scales[..., None]
    resid = model(resid, start_at_layer=0, stop_at_layer=hook_layer(sae) + (1 if how == "extra block" else 0))
    dense = sae.encode(resid)
    return dense[dense != 0], (dense,)


def _t(**kw) -> Callable:
    return lambda *a: token_acts(*a, **kw)


T = "tokens_to_latent_acts"
wrong(T, "only the token embeddings scaled", "token", **{T: _t(how="token only")})
wrong(T, "only the positional embeddings scaled", None, **{T: _t(how="position only")})
wrong(T, "scales squared", None, **{T: _t(how="scaled twice")})
wrong(T, "one block too many", "block", **{T: _t(how="extra block")})
wrong(T, "scales of the first sequence used for every sequence", "row", **{T: _t(first_row=True)})
wrong(T, "scaled after block 0", None, **{T: _t(how="scaled after block 0")})
right(T, "W_E[tokens] + W_pos by hand", **{T: _t(how="by hand")})
right(T, "values = dense[dense != 0]", **{T: _t()})


def token_grads(tokens, sae, model, *, inner=ref.tokens_to_latent_acts, order="n batch seq -> batch seq n",
                at=1.0, first_row=False):
    shape = (1, tokens.shape[1]) if first_row else tokens.shape
    scales = torch.full(shape, at)
    grads, (dense,) = torch.func.jacrev(inner, has_aux=True)(scales, tokens[:1] if first_row else tokens, sae, model)
    if order == "permute":
        grads = grads.permute(1, 2, 0)
    elif order is not None:
        grads = einops.rearrange(grads, order)
    return grads, SparseTensor.from_dense(dense)


def _tg(**kw) -> Callable:
    return lambda *a: token_grads(*a, **kw)


TG = "token_to_latent_gradients"
wrong(TG, "not rearranged", "rearrange", **{TG: _tg(order=None)})
wrong(TG, "rearranged to (seq, batch, n)", None, **{TG: _tg(order="n batch seq -> seq batch n")})
wrong(TG, "gradient at scales 0", None, **{TG: _tg(at=0.0)})
wrong(TG, "only the first sequence", "row", **{TG: _tg(first_row=True)})
for label, kw, want in (("only the token embeddings scaled", dict(how="token only"), T),
                        ("scales squared", dict(how="scaled twice"), T),
                        ("one block too many", dict(how="extra block"), T)):
    inner = _t(**kw)
    wrong(TG, f"inner tokens_to_latent_acts: {label}", want, **{T: inner, TG: _tg(inner=inner)})
right(TG, "permute(1, 2, 0)", **{TG: _tg(order="permute")})
right(TG, "own inner written by hand", **{T: _t(how="by hand"), TG: _tg(inner=_t(how="by hand"))})


# =================================================================================================
# latent_acts_to_logits and latent_to_logit_gradients


def logits_fn(values, inds, shape, sae, model, token_ids=None, *, index=(0, -1), log_softmax=False, skip_block=False,
              no_bias=False, ignore_ids=False, squeeze=False):
    acts = SparseTensor.from_sparse((values, inds, shape)).dense
    resid = acts @ sae.W_dec if no_bias else sae.decode(acts)
    logits = model(resid, start_at_layer=hook_layer(sae) + (1 if skip_block else 0))
    if log_softmax:
        logits = logits.log_softmax(-1)
    logits = logits.squeeze()[-1] if squeeze else logits[index]
    selected = logits if (token_ids is None or ignore_ids) else logits[token_ids]
    return selected, (logits,)


def _l(**kw) -> Callable:
    return lambda *a, **k: logits_fn(*a, **k, **kw)


LG = "latent_acts_to_logits"
wrong(LG, "first position", "first position", **{LG: _l(index=(0, 0))})
wrong(LG, "last sequence of the batch, last position", "first sequence", **{LG: _l(index=(-1, -1))})
wrong(LG, "logits.squeeze()[-1]", None, **{LG: _l(squeeze=True)})
wrong(LG, "log_softmax instead of logits", "constant", **{LG: _l(log_softmax=True)})
wrong(LG, "one block skipped", None, **{LG: _l(skip_block=True)})
wrong(LG, "decoder bias missing", "bias", **{LG: _l(no_bias=True)})
wrong(LG, "token_ids ignored", "token_ids", **{LG: _l(ignore_ids=True)})
wrong(LG, "logits of every sequence, last position (logits[:, -1])", None, **{LG: _l(index=(slice(None), -1))})
right(LG, "logits[0][-1]", **{LG: lambda v, i, s, sae, model, token_ids=None: (
    lambda lg: (lg if token_ids is None else lg.index_select(0, torch.tensor(token_ids, dtype=torch.long)), (lg,)))(
    model.forward(sae.decode(SparseTensor.from_sparse((v, i, s)).dense), start_at_layer=hook_layer(sae))[0][-1])})


def logit_grads(tokens, sae, model, k=None, *, inner=ref.latent_acts_to_logits, error_term=True, ascending=False,
                none_as_all=False, ids_tensor=False, transpose=False, ignore_none=False):
    with torch.no_grad():
        logits, cache = model.run_with_cache_with_saes(tokens, saes=[sae], use_error_term=error_term)
    acts = SparseTensor.from_dense(cache[sae_acts_name(sae)])
    logits = logits[0, -1]
    if k is None and not ignore_none:
        token_ids = list(range(logits.shape[0])) if none_as_all else None
    else:
        token_ids = logits.topk(k, largest=not ascending).indices
        token_ids = token_ids if ids_tensor else token_ids.tolist()
    ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else token_ids
    grads, (recon,) = torch.func.jacrev(inner, has_aux=True)(*acts.sparse, sae, model, ids)
    return (grads.T if transpose else grads), logits, recon, token_ids, acts


def _lg(**kw) -> Callable:
    return lambda *a, **k: logit_grads(*a, **k, **kw)


LGG = "latent_to_logit_gradients"
wrong(LGG, "no error term", "error", **{LGG: _lg(error_term=False)})
wrong(LGG, "smallest logits (ascending)", "largest", **{LGG: _lg(ascending=True)})
wrong(LGG, "transposed", "transpose", **{LGG: _lg(transpose=True)})
wrong(LGG, "k=None not handled (topk(None))", "None", **{LGG: _lg(ignore_none=True)})
for label, kw in (("first position", dict(index=(0, 0))), ("log_softmax", dict(log_softmax=True)),
                  ("decoder bias missing", dict(no_bias=True))):
    inner = _l(**kw)
    wrong(LGG, f"inner latent_acts_to_logits: {label}", LG, **{LG: inner, LGG: _lg(inner=inner)})
right(LGG, "token_ids as a tensor", **{LGG: _lg(ids_tensor=True)})
right(LGG, "k=None gives every token id", **{LGG: _lg(none_as_all=True)})


# =================================================================================================
# Attention SAEs


def later_attn(values, inds, shape, sae_from, sae_to, model, resid_pre, *, mistake=None):
    acts = SparseTensor.from_sparse((values, inds, shape)).dense
    z_recon = acts @ sae_from.W_dec if mistake == "no bias" else sae_from.decode(acts)
    stored = {}

    def replace(z, hook):
        if mistake == "no return":
            z[:] = z  # looks like an edit, changes nothing
            return None
        if mistake == "first row":
            return z_recon[:1].reshape(1, *z.shape[1:]).expand_as(z)
        if mistake == "view_as":
            return z_recon.view_as(z)
        return z_recon.reshape(z.shape)

    def store(z, hook):
        stored["z"] = z

    l1, l2 = hook_layer(sae_from), hook_layer(sae_to)
    start = 0 if mistake == "from 0" else l1
    hooks = [(sae_from.cfg.metadata.hook_name, replace), (sae_to.cfg.metadata.hook_name, store)]
    if mistake == "with hooks":  # correct: the hooks context with a plain forward
        with model.hooks(fwd_hooks=hooks):
            model(resid_pre, start_at_layer=l1, stop_at_layer=l2 + 1)
    else:
        model.run_with_hooks(resid_pre, start_at_layer=start, stop_at_layer=l2 + 1, fwd_hooks=hooks)
    z = stored["z"]
    dense = sae_to.encode(z)
    if mistake == "clean z":
        dense = sae_to.encode(stored["z"]).detach()
    return dense[dense != 0], (dense,)


def _a(mistake=None) -> Callable:
    return lambda *a: later_attn(*a, mistake=mistake)


A = "latent_acts_to_later_latent_acts_attn"
wrong(A, "hook returns nothing", "replace", **{A: _a("no return")})
wrong(A, "decoder bias missing", "bias", **{A: _a("no bias")})
wrong(A, "runs from layer 0", "layer 0", **{A: _a("from 0")})
wrong(A, "only the first sequence's reconstruction", "row", **{A: _a("first row")})
wrong(A, "later activations detached", "gradient", **{A: _a("clean z")})
right(A, "model.hooks context and a plain forward", **{A: _a("with hooks")})
right(A, "replacement returned with view_as(z)", **{A: _a("view_as")})


def grads_attn(tokens, sae_from, sae_to, model, *, inner=ref.latent_acts_to_later_latent_acts_attn, error_term=True,
               transpose=False, resid_from_clean_run=False, wrong_resid=False, first_seq=False):
    l1 = hook_layer(sae_from)
    resid_name = f"blocks.{l1 + 1 if wrong_resid else l1}.hook_resid_pre"
    run_tokens = tokens[0] if first_seq else tokens
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(run_tokens, saes=[sae_from, sae_to], use_error_term=error_term)
        resid = model.run_with_cache(run_tokens)[1][resid_name] if resid_from_clean_run else cache[resid_name]
    prev = SparseTensor.from_dense(cache[sae_acts_name(sae_from)])
    nxt = SparseTensor.from_dense(cache[sae_acts_name(sae_to)])
    grads, (recon,) = torch.func.jacrev(inner, has_aux=True)(*prev.sparse, sae_from, sae_to, model, resid)
    return (grads.T if transpose else grads), prev, nxt, SparseTensor.from_dense(recon)


def _ga(**kw) -> Callable:
    return lambda *a: grads_attn(*a, **kw)


GA = "latent_to_latent_gradients_attn"
wrong(GA, "no error term", "error", **{GA: _ga(error_term=False)})
wrong(GA, "transposed", "transpose", **{GA: _ga(transpose=True)})
wrong(GA, "resid_pre of the layer after sae_from", None, **{GA: _ga(wrong_resid=True)})
wrong(GA, "only the first sequence", "row", **{GA: _ga(first_seq=True)})
for label, mistake in (("hook returns nothing", "no return"), ("decoder bias missing", "no bias")):
    inner = _a(mistake)
    wrong(GA, f"inner latent_acts_to_later_latent_acts_attn: {label}", A, **{A: inner, GA: _ga(inner=inner)})
right(GA, "resid_pre from a separate clean run", **{GA: _ga(resid_from_clean_run=True)})
right(GA, "own inner with the hooks context", **{A: _a("with hooks"), GA: _ga(inner=_a("with hooks"))})
