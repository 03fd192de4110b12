"""Stage 5: train C with CMA-ES (ask/tell); fitness = mean return over R rollouts.

All P x R episodes of a generation run on the lane engine in one batched policy. CMA-ES
draws from its own RandomState, and training seeds from a Generator whose state is saved,
so a resumed run continues exactly like an uninterrupted one.
"""
from __future__ import annotations

import math
import pickle
import time
from collections.abc import Iterator

import cma
import numpy as np
import torch

from ..agent import TRAIN_SEED_END, Agent
from ..checkpoint import load_arrays
from ..config import TrainConfig
from ..context import StageContext
from ..engine.dream import done_threshold_for, dream_returns
from ..engine.rollout import Episode, LaneEngine
from ..errors import UserError
from ..models.controller import Controller, history_features
from .base import StepReport
from .vae import spread


def new_strategy(n_params: int, cfg: TrainConfig, seed: int) -> cma.CMAEvolutionStrategy:
    options = {"popsize": cfg.controller.pop_size, "randn": np.random.RandomState(seed).randn,
               "seed": np.nan, "verbose": -9, "CMA_diagonal": n_params > 2000}
    return cma.CMAEvolutionStrategy(np.zeros(n_params), cfg.controller.sigma0, options)


def floor_rel_step(es: cma.CMAEvolutionStrategy, floor: float) -> bool:
    """Raise sigma so that sigma * sqrt(n) >= floor * |mean|; True when it was raised."""
    if floor <= 0:
        return False
    n = len(es.mean)
    target = floor * float(np.linalg.norm(es.mean)) / math.sqrt(n)
    if es.sigma >= target:
        return False
    es.sigma = target
    return True


def rel_step(es: cma.CMAEvolutionStrategy) -> float:
    """sigma * sqrt(n) / |mean|: the typical step over the distance from the origin."""
    norm = float(np.linalg.norm(es.mean))
    return float(es.sigma) * math.sqrt(len(es.mean)) / norm if norm > 0 else float("inf")


def gens_for_round(cfg: TrainConfig, round_: int) -> int:
    """Generations (in total, over rounds so far) that round `round_` may reach."""
    return math.ceil(cfg.max_gens * (round_ + 1) / cfg.rounds)


def finite_fitness(fitness: np.ndarray) -> np.ndarray:
    """NaN or inf fitness never reaches CMA-ES: it becomes worse than the worst finite one."""
    ok = np.isfinite(fitness)
    if ok.all():
        return fitness
    worst = fitness[ok].min() - 1.0 if ok.any() else -1e9
    return np.where(ok, fitness, worst)


def dream_starts(ctx: StageContext) -> tuple[torch.Tensor, bool]:
    """Where dream episodes start (V's mu of the first frame of every rollout this round encoded),
    and whether any collected rollout ended (terminated) at all. run() reads them once a round."""
    firsts, ends = [], False
    for path in sorted(ctx.files.encodings(ctx.round).glob("*.npz")):
        data = load_arrays(path, ("mu", "terminated"), "encoded rollout")
        firsts.append(data["mu"][:1].astype(np.float32))
        ends = ends or bool(np.any(data["terminated"]))
    if not firsts:
        raise UserError(f"dream training needs encoded rollouts in {ctx.files.encodings(ctx.round)}; "
                        "run the encode stage")
    if not ends:
        ctx.log("controller: no collected rollout ended, so M's done head never saw an end; "
                "dream episodes run to dream.max_steps")
    return torch.as_tensor(np.concatenate(firsts)), ends


@torch.no_grad()
def feature_stats(ctx: StageContext, agent: Agent, max_rollouts: int = 64, whiten: bool = False,
                  moving: int = 0, keep: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Mean and std of C's inputs over the collected data: z = V's mu of each frame, h = M's
    state along each rollout before that frame, dz and earlier actions (as the policy sees them).
    whiten: the mean and the whitening map T [in, in] (rows: the covariance's eigenvectors over
    the std along each, at least 0.01), so T (x - mean) has unit variance along every axis.
    moving K: the mean, the std and the indices of the K inputs with the largest mean
    |x_t - x_{t-1}| along the rollouts (largest first), or with keep those indices as they are."""
    files = sorted(ctx.files.encodings(ctx.round).glob("*.npz"))
    if not files:
        key = "whiten" if whiten else "moving_inputs" if moving else "normalize"
        raise UserError(f"controller.{key} needs encoded rollouts in {ctx.files.encodings(ctx.round)}; "
                        "run the encode stage")
    device = next(agent.mdnrnn.parameters()).device
    feats = []
    for i in spread(len(files), max_rollouts):
        data = load_arrays(files[i], ("actions", "mu"), "encoded rollout")
        a = torch.as_tensor(data["actions"].astype(np.float32), device=device)  # M's encoding
        z = torch.as_tensor(data["mu"][:len(a)].astype(np.float32), device=device)  # frames C acted on
        h = z[:, :0]  # no h when C does not see it
        if agent.use_h:
            out, _ = agent.mdnrnn.lstm(torch.cat([z, a], dim=-1).unsqueeze(0))
            h = torch.cat([torch.zeros_like(out[0, :1]), out[0, :-1]])
        feats.append(history_features(agent.inputs, z, h, a).cpu().double())
    x = torch.cat(feats)
    center, std = x.mean(0).float().numpy(), x.std(0).clamp_min(1e-2).float().numpy()
    if moving:
        if moving > x.shape[1]:
            raise UserError(f"controller.moving_inputs is {moving}, but C has only {x.shape[1]} inputs")
        if keep is not None:
            return center, std, np.asarray(keep)
        change = torch.cat([(f[1:] - f[:-1]).abs() for f in feats]).mean(0)
        return center, std, np.argsort(-change.numpy(), kind="stable")[:moving]
    if not whiten:
        return center, std
    var, axes = torch.linalg.eigh(torch.cov(x.T).reshape(x.shape[1], x.shape[1]))
    t = axes.T / var.clamp_min(0.0).sqrt().clamp_min(1e-2)[:, None]
    return center, t.float().numpy()


def search_controller(controller: Controller, norm: tuple[np.ndarray, ...] | None) -> Controller:
    """The controller whose parameters CMA-ES searches: C itself, or with moving_inputs C over
    the K chosen inputs only."""
    if norm is None or len(norm) < 3:
        return controller
    return Controller(len(norm[2]), controller.action_kind, controller.out_dim, list(controller.low),
                      list(controller.high), hidden=controller.hidden)


def controller_params(solutions: np.ndarray, controller: Controller,
                      norm: tuple[np.ndarray, ...] | None) -> np.ndarray:
    """CMA-ES's vectors -> the controller's, folded into C's first layer:
    W' (x - center) / scale + b' = W x + b with W = W' / scale and b = b' - W center, or with a
    whitening map T (a matrix in place of scale) W = W' T, or with moving_inputs' indices (norm's
    third item) W' over those inputs alone, scattered into W with zeros elsewhere.
    norm None: unchanged."""
    if norm is None:
        return solutions
    center, scale = (torch.as_tensor(v) for v in norm[:2])
    if len(norm) > 2:
        chosen = torch.as_tensor(norm[2], dtype=torch.long)
        w_chosen, b, *rest = search_controller(controller, norm).unflatten(solutions)
        w = torch.zeros(*w_chosen.shape[:-1], controller.in_dim, dtype=w_chosen.dtype)
        w[..., chosen] = w_chosen / scale[chosen].to(w.dtype)
    else:
        w, b, *rest = controller.unflatten(solutions)
        w = w @ scale.to(w.dtype) if scale.ndim == 2 else w / scale
    return controller.flatten(w, b - w @ center, *rest)


def run(ctx: StageContext) -> Iterator[StepReport]:
    cfg = ctx.cfg
    dream_steps = -(-cfg.dream.max_steps // ctx.spec.action_repeat)  # M steps once per (held) action
    agent = ctx.load_agent()
    state = ctx.resume_state
    rng = np.random.default_rng([cfg.seed, 404])
    norm = None
    whiten, moving = cfg.controller.whiten, cfg.controller.moving_inputs
    if cfg.controller.normalize or whiten or moving:  # per round: later rounds retrain V and M
        saved = state.get("norm") if state is not None else None
        fresh = saved is None or saved[0] != ctx.round
        # A later round keeps the earlier round's chosen inputs, in their order: CMA-ES goes on
        # searching the same weights (for the same inputs), standardized over the new data.
        kept = saved[3] if fresh and saved is not None and moving else None
        norm = saved[1:] if saved is not None and not fresh else feature_stats(ctx, agent, whiten=whiten,
                                                                                 moving=moving, keep=kept)
        if kept is not None:
            ctx.log(f"controller: round {ctx.round} keeps the inputs chosen before ("
                    f"{', '.join(str(int(i)) for i in kept)}), standardized over this round's data")
        elif fresh and whiten:
            stds = 1.0 / np.linalg.norm(norm[1], axis=1)
            ctx.log(f"controller: inputs whitened (std along the data's axes: {stds.min():.3g} to {stds.max():.3g})")
        elif fresh and moving:
            ctx.log(f"controller: C sees the {moving} inputs that move most, standardized: "
                    f"{', '.join(str(int(i)) for i in norm[2])} of {agent.controller.in_dim}")
        elif fresh:
            ctx.log(f"controller: inputs standardized (std over the data: {float(norm[1].min()):.3g} to "
                    f"{float(norm[1].max()):.3g})")
    if state is not None:
        es = pickle.loads(state["es"])  # noqa: S301 - inside a state signed with this user's key
        rng.bit_generator.state = state["rng"]
        gen = state["gen"] + 1
        wall = state["wall_s"]
    else:
        es = new_strategy(search_controller(agent.controller, norm).n_params, cfg, cfg.seed)
        gen, wall = 0, 0.0
    last_gen = gens_for_round(cfg, ctx.round)
    pop, reps = cfg.controller.pop_size, cfg.controller.rollouts
    lanes = min(cfg.controller.slots, pop * reps)
    ctx.progress(last_gen, gen)
    capped = f"reached max_gens ({cfg.max_gens} generations)"  # why training ends at the cap
    if gen >= cfg.max_gens > 0 and state is not None and not ctx.should_stop:  # a resume past the cap
        ctx.log(f"controller: max_gens ({cfg.max_gens}) already reached; a larger --max-gens trains on")
        ctx.stop(capped)
    if gen >= last_gen or ctx.should_stop:
        return
    starts: tuple[torch.Tensor, bool] | None = None  # dream_starts(), read at the first dream generation
    with LaneEngine(ctx.spec, lanes, backend=ctx.backend, renderer=cfg.renderer,
                    max_steps=cfg.controller.max_steps, groups=cfg.controller.groups,
                    max_rewards=cfg.controller.max_rewards, max_lives=cfg.controller.max_lives,
                    stall_steps=cfg.controller.stall_steps, stall_penalty=cfg.controller.stall_penalty) as engine:
        while gen < last_gen and not ctx.should_stop:
            if gen > 0 and ctx.out_of_budget():
                ctx.stop(ctx.budget_reason())
                break
            start = time.perf_counter()
            asked = np.asarray(es.ask())
            solutions = controller_params(asked, agent.controller, norm)
            dreaming = gen < cfg.dream.gens
            if dreaming:
                if starts is None:
                    starts = dream_starts(ctx)
                pool, has_ends = starts
                dreamt, steps = dream_returns(
                    agent.mdnrnn, agent.controller, solutions, pool, cfg.dream.rollouts,
                    dream_steps, cfg.dream.temperature, seed=int(rng.integers(2**31)),
                    inputs=agent.inputs, device=ctx.device, done_threshold=done_threshold_for(has_ends))
                returns = dreamt.cpu().numpy().astype(np.float64)
            else:
                seeds = rng.integers(0, TRAIN_SEED_END, reps)
                episodes = [Episode(int(seed), cand) for cand in range(pop) for seed in seeds]
                results = engine.run(episodes, agent.policy(solutions, lanes, ctx.device), abort=ctx.interrupted)
                if len(results) < len(episodes):
                    return  # interrupted mid-generation: this generation is dropped, the last checkpoint stands
                returns = np.array([r.ret for r in results]).reshape(pop, reps)
                steps = engine.steps
                ctx.count_steps(steps)
            fitness = finite_fitness(returns.mean(axis=1))
            es.tell(list(asked), list(-fitness))
            floor_rel_step(es, cfg.controller.min_rel_step)
            seconds = time.perf_counter() - start
            wall += seconds
            best = int(np.argmax(fitness))
            metrics = {"gen": gen, "mode": "dream" if dreaming else "real", "best_fitness": float(fitness[best]),
                       "mean_fitness": float(fitness.mean()), "std_fitness": float(fitness.std()),
                       "sigma": float(es.sigma), "rel_step": rel_step(es),
                       "env_steps": ctx.env_steps,
                       "steps_per_s": steps / max(seconds, 1e-9), "wall_s": wall,
                       "dream_steps": steps if dreaming else 0}
            state = {"gen": gen, "es": es.pickle_dumps(), "rng": rng.bit_generator.state, "wall_s": wall,
                     "env_steps": ctx.env_steps, "round": ctx.round}
            if norm is not None:
                state["norm"] = (ctx.round, *norm)
            ctx.tick(1)
            yield StepReport("controller", gen, metrics, state=state,
                             state_path=ctx.files.controller_state,
                             extra={"best_params": solutions[best],
                                    "mean_params": controller_params(np.asarray(es.mean).reshape(1, -1),
                                                                     agent.controller, norm)[0]},
                             total=last_gen)
            gen += 1
            if ctx.interrupted():
                return
    if gen >= cfg.max_gens:
        ctx.stop(capped)
