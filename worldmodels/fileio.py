"""Files written whole or not at all, and read with one clear error line when they are damaged.

Every file of a run folder goes through here: a temp file in the same folder, fsync, then
os.replace, so a crash or a full disk leaves the earlier file intact. No torch: the report and
the viewers import this module.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RunFolderError, UserError

# errno values that mean the storage refuses writes (not a bug): read-only, full, over quota.
STORAGE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def write_error(path: str | Path, exc: OSError) -> UserError:
    """The one line for a write that failed (a full disk, a folder turned read-only)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    what = "free some space" if full else "make it writable"
    return UserError(f"cannot write {path}: {exc.strerror or exc}; {what} or choose another folder; "
                     "earlier files are intact")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Around a write that is not atomic_write_bytes (mkdir, unlink, a link, a copy): an OSError
    in it becomes write_error's one line (UserError) instead of a traceback."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: never half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run folders are read by other tools and users
        os.replace(tmp, path)
    except OSError as exc:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass  # e.g. the folder turned read-only: the temp file stays, --restart removes it
        raise write_error(path, exc) from None


def atomic_copy(source: str | Path, target: str | Path) -> None:
    """Copy a file whole or not at all (atomic_write_bytes), keeping its times as shutil.copy2
    does. A target that is a link is replaced, never written through."""
    source = Path(source)
    try:
        data, st = source.read_bytes(), source.stat()
    except OSError as exc:
        raise RunFolderError(f"{source}: cannot read ({exc.strerror or exc})") from None
    atomic_write_bytes(target, data)
    with writing(target):
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def refuse_links_out(root: str | Path, folder: str | Path) -> None:
    """A folder under a run folder `root` that wm-train writes in must not lead out of it: neither
    `folder` (nor a folder between root and it) nor any folder inside it may be a symbolic link to
    a place outside root. A crafted run folder could otherwise have a trainer or wm-report write
    (or empty) files anywhere the user may write. RunFolderError with one line naming the link."""
    root, folder = Path(root), Path(folder)
    inside = root.resolve()

    def check(path: Path) -> None:
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(inside):
                raise RunFolderError(f"{path} is a symbolic link to {target}, outside the run folder {root}; "
                                     "nothing is written through it: replace it with a folder (or choose "
                                     "another folder)")

    path = root
    for part in folder.relative_to(root).parts:
        path = path / part
        check(path)
    if folder.is_dir():
        for here, dirs, _files in os.walk(folder):  # links to folders are listed, not followed
            for name in dirs:
                check(Path(here) / name)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_text(path: str | Path, what: str = "") -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunFolderError(f"{path}: corrupt {what or 'file'} (not UTF-8 text: {exc.reason})") from None
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_json(path: str | Path) -> Any:
    """The JSON in path; a damaged file is one RunFolderError line naming it."""
    text = read_text(path, "JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}: corrupt JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def read_yaml(path: str | Path) -> Any:
    import yaml

    text = read_text(path, "YAML")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RunFolderError(f"{path}: corrupt YAML ({where}{problem})") from None


def write_csv_rows(path: str | Path, fieldnames: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
