"""Environment workers: they only step environments and preprocess frames. No torch here.

A worker owns a fixed set of lanes (one env each). The master sends one message per step of a
lane group: for each lane, an action to step or a seed to reset with; or whole action histories
to replay after a worker was replaced. Every answer maps lane -> (frame, ...): (frame, reward,
terminated, truncated, env steps taken: more than 1 when the spec holds actions, lives lost in
the step: 0 where the env counts none) for a step,
(frame,) for a reset or replay. Frames come back through shared memory
(one 64x64x3 slot per lane); the pipe carries only rewards and flags. Workers exit when the master goes away:
the pipe closes (EOF), and on Linux the kernel also sends SIGKILL on parent death.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections import deque
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from ..envs import FRAME, EnvSpec, make_env, preprocess

SPIN_ENV = "WM_SPIN_US"


def spin_seconds() -> float:
    """How long a worker waiting for its next order, and the master waiting for an answer, poll
    the pipe before they block on it (WM_SPIN_US, microseconds; default 0: block at once).
    Experimental: on the GPU machine half the master's cost of sending a batch's orders was the
    pipe write that wakes each sleeping worker; a reader that is still polling needs no wake-up.
    Costs CPU while it spins, so it only helps where every process has a core."""
    try:
        return max(0.0, float(os.environ.get(SPIN_ENV, "0"))) / 1e6
    except ValueError:
        return 0.0


def _spin(conn, seconds: float) -> None:
    """Poll conn without sleeping until it has data or `seconds` have passed."""
    if seconds <= 0:
        return
    deadline = time.perf_counter() + seconds
    while not conn.poll(0) and time.perf_counter() < deadline:
        pass


class WorkerError(RuntimeError):
    """A worker died, hung or raised; the engine replaces it and replays its lanes."""


class LaneEnvs:
    """The envs of some lanes, stepped in-process. Used inside workers and for workers=1."""

    def __init__(self, spec: dict, lanes: list[int], renderer: str, max_steps: int):
        self.spec = EnvSpec.from_dict(spec)
        self.make = lambda: make_env(self.spec, renderer=renderer, max_steps=max_steps)
        self.envs = {lane: self.make() for lane in lanes}
        self.lives = dict.fromkeys(lanes, 0)  # lives the env reported last (0 where it has none)
        # A reused Box2D world remembers earlier episodes (contact order), which changes the last
        # bits of the physics: a fresh env per episode makes an episode depend on its seed only.
        self.fresh = "box2d" in type(next(iter(self.envs.values())).unwrapped).__module__ if lanes else False

    def _reset_one(self, lane: int, seed: int):
        if self.fresh:
            self.envs[lane].close()
            self.envs[lane] = self.make()
        obs, info = self.envs[lane].reset(seed=int(seed))
        self.lives[lane] = int(info.get("lives", 0))
        return obs, info

    def work(self, orders: dict[int, tuple]) -> dict[int, tuple]:
        """orders: lane -> ("step", action) or ("reset", seed)."""
        out: dict[int, tuple] = {}
        for lane, (what, value) in orders.items():
            if what == "reset":
                obs, _ = self._reset_one(lane, value)
                out[lane] = (preprocess(obs, self.spec),)
            else:
                obs, reward, terminated, truncated, info = self.envs[lane].step(value)
                lives = int(info.get("lives", 0))
                lost, self.lives[lane] = max(0, self.lives[lane] - lives), lives
                out[lane] = (preprocess(obs, self.spec), float(reward), bool(terminated), bool(truncated),
                             int(info.get("frames", 1)), lost)
        return out

    def steps(self, packed: tuple) -> dict[int, tuple]:
        """pack_orders' form: (lane -> reset seed, stepping lanes, their actions stacked)."""
        resets, lanes, actions = packed
        orders = {lane: ("reset", seed) for lane, seed in resets.items()}
        for lane, action in zip(lanes, actions):
            orders[lane] = ("step", action.item() if action.ndim == 0 else action)
        return self.work(orders)

    def replay(self, histories: dict[int, tuple[int, list]]) -> dict[int, tuple]:
        """Reset each lane with its seed and step its recorded actions: the env is back in place."""
        out = {}
        for lane, (seed, actions) in histories.items():
            obs, _ = self._reset_one(lane, seed)
            for action in actions:
                obs, *_, info = self.envs[lane].step(action)
                self.lives[lane] = int(info.get("lives", 0))
            out[lane] = (preprocess(obs, self.spec),)
        return out

    def handle(self, msg: tuple) -> Any:
        kind, payload = msg
        return getattr(self, kind)(payload)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no libc: the pipe EOF still ends the worker
            pass


def _frames_to_shared(result: dict, frames: np.ndarray, slot: dict[int, int]) -> dict:
    """Move the frames of an answer into shared memory; the pipe carries only the scalars."""
    for lane, value in result.items():
        frames[slot[lane]] = value[0]
        result[lane] = (None, *value[1:])
    return result


def _frames_from_shared(result: dict, frames: np.ndarray, slot: dict[int, int]) -> dict:
    for lane, value in result.items():
        result[lane] = (frames[slot[lane]].copy(), *value[1:])
    return result


def worker_main(conn: Connection, spec: dict, lanes: list[int], renderer: str, max_steps: int, shm_name: str) -> None:
    _die_with_parent()
    # The master decides when to stop: Ctrl-C or a scheduler's SIGTERM to the process group
    # must not kill workers the master would then replace (it closes them, or they die with it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        shm = shared_memory.SharedMemory(name=shm_name)
        frames = np.ndarray((len(lanes), FRAME, FRAME, 3), np.uint8, buffer=shm.buf)
        slot = {lane: i for i, lane in enumerate(lanes)}
        envs = LaneEnvs(spec, lanes, renderer, max_steps)
    except Exception:  # noqa: BLE001 - reported to the master
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    spin = spin_seconds()
    while True:
        try:
            _spin(conn, spin)
            msg = conn.recv()
        except (EOFError, OSError):
            break  # the master is gone
        if msg is None:
            break
        try:
            conn.send(("ok", _frames_to_shared(envs.handle(msg), frames, slot)))
        except Exception:  # noqa: BLE001 - reported to the master
            conn.send(("error", traceback.format_exc()))
    envs.close()
    del frames
    shm.close()


class ProcessWorker:
    """A worker process behind a pipe. send() starts a request and receive() collects the
    oldest answer (requests may queue up); both raise WorkerError on death, hang or error."""

    def __init__(self, spec: dict, lanes: list[int], renderer: str, max_steps: int, timeout: float):
        self.args = (spec, lanes, renderer, max_steps)
        self.lanes = lanes
        self.timeout = timeout
        self.spin = spin_seconds()
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        # Frames travel through shared memory (one 64x64x3 slot per lane), not the pipe.
        self.shm = shared_memory.SharedMemory(create=True, size=max(1, len(self.lanes)) * FRAME * FRAME * 3)
        self.frames = np.ndarray((len(self.lanes), FRAME, FRAME, 3), np.uint8, buffer=self.shm.buf)
        self.slot = {lane: i for i, lane in enumerate(self.lanes)}
        self.process = ctx.Process(target=worker_main, args=(child, *self.args, self.shm.name), daemon=True)
        self.process.start()
        child.close()
        status, info = self._recv(timeout=max(self.timeout, 120.0))
        if status != "ready":
            raise WorkerError(f"worker failed to start: {info.strip().splitlines()[-1]}")

    def _recv(self, timeout: float):
        try:
            _spin(self.conn, self.spin)
        except (EOFError, OSError):
            pass  # a dead worker: poll below says so
        if not self.conn.poll(timeout):
            raise WorkerError(f"worker pid {self.process.pid} did not answer within {timeout:.0f} s")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(1.0)
            raise WorkerError(f"worker pid {self.process.pid} died (exit code {self.process.exitcode})") from None

    def send(self, msg: tuple) -> None:
        """Start a request; receive() collects the answer (so many workers run at once)."""
        try:
            self.conn.send(msg)
        except (BrokenPipeError, OSError):
            raise WorkerError(f"worker pid {self.process.pid} died (exit code {self.process.exitcode})") from None

    def receive(self) -> Any:
        status, result = self._recv(self.timeout)
        if status != "ok":
            raise WorkerError(f"worker pid {self.process.pid} raised: {result.strip().splitlines()[-1]}")
        return _frames_from_shared(result, self.frames, self.slot)

    def restart(self) -> None:
        self.close(kill=True)
        self._start()

    def close(self, kill: bool = False) -> None:
        try:
            if not kill:
                self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(0 if kill else 2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2.0)
        self.conn.close()
        del self.frames
        self.shm.close()
        self.shm.unlink()


class InlineWorker:
    """Same interface as ProcessWorker, in the master's process (one worker, tests)."""

    def __init__(self, spec: dict, lanes: list[int], renderer: str, max_steps: int, timeout: float = 0.0):
        self.lanes = lanes
        self.envs = LaneEnvs(spec, lanes, renderer, max_steps)
        self.process = None
        self.results: deque = deque()

    def send(self, msg: tuple) -> None:
        self.results.append(self.envs.handle(msg))

    def receive(self) -> Any:
        return self.results.popleft()

    def restart(self) -> None:  # pragma: no cover - an inline worker cannot die alone
        pass

    def close(self, kill: bool = False) -> None:
        self.envs.close()
