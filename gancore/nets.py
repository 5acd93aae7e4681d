"""Generators and discriminators: MLPs for vectors, DCGAN-style nets for images.

All networks take an optional class label ``y`` (``n_classes`` set at construction):
generators embed it and concatenate it to the latent code; discriminators use the
projection trick of Miyato & Koyama (2018), ``D(x, y) = psi(phi(x)) + <embed(y),
phi(x)>``, which conditions far better than concatenating labels to the input.

Image nets accept any channel count (medical images are mostly one channel) and any
height and width that are multiples of 4. Other sizes are padded up with
:func:`pad_to_multiple` before training and cropped back with :func:`crop_to` after
generation; the estimators in ``ganaug`` do that for the user.

Residual nets for larger real images (SNGAN / BigGAN style) are in
:mod:`gancore.resnets`, which shares this module's label and size checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "crop_to",
    "dcgan_weights_init",
    "pad_to_multiple",
]


def dcgan_weights_init(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016), applied through ``Module.apply``.

    Convolutions, transposed convolutions, linear layers and embeddings get
    ``N(0, 0.02)`` weights and zero biases; batch-norm layers get ``N(1, 0.02)``
    scales and zero shifts. It must be called as ``net.apply(dcgan_weights_init)``:
    called on a container directly it would match nothing.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    >>> _ = net.apply(dcgan_weights_init)
    >>> float(net[0].weight.detach().std()) < 0.05
    True
    """
    if isinstance(
        module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)
    ):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _maybe_sn(layer: nn.Module, use: bool) -> nn.Module:
    return _spectral_norm(layer) if use else layer


def check_classes(n_classes: int | None) -> None:
    """Refuse an ``n_classes`` that is neither None nor an int of at least 2.

    Shared by every network module (here and :mod:`gancore.resnets`), so that all
    nets word the error alike.
    """
    if n_classes is not None and (not isinstance(n_classes, int) or n_classes < 2):
        raise ValueError(f"n_classes must be None or an int >= 2, got {n_classes!r}")


def check_labels(y: torch.Tensor | None, n_classes: int | None, who: str) -> None:
    """Refuse labels for an unconditional net ``who``, or none for a conditional one.

    Examples
    --------
    >>> check_labels(None, None, "MLPGenerator")
    >>> check_labels(None, 3, "MLPGenerator")
    Traceback (most recent call last):
    ...
    ValueError: MLPGenerator is conditional (n_classes=3); pass labels y
    """
    if n_classes is None and y is not None:
        raise ValueError(f"{who} is unconditional (n_classes=None) but got labels")
    if n_classes is not None and y is None:
        raise ValueError(f"{who} is conditional (n_classes={n_classes}); pass labels y")


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {name!r}")


class MLPGenerator(nn.Module):
    """Multi-layer perceptron generator ``z (, y) -> x`` for vectors.

    Parameters
    ----------
    latent_dim : int
        Size of the latent code ``z``.
    out_features : int
        Size of the generated vectors.
    hidden_dims : sequence of int, default=(256, 256)
    n_classes : int, optional
        Number of classes for a class-conditional generator.
    activation : {"relu", "leaky_relu"}, default="relu"
    batch_norm : bool, default=False
        Batch normalisation after each hidden linear layer.
    out_activation : {"tanh", None}, default=None
        ``"tanh"`` bounds outputs to [-1, 1] (data scaled to that range); ``None``
        leaves them unbounded (standardised data).

    Examples
    --------
    >>> g = MLPGenerator(latent_dim=4, out_features=2, hidden_dims=(8,), n_classes=3)
    >>> g(torch.zeros(5, 4), torch.tensor([0, 1, 2, 0, 1])).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        latent_dim: int,
        out_features: int,
        hidden_dims: Sequence[int] = (256, 256),
        *,
        n_classes: int | None = None,
        activation: str = "relu",
        batch_norm: bool = False,
        out_activation: str | None = None,
    ):
        super().__init__()
        check_classes(n_classes)
        if out_activation not in ("tanh", None):
            raise ValueError(
                f"out_activation must be 'tanh' or None, got {out_activation!r}"
            )
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.label_embedding = (
            nn.Embedding(n_classes, latent_dim) if n_classes is not None else None
        )
        in_dim = latent_dim * (2 if n_classes is not None else 1)
        layers: list[nn.Module] = []
        for width in hidden_dims:
            layers.append(nn.Linear(in_dim, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_activation(activation))
            in_dim = width
        layers.append(nn.Linear(in_dim, out_features))
        if out_activation == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(y)], dim=1)
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """Multi-layer perceptron discriminator ``x (, y) -> logit`` with a feature layer.

    Parameters
    ----------
    in_features : int
    hidden_dims : sequence of int, default=(256, 256)
        The last hidden layer is the feature layer returned by :meth:`features`.
    n_classes : int, optional
        Class-conditional through a projection head.
    spectral_norm : bool, default=False
        Spectral normalisation of every linear layer (Miyato et al. 2018).
    dropout : float, default=0.0
        Dropout after each hidden layer.

    Examples
    --------
    >>> d = MLPDiscriminator(in_features=2, hidden_dims=(8, 8), spectral_norm=True)
    >>> d(torch.zeros(5, 2)).shape, d.features(torch.zeros(5, 2)).shape
    (torch.Size([5]), torch.Size([5, 8]))
    """

    def __init__(
        self,
        in_features: int,
        hidden_dims: Sequence[int] = (256, 256),
        *,
        n_classes: int | None = None,
        spectral_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_classes(n_classes)
        if not hidden_dims:
            raise ValueError("hidden_dims must name at least one layer")
        self.n_classes = n_classes
        layers: list[nn.Module] = []
        in_dim = in_features
        for width in hidden_dims:
            layers += [
                _maybe_sn(nn.Linear(in_dim, width), spectral_norm),
                nn.LeakyReLU(0.2),
            ]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        self.body = nn.Sequential(*layers)
        self.head = _maybe_sn(nn.Linear(in_dim, 1), spectral_norm)
        self.projection = (
            _maybe_sn(nn.Embedding(n_classes, in_dim), spectral_norm)
            if n_classes is not None
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last hidden layer, ``(n, hidden_dims[-1])``."""
        return self.body(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        phi = self.body(x)
        logit = self.head(phi).squeeze(1)
        if self.projection is not None:
            logit = logit + (self.projection(y) * phi).sum(dim=1)
        return logit


def resampling_stages(height: int, width: int) -> int:
    """Number of 2x up/down-sampling stages for an image of ``height x width``.

    As many as the sides allow (each stage halves both sides exactly) while the
    smallest map keeps sides of at least 4, with at least 2 stages: 64x64 -> 4 stages
    from 4x4, 28x28 -> 2 stages from 7x7, 48x80 -> 3 stages from 6x10.

    Raises
    ------
    ValueError
        If a side is not a positive multiple of 4 (pad with :func:`pad_to_multiple`).

    Examples
    --------
    >>> resampling_stages(64, 64), resampling_stages(28, 28), resampling_stages(48, 80)
    (4, 2, 3)
    """
    if height % 4 or width % 4 or height < 4 or width < 4:
        raise ValueError(
            f"image sides must be positive multiples of 4, got {height}x{width}; "
            "pad with gancore.nets.pad_to_multiple first"
        )
    stages = 2
    while (
        height % 2 ** (stages + 1) == 0
        and width % 2 ** (stages + 1) == 0
        and min(height, width) // 2 ** (stages + 1) >= 4
    ):
        stages += 1
    return stages


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` as ints, refusing other lengths and sides no net can take."""
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    channels, height, width = (int(s) for s in image_shape)
    resampling_stages(height, width)
    return channels, height, width


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016) for images of any channel count and size.

    A linear layer maps ``z`` to a ``(base_channels * 2**(k-1), H / 2**k, W / 2**k)``
    map, then ``k`` transposed convolutions (kernel 4, stride 2) double the sides and
    halve the channels, with batch norm and ReLU between them and tanh at the end.

    Parameters
    ----------
    latent_dim : int
    image_shape : (C, H, W)
        H and W multiples of 4.
    base_channels : int, default=64
        Channels of the last hidden map; earlier maps have 2x, 4x, ... as many.
    n_classes : int, optional
        Class-conditional: a label embedding is concatenated to ``z``.

    Examples
    --------
    >>> g = DCGANGenerator(latent_dim=16, image_shape=(1, 28, 28), base_channels=8)
    >>> g(torch.zeros(2, 16)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        *,
        base_channels: int = 64,
        n_classes: int | None = None,
    ):
        super().__init__()
        check_classes(n_classes)
        channels, height, width = check_image_shape(image_shape)
        stages = resampling_stages(height, width)
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.image_shape = (channels, height, width)
        self._start = (
            base_channels * 2 ** (stages - 1),
            height >> stages,
            width >> stages,
        )
        self.label_embedding = (
            nn.Embedding(n_classes, latent_dim) if n_classes is not None else None
        )
        in_dim = latent_dim * (2 if n_classes is not None else 1)
        self.project = nn.Sequential(
            nn.Linear(in_dim, math.prod(self._start), bias=False),
            nn.BatchNorm1d(math.prod(self._start)),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        width_c = self._start[0]
        for stage in range(stages):
            last = stage == stages - 1
            out_c = channels if last else width_c // 2
            layers.append(nn.ConvTranspose2d(width_c, out_c, 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out_c), nn.ReLU(True)]
            width_c = out_c
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_weights_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(y)], dim=1)
        return self.net(self.project(z).view(-1, *self._start))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator mirroring :class:`DCGANGenerator`, with a feature layer.

    Strided convolutions (kernel 4, stride 2) halve the sides ``k`` times with
    LeakyReLU(0.2); the flattened last map is the feature vector ``phi`` and a linear
    head (plus the projection term when conditional) gives the logit.

    Parameters
    ----------
    image_shape : (C, H, W)
        H and W multiples of 4.
    base_channels : int, default=64
    n_classes : int, optional
        Class-conditional through a projection head.
    spectral_norm : bool, default=False
        Spectral normalisation of every convolution and linear layer.
    normalization : {"batch", "instance", None}, default="batch"
        Normalisation after each convolution but the first. WGAN-GP's per-sample
        gradient penalty is invalid with batch norm: use "instance" or None there.

    Examples
    --------
    >>> d = DCGANDiscriminator((1, 16, 16), base_channels=8, n_classes=2,
    ...                        spectral_norm=True, normalization=None)
    >>> d(torch.zeros(3, 1, 16, 16), torch.tensor([0, 1, 1])).shape
    torch.Size([3])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        base_channels: int = 64,
        n_classes: int | None = None,
        spectral_norm: bool = False,
        normalization: str | None = "batch",
    ):
        super().__init__()
        check_classes(n_classes)
        if normalization not in ("batch", "instance", None):
            raise ValueError(
                "normalization must be 'batch', 'instance' or None, "
                f"got {normalization!r}"
            )
        channels, height, width = check_image_shape(image_shape)
        stages = resampling_stages(height, width)
        self.n_classes, self.image_shape = n_classes, (channels, height, width)
        self.normalization = normalization
        layers: list[nn.Module] = []
        in_c, out_c = channels, base_channels
        for stage in range(stages):
            conv = nn.Conv2d(
                in_c, out_c, 4, 2, 1, bias=stage == 0 or normalization is None
            )
            dcgan_weights_init(conv)
            layers.append(_maybe_sn(conv, spectral_norm))
            if stage > 0 and normalization == "batch":
                layers.append(nn.BatchNorm2d(out_c))
            elif stage > 0 and normalization == "instance":
                layers.append(nn.InstanceNorm2d(out_c, affine=True))
            layers.append(nn.LeakyReLU(0.2, True))
            in_c, out_c = out_c, out_c * 2
        self.body = nn.Sequential(*layers)
        n_features = in_c * (height >> stages) * (width >> stages)
        self.n_features = n_features
        head = nn.Linear(n_features, 1)
        dcgan_weights_init(head)
        self.head = _maybe_sn(head, spectral_norm)
        if n_classes is not None:
            embedding = nn.Embedding(n_classes, n_features)
            dcgan_weights_init(embedding)
            self.projection = _maybe_sn(embedding, spectral_norm)
        else:
            self.projection = None
        for module in self.modules():
            if (
                isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d))
                and module.affine
            ):
                dcgan_weights_init(module) if isinstance(
                    module, nn.BatchNorm2d
                ) else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened last convolutional map, ``(n, n_features)``."""
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.n_classes, type(self).__name__)
        phi = self.features(x)
        logit = self.head(phi).squeeze(1)
        if self.projection is not None:
            logit = logit + (self.projection(y) * phi).sum(dim=1)
        return logit


def pad_to_multiple(images: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """Pad ``(n, C, H, W)`` images at the bottom and right to sides of a ``multiple``.

    Padding replicates the edge pixels (zero padding would add a dark frame the GAN
    would learn). Undo with :func:`crop_to`.

    Examples
    --------
    >>> pad_to_multiple(torch.zeros(1, 1, 30, 29)).shape
    torch.Size([1, 1, 32, 32])
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return images
    return nn.functional.pad(images, (0, pad_w, 0, pad_h), mode="replicate")


def crop_to(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop ``(..., H', W')`` images to their top-left ``(H, W)``, undoing padding."""
    height, width = size
    return images[..., :height, :width]
