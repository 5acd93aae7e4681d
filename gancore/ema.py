"""Exponential moving average of a network's weights.

Generators sampled from an EMA of their weights (Karras et al. 2018; Yazici et al.
2019) are markedly better and more stable than the last iterate, most of all with
small datasets where the adversarial game oscillates.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after every update.

    Buffers (batch-norm statistics) are copied, not averaged.

    Parameters
    ----------
    module : nn.Module
        The network to average; a deep copy is kept in :attr:`module`.
    decay : float, default=0.999

    Examples
    --------
    >>> net = nn.Linear(1, 1, bias=False)
    >>> ema = EMA(net, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(1.0)
    ...     _ = ema.module.weight.fill_(0.0)
    >>> ema.update(net)
    >>> float(ema.module.weight)
    0.5
    """

    def __init__(self, module: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        params = dict(module.named_parameters())
        shadow_params = list(self.module.named_parameters())
        torch._foreach_lerp_(
            [p for _, p in shadow_params],
            [params[name].detach() for name, _ in shadow_params],
            1.0 - self.decay,
        )
        for (_, shadow), buffer in zip(
            self.module.named_buffers(), module.buffers(), strict=True
        ):
            shadow.copy_(buffer)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
