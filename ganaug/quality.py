"""How close synthetic images are to real ones: FID, KID, precision, recall,
density and coverage, per class, in a feature space that needs no download.

The usual feature space, an Inception network trained on ImageNet, has to be
downloaded and knows nothing of scans. Here the features are those of a small
classifier trained on the user's own real images
(:class:`ganaug.reference.RealImageClassifier`, its penultimate layer), so the
figures are comparable within one dataset, not across datasets or with published
Inception FIDs.

The metrics come from maintained libraries, given the features:

* **FID** (Frechet distance between Gaussians fitted to the two feature sets;
  Heusel et al. 2017) and **KID** (squared MMD with a cubic polynomial kernel,
  averaged over random subsets; Binkowski et al. 2018): ``torchmetrics``, with the
  features passed through an identity "feature extractor".
* **Precision, recall, density and coverage** (Naeem et al. 2020, with ``k``
  nearest neighbours): ``prdc``. Precision and density say how many synthetic
  images fall among the real ones (fidelity), recall and coverage how much of the
  real images' spread the synthetic ones reach (diversity).

Every figure is measured against a **reference** set of real images that neither
the GAN nor the feature classifier was trained on, and is reported next to the
same figure for a set of **real** images against that reference (real vs. real):
what a perfect generator would score with that many images.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["QualityReport", "feature_metrics", "quality_report", "sampler_quality"]

_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")


class _Identity(nn.Module):
    """torchmetrics' "feature extractor" for features computed beforehand."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def feature_metrics(
    reference: np.ndarray,
    other: np.ndarray,
    *,
    nearest_k: int = 5,
    kid_subsets: int = 50,
    random_state: int = 0,
) -> dict[str, float]:
    """FID, KID and precision / recall / density / coverage of ``other`` against
    ``reference``, both ``(n, d)`` feature arrays.

    Parameters
    ----------
    reference : ndarray of shape (n_reference, d)
        Features of real images (the reference).
    other : ndarray of shape (n_other, d)
        Features of the images to judge (synthetic, or real for real vs. real).
    nearest_k : int, default=5
        ``k`` of precision / recall / density / coverage; lowered to
        ``n - 2`` for smaller sets (``n`` the smaller set's size).
    kid_subsets : int, default=50
        Random subsets KID is averaged over (each of the smaller set's size, at
        most 1,000).
    random_state : int, default=0
        Seeds the KID subsets (in a fork of torch's generator).

    Returns
    -------
    dict
        ``fid``, ``kid`` (mean over subsets), ``precision``, ``recall``,
        ``density``, ``coverage``; NaN where a set has fewer than 2 rows (the
        last four: fewer than 3).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(200, 4))
    >>> close = feature_metrics(real, rng.normal(size=(200, 4)))
    >>> far = feature_metrics(real, rng.normal(3.0, size=(200, 4)))
    >>> close["fid"] < 1 < far["fid"], close["coverage"] > far["coverage"]
    (True, True)
    """
    from prdc import compute_prdc
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    reference = np.asarray(reference, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    n = min(len(reference), len(other))
    if n < 2:
        return dict.fromkeys(_METRICS, math.nan)
    dim = reference.shape[1]
    real_t, other_t = torch.from_numpy(reference), torch.from_numpy(other)
    # Every feature is here: no gathering from other processes, which in a
    # torch.distributed job (ganaug fit under torchrun: rank 0 reports alone)
    # would wait for ranks that never compute these.
    local = {"sync_on_compute": False}
    fid = FrechetInceptionDistance(feature=_Identity(dim), **local)
    fid.update(real_t, real=True)
    fid.update(other_t, real=False)
    with warnings.catch_warnings():  # that it keeps the features: they are small
        warnings.filterwarnings("ignore", message=".*save all extracted features")
        kid = KernelInceptionDistance(
            feature=_Identity(dim),
            subsets=kid_subsets,
            subset_size=min(n, 1000),
            **local,
        )
    kid.update(real_t, real=True)
    kid.update(other_t, real=False)
    # KID draws its subsets from torch's global generator: seed it in a fork.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        kid_mean, _ = kid.compute()
    # prdc takes the (k + 1)-th smallest distance of each row, itself included:
    # k <= n - 2.
    k = min(nearest_k, n - 2)
    prdc = dict.fromkeys(_METRICS[2:], math.nan)
    if k >= 1:
        with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sizes
            prdc = compute_prdc(
                real_features=reference.astype(np.float32),
                fake_features=other.astype(np.float32),
                nearest_k=k,
            )
    return {
        "fid": float(fid.compute()),
        "kid": float(kid_mean),
        **{name: float(prdc[name]) for name in _METRICS[2:]},
    }


@dataclass
class QualityReport:
    """Per-class quality figures of synthetic images, with real vs. real beside.

    Attributes
    ----------
    rows : list of dict
        One per class and one for all classes together (``class`` "all"):
        ``class``, ``n_reference``, ``n_synthetic``, ``n_real``, then each metric
        for the synthetic images (``fid``, ``kid``, ...) and for the real ones
        (``real_fid``, ``real_kid``, ...).
    """

    rows: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        """A plain-text table: synthetic (real vs. real) per class and metric."""
        header = ["class", "n ref/syn/real", *_METRICS]
        lines = [
            "quality in the real-image classifier's features: synthetic "
            "(real vs. real); FID/KID lower, others higher are better",
            " | ".join(header),
        ]
        for row in self.rows:
            cells = [
                str(row["class"]),
                f"{row['n_reference']}/{row['n_synthetic']}/{row['n_real']}",
            ]
            for name in _METRICS:
                digits = 4 if name == "kid" else 2
                cells.append(
                    f"{row[name]:.{digits}f} ({row['real_' + name]:.{digits}f})"
                )
            lines.append(" | ".join(cells))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"rows": self.rows}


def quality_report(
    feature_fn,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    *,
    nearest_k: int = 5,
    random_state: int = 0,
) -> QualityReport:
    """Compare synthetic and real images with held-out real ones, per class.

    Parameters
    ----------
    feature_fn : callable
        Images -> ``(n, d)`` features, e.g.
        :meth:`ganaug.reference.RealImageClassifier.features`.
    reference, reference_labels
        Held-out real images (seen by neither the GAN nor ``feature_fn``'s
        training) and their labels.
    synthetic, synthetic_labels
        The synthetic images to judge.
    real, real_labels
        Other real images (e.g. the GAN's training images): the real vs. real
        figures.
    nearest_k : int, default=5
    random_state : int, default=0

    Returns
    -------
    QualityReport

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> def draw(n, shift):
    ...     return rng.normal(shift, 1.0, size=(n, 3)), np.repeat([0, 1], n // 2)
    >>> ref, ref_y = draw(100, 0.0)
    >>> syn, syn_y = draw(100, 0.5)
    >>> real, real_y = draw(100, 0.0)
    >>> report = quality_report(lambda x: x, ref, ref_y, syn, syn_y, real, real_y)
    >>> [row["class"] for row in report.rows]
    [0, 1, 'all']
    >>> report.rows[-1]["fid"] > report.rows[-1]["real_fid"]
    True
    """
    reference_features = feature_fn(reference)
    synthetic_features = feature_fn(synthetic)
    real_features = feature_fn(real)
    rows = []
    labels = sorted(set(np.asarray(reference_labels).tolist()))
    groups = [(label, label) for label in labels] + [("all", None)]
    for name, label in groups:

        def pick(features, their_labels, label=label):
            if label is None:
                return features
            return features[np.asarray(their_labels) == label]

        ref = pick(reference_features, reference_labels)
        syn = pick(synthetic_features, synthetic_labels)
        real_part = pick(real_features, real_labels)
        row = {
            "class": name,
            "n_reference": len(ref),
            "n_synthetic": len(syn),
            "n_real": len(real_part),
        }
        options = dict(nearest_k=nearest_k, random_state=random_state)
        row.update(feature_metrics(ref, syn, **options))
        real_metrics = feature_metrics(ref, real_part, **options)
        row.update({f"real_{key}": value for key, value in real_metrics.items()})
        rows.append(row)
    return QualityReport(rows)


def sampler_quality(
    sampler,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    held_out_images: np.ndarray,
    held_out_labels: np.ndarray,
    *,
    n_per_class: int | None = None,
    random_state: int = 0,
) -> QualityReport:
    """:func:`quality_report` of a fitted :class:`ganaug.GANAugmenter` on held-out
    images, in the features of a classifier trained on its training images.

    Parameters
    ----------
    sampler : GANAugmenter
        Fitted on ``train_images`` (images of the sampler's input layout).
    train_images, train_labels
        Its training images: they train the feature classifier and are the real
        vs. real comparison.
    held_out_images, held_out_labels
        Real images neither saw: the reference.
    n_per_class : int, optional
        Synthetic images per class; default: as many as the class has training
        images, at least 50 and at most 500.
    random_state : int, default=0
        Seeds the classifier, the synthetic images and KID's subsets.

    Returns
    -------
    QualityReport

    Examples
    --------
    >>> from ganaug import GANAugmenter
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(48, 1, 16, 16), dtype=np.uint8)
    >>> y = np.repeat(["a", "b"], 24)
    >>> sampler = GANAugmenter(n_epochs=1, base_channels=4, random_state=0)
    >>> _ = sampler.fit_resample(X[::2], y[::2])
    >>> report = sampler_quality(
    ...     sampler, X[::2], y[::2], X[1::2], y[1::2], n_per_class=20
    ... )
    >>> [row["class"] for row in report.rows]
    ['a', 'b', 'all']
    """
    from .reference import RealImageClassifier

    low, high = sampler.data_range_
    span = high - low if high > low else 1.0
    shape = sampler.image_shape_

    def unit(images: np.ndarray) -> np.ndarray:
        flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
        return ((flat - low) / span).reshape(-1, *shape)

    classes, encoded = np.unique(np.asarray(train_labels), return_inverse=True)
    judge = RealImageClassifier(random_state=random_state).fit(
        unit(train_images), encoded
    )
    counts = dict(zip(classes.tolist(), np.bincount(encoded).tolist(), strict=True))
    wanted = np.concatenate(
        [
            np.full(n_per_class or int(np.clip(count, 50, 500)), label)
            for label, count in counts.items()
        ]
    ).astype(sampler.classes_.dtype)
    synthetic, synthetic_labels = sampler.sample(
        len(wanted), y=wanted, random_state=random_state
    )
    return quality_report(
        lambda images: judge.features(unit(images)),
        held_out_images,
        held_out_labels,
        synthetic,
        synthetic_labels,
        train_images,
        train_labels,
        random_state=random_state,
    )
