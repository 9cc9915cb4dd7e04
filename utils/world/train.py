"""Train a model on the course world.

    python -m utils.world.train --out /tmp/run                         # the shipped run (8000 steps)
    python -m utils.world.train --out /tmp/pilot --steps 300 --eval   # a pilot, then the bars

The model is GPT-2 style with tied embeddings (model.py), trained with warmup + cosine. Every batch is generated from a seed derived from
its step number, so a run cut off and resumed sees the batches it would have seen. A run
writes to --out only, never into the shipped artifacts.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from .model import ARTIFACTS, MODEL_CONFIG, load_model, make_config, plain_state_dict, tie_embeddings
from .corpus import BOS, CorpusGenerator
from .tokenizer import save_tokenizer, vocabulary


SIZES = {
    "full": MODEL_CONFIG,
    "pilot": dict(MODEL_CONFIG, n_layers=2, d_model=96, n_heads=3, d_head=32, d_mlp=384, model_name="course-world-v2-pilot"),
    # for tests of the training code only (seconds)
    "smoke": dict(MODEL_CONFIG, n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, model_name="course-world-smoke"),
}


def make_batch(step: int, batch_size: int, n_ctx: int, seed: int = 0) -> torch.Tensor:
    """Rows of documents packed after a BOS each, cut to n_ctx; every row starts with BOS."""
    vocab = vocabulary()
    gen = CorpusGenerator(seed=seed * 1_000_003 + step, split="train")
    rows = []
    for _ in range(batch_size):
        ids: list[int] = []
        while len(ids) < n_ctx:
            ids.append(vocab[BOS])
            ids.extend(vocab[t.text] for t in gen.document(max_tokens=n_ctx - 1))
        rows.append(ids[:n_ctx])
    return torch.tensor(rows)


def train(out_dir: Path, steps: int, batch_size: int = 32, lr: float = 2e-3, size: str = "full",
          checkpoint_every: int = 200, log_every: int = 25, seed: int = 0) -> dict:
    """Train one run; `seed` sets both the initial weights and the data stream."""
    from transformer_lens import HookedTransformer

    if out_dir.resolve().is_relative_to(ARTIFACTS):
        raise ValueError(f"{out_dir} is inside the shipped artifacts; runs write elsewhere (e.g. /tmp)")
    torch.manual_seed(seed)
    overrides = SIZES[size]
    cfg = make_config(len(vocabulary()), overrides)
    model = HookedTransformer(cfg)
    tie_embeddings(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.05},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    start, elapsed, history, data_s = 0, 0.0, [], 0.0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"], strict=False)
        opt.load_state_dict(ckpt["opt"])
        start, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
        print(f"resuming from step {start} ({elapsed / 60:.1f} min already trained)")
    model.train()
    t0 = time.time()
    for step in range(start, steps):
        t_data = time.time()
        tokens = make_batch(step, batch_size, cfg.n_ctx, seed)
        data_s += time.time() - t_data
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=min(200, steps // 10 + 1))
        loss = model(tokens, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append(round(loss.item(), 4))
        if step % log_every == 0 or step + 1 == steps:
            recent = history[-log_every:]
            print(f"step {step:5d}  loss {sum(recent) / len(recent):.3f}  {time.time() - t0:.0f}s", flush=True)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                        "elapsed": elapsed + time.time() - t0, "history": history}, ckpt_path)
    wall = time.time() - t0
    n_params = sum(p.numel() for p in params)
    info = {
        "size": size, "n_params": n_params, "d_vocab": cfg.d_vocab, "steps": steps, "batch_size": batch_size,
        "n_ctx": cfg.n_ctx, "tokens_seen": steps * batch_size * cfg.n_ctx, "lr": lr,
        "train_minutes": round((elapsed + wall) / 60, 2), "data_generation_share": round(data_s / max(wall, 1e-9), 3),
        "final_train_loss_last50": round(sum(history[-50:]) / max(1, len(history[-50:])), 4),
        "torch_threads": torch.get_num_threads(), "seed": seed,
    }
    torch.save(plain_state_dict(model), out_dir / "model.pt")
    (out_dir / "config.json").write_text(json.dumps(dict(overrides, d_vocab=cfg.d_vocab), indent=1))
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=1))
    (out_dir / "loss_history.json").write_text(json.dumps(history))
    save_tokenizer(out_dir / "tokenizer")
    return info


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m utils.world.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (outside the repository's artifacts)")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--seed", type=int, default=0, help="initial weights and data stream")
    p.add_argument("--eval", action="store_true", help="measure the bars after training")
    args = p.parse_args(argv)
    info = train(args.out, args.steps, args.batch_size, args.lr, args.size, seed=args.seed)
    print(json.dumps(info, indent=1))
    if args.eval:
        from .bars import format_rows, measure, rows_to_json

        t = time.time()
        rows = measure(load_model(args.out), split="heldout")  # validation frames only: the test set waits
        print(format_rows(rows))
        print(f"evaluation took {time.time() - t:.0f}s")
        (args.out / "bars_heldout.json").write_text(json.dumps(rows_to_json(rows), indent=1))


if __name__ == "__main__":
    main()
