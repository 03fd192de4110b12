"""wm-report: tables, figures and a page from run folders written by wm-train.

One run folder (``write_report``) gives ``DIR/report/`` (or ``--out``): ``summary.csv``,
``results.tex``, ``report.md``, ``curves.png`` / ``curves.pdf`` (a panel per env) and per env
``<slug>_fitness.png``, ``<slug>_losses.png``, ``<slug>_recon.png``. Several runs of one recipe
(``write_runs_report``) give ``--out``: ``summary.csv`` (per env over runs: the final score's mean
and std, the IQM of the pooled final-evaluation episodes with a bootstrap interval), ``runs.csv``,
``results.tex``, ``report.md`` and ``curves.png`` / ``curves.pdf`` with bands over runs.

The package: ``reading`` (the run folders), ``stats`` (IQM and bootstrap), ``tables`` (one
DataFrame model written as CSV, LaTeX and Markdown), ``plots`` (matplotlib, no pyplot) and
``page`` (report.md). wm-report takes no lock and writes only in its report folder, every file
atomically; the output depends only on the run folders, so a rerun gives the same files.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import RunFolderError
from ..fileio import atomic_write_bytes, refuse_links_out
from ..runfolder import REPORT_DIR
from . import page, plots
from .reading import X_AXES, load_run, load_runs, read_csv, read_curves, run_epochs, slug_of
from .tables import (
    STATUS_WORDS,
    SUMMARY_BASE_COLUMNS,
    fmt_best,
    format_table,
    per_run_table,
    run_table,
    runs_table,
    status_word,
    summary_rows,
)

__all__ = ["load_run", "load_runs", "summary_rows", "format_table", "run_table", "runs_table", "write_report",
           "write_runs_report",
           "status_word", "STATUS_WORDS", "SUMMARY_BASE_COLUMNS", "X_AXES", "read_csv", "run_epochs", "fmt_best"]

_ENV_PLOTS = ("fitness", "losses", "recon")
_AXIS_WORDS = {"steps": "env steps", "gens": "generations", "wall": "the controller's wall-clock time"}


def _prepare(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"{out_dir}: cannot create the report folder ({e.strerror or e})") from None
    if not out_dir.is_dir():
        raise RunFolderError(f"{out_dir}: exists but is not a folder; move it away")


def _write(out_dir: Path, files: dict[str, bytes | str], stale: list[str]) -> None:
    """Every file atomically; report files of an earlier report that this one lacks removed."""
    try:
        for name, data in files.items():
            atomic_write_bytes(out_dir / name, data.encode("utf-8") if isinstance(data, str) else data)
        for name in stale:
            p = out_dir / name
            if name not in files and p.is_file() and not p.is_symlink():
                p.unlink()
    except OSError as e:
        raise RunFolderError(f"{out_dir}: cannot write the report ({e.strerror or e})") from None


def _axis(x: str) -> str:
    if x not in X_AXES:
        raise RunFolderError(f"unknown x axis {x!r}: choose one of {', '.join(X_AXES)}")
    return x


def write_report(run_dir: str | Path, out: str | Path | None = None, x: str = "steps") -> str:
    """Write the report of one run folder into ``run_dir/report/`` (or ``out``) and return the
    plain-text results table. ``x``: the curves' x axis (steps, gens or wall).

    Each plot is skipped, with a note in ``report.md``, when its inputs are missing; plots of a
    previous report whose inputs are now gone are removed, so the folder always matches the run.

    Raises ``RunFolderError`` (see ``load_run``) and when the report folder cannot be written.
    """
    axis = _axis(x)
    run = load_run(run_dir)
    d: Path = run["run_dir"]
    if out is None:
        out_dir = d / REPORT_DIR
        refuse_links_out(d, out_dir)  # a crafted report/ that links elsewhere: nothing written there
    else:
        out_dir = Path(out)
    _prepare(out_dir)

    derived = set(run["derived"])
    files: dict[str, bytes | str] = {}
    sections = []
    panels = []
    stale = [page.CURVES_PNG, page.CURVES_PDF]
    for entry in run["envs"]:
        slug = slug_of(entry)
        env_dir = d / slug
        notes = page.env_notes(entry, slug, slug in derived, env_dir)
        images: list[tuple[str, str]] = []
        stale += [f"{slug}_{k}.png" for k in _ENV_PLOTS]
        if env_dir.is_dir():
            curves = read_curves(env_dir, axis)
            notes += curves.notes
            fe = entry.get("final_eval") if isinstance(entry.get("final_eval"), dict) else {}
            final = [(float(fe["mean"]), float(fe.get("std") or 0.0))] if isinstance(fe.get("mean"), (int, float)) \
                else []
            target = entry.get("target") if isinstance(entry.get("target"), (int, float)) else None
            panel = plots.Panel(str(entry.get("id")), [curves], final, target)
            panels.append(panel)
            made = {"fitness": plots.fitness_png(plots.Panel(f"{entry.get('id')}: controller fitness", [curves],
                                                             final, target)),
                    "losses": plots.losses_png(str(entry.get("id")), env_dir, notes),
                    "recon": plots.recon_png(str(entry.get("id")), env_dir, notes)}
            for kind, png in made.items():
                if png is not None:
                    files[f"{slug}_{kind}.png"] = png
                    images.append((f"{slug} {kind}", f"{slug}_{kind}.png"))
        sections.append((entry, slug, notes, images))

    figure = plots.curves_figure(panels)
    if figure is not None:
        files[page.CURVES_PNG], files[page.CURVES_PDF] = figure
    table = run_table(run)
    files[page.SUMMARY_CSV] = table.to_csv()
    files[page.RESULTS_TEX] = table.to_latex()
    files[page.REPORT_MD] = page.run_page(run, table, sections, figure is not None, _AXIS_WORDS[axis])
    _write(out_dir, files, stale)
    return table.to_text()


def write_runs_report(run_dirs: list[str | Path], out: str | Path, x: str = "steps") -> str:
    """Write the report of several runs of one recipe into ``out`` and return its plain-text
    table. The runs' run.yaml may differ only in the seed and in keys that do not change training
    (else a UserError naming the keys)."""
    axis = _axis(x)
    runs = load_runs(run_dirs)
    out_dir = Path(out)
    _prepare(out_dir)
    table, notes = runs_table(runs)
    panels = []
    for row in table.rows():
        curves, finals = [], []
        for run in runs:
            entry = next((e for e in run["envs"] if e["id"] == row["id"]), None)
            if entry is None or not (run["run_dir"] / slug_of(entry)).is_dir():
                continue
            curves.append(read_curves(run["run_dir"] / slug_of(entry), axis))
            fe = entry.get("final_eval")
            if isinstance(fe, dict) and isinstance(fe.get("mean"), (int, float)):
                finals.append((float(fe["mean"]), float(fe.get("std") or 0.0)))
        target = row["target"] if isinstance(row["target"], (int, float)) else None
        panels.append(plots.Panel(str(row["id"]), curves, finals, target))
    files: dict[str, bytes | str] = {}
    figure = plots.curves_figure(panels)
    if figure is not None:
        files[page.CURVES_PNG], files[page.CURVES_PDF] = figure
    files[page.SUMMARY_CSV] = table.to_csv()
    files[page.RUNS_CSV] = per_run_table(runs).to_csv(index=False, lineterminator="\n", na_rep="")
    files[page.RESULTS_TEX] = table.to_latex()
    files[page.REPORT_MD] = page.runs_page(runs, table, notes, figure is not None, _AXIS_WORDS[axis])
    _write(out_dir, files, [page.CURVES_PNG, page.CURVES_PDF])
    return table.to_text()
