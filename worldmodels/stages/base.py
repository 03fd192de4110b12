"""What every stage shares: the StepReport it yields, torch seeding, and resuming an epoch loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..context import StageContext

if TYPE_CHECKING:
    import torch

GENERATIONS = "controller"
"""The stage that trains C generation by generation (CMA-ES). It alone is scored by eval
snapshots and picked from, stopped early, logged and plotted per generation, resumed from the
signed controller state (which carries the hooks' state), and left out of the manifest's stage
records (a rerun reopens it until a later round begins). The loop and the hooks ask
produces_generations(stage) rather than compare stage names."""


def produces_generations(stage: str | None) -> bool:
    return stage == GENERATIONS


@dataclass
class StepReport:
    stage: str
    index: int
    """Epoch, generation or chunk number (0-based) that just finished."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Numbers hooks share: one row of the stage's CSV, plus what hooks add."""
    state: Any = None
    """Resume state after this step (written by CheckpointWriter to state_path)."""
    state_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Objects a hook may need (e.g. the generation's best parameters); never written as is."""
    total: int | None = None
    """How many steps the stage will take at most (for progress bars)."""


def seed_torch(*key: int) -> None:
    """Seed torch from the run seed and a stage key: torch's own default seed is random."""
    import numpy as np
    import torch

    torch.manual_seed(int(np.random.default_rng(list(key)).integers(2**31)))


def resume_training(ctx: StageContext, model: torch.nn.Module, optimizer: torch.optim.Optimizer, stage: str,
                    what: str) -> int:
    """The first epoch to train: continue this round from <stage>_state.pt, or (a later round)
    fine-tune from the previous round's <stage>.pt, or start at 0."""
    from ..checkpoint import load_torch, load_torch_state

    state = load_torch_state(ctx.files.stage_state(stage), f"{what} state", ctx.log)
    if state is not None and state["round"] == ctx.round:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return state["epoch"] + 1
    if ctx.round > 0 and ctx.files.weights(stage).exists():
        model.load_state_dict(load_torch(ctx.files.weights(stage), f"{what} weights")["state_dict"])
    return 0
