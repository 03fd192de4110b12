"""wm-train --tensorboard: scalars for TensorBoard in <run_dir>/tensorboard/<slug>.

The scalars and their x axes are hooks/scalars.py's: against env steps for collection, the
controller and evaluations, against the epoch for V and M. The env's config (env_overrides
applied, flattened to dotted keys) and the recipe are written as hyperparameters for
TensorBoard's HParams dashboard, with the eval scalars as its metrics.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..context import HookContext
from ..errors import UserError
from ..runfolder import RunFolder
from ..stages.base import StepReport
from .scalars import HPARAM_METRICS, MetricLogger, Scalars, final_scalars, hparams_of, step_scalars

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("worldmodels")

MISSING = "--tensorboard needs the tensorboard package: pip install 'worldmodels[tensorboard]'"


def summary_writer_class() -> type[SummaryWriter]:
    """torch.utils.tensorboard.SummaryWriter, or a UserError saying how to install it."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(MISSING) from None
    return SummaryWriter


class TensorBoardLogger(MetricLogger):
    """One SummaryWriter per env."""

    name, flag = "tensorboard", "--tensorboard"

    def __init__(self):
        super().__init__()
        self.writer_cls = summary_writer_class()  # fails before anything is trained or written
        self.writer: SummaryWriter | None = None

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
            self._add(step_scalars(ctx, stage, report))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _add(self, scalars: Scalars | None) -> None:
        if self.writer is None or scalars is None:
            return
        for tag, value in scalars.values.items():
            self.writer.add_scalar(tag, value, scalars.step)
        self.writer.flush()

    def _final(self, ctx: HookContext) -> None:
        try:
            self._add(final_scalars(ctx))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def close(self, failed: bool = False) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def on_env_end(self, ctx: HookContext) -> None:
        self._final(ctx)
        self.close()
