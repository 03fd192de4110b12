"""V: the paper's convolutional VAE, 64x64x3 frames <-> z."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ConvVAE(nn.Module):
    """Encoder 4 conv layers (32/64/128/256, 4x4, stride 2); decoder dense 1024 -> 4 deconvs.

    encode: x [B, 3, 64, 64] in [0, 1] -> (mu, logvar), each [B, z_dim]
    decode: z [B, z_dim] -> [B, 3, 64, 64] in [0, 1]
    """

    def __init__(self, z_dim: int = 32):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(1024, z_dim)
        self.fc_logvar = nn.Linear(1024, z_dim)
        self.fc_dec = nn.Linear(z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, 1024, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class KeypointVAE(nn.Module):
    """V as a spatial autoencoder (Finn et al. 2016): z = the (x, y) image coordinates, in [-1, 1],
    of z_dim / 2 feature maps' spatial softmax. An object that a map tracks is linear in z, and C
    is linear in z: the ConvVAE holds a small ball precisely but not linearly (scripts/ball_probe.py
    --mlp). The decoder draws a Gaussian blob at each keypoint and turns them into the frame with
    three convolutions over a learned background. No KL: encode's logvar is the floor, so z ~= mu.

    encode: x [B, 3, 64, 64] in [0, 1] -> (mu, logvar), each [B, z_dim] (mu: x of every map, then y)
    decode: z [B, z_dim] -> [B, 3, 64, 64] in [0, 1]

    sigma: the width of the decoder's blobs (the frame spans [-1, 1]). Wide, so that a keypoint far
    from the ball still overlaps it and the loss pulls it there; the ball's keypoint is then sharp
    (its width is not the keypoint's precision). A saved V does not record it: it shapes training
    and decode, not encode.
    temperature: the spatial softmax's initial sharpness (learned from there). It starts sharp so
    that a map's keypoint sits on its object instead of being pulled toward the frame's centre.
    """

    LOGVAR = -10.0  # ConvVAE's clamp floor: a sampled z is mu within ~0.007
    map_coords: torch.Tensor
    frame_coords: torch.Tensor

    def __init__(self, z_dim: int = 32, sigma: float = 0.3, temperature: float = 10.0):
        super().__init__()
        if z_dim % 2:
            raise ValueError(f"a keypoint V needs an even z_dim (x and y of each keypoint), not {z_dim}")
        self.z_dim, self.keypoints, self.sigma = z_dim, z_dim // 2, sigma
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, self.keypoints, 3, padding=1),
        )
        self.log_temp = nn.Parameter(torch.tensor(float(np.log(temperature))))  # the softmax's sharpness, learned
        self.decoder = nn.Sequential(
            nn.Conv2d(self.keypoints, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 3, 3, padding=1),
        )
        self.background = nn.Parameter(torch.zeros(3, 64, 64))
        # coordinates of the 32x32 maps and of the 64x64 frame; made once, not saved in state_dict
        self.register_buffer("map_coords", torch.linspace(-1, 1, 32), persistent=False)
        self.register_buffer("frame_coords", torch.linspace(-1, 1, 64), persistent=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.encoder(x)  # [B, K, 32, 32]
        b, k, h, w = maps.shape
        attn = F.softmax(maps.flatten(2) * self.log_temp.exp(), dim=-1).view(b, k, h, w)
        coords = self.map_coords
        mu = torch.cat([(attn.sum(2) * coords).sum(2), (attn.sum(3) * coords).sum(2)], 1)
        return mu, torch.full_like(mu, self.LOGVAR)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        grid = self.frame_coords
        xs, ys = z[:, :self.keypoints, None, None], z[:, self.keypoints:, None, None]
        blobs = torch.exp(-((grid.view(1, 1, 1, -1) - xs) ** 2 + (grid.view(1, 1, -1, 1) - ys) ** 2)
                          / (2 * self.sigma ** 2))
        return torch.sigmoid(self.decoder(blobs) + self.background)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar


VAE_KINDS = {"conv": ConvVAE, "keypoints": KeypointVAE}
AnyVAE = ConvVAE | KeypointVAE


def build_vae(kind: str, z_dim: int) -> AnyVAE:
    """V of a kind (vae.kind)."""
    if kind not in VAE_KINDS:
        raise ValueError(f"vae kind {kind!r} is not one of {', '.join(VAE_KINDS)}")
    return VAE_KINDS[kind](z_dim)


def bundle_kind(section: dict) -> str:
    """The kind a saved V records (vae.pt, or best.pt's "vae"): none is "conv", the only kind
    before there were two."""
    return section.get("kind", "conv")


def vae_from_bundle(section: dict) -> AnyVAE:
    """V rebuilt from a saved one ({"z_dim", "kind", "state_dict"}), in eval mode."""
    vae = build_vae(bundle_kind(section), section["z_dim"])
    vae.load_state_dict(section["state_dict"])
    return vae.eval()


def vae_kind_of(vae: nn.Module) -> str:
    """The vae.kind name of a V (what a bundle records)."""
    return next(kind for kind, cls in VAE_KINDS.items() if type(vae) is cls)


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B, 64, 64, 3] (numpy or tensor) -> float [B, 3, 64, 64] in [0, 1]."""
    t = torch.as_tensor(frames, device=device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_tolerance: float = 0.5, weight: torch.Tensor | None = None, beta: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2 reconstruction (sum over pixels) + KL floored at kl_tolerance * z_dim ("free bits").

    weight: optional per-pixel weights broadcastable to x (see object_weights); beta: the KL
    term's weight in the loss (0 = a plain autoencoder's loss).
    Returns (loss, recon_loss, kl), each a scalar averaged over the batch.
    """
    err = F.mse_loss(recon, x, reduction="none")
    if weight is not None:
        err = err * weight
    recon_loss = err.flatten(1).sum(1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    kl = kl.clamp(min=kl_tolerance * mu.shape[1]).mean()
    return recon_loss + beta * kl, recon_loss, kl


def differs(x: torch.Tensor, ref: torch.Tensor, threshold: float) -> torch.Tensor:
    """[B, 1, H, W] float mask: 1 where any channel of x differs from ref by more than threshold."""
    return ((x - ref).abs().amax(dim=1, keepdim=True) > threshold).float()


def object_weights(x: torch.Tensor, background: torch.Tensor, weight: float,
                   threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights [B, 1, H, W]: 1 + weight where a frame differs from the background.

    x [B, 3, H, W] and background [3, H, W] in [0, 1]. On Atari the background is the median
    frame of the data, so the pixels that differ are the ball, the paddles and the bricks:
    a few pixels that a plain L2 loss lets the VAE drop at almost no cost.
    """
    return 1.0 + weight * differs(x, background, threshold)


def motion_weights(x: torch.Tensor, prev: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights [B, 1, H, W]: weight where a frame differs from the frame before it
    in its rollout (add to object_weights). The ball moves on every frame, the wall and the
    bricks almost never: without this term V can spend z on the still parts of the frame and
    lose a small moving object.
    """
    return weight * differs(x, prev, threshold)
