"""scripts/keypoint_probe.py: the spatial softmax gives image coordinates; the script runs on a run folder."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from worldmodels.checkpoint import save_npz

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "keypoint_probe.py"


def load_script():
    spec = importlib.util.spec_from_file_location("keypoint_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spatial_softmax_gives_the_coordinates_of_a_bright_spot():
    model = load_script().KeypointAE(keypoints=3)
    model.encoder = nn.AvgPool2d(2)  # each colour channel is one keypoint's map, at 32x32
    with torch.no_grad():
        model.log_temp.fill_(np.log(200.0))
    x = torch.zeros(1, 3, 64, 64)
    x[0, 0, 40:42, 10:12] = 1.0  # map 0's peak at row 20, column 5 of the 32x32 grid
    z = model.encode(x)[0]
    step = 2 / 31
    assert z.shape == (6,)
    assert abs(z[0].item() - (-1 + 5 * step)) < 0.01 and abs(z[3].item() - (-1 + 20 * step)) < 0.01
    assert abs(z[1].item()) < 0.01 and abs(z[4].item()) < 0.01  # a flat map: the centre
    assert model.decode(z[None]).shape == (1, 3, 64, 64)


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
           "--batch-size", "8", "--probe-every", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = re.findall(r"batch (\d+) .* (\d+) ball frames, linear probe from z R\^2 row", proc.stdout)
    assert [int(b) for b, _ in lines] == [2, 3] and lines[0][1] == "42", proc.stdout
    proc = subprocess.run(cmd[:4] + ["--keypoints", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "take 1 or more" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none"), "pong"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no collected data" in proc.stderr and "Traceback" not in proc.stderr
