"""Dream rollouts: a whole population evaluated inside M, batch = population x rollouts.

Every step: C acts on its inputs ([z, h], plus dz and earlier actions where asked) with its
candidate's weights (batched matmuls), M advances h, and the next z is sampled from M's mixture
at temperature tau; M's reward head gives the reward and its done head ends episodes. No
environment is touched. wm-play --dream runs the same steps (dream_act, dream_step) on one lane.
"""
from __future__ import annotations

import numpy as np
import torch

from ..models.controller import Controller, ControllerInputs, InputState, Weights
from ..models.mdnrnn import MDNRNN, MixtureOut, sample_z


def done_threshold_for(saw_ends: bool | None) -> float:
    """M's done probability that ends a dream episode. A done head trained without a single
    episode end says nothing (it can end every dream at its first step), so then no dream
    episode ends before max_steps. None (unknown, older files): 0.5."""
    return 2.0 if saw_ends is False else 0.5


def dream_act(controller: Controller, weights: Weights, memory: InputState, z: torch.Tensor, h: torch.Tensor,
              rollouts: int) -> torch.Tensor:
    """C's raw outputs [B, out] for every lane (B = population x rollouts, candidate-major)."""
    features = memory.features(slice(None), z, h)
    pop = weights[0].shape[0]
    return controller.grouped_raw(weights, features.view(pop, rollouts, -1)).reshape(len(z), -1)


def dream_step(mdnrnn: MDNRNN, controller: Controller, memory: InputState, z: torch.Tensor,
               state: tuple[torch.Tensor, torch.Tensor], raw: torch.Tensor, tau: float,
               gen: torch.Generator) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], MixtureOut]:
    """Every lane acts on z with C's raw outputs and M advances: returns the next z (sampled at
    temperature tau), M's state and its mixture (reward and done heads)."""
    action = controller.torch_actions(raw)
    memory.record(slice(None), z, action)
    h, c = mdnrnn.step(z, action, state)
    out = mdnrnn.mixture(h)
    return sample_z(out, tau, gen), (h, c), out


@torch.no_grad()
def dream_returns(mdnrnn: MDNRNN, controller: Controller, params: np.ndarray, start_z: torch.Tensor,
                  rollouts: int, max_steps: int, tau: float = 1.15, seed: int = 0,
                  inputs: ControllerInputs = ControllerInputs(), device: str | torch.device = "cpu",
                  done_threshold: float = 0.5) -> tuple[torch.Tensor, int]:
    """Returns ([P, R] dream returns, dream steps taken).

    params [P, n_params]; start_z [N, z] a pool of starting latents (first frames of real
    rollouts); episode (p, r) starts from a z drawn from the pool with a seeded generator.
    """
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    weights = tuple(t.to(device) for t in controller.unflatten(params))
    pop = weights[0].shape[0]
    batch = pop * rollouts
    pool = start_z.to(device)
    z = pool[torch.randint(len(pool), (batch,), generator=gen, device=device)]
    h, c = mdnrnn.initial_state(batch, device)
    memory = InputState(inputs, batch, z.shape[1], mdnrnn.action_dim, device)
    returns = torch.zeros(batch, device=device)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    steps = 0
    for _ in range(max_steps):
        raw = dream_act(controller, weights, memory, z, h, rollouts)
        z, (h, c), out = dream_step(mdnrnn, controller, memory, z, (h, c), raw, tau, gen)
        returns += out.reward * alive
        steps += int(alive.sum())
        alive &= torch.sigmoid(out.done_logit) < done_threshold
        if not alive.any():
            break
    return returns.view(pop, rollouts), steps
