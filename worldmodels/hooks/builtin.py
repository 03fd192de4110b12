"""The built-in hooks: progress, evaluation snapshots and the finalist pick, early stopping,
the checkpoint writer and the artifact writer (metrics CSVs, eval files, results, report)."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..agent import CONFIRM_SEED_START, PICK_SEED_START, SNAPSHOT_SEED_START, Agent
from ..checkpoint import load_bundle, save_state, save_torch, save_torch_state
from ..errors import Interrupted
from ..fileio import read_csv_rows, read_json, write_csv_rows, write_json
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
        self.n, self.total = 0, None
        self.last = time.monotonic()

    def reset(self, total=None):
        self.n, self.total = 0, total

    def update(self, n: int = 1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            of = f"/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else ""
            self.log(f"{self.desc}: {self.n}{of}")

    def close(self):
        pass


class ProgressBar(Hook):
    """A tqdm bar per stage on stderr (a line a minute when stderr is not a terminal), and one
    log line per generation."""

    name = "progress"

    def __init__(self):
        self.bar = None

    def on_stage_start(self, ctx, stage):  # runs last: the bar exists once the stage body starts
        from tqdm import tqdm

        desc = f"{ctx.spec.slug} {stage}"
        if sys.stderr.isatty():
            self.bar = tqdm(desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=1.0)
        else:
            ctx.log(f"{desc}: started")
            self.bar = LogProgress(desc, ctx.log)
        ctx.set_progress_bar(self.bar)

    def on_step_end(self, ctx, stage, report):
        m = report.metrics
        if stage == "controller":
            line = (f"{ctx.spec.slug} gen {m['gen']:4d} {m.get('mode', 'real'):5s}  best {m['best_fitness']:9.2f}"
                    f"  mean {m['mean_fitness']:9.2f}  sigma {m['sigma']:.4f}  steps/s {m['steps_per_s']:8.0f}"
                    f"  env steps {m['env_steps']}")
            if "eval" in m:
                line += f"  | eval {m['eval']['mean']:.2f} ± {m['eval']['std']:.2f}"
            ctx.log(line)
        elif stage in ("vae", "mdnrnn"):
            ctx.log(f"{ctx.spec.slug} {stage} epoch {m['epoch']}  loss {m['loss']:.4f}")

    def on_stage_end(self, ctx, stage):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        ctx.set_progress_bar(None)


def save_best(ctx, params, snapshot: dict, gen: int) -> None:
    """best.pt: this round's V and M with `params` as C, and the eval that chose it."""
    bundle = ctx.load_agent().bundle(params, {"snapshot": snapshot, "final": None}, ctx.provenance(gen=gen))
    save_torch(ctx.files.best, bundle)
    ctx.final_eval = None  # it scored the best.pt this one replaces


class EvalSnapshot(Hook):
    """Every eval_every generations (and at 0 and at the last): evaluate the generation's best
    candidate on seeds training never uses (CarRacing: on `renderer`, fast by default); keep
    the best; confirm a target on the official env. At the end of each round's controller
    stage, pick best.pt again among the finalists (see EvalConfig.finalists)."""

    name = "eval_snapshot"

    def __init__(self, every: int, episodes: int, confirm_episodes: int, renderer: str = "official",
                 finalists: int = 0, pick_episodes: int = 0, stop_at_target: bool = True):
        self.every, self.episodes, self.confirm_episodes = every, episodes, confirm_episodes
        self.stop_at_target = stop_at_target
        self.renderer = renderer
        self.finalists, self.pick_episodes = finalists, pick_episodes
        self.reset()

    def reset(self):
        self.best: dict | None = None
        self.best_params: list | None = None
        self.solved = False
        self.top: list[dict] = []  # this round's best snapshots: {gen, round, mean, params}
        self.center: dict | None = None  # CMA-ES's mean after the last generation: {gen, round, params}

    def on_env_start(self, ctx):
        self.reset()

    def on_step_end(self, ctx, stage, report):
        if stage != "controller":
            return
        gen = report.index
        if "mean_params" in report.extra:
            self.center = {"gen": gen, "round": ctx.round, "params": report.extra["mean_params"]}
        if not (gen % self.every == 0 or gen == report.total - 1):
            return
        params = report.extra["best_params"]
        result = ctx.evaluate(params, self.episodes, SNAPSHOT_SEED_START, renderer=self.renderer)
        self._keep_top({"gen": gen, "round": ctx.round, "mean": result["mean"], "params": params})
        new_best = self.best is None or result["mean"] > self.best["mean"]
        if new_best:
            self.best = {"gen": gen, "mean": result["mean"], "std": result["std"], "episodes": result["episodes"],
                         "renderer": result.get("renderer", "official")}
            self.best_params = [float(v) for v in params]
            report.metrics["new_best"] = True
        report.metrics["eval"] = dict(result, gen=gen, best_so_far=dict(self.best))
        ctx.best_eval = self.best
        ctx.best_params = np.asarray(self.best_params)
        target = ctx.spec.target
        if target is not None and new_best and result["mean"] >= target and not self.solved:
            confirm = ctx.evaluate(params, self.confirm_episodes, CONFIRM_SEED_START, renderer="official")
            report.metrics["confirm"] = confirm
            ctx.log(f"{ctx.spec.slug}: snapshot mean {result['mean']:.2f} reached the target {target}; "
                    f"confirmation over {confirm['episodes']} episodes: {confirm['mean']:.2f} ± {confirm['std']:.2f}")
            if confirm["mean"] >= target:
                self.solved = True
                ctx.status = "solved"
                if not self.stop_at_target:
                    ctx.log(f"{ctx.spec.slug}: target {target} confirmed at generation {gen}; training goes on "
                            f"(eval.stop_at_target: false)")
        if self.solved and self.stop_at_target:
            ctx.stop(f"target {target} reached and confirmed")

    def _keep_top(self, entry: dict) -> None:
        top = [e for e in self.top if e["round"] == entry["round"]] + [entry]
        self.top = sorted(top, key=lambda e: -e["mean"])[:self.finalists]

    def on_stage_start(self, ctx, stage):
        if stage == "controller" and self.solved and self.stop_at_target:
            ctx.status = "solved"
            ctx.stop(f"target {ctx.spec.target} reached and confirmed")

    def on_stage_end(self, ctx, stage):
        if stage == "controller":
            self.pick(ctx)

    def finalists_of(self, ctx) -> list[dict]:
        """best.pt (with its own V and M, whatever round it came from), this round's other top
        snapshots and this round's CMA-ES mean; the same controller is listed once."""
        best = ctx.files.best
        if not best.exists():
            return []
        bundle = load_bundle(best)
        agent, params = Agent.from_bundle(bundle)
        snap = bundle["eval"].get("snapshot") or {}
        found = [{"label": f"best.pt (gen {snap.get('gen')})", "gen": snap.get("gen"),
                  "source": snap.get("source", "snapshot"), "agent": agent, "params": params}]
        others = [dict(e, label=f"snapshot gen {e['gen']}", source="snapshot") for e in self.top
                  if e["round"] == ctx.round]
        if self.center is not None and self.center["round"] == ctx.round:
            others.append(dict(self.center, label=f"CMA-ES mean gen {self.center['gen']}", source="mean"))
        for e in others:
            p = np.asarray(e["params"], np.float32)
            if not any(np.array_equal(p, np.asarray(f["params"], np.float32)) for f in found):
                found.append({"label": e["label"], "gen": e["gen"], "source": e["source"], "agent": None,
                              "params": p})
        return found

    def pick(self, ctx) -> None:
        if (self.finalists < 1 or self.pick_episodes < 1 or (self.solved and self.stop_at_target)
                or ctx.interrupted()):
            return
        path = ctx.files.pick(ctx.round)
        last_gen = None if self.center is None else self.center["gen"]
        if path.exists() and read_json(path).get("last_gen") == last_gen and ctx.files.best.exists():
            # done for this round's generations (a rerun of a finished run): best.pt holds the pick
            bundle = load_bundle(ctx.files.best)
            self.best = bundle["eval"]["snapshot"]
            self.best_params = [float(v) for v in bundle["controller"]["params"]]
            ctx.best_eval, ctx.best_params = self.best, np.asarray(self.best_params)
            return
        found = self.finalists_of(ctx)
        if len(found) < 2:
            return
        start = time.perf_counter()
        ctx.log(f"{ctx.spec.slug}: picking best.pt among {len(found)} finalists over {self.pick_episodes} episodes "
                f"each (seeds {PICK_SEED_START}+)")
        results = []
        for f in found:
            try:
                r = ctx.evaluate(f["params"], self.pick_episodes, PICK_SEED_START, renderer=self.renderer,
                                 agent=f["agent"])
            except Interrupted:
                return  # best.pt stands as it was; no pick file, so a rerun picks again
            results.append(r)
            ctx.log(f"{ctx.spec.slug}:   {f['label']}: {r['mean']:.2f} ± {r['std']:.2f}")
        won = max(range(len(found)), key=lambda i: (results[i]["mean"], -i))  # a tie keeps the earlier
        f, r = found[won], results[won]
        self.best = {"gen": f["gen"], "mean": r["mean"], "std": r["std"], "episodes": r["episodes"],
                     "renderer": r.get("renderer", "official"), "source": f["source"], "picked": True}
        self.best_params = [float(v) for v in f["params"]]
        ctx.best_eval, ctx.best_params = self.best, np.asarray(self.best_params)
        if won > 0:  # best.pt holds V and M of the round its controller was trained in
            save_best(ctx, f["params"], self.best, f["gen"])
        else:
            bundle = load_bundle(ctx.files.best)
            bundle["eval"]["snapshot"] = dict(bundle["eval"].get("snapshot") or {}, **self.best)
            save_torch(ctx.files.best, bundle)
        write_json(path, {
            "round": ctx.round, "last_gen": last_gen, "episodes": self.pick_episodes, "seed_start": PICK_SEED_START,
            "renderer": r.get("renderer", "official"), "kept": f["label"], "wall_s": time.perf_counter() - start,
            "finalists": [{"label": c["label"], "gen": c["gen"], "source": c["source"], "mean": x["mean"],
                           "std": x["std"], "scores": x.get("scores")} for c, x in zip(found, results)]})
        ctx.log(f"{ctx.spec.slug}: best.pt is now {f['label']} ({r['mean']:.2f} over {r['episodes']} episodes, "
                f"{time.perf_counter() - start:.0f} s)")

    def state_dict(self):
        return {"best": self.best, "best_params": self.best_params, "solved": self.solved,
                "top": [dict(e, params=[float(v) for v in e["params"]]) for e in self.top],
                "center": None if self.center is None else dict(self.center,
                                                                params=[float(v) for v in self.center["params"]])}

    def load_state_dict(self, state):
        self.best, self.best_params, self.solved = state["best"], state["best_params"], state["solved"]
        self.top, self.center = state.get("top", []), state.get("center")  # absent before finalists existed


class EarlyStopping(Hook):
    """Stop when the best training fitness has not improved for `patience` generations."""

    name = "early_stopping"

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.reset()

    def reset(self):
        self.best = -np.inf
        self.best_gen = -1
        self.wait = 0
        self.reason: str | None = None

    def on_env_start(self, ctx):
        self.reset()

    def _check(self, ctx):
        if self.patience > 0 and self.wait >= self.patience:
            self.reason = (f"no better best fitness for {self.wait} generations "
                           f"(best {self.best:.2f} at generation {self.best_gen}, patience {self.patience})")
            ctx.early_stopped = True
            ctx.stop(self.reason)

    def on_stage_start(self, ctx, stage):
        if stage == "controller":
            self._check(ctx)

    def on_step_end(self, ctx, stage, report):
        if stage != "controller" or report.metrics.get("mode") == "dream":
            return  # dream fitness is on M's scale: patience counts real generations only
        fitness = report.metrics["best_fitness"]
        if fitness > self.best + self.min_delta:
            self.best, self.best_gen, self.wait = fitness, report.index, 0
        else:
            self.wait += 1
        self._check(ctx)

    def state_dict(self):
        return {"best": float(self.best), "best_gen": self.best_gen, "wait": self.wait, "reason": self.reason}

    def load_state_dict(self, state):
        self.best, self.best_gen = state["best"], state["best_gen"]
        self.wait, self.reason = state["wait"], state["reason"]


class CheckpointWriter(Hook):
    """Resume state after every step (before any metrics row is written); best.pt on a new best."""

    name = "checkpoint"

    def on_step_end(self, ctx, stage, report):
        if report.metrics.get("new_best"):
            save_best(ctx, report.extra["best_params"], report.metrics["eval"]["best_so_far"], report.index)
        if report.state is None:
            return
        if stage == "controller":
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

    def on_stage_start(self, ctx, stage):
        if stage not in CSV_FIELDS:
            return
        fields, key = CSV_FIELDS[stage]
        path = ctx.files.metrics(stage)
        # Rows beyond the checkpoint were written by a run killed after it; they are redone.
        keep_upto = ctx.resume_index(stage)
        rows = [r for r in read_csv_rows(path)
                if int(r[key]) <= keep_upto or (stage != "controller" and int(r.get("round") or 0) < ctx.round)]
        write_csv_rows(path, fields, rows)
        if stage == "controller":
            for gen, snap in ctx.files.snapshots():
                if gen > keep_upto:
                    snap.unlink()
            saved = (ctx.resume_state or {}).get("metrics")
            if saved is not None and not any(int(r[key]) == keep_upto for r in rows):
                self.write_step(ctx, stage, keep_upto, saved)

    def on_step_end(self, ctx, stage, report):
        if stage in CSV_FIELDS:
            self.write_step(ctx, stage, report.index, report.metrics)

    @staticmethod
    def write_step(ctx, stage: str, index: int, metrics: dict) -> None:
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

    def on_env_start(self, ctx):
        ctx.write_results()

    def on_env_end(self, ctx):
        ctx.write_results()
        write_report_safely(ctx.run_dir)

    def on_run_end(self, run):
        write_report_safely(run.out)


def write_report_safely(run_dir: Path) -> None:
    """The report is a by-product of training: a plotting problem must never end a run."""
    try:
        from ..report import write_report

        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the report (%s); run wm-report %s later", exc, run_dir)
