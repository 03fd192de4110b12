"""Which controller becomes best.pt, and its score: the only code that writes best.pt.

During the controller stage every `every`-th generation's best candidate is scored on
snapshot seeds (`snapshot`); the best so far becomes best.pt, and one that reaches the env's
target is confirmed on the official env (confirmation seeds). At the end of each round the
finalists (best.pt, this round's other top snapshots and CMA-ES's mean) are scored again on
the pick seeds, and the highest becomes best.pt (`pick`): a snapshot of 8 episodes is often
only lucky. After training, best.pt is scored on the final seeds, which nothing else uses
(`final_evaluation`). Each step records what it did in best.pt's "eval" entry and through
ctx.record_best / ctx.record_final, which the results show.

ctx is the env's context as a hook sees it (context.HookContext: the curriculum's EnvContext);
hooks.builtin.EvalSnapshot calls Selection from the curriculum's loop.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from .agent import CONFIRM_SEED_START, FINAL_SEED_START, PICK_SEED_START, SNAPSHOT_SEED_START, Agent, check_bundle
from .checkpoint import load_bundle, save_torch
from .context import HookContext
from .errors import Interrupted
from .fileio import read_json, write_json


class StepReport(Protocol):
    """What selection reads and marks of a generation's stages.base.StepReport (selection sits
    below the stages, so the report is described here, not imported)."""

    index: int
    total: int | None
    metrics: dict[str, Any]
    extra: dict[str, Any]


def write_best(ctx: HookContext, params: ArrayLike, snapshot: dict, gen: int) -> None:
    """best.pt: this round's V and M with `params` as C, and the evaluation that chose it."""
    bundle = ctx.load_agent().bundle(params, {"snapshot": snapshot, "final": None}, ctx.provenance(gen=gen))
    save_torch(ctx.files.best, bundle)
    ctx.record_final(None)  # it scored the best.pt this one replaces


def keep_best(ctx: HookContext, report: StepReport) -> None:
    """best.pt for a snapshot that beat the earlier ones (Selection.snapshot marked it in
    report.metrics); the checkpoint hook calls this before the step's resume state is written,
    so a kill between the two redoes the step and writes best.pt again."""
    if report.metrics.get("new_best"):
        write_best(ctx, report.extra["best_params"], report.metrics["eval"]["best_so_far"], report.index)


def final_evaluation(ctx: HookContext, episodes: int) -> None:
    """best.pt on the official env, unseen seeds: the score that goes into the results. Kept
    (not redone) while best.pt and the episode count are those it scored; a signal leaves no
    score, so a rerun evaluates again."""
    best = ctx.files.best
    if not best.exists():
        return
    bundle = load_bundle(best, ctx.spec.id)
    agent, params = Agent.from_bundle(bundle, best, expect=ctx.spec)  # a damaged or foreign best.pt: one line
    cached = ctx.manifest.get("final_eval")
    snapshot = bundle["eval"].get("snapshot") or {}
    source = snapshot.get("source", "snapshot")  # the same gen's CMA-ES mean is other params
    if (cached and cached.get("episodes") == episodes and cached.get("gen") == snapshot.get("gen")
            and cached.get("source", "snapshot") == source):
        ctx.record_final(cached)
        return
    ctx.log(f"{ctx.spec.slug}: final evaluation of best.pt over {episodes} episodes (official env, "
            f"seeds {FINAL_SEED_START}+)")
    try:
        result = ctx.evaluate(params, episodes, FINAL_SEED_START, agent=agent)
    except Interrupted:
        return
    result["gen"], result["source"] = snapshot.get("gen"), source
    ctx.record_final(result)
    bundle["eval"]["final"] = {k: result[k] for k in ("mean", "std", "episodes", "seed_start")}
    save_torch(best, bundle)
    ctx.log(f"{ctx.spec.slug}: final score {result['mean']:.2f} ± {result['std']:.2f} "
            f"over {result['episodes']} episodes")


class Selection:
    """The snapshots' best, the target's confirmation and the finalist pick of one env; its
    state (state_dict) rides in the controller's checkpoint."""

    def __init__(self, every: int, episodes: int, confirm_episodes: int, renderer: str = "official",
                 finalists: int = 0, pick_episodes: int = 0, stop_at_target: bool = True):
        self.every, self.episodes, self.confirm_episodes = every, episodes, confirm_episodes
        self.stop_at_target = stop_at_target
        self.renderer = renderer
        self.finalists, self.pick_episodes = finalists, pick_episodes
        self.reset()

    def reset(self) -> None:
        self.best: dict | None = None
        self.best_params: list | None = None
        self.solved = False
        self.top: list[dict] = []  # this round's best snapshots: {gen, round, mean, params}
        self.center: dict | None = None  # CMA-ES's mean after the last generation: {gen, round, params}

    # -- during the stage ---------------------------------------------------------------------
    def snapshot(self, ctx: HookContext, report: StepReport) -> None:
        """After a generation: every `every`-th (and the first and last) is scored; the result
        goes into report.metrics ("eval", "new_best", "confirm"), which the checkpoint and
        artifact hooks write. Interrupted propagates: the step is then not checkpointed."""
        gen = report.index
        if "mean_params" in report.extra:
            self.center = {"gen": gen, "round": ctx.round, "params": report.extra["mean_params"]}
        if not (gen % self.every == 0 or (report.total is not None and gen == report.total - 1)):
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
        assert self.best is not None  # set above on the first snapshot (new_best)
        report.metrics["eval"] = dict(result, gen=gen, best_so_far=dict(self.best))
        ctx.record_best(self.best)
        target = ctx.spec.target
        if target is not None and new_best and result["mean"] >= target and not self.solved:
            confirm = ctx.evaluate(params, self.confirm_episodes, CONFIRM_SEED_START, renderer="official")
            report.metrics["confirm"] = confirm
            ctx.log(f"{ctx.spec.slug}: snapshot mean {result['mean']:.2f} reached the target {target}; "
                    f"confirmation over {confirm['episodes']} episodes: {confirm['mean']:.2f} ± {confirm['std']:.2f}")
            if confirm["mean"] >= target:
                self.solved = True
                ctx.mark_solved()
                if not self.stop_at_target:
                    ctx.log(f"{ctx.spec.slug}: target {target} confirmed at generation {gen}; training goes on "
                            f"(eval.stop_at_target: false)")
        if self.solved and self.stop_at_target:
            ctx.stop(f"target {target} reached and confirmed")

    def stop_if_solved(self, ctx: HookContext) -> None:
        if self.solved and self.stop_at_target:
            ctx.mark_solved()
            ctx.stop(f"target {ctx.spec.target} reached and confirmed")

    def _keep_top(self, entry: dict) -> None:
        top = [e for e in self.top if e["round"] == entry["round"]] + [entry]
        self.top = sorted(top, key=lambda e: -e["mean"])[:self.finalists]

    # -- at the end of a round -----------------------------------------------------------------
    def finalists_of(self, ctx: HookContext) -> list[dict]:
        """best.pt (with its own V and M, whatever round it came from), this round's other top
        snapshots and this round's CMA-ES mean; the same controller is listed once."""
        best = ctx.files.best
        if not best.exists():
            return []
        bundle = load_bundle(best, ctx.spec.id)
        agent, params = Agent.from_bundle(bundle, best, expect=ctx.spec)
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

    def pick(self, ctx: HookContext) -> None:
        """The finalists on the pick seeds; the highest becomes best.pt (a tie keeps best.pt).
        Recorded in eval/pick_round<R>.json, so a rerun of a finished round does not pick again;
        a signal leaves best.pt as it was and no pick file."""
        if (self.finalists < 1 or self.pick_episodes < 1 or (self.solved and self.stop_at_target)
                or ctx.interrupted()):
            return
        path = ctx.files.pick(ctx.round)
        last_gen = None if self.center is None else self.center["gen"]
        if path.exists() and read_json(path).get("last_gen") == last_gen and ctx.files.best.exists():
            # done for this round's generations (a rerun of a finished run): best.pt holds the pick
            bundle = load_bundle(ctx.files.best, ctx.spec.id)
            check_bundle(bundle, ctx.files.best, expect=ctx.spec)
            self.best = bundle["eval"]["snapshot"]
            self.best_params = [float(v) for v in bundle["controller"]["params"]]
            ctx.record_best(self.best)
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
                return
            results.append(r)
            ctx.log(f"{ctx.spec.slug}:   {f['label']}: {r['mean']:.2f} ± {r['std']:.2f}")
        won = max(range(len(found)), key=lambda i: (results[i]["mean"], -i))  # a tie keeps the earlier
        f, r = found[won], results[won]
        self.best = {"gen": f["gen"], "mean": r["mean"], "std": r["std"], "episodes": r["episodes"],
                     "renderer": r.get("renderer", "official"), "source": f["source"], "picked": True}
        self.best_params = [float(v) for v in f["params"]]
        ctx.record_best(self.best)
        if won > 0:  # best.pt holds V and M of the round its controller was trained in
            write_best(ctx, f["params"], self.best, f["gen"])
        else:
            bundle = load_bundle(ctx.files.best, ctx.spec.id)
            bundle["eval"]["snapshot"] = dict(bundle["eval"].get("snapshot") or {}, **self.best)
            save_torch(ctx.files.best, bundle)
        write_json(path, {
            "round": ctx.round, "last_gen": last_gen, "episodes": self.pick_episodes, "seed_start": PICK_SEED_START,
            "renderer": r.get("renderer", "official"), "kept": f["label"], "wall_s": time.perf_counter() - start,
            "finalists": [{"label": c["label"], "gen": c["gen"], "source": c["source"], "mean": x["mean"],
                           "std": x["std"], "scores": x.get("scores")} for c, x in zip(found, results)]})
        ctx.log(f"{ctx.spec.slug}: best.pt is now {f['label']} ({r['mean']:.2f} over {r['episodes']} episodes, "
                f"{time.perf_counter() - start:.0f} s)")

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"best": self.best, "best_params": self.best_params, "solved": self.solved,
                "top": [dict(e, params=[float(v) for v in e["params"]]) for e in self.top],
                "center": None if self.center is None else dict(self.center,
                                                                params=[float(v) for v in self.center["params"]])}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_params, self.solved = state["best"], state["best_params"], state["solved"]
        self.top, self.center = state.get("top", []), state.get("center")  # absent before finalists existed


__all__ = ["Selection", "final_evaluation", "keep_best", "write_best"]
