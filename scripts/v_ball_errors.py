"""How precisely does V's z place Breakout's ball and paddle, on the frames a player sees?

    python scripts/v_ball_errors.py V [V ...] [--policy follow|random] [--frames 12000] [--seed 0]

V: a run folder (its breakout/vae.pt) or a file holding a saved V (keypoint_probe.py --save).
A diagnostic with its own loop, never part of an agent. It plays the official Breakout-v5 with
`--policy follow` (the scripted follower on the RAM positions with 30% random actions, as
atari_oracle.py's probe does: rallies, broken bricks, the paddle under the falling ball) or
`--policy random`, keeps the frames whose ball is in the field between the bricks and the paddle
(the truth: RAM, which matches the drawn ball exactly there), and for each V prints, on the last
30% of them, the median and 90th-percentile errors in RAM pixels (the paddle is 16 wide) of

- a linear probe from mu (ridge, fitted on the first 70%): what a C linear in z can read;
- for a keypoint V, the best single keypoint (its x and y alone, mapped to RAM pixels by a
  robust linear fit that leaves out the frames where it sits elsewhere): does one keypoint follow
  the ball, and where along the ball's fall does it lose it (the ball's row in four bands).

ball_probe.py measures on the collected frames (random play, the ball below the paddle's reach
of the bricks); this measures where a player's frames differ. Numbers: docs/experiments.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

FIELD = (94, 188)  # screen rows between the bricks and the paddle
BANDS = ((83, 110), (110, 140), (140, 160), (160, 178))  # the ball's RAM row, top to bottom


def _oracle():
    spec = importlib.util.spec_from_file_location("atari_oracle", Path(__file__).with_name("atari_oracle.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def play(policy: str, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw frames [N, 210, 160, 3], RAM positions [N, 3]: ball x, ball y, paddle x) where the ball
    is drawn in the field."""
    import gymnasium as gym

    from worldmodels.envs import quiet_native_stderr, register_all
    ao = _oracle()
    register_all()
    with quiet_native_stderr():
        env = gym.make("ALE/Breakout-v5", obs_type="rgb")
    ram_of = ao.RAM["breakout"]
    rng = np.random.default_rng([seed, 78])
    pics, pos = [], []
    obs, _ = env.reset(seed=int(rng.integers(1_000_000)))
    while len(pics) < frames:
        ram = env.unwrapped.ale.getRAM()
        field = obs[FIELD[0]:FIELD[1], 8:152]
        if ram[ram_of["ball_y"]] != 0 and ((field[..., 0] == 200) & (field[..., 1] == 72)).any():
            pics.append(obs)
            pos.append(ao.ram_positions("breakout", ram))
        if ram[ram_of["ball_y"]] != 0 and (policy == "random" or rng.random() < 0.3):
            a = int(rng.integers(4))
        else:  # FIRE to serve, else toward the ball
            a = ao.follow_action("breakout", ram)
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(1_000_000)))
    env.close()
    return np.stack(pics), np.stack(pos).astype(np.float64)


def saved_v(path: Path) -> Path:
    """The file holding the V: a run folder's Breakout vae.pt, or the path itself."""
    from worldmodels.runfolder import RunFolder
    return RunFolder(path).env_by_slug("breakout").vae if path.is_dir() else path


def load_v(path: Path):
    from worldmodels.checkpoint import load_torch
    from worldmodels.models.vae import vae_from_bundle
    return vae_from_bundle(load_torch(saved_v(path)))


def errors(pred: np.ndarray, true: np.ndarray) -> str:
    e = np.abs(pred - true)
    return " ".join(f"{name} {np.median(e[:, i]):.1f} / {np.percentile(e[:, i], 90):.1f}"
                    for i, name in enumerate(("ball x", "ball y", "paddle")[:e.shape[1]]))


def report(vae, small: np.ndarray, pos: np.ndarray) -> list[str]:
    import torch

    from worldmodels.models.vae import KeypointVAE, frames_to_tensor
    with torch.no_grad():
        mu = torch.cat([vae.encode(frames_to_tensor(small[i:i + 512]))[0]
                        for i in range(0, len(small), 512)]).numpy().astype(np.float64)
    train = np.arange(len(mu)) < int(len(mu) * 0.7)
    x = np.c_[mu, np.ones(len(mu))]
    w = np.linalg.solve(x[train].T @ x[train] + 1e-2 * np.eye(x.shape[1]), x[train].T @ pos[train])
    lines = [f"linear probe from z (median / p90, RAM px): {errors(x[~train] @ w, pos[~train])}"]
    if isinstance(vae, KeypointVAE):
        k = vae.keypoints
        fits = []
        for j in range(k):
            kx = np.c_[mu[:, [j, k + j]], np.ones(len(mu))]
            keep = train.copy()
            for _ in range(3):  # robust: refit without the frames where the keypoint is elsewhere
                wj = np.linalg.lstsq(kx[keep], pos[keep, :2], rcond=None)[0]
                res = np.abs(kx @ wj - pos[:, :2]).max(1)
                keep = train & (res < max(3 * np.median(res[train]), 2.0))
            fits.append((np.median(np.abs(kx[train] @ wj - pos[train, :2])), j, kx @ wj))
        _, j, pred = min(fits, key=lambda f: f[0])
        lines.append(f"best single keypoint ({j}): {errors(pred[~train], pos[~train, :2])}")
        for lo, hi in BANDS:
            m = ~train & (pos[:, 1] >= lo) & (pos[:, 1] < hi)
            if m.sum() >= 10:
                lines.append(f"  ball row {lo}-{hi} ({m.sum()} frames): {errors(pred[m], pos[m, :2])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("vs", type=Path, nargs="+", metavar="V")
    ap.add_argument("--policy", choices=["follow", "random"], default="follow")
    ap.add_argument("--frames", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.frames < 50:
        print("v_ball_errors: --frames takes 50 or more", file=sys.stderr)
        return 2
    for v in args.vs:
        if not saved_v(v).is_file():
            print(f"v_ball_errors: {v} is neither a saved V nor a run folder with breakout/vae.pt", file=sys.stderr)
            return 2
    import torch

    from worldmodels.envs import preprocess, probe_spec
    torch.set_num_threads(1)
    pics, pos = play(args.policy, args.frames, args.seed)
    spec = probe_spec("ALE/Breakout-v5")
    small = np.stack([preprocess(f, spec) for f in pics])
    print(f"{len(pics)} frames of {args.policy} play with the ball in the field")
    for v in args.vs:
        print(v)
        for line in report(load_v(v), small, pos):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
