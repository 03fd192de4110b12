"""The run folder: its layout, its manifest and results, and its lock. Every path is named here.

    <run>/run.yaml                  config, command and versions of the run (RunFolder.run_yaml)
    <run>/curriculum_results.json   one entry per env, rewritten as each env goes on (.results)
    <run>/wm-train.lock             the trainer's lock (RunLock)
    <run>/report/                   wm-report's output
    <run>/<slug>/                   one env (EnvFolder): manifest.json, data/, vae.pt, encoded/,
                                    mdnrnn.pt, controller/state.pkl, metrics CSVs, eval/, best.pt

The lock: a trainer holds an exclusive flock on <out>/wm-train.lock for its whole run; the kernel
drops it when the process ends, even by kill -9, so a crashed run never blocks its own resume.
The file names the holder (pid, host, start time, command) so that a refused second trainer can
say who holds the folder. flock does not reach across hosts on every network file system, so a
lock file that names another host is refused too, unless the user says that trainer is gone
(--break-lock); a run that ends normally empties the file, so only a crashed run leaves a name.
A run that reads another folder (--from SRC) holds a shared lock on SRC's file: SRC cannot be
trained on meanwhile, and a SRC that is being trained is refused. Nothing is written into SRC.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

from .errors import RunFolderError
from .fileio import read_json, read_yaml, write_json
from .names import slug

RUN_YAML = "run.yaml"
RESULTS = "curriculum_results.json"
LOCK_NAME = "wm-train.lock"
REPORT_DIR = "report"
RESULTS_VERSION = 1

# Files of an env folder that --from copies (V, M and what shows them); data/ and encoded/ are linked.
REUSED_FILES = ("vae.pt", "mdnrnn.pt", "vae_samples.npz", "vae_metrics.csv", "mdnrnn_metrics.csv")
METRICS_FILES = {"controller": "metrics.csv", "vae": "vae_metrics.csv", "mdnrnn": "mdnrnn_metrics.csv"}


class EnvFolder:
    """<run>/<slug>/: one env's files. Paths only, and the manifest (the stage record)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    manifest = property(lambda self: self.path / "manifest.json")
    best = property(lambda self: self.path / "best.pt")
    video = property(lambda self: self.path / "best.mp4")  # one episode of best.pt, at the env's end
    vae = property(lambda self: self.path / "vae.pt")
    mdnrnn = property(lambda self: self.path / "mdnrnn.pt")
    vae_samples = property(lambda self: self.path / "vae_samples.npz")
    controller_state = property(lambda self: self.path / "controller" / "state.pkl")
    data = property(lambda self: self.path / "data")
    encoded = property(lambda self: self.path / "encoded")
    eval_dir = property(lambda self: self.path / "eval")

    def weights(self, stage: str) -> Path:
        """vae.pt or mdnrnn.pt: the stage's trained model."""
        return self.path / f"{stage}.pt"

    def stage_state(self, stage: str) -> Path:
        """vae_state.pt / mdnrnn_state.pt: the epoch checkpoint a killed stage resumes from."""
        return self.path / f"{stage}_state.pt"

    def metrics(self, stage: str = "controller") -> Path:
        return self.path / METRICS_FILES[stage]

    def rollouts(self, round_: int) -> Path:
        return self.data / f"round{round_}"

    def rollout_files(self) -> list[Path]:
        return sorted(self.data.glob("round*/ep_*.npz"))

    def encodings(self, round_: int) -> Path:
        return self.encoded / f"round{round_}"

    def snapshot(self, gen: int) -> Path:
        """eval/gen_NNNN.json: the evaluation snapshot of a generation."""
        return self.eval_dir / f"gen_{gen:04d}.json"

    def snapshots(self) -> list[tuple[int, Path]]:
        out = []
        for path in self.eval_dir.glob("gen_*.json"):
            stem = path.stem.split("_", 1)[1]
            if stem.isdigit():
                out.append((int(stem), path))
        return sorted(out)

    def pick(self, round_: int) -> Path:
        """eval/pick_roundN.json: the finalists of a round's pick and which one best.pt holds."""
        return self.eval_dir / f"pick_round{round_}.json"

    def generations(self) -> int:
        """Rows in metrics.csv: the controller generations trained so far."""
        path = self.metrics()
        return max(0, len(path.read_text().strip().splitlines()) - 1) if path.exists() else 0

    def read_manifest(self) -> dict:
        data = read_json(self.manifest) if self.manifest.exists() else {}
        data.setdefault("records", [])
        data.setdefault("wall_s", {})
        return data

    def write_manifest(self, data: dict) -> None:
        write_json(self.manifest, data)

    def looks_trained(self) -> bool:
        """Whether any file a trainer writes is here (a folder wm-report should show)."""
        return any(p.exists() for p in (self.manifest, self.metrics(), self.eval_dir, self.metrics("vae"),
                                        self.metrics("mdnrnn"), self.vae_samples, self.best, self.data))

    def has_records(self) -> bool:
        return self.manifest.exists() and bool(read_json(self.manifest).get("records"))


class RunFolder:
    """<run>/: run.yaml, curriculum_results.json, the lock, and an EnvFolder per env."""

    def __init__(self, path: Path):
        self.path = Path(path)

    run_yaml = property(lambda self: self.path / RUN_YAML)
    results = property(lambda self: self.path / RESULTS)
    lock = property(lambda self: self.path / LOCK_NAME)
    report_dir = property(lambda self: self.path / REPORT_DIR)
    tensorboard = property(lambda self: self.path / "tensorboard")
    wandb = property(lambda self: self.path / "wandb")  # --track: W&B's files and the run's id there

    def env(self, env_id: str) -> EnvFolder:
        return EnvFolder(self.path / slug(env_id))

    def env_by_slug(self, name: str) -> EnvFolder:
        return EnvFolder(self.path / name)

    def trainer_paths(self) -> list[Path]:
        """What wm-train wrote here (what --restart removes): run.yaml, the results, the report
        and TensorBoard and W&B folders, env folders, and temp files of an interrupted write. A user's own
        files in the folder are not among them; the lock file is kept for the lock's holder."""
        own = {RUN_YAML, RESULTS, REPORT_DIR, "tensorboard", "wandb"}
        out = []
        for child in self.path.iterdir():
            if child.name in own or (child.name.startswith(".") and child.name.endswith(".tmp")):
                out.append(child)
            elif child.is_dir() and not child.is_symlink() and EnvFolder(child).looks_trained():
                out.append(child)
        return sorted(out)

    def read_config(self) -> dict:
        """The config recorded in run.yaml."""
        return read_yaml(self.run_yaml)["config"]

    def read_recipe(self) -> dict | None:
        """The recipe recorded in run.yaml ({"name", "configs"}), or None (no run, or one from
        before recipes were recorded)."""
        if not self.run_yaml.exists():
            return None
        recipe = read_yaml(self.run_yaml).get("recipe")
        return recipe if isinstance(recipe, dict) and isinstance(recipe.get("configs"), list) else None

    def read_results(self) -> dict:
        return read_json(self.results) if self.results.exists() else {"version": RESULTS_VERSION, "envs": []}

    def update_results(self, entry: dict, order: list[str]) -> None:
        """Replace entry's env in curriculum_results.json, envs sorted by `order` (their ids)."""
        from datetime import datetime, timezone

        data = self.read_results()
        envs = [e for e in data["envs"] if e["id"] != entry["id"]]
        envs.append(entry)
        rank = {env_id: i for i, env_id in enumerate(order)}
        envs.sort(key=lambda e: rank.get(e["id"], len(rank)))
        data.update(envs=envs, updated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_json(self.results, data)


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another wm-train"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"wm-train pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {when}"


class RunLock:
    """flock on <folder>/wm-train.lock: exclusive for the trainer of a folder, shared for a run
    that reads it (--from). acquire() raises RunFolderError with one line when it is taken."""

    def __init__(self, folder: Path, shared: bool = False, break_lock: bool = False):
        self.path = Path(folder) / LOCK_NAME
        self.shared, self.break_lock = shared, break_lock
        self.fd: int | None = None

    def acquire(self, command: list[str] | None = None) -> RunLock:
        fd = self._open()
        if fd is None:
            return self  # no trainer of this version has held SRC: nothing to wait for
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            what = "is being trained by" if self.shared else "is in use by"
            raise RunFolderError(f"{self.path.parent} {what} {_describe(holder)}; wait for it to finish "
                                 "or stop it (or choose another folder)") from None
        if not self.shared:
            holder = _holder(fd)
            host = socket.gethostname()
            if holder.get("host") not in (None, host) and not self.break_lock:
                os.close(fd)
                raise RunFolderError(f"{self.path} names {_describe(holder)}, another host, where a trainer "
                                     "may still run; if none does, rerun with --break-lock")
            info = {"pid": os.getpid(), "host": host, "started": time.time(),
                    "command": command if command is not None else sys.argv}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    def _open(self) -> int | None:
        """The lock file, never through a link: a crafted folder whose lock file is a link (or a
        FIFO, a device) would have the trainer empty and write whatever it points to. None: a
        shared lock on a folder without one."""
        flags = (os.O_RDONLY if self.shared else os.O_RDWR | os.O_CREAT) | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            if self.shared:  # reading SRC changes nothing in it
                return None
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
                raise RunFolderError(f"{self.path} is a symbolic link, not a lock file; wm-train writes "
                                     "nothing through it: remove it (or choose another folder)") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunFolderError(f"{self.path} is not a regular file; remove it (or choose another folder)")
        return fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if not self.shared:
                os.ftruncate(self.fd, 0)  # a normal end leaves no holder's name behind
        except OSError:
            pass
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
