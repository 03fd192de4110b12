#!/usr/bin/env python
"""The README's results table, made from the runs' own files in docs/results/.

docs/results/rows.yaml names the rows: per env and recipe, the run folders under docs/results/
(one per training seed, copied there by scripts/keep_results.sh) whose curriculum_results.json
and run.yaml give the final score, the env steps and the wall time. A row whose run folders are
gone keeps its numbers under `recorded`, with the commit and the command that made them, until
it is rerun.

    python scripts/results_table.py            print the table
    python scripts/results_table.py --write    put it into README.md between its markers
    python scripts/results_table.py --check    exit 1 if README.md's table differs (CI's test)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worldmodels.names import TARGETS  # noqa: E402 - the path above
from worldmodels.runfolder import RunFolder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README = ROOT / "README.md"
START = "<!-- results table: made by scripts/results_table.py from docs/results/; do not edit -->"
END = "<!-- end of results table -->"
# Atari v5 holds each agent step for 4 frames; CarRacing's env step is one frame.
FRAMESKIP = {"ALE/Pong-v5": 4, "ALE/Breakout-v5": 4}


@dataclass
class Seed:
    """One training seed's outcome: what a row shows of one run."""
    seed: int
    mean: float
    std: float
    episodes: int
    env_steps: int
    wall_s: float          # training wall time (every stage but the final evaluation)
    target: float | None = None


def _env_entry(results: dict[str, Any], env_id: str, where: Path) -> dict[str, Any]:
    for entry in results.get("envs", []):
        if entry.get("id") == env_id:
            return entry
    raise SystemExit(f"results_table: {where} holds no {env_id}")


def _training_wall(entry: dict[str, Any]) -> float:
    return sum(v for k, v in (entry.get("wall_s") or {}).items() if k != "final_eval")


def seed_from_run(name: str, env_id: str, base: str | None = None,
                  results_dir: Path = RESULTS) -> Seed:
    """Read one run folder under docs/results/. `base` names the run whose V and M it reused
    (`--from`): its wall time is added; its env steps are already in the run's counter."""
    folder = results_dir / name
    run = RunFolder(folder)
    entry = _env_entry(run.read_results(), env_id, folder)
    final = entry.get("final_eval")
    if not final:
        raise SystemExit(f"results_table: {folder} has no final evaluation for {env_id}")
    wall = _training_wall(entry)
    if base:
        wall += _training_wall(_env_entry(RunFolder(results_dir / base).read_results(), env_id, results_dir / base))
    return Seed(seed=int(run.read_config()["seed"]), mean=float(final["mean"]), std=float(final["std"]),
                episodes=int(final["episodes"]), env_steps=int(entry["env_steps"]), wall_s=wall,
                target=entry.get("target"))


def _millions(n: float) -> str:
    return f"{n / 1e6:.1f}M"


def _wall(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _row(spec: dict[str, Any], results_dir: Path) -> str:
    env_id = spec["env"]
    if "runs" in spec:
        seeds = [seed_from_run(r["dir"], env_id, r.get("base"), results_dir) for r in spec["runs"]]
        source = ", ".join(f"[{r['dir']}](docs/results/{r['dir']}/)" for r in spec["runs"])
    else:
        rec = spec["recorded"]
        seeds = [Seed(seed=s["seed"], mean=s["mean"], std=s["std"], episodes=100, env_steps=int(s["env_steps"]),
                      wall_s=s["wall_s"]) for s in rec["seeds"]]
        source = f"commit {rec['commit']}: `{rec['command']}`"
    score = ", ".join(f"**{s.mean:.2f} ± {s.std:.2f}** (seed {s.seed})" for s in seeds)
    steps = " / ".join(_millions(s.env_steps) for s in seeds)
    skip = FRAMESKIP.get(env_id, 1)
    if skip > 1:
        steps += f" ({' / '.join(_millions(s.env_steps * skip) for s in seeds)} frames)"
    wall = " / ".join(_wall(s.wall_s) for s in seeds)
    target = next((s.target for s in seeds if s.target is not None), TARGETS.get(env_id))
    target_text = f"{target:g}" if target is not None else "-"
    return (f"| {env_id} | {spec['recipe']}, {spec['hardware']} | {score} | {target_text} | {steps} | {wall} "
            f"| {spec.get('field', '')} | {source} |")


def table(rows_file: Path = RESULTS / "rows.yaml", results_dir: Path = RESULTS) -> str:
    rows = yaml.safe_load(rows_file.read_text())["rows"]
    head = ("| env | recipe, hardware | final score (100 episodes) | target | training env steps | "
            "training wall | field at the same frames | files or commit |\n|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(_row(spec, results_dir) for spec in rows)])


def replace_in(text: str, new_table: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"results_table: README.md lacks the markers {START!r} ... {END!r}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{new_table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="put the table into README.md")
    group.add_argument("--check", action="store_true", help="exit 1 if README.md's table is not this one")
    args = ap.parse_args(argv)
    new = table()
    if not (args.write or args.check):
        print(new)
        return 0
    text = README.read_text()
    updated = replace_in(text, new)
    if args.check:
        if updated != text:
            print("results_table: README.md's results table differs from docs/results/; "
                  "run python scripts/results_table.py --write", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
