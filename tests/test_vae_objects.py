"""V on Atari: small objects weigh more in the loss, and the first batches train an autoencoder."""
import numpy as np
import pytest

from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.stages.vae import median_frame


def test_median_frame_is_the_background_without_the_ball(tmp_path):
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    files = []
    for ep in range(3):
        obs = np.repeat(background[None], 20, axis=0)
        for t in range(20):  # a 2x2 ball that moves every step
            r, c = (5 + 2 * t + ep) % 62, (3 * t + 7 * ep) % 62
            obs[t, r:r + 2, c:c + 2] = 255
        path = tmp_path / f"ep_{ep}.npz"
        np.savez(path, obs=obs)
        files.append(path)
    assert np.array_equal(median_frame(files), background)


@pytest.mark.parametrize("env,atari", [("pong", True), pytest.param("carracing", False, marks=pytest.mark.slow)])
def test_stage_weights_objects_and_warms_up_on_atari_only(tmp_path, monkeypatch, env, atari):
    import worldmodels.stages.vae as vae_stage

    real = vae_stage.vae_loss
    calls = []

    def spy(*args, **kwargs):
        weight = args[5] if len(args) > 5 else kwargs.get("weight")
        calls.append((kwargs.get("beta", 1.0), weight is not None and bool((weight > 1).any())))
        return real(*args, **kwargs)

    monkeypatch.setattr(vae_stage, "vae_loss", spy)
    cfg = build_config(["smoke"], [f"envs={env}", "workers=1", "stages=collect,vae", "vae.epochs=2",
                                   "vae.batch_size=16", "vae.ae_warmup=15"])
    Run(cfg, tmp_path / "run", ["test"], log_fn=lambda m: None).run()
    betas = [beta for beta, _ in calls]
    assert len(calls) > 15
    if atari:
        assert len(calls) == 26  # 2 epochs of 13 batches (4 rollouts x 51 frames, batch 16)
        assert betas[:15] == [0.0] * 15 and set(betas[15:]) == {1.0}  # warm-up goes on into epoch 1
        assert any(weighted for _, weighted in calls)  # ball and paddles differ from the median frame
    else:
        assert set(betas) == {1.0} and not any(weighted for _, weighted in calls)
