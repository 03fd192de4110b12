"""A signal during an evaluation ends it within a step, and a rerun reaches the uninterrupted result.

A barrier makes the timing certain: the signal is sent at the first action of the phase under
test, so none of its episodes can have ended when the phase stops; the number of actions the
engine still asks for after the signal says whether it stopped at once or played on.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from worldmodels.agent import Agent, eval_lanes, evaluate
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.engine import rollout
from worldmodels.engine.rollout import LaneEngine
from worldmodels.envs import probe_spec
from worldmodels.errors import Interrupted
from worldmodels.hooks import Hook, default_hooks

SETTINGS = ["envs=catch", "max_gens=3", "eval_every=1", "workers=1"]


class Barrier:
    """Once armed: SIGTERM to this process at the next evaluation's first action, then a count
    of the actions asked for after it."""

    def __init__(self):
        self.armed = self.fired = False
        self.acts_after = 0

    def wrap(self, run):
        barrier = self

        def wrapped(engine, episodes, policy, *args, **kwargs):
            if barrier.armed and not barrier.fired:
                act = policy.act

                def act_once(obs, lanes):
                    if barrier.fired:
                        barrier.acts_after += 1
                    else:
                        barrier.fired = True
                        os.kill(os.getpid(), signal.SIGTERM)
                    return act(obs, lanes)

                policy.act = act_once
            return run(engine, episodes, policy, *args, **kwargs)

        return wrapped


class Arm(Hook):
    """Arms the barrier for the snapshot of generation 1, the pick or the final evaluation."""

    name = "arm"

    def __init__(self, barrier: Barrier, phase: str):
        self.barrier, self.phase = barrier, phase

    def on_step_end(self, ctx, stage, report):
        if self.phase == "snapshot" and stage == "controller" and report.index == 1:
            self.barrier.armed = True

    def on_stage_end(self, ctx, stage):
        if self.phase in ("pick", "final") and stage == "controller":
            self.barrier.armed = True


def _train(out, hooks=None):
    cfg = build_config(["smoke"], SETTINGS)
    Run(cfg, out, ["test"], hooks=hooks if hooks is not None else default_hooks(cfg), log_fn=lambda m: None).run()
    return json.loads((out / "curriculum_results.json").read_text())["envs"][0]


def _outcome(out):
    entry = json.loads((out / "curriculum_results.json").read_text())["envs"][0]
    best = torch.load(out / "catch" / "best.pt", weights_only=True)
    gens = [int(line.split(",")[0]) for line in (out / "catch" / "metrics.csv").read_text().splitlines()[1:]]
    return entry["final_eval"]["scores"], np.asarray(best["controller"]["params"]), gens


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("signals") / "run"
    _train(out)
    return _outcome(out)


def test_evaluate_stops_within_a_step_when_asked_and_raises_interrupted():
    agent = Agent.build(probe_spec("worldmodels/Catch-v0"), z_dim=8, hidden=16, gaussians=2)
    params = np.zeros(agent.controller.n_params, np.float32)
    asked = []

    def abort():
        asked.append(1)
        return len(asked) > 3

    with LaneEngine(agent.spec, eval_lanes(4), workers=1, renderer="official") as engine:
        with pytest.raises(Interrupted, match="0 of 4 episodes"):
            evaluate(agent, params, 4, 0, "cpu", engine=engine, abort=abort)
        assert engine.steps <= 4 * eval_lanes(4)  # a few lockstep steps, not a whole episode


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["final", "pick", "snapshot"])
def test_a_signal_ends_an_evaluation_at_once_and_the_rerun_redoes_it(tmp_path, monkeypatch, uninterrupted, phase):
    barrier = Barrier()
    monkeypatch.setattr(rollout.LaneEngine, "run", barrier.wrap(rollout.LaneEngine.run))
    cfg = build_config(["smoke"], SETTINGS)
    hooks = default_hooks(cfg)
    arm = Arm(barrier, phase)
    hooks = [arm, *hooks] if phase in ("snapshot", "pick") else [*hooks, arm]  # before or after EvalSnapshot
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    entry = _train(out, hooks)
    assert signal.getsignal(signal.SIGTERM) is before  # Run leaves the caller's handlers as it found them
    assert barrier.fired and barrier.acts_after <= 2  # one step per lane group at most, not an episode
    assert entry["final_eval"] is None and entry["status"] == "interrupted"
    pick = out / "catch" / "eval" / "pick_round0.json"
    snapshots = sorted(p.name for p in (out / "catch" / "eval").glob("gen_*.json"))
    if phase == "snapshot":  # generation 1 is not checkpointed: its row and snapshot come with the rerun
        assert snapshots == ["gen_0000.json"] and not pick.exists()
    elif phase == "pick":
        assert len(snapshots) == 3 and not pick.exists()
    else:
        assert pick.exists()
    monkeypatch.undo()
    _train(out)
    scores, params, gens = _outcome(out)
    want_scores, want_params, want_gens = uninterrupted
    assert gens == want_gens == [0, 1, 2]
    assert scores == want_scores
    assert np.array_equal(params, want_params)


def _wait_for(path, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.slow
def test_sigterm_to_the_process_group_stops_the_trainer_without_replacing_workers(tmp_path):
    out = tmp_path / "run"
    args = ["--config", "smoke", "--envs", "catch", "--max-gens", "40", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "worldmodels.cli", "wm-train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    _wait_for(out / "catch" / "eval" / "gen_0001.json", proc)
    os.killpg(proc.pid, signal.SIGTERM)  # what a scheduler or a terminal sends: every process at once
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "rerun the same command to resume" in err
    assert "replacing it" not in err  # no worker was seen to die and replaced (rollout.py's warning)


@pytest.mark.slow
def test_sigterm_stops_wm_play_with_status_130_and_keeps_the_video(tmp_path, cli):
    out = tmp_path / "run"
    cli("wm-train", "--config", "smoke", "--envs", "catch", "--max-gens", "1", "--out", out, check=0)
    video = tmp_path / "play.avi"
    proc = subprocess.Popen([sys.executable, "-m", "worldmodels.cli", "wm-play", "--ckpt", str(out),
                             "--headless", "--episodes", "50", "--record", str(video)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(video, proc)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    print(f"wm-play: {time.time() - sent:.2f} s from SIGTERM to exit")
    import cv2

    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and cap.read()[0]  # the frames recorded before the signal are a playable video
    cap.release()
