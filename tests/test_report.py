"""Tests for worldmodels.report on synthetic run folders (no training, a few seconds)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml

from worldmodels.errors import RunFolderError, UserError
from worldmodels.report import format_table, load_run, read_csv, summary_rows, write_report

PONG = {
    "id": "ALE/Pong-v5", "slug": "pong", "target": 18.0, "status": "solved",
    "final_eval": {"mean": 18.37, "std": 1.234, "episodes": 100, "seed_start": 2000000000,
                   "scores": [18.0, 19.0, 17.0]},
    "best_eval": {"gen": 3, "mean": 19.5, "std": 1.1, "episodes": 8},
    "generations": 5, "early_stopped": True, "early_stop_reason": "target reached",
    "env_steps": 123456,
    "wall_s": {"collect": 12.3, "vae": 40.1, "encode": 3.2, "mdnrnn": 20.0,
               "controller": 300.0, "final_eval": 50.0},
}
# An id with LaTeX specials, no target, nothing evaluated yet, partial wall_s.
CUSTOM = {
    "id": "My_Env&Co/Foo#1-v0", "slug": "my_env_co_foo_1-v0", "target": None,
    "status": "failed", "final_eval": None, "best_eval": None,
    "generations": 2, "early_stopped": False, "early_stop_reason": None,
    "env_steps": 999, "wall_s": {"collect": 1.5},
}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _write_env_files(env_dir: Path, *, gens: int = 5, metrics: bool = True, evals: bool = True,
                     losses: bool = True, samples: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "best.pt").write_bytes(b"ignored")
    if metrics:
        rows = []
        for g in range(gens):
            mean = -20.0 + 8.0 * g
            rows.append([g, mean + 5.0, mean, 2.0 + g, 0.5 / (g + 1), 1000 * (g + 1),
                         250.0, 4.0 * (g + 1)])
        _write_csv(env_dir / "metrics.csv",
                   ["gen", "best_fitness", "mean_fitness", "std_fitness", "sigma",
                    "env_steps", "steps_per_s", "wall_s"], rows)
    if evals:
        for g in range(0, gens, 2):
            snap = {"gen": g, "mean": -19.0 + 9.0 * g, "std": 1.0 + 0.5 * g, "min": -21.0,
                    "max": 21.0, "scores": [-19.0] * 8, "episodes": 8, "env_steps": 800,
                    "wall_s": 3.0, "best_so_far": -19.0 + 9.0 * g}
            (env_dir / "eval").mkdir(exist_ok=True)
            (env_dir / "eval" / f"gen_{g:04d}.json").write_text(json.dumps(snap))
    if losses:
        _write_csv(env_dir / "vae_metrics.csv", ["epoch", "loss", "recon", "kl"],
                   [[e, 100.0 / (e + 1) + 5, 90.0 / (e + 1), 5.0 + e * 0.1] for e in range(4)])
        _write_csv(env_dir / "mdnrnn_metrics.csv", ["epoch", "loss", "gmm", "reward", "done"],
                   [[e, 2.0 - 0.3 * e, 1.8 - 0.3 * e, 0.1, 0.1] for e in range(4)])
    if samples:
        frames = rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
        recon = (frames // 2 + 20).astype(np.uint8)
        np.savez(env_dir / "vae_samples.npz", frames=frames, recon=recon)


def _write_run_yaml(run_dir: Path, envs: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {"config": {"envs": [e["id"] for e in envs]},  # as wm-train records them: names or ids
           "command": ["wm-train", "--out", str(run_dir)],
           "versions": {"python": "3.11", "worldmodels": "0.1.0"}}
    (run_dir / "run.yaml").write_text(yaml.safe_dump(doc))


def _make_full_run(run_dir: Path) -> dict:
    _write_run_yaml(run_dir, [PONG, CUSTOM])
    results = {"version": 1, "updated": "2026-11-26T05:00:00Z", "envs": [PONG, CUSTOM]}
    (run_dir / "curriculum_results.json").write_text(json.dumps(results))
    _write_env_files(run_dir / "pong")
    # CUSTOM: everything but metrics.csv and eval snapshots.
    _write_env_files(run_dir / CUSTOM["slug"], metrics=False, evals=False, seed=1)
    return results


def _assert_png_ok(path: Path) -> None:
    assert path.is_file(), path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert float(np.std(img)) > 0.0, f"{path} is blank"


def _read_summary(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_full_report_writes_every_file_with_matching_numbers(tmp_path):
    run_dir = tmp_path / "run"
    _make_full_run(run_dir)
    table = write_report(run_dir)
    rep = run_dir / "report"

    for name in ("summary.csv", "results.tex", "report.md"):
        assert (rep / name).is_file(), name
    for kind in ("fitness", "losses", "recon"):
        _assert_png_ok(rep / f"pong_{kind}.png")
    # CUSTOM has no metrics.csv: no fitness plot but losses and recon plots.
    assert not (rep / f"{CUSTOM['slug']}_fitness.png").exists()
    _assert_png_ok(rep / f"{CUSTOM['slug']}_losses.png")
    _assert_png_ok(rep / f"{CUSTOM['slug']}_recon.png")
    assert not list(rep.glob("*.tmp")) and not list(rep.glob(".*"))
    # The dashed target line is drawn in matplotlib's tab:red (#d62728).
    rgb = mpimg.imread(rep / "pong_fitness.png")[..., :3]
    red = np.all(np.abs(rgb - np.array([0xD6, 0x27, 0x28]) / 255) < 0.2, axis=-1)
    assert red.sum() > 100, "no target line in the fitness plot"

    # summary.csv: numbers exactly as in curriculum_results.json.
    rows = _read_summary(rep / "summary.csv")
    assert [r["id"] for r in rows] == [PONG["id"], CUSTOM["id"]]
    pong, custom = rows
    assert pong["final_mean"] == repr(PONG["final_eval"]["mean"])
    assert float(pong["final_std"]) == PONG["final_eval"]["std"]
    assert int(pong["final_episodes"]) == 100
    assert float(pong["best_eval_mean"]) == 19.5 and int(pong["best_eval_gen"]) == 3
    assert int(pong["env_steps"]) == 123456 and int(pong["generations"]) == 5
    assert pong["early_stop_reason"] == "target reached"
    assert float(pong["wall_controller_s"]) == 300.0
    assert float(pong["wall_total_s"]) == pytest.approx(sum(PONG["wall_s"].values()))
    assert custom["final_mean"] == "" and custom["target"] == "" and custom["best_eval_gen"] == ""
    assert float(custom["wall_collect_s"]) == 1.5 and custom["wall_vae_s"] == ""
    header = list(rows[0].keys())
    assert header[:13] == ["id", "slug", "target", "status", "final_mean", "final_std",
                           "final_episodes", "best_eval_mean", "best_eval_gen", "generations",
                           "early_stop_reason", "env_steps", "wall_total_s"]
    assert {f"wall_{k}_s" for k in PONG["wall_s"]} <= set(header)

    # results.tex: booktabs, same final mean/std, escaped specials.
    tex = (rep / "results.tex").read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert tex.count(rule) == 1, rule
    assert "$18.37 \\pm 1.23$ (100)" in tex
    assert "My\\_Env\\&Co/Foo\\#1-v0" in tex and "My_Env" not in tex
    assert "ALE/Pong-v5" in tex and "123,456" in tex
    assert f"{sum(PONG['wall_s'].values()) / 3600:.2f}" in tex
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    assert len([ln for ln in body.splitlines() if ln.strip().endswith("\\\\")]) == 2

    # report.md: table, embedded PNGs, notes about what is missing.
    md = (rep / "report.md").read_text()
    assert md.startswith("# ")
    assert "| ALE/Pong-v5 | solved | 18.37 ± 1.23 (100) |" in md
    for kind in ("fitness", "losses", "recon"):
        assert f"](pong_{kind}.png)" in md
    assert f"]({CUSTOM['slug']}_fitness.png)" not in md
    assert "no `metrics.csv` yet" in md and "no eval snapshots yet" in md

    # The returned text table.
    assert table == format_table(load_run(run_dir))
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two envs
    pong_line = next(ln for ln in lines if ln.startswith("ALE/Pong-v5"))
    for cell in ("solved", "18.37 ± 1.23 (100)", "19.50 (gen 3)", "18.00", "target reached",
                 "123,456", "0:07:06"):
        assert cell in pong_line, cell
    custom_line = next(ln for ln in lines if ln.startswith(CUSTOM["id"]))
    assert custom_line.split()[1:3] == ["below", "target"] and " - " in custom_line  # JSON: "failed"


def test_report_is_idempotent_and_drops_stale_plots(tmp_path):
    run_dir = tmp_path / "run"
    _make_full_run(run_dir)
    rep = run_dir / "report"
    first = write_report(run_dir)
    before = {p.name: p.read_bytes() for p in rep.iterdir()}
    second = write_report(run_dir)
    after = {p.name: p.read_bytes() for p in rep.iterdir()}
    assert first == second
    assert before.keys() == after.keys()
    for name in ("summary.csv", "results.tex", "report.md"):
        assert before[name] == after[name], name
    assert not [n for n in after if n.startswith(".") or n.endswith(".tmp")]

    # An input that disappears takes its plot with it.
    (run_dir / "pong" / "vae_samples.npz").unlink()
    write_report(run_dir)
    assert not (rep / "pong_recon.png").exists()
    assert "](pong_recon.png)" not in (rep / "report.md").read_text()


def test_in_progress_run_without_results_json(tmp_path):
    run_dir = tmp_path / "run"
    _write_run_yaml(run_dir, [PONG])
    _write_env_files(run_dir / "pong", gens=3, evals=False, losses=False, samples=False)

    run = load_run(run_dir)
    assert not run["has_results"] and run["derived"] == ["pong"]
    (env,) = run["envs"]
    assert env["status"] == "running" and env["id"] == "ALE/Pong-v5" and env["target"] == 18.0
    assert env["generations"] == 3 and env["env_steps"] == 3000

    table = write_report(run_dir)
    assert "running" in table and "ALE/Pong-v5" in table
    rep = run_dir / "report"
    _assert_png_ok(rep / "pong_fitness.png")
    assert not (rep / "pong_losses.png").exists() and not (rep / "pong_recon.png").exists()
    rows = _read_summary(rep / "summary.csv")
    assert len(rows) == 1 and rows[0]["status"] == "running" and rows[0]["final_mean"] == ""
    md = (rep / "report.md").read_text()
    assert "no eval snapshots yet" in md and "no `vae_samples.npz`" in md
    assert "](pong_fitness.png)" in md
    assert "\\toprule" in (rep / "results.tex").read_text()


def test_running_entry_plus_unlisted_env_folder(tmp_path):
    run_dir = tmp_path / "run"
    running = dict(PONG, status="running", final_eval=None, early_stopped=False,
                   early_stop_reason=None)
    (run_dir).mkdir()
    (run_dir / "curriculum_results.json").write_text(
        json.dumps({"version": 1, "updated": "x", "envs": [running]}))
    _write_env_files(run_dir / "pong")
    _write_env_files(run_dir / "breakout", gens=4, losses=False, samples=False)
    (run_dir / "notes").mkdir()  # not an env folder: no marker files

    run = load_run(run_dir)
    assert [e["slug"] for e in run["envs"]] == ["pong", "breakout"]
    assert run["envs"][0]["generations"] == 5  # as read, not recomputed
    breakout = run["envs"][1]
    assert breakout["status"] == "running" and breakout["best_eval"]["gen"] == 2
    write_report(run_dir)
    _assert_png_ok(run_dir / "report" / "breakout_fitness.png")
    rows = _read_summary(run_dir / "report" / "summary.csv")
    assert [r["status"] for r in rows] == ["running", "running"]


def test_env_with_empty_metrics_still_reports(tmp_path):
    run_dir = tmp_path / "run"
    _make_full_run(run_dir)
    (run_dir / "pong" / "metrics.csv").write_text(
        "gen,best_fitness,mean_fitness,std_fitness,sigma,env_steps,steps_per_s,wall_s\n")
    (run_dir / "pong" / "eval" / "gen_0002.json").write_text('{"gen": 2, "mean": ')  # torn write
    write_report(run_dir)
    rep = run_dir / "report"
    assert not (rep / "pong_fitness.png").exists()
    _assert_png_ok(rep / "pong_losses.png")
    md = (rep / "report.md").read_text()
    assert "`metrics.csv` empty" in md and "skipped `eval/gen_0002.json`" in md


@pytest.mark.parametrize("make", ["empty", "missing", "file"])
def test_no_run_raises(tmp_path, make):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("hi")
    with pytest.raises(RunFolderError) as ei:
        write_report(target)
    msg = str(ei.value)
    assert str(target) in msg and "\n" not in msg
    assert isinstance(ei.value, UserError)
    if make == "empty":
        assert "curriculum_results.json" in msg and "run.yaml" in msg
    assert not (target / "report").exists()


def test_corrupt_results_json_names_the_file(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "curriculum_results.json").write_text('{"version": 1, "envs": [')
    with pytest.raises(RunFolderError, match="curriculum_results.json") as ei:
        load_run(run_dir)
    assert "\n" not in str(ei.value)


def test_summary_rows_and_table_on_raw_results():
    results = {"version": 1, "envs": [PONG, CUSTOM]}
    rows = summary_rows(results)
    assert rows[0]["final_mean"] is PONG["final_eval"]["mean"]
    assert rows[1]["final_mean"] is None and rows[1]["wall_total_s"] == 1.5
    assert "wall_final_eval_s" in rows[1] and rows[1]["wall_final_eval_s"] is None
    text = format_table(results)
    assert "18.37 ± 1.23 (100)" in text
    assert format_table({"envs": []}).endswith("(no envs yet)")


def test_a_best_snapshot_off_the_official_renderer_says_so():
    from worldmodels.report import fmt_best

    assert fmt_best({"gen": 7, "mean": 301.25, "renderer": "fast"}) == "301.25 (gen 7, fast renderer)"
    assert fmt_best({"gen": 7, "mean": 301.25, "renderer": "official"}) == "301.25 (gen 7)"
    assert fmt_best({"mean": 3.0}) == "3.00"


def test_a_damaged_metrics_line_keeps_the_rows_before_it_and_the_report(tmp_path):
    run_dir = tmp_path / "run"
    _make_full_run(run_dir)
    with (run_dir / "pong" / "metrics.csv").open("a") as f:
        f.write('5,"' + "x" * 200_000)  # an over-long field with no end: csv.Error in the reader
    write_report(run_dir)
    _assert_png_ok(run_dir / "report" / "pong_fitness.png")
    assert len(read_csv(run_dir / "pong" / "metrics.csv")[1]) == 5


def test_loss_rows_of_later_rounds_follow_the_earlier_rounds_on_the_axis():
    from worldmodels.report import run_epochs

    rows = [{"round": r, "epoch": e} for r in (0.0, 1.0) for e in (0.0, 1.0, 2.0)]
    assert run_epochs(rows) == [0, 1, 2, 3, 4, 5]
    assert run_epochs([{"epoch": 0.0}, {"epoch": 1.0}]) == [0, 1]  # files from before the round column
