"""wm-play (window on a real X server, headless, --record, --dream), the --live hook and the
TensorBoard hook. Tiny random Pong agents; a few dozen steps each."""
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from worldmodels import play as play_mod
from worldmodels import viewer
from worldmodels.agent import Agent
from worldmodels.checkpoint import save_torch
from worldmodels.envs import probe_spec
from worldmodels.errors import UserError

PONG_BG = (144, 72, 17)  # Pong's playfield colour, once the game runs (the reset frame differs)


# -- helpers -------------------------------------------------------------------------------------
def make_pong_bundle(path: Path, done_bias: float = -10.0, saw_ends: bool | None = True) -> Path:
    """A tiny random Pong agent; M's done head biased so a dream runs to max steps (or stops)."""
    torch.manual_seed(0)
    agent = Agent.build(probe_spec("ALE/Pong-v5"), z_dim=8, hidden=16, gaussians=2)
    agent.m_saw_ends = saw_ends
    with torch.no_grad():
        agent.mdnrnn.head.bias[-1] = done_bias
    params = np.random.default_rng(0).normal(0, 1, agent.controller.n_params).astype(np.float32)
    save_torch(path, agent.bundle(params, {"snapshot": {"gen": 3, "mean": -21.0}, "final": None},
                                  {"seed": 0, "gen": 3}))
    return path


@pytest.fixture(scope="module")
def pong_ckpt(tmp_path_factory):
    return make_pong_bundle(tmp_path_factory.mktemp("agent") / "best.pt")


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def video_size(path) -> tuple[int, int]:
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame.shape[1], frame.shape[0]


def video_codec(path) -> str:
    """The codec of a video's first stream, as ffmpeg (the imageio-ffmpeg wheel's) names it."""
    import re
    import subprocess

    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True).stderr
    found = re.search(r"Video: (\w+)", probe)
    assert found, probe
    return found.group(1)


def gif_frames(path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.n_frames


def check_result(result: dict, episodes: int) -> None:
    assert {"env", "episodes", "mean", "std", "scores"} <= set(result)
    assert result["env"] == "ALE/Pong-v5" and result["episodes"] == episodes == len(result["scores"])
    assert result["mean"] == pytest.approx(float(np.mean(result["scores"])))


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def exit_status(pid: int) -> str:
    """How a zombie child ended (its parent has not reaped it yet): /proc's exit_code field,
    which reads 0 for a process still running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
        state, code = fields[0], int(fields[-1])
    except (FileNotFoundError, ValueError, IndexError):
        return "unknown (reaped)"
    if state != "Z":
        return "still running"
    return f"signal {code & 0x7F}" if code & 0x7F else f"exit code {code >> 8}"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def xvfb():
    """A private X server on a free display number (Xvfb -displayfd picks it)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    r, w = os.pipe()
    # -noreset: by default the server resets whenever its last client disconnects, and a client
    # connecting during that reset fails (6 of 400 screen grabs in a row did). In CI the player's
    # Qt window hit one and the player exited before its window showed.
    proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp",
                             "-noreset"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    number = b""
    deadline = time.time() + 20
    while not number.endswith(b"\n") and time.time() < deadline:
        if select.select([r], [], [], 0.5)[0]:
            chunk = os.read(r, 16)
            if not chunk:
                break
            number += chunk
    os.close(r)
    if not number.strip():
        proc.kill()
        raise AssertionError("Xvfb did not start")
    yield ":" + number.decode().strip()
    proc.terminate()
    proc.wait(10)


def grab_screen(display: str) -> np.ndarray:
    """The whole X screen as RGB (Pillow's XCB grab; ImageMagick's import as a fallback)."""
    from PIL import Image, ImageGrab, features

    if features.check("xcb"):
        return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
    if shutil.which("import"):
        out = subprocess.run(["import", "-display", display, "-window", "root", "png:-"], capture_output=True,
                             timeout=20, check=True).stdout
        import io

        return np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))
    pytest.skip("cannot grab the X screen: Pillow without XCB and no ImageMagick")


# How long a player may take to show its game window: a bound for a stuck player, not a timing.
# The live view's child runs at nice 10; beside two trainings on 2 cores its start (spawn,
# torch, OpenCV, the env) took over 40 s.
WINDOW_TIMEOUT = 150.0


def wait_for_game_window(display: str, still_running, timeout: float = WINDOW_TIMEOUT) -> np.ndarray:
    """Grab the screen until the Pong playfield shows (window up and playing)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert still_running(), "the player exited before its window was seen"
        screen = grab_screen(display)
        if np.all(screen == PONG_BG, axis=-1).sum() > 50_000:
            return screen
        time.sleep(0.25)
    raise AssertionError(f"no game window on {display} within {timeout:.0f} s")


def check_window(screen: np.ndarray) -> None:
    """Non-blank where the window is: a >= 600x400 window holding the big game frame."""
    ys, xs = np.nonzero(screen.any(axis=-1))  # Xvfb's root window is black
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert width >= 600 and height >= 400, (width, height)
    window = screen[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert window.std() > 20 and len(np.unique(window.reshape(-1, 3), axis=0)) > 10
    assert np.all(window == PONG_BG, axis=-1).sum() > 50_000  # the game frame, shown large


# -- wm-play: record, json, no display -----------------------------------------------------------
def test_record_mp4_headless_and_json(cli, pong_ckpt, tmp_path):
    video = tmp_path / "out.mp4"
    proc = cli("wm-play", "--env", "pong", "--ckpt", pong_ckpt, "--headless", "--record", video,
               "--episodes", "2", "--max-steps", "15", "--json", check=0)
    check_result(last_json(proc.stdout), 2)
    assert count_frames(video) == 30  # one frame per step, both episodes (15 steps each)
    assert video_size(video) == (640, 480)
    assert video_codec(video) == "h264"  # what browsers, GitHub and notebooks play
    assert play_mod.NO_DISPLAY_NOTICE not in proc.stderr  # --headless: nothing to explain


def test_record_gif_and_avi(pong_ckpt, tmp_path):
    result = play_mod.play("pong", str(pong_ckpt), episodes=1, seed=3, headless=True,
                           record=str(tmp_path / "out.gif"), max_steps=12)
    check_result(result, 1)
    assert gif_frames(tmp_path / "out.gif") == 12
    from PIL import Image

    with Image.open(tmp_path / "out.gif") as im:
        assert im.size[0] == viewer.GIF_MAX_W  # the 640-wide canvas, scaled down
    play_mod.play("pong", str(pong_ckpt), episodes=2, seed=3, headless=True, record=str(tmp_path / "out.avi"),
                  max_steps=7)
    assert count_frames(tmp_path / "out.avi") == 14
    with pytest.raises(UserError, match="use a .mp4, .avi or .gif"):
        play_mod.play("pong", str(pong_ckpt), headless=True, record=str(tmp_path / "out.webm"))
    with pytest.raises(UserError, match="missing or not writable"):
        play_mod.play("pong", str(pong_ckpt), headless=True, record=str(tmp_path / "nope" / "out.mp4"))


def test_without_display_plays_to_the_end_with_one_notice(cli, pong_ckpt, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    proc = cli("wm-play", "--env", "pong", "--ckpt", pong_ckpt, "--max-steps", "20", "--json", check=0)
    check_result(last_json(proc.stdout), 1)
    assert proc.stderr.count(play_mod.NO_DISPLAY_NOTICE) == 1
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [play_mod.NO_DISPLAY_NOTICE]


def test_display_probe_never_kills_the_caller(monkeypatch):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert viewer.display_available() is False
    monkeypatch.setenv("DISPLAY", ":4711")  # nobody there: Qt aborts the probe child, not us
    assert viewer.display_available() is False


# -- the window ----------------------------------------------------------------------------------
def test_window_shows_the_game_on_a_real_x_server(pong_ckpt, xvfb):
    env = dict(os.environ, DISPLAY=xvfb, PYTHONUNBUFFERED="1")
    steps, fps = 240, 30  # 8 s on screen: time enough to catch the window on a loaded machine
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "worldmodels.cli", "wm-play", "--env", "pong", "--ckpt",
                             str(pong_ckpt), "--max-steps", str(steps), "--fps", str(fps), "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            screen = wait_for_game_window(xvfb, lambda: proc.poll() is None)
        except AssertionError:
            out, err = proc.communicate(timeout=60)
            raise AssertionError(f"exit {proc.returncode}: {err[-2000:]}") from None
        check_window(screen)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    check_result(last_json(out), 1)
    assert play_mod.NO_DISPLAY_NOTICE not in err
    assert time.time() - start >= steps / fps * 0.9  # paced at --fps, not as fast as it can
    assert not np.all(grab_screen(xvfb) == PONG_BG, axis=-1).any()  # the window is gone at the end


class FakeGui:
    """Stands in for cv2's GUI calls: scripted keys, the waits asked for, a closable window."""

    def __init__(self, monkeypatch, keys):
        self.keys, self.waits, self.shown, self.visible = list(keys), [], 0, 1.0
        for name, fn in (("namedWindow", lambda *a: None), ("imshow", self.imshow), ("waitKey", self.wait_key),
                         ("getWindowProperty", lambda *a: self.visible), ("destroyWindow", lambda *a: None)):
            monkeypatch.setattr(viewer.cv2, name, fn)

    def imshow(self, title, frame):
        self.shown += 1

    def wait_key(self, ms):
        self.waits.append(ms)
        return self.keys.pop(0) if self.keys else -1


def test_window_keys_pause_quit_and_pacing(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    frame = np.zeros((480, 640, 3), np.uint8)
    gui = FakeGui(monkeypatch, [-1, ord(" "), -1, -1, ord(" "), -1, ord("q")])
    win = viewer.Window("t", fps=20)
    assert win.show(frame)  # no key
    assert 40 <= gui.waits[0] <= 50  # paced: 1/20 s a frame
    assert win.show(frame)  # space: paused until the next space
    assert gui.waits[2:4] == [50, 50] and gui.shown == 3  # the paused frame (with a note) shown once
    assert win.show(frame)
    assert not win.show(frame)  # q quits
    gui.keys = [ord(" "), ord("q")]
    assert not win.show(frame)  # q while paused quits too
    gui.keys, gui.visible = [], 0.0
    assert not win.show(frame)  # the window was closed with its close button


# -- dream ---------------------------------------------------------------------------------------
def test_dream_records_one_frame_per_step(pong_ckpt, tmp_path):
    video = tmp_path / "dream.mp4"
    result = play_mod.play("pong", str(pong_ckpt), episodes=1, seed=5, headless=True, record=str(video),
                           max_steps=25, dream=True, temperature=1.15)
    assert result["dream"] is True and result["episodes"] == 1
    assert count_frames(video) == 25 and video_size(video) == (720, 480)
    again = play_mod.play("pong", str(pong_ckpt), episodes=1, seed=5, headless=True, max_steps=25, dream=True)
    assert again["scores"] == result["scores"]  # M is sampled with a generator seeded from the seed
    with pytest.raises(UserError, match="--temperature"):
        play_mod.play("pong", str(pong_ckpt), headless=True, dream=True, temperature=0.0)


def test_dream_ends_when_m_predicts_done(tmp_path):
    ckpt = make_pong_bundle(tmp_path / "done.pt", done_bias=10.0)
    result = play_mod.play("pong", str(ckpt), episodes=3, headless=True, record=str(tmp_path / "d.gif"),
                           max_steps=50, dream=True)
    assert result["episodes"] == 3
    assert gif_frames(tmp_path / "d.gif") == 3  # each dream ends after its first step


@pytest.mark.parametrize("saw_ends, frames", [(False, 3 * 20), (None, 3)])
def test_dream_ignores_done_when_m_never_saw_an_end(tmp_path, saw_ends, frames):
    """M trained on rollouts without a single end (Pong's 500-step ones): its done head means
    nothing, so the dream runs to max_steps. Bundles that do not say (None) keep the 0.5 rule."""
    ckpt = make_pong_bundle(tmp_path / "done.pt", done_bias=10.0, saw_ends=saw_ends)
    assert torch.load(ckpt, weights_only=True)["mdnrnn"]["saw_ends"] is saw_ends
    play_mod.play("pong", str(ckpt), episodes=3, headless=True, record=str(tmp_path / "d.gif"),
                  max_steps=20, dream=True)
    assert gif_frames(tmp_path / "d.gif") == frames


def test_dream_from_the_command_line(cli, pong_ckpt, tmp_path):
    proc = cli("wm-play", "--env", "pong", "--ckpt", pong_ckpt, "--dream", "--temperature", "1.0", "--headless",
               "--record", tmp_path / "dream.gif", "--max-steps", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    check_result(last_json(proc.stdout), 1)
    assert gif_frames(tmp_path / "dream.gif") == 10


# -- wm-train --live -----------------------------------------------------------------------------
def fake_ctx(env_dir: Path):
    return SimpleNamespace(env_dir=env_dir, run_dir=env_dir.parent, spec=SimpleNamespace(slug=env_dir.name), round=0)


def drive(hook, ctx, gens=3):
    """What the curriculum loop calls on a hook during one env."""
    hook.on_run_start(SimpleNamespace(out=ctx.run_dir))
    hook.on_env_start(ctx)
    for stage in ("vae", "mdnrnn"):
        hook.on_step_end(ctx, stage, SimpleNamespace(index=0, metrics={"epoch": 0, "loss": 1.0}))
    for gen in range(gens):
        hook.on_step_end(ctx, "controller", SimpleNamespace(index=gen, metrics={"best_fitness": -21.0 + gen}))


def test_live_without_display_warns_once_and_does_nothing(monkeypatch, caplog, tmp_path):
    from worldmodels.hooks.live import NO_DISPLAY_WARNING, LiveView

    monkeypatch.delenv("DISPLAY", raising=False)
    hook = LiveView()
    ctx = fake_ctx(tmp_path / "pong")
    with caplog.at_level(logging.INFO, logger="worldmodels"):
        drive(hook, ctx)
        hook.on_env_end(ctx)
        drive(hook, ctx)  # a second env
        hook.on_run_end(None)
    assert [r.getMessage() for r in caplog.records] == [NO_DISPLAY_WARNING]
    assert caplog.records[0].levelno == logging.WARNING
    assert hook.process is None


def test_live_child_that_dies_leaves_training_alone(monkeypatch, caplog, tmp_path):
    """The probe is told yes but there is no display: the child's Qt aborts it. Training goes on."""
    from worldmodels.hooks.live import LiveView

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    hook = LiveView(display_check=lambda: True)
    ctx = fake_ctx(tmp_path / "pong")
    with caplog.at_level(logging.INFO, logger="worldmodels"):
        drive(hook, ctx, gens=1)
        child = hook.process
        assert child is not None
        child.join(30)  # Qt aborts it (SIGABRT) when it opens its window
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        assert child.exitcode not in (None, 0)
        drive(hook, ctx, gens=3)  # no exception, no hang
        hook.on_env_end(ctx)
        hook.on_run_end(None)
    stopped = [r for r in caplog.records if "live view stopped" in r.getMessage()]
    assert len(stopped) == 1 and stopped[0].levelno == logging.WARNING


LIVE_PARENT = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from worldmodels.hooks.live import LiveView
env_dir = Path(sys.argv[1])
hook = LiveView()
hook.on_run_start(None)
ctx = SimpleNamespace(env_dir=env_dir, run_dir=env_dir.parent, spec=SimpleNamespace(slug="pong"))
hook.on_env_start(ctx)
hook.on_step_end(ctx, "controller", SimpleNamespace(index=7, metrics={}))
print(hook.process.pid, flush=True)
if sys.argv[2] == "stop":
    sys.stdin.readline()
    hook.on_run_end(None)
    print("exitcode", hook.exitcode, flush=True)
else:
    time.sleep(120)
"""


def start_live_parent(tmp_path, display, mode):
    env_dir = tmp_path / "run" / "pong"
    env_dir.mkdir(parents=True)
    make_pong_bundle(env_dir / "best.pt")
    proc = subprocess.Popen([sys.executable, "-c", LIVE_PARENT, str(env_dir), mode],
                            env=dict(os.environ, DISPLAY=display, PYTHONUNBUFFERED="1"), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child = int(proc.stdout.readline())
    return proc, child


def wait_for_live_window(proc, child: int, display: str) -> np.ndarray:
    """wait_for_game_window for the live view's child; on failure, say how it ended and what
    the trainer (and so the child) wrote to stderr."""
    try:
        return wait_for_game_window(display, lambda: alive(child))
    except AssertionError as exc:
        status = exit_status(child)
        proc.kill()
        raise AssertionError(f"{exc} (the player: {status}); the trainer's stderr:\n"
                             f"{proc.communicate()[1]}") from None


def test_live_shows_best_agent_and_stops_at_run_end(tmp_path, xvfb):
    proc, child = start_live_parent(tmp_path, xvfb, "stop")
    try:
        screen = wait_for_live_window(proc, child, xvfb)
        check_window(screen)
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "exitcode 0" in out  # the child stopped when asked, on its own
    assert not alive(child)
    assert "Traceback" not in err


def test_live_child_exits_when_the_trainer_is_killed(tmp_path, xvfb):
    proc, child = start_live_parent(tmp_path, xvfb, "sleep")
    try:
        wait_for_live_window(proc, child, xvfb)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    deadline = time.time() + 60  # a bound for a child that never notices, not a timing
    while alive(child) and time.time() < deadline:
        time.sleep(0.1)
    if alive(child):
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the live view outlived the trainer killed with -9")


# -- TensorBoard ---------------------------------------------------------------------------------
def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    from worldmodels.hooks.tensorboard import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(UserError) as info:
        TensorBoardLogger()
    assert str(info.value) == ("--tensorboard needs the tensorboard package: "
                               "pip install 'worldmodels[tensorboard]'")


def test_play_finds_the_agent_without_env_in_a_file_an_env_folder_or_a_run_folder(tmp_path, cli):
    from worldmodels.play import play

    run = tmp_path / "run"
    (run / "pong").mkdir(parents=True)
    make_pong_bundle(run / "pong" / "best.pt")
    for ckpt, env in ((run / "pong" / "best.pt", None), (run / "pong", None), (run, None), (run, "pong")):
        result = play(env=env, ckpt=str(ckpt), episodes=1, headless=True, max_steps=20)
        assert result["env"] == "ALE/Pong-v5" and result["episodes"] == 1, ckpt
    (run / "breakout").mkdir()
    (run / "breakout" / "best.pt").write_bytes((run / "pong" / "best.pt").read_bytes())
    proc = cli("wm-play", "--ckpt", run, "--headless")
    assert proc.returncode == 2 and "best.pt files for breakout, pong; choose one with --env" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("wm-play", "--ckpt", run, "--env", "carracing", "--headless")
    assert proc.returncode == 2 and "no best.pt for CarRacing-v3" in proc.stderr
