"""Where env workers run: `local` (processes on this machine) or `ray` (actors on a Ray cluster).

A backend only decides where the env workers live. The batched policy (V, M and every
candidate's C) stays in the master, so inference is batched once for all lanes whatever the
backend; the master draws every seed and the lanes are laid out by the config, so the same
seed and config give the same results on either backend (the lane-to-worker map does not
change results).
"""
from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UserError
from .workers import InlineWorker, ProcessWorker, WorkerError

log = logging.getLogger("worldmodels")


class BackendError(UserError):
    """The backend cannot be used (Ray missing, cluster unreachable); one line for the user."""


def default_workers() -> int:
    return max(1, min(16, os.cpu_count() or 1))


class LocalBackend:
    name = "local"

    def __init__(self, workers: int = 0):
        self.workers = workers or default_workers()

    def worker_count(self, lanes: int) -> int:
        return max(1, min(self.workers, lanes))

    def local_processes(self, n_workers: int) -> int:
        """Env processes on this machine competing with the master's policy for cores."""
        return n_workers if n_workers > 1 else 0

    def make_worker(self, spec: dict, lanes: list[int], renderer: str, max_steps: int, timeout: float,
                    n_workers: int) -> InlineWorker | ProcessWorker:
        cls = InlineWorker if n_workers == 1 else ProcessWorker
        return cls(spec, lanes, renderer, max_steps, timeout)

    def started(self, workers: list) -> None:
        pass

    def close(self) -> None:
        pass


# -- Ray ---------------------------------------------------------------------------------------
def _parse_address(address: str) -> tuple[str, int]:
    """host:port of a Ray cluster's GCS (ray://host:port for Ray Client also accepted)."""
    bare = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BackendError(f"--ray-address {address!r} is not HOST:PORT (for example 127.0.0.1:6379)")
    return host.strip("[]"), int(port)


def _current_cluster() -> str:
    """The address `ray start --head` on this machine recorded, for --ray-address auto."""
    path = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    try:
        return path.read_text().strip()
    except OSError:
        raise BackendError("--ray-address auto: no Ray cluster was started on this machine "
                           "(run `ray start --head` first)") from None


def check_reachable(address: str, timeout: float = 3.0) -> str:
    """Raise BackendError unless a Ray GCS answers at the address (ray.init on a dead address
    blocks for a long time and prints many lines of its own). Returns the address to use.

    One gRPC call with a deadline: a Ray GCS answers it (or refuses it for want of a token, which
    still proves a GCS is there); a closed port, a host that does not answer, or something else
    listening (a proxy, another server) fails within `timeout` seconds."""
    if address == "auto":
        address = _current_cluster()
    host, port = _parse_address(address)
    if "://" in address:  # Ray Client: not a GCS; checking that the port is open is all we can do
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return address
        except OSError as exc:
            raise _unreachable(address, exc.strerror or type(exc).__name__) from None
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")(b"", timeout=timeout)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            _use_token(address)
        elif exc.code() not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT):
            reason = {grpc.StatusCode.UNAVAILABLE: "nothing answers there",
                      grpc.StatusCode.DEADLINE_EXCEEDED: f"no answer within {timeout:g} s"}.get(
                exc.code(), "something that is not a Ray cluster answers there")
            raise _unreachable(address, reason) from None
    finally:
        channel.close()
    return address


def _use_token(address: str) -> None:
    """The cluster wants Ray's token authentication (on by default for clusters started by
    `ray start` on recent Ray): use the token this machine has, or say how to give one."""
    if os.environ.get("RAY_AUTH_MODE") == "token":
        return
    default = Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or default.exists():
        os.environ["RAY_AUTH_MODE"] = "token"
        return
    raise BackendError(f"the Ray cluster at {address} requires token authentication; copy its token "
                       "(`ray get-auth-token` on the head node) to ~/.ray/auth_token or RAY_AUTH_TOKEN")


def _unreachable(address: str, reason: str) -> BackendError:
    return BackendError(f"cannot reach the Ray cluster at {address} ({reason}); start one with "
                        "`ray start --head` or fix --ray-address / RAY_ADDRESS")


class EnvActor:
    """The envs of some lanes inside a Ray actor (wrapped by ray.remote on first use, so that
    Ray stays optional). Workers import this module by name: install worldmodels on every node."""

    def __init__(self, spec: dict, lanes: list[int], renderer: str, max_steps: int):
        from .workers import LaneEnvs

        self.envs = LaneEnvs(spec, lanes, renderer, max_steps)

    def info(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}

    def handle(self, msg: tuple) -> Any:
        return self.envs.handle(msg)


_REMOTE = None


def _remote_actor():
    global _REMOTE
    if _REMOTE is None:
        import ray

        # num_cpus=0: an eval engine's actors live beside the controller engine's (only one steps
        # at a time), and CPU-counted actors would wait forever for each other's CPUs.
        # _placement() still puts them on every node.
        _REMOTE = ray.remote(num_cpus=0, max_restarts=0)(EnvActor)
    return _REMOTE


class RayWorker:
    """Same interface as ProcessWorker; the envs live in a Ray actor somewhere in the cluster."""

    process = None

    def __init__(self, spec: dict, lanes: list[int], renderer: str, max_steps: int, timeout: float,
                 index: int = 0):
        self.args = (spec, lanes, renderer, max_steps)
        self.lanes = lanes
        self.timeout = timeout
        self.index = index
        self.actor: Any = None  # a Ray actor handle
        self.pid = None
        self.refs: deque = deque()  # answers of the requests sent, oldest first
        self._start()

    def _start(self) -> None:
        import ray

        self.refs.clear()
        self.actor = _remote_actor().options(scheduling_strategy=_placement(self.index)).remote(*self.args)
        try:
            self.where: dict = ray.get(self.actor.info.remote(), timeout=max(self.timeout, 120.0))
        except Exception as exc:  # noqa: BLE001 - any Ray failure is a worker failure
            raise WorkerError(f"Ray env actor failed to start: {_one_line(exc)}") from None
        self.pid = self.where["pid"]

    def send(self, msg: tuple) -> None:
        self.refs.append(self.actor.handle.remote(msg))  # an actor runs one caller's calls in order

    def receive(self) -> Any:
        import ray

        try:
            return ray.get(self.refs.popleft(), timeout=self.timeout)
        except ray.exceptions.GetTimeoutError:
            raise WorkerError(f"Ray env actor pid {self.pid} on {self.where['host']} did not answer "
                              f"within {self.timeout:.0f} s") from None
        except ray.exceptions.RayTaskError as exc:
            raise WorkerError(f"Ray env actor pid {self.pid} raised: {_one_line(exc)}") from None
        except ray.exceptions.RayError as exc:
            raise WorkerError(f"Ray env actor pid {self.pid} on {self.where['host']} died "
                              f"({type(exc).__name__})") from None

    def restart(self) -> None:
        self.close(kill=True)
        self._start()

    def close(self, kill: bool = False) -> None:
        import ray

        if self.actor is not None:
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.actor = None


def _placement(index: int):
    """Worker `index` goes to the node holding the index-th CPU of the alive nodes (round robin
    over CPU slots), so actors spread by CPU. The nodes are listed anew for every actor, so a
    replacement for an actor whose node died goes to a node that is alive. (Ray's SPREAD, and
    even a soft node affinity, put every actor of a small test cluster on one node.)"""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    slots = [node["NodeID"] for node in sorted((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["NodeID"])
             for _ in range(max(1, int(node.get("Resources", {}).get("CPU", 1))))]
    if not slots:
        return "SPREAD"
    return NodeAffinitySchedulingStrategy(node_id=slots[index % len(slots)], soft=False)


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class RayBackend:
    """Env workers are Ray actors spread over the cluster's nodes, one per cluster CPU by default.

    No address (and no RAY_ADDRESS) starts a local Ray instance for this run.
    """

    name = "ray"

    def __init__(self, address: str = "", workers: int = 0, log_fn=None):
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise BackendError("--backend ray needs Ray: pip install -e \".[ray]\"")
        address = address or os.environ.get("RAY_ADDRESS", "")
        if address:  # before Ray is imported: it reads RAY_AUTH_MODE once, at import
            address = check_reachable(address)
        import ray
        kwargs: dict[str, Any] = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                # "local": always a new instance, never a cluster that happens to run here
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported as one line
            raise BackendError(f"cannot connect to the Ray cluster at {address or 'a new local instance'}: "
                               f"{_one_line(exc)}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.address = address or "local"
        self.workers = workers or max(1, cpus)
        self.log_fn, self.placed, self.made = log_fn, False, 0
        self.summary = f"Ray cluster {self.address}: {nodes} node(s), {cpus} CPU(s), up to {self.workers} env actors"
        if log_fn is not None:
            log_fn(self.summary)

    def worker_count(self, lanes: int) -> int:
        return max(1, min(self.workers, lanes))

    def local_processes(self, n_workers: int) -> int:
        return n_workers  # actors on the head node compete with the master like local workers

    def make_worker(self, spec: dict, lanes: list[int], renderer: str, max_steps: int, timeout: float,
                    n_workers: int) -> RayWorker:
        self.made += 1
        return RayWorker(spec, lanes, renderer, max_steps, timeout, index=self.made - 1)

    def started(self, workers: list) -> None:
        """Say once where the first engine's actors landed."""
        if not self.placed and self.log_fn is not None:
            nodes = {w.where["node"] for w in workers}
            self.log_fn(f"{len(workers)} Ray env actors on {len(nodes)} node(s)")
        self.placed = True

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def make_backend(name: str, workers: int = 0, address: str = "",
                 log_fn: Callable[[str], None] | None = None) -> LocalBackend | RayBackend:
    if name == "ray":
        return RayBackend(address, workers, log_fn)
    return LocalBackend(workers)
