"""scripts/bench.py: engine, naive and dream modes run and report what they measured."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"
KEYS = {"env_steps", "seconds", "steps_per_s", "peak_rss_mb", "device"}


def bench(*args) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", SDL_VIDEODRIVER="dummy")
    proc = subprocess.run([sys.executable, str(BENCH), *map(str, args), "--json"], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["engine", "naive"])
def test_env_modes_count_every_step(mode):
    res = bench(mode, "--env", "pong", "--episodes", 4, "--max-steps", 20, "--workers", 2)
    assert KEYS <= res.keys()
    assert res["env_steps"] == 4 * 20  # Pong never ends within 20 steps: every episode is capped
    assert res["steps_per_s"] > 0 and res["seconds"] > 0 and res["peak_rss_mb"] > 0
    assert res["workers"] == 2 and res["episodes"] == 4
    if mode == "naive":
        assert res["device"] == "cpu" and res["lanes"] == 1


def test_dream_counts_every_step():
    res = bench("dream", "--batch", 64, "--steps", 5, "--device", "cpu")
    assert KEYS <= res.keys() and res["device"] == "cpu"
    assert res["dream_steps"] == 64 * 5  # done_threshold 2.0: no dream episode ends
    assert res["population"] * res["rollouts"] == 64
    assert res["steps_per_s"] > 0


def test_engine_overhead_script_runs_every_lane_on_spawned_workers():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "engine_overhead.py"), "--lanes", "6",
                           "--workers", "2", "--steps", "15"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lanes 6, workers 2:" in proc.stdout and "(90 steps in" in proc.stdout, proc.stdout
