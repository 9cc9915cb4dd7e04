# Source of chapter 05. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch05_understanding_latents.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 05 · Understanding latents
#
# Chapters 01 to 04 used latents as building blocks of circuits. This chapter looks at the latents
# themselves: how a dictionary divides a concept between its latents, and what a latent's weights
# say about it before we look at a single example. Three tools, each scored against the ground
# truth of the course world:
#
# - **feature absorption**, measured the way SAEBench does: a linear probe defines a concept
#   ("the answer starts with L"), we find the latents that look like the probe, and count how often
#   they stay silent while another latent carries the probe's direction instead;
# - **meta-SAEs**: a small SAE trained on the *decoder directions* of a wide SAE, whose latents
#   ("meta-latents") are parts that several SAE latents share;
# - the **logit lens** and **token enrichment**: which tokens a latent's decoder direction pushes up,
#   whether they form a planted class of tokens more often than chance, and whether a latent is
#   about the token it sits on (an *input* latent) or the token that comes next (a *prediction*
#   latent).
#
# Everything runs offline on the course world (the README's "The course world"): a 4-layer model
# with `d_model = 128` and tied embeddings, and a family of residual-stream SAEs of five widths on
# `blocks.2.hook_resid_pre`. Numbers, letters and latent ids quoted in this text are those the
# solution notebook prints on the shipped course world (a test checks that each is still printed);
# the notebook finds every latent it talks about by computation and prints its id, so if the world
# is retrained, trust the printed values over the text.
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by a
# check cell that prints "✅ ... passed" or says what is wrong.

# %% [module]
from collections import Counter

import torch
from torch import Tensor

from utils.world import facts as F
from utils.world.corpus import BOS, HELD_OUT, PAD, T, _Slot, all_tokens, render

HOOK = "blocks.2.hook_resid_pre"  # where the whole SAE family reads


def spelling_prompts() -> dict:
    """Every spelling word in every P10 template, cut just before the letter that answers it.

    Returns {"tokens": (n, n_ctx) ids padded on the right, "last": (n,) position of the last real
    token (where the model predicts the letter), "word": [str], "letter": [str], "template": (n,)
    index into T["p10"], "heldout": (n,) bool, True for the held-out template}.
    """
    vocab = {t: i for i, t in enumerate(all_tokens())}
    rows, words, letters, templates, heldout = [], [], [], [], []
    for t_idx, template in enumerate(T["p10"]):
        for word in F.SPELLING_WORDS:
            letter = F.first_letter(word)
            sentence = render(template, {"w": _Slot(word, "spelled_word"), "letter": _Slot(letter, "p10_answer")})
            cut = next(i for i, tok in enumerate(sentence) if "p10_answer" in tok.labels)
            rows.append([vocab[BOS]] + [vocab[tok.text] for tok in sentence[:cut]])
            words.append(word)
            letters.append(letter)
            templates.append(t_idx)
            heldout.append(template.startswith(HELD_OUT))
    n_ctx = max(map(len, rows))
    tokens = torch.full((len(rows), n_ctx), vocab[PAD], dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return {"tokens": tokens, "last": torch.tensor([len(r) - 1 for r in rows]), "word": words,
            "letter": letters, "template": torch.tensor(templates), "heldout": torch.tensor(heldout)}


# %%
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.io as pio
from IPython.display import display

import tests  # this chapter's checks: chapters/05_understanding_latents/tests.py
from utils.world import load_model
from utils.world.concepts import labelled_corpus
from utils.world.dictionaries import load_width_family

torch.set_grad_enabled(False)  # nothing in this chapter needs gradients
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"  # plotly from its bundled JavaScript: works offline

model = load_model()
saes = load_width_family(2)  # {width: SAE on blocks.2.hook_resid_pre}
for width, sae in saes.items():
    print(f"width {width}: {sae.cfg.architecture()} SAE, {sae.cfg.d_in} -> {sae.cfg.d_sae}, reads {sae.cfg.metadata.hook_name}")

# %% [markdown]
# ## 1 · Feature absorption on first letters
#
# Suppose a dictionary has a latent that seems to mean "the word starts with E". Feature absorption
# is what happens when that latent fires on most E-words but stays silent on, say, " elephant",
# because another latent, one that fires on " elephant" anyway, has taken the "starts with E"
# direction into its own decoder vector. The sparsity penalty rewards this: one latent firing
# instead of two. The result is a latent that looks like a clean concept detector and has holes
# you cannot predict from its description.
#
# SAEBench measures absorption in three steps, and we follow them on the course world's P10
# sentences ("The word elephant starts with the letter E"):
#
# 1. train a **linear probe** per letter on the residual stream: the probe's direction is our
#    stand-in for the model's own "starts with L" feature;
# 2. find each letter's **main latents**, those whose decoder direction is closest to the probe's;
# 3. on the examples where the probe says yes (and is right), count how often the main latents do
#    *not* fire and some other firing latent carries the probe direction instead: the
#    **absorption rate**.
#
# First, the data: every spelling word of the world in each of the four P10 templates, cut just
# before the letter. One forward pass, cached once for the whole section.

# %%
prompts = spelling_prompts()
_, cache = model.run_with_cache(prompts["tokens"], names_filter=[HOOK], stop_at_layer=3)
rows = torch.arange(len(prompts["last"]))
resid_last = cache[HOOK][rows, prompts["last"]]  # (n_prompts, d_model): where the letter is predicted
word_ids = torch.tensor([model.to_single_token(" " + w) for w in prompts["word"]])
word_pos = (prompts["tokens"] == word_ids[:, None]).int().argmax(1)
resid_word = cache[HOOK][rows, word_pos]  # (n_prompts, d_model): on the spelled word itself
letters = np.array(prompts["letter"])
counts = Counter(F.first_letter(w) for w in F.SPELLING_WORDS)
LETTERS = sorted(letter for letter, n in counts.items() if n >= 4)  # letters with at least 4 words
logits = model(prompts["tokens"])[rows, prompts["last"]]
correct = np.array([model.tokenizer.decode(int(t)).strip() for t in logits.argmax(-1)]) == letters
print(f"{len(rows)} prompts ({len(F.SPELLING_WORDS)} words x {len(T['p10'])} templates); "
      f"the model names the right letter in {correct.mean():.0%} of them")
print(f"letters with at least 4 words: {', '.join(LETTERS)}")

# %% [markdown]
# ### Exercise: `train_probe`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# Train a logistic-regression probe that separates `acts[labels]` from `acts[~labels]`, and return
# it as a **unit** direction and a bias, so that `acts @ direction + bias > 0` is the probe's "yes".
# Positives are rare (one letter among many), so weight the classes by their size; otherwise the
# probe learns to say "no" to everything. `sklearn.linear_model.LogisticRegression(class_weight=
# "balanced")` does all of this; any correct logistic regression will pass the check.
#
# The check trains your probe on two datasets: a 2-D toy with one positive in ten, and the
# course-world residual stream for one letter.

# %% [exercise]
def train_probe(acts: Tensor, labels: Tensor) -> tuple[Tensor, float]:
    """A linear probe for `labels` (n,) bool from `acts` (n, d): (unit direction (d,), bias)."""
    # BEGIN SOLUTION
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(class_weight="balanced", max_iter=2000)
    clf.fit(acts.double().numpy(), labels.numpy())
    w = torch.tensor(clf.coef_[0], dtype=acts.dtype)
    norm = w.norm()
    return w / norm, float(clf.intercept_[0] / norm)
    # END SOLUTION


# %% [hint]
# Fit any logistic regression with balanced class weights, then divide *both* the weight vector and
# the bias by the weight vector's norm: the sign of `acts @ w + b` does not change, and the direction
# becomes a unit vector that can be compared with decoder directions by a plain dot product.

# %% [check]
tests.test_train_probe(train_probe)

# %% [markdown]
# Before we measure how a concept is absorbed, we should check that the model has the concept at
# all, at the place where we look. Two candidate places: the spelled word itself, and the last
# token of the prompt, where the model must name the letter. For each, train a probe per letter on
# three quarters of the words and test it on the others (words it never saw):

# %%
def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)


rng = np.random.default_rng(0)
held_words = set(rng.choice(F.SPELLING_WORDS, len(F.SPELLING_WORDS) // 4, replace=False))
test_word = np.array([w in held_words for w in prompts["word"]])
for site, acts in (("the spelled word", resid_word), ("the last token", resid_last)):
    scores = []
    for letter in LETTERS:
        truth = letters == letter
        d, b = train_probe(acts[~test_word], torch.tensor(truth[~test_word]))
        scores.append(f1(((acts[test_word] @ d + b) > 0).numpy(), truth[test_word]))
    print(f"probe at {site}: mean F1 on unseen words {np.mean(scores):.2f}")

# %% [markdown]
# Expected output: the probes at the last token generalise to unseen words (mean F1 {{0.71}}), those
# on the word itself much less ({{0.44}}). In this small model, at layer 2, a word's first letter is
# not yet written on the word; it is assembled at the position that predicts the letter. So we
# study absorption there: the concept is "the answer starts with L", which is the concept the
# model needs. (SAEBench probes the word token itself, which works in GPT-2-sized models.)
#
# From here on, probes are trained on the three training templates of P10 and every measurement
# is made on the fourth, held-out template, which neither the model nor the probe ever saw.

# %%
train_rows, test_rows = ~prompts["heldout"], prompts["heldout"]
probes = {}
for letter in LETTERS:
    truth = torch.tensor(letters == letter)
    probes[letter] = train_probe(resid_last[train_rows], truth[train_rows])
probe_f1 = {letter: f1(((resid_last[test_rows] @ d + b) > 0).numpy(), letters[test_rows.numpy()] == letter)
            for letter, (d, b) in probes.items()}
print("probe F1 on the held-out template:", ", ".join(f"{k} {v:.2f}" for k, v in probe_f1.items()))

# %% [markdown]
# ### Exercise: `decoder_cosines`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# Return the cosine similarity between `direction` and each latent's decoder direction (the rows
# of `sae.W_dec`), shape `(d_sae,)`. Keep the sign: a latent that points *against* the probe is not
# a main latent. (Our SAEs keep decoder rows at unit norm, but do not rely on it.)

# %% [exercise]
def decoder_cosines(direction: Tensor, sae) -> Tensor:
    """Cosine similarity of `direction` (d,) with every decoder row of `sae`: (d_sae,)."""
    # BEGIN SOLUTION
    W_dec = sae.W_dec
    return (W_dec @ direction) / (W_dec.norm(dim=-1) * direction.norm()).clamp_min(1e-12)
    # END SOLUTION


# %% [hint]
# `W_dec` has one row per latent; divide each dot product by the two norms
# (`torch.nn.functional.cosine_similarity(W_dec, direction[None], dim=-1)` does the same).

# %% [check]
tests.test_decoder_cosines(decoder_cosines)

# %% [markdown]
# The main latent of each letter, at each width, is the one with the largest cosine. How large is it?

# %%
main_latent = {}  # (letter, width) -> latent id
rows_table = []
for letter, (d, b) in probes.items():
    row = {"letter": letter}
    for width, sae in saes.items():
        cos = decoder_cosines(d, sae)
        main_latent[letter, width] = int(cos.argmax())
        row[f"w{width}"] = round(float(cos.max()), 2)
    rows_table.append(row)
cos_table = pd.DataFrame(rows_table).set_index("letter")
print("largest decoder cosine with the probe, per letter and width:")
print(cos_table.to_string())
print(f"mean over letters: " + ", ".join(f"{c} {v:.2f}" for c, v in cos_table.mean().items()))

# %% [markdown]
# Expected output: the best cosines are low, around {{0.33}} at width 64 and {{0.43}} at width
# 1024. No SAE of the family has a latent that *is* the probe's direction; the largest cosine grows
# a little with width. Keep this in mind when you read the absorption table below: when the "main
# latent" only partly matches the concept, low recall on the concept is expected anyway.
#
# ### Exercise: `absorption`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 20 minutes
#
# Given, for `n` examples, the SAE's latent activations `latent_acts` (n, d_sae), its decoder
# `W_dec`, the probe's unit `direction`, whether the probe says yes (`probe_yes`, (n,) bool), the
# truth (`truth`, (n,) bool) and the ids of the `main` latents, return two `(n,)` bool masks:
#
# - `missed`: the probe says yes, the truth is yes, and **no main latent fires** (activation > 0);
# - `absorbed`: `missed`, and some **other** latent `j` that fires
#   - has a decoder direction with cosine ≥ `min_cos` with the probe direction (sign kept), and
#   - carries at least `min_share` of the probe projection of the reconstruction: with
#     `proj_j = acts_j * (W_dec[j] @ direction)`, we need `proj_j ≥ min_share * Σ_i max(proj_i, 0)`
#     (sum over every latent; only positive projections count in the total).
#
# The absorption rate of a letter is then `absorbed.sum() / (probe_yes & truth).sum()`: the share
# of the examples the probe gets right where the main latents are silent and another latent has
# taken over their job.

# %% [exercise]
def absorption(latent_acts: Tensor, W_dec: Tensor, direction: Tensor, probe_yes: Tensor, truth: Tensor,
               main: list[int], min_cos: float = 0.025, min_share: float = 0.4) -> tuple[Tensor, Tensor]:
    """(missed, absorbed): two (n,) bool masks, as defined in the text."""
    # BEGIN SOLUTION
    fires = latent_acts > 0
    is_main = torch.zeros(W_dec.shape[0], dtype=torch.bool)
    is_main[list(main)] = True
    missed = probe_yes & truth & ~fires[:, is_main].any(-1)
    along = W_dec @ direction  # (d_sae,)
    cos = along / (W_dec.norm(dim=-1) * direction.norm()).clamp_min(1e-12)
    proj = latent_acts * along  # (n, d_sae)
    total = proj.clamp_min(0).sum(-1, keepdim=True)
    carrier = fires & ~is_main & (cos >= min_cos) & (proj >= min_share * total) & (total > 0)
    return missed, missed & carrier.any(-1)
    # END SOLUTION


# %% [hint]
# Build a `(d_sae,)` mask of the main latents first. `missed` is three masks and-ed together; for
# `absorbed`, compute `proj = latent_acts * (W_dec @ direction)` (n, d_sae) and its positive total
# per example, then ask, per example, whether any latent satisfies all four conditions.

# %% [hint]
# The cosine needs the decoder rows' norms: `(W_dec @ direction) / W_dec.norm(dim=-1)` (the
# direction is a unit vector). An example where no latent projects positively has total 0: nothing
# can carry a share of nothing, so it is not absorbed.

# %% [check]
tests.test_absorption(absorption)

# %% [markdown]
# Now the table: for each letter and width, on the held-out template, the share of probe-positive
# examples that the main latent misses and the absorption rate, with one main latent per letter
# (the one of largest cosine).

# %%
acts_last = {width: sae.encode(resid_last[test_rows]) for width, sae in saes.items()}
test_letters = letters[test_rows.numpy()]
miss_rows, absorb_rows, absorbers = [], [], {}
for letter, (d, b) in probes.items():
    truth = torch.tensor(test_letters == letter)
    probe_yes = (resid_last[test_rows] @ d + b) > 0
    n_right = int((probe_yes & truth).sum())
    miss_row, absorb_row = {"letter": letter, "n": n_right}, {"letter": letter, "n": n_right}
    for width, sae in saes.items():
        missed, absorbed = absorption(acts_last[width], sae.W_dec, d, probe_yes, truth, [main_latent[letter, width]])
        miss_row[f"w{width}"] = round(int(missed.sum()) / max(n_right, 1), 2)
        absorb_row[f"w{width}"] = round(int(absorbed.sum()) / max(n_right, 1), 2)
        absorbers[letter, width] = absorbed
    miss_rows.append(miss_row)
    absorb_rows.append(absorb_row)
miss_table = pd.DataFrame(miss_rows).set_index("letter")
absorb_table = pd.DataFrame(absorb_rows).set_index("letter")
print("share of probe-positive examples where the main latent is silent:")
print(miss_table.to_string())
print("\nabsorption rate:")
print(absorb_table.to_string())
weights = absorb_table["n"] / absorb_table["n"].sum()
mean_absorption = {c: float((absorb_table[c] * weights).sum()) for c in absorb_table.columns if c != "n"}
mean_miss = {c: float((miss_table[c] * weights).sum()) for c in miss_table.columns if c != "n"}
print("\nweighted mean over letters, miss rate:", ", ".join(f"{c} {v:.2f}" for c, v in mean_miss.items()))
print("weighted mean over letters, absorption rate:", ", ".join(f"{c} {v:.2f}" for c, v in mean_absorption.items()))

# %%
fig = px.line(x=list(saes), y=[list(mean_miss.values()), list(mean_absorption.values())], markers=True, log_x=True,
              labels={"x": "SAE width", "value": "share of probe-positive examples", "variable": ""},
              title="First-letter probe vs the main latent, across SAE widths", width=700, height=380)
for trace, name in zip(fig.data, ("main latent silent", "absorbed")):
    trace.name = name
fig.show()

# %% [markdown]
# Expected output (weighted means over the letters): the main latent is silent on {{0.72}} of the
# examples the probe gets right at width 64 and on {{0.82}} at width 1024, and the absorption rate
# is {{0.16}} at width 64 and {{0.09}} at width 1024. Per letter, the numbers rest on few examples
# (the `n` column: one held-out sentence per word), so read the table as a pattern, not as precise
# rates.
#
# What can we say, and what not?
#
# - The main latents miss most of the examples at every width. With cosines around 0.4, "main
#   latent" is a generous name: these latents are not first-letter detectors that fail now and
#   then, they are latents about something else that lean towards the probe.
# - Most misses are **not** absorption as defined: usually no single other latent carries 40% of
#   the probe projection; the letter is spread over several latents. Absorption in the strict
#   sense covers a minority of examples.
# - The metric depends on its two thresholds and on the choice of main latents; SAEBench chooses
#   main latents with k-sparse probing rather than by cosine. Try `min_share=0.2` or two main
#   latents per letter and see how the table moves.
#
# Who absorbs? For the widest SAE, here are the latents that carry the probe direction on absorbed
# examples, with the word they occur on:

# %%
width = max(saes)
sae = saes[width]
absorbing = {}  # latent id -> words it absorbs
for letter, (d, b) in probes.items():
    mask = absorbers[letter, width]
    proj = acts_last[width] * (sae.W_dec @ d)
    for i in mask.nonzero().flatten().tolist():
        j = int(proj[i].argmax())
        absorbing.setdefault(j, []).append(np.array(prompts["word"])[test_rows.numpy()][i])
for j, ws in sorted(absorbing.items(), key=lambda kv: -len(kv[1]))[:8]:
    print(f"latent {j} absorbs the letter of: {', '.join(ws)}")
print(f"{len(absorbing)} absorbing latents in the width-{width} SAE")

# %% [markdown]
# Expected output: a handful of latents, most absorbing the letter of one or two words. A latent
# that absorbs the letter of only some of its letter's words is exactly the pattern the absorption
# paper describes: word-specific latents that have taken in the first-letter direction.
# Whether they are word-specific latents is a claim we can score against the ground truth, which
# the next sections do.
