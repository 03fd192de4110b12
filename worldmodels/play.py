"""The library side of wm-play: score an agent bundle, show it in a window, record it, or let it
play inside its own world model (--dream). What is drawn, the window and the video files are
viewer.py's (shared with wm-train --live); the dream steps are engine/dream.py's, on one lane.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from .agent import Agent, evaluate, resolve_device
from .checkpoint import load_bundle
from .engine.dream import done_threshold_for, dream_act, dream_step
from .engine.rollout import torch_threads
from .envs import SLUGS, make_env, preprocess, probe_spec, register_all, resolve_env_ids, slug
from .errors import CheckpointError, UserError
from .models.controller import InputState
from .models.vae import frames_to_tensor
from .runfolder import RUN_YAML, EnvFolder, RunFolder
from .viewer import (
    WINDOW,
    Output,
    Step,
    VideoSink,
    Window,
    action_meanings,
    compose,
    decode_image,
    describe_action,
    display_available,
    run_episode,
)

DREAM_MAX_STEPS = 1000
DEFAULT_TEMPERATURE = 1.15
NO_DISPLAY_NOTICE = "wm-play: no usable display (DISPLAY unset or not reachable); running headless"


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


def load_agent_for(env: str | None, ckpt: str, device: str | torch.device) -> tuple[Agent, np.ndarray]:
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



@torch.no_grad()
def play_visible(agent: Agent, params: np.ndarray, episodes: int, seed: int, device: str | torch.device,
                 window: bool | Window, sink: VideoSink | None, fps: float, max_steps: int,
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
def play_dream(agent: Agent, params: np.ndarray, episodes: int, seed: int, device: str | torch.device,
               window: bool | Window, sink: VideoSink | None, fps: float, max_steps: int = 0,
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
            state = m.initial_state(1, device)
            memory = InputState(agent.inputs, 1, agent.vae.z_dim, agent.spec.action_dim, device)
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed + ep) % (2**63))
            total, finished, p_done = 0.0, False, 0.0
            for step in range(limit):
                c_out = dream_act(ctrl, weights, memory, z, state[0], rollouts=1)
                if out.active:
                    action = ctrl.to_env(c_out.cpu())[0]
                    dream = decode_image(agent, z)
                    text = [f"DREAM in M: {agent.spec.id}", f"tau {temperature:g}  episode {ep + 1}/{episodes}",
                            f"step {step}", f"dream score {total:.2f}", f"p(done) {p_done:.2f}",
                            f"action {describe_action(action, meanings)}"]
                    if not out.emit(compose(dream, start, dream, text,
                                            labels=("real start frame", "dream frame (V decodes z)"))):
                        break
                z, state, mix = dream_step(m, ctrl, memory, z, state, c_out, temperature, gen)
                total += float(mix.reward[0])
                p_done = float(torch.sigmoid(mix.done_logit[0]))
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


def record_bundle(ckpt: Path, video: Path, max_steps: int, device: str | torch.device, seed: int,
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
