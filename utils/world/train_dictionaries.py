"""Train every sparse dictionary of the course world (COURSE.md §3.3).

    python -m utils.world train-dicts --run RUN --out DIR      # SAEs (sae_lens) + transcoders (ours)
    python -m utils.world train-dicts --run RUN --out DIR --only saes   # just one of the two groups
    python -m utils.world train-dicts --run RUN --out DIR --smoke       # tiny run for tests (seconds)

RUN is a model folder written by `python -m utils.world.train` (default: the shipped model); DIR
defaults to RUN/dictionaries, and `python -m utils.world.report ship` copies the chosen run's
dictionaries into the shipped artifacts.

SAEs are trained with sae_lens's `MultiSAETrainingRunner`, which trains all of them from one
shared forward pass of the model; they are BatchTopK SAEs, saved by sae_lens as JumpReLU
SAEs. sae_lens has no transcoder trainer, so `train_transcoders` below is our own: a
BatchTopK transcoder per layer, saved as a sae_lens `JumpReLUTranscoder`. The last layer's also
learns from a KL term on the next-token distribution (see LAST_LAYER_LOGIT_KL).
Everything lands in `DIR/<name>/` and loads with `SAE.load_from_disk`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .model import ARTIFACTS, load_model
from .train import make_batch
DATA_SEED = 7  # SAEs see different documents from the ones the model was trained on


@dataclass(frozen=True)
class DictSpec:
    name: str  # folder name, e.g. "resid_pre_2"
    hook: str  # the hook it reads
    d_in: int
    width: int
    k: float  # average number of active latents (BatchTopK)
    hook_out: str | None = None  # transcoders only: the hook it writes
    logit_kl: float = 0.0  # last-layer transcoders only: weight of the KL to the clean next-token logits
    aux_weight: float = 0.0  # transcoders only: weight of the dead-latent auxiliary loss


def sae_specs(cfg) -> list[DictSpec]:
    """Every SAE of COURSE.md §3.3 for a model config (widths scale with d_model)."""
    d, n = cfg.d_model, cfg.n_layers
    width = 4 * d  # a world of under 2,000 tokens: wider main SAEs mostly grow dead latents
    specs = [DictSpec(f"resid_pre_{l}", f"blocks.{l}.hook_resid_pre", d, width, 16) for l in range(n)]
    specs.append(DictSpec(f"resid_post_{n - 1}", f"blocks.{n - 1}.hook_resid_post", d, width, 16))
    z_dim = cfg.n_heads * cfg.d_head
    specs += [DictSpec(f"attn_z_{l}", f"blocks.{l}.attn.hook_z", z_dim, width, 12) for l in range(n)]
    # at every layer: chapter 07's "which closer" is decided in the late MLPs (issue 26)
    specs += [DictSpec(f"mlp_post_{l}", f"blocks.{l}.mlp.hook_post", cfg.d_mlp, 2 * cfg.d_mlp, 24) for l in range(n)]
    # Feature splitting family on a middle layer: width 4d is resid_pre_{mid} itself. It stops at
    # 8d (1024 latents): a world of under 2,000 tokens leaves most latents of wider SAEs dead.
    mid = n // 2
    specs += [DictSpec(f"resid_pre_{mid}_w{int(m * d)}", f"blocks.{mid}.hook_resid_pre", d, int(m * d), 16) for m in (0.5, 1, 2, 8)]
    return specs


# Weight of the dead-latent auxiliary loss (the TopK paper uses 1/32 with a much larger k_aux;
# ours revives at most 64 latents per step, so it needs more weight to pull them back).
TRANSCODER_AUX_WEIGHT = 1 / 8
# The last MLP writes straight into the logits, and plain MSE spends the transcoder's capacity on
# output variance the loss barely cares about (MSE alone: EV 0.95 but CE recovered 0.48). So the
# last transcoder also matches the clean next-token distribution, a KL term as in end-to-end /
# KL-finetuned SAEs (downstream there is only ln_final and the unembedding). Measured on held-out
# text, 1.5M tokens: KL weight 1 -> CE recovered 0.84, weight 4 -> 0.95. The KL concentrates the
# work on fewer latents (45% dead at aux weight 1/8, 27% at 1/2), so its aux weight is 1 (10% dead).
LAST_LAYER_LOGIT_KL = 4.0
LAST_LAYER_AUX_WEIGHT = 1.0


def transcoder_specs(cfg) -> list[DictSpec]:
    last = cfg.n_layers - 1
    return [DictSpec(f"transcoder_{l}", f"blocks.{l}.ln2.hook_normalized", cfg.d_model, 8 * cfg.d_model, 16,
                     hook_out=f"blocks.{l}.hook_mlp_out", logit_kl=LAST_LAYER_LOGIT_KL if l == last else 0.0,
                     aux_weight=LAST_LAYER_AUX_WEIGHT if l == last else TRANSCODER_AUX_WEIGHT)
            for l in range(cfg.n_layers)]


def token_dataset(n_rows: int, n_ctx: int, seed: int = DATA_SEED, batch_fn=make_batch):
    """A tokenized `datasets.Dataset` of corpus rows (each starting with BOS).

    `batch_fn(step, batch_size, n_ctx, seed=...)` makes the rows (the training split by default)."""
    from datasets import Dataset

    rows = []
    for i in range(0, n_rows, 64):
        rows.extend(batch_fn(i, min(64, n_rows - i), n_ctx, seed=seed).tolist())
    return Dataset.from_dict({"input_ids": rows})


# A latent that has not fired for this many tokens counts as dead and joins the auxiliary loss
# (sae_lens counts its window in steps: the window must be much shorter than the run, or the
# auxiliary loss never switches on and dead latents stay dead).
DEAD_WINDOW_TOKENS = 100_000


def train_saes(model, specs: list[DictSpec], out_dir: Path, training_tokens: int, batch_tokens: int = 4096,
               batch_fn=make_batch) -> dict:
    from sae_lens import BatchTopKTrainingSAEConfig, LoggingConfig
    from sae_lens.multi_sae_training_runner import MultiSAETrainingRunner, MultiSAETrainingRunnerConfig

    n_ctx = model.cfg.n_ctx
    saes = {
        s.name: BatchTopKTrainingSAEConfig(
            d_in=s.d_in, d_sae=s.width, k=s.k, aux_loss_coefficient=1.0,
            reshape_activations="hook_z" if s.hook.endswith("hook_z") else "none",
        )
        for s in specs
    }
    cfg = MultiSAETrainingRunnerConfig(
        saes=saes, hook_names={s.name: s.hook for s in specs}, model_name=model.cfg.model_name,  # which world: dashboards and graphs read it
        context_size=n_ctx, training_tokens=training_tokens, train_batch_size_tokens=batch_tokens,
        store_batch_size_prompts=32,
        # sae_lens sizes its mixing buffer as n_batches_in_buffer * context_size tokens (not prompts)
        n_batches_in_buffer=max(8, 2 * batch_tokens // n_ctx), lr=1e-3, lr_warm_up_steps=50,
        lr_decay_steps=training_tokens // batch_tokens // 5, lr_scheduler_name="constant",
        dead_feature_window=max(1, DEAD_WINDOW_TOKENS // batch_tokens), feature_sampling_window=500, n_eval_batches=2, seed=0,
        logger=LoggingConfig(log_to_wandb=False), checkpoint_path=None, output_path=str(out_dir / "_runner"),
        exclude_special_tokens=[model.tokenizer.bos_token_id, model.tokenizer.pad_token_id],
        n_batches_for_norm_estimate=20,
    )
    # rows are consumed once; a little slack for the buffer and the evals
    dataset = token_dataset(int(training_tokens / n_ctx * 1.3) + 256, n_ctx, batch_fn=batch_fn)
    t0 = time.time()
    MultiSAETrainingRunner(cfg, override_dataset=dataset, override_model=model).run()
    minutes = (time.time() - t0) / 60
    runner_dir = out_dir / "_runner"
    for s in specs:
        target = out_dir / s.name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(runner_dir / s.name), str(target))
    shutil.rmtree(runner_dir, ignore_errors=True)
    return {"saes_train_minutes": round(minutes, 1), "saes_training_tokens": training_tokens}


class _BatchTopKTranscoder(torch.nn.Module):
    """A transcoder trained with BatchTopK; exported as a JumpReLU transcoder.

    During training the k * n_tokens largest activations of a batch are kept. The global
    threshold used at inference is a running mean of the smallest kept activation.
    """

    def __init__(self, d_in: int, d_out: int, width: int, k: float):
        super().__init__()
        self.k = k
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, width) / d_in ** 0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.W_dec = torch.nn.Parameter(torch.randn(width, d_out) * 0.1 / d_out ** 0.5)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_out))
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("steps_since_fired", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = torch.relu(x @ self.W_enc + self.b_enc)
        n_keep = int(self.k * x.shape[0])
        top = pre.flatten().topk(n_keep)
        acts = torch.zeros_like(pre.flatten()).scatter(0, top.indices, top.values).view_as(pre)
        with torch.no_grad():
            smallest = top.values[top.values > 0].min() if (top.values > 0).any() else self.threshold
            self.threshold.lerp_(smallest, 0.01)
            fired = (acts > 0).any(0)
            self.steps_since_fired.add_(1).masked_fill_(fired, 0)
        return acts @ self.W_dec + self.b_dec, acts, pre

    def aux_loss(self, pre: torch.Tensor, residual: torch.Tensor, dead_after: int) -> torch.Tensor:
        """Let latents that have not fired lately reconstruct what the live ones miss."""
        dead = self.steps_since_fired > dead_after
        if not dead.any():
            return pre.new_zeros(())
        dead_pre = pre * dead
        k_aux = min(int(dead.sum()), 64)
        top = dead_pre.topk(k_aux, dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        return (acts @ self.W_dec - residual).pow(2).sum(-1).mean() / residual.pow(2).sum(-1).mean().clamp_min(1e-8)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        norms = self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        self.W_enc.mul_(norms.T)  # keep the function the same while the decoder is renormalised
        self.b_enc.mul_(norms[:, 0])
        self.W_dec.div_(norms)


def last_layer_logprobs(model, resid_mid: torch.Tensor, mlp_out: torch.Tensor) -> torch.Tensor:
    """Next-token log-probs when `mlp_out` replaces the last MLP's output; inputs are (tokens, d_model)."""
    resid_post = resid_mid + mlp_out  # nothing else is added after the last MLP
    return model.unembed(model.ln_final(resid_post[:, None]))[:, 0].log_softmax(-1)


def train_transcoders(model, specs: list[DictSpec], out_dir: Path, training_tokens: int,
                      batch_rows: int = 32, batch_fn=make_batch) -> dict:
    """Train one transcoder per spec from shared forward passes of the model (ours: sae_lens has none)."""
    from tqdm.auto import tqdm

    torch.manual_seed(0)
    n_ctx = model.cfg.n_ctx
    nets = {s.name: _BatchTopKTranscoder(s.d_in, model.cfg.d_model, s.width, s.k) for s in specs}
    opts = {name: torch.optim.Adam(net.parameters(), lr=1e-3) for name, net in nets.items()}
    hooks = {s.hook for s in specs} | {s.hook_out for s in specs}
    last = model.cfg.n_layers - 1
    resid_mid = f"blocks.{last}.hook_resid_mid"
    if any(s.logit_kl for s in specs):
        assert all(s.hook_out == f"blocks.{last}.hook_mlp_out" for s in specs if s.logit_kl), "logit KL: last MLP only"
        hooks.add(resid_mid)
    steps = max(1, training_tokens // (batch_rows * n_ctx))
    dead_after = max(1, DEAD_WINDOW_TOKENS // (batch_rows * n_ctx))  # in steps, like sae_lens
    bos, pad = model.tokenizer.bos_token_id, model.tokenizer.pad_token_id
    t0 = time.time()
    for step in tqdm(range(steps), desc="transcoders", mininterval=5):
        tokens = batch_fn(step, batch_rows, n_ctx, seed=DATA_SEED + 1)
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
        keep = ((tokens != bos) & (tokens != pad)).flatten()
        clean_logprobs = logits.flatten(0, 1)[keep].log_softmax(-1)
        lr = 1e-3 * min(1.0, (step + 1) / 50) * (1.0 if step < 0.8 * steps else 0.2)
        for s in specs:
            x = cache[s.hook].flatten(0, 1)[keep]
            y = cache[s.hook_out].flatten(0, 1)[keep]
            net, opt = nets[s.name], opts[s.name]
            recon, _, pre = net(x)
            mse = (recon - y).pow(2).sum(-1).mean() / (y - y.mean(0)).pow(2).sum(-1).mean()
            loss = mse + s.aux_weight * net.aux_loss(pre, (y - recon).detach(), dead_after)
            if s.logit_kl:
                spliced = last_layer_logprobs(model, cache[resid_mid].flatten(0, 1)[keep], recon)
                kl = torch.nn.functional.kl_div(spliced, clean_logprobs, log_target=True, reduction="batchmean")
                loss = loss + s.logit_kl * kl
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            net.normalise_decoder()
    minutes = (time.time() - t0) / 60
    for s in specs:
        save_transcoder(nets[s.name], s, model, out_dir / s.name)
    return {"transcoders_train_minutes": round(minutes, 1), "transcoders_training_tokens": steps * batch_rows * n_ctx}


def save_transcoder(net: _BatchTopKTranscoder, spec: DictSpec, model, path: Path) -> None:
    from sae_lens import JumpReLUTranscoder, JumpReLUTranscoderConfig
    from sae_lens.saes.sae import SAEMetadata

    cfg = JumpReLUTranscoderConfig(
        d_in=spec.d_in, d_sae=spec.width, d_out=model.cfg.d_model, apply_b_dec_to_input=False,
        metadata=SAEMetadata(model_name=model.cfg.model_name, hook_name=spec.hook, hook_name_out=spec.hook_out,
                             context_size=model.cfg.n_ctx, prepend_bos=True),
    )
    tc = JumpReLUTranscoder(cfg)
    with torch.no_grad():
        tc.W_enc.copy_(net.W_enc)
        tc.b_enc.copy_(net.b_enc)
        tc.W_dec.copy_(net.W_dec)
        tc.b_dec.copy_(net.b_dec)
        tc.threshold.copy_(net.threshold.expand_as(tc.threshold))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    tc.save_model(str(path))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m utils.world train-dicts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=ARTIFACTS, help="model folder (default: the shipped model)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN/dictionaries)")
    p.add_argument("--smoke", action="store_true", help="tiny run")
    p.add_argument("--only", choices=["saes", "transcoders"], default=None)
    p.add_argument("--tokens", type=int, default=None, help="training tokens per group")
    p.add_argument("--names", default=None, help="comma-separated dictionary names to (re)train, e.g. transcoder_3")
    args = p.parse_args(argv)
    out = args.out or args.run / "dictionaries"
    if out.resolve().is_relative_to(ARTIFACTS.resolve()):
        p.error(f"{out} is inside the shipped artifacts: give --out (or --run) outside them; "
                "`python -m utils.world.report ship` copies a chosen run's dictionaries in")
    model = load_model(args.run)
    out.mkdir(parents=True, exist_ok=True)
    tokens = args.tokens or (8192 if args.smoke else 1_500_000)
    names = set(args.names.split(",")) if args.names else None

    def keep(spec: DictSpec) -> bool:
        return names is None or spec.name in names

    # the log is re-read before writing, so `--only saes` and `--only transcoders` can run side by
    # side (one thread each) into the same folder; a run limited by --names is logged apart
    info_path = out / "train_info.json"
    saes = [s for s in sae_specs(model.cfg) if keep(s)]
    transcoders = [s for s in transcoder_specs(model.cfg) if keep(s)]
    log = {}
    if args.only in (None, "saes") and saes:
        log.update(train_saes(model, saes, out, tokens, batch_tokens=1024 if args.smoke else 4096))
    if args.only in (None, "transcoders") and transcoders:
        log.update(train_transcoders(model, transcoders, out, tokens, batch_rows=4 if args.smoke else 32))
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if names:
        info.setdefault("retrained", {}).setdefault(args.names, {}).update(log)
    else:
        info.update(log)
    info.update(dead_window_tokens=DEAD_WINDOW_TOKENS, torch_threads=torch.get_num_threads())
    info_path.write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
