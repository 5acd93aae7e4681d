"""The torch networks of GANomaly for table rows (Akcay et al., ACCV 2018).

The generator is an encoder-decoder-encoder: ``G_E: x -> z``, ``G_D: z -> x^``,
``E: x^ -> z^``.  The discriminator classifies rows as real or reconstructed and
exposes its last hidden layer as the feature layer ``f`` used for feature matching.
All four are gancore MLPs: an MLP "generator" maps any input size to any output size,
so it serves as encoder and decoder alike.  Sizes derive from the number of encoded
features (see :func:`default_sizes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gancore import MLPDiscriminator, MLPGenerator

__all__ = ["GANomalyNet", "default_sizes", "init_weights", "make_discriminator"]


def default_sizes(n_features: int) -> tuple[tuple[int, ...], int]:
    """Hidden widths and latent size from the number of encoded features.

    Two hidden layers, about twice and once the input width (between 32 and 256),
    and a bottleneck of about a third of the input width (between 2 and 32): narrow
    enough that the networks cannot learn the identity, wide enough for the
    correlated structure of normal rows.

    Examples
    --------
    >>> default_sizes(30)
    ((60, 30), 10)
    """
    first = int(min(256, max(32, 2 * n_features)))
    second = int(min(128, max(16, n_features)))
    latent = int(min(32, max(2, math.ceil(n_features / 3))))
    return (first, second), latent


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from a local generator.

    The global torch RNG is never touched, so ``random_state`` alone determines the
    initial weights.  Applied to every linear layer of ``module``.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1 / math.sqrt(layer.in_features) if layer.in_features else 0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class GANomalyNet(nn.Module):
    """GANomaly's generator ``x -> (x^, z, z^)`` for vectors of ``n_features``.

    Parameters
    ----------
    n_features : int
        Width of the encoded rows.
    latent_dim : int
        Size of the bottleneck ``z``.
    hidden_dims : sequence of int
        Hidden widths of the encoders; the decoder uses them in reverse.

    Examples
    --------
    >>> net = GANomalyNet(n_features=6, latent_dim=2, hidden_dims=(8, 4))
    >>> [t.shape[1] for t in net(torch.zeros(3, 6))]
    [6, 2, 2]
    """

    def __init__(self, n_features: int, latent_dim: int, hidden_dims: Sequence[int]):
        super().__init__()
        hidden_dims = tuple(int(h) for h in hidden_dims)
        self.encoder = MLPGenerator(
            n_features, latent_dim, hidden_dims, activation="leaky_relu"
        )
        self.decoder = MLPGenerator(
            latent_dim, n_features, hidden_dims[::-1], activation="leaky_relu"
        )
        self.second_encoder = MLPGenerator(
            n_features, latent_dim, hidden_dims, activation="leaky_relu"
        )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``x^``, latent code ``z = G_E(x)`` and ``z^ = E(x^)``."""
        latent = self.encoder(x)
        reconstruction = self.decoder(latent)
        return reconstruction, latent, self.second_encoder(reconstruction)


def make_discriminator(n_features: int, hidden_dims: Sequence[int]) -> MLPDiscriminator:
    """Real-vs-reconstructed discriminator; ``features`` is its last hidden layer."""
    return MLPDiscriminator(n_features, tuple(int(h) for h in hidden_dims))
