"""Catch: a tiny pixel game for the tests and a first try of the tool (`--envs catch`).

A ball falls from the top of a 64x64 frame, drifting sideways and bouncing off the walls; the
agent moves a paddle along the bottom (0 left, 1 stay, 2 right). Catching the ball gives +1,
missing it -1; an episode is `balls` balls. A step costs a few microseconds of numpy, so a test
spends its time in the code under test, not in an emulator or a physics engine.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SIZE = 64
PADDLE_W, PADDLE_H, BALL = 12, 3, 4
FALL, PADDLE_STEP = 4, 4
BALL_RGB, PADDLE_RGB, WALL_RGB = (236, 236, 236), (92, 186, 92), (60, 60, 96)


class Catch(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, balls: int = 5, render_mode: str | None = None):
        self.balls = int(balls)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.paddle = self.ball_x = self.ball_y = self.drift = 0
        self.left = 0

    def _drop(self) -> None:
        self.ball_x = int(self.np_random.integers(1, SIZE - BALL - 1))
        self.ball_y = 0
        self.drift = int(self.np_random.integers(-2, 3))

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 3), np.uint8)
        frame[:, 0] = frame[:, -1] = WALL_RGB
        frame[self.ball_y:self.ball_y + BALL, self.ball_x:self.ball_x + BALL] = BALL_RGB
        frame[SIZE - PADDLE_H:, self.paddle:self.paddle + PADDLE_W] = PADDLE_RGB
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.paddle = (SIZE - PADDLE_W) // 2
        self.left = self.balls
        self._drop()
        return self._frame(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        move = int(action) - 1
        self.paddle = int(np.clip(self.paddle + move * PADDLE_STEP, 1, SIZE - PADDLE_W - 1))
        self.ball_y += FALL
        self.ball_x += self.drift
        if self.ball_x < 1 or self.ball_x > SIZE - BALL - 1:  # bounce off a wall
            self.drift = -self.drift
            self.ball_x = int(np.clip(self.ball_x, 1, SIZE - BALL - 1))
        reward = 0.0
        if self.ball_y + BALL >= SIZE - PADDLE_H:  # at the paddle's row: caught or missed
            caught = self.paddle - BALL < self.ball_x < self.paddle + PADDLE_W
            reward = 1.0 if caught else -1.0
            self.left -= 1
            if self.left > 0:
                self._drop()
        return self._frame(), reward, self.left == 0, False, {}

    def render(self) -> np.ndarray | None:
        return self._frame() if self.render_mode == "rgb_array" else None
