"""C: a = f(x) with x = C's inputs, batched over many candidates; f is linear (W x + b, the
paper's) or one tanh hidden layer (W2 tanh(W1 x + b1) + b2).

C's inputs are [z_t, h_t] by default; `ControllerInputs` adds what makes motion visible to a
controller that sees one frame at a time: z_t - z_{t-1} (dz) and its own last k actions
(Breakout's paddle moves with momentum from its last inputs). `InputState` keeps that memory per
lane, so the engine, the dream and wm-play build the same inputs step by step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ControllerInputs:
    """Which features C sees, in this order: z, h (use_h), dz (dz), the last k actions."""
    use_h: bool = True
    dz: bool = False
    prev_actions: int = 0

    def dim(self, z_dim: int, h_dim: int, action_dim: int) -> int:
        return z_dim * (2 if self.dz else 1) + (h_dim if self.use_h else 0) + self.prev_actions * action_dim


class InputState:
    """Per-lane memory for C's inputs beyond z and h: the previous z and the last k actions (in
    M's encoding: one-hot or the box vector). At an episode's first step dz is 0 and the
    earlier actions are zeros.

    features(idx, z, h) builds the inputs for lanes idx; record(idx, z, a_model) is called once
    the lanes have acted on z with a_model. idx: a LongTensor of lanes or slice(None) for all.
    """

    def __init__(self, inputs: ControllerInputs, lanes: int, z_dim: int, action_dim: int,
                 device: torch.device | str = "cpu"):
        self.inputs = inputs
        self.prev_z = torch.zeros(lanes, z_dim, device=device)
        self.fresh = torch.ones(lanes, 1, dtype=torch.bool, device=device)
        self.actions = torch.zeros(lanes, inputs.prev_actions, action_dim, device=device)

    def reset(self, lane: int) -> None:
        self.fresh[lane] = True
        self.actions[lane] = 0.0

    def features(self, idx: torch.Tensor | slice, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = [z, h] if self.inputs.use_h else [z]
        if self.inputs.dz:
            parts.append(z - torch.where(self.fresh[idx], z, self.prev_z[idx]))
        if self.inputs.prev_actions:
            parts.append(self.actions[idx].flatten(1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else z

    def record(self, idx: torch.Tensor | slice, z: torch.Tensor, a_model: torch.Tensor) -> None:
        if self.inputs.dz:
            self.prev_z[idx] = z
            self.fresh[idx] = False
        if self.inputs.prev_actions:
            self.actions[idx] = torch.cat([a_model.unsqueeze(1), self.actions[idx][:, :-1]], dim=1)


def history_features(inputs: ControllerInputs, z: torch.Tensor, h: torch.Tensor,
                     a_model: torch.Tensor) -> torch.Tensor:
    """C's inputs along one recorded episode at once (z [T, z], h [T, hidden] before each frame,
    a_model [T, a] the actions taken on those frames), as InputState builds them step by step."""
    parts = [z, h] if inputs.use_h else [z]
    if inputs.dz:
        parts.append(z - torch.cat([z[:1], z[:-1]]))
    for k in range(1, inputs.prev_actions + 1):
        parts.append(torch.cat([torch.zeros_like(a_model[:k]), a_model[:-k]])[:len(z)])
    return torch.cat(parts, dim=1)


Weights = tuple[torch.Tensor, ...]
"""A population's controller tensors: (W [P, out, in], b [P, out]) for a linear C,
(W1 [P, H, in], b1 [P, H], W2 [P, out, H], b2 [P, out]) with a hidden layer."""


class Controller:
    """Maps C's inputs to env actions for a whole population at once.

    params: [P, n_params] flat vectors (CMA-ES candidates); layout, layer by layer, W (out x in)
    then b (out). hidden = 0: linear; hidden = H: one tanh layer of H units.
    act(features [L, in], candidate [L]) -> env actions: [L] ints (discrete, argmax)
    or [L, out] floats squashed by tanh into the env's box.
    """

    def __init__(self, in_dim: int, action_kind: str, action_dim: int,
                 low: list[float] | None = None, high: list[float] | None = None, hidden: int = 0):
        self.in_dim, self.out_dim, self.action_kind, self.hidden = in_dim, action_dim, action_kind, hidden
        self.low = np.asarray(low or [], dtype=np.float32)
        self.high = np.asarray(high or [], dtype=np.float32)
        self._bounds: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(out, in) of each layer."""
        if self.hidden:
            return [(self.hidden, self.in_dim), (self.out_dim, self.hidden)]
        return [(self.out_dim, self.in_dim)]

    @property
    def n_params(self) -> int:
        return sum(o * i + o for o, i in self.layers)

    def unflatten(self, params: np.ndarray) -> Weights:
        """[P, n_params] -> (W, b) per layer (float32 tensors), see Weights."""
        p = torch.as_tensor(np.asarray(params, dtype=np.float32).reshape(-1, self.n_params))
        out, at = [], 0
        for o, i in self.layers:
            out.append(p[:, at:at + o * i].reshape(-1, o, i))
            out.append(p[:, at + o * i:at + o * i + o])
            at += o * i + o
        return tuple(out)

    @staticmethod
    def flatten(*weights: torch.Tensor) -> np.ndarray:
        """Inverse of unflatten: (W, b) per layer -> [P, n_params]."""
        return torch.cat([t.flatten(1) for t in weights], dim=1).numpy()

    def raw(self, weights: Weights, features: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """Per-lane outputs [L, out] with each lane's own candidate weights (batched matmuls)."""
        x = features
        for layer in range(0, len(weights), 2):
            if layer:
                x = torch.tanh(x)
            w, b = weights[layer][candidate], weights[layer + 1][candidate]
            x = torch.bmm(w, x.unsqueeze(-1)).squeeze(-1) + b
        return x

    def grouped_raw(self, weights: Weights, features: torch.Tensor) -> torch.Tensor:
        """features [P, R, in] (R episodes per candidate) -> raw outputs [P, R, out]."""
        x = features
        for layer in range(0, len(weights), 2):
            if layer:
                x = torch.tanh(x)
            x = torch.baddbmm(weights[layer + 1].unsqueeze(1), x, weights[layer].transpose(1, 2))
        return x

    def torch_actions(self, raw: torch.Tensor) -> torch.Tensor:
        """raw [..., out] -> M's action input [..., out] on the same device (no numpy round trip):
        one-hot of the argmax for discrete actions, the squashed box action otherwise."""
        if self.action_kind == "discrete":
            return torch.nn.functional.one_hot(raw.argmax(-1), self.out_dim).float()
        bounds = self._bounds.get(raw.device)
        if bounds is None:  # once per device: a copy to the GPU every step costs a sync
            bounds = self._bounds[raw.device] = (torch.as_tensor(self.low, device=raw.device),
                                                 torch.as_tensor(self.high, device=raw.device))
        low, high = bounds
        return low + (torch.tanh(raw) + 1.0) * 0.5 * (high - low)

    def to_env(self, raw: torch.Tensor) -> np.ndarray:
        if self.action_kind == "discrete":
            return raw.argmax(dim=-1).numpy().astype(np.int64)
        squashed = torch.tanh(raw).numpy()
        return (self.low + (squashed + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def to_model_input(self, env_action: np.ndarray) -> torch.Tensor:
        """Env actions -> M's action input: one-hot for discrete, the box vector otherwise."""
        return torch.from_numpy(action_to_model_input(np.asarray(env_action), self.action_kind, self.out_dim))


def action_to_model_input(actions: np.ndarray, action_kind: str, action_dim: int) -> np.ndarray:
    """Stored actions -> M input vectors (numpy), as Controller.to_model_input."""
    if action_kind == "discrete":
        out = np.zeros((len(actions), action_dim), np.float32)
        out[np.arange(len(actions)), np.asarray(actions, dtype=np.int64).reshape(-1)] = 1.0
        return out
    return np.asarray(actions, dtype=np.float32).reshape(len(actions), action_dim)
