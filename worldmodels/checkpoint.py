"""Atomic writes, validated loads, the resume state and the self-contained agent bundle."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, UserError

BUNDLE_FORMAT = "worldmodels-agent"
BUNDLE_VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: never half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"cannot write in {path.parent}: {exc.strerror}; choose a writable --out") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}; free some space or choose another --out; "
                        "earlier files are intact") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is corrupt ({exc.msg}); delete it or rerun with --restart") from None


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_torch(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch(path: str | Path, what: str = "checkpoint") -> Any:
    """torch.load with weights_only=True: tensors and plain values only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise CheckpointError(f"{path} is not a readable {what} (not a torch checkpoint archive); "
                              "it may be truncated or corrupt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(f"{path} was refused: it holds more than tensors and plain values "
                              f"({first[:120]}); only load agent files you trust") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad magic, ...
        raise CheckpointError(f"{path} is not a readable {what} ({type(exc).__name__}); "
                              "it may be truncated or corrupt") from None


def save_torch_state(path: str | Path, state: dict) -> None:
    """Epoch state (tensors and plain values): the previous one is kept as <name>.prev."""
    path = Path(path)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    save_torch(path, state)


def load_torch_state(path: str | Path, what: str, log=None) -> dict | None:
    """The newest readable epoch state; a corrupt newest file falls back to the previous one."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            return load_torch(candidate, what)
        except CheckpointError as exc:
            if log is not None:
                log(f"{exc}; falling back to the previous checkpoint")
    return None


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


# -- resume state: a pickle with a checksum, read only from the run's own folder ---------------
def save_state(path: str | Path, state: dict) -> None:
    """Keep the previous good state as <name>.prev, then write the new one atomically."""
    path = Path(path)
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(payload).hexdigest().encode()
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    atomic_write_bytes(path, digest + b"\n" + payload)


def _read_state(path: Path) -> dict:
    raw = path.read_bytes()
    digest, _, payload = raw.partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch")
    return pickle.loads(payload)  # noqa: S301 - our own file, checksummed, from the run folder


def load_state(path: str | Path, log=None) -> dict | None:
    """The newest good state; a corrupt newest file falls back to the previous one."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            return _read_state(candidate)
        except Exception as exc:  # noqa: BLE001
            if log is not None:
                log(f"{candidate} is corrupt ({exc}); falling back to the previous checkpoint")
    return None


# -- the agent bundle --------------------------------------------------------------------------
def load_bundle(path: str | Path) -> dict:
    bundle = load_torch(path, "agent checkpoint")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not a worldmodels agent (best.pt from wm-train)")
    if bundle.get("version") != BUNDLE_VERSION:
        raise CheckpointError(f"{path} has agent format version {bundle.get('version')}; "
                              f"this worldmodels reads version {BUNDLE_VERSION}")
    for key in ("env", "vae", "mdnrnn", "controller"):
        if key not in bundle:
            raise CheckpointError(f"{path} is incomplete: no '{key}' section")
    return bundle
