"""Stage 3: every stored frame -> (mu, logvar) with the current V, one file per rollout."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..checkpoint import load_arrays, load_torch, save_npz
from ..context import StageContext
from ..errors import UserError
from ..models.controller import action_to_model_input
from ..models.vae import AnyVAE, frames_to_tensor, vae_from_bundle
from .base import StepReport


def load_vae(ctx: StageContext) -> AnyVAE:
    path = ctx.files.vae
    if not path.exists():
        raise UserError(f"stage {ctx.stage} needs a trained V ({path}); run the vae stage first")
    return vae_from_bundle(load_torch(path, "VAE weights")).to(ctx.device)


@torch.no_grad()
def run(ctx: StageContext) -> Iterator[StepReport]:
    files = ctx.files.rollout_files()
    if not files:
        raise UserError(f"stage encode needs collected rollouts in {ctx.files.data}; run collect first")
    vae = load_vae(ctx)
    out = ctx.files.encodings(ctx.round)
    ctx.progress(len(files))
    for index, path in enumerate(files):
        target = out / f"{path.parent.name}_{path.name}"
        if not target.exists():
            data = load_arrays(path, ("obs", "actions", "rewards", "terminated"))
            obs, actions, rewards, terminated = data["obs"], data["actions"], data["rewards"], data["terminated"]
            mus, logvars = [], []
            for b in range(0, len(obs), 256):
                mu, logvar = vae.encode(frames_to_tensor(obs[b:b + 256], ctx.device))
                mus.append(mu.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
            save_npz(target, mu=np.concatenate(mus).astype(np.float16),
                     logvar=np.concatenate(logvars).astype(np.float16),
                     actions=action_to_model_input(actions, ctx.spec.action_kind, ctx.spec.action_dim),
                     rewards=rewards.astype(np.float32), terminated=terminated.astype(bool))
        ctx.tick(1)
        if index % 50 == 49 or index == len(files) - 1:
            yield StepReport("encode", index, {"rollouts": index + 1}, total=len(files))
        if ctx.interrupted():
            return
