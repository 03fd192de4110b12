"""Env names: the short aliases, the curriculum's order, the targets, and each env's folder name.

No dependencies, so the run folder, the report and the CLI can name envs without importing one.
"""
from __future__ import annotations

import re

ALIASES = {"pong": "ALE/Pong-v5", "breakout": "ALE/Breakout-v5", "carracing": "CarRacing-v3",
           "catch": "worldmodels/Catch-v0"}  # catch: a tiny game for tests and a first try, not in "all"
CURRICULUM = ("pong", "breakout", "carracing")
TARGETS = {"ALE/Pong-v5": 18.0, "ALE/Breakout-v5": 50.0, "CarRacing-v3": 800.0, "worldmodels/Catch-v0": 5.0}
SLUGS = {v: k for k, v in ALIASES.items()}


def slug(env_id: str) -> str:
    """The env's folder name in a run folder: pong / breakout / carracing, or the id made
    file-safe (ALE/Pong-v4 -> ale_pong-v4)."""
    if env_id in SLUGS:
        return SLUGS[env_id]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id).strip("_").lower()
