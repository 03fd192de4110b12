"""Report writer for a wm-train run folder (``wm-report``).

Reads the run folder contract written by ``wm-train``::

    DIR/
      run.yaml                 {config: {...}, command: [...], versions: {...}}
      curriculum_results.json  {"version": 1, "updated": ..., "envs": [...]}
      <slug>/eval/gen_NNNN.json, metrics.csv, vae_metrics.csv,
             mdnrnn_metrics.csv, vae_samples.npz
      report/                  written here

and writes ``DIR/report/``: ``summary.csv``, ``results.tex``, ``report.md`` and
per env ``<slug>_fitness.png``, ``<slug>_losses.png``, ``<slug>_recon.png``.

Numbers that come from ``curriculum_results.json`` are copied as read, never
recomputed. A run still in progress (no ``curriculum_results.json`` yet, or env
folders not listed in it yet) is reported from whatever files exist.

Every file is written atomically (temporary file in the same folder, then
``os.replace``) and the output depends only on the run folder, so running the
report twice gives the same files. Figures are drawn with matplotlib's Agg
canvas directly (``matplotlib.figure.Figure``); pyplot is never imported, so no
display is touched and the caller's matplotlib backend is left alone.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from worldmodels.errors import RunFolderError
from worldmodels.fileio import atomic_write_bytes, read_json, read_yaml
from worldmodels.names import ALIASES, CURRICULUM, TARGETS
from worldmodels.names import slug as env_slug
from worldmodels.runfolder import REPORT_DIR, RESULTS, RUN_YAML, EnvFolder

__all__ = ["load_run", "summary_rows", "format_table", "write_report"]

RESULTS_FILE, RUN_FILE = RESULTS, RUN_YAML
SUPPORTED_VERSIONS = (1,)

# Preferred order of wall_s stage keys (others follow in order of appearance).
_STAGE_ORDER = ("collect", "vae", "encode", "mdnrnn", "controller", "final_eval")
_SAFE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PLOT_KINDS = ("fitness", "losses", "recon")

SUMMARY_BASE_COLUMNS = (
    "id", "slug", "target", "status", "final_mean", "final_std", "final_episodes",
    "best_eval_mean", "best_eval_gen", "generations", "early_stop_reason",
    "env_steps", "wall_total_s",
)


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #
def _hint() -> str:
    return "point wm-report at a folder written by wm-train"


def _num(x: Any) -> float | None:
    """``x`` as a finite-or-not float if it is a real number (not bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


def _fmt_float(x: Any, digits: int = 2) -> str:
    v = _num(x)
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def _fmt_int(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "-"
    if math.isfinite(v) and v == int(v):
        return f"{int(v):,}"
    return f"{v:,.1f}"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def _fmt_final(fe: Any) -> str:
    if _num(_get(fe, "mean")) is None:
        return "-"
    n = _get(fe, "episodes")
    n_txt = f" ({_fmt_int(n)})" if _num(n) is not None else ""
    return f"{_fmt_float(fe['mean'])} ± {_fmt_float(_get(fe, 'std'))}{n_txt}"


def _fmt_best(be: Any) -> str:
    if _num(_get(be, "mean")) is None:
        return "-"
    gen = _get(be, "gen")
    notes = [f"gen {_fmt_int(gen)}"] if _num(gen) is not None else []
    if _get(be, "renderer") not in (None, "official"):
        notes.append(f"{_get(be, 'renderer')} renderer")  # a snapshot; final scores are official
    return f"{_fmt_float(be['mean'])}" + (f" ({', '.join(notes)})" if notes else "")


def _wall_stages(wall: Any) -> dict[str, float]:
    """Numeric stage entries of an env's wall_s (key "total" excluded)."""
    if not isinstance(wall, dict):
        return {}
    return {str(k): v for k, v in wall.items() if k != "total" and _num(v) is not None}


def _wall_total(wall: Any) -> float | None:
    """Total wall time: wall_s["total"] if the trainer wrote one, else the sum of stages."""
    if _num(_get(wall, "total")) is not None:
        return wall["total"]
    stages = _wall_stages(wall)
    if not stages:
        return None
    return round(math.fsum(float(v) for v in stages.values()), 6)


def _stage_keys(envs: Iterable[dict]) -> list[str]:
    seen: list[str] = []
    for e in envs:
        for k in _wall_stages(_get(e, "wall_s")):
            if k not in seen:
                seen.append(k)
    known = [k for k in _STAGE_ORDER if k in seen]
    return known + [k for k in seen if k not in _STAGE_ORDER]


def _envs(results: dict) -> list[dict]:
    envs = _get(results, "envs")
    return [e for e in envs if isinstance(e, dict)] if isinstance(envs, list) else []


def _slug_of(entry: dict) -> str:
    slug = entry.get("slug")
    if isinstance(slug, str) and _SAFE_SLUG.match(slug):
        return slug
    return env_slug(str(entry.get("id", "env")))


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #
def _read_csv(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """Header and rows of a metrics CSV, values as floats (NaN where unparsable).

    Rows shorter than the header (e.g. a line being appended right now) are dropped.
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
        except csv.Error:  # a damaged line (e.g. an over-long field): keep the rows before it
            pass
    return header, rows


def _run_epochs(rows: list[dict[str, float]]) -> list[float]:
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


def _column(rows: list[dict[str, float]], x: str, y: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        xv, yv = r.get(x, math.nan), r.get(y, math.nan)
        if math.isfinite(xv) and math.isfinite(yv):
            xs.append(xv)
            ys.append(yv)
    return xs, ys


def _load_eval_snapshots(env_dir: Path) -> tuple[list[dict], list[str]]:
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
        if not isinstance(data, dict) or _num(data.get("mean")) is None:
            notes.append(f"skipped `eval/{p.name}`: no numeric mean")
            continue
        gen = data.get("gen") if _num(data.get("gen")) is not None else index
        snaps.append({**data, "gen": gen})
    snaps.sort(key=lambda s: float(s["gen"]))
    return snaps, notes


def _is_env_dir(p: Path) -> bool:
    return (p.is_dir() and not p.name.startswith((".", "_")) and p.name != REPORT_DIR
            and bool(_SAFE_SLUG.match(p.name)) and EnvFolder(p).looks_trained())


def _config_env_info(config: Any, slug: str) -> dict:
    """id and target of the env run.yaml's `envs` list names `slug` (aliases and "all" expanded
    by the trainer's own table; an id is matched by the folder name the trainer gives it)."""
    names = _get(config, "envs")
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
        "target": target if _num(target) is not None else None,
        "status": "running", "final_eval": None, "best_eval": None,
        "generations": None, "early_stopped": False, "early_stop_reason": None,
        "env_steps": None, "wall_s": {},
    }
    metrics = EnvFolder(env_dir).metrics()
    if metrics.is_file():
        try:
            _, rows = _read_csv(metrics)
        except OSError:
            rows = []
        gens = {r["gen"] for r in rows if math.isfinite(r.get("gen", math.nan))}
        if gens:
            entry["generations"] = len(gens)
        steps = [r["env_steps"] for r in rows if math.isfinite(r.get("env_steps", math.nan))]
        if steps:
            s = steps[-1]
            entry["env_steps"] = int(s) if s == int(s) else s
    snaps, _ = _load_eval_snapshots(env_dir)
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
            elif not isinstance(slug, str) or not _SAFE_SLUG.match(slug):
                raise RunFolderError(f"{results_path}: envs[{i}] has an unsafe slug {slug!r}")
            envs.append(e)

    known = {e["slug"] for e in envs}
    config = _get(run, "config")
    derived = []
    for p in sorted(d.iterdir(), key=lambda p: p.name):
        if p.name not in known and _is_env_dir(p):
            envs.append(_derive_entry(p, config))
            derived.append(p.name)

    return {"run_dir": d, "run": run, "version": version, "updated": updated,
            "has_results": results_path.is_file(), "envs": envs, "derived": derived}


# --------------------------------------------------------------------------- #
# tables
# --------------------------------------------------------------------------- #
def summary_rows(results: dict) -> list[dict]:
    """One flat dict per env (the rows of ``summary.csv``).

    ``results`` is a ``curriculum_results.json`` object or the dict returned by
    ``load_run``. Keys: ``SUMMARY_BASE_COLUMNS`` then ``wall_<stage>_s`` for every
    stage key found in any env's ``wall_s``. Values are copied as read (``None``
    where absent); only ``wall_total_s`` is computed (the sum of the stages,
    unless ``wall_s`` has a ``total`` key).
    """
    envs = _envs(results)
    stages = _stage_keys(envs)
    rows = []
    for e in envs:
        fe, be, wall = e.get("final_eval"), e.get("best_eval"), e.get("wall_s")
        row = {
            "id": e.get("id"), "slug": _slug_of(e), "target": e.get("target"),
            "status": e.get("status"),
            "final_mean": _get(fe, "mean"), "final_std": _get(fe, "std"),
            "final_episodes": _get(fe, "episodes"),
            "best_eval_mean": _get(be, "mean"), "best_eval_gen": _get(be, "gen"),
            "generations": e.get("generations"),
            "early_stop_reason": e.get("early_stop_reason"),
            "env_steps": e.get("env_steps"), "wall_total_s": _wall_total(wall),
        }
        for k in stages:
            row[f"wall_{k}_s"] = _get(wall, k)
        rows.append(row)
    return rows


_TABLE_HEADER = ("env", "status", "final eval", "best eval (gen)", "target",
                 "gens", "early stop", "env steps", "wall")
_RIGHT = {4, 5, 7, 8}


# The JSON's status values (solved, failed, running, interrupted) as a reader says them.
STATUS_WORDS = {"failed": "below target"}


def status_word(status) -> str:
    return STATUS_WORDS.get(status, status) if status else "-"


def _table_cells(results: dict) -> list[list[str]]:
    cells = []
    for e in _envs(results):
        reason = e.get("early_stop_reason")
        cells.append([
            str(e.get("id", _slug_of(e))), status_word(e.get("status")),
            _fmt_final(e.get("final_eval")), _fmt_best(e.get("best_eval")),
            _fmt_float(e.get("target")) if _num(e.get("target")) is not None else "-",
            _fmt_int(e.get("generations")),
            str(reason) if reason not in (None, "") else "-",
            _fmt_int(e.get("env_steps")),
            _fmt_duration(_wall_total(e.get("wall_s"))),
        ])
    return cells


def format_table(results: dict) -> str:
    """Plain-text aligned table, one row per env.

    Columns: env id, status, final eval ``mean ± std (n)`` or ``-``, best eval
    mean (gen), target, generations, early-stop reason or ``-``, env steps, total
    wall time (H:MM:SS). Accepts a ``curriculum_results.json`` object or the dict
    returned by ``load_run``. No trailing newline.
    """
    rows = [list(_TABLE_HEADER)] + _table_cells(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(_TABLE_HEADER))]

    def line(r: list[str]) -> str:
        parts = [c.rjust(w) if i in _RIGHT else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(parts).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    if len(rows) == 1:
        out.append("(no envs yet)")
    return "\n".join(out)


def _md_escape(s: str) -> str:
    """Escape text for a Markdown table cell or heading."""
    for ch in ("\\", "|", "*", "`", "<", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s


def _markdown_table(results: dict) -> str:
    header = [h[0].upper() + h[1:] for h in _TABLE_HEADER]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in _RIGHT else "---" for i in range(len(header))) + "|"]
    for r in _table_cells(results):
        lines.append("| " + " | ".join(_md_escape(c) for c in r) + " |")
    return "\n".join(lines)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _tex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in s)


def _tex_num(x: Any, digits: int = 2) -> str:
    """A number in math mode (``$-20.10$``), ``$\\mathrm{nan}$`` etc., or ``--``."""
    v = _num(x)
    if v is None:
        return "--"
    return f"${v:.{digits}f}$" if math.isfinite(v) else f"$\\mathrm{{{v}}}$"


def _latex_table(results: dict) -> str:
    """booktabs LaTeX table (needs ``\\usepackage{booktabs}``)."""
    lines = [
        "% Generated by wm-report. Needs \\usepackage{booktabs}.",
        "\\begin{table}[ht]",
        "\\centering",
        "\\begin{tabular}{llrlrrr}",
        "\\toprule",
        "Env & Final score & Target & Status & Generations & Env steps & Wall-clock (h) \\\\",
        "\\midrule",
    ]
    for e in _envs(results):
        fe = e.get("final_eval")
        if _num(_get(fe, "mean")) is not None:
            mean_tex = _tex_num(fe["mean"]).strip("$")
            if _num(_get(fe, "std")) is not None:
                final = f"${mean_tex} \\pm {_tex_num(fe['std']).strip('$')}$"
            else:
                final = f"${mean_tex}$"
            if _num(_get(fe, "episodes")) is not None:
                final += f" ({_fmt_int(fe['episodes'])})"
        else:
            final = "--"
        total = _wall_total(e.get("wall_s"))
        hours = f"{total / 3600:.2f}" if total is not None and math.isfinite(total) else "--"
        cells = [
            _tex_escape(str(e.get("id", _slug_of(e)))), final, _tex_num(e.get("target")),
            _tex_escape(status_word(e.get("status")) if e.get("status") else "--"),
            _fmt_int(e.get("generations")) if _num(e.get("generations")) is not None else "--",
            _fmt_int(e.get("env_steps")) if _num(e.get("env_steps")) is not None else "--",
            hours,
        ]
        lines.append(" & ".join(cells) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        "\\caption{World Models results: final evaluation score (mean $\\pm$ std over the "
        "number of episodes in parentheses), target score, status, CMA-ES generations, "
        "environment steps and wall-clock time.}",
        "\\label{tab:worldmodels-results}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _csv_text(results: dict) -> str:
    rows = summary_rows(results)
    columns = list(SUMMARY_BASE_COLUMNS) + [f"wall_{k}_s" for k in _stage_keys(_envs(results))]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


# --------------------------------------------------------------------------- #
# writing
# --------------------------------------------------------------------------- #
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    # Fixed metadata so that re-running the report gives identical bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _fitness_png(entry: dict, env_dir: Path, notes: list[str]) -> bytes | None:
    metrics = EnvFolder(env_dir).metrics()
    snaps, snap_notes = _load_eval_snapshots(env_dir)
    notes.extend(snap_notes)
    if not snaps:
        notes.append("no eval snapshots yet (`eval/gen_*.json`)")
    if not metrics.is_file():
        notes.append("no `metrics.csv` yet: no fitness plot")
        return None
    try:
        header, rows = _read_csv(metrics)
    except OSError as e:
        notes.append(f"`metrics.csv` unreadable ({e.strerror or e}): no fitness plot")
        return None
    series = {c: _column(rows, "gen", c) for c in ("best_fitness", "mean_fitness")}
    if not any(xs for xs, _ in series.values()):
        what = "empty" if not rows else "has no gen/best_fitness/mean_fitness values"
        notes.append(f"`metrics.csv` {what}: no fitness plot")
        return None

    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(8, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    gx, gm = series["mean_fitness"]
    if gx:
        ax.plot(gx, gm, color="tab:blue", label="population mean")
        sx, sd = _column(rows, "gen", "std_fitness")
        if sx and len(sx) == len(gx):
            lo = [m - s for m, s in zip(gm, sd)]
            hi = [m + s for m, s in zip(gm, sd)]
            ax.fill_between(gx, lo, hi, color="tab:blue", alpha=0.15, label="population ± std")
    bx, bv = series["best_fitness"]
    if bx:
        ax.plot(bx, bv, color="tab:orange", label="population best")
    if snaps:
        ax.errorbar([float(s["gen"]) for s in snaps], [float(s["mean"]) for s in snaps],
                    yerr=[float(s["std"]) if _num(s.get("std")) is not None else 0.0 for s in snaps],
                    fmt="o", color="tab:green", capsize=3, label="eval mean ± std")
    target = _num(entry.get("target"))
    if target is not None:
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"target {target:g}")
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("return")
    ax.set_title(f"{entry.get('id')}: controller fitness")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _png_bytes(fig)


def _losses_png(entry: dict, env_dir: Path, notes: list[str]) -> bytes | None:
    panels = []
    for stage, title, comps in (("vae", "VAE", ("recon", "kl")), ("mdnrnn", "MDN-RNN", ("gmm", "reward", "done"))):
        path = EnvFolder(env_dir).metrics(stage)
        fname = path.name
        if not path.is_file():
            notes.append(f"no `{fname}`: no {title} loss plot")
            continue
        try:
            _, rows = _read_csv(path)
        except OSError as e:
            notes.append(f"`{fname}` unreadable ({e.strerror or e}): no {title} loss plot")
            continue
        for row, x in zip(rows, _run_epochs(rows)):
            row["_epoch"] = x
        lx, lv = _column(rows, "_epoch", "loss")
        if not lx:
            notes.append(f"`{fname}` is empty: no {title} loss plot")
            continue
        panels.append((title, rows, lx, lv, comps))
    if not panels:
        return None

    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(5 * len(panels), 4)
    for i, (title, rows, lx, lv, comps) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(lx, lv, marker="o", markersize=3, linewidth=1.8, label="loss")
        for c in comps:
            cx, cv = _column(rows, "_epoch", c)
            if cx:
                ax.plot(cx, cv, linestyle="--", linewidth=1, label=c)
        starts = [r["_epoch"] for prev, r in zip(rows, rows[1:]) if r.get("round") != prev.get("round")]
        for x in starts:
            ax.axvline(x - 0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("epoch (dotted: a new round)" if starts else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.set_title(f"{title} loss")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(str(entry.get("id")))
    fig.tight_layout()
    return _png_bytes(fig)


def _as_images(a: Any) -> Any:
    import numpy as np

    a = np.asarray(a)
    if a.ndim == 3:  # [N,H,W] grayscale
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4) or a.shape[0] == 0:
        return None
    if a.dtype != np.uint8:  # floats in [0,1] or [0,255]: convert to uint8
        a = np.nan_to_num(a.astype(np.float64))
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.shape[-1] == 1:
        a = a[..., 0]
    return a


def _recon_png(entry: dict, env_dir: Path, notes: list[str]) -> bytes | None:
    import numpy as np

    path = EnvFolder(env_dir).vae_samples
    if not path.is_file():
        notes.append("no `vae_samples.npz`: no reconstruction grid")
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            frames = _as_images(z["frames"]) if "frames" in z.files else None
            recon = _as_images(z["recon"]) if "recon" in z.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        notes.append(f"`vae_samples.npz` unreadable ({type(e).__name__}): no reconstruction grid")
        return None
    if frames is None or recon is None:
        notes.append("`vae_samples.npz` lacks usable `frames`/`recon` arrays: no reconstruction grid")
        return None
    n = min(len(frames), len(recon), 16)
    grid = _montage([frames[:n], recon[:n]])
    if grid is None:
        notes.append("`vae_samples.npz` `frames` and `recon` differ in image size: "
                      "no reconstruction grid")
        return None

    h, w = grid.shape[:2]
    fig_w = max(1.1 * n, 4.0)
    left, right, bottom, title = 0.3, 0.05, 0.05, 0.35  # inches
    img_w = fig_w - left - right
    img_h = img_w * h / w
    fig_h = img_h + bottom + title
    fig = _new_figure(fig_w, fig_h)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([h / 4, 3 * h / 4], ["frame", "recon"], fontsize=8, rotation=90, va="center")
    fig.suptitle(f"{entry.get('id')}: VAE frames (top) and reconstructions (bottom)",
                 fontsize=9, y=1 - 0.05 / fig_h, va="top")
    return _png_bytes(fig)


def _montage(rows: list[Any], pad: int = 2) -> Any:
    """Tile uint8 image rows (each [n,H,W(,C)]) into one image with a white gap between tiles."""
    import numpy as np

    first = rows[0]
    if any(r.shape[1:] != first.shape[1:] for r in rows):
        return None
    n, hh, ww = first.shape[:3]
    grid = np.full((len(rows) * (hh + pad) - pad, n * (ww + pad) - pad) + first.shape[3:],
                   255, dtype=np.uint8)
    for i, r in enumerate(rows):
        for j in range(n):
            grid[i * (hh + pad): i * (hh + pad) + hh, j * (ww + pad): j * (ww + pad) + ww] = r[j]
    return grid


def _env_notes(entry: dict, slug: str, derived: bool, env_dir: Path) -> list[str]:
    notes = []
    if derived:
        notes.append(f"not in `{RESULTS_FILE}` yet: values derived from the files in `{slug}/`")
    if not env_dir.is_dir():
        notes.append(f"no env folder `{slug}/`: no figures")
    if entry.get("status") == "running":
        notes.append("still running")
    elif entry.get("status") == "interrupted":
        notes.append("interrupted: a rerun of its command resumes it")
    if _num(_get(entry.get("final_eval"), "mean")) is None:
        notes.append("no final eval yet" if entry.get("status") in ("running", "interrupted") else "no final eval")
    if entry.get("early_stopped") and entry.get("early_stop_reason"):
        notes.append(f"early stopped: {entry['early_stop_reason']}")
    elif entry.get("early_stopped"):
        notes.append("early stopped")
    if entry.get("target") is None:
        notes.append("no target score for this env")
    return notes


def _markdown(run: dict, sections: list[tuple[dict, str, list[str], list[tuple[str, str]]]]) -> str:
    d: Path = run["run_dir"]
    out = [f"# World Models run report: `{d.resolve().name}`", ""]
    if run.get("updated"):
        out.append(f"Results updated: {run['updated']}  ")
    if not run.get("has_results"):
        out.append(f"No `{RESULTS_FILE}` yet: the run is probably still in progress; "
                   "everything below is derived from the env folders.  ")
    cmd = _get(run.get("run"), "command")
    if isinstance(cmd, list) and cmd:
        out.append("Command: `" + " ".join(map(str, cmd)).replace("`", "'") + "`  ")
    versions = _get(run.get("run"), "versions")
    if isinstance(versions, dict) and versions:
        out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "  ")
    if not (run["run_dir"] / RUN_FILE).is_file():
        out.append(f"No `{RUN_FILE}` found.  ")
    out += ["", "## Summary", "", _markdown_table(run), "",
            "Files: [summary.csv](summary.csv), [results.tex](results.tex) "
            "(LaTeX, needs `booktabs`).", ""]
    if not sections:
        out += ["No envs yet.", ""]
    for entry, slug, notes, images in sections:
        out += [f"## {_md_escape(str(entry.get('id')))} (`{slug}`)", ""]
        out.append(f"Status: **{status_word(entry.get('status'))}**; final eval: "
                   f"{_fmt_final(entry.get('final_eval'))}; best eval: "
                   f"{_fmt_best(entry.get('best_eval'))}; target: "
                   f"{_fmt_float(entry.get('target'))}.")
        out.append("")
        for alt, fname in images:
            out += [f"![{alt}]({fname})", ""]
        if notes:
            out.append("Notes:")
            out += [f"- {n}" for n in notes]
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def write_report(run_dir: str | Path) -> str:
    """Write ``run_dir/report/`` and return the plain-text summary table.

    Files: ``summary.csv``, ``results.tex``, ``report.md`` and per env
    ``<slug>_fitness.png`` / ``<slug>_losses.png`` / ``<slug>_recon.png`` (each
    skipped, with a note in ``report.md``, when its inputs are missing). Every
    file is written atomically; plots from a previous report whose inputs are now
    gone are removed, so the folder always matches the run. Idempotent.

    Raises ``RunFolderError`` (see ``load_run``) and when ``report/`` cannot be written.
    """
    run = load_run(run_dir)
    d: Path = run["run_dir"]
    out_dir = d / REPORT_DIR
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"{out_dir}: cannot create the report folder "
                             f"({e.strerror or e})") from None
    if not out_dir.is_dir():
        raise RunFolderError(f"{out_dir}: exists but is not a folder; move it away")

    derived = set(run["derived"])
    files: dict[str, bytes | str] = {}
    sections = []
    stale: list[str] = []
    for entry in run["envs"]:
        slug = _slug_of(entry)
        env_dir = d / slug
        notes = _env_notes(entry, slug, slug in derived, env_dir)
        images: list[tuple[str, str]] = []
        if env_dir.is_dir():
            for kind, fn in (("fitness", _fitness_png), ("losses", _losses_png),
                             ("recon", _recon_png)):
                png = fn(entry, env_dir, notes)
                name = f"{slug}_{kind}.png"
                if png is None:
                    stale.append(name)
                else:
                    files[name] = png
                    images.append((f"{slug} {kind}", name))
        else:
            stale += [f"{slug}_{k}.png" for k in _PLOT_KINDS]
        sections.append((entry, slug, notes, images))

    table = format_table(run)
    files["summary.csv"] = _csv_text(run)
    files["results.tex"] = _latex_table(run)
    files["report.md"] = _markdown(run, sections)
    try:
        for name, data in files.items():
            atomic_write_bytes(out_dir / name, data.encode("utf-8") if isinstance(data, str) else data)
        for name in stale:
            p = out_dir / name
            if p.is_file():
                p.unlink()
    except OSError as e:
        raise RunFolderError(f"{out_dir}: cannot write the report ({e.strerror or e})") from None
    return table
