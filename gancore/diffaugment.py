"""Differentiable augmentation for small image datasets: DiffAugment and ADA.

With a few hundred images a discriminator memorises the training set within a few
epochs and the generator stops learning. Both classes here apply random,
differentiable transformations to *every* batch the discriminator sees, real and
generated, in both the discriminator and the generator steps, so the discriminator
cannot tell the two apart by the augmentation and gradients flow back through the
transformations to the generator. Both are called as ``augment(x, generator)``.

:class:`DiffAugment` (Zhao et al., NeurIPS 2020) applies its whole policy to every
image. Policies (comma-separated): ``"color"`` (brightness, saturation, contrast;
saturation is skipped for one-channel images), ``"translation"`` (shift by up to 1/8
of the side, zero fill), ``"cutout"`` (one zeroed square of half the side).

:class:`AdaptiveAugment` (ADA; Karras et al., NeurIPS 2020) applies each of its
operations to each image with a probability ``p``, and tunes ``p`` during training
from a measure of the discriminator's overfitting: little augmentation while the
discriminator generalises, more as it starts to memorise the real images.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .device import distributed_context

__all__ = ["AdaptiveAugment", "DiffAugment"]

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


# ADA's operations. Each takes the batch, a boolean (n,) mask of the images it is
# applied to, and the generator; parameters are drawn for every image (masked ones
# are then ignored), so the draws do not depend on which images were picked.


def _uniform(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.rand(x.shape[0], device=x.device, generator=generator)


def _normal(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape[0], device=x.device, generator=generator)


def _per_image(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(x.dtype).view(-1, 1, 1, 1)


def _xflip(x: torch.Tensor, apply: torch.Tensor, generator) -> torch.Tensor:
    # A picked image is mirrored or kept with equal odds, as in ADA: the mirror
    # happens to at most p/2 < 1/2 of the images, so the generator can still tell
    # which orientation is the real one (the augmentation does not leak).
    flip = apply & (_uniform(x, generator) < 0.5)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def _rotate90(x: torch.Tensor, apply: torch.Tensor, generator) -> torch.Tensor:
    height, width = x.shape[-2:]
    turns = torch.randint(4, (x.shape[0],), device=x.device, generator=generator)
    if height != width:  # a quarter turn would change the shape: 0 or 180 degrees
        turns = turns // 2 * 2
    turns = torch.where(apply, turns, torch.zeros_like(turns))
    out = x
    for k in (1, 2, 3) if height == width else (2,):
        rotated = torch.rot90(x, k, dims=(2, 3))
        out = torch.where((turns == k).view(-1, 1, 1, 1), rotated, out)
    return out


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside ``[0, size)`` mirrored back in (shifts below one side)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _int_translation(
    x: torch.Tensor, apply: torch.Tensor, generator, ratio: float = 0.125
) -> torch.Tensor:
    n, channels, height, width = x.shape
    shifts = []
    for side in (height, width):
        shift = torch.round((_uniform(x, generator) * 2 - 1) * ratio * side).long()
        shifts.append(torch.where(apply, shift, torch.zeros_like(shift)))
    # Reflection padding, as in ADA: a zero or edge fill would mark augmented images.
    rows = _reflect(torch.arange(height, device=x.device) - shifts[0][:, None], height)
    cols = _reflect(torch.arange(width, device=x.device) - shifts[1][:, None], width)
    x = x.gather(2, rows[:, None, :, None].expand(n, channels, height, width))
    return x.gather(3, cols[:, None, None, :].expand(n, channels, height, width))


def _brightness(x: torch.Tensor, apply: torch.Tensor, generator) -> torch.Tensor:
    offset = torch.where(apply, _normal(x, generator) * 0.2, 0.0)
    return x + _per_image(offset, x)


def _contrast(x: torch.Tensor, apply: torch.Tensor, generator) -> torch.Tensor:
    # About each image's mean, not about 0 as in ADA: a scan on a black background
    # has a mean far from 0, and scaling about 0 would shift its background.
    scale = torch.where(apply, torch.exp2(_normal(x, generator) * 0.5), 1.0)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_image(scale, x) + mean


def _saturation(x: torch.Tensor, apply: torch.Tensor, generator) -> torch.Tensor:
    if x.shape[1] != 3:  # only RGB has a grey axis; other channels are not colours
        return x
    scale = torch.where(apply, torch.exp2(_normal(x, generator)), 1.0)
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * _per_image(scale, x) + grey


def _ada_cutout(
    x: torch.Tensor, apply: torch.Tensor, generator, size: float = 0.5
) -> torch.Tensor:
    height, width = x.shape[-2:]
    keep = torch.zeros(x.shape[0], 1, height, width, dtype=torch.bool, device=x.device)
    for dim, side in ((2, height), (3, width)):
        centre = _uniform(x, generator).view(-1, 1, 1, 1)
        shape = [1, 1, 1, 1]
        shape[dim] = side
        position = ((torch.arange(side, device=x.device) + 0.5) / side).view(shape)
        keep = keep | ((position - centre).abs() >= size / 2)
    keep = keep | ~apply.view(-1, 1, 1, 1)
    return x * keep.to(x.dtype)


_ADA_OPS = {
    "xflip": _xflip,
    "rotate90": _rotate90,
    "translation": _int_translation,
    "brightness": _brightness,
    "contrast": _contrast,
    "saturation": _saturation,
    "cutout": _ada_cutout,
}


class AdaptiveAugment:
    """Adaptive discriminator augmentation (ADA; Karras et al., NeurIPS 2020).

    Each operation is applied to each image independently with probability ``p``.
    The probability adapts to the overfitting heuristic of the paper (eq. 3):
    after every ``interval`` discriminator steps (:meth:`update`, which
    :func:`gancore.train.adversarial_steps` calls with the logits of the augmented
    real batch),

    ``r_t = E[sign(D(x_real))]``, ``p <- clip(p + sign(r_t - target) * N / ramp_images,
    0, max_p)``,

    where ``N`` is the number of real images since the last adjustment. ``r_t`` is 0
    when the discriminator cannot separate real from fake and 1 when it is sure of
    every real image, which happens when it has memorised them.

    Operations (the ``ops`` string, comma-separated, applied in its order):

    * ``"xflip"``: left-right mirror (with probability 1/2 when picked);
    * ``"rotate90"``: a quarter, half or three-quarter turn, or none (0 or 180
      degrees for non-square images); off by default, see below;
    * ``"translation"``: integer shift of up to 1/8 of each side, reflection fill;
    * ``"brightness"``: add ``N(0, 0.2)``;
    * ``"contrast"``: scale about the image mean by ``2**N(0, 0.5)``;
    * ``"saturation"``: scale away from the grey axis by ``2**N(0, 1)``, for 3
      channels only (with 1 channel, or several that are not colours such as MR
      sequences, there is no grey axis);
    * ``"cutout"``: zero a rectangle of half the sides at a random centre.

    Geometry for medical images: augmented images should still look like scans,
    or the discriminator spends its capacity on orientations that never occur. A
    left-right mirror keeps the head up and looks like a scan of the other side
    (left and right eyes, breasts and knees are mirror images; a mirrored chest
    looks like situs inversus), so ``"xflip"`` is on by default. Quarter turns and
    vertical flips put the head sideways or at the bottom, so ``"rotate90"`` is off
    by default (turn it on for images without an up: histology, dermoscopy, cell
    microscopy) and there is no vertical flip (ADA has none either: it is a half
    turn and a mirror). Nor does the mirror teach the generator to mirror: it is
    applied to at most ``max_p / 2`` = 40% of the images, so the true orientation
    stays the common one, which is what the generator learns (ADA's non-leaking
    condition). Every operation is integer-exact or an intensity change: nothing
    is resampled, nothing blurs fine structures.

    Parameters
    ----------
    ops : str, default="xflip,translation,brightness,contrast,saturation,cutout"
    p : float, default=0.0
        Starting probability, in [0, 1].
    target : float or None, default=0.6
        ``r_t`` to steer towards (the paper's value); None keeps ``p`` fixed.
    interval : int, default=4
        Discriminator steps between adjustments (the paper's value).
    ramp_images : int, default=500_000
        Real images it takes ``p`` to rise from 0 to 1 at the fastest: 500k in the
        paper, a few percent of its runs of 10-25M images. Scale it to the run:
        a run that sees 300k images might use 10k.
    max_p : float, default=0.8
        Upper bound of the adapted ``p``, below 1. The paper finds its operations
        leak into the generated images (the generator starts producing augmented
        images) only when ``p`` nears 1, in practice above about 0.8; a mirrored
        scan would put organs on the wrong side, so we stop there.

    Attributes
    ----------
    p : float
        The current probability (saved by :meth:`state_dict`).
    r_t : float or None
        The heuristic at the last adjustment.

    Examples
    --------
    >>> augment = AdaptiveAugment(p=0.5, interval=1, ramp_images=100)
    >>> x = torch.randn(4, 3, 16, 16)
    >>> augment(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    >>> augment.update(torch.ones(4))  # all real logits positive: r_t = 1 > 0.6
    >>> augment.p, augment.r_t
    (0.54, 1.0)
    """

    def __init__(
        self,
        ops: str = "xflip,translation,brightness,contrast,saturation,cutout",
        *,
        p: float = 0.0,
        target: float | None = 0.6,
        interval: int = 4,
        ramp_images: int = 500_000,
        max_p: float = 0.8,
    ):
        names = [op.strip() for op in ops.split(",") if op.strip()]
        unknown = sorted(set(names) - set(_ADA_OPS))
        if unknown:
            raise ValueError(
                f"unknown AdaptiveAugment ops {unknown}; choose from {tuple(_ADA_OPS)}"
            )
        if not 0.0 <= p <= 1.0 or not 0.0 <= max_p < 1.0:
            raise ValueError(f"need 0 <= p <= 1 and 0 <= max_p < 1; got {p}, {max_p}")
        if target is not None and not -1.0 <= target <= 1.0:
            raise ValueError(f"target must be None or in [-1, 1], got {target}")
        if interval < 1 or ramp_images < 1:
            raise ValueError(
                f"need interval >= 1 and ramp_images >= 1; got {interval}, "
                f"{ramp_images}"
            )
        self.ops = ",".join(names)
        self._functions = [_ADA_OPS[name] for name in names]
        self.p, self.target, self.interval = float(p), target, interval
        self.ramp_images, self.max_p = ramp_images, max_p
        self.r_t: float | None = None
        self._sign_sum: torch.Tensor | None = None  # on the device: no sync per step
        self._n_images = 0
        self._n_updates = 0

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"AdaptiveAugment expects (n, C, H, W), got {x.shape}")
        if self.p == 0.0:
            return x  # and no draws: a run at p = 0 is a run without augmentation
        for function in self._functions:
            apply = _uniform(x, generator) < self.p
            x = function(x, apply, generator)
        return x

    def update(self, real_logits: torch.Tensor) -> None:
        """Record the discriminator's logits of an augmented real batch.

        Every ``interval`` calls, ``p`` moves towards the target (see above). Under
        ``torchrun`` the signs are summed over all processes, so every rank keeps
        the same ``p``.
        """
        if self.target is None:
            return
        signs = real_logits.detach().float().sign().sum()
        if self._sign_sum is not None:
            signs = signs + self._sign_sum.to(signs.device)
        self._sign_sum = signs
        self._n_images += real_logits.numel()
        self._n_updates += 1
        if self._n_updates % self.interval:
            return
        totals = torch.stack([signs, signs.new_tensor(float(self._n_images))])
        if distributed_context()[1] > 1:
            import torch.distributed as dist

            dist.all_reduce(totals)
        sign_sum, n_images = totals.tolist()
        self.r_t = sign_sum / n_images
        step = n_images / self.ramp_images
        if self.r_t != self.target:
            self.p += math.copysign(step, self.r_t - self.target)
        self.p = min(max(self.p, 0.0), self.max_p)
        self._sign_sum, self._n_images, self._n_updates = None, 0, 0

    def state_dict(self) -> dict:
        """``p``, the last ``r_t`` and the signs gathered since the last adjustment."""
        return {
            "p": self.p,
            "r_t": self.r_t,
            "sign_sum": float(self._sign_sum) if self._sign_sum is not None else 0.0,
            "n_images": self._n_images,
            "n_updates": self._n_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.p, self.r_t = float(state["p"]), state["r_t"]
        self._sign_sum = torch.tensor(float(state["sign_sum"]))
        self._n_images = int(state["n_images"])
        self._n_updates = int(state["n_updates"])

    def __repr__(self) -> str:
        return (
            f"AdaptiveAugment({self.ops!r}, p={self.p:.4g}, target={self.target}, "
            f"interval={self.interval}, ramp_images={self.ramp_images}, "
            f"max_p={self.max_p})"
        )
