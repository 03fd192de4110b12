"""The Ray backend: a real local cluster (head + one more node via `ray start`), the same
results as the local backend for the same seed, a killed actor, an unreachable address."""
import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.ray]

# CarRacing: every return is a distinct float, so equal results mean equal episodes.
ARGS = ["--config", "smoke", "--envs", "carracing", "--seed", "11", "--set", "max_gens=3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(out, *extra, env=None, timeout=900, on_line=None):
    """wm-train as a user runs it; on_line(line, proc) sees each stderr line as it comes."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "worldmodels.cli", "wm-train", *ARGS, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    lines = []

    out_chunks = []

    def pump():
        for line in proc.stderr:
            lines.append(line)
            if on_line is not None:
                on_line(line, proc)

    # One reader per pipe: communicate() would read stderr too, taking lines from under pump
    # (a "gen    0" line it took never reached on_line, and the actors were killed too late).
    readers = [threading.Thread(target=pump, daemon=True),
               threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
        for reader in readers:
            reader.join(10)
    return proc.returncode, "".join(out_chunks), "".join(lines)


def outcome(out) -> dict:
    """Everything a run decided: per-generation fitness, eval snapshots, final scores, best C."""
    env = json.loads((out / "curriculum_results.json").read_text())["envs"][0]
    rows = list(csv.DictReader((out / "carracing" / "metrics.csv").open()))
    snaps = sorted((out / "carracing" / "eval").glob("gen_*.json"))
    bundle = torch.load(out / "carracing" / "best.pt", weights_only=True)
    return {
        "fitness": [(r["gen"], r["best_fitness"], r["mean_fitness"], r["env_steps"]) for r in rows],
        "snapshots": [json.loads(p.read_text())["scores"] for p in snaps],
        "final": env["final_eval"]["scores"],
        "best_eval": env["best_eval"]["mean"],
        "env_steps": env["env_steps"],
        "controller": bundle["controller"]["params"].tolist(),
    }


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    rc, _, err = train(out, "--workers", "2")
    assert rc == 0, err[-3000:]
    return outcome(out)


def wait_for_nodes(address: str, count: int, env: dict, timeout: float = 120.0) -> None:
    """`ray start` can return before the cluster lists the new node as alive; wait until it does."""
    probe = ("import sys, time, ray\n"
             "ray.init(address=sys.argv[1], logging_level='ERROR')\n"
             "deadline = time.time() + float(sys.argv[3])\n"
             "while sum(1 for n in ray.nodes() if n.get('Alive')) < int(sys.argv[2]):\n"
             "    if time.time() > deadline: sys.exit('not every node came up')\n"
             "    time.sleep(0.5)\n")
    subprocess.run([sys.executable, "-c", probe, address, str(count), str(timeout)], env=env, check=True,
                   capture_output=True, timeout=timeout + 60)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Head + a second node on loopback, one CPU each, with a token of their own."""
    token = tmp_path_factory.mktemp("ray") / "auth_token"
    token.write_text(secrets.token_hex(32))
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run(["ray", "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                        "--include-dashboard", "false", *common], env=env, check=True, capture_output=True,
                       timeout=180)
        subprocess.run(["ray", "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        wait_for_nodes(address, 2, env)
        yield address, token
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_cluster_run_gives_the_local_results(ray_cluster, local_run, tmp_path):
    address, token = ray_cluster
    # Only the token's path: wm-train sees that the cluster asks for a token and uses it.
    rc, stdout, err = train(tmp_path / "run", "--backend", "ray", "--ray-address", address,
                            env={"RAY_AUTH_TOKEN_PATH": str(token)})
    assert rc == 0, err[-3000:]
    placement = [line for line in err.splitlines() if "node(s)" in line]
    # the cluster and the actors' placement
    assert any("2 node(s)" in line for line in placement) and any("on 2 node(s)" in line for line in placement), placement
    assert outcome(tmp_path / "run") == local_run
    assert (tmp_path / "run" / "carracing" / "data" / "round0").is_dir()  # collected data on the head


def test_killed_actors_are_replaced_and_no_generation_is_lost(local_run, tmp_path):
    killed = []

    def kill_actors(line, proc):
        # Right after generation 0 ends: generation 1 is about to run on the actors.
        if not killed and "gen    0" in line:
            os.kill(proc.pid, signal.SIGSTOP)  # the trainer waits while its actors are found and killed
            try:
                pids = subprocess.run(["pgrep", "-f", "ray::EnvActor"], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(int(pid))
                    except ProcessLookupError:
                        pass
            finally:
                os.kill(proc.pid, signal.SIGCONT)

    # No address: a local Ray instance of its own.
    rc, _, err = train(tmp_path / "run", "--backend", "ray", "--workers", "2", env={"RAY_ADDRESS": ""},
                       on_line=kill_actors)
    assert rc == 0, err[-3000:]
    assert killed, "no Ray env actor was found to kill"
    assert "replacing it and replaying its episodes" in err and "died" in err
    assert outcome(tmp_path / "run") == local_run


def _listener():
    """Something that accepts TCP connections and is not Ray."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 404 Not Found\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("target", ["closed", "not-ray"])
def test_unreachable_address_is_one_line_and_exit_2(tmp_path, target):
    server = _listener() if target == "not-ray" else None
    port = server.getsockname()[1] if server else free_port()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "worldmodels.cli", "wm-train", "--backend", "ray",
                           "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    if server:
        server.close()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster" in lines[0], proc.stderr
    assert took < 60  # seconds, Python start-up included (ray.init alone would block far longer)
    assert not (tmp_path / "run").exists()  # nothing written
