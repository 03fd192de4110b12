"""M: an LSTM with a Gaussian mixture per latent dimension, plus reward and done heads."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


class MixtureOut(NamedTuple):
    """log_pi, mu, log_sigma: [B, T, z_dim, G]; reward, done_logit: [B, T]."""

    log_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    reward: torch.Tensor
    done_logit: torch.Tensor


class MDNRNN(nn.Module):
    """Inputs (z_t, a_t), predicts the mixture over z_{t+1}, the reward r_t and done_t.

    forward: z [B, T, z_dim], a [B, T, action_dim], state ((1,B,H), (1,B,H)) or None
             -> (MixtureOut, state)
    step:    z [B, z_dim], a [B, action_dim], state (h [B,H], c [B,H]) -> (h, c)
    """

    def __init__(self, z_dim: int = 32, action_dim: int = 3, hidden: int = 256, gaussians: int = 5):
        super().__init__()
        self.z_dim, self.action_dim, self.hidden, self.gaussians = z_dim, action_dim, hidden, gaussians
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z_dim * gaussians + 2)

    def mixture(self, h: torch.Tensor) -> MixtureOut:
        """h [..., H] -> MixtureOut with leading dims [...]."""
        out = self.head(h)
        zg = self.z_dim * self.gaussians
        shape = h.shape[:-1] + (self.z_dim, self.gaussians)
        log_pi = F.log_softmax(out[..., :zg].reshape(shape), dim=-1)
        mu = out[..., zg:2 * zg].reshape(shape)
        log_sigma = out[..., 2 * zg:3 * zg].reshape(shape).clamp(-7.0, 5.0)
        return MixtureOut(log_pi, mu, log_sigma, out[..., -2], out[..., -1])

    def forward(self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[MixtureOut, tuple[torch.Tensor, torch.Tensor]]:
        h, state = self.lstm(torch.cat([z, a], dim=-1), state)
        return self.mixture(h), state

    def step(self, z: torch.Tensor, a: torch.Tensor,
             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step for a batch of independent sequences (same weights as forward)."""
        x = torch.cat([z, a], dim=-1).unsqueeze(1)
        h, c = state
        _, (h2, c2) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        return h2.squeeze(0), c2.squeeze(0)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch, self.hidden, device=device)
        return zeros, zeros.clone()


def gmm_nll(target: torch.Tensor, log_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of target under a per-dimension Gaussian mixture.

    target [B, T, z]; log_pi, mu, log_sigma [B, T, z, G]; mask [B, T] (1 = counted).
    Summed over z, averaged over the counted (B, T) positions. log-sum-exp keeps it finite:
    no exp of a large negative log-probability is ever taken on its own.
    """
    t = target.unsqueeze(-1)
    log_prob = -0.5 * ((t - mu) * torch.exp(-log_sigma)).pow(2) - log_sigma - 0.5 * LOG_2PI
    nll = -torch.logsumexp(log_pi + log_prob, dim=-1).sum(-1)  # [B, T]
    if mask is None:
        return nll.mean()
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)


def sample_z(out: MixtureOut, tau: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample z from the mixture at temperature tau. out fields [B, z, G] -> z [B, z]."""
    logits = out.log_pi / max(tau, 1e-6)
    probs = F.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    idx = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1] + (1,))
    mu = out.mu.gather(-1, idx).squeeze(-1)
    sigma = out.log_sigma.gather(-1, idx).squeeze(-1).exp() * math.sqrt(tau)
    noise = torch.randn(mu.shape, generator=generator, device=mu.device)
    return mu + sigma * noise
