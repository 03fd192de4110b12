"""controller.normalize: CMA-ES searches weights for standardized inputs; the saved controller
has the standardization folded in, so wm-play and the engine need nothing else."""
import pickle

import numpy as np
import pytest
import torch

from worldmodels.checkpoint import load_state
from worldmodels.config import ConfigError, build_config
from worldmodels.curriculum import Run
from worldmodels.errors import UserError
from worldmodels.models.controller import Controller
from worldmodels.stages.controller import controller_params, search_controller


def test_folded_params_act_like_standardized_inputs():
    rng = np.random.default_rng(0)
    for kind, dim in (("discrete", 4), ("box", 3)):
        ctrl = Controller(10, kind, dim, [-1.0] * dim if kind == "box" else None, [1.0] * dim if kind == "box" else None)
        asked = rng.normal(size=(5, ctrl.n_params))
        center, scale = rng.normal(size=10).astype(np.float32), rng.uniform(0.01, 3, 10).astype(np.float32)
        x = torch.as_tensor(rng.normal(size=(5, 10)) * 2 + 1, dtype=torch.float32)
        cand = torch.arange(5)
        w_std, b_std = ctrl.unflatten(asked)
        want = ctrl.raw((w_std, b_std), (x - torch.as_tensor(center)) / torch.as_tensor(scale), cand)
        w, b = ctrl.unflatten(controller_params(asked, ctrl, (center, scale)))
        assert torch.allclose(ctrl.raw((w, b), x, cand), want, atol=1e-4)
        assert controller_params(asked, ctrl, None) is asked


def test_normalized_controller_stage_saves_stats_and_folded_best(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=2", "controller.normalize=true"])
    lines = []
    Run(cfg, tmp_path / "run", ["test"], log_fn=lines.append).run()
    assert any("inputs standardized" in line for line in lines)
    env = tmp_path / "run" / "pong"
    state = load_state(env / "controller" / "state.pkl")
    round_, center, scale = state["norm"]
    in_dim = 8 + 32  # smoke: z 8, h 32
    assert round_ == 0 and center.shape == (in_dim,) and scale.shape == (in_dim,) and (scale >= 1e-2).all()
    assert np.abs(center).max() > 0  # the data's mean, not a placeholder
    bundle = torch.load(env / "best.pt", weights_only=True)
    params = bundle["controller"]["params"].numpy()
    assert params.shape == (Controller(in_dim, "discrete", 6).n_params,)
    assert np.isfinite(params).all()


def test_folded_params_act_like_whitened_inputs():
    rng = np.random.default_rng(1)
    ctrl = Controller(6, "discrete", 3, hidden=4)
    asked = rng.normal(size=(4, ctrl.n_params))
    x = torch.as_tensor(rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 2, dtype=torch.float64)
    var, axes = torch.linalg.eigh(torch.cov(x.T))
    t = (axes.T / var.sqrt()[:, None]).float()
    center = x.mean(0).float()
    white = (x.float() - center) @ t.T
    assert torch.allclose(torch.cov(white.T.double()), torch.eye(6, dtype=torch.float64), atol=1e-3)
    cand = torch.arange(4).repeat_interleave(125)
    want = ctrl.raw(ctrl.unflatten(asked), white, cand)
    folded = ctrl.unflatten(controller_params(asked, ctrl, (center.numpy(), t.numpy())))
    assert torch.allclose(ctrl.raw(folded, x.float(), cand), want, atol=1e-3)


def test_whitened_controller_stage_saves_the_map_and_resumes_with_it(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=2", "controller.whiten=true"])
    lines = []
    Run(cfg, tmp_path / "run", ["test"], log_fn=lines.append).run()
    assert any("inputs whitened" in line for line in lines)
    state = load_state(tmp_path / "run" / "pong" / "controller" / "state.pkl")
    round_, center, t = state["norm"]
    in_dim = 8 + 32  # smoke: z 8, h 32
    assert round_ == 0 and center.shape == (in_dim,) and t.shape == (in_dim, in_dim)
    assert (1.0 / np.linalg.norm(t, axis=1) >= 1e-2 - 1e-6).all()  # each axis's std, floored
    cfg.max_gens = 3
    lines.clear()
    Run(cfg, tmp_path / "run", ["test"], log_fn=lines.append).run()
    assert not any("inputs whitened" in line for line in lines)  # the saved map, not a new one
    assert np.array_equal(load_state(tmp_path / "run" / "pong" / "controller" / "state.pkl")["norm"][2], t)


def test_folded_params_act_like_the_chosen_standardized_inputs():
    rng = np.random.default_rng(2)
    for hidden in (0, 4):
        ctrl = Controller(10, "discrete", 3, hidden=hidden)
        chosen = np.array([7, 2, 5])
        small = search_controller(ctrl, (np.zeros(10), np.ones(10), chosen))
        assert small.in_dim == 3 and small.hidden == hidden and small.n_params < ctrl.n_params
        asked = rng.normal(size=(4, small.n_params))
        center, scale = rng.normal(size=10).astype(np.float32), rng.uniform(0.01, 3, 10).astype(np.float32)
        x = torch.as_tensor(rng.normal(size=(8, 10)) * 2 + 1, dtype=torch.float32)
        cand = torch.arange(4).repeat(2)
        picked = ((x - torch.as_tensor(center)) / torch.as_tensor(scale))[:, chosen]
        want = small.raw(small.unflatten(asked), picked, cand)
        folded = controller_params(asked, ctrl, (center, scale, chosen))
        assert folded.shape == (4, ctrl.n_params)
        w, *_ = ctrl.unflatten(folded)
        assert (w[..., [i for i in range(10) if i not in chosen]] == 0).all()  # the others are not seen
        assert torch.allclose(ctrl.raw(ctrl.unflatten(folded), x, cand), want, atol=1e-4)


def test_moving_inputs_stage_searches_the_chosen_inputs_and_resumes_with_them(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=2", "controller.moving_inputs=3"])
    lines = []
    Run(cfg, tmp_path / "run", ["test"], log_fn=lines.append).run()
    assert any("C sees the 3 inputs that move most" in line for line in lines)
    path = tmp_path / "run" / "pong" / "controller" / "state.pkl"
    state = load_state(path)
    round_, center, scale, chosen = state["norm"]
    in_dim = 8 + 32  # smoke: z 8, h 32
    assert round_ == 0 and center.shape == scale.shape == (in_dim,) and len(set(chosen.tolist())) == 3
    es = pickle.loads(state["es"])
    assert es.N == Controller(3, "discrete", 6).n_params  # the search is over the chosen inputs only
    w, _ = Controller(in_dim, "discrete", 6).unflatten(
        torch.load(tmp_path / "run" / "pong" / "best.pt", weights_only=True)["controller"]["params"].numpy())
    assert set(torch.nonzero(w.abs().sum((0, 1))).flatten().tolist()) <= set(chosen.tolist())
    cfg.max_gens = 3
    lines.clear()
    Run(cfg, tmp_path / "run", ["test"], log_fn=lines.append).run()
    assert not any("inputs that move most" in line for line in lines)  # the saved choice, not a new one
    assert np.array_equal(load_state(path)["norm"][3], chosen) and load_state(path)["gen"] == 2
    assert build_config(["smoke"], ["controller.moving_inputs=3", "controller.whiten=false"]).controller.moving_inputs == 3
    with pytest.raises(ConfigError, match="cannot both be on"):
        build_config(["smoke"], ["controller.moving_inputs=3", "controller.whiten=true"])


def test_a_later_round_keeps_the_chosen_inputs(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=2", "rounds=2", "controller.moving_inputs=3"])
    lines = []
    Run(cfg, tmp_path / "run", ["test"], log_fn=lines.append).run()
    chosen = [line for line in lines if "C sees the 3 inputs that move most" in line]
    assert len(chosen) == 1, lines  # chosen once, in round 0
    first = [int(i) for i in chosen[0].split("standardized: ")[1].split(" of ")[0].split(", ")]
    assert any("round 1 keeps the inputs chosen before" in line for line in lines), lines
    round_, _, _, kept = load_state(tmp_path / "run" / "pong" / "controller" / "state.pkl")["norm"]
    assert round_ == 1 and kept.tolist() == first


def test_more_moving_inputs_than_c_has_is_one_clear_error(tmp_path):
    cfg = build_config(["smoke"], ["envs=pong", "workers=1", "max_gens=1", "controller.moving_inputs=41"])
    with pytest.raises(UserError, match="controller.moving_inputs is 41, but C has only 40 inputs"):
        Run(cfg, tmp_path / "run", ["test"], log_fn=lambda line: None).run()
