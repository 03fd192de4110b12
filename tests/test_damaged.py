"""Damaged and hostile files: a truncated or corrupt rollout, a resume file (*_state.pt) with a
flipped byte, a folder that turns read-only while the previous state is kept, and best.pt files
built to break wm-play and the final evaluation. Each is one error line (exit 2 from the CLI),
never a traceback, and a resume file falls back to the previous one where that one is good."""
from pathlib import Path

import numpy as np
import pytest

from worldmodels.checkpoint import load_arrays, save_npz
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.errors import RunFolderError


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# -- (a) rollouts ----------------------------------------------------------------------------------
def rollout(tmp_path: Path) -> Path:
    path = tmp_path / "ep_000000.npz"
    rng = np.random.default_rng(0)
    save_npz(path, obs=rng.integers(0, 255, (11, 64, 64, 3), dtype=np.uint8), actions=np.arange(10),
             rewards=np.zeros(10, np.float32), terminated=np.zeros(10, bool))
    return path


@pytest.mark.parametrize("damage", ["truncated", "flipped", "foreign", "incomplete"])
def test_a_damaged_rollout_is_one_line_naming_it(tmp_path, damage):
    path = rollout(tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "flipped":  # inside the compressed frames: the zip's CRC or zlib notices
        path.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1:])
    elif damage == "foreign":
        path.write_text("not an npz\n")
    else:
        save_npz(path, obs=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(RunFolderError) as info:
        load_arrays(path, ("obs", "actions", "rewards", "terminated"))
    message = one_line(str(info.value))
    assert str(path) in message and "damaged rollout" in message


def test_a_good_rollout_reads_as_before(tmp_path):
    arrays = load_arrays(rollout(tmp_path), ("obs", "rewards"))
    assert arrays["obs"].shape == (11, 64, 64, 3) and arrays["rewards"].shape == (10,)


def test_truncated_rollout_stops_wm_train_with_one_line(tmp_path, cli):
    out = tmp_path / "run"
    settings = ["envs=pong", "workers=1", "collect.rollouts=2", "collect.max_steps=30"]
    Run(build_config(["smoke"], settings + ["stages=collect"]), out, ["test"], log_fn=lambda m: None).run()
    victim = out / "pong" / "data" / "round0" / "ep_000001.npz"
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
    args = ["wm-train", "--config", "smoke", "--out", out, "--stages", "vae"]
    for s in settings:
        args += ["--set", s]
    proc = cli(*args, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(victim) in errors[0] and "damaged rollout" in errors[0], proc.stderr[-3000:]
