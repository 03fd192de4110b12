"""Does V's z know where the ball is? A linear probe from mu to the ball's position.

    python scripts/ball_probe.py RUN_DIR pong|breakout [--rollouts N] [--pcs K ...]

Finds the ball in collected frames (pixels off the per-rollout median inside a region that
holds the ball but no paddle or brick), encodes those frames with the run's V, fits a ridge
regression mu -> (row, col) on 70% of them and prints R^2 and the median error in pixels on the
rest. The controller is linear in z, so a ball that z does not encode linearly is a ball C
cannot follow. Measured: Pong's quick V R^2 0.91 (row) / 0.80 (col); Breakout's 0.06 / 0.12, and
0.72 / 0.65 with vae.motion_weight (same frames).

`--pcs K` also fits the probe on the first K principal components of mu (over the run's encoded
rollouts), and prints the share of mu's variance they hold: how many of z's dimensions carry
anything, and whether the ball survives in the few that do.

`--mlp` also fits a small MLP (two tanh layers of 64) on the same split: whether z holds the
ball's position at all, or only not linearly (a C with a hidden layer could read what the linear
probe misses). `--h` also probes M's hidden state h_t (what C sees beside z_t: M run over the
encoded rollout up to step t) and [z, h] linearly.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodels.checkpoint import load_torch
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import frames_to_tensor, vae_from_bundle
from worldmodels.runfolder import RunFolder
from worldmodels.stages.vae import spread

# (rows, cols) of the 64x64 frame where the ball is the only thing that moves.
REGIONS = {"pong": (slice(0, 64), slice(12, 52)), "breakout": (slice(26, 58), slice(0, 64))}


def ball_steps(obs: np.ndarray, region) -> tuple[list[int], list[np.ndarray]]:
    """Every third step of one rollout where the ball is seen: (steps, (row, col) of the ball)."""
    obs = obs[::3]
    patch = obs[:, region[0], region[1]].astype(np.float32).max(-1)
    background = np.median(patch, axis=0)
    steps, where = [], []
    for i, p in enumerate(patch):
        ball = np.abs(p - background) > 25
        if 1 <= ball.sum() <= 20:
            steps.append(3 * i)
            where.append(np.argwhere(ball).mean(0))
    return steps, where


def ball_frames(files: list[Path], region) -> tuple[np.ndarray, np.ndarray]:
    frames, where = [], []
    for path in files:
        obs = np.load(path)["obs"]
        steps, found = ball_steps(obs, region)
        frames += [obs[t] for t in steps]
        where += found
    return np.stack(frames), np.array(where)


def hidden_states(folder: RunFolder, files: list[Path], region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu_t, h_t, ball) at the ball frames of `files`, from the encoded rollouts and the run's M.

    h_t is M's state before it sees z_t, as C gets it: M run over (mu, action) of steps 0..t-1.
    """
    bundle = load_torch(folder.mdnrnn)
    m = MDNRNN(bundle["z_dim"], bundle["action_dim"], bundle["hidden"], bundle["gaussians"])
    m.load_state_dict(bundle["state_dict"])
    m.eval()
    mus, hs, where = [], [], []
    for path in files:
        encoded = folder.encoded / path.parent.name / f"{path.parent.name}_{path.name}"
        if not encoded.exists():
            continue
        enc = np.load(encoded)
        mu = torch.as_tensor(enc["mu"], dtype=torch.float32)
        actions = torch.as_tensor(enc["actions"], dtype=torch.float32)
        with torch.no_grad():
            h, _ = m.lstm(torch.cat([mu[:-1], actions], -1)[None])
        h = torch.cat([torch.zeros(1, m.hidden), h[0]]).numpy()
        steps, found = ball_steps(np.load(path)["obs"], region)
        mus += [enc["mu"][t] for t in steps]
        hs += [h[t] for t in steps]
        where += found
    return np.array(mus), np.array(hs), np.array(where)


def probe(x: np.ndarray, where: np.ndarray) -> str:
    """Ridge regression x -> (row, col) on the first 70%, scored on the rest."""
    n = len(x)
    train = np.arange(n) < int(n * 0.7)
    x = np.c_[x, np.ones(n)]
    w = np.linalg.solve(x[train].T @ x[train] + 1e-2 * np.eye(x.shape[1]), x[train].T @ where[train])
    return report(x[~train] @ w, where[~train])


def report(pred: np.ndarray, true: np.ndarray) -> str:
    """R^2 and the median error of predicted (row, col) against the held-out truth."""
    r2 = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    err = np.median(np.abs(pred - true), axis=0)
    return f"R^2 row {r2[0]:.2f} col {r2[1]:.2f}; median error row {err[0]:.1f} px, col {err[1]:.1f} px"


def mlp_probe(x: np.ndarray, where: np.ndarray, hidden: int = 64, steps: int = 3000) -> str:
    """`probe`'s split and report with an MLP (two tanh layers) on standardized inputs."""
    torch.manual_seed(0)
    n = len(x)
    train = np.arange(n) < int(n * 0.7)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    xs = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    ys = torch.as_tensor(where, dtype=torch.float32)
    y_mean, y_std = ys[train].mean(0), ys[train].std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(xs[train]) - (ys[train] - y_mean) / y_std) ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return report((net(xs[~train]) * y_std + y_mean).numpy(), where[~train])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("env", choices=sorted(REGIONS))
    ap.add_argument("--rollouts", type=int, default=140, help="rollouts to take frames from")
    ap.add_argument("--pcs", type=int, nargs="*", default=[], help="also probe from mu's first K principal components")
    ap.add_argument("--mlp", action="store_true", help="also probe with an MLP (is the ball in z, nonlinearly?)")
    ap.add_argument("--h", action="store_true", help="also probe M's hidden state h_t and [z, h] (linear)")
    args = ap.parse_args(argv)
    if any(k < 1 for k in args.pcs):
        print(f"ball_probe: --pcs takes counts of 1 or more, not {min(args.pcs)}", file=sys.stderr)
        return 2
    folder = RunFolder(args.run).env_by_slug(args.env)
    env_dir = folder.path
    files = folder.rollout_files()
    if not files or not folder.vae.exists():
        print(f"ball_probe: {env_dir} has no collected data or no vae.pt", file=sys.stderr)
        return 2
    encoded = sorted(folder.encoded.glob("round*/*.npz")) if args.pcs else []
    if args.pcs and not encoded:  # refused before V encodes anything
        print(f"ball_probe: --pcs needs encoded rollouts in {folder.encoded}", file=sys.stderr)
        return 2
    if args.h and not (folder.mdnrnn.exists() and sorted(folder.encoded.glob("round*/*.npz"))):
        print(f"ball_probe: --h needs mdnrnn.pt and encoded rollouts in {env_dir}", file=sys.stderr)
        return 2
    files = [files[i] for i in spread(len(files), args.rollouts)]
    frames, where = ball_frames(files, REGIONS[args.env])
    vae = vae_from_bundle(load_torch(folder.vae))
    with torch.no_grad():
        mu = torch.cat([vae.encode(frames_to_tensor(frames[i:i + 512]))[0]
                        for i in range(0, len(frames), 512)]).numpy()
    print(f"{args.env}: {len(frames)} frames with the ball; probe {probe(mu, where)}")
    if args.mlp:
        print(f"  MLP probe (two tanh layers of 64) on mu: {mlp_probe(mu, where)}")
    if args.h:
        mu_h, h, where_h = hidden_states(folder, files, REGIONS[args.env])
        print(f"  {len(h)} of those frames with M's h_t: probe from h {probe(h, where_h)}; "
              f"from [mu, h] {probe(np.c_[mu_h, h], where_h)}")
    if args.pcs:
        data = np.concatenate([np.load(f)["mu"].astype(np.float64) for f in encoded])
        center = data.mean(0)
        _, s, vt = np.linalg.svd(data - center, full_matrices=False)
        share = np.cumsum(s ** 2) / (s ** 2).sum()
        for k in args.pcs:
            print(f"  first {k} components ({share[min(k, len(share)) - 1]:.0%} of mu's variance): "
                  f"probe {probe((mu - center) @ vt[:k].T, where)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
