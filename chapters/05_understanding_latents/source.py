# Source of chapter 05. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch05_understanding_latents.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 05 · Understanding latents
#
# Chapters 01 to 04 used latents as building blocks of circuits. This chapter looks at the latents
# themselves: how a dictionary divides a concept between its latents, and what a latent's weights
# say about it before we look at a single example. Seven tools, each scored against the ground
# truth of the course world:
#
# - **feature splitting**: how a concept covered by one latent of a narrow SAE is covered by
#   several latents of a wider one, followed along the world's planted category hierarchy;
# - the **geometry** of the decoder directions: a UMAP map of every latent of the family, with
#   HDBSCAN clusters whose purity is measured against the planted concepts;
# - **feature absorption** on first letters: a linear probe defines a concept ("the answer starts
#   with L"), we find the latents that look like the probe, and count how often they stay silent
#   while another latent carries the probe's direction instead; first with a simplified metric you
#   write, then with SAEBench's own definition, each departure shown with its effect;
# - **meta-SAEs**: a small SAE trained on the *decoder directions* of a wide SAE, whose latents
#   ("meta-latents") are parts that several SAE latents share;
# - the **logit lens** and **token enrichment**: which tokens a latent's decoder direction pushes up,
#   whether they form a planted class of tokens more often than chance, and whether a latent is
#   about the token it sits on (an *input* latent) or the token that comes next (a *prediction*
#   latent);
# - **autointerp**: a language model explains a latent from its top examples and is scored on
#   predicting where it fires; here each explanation is also scored against the planted labels;
# - **patch scoping**: a latent's decoder direction is patched into a definition prompt to make the
#   model say what it means.
#
# The **capstone** (section 8) puts them together on one latent: you gather the evidence, write a
# hypothesis about what the latent does, and the check scores it against the planted labels.
#
# Everything runs offline on the course world (the README's "The course world"): its small
# GPT-2-style model, which has tied embeddings, and the family of residual-stream SAEs of several
# widths that all read `blocks.2.hook_resid_pre`. Numbers, letters and latent ids quoted in this text are those the
# solution notebook prints on the shipped course world (a test checks that each is still printed);
# the notebook finds every latent it talks about by computation and prints its id, so if the world
# is retrained, trust the printed values over the text.
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by a
# check cell that prints "✅ ... passed" or says what is wrong.

# %% [module]
from collections import Counter

import numpy as np
import torch
from torch import Tensor

from utils.world import facts as F, load_tokenizer
from utils.world.corpus import BOS, PAD, render, slots_of, value
from utils.world.frames import FRAMES, frame_text, is_heldout, is_test

HOOK = "blocks.2.hook_resid_pre"  # where the whole SAE family reads


def world_frames(relation: str, slots: set[str]) -> list[tuple[int, str, bool]]:
    """(index, text, is a validation frame) of every frame of `relation` whose slots all lie in
    `slots`. Test frames are left out: they are kept for the world's own final measurements."""
    out = []
    for i, frame in enumerate(FRAMES[relation]):
        names = {s.rstrip("!")[0].lower() + s.rstrip("!")[1:] for s in slots_of(frame_text(frame))}
        if not is_test(frame) and names <= slots:
            out.append((i, frame_text(frame), is_heldout(frame)))
    return out


def pad_rows(rows: list[list[int]]) -> Tensor:
    """Token id rows padded on the right into one (n, longest) tensor."""
    pad = load_tokenizer().get_vocab()[PAD]
    tokens = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return tokens


def spelling_prompts() -> dict:
    """Every spelling word in every P10 frame that ends on the letter, cut just before the letter.

    Returns {"tokens": (n, n_ctx) ids padded on the right, "last": (n,) position of the last real
    token (where the model predicts the letter), "word": [str], "letter": [str], "frame": (n,)
    frame index, "heldout": (n,) bool, True for the world's validation frames, which the model never
    trained on}.
    """
    vocab = load_tokenizer().get_vocab()
    rows, words, letters, frames, heldout = [], [], [], [], []
    for idx, text, held in world_frames("first_letter", {"w", "letter"}):
        if "{letter!}" not in text:
            continue
        for word in F.SPELLING_WORDS:
            letter = F.first_letter(word)
            sentence = render(text, {"w": value(word, "spelled_word"), "letter": value(letter)}, lead_space=False)
            cut = next(i for i, tok in enumerate(sentence) if "answer" in tok.labels)
            rows.append([vocab[BOS]] + [vocab[tok.text] for tok in sentence[:cut]])
            words.append(word)
            letters.append(letter)
            frames.append(idx)
            heldout.append(held)
    return {"tokens": pad_rows(rows), "last": torch.tensor([len(r) - 1 for r in rows]), "word": words,
            "letter": letters, "frame": torch.tensor(frames), "heldout": torch.tensor(heldout)}


# %%
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.io as pio
from IPython.display import display

import tests  # this chapter's checks: chapters/05_understanding_latents/tests.py
from utils.world import labelled_corpus, load_model, load_width_family

torch.set_grad_enabled(False)  # nothing in this chapter needs gradients
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"  # plotly from its bundled JavaScript: works offline

model = load_model()
saes = load_width_family(2)  # {width: SAE on blocks.2.hook_resid_pre}
for width, sae in saes.items():
    print(f"width {width}: {sae.cfg.architecture()} SAE, {sae.cfg.d_in} -> {sae.cfg.d_sae}, reads {sae.cfg.metadata.hook_name}")

# %% [markdown]
# ## 1 · Feature splitting across widths
#
# Train SAEs of several widths on the same activations and a concept that one latent covers in a
# narrow SAE is often covered by several latents in a wider one, each firing on a part of it: a
# latent for "animals" becomes latents for "birds", "fish", .... This is **feature splitting**.
# The course world has a planted hierarchy to test it on (P11): top categories ({{animal}},
# {{plant}}, {{thing}}), each with a few middle categories (bird, fish, ...), each with a few member
# words ("sparrow", "robin", ...). Our family of SAEs has widths {{64}} to {{1024}}, all reading the
# same hook.
#
# The data: every category word of the world in every P11 frame that mentions a single member
# ("A sparrow is a kind of bird.", "We saw a sparrow near the river."), read at the word. Each
# prompt knows its word, its middle category and its top category: that is the ground truth every
# latent is scored against below.

# %% [module]
def category_prompts() -> dict:
    """Every P11 category word in every P11 frame that mentions a single member, read at the word.

    Returns {"tokens": (n, n_ctx) ids padded on the right, "position": (n,) position of the word,
    "word", "mid", "top": [str] (e.g. "sparrow", "bird", "animal"), "heldout": (n,) bool}.
    """
    vocab = load_tokenizer().get_vocab()
    rows, positions, words, heldout = [], [], [], []
    for relation in ("category", "category_mention"):
        for _, text, held in world_frames(relation, {"w", "mid", "name", "place"}):
            for word, (top, mid) in F.WORD_TO_CATEGORY.items():
                slots = {"w": value(word, "member"), "mid": value(mid), "name": value("Mary"), "place": value("park")}
                sentence = render(text, slots, lead_space=False)
                positions.append(1 + next(i for i, tok in enumerate(sentence) if "member" in tok.labels))
                rows.append([vocab[BOS]] + [vocab[tok.text] for tok in sentence])
                words.append(word)
                heldout.append(held)
    return {"tokens": pad_rows(rows), "position": torch.tensor(positions), "word": words,
            "mid": [F.WORD_TO_CATEGORY[w][1] for w in words], "top": [F.WORD_TO_CATEGORY[w][0] for w in words],
            "heldout": torch.tensor(heldout)}


def hierarchy_truth(prompts: dict) -> tuple[Tensor, list[tuple[str, str]]]:
    """(truth (n_prompts, n_nodes) bool, nodes [(level, name)]): which prompts fall under each node
    of the planted hierarchy, top categories first, then middle categories, then words."""
    nodes = [("top", t) for t in F.CATEGORIES] + [("mid", m) for t in F.CATEGORIES for m in F.CATEGORIES[t]]
    nodes += [("word", w) for w in F.WORD_TO_CATEGORY]
    truth = torch.tensor([[prompts[level][i] == name for level, name in nodes] for i in range(len(prompts["word"]))])
    return truth, nodes


# %%
from tqdm.auto import tqdm

from utils.latent_truth import best_concepts

cat = category_prompts()
_, cache = model.run_with_cache(cat["tokens"], names_filter=[HOOK], stop_at_layer=3)
resid_cat = cache[HOOK][torch.arange(len(cat["word"])), cat["position"]]  # (n_prompts, d_model), at the word
truth_cat, nodes = hierarchy_truth(cat)
fires_cat = {width: sae.encode(resid_cat) > 0 for width, sae in saes.items()}
print(f"{len(cat['word'])} prompts: {len(F.WORD_TO_CATEGORY)} words x {len(cat['word']) // len(F.WORD_TO_CATEGORY)} "
      f"frames; {len(nodes)} nodes in the hierarchy: " + ", ".join(
          f"{n} {level}" for level, n in Counter(level for level, _ in nodes).items()))

# %% [markdown]
# ### Exercise: `node_f1`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# Score every latent against every node of the hierarchy at once. `fires` (n, d_sae) says where
# each latent fires, `truth` (n, n_nodes) where each node holds. Return the `(d_sae, n_nodes)`
# F1 scores of "the latent fires" as a detector of "the node holds": with `tp` the prompts where
# both hold, precision `tp / n_fires`, recall `tp / n_true` and F1 their harmonic mean. A latent
# that never fires, or a node that never holds, scores 0 (no division by zero, no NaN).

# %% [exercise]
def node_f1(fires: Tensor, truth: Tensor) -> Tensor:
    """F1 of each latent (columns of `fires`, (n, d) bool) for each node (columns of `truth`, (n, m) bool): (d, m)."""
    # BEGIN SOLUTION
    fires, truth = fires.float(), truth.float()
    tp = fires.T @ truth  # (d, m)
    return 2 * tp / (fires.sum(0)[:, None] + truth.sum(0)[None, :]).clamp_min(1)
    # END SOLUTION


# %% [hint]
# For every pair (latent, node of the hierarchy), compare the tokens where the latent fires with
# the tokens that carry the node: F1 balances how many of the latent's firings are right
# (precision) and how many of the node's tokens it catches (recall). All it needs are three counts
# per pair: tokens where both hold, tokens where the latent fires, tokens where the node holds.
# Compute them for all pairs at once rather than in a loop.

# %% [hint]
# One matrix product of the two masks (as floats, one transposed) counts the true positives of
# every pair. F1 is also `2 tp / (n_fires + n_true)`, which needs no separate precision and recall;
# keep the denominator at least 1 for latents or nodes that never occur.

# %% [check]
tests.test_node_f1(node_f1)

# %% [markdown]
# For each width, the best F1 any latent reaches for each node, averaged over the nodes of each
# level, and how many latents match some node of a level with F1 ≥ 0.5, also per 100 latents (a wider
# SAE has more latents, hence more chances to match a node by luck). As a size-matched control, the
# widest SAE is cut down to random subsets of as many latents as the narrowest one has:

# %%
f1_cat = {width: node_f1(fires_cat[width], truth_cat) for width in saes}
levels = np.array([level for level, _ in nodes])
split_rows = []
for width, f1s in f1_cat.items():
    best_node = f1s.max(1)
    row = {"width": width}
    for level in ("top", "mid", "word"):
        row[f"best F1 {level}"] = round(float(f1s[:, levels == level].max(0).values.mean()), 2)
    for level in ("top", "mid", "word"):
        row[f"latents {level}"] = int(((best_node.values >= 0.5) & torch.tensor(levels == level)[best_node.indices]).sum())
    split_rows.append(row)
split_table = pd.DataFrame(split_rows).set_index("width")
for level in ("top", "mid", "word"):  # per 100 latents: a wider SAE has more latents to match with
    split_table[f"per 100 latents {level}"] = (100 * split_table[f"latents {level}"] / split_table.index).round(2)
print(split_table.to_string())
# size-matched control: the widest SAE restricted to random subsets of as many latents as the narrowest
rng = np.random.default_rng(0)
subset_f1 = {level: [] for level in ("top", "mid", "word")}
for _ in range(20):
    subset = torch.tensor(rng.choice(max(saes), min(saes), replace=False))
    for level in subset_f1:
        subset_f1[level].append(float(f1_cat[max(saes)][subset][:, levels == level].max(0).values.mean()))
print(f"width {max(saes)}, random subsets of {min(saes)} latents (20 draws), mean best F1, 5th / 50th / 95th percentile: "
      + "; ".join(f"{level} " + " / ".join(f"{q:.2f}" for q in np.percentile(v, [5, 50, 95])) for level, v in subset_f1.items()))
for width in (min(saes), max(saes)):
    for k, (level, name) in enumerate(nodes):
        if level == "top":
            j = int(f1_cat[width][:, k].argmax())
            tp = int((fires_cat[width][:, j] & truth_cat[:, k]).sum())
            print(f"width {width}, best latent for {name}: {j}, precision {tp / max(int(fires_cat[width][:, j].sum()), 1):.2f}, "
                  f"recall {tp / int(truth_cat[:, k].sum()):.2f}")

# %% [markdown]
# Expected output: the top categories are matched about equally well at every width (mean best F1
# {{0.53}} at width {{64}}, {{0.54}} at width {{1024}}), while the finer levels improve: middle
# categories from {{0.41}} to {{0.45}}, single words from {{0.18}} to {{0.37}}. Is that because a
# wider SAE's latents are finer, or only because it has 16 times more latents to pick the best from?
# The control answers: 64 random latents of the width-1024 SAE reach a word-level best F1 of
# {{0.14 / 0.16 / 0.18}} (5th / 50th / 95th percentile of 20 draws), no better than the width-64
# SAE's 0.18, and at the top and middle levels they do worse than it. Picked at random, a wide SAE's
# latents are no finer; its advantage comes from having many of them, a few of which land on single
# words. The counts say the same once normalised: latents matching a
# word (F1 ≥ 0.5) go from {{0}} to {{3}}, but per 100 latents that is {{0.29}} at width 1024, lower
# than at widths 128 and 256 ({{1.56}}). So this world shows only weak evidence of splitting in
# aggregate. The best F1 of a top category stays near 0.5 for a simple reason: its best latent
# fires on category words in general. At width {{1024}} the best latent for animal has precision
# {{0.51}} and recall {{0.96}}: it fires on nearly every animal word and on many others (animal words
# are 22 of the 52).
#
# Now the splitting itself. To say that a latent of width `2w` is a **child** of a latent of width
# `w` we use two signals: their decoder directions are close (cosine), and on the held-out corpus
# the child rarely fires without the parent (co-occurrence).
#
# ### Exercise: `cooccurrence`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 5 minutes
#
# Given where the latents of two SAEs fire on the same tokens, `fires_a` (n, d_a) and `fires_b`
# (n, d_b), return the `(d_a, d_b)` matrix of `P(b fires | a fires)`: the share of the tokens
# where latent `a` fires on which latent `b` fires too. A latent `a` that never fires gets a row of
# zeros.

# %% [exercise]
def cooccurrence(fires_a: Tensor, fires_b: Tensor) -> Tensor:
    """P(b fires | a fires) for every pair: (d_a, d_b)."""
    # BEGIN SOLUTION
    fires_a, fires_b = fires_a.float(), fires_b.float()
    return (fires_a.T @ fires_b) / fires_a.sum(0)[:, None].clamp_min(1)
    # END SOLUTION


# %% [hint]
# The co-occurrence of a with b is a conditional frequency: among the tokens where latent a fires,
# the share where latent b fires too. Count joint firings for every pair at once, then divide each
# row by how often its `a` latent fires.

# %% [hint]
# `fires_a.float().T @ fires_b.float()` counts the tokens where both fire, `(d_a, d_b)`. Divide by
# a column of per-`a` counts (`[:, None]`), at least 1, so latents that never fire give 0, not NaN.

# %% [check]
tests.test_cooccurrence(cooccurrence)

# %% [markdown]
# We encode the held-out corpus with every SAE of the family (one forward pass, also used by the
# later sections) and look for the clearest split: a **parent** latent at one width that matches a
# node of the hierarchy (F1 ≥ 0.4), and its children at the next width (decoder cosine ≥ 0.4 and
# `P(parent fires | child fires)` ≥ 0.5), counting the children that match a *different* node
# below or at the parent's node. The parent with the most such children is shown.

# %%
data = labelled_corpus(n_docs=150)
corpus_resid = model(data.tokens, stop_at_layer=2)  # the residual stream entering block 2 = HOOK
fires_corpus = {width: sae.encode(corpus_resid)[data.mask] > 0 for width, sae in tqdm(saes.items(), desc="encode")}
unit_dec = {width: sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True) for width, sae in saes.items()}


def node_label(width: int, j: int) -> str:
    score, k = f1_cat[width][j].max(0)
    return f"{nodes[int(k)][1]} (F1 {float(score):.2f})" if score >= 0.3 else "(no node)"


def under(child: tuple[str, str], parent: tuple[str, str]) -> bool:
    """Whether `child` is the node `parent` or lies below it in the hierarchy."""
    if child == parent:
        return True
    word_top, word_mid = F.WORD_TO_CATEGORY.get(child[1], (None, None))
    mid_top = next((t for t, mids in F.CATEGORIES.items() if child[1] in mids), None)
    return parent[1] in {word_top, word_mid} if child[0] == "word" else parent[1] == mid_top


widths = sorted(saes)
splits = []
for small, big in zip(widths, widths[1:]):
    cos = unit_dec[small] @ unit_dec[big].T  # (d_small, d_big)
    parent_given_child = cooccurrence(fires_corpus[big], fires_corpus[small]).T  # (d_small, d_big)
    for j in (f1_cat[small].max(1).values >= 0.4).nonzero().flatten().tolist():
        parent_node = nodes[int(f1_cat[small][j].argmax())]
        children = ((cos[j] >= 0.4) & (parent_given_child[j] >= 0.5)).nonzero().flatten().tolist()
        child_nodes = {nodes[int(f1_cat[big][c].argmax())] for c in children if f1_cat[big][c].max() >= 0.3}
        finer = {n for n in child_nodes if under(n, parent_node) and n != parent_node}
        splits.append((len(finer), small, j, big, children))
n_finer, small, parent, big, children = max(splits, key=lambda s: (s[0], -s[1]))
print(f"clearest split: latent {parent} of width {small}, {node_label(small, parent)}, "
      f"has {len(children)} children at width {big}, {n_finer} of them on finer nodes below it:")
for c in sorted(children, key=lambda c: -float(unit_dec[small][parent] @ unit_dec[big][c])):
    print(f"    latent {c}: {node_label(big, c)}; decoder cosine {float(unit_dec[small][parent] @ unit_dec[big][c]):.2f}, "
          f"P(parent | child) {float(cooccurrence(fires_corpus[big][:, [c]], fires_corpus[small][:, [parent]])):.2f}")
print(f"parents with at least 2 finer children: {sum(s[0] >= 2 for s in splits)} of {len(splits)}")
close_silent, together_apart = 0, 0
for small_w, big_w in zip(widths, widths[1:]):
    cos = unit_dec[small_w] @ unit_dec[big_w].T
    together = cooccurrence(fires_corpus[big_w], fires_corpus[small_w]).T  # P(narrow latent | wide latent)
    close_silent += int(((cos >= 0.4) & (together < 0.1)).sum())
    together_apart += int(((together >= 0.5) & (cos < 0.1)).sum())
print(f"pairs of consecutive widths with decoder cosine >= 0.4 but P(parent | child) < 0.1: {close_silent}; "
      f"with P(parent | child) >= 0.5 but cosine < 0.1: {together_apart}")
print("the same latents scored on the held-out corpus (utils.latent_truth), best planted concept:")
for width, j in [(small, parent)] + [(big, c) for c in children]:
    match = best_concepts(saes[width].encode(corpus_resid)[..., j], data, n=1)[0]
    print(f"    width {width}, latent {j}: {match}")


# %% [markdown]
# Expected output: no parent has two children on finer nodes ({{0}} of {{152}} parents matched to a
# node). The clearest split is a single child: latent {{7}} of width {{64}}, matched to the top
# category {{thing}} (F1 {{0.47}}), has one child at width {{128}}, latent {{51}}, matched to
# {{instrument}} (F1 {{0.53}}), below it, with decoder cosine {{0.43}}. On the whole corpus neither is
# a category latent: their best planted concepts are `{{everyday}}` and `{{landmark_city}}`, with
# precision {{0.17}} and {{0.15}}. The node labels hold only on the category prompts, where the word is
# the only thing that varies. So clean trees like "animal → bird → sparrow" do not appear in this
# family. Both signals are needed to find children: {{183}} pairs of latents of consecutive widths
# have close decoder directions (cosine ≥ 0.4) yet almost never fire together, and {{5228}} pairs fire
# together (P(parent | child) ≥ 0.5) with nearly orthogonal directions (cosine < 0.1).

# %% [markdown]
# ## 2 · The geometry of the decoder directions
#
# Splitting suggests that latents with related meanings have nearby decoder directions. We can
# look at all the latents of the family at once: **UMAP** maps the unit decoder directions of
# every width together to 2-D, keeping near neighbours near, and **HDBSCAN** groups the
# points into dense clusters (label -1: noise, in no cluster). Each latent is labelled, as in
# chapter 02, with its best planted concept on the held-out corpus (F1 ≥ 0.2, else `(none)`).
# Both algorithms are randomised or order-dependent; seeds are fixed, and the picture changes
# with `n_neighbors` and `min_cluster_size`, so read it qualitatively.

# %%
import hdbscan
from umap import UMAP

from utils.world.concepts import concept_scores

family = []  # one row per latent of the family
for width, sae in tqdm(saes.items(), desc="label latents"):
    scores = concept_scores(sae.encode(corpus_resid), data)
    for j in range(width):
        concept, _, _, f1_score = scores.best_concept(j)
        family.append({"width": width, "latent": j, "concept": concept if f1_score >= 0.2 else "(none)",
                       "density": float(scores.density[j])})
family = pd.DataFrame(family)


def umap_and_clusters(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D UMAP coordinates and HDBSCAN cluster labels (-1: noise) of the rows of `x`.

    Workaround: UMAP's numba code (OpenMP threading layer) changes the number of threads torch
    uses, after which every small torch forward pass is tens of times slower; we put it back.
    """
    threads = torch.get_num_threads()
    try:
        xy = UMAP(n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", n_epochs=200,
                  random_state=seed, n_jobs=1).fit_transform(x)  # a seed runs on one thread anyway (umap warns)
        return xy, hdbscan.HDBSCAN(min_cluster_size=10, cluster_selection_method="leaf").fit_predict(xy)
    finally:
        torch.set_num_threads(threads)


directions_all = torch.cat([unit_dec[w] for w in widths]).numpy()
live_all = (family["density"] > 0).to_numpy()
umap_xy, clusters = umap_and_clusters(directions_all[live_all])
family = family[live_all].assign(x=umap_xy[:, 0], y=umap_xy[:, 1], cluster=clusters)
print(f"{live_all.sum()} live latents of {len(live_all)}; {family['cluster'].max() + 1} clusters, "
      f"{(clusters == -1).mean():.0%} of the latents in none; {(family['concept'] != '(none)').mean():.0%} labelled")

# %%
shown = family.assign(width=family["width"].astype(str),
                      label=np.where(family["concept"].isin(family["concept"].value_counts().index[:13]),
                                     family["concept"], "other"))
for colour, title in (("width", "SAE width"), ("label", "best planted concept (13 most common)")):
    fig = px.scatter(shown, x="x", y="y", color=colour, hover_data=["width", "latent", "concept", "cluster"],
                     title=f"UMAP of the decoder directions of the whole family, coloured by {title}",
                     width=800, height=560, opacity=0.7)
    fig.update_traces(marker_size=4)
    fig.show()

# %% [markdown]
# ### Exercise: `cluster_purity`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# How well do the clusters follow the planted concepts? Given each latent's cluster (`clusters`,
# integers, -1 for noise) and label (`concepts`), return the **purity**: over the latents that are
# in a cluster (not -1) and have a label (not `"(none)"`), the share that carry the most common
# label of their cluster. Equivalently: for each cluster, count its most common label; sum these
# counts over the clusters; divide by the number of such latents. Return 0.0 if there are none.

# %% [exercise]
def cluster_purity(clusters: np.ndarray, concepts: list[str]) -> float:
    """Share of the clustered, labelled latents that carry their cluster's most common label."""
    # BEGIN SOLUTION
    keep = [(c, k) for c, k in zip(np.asarray(clusters).tolist(), concepts) if c != -1 and k != "(none)"]
    if not keep:
        return 0.0
    by_cluster = {}
    for c, k in keep:
        by_cluster.setdefault(c, Counter())[k] += 1
    return sum(counts.most_common(1)[0][1] for counts in by_cluster.values()) / len(keep)
    # END SOLUTION


# %% [hint]
# Purity asks: if each cluster were named after its most common planted label, what share of the
# latents would carry their cluster's name? Only latents that are in a cluster and that have a
# label count; for each cluster, count its most common label, add these up, and divide by the
# number of latents counted.

# %% [hint]
# Filter first, on both conditions: HDBSCAN's noise cluster is `-1` and unlabelled latents are
# `"(none)"`. A `Counter` per cluster gives its top label's count (`most_common(1)`). The
# denominator is the number of latents kept, not of clusters; if none are kept, return 0.0.

# %% [check]
tests.test_cluster_purity(cluster_purity)

# %% [markdown]
# Purity depends on how many labels there are and how unevenly they are spread, so we compare it
# with the same number after shuffling the labels among the labelled latents (20 shuffles), for
# the whole family and for each width's latents alone. Then a sharper question: a cluster can be
# pure because one SAE re-learned the same concept at every width (the same latent five times), or
# because related latents of one SAE sit together. So for every labelled latent we also ask whether
# its nearest decoder direction *within its own width* carries the same concept, and whether its
# nearest direction *in another width* does:

# %%
purity_rows = []
rng = np.random.default_rng(0)
for name, part in [("all widths", family)] + [(f"width {w}", family[family["width"] == w]) for w in widths]:
    cl, labels_part = part["cluster"].to_numpy(), part["concept"].to_numpy()
    named = labels_part != "(none)"
    shuffles = []
    for _ in range(20):
        shuffled_part = labels_part.copy()
        shuffled_part[named] = rng.permutation(labels_part[named])
        shuffles.append(cluster_purity(cl, list(shuffled_part)))
    purity_rows.append({"latents": name, "purity": round(cluster_purity(cl, list(labels_part)), 2),
                        "shuffled": round(float(np.mean(shuffles)), 2), "max shuffled": round(float(np.max(shuffles)), 2)})
purity_table = pd.DataFrame(purity_rows).set_index("latents")
print(purity_table.to_string())
fig = px.bar(purity_table.reset_index(), x="latents", y=["purity", "shuffled"], barmode="group",
             title="Cluster purity against the planted concepts, and with shuffled labels", width=750, height=380)
fig.show()
by_cluster = (family[family["concept"] != "(none)"].groupby("cluster")["concept"]
              .agg(lambda s: f"{s.value_counts().index[0]} ({s.value_counts().iloc[0]}/{len(s)})"))
print("most common concept of the largest clusters:")
print(by_cluster.drop(-1, errors="ignore").loc[family[family["cluster"] >= 0]["cluster"].value_counts().index[:6]].to_string())
labelled_family = family[family["concept"] != "(none)"]
unit_lab = torch.cat([unit_dec[w][torch.tensor(labelled_family[labelled_family["width"] == w]["latent"].to_numpy())]
                      for w in widths])
lab_width = torch.tensor(np.concatenate([labelled_family[labelled_family["width"] == w]["width"].to_numpy() for w in widths]))
lab_concept = np.concatenate([labelled_family[labelled_family["width"] == w]["concept"].to_numpy() for w in widths])
sims = unit_lab @ unit_lab.T
sims.fill_diagonal_(-2.0)
same_width = lab_width[:, None] == lab_width[None, :]
nearest_within = sims.masked_fill(~same_width, -2.0).argmax(1).numpy()
nearest_across = sims.masked_fill(same_width, -2.0).argmax(1).numpy()
print(f"labelled latents whose nearest decoder direction carries the same concept: within their width "
      f"{(lab_concept[nearest_within] == lab_concept).mean():.2f}, in another width "
      f"{(lab_concept[nearest_across] == lab_concept).mean():.2f}; chance (a random labelled latent) "
      f"{sum((c / len(lab_concept)) ** 2 for c in Counter(lab_concept).values()):.2f}")
widths_per_cluster = family[family["cluster"] >= 0].groupby("cluster")["width"].nunique()
print(f"clusters holding latents of at least 3 widths: {(widths_per_cluster >= 3).sum()} of {len(widths_per_cluster)}")

# %% [markdown]
# Expected output: {{1835}} of the 1984 latents are live; HDBSCAN finds {{37}} clusters and leaves
# {{60%}} of the latents as noise. Over the whole family, {{0.52}} of the clustered, labelled latents
# share their cluster's most common concept, against {{0.26}} with shuffled labels (at most {{0.28}}
# in 20 shuffles). Per width the margin is small for the narrow SAEs ({{0.92}} against a shuffled
# mean of {{0.86}} at width 64, where one shuffle also reached 0.92: few latents are labelled and one
# concept dominates) and clearer for the wide ones ({{0.49}} against {{0.35}}, at most {{0.39}}, at
# width 1024).
#
# The nearest-neighbour comparison says where that purity comes from. A labelled latent's nearest
# direction in *another* width carries the same concept {{0.48}} of the time; its nearest direction
# in its *own* width only {{0.12}} of the time (a random labelled latent: {{0.05}}). So the clusters
# are held together mostly by the same concept re-learned at several widths ({{34}} of the {{37}}
# clusters hold latents of at least 3 widths), not by one SAE spreading a concept over several nearby
# latents, which is what splitting would add. Two cautions: most latents have no planted label
# ({{31%}} labelled), and the clusters move with the UMAP and HDBSCAN settings.


# %% [markdown]
# ## 3 · Feature absorption on first letters
#
# Suppose a dictionary has a latent that seems to mean "the word starts with E". Feature absorption
# is what happens when that latent fires on most E-words but stays silent on, say, " elephant",
# because another latent, one that fires on " elephant" anyway, has taken the "starts with E"
# direction into its own decoder vector. The sparsity penalty rewards this: one latent firing
# instead of two. The result is a latent that looks like a clean concept detector and has holes
# you cannot predict from its description.
#
# SAEBench measures absorption in three steps. We first write a simplified version of each step on
# the course world's P10 sentences ("The word elephant starts with the letter E"), and at the end of
# the section compute SAEBench's own definition and show what each simplification changes:
#
# 1. train a **linear probe** per letter on the residual stream: the probe's direction is our
#    stand-in for the model's own "starts with L" feature;
# 2. find each letter's **main latents**, here those whose decoder direction is closest to the
#    probe's (SAEBench uses k-sparse probing);
# 3. on the examples where the probe says yes (and is right), count how often the main latents do
#    *not* fire and some other firing latent carries the probe direction instead: the
#    **absorption rate**.
#
# First, the data: every spelling word of the world in every P10 frame that ends on the letter,
# cut just before the letter: {{106}} words, so 4 to 15 words for each of the letters we keep (those
# with at least 4 words), each in {{11}} frames. One forward pass, cached once for the whole section.

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
print(f"{len(rows)} prompts ({len(F.SPELLING_WORDS)} words x {len(set(prompts['frame'].tolist()))} frames); "
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
# A probe is a linear classifier: find a direction and a bias such that `acts @ w + b` is positive
# on the examples with the label and negative on the others, e.g. by logistic regression. The
# classes are unbalanced, so weight them so that the rare one counts as much as the common one.
# Return the direction as a unit vector, so it can be compared with decoder directions.

# %% [hint]
# Fit a logistic regression with `class_weight="balanced"`, then divide *both* the weight vector
# and the bias by the weight vector's norm: the sign of `acts @ w + b` does not change, and the
# direction becomes a unit vector.

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
# Expected output: the probes at the last token generalise to unseen words (mean F1 {{0.78}}), those
# on the word itself much less ({{0.30}}). So in this small model, at this layer, a word's first
# letter is mostly not readable on the word itself; it is readable at the position that predicts
# the letter. We study absorption there: the concept is "the answer starts with L", the one the
# model needs at that point. (SAEBench probes the word token itself, which works in the larger
# models it was designed for; this is our first departure from it.)
#
# From here on, probes are trained on the world's training frames, and every measurement is made on
# its 3 validation frames, which neither the model nor the probe ever saw. The probes are fitted by a
# given function, `fit_probe` (the same logistic regression as the solution's `train_probe`), so the
# numbers below do not depend on your implementation; how much they depend on the probe's
# regularisation is measured at the end of the section.

# %% [module]
def fit_probe(acts: Tensor, labels: Tensor, C: float = 1.0) -> tuple[Tensor, float]:
    """The course's probe: what `train_probe` returns (scikit-learn's default C = 1), with any
    inverse regularisation strength C. Unit direction and bias."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(class_weight="balanced", max_iter=2000, C=C).fit(acts.double().numpy(), labels.numpy())
    w = torch.tensor(clf.coef_[0], dtype=acts.dtype)
    return w / w.norm(), float(clf.intercept_[0] / w.norm())


def k_sparse_main_latents(acts_train: Tensor, y_train: np.ndarray, acts_test: Tensor, y_test: np.ndarray,
                          max_k: int = 5, f1_jump: float = 0.03) -> list[int]:
    """SAEBench's main latents of one class: rank the latents by their weight in an L1-regularised
    logistic probe on the SAE activations, then fit a probe on the top k latents for k = 1, 2, ...
    and keep adding latents while the F1 on the test examples rises by more than `f1_jump`."""
    from sklearn.linear_model import LogisticRegression

    l1 = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=0.1, class_weight="balanced", max_iter=2000)
    order = np.argsort(-l1.fit(acts_train.numpy(), y_train).coef_[0], kind="stable")
    best, main = -1.0, []
    for k in range(1, max_k + 1):
        clf = LogisticRegression(class_weight="balanced", max_iter=500).fit(acts_train[:, order[:k]].numpy(), y_train)
        pred = clf.predict(acts_test[:, order[:k]].numpy()).astype(bool)
        score = 2 * (pred & y_test).sum() / max(pred.sum() + y_test.sum(), 1)
        if score <= best + f1_jump:
            break
        best, main = score, order[:k].tolist()
    return main


def saebench_full_absorption(latent_acts: Tensor, W_dec: Tensor, direction: Tensor, resid_proj: Tensor,
                             main: list[int], min_cos: float = 0.025, min_share: float = 0.4) -> Tensor:
    """SAEBench's full absorption, per example (n,) bool: every main latent is silent, the latent with
    the largest probe projection (activation x cosine with the probe) has cosine >= `min_cos`, the
    residual's own probe projection `resid_proj` is positive, and that latent carries at least
    `min_share` of it."""
    cos = (W_dec @ direction) / (W_dec.norm(dim=-1) * direction.norm())
    top = (latent_acts * cos).max(-1)
    silent = (latent_acts[:, main] <= 1e-8).all(-1)
    return silent & (cos[top.indices] >= min_cos) & (resid_proj > 0) & (top.values >= min_share * resid_proj)


# %%
train_rows, test_rows = ~prompts["heldout"], prompts["heldout"]
probes = {}
for letter in LETTERS:
    truth = torch.tensor(letters == letter)
    probes[letter] = fit_probe(resid_last[train_rows], truth[train_rows])  # the course's probe, not yours
probe_f1 = {letter: f1(((resid_last[test_rows] @ d + b) > 0).numpy(), letters[test_rows.numpy()] == letter)
            for letter, (d, b) in probes.items()}
print("probe F1 on the validation frames:", ", ".join(f"{k} {v:.2f}" for k, v in probe_f1.items()))

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
# Cosine similarity is the dot product of two directions divided by both their lengths. Do it for
# every latent's decoder direction against the one given, all at once.

# %% [hint]
# `W_dec` has one row per latent, so `W_dec @ direction` gives every dot product; divide by each
# row's norm and by the direction's norm (clamped away from zero).
# `torch.nn.functional.cosine_similarity` with a broadcast `direction[None]` does the same.

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
# Expected output: the best cosines are low: on average {{0.24}} at width {{64}}, growing to {{0.37}} at
# width {{1024}}. No SAE of the family has a latent that *is* the probe's direction. Keep this in mind
# when you read the absorption table below: when the "main latent" only partly matches the
# concept, it will miss many examples of the concept whether or not anything absorbs it.
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
    carrier = fires & ~is_main & (cos >= min_cos) & (proj >= min_share * total)
    return missed, missed & carrier.any(-1)
    # END SOLUTION


# %% [hint]
# Follow the definitions in the text, example by example. An example is *missed* when the probe
# says yes, the truth says yes, and none of the main latents fires. It is *absorbed* when it is
# missed and some other latent carries the feature instead: a latent that fires, is not a main one,
# points roughly along the probe direction, and contributes a large share of the example's total
# projection onto that direction.

# %% [hint]
# Build a `(d_sae,)` mask of the main latents first. A latent's projection on an example is its
# activation times its raw decoder row's dot product with the direction; the cosine uses the
# normalised row instead. Negative projections are left out of the total (`clamp_min(0)` before
# summing), not subtracted from it.

# %% [check]
tests.test_absorption(absorption)

# %% [markdown]
# Now the table: for each letter and width, on the validation frames, the share of probe-positive
# examples that the main latent misses and the absorption rate, with one main latent per letter
# (the one of largest cosine). As a control for the miss rate, the same main latent's silence on
# the examples of the *other* letters: a latent that is silent everywhere misses a lot for free.

# %%
acts_last = {width: sae.encode(resid_last[test_rows]) for width, sae in saes.items()}
test_letters = letters[test_rows.numpy()]
miss_rows, absorb_rows, absorbers, silent_elsewhere = [], [], {}, {}
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
        silent_elsewhere.setdefault(width, []).append(float((acts_last[width][~truth, main_latent[letter, width]] <= 0)
                                                            .float().mean()))
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
print("control, the main latent silent on the examples of the other letters (mean over letters):",
      ", ".join(f"w{w} {np.mean(v):.2f}" for w, v in silent_elsewhere.items()))

# %%
fig = px.line(x=list(saes), y=[list(mean_miss.values()), list(mean_absorption.values())], markers=True, log_x=True,
              labels={"x": "SAE width", "value": "share of probe-positive examples", "variable": ""},
              title="First-letter probe vs the main latent, across SAE widths", width=700, height=380)
for trace, name in zip(fig.data, ("main latent silent", "absorbed")):
    trace.name = name
fig.show()

# %% [markdown]
# Expected output (weighted means over the letters): the main latent is silent on {{0.31}} of the
# examples the probe gets right at width {{64}} and on {{0.82}} at width {{1024}}, and on the other
# letters' examples it is silent on {{w64 0.68}} and {{w1024 0.93}}: at both widths the main latent
# prefers its letter, but the wider SAE's main latent fires rarely anywhere. The absorption rate as
# defined here stays small at every width, between {{0.00}} (width {{256}}) and {{0.05}} (widths 64
# and 128), with no trend. Per letter the numbers rest on few examples (the `n` column counts the
# validation sentences the probe gets right, at most three per word), so read the table as a
# pattern, not as precise rates.
#
# What can we say, and what not?
#
# - The wider the SAE, the more often the single best-aligned latent stays silent on its letter,
#   and the control shows part of that is plain sparsity: its latents fire less often everywhere.
# - With cosines this far below 1, "main latent" is a generous name: these latents are not clean
#   first-letter detectors that fail now and then.
# - Most misses are **not** absorption as defined: usually no single other latent carries 40% of
#   the probe projection; the letter is spread over several latents.
# - The metric depends on its thresholds and on the choice of main latents. The next cells measure
#   how much, and then compute SAEBench's own version.
#
# Who absorbs? For the widest SAE, here are the latents that carry the probe direction on absorbed
# examples, with the word they occur on:

# %%
width = max(saes)
sae = saes[width]
test_words = np.array(prompts["word"])[test_rows.numpy()]
absorbing = {}  # latent id -> (letter, words whose letter it absorbs)
for letter, (d, b) in probes.items():
    proj = acts_last[width] * (sae.W_dec @ d)
    for i in absorbers[letter, width].nonzero().flatten().tolist():
        j = int(proj[i].argmax())
        absorbing.setdefault(j, (letter, []))[1].append(test_words[i])
all_acts = sae.encode(resid_last)  # every prompt, every frame
for j, (letter, ws) in sorted(absorbing.items(), key=lambda kv: -len(kv[1][1])):
    fired = sorted({w for w, a in zip(prompts["word"], all_acts[:, j].tolist()) if a > 0})
    same = np.mean([F.first_letter(w) == letter for w in fired]) if fired else 0.0
    print(f"latent {j} absorbs {letter} on: {', '.join(ws)}; over all prompts it fires for {len(fired)} words, "
          f"{same:.0%} of them starting with {letter}")
narrow = sum(1 for j in absorbing if int((all_acts[:, j] > 0).sum()) > 0
             and len({w for w, a in zip(prompts["word"], all_acts[:, j].tolist()) if a > 0}) <= 5)
print(f"{len(absorbing)} absorbing latents in the width-{width} SAE; {narrow} of them fire for at most 5 words")

# %%
def mean_absorption_rate(width: int, n_main: int = 1, min_share: float = 0.4, min_cos: float = 0.025) -> float:
    """Absorbed / probe-right examples, pooled over the letters, on the validation frames."""
    sae, absorbed_total, right_total = saes[width], 0, 0
    for letter, (d, b) in probes.items():
        truth = torch.tensor(test_letters == letter)
        probe_yes = (resid_last[test_rows] @ d + b) > 0
        main = decoder_cosines(d, sae).topk(n_main).indices.tolist()
        _, absorbed = absorption(acts_last[width], sae.W_dec, d, probe_yes, truth, main, min_cos, min_share)
        absorbed_total += int(absorbed.sum())
        right_total += int((probe_yes & truth).sum())
    return absorbed_total / right_total


settings = {"as above": {}, "2 main latents": {"n_main": 2}, "3 main latents": {"n_main": 3},
            "min_share 0.2": {"min_share": 0.2}, "min_share 0.6": {"min_share": 0.6}, "min_cos 0.1": {"min_cos": 0.1}}
sensitivity = pd.DataFrame({name: {f"w{w}": round(mean_absorption_rate(w, **kw), 2) for w in saes}
                            for name, kw in settings.items()}).T
print("absorption rate pooled over letters, under other settings:")
print(sensitivity.to_string())

# %% [markdown]
# Expected output: more main latents or `min_cos 0.1` change the rates by at most a few hundredths,
# while the share threshold decides almost everything: at width {{1024}} the rate is {{0.46}} at
# `min_share 0.2`, {{0.03}} at 0.4 and {{0.00}} at `min_share 0.6`, and at 0.6 every width reads 0.
# So compare absorption rates only under one fixed setting, and quote a rate with its settings.

# %% [markdown]
# ### The same question, measured as SAEBench measures it
#
# Our `absorption` departs from SAEBench's full-absorption metric in four ways. SAEBench (1) picks
# each letter's main latents by k-sparse probing on the SAE activations (`k_sparse_main_latents`
# above), not by decoder cosine; (2) divides the absorbing latent's projection by the **residual
# stream's own** probe projection, not by the positive projections of the SAE's latents; (3) asks it
# of the single top-projecting latent; (4) averages the rate over letters, each letter counting once.
# It also probes the word token in a few-shot "word: letter" prompt; we probe the position where
# the letter is predicted (shown above to be where the letter is readable). The cell below applies
# the changes one at a time, and then repeats the full metric with probes of three regularisation
# strengths, since the residual's probe projection depends on the probe's direction.

# %%
probes_by_C = {(1.0, letter): probes[letter] for letter in LETTERS}
k_sparse_main = {}  # (width, letter) -> main latents; they do not depend on the probe


def rate_by_letter(width: int, rule: str, main_by: str = "cosine", C: float = 1.0) -> list[float]:
    """Per-letter absorption rate on the validation frames under one combination of choices."""
    sae, out = saes[width], []
    for letter in LETTERS:
        if (C, letter) not in probes_by_C:
            probes_by_C[C, letter] = fit_probe(resid_last[train_rows], torch.tensor(letters == letter)[train_rows], C)
        d, b = probes_by_C[C, letter]
        truth = torch.tensor(test_letters == letter)
        probe_yes = (resid_last[test_rows] @ d + b) > 0
        if main_by == "cosine":
            main = [int(decoder_cosines(d, sae).argmax())]
        else:
            if (width, letter) not in k_sparse_main:
                k_sparse_main[width, letter] = k_sparse_main_latents(
                    sae.encode(resid_last[train_rows]), letters[train_rows.numpy()] == letter, acts_last[width],
                    test_letters == letter)
            main = k_sparse_main[width, letter]
        if rule == "chapter":
            _, absorbed = absorption(acts_last[width], sae.W_dec, d, probe_yes, truth, main)
        else:
            absorbed = probe_yes & truth & saebench_full_absorption(acts_last[width], sae.W_dec, d,
                                                                    resid_last[test_rows] @ d, main)
        out.append(int(absorbed.sum()) / max(int((probe_yes & truth).sum()), 1))
    return out


n_right = absorb_table["n"].to_numpy()
variants = {
    "chapter: cosine main latent, SAE denominator, pooled": lambda w: np.average(rate_by_letter(w, "chapter"), weights=n_right),
    "... letters averaged equally": lambda w: np.mean(rate_by_letter(w, "chapter")),
    "... residual denominator, top latent": lambda w: np.mean(rate_by_letter(w, "saebench")),
    "... k-sparse main latents = SAEBench (C 1)": lambda w: np.mean(rate_by_letter(w, "saebench", "k-sparse")),
    "SAEBench, probe C 0.1": lambda w: np.mean(rate_by_letter(w, "saebench", "k-sparse", C=0.1)),
    "SAEBench, probe C 10": lambda w: np.mean(rate_by_letter(w, "saebench", "k-sparse", C=10.0)),
}
departures = pd.DataFrame({name: {f"w{w}": round(float(f(w)), 2) for w in saes} for name, f in variants.items()}).T
print("absorption rate on the validation frames, changing one choice at a time:")
print(departures.to_string())

# %% [markdown]
# Expected output: read the table row by row. Averaging letters equally instead of pooling them
# changes nothing that matters. Dividing by the residual's own probe projection moves the rates in
# both directions (width 128 from {{0.05}} to {{0.02}}, width 512 from {{0.01}} to {{0.04}}); picking
# main latents by k-sparse probing moves them again, by as much. SAEBench's metric itself, with the course
# probe, is at most {{0.05}} at every width and has no width trend. And it hinges on the probe: the
# same metric with a more regularised probe (C 0.1) is 0 everywhere, with a less regularised one (C 10)
# it reaches {{0.12}} at width 1024, because the residual's projection on the probe direction, the
# denominator, changes with the direction. In short, for this world: full absorption of
# first letters is rare (a few percent of examples at most), its size depends on the probe more than
# on the SAE's width, and no width trend survives SAEBench's definition.

# %% [markdown]
# Back to the cell before the sensitivity table, which listed the absorbers of the widest SAE
# under our own definition: {{3}} absorbing latents. The absorption paper's picture is a
# *word-specific* latent ("elephant") that has taken in the letter direction. We know which word every prompt spells, so
# we can test that picture: a word-specific absorber would fire for few words, most of them with its
# letter. None of ours does ({{0}} fire for at most 5 words): the one that absorbs most, latent
# {{786}} (W, on 4 words), fires for {{64}} words, only {{8%}} of them starting with W. They are broad
# latents of spelling prompts that lean a little towards one letter, and with three latents this is
# an anecdote, not a finding.

# %% [markdown]
# ## 4 · Meta-SAEs
#
# If a latent has absorbed "starts with C", its decoder direction is a mix: part "this word", part
# "starts with C". A **meta-SAE** looks for such parts. It is an ordinary sparse autoencoder whose
# training data are not activations but the decoder directions of another SAE: every SAE latent is
# one training example, and each meta-latent is a direction that several SAE latents share. A latent
# that uses two meta-latents is, in the meta-SAE's view, made of two parts.
#
# Our meta-SAE is a tiny TopK SAE: it encodes a direction by keeping its `k` largest pre-activations
# (and only the positive ones), and decodes with unit-norm rows.
#
# ### Exercise: `topk_encode`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵⚪⚪⚪ · about 10 minutes
#
# Return the dense `(n, n_meta)` activations: pre-activations `(x - b_dec) @ W_enc + b_enc`; in
# each row, keep the `k` largest and set the rest to 0; then set negative values to 0.

# %% [exercise]
def topk_encode(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int) -> Tensor:
    """TopK SAE encoder: (n, d) -> (n, n_latents), at most k nonzero (and positive) entries per row."""
    # BEGIN SOLUTION
    pre = (x - b_dec) @ W_enc + b_enc
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    # END SOLUTION


# %% [hint]
# A TopK SAE encodes in two steps: compute every latent's pre-activation (subtract the decoder
# bias, project with the encoder, add the encoder bias), then keep only the `k` largest per row and
# set all the others to zero. Kept values must also be positive.

# %% [hint]
# `topk(k, dim=-1)` gives values and indices; `scatter` into a tensor of zeros puts them back in
# place. Apply a ReLU to the kept values: when fewer than `k` pre-activations are positive, some of
# the top `k` are negative.

# %% [check]
tests.test_topk_encode(topk_encode)

# %% [module]
def train_meta_sae(directions: Tensor, n_meta: int, k: int, steps: int = 1500, lr: float = 3e-3,
                   seed: int = 0) -> dict:
    """Train a TopK SAE on `directions` (n, d), full batch, with unit-norm decoder rows.

    Returns {"W_enc", "b_enc", "b_dec", "W_dec", "k", "fve"} (fve: fraction of variance explained).
    """
    gen = torch.Generator().manual_seed(seed)
    n, d = directions.shape
    W_dec = torch.randn(n_meta, d, generator=gen)
    W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    params = {"W_enc": W_dec.T.clone(), "b_enc": torch.zeros(n_meta), "b_dec": directions.mean(0), "W_dec": W_dec}
    params = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            z = topk_encode(directions, params["W_enc"], params["b_enc"], params["b_dec"], k)
            loss = ((z @ params["W_dec"] + params["b_dec"] - directions) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                params["W_dec"] /= params["W_dec"].norm(dim=-1, keepdim=True)
    out = {name: p.detach() for name, p in params.items()}
    z = topk_encode(directions, out["W_enc"], out["b_enc"], out["b_dec"], k)
    resid = z @ out["W_dec"] + out["b_dec"] - directions
    out["fve"] = float(1 - resid.pow(2).sum() / (directions - directions.mean(0)).pow(2).sum())
    out["k"] = k
    return out


# %% [markdown]
# We train it on the decoder directions of the live latents of the widest SAE, with 64 meta-latents
# and 4 active per SAE latent (a choice, not a property of the world).
# To interpret the meta-latents we need labels for the SAE latents, and the course world has them:
# each latent's best-matching planted concept on the held-out corpus (precision and recall of
# "the latent fires" against the concept's tokens, as in chapter 02), on the corpus encoded in
# section 1. A meta-SAE explains part of the variance of any set of vectors, so we train the same
# meta-SAE on as many random unit vectors as a control.

# %%
wide = saes[max(saes)]
corpus_acts = wide.encode(corpus_resid)  # (n_docs, n_ctx, d_sae)
concepts_of = concept_scores(corpus_acts, data)
live = (concepts_of.density > 0).nonzero().flatten()
latent_concept = {}
for j in live.tolist():
    concept, precision, recall, f1_score = concepts_of.best_concept(j)
    latent_concept[j] = concept if f1_score >= 0.2 else "(none)"
print(f"{len(live)} live latents of {wide.cfg.d_sae}; {sum(c != '(none)' for c in latent_concept.values())} "
      f"match a planted concept with F1 >= 0.2")

directions = wide.W_dec[live] / wide.W_dec[live].norm(dim=-1, keepdim=True)
meta = train_meta_sae(directions, n_meta=64, k=4, steps=500, lr=1e-2, seed=0)
meta_acts = topk_encode(directions, meta["W_enc"], meta["b_enc"], meta["b_dec"], meta["k"])
print(f"meta-SAE: fraction of variance of the decoder directions explained {meta['fve']:.2f}; "
      f"mean meta-latents per SAE latent {(meta_acts > 0).sum(-1).float().mean():.2f}")
# control: the same meta-SAE trained on as many random unit vectors (no shared parts by construction)
random_fve = []
for seed in range(3):
    noise = torch.randn(directions.shape, generator=torch.Generator().manual_seed(100 + seed))
    random_fve.append(train_meta_sae(noise / noise.norm(dim=-1, keepdim=True), n_meta=64, k=4, steps=500, lr=1e-2,
                                     seed=seed)["fve"])
print(f"the same meta-SAE on random unit vectors: fraction of variance explained "
      + ", ".join(f"{v:.2f}" for v in random_fve) + " (3 draws)")

# %% [markdown]
# ### Exercise: `meta_latent_concepts`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 10 minutes
#
# For each meta-latent `m`, look at the SAE latents that **load** on it (`meta_acts[i, m] > 0`).
# Return one tuple per meta-latent, `(concept, share, n)`: the most common concept label among the
# loading latents (ties go to the label met first, in latent order: `Counter.most_common` does
# this), the share of loading latents that carry it, and their number. A meta-latent that no latent
# loads on gets `("(unused)", 0.0, 0)`. Labels `"(none)"` count like any other label.

# %% [exercise]
def meta_latent_concepts(meta_acts: Tensor, concepts: list[str]) -> list[tuple[str, float, int]]:
    """meta_acts (n_latents, n_meta); concepts[i] labels SAE latent i. One (concept, share, n) per meta-latent."""
    # BEGIN SOLUTION
    out = []
    for m in range(meta_acts.shape[1]):
        loading = (meta_acts[:, m] > 0).nonzero().flatten().tolist()
        if not loading:
            out.append(("(unused)", 0.0, 0))
            continue
        concept, count = Counter(concepts[i] for i in loading).most_common(1)[0]
        out.append((concept, count / len(loading), len(loading)))
    return out
    # END SOLUTION


# %% [hint]
# Each meta-latent groups the SAE latents whose decoder directions load on it. Describe each one by
# the planted concept most common among the latents that load on it (activation above zero): that
# concept, its share of those latents, and how many there are. A meta-latent that no latent loads
# on gets a placeholder entry.

# %% [hint]
# Loop over the columns of `meta_acts`; `(meta_acts[:, m] > 0).nonzero()` gives the loading
# latents, and `Counter(...).most_common(1)[0]` the top label with its count. An empty column gives
# `("(unused)", 0.0, 0)`.

# %% [check]
tests.test_meta_latent_concepts(meta_latent_concepts)

# %% [markdown]
# How pure are the meta-latents? Most SAE latents match no planted concept well (label `(none)`),
# so we score each meta-latent on its *labelled* loading latents only: the share that carry its
# most common label, over meta-latents with at least 5 labelled loaders. The baseline is the same
# number after shuffling the labels among the labelled SAE latents, which keeps every count and
# destroys any link between direction and meaning.

# %%
labels = [latent_concept[j] for j in live.tolist()]
labelled_rows = torch.tensor([c != "(none)" for c in labels])


def purity(labels: list[str]) -> float:
    rows = meta_latent_concepts(meta_acts[labelled_rows], [c for c in labels if c != "(none)"])
    return float(np.mean([share for _, share, n in rows if n >= 5]))


def shuffled_labels(seed: int) -> list[str]:
    named = [c for c in labels if c != "(none)"]
    order = iter(np.random.default_rng(seed).permutation(len(named)))
    return [c if c == "(none)" else named[next(order)] for c in labels]


shuffled = [purity(shuffled_labels(seed)) for seed in range(20)]
print(f"mean top-label share of the meta-latents: {purity(labels):.2f}; with shuffled labels "
      f"{np.mean(shuffled):.2f} (largest of 20 shuffles {np.max(shuffled):.2f})")
summary = meta_latent_concepts(meta_acts[labelled_rows], [c for c in labels if c != "(none)"])
table = pd.DataFrame(summary, columns=["top concept", "share", "n labelled latents"])
table.index.name = "meta-latent"
print(table[table["n labelled latents"] >= 5].sort_values("share", ascending=False).head(8).round(2).to_string())

# %% [markdown]
# Expected output: the meta-SAE explains {{0.35}} of the variance of the decoder directions. That
# sounds like structure until the control: the same meta-SAE trained on as many random unit vectors,
# which share no parts by construction, explains {{0.29}} (in each of 3 draws). Most of the 0.35 is
# what 64 directions with 4 active per vector explain of *anything* in 128 dimensions. Its
# meta-latents are hardly purer than chance: a mean top-label share of {{0.17}} against {{0.16}} for
# shuffled labels (at most {{0.17}} in 20 shuffles, so no margin at all). A few meta-latents gather
# latents of one concept (the table, mostly `p3_run`, the repeated random spans), most mix many. Two
# caveats: most SAE latents have no planted label at all, and a decoder direction in a residual
# stream as narrow as this one (128 dimensions) has little room to be made of separate parts.
#
# Do the absorbing latents of section 3 decompose into a letter part and a word part? For each one,
# its meta-latents, the cosine of each meta-latent's decoder direction with the letter's probe, and
# the labels of the other latents on that meta-latent:

# %%
position = {j: i for i, j in enumerate(live.tolist())}
meta_cos = {}
for j, (letter, ws) in absorbing.items():
    d, b = probes[letter]
    row = meta_acts[position[j]]
    parts = []
    for m in row.nonzero().flatten().tolist():
        cos = float(meta["W_dec"][m] @ d)
        meta_cos.setdefault(j, []).append(cos)
        named = Counter(labels[i] for i in (meta_acts[:, m] > 0).nonzero().flatten().tolist() if labels[i] != "(none)")
        parts.append(f"meta {m}: weight {float(row[m]):.2f}, cos with probe {cos:+.2f}, "
                     f"labels of its other latents {named.most_common(2)}")
    print(f"latent {j} ({letter}; concept {latent_concept[j]}):\n    " + "\n    ".join(parts))
best_part = [max(v) for v in meta_cos.values()]
own = [float(directions[position[j]] @ probes[letter][0]) for j, (letter, _) in absorbing.items()]
print(f"absorbing latents: mean cosine of the latent with its probe {np.mean(own):.2f}; "
      f"of its best meta-latent {np.mean(best_part):.2f}")

# %% [markdown]
# Expected output: no. If an absorber were "word + letter", one of its meta-latents should point
# along the letter's probe more than the absorber itself does. On average the absorber's own
# cosine with the probe is {{0.17}} and that of its best meta-latent {{0.12}}: the meta-SAE does not
# isolate a letter part (with three absorbers, a weak test). In this world meta-SAEs find no
# shared parts beyond what random vectors give, and they do not undo the absorption we measured. The
# meta-SAE work reports interpretable decompositions for much wider SAEs of a larger model; do not
# expect the same here.

# %% [markdown]
# ## 5 · Logit lens and token enrichment
#
# A latent's decoder direction is written into the residual stream. The **logit lens** reads it
# straight through the unembedding, `W_dec[j] @ W_U`, skipping the later layers and the final
# LayerNorm: the tokens it pushes up and down directly. Our SAEs sit in the middle of the model,
# so the lens is a rough view; it is still informative when it lines up with something planted.
#
# One caution specific to the course model: its embeddings are **tied**, `W_U = W_E.T`. The logit
# lens of a direction therefore also measures how similar it is to each token's *embedding*. A
# latent that carries the current token's identity forward (an *input* latent) can show that token
# among its "boosted" tokens without predicting it. How strong this echo is at our layer is an
# empirical question, so we test for it instead of assuming.
#
# ### Exercise: `logit_lens`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# For the latents `latents` of `sae`, return `(top, bottom)`, two `(len(latents), k)` tensors of
# token ids: the `k` tokens with the largest logit-lens value, largest first, and the `k` with the
# smallest, smallest (most suppressed) first.

# %% [exercise]
def logit_lens(sae, W_U: Tensor, latents: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
    """Top and bottom k token ids of W_dec[latents] @ W_U: two (len(latents), k) tensors."""
    # BEGIN SOLUTION
    logits = sae.W_dec[latents] @ W_U
    return logits.topk(k, dim=-1).indices, (-logits).topk(k, dim=-1).indices
    # END SOLUTION


# %% [hint]
# The logit lens reads what a latent writes directly into the logits: its decoder direction
# multiplied by the unembedding. The tokens with the largest values are the ones it promotes, those
# with the smallest the ones it suppresses. Do it for all the requested latents at once.

# %% [hint]
# `topk` along the vocabulary dimension of the logits gives the promoted tokens; `topk` of minus
# the logits gives the suppressed ones, most suppressed first.

# %% [check]
tests.test_logit_lens(logit_lens)

# %% [markdown]
# ### Exercise: `enrichment_pvalue`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# A latent's top 10 tokens contain 4 city names. Is that a lot? If the 10 were drawn at random
# from a vocabulary of `N` tokens of which `K` are cities, the number of cities among them would
# follow a **hypergeometric** distribution. The enrichment p-value is the chance of seeing at
# least the observed overlap: `P(X ≥ x)`, with `x = |top ∩ class|`. Return it as a float.
# `scipy.stats.hypergeom(M, n, N)` takes the population size, the number of successes in it and
# the number of draws, in that order, and `sf(x)` is `P(X > x)`.

# %% [exercise]
def enrichment_pvalue(top: Tensor, token_class: Tensor, vocab_size: int) -> float:
    """P(at least |top ∩ class| class tokens among len(top) tokens drawn without replacement)."""
    # BEGIN SOLUTION
    from scipy.stats import hypergeom

    top, token_class = set(top.tolist()), set(token_class.tolist())
    overlap = len(top & token_class)
    return float(hypergeom(vocab_size, len(token_class), len(top)).sf(overlap - 1))
    # END SOLUTION


# %% [hint]
# Enrichment asks whether a latent's top tokens contain more tokens of a class than chance would
# give. Under chance the top tokens are a random draw from the vocabulary without replacement, so
# the number of class tokens among them follows a hypergeometric distribution; the p-value is the
# probability of seeing at least the observed overlap.

# %% [hint]
# `scipy.stats.hypergeom(vocab_size, class size, number drawn)`. "At least x" is `sf(x - 1)`, not
# `sf(x)`. Count distinct tokens in each set (use sets of ids, not lists).

# %% [check]
tests.test_enrichment_pvalue(enrichment_pvalue)

# %% [markdown]
# The planted **token classes** come from the labels of the held-out corpus: a token belongs to
# the class of concept `c` when at least half of its occurrences carry the label `c` (so " Paris"
# is in `city:Paris` and `country:France`, and every city is in the family `city:`). Classes of a
# single token are left out (a latent's lens containing " Paris" is not an enrichment).

# %%
real = data.mask
tok_real = data.tokens[real]
lab_real = data.labels[real].float()  # (n_tokens, n_concepts)
vocab_size = model.cfg.d_vocab
occurrences = torch.bincount(tok_real, minlength=vocab_size).float()
labelled = torch.zeros(len(data.concepts), vocab_size).index_add_(1, tok_real, lab_real.T)
member = labelled >= 0.5 * occurrences.clamp_min(1)
classes = {c: member[i].nonzero().flatten() for i, c in enumerate(data.concepts)}
for family in sorted({c.split(":")[0] + ":" for c in data.concepts if ":" in c}):
    ids = [classes[c] for c in data.concepts if c.startswith(family)]
    classes[family] = torch.cat(ids).unique()
classes = {c: ids for c, ids in classes.items() if len(ids) >= 2}
print(f"{len(classes)} planted token classes, e.g. " + ", ".join(f"{c} ({len(classes[c])})" for c in ("city:", "state:", "letter:", "goal_family") if c in classes))

# %% [markdown]
# For every live latent of the widest SAE that fires at least 20 times on the corpus, we now compute
# three things, all with the same test:
#
# - the planted class most enriched among its top 10 logit-lens tokens, and its p-value;
# - `p_input`: the enrichment of its top tokens in the set of tokens it **fires on** (the distinct
#   tokens at its 20 strongest activations);
# - `p_prediction`: the same for the tokens that **come next** after those activations.
#
# A latent is a **prediction** latent if `p_prediction < 0.001` and smaller than `p_input`, an
# **input** latent if `p_input < 0.001` and not larger than `p_prediction`, otherwise unclassified.

# %% [module]
def enrichment_matrix(top: Tensor, sets: Tensor, vocab_size: int) -> Tensor:
    """The p-value of `enrichment_pvalue` for every (row of `top`, row of `sets`) pair at once.

    top: (n, k) token ids (distinct within a row); sets: (m, vocab_size) bool membership. Returns (n, m).
    """
    from scipy.stats import hypergeom

    in_top = torch.zeros(len(top), vocab_size).scatter_(1, top, 1.0)
    overlap = in_top @ sets.float().T  # (n, m)
    sizes = sets.sum(-1).float().expand_as(overlap)
    p = hypergeom.sf((overlap - 1).numpy(), vocab_size, sizes.numpy(), top.shape[1])
    return torch.tensor(p, dtype=torch.float64)


def paired_enrichment(top: Tensor, sets: Tensor, vocab_size: int) -> Tensor:
    """The p-value of `enrichment_pvalue` for each row of `top` against the same row of `sets`: (n,)."""
    from scipy.stats import hypergeom

    overlap = torch.zeros(len(top), vocab_size, dtype=torch.bool).scatter_(1, top, True) & sets
    return torch.tensor(hypergeom.sf(overlap.sum(-1).numpy() - 1, vocab_size, sets.sum(-1).numpy(), top.shape[1]),
                        dtype=torch.float64)


# %%
counts_fired = (corpus_acts[real] > 0).sum(0)
studied = torch.tensor([j for j in live.tolist() if counts_fired[j] >= 20])
top_tokens, bottom_tokens = logit_lens(wide, model.W_U, studied, k=10)
class_names = list(classes)
class_sets = torch.zeros(len(classes), vocab_size, dtype=torch.bool)
for i, c in enumerate(class_names):
    class_sets[i, classes[c]] = True
p_classes = enrichment_matrix(top_tokens, class_sets, vocab_size)  # (n_studied, n_classes)

flat_acts = corpus_acts.masked_fill(~real[..., None], 0).flatten(0, 1)[:, studied]  # (n_docs * n_ctx, n_studied)
strongest = flat_acts.topk(20, dim=0).indices.T  # (n_studied, 20) flat positions
tokens_flat = data.tokens.flatten()
next_flat = torch.cat([data.tokens[:, 1:], data.tokens[:, -1:]], 1).flatten()
has_next = torch.cat([real[:, 1:], torch.zeros_like(real[:, :1])], 1).flatten()
fired_on = torch.zeros(len(studied), vocab_size, dtype=torch.bool)
came_next = torch.zeros(len(studied), vocab_size, dtype=torch.bool)
for i, pos in enumerate(strongest):
    fired_on[i, tokens_flat[pos]] = True
    came_next[i, next_flat[pos[has_next[pos]]]] = True
p_input = paired_enrichment(top_tokens, fired_on, vocab_size)  # each latent's lens against its own tokens
p_prediction = paired_enrichment(top_tokens, came_next, vocab_size)
j0 = 0
print(f"check: enrichment_pvalue and the vectorised helper agree on latent {int(studied[j0])}: "
      f"{enrichment_pvalue(top_tokens[j0], came_next[j0].nonzero().flatten(), vocab_size):.3g} vs {float(p_prediction[j0]):.3g}")

kind = np.where((p_prediction < 1e-3) & (p_prediction < p_input), "prediction",
                np.where((p_input < 1e-3) & (p_input <= p_prediction), "input", "unclassified"))
best = p_classes.min(-1)
lens = pd.DataFrame({
    "kind": kind, "p_input": p_input.numpy(), "p_prediction": p_prediction.numpy(),
    "lens class": [class_names[i] for i in best.indices.tolist()], "p_class": best.values.numpy(),
}, index=pd.Index(studied.tolist(), name="latent"))
print(f"{len(lens)} latents studied: " + ", ".join(f"{v} {k}" for k, v in lens["kind"].value_counts().items()))

# %% [markdown]
# Before we trust "this latent's lens is enriched for a class", two controls. Each latent was tested
# against every class, so its best p-value must be corrected for the number of classes tried
# (Bonferroni: multiply by the number of classes). And the embeddings are tied, so the tokens of a
# class sit close together in embedding space: *any* direction whose lens lands near one of them
# picks up several. The null model is random directions, put through the same lens and the same
# test: isotropic Gaussian directions, and, closer to what a decoder row looks like, Gaussian
# directions with the covariance of the SAE's decoder rows. 20 draws of as many directions as
# there are latents.

# %%
n_classes = len(class_names)
p_corrected = (best.values * n_classes).clamp(max=1.0)
lens["p_class"] = p_corrected.numpy()  # from here on, the class p-value is Bonferroni-corrected


def share_enriched(directions: Tensor, alpha: float = 1e-3) -> float:
    """Share of `directions` whose top-10 lens tokens are enriched for some class (corrected p < alpha)."""
    top = (directions @ model.W_U).topk(10, dim=-1).indices
    return float((enrichment_matrix(top, class_sets, vocab_size).min(-1).values * n_classes < alpha).float().mean())


dec_rows = wide.W_dec[studied]
chol = torch.linalg.cholesky(torch.cov(dec_rows.T) + 1e-6 * torch.eye(dec_rows.shape[1]))
gen = torch.Generator().manual_seed(0)
null = {"isotropic": [], "decoder covariance": []}
for _ in range(20):
    null["isotropic"].append(share_enriched(torch.randn(dec_rows.shape, generator=gen)))
    null["decoder covariance"].append(share_enriched(torch.randn(dec_rows.shape, generator=gen) @ chol.T))
print(f"lens enriched for some class (Bonferroni over {n_classes} classes, p < 0.001): "
      f"decoder rows {share_enriched(dec_rows):.2f}, uncorrected {float((best.values < 1e-3).float().mean()):.2f}")
for name, shares in null.items():
    print(f"  random directions ({name}), 20 draws: median {np.median(shares):.2f}, "
          f"range {min(shares):.2f} to {max(shares):.2f}")
# the same control for "prediction": a random direction's lens against each latent's own next tokens
null_prediction = []
for _ in range(20):
    random_top = (torch.randn(dec_rows.shape, generator=gen) @ chol.T @ model.W_U).topk(10, dim=-1).indices
    p_null = paired_enrichment(random_top, came_next, vocab_size)
    null_prediction.append(float((p_null < 1e-3).float().mean()))
print(f"lens enriched in the latent's own next tokens (p < 0.001): decoder rows {float((p_prediction < 1e-3).float().mean()):.2f}; "
      f"random directions against the same next tokens, 20 draws: median {np.median(null_prediction):.2f}, "
      f"range {min(null_prediction):.2f} to {max(null_prediction):.2f}")

# %% [markdown]
# Now we score the lens against the ground truth. Take a latent whose top tokens are enriched for a
# planted class (corrected p < 0.001). Over all the tokens where it fires, how often does the token it sits
# on belong to that class, and how often the **next** token? Compared with how common the class is
# in the corpus (its base rate), this says whether the lens's claim "this latent promotes class X"
# is true of the text: a prediction latent should be followed by class X far more often than chance.

# %%
real_flat = real.flatten()
next_real = has_next & real_flat
rates = []
for i, j in enumerate(studied.tolist()):
    c = int(p_classes[i].argmin())
    in_class = class_sets[c]
    fires = (corpus_acts.flatten(0, 1)[:, j] > 0) & real_flat
    rates.append({
        "own": float(in_class[tokens_flat[fires]].float().mean()),
        "next": float(in_class[next_flat[fires & next_real]].float().mean()),
        "base": float(in_class[tokens_flat[real_flat]].float().mean()),
    })
lens = lens.join(pd.DataFrame(rates, index=lens.index))
significant = lens["p_class"] < 1e-3
summary = lens[significant].groupby("kind")[["own", "next", "base"]].median()
summary["n latents"] = lens[significant].groupby("kind").size()
print("latents whose lens is enriched for a planted class (p < 0.001), medians by kind:")
print("  own: share of its firings on a token of the class; next: share followed by one; base: class frequency")
print(summary.round(3).to_string())

# %%
examples = lens[(lens["kind"] == "prediction") & significant].sort_values("p_class").head(5)
for j, row in examples.iterrows():
    top = top_tokens[(studied == j).nonzero()[0, 0]]
    print(f"latent {j}: lens {model.to_str_tokens(top)[:6]}; lens class {row['lens class']} "
          f"(p = {row['p_class']:.1e}); next token in the class {row['next']:.0%} of its firings (base rate {row['base']:.1%})")

# %% [markdown]
# Expected output: of the {{620}} latents studied, {{242}} are prediction latents and only {{5}} are input
# latents; the rest are unclassified. Few input latents means the tied-embedding echo rarely
# dominates a lens at this layer. The prediction label
# survives its control: the latent's own lens is enriched in its next tokens (p < 0.001) for {{0.39}}
# of the latents, a random direction's lens against the same next tokens for a median {{0.00}} (at
# most {{0.01}} in 20 draws).
#
# The class enrichment needs its controls more. Uncorrected, {{0.26}} of the decoder rows have a lens
# enriched for some class at p < 0.001; corrected for the {{200}} classes tried, {{0.09}}. Random
# directions put through the same lens and test reach {{0.03}} (median of 20 draws, range {{0.01}}
# to {{0.04}} for isotropic directions; {{0.02}} to {{0.05}} with the decoder rows' covariance). So
# decoder rows are enriched about three times as often as chance, and chance is not zero: with tied
# embeddings, a class's tokens sit close together, and any direction near one of them finds several.
#
# Against the ground truth, for the {{44}} prediction latents with a corrected enriched class, the
# next token is in that class for a median {{0.128}} of their firings, against a base rate of
# {{0.007}}; the token they sit on, also only {{0.007}}. So when the lens, the enrichment test and the
# next tokens agree, the claim "this latent promotes class X" holds in the text, far above the base
# rate. An enriched class alone is weaker: the {{12}} unclassified latents with one are followed by it
# for a median {{0.055}} of their firings. The lens of a mid-model latent is a hypothesis about its
# output, to be checked against what follows its firings.

# %% [markdown]
# ## 6 · Autointerp, scored against the truth
#
# **Autointerp** replaces the person reading a dashboard by a language model: show it a latent's
# top activating examples and ask for a one-sentence explanation (*generation*), then give it the
# explanation and a shuffled mix of held-out top examples and random text where the latent is
# silent, and ask on which ones it fires (*detection*). The detection score measures how well the explanation predicts
# the latent's activations. The course world adds a second score: the same predictions against
# the planted concept the latent is meant to track, from the labels. An explanation can predict
# the activations well and still be the wrong story about the concept, or the reverse.
#
# `utils/autointerp.py` holds the machinery: `top_examples` and `random_examples` cut examples from
# the labelled corpus, `explanation_prompt` and `detection_prompt` build the chat messages,
# `explain` and `detect` send them to a client and read the reply, and `detection_scores` and
# `concept_truth` score the answer. The client is pluggable: `client_from_env()` returns an API
# client when `OPENAI_API_KEY` or `ANTHROPIC_API_KEY` (with `AUTOINTERP_MODEL`) is set, and
# otherwise `OfflineClient`, a stand-in with no network that explains a latent by the tokens it
# fires on most and detects by looking for the tokens the explanation quotes. Read its
# explanations as what a very literal reader would say; a real LLM writes more fluent ones. Look
# at one prompt first:

# %% [module]
from utils.autointerp import (client_from_env, concept_truth, detect, detection_scores, explain, explanation_prompt,
                              mix_for_detection, random_examples, top_examples)

# %%
client = client_from_env()
print(f"client: {type(client).__name__}" + (f" ({client.model})" if hasattr(client, "model") else ""))
to_str = model.tokenizer.convert_ids_to_tokens
j = int(studied[0])
prompt = explanation_prompt(top_examples(corpus_acts[..., j], data, to_str, n=3))
print(prompt[0]["content"], "\n")
print(prompt[1]["content"])

# %% [markdown]
# ### Exercise: `autointerp`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 20 minutes
#
# Put the pipeline together for one latent (`latent_acts`, shape (n_docs, n_ctx)):
#
# 1. take its `n_explain + n_detect` top examples; explain the latent from the first `n_explain`;
# 2. take `n_random` random windows where the latent is **silent**, **excluding the documents of the
#    top examples**, with `seed` (`random_examples(..., silent=True)`);
# 3. mix the other `n_detect` top examples with the random ones (`mix_for_detection`, same `seed`)
#    and ask the client on which the latent fires (`detect`, one call);
# 4. score that one prediction twice: against where the latent really fires (the truth
#    `mix_for_detection` returns) and against the sequences that contain `concept`
#    (`concept_truth`).
#
# Return `{"explanation": str, "vs activations": DetectionScores, "vs concept": DetectionScores}`.
# If the latent fires in fewer than `n_explain + 1` documents, raise a `ValueError` saying so.
# Never detect on an example the explanation was written from: that would score memory, not
# understanding.

# %% [exercise]
def autointerp(latent_acts: Tensor, data, to_str_tokens, client, concept: str, n_explain: int = 10,
               n_detect: int = 5, n_random: int = 10, seed: int = 0) -> dict:
    """Explain one latent, then score the explanation against its activations and against `concept`."""
    # BEGIN SOLUTION
    top = top_examples(latent_acts, data, to_str_tokens, n=n_explain + n_detect)
    if len(top) <= n_explain:
        raise ValueError(f"the latent fires in {len(top)} documents; need at least {n_explain + 1} "
                         f"({n_explain} to explain, the rest to detect).")
    explanation = explain(top[:n_explain], client)
    others = random_examples(latent_acts, data, to_str_tokens, n=n_random, seed=seed, exclude=top, silent=True)
    sequences, fires = mix_for_detection(top[n_explain:], others, seed=seed)
    predicted = detect(explanation, sequences, client)
    return {"explanation": explanation,
            "vs activations": detection_scores(predicted, fires, len(sequences)),
            "vs concept": detection_scores(predicted, concept_truth(sequences, concept), len(sequences))}
    # END SOLUTION


# %% [hint]
# Autointerp in two rounds. Explain: show the model the latent's top examples and ask for an
# explanation. Detect: take further top examples the explainer did not see, mix them with random
# windows where the latent does not fire, and ask the model, given only the explanation, which
# ones the latent fires on. Score those predictions twice: against where the latent really fires,
# and against where the planted concept holds.

# %% [hint]
# Ask `top_examples` for `n_explain + n_detect` examples: it may return fewer, so check there is at
# least one left to detect. `random_examples(..., exclude=top, silent=True)` skips the top examples'
# documents and keeps only windows where the latent is silent.
# The two truths are `mix_for_detection`'s second output and `concept_truth(sequences, concept)`,
# both scored with `detection_scores`.

# %% [check]
tests.test_autointerp(autointerp)

# %% [markdown]
# Now a handful of latents of the widest SAE, chosen by computation: among the latents that fire
# in at least 15 documents, the two that match a planted concept best, two in the middle and two
# near the bottom (by F1 of "fires" against their best concept's tokens; this is the concept
# each explanation is scored against).
#
# How to score detection. Each run shows the client 15 sequences: 5 top examples and 10 random
# windows where the latent is silent (delphi's non-activating negatives). F1 rewards saying "yes"
# to everything (here "always yes" gets 2·5 / (5 + 15) = 0.5), so the table reports the
# **balanced accuracy** (the mean of the hit rate on sequences where the latent fires and the
# correct-rejection rate on those where it does not), as delphi does with its balanced scores:
# chance, and "always yes", is 0.5. Each latent is run with 5 seeds (other random windows, other
# orders), shown as mean ± standard deviation.

# %%
docs_fired = ((corpus_acts > 0) & data.mask[..., None]).any(1).sum(0)  # documents in which each latent fires
candidates = [(concepts_of.best_concept(j)[3], j) for j in live.tolist() if docs_fired[j] >= 15]
candidates.sort(reverse=True)
picks = [candidates[i][1] for i in (0, 1, len(candidates) // 2, len(candidates) // 2 + 1, -2, -1)]


def balanced_accuracy(scores) -> float:
    """Mean of the hit rate on positives and the correct-rejection rate on negatives: 0.5 is chance,
    and also what "always yes" or "always no" scores."""
    hit = scores.tp / max(scores.tp + scores.fn, 1)
    reject = scores.tn / max(scores.tn + scores.fp, 1)
    return (hit + reject) / 2


rows_ai = []
for j in tqdm(picks, desc="autointerp"):
    concept, precision, recall, f1_score = concepts_of.best_concept(j)
    runs = [autointerp(corpus_acts[..., j], data, to_str, client, concept, seed=seed) for seed in range(5)]
    bal_act = [balanced_accuracy(r["vs activations"]) for r in runs]
    bal_concept = [balanced_accuracy(r["vs concept"]) for r in runs]
    positives = [r["vs activations"].tp + r["vs activations"].fn for r in runs]
    rows_ai.append({"latent": j, "concept": concept, "concept F1": round(f1_score, 2),
                    "explanation": runs[0]["explanation"],
                    "bal. acc. (activations)": f"{np.mean(bal_act):.2f} ± {np.std(bal_act):.2f}",
                    "bal. acc. (concept)": f"{np.mean(bal_concept):.2f} ± {np.std(bal_concept):.2f}",
                    "F1 (activations)": round(float(np.mean([r["vs activations"].f1 for r in runs])), 2),
                    "F1 of always yes": round(float(np.mean([2 * p / (p + 15) for p in positives])), 2)})
autointerp_table = pd.DataFrame(rows_ai).set_index("latent")
with pd.option_context("display.max_colwidth", 60, "display.width", 250):
    print(autointerp_table.drop(columns="explanation").to_string())
    print(autointerp_table["explanation"].to_string())
# %% [markdown]
# Expected output (with the offline client; an API client writes other explanations and gets
# other scores). Three patterns, each visible only because the world has labels and the scores have
# a chance level:
#
# - **A good latent, a useless explanation**: latent {{270}} matches `p3_run` (the repeated random
#   spans) with F1 {{0.81}}, but it fires on many different tokens of those spans, and an explanation
#   that lists three of them scores a balanced accuracy of {{0.50 ± 0.00}}: chance. Its detection F1
#   is {{0.00}} where "always yes" would get 0.5. A real LLM would likely say "random lists of words";
#   this is where the offline client is weakest.
# - **Some signal, with spread**: latent {{648}} (also `p3_run`) gets detection F1 {{0.66}}, not far
#   above the 0.5 of "always yes"; its balanced accuracy, {{0.74 ± 0.05}}, says the explanation helps,
#   with a visible spread over seeds.
# - **Right about the concept, not about the latent**: latent {{485}} matches its best concept,
#   `city_state`, poorly (F1 {{0.14}}); the explanation lists three cities, which finds the sequences
#   with that concept perfectly ({{1.00 ± 0.00}}) but predicts the latent's firing only a little
#   better than chance ({{0.60 ± 0.00}}). The two scores answer different questions: does the
#   explanation predict the latent, and does it name a planted concept.
#
# With 15 sequences per run, one answer more or less moves a score by several hundredths: always look
# at the spread over seeds before comparing two explanations.
#
# To try a real LLM, set `OPENAI_API_KEY` (or `ANTHROPIC_API_KEY`) and `AUTOINTERP_MODEL` before
# starting Jupyter, and rerun this section: `client_from_env()` picks it up. Every call is one
# short prompt per latent and step.

# %% [markdown]
# ## 7 · Patch scoping on definitions
#
# Autointerp reads a latent from the outside, through its examples. **Patch scoping** asks the
# model itself. Take a prompt that makes the model describe whatever sits at one position, the
# *placeholder*: here a definition prompt of the course world (P9), `The meaning of the word "X" is
# "`, where the model answers with the first word of the definition of the word in quotes.
# Replace the residual stream at the placeholder by a latent's decoder direction, times a scale,
# and read the answer: if the latent means "nut", the model should say "hard" (a hard seed).
#
# The answers are checkable: each defined word has one planted definition, whose first token is
# unique to it. First the prompts: one per defined word (the *source*: the model's answer is that
# word's definition) and the same prompt with the placeholder "X" in its place (the *target*).

# %% [module]
def definition_prompts(placeholder: str = "X") -> dict:
    """The first P9 frame, cut before the definition, for every defined word.

    Returns {"source": (n_words, n_ctx) ids with each word in place, "target": (n_ctx,) ids with
    `placeholder` instead, "position": the word's position, "word": [str], "answer": (n_words,)
    id of the first token of each word's definition}.
    """
    vocab = load_tokenizer().get_vocab()
    text = frame_text(FRAMES["definition"][0])  # The meaning of the word "{w}" is "{def!}".
    rows, answers, position = [], [], None
    for word, definition in F.DEFINITIONS.items():
        sentence = render(text, {"w": value(word, "placeholder"), "def": value(definition)}, lead_space=False)
        cut = next(i for i, tok in enumerate(sentence) if "answer" in tok.labels)
        position = 1 + next(i for i, tok in enumerate(sentence) if "placeholder" in tok.labels)
        rows.append([vocab[BOS]] + [vocab[tok.text] for tok in sentence[:cut]])
        answers.append(vocab[sentence[cut].text])
    source = torch.tensor(rows)
    target = source[0].clone()
    target[position] = vocab[placeholder]
    return {"source": source, "target": target, "position": position, "word": list(F.DEFINITIONS),
            "answer": torch.tensor(answers)}


# %%
defs = definition_prompts()
answers_source = model(defs["source"])[:, -1].argmax(-1)
print(f"{len(defs['word'])} defined words; target prompt: {''.join(model.to_str_tokens(defs['target'])[1:])!r}, "
      f"placeholder at position {defs['position']}")
print(f"the model gives the right first definition word for {(answers_source == defs['answer']).float().mean():.0%} "
      f"of the source prompts; on the target prompt it says {model.to_string(model(defs['target'][None])[0, -1].argmax())!r}")

# %% [markdown]
# ### Exercise: `patch_scope`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 15 minutes
#
# Run the one `tokens` prompt once for every (direction, scale) pair, in a single batch, with the
# activation at `hook_name` and `position` **replaced** by `scale * direction` (the other
# positions untouched), and return the logits at the last position, shape
# `(n_directions, n_scales, d_vocab)`. `directions` is `(n_directions, d_model)` and is used as
# given (do not normalise it); `scales` is a list of floats.

# %% [exercise]
def patch_scope(model, tokens: Tensor, position: int, directions: Tensor, scales: list[float],
                hook_name: str) -> Tensor:
    """Last-position logits with the activation at (hook_name, position) set to scale * direction."""
    # BEGIN SOLUTION
    scales_t = torch.tensor(scales, dtype=directions.dtype)
    patched = (directions[:, None, :] * scales_t[None, :, None]).flatten(0, 1)  # (n_dirs * n_scales, d_model)
    batch = tokens[None].expand(len(patched), -1)

    def replace(activation, hook):
        activation[:, position] = patched
        return activation

    logits = model.run_with_hooks(batch, fwd_hooks=[(hook_name, replace)])[:, -1]
    return logits.reshape(len(directions), len(scales), -1)
    # END SOLUTION


# %% [hint]
# Patch scoping asks what the model says when a direction, at some strength, sits in the residual
# stream at one position of a fixed prompt. For every direction and every scale, replace the
# activation at that position by scale times direction, run the prompt, and keep the last
# position's logits. All combinations can go through the model as one batch.

# %% [hint]
# Build all `n_directions * n_scales` patched vectors at once (broadcast `directions[:, None]`
# against the scales), repeat `tokens` that many times, and use a hook that assigns them to
# `activation[:, position]`. Reshape the logits to `(n_directions, n_scales, d_vocab)` at the end,
# in that order.

# %% [check]
tests.test_patch_scope(patch_scope)

# %% [markdown]
# Where can the placeholder be read? As a control, patch the *real* residual stream of each source
# prompt (at the word) into the target prompt, at each layer. If the model's answer follows the
# patched word, later layers still read the placeholder position at that layer.

# %%
for layer in range(model.cfg.n_layers):
    hook = f"blocks.{layer}.hook_resid_pre"
    _, source_cache = model.run_with_cache(defs["source"], names_filter=[hook])
    real = source_cache[hook][:, defs["position"]]
    answers = patch_scope(model, defs["target"], defs["position"], real, [1.0], hook)[:, 0].argmax(-1)
    print(f"real residual patched at {hook}: right definition for {(answers == defs['answer']).float().mean():.0%} "
          "of the words")

# %% [markdown]
# Expected output: the model defines every source word right ({{100%}}), and on the target prompt
# it says {{'soft'}}, the start of pillow's definition. Patching the real residual at
# `blocks.0.hook_resid_pre` makes the answer follow the patched word for {{100%}} of the words; from
# `blocks.1.hook_resid_pre` on, for {{4%}}, which is one word in 24: pillow, whose answer the target
# prompt gives anyway. So from layer 1 on, patching the placeholder changes nothing; the likely
# reason (not measured here) is that layer-0 attention has already carried the word to the later
# positions, which the answer reads instead. Our width family reads `blocks.2.hook_resid_pre`, where
# patch scoping at the placeholder cannot work. So we patch scope the residual SAE of layer 0, whose
# latents read the same place the patch goes. For each defined word we take the layer-0 latent most
# specific to it (large on the word in its source prompt, small on the other words) and score it on
# the held-out corpus against the truth "the token is this word".

# %%
from utils.latent_truth import score, token_is
from utils.world import load_dictionary

sae0 = load_dictionary("resid_pre_0")
hook0 = sae0.cfg.metadata.hook_name
_, source_cache = model.run_with_cache(defs["source"], names_filter=[hook0])
word_acts = sae0.encode(source_cache[hook0][:, defs["position"]])  # (n_words, d_sae)
specific = word_acts.clamp_min(0) * word_acts.clamp_min(0) / word_acts.clamp_min(0).sum(0).clamp_min(1e-6)
word_latent = specific.argmax(-1)  # (n_words,): one latent per word
corpus_acts0 = sae0.encode(model.run_with_cache(data.tokens, names_filter=[hook0], stop_at_layer=1)[1][hook0])
truth_f1 = [score(corpus_acts0[..., int(j)], token_is(data, int(defs["source"][i, defs["position"]])), data).f1
            for i, j in enumerate(word_latent)]
print(f"{len(set(word_latent.tolist()))} distinct latents for {len(defs['word'])} words; F1 of each with its word "
      f"on the corpus: median {np.median(truth_f1):.2f}, " + ", ".join(
          f"{w} {int(j)} ({f:.2f})" for w, j, f in list(zip(defs["word"], word_latent.tolist(), truth_f1))[:4]))

# %% [markdown]
# Now the scale-tuning curve: for scales from small to large, the share of words for which the
# patched direction makes the model give that word's definition (right), and the share for which
# it gives the first word of *some* definition (an answer in the right genre). Besides the latents,
# we patch directions known to mean the word, as controls of what the method can do at this place
# when the direction is right: the word's token embedding, and the token embedding plus the position
# embedding of the placeholder (what the residual stream really holds there before layer 0). As a
# null, one random direction per word.

# %%
scales = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
word_ids = defs["source"][:, defs["position"]]
gen = torch.Generator().manual_seed(0)
candidates_ps = {"layer-0 SAE latent": sae0.W_dec[word_latent], "token embedding (control)": model.W_E[word_ids],
                 "token + position embedding (control)": model.W_E[word_ids] + model.W_pos[defs["position"]],
                 "random direction (null)": torch.randn(len(word_ids), model.cfg.d_model, generator=gen)}
curves, answers_ps = [], {}
for name, vectors in candidates_ps.items():
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    answers_ps[name] = patch_scope(model, defs["target"], defs["position"], unit, scales, hook0).argmax(-1)
    right = (answers_ps[name] == defs["answer"][:, None]).float().mean(0)
    in_genre = torch.isin(answers_ps[name], defs["answer"]).float().mean(0)
    curves += [{"direction": name, "scale": s, "right definition": round(float(r), 2),
                "some definition": round(float(g), 2)} for s, r, g in zip(scales, right, in_genre)]
curve = pd.DataFrame(curves)
natural = source_cache[hook0][:, defs["position"]].norm(dim=-1).mean()
print(f"typical residual norm at the placeholder: {natural:.2f}")
print(curve.pivot(index="scale", columns="direction", values=["right definition", "some definition"]).to_string())
for name, ans in answers_ps.items():
    k = int((ans == defs["answer"][:, None]).float().mean(0).argmax())
    hits = [w for w, a, t in zip(defs["word"], ans[:, k].tolist(), defs["answer"].tolist()) if a == t]
    print(f"{name}: best scale {scales[k]}, right for {len(hits)} of {len(defs['word'])} words ({', '.join(hits)})")
fig = px.line(curve, x="scale", y="right definition", color="direction", markers=True, log_x=True,
              labels={"right definition": "share of words given their own definition"},
              title="Patch scoping at the placeholder: the answer as the patched direction is scaled",
              width=750, height=380)
fig.show()

# %% [markdown]
# Expected output: both controls make the model give the right definition for {{24 of 24}} words at
# every scale from 0.125 to 16: on this model the curve is flat, because the first block reads the
# placeholder through a LayerNorm, which removes the scale, and the word's direction decides. The
# layer-0 SAE latents give the right definition for {{0 of 24}} words at every scale, exactly like the
# random directions; even "some definition" ({{0.21}} of the words at most scales) is at the level of
# the random null ({{0.21}} to {{0.29}}). The reason is visible in their scores against the truth:
# the latent most specific to a word in its prompt is not a latent *for* that word on the corpus
# (median F1 {{0.00}} with the word's token; only bread's latent, {{0.40}}, comes close). The method
# works when the direction means the word; these latents do not. Three lessons that carry over to
# real models:
#
# - the placeholder must be read after the layer you patch: here only layer 0 qualifies, so the
#   width family of this chapter cannot be patch-scoped at the placeholder;
# - the scale can matter and has no natural value; sweep it and report the curve, not one point
#   (here the sweep shows that it does not matter);
# - compare with a direction that means the word and with random directions, and score the answers
#   against something you know (here the planted definitions).


# %% [markdown]
# ## 8 · Capstone: one latent, many tools
#
# Sections 1 to 7 each looked at many latents through one tool. The capstone turns this around:
# one latent, the tools of this chapter and two of the earlier ones, and a written hypothesis
# about what it does, scored against the planted labels. A hypothesis here has three parts:
#
# - `concept`: one planted concept label (`data.concepts`, explained in
#   `utils.world.concepts.CONCEPT_LEGEND`), such as `"category:bird"` or `"quote_close"`;
# - `fires_on`: `"input"` if the concept holds on the token the latent fires on, `"prediction"` if
#   it holds on the token that comes **next** (section 5's prediction latents);
# - `description`: one sentence in your own words (not scored, but write it before you score).
#
# The latent is chosen by computation, so that it exists on any retrained world: among the latents
# of the widest SAE that fire in at least 15 documents and that section 6 did not already explain,
# we keep those that the labels describe far better through the token that comes next than through
# the token they fire on (the harder kind to read: the top examples show where it fires, not why),
# and take the best described of them. Only its id is printed; what it is about is yours to find.

# %% [module]
from utils.world.concepts import LabelledCorpus


def next_token_corpus(data) -> LabelledCorpus:
    """The same corpus with each token's labels replaced by those of the token after it (none after
    the last real token), so that scoring a latent against it scores "the next token is X"."""
    real_next = torch.cat([data.mask[:, 1:], torch.zeros_like(data.mask[:, :1])], 1)
    labels = torch.cat([data.labels[:, 1:], torch.zeros_like(data.labels[:, :1])], 1) & real_next[..., None]
    return LabelledCorpus(data.tokens, data.concepts, labels, data.mask)


def capstone_choice(f1_input: Tensor, f1_prediction: Tensor, docs_fired: Tensor, exclude: list[int],
                    min_docs: int = 15) -> int:
    """Among the latents that fire in at least `min_docs` documents and are not in `exclude`, and whose
    best hypothesis about the next token scores at least twice the best about the token they fire on
    ((n_concepts, d_sae) F1s at each position), the one whose next-token hypothesis scores best."""
    on_next, on_token = f1_prediction.max(0).values, f1_input.max(0).values
    eligible = (docs_fired >= min_docs) & (on_next >= 2 * on_token)
    eligible[list(exclude)] = False
    return int(on_next.masked_fill(~eligible, -1.0).argmax())


# %%
concepts_next = concept_scores(corpus_acts, next_token_corpus(data))  # F1 of "the next token is X"
capstone = capstone_choice(concepts_of.f1, concepts_next.f1, docs_fired, picks)
acts_c = corpus_acts[..., capstone]  # (n_docs, n_ctx): the capstone latent on the held-out corpus
fires_c = (acts_c > 0) & data.mask
print(f"capstone latent: {capstone} of the width-{wide.cfg.d_sae} SAE; it fires on {int(fires_c.sum())} tokens "
      f"in {int(docs_fired[capstone])} of {len(data.tokens)} documents")

# %% [markdown]
# The evidence, from tools you have used: its top activating examples (chapter 02's dashboards),
# the tokens it fires on and the tokens that follow, chapter 01's token → latent gradients on its
# top example (which input positions its activation is sensitive to), its logit lens and section
# 5's verdict, the offline autointerp explanation, and its closest relative one width down
# (section 1).

# %%
next_ids = torch.cat([data.tokens[:, 1:], data.tokens[:, -1:]], 1)
print("top activating examples (<<token|activation>>):")
for example in top_examples(acts_c, data, to_str, n=5):
    print("   ", example.text(highlight=True))
print("tokens it fires on:", Counter(to_str(data.tokens[fires_c].tolist())).most_common(6))
real_next = torch.cat([data.mask[:, 1:], torch.zeros_like(data.mask[:, :1])], 1)  # the next token is real
print("tokens that come next:", Counter(to_str(next_ids[fires_c & real_next].tolist())).most_common(6))
lens_top, lens_bottom = logit_lens(wide, model.W_U, torch.tensor([capstone]), k=10)
print("logit lens, boosted:", to_str(lens_top[0].tolist()))
print("logit lens, suppressed:", to_str(lens_bottom[0].tolist()))
if capstone in lens.index:
    row = lens.loc[capstone]
    print(f"section 5: {row['kind']} latent (p_input {row['p_input']:.1e}, p_prediction {row['p_prediction']:.1e}); "
          f"lens class {row['lens class']} (p = {row['p_class']:.1e})")
doc, pos = divmod(int(acts_c.masked_fill(~data.mask, float("-inf")).argmax()), acts_c.shape[1])
prompt = data.tokens[doc, : pos + 1][None]
scales = torch.ones(prompt.shape, requires_grad=True)  # chapter 01: scale each position's input
with torch.enable_grad():
    resid_in = model(prompt, stop_at_layer=0) * scales[..., None]
    top_act = wide.encode(model(resid_in, start_at_layer=0, stop_at_layer=2))[0, pos, capstone]
    (token_grads,) = torch.autograd.grad(top_act, scales)
prompt_str = to_str(prompt[0].tolist())
print("token -> latent gradients on its top example, largest first: " + ", ".join(
    f"{prompt_str[p]!r} {float(token_grads[0, p]):+.2f} ({pos - p} back)" for p in token_grads[0].argsort(descending=True)[:4].tolist()))
print("autointerp explanation (offline client):", explain(top_examples(acts_c, data, to_str, n=10), client))
narrower = sorted(saes)[-2]
cos_narrow = unit_dec[narrower] @ unit_dec[max(saes)][capstone]
relative = int(cos_narrow.argmax())
together = cooccurrence(fires_corpus[max(saes)][:, [capstone]], fires_corpus[narrower][:, [relative]])
print(f"closest latent at width {narrower}: {relative} (decoder cosine {float(cos_narrow.max()):.2f}, "
      f"P(it fires | capstone fires) {float(together):.2f})")

# %% [markdown]
# ### Exercise: `score_hypothesis`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# Score a hypothesis against the labels. `latent_acts` is one latent's activations on the corpus,
# `(n_docs, n_ctx)`; the latent fires where the activation is > 0. Count only real tokens
# (`data.mask`: no BOS, no padding). With `fires_on="input"` the hypothesis holds on a token that
# carries `concept` (`data.labels[..., data.concept_index(concept)]`); with `"prediction"` it holds
# on a real token whose **next** token is real and carries `concept`. Return `(precision, recall,
# f1)` as floats: precision `P(holds | fires)`, recall `P(fires | holds)`, F1 their harmonic mean;
# 0.0 wherever a denominator would be 0.

# %% [exercise]
def score_hypothesis(latent_acts: Tensor, data, concept: str, fires_on: str = "input") -> tuple[float, float, float]:
    """(precision, recall, f1) of "the latent fires" for `concept` on the token (input) or the next token."""
    # BEGIN SOLUTION
    holds = data.labels[..., data.concept_index(concept)]
    if fires_on == "prediction":
        holds = torch.cat([holds[:, 1:] & data.mask[:, 1:], torch.zeros_like(holds[:, :1])], 1)
    elif fires_on != "input":
        raise ValueError(f"fires_on must be 'input' or 'prediction', not {fires_on!r}")
    fires = (latent_acts > 0) & data.mask
    holds = holds & data.mask
    tp, n_fires, n_holds = int((fires & holds).sum()), int(fires.sum()), int(holds.sum())
    precision, recall = tp / max(n_fires, 1), tp / max(n_holds, 1)
    return precision, recall, 2 * tp / max(n_fires + n_holds, 1)
    # END SOLUTION


# %% [hint]
# Score the hypothesis "this latent fires where the concept holds" as a classifier over the real
# tokens: precision is the share of its firings where the concept holds, recall the share of the
# concept's tokens where it fires, F1 their balance. With `fires_on="prediction"` the concept is
# checked on the next token instead of the current one.

# %% [hint]
# Build one boolean `(n_docs, n_ctx)` mask of where the hypothesis holds and one of where the
# latent fires, both and-ed with `data.mask`; three counts give everything. For "prediction", shift
# the concept's labels one position to the left, pad the last column with False, and keep only
# positions whose next token is real. Any other `fires_on` is a `ValueError`.

# %% [check]
tests.test_score_hypothesis(score_hypothesis)

# %% [markdown]
# ### Exercise: `capstone_hypothesis`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵🔵 · about 30 minutes
#
# Read the evidence above and write your hypothesis about the capstone latent, then test it with
# `score_hypothesis` and revise it if the labels disagree. Return a dict
# `{"latent": int, "concept": str, "fires_on": "input" | "prediction", "description": str}`.
#
# The check scores your hypothesis on the held-out corpus with the reference `score_hypothesis`. It
# passes when its F1 is at least 0.8 times the best F1 any planted hypothesis reaches for this
# latent: the labels are the standard, and we ask for the best story they can tell, with a margin
# for a concept that names nearly the same tokens. When it fails, it says why: the wrong token
# (input or next), too broad a concept (low recall), or a concept the latent does not keep to (low
# precision), naming what else it fires on. A loop of `score_hypothesis` over every concept would
# find the concept without reading anything, so the check also reads the description: at least 8
# words, naming at least one of the tokens you saw where your hypothesis is read (the tokens it fires
# on, or the ones that come next).

# %% [exercise]
def capstone_hypothesis() -> dict:
    """Your hypothesis about the capstone latent."""
    # BEGIN SOLUTION
    # Written from the evidence printed above on the shipped world (if the world is retrained, the
    # check names the new capstone latent and this answer must be rewritten, like the quoted text).
    return {"latent": 784, "concept": "defined_word", "fires_on": "prediction",
            "description": "fires on the opening quote of a definition, just before the word it defines, so the "
                           "next token is the defined word (clock, island, chair, bread in the evidence)"}
    # END SOLUTION


# %% [hint]
# A hypothesis here has two parts: which planted concept the latent is about, and whether it fires
# on the token that carries the concept or on the token just before it (a prediction latent).
# Compare what is common to the tokens it fires on with what is common to the tokens that come
# next; the side with a clear theme tells you which, and the top examples tell you in which
# sentences. Then pick the planted concept that names that theme, no broader.

# %% [hint]
# `utils.world.explain_concept(code)` says what a label means (`concept_legend_table()` lists
# them all). Score each candidate with `score_hypothesis(acts_c, data, concept, fires_on)`, at both
# positions: a good one has precision *and* recall well above the others.

# %% [check]
tests.test_capstone_hypothesis(capstone_hypothesis)

# %% [markdown]
# Your hypothesis next to the ones the other tools suggest, each scored the same way: the same
# concept read on the other token, the class of the logit lens (section 5) as a prediction, and the
# best planted concept of the token the latent fires on (the labels' answer to "what does it sit
# on?"). Then what your hypothesis leaves out: where the latent fires although it does not hold.

# %%
h = capstone_hypothesis()
other = {"input": "prediction", "prediction": "input"}[h["fires_on"]]
rivals = {"your hypothesis": (h["concept"], h["fires_on"]), "the same concept, other token": (h["concept"], other),
          "best concept of the token it sits on": (concepts_of.best_concept(capstone)[0], "input")}
if capstone in lens.index:
    rivals["the logit lens's class, as a prediction"] = (lens.loc[capstone, "lens class"], "prediction")
best_any = max(float(concepts_of.f1[:, capstone].max()), float(concepts_next.f1[:, capstone].max()))
table_c = pd.DataFrame([{"hypothesis": name, "concept": c, "fires_on": on,
                         **dict(zip(("precision", "recall", "F1"), np.round(score_hypothesis(acts_c, data, c, on), 2)))}
                        for name, (c, on) in rivals.items()]).set_index("hypothesis")
print(table_c.to_string())
print(f"best F1 of any planted hypothesis for latent {capstone}: {best_any:.2f}; the check's bar: {tests.PASS_SHARE * best_any:.2f}")
holds_c = data.labels[..., data.concept_index(h["concept"])]
if h["fires_on"] == "prediction":
    holds_c = next_token_corpus(data).labels[..., data.concept_index(h["concept"])]
missed_by_h = fires_c & ~holds_c
print(f"it fires on {int(missed_by_h.sum())} of its {int(fires_c.sum())} tokens although the hypothesis does not hold; "
      "there, the token it sits on and the next one are most often:",
      Counter(zip(to_str(data.tokens[missed_by_h].tolist()), to_str(next_ids[missed_by_h].tolist()))).most_common(4))

# %% [markdown]
# Expected output (a spoiler: read it once your check passes). The capstone latent {{784}} fires
# on {{44}} tokens, most of them ({{40}}) the same punctuation token: the quote that opens the word
# in "the word "needle" means". A latent that fires on one token in some contexts only is about the
# context or about what comes next, and the next tokens are the words being defined. The labels
# agree: the hypothesis `{{defined_word}}` as a `{{prediction}}` has precision {{0.59}}, recall
# {{0.42}} and F1 {{0.49}}, the best of any planted hypothesis. The evidence, tool by tool:
#
# - **top examples and next tokens** carry the story; the **offline autointerp** explanation only
#   names the quote token, which predicts where the latent fires but not why;
# - **token → latent gradients** (chapter 01) on its top example point at the context: the quote
#   itself ({{+0.40}}) and, as much, the word before it, {{' word'}} ({{+0.41}}). The quotes of
#   dialogue do not make it fire nearly as often, so the context decides;
# - section 5 did **not** class it as a prediction latent ({{unclassified}}), and its lens class
#   after the correction for the number of classes is not significant: the **logit lens** does boost
#   a few defined words ('ladder', 'window', 'nut') but among unrelated tokens. The lens is a lead,
#   not a verdict, and here a weak lead;
# - the same concept on the token itself scores {{0.00}}, and the best concept of the token it sits
#   on, `{{definition}}` (every token of a definition sentence), only {{0.07}}: precise, far too broad;
# - **splitting**: its closest latent one width down, {{267}} at width {{512}}, has decoder cosine
#   {{0.48}} and fires on {{0.93}} of the tokens the capstone latent fires on: the narrower SAE already
#   has a similar latent;
# - what the hypothesis leaves out is in the last line: {{18}} firings where the next token is not a
#   defined word, mostly the opening quotes of dialogue ('"Look', '"Nobody').
#
# Three limits of this grading. A concept label is a coarse language: the check asks for the best
# planted description, not for everything the latent does, and the residue above belongs in a full
# answer. The bar is relative to the best label for this latent (here F1 0.49, so even the best
# description misses more than half of what the latent does), and the check does not say so. And a
# loop of `score_hypothesis` over every concept at both positions would find the same answer without
# reading any evidence: the check grades the label, not the reasoning, which is what the
# `description` is for.
