"""scripts/keypoint_probe.py runs on a run folder and refuses bad input."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from worldmodels.checkpoint import load_torch, save_npz
from worldmodels.models.vae import KeypointVAE, vae_from_bundle

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "keypoint_probe.py"


def test_runs_on_a_run_folder_and_refuses_bad_input(tmp_path):
    data = tmp_path / "run" / "breakout" / "data" / "round0"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for r in range(3):
        obs = np.zeros((40, 64, 64, 3), np.uint8)
        for t in range(40):
            y, x = int(rng.integers(26, 56)), int(rng.integers(0, 62))
            obs[t, y:y + 2, x:x + 2] = 200
        save_npz(data / f"ep_{r:06d}.npz", obs=obs, actions=np.zeros(39, np.int64))
    cmd = [sys.executable, str(SCRIPT), str(tmp_path / "run"), "breakout", "--keypoints", "4", "--batches", "3",
           "--batch-size", "8", "--probe-every", "2", "--temperature", "3", "--save", str(tmp_path / "v.pt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = re.findall(r"batch (\d+) .* (\d+) ball frames, linear probe from z R\^2 row", proc.stdout)
    assert [int(b) for b, _ in lines] == [2, 3] and lines[0][1] == "42", proc.stdout
    vae = vae_from_bundle(load_torch(tmp_path / "v.pt"))  # the saved V is a bundle section
    assert isinstance(vae, KeypointVAE) and vae.z_dim == 8 and 1.5 < vae.log_temp.exp().item() < 6
    proc = subprocess.run(cmd[:4] + ["--temperature", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--temperature and --sigma positive numbers" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cmd[:4] + ["--keypoints", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "take 1 or more" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none"), "pong"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no collected data" in proc.stderr and "Traceback" not in proc.stderr
