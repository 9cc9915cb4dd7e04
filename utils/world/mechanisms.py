"""Mechanism measurements of course world v2 (issue 11's targets for chapters 04 and 06).

    python -m utils.world.mechanisms --run RUN [--dicts DIR]

Chapter 06 (IOI): per head, the mean attention from the final position to the indirect object's
name and to the repeated (subject's) name, on held-out IOI prompts. Target: a head in layers 1+
averaging >= 0.4 on the IO name.

Chapter 04 (two-hop "state"): for every state, a supernode of at most 8 transcoder latents,
chosen on prompts about the state's FITTING cities (the ones two-hop training text uses) as the
latents that fire for every one of the state's cities more than for any other city, at one
position (the city's last token, or the final token). It is then tested with circuit_tracer
interventions on prompts about the HELD-OUT city (`facts.TWO_HOP_UNSEEN_CITIES`, never in a
two-hop sentence in training):
- zero ablation: P(correct capital) must fall by >= 50% for >= 80% of cities;
- swap: the city's state supernode zeroed and another state's set to its mean natural activation;
  that state's capital must be top-1 for >= 80% of city x state pairs.
Both positions are reported, which says where the state is represented.

Beside the target, for information: the same ablation and swap with latents chosen per PAIR of
prompts that differ only in the city (what chapter 04 shows on one prompt pair).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..interventions import next_token_probs
from . import facts as F
from .bars import _ids
from .corpus import CorpusGenerator
from .prompts import Prompt, make_prompts

SUPERNODE_SIZE = 8
POSITIONS = ("city", "final")


# ---------------------------------------------------------------------------------------
# Chapter 06: IOI heads
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def ioi_head_attention(model, prompts: list[Prompt]) -> torch.Tensor:
    """Mean attention from the final position to the IO name and to the subject's name.

    Returns shape (n_layers, n_heads, 2): [..., 0] to the IO name's tokens, [..., 1] to the
    subject's (repeated) name's tokens, summed over the name's occurrences in the prompt."""
    if not prompts:
        raise ValueError("no IOI prompts given")
    total = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, 2)
    for p in prompts:
        if p.wrong is None:
            raise ValueError("an IOI prompt needs its subject's name in `wrong`")
        io = [i for i, t in enumerate(p.tokens) if t.strip() == p.answer.strip()]
        s = [i for i, t in enumerate(p.tokens) if t.strip() == p.wrong.strip()]
        if not io or not s:
            raise ValueError(f"prompt {p.text!r} does not contain both names {p.answer!r} and {p.wrong!r}")
        tokens = torch.tensor([_ids(model, p.tokens)], device=model.cfg.device)
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        for layer in range(model.cfg.n_layers):
            last = cache[f"blocks.{layer}.attn.hook_pattern"][0, :, -1].cpu()  # (n_heads, n_pos)
            total[layer, :, 0] += last[:, io].sum(-1)
            total[layer, :, 1] += last[:, s].sum(-1)
    return total / len(prompts)


def best_io_head(attention: torch.Tensor, min_layer: int = 1) -> tuple[int, int, float]:
    """(layer, head, mean attention to IO) of the head in layers >= min_layer that attends most to IO."""
    sub = attention[min_layer:, :, 0]
    flat = int(sub.argmax())
    layer, head = divmod(flat, sub.shape[1])
    return layer + min_layer, head, float(sub[layer, head])


# ---------------------------------------------------------------------------------------
# Chapter 04: the state supernode
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CityPrompt:
    prompt: Prompt
    city: str
    state: str
    city_pos: int  # index in prompt.tokens of the city's last token


def two_hop_prompts(cities, per_city: int = 6, seed: int = 4321, split: str = "heldout") -> list[CityPrompt]:
    """Held-out-frame two-hop prompts about each city (validation frames, or the test frames with
    split="test"), with the position of the city's last token."""
    gen = CorpusGenerator(seed=seed, split=split, heldout_frame_rate=1.0)
    out = []
    for city in cities:
        seen = set()
        for _ in range(40 * per_city):
            sent = gen.sentence("two_hop", lead_space=False, probe_only=True, city=city)
            cut = next(i for i, t in enumerate(sent) if "answer" in t.labels)
            city_pos = [i for i, t in enumerate(sent[:cut]) if f"city:{city}" in t.labels]
            tokens = ("<|bos|>", *(t.text for t in sent[:cut]))
            if not city_pos or tokens in seen:
                continue
            seen.add(tokens)
            out.append(CityPrompt(Prompt(tokens, sent[cut].text), city, F.CITY_TO_STATE[city], city_pos[-1] + 1))
            if len(seen) == per_city:
                break
    return out


def _position(cp: CityPrompt, where: str) -> int:
    return cp.city_pos if where == "city" else len(cp.prompt.tokens) - 1


def latent_activations(rm, model, prompts: list[CityPrompt], where: str) -> torch.Tensor:
    """Transcoder activations at the chosen position, shape (n_prompts, n_layers * d_transcoder)."""
    rows = []
    for cp in prompts:
        tokens = torch.tensor(_ids(model, cp.prompt.tokens))
        _, acts = rm.get_activations(tokens)
        rows.append(acts[:, _position(cp, where)].reshape(-1).float())
    return torch.stack(rows)


def select_supernodes(acts: torch.Tensor, states: list[str], cities: list[str],
                      size: int = SUPERNODE_SIZE) -> dict[str, list[int]]:
    """For each state, the <= `size` flat latent indices that fire for EVERY one of its cities more
    than for any other state's city: score = (smallest per-city mean over the state's cities) -
    (largest per-city mean over the other cities), positive scores only.

    A plain "state's prompts minus the rest" difference picks layer-0 latents of the city tokens
    themselves (run 6: all 8 of them), which never fire on a held-out city."""
    by_city = {}
    for city in sorted(set(cities)):
        mask = torch.tensor([c == city for c in cities])
        by_city[city] = acts[mask].mean(0)
    state_of = {}
    for city, state in zip(cities, states):
        if state_of.setdefault(city, state) != state:
            raise ValueError(f"city {city!r} is given two states")
    if len(set(states)) < 2:
        raise ValueError("supernodes need prompts of at least two states")
    out = {}
    for state in sorted(set(states)):
        own = torch.stack([m for c, m in by_city.items() if state_of[c] == state])
        rest = torch.stack([m for c, m in by_city.items() if state_of[c] != state])
        score = own.min(0).values - rest.max(0).values
        top = score.topk(min(size, len(score)))
        out[state] = [int(i) for v, i in zip(top.values, top.indices) if v > 0]
    return out


def natural_values(acts: torch.Tensor, states: list[str], supernodes: dict[str, list[int]]) -> dict[str, list[float]]:
    """Mean activation of each supernode latent on its own state's prompts."""
    return {state: [float(acts[[s == state for s in states], i].mean()) for i in idx]
            for state, idx in supernodes.items()}


def _answer_probs(rm, model, cp: CityPrompt, interventions: list) -> torch.Tensor:
    return next_token_probs(rm, _ids(model, cp.prompt.tokens), interventions)


def _interventions(cp: CityPrompt, where: str, d_transcoder: int, flat: list[int], values) -> list:
    pos = _position(cp, where)
    return [(i // d_transcoder, pos, i % d_transcoder, float(v)) for i, v in zip(flat, values)]


def state_supernode_effects(rm, model, fit: list[CityPrompt], test: list[CityPrompt], where: str,
                            size: int = SUPERNODE_SIZE) -> dict:
    """Supernodes chosen on `fit`, zero-ablated and swapped on `test` (see the module docstring)."""
    acts = latent_activations(rm, model, fit, where)
    d_tc = acts.shape[1] // model.cfg.n_layers
    states = [cp.state for cp in fit]
    nodes = select_supernodes(acts, states, [cp.city for cp in fit], size)
    values = natural_values(acts, states, nodes)
    capital_id = {s: _ids(model, [" " + c])[0] for s, c in F.STATE_TO_CAPITAL.items()}
    drops: dict[str, list[float]] = {}
    base_top1, base_p = [], []
    swaps: dict[tuple[str, str], list[bool]] = {}
    for cp in tqdm(test, desc=f"state supernode at the {where} position", leave=False):
        base = _answer_probs(rm, model, cp, [])
        own = _interventions(cp, where, d_tc, nodes[cp.state], [0.0] * len(nodes[cp.state]))
        ablated = _answer_probs(rm, model, cp, own)
        p0, p1 = base[capital_id[cp.state]].item(), ablated[capital_id[cp.state]].item()
        base_top1.append(int(base.argmax()) == capital_id[cp.state])
        base_p.append(p0)
        drops.setdefault(cp.city, []).append(1 - p1 / p0 if p0 > 0 else 0.0)
        for other in nodes:
            if other == cp.state:
                continue
            new = _interventions(cp, where, d_tc, nodes[other], values[other])
            probs = _answer_probs(rm, model, cp, own + new)
            swaps.setdefault((cp.city, other), []).append(int(probs.argmax()) == capital_id[other])
    city_drop = {c: sum(v) / len(v) for c, v in drops.items()}
    pair_flip = {k: sum(v) / len(v) for k, v in swaps.items()}
    return {
        "where": where,
        "supernode_sizes": {s: len(v) for s, v in nodes.items()},
        "supernodes": {s: [(i // d_tc, i % d_tc) for i in v] for s, v in nodes.items()},
        # dense transcoders make every supernode meaningless (run 8 with 300k-token transcoders:
        # 664-983 active latents at one position over 4 layers; with 1.5M tokens, 48-78)
        "active_latents_per_position": float((acts > 0).sum(1).float().mean()),
        "base_top1": sum(base_top1) / len(base_top1),  # a swap can only flip what the model solves
        "base_p_capital": sum(base_p) / len(base_p),
        "city_drop": city_drop,
        "ablation_cities_ge_50pct": sum(d >= 0.5 for d in city_drop.values()) / len(city_drop),
        "swap_flip_rate": sum(pair_flip.values()) / len(pair_flip),
        "swap_pairs": len(pair_flip),
    }


def with_city(cp: CityPrompt, city: str) -> CityPrompt:
    """The same prompt about another city (every city is one token, written with its space)."""
    tokens = list(cp.prompt.tokens)
    old = tokens[cp.city_pos]
    tokens[cp.city_pos] = old[: len(old) - len(old.lstrip())] + city
    state = F.CITY_TO_STATE[city]
    return CityPrompt(Prompt(tuple(tokens), " " + F.STATE_TO_CAPITAL[state]), city, state, cp.city_pos)


def contrast_latents(acts: torch.Tensor, other: torch.Tensor, size: int = SUPERNODE_SIZE) -> tuple[list[int], list[int]]:
    """(latents more active on `acts` than on `other`, latents more active on `other`): the <= `size`
    largest positive differences each way, flat indices, largest first."""
    diff = acts - other
    own, new = diff.topk(size), (-diff).topk(size)
    return ([int(i) for v, i in zip(own.values, own.indices) if v > 0],
            [int(i) for v, i in zip(new.values, new.indices) if v > 0])


def pair_swap_effects(rm, model, test: list[CityPrompt], size: int = SUPERNODE_SIZE) -> dict:
    """Information beside the target: the latents are chosen per PAIR of prompts that differ only in
    the city (the one prompt about another state's held-out city), at the final position, as the
    largest activation differences each way. Zeroing the prompt's side measures the drop; zeroing
    it and setting the other side to its activations on the other prompt measures the swap."""
    capital_id = {s: _ids(model, [" " + c])[0] for s, c in F.STATE_TO_CAPITAL.items()}
    others = {F.CITY_TO_STATE[c]: c for c in F.TWO_HOP_UNSEEN_CITIES}
    drops, flips = [], []
    for cp in tqdm(test, desc="pairwise swaps at the final position", leave=False):
        acts = latent_activations(rm, model, [cp], "final")[0]
        d_tc = acts.shape[0] // model.cfg.n_layers
        p0 = _answer_probs(rm, model, cp, [])[capital_id[cp.state]].item()
        for state, city in others.items():
            if state == cp.state:
                continue
            other = with_city(cp, city)
            other_acts = latent_activations(rm, model, [other], "final")[0]
            own, new = contrast_latents(acts, other_acts, size)
            zero = _interventions(cp, "final", d_tc, own, [0.0] * len(own))
            p1 = _answer_probs(rm, model, cp, zero)[capital_id[cp.state]].item()
            drops.append(1 - p1 / p0 if p0 > 0 else 0.0)
            swapped = _answer_probs(rm, model, cp, zero + _interventions(cp, "final", d_tc, new, other_acts[new].tolist()))
            flips.append(int(swapped.argmax()) == capital_id[state])
    return {"pairs": len(flips), "ablation_pairs_ge_50pct": sum(d >= 0.5 for d in drops) / len(drops),
            "swap_flip_rate": sum(flips) / len(flips)}


def measure(run: Path, dicts: Path | None = None, per_city: int = 6, n_ioi: int = 200, split: str = "heldout") -> dict:
    from .dictionaries import load_transcoders, replacement_model
    from .train import load_model

    model = load_model(run)
    attention = ioi_head_attention(model, make_prompts("p7_ioi", n=n_ioi, split=split))
    layer, head, io = best_io_head(attention)
    out = {"ioi_best_head": f"L{layer}H{head}", "ioi_best_head_io_attention": io,
           "ioi_attention": attention.tolist()}
    dicts = dicts or run / "dictionaries"
    rm = replacement_model(model, load_transcoders(model.cfg.n_layers, folder=dicts))
    fit_cities = [c for c in F.CITY_TO_STATE if c not in F.TWO_HOP_UNSEEN_CITIES]
    fit = two_hop_prompts(fit_cities, per_city=per_city)
    test = two_hop_prompts(F.TWO_HOP_UNSEEN_CITIES, per_city=per_city, seed=8765, split=split)
    out["state"] = {where: state_supernode_effects(rm, model, fit, test, where) for where in POSITIONS}
    pair_test = two_hop_prompts(F.TWO_HOP_UNSEEN_CITIES, per_city=2, seed=8765, split=split)
    out["pairwise"] = pair_swap_effects(rm, model, pair_test)
    return out


def format_report(result: dict) -> str:
    lines = [f"IOI: best head in layers 1+ is {result['ioi_best_head']}, mean attention to the IO name "
             f"{result['ioi_best_head_io_attention']:.3f} (target >= 0.4)"]
    for where, r in result["state"].items():
        active = r.get("active_latents_per_position")  # absent from results saved before it was measured
        of = f" of the {active:.0f} latents active there on average" if active is not None else " latents"
        lines.append(f"state supernode at the {where} position (<= {SUPERNODE_SIZE}{of}; the replacement model "
                     f"answers {r['base_top1']:.0%} of the held-out-city prompts, mean P(capital) {r['base_p_capital']:.2f}): zero ablation "
                     f"lowers P(capital) by >= 50% for {r['ablation_cities_ge_50pct']:.0%} of held-out cities "
                     f"(target >= 80%); swap makes the other state's capital top-1 for "
                     f"{r['swap_flip_rate']:.1%} of {r['swap_pairs']} city x state pairs (target >= 80%)")
    if "pairwise" in result:
        r = result["pairwise"]
        lines.append(f"info, latents chosen per pair of prompts differing only in the city (<= {SUPERNODE_SIZE} each way, "
                     f"final position): zeroing lowers P(capital) by >= 50% for {r['ablation_pairs_ge_50pct']:.0%} and the "
                     f"swap makes the other capital top-1 for {r['swap_flip_rate']:.0%} of {r['pairs']} pairs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.world.mechanisms", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--dicts", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the full result here")
    args = p.parse_args(argv)
    result = measure(args.run, args.dicts)
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
