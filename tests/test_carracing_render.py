"""CarRacing renderers: exact == official bit for bit, fast is close, ids register.

One official rollout per seed is shared (module fixture) by the exact and fast
checks, to keep the whole file well under a minute on a busy 2-core machine.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.envs import carracing as cr
from worldmodels.envs import register_carracing as register
from worldmodels.envs.carracing import CarRacing, random_driving

SEEDS = (0, 1, 2)
STEPS = 200
FAST_MAX_MEAN_ERR = 3.0  # on the 0..255 scale


def rollout(env, seed: int, actions, setup=None):
    """Frames (reset frame first) and (reward, terminated, truncated, info) per step."""
    obs, _ = env.reset(seed=seed)
    if setup is not None:
        setup(env)
    frames = [obs]
    results = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        frames.append(obs)
        results.append((reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return np.stack(frames), results


@pytest.fixture(scope="module")
def official_rollouts():
    out = {}
    for seed in SEEDS:
        env = gym.make("CarRacing-v3").unwrapped
        out[seed] = rollout(env, seed, random_driving(seed, STEPS))
        env.close()
    return out


def test_exact_is_bit_identical(official_rollouts):
    for seed in SEEDS:
        ref_frames, ref_results = official_rollouts[seed]
        env = CarRacing(renderer="exact")
        frames, results = rollout(env, seed, random_driving(seed, STEPS))
        assert results == ref_results, f"seed {seed}: rewards/terminated/truncated/info differ"
        assert frames.shape == ref_frames.shape == (len(ref_frames), 96, 96, 3)
        assert frames.dtype == np.uint8
        bad = [i for i in range(len(frames)) if not np.array_equal(frames[i], ref_frames[i])]
        assert not bad, f"seed {seed}: {len(bad)} frames differ, first at step {bad[0]}"
        # the car really drove somewhere (so the test covers moving/rotating views)
        assert not np.array_equal(frames[-1], frames[60])


def test_fast_is_close(official_rollouts):
    errs = []
    for seed in SEEDS:
        ref_frames, ref_results = official_rollouts[seed]
        env = CarRacing(renderer="fast")
        frames, results = rollout(env, seed, random_driving(seed, STEPS))
        assert results == ref_results, f"seed {seed}: rewards/terminated/truncated/info differ"
        assert frames.shape == ref_frames.shape and frames.dtype == np.uint8
        d = np.abs(frames.astype(np.int16) - ref_frames.astype(np.int16))
        errs.append(d.reshape(len(d), -1).mean(axis=1))
    errs = np.concatenate(errs)
    mean = float(errs.mean())
    assert mean <= FAST_MAX_MEAN_ERR, f"fast renderer mean abs error {mean:.3f}/255"
    # no single frame should be badly off either
    assert float(errs.max()) <= 2 * FAST_MAX_MEAN_ERR, f"worst frame error {errs.max():.3f}/255"


def _move_car(dx: float, dy: float):
    def setup(env):
        car = env.unwrapped.car
        for body in [car.hull] + car.wheels:
            x, y = body.position
            body.position = (x + dx, y + dy)

    return setup


def _edge_setup(env):
    # Put the car ~25 units inside the playfield boundary on its own heading,
    # so the zoomed-in view shows the black outside and the car drives off it.
    car = env.unwrapped.car
    x, y = car.hull.position
    ang = car.hull.angle
    hx, hy = -np.sin(ang), np.cos(ang)  # forward direction of the car
    t = (cr._B - 25.0) / max(abs(hx), abs(hy))
    _move_car(hx * t - x, hy * t - y)(env)


def test_exact_and_fast_at_playfield_edge():
    actions = [np.array([0.0, 1.0, 0.0], dtype=np.float32)] * 120
    ref = rollout(gym.make("CarRacing-v3").unwrapped, 7, actions, _edge_setup)
    ex = rollout(CarRacing(renderer="exact"), 7, actions, _edge_setup)
    fa = rollout(CarRacing(renderer="fast"), 7, actions, _edge_setup)
    ref_frames, ref_results = ref
    # the view did include the black area outside the playfield
    assert (ref_frames[20:, :84].max(axis=-1) == 0).any()
    assert ex[1] == ref_results and fa[1] == ref_results
    assert np.array_equal(ex[0], ref_frames)
    err = np.abs(fa[0].astype(np.int16) - ref_frames.astype(np.int16)).mean()
    assert err <= FAST_MAX_MEAN_ERR


def test_domain_randomize_and_discrete():
    for kwargs, actions in (
        ({"domain_randomize": True}, random_driving(5, 60)),
        ({"continuous": False}, [int(a) for a in np.random.default_rng(6).integers(0, 5, 60)]),
    ):
        ref = rollout(gym.make("CarRacing-v3", **kwargs).unwrapped, 5, actions)
        ex = rollout(CarRacing(renderer="exact", **kwargs), 5, actions)
        fa = rollout(CarRacing(renderer="fast", **kwargs), 5, actions)
        assert ex[1] == ref[1] and fa[1] == ref[1]
        assert np.array_equal(ex[0], ref[0]), kwargs
        err = np.abs(fa[0].astype(np.int16) - ref[0].astype(np.int16)).mean()
        assert err <= FAST_MAX_MEAN_ERR, (kwargs, err)


def test_registration_and_renderer_values():
    register()
    register()  # idempotent
    spec = gym.spec(cr.ENV_ID)
    official = gym.spec("CarRacing-v3")
    assert spec.max_episode_steps == official.max_episode_steps == 1000
    assert spec.kwargs["renderer"] == "fast"
    for renderer in ("official", "exact", "fast"):
        env = gym.make(cr.ENV_ID, renderer=renderer)
        assert isinstance(env.unwrapped, CarRacing)
        assert env.unwrapped.renderer == renderer
        obs, _ = env.reset(seed=0)
        assert obs.shape == (96, 96, 3) and obs.dtype == np.uint8
        obs, *_ = env.step(env.action_space.sample())
        assert obs.shape == (96, 96, 3) and obs.dtype == np.uint8
        env.close()
    assert gym.make(cr.ENV_ID).unwrapped.renderer == "fast"
    with pytest.raises(ValueError, match="renderer"):
        gym.make(cr.ENV_ID, renderer="bogus")
    with pytest.raises(ValueError, match="'official', 'exact', 'fast'"):
        CarRacing(renderer="")


def test_official_renderer_is_the_parent():
    env = CarRacing(renderer="official")
    a = random_driving(3, 30)
    ref = rollout(gym.make("CarRacing-v3").unwrapped, 3, a)
    got = rollout(env, 3, a)
    assert got[1] == ref[1] and np.array_equal(got[0], ref[0])
    assert env._geom is None  # no caching, no colour-array rewiring: pure parent


def test_rgb_array_render_falls_back_to_parent():
    env = CarRacing(renderer="fast", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([0.0, 0.5, 0.0], dtype=np.float32))
    img = env.render()
    assert img.shape == (400, 600, 3) and img.dtype == np.uint8
