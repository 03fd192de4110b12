"""Reading run folders: results, metrics CSVs, eval snapshots, curves, and the recipe check.

Numbers that come from ``curriculum_results.json`` are copied as read, never recomputed. A run
still in progress (no results file yet, or env folders not listed in it yet) is read from
whatever files exist. Every path comes from ``runfolder`` (RunFolder / EnvFolder).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunFolderError, UserError
from ..fileio import read_json, read_yaml
from ..names import ALIASES, CURRICULUM, TARGETS
from ..names import slug as env_slug
from ..runfolder import REPORT_DIR, RESULTS, RUN_YAML, EnvFolder

RESULTS_FILE, RUN_FILE = RESULTS, RUN_YAML
SUPPORTED_VERSIONS = (1,)
SAFE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# x axes of the curves: env steps (the env's counter, collection included), generations, and the
# controller's wall-clock time; the metrics.csv column (and snapshot key) each one reads.
X_AXES = {"steps": "env_steps", "gens": "gen", "wall": "wall_s"}

# run.yaml config keys that may differ between runs of one recipe: the seed, and keys that change
# where or how fast a run trains but not what it trains.
NOT_RECIPE_KEYS = frozenset({"seed", "device", "workers", "backend", "ray_address", "live", "tensorboard"})


def _hint() -> str:
    return "point wm-report at a folder written by wm-train"


def num(x: Any) -> float | None:
    """``x`` as a float if it is a real number (not bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


def envs_of(results: dict) -> list[dict]:
    envs = get(results, "envs")
    return [e for e in envs if isinstance(e, dict)] if isinstance(envs, list) else []


def slug_of(entry: dict) -> str:
    slug = entry.get("slug")
    if isinstance(slug, str) and SAFE_SLUG.match(slug):
        return slug
    return env_slug(str(entry.get("id", "env")))


def final_scores(entry: dict) -> list[float]:
    """The episode returns of an env's final evaluation (empty when there is none)."""
    scores = get(entry.get("final_eval"), "scores")
    if not isinstance(scores, list):
        return []
    return [float(s) for s in scores if num(s) is not None]


# --------------------------------------------------------------------------- #
# files of an env folder
# --------------------------------------------------------------------------- #
def read_csv(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """Header and rows of a metrics CSV, values as floats (NaN where unparsable).

    Rows shorter than the header (e.g. a line being appended right now) are dropped; a damaged
    line (csv.Error, e.g. an over-long field) keeps the rows before it.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return [], []
        header = [h.strip() for h in header]
        rows = []
        try:
            for raw in reader:
                if len(raw) < len(header):
                    continue
                row = {}
                for k, v in zip(header, raw):
                    try:
                        row[k] = float(v)
                    except ValueError:
                        row[k] = math.nan
                rows.append(row)
        except csv.Error:
            pass
    return header, rows


def run_epochs(rows: list[dict[str, float]]) -> list[float]:
    """V and M restart their epochs every round: the rounds one after another on one axis."""
    xs, offset, last_round, last_x = [], 0.0, None, -1.0
    for row in rows:
        rnd = row.get("round", 0.0)
        if last_round is not None and rnd != last_round:
            offset = last_x + 1
        last_round = rnd
        last_x = offset + row.get("epoch", math.nan)
        xs.append(last_x)
    return xs


def column(rows: list[dict[str, float]], x: str, y: str) -> tuple[list[float], list[float]]:
    """Paired finite values of columns x and y."""
    xs, ys = [], []
    for r in rows:
        xv, yv = r.get(x, math.nan), r.get(y, math.nan)
        if math.isfinite(xv) and math.isfinite(yv):
            xs.append(xv)
            ys.append(yv)
    return xs, ys


def load_eval_snapshots(env_dir: Path) -> tuple[list[dict], list[str]]:
    """Eval snapshots sorted by generation, plus notes for unreadable ones."""
    snaps: list[dict] = []
    notes: list[str] = []
    for index, p in EnvFolder(env_dir).snapshots():
        if not p.is_file():
            continue
        try:
            data = read_json(p)
        except RunFolderError as e:
            notes.append(f"skipped `eval/{p.name}`: {str(e).split(': ', 1)[-1]}")
            continue
        if not isinstance(data, dict) or num(data.get("mean")) is None:
            notes.append(f"skipped `eval/{p.name}`: no numeric mean")
            continue
        gen = data.get("gen") if num(data.get("gen")) is not None else index
        snaps.append({**data, "gen": gen})
    snaps.sort(key=lambda s: float(s["gen"]))
    return snaps, notes


@dataclass
class Curves:
    """An env's controller curves against one x axis (``axis``: a key of X_AXES)."""

    axis: str
    mean: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))  # population mean fitness
    best: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))  # population best
    std: list[float] = field(default_factory=list)    # population std, paired with mean (if complete)
    evals: list[tuple[float, float, float]] = field(default_factory=list)  # (x, mean, std) of snapshots
    end: float | None = None                           # x where training ended (the last row)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.mean[0] and not self.best[0]


def read_curves(env_dir: Path, axis: str = "steps") -> Curves:
    """The controller's curves of an env folder (metrics.csv and eval/gen_*.json) against `axis`.

    A metrics.csv without the axis' column (files from an older trainer) falls back to
    generations, with a note. Missing or unreadable files leave the curves empty, with a note.
    """
    snaps, notes = load_eval_snapshots(env_dir)
    if not snaps:
        notes.append("no eval snapshots yet (`eval/gen_*.json`)")
    metrics = EnvFolder(env_dir).metrics()
    if not metrics.is_file():
        notes.append(f"no `{metrics.name}` yet: no fitness plot")
        return Curves(axis, notes=notes)
    try:
        _, rows = read_csv(metrics)
    except OSError as e:
        notes.append(f"`{metrics.name}` unreadable ({e.strerror or e}): no fitness plot")
        return Curves(axis, notes=notes)
    xcol = X_AXES[axis]
    if axis != "gens" and not any(math.isfinite(r.get(xcol, math.nan)) for r in rows) and rows:
        notes.append(f"`{metrics.name}` has no {xcol} column: generations on the x axis")
        axis, xcol = "gens", "gen"
    curves = Curves(axis, mean=column(rows, xcol, "mean_fitness"), best=column(rows, xcol, "best_fitness"),
                    notes=notes)
    if curves.empty:
        what = "empty" if not rows else "has no gen/best_fitness/mean_fitness values"
        notes.append(f"`{metrics.name}` {what}: no fitness plot")
        return curves
    sx, sd = column(rows, xcol, "std_fitness")
    if sx == curves.mean[0]:
        curves.std = sd
    xs = [r[xcol] for r in rows if math.isfinite(r.get(xcol, math.nan))]
    curves.end = xs[-1] if xs else None
    # a snapshot's x: the metrics row of its generation (the curve's own), else its own record
    by_gen = {r["gen"]: r.get(xcol, math.nan) for r in rows if math.isfinite(r.get("gen", math.nan))}
    for s in snaps:
        known = by_gen.get(float(s["gen"]), math.nan)
        x = known if math.isfinite(known) else num(s.get(xcol))
        if x is None or not math.isfinite(x):
            continue
        curves.evals.append((x, float(s["mean"]), num(s.get("std")) or 0.0))
    return curves


# --------------------------------------------------------------------------- #
# a run folder
# --------------------------------------------------------------------------- #
def _is_env_dir(p: Path) -> bool:
    return (p.is_dir() and not p.name.startswith((".", "_")) and p.name != REPORT_DIR
            and bool(SAFE_SLUG.match(p.name)) and EnvFolder(p).looks_trained())


def _config_env_info(config: Any, slug: str) -> dict:
    """id and target of the env run.yaml's `envs` list names `slug` (aliases and "all" expanded
    by the trainer's own table; an id is matched by the folder name the trainer gives it)."""
    names = get(config, "envs")
    for name in names if isinstance(names, list) else []:
        if not isinstance(name, str):
            continue
        for part in [p.strip() for p in name.split(",") if p.strip()]:
            ids = [ALIASES[a] for a in CURRICULUM] if part == "all" else [ALIASES.get(part.lower(), part)]
            for env_id in ids:
                if env_slug(env_id) == slug:
                    return {"id": env_id, "target": TARGETS.get(env_id)}
    return {}


def _derive_entry(env_dir: Path, config: Any) -> dict:
    """An in-progress env (folder exists, no curriculum_results.json entry yet)."""
    slug = env_dir.name
    info = _config_env_info(config, slug)
    target = info.get("target")
    entry: dict = {
        "id": info.get("id", slug), "slug": slug,
        "target": target if num(target) is not None else None,
        "status": "running", "final_eval": None, "best_eval": None,
        "generations": None, "early_stopped": False, "early_stop_reason": None,
        "env_steps": None, "wall_s": {},
    }
    metrics = EnvFolder(env_dir).metrics()
    if metrics.is_file():
        try:
            _, rows = read_csv(metrics)
        except OSError:
            rows = []
        gens = {r["gen"] for r in rows if math.isfinite(r.get("gen", math.nan))}
        if gens:
            entry["generations"] = len(gens)
        steps = [r["env_steps"] for r in rows if math.isfinite(r.get("env_steps", math.nan))]
        if steps:
            s = steps[-1]
            entry["env_steps"] = int(s) if s == int(s) else s
    snaps, _ = load_eval_snapshots(env_dir)
    if snaps:
        best = max(snaps, key=lambda s: float(s["mean"]))
        entry["best_eval"] = {k: best.get(k) for k in ("gen", "mean", "std", "episodes", "renderer")}
    return entry


def load_run(run_dir: str | Path) -> dict:
    """Read a wm-train run folder.

    Returns a dict with keys:

    - ``run_dir``: the folder (``Path``),
    - ``run``: the parsed ``run.yaml`` (dict) or ``None``,
    - ``version`` / ``updated``: from ``curriculum_results.json`` (``None`` if absent),
    - ``has_results``: whether ``curriculum_results.json`` exists,
    - ``envs``: one dict per env, the entries of ``curriculum_results.json`` as read
      (copies, with ``slug`` filled in if it was missing), followed by env folders
      that have no entry yet, reported with status ``"running"`` and values
      derived from their files,
    - ``derived``: slugs of those folder-only envs.

    Raises ``RunFolderError`` (one line) when the folder does not exist, is not a
    folder, holds neither ``curriculum_results.json`` nor ``run.yaml``, or when one
    of those files is corrupt.
    """
    d = Path(run_dir)
    if not d.exists():
        raise RunFolderError(f"{d}: no such folder; {_hint()}")
    if not d.is_dir():
        raise RunFolderError(f"{d}: not a folder; {_hint()}")
    results_path, run_path = d / RESULTS_FILE, d / RUN_FILE
    if not results_path.is_file() and not run_path.is_file():
        raise RunFolderError(f"{d}: no run here (no {RESULTS_FILE} or {RUN_FILE}); {_hint()}")

    run = None
    if run_path.is_file():
        run = read_yaml(run_path)
        if run is not None and not isinstance(run, dict):
            raise RunFolderError(f"{run_path}: expected a mapping with config/command/versions")

    version = updated = None
    envs: list[dict] = []
    if results_path.is_file():
        data = read_json(results_path)
        if not isinstance(data, dict) or not isinstance(data.get("envs", []), list):
            raise RunFolderError(f"{results_path}: expected an object with an \"envs\" list")
        version, updated = data.get("version"), data.get("updated")
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise RunFolderError(
                f"{results_path}: unsupported version {version!r} (this wm-report reads "
                f"version {', '.join(map(str, SUPPORTED_VERSIONS))}); update worldmodels")
        for i, e in enumerate(data.get("envs", [])):
            if not isinstance(e, dict) or not isinstance(e.get("id") or e.get("slug"), str):
                raise RunFolderError(f"{results_path}: envs[{i}] is not an object with an \"id\"")
            e = dict(e)
            e.setdefault("id", e.get("slug"))
            slug = e.get("slug")
            if slug is None:
                e["slug"] = env_slug(str(e["id"]))
            elif not isinstance(slug, str) or not SAFE_SLUG.match(slug):
                raise RunFolderError(f"{results_path}: envs[{i}] has an unsafe slug {slug!r}")
            envs.append(e)

    known = {e["slug"] for e in envs}
    config = get(run, "config")
    derived = []
    for p in sorted(d.iterdir(), key=lambda p: p.name):
        if p.name not in known and _is_env_dir(p):
            envs.append(_derive_entry(p, config))
            derived.append(p.name)

    return {"run_dir": d, "run": run, "version": version, "updated": updated,
            "has_results": results_path.is_file(), "envs": envs, "derived": derived}


# --------------------------------------------------------------------------- #
# several runs of one recipe
# --------------------------------------------------------------------------- #
def seed_of(run: dict) -> Any:
    return get(get(run.get("run"), "config"), "seed")


def recipe_differences(runs: list[dict]) -> list[str]:
    """Config keys (dotted) in which the runs' run.yaml differ, beyond NOT_RECIPE_KEYS. A key a
    run's config lacks (written by an older trainer) counts as its default."""
    from ..config import TrainConfig, flatten, to_dict

    base = {k: v for k, v in flatten(to_dict(TrainConfig())).items() if not k.startswith("env_overrides.")}
    flat = [{**base, **flatten(get(r["run"], "config"))} for r in runs]
    keys = set().union(*flat)
    return sorted(k for k in keys if k not in NOT_RECIPE_KEYS and len({repr(f.get(k)) for f in flat}) > 1)


def load_runs(run_dirs: list[str | Path]) -> list[dict]:
    """load_run for each folder, checked to be runs of one recipe: each has a run.yaml whose
    config differs from the others' only in the seed and in keys that do not change training
    (NOT_RECIPE_KEYS). Otherwise one UserError line naming the keys."""
    seen: dict[Path, str] = {}
    runs = []
    for d in run_dirs:
        key = Path(d).resolve()
        if key in seen:
            raise UserError(f"{d}: given twice (as {seen[key]}); name each run folder once")
        seen[key] = str(d)
        runs.append(load_run(d))
    for r in runs:
        if not isinstance(get(r["run"], "config"), dict):
            raise UserError(f"{r['run_dir']}: no config in {RUN_FILE}: cannot check that the runs share a recipe")
    diff = recipe_differences(runs)
    if diff:
        shown = ", ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise UserError(f"not runs of one recipe: their {RUN_FILE} differ in {shown} (only the seed and "
                        f"keys that do not change training, such as {', '.join(sorted(NOT_RECIPE_KEYS - {'seed'}))}, "
                        "may differ)")
    return runs
