# Source of chapter 02. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch02_transcoders.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 02 · Transcoders
#
# An SAE rewrites the activations at *one* point of the model. A **transcoder** rewrites a whole
# *layer*: it reads the MLP's input and is trained to produce the MLP's output, through a wide,
# sparse layer of latents. Each latent has a *reading* vector (a column of `W_enc`) and a *writing*
# vector (a row of `W_dec`), and in between there is only one nonlinearity per latent. So the MLP,
# the part of a transformer that is hardest to read, becomes a sum of small pieces whose inputs and
# outputs are both directions in the residual stream. Two latents in different layers can then be
# connected by a dot product between one's writing vector and the other's reading vector, without
# running the model at all.
#
# In this chapter you will
#
# - load the course world's transcoders, look at their sparsity and run the model with them, with
#   our own hooks and with `sae_lens`'s attachment;
# - find the max-activating examples of a latent over the course corpus, fast;
# - read latents from their weights: the logit lens, de-embeddings, and why de-embeddings need the
#   *extended* embedding in a model with tied embeddings;
# - connect latents: pullbacks, input-dependent influence (directly and through attention heads)
#   and a per-component attribution;
# - put it all together in a **blind case study**: explain a latent without looking at the text it
#   fires on, then score your explanation against the ground truth of the course world.
#
# Everything runs offline on the course world, version 2 (the README's "The course world"): a 4-layer
# model with `d_model = 128` and tied embeddings, and one transcoder per layer. Numbers and latent ids
# quoted in this text are those the solution notebook prints on the shipped course world (a test
# checks that each is still printed); the notebook prints the ids it uses, so if you retrain the
# world, trust the printed ids over the text.
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by a
# check cell that prints "✅ ... passed" or says what is wrong.

# %% [module]
import einops
import plotly.express as px
import torch
from IPython.display import display
from torch import Tensor
from tqdm.auto import tqdm

from utils.transcoders import (
    HTMLWithText,
    acts_name,
    hook_names,
    layer_of,
    reading_vector,
    run_with_cache_with_transcoder,
    show_top_tokens,
    standardise,
    top_seqs_html,
    top_seqs_text,
)

# %%
import inspect

import plotly.io as pio

import tests  # this chapter's checks: chapters/02_transcoders/tests.py
from utils import transcoders as tc_utils
from utils.world.concepts import streamed_concept_scores  # works on any model, dictionaries and labelled corpus
from utils.world import labelled_corpus, load_model, load_transcoders

torch.set_grad_enabled(False)  # nothing in this chapter needs gradients
# Plotly renders from its own bundled JavaScript (no CDN), so the plots work offline.
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"

# %% [markdown]
# ## 1 · Loading the transcoders
#
# `load_transcoders()` returns `{layer: transcoder}`, one `sae_lens` `JumpReLUTranscoder` per layer.
# Each reads `blocks.{L}.ln2.hook_normalized` and writes `blocks.{L}.hook_mlp_out`.
#
# A note on "normalized": in TransformerLens, `ln2.hook_normalized` is the residual stream after
# LayerNorm has centred each vector and divided it by its root-mean-square, *before* LayerNorm's
# own weight and bias. So the transcoder sees exactly the direction of the residual stream, with
# the mean removed and the scale divided out. Keep this in mind: it is why, later, every reading
# vector is centred and every influence is divided by a LayerNorm scale.

# %%
model = load_model()
transcoders = load_transcoders()
for layer, tc in transcoders.items():
    hook_in, hook_out = hook_names(tc)
    print(f"layer {layer}: {type(tc).__name__}, {tc.cfg.d_in} -> {tc.cfg.d_sae} latents -> {tc.cfg.d_out}; "
          f"reads {hook_in}, writes {hook_out}")

# %% [markdown]
# The latents' activations on the held-out course corpus give us everything we need about them:
# how often each fires, and (our advantage over a real model) which planted concept it matches.
# The corpus is 300 documents of up to 128 tokens, padded; `data.mask` marks the real tokens
# (not BOS, not padding). `streamed_concept_scores` runs the model once per batch for all four
# transcoders and keeps, per layer, a `ConceptScores`: each latent's density (the fraction of real
# tokens where it fires) and its precision, recall and F1 against every planted concept.

# %%
data = labelled_corpus()
scores = streamed_concept_scores(model, transcoders, data)  # {layer: ConceptScores}
density = {layer: s.density for layer, s in scores.items()}
print(f"{len(data.tokens)} documents, {int(data.mask.sum()):,} real tokens")
for layer, d in density.items():
    print(f"layer {layer}: {int((d > 0).sum())} live latents of {len(d)}, "
          f"on average {float(d.sum()):.1f} active per token")

# %% [markdown]
# The concepts are the planted phenomena of the course world, by code (`estimate`, `two_hop`,
# `city:Athens`, ...). What each code labels (click to open):

# %%
from IPython.display import Markdown

from utils.world import concept_legend_table

display(Markdown(f"<details><summary><b>Legend: the planted concepts</b></summary>\n\n{concept_legend_table()}\n\n</details>"))

# %% [markdown]
# A histogram of log₁₀(density) per layer. Dead latents (never active on these {{26,477}} real tokens)
# have no logarithm; they are counted above and left out of the plot.

# %%
rows = [(layer, float(v)) for layer, d in density.items() for v in d[d > 0].log10()]
fig = px.histogram(
    x=[v for _, v in rows], color=[f"layer {layer}" for layer, _ in rows], barmode="overlay", nbins=60,
    labels={"x": "log10(fraction of tokens where the latent is active)", "color": ""},
    title="Transcoder latent density on the held-out course corpus", width=800, height=380,
)
fig.show()

from collections import Counter

dense = {layer: d > 0.1 for layer, d in density.items()}
for layer, d in density.items():
    print(f"layer {layer}: {int(dense[layer].sum())} latents fire on more than 10% of tokens, "
          f"{float(d[dense[layer]].sum() / d.sum()):.0%} of all the layer's firings")
# How well do the dense latents match their best concept, against that concept's base rate (the
# precision of a rule that fires at random)?
base_rate = data.labels[data.mask].float().mean(0)  # (n_concepts,): share of real tokens with each label
for layer in (0, 3):
    best = [scores[layer].best_concept(int(j)) for j in dense[layer].nonzero().flatten()]
    precision = torch.tensor([p for _, p, _, _ in best])
    chance = torch.tensor([float(base_rate[data.concept_index(c)]) for c, *_ in best])
    print(f"layer {layer}'s dense latents: best concepts {Counter(c for c, *_ in best).most_common(2)}; "
          f"median precision {precision.median():.2f}, median base rate of those concepts {chance.median():.2f}")

# %% [markdown]
# Most latents are rare, as they should be, but not all. Transcoder 0 has {{21}} latents that fire on
# more than a tenth of all tokens, and together they account for {{17%}} of its firings; transcoder 3
# has {{14}} ({{10%}}), transcoders 1 and 2 only {{2}} and {{3}}. Their best-matching concepts are broad:
# `p3_run` (every token of a repeated run of random words) for {{15}} of layer 0's, `everyday` (every
# token of an everyday sentence) for {{9}} of layer 3's. Compare each latent's precision for its best
# concept with that concept's base rate, the precision of a rule that fires at random: layer 0's
# dense latents reach a median {{0.25}} against {{0.08}} (three times chance, yet wrong three times in
# four), layer 3's {{0.20}} against {{0.17}}, hardly above chance. A latent that fires on more than a
# tenth of all tokens can only be precise about a concept at least that common. Dense latents are
# worth knowing about because they show up in attribution graphs (chapter 03) without meaning much.

# %% [markdown]
# ## 2 · Running the model with transcoders
#
# There are two ways to run the model with a transcoder in place.
#
# **Our own hooks.** `run_with_cache_with_transcoder` (in `utils/transcoders.py`, printed below)
# adds a hook at each transcoder's input that encodes the activations and keeps the latents. With
# `use_error_term=True` (the default) the model is left as it is and the transcoders only *read*;
# with `use_error_term=False` a second hook replaces each MLP's output by its transcoder's output.
# Transcoder values go into the cache under the input hook's name, e.g.
# `blocks.1.ln2.hook_normalized.hook_sae_acts_post`. Read it: the later exercises use its cache.

# %%
print(inspect.getsource(run_with_cache_with_transcoder))

# %% [markdown]
# **`sae_lens`.** Version 6 of `sae_lens` knows transcoders: `HookedSAETransformer.add_sae`, and with
# it `run_with_saes` and `run_with_cache_with_saes`, read a transcoder's input at
# `cfg.metadata.hook_name` and put the wrapped transcoder at `cfg.metadata.hook_name_out`. Its cache
# keys are therefore named after the *output* hook: `blocks.1.hook_mlp_out.hook_sae_acts_post`.
#
# Both ways must agree, on the latents and on the logits. Let's check on a few documents:

# %%
sample = data.tokens[:8]
ours_logits, ours = run_with_cache_with_transcoder(model, list(transcoders.values()), sample, use_error_term=False,
                                                   return_logits=True)
lens_logits, lens_cache = model.run_with_cache_with_saes(sample, saes=list(transcoders.values()), use_error_term=False)
for layer, tc in transcoders.items():
    ours_acts = ours[acts_name(tc)]
    lens_acts = lens_cache[f"{hook_names(tc)[1]}.hook_sae_acts_post"]
    print(f"layer {layer}: max |difference| of latent activations {float((ours_acts - lens_acts).abs().max()):.2e}")
print(f"logits, every MLP replaced: max |difference| {float((ours_logits - lens_logits).abs().max()):.2e}")
clean_logits = model(sample)
with_error = model.run_with_saes(sample, saes=list(transcoders.values()), use_error_term=True)
print(f"logits with the error term vs the clean model: max |difference| {float((with_error - clean_logits).abs().max()):.2e}")

# %% [markdown]
# Expected output: differences of 0 (or float noise) everywhere. Both runs replace all four MLPs,
# so from layer 1 on the transcoders read inputs that earlier transcoders have already changed; the
# latents still agree exactly, because both ways compute the same thing in the same order. With the
# error term, `sae_lens` adds back `mlp_out − transcoder output`, so the model's output is unchanged
# (up to float rounding, the size printed above: it varies with the CPU and library versions).
#
# How good a replacement are the transcoders? A loss on its own says little, so we set it between
# two references: the clean model, and the same model with that MLP's output set to zero (the MLP
# removed). The *fraction of loss recovered* is `(zero − transcoder) / (zero − clean)`: 1 for a
# perfect replacement, 0 for one no better than removing the MLP. We use 32 held-out documents and
# give each number a 95% interval from resampling the documents (1,000 bootstrap draws).

# %%
loss_docs = data.tokens[:32]


def doc_losses(logits: Tensor, tokens: Tensor) -> Tensor:
    """Mean cross-entropy of predicting tokens[:, 1:] per document, over real tokens only: shape (n_docs,)."""
    pad, bos = model.tokenizer.pad_token_id, model.tokenizer.bos_token_id
    targets = tokens[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
    real = ((targets != pad) & (targets != bos)).float()
    return (losses * real).sum(1) / real.sum(1)


def zero_mlp(layer: int) -> Tensor:
    return model.run_with_hooks(loss_docs, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", lambda out, hook: 0 * out)])


boot = torch.randint(0, len(loss_docs), (1000, len(loss_docs)), generator=torch.Generator().manual_seed(0))


def interval(per_doc: Tensor) -> str:
    """The mean over documents with a 95% bootstrap interval."""
    low, high = per_doc[boot].mean(1).quantile(torch.tensor([0.025, 0.975])).tolist()
    return f"{float(per_doc.mean()):.3f} ({low:.3f} to {high:.3f})"


clean = doc_losses(model(loss_docs), loss_docs)
print(f"clean model: loss {interval(clean)}")
every = doc_losses(model.run_with_saes(loss_docs, saes=list(transcoders.values()), use_error_term=False), loss_docs)
print(f"every MLP -> its transcoder: loss {interval(every)}; minus clean {interval(every - clean)}")
for layer, tc in transcoders.items():
    replaced = doc_losses(model.run_with_saes(loss_docs, saes=[tc], use_error_term=False), loss_docs)
    zeroed = doc_losses(zero_mlp(layer), loss_docs)
    recovered = ((zeroed - replaced)[boot].mean(1) / (zeroed - clean)[boot].mean(1)).quantile(torch.tensor([0.025, 0.975]))
    print(f"MLP {layer}: transcoder minus clean {interval(replaced - clean)}; zeroed minus clean {interval(zeroed - clean)}; "
          f"loss recovered {float((zeroed - replaced).mean() / (zeroed - clean).mean()):.2f} "
          f"({recovered[0]:.2f} to {recovered[1]:.2f})")

# %% [markdown]
# Expected output: the clean loss on these 32 documents is {{2.667}}; with all four MLPs replaced at
# once it rises by {{0.974}} (95% interval {{0.702}} to {{1.264}}). One MLP at a time, the reference is
# what removing it costs. Zeroing MLP 0 raises the loss by {{5.968}}; its transcoder gets back {{0.92}}
# of that ({{0.89}} to {{0.95}}) and still costs {{0.460}}, by far the largest single cost (MLP 0 does
# far more work than the others, so the same relative error costs more). Zeroing MLP 1, 2 or 3 costs
# much less ({{0.106}}, {{0.164}}, {{0.336}}), and their transcoders change the loss by amounts whose
# intervals include zero ({{0.003}}, {{-0.052}}, {{-0.018}}): on this sample we cannot tell them apart
# from the MLPs they replace. Their fractions
# recovered are ratios of small, noisy numbers (MLP 2's interval runs from {{-3.46}} to {{4.20}}), so
# read the differences instead. Transcoder 3 was trained differently from the others: the last MLP
# writes straight into the logits, so besides reconstructing the MLP's output it was trained to keep
# the model's next-token distribution (a KL term, as in end-to-end SAE training).

# %% [markdown]
# ## 3 · Max-activating examples
#
# The first thing anyone does with a latent is to look at where it fires most. Over the whole
# held-out corpus this takes one forward pass per batch, up to the transcoder's layer. Three small
# functions do the work.
#
# ### Exercise: `get_k_largest_indices`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 10 minutes
#
# Given activations `x` of shape `(batch, seq)`, return the `(row, column)` coordinates of the `k`
# largest entries, largest first, as a `(k, 2)` long tensor. With `no_overlap=True`, skip an entry
# that lies within `buffer` positions of an already chosen entry **in the same row**, so that the
# examples we later show (windows of `buffer` tokens each side) do not repeat each other. If fewer
# than `k` entries qualify, return them all.
#
# A hand example: for `x = [[0, 5, 4, 0], [3, 0, 0, 1]]`, `k = 3`, `buffer = 1`, the order of the
# entries is 5 at (0, 1), 4 at (0, 2), 3 at (1, 0), 1 at (1, 3), ... The 4 is next to the 5, so it is
# skipped: the answer is `[[0, 1], [1, 0], [1, 3]]`. With `no_overlap=False` it is
# `[[0, 1], [0, 2], [1, 0]]`.
#
# `argsort(descending=True)` on the flattened tensor gives every entry in order; integer division
# and remainder by `seq` turn flat positions into rows and columns.

# %% [exercise]
def get_k_largest_indices(x: Tensor, k: int, buffer: int = 0, no_overlap: bool = True) -> Tensor:
    """(row, column) of the k largest entries of x (batch, seq), largest first: a (k, 2) long tensor.

    With no_overlap, an entry within `buffer` positions of an already chosen entry of the same row
    is skipped. Fewer than k rows come back if fewer entries qualify.
    """
    # BEGIN SOLUTION
    order = x.flatten().argsort(descending=True, stable=True)
    rows, cols = order // x.shape[1], order % x.shape[1]
    if not no_overlap:
        return torch.stack((rows, cols), dim=1)[:k]
    chosen = []
    while len(chosen) < k and len(rows) > 0:
        row, col = rows[0], cols[0]
        chosen.append(torch.stack((row, col)))
        near = (rows == row) & ((cols - col).abs() <= buffer)  # includes the chosen entry itself
        rows, cols = rows[~near], cols[~near]
    return torch.stack(chosen) if chosen else torch.empty((0, 2), dtype=torch.long, device=x.device)
    # END SOLUTION


# %% [hint]
# Rank every entry of `x`, across all rows, from largest to smallest, and remember where each one
# came from (its row and its column). Without `no_overlap` the first `k` of that ranking are the
# answer. With it, go down the ranking greedily: take the best entry that remains, then rule out
# every remaining entry of the same row that lies too close to it, and repeat until you have `k` or
# nothing is left.

# %% [hint]
# A flat index `i` of a `(batch, seq)` tensor sits at row `i // seq` and column `i % seq`. "Too
# close" means same row and `|col - chosen col| <= buffer`, which includes the chosen entry itself.
# When nothing qualifies, return an empty `(0, 2)` long tensor rather than failing.

# %% [check]
tests.test_get_k_largest_indices(get_k_largest_indices)

# %% [markdown]
# ### Exercise: `index_with_buffer`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 10 minutes
#
# Given `x` of shape `(batch, seq)` and `indices` of shape `(k, 2)`:
#
# - with `buffer=None`, return the `k` entries `x[row, col]`, shape `(k,)`;
# - with a `buffer`, return for each index a window of `2 * buffer + 1` consecutive entries of its
#   row, shape `(k, 2 * buffer + 1)`: centred on `col` where possible, and shifted inwards where
#   the window would run past the start or the end of the row (so every window has the same width).
#
# Do not modify `indices` (a sneaky way to do that is to unbind it and assign into the columns).
#
# Hand example: a row `[10, 11, 12, 13, 14, 15]` with `buffer = 1` gives `[11, 12, 13]` at column 2,
# `[10, 11, 12]` at column 0 (shifted right) and `[13, 14, 15]` at column 5 (shifted left).

# %% [exercise]
def index_with_buffer(x: Tensor, indices: Tensor, buffer: int | None = None) -> Tensor:
    """x[row, col] for each (row, col) of `indices` (k, 2): shape (k,), or with a buffer the windows
    x[row, start : start + 2 * buffer + 1] around col, kept inside the row: shape (k, 2 * buffer + 1)."""
    # BEGIN SOLUTION
    rows, cols = indices[:, 0], indices[:, 1]
    if buffer is None:
        return x[rows, cols]
    width = 2 * buffer + 1
    starts = (cols - buffer).clamp(0, x.shape[1] - width)  # a new tensor: `indices` is untouched
    offsets = torch.arange(width, device=x.device)
    return x[rows[:, None], starts[:, None] + offsets]
    # END SOLUTION


# %% [hint]
# Without a buffer this is one value per (row, column) pair, picked by indexing with the two
# columns of `indices`. With a buffer you want, for each pair, a window of `2 * buffer + 1`
# neighbouring columns of that row, centred on the column where possible. Build all windows at once
# from a start column per pair plus a range of offsets.

# %% [hint]
# Near the edges the window must shift, not shrink: clamp each start between 0 and `seq - width`.
# Broadcasting a column of starts (`starts[:, None]`) against `torch.arange(width)` gives a `(k,
# width)` grid of columns; the rows need the same `[:, None]` shape. Do not modify `indices` in
# place.

# %% [check]
tests.test_index_with_buffer(index_with_buffer)

# %% [markdown]
# `display_top_seqs` shows the examples as a table, the max-activating token highlighted. It
# takes a list of `(activation, string tokens of the window, position of the max token in the
# window)` tuples, the format of the next exercise's result.

# %% [module]
def display_top_seqs(data: list[tuple[float, list[str], int]], title: str = "Max activating examples") -> None:
    """Show (activation, window of string tokens, position of the max token) rows as a table."""
    display(HTMLWithText(top_seqs_html(data, title), f"{title}\n{top_seqs_text(data)}"))


# %% [markdown]
# ### Exercise: `fetch_max_activating_examples`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 15 minutes
#
# Return the `k` max-activating examples of latent `latent_idx` over `tokens` (the corpus, shape
# `(n_docs, seq)`), as a list of `(activation, str_tokens, seq_pos)` sorted by activation,
# largest first, where `str_tokens = model.to_str_tokens(window)` is the window of `2 * buffer + 1`
# tokens around the max-activating token and `seq_pos` is that token's position **in the window**
# (usually `buffer`, less or more at the edges of a document).
#
# - Go through `tokens` in batches of `batch_size` documents, with a `tqdm` progress bar.
# - Per batch, compute only what you need: `model.run_with_cache(batch, names_filter=...,
#   stop_at_layer=layer + 1)` stops after the transcoder's layer; then `transcoder.encode` and take
#   the latent's column.
# - BOS and padding are not examples of anything: set the activations there to zero
#   (`model.tokenizer.bos_token_id`, `model.tokenizer.pad_token_id`). Keep only positive activations.
# - Take each batch's top `k` (no overlap, with `buffer`), then the overall top `k`.
# - Drop padding tokens from the windows' string tokens (they only ever come after a document).
# - Use `hook_names(transcoder)` and `layer_of(transcoder)` from `utils.transcoders`.

# %% [exercise]
def fetch_max_activating_examples(
    model,
    transcoder,
    tokens: Tensor,
    latent_idx: int,
    k: int = 10,
    buffer: int = 10,
    batch_size: int = 100,
    display: bool = False,
) -> list[tuple[float, list[str], int]]:
    """The k max-activating examples of a transcoder latent over `tokens`, largest first."""
    # BEGIN SOLUTION
    hook = hook_names(transcoder)[0]
    layer = layer_of(transcoder)
    pad, bos = model.tokenizer.pad_token_id, model.tokenizer.bos_token_id
    pad_str = model.tokenizer.pad_token
    width = 2 * buffer + 1
    found = []
    for start in tqdm(range(0, len(tokens), batch_size), desc=f"latent {latent_idx}", leave=False):
        batch = tokens[start : start + batch_size]
        _, cache = model.run_with_cache(batch, names_filter=[hook], stop_at_layer=layer + 1)
        acts = transcoder.encode(cache[hook])[..., latent_idx]
        acts = acts * ((batch != pad) & (batch != bos))
        top = get_k_largest_indices(acts, k, buffer)
        values = index_with_buffer(acts, top)
        windows = index_with_buffer(batch, top, buffer)
        starts = (top[:, 1] - buffer).clamp(0, batch.shape[1] - width)
        for value, window, col, window_start in zip(values.tolist(), windows, top[:, 1].tolist(), starts.tolist()):
            if value > 0:
                str_toks = [t for t in model.to_str_tokens(window) if t != pad_str]
                found.append((value, str_toks, col - window_start))
    found = sorted(found, key=lambda example: example[0], reverse=True)[:k]
    if display:
        display_top_seqs(found)
    return found
    # END SOLUTION


# %% [hint]
# Go through `tokens` in batches. For each batch, compute the latent's activation at every position
# (run the model up to the transcoder's layer, read the transcoder's input, encode, keep one
# latent), ignore BOS and padding positions, and use your two helpers to get that batch's best
# positions, their activations and the token windows around them. Collect the positive candidates
# from all batches, then keep the overall `k` largest.

# %% [hint]
# Cache only the transcoder's input hook (`hook_names(transcoder)[0]`) and stop right after its
# layer. Zero the activations where the token is the pad or BOS id. Each example is `(activation,
# window as strings without padding, position of the max token inside the window)`; that position
# is the token's column minus the window's (clamped) start, not always `buffer`.

# %% [check]
tests.test_fetch_max_activating_examples(fetch_max_activating_examples, get_k_largest_indices, index_with_buffer)

# %% [markdown]
# Let's use it on a planted phenomenon. The sports documents of the course corpus (P4) use a
# family of "goal" words: *goal, goals, goalie, goalkeeper, goalpost, goalless*. The corpus labels
# those tokens `goal_family`; the latent of transcoder 1 whose firing best matches that label is
# our **goal latent**. Why layer 1: the extended embedding of section 4 describes the residual
# stream just after MLP 0, which is what transcoder 1 reads (plus layer-1 attention); transcoder 0
# *is* MLP 0, and later layers mix in more context.

# %%
def best_latent(concept: str, layers=(1, 2, 3)) -> tuple[int, int]:
    """(layer, latent) of the transcoder latent with the best F1 against `concept`, printed with its scores."""
    candidates = [(layer, *scores[layer].best_latent(concept)) for layer in layers]
    layer, latent, precision, recall, f1 = max(candidates, key=lambda c: c[-1])
    print(f"best latent for {concept!r}: transcoder {layer}, latent {latent} "
          f"(precision {precision:.2f}, recall {recall:.2f}, F1 {f1:.2f}; "
          f"base rate of the concept {float(base_rate[data.concept_index(concept)]):.3f})")
    own, *own_scores = scores[layer].best_concept(latent)
    print(f"the latent's own best concept: {own!r} (precision {own_scores[0]:.2f}, recall {own_scores[1]:.2f}, "
          f"F1 {own_scores[2]:.2f}; base rate {float(base_rate[data.concept_index(own)]):.3f})")
    return layer, latent


goal_layer, goal_latent = best_latent("goal_family", layers=(1,))
goal_tc = transcoders[goal_layer]
examples = fetch_max_activating_examples(model, goal_tc, data.tokens, goal_latent, k=10, buffer=8, display=True)

# %% [markdown]
# On the shipped course world the goal latent is **transcoder 1, latent {{397}}**, and as a detector
# of goal words it is loose: precision {{0.20}}, recall {{0.90}}, F1 {{0.33}}. It catches nearly every
# goal word, but four in five of the tokens it fires on are something else. (Chance for the
# precision is the base rate, {{0.004}}: goal words are that share of the real tokens.) Its own best
# match is broader, `sports` (precision {{0.58}} against a base rate of {{0.030}}), and the examples
# show why: it fires on the noun a sports sentence is about, " goal" ("Who scored the **goal**?") but
# also " trophy" ("The Town won the **trophy**") and " keeper" ("praised the **keeper**"). That is
# enough for the lesson below, because we now know which tokens it reads. (To see it in an offline
# dashboard: `utils.dashboard.display_dashboard(goal_tc, goal_latent)`.)
#
# ## 4 · Reading a latent from its weights
#
# Max-activating examples tell us *what* a latent responds to, but not *why*. A transcoder's
# weights tell us more, because both ends of a latent live in the residual stream:
#
# - the **logit lens** of a latent is its writing vector times the unembedding,
#   `W_dec[latent] @ W_U`: the tokens whose logits it pushes up or down directly;
# - its **de-embedding** is the embedding matrix times its reading vector, one score per token:
#   which tokens, sitting in the residual stream at the latent's position, make it fire;
# - its **pullback** onto an earlier transcoder is that transcoder's decoder times the reading
#   vector: which earlier latents make it fire.
#
# Here is the logit lens of the goal latent (we ignore the final LayerNorm, as usual):

# %% [module]
def show_top_logits(model, transcoder, latent_idx: int, k: int = 10) -> Tensor:
    """Print the tokens whose logits latent `latent_idx` boosts and suppresses most; return all (d_vocab,)."""
    logits = transcoder.W_dec[latent_idx] @ model.W_U
    show_top_tokens(model, logits, k)
    return logits


# %%
_ = show_top_logits(model, goal_tc, goal_latent)

# %% [markdown]
# ### Exercise: `show_top_deembeddings`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# The transcoder does not read the raw embedding: it reads `ln2.hook_normalized`, a standardised
# vector. So the naive de-embedding of a latent is
#
# $$\text{score}[t] = \text{standardise}(W_E)[t] \cdot W_{enc}[:, \text{latent}],$$
#
# where `standardise` (from `utils.transcoders`) centres each row and divides it by its
# root-mean-square, as LayerNorm does before its weight and bias. Return the `(d_vocab,)` scores,
# and print the table with `show_top_tokens(model, scores, k)` as `show_top_logits` does.

# %% [exercise]
def show_top_deembeddings(model, transcoder, latent_idx: int, k: int = 10) -> Tensor:
    """Print the top and bottom tokens of the naive de-embedding of a latent; return all (d_vocab,) scores."""
    # BEGIN SOLUTION
    scores = standardise(model.W_E) @ transcoder.W_enc[:, latent_idx]
    show_top_tokens(model, scores, k)
    return scores
    # END SOLUTION


# %% [hint]
# The naive de-embedding asks: if the latent read a token straight from the embedding, how much
# would each token activate it? Put every token's embedding in the form the transcoder actually
# reads (normalised, as the text describes), and score it against the latent's *reading* direction.
# That is one matrix-vector product over the whole vocabulary.

# %% [hint]
# The reading direction is the encoder column `transcoder.W_enc[:, latent_idx]`, not the decoder
# row, and the embedding goes through `standardise` first. Return the scores in token order, shape
# `(d_vocab,)`; `show_top_tokens` does the sorting for the printout.

# %% [check]
tests.test_show_top_deembeddings(show_top_deembeddings)

# %%
_ = show_top_deembeddings(model, goal_tc, goal_latent)

# %% [markdown]
# Expected output: sports words (" draw", " season", " twice", " keeper") mixed with two city names
# ('Spokane', 'Knoxville') and places (" Arena", " Theatre"). For this latent the plain de-embedding
# is not useless, but it misses " goal" and " trophy", the tokens of its top examples. Before judging
# it on one latent, here is why one should not expect the plain embedding to work at all.
#
# ### Why the plain embedding should mislead
#
# The course model has **tied embeddings**: `W_U = W_E.T` (check: `model.W_U` and `model.W_E.T` are
# the same numbers). Consider the *direct path*, the embedding of the current token read off
# straight by the unembedding: the logit of token `b` after token `a` is `W_E[a] · W_E[b]`. That
# score is **symmetric** (the bigram "a b" scores as well as "b a"), and for most tokens the best
# next token on the direct path is **the token itself**, since `W_E[a] · W_E[a] = |W_E[a]|²`.
# Language is neither symmetric nor self-repeating, so the model cannot use the raw embedding as
# its working representation of a token. MLP 0 does the rewriting: it reads each token, mixed with
# what layer-0 attention brought in from other positions (measured below), and writes a large
# correction into the residual stream. The representation that later layers
# really read is *embedding + MLP 0 output*: the **extended embedding**. Let's measure it:

# %%
W_E = model.W_E
direct = W_E @ W_E.T  # direct-path bigram logits: row = current token, column = next token
self_top_all = direct.argmax(-1) == torch.arange(len(W_E))
print(f"tokens whose top direct-path next token is themselves: {self_top_all.float().mean():.0%} of all {len(W_E)}")
mlp0_out = model.blocks[0].mlp(model.blocks[0].ln2(W_E[:, None]))[:, 0]
print(f"mean norm of W_E rows: {W_E.norm(dim=-1).mean():.2f}; "
      f"of MLP 0's output on them: {mlp0_out.norm(dim=-1).mean():.2f}")
in_corpus = torch.bincount(data.tokens[data.mask], minlength=len(W_E)) > 0
print(f"the same among the {int(in_corpus.sum())} tokens that occur in the held-out corpus: {self_top_all[in_corpus].float().mean():.0%}")
cos = torch.nn.functional.cosine_similarity(W_E, W_E + mlp0_out, dim=-1)
# Control: the cosine between a token's embedding and ANOTHER token's extended embedding (20 shuffles)
shuffled = torch.stack([torch.nn.functional.cosine_similarity(W_E, (W_E + mlp0_out)[torch.randperm(len(W_E), generator=g)], dim=-1).median()
                        for g in [torch.Generator().manual_seed(seed) for seed in range(20)]])
print(f"cosine between a token's embedding and its extended embedding: median {cos.median():.2f}; "
      f"with another token's (20 shuffles): median {shuffled.median():.2f}, range {shuffled.min():.2f} to {shuffled.max():.2f}")

# What MLP 0 reads besides its own token: where layer-0 attention looks, on 100 corpus documents.
_, attn_cache = model.run_with_cache(data.tokens[:100], names_filter="blocks.0.attn.hook_pattern")
pattern, real = attn_cache["blocks.0.attn.hook_pattern"], data.mask[:100]  # (doc, head, dest, src)
for head in range(model.cfg.n_heads):
    p = pattern[:, head]
    print(f"layer-0 head {head}: attention to the token itself {p.diagonal(dim1=-2, dim2=-1)[real].mean():.2f}, "
          f"to BOS {p[..., 0][real].mean():.2f}, to the previous token {p.diagonal(-1, dim1=-2, dim2=-1)[real[:, 1:]].mean():.2f}")
# Chance: a head that spread its attention evenly over the d + 1 positions that position d can see
uniform = (1 / (torch.arange(real.shape[1]) + 1.0)).expand(real.shape)[real].mean()
print(f"even attention would give each visible position {uniform:.2f} on average")

# %% [markdown]
# On the course model (expected output): for {{74%}} of all tokens the direct path's favourite next
# token is the token itself, and for {{96%}} of the {{1336}} tokens that occur in the held-out corpus.
# The rows of `W_E` have norm
# {{1.47}} on average, while MLP 0 writes vectors of norm {{28.66}} on top of them. The median cosine
# between a token's embedding and its extended embedding is {{-0.03}}; pairing each embedding with a
# *random other* token's extended embedding gives the same (median {{-0.02}} over 20 shuffles, range
# {{-0.03}} to {{-0.02}}). So after layer 0 the residual stream keeps no more of a token's own `W_E`
# direction than of any other token's: the embedding is a small key that MLP 0 turns into a much
# larger representation pointing elsewhere. A de-embedding through `W_E` asks which tokens' *keys*
# align with the latent's reading vector, a question the model never asks.
#
# Layer-0 attention, though, does not keep each position to itself: the heads put {{0.09}}–{{0.20}}
# of their attention on the token itself, {{0.02}}–{{0.03}} on BOS and {{0.18}}–{{0.33}} on the
# previous token, where attention spread evenly would give each visible position {{0.05}}. So MLP 0
# reads a blend of the token and its neighbours, the previous token above all. The extended embedding
# below ignores attention: it is what MLP 0 would make of the token read *alone*, an approximation
# that suits latents driven by their own token and misleads for latents driven by context.
#
# ### Exercise: `create_extended_embedding`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# Build the extended embedding, one row per token, shape `(d_vocab, d_model)`:
#
# 1. take `W_E`;
# 2. put each row through layer 0's `ln2` and then layer 0's MLP (use the modules:
#    `model.blocks[0].ln2` and `model.blocks[0].mlp`; they expect a `(batch, pos, d_model)` input,
#    so make `W_E` `(d_vocab, 1, d_model)`);
# 3. add `W_E` back: the MLP's output is added to the residual stream, it does not replace it;
# 4. `standardise` the result, because that is the form in which later transcoders read it.
#
# This ignores the positional embedding and layer-0 attention; most of the lesson is in MLP 0.
# (Either standard-deviation convention passes the check: `standardise`'s root-mean-square, or
# `(x - mean) / x.std()`.)

# %% [exercise]
def create_extended_embedding(model) -> Tensor:
    """standardise(W_E + MLP0(ln2_0(W_E))): the token representation later layers read, (d_vocab, d_model)."""
    # BEGIN SOLUTION
    W_E = model.W_E[:, None, :]  # (d_vocab, 1, d_model): every token is its own one-token sequence
    mlp_out = model.blocks[0].mlp(model.blocks[0].ln2(W_E))
    return standardise((W_E + mlp_out)[:, 0, :])
    # END SOLUTION


# %% [hint]
# Later layers never see the raw embedding: block 0's MLP has already added its output to it. So
# treat every token as a one-token prompt, compute what block 0's MLP adds for it (after its
# LayerNorm), add that to the token's embedding, and normalise the sum as in the naive
# de-embedding.

# %% [hint]
# The MLP and its `ln2` expect a sequence dimension: give `model.W_E` one of length 1 (`[:, None,
# :]`), and drop it again before `standardise`. The `ln2` goes before the MLP, and the embedding is
# added after it.

# %% [check]
tests.test_create_extended_embedding(create_extended_embedding)

# %% [markdown]
# ### Exercise: `show_top_deembeddings_extended`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# The same as `show_top_deembeddings`, with the extended embedding in place of `standardise(W_E)`.

# %% [exercise]
def show_top_deembeddings_extended(model, transcoder, latent_idx: int, k: int = 10) -> Tensor:
    """Print the top and bottom tokens of the extended de-embedding of a latent; return all (d_vocab,) scores."""
    # BEGIN SOLUTION
    scores = create_extended_embedding(model) @ transcoder.W_enc[:, latent_idx]
    show_top_tokens(model, scores, k)
    return scores
    # END SOLUTION


# %% [hint]
# The same as `show_top_deembeddings`, with the extended embedding in place of the standardised raw
# embedding: every token's representation after block 0, scored against the latent's reading
# direction.

# %% [hint]
# Call `create_extended_embedding(model)` and do not standardise again (it is already
# standardised). Check `create_extended_embedding` first: this exercise inherits its mistakes.

# %% [check]
tests.test_show_top_deembeddings_extended(show_top_deembeddings_extended, create_extended_embedding)

# %%
goal_scores = show_top_deembeddings_extended(model, goal_tc, goal_latent)

# %% [markdown]
# Expected output: " trophy", one of the tokens of the top examples, fifth ({{+1.752}}) and " dived"
# seventh, but also " Hard", " Soft", " Box" and disaster words (" injured", " evacuated", " rescued"),
# and no goal word in the top 10. For this latent, by eye, the extended de-embedding is no clearer
# than the plain one.
#
# One latent is an anecdote. To compare the two de-embeddings fairly we need a ground truth per token
# and many latents. The ground truth: for every token seen at least 5 times in the held-out corpus,
# the latent's *mean activation* over the places where that token is the current one. A de-embedding
# that describes the latent well should rank the same tokens on top. We take the top 20 tokens of each
# de-embedding (among those tokens) and count how many are also among the latent's 20 tokens of
# highest mean activation, for every live latent of transcoder 1. A random ranking would share
# 20/(number of tokens) of them on average: the chance level.

# %%
def top_overlap(scores_by_token: Tensor, truth: Tensor, n: int = 20) -> Tensor:
    """Per column: the share of the n top rows of scores_by_token that are among the n top rows of truth."""
    top_a, top_b = scores_by_token.topk(n, dim=0).indices, truth.topk(n, dim=0).indices  # (n, n_latents)
    return (top_a[:, None, :] == top_b[None, :, :]).any(1).float().mean(0)


goal_hook = hook_names(goal_tc)[0]
_, layer1_cache = model.run_with_cache(data.tokens, names_filter=[goal_hook], stop_at_layer=goal_layer + 1)
layer1_acts = goal_tc.encode(layer1_cache[goal_hook])  # (n_docs, seq, d_sae): every latent of transcoder 1
real_tokens = data.tokens[data.mask]
counts = torch.bincount(real_tokens, minlength=model.cfg.d_vocab)
seen = counts >= 5
mean_act = torch.zeros(model.cfg.d_vocab, goal_tc.cfg.d_sae).index_add_(0, real_tokens, layer1_acts[data.mask])
mean_act = mean_act[seen] / counts[seen, None]  # (tokens seen >= 5 times, d_sae)
live = density[goal_layer] > 0
overlap = {  # (d_sae,) each
    "plain": top_overlap(standardise(model.W_E)[seen] @ goal_tc.W_enc, mean_act),
    "extended": top_overlap(create_extended_embedding(model)[seen] @ goal_tc.W_enc, mean_act),
}
print(f"{int(seen.sum())} tokens seen at least 5 times; {int(live.sum())} live latents; "
      f"chance overlap {20 / int(seen.sum()):.3f}")
for name, o in overlap.items():
    q = o[live].quantile(torch.tensor([0.1, 0.5, 0.9])).tolist()
    print(f"{name:>8} de-embedding: top-20 overlap with the mean activation, 10th/50th/90th percentile "
          f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}; goal latent {float(o[goal_latent]):.2f}")
more, less = (overlap["extended"] > overlap["plain"])[live], (overlap["extended"] < overlap["plain"])[live]
print(f"live latents where the extended de-embedding overlaps more: {more.float().mean():.0%}, less: {less.float().mean():.0%}")


# A second measure, over all the tokens instead of the top 20: the rank correlation (Spearman) per latent.
def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    ranks_a, ranks_b = a.argsort(0).argsort(0).float(), b.argsort(0).argsort(0).float()
    ranks_a, ranks_b = ranks_a - ranks_a.mean(0), ranks_b - ranks_b.mean(0)
    return (ranks_a * ranks_b).sum(0) / (ranks_a.norm(dim=0) * ranks_b.norm(dim=0))


spearman = {name: rank_correlation(embedding[seen] @ goal_tc.W_enc, mean_act)[live]
            for name, embedding in (("plain", standardise(model.W_E)), ("extended", create_extended_embedding(model)))}
for name, rho in spearman.items():
    print(f"{name:>8} de-embedding: rank correlation with the mean activation, median {rho.median():.2f}")
print(f"live latents where the extended one correlates better: {(spearman['extended'] > spearman['plain']).float().mean():.0%}")

# %% [markdown]
# Expected output: over the {{978}} live latents of transcoder 1, the top 20 tokens of the extended
# de-embedding share a median {{0.30}} of the latent's 20 tokens of highest mean activation (10th to
# 90th percentile {{0.10}} to {{0.55}}); the plain de-embedding's share a median {{0.05}} ({{0.00}} to
# {{0.10}}); a random ranking would share {{0.022}}. The extended de-embedding does better for {{91%}}
# of the latents and worse for {{3%}}. So the plain embedding misleads as a rule, and the goal latent
# ({{0.15}} plain, {{0.30}} extended) is one of the cases where it happens to look reasonable. Over all
# the tokens the picture is the same but faint: the rank correlation with the mean activation has a
# median of {{0.08}} for the extended de-embedding and {{0.01}} for the plain one, against 0 for a
# random ranking (the extended one is better for {{72%}} of latents). A latent is described by its top tokens, not by how it orders the hundreds it ignores,
# and even the extended de-embedding misses most of a typical latent's favourite tokens: it ignores
# context, which the mean activation includes.
#
# The values are large because the extended embedding is standardised (each row has
# root-mean-square 1, so norm √128 ≈ 11) while the transcoder's real inputs carry other things
# too; read the ranking, not the magnitude.
#
# ## 5 · Latent-to-latent: pullbacks and influence
#
# A later latent `j` (in transcoder `L`) computes its pre-activation from
# `ln2.hook_normalized = (x - mean(x)) / scale`, where `x` is the residual stream at its position
# and `scale` its root-mean-square. Anything added to `x` (an embedding, an attention head's
# output, an earlier latent's `activation × W_dec[i]`) contributes its dot product with the
# reading vector, divided by `scale`. Because of the centring, the reading vector is the encoder
# column *minus its mean*: `reading_vector(transcoder, j)` in `utils.transcoders`.
#
# - The **pullback** of `j` onto an earlier transcoder is `W_dec_early @ reading_vector`: for each
#   earlier latent, how much one unit of its activation would add to `j`'s pre-activation (before
#   dividing by the scale). It depends only on weights.
# - The **input-dependent influence** of an earlier latent on a given input is its activation there
#   times its pullback, divided by the scale at that position: the part of `j`'s pre-activation it
#   really contributed through the residual stream at the same position.
#
# ### Exercise: `pullback` and `direct_influence`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 15 minutes
#
# `pullback(early, later, latent_idx)` returns a `(d_sae_early,)` vector. `direct_influence(cache,
# early, later, latent_idx)` takes a cache from `run_with_cache_with_transcoder` (holding the early
# transcoder's activations and the later layer's `ln2.hook_scale`) and returns `(batch, pos,
# d_sae_early)`. Use the post-activation latents (`acts_name(early)`); the scale is
# `cache[f"blocks.{L}.ln2.hook_scale"]`, shape `(batch, pos, 1)`.

# %% [exercise]
def pullback(early, later, latent_idx: int) -> Tensor:
    """How much one unit of each earlier latent adds to later latent `latent_idx`'s pre-activation
    (times the LayerNorm scale): W_dec_early @ reading_vector(later, latent_idx), shape (d_sae_early,)."""
    # BEGIN SOLUTION
    return early.W_dec @ reading_vector(later, latent_idx)
    # END SOLUTION


def direct_influence(cache, early, later, latent_idx: int) -> Tensor:
    """Contribution of every earlier latent, through the residual stream at the same position, to later
    latent `latent_idx`'s pre-activation: activation × pullback / ln2 scale, shape (batch, pos, d_sae_early)."""
    # BEGIN SOLUTION
    acts = cache[acts_name(early)]  # (batch, pos, d_sae_early)
    scale = cache[f"blocks.{layer_of(later)}.ln2.hook_scale"]  # (batch, pos, 1)
    return acts * pullback(early, later, latent_idx) / scale
    # END SOLUTION


# %% [hint]
# The pullback answers: if an earlier latent's activation grew by one unit, how much would the
# later latent's pre-activation grow through the residual stream? That is what the earlier latent
# writes (its decoder row) read by the later latent (its reading vector), for every earlier latent
# at once. The direct influence then weights this by how active each earlier latent actually is at
# each position, and undoes the LayerNorm scaling that the later layer applies at that position.

# %% [hint]
# `reading_vector(later, latent_idx)` gives the reading vector, and `early.W_dec` holds one decoder
# row per earlier latent. The LayerNorm scale is `blocks.{layer_of(later)}.ln2.hook_scale` in the
# cache, shape `(batch, pos, 1)`: divide by it, broadcasting over latents.

# %% [check]
tests.test_pullback(pullback)

# %% [check]
tests.test_direct_influence(direct_influence, pullback)

# %% [markdown]
# Which earlier latents drive the goal latent where it fires hardest? We take the documents of its
# top examples, find the position of its maximum in each, and rank the earlier latents by their
# mean direct influence there. The de-embedding of the most influential one tells us what it reads.

# %%
def top_positions(layer: int, latent: int, n: int = 20) -> tuple[Tensor, Tensor]:
    """(documents, positions) of the n largest activations of a latent in the held-out corpus, one per document."""
    acts = tc_utils.latent_activations(model, transcoders[layer], data.tokens, latent) * data.mask
    docs = acts.max(-1).values.topk(n).indices
    return docs, acts[docs].argmax(-1)


def top_direct_influences(layer: int, latent: int, docs: Tensor, positions: Tensor, n: int = 8) -> list[tuple]:
    """The n (earlier layer, latent) pairs with the largest mean direct influence at (docs, positions)."""
    cache = run_with_cache_with_transcoder(model, [transcoders[l] for l in range(layer)], data.tokens[docs],
                                           names_filter=[f"blocks.{layer}.ln2.hook_scale"])
    rows = []
    for early_layer in range(layer):
        influence = direct_influence(cache, transcoders[early_layer], transcoders[layer], latent)
        mean = influence[torch.arange(len(docs)), positions].mean(0)  # (d_sae_early,)
        print(f"transcoder {early_layer}: total mean direct influence {float(mean.sum()):+.3f} "
              f"from {int((mean != 0).sum())} active latents")
        top = mean.topk(n)
        rows += [(early_layer, int(i), float(v)) for v, i in zip(top.values, top.indices)]
    return sorted(rows, key=lambda row: row[-1], reverse=True)[:n]


goal_docs, goal_pos = top_positions(goal_layer, goal_latent)
goal_influences = top_direct_influences(goal_layer, goal_latent, goal_docs, goal_pos)
for early_layer, early_latent, value in goal_influences[:5]:
    concept, precision, _, _ = scores[early_layer].best_concept(early_latent)
    print(f"transcoder {early_layer}, latent {early_latent}: mean direct influence {value:+.3f}; best concept {concept!r} "
          f"(precision {precision:.2f}, base rate {float(base_rate[data.concept_index(concept)]):.3f})")

# %%
def show_what_it_reads(layer: int, latent: int, k: int = 10) -> None:
    """De-embedding of a latent: extended for layers >= 1; plain for layer 0, which reads the residual
    stream before MLP 0 (its own MLP) has written anything."""
    kind = "Extended de-embedding" if layer > 0 else "De-embedding (plain: layer 0 reads before MLP 0)"
    print(f"{kind} of transcoder {layer}, latent {latent}:")
    if layer > 0:
        show_top_deembeddings_extended(model, transcoders[layer], latent, k)
    else:
        show_top_deembeddings(model, transcoders[layer], latent, k)


show_what_it_reads(*goal_influences[0][:2])

# %% [markdown]
# Expected output: transcoder 0 (the only one before layer 1) gives a total mean direct influence of
# {{+1.943}}, spread over {{120}} latents active at these positions, and two of them give nearly half of
# it: latents {{385}} ({{+0.455}}) and {{853}} ({{+0.422}}). Both match `sports` best, with precision
# {{0.43}} and {{0.51}} against the concept's base rate of {{0.030}}. Layer 0 reads the residual stream
# before MLP 0 has written anything, so for it the *plain* de-embedding is the right one, and latent
# 385's top ten are all sports words: " team", " goal", " goalless", " goals", " goalkeeper",
# " season", ... (Latent 853's plain de-embedding is less clear, " anything", " borrowed", " painted",
# so it probably draws on layer-0 attention, that is on context.) So nearly half of the goal latent's
# direct input comes from two layer-0 latents that match sports sentences.
#
# ### Influence through attention heads
#
# An earlier latent can also reach a later one *from another position*, through an attention head
# of a layer in between. Freeze the attention pattern and the LayerNorm scales at their values on
# this input; then the path is linear. Latent `i` of transcoder `E` at source position `s` writes
# `a_i(s) · W_dec[i]`. Head `h` of layer `H` (with `E < H ≤ L`) reads the source position through
# `ln1` (centre, divide by `scale₁(s)`, multiply by `ln1.w`), maps it with `W_V[H, h] @ W_O[H, h]`,
# and adds `pattern[d, s]` times the result at the destination `d`, where the later latent reads it
# (centre, divide by `scale₂(d)`, dot with the encoder column). All together:
#
# $$\text{influence}[s, i] = \text{pattern}[d, s]\; \frac{a_i(s)}{\text{scale}_1(s)\,\text{scale}_2(d)}\;
# W_{dec}[i] \cdot \text{centre}\big(w_{ln1} \odot W_V W_O\, r\big),$$
#
# with `r = reading_vector(later, j)`. The vector `centre(w_ln1 ⊙ (W_V @ (W_O @ r)))` is the later
# latent's reading vector *pulled back through the head*: what it reads at the source position.
#
# ### Exercise: `head_influence`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 20 minutes
#
# Return the `(seq, d_sae_early)` influences at destination `dest_pos` of document `batch_idx` of
# the cache. Cache names: `blocks.{H}.attn.hook_pattern` (batch, head, dest, src),
# `blocks.{H}.ln1.hook_scale`, `blocks.{L}.ln2.hook_scale` (both (batch, pos, 1)); weights
# `model.W_V[H, h]` (d_model, d_head), `model.W_O[H, h]` (d_head, d_model), `model.blocks[H].ln1.w`.

# %% [exercise]
def head_influence(model, cache, early, later, latent_idx: int, head_layer: int, head: int,
                   batch_idx: int, dest_pos: int) -> Tensor:
    """Influence of every earlier latent at every source position, through head (head_layer, head), on
    later latent `latent_idx` at (batch_idx, dest_pos): shape (seq, d_sae_early)."""
    # BEGIN SOLUTION
    later_layer = layer_of(later)
    through_head = model.W_V[head_layer, head] @ (model.W_O[head_layer, head] @ reading_vector(later, latent_idx))
    source_reading = model.blocks[head_layer].ln1.w * through_head
    per_latent = early.W_dec @ (source_reading - source_reading.mean())  # (d_sae_early,)
    pattern = cache[f"blocks.{head_layer}.attn.hook_pattern"][batch_idx, head, dest_pos]  # (seq,) over sources
    scale_src = cache[f"blocks.{head_layer}.ln1.hook_scale"][batch_idx, :, 0]  # (seq,)
    scale_dest = cache[f"blocks.{later_layer}.ln2.hook_scale"][batch_idx, dest_pos, 0]
    acts = cache[acts_name(early)][batch_idx]  # (seq, d_sae_early)
    return (pattern / scale_src)[:, None] * acts * per_latent / scale_dest
    # END SOLUTION


# %% [hint]
# Follow the later latent's reading vector backwards through one attention head: through the head's
# output matrix, then its value matrix, then the source LayerNorm's weight, centred because
# LayerNorm subtracts the mean. That gives how much one unit of each earlier latent at a source
# position adds, per unit of attention. Then weight each source position by how much `dest_pos`
# attends to it and by the earlier activations there, and undo the LayerNorm scales on both sides.

# %% [hint]
# The order is `W_V[l, h] @ (W_O[l, h] @ reading)`, then times `ln1.w`, minus its mean, then
# `early.W_dec @` it. Two scales: divide by the source positions' `ln1` scale (one per source) and
# by the later layer's `ln2` scale at `dest_pos` (one number). The pattern is indexed `[batch_idx,
# head, dest_pos]`, leaving one weight per source.

# %% [check]
tests.test_head_influence(head_influence)

# %% [markdown]
# ## 6 · Component attribution
#
# The same bookkeeping gives a coarse but **exact** picture of where a latent's input comes from.
# The residual stream at the latent's position, just before `ln2` of layer `L`, is a sum: token
# embedding + positional embedding + every attention head's output (`z @ W_O`) of layers `0..L` +
# their output biases `b_O` + the MLP outputs of layers `0..L-1`. Dotting each with the reading
# vector and dividing by `scale₂` splits the pre-activation, minus `b_enc`, exactly among them.
#
# ### Exercise: `component_attribution`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 15 minutes
#
# Return a `(n_layers + 1, n_heads + 1)` tensor for position `pos` of document `batch_idx`:
#
# | row | columns `0 … n_heads-1` | column `n_heads` |
# |---|---|---|
# | 0 | `[token embedding, positional embedding, sum of all b_O of layers 0..L, 0, …]` | 0 |
# | `l + 1` | heads of layer `l` (zeros for `l > L`) | MLP `l` (zero for `l ≥ L`) |
#
# Cache names: `hook_embed`, `hook_pos_embed`, `blocks.{l}.attn.hook_z` (batch, pos, head, d_head),
# `blocks.{l}.hook_mlp_out`, `blocks.{L}.ln2.hook_scale`. The check also verifies that your
# entries add up to `hook_sae_acts_pre - b_enc`.

# %% [exercise]
def component_attribution(model, cache, later, latent_idx: int, batch_idx: int, pos: int) -> Tensor:
    """Exact split of later latent `latent_idx`'s pre-activation (minus b_enc) at (batch_idx, pos) among the
    model's components: a (n_layers + 1, n_heads + 1) tensor laid out as in the table above."""
    # BEGIN SOLUTION
    L, n_heads = layer_of(later), model.cfg.n_heads
    read = reading_vector(later, latent_idx) / cache[f"blocks.{L}.ln2.hook_scale"][batch_idx, pos, 0]
    out = torch.zeros(model.cfg.n_layers + 1, n_heads + 1)
    out[0, 0] = cache["hook_embed"][batch_idx, pos] @ read
    out[0, 1] = cache["hook_pos_embed"][batch_idx, pos] @ read
    for layer in range(L + 1):
        z = cache[f"blocks.{layer}.attn.hook_z"][batch_idx, pos]  # (n_heads, d_head)
        head_out = einops.einsum(z, model.W_O[layer], "head d_head, head d_head d_model -> head d_model")
        out[layer + 1, :n_heads] = head_out @ read
        out[0, 2] += model.b_O[layer] @ read
        if layer < L:
            out[layer + 1, n_heads] = cache[f"blocks.{layer}.hook_mlp_out"][batch_idx, pos] @ read
    return out
    # END SOLUTION


# %% [hint]
# The residual stream at `pos` that the later layer's MLP reads is a sum of component outputs:
# token embedding, positional embedding, each head's output, the attention output biases, and the
# MLPs of the layers before. Since the latent's pre-activation (minus its bias) is linear in that
# stream once the LayerNorm scale is fixed, read each component's output with the latent's reading
# vector divided by that scale, and place it in the table's cell.

# %% [hint]
# A head's output is its `z` times its `W_O` (an einsum over `d_head`, per head). Include the later
# layer's own attention heads (they come before `ln2`) but not its MLP; the biases `b_O` of every
# layer up to and including it go together in one cell.

# %% [check]
tests.test_component_attribution(component_attribution)

# %% [markdown]
# `plot_attribution` averages the attributions over a set of positions and draws them as a heatmap
# labelled by component.

# %% [module]
def attribution_labels(n_layers: int, n_heads: int) -> list[list[str]]:
    """Names of the cells of a component_attribution tensor."""
    first = ["W_E", "W_pos", "b_O"] + [""] * (n_heads - 2)
    return [first] + [[f"L{l}H{h}" for h in range(n_heads)] + [f"MLP{l}"] for l in range(n_layers)]


def top_components(attribution: Tensor, n: int = 5) -> str:
    """The n largest attributions (by size) with their component names, as one line."""
    labels = [name for row in attribution_labels(attribution.shape[0] - 1, attribution.shape[1] - 1) for name in row]
    order = attribution.flatten().abs().argsort(descending=True)[:n].tolist()
    return ", ".join(f"{labels[i]} {float(attribution.flatten()[i]):+.2f}" for i in order)


def plot_attribution(attribution: Tensor, title: str):
    labels = attribution_labels(attribution.shape[0] - 1, attribution.shape[1] - 1)
    fig = px.imshow(attribution, color_continuous_scale="RdBu", color_continuous_midpoint=0.0,
                    labels={"color": "attribution"}, title=title, width=560, height=420)
    fig.update_traces(text=labels, texttemplate="%{text}<br>%{z:.2f}")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


# %%
def mean_attribution(layer: int, latent: int, docs: Tensor, positions: Tensor) -> Tensor:
    cache = run_with_cache_with_transcoder(model, [transcoders[layer]], data.tokens[docs])
    return torch.stack([component_attribution(model, cache, transcoders[layer], latent, i, int(p))
                        for i, p in enumerate(positions)]).mean(0)


goal_attribution = mean_attribution(goal_layer, goal_latent, goal_docs, goal_pos)
plot_attribution(goal_attribution, f"Goal latent {goal_layer}.{goal_latent}: attribution at its top 20 examples").show()
print("largest components:", top_components(goal_attribution))
print(f"sum {float(goal_attribution.sum()):+.2f} = mean pre-activation minus b_enc; "
      f"MLP 0's share {float(goal_attribution[1, -1] / goal_attribution.sum()):.2f}")

# %% [markdown]
# Expected output: MLP 0 contributes {{+2.19}} of the total {{+2.24}}, a share of {{0.97}}; the heads
# and the embeddings add or remove a few hundredths each. A sceptic's question before reading anything
# into this: is MLP 0's share special to the goal latent,
# or is it what every latent of transcoder 1 looks like? The same attribution for 30 random live
# latents of transcoder 1 (those active in at least 20 documents), each at its top 20 positions (one per
# document), as for the goal latent:

# %%
layer1_max = (layer1_acts * data.mask[..., None]).amax(1)  # (n_docs, d_sae): each latent's max per document
eligible = ((layer1_max > 0).sum(0) >= 20).nonzero().flatten()
random_latents = eligible[torch.randperm(len(eligible), generator=torch.Generator().manual_seed(0))[:30]]
top_docs = layer1_max[:, random_latents].topk(20, dim=0).indices  # (20, 30): each latent's top documents
union = top_docs.unique()  # one forward pass for all of them, with only the hooks the attribution reads
cache = run_with_cache_with_transcoder(model, [goal_tc], data.tokens[union], names_filter=[
    "hook_embed", "hook_pos_embed", "blocks.0.attn.hook_z", "blocks.1.attn.hook_z", "blocks.0.hook_mlp_out",
    "blocks.1.ln2.hook_scale"])
row_of = {int(doc): row for row, doc in enumerate(union)}
mlp0_share, heads_share = [], []
for latent, docs in zip(random_latents.tolist(), top_docs.T):
    positions = (layer1_acts[docs, :, latent] * data.mask[docs]).argmax(-1)
    attribution = torch.stack([component_attribution(model, cache, goal_tc, latent, row_of[int(d)], int(p))
                               for d, p in zip(docs, positions)]).mean(0)
    mlp0_share.append(float(attribution[1, -1] / attribution.sum()))
    heads_share.append(float(attribution[1:, :-1].sum() / attribution.sum()))
for name, shares, goal_value in (("MLP 0", mlp0_share, goal_attribution[1, -1]),
                                 ("all heads", heads_share, goal_attribution[1:, :-1].sum())):
    q = torch.tensor(shares).quantile(torch.tensor([0.1, 0.5, 0.9])).tolist()
    goal_share = float(goal_value / goal_attribution.sum())
    print(f"{name}, share of the total, 30 random latents: 10th/50th/90th percentile {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}; "
          f"goal latent {goal_share:.2f}, above {sum(x < goal_share for x in shares)} of the 30")

# %% [markdown]
# Expected output: for random latents of transcoder 1, MLP 0's share has a median of {{0.89}} (10th to
# 90th percentile {{0.80}} to {{0.97}}) and all heads together {{0.10}} ({{0.04}} to {{0.22}}). So being fed
# mostly by MLP 0 is what layer-1 latents do; the goal latent is at the end of that range (MLP 0
# {{0.97}}, above {{27}} of the 30; heads {{0.03}}, above {{3}}), a latent read off its own token more
# than most. That fits section 4: later layers read each token as MLP 0 has rewritten it (the
# extended embedding, plus the context layer-0 attention mixed in), not the raw embedding.
#
# ## 7 · A blind case study
#
# Time to explain a latent **without looking at the text it fires on**. The rules, after the
# transcoders post that introduced the game:
#
# - You may use anything computed from weights: logit lens, de-embeddings, pullbacks.
# - You may use input-dependent influence, on inputs where the latent fires, but you must keep those
#   inputs as token ids: no decoding the documents, no max-activating examples, no dashboards.
# - At the end, write your hypothesis as a rule that says, for each token of a document, whether
#   the latent should fire. We then score it against the latent's real firing and reveal the planted
#   concept behind it.
#
# `pick_blind_latent` chooses the latent (a latent of layer 2 or 3 that matches one of the
# corpus's planted concepts) and tells you only its id.

# %%
blind_layer, blind_latent = tc_utils.pick_blind_latent(scores, layers=(2, 3))
blind_tc = transcoders[blind_layer]
print(f"Your latent: transcoder {blind_layer}, latent {blind_latent}")
blind_docs, blind_pos = top_positions(blind_layer, blind_latent)  # token ids only: do not decode them!

# %% [markdown]
# ### Your analysis
#
# Suggested plan: (1) logit lens and extended de-embedding; (2) the top direct influences from
# earlier transcoders at `blind_docs, blind_pos`, and *their* de-embeddings; (3) influence through
# attention heads, and the de-embeddings of the latents it comes from; (4) the component
# attribution heatmap. Then write `hypothesis` below.
#
# The rest of this section is our worked solution (in the solution notebook only). Try your own
# first.

# %% [solution]
# (1) Weights only: what does the latent write, and which tokens does it read directly?
print(f"Logit lens of {blind_layer}.{blind_latent}:")
_ = show_top_logits(model, blind_tc, blind_latent)
print(f"Extended de-embedding of {blind_layer}.{blind_latent}:")
_ = show_top_deembeddings_extended(model, blind_tc, blind_latent)
# What we saw on the shipped course world (latent 2.161):
# - logit lens: flat and mixed (the largest is +0.39 for 'enon', then " were", " last", " this"). The
#   latent does not exist to push one kind of next token.
# - extended de-embedding: numbers fill nine of the top ten (" 25", " 2", " 80", " 400", ...), then
#   " tickets", a counted noun. (Section 4 measured how far this ranking can be trusted: for a median
#   latent of transcoder 1, 6 of its top 20 tokens.)
# Guess: it fires on a number.

# %% [solution]
# (2) Direct influence from earlier transcoders at the latent's 20 top positions (ids only).
blind_influences = top_direct_influences(blind_layer, blind_latent, blind_docs, blind_pos)
for early_layer, early_latent, value in blind_influences[:4]:
    print(f"transcoder {early_layer}, latent {early_latent}: mean direct influence {value:+.3f}")
for early_layer, early_latent, _ in blind_influences[:2]:
    show_what_it_reads(early_layer, early_latent, k=8)
# What we saw: transcoder 0 gives almost all of it (total +2.47, against +0.06 from transcoder 1).
# The strongest are 0.883 (+0.53) and 0.95 (+0.34), then 0.1018 and 0.968. 0.883 reads nothing but
# numbers (" 15", " 250", " 80", ...): the number at the latent's own position. 0.95 reads the
# vocabulary of estimates and reports (" Some", " Officials", " thought", " expected", " budget",
# " say", " report"), yet it is active at the number's position, so what drives it there presumably
# came through layer-0 attention from earlier words of the sentence. Refined guess: a number, more so
# in a sentence that estimates or reports something.

# %% [solution]
# (3) Influence through attention heads: for every earlier transcoder and every head in between,
# the total influence (summed over source positions) at each top position, averaged.
cache = run_with_cache_with_transcoder(model, [transcoders[l] for l in range(blind_layer)], data.tokens[blind_docs])
rows = []
for early_layer in range(blind_layer):
    for head_layer in range(early_layer + 1, blind_layer + 1):
        for head in range(model.cfg.n_heads):
            total = sum(head_influence(model, cache, transcoders[early_layer], blind_tc, blind_latent, head_layer, head,
                                       i, int(p)).sum(0) for i, p in enumerate(blind_pos)) / len(blind_pos)
            top = total.topk(3)
            rows += [(float(v), early_layer, int(i), f"L{head_layer}H{head}") for v, i in zip(top.values, top.indices)]
rows.sort(reverse=True)
for value, early_layer, early_latent, head_name in rows[:6]:
    print(f"transcoder {early_layer}, latent {early_latent} via {head_name}: mean influence {value:+.3f}")
for _, early_layer, early_latent, _ in rows[:2]:
    show_what_it_reads(early_layer, early_latent, k=8)
# What we saw: through attention heads, single earlier latents matter little (at most +0.02,
# against +0.53 for the top direct path), mostly via L1H2 and L1H1, and the largest is 0.95 again,
# the estimate-vocabulary latent, now read from other positions. The context reaches the latent
# mostly before MLP 0 (layer-0 attention), which this table does not cover (there is no transcoder
# before layer 0).

# %% [solution]
# (4) Which components feed the latent at its top positions?
blind_attribution = mean_attribution(blind_layer, blind_latent, blind_docs, blind_pos)
plot_attribution(blind_attribution, f"Blind latent {blind_layer}.{blind_latent}: attribution at its top 20 examples").show()
print("largest components:", top_components(blind_attribution))
# What we saw: MLP0 (+2.62 of +2.56 in total) dominates; MLP1 adds +0.14 and every head is within
# 0.06 of zero. Section 6 found the same for random latents of layer 1 (we did not run that control
# for layer 2), so it says little about this latent beyond "it reads its token as MLP 0 rewrote it".
#
# Our hypothesis: the latent fires on a number. It is written below.

# %% [markdown]
# ### Exercise (open-ended, not graded): write your hypothesis
#
# `hypothesis(str_tokens)` gets one document as a list of string tokens and returns one boolean per
# token: should the latent fire there?

# %% [exercise]
def hypothesis(str_tokens: list[str]) -> list[bool]:
    """For each token of a document: does the blind latent fire here? One bool per token."""
    # BEGIN SOLUTION
    # Our reading of the evidence: the latent fires on a number.
    return [token.strip().isdigit() for token in str_tokens]
    # END SOLUTION


# %% [hint]
# Turn what you observed into a rule you could apply to any document: which tokens does the latent
# fire on, and does it need a particular context just before them? Prefer the simplest rule that
# explains the top examples and the de-embeddings; the reveal scores it against where the latent
# really fires.

# %% [hint]
# Return one bool per token, in order. Tokens often carry a leading space, so test `token.strip()`
# rather than the raw string.

# %% [markdown]
# ### The reveal
#
# Now you may look. First, how well does the hypothesis predict where the latent fires, on the
# held-out corpus? Then, which planted concept is the latent's best match, how does your
# hypothesis score against that concept's labels, and what are the latent's top examples?

# %%
result = tc_utils.score_hypothesis(hypothesis, model, blind_tc, blind_latent, data, scores[blind_layer])
examples = fetch_max_activating_examples(model, blind_tc, data.tokens, blind_latent, k=8, buffer=8, display=True)

# %% [markdown]
# What would a rule with no idea score? Chance: a rule that picks as many tokens as yours, at random.
# Its precision against the latent is about the latent's density, its recall the share of tokens it
# picks. Twenty such rules:

# %%
def random_rule_scores(rule, latent_fires: Tensor, labels: Tensor, draws: int = 20) -> None:
    """Precision against the latent and against the concept's labels of `draws` random rules that pick as many
    real tokens as `rule` does."""
    picked = sum(sum(map(bool, rule(model.to_str_tokens(doc[mask])))) for doc, mask in zip(data.tokens, data.mask))
    generator = torch.Generator().manual_seed(0)
    vs_latent, vs_concept = [], []
    for _ in range(draws):
        chosen = torch.zeros(len(latent_fires), dtype=torch.bool)
        chosen[torch.randperm(len(latent_fires), generator=generator)[:picked]] = True
        vs_latent.append(tc_utils.score_against(chosen, latent_fires)[0])
        vs_concept.append(tc_utils.score_against(chosen, labels)[0])
    for name, values in (("the latent", vs_latent), ("the concept's labels", vs_concept)):
        q = torch.tensor(values).quantile(torch.tensor([0.1, 0.5, 0.9])).tolist()
        print(f"random rules picking {picked} tokens, precision vs {name}: 10th/50th/90th percentile "
              f"{q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}")


blind_fires = tc_utils.latent_activations(model, blind_tc, data.tokens, blind_latent)[data.mask] > 0
blind_concept = scores[blind_layer].best_concept(blind_latent)[0]
blind_labels = data.labels[..., data.concept_index(blind_concept)][data.mask]
if result is not None:
    random_rule_scores(hypothesis, blind_fires, blind_labels)

# %% [markdown]
# Compare: which parts of your hypothesis held, which did not, and which evidence misled you? (Our
# own comparison is in the solution notebook.)

# %% [solution]
# What we got on the shipped course world (chance is the random rules above, about 0.02 precision):
# - against the latent's own firing, our rule has precision 0.64: most numbers fire it (a third do
#   not). But recall is only 0.17, and numbers carry only 0.24 of its total activation;
# - the top examples ("estimate that about **500** people were evacuated", "the profit near **2**
#   million dollars", "The room holds **25** chairs") are numbers, and they are its strongest
#   activations;
# - the best planted concept is `estimate` (every token of an estimate sentence), matched by the
#   latent with precision 0.37 and recall 0.38 (base rate 0.02). Our rule scores precision 0.28 and
#   recall 0.08 on its labels: many numbers are not in estimates ("The room holds 25 chairs").
# What we missed: a wide, fainter tail. Most tokens where it fires are not numbers but the words
# after one, to the end of the sentence (" people", " dollars", " million", " thousand", " billion"),
# and scattered words elsewhere (" home", " here", " say", " Officials"). The weights showed the peak; the
# label match comes from the tail. A broader rule, "a number and the rest of its sentence", scored
# below, trades precision for recall: against the latent precision 0.23, recall 0.41 and 0.52 of the
# activation; against the `estimate` labels precision 0.18, recall 0.33. We wrote it after seeing the
# reveal, so its scores are a description, not a test.
ENDINGS = (".", '."', "!", "?", '?"', '!"')


def broader_hypothesis(str_tokens: list[str]) -> list[bool]:
    fires, after_number = [], False
    for tok, is_number in zip(str_tokens, hypothesis(str_tokens)):
        after_number = after_number or is_number
        fires.append(after_number)
        if tok in ENDINGS:
            after_number = False
    return fires


_ = tc_utils.score_hypothesis(broader_hypothesis, model, blind_tc, blind_latent, data, scores[blind_layer])

# %% [markdown]
# ## Summary
#
# - A transcoder replaces an MLP by sparse latents whose reading and writing vectors both live in
#   the residual stream, so connections between latents are dot products of weights.
# - De-embeddings should go through the **extended** embedding in a tied-embedding model: MLP 0
#   rewrites every token before anything else reads it. Over all live latents of transcoder 1 its top
#   tokens agree with where a latent fires far more often than the plain embedding's (median top-20
#   overlap {{0.30}} against {{0.05}}, chance {{0.022}}), though it still misses what context adds.
# - Influence = activation × pullback ÷ LayerNorm scale; through a head, also × attention pattern,
#   with the reading vector pulled back through `W_O`, `W_V` and `ln1.w`. With frozen patterns and
#   scales the component attribution is exact.
# - Weights-based and input-dependent evidence can explain a latent's strongest firing without
#   looking at its examples (our blind rule: precision {{0.64}} against about {{0.022}} for random rules of
#   the same size), and the course world lets us score how well, including what the rule missed.
# - Every number needs its baseline: a concept's base rate for a precision, random latents for an
#   attribution share, random rules for a hypothesis, the MLP removed for a transcoder's loss.
