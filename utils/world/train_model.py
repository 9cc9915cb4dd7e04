"""Train the course model on the generated corpus (CPU, resumable).

    python -m utils.world train-model            # full run, resumes from its checkpoint
    python -m utils.world train-model --smoke    # a tiny model for a few steps (seconds)

Every batch is generated from a seed derived from its step number, so a run that is cut off
and resumed sees exactly the batches it would have seen.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from .corpus import BOS, CorpusGenerator, all_tokens
from .model import MODEL_CONFIG, MODEL_DIR, SMOKE_CONFIG, make_config, plain_state_dict, tie_embeddings

VOCAB = {tok: i for i, tok in enumerate(all_tokens())}


def make_batch(step: int, batch_size: int, n_ctx: int, seed: int = 0) -> torch.Tensor:
    """Rows of documents packed after a BOS each, cut to n_ctx; every row starts with BOS."""
    gen = CorpusGenerator(seed=seed * 1_000_003 + step, split="train")
    rows = []
    for _ in range(batch_size):
        ids: list[int] = []
        while len(ids) < n_ctx:
            ids.append(VOCAB[BOS])
            ids.extend(VOCAB[t.text] for t in gen.document())
        rows.append(ids[:n_ctx])
    return torch.tensor(rows)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(out_dir: Path, steps: int, batch_size: int, lr: float, smoke: bool, log_every: int = 50,
          checkpoint_every: int = 200) -> dict:
    from transformer_lens import HookedTransformer

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    overrides = SMOKE_CONFIG if smoke else MODEL_CONFIG
    cfg = make_config(len(VOCAB), overrides)
    model = HookedTransformer(cfg)
    tie_embeddings(model)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    start, elapsed, history = 0, 0.0, []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"], strict=False)
        opt.load_state_dict(ckpt["opt"])
        start, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
        print(f"resuming from step {start} ({elapsed / 60:.1f} min already trained)")

    n_params = sum(p.numel() for p in params)
    t0 = time.time()
    try:
        from tqdm.auto import tqdm
        bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", mininterval=5)
    except ImportError:  # pragma: no cover
        bar = range(start, steps)
    model.train()
    for step in bar:
        tokens = make_batch(step, batch_size, cfg.n_ctx)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=min(200, steps // 10 + 1))
        loss = model(tokens, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append(round(loss.item(), 4))
        if step % log_every == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{sum(history[-log_every:]) / len(history[-log_every:]):.3f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                        "elapsed": elapsed + time.time() - t0, "history": history}, ckpt_path)
    elapsed += time.time() - t0

    final_loss = sum(history[-100:]) / max(1, len(history[-100:]))
    info = {
        "n_params": n_params, "n_params_non_embedding": n_params - model.embed.W_E.numel() - model.pos_embed.W_pos.numel(),
        "steps": steps, "batch_size": batch_size, "n_ctx": cfg.n_ctx, "tokens_seen": steps * batch_size * cfg.n_ctx,
        "train_minutes": round(elapsed / 60, 1), "final_train_loss_last100": round(final_loss, 4), "lr": lr,
        "torch_threads": torch.get_num_threads(),
    }
    torch.save(plain_state_dict(model), out_dir / "model.pt")
    (out_dir / "config.json").write_text(json.dumps(dict(overrides, d_vocab=len(VOCAB)), indent=1))
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=1))
    (out_dir / "loss_history.json").write_text(json.dumps(history[:: max(1, len(history) // 500)]))
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m utils.world train-model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model, few steps, temp-friendly (for tests)")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {MODEL_DIR})")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    args = p.parse_args(argv)
    if args.smoke and args.out is None:
        p.error("--smoke needs --out (it must not overwrite the shipped model)")
    steps = args.steps or (20 if args.smoke else 4000)
    info = train(args.out or MODEL_DIR, steps, 8 if args.smoke else args.batch_size, args.lr, args.smoke,
                 checkpoint_every=10 if args.smoke else 200)
    print(json.dumps(info, indent=1))
