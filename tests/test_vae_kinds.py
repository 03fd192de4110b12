"""vae.kind: the keypoint V's coordinates, a run that trains one end to end, bundles of either kind."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from worldmodels.agent import Agent, check_bundle
from worldmodels.checkpoint import load_bundle
from worldmodels.envs import probe_spec
from worldmodels.errors import CheckpointError
from worldmodels.models.vae import ConvVAE, KeypointVAE, build_vae, vae_kind_of


def test_keypoint_v_gives_the_image_coordinates_of_a_bright_spot():
    vae = KeypointVAE(z_dim=6)
    vae.encoder = nn.AvgPool2d(2)  # each colour channel is one keypoint's map, at 32x32
    with torch.no_grad():
        vae.log_temp.fill_(np.log(200.0))
    x = torch.zeros(1, 3, 64, 64)
    x[0, 0, 40:42, 10:12] = 1.0  # map 0's peak at row 20, column 5 of the 32x32 grid
    mu, logvar = vae.encode(x)
    step = 2 / 31
    assert mu.shape == logvar.shape == (1, 6)
    assert abs(mu[0, 0].item() - (-1 + 5 * step)) < 0.01 and abs(mu[0, 3].item() - (-1 + 20 * step)) < 0.01
    assert abs(mu[0, 1].item()) < 0.01 and abs(mu[0, 4].item()) < 0.01  # a flat map: the centre
    assert torch.all(logvar == KeypointVAE.LOGVAR)


def test_keypoint_v_shapes_range_and_kinds():
    vae = build_vae("keypoints", 8)
    recon, mu, _ = vae(torch.rand(2, 3, 64, 64))
    assert recon.shape == (2, 3, 64, 64) and 0 <= recon.min() and recon.max() <= 1
    assert mu.shape == (2, 8) and mu.abs().max() <= 1
    assert vae_kind_of(vae) == "keypoints" and vae_kind_of(build_vae("conv", 8)) == "conv"
    with pytest.raises(ValueError, match="even z_dim"):
        KeypointVAE(7)
    with pytest.raises(ValueError, match="not one of conv, keypoints"):
        build_vae("pixels", 8)


def test_a_bundle_without_a_kind_is_a_conv_v_and_a_bad_kind_is_one_error():
    spec = probe_spec("ALE/Breakout-v5")
    agent = Agent.build(spec, 8, 16, 2, vae_kind="keypoints")
    bundle = agent.bundle(np.zeros(agent.controller.n_params), {}, {})
    assert bundle["vae"]["kind"] == "keypoints"
    again, _ = Agent.from_bundle(bundle)
    assert isinstance(again.vae, KeypointVAE)
    conv = Agent.build(spec, 8, 16, 2).bundle(np.zeros(agent.controller.n_params), {}, {})
    del conv["vae"]["kind"]  # a best.pt written before V had kinds
    assert isinstance(Agent.from_bundle(conv)[0].vae, ConvVAE)
    bundle["vae"]["kind"] = "pixels"
    with pytest.raises(CheckpointError, match="vae.kind is 'pixels'"):
        check_bundle(bundle, "x.pt")


def test_a_run_with_a_keypoint_v_trains_every_stage_and_plays(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("wm-train", "--config", "smoke", "--envs", "breakout", "--set", "vae.kind=keypoints",
               "--set", "vae.z_dim=8", "--out", out, "--json", check=0)
    assert json.loads(proc.stdout.strip().splitlines()[-1])
    v = torch.load(out / "breakout" / "vae.pt", weights_only=True)
    assert v["kind"] == "keypoints" and "log_temp" in v["state_dict"]
    encoded = np.load(sorted((out / "breakout" / "encoded" / "round0").glob("*.npz"))[0])
    assert encoded["mu"].shape[1] == 8 and np.abs(encoded["mu"].astype(np.float32)).max() <= 1
    best = out / "breakout" / "best.pt"
    assert load_bundle(best)["vae"]["kind"] == "keypoints"
    play = cli("wm-play", "--ckpt", best, "--episodes", "1", "--headless", "--json", check=0)
    assert json.loads(play.stdout.strip().splitlines()[-1])["episodes"] == 1


@pytest.mark.parametrize(("sets", "message"), [
    (["vae.kind=pixels"], "vae.kind must be conv or keypoints"),
    (["vae.kind=keypoints", "vae.z_dim=7"], "vae.z_dim must be even with vae.kind keypoints"),
])
def test_a_bad_kind_is_refused_before_anything_is_written(tmp_path, cli, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    proc = cli("wm-train", "--config", "smoke", "--envs", "breakout", *args, "--out", tmp_path / "run")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
