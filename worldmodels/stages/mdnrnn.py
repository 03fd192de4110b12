"""Stage 4: train M (MDN-RNN) on sequences of (z, a) -> z', reward, done."""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ..checkpoint import load_arrays, save_torch
from ..context import StageContext
from ..errors import UserError
from ..models.mdnrnn import MDNRNN, gmm_nll
from .base import StepReport, resume_training, seed_torch


def load_encoded(ctx: StageContext) -> list[dict]:
    files = sorted(ctx.files.encodings(ctx.round).glob("*.npz"))
    if not files:
        raise UserError(f"stage mdnrnn needs encoded rollouts in {ctx.files.encodings(ctx.round)}; "
                        "run the encode stage first")
    out = []
    for path in files:
        data = load_arrays(path, ("mu", "logvar", "actions", "rewards", "terminated"), "encoded rollout")
        if len(data["rewards"]) >= 1:
            out.append(data)
    return out


def sample_batch(rollouts: list[dict], batch: int, seq_len: int, rng: np.random.Generator,
                 ) -> tuple[np.ndarray, ...]:
    """Random windows of seq_len transitions; short rollouts are padded and masked.

    Returns mu, logvar [B, L+1, z]; actions [B, L, A]; rewards, dones, mask [B, L].
    """
    lengths = np.array([len(r["rewards"]) for r in rollouts])
    picks = rng.choice(len(rollouts), size=batch, p=lengths / lengths.sum())
    z_dim = rollouts[0]["mu"].shape[1]
    a_dim = rollouts[0]["actions"].shape[1]
    mu = np.zeros((batch, seq_len + 1, z_dim), np.float32)
    logvar = np.zeros_like(mu)
    actions = np.zeros((batch, seq_len, a_dim), np.float32)
    rewards = np.zeros((batch, seq_len), np.float32)
    dones = np.zeros((batch, seq_len), np.float32)
    mask = np.zeros((batch, seq_len), np.float32)
    for b, i in enumerate(picks):
        r = rollouts[i]
        n = len(r["rewards"])
        start = int(rng.integers(0, max(n - seq_len, 0) + 1))
        length = min(seq_len, n - start)
        mu[b, :length + 1] = r["mu"][start:start + length + 1]
        logvar[b, :length + 1] = r["logvar"][start:start + length + 1]
        actions[b, :length] = r["actions"][start:start + length]
        rewards[b, :length] = r["rewards"][start:start + length]
        dones[b, :length] = r["terminated"][start:start + length]
        mask[b, :length] = 1.0
    return mu, logvar, actions, rewards, dones, mask


def mdnrnn_loss(model: MDNRNN, batch: tuple[np.ndarray, ...], device: torch.device | str, reward_weight: float,
                done_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    mu, logvar, actions, rewards, dones, mask = (torch.as_tensor(x, device=device) for x in batch)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # resampled every batch, as in the paper
    out, _ = model(z[:, :-1], actions)
    gmm = gmm_nll(z[:, 1:], out.log_pi, out.mu, out.log_sigma, mask) / model.z_dim
    denom = mask.sum().clamp(min=1.0)
    reward = (F.mse_loss(out.reward, rewards, reduction="none") * mask).sum() / denom
    done = (F.binary_cross_entropy_with_logits(out.done_logit, dones, reduction="none") * mask).sum() / denom
    return gmm + reward_weight * reward + done_weight * done, gmm, reward, done


def run(ctx: StageContext) -> Iterator[StepReport]:
    cfg = ctx.cfg.mdnrnn
    rollouts = load_encoded(ctx)
    z_dim = rollouts[0]["mu"].shape[1]
    a_dim = rollouts[0]["actions"].shape[1]
    seed_torch(ctx.cfg.seed, ctx.round, 303)  # the initial weights
    model = MDNRNN(z_dim, a_dim, cfg.hidden, cfg.gaussians).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state_path = ctx.files.stage_state("mdnrnn")
    start = resume_training(ctx, model, opt, "mdnrnn", "MDN-RNN")
    total_steps = sum(len(r["rewards"]) for r in rollouts)
    batches = max(1, math.ceil(total_steps / (cfg.seq_len * cfg.batch_size)))
    ctx.progress(batches * cfg.epochs, batches * start)
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng([ctx.cfg.seed, ctx.round, epoch, 303])
        seed_torch(ctx.cfg.seed, ctx.round, epoch, 304)
        model.train()
        sums = np.zeros(4)
        for _ in range(batches):
            if ctx.interrupted():
                return  # the partial epoch is dropped; the last epoch's checkpoint stands
            batch = sample_batch(rollouts, cfg.batch_size, cfg.seq_len, rng)
            loss, gmm, reward, done = mdnrnn_loss(model, batch, ctx.device, cfg.reward_weight, cfg.done_weight)
            if not torch.isfinite(loss):
                raise UserError(f"MDN-RNN loss became {loss.item()} in epoch {epoch}; training stopped, "
                                f"the last good weights are in {state_path}; try a lower mdnrnn.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sums += [loss.item(), gmm.item(), reward.item(), done.item()]
            ctx.tick(1)
        loss, gmm, reward, done = sums / batches
        state = {"round": ctx.round, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict()}
        yield StepReport("mdnrnn", epoch, {"epoch": epoch, "loss": loss, "gmm": gmm, "reward": reward,
                                           "done": done}, state=state, state_path=state_path, total=cfg.epochs)
        if ctx.out_of_budget() or ctx.interrupted():
            break
    saw_ends = any(bool(np.any(r["terminated"])) for r in rollouts)  # can M's done head mean anything
    save_torch(ctx.files.mdnrnn, {"z_dim": z_dim, "action_dim": a_dim, "hidden": cfg.hidden,
                                           "gaussians": cfg.gaussians, "saw_ends": saw_ends,
                                           "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}})
