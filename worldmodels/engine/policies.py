"""Batched policies for the lane engine: the world-model agent, the exploring policy, a recorder."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..envs import EnvSpec
from ..models.controller import Controller, ControllerInputs, InputState
from ..models.mdnrnn import MDNRNN
from ..models.vae import AnyVAE, frames_to_tensor
from .rollout import Episode


class WorldModelPolicy:
    """V encodes every lane's frame in one batch, C acts with each lane's own candidate,
    M steps every lane's LSTM in one batch. One model copy for all lanes.

    params [P, n_params]: the candidates; episode.candidate picks a row.
    noise > 0 adds exploration (per-lane RNG seeded from the episode seed).
    """

    def __init__(self, spec: EnvSpec, vae: AnyVAE, mdnrnn: MDNRNN, controller: Controller,
                 params: np.ndarray, lanes: int, inputs: ControllerInputs = ControllerInputs(),
                 device: str = "cpu", noise: float = 0.0):
        self.spec, self.vae, self.mdnrnn, self.controller = spec, vae, mdnrnn, controller
        self.device, self.noise = torch.device(device), noise
        self.weights = tuple(t.to(self.device) for t in controller.unflatten(params))
        self.inputs = InputState(inputs, lanes, vae.z_dim, spec.action_dim, self.device)
        self.candidate = torch.zeros(lanes, dtype=torch.long, device=self.device)
        self.h, self.c = mdnrnn.initial_state(lanes, self.device)
        self.z = torch.zeros(lanes, vae.z_dim, device=self.device)
        self.rngs: list[np.random.Generator | None] = [None] * lanes

    def start(self, lane: int, episode: Episode) -> None:
        self.candidate[lane] = episode.candidate
        self.h[lane] = 0.0
        self.c[lane] = 0.0
        self.inputs.reset(lane)
        if self.noise > 0:
            self.rngs[lane] = np.random.default_rng([episode.seed, 7])

    @torch.no_grad()
    def act(self, obs: np.ndarray, lanes: list[int]) -> list:
        lanes = list(lanes)
        idx = torch.as_tensor(lanes, dtype=torch.long, device=self.device)
        z, _ = self.vae.encode(frames_to_tensor(obs[lanes], self.device))
        h, c = self.h[idx], self.c[idx]
        features = self.inputs.features(idx, z, h)
        raw = self.controller.raw(self.weights, features, self.candidate[idx])
        actions = list(self.controller.to_env(raw.cpu()))  # the one wait for the device
        if self.noise > 0:
            actions = [self._explore(lane, a) for lane, a in zip(lanes, actions)]
            a_model = self.controller.to_model_input(np.stack(actions)).to(self.device)
        else:  # M's input from raw on the device: no copy back (queued; runs while the envs step)
            a_model = self.controller.torch_actions(raw)
        self.inputs.record(idx, z, a_model)
        h, c = self.mdnrnn.step(z, a_model, (h, c))
        self.z[idx], self.h[idx], self.c[idx] = z, h, c
        return actions

    def _explore(self, lane: int, action):
        rng = self.rngs[lane]
        assert rng is not None  # start() seeds it when noise > 0
        if self.spec.action_kind == "discrete":
            return int(rng.integers(self.spec.action_dim)) if rng.random() < self.noise else action
        noisy = action + rng.normal(0.0, self.noise, size=np.shape(action)) * (
            np.asarray(self.spec.high) - np.asarray(self.spec.low)) / 2
        return np.clip(noisy, self.spec.low, self.spec.high).astype(np.float32)

    def observe(self, lane: int, action: Any, obs: np.ndarray, reward: float, terminated: bool,
                truncated: bool) -> None:
        pass

    def end(self, lane: int) -> None:
        pass


FOLLOW_ROWS = slice(34, 42)
"""Rows of a preprocessed CarRacing frame a little ahead of the car (the car sits near row 52)."""
MODE_SWITCH = {True: 0.01, False: 0.04}
"""Per-step chance that a CarRacing explore lane stops following the road (about 100 steps of
following) or stops wandering (about 25 steps): about 80% of the frames are on the road."""


class ExplorePolicy:
    """Random actions with momentum, so rollouts go somewhere.

    Discrete: keep the previous action with probability `repeat`, else draw a new one.
    Box: a mean-reverting random walk. On CarRacing a random walk leaves the road within ~100
    steps and most frames are grass, so each lane switches between two modes: following the
    road (steer toward the road pixels ahead, plus noise, random gas) and wandering (the random
    walk, which also shows how the car leaves and finds the road).
    """

    def __init__(self, spec: EnvSpec, lanes: int, policy: str = "explore", repeat: float = 0.8):
        self.spec, self.random, self.repeat = spec, policy == "random", repeat
        self.rngs: list[np.random.Generator | None] = [None] * lanes
        self.prev: list = [None] * lanes
        self.low = np.asarray(spec.low, np.float32)
        self.high = np.asarray(spec.high, np.float32)
        self.carracing = spec.id.endswith("CarRacing-v3") and spec.action_dim == 3
        self.follow = [False] * lanes
        self.gas = [0.2] * lanes

    def start(self, lane: int, episode: Episode) -> None:
        self.rngs[lane] = np.random.default_rng([episode.seed, 11])
        self.prev[lane] = None
        self.follow[lane] = not self.random and self.carracing
        self.gas[lane] = 0.2  # nothing carries over from the lane's previous episode

    def _follow_road(self, lane: int, frame: np.ndarray) -> np.ndarray:
        """Steer toward the mean column of the road pixels a little ahead of the car."""
        rng = self.rngs[lane]
        assert rng is not None  # start() seeds it
        ahead = frame[FOLLOW_ROWS].astype(np.int16)
        r, g, b = ahead[..., 0], ahead[..., 1], ahead[..., 2]
        cols = np.nonzero((abs(r - g) < 15) & (abs(g - b) < 15) & (r > 70) & (r < 140))[1]
        prev = self.prev[lane]
        steer = float(np.clip((cols.mean() - frame.shape[1] / 2) / 10.0, -1, 1)) if len(cols) else (
            float(prev[0]) if prev is not None else 0.0)
        if rng.random() < 0.05:
            self.gas[lane] = float(rng.uniform(0.0, 0.6))
        brake = float(rng.uniform(0.0, 0.5)) if rng.random() < 0.03 else 0.0
        steer = float(np.clip(steer + rng.normal(0.0, 0.2), -1, 1))
        return np.array([steer, self.gas[lane] if brake == 0 else 0.0, brake], np.float32)

    def _draw(self, rng: np.random.Generator):
        if self.spec.action_kind == "discrete":
            return int(rng.integers(self.spec.action_dim))
        if self.carracing:
            return np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.0),
                             rng.uniform(0, 0.3) if rng.random() < 0.1 else 0.0], np.float32)
        return rng.uniform(self.low, self.high).astype(np.float32)

    def act(self, obs: np.ndarray, lanes: list[int]) -> list:
        actions = []
        for lane in lanes:
            rng, prev = self.rngs[lane], self.prev[lane]
            assert rng is not None  # start() seeds it
            if self.carracing and not self.random and rng.random() < MODE_SWITCH[self.follow[lane]]:
                self.follow[lane] = not self.follow[lane]
            if self.carracing and self.follow[lane]:
                action = self._follow_road(lane, obs[lane])
            elif prev is None or self.random:
                action = self._draw(rng)
            elif self.spec.action_kind == "discrete":
                action = prev if rng.random() < self.repeat else self._draw(rng)
            else:
                target = self._draw(rng)
                action = np.clip(self.repeat * prev + (1 - self.repeat) * target, self.low, self.high)
                action = action.astype(np.float32)
            self.prev[lane] = action
            actions.append(action)
        return actions

    def observe(self, lane: int, action: Any, obs: np.ndarray, reward: float, terminated: bool,
                truncated: bool) -> None:
        pass

    def end(self, lane: int) -> None:
        pass


class Recorder:
    """Wraps a policy and stores each finished episode as one compressed .npz file.

    File = obs uint8 [T+1, 64, 64, 3] (first frame included), actions [T, ...],
    rewards float32 [T], terminated bool [T], truncated bool [T].
    """

    def __init__(self, policy, lanes: int, path_for: Callable[[Episode], Path], writers: int = 0):
        self.policy, self.path_for = policy, path_for
        self.buffers: list[dict | None] = [None] * lanes
        self.episodes: list[Episode | None] = [None] * lanes
        self.pending_first: list[bool] = [False] * lanes
        # writers > 0: compress and write in background threads (zlib releases the GIL), so the
        # master keeps stepping the lanes: a 1000-step CarRacing rollout takes ~0.25 s to compress
        # (measured on the 2-core machine), so inline writes alone would allow ~4 rollouts/s.
        self.writers = writers
        self._pool = ThreadPoolExecutor(writers, thread_name_prefix="recorder") if writers > 0 else None
        self._pending: list[Future] = []

    def start(self, lane: int, episode: Episode) -> None:
        self.policy.start(lane, episode)
        self.episodes[lane] = episode
        self.buffers[lane] = {"obs": [], "actions": [], "rewards": [], "terminated": [], "truncated": []}
        self.pending_first[lane] = True

    def act(self, obs: np.ndarray, lanes: list[int]) -> list:
        for lane in lanes:
            if self.pending_first[lane]:
                buf = self.buffers[lane]
                assert buf is not None  # start() made it
                buf["obs"].append(obs[lane].copy())
                self.pending_first[lane] = False
        return self.policy.act(obs, lanes)

    def observe(self, lane: int, action: Any, obs: np.ndarray, reward: float, terminated: bool,
                truncated: bool) -> None:
        buf = self.buffers[lane]
        assert buf is not None  # start() made it
        buf["obs"].append(obs.copy())
        buf["actions"].append(action)
        buf["rewards"].append(reward)
        buf["terminated"].append(terminated)
        buf["truncated"].append(truncated)
        self.policy.observe(lane, action, obs, reward, terminated, truncated)

    def end(self, lane: int) -> None:
        from ..checkpoint import save_npz

        buf, episode = self.buffers[lane], self.episodes[lane]
        assert buf is not None and episode is not None  # start() set them
        path = self.path_for(episode)
        arrays = dict(obs=np.stack(buf["obs"]), actions=np.asarray(buf["actions"]),
                      rewards=np.asarray(buf["rewards"], np.float32),
                      terminated=np.asarray(buf["terminated"], np.bool_),
                      truncated=np.asarray(buf["truncated"], np.bool_))
        self.buffers[lane] = None
        self.policy.end(lane)
        if self._pool is None:
            save_npz(path, **arrays)
            return
        self._pending.append(self._pool.submit(save_npz, path, **arrays))
        while len(self._pending) > 4 * self.writers:  # bounded backlog: the oldest write first
            self._pending.pop(0).result()

    def flush(self) -> None:
        """Wait until every finished episode is on disk (re-raises a failed write)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
