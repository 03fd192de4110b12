"""What wm-play and wm-train --live draw and where it goes: the composed frame (the game large,
the 64x64 frame the agent sees and V's reconstruction beside it), an OpenCV window, a video
file, and one episode played frame by frame with a callback before every action.

A low layer: it knows the agent, the envs and the engine's Episode, never the curriculum, the
hooks or wm-play.

OpenCV's GUI (Qt) aborts the whole process, with no exception to catch, when it has no display
to talk to. So no cv2 GUI function is ever called unless display_available() has opened a
window in a child process first; headless play and recording use none.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from .engine.rollout import Episode
from .envs import preprocess
from .errors import UserError

if TYPE_CHECKING:
    import gymnasium as gym

    from .agent import Agent
    from .engine.policies import WorldModelPolicy

WINDOW = "worldmodels"
CANVAS_H = 480  # composed frame: 480 high, at least 640 wide (the window at least 600 x 400)
CANVAS_MIN_W = 640
SIDE_W = 240



def display_available(timeout: float = 30.0) -> bool:
    """An X display that OpenCV can open a window on. Probed in a child process: cv2's Qt
    backend aborts the whole process (no exception) when it has no display to talk to. The
    timeout is generous: on a loaded machine cv2's import and first window take many seconds."""
    if not os.environ.get("DISPLAY"):
        return False
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=timeout,
                              env=gui_env())
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0


def gui_env() -> dict:
    """os.environ plus what keeps Qt quiet: a private XDG_RUNTIME_DIR when none is set (Qt warns
    on stderr otherwise)."""
    env = dict(os.environ)
    if not env.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"runtime-wm-{os.getuid()}"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            if path.stat().st_uid == os.getuid():
                os.chmod(path, 0o700)
                env["XDG_RUNTIME_DIR"] = str(path)
        except OSError:
            pass
    return env


def prepare_gui() -> None:
    """Call in the process that will open windows, before the first cv2 GUI call."""
    env = gui_env()
    if "XDG_RUNTIME_DIR" in env:
        os.environ.setdefault("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])


# -- drawing -----------------------------------------------------------------------------------
def rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def put_text(canvas: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5,
             color: tuple[int, int, int] = (255, 255, 0), max_width: int | None = None) -> None:
    """Text with a dark outline, legible on any background; shrunk to fit max_width."""
    if max_width is not None:
        width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
        if width > max_width:
            scale *= max_width / width
    x, y = org
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):  # same thickness: a thicker stroke would advance wider
        cv2.putText(canvas, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def compose(frame: np.ndarray, seen: np.ndarray, recon: np.ndarray, text: list[str],
            labels: tuple[str, str] = ("agent sees (64x64)", "V reconstruction")) -> np.ndarray:
    """Game frame large on the left; on the right the 64x64 frame the agent sees, V's
    reconstruction of it, and a few lines of text (episode, step, score, action).
    RGB uint8, CANVAS_H (480) high, at least 640 wide, even width (video codecs want it)."""
    frame, seen, recon = rgb(frame), rgb(seen), rgb(recon)
    h = CANVAS_H
    width = min(max(1, int(round(frame.shape[1] * h / frame.shape[0]))), 3 * h)
    interp = cv2.INTER_NEAREST if frame.shape[0] <= h else cv2.INTER_AREA
    big = cv2.resize(frame, (width, h), interpolation=interp)
    side_w = max(SIDE_W, CANVAS_MIN_W - width)
    side_w += (width + side_w) % 2
    side = np.full((h, side_w, 3), 24, np.uint8)
    x = (SIDE_W - 128) // 2
    side[30:158, x:x + 128] = cv2.resize(seen, (128, 128), interpolation=cv2.INTER_NEAREST)
    side[196:324, x:x + 128] = cv2.resize(recon, (128, 128), interpolation=cv2.INTER_NEAREST)
    put_text(side, labels[0], (x, 22), 0.45, (255, 255, 255), SIDE_W - x - 4)
    put_text(side, labels[1], (x, 188), 0.45, (255, 255, 255), SIDE_W - x - 4)
    for i, line in enumerate(text[:6]):
        put_text(side, line, (8, 350 + 22 * i), 0.5, (255, 255, 0), side_w - 12)
    return np.ascontiguousarray(np.concatenate([big, side], axis=1))


def message_frame(lines: list[str]) -> np.ndarray:
    """A plain canvas with a few lines of text (waiting screens)."""
    canvas = np.full((CANVAS_H, CANVAS_MIN_W, 3), 24, np.uint8)
    for i, line in enumerate(lines):
        put_text(canvas, line, (20, 60 + 30 * i), 0.6, (255, 255, 255), CANVAS_MIN_W - 40)
    return canvas


def describe_action(action: Any, meanings: list[str] | None = None) -> str:
    if np.ndim(action) == 0:
        a = int(action)
        return f"{a} ({meanings[a]})" if meanings and 0 <= a < len(meanings) else str(a)
    return "[" + ", ".join(f"{v:+.2f}" for v in np.asarray(action, dtype=float).reshape(-1)) + "]"


def action_meanings(env: gym.Env) -> list[str] | None:
    try:
        unwrapped: Any = env.unwrapped  # ale_py's AtariEnv has them
        return list(unwrapped.get_action_meanings())
    except Exception:  # noqa: BLE001 - only Atari envs have them
        return None


@torch.no_grad()
def decode_image(agent: Agent, z: torch.Tensor) -> np.ndarray:
    """z [1, z_dim] -> uint8 [64, 64, 3]."""
    return (agent.vae.decode(z)[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


# -- output: a window and/or a video -------------------------------------------------------------
class Window:
    """An OpenCV window showing frames paced at `fps`. q or Esc quits (so does closing the
    window), space pauses and resumes. Only create one after display_available() said yes."""

    def __init__(self, title: str = WINDOW, fps: float = 60.0):
        prepare_gui()
        self.title, self.period = title, 1.0 / max(fps, 1e-3)
        self.next_t: float | None = None
        self.shown = False
        self.mapped = False
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)

    def closed(self) -> bool:
        """The user closed the window. A window the X server has not mapped yet (a busy
        machine) is not visible either, so 'not visible' counts only after it was visible."""
        try:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return True
        self.mapped = self.mapped or visible
        return self.mapped and not visible

    def show(self, frame: np.ndarray) -> bool:
        """Show one RGB frame and wait until its time is up; False when the user quit."""
        if self.shown and self.closed():
            return False
        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.shown = True
        now = time.perf_counter()
        self.next_t = now + self.period if self.next_t is None else self.next_t + self.period
        if self.next_t < now:  # fell behind (slow step): show frames as they come, no burst
            self.next_t = now
        key = cv2.waitKey(max(1, int(round((self.next_t - now) * 1000)))) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            return False
        if key == ord(" "):
            return self.pause(frame)
        return True

    def pause(self, frame: np.ndarray) -> bool:
        paused = frame.copy()
        put_text(paused, "paused: space resumes, q quits", (8, paused.shape[0] - 14), 0.55, (255, 255, 255))
        cv2.imshow(self.title, cv2.cvtColor(paused, cv2.COLOR_RGB2BGR))
        while True:
            key = cv2.waitKey(50) & 0xFF
            if key in (ord("q"), ord("Q"), 27) or self.closed():
                return False
            if key == ord(" "):
                self.next_t = None
                return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


GIF_MAX_W = 480  # a GIF's size grows with its pixels: 3/4 of the composed canvas's width at most


class VideoSink:
    """.mp4 (H.264 in yuv420p, which browsers, GitHub and notebooks play; ffmpeg from the
    imageio-ffmpeg wheel), .avi (MJPG, OpenCV) or .gif (at most GIF_MAX_W pixels wide, a
    256-colour palette); every frame written, no display used."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.count = Path(path), fps, 0
        self.frames: list = []  # .gif: PIL palette images
        self.writer: Any = None  # cv2.VideoWriter (.avi) or imageio-ffmpeg's frame generator (.mp4)
        self.kind = self.path.suffix.lower()
        if self.kind not in (".mp4", ".avi", ".gif"):
            raise UserError(f"--record {path}: use a .mp4, .avi or .gif file name")
        folder = self.path.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UserError(f"--record {path}: folder {folder} is missing or not writable")
        if self.path.is_dir():
            raise UserError(f"--record {path} is a folder; give a file name")

    def add(self, frame: np.ndarray) -> None:
        self.count += 1
        if self.kind == ".gif":
            from PIL import Image

            if frame.shape[1] > GIF_MAX_W:
                h = int(round(frame.shape[0] * GIF_MAX_W / frame.shape[1]))
                frame = cv2.resize(frame, (GIF_MAX_W, h), interpolation=cv2.INTER_AREA)
            # Palette images (1 byte a pixel) keep long GIFs in memory at a third of the size.
            self.frames.append(Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=256))
            return
        if self.kind == ".mp4":
            self._add_h264(frame)
            return
        if self.writer is None:
            fourcc = cv2.VideoWriter.fourcc(*("mp4v" if self.kind == ".mp4" else "MJPG"))
            self.size = (frame.shape[1], frame.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, float(self.fps), self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise UserError(f"--record {self.path}: OpenCV cannot write {self.kind} files here; "
                                "try .avi or .gif")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def _add_h264(self, frame: np.ndarray) -> None:
        if self.writer is None:
            import imageio_ffmpeg

            self.size = (frame.shape[1] // 2 * 2, frame.shape[0] // 2 * 2)  # yuv420p: even sides
            self.writer = imageio_ffmpeg.write_frames(
                str(self.path), self.size, fps=float(self.fps), codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
                output_params=["-crf", "23", "-preset", "veryfast", "-movflags", "+faststart"])
            self.writer.send(None)
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        if self.writer is not None:
            if self.kind == ".mp4":
                self.writer.close()
            else:
                self.writer.release()
            self.writer = None
        if self.frames:
            # GIF delays are in 1/100 s and viewers slow anything under 2/100 s to 1/10 s.
            duration = max(20, int(round(1000 / self.fps)))
            first, rest = self.frames[0], self.frames[1:]
            first.save(self.path, save_all=True, append_images=rest, duration=duration, loop=0, optimize=False)
            self.frames = []


class Output:
    """Where composed frames go: a window, a video, both, or nowhere (then nothing is drawn)."""

    def __init__(self, window: Window | None = None, sink: VideoSink | None = None):
        self.window, self.sink = window, sink

    @property
    def active(self) -> bool:
        return self.window is not None or self.sink is not None

    def emit(self, frame: np.ndarray) -> bool:
        if self.sink is not None:
            self.sink.add(frame)
        if self.window is not None:
            return self.window.show(frame)
        return True


# -- one episode on the real env -----------------------------------------------------------------
@dataclass
class Step:
    """What is known just before the agent's action at `step` is sent to the env."""

    raw: np.ndarray
    seen: np.ndarray
    z: torch.Tensor
    action: object
    step: int
    score: float


@torch.no_grad()
def run_episode(agent: Agent, policy: WorldModelPolicy, env: gym.Env, seed: int,
                on_step: Callable[[Step], bool] | None = None) -> tuple[float, int, bool]:
    """One episode, batch 1, with `policy` (agent.policy(params, 1, device)). on_step is called
    before every action; when it returns False the episode is abandoned.
    Returns (score, steps, finished)."""
    raw, _ = env.reset(seed=seed)
    policy.start(0, Episode(seed))
    total, step = 0.0, 0
    while True:
        seen = preprocess(raw, agent.spec)
        action = policy.act(seen[None], [0])[0]
        if on_step is not None and not on_step(Step(raw, seen, policy.z, action, step, total)):
            return total, step, False
        raw, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        step += int(info.get("frames", 1))  # env steps (more than one when actions are held)
        if terminated or truncated:
            return total, step, True
