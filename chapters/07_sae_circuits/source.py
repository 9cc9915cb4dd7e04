# Source of chapter 07. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch07_sae_circuits.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 07 · SAE circuits in a small model
#
# When a character in the course world speaks, the quotation ends with one of four single tokens:
# `."`, `?"`, `!"` or `,"` (the last one when the speaker is named after the quote: `"I like it,"
# said Mary.`). Right before that token the model faces two decisions: end with a *closer* rather
# than a plain `.` (it must know it is inside a quotation), and pick *which* closer (it must know
# what kind of sentence is being quoted). This chapter follows those two decisions through the
# model with the SAEs trained on its MLP neurons (`mlp_post_2`, `mlp_post_3`), in the style of a
# study of SAE circuits in a 2-layer TinyStories model, and measures each step:
#
# 1. find the positions before each closer from the planted labels;
# 2. split the logit differences into the parts each head and MLP writes (**direct logit
#    attribution**, an exact identity), to find where each decision is made;
# 3. split MLP2's output into what its SAE's reconstruction writes and what its error writes, and
#    measure how much of the loss the SAE gives back when it replaces MLP2 (**loss recovered**, with
#    zero and mean ablation as baselines and bootstrap intervals);
# 4. ablate single latents, and a few together, against random latents of the same pool;
# 5. find candidate edges between MLP2 and MLP3 latents from their weights (**pairwise cosines**)
#    and test each one by ablation against random pairs;
# 6. ask whether latents combine as AND or OR gates, from single and pairwise ablations;
# 7. check how far the latents are from single neurons;
# 8. tell latents that follow one input token from latents that depend on the context;
# 9. in the **capstone**, put the two-stage story in numbers, scored against the planted labels.
#
# Everything runs offline on the course world (the README's "The course world"): its 4-layer
# model (d_model 128, 512 MLP neurons per layer, LayerNorm not folded into the weights) and its
# JumpReLU SAEs of 1,024 latents on each MLP's `hook_post`. Numbers and latent ids quoted in this
# text are those the solution notebook prints on the shipped course world (a test checks that each
# is still printed); if the world is retrained, trust the printed values over the text.
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by
# hints (collapsed) and a check cell that prints "✅ ... passed" or says what is wrong.

# %% [module]
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from utils.world import labelled_corpus, load_tokenizer

CLOSERS = ('."', '?"', '!"', ',"')  # the four tokens that close a quotation
PLAIN = (".", "?", "!", ",")  # the plain mark each closer carries
KINDS = ("period", "question", "exclamation", "comma")  # the world's names of the closers, in the same order


def closer_corpus(n_docs: int = 300):
    """The held-out documents among the first `n_docs` that contain a quotation closer, cut to the
    longest real length: a LabelledCorpus (tokens, concepts, labels, mask)."""
    data = labelled_corpus(n_docs)
    keep = data.labels[..., data.concept_index("quote_close")].any(-1)
    width = int(data.mask[keep].sum(-1).max())
    return type(data)(data.tokens[keep, :width], data.concepts, data.labels[keep, :width], data.mask[keep, :width])


def dla_constant(model, answer: Tensor, other: Tensor) -> Tensor:
    """What the unembedding adds to logit[answer] - logit[other] whatever the residual stream holds:
    ln_final's bias read by the difference of unembedding columns, plus the difference of b_U. (n,)"""
    if other.ndim == 1:
        other = other[:, None]
    diff = model.W_U[:, answer] - model.W_U[:, other].mean(-1)  # (d_model, n)
    return model.ln_final.b @ diff + model.b_U[answer] - model.b_U[other].mean(-1)


def mean_ci(x, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile of the bootstrap distribution of the mean)."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return float(x.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


# %%
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import display
from tqdm.auto import tqdm

import json

import tests  # this chapter's checks: chapters/07_sae_circuits/tests.py
from utils.world import ARTIFACTS, load_dictionary, load_model, load_tokenizer

torch.set_grad_enabled(False)  # nothing in this chapter needs gradients
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"  # plotly from its bundled JavaScript: works offline

model = load_model()
tokenizer = load_tokenizer()
vocab = tokenizer.get_vocab()
saes = {layer: load_dictionary(f"mlp_post_{layer}") for layer in (2, 3)}
for layer, sae in saes.items():
    print(f"mlp_post_{layer}: {sae.cfg.d_in} neurons -> {sae.cfg.d_sae} latents, reads {sae.cfg.metadata.hook_name}")
data = closer_corpus(300)
print(f"{len(data.tokens)} held-out documents with a quotation, {int(data.mask.sum())} tokens")

# %% [markdown]
# ## 1 · Where the closers are
#
# The data are the held-out documents of the course world (the first 300, of which {{62}} contain a
# quotation), with their planted labels: every closer token carries the label `quote_close` (and
# `quote_close:period`, `quote_close:question`, ...). The world's definitions, which also end in
# quotes, are written `"..." .` with a separate period, so no definition is labelled a closer.
#
# ### Exercise: `closer_positions`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# Given where the closers are, return the positions where the model *predicts* them: for each
# closer, its document, the position just before it, and the closer's token id.

# %% [exercise]
def closer_positions(is_closer: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The positions where the model predicts a closer.

    is_closer: (n_docs, n_ctx) bool, True on each closer token; tokens: (n_docs, n_ctx) ids.
    Returns (docs, pos, answer), three (n,) long tensors in document then position order: the
    document, the position *before* each closer (the model predicts the closer there), and the
    closer's token id. A closer at position 0 has no position before it and is left out."""
    # BEGIN SOLUTION
    docs, where = torch.nonzero(is_closer, as_tuple=True)
    keep = where > 0
    docs, where = docs[keep], where[keep]
    return docs, where - 1, tokens[docs, where]
    # END SOLUTION


# %% [hint]
# The labels sit on the closer itself, but the model's prediction of a token is made one position
# earlier, at the token before it. Find the (document, position) pairs where the label holds,
# then step one position back; the answer is the token at the labelled position.

# %% [hint]
# `torch.nonzero(is_closer, as_tuple=True)` gives the document and position indices in the order
# asked for. Drop the pairs at position 0 before subtracting 1, and read `tokens[docs, pos_of_closer]`,
# not the token at the earlier position.

# %% [check]
tests.test_closer_positions(closer_positions)

# %%
docs, pos, answer = closer_positions(data.labels[..., data.concept_index("quote_close")], data.tokens)
closer_ids = torch.tensor([vocab[c] for c in CLOSERS])
plain_ids = torch.tensor([vocab[c] for c in PLAIN])
kind = (answer[:, None] == closer_ids).int().argmax(-1)  # 0..3, the index in CLOSERS
plain = plain_ids[kind]  # the plain mark of each closer: '.' for '."'
logits, cache = model.run_with_cache(data.tokens)
at = logits[docs, pos]
top1 = at.argmax(-1)
counts = pd.DataFrame({"closer": CLOSERS, "n": [int((kind == k).sum()) for k in range(4)],
                       "top-1 right": [round(float((top1[kind == k] == closer_ids[k]).float().mean()), 2) for k in range(4)],
                       "top-1 is a closer": [round(float(torch.isin(top1[kind == k], closer_ids).float().mean()), 2)
                                             for k in range(4)]})
print(counts.to_string(index=False))
print(f"all {len(docs)} closers: top-1 right {float((top1 == answer).float().mean()):.2f}, "
      f"mean loss {float(-at.log_softmax(-1)[torch.arange(len(docs)), answer].mean()):.2f} nats")
test_rows = json.loads((ARTIFACTS / "bars_test.json").read_text())
print("the world's own test frames (new wordings, world report): " + ", ".join(
    f"{c} {test_rows[key]['value']:.2f} (n={test_rows[key]['n']})"
    for c, key in [('."', "p8_period"), ('?"', "p8_question"), ('!"', "p8_exclamation")]))

# %% [markdown]
# On these {{170}} closers the model is right {{0.86}} of the time: {{0.88}} for `."`, {{0.64}} for
# `?"` (the weak one), {{0.93}} for `!"` and {{0.92}} for `,"`. These documents use the sentence
# frames the model was trained on, with new content. On the world's held-out *test* frames, which
# word quotations in new ways, the same model gets `."` right {{0.99}} of the time but `?"` only
# {{0.51}} and `!"` {{0.04}}: which closer to use does not carry over to new wordings. Everything
# below is measured on the corpus documents, where the model does the task.
#
# ## 2 · Two decisions: a closer, and which closer
#
# A first look with the **logit lens**: apply the final LayerNorm and the unembedding to the
# residual stream after each layer and ask two questions at every closer position. Is the right
# closer's logit above its plain mark's (`."` above `.`)? Is the right closer the top one of the
# four closers?

# %%
lens = []
for layer in range(4):
    resid = cache[f"blocks.{layer}.hook_resid_post"][docs, pos]
    lg = model.unembed(model.ln_final(resid[:, None]))[:, 0]
    lens.append({"layer output": f"resid_post {layer}",
                 "closer above its plain mark": round(float((lg[torch.arange(len(docs)), answer] >
                                                             lg[torch.arange(len(docs)), plain]).float().mean()), 2),
                 "right closer top of the four": round(float((closer_ids[lg[:, closer_ids].argmax(-1)] == answer)
                                                             .float().mean()), 2)})
lens = pd.DataFrame(lens)
print(lens.to_string(index=False))
print(f"chance for 'right closer top of the four': always answering the commonest closer ('.\"') is right at "
      f"{float((kind == 0).float().mean()):.2f}")

# %% [markdown]
# The first decision builds up over layers 0 to 2: the closer beats its plain mark at {{0.34}},
# {{0.70}} and then {{0.95}} of the positions after layers 0, 1 and 2 (and {{0.91}} after layer 3).
# The second is mostly made in layer 3: the right closer is on top at {{0.82}} after layer 2 and
# {{0.97}} after layer 3. After layer 0 it is at {{0.52}}, no better than always answering the
# commonest closer ({{0.50}}).
#
# The logit lens shows where the answer becomes readable, not who writes it. The residual stream at
# the end is a sum: embeddings, every head's output, every MLP's output, the biases. The final
# LayerNorm is not linear, but with its scale frozen at the value it had in this forward pass it
# is: each part is centred, divided by that scale and multiplied by the LayerNorm's weight. So the
# logit difference splits exactly into one number per part (plus a constant from the LayerNorm's
# bias and `b_U`): that is **direct logit attribution** (DLA).
#
# ### Exercise: `component_dla`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 15 minutes
#
# Return each component's contribution to `logit[answer] − logit[other]`, with `other` either one
# token per position or several (then compare with their mean logit). The check also verifies the
# identity: your parts plus `dla_constant(...)` must give the model's own logit difference.

# %% [exercise]
def component_dla(components: Tensor, scale: Tensor, model, answer: Tensor, other: Tensor) -> Tensor:
    """Direct logit attribution of each component to logit[answer] - logit[other].

    components: (n_comp, n, d_model), the parts of the final residual stream at n positions (they
    sum to it); scale: (n, 1), ln_final's scale there; answer: (n,) token ids; other: (n,) token
    ids, or (n, k) for the mean logit of k tokens. Returns (n_comp, n)."""
    # BEGIN SOLUTION
    if other.ndim == 1:
        other = other[:, None]
    direction = model.ln_final.w[:, None] * (model.W_U[:, answer] - model.W_U[:, other].mean(-1))  # (d_model, n)
    centred = components - components.mean(-1, keepdim=True)  # ln_final subtracts the mean
    return ((centred / scale) * direction.T).sum(-1)
    # END SOLUTION


# %% [hint]
# ln_final is linear once its scale is frozen at the value it had in the forward pass: it subtracts
# each vector's mean, divides by the scale, multiplies by its weight and adds its bias. Push each
# component through those steps (all but the bias, which belongs to no component) and read it with
# the difference of the two unembedding columns.

# %% [hint]
# `direction = model.ln_final.w[:, None] * (model.W_U[:, answer] - model.W_U[:, other].mean(-1))` once
# `other` is made (n, k); centre with `components - components.mean(-1, keepdim=True)`, divide by
# `scale`, then sum the product with `direction.T` over d_model.

# %% [check]
tests.test_component_dla(component_dla)

# %%
all_parts, part_labels = cache.get_full_resid_decomposition(expand_neurons=False, return_labels=True)
parts = all_parts[:, docs, pos]  # (n_comp, n, d_model)
scale = cache["ln_final.hook_scale"][docs, pos]
others = torch.stack([closer_ids[closer_ids != a] for a in answer])  # the three other closers
dla_plain = component_dla(parts, scale, model, answer, plain)
dla_which = component_dla(parts, scale, model, answer, others)
diff = at[torch.arange(len(docs)), answer] - at[torch.arange(len(docs)), plain]
gap = (dla_plain.sum(0) + dla_constant(model, answer, plain) - diff).abs().max()
print(f"closer - plain mark: mean logit difference {float(diff.mean()):.2f}; parts + constant - logits, "
      f"largest gap {float(gap):.1e}")
# same-condition control: positions before a plain '.', '?' or '!' outside any quotation
in_quote = data.labels[..., data.concept_index("in_quote")]
nxt = torch.zeros_like(data.tokens)
nxt[:, :-1] = data.tokens[:, 1:]
plain_pos = torch.isin(nxt, plain_ids[:3]) & ~in_quote & data.mask
pdocs, ppos = torch.nonzero(plain_pos, as_tuple=True)
pmark = nxt[pdocs, ppos]
pclose = closer_ids[(pmark[:, None] == plain_ids).int().argmax(-1)]
pparts = all_parts[:, pdocs, ppos]
del all_parts
dla_control = component_dla(pparts, cache["ln_final.hook_scale"][pdocs, ppos], model, pclose, pmark)
dla_table = pd.DataFrame({"component": part_labels, "closer - plain (closers)": dla_plain.mean(1).numpy(),
                          "closer - plain (plain marks)": dla_control.mean(1).numpy(),
                          "right - other closers": dla_which.mean(1).numpy()}).round(2)
print(f"{len(pdocs)} plain-mark positions as control")
print(dla_table.reindex(dla_table["closer - plain (closers)"].abs().sort_values(ascending=False).index)
      .head(8).to_string(index=False))
fig = go.Figure([go.Bar(name=c, x=dla_table["component"], y=dla_table[c]) for c in dla_table.columns[1:]])
fig.update_layout(barmode="group", title="Direct logit attribution per component (mean over positions)",
                  yaxis_title="logit difference", height=380)
fig.show()

# %% [markdown]
# The parts add up to the model's logit difference to within {{1.3e-05}}. Of the mean difference of
# {{9.69}} between the closer and its plain mark, the largest parts are head L3H0 ({{3.10}}), MLP2
# ({{2.94}}) and MLP3 ({{2.08}}); for "right closer rather than the other three", MLP3 writes the
# most ({{3.12}}), then MLP2 ({{1.53}}).
#
# A large DLA at closers means little unless it is specific to them. The control is the same
# measurement at the {{425}} positions before a plain `.`, `?` or `!` outside any quotation, where
# the closer would be wrong: there MLP2 writes {{-0.34}} and MLP3 {{-8.17}}, pushing the plain
# mark, while L3H0 still pushes the closer ({{0.99}}). So MLP2 and MLP3 write "closer" only where a
# closer belongs, whereas L3H0's push is partly there whatever comes next. The two-stage story on
# this model is therefore "closer vs plain mark" in layers 0–2, with MLP2 as the largest MLP writer
# (and L3H0 adding to it in layer 3), and "which closer" in MLP3. The TinyStories study found its
# closer in a 2-layer model; here the decision comes later, which is why this chapter studies MLP2
# and MLP3, the layers where the world ships MLP-neuron SAEs that see both decisions being written.
#
# ## 3 · MLP2 and its SAE
#
# An SAE on MLP2's neurons writes `post ≈ Σ_i a_i W_dec[i] + b_dec`. Multiplying by `W_out`, the
# MLP's output splits exactly into three parts: what the reconstruction writes, what the SAE's
# error writes, and `b_out`. Their DLAs add up to MLP2's DLA, so we can say how much of MLP2's push
# towards the closer the SAE accounts for.
#
# ### Exercise: `mlp_parts`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes

# %% [exercise]
def mlp_parts(post: Tensor, sae, W_out: Tensor, b_out: Tensor) -> Tensor:
    """An MLP's output split into three parts that sum to it exactly.

    post: (..., d_mlp), the MLP's neuron activations (hook_post); sae: an SAE trained on them;
    W_out: (d_mlp, d_model); b_out: (d_model,). Returns (3, ..., d_model): what the SAE's
    reconstruction of `post` writes, what its error (post - reconstruction) writes, and b_out."""
    # BEGIN SOLUTION
    recon = sae.decode(sae.encode(post))
    bias = b_out.expand(*post.shape[:-1], b_out.shape[-1])
    return torch.stack([recon @ W_out, (post - recon) @ W_out, bias])
    # END SOLUTION


# %% [hint]
# The MLP's output is `post @ W_out + b_out`, and `post` is the SAE's reconstruction plus its error.
# Split `post` first, then send each piece through `W_out`; the bias belongs to neither piece.

# %% [hint]
# `recon = sae.decode(sae.encode(post))` (decode adds `b_dec`); the three parts are `recon @ W_out`,
# `(post - recon) @ W_out` and `b_out` broadcast to the same shape (`b_out.expand(...)`), stacked.

# %% [check]
tests.test_mlp_parts(mlp_parts)

# %%
mlp = model.blocks[2].mlp
split = mlp_parts(cache["blocks.2.mlp.hook_post"][docs, pos], saes[2], mlp.W_out, mlp.b_out)
split_dla = component_dla(split, scale, model, answer, plain).mean(1)
mlp2_dla = dla_table.set_index("component").loc["2_mlp_out", "closer - plain (closers)"]
print(f"MLP2, closer - plain mark: {float(split_dla.sum()):.2f} = reconstruction {float(split_dla[0]):.2f} "
      f"+ error {float(split_dla[1]):.2f} + b_out {float(split_dla[2]):.2f}")
per_closer = component_dla(split, scale, model, answer, plain)  # (3, n)
share = float(split_dla[0] / split_dla.sum())
rng = np.random.default_rng(0)
idx = torch.from_numpy(rng.integers(0, len(docs), (1000, len(docs))))
boot = per_closer[0][idx].mean(1) / per_closer.sum(0)[idx].mean(1)
print(f"share carried by the reconstruction {share:.2f} (95% CI {np.percentile(boot.numpy(), 2.5):.2f}-"
      f"{np.percentile(boot.numpy(), 97.5):.2f}, bootstrap over closers)")

# %% [markdown]
# MLP2's push towards the closer, {{2.94}}, is {{2.28}} from the SAE's reconstruction, {{0.69}}
# from its error and {{-0.03}} from `b_out`: the reconstruction carries {{0.78}} of it (95%
# interval {{0.75-0.80}} over closers): a fifth of MLP2's push goes through what its SAE misses.
#
# A direct effect is not the whole effect: MLP2's output also feeds layer 3. The standard test of
# an SAE inside a model is to **splice** it in (replace the MLP's neurons by the SAE's reconstruction
# everywhere) and measure the loss, here at the closers. Alone that number says little; it is read
# against what removing the MLP costs. With `L` the mean loss, **loss recovered** is
# `(L_ablated − L_spliced) / (L_ablated − L_clean)`: 1 means the SAE loses nothing, 0 means it is
# as bad as having no MLP2 at all. Two baselines are common, and they differ: zero ablation
# (MLP2's output set to 0, which also removes its mean, a large change) and mean ablation (its
# output replaced by its mean over the corpus, the gentler baseline).
#
# ### Exercise: `loss_recovered`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# Return the point estimate and a 95% bootstrap interval over positions.

# %% [exercise]
def loss_recovered(clean: Tensor, ablated: Tensor, spliced: Tensor, n_boot: int = 1000,
                   seed: int = 0) -> tuple[float, float, float]:
    """The share of the loss an ablation costs that a splice gives back, with a 95% bootstrap interval.

    clean, ablated, spliced: (n,) per-position losses of the same positions under three conditions.
    Returns (recovered, low, high): recovered = (mean ablated - mean spliced) / (mean ablated -
    mean clean); low and high are the 2.5th and 97.5th percentiles of the same ratio over `n_boot`
    resamplings of the positions with replacement (numpy's default_rng(seed))."""
    # BEGIN SOLUTION
    def ratio(idx):
        a, s, c = ablated[idx].mean(-1), spliced[idx].mean(-1), clean[idx].mean(-1)
        return (a - s) / (a - c)

    rng = np.random.default_rng(seed)
    boots = ratio(torch.from_numpy(rng.integers(0, len(clean), (n_boot, len(clean)))))
    return (float(ratio(torch.arange(len(clean)))), float(np.percentile(boots.numpy(), 2.5)),
            float(np.percentile(boots.numpy(), 97.5)))
    # END SOLUTION


# %% [hint]
# The fraction compares mean losses, not per-position fractions (a position where the ablation
# costs almost nothing would blow up its own ratio). For the interval, resample which positions
# you use, with replacement, and recompute the whole ratio each time: the three conditions must be
# resampled together, because they are measured on the same positions.

# %% [hint]
# Draw one index matrix `rng.integers(0, n, (n_boot, n))` and index all three tensors with it;
# take the means over the last dimension, form the ratio per row, and `np.percentile(..., [2.5, 97.5])`.

# %% [check]
tests.test_loss_recovered(loss_recovered)

# %%
resid_pre2 = cache["blocks.2.hook_resid_pre"]  # every run below changes layers 2-3 only: start there


def closer_loss(hooks=()) -> Tensor:
    """Per-closer loss (nats) of the model run from layer 2 with `hooks` (unembedding only the closer positions)."""
    resid = model.run_with_hooks(resid_pre2, start_at_layer=2, stop_at_layer=4, fwd_hooks=list(hooks))
    out = model.unembed(model.ln_final(resid[docs, pos][:, None]))[:, 0]
    return -out.log_softmax(-1)[torch.arange(len(docs)), answer]


real = data.mask.clone()
mean_out = cache["blocks.2.hook_mlp_out"][real].mean(0)
clean_loss = closer_loss()
zero_loss = closer_loss([("blocks.2.hook_mlp_out", lambda act, hook: torch.zeros_like(act))])
mean_loss = closer_loss([("blocks.2.hook_mlp_out", lambda act, hook: mean_out.expand_as(act))])
splice_loss = closer_loss([("blocks.2.mlp.hook_post", lambda act, hook: saes[2].decode(saes[2].encode(act)))])
rows = []
for name, loss in [("clean", clean_loss), ("MLP2 zero-ablated", zero_loss), ("MLP2 mean-ablated", mean_loss),
                   ("MLP2 replaced by its SAE", splice_loss)]:
    m, lo, hi = mean_ci(loss)
    rows.append({"condition": name, "loss": round(m, 2), "95% CI": f"{lo:.2f}-{hi:.2f}"})
print(pd.DataFrame(rows).to_string(index=False))
for name, ablated in [("zero", zero_loss), ("mean", mean_loss)]:
    r, lo, hi = loss_recovered(clean_loss, ablated, splice_loss)
    print(f"loss recovered against {name} ablation: {r:.2f} (95% CI {lo:.2f}-{hi:.2f})")
# Control: instead of the SAE's error, an error of the same size (per position) in a random direction
post2 = cache["blocks.2.mlp.hook_post"]  # MLP2's input is the same in every run, so is its SAE's error
error_norm = (saes[2].decode(saes[2].encode(post2)) - post2).norm(dim=-1, keepdim=True)
noise_gen = torch.Generator().manual_seed(0)


def random_error(act, hook):
    noise = torch.randn(act.shape, generator=noise_gen)
    return act + noise / noise.norm(dim=-1, keepdim=True) * error_norm


random_recovered = []
for _ in tqdm(range(20), desc="random errors"):
    noisy = closer_loss([("blocks.2.mlp.hook_post", random_error)])
    random_recovered.append((float(zero_loss.mean()) - float(noisy.mean())) / float(zero_loss.mean() - clean_loss.mean()))
print("an error of the SAE's size in a random direction (20 draws), loss recovered against zero ablation, "
      "5th / 50th / 95th percentile: " + " / ".join(f"{q:.2f}" for q in np.percentile(random_recovered, [5, 50, 95])))
# Closers of one document are not independent: the same ratio, resampling whole documents
rng = np.random.default_rng(0)
by_doc = [torch.nonzero(docs == d)[:, 0] for d in docs.unique()]
for name, ablated in [("zero", zero_loss), ("mean", mean_loss)]:
    boots = []
    for _ in range(1000):
        idx = torch.cat([by_doc[i] for i in rng.integers(0, len(by_doc), len(by_doc))])
        a, sp, c = ablated[idx].mean(), splice_loss[idx].mean(), clean_loss[idx].mean()
        boots.append(float((a - sp) / (a - c)))
    print(f"  resampling the {len(by_doc)} documents instead: 95% CI {np.percentile(boots, 2.5):.2f}-"
          f"{np.percentile(boots, 97.5):.2f}")

# %% [markdown]
# **Headline.** At the {{170}} closers, the clean loss is {{1.03}} nats; zero-ablating MLP2 raises
# it to {{1.90}}, mean-ablating to {{1.65}}, and replacing MLP2 by its SAE to {{1.17}}. The SAE
# recovers {{0.84}} of the loss against zero ablation (95% interval {{0.67-0.94}}) and {{0.78}}
# against mean ablation ({{0.50-0.92}}). Closers of one document are not independent samples;
# resampling the {{62}} documents instead gives {{0.67-0.94}} and {{0.54-0.93}}. Is {{0.84}} good for
# an error of this size? The control adds, at every position, an error of the same norm as the
# SAE's but in a random direction: over 20 draws that recovers {{0.92 / 0.95 / 1.04}} (5th / 50th /
# 95th percentile) against zero ablation. The SAE's error costs more than a random error of its
# size: what the SAE leaves out is not noise, it matters to the closer more than its norm says.
# The interval is wide because the whole effect of MLP2 at a
# closer is under a nat, and the losses vary a lot between closers. For comparison, the TinyStories
# study reports 0.827 for its layer-1 MLP SAE, on another model; the point here is the method, and
# that the baseline must be named: the same splice reads as {{0.84}} or {{0.78}} depending on it.
#
# ## 4 · Ablating latents
#
# To ablate a latent while changing nothing else, remove its term `a_i W_dec[i]` from the neurons
# and keep the SAE's error (the part of `post` the SAE does not reconstruct). Replacing `post` by
# the reconstruction minus the latent would also delete the error, an effect of its own (section 3).
#
# ### Exercise: `ablate_latents`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes

# %% [exercise]
def ablate_latents(post: Tensor, sae, latents: Tensor, where: Tensor | None = None) -> Tensor:
    """`post` (..., d_mlp) with what the given latents write removed and the SAE's error kept.

    latents: (k,) latent ids; where: optional bool tensor of post.shape[:-1], the positions to
    ablate at (all positions when None). Returns a tensor of post's shape."""
    # BEGIN SOLUTION
    acts = sae.encode(post)[..., latents]  # (..., k)
    removed = acts @ sae.W_dec[latents]  # (..., d_mlp)
    if where is not None:
        removed = removed * where[..., None]
    return post - removed
    # END SOLUTION


# %% [hint]
# The SAE writes `post ≈ Σ_i a_i W_dec[i] + b_dec`, and what it misses is the error. Ablating latent
# i means taking its term `a_i W_dec[i]` out of `post` itself, not replacing `post` by a
# reconstruction: the error stays, so only the chosen latents change.

# %% [hint]
# `acts = sae.encode(post)[..., latents]`, then subtract `acts @ sae.W_dec[latents]`; multiply what
# you subtract by `where[..., None]` when a mask is given.

# %% [check]
tests.test_ablate_latents(ablate_latents)

# %% [markdown]
# Which latents to ablate? The TinyStories study took the latents active at a reasonable share of
# the positions of interest and ranked them by their mean activation *where active* (a latent that
# fires rarely but strongly ranks high; its mean over all positions would hide it).
#
# ### Exercise: `active_latents`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 5 minutes

# %% [exercise]
def active_latents(acts: Tensor, min_share: float = 0.05) -> tuple[Tensor, Tensor, Tensor]:
    """Latents active at a share of positions, ranked by their mean activation where active.

    acts: (n, d_sae) activations at n positions. Returns (ranked, share, mean_active): share (d_sae,)
    the fraction of positions where each latent is > 0; mean_active (d_sae,) its mean over those
    positions (0 if never active); ranked, the ids of the latents with share >= min_share, by
    mean_active from the largest down (ties: lower id first)."""
    # BEGIN SOLUTION
    on = acts > 0
    share = on.float().mean(0)
    mean_active = (acts * on).sum(0) / on.sum(0).clamp_min(1)
    candidates = torch.nonzero(share >= min_share)[:, 0]
    return candidates[mean_active[candidates].argsort(descending=True, stable=True)], share, mean_active
    # END SOLUTION


# %% [hint]
# Two statistics per latent: how often it is on, and how strongly when it is on. Keep the latents
# that are on often enough, then order them by the second statistic.

# %% [hint]
# `on = acts > 0`; the mean where active is `(acts * on).sum(0) / on.sum(0).clamp_min(1)`. Select
# with `torch.nonzero(share >= min_share)` and sort with `argsort(descending=True, stable=True)`.

# %% [check]
tests.test_active_latents(active_latents)

# %%
# MLP2 latents active before closers
acts2 = saes[2].encode(cache["blocks.2.mlp.hook_post"])
acts3 = saes[3].encode(cache["blocks.3.mlp.hook_post"])
at2 = acts2[docs, pos]
ranked, frac_active, mean_active = active_latents(at2)
candidates = torch.nonzero(frac_active >= 0.05)[:, 0]
print(f"{float((at2 > 0).sum(-1).float().mean()):.1f} MLP2 latents active per closer position; "
      f"{len(candidates)} active at >= 5% of them")


def at_positions(d: Tensor, p: Tensor, latents):
    """A hook on blocks.2.mlp.hook_post that ablates MLP2 latents at positions (d, p) only."""
    latents = torch.as_tensor(latents, dtype=torch.long)

    def hook(act, hook):
        act = act.clone()
        act[d, p] = ablate_latents(act[d, p], saes[2], latents)
        return act

    return hook


def latent_ablation_loss(latents) -> Tensor:
    """Per-closer loss with the given MLP2 latents ablated at the closer positions (error kept)."""
    return closer_loss([("blocks.2.mlp.hook_post", at_positions(docs, pos, latents))])


rows = []
for latent in tqdm(ranked[:5].tolist(), desc="single latents"):
    active = at2[:, latent] > 0
    m, lo, hi = mean_ci((latent_ablation_loss([latent]) - clean_loss)[active])
    rows.append({"latent": latent, "active at": round(float(active.float().mean()), 2),
                 "commonest closer there": CLOSERS[int(kind[active].mode().values)],
                 "clean loss there": round(float(clean_loss[active].mean()), 2),
                 "mean activation": round(float(mean_active[latent]), 2), "loss change": round(m, 3),
                 "95% CI": f"{lo:.3f} to {hi:.3f}"})
single_table = pd.DataFrame(rows)
print(single_table.to_string(index=False))
top3 = ranked[:3]
m, lo, hi = mean_ci(latent_ablation_loss(top3) - clean_loss)
print(f"top-3 {top3.tolist()} together: loss {float(clean_loss.mean()):.2f} -> {float(clean_loss.mean()) + m:.2f} "
      f"(change {m:.3f}, 95% CI {lo:.3f} to {hi:.3f})")
rng = np.random.default_rng(0)
random3 = [float((latent_ablation_loss(rng.choice(candidates.numpy(), 3, replace=False)) - clean_loss).mean())
           for _ in tqdm(range(20), desc="random triples")]
print("3 random latents of the same pool (20 draws), loss change 5th / 50th / 95th percentile: "
      + " / ".join(f"{q:.3f}" for q in np.percentile(random3, [5, 50, 95])))

# %% [markdown]
# On average {{26.0}} MLP2 latents are active at a closer position, and {{123}} are active at ≥ 5%
# of them. The cell above ranks those by their mean activation where active, as the TinyStories
# study does, ablates each at the closers where it is active, and reports the change in loss there
# with a bootstrap interval. Two of the top three, {{953}} and {{781}}, fire at few closers
# ({{0.08}} and {{0.11}}), and there the clean loss is already huge ({{10.97}} and {{7.93}} nats):
# they mark closers the model gets wrong, and ablating them *lowers* the loss ({{-0.361}} and
# {{-0.951}}). Ranking by activation found latents of the model's failures, not of its success. The
# frequent ones, {{406}} and {{517}} (active at {{0.84}} and {{0.85}} of the closers), matter
# little: {{0.058}} and {{0.025}} nats.
#
# Together, the top three change the loss by {{-0.086}} (95% interval {{-0.168 to -0.018}}).
# The control is three random latents of the same pool of {{123}}, ablated the same way: over 20
# draws they change it by {{-0.017 / 0.008 / 0.036}} (5th / 50th / 95th percentile). The top three
# fall outside that range, but on the side of *helping* the model when removed, because of the two
# failure latents. So no single MLP2 latent, and no three, is necessary for the closer: the
# computation is spread over many latents, and the SAE's error carries part of it (section 3).
#
# ## 5 · Pairwise cosines between MLP2 and MLP3 latents
#
# Can the weights alone suggest which MLP2 latent feeds which MLP3 latent? An MLP2 latent writes
# the direction `W_dec[i] @ W_out` (MLP2) into the residual stream; an MLP3 latent reads the
# direction `W_in @ W_enc[:, j]` (MLP3) from it. A large cosine between the two is a candidate edge.
# It ignores LayerNorm's centring and scale, GELU and the attention of layer 3, so it is only a
# candidate until an ablation confirms it. (This model's LayerNorms are not folded into the weights:
# below, ln2's weight of layer 3 is folded into `W_in` by hand before computing the cosines.)
#
# ### Exercise: `pairwise_cosines`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# Return the `(d_a, d_b)` matrix of cosines between every writer of the earlier dictionary and
# every reader of the later one.

# %% [exercise]
def pairwise_cosines(W_dec_a: Tensor, W_out_a: Tensor, W_in_b: Tensor, W_enc_b: Tensor) -> Tensor:
    """Cosine between what each latent of an earlier MLP's SAE writes to the residual stream and
    what each latent of a later MLP's SAE reads from it.

    W_dec_a: (d_a, d_mlp), W_out_a: (d_mlp, d_model) of the earlier layer; W_in_b: (d_model, d_mlp),
    W_enc_b: (d_mlp, d_b) of the later one. Returns (d_a, d_b)."""
    # BEGIN SOLUTION
    write = W_dec_a @ W_out_a  # (d_a, d_model)
    read = W_in_b @ W_enc_b  # (d_model, d_b)
    return (write / write.norm(dim=-1, keepdim=True)) @ (read / read.norm(dim=0, keepdim=True))
    # END SOLUTION


# %% [hint]
# A latent of MLP2's SAE writes to the residual stream only through MLP2's `W_out`; a latent of
# MLP3's SAE reads from it only through MLP3's `W_in`. Map both into the residual stream, then
# compare every writer with every reader. Both layers are different, so every pair counts: there
# is no "upper triangle".

# %% [hint]
# `write = W_dec_a @ W_out_a` is (d_a, d_model), one row per latent; `read = W_in_b @ W_enc_b` is
# (d_model, d_b), one column per latent. Normalise the rows of one and the columns of the other,
# then multiply.

# %% [check]
tests.test_pairwise_cosines(pairwise_cosines)

# %%
# Fold ln2's weight into W_in: MLP3 reads ln2(resid) = w * (centred, scaled resid) + b.
W_in3 = model.blocks[3].ln2.w[:, None] * model.blocks[3].mlp.W_in
cos = pairwise_cosines(saes[2].W_dec, model.blocks[2].mlp.W_out, W_in3, saes[3].W_enc)
top = cos.flatten().topk(10)
pairs = [(int(i) // cos.shape[1], int(i) % cos.shape[1], float(v)) for v, i in zip(top.values, top.indices)]
print(f"all {cos.numel():,} pairs: 99.9th percentile {np.percentile(cos.flatten().numpy(), 99.9):.2f}; "
      f"top 10: {pairs[-1][2]:.2f} to {pairs[0][2]:.2f}")


def edge_drop(a: int, b: int, n: int = 50) -> tuple[float, float, int]:
    """Ablate MLP2 latent a at its n strongest positions: (mean of MLP3 latent b there before,
    after, number of positions)."""
    flat = (acts2[..., a] * data.mask).flatten().topk(n)
    keep = flat.indices[flat.values > 0]
    d, p = keep // data.tokens.shape[1], keep % data.tokens.shape[1]
    used, row = d.unique(return_inverse=True)  # run only the documents involved, cut after the last position
    got = {}

    def grab(act, hook):
        got["b"] = saes[3].encode(act[row, p])[:, b]

    model.run_with_hooks(resid_pre2[used, : int(p.max()) + 1], start_at_layer=2, stop_at_layer=4, fwd_hooks=[
        ("blocks.2.mlp.hook_post", at_positions(row, p, [a])), ("blocks.3.mlp.hook_post", grab)])
    return float(acts3[d, p, b].mean()), float(got["b"].mean()), len(d)


rows = []
for a, b, c in tqdm(pairs, desc="top pairs"):
    before, after, n = edge_drop(a, b)
    rows.append({"MLP2 latent": a, "MLP3 latent": b, "cosine": round(c, 2), "positions": n,
                 "b before": round(before, 2), "b after": round(after, 2),
                 "drop": round(1 - after / before, 2) if before > 0 else float("nan")})
pair_table = pd.DataFrame(rows)
print(pair_table.to_string(index=False))

# %%
# Control: the same MLP2 latents, each paired with a random MLP3 latent that is active at >= 10 of
# its positions (20 draws), and the same for the strongest pair by the weights of a random MLP2 latent.
rng = np.random.default_rng(1)
control = []
for _ in tqdm(range(20), desc="random pairs"):
    a = int(rng.choice([p[0] for p in pairs]))
    strength = (acts2[..., a] * data.mask).flatten().topk(50)
    here = strength.indices[strength.values > 0]
    active_b = torch.nonzero(((acts3.flatten(0, 1)[here] > 0).sum(0)) >= 10)[:, 0]
    b = int(rng.choice(active_b.numpy()))
    before, after, n = edge_drop(a, b)
    control.append(1 - after / before)
print("random MLP3 latent active at the same positions, drop 5th / 50th / 95th percentile: "
      + " / ".join(f"{q:.2f}" for q in np.percentile(control, [5, 50, 95])))
valid = pair_table.dropna()
print(f"top pairs where b is active: {len(valid)} of {len(pair_table)}, drops {valid['drop'].min():.2f} to "
      f"{valid['drop'].max():.2f}, median {valid['drop'].median():.2f}")

# %% [markdown]
# The ten largest cosines ({{0.49}} to {{0.55}}) stand well above the bulk of the
# {{1,048,576}} pairs (99.9th percentile {{0.35}}). Each candidate is tested by ablating the MLP2
# latent at its 50 strongest positions (error kept) and reading the MLP3 latent there. The control
# keeps the same MLP2 latents but pairs each with a random MLP3 latent active at ≥ 10 of those
# positions: over 20 draws, that latent drops by {{-0.08 / -0.00 / 0.17}} (5th / 50th / 95th
# percentile). Of the ten candidates, two never see their MLP3 latent active where the MLP2 latent
# fires (the edge exists in the weights but is never used on this text), and of the other
# {{8}} the drops range from {{-0.00}} to {{0.66}} with median {{0.06}}: three exceed the control's
# 95th percentile ({{0.23}}, {{0.36}}, {{0.66}}), the rest do not. On this model a large cosine is
# a weak predictor of a causal edge; every edge must be checked by ablation, and most of the top
# ten fail.
#
# ## 6 · AND or OR? Single and pairwise ablations
#
# When two upstream latents both feed a target, how do they combine? Ablate each alone, then both.
# If their effects add, the pair's drop is the sum of the single drops. In an **AND** gate the
# target needs both, so either one alone already removes most of it and the pair does less than the
# sum; in an **OR** either one is enough, so each alone changes little and only the pair removes
# it (more than the sum).
#
# ### Exercise: `and_or_table`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes

# %% [exercise]
def and_or_table(base: Tensor, single: Tensor, pair: Tensor, tol: float = 0.1) -> pd.DataFrame:
    """Classify how pairs of upstream latents combine to drive a target latent.

    base: (n_pos,) the target's activation at n_pos positions; single: (k, n_pos) the target after
    ablating each of k upstream latents; pair: (k, k, n_pos) after ablating latents i and j together.
    A drop is 1 - (mean after) / (mean base). Returns one row per pair i < j with the columns
    i, j, drop_i, drop_j, drop_ij, interaction (= drop_ij - drop_i - drop_j) and kind: "AND" when
    interaction < -tol (either alone removes most of what both do), "OR" when interaction > tol
    (each can stand in for the other), else "additive"."""
    # BEGIN SOLUTION
    drop1 = 1 - single.mean(-1) / base.mean()
    drop2 = 1 - pair.mean(-1) / base.mean()
    rows = []
    for i in range(len(single)):
        for j in range(i + 1, len(single)):
            inter = float(drop2[i, j] - drop1[i] - drop1[j])
            kind = "AND" if inter < -tol else "OR" if inter > tol else "additive"
            rows.append({"i": i, "j": j, "drop_i": float(drop1[i]), "drop_j": float(drop1[j]),
                         "drop_ij": float(drop2[i, j]), "interaction": inter, "kind": kind})
    return pd.DataFrame(rows)
    # END SOLUTION


# %% [hint]
# Compare what the pair does with what its members do alone. If the two effects simply added, the
# pair's drop would be the sum of the single drops; an AND gate needs both inputs, so removing one
# already removes nearly everything (the pair does less than the sum); in an OR, either input keeps
# the target alive (the pair does more than the sum).

# %% [hint]
# Average over positions before dividing: `1 - single.mean(-1) / base.mean()`. Loop over
# `i < j` only, and compare the interaction with `-tol` and `tol`.

# %% [check]
tests.test_and_or_table(and_or_table)

# %%
# The target: the MLP3 latent with the largest mean activation at the closer positions.
at3 = acts3[docs, pos]
target = int(at3.mean(0).argmax())
on = at3[:, target] > 0
tdocs, tpos = docs[on], pos[on]
print(f"target: MLP3 latent {target}, active at {int(on.sum())} of {len(docs)} closer positions "
      f"(mean {float(at3[on, target].mean()):.2f} there)")
# Its inputs: the MLP2 latents with the largest activation x weight into it (residual path only).
write = saes[2].W_dec @ model.blocks[2].mlp.W_out
read = W_in3 @ saes[3].W_enc[:, target]
attribution = (acts2[tdocs, tpos] * (write @ read)).mean(0)
inputs = attribution.topk(4).indices
print("its top MLP2 inputs by activation x weight:", inputs.tolist())


# 24 of its positions, at most one per document, each document cut just after its position
rng = np.random.default_rng(2)
first = {}
for i in rng.permutation(len(tdocs)).tolist():
    first.setdefault(int(tdocs[i]), i)
chosen = torch.tensor(sorted(first.values())[:24])
order = tpos[chosen].argsort()
tdocs, tpos = tdocs[chosen][order], tpos[chosen][order]


def target_after(sets: list) -> Tensor:
    """(len(sets), n): the target at the chosen positions with each set of MLP2 latents ablated there
    (error kept): batched runs from layer 2, in two groups of similar lengths."""
    result = []
    for group in torch.arange(len(tdocs)).chunk(2):
        d, p = tdocs[group], tpos[group]
        rows = torch.arange(len(group))
        batch = resid_pre2[d, : int(p.max()) + 1].repeat(len(sets), 1, 1)
        got = {}

        def ablate(act, hook):
            act = act.view(len(sets), len(group), *act.shape[1:]).clone()
            for v, latents in enumerate(sets):
                if latents:
                    act[v, rows, p] = ablate_latents(act[v, rows, p], saes[2], torch.tensor(latents))
            return act.flatten(0, 1)

        def grab(act, hook):
            act = act.view(len(sets), len(group), *act.shape[1:])
            got["t"] = saes[3].encode(act[:, rows, p])[..., target]

        model.run_with_hooks(batch, start_at_layer=2, stop_at_layer=4,
                             fwd_hooks=[("blocks.2.mlp.hook_post", ablate), ("blocks.3.mlp.hook_post", grab)])
        result.append(got["t"])
    return torch.cat(result, 1)


k = len(inputs)
sets = [[]] + [[int(i)] for i in inputs] + [[int(inputs[i]), int(inputs[j])] for i in range(k) for j in range(i + 1, k)]
out = target_after(sets)
base, single = out[0], out[1:k + 1]
pair = torch.zeros(k, k, len(base))
for n, (i, j) in enumerate((i, j) for i in range(k) for j in range(i + 1, k)):
    pair[i, j] = pair[j, i] = out[k + 1 + n]
table = and_or_table(base, single, pair)
table["i"], table["j"] = inputs[table["i"]].numpy(), inputs[table["j"]].numpy()
print(table.round(2).to_string(index=False))
print(f"largest single drop {float(table[['drop_i', 'drop_j']].max().max()):.2f}")
# Control: 20 random pairs of MLP2 latents active at >= 25% of the target's positions
pool = torch.nonzero((acts2[tdocs, tpos] > 0).float().mean(0) >= 0.25)[:, 0].numpy()
rng = np.random.default_rng(2)
draws = [rng.choice(pool, 2, replace=False).tolist() for _ in range(20)]
pool_drop = dict(zip(pool.tolist(), (1 - target_after([[int(a)] for a in pool]).mean(-1) / base.mean()).tolist()))
pair_drop = 1 - target_after(draws).mean(-1) / base.mean()
random_inter = np.array([float(pair_drop[n]) - pool_drop[a] - pool_drop[b] for n, (a, b) in enumerate(draws)])
print(f"{len(pool)} MLP2 latents in the pool; random pairs (20 draws), interaction 5th / 50th / 95th percentile: "
      + " / ".join(f"{q:.2f}" for q in np.percentile(random_inter, [5, 50, 95])))

# %% [markdown]
# The target is MLP3 latent {{765}}, the one with the largest mean activation at the closers (active
# at {{158}} of the {{170}}). Its four strongest MLP2 inputs by activation × weight are
# {{406}}, {{517}}, {{236}} and {{725}}; at 24 of its positions, one per document, every single
# ablation lowers it by at most {{0.06}} of its activation, and every pair combines additively
# (interactions within ±0.02). Twenty random pairs of MLP2 latents active at ≥ 25% of those
# positions give interactions of {{-0.00 / 0.00 / 0.00}} (5th / 50th / 95th percentile). No single
# MLP2 latent is necessary for this MLP3 latent, and no pair forms an AND or an OR: like the loss in
# section 4, the target is fed by many small, additive contributions. Where a planted mechanism
# used a true conjunction, this table would show it; here the honest result is that it does not.
#
# ## 7 · Neuron basis
#
# Are these latents just single neurons in disguise? If so, an SAE would add little over reading
# the neurons. Count, for each latent, how many neurons hold 90% of the squared norm of its encoder
# column and of its decoder row.
#
# ### Exercise: `neurons_for_mass`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 5 minutes

# %% [exercise]
def neurons_for_mass(W: Tensor, share: float = 0.9) -> Tensor:
    """For each row of W (n, d_mlp), the smallest number of neurons whose squared weights hold at
    least `share` of the row's squared norm. Returns (n,) long."""
    # BEGIN SOLUTION
    sq = W.pow(2).sort(-1, descending=True).values
    cum = sq.cumsum(-1) / sq.sum(-1, keepdim=True)
    return (cum < share - 1e-6).sum(-1) + 1
    # END SOLUTION


# %% [hint]
# Sort each row's squared weights from the largest down and accumulate them: the answer is how
# many you need before the running share reaches `share`.

# %% [hint]
# `sq = W.pow(2).sort(-1, descending=True).values`, `cum = sq.cumsum(-1) / sq.sum(-1, keepdim=True)`;
# the count is the number of entries with `cum < share`, plus one.

# %% [check]
tests.test_neurons_for_mass(neurons_for_mass)

# %%
rows = []
gen = torch.Generator().manual_seed(0)
for name, W in [("encoder (W_enc columns)", saes[2].W_enc.T), ("decoder (W_dec rows)", saes[2].W_dec),
                ("random unit vectors", torch.randn(1024, 512, generator=gen))]:
    n = neurons_for_mass(W)
    rows.append({"directions": name, "median": int(n.float().median()), "10th pct": int(n.float().quantile(0.1)),
                 "fewest": int(n.min()), "share with <= 10 neurons": round(float((n <= 10).float().mean()), 3)})
print(pd.DataFrame(rows).to_string(index=False))
fig = px.histogram(pd.DataFrame({"neurons for 90% of the norm": neurons_for_mass(saes[2].W_dec).numpy()}),
                   x="neurons for 90% of the norm", nbins=60, title="mlp_post_2 decoder directions", height=300)
fig.show()

# %% [markdown]
# The control is a random direction in the 512 neurons, which needs {{229}} neurons (median) to hold
# 90% of its squared norm. The SAE's decoder rows need {{160}} (median; the fewest {{32}}) and its
# encoder columns {{220}}: more concentrated than random directions, but none is close to a single
# neuron (no latent gets there with 10 neurons or fewer). The latents are directions spread over
# many neurons, so the neuron basis would not show them.
#
# ## 8 · Token-level and contextual latents
#
# Some latents fire on one input token wherever it appears (a *token-level* latent); others fire
# on many tokens, in a context (a *contextual* latent). A quick measure: take a latent's strong
# activations (at least half of its maximum on the corpus) and ask what share of them sit on its
# most common token.
#
# ### Exercise: `token_concentration`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 10 minutes

# %% [exercise]
def token_concentration(acts: Tensor, tokens: Tensor, mask: Tensor, share: float = 0.5) -> tuple[Tensor, Tensor]:
    """Per latent, the token its strong activations sit on most, and what share of them sit on it.

    acts: (n_docs, n_ctx, d_sae); tokens: (n_docs, n_ctx) ids; mask: (n_docs, n_ctx) bool, the real
    tokens (the only ones to count). A strong activation is > 0 and >= share x the latent's largest
    activation on the real tokens. Returns (top_token, concentration), both (d_sae,): ties go to the
    lowest token id; a latent that never fires gets top_token -1 and concentration 0."""
    # BEGIN SOLUTION
    a, t = acts[mask], tokens[mask]  # (N, d), (N,)
    strong = (a > 0) & (a >= share * a.max(0).values)
    lat, pos = torch.nonzero(strong.T, as_tuple=True)
    counts = torch.zeros(a.shape[1], int(tokens.max()) + 1).index_put_((lat, t[pos]), torch.ones(len(lat)),
                                                                        accumulate=True)
    best, top = counts.max(1)
    total = counts.sum(1)
    alive = total > 0
    return torch.where(alive, top, -1), torch.where(alive, best / total.clamp_min(1), 0.0)
    # END SOLUTION


# %% [hint]
# Work on the real tokens only (index with the mask), find each latent's own threshold from its
# own maximum, then count, for each latent, how many of its strong activations fall on each token:
# the top token is the one with the largest count, the concentration that count over the total.

# %% [hint]
# `a, t = acts[mask], tokens[mask]`; `strong = (a > 0) & (a >= share * a.max(0).values)`. A
# (d_sae, vocab) table of counts fills in one call: `torch.zeros(...).index_put_((latent_ids,
# token_ids), ones, accumulate=True)` with the pairs from `torch.nonzero(strong.T, as_tuple=True)`.

# %% [check]
tests.test_token_concentration(token_concentration)

# %%
gen = torch.Generator().manual_seed(0)
shuffled = data.tokens.clone()
shuffled[data.mask] = data.tokens[data.mask][torch.randperm(int(data.mask.sum()), generator=gen)]
rows = []
for layer, acts in [(2, acts2), (3, acts3)]:
    top_tok, conc = token_concentration(acts, data.tokens, data.mask)
    _, conc_null = token_concentration(acts, shuffled, data.mask)
    alive = top_tok >= 0
    rows.append({"dictionary": f"mlp_post_{layer}", "live latents": int(alive.sum()),
                 "median concentration": round(float(conc[alive].median()), 2),
                 "share >= 0.9 (token-level)": round(float((conc[alive] >= 0.9).float().mean()), 2),
                 "share < 0.2 (contextual)": round(float((conc[alive] < 0.2).float().mean()), 2),
                 "median, tokens shuffled": round(float(conc_null[alive].median()), 2)})
    if layer == 3:
        conc3, top3_tok = conc, top_tok
print(pd.DataFrame(rows).to_string(index=False))
fig = px.histogram(pd.DataFrame({"concentration": conc3[conc3 > 0].numpy()}), x="concentration", nbins=40,
                   title="mlp_post_3: share of strong activations on the latent's top token", height=300)
fig.show()

# %% [markdown]
# The median live latent puts {{0.45}} (`mlp_post_2`) and {{0.40}} (`mlp_post_3`) of its strong
# activations on its top token. The control shuffles the tokens over the corpus's positions and
# keeps the activations: then the median is {{0.12}}, so the concentration measures something real.
# About one latent in six is token-level by this measure (≥ 0.9: {{0.16}} and {{0.14}}) and about
# as many are contextual (< 0.2: {{0.17}} and {{0.21}}). The measure reads only the strongest
# activations: a latent can be token-level at its peak and still carry context where it fires more
# weakly, as the capstone shows.
#
# ## 9 · Capstone
#
# Put the two-stage story in numbers. From the DLA: which MLP writes most of "closer rather than
# plain mark", and which most of "which closer"? From the labels: which MLP3 latents predict the
# closers? A latent that "fires before closers" must be judged where a closer could come, at the
# **end-of-sentence positions** (the next token is a closer or a plain `.`, `?` or `!`); over all
# positions, any latent that fires at sentence ends would look like a closer detector.
#
# ### Exercise: `capstone`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 20 minutes
#
# The check builds the corpus, the activations and the DLA itself, calls your function with them,
# and scores each latent you name by its F1 against the planted labels at end-of-sentence
# positions: each must reach 0.9 × the best F1 of any `mlp_post_3` latent.

# %% [module]
def next_token_labels(data, concept: str) -> Tensor:
    """(n_docs, n_ctx) bool: the planted `concept` holds on the *next* token (False at the last position)."""
    out = torch.zeros(data.tokens.shape, dtype=torch.bool)
    out[:, :-1] = data.labels[:, 1:, data.concept_index(concept)].bool()
    return out & data.mask


def f1_scores(fires: Tensor, truth: Tensor) -> Tensor:
    """F1 of each latent (columns of fires, (n, d) bool) as a detector of truth ((n,) bool): (d,)."""
    tp = fires.float().T @ truth.float()
    return 2 * tp / (fires.sum(0) + truth.sum()).clamp_min(1)


# %%
mlp_dla = torch.tensor([[dla_table.set_index("component").loc[f"{l}_mlp_out", column] for l in range(4)]
                        for column in ("closer - plain (closers)", "right - other closers")])
print("mean DLA of MLP0..MLP3, closer - plain: " + ", ".join(f"{v:.2f}" for v in mlp_dla[0])
      + "; right closer - other closers: " + ", ".join(f"{v:.2f}" for v in mlp_dla[1]))


# %% [exercise]
def capstone(data, acts3: Tensor, mlp_dla: Tensor) -> dict:
    """The two-stage story in numbers.

    data: the labelled corpus of this chapter; acts3: (n_docs, n_ctx, d_sae) activations of
    mlp_post_3 on it; mlp_dla: (2, 4), the mean DLA of MLP0..MLP3 at the closer positions, row 0 for
    closer - plain mark, row 1 for right closer - other closers.
    Returns {"closer_vs_plain": the MLP layer that writes most of row 0, "which_closer": the MLP layer
    that writes most of row 1, "closer": the mlp_post_3 latent that best tells, at end-of-sentence
    positions, a coming closer from a coming plain mark (F1), "period", "question", "exclamation":
    the mlp_post_3 latent that best detects, at the same positions, that the next token is that
    closer}."""
    # BEGIN SOLUTION
    nxt = torch.zeros_like(data.tokens)
    nxt[:, :-1] = data.tokens[:, 1:]
    vocab = load_tokenizer().get_vocab()
    ends = torch.tensor([vocab[t] for t in CLOSERS + PLAIN[:3]])
    eos = torch.isin(nxt, ends) & data.mask
    fires = acts3[eos] > 0
    answer = {"closer_vs_plain": int(mlp_dla[0].argmax()), "which_closer": int(mlp_dla[1].argmax())}
    for key, concept in [("closer", "quote_close"), ("period", "quote_close:period"),
                         ("question", "quote_close:question"), ("exclamation", "quote_close:exclamation")]:
        answer[key] = int(f1_scores(fires, next_token_labels(data, concept)[eos]).argmax())
    return answer
    # END SOLUTION


# %% [hint]
# Two questions, two kinds of evidence. The layers come from the DLA you already computed (which MLP
# writes most of each logit difference). The latents come from the labels: a latent that fires
# before closers must be judged where a closer *could* come, that is where the next token ends a
# sentence (a closer, or a plain '.', '?' or '!'), against the label of the *next* token.

# %% [hint]
# End-of-sentence positions: the next token (`data.tokens[:, 1:]`, shifted) is one of `CLOSERS +
# PLAIN[:3]`, inside `data.mask`. `next_token_labels(data, "quote_close:question")` gives the labels
# shifted for you, and `f1_scores(acts3[eos] > 0, labels[eos])` scores every latent at once.

# %% [check]
tests.test_capstone(capstone)

# %%
story = capstone(data, acts3, mlp_dla)
print(story)
nxt_tok = torch.zeros_like(data.tokens)
nxt_tok[:, :-1] = data.tokens[:, 1:]
eos = torch.isin(nxt_tok, torch.cat([closer_ids, plain_ids[:3]])) & data.mask
rows = []
for key, concept in [("closer", "quote_close"), ("period", "quote_close:period"),
                     ("question", "quote_close:question"), ("exclamation", "quote_close:exclamation")]:
    truth = next_token_labels(data, concept)
    at_eos = f1_scores(acts3[eos] > 0, truth[eos])
    everywhere = f1_scores(acts3[data.mask] > 0, truth[data.mask])
    mlp2 = f1_scores(acts2[eos] > 0, truth[eos])
    rows.append({"next token": key, "positions": int(truth[eos].sum()), "MLP3 latent": story[key],
                 "F1 at sentence ends": round(float(at_eos[story[key]]), 2),
                 "its F1 everywhere": round(float(everywhere[story[key]]), 2),
                 "best MLP2 latent F1": round(float(mlp2.max()), 2),
                 "median MLP3 latent F1": round(float(at_eos[(acts3[eos] > 0).any(0)].median()), 2),
                 "always fires": round(float(2 * truth[eos].float().mean() / (1 + truth[eos].float().mean())), 2),
                 "token concentration": round(float(conc3[story[key]]), 2),
                 "on": tokenizer.convert_ids_to_tokens(int(top3_tok[story[key]]))})
print(f"{int(eos.sum())} end-of-sentence positions")
print(pd.DataFrame(rows).to_string(index=False))
lat = story["period"]
act = acts3[..., lat] * data.mask
strong_at = act >= 0.5 * act.max()
its_token = data.tokens == top3_tok[lat]
print(f"latent {lat}: {int(strong_at.sum())} strong activations, {int((strong_at & in_quote).sum())} inside a "
      f"quotation; its top token occurs {int((its_token & data.mask).sum())} times, "
      f"{int((its_token & data.mask & in_quote).sum())} of them inside a quotation")

# %% [markdown]
# At the {{601}} end-of-sentence positions, MLP3 latent {{197}} tells a coming closer from a coming
# plain mark with F1 {{0.83}} (a detector that always fires gets {{0.44}}, the median latent
# {{0.01}}). Its F1 over all positions is only {{0.47}}: it fires at sentence ends in general, and
# what it adds is the quotation. The best MLP2 latent does as well here ({{0.82}}), which fits the
# logit lens: "closer vs plain mark" is readable after layer 2. For *which* closer, MLP3 has better
# latents than MLP2 for `."` ({{0.69}} against {{0.59}}) and `!"` ({{0.79}} against {{0.60}}), and
# no better one for `?"` ({{0.46}} in both), the closer the model gets wrong most often. The
# closer latent is contextual (token concentration {{0.12}}), as a detector of "inside a quotation,
# at its end" should be. The `."` latent is not: {{0.93}} of its strong activations sit on one
# token, `I`. All {{15}} strong activations lie inside quotations, and so do all {{14}} occurrences
# of `I` in these documents (it opens quoted statements: "I like the ...", "I saw ..."). The latent
# fires more weakly further on, and at the sentence's end. Its F1 for `."` is real, but at its
# peak it marks the start of a quoted statement, not its end: one more reason to read a latent's
# whole range of activations before naming it.
#
# ## 10 · What a latent boosts: by its weights and by prompts
#
# Which tokens does the closer latent push up? Two readings. By its weights: send its decoder
# direction through `W_out` and the frozen final LayerNorm's weight to the unembedding, as in the
# DLA (a *weight-based* boost, the same for every prompt). By prompts: ablate the latent where it
# fires and see how each token's log-probability changes, averaged over those positions (a
# *prompt-based* boost, which includes everything downstream and the softmax). Following the
# TinyStories study, tokens whose clean log-probability is below −9 at a position are left out
# there: a big relative change of a negligible probability says little.
#
# ### Exercise: `prompt_boosts`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 10 minutes

# %% [exercise]
def prompt_boosts(clean_logits: Tensor, ablated_logits: Tensor, floor: float = -9.0) -> Tensor:
    """How much a latent raises each token's log-probability, from prompts.

    clean_logits, ablated_logits: (n, vocab), the logits at n positions without and with the latent
    ablated. Returns (vocab,): per token, the mean over positions of clean log-prob - ablated
    log-prob, counting only positions where the clean log-prob is >= floor; 0 for a token never counted."""
    # BEGIN SOLUTION
    clean, ablated = clean_logits.log_softmax(-1), ablated_logits.log_softmax(-1)
    keep = (clean >= floor).float()
    return ((clean - ablated) * keep).sum(0) / keep.sum(0).clamp_min(1)
    # END SOLUTION


# %% [hint]
# Boosts are about probabilities, so compare log-probabilities (log-softmax of the logits), not
# logits: a latent can raise every logit by the same amount and change no probability. Average
# each token's change only over the positions where it is not negligible in the clean run.

# %% [hint]
# `keep = clean_lp >= floor` as floats; the mean over kept positions is
# `((clean_lp - ablated_lp) * keep).sum(0) / keep.sum(0).clamp_min(1)`.

# %% [check]
tests.test_prompt_boosts(prompt_boosts)

# %%
closer_latent = story["closer"]
on_pos = torch.nonzero((acts3[..., closer_latent] > 0) & data.mask)
bd, bp = on_pos[:, 0], on_pos[:, 1]


def logits_with_mlp3_ablated(latents) -> Tensor:
    """Logits at the latent's positions with the given MLP3 latents ablated there (error kept)."""
    latents = torch.as_tensor(latents, dtype=torch.long)

    def hook(act, hook):
        act = act.clone()
        act[bd, bp] = ablate_latents(act[bd, bp], saes[3], latents)
        return act

    resid = model.run_with_hooks(cache["blocks.3.hook_resid_pre"], start_at_layer=3, stop_at_layer=4,
                                 fwd_hooks=[("blocks.3.mlp.hook_post", hook)])
    return model.unembed(model.ln_final(resid[bd, bp][:, None]))[:, 0]


by_prompt = prompt_boosts(logits[bd, bp], logits_with_mlp3_ablated([closer_latent]))


def weight_boosts(latent: int) -> Tensor:
    """What the latent's decoder direction writes to every logit through W_out and ln_final's weight."""
    write = saes[3].W_dec[latent] @ model.blocks[3].mlp.W_out
    return ((write - write.mean()) * model.ln_final.w) @ model.W_U


def spearman(x: Tensor, y: Tensor) -> float:
    rx, ry = x.argsort().argsort().float(), y.argsort().argsort().float()
    return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])


# tokens above the floor at >= 20 positions (the study also leaves rare tokens out)
counted = (logits[bd, bp].log_softmax(-1) >= -9).sum(0) >= 20
by_weight = weight_boosts(closer_latent)
name = lambda ids: [tokenizer.convert_ids_to_tokens(int(i)) for i in ids]
print(f"MLP3 latent {closer_latent}, ablated at its {len(bd)} active positions; {int(counted.sum())} tokens counted")
print("top 6 by prompts:", name(torch.where(counted, by_prompt, -1e9).topk(6).indices),
      " bottom 4:", name(torch.where(counted, -by_prompt, -1e9).topk(4).indices))
print("top 6 by weights:", name(torch.where(counted, by_weight, -1e9).topk(6).indices))
rho = spearman(by_prompt[counted], by_weight[counted])
rng = np.random.default_rng(3)
null = [spearman(by_prompt[counted], weight_boosts(int(j))[counted])
        for j in rng.choice(saes[3].cfg.d_sae, 20, replace=False)]
print(f"rank correlation of the two readings over the counted tokens: {rho:.2f}; with the weights of 20 random "
      f"MLP3 latents instead: " + " / ".join(f"{q:.2f}" for q in np.percentile(null, [5, 50, 95]))
      + " (5th / 50th / 95th percentile)")

# %% [markdown]
# Ablated at its {{388}} active positions, the closer latent's strongest prompt-based boost among
# the {{121}} tokens counted (above the floor at ≥ 20 positions) is `."`, and among the tokens it
# pushes down most are `,` and `?"`. By the weights, `."` is on top too, but the plain `.` is also
# among the six most boosted tokens. Over the counted tokens the two readings agree with rank
# correlation {{0.69}}; the weights of 20 random MLP3 latents, read against the same prompt-based
# boosts, give {{-0.24 / 0.08 / 0.28}} (5th / 50th / 95th percentile). So the weights predict what
# the latent does on prompts far better than chance, yet not exactly: they cannot see the softmax,
# nor what layer 3's other parts do with the same direction. Note too that a latent labelled
# "closer" by its F1 turns out to push one closer, `."`, and to push `?"` down.
#
# **What this chapter found, and what it did not.** On this model, "closer vs plain mark" is
# decided by layer 2 (MLP2 its largest MLP writer, with head L3H0 adding more in layer 3) and
# "which closer" mostly in MLP3, as the logit lens, the DLA with its plain-mark control and the
# latents' F1 against the labels agree; the closer latent's weights predict its effect on prompts
# (rank correlation well above random latents'). The MLP2 SAE carries most of MLP2's direct effect and
# recovers most of its loss at the closers, with wide intervals. What the chapter could not show:
# a small set of necessary latents (removing any of the five top-ranked latents costs at most
# {{0.058}} nats where it is active, and the largest effects come from latents of the model's
# failures, whose removal lowers the loss), crisp AND/OR gates (all
# tested pairs are additive), or edges predicted by weights alone (most top-cosine pairs fail
# their ablation). Which closer the model uses also fails to carry over to new wordings
# (`!"` right {{0.04}} of the time on the world's test frames).

