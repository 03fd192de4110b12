"""The rollout engine: envs in worker processes, one batched policy in the master.

Episodes run in a fixed number of lockstep lanes. Lane i lives on worker i % W, but the
batch the policy sees is always all lanes in lane order, and episodes are handed to lanes
in a fixed order, so results do not depend on the number of workers or on timing.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..envs import FRAME, EnvSpec
from .backends import LocalBackend
from .workers import WorkerError

log = logging.getLogger("worldmodels")


@dataclass
class Episode:
    """One episode to run: its env seed and which candidate (controller) plays it."""

    seed: int
    candidate: int = 0
    tag: int = 0
    """Caller's label (e.g. the rollout number a recorder names its file after)."""


@dataclass
class EpisodeResult:
    index: int
    seed: int
    candidate: int
    ret: float
    length: int
    """Env steps (with an action repeat, more than the agent's actions)."""


class Policy(Protocol):
    """Batched over lanes. Arrays are indexed by lane; act() is asked for the lanes listed."""

    def start(self, lane: int, episode: Episode) -> None: ...

    def act(self, obs: np.ndarray, lanes: list[int]) -> list: ...

    def observe(self, lane: int, action: Any, obs: np.ndarray, reward: float, terminated: bool,
                truncated: bool) -> None: ...

    def end(self, lane: int) -> None: ...


class torch_threads:
    """Run a block with n torch intra-op threads, then restore. Small-batch inference on a CPU
    shared with env workers is fastest with few threads: more only spin against each other."""

    def __init__(self, n: int = 1):
        self.n = n
        self.saved: int | None = None

    def __enter__(self):
        import torch

        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        assert self.saved is not None, "__exit__ without __enter__"
        torch.set_num_threads(self.saved)


def policy_threads(process_workers: int) -> int:
    """Cores left for the batched policy while `process_workers` processes step envs."""
    free = (os.cpu_count() or 1) - process_workers
    return min(4, free) if free > 2 else 1


def lane_placement(lanes: int, workers: int, groups: int = 2) -> list[int]:
    """The worker of each lane. Lane i belongs to group i % groups; each group's lanes are dealt
    out along the workers, the count running on from one group to the next, so lane counts
    differ by at most one and a worker with `groups` or more lanes holds lanes of every group:
    it steps one group while the master acts for another. (The old (i // 2) % W left half of
    the workers idle when lanes == W: the 16-lane evaluation on 16 cores ran at half the
    official env's 16-process rate.) Placement never changes results (batches depend on the
    number of lanes and groups only).
    """
    groups = max(1, min(groups, lanes))
    place = [0] * lanes
    k = 0
    for g in range(groups):
        for lane in range(g, lanes, groups):
            place[lane] = k % workers
            k += 1
    return place


def pack_orders(orders: dict[int, tuple]) -> tuple:
    """One worker's request. The step actions travel as one stacked array: pickling a 64-lane
    request took 239 us with an array per lane, 84 us packed (the master's whole loop is
    ~20 us a step, scripts/engine_overhead.py)."""
    steps = [(lane, order[1]) for lane, order in orders.items() if order[0] == "step"]
    if steps:
        try:
            actions = np.stack([np.asarray(a) for _, a in steps])
        except ValueError:  # actions of different shapes: lane by lane
            return ("work", orders)
        if actions.dtype != object:
            resets = {lane: order[1] for lane, order in orders.items() if order[0] == "reset"}
            return ("steps", (resets, [lane for lane, _ in steps], actions))
    return ("work", orders)


class LaneEngine:
    """Runs lists of episodes on `lanes` envs spread over the workers of a backend (default:
    `workers` local processes).

    The lanes form `groups` fixed groups (lane i in group i % groups; default 2, even and odd
    lanes). While the workers step some groups, the master computes another group's actions, so
    env stepping and inference overlap; with more groups a worker has work queued while the
    master waits for the slowest worker of one group. Each worker holds lanes of every group
    where it holds that many (lane_placement). The groups depend only on the number of lanes and
    `groups`, so batches, and results, do not depend on the workers.
    """

    def __init__(self, spec: EnvSpec, lanes: int, workers: int = 0, renderer: str = "official",
                 max_steps: int = 0, timeout: float = 300.0, backend=None, groups: int = 2,
                 max_rewards: int = 0, stall_steps: int = 0, stall_penalty: float = 0.0, max_lives: int = 0):
        if groups < 1:
            raise ValueError("groups must be >= 1")
        self.spec = spec
        self.lanes = lanes
        self.max_rewards = max_rewards  # > 0: an episode also ends (truncated) at its k-th nonzero reward
        self.stall_steps = stall_steps  # > 0: ... or after this many env steps without one, which costs
        self.stall_penalty = stall_penalty  # stall_penalty (added to the return, not seen by the policy)
        self.max_lives = max_lives  # > 0: ... or when it has lost this many lives (Atari's info["lives"])
        backend = backend or LocalBackend(workers)
        n_workers = backend.worker_count(lanes)
        self.lane_worker = lane_placement(lanes, n_workers, groups)
        self.groups = [list(range(g, lanes, groups)) for g in range(min(groups, lanes))]
        self.workers = []
        try:
            for w in range(n_workers):
                self.workers.append(backend.make_worker(
                    spec.to_dict(), [lane for lane in range(lanes) if self.lane_worker[lane] == w],
                    renderer, max_steps, timeout, n_workers))
        except BaseException:
            self.close()
            raise
        backend.started(self.workers)
        self.pending: list[deque] = [deque() for _ in self.workers]  # requests sent, not yet answered
        self.history: dict[int, tuple[int, list]] = {}
        self.replaced = 0
        self.threads = policy_threads(backend.local_processes(n_workers))

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests to workers: send now, collect the answers later --------------------------
    def _post(self, orders: dict[int, tuple]) -> list[int]:
        """Send one "work" request per worker that has lanes in orders; returns those workers."""
        per_worker: dict[int, dict] = {}
        for lane, order in orders.items():
            per_worker.setdefault(self.lane_worker[lane], {})[lane] = order
        for w, payload in per_worker.items():
            msg = pack_orders(payload)
            try:
                self.workers[w].send(msg)
            except WorkerError as exc:
                self._recover(w, exc)
                self.workers[w].send(msg)
            self.pending[w].append(msg)
        return list(per_worker)

    def _collect(self, workers: list[int]) -> dict[int, tuple]:
        """The oldest answer of each of these workers, merged by lane."""
        out: dict[int, tuple] = {}
        for w in workers:
            for attempt in range(3):
                try:
                    out.update(self.workers[w].receive())
                    break
                except WorkerError as exc:
                    if attempt == 2:
                        raise
                    self._recover(w, exc)
            self.pending[w].popleft()
        return out

    def _drain(self) -> None:
        """Collect and drop every answer still owed (an aborted run leaves some)."""
        for w, queue in enumerate(self.pending):
            while queue:
                self._collect([w])

    def _recover(self, w: int, exc: Exception) -> None:
        """Replace a dead or hung worker, replay its lanes' episodes up to their last answered
        step, and send again the requests it had not answered."""
        log.warning("env worker %d failed (%s); replacing it and replaying its episodes", w, exc)
        self.replaced += 1
        worker = self.workers[w]
        worker.restart()
        histories = {lane: self.history[lane] for lane in worker.lanes if lane in self.history}
        if histories:
            worker.send(("replay", histories))
            worker.receive()
        for msg in self.pending[w]:
            worker.send(msg)

    # -- the episode loop ------------------------------------------------------------------
    def run(self, episodes: list[Episode], policy: Policy,
            on_result: Callable[[EpisodeResult], None] | None = None,
            keep_going: Callable[[], bool] | None = None,
            abort: Callable[[], bool] | None = None) -> list[EpisodeResult]:
        """Run every episode (in lane lockstep); returns results in episode order.

        keep_going is asked before an episode is started; when it says no, episodes not yet
        started are skipped (their results are missing from the list). abort is asked every
        step; when it says yes, the run returns at once with the episodes finished so far.
        """
        with torch_threads(self.threads):
            try:
                return self._run(episodes, policy, on_result, keep_going, abort)
            finally:
                try:
                    self._drain()  # an aborted or failed run leaves answers owed
                except WorkerError:
                    for w, queue in enumerate(self.pending):
                        if queue:
                            self.workers[w].restart()
                            queue.clear()

    def _run(self, episodes, policy, on_result, keep_going, abort) -> list[EpisodeResult]:
        queue = deque(enumerate(episodes))
        lane_episode: list[int | None] = [None] * self.lanes
        returns = np.zeros(self.lanes, np.float64)
        lengths = np.zeros(self.lanes, np.int64)
        paid = np.zeros(self.lanes, np.int64)  # nonzero rewards so far, for max_rewards
        lost = np.zeros(self.lanes, np.int64)  # lives lost so far, for max_lives
        quiet = np.zeros(self.lanes, np.int64)  # env steps since the last nonzero reward, for stall_steps
        obs = np.zeros((self.lanes, FRAME, FRAME, 3), np.uint8)
        results: dict[int, EpisodeResult] = {}
        resets: dict[int, int] = {}  # lane -> seed, sent with its group's next request
        self.steps = 0

        def assign(lanes: list[int]) -> None:
            for lane in lanes:
                if queue and (keep_going is None or keep_going()):
                    index, episode = queue.popleft()
                    lane_episode[lane] = index
                    returns[lane], lengths[lane], paid[lane], quiet[lane], lost[lane] = 0.0, 0, 0, 0, 0
                    resets[lane] = episode.seed
                    self.history[lane] = (episode.seed, [])
                    policy.start(lane, episode)
                else:
                    lane_episode[lane] = None
                    self.history.pop(lane, None)

        def launch(group: list[int]) -> tuple[list[int], dict[int, tuple], list[int]] | None:
            """Act for the group's running lanes and send their steps, with the resets of its
            lanes that start an episode; None when the group has nothing to do."""
            lanes = [lane for lane in group if lane_episode[lane] is not None and lane not in resets]
            orders: dict[int, tuple] = {lane: ("reset", resets.pop(lane)) for lane in group if lane in resets}
            if lanes:
                orders.update((lane, ("step", a)) for lane, a in zip(lanes, policy.act(obs, lanes)))
            return (group, orders, self._post(orders)) if orders else None

        assign(list(range(self.lanes)))
        in_flight = deque(x for x in map(launch, self.groups) if x is not None)
        while in_flight:
            if abort is not None and abort():
                self.history.clear()
                break
            group, orders, workers = in_flight.popleft()
            answers = self._collect(workers)
            finished = []
            for lane, answer in sorted(answers.items()):
                obs[lane] = answer[0]
                if orders[lane][0] == "reset":
                    continue
                action = orders[lane][1]
                self.history[lane][1].append(action)  # after the step: a replay redoes only answered steps
                _, reward, terminated, truncated, frames, lives_lost = answer
                returns[lane] += reward
                lengths[lane] += frames  # env steps: an action held for k steps counts k
                self.steps += frames
                if self.max_rewards and reward != 0:
                    paid[lane] += 1
                    truncated = truncated or paid[lane] >= self.max_rewards
                if self.max_lives and lives_lost:
                    lost[lane] += lives_lost
                    truncated = truncated or lost[lane] >= self.max_lives
                quiet[lane] = 0 if reward != 0 else quiet[lane] + frames
                if self.stall_steps and quiet[lane] >= self.stall_steps and not (terminated or truncated):
                    returns[lane] += self.stall_penalty
                    truncated = True
                policy.observe(lane, action, answer[0], reward, terminated, truncated)
                if terminated or truncated:
                    index = lane_episode[lane]
                    assert index is not None  # a lane that stepped runs an episode
                    episode = episodes[index]
                    result = EpisodeResult(index, episode.seed, episode.candidate,
                                           float(returns[lane]), int(lengths[lane]))
                    results[index] = result
                    policy.end(lane)
                    if on_result is not None:
                        on_result(result)
                    finished.append(lane)
            assign(finished)
            nxt = launch(group)
            if nxt is not None:
                in_flight.append(nxt)
        return [results[i] for i in sorted(results)]
