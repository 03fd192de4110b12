"""The five stages. Each is a generator of StepReports (one per chunk, epoch or generation);
the curriculum loop calls the hooks between reports and stops the generator when asked."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .base import GENERATIONS, StepReport, produces_generations, resume_training, seed_torch

if TYPE_CHECKING:
    from ..context import StageContext


def stage_runners() -> dict[str, Callable[[StageContext], Iterator[StepReport]]]:
    from . import collect, controller, encode, mdnrnn, vae

    return {"collect": collect.run, "vae": vae.run, "encode": encode.run, "mdnrnn": mdnrnn.run,
            "controller": controller.run}


__all__ = ["GENERATIONS", "StepReport", "produces_generations", "resume_training", "seed_torch", "stage_runners"]
