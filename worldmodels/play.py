"""The library side of wm-play: score an agent bundle, show it in a window, record it, or let it
play inside its own world model (--dream).

OpenCV's GUI (Qt) aborts the whole process, with no exception to catch, when it has no display
to talk to. So no cv2 GUI function is ever called here unless display_available() has opened a
window in a child process first; headless play and recording use none.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import torch

from .agent import Agent, evaluate, resolve_device
from .checkpoint import load_bundle
from .engine.dream import done_threshold_for
from .engine.rollout import Episode, torch_threads
from .envs import SLUGS, make_env, preprocess, probe_spec, register_all, resolve_env_ids, slug
from .errors import CheckpointError, UserError
from .models.controller import InputState
from .models.mdnrnn import sample_z
from .models.vae import frames_to_tensor
from .runfolder import RUN_YAML, EnvFolder, RunFolder

WINDOW = "worldmodels"
CANVAS_H = 480  # composed frame: 480 high, at least 640 wide (the window at least 600 x 400)
CANVAS_MIN_W = 640
SIDE_W = 240
DREAM_MAX_STEPS = 1000
DEFAULT_TEMPERATURE = 1.15
NO_DISPLAY_NOTICE = "wm-play: no usable display (DISPLAY unset or not reachable); running headless"


def display_available(timeout: float = 30.0) -> bool:
    """An X display that OpenCV can open a window on. Probed in a child process: cv2's Qt
    backend aborts the whole process (no exception) when it has no display to talk to. The
    timeout is generous: under heavy load on 2 cores the window test once got "no usable
    display" with Xvfb running (a 10 s limit then; the likely cause: cv2's import and window
    took longer), and passed alone."""
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


def find_ckpt(ckpt: str | Path, env_id: str | None) -> Path:
    """--ckpt as given: a best.pt, an env folder of a run, or a run folder (then --env picks the
    env; without it, the run's only env with a best.pt)."""
    path = Path(ckpt)
    if not path.is_dir():
        return path
    if EnvFolder(path).best.exists():
        return EnvFolder(path).best
    if env_id is not None:
        best = RunFolder(path).env(env_id).best
        if not best.exists():
            raise CheckpointError(f"{path} holds no best.pt for {env_id} ({best} missing)")
        return best
    found = sorted(c.name for c in path.iterdir() if c.is_dir() and EnvFolder(c).best.exists())
    if len(found) != 1:
        what = f"best.pt files for {', '.join(found)}; choose one with --env" if found else "no best.pt"
        raise CheckpointError(f"{path} holds {what}")
    return RunFolder(path).env_by_slug(found[0]).best


def load_agent_for(env: str | None, ckpt: str, device) -> tuple[Agent, np.ndarray]:
    """The agent of --ckpt; --env (optional: best.pt names its env) must be the one it was trained on."""
    env_id = resolve_env_ids([env])[0] if env else None
    path = find_ckpt(ckpt, env_id)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {ckpt}; pass the best.pt of a wm-train run "
                              "(e.g. checkpoints/carracing/best.pt) or its run folder")
    bundle = load_bundle(path, env_id)
    found = bundle["env"]["id"]
    folder = folder_env(path)
    if folder is not None and slug(found) != folder:
        raise CheckpointError(f"{path} is an agent for {found}, but it lies in the env folder of {folder}; "
                              "it was put there by hand: pass it as a file, or its own run's best.pt")
    register_all()
    if found not in gym.registry:
        raise CheckpointError(f"{path} is an agent for '{found[:80]}', an env that Gymnasium does not know")
    agent, params = Agent.from_bundle(bundle, path, expect=probe_spec(found))
    return agent.to(device), params


def folder_env(path: Path) -> str | None:
    """The env (slug) whose folder holds this best.pt when that folder is a run's env folder (a
    manifest, a run.yaml above it, or the name of a curriculum env), else None."""
    folder = path.resolve().parent
    if (folder.name in SLUGS.values() or EnvFolder(folder).manifest.is_file()
            or (folder.parent / RUN_YAML).is_file()):
        return folder.name
    return None


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


def describe_action(action, meanings: list[str] | None = None) -> str:
    if np.ndim(action) == 0:
        a = int(action)
        return f"{a} ({meanings[a]})" if meanings and 0 <= a < len(meanings) else str(a)
    return "[" + ", ".join(f"{v:+.2f}" for v in np.asarray(action, dtype=float).reshape(-1)) + "]"


def action_meanings(env) -> list[str] | None:
    try:
        return list(env.unwrapped.get_action_meanings())
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
        self.path, self.fps, self.frames, self.writer, self.count = Path(path), fps, [], None, 0
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
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.kind == ".mp4" else "MJPG"))
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
def run_episode(agent: Agent, policy, env, seed: int, on_step: Callable[[Step], bool] | None = None,
                ) -> tuple[float, int, bool]:
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


@torch.no_grad()
def play_visible(agent: Agent, params: np.ndarray, episodes: int, seed: int, device, window: bool | Window,
                 sink: VideoSink | None, fps: float, max_steps: int,
                 abort: Callable[[], bool] | None = None) -> list[float]:
    """The official env, batch 1, every frame shown and/or recorded (one frame per step).
    Returns the scores of the episodes played to their end (q, or abort() true, stops early)."""
    env = make_env(agent.spec, renderer="official", max_steps=max_steps)
    meanings = action_meanings(env)
    policy = agent.policy(np.asarray(params).reshape(1, -1), 1, device)
    win = (Window(WINDOW, fps) if window is True else window) or None
    out = Output(win, sink)
    scores: list[float] = []
    try:
        for ep in range(episodes):
            def on_step(s: Step, ep=ep) -> bool:
                if abort is not None and abort():
                    return False
                if not out.active:
                    return True
                text = [agent.spec.id, f"episode {ep + 1}/{episodes}", f"step {s.step}", f"score {s.score:g}",
                        f"action {describe_action(s.action, meanings)}"]
                return out.emit(compose(s.raw, s.seen, decode_image(agent, s.z), text))

            score, _, finished = run_episode(agent, policy, env, seed + ep, on_step)
            if not finished:
                break
            scores.append(score)
    finally:
        env.close()
        if win is not None and window is True:
            win.close()
    return scores


# -- inside the dream ----------------------------------------------------------------------------
@torch.no_grad()
def play_dream(agent: Agent, params: np.ndarray, episodes: int, seed: int, device, window: bool | Window,
               sink: VideoSink | None, fps: float, max_steps: int = 0,
               temperature: float = DEFAULT_TEMPERATURE) -> list[float]:
    """The agent plays inside M. Episode i starts from V's z (mean) of the first real frame of the
    official env reset with seed S + i; then C acts on its inputs (as in training), M steps, its
    mixture is sampled at temperature tau (torch generator seeded with S + i), V decodes the new z for display. Reward
    from M's reward head; the episode ends when sigmoid(done_logit) >= 0.5 (never when M's
    data held no episode end) or after max_steps (DREAM_MAX_STEPS when 0). One frame per step
    is shown/recorded. Returns the dream scores."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise UserError(f"--temperature must be a number > 0, got {temperature}")
    limit = -(-(max_steps if max_steps > 0 else DREAM_MAX_STEPS) // agent.spec.action_repeat)  # M steps
    done_at = done_threshold_for(agent.m_saw_ends)
    device = torch.device(device)
    ctrl, m = agent.controller, agent.mdnrnn
    weights = tuple(t.to(device) for t in ctrl.unflatten(np.asarray(params).reshape(1, -1)))
    candidate = torch.zeros(1, dtype=torch.long, device=device)
    env = make_env(agent.spec, renderer="official")
    meanings = action_meanings(env)
    win = (Window(WINDOW, fps) if window is True else window) or None
    out = Output(win, sink)
    scores: list[float] = []
    try:
        for ep in range(episodes):
            raw, _ = env.reset(seed=seed + ep)
            start = preprocess(raw, agent.spec)
            z, _ = agent.vae.encode(frames_to_tensor(start[None], device))
            h, c = m.initial_state(1, device)
            memory = InputState(agent.inputs, 1, agent.vae.z_dim, agent.spec.action_dim, device)
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed + ep) % (2**63))
            total, finished, p_done = 0.0, False, 0.0
            for step in range(limit):
                action = ctrl.to_env(ctrl.raw(weights, memory.features(candidate, z, h), candidate).cpu())[0]
                if out.active:
                    dream = decode_image(agent, z)
                    text = [f"DREAM in M: {agent.spec.id}", f"tau {temperature:g}  episode {ep + 1}/{episodes}",
                            f"step {step}", f"dream score {total:.2f}", f"p(done) {p_done:.2f}",
                            f"action {describe_action(action, meanings)}"]
                    if not out.emit(compose(dream, start, dream, text,
                                            labels=("real start frame", "dream frame (V decodes z)"))):
                        break
                a_model = ctrl.to_model_input(np.asarray([action])).to(device)
                memory.record(candidate, z, a_model)
                h, c = m.step(z, a_model, (h, c))
                mix = m.mixture(h)
                total += float(mix.reward[0])
                p_done = float(torch.sigmoid(mix.done_logit[0]))
                z = sample_z(mix, temperature, gen)
                if p_done >= done_at or step + 1 == limit:
                    finished = True
                    break
            if not finished:
                break
            scores.append(total)
    finally:
        env.close()
        if win is not None and window is True:
            win.close()
    return scores


def record_bundle(ckpt: Path, video: Path, max_steps: int, device, seed: int,
                  abort: Callable[[], bool] | None = None, fps: float = 60.0) -> float | None:
    """One episode of an agent bundle on the official env, recorded as wm-play --record does,
    capped at max_steps env steps; written to a temp file and moved to `video` when whole.
    Returns the episode's score (None when abort() stopped it; then no video is written)."""
    agent, params = Agent.from_bundle(load_bundle(ckpt), ckpt)
    agent = agent.to(device)
    tmp = video.with_name(f".{video.stem}.tmp{video.suffix}")
    sink = VideoSink(str(tmp), fps / agent.spec.action_repeat)
    try:
        with torch_threads(1):
            scores = play_visible(agent, params, 1, seed, device, False, sink, fps, max_steps, abort)
    finally:
        sink.close()
    if not scores:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, video)
    return scores[0]


# -- wm-play -------------------------------------------------------------------------------------
def play(env: str | None, ckpt: str, episodes: int = 1, seed: int = 0, headless: bool = False,
         record: str | None = None, fps: float = 60.0, max_steps: int = 0, device: str = "auto",
         dream: bool = False, temperature: float = DEFAULT_TEMPERATURE) -> dict:
    """wm-play. A window only when not headless and a display answers (else one notice on
    stderr); --record writes the same composed frames with or without a display.
    Returns {"env", "episodes", "mean", "std", "scores"} (+ "dream", "temperature" in dream
    mode); mean and std are None when no episode was played to its end (q pressed)."""
    if not (math.isfinite(fps) and fps > 0):
        raise UserError(f"--fps must be a number > 0 (got {fps})")
    if dream and not (temperature > 0 and math.isfinite(temperature)):
        raise UserError(f"--temperature must be a number > 0, got {temperature}")
    dev = resolve_device(device)
    agent, params = load_agent_for(env, ckpt, dev)
    fps = fps / agent.spec.action_repeat  # one shown frame per action: keep the game's pace
    sink = VideoSink(record, fps) if record else None
    window = not headless and display_available()
    if not headless and not window:
        print(NO_DISPLAY_NOTICE, file=sys.stderr, flush=True)
    try:
        if dream:
            with torch_threads(1):
                scores = play_dream(agent, params, episodes, seed, dev, window, sink, fps, max_steps, temperature)
        elif window or sink is not None:
            with torch_threads(1):
                scores = play_visible(agent, params, episodes, seed, dev, window, sink, fps, max_steps)
        else:
            scores = evaluate(agent, params, episodes, seed, dev, max_steps=max_steps)["scores"]
    finally:
        if sink is not None:
            sink.close()
    result = {"env": agent.spec.id, "episodes": len(scores), "mean": float(np.mean(scores)) if scores else None,
              "std": float(np.std(scores)) if scores else None, "scores": scores}
    if dream:
        result.update(dream=True, temperature=float(temperature))
    return result
