"""C: a linear controller a = W [z, h] + b, batched over many candidates."""
from __future__ import annotations

import numpy as np
import torch


class Controller:
    """Maps features [z, h] to env actions for a whole population at once.

    params: [P, n_params] flat vectors (CMA-ES candidates); layout W (out x in) then b (out).
    act(features [L, in], candidate [L]) -> env actions: [L] ints (discrete, argmax)
    or [L, out] floats squashed by tanh into the env's box.
    """

    def __init__(self, in_dim: int, action_kind: str, action_dim: int,
                 low: list[float] | None = None, high: list[float] | None = None):
        self.in_dim, self.out_dim, self.action_kind = in_dim, action_dim, action_kind
        self.low = np.asarray(low or [], dtype=np.float32)
        self.high = np.asarray(high or [], dtype=np.float32)
        self._bounds: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def n_params(self) -> int:
        return self.out_dim * self.in_dim + self.out_dim

    def unflatten(self, params: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """[P, n_params] -> W [P, out, in], b [P, out] (float32 tensors)."""
        p = torch.as_tensor(np.asarray(params, dtype=np.float32).reshape(-1, self.n_params))
        split = self.out_dim * self.in_dim
        return p[:, :split].reshape(-1, self.out_dim, self.in_dim), p[:, split:]

    @staticmethod
    def flatten(weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
        """Inverse of unflatten: W [P, out, in], b [P, out] -> [P, n_params]."""
        return torch.cat([weight.flatten(1), bias], dim=1).numpy()

    def raw(self, weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor,
            candidate: torch.Tensor) -> torch.Tensor:
        """Per-lane outputs [L, out] with each lane's own candidate weights (one batched matmul)."""
        w = weight[candidate]
        return torch.bmm(w, features.unsqueeze(-1)).squeeze(-1) + bias[candidate]

    def grouped_raw(self, weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """features [P, R, in] (R episodes per candidate) -> raw outputs [P, R, out]."""
        return torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2))

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
