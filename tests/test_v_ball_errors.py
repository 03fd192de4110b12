"""scripts/v_ball_errors.py measures a saved V on the official Breakout and Pong, and refuses bad
input."""
import re
import subprocess
import sys
from pathlib import Path

import torch

from worldmodels.models.vae import KeypointVAE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "v_ball_errors.py"


def measure_an_untrained_v(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Save an untrained 4-keypoint V to tmp_path/v.pt and run the script on it over 80 frames."""
    torch.manual_seed(0)
    v = KeypointVAE(8)
    torch.save({"z_dim": 8, "kind": "keypoints", "state_dict": v.state_dict()}, tmp_path / "v.pt")
    return subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "v.pt"), "--frames", "80", *args],
                          capture_output=True, text=True, timeout=300)


def test_measures_a_saved_v_and_refuses_bad_input(tmp_path):
    proc = measure_an_untrained_v(tmp_path, "--policy", "random")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^80 frames of random play", proc.stdout, re.M), proc.stdout
    probe = re.search(r"linear probe from z .*: ball x ([\d.]+) / ([\d.]+) ball y [\d.]+ / [\d.]+ paddle ([\d.]+)",
                      proc.stdout)
    assert probe and float(probe[1]) <= float(probe[2]), proc.stdout  # a median is at most the p90
    assert re.search(r"best single keypoint \(\d\): ball x [\d.]+ / [\d.]+ ball y", proc.stdout), proc.stdout
    for bad, words in ((["--frames", "10"], "50 or more"), ([], "neither a saved V")):
        target = str(tmp_path / ("v.pt" if bad else "nothing"))
        proc = subprocess.run([sys.executable, str(SCRIPT), target, *bad], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_measures_a_v_on_pong(tmp_path):
    proc = measure_an_untrained_v(tmp_path, "--env", "pong")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^80 frames of follow play", proc.stdout, re.M), proc.stdout
    assert re.search(r"linear probe from z .*: ball x [\d.]+ / [\d.]+ ball y [\d.]+ / [\d.]+ paddle [\d.]+ / [\d.]+ "
                     r"enemy [\d.]+ / [\d.]+$", proc.stdout, re.M), proc.stdout
    assert re.search(r"best single keypoint for the enemy \(\d\): enemy [\d.]+ / [\d.]+$", proc.stdout, re.M), proc.stdout
