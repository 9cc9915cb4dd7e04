"""Speed and size of the attribution-graph explorer (utils/graph_explorer.py) on prompts of world v2.

    python -m benchmarks.graph_explorer

Prints, per prompt: circuit_tracer's attribution time, the explorer's time (the first call also
runs the course model over the held-out documents used for concepts and examples, once per
session), nodes and edges shown, and the sizes of what lands in a notebook (the plotly mimetype
bundle) and of a saved standalone page (plotly.js inline).
"""

from __future__ import annotations

import json
import time
import warnings

from tabulate import tabulate

PROMPTS = (  # world v2 text: no leading space (v2's corpus convention)
    "The state containing Dallas has its capital in",
    "Tom said, \"I like the red ball.\" The Eiffel Tower is in Paris. The state containing Dallas has its capital in",
)


def main() -> None:
    import circuit_tracer

    from utils.graph_explorer import explore_graph
    from utils.world import replacement_model

    warnings.simplefilter("ignore")
    model = replacement_model()
    rows = []
    for prompt in PROMPTS:
        start = time.perf_counter()
        graph = circuit_tracer.attribute(prompt, model, verbose=False)
        attributed = time.perf_counter()
        view = explore_graph(graph)
        first = time.perf_counter()
        explore_graph(graph)
        again = time.perf_counter()
        bundle = len(json.dumps(view._repr_mimebundle_()))
        rows.append([graph.n_pos, f"{attributed - start:.2f}", f"{first - attributed:.2f}", f"{again - first:.2f}",
                     len(view.nodes), len(view.edges), f"{bundle / 1e3:.0f}", f"{len(view.to_html()) / 1e6:.2f}"])
    print(tabulate(rows, headers=["tokens", "attribute s", "explore s (1st)", "explore s (again)", "nodes", "edges",
                                  "notebook kB", "saved page MB"]))


if __name__ == "__main__":
    main()
