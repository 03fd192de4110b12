"""Bad input: exit status 2, one line on stderr naming the problem, no traceback."""
import pytest

BAD = [
    (["wm-train", "--envs", "nosuchenv"], "unknown env 'nosuchenv'"),
    (["wm-train", "--max-gens", "-3"], "--max-gens"),
    (["wm-train", "--max-gens", "many"], "--max-gens"),
    (["wm-train", "--set", "vae.nope=1"], "unknown config key 'vae.nope'"),
    (["wm-train", "--set", "controller.pop_size=big"], "controller.pop_size"),
    (["wm-train", "--config", "nosuchconfig"], "nosuchconfig"),
    (["wm-train", "--stages", "collect,dance"], "dance"),
    (["wm-train", "--time-budget", "0"], "--time-budget"),
    (["wm-train", "--envs", "CartPole-v1"], "no image observation"),
    (["wm-train", "--bogus-flag"], "unrecognized arguments"),
    (["wm-play", "--env", "pong", "--ckpt", "/nonexistent/best.pt"], "checkpoint not found"),
    (["wm-play", "--env", "nosuchenv", "--ckpt", "x.pt"], "unknown env"),
    (["wm-report", "/nonexistent/run"], "no such folder"),
]


@pytest.mark.parametrize("argv, needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, argv, needle):
    args = list(argv)
    if args[0] == "wm-train":
        args += ["--out", tmp_path / "run"]
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr
    if args[0] == "wm-train":
        assert not (tmp_path / "run").exists()  # nothing written for bad input


def test_play_refuses_a_checkpoint_of_another_env_and_a_corrupt_one(cli, tmp_path):
    from test_checkpoint import make_bundle

    _, _, path = make_bundle(tmp_path)  # a CarRacing agent
    proc = cli("wm-play", "--env", "pong", "--ckpt", path, "--json")
    assert proc.returncode == 2 and "is an agent for CarRacing-v3, not ALE/Pong-v5" in proc.stderr
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    proc = cli("wm-play", "--env", "carracing", "--ckpt", broken, "--json")
    assert proc.returncode == 2 and "corrupt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_report_on_a_folder_without_a_run(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    proc = cli("wm-report", tmp_path)
    assert proc.returncode == 2 and "no run" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_out_that_is_a_file(cli, tmp_path):
    target = tmp_path / "file"
    target.write_text("precious")
    proc = cli("wm-train", "--envs", "pong", "--out", target)
    assert proc.returncode == 2 and "is a file" in proc.stderr
    assert target.read_text() == "precious"


def test_out_the_filesystem_refuses_to_look_at(cli, tmp_path):
    # a name too long to stat (as a folder this user may not read: an OSError, not a traceback)
    proc = cli("wm-train", "--envs", "pong", "--out", tmp_path / ("x" * 300))
    assert proc.returncode == 2 and "File name too long" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["wm-play", "--env", "pong", "--ckpt", "x.pt", "--seed", "-1"], "--seed: must be >= 0"),
    (["wm-play", "--env", "pong", "--ckpt", "x.pt", "--fps", "nan"], "--fps must be a number > 0"),
    (["wm-train", "--envs", "pong", "--seed", "-1"], "--seed: must be >= 0"),
    (["wm-train", "--envs", "pong", "--set", "seed=-1"], "'seed' must be 0 to"),
])
def test_negative_seeds_and_a_nan_fps_are_one_error_line(cli, tmp_path, args, message):
    proc = cli(*args, "--out", tmp_path / "run") if args[0] == "wm-train" else cli(*args)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_play_on_a_file_that_is_no_checkpoint_says_it_is_corrupt(cli, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    proc = cli("wm-play", "--env", "pong", "--ckpt", bad)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "refused" not in proc.stderr


def test_play_refuses_a_malicious_pickle_and_runs_nothing(cli, tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    script = (
        "import os, torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'format': 'worldmodels-agent', 'x': Evil()}}, '{evil}')\n"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", script], check=True)
    proc = cli("wm-play", "--env", "carracing", "--ckpt", evil, "--json")
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_the_entry_points_parse_their_arguments_before_importing_torch():
    # Ctrl-C while torch is being imported (~2 s) would escape the "interrupted" guard.
    import subprocess
    import sys

    code = ("import sys\nfrom worldmodels.cli import play_main, report_main, train_main\n"
            "for main, argv in ((play_main, ['--env', 'pong']), (train_main, ['--envs'])):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "no torch", out.stdout + out.stderr


@pytest.mark.parametrize("tool", ["wm-train", "wm-report", "wm-play"])
def test_version(cli, tool):
    from worldmodels import __version__

    proc = cli(tool, "--version", check=0)
    assert proc.stdout.strip() == f"{tool} {__version__}"


def test_print_config_shows_the_resolved_config_and_writes_nothing(cli, tmp_path):
    import yaml

    out = tmp_path / "run"
    proc = cli("wm-train", "--config", "quick", "--set", "controller.max_rewards=5", "--max-gens", "7",
               "--envs", "pong", "--out", out, "--print-config", check=0)
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["max_gens"] == 7 and cfg["envs"] == ["pong"] and cfg["controller"]["max_rewards"] == 5
    assert cfg["controller"]["slots"] == 64 and cfg["env_overrides"]["pong"]["max_env_steps"] == 2_400_000
    assert proc.stdout.startswith("# recipe: --config quick")
    assert not out.exists()
    bad = cli("wm-train", "--set", "controller.max_rewards=-1", "--print-config")
    assert bad.returncode == 2 and "controller.max_rewards" in bad.stderr


def test_with_no_config_the_machines_recipe_is_named_and_used(cli, tmp_path):
    import torch
    import yaml

    from worldmodels.config import build_config, to_dict

    name = "gpu" if torch.cuda.is_available() else "laptop"
    proc = cli("wm-train", "--envs", "pong", "--max-gens", "7", "--out", tmp_path / "run", "--print-config")
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"# recipe: {name} (") and "to choose" in first
    expected = to_dict(build_config([] if name == "laptop" else ["gpu"], [], {"envs": ["pong"], "max_gens": 7}))
    assert yaml.safe_load(proc.stdout) == expected


def test_a_resume_keeps_the_recipe_its_run_yaml_records(cli, tmp_path):
    import yaml

    from worldmodels.config import build_config
    from worldmodels.curriculum import Run

    out = tmp_path / "run"
    cfg = build_config(["gpu"], [], {"envs": ["pong"], "device": "cpu"})
    Run(cfg, out, ["wm-train"], recipe={"name": "gpu", "configs": ["gpu"]}).close()  # writes run.yaml
    assert yaml.safe_load((out / "run.yaml").read_text())["recipe"] == {"name": "gpu", "configs": ["gpu"]}
    proc = cli("wm-train", "--envs", "pong", "--out", out, "--print-config")
    assert proc.stdout.startswith(f"# recipe: gpu (recorded in {out / 'run.yaml'})")
    assert yaml.safe_load(proc.stdout)["controller"]["pop_size"] == 32  # gpu's, on a CPU machine
    proc = cli("wm-train", "--envs", "pong", "--out", out, "--restart", "--print-config")
    assert not proc.stdout.startswith("# recipe: gpu")  # --restart starts from the machine's recipe


def test_a_resume_with_only_out_keeps_what_run_yaml_records_but_the_machine(cli, tmp_path):
    import yaml

    from worldmodels.config import build_config
    from worldmodels.curriculum import Run

    out = tmp_path / "run"
    cfg = build_config([], ["controller.pop_size=6"], {"envs": ["pong"], "seed": 3, "max_gens": 7,
                                                       "device": "cpu", "workers": 5, "live": True})
    Run(cfg, out, ["wm-train"], recipe={"name": "laptop", "configs": []}).close()  # writes run.yaml
    resumed = yaml.safe_load(cli("wm-train", "--out", out, "--print-config").stdout)
    assert (resumed["envs"], resumed["seed"], resumed["max_gens"]) == (["pong"], 3, 7)  # not all, 0, the recipe's
    assert resumed["controller"]["pop_size"] == 6
    assert (resumed["device"], resumed["workers"], resumed["live"]) == ("auto", 0, False)  # this machine's
    extended = yaml.safe_load(cli("wm-train", "--out", out, "--max-gens", "9", "--print-config").stdout)
    assert (extended["envs"], extended["max_gens"]) == (["pong"], 9)  # a flag still wins
    fresh = yaml.safe_load(cli("wm-train", "--out", out, "--restart", "--print-config").stdout)
    assert fresh["envs"] != ["pong"] and fresh["seed"] == 0


def test_help_groups_the_options_and_lists_the_bundled_configs(cli):
    out = cli("wm-train", "--help").stdout
    for group in ("what to train:", "budget:", "hardware:", "output:", "viewing:", "examples:"):
        assert group in out, group
    for name in ("laptop", "gpu", "smoke", "paper", "quick", "default"):
        assert f"\n  {name} " in out, name
    assert "(default: from the recipe)" in " ".join(out.split())


def test_play_and_report_help_group_the_options_show_defaults_and_end_with_examples(cli):
    play = " ".join(cli("wm-play", "--help", check=0).stdout.split())
    for group in ("what to play:", "output:", "viewing:", "hardware:", "examples:"):
        assert group in play, group
    for default in ("episodes to play (default 1)", "(default 60;", "(default auto)", "(default 1.15)"):
        assert default in play, default
    report = cli("wm-report", "--help", check=0).stdout
    assert "examples:" in report and "wm-report checkpoints/" in report


def test_log_records_are_timestamped_console_lines(capsys):
    import logging
    import re

    from worldmodels.cli import _setup_logging

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        _setup_logging()
        _setup_logging()  # once is enough: no second handler
        logging.getLogger("worldmodels.test").warning("a warning from a library module")
        lines = [line for line in capsys.readouterr().err.splitlines() if "a warning from" in line]
    finally:
        root.handlers[:], root.level = before, level
    assert len(lines) == 1 and re.fullmatch(r"\d\d:\d\d:\d\d a warning from a library module", lines[0]), lines
