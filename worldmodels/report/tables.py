"""The results tables: one model (a pandas DataFrame of the values as read, one row per env)
written as CSV, LaTeX (booktabs, pandas' Styler, which renders with jinja2), Markdown and the
plain text that wm-train and wm-report print.

``run_table`` is one run's table (the values copied from curriculum_results.json);
``runs_table`` is the table of several runs of one recipe (per env: the final score's mean and
std over runs, and the IQM of the pooled final-evaluation episodes with its bootstrap interval).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from .reading import envs_of, final_scores, get, num, seed_of, slug_of

# Preferred order of wall_s stage keys (others follow in order of appearance).
STAGE_ORDER = ("collect", "vae", "encode", "mdnrnn", "controller", "final_eval")

SUMMARY_BASE_COLUMNS = (
    "id", "slug", "target", "status", "final_mean", "final_std", "final_episodes",
    "best_eval_mean", "best_eval_gen", "generations", "early_stop_reason",
    "env_steps", "wall_total_s",
)
RUNS_COLUMNS = (
    "id", "slug", "target", "runs", "seeds", "final_runs", "final_mean", "final_std", "final_min",
    "final_max", "iqm", "iqm_ci_low", "iqm_ci_high", "episodes", "solved", "env_steps_mean",
    "wall_total_s_mean",
)

# The JSON's status values (solved, failed, running, interrupted) as a reader says them.
STATUS_WORDS = {"failed": "below target"}


def status_word(status: str | None) -> str:
    return STATUS_WORDS.get(status, status) if status else "-"


# --------------------------------------------------------------------------- #
# cells
# --------------------------------------------------------------------------- #
def fmt_float(x: Any, digits: int = 2) -> str:
    v = num(x)
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def fmt_int(x: Any) -> str:
    v = num(x)
    if v is None:
        return "-"
    if math.isfinite(v) and v == int(v):
        return f"{int(v):,}"
    return f"{v:,.1f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def fmt_final(fe: Any) -> str:
    """A final evaluation as ``mean ± std (episodes)``."""
    if num(get(fe, "mean")) is None:
        return "-"
    n = get(fe, "episodes")
    n_txt = f" ({fmt_int(n)})" if num(n) is not None else ""
    return f"{fmt_float(fe['mean'])} ± {fmt_float(get(fe, 'std'))}{n_txt}"


def fmt_best(be: Any) -> str:
    if num(get(be, "mean")) is None:
        return "-"
    gen = get(be, "gen")
    notes = [f"gen {fmt_int(gen)}"] if num(gen) is not None else []
    if get(be, "renderer") not in (None, "official"):
        notes.append(f"{get(be, 'renderer')} renderer")  # a snapshot; final scores are official
    return f"{fmt_float(be['mean'])}" + (f" ({', '.join(notes)})" if notes else "")


def md_escape(s: str) -> str:
    """Escape text for a Markdown table cell or heading."""
    for ch in ("\\", "|", "*", "`", "<", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def tex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in s)


def tex_num(x: Any, digits: int = 2) -> str:
    """A number in math mode (``$-20.10$``), ``$\\mathrm{nan}$`` etc., or ``--``."""
    v = num(x)
    if v is None:
        return "--"
    return f"${v:.{digits}f}$" if math.isfinite(v) else f"$\\mathrm{{{v}}}$"


def _tex_pm(mean: Any, std: Any) -> str:
    m = tex_num(mean).strip("$")
    return f"${m} \\pm {tex_num(std).strip('$')}$" if num(std) is not None else f"${m}$"


def _tex_int(x: Any) -> str:
    return fmt_int(x) if num(x) is not None else "--"


# --------------------------------------------------------------------------- #
# the table model
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Column:
    """How one column of a written table reads a row of the model."""

    header: str
    cell: Callable[[dict], str]
    right: bool = False


@dataclass
class Table:
    """The model (``frame``: the values as read, written as CSV) and the columns people read:
    ``columns`` in plain text and Markdown, ``tex_columns`` (cells already LaTeX) in LaTeX."""

    frame: pd.DataFrame
    columns: list[Column]
    tex_columns: list[Column]
    caption: str
    label: str
    empty: str = "(no envs yet)"

    def rows(self) -> list[dict]:
        return self.frame.to_dict("records")

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False, lineterminator="\n", na_rep="")

    def view(self, columns: list[Column] | None = None) -> pd.DataFrame:
        """The cells people read, one column per Column (default: the plain ones)."""
        columns = self.columns if columns is None else columns
        return pd.DataFrame([[c.cell(r) for c in columns] for r in self.rows()],
                            columns=[c.header for c in columns], dtype=object)

    def to_text(self) -> str:
        """Aligned plain text; no trailing newline."""
        view = self.view()
        rows = [list(view.columns)] + view.values.tolist()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]

        def line(r: list[str]) -> str:
            return "  ".join(c.rjust(w) if col.right else c.ljust(w)
                             for c, w, col in zip(r, widths, self.columns)).rstrip()

        out = [line(rows[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in rows[1:]]
        if len(rows) == 1:
            out.append(self.empty)
        return "\n".join(out)

    def to_markdown(self) -> str:
        view = self.view()
        header = [h[0].upper() + h[1:] for h in view.columns]
        lines = ["| " + " | ".join(md_escape(h) for h in header) + " |",
                 "|" + "|".join("---:" if c.right else "---" for c in self.columns) + "|"]
        lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in view.values.tolist()]
        return "\n".join(lines)

    def to_latex(self) -> str:
        """A booktabs table (needs ``\\usepackage{booktabs}``)."""
        body = self.view(self.tex_columns).style.hide(axis="index").to_latex(
            hrules=True, column_format="".join("r" if c.right else "l" for c in self.tex_columns),
            position="ht", position_float="centering", caption=self.caption, label=self.label,
            environment="table")
        return "% Generated by wm-report. Needs \\usepackage{booktabs}.\n" + body


# --------------------------------------------------------------------------- #
# one run
# --------------------------------------------------------------------------- #
def _wall_stages(wall: Any) -> dict[str, float]:
    """Numeric stage entries of an env's wall_s (key "total" excluded)."""
    if not isinstance(wall, dict):
        return {}
    return {str(k): v for k, v in wall.items() if k != "total" and num(v) is not None}


def wall_total(wall: Any) -> float | None:
    """Total wall time: wall_s["total"] if the trainer wrote one, else the sum of stages."""
    if num(get(wall, "total")) is not None:
        return wall["total"]
    stages = _wall_stages(wall)
    if not stages:
        return None
    return round(math.fsum(float(v) for v in stages.values()), 6)


def stage_keys(envs: Iterable[dict]) -> list[str]:
    seen: list[str] = []
    for e in envs:
        for k in _wall_stages(get(e, "wall_s")):
            if k not in seen:
                seen.append(k)
    known = [k for k in STAGE_ORDER if k in seen]
    return known + [k for k in seen if k not in STAGE_ORDER]


def summary_columns(results: dict) -> list[str]:
    return list(SUMMARY_BASE_COLUMNS) + [f"wall_{k}_s" for k in stage_keys(envs_of(results))] + ["best_eval_renderer"]


def summary_rows(results: dict) -> list[dict]:
    """One flat dict per env (the rows of ``summary.csv``).

    ``results`` is a ``curriculum_results.json`` object or the dict returned by
    ``load_run``. Keys: ``SUMMARY_BASE_COLUMNS``, ``wall_<stage>_s`` for every stage key found
    in any env's ``wall_s``, then ``best_eval_renderer``. Values are copied as read (``None``
    where absent); only ``wall_total_s`` is computed (the sum of the stages, unless ``wall_s``
    has a ``total`` key).
    """
    envs = envs_of(results)
    stages = stage_keys(envs)
    rows = []
    for e in envs:
        fe, be, wall = e.get("final_eval"), e.get("best_eval"), e.get("wall_s")
        row = {
            "id": e.get("id"), "slug": slug_of(e), "target": e.get("target"),
            "status": e.get("status"),
            "final_mean": get(fe, "mean"), "final_std": get(fe, "std"),
            "final_episodes": get(fe, "episodes"),
            "best_eval_mean": get(be, "mean"), "best_eval_gen": get(be, "gen"),
            "generations": e.get("generations"),
            "early_stop_reason": e.get("early_stop_reason"),
            "env_steps": e.get("env_steps"), "wall_total_s": wall_total(wall),
        }
        for k in stages:
            row[f"wall_{k}_s"] = get(wall, k)
        row["best_eval_renderer"] = get(be, "renderer")
        rows.append(row)
    return rows


def _final_of(r: dict) -> dict:
    return {"mean": r["final_mean"], "std": r["final_std"], "episodes": r["final_episodes"]}


def _best_of(r: dict) -> dict:
    return {"mean": r["best_eval_mean"], "gen": r["best_eval_gen"], "renderer": r.get("best_eval_renderer")}


def _hours(r: dict) -> str:
    total = num(r.get("wall_total_s"))
    return f"{total / 3600:.2f}" if total is not None and math.isfinite(total) else "--"


def _tex_final(r: dict) -> str:
    if num(r["final_mean"]) is None:
        return "--"
    n = f" ({fmt_int(r['final_episodes'])})" if num(r["final_episodes"]) is not None else ""
    return _tex_pm(r["final_mean"], r["final_std"]) + n


def _name(r: dict) -> str:
    return str(r["id"] or r["slug"])


RUN_COLUMNS = [
    Column("env", _name),
    Column("status", lambda r: status_word(r["status"])),
    Column("final eval", lambda r: fmt_final(_final_of(r))),
    Column("best eval (gen)", lambda r: fmt_best(_best_of(r))),
    Column("target", lambda r: fmt_float(r["target"]) if num(r["target"]) is not None else "-", right=True),
    Column("gens", lambda r: fmt_int(r["generations"]), right=True),
    Column("early stop", lambda r: str(r["early_stop_reason"]) if r["early_stop_reason"] not in (None, "") else "-"),
    Column("env steps", lambda r: fmt_int(r["env_steps"]), right=True),
    Column("wall", lambda r: fmt_duration(num(r["wall_total_s"]))),
]
RUN_TEX_COLUMNS = [
    Column("Env", lambda r: tex_escape(_name(r))),
    Column("Final score", _tex_final),
    Column("Target", lambda r: tex_num(r["target"]), right=True),
    Column("Status", lambda r: tex_escape(status_word(r["status"])) if r["status"] else "--"),
    Column("Generations", lambda r: _tex_int(r["generations"]), right=True),
    Column("Env steps", lambda r: _tex_int(r["env_steps"]), right=True),
    Column("Wall-clock (h)", _hours, right=True),
]
RUN_CAPTION = ("World Models results: final evaluation score (mean $\\pm$ std over the number of episodes in "
               "parentheses), target score, status, CMA-ES generations, environment steps and wall-clock time.")


def run_table(results: dict) -> Table:
    """One run's table; ``results`` is a curriculum_results.json object or load_run's dict."""
    frame = pd.DataFrame(summary_rows(results), columns=summary_columns(results), dtype=object)
    return Table(frame, RUN_COLUMNS, RUN_TEX_COLUMNS, RUN_CAPTION, "tab:worldmodels-results")


def format_table(results: dict) -> str:
    """Plain-text aligned table, one row per env.

    Columns: env id, status, final eval ``mean ± std (n)`` or ``-``, best eval
    mean (gen), target, generations, early-stop reason or ``-``, env steps, total
    wall time (H:MM:SS). Accepts a ``curriculum_results.json`` object or the dict
    returned by ``load_run``. No trailing newline.
    """
    return run_table(results).to_text()


# --------------------------------------------------------------------------- #
# several runs of one recipe
# --------------------------------------------------------------------------- #
def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def aggregate_env(env_id: str, entries: list[tuple[dict, dict | None]]) -> tuple[dict, list[str]]:
    """One env over runs: ``entries`` pairs each run with its entry for the env (None: the run
    has none). The row of RUNS_COLUMNS and notes. The final score's std is the sample std over
    runs (ddof=1); the IQM pools every run's final-evaluation episodes."""
    notes: list[str] = []
    present = [(run, e) for run, e in entries if e is not None]
    first = present[0][1] if present else {}
    finals = [(run, e) for run, e in present if num(get(e.get("final_eval"), "mean")) is not None]
    means = [float(e["final_eval"]["mean"]) for _, e in finals]
    for run, e in entries:
        if e is None:
            notes.append(f"`{run['run_dir']}` (seed {seed_of(run)}) has no {env_id}")
        elif num(get(e.get("final_eval"), "mean")) is None:
            notes.append(f"`{run['run_dir']}` (seed {seed_of(run)}): no final eval ({status_word(e.get('status'))})")
    scores = [final_scores(e) for _, e in finals]
    scores = [s for s in scores if s]
    iqm = lo = hi = None
    episodes = sum(len(s) for s in scores)
    if scores:
        n = min(len(s) for s in scores)
        if any(len(s) != n for s in scores):
            notes.append(f"final evaluations of different lengths: the IQM uses the first {n} episodes of each run")
        matrix = np.array([s[:n] for s in scores])
        episodes = int(matrix.size)
        iqm = stats.iqm(matrix)
        lo, hi = stats.stratified_bootstrap_ci(matrix)
    elif finals:
        notes.append("no episode scores in the final evaluations: no IQM")
    steps = [float(e["env_steps"]) for _, e in present if num(e.get("env_steps")) is not None]
    walls = [w for _, e in present if (w := wall_total(e.get("wall_s"))) is not None]
    row = {
        "id": env_id, "slug": slug_of(first) if first else None, "target": first.get("target"),
        "runs": len(present), "seeds": ";".join(str(seed_of(run)) for run, _ in present),
        "final_runs": len(finals), "final_mean": _mean(means),
        "final_std": float(np.std(means, ddof=1)) if len(means) > 1 else None,
        "final_min": min(means) if means else None, "final_max": max(means) if means else None,
        "iqm": iqm, "iqm_ci_low": lo, "iqm_ci_high": hi, "episodes": episodes if scores else None,
        "solved": sum(e.get("status") == "solved" for _, e in present),
        "env_steps_mean": _mean(steps), "wall_total_s_mean": _mean(walls),
    }
    return row, notes


def _over_runs(r: dict) -> str:
    if num(r["final_mean"]) is None:
        return "-"
    std = fmt_float(r["final_std"]) if num(r["final_std"]) is not None else "-"
    return f"{fmt_float(r['final_mean'])} ± {std} ({r['final_runs']})"


def _iqm_cell(r: dict) -> str:
    if num(r["iqm"]) is None:
        return "-"
    return f"{fmt_float(r['iqm'])} [{fmt_float(r['iqm_ci_low'])}, {fmt_float(r['iqm_ci_high'])}]"


def _iqm_tex(r: dict) -> str:
    if num(r["iqm"]) is None:
        return "--"
    return f"{tex_num(r['iqm'])} [{tex_num(r['iqm_ci_low'])}, {tex_num(r['iqm_ci_high'])}]"


def _steps_mean(r: dict) -> str:
    return fmt_int(round(r["env_steps_mean"])) if num(r["env_steps_mean"]) is not None else "-"


def _tex_over_runs(r: dict) -> str:
    if num(r["final_mean"]) is None:
        return "--"
    return _tex_pm(r["final_mean"], r["final_std"]) + f" ({r['final_runs']})"


def _solved(r: dict) -> str:
    return f"{r['solved']}/{r['runs']}"


MULTI_COLUMNS = [
    Column("env", lambda r: str(r["id"])),
    Column("runs", lambda r: fmt_int(r["runs"]), right=True),
    Column("final (mean ± std over runs)", _over_runs),
    Column("IQM [95% CI]", _iqm_cell),
    Column("episodes", lambda r: fmt_int(r["episodes"]), right=True),
    Column("target", lambda r: fmt_float(r["target"]) if num(r["target"]) is not None else "-", right=True),
    Column("solved", _solved, right=True),
    Column("env steps (mean)", _steps_mean, right=True),
]
MULTI_TEX_COLUMNS = [
    Column("Env", lambda r: tex_escape(str(r["id"]))),
    Column("Final score", _tex_over_runs),
    Column("IQM [95\\% CI]", _iqm_tex),
    Column("Episodes", lambda r: _tex_int(r["episodes"]), right=True),
    Column("Target", lambda r: tex_num(r["target"]), right=True),
    Column("Solved", _solved, right=True),
    Column("Env steps", lambda r: _tex_int(round(r["env_steps_mean"]) if num(r["env_steps_mean"]) is not None
                                           else None), right=True),
]
MULTI_CAPTION = ("World Models results over runs of one recipe: final evaluation score (mean $\\pm$ sample std "
                 "over the runs in parentheses), interquartile mean of the pooled final-evaluation episodes with "
                 "its 95\\% stratified bootstrap confidence interval, episodes pooled, target score, and the runs "
                 "that reached it.")


def runs_table(runs: list[dict]) -> tuple[Table, dict[str, list[str]]]:
    """The table of several runs (loaded by load_runs) and notes per env id. Envs in the order
    they first appear in the runs."""
    order: list[str] = []
    for run in runs:
        for e in envs_of(run):
            if e["id"] not in order:
                order.append(e["id"])
    rows, notes = [], {}
    for env_id in order:
        entries = [(run, next((e for e in envs_of(run) if e["id"] == env_id), None)) for run in runs]
        row, notes[env_id] = aggregate_env(env_id, entries)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(RUNS_COLUMNS), dtype=object)
    return Table(frame, MULTI_COLUMNS, MULTI_TEX_COLUMNS, MULTI_CAPTION, "tab:worldmodels-runs"), notes


def per_run_table(runs: list[dict]) -> pd.DataFrame:
    """Every run's summary rows, with its folder and seed first (runs.csv)."""
    frames = []
    for run in runs:
        f = pd.DataFrame(summary_rows(run), columns=summary_columns(run), dtype=object)
        f.insert(0, "seed", seed_of(run))
        f.insert(0, "run", str(run["run_dir"]))
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
