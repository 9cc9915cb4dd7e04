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
# 3. **Latent → latent gradients** between residual-stream SAEs, and a bigram circuit.
# 4. **Token → latent gradients**: which input tokens drive a latent.
# 5. **Latent → logit gradients**: which latents push the model towards its answer.
# 6. **Attention SAEs and induction**: previous-token and induction latents.
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
from utils.world import load_model
from utils.world.dictionaries import load_attn_saes, load_resid_saes

model = load_model()
resid_saes = load_resid_saes()  # {layer: SAE on blocks.{layer}.hook_resid_pre}
attn_saes = load_attn_saes()  # {layer: SAE on blocks.{layer}.attn.hook_z, heads concatenated}

cfg = model.cfg
print(f"model: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads per layer, vocabulary {cfg.d_vocab}")
for name, sae in [("resid_saes[2]", resid_saes[2]), ("attn_saes[2]", attn_saes[2])]:
    print(f"{name}: {type(sae).__name__} on {sae.cfg.metadata.hook_name}, {sae.cfg.d_in} → {sae.cfg.d_sae} latents")

# %% [markdown]
# The tokenizer is word-level, except that landmark names are cut into designed pieces whose
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
# With the error term the logits are those of the clean model up to float rounding; without it
# they change, here a little. The probability of " Paris" stays high either way.
#
# ### Streaming batches of corpus tokens: `ActivationsStore`
#
# `sae_lens`'s `ActivationsStore` streams batches of tokens from a dataset and the activations
# at an SAE's hook point (it is what SAE training uses). `from_sae` takes the hook point and the
# context size from the SAE's config; we hand it a dataset of course-corpus tokens, the same
# kind that the course dictionaries were trained on.

# %%
from sae_lens import ActivationsStore

from utils.world.train_dictionaries import token_dataset

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

display_dashboard(sae, int(acts.argmax()))

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
#   holding both forms. `values` keeps the dtype of `dense`.
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


# %% [check]
tests.test_latent_to_latent_gradients(latent_to_latent_gradients)

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
alive_counts(acts_next, acts_next_recon)
plot_gradients(
    grads, x=latent_labels(acts_prev, layer_from, str_toks), y=latent_labels(acts_next_recon, layer_to, str_toks),
    title=f"Gradients from layer-{layer_from} to layer-{layer_to} SAE latents<br><sup>{prompt!r}</sup>",
    x_title=f"from layer {layer_from}", y_title=f"to layer {layer_to}",
).show()

# %% [markdown]
# Hover over the heatmap. Most entries are exactly zero: a latent at one position can only
# influence a later latent at the same or a later position, and even then most pairs do not
# interact. Many of the big entries pair latents *on the same token*, often a latent with its
# own continuation in the later layer. The cross-token entries are rarer and more interesting.
#
# The count of latents active in one run but not the other measures the caveat above: the
# layer-3 latents computed from the layer-0 *reconstruction* are not quite the true ones, so
# these gradients describe the replacement model closely, and the real model approximately.
#
# ### Finding: a bigram circuit for " E" → "iff"
#
# " E" starts both " Eiffel" and " Escorial". Reading "iff" after " E" settles which landmark
# this is, so we may expect a latent on " E" that feeds, one position later, a latent on "iff"
# that stands for the landmark word. The gradients give candidates; the course corpus tells us
# what each candidate means. We run every dictionary of this chapter once over 300 held-out
# documents, whose tokens carry ground-truth labels, and score single latents with
# `utils/latent_truth.py`:
#
# - `score(...)`: the **precision** (the share of the tokens a latent fires on that are in a
#   set) and **recall** (the share of the set it fires on) of "the latent fires", at any strength;
# - `top_share(...)`: the share of the latent's 20 strongest activations that fall in the set,
#   which is what its dashboard's top examples show. Weak firings do not count there.

# %%
from utils.latent_truth import best_concepts, concept, corpus_activations, score, token_dependence, token_is, top_share
from utils.world.concepts import labelled_corpus

data = labelled_corpus()  # 300 held-out documents with their labels
corpus_acts = corpus_activations(model, {**{f"resid_pre_{l}": resid_saes[l] for l in range(cfg.n_layers)},
                                         "attn_z_0": attn_saes[0], "attn_z_2": attn_saes[2]}, data)
E_id = model.to_single_token(" E")
is_E, is_landmark, is_eiffel = token_is(data, E_id), concept(data, "landmark"), concept(data, "landmark:Eiffel")


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


pos_E, pos_iff = str_toks.index(" E"), str_toks.index("iff")
acts_from_corpus, acts_to_corpus = corpus_acts[f"resid_pre_{layer_from}"], corpus_acts[f"resid_pre_{layer_to}"]
print("link                       gradient   top-20 share of the earlier latent | of the later latent")
print("                                        on ' E'  on landmarks          | on landmarks  on Eiffel")
links = strongest_links(grads, acts_prev, acts_next_recon, pos_E, pos_iff)
for value, latent_from, latent_to in links:
    a, b = acts_from_corpus[..., latent_from], acts_to_corpus[..., latent_to]
    print(f"F{layer_from}.{latent_from:<3} → F{layer_to}.{latent_to:<3}         {value:+7.3f}"
          f"     {top_share(a, is_E, data):.2f}     {top_share(a, is_landmark, data):.2f}"
          f"                 |     {top_share(b, is_landmark, data):.2f}          {top_share(b, is_eiffel, data):.2f}")

# The circuit: the strongest link whose later latent is about landmark words.
_, bigram_from, bigram_to = max(links, key=lambda link: (top_share(acts_to_corpus[..., link[2]], is_landmark, data), link[0]))
print(f"\nbigram circuit: F{layer_from}.{bigram_from} on ' E' → F{layer_to}.{bigram_to} on 'iff'")

# %% [markdown]
# A closer look at the two latents, firing at any strength, and the dashboard of the later one:

# %%
print(f"F{layer_from}.{bigram_from}:", score(acts_from_corpus[..., bigram_from], is_E, data, "token ' E'"))
print(f"F{layer_from}.{bigram_from}:", score(acts_from_corpus[..., bigram_from], is_landmark, data, "concept landmark"))
for name, truth in [("concept landmark", is_landmark), ("concept landmark:Eiffel", is_eiffel)]:
    print(f"F{layer_to}.{bigram_to}:", score(acts_to_corpus[..., bigram_to], truth, data, name))
on_E = acts_prev.indices[acts_prev.indices[:, 1] == pos_E, 2].tolist()
most_E = max(on_E, key=lambda latent: top_share(acts_from_corpus[..., latent], is_E, data))
print(f"\n{len(on_E)} layer-{layer_from} latents are active on ' E'; the most ' E'-specific is F{layer_from}.{most_E}, "
      f"with {top_share(acts_from_corpus[..., most_E], is_E, data):.0%} of its 20 strongest activations on ' E'")
display_dashboard(resid_saes[layer_to], bigram_to, data=data)

# %% [markdown]
# **What the course world shows.** The two strongest links from " E" to "iff" (F0.306 → F3.89
# and F0.306 → F3.147) end in latents that have nothing to do with landmarks. The third,
# **F0.124 → F3.276** (gradient +2.96), ends in a *landmark-word* latent: all 20 of F3.276's
# strongest activations in the corpus are on landmark pieces (only one of them an Eiffel piece),
# and at any strength it fires on 1,662 tokens, 17% of them landmark pieces (recall 53%).
#
# The earlier end is not an " E" latent, though: F0.124 fires on every " E" of the corpus
# (recall 1.00) but on 1,812 tokens in all, and none of its 20 strongest activations is an " E".
# The layer-0 SAE spreads " E" over many broad latents (25 are active on it here; the most
# " E"-specific, F0.510, has 65% of its top activations on " E"). So what these dictionaries show
# is *something on " E" feeds a landmark-word latent on "iff"*, not a clean pair of an " E"
# latent and an Eiffel latent: the planted bigram is there, at the level of "this is a landmark
# name", but not as sharply as in a larger dictionary on a real model.

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


# %% [check]
tests.test_token_to_latent_gradients(token_to_latent_gradients)

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
# Each latent depends mostly on its own token (the diagonal band), but not only. The bigram
# latent from above should depend on " E" as well as on "iff". Let's look at its column:

# %%
column = ((token_acts.indices[:, 1] == pos_iff) & (token_acts.indices[:, 2] == bigram_to)).nonzero().flatten()
if len(column) == 0:
    print(f"F{layer_to}.{bigram_to} is not active on 'iff' in this run")
else:
    for pos, value in enumerate(token_grads[0, :, int(column[0])].tolist()):
        print(f"  {str_toks[pos]!r:10} ({pos}) → F{layer_to}.{bigram_to} on 'iff': {value:+.3f}")

# %% [markdown]
# **What the course world shows.** F3.276 on "iff" depends mostly on "iff" itself (+1.71) and
# on BOS (+0.33); the gradient from " E" is small and negative (−0.08). Scaling the " E" input
# scales *all* the layer-0 latents on " E" together, and their effects on F3.276 largely cancel:
# the link F0.124 → F3.276 is real, but other latents on " E" pull the other way. A single
# latent-to-latent gradient is one path; the token gradient is the sum over all of them.

# %% [markdown]
# ## 5 · Latent → logit gradients
#
# The last link of the chain goes from latents to the output: how does each active latent of
# one SAE move the logits at the last position? The function to differentiate decodes the
# latents and runs the model *from the SAE's layer to the end*. A latent has two faces: looking
# back at the input it is a representation, looking forward at the logits it is an action. This
# section looks at the action.
#
# The vocabulary has 779 tokens, so a Jacobian over all of them would still be small here; on a
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


# %% [check]
tests.test_latent_to_logit_gradients(latent_to_logit_gradients)

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

specific = logit_grads[0] - logit_grads[1:].mean(0)  # more for Paris than for the other candidates
earlier = logit_acts.indices[:, 1] < len(str_toks) - 1
print("\nContext latents (earlier positions), by their extra push towards ' Paris':")
for value, i in zip(*specific.masked_fill(~earlier, -torch.inf).topk(3)):
    _, pos, latent = logit_acts.indices[int(i)].tolist()
    print(f"  F{logit_layer}.{latent} on {str_toks[pos]!r} ({pos}): {value:+.3f}; {describe(latent)}")
context_index = int(specific.masked_fill(~earlier, -torch.inf).argmax())
_, context_pos, paris_context = logit_acts.indices[context_index].tolist()
print(f"\ncontext latent: F{logit_layer}.{paris_context} on {str_toks[context_pos]!r}")
for name, truth in truths.items():
    print("  ", score(layer_corpus[..., paris_context], truth, data, f"concept {name}"))
print("   its best concepts:", "; ".join(str(m) for m in best_concepts(layer_corpus[..., paris_context], data, n=2)))

# %% [markdown]
# **What the course world shows.** With the layer-2 SAE spliced in, the model still answers
# " Paris" (99.65%, against 99.93% without it). The latents with the largest gradient on
# " Paris" sit on the last token, " of". The first, F2.198 (+0.42), acts like a "France" latent:
# the first column of the heatmap shows it raising " Paris" and " France" and lowering " Moscow",
# " Berlin" and " Amsterdam". Its *inputs* are broader: it fires on 1,114 corpus tokens, and none
# of its 20 strongest activations is a landmark, Paris or France token. F2.182 (+0.16) raises
# most of the cities. The context comes in through earlier positions: ranked by their extra
# push towards " Paris" over the other nine candidates, the top latent is **F2.178 on "iff"**
# (+0.07). It fires on every Paris and every France token of the corpus (recall 1.00 for both,
# 0.83 for Eiffel pieces), but on 880 tokens in all (precision 0.01 to 0.02; its best-matching
# concept is dialogue, `p8`, at precision 0.36): a broad latent whose firing includes the
# Paris–France–Eiffel cluster, not a clean "France" latent.

# %% [markdown]
# ## 6 · Attention SAEs and induction
#
# Attention-output SAEs read `blocks.ℓ.attn.hook_z`: the output of every head *before* the
# output matrix $W_O$, all heads concatenated (`sae_lens` flattens `(..., n_heads, d_head)` into
# `(..., n_heads · d_head)`, and its `decode` gives the shape back once it has seen an input).
# A latent of such an SAE is therefore a pattern across heads, and often lives mostly in one.
#
# Their gradients show the best-known circuit of all, **induction**. On a sequence that repeats,
# `… A B … A`, two heads cooperate to predict `B`:
#
# - a **previous-token head** writes into each position "the previous token was `A`", so the
#   first `B` carries "I follow `A`";
# - an **induction head** at the second `A` looks for a position that follows an `A`, finds the
#   first `B`, and copies `B` forward as the prediction.
#
# The course model has both: head 0.2 (layer 0, head 2) is a previous-token head and head 2.3
# an induction head. Let's see them on a run of random words repeated once.

# %%
from utils.world.prompts import repeated_random_tokens

half = 10
rep_tokens = torch.tensor([model.tokenizer.convert_tokens_to_ids(repeated_random_tokens(1, half, seed=0)[0])])
rep_str = model.to_str_tokens(rep_tokens)
print(repr("".join(rep_str)))

_, rep_cache = model.run_with_cache(rep_tokens, names_filter=lambda name: name.endswith("hook_pattern"))
print("head  previous-token score  induction score")
for layer in range(cfg.n_layers):
    for head in range(cfg.n_heads):
        pattern = rep_cache["pattern", layer][0, head]
        previous = pattern.diagonal(-1).mean()  # attention to the position just before
        induction = pattern.diagonal(-(half - 1))[1:].mean()  # from the second A to the first B
        print(f"{layer}.{head}   {previous:.2f}                  {induction:.2f}")

# %% [markdown]
# The two heads' attention patterns (hover over a token to see where it attends). circuitsvis
# usually fetches its JavaScript from a CDN; `attention_patterns` shows it from the copy bundled
# with the package, so the pattern renders offline too, and adds a static heatmap that is what
# you see where scripts cannot run (a notebook executed elsewhere and opened untrusted).

# %%
from utils.dashboard import attention_patterns

heads = [(0, 2), (2, 3)]
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


# %% [check]
tests.test_latent_to_latent_gradients_attn(latent_to_latent_gradients_attn)

# %% [markdown]
# The gradients from the layer-0 to the layer-2 attention SAE on the repeated run. Each black
# rectangle marks one place where induction should act: from a layer-0 latent on a first-half
# token $B$ (position $p$) to a layer-2 latent on the token just before the second $B$, i.e. the
# second $A$ (position $p + $ `half` $- 1$).

# %%
attn_from, attn_to = 0, 2
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
# rarely in the first half, where nothing can be predicted yet. We count, for each layer-2
# latent, the positions it is active on in each half, keep those active on at least half of
# the repeated half and on at most a fifth of the first half, and plot only them (on the
# repeated half) against the layer-0 latents on first-half tokens.

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
    title="Induction latents (repeated half) against layer-0 latents (first half)",
    x_title=f"from layer {attn_from}", y_title=f"to layer {attn_to}",
).update_layout(height=500).show()

# %% [markdown]
# Which layer-0 latents feed the induction latents where the circuit says they should, from
# the first $B$ to the second $A$? Sum each layer-0 latent's gradients over those places:

# %%
feeding = Counter()
for row, (_, pos_to, latent_to) in zip(attn_grads[keep_next], attn_next_recon.indices[keep_next].tolist()):
    first_b = pos_to - half + 1
    for value, (_, pos_from, latent_from) in zip(row.tolist(), attn_prev.indices.tolist()):
        if pos_from == first_b:
            feeding[latent_from] += value
previous_token_latents = [latent for latent, _ in feeding.most_common(3)]
for latent, total in feeding.most_common(3):
    print(f"F{attn_from}.{latent}: summed gradient {total:+.3f} into the induction latents")

# %% [markdown]
# Now check both kinds against the corpus. An induction latent should fire on the repeated
# half of repeated runs (the concept `p3_repeat`). A previous-token latent's activation should
# depend on the token *before* it more than on its own token: `token_dependence` measures the
# share of the variance of a latent's activation over the corpus that the identity of one token
# explains. And its decoder direction should sit largely in the previous-token head, 0.2.

# %%
is_repeat = concept(data, "p3_repeat")
for latent in induction_latents:
    acts_l = corpus_acts[f"attn_z_{attn_to}"][..., latent]
    print(f"F{attn_to}.{latent}:", score(acts_l, is_repeat, data, "concept p3_repeat"),
          f"| top-20 share {top_share(acts_l, is_repeat, data):.2f}")

head_share = attn_saes[attn_from].W_dec.reshape(-1, cfg.n_heads, cfg.d_head).norm(dim=-1) ** 2
head_share = head_share / head_share.sum(-1, keepdim=True)
for latent in previous_token_latents:
    acts_l = corpus_acts[f"attn_z_{attn_from}"][..., latent]
    print(f"F{attn_from}.{latent}: decoder share per head 0.0-0.3: {', '.join(f'{x:.2f}' for x in head_share[latent].tolist())}; "
          f"variance explained by the previous token {token_dependence(acts_l, data, previous=True):.2f}, "
          f"by its own token {token_dependence(acts_l, data):.2f}")
if induction_latents:
    display(display_dashboard(attn_saes[attn_to], induction_latents[0], data=data))

# %% [markdown]
# **What the course world shows.** Nine layer-2 attention latents pass the filter, active on
# 5 to 7 of the 10 repeated positions and on at most 2 first-half positions:
# F2.395, F2.274, F2.357, F2.142, F2.368, F2.477, F2.180, F2.347 and F2.242. The corpus confirms
# them as **induction latents**: 90–100% of the 20 strongest activations of each lie on the
# repeated half of a repeated run (`p3_repeat`), and at any strength their precision is
# 0.58–0.84 for all but F2.180 (0.37).
#
# The layer-0 latents that feed them where the circuit predicts are **F0.285, F0.26 and
# F0.10** (summed gradients +9.1, +8.9, +7.4). They look like **previous-token latents**: the
# previous token explains more of their activation than their own token does (32% against 23%,
# 32% against 22%, 42% against 26% of the variance), and head 0.2, the previous-token head,
# holds the largest share of the decoder of each (0.51, 0.36 and 0.48). The evidence is
# weaker than for the induction latents: a third of the decoder also sits in head 0.0, which
# attends to the previous token as well (score 0.34 above).

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
# latents only, and they point at candidate circuits; the course world's labels then say which
# candidates mean what they seem to. In this model (dictionaries of `utils/world/artifacts`,
# trained with a 100,000-token dead-latent window):
#
# | finding | latents | ground truth |
# |---|---|---|
# | " E" → "iff" link into a landmark-word latent | F0.124 → F3.276 | F3.276: 20/20 top activations on landmark pieces; F0.124 is a broad latent, not an " E" latent |
# | latents pushing " Paris" | F2.198 on " of" (raises Paris and France, lowers other cities); context: F2.178 on "iff" | F2.178 fires on all Paris and France tokens (recall 1.00), but broadly (precision ≤ 0.02) |
# | induction latents (attention, layer 2) | F2.395, F2.274, F2.357, F2.142, F2.368, F2.477, F2.180, F2.347, F2.242 | 90–100% of top activations on `p3_repeat`; precision up to 0.84 |
# | previous-token latents (attention, layer 0) | F0.285, F0.26, F0.10 | previous token explains more variance than the own token; largest decoder share in head 0.2 |
#
# The induction circuit is the clearest; the landmark findings are real but blurred, because a
# 512-latent SAE on a 128-dimensional residual stream does not give every token or landmark its
# own latent. Chapter 02 turns to transcoders, whose latents read and write the MLPs and make
# such circuits easier to follow.
