"""wm-train --tensorboard: scalars against the env's env-step counter, and the env's config as
hyperparameters for TensorBoard's HParams dashboard (the hook driven directly, no training)."""
from types import SimpleNamespace

import pytest

from worldmodels.config import TrainConfig


def _ctx(env_dir, **kw):
    cfg = TrainConfig()
    cfg.seed, cfg.envs = 7, ["pong"]
    return SimpleNamespace(env_dir=env_dir, run_dir=env_dir.parent, spec=SimpleNamespace(slug=env_dir.name), round=0,
                           cfg=cfg, env_steps=0, final_eval=None, recipe={"name": "smoke"}, **kw)


def _drive(hook, ctx):
    """What the curriculum loop calls: collection, V, M, three generations, the final score."""
    hook.on_run_start(SimpleNamespace(out=ctx.run_dir))
    hook.on_env_start(ctx)
    ctx.env_steps = 200
    hook.on_step_end(ctx, "collect", SimpleNamespace(index=0, metrics={"rollouts": 4, "env_steps": 200}))
    for epoch, loss in enumerate((3.0, 2.0)):  # V and M: env steps stand still, against the epoch
        hook.on_step_end(ctx, "vae", SimpleNamespace(index=epoch, metrics={"epoch": epoch, "loss": loss, "recon": loss,
                                                                            "kl": 0.5}))
    hook.on_step_end(ctx, "mdnrnn", SimpleNamespace(index=0, metrics={"epoch": 0, "loss": 1.5, "gmm": 1.0,
                                                                      "reward": 0.1, "done": 0.2}))
    for gen in range(3):
        ctx.env_steps += 1000 + gen
        metrics = {"gen": gen, "best_fitness": -20.0 + gen, "mean_fitness": -21.0 + gen, "steps_per_s": 1000.0,
                   "env_steps": ctx.env_steps}
        if gen % 2 == 0:
            metrics["eval"] = {"mean": -19.0 + gen, "std": 1.0}
        hook.on_step_end(ctx, "controller", SimpleNamespace(index=gen, metrics=metrics))
    ctx.final_eval = {"mean": -16.5, "std": 2.0, "episodes": 100}
    hook.on_env_end(ctx)
    hook.on_run_end(None)


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_tensorboard_scalars_are_against_env_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from worldmodels.hooks.tensorboard import TensorBoardLogger

    ctx = _ctx(tmp_path / "run" / "pong")
    _drive(TensorBoardLogger(), ctx)
    acc = _events(tmp_path / "run" / "tensorboard" / "pong")
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    steps = [1200, 2201, 3203]  # the env's counter after each generation, collection included
    assert scalars["controller/best_fitness"] == list(zip(steps, (-20.0, -19.0, -18.0)))
    assert scalars["controller/mean_fitness"] == list(zip(steps, (-21.0, -20.0, -19.0)))
    assert scalars["controller/generation"] == list(zip(steps, (0.0, 1.0, 2.0)))
    assert scalars["controller/steps_per_s"][-1] == (3203, 1000.0)
    assert scalars["eval/mean"] == [(1200, -19.0), (3203, -17.0)]
    assert scalars["eval/final_mean"] == [(3203, -16.5)] and scalars["eval/final_std"] == [(3203, 2.0)]
    assert scalars["collect/rollouts"] == [(200, 4.0)]
    assert scalars["vae/loss"] == [(0, 3.0), (1, 2.0)]  # epochs
    assert [v for _, v in scalars["mdnrnn/loss"]] == [1.5]


def test_tensorboard_records_the_env_config_as_hyperparameters(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import metadata

    from worldmodels.hooks.scalars import HPARAM_METRICS
    from worldmodels.hooks.tensorboard import TensorBoardLogger

    ctx = _ctx(tmp_path / "run" / "pong")
    _drive(TensorBoardLogger(), ctx)
    content = _events(tmp_path / "run" / "tensorboard" / "pong").PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert hp["seed"] == 7 and hp["envs"] == "pong" and hp["recipe"] == "smoke"
    assert hp["vae.z_dim"] == TrainConfig().vae.z_dim and hp["controller.pop_size"] == TrainConfig().controller.pop_size
    assert hp["live"] == 0 and "device" in hp  # torch writes a bool as a number
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert {m.name.tag for m in experiment.metric_infos} == set(HPARAM_METRICS)


def test_hyperparameters_that_cannot_be_written_leave_the_scalars(tmp_path, caplog):
    pytest.importorskip("tensorboard")
    from worldmodels.hooks.tensorboard import TensorBoardLogger

    ctx = _ctx(tmp_path / "run" / "pong")
    del ctx.cfg  # a context without a config
    _drive(TensorBoardLogger(), ctx)
    assert "no hyperparameters for pong" in caplog.text
    acc = _events(tmp_path / "run" / "tensorboard" / "pong")
    assert [e.step for e in acc.Scalars("controller/best_fitness")] == [1200, 2201, 3203]


def test_hparams_of_flattens_lists_and_drops_none():
    from worldmodels.hooks.scalars import hparams_of

    hp = hparams_of({"envs": ["pong", "breakout"], "vae": {"z_dim": 32, "lr": 1e-3}, "ray_address": None,
                     "live": False})
    assert hp == {"envs": "pong,breakout", "vae.z_dim": 32, "vae.lr": 1e-3, "live": False}
