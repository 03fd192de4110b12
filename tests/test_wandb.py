"""wm-train --track: the scalars in Weights & Biases, each env's against its own env-step counter
(the hook driven directly, as the loop calls it; W&B in offline mode, no account, no network)."""
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_report_tensorboard import _ctx, _drive


class FakeRun:
    """What the hook calls on a wandb run, recorded."""

    def __init__(self, **kw):
        self.init = kw
        self.config: dict = {}
        self.metrics: dict = {}
        self.rows: list[dict] = []
        self.finished = None
        run = self

        class Config:
            def update(self, values, allow_val_change=False):
                run.config.update(values)
        self.config_obj = Config()

    def define_metric(self, name, step_metric=None):
        self.metrics[name] = step_metric

    def log(self, row):
        self.rows.append(row)

    def finish(self, exit_code=0):
        self.finished = exit_code


def _fake_wandb(runs: list):
    def init(**kw):
        run = FakeRun(**kw)
        runs.append(run)
        return SimpleNamespace(config=run.config_obj, define_metric=run.define_metric, log=run.log, finish=run.finish)
    return SimpleNamespace(init=init, login=lambda prompt: True)


def test_scalars_go_against_each_envs_own_counter(tmp_path, monkeypatch):
    import worldmodels.hooks.wandb as hook_module

    runs: list[FakeRun] = []
    monkeypatch.setattr(hook_module, "wandb_module", lambda: _fake_wandb(runs))
    ctx = _ctx(tmp_path / "run" / "pong")
    _drive(hook_module.WandbLogger(), ctx)
    run, = runs
    assert run.init["resume"] == "allow" and run.init["name"] == "run"
    assert run.config["pong"]["seed"] == 7 and run.config["pong"]["envs"] == "pong"
    controller = [r for r in run.rows if "pong/controller/best_fitness" in r]
    assert [(r["pong/env_steps"], r["pong/controller/best_fitness"]) for r in controller] == \
        [(1200, -20.0), (2201, -19.0), (3203, -18.0)]
    assert [r["pong/eval/mean"] for r in controller if "pong/eval/mean" in r] == [-19.0, -17.0]
    assert [(r["pong/vae/epoch"], r["pong/vae/loss"]) for r in run.rows if "pong/vae/loss" in r] == [(0, 3.0), (1, 2.0)]
    assert run.rows[-1] == {"pong/env_steps": 3203, "pong/eval/final_mean": -16.5, "pong/eval/final_std": 2.0}
    assert run.metrics["pong/controller/best_fitness"] == "pong/env_steps"
    assert run.metrics["pong/mdnrnn/loss"] == "pong/mdnrnn/epoch"
    assert run.finished == 0


def test_a_failing_wandb_never_ends_the_run(tmp_path, monkeypatch):
    import worldmodels.hooks.wandb as hook_module

    runs: list[FakeRun] = []
    monkeypatch.setattr(hook_module, "wandb_module", lambda: _fake_wandb(runs))
    hook = hook_module.WandbLogger()
    ctx = _ctx(tmp_path / "run" / "pong")
    hook.on_env_start(ctx)

    def broken(row):
        raise OSError("disk full")
    hook.run.log = broken
    hook.on_step_end(ctx, "collect", SimpleNamespace(index=0, metrics={"rollouts": 4, "env_steps": 200}))
    assert hook.failed and hook.run is None and runs[0].finished == 1
    hook.on_step_end(ctx, "collect", SimpleNamespace(index=1, metrics={"rollouts": 4, "env_steps": 400}))  # quiet


def test_offline_run_records_and_a_resume_continues_it(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from worldmodels.hooks.wandb import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ctx = _ctx(tmp_path / "run" / "pong")
    _drive(WandbLogger(), ctx)
    run_id = (tmp_path / "run" / "wandb" / "run_id").read_text().strip()
    files = list(Path(tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1
    data = files[0].read_bytes()
    for key in (b"pong/controller/best_fitness", b"pong/env_steps", b"pong/vae/epoch", b"pong/eval/final_mean"):
        assert key in data
    _drive(WandbLogger(), _ctx(tmp_path / "run" / "pong"))   # a resume: the same W&B run
    assert (tmp_path / "run" / "wandb" / "run_id").read_text().strip() == run_id
    assert len(list(Path(tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))) >= 1


def test_track_without_wandb_is_one_clear_error(monkeypatch):
    import builtins

    from worldmodels.errors import UserError
    from worldmodels.hooks.wandb import WandbLogger

    real_import = builtins.__import__

    def no_wandb(name, *args, **kw):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kw)
    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(UserError, match=r"pip install 'worldmodels\[wandb\]'"):
        WandbLogger()


def test_track_flag_is_in_the_resolved_config(cli, tmp_path):
    proc = cli("wm-train", "--envs", "pong", "--track", "--print-config", "--out", tmp_path / "r", check=0)
    assert "\ntrack: true\n" in proc.stdout and not (tmp_path / "r").exists()


def test_track_without_a_login_is_one_clear_error_unless_offline(monkeypatch):
    import worldmodels.hooks.wandb as hook_module
    from worldmodels.errors import UserError

    asked = []
    fake = SimpleNamespace(init=None, login=lambda prompt: asked.append(prompt) or False)
    monkeypatch.setattr(hook_module, "wandb_module", lambda: fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(UserError, match="wandb login"):
        hook_module.WandbLogger()
    assert asked == [False]          # checked without a prompt
    monkeypatch.setenv("WANDB_MODE", "offline")
    hook_module.WandbLogger()        # offline needs no account
