"""How far does following the ball go in Pong? Scripted players with the true positions.

    python scripts/pong_follow.py [--policy follow|predict] [--episodes N] [--margin PX] [--offset PX] [--json]

A reference for the Pong row, not a World Models agent: it reads the ball and its own paddle
straight from the official ALE/Pong-v5 frame (210x160, sticky actions 0.25, frameskip 4, as the
final evaluation plays) and moves the paddle toward
- `follow`: the ball's row;
- `predict`: the row where the ball will reach the paddle (straight flight with bounces off the
  top and bottom walls, from the last two frames), the ball's row while it is not coming.
`--offset PX` brings the paddle's centre PX rows below that row (negative: above), so the ball
meets the paddle off its centre, where Pong returns it at a steeper angle.
Scores are mean ± std over full games on the final evaluation's seed range (2e9 + i). A scripted
player with perfect positions tells how much of Pong following the ball is worth; a controller
that only learned to follow it (the first thing a controller linear in z finds) should score
about the same. Measured numbers are in docs/experiments.md (Pong).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from worldmodels.seeds import FINAL_SEED_START

TOP, BOTTOM = 34, 194          # playfield rows between the walls
PADDLE_COLS = slice(140, 144)  # the agent's (green, right) paddle
PADDLE_RGB = (92, 186, 92)
BALL_RGB = (236, 236, 236)
UP, DOWN, NOOP = 2, 3, 0       # Pong's RIGHT moves the paddle up, LEFT down
PADDLE_COL = float(PADDLE_COLS.start)


def positions(frame: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """Official RGB frame -> (ball (row, col) in playfield coordinates or None, paddle centre row or None)."""
    field = frame[TOP:BOTTOM]
    ball = np.argwhere((field == BALL_RGB).all(-1))
    paddle = np.argwhere((field[:, PADDLE_COLS] == PADDLE_RGB).all(-1))
    return (ball.mean(0) if len(ball) else None), (float(paddle[:, 0].mean()) if len(paddle) else None)


def reflect(row: float, low: float, high: float) -> float:
    """A straight flight's row folded back between two walls."""
    span = high - low
    row = (row - low) % (2 * span)
    return low + (row if row < span else 2 * span - row)


def aim(ball: np.ndarray, previous: np.ndarray | None, policy: str) -> float:
    """The row to bring the paddle's centre to."""
    if policy == "predict" and previous is not None:
        d_row, d_col = ball - previous
        if d_col > 0.5:  # coming toward the paddle
            return reflect(ball[0] + d_row * (PADDLE_COL - ball[1]) / d_col, 0.0, BOTTOM - TOP - 1.0)
    return float(ball[0])


def action(frame: np.ndarray, previous: np.ndarray | None, policy: str, margin: float, offset: float = 0.0):
    """(env action, ball position to remember for the next step)."""
    ball, paddle = positions(frame)
    if ball is None or paddle is None:
        return NOOP, None
    target = aim(ball, previous, policy) + offset
    if paddle > target + margin:
        return UP, ball
    if paddle < target - margin:
        return DOWN, ball
    return NOOP, ball


def play(seed: int, policy: str, margin: float, max_steps: int | None = None, offset: float = 0.0) -> tuple[float, int]:
    import gymnasium as gym

    from worldmodels.envs import register_all
    register_all()
    env = gym.make("ALE/Pong-v5")  # not make_env: that adds FIRE after a lost point, a player of its own
    try:
        frame, _ = env.reset(seed=seed)
        total, steps, previous = 0.0, 0, None
        while max_steps is None or steps < max_steps:
            act, previous = action(frame, previous, policy, margin, offset)
            frame, reward, terminated, truncated, _ = env.step(act)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        return total, steps
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", choices=("follow", "predict"), default="follow")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--margin", type=float, default=2.0, help="dead zone in frame rows (default 2)")
    ap.add_argument("--offset", type=float, default=0.0, help="aim the paddle's centre PX rows below the ball (default 0)")
    ap.add_argument("--seed", type=int, default=FINAL_SEED_START, help="first seed (default the final evaluation's)")
    ap.add_argument("--max-steps", type=int, default=None, help="cut each game after N steps")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.margin < 0:
        print("pong_follow: --episodes must be >= 1 and --margin >= 0", file=sys.stderr)
        return 2
    scores, lengths = [], []
    for i in range(args.episodes):
        score, steps = play(args.seed + i, args.policy, args.margin, args.max_steps, args.offset)
        scores.append(score)
        lengths.append(steps)
        print(f"game {i + 1}/{args.episodes}: {score:+.0f} in {steps} steps", file=sys.stderr, flush=True)
    result = {"policy": args.policy, "margin": args.margin, "offset": args.offset, "episodes": args.episodes,
              "mean": float(np.mean(scores)), "std": float(np.std(scores)), "scores": scores,
              "mean_steps": float(np.mean(lengths))}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.policy} (margin {args.margin:g}, offset {args.offset:g}): {result['mean']:.2f} ± {result['std']:.2f} "
              f"over {args.episodes} games, {result['mean_steps']:.0f} steps a game")
    return 0


if __name__ == "__main__":
    sys.exit(main())
