"""How far does following the ball go in Breakout? A scripted player with the true positions.

    python scripts/breakout_follow.py [--offset PX] [--deadband PX] [--episodes N] [--json]

A reference for the Breakout row, not a World Models agent: it reads the ball's and the
paddle's columns from the official ALE/Breakout-v5's RAM (sticky actions 0.25, frameskip 4, as
the final evaluation plays) and presses RIGHT while the ball is more than `--deadband` columns
right of the paddle's column + `--offset`, LEFT while it is as far left, NOOP otherwise, and
FIRE while no ball is in play. That rule is linear in the positions (argmax of three linear
scores), so a controller of the agent's form can represent it: what it scores is a floor for
what the controller's search could reach from V's z or from the oracle's positions
(scripts/atari_oracle.py). Scores are mean ± std over full games on the final evaluation's seeds
(2e9 + i). Measured numbers are in docs/experiments.md (Breakout).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from worldmodels.seeds import FINAL_SEED_START

BALL_X, BALL_Y, PADDLE_X = 99, 101, 72  # RAM bytes (AtariARI's annotation); ball_y 0: no ball in play
NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3


def action(ram: np.ndarray, offset: float, deadband: float) -> int:
    if ram[BALL_Y] == 0:
        return FIRE
    d = float(ram[BALL_X]) - (float(ram[PADDLE_X]) + offset)
    return RIGHT if d > deadband else LEFT if d < -deadband else NOOP


def main(argv: list[str] | None = None) -> int:
    import gymnasium as gym

    from worldmodels.envs import quiet_native_stderr, register_all

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--offset", type=float, default=8.0, help="the paddle's centre from its RAM column (px)")
    p.add_argument("--deadband", type=float, default=2.0)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.episodes < 1 or args.deadband < 0:
        print("breakout_follow: --episodes must be >= 1 and --deadband >= 0", file=sys.stderr)
        return 2
    register_all()
    with quiet_native_stderr():
        env = gym.make("ALE/Breakout-v5", obs_type="ram")
    scores, steps = [], 0
    for i in range(args.episodes):
        ram, _ = env.reset(seed=FINAL_SEED_START + i)
        total, done = 0.0, False
        while not done:
            ram, r, terminated, truncated, _ = env.step(action(ram, args.offset, args.deadband))
            total += float(r)
            steps += 1
            done = terminated or truncated
        scores.append(total)
    env.close()
    result = {"offset": args.offset, "deadband": args.deadband, "episodes": args.episodes,
              "mean": float(np.mean(scores)), "std": float(np.std(scores)), "env_steps": steps, "scores": scores}
    print(f"ALE/Breakout-v5, following the ball (offset {args.offset:g}, deadband {args.deadband:g}): "
          f"{result['mean']:.2f} ± {result['std']:.2f} over {args.episodes} games, {steps / args.episodes:.0f} steps a game",
          file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
