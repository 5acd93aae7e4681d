"""The torch networks of GANomaly for table rows (Akcay et al., ACCV 2018), as an
ensemble of members trained side by side.

Each member is the paper's generator, an encoder-decoder-encoder ``G_E: x -> z``,
``G_D: z -> x^``, ``E: x^ -> z^``, with its own discriminator, whose last hidden layer
is the feature layer ``f`` of the feature-matching loss.  The ``M`` members share no
weight: every linear layer holds ``M`` weight matrices (:class:`MemberLinear`) and
runs on a ``(M, batch, features)`` tensor with one batched product, so ``M`` members
train in about the time of one (small networks leave the CPU waiting on Python, not
on arithmetic).  Sizes derive from the number of encoded features
(:func:`default_sizes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "EnsembleDiscriminator",
    "GANomalyEnsemble",
    "MemberLinear",
    "default_sizes",
    "init_weights",
]

NEGATIVE_SLOPE = 0.2  # LeakyReLU between layers (the numpy scorer uses it too)


def default_sizes(n_features: int) -> tuple[tuple[int, int], int]:
    """Hidden widths and latent size from the number of encoded features.

    Two hidden layers, about twice and once the input width (between 32 and 256);
    a bottleneck of about two thirds of the input width (between 4 and 64), wide
    enough that a row's code places it among the training rows' codes (the score's
    nearest-prototype term) and narrow enough that the networks cannot learn the
    identity (benchmarks/RESULTS.md, issue 18: twice the former third scored better).

    Examples
    --------
    >>> default_sizes(30)
    ((60, 30), 20)
    """
    first = int(min(256, max(32, 2 * n_features)))
    second = int(min(128, max(16, n_features)))
    latent = int(min(64, max(4, 2 * math.ceil(n_features / 3))))
    return (first, second), latent


class MemberLinear(nn.Module):
    """``M`` independent linear layers ``x_m @ W_m.T + b_m`` on ``(M, batch, in)``.

    ``weight`` has the shape ``(M, out, in)`` (``nn.Linear``'s, one per member) and
    ``bias`` ``(M, out)``.

    Examples
    --------
    >>> layer = MemberLinear(3, 4, 2)
    >>> layer(torch.zeros(3, 5, 4)).shape
    torch.Size([3, 5, 2])
    """

    def __init__(self, n_members: int, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(n_members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_members, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def _member_mlp(n_members: int, widths: Sequence[int], last_activation: bool):
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=False):
        layers += [MemberLinear(n_members, n_in, n_out), nn.LeakyReLU(NEGATIVE_SLOPE)]
    if not last_activation:
        layers.pop()
    return nn.Sequential(*layers)


class _MemberMLP(nn.Module):
    """A member MLP whose layers are ``net.0``, ``net.2``, ... (as gancore's MLPs)."""

    def __init__(self, n_members: int, widths: Sequence[int], last_activation=False):
        super().__init__()
        self.net = _member_mlp(n_members, widths, last_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GANomalyEnsemble(nn.Module):
    """``M`` GANomaly generators ``x -> (x^, z, z^)`` for vectors of ``n_features``.

    Parameters
    ----------
    n_members : int
    n_features : int
        Width of the encoded rows.
    latent_dim : int
        Size of the bottleneck ``z``.
    hidden_dims : sequence of int
        Hidden widths of the encoders; the decoder uses them in reverse.

    Examples
    --------
    >>> net = GANomalyEnsemble(2, n_features=6, latent_dim=2, hidden_dims=(8, 4))
    >>> [t.shape for t in net(torch.zeros(2, 3, 6))]
    [torch.Size([2, 3, 6]), torch.Size([2, 3, 2]), torch.Size([2, 3, 2])]
    """

    def __init__(
        self,
        n_members: int,
        n_features: int,
        latent_dim: int,
        hidden_dims: Sequence[int],
    ):
        super().__init__()
        hidden = [int(h) for h in hidden_dims]
        self.n_members = int(n_members)
        self.encoder = _MemberMLP(n_members, [n_features, *hidden, latent_dim])
        self.decoder = _MemberMLP(n_members, [latent_dim, *hidden[::-1], n_features])
        self.second_encoder = _MemberMLP(n_members, [n_features, *hidden, latent_dim])

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``x^``, latent code ``z = G_E(x)`` and ``z^ = E(x^)``,
        each ``(M, batch, *)``; ``x`` is ``(M, batch, features)``."""
        latent = self.encoder(x)
        reconstruction = self.decoder(latent)
        return reconstruction, latent, self.second_encoder(reconstruction)


class EnsembleDiscriminator(nn.Module):
    """``M`` real-vs-reconstructed discriminators; ``features`` is the last hidden
    layer of each, the layer of GANomaly's feature-matching loss.

    Examples
    --------
    >>> d = EnsembleDiscriminator(2, n_features=6, hidden_dims=(8, 4))
    >>> d(torch.zeros(2, 3, 6)).shape, d.features(torch.zeros(2, 3, 6)).shape
    (torch.Size([2, 3]), torch.Size([2, 3, 4]))
    """

    def __init__(self, n_members: int, n_features: int, hidden_dims: Sequence[int]):
        super().__init__()
        hidden = [int(h) for h in hidden_dims]
        self.body = _MemberMLP(n_members, [n_features, *hidden], last_activation=True)
        self.head = MemberLinear(n_members, hidden[-1], 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` initialisation for every member of every
    :class:`MemberLinear`, drawn from a local generator.

    The global torch RNG is never touched, so ``random_state`` alone determines the
    initial weights, and every member starts from its own.  Applied with
    ``Module.apply`` semantics to every layer of ``module``.
    """
    for layer in module.modules():
        if isinstance(layer, MemberLinear):
            bound = 1 / math.sqrt(layer.in_features) if layer.in_features else 0
            with torch.no_grad():
                # kaiming_uniform_(a=sqrt(5)) on (out, in) is U(-1/sqrt(in), ...).
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
