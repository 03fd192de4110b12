#!/usr/bin/env python
"""Throughput benchmark: renderers, the lane engine, the naive baseline, dream rollouts.

    python scripts/bench.py [--episodes E] [--max-steps T] [--workers W] [--repeats R]
                            [--render-steps N] [--dream-steps N] [--device auto|cpu|cuda]
                            [--engine-threads 0,1] [--json]
    python scripts/bench.py engine --env carracing|pong --episodes E --max-steps T --workers W
                            [--lanes L] [--renderer fast|exact|official] [--device D]
                            [--groups G] [--action-repeat K] [--torch-threads N] [--profile N] [--json]
    python scripts/bench.py naive  --env carracing|pong --episodes E --max-steps T --workers W [--json]
    python scripts/bench.py dream  --batch 1024|16384 [--steps N] [--device D] [--json]

engine: a population of random controllers (V and M at default sizes: z 32, LSTM 256, 5
mixtures, random untrained weights) plays E episodes in total, `population` candidates with
E/population episodes each, on `LaneEngine` + `Agent.policy(...)` exactly as the trainer's
controller stage does (one batched policy in this process, envs in W worker processes,
`lanes` lockstep lanes, the fast CarRacing renderer unless told otherwise). Start-up (worker
spawn, env creation, a warm-up forward pass) is not timed.

naive: the same workload run the way public ports do: W worker processes, each with its own
V+M+C copy (torch, 1 thread), each stepping ONE official env at batch 1; episodes split over
the workers. Start-up (spawn, imports, model and env creation) is not timed.

dream: `dream_returns` on population x rollouts = batch (1024 = 64 x 16, 16384 = 256 x 64),
done_threshold 2.0 so every episode stays alive and the step count is exact.

engine, naive and dream print as the last stdout line one JSON object with at least
env_steps (dream: dream_steps), seconds (wall, timed part only), steps_per_s, peak_rss_mb
(sum of the per-process peaks of this process and its worker processes: VmHWM from /proc
where available, else resource.getrusage ru_maxrss of RUSAGE_SELF + RUSAGE_CHILDREN) and
device; also cpu_s (CPU seconds of this process and its workers over the timed part) and
steps_per_cpu_s.

The default run (no subcommand) measures everything in one go: the CarRacing renderers (env
only, 1 thread, via scripts/bench_render.py), then engine and naive on CarRacing and Pong on one
generation of the laptop config `quick` (64 episodes = population 16 x 4 rollouts, on 64 lanes
as its controller.slots, episodes cut at 100 steps to keep the run short), interleaved
(engine, naive, naive, engine, ...; each run in its own subprocess so peak RSS and thread settings are per run) and reports medians, then dream
steps/s at batch 1,024 and 16,384, and the ratios: engine vs official single-process env-only
steps/s on CarRacing (target >= 6x) and engine vs naive on Pong (target >= 2x).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# The environment as we got it: subprocesses get this one, so that bench_render's
# one-thread settings (it sets OMP_NUM_THREADS etc. when imported) never leak into the
# engine master, which must run with torch's default thread count.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
_ENV0 = dict(os.environ)

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

Z_DIM, HIDDEN, GAUSSIANS = 32, 256, 5
SIGMA0 = 0.1  # controller.sigma0's default: candidates ~ N(0, sigma0^2)
ENVS = {"carracing": "CarRacing-v3", "pong": "ALE/Pong-v5", "breakout": "ALE/Breakout-v5"}
DREAM_SHAPES = {1024: (64, 16), 16384: (256, 64)}
RESULT_KEYS = ("env_steps", "seconds", "steps_per_s", "peak_rss_mb", "device")


# -- measuring helpers ----------------------------------------------------------------------
def _clk_tck() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 100.0


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a live process, from /proc; None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / _clk_tck()


def proc_peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size (VmHWM) of a live process in MiB; None where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _maxrss_mb(who) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, KiB elsewhere


def self_peak_rss_mb() -> float:
    value = proc_peak_rss_mb("self")
    return value if value is not None else _maxrss_mb(resource.RUSAGE_SELF)


def cpu_sum(pids: list[int]) -> float | None:
    values = [proc_cpu_s(pid) for pid in pids]
    return None if any(v is None for v in values) else sum(values)


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(device)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finish(out: dict, steps_key: str = "env_steps") -> dict:
    steps, seconds, cpu = out[steps_key], out["seconds"], out.get("cpu_s")
    out["steps_per_s"] = steps / seconds if seconds > 0 else float("nan")
    out["steps_per_cpu_s"] = steps / cpu if cpu else None
    return out


def _build_spec(env: str):
    from worldmodels.envs import probe_spec

    return probe_spec(ENVS.get(env.lower(), env))


def candidate_params(n_params: int, population: int, seed: int) -> np.ndarray:
    return (np.random.default_rng([seed, 1]).standard_normal((population, n_params)) * SIGMA0).astype(np.float32)


def workload(episodes: int, population: int, seed: int) -> tuple[int, list[tuple[int, int]]]:
    """(population, [(env seed, candidate)]): as the trainer, the same R seeds for every candidate."""
    population = max(1, min(population, episodes))
    reps = -(-episodes // population)
    seeds = np.random.default_rng([seed, 2]).integers(0, 1_000_000_000, reps)
    pairs = [(int(s), cand) for cand in range(population) for s in seeds]
    return population, pairs[:episodes]


# -- engine -----------------------------------------------------------------------------------
class where_closed:
    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        return self.backend

    def __exit__(self, *exc):
        self.backend.close()


def run_engine(env: str, episodes: int, max_steps: int, workers: int, lanes: int = 0,
               renderer: str = "fast", device: str = "auto", population: int = 16, seed: int = 0,
               profile: int = 0, torch_threads: int = 0, backend: str = "local", ray_address: str = "",
               groups: int = 2, action_repeat: int = 1, spin_us: float = 0.0) -> dict:
    import torch

    if spin_us > 0:  # read by the workers (spawned below) and the master's side of their pipes
        from worldmodels.engine.workers import SPIN_ENV

        os.environ[SPIN_ENV] = str(spin_us)
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)

    from worldmodels.agent import Agent, resolve_device
    from worldmodels.engine.rollout import Episode, LaneEngine
    from worldmodels.envs import with_action_repeat

    spec = with_action_repeat(_build_spec(env), action_repeat)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    agent = Agent.build(spec, Z_DIM, HIDDEN, GAUSSIANS).to(dev)
    population, pairs = workload(episodes, population, seed)
    params = candidate_params(agent.controller.n_params, population, seed)
    episode_list = [Episode(s, cand) for s, cand in pairs]
    lanes = lanes or min(64, episodes)
    from worldmodels.engine.backends import make_backend

    where = make_backend(backend, workers, ray_address)  # start-up (ray.init, actors) is not timed
    with where_closed(where), LaneEngine(spec, lanes, renderer=renderer, max_steps=max_steps,
                                         backend=where, groups=groups) as engine:
        # not timed: one forward pass (lazy init, CUDA context, kernels), as a trainer's later generations
        warm = agent.policy(params, lanes, dev)
        warm.act(np.zeros((lanes, 64, 64, 3), np.uint8), range(lanes))
        _sync(dev)
        pids = [w.process.pid for w in engine.workers if getattr(w, "process", None) is not None]
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
        child0 = cpu_sum(pids)
        c0, t0 = time.process_time(), time.perf_counter()
        if prof is not None:
            prof.enable()
        results = engine.run(episode_list, agent.policy(params, lanes, dev))
        _sync(dev)
        if prof is not None:
            prof.disable()
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        child1 = cpu_sum(pids)
        steps = engine.steps
        worker_rss = [proc_peak_rss_mb(pid) for pid in pids]
        n_workers = len(engine.workers)
    rss = self_peak_rss_mb()
    if any(v is None for v in worker_rss):  # no /proc: the largest waited-for child only
        rss += _maxrss_mb(resource.RUSAGE_CHILDREN)
    else:
        rss += sum(worker_rss)
    if prof is not None:
        import pstats

        print(f"cProfile of the timed engine.run (master process only; {steps} steps):", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(profile)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(profile)
    out = {"mode": "engine", "env": spec.id, "env_steps": int(steps), "seconds": seconds,
           "peak_rss_mb": rss, "device": _device_name(dev),
           "cpu_s": (cpu + (child1 - child0) if child0 is not None and child1 is not None and backend == "local"
                     else None),
           "master_cpu_s": cpu, "episodes": len(results), "max_steps": max_steps, "workers": n_workers,
           "lanes": lanes, "groups": len(engine.groups), "action_repeat": spec.action_repeat, "population": population, "renderer": renderer if spec.id == "CarRacing-v3" else "ale",
           "torch_threads": torch.get_num_threads(), "backend": backend, "spin_us": spin_us}
    return _finish(out)


# -- naive ------------------------------------------------------------------------------------
def _naive_worker(conn, env_id: str, pairs: list, population: int, max_steps: int, seed: int,
                  model: bool = True) -> None:
    """One process, its own V+M+C (1 torch thread), one official env stepped at batch 1.
    model False: the official env alone with random actions (the env-only rate of W processes)."""
    try:
        import torch

        torch.set_num_threads(1)
        from worldmodels.agent import Agent
        from worldmodels.engine.rollout import Episode
        from worldmodels.envs import make_env, preprocess, probe_spec

        spec = probe_spec(env_id)
        torch.manual_seed(seed)
        agent = Agent.build(spec, Z_DIM, HIDDEN, GAUSSIANS)
        params = candidate_params(agent.controller.n_params, population, seed)
        env = make_env(spec, renderer="official", max_steps=max_steps)
        agent.policy(params[:1], 1, "cpu").act(np.zeros((1, 64, 64, 3), np.uint8), [0])  # warm-up
        env.action_space.seed(seed)
    except Exception as exc:  # noqa: BLE001 - reported to the master
        conn.send(("error", repr(exc)))
        return
    conn.send(("ready", os.getpid()))
    conn.recv()  # go
    c0, t0 = time.process_time(), time.perf_counter()
    steps = 0
    for env_seed, cand in pairs:
        policy = agent.policy(params[cand:cand + 1], 1, "cpu")
        policy.start(0, Episode(env_seed, 0))
        obs, _ = env.reset(seed=env_seed)
        frame = preprocess(obs, spec)[None]
        while True:
            action = policy.act(frame, [0])[0] if model else env.action_space.sample()
            obs, _reward, terminated, truncated, _ = env.step(action)
            steps += 1
            if model:
                frame = preprocess(obs, spec)[None]
            if terminated or truncated:
                break
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    env.close()
    conn.send(("done", {"steps": steps, "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": self_peak_rss_mb()}))
    conn.close()


def run_naive(env: str, episodes: int, max_steps: int, workers: int, population: int = 16,
              seed: int = 0, model: bool = True) -> dict:
    spec = _build_spec(env)
    population, pairs = workload(episodes, population, seed)
    workers = max(1, min(workers, len(pairs)))
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for w in range(workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_naive_worker, daemon=True,
                           args=(child, spec.id, pairs[w::workers], population, max_steps, seed, model))
        proc.start()
        child.close()
        procs.append(proc)
        conns.append(parent)
    try:
        for conn in conns:
            status, info = conn.recv()
            if status != "ready":
                raise RuntimeError(f"naive worker failed to start: {info}")
        c0, t0 = time.process_time(), time.perf_counter()
        for conn in conns:
            conn.send("go")
        reports = []
        for conn in conns:
            status, info = conn.recv()
            if status != "done":  # pragma: no cover
                raise RuntimeError(f"naive worker failed: {info}")
            reports.append(info)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        for proc in procs:
            proc.join(10.0)
            if proc.is_alive():  # pragma: no cover
                proc.kill()
                proc.join(2.0)
    out = {"mode": "naive" if model else "official-env", "env": spec.id, "env_steps": sum(r["steps"] for r in reports), "seconds": seconds,
           "peak_rss_mb": self_peak_rss_mb() + sum(r["peak_rss_mb"] for r in reports), "device": "cpu",
           "cpu_s": cpu + sum(r["cpu_s"] for r in reports), "master_cpu_s": cpu,
           "worker_seconds": [r["seconds"] for r in reports], "episodes": len(pairs), "max_steps": max_steps,
           "workers": workers, "lanes": 1, "population": population,
           "renderer": "official" if spec.id == "CarRacing-v3" else "ale", "torch_threads": 1}
    return _finish(out)


# -- dream ------------------------------------------------------------------------------------
def dream_shape(batch: int, population: int = 0, rollouts: int = 0) -> tuple[int, int]:
    if population and rollouts:
        return population, rollouts
    if not population and not rollouts and batch in DREAM_SHAPES:
        return DREAM_SHAPES[batch]
    if rollouts:
        population = batch // rollouts
    elif population:
        rollouts = batch // population
    else:
        rollouts = 64 if batch >= 16384 else min(16, batch)
        population = batch // rollouts
    if population < 1 or rollouts < 1 or population * rollouts != batch:
        raise SystemExit(f"bench.py dream: --batch {batch} does not split into population x rollouts; "
                         "pass --population and --rollouts")
    return population, rollouts


def run_dream(batch: int, steps: int, device: str = "auto", env: str = "carracing", population: int = 0,
              rollouts: int = 0, seed: int = 0, tau: float = 1.15) -> dict:
    import torch

    from worldmodels.agent import Agent, resolve_device
    from worldmodels.engine.dream import dream_returns

    population, rollouts = dream_shape(batch, population, rollouts)
    spec = _build_spec(env)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    agent = Agent.build(spec, Z_DIM, HIDDEN, GAUSSIANS).to(dev)
    params = candidate_params(agent.controller.n_params, population, seed)
    start_z = torch.randn(256, Z_DIM, generator=torch.Generator().manual_seed(seed))

    def dream(n: int):
        return dream_returns(agent.mdnrnn, agent.controller, params, start_z, rollouts, n, tau, seed,
                             agent.inputs, dev, done_threshold=2.0)

    dream(2)  # warm-up, not timed
    _sync(dev)
    c0, t0 = time.process_time(), time.perf_counter()
    _returns, taken = dream(steps)
    _sync(dev)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"mode": "dream", "dream_steps": int(taken), "env_steps": 0, "seconds": seconds,
           "peak_rss_mb": self_peak_rss_mb(), "device": _device_name(dev), "cpu_s": cpu, "batch": batch,
           "population": population, "rollouts": rollouts, "steps": steps,
           "torch_threads": torch.get_num_threads()}
    return _finish(out, "dream_steps")


# -- the default run --------------------------------------------------------------------------
def machine_info(device: str = "auto") -> dict:
    import torch

    info = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    if device == "cpu" or not torch.cuda.is_available():
        info["device"] = "cpu"
    else:
        info["device"] = "cuda"
        info["device_name"] = torch.cuda.get_device_name(0)
    try:
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    return info


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_bench_render():
    path = os.path.join(_HERE, "bench_render.py")
    spec = importlib.util.spec_from_file_location("bench_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_sub(args: list[str], timeout: float = 1800.0) -> dict:
    """Run `bench.py ARGS --json` in a fresh interpreter (with the environment we started with)."""
    cmd = [sys.executable, os.path.abspath(__file__), *args, "--json"]
    env = dict(_ENV0, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _median_run(runs: list[dict]) -> dict:
    """The median of repeated runs (by steps/s), with every run's steps/s attached."""
    ordered = sorted(runs, key=lambda r: r["steps_per_s"])
    out = dict(ordered[(len(ordered) - 1) // 2]) if len(ordered) % 2 else dict(ordered[len(ordered) // 2 - 1])
    out["steps_per_s"] = statistics.median(r["steps_per_s"] for r in runs)
    cpu_rates = [r["steps_per_cpu_s"] for r in runs if r.get("steps_per_cpu_s")]
    out["steps_per_cpu_s"] = statistics.median(cpu_rates) if cpu_rates else None
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["runs_steps_per_s"] = [round(r["steps_per_s"], 1) for r in runs]
    return out


def default_run(args) -> dict:
    t_start = time.perf_counter()
    info = machine_info(args.device)
    workers = args.workers or usable_cpus()
    head = (f"machine: {info['platform']}, {info['cpu_count']} CPUs ({info.get('usable_cpus', '?')} usable), "
            f"Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), device "
            f"{info['device']}{' (' + info['device_name'] + ')' if 'device_name' in info else ''}, "
            f"load average {info.get('loadavg')}")
    print(head, flush=True)

    # 1. renderers, env only, 1 thread, interleaved (bench_render does the interleaving)
    print(f"\n== CarRacing-v3 renderers: env-only steps/s per core ({args.render_steps} steps each) ==",
          flush=True)
    bench_render = load_bench_render()
    render = bench_render.measure_renderers(args.render_steps, args.seed)
    print(bench_render.format_table(render), flush=True)

    # 2. engine vs naive, interleaved, each run in its own process
    lanes = args.lanes or min(64, args.episodes)
    print(f"\n== engine vs naive: {args.episodes} episodes x {args.max_steps} steps, {workers} workers, "
          f"engine {lanes} lanes in {args.groups} groups (device {args.device}, CarRacing renderer {args.renderer}), "
          f"naive official env at batch 1; {args.repeats} interleaved repeats, medians ==", flush=True)
    common = ["--episodes", str(args.episodes), "--max-steps", str(args.max_steps), "--workers", str(workers),
              "--population", str(args.population), "--seed", str(args.seed)]
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeats):
        for env in args.envs:
            variants = [("engine" if t == 0 else f"engine/{t}t", t) for t in args.engine_threads] + [("naive", 0)]
            if env == "carracing":  # the official env alone in the same W processes
                variants.append(("official-env", 0))
            if rep % 2:
                variants.reverse()
            for mode, threads in variants:
                extra = ["--lanes", str(lanes), "--renderer", args.renderer, "--device", args.device,
                         "--torch-threads", str(threads), "--groups", str(args.groups)] if mode.startswith("engine") else []
                cmd = ["naive", "--env-only"] if mode == "official-env" else [mode.split("/")[0]]
                res = run_sub([*cmd, "--env", env, *common, *extra])
                runs.setdefault((env, mode), []).append(res)
                print(f"  [{rep + 1}/{args.repeats}] {env:<9} {mode:<12} {res['env_steps']:>6} steps "
                      f"{res['seconds']:7.2f} s  {res['steps_per_s']:8.1f} steps/s (wall)  "
                      f"{_fmt(res.get('steps_per_cpu_s'))} steps/cpu-s", flush=True)
    med = {key: _median_run(value) for key, value in runs.items()}
    print(f"\n{'env':<10}{'mode':<14}{'renderer':<10}{'env steps':>10}{'seconds':>9}{'steps/s':>10}"
          f"{'cpu s':>8}{'steps/cpu-s':>13}{'peak RSS MB':>13}  device", flush=True)
    for (env, mode), r in sorted(med.items()):
        print(f"{env:<10}{mode:<14}{r['renderer']:<10}{r['env_steps']:>10}{r['seconds']:>9.2f}"
              f"{r['steps_per_s']:>10.1f}{_fmt(r.get('cpu_s'), '.2f'):>8}{_fmt(r.get('steps_per_cpu_s')):>13}"
              f"{r['peak_rss_mb']:>13.0f}  {r['device']}", flush=True)
    print("(steps/s = env steps per wall second of the timed part; steps/cpu-s = per CPU second of the "
          "process and its workers; peak RSS = sum of per-process peaks)")

    # 3. dream
    print(f"\n== dream rollouts inside M (device {args.device}) ==", flush=True)
    dreams = {}
    for batch in args.dream_batches:
        steps = args.dream_steps if args.dream_steps else (20 if info["device"] == "cpu" and batch > 4096 else 50)
        r = run_sub(["dream", "--batch", str(batch), "--steps", str(steps), "--device", args.device])
        dreams[str(batch)] = r
        print(f"batch {batch:>6} ({r['population']} x {r['rollouts']}): {r['dream_steps']} dream steps in "
              f"{r['seconds']:.2f} s = {r['steps_per_s']:,.0f} dream steps/s (wall), "
              f"{_fmt(r.get('steps_per_cpu_s'), ',.0f')} per CPU-s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['device']}", flush=True)

    # 4. ratios
    ratios = {}
    print("\n== ratios ==")
    off = render["official_steps_per_s"]
    if ("carracing", "engine") in med:
        e = med[("carracing", "engine")]
        ratios["engine_vs_official_env_carracing"] = e["steps_per_s"] / off
        print(f"CarRacing engine ({e['renderer']} renderer, {e['workers']} workers, V+M+C included) "
              f"{e['steps_per_s']:.1f} steps/s vs official env alone, 1 process: {off:.1f} steps/s per core = "
              f"{ratios['engine_vs_official_env_carracing']:.2f}x (target >= 6x)")
        if e.get("steps_per_cpu_s"):
            ratios["engine_per_cpu_vs_official_env_carracing"] = e["steps_per_cpu_s"] / off
            print(f"  per CPU-second: {e['steps_per_cpu_s']:.1f} vs {off:.1f} = "
                  f"{ratios['engine_per_cpu_vs_official_env_carracing']:.2f}x")
    if ("carracing", "engine") in med and ("carracing", "official-env") in med:
        e, o = med[("carracing", "engine")], med[("carracing", "official-env")]
        ratios["engine_vs_official_env_w_processes_carracing"] = e["steps_per_s"] / o["steps_per_s"]
        print(f"CarRacing engine {e['steps_per_s']:.1f} steps/s vs the official env alone in the same "
              f"{o['workers']} processes: {o['steps_per_s']:.1f} steps/s = "
              f"{ratios['engine_vs_official_env_w_processes_carracing']:.2f}x (GPU machine target >= 10x in 16)")
    for env in args.envs:
        if (env, "engine") in med and (env, "naive") in med:
            e, n = med[(env, "engine")], med[(env, "naive")]
            key = f"engine_vs_naive_{env}"
            ratios[key] = e["steps_per_s"] / n["steps_per_s"]
            target = " (target >= 2x)" if env == "pong" else ""
            line = (f"{env} engine vs naive: {e['steps_per_s']:.1f} / {n['steps_per_s']:.1f} steps/s = "
                    f"{ratios[key]:.2f}x{target}")
            if e.get("steps_per_cpu_s") and n.get("steps_per_cpu_s"):
                ratios[key + "_per_cpu"] = e["steps_per_cpu_s"] / n["steps_per_cpu_s"]
                line += f"; per CPU-second {ratios[key + '_per_cpu']:.2f}x"
            line += f"; peak RSS {e['peak_rss_mb']:.0f} vs {n['peak_rss_mb']:.0f} MB"
            print(line)
    for batch, r in dreams.items():
        print(f"dream batch {batch}: {r['steps_per_s']:,.0f} dream steps/s")
    total = time.perf_counter() - t_start
    try:
        info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    print(f"\ntotal benchmark wall time {total:.1f} s (load average at the end {info.get('loadavg_end')})")
    return {"machine": info,
            "renderers": {k: render[k] for k in (*bench_render.JSON_KEYS, "official_wall_steps_per_s",
                                                  "exact_wall_steps_per_s", "fast_wall_steps_per_s", "steps")},
            "engine": {env: r for (env, mode), r in med.items() if mode == "engine"},
            "engine_threads": {f"{env} {mode}": r for (env, mode), r in med.items() if mode.startswith("engine/")},
            "naive": {env: r for (env, mode), r in med.items() if mode == "naive"},
            "official_env": {env: r for (env, mode), r in med.items() if mode == "official-env"},
            "dream": dreams, "ratios": ratios, "seconds_total": total}


# -- command line ---------------------------------------------------------------------------
def _print_result(res: dict, as_json: bool, units: str = "env steps") -> None:
    steps = res.get("dream_steps", res["env_steps"]) if res["mode"] == "dream" else res["env_steps"]
    what = (f"{res['mode']} {res.get('env', '')}".strip() if res["mode"] != "dream"
            else f"dream batch {res['batch']} ({res['population']} x {res['rollouts']})")
    print(f"{what}: {steps} {units} in {res['seconds']:.3f} s (wall) = {res['steps_per_s']:.1f} {units}/s; "
          f"cpu {_fmt(res.get('cpu_s'), '.2f')} s = {_fmt(res.get('steps_per_cpu_s'))} {units}/cpu-s; "
          f"peak RSS {res['peak_rss_mb']:.0f} MB; device {res['device']}; "
          f"{os.cpu_count()} CPUs, torch threads {res.get('torch_threads')}")
    if as_json:
        print(json.dumps(res))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")

    def env_args(p, workers_default):
        p.add_argument("--env", default="pong", help="carracing, pong, breakout or a Gymnasium id")
        p.add_argument("--episodes", type=int, default=16)
        p.add_argument("--max-steps", type=int, default=100)
        p.add_argument("--workers", type=int, default=workers_default)
        p.add_argument("--population", type=int, default=16)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")

    p_engine = sub.add_parser("engine", help="the lane engine + batched world-model policy")
    env_args(p_engine, 0)
    p_engine.add_argument("--lanes", type=int, default=0, help="default min(64, episodes)")
    p_engine.add_argument("--renderer", choices=("fast", "exact", "official"), default="fast")
    p_engine.add_argument("--groups", type=int, default=2, help="lane groups in flight (controller.groups)")
    p_engine.add_argument("--action-repeat", type=int, default=1,
                          help="env steps each action is held for (action_repeat; env_steps counts every one)")
    p_engine.add_argument("--backend", choices=("local", "ray"), default="local",
                          help="ray: env workers as Ray actors (CPU of the actors is not counted)")
    p_engine.add_argument("--ray-address", default="", help="Ray cluster (default: a new local instance)")
    p_engine.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p_engine.add_argument("--torch-threads", type=int, default=0,
                          help="torch threads in the master (default: leave torch's default)")
    p_engine.add_argument("--spin-us", type=float, default=0.0, metavar="US",
                          help="experimental: workers and master poll their pipes for US microseconds "
                               "before they block (WM_SPIN_US)")
    p_engine.add_argument("--profile", type=int, default=0, metavar="N",
                          help="cProfile the timed run; print the top N entries to stderr")
    p_naive = sub.add_parser("naive", help="W processes, own V+M+C each, one official env at batch 1")
    env_args(p_naive, 0)
    p_naive.add_argument("--env-only", action="store_true",
                         help="no model: the official env alone with random actions in W processes")
    p_dream = sub.add_parser("dream", help="dream_returns inside M")
    p_dream.add_argument("--batch", type=int, default=1024, help="population x rollouts (1024, 16384, ...)")
    p_dream.add_argument("--population", type=int, default=0)
    p_dream.add_argument("--rollouts", type=int, default=0)
    p_dream.add_argument("--steps", type=int, default=50)
    p_dream.add_argument("--env", default="carracing")
    p_dream.add_argument("--device", default="auto")
    p_dream.add_argument("--seed", type=int, default=0)
    p_dream.add_argument("--json", action="store_true")

    ap.add_argument("--envs", default="carracing,pong")
    ap.add_argument("--episodes", type=int, default=64, help="one generation of quick (16 x 4)")
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=0, help="default: the usable CPU count")
    ap.add_argument("--lanes", type=int, default=0)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--groups", type=int, default=2, help="the engine's lane groups (controller.groups)")
    ap.add_argument("--renderer", choices=("fast", "exact", "official"), default="fast")
    ap.add_argument("--engine-threads", default="0",
                    help="torch thread counts for the engine master, e.g. 0,1 (0 = torch's default)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved engine/naive repeats")
    ap.add_argument("--render-steps", type=int, default=300)
    ap.add_argument("--dream-batches", default="1024,16384")
    ap.add_argument("--dream-steps", type=int, default=0, help="default 20 (CPU, batch > 4096) or 50")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if args.cmd == "engine":
        res = run_engine(args.env, args.episodes, args.max_steps, args.workers or usable_cpus(), args.lanes,
                         args.renderer, args.device, args.population, args.seed, args.profile,
                         args.torch_threads, args.backend, args.ray_address, args.groups, args.action_repeat,
                         args.spin_us)
        _print_result(res, args.json)
    elif args.cmd == "naive":
        res = run_naive(args.env, args.episodes, args.max_steps, args.workers or usable_cpus(),
                        args.population, args.seed, model=not args.env_only)
        _print_result(res, args.json)
    elif args.cmd == "dream":
        res = run_dream(args.batch, args.steps, args.device, args.env, args.population, args.rollouts, args.seed)
        _print_result(res, args.json, units="dream steps")
    else:
        args.envs = [e.strip() for e in args.envs.split(",") if e.strip()]
        args.engine_threads = [int(t) for t in args.engine_threads.split(",") if t.strip()]
        args.dream_batches = [int(b) for b in args.dream_batches.split(",") if b.strip()]
        res = default_run(args)
        if args.json:
            print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
