"""The agent = V + M + C for one env: build it, bundle it, evaluate it on the official env."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
from numpy.typing import ArrayLike

from .checkpoint import BUNDLE_FORMAT, BUNDLE_VERSION
from .config import RANGES, ControllerConfig
from .engine.policies import WorldModelPolicy
from .engine.rollout import Episode, LaneEngine
from .envs import EnvSpec
from .errors import CheckpointError, Interrupted
from .models.controller import Controller, ControllerInputs
from .models.mdnrnn import MDNRNN
from .models.vae import VAE_KINDS, AnyVAE, build_vae, bundle_kind, vae_kind_of
from .seeds import CONFIRM_SEED_START, FINAL_SEED_START, PICK_SEED_START, SNAPSHOT_SEED_START, TRAIN_SEED_END  # noqa: F401 - re-exported: the seed ranges live where the CLI can import them cheaply

EVAL_LANES = 16  # fixed, so the final eval and wm-play batch alike and give the same numbers
MAX_ACTION_DIM = 1024  # a box's size or a discrete env's action count (Atari: 18)
MAX_CROP = 10**4  # pixels: a crop box's edges


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
    vae: AnyVAE
    mdnrnn: MDNRNN
    controller: Controller
    inputs: ControllerInputs = ControllerInputs()
    m_saw_ends: bool | None = None
    """Whether M's training data held an episode end (None: not recorded); see dream.done_threshold_for."""

    @classmethod
    def build(cls, spec: EnvSpec, z_dim: int, hidden: int, gaussians: int,
              inputs: ControllerInputs = ControllerInputs(), c_hidden: int = 0, vae_kind: str = "conv") -> Agent:
        """inputs: C's features (default [z, h]); c_hidden: C's tanh units (0: linear); vae_kind: V's form."""
        vae = build_vae(vae_kind, z_dim)
        mdnrnn = MDNRNN(z_dim, spec.action_dim, hidden, gaussians)
        controller = Controller(inputs.dim(z_dim, hidden, spec.action_dim), spec.action_kind, spec.action_dim,
                                spec.low, spec.high, hidden=c_hidden)
        return cls(spec, vae.eval(), mdnrnn.eval(), controller, inputs)

    @classmethod
    def build_for(cls, spec: EnvSpec, z_dim: int, hidden: int, gaussians: int,
                  controller_cfg: ControllerConfig, vae_kind: str = "conv") -> Agent:
        """An agent whose C has the form that a ControllerConfig asks for."""
        inputs = ControllerInputs(controller_cfg.use_h, controller_cfg.dz, controller_cfg.prev_actions)
        return cls.build(spec, z_dim, hidden, gaussians, inputs=inputs, c_hidden=controller_cfg.hidden,
                         vae_kind=vae_kind)

    @property
    def use_h(self) -> bool:
        return self.inputs.use_h

    def to(self, device: str | torch.device) -> Agent:
        self.vae.to(device)
        self.mdnrnn.to(device)
        return self

    def policy(self, params: np.ndarray, lanes: int, device: str | torch.device,
               noise: float = 0.0) -> WorldModelPolicy:
        return WorldModelPolicy(self.spec, self.vae, self.mdnrnn, self.controller, params, lanes,
                                inputs=self.inputs, device=str(device), noise=noise)

    def bundle(self, params: ArrayLike, eval_info: dict, provenance: dict) -> dict:
        """Tensors and plain values only: torch.load(weights_only=True) rebuilds the agent."""
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "env": self.spec.to_dict(),
            "vae": {"z_dim": self.vae.z_dim, "kind": vae_kind_of(self.vae), "state_dict": _cpu(self.vae.state_dict())},
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
    def from_bundle(cls, bundle: dict, source: object = "the agent bundle",
                    expect: EnvSpec | None = None) -> tuple[Agent, np.ndarray]:
        """The agent and C's parameters of a bundle (load_bundle's). Every size, shape and value
        is checked first (check_bundle): a damaged or hostile file is one CheckpointError line
        naming `source`, before any network is built. expect: the env it must act in."""
        spec = check_bundle(bundle, source, expect)
        c = bundle["controller"]  # dz, prev_actions and hidden are absent from older bundles: linear on [z, h]
        inputs = ControllerInputs(bool(c["use_h"]), bool(c.get("dz", False)), int(c.get("prev_actions", 0)))
        agent = cls.build(spec, bundle["vae"]["z_dim"], bundle["mdnrnn"]["hidden"],
                          bundle["mdnrnn"]["gaussians"], inputs=inputs, c_hidden=int(c.get("hidden", 0)),
                          vae_kind=bundle_kind(bundle["vae"]))
        agent.vae.load_state_dict(bundle["vae"]["state_dict"])
        agent.mdnrnn.load_state_dict(bundle["mdnrnn"]["state_dict"])
        agent.m_saw_ends = bundle["mdnrnn"].get("saw_ends")
        return agent, bundle["controller"]["params"].numpy()


# -- checking a bundle before anything is built ------------------------------------------------
def _size(section: dict, key: str, range_key: str, where: str, default: int | None = None) -> int:
    value = section.get(key, default)
    low, high = RANGES[range_key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}.{key} is {value!r}, not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{where}.{key} = {value:,} is out of range ({low:,} to {high:,})")
    return value


def _flag(section: dict, key: str, where: str, default: bool | None = None) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}.{key} is {value!r}, not true or false")
    return value


def _check_spec(data: dict, expect: EnvSpec | None) -> EnvSpec:
    names = {f.name for f in fields(EnvSpec)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ValueError(f"env.{str(unknown[0])[:60]} is not an env setting")
    try:
        spec = EnvSpec.from_dict(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"env section: {str(exc)[:120]}") from None
    if not isinstance(spec.id, str) or not isinstance(spec.slug, str):
        raise ValueError("env.id and env.slug must be names")
    if spec.action_kind not in ("discrete", "box"):
        raise ValueError(f"env.action_kind is {spec.action_kind!r}, not discrete or box")
    dim = spec.action_dim
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_ACTION_DIM:
        raise ValueError(f"env.action_dim is {dim!r}, not a whole number from 1 to {MAX_ACTION_DIM}")
    bounds = (spec.low, spec.high)
    if not all(isinstance(b, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and math.isfinite(v) for v in b) for b in bounds):
        raise ValueError("env.low and env.high must be lists of finite numbers")
    if spec.action_kind == "box" and not (len(spec.low) == len(spec.high) == dim
                                          and all(lo <= hi for lo, hi in zip(*bounds))):
        raise ValueError(f"env.low and env.high must hold {dim} bounds each, low <= high")
    if spec.crop is not None and not (len(spec.crop) == 4 and all(0 <= v <= MAX_CROP for v in spec.crop)
                                      and spec.crop[0] < spec.crop[1] and spec.crop[2] < spec.crop[3]):
        raise ValueError(f"env.crop {spec.crop!r} is not a box (top < bottom, left < right)")
    if not isinstance(spec.dilate, bool):
        raise ValueError(f"env.dilate is {spec.dilate!r}, not true or false")
    if spec.target is not None and (isinstance(spec.target, bool) or not isinstance(spec.target, (int, float))
                                    or not math.isfinite(spec.target)):
        raise ValueError(f"env.target is {spec.target!r}, not a finite number")
    fire = spec.fire_action
    if fire is not None and (isinstance(fire, bool) or not isinstance(fire, int) or not 0 <= fire < dim):
        raise ValueError(f"env.fire_action is {fire!r}, not an action of the env")
    _size({"action_repeat": spec.action_repeat}, "action_repeat", "action_repeat", "env")
    if expect is not None:
        if spec.id != expect.id:
            raise ValueError(f"it is an agent for {spec.id}, not {expect.id}")
        mine = (spec.action_kind, spec.action_dim, [float(v) for v in spec.low], [float(v) for v in spec.high])
        theirs = (expect.action_kind, expect.action_dim, [float(v) for v in expect.low],
                  [float(v) for v in expect.high])
        if mine != theirs:
            raise ValueError(f"its action space ({spec.action_kind}, {spec.action_dim}) is not the one of "
                             f"{expect.id} ({expect.action_kind}, {expect.action_dim})")
    return spec


def _check_weights(state: object, model: torch.nn.Module, where: str) -> None:
    """state: exactly the tensors `model` (built on the meta device: no memory) has, with its
    shapes, floating point and finite."""
    if not isinstance(state, dict):
        raise ValueError(f"{where}.state_dict is not a mapping of tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        what = f"lacks '{missing[0]}'" if missing else f"has an unknown tensor '{str(extra[0])[:60]}'"
        raise ValueError(f"{where}.state_dict {what}")
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{where}.state_dict['{key}'] is not a floating-point tensor")
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(f"{where}.state_dict['{key}'] has shape {tuple(value.shape)}, "
                             f"not {tuple(ref.shape)}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{where}.state_dict['{key}'] holds NaN or inf")


def check_bundle(bundle: dict, source: object = "the agent bundle", expect: EnvSpec | None = None) -> EnvSpec:
    """Everything Agent.from_bundle relies on, checked before it allocates anything: the env
    section (and, given `expect`, that it is that env), the declared sizes within the config's
    ranges, every tensor's name, shape and finiteness against the networks built on torch's
    meta device, and C's parameters. Returns the EnvSpec; CheckpointError naming `source`."""
    try:
        for key in ("env", "vae", "mdnrnn", "controller"):
            if not isinstance(bundle.get(key), dict):
                raise ValueError(f"no '{key}' section")
        spec = _check_spec(bundle["env"], expect)
        v, m, c = bundle["vae"], bundle["mdnrnn"], bundle["controller"]
        z_dim = _size(v, "z_dim", "vae.z_dim", "vae")
        kind = bundle_kind(v)
        if kind not in VAE_KINDS:
            raise ValueError(f"vae.kind is {kind!r}, not one of {', '.join(VAE_KINDS)}")
        if kind == "keypoints" and z_dim % 2:
            raise ValueError(f"vae.z_dim = {z_dim} is odd, and a keypoint V's is even")
        hidden = _size(m, "hidden", "mdnrnn.hidden", "mdnrnn")
        gaussians = _size(m, "gaussians", "mdnrnn.gaussians", "mdnrnn")
        if m.get("action_dim", spec.action_dim) != spec.action_dim:
            raise ValueError(f"mdnrnn.action_dim {m.get('action_dim')!r} is not env.action_dim {spec.action_dim}")
        if m.get("saw_ends") not in (None, True, False):
            raise ValueError(f"mdnrnn.saw_ends is {m.get('saw_ends')!r}, not true, false or absent")
        inputs = ControllerInputs(_flag(c, "use_h", "controller"), _flag(c, "dz", "controller", False),
                                  _size(c, "prev_actions", "controller.prev_actions", "controller", 0))
        c_hidden = _size(c, "hidden", "controller.hidden", "controller", 0)
        in_dim = inputs.dim(z_dim, hidden, spec.action_dim)
        if c.get("in_dim", in_dim) != in_dim:
            raise ValueError(f"controller.in_dim {c.get('in_dim')!r} does not match its inputs ({in_dim})")
        with torch.device("meta"):
            vae, mdnrnn = build_vae(kind, z_dim), MDNRNN(z_dim, spec.action_dim, hidden, gaussians)
        _check_weights(v.get("state_dict"), vae, "vae")
        _check_weights(m.get("state_dict"), mdnrnn, "mdnrnn")
        n_params = Controller(in_dim, spec.action_kind, spec.action_dim, spec.low, spec.high,
                              hidden=c_hidden).n_params
        params = c.get("params")
        if not isinstance(params, torch.Tensor) or not params.is_floating_point():
            raise ValueError("controller.params is not a floating-point tensor")
        if tuple(params.shape) != (n_params,):
            raise ValueError(f"controller.params has shape {tuple(params.shape)}, not ({n_params},)")
        if not bool(torch.isfinite(params).all()):
            raise ValueError("controller.params holds NaN or inf")
    except ValueError as exc:
        raise CheckpointError(f"{source} is not a usable agent: {exc}; use a best.pt written by wm-train") from None
    return spec


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def eval_lanes(episodes: int) -> int:
    return min(EVAL_LANES, episodes)


def evaluate(agent: Agent, params: np.ndarray, episodes: int, seed_start: int, device: str | torch.device,
             workers: int = 0, max_steps: int = 0, engine: LaneEngine | None = None,
             abort: Callable[[], bool] | None = None) -> dict:
    """Mean/std of the return over `episodes` episodes with seeds seed_start + i, official env.

    `engine` (official renderer, eval_lanes(episodes) lanes) may be passed to reuse workers.
    `abort` is asked every step; when it says yes the episodes are dropped and Interrupted raised.
    """
    start = time.perf_counter()
    lanes = eval_lanes(episodes)
    own = engine is None
    if engine is None:
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

