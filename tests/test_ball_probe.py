"""scripts/ball_probe.py: finds the ball where it is, and probes a run's V end to end."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodels.checkpoint import save_npz, save_torch
from worldmodels.models.vae import ConvVAE

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "scripts" / "ball_probe.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("ball_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_rollouts(data: Path, count: int = 4, length: int = 60) -> list[tuple[int, int]]:
    """Black Breakout-like frames, a static paddle and a 2x2 ball somewhere between rows 26 and 57."""
    rng = np.random.default_rng(0)
    balls = []
    for r in range(count):
        obs = np.zeros((length, 64, 64, 3), np.uint8)
        obs[:, 61, 20:28] = (200, 72, 72)  # the paddle: outside the region, never mistaken for the ball
        for t in range(length):
            y, x = int(rng.integers(26, 56)), int(rng.integers(0, 62))
            obs[t, y:y + 2, x:x + 2] = 200
            balls.append((y, x))
        save_npz(data / f"ep_{r:06d}.npz", obs=obs, actions=np.zeros(length - 1, np.int64))
    return balls


def test_ball_frames_find_the_ball(tmp_path):
    balls = fake_rollouts(tmp_path)
    frames, where = load_probe().ball_frames(sorted(tmp_path.glob("ep_*.npz")), (slice(26, 58), slice(0, 64)))
    expected = np.array([(y - 26 + 0.5, x + 0.5) for y, x in balls]).reshape(4, 60, 2)[:, ::3].reshape(-1, 2)
    assert frames.shape == (len(expected), 64, 64, 3)
    assert np.allclose(where, expected)


def test_probe_runs_on_a_run_folder_and_refuses_an_empty_one(tmp_path):
    data = tmp_path / "run" / "breakout" / "data" / "round0"
    data.mkdir(parents=True)
    fake_rollouts(data)
    torch.manual_seed(0)
    save_torch(tmp_path / "run" / "breakout" / "vae.pt", {"z_dim": 8, "state_dict": ConvVAE(8).state_dict()})
    proc = subprocess.run([sys.executable, str(PROBE), str(tmp_path / "run"), "breakout"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r"(\d+) frames with the ball; probe R\^2 row (-?[\d.]+) col (-?[\d.]+)", proc.stdout)
    assert match and int(match.group(1)) == 80, proc.stdout
    pcs = [sys.executable, str(PROBE), str(tmp_path / "run"), "breakout", "--pcs", "2", "8"]
    proc = subprocess.run(pcs, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs encoded rollouts" in proc.stderr and "Traceback" not in proc.stderr
    encoded = tmp_path / "run" / "breakout" / "encoded" / "round0"
    encoded.mkdir(parents=True)
    mu = np.zeros((50, 8), np.float32)
    mu[:, 0] = np.linspace(-3, 3, 50)  # one dimension holds 90% of the variance, another 10%
    mu[:, 1] = np.linspace(-1, 1, 50)
    save_npz(encoded / "ep_000000.npz", mu=mu)
    proc = subprocess.run(pcs, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"first 2 components \(100% of mu's variance\): probe R\^2 row", proc.stdout), proc.stdout
    assert "first 8 components (100%" in proc.stdout
    proc = subprocess.run(pcs[:-2] + ["0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "ball_probe: --pcs takes counts of 1 or more, not 0"
    proc = subprocess.run([sys.executable, str(PROBE), str(tmp_path / "nothing"), "pong"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no collected data" in proc.stderr and "Traceback" not in proc.stderr
