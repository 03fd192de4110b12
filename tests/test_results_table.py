"""scripts/results_table.py: the README's results table comes from the runs' files in docs/results/."""
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "results_table.py"


def load() -> SimpleNamespace:
    return SimpleNamespace(**runpy.run_path(str(SCRIPT)))


def _run(folder: Path, seed: int, mean: float, std: float, steps: int, wall: dict, final=True) -> None:
    folder.mkdir(parents=True)
    entry = {"id": "ALE/Pong-v5", "slug": "pong", "target": 18.0, "env_steps": steps, "wall_s": wall,
             "final_eval": {"mean": mean, "std": std, "episodes": 100} if final else None}
    (folder / "curriculum_results.json").write_text(json.dumps({"version": 1, "envs": [entry]}))
    (folder / "run.yaml").write_text(yaml.safe_dump({"config": {"seed": seed}, "command": "wm-train"}))


def test_the_readme_table_is_the_one_the_files_give():
    """Fails when someone edits README.md's table by hand or adds a result without its files."""
    assert load().main(["--check"]) == 0


def test_a_row_reads_its_numbers_from_the_run_files(tmp_path):
    rt = load()
    _run(tmp_path / "base", 0, 0.0, 0.0, 60_000, {"collect": 60.0, "vae": 1140.0}, final=False)
    _run(tmp_path / "c-s0", 0, -3.456, 2.0, 2_500_000, {"controller": 3600.0, "final_eval": 999.0})
    _run(tmp_path / "c-s1", 1, 4.0, 10.5, 1_000_000, {"controller": 600.0})
    rows = {"rows": [{"env": "ALE/Pong-v5", "recipe": "laptop", "hardware": "2 CPU cores",
                      "runs": [{"dir": "c-s0", "base": "base"}, {"dir": "c-s1"}]}]}
    (tmp_path / "rows.yaml").write_text(yaml.safe_dump(rows))
    row = rt.table(tmp_path / "rows.yaml", tmp_path).splitlines()[2]
    assert "**-3.46 ± 2.00** (seed 0), **4.00 ± 10.50** (seed 1)" in row
    assert "2.5M / 1.0M (10.0M / 4.0M frames)" in row
    assert "1 h 20 min / 10 min" in row     # the base's V adds its time; the final evaluation does not count
    assert "| 18 |" in row


def test_a_run_without_a_final_score_is_refused(tmp_path):
    rt = load()
    _run(tmp_path / "r", 0, 0.0, 0.0, 10, {}, final=False)
    (tmp_path / "rows.yaml").write_text(yaml.safe_dump(
        {"rows": [{"env": "ALE/Pong-v5", "recipe": "x", "hardware": "y", "runs": [{"dir": "r"}]}]}))
    with pytest.raises(SystemExit, match="no final evaluation"):
        rt.table(tmp_path / "rows.yaml", tmp_path)


def test_replacing_keeps_the_text_around_the_markers():
    rt = load()
    text = f"intro\n{rt.START}\nold\n{rt.END}\noutro\n"
    assert rt.replace_in(text, "new") == f"intro\n{rt.START}\nnew\n{rt.END}\noutro\n"
    with pytest.raises(SystemExit):
        rt.replace_in("no markers", "new")
