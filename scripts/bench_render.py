#!/usr/bin/env python
"""Benchmark the CarRacing renderers: official vs exact vs fast.

    python scripts/bench_render.py [--steps N] [--seed S] [--chunk C] [--cpu K] [--json]

Runs, in one process and one thread, the three renderers of
``worldmodels.envs.carracing.CarRacing`` over the same seed and the same
seeded random actions (with gas, so the car drives and turns), interleaved in
chunks of C steps (rotating which renderer goes first) so that machine noise
hits all three alike.  Steps/s are env-only (``env.step`` plus the resets at
episode ends; nothing else), measured as steps per CPU-second of this process
(per-core throughput, less sensitive to other processes than wall time; wall
figures are printed too).

Also checks that the exact renderer's frames are bit-identical to official and
reports the fast renderer's mean absolute pixel error (0..255 scale) over all
frames, the worst single frame's error, and the same restricted to the 84
scene rows (without the indicator bar).

With ``--json`` the last stdout line is one JSON object with the keys
official_steps_per_s, exact_steps_per_s, fast_steps_per_s, exact_ratio,
fast_ratio, fast_mean_abs_err, fast_worst_frame_err.

``measure_renderers(steps, seed)`` returns the full result dict; the script
can be imported by path (``scripts/`` is not a package).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# one thread everywhere (must be set before numpy/cv2 start thread pools)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import cv2  # noqa: E402
import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from worldmodels.envs.carracing import CarRacing, random_driving  # noqa: E402

RENDERERS = ("official", "exact", "fast")
JSON_KEYS = (
    "official_steps_per_s",
    "exact_steps_per_s",
    "fast_steps_per_s",
    "exact_ratio",
    "fast_ratio",
    "fast_mean_abs_err",
    "fast_worst_frame_err",
)


def _single_thread() -> None:
    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")  # never import torch here, but tame it if loaded
    if torch is not None:
        torch.set_num_threads(1)


def _make(renderer: str):
    if renderer == "official":
        return gym.make("CarRacing-v3").unwrapped  # the real thing
    return CarRacing(renderer=renderer)


def measure_renderers(steps: int = 1000, seed: int = 0, chunk: int = 25) -> dict:
    """Interleaved env-only throughput of the three renderers + fast's error.

    Returns a dict with the JSON keys (see module doc) plus
    ``*_wall_steps_per_s``, ``exact_mismatched_frames``, ``fast_scene_mean_abs_err``,
    ``fast_scene_worst_frame_err``, ``frames``, ``episodes``, ``steps``, ``seed``.
    """
    _single_thread()
    actions = random_driving(seed, steps)
    envs = {r: _make(r) for r in RENDERERS}
    obs = {r: envs[r].reset(seed=seed)[0] for r in RENDERERS}  # warm-up, not timed
    cpu = dict.fromkeys(RENDERERS, 0.0)
    wall = dict.fromkeys(RENDERERS, 0.0)
    err_sum = 0.0
    scene_sum = 0.0
    worst = 0.0
    scene_worst = 0.0
    frames = 0
    mismatched = 0
    episodes = 1

    def compare(off, ex, fa):
        nonlocal err_sum, scene_sum, worst, scene_worst, frames, mismatched
        for o, e, f in zip(off, ex, fa):
            if not np.array_equal(o, e):
                mismatched += 1
            d = np.abs(o.astype(np.int16) - f.astype(np.int16))
            m = float(d.mean())
            ms = float(d[:84].mean())
            err_sum += m
            scene_sum += ms
            worst = max(worst, m)
            scene_worst = max(scene_worst, ms)
            frames += 1

    compare([obs["official"]], [obs["exact"]], [obs["fast"]])
    episode_seed = seed
    for k, start in enumerate(range(0, steps, chunk)):
        acts = actions[start : start + chunk]
        order = RENDERERS[k % 3 :] + RENDERERS[: k % 3]
        got = {}
        ends = {}
        for r in order:
            env = envs[r]
            out = []
            end = None
            c0, w0 = time.process_time(), time.perf_counter()
            for i, a in enumerate(acts):
                o, _rew, term, trunc, _info = env.step(a)
                out.append(o)
                if term or trunc:  # same step for all renderers (same physics)
                    end = i
                    env.reset(seed=episode_seed + 1)
                    break
            cpu[r] += time.process_time() - c0
            wall[r] += time.perf_counter() - w0
            got[r] = out
            ends[r] = end
        if len(set(ends.values())) != 1:
            raise RuntimeError(f"renderers diverged (episode ends {ends})")
        compare(got["official"], got["exact"], got["fast"])
        if ends["official"] is not None:
            episode_seed += 1
            episodes += 1
            # the rest of this chunk's actions are dropped for all renderers
    n_steps = frames - 1
    for env in envs.values():
        env.close()

    def rate(t):
        return n_steps / t if t > 0 else float("nan")

    res = {
        "official_steps_per_s": rate(cpu["official"]),
        "exact_steps_per_s": rate(cpu["exact"]),
        "fast_steps_per_s": rate(cpu["fast"]),
    }
    res["exact_ratio"] = res["exact_steps_per_s"] / res["official_steps_per_s"]
    res["fast_ratio"] = res["fast_steps_per_s"] / res["official_steps_per_s"]
    res["fast_mean_abs_err"] = err_sum / frames
    res["fast_worst_frame_err"] = worst
    res.update(
        {
            "official_wall_steps_per_s": rate(wall["official"]),
            "exact_wall_steps_per_s": rate(wall["exact"]),
            "fast_wall_steps_per_s": rate(wall["fast"]),
            "exact_mismatched_frames": mismatched,
            "fast_scene_mean_abs_err": scene_sum / frames,
            "fast_scene_worst_frame_err": scene_worst,
            "frames": frames,
            "episodes": episodes,
            "steps": n_steps,
            "seed": seed,
        }
    )
    return res


def format_table(res: dict) -> str:
    base = res["official_steps_per_s"]
    base_w = res["official_wall_steps_per_s"]
    lines = [
        f"CarRacing-v3 renderers: {res['steps']} steps, {res['episodes']} episode(s), "
        f"seed {res['seed']}, 1 thread",
        f"{'renderer':<10}{'steps/s (cpu)':>15}{'ms/step':>10}{'x official':>12}"
        f"{'steps/s (wall)':>16}{'x official':>12}",
    ]
    for r in RENDERERS:
        v = res[f"{r}_steps_per_s"]
        w = res[f"{r}_wall_steps_per_s"]
        lines.append(f"{r:<10}{v:>15.1f}{1e3 / v:>10.3f}{v / base:>12.2f}{w:>16.1f}{w / base_w:>12.2f}")
    lines.append(
        f"exact: {res['exact_mismatched_frames']} of {res['frames']} frames differ from official"
    )
    lines.append(
        "fast: mean abs pixel error {:.3f}/255 (worst frame {:.3f}); scene rows 0-83 only: "
        "{:.3f} (worst {:.3f})".format(
            res["fast_mean_abs_err"],
            res["fast_worst_frame_err"],
            res["fast_scene_mean_abs_err"],
            res["fast_scene_worst_frame_err"],
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="env steps per renderer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=25, help="steps per interleaved timing chunk")
    ap.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = ap.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    res = measure_renderers(args.steps, args.seed, chunk=args.chunk)
    print(format_table(res))
    if args.json:
        print(json.dumps({k: round(float(res[k]), 4) for k in JSON_KEYS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
