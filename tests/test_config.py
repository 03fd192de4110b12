import pytest

from worldmodels.config import (TrainConfig, build_config, bundled_configs, changed_training_keys, parse_set,
                                to_dict)
from worldmodels.errors import ConfigError


def test_defaults_match_the_contract():
    cfg = TrainConfig()
    assert cfg.envs == ["all"] and cfg.max_gens == 200 and cfg.eval_every == 10 and cfg.patience == 30
    assert cfg.vae.z_dim == 32 and cfg.mdnrnn.hidden == 256 and cfg.mdnrnn.gaussians == 5


def test_bundled_configs_all_validate():
    names = bundled_configs()
    assert {"smoke", "quick", "default", "paper"} <= set(names)
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
