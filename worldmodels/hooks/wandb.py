"""wm-train --track: the run's scalars in Weights & Biases.

One W&B run per run folder; a resume continues it. W&B writes into <run_dir>/wandb/, where the
run's id is kept (run_id).
The scalars are hooks/scalars.py's, under the env's folder name (pong/controller/mean_fitness),
each against its own x axis: pong/env_steps for collection, the controller and evaluations,
pong/vae/epoch and pong/mdnrnn/epoch for V and M. Each env's config (env_overrides applied,
flattened) is in the run's config under its folder name. W&B's own variables choose where it
goes: WANDB_PROJECT (default "worldmodels"), WANDB_ENTITY, and WANDB_MODE=offline to record
without an account (`wandb sync` uploads it later). A logging problem is logged once and never
ends a run.
"""
from __future__ import annotations

import os
import uuid
from typing import Any

from ..context import HookContext
from ..errors import UserError
from ..fileio import atomic_write_text
from ..runfolder import RunFolder
from ..stages.base import StepReport
from .scalars import MetricLogger, Scalars, final_scalars, hparams_of, step_scalars

MISSING = "--track needs the wandb package: pip install 'worldmodels[wandb]'"
NO_LOGIN = ("--track: not logged in to Weights & Biases: run `wandb login` (or set WANDB_API_KEY), "
            "or set WANDB_MODE=offline to record into DIR/wandb/ and `wandb sync` it later")


def wandb_module() -> Any:
    """The wandb package, or a UserError saying how to install it."""
    try:
        import wandb
    except ImportError:
        raise UserError(MISSING) from None
    return wandb


class WandbLogger(MetricLogger):
    name, flag = "wandb", "--track"

    def __init__(self):
        super().__init__()
        self.wandb = wandb_module()  # fails before anything is trained or written
        offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun")
        if not offline and not self.wandb.login(prompt=False):  # never a prompt that waits on a run
            raise UserError(NO_LOGIN)
        self.run: Any = None
        self.defined: set[str] = set()

    def _start(self, ctx: HookContext) -> None:
        folder = RunFolder(ctx.run_dir).wandb
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "run_id"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            atomic_write_text(id_file, run_id + "\n")
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "worldmodels"), id=run_id,
                                   resume="allow", dir=str(ctx.run_dir), name=ctx.run_dir.name,
                                   config={"recipe": (ctx.recipe or {}).get("name")})

    def on_env_start(self, ctx: HookContext) -> None:
        if self.failed:
            return
        try:
            if self.run is None:
                self._start(ctx)
            slug = ctx.spec.slug
            self.run.config.update({slug: hparams_of(ctx.cfg)}, allow_val_change=True)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _log(self, ctx: HookContext, scalars: Scalars | None) -> None:
        if self.run is None or scalars is None or not scalars.values:
            return
        slug = ctx.spec.slug
        axis = f"{slug}/{scalars.axis}"
        row = {f"{slug}/{tag}": value for tag, value in scalars.values.items()}
        for key in row:  # each value against its env's own counter, not W&B's step
            if key not in self.defined:
                if axis not in self.defined:
                    self.run.define_metric(axis)
                    self.defined.add(axis)
                self.run.define_metric(key, step_metric=axis)
                self.defined.add(key)
        self.run.log({axis: scalars.step, **row})

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        try:
            self._log(ctx, step_scalars(ctx, stage, report))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def on_env_end(self, ctx: HookContext) -> None:
        try:
            self._log(ctx, final_scalars(ctx))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def close(self, failed: bool = False) -> None:
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=int(failed))
            except Exception:  # noqa: BLE001
                pass
