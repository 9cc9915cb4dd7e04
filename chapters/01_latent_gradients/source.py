# Source of chapter 01. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch01_latent_gradients.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 01 · Latent gradients
#
# A sparse autoencoder (SAE) rewrites a model's activations as a short list of active *latents*.
# This chapter asks how latents influence one another: if one latent's activation changes a
# little, how much do latents in later layers, or the model's output logits, change? Those
# sensitivities are gradients, and the chapter is about computing them efficiently.
#
# **What is here so far.** This first part builds `SparseTensor`, the small data structure
# that every later exercise uses. The rest of the chapter is coming: a tour of the course's
# model and dictionaries; latent-to-latent, token-to-latent and latent-to-logit gradients; and
# attention-output SAEs with the induction circuits they reveal.
#
# **How to work through a notebook.** Run the setup cell at the top first. Every exercise is
# followed by a check cell: it prints "✅ ... passed", or a message that says what is wrong.

# %% [module]
import torch
from torch import Tensor

# %%
import tests  # this chapter's checks: chapters/01_latent_gradients/tests.py

# %% [markdown]
# ## Sparse tensors
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
