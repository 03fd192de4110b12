"""The oracle diagnostic: CMA-ES on the true object positions, read from the Atari RAM.

    python scripts/atari_oracle.py --env pong [--hidden 16] [--velocity] [--prev-actions K] [--pad N [--pad-rho R]] [--diagonal]
        [--probe-v RUN [--probe-frames 20000]]
        [--max-env-steps 5000000] [--pop 16] [--rollouts 4] [--max-steps 500] [--max-points K] [--max-lives K] [--workers 2]
        [--seed 0] [--final-episodes 100] [--json] [--out FILE]

Not a World Models agent and never part of one: it answers where the Atari gap lies. C gets
perfect information (the ball's and paddles' positions from RAM, and with --velocity the ball's
motion since the previous step) instead of V's z and M's h, and is trained exactly as the
controller stage trains C: pycma ask/tell from a zero mean with sigma0, population `--pop`,
fitness the mean return of `--rollouts` episodes capped at `--max-steps` env steps (0: whole
games) and, with `--max-points K`, at K nonzero rewards (Pong: won minus lost over the first K
points, so a rally that lasts longer is worth nothing by itself), training seeds below the final evaluation's range, argmax over the env's full action
set, FIRE after a lost life (the agent's FireOnLifeLoss). The controller is linear or has one
tanh hidden layer (`--hidden`), like `controller.hidden`. Every `--eval-every` generations the
CMA-ES mean plays 8 whole games (seeds 1.5e9 + i, outside the budget); at the end it plays
`--final-episodes` whole games on the final evaluation's seeds (2e9 + i).

`--pad N` adds N inputs of fresh Gaussian noise every step, so the search has as many
parameters as the pixel controller's (whose z and h carry much that does not matter) while the
positions stay perfect: whether CMA-ES, not the picture, loses the score at that size.
`--pad-rho R` makes that noise smooth in time (each step keeps R of the last step's value,
x = R x + sqrt(1 - R^2) e; 1 = one draw an episode), closer to the dimensions of z and h that
do not matter, which change slowly. `--diagonal` runs the separable CMA-ES (pycma's
CMA_diagonal) whatever the size.

`--probe-v RUN` reads the positions from RUN's V instead of RAM: the frame goes through the
agent's preprocessing and V's encoder, and a ridge regression from mu to the RAM positions
(fitted on `--probe-frames` frames of play that follows the ball with 30% random actions, R^2
and median error on held-out frames recorded in the result) gives the positions C sees. A C
linear in these is linear in z, so it is one the pixel controller (linear in z) can represent:
if the search finds a player here and not on z, the search over z is what fails; if not, V's
picture of the ball is.

If even this controller stays far from the target at the budget, the optimiser, the fitness
or the controller's form holds the score back, not V's picture of the ball. Measured numbers
are in docs/experiments.md (Atari: the oracle diagnostic).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

ENVS = {"pong": "ALE/Pong-v5", "breakout": "ALE/Breakout-v5"}
# RAM addresses of the objects (as AtariARI annotates them): name -> byte.
RAM = {
    "pong": {"ball_x": 49, "ball_y": 54, "player_y": 51, "enemy_y": 50},
    "breakout": {"ball_x": 99, "ball_y": 101, "player_x": 72},
}
BALLS = ("ball_x", "ball_y")
CURVE_SEED_START = 1_500_000_000


def ram_positions(env: str, ram: np.ndarray) -> np.ndarray:
    return np.array([ram[a] for a in RAM[env].values()], np.float32)


def features(env: str, ram: np.ndarray, prev: np.ndarray | None, velocity: bool,
             pos: np.ndarray | None = None) -> np.ndarray:
    """RAM (or positions read elsewhere) -> positions scaled to about [-1, 1] (and the ball's
    motion since the last step)."""
    pos = ram_positions(env, ram) if pos is None else pos
    x = [(pos - 100.0) / 60.0]
    if velocity:
        n = len(BALLS)
        x.append(np.zeros(n, np.float32) if prev is None else np.clip((pos[:n] - prev[:n]) / 4.0, -3, 3))
    return np.concatenate(x), pos


class Policy:
    """Linear (hidden 0) or one tanh hidden layer; parameters laid out as the controller's."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int):
        self.layers = [(hidden, in_dim), (out_dim, hidden)] if hidden else [(out_dim, in_dim)]
        self.n_params = sum(o * i + o for o, i in self.layers)

    def weights(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out, at = [], 0
        for o, i in self.layers:
            out.append((params[at:at + o * i].reshape(o, i), params[at + o * i:at + o * i + o]))
            at += o * i + o
        return out

    @staticmethod
    def act(weights, x: np.ndarray) -> int:
        for k, (w, b) in enumerate(weights):
            x = w @ (np.tanh(x) if k else x) + b
        return int(np.argmax(x))


class VProbe:
    """The positions as a linear readout of V's z: frame -> the agent's 64x64 picture -> V's mu
    -> W [mu, 1] (ridge regression on the RAM positions). A C linear in these is linear in z."""

    def __init__(self, env_key: str, run: str, w: np.ndarray | None = None):
        import torch

        from worldmodels.checkpoint import load_torch
        from worldmodels.envs import probe_spec
        from worldmodels.models.vae import vae_from_bundle
        from worldmodels.runfolder import RunFolder

        torch.set_num_threads(1)
        path = RunFolder(Path(run)).env_by_slug(env_key).vae
        self.vae = vae_from_bundle(load_torch(path))
        self.spec = probe_spec(ENVS[env_key])
        self.w = w

    def mu(self, frames: np.ndarray) -> np.ndarray:
        import torch

        from worldmodels.envs import preprocess
        from worldmodels.models.vae import frames_to_tensor
        small = np.stack([preprocess(f, self.spec) for f in frames])
        with torch.inference_mode():
            return self.vae.encode(frames_to_tensor(small))[0].numpy().astype(np.float64)

    def positions(self, frame: np.ndarray) -> np.ndarray:
        assert self.w is not None
        return (np.r_[self.mu(frame[None])[0], 1.0] @ self.w).astype(np.float32)


def follow_action(env_key: str, ram: np.ndarray) -> int:
    """The scripted follower's action on the RAM positions: the own paddle toward the ball
    (Breakout: FIRE 1 when no ball is in play, RIGHT 2, LEFT 3; Pong: UP 2, DOWN 3)."""
    where = RAM[env_key]
    if env_key == "breakout":
        if ram[where["ball_y"]] == 0:
            return 1
        d = float(ram[where["ball_x"]]) - float(ram[where["player_x"]]) - 8.0
        return 2 if d > 2 else 3 if d < -2 else 0
    d = float(ram[where["ball_y"]]) - float(ram[where["player_y"]]) - 8.0
    return 3 if d > 2 else 2 if d < -2 else 0


def fit_probe(env_key: str, run: str, frames: int, seed: int) -> tuple[np.ndarray, dict]:
    """W for VProbe, fitted on `frames` frames of play that follows the ball from RAM with 30%
    random actions (rallies and broken bricks, as a controller that plays would see), only where
    a ball is in play; R^2 and the median error (RAM pixels) on the last 30%, held out."""
    import gymnasium as gym

    from worldmodels.agent import TRAIN_SEED_END
    from worldmodels.envs import quiet_native_stderr, register_all
    register_all()
    with quiet_native_stderr():
        env = gym.make(ENVS[env_key], obs_type="rgb")
    rng = np.random.default_rng([seed, 77])
    n_act = int(env.action_space.n)
    pics, pos = [], []
    obs, _ = env.reset(seed=int(rng.integers(TRAIN_SEED_END)))
    while len(pics) < frames:
        ram = env.unwrapped.ale.getRAM()
        if ram[RAM[env_key][BALLS[1]]] != 0:
            pics.append(obs)
            pos.append(ram_positions(env_key, ram))
        a = int(rng.integers(n_act)) if rng.random() < 0.3 else follow_action(env_key, ram)
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(TRAIN_SEED_END)))
    env.close()
    probe = VProbe(env_key, run)
    mu = np.concatenate([probe.mu(np.stack(pics[i:i + 512])) for i in range(0, len(pics), 512)])
    y = np.stack(pos).astype(np.float64)
    x = np.c_[mu, np.ones(len(mu))]
    train = np.arange(len(x)) < int(len(x) * 0.7)
    w = np.linalg.solve(x[train].T @ x[train] + 1e-2 * np.eye(x.shape[1]), x[train].T @ y[train])
    pred, true = x[~train] @ w, y[~train]
    r2 = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    err = np.median(np.abs(pred - true), axis=0)
    names = list(RAM[env_key])
    stats = {"frames": len(x), "r2": dict(zip(names, np.round(r2, 3).tolist())),
             "median_error_px": dict(zip(names, np.round(err, 2).tolist()))}
    w = np.linalg.solve(x.T @ x + 1e-2 * np.eye(x.shape[1]), x.T @ y)  # refit on all for the search
    return w, stats


_worker: dict = {}


def _init(env_key: str, velocity: bool, prev_actions: int, hidden: int, pad: int = 0, pad_rho: float = 0.0,
          probe: tuple[str, np.ndarray] | None = None) -> None:
    import gymnasium as gym

    from worldmodels.envs import FireOnLifeLoss, quiet_native_stderr, register_all
    from worldmodels.envs.ale_reset import fast_seeded_reset
    register_all()
    with quiet_native_stderr():
        env = gym.make(ENVS[env_key], obs_type="rgb" if probe else "ram")
    fast_seeded_reset(env.unwrapped)  # the official reset's states, without a ROM reload each
    meanings = env.unwrapped.get_action_meanings()
    if "FIRE" in meanings:
        env = FireOnLifeLoss(env, meanings.index("FIRE"))
    n_act = int(env.action_space.n)
    in_dim = len(RAM[env_key]) + (len(BALLS) if velocity else 0) + prev_actions * n_act + pad
    _worker.update(env=env, key=env_key, velocity=velocity, k=prev_actions, n_act=n_act, pad=pad, pad_rho=pad_rho,
                   policy=Policy(in_dim, n_act, hidden), probe=VProbe(env_key, *probe) if probe else None)


def _episode(job: tuple[np.ndarray, int, int, int, int]) -> tuple[float, int]:
    params, seed, max_steps, max_points, max_lives = job
    env, key, k, n_act = _worker["env"], _worker["key"], _worker["k"], _worker["n_act"]
    weights = _worker["policy"].weights(params)
    ram, info = env.reset(seed=int(seed))
    lives = int(info.get("lives", 0))
    prev, last = None, np.zeros((k, n_act), np.float32)
    pad, noise = _worker.get("pad", 0), np.random.default_rng(seed)
    rho = _worker.get("pad_rho", 0.0)
    drift = noise.standard_normal(pad).astype(np.float32) if pad and rho else None
    total, steps, points = 0.0, 0, 0
    while max_steps <= 0 or steps < max_steps:
        probe = _worker.get("probe")
        x, prev = features(key, ram, prev, _worker["velocity"], probe.positions(ram) if probe else None)
        if k:
            x = np.concatenate([x, last.ravel()])
        if drift is not None:  # smooth noise: an AR(1) process with unit variance
            drift = (rho * drift + np.sqrt(1.0 - rho * rho) * noise.standard_normal(pad)).astype(np.float32)
            x = np.concatenate([x, drift])
        elif pad:
            x = np.concatenate([x, noise.standard_normal(pad).astype(np.float32)])
        a = Policy.act(weights, x)
        if k:
            last = np.roll(last, 1, axis=0)
            last[0] = 0.0
            last[0, a] = 1.0
        ram, r, terminated, truncated, info = env.step(a)
        total += float(r)
        steps += 1
        points += r != 0
        lost = lives - int(info.get("lives", 0))
        if terminated or truncated or (max_points and points >= max_points) or (max_lives and lost >= max_lives):
            break
    return total, steps


def play(pool, params: np.ndarray, seeds, max_steps: int) -> tuple[np.ndarray, int]:
    out = pool.map(_episode, [(params, int(s), max_steps, 0, 0) for s in seeds], chunksize=1)
    return np.array([r for r, _ in out]), sum(s for _, s in out)


def main(argv: list[str] | None = None) -> int:
    import cma

    from worldmodels.agent import TRAIN_SEED_END
    from worldmodels.seeds import FINAL_SEED_START

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", choices=sorted(ENVS), default="pong")
    p.add_argument("--hidden", type=int, default=0)
    p.add_argument("--velocity", action="store_true", help="add the ball's motion since the last step")
    p.add_argument("--prev-actions", type=int, default=0)
    p.add_argument("--max-env-steps", type=int, default=5_000_000, help="training env steps")
    p.add_argument("--pop", type=int, default=16)
    p.add_argument("--rollouts", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=500, help="cap on a training episode; 0 = whole games")
    p.add_argument("--max-points", type=int, default=0,
                   help="also end a training episode after this many nonzero rewards (Pong: points played)")
    p.add_argument("--max-lives", type=int, default=0,
                   help="also end a training episode after this many lost lives (Breakout: 1 = a life is the unit)")
    p.add_argument("--sigma0", type=float, default=0.1)
    p.add_argument("--pad", type=int, default=0, help="extra inputs of Gaussian noise (the pixel C's size)")
    p.add_argument("--pad-rho", type=float, default=0.0,
                   help="the noise's correlation from one step to the next (0: fresh, 1: one draw an episode)")
    p.add_argument("--diagonal", action="store_true", help="separable CMA-ES (CMA_diagonal) at any size")
    p.add_argument("--probe-v", metavar="RUN", default="",
                   help="read the positions from RUN's V (a linear probe of mu) instead of RAM")
    p.add_argument("--probe-frames", type=int, default=20000, help="frames the probe is fitted on")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=25, help="generations between 8-game curve points (0: off)")
    p.add_argument("--final-episodes", type=int, default=100)
    p.add_argument("--final-max-steps", type=int, default=0, help="cap on final games (0: whole games)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default="", help="also write the result as JSON here")
    args = p.parse_args(argv)
    if min(args.pop, args.rollouts, args.workers, args.max_env_steps) < 1 or args.hidden < 0 or args.pad < 0 \
            or not 0.0 <= args.pad_rho <= 1.0:
        print("atari_oracle: --pop, --rollouts, --workers and --max-env-steps must be >= 1, --pad-rho in [0, 1]", file=sys.stderr)
        return 2
    probe, probe_stats = None, None
    if args.probe_v:
        from worldmodels.runfolder import RunFolder
        if args.probe_frames < 100 or not RunFolder(Path(args.probe_v)).env_by_slug(args.env).vae.exists():
            print(f"atari_oracle: --probe-v {args.probe_v} holds no {args.env} vae.pt, or --probe-frames < 100",
                  file=sys.stderr)
            return 2
        w, probe_stats = fit_probe(args.env, args.probe_v, args.probe_frames, args.seed)
        probe = (args.probe_v, w)
        print(f"probe of V's mu on {probe_stats['frames']} frames: R^2 {probe_stats['r2']}, median error "
              f"{probe_stats['median_error_px']} px", file=sys.stderr, flush=True)

    init = (args.env, args.velocity, args.prev_actions, args.hidden, args.pad, args.pad_rho, probe)
    pool = mp.get_context("spawn").Pool(args.workers, _init, init)
    try:
        _init(*init)  # the policy's layout, here
        n = _worker["policy"].n_params
        es = cma.CMAEvolutionStrategy(np.zeros(n), args.sigma0, {
            "popsize": args.pop, "randn": np.random.RandomState(args.seed).randn, "seed": np.nan,
            "verbose": -9, "CMA_diagonal": args.diagonal or n > 2000})
        rng = np.random.default_rng([args.seed, 404])
        steps, gen, curve, history, start = 0, 0, [], [], time.perf_counter()
        while steps < args.max_env_steps:
            asked = np.asarray(es.ask())
            seeds = rng.integers(0, TRAIN_SEED_END, args.rollouts)
            jobs = [(asked[c], int(s), args.max_steps, args.max_points, args.max_lives) for c in range(args.pop) for s in seeds]
            out = pool.map(_episode, jobs, chunksize=1)
            steps += sum(s for _, s in out)
            fitness = np.array([r for r, _ in out]).reshape(args.pop, args.rollouts).mean(1)
            es.tell(list(asked), list(-fitness))
            history.append({"gen": gen, "env_steps": steps, "mean_fitness": float(fitness.mean()),
                            "best_fitness": float(fitness.max()), "sigma": float(es.sigma)})
            if args.eval_every and (gen + 1) % args.eval_every == 0:
                games, _ = play(pool, np.asarray(es.mean), CURVE_SEED_START + np.arange(8), args.final_max_steps)
                curve.append({"gen": gen, "env_steps": steps, "mean": float(games.mean())})
                print(f"gen {gen} steps {steps:,} fitness mean {fitness.mean():.2f} best {fitness.max():.2f} "
                      f"sigma {es.sigma:.3f} | mean's 8 games {games.mean():.2f} "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
            gen += 1
        train_s = time.perf_counter() - start
        games, eval_steps = play(pool, np.asarray(es.mean), FINAL_SEED_START + np.arange(args.final_episodes),
                                 args.final_max_steps)
    finally:
        pool.terminate()
    result = {"env": ENVS[args.env], "hidden": args.hidden, "velocity": args.velocity,
              "prev_actions": args.prev_actions, "pop": args.pop, "rollouts": args.rollouts,
              "max_steps": args.max_steps, "max_points": args.max_points, "max_lives": args.max_lives, "sigma0": args.sigma0, "pad": args.pad, "pad_rho": args.pad_rho, "diagonal": args.diagonal, "probe_v": args.probe_v, "probe": probe_stats, "seed": args.seed, "n_params": n, "generations": gen,
              "env_steps": steps, "train_s": round(train_s, 1), "final_mean": float(games.mean()),
              "final_std": float(games.std()), "final_episodes": len(games), "final_eval_steps": eval_steps,
              "curve": curve, "history": history}
    line = (f"{ENVS[args.env]} oracle (hidden {args.hidden}, velocity {args.velocity}, prev_actions "
            f"{args.prev_actions}): {games.mean():.2f} ± {games.std():.2f} over {len(games)} games "
            f"after {gen} generations, {steps:,} env steps, {train_s / 60:.1f} min")
    print(line, file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
