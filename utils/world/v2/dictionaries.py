"""Sparse dictionaries of course world v2: training them on a v2 run, and their quality bars.

    python -m utils.world.v2.dictionaries train --run RUN [--only saes|transcoders] [--tokens N]
    python -m utils.world.v2.dictionaries report --run RUN        # exit 1 if a bar fails

The dictionaries, their training and their bars are v1's (utils/world/train_dictionaries.py,
utils/world/report.py); only the text differs: rows come from the v2 generator, and quality is
measured on held-out v2 documents with their labels. `goal_family` is a bar here (issue 11: the
v2 corpus puts the goal words in shared frames, so one latent can cover them). A run's
dictionaries live in RUN/dictionaries unless --dicts says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import lru_cache
from pathlib import Path

import torch

from ..concepts import KEY_CONCEPTS, LabelledCorpus, label_documents
from ..report import CORE_CONCEPTS
from .corpus import BOS, PAD, CorpusGenerator
from .tokenizer import vocabulary
from .train import make_batch

V2_CORE_CONCEPTS = (*CORE_CONCEPTS, "goal_family")
GRAPH_PROMPT_KINDS = ("p6_two_hop", "p2_landmark_city", "p7_ioi")


def v2_batch(step: int, batch_size: int, n_ctx: int, seed: int = 0) -> torch.Tensor:
    """v1's batch signature over v2 text (train split; `seed` keeps dictionary data apart from the model's)."""
    return make_batch(step, batch_size, n_ctx, seed=seed)


@lru_cache(maxsize=4)
def labelled_corpus(n_docs: int = 200, n_ctx: int = 128, split: str = "heldout", seed: int = 11) -> LabelledCorpus:
    """`n_docs` v2 documents with their token-level labels (v1's `LabelledCorpus` layout)."""
    gen = CorpusGenerator(seed=seed, split=split)
    docs = [gen.document(max_tokens=n_ctx - 1) for _ in range(n_docs)]
    return label_documents(docs, vocabulary(), n_ctx, BOS, PAD)


def v2_sae_specs(cfg) -> list:
    """v1's SAE specs plus an MLP-activation SAE (`mlp.hook_post`) at EVERY layer, not only 0-1:
    chapter 07's "which closer" is decided in the late MLPs (issue 26)."""
    from ..train_dictionaries import DictSpec, sae_specs

    specs = sae_specs(cfg)
    have = {s.name for s in specs}
    template = next(s for s in specs if s.name == "mlp_post_0")
    specs += [DictSpec(f"mlp_post_{l}", f"blocks.{l}.mlp.hook_post", template.d_in, template.width, template.k)
              for l in range(cfg.n_layers) if f"mlp_post_{l}" not in have]
    return specs


def train(run: Path, out: Path, only: str | None = None, tokens: int = 1_500_000, names: set[str] | None = None) -> dict:
    """Train v1's dictionary specs on a v2 run; the log is re-read before writing, so `--only saes`
    and `--only transcoders` can run side by side (one thread each) into the same folder."""
    from ..train_dictionaries import DEAD_WINDOW_TOKENS, train_saes, train_transcoders, transcoder_specs
    from .train import load_model

    model = load_model(run)
    out.mkdir(parents=True, exist_ok=True)
    log = {}
    saes = [s for s in v2_sae_specs(model.cfg) if names is None or s.name in names]
    transcoders = [s for s in transcoder_specs(model.cfg) if names is None or s.name in names]
    if only in (None, "saes") and saes:
        log.update(train_saes(model, saes, out, tokens, batch_fn=v2_batch))
    if only in (None, "transcoders") and transcoders:
        log.update(train_transcoders(model, transcoders, out, tokens, batch_fn=v2_batch))
    info_path = out / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info.update(log, dead_window_tokens=DEAD_WINDOW_TOKENS, torch_threads=torch.get_num_threads())
    info_path.write_text(json.dumps(info, indent=1))
    return info


def dictionary_rows(run: Path, dicts: Path, n_docs: int = 200):
    """v1's dictionary bars, measured on v2 held-out text and v2 prompts."""
    from ..report import dictionary_rows as rows_for
    from .prompts import make_prompts
    from .train import load_model

    model = load_model(run)
    prompts = {kind: make_prompts(kind, n=4) for kind in GRAPH_PROMPT_KINDS}
    return rows_for(model, data=labelled_corpus(n_docs), folder=dicts, graph_prompts=prompts,
                    core_concepts=V2_CORE_CONCEPTS, key_concepts=KEY_CONCEPTS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.world.v2.dictionaries", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["train", "report"])
    p.add_argument("--run", type=Path, required=True, help="a v2 run folder (utils.world.v2.train --out)")
    p.add_argument("--dicts", type=Path, default=None, help="dictionary folder (default RUN/dictionaries)")
    p.add_argument("--only", choices=["saes", "transcoders"], default=None)
    p.add_argument("--tokens", type=int, default=1_500_000, help="training tokens per group")
    p.add_argument("--names", default=None, help="comma-separated dictionary names to (re)train")
    args = p.parse_args(argv)
    dicts = args.dicts or args.run / "dictionaries"
    if args.command == "train":
        names = set(args.names.split(",")) if args.names else None
        print(json.dumps(train(args.run, dicts, args.only, args.tokens, names), indent=1))
        return 0
    from .report import report  # one place prints the dictionary bars (also used by the full report)

    try:
        return report(args.run, "dictionaries", dicts=dicts)
    except (ValueError, FileNotFoundError) as err:  # a missing run or dictionary, another corpus version
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
