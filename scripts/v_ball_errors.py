"""How precisely does V's z place the ball and the paddles, on the frames a player sees?

    python scripts/v_ball_errors.py V [V ...] [--env breakout|pong] [--policy follow|random]
                                    [--frames 12000] [--seed 0]

V: a run folder (its env's vae.pt) or a file holding a saved V (keypoint_probe.py --save).
A diagnostic with its own loop, never part of an agent. It plays the official Breakout-v5 or
Pong-v5 with `--policy follow` (the scripted follower on the RAM positions with 30% random
actions, as atari_oracle.py's probe does: rallies, broken bricks, the paddle under the falling
ball) or `--policy random`, keeps the frames whose ball is drawn in the field (Breakout: between
the bricks and the paddle; the truth: RAM, which matches the drawn ball there), and for each V
prints, on the last 30% of them, the median and 90th-percentile errors in RAM pixels (Breakout's
paddle is 16 wide, Pong's 16 tall) of

- a linear probe from mu (ridge, fitted on the first 70%): what a C linear in z can read;
- for a keypoint V, the best single keypoint (its x and y alone, mapped to RAM pixels by a
  robust linear fit that leaves out the frames where it sits elsewhere): does one keypoint follow
  the ball, and where along its path does it lose it (Breakout: the ball's row in four bands;
  Pong: its column in four bands, the last by the player's paddle), and the same for each
  paddle.

ball_probe.py measures on the collected frames (random play, the ball below the paddle's reach
of the bricks); this measures where a player's frames differ. Numbers: docs/experiments.md.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np

# Per env: screen rows where a drawn ball counts (Breakout: between the bricks and the paddle;
# Pong: between the walls), the ball's colour, and bands along its path to the player's paddle
# (which RAM coordinate, and its ranges).
FIELD = {"breakout": (94, 188), "pong": (34, 194)}
BALL_RGB = {"breakout": (200, 72, 72), "pong": (236, 236, 236)}
BANDS = {"breakout": ("row", 1, ((83, 110), (110, 140), (140, 160), (160, 178))),
         "pong": ("column", 0, ((0, 128), (128, 160), (160, 180), (180, 256)))}
LABELS = {"ball_x": "ball x", "ball_y": "ball y", "player_x": "paddle", "player_y": "paddle", "enemy_y": "enemy"}


@functools.cache
def _oracle():  # loaded once: play, report and main all read it
    spec = importlib.util.spec_from_file_location("atari_oracle", Path(__file__).with_name("atari_oracle.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def play(env_key: str, policy: str, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw frames [N, 210, 160, 3], RAM positions [N, P]: atari_oracle.RAM[env_key]'s order)
    where the ball is drawn in the field."""
    import gymnasium as gym

    from worldmodels.envs import quiet_native_stderr, register_all
    ao = _oracle()
    register_all()
    with quiet_native_stderr():
        env = gym.make(ao.ENVS[env_key], obs_type="rgb")
    n_act = int(env.action_space.n)
    ram_of = ao.RAM[env_key]
    (top, bottom), (r, g, b) = FIELD[env_key], BALL_RGB[env_key]
    rng = np.random.default_rng([seed, 78])
    pics, pos = [], []
    obs, _ = env.reset(seed=int(rng.integers(1_000_000)))
    while len(pics) < frames:
        ram = env.unwrapped.ale.getRAM()
        field = obs[top:bottom, 8:152]
        if ram[ram_of["ball_y"]] != 0 and ((field[..., 0] == r) & (field[..., 1] == g) & (field[..., 2] == b)).any():
            pics.append(obs)
            pos.append(ao.ram_positions(env_key, ram))
        if ram[ram_of["ball_y"]] != 0 and (policy == "random" or rng.random() < 0.3):
            a = int(rng.integers(n_act))
        else:  # Breakout: FIRE to serve; else toward the ball
            a = ao.follow_action(env_key, ram)
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(1_000_000)))
    env.close()
    return np.stack(pics), np.stack(pos).astype(np.float64)


def saved_v(path: Path, env_key: str) -> Path:
    """The file holding the V: a run folder's vae.pt for the env, or the path itself."""
    from worldmodels.runfolder import RunFolder
    return RunFolder(path).env_by_slug(env_key).vae if path.is_dir() else path


def load_v(path: Path, env_key: str):
    from worldmodels.checkpoint import load_torch
    from worldmodels.models.vae import vae_from_bundle
    return vae_from_bundle(load_torch(saved_v(path, env_key)))


def errors(pred: np.ndarray, true: np.ndarray, labels: list[str]) -> str:
    e = np.abs(pred - true)
    return " ".join(f"{name} {np.median(e[:, i]):.1f} / {np.percentile(e[:, i], 90):.1f}"
                    for i, name in enumerate(labels[:e.shape[1]]))


def best_keypoint(mu: np.ndarray, k: int, target: np.ndarray, train: np.ndarray) -> tuple[int, np.ndarray]:
    """The keypoint whose (x, y) alone, mapped by a robust linear fit on the training frames
    (refitted without the frames where it sits elsewhere), gives target best: (its index, its
    prediction on every frame)."""
    fits = []
    for j in range(k):
        kx = np.c_[mu[:, [j, k + j]], np.ones(len(mu))]
        keep = train.copy()
        for _ in range(3):
            wj = np.linalg.lstsq(kx[keep], target[keep], rcond=None)[0]
            res = np.abs(kx @ wj - target).max(1)
            keep = train & (res < max(3 * np.median(res[train]), 2.0))
        fits.append((np.median(np.abs(kx[train] @ wj - target[train])), j, kx @ wj))
    _, j, pred = min(fits, key=lambda f: f[0])
    return j, pred


def report(vae, small: np.ndarray, pos: np.ndarray, env_key: str) -> list[str]:
    import torch

    from worldmodels.models.vae import KeypointVAE, frames_to_tensor
    with torch.no_grad():
        mu = torch.cat([vae.encode(frames_to_tensor(small[i:i + 512]))[0]
                        for i in range(0, len(small), 512)]).numpy().astype(np.float64)
    train = np.arange(len(mu)) < int(len(mu) * 0.7)
    x = np.c_[mu, np.ones(len(mu))]
    w = np.linalg.solve(x[train].T @ x[train] + 1e-2 * np.eye(x.shape[1]), x[train].T @ pos[train])
    labels = [LABELS[name] for name in _oracle().RAM[env_key]]
    lines = [f"linear probe from z (median / p90, RAM px): {errors(x[~train] @ w, pos[~train], labels)}"]
    if isinstance(vae, KeypointVAE):
        j, pred = best_keypoint(mu, vae.keypoints, pos[:, :2], train)
        lines.append(f"best single keypoint ({j}): {errors(pred[~train], pos[~train, :2], labels)}")
        along, axis, bands = BANDS[env_key]
        for lo, hi in bands:
            m = ~train & (pos[:, axis] >= lo) & (pos[:, axis] < hi)
            if m.sum() >= 10:
                lines.append(f"  ball {along} {lo}-{hi} ({m.sum()} frames): {errors(pred[m], pos[m, :2], labels)}")
        for i in range(2, pos.shape[1]):  # the paddles: does one keypoint follow each?
            j, pred = best_keypoint(mu, vae.keypoints, pos[:, i:i + 1], train)
            lines.append(f"best single keypoint for the {labels[i]} ({j}): "
                         f"{errors(pred[~train], pos[~train, i:i + 1], labels[i:])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("vs", type=Path, nargs="+", metavar="V")
    ap.add_argument("--env", choices=["breakout", "pong"], default="breakout")
    ap.add_argument("--policy", choices=["follow", "random"], default="follow")
    ap.add_argument("--frames", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.frames < 50:
        print("v_ball_errors: --frames takes 50 or more", file=sys.stderr)
        return 2
    for v in args.vs:
        if not saved_v(v, args.env).is_file():
            print(f"v_ball_errors: {v} is neither a saved V nor a run folder with {args.env}/vae.pt",
                  file=sys.stderr)
            return 2
    import torch

    from worldmodels.envs import preprocess, probe_spec
    torch.set_num_threads(1)
    pics, pos = play(args.env, args.policy, args.frames, args.seed)
    spec = probe_spec(_oracle().ENVS[args.env])
    small = np.stack([preprocess(f, spec) for f in pics])
    print(f"{len(pics)} frames of {args.policy} play with the ball in the field")
    for v in args.vs:
        print(v)
        for line in report(load_v(v, args.env), small, pos, args.env):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
