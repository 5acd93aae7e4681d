"""Adversarial losses: non-saturating BCE, hinge and WGAN-GP.

Notation: ``D(x)`` is the discriminator's raw output (a logit or critic value),
``x ~ p_data`` a real sample, ``x~ = G(z)`` a generated one, ``sigma`` the sigmoid.
Every loss is a mean over the batch.

``"bce"`` -- the original GAN (Goodfellow et al. 2014) with the non-saturating
generator loss::

    L_D = -E[log sigma(D(x))] - E[log(1 - sigma(D(x~)))]
    L_G = -E[log sigma(D(x~))]

``"hinge"`` -- geometric GAN / SNGAN / BigGAN (Lim & Ye 2017; Miyato et al. 2018)::

    L_D = E[relu(1 - D(x))] + E[relu(1 + D(x~))]
    L_G = -E[D(x~)]

``"wgan-gp"`` -- Wasserstein GAN with gradient penalty (Gulrajani et al. 2017),
``lambda = 10`` by default, ``x^`` a random interpolate of a real and a fake::

    L_D = E[D(x~)] - E[D(x)] + lambda * E[(||grad_x^ D(x^)||_2 - 1)^2]
    L_G = -E[D(x~)]

Any of them can take the R1 penalty on real data (Mescheder et al. 2018), see
:func:`r1_penalty`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LOSSES", "GANLoss", "gradient_penalty", "r1_penalty"]

LOSSES = ("bce", "hinge", "wgan-gp")


def gradient_penalty(
    discriminator: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad D(x^)||_2 - 1)^2]`` at random interpolates ``x^``.

    Parameters
    ----------
    discriminator : nn.Module
        Called as ``discriminator(x)`` or ``discriminator(x, y)``.
    real, fake : torch.Tensor
        Batches of the same shape; ``fake`` is detached here.
    y : torch.Tensor, optional
        Labels for a conditional discriminator (the same labels for both batches).
    generator : torch.Generator, optional
        Source of the interpolation weights.

    Returns
    -------
    torch.Tensor
        A scalar, differentiable with respect to the discriminator's parameters.

    Examples
    --------
    >>> critic = nn.Linear(3, 1)
    >>> with torch.no_grad():
    ...     _ = critic.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
    >>> # A linear critic with unit-norm weights has gradient norm 1: zero penalty.
    >>> float(gradient_penalty(lambda x: critic(x).squeeze(1),
    ...                        torch.randn(4, 3), torch.randn(4, 3)))
    0.0
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, generator=generator)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = discriminator(mixed) if y is None else discriminator(mixed, y)
    (grad,) = torch.autograd.grad(out.float().sum(), mixed, create_graph=True)
    return ((grad.flatten(1).float().norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(
    real_logits: torch.Tensor, real_images: torch.Tensor, *, gamma: float = 10.0
) -> torch.Tensor:
    """R1 regulariser (Mescheder et al. 2018, eq. 9) on real images.

    ::

        R1 = gamma / 2 * E_x~p_data[ ||grad_x D(x)||_2^2 ]

    It penalises the discriminator's gradient on the real data only, which makes
    the training dynamics locally convergent, where unregularised GANs and WGAN-GP
    need not converge. ``gamma = 10`` is the paper's value for most
    of its experiments; StyleGAN2-ADA (Karras et al. 2020) scales it with the image
    area, ``gamma = 0.0002 * H * W / batch_size``, for its architecture.

    Parameters
    ----------
    real_logits : torch.Tensor
        ``D(x)`` for the batch, computed from ``real_images`` (possibly through an
        augmentation), with ``real_images.requires_grad`` set before the forward pass.
    real_images : torch.Tensor
        The batch, ``(n, ...)``.
    gamma : float, default=10.0

    Returns
    -------
    torch.Tensor
        A scalar, differentiable with respect to the discriminator's parameters.

    Examples
    --------
    >>> critic = nn.Linear(3, 1)
    >>> with torch.no_grad():
    ...     _ = critic.weight.copy_(torch.tensor([[1.0, 2.0, 2.0]]))
    >>> x = torch.randn(4, 3, requires_grad=True)
    >>> # D(x) = w.x + b has gradient w everywhere: R1 = 10 / 2 * ||w||^2 = 45.
    >>> float(r1_penalty(critic(x).squeeze(1), x))
    45.0
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    (grad,) = torch.autograd.grad(
        real_logits.float().sum(), real_images, create_graph=True
    )
    return gamma / 2 * grad.float().flatten(1).pow(2).sum(dim=1).mean()


class GANLoss:
    """One of the adversarial losses, as discriminator and generator terms.

    Parameters
    ----------
    kind : {"bce", "hinge", "wgan-gp"}, default="hinge"
        See the module docstring for the equations.
    gp_weight : float, default=10.0
        ``lambda`` of the gradient penalty (``"wgan-gp"`` only).

    Examples
    --------
    >>> loss = GANLoss("hinge")
    >>> float(loss.discriminator_loss(torch.tensor([2.0]), torch.tensor([-2.0])))
    0.0
    >>> float(loss.generator_loss(torch.tensor([0.5, 1.5])))
    -1.0
    """

    def __init__(self, kind: str = "hinge", *, gp_weight: float = 10.0):
        if kind not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        self.kind, self.gp_weight = kind, gp_weight

    @property
    def needs_gradient_penalty(self) -> bool:
        return self.kind == "wgan-gp" and self.gp_weight > 0

    def discriminator_loss(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> torch.Tensor:
        """``L_D`` without the gradient penalty (added by the caller, see above)."""
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        if self.kind == "bce":
            # softplus(-t) = -log sigma(t); softplus(t) = -log(1 - sigma(t)), stable.
            return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        if self.kind == "hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        return fake_logits.mean() - real_logits.mean()

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """``L_G`` for the generated batch's logits."""
        fake_logits = fake_logits.float()
        if self.kind == "bce":
            return F.softplus(-fake_logits).mean()
        return -fake_logits.mean()

    def __repr__(self) -> str:
        return f"GANLoss({self.kind!r}, gp_weight={self.gp_weight})"
