"""Time of chapter 03's from-scratch `attribute` against circuit_tracer's, on the same prompts and model.

    python -m benchmarks.attribution                 # prompts of 9, 16 and 64 tokens
    python -m benchmarks.attribution --repeats 5 --batch-size 256 --json out.json

Both build the unpruned graph of the same prompt with the course model and transcoders, one CPU
thread each (set OMP_NUM_THREADS=1 on a shared machine), with the same batch size. Each is run
`--repeats` times after a warm-up run and the best time is kept. Target (COURSE.md §8): ours takes
≤ 1.5× circuit_tracer's time and agrees on every edge (relative 1e-4, absolute 1e-5 × the largest
edge). Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
from tabulate import tabulate

RATIO_TARGET = 1.5


def _prompts(model) -> dict[str, torch.Tensor]:
    """9 tokens: the two-hop Dallas question; 16 and 64: the start of held-out course documents."""
    from utils.world import labelled_corpus

    data = labelled_corpus(n_docs=20)
    prompts = {"two-hop (Dallas)": model.to_tokens("The state containing Dallas has its capital in")[0]}
    for n in (16, 64):
        doc = next(d for d, m in zip(data.tokens, data.mask) if int(m.sum()) >= n)
        prompts[f"corpus document, first {n} tokens"] = doc[:n]
    return prompts


def _best_time(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    from circuit_tracer import attribute as ct_attribute

    import solutions.ch03_attribution_graphs as ours
    from utils.attribution import circuit_tracer_order
    from utils.world import load_model, load_transcoders, replacement_model

    warnings.simplefilter("ignore")
    model, transcoders = load_model(), load_transcoders()
    for module in (model, *transcoders.values()):
        module.requires_grad_(False)
    reference = replacement_model(model, transcoders)
    print(f"torch threads: {torch.get_num_threads()}; batch size {args.batch_size}; best of {args.repeats} runs")

    rows, results, ok = [], [], True
    for name, tokens in _prompts(model).items():
        ours_s, graph = _best_time(lambda: ours.attribute(model, transcoders, tokens, batch_size=args.batch_size), args.repeats)
        ct_s, ct_graph = _best_time(lambda: ct_attribute(tokens, reference, batch_size=args.batch_size), args.repeats)
        perm = circuit_tracer_order(graph.nodes)
        expected = ct_graph.adjacency_matrix
        actual = graph.adjacency[perm][:, perm]
        same_shape = actual.shape == expected.shape
        max_diff = float((actual - expected).abs().max()) if same_shape else float("inf")
        agree = same_shape and bool(torch.allclose(actual, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())))
        ratio = ours_s / ct_s
        ok &= agree and ratio <= RATIO_TARGET
        rows.append([name, len(tokens), len(graph.nodes), f"{ours_s:.3f}", f"{ct_s:.3f}", f"{ratio:.2f}",
                     f"{max_diff:.1e}", "yes" if agree else "NO"])
        results.append({"prompt": name, "n_tokens": len(tokens), "n_nodes": len(graph.nodes), "ours_s": ours_s,
                        "circuit_tracer_s": ct_s, "ratio": ratio, "max_edge_difference": max_diff, "edges_agree": agree})
    print(tabulate(rows, headers=["prompt", "tokens", "nodes", "ours (s)", "circuit_tracer (s)",
                                  f"ratio (≤ {RATIO_TARGET})", "max |Δ edge|", "every edge agrees"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    print("all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
