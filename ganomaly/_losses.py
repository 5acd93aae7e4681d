"""GANomaly's losses (Akcay, Atapour-Abarghouei & Breckon, ACCV 2018, eqs. 1-4).

With ``G_E`` the first encoder, ``G_D`` the decoder, ``E`` the second encoder,
``x^ = G_D(G_E(x))`` the reconstruction and ``f`` the discriminator's feature layer::

    L_adv = || f(x) - f(x^) ||_2^2      (feature matching, eq. 1; mean over features)
    L_con = || x - x^ ||_1               (contextual loss, eq. 2; mean over features)
    L_enc = || G_E(x) - E(x^) ||_2^2     (encoder loss, eq. 3; mean over latent units)
    L_G   = w_adv * L_adv + w_con * L_con + w_enc * L_enc      (eq. 4)

with the paper's weights ``w_adv = 1``, ``w_con = 50``, ``w_enc = 1``.  As in the
authors' code the norms are taken as means (MSE / mean absolute error), so the weights
do not depend on the number of features.  The discriminator is trained with the
binary cross-entropy of real rows against reconstructions, ``L_D = -log sigma(D(x)) -
log(1 - sigma(D(x^)))`` (gancore's ``GANLoss("bce")``).  Every loss is a batch mean.
"""

from __future__ import annotations

import torch

__all__ = [
    "adversarial_loss",
    "contextual_loss",
    "encoder_loss",
    "generator_loss",
    "known_anomaly_loss",
]


def adversarial_loss(
    real_features: torch.Tensor, fake_features: torch.Tensor
) -> torch.Tensor:
    """``L_adv``: mean squared distance of discriminator features (feature matching).

    Examples
    --------
    >>> float(adversarial_loss(torch.zeros(2, 3), torch.ones(2, 3)))
    1.0
    """
    return torch.mean((real_features - fake_features) ** 2)


def contextual_loss(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """``L_con``: mean absolute reconstruction error (L1).

    Examples
    --------
    >>> float(contextual_loss(torch.zeros(2, 2), torch.full((2, 2), -2.0)))
    2.0
    """
    return torch.mean(torch.abs(x - reconstruction))


def encoder_loss(
    latent: torch.Tensor, latent_of_reconstruction: torch.Tensor
) -> torch.Tensor:
    """``L_enc``: mean squared distance of the two latent codes.

    Examples
    --------
    >>> float(encoder_loss(torch.zeros(1, 4), torch.full((1, 4), 3.0)))
    9.0
    """
    return torch.mean((latent - latent_of_reconstruction) ** 2)


def generator_loss(
    *,
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    latent: torch.Tensor,
    latent_of_reconstruction: torch.Tensor,
    w_adv: float = 1.0,
    w_con: float = 50.0,
    w_enc: float = 1.0,
) -> torch.Tensor:
    """``L_G = w_adv L_adv + w_con L_con + w_enc L_enc`` (eq. 4, defaults 1 / 50 / 1).

    Examples
    --------
    >>> zero = torch.zeros(1, 2)
    >>> float(generator_loss(real_features=zero, fake_features=zero, x=zero,
    ...                      reconstruction=torch.ones(1, 2), latent=zero,
    ...                      latent_of_reconstruction=zero))
    50.0
    """
    return (
        w_adv * adversarial_loss(real_features, fake_features)
        + w_con * contextual_loss(x, reconstruction)
        + w_enc * encoder_loss(latent, latent_of_reconstruction)
    )


def known_anomaly_loss(
    x: torch.Tensor, reconstruction: torch.Tensor, eps: float = 1e-2
) -> torch.Tensor:
    """``L_known = mean_i 1 / (||x_i - x^_i||^2 / F + eps)`` over known anomalies.

    Deep SAD's term for labelled anomalies (Ruff et al., "Deep Semi-Supervised
    Anomaly Detection", ICLR 2020, eq. 3: ``eta * (||phi(x) - c||^2)^-1``, with
    ``eta = 1``), applied to GANomaly's reconstruction error instead of the distance
    to a centre: minimising it pushes the reconstruction error of the rows known to
    be anomalies up, so that the score ranks them, and rows like them, higher.
    ``eps`` bounds the term for a row the networks reconstruct exactly.

    Examples
    --------
    >>> x = torch.zeros(1, 4)
    >>> round(float(known_anomaly_loss(x, torch.ones(1, 4), eps=0.0)), 6)
    1.0
    """
    squared = torch.mean((x - reconstruction) ** 2, dim=-1)
    return torch.mean(1.0 / (squared + eps))
