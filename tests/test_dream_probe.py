"""scripts/dream_probe.py: best.pt against random controllers inside a run's M."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodels.agent import Agent
from worldmodels.checkpoint import save_npz, save_torch
from worldmodels.envs import probe_spec

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "scripts" / "dream_probe.py"


def fake_run(run: Path, reward_bias: float) -> None:
    """A tiny Pong agent whose M predicts reward_bias on every step, and 3 encoded rollouts."""
    env_dir = run / "pong"
    (env_dir / "encoded" / "round0").mkdir(parents=True)
    torch.manual_seed(0)
    agent = Agent.build(probe_spec("ALE/Pong-v5"), z_dim=8, hidden=16, gaussians=2)
    with torch.no_grad():
        agent.mdnrnn.head.weight[-2] = 0.0
        agent.mdnrnn.head.bias[-2] = reward_bias
        agent.mdnrnn.head.bias[-1] = 10.0  # a done head that would end every dream at once
    params = np.random.default_rng(0).normal(0, 1, agent.controller.n_params).astype(np.float32)
    save_torch(env_dir / "best.pt", agent.bundle(params, {}, {"seed": 0}))
    rng = np.random.default_rng(1)
    for i in range(3):
        save_npz(env_dir / "encoded" / "round0" / f"ep_{i:06d}.npz", mu=rng.normal(size=(11, 8)).astype(np.float32),
                 logvar=np.zeros((11, 8), np.float32), actions=np.zeros((10, 6), np.float32),
                 rewards=np.zeros(10, np.float32), terminated=np.zeros(10, bool))


def probe(*args):
    return subprocess.run([sys.executable, str(PROBE), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_probe_dreams_every_controller_to_the_end(tmp_path):
    fake_run(tmp_path / "run", reward_bias=-0.5)
    proc = probe(tmp_path / "run", "pong", "--random", 3, "--rollouts", 2, "--steps", 7, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["controllers"] == 4 and result["dream_steps"] == 4 * 2 * 7  # done head ignored
    # M predicts -0.5 a step whatever C does: every controller scores 7 * -0.5
    assert np.allclose([result["best_mean"], result["random_min"], result["random_max"]], -3.5, atol=1e-4)
    assert "best.pt ranks 1 of 4" in proc.stdout


def test_probe_refuses_a_folder_without_a_run(tmp_path):
    proc = probe(tmp_path / "nothing", "pong")
    assert proc.returncode == 2 and "best.pt" in proc.stderr and "Traceback" not in proc.stderr
    fake_run(tmp_path / "run", reward_bias=0.0)
    proc = probe(tmp_path / "run", "pong", "--steps", 0)
    assert proc.returncode == 2 and "--steps" in proc.stderr
