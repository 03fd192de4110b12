"""wm-report over several runs of one recipe, the statistics and the curves, on synthetic run
folders (no training, seconds)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_report import _make_full_run, _write_csv

from worldmodels.errors import UserError
from worldmodels.report import load_runs, plots, read_curves, stats, write_report, write_runs_report

METRICS = ["gen", "best_fitness", "mean_fitness", "std_fitness", "sigma", "env_steps", "steps_per_s", "wall_s"]


def _make_seed_run(run_dir: Path, seed: int, episodes: int = 12, gens: int = 6) -> dict:
    """A finished Pong run of seed `seed`: its own final-evaluation scores and curves."""
    _make_full_run(run_dir)
    rng = np.random.default_rng(seed)
    run = yaml.safe_load((run_dir / "run.yaml").read_text())
    run["config"].update(seed=seed, workers=seed + 1, device="cpu")  # keys that do not change training
    (run_dir / "run.yaml").write_text(yaml.safe_dump(run))
    results = json.loads((run_dir / "curriculum_results.json").read_text())
    scores = [float(s) for s in rng.integers(-21, 22, episodes)]
    pong = results["envs"][0]
    pong["final_eval"] = {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "episodes": episodes,
                          "scores": scores}
    pong["status"] = "solved" if seed == 0 else "failed"
    pong["env_steps"] = 1000 * gens + seed
    (run_dir / "curriculum_results.json").write_text(json.dumps(results))
    rows = [[g, -15.0 + 3 * g + seed + 2, -15.0 + 3 * g + seed, 1.0, 0.1, 1000 * (g + 1) + 7 * seed, 300.0,
             60.0 * (g + 1)] for g in range(gens)]
    _write_csv(run_dir / "pong" / "metrics.csv", METRICS, rows)
    for path in (run_dir / "pong" / "eval").glob("gen_*.json"):  # snapshots of gens 0, 2, 4 within these
        if int(path.stem[4:]) >= gens:
            path.unlink()
    return results


@pytest.fixture
def seed_runs(tmp_path):
    dirs = [tmp_path / f"s{seed}" for seed in range(3)]
    results = [_make_seed_run(d, seed) for seed, d in enumerate(dirs)]
    return dirs, results


def _summary(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- statistics -------------------------------------------------------------------------------
def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)  # 2 cut at each end
    assert stats.iqm([[0, 10], [1, 2]]) == pytest.approx(1.5)  # pooled over runs
    assert stats.iqm([3.0]) == 3.0 and np.isnan(stats.iqm([]))
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=37)
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_bootstrap_resamples_runs_within_each_episode():
    """The interval is that of a plain loop doing rliable's stratified bootstrap with the same draws."""
    s = np.random.default_rng(1).normal(size=(4, 5))
    lo, hi = stats.stratified_bootstrap_ci(s, resamples=300, seed=3)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 4, size=(300, 4, 5))
    iqms = [stats.iqm([[s[draws[b, r, t], t] for t in range(5)] for r in range(4)]) for b in range(300)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(iqms, [2.5, 97.5])))
    assert lo <= stats.iqm(s) <= hi
    assert stats.stratified_bootstrap_ci(s, resamples=300, seed=3) == (lo, hi)  # seeded: reproducible
    assert stats.stratified_bootstrap_ci(np.full((3, 4), 2.0)) == (2.0, 2.0)


# -- the report of several runs ---------------------------------------------------------------
def test_report_over_runs_computes_from_the_runs_files(seed_runs, tmp_path):
    dirs, results = seed_runs
    out = tmp_path / "paper"
    table = write_runs_report(dirs, out)
    finals = [r["envs"][0]["final_eval"] for r in results]
    means = [f["mean"] for f in finals]
    pooled = np.array([f["scores"] for f in finals])
    (pong, custom) = _summary(out / "summary.csv")
    assert pong["id"] == "ALE/Pong-v5" and int(pong["runs"]) == 3 and pong["seeds"] == "0;1;2"
    assert float(pong["final_mean"]) == pytest.approx(np.mean(means))
    assert float(pong["final_std"]) == pytest.approx(np.std(means, ddof=1))
    assert float(pong["final_min"]) == min(means) and float(pong["final_max"]) == max(means)
    ordered = np.sort(pooled.ravel())
    assert float(pong["iqm"]) == pytest.approx(ordered[9:27].mean())  # 36 episodes: 9 cut at each end
    lo, hi = stats.stratified_bootstrap_ci(pooled)
    assert (float(pong["iqm_ci_low"]), float(pong["iqm_ci_high"])) == pytest.approx((lo, hi))
    assert lo < float(pong["iqm"]) < hi
    assert int(pong["episodes"]) == 36 and int(pong["solved"]) == 1
    assert float(pong["env_steps_mean"]) == pytest.approx(np.mean([6000, 6001, 6002]))
    assert custom["final_mean"] == "" and custom["iqm"] == "" and int(custom["runs"]) == 3

    runs = _summary(out / "runs.csv")
    assert [(r["run"], r["seed"], r["id"]) for r in runs][:2] == [(str(dirs[0]), "0", "ALE/Pong-v5"),
                                                                 (str(dirs[0]), "0", "My_Env&Co/Foo#1-v0")]
    assert [float(r["final_mean"]) for r in runs if r["id"] == "ALE/Pong-v5"] == pytest.approx(means)

    tex = (out / "results.tex").read_text()
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    assert f"${np.mean(means):.2f} \\pm {np.std(means, ddof=1):.2f}$ (3)" in tex
    assert f"${float(pong['iqm']):.2f}$ [${lo:.2f}$, ${hi:.2f}$]" in tex and "My\\_Env\\&Co" in tex
    md = (out / "report.md").read_text()
    assert f"| ALE/Pong-v5 | 3 | {np.mean(means):.2f} ± {np.std(means, ddof=1):.2f} (3) |" in md
    assert "](curves.png)" in md and "(curves.pdf)" in md and "stratified bootstrap" in md
    assert "ALE/Pong-v5" in table and f"{np.mean(means):.2f} ± {np.std(means, ddof=1):.2f} (3)" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_runs_report(dirs, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the same files on a rerun
    for d in dirs:  # nothing written into the runs
        assert not (d / "report").exists()


def test_runs_of_different_recipes_are_refused_naming_the_keys(seed_runs, tmp_path):
    dirs, _ = seed_runs
    run = yaml.safe_load((dirs[2] / "run.yaml").read_text())
    run["config"]["vae"] = {"z_dim": 16}
    run["config"]["max_gens"] = 7
    (dirs[2] / "run.yaml").write_text(yaml.safe_dump(run))
    with pytest.raises(UserError) as info:
        load_runs(dirs)
    msg = str(info.value)
    assert "max_gens, vae.z_dim" in msg and "\n" not in msg and "seed" in msg
    assert "workers" not in msg.split("differ in")[1].split("(")[0]  # workers and device differ, and may
    with pytest.raises(UserError, match="given twice"):
        load_runs([dirs[0], dirs[1], dirs[0]])
    (dirs[1] / "run.yaml").unlink()
    with pytest.raises(UserError, match="cannot check that the runs share a recipe"):
        load_runs(dirs[:2])


def test_cli_several_runs(seed_runs, tmp_path, cli):
    dirs, results = seed_runs
    out = tmp_path / "paper"
    proc = cli("wm-report", *dirs, "--out", out, "--x", "gens", "--json", check=0)
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["runs"] == [str(d) for d in dirs]
    assert printed["envs"][0]["final_mean"] == pytest.approx(np.mean([r["envs"][0]["final_eval"]["mean"]
                                                                       for r in results]))
    assert "IQM [95% CI]" in proc.stdout and f"report written to {out}" in proc.stderr
    proc = cli("wm-report", *dirs)
    assert proc.returncode == 2 and "need --out" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    run = yaml.safe_load((dirs[1] / "run.yaml").read_text())
    run["config"]["controller"] = {"pop_size": 3}
    (dirs[1] / "run.yaml").write_text(yaml.safe_dump(run))
    proc = cli("wm-report", *dirs, "--out", tmp_path / "refused")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not runs of one recipe" in proc.stderr and "controller.pop_size" in proc.stderr
    assert not (tmp_path / "refused").exists()
    proc = cli("wm-report", dirs[0], "--x", "hours")
    assert proc.returncode == 2 and "--x" in proc.stderr


# -- curves and plots -------------------------------------------------------------------------
@pytest.mark.parametrize("axis, xs", [("steps", [1000.0, 2000.0, 3000.0]), ("gens", [0.0, 1.0, 2.0]),
                                      ("wall", [60.0, 120.0, 180.0])])
def test_the_x_axis_option_picks_the_column(tmp_path, axis, xs):
    _make_seed_run(tmp_path / "run", 0, gens=3)
    curves = read_curves(tmp_path / "run" / "pong", axis)
    assert curves.axis == axis and curves.mean[0] == xs and curves.end == xs[-1]
    assert [e[0] for e in curves.evals] == [xs[0], xs[2]]  # snapshots at gens 0 and 2, placed on the axis


def test_metrics_without_the_axis_column_fall_back_to_generations(tmp_path):
    env = tmp_path / "pong"
    _write_csv(env / "metrics.csv", ["gen", "best_fitness", "mean_fitness"], [[0, 1.0, 0.5], [1, 2.0, 1.0]])
    curves = read_curves(env, "steps")
    assert curves.axis == "gens" and curves.mean[0] == [0.0, 1.0]
    assert any("generations on the x axis" in n for n in curves.notes)


def _panel_axes(panel: plots.Panel, axis: str):
    fig = plots.new_figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    plots.draw_panel(ax, panel, axis)
    return ax


def test_y_range_shows_the_curve_and_the_target_only_when_near(tmp_path):
    _make_seed_run(tmp_path / "run", 0, gens=3)  # curves and evals from -21 to +1
    curves = read_curves(tmp_path / "run" / "pong", "steps")
    far = _panel_axes(plots.Panel("pong", [curves], [(-10.0, 1.0)], target=18.0), "steps")
    lo, hi = far.get_ylim()
    assert 1 < hi < 10 and -30 < lo < -21  # fits the data, not stretched to 18
    assert not [ln for ln in far.get_lines() if ln.get_linestyle() == "--"]
    assert any("target 18 above the range" in t.get_text() for t in far.texts)
    near = _panel_axes(plots.Panel("pong", [curves], [(-10.0, 1.0)], target=5.0), "steps")  # just above
    assert near.get_ylim()[1] > 5 and [ln for ln in near.get_lines() if ln.get_linestyle() == "--"]


def test_the_final_score_is_marked_at_the_end_of_training(tmp_path):
    _make_seed_run(tmp_path / "run", 0, gens=3)
    curves = read_curves(tmp_path / "run" / "pong", "gens")
    ax = _panel_axes(plots.Panel("pong", [curves], [(-4.25, 1.5)], target=18.0), "gens")
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [2.0] and list(stars[0].get_ydata()) == [-4.25]
    assert "final eval -4.25 ± 1.50" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_bands_over_runs_span_the_runs(tmp_path):
    runs = [read_curves(d / "pong", "gens") for d in
            [(_make_seed_run(tmp_path / f"s{s}", s, gens=4), tmp_path / f"s{s}")[1] for s in range(3)]]
    x, mean, lo, hi = plots._band([c.mean for c in runs])
    assert list(x) == [0, 1, 2, 3]
    assert list(mean) == pytest.approx([-15 + 3 * g + 1 for g in range(4)])  # seeds 0, 1, 2 add 0, 1, 2
    assert list(lo) == [-15 + 3 * g for g in range(4)] and list(hi) == [-13 + 3 * g for g in range(4)]


def test_one_run_report_writes_the_panel_figure_as_png_and_pdf(tmp_path):
    _make_seed_run(tmp_path / "run", 0)
    write_report(tmp_path / "run", x="wall")
    rep = tmp_path / "run" / "report"
    assert (rep / "curves.png").read_bytes()[:4] == b"\x89PNG" and (rep / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    assert "](curves.png)" in (rep / "report.md").read_text()
    other = tmp_path / "elsewhere"
    write_report(tmp_path / "run", out=other)  # --out for one run
    assert (other / "summary.csv").is_file() and (other / "curves.pdf").is_file()
