import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# Resume states are signed with a per-user key: the tests (and the CLIs they start) use their own.
os.environ.setdefault("WORLDMODELS_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="wm-key-"), "state.key"))

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=900, env=None, check=None):
    """Run a console entry point as a user would (python -m worldmodels.<tool>)."""
    tool, rest = args[0], [str(a) for a in args[1:]]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "worldmodels.cli", tool, *rest], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture
def cli():
    return run_cli
