"""C's forms (controller.hidden) and inputs (controller.dz, controller.prev_actions): the same
numbers by hand, step by step and over a whole episode, in the engine, the dream and best.pt."""
import numpy as np
import pytest
import torch

from worldmodels.agent import Agent, evaluate
from worldmodels.checkpoint import load_bundle, save_torch
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.engine.dream import dream_returns
from worldmodels.engine.rollout import Episode, LaneEngine
from worldmodels.envs import make_env, preprocess, probe_spec
from worldmodels.errors import ConfigError
from worldmodels.models.controller import Controller, ControllerInputs, InputState, history_features
from worldmodels.models.mdnrnn import sample_z
from worldmodels.stages.controller import controller_params

PONG = probe_spec("ALE/Pong-v5")
MEMORY = ControllerInputs(use_h=True, dz=True, prev_actions=2)


def test_hidden_layer_by_hand_and_grouped_equals_per_lane():
    c = Controller(in_dim=5, action_kind="discrete", action_dim=3, hidden=4)
    assert c.n_params == 4 * 5 + 4 + 3 * 4 + 3
    params = np.random.default_rng(0).normal(size=(2, c.n_params)).astype(np.float32)
    weights = c.unflatten(params)
    assert [tuple(t.shape) for t in weights] == [(2, 4, 5), (2, 4), (2, 3, 4), (2, 3)]
    assert np.array_equal(Controller.flatten(*weights), params)
    x = torch.randn(6, 5)
    cand = torch.tensor([0, 1, 1, 0, 1, 0])
    raw = c.raw(weights, x, cand)
    w1, b1, w2, b2 = weights
    for lane in range(6):
        k = cand[lane]
        expect = w2[k] @ torch.tanh(w1[k] @ x[lane] + b1[k]) + b2[k]
        assert torch.allclose(raw[lane], expect, atol=1e-5)
    grouped = c.grouped_raw(weights, x.view(2, 3, 5))  # candidate p plays rows 3p..3p+2
    per_lane = c.raw(weights, x, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert torch.allclose(grouped.reshape(6, 3), per_lane, atol=1e-5)


def test_normalization_folds_into_the_first_layer_of_a_hidden_controller():
    rng = np.random.default_rng(1)
    c = Controller(7, "discrete", 4, hidden=3)
    asked = rng.normal(size=(4, c.n_params))
    center, scale = rng.normal(size=7).astype(np.float32), rng.uniform(0.1, 3, 7).astype(np.float32)
    x = torch.as_tensor(rng.normal(size=(4, 7)) * 2 + 1, dtype=torch.float32)
    cand = torch.arange(4)
    want = c.raw(c.unflatten(asked), (x - torch.as_tensor(center)) / torch.as_tensor(scale), cand)
    got = c.raw(c.unflatten(controller_params(asked, c, (center, scale))), x, cand)
    assert torch.allclose(got, want, atol=1e-4)


def test_input_state_step_by_step_equals_history_features():
    z, h = torch.randn(9, 3), torch.randn(9, 5)
    a = torch.nn.functional.one_hot(torch.randint(0, 4, (9,)), 4).float()
    for inputs in (ControllerInputs(), ControllerInputs(False, True, 0), ControllerInputs(True, False, 3), MEMORY):
        state = InputState(inputs, lanes=2, z_dim=3, action_dim=4)
        state.reset(1)
        lane = torch.tensor([1])
        steps = []
        for t in range(9):
            steps.append(state.features(lane, z[t:t + 1], h[t:t + 1]))
            state.record(lane, z[t:t + 1], a[t:t + 1])
        stepped = torch.cat(steps)
        assert stepped.shape == (9, inputs.dim(3, 5, 4))
        assert torch.equal(stepped, history_features(inputs, z, h, a))
    first = history_features(MEMORY, z, h, a)[0]
    assert torch.equal(first[8:], torch.zeros(3 + 8))  # no motion and no earlier actions at the start
    # a reset lane forgets: a new episode starts from no motion and no earlier actions
    state = InputState(MEMORY, 1, 3, 4)
    state.record(slice(None), z[:1], a[:1])
    state.reset(0)
    assert torch.equal(state.features(slice(None), z[1:2], h[1:2])[0, 8:], torch.zeros(11))


def memory_agent(seed=0, c_hidden=4):
    torch.manual_seed(seed)
    agent = Agent.build(PONG, z_dim=8, hidden=16, gaussians=2, inputs=MEMORY, c_hidden=c_hidden)
    params = np.random.default_rng(seed).normal(0, 0.5, size=(3, agent.controller.n_params)).astype(np.float32)
    return agent, params


def test_engine_policy_with_memory_matches_a_plain_loop():
    """Lane 1 of a 3-lane batch vs batch 1 by hand, with dz, two earlier actions and 4 tanh units."""
    agent, params = memory_agent(seed=3)
    with LaneEngine(PONG, 3, workers=1, max_steps=60) as engine:
        policy = agent.policy(params, 3, "cpu")
        taken = {}

        class Log:
            def start(self, lane, episode):
                policy.start(lane, episode)
                taken[lane] = []

            def act(self, obs, lanes):
                acts = policy.act(obs, lanes)
                for lane, action in zip(lanes, acts):
                    taken[lane].append(int(action))
                return acts

            def observe(self, *args):
                policy.observe(*args)

            def end(self, lane):
                policy.end(lane)

        engine.run([Episode(200 + i, i) for i in range(3)], Log())
    env = make_env(PONG, max_steps=60)
    obs, _ = env.reset(seed=201)
    h, c = agent.mdnrnn.initial_state(1)
    w1, b1, w2, b2 = (t[1] for t in agent.controller.unflatten(params))
    prev_z, prev_a, plain = None, [torch.zeros(6), torch.zeros(6)], []
    with torch.no_grad():
        for _ in range(60):
            x = torch.as_tensor(preprocess(obs, PONG)[None]).permute(0, 3, 1, 2).float() / 255
            z, _ = agent.vae.encode(x)
            dz = torch.zeros_like(z[0]) if prev_z is None else z[0] - prev_z
            feats = torch.cat([z[0], h[0], dz, prev_a[0], prev_a[1]])
            action = int((w2 @ torch.tanh(w1 @ feats + b1) + b2).argmax())
            plain.append(action)
            a = torch.nn.functional.one_hot(torch.tensor([action]), 6).float()
            prev_z, prev_a = z[0], [a[0], prev_a[0]]
            h, c = agent.mdnrnn.step(z, a, (h, c))
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                break
    assert len(plain) == 60 and plain == taken[1]
    assert len(set(plain)) > 1  # the check means something: the controller does not play one action


def test_dream_with_memory_matches_a_plain_loop():
    agent, params = memory_agent(seed=5)
    m, ctrl = agent.mdnrnn, agent.controller
    pool = torch.randn(4, 8)
    returns, _ = dream_returns(m, ctrl, params, pool, rollouts=2, max_steps=12, tau=1.0, seed=9,
                               inputs=agent.inputs, done_threshold=2.0)
    gen = torch.Generator().manual_seed(9)
    batch = 6
    z = pool[torch.randint(len(pool), (batch,), generator=gen)]
    h, c = m.initial_state(batch)
    weights = ctrl.unflatten(params)
    cand = torch.arange(3).repeat_interleave(2)
    prev_z, prev_a = z.clone(), torch.zeros(batch, 2, 6)
    total = torch.zeros(batch)
    with torch.no_grad():
        for _ in range(12):
            feats = torch.cat([z, h, z - prev_z, prev_a.flatten(1)], 1)
            action = ctrl.torch_actions(ctrl.raw(weights, feats, cand))
            prev_z, prev_a = z, torch.cat([action[:, None], prev_a[:, :1]], 1)
            h, c = m.step(z, action, (h, c))
            out = m.mixture(h)
            z = sample_z(out, 1.0, gen)
            total += out.reward
    assert torch.allclose(returns.flatten(), total, atol=1e-5)


def test_bundle_keeps_the_form_and_older_bundles_load_as_linear(tmp_path):
    agent, params = memory_agent()
    path = tmp_path / "best.pt"
    save_torch(path, agent.bundle(params[0], {}, {}))
    again, p2 = Agent.from_bundle(load_bundle(path))
    assert again.inputs == MEMORY and again.controller.hidden == 4
    assert again.controller.n_params == agent.controller.n_params == len(p2)
    old = Agent.build(PONG, z_dim=8, hidden=16, gaussians=2)  # today's default form
    bundle = old.bundle(np.zeros(old.controller.n_params, np.float32), {}, {})
    for key in ("dz", "prev_actions", "hidden"):  # what bundles written before these keys lack
        del bundle["controller"][key]
    save_torch(tmp_path / "old.pt", bundle)
    loaded, p_old = Agent.from_bundle(load_bundle(tmp_path / "old.pt"))
    assert loaded.inputs == ControllerInputs() and loaded.controller.hidden == 0
    result = evaluate(loaded.to("cpu"), p_old, episodes=1, seed_start=0, device="cpu", workers=1, max_steps=30)
    assert result["episodes"] == 1 and result["env_steps"] == 30


@pytest.mark.parametrize("setting", ["controller.hidden=-1", "controller.prev_actions=65"])
def test_out_of_range_forms_are_refused(setting):
    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        build_config(["smoke"], [setting])


@pytest.mark.slow
def test_memory_controller_trains_and_resumes_exactly(tmp_path):
    """Pong, smoke sizes: 2 generations then a resume to 3 equal 3 generations in one go."""
    form = ["controller.hidden=4", "controller.dz=true", "controller.prev_actions=2", "envs=pong", "workers=1"]
    straight = tmp_path / "straight"
    Run(build_config(["smoke"], form + ["max_gens=3"]), straight, ["test"], log_fn=lambda s: None).run()
    resumed = tmp_path / "resumed"
    Run(build_config(["smoke"], form + ["max_gens=2"]), resumed, ["test"], log_fn=lambda s: None).run()
    Run(build_config(["smoke"], form + ["max_gens=3"]), resumed, ["test"], log_fn=lambda s: None).run()

    def fitness(run):
        lines = (run / "pong" / "metrics.csv").read_text().splitlines()
        head = lines[0].split(",")
        cols = [head.index(k) for k in ("gen", "best_fitness", "mean_fitness", "sigma", "env_steps")]
        return [[row.split(",")[i] for i in cols] for row in lines[1:]]

    assert len(fitness(straight)) == 3 and fitness(resumed) == fitness(straight)
    agent, _ = Agent.from_bundle(load_bundle(straight / "pong" / "best.pt"))
    assert agent.inputs == ControllerInputs(True, True, 2) and agent.controller.hidden == 4
