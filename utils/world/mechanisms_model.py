"""Mechanism figures of a v2 model that need no dictionary (issue 26), for chapters 04, 06 and 07.

- Two-hop: WHERE the state is represented. Activation patching: a prompt about a held-out city
  of state X gets, at one layer and one position (the city's token, or the final token), the
  residual stream of the same prompt about a city of state Y; the row is how often the answer
  becomes Y's capital. Beside it, the control a sceptic runs first: can the state be read off
  the city's token embedding alone (nearest state centroid, leave-one-city-out)? If so, the
  "two-hop" answer may be a lookup, not a computation.
- Closers: per layer, the logit lens (final LayerNorm and unembedding applied to the residual
  stream) at the position before a quotation's closer, read two ways: "closer vs plain mark"
  (is a closer ranked above '.' '?' '!') and "which closer" (is the right closer the top of
  the three). Where each reaches its final value says where the decision is made.
"""

from __future__ import annotations

import torch

from . import facts as F
from .bars import _ids
from .mechanisms import CityPrompt, two_hop_prompts, with_city
from .prompts import make_prompts

CLOSERS = ('."', '?"', '!"', ',"')  # ',"' closes a statement quoted before its speaker
PLAIN = (".", "?", "!", ",")


@torch.no_grad()
def state_patching(model, prompts: list[CityPrompt], n_other: int = 3) -> dict:
    """Share of (prompt, other-state city) pairs whose top-1 becomes the other state's capital when
    the residual stream before layer l (`hook_resid_pre`, and the final `hook_resid_post`) is
    patched in from the other city's prompt at the city position or at the final position.
    Also how often the clean prompt is answered right (the patching is only read where it is)."""
    states = sorted(F.STATES)
    n_layers = model.cfg.n_layers
    hooks = [f"blocks.{l}.hook_resid_pre" for l in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
    flips = {where: [0] * len(hooks) for where in ("city", "final")}
    pairs = right = 0
    for i, cp in enumerate(prompts):
        clean_ids = torch.tensor([_ids(model, cp.prompt.tokens)])
        clean_logits = model(clean_ids)[0, -1]
        right += int(clean_logits.argmax()) == _ids(model, [cp.prompt.answer])[0]
        others = [s for s in states if s != cp.state]
        for k in range(n_other):
            state = others[(i * n_other + k) % len(others)]
            city = F.STATES[state]["cities"][0]
            other = with_city(cp, city)
            other_ids = torch.tensor([_ids(model, other.prompt.tokens)])
            _, cache = model.run_with_cache(other_ids, names_filter=lambda name: name in hooks)
            target = _ids(model, [other.prompt.answer])[0]
            pairs += 1
            for where, pos in (("city", cp.city_pos), ("final", len(cp.prompt.tokens) - 1)):
                for h, hook in enumerate(hooks):
                    def patch(act, hook=None, name=hook, pos=pos):
                        act[:, pos] = cache[name][:, pos]
                        return act
                    logits = model.run_with_hooks(clean_ids, fwd_hooks=[(hook, patch)])[0, -1]
                    flips[where][h] += int(logits.argmax()) == target
    labels = [f"resid_pre {l}" for l in range(n_layers)] + [f"resid_post {n_layers - 1}"]
    return {"layers": labels, "pairs": pairs, "clean_top1": right / max(1, len(prompts)),
            **{where: [f / max(1, pairs) for f in counts] for where, counts in flips.items()}}


@torch.no_grad()
def state_from_embedding(model) -> dict:
    """Leave-one-city-out nearest-centroid: is a city's state readable from its token embedding?
    Chance is 1 / number of states."""
    cities = sorted(F.CITY_TO_STATE)
    ids = torch.tensor(_ids(model, [" " + c for c in cities]))
    emb = model.W_E[ids]
    emb = emb / emb.norm(dim=-1, keepdim=True)
    states = [F.CITY_TO_STATE[c] for c in cities]
    correct = 0
    for i in range(len(cities)):
        best, best_sim = None, -2.0
        for s in sorted(set(states)):
            members = [j for j in range(len(cities)) if states[j] == s and j != i]
            if not members:
                continue
            centroid = emb[members].mean(0)
            sim = float(centroid @ emb[i] / centroid.norm())
            if sim > best_sim:
                best, best_sim = s, sim
        correct += best == states[i]
    return {"cities": len(cities), "correct": correct, "accuracy": correct / len(cities),
            "chance": 1 / len(set(states))}


@torch.no_grad()
def closer_stages(model, n: int = 200, split: str = "heldout") -> dict:
    """Per layer, on quote prompts cut before the closer: the share where the three closers
    outrank the three plain marks (top closer logit > top plain logit), and the share where the
    right closer is the top of the three closers (logit lens)."""
    prompts = make_prompts("p8_closer", n=n, split=split)
    closer_ids = _ids(model, CLOSERS)
    plain_ids = _ids(model, PLAIN)
    n_layers = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_post" for l in range(n_layers)]
    vs_plain = [0] * n_layers
    which = [0] * n_layers
    for p in prompts:
        ids = torch.tensor([_ids(model, p.tokens)])
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name in names)
        right = CLOSERS.index(p.answer)
        for l, name in enumerate(names):
            logits = model.unembed(model.ln_final(cache[name][:, -1:]))[0, -1]
            vs_plain[l] += int(logits[closer_ids].max() > logits[plain_ids].max())
            which[l] += int(int(logits[closer_ids].argmax()) == right)
    return {"layers": [f"resid_post {l}" for l in range(n_layers)], "prompts": len(prompts),
            "closer_vs_plain": [v / len(prompts) for v in vs_plain],
            "which_closer": [w / len(prompts) for w in which]}


def measure(model, split: str = "heldout", per_city: int = 2) -> dict:
    prompts = two_hop_prompts(F.TWO_HOP_UNSEEN_CITIES, per_city=per_city, seed=8765, split=split)
    return {"two_hop_patching": state_patching(model, prompts), "state_from_embedding": state_from_embedding(model),
            "closer_stages": closer_stages(model, split=split)}


def format_report(result: dict) -> str:
    from tabulate import tabulate

    p = result["two_hop_patching"]
    lines = [f"two-hop, held-out cities: where the state is (activation patching from a prompt about another "
             f"state's city; {p['pairs']} pairs; clean top-1 {p['clean_top1']:.2f})",
             tabulate([[layer, f"{c:.2f}", f"{f:.2f}"] for layer, c, f in zip(p["layers"], p["city"], p["final"])],
                      headers=["patched at", "city position: flips", "final position: flips"])]
    e = result["state_from_embedding"]
    lines.append(f"control: a city's state from its token embedding alone (nearest centroid, leave one out): "
                 f"{e['correct']}/{e['cities']} (chance {e['chance']:.2f})")
    c = result["closer_stages"]
    lines.append(f"closers ({c['prompts']} prompts), logit lens before the closer:")
    lines.append(tabulate([[layer, f"{a:.2f}", f"{b:.2f}"] for layer, a, b in
                           zip(c["layers"], c["closer_vs_plain"], c["which_closer"])],
                          headers=["layer", "closer above plain mark", "right closer top of the four"]))
    return "\n".join(lines)


@torch.no_grad()
def head_locality(sae, n_heads: int, threshold: float = 0.8) -> dict:
    """For an attention SAE on `hook_z` (heads concatenated): the share of latents whose decoder
    row has at least `threshold` of its squared norm in one head's slice (chapter 06 reads a
    latent's head off its decoder; v1: 1-5% of latents were head-local)."""
    w = sae.W_dec.detach()
    per_head = w.reshape(w.shape[0], n_heads, -1).pow(2).sum(-1)
    share = per_head.max(-1).values / per_head.sum(-1).clamp_min(1e-12)
    return {"latents": w.shape[0], "head_local_share": float((share >= threshold).float().mean()),
            "median_top_head_share": float(share.median()), "threshold": threshold}
