"""Every bundled config runs one generation on a tiny override, so none can rot."""
import json

import pytest

TINY = ["--max-gens", "1", "--workers", "2",
        "--set", "collect.rollouts=2", "--set", "collect.max_steps=30", "--set", "vae.epochs=1",
        "--set", "mdnrnn.epochs=1", "--set", "controller.pop_size=4", "--set", "controller.rollouts=1",
        "--set", "controller.max_steps=30", "--set", "eval.episodes=1", "--set", "eval.max_steps=30",
        "--set", "eval.final_episodes=1", "--set", "time_budget=0"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quick", "default", "paper"])
def test_bundled_config_runs_one_generation(name, cli, tmp_path):
    out = tmp_path / name
    proc = cli("wm-train", "--config", name, "--envs", "carracing", *TINY, "--out", out, "--json", check=0)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    entry = results["envs"][0]
    assert entry["generations"] == 1 and entry["final_eval"]["episodes"] == 1
    assert (out / "carracing" / "best.pt").exists()
