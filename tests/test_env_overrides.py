"""env_overrides reach the env they name (by alias or Gymnasium id) through EnvContext, and a
run folder resumes when no env of the run trains differently."""
import pytest

from worldmodels.config import build_config
from worldmodels.curriculum import EnvContext, Run
from worldmodels.errors import ConfigError, RunFolderError


def make_run(out, *sets):
    cfg = build_config(["smoke"], ["envs=pong,carracing", "workers=1", *sets])
    return Run(cfg, out, ["test"], log_fn=lambda m: None)


def test_overrides_reach_their_env_by_alias_or_id(tmp_path):
    run = make_run(tmp_path / "run", "env_overrides.CarRacing-v3.action_repeat=2",
                   "env_overrides.carracing.time_budget=3", "env_overrides.pong.controller.max_steps=77")
    try:
        car, pong = EnvContext(run, "CarRacing-v3"), EnvContext(run, "ALE/Pong-v5")
        assert car.spec.action_repeat == 2 and car.cfg.time_budget == 3 and car.cfg.controller.max_steps != 77
        assert pong.cfg.controller.max_steps == 77 and pong.cfg.time_budget == 0 and pong.spec.action_repeat == 1
    finally:
        run.close()


def test_a_name_must_be_one_env(tmp_path):
    with pytest.raises(ConfigError, match="names 3 envs"):
        make_run(tmp_path / "run", "env_overrides.all.controller.max_steps=77")
    assert not (tmp_path / "run").exists()


def test_resume_ignores_overrides_of_envs_the_run_does_not_train(tmp_path):
    out = tmp_path / "run"
    cfg = build_config(["smoke"], ["envs=pong", "workers=1"])
    Run(cfg, out, ["test"], log_fn=lambda m: None).close()
    same = build_config(["smoke"], ["envs=pong", "workers=1", "env_overrides.carracing.controller.max_steps=9"])
    Run(same, out, ["test"], log_fn=lambda m: None).close()  # pong trains as before
    other = build_config(["smoke"], ["envs=pong", "workers=1", "env_overrides.ALE/Pong-v5.controller.max_steps=9"])
    with pytest.raises(RunFolderError, match="controller.max_steps"):
        Run(other, out, ["test"], log_fn=lambda m: None)


def test_a_run_yaml_with_broken_env_overrides_is_one_error(tmp_path):
    out = tmp_path / "run"
    cfg = build_config(["smoke"], ["envs=pong", "workers=1"])
    Run(cfg, out, ["test"], log_fn=lambda m: None).close()
    text = (out / "run.yaml").read_text().replace("env_overrides: {}", "env_overrides: [1, 2]")
    assert "env_overrides: [1, 2]" in text
    (out / "run.yaml").write_text(text)
    with pytest.raises(RunFolderError, match="unreadable"):
        Run(cfg, out, ["test"], log_fn=lambda m: None)
