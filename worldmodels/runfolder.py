"""The run folder's lock: one trainer per folder, and no trainer on a folder others read from.

A trainer holds an exclusive flock on <out>/wm-train.lock for its whole run; the kernel drops it
when the process ends, even by kill -9, so a crashed run never blocks its own resume. The file
names the holder (pid, host, start time, command) so that a refused second trainer can say who
holds the folder. flock does not reach across hosts on every network file system, so a lock file
that names another host is refused too, unless the user says that trainer is gone
(--break-lock); a run that ends normally empties the file, so only a crashed run leaves a name.
A run that reads another folder (--from SRC) holds a shared lock on SRC's file: SRC cannot be
trained on meanwhile, and a SRC that is being trained is refused. Nothing is written into SRC.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import RunFolderError

LOCK_NAME = "wm-train.lock"


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
        if self.shared:
            try:
                fd = os.open(self.path, os.O_RDONLY)  # reading SRC changes nothing in it
            except FileNotFoundError:
                return self  # no trainer of this version has held SRC: nothing to wait for
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
