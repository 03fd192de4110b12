import gymnasium as gym
import numpy as np
import pytest

from worldmodels.envs import FireOnLifeLoss, make_env, preprocess, probe_spec, resolve_env_ids, slug
from worldmodels.errors import ConfigError


def test_aliases_and_all():
    assert resolve_env_ids(["all"]) == ["ALE/Pong-v5", "ALE/Breakout-v5", "CarRacing-v3"]
    assert resolve_env_ids(["carracing,pong"]) == ["CarRacing-v3", "ALE/Pong-v5"]
    with pytest.raises(ConfigError, match="unknown env 'nope'"):
        resolve_env_ids(["nope"])
    assert slug("ALE/Pong-v5") == "pong" and slug("ALE/SpaceInvaders-v5") == "ale_spaceinvaders-v5"


def test_non_image_env_is_rejected():
    with pytest.raises(ConfigError, match="no image observation"):
        probe_spec("CartPole-v1")


def test_specs():
    pong = probe_spec("ALE/Pong-v5")
    assert pong.action_kind == "discrete" and pong.action_dim == 6 and pong.fire_action == 1
    car = probe_spec("CarRacing-v3")
    assert car.action_kind == "box" and car.low == [-1.0, 0.0, 0.0] and car.crop == (0, 84, 0, 96)


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "ALE/Breakout-v5"])
def test_preprocessing_keeps_a_small_ball(env_id):
    spec = probe_spec(env_id)
    top, bottom, left, right = spec.crop
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:] = (144, 72, 17) if "Pong" in env_id else (0, 0, 0)
    r, c = (top + bottom) // 2, (left + right) // 2
    frame[r:r + 4, c:c + 2] = (236, 236, 236)  # the 2x4 ball
    empty = frame.copy()
    empty[r:r + 4, c:c + 2] = frame[0, 0]
    out, ref = preprocess(frame, spec).astype(int), preprocess(empty, spec).astype(int)
    assert out.shape == (64, 64, 3)
    diff = np.abs(out - ref).sum(-1)
    assert diff.max() >= 150  # the ball is still bright at 64x64
    assert (diff > 60).sum() >= 2  # and covers more than one pixel


def test_carracing_crop_drops_the_hud():
    spec = probe_spec("CarRacing-v3")
    frame = np.zeros((96, 96, 3), np.uint8)
    frame[84:] = 255  # the HUD bar
    assert preprocess(frame, spec).max() == 0


def test_fire_after_reset_and_after_a_lost_life():
    env = make_env("ALE/Breakout-v5")
    assert isinstance(env, FireOnLifeLoss)
    env.reset(seed=3)
    lost, steps, lives = 0, 0, 5
    while steps < 3000:
        _, _, term, trunc, info = env.step(0)  # NOOP only: the wrapper must serve the ball
        steps += 1
        if info["lives"] < lives:
            lost += 1
            lives = info["lives"]
        if term or trunc:
            break
    assert term, "with FIRE handled, a NOOP agent loses all five lives quickly"
    assert lost == 5 and steps < 3000
    env.close()


def test_without_fire_breakout_stalls():
    env = gym.make("ALE/Breakout-v5", repeat_action_probability=0.0)
    env.reset(seed=3)
    for _ in range(500):
        _, _, term, _, info = env.step(0)
        assert not term and info["lives"] == 5
    env.close()


def test_step_cap():
    env = make_env("ALE/Pong-v5", max_steps=7)
    env.reset(seed=0)
    for _ in range(7):
        _, _, term, trunc, _ = env.step(0)
    assert trunc and not term


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "ALE/Pong-v5"])
def test_seeded_resets_without_a_rom_reload_play_the_official_episodes(env_id):
    """make_env for training restores the state a seeded reset reaches instead of reloading the
    ROM: episodes after it, sticky actions included, are the official env's frame for frame,
    whatever episode the env played before."""
    fast, official = make_env(probe_spec(env_id), renderer="fast"), make_env(probe_spec(env_id))
    assert fast.unwrapped.load_game.__name__ == "load" and official.unwrapped.load_game.__name__ == "load_game"
    rng = np.random.default_rng(0)
    for episode, seed in enumerate([11, 2_000_000_003, 7, 11]):
        a, b = fast.reset(seed=seed), official.reset(seed=seed)
        assert np.array_equal(a[0], b[0]) and a[1]["lives"] == b[1]["lives"]
        for _ in range(150 + 100 * episode):
            action = int(rng.integers(fast.action_space.n))
            a, b = fast.step(action), official.step(action)
            assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4] and a[4]["lives"] == b[4]["lives"], (seed, action)
            if a[2] or a[3]:
                break
    assert fast.unwrapped.load_game.__self__.template is not None  # the check passed: later resets took the fast way


def test_a_failed_check_keeps_the_official_reload(monkeypatch):
    from worldmodels.envs import ale_reset

    monkeypatch.setattr(ale_reset, "rng_text", lambda seed: b"1 2 3")  # builds a state that cannot match
    env, official = make_env(probe_spec("ALE/Breakout-v5"), renderer="fast"), make_env(probe_spec("ALE/Breakout-v5"))
    calls = []
    reset = env.unwrapped.load_game.__self__
    monkeypatch.setattr(reset, "load_rom", lambda real=reset.load_rom: calls.append(1) or real())
    for seed in (3, 4):
        a, b = env.reset(seed=seed), official.reset(seed=seed)
        for _ in range(60):
            a, b = env.step(3), official.step(3)
            assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
    assert calls == [1, 1]  # both resets reloaded the ROM


def test_catch_the_fake_env_for_unit_tests():
    """envs/catch.py: seeded episodes repeat, a paddle under the ball catches it (+1), one
    away misses it (-1), and an episode is `balls` balls."""
    import gymnasium as gym

    from worldmodels.envs import CATCH_ID, register_all
    from worldmodels.envs.catch import BALL, PADDLE_W

    register_all()

    def play(seed, policy):
        env = gym.make(CATCH_ID, render_mode="rgb_array").unwrapped
        frame, _ = env.reset(seed=seed)
        frames, rewards, done = [frame], [], False
        while not done:
            frame, reward, done, _, _ = env.step(policy(env))
            frames.append(frame)
            rewards.append(reward)
        assert np.array_equal(env.render(), frames[-1])
        return np.stack(frames), rewards

    def follow(env):  # move the paddle's centre toward the ball's
        gap = (env.ball_x + BALL / 2) - (env.paddle + PADDLE_W / 2)
        return 2 if gap > 2 else 0 if gap < -2 else 1

    frames, rewards = play(3, follow)
    again, _ = play(3, follow)
    assert frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8 and np.array_equal(frames, again)
    assert [r for r in rewards if r] == [1.0] * 5
    _, rewards = play(3, lambda env: 0)        # the paddle stays at the left wall: most balls are missed
    assert len([r for r in rewards if r]) == 5 and sum(rewards) < 0
