"""P12 for SHIFT (chapter 08): bios with an intended and a spurious attribute, and the probe figures.

A bio names a profession and says what its holder does. Intended attribute: the profession's
FIELD (medicine / law). Spurious attribute: the narrative PERSON (first "I am a nurse" / third
"Mary is a nurse"), which every sentence shows twice, through its pronoun and through verb
agreement ("I work" / "she works"), so deleting the pronouns leaves it readable.

- ambiguous set: person and field agree (first person <-> medicine, third person <-> law), the
  setting in which a probe for the field can learn the person instead;
- balanced set: all four (person, field) groups, equally often.

A probe is logistic regression on the residual stream averaged over a bio's tokens. Worst-group
accuracy is its accuracy on the balanced set's worst (person, field) group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import facts as F
from .bars import _ids
from .corpus import BOS, CorpusGenerator, Sentence

GROUPS = tuple((person, field) for person in F.BIO_PERSONS for field in F.BIO_FIELDS)
AMBIGUOUS = (("first", "medicine"), ("third", "law"))
PRONOUNS = (" I", "I", " my", "My", " me", " he", "He", " she", "She", " his", "His", " her", "Her", " him")


@dataclass(frozen=True)
class Bio:
    tokens: tuple[str, ...]  # starts with BOS
    person: str
    field: str


def make_bios(n: int, groups=GROUPS, split: str = "train", seed: int = 0, sentences: int = 4) -> list[Bio]:
    """`n` bios spread evenly over `groups`, each an introduction and `sentences - 1` more,
    from the train frames (split "train") or the held-out bio frames (split "heldout")."""
    gen = CorpusGenerator(seed=seed, split=split, heldout_frame_rate=1.0, unseen_word_rate=0.0)
    out = []
    for i in range(n):
        person, field = groups[i % len(groups)]
        say = gen.bio_source(person, field)
        body: Sentence = []
        for k in range(sentences):
            body += say(k > 0)
        out.append(Bio((BOS, *(t.text for t in body)), person, field))
    return out


def delete_tokens(bio: Bio, tokens=PRONOUNS) -> Bio:
    """The bio without the given tokens (token deletion, the baseline a published critique of SHIFT
    found as good as SHIFT on Bias in Bios)."""
    return Bio(tuple(t for t in bio.tokens if t not in tokens), bio.person, bio.field)


@torch.no_grad()
def activations(model, bios: list[Bio], hook: str) -> list[torch.Tensor]:
    """Each bio's activations at `hook` over its tokens (BOS excluded), shape (len, d) each."""
    out = []
    for bio in bios:
        ids = torch.tensor([_ids(model, bio.tokens)])
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name == hook)
        out.append(cache[hook][0, 1:])
    return out


@torch.no_grad()
def pool(acts: list[torch.Tensor], edit=None) -> torch.Tensor:
    """Mean over each bio's tokens, shape (n, d); `edit(act)` may change the activations first
    (e.g. ablate SAE latents: the change is made at the hook, and read there, not propagated)."""
    return torch.stack([(edit(a) if edit else a).mean(0) for a in acts])


def pooled(model, bios: list[Bio], hook: str, edit=None) -> torch.Tensor:
    return pool(activations(model, bios, hook), edit)


def train_probe(x: torch.Tensor, y: torch.Tensor, epochs: int = 300, weight_decay: float = 1e-3, seed: int = 0):
    """Logistic regression (full-batch Adam on standardised inputs); returns predict(x) -> 0/1."""
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05, weight_decay=weight_decay)
    xs, yf = (x - mu) / sd, y.float()
    for _ in range(epochs):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, yf)
        opt.zero_grad()
        loss.backward()
        opt.step()
    w, b = w.detach(), b.detach()
    return lambda z: (((z - mu) / sd) @ w + b > 0).long()


def field_labels(bios: list[Bio]) -> torch.Tensor:
    return torch.tensor([int(b.field == "law") for b in bios])


def group_accuracy(predict, x: torch.Tensor, bios: list[Bio]) -> dict:
    """Field accuracy overall, per (person, field) group, the worst group, and how often the
    prediction follows the person instead (the spurious attribute)."""
    pred = predict(x)
    field = field_labels(bios)
    person = torch.tensor([int(b.person == "third") for b in bios])  # third <-> law in the ambiguous set
    groups = {}
    for p, f in GROUPS:
        idx = [i for i, b in enumerate(bios) if (b.person, b.field) == (p, f)]
        if idx:
            groups[f"{p}/{f}"] = float((pred[idx] == field[idx]).float().mean())
    return {"field_accuracy": float((pred == field).float().mean()),
            "person_accuracy": float((pred == person).float().mean()),
            "worst_group": min(groups.values()), "groups": groups}


def probe_figures(model, layer: int = 2, n_train: int = 400, n_test: int = 400) -> dict:
    """Issue 26's P12 targets without dictionaries: the probe trained on the ambiguous set (target
    worst group <= 0.3), the oracle trained on balanced data (target >= 0.9), and token deletion
    (pronouns removed, probe retrained on the ambiguous set)."""
    hook = f"blocks.{layer}.hook_resid_pre"
    amb = make_bios(n_train, AMBIGUOUS, seed=1)
    bal_train = make_bios(n_train, GROUPS, seed=2)
    test = make_bios(n_test, GROUPS, split="heldout", seed=3)
    x_amb, x_bal, x_test = (pooled(model, b, hook) for b in (amb, bal_train, test))
    probe = train_probe(x_amb, field_labels(amb))
    oracle = train_probe(x_bal, field_labels(bal_train))
    amb_del, test_del = [delete_tokens(b) for b in amb], [delete_tokens(b) for b in test]
    deleted = train_probe(pooled(model, amb_del, hook), field_labels(amb_del))
    return {"hook": hook, "n_train": n_train, "n_test": n_test,
            "ambiguous_probe": group_accuracy(probe, x_test, test),
            "oracle_probe": group_accuracy(oracle, x_test, test),
            "token_deletion": group_accuracy(deleted, pooled(model, test_del, hook), test_del)}


def format_report(result: dict) -> str:
    from tabulate import tabulate

    names = ("ambiguous_probe", "oracle_probe", "token_deletion", "shift", "shift_retrained")
    rows = [[name, f"{result[name]['field_accuracy']:.2f}", f"{result[name]['person_accuracy']:.2f}",
             f"{result[name]['worst_group']:.2f}"] for name in names if name in result]
    text = (f"P12 bios, probe on the mean of {result['hook']} (held-out bio frames, {result['n_test']} bios):\n"
            + tabulate(rows, headers=["probe", "field acc", "follows person", "worst group"]))
    if "random_retrained_worst_group" in result:
        r = np.array(result["random_retrained_worst_group"])
        text += (f"\nSHIFT ablated {result['k']} judged latents; {len(r)} draws of {result['k']} random latents, "
                 f"retrained: worst group median {np.median(r):.2f} (10th-90th percentile "
                 f"{np.percentile(r, 10):.2f}-{np.percentile(r, 90):.2f})")
    return text

def ablate(sae, latents: list[int]):
    """An edit for `pooled`: subtract the chosen latents' decoder contributions (error term kept)."""
    idx = torch.tensor(latents, dtype=torch.long)

    @torch.no_grad()
    def edit(act):
        return act - sae.encode(act)[:, idx] @ sae.W_dec[idx]
    return edit


def shift_figures(model, sae, layer: int = 2, k: int = 20, n_train: int = 400, n_test: int = 400,
                  n_random: int = 20) -> dict:
    """SHIFT on the pooled-residual probe: ablate the `k` judged latents at the probe's hook and
    re-evaluate the ambiguous probe, then retrain it on the ablated ambiguous set; beside it,
    `n_random` draws of `k` random latents (the distribution of worst-group accuracy)."""
    hook = f"blocks.{layer}.hook_resid_pre"
    amb, bal = make_bios(n_train, AMBIGUOUS, seed=1), make_bios(n_train, GROUPS, seed=2)
    test = make_bios(n_test, GROUPS, split="heldout", seed=3)
    a_amb, a_bal, a_test = (activations(model, b, hook) for b in (amb, bal, test))
    probe = train_probe(pool(a_amb), field_labels(amb))
    with torch.no_grad():
        acts = pool(a_bal, edit=lambda a: sae.encode(a))
    first = torch.tensor([b.person == "first" for b in bal])
    med = torch.tensor([b.field == "medicine" for b in bal])
    person_gap = (acts[first].mean(0) - acts[~first].mean(0)).abs()
    field_gap = (acts[med].mean(0) - acts[~med].mean(0)).abs()
    latents = (person_gap - field_gap).argsort(descending=True)[:k].tolist()
    edit = ablate(sae, latents)
    x_test = pool(a_test, edit)
    retrained = train_probe(pool(a_amb, edit), field_labels(amb))
    rng = np.random.default_rng(0)
    random_worst = []
    for _ in range(n_random):
        e = ablate(sae, rng.choice(sae.W_dec.shape[0], size=k, replace=False).tolist())
        p = train_probe(pool(a_amb, e), field_labels(amb))
        random_worst.append(group_accuracy(p, pool(a_test, e), test)["worst_group"])
    return {"hook": hook, "k": k, "latents": latents,
            "shift": group_accuracy(probe, x_test, test),
            "shift_retrained": group_accuracy(retrained, x_test, test),
            "random_retrained_worst_group": random_worst}
