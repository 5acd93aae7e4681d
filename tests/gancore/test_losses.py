"""Losses and R1 pinned to their equations on tiny tensors; DiffAugment; EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gancore import EMA, DiffAugment, GANLoss, gradient_penalty, r1_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def test_bce_loss_matches_the_original_gan():
    sig = torch.sigmoid
    loss = GANLoss("bce")
    expected_d = -(torch.log(sig(REAL)).mean() + torch.log(1 - sig(FAKE)).mean())
    assert float(loss.discriminator_loss(REAL, FAKE)) == pytest.approx(
        float(expected_d)
    )
    # Non-saturating generator loss: -log D(G(z)), not log(1 - D(G(z))).
    expected_g = -torch.log(sig(FAKE)).mean()
    assert float(loss.generator_loss(FAKE)) == pytest.approx(float(expected_g))


def test_bce_is_stable_for_extreme_logits():
    loss = GANLoss("bce")
    value = loss.discriminator_loss(torch.tensor([1e4]), torch.tensor([-1e4]))
    assert math.isfinite(float(value)) and float(value) == pytest.approx(0.0)


def test_hinge_loss():
    loss = GANLoss("hinge")
    # relu(1 - [2, -1]) = [0, 2]; relu(1 + [0.5, -3]) = [1.5, 0]
    assert float(loss.discriminator_loss(REAL, FAKE)) == pytest.approx(1.0 + 0.75)
    assert float(loss.generator_loss(FAKE)) == pytest.approx(1.25)


def test_wasserstein_loss_and_default_lambda():
    loss = GANLoss("wgan-gp")
    assert loss.gp_weight == 10.0 and loss.needs_gradient_penalty
    assert float(loss.discriminator_loss(REAL, FAKE)) == pytest.approx(-1.25 - 0.5)
    assert float(loss.generator_loss(FAKE)) == pytest.approx(1.25)
    assert not GANLoss("wgan-gp", gp_weight=0).needs_gradient_penalty


def test_gradient_penalty_value_for_a_linear_critic():
    critic = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))  # gradient norm 5

    def d(x):
        return critic(x).squeeze(1)

    gp = gradient_penalty(d, torch.randn(6, 3), torch.randn(6, 3))
    assert float(gp) == pytest.approx((5 - 1) ** 2)
    gp.backward()
    assert critic.weight.grad is not None


def test_gradient_penalty_conditional_images():
    calls = {}

    def d(x, y):
        calls["y"] = y
        return x.flatten(1).sum(1) * 0.5

    y = torch.tensor([0, 1])
    gp = gradient_penalty(d, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2), y)
    # gradient of 0.5 * sum over 4 pixels has norm 0.5 * 2 = 1
    assert float(gp) == pytest.approx(0.0, abs=1e-6)
    assert calls["y"] is y


def test_r1_penalty_of_a_linear_discriminator():
    # D(x) = w.x + b: grad_x D = w for every x, so R1 = gamma / 2 * ||w||^2.
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 2.0, 2.0]]))
    x = torch.randn(5, 3, requires_grad=True)
    penalty = r1_penalty(critic(x).squeeze(1), x, gamma=4.0)
    assert float(penalty) == pytest.approx(4.0 / 2 * 9)
    # Differentiable in the discriminator's weights: d/dw (gamma/2 ||w||^2) = gamma w.
    penalty.backward()
    assert torch.allclose(critic.weight.grad, 4.0 * critic.weight.detach())
    assert float(r1_penalty(critic(x).squeeze(1), x)) == pytest.approx(45.0)  # 10/2*9


def test_r1_penalty_is_a_batch_mean_of_squared_gradient_norms():
    # D(x) = sum(x^2) over the image: grad = 2x, ||2x||^2 = 4 * sum(x^2) per image.
    x = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 1.0]]]], requires_grad=True)
    logits = x.square().flatten(1).sum(1)
    # Per image: 4 * 5 = 20 and 4 * 1 = 4, mean 12; gamma / 2 = 1.
    assert float(r1_penalty(logits, x, gamma=2.0)) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="gamma"):
        r1_penalty(logits, x, gamma=-1.0)


def test_unknown_loss():
    with pytest.raises(ValueError, match="one of"):
        GANLoss("lsgan")
    with pytest.raises(ValueError, match="gp_weight"):
        GANLoss("wgan-gp", gp_weight=-1)


@pytest.mark.parametrize(
    "policy", ["color", "translation", "cutout", "color,translation,cutout", ""]
)
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaugment_policies_are_differentiable(policy, channels):
    augment = DiffAugment(policy)
    x = torch.rand(4, channels, 12, 12, requires_grad=True)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    if policy:
        assert not torch.equal(out, x)
    else:
        assert torch.equal(out, x)


def test_diffaugment_is_reproducible_and_changes_pixels_as_documented():
    x = torch.ones(8, 1, 16, 16)
    a = DiffAugment("cutout")(x, torch.Generator().manual_seed(1))
    b = DiffAugment("cutout")(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    zeroed = (a == 0).flatten(1).float().mean(1)
    assert float(zeroed.max()) <= 0.25 + 1e-6 and float(zeroed.min()) > 0
    shifted = DiffAugment("translation")(x, torch.Generator().manual_seed(1))
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}


def test_diffaugment_errors():
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        DiffAugment("color,blur")
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        DiffAugment("color")(torch.zeros(3, 4))


def test_ema_tracks_the_average_and_copies_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.9)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(3.0)
    ema.update(net)
    assert torch.allclose(ema.module[0].weight, start + 0.1)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))
    assert not any(p.requires_grad for p in ema.module.parameters())
    other = EMA(net, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module[0].weight, ema.module[0].weight)
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.0)
