"""Stage 1: rollouts of an exploring policy (later rounds: the current controller plus noise),
one compressed .npz per rollout, collected by the lane engine's parallel workers."""
from __future__ import annotations

import numpy as np

from ..agent import TRAIN_SEED_END, Agent
from ..checkpoint import load_bundle
from ..engine.policies import ExplorePolicy, Recorder
from ..engine.rollout import Episode, LaneEngine
from . import StepReport


def data_dir(ctx, round_: int):
    return ctx.env_dir / "data" / f"round{round_}"


def rollout_length(path) -> int:
    with np.load(path) as data:
        return int(data["rewards"].shape[0])


def run(ctx):
    cfg = ctx.cfg
    out = data_dir(ctx, ctx.round)
    n = cfg.collect.rollouts
    seeds = np.random.default_rng([cfg.seed, ctx.round, 101]).integers(0, TRAIN_SEED_END, n)
    todo = [Episode(int(seeds[i]), tag=i) for i in range(n) if not (out / f"ep_{i:06d}.npz").exists()]
    # Env steps = the count before this round's collection + the steps of the rollouts on disk,
    # so a collection killed halfway and resumed counts every kept step exactly once.
    base = ctx.manifest.setdefault("collect_base", {}).setdefault(str(ctx.round), ctx.env_steps)
    ctx.env_steps = base + sum(rollout_length(p) for p in out.glob("ep_*.npz"))
    ctx.save_manifest()
    if len(todo) < n:
        ctx.log(f"collect: {n - len(todo)} of {n} rollouts already on disk, collecting the rest")
    if not todo:
        return
    ctx.progress(n, n - len(todo))
    lanes = min(cfg.controller.slots, len(todo))
    best = ctx.env_dir / "best.pt"
    if ctx.round == 0 or not best.exists():
        inner = ExplorePolicy(ctx.spec, lanes, cfg.collect.policy)
    else:  # best.pt carries the V and M its controller was trained with, whatever round that was
        agent, params = Agent.from_bundle(load_bundle(best))
        inner = agent.to(ctx.device).policy(params.reshape(1, -1), lanes, ctx.device, noise=cfg.collect.noise)
    recorder = Recorder(inner, lanes, lambda ep: out / f"ep_{ep.tag:06d}.npz")
    chunk = max(lanes * 4, 1)

    def count(length: int) -> None:
        ctx.env_steps += length
        ctx.tick(1)

    done = n - len(todo)
    with LaneEngine(ctx.spec, lanes, backend=ctx.backend, renderer=cfg.renderer,
                    max_steps=cfg.collect.max_steps) as engine:
        for index, start in enumerate(range(0, len(todo), chunk)):
            results = engine.run(todo[start:start + chunk], recorder, on_result=lambda r: count(r.length),
                                 keep_going=lambda: not ctx.out_of_budget(),
                                 abort=ctx.interrupted)  # finished rollouts are on disk already
            done += len(results)
            yield StepReport("collect", index, {"rollouts": done, "env_steps": ctx.env_steps,
                                                 "mean_return": float(np.mean([r.ret for r in results] or [0]))},
                             total=n)
            if ctx.out_of_budget() or ctx.interrupted():
                break
