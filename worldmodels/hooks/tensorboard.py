"""wm-train --tensorboard: scalars for TensorBoard in <run_dir>/tensorboard/<slug>.

controller/best_fitness, controller/mean_fitness, controller/steps_per_s and, at eval
snapshots, eval/mean (+ eval/std) against the generation; vae/loss, vae/recon, vae/kl and
mdnrnn/loss, mdnrnn/gmm, mdnrnn/reward, mdnrnn/done against the epoch (round r > 0 of V and M
under vae/round<r>/..., since epochs restart at 0 each round).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from ..errors import UserError
from ..runfolder import RunFolder
from .base import Hook

log = logging.getLogger("worldmodels")

MISSING = "--tensorboard needs the tensorboard package: pip install 'worldmodels[tensorboard]'"

CONTROLLER_KEYS = ("best_fitness", "mean_fitness", "std_fitness", "sigma", "steps_per_s")
EPOCH_KEYS = {"vae": ("loss", "recon", "kl"), "mdnrnn": ("loss", "gmm", "reward", "done")}


def summary_writer_class():
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
        self.writer = None
        self.failed = False

    def log_dir(self, ctx) -> Path:
        return RunFolder(ctx.run_dir).tensorboard / ctx.spec.slug

    def on_env_start(self, ctx) -> None:
        self.close()
        if self.failed:
            return
        try:
            self.writer = self.writer_cls(log_dir=str(self.log_dir(ctx)))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def on_step_end(self, ctx, stage, report) -> None:
        if self.writer is None:
            return
        try:
            self._write(ctx, stage, report)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _scalar(self, tag: str, value, step: int) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            self.writer.add_scalar(tag, float(value), step)

    def _write(self, ctx, stage, report) -> None:
        m = report.metrics
        step = int(report.index)
        if stage == "controller":
            for key in CONTROLLER_KEYS:
                if key in m:
                    self._scalar(f"controller/{key}", m[key], step)
            ev = m.get("eval")
            if isinstance(ev, dict):
                self._scalar("eval/mean", ev.get("mean"), step)
                self._scalar("eval/std", ev.get("std"), step)
            self.writer.flush()
        elif stage in EPOCH_KEYS:
            round_ = int(getattr(ctx, "round", 0) or 0)
            prefix = stage if round_ == 0 else f"{stage}/round{round_}"
            for key in EPOCH_KEYS[stage]:
                if key in m:
                    self._scalar(f"{prefix}/{key}", m[key], step)
            self.writer.flush()

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

    def on_env_end(self, ctx) -> None:
        self.close()

    def on_exception(self, ctx, exc) -> None:
        self.close()

    def on_run_end(self, run) -> None:
        self.close()
