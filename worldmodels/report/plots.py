"""The report's figures, drawn with matplotlib's Agg canvas directly (``matplotlib.figure.Figure``):
pyplot is never imported, so no display is touched and the caller's backend is left alone.

The controller curves (one env's fitness plot, and the figure with a panel per env) put env
steps on the x axis by default (generations or controller wall-clock as options); the y range
fits the curves, the target line is drawn only where it lies within or near them (else its value
is written at the panel's edge), and the final score is marked at the end of training. Several
runs of one recipe draw the mean over runs with a min-max band.
"""
from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runfolder import EnvFolder
from .reading import Curves, column, read_csv, run_epochs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

AXIS_LABELS = {"steps": "env steps", "gens": "generation", "wall": "controller wall-clock"}
TARGET_NEAR = 0.25  # a target within this fraction of the data's span beyond it is drawn


@dataclass
class Panel:
    """One env: its curves in each run, its final scores (mean, std) in each run, its target."""

    title: str
    curves: list[Curves]
    finals: list[tuple[float, float]] = field(default_factory=list)
    target: float | None = None


# --------------------------------------------------------------------------- #
# figures and bytes
# --------------------------------------------------------------------------- #
def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # the same bytes on a rerun
    return buf.getvalue()


def pdf_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf", metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return buf.getvalue()


# --------------------------------------------------------------------------- #
# controller curves
# --------------------------------------------------------------------------- #
def _wall_unit(seconds: float) -> tuple[str, float]:
    if seconds > 2 * 3600:
        return "h", 3600.0
    if seconds > 120:
        return "min", 60.0
    return "s", 1.0


def _steps_label(x: float, _pos=None) -> str:
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:g}M"
    if a >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def _band(series: list[tuple[list[float], list[float]]]) -> tuple[np.ndarray, ...]:
    """Runs' curves on the union of their x values (each run interpolated within its own range,
    absent outside it): x, mean, min and max over the runs present at each x."""
    arrays = [(np.asarray(x, float), np.asarray(y, float)) for x, y in series if len(x)]
    grid = np.unique(np.concatenate([x for x, _ in arrays]))
    ys = np.full((len(arrays), len(grid)), np.nan)
    for i, (x, y) in enumerate(arrays):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        inside = (grid >= x[0]) & (grid <= x[-1])
        ys[i, inside] = np.interp(grid[inside], x, y)
    return grid, np.nanmean(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)


def draw_panel(ax: Axes, panel: Panel, axis: str, scale: float = 1.0, legend: bool = True) -> None:
    """One env's controller curves on ax: a run's population mean (± std), best and eval
    snapshots; several runs' means over runs with min-max bands. x values are divided by scale."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    runs = [c for c in panel.curves if not c.empty]
    ys: list[float] = []  # every y drawn: the range to show
    if len(runs) == 1:
        c = runs[0]
        mx, my = (np.asarray(c.mean[0]) / scale, np.asarray(c.mean[1]))
        if len(mx):
            ax.plot(mx, my, color="tab:blue", label="population mean")
            ys += list(my)
            if len(c.std) == len(my):
                lo, hi = my - np.asarray(c.std), my + np.asarray(c.std)
                ax.fill_between(mx, lo, hi, color="tab:blue", alpha=0.15, linewidth=0, label="population ± std")
                ys += list(lo) + list(hi)
        if c.best[0]:
            ax.plot(np.asarray(c.best[0]) / scale, c.best[1], color="tab:orange", linewidth=1, label="population best")
            ys += list(c.best[1])
        if c.evals:
            ex, em, es = (np.array(v, float) for v in zip(*c.evals))
            ax.errorbar(ex / scale, em, yerr=es, fmt="o", markersize=4, color="tab:green", capsize=3,
                        label="eval mean ± std")
            ys += list(em - es) + list(em + es)
    elif runs:
        n = len(runs)
        for series, color, what in (([c.mean for c in runs if c.mean[0]], "tab:blue", "population mean"),
                                    ([([e[0] for e in c.evals], [e[1] for e in c.evals]) for c in runs if c.evals],
                                     "tab:green", "eval mean")):
            if not series:
                continue
            x, mean, lo, hi = _band(series)
            ax.plot(x / scale, mean, color=color, marker="o" if what == "eval mean" else None, markersize=3,
                    label=f"{what}, mean over {n} runs")
            ax.fill_between(x / scale, lo, hi, color=color, alpha=0.2, linewidth=0)
            ys += list(lo) + list(hi)
    ends = [c.end for c in runs if c.end is not None]
    if panel.finals and ends:
        means = [m for m, _ in panel.finals]
        y = float(np.mean(means))
        if len(means) == 1:
            err, text = panel.finals[0][1], f"final eval {means[0]:.2f} ± {panel.finals[0][1]:.2f}"
        else:
            err = float(np.std(means, ddof=1))
            text = f"final eval {y:.2f} ± {err:.2f} over {len(means)} runs"
        x_end = float(np.mean(ends)) / scale
        ax.errorbar([x_end], [y], yerr=[err], fmt="*", markersize=11, color="black", capsize=4, zorder=5, label=text)
        ys += [y - err, y + err]
    ys = [v for v in ys if math.isfinite(v)]
    if ys:
        lo, hi = min(ys), max(ys)
        span = hi - lo if hi > lo else max(1.0, abs(hi) * 0.1)
        t = panel.target
        if t is not None and lo - TARGET_NEAR * span <= t <= hi + TARGET_NEAR * span:
            ax.axhline(t, color="tab:red", linestyle="--", linewidth=1.2, label=f"target {t:g}")
            lo, hi = min(lo, t), max(hi, t)
        elif t is not None:
            above = t > hi
            ax.text(0.99, 0.98 if above else 0.02, f"target {t:g} {'above' if above else 'below'} the range",
                    transform=ax.transAxes, ha="right", va="top" if above else "bottom", fontsize=8,
                    color="tab:red")
        span = hi - lo if hi > lo else span
        ax.set_ylim(lo - 0.08 * span, hi + 0.12 * span)
    if axis == "steps":
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    elif axis == "gens":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("return")
    ax.set_title(panel.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if legend and ys:
        ax.legend(loc="best", fontsize=7, title="bands: min-max over runs" if len(runs) > 1 else None,
                  title_fontsize=7)


def _axis_setup(panels: list[Panel]) -> tuple[str, float, str]:
    """The axis all panels share (the first run's, after any fallback), its scale and label."""
    axes = [c.axis for p in panels for c in p.curves if not c.empty]
    axis = axes[0] if axes else "steps"
    scale, label = 1.0, AXIS_LABELS[axis]
    if axis == "wall":
        ends = [c.end for p in panels for c in p.curves if c.end is not None]
        unit, scale = _wall_unit(max(ends, default=0.0))
        label = f"{label} ({unit})"
    elif axis == "steps":
        label += " (collection included)"
    return axis, scale, label


def fitness_png(panel: Panel) -> bytes | None:
    """One env's controller fitness plot (PNG), or None when it has no curve."""
    if all(c.empty for c in panel.curves):
        return None
    axis, scale, label = _axis_setup([panel])
    fig = new_figure(8, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    draw_panel(ax, panel, axis, scale)
    ax.set_xlabel(label)
    fig.tight_layout()
    return png_bytes(fig)


def curves_figure(panels: list[Panel]) -> tuple[bytes, bytes] | None:
    """One figure with a panel per env that has a curve: (PNG, PDF), or None when none has."""
    panels = [p for p in panels if not all(c.empty for c in p.curves)]
    if not panels:
        return None
    axis, scale, label = _axis_setup(panels)
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = new_figure(4.6 * cols, 3.6 * rows)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        draw_panel(ax, panel, axis, scale)
        ax.set_xlabel(label, fontsize=9)
    fig.tight_layout()
    return png_bytes(fig), pdf_bytes(fig)


# --------------------------------------------------------------------------- #
# V and M: losses and reconstructions
# --------------------------------------------------------------------------- #
def losses_png(title_id: str, env_dir: Path, notes: list[str]) -> bytes | None:
    panels = []
    for stage, title, comps in (("vae", "VAE", ("recon", "kl")), ("mdnrnn", "MDN-RNN", ("gmm", "reward", "done"))):
        path = EnvFolder(env_dir).metrics(stage)
        fname = path.name
        if not path.is_file():
            notes.append(f"no `{fname}`: no {title} loss plot")
            continue
        try:
            _, rows = read_csv(path)
        except OSError as e:
            notes.append(f"`{fname}` unreadable ({e.strerror or e}): no {title} loss plot")
            continue
        for row, x in zip(rows, run_epochs(rows)):
            row["_epoch"] = x
        lx, lv = column(rows, "_epoch", "loss")
        if not lx:
            notes.append(f"`{fname}` is empty: no {title} loss plot")
            continue
        panels.append((title, rows, lx, lv, comps))
    if not panels:
        return None

    from matplotlib.ticker import MaxNLocator

    fig = new_figure(5 * len(panels), 4)
    for i, (title, rows, lx, lv, comps) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(lx, lv, marker="o", markersize=3, linewidth=1.8, label="loss")
        for c in comps:
            cx, cv = column(rows, "_epoch", c)
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
    fig.suptitle(title_id)
    fig.tight_layout()
    return png_bytes(fig)


def _as_images(a: Any) -> Any:
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


def _montage(rows: list[Any], pad: int = 2) -> Any:
    """Tile uint8 image rows (each [n,H,W(,C)]) into one image with a white gap between tiles."""
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


def recon_png(title_id: str, env_dir: Path, notes: list[str]) -> bytes | None:
    path = EnvFolder(env_dir).vae_samples
    if not path.is_file():
        notes.append(f"no `{path.name}`: no reconstruction grid")
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            frames = _as_images(z["frames"]) if "frames" in z.files else None
            recon = _as_images(z["recon"]) if "recon" in z.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        notes.append(f"`{path.name}` unreadable ({type(e).__name__}): no reconstruction grid")
        return None
    if frames is None or recon is None:
        notes.append(f"`{path.name}` lacks usable `frames`/`recon` arrays: no reconstruction grid")
        return None
    n = min(len(frames), len(recon), 16)
    grid = _montage([frames[:n], recon[:n]])
    if grid is None:
        notes.append(f"`{path.name}` `frames` and `recon` differ in image size: no reconstruction grid")
        return None

    h, w = grid.shape[:2]
    fig_w = max(1.1 * n, 4.0)
    left, right, bottom, title = 0.3, 0.05, 0.05, 0.35  # inches
    img_w = fig_w - left - right
    img_h = img_w * h / w
    fig_h = img_h + bottom + title
    fig = new_figure(fig_w, fig_h)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([h / 4, 3 * h / 4], ["frame", "recon"], fontsize=8, rotation=90, va="center")
    fig.suptitle(f"{title_id}: VAE frames (top) and reconstructions (bottom)",
                 fontsize=9, y=1 - 0.05 / fig_h, va="top")
    return png_bytes(fig)
