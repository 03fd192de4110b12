"""The agent = V + M + C for one env: build it, bundle it, evaluate it on the official env."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import BUNDLE_FORMAT, BUNDLE_VERSION
from .engine.policies import WorldModelPolicy
from .engine.rollout import Episode, LaneEngine
from .envs import EnvSpec
from .errors import Interrupted
from .models.controller import Controller, ControllerInputs
from .models.mdnrnn import MDNRNN
from .models.vae import ConvVAE
from .seeds import CONFIRM_SEED_START, FINAL_SEED_START, PICK_SEED_START, SNAPSHOT_SEED_START, TRAIN_SEED_END  # noqa: F401 - re-exported: the seed ranges live where the CLI can import them cheaply

EVAL_LANES = 16  # fixed, so the final eval and wm-play batch alike and give the same numbers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import ConfigError

        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    return torch.device(name)


@dataclass
class Agent:
    spec: EnvSpec
    vae: ConvVAE
    mdnrnn: MDNRNN
    controller: Controller
    inputs: ControllerInputs = ControllerInputs()
    m_saw_ends: bool | None = None
    """Whether M's training data held an episode end (None: not recorded); see dream.done_threshold_for."""

    @classmethod
    def build(cls, spec: EnvSpec, z_dim: int, hidden: int, gaussians: int,
              inputs: ControllerInputs = ControllerInputs(), c_hidden: int = 0) -> Agent:
        """inputs: C's features (default [z, h]); c_hidden: C's tanh units (0: linear)."""
        vae = ConvVAE(z_dim)
        mdnrnn = MDNRNN(z_dim, spec.action_dim, hidden, gaussians)
        controller = Controller(inputs.dim(z_dim, hidden, spec.action_dim), spec.action_kind, spec.action_dim,
                                spec.low, spec.high, hidden=c_hidden)
        return cls(spec, vae.eval(), mdnrnn.eval(), controller, inputs)

    @classmethod
    def build_for(cls, spec: EnvSpec, z_dim: int, hidden: int, gaussians: int, controller_cfg) -> Agent:
        """An agent whose C has the form that a ControllerConfig asks for."""
        inputs = ControllerInputs(controller_cfg.use_h, controller_cfg.dz, controller_cfg.prev_actions)
        return cls.build(spec, z_dim, hidden, gaussians, inputs=inputs, c_hidden=controller_cfg.hidden)

    @property
    def use_h(self) -> bool:
        return self.inputs.use_h

    def to(self, device) -> Agent:
        self.vae.to(device)
        self.mdnrnn.to(device)
        return self

    def policy(self, params: np.ndarray, lanes: int, device, noise: float = 0.0) -> WorldModelPolicy:
        return WorldModelPolicy(self.spec, self.vae, self.mdnrnn, self.controller, params, lanes,
                                inputs=self.inputs, device=str(device), noise=noise)

    def bundle(self, params: np.ndarray, eval_info: dict, provenance: dict) -> dict:
        """Tensors and plain values only: torch.load(weights_only=True) rebuilds the agent."""
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "env": self.spec.to_dict(),
            "vae": {"z_dim": self.vae.z_dim, "state_dict": _cpu(self.vae.state_dict())},
            "mdnrnn": {"hidden": self.mdnrnn.hidden, "gaussians": self.mdnrnn.gaussians,
                       "action_dim": self.mdnrnn.action_dim, "saw_ends": self.m_saw_ends,
                       "state_dict": _cpu(self.mdnrnn.state_dict())},
            "controller": {"use_h": self.use_h, "in_dim": self.controller.in_dim,
                           "dz": self.inputs.dz, "prev_actions": self.inputs.prev_actions,
                           "hidden": self.controller.hidden,
                           "params": torch.as_tensor(np.asarray(params, np.float32))},
            "eval": eval_info,
            "provenance": provenance,
        }

    @classmethod
    def from_bundle(cls, bundle: dict) -> tuple[Agent, np.ndarray]:
        spec = EnvSpec.from_dict(bundle["env"])
        c = bundle["controller"]  # dz, prev_actions and hidden are absent from older bundles: linear on [z, h]
        inputs = ControllerInputs(bool(c["use_h"]), bool(c.get("dz", False)), int(c.get("prev_actions", 0)))
        agent = cls.build(spec, bundle["vae"]["z_dim"], bundle["mdnrnn"]["hidden"],
                          bundle["mdnrnn"]["gaussians"], inputs=inputs, c_hidden=int(c.get("hidden", 0)))
        agent.vae.load_state_dict(bundle["vae"]["state_dict"])
        agent.mdnrnn.load_state_dict(bundle["mdnrnn"]["state_dict"])
        agent.m_saw_ends = bundle["mdnrnn"].get("saw_ends")
        return agent, bundle["controller"]["params"].numpy()


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def eval_lanes(episodes: int) -> int:
    return min(EVAL_LANES, episodes)


def evaluate(agent: Agent, params: np.ndarray, episodes: int, seed_start: int, device,
             workers: int = 0, max_steps: int = 0, engine: LaneEngine | None = None,
             abort: Callable[[], bool] | None = None) -> dict:
    """Mean/std of the return over `episodes` episodes with seeds seed_start + i, official env.

    `engine` (official renderer, eval_lanes(episodes) lanes) may be passed to reuse workers.
    `abort` is asked every step; when it says yes the episodes are dropped and Interrupted raised.
    """
    start = time.perf_counter()
    lanes = eval_lanes(episodes)
    own = engine is None
    if own:
        engine = LaneEngine(agent.spec, lanes, workers=workers, renderer="official", max_steps=max_steps)
    assert engine.lanes == lanes, "an evaluation engine must have eval_lanes(episodes) lanes"
    try:
        policy = agent.policy(np.asarray(params).reshape(1, -1), lanes, device)
        results = engine.run([Episode(seed_start + i) for i in range(episodes)], policy, abort=abort)
        steps = engine.steps
    finally:
        if own:
            engine.close()
    if len(results) < episodes:
        raise Interrupted(f"evaluation stopped after {len(results)} of {episodes} episodes")
    scores = [r.ret for r in results]
    return {
        "mean": float(np.mean(scores)), "std": float(np.std(scores)), "min": float(np.min(scores)),
        "max": float(np.max(scores)), "scores": scores, "episodes": len(scores), "seed_start": seed_start,
        "env_steps": int(steps), "wall_s": time.perf_counter() - start,
    }

