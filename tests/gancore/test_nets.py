"""Networks: shapes, conditioning, spectral norm, normalisation and DCGAN init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gancore import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    crop_to,
    dcgan_weights_init,
    pad_to_multiple,
)


def test_dcgan_init_through_apply_changes_the_weights():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.BatchNorm2d(32),
        nn.ConvTranspose2d(32, 8, 3),
        nn.Linear(5, 64),
    )
    before = [m.weight.detach().clone() for m in net]
    net.apply(dcgan_weights_init)
    assert all(not torch.equal(b, m.weight) for b, m in zip(before, net, strict=True))
    conv, bn, deconv, linear = net
    for layer in (conv, deconv, linear):
        assert abs(float(layer.weight.std()) - 0.02) < 0.005
        assert float(layer.bias.abs().max()) == 0.0
    assert abs(float(bn.weight.mean()) - 1.0) < 0.02


def test_dcgan_nets_are_initialised_on_construction():
    g = DCGANGenerator(16, (1, 16, 16), base_channels=8)
    d = DCGANDiscriminator((1, 16, 16), base_channels=8)
    for net in (g, d):
        convs = [
            m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        ]
        assert convs and all(abs(float(c.weight.std()) - 0.02) < 0.01 for c in convs)


@pytest.mark.parametrize(
    "shape", [(1, 16, 16), (1, 28, 28), (3, 64, 64), (2, 48, 80), (1, 12, 12)]
)
def test_dcgan_shapes_any_channels_and_sizes(shape):
    g = DCGANGenerator(8, shape, base_channels=4, n_classes=3)
    d = DCGANDiscriminator(shape, base_channels=4, n_classes=3)
    y = torch.tensor([0, 2])
    images = g(torch.randn(2, 8), y)
    assert images.shape == (2, *shape) and images.dtype == torch.float32
    assert float(images.abs().max()) <= 1.0  # tanh range
    assert d(images, y).shape == (2,)
    assert d.features(images).shape == (2, d.n_features)


@pytest.mark.parametrize("normalization", ["batch", "instance", None])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_dcgan_discriminator_options(normalization, spectral_norm):
    d = DCGANDiscriminator(
        (1, 16, 16),
        base_channels=4,
        spectral_norm=spectral_norm,
        normalization=normalization,
    )
    kinds = {type(m) for m in d.modules()}
    assert (nn.BatchNorm2d in kinds) == (normalization == "batch")
    assert (nn.InstanceNorm2d in kinds) == (normalization == "instance")
    has_sn = any(hasattr(m, "parametrizations") for m in d.modules())
    assert has_sn == spectral_norm
    x = torch.randn(3, 1, 16, 16)
    out = d(x)
    out.sum().backward()
    assert out.shape == (3,)


def test_spectral_norm_bounds_the_linear_maps():
    d = MLPDiscriminator(4, (32,), spectral_norm=True)
    for _ in range(20):  # power iterations converge in training mode
        d(torch.randn(8, 4))
    d.eval()
    sigma = torch.linalg.matrix_norm(d.body[0].weight.detach(), ord=2)
    assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_mlp_options():
    g = MLPGenerator(
        4,
        3,
        (8, 8),
        n_classes=2,
        activation="leaky_relu",
        batch_norm=True,
        out_activation="tanh",
    )
    out = g(torch.randn(5, 4) * 100, torch.tensor([0, 1, 0, 1, 1]))
    assert out.shape == (5, 3) and float(out.abs().max()) <= 1.0
    assert any(isinstance(m, nn.BatchNorm1d) for m in g.modules())
    d = MLPDiscriminator(3, (8, 6), n_classes=2, dropout=0.5)
    assert d(out, torch.tensor([0, 1, 0, 1, 1])).shape == (5,)
    assert d.features(out).shape == (5, 6)
    assert any(isinstance(m, nn.Dropout) for m in d.modules())


def test_projection_discriminator_depends_on_the_label():
    torch.manual_seed(0)
    d = MLPDiscriminator(2, (8,), n_classes=3)
    x = torch.randn(4, 2)
    assert not torch.allclose(
        d(x, torch.zeros(4, dtype=torch.long)), d(x, torch.ones(4, dtype=torch.long))
    )


def test_label_errors_are_clear():
    g = MLPGenerator(4, 2, (8,))
    with pytest.raises(ValueError, match="unconditional"):
        g(torch.randn(2, 4), torch.tensor([0, 1]))
    cg = DCGANGenerator(4, (1, 8, 8), base_channels=4, n_classes=2)
    with pytest.raises(ValueError, match="pass labels"):
        cg(torch.randn(2, 4))
    with pytest.raises(ValueError, match="n_classes"):
        MLPGenerator(4, 2, n_classes=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_shape=(1, 30, 30)), "multiples of 4"),
        (dict(image_shape=(1, 16)), r"\(C, H, W\)"),
    ],
)
def test_bad_image_shapes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCGANGenerator(4, **kwargs)
    with pytest.raises(ValueError, match=match):
        DCGANDiscriminator(**kwargs)


def test_bad_options():
    with pytest.raises(ValueError, match="normalization"):
        DCGANDiscriminator((1, 8, 8), normalization="layer")
    with pytest.raises(ValueError, match="activation"):
        MLPGenerator(2, 2, activation="gelu")
    with pytest.raises(ValueError, match="out_activation"):
        MLPGenerator(2, 2, out_activation="sigmoid")
    with pytest.raises(ValueError, match="hidden_dims"):
        MLPDiscriminator(2, ())


def test_pad_and_crop_round_trip():
    images = torch.arange(2 * 30 * 29, dtype=torch.float32).view(2, 1, 30, 29)
    padded = pad_to_multiple(images)
    assert padded.shape == (2, 1, 32, 32)
    assert torch.equal(padded[..., 31, :29], images[..., 29, :])  # edge replicated
    assert torch.equal(crop_to(padded, (30, 29)), images)
    assert pad_to_multiple(padded) is padded
