# Source of chapter 01. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch01_latent_gradients.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 01 · Latent gradients
#
# A sparse autoencoder (SAE) rewrites a model's activations as a short list of active *latents*.
# This chapter asks how latents influence one another: if one latent's activation changes a
# little, how much do latents in later layers, or the model's output logits, change? Those
# sensitivities are gradients. A latent circuit shows up as a few large gradients in a mostly
# empty matrix, and this chapter computes such matrices efficiently and reads circuits off them.
#
# 1. **Background speedrun**: the course model and its dictionaries, running a model with SAEs
#    spliced in, the error term, streaming corpus tokens, latent dashboards, memory helpers.
# 2. **`SparseTensor`**: the data structure every later exercise differentiates through.
# 3. **Latent → latent gradients** between residual-stream SAEs, and a bigram circuit put to the test.
# 4. **Token → latent gradients**: which input tokens drive a latent.
# 5. **Latent → logit gradients**: which latents push the model towards its answer.
# 6. **Attention SAEs and induction**: induction heads and latents, and what feeds them.
# 7. **On a real model**: the same functions on GPT-2 small (only when a network is there).
#
# Everything runs on the *course world*: a 4-layer model trained on a generated language whose
# phenomena are planted on purpose, and whose every corpus token is labelled with the concepts
# that produced it. So when we claim that a latent means something, we can check the claim.
#
# **How to work through a notebook.** Run the setup cell at the top first. Every exercise is
# followed by a check cell: it prints "✅ ... passed", or a message that says what is wrong.
# Expected outputs quoted in the text are those of the course world.

# %% [module]
import einops
import torch
from torch import Tensor


def hook_layer(sae) -> int:
    """The layer a dictionary reads from: 2 for "blocks.2.hook_resid_pre" or "blocks.2.attn.hook_z"."""
    return int(sae.cfg.metadata.hook_name.split(".")[1])


def sae_acts_name(sae) -> str:
    """Cache name of an SAE's latent activations when it is spliced into a HookedSAETransformer."""
    return f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"

# %%
import warnings
from collections import Counter

import plotly.express as px
from IPython.display import HTML, display

import tests  # this chapter's checks: chapters/01_latent_gradients/tests.py

torch.set_grad_enabled(False)  # we switch gradients on only where we differentiate

# %% [markdown]
# ## 1 · Background speedrun
#
# This section is a quick tour of the tools the rest of the chapter uses. If you know `sae_lens`
# and TransformerLens well, skim it; but run it, because it defines `model` and the dictionaries.
#
# ### The course model and its dictionaries
#
# `load_model()` returns the course model as a `HookedSAETransformer`: a TransformerLens
# `HookedTransformer` that can also splice SAEs into its forward pass. The dictionaries are
# `sae_lens` SAEs stored in the repository, loaded with `SAE.load_from_disk`; the loaders below
# return them as `{layer: SAE}`. Nothing is downloaded.

# %%
from utils.world import load_attn_saes, load_model, load_resid_saes

model = load_model()
resid_saes = load_resid_saes()  # {layer: SAE on blocks.{layer}.hook_resid_pre}
attn_saes = load_attn_saes()  # {layer: SAE on blocks.{layer}.attn.hook_z, heads concatenated}

cfg = model.cfg
print(f"model: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads per layer, vocabulary {cfg.d_vocab}")
for name, sae in [("resid_saes[2]", resid_saes[2]), ("attn_saes[2]", attn_saes[2])]:
    print(f"{name}: {type(sae).__name__} on {sae.cfg.metadata.hook_name}, {sae.cfg.d_in} → {sae.cfg.d_sae} latents")

# %% [markdown]
# The tokenizer is word-level (with single characters as a fallback for words it does not know),
# except that landmark names are cut into designed pieces whose
# first piece several landmarks share: " Eiffel" is `" E" + "iff" + "el"`, and " Escorial" also
# starts with `" E"`. Remember this prompt: we come back to it all through the chapter.

# %%
prompt = "The Eiffel tower is in the city of"
tokens = model.to_tokens(prompt)  # BOS first
str_toks = model.to_str_tokens(prompt)
print(str_toks)

# %% [markdown]
# ### Running with SAEs spliced in
#
# `model.run_with_cache_with_saes(tokens, saes=[...])` runs the model with each SAE inserted at
# its hook point and caches every activation, including the SAE's own hooks. Their names are
# the hook point's name, a dot, and the SAE hook: `hook_sae_acts_post` holds the latent
# activations (the one we use most), `hook_sae_acts_pre` the encoder's pre-activations,
# `hook_sae_recons` the reconstruction, `hook_sae_error` the error term and `hook_sae_output`
# what the SAE hands back to the model. `stop_at_layer` saves computing the layers we don't need.
#
# The helper `sae_acts_name(sae)` (defined in the first code cell) builds the
# `hook_sae_acts_post` name, and `hook_layer(sae)` reads the layer out of the hook name.

# %%
sae = resid_saes[2]
_, cache = model.run_with_cache_with_saes(tokens, saes=[sae], stop_at_layer=hook_layer(sae) + 1)
print("SAE hooks in the cache:", [name for name in cache.keys() if ".hook_sae_" in name])

acts = cache[sae_acts_name(sae)][0, -1]  # latent activations on the last token, " of"
print(f"{int((acts > 0).sum())} of {sae.cfg.d_sae} latents are active on {str_toks[-1]!r}; the largest:")
for value, latent in zip(*acts.topk(5)):
    print(f"  F2.{int(latent)}: {value:.2f}")

# %% [markdown]
# ### The SAE equations
#
# Every dictionary of the course is a `sae_lens` **JumpReLU** SAE. For an input $x$ (here the
# residual stream, $d_\text{in} = 128$) it computes
#
# $$h = (x - b_\text{dec})\,W_\text{enc} + b_\text{enc}, \qquad
# a = \operatorname{JumpReLU}_\theta(h) = h \cdot \mathbb{1}[h > \theta], \qquad
# \hat{x} = a\,W_\text{dec} + b_\text{dec},$$
#
# with $W_\text{enc}$ of shape `(d_in, d_sae)` and $W_\text{dec}$ of shape `(d_sae, d_in)`: each
# latent has an encoder column that *reads* and a decoder row that *writes*. The threshold
# $\theta$ (`sae.threshold`, one per latent) zeroes every pre-activation at or below it, so an
# active latent is never weaker than its threshold. `hook_sae_acts_pre` caches $h$,
# `hook_sae_acts_post` caches $a$. Our dictionaries were trained as BatchTopK SAEs (about 16
# active latents per token on average) and saved with the single threshold that training
# learned, shared by all latents. The cell checks the equations against `sae.encode` and
# `sae.decode`:

# %%
x = cache["blocks.2.hook_resid_pre.hook_sae_input"][0]  # (seq, d_in): what the SAE read
h = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
a = h * (h > sae.threshold)
x_hat = a @ sae.W_dec + sae.b_dec
print(f"threshold: {sae.threshold.unique().tolist()} (one value shared by all {sae.cfg.d_sae} latents)")
print(f"max |a - sae.encode(x)| = {(a - sae.encode(x)).abs().max():.1e}; "
      f"max |x_hat - sae.decode(a)| = {(x_hat - sae.decode(a)).abs().max():.1e}")
print(f"active latents per token on this prompt: {(a > 0).sum(-1).tolist()}")

# %% [markdown]
# ### The error term: `use_error_term`
#
# An SAE's reconstruction is not exact. `use_error_term` decides what the model sees:
#
# - `False` (the default): the model continues from the reconstruction, so its output changes;
# - `True`: the SAE adds back its error (`input - reconstruction`, computed without gradients),
#   so the model continues from its true activations. The latents are still computed and
#   cached, and the output is unchanged.
#
# So `use_error_term=True` is how we read the *true* latent activations without changing the
# model, and `False` is how we run the *replacement* in which only the latents carry information.
# Pass it to `run_with_saes`, `run_with_cache_with_saes` or `model.saes(...)`: it then holds
# for that run only. (Older code sets the attribute `sae.use_error_term`, which sticks to the SAE
# until someone sets it back; `sae_lens` now warns against it.)

# %%
paris = model.to_single_token(" Paris")
clean_logits = model(tokens)[0, -1]
logits_with_error = model.run_with_saes(tokens, saes=[sae], use_error_term=True)[0, -1]
logits_replaced = model.run_with_saes(tokens, saes=[sae], use_error_term=False)[0, -1]

for name, logits in [("clean model", clean_logits), ("SAE, use_error_term=True", logits_with_error),
                     ("SAE, use_error_term=False", logits_replaced)]:
    change = (logits - clean_logits).abs().max()
    print(f"{name:27} P(' Paris') = {logits.softmax(-1)[paris]:.4f}   max |logit change| = {change:.2e}")

# %% [markdown]
# With the error term the logits are those of the clean model up to float rounding. Without it
# some logits move by up to {{7.07e+00}}, and P(" Paris") even rises, from {{0.9185}} to {{0.9861}}.
#
# One prompt is one draw, and "the model still answers" needs a yardstick. The cell below asks
# the same question of all 24 landmarks of the world ("The Louvre museum is in the city of", ...),
# and compares the SAE with two controls at the same layer: a *random error* of the same size
# (the true residual stream plus a random direction whose norm, at every position, is that of
# the SAE's error; 20 draws), and the *floor*, where every latent is zero and only the decoder
# bias is left.

# %%
from utils.world.facts import LANDMARKS

landmark_prompts = [f"The{''.join(lm.pieces)} {lm.kind} is in the city of" for lm in LANDMARKS]
landmark_tokens = torch.cat([model.to_tokens(p) for p in landmark_prompts])  # all 11 tokens long
landmark_answers = torch.tensor([model.to_single_token(" " + lm.city) for lm in LANDMARKS])


def answer_stats(logits: Tensor) -> tuple[float, float]:
    """(top-1 accuracy, mean probability of the answer) at the last position."""
    last = logits[:, -1]
    p_answer = last.softmax(-1)[torch.arange(len(landmark_answers)), landmark_answers]
    return float((last.argmax(-1) == landmark_answers).float().mean()), float(p_answer.mean())


hook = sae.cfg.metadata.hook_name
_, lm_cache = model.run_with_cache_with_saes(landmark_tokens, saes=[sae], use_error_term=True,
                                             names_filter=[f"{hook}.hook_sae_input", f"{hook}.hook_sae_recons"])
x_true, x_recon = lm_cache[f"{hook}.hook_sae_input"], lm_cache[f"{hook}.hook_sae_recons"]
error_norm = (x_recon - x_true).norm(dim=-1, keepdim=True)
generator = torch.Generator().manual_seed(0)
random_error = []
for _ in range(20):
    direction = torch.randn(x_true.shape, generator=generator)
    random_error.append(answer_stats(model(x_true + direction / direction.norm(dim=-1, keepdim=True) * error_norm,
                                           start_at_layer=hook_layer(sae))))
random_acc, random_p = torch.tensor(random_error).T
print(f"relative size of the SAE's error, |x_hat - x| / |x|, mean over tokens: "
      f"{float((error_norm.squeeze(-1) / x_true.norm(dim=-1))[:, 1:].mean()):.2f}")
print(f"{'run (24 landmark prompts)':44} top-1 accuracy   mean P(answer)")
for name, (acc, p_answer) in [("clean model", answer_stats(model(landmark_tokens))),
                              ("SAE spliced in (use_error_term=False)",
                               answer_stats(model.run_with_saes(landmark_tokens, saes=[sae], use_error_term=False))),
                              ("floor: decoder bias only", answer_stats(model(torch.zeros_like(x_true) + sae.b_dec,
                                                                             start_at_layer=hook_layer(sae))))]:
    print(f"{name:44} {acc:.3f}            {p_answer:.3f}")
q = torch.tensor([0.1, 0.5, 0.9])
print(f"{'random error of the same size, 20 draws':44} {' / '.join(f'{v:.3f}' for v in random_acc.quantile(q))}   "
      f"{' / '.join(f'{v:.3f}' for v in random_p.quantile(q))}   (10th / 50th / 90th percentile)")

# %% [markdown]
# All 24 answers survive the SAE (accuracy {{1.000}}, as for the clean model), while the floor
# answers none ({{0.000}}): the latents carry what the answer needs. The cost is in the
# confidence, mean P(answer) {{0.964}} against {{0.994}}, and it is no larger than that of a
# random error of the same size (median {{0.949}}, 10th–90th percentile {{0.927}}–{{0.975}}).
# The error is about a third of the residual stream's norm ({{0.34}}), yet this task barely
# notices it. That says nothing about other tasks: check the one you study.
#
# ### Streaming batches of corpus tokens: `ActivationsStore`
#
# `sae_lens`'s `ActivationsStore` streams batches of tokens from a dataset and the activations
# at an SAE's hook point (it is what SAE training uses). `from_sae` takes the hook point and the
# context size from the SAE's config; we hand it a dataset of course-corpus tokens, the same
# kind that the course dictionaries were trained on.

# %%
from sae_lens import ActivationsStore

from utils.world.train_dictionaries import token_dataset  # rows of the world's training split

dataset = token_dataset(n_rows=64, n_ctx=cfg.n_ctx, seed=3)  # a `datasets.Dataset` with "input_ids"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # it warns that 64 rows are fewer than a training run wants
    store = ActivationsStore.from_sae(model=model, sae=sae, dataset=dataset, streaming=False,
                                      context_size=cfg.n_ctx, store_batch_size_prompts=8, n_batches_in_buffer=4,
                                      train_batch_size_tokens=256, device="cpu")
    batch_tokens = store.get_batch_tokens()
    batch_acts = store.get_activations(batch_tokens)
print("tokens:", tuple(batch_tokens.shape), "activations at", sae.cfg.metadata.hook_name, tuple(batch_acts.shape))
print(repr("".join(model.to_str_tokens(batch_tokens[0, :24]))))

# %% [markdown]
# ### Latent dashboards
#
# A dashboard summarises one latent: how often it fires, its top activating contexts in the
# held-out course corpus, the histogram of its activations, the tokens its decoder direction
# promotes (a logit lens) and, because this is the course world, the planted concept it matches
# best with its precision and recall. `display_dashboard` builds it offline (plain HTML). Here
# is the strongest latent on " of" from above:

# %%
from utils.dashboard import display_dashboard

display_dashboard(sae, int(acts.argmax()), model=model)

# %% [markdown]
# The concept codes on a dashboard (`landmark`, `landmark_city`, `city:Paris`, `p3_repeat`, ...) name
# the planted phenomena of the course world; a code with a colon is one member of a family. The legend below (click to open) says what each labels; it is the same
# in every chapter, and `utils.world.explain_concept(code)` gives one entry.

# %%
from IPython.display import Markdown

from utils.world import concept_legend_table

display(Markdown(f"<details><summary><b>Legend: the planted concepts</b></summary>\n\n{concept_legend_table()}\n\n</details>"))

# %% [markdown]
# ### Memory helpers
#
# The course world fits comfortably in memory, but real models do not always. Two helpers from
# `utils/memory.py` work on a CPU and on a GPU alike: `print_memory_status()` prints this
# process's memory, the machine's free RAM and, on a GPU, what CUDA has allocated;
# `profile_pytorch_memory(globals())` also lists the variables that hold the most tensor
# memory, so you know which ones to `del` (or move to the CPU with `.cpu()`) when memory runs out.

# %%
from utils.memory import print_memory_status, profile_pytorch_memory

_ = profile_pytorch_memory(globals(), top=6)

# %% [markdown]
# ## 2 · Sparse tensors
#
# Most latent activations are zero: an SAE with thousands of latents typically has a few dozen
# active on any one token. We need those activations in two forms.
#
# - **Dense**: the full tensor, zeros included. Forward passes use this form; for instance,
#   decoding latents back into the residual stream multiplies the whole activation vector by
#   the decoder matrix.
# - **Sparse**: only the nonzero entries. Gradients are taken with respect to this form. A
#   Jacobian against every latent at every position would be enormous and almost all of it
#   would describe latents that are not active; keeping only the active ones makes it small.
#
# `SparseTensor` stores both forms of one tensor. The sparse form is a tuple
# `(values, indices, shape)`:
#
# | part | shape | meaning |
# |---|---|---|
# | `values` | `(n_nonzero,)` | the nonzero entries |
# | `indices` | `(n_nonzero, k)` | row `i` holds the `k` coordinates of `values[i]` |
# | `shape` | a tuple of `k` ints | the shape of the dense tensor |
#
# Entries are listed in row-major order (the last coordinate changes fastest), which is the
# order in which `torch.nonzero` returns them.
#
# For example, the 2×3 tensor
#
# ```
# [[0.0, 2.0, 0.0],
#  [1.5, 0.0, 3.0]]
# ```
#
# has `values = [2.0, 1.5, 3.0]`, `indices = [[0, 1], [1, 0], [1, 2]]` and `shape = (2, 3)`.
# `indices` keeps its second dimension for a 1-D tensor too: there its shape is `(n_nonzero, 1)`.

# %% [markdown]
# ### Exercise: implement `SparseTensor.from_dense` and `SparseTensor.from_sparse`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵⚪⚪⚪⚪ · about 10 minutes
#
# - `from_dense(dense)` finds the nonzero entries of `dense` and returns a `SparseTensor`
#   holding both forms. `values` keeps the dtype of `dense`, and gradients must flow from
#   `values` back to `dense` (no `.detach()`, no rebuilding from Python numbers): the later
#   exercises differentiate through it.
# - `from_sparse((values, indices, shape))` rebuilds the dense tensor: zeros of the given shape,
#   with the values written at their coordinates. It must have the dtype and device of
#   `values` (float64 activations, or activations on a GPU, must stay so), and gradients must
#   flow from it back to `values`: the later exercises differentiate through it.
#
# The properties `values`, `indices` and `shape` are given. Useful tools: `torch.nonzero`,
# indexing with a boolean mask, and indexing with a tuple of `k` index tensors, one per dimension.

# %% [exercise]
class SparseTensor:
    """One tensor kept in two forms: dense (the full tensor) and sparse (its nonzero entries).

    sparse: a tuple (values, indices, shape):
        values  shape (n_nonzero,), the nonzero entries in row-major order;
        indices shape (n_nonzero, k), row i holding the coordinates of values[i];
        shape   the shape (n_1, ..., n_k) of the dense tensor.
    dense: the full tensor, of shape (n_1, ..., n_k).
    """

    sparse: tuple[Tensor, Tensor, tuple[int, ...]]
    dense: Tensor

    def __init__(self, sparse: tuple[Tensor, Tensor, tuple[int, ...]], dense: Tensor):
        self.sparse = sparse
        self.dense = dense

    @classmethod
    def from_dense(cls, dense: Tensor) -> "SparseTensor":
        """Both forms from the dense tensor. `values` has the dtype and device of `dense`."""
        # BEGIN SOLUTION
        is_nonzero = dense != 0
        # Mask indexing and nonzero() both walk the tensor in row-major order, so they line up.
        values = dense[is_nonzero]
        indices = is_nonzero.nonzero()  # (n_nonzero, k), also when k == 1
        return cls((values, indices, tuple(dense.shape)), dense)
        # END SOLUTION

    @classmethod
    def from_sparse(cls, sparse: tuple[Tensor, Tensor, tuple[int, ...]]) -> "SparseTensor":
        """Both forms from (values, indices, shape). `dense` has the dtype and device of `values`."""
        # BEGIN SOLUTION
        values, indices, shape = sparse
        zeros = torch.zeros(shape, dtype=values.dtype, device=values.device)
        # One index tensor per dimension; the out-of-place index_put stays differentiable.
        dense = zeros.index_put(tuple(indices.T), values)
        return cls(sparse, dense)
        # END SOLUTION

    @property
    def values(self) -> Tensor:
        """The nonzero entries, shape (n_nonzero,)."""
        return self.sparse[0]

    @property
    def indices(self) -> Tensor:
        """Coordinates of the nonzero entries: (n_nonzero, k), or (n_nonzero,) for a 1-D tensor."""
        indices = self.sparse[1]
        return indices.squeeze(-1) if indices.shape[-1] == 1 else indices

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the dense tensor."""
        return tuple(self.sparse[2])


# %% [hint]
# Two conversions between the same information. Dense to sparse: find which entries are nonzero,
# then read off their values and their coordinates, both in the same (row-major) order so that
# `values[i]` belongs to `indices[i]`. Sparse to dense: start from an all-zero tensor of the given
# shape and put each value at its coordinates. Later exercises differentiate through `from_sparse`,
# so build the dense tensor in a way that lets gradients flow back to `values`.

# %% [hint]
# A boolean mask `dense != 0` serves both halves of the first conversion: indexing with it and
# `mask.nonzero()` walk the tensor in the same order, and `nonzero()` is already `(n_nonzero, k)`,
# also for a 1-D tensor. For the way back, the out-of-place `index_put` with `tuple(indices.T)`
# (one index tensor per dimension) works under `torch.func.jacrev`, which later exercises use; an
# in-place write into the zeros does not. The zeros need the dtype and device of `values`.

# %% [check]
tests.test_sparse_tensor(SparseTensor)

# %% [markdown]
# Here is the 2×3 example from above, in both forms:

# %%
example = SparseTensor.from_dense(torch.tensor([[0.0, 2.0, 0.0], [1.5, 0.0, 3.0]]))
print("values: ", example.values.tolist())
print("indices:", example.indices.tolist())
print("shape:  ", example.shape)
print("dense again:", SparseTensor.from_sparse(example.sparse).dense.tolist())

# %% [markdown]
# ## 3 · Latent → latent gradients
#
# Take two residual-stream SAEs, an earlier one at layer $\ell_1$ and a later one at layer
# $\ell_2$. On a given prompt, each has a set of active latents. How does latent $i$ of the
# earlier SAE influence latent $j$ of the later one? A linear answer is the Jacobian
#
# $$J_{ji} = \frac{\partial\, a^{(\ell_2)}_j}{\partial\, a^{(\ell_1)}_i},$$
#
# taken through the path *earlier decoder → the model's layers $\ell_1 \dots \ell_2 - 1$ → later
# encoder*. In code:
#
# ```
# latent_acts_from  →  sae_from.decode  →  model blocks ℓ1 … ℓ2-1  →  sae_to.encode  →  latent_acts_to
# ```
#
# Two things keep this cheap. First, we differentiate with respect to the *active* latents
# only (the sparse values), and we return only the active later latents: the Jacobian then
# has one row per active later latent and one column per active earlier latent, a few hundred
# by a few hundred, instead of `(seq × d_sae) × (seq × d_sae)`. Second, `torch.func.jacrev`
# computes all of it from one function, by reverse-mode differentiation.
#
# `jacrev(f, has_aux=True)` expects `f` to return a pair `(output, aux)`: it differentiates
# `output` with respect to `f`'s first argument and passes `aux` through untouched. So
# `jacrev(f, has_aux=True)(x, ...)` returns `(J, aux)` with `J[i, j] = ∂ output[i] / ∂ x[j]`.
# We use `aux` to get the dense later activations out of the same forward pass.
#
# **A caveat.** The later latents in this function are computed from the earlier SAE's
# *reconstruction*, not from the true residual stream, so they are not exactly the true later
# latents. We will compare the two sets to see how much that matters.

# %% [markdown]
# ### Exercise: implement `latent_acts_to_later_latent_acts`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 15 minutes
#
# Given the earlier SAE's activations in sparse form (the three parts of `SparseTensor.sparse`,
# as three arguments), return the later SAE's activations as `(values, (dense,))`: the
# nonzero values, and the dense tensor inside a 1-tuple (the `aux` for `jacrev`).
#
# - `SparseTensor.from_sparse` gives the dense activations, `sae.decode` and `sae.encode` map
#   between latents and the residual stream.
# - `model(resid, start_at_layer=a, stop_at_layer=b)` runs blocks `a, ..., b-1` on a residual
#   stream you give it. The input of block $\ell$ is `blocks.ℓ.hook_resid_pre`, so an SAE on
#   `blocks.ℓ.hook_resid_pre` reads what comes *before* block $\ell$: think about which blocks
#   lie between the two SAEs. `hook_layer(sae)` gives $\ell$.

# %% [exercise]
def latent_acts_to_later_latent_acts(
    latent_acts_nonzero: Tensor,
    latent_acts_nonzero_inds: Tensor,
    latent_acts_shape: tuple[int, ...],
    sae_from,
    sae_to,
    model,
) -> tuple[Tensor, tuple[Tensor]]:
    """The later SAE's latents, computed from the earlier SAE's latents through the path
    sae_from.decode -> the model's blocks in between -> sae_to.encode.

    The input is the sparse form of the earlier activations (values, indices, shape).
    Returns (the nonzero later activations, (the dense later activations,)).
    """
    # BEGIN SOLUTION
    latent_acts = SparseTensor.from_sparse((latent_acts_nonzero, latent_acts_nonzero_inds, latent_acts_shape)).dense
    resid = sae_from.decode(latent_acts)
    resid_next = model(resid, start_at_layer=hook_layer(sae_from), stop_at_layer=hook_layer(sae_to))
    latent_acts_next = SparseTensor.from_dense(sae_to.encode(resid_next))
    return latent_acts_next.sparse[0], (latent_acts_next.dense,)
    # END SOLUTION


# %% [hint]
# This function is the path from the earlier SAE's latents to the later SAE's latents, written so
# that it can be differentiated: rebuild the dense latent tensor from its sparse parts, map it into
# the residual stream with the earlier SAE's decoder, push that through only the transformer blocks
# that lie between the two SAEs, and encode the result with the later SAE. The output is the
# nonzero later activations; the dense ones go in the auxiliary tuple.

# %% [hint]
# The trap is which blocks to run. An SAE on `blocks.ℓ.hook_resid_pre` reads the input of block ℓ,
# so the blocks in between are `hook_layer(sae_from)` up to, not including, `hook_layer(sae_to)`:
# exactly what the model's `start_at_layer` / `stop_at_layer` arguments mean.
# `SparseTensor.from_sparse` and `SparseTensor.from_dense` do the two conversions.

# %% [check]
tests.test_latent_acts_to_later_latent_acts(latent_acts_to_later_latent_acts)

# %% [markdown]
# ### Exercise: implement `latent_to_latent_gradients`
#
# > Difficulty: 🔴🔴🔴🔴⚪ · Importance: 🔵🔵🔵⚪⚪ · about 20 minutes
#
# Now the whole computation, for a batch of tokens:
#
# 1. Run the model with both SAEs spliced in (`run_with_cache_with_saes`) to get the **true**
#    activations of both. For the later SAE's latents to be the true ones, the earlier SAE must
#    not change what the model sees: pass `use_error_term=True`. (If you set the attribute
#    `sae.use_error_term` instead, put the old value back before you return.) No gradients are
#    needed here: use `torch.no_grad()`, and stop after the later SAE's layer.
# 2. Differentiate `latent_acts_to_later_latent_acts` with `torch.func.jacrev(..., has_aux=True)`
#    at the earlier SAE's true activations, in sparse form.
# 3. Return the Jacobian, shape `(n_active_later_recon, n_active_earlier)`, and three
#    `SparseTensor`s: the earlier and later true activations, and the later activations that the
#    function computed from the reconstruction (its `aux`).

# %% [exercise]
def latent_to_latent_gradients(tokens: Tensor, sae_from, sae_to, model):
    """Gradients between every active latent of `sae_from` and every active latent of `sae_to`.

    Returns (latent_latent_gradients, latent_acts_prev, latent_acts_next, latent_acts_next_recon):
        latent_latent_gradients  (n_active in latent_acts_next_recon, n_active in latent_acts_prev)
        latent_acts_prev         SparseTensor, the true activations of sae_from
        latent_acts_next         SparseTensor, the true activations of sae_to
        latent_acts_next_recon   SparseTensor, sae_to's activations computed from sae_from's
                                 reconstruction (what the gradients are gradients of)
    """
    # BEGIN SOLUTION
    names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
    with torch.no_grad():  # with the error term, the model runs on its true activations
        _, cache = model.run_with_cache_with_saes(
            tokens, saes=[sae_from, sae_to], use_error_term=True, names_filter=names,
            stop_at_layer=hook_layer(sae_to) + 1,
        )
    latent_acts_prev = SparseTensor.from_dense(cache[names[0]])
    latent_acts_next = SparseTensor.from_dense(cache[names[1]])

    gradients_and_acts = torch.func.jacrev(latent_acts_to_later_latent_acts, has_aux=True)
    latent_latent_gradients, (next_recon_dense,) = gradients_and_acts(*latent_acts_prev.sparse, sae_from, sae_to, model)
    return latent_latent_gradients, latent_acts_prev, latent_acts_next, SparseTensor.from_dense(next_recon_dense)
    # END SOLUTION


# %% [hint]
# Two stages. First, one forward pass without gradients, with both SAEs spliced in but their error
# terms kept, so that the model runs on its true activations; record both SAEs' latent activations
# from it. Then the gradients are the Jacobian of the previous exercise's function with respect to
# its first input (the nonzero earlier activations), taken at the true earlier activations. The
# function's auxiliary output is the later activations computed from the reconstruction, the fourth
# thing to return.

# %% [hint]
# `model.run_with_cache_with_saes(..., use_error_term=True)`, caching `sae_acts_name(sae)` for each
# SAE (stopping after the later SAE's layer saves time). Then
# `torch.func.jacrev(latent_acts_to_later_latent_acts, has_aux=True)`, called with
# `*latent_acts_prev.sparse` followed by the other arguments, returns `(J, (dense_recon,))`.

# %% [check]
tests.test_latent_to_latent_gradients(latent_to_latent_gradients, latent_acts_to_later_latent_acts)

# %% [markdown]
# Now the gradients between the layer-0 and the layer-3 SAE on our prompt. First, how close
# are the later latents computed from the layer-0 reconstruction to the true ones? Then a
# heatmap of the Jacobian: one column per active layer-0 latent, one row per active layer-3
# latent, labelled `F{layer}.{latent}` with the token it is active on and its position.

# %%
def latent_labels(latent_acts: "SparseTensor", layer: int, str_toks: list[str]) -> list[str]:
    """Axis labels F{layer}.{latent}, 'token' (position) for the active entries of a batch of one."""
    return [f"F{layer}.{latent}, {str_toks[pos]!r} ({pos})" for _, pos, latent in latent_acts.indices.tolist()]


def alive_counts(true: "SparseTensor", recon: "SparseTensor") -> None:
    true_set = {tuple(i) for i in true.indices.tolist()}
    recon_set = {tuple(i) for i in recon.indices.tolist()}
    print(f"active (position, latent) pairs in the true run:          {len(true_set)}")
    print(f"active (position, latent) pairs in the reconstructed run: {len(recon_set)}")
    print(f"active in one but not both:                               {len(true_set ^ recon_set)}")
    print(f"active in both:                                           {len(true_set & recon_set)}")


def plot_gradients(gradients: Tensor, x: list[str], y: list[str], title: str, x_title: str, y_title: str):
    """A heatmap centred on zero (blue positive, red negative) with one label per row and column."""
    scale = float(gradients.abs().max()) or 1.0
    fig = px.imshow(gradients.detach(), x=x, y=y, color_continuous_scale="RdBu", zmin=-scale, zmax=scale,
                    aspect="auto", labels={"x": x_title, "y": y_title}, title=title, width=1000, height=800)
    fig.update_xaxes(showticklabels=len(x) <= 80)  # hover shows every label; hundreds of ticks do not read
    fig.update_yaxes(showticklabels=len(y) <= 80)
    return fig


layer_from, layer_to = 0, 3
grads, acts_prev, acts_next, acts_next_recon = latent_to_latent_gradients(
    tokens, resid_saes[layer_from], resid_saes[layer_to], model
)
print("Jacobian:", tuple(grads.shape))
allowed = acts_next_recon.indices[:, 1][:, None] >= acts_prev.indices[:, 1][None, :]  # later position or same
print(f"entries exactly zero: {float((grads == 0).float().mean()):.2f} of all, "
      f"{float((grads[allowed] == 0).float().mean()):.2f} of those from an earlier or the same position")
size = grads[allowed].abs()
print(f"|gradient| from an earlier or the same position: median {size.median():.3f}, "
      f"99th percentile {size.quantile(0.99):.3f}, largest {size.max():.3f}")
alive_counts(acts_next, acts_next_recon)
plot_gradients(
    grads, x=latent_labels(acts_prev, layer_from, str_toks), y=latent_labels(acts_next_recon, layer_to, str_toks),
    title=f"Gradients from layer-{layer_from} to layer-{layer_to} SAE latents<br><sup>{prompt!r}</sup>",
    x_title=f"from layer {layer_from}", y_title=f"to layer {layer_to}",
).show()

# %% [markdown]
# Hover over the heatmap. A latent at one position can only influence a later latent at the
# same or a later position, so every entry from a later position to an earlier one is exactly
# zero ({{0.36}} of all entries). Every other entry is nonzero ({{0.00}} of them zero): among the
# active latents the Jacobian is dense, and what makes it readable is that the largest few
# entries stand an order of magnitude above the typical one (median size {{0.289}}, 99th
# percentile {{3.474}}, largest {{11.637}}).
#
# The counts measure the caveat above, and it is not small: of the {{254}} (position, latent) pairs
# active in the true run, only {{114}} are also active in the run computed from the layer-0
# *reconstruction*, which has {{150}} in all. Less than half of what the layer-3 SAE sees survives
# when the layer-0 SAE's error is dropped. So these gradients describe the replacement model
# (layer-0 latents only, no error term) exactly, and the real model only where the two runs share
# their latents; a link into a latent that is active in one run only says nothing about the other.
#
# ### Finding: does " E" feed a landmark latent on "iff"?
#
# " E" starts both " Eiffel" and " Escorial"; "iff" settles which landmark this is. So we may
# expect a latent on " E" that feeds, one position later, a latent on "iff" that stands for the
# landmark word. The gradients give candidates; the course corpus tells us what each candidate
# means. We run every dictionary of this chapter once over 300 held-out documents, whose tokens
# carry ground-truth labels, and score single latents with `utils/latent_truth.py`:
#
# - `score(...)`: the **precision** (the share of the tokens a latent fires on that are in a
#   set) and **recall** (the share of the set it fires on) of "the latent fires", at any strength;
# - `top_share(...)`: the share of the latent's 20 strongest activations that fall in the set,
#   which is what its dashboard's top examples show. Weak firings do not count there.
#
# Both need a chance level: a latent that fires at random has a precision equal to the share of
# the set among all tokens, and we compare a top-20 share with that of every other latent of
# the same SAE.

# %%
from utils.latent_truth import best_concepts, concept, corpus_activations, score, token_dependence, token_is, top_share
from utils.world import labelled_corpus

data = labelled_corpus()  # 300 held-out documents with their labels
corpus_acts = corpus_activations(model, {**{f"resid_pre_{l}": resid_saes[l] for l in range(cfg.n_layers)},
                                         "attn_z_1": attn_saes[1], "attn_z_3": attn_saes[3]}, data)
E_id = model.to_single_token(" E")
is_E, is_landmark, is_eiffel = token_is(data, E_id), concept(data, "landmark"), concept(data, "landmark:Eiffel")
n_tokens = int(data.mask.sum())  # corpus tokens, BOS and padding left out
print(f"chance: {int(is_landmark.sum())} of {n_tokens} corpus tokens are landmark pieces ({is_landmark.sum() / n_tokens:.3f})")


def strongest_links(grads: Tensor, acts_from: "SparseTensor", acts_to: "SparseTensor", pos_from: int, pos_to: int,
                    n: int = 5) -> list[tuple[float, int, int]]:
    """The n largest gradients from latents at position pos_from to latents at position pos_to,
    as (gradient, latent_from, latent_to)."""
    rows = (acts_to.indices[:, 1] == pos_to).nonzero().flatten()
    cols = (acts_from.indices[:, 1] == pos_from).nonzero().flatten()
    block = grads[rows][:, cols]
    top = block.flatten().topk(min(n, block.numel()))
    return [(float(value), int(acts_from.indices[cols[i % len(cols)], 2]), int(acts_to.indices[rows[i // len(cols)], 2]))
            for value, i in zip(top.values, top.indices.tolist())]


def alive(acts: Tensor) -> Tensor:
    """The latents (of corpus activations (n_docs, n_ctx, d_sae)) that fire on at least 20 corpus tokens."""
    return ((acts > 0) & data.mask[..., None]).sum((0, 1)) >= 20


def top_shares(acts: Tensor, truth: Tensor, n: int = 20) -> Tensor:
    """`top_share` of every latent at once: the share of its n strongest activations on `truth` tokens."""
    top = acts[data.mask].topk(n, dim=0)  # (n, d_sae) over the corpus tokens
    strong = top.values > 0
    return (truth[data.mask][top.indices] & strong).sum(0) / strong.sum(0).clamp_min(1)


pos_E, pos_iff = str_toks.index(" E"), str_toks.index("iff")
acts_from_corpus, acts_to_corpus = corpus_acts[f"resid_pre_{layer_from}"], corpus_acts[f"resid_pre_{layer_to}"]
print("\nlink                   gradient   top-20 share on landmarks: earlier latent | later latent")
for value, latent_from, latent_to in strongest_links(grads, acts_prev, acts_next_recon, pos_E, pos_iff):
    print(f"F{layer_from}.{latent_from:<3} → F{layer_to}.{latent_to:<3}       {value:+7.3f}"
          f"                             {top_share(acts_from_corpus[..., latent_from], is_landmark, data):.2f}"
          f"   |   {top_share(acts_to_corpus[..., latent_to], is_landmark, data):.2f}")

landmark_shares = top_shares(acts_to_corpus, is_landmark)[alive(acts_to_corpus)]
print(f"\nnull: top-20 landmark share of the {len(landmark_shares)} layer-{layer_to} latents that fire at least 20 times: "
      f"median {landmark_shares.median():.2f}, 90th percentile {landmark_shares.quantile(0.9):.2f}, "
      f"95th {landmark_shares.quantile(0.95):.2f}; {int((landmark_shares >= 0.9).sum())} latents reach 0.9")

# The landmark latents active on "iff": top-20 share at least 0.9, largest activation first.
on_iff = [(float(v), int(l)) for v, (_, pos, l) in zip(acts_next_recon.values, acts_next_recon.indices.tolist())
          if pos == pos_iff and top_share(acts_to_corpus[..., int(l)], is_landmark, data) >= 0.9]
landmark_latents = [latent for _, latent in sorted(on_iff, reverse=True)]
print(f"landmark latents active on 'iff': {', '.join(f'F{layer_to}.{l}' for l in landmark_latents)}")
print("\nstrongest link into them from each earlier position (the same-condition control for ' E'):")
print("latent on 'iff'   " + "".join(f"{str_toks[p]!r:>11}" for p in range(pos_iff + 1)))
for latent in landmark_latents:
    row = (acts_next_recon.indices[:, 1] == pos_iff) & (acts_next_recon.indices[:, 2] == latent)
    cells = [float(grads[row][:, acts_prev.indices[:, 1] == p].max()) for p in range(pos_iff + 1)]
    print(f"F{layer_to}.{latent:<14}" + "".join(f"{c:+11.3f}" for c in cells))
bigram_to = landmark_latents[0]

# %% [markdown]
# A closer look at the strongest " E" latent of the links above, and at the dashboard of the
# first landmark latent:

# %%
_, bigram_from, _ = strongest_links(grads, acts_prev, acts_next_recon, pos_E, pos_iff, n=1)[0]
print(f"F{layer_from}.{bigram_from}:", score(acts_from_corpus[..., bigram_from], is_E, data, "token ' E'"))
print(f"F{layer_from}.{bigram_from}:", score(acts_from_corpus[..., bigram_from], is_landmark, data, "concept landmark"))
for name, truth in [("concept landmark", is_landmark), ("concept landmark:Eiffel", is_eiffel)]:
    print(f"F{layer_to}.{bigram_to}:", score(acts_to_corpus[..., bigram_to], truth, data, name),
          f"| top-20 share {top_share(acts_to_corpus[..., bigram_to], truth, data):.2f}")
on_E = acts_prev.indices[acts_prev.indices[:, 1] == pos_E, 2].tolist()
E_shares = {latent: top_share(acts_from_corpus[..., latent], is_E, data) for latent in on_E}
most_E = max(E_shares, key=E_shares.get)
print(f"\n{len(on_E)} layer-{layer_from} latents are active on ' E'; the most ' E'-specific is F{layer_from}.{most_E}, "
      f"with {E_shares[most_E]:.0%} of its 20 strongest activations on ' E' "
      f"(chance: {int(is_E.sum())} of {n_tokens} tokens are ' E', {is_E.sum() / n_tokens:.4f})")
display_dashboard(resid_saes[layer_to], bigram_to, model=model, data=data)

# %% [markdown]
# **What the course world shows.** The five strongest links from " E" to "iff" all end in layer-3
# latents with no landmark piece among their 20 strongest activations (top-20 share 0.00), which
# is what most latents look like: over the {{430}} layer-3 latents that fire at least 20 times the
# median share is {{0.00}} and the 95th percentile {{0.15}}. Only {{4}} latents reach 0.9, and two of
# them are active on "iff": **{{F3.442}}** and {{F3.468}}. F3.442 is a landmark latent at any strength
# too: precision {{0.28}} for landmark pieces (chance {{0.012}}), recall {{0.64}}. It is not an Eiffel
# latent: it fires on {{0.67}} of the Eiffel pieces, but they are only {{0.10}} of its top 20.
#
# Does " E" feed them? Hardly more than positions that carry nothing about the landmark do,
# which is the same-condition control: the strongest link from " E" into F3.442 ({{+2.150}}) is
# about as large as those from "The" ({{+2.330}}) and from BOS ({{+1.803}}), and half of the link from
# "iff" itself ({{+4.133}}). For F3.468 the link from " E" ({{+1.690}}) is a little larger than those
# from "The" and BOS ({{+1.162}}, {{+1.207}}), and still well under the one from "iff" ({{+4.311}}).
# And the earlier end of the strongest link, {{F0.216}}, is not an " E" latent: it fires on all
# {{17}} " E" tokens of the corpus (recall {{1.00}}) but on {{1433}} tokens in all. None of the {{20}}
# layer-0 latents active on " E" is specific to it: the most specific, {{F0.349}}, has {{20%}} of its
# top activations on " E", far above the chance share of {{0.0006}}, but four fifths elsewhere.
#
# So in this model a latent for the landmark word is there on "iff", but the gradients show no
# " E" → "iff" link into it that stands out from the control: a 512-latent SAE at layer 0
# spreads " E" over broad latents, and the landmark latent is driven by its own token.

# %% [markdown]
# ## 4 · Token → latent gradients
#
# Which input tokens drive a latent? Tokens are discrete, so we need a knob to turn. We scale
# each position's input (token embedding plus positional embedding, i.e. the residual stream
# before block 0) by a factor $s_p$, and take the gradient of the latents with respect to
# $s = (s_1, \dots, s_n)$ at $s = (1, \dots, 1)$. Real models never scale their inputs like
# this, so read the result as a sensitivity, not as a mechanism; it is a cheap way to see which
# positions a latent depends on.

# %% [markdown]
# ### Exercise: implement `tokens_to_latent_acts` and `token_to_latent_gradients`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 20 minutes
#
# - `tokens_to_latent_acts(token_scales, tokens, sae, model)` computes the residual stream
#   before block 0 (`model(tokens, stop_at_layer=0)`), scales position $p$ by
#   `token_scales[..., p]`, runs the model up to the SAE's hook point, encodes, and returns
#   `(values, (dense,))` like `latent_acts_to_later_latent_acts`.
# - `token_to_latent_gradients(tokens, sae, model)` differentiates it at `token_scales` all ones
#   and returns the gradients with shape `(batch, seq, n_active)` (`jacrev` puts the output
#   dimension first: rearrange it) and the activations as a `SparseTensor`.

# %% [exercise]
def tokens_to_latent_acts(token_scales: Tensor, tokens: Tensor, sae, model) -> tuple[Tensor, tuple[Tensor]]:
    """The SAE's latents when the input of position p (token + positional embedding) is scaled by
    token_scales[..., p]. Returns (the nonzero latent activations, (the dense activations,))."""
    # BEGIN SOLUTION
    resid = model(tokens, stop_at_layer=0)  # (batch, seq, d_model): token + positional embeddings
    resid = einops.einsum(resid, token_scales, "batch seq d_model, batch seq -> batch seq d_model")
    resid = model(resid, start_at_layer=0, stop_at_layer=hook_layer(sae))
    latent_acts = SparseTensor.from_dense(sae.encode(resid))
    return latent_acts.sparse[0], (latent_acts.dense,)
    # END SOLUTION


# %% [hint]
# The "input" of a position is the residual stream before block 0: its token embedding plus its
# positional embedding. Scale that vector at each position by that position's factor, then run the
# rest of the model up to the SAE's hook point and encode. With every scale equal to 1 this is the
# ordinary forward pass; a gradient with respect to one scale says how much that position's input
# matters to a latent.

# %% [hint]
# `model(tokens, stop_at_layer=0)` gives the embeddings, `(batch, seq, d_model)`, and running on
# from there uses `start_at_layer=0`. `token_scales` is `(batch, seq)`: it must multiply whole
# `d_model` vectors, one per position, so broadcast it over the last dimension (an einsum, or a
# trailing `None`).

# %% [check]
tests.test_tokens_to_latent_acts(tokens_to_latent_acts)

# %% [exercise]
def token_to_latent_gradients(tokens: Tensor, sae, model) -> tuple[Tensor, "SparseTensor"]:
    """Gradients of the SAE's active latents with respect to the input scale of every position.

    Returns (token_latent_gradients of shape (batch, seq, n_active), latent_acts as a SparseTensor).
    """
    # BEGIN SOLUTION
    token_scales = torch.ones(tokens.shape, device=tokens.device)
    gradients, (latent_acts_dense,) = torch.func.jacrev(tokens_to_latent_acts, has_aux=True)(
        token_scales, tokens, sae, model
    )
    gradients = einops.rearrange(gradients, "n_active batch seq -> batch seq n_active")
    return gradients, SparseTensor.from_dense(latent_acts_dense)
    # END SOLUTION


# %% [hint]
# Differentiate the previous function with respect to the scales, at the point where every scale is
# 1 (the unmodified input). That gives, for every active latent, how its activation changes with
# each position's input. Then reorder the result so that batch and position come first, as the
# docstring asks.

# %% [hint]
# `torch.func.jacrev(tokens_to_latent_acts, has_aux=True)` at `torch.ones(tokens.shape)`. The
# Jacobian comes out as `(n_active, batch, seq)`, the output dimension first, so it needs an
# `einops.rearrange` to `(batch, seq, n_active)`; wrap the auxiliary dense activations with
# `SparseTensor.from_dense`.

# %% [check]
tests.test_token_to_latent_gradients(token_to_latent_gradients, tokens_to_latent_acts)

# %% [markdown]
# The gradients from every input token of our prompt to the active latents of the layer-3 SAE:

# %%
token_grads, token_acts = token_to_latent_gradients(tokens, resid_saes[layer_to], model)
plot_gradients(
    token_grads[0], x=latent_labels(token_acts, layer_to, str_toks), y=[f"{t!r} ({i})" for i, t in enumerate(str_toks)],
    title=f"Gradients from input tokens to layer-{layer_to} SAE latents<br><sup>{prompt!r}</sup>",
    x_title=f"to layer {layer_to}", y_title="from input token",
).update_layout(height=450).show()

# %% [markdown]
# The diagonal band suggests that each latent depends mostly on its own token. Is that more
# than chance? A latent at position $p$ can depend on $p + 1$ positions, so if its largest
# gradient fell on a position at random it would be its own with probability $1/(p+1)$:

# %%
own_pos = token_acts.indices[:, 1]
largest_from = token_grads[0].abs().argmax(0)  # the input position with the largest |gradient|, per latent
past_bos = own_pos > 0  # on BOS there is only one position to depend on
print(f"active layer-{layer_to} latents after BOS whose largest |gradient| is their own token: "
      f"{int((largest_from == own_pos)[past_bos].sum())} of {int(past_bos.sum())} "
      f"({float((largest_from == own_pos)[past_bos].float().mean()):.2f}); "
      f"chance {float((1 / (own_pos[past_bos] + 1)).mean()):.2f}")
print(f"... whose largest |gradient| is BOS: {int((largest_from == 0)[past_bos].sum())}")

# %% [markdown]
# The landmark latent on "iff" found above should depend on " E" as well as on "iff". Here is
# its column:

# %%
column = ((token_acts.indices[:, 1] == pos_iff) & (token_acts.indices[:, 2] == bigram_to)).nonzero().flatten()
if len(column) == 0:
    print(f"F{layer_to}.{bigram_to} is not active on 'iff' in this run")
else:
    for pos, value in enumerate(token_grads[0, :, int(column[0])].tolist()):
        print(f"  {str_toks[pos]!r:10} ({pos}) → F{layer_to}.{bigram_to} on 'iff': {value:+.3f}")

# %% [markdown]
# **What the course world shows.** The diagonal is real: for {{165}} of the {{184}} active layer-3
# latents after BOS the largest gradient comes from their own token ({{0.90}}, against {{0.22}} if
# it fell on a random earlier-or-same position). F3.442 on "iff" is one of them, and clearly so:
# {{+3.506}} from "iff", and from " E", "The" and BOS only {{-0.052}}, {{-0.065}} and {{-0.048}}. The token
# gradient agrees with the latent gradients above: scaling " E" hardly moves this latent.
#
# The two kinds of gradient answer different questions, though, so they need not agree. The
# latent gradient follows one latent through the *replacement* (layer-0 reconstruction, no error
# term). The token gradient scales the whole input of a position in the *real* model: every
# layer-0 latent there moves at once, and so does the part of the residual stream that no latent
# captures, and the attention patterns. It is not a sum of latent-to-latent gradients.

# %% [markdown]
# ## 5 · Latent → logit gradients
#
# The last link of the chain goes from latents to the output: how does each active latent of
# one SAE move the logits at the last position? The function to differentiate decodes the
# latents and runs the model *from the SAE's layer to the end*. A latent has two faces: looking
# back at the input it is a representation, looking forward at the logits it is an action. This
# section looks at the action.
#
# The vocabulary has 1,905 tokens, so a Jacobian over all of them would still be small here; on a
# real model (50k tokens) it would not, so the function takes an optional list of `token_ids`
# and returns only those logits. We differentiate only the `k` logits the model ranks highest.

# %% [markdown]
# ### Exercise: implement `latent_acts_to_logits` and `latent_to_logit_gradients`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 20 minutes
#
# - `latent_acts_to_logits(...)` decodes the latents (sparse form in, as before), runs the
#   model from the SAE's layer to the end (`start_at_layer` with no `stop_at_layer`) and takes
#   the logits of the first sequence at the last position, `logits[0, -1]`. It returns
#   `(logits[token_ids], (logits,))`, or `(logits, (logits,))` when `token_ids` is None.
# - `latent_to_logit_gradients(tokens, sae, model, k)` gets the model's true logits and the SAE's
#   true activations in one run (the error term again), picks `token_ids`, the `k` largest true
#   logits (best first; all tokens if `k` is None), and differentiates. It returns the gradients
#   `(len(token_ids), n_active)`, the true logits and the reconstructed logits (both `(d_vocab,)`,
#   last position), `token_ids` and the activations as a `SparseTensor`. Batches of one only.

# %% [exercise]
def latent_acts_to_logits(
    latent_acts_nonzero: Tensor,
    latent_acts_nonzero_inds: Tensor,
    latent_acts_shape: tuple[int, ...],
    sae,
    model,
    token_ids: list[int] | None = None,
) -> tuple[Tensor, tuple[Tensor]]:
    """The last position's logits computed from the SAE's reconstruction (no error term).

    Returns (logits[token_ids] or all logits if token_ids is None, (all logits,)), logits of shape (d_vocab,).
    """
    # BEGIN SOLUTION
    latent_acts = SparseTensor.from_sparse((latent_acts_nonzero, latent_acts_nonzero_inds, latent_acts_shape)).dense
    logits_recon = model(sae.decode(latent_acts), start_at_layer=hook_layer(sae))[0, -1]
    selected = logits_recon if token_ids is None else logits_recon[token_ids]
    return selected, (logits_recon,)
    # END SOLUTION


# %% [hint]
# The same pattern as `latent_acts_to_later_latent_acts`, but the path ends at the logits: rebuild
# the dense latents, decode them into the residual stream at the SAE's hook point, and run the rest
# of the model from there, with no error term. Keep only the last position of the single prompt,
# and select the requested tokens only when some are given.

# %% [hint]
# `start_at_layer=hook_layer(sae)` and no `stop_at_layer` runs to the logits, shape `(1, seq,
# d_vocab)`, so take `[0, -1]`. The auxiliary is always all the logits, even when `token_ids`
# selects some.

# %% [check]
tests.test_latent_acts_to_logits(latent_acts_to_logits)

# %% [exercise]
def latent_to_logit_gradients(tokens: Tensor, sae, model, k: int | None = None):
    """Gradients between the SAE's active latents and the k largest logits at the last position.

    Returns (latent_logit_gradients, logits, logits_recon, token_ids, latent_acts):
        latent_logit_gradients  (len(token_ids), n_active), or (d_vocab, n_active) if k is None
        logits                  (d_vocab,) the model's true logits at the last position
        logits_recon            (d_vocab,) the logits computed from the SAE's reconstruction
        token_ids               the k tokens with the largest true logits, largest first (None if k is None)
        latent_acts             SparseTensor, the SAE's true activations
    """
    assert tokens.shape[0] == 1, "batches of one only"
    # BEGIN SOLUTION
    with torch.no_grad():  # true logits and true latents from one run
        logits, cache = model.run_with_cache_with_saes(
            tokens, saes=[sae], use_error_term=True, names_filter=[sae_acts_name(sae)]
        )
    latent_acts = SparseTensor.from_dense(cache[sae_acts_name(sae)])
    logits = logits[0, -1]
    token_ids = None if k is None else logits.topk(k).indices.tolist()

    latent_logit_gradients, (logits_recon,) = torch.func.jacrev(latent_acts_to_logits, has_aux=True)(
        *latent_acts.sparse, sae, model, token_ids
    )
    return latent_logit_gradients, logits, logits_recon, token_ids, latent_acts
    # END SOLUTION


# %% [hint]
# As in `latent_to_latent_gradients`: one forward pass without gradients, with the SAE spliced in
# and its error term kept, gives both the true logits and the true latent activations. Choose the k
# tokens with the largest true logits at the last position, then take the Jacobian of
# `latent_acts_to_logits` with respect to the nonzero activations, for those tokens only.

# %% [hint]
# `run_with_cache_with_saes(..., use_error_term=True)` caching `sae_acts_name(sae)`; the token ids
# are `topk(k)` of the last position's true logits, as a list, largest first (None when `k` is
# None). Then `jacrev(latent_acts_to_logits, has_aux=True)` on `*latent_acts.sparse`, `sae`,
# `model`, `token_ids` returns the gradients and `(logits_recon,)`.

# %% [check]
tests.test_latent_to_logit_gradients(latent_to_logit_gradients, latent_acts_to_logits)

# %% [markdown]
# Before reading gradients from the replacement, check that it still does the task. Here is
# the prompt run by the model alone, and then with the SAE spliced in (no error term):

# %%
from transformer_lens.utils import test_prompt

logit_layer = 2
logit_sae = resid_saes[logit_layer]
test_prompt(prompt, " Paris", model, top_k=5)
with model.saes(saes=[logit_sae], use_error_term=False):
    test_prompt(prompt, " Paris", model, top_k=5)

# %% [markdown]
# The gradients from each active layer-2 latent to the 10 largest logits, columns sorted by
# their gradient on " Paris" (the first row):

# %%
k = 10
logit_grads, logits, logits_recon, token_ids, logit_acts = latent_to_logit_gradients(tokens, logit_sae, model, k=k)
order = logit_grads[0].argsort(descending=True)
plot_gradients(
    logit_grads[:, order], x=[latent_labels(logit_acts, logit_layer, str_toks)[i] for i in order.tolist()],
    y=[repr(t) for t in model.to_str_tokens(torch.tensor(token_ids))],
    title=f"Gradients from layer-{logit_layer} SAE latents to the top {k} logits<br><sup>{prompt!r}</sup>",
    x_title=f"latent in layer {logit_layer}", y_title="logit",
).update_layout(height=450).show()

# %% [markdown]
# ### Finding: the latents that push towards " Paris"
#
# Which latents raise the " Paris" logit most, and where do they sit? A latent on the last
# token carries what the model has gathered so far; a latent on an earlier token can only act
# through attention, as *context*. A latent that raises every city name says "a city comes
# next"; to find what makes the answer *Paris*, rank the latents by how much more they raise
# " Paris" than the other top candidates (the gradient on " Paris" minus the mean gradient on
# the other 9 logits).

# %%
assert token_ids[0] == paris, "the model's top prediction should be ' Paris'"
layer_corpus = corpus_acts[f"resid_pre_{logit_layer}"]
truths = {"landmark": is_landmark, "Eiffel": is_eiffel, "city:Paris": concept(data, "city:Paris"),
          "country:France": concept(data, "country:France")}


def describe(latent: int) -> str:
    shares = ", ".join(f"{name} {top_share(layer_corpus[..., latent], truth, data):.2f}" for name, truth in truths.items())
    return f"top-20 share: {shares}"


print("Largest gradients on ' Paris':")
for value, i in zip(*logit_grads[0].topk(3)):
    _, pos, latent = logit_acts.indices[int(i)].tolist()
    print(f"  F{logit_layer}.{latent} on {str_toks[pos]!r} ({pos}): {value:+.3f}; {describe(latent)}")
top_column = int(logit_grads[0].argmax())
top_latent = int(logit_acts.indices[top_column, 2])
print(f"F{logit_layer}.{top_latent} fires on {int((layer_corpus[..., top_latent] > 0).sum())} corpus tokens; "
      f"its gradients on the top {k} logits:")
print("  " + ", ".join(f"{model.tokenizer.decode([t])!r} {g:+.2f}" for t, g in zip(token_ids, logit_grads[:, top_column].tolist())))

specific = logit_grads[0] - logit_grads[1:].mean(0)  # more for Paris than for the other candidates
earlier = logit_acts.indices[:, 1] < len(str_toks) - 1
print("\nContext latents (earlier positions), by their extra push towards ' Paris':")
for value, i in zip(*specific.masked_fill(~earlier, -torch.inf).topk(3)):
    _, pos, latent = logit_acts.indices[int(i)].tolist()
    print(f"  F{logit_layer}.{latent} on {str_toks[pos]!r} ({pos}): {value:+.3f}; {describe(latent)}")
print(f"null: extra push of all {int(earlier.sum())} active latents at earlier positions: "
      f"median {specific[earlier].median():+.3f}, 90th percentile {specific[earlier].quantile(0.9):+.3f}")
context_index = int(specific.masked_fill(~earlier, -torch.inf).argmax())
_, context_pos, paris_context = logit_acts.indices[context_index].tolist()
print(f"\ncontext latent: F{logit_layer}.{paris_context} on {str_toks[context_pos]!r}")
for name, truth in truths.items():
    print("  ", score(layer_corpus[..., paris_context], truth, data, f"concept {name}"))
print("   its best concepts:", "; ".join(str(m) for m in best_concepts(layer_corpus[..., paris_context], data, n=2)))

# %% [markdown]
# Is the context latent a "Paris" latent, or does it push whatever city the prompt is about?
# The same-condition control: run the same analysis on the 24 landmark prompts of section 1,
# and wherever the latent is active on a piece of the landmark's name, take its extra push
# towards *that prompt's* answer (the model's top prediction, when it is the right city).

# %%
context_pushes = []  # (landmark, piece, extra push towards that prompt's answer)
all_piece_pushes = []  # the same for every active latent on a landmark piece: the null
for landmark, lm_tokens, answer in zip(LANDMARKS, landmark_tokens, landmark_answers.tolist()):
    with torch.enable_grad():
        lm_grads, _, _, lm_ids, lm_acts = latent_to_logit_gradients(lm_tokens[None], logit_sae, model, k=k)
    if lm_ids[0] != answer:
        continue
    lm_specific = lm_grads[0] - lm_grads[1:].mean(0)
    lm_str = model.to_str_tokens(lm_tokens)
    for j, (_, pos, latent) in enumerate(lm_acts.indices.tolist()):
        if lm_str[pos] in landmark.pieces:
            all_piece_pushes.append(float(lm_specific[j]))
            if latent == paris_context:
                context_pushes.append((landmark.name, lm_str[pos], float(lm_specific[j])))
pushes = torch.tensor([push for *_, push in context_pushes])
print(f"F{logit_layer}.{paris_context} is active on a landmark piece in {len({n for n, *_ in context_pushes})} of 24 prompts "
      f"({len(pushes)} pieces); its extra push towards that prompt's answer is positive on {int((pushes > 0).sum())}:")
print("  " + ", ".join(f"{name} {piece!r} {push:+.2f}" for name, piece, push in sorted(context_pushes, key=lambda c: -c[2])))
null_pushes = torch.tensor(all_piece_pushes)
print(f"null: all {len(null_pushes)} active (latent, piece) pairs on landmark pieces: positive on "
      f"{float((null_pushes > 0).float().mean()):.2f}, median {null_pushes.median():+.3f}, "
      f"90th percentile {null_pushes.quantile(0.9):+.3f}; F{logit_layer}.{paris_context}: positive on "
      f"{float((pushes > 0).float().mean()):.2f}, median {pushes.median():+.3f}")

# %% [markdown]
# **What the course world shows.** With the layer-2 SAE spliced in, the model still answers
# " Paris" (and more confidently, {{98.61}}% against {{91.85}}%; section 1 showed that the SAE costs
# no more confidence than a random error of its size over all 24 landmark prompts). The latents
# with the largest gradient on " Paris" sit on the last token, " of". The first, {{F2.242}}
# ({{+0.618}}), is no "Paris" latent: it fires on {{9138}} of the {{26477}} corpus tokens, and among the top
# logits it also raises " Madrid" ({{+0.53}}) and " Barcelona" ({{+0.29}}) while lowering " Rome" ({{-0.43}})
# and " Berlin" ({{-0.32}}).
#
# The context comes in through earlier positions. Ranked by their extra push towards " Paris"
# over the other nine candidates, the top latent is **{{F2.139}} on "el"** ({{+0.354}}), but its lead is
# thin: F2.242 on " the" ({{+0.345}}) and F2.52 on "el" ({{+0.342}}) follow within 0.02. All three stand
# far above the other latents at earlier positions (median {{+0.000}}, 90th percentile {{+0.069}}
# over {{183}}). F2.139 is a landmark latent: precision {{0.16}} for landmark pieces (chance 0.012),
# recall {{0.82}}, and its best concept is `landmark`. It fires on every Eiffel piece, but with
# precision {{0.01}} for them.
#
# The same-condition control settles what it is: F2.139 is active on a landmark piece in {{17}} of
# the 24 landmark prompts, and on {{24}} of those {{33}} pieces ({{0.73}}) it pushes towards *that* prompt's
# city, most of all towards Madrid from the Escorial's "scor" ({{+0.37}}). So it is no Paris latent.
# Is it a "landmark → its city" latent? Only weakly. Every latent active on a landmark piece is
# the null here ({{1663}} pairs of latent and piece): {{0.56}} of them push towards the prompt's city,
# with a median push of {{+0.004}} and a 90th percentile of {{+0.074}}. F2.139 leans the right way more
# often, and its median push ({{+0.050}}) is above the typical latent's, but below that 90th
# percentile: on most pieces it is one small contributor among many, and on a few it pushes the
# wrong way (the Escorial's "ial" {{-0.19}}, the Acropolis's "polis" {{-0.11}}). Its large push on the
# Eiffel prompt is the exception, not the rule. A gradient is local: it says what a latent does in
# this context, not what it does everywhere.

# %% [markdown]
# ## 6 · Attention SAEs and induction
#
# Attention-output SAEs read `blocks.ℓ.attn.hook_z`: the output of every head *before* the
# output matrix $W_O$, all heads concatenated (`sae_lens` flattens `(..., n_heads, d_head)` into
# `(..., n_heads · d_head)`, and its `decode` gives the shape back once it has seen an input).
# A latent of such an SAE is therefore a pattern across heads: it can live mostly in one head,
# or spread over several.
#
# Their gradients can show the best-known circuit of all, **induction**. On a sequence that repeats,
# `… A B … A`, two heads cooperate to predict `B`:
#
# - a **previous-token head** writes into each position "the previous token was `A`", so the
#   first `B` carries "I follow `A`";
# - an **induction head** at the second `A` looks for a position that follows an `A`, finds the
#   first `B`, and copies `B` forward as the prediction.
#
# Let's find such heads in the course model on runs of random words repeated once. The
# previous-token score of a head is its mean attention from each position to the one before;
# the induction score is its mean attention from the second copy to the token after the first
# copy of the current token. A score needs a chance level: a head that spread its attention
# evenly over the positions it can see would score $1/(p+1)$ at position $p$, averaged over the
# positions scored. And one run of random words is one sample, so we score 20 runs and give the
# median with the 10th and 90th percentiles.

# %%
from utils.world.prompts import repeated_random_tokens

half, n_runs = 10, 20
rep_runs = torch.tensor([model.tokenizer.convert_tokens_to_ids(run) for run in repeated_random_tokens(n_runs, half, seed=0)])
rep_tokens = rep_runs[:1]  # the first run is our example below
rep_str = model.to_str_tokens(rep_tokens)
print(repr("".join(rep_str)))

_, rep_cache = model.run_with_cache(rep_runs, names_filter=lambda name: name.endswith("hook_pattern"))
patterns = torch.stack([rep_cache["pattern", layer] for layer in range(cfg.n_layers)], 1)  # (run, layer, head, q, k)
previous_scores = patterns.diagonal(-1, dim1=-2, dim2=-1).mean(-1)  # attention to the position just before
induction_scores = patterns.diagonal(-(half - 1), dim1=-2, dim2=-1)[..., 1:].mean(-1)  # second A -> first B
seq = 2 * half + 1
chance_previous = sum(1 / (p + 1) for p in range(1, seq)) / (seq - 1)
chance_induction = sum(1 / (p + 1) for p in range(half + 1, seq)) / half
print(f"chance: previous-token {chance_previous:.2f}, induction {chance_induction:.2f}")
print("head  previous-token score (10th to 90th pct.)  induction score (10th to 90th pct.)")
q = torch.tensor([0.1, 0.5, 0.9])
for layer in range(cfg.n_layers):
    for head in range(cfg.n_heads):
        p10, p50, p90 = previous_scores[:, layer, head].quantile(q).tolist()
        i10, i50, i90 = induction_scores[:, layer, head].quantile(q).tolist()
        print(f"{layer}.{head}   {p50:.2f} ({p10:.2f} to {p90:.2f})                    {i50:.2f} ({i10:.2f} to {i90:.2f})")

# %% [markdown]
# **What the course world shows.** Induction is clear and sits in layer 3: heads 3.0, 3.2 and 3.1
# score {{0.76}}, {{0.72}} and {{0.65}} (10th percentiles {{0.66}}, {{0.56}}, {{0.53}}) against a chance level of
# {{0.06}}, and no head of layers 0–2 gets above {{0.07}}. Previous-token attention is weaker and
# spread out: the best head, 2.3, scores {{0.40}} ({{0.33}}–{{0.42}}), the heads 0.0–0.2 score {{0.27}} to
# {{0.30}}, and the chance level is {{0.13}}. So "the induction heads of layer 3" is a fair claim here,
# while "the" previous-token head would overclaim: several heads share the job and none of them
# gives the previous token even half of its attention.
#
# The attention patterns of heads 2.3 and 3.0 on the first run (hover over a token to see where
# it attends). circuitsvis usually fetches its JavaScript from a CDN; `attention_patterns` shows it from the copy bundled
# with the package, so the pattern renders offline too, and adds a static heatmap that is what
# you see where scripts cannot run (a notebook executed elsewhere and opened untrusted).

# %%
from utils.dashboard import attention_patterns

heads = [(2, 3), (3, 0)]
try:
    display(attention_patterns(torch.stack([rep_cache["pattern", layer][0, head] for layer, head in heads]),
                               rep_str, [f"{layer}.{head}" for layer, head in heads]))
except Exception as err:  # circuitsvis is optional for the rest of the chapter
    print(f"circuitsvis could not render ({err}); here is the same as a heatmap.")
    for layer, head in heads:
        px.imshow(rep_cache["pattern", layer][0, head], x=rep_str, y=rep_str, title=f"head {layer}.{head}").show()

# %% [markdown]
# ### Exercise: gradients between attention SAEs
#
# > Difficulty: 🔴🔴🔴🔴⚪ · Importance: 🔵🔵🔵⚪⚪ · about 30 minutes
#
# The path from an attention SAE at layer $\ell_1$ to one at layer $\ell_2$ is: put the earlier
# SAE's reconstruction in place of `hook_z` at layer $\ell_1$, run the model on from the residual
# stream *before* block $\ell_1$, and read `hook_z` at layer $\ell_2$. Everything else in the
# blocks in between (the rest of block $\ell_1$, including its MLP, and the blocks after it)
# runs as usual. Hooks do both jobs:
# `model.run_with_hooks(resid_pre, start_at_layer=ℓ1, stop_at_layer=ℓ2 + 1, fwd_hooks=[...])`
# with one hook that *returns* the replacement `z` and one that stores the `z` it sees.
#
# - `latent_acts_to_later_latent_acts_attn` gets the sparse earlier activations, both SAEs, the
#   model and `resid_pre_clean`, the clean residual stream at `blocks.ℓ1.hook_resid_pre`. The
#   reconstruction must have the shape of `z`, `(batch, seq, n_heads, d_head)`.
# - `latent_to_latent_gradients_attn` is `latent_to_latent_gradients` again, except that the run
#   with both SAEs must also cache `blocks.ℓ1.hook_resid_pre`.

# %% [exercise]
def latent_acts_to_later_latent_acts_attn(
    latent_acts_nonzero: Tensor,
    latent_acts_nonzero_inds: Tensor,
    latent_acts_shape: tuple[int, ...],
    sae_from,
    sae_to,
    model,
    resid_pre_clean: Tensor,
) -> tuple[Tensor, tuple[Tensor]]:
    """The later attention SAE's latents when the earlier attention SAE's reconstruction replaces
    hook_z at its layer. resid_pre_clean is the clean residual stream before sae_from's block.

    Returns (the nonzero later activations, (the dense later activations,)).
    """
    # BEGIN SOLUTION
    latent_acts = SparseTensor.from_sparse((latent_acts_nonzero, latent_acts_nonzero_inds, latent_acts_shape)).dense
    z_recon = sae_from.decode(latent_acts)
    stored = {}

    def replace_z(z: Tensor, hook) -> Tensor:
        return z_recon.reshape(z.shape)  # (batch, seq, n_heads * d_head) -> (batch, seq, n_heads, d_head)

    def store_z(z: Tensor, hook) -> None:
        stored["z"] = z

    model.run_with_hooks(
        resid_pre_clean,
        start_at_layer=hook_layer(sae_from),
        stop_at_layer=hook_layer(sae_to) + 1,
        fwd_hooks=[(sae_from.cfg.metadata.hook_name, replace_z), (sae_to.cfg.metadata.hook_name, store_z)],
    )
    latent_acts_next = SparseTensor.from_dense(sae_to.encode(stored["z"]))
    return latent_acts_next.sparse[0], (latent_acts_next.dense,)
    # END SOLUTION


# %% [hint]
# An attention SAE reads and writes `hook_z`, the per-head outputs of attention before they are
# mixed into the residual stream, so decoding and running whole blocks does not work here. Instead,
# run the model from the clean residual stream at the earlier SAE's layer and, during that run,
# *replace* `hook_z` at the earlier layer by the earlier SAE's reconstruction and *record* `hook_z`
# at the later layer. Encode what you recorded with the later SAE.

# %% [hint]
# Two forward hooks in one `model.run_with_hooks` call (hook names from
# `sae.cfg.metadata.hook_name`); a hook that returns a tensor replaces the activation. The decoder
# gives `(batch, seq, n_heads * d_head)` but `hook_z` is `(batch, seq, n_heads, d_head)`, so
# reshape to `z.shape`. Stop at `hook_layer(sae_to) + 1`, or the later `hook_z` never runs.

# %% [check]
tests.test_latent_acts_to_later_latent_acts_attn(latent_acts_to_later_latent_acts_attn)

# %% [exercise]
def latent_to_latent_gradients_attn(tokens: Tensor, sae_from, sae_to, model):
    """latent_to_latent_gradients for two attention (hook_z) SAEs: same four outputs."""
    # BEGIN SOLUTION
    resid_name = f"blocks.{hook_layer(sae_from)}.hook_resid_pre"
    names = [sae_acts_name(sae_from), sae_acts_name(sae_to)]
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(
            tokens, saes=[sae_from, sae_to], use_error_term=True, names_filter=[resid_name, *names],
            stop_at_layer=hook_layer(sae_to) + 1,
        )
    latent_acts_prev = SparseTensor.from_dense(cache[names[0]])
    latent_acts_next = SparseTensor.from_dense(cache[names[1]])

    latent_latent_gradients, (next_recon_dense,) = torch.func.jacrev(latent_acts_to_later_latent_acts_attn, has_aux=True)(
        *latent_acts_prev.sparse, sae_from, sae_to, model, cache[resid_name]
    )
    return latent_latent_gradients, latent_acts_prev, latent_acts_next, SparseTensor.from_dense(next_recon_dense)
    # END SOLUTION


# %% [hint]
# The same two stages as `latent_to_latent_gradients`. The one new ingredient is the clean residual
# stream that the attention path starts from: capture it in the same no-gradient run and pass it
# on.

# %% [hint]
# Add `blocks.{hook_layer(sae_from)}.hook_resid_pre` to the cached names; it is the last argument
# of `latent_acts_to_later_latent_acts_attn`.

# %% [check]
tests.test_latent_to_latent_gradients_attn(latent_to_latent_gradients_attn, latent_acts_to_later_latent_acts_attn)

# %% [markdown]
# The induction heads sit in layer 3, so the later SAE is the layer-3 attention SAE. For the
# earlier one we take layer 1's: below we compare it with layer 2's, and layer 1's gradients
# gather more consistently where induction acts. Here are the gradients between them
# on the first run. Each black rectangle marks one place where induction should act: from a
# layer-1 latent on a first-half token $B$ (position $p$) to a layer-3 latent on the token just
# before the second $B$, i.e. the second $A$ (position $p + $ `half` $- 1$).

# %%
attn_from, attn_to = 1, 3
attn_grads, attn_prev, attn_next, attn_next_recon = latent_to_latent_gradients_attn(
    rep_tokens, attn_saes[attn_from], attn_saes[attn_to], model
)
alive_counts(attn_next, attn_next_recon)
fig = plot_gradients(
    attn_grads, x=latent_labels(attn_prev, attn_from, rep_str), y=latent_labels(attn_next_recon, attn_to, rep_str),
    title=f"Gradients from layer-{attn_from} to layer-{attn_to} attention SAE latents (repeated random words)",
    x_title=f"from layer {attn_from}", y_title=f"to layer {attn_to}",
)
prev_pos, next_pos = attn_prev.indices[:, 1], attn_next_recon.indices[:, 1]
for first_b in range(2, half + 2):
    second_a = first_b + half - 1
    # Entries are sorted by position, so each position is a contiguous band of rows/columns.
    x0, x1 = int((prev_pos < first_b).sum()), int((prev_pos <= first_b).sum())
    y0, y1 = int((next_pos < second_a).sum()), int((next_pos <= second_a).sum())
    fig.add_shape(type="rect", x0=x0 - 0.5, x1=x1 - 0.5, y0=y0 - 0.5, y1=y1 - 0.5, line=dict(color="black"))
fig.show()

# %% [markdown]
# The heatmap is large. Induction latents should be active **through the repeated half** and
# rarely in the first half, where nothing can be predicted yet. We count, for each layer-3
# latent, the positions it is active on in each half, keep those active on at least half of
# the repeated half and on at most a fifth of the first half, and plot only them (on the
# repeated half) against the layer-1 latents on first-half tokens.

# %%
second_half = next_pos >= half + 1
counts_second = Counter(attn_next_recon.indices[second_half, 2].tolist())
counts_first = Counter(attn_next_recon.indices[~second_half, 2].tolist())
induction_latents = sorted((l for l, n in counts_second.items() if n >= half / 2 and counts_first[l] <= half / 5),
                           key=lambda l: counts_first[l] - counts_second[l])
for latent in induction_latents:
    print(f"F{attn_to}.{latent}: active on {counts_second[latent]} of {half} repeated positions, "
          f"{counts_first[latent]} of {half} first-half positions")

keep_next = second_half & torch.isin(attn_next_recon.indices[:, 2], torch.tensor(induction_latents, dtype=torch.long))
keep_prev = (prev_pos >= 1) & (prev_pos <= half)
filtered = attn_grads[keep_next][:, keep_prev]
plot_gradients(
    filtered, x=[l for l, k in zip(latent_labels(attn_prev, attn_from, rep_str), keep_prev) if k],
    y=[l for l, k in zip(latent_labels(attn_next_recon, attn_to, rep_str), keep_next) if k],
    title=f"Induction latents (repeated half) against layer-{attn_from} latents (first half)",
    x_title=f"from layer {attn_from}", y_title=f"to layer {attn_to}",
).update_layout(height=500).show()

# %% [markdown]
# Do the gradients into the induction latents gather where the circuit says, from the first $B$
# to the second $A$, i.e. at a distance of `half` $- 1$ = 9 positions? A sceptic would ask
# whether any other distance gathers as much, so we sum the gradients into the induction
# latents over every pair of positions at each distance, and rank the circuit's distance among
# all of them (a null over distances: about 30 distances, so rank 1 by chance about one time
# in 30). One run is one sample, so we repeat it on the first 5 runs, from the attention SAEs
# of layers 1 and 2.


# %%
def gradient_by_distance(grads: Tensor, acts_from: "SparseTensor", acts_to: "SparseTensor", keep: Tensor) -> Counter:
    """Summed gradient into the kept rows, by distance (position to - position from)."""
    by_distance = Counter()
    dist = acts_to.indices[keep, 1][:, None] - acts_from.indices[:, 1][None, :]
    for d, value in zip(dist.flatten().tolist(), grads[keep].flatten().tolist()):
        by_distance[d] += value
    return by_distance


def induction_rows(acts: "SparseTensor") -> Tensor:
    """Rows of the induction latents (the filter above) on the repeated half."""
    second = acts.indices[:, 1] >= half + 1
    n_second, n_first = Counter(acts.indices[second, 2].tolist()), Counter(acts.indices[~second, 2].tolist())
    chosen = [l for l, n in n_second.items() if n >= half / 2 and n_first[l] <= half / 5]
    return second & torch.isin(acts.indices[:, 2], torch.tensor(chosen, dtype=torch.long))


n_distance_runs = 5
print(f"from layer   rank of distance 9 by |summed gradient|, runs 0-{n_distance_runs - 1}   summed gradient at distance 9")
for source_layer in (1, 2):
    ranks, sums_at_9 = [], []
    for run in range(n_distance_runs):
        if source_layer == attn_from and run == 0:
            g, a_from, a_to = attn_grads, attn_prev, attn_next_recon
        else:
            g, a_from, _, a_to = latent_to_latent_gradients_attn(rep_runs[run:run + 1], attn_saes[source_layer],
                                                                 attn_saes[attn_to], model)
        sums = gradient_by_distance(g, a_from, a_to, induction_rows(a_to))
        ranked = sorted(sums, key=lambda d: -abs(sums[d]))
        ranks.append(f"{ranked.index(half - 1) + 1}/{len(sums)}" if half - 1 in sums else "-")
        sums_at_9.append(sums[half - 1])
    print(f"{source_layer:>10}   {'  '.join(f'{r:>5}' for r in ranks)}{'':16}{' '.join(f'{v:+6.2f}' for v in sums_at_9)}")

# %% [markdown]
# Which layer-1 latents carry the gradient at distance 9 on the first run? Sum each one's
# gradients over those places, and keep the three largest in size (the sign matters below):

# %%
feeding = Counter()
for row, (_, pos_to, latent_to) in zip(attn_grads[keep_next], attn_next_recon.indices[keep_next].tolist()):
    first_b = pos_to - half + 1
    for value, (_, pos_from, latent_from) in zip(row.tolist(), attn_prev.indices.tolist()):
        if pos_from == first_b:
            feeding[latent_from] += value
feeding_latents = sorted(feeding, key=lambda l: -abs(feeding[l]))[:3]
for latent in feeding_latents:
    print(f"F{attn_from}.{latent}: summed gradient {feeding[latent]:+.3f} into the induction latents")

# %% [markdown]
# Now check both kinds against the corpus. An induction latent should fire on the repeated half
# of repeated runs (the concept `p3_repeat`); its chance level is the share of such tokens, and
# we compare its top-20 share with every other latent of the layer. A previous-token latent's
# activation should depend on the token *before* it more than on its own token:
# `token_dependence` measures the share of the variance of a latent's activation over the corpus
# that the identity of one token explains, and the null is the same difference for every latent
# of the layer. And its decoder should sit mostly in a previous-token head (a uniform share would
# be 0.25 per head).

# %%
is_repeat = concept(data, "p3_repeat")
print(f"chance: {int(is_repeat.sum())} of {n_tokens} corpus tokens are p3_repeat ({is_repeat.sum() / n_tokens:.3f})")
attn_to_corpus, attn_from_corpus = corpus_acts[f"attn_z_{attn_to}"], corpus_acts[f"attn_z_{attn_from}"]
repeat_shares = top_shares(attn_to_corpus, is_repeat)[alive(attn_to_corpus)]
print(f"null: top-20 p3_repeat share of the {len(repeat_shares)} layer-{attn_to} latents that fire at least 20 times: "
      f"median {repeat_shares.median():.2f}, 90th percentile {repeat_shares.quantile(0.9):.2f}")
for latent in induction_latents:
    acts_l = attn_to_corpus[..., latent]
    print(f"F{attn_to}.{latent}:", score(acts_l, is_repeat, data, "concept p3_repeat"),
          f"| top-20 share {top_share(acts_l, is_repeat, data):.2f}")


def token_dependences(acts: Tensor, previous: bool = False) -> Tensor:
    """`token_dependence` of every latent at once: the share of the variance of its activation that
    the identity of its own token (or of the previous token) explains."""
    tokens = data.tokens if not previous else torch.cat([data.tokens[:, :1], data.tokens[:, :-1]], 1)
    values, ids = acts[data.mask].double(), tokens[data.mask]
    centred = values - values.mean(0)
    sums = torch.zeros(int(ids.max()) + 1, acts.shape[-1], dtype=torch.double).index_add_(0, ids, centred)
    counts = torch.bincount(ids).double()[:, None].clamp_min(1)
    return ((sums**2 / counts).sum(0) / (centred**2).sum(0).clamp_min(1e-30)).float()


def previous_minus_own(acts_l: Tensor) -> float:
    return token_dependence(acts_l, data, previous=True) - token_dependence(acts_l, data)


null_difference = (token_dependences(attn_from_corpus, previous=True) - token_dependences(attn_from_corpus))[alive(attn_from_corpus)]
print(f"\nnull: previous-token minus own-token variance explained, {len(null_difference)} layer-{attn_from} latents: "
      f"10th / 50th / 90th percentile {' / '.join(f'{v:+.2f}' for v in null_difference.quantile(q).tolist())}")
head_share = attn_saes[attn_from].W_dec.reshape(-1, cfg.n_heads, cfg.d_head).norm(dim=-1) ** 2
head_share = head_share / head_share.sum(-1, keepdim=True)
print(f"layer-{attn_from} latents with more than half of their decoder in one head: "
      f"{float((head_share.max(-1).values > 0.5).float().mean()):.2f}")
for latent in feeding_latents:
    acts_l = attn_from_corpus[..., latent]
    print(f"F{attn_from}.{latent}: previous {token_dependence(acts_l, data, previous=True):.2f}, "
          f"own {token_dependence(acts_l, data):.2f} (difference {previous_minus_own(acts_l):+.2f}); "
          f"decoder share per head {attn_from}.0-{attn_from}.3: {', '.join(f'{x:.2f}' for x in head_share[latent].tolist())}")
if induction_latents:
    display(display_dashboard(attn_saes[attn_to], induction_latents[0], model=model, data=data))

# %% [markdown]
# **What the course world shows.** Six layer-3 attention latents pass the filter, active on 5 or
# 6 of the 10 repeated positions and on at most 2 first-half positions: {{F3.69}}, {{F3.13}},
# {{F3.147}}, {{F3.351}}, {{F3.208}} and {{F3.430}}. The corpus confirms them as **induction latents**, with
# a margin that is real but not unique to them: their precision for `p3_repeat` is {{0.23}} to
# {{0.59}} (chance {{0.041}}), and {{0.65}} to {{1.00}} of their 20 strongest activations lie on repeated
# halves, against a median of {{0.05}} over the {{292}} layer-3 latents; but a tenth of those latents
# reach {{0.85}} too. Layer 3 is where this model does induction, and many of its attention latents
# take part.
#
# The gradients from layer 1 gather where the circuit predicts: in all 5 runs, distance 9 carries
# the largest summed gradient (in size) of about 30 distances, which chance would give about once
# in 30 runs. From layer 2 it does so in 1 run of 5 (ranks 1 to 5). The size
# and the sign vary from run to run ({{-13.27}}, {{-2.00}}, {{-2.79}}, {{+4.55}}, {{-3.48}} from layer 1): raising
# these latents at the first $B$ can raise or lower the induction latents at the second $A$. The
# first $B$ reaches the induction head by two routes, where it attends (through the keys) and
# what it copies (through the values), and a summed gradient does not tell them apart.
#
# Nor are the layer-1 latents that carry it on the first run previous-token latents. {{F1.73}},
# {{F1.42}} and {{F1.336}} (summed gradients {{-2.013}}, {{-1.712}}, {{+1.243}}) are explained by the previous
# token no more than by their own (differences {{+0.00}}, +0.00 and {{-0.01}}), which is what a typical
# layer-1 latent shows (median {{+0.02}}, 10th–90th percentile {{-0.02}} to {{+0.10}} over {{316}}), and the
# heads of layer 1 are weak previous-token heads anyway (at most {{0.22}}, chance 0.13). Their
# decoders are spread over the heads too (largest head shares {{0.47}}, {{0.35}}, {{0.48}}), like most of
# the layer: only {{0.18}} of the layer-1 latents have more than half of their decoder in one head. So the SAE
# gradients locate the induction interaction, but in this model they do not draw the textbook
# picture of a previous-token latent feeding an induction latent.

# %% [markdown]
# ## 7 · On a real model
#
# None of the functions above knows about the course world: they take a `HookedSAETransformer`
# and `sae_lens` SAEs. With a network, the cell below runs two of them on GPT-2 small and its
# public residual-stream SAEs `gpt2-small-res-jb` (24,576 latents per layer; about 0.6 GB to
# download the first time). Offline it prints one line and skips. Try the other functions too.

# %%
from utils.real_models import HubUnavailable, load_gpt2_small, load_pretrained_sae

try:
    gpt2 = load_gpt2_small()
    gpt2_saes = {layer: load_pretrained_sae("gpt2-small-res-jb", f"blocks.{layer}.hook_resid_pre") for layer in (0, 3, 9)}
except HubUnavailable as err:
    print(f"Skipping the GPT-2 section: {err}")
else:
    gpt2_tokens = gpt2.to_tokens(prompt)
    g_grads, g_prev, g_next, g_recon = latent_to_latent_gradients(gpt2_tokens, gpt2_saes[0], gpt2_saes[3], gpt2)
    print("GPT-2 small, layer 0 → 3 Jacobian:", tuple(g_grads.shape))
    alive_counts(g_next, g_recon)
    g_logit_grads, g_logits, _, g_ids, g_acts = latent_to_logit_gradients(gpt2_tokens, gpt2_saes[9], gpt2, k=10)
    print("top predictions:", gpt2.to_str_tokens(torch.tensor(g_ids)))
    best = g_logit_grads[0].topk(3)
    for value, i in zip(best.values.tolist(), best.indices.tolist()):
        _, pos, latent = g_acts.indices[i].tolist()
        print(f"F9.{latent} on {gpt2.to_str_tokens(gpt2_tokens)[pos]!r}: gradient {value:+.3f} on {gpt2.to_string(g_ids[0])!r}")

# %% [markdown]
# ## Summary
#
# Gradients between sparse dictionaries are cheap when they are taken with respect to the active
# latents only, and they point at candidate circuits; the course world's labels, and a control
# for every comparison, then say which candidates mean what they seem to. In this model
# (the course world, dictionaries of `utils/world/artifacts`):
#
# | finding | latents | ground truth and control |
# |---|---|---|
# | a landmark latent on "iff", but no " E" → "iff" link into it | {{F3.442}} | top-20 share 1.00 on landmark pieces (median latent 0.00); the link from " E" is no larger than from "The" or BOS |
# | latents pushing " Paris" | {{F2.242}} on " of" (raises several cities); context: {{F2.139}} on "el" | F2.139 is a landmark latent (precision 0.16, chance 0.012); over 24 landmark prompts it pushes each prompt's own city on 0.73 of its pieces (typical latent 0.56), mostly weakly |
# | induction heads and latents (attention, layer 3) | heads 3.0, 3.1, 3.2; {{F3.69}}, {{F3.13}}, {{F3.147}}, {{F3.351}}, {{F3.208}}, {{F3.430}} | head scores 0.65–0.76 against chance 0.06; latents' precision for `p3_repeat` 0.23–0.59 against chance 0.041 |
# | gradients at the induction distance | from the layer-1 attention SAE | the largest of ~30 distances in 5 of 5 runs (layer 2: 1 of 5); sign varies; carried by latents that are not previous-token latents |
#
# The induction heads are the clearest finding; the latent-level stories are blurred, because a
# 512-latent SAE on a 128-dimensional residual stream does not give every token or landmark its
# own latent, and because a gradient only says what happens near this one input. Chapter 02 turns
# to transcoders, whose latents read and write the MLPs and make
# such circuits easier to follow.
