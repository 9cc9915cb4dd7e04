"""Speed of the course world v2 data pipeline (printed, not asserted).

    python -m benchmarks.world            # documents/s, tokens/s, tokenizer build time
    python -m benchmarks.world --docs 2000

Training packs documents into 128-token rows, so the number that matters is tokens/s of the
generator against the trainer's appetite (batch 32 x 128 tokens per step): train.py also logs
the share of wall time spent making batches (`data_generation_share` in train_info.json).
"""

from __future__ import annotations

import argparse
import time

from utils.world.corpus import CorpusGenerator, doc_text, token_inventory


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.world", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1000)
    args = p.parse_args(argv)

    t = time.perf_counter()
    inventory = token_inventory()
    t_inventory = time.perf_counter() - t

    from utils.world.tokenizer import build_tokenizer

    t = time.perf_counter()
    tokenizer = build_tokenizer()
    t_build = time.perf_counter() - t

    gen = CorpusGenerator(0)
    t = time.perf_counter()
    docs = list(gen.documents(args.docs))
    t_gen = time.perf_counter() - t
    n_tokens = sum(len(d) for d in docs)

    texts = [doc_text(d) for d in docs]
    t = time.perf_counter()
    tokenizer(texts, add_special_tokens=False)
    t_tok = time.perf_counter() - t

    print(f"token inventory: {len(inventory)} tokens in {t_inventory:.2f} s; vocabulary {len(tokenizer)} "
          f"(tokenizer built in {t_build:.2f} s)")
    print(f"generation: {args.docs / t_gen:.0f} documents/s, {n_tokens / t_gen:.0f} tokens/s "
          f"(mean {n_tokens / args.docs:.0f} tokens per document)")
    print(f"tokenizing the same text: {n_tokens / t_tok:.0f} tokens/s")
    print(f"one training step (32 x 128 tokens) needs {32 * 128 / (n_tokens / t_gen):.3f} s of generation")


if __name__ == "__main__":
    main()
