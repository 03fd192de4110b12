"""Damaged and hostile files: a truncated or corrupt rollout, a resume file (*_state.pt) with a
flipped byte, a folder that turns read-only while the previous state is kept, and best.pt files
built to break wm-play and the final evaluation. Each is one error line (exit 2 from the CLI),
never a traceback, and a resume file falls back to the previous one where that one is good."""
import errno
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from worldmodels.agent import Agent
from worldmodels.checkpoint import (
    load_arrays,
    load_bundle,
    load_state,
    load_torch_state,
    save_npz,
    save_state,
    save_torch,
    save_torch_state,
)
from worldmodels.cli import _run_guarded, play_main
from worldmodels.config import build_config
from worldmodels.curriculum import Run
from worldmodels.envs import probe_spec
from worldmodels.errors import CheckpointError, RunFolderError, UserError
from worldmodels.runfolder import EnvFolder
from worldmodels.stages.base import resume_training


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def flip_byte_in(path: Path, needle: bytes) -> None:
    """Flip one bit inside the first occurrence of `needle` (a tensor's or array's raw bytes)."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0
    data[at + len(needle) // 2] ^= 0x10
    path.write_bytes(bytes(data))


# -- (a) rollouts ----------------------------------------------------------------------------------
def rollout(tmp_path: Path) -> Path:
    path = tmp_path / "ep_000000.npz"
    rng = np.random.default_rng(0)
    save_npz(path, obs=rng.integers(0, 255, (11, 64, 64, 3), dtype=np.uint8), actions=np.arange(10),
             rewards=np.zeros(10, np.float32), terminated=np.zeros(10, bool))
    return path


@pytest.mark.parametrize("damage", ["truncated", "flipped", "foreign", "incomplete"])
def test_a_damaged_rollout_is_one_line_naming_it(tmp_path, damage):
    path = rollout(tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "flipped":  # inside the compressed frames: the zip's CRC or zlib notices
        path.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1:])
    elif damage == "foreign":
        path.write_text("not an npz\n")
    else:
        save_npz(path, obs=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(RunFolderError) as info:
        load_arrays(path, ("obs", "actions", "rewards", "terminated"))
    message = one_line(str(info.value))
    assert str(path) in message and "damaged rollout" in message


def test_a_good_rollout_reads_as_before(tmp_path):
    arrays = load_arrays(rollout(tmp_path), ("obs", "rewards"))
    assert arrays["obs"].shape == (11, 64, 64, 3) and arrays["rewards"].shape == (10,)


def test_truncated_rollout_stops_wm_train_with_one_line(tmp_path, cli):
    out = tmp_path / "run"
    settings = ["envs=pong", "workers=1", "collect.rollouts=2", "collect.max_steps=30"]
    Run(build_config(["smoke"], settings + ["stages=collect"]), out, ["test"], log_fn=lambda m: None).run()
    victim = out / "pong" / "data" / "round0" / "ep_000001.npz"
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
    args = ["wm-train", "--config", "smoke", "--out", out, "--stages", "vae"]
    for s in settings:
        args += ["--set", s]
    proc = cli(*args, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(victim) in errors[0] and "damaged rollout" in errors[0], proc.stderr[-3000:]


# -- (b) resume files: *_state.pt ------------------------------------------------------------------
MARK = np.float32(1234.5678)


def epoch_state(epoch: int) -> dict:
    return {"round": 0, "epoch": epoch, "model": {"w": torch.full((64,), float(MARK) + epoch)},
            "optimizer": {}}


def test_flipped_byte_in_a_pt_state_falls_back_to_prev(tmp_path):
    path = tmp_path / "vae_state.pt"
    save_torch_state(path, epoch_state(0))
    save_torch_state(path, epoch_state(1))
    assert load_torch_state(path, "VAE state")["epoch"] == 1
    flip_byte_in(path, np.full(8, MARK + 1, np.float32).tobytes())  # one of epoch 1's weights
    logged = []
    state = load_torch_state(path, "VAE state", logged.append)
    assert state["epoch"] == 0 and torch.equal(state["model"]["w"], epoch_state(0)["model"]["w"])
    assert len(logged) == 1 and "checksum" in logged[0] and "falling back" in logged[0]


def test_a_stage_resumes_from_prev_when_the_newest_pt_state_is_damaged(tmp_path):
    env = EnvFolder(tmp_path / "pong")
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters())
    for epoch in (2, 3):
        with torch.no_grad():
            model.weight.fill_(float(MARK) + epoch)
        save_torch_state(env.stage_state("vae"), {"round": 0, "epoch": epoch, "model": model.state_dict(),
                                                  "optimizer": opt.state_dict()})
    flip_byte_in(env.stage_state("vae"), np.full(4, MARK + 3, np.float32).tobytes())
    logged = []
    ctx = SimpleNamespace(files=env, log=logged.append, round=0)
    fresh = torch.nn.Linear(4, 2)
    start = resume_training(ctx, fresh, torch.optim.Adam(fresh.parameters()), "vae", "VAE")
    assert start == 3 and torch.all(fresh.weight == MARK + 2)  # epoch 2's weights, from the .prev file
    assert any("falling back" in m for m in logged)


def test_no_good_pt_state_is_refused_with_one_line(tmp_path):
    path = tmp_path / "mdnrnn_state.pt"
    save_torch_state(path, epoch_state(0))
    save_torch_state(path, epoch_state(1))
    for p, epoch in ((path, 1), (path.with_name(path.name + ".prev"), 0)):
        flip_byte_in(p, np.full(8, MARK + epoch, np.float32).tobytes())
    with pytest.raises(CheckpointError) as info:
        load_torch_state(path, "MDN-RNN state")
    message = one_line(str(info.value))
    assert str(path) in message and "--restart" in message
    assert load_torch_state(tmp_path / "absent_state.pt", "VAE state") is None  # none yet: start at 0


def read_only_replace(real=os.replace):
    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".prev"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(src, dst, *args, **kwargs)
    return replace


@pytest.mark.parametrize("kind", ["pt", "pkl"])
def test_read_only_folder_when_keeping_the_previous_state_is_one_line(tmp_path, monkeypatch, capsys, kind):
    import worldmodels.checkpoint as checkpoint

    path = tmp_path / ("vae_state.pt" if kind == "pt" else "state.pkl")
    save, load = ((save_torch_state, lambda p: load_torch_state(p, "VAE state")) if kind == "pt"
                  else (save_state, load_state))
    save(path, {"epoch": 4, "round": 0})
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint.os, "replace", read_only_replace())
    with pytest.raises(UserError) as info:
        save(path, {"epoch": 5, "round": 0})
    assert "Read-only file system" in one_line(str(info.value)) and "intact" in str(info.value)
    assert _run_guarded(lambda: save(path, {"epoch": 5, "round": 0})) == 2  # the CLI's one line, exit 2
    assert "Read-only file system" in one_line(capsys.readouterr().err)
    monkeypatch.undo()
    assert path.read_bytes() == before and load(path)["epoch"] == 4


# -- (c) hostile best.pt ---------------------------------------------------------------------------
def pong_bundle() -> dict:
    torch.manual_seed(0)
    agent = Agent.build(probe_spec("ALE/Pong-v5"), z_dim=8, hidden=16, gaussians=2)
    params = np.random.default_rng(0).normal(0, 1, agent.controller.n_params).astype(np.float32)
    return agent.bundle(params, {"snapshot": {"gen": 1, "mean": -21.0}, "final": None}, {"seed": 0, "gen": 1})


def wrong_shape(b):
    b["vae"]["state_dict"]["fc_mu.weight"] = torch.zeros(3, 1024)


def nan_weight(b):
    b["mdnrnn"]["state_dict"]["lstm.weight_hh_l0"][0, 0] = float("nan")


def inf_param(b):
    b["controller"]["params"][0] = float("inf")


def huge_z(b):
    b["vae"]["z_dim"] = 10**8


def huge_hidden(b):
    b["mdnrnn"]["hidden"] = 10**7


def huge_action_dim(b):
    b["env"]["action_dim"] = 10**9


def lying_action_space(b):
    """A Pong agent that says Pong has 5 actions, its tensors made to agree."""
    agent = Agent.build(probe_spec("ALE/Pong-v5"), z_dim=8, hidden=16, gaussians=2)
    spec = agent.spec
    spec.action_dim = 5
    liar = Agent.build(spec, z_dim=8, hidden=16, gaussians=2)
    b.update(liar.bundle(np.zeros(liar.controller.n_params, np.float32), {}, {}))


def short_params(b):
    b["controller"]["params"] = b["controller"]["params"][:-1]


def missing_tensor(b):
    del b["mdnrnn"]["state_dict"]["head.bias"]


HOSTILE = {"shape": (wrong_shape, "fc_mu.weight"), "nan": (nan_weight, "NaN"), "inf": (inf_param, "inf"),
           "z_dim": (huge_z, "vae.z_dim"), "hidden": (huge_hidden, "mdnrnn.hidden"),
           "action_dim": (huge_action_dim, "action_dim"), "actions": (lying_action_space, "action space"),
           "params": (short_params, "controller.params"), "missing": (missing_tensor, "head.bias")}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_best_pt_is_one_line_and_exit_2_in_wm_play(tmp_path, capsys, monkeypatch, case):
    damage, word = HOSTILE[case]
    bundle = pong_bundle()
    damage(bundle)
    path = tmp_path / "agent" / "best.pt"
    save_torch(path, bundle)
    built = []
    real_build = Agent.build.__func__
    monkeypatch.setattr(Agent, "build", classmethod(lambda cls, *a, **k: built.append(a) or real_build(cls, *a, **k)))
    code = play_main(["--ckpt", str(path), "--episodes", "1", "--headless", "--max-steps", "5"])
    message = one_line(capsys.readouterr().err)
    assert code == 2 and ": error: " in message and str(path) in message and word in message
    assert not built  # refused before any network was built


def test_a_best_pt_of_another_env_in_an_env_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    save_torch(run / "breakout" / "best.pt", pong_bundle())  # a Pong agent put in Breakout's folder
    for ckpt in (run / "breakout", run / "breakout" / "best.pt", run):
        code = play_main(["--ckpt", str(ckpt), "--episodes", "1", "--headless", "--max-steps", "5"])
        message = one_line(capsys.readouterr().err)
        assert code == 2 and "ALE/Pong-v5" in message and "breakout" in message, (ckpt, message)
    # the final evaluation of wm-train (Breakout's env folder) refuses it before any episode
    from worldmodels.selection import final_evaluation

    ctx = SimpleNamespace(files=EnvFolder(run / "breakout"), spec=probe_spec("ALE/Breakout-v5"), manifest={},
                          log=lambda m: None)
    with pytest.raises(CheckpointError, match="agent for ALE/Pong-v5, not ALE/Breakout-v5"):
        final_evaluation(ctx, 2)


def test_best_pt_of_today_still_plays(tmp_path, capsys):
    path = tmp_path / "run" / "pong" / "best.pt"
    save_torch(path, pong_bundle())
    assert play_main(["--ckpt", str(path.parent), "--episodes", "1", "--headless", "--max-steps", "5"]) == 0
    agent, params = Agent.from_bundle(load_bundle(path), path, expect=probe_spec("ALE/Pong-v5"))
    assert agent.vae.z_dim == 8 and params.shape == (agent.controller.n_params,)
