"""End to end on the real environments, tiny: every stage, every file of the contract."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ENVS = {"pong": "ALE/Pong-v5", "breakout": "ALE/Breakout-v5", "carracing": "CarRacing-v3"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = run_cli("wm-train", "--config", "smoke", "--out", out, "--json", check=0)
    return out, proc


def test_smoke_curriculum_writes_every_file_of_the_contract(smoke_run):
    out, proc = smoke_run
    results = json.loads(proc.stdout.strip().splitlines()[-1])  # --json: one line, last
    assert results == json.loads((out / "curriculum_results.json").read_text())
    assert [e["id"] for e in results["envs"]] == list(ENVS.values())
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["config"]["max_gens"] == 2 and "torch" in run["versions"] and run["command"][0] == "wm-train"
    assert run["recipe"] == {"name": "smoke", "configs": ["smoke"]}
    # the banner, then the closing lines, on stderr (the table on stdout, before --json's line)
    err = proc.stderr
    assert "| recipe: --config smoke" in err and "envs, in order:" in err
    assert all(f"{i}. {env_id}" in err for i, env_id in enumerate(ENVS.values(), 1))
    assert err.index("envs, in order:") < err.index("pong collect") < err.index("\nnext:")
    assert f"wm-report {out}" in err and f"wm-play --ckpt {out / 'carracing' / 'best.pt'}" in err
    assert "below target" in proc.stdout or "solved" in proc.stdout
    assert not list(out.glob("*/best.mp4"))  # smoke records no video
    for slug, env_id in ENVS.items():
        entry = next(e for e in results["envs"] if e["id"] == env_id)
        assert entry["status"] in ("solved", "failed") and entry["generations"] == 2
        assert entry["final_eval"]["episodes"] == 2 and entry["env_steps"] > 0
        assert set(entry["wall_s"]) >= {"collect", "vae", "encode", "mdnrnn", "controller", "final_eval"}
        env_dir = out / slug
        bundle = torch.load(env_dir / "best.pt", weights_only=True)
        assert bundle["env"]["id"] == env_id and bundle["eval"]["final"]["mean"] == entry["final_eval"]["mean"]
        rows = list(csv.DictReader((env_dir / "metrics.csv").open()))
        assert [int(r["gen"]) for r in rows] == [0, 1]
        for snap in ("gen_0000.json", "gen_0001.json"):
            data = json.loads((env_dir / "eval" / snap).read_text())
            assert {"gen", "mean", "std", "min", "max", "scores", "episodes", "env_steps", "wall_s",
                    "best_so_far"} <= set(data)
            assert len(data["scores"]) == data["episodes"] == 2
        with np.load(sorted((env_dir / "data" / "round0").glob("ep_*.npz"))[0]) as ep:
            assert ep["obs"].dtype == np.uint8 and ep["obs"].shape[1:] == (64, 64, 3)
            assert len(ep["obs"]) == len(ep["actions"]) + 1 == len(ep["terminated"]) + 1
            assert ep["truncated"].dtype == bool
    report = out / "report"
    for name in ("summary.csv", "results.tex", "report.md", "carracing_fitness.png", "pong_recon.png"):
        assert (report / name).stat().st_size > 0
    assert "CarRacing-v3" in proc.stdout  # the results table


def test_play_json_reproduces_the_final_eval(smoke_run, cli):
    out, _ = smoke_run
    results = json.loads((out / "curriculum_results.json").read_text())
    final = next(e for e in results["envs"] if e["id"] == "CarRacing-v3")["final_eval"]
    proc = cli("wm-play", "--env", "carracing", "--ckpt", out / "carracing" / "best.pt", "--episodes", "2",
               "--seed", final["seed_start"], "--max-steps", "50", "--json", "--headless", check=0)
    scored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(scored) == {"env", "episodes", "mean", "std", "scores"} and scored["env"] == "CarRacing-v3"
    assert scored["scores"] == pytest.approx(final["scores"], abs=1e-9)


def test_report_command_on_the_smoke_run(smoke_run, cli):
    out, _ = smoke_run
    proc = cli("wm-report", out, "--json", check=0)
    assert "ALE/Breakout-v5" in proc.stdout
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["envs"] == json.loads((out / "curriculum_results.json").read_text())["envs"]
    summary = list(csv.DictReader((out / "report" / "summary.csv").open()))
    assert len(summary) == 3


def test_rerun_of_a_finished_run_trains_nothing_and_larger_max_gens_extends(smoke_run, cli, tmp_path):
    out, _ = smoke_run
    before = json.loads((out / "curriculum_results.json").read_text())["envs"][0]
    proc = cli("wm-train", "--config", "smoke", "--envs", "pong", "--out", out, check=0)
    assert "already finished, skipping" in proc.stderr and " gen " not in proc.stderr
    # nothing new was trained: best.pt's final evaluation and why training ended are kept, not redone
    assert "final evaluation" not in proc.stderr
    after = json.loads((out / "curriculum_results.json").read_text())["envs"][0]
    assert before["final_eval"] is not None and before["stop_reason"] is not None
    assert {k: after[k] for k in ("final_eval", "stop_reason", "status")} == \
        {k: before[k] for k in ("final_eval", "stop_reason", "status")}
    # a larger step budget alone: max_gens still ends it, and both the banner and the log say so
    more = cli("wm-train", "--config", "smoke", "--envs", "pong", "--max-env-steps", "900000", "--out", out, check=0)
    assert "nothing left to train" in more.stderr and " gen " not in more.stderr
    assert "max_gens (2) already reached; a larger --max-gens trains on" in more.stderr
    changed = cli("wm-train", "--config", "smoke", "--set", "vae.z_dim=4", "--out", out)
    assert changed.returncode == 2 and "vae.z_dim" in changed.stderr
    extended = cli("wm-train", "--config", "smoke", "--envs", "pong", "--max-gens", "3", "--out", out, check=0)
    assert "resuming pong at generation 2" in extended.stderr
    rows = list(csv.DictReader((out / "pong" / "metrics.csv").open()))
    assert [int(r["gen"]) for r in rows] == [0, 1, 2]


def _children(pid):
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False


KILL_ARGS = ["--config", "smoke", "--envs", "carracing", "--max-gens", "5", "--eval-every", "2", "--workers", "2",
             "--set", "collect.rollouts=8", "--set", "vae.epochs=3", "--set", "vae.batch_size=16"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("clean") / "run"
    run_cli("wm-train", *KILL_ARGS, "--out", out, check=0)
    return out


# wm-train with a barrier: at generation 1's third batch of actions (its episodes under way, after
# generation 0's row and snapshot) it touches argv[1] and holds there until it is killed.
HOLD_MID_GENERATION = """
import sys, time
from pathlib import Path
from worldmodels.engine import rollout
marker, env = Path(sys.argv[1]), Path(sys.argv[2])
real_run = rollout.LaneEngine.run
def run(engine, episodes, policy, *args, **kwargs):
    metrics = env / "metrics.csv"
    rows = len(metrics.read_text().splitlines()) if metrics.exists() else 0
    if rows == 2 and (env / "eval" / "gen_0000.json").exists() and not marker.exists():
        act, calls = policy.act, []
        def act_then_hold(obs, lanes):
            calls.append(1)
            if len(calls) == 3:
                marker.touch()
                time.sleep(3600)
            return act(obs, lanes)
        policy.act = act_then_hold
    return real_run(engine, episodes, policy, *args, **kwargs)
rollout.LaneEngine.run = run
from worldmodels.cli import train_main
sys.argv = ["wm-train", *sys.argv[3:]]
raise SystemExit(train_main())
"""


def _kill_when(out, ready, hold: str | None = None):
    """wm-train on out, killed with -9 once ready(); hold: a barrier program (argv: its marker,
    the env folder, wm-train's args) that holds the trainer where the kill must land."""
    args = [*KILL_ARGS, "--out", str(out)]
    cmd = ([sys.executable, "-c", hold, str(out.parent / "held"), str(out / "carracing"), *args] if hold
           else [sys.executable, "-m", "worldmodels.cli", "wm-train", *args])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not ready():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    children = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):  # workers notice the master is gone and exit
        if not any(_alive(c) for c in children):
            break
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), "orphan workers left behind"
    return children


def _lines(path):
    return len(path.read_text().strip().splitlines()) if path.exists() else 0


KILL_POINTS = {
    "collect": lambda env: len(list((env / "data" / "round0").glob("ep_*.npz"))) >= 2,
    "vae": lambda env: (env / "vae_state.pt").exists(),
    "between_generations": lambda env: _lines(env / "metrics.csv") >= 3,  # header + 2 generations
    # held by HOLD_MID_GENERATION's barrier inside generation 1, not caught by polling
    "mid_generation": lambda env: (env.parent.parent / "held").exists(),
}
HOLDS = {"mid_generation": HOLD_MID_GENERATION}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_minus_9_then_resume_matches_an_uninterrupted_run(point, tmp_path, cli, clean_run):
    out = tmp_path / "killed"
    env = out / "carracing"
    children = _kill_when(out, lambda: KILL_POINTS[point](env), HOLDS.get(point))
    if point == "mid_generation":
        assert _lines(env / "metrics.csv") == 2  # killed inside generation 1: only generation 0's row
    if point != "collect":
        assert children, "env workers should have been running"
    resumed = cli("wm-train", *KILL_ARGS, "--out", out, check=0)
    if point in ("between_generations", "mid_generation"):
        assert "resuming carracing at generation" in resumed.stderr
        assert "round 0 collect already finished, skipping" in resumed.stderr

    def table(run):
        rows = list(csv.DictReader((run / "carracing" / "metrics.csv").open()))
        return [(r["gen"], r["best_fitness"], r["mean_fitness"], r["sigma"], r["env_steps"]) for r in rows]

    assert [g for g, *_ in table(out)] == ["0", "1", "2", "3", "4"]  # no generation twice
    assert table(out) == table(clean_run)
    for snap in ("gen_0000.json", "gen_0002.json", "gen_0004.json"):
        a = json.loads((out / "carracing" / "eval" / snap).read_text())
        b = json.loads((clean_run / "carracing" / "eval" / snap).read_text())
        # Box2D's contact order can differ in the last bit between a fresh env and a reused one
        assert a["scores"] == pytest.approx(b["scores"], rel=1e-12, abs=1e-12)
    best_a = torch.load(out / "carracing" / "best.pt", weights_only=True)["controller"]["params"]
    best_b = torch.load(clean_run / "carracing" / "best.pt", weights_only=True)["controller"]["params"]
    assert torch.equal(best_a, best_b)


def test_stages_subset_and_from(tmp_path, cli, smoke_run):
    out, _ = smoke_run
    new = tmp_path / "again"
    proc = cli("wm-train", "--config", "smoke", "--envs", "pong", "--from", out, "--out", new, check=0)
    assert "reusing collect, vae, encode, mdnrnn" in proc.stderr
    assert not (new / "pong" / "vae_state.pt").exists()  # V was not retrained
    assert (new / "pong" / "best.pt").exists()
    # env steps start from the reused data's, not from the source's controller generations
    source = json.loads((out / "pong" / "manifest.json").read_text())
    collected = next(r["env_steps"] for r in source["records"] if r["stage"] == "collect")
    first = next(csv.DictReader((new / "pong" / "metrics.csv").open()))
    assert int(first["env_steps"]) == collected + 4 * 1 * 50 < source["env_steps"]
    # a --from run that lacks one of the envs is refused before any env is trained
    lacking = cli("wm-train", "--config", "smoke", "--envs", "pong,breakout", "--from", new, "--out", tmp_path / "two")
    assert lacking.returncode == 2 and "no trained ALE/Breakout-v5" in lacking.stderr
    assert not (tmp_path / "two" / "pong").exists()
    # V and M trained with other settings are not silently reused in place of the ones asked for
    other = cli("wm-train", "--config", "smoke", "--envs", "pong", "--set", "vae.z_dim=4", "--from", out,
                "--out", tmp_path / "other")
    assert other.returncode == 2 and "other settings (vae.z_dim)" in other.stderr
    assert not (tmp_path / "other" / "pong").exists()
    only = cli("wm-train", "--config", "smoke", "--envs", "pong", "--stages", "vae", "--out", tmp_path / "only")
    assert only.returncode == 2 and "needs collected rollouts" in only.stderr


def test_each_env_ends_with_a_video_of_best_pt(tmp_path, cli):
    import re

    from test_play import count_frames, video_codec

    out = tmp_path / "run"
    proc = cli("wm-train", "--config", "smoke", "--envs", "pong", "--set", "eval.video_steps=20", "--out", out,
               check=0)
    video = out / "pong" / "best.mp4"
    assert count_frames(video) == 20 and video_codec(video) == "h264"  # one frame a step, capped
    assert re.search(r"pong: video of best\.pt in .*best\.mp4", proc.stderr)
    assert not list((out / "pong").glob(".*tmp*"))  # written whole, then moved into place
    made = video.stat().st_mtime_ns
    cli("wm-train", "--config", "smoke", "--envs", "pong", "--set", "eval.video_steps=20", "--out", out, check=0)
    assert video.stat().st_mtime_ns == made  # best.pt unchanged: the video is kept
