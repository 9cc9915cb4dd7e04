"""Quality of the shipped dictionaries: reconstruction, sparsity, splicing, graphs, concepts.

Measured on held-out labelled text (`concepts.labelled_corpus`), BOS and padding excluded:
- explained variance of the dictionary's output (the MLP output for transcoders);
- L0 (active latents per token) and the fraction of latents that never fire;
- CE loss recovered when the dictionary is spliced in: (L_zero - L_spliced) / (L_zero - L_clean),
  where L_zero zero-ablates the activation the dictionary writes (BOS, which the dictionaries
  were not trained on, keeps its clean activation in both);
- circuit_tracer's replacement and completeness scores on held-out prompts;
- for each key concept, the best latent (by F1) and its precision/recall.

`dictionary_rows` turns these into the dictionary bars of `python -m utils.world report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .concepts import KEY_CONCEPTS, LabelledCorpus, streamed_concept_scores


def _hooks(dictionary) -> tuple[str, str]:
    meta = dictionary.cfg.metadata
    return meta.hook_name, getattr(meta, "hook_name_out", None) or meta.hook_name


@torch.no_grad()
def reconstruction_stats(model, dictionary, data: LabelledCorpus, batch_size: int = 64) -> dict[str, float]:
    """Explained variance, L0 and dead fraction on the labelled corpus."""
    hook_in, hook_out = _hooks(dictionary)
    resid_sq = 0.0
    l0_sum, n_tok = 0.0, 0
    fired = torch.zeros(dictionary.cfg.d_sae, dtype=torch.bool)
    targets = []
    for i in range(0, len(data.tokens), batch_size):
        tokens, mask = data.tokens[i:i + batch_size], data.mask[i:i + batch_size]
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in (hook_in, hook_out))
        acts = dictionary.encode(cache[hook_in])
        recon = dictionary.decode(acts)
        y = cache[hook_out].flatten(2) if cache[hook_out].ndim == 4 else cache[hook_out]
        recon = recon.flatten(2) if recon.ndim == 4 else recon
        resid_sq += (y - recon)[mask].pow(2).sum().item()
        targets.append(y[mask])
        active = acts[mask] > 0
        l0_sum += active.sum().item()
        n_tok += int(mask.sum())
        fired |= active.any(0)
    y_all = torch.cat(targets)
    total_sq = (y_all - y_all.mean(0)).pow(2).sum().item()
    return {"explained_variance": 1 - resid_sq / total_sq, "l0": l0_sum / n_tok,
            "dead_fraction": 1 - fired.float().mean().item()}


@torch.no_grad()
def ce_loss_recovered(model, dictionary, data: LabelledCorpus, batch_size: int = 64) -> dict[str, float]:
    hook_in, hook_out = _hooks(dictionary)
    stash = {}

    def keep_input(act, hook):
        stash["x"] = act
        return act

    # The dictionaries never saw BOS in training (it is excluded, as usual), so BOS keeps its
    # clean activation in both the spliced and the zero-ablated runs; every other position changes.
    def bos_kept(new, act):
        return torch.where(stash["bos"].view(*stash["bos"].shape, *[1] * (act.ndim - 2)), act, new)

    def splice(act, hook):
        source = stash["x"] if hook_in != hook_out else act  # transcoders read one hook, write another
        return bos_kept(dictionary.decode(dictionary.encode(source)).reshape(act.shape), act)

    def zero(act, hook):
        return bos_kept(torch.zeros_like(act), act)

    setups = {
        "clean": [],
        "spliced": ([(hook_in, keep_input)] if hook_in != hook_out else []) + [(hook_out, splice)],
        "zero": [(hook_out, zero)],
    }
    totals = dict.fromkeys(setups, 0.0)
    n = 0
    for i in range(0, len(data.tokens), batch_size):
        tokens, mask = data.tokens[i:i + batch_size], data.mask[i:i + batch_size]
        target_mask = mask[:, 1:]  # loss of predicting each real token
        stash["bos"] = tokens == model.tokenizer.bos_token_id
        for name, hooks in setups.items():
            per_token = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
            totals[name] += per_token[target_mask].sum().item()
        n += int(target_mask.sum())
    clean, spliced, zero_loss = (totals[k] / n for k in ("clean", "spliced", "zero"))
    return {"ce_clean": clean, "ce_spliced": spliced, "ce_zero": zero_loss,
            "ce_recovered": (zero_loss - spliced) / (zero_loss - clean)}


@dataclass
class DictionaryQuality:
    name: str
    explained_variance: float
    l0: float
    dead_fraction: float
    ce_recovered: float
    ce_clean: float
    ce_spliced: float
    ce_zero: float


def dictionary_quality(model, name: str, dictionary, data: LabelledCorpus) -> DictionaryQuality:
    rec = reconstruction_stats(model, dictionary, data)
    ce = ce_loss_recovered(model, dictionary, data)
    return DictionaryQuality(name, rec["explained_variance"], rec["l0"], rec["dead_fraction"],
                             ce["ce_recovered"], ce["ce_clean"], ce["ce_spliced"], ce["ce_zero"])


def best_concept_latents(model, dictionaries: dict, data: LabelledCorpus, concepts=KEY_CONCEPTS) -> list[dict]:
    """For each concept, the best latent (highest F1) over the given dictionaries."""
    best: dict[str, dict] = {}
    for name, scores in streamed_concept_scores(model, dictionaries, data, progress=False).items():
        for concept in concepts:
            if concept not in scores.concepts:
                continue
            latent, p, r, f1 = scores.best_latent(concept)
            if concept not in best or f1 > best[concept]["f1"]:
                best[concept] = {"concept": concept, "dictionary": name, "latent": latent,
                                 "precision": p, "recall": r, "f1": f1}
    return [best[c] for c in concepts if c in best]


def graph_scores(replacement_model, prompts, max_feature_nodes: int = 2000) -> dict[str, float]:
    """Mean circuit_tracer replacement / completeness scores over prompts."""
    from circuit_tracer import attribute
    from circuit_tracer.graph import compute_graph_scores

    reps, comps = [], []
    for prompt in prompts:
        tokens = torch.tensor(replacement_model.tokenizer.convert_tokens_to_ids(list(prompt.tokens)))
        graph = attribute(tokens, replacement_model, max_n_logits=5, desired_logit_prob=0.9, batch_size=128,
                          max_feature_nodes=max_feature_nodes, verbose=False)
        rep, comp = compute_graph_scores(graph)
        reps.append(rep)
        comps.append(comp)
    return {"replacement": sum(reps) / len(reps), "completeness": sum(comps) / len(comps), "n": len(reps)}


@dataclass
class Row:
    """One dictionary bar: a measured value against its target."""
    metric: str
    value: float
    target: str  # e.g. ">= 0.9"
    why: str
    n: int = 0

    @property
    def passed(self) -> bool:
        op, bound = self.target.split()
        return self.value >= float(bound) if op == ">=" else self.value <= float(bound)


# Bars for every dictionary: spliced in, the model must still do its job (CE recovered), and
# latents must be few per token (readable) yet alive (dead ones are wasted width).
DICT_TARGETS = {"explained_variance": ">= 0.70", "ce_recovered": ">= 0.80", "l0": "<= 40", "dead_fraction": "<= 0.30"}
FAMILY_TARGETS = dict(DICT_TARGETS, explained_variance=">= 0.40", ce_recovered=">= 0.50")  # narrow widths lose more
# CE recovered = (L_zero - L_spliced) / (L_zero - L_clean) divides by what zero-ablating the
# component costs. Where that is under CE_RATIO_NEEDS nats (e.g. attention layers 1 and 3 and
# MLP 2 on held-out text) the ratio is noise, and the bar is on the increase itself: at most
# 0.03 nats, about 1% of the clean loss of 2.5 nats.
CE_RATIO_NEEDS = 0.10
CE_INCREASE_TARGET = "<= 0.03"
CONCEPT_TARGET = ">= 0.50"  # best-latent F1 for the concepts in CORE_CONCEPTS
# goal_family is a bar too: the corpus puts the goal words in shared frames, so one latent can cover them.
CORE_CONCEPTS = ("landmark", "number", "quote_close", "name", "category_name", "p3_repeat", "in_quote", "goal_family")
GRAPH_PROMPT_KINDS = ("p6_two_hop", "p2_landmark_city", "p7_ioi")


def dictionary_rows(model, n_docs: int = 200, *, data=None, folder: Path | None = None, graph_prompts=None,
                    core_concepts=CORE_CONCEPTS, key_concepts=KEY_CONCEPTS) -> list[Row]:
    """The dictionary bars of `model` with the dictionaries in `folder` (default: the shipped ones),
    on held-out labelled text and held-out graph prompts."""
    from .concepts import labelled_corpus
    from .dictionaries import DICT_DIR, available_dictionaries, load_dictionary, replacement_model
    from .prompts import make_prompts

    folder = folder or DICT_DIR
    names = available_dictionaries(folder)
    if not names:
        raise FileNotFoundError(f"No dictionaries in {folder}: run `python -m utils.world train-dicts`.")
    data = data if data is not None else labelled_corpus(n_docs)
    if graph_prompts is None:
        graph_prompts = {kind: make_prompts(kind, n=4) for kind in GRAPH_PROMPT_KINDS}
    rows, dicts = [], {}
    for name in names:
        dictionary = dicts[name] = load_dictionary(name, folder=folder)
        q = dictionary_quality(model, name, dictionary, data)
        targets = FAMILY_TARGETS if "_w" in name else DICT_TARGETS
        why = "feature-splitting family" if "_w" in name else "splice-in fidelity and readability"
        ev_what = "explained variance of MLP out" if name.startswith("transcoder") else "explained variance"
        recovered = Row(f"{name}: CE loss recovered", q.ce_recovered, targets["ce_recovered"], why)
        increase = Row(f"{name}: CE increase spliced (nats, from {q.ce_clean:.2f}; zero ablation "
                       f"+{q.ce_zero - q.ce_clean:.3f})", q.ce_spliced - q.ce_clean, CE_INCREASE_TARGET, why)
        if q.ce_zero - q.ce_clean >= CE_RATIO_NEEDS:
            increase.target, increase.why = ">= -9", "info only"
        else:
            recovered.target, recovered.why = ">= -9", "info only: zero ablation barely hurts, the ratio is noise"
        rows += [Row(f"{name}: {ev_what}", q.explained_variance, targets["explained_variance"], why), recovered, increase,
                 Row(f"{name}: L0", q.l0, targets["l0"], why),
                 Row(f"{name}: dead fraction", q.dead_fraction, targets["dead_fraction"], why)]
    rm = replacement_model(model, {int(n.split("_")[1]): dicts[n] for n in names if n.startswith("transcoder_")})
    for kind, prompts in graph_prompts.items():
        g = graph_scores(rm, prompts)
        rows += [Row(f"graph replacement score ({kind})", g["replacement"], ">= 0.30", "03/04: features explain the output", g["n"]),
                 Row(f"graph completeness score ({kind})", g["completeness"], ">= 0.70", "03/04: small error nodes", g["n"])]
    pool = {n: d for n, d in dicts.items() if (n.startswith("resid_") and "_w" not in n) or n.startswith("transcoder_")}
    for best in best_concept_latents(model, pool, data, key_concepts):
        core = best["concept"] in core_concepts
        rows.append(Row(f"concept {best['concept']}: {best['dictionary']}#{best['latent']} "
                        f"(P={best['precision']:.2f}, R={best['recall']:.2f})", best["f1"],
                        CONCEPT_TARGET if core else ">= 0.0", "ground truth is findable" if core else "info only (F1)"))
    return rows


def format_rows(rows: list[Row]) -> str:
    from tabulate import tabulate

    table = [[r.metric, f"{r.value:.3f}", r.target, "pass" if r.passed else "FAIL", r.n, r.why] for r in rows]
    return tabulate(table, headers=["metric", "value", "target", "", "n", "why it matters"])
