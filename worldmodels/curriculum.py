"""Walks envs x rounds x stages, calls the hooks, skips what a manifest says is finished."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import __version__
from .agent import Agent, eval_lanes, evaluate, resolve_device
from .checkpoint import check_state, load_state, load_torch, load_torch_state
from .config import STAGES, TrainConfig, changed_training_keys, effective, env_config, to_dict
from .console import banner, closing, log_line
from .engine.backends import make_backend
from .engine.rollout import LaneEngine
from .envs import probe_spec, renderer_used, resolve_env_ids, with_action_repeat
from .errors import ConfigError, Interrupted, RunFolderError, UserError
from .fileio import STORAGE_ERRNOS, atomic_copy, atomic_write_text, read_json, refuse_links_out, write_error, writing
from .hooks import Hook, default_hooks
from .models.vae import bundle_kind
from .runfolder import LOCK_NAME, REUSED_FILES, EnvFolder, RunFolder, RunLock
from .selection import final_evaluation
from .stages import GENERATIONS, produces_generations, stage_runners

log = logging.getLogger("worldmodels")


class Interrupt:
    """SIGINT/SIGTERM: finish the current step and checkpoint; a second signal exits at once."""

    def __init__(self):
        self.flag = False
        self.previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """The handlers from before install() (a library call leaves its caller's as it found them)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, signum, frame):
        if self.flag:
            log.warning("second signal: exiting now; the last checkpoint is intact")
            raise SystemExit(130)
        self.flag = True
        log.warning("signal %s received: stopping the running episodes; the last checkpoint stands "
                    "(signal again to exit at once)", signal.Signals(signum).name)


def versions() -> dict:
    import cma
    import gymnasium
    import torch

    out = {"worldmodels": __version__, "python": sys.version.split()[0], "torch": str(torch.__version__),
           "gymnasium": gymnasium.__version__, "cma": cma.__version__, "numpy": np.__version__}
    try:
        import ale_py

        out["ale_py"] = ale_py.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


class EnvContext:
    """Everything a stage or hook needs about the env being trained, and the stop flag: the one
    implementation of context.StageContext and context.HookContext."""

    def __init__(self, run: Run, env_id: str):
        self.run, self.cfg = run, env_config(run.cfg, env_matcher(env_id))
        self.spec = with_action_repeat(probe_spec(env_id), self.cfg.action_repeat)
        self.run_dir = run.out
        self.files = run.folder.env(self.spec.id)
        self.env_dir = self.files.path
        with writing(self.env_dir):  # Run._prepare_folder refused links out of every env folder
            self.env_dir.mkdir(parents=True, exist_ok=True)
        self.device, self.backend, self.hooks = run.device, run.backend, run.hooks
        self.recipe = run.recipe
        self.log = run.log
        self.round = 0
        self.stage: str | None = None
        self.should_stop, self.early_stopped = False, False
        self.stop_reason: str | None = None
        self.status = "running"
        self.best_eval: dict | None = None
        self.resume_state: dict | None = None
        self.final_eval: dict | None = None
        self._bar = None
        self._agent: tuple | None = None
        self._engines: dict[tuple[int, str], LaneEngine] = {}
        self.manifest = self.files.read_manifest()
        # What an earlier invocation recorded stays in the results while this one runs: the final
        # score of best.pt (until a new best.pt replaces it) and why training ended (unless this
        # invocation ends it for a reason of its own).
        self.final_eval = self.manifest.get("final_eval")
        self.best_eval = self.manifest.get("best_eval")
        self.prior_stop = (self.manifest.get("stop_reason"), bool(self.manifest.get("early_stopped")))
        self.env_steps = int(self.manifest.get("env_steps", 0))
        self.wall_before = float(sum(self.manifest.get("wall_s", {}).values()))
        self.t0 = time.perf_counter()
        self.stage_t0 = self.t0

    # -- manifest: the stage record ----------------------------------------------------------
    def stage_done(self, round_: int, stage: str) -> bool:
        if produces_generations(stage):  # reopened by a rerun unless a later round has begun
            return any(r["round"] > round_ for r in self.manifest["records"])
        # A stage the time or step budget cut short is done only while the budget stays used up:
        # a rerun with a larger budget finishes it (every stage resumes from its checkpoint).
        return any(r["round"] == round_ and r["stage"] == stage
                   and not (r.get("cut") and self.budget_reason() is None) for r in self.manifest["records"])

    def record_stage(self, stage: str, **info: Any) -> None:
        self.manifest["records"] = [r for r in self.manifest["records"]
                                    if not (r["round"] == self.round and r["stage"] == stage)]
        self.manifest["records"].append({"round": self.round, "stage": stage, **info})
        self.save_manifest()

    def stage_start_steps(self) -> int:
        """The env-step count when this round's run of the current stage began: recorded in the
        manifest the first time it is asked, so a stage resumed after a kill counts from there."""
        bases = self.manifest.setdefault(f"{self.stage}_base", {})
        return bases.setdefault(str(self.round), self.env_steps)

    def count_steps(self, n: int) -> None:
        """A stage took n more env steps."""
        self.env_steps += n

    def recount_steps(self, since_stage_start: int) -> None:
        """A resumed stage counted what its files hold: the steps it took since it began
        (stage_start_steps), whatever an interrupted invocation had counted."""
        self.env_steps = self.stage_start_steps() + since_stage_start

    def save_manifest(self) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            walls = self.manifest["wall_s"]
            walls[self.stage] = walls.get(self.stage, 0.0) + (now - self.stage_t0)
            self.stage_t0 = now
        self.manifest.update(env_steps=self.env_steps, status=self.status, stop_reason=self.stop_reason,
                             early_stopped=self.early_stopped, best_eval=self.best_eval,
                             final_eval=self.final_eval, id=self.spec.id)
        self.files.write_manifest(self.manifest)

    # -- budgets and stopping ------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.wall_before + (time.perf_counter() - self.t0)

    def out_of_budget(self, extra_steps: int = 0) -> bool:
        return self.budget_reason(extra_steps) is not None or self.interrupted()

    def budget_reason(self, extra_steps: int = 0) -> str | None:
        cfg = self.cfg
        if cfg.time_budget > 0 and self.elapsed() >= cfg.time_budget * 60:
            return f"time budget of {cfg.time_budget:g} minutes used"
        if cfg.max_env_steps > 0 and self.env_steps + extra_steps >= cfg.max_env_steps:
            return f"env step budget of {cfg.max_env_steps} used"
        return None

    def interrupted(self) -> bool:
        return self.run.interrupt.flag

    def stop(self, reason: str | None) -> None:
        self.should_stop = True
        if self.stop_reason is None:
            self.stop_reason = reason

    def stop_early(self, reason: str) -> None:
        """Stop, and end the env's training: no later round starts."""
        self.early_stopped = True
        self.stop(reason)

    # -- what the results record (hooks and selection set it through these) ----------------------
    def mark_solved(self) -> None:
        self.status = "solved"

    def record_best(self, best: dict | None) -> None:
        self.best_eval = best

    def record_final(self, result: dict | None) -> None:
        self.final_eval = result

    def resume_index(self, stage: str) -> int:
        """The last finished epoch/generation of this stage that a checkpoint holds (-1: none)."""
        if produces_generations(stage):
            return self.resume_state["gen"] if self.resume_state else -1
        state = load_torch_state(self.files.stage_state(stage), f"{stage} state")
        if state is not None:
            if state["round"] == self.round:
                return int(state["epoch"])
        return -1

    # -- progress ------------------------------------------------------------------------------
    def set_progress_bar(self, bar: Any) -> None:
        self._bar = bar

    def progress(self, total: int, initial: int = 0) -> None:
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.update(initial)

    def tick(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    # -- models --------------------------------------------------------------------------------
    def load_agent(self) -> Agent:
        """V and M as trained so far (cached until vae.pt or mdnrnn.pt change)."""
        vae_path, m_path = self.files.vae, self.files.mdnrnn
        for path, stage in ((vae_path, "vae"), (m_path, "mdnrnn")):
            if not path.exists():
                raise UserError(f"stage {self.stage} needs {path}; run the {stage} stage first (or --from RUN_DIR)")
        key = (vae_path.stat().st_mtime_ns, m_path.stat().st_mtime_ns)
        if self._agent is None or self._agent[0] != key:
            vae, m = load_torch(vae_path, "VAE weights"), load_torch(m_path, "MDN-RNN weights")
            agent = Agent.build_for(self.spec, vae["z_dim"], m["hidden"], m["gaussians"], self.cfg.controller,
                                    vae_kind=bundle_kind(vae))
            agent.vae.load_state_dict(vae["state_dict"])
            agent.mdnrnn.load_state_dict(m["state_dict"])
            agent.m_saw_ends = m.get("saw_ends")
            self._agent = (key, agent.to(self.device))
        return self._agent[1]

    def evaluate(self, params: Any, episodes: int, seed_start: int, renderer: str = "official",
                 agent: Agent | None = None) -> dict:
        """Seeds seed_start + i, the official env unless told; workers are kept between
        snapshots of this env. `agent`: V and M other than this round's (those of a best.pt).
        A signal ends it within a step: Interrupted."""
        agent = self.load_agent() if agent is None else agent.to(self.device)
        result = evaluate(agent, params, episodes, seed_start, self.device,
                          engine=self.eval_engine(episodes, renderer), abort=self.interrupted)
        return dict(result, renderer=renderer_used(self.spec, renderer))

    def eval_engine(self, episodes: int, renderer: str = "official") -> LaneEngine:
        key = (eval_lanes(episodes), renderer_used(self.spec, renderer))
        if key not in self._engines:
            self._engines[key] = LaneEngine(self.spec, key[0], renderer=renderer,
                                            max_steps=self.cfg.eval.max_steps, backend=self.backend)
        return self._engines[key]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def provenance(self, gen: int) -> dict:
        return {"run_dir": str(self.run_dir.resolve()), "seed": self.cfg.seed, "gen": gen,
                "round": self.round, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": self.run.versions}

    # -- results ---------------------------------------------------------------------------------
    def results_entry(self) -> dict:
        walls = dict(self.manifest.get("wall_s", {}))
        gens = self.files.generations()
        return {"id": self.spec.id, "slug": self.spec.slug, "target": self.spec.target,
                "status": "interrupted" if self.status == "running" and self.interrupted() else self.status,
                "final_eval": self.final_eval, "best_eval": self.best_eval, "generations": gens,
                "early_stopped": self.early_stopped,
                "early_stop_reason": self.stop_reason if self.early_stopped else None,
                "stop_reason": self.stop_reason, "env_steps": self.env_steps, "wall_s": walls}

    def write_results(self) -> None:
        self.save_manifest()
        self.run.update_results(self.results_entry())


class Run:
    """One wm-train invocation: a run folder, a config, a list of envs, a list of hooks."""

    def __init__(self, cfg: TrainConfig, out: Path, command: list[str], restart: bool = False,
                 hooks: list[Hook] | None = None, log_fn=None, from_dir: Path | None = None,
                 trust: bool = False, break_lock: bool = False, recipe: dict | None = None,
                 recipe_why: str = ""):
        self.cfg, self.out, self.command = cfg, Path(out), command
        self.recipe = recipe  # {"name", "configs"}: what the cli started cfg from, kept in run.yaml
        self.recipe_why = recipe_why or (f"recipe: {recipe['name']}" if recipe else "recipe: given by the caller")
        self.folder = RunFolder(self.out)
        self.lock = RunLock(self.out, break_lock=break_lock)
        self.source_lock = RunLock(Path(from_dir), shared=True) if from_dir is not None else None
        self.trust = trust  # --trust-run: read resume states this user's key did not sign
        self.from_dir = Path(from_dir) if from_dir is not None else None
        self.log = log_fn or log_line
        self.env_ids = resolve_env_ids(cfg.envs)
        for name in cfg.env_overrides:  # a misspelt env would silently override nothing
            try:
                ids = resolve_env_ids([name])
            except ConfigError as exc:
                raise ConfigError(f"env_overrides: {exc}") from None
            if len(ids) != 1:
                raise ConfigError(f"env_overrides: '{name}' names {len(ids)} envs; give each env its own entry")
        self.specs = []
        for env_id in self.env_ids:  # reject unusable envs (and an unusable --from) before anything is written
            spec = probe_spec(env_id)
            self.specs.append(with_action_repeat(spec, env_config(cfg, env_matcher(env_id)).action_repeat))
            if self.from_dir is not None:
                repeat = with_action_repeat(spec, env_config(cfg, env_matcher(env_id)).action_repeat).action_repeat
                check_source(self.from_dir, env_id, repeat, None if restart else self.folder.env(env_id), cfg)
        self.device = resolve_device(cfg.device)
        self.hooks = hooks if hooks is not None else default_hooks(cfg)
        self.interrupt = Interrupt()
        self.versions = versions()
        # Before anything is written: an unreachable cluster is one error line, not a half run.
        self.backend = make_backend(cfg.backend, cfg.workers, cfg.ray_address, log_fn=self.log)
        try:
            if self.source_lock is not None:
                self.source_lock.acquire()
            self._prepare_folder(restart)
        except OSError as exc:  # e.g. a parent folder this user may not read
            self.close()
            raise RunFolderError(f"--out {self.out}: {exc.strerror or exc}; choose a folder you can read "
                                 "and write") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the backend and drop the locks (run() does this when it ends)."""
        self.backend.close()
        self.lock.release()
        if self.source_lock is not None:
            self.source_lock.release()

    def _prepare_folder(self, restart: bool) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"--out {out} is a file, not a folder; choose another --out")
        run_yaml = self.folder.run_yaml
        if run_yaml.exists() and not restart:  # (with --restart it is removed below, under the lock)
            try:
                old = yaml.safe_load(run_yaml.read_text())["config"]
                changed = changed_training_keys(old, to_dict(self.cfg), [env_matcher(e) for e in self.env_ids])
            except Exception:  # noqa: BLE001
                raise RunFolderError(f"{run_yaml} is unreadable; rerun with --restart to start over") from None
            if changed:
                raise RunFolderError(f"{out} holds a run trained with other settings ({', '.join(changed)}); "
                                     "use the same settings to resume, --restart to start over, or another --out")
            self.log(f"resuming the run in {out}")
        elif not run_yaml.exists() and out.exists() and any(out.iterdir()) and not self.folder.results.exists():
            if any(p.name not in (".gitkeep", LOCK_NAME) for p in out.iterdir()):
                raise RunFolderError(f"--out {out} is not empty and holds no run; choose an empty or new folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot create --out {out}: {exc.strerror}; choose a writable folder") from None
        self.lock.acquire(self.command)  # before anything of the run is removed or written
        if run_yaml.exists() and restart:
            self.log(f"--restart: removing the earlier run in {out}")
            for child in self.folder.trainer_paths():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            kept = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
            if kept:
                self.log(f"--restart: kept what wm-train did not write: {', '.join(kept)}")
        # No write of this run may follow a link out of the folder (a crafted env folder or
        # report/ that links elsewhere): refused before anything is written.
        for folder in [self.folder.env(e).path for e in self.env_ids] + [self.folder.report_dir,
                                                                          self.folder.tensorboard, self.folder.wandb]:
            refuse_links_out(out, folder)
        if not restart:  # a foreign resume state is refused before this run writes anything
            for env_id in self.env_ids:
                check_state(self.folder.env(env_id).controller_state, self.trust)
        record = {"config": to_dict(self.cfg), "command": self.command, "versions": self.versions}
        if self.recipe is not None:
            record["recipe"] = self.recipe
        atomic_write_text(run_yaml, yaml.safe_dump(record, sort_keys=False))

    def env_configs(self) -> dict[str, TrainConfig]:
        """Each env's own config (env_overrides applied), by slug, in the curriculum's order."""
        return {spec.slug: env_config(self.cfg, env_matcher(spec.id)) for spec in self.specs}

    def update_results(self, entry: dict) -> None:
        self.folder.update_results(entry, self.env_ids)

    def call(self, method: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, method)(*args)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        except OSError as exc:
            # A write that no helper guards (a full disk, a folder turned read-only) is one line
            # too; the files written before it are intact (every write replaces a file whole).
            if exc.errno in STORAGE_ERRNOS:
                raise write_error(exc.filename or self.out, exc) from None
            raise
        finally:
            self.interrupt.uninstall()
            self.close()

    def _run(self) -> dict:
        self.interrupt.install()
        for line in banner(self, list(self.env_configs().values()), self.specs, self.recipe_why):
            self.log(line)
        self.call("on_run_start", self)
        for env_id in self.env_ids:
            ctx = EnvContext(self, env_id)
            if self.from_dir is not None:
                reuse_from(ctx, self.from_dir)
            try:
                self.train_env(ctx)
            except BaseException as exc:
                for hook in self.hooks:  # best effort: never mask the error that ended the run
                    try:
                        hook.on_exception(ctx, exc)
                    except Exception:  # noqa: BLE001
                        pass
                try:
                    ctx.save_manifest()
                except Exception:  # noqa: BLE001 - e.g. the disk that just filled up
                    pass
                raise
            finally:
                ctx.close()
            if self.interrupt.flag:
                for line in closing(self, {}, interrupted=True):
                    self.log(line)
                break
        self.call("on_run_end", self)
        return read_json(self.folder.results) if self.folder.results.exists() else {}

    def train_env(self, ctx: EnvContext) -> None:
        cfg = self.cfg
        self.call("on_env_start", ctx)
        state = load_state(ctx.files.controller_state, log=self.log, trust=self.trust)
        if state is not None:
            self._restore(ctx, state)
        runners = stage_runners()
        for round_ in range(cfg.rounds):
            ctx.round = round_
            if ctx.status == "solved" and cfg.eval.stop_at_target:
                break
            if round_ > 0 and (ctx.early_stopped or ctx.budget_reason()):
                # Early stopping ends the env; a used-up budget leaves no time for another round's
                # collect, V and M (a rerun with a larger budget goes on from here).
                ctx.stop(ctx.budget_reason() or "early stopped")
                break
            for stage in STAGES:
                if stage not in cfg.stages or ctx.stage_done(round_, stage):
                    if stage in cfg.stages:
                        self.log(f"{ctx.spec.slug}: round {round_} {stage} already finished, skipping")
                    continue
                if produces_generations(stage) and state is not None and state["round"] == round_:
                    self.log(f"resuming {ctx.spec.slug} at generation {state['gen'] + 1}")
                self._run_stage(ctx, runners[stage], stage)
                if self.interrupt.flag:
                    ctx.write_results()
                    return
        self._final_eval(ctx)
        if self.interrupt.flag:
            ctx.write_results()
            return
        if ctx.stop_reason is None and ctx.prior_stop[0] is not None:  # this invocation trained nothing new
            ctx.stop_reason, ctx.early_stopped = ctx.prior_stop
        if ctx.status != "solved":
            ctx.status = "failed" if ctx.final_eval is not None or GENERATIONS in cfg.stages else "running"
        self.call("on_env_end", ctx)

    def _restore(self, ctx: EnvContext, state: dict) -> None:
        ctx.resume_state = state
        ctx.env_steps = max(ctx.env_steps, int(state["env_steps"]))
        for hook in self.hooks:
            if hook.name in state.get("hooks", {}):
                hook.load_state_dict(state["hooks"][hook.name])
        snap = state.get("hooks", {}).get("eval_snapshot", {})
        ctx.best_eval = snap.get("best")
        if state.get("status") == "solved":
            ctx.status = "solved"

    def _run_stage(self, ctx: EnvContext, runner, stage: str) -> None:
        ctx.stage, ctx.stage_t0 = stage, time.perf_counter()
        ctx.should_stop = False
        self.call("on_stage_start", ctx, stage)
        gen = runner(ctx)
        try:
            for report in gen:
                self.call("on_step_end", ctx, stage, report)
                if produces_generations(stage):
                    ctx.resume_state = report.state
                if ctx.should_stop:
                    break
        except Interrupted:
            pass  # a snapshot or confirmation cut short: this step's checkpoint is not written, a rerun redoes it
        finally:
            gen.close()
        self.call("on_stage_end", ctx, stage)
        if not self.interrupt.flag and not produces_generations(stage):
            cut = ctx.budget_reason() is not None
            ctx.record_stage(stage, env_steps=ctx.env_steps, **({"cut": True} if cut else {}))
        ctx.save_manifest()
        ctx.stage = None

    def _final_eval(self, ctx: EnvContext) -> None:
        ctx.stage, ctx.stage_t0 = "final_eval", time.perf_counter()
        final_evaluation(ctx, self.cfg.eval.final_episodes)
        ctx.save_manifest()
        ctx.stage = None


def reuse_from(ctx: EnvContext, source: Path) -> None:
    """--from RUN_DIR (checked by Run.__init__, check_source): link the data, copy V and M of an
    earlier run; mark those stages done."""
    src = RunFolder(source).env(ctx.spec.id)
    if ctx.manifest["records"]:
        return  # already reused (or trained) in this run folder
    manifest = src.read_manifest()
    done = {r["stage"] for r in manifest["records"] if r["round"] == 0}
    for theirs, ours in ((src.data, ctx.files.data), (src.encoded, ctx.files.encoded)):
        if theirs.exists():  # (an attempt killed mid-way linked some: the rest are linked now)
            link_files(theirs.resolve(), ours)
    for name in REUSED_FILES:
        if (src.path / name).exists():
            atomic_copy(src.path / name, ctx.env_dir / name)
    for stage in ("collect", "vae", "encode", "mdnrnn"):
        if stage in done:
            ctx.record_stage(stage, reused_from=str(source.resolve()))
    # The env steps behind what is reused (the data), not the source's whole run: its controller
    # generations are not part of this run.
    reused = [r for r in manifest["records"]
              if r["round"] == 0 and r["stage"] in ("collect", "vae", "encode", "mdnrnn")]
    ctx.env_steps = max((int(r.get("env_steps", 0)) for r in reused), default=0)
    ctx.log(f"{ctx.spec.slug}: reusing {', '.join(s for s in ('collect', 'vae', 'encode', 'mdnrnn') if s in done)} "
            f"from {source}")


def link_files(source: Path, target: Path) -> None:
    """target: real folders like source's, each file a symlink to source's. Files this run
    writes (a later round's rollouts, encodings) land in its own folders, and every write
    replaces a path atomically (a link included) rather than writing through it, so nothing
    under source changes. Links already there are kept."""
    for folder, _dirs, files in os.walk(source):
        here = target / Path(folder).relative_to(source)
        with writing(here):
            here.mkdir(parents=True, exist_ok=True)
            for name in files:
                if not os.path.lexists(here / name):
                    (here / name).symlink_to(Path(folder) / name)


def env_matcher(env_id: str) -> Callable[[str], bool]:
    """matches(name): whether an env_overrides entry named name is about env_id."""
    def matches(name: str) -> bool:
        try:
            return resolve_env_ids([name]) == [env_id]
        except ConfigError:  # e.g. an env no longer registered, in an older run.yaml
            return False
    return matches


def check_source(source: Path, env_id: str, repeat: int, env_dir: EnvFolder | None,
                 cfg: TrainConfig | None = None) -> None:
    """--from RUN_DIR must hold env_id trained with the same action repeat and, where cfg is
    given, V and M trained with this run's vae.* and mdnrnn.* settings, since it reuses them
    (unless this run's env_dir already holds stages, reused or trained)."""
    src = RunFolder(source).env(env_id)
    if not src.manifest.exists():
        raise RunFolderError(f"--from {source}: no trained {env_id} there ({src.manifest} missing)")
    try:
        if env_dir is not None and env_dir.has_records():
            return
    except (OSError, ValueError, UserError):
        pass  # an unreadable manifest of this run is reported where it is loaded
    theirs = _source_action_repeat(source, env_id)
    if theirs != repeat:
        raise RunFolderError(f"--from {source}: its data was collected with action_repeat {theirs}, this run "
                             f"holds actions for {repeat} (V and M would see other dynamics); "
                             f"use --set action_repeat={theirs}")
    if cfg is not None:
        changed = _source_model_keys(source, env_id, cfg)
        if changed:
            raise RunFolderError(f"--from {source}: its V and M, which --from reuses, were trained with other "
                                 f"settings ({', '.join(changed)}); use its settings, or train without --from")


def _source_model_keys(source: Path, env_id: str, cfg: TrainConfig) -> list[str]:
    """The vae.* and mdnrnn.* keys whose value for env_id differs between the run in source and
    cfg (as changed_training_keys compares them; an unreadable run.yaml: none)."""
    try:
        theirs = RunFolder(source).read_config()
        changed = changed_training_keys(theirs, to_dict(cfg), [env_matcher(env_id)])
    except (OSError, KeyError, TypeError, ValueError, AttributeError, UserError):
        return []
    return [k for k in changed if k.startswith(("vae.", "mdnrnn."))]


def _source_action_repeat(source: Path, env_id: str) -> int:
    """The action repeat an earlier run used for env_id (1 for runs from before the setting)."""
    try:
        cfg = RunFolder(source).read_config()
        repeat = int(effective(cfg, env_matcher(env_id)).get("action_repeat", 1))
    except (OSError, KeyError, TypeError, ValueError, AttributeError, UserError):
        repeat = 1
    return 1 if env_id.startswith("ALE/") else max(1, repeat)


__all__ = ["Run", "EnvContext"]
