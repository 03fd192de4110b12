import os
import signal

import numpy as np
import pytest
import torch

from worldmodels.agent import Agent
from worldmodels.engine.policies import ExplorePolicy
from worldmodels.engine.rollout import Episode, LaneEngine
from worldmodels.envs import make_env, preprocess, probe_spec

CAR = probe_spec("CarRacing-v3")


def small_agent(spec, seed=0):
    torch.manual_seed(seed)
    agent = Agent.build(spec, z_dim=8, hidden=16, gaussians=2)
    params = np.random.default_rng(seed).normal(0, 0.5, size=(3, agent.controller.n_params)).astype(np.float32)
    return agent, params


class Logged:
    """Records each lane's actions per episode."""

    def __init__(self, inner, lanes):
        self.inner, self.lane_ep, self.actions = inner, [None] * lanes, {}

    def start(self, lane, episode):
        self.inner.start(lane, episode)
        self.lane_ep[lane] = (episode.seed, episode.candidate)
        self.actions[self.lane_ep[lane]] = []

    def act(self, obs, lanes):
        acts = self.inner.act(obs, lanes)
        for lane, action in zip(lanes, acts):
            self.actions[self.lane_ep[lane]].append(np.array(action, dtype=np.float64))
        return acts

    def observe(self, *args):
        self.inner.observe(*args)

    def end(self, lane):
        self.inner.end(lane)


EPISODES = [Episode(seed, cand) for seed in (11, 12) for cand in range(3)]


def run_engine(workers, lanes=4, kill_at=None, renderer="fast", sig=signal.SIGKILL, timeout=300.0):
    agent, params = small_agent(CAR)
    with LaneEngine(CAR, lanes, workers=workers, renderer=renderer, max_steps=30, timeout=timeout) as engine:
        policy = Logged(agent.policy(params, lanes, "cpu"), lanes)
        if kill_at is not None:
            original = policy.act
            count = {"n": 0}

            def act(obs, lanes):
                count["n"] += 1
                if count["n"] == kill_at:
                    os.kill(engine.workers[1].process.pid, sig)
                return original(obs, lanes)

            policy.act = act
        results = engine.run(EPISODES, policy)
        return [(r.seed, r.candidate, r.ret, r.length) for r in results], policy.actions, engine.replaced


def test_results_do_not_depend_on_the_number_of_workers():
    one, actions_one, _ = run_engine(workers=1)
    two, actions_two, _ = run_engine(workers=2)
    assert one == two
    assert len(one) == len(EPISODES) and all(length == 30 for *_, length in one)
    for key in actions_one:
        assert np.array_equal(np.stack(actions_one[key]), np.stack(actions_two[key]))
    assert len({ret for _, _, ret, _ in one}) > 1  # candidates really act differently


def test_a_killed_worker_is_replaced_and_the_generation_completes():
    clean, _, _ = run_engine(workers=2)
    killed, _, replaced = run_engine(workers=2, kill_at=12)
    assert replaced == 1
    assert killed == clean


def test_a_hung_worker_times_out_and_is_replaced():
    clean, _, _ = run_engine(workers=2)
    hung, _, replaced = run_engine(workers=2, kill_at=8, sig=signal.SIGSTOP, timeout=5.0)
    assert replaced == 1
    assert hung == clean


def test_spinning_pipes_give_the_same_episodes_and_survive_a_killed_worker(monkeypatch):
    """WM_SPIN_US (experimental): workers and master poll their pipes before they block."""
    clean, actions_clean, _ = run_engine(workers=1)
    monkeypatch.setenv("WM_SPIN_US", "300")
    with LaneEngine(CAR, 2, workers=2, renderer="fast", max_steps=5) as engine:
        assert [w.spin for w in engine.workers] == [0.0003, 0.0003]
    spun, actions_spun, _ = run_engine(workers=2)
    assert spun == clean
    for key in actions_clean:
        assert np.array_equal(np.stack(actions_clean[key]), np.stack(actions_spun[key]))
    killed, _, replaced = run_engine(workers=2, kill_at=12)
    assert replaced == 1 and killed == clean


def test_batched_actions_match_a_plain_single_env_rollout():
    """Lane 2 of a 4-lane batch (other lanes playing other episodes) vs batch 1, by hand."""
    spec = probe_spec("ALE/Pong-v5")
    agent, params = small_agent(spec, seed=3)
    lanes = 4
    episodes = [Episode(100 + i, i % 3) for i in range(lanes)]
    with LaneEngine(spec, lanes, workers=1, max_steps=100) as engine:
        logged = Logged(agent.policy(params, lanes, "cpu"), lanes)
        engine.run(episodes, logged)
    batched = np.stack(logged.actions[(102, 2)])

    env = make_env(spec, max_steps=100)
    obs, _ = env.reset(seed=102)
    h, c = agent.mdnrnn.initial_state(1)
    w, b = agent.controller.unflatten(params[2:3])
    plain = []
    with torch.no_grad():
        for _ in range(100):
            x = torch.as_tensor(preprocess(obs, spec)[None]).permute(0, 3, 1, 2).float() / 255
            z, _ = agent.vae.encode(x)
            logits = torch.cat([z, h], 1) @ w[0].T + b[0]
            action = int(logits.argmax())
            plain.append(action)
            a = torch.nn.functional.one_hot(torch.tensor([action]), spec.action_dim).float()
            h, c = agent.mdnrnn.step(z, a, (h, c))
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                break
    assert len(plain) == len(batched) == 100
    assert np.array_equal(np.array(plain), batched.astype(int))


def test_explore_policy_moves_the_car_and_is_seeded():
    lanes = 2
    with LaneEngine(CAR, lanes, workers=1, renderer="fast", max_steps=80) as engine:
        a = Logged(ExplorePolicy(CAR, lanes), lanes)
        engine.run([Episode(5), Episode(6)], a)
        b = Logged(ExplorePolicy(CAR, lanes), lanes)
        engine.run([Episode(5), Episode(6)], b)
    acts = np.stack(a.actions[(5, 0)])
    assert np.array_equal(acts, np.stack(b.actions[(5, 0)]))
    assert acts[:, 1].mean() > 0.05  # it drives
    assert acts[:, 0].std() > 0.05  # and it steers


def test_explore_policy_keeps_carracing_on_the_road():
    """Random actions leave the road at once (few tiles, return near 0); the explorer mostly
    follows the road, so V and M see the track (measured: 73-149 vs -15..12 over 300 steps)."""
    lanes, seeds = 4, [Episode(s) for s in (5, 6, 7, 8)]
    with LaneEngine(CAR, lanes, workers=1, renderer="fast", max_steps=300) as engine:
        explore = [r.ret for r in engine.run(seeds, ExplorePolicy(CAR, lanes))]
        random = [r.ret for r in engine.run(seeds, ExplorePolicy(CAR, lanes, "random"))]
    assert min(explore) > 40 and max(random) < 40


def test_explore_episode_depends_on_its_seed_only():
    """Nothing carries over from the lane's previous episode (a resumed collection reruns
    missing rollouts on other lanes and must record the same data)."""
    with LaneEngine(CAR, 1, workers=1, renderer="fast", max_steps=120) as engine:
        alone = Logged(ExplorePolicy(CAR, 1), 1)
        engine.run([Episode(6)], alone)
        after = Logged(ExplorePolicy(CAR, 1), 1)
        engine.run([Episode(5), Episode(6)], after)
    assert np.array_equal(np.stack(alone.actions[(6, 0)]), np.stack(after.actions[(6, 0)]))


def test_lane_placement_keeps_every_worker_busy_and_mixes_the_groups():
    from worldmodels.engine.rollout import lane_placement

    for groups in (1, 2, 3, 4):
        for workers in (1, 2, 3, 8, 16):
            for lanes in range(1, 5 * workers + 3):
                place = lane_placement(lanes, workers, groups)
                used = min(lanes, workers)
                counts = [place.count(w) for w in range(workers)]
                assert min(counts[:used]) >= 1 and max(counts) - min(counts) <= 1, (groups, lanes, workers, counts)
                g = min(groups, lanes)
                for w in range(workers):  # g or more lanes: lanes of every group (lane i in group i % g)
                    mine = [i for i in range(lanes) if place[i] == w]
                    if len(mine) >= g:
                        assert {i % g for i in mine} == set(range(g)), (groups, lanes, workers, w, mine)
    # the 16-lane evaluation on 16 cores: one lane per worker, every worker busy
    assert sorted(lane_placement(16, 16)) == list(range(16))
    assert sorted(lane_placement(128, 16, 4)) == sorted(list(range(16)) * 8)


def test_more_groups_give_the_same_episodes():
    """Groups change the batches, not what an episode does: the explorer's returns agree."""
    lanes = 6
    out = []
    for groups in (1, 2, 3):
        with LaneEngine(CAR, lanes, workers=2, renderer="fast", max_steps=25, groups=groups) as engine:
            out.append([(r.index, r.ret, r.length) for r in
                        engine.run([Episode(s) for s in range(9)], ExplorePolicy(CAR, lanes))])
    assert out[0] == out[1] == out[2]
    assert len(out[0]) == 9
    with pytest.raises(ValueError):
        LaneEngine(CAR, 4, workers=1, groups=0)


def test_packed_orders_reach_the_envs_as_sent():
    from worldmodels.engine.rollout import pack_orders
    from worldmodels.engine.workers import LaneEnvs

    seen = {}
    envs = LaneEnvs.__new__(LaneEnvs)  # only the unpacking: no envs needed
    envs.work = lambda orders: seen.update(orders) or {}
    box = {3: ("step", np.array([0.25, -1.0, 0.5], np.float32)), 5: ("reset", 42),
           7: ("step", np.array([1e-7, 0.3, 0.0], np.float32))}
    kind, payload = pack_orders(box)
    assert kind == "steps"
    envs.handle((kind, payload))
    assert seen.keys() == box.keys() and seen[5] == ("reset", 42)
    for lane in (3, 7):
        assert seen[lane][0] == "step" and seen[lane][1].dtype == np.float32
        assert np.array_equal(seen[lane][1], box[lane][1])
    seen.clear()
    envs.handle(pack_orders({0: ("step", 2), 1: ("step", np.int64(5))}))  # discrete: plain ints
    assert seen == {0: ("step", 2), 1: ("step", 5)} and all(type(o[1]) is int for o in seen.values())
    assert pack_orders({0: ("reset", 1)}) == ("work", {0: ("reset", 1)})


class Noop:
    """Plays action 0 everywhere and records each lane's rewards."""

    def __init__(self, lanes):
        self.rewards = [[] for _ in range(lanes)]
        self.done = []

    def start(self, lane, episode):
        self.rewards[lane] = []

    def act(self, obs, lanes):
        return [0 for _ in lanes]

    def observe(self, lane, action, obs, reward, terminated, truncated):
        self.rewards[lane].append(reward)

    def end(self, lane):
        self.done.append(list(self.rewards[lane]))


def test_max_rewards_ends_an_episode_at_its_kth_nonzero_reward():
    spec = probe_spec("ALE/Pong-v5")
    episodes = [Episode(seed) for seed in (5, 6, 7)]
    with LaneEngine(spec, 2, workers=1, max_steps=2000, max_rewards=2) as engine:
        policy = Noop(2)
        capped = engine.run(episodes, policy)
    assert len(capped) == 3
    for rewards, result in zip(sorted(policy.done, key=len), sorted(capped, key=lambda r: r.length)):
        assert sum(r != 0 for r in rewards) == 2 and rewards[-1] != 0  # ends on the 2nd point
        assert len(rewards) == result.length and result.ret == sum(rewards)
    with LaneEngine(spec, 2, workers=1, max_steps=2000) as engine:
        full = engine.run(episodes, Noop(2))
    assert all(f.length > c.length for f, c in zip(full, capped))  # off: the same games go on


def test_stall_steps_end_an_episode_without_rewards_and_charge_the_penalty():
    spec = probe_spec("ALE/Pong-v5")
    episodes = [Episode(seed) for seed in (5, 6)]
    with LaneEngine(spec, 2, workers=1, max_steps=2000, stall_steps=20, stall_penalty=-0.5) as engine:
        policy = Noop(2)
        stalled = engine.run(episodes, policy)
    assert [r.length for r in stalled] == [20, 20]  # no point in Pong's first 20 steps
    assert [r.ret for r in stalled] == [-0.5, -0.5]  # the penalty is in the return ...
    assert all(rewards == [0.0] * 20 for rewards in policy.done)  # ... not in what the policy saw
    with LaneEngine(spec, 2, workers=1, max_steps=300, stall_steps=290) as engine:
        scored = engine.run(episodes, Noop(2))
    assert all(r.length == 300 and r.ret < 0 for r in scored)  # points reset the count


def test_max_lives_ends_an_episode_at_its_kth_lost_life():
    spec = probe_spec("ALE/Breakout-v5")
    episodes = [Episode(seed) for seed in (5, 6)]
    lengths = {}
    for k in (1, 2, 0):
        with LaneEngine(spec, 2, workers=1, max_steps=5000, max_lives=k) as engine:
            policy = Noop(2)
            results = engine.run(episodes, policy)
        assert all(len(rewards) == r.length for rewards, r in zip(sorted(policy.done, key=len),
                                                                   sorted(results, key=lambda r: r.length)))
        lengths[k] = [r.length for r in results]
    # NOOP misses every serve: one life, two lives, then the whole game (5 lives) on each seed
    assert all(a < b < c < 5000 for a, b, c in zip(lengths[1], lengths[2], lengths[0]))


def test_lane_envs_count_lost_lives_and_replay_restores_them():
    from worldmodels.engine.workers import LaneEnvs

    spec = probe_spec("ALE/Breakout-v5").to_dict()
    envs = LaneEnvs(spec, [0], "official", 0)
    envs.work({0: ("reset", 3)})
    actions, lost = [], 0
    while not lost:
        actions.append(0)
        lost = envs.work({0: ("step", 0)})[0][5]
    assert lost == 1 and envs.lives[0] == 4
    again = LaneEnvs(spec, [0], "official", 0)
    again.replay({0: (3, actions)})
    assert again.lives[0] == 4
    assert again.work({0: ("step", 0)})[0][5] == 0  # the replayed env does not count the life again
