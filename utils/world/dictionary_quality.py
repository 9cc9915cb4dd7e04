"""Quality of the shipped dictionaries: reconstruction, sparsity, splicing, graphs, concepts.

Measured on held-out labelled text (`concepts.labelled_corpus`), BOS and padding excluded:
- explained variance of the dictionary's output (the MLP output for transcoders);
- L0 (active latents per token) and the fraction of latents that never fire;
- CE loss recovered when the dictionary is spliced in: (L_zero - L_spliced) / (L_zero - L_clean),
  where L_zero zero-ablates the activation the dictionary writes (BOS, which the dictionaries
  were not trained on, keeps its clean activation in both);
- circuit_tracer's replacement and completeness scores on held-out prompts;
- for each key concept, the best latent (by F1) and its precision/recall.
"""

from __future__ import annotations

from dataclasses import dataclass

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
