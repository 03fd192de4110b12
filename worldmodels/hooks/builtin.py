"""The built-in hooks: progress, evaluation snapshots and the finalist pick (selection.py's, in
the loop), early stopping, the checkpoint writer and the artifact writer (metrics CSVs, eval
files, results, report)."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import save_state, save_torch_state
from ..context import HookContext, RunContext
from ..fileio import read_csv_rows, write_csv_rows, write_json, writing
from ..selection import Selection, keep_best
from ..stages.base import StepReport, produces_generations
from .base import Hook

log = logging.getLogger("worldmodels")

# Each stage's CSV columns and its step column (the file's name is the run folder's: EnvFolder.metrics).
CSV_FIELDS = {
    "controller": (["gen", "mode", "best_fitness", "mean_fitness", "std_fitness", "sigma", "rel_step",
                                   "env_steps", "dream_steps", "steps_per_s", "wall_s"], "gen"),
    # V and M restart their epochs every round: the round column tells the rounds' rows apart.
    "vae": (["round", "epoch", "loss", "recon", "kl"], "epoch"),
    "mdnrnn": (["round", "epoch", "loss", "gmm", "reward", "done"], "epoch"),
}


class LogProgress:
    """The progress bar where stderr is not a terminal (a log file, CI): a line now and then."""

    def __init__(self, desc: str, log, every_s: float = 60.0):
        self.desc, self.log, self.every_s = desc, log, every_s
        self.n = 0
        self.total: int | None = None
        self.last = time.monotonic()

    def reset(self, total: int | None = None) -> None:
        self.n, self.total = 0, total

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            of = f"/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else ""
            self.log(f"{self.desc}: {self.n}{of}")

    def close(self) -> None:
        pass


class Overall:
    """The whole curriculum's progress in env steps against the envs' step budgets (each env
    counts its whole budget once it ends), with an ETA: a tqdm bar on a terminal, else a line a minute.
    set() moves the count by steps this invocation took; jump() by steps it did not take (what a
    resumed env already holds, the rest of a budget an env did not use): the ETA's rate counts
    only the former."""

    def __init__(self, budgets: list[int], log, every_s: float = 60.0):
        self.total, self.log, self.every_s = sum(budgets), log, every_s
        self.done_before = 0
        self.n: int | None = None  # the count so far (None: nothing seen yet)
        self.work = 0  # steps this invocation took
        self.t0 = self.last = time.monotonic()
        self.bar: Any = None  # tqdm, made at the first count (its initial)

    def jump(self, n: int) -> None:
        self._move(n, work=False)

    def set(self, n: int) -> None:
        self._move(n, work=True)

    def _move(self, n: int, work: bool) -> None:
        n = min(n, self.total)
        now = time.monotonic()
        if self.n is None:  # the first count: what this invocation starts from
            self.n, self.t0, self.last = n, now, now
            if sys.stderr.isatty():
                from tqdm import tqdm

                self.bar = tqdm(desc="curriculum", total=self.total, initial=n, unit="step", unit_scale=True,
                                position=0, file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
            return
        if n > self.n:
            if work:
                self.work += n - self.n
            if self.bar is not None:
                self.bar.update(n - self.n)
            self.n = n
        if self.bar is None and work and self.work and now - self.last >= self.every_s:
            self.last = now
            eta = (now - self.t0) * (self.total - n) / self.work
            self.log(f"curriculum: {n:,} of {self.total:,} env steps ({100 * n / self.total:.0f}%), "
                     f"about {eta / 3600:.1f} h to go")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ProgressBar(Hook):
    """A tqdm bar per stage on stderr under one for the whole curriculum (lines a minute when
    stderr is not a terminal), and one log line per generation."""

    name = "progress"

    def __init__(self):
        self.bar = None
        self.overall: Overall | None = None
        self.budgets: dict[str, int] = {}

    def on_run_start(self, run: RunContext) -> None:
        self.budgets = {slug: cfg.max_env_steps for slug, cfg in run.env_configs().items()}
        if all(self.budgets.values()):  # an env without a step budget: no whole-run figure
            self.overall = Overall(list(self.budgets.values()), run.log)

    def _count(self, ctx: HookContext) -> int:
        """The curriculum's count: the envs before this one at their budgets, this one's steps."""
        assert self.overall is not None
        return self.overall.done_before + min(ctx.env_steps, self.budgets.get(ctx.spec.slug, 0))

    def on_env_end(self, ctx: HookContext) -> None:
        if self.overall is not None:  # the budget an env did not use was not worked through
            self.overall.done_before += self.budgets.get(ctx.spec.slug, 0)
            self.overall.jump(self.overall.done_before)

    def on_run_end(self, run: RunContext) -> None:
        if self.overall is not None:
            self.overall.close()
            self.overall = None

    def on_stage_start(self, ctx: HookContext, stage: str) -> None:
        # runs last: the bar exists once the stage body starts
        from tqdm import tqdm

        if self.overall is not None:  # what a resumed env already holds was not taken now
            self.overall.jump(self._count(ctx))
        desc = f"{ctx.spec.slug} {stage}"
        if sys.stderr.isatty():
            self.bar = tqdm(desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=1.0,
                            position=1 if self.overall is not None else None)
        else:
            ctx.log(f"{desc}: started")
            self.bar = LogProgress(desc, ctx.log)
        ctx.set_progress_bar(self.bar)

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        if self.overall is not None:
            self.overall.set(self._count(ctx))
        m = report.metrics
        if produces_generations(stage):
            line = (f"{ctx.spec.slug} gen {m['gen']:4d} {m.get('mode', 'real'):5s}  best {m['best_fitness']:9.2f}"
                    f"  mean {m['mean_fitness']:9.2f}  sigma {m['sigma']:.4f}  steps/s {m['steps_per_s']:8.0f}"
                    f"  env steps {m['env_steps']}")
            if "eval" in m:
                line += f"  | eval {m['eval']['mean']:.2f} ± {m['eval']['std']:.2f}"
            ctx.log(line)
        elif stage in ("vae", "mdnrnn"):
            ctx.log(f"{ctx.spec.slug} {stage} epoch {m['epoch']}  loss {m['loss']:.4f}")

    def on_stage_end(self, ctx: HookContext, stage: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        ctx.set_progress_bar(None)


class EvalSnapshot(Selection, Hook):
    """Selection (worldmodels/selection.py) in the curriculum's loop: eval snapshots and the
    target's confirmation after each generation, the finalist pick at the end of each round's
    controller stage."""

    name = "eval_snapshot"

    def on_env_start(self, ctx: HookContext) -> None:
        self.reset()

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        if produces_generations(stage):
            self.snapshot(ctx, report)

    def on_stage_start(self, ctx: HookContext, stage: str) -> None:
        if produces_generations(stage):
            self.stop_if_solved(ctx)

    def on_stage_end(self, ctx: HookContext, stage: str) -> None:
        if produces_generations(stage):
            self.pick(ctx)


class EarlyStopping(Hook):
    """Stop when the best training fitness has not improved for `patience` generations."""

    name = "early_stopping"

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.reset()

    def reset(self) -> None:
        self.best = -np.inf
        self.best_gen = -1
        self.wait = 0
        self.reason: str | None = None

    def on_env_start(self, ctx: HookContext) -> None:
        self.reset()

    def _check(self, ctx: HookContext):
        if self.patience > 0 and self.wait >= self.patience:
            self.reason = (f"no better best fitness for {self.wait} generations "
                           f"(best {self.best:.2f} at generation {self.best_gen}, patience {self.patience})")
            ctx.stop_early(self.reason)

    def on_stage_start(self, ctx: HookContext, stage: str) -> None:
        if produces_generations(stage):
            self._check(ctx)

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        if not produces_generations(stage) or report.metrics.get("mode") == "dream":
            return  # dream fitness is on M's scale: patience counts real generations only
        fitness = report.metrics["best_fitness"]
        if fitness > self.best + self.min_delta:
            self.best, self.best_gen, self.wait = fitness, report.index, 0
        else:
            self.wait += 1
        self._check(ctx)

    def state_dict(self) -> dict:
        return {"best": float(self.best), "best_gen": self.best_gen, "wait": self.wait, "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_gen = state["best"], state["best_gen"]
        self.wait, self.reason = state["wait"], state["reason"]


class CheckpointWriter(Hook):
    """Resume state after every step (before any metrics row is written); best.pt on a new best
    (written by selection, after the snapshot and before the state that remembers it)."""

    name = "checkpoint"

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        keep_best(ctx, report)
        if report.state is None:
            return
        assert report.state_path is not None  # a stage that reports a state says where it goes
        if produces_generations(stage):
            # The metrics ride along, so a row or snapshot lost to a kill or a full disk right
            # after this checkpoint is written again on resume (ArtifactWriter.on_stage_start).
            state = dict(report.state, hooks={h.name: h.state_dict() for h in ctx.hooks},
                         status=ctx.status, stop_reason=ctx.stop_reason, metrics=report.metrics)
            save_state(report.state_path, state)
        else:
            save_torch_state(report.state_path, report.state)
        ctx.save_manifest()


class ArtifactWriter(Hook):
    """metrics CSVs, eval snapshots, curriculum_results.json and the report folder."""

    name = "artifacts"

    def on_stage_start(self, ctx: HookContext, stage: str) -> None:
        if stage not in CSV_FIELDS:
            return
        fields, key = CSV_FIELDS[stage]
        path = ctx.files.metrics(stage)
        # Rows beyond the checkpoint were written by a run killed after it; they are redone.
        keep_upto = ctx.resume_index(stage)
        generations = produces_generations(stage)  # epochs restart every round; generations go on
        rows = [r for r in read_csv_rows(path)
                if int(r[key]) <= keep_upto or (not generations and int(r.get("round") or 0) < ctx.round)]
        write_csv_rows(path, fields, rows)
        if generations:
            for gen, snap in ctx.files.snapshots():
                if gen > keep_upto:
                    with writing(snap):
                        snap.unlink(missing_ok=True)
            saved = (ctx.resume_state or {}).get("metrics")
            if saved is not None and not any(int(r[key]) == keep_upto for r in rows):
                self.write_step(ctx, stage, keep_upto, saved)

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        if stage in CSV_FIELDS:
            self.write_step(ctx, stage, report.index, report.metrics)

    @staticmethod
    def write_step(ctx: HookContext, stage: str, index: int, metrics: dict) -> None:
        fields, _ = CSV_FIELDS[stage]
        path = ctx.files.metrics(stage)
        rows = read_csv_rows(path)
        rows.append({k: metrics.get(k, ctx.round if k == "round" else None) for k in fields})
        write_csv_rows(path, fields, rows)
        if "eval" in metrics:
            ev = metrics["eval"]
            write_json(ctx.files.snapshot(index), {
                "gen": index, "mean": ev["mean"], "std": ev["std"], "min": ev["min"], "max": ev["max"],
                "scores": ev["scores"], "episodes": ev["episodes"], "seed_start": ev["seed_start"],
                "renderer": ev.get("renderer", "official"),
                "env_steps": metrics["env_steps"], "wall_s": metrics["wall_s"],
                "best_so_far": ev["best_so_far"], "confirm": metrics.get("confirm")})

    def on_env_start(self, ctx: HookContext) -> None:
        ctx.write_results()

    def on_env_end(self, ctx: HookContext) -> None:
        ctx.write_results()
        write_report_safely(ctx.run_dir)

    def on_run_end(self, run: RunContext) -> None:
        write_report_safely(run.out)


class BestVideo(Hook):
    """At the end of each env, one episode of best.pt on the official env recorded to
    <env>/best.mp4 (the frames wm-play records; seed FINAL_SEED_START, as wm-play's default),
    capped at eval.video_steps env steps. Kept while best.pt is older than it; a signal stops it
    within a step (no video then). A video is a by-product: a failure is one warning."""

    name = "video"

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def on_env_end(self, ctx: HookContext) -> None:
        files = ctx.files
        if self.max_steps <= 0 or not files.best.exists() or ctx.interrupted():
            return
        if files.video.exists() and files.video.stat().st_mtime >= files.best.stat().st_mtime:
            return
        from ..play import record_bundle
        from ..seeds import FINAL_SEED_START

        start = time.perf_counter()
        try:
            score = record_bundle(files.best, files.video, self.max_steps, ctx.device, FINAL_SEED_START,
                                  abort=ctx.interrupted)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: could not record best.pt (%s); wm-play --ckpt %s --record FILE does it later",
                        ctx.spec.slug, exc, files.best)
            return
        if score is not None:
            ctx.log(f"{ctx.spec.slug}: video of best.pt in {files.video} (score {score:g} in "
                    f"{self.max_steps:,} env steps at most; {time.perf_counter() - start:.0f} s)")


def write_report_safely(run_dir: Path) -> None:
    """The report is a by-product of training: a plotting problem must never end a run."""
    try:
        from ..report import write_report

        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the report (%s); run wm-report %s later", exc, run_dir)
