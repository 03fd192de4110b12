"""The five stages. Each is a generator of StepReports (one per chunk, epoch or generation);
the curriculum loop calls the hooks between reports and stops the generator when asked."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def stage_runners():
    from . import collect, controller, encode, mdnrnn, vae

    return {"collect": collect.run, "vae": vae.run, "encode": encode.run, "mdnrnn": mdnrnn.run,
            "controller": controller.run}
