"""wm-train --live: watch the current best agent play while training goes on.

The window lives in its own process (multiprocessing, spawn), so it can neither slow training
down much (it runs at low priority with one torch thread) nor crash it (OpenCV's GUI aborts the
process that owns it when something goes wrong with the display). The trainer only sends small
messages over a queue: which env folder is being trained, and the generation. The child plays
the official env with the agent of that folder's best.pt and reloads it when the file changes.

Without a display the hook logs one warning and does nothing else.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..context import HookContext, RunContext
from ..runfolder import EnvFolder
from ..stages.base import StepReport, produces_generations
from .base import Hook

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue

log = logging.getLogger("worldmodels")

NO_DISPLAY_WARNING = "no display: --live shows nothing; training goes on"
LIVE_FPS = 30.0
LIVE_TITLE = "worldmodels live"


class LiveView(Hook):
    """Hook for wm-train --live. Messages to the child: ("env", env_dir, slug), ("gen", index),
    ("env_end", env_dir), ("stop",). Nothing here ever raises into the training loop."""

    name = "live"

    def __init__(self, fps: float = LIVE_FPS, display_check=None):
        self.fps = fps
        self.display_check = display_check
        self.process: BaseProcess | None = None
        self.queue: Queue | None = None  # set before process, so there whenever process is
        self.enabled = True
        self.reported = False
        self.exitcode: int | None = None
        """The child's exit code once close() has ended it."""

    # -- the trainer's side ------------------------------------------------------------------
    def on_run_start(self, run: RunContext) -> None:
        self._start()

    def _start(self) -> None:
        if self.process is not None or not self.enabled:
            return
        try:
            if self.display_check is not None:
                ok = self.display_check()
            else:
                from ..viewer import display_available

                ok = display_available()
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            self.enabled = False
            log.warning(NO_DISPLAY_WARNING)
            return
        try:
            spawn = mp.get_context("spawn")
            self.queue = spawn.Queue(maxsize=256)
            self.queue.cancel_join_thread()  # never wait on a dead child's pipe at exit
            self.process = spawn.Process(target=child_main, args=(self.queue, os.getpid(), self.fps),
                                       name="wm-live", daemon=True)
            self.process.start()
        except Exception as exc:  # noqa: BLE001
            self.enabled = False
            self.process = None
            log.warning("--live: could not start the live view (%s); training goes on", exc)

    def _send(self, *msg) -> None:
        if not self.enabled or self.process is None or self.queue is None:
            return
        if not self.process.is_alive():
            self._gone()
            return
        try:
            self.queue.put_nowait(msg)
        except queue_mod.Full:
            pass  # the child is busy; it catches up with the next message
        except (OSError, ValueError, AssertionError):
            self._gone()

    def _gone(self) -> None:
        """The child exited: the user closed the window, or it failed. Say so once."""
        self.enabled = False
        if self.reported:
            return
        self.reported = True
        code = self.process.exitcode if self.process is not None else None
        if code == 0:
            log.info("--live: the live view was closed; training goes on")
        else:
            log.warning("--live: the live view stopped (exit code %s); training goes on", code)

    def on_env_start(self, ctx: HookContext) -> None:
        self._send("env", str(Path(ctx.env_dir).resolve()), ctx.spec.slug)

    def on_step_end(self, ctx: HookContext, stage: str, report: StepReport) -> None:
        if produces_generations(stage):
            self._send("gen", int(report.index))

    def on_env_end(self, ctx: HookContext) -> None:
        self._send("env_end", str(Path(ctx.env_dir).resolve()))

    def on_exception(self, ctx: HookContext, exc: BaseException) -> None:
        self.close()

    def on_run_end(self, run: RunContext) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to stop; end it if it does not within `timeout` seconds."""
        proc, self.process = self.process, None
        self.enabled = False
        if proc is None:
            return
        assert self.queue is not None  # set before the process
        try:
            if proc.is_alive():
                try:
                    self.queue.put_nowait(("stop",))
                except Exception:  # noqa: BLE001
                    pass
                proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        except Exception:  # noqa: BLE001
            pass
        self.exitcode = proc.exitcode
        try:
            self.queue.close()
        except Exception:  # noqa: BLE001
            pass


# -- the child's side --------------------------------------------------------------------------
class ParentGone(Exception):
    pass


class StopAsked(Exception):
    pass


class Inbox:
    """What the trainer said so far; poll() drains the queue and checks the parent is alive."""

    def __init__(self, queue, parent_pid: int):
        self.queue, self.parent_pid = queue, parent_pid
        self.env_dir: Path | None = None
        self.slug = ""
        self.gen: int | None = None
        self.env_done = False
        self.last_check = 0.0

    def poll(self) -> None:
        if os.getppid() != self.parent_pid:
            raise ParentGone()
        while True:
            try:
                msg = self.queue.get_nowait()
            except queue_mod.Empty:
                return
            except (EOFError, OSError, ValueError):
                raise ParentGone() from None
            kind = msg[0]
            if kind == "stop":
                raise StopAsked()
            if kind == "env":
                self.env_dir, self.slug, self.gen, self.env_done = Path(msg[1]), msg[2], None, False
            elif kind == "gen":
                self.gen = msg[1]
            elif kind == "env_end" and self.env_dir is not None and Path(msg[1]) == self.env_dir:
                self.env_done = True


class BestWatcher:
    """The agent of env_dir/best.pt, reloaded when the file changes (checked once a second)."""

    def __init__(self):
        self.path: Path | None = None
        self.key = None
        self.agent = None
        self.params = None
        self.info: dict = {}
        self.spec_id: str | None = None
        self.checked = 0.0

    def changed(self, env_dir: Path | None) -> bool:
        """True when a different agent should be shown than the one loaded now."""
        path = EnvFolder(env_dir).best if env_dir is not None else None
        if path != self.path:
            return True
        now = time.monotonic()
        if now - self.checked < 1.0:
            return False
        self.checked = now
        return self._stat(path) != self.key

    @staticmethod
    def _stat(path: Path | None):
        if path is None:
            return None
        try:
            st = path.stat()
            return (st.st_mtime_ns, st.st_size)
        except (OSError, AttributeError):
            return None

    def load(self, env_dir: Path | None) -> bool:
        """(Re)load; False when there is no usable best.pt yet."""
        from ..agent import Agent
        from ..checkpoint import load_bundle

        self.path = EnvFolder(env_dir).best if env_dir is not None else None
        self.checked = time.monotonic()
        self.key = self._stat(self.path)
        self.agent = None
        if self.key is None:
            return False
        assert self.path is not None  # a missing path has no key
        try:
            bundle = load_bundle(self.path)
            agent, params = Agent.from_bundle(bundle)
        except Exception:  # noqa: BLE001 - being replaced, or not a bundle: try again later
            self.key = None
            return False
        self.agent, self.params = agent, params
        snap = (bundle.get("eval") or {}).get("snapshot") or {}
        self.info = {"gen": (bundle.get("provenance") or {}).get("gen", snap.get("gen")),
                     "snapshot_mean": snap.get("mean")}
        return True


def child_main(queue: Queue, parent_pid: int, fps: float = LIVE_FPS) -> None:
    """The live view process: never lets an exception out (exit 1 with one line instead)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's; it stops us
    except (ValueError, OSError):
        pass
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    code = 0
    try:
        _child_loop(queue, parent_pid, fps)
    except (ParentGone, StopAsked):
        pass
    except Exception as exc:  # noqa: BLE001
        print(f"wm-train --live: the live view stopped: {exc!r}; training goes on", file=sys.stderr, flush=True)
        code = 1
    # The window and the env are closed; skip the interpreter's teardown (torch, Qt), which at
    # nice 10 on a busy machine took longer than the trainer waits for us to stop.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _child_loop(queue, parent_pid: int, fps: float) -> None:
    import numpy as np
    import torch

    from ..envs import make_env
    from ..viewer import Window, action_meanings, compose, decode_image, describe_action, message_frame, run_episode

    torch.set_num_threads(1)
    inbox = Inbox(queue, parent_pid)
    best = BestWatcher()
    window = Window(LIVE_TITLE, fps)
    env, env_for, meanings = None, None, None
    episode = 0
    try:
        while True:
            inbox.poll()
            if best.changed(inbox.env_dir):
                best.load(inbox.env_dir)
            if best.agent is None:
                gen = "" if inbox.gen is None else f"  (generation {inbox.gen})"
                lines = (["waiting for training to start"] if inbox.env_dir is None else
                         [f"{inbox.slug}: waiting for the first best.pt{gen}",
                          "(written at the first eval snapshot of the controller stage)"])
                if not window.show(message_frame(["worldmodels live"] + lines)):
                    return
                continue
            agent = best.agent
            if env_for != agent.spec.id:
                if env is not None:
                    env.close()
                env = make_env(agent.spec, renderer="official")
                env_for, meanings = agent.spec.id, action_meanings(env)
            assert env is not None  # made above for this agent's env
            window.period = agent.spec.action_repeat / max(fps, 1e-3)  # one frame per (held) action
            policy = agent.policy(np.asarray(best.params).reshape(1, -1), 1, "cpu")
            episode += 1
            quit_: list[bool] = []

            def on_step(s, agent=agent, episode=episode, meanings=meanings, quit_=quit_) -> bool:
                inbox.poll()
                if best.changed(inbox.env_dir):
                    return False  # a new best agent (or a new env): start over with it
                info = best.info
                snap = info.get("snapshot_mean")
                text = [f"LIVE {inbox.slug or agent.spec.slug}" + ("  (env done)" if inbox.env_done else ""),
                        f"generation {inbox.gen if inbox.gen is not None else '-'}",
                        f"best.pt: gen {info.get('gen')}" + (f", eval {snap:.1f}" if snap is not None else ""),
                        f"episode {episode}  step {s.step}", f"score so far {s.score:g}",
                        f"action {describe_action(s.action, meanings)}"]
                frame = compose(s.raw, s.seen, decode_image(agent, s.z), text)
                if not window.show(frame):
                    quit_.append(True)
                    return False
                return True

            with torch.no_grad():
                run_episode(agent, policy, env, 2_000_000_000 + episode, on_step)
            if quit_:
                return
    finally:
        if env is not None:
            env.close()
        window.close()
