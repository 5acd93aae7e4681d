"""A small classifier trained on the real images: judge and feature space.

Two jobs need a network that knows the user's own images and nothing else (no
downloaded weights, which medical images would not suit anyway):

* **Filtering** synthetic images (:class:`ganaug.GANAugmenter`'s
  ``filter_synthetic``): a synthetic image that a classifier trained on the real
  images assigns to another class is one that would teach the downstream
  classifier the wrong thing.
* **Quality metrics** (:mod:`ganaug.quality`): FID, KID and precision / recall /
  density / coverage need a feature space; the penultimate layer of this
  classifier is one in which the classes that matter are separated.

The network is a plain CNN (a stride-2 3x3 conv stem for images of 48 pixels or
more; then 3x3 conv, batch norm, ReLU and 2x2 max-pooling per stage until the map
is at most 8 pixels high, then one more conv and global average pooling),
trained with class-balanced batches (every class equally often, so that the
rarest class is not ignored), random shifts and left-right mirrors, Adam and a
cosine learning-rate decay.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RealImageClassifier"]


def _network(in_channels: int, height: int, n_classes: int, width: int) -> nn.Module:
    layers: list[nn.Module] = []
    channels, side = in_channels, height
    out = width
    if side >= 48:  # a strided stem: four times less work at full resolution
        layers += [
            nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        ]
        channels, side, out = out, side // 2, 2 * out
    while side > 8:
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        channels, side, out = out, side // 2, min(8 * width, 2 * out)
    layers += [
        nn.Conv2d(channels, out, 3, padding=1, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    body = nn.Sequential(*layers)
    return nn.ModuleDict({"body": body, "head": nn.Linear(out, n_classes)})


class RealImageClassifier:
    """A small CNN trained on real images, for filtering and for metrics.

    Takes ``(n, C, H, W)`` float images (any range: they are standardised with the
    training images' mean and standard deviation) and integer labels
    ``0 .. n_classes - 1``.

    Parameters
    ----------
    n_steps : int, default=300
        Optimiser steps.
    batch_size : int, default=64
    width : int, default=16
        Channels of the first stage; each stage doubles them, up to ``8 * width``.
    learning_rate : float, default=2e-3
        Adam's initial step size, decayed to zero along a cosine.
    random_state : int or None, default=None
        Seeds the weights, the batches and the augmentation (locally).

    Attributes
    ----------
    n_classes_ : int
    n_features_ : int
        Width of :meth:`features`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 1, 16, 16)).astype("float32")
    >>> y = np.repeat([0, 1], 20)
    >>> X[y == 1, :, :8] += 2.0  # class 1 is bright at the top
    >>> judge = RealImageClassifier(n_steps=60, random_state=0).fit(X, y)
    >>> float((judge.predict(X) == y).mean()) > 0.9
    True
    >>> judge.features(X).shape
    (40, 32)
    """

    def __init__(
        self,
        *,
        n_steps: int = 300,
        batch_size: int = 64,
        width: int = 16,
        learning_rate: float = 2e-3,
        random_state: int | None = None,
    ):
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.width = width
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> RealImageClassifier:
        """Train on ``(n, C, H, W)`` images ``X`` with labels ``y`` in 0..K-1."""
        from gancore import DiffAugment, make_rngs

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 4 or len(X) != len(y) or len(X) < 2:
            raise ValueError(
                f"need (n, C, H, W) images with one label each, got {X.shape} and "
                f"{y.shape}"
            )
        self.n_classes_ = int(y.max()) + 1
        self.mean_ = float(X.mean())
        self.scale_ = float(X.std()) or 1.0
        self.input_shape_ = tuple(int(n) for n in X.shape[1:])
        rngs = make_rngs(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rngs.numpy.integers(0, 2**62)))
            self._build()
        images = torch.from_numpy(self._standardise(X))
        labels = torch.from_numpy(y)
        # Class-balanced batches: every class drawn equally often.
        by_class = [np.flatnonzero(y == k) for k in range(self.n_classes_)]
        present = [rows for rows in by_class if len(rows)]
        shift = DiffAugment("translation")
        optimizer = torch.optim.Adam(
            self.network_.parameters(), lr=self.learning_rate, weight_decay=1e-4
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.n_steps)
        self.network_.train()
        for _ in range(self.n_steps):
            classes = rngs.numpy.integers(0, len(present), self.batch_size)
            rows = np.array(
                [present[k][rngs.numpy.integers(len(present[k]))] for k in classes]
            )
            batch = shift(images[rows], rngs.torch_cpu)
            mirror = torch.rand(len(rows), generator=rngs.torch_cpu) < 0.5
            batch = torch.where(mirror[:, None, None, None], batch.flip(3), batch)
            logits = self._forward(batch)
            loss = F.cross_entropy(logits, labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        self.network_.eval()
        return self

    def _build(self) -> None:
        channels, height, _ = self.input_shape_
        self.network_ = _network(channels, height, self.n_classes_, self.width)
        self.n_features_ = self.network_["head"].in_features

    def to_config(self) -> dict:
        """What, besides the network's weights, rebuilds the fitted classifier."""
        return {
            "width": self.width,
            "input_shape": list(self.input_shape_),
            "n_classes": self.n_classes_,
            "mean": self.mean_,
            "scale": self.scale_,
        }

    @classmethod
    def from_config(cls, config: dict, state: dict) -> RealImageClassifier:
        """The fitted classifier of :meth:`to_config` and ``network_``'s state.

        Examples
        --------
        >>> X = np.random.default_rng(0).normal(size=(8, 1, 8, 8)).astype("float32")
        >>> judge = RealImageClassifier(n_steps=2, random_state=0)
        >>> judge = judge.fit(X, np.repeat([0, 1], 4))
        >>> copy = RealImageClassifier.from_config(
        ...     judge.to_config(), judge.network_.state_dict()
        ... )
        >>> bool(np.array_equal(copy.predict_proba(X), judge.predict_proba(X)))
        True
        """
        judge = cls(width=int(config["width"]))
        judge.input_shape_ = tuple(int(n) for n in config["input_shape"])
        judge.n_classes_ = int(config["n_classes"])
        judge.mean_, judge.scale_ = float(config["mean"]), float(config["scale"])
        judge._build()
        # A model file keeps scalars (batch norm's step count) as 1-vectors.
        expected = judge.network_.state_dict()
        judge.network_.load_state_dict(
            {key: value.reshape(expected[key].shape) for key, value in state.items()}
        )
        judge.network_.eval()
        return judge

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_).astype(
            np.float32
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network_["head"](self.network_["body"](x))

    @torch.no_grad()
    def _batched(self, X: np.ndarray, function) -> np.ndarray:
        x = torch.from_numpy(self._standardise(X))
        if len(x) == 0:
            return np.empty((0, 0), dtype=np.float32)
        return torch.cat([function(chunk) for chunk in x.split(256)]).numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, ``(n, n_classes)``."""
        return self._batched(X, lambda x: torch.softmax(self._forward(x), dim=1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each image."""
        return self.predict_proba(X).argmax(axis=1)

    def features(self, X: np.ndarray) -> np.ndarray:
        """The penultimate layer's activations, ``(n, n_features_)``."""
        return self._batched(X, self.network_["body"])
