# Source of chapter 08. `python -m utils.build` turns it into the two notebooks of this folder and
# solutions/ch08_feature_circuits_shift.py; the cell format is described in utils/build.py.

# %% [markdown]
# # 08 · Sparse feature circuits and SHIFT
#
# Marks et al. (*Sparse Feature Circuits*, ICLR 2025) find circuits made of SAE latents, with one
# **error node** per layer and position for what the SAE misses, by *attribution patching*: the
# effect of patching a node from a clean to a corrupted prompt is estimated to first order,
# (patched value − clean value) × gradient, for every node at once. They then use such latents to
# debias a classifier (**SHIFT**): a linear probe trained on data where a spurious attribute
# (gender) agrees with the intended one (profession) learns the spurious one; a person marks which
# of the latents the probe uses are about gender, those are ablated, and the probe recovers.
#
# The course world plants both settings, with ground truth:
#
# - **short bios** (P12 for SHIFT): the intended attribute is a profession's *field* (medicine or
#   law), the spurious one the *narrative person* ("I am a nurse" / "Mary is a nurse");
# - a **planted gender bias**: in the corpus, P(" she" | profession) follows a table (nurse 0.9,
#   pilot 0.1, four professions at 0.5), and the model learned it.
#
# The chapter goes through Marks et al.'s toolkit and tests each piece against the truth or an
# exact computation:
#
# 1. **Probe SHIFT on the bios** (section 1): the biased probe, the group accuracies, the latents
#    judged spurious by the planted labels and by autointerp, and SHIFT against its baselines
#    (random latents, token deletion, latents on the embeddings, an oracle probe). On this world
#    probe SHIFT **fails**, and the section measures why.
# 2. **A sparse feature circuit for the model's own bias** (section 2): attribution patching (AtP)
#    over latents and error nodes at three layers, checked against exact patching; integrated
#    gradients, checked by completeness; edges, checked against finite differences; faithfulness
#    and completeness of the circuits found.
# 3. **Debiasing the model** (section 3), the seed's "reducing gender bias": ablate the latents AtP
#    found, measure the bias left on sentences they were not chosen on, against random latents, and
#    the side effects on everything else the model does. The capstone asks for your own set.
#
# Everything runs offline on the course world (the README's "The course world"). Numbers and latent
# ids quoted in this text are those the solution notebook prints on the shipped world (a test
# checks that each is still printed); if the world is retrained, trust the printed values.
#
# **How to work through the notebook.** Run the setup cell first. Each exercise is followed by
# hints (collapsed) and a check cell that prints "✅ ... passed" or says what is wrong.

# %% [module]
import numpy as np
import torch
from torch import Tensor

from utils.world.concepts import label_documents
from utils.world import bios as B
from utils.world import facts as F
from utils.world import load_tokenizer
from utils.world.corpus import BOS, PAD, CorpusGenerator

LAYERS = (1, 2, 3)  # the residual-stream SAEs the circuits are made of (resid_pre_1..3)
FEMALE = tuple(p for p, v in F.PROFESSIONS.items() if v > 0.5)  # planted P(she) > 0.5
MALE = tuple(p for p, v in F.PROFESSIONS.items() if v < 0.5)
TOKENIZER = load_tokenizer()
SHE, HE = TOKENIZER.convert_tokens_to_ids([" she", " he"])
# Prompts cut before the pronoun. Latents are chosen on the first two wordings, and the bias they
# remove is measured on the other two (the model saw all four in training; none is a test frame).
SELECT_FRAMES = ("The {prof} said that", "The {prof} told {name} that")
EVAL_FRAMES = ("{name} met the {prof}, and", "The {prof} finished work because")


def hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def she_he(logits: Tensor) -> Tensor:
    """Per prompt, logit(' she') - logit(' he') at the last position = log P(she) - log P(he)."""
    return logits[:, -1, SHE] - logits[:, -1, HE]


def profession_pairs(model, frame: str, names) -> tuple[Tensor, Tensor]:
    """Clean and corrupted tokens, (25, seq) each: every female-coded profession paired with every
    male-coded one in `frame`, the same name in both, so that only the profession differs."""
    clean, corrupt = [], []
    for i, (fem, mal) in enumerate((f, m) for f in FEMALE for m in MALE):
        name = names[i % len(names)]
        clean.append(frame.format(prof=fem, name=name))
        corrupt.append(frame.format(prof=mal, name=name))
    return model.to_tokens(clean), model.to_tokens(corrupt)


def labelled_bios(n: int, groups, split: str = "train", seed: int = 0):
    """`n` bios as `bios.make_bios` makes them (same tokens), with their token labels: a
    LabelledCorpus (as long as the longest bio, plus BOS and one PAD) and the person (1 = third)
    and field (1 = law) of each bio."""
    gen = CorpusGenerator(seed=seed, split=split, heldout_frame_rate=1.0, unseen_word_rate=0.0)
    docs, person, field = [], [], []
    for i in range(n):
        p, f = groups[i % len(groups)]
        say, body = gen.bio_source(p, f), []
        for k in range(4):
            body += say(k > 0)
        docs.append(body)
        person.append(int(p == "third"))
        field.append(int(f == "law"))
    data = label_documents(docs, TOKENIZER.get_vocab(), 48, BOS, PAD)
    n_ctx = int(data.mask.sum(1).max()) + 2  # BOS, the longest bio, one PAD: no wasted positions
    data = type(data)(data.tokens[:, :n_ctx], data.concepts, data.labels[:, :n_ctx], data.mask[:, :n_ctx])
    return data, torch.tensor(person), torch.tensor(field)


def delete_tokens(tokens: Tensor, mask: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Each document without the tokens in `ids` (shifted left, padded at the end with its last
    token, masked out): the token-deletion baseline. Returns new tokens and mask."""
    out, new_mask = tokens.clone(), torch.zeros_like(mask)
    for i in range(len(tokens)):
        keep = ~torch.isin(tokens[i], ids) & (mask[i] | (torch.arange(tokens.shape[1]) == 0))
        row = tokens[i][keep]
        out[i, :len(row)] = row
        out[i, len(row):] = tokens[i, -1]
        new_mask[i, 1:len(row)] = True
    return out, new_mask


def resid(model, tokens: Tensor, layer: int) -> Tensor:
    _, cache = model.run_with_cache(tokens, names_filter=hook_name(layer))
    return cache[hook_name(layer)]


def pool(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over each document's real tokens (BOS and padding left out), (n_docs, d)."""
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def train_probe(x: Tensor, y: Tensor, epochs: int = 300, weight_decay: float = 1e-3, lr: float = 0.05) -> tuple[Tensor, Tensor]:
    """Logistic regression trained as `bios.train_probe` trains it (full-batch Adam from zero on
    standardised inputs, L2 weight decay), with the gradient written out instead of autograd (five
    times faster, the same weights to 1e-6). Returned in the raw coordinates: predict 1 where
    x @ w + b > 0."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs, yf = (x - mu) / sd, y.float()
    w, b = torch.zeros(x.shape[1]), torch.zeros(())
    m_w, v_w, m_b, v_b = torch.zeros_like(w), torch.zeros_like(w), torch.zeros(()), torch.zeros(())
    for t in range(1, epochs + 1):
        r = (torch.sigmoid(xs @ w + b) - yf) / len(xs)  # d(mean cross-entropy) / d(logit)
        g_w, g_b = xs.T @ r + weight_decay * w, r.sum() + weight_decay * b
        m_w.mul_(0.9).add_(g_w, alpha=0.1)
        v_w.mul_(0.999).addcmul_(g_w, g_w, value=0.001)
        m_b.mul_(0.9).add_(g_b, alpha=0.1)
        v_b.mul_(0.999).addcmul_(g_b, g_b, value=0.001)
        step, scale = lr / (1 - 0.9 ** t), (1 - 0.999 ** t) ** 0.5
        w = w - step * m_w / (v_w.sqrt() / scale + 1e-8)
        b = b - step * m_b / (v_b.sqrt() / scale + 1e-8)
    return w / sd, b - (mu / sd) @ w


def predict(probe, x: Tensor) -> Tensor:
    w, b = probe
    return (x @ w + b > 0).long()

# %%
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from scipy.stats import pearsonr, spearmanr
from tabulate import tabulate
from tqdm.auto import tqdm

import tests  # this chapter's checks: chapters/08_feature_circuits_shift/tests.py
from utils.world import labelled_corpus, load_model, load_resid_saes

torch.set_grad_enabled(False)  # exercises that need gradients turn them on inside torch.enable_grad()
if "connected" in pio.renderers.default:
    pio.renderers.default = "notebook"  # plotly from its bundled JavaScript: works offline

model = load_model()
saes = load_resid_saes()  # {layer: SAE reading blocks.{layer}.hook_resid_pre}, 512 latents each
print(f"SAEs: {', '.join(f'{L}: {saes[L].cfg.metadata.hook_name}' for L in saes)}; d_sae {saes[2].W_dec.shape[0]}")

# %% [markdown]
# ## 1 · SHIFT on a probe, and why it fails here
#
# ### The data
#
# A bio is four sentences about one person: an introduction ("I work as a nurse in Dayton." or
# "Mary works as a nurse in Dayton."), then sentences about the field ("... at the hospital",
# "... at the court") or about life. Its **field** (medicine / law) is what a probe should read; its
# **person** (first / third) is the spurious attribute, shown twice in every sentence: by the
# pronoun and by the verb ("I work" / "she works").
#
# - the **ambiguous** set has only first-person medicine bios and third-person law bios, so a probe
#   trained on it can read the field or the person and be right either way;
# - the **balanced** sets hold all four (person, field) groups equally often; the test set is made
#   from held-out wordings of the bios.
#
# The probe is logistic regression on the residual stream before layer 2, averaged over the bio's
# tokens, as in the world's own P12 figures (`utils/world/bios.py`) and in Marks et al.'s SHIFT
# (a probe on a mean-pooled residual stream).

# %%
PROBE_LAYER = 2
amb, amb_person, amb_field = labelled_bios(300, B.AMBIGUOUS, "train", seed=1)
bal, bal_person, bal_field = labelled_bios(300, B.GROUPS, "train", seed=2)
test, test_person, test_field = labelled_bios(300, B.GROUPS, "heldout", seed=3)
R = {name: resid(model, d.tokens, PROBE_LAYER) for name, d in (("amb", amb), ("bal", bal), ("test", test))}
X = {"amb": pool(R["amb"], amb.mask), "bal": pool(R["bal"], bal.mask), "test": pool(R["test"], test.mask)}
print(f"{len(amb.tokens)} ambiguous, {len(bal.tokens)} balanced, {len(test.tokens)} test bios; "
      f"longest {int(test.mask.sum(1).max())} tokens")

# %% [markdown]
# ### Exercise 1 · `group_accuracy`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# Given a probe's predictions of the field (1 = law) on the balanced test set and the true field
# and person (1 = third person) of each bio, return a dict with
#
# - `"field_accuracy"`: how often the prediction is the field;
# - `"person_accuracy"`: how often the prediction is the *person* (in the ambiguous set third
#   person goes with law, so this is how often the probe follows the spurious attribute);
# - `"groups"`: `{(person, field): accuracy}` over the (person, field) groups present, as ints;
# - `"worst_group"`: the lowest of those accuracies.

# %% [exercise]
def group_accuracy(pred: Tensor, field: Tensor, person: Tensor) -> dict:
    """Field and person accuracy of 0/1 predictions, per (person, field) group, and the worst group."""
    # BEGIN SOLUTION
    groups = {}
    for p in (0, 1):
        for f in (0, 1):
            members = (person == p) & (field == f)
            if members.any():
                groups[(p, f)] = float((pred[members] == f).float().mean())
    return {"field_accuracy": float((pred == field).float().mean()),
            "person_accuracy": float((pred == person).float().mean()),
            "groups": groups, "worst_group": min(groups.values())}
    # END SOLUTION

# %% [hint]
# A group is one (person, field) combination; its accuracy is the share of its bios whose
# prediction equals the field. The worst group is where a probe that reads the person instead of
# the field fails: third-person medicine, or first-person law.

# %% [hint]
# Loop over `p in (0, 1)` and `f in (0, 1)`, mask `(person == p) & (field == f)`, skip empty groups,
# and compare `pred[mask]` with `f`. Four groups, not two: grouping by field alone hides the failure.

# %% [check]
tests.test_group_accuracy(group_accuracy)

# %% [markdown]
# Now the three probes the SHIFT story needs: the probe trained on the ambiguous set, an
# **oracle** trained on balanced data (what a probe on these activations reaches without the
# shortcut), and
# **token deletion**, the baseline a published critique of SHIFT found as good as SHIFT on Bias in
# Bios (Tim Hua, 2025): delete the words that carry the spurious attribute (here every pronoun),
# then train on the ambiguous set.

# %%
PRONOUNS = set(B.PRONOUNS)
pronoun_ids = torch.tensor(model.tokenizer.convert_tokens_to_ids(sorted(PRONOUNS)))
for name, data in (("amb", amb), ("test", test)):
    tokens, mask = delete_tokens(data.tokens, data.mask, pronoun_ids)
    X[f"{name}_del"] = pool(resid(model, tokens, PROBE_LAYER), mask)

probe = train_probe(X["amb"], amb_field)
oracle = train_probe(X["bal"], bal_field)
deleted = train_probe(X["amb_del"], amb_field)
person_probe = train_probe(X["bal"], bal_person)  # can the person be read at all?
results = {
    "ambiguous probe": group_accuracy(predict(probe, X["test"]), test_field, test_person),
    "oracle (balanced data)": group_accuracy(predict(oracle, X["test"]), test_field, test_person),
    "token deletion (pronouns), retrained": group_accuracy(predict(deleted, X["test_del"]), test_field, test_person),
}


def show(results: dict) -> None:
    print(tabulate([(k, f"{r['field_accuracy']:.2f}", f"{r['person_accuracy']:.2f}", f"{r['worst_group']:.2f}")
                    for k, r in results.items()], headers=["probe", "field acc", "follows person", "worst group"], disable_numparse=True))


show(results)
print(f"person read by a probe trained on balanced data: {float((predict(person_probe, X['test']) == test_person).float().mean()):.2f}")

# %% [markdown]
# Expected output: the ambiguous probe reads the field at {{0.59}} but follows the person {{0.80}}
# of the time, and its worst group is {{0.00}}: it learned the person. The oracle shows that the
# field is there to be read ({{0.98}}, worst group {{0.93}}), and token deletion does not help
# (worst group still 0.00): the verbs carry the person once the pronouns are gone. A probe trained
# for the person on balanced data reads it at {{0.88}}. The world's own report, on 400 bios, has the
# same picture (field accuracy 0.59, oracle 0.93, token deletion's worst group 0.00).
#
# ### Which latents does the probe use?
#
# The probe reads the same hook as `saes[2]`, so its logit splits exactly into one term per latent,
# one for the SAE's error and a constant: pooled x = Σ_j pooled f_j · W_dec[j] + pooled error +
# b_dec. A latent's **attribution** is its term, mean pooled f_j · (W_dec[j] · w), averaged over the
# ambiguous set. Marks et al. attribute the probe's logit with integrated gradients through the
# model because they ablate at earlier layers too; here the ablation is at the probe's own hook,
# where the probe is linear, so the attribution is exact.

# %%
sae2 = saes[PROBE_LAYER]
Fpool = {name: pool(sae2.encode(R[name]), d.mask) for name, d in (("amb", amb), ("bal", bal), ("test", test))}
attribution = (Fpool["amb"] * (sae2.W_dec @ probe[0])).mean(0)
candidates = attribution.abs().argsort(descending=True)[:40]
print(f"top 40 latents by |attribution| hold {float(attribution[candidates].abs().sum() / attribution.abs().sum()):.2f} "
      f"of the total |attribution|; first five: {candidates[:5].tolist()}")

# %% [markdown]
# ### Exercise 2 · `judge_by_labels`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# In SHIFT a person reads each candidate latent's dashboard and says whether it is about the
# spurious attribute. The course world knows what every token is, so a judge can be computed. For
# each latent of `acts` (shape (n_docs, n_ctx, n_latents)), over the corpus's real tokens
# (`data.mask`), a latent "fires" where its activation is > 0. Compute the F1 score of "fires"
# against each concept's tokens (`data.labels[..., data.concept_index(c)]`), take the best F1
# over the `spurious` concepts and the best over the `intended` ones, and judge the latent
# spurious (True) if its best spurious F1 is at least `min_f1` and greater than its best intended
# F1. Return a bool tensor of shape (n_latents,). A latent that never fires has F1 0.

# %% [exercise]
def judge_by_labels(acts: Tensor, data, spurious: list[str], intended: list[str], min_f1: float = 0.2) -> Tensor:
    """True for each latent whose firing matches a spurious concept better than any intended one."""
    # BEGIN SOLUTION
    fires = (acts > 0) & data.mask[..., None]

    def best_f1(concepts):
        scores = []
        for c in concepts:
            truth = data.labels[..., data.concept_index(c)] & data.mask
            tp = (fires & truth[..., None]).sum((0, 1)).float()
            precision = tp / fires.sum((0, 1)).clamp(min=1)
            recall = tp / truth.sum().clamp(min=1)
            scores.append(2 * precision * recall / (precision + recall).clamp(min=1e-12))
        return torch.stack(scores).max(0).values

    spurious_f1, intended_f1 = best_f1(spurious), best_f1(intended)
    return (spurious_f1 >= min_f1) & (spurious_f1 > intended_f1)
    # END SOLUTION

# %% [hint]
# For one latent and one concept: precision = the share of the latent's firings that land on the
# concept's tokens, recall = the share of the concept's tokens where it fires, F1 their harmonic
# mean. Only real tokens count: the model also runs over padding, and latents fire there.

# %% [hint]
# `fires = (acts > 0) & data.mask[..., None]` is (docs, pos, latents); true positives are
# `(fires & truth[..., None]).sum((0, 1))`. Take the max over the concepts of each list, and guard
# the divisions (`clamp(min=1)`) for latents that never fire.

# %% [check]
tests.test_judge_by_labels(judge_by_labels)

# %% [markdown]
# The spurious concepts are the bio's person (every token of a first- or third-person bio,
# `bio_person:*`) and the words that mark it (`person_marker:*`: the pronouns and the name); the
# intended ones the field (`bio_field:*`) and the field's own sentences (`bio_medicine`, `bio_law`).
# The judge reads the balanced set, where person and field are independent, so a latent cannot
# look spurious just because the two agree.

# %%
SPURIOUS = ["bio_person:first", "bio_person:third", "person_marker:first", "person_marker:third"]
INTENDED = ["bio_field:medicine", "bio_field:law", "bio_medicine", "bio_law"]
bal_acts = sae2.encode(R["bal"])
label_judge = judge_by_labels(bal_acts, bal, SPURIOUS, INTENDED)
judged = [j for j in candidates.tolist() if label_judge[j]]
print(f"{len(judged)} of the 40 candidates judged spurious by the labels; "
      f"{int(label_judge.sum())} of all {len(label_judge)} latents")

# %% [markdown]
# ### A second judge: autointerp
#
# A person or a language model judges from the latent's top examples. `utils.autointerp` explains
# a latent from them with a pluggable client; offline it is `OfflineClient`, a very literal reader
# that names the tokens the latent fires on most (chapter 05 explains it). Our autointerp judge calls
# a latent spurious if its explanation quotes a word that marks the person (a pronoun, or the verb
# " am"). How often do the two judges agree, beyond chance?

# %% [module]
import re  # noqa: E402

from utils.autointerp import explain, top_examples  # noqa: E402

PERSON_WORDS = {*B.PRONOUNS, " am", "am"}


def autointerp_judge(acts: Tensor, data, to_str_tokens, client, n: int = 10) -> tuple[bool, str]:
    """Explain one latent (acts: (n_docs, n_ctx)) from its top examples; spurious if the explanation
    quotes a person word."""
    explanation = explain(top_examples(acts, data, to_str_tokens, n=n), client)
    quoted = set(re.findall(r'"([^"]*)"', explanation))
    return bool(quoted & PERSON_WORDS), explanation

# %% [markdown]
# ### Exercise 3 · `cohen_kappa`
#
# > Difficulty: 🔴⚪⚪⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 5 minutes
#
# Two judges that each say "spurious" for most latents agree often by chance. Cohen's kappa
# corrects for that: κ = (p_o − p_e) / (1 − p_e), where p_o is the share of items on which the two
# judges agree and p_e the agreement expected if they judged independently, each at its own rate:
# p_e = p_a·p_b + (1 − p_a)(1 − p_b), with p_a and p_b the shares of True of each judge. Return κ
# as a float for two bool tensors of the same length; when p_e = 1 (both judges constant and equal)
# return 1.0.

# %% [exercise]
def cohen_kappa(a: Tensor, b: Tensor) -> float:
    """Cohen's kappa between two binary judgements."""
    # BEGIN SOLUTION
    a, b = a.bool().float(), b.bool().float()
    observed = float((a == b).float().mean())
    pa, pb = float(a.mean()), float(b.mean())
    expected = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)
    # END SOLUTION

# %% [hint]
# Observed agreement is the share of items where the judges say the same. The agreement expected
# by chance uses each judge's own rate of True, as if the two judged independently.

# %% [hint]
# With `pa = a.float().mean()` and `pb = b.float().mean()`, p_e = pa·pb + (1 − pa)(1 − pb), not 0.5;
# κ = 0 means no better than chance, κ < 0 worse.

# %% [check]
tests.test_cohen_kappa(cohen_kappa)

# %%
from utils.autointerp import OfflineClient  # noqa: E402

client = OfflineClient()
to_str = model.tokenizer.convert_ids_to_tokens
rows, ai_judge = [], []
for j in tqdm(candidates.tolist(), desc="autointerp judge"):
    verdict, explanation = autointerp_judge(bal_acts[..., j], bal, to_str, client)
    ai_judge.append(verdict)
    rows.append((j, f"{float(attribution[j]):+.3f}", "spurious" if label_judge[j] else "-", "spurious" if verdict else "-",
                 explanation[:70]))
ai_judge = torch.tensor(ai_judge)
lab = label_judge[candidates]
print(tabulate(rows[:12], headers=["latent", "attribution", "labels", "autointerp", "explanation (offline client)"], disable_numparse=True))
kappa = cohen_kappa(lab, ai_judge)
print(f"labels: {int(lab.sum())} spurious, autointerp: {int(ai_judge.sum())}; agreement "
      f"{float((lab == ai_judge).float().mean()):.2f}, Cohen's kappa {kappa:.2f}")

# %% [markdown]
# Expected output: the labels call {{23}} of the 40 candidates spurious (and {{53}} of all 512
# latents), the offline autointerp judge {{8}}; they agree on {{0.57}} of the candidates, Cohen's
# κ = {{0.22}}: a little better than chance (0), far from agreement (1). The literal judge calls a
# latent spurious only when a pronoun is among the three tokens it fires on most; a latent that
# fires on many tokens of third-person bios (the labels' `bio_person:third`) shows no single word to
# quote. Which judge is right is a question the labels answer here and nothing answers on a real
# model, which is why SHIFT's human judge is its weakest step.
#
# ### Exercise 4 · `shift`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# SHIFT zero-ablates the judged latents (error term kept) at the probe's hook, evaluates the *same*
# probe, then retrains it on the ablated ambiguous set. The probe reads the mean over a bio's
# tokens, and the mean is linear, so ablating at every token and then pooling is the same as
# pooling first: the pooled stream minus Σ_j (pooled f_j) W_dec[j]. Given the pooled residual
# streams `pooled[name]` (n, d_model) and pooled latents `pooled_latents[name]` (n, d_sae) for
# `name` in `("amb", "test")`, return `{"ablated": ..., "retrained": ...}`: the 0/1 predictions on the
# ablated test set of `probe` and of a probe retrained with `train_probe` on the ablated ambiguous
# set (labels `amb_field`).

# %% [exercise]
def shift(probe, latents, pooled: dict, pooled_latents: dict, W_dec: Tensor, amb_field: Tensor) -> dict:
    """SHIFT at the probe's hook: predictions of the same probe and of a retrained one, both on the ablated test set."""
    # BEGIN SOLUTION
    idx = torch.as_tensor(list(latents), dtype=torch.long)
    ablated = {name: pooled[name] - pooled_latents[name][:, idx] @ W_dec[idx] for name in ("amb", "test")}
    retrained = train_probe(ablated["amb"], amb_field)
    return {"ablated": predict(probe, ablated["test"]), "retrained": predict(retrained, ablated["test"])}
    # END SOLUTION

# %% [hint]
# Ablate both sets the same way, then use the test set twice: once with the old probe, once with a
# probe trained on the ablated ambiguous set. Training on the unablated set, or testing on it, would
# measure a probe that never saw the ablation.

# %% [hint]
# `idx = torch.as_tensor(latents)`; the ablated set is `pooled[name] - pooled_latents[name][:, idx] @
# W_dec[idx]` (no `b_dec`: it is not a latent). `predict(probe, x)` gives the 0/1 predictions.

# %% [check]
tests.test_shift(shift)

# %% [markdown]
# ### SHIFT and its baselines
#
# SHIFT with the judged latents, against as many random latents (20 draws; the same probe and
# retrained), token deletion and the oracle from above, and one more baseline from Tim Hua's
# critique, which reports that on Bias in Bios ablating a few latents of the SAE on the
# *embeddings* worked better than SHIFT's latents: here, the latents of the SAE at resid_pre_0 that
# the label judge calls spurious, with the model rerun up to the probe's hook.

# %%
def ablate_pooled(name: str, latents) -> Tensor:
    """A set's pooled activations with the latents zero-ablated at every token (error kept)."""
    idx = torch.as_tensor(latents, dtype=torch.long)
    return X[name] - Fpool[name][:, idx] @ sae2.W_dec[idx]


out = shift(probe, judged, X, Fpool, sae2.W_dec, amb_field)
results["SHIFT (judged latents ablated)"] = group_accuracy(out["ablated"], test_field, test_person)
results["SHIFT + retrain"] = group_accuracy(out["retrained"], test_field, test_person)
rng = np.random.default_rng(0)
random_worst, random_worst_same = [], []
for _ in tqdm(range(20), desc="random latents"):
    out = shift(probe, rng.choice(sae2.W_dec.shape[0], size=len(judged), replace=False), X, Fpool, sae2.W_dec, amb_field)
    random_worst_same.append(group_accuracy(out["ablated"], test_field, test_person)["worst_group"])
    random_worst.append(group_accuracy(out["retrained"], test_field, test_person)["worst_group"])

# Tim Hua's baseline: ablate only token-level latents, those of the SAE on the embeddings (resid_pre_0)
# that the same label judge calls spurious, and rerun the model up to the probe's hook.
sae0 = saes[0]
emb_judged = judge_by_labels(sae0.encode(resid(model, bal.tokens, 0)), bal, SPURIOUS, INTENDED).nonzero().flatten()


def without_embedding_latents(x, hook):
    return x - sae0.encode(x)[..., emb_judged] @ sae0.W_dec[emb_judged]


X_emb = {name: pool(model.run_with_hooks(d.tokens, stop_at_layer=PROBE_LAYER,
                                         fwd_hooks=[(hook_name(0), without_embedding_latents)]), d.mask)
         for name, d in (("amb", amb), ("test", test))}
results[f"{len(emb_judged)} resid_pre_0 latents ablated"] = group_accuracy(predict(probe, X_emb["test"]), test_field, test_person)
results["... + retrain"] = group_accuracy(predict(train_probe(X_emb["amb"], amb_field), X_emb["test"]), test_field, test_person)
show(results)


def embedding_ablation_worst(latents, n: int = 80) -> float:
    """Worst group of the retrained probe with `latents` of resid_pre_0 ablated, on the first n
    ambiguous and n test bios (a smaller same-condition run, for the random control)."""
    idx = torch.as_tensor(latents, dtype=torch.long)

    def ablate(x, hook):
        return x - sae0.encode(x)[..., idx] @ sae0.W_dec[idx]

    xs = {name: pool(model.run_with_hooks(d.tokens[:n], stop_at_layer=PROBE_LAYER, fwd_hooks=[(hook_name(0), ablate)]),
                     d.mask[:n]) for name, d in (("amb", amb), ("test", test))}
    pred = predict(train_probe(xs["amb"], amb_field[:n]), xs["test"])
    return group_accuracy(pred, test_field[:n], test_person[:n])["worst_group"]


emb_random = [embedding_ablation_worst(rng.choice(sae0.W_dec.shape[0], size=len(emb_judged), replace=False))
              for _ in tqdm(range(20), desc="random resid_pre_0 latents")]
print(f"on 80 + 80 bios, retrained: the {len(emb_judged)} judged resid_pre_0 latents give worst group "
      f"{embedding_ablation_worst(emb_judged):.2f}; 20 draws of {len(emb_judged)} random ones: median "
      f"{np.median(emb_random):.2f}, 10th-90th percentile {np.percentile(emb_random, 10):.2f}-{np.percentile(emb_random, 90):.2f}")
for label, values in (("same probe", random_worst_same), ("retrained", random_worst)):
    print(f"{len(judged)} random latents, {label}, 20 draws: worst group median {np.median(values):.2f}, "
          f"10th-90th percentile {np.percentile(values, 10):.2f}-{np.percentile(values, 90):.2f}")

# %% [markdown]
# Expected output: SHIFT with the 23 judged latents lifts the worst group of the same probe to
# {{0.17}} (20 draws of 23 random latents: 0.00 at the median and at the 90th percentile), and
# retraining on the ablated ambiguous set brings it back to 0.00, as for random latents. Token
# deletion leaves 0.00 too. Tim Hua's baseline does better: ablating the {{45}} latents of the SAE
# on the embeddings that the labels call spurious gives a retrained worst group of {{0.25}} (field
# accuracy {{0.75}}); on the smaller same-condition run, {{0.30}} against 0.00 for 20 draws of 45
# random embedding latents (10th–90th percentile {{0.00-0.06}}). It ablates more latents than SHIFT
# did, so compare each with random latents of its own size and layer, not with each other.
# Removing the pronoun and person tokens' own latents *before* the model spreads them over the bio
# helps a little; removing latents at the probe's layer, where the person is already everywhere,
# does not. All of it is far from the oracle's 0.93 and from the recovery Marks et al. report on
# Bias in Bios: **on this world probe SHIFT fails**. Marks et al.'s Bias in Bios result needs the
# spurious signal to sit in a few latents that can be ablated. Does it here? Two measurements:

# %%
person_after = train_probe(ablate_pooled("bal", judged), bal_person)
acc_after = float((predict(person_after, ablate_pooled("test", judged)) == test_person).float().mean())
err = {name: pool(R[name] - sae2.decode(sae2.encode(R[name])), d.mask) for name, d in (("bal", bal), ("test", test))}
person_err = train_probe(err["bal"], bal_person)
acc_err = float((predict(person_err, err["test"]) == test_person).float().mean())
field_err = float((predict(train_probe(err["bal"], bal_field), err["test"]) == test_field).float().mean())
all_judged = label_judge.nonzero().flatten().tolist()
x_all = ablate_pooled("test", all_judged)
acc_all = float((predict(train_probe(ablate_pooled("bal", all_judged), bal_person), x_all) == test_person).float().mean())
print(f"person read after ablating the {len(judged)} judged latents: {acc_after:.2f}; after ablating all "
      f"{len(all_judged)} latents the labels call spurious: {acc_all:.2f} (chance 0.50)")
print(f"from the SAE's error term alone: person {acc_err:.2f}, field {field_err:.2f}")

# %% [markdown]
# Expected output: after the judged latents are gone a fresh probe still reads the person at
# {{0.91}}, and at {{0.89}} after all 53 latents the labels call spurious are gone, as well as
# before any ablation (0.88). The SAE's error term alone gives the person at {{0.90}} (and the field
# at {{0.82}}). The person is written into every token's residual stream along directions that no
# handful of latents owns, and into what the SAE does not reconstruct, which SHIFT never ablates; so
# the retrained probe finds it again. That is this section's lesson: SHIFT can only remove what the
# dictionary isolates, and only the baselines (random latents, token deletion, an oracle) tell you
# whether it did.
#
# ## 2 · A sparse feature circuit for the model's gender bias
#
# The model itself carries a planted bias. In the corpus, the pronoun after a profession is
# " she" with the probability of `facts.PROFESSIONS` (nurse 0.9 ... pilot 0.1; doctor, lawyer,
# writer and singer 0.5). Does the model reproduce it? Its P(she) / (P(she) + P(he)) at the
# pronoun slot, averaged over the four wordings, each with a woman's and a man's name (a name in the
# sentence can pull the pronoun its way), against the planted table:

# %%
names = list(F.NAMES)
ALL_FRAMES = SELECT_FRAMES + EVAL_FRAMES
rows = []
for prof, planted in F.PROFESSIONS.items():  # each wording with a woman's and a man's name (Mary, John)
    toks = model.to_tokens([fr.format(prof=prof, name=name) for fr in ALL_FRAMES for name in ("Mary", "John")])
    rows.append((prof, planted, float(torch.sigmoid(she_he(model(toks))).mean())))
r_bias = pearsonr([r[1] for r in rows], [r[2] for r in rows])[0]
fig = px.scatter(x=[r[1] for r in rows], y=[r[2] for r in rows], text=[r[0] for r in rows],
                 labels={"x": "planted P(she | profession)", "y": "model: P(she) / (P(she) + P(he))"},
                 title=f"The model's pronoun bias against the planted table (r = {r_bias:.3f})")
fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
fig.update_traces(textposition="top center")
fig.show()
print(f"Pearson r = {r_bias:.3f} over {len(rows)} professions; the four planted at 0.5: "
      + ", ".join(f"{p} {m:.2f}" for p, v, m in rows if v == 0.5))

# %% [markdown]
# Expected output: r = {{0.974}} over 14 professions: the model learned the planted table. The four
# professions planted at 0.5 come out above it (doctor {{0.65}}, singer {{0.70}}): with these
# wordings and names the model leans to " she" where the table is even.
#
# The task of the circuit: **clean** prompts name a female-coded profession, **corrupted** ones a
# male-coded one, same wording, same name; the metric is the log-odds logit(she) − logit(he) at the
# last position, per prompt. Patching the whole residual stream from corrupted to clean moves the
# metric by the full gap; which latents carry it?

# %%
pairs_sel = [profession_pairs(model, fr, names) for fr in SELECT_FRAMES]
pairs_eval = [profession_pairs(model, fr, names[10:]) for fr in EVAL_FRAMES]
for fr, (clean, corrupt) in zip(SELECT_FRAMES, pairs_sel):
    print(f"{fr!r}: {model.to_str_tokens(clean[0])} | clean mean {float(she_he(model(clean)).mean()):+.2f}, "
          f"corrupted mean {float(she_he(model(corrupt)).mean()):+.2f}")

# %% [markdown]
# ### Exercise 5 · `atp_effects`: attribution patching over latents and error nodes
#
# > Difficulty: 🔴🔴🔴🔴⚪ · Importance: 🔵🔵🔵🔵🔵 · about 30 minutes
#
# For each layer L of `saes` (a dict {layer: SAE at `hook_name(L)`}), write the residual stream at
# that hook as x = W_decᵀ f + b_dec + err: latents f = `sae.encode(x)` and an error node
# err = x − `sae.decode(f)` at each position. AtP estimates the effect on the metric of patching one
# node from its clean to its corrupted value as
#
# effect = (node_corrupt − node_clean) · ∂metric/∂node, the gradient taken on the clean run.
#
# Return `{L: (latent_effects, error_effects)}` with latent_effects of shape (batch, pos, d_sae)
# and error_effects of shape (batch, pos) (an error node is a d_model vector: its effect is the dot
# product). `metric(logits)` returns one value per prompt; backpropagate its sum, so each prompt's
# effects are its own.
#
# (A departure from Marks et al.: they use SAEs on the embeddings and on every layer's attention
# output, MLP output and residual stream; here the residual-stream SAEs of layers 1 to 3.)
#
# The gradients must be those of the **real** model at every layer at once. Since
# x = W_decᵀ f + b_dec + err, ∂metric/∂f = W_dec · ∂metric/∂x and ∂metric/∂err = ∂metric/∂x, so
# one backward pass with the gradient read at each hook gives them all. A tempting shortcut, splicing
# each SAE in as `decode(f) + err.detach()` with f made a leaf, as chapter 03's replacement model
# does, cuts the graph at every hook: no gradient reaches the earlier layers' latents.

# %% [exercise]
def atp_effects(model, saes: dict, clean: Tensor, corrupt: Tensor, metric) -> dict:
    """{layer: (latent effects (batch, pos, d_sae), error-node effects (batch, pos))} by attribution patching."""
    # BEGIN SOLUTION
    hooks = [hook_name(L) for L in saes]
    saved = {}

    def keep(x, hook):
        x.retain_grad()
        saved[hook.name] = x
        return x

    with torch.enable_grad():
        embed_leaf = {}

        def leaf(x, hook):  # make the graph start here, whatever the parameters' requires_grad
            embed_leaf["x"] = x.detach().requires_grad_()
            return embed_leaf["x"]

        logits = model.run_with_hooks(clean, fwd_hooks=[("hook_embed", leaf)] + [(h, keep) for h in hooks])
        metric(logits).sum().backward()
    _, cache = model.run_with_cache(corrupt, names_filter=hooks)
    out = {}
    for L, sae in saes.items():
        x, grad, x_patch = saved[hook_name(L)].detach(), saved[hook_name(L)].grad, cache[hook_name(L)]
        f, f_patch = sae.encode(x), sae.encode(x_patch)
        err, err_patch = x - sae.decode(f), x_patch - sae.decode(f_patch)
        out[L] = ((f_patch - f) * (grad @ sae.W_dec.T), ((err_patch - err) * grad).sum(-1))
    return out
    # END SOLUTION

# %% [hint]
# Three runs: a clean forward pass that keeps each hook's activation with its gradient, one
# backward pass of the summed metric, and a corrupted run for the patched values. Then, per layer,
# encode both runs, form the error terms, and multiply each node's change by its gradient.

# %% [hint]
# In a hook, `x.retain_grad()` keeps the gradient of a non-leaf tensor; wrap the clean run in
# `torch.enable_grad()` (the notebook turns gradients off). The latents' gradient is
# `grad @ sae.W_dec.T`; the error node's effect is `((err_patch - err) * grad).sum(-1)`. The sign is
# corrupted minus clean.

# %% [check]
tests.test_atp_effects(atp_effects)

# %% [markdown]
# ### Is AtP right? Exact patching on a sample of latents
#
# Exact patching sets one latent, at every position, to its corrupted value (the error terms stay
# clean) and reruns the model: x → x + (f_corrupt − f_clean) W_dec[j]. We do it for the 15 latents
# with the largest |AtP| at each layer and 15 drawn at random among those that change, on the first
# wording.

# %%
def exact_against_atp(clean, corrupt, effects, rng, n: int = 15) -> list[tuple]:
    """(layer, latent, AtP, exact effect, in the top n) for the n latents with the largest |AtP| at
    each layer and n drawn at random among the others that change, all summed over prompts."""
    names = [hook_name(L) for L in LAYERS]
    _, cc = model.run_with_cache(clean, names_filter=names)
    _, cp = model.run_with_cache(corrupt, names_filter=names)
    base = float(she_he(model(clean)).sum())
    rows = []
    for L in LAYERS:
        sae = saes[L]
        delta_f = sae.encode(cp[hook_name(L)]) - sae.encode(cc[hook_name(L)])
        per_latent = effects[L][0].sum((0, 1))
        changed = (delta_f.abs().sum((0, 1)) > 0).nonzero().flatten()
        top = per_latent.abs().argsort(descending=True)[:n].tolist()
        sample = top + [j for j in rng.permutation(changed.tolist()).tolist() if j not in top][:n]
        for j in tqdm(sample, desc=f"exact patching, layer {L}", leave=False):
            shift = delta_f[..., j, None] * sae.W_dec[j]
            m = float(she_he(model.run_with_hooks(clean, fwd_hooks=[(hook_name(L), lambda x, hook: x + shift)])).sum())
            rows.append((L, j, float(per_latent[j]), m - base, j in top))
    return rows


clean, corrupt = pairs_sel[0]
effects = atp_effects(model, saes, clean, corrupt, she_he)
_, cache_c = model.run_with_cache(clean, names_filter=[hook_name(L) for L in LAYERS])
_, cache_p = model.run_with_cache(corrupt, names_filter=[hook_name(L) for L in LAYERS])
m_clean = float(she_he(model(clean)).sum())
rng = np.random.default_rng(0)
exact_rows = exact_against_atp(clean, corrupt, effects, rng)
atp_v, exact_v = np.array([r[2] for r in exact_rows]), np.array([r[3] for r in exact_rows])
rho = spearmanr(atp_v, exact_v).correlation
rho_random = spearmanr(atp_v[[not r[4] for r in exact_rows]], exact_v[[not r[4] for r in exact_rows]]).correlation
fig = px.scatter(x=exact_v, y=atp_v, color=[f"layer {r[0]}" for r in exact_rows],
                 labels={"x": "exact patching effect (summed over prompts)", "y": "AtP estimate"},
                 title=f"AtP against exact patching, {len(exact_rows)} latents (Spearman {rho:.3f})")
fig.add_shape(type="line", x0=exact_v.min(), y0=exact_v.min(), x1=exact_v.max(), y1=exact_v.max(),
              line={"dash": "dot", "color": "grey"})
fig.show()
print(f"{len(exact_rows)} latents: Spearman {rho:.3f}; the random half alone: {rho_random:.3f}; "
      f"largest |AtP - exact| {np.abs(atp_v - exact_v).max():.3f} (largest |exact| {np.abs(exact_v).max():.3f})")
other = exact_against_atp(*pairs_sel[1], atp_effects(model, saes, *pairs_sel[1], she_he), rng)
print(f"the second wording ({len(other)} latents chosen the same way): Spearman "
      f"{spearmanr([r[2] for r in other], [r[3] for r in other]).correlation:.3f}")

# %% [markdown]
# Expected output: Spearman {{0.998}} over 90 latents, and {{0.994}} on the random half alone, the
# harder test (small effects, where a first-order estimate is most easily wrong in sign); on the
# second wording {{0.997}}, well above the 0.9 we would accept. The largest error is {{0.408}} on
# effects of up to {{9.241}}. Patching one latent moves the residual stream a little, and the model
# is close to linear over that distance.
#
# How much of the effect do the latents hold, and how much the error nodes? Sum each kind over
# prompts and positions, at each layer:

# %%
total_effect = float(she_he(model(corrupt)).sum()) - m_clean
share_rows = []
for L in LAYERS:
    lat, err_e = float(effects[L][0].sum()), float(effects[L][1].sum())
    share_rows.append((f"resid_pre_{L}", f"{lat:+.2f}", f"{err_e:+.2f}", f"{lat + err_e:+.2f}", f"{err_e / (lat + err_e):.2f}"))
print(tabulate(share_rows, headers=["layer", "latents", "error nodes", "sum", "error share"], disable_numparse=True))
print(f"true effect of patching everything: {total_effect:+.2f} (summed over {len(clean)} prompts)")

# %% [markdown]
# Expected output: at each layer latents + errors sum to about the true effect ({{-85.64}} summed
# over the 25 prompts): the residual stream at one layer is everything the later layers see. But the
# error nodes hold {{0.45}} of it at layer 1, {{0.68}} at layer 2 and {{0.51}} at layer 3: much of
# the profession → pronoun signal lies in what the SAEs do not reconstruct. Keep that in mind for
# section 3.
#
# ### Exercise 6 · `ig_effects`: integrated gradients
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵⚪⚪ · about 20 minutes
#
# AtP takes the gradient at the clean point only. Marks et al. use **integrated gradients** for the
# nodes of their circuits: for one layer at a time, move the layer's latents and error nodes
# together along the straight line from clean to corrupted, and average the gradient over `steps`
# points α = 0, 1/steps, …, (steps − 1)/steps (their code's left Riemann sum). At each α, the
# residual stream at that hook becomes `sae.decode(f_α) + err_α` with
# f_α = (1 − α) f_clean + α f_corrupt (the same for err), and everything downstream is recomputed.
# Then effect = (node_corrupt − node_clean) · mean gradient. Same return format as `atp_effects`.
#
# Summed over all nodes of one layer, integrated gradients should give back the whole effect of
# patching that layer, m(corrupt) − m(clean), up to the error of the Riemann sum (**completeness**).

# %% [exercise]
def ig_effects(model, saes: dict, clean: Tensor, corrupt: Tensor, metric, steps: int = 10) -> dict:
    """{layer: (latent effects, error-node effects)} by integrated gradients along clean -> corrupted."""
    # BEGIN SOLUTION
    _, cache_c = model.run_with_cache(clean, names_filter=[hook_name(L) for L in saes])
    _, cache_p = model.run_with_cache(corrupt, names_filter=[hook_name(L) for L in saes])
    out = {}
    for L, sae in saes.items():
        x, x_patch = cache_c[hook_name(L)], cache_p[hook_name(L)]
        f, f_patch = sae.encode(x), sae.encode(x_patch)
        err, err_patch = x - sae.decode(f), x_patch - sae.decode(f_patch)
        grad_f, grad_err = torch.zeros_like(f), torch.zeros_like(err)
        for k in range(steps):
            alpha = k / steps
            with torch.enable_grad():
                f_a = ((1 - alpha) * f + alpha * f_patch).requires_grad_()
                err_a = ((1 - alpha) * err + alpha * err_patch).requires_grad_()
                logits = model.run_with_hooks(clean, fwd_hooks=[(hook_name(L), lambda x, hook: sae.decode(f_a) + err_a)])
                metric(logits).sum().backward()
            grad_f += f_a.grad
            grad_err += err_a.grad
        out[L] = ((f_patch - f) * grad_f / steps, ((err_patch - err) * grad_err / steps).sum(-1))
    return out
    # END SOLUTION

# %% [hint]
# One layer at a time: encode the clean and corrupted residual streams, form the error terms, and
# for each α build the interpolated latents and error as leaf tensors that require gradients, run
# the clean prompt with the hook's output replaced by `decode(f_α) + err_α`, and backpropagate the
# summed metric. Accumulate the gradients.

# %% [hint]
# `alpha = k / steps` for `k in range(steps)`: α = 1 is not included, as in Marks et al.'s code.
# Divide the accumulated gradient by `steps` (a mean, not a sum) before multiplying by
# `f_patch - f`; the error node's effect is summed over d_model.

# %% [check]
tests.test_ig_effects(ig_effects)

# %%
ig = ig_effects(model, saes, clean, corrupt, she_he)
comp_rows = []
for L in LAYERS:
    ig_sum = float(ig[L][0].sum() + ig[L][1].sum())
    atp_sum = float(effects[L][0].sum() + effects[L][1].sum())
    comp_rows.append((f"resid_pre_{L}", f"{ig_sum:+.2f}", f"{atp_sum:+.2f}", f"{total_effect:+.2f}",
                      f"{abs(ig_sum - total_effect) / abs(total_effect):.3f}", f"{abs(atp_sum - total_effect) / abs(total_effect):.3f}"))
print(tabulate(comp_rows, headers=["layer", "IG sum", "AtP sum", "true effect", "IG rel. error", "AtP rel. error"], disable_numparse=True))
ig_all = np.concatenate([ig[L][0].sum((0, 1)).numpy() for L in LAYERS])
atp_all = np.concatenate([effects[L][0].sum((0, 1)).numpy() for L in LAYERS])
moved = (ig_all != 0) | (atp_all != 0)
rho_ig = spearmanr(ig_all[moved], atp_all[moved]).correlation
top_ig, top_atp = set(np.argsort(-np.abs(ig_all))[:20]), set(np.argsort(-np.abs(atp_all))[:20])
print(f"IG against AtP over the {int(moved.sum())} latents that change: Spearman {rho_ig:.3f}; "
      f"the top 20 by |effect| share {len(top_ig & top_atp)} latents")

# %% [markdown]
# Expected output: the IG sums miss the true effect by at most {{0.007}} of it (relative), AtP's by
# up to {{0.041}}; both are small because the model is close to linear along this path. The two
# rank the latents that change alike (Spearman {{0.948}}; {{18}} of their top 20 are shared), so
# section 3 ranks by AtP, which costs one backward pass instead of ten per layer.
#
# ### Exercise 7 · `edge_effects`
#
# > Difficulty: 🔴🔴🔴🔴⚪ · Importance: 🔵🔵🔵⚪⚪ · about 25 minutes
#
# A node's effect says *that* it matters; an edge says *through what*. Marks et al.'s edge from an
# upstream node u to a downstream node d is the part of u's effect that flows through d:
#
# edge(u → d) = ∂m/∂d · ∂d/∂u · Δu,
#
# summed over prompts and positions (all positions of u, all positions of d). Write it for upstream
# latents at layer `up` and downstream latents `down_latents` at layer `down` > `up`: given
# `up_delta` = f_corrupt − f_clean at `up` and `down_grad` = ∂m/∂f at `down` (both
# (batch, pos, d_sae)), return a tensor (len(down_latents), d_sae_up). ∂d/∂u is the derivative of
# `saes[down].encode` of the residual stream at `down` with respect to the upstream latents, with
# the upstream SAE spliced in as decode(f) + err (err held at its clean value). One backward pass
# per downstream latent: backpropagate (down_grad[..., d] · f_down[..., d]).sum() to the upstream
# latents, then multiply by `up_delta` and sum over prompts and positions.
#
# One departure from Marks et al.: their edges also start and end at error nodes; here only latents.

# %% [exercise]
def edge_effects(model, saes: dict, tokens: Tensor, up: int, down: int, up_delta: Tensor, down_grad: Tensor,
                 down_latents: list[int]) -> Tensor:
    """edges[i, j] = sum over prompts and positions of down_grad[.., d_i] * d f_down[.., d_i] / d f_up[.., j] * up_delta[.., j]."""
    # BEGIN SOLUTION
    sae_up, sae_down = saes[up], saes[down]
    x_up = resid(model, tokens, up)
    with torch.enable_grad():
        f_up = sae_up.encode(x_up).detach().requires_grad_()
        err_up = (x_up - sae_up.decode(f_up)).detach()
        x_down = model.run_with_hooks(tokens, stop_at_layer=down,
                                      fwd_hooks=[(hook_name(up), lambda x, hook: sae_up.decode(f_up) + err_up)])
        f_down = sae_down.encode(x_down)
        rows = []
        for d in down_latents:
            (grad,) = torch.autograd.grad((down_grad[..., d] * f_down[..., d]).sum(), f_up, retain_graph=True)
            rows.append((grad * up_delta).sum((0, 1)))
    return torch.stack(rows)
    # END SOLUTION

# %% [hint]
# Splice the upstream SAE in at `hook_name(up)` with the upstream latents as a leaf tensor that
# requires gradients, run the model only as far as layer `down` (`stop_at_layer=down` returns the
# residual stream there), encode it with the downstream SAE, and backpropagate one downstream
# latent at a time, weighted by its gradient.

# %% [hint]
# `torch.autograd.grad(out, f_up, retain_graph=True)` gives ∂out/∂f_up without touching `.grad`;
# keep the graph for the next downstream latent. The edge is `(grad * up_delta).sum((0, 1))`: Δu
# multiplies after the backward pass, and the sum runs over prompts and positions.

# %% [check]
tests.test_edge_effects(edge_effects)

# %%
up_L, down_L = 1, 2
with torch.enable_grad():  # the metric's gradient at layer 2's latents, as inside atp_effects
    grabbed = {}

    def start(x, hook):
        return x.detach().requires_grad_()

    def grab(x, hook):
        x.retain_grad()
        grabbed["x"] = x
        return x

    she_he(model.run_with_hooks(clean, fwd_hooks=[("hook_embed", start), (hook_name(down_L), grab)])).sum().backward()
down_grad = grabbed["x"].grad @ saes[down_L].W_dec.T
up_delta = saes[up_L].encode(cache_p[hook_name(up_L)]) - saes[up_L].encode(cache_c[hook_name(up_L)])
top_down = effects[down_L][0].sum((0, 1)).abs().argsort(descending=True)[:5].tolist()
edges = edge_effects(model, saes, clean, up_L, down_L, up_delta, down_grad, top_down)
top_up = edges.abs().sum(0).argsort(descending=True)[:8].tolist()
fig = px.imshow(edges[:, top_up].numpy(), x=[f"L1 #{j}" for j in top_up], y=[f"L2 #{d}" for d in top_down],
                color_continuous_scale="RdBu", color_continuous_midpoint=0, aspect="auto",
                labels={"color": "edge effect"}, title="Edges from layer-1 latents to the top layer-2 latents")
fig.show()
i_best, j_best = divmod(int(edges.abs().argmax()), edges.shape[1])
node_up = effects[up_L][0].sum((0, 1))
print(f"strongest edge: L1 #{j_best} -> L2 #{top_down[i_best]}, {float(edges[i_best, j_best]):+.3f}; "
      f"L1 #{j_best}'s whole AtP effect {float(node_up[j_best]):+.3f}, L2 #{top_down[i_best]}'s "
      f"{float(effects[down_L][0].sum((0, 1))[top_down[i_best]]):+.3f}")

# %% [markdown]
# Expected output: the strongest edge runs from L1 {{#32}}, one of the two layer-1 latents with the
# largest AtP effect, to L2 {{#355}}: {{-3.565}} of L2 #355's whole effect of {{-4.932}} arrives
# from L1 #32, whose own effect is {{-8.930}}. So most of what L2 #355 does, it relays from one
# layer-1 latent. The rest of L1 #32's effect travels through other layer-2 latents and through
# layer 2's error node (which this chapter's edges leave out): the residual stream before layer 2 is
# a complete cut, so there is no third route.
#
# ### Exercise 8 · `circuit_metric`: faithfulness and completeness
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 20 minutes
#
# A circuit C is a set of nodes at one layer: (position, latent) pairs and (position, error) nodes.
# Marks et al. test it by **mean-ablating** everything outside it: every node not in C is set to
# its mean over the prompts, at its position, and the model is rerun. `keep` is a bool tensor
# (pos, d_sae + 1) whose last column is the error node. Return the metric (per prompt) with the
# residual stream at `hook_name(layer)` rebuilt as decode(f') + err', where f' and err' are the
# clean values where `keep` is True and the batch means elsewhere.
#
# With F the gap (mean metric over female-coded prompts minus over male-coded ones):
# **faithfulness** = (F(C) − F(∅)) / (F(M) − F(∅)), and **completeness** asks the same of M \ C
# (close to 0 if C holds all that matters). Since the batch mixes both kinds of prompts, F(∅), where
# every node is at its mean, is exactly 0. A departure from Marks et al.: they ablate the complement
# at every layer of a multi-layer circuit at once; here one layer at a time, where the residual
# stream is a complete cut, so each layer's circuit can be judged on its own.

# %% [exercise]
def circuit_metric(model, sae, layer: int, tokens: Tensor, metric, keep: Tensor) -> Tensor:
    """The metric of each prompt with every node outside `keep` (pos, d_sae + 1) mean-ablated at `layer`."""
    # BEGIN SOLUTION
    def ablate(x, hook):
        f = sae.encode(x)
        err = x - sae.decode(f)
        f = torch.where(keep[:, :-1], f, f.mean(0, keepdim=True))
        err = torch.where(keep[:, -1:], err, err.mean(0, keepdim=True))
        return sae.decode(f) + err

    return metric(model.run_with_hooks(tokens, fwd_hooks=[(hook_name(layer), ablate)]))
    # END SOLUTION

# %% [hint]
# In a hook at `hook_name(layer)`: encode, form the error term, replace every node outside `keep`
# by its mean over the batch (dimension 0: the mean at that position over prompts), and return the
# decoded latents plus the error.

# %% [hint]
# `torch.where(keep[:, :-1], f, f.mean(0, keepdim=True))` broadcasts over the batch; the error
# column is `keep[:, -1:]` (keep it 2-D so that it broadcasts over d_model). Mean ablation, not
# zero ablation: a latent at zero is a value the model rarely sees.

# %% [check]
tests.test_circuit_metric(circuit_metric)

# %% [markdown]
# Circuits of n nodes at one layer, ranked by |AtP| (clean female-coded, corrupted male-coded, on
# the selection wordings), then scored on a batch of both kinds of prompts. The control for each n
# is 20 circuits of n nodes drawn at random among the nodes that change between the two kinds of
# prompts.

# %%
both = torch.cat([clean, corrupt])
female = torch.arange(len(both)) < len(clean)


def gap_of(values: Tensor) -> float:
    return float(values[female].mean() - values[~female].mean())


def circuit_gaps_many(sae, layer: int, keeps: Tensor) -> list[float]:
    """circuit_metric's gap for many circuits at once (keeps: (n, pos, d_sae + 1)), in one batch: the
    prompts repeated n times, the means taken over one copy."""
    n, size = len(keeps), len(both)

    def ablate(x, hook):
        f = sae.encode(x)
        err = x - sae.decode(f)
        k = keeps.repeat_interleave(size, 0)
        f = torch.where(k[..., :-1], f, f[:size].mean(0, keepdim=True))
        err = torch.where(k[..., -1:], err, err[:size].mean(0, keepdim=True))
        return sae.decode(f) + err

    m = she_he(model.run_with_hooks(both.repeat(n, 1), fwd_hooks=[(hook_name(layer), ablate)])).view(n, size)
    return [gap_of(row) for row in m]


F_M = gap_of(she_he(model(both)))
faith_rows, curves = [], []
sizes = (1, 3, 10, 30)
rng = np.random.default_rng(1)
for L in LAYERS:
    node_effect = torch.cat([effects[L][0].sum(0), effects[L][1].sum(0)[:, None]], dim=1)  # (pos, d_sae + 1)
    order = node_effect.abs().flatten().argsort(descending=True)
    live = (node_effect.flatten() != 0).nonzero().flatten()
    for n in sizes:
        keep = torch.zeros(node_effect.numel(), dtype=torch.bool)
        keep[order[:n]] = True
        keep = keep.view_as(node_effect)
        faith = gap_of(circuit_metric(model, saes[L], L, both, she_he, keep)) / F_M
        complete = gap_of(circuit_metric(model, saes[L], L, both, she_he, ~keep)) / F_M
        random_keeps = torch.zeros(20, node_effect.numel(), dtype=torch.bool)
        for r in range(20):
            random_keeps[r, live[rng.choice(len(live), size=min(n, len(live)), replace=False)]] = True
        rand = [g / F_M for g in circuit_gaps_many(saes[L], L, random_keeps.view(20, *node_effect.shape))]
        n_err = int(keep[:, -1].sum())
        faith_rows.append((f"resid_pre_{L}", n, n_err, f"{faith:.2f}", f"{complete:.2f}",
                           f"{np.percentile(rand, 50):.2f} ({np.percentile(rand, 10):.2f}-{np.percentile(rand, 90):.2f})"))
        curves.append(dict(layer=f"resid_pre_{L}", n=n, faithfulness=faith, kind="AtP top n"))
        curves.append(dict(layer=f"resid_pre_{L}", n=n, faithfulness=float(np.median(rand)), kind="random n (median)"))
print(f"F(M) = {F_M:.2f} nats (the clean gap on these prompts)")
print(tabulate(faith_rows, headers=["layer", "nodes", "of which errors", "faithfulness", "completeness (M \\ C)",
                                    "random: median (10th-90th)"], disable_numparse=True))
fig = px.line(curves, x="n", y="faithfulness", color="layer", line_dash="kind", log_x=True, markers=True,
              title="Faithfulness of the top-n AtP nodes at one layer, against random nodes")
fig.show()

# %% [markdown]
# Expected output: a few nodes are faithful at every layer: the 10 best at resid_pre_1 give
# faithfulness {{0.91}} (completeness {{0.09}}: the rest of the layer holds little), the 30 best
# {{0.97}}, while 30 random changing nodes give 0.10 at the median (10th–90th percentile
# {{0.03-0.24}}). The column "of which errors" is the catch: the single best node at every layer is
# an error node, and at resid_pre_2 three of the top ten are. A circuit that is faithful *because
# of* its error nodes explains nothing in terms of latents, which is why Marks et al. report how
# much of a circuit's work its error nodes do.
#
# ## 3 · Debiasing the model
#
# SHIFT's other half, the seed's "reducing gender bias": remove the latents that carry the
# profession → pronoun bias from the model itself, and check that the bias shrinks on sentences the
# latents were **not** chosen on, while the rest of the model's behaviour stays.
#
# ### Exercise 9 · `ablation_hooks`
#
# > Difficulty: 🔴🔴⚪⚪⚪ · Importance: 🔵🔵🔵🔵⚪ · about 10 minutes
#
# Return forward hooks `[(hook_name(L), fn), ...]` that zero-ablate the given (layer, latent) pairs
# at every position, the error term kept: at each hook, x → x − Σ_j f_j(x) W_dec[j] over that
# layer's chosen latents, with f computed from the residual stream as it arrives (so an ablation at
# layer 1 is seen by the SAE at layer 2). One hook per layer that has chosen latents.

# %% [exercise]
def ablation_hooks(saes: dict, latents: list[tuple[int, int]]) -> list:
    """Forward hooks that zero-ablate each (layer, latent) at every position, keeping the SAE error."""
    # BEGIN SOLUTION
    by_layer: dict[int, list[int]] = {}
    for L, j in latents:
        by_layer.setdefault(int(L), []).append(int(j))
    hooks = []
    for L, chosen in sorted(by_layer.items()):
        idx, sae = torch.tensor(chosen), saes[L]

        def fn(x, hook, idx=idx, sae=sae):
            return x - sae.encode(x)[..., idx] @ sae.W_dec[idx]
        hooks.append((hook_name(L), fn))
    return hooks
    # END SOLUTION

# %% [hint]
# Group the latents by layer; each layer's hook encodes the arriving residual stream, takes the
# chosen latents' activations, and subtracts their decoder contributions. Nothing else changes: the
# SAE's error and the other latents stay as they are.

# %% [hint]
# `x - sae.encode(x)[..., idx] @ sae.W_dec[idx]`. Not `sae.decode(...)`, which adds `b_dec`; and not
# the reconstruction alone, which drops the error term. Bind `idx` and `sae` as default arguments
# in a loop (`def fn(x, hook, idx=idx, sae=sae)`), or every hook sees the last layer's.

# %% [check]
tests.test_ablation_hooks(ablation_hooks)

# %% [markdown]
# The latents to ablate: rank every (layer, latent) of resid_pre_1..3 by its AtP effect summed over
# the selection prompts (most negative first: those whose patch from female- to male-coded lowers
# the log-odds most), take the top k, and measure the **gap left**: the gap between female- and
# male-coded prompts on the *evaluation* wordings with the latents ablated, over the gap without.
# The control is 20 draws of k random latents among those that change on the selection prompts.

# %%
score = torch.zeros(len(LAYERS), saes[1].W_dec.shape[0])
for cl, co in pairs_sel:
    e = atp_effects(model, saes, cl, co, she_he)
    score += torch.stack([e[L][0].sum((0, 1)) for L in LAYERS])
ranked = [(LAYERS[i // score.shape[1]], i % score.shape[1]) for i in score.flatten().argsort().tolist()]
pool_changed = [(LAYERS[i // score.shape[1]], i % score.shape[1]) for i in (score.flatten() != 0).nonzero().flatten().tolist()]


def eval_gap(hooks, pairs=pairs_eval) -> float:
    """The mean over wordings of (mean log-odds on female-coded) - (mean on male-coded), hooks applied."""
    gaps = []
    for cl, co in pairs:
        m = she_he(model.run_with_hooks(torch.cat([cl, co]), fwd_hooks=hooks))
        gaps.append(float(m[:len(cl)].mean() - m[len(cl):].mean()))
    return float(np.mean(gaps))


def random_gaps_left(k: int, draws: int, rng) -> np.ndarray:
    """The gap left with `draws` sets of k random changing latents ablated, all draws in one batch
    (each copy of the prompts has its own latents zeroed, as ablation_hooks does)."""
    masks = torch.zeros(draws, len(LAYERS), saes[1].W_dec.shape[0], dtype=torch.bool)
    for r in range(draws):
        for i in rng.choice(len(pool_changed), k, replace=False):
            L, j = pool_changed[i]
            masks[r, LAYERS.index(L), j] = True
    gaps = np.zeros(draws)
    for cl, co in pairs_eval:
        toks = torch.cat([cl, co])

        def hook_for(li, size=len(toks)):
            def fn(x, hook):
                sae = saes[LAYERS[li]]
                return x - (sae.encode(x) * masks[:, li].repeat_interleave(size, 0)[:, None, :]) @ sae.W_dec
            return fn

        m = she_he(model.run_with_hooks(toks.repeat(draws, 1), fwd_hooks=[(hook_name(L), hook_for(i)) for i, L in enumerate(LAYERS)]))
        m = m.view(draws, len(toks))
        gaps += (m[:, :len(cl)].mean(1) - m[:, len(cl):].mean(1)).numpy()
    return gaps / len(pairs_eval) / gap0


gap0 = eval_gap([])
rng = np.random.default_rng(2)
gap_rows, dist = [], []
for k in tqdm((1, 5, 10, 20), desc="gap left"):
    left = eval_gap(ablation_hooks(saes, ranked[:k])) / gap0
    rand = random_gaps_left(k, 20, rng)
    gap_rows.append((k, f"{left:.2f}", f"{np.percentile(rand, 50):.2f}", f"{np.percentile(rand, 5):.2f}-{np.percentile(rand, 95):.2f}"))
    dist += [dict(k=k, gap_left=float(v), kind="random k") for v in rand] + [dict(k=k, gap_left=left, kind="AtP top k")]
print(f"{len(pool_changed)} latents change between the two kinds of prompt; eval gap without ablation {gap0:.2f} nats")
print(tabulate(gap_rows, headers=["k", "AtP top k: gap left", "random k: median", "random: 5th-95th"], disable_numparse=True))
fig = px.strip(dist, x="k", y="gap_left", color="kind", title="Share of the bias left on the evaluation wordings")
fig.show()
print("top 10:", ", ".join(f"L{L} #{j}" for L, j in ranked[:10]))

# %% [markdown]
# Expected output: the evaluation gap is {{3.56}} nats. Ablating the top 10 AtP latents leaves
# {{0.81}} of it and the top 20 {{0.67}}, while 20 draws of 20 random latents leave {{0.99}}
# (median; 5th–95th percentile {{0.90-1.08}}). AtP finds latents that carry the bias, and the
# removal transfers to wordings they were not chosen on, but only in part: the error nodes hold
# half or more of the effect (section 2), and no set of latents removes what the SAEs do not
# represent.
#
# **Side effects.** A debiasing that breaks the model is no debiasing. The loss on 16 held-out
# corpus documents, and the top-1 accuracy of two unrelated behaviours (landmark → city, member →
# category; 50 held-out prompts each), with the top 20 ablated, against 20 draws of 20 random
# latents among those that change:

# %%
from utils.world.prompts import make_prompts  # noqa: E402

corpus = labelled_corpus(100)
corpus_tokens, corpus_mask = corpus.tokens[:16], corpus.mask[:16, 1:]


def corpus_loss(hooks) -> float:
    per_token = model.run_with_hooks(corpus_tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
    return float((per_token * corpus_mask).sum() / corpus_mask.sum())


def prompt_batch(prompts):
    """Right-padded token ids, the last real position of each prompt, and the answer ids."""
    ids = [model.tokenizer.convert_tokens_to_ids(list(p.tokens)) for p in prompts]
    toks = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, row in enumerate(ids):
        toks[i, :len(row)] = torch.tensor(row)
    answers = torch.tensor(model.tokenizer.convert_tokens_to_ids([p.answer for p in prompts]))
    return toks, torch.tensor([len(r) - 1 for r in ids]), answers


behaviours = {kind: prompt_batch(make_prompts(kind, n=50)) for kind in ("p2_landmark_city", "p11_category")}


def top1(hooks, batch) -> float:
    toks, last, answers = batch
    logits = model.run_with_hooks(toks, fwd_hooks=hooks)
    return float((logits[torch.arange(len(toks)), last].argmax(-1) == answers).float().mean())


def side_effects(hooks) -> tuple[float, ...]:
    return (corpus_loss(hooks), *(top1(hooks, b) for b in behaviours.values()))


base, top20 = side_effects([]), side_effects(ablation_hooks(saes, ranked[:20]))
rng = np.random.default_rng(3)
random20 = np.array([side_effects(ablation_hooks(saes, [pool_changed[i] for i in rng.choice(len(pool_changed), 20, replace=False)]))
                     for _ in tqdm(range(20), desc="random 20")])
side_rows = [("none", *(f"{v:.3f}" for v in base)), ("AtP top 20", *(f"{v:.3f}" for v in top20)),
             ("random 20: median", *(f"{v:.3f}" for v in np.median(random20, 0))),
             ("random 20: 10th-90th", *(f"{a:.3f}-{b:.3f}" for a, b in zip(*np.percentile(random20, [10, 90], axis=0))))]
print(tabulate(side_rows, headers=["ablated", "held-out loss", *behaviours], disable_numparse=True))

# %% [markdown]
# Expected output: held-out loss {{2.556}} without ablation and {{2.612}} with the top 20 ablated,
# at the upper end of the spread of 20 random latents (median {{2.577}}, 10th–90th percentile
# {{2.547-2.617}}); landmark → city keeps its {{0.520}} and member → category loses one prompt of 50
# ({{0.900}}, from 0.920), where one random draw in ten costs categories down to {{0.776}} or below.
# Removing the bias latents costs the rest of the model a little more loss than a typical set of
# random latents, about 0.06 nats, and almost nothing on these two behaviours: cheap, not free.
#
# ### Exercise 10 (capstone) · `debias_latents`
#
# > Difficulty: 🔴🔴🔴⚪⚪ · Importance: 🔵🔵🔵🔵🔵 · open-ended
#
# Choose at most 20 (layer, latent) pairs of resid_pre_1..3 to ablate. The check measures, with
# your latents ablated by the reference `ablation_hooks`, the gap left on the **evaluation**
# wordings (which you may not use to choose them: rank on `pairs_sel` only) and the held-out corpus
# loss on the same 16 documents. It passes if the gap left is at most 0.80 (20 random latents leave
# about 0.9 or more) and the loss rises by less than 0.08 nats (about the 90th percentile of 20
# random latents above). Ideas: ranking by AtP in both directions (male-coded as clean too),
# integrated gradients instead of AtP, one layer only, or pruning latents whose ablation also moves
# the male-coded prompts' log-odds the wrong way.

# %% [exercise]
def debias_latents(model, saes: dict, pairs_sel: list[tuple[Tensor, Tensor]]) -> list[tuple[int, int]]:
    """At most 20 (layer, latent) pairs whose ablation removes the profession -> pronoun bias, chosen
    from the selection pairs `pairs_sel` only."""
    # BEGIN SOLUTION
    both_ways = torch.zeros(len(LAYERS), saes[1].W_dec.shape[0])
    for cl, co in pairs_sel:
        forward, backward = atp_effects(model, saes, cl, co, she_he), atp_effects(model, saes, co, cl, she_he)
        both_ways += torch.stack([forward[L][0].sum((0, 1)) - backward[L][0].sum((0, 1)) for L in LAYERS])
    order = both_ways[0].argsort()[:20].tolist()  # layer 1 only: the profession is still at its own token
    return [(1, j) for j in order]
    # END SOLUTION

# %% [hint]
# The summed AtP score above is a good start. AtP with the female-coded prompt as clean sees the
# female-coded latents best; swapping clean and corrupted finds the male-coded ones. Latents at
# later layers partly re-read what earlier ones wrote, so spreading 20 latents over three layers
# can remove the same signal twice.

# %% [hint]
# Try: for each selection wording, `atp_effects(..., clean, corrupt)` and
# `atp_effects(..., corrupt, clean)`; score each latent by the first minus the second (both summed
# over prompts and positions); keep the 20 most negative at layer 1, and measure the gap left on
# `pairs_sel` before you submit.

# %% [check]
tests.test_debias_latents(debias_latents)

# %%
mine = debias_latents(model, saes, pairs_sel)
print(f"your {len(mine)} latents: gap left on the evaluation wordings {eval_gap(ablation_hooks(saes, mine)) / gap0:.2f}, "
      f"held-out loss {corpus_loss(ablation_hooks(saes, mine)):.3f}")

# %% [markdown]
# Expected output (the solution's 20 layer-1 latents): gap left {{0.60}}, held-out loss {{2.583}},
# less than the top 20 of all three layers cost.
#
# ## Summary
#
# - **Probe SHIFT fails on this world**, measured: the ambiguous probe's worst group is 0.00;
#   ablating the latents the labels judge spurious lifts it to 0.17 for the same probe and leaves it
#   at 0.00 once retrained, no better than random latents or token deletion, while an oracle probe
#   reaches 0.93. Ablating token-level latents on the embeddings (Tim Hua's baseline) does a little
#   better (0.25). The person stays readable after the ablation and from the SAE's error alone, so
#   no small set of latents at the probe's layer could remove it. The labels and the offline
#   autointerp judge agree only a little beyond chance on which latents are spurious (κ 0.22).
# - **AtP is accurate here**: Spearman 0.998 against exact patching, and integrated gradients are
#   complete to within 1%. But the error nodes carry about half or more of the profession → pronoun
#   effect at every layer, and the best node of every layer is an error node.
# - **Debiasing the model with latents works partly**: the top 20 AtP latents leave 0.67 of the bias
#   on unseen wordings (20 random latents: 0.99), the capstone's 20 layer-1 latents 0.60, for a loss
#   increase of a few hundredths of a nat, about what 20 random latents cost.
#
# What this world does not give, and why: a spurious attribute held by a few latents (the person is
# written into every token and into the SAE error), which probe SHIFT needs to lift a worst group
# from ≤ 0.3 to ≥ 0.7 with ≤ 20 latents and beat token deletion; and SAEs that
# reconstruct the profession's gender, which a complete debiasing by latents needs. Both are
# requirements for a future world (see the design notes on chapter 08).
