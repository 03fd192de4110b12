"""What the metric loggers (--tensorboard, --track) record: one owner for the scalars' names,
their x axes and the config as flat hyperparameters; and MetricLogger, how a logger fails.

Against env steps (the env's env-step counter, collection included, as in metrics.csv):
collect/rollouts; controller/best_fitness, mean_fitness, std_fitness, sigma, steps_per_s and
generation; at eval snapshots eval/mean and eval/std; at the env's end eval/final_mean and
eval/final_std (best.pt's final score). V and M train on collected frames, so env steps stand
still while they do: vae/loss, vae/recon, vae/kl and mdnrnn/loss, gmm, reward, done are against
the epoch (round r > 0 under vae/round<r>/..., since epochs restart at 0 each round).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..stages.base import StepReport, produces_generations
from .base import Hook

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..context import HookContext, RunContext

log = logging.getLogger("worldmodels")

CONTROLLER_KEYS = ("best_fitness", "mean_fitness", "std_fitness", "sigma", "steps_per_s")
EPOCH_KEYS = {"vae": ("loss", "recon", "kl"), "mdnrnn": ("loss", "gmm", "reward", "done")}
HPARAM_METRICS = ("eval/mean", "eval/final_mean", "controller/mean_fitness")
ENV_STEPS = "env_steps"


@dataclass
class Scalars:
    """Values recorded at one point: `axis` names the x axis (ENV_STEPS, or "<stage>/epoch" for
    V and M), `step` is the point on it."""
    axis: str
    step: int
    values: dict[str, float]


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


def env_step(ctx: HookContext, metrics: dict) -> int:
    """The env's env-step counter after this step (the row's own record of it, else ctx's)."""
    steps = _number(metrics.get("env_steps"))
    return int(steps) if steps is not None else int(getattr(ctx, "env_steps", 0) or 0)


def _keep(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for tag, value in values.items():
        number = _number(value)
        if number is not None:
            out[tag] = number
    return out


def step_scalars(ctx: HookContext, stage: str, report: StepReport) -> Scalars | None:
    """The scalars of one stage step, or None for a step that records none."""
    m = report.metrics
    if stage == "collect":
        return Scalars(ENV_STEPS, env_step(ctx, m), _keep({"collect/rollouts": m.get("rollouts")}))
    if produces_generations(stage):
        values = {f"controller/{key}": m[key] for key in CONTROLLER_KEYS if key in m}
        values["controller/generation"] = report.index
        ev = m.get("eval")
        if isinstance(ev, dict):
            values["eval/mean"], values["eval/std"] = ev.get("mean"), ev.get("std")
        return Scalars(ENV_STEPS, env_step(ctx, m), _keep(values))
    if stage in EPOCH_KEYS:
        round_ = int(getattr(ctx, "round", 0) or 0)
        prefix = stage if round_ == 0 else f"{stage}/round{round_}"
        return Scalars(f"{prefix}/epoch", int(report.index),
                       _keep({f"{prefix}/{key}": m[key] for key in EPOCH_KEYS[stage] if key in m}))
    return None


def final_scalars(ctx: HookContext) -> Scalars | None:
    """best.pt's final score at the env's end, or None when the env ended without one."""
    final = getattr(ctx, "final_eval", None)
    if not isinstance(final, dict):
        return None
    return Scalars(ENV_STEPS, env_step(ctx, {}),
                   _keep({"eval/final_mean": final.get("mean"), "eval/final_std": final.get("std")}))


def hparams_of(cfg: TrainConfig | dict, recipe: dict | None = None) -> dict:
    """A config dataclass as hyperparameters: dotted keys; numbers, bools and strings as they
    are, lists joined with commas, other values as text; None left out."""
    out: dict = {}

    def walk(value, prefix: str) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{prefix}{k}.")
            return
        key = prefix[:-1]
        if value is None:
            return
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)

    walk(cfg, "")
    if isinstance(recipe, dict) and recipe.get("name"):
        out["recipe"] = str(recipe["name"])
    return out


class MetricLogger(Hook):
    """A logger's failure rule: a logging problem is logged once, the logger closes and stays
    quiet, and the run goes on. A subclass sets `flag` and implements close(failed)."""

    flag = ""

    def __init__(self) -> None:
        self.failed = False

    def close(self, failed: bool = False) -> None: ...

    def _fail(self, exc: Exception) -> None:
        log.warning("%s: logging stopped (%s); training goes on", self.flag, exc)
        self.failed = True
        self.close(failed=True)

    def on_exception(self, ctx: HookContext, exc: BaseException) -> None:
        self.close(failed=True)

    def on_run_end(self, run: RunContext) -> None:
        self.close()
