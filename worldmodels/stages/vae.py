"""Stage 2: train V (vae.kind: ConvVAE or KeypointVAE) on every collected frame, streamed from disk."""
from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_arrays, save_npz, save_torch
from ..context import StageContext
from ..errors import UserError
from ..models.vae import AnyVAE, build_vae, frames_to_tensor, motion_weights, object_weights, vae_loss
from .base import StepReport, resume_training, seed_torch


def load_obs(path: Path) -> np.ndarray:
    return load_arrays(path, ("obs",))["obs"]


def frame_batches(files: list[Path], batch_size: int, files_at_once: int, rng: np.random.Generator,
                  threads: int = 4, with_prev: bool = False,
                  ) -> Iterator[Any]:  # batches, or (batch, previous frames) pairs with_prev
    """Stream shuffled uint8 batches [B, 64, 64, 3]: `files_at_once` rollouts in memory, and the
    next group loading (decompressing) in `threads` background threads while this one trains.
    The batches do not depend on `threads`. with_prev: (batch, the frames before them in their
    rollouts), a rollout's first frame standing for its own previous frame."""
    order = rng.permutation(len(files))
    groups = [order[s:s + files_at_once] for s in range(0, len(order), files_at_once)]
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="vae-load") as pool:
        def submit(k: int) -> list:
            return [pool.submit(load_obs, files[i]) for i in groups[k]] if k < len(groups) else []

        ahead = submit(0)
        for k in range(len(groups)):
            parts = [f.result() for f in ahead]
            frames = np.concatenate(parts)
            ahead = submit(k + 1)
            prev = np.arange(len(frames)) - 1
            prev[np.cumsum([0] + [len(p) for p in parts[:-1]])] += 1  # first frames: themselves
            perm = rng.permutation(len(frames))
            for b in range(0, len(perm), batch_size):
                idx = perm[b:b + batch_size]
                yield (frames[idx], frames[prev[idx]]) if with_prev else frames[idx]


def count_frames(files: list[Path]) -> int:
    total = 0
    for path in files:
        total += int(load_arrays(path, ("rewards",))["rewards"].shape[0]) + 1
    return total


def spread(n: int, k: int) -> np.ndarray:
    """Up to k indices spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).astype(int))


def median_frame(files: list[Path], n_files: int = 64, per_file: int = 32) -> np.ndarray:
    """The per-pixel median of frames spread over the data: uint8 [64, 64, 3] (the static background)."""
    frames = []
    for i in spread(len(files), n_files):
        obs = load_obs(files[i])
        frames.append(obs[spread(len(obs), per_file)])
    return np.median(np.concatenate(frames), axis=0).astype(np.uint8)


def run(ctx: StageContext) -> Iterator[StepReport]:
    cfg = ctx.cfg.vae
    files = ctx.files.rollout_files()
    if not files:
        raise UserError(f"stage vae needs collected rollouts in {ctx.files.data}; "
                        "run the collect stage first (or use --from RUN_DIR)")
    epochs = cfg.finetune_epochs if ctx.round > 0 and cfg.finetune_epochs >= 0 else cfg.epochs
    seed_torch(ctx.cfg.seed, ctx.round, 202)  # the initial weights
    vae = build_vae(cfg.kind, cfg.z_dim).to(ctx.device)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    state_path = ctx.files.stage_state("vae")
    start = resume_training(ctx, vae, opt, "vae", "VAE")
    batches_per_epoch = math.ceil(count_frames(files) / cfg.batch_size)
    background = None
    atari = ctx.spec.id.startswith("ALE/")
    if cfg.object_weight > 0 and atari:
        background = frames_to_tensor(median_frame(files)[None], ctx.device)[0]
    motion = atari and cfg.motion_weight > 0
    ctx.progress(batches_per_epoch * epochs, batches_per_epoch * start)
    for epoch in range(start, epochs):
        rng = np.random.default_rng([ctx.cfg.seed, ctx.round, epoch, 202])
        seed_torch(ctx.cfg.seed, ctx.round, epoch, 203)
        vae.train()
        sums = np.zeros(3)
        count = 0
        step = epoch * batches_per_epoch  # batches trained before this epoch
        for batch in frame_batches(files, cfg.batch_size, cfg.shuffle_files, rng, with_prev=motion):
            if ctx.interrupted():
                return  # the partial epoch is dropped; the last epoch's checkpoint stands
            batch, prev = batch if motion else (batch, None)
            x = frames_to_tensor(batch, ctx.device)
            warmup = (atari and step < cfg.ae_warmup) or cfg.kind == "keypoints"  # an autoencoder's loss
            if warmup:
                mu, logvar = vae.encode(x)
                recon = vae.decode(mu)
            else:
                recon, mu, logvar = vae(x)
            weight = None if background is None else object_weights(x, background, cfg.object_weight)
            if motion:
                assert prev is not None  # frame_batches(with_prev=True) pairs each batch with them
                moved = motion_weights(x, frames_to_tensor(prev, ctx.device), cfg.motion_weight)
                weight = 1.0 + moved if weight is None else weight + moved
            loss, rec, kl = vae_loss(recon, x, mu, logvar, cfg.kl_tolerance, weight, beta=0.0 if warmup else 1.0)
            step += 1
            if not torch.isfinite(loss):
                raise UserError(f"VAE loss became {loss.item()} in epoch {epoch}; training stopped, "
                                f"the last good weights are in {state_path}; try a lower vae.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += [loss.item(), rec.item(), kl.item()]
            count += 1
            ctx.tick(1)
        loss, rec, kl = sums / max(count, 1)
        state = {"round": ctx.round, "epoch": epoch, "model": vae.state_dict(), "optimizer": opt.state_dict()}
        yield StepReport("vae", epoch, {"epoch": epoch, "loss": loss, "recon": rec, "kl": kl,
                                        "batches": batches_per_epoch},
                         state=state, state_path=state_path, total=epochs)
        if ctx.out_of_budget() or ctx.interrupted():
            break
    vae.eval()
    save_torch(ctx.files.vae, {"z_dim": cfg.z_dim, "kind": cfg.kind, "state_dict": {k: v.cpu() for k, v in
                                                                          vae.state_dict().items()}})
    write_samples(ctx.files.vae_samples, vae, files, ctx.device)


@torch.no_grad()
def write_samples(path: Path, vae: AnyVAE, files: list[Path], device: torch.device | str, n: int = 16) -> None:
    """A few frames beside their reconstructions, for the report's grid."""
    obs = load_obs(files[0])
    frames = obs[np.linspace(0, len(obs) - 1, min(n, len(obs))).astype(int)]
    mu, _ = vae.encode(frames_to_tensor(frames, device))
    recon = (vae.decode(mu).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    save_npz(path, frames=frames, recon=recon)
