"""Dream rollouts: a whole population evaluated inside M, batch = population x rollouts.

Every step: C acts on its inputs ([z, h], plus dz and earlier actions where asked) with its
candidate's weights (batched matmuls), M advances h, and the next z is sampled from M's mixture
at temperature tau; M's reward head gives the reward and its done head ends episodes. No
environment is touched.
"""
from __future__ import annotations

import numpy as np
import torch

from ..models.controller import Controller, ControllerInputs, InputState
from ..models.mdnrnn import MDNRNN, sample_z


def done_threshold_for(saw_ends: bool | None) -> float:
    """M's done probability that ends a dream episode. A done head trained without a single
    episode end says nothing (it can end every dream at its first step), so then no dream
    episode ends before max_steps. None (unknown, older files): 0.5."""
    return 2.0 if saw_ends is False else 0.5


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
    every = slice(None)
    returns = torch.zeros(batch, device=device)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    steps = 0
    for _ in range(max_steps):
        features = memory.features(every, z, h)
        raw = controller.grouped_raw(weights, features.view(pop, rollouts, -1)).reshape(batch, -1)
        action = controller.torch_actions(raw)
        memory.record(every, z, action)
        h, c = mdnrnn.step(z, action, (h, c))
        out = mdnrnn.mixture(h)
        z = sample_z(out, tau, gen)
        returns += out.reward * alive
        steps += int(alive.sum())
        alive &= torch.sigmoid(out.done_logit) < done_threshold
        if not alive.any():
            break
    return returns.view(pop, rollouts), steps
