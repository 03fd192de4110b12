"""Stage 1: rollouts of an exploring policy (later rounds: the current controller plus noise),
one compressed .npz per rollout, collected by the lane engine's parallel workers."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..agent import TRAIN_SEED_END, Agent
from ..checkpoint import load_arrays, load_bundle
from ..context import StageContext
from ..engine.policies import ExplorePolicy, Recorder, WorldModelPolicy
from ..engine.rollout import Episode, LaneEngine
from .base import StepReport


def rollout_length(path: str | Path) -> int:
    return int(load_arrays(path, ("rewards",))["rewards"].shape[0])


def _seeds(cfg, round_: int, stream: int, n: int) -> np.ndarray:
    return np.random.default_rng([cfg.seed, round_, stream]).integers(0, TRAIN_SEED_END, n)


def run(ctx: StageContext) -> Iterator[StepReport]:
    cfg = ctx.cfg
    out = ctx.files.rollouts(ctx.round)
    n = cfg.collect.rollouts
    cap = 10 * n  # min_frames tops up with at most 9 x rollouts more
    seeds = _seeds(cfg, ctx.round, 101, n)
    extra_seeds = _seeds(cfg, ctx.round, 102, cap - n)  # its own stream: the first n stay as they were
    todo = [Episode(int(seeds[i]), tag=i) for i in range(n) if not (out / f"ep_{i:06d}.npz").exists()]
    # Env steps = the count before this round's collection + the steps of the rollouts on disk,
    # so a collection killed halfway and resumed counts every kept step once. on_disk holds each
    # rollout's actions (= frames for V); with an action repeat of k a rollout took k env steps
    # an action, up to collect.max_steps (only an episode that terminated on a held step took
    # fewer, and a resume counts its last action as k).
    repeat, step_cap = ctx.spec.action_repeat, cfg.collect.max_steps

    def env_steps(actions: int) -> int:
        return min(actions * repeat, step_cap) if step_cap > 0 else actions * repeat

    on_disk = {int(p.stem[3:]): rollout_length(p) for p in out.glob("ep_*.npz")}
    ctx.recount_steps(sum(env_steps(actions) for actions in on_disk.values()))
    ctx.save_manifest()
    if on_disk:
        ctx.log(f"collect: {len(on_disk)} rollouts already on disk, collecting the rest")

    def top_up() -> list[Episode]:
        """The next rollouts past the first n while the round holds fewer than min_frames frames:
        as many as the mean length so far says are missing."""
        frames = sum(on_disk.values())
        if frames >= cfg.collect.min_frames or len(on_disk) < n:
            return []
        need = -(-(cfg.collect.min_frames - frames) * len(on_disk) // max(frames, 1))
        free = [i for i in range(n, cap) if i not in on_disk][:need]  # holes a stop left first
        return [Episode(int(extra_seeds[i - n]), tag=i) for i in free]

    todo = todo or top_up()
    if not todo:
        return
    ctx.progress(n if len(on_disk) < n else len(on_disk) + len(todo), len(on_disk))
    lanes = min(cfg.controller.slots, len(todo))
    best = ctx.files.best
    inner: ExplorePolicy | WorldModelPolicy
    if ctx.round == 0 or not best.exists():
        inner = ExplorePolicy(ctx.spec, lanes, cfg.collect.policy)
    else:  # best.pt carries the V and M its controller was trained with, whatever round that was
        agent, params = Agent.from_bundle(load_bundle(best, ctx.spec.id), best, expect=ctx.spec)
        inner = agent.to(ctx.device).policy(params.reshape(1, -1), lanes, ctx.device, noise=cfg.collect.noise)
    writers = min(8, max(1, (os.cpu_count() or 2) // 4))
    recorder = Recorder(inner, lanes, lambda ep: out / f"ep_{ep.tag:06d}.npz", writers=writers)
    chunk = max(lanes * 4, 1)

    def count(tag: int, length: int) -> None:
        on_disk[tag] = -(-length // repeat)  # actions: only the last one can be held short
        ctx.count_steps(length)
        ctx.tick(1)

    index = 0
    try:
        with LaneEngine(ctx.spec, lanes, backend=ctx.backend, renderer=cfg.renderer,
                        max_steps=cfg.collect.max_steps) as engine:
            while todo:
                for start in range(0, len(todo), chunk):
                    batch = todo[start:start + chunk]
                    results = engine.run(batch, recorder,
                                         on_result=lambda r, batch=batch: count(batch[r.index].tag, r.length),
                                         keep_going=lambda: not ctx.out_of_budget(),
                                         abort=ctx.interrupted)
                    recorder.flush()  # the chunk's rollouts are on disk before its report
                    mean_return = float(np.mean([r.ret for r in results] or [0]))
                    yield StepReport("collect", index, {"rollouts": len(on_disk), "env_steps": ctx.env_steps,
                                                         "mean_return": mean_return},
                                     total=n)
                    index += 1
                    if ctx.out_of_budget() or ctx.interrupted():
                        return
                todo = top_up()
                if todo:
                    ctx.log(f"collect: {sum(on_disk.values())} frames in {len(on_disk)} rollouts, fewer than "
                            f"collect.min_frames={cfg.collect.min_frames}: {len(todo)} more")
                    ctx.progress(len(on_disk) + len(todo), len(on_disk))
    finally:
        recorder.close()  # every finished rollout is on disk before V reads them
