"""Hooks: the behaviour the curriculum loop calls between stage steps (see base.Hook).

builtin: progress, evaluation snapshots and the pick, early stopping, checkpoints, artifacts,
the video of best.pt at each env's end.
live (wm-train --live), tensorboard (--tensorboard) and wandb (--track) are imported only when
switched on; scalars names what the last two record.
Nothing in this package imports the curriculum: the loop passes each hook what it needs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Hook
from .builtin import (
    CSV_FIELDS,
    ArtifactWriter,
    BestVideo,
    CheckpointWriter,
    EarlyStopping,
    EvalSnapshot,
    ProgressBar,
    write_report_safely,
)

if TYPE_CHECKING:
    from ..config import TrainConfig


def default_hooks(cfg: TrainConfig) -> list[Hook]:
    hooks: list[Hook] = [EvalSnapshot(cfg.eval_every, cfg.eval.episodes, cfg.eval.confirm_episodes,
                                      cfg.eval.renderer, cfg.eval.finalists, cfg.eval.pick_episodes,
                                      cfg.eval.stop_at_target),
                         EarlyStopping(cfg.patience), CheckpointWriter(), ArtifactWriter(),
                         BestVideo(cfg.eval.video_steps)]
    if cfg.tensorboard:
        from .tensorboard import TensorBoardLogger

        hooks.append(TensorBoardLogger())
    if cfg.track:
        from .wandb import WandbLogger

        hooks.append(WandbLogger())
    if cfg.live:
        from .live import LiveView

        hooks.append(LiveView())
    return hooks + [ProgressBar()]


__all__ = ["Hook", "ArtifactWriter", "BestVideo", "CheckpointWriter", "EarlyStopping", "EvalSnapshot", "ProgressBar",
           "CSV_FIELDS", "default_hooks", "write_report_safely"]
