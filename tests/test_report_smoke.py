"""wm-report over two real smoke runs of Pong (seeds 0 and 1): the report's numbers are those of
the runs' own curriculum_results.json, the figures exist as PNG and PDF, other recipes are refused.

The evaluations play 120 steps (smoke's 50 end before Pong's first point), so the scores are not
all zero; both runs get the same setting, so they stay runs of one recipe.
"""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import yaml

from worldmodels.report import stats

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("report-smoke")
    dirs = []
    for seed in (0, 1):
        out = root / f"seed{seed}"
        run_cli("wm-train", "--config", "smoke", "--envs", "pong", "--seed", seed, "--set", "eval.max_steps=120",
                "--out", out, check=0)
        dirs.append(out)
    return root, dirs


def _results(d):
    return json.loads((d / "curriculum_results.json").read_text())["envs"][0]


def test_report_over_two_smoke_runs_has_the_runs_numbers(two_runs, cli):
    root, dirs = two_runs
    out = root / "paper"
    proc = cli("wm-report", *dirs, "--out", out, "--json", check=0)
    finals = [_results(d)["final_eval"] for d in dirs]
    means = [f["mean"] for f in finals]
    scores = np.array([f["scores"] for f in finals])
    assert scores.shape == (2, 2)  # smoke: two final-evaluation episodes per run
    with (out / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["id"] == "ALE/Pong-v5" and row["runs"] == "2" and row["seeds"] == "0;1"
    assert float(row["final_mean"]) == pytest.approx(np.mean(means))
    assert float(row["final_std"]) == pytest.approx(np.std(means, ddof=1))
    assert float(row["iqm"]) == pytest.approx(np.sort(scores.ravel())[1:3].mean())  # 4 episodes: 1 cut each end
    lo, hi = stats.stratified_bootstrap_ci(scores)
    assert (float(row["iqm_ci_low"]), float(row["iqm_ci_high"])) == pytest.approx((lo, hi))
    assert scores.min() <= lo <= float(row["iqm"]) <= hi <= scores.max()
    assert int(row["episodes"]) == 4
    assert float(row["env_steps_mean"]) == pytest.approx(np.mean([_results(d)["env_steps"] for d in dirs]))
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["envs"][0]["final_mean"] == pytest.approx(np.mean(means))
    for name in ("curves.png", "curves.pdf", "results.tex", "report.md", "runs.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    for d in dirs:
        assert not (d / "report" / "runs.csv").exists()  # nothing written into the runs


def test_one_smoke_run_keeps_its_report_folder_and_the_x_option(two_runs, cli):
    _, dirs = two_runs
    rep = dirs[0] / "report"
    shots = {}
    for axis in ("steps", "gens", "wall"):
        proc = cli("wm-report", dirs[0], "--x", axis, check=0)
        assert "ALE/Pong-v5" in proc.stdout
        shots[axis] = (rep / "curves.png").read_bytes()
        assert (rep / "curves.pdf").read_bytes()[:5] == b"%PDF-"
        assert (rep / "pong_fitness.png").is_file() and (rep / "summary.csv").is_file()
    assert len(set(shots.values())) == 3  # each axis draws another figure
    with (rep / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["final_mean"]) == _results(dirs[0])["final_eval"]["mean"]


def test_smoke_runs_of_another_recipe_are_refused(two_runs, cli, tmp_path):
    _, dirs = two_runs
    other = tmp_path / "other"
    other.mkdir()
    for name in ("run.yaml", "curriculum_results.json"):
        shutil.copy(dirs[1] / name, other / name)
    run = yaml.safe_load((other / "run.yaml").read_text())
    run["config"]["vae"]["z_dim"] = 16
    (other / "run.yaml").write_text(yaml.safe_dump(run))
    proc = cli("wm-report", dirs[0], other, "--out", tmp_path / "paper")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("wm-report: error: not runs of one recipe") and "vae.z_dim" in line
    assert not (tmp_path / "paper").exists()
