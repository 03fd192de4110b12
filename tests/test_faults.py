"""Faults a long run must survive: signals, corrupt checkpoints, NaN fitness and losses."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.errors import UserError
from worldmodels.stages.controller import finite_fitness


def _rows(path):
    return list(csv.DictReader(path.open())) if path.exists() else []


def _start(out, *extra):
    args = ["--config", "smoke", "--envs", "pong", "--max-gens", "40", "--workers", "2", *extra]
    return subprocess.Popen([sys.executable, "-m", "worldmodels.cli", "wm-train", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), args


def _wait_for_gens(proc, metrics, n, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(_rows(metrics)) >= n:
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError("no progress")


@pytest.mark.slow
def test_sigterm_mid_run_saves_exits_0_and_resumes(tmp_path, cli):
    out = tmp_path / "run"
    proc, args = _start(out)
    metrics = out / "pong" / "metrics.csv"
    _wait_for_gens(proc, metrics, 2)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and time.time() - sent < 60
    assert "rerun the same command to resume" in err
    done = len(_rows(metrics))
    resumed = cli("wm-train", *args, "--max-gens", str(done + 2), "--out", out, check=0)
    assert f"resuming pong at generation {done}" in resumed.stderr
    assert [int(r["gen"]) for r in _rows(metrics)] == list(range(done + 2))


@pytest.mark.slow
def test_second_signal_exits_at_once(tmp_path):
    out = tmp_path / "run"
    proc, _ = _start(out)
    _wait_for_gens(proc, out / "pong" / "metrics.csv", 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    from worldmodels.checkpoint import load_state

    assert load_state(out / "pong" / "controller" / "state.pkl") is not None  # still readable


@pytest.mark.slow
def test_corrupt_newest_controller_state_falls_back(tmp_path, cli):
    out = tmp_path / "run"
    args = ["--config", "smoke", "--envs", "pong", "--max-gens", "3", "--workers", "1"]
    cli("wm-train", *args, "--out", out, check=0)
    state = out / "pong" / "controller" / "state.pkl"
    state.write_bytes(state.read_bytes()[:100])  # truncated newest checkpoint (gen 2)
    proc = cli("wm-train", *args, "--max-gens", "4", "--out", out, check=0)
    assert "corrupt" in proc.stderr and "falling back" in proc.stderr
    assert "resuming pong at generation 2" in proc.stderr  # from the previous good one (gen 1)
    assert [int(r["gen"]) for r in _rows(out / "pong" / "metrics.csv")] == [0, 1, 2, 3]


def test_nan_fitness_never_reaches_cma():
    fit = finite_fitness(np.array([1.0, np.nan, -2.0, np.inf]))
    assert np.isfinite(fit).all() and fit[1] == fit[3] == -3.0
    assert np.isfinite(finite_fitness(np.array([np.nan, np.nan]))).all()


def test_nan_vae_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    import torch

    import worldmodels.stages.vae as vae_stage

    real = vae_stage.vae_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        loss, rec, kl = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 20 else loss), rec, kl

    monkeypatch.setattr(vae_stage, "vae_loss", flaky)
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "vae.epochs=3", "vae.batch_size=16"])
    run = Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None)
    with pytest.raises(UserError, match="VAE loss became nan"):
        run.run()
    state = torch.load(tmp_path / "run" / "pong" / "vae_state.pt", weights_only=True)
    assert state["epoch"] == 0  # the last good epoch is kept
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_disk_full_mid_training_exits_2_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    import worldmodels.checkpoint as checkpoint
    from worldmodels.checkpoint import load_state
    from worldmodels.cli import train_main

    out = tmp_path / "run"
    real_fsync = os.fsync
    state = out / "pong" / "controller" / "state.pkl"

    def fsync(fd):
        if state.exists() and load_state(state)["gen"] >= 1:  # the disk fills after generation 1
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    code = train_main(["--config", "smoke", "--envs", "pong", "--max-gens", "5", "--workers", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "intact" in lines[0]
    monkeypatch.setattr(checkpoint.os, "fsync", real_fsync)
    assert load_state(state)["gen"] == 1  # the last checkpoint written before the disk filled
    assert [int(r["gen"]) for r in _rows(out / "pong" / "metrics.csv")] == [0]  # gen 1's row never made it
    code = train_main(["--config", "smoke", "--envs", "pong", "--max-gens", "3", "--workers", "1", "--out", str(out)])
    assert code == 0 and "resuming pong at generation 2" in capsys.readouterr().err
    assert [int(r["gen"]) for r in _rows(out / "pong" / "metrics.csv")] == [0, 1, 2]  # restored from the checkpoint


def test_env_step_budget_bounds_training(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=20", "max_env_steps=500"])
    results = Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None).run()
    entry = results["envs"][0]
    # collect uses 200 steps, each generation 200: gens 0 and 1 run, then the budget is spent
    assert entry["generations"] == 2 and entry["env_steps"] == 600
    assert entry["stop_reason"] == "env step budget of 500 used" and entry["status"] == "failed"
