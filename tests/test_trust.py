"""Run folders that others wrote: signed resume states, and the lock on a run folder."""
import csv
import hashlib
import hmac
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worldmodels.checkpoint import STATE_MAGIC, UntrustedState, check_state, load_state, save_state


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def crafted(marker, key: bytes | None = None) -> bytes:
    payload = pickle.dumps({"gen": 5, "x": Payload(marker)})
    if key is None:  # the old format: a sha256 anyone can recompute
        return hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    return STATE_MAGIC + hmac.new(key, payload, hashlib.sha256).hexdigest().encode() + b"\n" + payload


@pytest.mark.parametrize("key", [None, b"another user's key, 32 bytes ..."])
def test_a_state_this_users_key_did_not_sign_runs_nothing(tmp_path, key):
    marker = tmp_path / "ran"
    path = tmp_path / "state.pkl"
    path.write_bytes(crafted(marker, key))
    with pytest.raises(UntrustedState, match="--trust-run"):
        load_state(path)
    assert not marker.exists()


@pytest.mark.parametrize("key", [None, b"another user's key, 32 bytes ..."])
def test_check_state_refuses_without_unpickling(tmp_path, key):
    marker, path = tmp_path / "ran", tmp_path / "state.pkl"
    check_state(path)  # no state: nothing to refuse
    path.write_bytes(crafted(marker, key))
    with pytest.raises(UntrustedState, match="--trust-run"):
        check_state(path)
    check_state(path, trust=True)
    save_state(path.with_name("state.pkl.prev"), {"gen": 4})
    check_state(path)  # a signed previous state: the resume falls back to it
    assert not marker.exists()


def test_a_foreign_newest_state_falls_back_to_a_signed_previous_one(tmp_path):
    path = tmp_path / "state.pkl"
    save_state(path, {"gen": 1})
    save_state(path, {"gen": 2})
    marker = tmp_path / "ran"
    path.write_bytes(crafted(marker))
    messages = []
    assert load_state(path, log=messages.append)["gen"] == 1
    assert not marker.exists() and "not signed with this user's key" in messages[0]


def test_trust_adopts_an_unsigned_state_whose_checksum_holds(tmp_path):
    path = tmp_path / "state.pkl"
    payload = pickle.dumps({"gen": 3})
    path.write_bytes(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    assert load_state(path, trust=True)["gen"] == 3
    path.write_bytes(path.read_bytes()[:-2] + b"xx")  # the checksum no longer holds
    assert load_state(path, trust=True) is None


def test_the_key_is_private_and_stable(tmp_path, monkeypatch):
    from worldmodels.checkpoint import state_key
    monkeypatch.setenv("WORLDMODELS_KEY_FILE", str(tmp_path / "k" / "state.key"))
    key = state_key()
    assert len(key) == 32 and state_key() == key
    assert (tmp_path / "k" / "state.key").stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_a_crafted_state_in_a_run_folder_is_refused_on_resume(tmp_path, cli):
    out = tmp_path / "run"
    args = ["--config", "smoke", "--envs", "catch", "--max-gens", "2", "--workers", "1"]
    cli("wm-train", *args, "--out", out, check=0)
    marker = tmp_path / "ran"
    state = out / "catch" / "controller" / "state.pkl"
    for f in (state, state.with_name("state.pkl.prev")):
        f.write_bytes(crafted(marker))
    run_yaml = (out / "run.yaml").read_bytes()
    proc = cli("wm-train", *args, "--max-gens", "3", "--out", out, check=2)
    assert not marker.exists()
    assert (out / "run.yaml").read_bytes() == run_yaml  # refused before anything was written
    assert "Traceback" not in proc.stderr and "--trust-run" in proc.stderr.strip().splitlines()[-1]


# -- the lock on a run folder ------------------------------------------------------------------
def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path):
    from worldmodels.errors import RunFolderError
    from worldmodels.runfolder import LOCK_NAME, RunLock
    first = RunLock(tmp_path).acquire(["wm-train", "--out", "x"])
    with pytest.raises(RunFolderError, match=f"in use by wm-train pid {os.getpid()} on {socket.gethostname()}"):
        RunLock(tmp_path).acquire()
    with pytest.raises(RunFolderError, match="is being trained by"):
        RunLock(tmp_path, shared=True).acquire()  # --from a folder being trained
    first.release()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # a normal end leaves no name behind
    readers = [RunLock(tmp_path, shared=True).acquire() for _ in range(2)]  # two runs --from it
    with pytest.raises(RunFolderError, match="in use by"):
        RunLock(tmp_path).acquire()
    for r in readers:
        r.release()
    RunLock(tmp_path).acquire().release()


def test_a_lock_file_from_another_host_needs_break_lock(tmp_path):
    from worldmodels.errors import RunFolderError
    from worldmodels.runfolder import LOCK_NAME, RunLock
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(RunFolderError, match="on elsewhere since .*another host.*--break-lock"):
        RunLock(tmp_path).acquire()
    lock = RunLock(tmp_path, break_lock=True).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == socket.gethostname()
    lock.release()


def test_kill_9_releases_the_lock(tmp_path):
    from worldmodels.runfolder import RunLock
    code = ("import sys, time; from pathlib import Path; from worldmodels.runfolder import RunLock; "
            "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"  # a barrier: the child holds the lock now
    from worldmodels.errors import RunFolderError
    with pytest.raises(RunFolderError):
        RunLock(tmp_path).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    RunLock(tmp_path).acquire().release()  # same host, holder gone: taken without --break-lock


@pytest.mark.slow
def test_two_trainers_on_one_out_one_is_refused(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "worldmodels.cli", "wm-train", "--config", "smoke", "--envs", "catch",
            "--max-gens", "4", "--workers", "1", "--out", str(out)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / "wm-train.lock"
    for _ in range(600):  # until the first trainer holds the folder (it writes its name)
        if lock.exists() and lock.read_text().strip():
            break
        time.sleep(0.1)
    second = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and "is in use by wm-train pid" in second.stderr
    assert "Traceback" not in second.stderr
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    with (out / "catch" / "metrics.csv").open() as f:
        assert [int(r["gen"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]


def _tree_hash(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_from_with_two_rounds_leaves_the_source_unchanged(tmp_path, cli):
    src, out = tmp_path / "src", tmp_path / "run"
    base = ["--config", "smoke", "--envs", "catch", "--workers", "1"]
    cli("wm-train", *base, "--stages", "collect,vae,encode,mdnrnn", "--out", src, check=0)
    before = _tree_hash(src)
    cli("wm-train", *base, "--max-gens", "2", "--from", src, "--set", "rounds=2", "--out", out, check=0)
    assert _tree_hash(src) == before
    assert list((out / "catch" / "data").glob("round1/ep_*.npz"))  # round 1's rollouts are this run's own
    assert not any(p.is_symlink() for p in (out / "catch" / "data").rglob("round1/*"))


@pytest.mark.parametrize("shared", [False, True])
def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_its_target_untouched(tmp_path, shared):
    from worldmodels.errors import RunFolderError
    from worldmodels.runfolder import LOCK_NAME, RunLock
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name, make, needle in (("link", lambda p: p.symlink_to(victim), "is a symbolic link"),
                               ("dangling", lambda p: p.symlink_to(tmp_path / "made"), "is a symbolic link"),
                               ("fifo", os.mkfifo, "is not a regular file")):
        folder = tmp_path / name
        folder.mkdir()
        make(folder / LOCK_NAME)
        with pytest.raises(RunFolderError, match=needle) as exc:  # a FIFO must not block either
            RunLock(folder, shared=shared).acquire(["wm-train"])
        assert "\n" not in str(exc.value)
    assert victim.read_text() == "precious\n" and not (tmp_path / "made").exists()


def test_from_links_what_a_killed_attempt_left_unlinked(tmp_path):
    from worldmodels.curriculum import link_files
    src, ours = tmp_path / "src" / "data", tmp_path / "run" / "data"
    (src / "round0").mkdir(parents=True)
    for i in range(3):
        (src / "round0" / f"ep_{i}.npz").write_bytes(b"%d" % i)
    link_files(src, ours)
    (ours / "round0" / "ep_2.npz").unlink()  # killed before its link was made
    link_files(src, ours)  # the rerun links the rest and keeps what is there
    assert sorted(p.name for p in (ours / "round0").iterdir()) == ["ep_0.npz", "ep_1.npz", "ep_2.npz"]
    assert all(p.is_symlink() for p in (ours / "round0").iterdir())
