import csv

import numpy as np
import torch

from worldmodels.agent import Agent
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.engine.dream import dream_returns
from worldmodels.envs import probe_spec


def agent_and_params(env_id="CarRacing-v3", pop=4):
    torch.manual_seed(0)
    agent = Agent.build(probe_spec(env_id), z_dim=8, hidden=16, gaussians=3)
    params = np.random.default_rng(1).normal(0, 1.0, size=(pop, agent.controller.n_params))
    return agent, params


def test_dream_is_batched_seeded_and_candidates_differ():
    agent, params = agent_and_params()
    pool = torch.randn(5, 8)
    a, steps = dream_returns(agent.mdnrnn, agent.controller, params, pool, rollouts=3, max_steps=20, seed=7,
                             done_threshold=2.0)
    b, _ = dream_returns(agent.mdnrnn, agent.controller, params, pool, rollouts=3, max_steps=20, seed=7,
                         done_threshold=2.0)
    assert a.shape == (4, 3) and steps == 4 * 3 * 20
    assert torch.equal(a, b)
    assert len(set(np.round(a.mean(1).numpy(), 6))) == 4


def test_dream_candidate_rows_match_one_candidate_alone():
    """Batching the population does not change a candidate's dream (same z draws, same steps)."""
    agent, params = agent_and_params(pop=3)
    pool = torch.randn(1, 8)  # one start z, so the draw does not depend on the batch
    batched, _ = dream_returns(agent.mdnrnn, agent.controller, params, pool, 1, 1, tau=1e-6, seed=0,
                               done_threshold=2.0)
    for p in range(3):
        alone, _ = dream_returns(agent.mdnrnn, agent.controller, params[p:p + 1], pool, 1, 1, tau=1e-6, seed=0,
                                 done_threshold=2.0)
        assert torch.allclose(alone[0], batched[p], atol=1e-5)


def test_done_head_ends_dream_episodes():
    agent, params = agent_and_params(env_id="ALE/Pong-v5")
    with torch.no_grad():
        agent.mdnrnn.head.bias[-1] = 50.0  # M is sure every step ends the episode
    returns, steps = dream_returns(agent.mdnrnn, agent.controller, params, torch.randn(3, 8), 2, 100)
    assert steps == 4 * 2  # every episode stopped after one step


def test_dream_generations_are_wired_into_the_controller_stage(tmp_path):
    cfg = build_config(["smoke"], ["envs=carracing", "workers=1", "max_gens=3", "dream.gens=2",
                                   "dream.max_steps=20", "dream.rollouts=2"])
    Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None).run()
    rows = list(csv.DictReader((tmp_path / "run" / "carracing" / "metrics.csv").open()))
    assert [r["mode"] for r in rows] == ["dream", "dream", "real"]
    collect_steps = int(rows[0]["env_steps"])
    assert int(rows[1]["env_steps"]) == collect_steps  # dream generations touch no env
    assert int(rows[2]["env_steps"]) == collect_steps + 4 * 1 * 50


def test_rounds_recollect_with_the_agent_and_retrain_v_and_m(tmp_path):
    import json

    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=4", "rounds=2"])
    Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None).run()
    env = tmp_path / "run" / "pong"
    assert len(list((env / "data" / "round1").glob("ep_*.npz"))) == 4
    assert len(list((env / "encoded" / "round1").glob("*.npz"))) == 8  # all data, encoded by round 1's V
    records = json.loads((env / "manifest.json").read_text())["records"]
    assert {(r["round"], r["stage"]) for r in records} >= {(1, "collect"), (1, "vae"), (1, "mdnrnn")}
    rows = list(csv.DictReader((env / "metrics.csv").open()))
    assert [int(r["gen"]) for r in rows] == [0, 1, 2, 3]  # max_gens split over the rounds
    assert len(list(csv.DictReader((env / "vae_metrics.csv").open()))) == 2  # one epoch per round


def test_dream_ignores_a_done_head_that_never_saw_an_end(tmp_path):
    """Smoke Pong rollouts (50 steps) never end a game, so M's done head learned nothing: here
    it says 0.73 everywhere. Dream episodes run to dream.max_steps instead of ending at step 1."""
    from worldmodels.checkpoint import load_torch, save_torch

    sets = ["envs=pong", "workers=1", "max_gens=2", "dream.gens=2", "dream.max_steps=20", "dream.rollouts=2"]
    cfg = build_config(["smoke"], sets + ["stages=collect,vae,encode,mdnrnn"])
    Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None).run()
    m_path = tmp_path / "run" / "pong" / "mdnrnn.pt"
    m = load_torch(m_path)
    m["state_dict"]["head.weight"][-1] = 0.0
    m["state_dict"]["head.bias"][-1] = 1.0  # done probability sigmoid(1) = 0.73 on every step
    save_torch(m_path, m)
    lines = []
    Run(build_config(["smoke"], sets + ["stages=controller"]), tmp_path / "run", ["test"], log_fn=lines.append).run()
    assert any("M's done head never saw an end" in line for line in lines)
    rows = list(csv.DictReader((tmp_path / "run" / "pong" / "metrics.csv").open()))
    assert [r["mode"] for r in rows] == ["dream", "dream"]
    assert [int(r["dream_steps"]) for r in rows] == [4 * 2 * 20] * 2


def test_dream_done_threshold():
    from worldmodels.engine.dream import done_threshold_for

    assert done_threshold_for(True) == 0.5 and done_threshold_for(None) == 0.5
    assert done_threshold_for(False) > 1.0  # a probability never reaches it


def test_m_records_whether_its_data_held_an_end(tmp_path):
    """mdnrnn.pt and best.pt say whether M's data held an episode end (smoke Pong: 50-step
    rollouts, no game ends), so wm-play --dream knows whether to trust the done head."""
    from worldmodels.checkpoint import load_torch

    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=1"])
    Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None).run()
    env = tmp_path / "run" / "pong"
    assert load_torch(env / "mdnrnn.pt")["saw_ends"] is False
    assert load_torch(env / "best.pt")["mdnrnn"]["saw_ends"] is False
