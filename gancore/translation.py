"""Image-to-image translation between classes: StarGAN's networks and losses.

One generator ``G(x, c)`` turns an image ``x`` into an image of class ``c`` (Choi
et al., StarGAN, CVPR 2018); one discriminator gives a realism score per patch and
a class prediction (an auxiliary classifier).  With ``c'`` a class other than the
image's own ``c``::

    L_D = adv_D(D_src(x), D_src(G(x, c'))) + w_cls * CE(D_cls(x), c)
    L_G = adv_G(D_src(G(x, c'))) + w_cls * CE(D_cls(G(x, c')), c')
          + w_cyc * |G(G(x, c'), c) - x|_1          (cycle: CycleGAN, Zhu et al. 2017)
          + w_id  * |G(x, c) - x|_1                 (identity)

The generator predicts a change, not an image: its output is
``tanh(atanh(x) + delta)`` with the last layer initialised to zero, so it starts
as the identity (the cycle and identity terms are met from the first step) and
keeps the anatomy, framing and noise of its source unless the class needs a
change.  Networks for ``(C, H, W)`` images (sides multiples of 4) and, for any
flattened data, MLPs with the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from .device import Rngs
from .losses import GANLoss
from .nets import check_classes, check_image_shape, check_labels

__all__ = [
    "MLPTranslationDiscriminator",
    "MLPTranslationGenerator",
    "TranslationDiscriminator",
    "TranslationGenerator",
    "other_classes",
    "translation_steps",
]

# atanh(+-1) is infinite: inputs are pulled this far inside [-1, 1] first.
_EDGE = 0.999


def _apply_change(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``x`` in [-1, 1] moved by ``delta`` in tanh's domain: the identity for a
    zero ``delta``, and always inside (-1, 1)."""
    return torch.tanh(torch.atanh(x.clamp(-1.0, 1.0) * _EDGE) + delta)


def _one_hot_maps(y: torch.Tensor, n_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(n, n_classes, H, W)`` planes of the target classes, one-hot."""
    planes = F.one_hot(y, n_classes).to(like.dtype)
    return planes[:, :, None, None].expand(-1, -1, *like.shape[2:])


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_block(
    in_channels: int, out_channels: int, kernel: int, stride: int, padding: int
) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False),
        nn.InstanceNorm2d(out_channels, affine=True),
        nn.ReLU(inplace=True),
    ]


class TranslationGenerator(nn.Module):
    """StarGAN generator ``(x, target class) -> x`` for ``(C, H, W)`` images.

    Encoder (two stride-2 convolutions), ``n_blocks`` residual blocks at a
    quarter of the resolution, decoder (two nearest upsamplings with
    convolutions); instance norm; the target class enters as one-hot planes
    beside the image.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)`` with H and W multiples of 4.
    n_classes : int
    base_channels : int, default=32
        Channels at full resolution (twice and four times that below).
    n_blocks : int, default=3

    Examples
    --------
    >>> g = TranslationGenerator((1, 16, 16), n_classes=3, base_channels=4)
    >>> x = torch.rand(2, 1, 16, 16) * 2 - 1
    >>> out = g(x, torch.tensor([2, 0]))
    >>> out.shape, bool(torch.allclose(out, x * 0.999, atol=1e-6))  # starts as identity
    (torch.Size([2, 1, 16, 16]), True)
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        n_classes: int,
        *,
        base_channels: int = 32,
        n_blocks: int = 3,
    ):
        super().__init__()
        check_classes(n_classes)
        channels, height, width = check_image_shape(image_shape)
        if height % 4 or width % 4:
            raise ValueError(
                f"image sides must be multiples of 4 (pad first), got {height}x{width}"
            )
        self.image_shape, self.n_classes = (channels, height, width), n_classes
        b = base_channels
        self.net = nn.Sequential(
            *_conv_block(channels + n_classes, b, 3, 1, 1),
            *_conv_block(b, 2 * b, 4, 2, 1),
            *_conv_block(2 * b, 4 * b, 4, 2, 1),
            *[_Residual(4 * b) for _ in range(n_blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_block(4 * b, 2 * b, 3, 1, 1),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_block(2 * b, b, 3, 1, 1),
        )
        self.change = nn.Conv2d(b, channels, 3, padding=1)
        nn.init.zeros_(self.change.weight)
        nn.init.zeros_(self.change.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        h = self.net(torch.cat([x, _one_hot_maps(y, self.n_classes, x)], dim=1))
        return _apply_change(x, self.change(h))


def _n_downsamplings(height: int, width: int) -> int:
    """Stride-2 stages of the discriminator: down to about 8 pixels, 1 to 4."""
    stages, side = 0, min(height, width)
    while side > 8 and stages < 4:
        side //= 2
        stages += 1
    return max(stages, 1)


class TranslationDiscriminator(nn.Module):
    """PatchGAN discriminator with a class head: ``x -> (patch logits, class
    logits)``.  Stride-2 convolutions with leaky ReLU down to about 8 pixels,
    no normalisation (as StarGAN's); the class head reads the whole last map.

    Examples
    --------
    >>> d = TranslationDiscriminator((3, 32, 32), n_classes=4, base_channels=4)
    >>> patches, classes = d(torch.zeros(2, 3, 32, 32))
    >>> patches.shape, classes.shape
    (torch.Size([2, 1, 8, 8]), torch.Size([2, 4]))
    """

    def __init__(
        self, image_shape: Sequence[int], n_classes: int, *, base_channels: int = 32
    ):
        super().__init__()
        check_classes(n_classes)
        channels, height, width = check_image_shape(image_shape)
        layers: list[nn.Module] = []
        width_in, width_out = channels, base_channels
        stages = _n_downsamplings(height, width)
        for _ in range(stages):
            layers += [
                nn.Conv2d(width_in, width_out, 4, 2, 1),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width_in, width_out = width_out, min(width_out * 2, 8 * base_channels)
        self.features = nn.Sequential(*layers)
        self.source = nn.Conv2d(width_in, 1, 3, padding=1)
        # Over the whole last map, as StarGAN's: where a finding lies can be what
        # makes the class (an average over positions would not see it).
        last = (height >> stages) * (width >> stages)
        self.classes = nn.Linear(width_in * last, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.source(h), self.classes(h.flatten(1))


class MLPTranslationGenerator(nn.Module):
    """:class:`TranslationGenerator` for flattened data in [-1, 1]: an MLP over
    the values and the target's one-hot code, predicting a change.

    Examples
    --------
    >>> g = MLPTranslationGenerator(5, n_classes=2, hidden_dims=(8,))
    >>> g(torch.zeros(3, 5), torch.tensor([1, 0, 1])).shape
    torch.Size([3, 5])
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_dims: Sequence[int] = (256, 256),
    ):
        super().__init__()
        check_classes(n_classes)
        self.n_classes = n_classes
        layers: list[nn.Module] = []
        width_in = n_features + n_classes
        for width in hidden_dims:
            layers += [nn.Linear(width_in, width), nn.ReLU(inplace=True)]
            width_in = width
        self.net = nn.Sequential(*layers)
        self.change = nn.Linear(width_in, n_features)
        nn.init.zeros_(self.change.weight)
        nn.init.zeros_(self.change.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        code = F.one_hot(y, self.n_classes).to(x.dtype)
        return _apply_change(x, self.change(self.net(torch.cat([x, code], dim=1))))


class MLPTranslationDiscriminator(nn.Module):
    """:class:`TranslationDiscriminator` for flattened data: ``x -> (realism
    logit, class logits)``; spectral norm on the hidden and realism layers.

    Examples
    --------
    >>> d = MLPTranslationDiscriminator(5, n_classes=3, hidden_dims=(8,))
    >>> [t.shape for t in d(torch.zeros(2, 5))]
    [torch.Size([2, 1]), torch.Size([2, 3])]
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_dims: Sequence[int] = (256, 256),
    ):
        super().__init__()
        check_classes(n_classes)
        layers: list[nn.Module] = []
        width_in = n_features
        for width in hidden_dims:
            layers += [
                spectral_norm(nn.Linear(width_in, width)),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.source = spectral_norm(nn.Linear(width_in, 1))
        self.classes = nn.Linear(width_in, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.source(h), self.classes(h)


def other_classes(
    y: torch.Tensor, n_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A class other than each row's own, drawn uniformly."""
    shift = torch.randint(
        1, n_classes, y.shape, device=y.device, generator=generator, dtype=y.dtype
    )
    return (y + shift) % n_classes


def translation_steps(
    generator: nn.Module,
    discriminator: nn.Module,
    loss: GANLoss,
    *,
    n_classes: int,
    rngs: Rngs,
    augment=None,
    class_weight: float = 1.0,
    cycle_weight: float = 10.0,
    identity_weight: float = 1.0,
):
    """StarGAN's loss functions (module docstring) for :func:`gancore.train_gan`.

    Batches are ``(x, y)``.  Each step translates every image to a class other
    than its own, drawn uniformly (from ``rngs.torch_device``); ``augment`` (a
    DiffAugment or None) transforms real and translated images before the
    discriminator in both steps.  Logged per epoch: ``d_class`` (the
    discriminator's classification loss on real images), ``g_class``,
    ``cycle`` and ``identity``.

    Returns
    -------
    d_loss_fn, g_loss_fn : callable
    """
    if loss.needs_gradient_penalty:
        raise ValueError("translation_steps takes the 'hinge' or 'bce' loss")
    rng = rngs.torch_device

    def seen(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return discriminator(augment(x, rng) if augment is not None else x)

    def d_loss_fn(batch):
        x, y = batch
        with torch.no_grad():
            fake = generator(x, other_classes(y, n_classes, rng))
        real_source, real_classes = seen(x)
        fake_source, _ = seen(fake)
        d_class = F.cross_entropy(real_classes.float(), y)
        adversarial = loss.discriminator_loss(real_source, fake_source)
        return adversarial + class_weight * d_class, {"d_class": d_class.detach()}

    def g_loss_fn(batch):
        x, y = batch
        target = other_classes(y, n_classes, rng)
        fake = generator(x, target)
        fake_source, fake_classes = seen(fake)
        g_class = F.cross_entropy(fake_classes.float(), target)
        cycle = (generator(fake, y) - x).abs().mean()
        identity = (generator(x, y) - x).abs().mean()
        total = (
            loss.generator_loss(fake_source)
            + class_weight * g_class
            + cycle_weight * cycle
            + identity_weight * identity
        )
        logs = {
            "g_class": g_class.detach(),
            "cycle": cycle.detach(),
            "identity": identity.detach(),
        }
        return total, logs

    return d_loss_fn, g_loss_fn
