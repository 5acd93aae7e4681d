"""Differentiable augmentation (Zhao et al., NeurIPS 2020) for small image datasets.

With a few hundred images a discriminator memorises the training set within a few
epochs and the generator stops learning. DiffAugment applies the same family of
random, differentiable transformations to *every* batch the discriminator sees, real
and generated, in both the discriminator and the generator steps, so the
discriminator cannot tell the two apart by the augmentation and gradients flow back
through the transformations to the generator.

Policies (comma-separated): ``"color"`` (brightness, saturation, contrast; saturation
is skipped for one-channel images), ``"translation"`` (shift by up to 1/8 of the
side, zero fill), ``"cutout"`` (one zeroed square of half the side).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["DiffAugment"]

_POLICIES = ("color", "translation", "cutout")


def _rand(n: int, like: torch.Tensor, generator) -> torch.Tensor:
    return torch.rand(
        n, 1, 1, 1, dtype=like.dtype, device=like.device, generator=generator
    )


def _color(x: torch.Tensor, generator) -> torch.Tensor:
    n = x.shape[0]
    x = x + (_rand(n, x, generator) - 0.5)  # brightness
    if x.shape[1] > 1:  # saturation has no meaning for one channel
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(n, x, generator) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, x, generator) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, height, width = x.shape
    shift_h, shift_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(
        -shift_h, shift_h + 1, (n, 1, 1), device=x.device, generator=generator
    )
    dx = torch.randint(
        -shift_w, shift_w + 1, (n, 1, 1), device=x.device, generator=generator
    )
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(height, device=x.device),
        torch.arange(width, device=x.device),
        indexing="ij",
    )
    grid_y = torch.clamp(grid_y + dy + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + dx + 1, 0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    off_y = torch.randint(
        0, height + (1 - cut_h % 2), (n, 1, 1), device=x.device, generator=generator
    )
    off_x = torch.randint(
        0, width + (1 - cut_w % 2), (n, 1, 1), device=x.device, generator=generator
    )
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(cut_h, device=x.device),
        torch.arange(cut_w, device=x.device),
        indexing="ij",
    )
    grid_y = torch.clamp(grid_y + off_y - cut_h // 2, 0, height - 1)
    grid_x = torch.clamp(grid_x + off_x - cut_w // 2, 0, width - 1)
    mask = torch.ones(n, height, width, dtype=x.dtype, device=x.device)
    mask[grid_b, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


_FUNCTIONS = {"color": _color, "translation": _translation, "cutout": _cutout}


class DiffAugment:
    """Apply a DiffAugment policy to ``(n, C, H, W)`` batches.

    Parameters
    ----------
    policy : str, default="color,translation,cutout"
        Comma-separated transformations, applied in the given order. An empty string
        applies nothing.

    Examples
    --------
    >>> augment = DiffAugment("translation,cutout")
    >>> x = torch.ones(2, 1, 8, 8, requires_grad=True)
    >>> out = augment(x, generator=torch.Generator().manual_seed(0))
    >>> out.shape, out.requires_grad
    (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, policy: str = "color,translation,cutout"):
        names = [p.strip() for p in policy.split(",") if p.strip()]
        unknown = sorted(set(names) - set(_POLICIES))
        if unknown:
            raise ValueError(
                f"unknown DiffAugment policy {unknown}; choose from {_POLICIES}"
            )
        self.policy = ",".join(names)
        self._functions = [_FUNCTIONS[name] for name in names]

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DiffAugment expects (n, C, H, W) images, got {x.shape}")
        for function in self._functions:
            x = function(x, generator)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})"
