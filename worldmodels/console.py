"""What a person watching wm-train reads on stderr: the start banner (what runs, on what, with
which budget, for about how long), timestamped log lines that do not break the progress bars,
and the closing lines (the results, what to run next, or how to resume)."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .runfolder import RunFolder

if TYPE_CHECKING:
    from .config import TrainConfig
    from .envs import EnvSpec


class Run(Protocol):
    """What the banner and the closing lines read of curriculum.Run (the loop sits above this
    module, so it is described here, not imported)."""

    @property
    def cfg(self) -> TrainConfig: ...
    @property
    def backend(self) -> Any: ...
    @property
    def device(self) -> Any: ...  # torch.device
    @property
    def out(self) -> Path: ...
    @property
    def command(self) -> list[str]: ...

# Rough rates of the dev machine (2 cores, no GPU; the README's laptop rows): controller env
# steps/s and V's frames x epochs/s. Scaled by the cores a run uses; for the banner's estimate only.
DEV_CORES = 2
C_RATE = {"atari": 800.0, "held": 4500.0, "other": 1200.0}
V_RATE = 250.0
EVAL_S = 600.0  # the pick and the final evaluation of one env
GPU_SPEEDUP = 6.0  # the GPU row's CarRacing against the laptop row's (16 cores + an H200)


def stamp(message: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {message}"


def log_line(message: str) -> None:
    """One timestamped line on stderr; above the progress bars where stderr is a terminal."""
    line = stamp(message)
    if sys.stderr.isatty():
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def env_estimate(cfg: TrainConfig, spec: EnvSpec, cores: int, gpu: bool, manifest: dict | None = None,
                 gens: int = 0) -> float | None:
    """Seconds one env's stages should take under cfg (its own config), or None without a step
    budget; with the env folder's manifest and the generations trained (a resume), only what is
    left: the steps not yet taken, V only if this round's V is not trained, no controller past
    max_gens, nothing for an env that ended within its budget.
    A rough figure from the dev machine's rates, not a promise."""
    if cfg.max_env_steps <= 0:
        return None
    manifest = manifest or {}
    capped = gens >= cfg.max_gens  # max_gens ends training before the steps do
    steps_left = 0 if capped else max(0, cfg.max_env_steps - int(manifest.get("env_steps", 0)))
    solved = manifest.get("status") == "solved" and cfg.eval.stop_at_target
    if solved or (manifest.get("final_eval") and (not steps_left or manifest.get("early_stopped"))):
        return 0.0
    kind = "atari" if spec.id.startswith("ALE/") else "held" if cfg.action_repeat > 1 else "other"
    scale = max(1, cores) / DEV_CORES * (GPU_SPEEDUP if gpu else 1.0)
    v_s = 0.0
    if "vae" in cfg.stages and not any(r.get("stage") == "vae" for r in manifest.get("records", [])):
        frames = max(cfg.collect.rollouts * cfg.collect.max_steps / max(1, spec.action_repeat), cfg.collect.min_frames)
        v_s = frames * cfg.vae.epochs / (V_RATE * (GPU_SPEEDUP * 8 if gpu else max(1, cores) / DEV_CORES))
    c_s = steps_left / (C_RATE[kind] * scale) if "controller" in cfg.stages else 0.0
    return v_s + c_s + EVAL_S / scale


def banner(run: Run, env_cfgs: list, specs: list, why: str) -> list[str]:
    """The start banner: version, device, workers, recipe, output, the envs with their budgets, the estimate."""
    from . import __version__

    cfg = run.cfg
    cores = run.backend.worker_count(10**6) if cfg.workers else min(os.cpu_count() or 1, 16)
    gpu = run.device.type == "cuda"
    device = str(run.device) + (f" ({_gpu_name(run.device)})" if gpu else "")
    lines = [f"worldmodels {__version__} | device {device} | {cores} env workers ({cfg.backend}) | "
             f"{why}", f"output: {run.out}", "envs, in order:"]
    total, known, resumed = 0.0, True, False
    for i, (ecfg, spec) in enumerate(zip(env_cfgs, specs), 1):
        budget = [f"{ecfg.max_env_steps:,} env steps" if ecfg.max_env_steps else "no step budget"]
        if ecfg.time_budget:
            budget.append(f"{ecfg.time_budget:g} min")
        budget.append(f"at most {ecfg.max_gens:,} generations")
        target = f"target {spec.target:g}" if spec.target is not None else "no target"
        folder = RunFolder(run.out).env(spec.id)
        manifest = folder.read_manifest()
        resumed = resumed or "env_steps" in manifest
        seconds = env_estimate(ecfg, spec, cores, gpu, manifest, folder.generations())
        known = known and seconds is not None
        total += seconds or 0.0
        about = "" if seconds is None else ", done" if seconds == 0 else f", about {_duration(seconds)}"
        lines.append(f"  {i}. {spec.id:<18} {target:<11} budget {', '.join(budget)}{about}")
    if known and total == 0:
        lines.append("estimate: nothing left to train")
    elif known:
        what = "left" if resumed else "in all"
        lines.append(f"estimate: about {_duration(total)} {what} (from a 2-core machine's rates; a rough figure)")
    else:
        lines.append("estimate: none (an env has no step budget)")
    return lines


def _gpu_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device)


def resume_command(command: list[str]) -> str:
    """The command that resumes a run: the one that started it, without --restart."""
    return shlex.join(part for part in command if part != "--restart")


def closing(run: Run, results: dict, interrupted: bool) -> list[str]:
    """The lines after the run: how to resume it, or what to look at next."""
    if interrupted:
        return [f"interrupted: the checkpoints are saved; rerun the same command to resume: "
                f"{resume_command(run.command)}"]
    out = shlex.quote(str(run.out))
    lines = ["next:", f"  wm-report {out}            tables and plots in {run.out}/report/"]
    for env in results.get("envs", []):
        if env.get("final_eval") is not None:
            lines.append(f"  wm-play --ckpt {shlex.quote(str(run.out / env['slug'] / 'best.pt'))}   "
                         f"watch the {env['id']} agent")
    return lines
