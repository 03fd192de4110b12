import pytest

from worldmodels.config import (
    TrainConfig,
    build_config,
    bundled_configs,
    changed_training_keys,
    env_config,
    parse_set,
    to_dict,
)
from worldmodels.errors import ConfigError


def test_defaults_are_the_laptop_recipe():
    cfg = TrainConfig()
    assert cfg.envs == ["all"] and cfg.max_gens == 200 and cfg.eval_every == 10 and cfg.patience == 0
    assert cfg.vae.z_dim == 32 and cfg.mdnrnn.hidden == 128 and cfg.mdnrnn.gaussians == 5
    assert cfg.action_repeat == 4 and cfg.controller.slots == 64 and cfg.collect.min_frames == 50_000
    budgets = {name: env_config(cfg, lambda n, name=name: n == name).max_env_steps
               for name in ("pong", "breakout", "carracing", "ALE/SpaceInvaders-v5")}
    assert budgets == {"pong": 2_400_000, "breakout": 4_700_000, "carracing": 24_000_000,
                       "ALE/SpaceInvaders-v5": 5_000_000}
    # the recipe's names: laptop is the defaults, quick an alias of it, default one of gpu
    assert to_dict(build_config(["laptop"])) == to_dict(cfg) == to_dict(build_config(["quick"]))
    assert to_dict(build_config(["default"])) == to_dict(build_config(["gpu"])) != to_dict(cfg)


def test_a_config_file_keeps_the_defaults_per_env_settings_it_does_not_set(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("controller:\n  pop_size: 8\nmax_env_steps: 1000\n")
    cfg = build_config([str(mine)])
    pong = env_config(cfg, lambda n: n == "pong")
    assert pong.controller.max_rewards == 5 and pong.controller.pop_size == 8
    assert pong.max_env_steps == 1000  # a file's key for every env drops the defaults' per-env value


def test_bundled_configs_all_validate():
    names = bundled_configs()
    assert {"smoke", "laptop", "gpu", "quick", "default", "paper"} <= set(names)
    for name in names:
        build_config([name])


def test_later_files_win_then_set_then_flags(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("max_gens: 5\nvae:\n  epochs: 3\n")
    b = tmp_path / "b.yaml"
    b.write_text("max_gens: 7\n")
    cfg = build_config([str(a), str(b)], ["vae.epochs=4", "controller.sigma0=0.5"], {"max_gens": 9})
    assert cfg.max_gens == 9 and cfg.vae.epochs == 4 and cfg.controller.sigma0 == 0.5
    cfg = build_config(["smoke", str(b)])
    assert cfg.max_gens == 7 and cfg.vae.z_dim == 8  # smoke's keys survive, b's win


@pytest.mark.parametrize("sets, needle", [
    (["vae.nope=1"], "vae.nope"),
    (["nope=1"], "'nope'"),
    (["max_gens=abc"], "max_gens"),
    (["max_gens=1.5"], "max_gens"),
    (["controller.use_h=3"], "controller.use_h"),
    (["vae=3"], "vae"),
    (["max_gens=-1"], "max_gens"),
    (["stages=collect,fly"], "fly"),
])
def test_bad_keys_and_types_name_the_key(sets, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        build_config([], sets)


def test_unknown_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="neither a bundled config"):
        build_config(["no-such-config"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_gens: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config([str(bad)])


def test_parse_set_and_lists():
    assert parse_set("controller.pop_size=8") == {"controller": {"pop_size": 8}}
    cfg = build_config([], ["envs=pong,carracing", "time_budget=3"])
    assert cfg.envs == ["pong", "carracing"] and cfg.time_budget == 3.0


def test_changed_training_keys_ignores_budget_keys():
    old = to_dict(build_config(["smoke"]))
    new = to_dict(build_config(["smoke"], ["max_gens=50", "patience=3", "workers=1", "vae.epochs=2", "seed=4"]))
    assert changed_training_keys(old, new) == ["seed", "vae.epochs"]


def test_a_key_added_since_the_run_counts_as_its_default():
    old = to_dict(build_config(["smoke"]))
    del old["vae"]["object_weight"]  # a run folder written before the key existed
    assert changed_training_keys(old, to_dict(build_config(["smoke"]))) == []
    assert changed_training_keys(old, to_dict(build_config(["smoke"], ["vae.object_weight=3"]))) == ["vae.object_weight"]


def test_env_overrides_merge_and_the_command_line_wins(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("controller:\n  max_steps: 500\nenv_overrides:\n  carracing:\n    controller:\n      max_steps: 1000\n"
                 "    collect.rollouts: 7\n")
    cfg = build_config([str(f)])
    assert cfg.controller.max_steps == 500  # the overrides stay aside until an env asks for them
    assert cfg.env_overrides["carracing"] == {"controller": {"max_steps": 1000, "rollouts": 8},  # + the defaults'
                                              "collect": {"rollouts": 7}, "max_env_steps": 24_000_000}
    car = env_config(cfg, lambda name: name == "carracing")
    assert car.controller.max_steps == 1000 and car.collect.rollouts == 7
    assert env_config(cfg, lambda name: name == "pong").controller.max_steps == 500
    # --set of the same key is meant for every env: it beats the file's override, not the other keys
    cfg = build_config([str(f)], ["controller.max_steps=300"])
    car = env_config(cfg, lambda name: name == "carracing")
    assert car.controller.max_steps == 300 and car.collect.rollouts == 7
    # ... and an override on the command line adds to the file's
    cfg = build_config([str(f)], ["env_overrides.carracing.vae.epochs=2", "env_overrides.pong.action_repeat=2"])
    car = env_config(cfg, lambda name: name == "carracing")
    assert (car.vae.epochs, car.controller.max_steps, car.collect.rollouts) == (2, 1000, 7)
    assert env_config(cfg, lambda name: name == "pong").action_repeat == 2


@pytest.mark.parametrize("item, needle", [
    ("env_overrides.carracing.max_gens=3", "env_overrides.carracing.max_gens cannot differ between envs"),
    ("env_overrides.carracing.eval.episodes=3", "env_overrides.carracing.eval.episodes"),
    ("env_overrides.carracing.controller.nope=3", "env_overrides.carracing.controller.nope"),
    ("env_overrides.carracing.controller.max_steps=x", "env_overrides.carracing.controller.max_steps"),
    ("env_overrides.carracing.controller.max_steps=0", "env_overrides.carracing: config key 'controller.max_steps' must be 1 to"),
    ("env_overrides.carracing=3", "must map env names to settings"),
    ("env_overrides={carracing: {controller: 3, controller.max_steps: 5}}", "env_overrides.carracing.controller"),
])
def test_bad_env_overrides_name_the_key(item, needle):
    with pytest.raises(ConfigError) as exc:
        build_config(["quick"], [item])
    assert needle in str(exc.value)


def test_env_overrides_count_as_training_keys_except_budgets():
    a = to_dict(build_config(["quick"]))
    b = to_dict(build_config(["quick"], ["env_overrides.carracing.controller.max_steps=700"]))
    assert "env_overrides.carracing.controller.max_steps" in changed_training_keys(a, b)
    c = to_dict(build_config(["quick"], ["env_overrides.pong.time_budget=30"]))
    assert changed_training_keys(a, c) == []


def test_env_overrides_later_layers_and_flags():
    # dotted and nested keys of one env merge
    cfg = build_config(["smoke"], ["env_overrides={carracing: {controller.pop_size: 6, controller: {max_steps: 5}}}"])
    assert cfg.env_overrides == {"carracing": {"controller": {"pop_size": 6, "max_steps": 5}}}
    # a flag for every env drops a file's override of it, not one given with --set
    cfg = build_config(["smoke"], ["env_overrides.carracing.time_budget=60"], {"time_budget": 5.0})
    assert cfg.time_budget == 5.0 and cfg.env_overrides == {"carracing": {"time_budget": 60}}


def test_a_later_config_file_wins_over_an_earlier_files_override(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("controller:\n  max_steps: 300\n")
    cfg = build_config(["quick", str(mine)])
    assert env_config(cfg, lambda name: name == "carracing").controller.max_steps == 300
    assert build_config([str(mine), "quick"]).env_overrides["carracing"]["controller"]["max_steps"] == 1000


def test_resume_compares_each_envs_own_settings():
    old = to_dict(build_config(["quick"], ["env_overrides.carracing.controller.max_steps=500"]))
    old.pop("env_overrides")  # a run folder from before env_overrides
    new = to_dict(build_config(["quick"]))
    def env(e):
        return lambda name: name == e
    assert changed_training_keys(old, new, [env("breakout")]) == []  # breakout trains as before
    assert changed_training_keys(old, new, [env("breakout"), env("carracing")]) == ["controller.max_steps",
                                                                                 "controller.rollouts"]
    assert changed_training_keys(old, new, [env("pong")]) == ["controller.max_rewards", "controller.max_steps"]


@pytest.mark.parametrize("item, needle", [
    ("seed=4294967296", "'seed' must be 0 to 4,294,967,295"),
    ("controller.min_rel_step=.nan", "'controller.min_rel_step' must be a finite number"),
    ("controller.sigma0=1.0e+308", "'controller.sigma0' must be"),
    ("controller.sigma0=0", "'controller.sigma0' must be"),
    ("dream.temperature=.inf", "'dream.temperature' must be a finite number"),
    ("collect.rollouts=1000000000", "'collect.rollouts' must be 1 to 1,000,000"),
    ("vae.z_dim=100000000", "'vae.z_dim' must be 1 to 4,096"),
    ("mdnrnn.hidden=0", "'mdnrnn.hidden' must be 1 to"),
    ("controller.max_rewards=-1", "'controller.max_rewards' must be 0 to"),
    ("max_env_steps=-5", "'max_env_steps' must be 0 to"),
    ("env_overrides.pong.controller.hidden=99999", "env_overrides.pong: config key 'controller.hidden'"),
    # each key within its range, together far past any memory (space-separated: several --set items)
    ("vae.z_dim=4096 mdnrnn.hidden=16384 mdnrnn.gaussians=256", "training M would need about 1,078 GiB"),
    ("mdnrnn.seq_len=100000 mdnrnn.batch_size=65536", "training M would need"),
    ("vae.batch_size=65536", "training V would need"),
    ("controller.hidden=4096 mdnrnn.hidden=16384 controller.pop_size=1000", "training C would need"),
    ("env_overrides.pong.vae.z_dim=4096 env_overrides.pong.mdnrnn.gaussians=256",
     "env_overrides.pong: training M would need"),
])
def test_out_of_range_values_are_one_config_error(item, needle):
    with pytest.raises(ConfigError) as exc:
        build_config(["quick"], item.split())
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("sets", [[], ["vae.z_dim=1", "mdnrnn.hidden=3", "mdnrnn.gaussians=1"],
                                  ["controller.hidden=7", "controller.dz=true", "controller.prev_actions=2"],
                                  ["controller.use_h=false"]])
def test_the_size_check_counts_the_models_parameters(sets):
    from worldmodels.agent import Agent
    from worldmodels.config import model_sizes
    from worldmodels.envs import probe_spec
    cfg = build_config(["quick"], sets)
    spec = probe_spec("ALE/Pong-v5")
    agent = Agent.build_for(spec, cfg.vae.z_dim, cfg.mdnrnn.hidden, cfg.mdnrnn.gaussians, cfg.controller)
    counts = {"V": sum(p.numel() for p in agent.vae.parameters()),
              "M": sum(p.numel() for p in agent.mdnrnn.parameters()), "C": agent.controller.n_params}
    assert model_sizes(cfg, spec.action_dim) == counts


def test_a_config_too_large_for_memory_is_refused_before_any_work(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("wm-train", "--config", "smoke", "--envs", "pong", "--set", "vae.z_dim=4096", "--set",
               "mdnrnn.hidden=16384", "--set", "mdnrnn.gaussians=256", "--out", out, check=2)
    assert proc.stderr.strip().count("\n") == 0 and "training M would need" in proc.stderr
    assert not out.exists()


def test_every_numeric_key_has_a_range():
    from worldmodels.config import RANGES, TrainConfig, flatten
    numeric = {k for k, v in flatten(to_dict(TrainConfig())).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("env_overrides.")}
    assert numeric <= set(RANGES), sorted(numeric - set(RANGES))


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    f = tmp_path / "lr.yaml"
    f.write_text("vae:\n  lr: 1e-4\nmdnrnn:\n  lr: 3E-3\n")
    cfg = build_config([str(f)])
    assert (cfg.vae.lr, cfg.mdnrnn.lr) == (1e-4, 3e-3)
    f.write_text("vae:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="vae.lr"):
        build_config([str(f)])
