"""The five stages. Each is a generator of StepReports (one per chunk, epoch or generation);
the curriculum loop calls the hooks between reports and stops the generator when asked."""
from __future__ import annotations

from .base import GENERATIONS, StepReport, produces_generations, resume_training, seed_torch


def stage_runners():
    from . import collect, controller, encode, mdnrnn, vae

    return {"collect": collect.run, "vae": vae.run, "encode": encode.run, "mdnrnn": mdnrnn.run,
            "controller": controller.run}


__all__ = ["GENERATIONS", "StepReport", "produces_generations", "resume_training", "seed_torch", "stage_runners"]
