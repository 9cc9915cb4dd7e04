"""Quality report of the course world: does the shipped model show every planted behaviour?

    python -m utils.world report          # table: value, target, pass/fail, why
    python -m utils.world report --json   # the same rows for machines

Exit code 1 if any bar fails. All prompts come from the held-out split (see prompts.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import torch

from .prompts import Prompt, make_prompts, repeated_random_tokens


@dataclass
class Row:
    metric: str
    value: float
    target: str  # e.g. ">= 0.9"
    why: str
    n: int = 0

    @property
    def passed(self) -> bool:
        op, bound = self.target.split()
        return self.value >= float(bound) if op == ">=" else self.value <= float(bound)


def _ids(model, tokens) -> list[int]:
    return model.tokenizer.convert_tokens_to_ids(list(tokens))


@torch.no_grad()
def last_logits(model, prompts: list[Prompt], batch_size: int = 64) -> torch.Tensor:
    """Logits at the last position of every prompt, shape (n_prompts, d_vocab)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = [_ids(model, p.tokens) for p in prompts[i:i + batch_size]]
        width = max(map(len, chunk))
        pad = model.tokenizer.pad_token_id
        tokens = torch.tensor([ids + [pad] * (width - len(ids)) for ids in chunk], device=model.cfg.device)
        logits = model(tokens)  # right padding never affects earlier positions (causal)
        last = torch.tensor([len(ids) - 1 for ids in chunk], device=tokens.device)
        out.append(logits[torch.arange(len(chunk)), last])
    return torch.cat(out)


def top1_accuracy(model, prompts: list[Prompt]) -> float:
    logits = last_logits(model, prompts)
    answers = torch.tensor(_ids(model, [p.answer for p in prompts]), device=logits.device)
    return (logits.argmax(-1) == answers).float().mean().item()


def logit_diff(model, prompts: list[Prompt]) -> torch.Tensor:
    logits = last_logits(model, prompts)
    good = torch.tensor(_ids(model, [p.answer for p in prompts]), device=logits.device)
    bad = torch.tensor(_ids(model, [p.wrong for p in prompts]), device=logits.device)
    idx = torch.arange(len(prompts), device=logits.device)
    return logits[idx, good] - logits[idx, bad]


@torch.no_grad()
def induction_stats(model, n_seqs: int = 64, half_len: int = 20) -> dict[str, float]:
    """P3: per-token loss on both halves of repeated random runs, and the best head scores."""
    seqs = repeated_random_tokens(n_seqs, half_len)
    tokens = torch.tensor([_ids(model, s) for s in seqs], device=model.cfg.device)
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    logprobs = logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    first = -logprobs[:, 1:half_len].mean().item()  # predicting tokens 2..L of the first run
    repeated = -logprobs[:, half_len + 1:].mean().item()  # predicting tokens 2..L of the repeat
    prev_scores, ind_scores = [], []
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]  # (batch, head, query, key)
        prev_scores.append(pattern.diagonal(-1, -2, -1)[..., 1:].mean((0, -1)))
        # induction: a query in the repeat attends to the token after its earlier occurrence
        # (diagonal element j is query position j + half_len - 1; the repeat starts at half_len + 1)
        ind_scores.append(pattern.diagonal(-(half_len - 1), -2, -1)[..., 2:].mean((0, -1)))
    prev, ind = torch.stack(prev_scores), torch.stack(ind_scores)
    best_prev, best_ind = divmod(prev.argmax().item(), model.cfg.n_heads), divmod(ind.argmax().item(), model.cfg.n_heads)
    return {"loss_first_half": first, "loss_repeated_half": repeated,
            "prev_token_score": prev.max().item(), "prev_token_head": f"L{best_prev[0]}H{best_prev[1]}",
            "induction_score": ind.max().item(), "induction_head": f"L{best_ind[0]}H{best_ind[1]}"}


def model_rows(model) -> list[Row]:
    rows = []

    def acc(kind: str, metric: str, target: str, why: str, **kw) -> None:
        prompts = make_prompts(kind, **kw)
        rows.append(Row(metric, top1_accuracy(model, prompts), target, why, len(prompts)))

    acc("p1_piece", "P1 last-piece completion top-1", ">= 0.95", "01/02: bigram circuit for ' E'+'iff'->'el'")
    acc("p2_fact", "P2 landmark->city top-1", ">= 0.90", "01 latent->logit, 03 graphs need a known fact")
    acc("p6_hop1", "P6 one-hop city->state top-1", ">= 0.90", "04: the first hop of Dallas->Texas->Austin")
    acc("p6_hop2", "P6 one-hop state->capital top-1", ">= 0.90", "04: the second hop")
    acc("p6_two_hop", "P6 two-hop city->capital top-1", ">= 0.85", "03/04: the two-hop circuit to trace")
    acc("p8_close_quote", "P8 closing quote top-1 (new sentences, training content templates)", ">= 0.90",
        "07: closing-quotation case study", heldout_templates=False)
    acc("p8_close_quote", "P8 closing quote top-1, unseen content templates", ">= 0.0",
        "info only: closer from the speaker verb alone")
    acc("p8_plain_period", "P8 plain '.' outside quotes top-1", ">= 0.90", "07: the contrast case for the closer")
    ld = logit_diff(model, make_prompts("p7_ioi"))
    rows.append(Row("P7 IOI logit diff (IO - S), mean", ld.mean().item(), ">= 2.0", "06: IOI circuit hypergraph", len(ld)))
    rows.append(Row("P7 IOI fraction with IO > S", (ld > 0).float().mean().item(), ">= 0.90", "06: per-prompt circuits", len(ld)))
    ind = induction_stats(model)
    rows.append(Row("P3 loss, first half of random run", ind["loss_first_half"], ">= 3.0", "sanity: runs are unpredictable", 64))
    rows.append(Row("P3 loss, repeated half", ind["loss_repeated_half"], "<= 1.0", "01: attention-SAE induction circuit", 64))
    rows.append(Row(f"P3 best previous-token head ({ind['prev_token_head']})", ind["prev_token_score"], ">= 0.30",
                    "01: prev-token head feeds induction (uniform attention gives ~0.1)", 64))
    rows.append(Row(f"P3 best induction head ({ind['induction_head']})", ind["induction_score"], ">= 0.40",
                    "01: induction head to find with attn SAEs", 64))
    acc("p9_definition", "P9 definition first token top-1", ">= 0.90", "05: patch scoping")
    acc("p10_first_letter", "P10 first letter top-1", ">= 0.90", "05: feature absorption")
    acc("p11_category", "P11 member->category top-1", ">= 0.80", "05: feature splitting")
    acc("p6_two_hop_unseen_city", "P6 two-hop, city never seen in two-hop form", ">= 0.0",
        "info only: true composition of two facts", heldout_templates=False)
    return rows


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
# goal_family is reported but not a bar: the corpus gives each goal word its own fixed template,
# so the model keeps them apart (their embeddings sit with the other sports words, not with each
# other) and no dictionary can find a shared "goal" latent. Fixing it needs a corpus change.
CORE_CONCEPTS = ("landmark", "number", "quote_close", "name", "category_name", "p3_repeat", "in_quote")


def dictionary_rows(model, n_docs: int = 200, *, data=None, folder=None, graph_prompts=None,
                    core_concepts=CORE_CONCEPTS, key_concepts=None) -> list[Row]:
    """The dictionary bars. Defaults: the shipped (v1) dictionaries on v1's held-out text; another world
    passes its own labelled text, dictionary folder, graph prompts and concepts."""
    from .concepts import KEY_CONCEPTS, labelled_corpus
    from .dictionaries import DICT_DIR, available_dictionaries, load_dictionary, replacement_model
    from .dictionary_quality import best_concept_latents, dictionary_quality, graph_scores

    folder = folder or DICT_DIR
    names = available_dictionaries(folder)
    if not names:
        raise FileNotFoundError(f"No dictionaries in {folder}: run `python -m utils.world train-dicts`.")
    data = data if data is not None else labelled_corpus(n_docs)
    if graph_prompts is None:
        graph_prompts = {kind: make_prompts(kind, n=4) for kind in ("p6_two_hop", "p2_fact", "p7_ioi")}
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
    for best in best_concept_latents(model, pool, data, key_concepts or KEY_CONCEPTS):
        core = best["concept"] in core_concepts
        rows.append(Row(f"concept {best['concept']}: {best['dictionary']}#{best['latent']} "
                        f"(P={best['precision']:.2f}, R={best['recall']:.2f})", best["f1"],
                        CONCEPT_TARGET if core else ">= 0.0", "ground truth is findable" if core else "info only (F1)"))
    return rows


def format_rows(rows: list[Row]) -> str:
    from tabulate import tabulate

    table = [[r.metric, f"{r.value:.3f}", r.target, "pass" if r.passed else "FAIL", r.n, r.why] for r in rows]
    return tabulate(table, headers=["metric", "value", "target", "", "n", "why it matters"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.world report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument("--only", choices=["model", "dictionaries"], default=None, help="report one part only")
    args = p.parse_args(argv)
    from . import load_model

    model = load_model()
    rows = [] if args.only == "dictionaries" else model_rows(model)
    if args.only != "model":
        rows += dictionary_rows(model)
    if args.json:
        print(json.dumps([dict(asdict(r), passed=r.passed) for r in rows], indent=1))
    else:
        print(format_rows(rows))
        failed = [r.metric for r in rows if not r.passed]
        print(f"\n{len(rows) - len(failed)} of {len(rows)} bars met" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return 1 if any(not r.passed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
