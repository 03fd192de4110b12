"""The library side of wm-play: score an agent bundle, show it in a window, or record it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .agent import Agent, evaluate, resolve_device
from .checkpoint import load_bundle
from .engine.rollout import Episode
from .envs import make_env, preprocess, resolve_env_ids
from .errors import CheckpointError, UserError
from .models.vae import frames_to_tensor

WINDOW = "worldmodels"


def display_available(timeout: float = 10.0) -> bool:
    """An X display that OpenCV can open a window on. Probed in a child process: cv2's Qt
    backend aborts the whole process (no exception) when it has no display to talk to."""
    if not os.environ.get("DISPLAY"):
        return False
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0


def load_agent_for(env: str, ckpt: str, device) -> tuple[Agent, np.ndarray]:
    env_id = resolve_env_ids([env])[0]
    if not Path(ckpt).exists():
        raise CheckpointError(f"checkpoint not found: {ckpt}; pass the best.pt of a wm-train run "
                              "(e.g. checkpoints/carracing/best.pt)")
    bundle = load_bundle(ckpt)
    if bundle["env"]["id"] != env_id:
        raise CheckpointError(f"{ckpt} is an agent for {bundle['env']['id']}, not {env_id}")
    agent, params = Agent.from_bundle(bundle)
    return agent.to(device), params


def compose(frame: np.ndarray, seen: np.ndarray, recon: np.ndarray, text: list[str]) -> np.ndarray:
    """Game frame large on the left; the 64x64 frame the agent sees and V's reconstruction on
    the right; an overlay of score, step, episode and action. RGB uint8, 640x420 or more."""
    h = 420
    scale = h / frame.shape[0]
    big = cv2.resize(frame, (int(frame.shape[1] * scale), h), interpolation=cv2.INTER_NEAREST)
    side = np.zeros((h, 200, 3), np.uint8)
    side[20:148, 36:164] = cv2.resize(seen, (128, 128), interpolation=cv2.INTER_NEAREST)
    side[190:318, 36:164] = cv2.resize(recon, (128, 128), interpolation=cv2.INTER_NEAREST)
    canvas = np.concatenate([big, side], axis=1)
    if canvas.shape[1] < 640:
        canvas = np.concatenate([canvas, np.zeros((h, 640 - canvas.shape[1], 3), np.uint8)], axis=1)
    cv2.putText(canvas, "agent sees", (big.shape[1] + 36, 165), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    cv2.putText(canvas, "V reconstruction", (big.shape[1] + 36, 335), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1)
    for i, line in enumerate(text):
        cv2.putText(canvas, line, (8, 22 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 1)
    return canvas


class VideoSink:
    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.frames, self.writer = Path(path), fps, [], None
        if self.path.suffix.lower() not in (".mp4", ".avi", ".gif"):
            raise UserError(f"--record {path}: use a .mp4, .avi or .gif file name")
        if not self.path.parent.exists() or not os.access(self.path.parent, os.W_OK):
            raise UserError(f"--record {path}: folder {self.path.parent} is missing or not writable")

    def add(self, frame: np.ndarray) -> None:
        if self.path.suffix.lower() == ".gif":
            self.frames.append(frame)
            return
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.frames:
            from PIL import Image

            images = [Image.fromarray(f) for f in self.frames]
            images[0].save(self.path, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0)


@torch.no_grad()
def play_visible(agent: Agent, params: np.ndarray, episodes: int, seed: int, device, window: bool,
                 sink: VideoSink | None, fps: float, max_steps: int) -> list[float]:
    """One env, batch 1, every frame shown and/or recorded. q quits, space pauses."""
    env = make_env(agent.spec, renderer="official", max_steps=max_steps)
    policy = agent.policy(params.reshape(1, -1), 1, device)
    scores = []
    quit_ = False
    try:
        for ep in range(episodes):
            raw, _ = env.reset(seed=seed + ep)
            policy.start(0, Episode(seed + ep))
            total, step, done = 0.0, 0, False
            while not done and not quit_:
                seen = preprocess(raw, agent.spec)
                action = policy.act(seen[None], np.array([True]))[0]
                mu, _ = agent.vae.encode(frames_to_tensor(seen[None], device))
                recon = (agent.vae.decode(mu)[0].clamp(0, 1) * 255).byte().permute(1, 2, 0).cpu().numpy()
                text = [f"episode {ep + 1}/{episodes}  step {step}", f"score {total:.1f}",
                        f"action {np.round(action, 2).tolist() if np.ndim(action) else int(action)}"]
                frame = compose(raw if raw.shape[-1] == 3 else np.repeat(raw, 3, -1), seen, recon, text)
                if sink is not None:
                    sink.add(frame)
                if window:
                    t0 = time.perf_counter()
                    cv2.imshow(WINDOW, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                    wait = max(1, int(1000 / fps - (time.perf_counter() - t0) * 1000))
                    key = cv2.waitKey(wait) & 0xFF
                    if key == ord("q"):
                        quit_ = True
                    elif key == ord(" "):
                        while (cv2.waitKey(50) & 0xFF) not in (ord(" "), ord("q")):
                            pass
                raw, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                step += 1
                done = terminated or truncated
            if done:
                scores.append(total)
            if quit_:
                break
    finally:
        env.close()
        if window:
            cv2.destroyAllWindows()
    return scores


def play(env: str, ckpt: str, episodes: int = 1, seed: int = 0, headless: bool = False,
         record: str | None = None, fps: float = 60.0, max_steps: int = 0, device: str = "auto") -> dict:
    dev = resolve_device(device)
    agent, params = load_agent_for(env, ckpt, dev)
    sink = VideoSink(record, fps) if record else None
    window = not headless and display_available()
    if not headless and not window:
        print("wm-play: no usable display (DISPLAY unset or not reachable); running headless", file=sys.stderr)
    if window or sink is not None:
        try:
            scores = play_visible(agent, params, episodes, seed, dev, window, sink, fps, max_steps)
        finally:
            if sink is not None:
                sink.close()
    else:
        scores = evaluate(agent, params, episodes, seed, dev, max_steps=max_steps)["scores"]
    return {"env": agent.spec.id, "episodes": len(scores), "mean": float(np.mean(scores)) if scores else None,
            "std": float(np.std(scores)) if scores else None, "scores": scores}
