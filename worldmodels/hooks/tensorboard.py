"""wm-train --tensorboard: scalars for TensorBoard in <run_dir>/tensorboard/<slug>.

Against env steps (the env's env-step counter, collection included, as in metrics.csv):
collect/rollouts; controller/best_fitness, mean_fitness, std_fitness, sigma, steps_per_s and
generation; at eval snapshots eval/mean and eval/std; at the env's end eval/final_mean and
eval/final_std (best.pt's final score). V and M train on collected frames, so env steps stand
still while they do: vae/loss, vae/recon, vae/kl and mdnrnn/loss, gmm, reward, done are against
the epoch (round r > 0 under vae/round<r>/..., since epochs restart at 0 each round).

The env's config (env_overrides applied, flattened to dotted keys) and the recipe are written
as hyperparameters for TensorBoard's HParams dashboard, with the eval scalars as its metrics.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..context import HookContext, RunContext
from ..errors import UserError
from ..runfolder import RunFolder
from ..stages.base import StepReport, produces_generations
from .base import Hook

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from ..config import TrainConfig

log = logging.getLogger("worldmodels")

MISSING = "--tensorboard needs the tensorboard package: pip install 'worldmodels[tensorboard]'"

CONTROLLER_KEYS = ("best_fitness", "mean_fitness", "std_fitness", "sigma", "steps_per_s")
HPARAM_METRICS = ("eval/mean", "eval/final_mean", "controller/mean_fitness")


def hparams_of(cfg: TrainConfig | dict, recipe: dict | None = None) -> dict:
    """A config dataclass as HParams values: dotted keys; numbers, bools and strings as they
    are, lists joined with commas, other values as text; None left out."""
    import dataclasses

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
EPOCH_KEYS = {"vae": ("loss", "recon", "kl"), "mdnrnn": ("loss", "gmm", "reward", "done")}


def summary_writer_class() -> type[SummaryWriter]:
    """torch.utils.tensorboard.SummaryWriter, or a UserError saying how to install it."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(MISSING) from None
    return SummaryWriter


class TensorBoardLogger(Hook):
    """One SummaryWriter per env; a logging problem is logged once and never ends a run."""

    name = "tensorboard"

    def __init__(self):
        self.writer_cls = summary_writer_class()  # fails before anything is trained or written
        self.writer: SummaryWriter | None = None
        self.failed = False

    def log_dir(self, ctx: HookContext) -> Path:
        return RunFolder(ctx.run_dir).tensorboard / ctx.spec.slug

    def on_env_start(self, ctx: HookContext) -> None:
        self.close()
        if self.failed:
            return
        try:
            self.writer = self.writer_cls(log_dir=str(self.log_dir(ctx)))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return
        try:
            self._hparams(ctx)
        except Exception as exc:  # noqa: BLE001
            log.warning("--tensorboard: no hyperparameters for %s (%s); the scalars go on", ctx.spec.slug, exc)

    def _hparams(self, ctx: HookContext) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = hparams_of(ctx.cfg, ctx.recipe)
        exp, ssi, _ = hparams(values, {k: 0.0 for k in HPARAM_METRICS})
        # in this env's own folder, beside its scalars (add_hparams would make a subfolder)
        assert self.writer is not None  # on_env_start made it
        writer = self.writer._get_file_writer()
        writer.add_summary(exp)
        writer.add_summary(ssi)
        self.writer.flush()

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        if self.writer is None:
            return
        try:
            self._write(ctx, stage, report)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _scalar(self, tag: str, value, step: int) -> None:
        assert self.writer is not None  # _write and _final check it
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            self.writer.add_scalar(tag, float(value), step)

    @staticmethod
    def env_step(ctx: HookContext, metrics: dict) -> int:
        """The env's env-step counter after this step (the row's own record of it, else ctx's)."""
        steps = metrics.get("env_steps")
        if isinstance(steps, (int, float)) and not isinstance(steps, bool) and math.isfinite(steps):
            return int(steps)
        return int(getattr(ctx, "env_steps", 0) or 0)

    def _write(self, ctx: HookContext, stage, report) -> None:
        assert self.writer is not None  # on_step_end checks it
        m = report.metrics
        if stage == "collect":
            self._scalar("collect/rollouts", m.get("rollouts"), self.env_step(ctx, m))
            self.writer.flush()
        elif produces_generations(stage):
            step = self.env_step(ctx, m)
            for key in CONTROLLER_KEYS:
                if key in m:
                    self._scalar(f"controller/{key}", m[key], step)
            self._scalar("controller/generation", report.index, step)
            ev = m.get("eval")
            if isinstance(ev, dict):
                self._scalar("eval/mean", ev.get("mean"), step)
                self._scalar("eval/std", ev.get("std"), step)
            self.writer.flush()
        elif stage in EPOCH_KEYS:
            epoch = int(report.index)
            round_ = int(getattr(ctx, "round", 0) or 0)
            prefix = stage if round_ == 0 else f"{stage}/round{round_}"
            for key in EPOCH_KEYS[stage]:
                if key in m:
                    self._scalar(f"{prefix}/{key}", m[key], epoch)
            self.writer.flush()

    def _final(self, ctx: HookContext) -> None:
        final = getattr(ctx, "final_eval", None)
        if self.writer is None or not isinstance(final, dict):
            return
        try:
            step = self.env_step(ctx, {})
            self._scalar("eval/final_mean", final.get("mean"), step)
            self._scalar("eval/final_std", final.get("std"), step)
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        log.warning("--tensorboard: logging stopped (%s); training goes on", exc)
        self.failed = True
        self.close()

    def close(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def on_env_end(self, ctx: HookContext) -> None:
        self._final(ctx)
        self.close()

    def on_exception(self, ctx: HookContext, exc: BaseException) -> None:
        self.close()

    def on_run_end(self, run: RunContext) -> None:
        self.close()
