"""action_repeat: each action held for k env steps; the score stays the official env's."""
import csv
import json
import os
import signal

import numpy as np
import pytest
import torch

from worldmodels.agent import Agent, evaluate
from worldmodels.checkpoint import load_bundle, save_torch
from worldmodels.engine.rollout import Episode, LaneEngine
from worldmodels.envs import make_env, probe_spec, with_action_repeat

# Random driving with these actions leaves the playfield at env step 335 (= 83 x 4 + 3): the
# episode ends in the middle of a held action.
SEED, N_ACTIONS = 3, 250


def actions():
    rng = np.random.default_rng(0)
    return [rng.uniform([-1, 0, 0], [1, 1, 0.2]).astype(np.float32) for _ in range(N_ACTIONS)]


def by_hand(repeat, max_steps=0):
    """The official env, each action stepped `repeat` times by hand."""
    env = make_env(probe_spec("CarRacing-v3"), renderer="official", max_steps=max_steps)
    obs, _ = env.reset(seed=SEED)
    frames, rewards, steps, end = [obs], [], 0, (False, False)
    for a in actions():
        total = 0.0
        for _ in range(repeat):
            obs, r, term, trunc, _ = env.step(a)
            total += float(r)
            steps += 1
            if term or trunc:
                break
        frames.append(obs)
        rewards.append(total)
        steps_end = (term, trunc)
        if term or trunc:
            end = steps_end
            break
    env.close()
    return frames, rewards, steps, end


def wrapped(renderer, repeat, max_steps=0):
    env = make_env(with_action_repeat(probe_spec("CarRacing-v3"), repeat), renderer=renderer,
                   max_steps=max_steps)
    obs, _ = env.reset(seed=SEED)
    frames, rewards, steps, end = [obs], [], 0, (False, False)
    for a in actions():
        obs, r, term, trunc, info = env.step(a)
        frames.append(obs)
        rewards.append(r)
        steps += info["frames"]
        if term or trunc:
            end = (term, trunc)
            break
    env.close()
    return frames, rewards, steps, end


@pytest.fixture(scope="module")
def official4():
    return by_hand(4)


def test_exact_renderer_with_held_actions_is_the_official_env_stepped_by_hand(official4):
    frames, rewards, steps, end = wrapped("exact", 4)
    want_frames, want_rewards, want_steps, want_end = official4
    assert want_end == (True, False) and want_steps % 4 != 0  # the episode ends mid-hold
    assert steps == want_steps and end == want_end
    assert rewards == want_rewards
    assert len(frames) == len(want_frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, want_frames))  # the last one redrawn


def test_fast_renderer_with_held_actions_keeps_rewards_and_frames_close(official4):
    frames, rewards, steps, end = wrapped("fast", 4)
    want_frames, want_rewards, want_steps, want_end = official4
    assert (steps, end, rewards) == (want_steps, want_end, want_rewards)
    errors = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, want_frames)]
    assert np.mean(errors) <= 3.0 and max(errors) <= 6.0


def test_a_frame_drawn_after_an_end_on_a_held_step_shows_the_official_score():
    """step() draws before it takes 0.1 off the score: redraw() must show the same number."""
    official = make_env(probe_spec("CarRacing-v3"), renderer="official", max_steps=9)
    held = make_env(with_action_repeat(probe_spec("CarRacing-v3"), 4), renderer="exact", max_steps=9)
    action = np.array([0.0, 0.5, 0.0], np.float32)
    official.reset(seed=SEED)
    obs, _ = held.reset(seed=SEED)
    for _ in range(9):
        want, *_ = official.step(action)
    for _ in range(3):  # 4 + 4 + 1: the cap ends the episode on a held step
        obs, _, _, trunc, info = held.step(action)
    assert trunc and info["frames"] == 1
    assert np.array_equal(obs, want)


def test_a_resumed_collection_counts_env_steps_once(tmp_path):
    from worldmodels.config import build_config
    from worldmodels.curriculum import Run

    def collect():
        cfg = build_config(["smoke"], ["envs=carracing", "workers=1", "stages=collect", "collect.rollouts=2",
                                       "collect.max_steps=50", "action_repeat=3"])
        Run(cfg, tmp_path, ["test"], log_fn=lambda m: None).run()
        return json.loads((tmp_path / "carracing" / "manifest.json").read_text())

    assert collect()["env_steps"] == 2 * 50
    data = tmp_path / "carracing" / "data" / "round0"
    with np.load(data / "ep_000000.npz") as ep:
        assert ep["rewards"].shape[0] == 17  # 16 x 3 + 2
    (data / "ep_000001.npz").unlink()
    (tmp_path / "carracing" / "manifest.json").unlink()  # collect counts as not done
    assert collect()["env_steps"] == 2 * 50  # the kept rollout counts 50 env steps, not 17 x 3


def test_the_step_cap_counts_env_steps_not_actions():
    frames, rewards, steps, end = wrapped("fast", 4, max_steps=10)
    assert (steps, end, len(rewards)) == (10, (False, True), 3)  # 4 + 4 + 2
    want = by_hand(4, max_steps=10)
    assert want[2] == 10 and rewards == want[1]


def test_atari_keeps_its_own_frameskip_and_bad_values_are_refused():
    assert with_action_repeat(probe_spec("ALE/Pong-v5"), 4).action_repeat == 1
    assert with_action_repeat(probe_spec("CarRacing-v3"), 3).action_repeat == 3
    from worldmodels.envs import ActionRepeat

    with pytest.raises(ValueError):
        ActionRepeat(make_env("CarRacing-v3"), 0)


def small_agent(spec):
    torch.manual_seed(0)
    agent = Agent.build(spec, z_dim=8, hidden=16, gaussians=2)
    params = np.random.default_rng(0).normal(0, 0.5, size=(2, agent.controller.n_params)).astype(np.float32)
    return agent, params


def test_the_engine_counts_env_steps_and_a_killed_worker_replays_held_actions():
    spec = with_action_repeat(probe_spec("CarRacing-v3"), 3)
    agent, params = small_agent(spec)
    episodes = [Episode(seed, cand) for seed in (21, 22) for cand in range(2)]

    def run(kill_at=None):
        with LaneEngine(spec, 4, workers=2, renderer="fast", max_steps=40) as engine:
            policy = agent.policy(params, 4, "cpu")
            if kill_at is not None:
                original, count = policy.act, {"n": 0}

                def act(obs, lanes):
                    count["n"] += 1
                    if count["n"] == kill_at:
                        os.kill(engine.workers[1].process.pid, signal.SIGKILL)
                    return original(obs, lanes)

                policy.act = act
            results = engine.run(episodes, policy)
            return [(r.seed, r.candidate, r.ret, r.length) for r in results], engine.steps, engine.replaced

    clean, steps, _ = run()
    assert [length for *_, length in clean] == [40] * 4  # 14 actions: 13 x 3 + 1, env steps counted
    assert steps == 160
    killed, _, replaced = run(kill_at=9)
    assert replaced == 1 and killed == clean

    # the same returns from a plain loop over the wrapped env, batch 1
    env = make_env(spec, renderer="fast", max_steps=40)
    one = agent.policy(params, 1, "cpu")
    obs, _ = env.reset(seed=22)
    one.start(0, Episode(22, 1))
    from worldmodels.envs import preprocess

    total, taken = 0.0, 0
    while True:
        action = one.act(preprocess(obs, spec)[None], [0])[0]
        obs, r, term, trunc, info = env.step(action)
        total, taken = total + r, taken + 1
        if term or trunc:
            break
    assert taken == 14 and total == pytest.approx(clean[3][2], abs=1e-9)


def test_best_pt_carries_the_repeat_and_evaluation_holds_actions(tmp_path):
    spec = with_action_repeat(probe_spec("CarRacing-v3"), 5)
    agent, params = small_agent(spec)
    path = tmp_path / "best.pt"
    save_torch(path, agent.bundle(params[0], {}, {"seed": 0}))
    again, p = Agent.from_bundle(load_bundle(path))
    assert again.spec.action_repeat == 5
    result = evaluate(again, p, 2, 2_000_000_000, "cpu", workers=1, max_steps=23)
    assert result["env_steps"] == 2 * 23  # env steps, not the 5 actions of each episode

    old = torch.load(path, weights_only=True)
    del old["env"]["action_repeat"]  # a best.pt from before the setting
    save_torch(path, old)
    assert Agent.from_bundle(load_bundle(path))[0].spec.action_repeat == 1


@pytest.mark.slow
def test_a_carracing_run_with_held_actions(tmp_path, cli):
    out = tmp_path / "run"
    cli("wm-train", "--config", "smoke", "--envs", "carracing", "--set", "action_repeat=4", "--out", out, check=0)
    env = out / "carracing"
    assert torch.load(env / "best.pt", weights_only=True)["env"]["action_repeat"] == 4
    with np.load(sorted((env / "data" / "round0").glob("ep_*.npz"))[0]) as data:
        assert data["rewards"].shape[0] == 13  # collect.max_steps 50 env steps = 13 actions (12 x 4 + 2)
    manifest = json.loads((env / "manifest.json").read_text())
    collected = next(r["env_steps"] for r in manifest["records"] if r["stage"] == "collect")
    assert collected == 4 * 50  # four rollouts of 50 env steps
    rows = list(csv.DictReader((env / "metrics.csv").open()))
    assert int(rows[0]["env_steps"]) == collected + 4 * 1 * 50  # population 4 x 1 rollout x 50 env steps
    # reusing that run's data with other held actions would train C on other dynamics
    proc = cli("wm-train", "--config", "smoke", "--envs", "carracing", "--from", out, "--out", tmp_path / "other")
    assert proc.returncode == 2 and "action_repeat 4" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
