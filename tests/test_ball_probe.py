"""scripts/ball_probe.py: finds the ball where it is, and probes a run's V end to end."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodels.checkpoint import save_npz, save_torch
from worldmodels.models.mdnrnn import MDNRNN
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


def test_mlp_probe_reads_a_position_the_linear_probe_cannot():
    """A position coded on an arc (cos, sin of an angle): not linear in the inputs, an MLP reads it."""
    rng = np.random.default_rng(0)
    where = rng.uniform(0, 60, (1500, 2))
    angle = where / 60 * 1.8 * np.pi  # most of the circle, one point for each position
    x = np.c_[np.cos(angle), np.sin(angle), rng.normal(0, 0.01, (1500, 4))]
    module = load_probe()
    linear = re.search(r"R\^2 row (-?[\d.]+) col (-?[\d.]+)", module.probe(x, where))
    mlp = re.search(r"R\^2 row (-?[\d.]+) col (-?[\d.]+)", module.mlp_probe(x, where, steps=1500))
    assert max(float(linear.group(1)), float(linear.group(2))) < 0.8, linear.group(0)
    assert min(float(mlp.group(1)), float(mlp.group(2))) > 0.95, mlp.group(0)


def test_probe_of_m_hidden_state_on_a_run_folder(tmp_path):
    env = tmp_path / "run" / "breakout"
    data = env / "data" / "round0"
    data.mkdir(parents=True)
    fake_rollouts(data, count=2)
    torch.manual_seed(0)
    save_torch(env / "vae.pt", {"z_dim": 8, "state_dict": ConvVAE(8).state_dict()})
    cmd = [sys.executable, str(PROBE), str(tmp_path / "run"), "breakout", "--h", "--mlp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--h needs mdnrnn.pt" in proc.stderr and "Traceback" not in proc.stderr
    save_torch(env / "mdnrnn.pt", {"z_dim": 8, "action_dim": 4, "hidden": 16, "gaussians": 2,
                                   "state_dict": MDNRNN(8, 4, 16, 2).state_dict()})
    encoded = env / "encoded" / "round0"
    encoded.mkdir(parents=True)
    for r in range(2):
        save_npz(encoded / f"round0_ep_{r:06d}.npz", mu=rng_mu(60, r), actions=np.zeros((59, 4), np.float32))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"MLP probe \(two tanh layers of 64\) on mu: R\^2 row -?[\d.]+", proc.stdout), proc.stdout
    assert re.search(r"40 of those frames with M's h_t: probe from h R\^2 row -?[\d.]+ .* from \[mu, h\] R\^2",
                     proc.stdout), proc.stdout


def rng_mu(length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(length, 8)).astype(np.float32)
