"""report.md: the page that shows the tables and figures of one run, or of several runs."""
from __future__ import annotations

from pathlib import Path

from . import stats
from .reading import RESULTS_FILE, RUN_FILE, get, num, seed_of
from .tables import Table, fmt_best, fmt_final, fmt_float, md_escape, status_word

CURVES_PNG, CURVES_PDF = "curves.png", "curves.pdf"
SUMMARY_CSV, RUNS_CSV, RESULTS_TEX, REPORT_MD = "summary.csv", "runs.csv", "results.tex", "report.md"


def env_notes(entry: dict, slug: str, derived: bool, env_dir: Path) -> list[str]:
    notes = []
    if derived:
        notes.append(f"not in `{RESULTS_FILE}` yet: values derived from the files in `{slug}/`")
    if not env_dir.is_dir():
        notes.append(f"no env folder `{slug}/`: no figures")
    if entry.get("status") == "running":
        notes.append("still running")
    elif entry.get("status") == "interrupted":
        notes.append("interrupted: a rerun of its command resumes it")
    if num(get(entry.get("final_eval"), "mean")) is None:
        notes.append("no final eval yet" if entry.get("status") in ("running", "interrupted") else "no final eval")
    if entry.get("early_stopped") and entry.get("early_stop_reason"):
        notes.append(f"early stopped: {entry['early_stop_reason']}")
    elif entry.get("early_stopped"):
        notes.append("early stopped")
    if entry.get("target") is None:
        notes.append("no target score for this env")
    return notes


def _command(run: dict) -> str | None:
    cmd = get(run.get("run"), "command")
    if isinstance(cmd, list) and cmd:
        return "`" + " ".join(map(str, cmd)).replace("`", "'") + "`"
    return None


def _versions(run: dict) -> str | None:
    versions = get(run.get("run"), "versions")
    if isinstance(versions, dict) and versions:
        return ", ".join(f"{k} {v}" for k, v in versions.items())
    return None


def _curves(has_curves: bool, axis_words: str) -> list[str]:
    if not has_curves:
        return []
    return ["## Curves", "", f"Controller fitness and evaluations against {axis_words}; the star is the final "
            f"evaluation of best.pt. [PDF]({CURVES_PDF})", "", f"![curves]({CURVES_PNG})", ""]


def run_page(run: dict, table: Table, sections: list[tuple[dict, str, list[str], list[tuple[str, str]]]],
             has_curves: bool, axis_words: str) -> str:
    d: Path = run["run_dir"]
    out = [f"# World Models run report: `{d.resolve().name}`", ""]
    if run.get("updated"):
        out.append(f"Results updated: {run['updated']}  ")
    if not run.get("has_results"):
        out.append(f"No `{RESULTS_FILE}` yet: the run is probably still in progress; "
                   "everything below is derived from the env folders.  ")
    if (cmd := _command(run)) is not None:
        out.append(f"Command: {cmd}  ")
    if (versions := _versions(run)) is not None:
        out.append(f"Versions: {versions}  ")
    if not (d / RUN_FILE).is_file():
        out.append(f"No `{RUN_FILE}` found.  ")
    out += ["", "## Summary", "", table.to_markdown(), "",
            f"Files: [{SUMMARY_CSV}]({SUMMARY_CSV}), [{RESULTS_TEX}]({RESULTS_TEX}) (LaTeX, needs `booktabs`).", ""]
    out += _curves(has_curves, axis_words)
    if not sections:
        out += ["No envs yet.", ""]
    for entry, slug, notes, images in sections:
        out += [f"## {md_escape(str(entry.get('id')))} (`{slug}`)", ""]
        out.append(f"Status: **{status_word(entry.get('status'))}**; final eval: "
                   f"{fmt_final(entry.get('final_eval'))}; best eval: "
                   f"{fmt_best(entry.get('best_eval'))}; target: "
                   f"{fmt_float(entry.get('target'))}.")
        out.append("")
        for alt, fname in images:
            out += [f"![{alt}]({fname})", ""]
        if notes:
            out.append("Notes:")
            out += [f"- {n}" for n in notes]
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def runs_page(runs: list[dict], table: Table, notes: dict[str, list[str]], has_curves: bool,
              axis_words: str) -> str:
    out = [f"# World Models report: {len(runs)} runs of one recipe", "", f"Runs (their {RUN_FILE} differ at most in "
           "the seed and in keys that do not change training):", ""]
    for run in runs:
        cmd = _command(run)
        out.append(f"- `{run['run_dir']}`, seed {seed_of(run)}" + (f": {cmd}" if cmd else ""))
    out.append("")
    if (versions := _versions(runs[0])) is not None:
        out += [f"Versions (first run): {versions}", ""]
    out += ["## Summary", "", table.to_markdown(), "",
            f"Final: the mean over runs of each run's final evaluation score, ± the sample std over runs "
            f"(runs with a final evaluation in parentheses). IQM: the interquartile mean of every final-evaluation "
            f"episode of every run, pooled; its {stats.CONFIDENCE:.0%} confidence interval is the percentile "
            f"interval of {stats.RESAMPLES:,} stratified bootstrap resamples over runs (seed {stats.SEED}), the "
            "method of rliable (Agarwal et al., 2021).", "",
            f"Files: [{SUMMARY_CSV}]({SUMMARY_CSV}) (per env), [{RUNS_CSV}]({RUNS_CSV}) (per run and env), "
            f"[{RESULTS_TEX}]({RESULTS_TEX}) (LaTeX, needs `booktabs`).", ""]
    out += _curves(has_curves, axis_words + "; lines: the mean over runs, bands: min to max over runs")
    for env_id, env_notes_ in notes.items():
        if env_notes_:
            out += [f"## {md_escape(env_id)}", "", "Notes:"] + [f"- {n}" for n in env_notes_] + [""]
    return "\n".join(out).rstrip("\n") + "\n"
