"""The run folder has one owner: every path a trainer writes is named in worldmodels/runfolder.py,
and every reader (the report, the live view, the scripts) finds files through it."""
import json
import re
from pathlib import Path

import yaml

import worldmodels
from worldmodels.names import slug
from worldmodels.report import load_run, write_report
from worldmodels.runfolder import EnvFolder, RunFolder

ROOT = Path(worldmodels.__file__).parent
FILE_NAMES = re.compile(r'"(best\.pt|vae\.pt|mdnrnn\.pt|manifest\.json|metrics\.csv|vae_metrics\.csv|'
                        r'mdnrnn_metrics\.csv|run\.yaml|curriculum_results\.json|vae_samples\.npz|state\.pkl|'
                        r'wm-train\.lock)"|/ "(eval|data|encoded|controller|report|tensorboard)"')


def test_no_module_but_runfolder_names_a_run_folder_file():
    found = []
    for path in list(ROOT.rglob("*.py")) + list((ROOT.parent / "scripts").glob("*.py")):
        if path.name == "runfolder.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if FILE_NAMES.search(line) and not line.lstrip().startswith("#"):
                found.append(f"{path.relative_to(ROOT.parent)}:{n}: {line.strip()}")
    assert found == []


def test_layout_of_an_env_folder(tmp_path):
    env = RunFolder(tmp_path).env("ALE/Pong-v5")
    assert env.path == tmp_path / "pong" and env.best == tmp_path / "pong" / "best.pt"
    assert env.snapshot(7).name == "gen_0007.json" and env.metrics("vae").name == "vae_metrics.csv"
    env.snapshot(3).parent.mkdir(parents=True)
    for gen in (12, 3):
        env.snapshot(gen).write_text("{}")
    (env.eval_dir / "gen_x.json").write_text("{}")  # not a snapshot
    assert [g for g, _ in env.snapshots()] == [3, 12]
    assert env.read_manifest() == {"records": [], "wall_s": {}} and not env.has_records()


def test_report_finds_an_env_by_the_trainers_folder_name(tmp_path):
    """An id without an alias (ALE/Pong-v4): the trainer writes ale_pong-v4/; the report used to
    look for pong/ and report the env without its files."""
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    env_id = "ALE/Pong-v4"
    run.run_yaml.write_text(yaml.safe_dump({"config": {"envs": [env_id]}, "command": ["wm-train"]}))
    env = run.env(env_id)
    assert env.path.name == slug(env_id) == "ale_pong-v4"
    env.path.mkdir()
    env.metrics().write_text("gen,mean_fitness,best_fitness,env_steps\n0,-20,-19,1000\n1,-19,-18,2000\n")
    run.results.write_text(json.dumps({"version": 1, "envs": [{"id": env_id, "status": "running"}]}))
    loaded = load_run(run.path)
    assert [e["slug"] for e in loaded["envs"]] == ["ale_pong-v4"] and loaded["derived"] == []
    write_report(run.path)
    assert (run.report_dir / "ale_pong-v4_fitness.png").is_file()


def test_an_unlisted_env_folder_takes_id_and_target_from_run_yaml(tmp_path):
    run = RunFolder(tmp_path)
    run.run_yaml.write_text(yaml.safe_dump({"config": {"envs": ["all"]}}))
    EnvFolder(tmp_path / "breakout").path.mkdir()
    RunFolder(tmp_path).env("ALE/Breakout-v5").metrics().write_text("gen,env_steps\n0,10\n")
    (entry,) = load_run(tmp_path)["envs"]
    assert entry["id"] == "ALE/Breakout-v5" and entry["target"] == 50.0 and entry["generations"] == 1


def test_trainer_paths_are_what_wm_train_wrote(tmp_path):
    run = RunFolder(tmp_path)
    run.run_yaml.write_text("config: {}\n")
    run.results.write_text("{}")
    (tmp_path / ".run.yaml.abc.tmp").write_text("")
    run.report_dir.mkdir()
    run.env("ALE/Pong-v5").path.mkdir()
    run.env("ALE/Pong-v5").manifest.write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "plots").mkdir()
    assert [p.name for p in run.trainer_paths()] == [".run.yaml.abc.tmp", "curriculum_results.json", "pong",
                                                    "report", "run.yaml"]


def test_restart_removes_the_run_and_keeps_the_users_files(tmp_path):
    from worldmodels.config import build_config
    from worldmodels.curriculum import Run

    cfg = build_config(["smoke"], [], {"envs": ["pong"], "workers": 1})
    out = RunFolder(tmp_path / "run")
    out.path.mkdir()
    out.run_yaml.write_text(yaml.safe_dump({"config": {"envs": ["pong"]}}))
    out.env("ALE/Pong-v5").path.mkdir()
    out.env("ALE/Pong-v5").best.write_bytes(b"old agent")
    (out.path / "notes.txt").write_text("mine")
    logs = []
    Run(cfg, out.path, ["test"], restart=True, log_fn=logs.append).close()
    assert not out.env("ALE/Pong-v5").path.exists() and (out.path / "notes.txt").read_text() == "mine"
    assert yaml.safe_load(out.run_yaml.read_text())["config"]["seed"] == cfg.seed
    assert any("kept what wm-train did not write: notes.txt" in m for m in logs)
