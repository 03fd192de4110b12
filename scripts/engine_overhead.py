"""The lane engine's own cost: a free 96x96 env and a constant policy, so what is measured is
the master's loop, the pipes and shared memory, and the workers' Python around env.step.

    python scripts/engine_overhead.py [--lanes 128] [--workers 2] [--steps 200]

Prints steps/s and the master's CPU time per step. On the dev machine (2 cores, with a training
run beside it): ~7,000-10,000 steps/s, master 19-25 us a step; so the master's loop, at ~10,000
steps/s on the GPU machine, takes a fifth of a core or less, and the policy's own time
(V, M, C and their GPU calls) is what remains to account for there.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

ENV_ID = "engine_overhead:NullImage-v0"  # module:id, so spawned workers import and register it


class NullImage(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (96, 96, 3), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((96, 96, 3), np.uint8), {}

    def step(self, action):
        return np.zeros((96, 96, 3), np.uint8), 0.0, False, False, {}


if "NullImage-v0" not in gym.registry:
    gym.register("NullImage-v0", entry_point=NullImage)


class ConstantPolicy:
    def start(self, lane, episode):
        pass

    def act(self, obs, lanes):
        return [np.array([0.0, 0.5, 0.0], np.float32) for _ in lanes]

    def observe(self, *args):
        pass

    def end(self, lane):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200, help="steps per episode; one episode per lane")
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")  # the env checker's note that frames share memory
    from worldmodels.engine.rollout import Episode, LaneEngine
    from worldmodels.envs import probe_spec

    spec = probe_spec(ENV_ID)
    episodes = [Episode(seed=i) for i in range(args.lanes)]
    with LaneEngine(spec, args.lanes, workers=args.workers, max_steps=args.steps) as engine:
        engine.run(episodes, ConstantPolicy())  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        engine.run(episodes, ConstantPolicy())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"lanes {args.lanes}, workers {args.workers}: {engine.steps / wall:,.0f} steps/s, "
          f"master cpu {1e6 * cpu / engine.steps:.1f} us/step ({engine.steps} steps in {wall:.2f} s)")


if __name__ == "__main__":
    main()
