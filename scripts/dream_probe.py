"""Can dream training learn anything from this M? best.pt against random controllers, in M.

    python scripts/dream_probe.py RUN_DIR ENV [--random 14] [--rollouts 16] [--steps 500]
                                  [--tau 1.15] [--seed 0] [--json]

Runs best.pt's controller and --random controllers drawn like CMA-ES's first generation
(N(0, controller.sigma0 = 0.1) per parameter) inside the run's M, from the first frames of the
collected rollouts, M's done head ignored (every dream lasts --steps). If best.pt is a better
agent than random ones in the real env but not in the dream, M does not model how C changes the
reward, and dream generations cannot help. Measured on the Pong quick run's M (defaults):
best.pt -12.92 ± 1.37 per 500 dream steps, 14 random controllers -17.68 to -11.99 (mean
-14.25), rank 5 of 15; in the real env best.pt's generation averaged -4.75 per 500 steps
against -12.7 for the first, random one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodels.agent import Agent
from worldmodels.checkpoint import load_bundle
from worldmodels.engine.dream import dream_returns
from worldmodels.errors import CheckpointError
from worldmodels.runfolder import EnvFolder


def first_frames(env_dir: Path) -> torch.Tensor:
    firsts = []
    for path in sorted(EnvFolder(env_dir).encoded.glob("round*/*.npz")):
        with np.load(path) as data:
            firsts.append(data["mu"][:1].astype(np.float32))
    if not firsts:
        raise FileNotFoundError(f"{EnvFolder(env_dir).encoded} holds no encoded rollouts")
    return torch.as_tensor(np.concatenate(firsts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("env", help="the env's folder in the run: pong, breakout, carracing")
    ap.add_argument("--random", type=int, default=14, help="random controllers to compare with")
    ap.add_argument("--rollouts", type=int, default=16, help="dream episodes per controller")
    ap.add_argument("--steps", type=int, default=500, help="steps per dream episode")
    ap.add_argument("--tau", type=float, default=1.15, help="sampling temperature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = ap.parse_args(argv)
    env_dir = args.run / args.env
    if args.random < 1 or args.rollouts < 1 or args.steps < 1 or not args.tau > 0:
        print("dream_probe: --random, --rollouts and --steps must be >= 1 and --tau > 0", file=sys.stderr)
        return 2
    try:
        agent, params = Agent.from_bundle(load_bundle(EnvFolder(env_dir).best))
        pool = first_frames(env_dir)
    except (CheckpointError, FileNotFoundError, KeyError) as exc:
        print(f"dream_probe: {env_dir}: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    n = agent.controller.n_params
    candidates = np.concatenate([np.asarray(params, np.float32).reshape(1, -1),
                                 rng.normal(0, 0.1, (args.random, n)).astype(np.float32)])
    with torch.no_grad():
        returns, steps = dream_returns(agent.mdnrnn, agent.controller, candidates, pool, args.rollouts,
                                       args.steps, args.tau, seed=args.seed, inputs=agent.inputs,
                                       done_threshold=2.0)
    returns = returns.numpy().astype(np.float64)
    means = returns.mean(axis=1)
    rank = int((means[1:] > means[0]).sum()) + 1
    result = {"best_mean": float(means[0]), "best_std": float(returns[0].std()),
              "random_min": float(means[1:].min()), "random_max": float(means[1:].max()),
              "random_mean": float(means[1:].mean()), "rank": rank, "controllers": len(means),
              "dream_steps": int(steps), "steps": args.steps, "tau": args.tau}
    print(f"{steps} dream steps ({args.rollouts} episodes x {args.steps} steps per controller, tau {args.tau:g})")
    print(f"best.pt: {means[0]:.2f} ± {returns[0].std():.2f}; {args.random} random controllers: "
          f"{means[1:].min():.2f} to {means[1:].max():.2f} (mean {means[1:].mean():.2f}); "
          f"best.pt ranks {rank} of {len(means)}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
