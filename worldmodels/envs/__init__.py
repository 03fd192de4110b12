"""Environments: ids and aliases, make_env, preprocessing to 64x64, Atari FIRE handling.

No torch here: environment worker processes import this module. No cv2, pygame or Box2D at
import either (`import worldmodels` registers the CarRacing id through this module): cv2 is
imported where frames are resized, the CarRacing module when that env is made.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from ..names import ALIASES, CURRICULUM, SLUGS, TARGETS, slug  # noqa: F401 - re-exported

FRAME = 64

# Crop boxes (top, bottom, left, right) that keep the playfield and drop score bars / HUD.
CROPS = {
    "CarRacing-v3": (0, 84, 0, 96),
    "ALE/Pong-v5": (34, 194, 0, 160),
    "ALE/Breakout-v5": (32, 196, 8, 152),
}

_registered = False


def register_all() -> None:
    """Register ALE ids and the project's own ids (idempotent)."""
    global _registered
    if _registered:
        return
    import ale_py

    gym.register_envs(ale_py)
    register_carracing()
    if CATCH_ID not in gym.registry:
        gym.register(id=CATCH_ID, entry_point="worldmodels.envs.catch:Catch", max_episode_steps=1000)
    _registered = True


CARRACING_ID = "worldmodels/CarRacing-v3"
CATCH_ID = "worldmodels/Catch-v0"  # envs/catch.py: a tiny pixel game (`--envs catch`)


def register_carracing() -> None:
    """Register CARRACING_ID, the official CarRacing-v3 with the project's renderers
    (idempotent). By a string entry point: envs/carracing.py (pygame, Box2D, cv2) is imported
    when the env is made, not here."""
    if CARRACING_ID in gym.registry:
        return
    official = gym.spec("CarRacing-v3")
    kwargs = dict(official.kwargs or {})
    kwargs.setdefault("renderer", "fast")
    gym.register(id=CARRACING_ID, entry_point="worldmodels.envs.carracing:CarRacing",
                 max_episode_steps=official.max_episode_steps, reward_threshold=official.reward_threshold,
                 kwargs=kwargs)


def resolve_env_ids(names: list[str]) -> list[str]:
    """Expand 'all' and aliases; reject ids Gymnasium does not know."""
    register_all()
    out: list[str] = []
    for name in names:
        for part in [p.strip() for p in name.split(",") if p.strip()]:
            ids = [ALIASES[a] for a in CURRICULUM] if part == "all" else [ALIASES.get(part.lower(), part)]
            for env_id in ids:
                if env_id not in gym.registry:
                    raise ConfigError(f"unknown env '{part}': use pong, breakout, carracing, all, "
                                      "or a registered Gymnasium id such as ALE/Pong-v5")
                if env_id not in out:
                    out.append(env_id)
    if not out:
        raise ConfigError("no environment given: use --envs all or a list such as pong,carracing")
    return out


@dataclass
class EnvSpec:
    """What the agent needs to know about an env; plain values only (stored in best.pt)."""

    id: str
    slug: str
    target: float | None
    crop: tuple[int, int, int, int] | None
    dilate: bool
    action_kind: str  # "discrete" or "box"
    action_dim: int  # number of discrete actions, or the box's size
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    fire_action: int | None = None
    action_repeat: int = 1
    """Env steps each of the agent's actions is held for (the ActionRepeat wrapper of make_env);
    1 = every step. Stored in best.pt, so evaluation and wm-play hold actions the same way."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EnvSpec:
        data = dict(data)
        if data.get("crop") is not None:
            data["crop"] = tuple(int(v) for v in data["crop"])
        return cls(**data)


def probe_spec(env_id: str) -> EnvSpec:
    """Make the env once and read its spaces; rejects envs without image observations."""
    register_all()
    try:
        with quiet_native_stderr():
            env = gym.make(env_id)
    except Exception as exc:  # noqa: BLE001 - any failure to build the env is the user's input
        raise ConfigError(f"cannot create env '{env_id}': {exc}") from None
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 3
                and obs_space.shape[-1] in (1, 3)):
            raise ConfigError(f"env '{env_id}' has no image observation (got {obs_space}); "
                              "worldmodels needs HxWx3 or HxWx1 frames")
        fire = None
        is_atari = env_id.startswith("ALE/")
        if is_atari:
            atari: Any = env.unwrapped  # ale_py's AtariEnv
            meanings = atari.get_action_meanings()
            fire = meanings.index("FIRE") if "FIRE" in meanings else None
        if isinstance(act_space, gym.spaces.Discrete):
            kind, dim, low, high = "discrete", int(act_space.n), [], []
        elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            kind, dim = "box", int(act_space.shape[0])
            low = [float(v) for v in act_space.low]
            high = [float(v) for v in act_space.high]
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ConfigError(f"env '{env_id}' has an unbounded action box; cannot squash actions")
        else:
            raise ConfigError(f"env '{env_id}' has action space {act_space}; "
                              "worldmodels handles Discrete or a 1-D Box")
    finally:
        env.close()
    return EnvSpec(id=env_id, slug=slug(env_id), target=TARGETS.get(env_id), crop=CROPS.get(env_id),
                   dilate=is_atari, action_kind=kind, action_dim=dim, low=low, high=high,
                   fire_action=fire)


def with_action_repeat(spec: EnvSpec, repeat: int) -> EnvSpec:
    """The spec with the agent holding each action for `repeat` env steps; Atari v5 envs keep 1
    (they already hold each action for 4 frames)."""
    spec.action_repeat = 1 if spec.id.startswith("ALE/") else max(1, int(repeat))
    return spec


def preprocess(frame: np.ndarray, spec: EnvSpec) -> np.ndarray:
    """Raw frame -> uint8 [64, 64, 3]: crop the playfield, thicken small Atari objects, resize.

    Dilating before the area resize keeps a 1-2 pixel ball visible at 64x64 (a plain resize
    averages it into the background, and the VAE then drops it at almost no cost).
    """
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if spec.crop is not None:
        top, bottom, left, right = spec.crop
        frame = frame[top:bottom, left:right]
    import cv2  # here, not at the top: importing the package must not load OpenCV

    if spec.dilate:
        frame = cv2.dilate(frame, np.ones((3, 3), np.uint8))
    if frame.shape[0] != FRAME or frame.shape[1] != FRAME:
        frame = cv2.resize(frame, (FRAME, FRAME), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


class FireOnLifeLoss(gym.Wrapper):
    """Press FIRE after reset and after every lost life (Breakout stalls otherwise).

    Part of the agent, not of the env: the score is still the official env's, with the
    reward of the FIRE steps counted.
    """

    def __init__(self, env: gym.Env, fire_action: int):
        super().__init__(env)
        self.fire_action = fire_action
        self.lives = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.lives = int(info.get("lives", 0))
        if self.lives > 0:
            obs, _, terminated, truncated, info = self.env.step(self.fire_action)
            if terminated or truncated:  # pragma: no cover - cannot happen on a fresh game
                obs, info = self.env.reset(**kwargs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = int(info.get("lives", 0))
        if 0 < lives < self.lives and not (terminated or truncated):
            obs, r2, terminated, truncated, info = self.env.step(self.fire_action)
            reward = float(reward) + float(r2)
            lives = int(info.get("lives", 0))
        self.lives = lives
        return obs, reward, terminated, truncated, info


class ActionRepeat(gym.Wrapper):
    """Hold each action for `repeat` env steps (fewer when the episode ends first) and return the
    last frame, the summed reward and info["frames"], the env steps taken.

    Part of the agent, like FIRE: the env and its score are the official ones. On the project's
    own CarRacing (fast or exact renderer) the frames nobody sees are not drawn, so a held step
    costs the physics only; the official env draws every frame as always.
    """

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        self.repeat = repeat
        self._skip = hasattr(env.unwrapped, "skip_render")

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if self._skip:
            base: Any = self.env.unwrapped  # the project's CarRacing (skip_render, redraw)
            base.skip_render = False
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        total, frames = 0.0, 0
        base: Any = self.env.unwrapped if self._skip else None  # the project's CarRacing (skip_render, redraw)
        for i in range(self.repeat):
            if self._skip:
                base.skip_render = i < self.repeat - 1
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            frames += 1
            if terminated or truncated:
                break
        if self._skip and base.skip_render:  # ended early on an undrawn frame
            base.skip_render = False
            obs = base.redraw()
        info = dict(info, frames=frames)
        return obs, total, terminated, truncated, info


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """ALE prints a banner from C++ on every new emulator; keep it off the user's terminal."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover
        yield
        return
    sys.stderr.flush()
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def renderer_used(spec: EnvSpec, renderer: str) -> str:
    """The renderer make_env gives `spec` when asked for `renderer`: only CarRacing has others."""
    return renderer if spec.id == "CarRacing-v3" else "official"


def make_env(spec: EnvSpec | str, renderer: str = "official", max_steps: int = 0) -> gym.Env:
    """The official env (or, for training, the fast CarRacing, and Atari's seeded resets
    without a ROM reload: envs/ale_reset.py), FIRE handling, an optional cap on env steps, and
    the spec's action repeat."""
    register_all()
    if isinstance(spec, str):
        spec = probe_spec(spec)
    if renderer_used(spec, renderer) != "official" and CARRACING_ID in gym.registry:
        env = gym.make(CARRACING_ID, renderer=renderer)
    elif spec.id.startswith("ALE/"):
        with quiet_native_stderr():
            env = gym.make(spec.id)
        if renderer != "official":  # the same states, without a ROM reload per seeded reset
            from .ale_reset import fast_seeded_reset

            fast_seeded_reset(env.unwrapped)
    else:
        env = gym.make(spec.id)
    if spec.fire_action is not None:
        env = FireOnLifeLoss(env, spec.fire_action)
    if max_steps > 0:  # env steps, not held actions: ActionRepeat goes outside
        env = gym.wrappers.TimeLimit(env, max_episode_steps=max_steps)
    if spec.action_repeat > 1:
        env = ActionRepeat(env, spec.action_repeat)
    return env
