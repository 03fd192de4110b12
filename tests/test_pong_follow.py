"""scripts/pong_follow.py: the scripted Pong reference finds the ball and its paddle and follows."""
import json
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pong_follow.py"


def load() -> SimpleNamespace:
    """The script's functions and constants (run as a module, so its main() does not run)."""
    return SimpleNamespace(**runpy.run_path(str(SCRIPT)))


def test_positions_on_a_synthetic_frame():
    pf = load()
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[pf.TOP + 50:pf.TOP + 54, 80:82] = pf.BALL_RGB
    frame[pf.TOP + 100:pf.TOP + 116, 140:144] = pf.PADDLE_RGB
    ball, paddle = pf.positions(frame)
    assert np.allclose(ball, [51.5, 80.5]) and paddle == 107.5
    assert pf.action(frame, None, "follow", 2.0)[0] == pf.UP      # the ball is above the paddle
    assert pf.action(frame, None, "follow", 2.0, offset=56.0)[0] == pf.NOOP  # aimed 56 rows below: there
    assert pf.action(frame, None, "follow", 2.0, offset=70.0)[0] == pf.DOWN
    frame[pf.TOP:pf.BOTTOM, 80:82] = 0
    assert pf.positions(frame)[0] is None and pf.action(frame, None, "follow", 2.0) == (pf.NOOP, None)


def test_predict_aims_where_the_ball_will_arrive():
    pf = load()
    # coming right, 2 rows down per column: from row 100, col 100 it would reach row 180 at col 140,
    # past the bottom wall (row 159), so it bounces back to 2 * 159 - 180 = 138
    assert abs(pf.aim(np.array([100.0, 100.0]), np.array([98.0, 99.0]), "predict") - 138.0) < 1e-6
    assert pf.aim(np.array([100.0, 100.0]), np.array([98.0, 101.0]), "predict") == 100.0  # going away
    assert pf.aim(np.array([100.0, 100.0]), np.array([98.0, 99.0]), "follow") == 100.0


def test_follower_keeps_its_paddle_nearer_the_ball_than_standing_still():
    """Real ALE/Pong-v5: over the opening steps the follower's paddle stays closer to the ball's row."""
    pf = load()
    import gymnasium as gym

    from worldmodels.envs import register_all
    register_all()

    def gap(follow: bool) -> float:
        env = gym.make("ALE/Pong-v5")
        frame, _ = env.reset(seed=7)
        previous, gaps = None, []
        for _ in range(300):
            act, previous = pf.action(frame, previous, "follow", 2.0)
            ball, paddle = pf.positions(frame)
            if ball is not None and paddle is not None:
                gaps.append(abs(paddle - ball[0]))
            frame, *_ = env.step(act if follow else pf.NOOP)
        env.close()
        assert len(gaps) > 50, "the ball was found in too few frames"
        return float(np.mean(gaps))

    assert gap(True) < 0.5 * gap(False)


def test_cli_prints_json_and_rejects_bad_input():
    out = subprocess.run([sys.executable, str(SCRIPT), "--episodes", "1", "--max-steps", "40", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 1 and result["mean_steps"] == 40 and len(result["scores"]) == 1
    bad = subprocess.run([sys.executable, str(SCRIPT), "--episodes", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
