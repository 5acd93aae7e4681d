"""Residual nets: shapes, widths, class conditioning, spectral norm, attention, init,
mixed precision and channels-last."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gancore import (
    ConditionalBatchNorm2d,
    ResNetDiscriminator,
    ResNetGenerator,
    SelfAttention,
    resnet_weights_init,
)

SMALL = dict(base_channels=4, max_channels=16)


def _weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight, under a spectral-norm parametrisation or not."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@pytest.mark.parametrize("n_classes", [None, 3])
@pytest.mark.parametrize(
    "shape",
    [
        (1, 32, 32),
        (3, 32, 32),
        (1, 64, 64),
        (3, 64, 64),
        (1, 128, 128),
        (3, 128, 128),
        (2, 48, 80),
        (1, 28, 28),
    ],
)
def test_shapes_any_channels_and_sizes(shape, n_classes):
    torch.manual_seed(0)
    g = ResNetGenerator(8, shape, n_classes=n_classes, **SMALL)
    d = ResNetDiscriminator(shape, n_classes=n_classes, **SMALL)
    y = torch.tensor([0, 2]) if n_classes else None
    images = g(torch.randn(2, 8), y)
    assert images.shape == (2, *shape) and images.dtype == torch.float32
    assert float(images.detach().abs().max()) <= 1.0  # tanh range
    assert d(images, y).shape == (2,)
    assert d.features(images).shape == (2, d.n_features)


def _conv_outputs(net: nn.Module) -> list[int]:
    """Each block's output width."""
    return [block.conv2.out_channels for block in net.blocks]


def test_widths_halve_as_resolution_doubles_up_to_the_cap():
    g = ResNetGenerator(16, (3, 64, 64))  # defaults: base 32, cap 512
    d = ResNetDiscriminator((3, 64, 64))
    assert g._start == (512, 4, 4)
    assert _conv_outputs(g) == [256, 128, 64, 32]  # 8x8 ... 64x64
    assert _conv_outputs(d) == [64, 128, 256, 512, 512]  # 32x32 ... 4x4, 4x4
    assert d.n_features == 512
    capped = ResNetGenerator(16, (1, 64, 64), base_channels=8, max_channels=32)
    assert capped._start[0] == 32 and _conv_outputs(capped) == [32, 32, 16, 8]
    capped_d = ResNetDiscriminator((1, 64, 64), base_channels=8, max_channels=32)
    assert _conv_outputs(capped_d) == [16, 32, 32, 32, 32]


@pytest.mark.parametrize(
    "size, counts", [(64, (3_585_699, 9_578_689)), (128, (8_569_507, 14_560_961))]
)
def test_parameter_counts_match_the_module_docstring(size, counts):
    g = ResNetGenerator(128, (3, size, size))
    d = ResNetDiscriminator((3, size, size))
    assert tuple(sum(p.numel() for p in net.parameters()) for net in (g, d)) == counts


def test_conditional_batch_norm_uses_the_class():
    torch.manual_seed(0)
    g = ResNetGenerator(8, (1, 32, 32), n_classes=3, **SMALL).eval()
    z = torch.randn(4, 8)
    out = [g(z, torch.full((4,), label)) for label in range(3)]
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    norms = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert norms and all(not m.norm.affine and m.n_classes == 3 for m in norms)
    # Unconditional: ordinary batch norm with a learnt affine transform.
    plain = ResNetGenerator(8, (1, 32, 32), **SMALL)
    norms = [m for m in plain.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert norms and all(m.norm.affine for m in norms)
    assert not any(isinstance(m, nn.Embedding) for m in plain.modules())


def test_conditional_batch_norm_alone():
    norm = ConditionalBatchNorm2d(2, n_classes=2)
    with torch.no_grad():
        _weight(norm.gain).copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
        _weight(norm.bias).copy_(torch.tensor([[0.0, 0.0], [3.0, 0.0]]))
    x = torch.randn(4, 2, 3, 3)
    normed = nn.functional.batch_norm(x, None, None, training=True)
    out = norm(x, torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(out[:2], normed[:2], atol=1e-5)
    assert torch.allclose(out[2:, 0], normed[2:, 0] * 2 + 3, atol=1e-5)
    assert torch.allclose(out[2:, 1], normed[2:, 1] * 0, atol=1e-5)


def test_projection_discriminator_uses_the_class():
    torch.manual_seed(0)
    d = ResNetDiscriminator((3, 32, 32), n_classes=3, **SMALL)
    x = torch.randn(4, 3, 32, 32)
    logits = [d(x, torch.full((4,), label)) for label in range(3)]
    assert not torch.allclose(logits[0], logits[1])
    # D(x, y) - D(x, y') = <embed(y) - embed(y'), phi(x)>: the projection term.
    d.eval()
    phi = d.features(x)
    embed = d.projection.weight
    expected = phi @ (embed[2] - embed[0])
    got = d(x, torch.full((4,), 2)) - d(x, torch.full((4,), 0))
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("net", ["generator", "discriminator"])
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_spectral_norm_on_every_layer(net, spectral_norm):
    shape, kwargs = (3, 32, 32), dict(n_classes=2, attention_at=16, **SMALL)
    if net == "generator":
        module = ResNetGenerator(8, shape, spectral_norm=spectral_norm, **kwargs)
    else:
        module = ResNetDiscriminator(shape, spectral_norm=spectral_norm, **kwargs)
    layers = [
        m
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))
    ]
    assert len(layers) > 10
    assert all(
        parametrize.is_parametrized(m, "weight") == spectral_norm for m in layers
    )


def test_spectral_norm_bounds_the_discriminator_layers():
    d = ResNetDiscriminator((1, 16, 16), **SMALL)
    x = torch.randn(8, 1, 16, 16)
    for _ in range(20):  # power iterations converge in training mode
        d(x)
    d.eval()
    for m in d.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
            assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_self_attention_starts_as_the_identity_and_learns():
    torch.manual_seed(0)
    attention = SelfAttention(16)
    x = torch.randn(2, 16, 8, 6, requires_grad=True)
    assert float(attention.gamma.detach()) == 0.0
    out = attention(x)
    assert torch.equal(out, x)
    out.square().sum().backward()
    assert float(attention.gamma.grad.abs()) > 0  # the block learns its weight
    with torch.no_grad():
        attention.gamma.fill_(1.0)
        mixed = attention(x)
        assert mixed.shape == x.shape and not torch.allclose(mixed, x)
        # Every position sees every other: changing one pixel moves distant ones.
        moved = x.clone()
        moved[:, :, 0, 0] += 5
        far = (attention(moved) - mixed)[:, :, -1, -1]
    assert float(far.abs().max()) > 0


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_attention_in_the_nets(net):
    torch.manual_seed(0)
    if net == "generator":
        module = ResNetGenerator(8, (1, 32, 32), attention_at=16, **SMALL)
        run = lambda: module(torch.randn(2, 8))  # noqa: E731
        expected_channels = 8  # the 16x16 map of a 32x32 image: 4 * 2
    else:
        module = ResNetDiscriminator((1, 32, 32), attention_at=16, **SMALL)
        run = lambda: module(torch.randn(2, 1, 32, 32))  # noqa: E731
        expected_channels = 8
    assert module.attention.out.out_channels == expected_channels
    assert float(module.attention.gamma.detach()) == 0.0  # init keeps it at 0
    run().sum().backward()
    assert module.attention.gamma.grad is not None
    assert float(module.attention.gamma.grad.abs()) > 0


@pytest.mark.parametrize(
    "cls, attention_at, allowed",
    [
        (ResNetGenerator, 4, r"\[8, 16, 32\]"),  # 4x4 is the linear layer's map
        (ResNetDiscriminator, 32, r"\[4, 8, 16\]"),  # 32x32 is the input
    ],
)
def test_attention_at_a_size_without_a_block(cls, attention_at, allowed):
    args = (8, (1, 32, 32)) if cls is ResNetGenerator else ((1, 32, 32),)
    with pytest.raises(ValueError, match=allowed):
        cls(*args, attention_at=attention_at, **SMALL)


def test_orthogonal_init_through_apply_changes_the_weights():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(4, 8, 3),
        nn.Linear(16, 6),
        nn.Embedding(3, 8),
        nn.BatchNorm2d(4),
        SelfAttention(8),
    )
    with torch.no_grad():
        net[3].weight.fill_(3.0)
        net[4].gamma.fill_(2.0)
    before = [_weight(m).detach().clone() for m in net[:3]]
    net.apply(resnet_weights_init)
    for layer, old in zip(net[:3], before, strict=True):
        rows = layer.weight.detach().flatten(1)
        assert not torch.equal(rows.view_as(old), old)
        # Orthonormal rows: something default (uniform / normal) init never gives.
        assert torch.allclose(rows @ rows.T, torch.eye(rows.shape[0]), atol=1e-5)
    assert not net[0].bias.any() and not net[1].bias.any()
    assert torch.equal(net[3].weight, torch.ones(4))
    assert float(net[4].gamma.detach()) == 0.0
    # A spectrally normalised layer is initialised through its original weight.
    conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(4, 8, 3))
    conv.apply(resnet_weights_init)
    rows = _weight(conv).detach().flatten(1)
    assert torch.allclose(rows @ rows.T, torch.eye(8), atol=1e-5)


def test_nets_are_initialised_on_construction():
    for net in (
        ResNetGenerator(8, (1, 32, 32), **SMALL),
        ResNetDiscriminator((1, 32, 32), **SMALL),
    ):
        convs = [
            m
            for m in net.modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
        ]
        assert convs
        for conv in convs:
            rows = _weight(conv).detach().flatten(1)
            if rows.shape[0] <= rows.shape[1]:
                gram = rows @ rows.T
                assert torch.allclose(gram, torch.eye(len(gram)), atol=1e-4)


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_bf16_autocast_and_channels_last_on_cpu(net):
    torch.manual_seed(0)
    kwargs = dict(n_classes=2, attention_at=8, **SMALL)
    y = torch.tensor([0, 1, 1, 0])
    if net == "generator":
        module = ResNetGenerator(8, (3, 32, 32), **kwargs)
        inputs = torch.randn(4, 8)
    else:
        module = ResNetDiscriminator((3, 32, 32), **kwargs)
        inputs = torch.randn(4, 3, 32, 32)
    module.eval()  # no power iteration or batch statistics between the runs
    with torch.no_grad():
        module.attention.gamma.fill_(0.5)  # make the attention count
    reference = module(inputs, y)
    module.to(memory_format=torch.channels_last)
    if inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    channels_last = module(inputs, y)
    assert torch.allclose(channels_last, reference, atol=1e-5)
    inputs.requires_grad_(inputs.is_floating_point())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(inputs, y)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert torch.allclose(out.float(), reference, atol=0.1)  # bf16 has 8 bits
    out.float().sum().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_label_and_option_errors():
    g = ResNetGenerator(8, (1, 32, 32), **SMALL)
    with pytest.raises(ValueError, match="unconditional"):
        g(torch.randn(2, 8), torch.tensor([0, 1]))
    d = ResNetDiscriminator((1, 32, 32), n_classes=2, **SMALL)
    with pytest.raises(ValueError, match="pass labels"):
        d(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        ResNetGenerator(8, (1, 30, 30))
    with pytest.raises(ValueError, match="multiples of 4"):
        ResNetDiscriminator((1, 30, 30))
    with pytest.raises(ValueError, match="base_channels"):
        ResNetGenerator(8, (1, 32, 32), base_channels=0)
    with pytest.raises(ValueError, match="max_channels"):
        ResNetDiscriminator((1, 32, 32), base_channels=16, max_channels=8)
    with pytest.raises(ValueError, match="n_classes"):
        ConditionalBatchNorm2d(4, n_classes=1)
