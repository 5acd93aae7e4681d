"""Residual generator and discriminator for real images of 32 to 256 pixels.

The DCGAN nets of :mod:`gancore.nets` stop improving beyond about 64 pixels; these
follow SNGAN and BigGAN (Miyato et al. 2018; Brock et al. 2019), the architecture
that class-conditional GANs on real photographs settled on:

* **Generator**: a linear layer maps ``z`` to the smallest map, then one residual
  up-sampling block per doubling of the sides (batch norm, ReLU, nearest 2x
  up-sampling, 3x3 conv, batch norm, ReLU, 3x3 conv, plus a 1x1-conv shortcut), then
  batch norm, ReLU, a 3x3 conv to the image channels and tanh. When conditional, the
  batch norms are **class-conditional**: their gain and bias come from a class
  embedding (de Vries et al. 2017; BigGAN), so the class acts on every block.
* **Discriminator**: residual down-sampling blocks (the first one "optimised" as in
  SNGAN: no activation before its first conv, pooling before its shortcut), one
  block at the smallest size, ReLU, global **sum** pooling into the feature vector
  ``phi``, and ``D(x, y) = w . phi + <embed(y), phi>``: the **projection** of the
  class embedding (Miyato & Koyama 2018). Spectral norm on every conv, linear and
  embedding layer.
* Optional **self-attention** (SAGAN, Zhang et al. 2019) after the block that makes
  a chosen map height, in either net; its output is scaled by a learnable ``gamma``
  that starts at 0, so the nets begin as plain residual nets and learn how much
  non-local context to use.

Sizes follow :func:`gancore.nets.resampling_stages`, like the DCGAN nets: sides must
be multiples of 4 (other sizes are padded with :func:`gancore.nets.pad_to_multiple`
and cropped back with :func:`gancore.nets.crop_to`), and the smallest map is 4x4 for
powers of two (64 -> 4 up-sampling blocks, 128 -> 5, 256 -> 6), 6x6 for 96 pixels.

Width: the map of side ``H / 2**k`` has ``min(max_channels, base_channels * 2**k)``
channels in both nets, so channels halve as resolution doubles, up to a cap. With
the defaults (``base_channels=32``, ``max_channels=512``), a 128-dimensional ``z``
and 3 channels (1 channel changes the counts by under 0.1%):

* 64x64: generator 3.59 M parameters (4 up-sampling blocks), discriminator
  9.58 M (5 blocks);
* 128x128: generator 8.57 M (5 blocks), discriminator 14.56 M (6 blocks).

Class conditioning adds ``2 * n_classes`` times the channels of the conditional
norms to the generator (26k parameters for 10 classes at 64x64) and
``n_classes * n_features`` (512 here) to the discriminator. The discriminator is the
larger net because of its block at the smallest size, where the channels are capped
(4.7 M of its parameters, but little of its computation: the map is 4x4).

(Figures of training speed are in ``benchmarks/RESULTS.md``.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .nets import check_classes, check_image_shape, check_labels, resampling_stages

__all__ = [
    "ConditionalBatchNorm2d",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "SelfAttention",
    "resnet_weights_init",
]


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias depend on the class (de Vries et al. 2017).

    ``out = BN(x) * (1 + gain[y]) + bias[y]``, with ``BN`` unscaled and ``gain`` and
    ``bias`` class embeddings. Without classes it is an ordinary
    :class:`~torch.nn.BatchNorm2d` with a learnt affine transform.

    Parameters
    ----------
    num_features : int
        Channels of the input.
    n_classes : int, optional
        Number of classes; None for plain batch norm.

    Examples
    --------
    >>> norm = ConditionalBatchNorm2d(4, n_classes=3)
    >>> norm(torch.randn(2, 4, 5, 5), torch.tensor([0, 2])).shape
    torch.Size([2, 4, 5, 5])
    """

    def __init__(self, num_features: int, n_classes: int | None = None):
        super().__init__()
        check_classes(n_classes)
        self.n_classes = n_classes
        self.norm = nn.BatchNorm2d(num_features, affine=n_classes is None)
        if n_classes is not None:
            # "1 +" keeps the gain near one whatever the embedding's initial scale.
            self.gain = nn.Embedding(n_classes, num_features)
            self.bias = nn.Embedding(n_classes, num_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.norm(x)
        if self.n_classes is None:
            return out
        gain = 1 + self.gain(y)[:, :, None, None]
        return out * gain + self.bias(y)[:, :, None, None]


class SelfAttention(nn.Module):
    """Self-attention over the positions of a feature map (SAGAN, Zhang et al. 2019).

    ``out = x + gamma * W_o (g(x) softmax(theta(x)^T phi(x))^T)``, where ``theta``,
    ``phi`` and ``g`` are 1x1 convs to ``C/8``, ``C/8`` and ``C/2`` channels and
    ``phi`` and ``g`` are max-pooled 2x2 (four times fewer keys, as in BigGAN).
    ``gamma`` starts at 0: the block is the identity until training gives it weight.

    Parameters
    ----------
    channels : int

    Examples
    --------
    >>> attention = SelfAttention(16)
    >>> x = torch.randn(2, 16, 8, 8)
    >>> bool(torch.equal(attention(x), x))  # gamma = 0 at the start
    True
    """

    def __init__(self, channels: int):
        super().__init__()
        key_c, value_c = max(1, channels // 8), max(1, channels // 2)
        self.theta = nn.Conv2d(channels, key_c, 1, bias=False)
        self.phi = nn.Conv2d(channels, key_c, 1, bias=False)
        self.g = nn.Conv2d(channels, value_c, 1, bias=False)
        self.out = nn.Conv2d(value_c, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        query = self.theta(x).flatten(2)  # (n, C/8, HW)
        key = F.max_pool2d(self.phi(x), 2).flatten(2)  # (n, C/8, HW/4)
        value = F.max_pool2d(self.g(x), 2).flatten(2)  # (n, C/2, HW/4)
        # Softmax in float32: under fp16 autocast the logits can overflow.
        attention = torch.softmax(torch.bmm(query.transpose(1, 2), key).float(), -1)
        mixed = torch.bmm(value, attention.to(value.dtype).transpose(1, 2))
        return x + self.gamma * self.out(mixed.view(n, -1, height, width))


def resnet_weights_init(module: nn.Module) -> None:
    """Orthogonal initialisation (Saxe et al. 2014) as in BigGAN, via ``Module.apply``.

    Convolutions, linear layers and embeddings get orthogonal weights (their
    flattened rows orthonormal, so spectral norm starts near 1 and changes little),
    and zero biases; batch norm gets unit scales and zero shifts; the
    :class:`SelfAttention` gain ``gamma`` is set to 0. Layers that already carry a
    parametrisation (spectral norm) are initialised through their original weight.
    Call it as ``net.apply(resnet_weights_init)``.

    Examples
    --------
    >>> conv = nn.Conv2d(3, 8, 3)
    >>> _ = conv.apply(resnet_weights_init)
    >>> rows = conv.weight.detach().flatten(1)
    >>> bool(torch.allclose(rows @ rows.T, torch.eye(8), atol=1e-5))
    True
    """
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
        weight = (
            module.parametrizations.weight.original
            if parametrize.is_parametrized(module, "weight")
            else module.weight
        )
        nn.init.orthogonal_(weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, SelfAttention):
        nn.init.zeros_(module.gamma)


def _add_spectral_norm(net: nn.Module) -> None:
    """Spectral norm (Miyato et al. 2018) on every conv, linear and embedding layer.

    Added after initialisation, so that the power iteration starts from the
    initialised weights.
    """
    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            _spectral_norm(module)


def _widths(stages: int, base_channels: int, max_channels: int) -> list[int]:
    """Channels of the map of side ``H / 2**k``, for ``k = 0 .. stages``."""
    if base_channels < 1 or max_channels < base_channels:
        raise ValueError(
            "need 1 <= base_channels <= max_channels, got "
            f"base_channels={base_channels}, max_channels={max_channels}"
        )
    return [min(max_channels, base_channels * 2**k) for k in range(stages + 1)]


def _attention_index(attention_at: int | None, heights: list[int], who: str):
    """Index of the block after which attention goes (``heights``: blocks' outputs)."""
    if attention_at is None:
        return None
    if attention_at not in heights:
        raise ValueError(
            f"{who}: attention_at={attention_at!r} is not the height of a block's "
            f"output map; choose one of {sorted(set(heights))} or None"
        )
    return heights.index(attention_at)


class _UpBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, n_classes: int | None):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_c, n_classes)
        self.conv1 = nn.Conv2d(in_c, out_c, 3, padding=1, bias=False)  # norm follows
        self.norm2 = ConditionalBatchNorm2d(out_c, n_classes)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1)
        self.shortcut = nn.Conv2d(in_c, out_c, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2.0)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
        # A 1x1 conv commutes with nearest up-sampling: run it on 4x fewer pixels.
        return h + F.interpolate(self.shortcut(x), scale_factor=2.0)


class _DownBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, *, downsample: bool, first: bool):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = nn.Conv2d(in_c, out_c, 3, padding=1)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1)
        learnt = in_c != out_c or downsample
        self.shortcut = nn.Conv2d(in_c, out_c, 1) if learnt else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The first block sees the image: a ReLU would discard its negative half.
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        skip = x
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        # Pooling commutes with a 1x1 conv: pool first, on 4x fewer pixels.
        return h + (self.shortcut(skip) if self.shortcut is not None else skip)


class ResNetGenerator(nn.Module):
    """Residual generator (SNGAN / BigGAN) with class-conditional batch norm.

    See the module docstring for the architecture, widths and parameter counts.

    Parameters
    ----------
    latent_dim : int
        Size of the latent code ``z``.
    image_shape : (C, H, W)
        Any channel count; H and W multiples of 4.
    n_classes : int, optional
        Class-conditional: batch norms take their gain and bias from the class.
    base_channels : int, default=32
        Channels of the full-resolution map; each halving of the sides doubles them.
    max_channels : int, default=512
        Cap on the channels of any map.
    attention_at : int, optional
        Self-attention after the block whose output map is this many rows high (one
        of ``H, H/2, ...`` down to twice the smallest map's height).
    spectral_norm : bool, default=True
        Spectral norm on every layer, as in SAGAN and BigGAN, where it made the
        generator markedly more stable.

    Examples
    --------
    >>> g = ResNetGenerator(16, (1, 32, 32), n_classes=2, base_channels=8)
    >>> g(torch.randn(3, 16), torch.tensor([0, 1, 1])).shape
    torch.Size([3, 1, 32, 32])
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        *,
        n_classes: int | None = None,
        base_channels: int = 32,
        max_channels: int = 512,
        attention_at: int | None = None,
        spectral_norm: bool = True,
    ):
        super().__init__()
        check_classes(n_classes)
        channels, height, width = check_image_shape(image_shape)
        stages = resampling_stages(height, width)
        widths = _widths(stages, base_channels, max_channels)
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.image_shape = (channels, height, width)
        self._start = (widths[stages], height >> stages, width >> stages)
        self.linear = nn.Linear(latent_dim, math.prod(self._start))
        self.blocks = nn.ModuleList(
            _UpBlock(widths[k], widths[k - 1], n_classes) for k in range(stages, 0, -1)
        )
        heights = [height >> (k - 1) for k in range(stages, 0, -1)]
        self._attention_after = _attention_index(
            attention_at, heights, type(self).__name__
        )
        self.attention = (
            SelfAttention(widths[stages - 1 - self._attention_after])
            if self._attention_after is not None
            else None
        )
        # BigGAN's output layer: its batch norm is not conditional.
        self.out = nn.Sequential(
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.Conv2d(widths[0], channels, 3, padding=1),
            nn.Tanh(),
        )
        self.apply(resnet_weights_init)
        if spectral_norm:
            _add_spectral_norm(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        h = self.linear(z).view(-1, *self._start)
        for index, block in enumerate(self.blocks):
            h = block(h, y)
            if index == self._attention_after:
                h = self.attention(h)
        return self.out(h)


class ResNetDiscriminator(nn.Module):
    """Residual projection discriminator (SNGAN / BigGAN), with a feature layer.

    See the module docstring for the architecture, widths and parameter counts.

    Parameters
    ----------
    image_shape : (C, H, W)
        Any channel count; H and W multiples of 4.
    n_classes : int, optional
        Class-conditional through the projection of a class embedding.
    base_channels : int, default=32
        Channels of the full-resolution map (which the discriminator never builds:
        its first block outputs ``2 * base_channels`` at half resolution).
    max_channels : int, default=512
    attention_at : int, optional
        Self-attention after the block whose output map is this many rows high (one
        of ``H/2, H/4, ...`` down to the smallest map's height).
    spectral_norm : bool, default=True
        Spectral norm on every conv, linear and embedding layer.

    Examples
    --------
    >>> d = ResNetDiscriminator((3, 32, 32), n_classes=2, base_channels=8)
    >>> x = torch.randn(3, 3, 32, 32)
    >>> d(x, torch.tensor([0, 1, 1])).shape, d.features(x).shape
    (torch.Size([3]), torch.Size([3, 64]))
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        n_classes: int | None = None,
        base_channels: int = 32,
        max_channels: int = 512,
        attention_at: int | None = None,
        spectral_norm: bool = True,
    ):
        super().__init__()
        check_classes(n_classes)
        channels, height, width = check_image_shape(image_shape)
        stages = resampling_stages(height, width)
        widths = _widths(stages, base_channels, max_channels)
        self.n_classes, self.image_shape = n_classes, (channels, height, width)
        blocks = [_DownBlock(channels, widths[1], downsample=True, first=True)]
        blocks += [
            _DownBlock(widths[k], widths[k + 1], downsample=True, first=False)
            for k in range(1, stages)
        ]
        # One more block at the smallest size (BigGAN), so the last features are
        # computed after, not during, the final down-sampling.
        blocks.append(
            _DownBlock(widths[stages], widths[stages], downsample=False, first=False)
        )
        self.blocks = nn.ModuleList(blocks)
        heights = [height >> k for k in range(1, stages + 1)]
        self._attention_after = _attention_index(
            attention_at, heights, type(self).__name__
        )
        self.attention = (
            SelfAttention(widths[self._attention_after + 1])
            if self._attention_after is not None
            else None
        )
        self.n_features = widths[stages]
        self.head = nn.Linear(self.n_features, 1)
        self.projection = (
            nn.Embedding(n_classes, self.n_features) if n_classes is not None else None
        )
        self.apply(resnet_weights_init)
        if spectral_norm:
            _add_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``phi``: the last map after ReLU, summed over positions, ``(n, n_features)``.

        A sum, not a mean, as in SNGAN: with every layer's spectral norm at most 1,
        averaging the 4x4 positions would shrink the logits' range 16-fold.
        """
        h = x
        for index, block in enumerate(self.blocks):
            h = block(h)
            if index == self._attention_after:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        phi = self.features(x)
        logit = self.head(phi).squeeze(1)
        if self.projection is not None:
            logit = logit + (self.projection(y) * phi).sum(dim=1)
        return logit
