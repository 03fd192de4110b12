import math

import numpy as np
import pytest
import torch

from worldmodels.models import MDNRNN, Controller, ConvVAE, gmm_nll, vae_loss
from worldmodels.models.mdnrnn import sample_z


def test_vae_shapes_and_range():
    vae = ConvVAE(z_dim=16)
    x = torch.rand(3, 3, 64, 64)
    recon, mu, logvar = vae(x)
    assert recon.shape == (3, 3, 64, 64) and mu.shape == (3, 16) and logvar.shape == (3, 16)
    assert recon.min() >= 0 and recon.max() <= 1


def test_vae_kl_free_bits_floor():
    x = torch.rand(2, 3, 64, 64)
    mu, logvar = torch.zeros(2, 8), torch.zeros(2, 8)  # KL exactly 0
    loss, rec, kl = vae_loss(x, x, mu, logvar, kl_tolerance=0.5)
    assert rec.item() == 0 and kl.item() == pytest.approx(4.0)  # floored at 0.5 * 8


def test_mdnrnn_shapes_and_step_matches_forward():
    torch.manual_seed(0)
    m = MDNRNN(z_dim=4, action_dim=3, hidden=16, gaussians=5)
    z, a = torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    out, (h, c) = m(z, a)
    assert out.log_pi.shape == (2, 6, 4, 5) and out.reward.shape == (2, 6) and h.shape == (1, 2, 16)
    assert torch.allclose(out.log_pi.exp().sum(-1), torch.ones(2, 6, 4), atol=1e-5)
    state = m.initial_state(2)
    for t in range(6):
        state = m.step(z[:, t], a[:, t], state)
    assert torch.allclose(state[0], h[0], atol=1e-5) and torch.allclose(state[1], c[0], atol=1e-5)


def test_gmm_nll_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    B, T, Z, G = 2, 3, 4, 5
    target = torch.randn(B, T, Z, generator=g)
    log_pi = torch.log_softmax(torch.randn(B, T, Z, G, generator=g), -1)
    mu = torch.randn(B, T, Z, G, generator=g)
    log_sigma = torch.randn(B, T, Z, G, generator=g) * 0.3
    total = 0.0
    for b in range(B):
        for t in range(T):
            for z in range(Z):
                p = 0.0
                for k in range(G):
                    s = math.exp(log_sigma[b, t, z, k])
                    p += math.exp(log_pi[b, t, z, k]) * math.exp(-0.5 * ((target[b, t, z] - mu[b, t, z, k]) / s) ** 2) / (
                        s * math.sqrt(2 * math.pi))
                total += -math.log(p)
    assert gmm_nll(target, log_pi, mu, log_sigma).item() == pytest.approx(total / (B * T), rel=1e-5)
    mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    one = gmm_nll(target[:1, :1], log_pi[:1, :1], mu[:1, :1], log_sigma[:1, :1])
    assert gmm_nll(target, log_pi, mu, log_sigma, mask).item() == pytest.approx(one.item(), rel=1e-6)


def test_gmm_nll_is_finite_far_from_every_component():
    target = torch.full((1, 1, 2), 1e4)
    log_pi = torch.log_softmax(torch.zeros(1, 1, 2, 3), -1)
    mu = torch.zeros(1, 1, 2, 3)
    log_sigma = torch.full((1, 1, 2, 3), -7.0)
    value = gmm_nll(target, log_pi, mu, log_sigma)
    assert torch.isfinite(value) and value.item() > 0


def test_sample_z_shapes_and_temperature():
    m = MDNRNN(z_dim=3, action_dim=2, hidden=8, gaussians=4)
    out = m.mixture(torch.randn(5, 8))
    g = torch.Generator().manual_seed(0)
    z = sample_z(out, tau=1.15, generator=g)
    assert z.shape == (5, 3) and torch.isfinite(z).all()


def test_controller_flatten_roundtrip_and_batched_matmul():
    c = Controller(in_dim=6, action_kind="box", action_dim=3, low=[-1, 0, 0], high=[1, 1, 1])
    assert c.n_params == 3 * 6 + 3
    params = np.random.default_rng(0).normal(size=(4, c.n_params)).astype(np.float32)
    w, b = c.unflatten(params)
    assert w.shape == (4, 3, 6) and b.shape == (4, 3)
    assert np.array_equal(Controller.flatten(w, b), params)
    feats = torch.randn(5, 6)
    cand = torch.tensor([0, 3, 1, 1, 2])
    raw = c.raw((w, b), feats, cand)
    for lane in range(5):
        expect = w[cand[lane]] @ feats[lane] + b[cand[lane]]
        assert torch.allclose(raw[lane], expect, atol=1e-6)
    act = c.to_env(raw)
    assert act.shape == (5, 3) and (act[:, 0] >= -1).all() and (act[:, 1:] >= 0).all() and (act <= 1).all()


def test_controller_discrete_argmax_and_one_hot():
    c = Controller(in_dim=2, action_kind="discrete", action_dim=4)
    raw = torch.tensor([[0.1, 0.9, 0.0, 0.2], [2.0, 0.0, 0.0, 0.0]])
    assert c.to_env(raw).tolist() == [1, 0]
    assert c.to_model_input(np.array([1, 3])).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]


def test_object_weights_mark_the_ball_and_raise_its_loss():
    from worldmodels.models.vae import object_weights

    background = torch.full((3, 64, 64), 0.3)
    x = background.expand(2, 3, 64, 64).clone()
    x[0, :, 10:12, 20:22] = 0.9  # a 2x2 ball in frame 0; frame 1 is background only
    w = object_weights(x, background, weight=10.0)
    assert w.shape == (2, 1, 64, 64)
    assert (w[0, 0, 10:12, 20:22] == 11.0).all() and w[0].sum().item() == 64 * 64 + 4 * 10
    assert (w[1] == 1.0).all()
    # a reconstruction that drops the ball pays 11x more for it than under plain L2
    recon = background.expand(2, 3, 64, 64).clone()
    mu, logvar = torch.zeros(2, 8), torch.zeros(2, 8)
    _, plain, _ = vae_loss(recon, x, mu, logvar, kl_tolerance=0.0)
    _, weighted, _ = vae_loss(recon, x, mu, logvar, kl_tolerance=0.0, weight=w)
    assert plain.item() > 0 and weighted.item() == pytest.approx(11 * plain.item(), rel=1e-5)
