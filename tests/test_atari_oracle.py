"""scripts/atari_oracle.py: CMA-ES on RAM positions trains, counts its steps and scores games."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "atari_oracle.py"


@pytest.mark.parametrize("env, extra", [("pong", ["--max-points", "2"]),
                                        ("breakout", ["--hidden", "4", "--velocity", "--prev-actions", "2"]),
                                        ("breakout", ["--pad", "3", "--pad-rho", "0.9", "--diagonal"])])
def test_oracle_trains_within_its_budget_and_scores(tmp_path, env, extra):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--env", env, "--max-env-steps", "1500", "--pop", "4",
                           "--rollouts", "2", "--max-steps", "200", "--workers", "1", "--eval-every", "1",
                           "--final-episodes", "2", "--final-max-steps", "150", "--json", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["env_steps"] >= 1500 and result["generations"] == len(result["curve"]) >= 1
    assert result["final_episodes"] == 2 and result["final_eval_steps"] <= 300
    history = json.loads(out.read_text())["history"]
    assert history[-1]["env_steps"] == result["env_steps"]
    if "--pad" in extra:  # linear on 3 positions + 3 noise inputs, 4 actions
        assert result["n_params"] == (3 + 3 + 1) * 4 and result["pad_rho"] == 0.9
    if env == "pong":  # 2 points end a training episode: at most 2 nonzero rewards, so |fitness| <= 2
        assert all(abs(h["best_fitness"]) <= 2 for h in history)


def test_oracle_refuses_a_noise_correlation_outside_0_1():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--pad", "3", "--pad-rho", "1.5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--pad-rho" in proc.stderr and "Traceback" not in proc.stderr


def test_oracle_reads_the_positions_from_a_vs_probe(tmp_path):
    from worldmodels.checkpoint import save_torch
    from worldmodels.models.vae import ConvVAE

    save_torch(tmp_path / "run" / "breakout" / "vae.pt", {"z_dim": 8, "state_dict": ConvVAE(8).state_dict()})
    proc = subprocess.run([sys.executable, str(SCRIPT), "--env", "breakout", "--probe-v", str(tmp_path / "run"),
                           "--probe-frames", "300", "--max-env-steps", "400", "--pop", "4", "--rollouts", "1",
                           "--max-steps", "100", "--workers", "1", "--eval-every", "0", "--final-episodes", "1",
                           "--final-max-steps", "50", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["probe"]["frames"] == 300 and set(result["probe"]["r2"]) == {"ball_x", "ball_y", "player_x"}
    assert result["n_params"] == (3 + 1) * 4 and result["env_steps"] >= 400  # linear on the 3 read positions
    missing = subprocess.run([sys.executable, str(SCRIPT), "--env", "pong", "--probe-v", str(tmp_path / "run")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no pong vae.pt" in missing.stderr and "Traceback" not in missing.stderr
