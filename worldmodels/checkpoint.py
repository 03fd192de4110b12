"""Validated loads of torch files, rollouts, the signed resume state and the agent bundle."""
from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, RunFolderError, UserError
from .fileio import atomic_write_bytes, writing

BUNDLE_FORMAT = "worldmodels-agent"
BUNDLE_VERSION = 1


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    # numpy's stubs match **arrays against the allow_pickle: bool keyword too (numpy >= 2 has it)
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: str | Path, keys: tuple[str, ...] | list[str], what: str = "rollout") -> dict[str, np.ndarray]:
    """The named arrays of an .npz written by save_npz, read whole (no pickles). A truncated,
    corrupt (zip CRC) or incomplete file is one RunFolderError line naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise RunFolderError(f"{path}: damaged {what} file (no '{missing[0]}' array); "
                                     "restore it, or rerun with --restart to make the data again")
            return {k: data[k] for k in keys}
    except RunFolderError:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, CRC or zlib errors, EOF, bad .npy header, ...
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(f"{path}: damaged {what} file ({reason}); it may be truncated or corrupt: "
                             "restore it, or rerun with --restart to make the data again") from None


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
    bad = _bad_member(path)
    if bad:
        raise CheckpointError(f"{path} is not a readable {what} ({bad}); it is corrupt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(f"{path} was refused: it holds more than tensors and plain values "
                              f"({first[:120]}); only load agent files you trust") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad magic, ...
        raise CheckpointError(f"{path} is not a readable {what} ({type(exc).__name__}); "
                              "it may be truncated or corrupt") from None


def _bad_member(path: Path) -> str | None:
    """The zip's own checksums: every member of a torch file carries a CRC-32, which torch.load
    does not check (a flipped byte in a tensor loads silently). None when all match."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib errors, a damaged header, ...
        return f"{type(exc).__name__}: {str(exc)[:100]}"
    return f"checksum mismatch in {bad}" if bad else None


def _keep_previous(path: Path) -> None:
    """<name> -> <name>.prev before a new <name> is written; a folder that turned read-only (or
    any other OSError) is the same one line as a failed write, and the files stay as they were."""
    if not path.exists():
        return
    with writing(path):
        os.replace(path, path.with_name(path.name + ".prev"))


def save_torch_state(path: str | Path, state: dict) -> None:
    """Epoch state (tensors and plain values): the previous one is kept as <name>.prev."""
    path = Path(path)
    _keep_previous(path)
    save_torch(path, state)


def load_torch_state(path: str | Path, what: str, log: Callable[[str], None] | None = None) -> dict | None:
    """The newest epoch state whose checksums match; a corrupt newest file falls back to the
    previous one. None when there is neither; CheckpointError when they are all damaged."""
    path = Path(path)
    found = []
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        found.append(candidate)
        try:
            state = load_torch(candidate, what)
        except CheckpointError as exc:
            if log is not None:
                log(f"{exc}; falling back to the previous checkpoint")
            continue
        if not isinstance(state, dict):
            if log is not None:
                log(f"{candidate} is not a {what}; falling back to the previous checkpoint")
            continue
        return state
    if found:
        raise CheckpointError(f"{' and '.join(str(c) for c in found)}: no readable {what} (damaged); "
                              f"delete {'them' if len(found) > 1 else 'it'} to train this stage from "
                              "its start, or rerun with --restart")
    return None


# -- resume state: a pickle signed with this user's key ---------------------------------------
# CMA-ES's state is a pickle (pycma pickles itself, a bound method of RandomState included), and
# unpickling runs whatever code a file holds. So a state file is signed with HMAC-SHA256 under a
# key that lives outside every run folder (mode 0600, made on first use), and a file this user's
# key did not sign is never unpickled: a run folder from someone else cannot run code on resume.
# A user adopts a folder they trust with --trust-run; its states are signed anew from then on.
STATE_MAGIC = b"wm-hmac-sha256:"
KEY_ENV = "WORLDMODELS_KEY_FILE"


class UntrustedState(CheckpointError):
    """A resume state that this user's key did not sign."""


def key_path() -> Path:
    """$WORLDMODELS_KEY_FILE, else $XDG_CONFIG_HOME/worldmodels/state.key (~/.config/...)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "worldmodels" / "state.key"


def state_key() -> bytes:
    """This user's signing key, made (32 random bytes, mode 0600) on first use."""
    path = key_path()
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another trainer made it just now
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        key = path.read_bytes()
    if len(key) < 16:
        raise UserError(f"the signing key {path} is too short ({len(key)} bytes); delete it to make a new one")
    return key


def _mac(payload: bytes) -> bytes:
    return hmac.new(state_key(), payload, hashlib.sha256).hexdigest().encode()


def save_state(path: str | Path, state: dict) -> None:
    """Keep the previous good state as <name>.prev, then write the new one, signed, atomically."""
    path = Path(path)
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    _keep_previous(path)
    atomic_write_bytes(path, STATE_MAGIC + _mac(payload) + b"\n" + payload)


def _read_state(path: Path, trust: bool = False) -> dict:
    raw = path.read_bytes()
    head, _, payload = raw.partition(b"\n")
    if head.startswith(STATE_MAGIC):
        signed = hmac.compare_digest(head[len(STATE_MAGIC):], _mac(payload))
    else:  # an unsigned state (worldmodels before signing): its sha256 proves integrity only
        signed = False
        if trust and hashlib.sha256(payload).hexdigest().encode() != head:
            raise ValueError("checksum mismatch")
    if not signed and not trust:
        raise UntrustedState("not signed with this user's key")
    return pickle.loads(payload)  # noqa: S301 - signed with this user's key, or adopted with --trust-run


def _signed(path: Path) -> bool:
    head, _, payload = path.read_bytes().partition(b"\n")
    return head.startswith(STATE_MAGIC) and hmac.compare_digest(head[len(STATE_MAGIC):], _mac(payload))


def check_state(path: str | Path, trust: bool = False) -> None:
    """Before a resume writes anything: UntrustedState (load_state's message) when a state file
    is there and neither it nor its .prev is signed with this user's key. Unpickles nothing."""
    path = Path(path)
    found = [c for c in (path, path.with_name(path.name + ".prev")) if c.exists()]
    if trust or not found:
        return
    try:
        if any(_signed(c) for c in found):
            return
    except OSError:
        return  # unreadable: load_state reports it where it falls back
    load_state(path)  # raises the UntrustedState that says what to do


def load_state(path: str | Path, log: Callable[[str], None] | None = None, trust: bool = False) -> dict | None:
    """The newest state this user signed; a bad newest file falls back to the previous one.
    None when there is none. No signed state but an unsigned or foreign one: UntrustedState
    (trust=True reads it anyway: the user vouches for the folder)."""
    path = Path(path)
    untrusted = False
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            return _read_state(candidate, trust)
        except UntrustedState:
            untrusted = True
            if log is not None:
                log(f"{candidate} is corrupt or not signed with this user's key (not read); "
                    "falling back to the previous checkpoint")
        except Exception as exc:  # noqa: BLE001
            if log is not None:
                log(f"{candidate} is corrupt ({exc}); falling back to the previous checkpoint")
    if untrusted:
        raise UntrustedState(
            f"{path} was not signed with this user's key ({key_path()}): it comes from another user or "
            "machine, or it is damaged, and reading it could run code it holds; if you trust this run "
            "folder, rerun with --trust-run to adopt it, or use --restart to start over")
    return None


# -- the agent bundle --------------------------------------------------------------------------
def load_bundle(path: str | Path, env_id: str | None = None) -> dict:
    """best.pt's plain structure (Agent.from_bundle checks the sizes, shapes and values);
    env_id: the env the agent must be for (an env folder's, or --env)."""
    bundle = load_torch(path, "agent checkpoint")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not a worldmodels agent (best.pt from wm-train)")
    if bundle.get("version") != BUNDLE_VERSION:
        raise CheckpointError(f"{path} has agent format version {bundle.get('version')}; "
                              f"this worldmodels reads version {BUNDLE_VERSION}")
    for key in ("env", "vae", "mdnrnn", "controller"):
        if key not in bundle:
            raise CheckpointError(f"{path} is incomplete: no '{key}' section")
        if not isinstance(bundle[key], dict):
            raise CheckpointError(f"{path} is damaged: its '{key}' section is not a mapping")
    for key in ("eval", "provenance"):
        if bundle.get(key) is None:
            bundle[key] = {}
        if not isinstance(bundle[key], dict):
            raise CheckpointError(f"{path} is damaged: its '{key}' section is not a mapping")
    found = bundle["env"].get("id")
    if not isinstance(found, str):
        raise CheckpointError(f"{path} is damaged: it names no env id")
    if env_id is not None and found != env_id:
        raise CheckpointError(f"{path} is an agent for {found}, not {env_id}")
    return bundle
