import os

import numpy as np
import pytest
import torch

from worldmodels.agent import Agent
from worldmodels.checkpoint import (
    load_bundle,
    load_state,
    load_torch,
    save_state,
    save_torch,
)
from worldmodels.envs import EnvSpec
from worldmodels.errors import CheckpointError, UserError
from worldmodels.fileio import atomic_write_text

SPEC = EnvSpec(id="CarRacing-v3", slug="carracing", target=800.0, crop=(0, 84, 0, 96), dilate=False,
               action_kind="box", action_dim=3, low=[-1.0, 0.0, 0.0], high=[1.0, 1.0, 1.0])


def make_bundle(tmp_path):
    torch.manual_seed(0)
    agent = Agent.build(SPEC, z_dim=8, hidden=16, gaussians=2)
    params = np.arange(agent.controller.n_params, dtype=np.float32) / 100
    path = tmp_path / "best.pt"
    save_torch(path, agent.bundle(params, {"snapshot": {"gen": 3, "mean": 1.0}}, {"seed": 0}))
    return agent, params, path


def test_bundle_roundtrip_with_weights_only(tmp_path):
    agent, params, path = make_bundle(tmp_path)
    raw = torch.load(path, weights_only=True)  # the file alone is plain values and tensors
    assert raw["format"] == "worldmodels-agent" and raw["env"]["id"] == "CarRacing-v3"
    again, params2 = Agent.from_bundle(load_bundle(path))
    assert np.array_equal(params, params2)
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(agent.vae.encode(x)[0], again.vae.encode(x)[0])
    assert again.spec == SPEC


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "worldmodels-agent", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_bundle(path)
    assert not MARKER.exists()


def test_truncated_and_foreign_checkpoints(tmp_path):
    _, _, path = make_bundle(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_bundle(cut)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a worldmodels agent"):
        load_bundle(other)
    with pytest.raises(CheckpointError, match="not found"):
        load_torch(tmp_path / "missing.pt")


def test_state_falls_back_to_previous_when_newest_is_corrupt(tmp_path):
    path = tmp_path / "state.pkl"
    save_state(path, {"gen": 1})
    save_state(path, {"gen": 2})
    assert load_state(path)["gen"] == 2
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    messages = []
    assert load_state(path, log=messages.append)["gen"] == 1
    assert "corrupt" in messages[0]
    path.write_bytes(path.read_bytes()[:10])  # truncated
    assert load_state(path)["gen"] == 1


def test_unusable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")  # works as root too
    with pytest.raises(UserError, match="cannot write"):
        atomic_write_text(blocker / "sub" / "a.txt", "x")
    assert blocker.read_text() == "a file where a folder should be"


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_text(path, "old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(UserError, match="No space left"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


def test_bundle_of_another_format_version_is_refused(tmp_path):
    _, _, path = make_bundle(tmp_path)
    bundle = torch.load(path, weights_only=True)
    bundle["version"] = 99
    save_torch(path, bundle)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_bundle(path)
