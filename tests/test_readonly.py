"""A run folder that is not what it seems: folders that link out of it, and a folder that turns
read-only mid-run. Each ends in one error line (exit 2 from the CLI) with the files written
before it intact, and nothing written through a link.

CI runs as root, where chmod stops no write: a read-only folder is injected at the write layer
(the os calls under the run folder fail with EROFS, as on a file system remounted read-only).
"""
import builtins
import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from worldmodels.checkpoint import load_state
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.errors import RunFolderError, UserError
from worldmodels.hooks import Hook, default_hooks
from worldmodels.runfolder import LOCK_NAME

SETTINGS = ["envs=catch", "max_gens=2", "eval_every=1", "workers=1"]


def _tree(root: Path) -> dict:
    """Every file under root (links as links) with its content's hash; the lock file aside."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == LOCK_NAME and not p.is_symlink():
            continue  # the holder's name, emptied when a run ends
        if p.is_symlink():
            out[str(p.relative_to(root))] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- links out of the run folder --------------------------------------------------------------
def _crafted(tmp_path: Path, link: str) -> tuple[Path, Path]:
    """A run folder (results but no run yet) whose `link` leads to a folder outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "curriculum_results.json").write_text('{"version": 1, "envs": []}\n')
    where = out / link
    where.parent.mkdir(parents=True, exist_ok=True)
    if link == LOCK_NAME:
        where.symlink_to(outside / "victim.txt")
    else:
        where.symlink_to(outside, target_is_directory=True)
    return out, outside


@pytest.mark.parametrize("link", [LOCK_NAME, "catch", "catch/controller", "report", "tensorboard"])
def test_a_link_out_of_the_run_folder_is_refused_before_anything_is_written(tmp_path, cli, link):
    out, outside = _crafted(tmp_path, link)
    before, mine = _tree(outside), _tree(out)
    proc = cli("wm-train", "--config", "smoke", "--envs", "catch", "--workers", "1", "--out", out, check=2)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "symbolic link" in last and link in last
    assert _tree(outside) == before  # the lock's target not emptied, nothing written out there
    assert _tree(out) == mine  # and nothing in the run folder (no run.yaml)


def test_wm_report_writes_nothing_through_a_linked_report_folder(tmp_path, cli):
    out, outside = _crafted(tmp_path, "report")
    before = _tree(outside)
    proc = cli("wm-report", out, check=2)
    assert "Traceback" not in proc.stderr and "symbolic link" in proc.stderr.strip().splitlines()[-1]
    assert _tree(outside) == before


def test_links_inside_the_run_folder_are_fine(tmp_path):
    from worldmodels.fileio import refuse_links_out
    out = tmp_path / "run"
    (out / "catch" / "data" / "round0").mkdir(parents=True)
    (out / "catch" / "data" / "round0" / "ep_0.npz").symlink_to(tmp_path / "elsewhere.npz")  # files: replaced
    (out / "catch" / "again").symlink_to(out / "catch" / "data", target_is_directory=True)
    refuse_links_out(out, out / "catch")
    refuse_links_out(out, out / "report")  # not there yet
    (out / "catch" / "data" / "round1").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(RunFolderError, match="round1 is a symbolic link"):
        refuse_links_out(out, out / "catch")


# -- a folder turning read-only mid-run --------------------------------------------------------
class ReadOnly:
    """Once armed, the os calls that write under `root` fail with EROFS. ops: which kinds."""

    KINDS = ("open", "mkdir", "unlink", "symlink", "replace", "utime")
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self, monkeypatch, root: Path, ops=KINDS):
        self.root, self.ops = os.path.abspath(root), set(ops)
        self.armed, self.refused = False, []
        real = {name: getattr(os, name) for name in ("open", "mkdir", "unlink", "remove", "rmdir", "symlink",
                                                      "replace", "rename", "utime")}
        real_open = builtins.open

        def guard(kind, *paths):
            if self.armed and kind in self.ops and any(self._under(p) for p in paths):
                self.refused.append((kind, str(paths[-1])))
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(paths[-1]))

        def os_open(path, flags, *args, **kwargs):
            if flags & self.WRITE_FLAGS:
                guard("open", path)
            return real["open"](path, flags, *args, **kwargs)

        def py_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
                guard("open", file)
            return real_open(file, mode, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            if not os.path.lexists(path):  # an existing folder: EEXIST, as a read-only mount says
                guard("mkdir", path)
            return real["mkdir"](path, *args, **kwargs)

        def one_path(kind, name):
            def call(path, *args, **kwargs):
                guard(kind, path)
                return real[name](path, *args, **kwargs)
            return call

        def two_paths(kind, name):
            def call(src, dst, *args, **kwargs):
                guard(kind, src, dst)
                return real[name](src, dst, *args, **kwargs)
            return call

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", py_open)
        monkeypatch.setattr(os, "mkdir", mkdir)
        for name in ("unlink", "remove", "rmdir"):
            monkeypatch.setattr(os, name, one_path("unlink", name))
        monkeypatch.setattr(os, "utime", one_path("utime", "utime"))
        monkeypatch.setattr(os, "symlink", two_paths("symlink", "symlink"))
        for name in ("replace", "rename"):
            monkeypatch.setattr(os, name, two_paths("replace", name))

    def _under(self, path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.abspath(os.fspath(path))
        return p == self.root or p.startswith(self.root + os.sep)


class ArmAt(Hook):
    """Arms a ReadOnly at the controller's step `index` (before the hooks that follow it)."""

    name = "arm"

    def __init__(self, fault: ReadOnly, index: int):
        self.fault, self.index = fault, index

    def on_step_end(self, ctx, stage, report):
        if stage == "controller" and report.index == self.index:
            self.fault.armed = True


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished smoke run of Catch (2 generations): a source for --from and a run to resume."""
    out = tmp_path_factory.mktemp("trained") / "run"
    Run(build_config(["smoke"], SETTINGS), out, ["test"], log_fn=lambda m: None).run()
    return out


def _run(out, settings=SETTINGS, hooks=None, **kwargs) -> Run:
    cfg = build_config(["smoke"], settings)
    return Run(cfg, out, ["test"], hooks=hooks if hooks is not None else default_hooks(cfg),
               log_fn=lambda m: None, **kwargs)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and os.strerror(errno.EROFS) in text and "earlier files are intact" in text
    return text


def test_read_only_before_the_env_folder_is_made(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run = _run(out)  # run.yaml written, then the whole folder turns read-only
    fault = ReadOnly(monkeypatch, out)
    before = _tree(out)
    fault.armed = True
    with pytest.raises(UserError) as exc:
        run.run()
    assert "catch" in _one_line(exc) and fault.refused[0][0] == "mkdir"
    monkeypatch.undo()
    assert _tree(out) == before


@pytest.mark.parametrize("linked, ops, op", [(False, ReadOnly.KINDS, "mkdir"), (False, ("symlink",), "symlink"),
                                             (True, ReadOnly.KINDS, "open")])
def test_read_only_while_reusing_from_a_source(tmp_path, monkeypatch, trained, linked, ops, op):
    """--from links the source's rollouts (mkdir, symlink) and copies V and M (a write);
    `linked`: an earlier attempt linked the rollouts (then copying V fails first)."""
    from worldmodels.curriculum import link_files
    out = tmp_path / "run"
    run = _run(out, SETTINGS + ["max_gens=1"], from_dir=trained)
    (out / "catch").mkdir()
    if linked:
        for folder in ("data", "encoded"):
            link_files(trained / "catch" / folder, out / "catch" / folder)
    source, before = _tree(trained), _tree(out)
    fault = ReadOnly(monkeypatch, out, ops)
    fault.armed = True
    with pytest.raises(UserError) as exc:
        run.run()
    _one_line(exc)
    assert fault.refused[0][0] == op
    monkeypatch.undo()
    assert _tree(out) == before and _tree(trained) == source


def test_read_only_when_a_resume_removes_snapshots_past_the_checkpoint(tmp_path, monkeypatch, trained):
    out = tmp_path / "run"
    shutil.copytree(trained, out, symlinks=True)
    stray = out / "catch" / "eval" / "gen_0007.json"  # from a run killed after its snapshot
    stray.write_text("{}\n")
    fault = ReadOnly(monkeypatch, out, ops=("unlink",))  # only removing fails
    run = _run(out, SETTINGS[:1] + ["max_gens=3", "eval_every=1", "workers=1"])
    fault.armed = True
    with pytest.raises(UserError) as exc:
        run.run()
    assert "gen_0007.json" in _one_line(exc)
    monkeypatch.undo()
    assert stray.exists() and load_state(out / "catch" / "controller" / "state.pkl")["gen"] == 1


def test_read_only_mid_generation_keeps_the_last_checkpoint(tmp_path, monkeypatch, trained):
    """The resume state of generation 2 cannot be written: one line, generation 1's state and
    the metrics rows before it intact (whatever write meets the read-only folder first)."""
    out = tmp_path / "run"
    shutil.copytree(trained, out, symlinks=True)
    settings = SETTINGS[:1] + ["max_gens=4", "eval_every=10", "workers=1"]  # no snapshot at gen 2
    cfg = build_config(["smoke"], settings)
    fault = ReadOnly(monkeypatch, out)
    hooks = default_hooks(cfg)
    hooks.insert(1, ArmAt(fault, 2))  # after the snapshot, before the checkpoint writer
    run = _run(out, settings, hooks=hooks)
    metrics = (out / "catch" / "metrics.csv").read_text()
    with pytest.raises(UserError) as exc:
        run.run()
    _one_line(exc)
    monkeypatch.undo()
    assert load_state(out / "catch" / "controller" / "state.pkl")["gen"] == 1
    assert (out / "catch" / "metrics.csv").read_text() == metrics
