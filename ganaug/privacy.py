"""Memorisation audit: are synthetic images copies of training images?

A GAN trained on a few hundred scans can reproduce some of them almost exactly,
and a copied chest X-ray re-identifies its patient. :func:`memorization_report`
compares, for every synthetic image, the distance to its nearest training image
with the same nearest-training distance of *held-out* real images: a held-out
image is a new patient, so a synthetic image much closer to a training image
than (almost) any new patient is suspect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["MemorizationReport", "memorization_report", "nearest_correlation"]


def _standardize(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A constant image has no defined correlation; a zero row gives r = 0.
    return rows / np.where(norms > 0, norms, 1.0)


def nearest_correlation(
    queries: np.ndarray, references: np.ndarray, *, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Highest Pearson correlation of each query with any reference, and which.

    Parameters
    ----------
    queries : array of shape (n, ...)
    references : array of shape (m, ...)
        Flattened to vectors; both must have the same number of values per row.
    chunk_size : int, default=1024
        Queries compared at a time (bounds memory to chunk_size x m).

    Returns
    -------
    correlation : ndarray of shape (n,)
    index : ndarray of shape (n,)
        Index of the nearest reference.

    Examples
    --------
    >>> refs = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    >>> corr, idx = nearest_correlation(np.array([[0.0, 2.0, 4.0]]), refs)
    >>> round(float(corr[0]), 6), int(idx[0])
    (1.0, 0)
    """
    query_rows, reference_rows = _standardize(queries), _standardize(references)
    if query_rows.shape[1] != reference_rows.shape[1]:
        raise ValueError(
            f"queries have {query_rows.shape[1]} values per row but references "
            f"have {reference_rows.shape[1]}"
        )
    best = np.empty(len(query_rows))
    index = np.empty(len(query_rows), dtype=np.int64)
    for start in range(0, len(query_rows), chunk_size):
        similarity = query_rows[start : start + chunk_size] @ reference_rows.T
        index[start : start + chunk_size] = similarity.argmax(axis=1)
        best[start : start + chunk_size] = similarity.max(axis=1)
    return best, index


@dataclass
class MemorizationReport:
    """Result of :func:`memorization_report`.

    Attributes
    ----------
    synthetic_distance : ndarray of shape (n_synthetic,)
        ``1 - r`` to the nearest training image (pixel Pearson correlation r).
    nearest_train_index : ndarray of shape (n_synthetic,)
    holdout_distance : ndarray of shape (n_holdout,)
        The same distance for held-out real images.
    threshold : float
        The ``percentile``-th percentile of ``holdout_distance``.
    flagged : ndarray of shape (n_synthetic,), bool
        Synthetic images closer to a training image than ``threshold``.
    percentile : float
    feature_synthetic_distance, feature_holdout_distance, feature_threshold,
    feature_flagged : optional
        The same in the feature space of ``feature_fn`` when it was given.
    figure_path : Path or None
        The PNG of the closest synthetic/training pairs, when written.
    """

    synthetic_distance: np.ndarray
    nearest_train_index: np.ndarray
    holdout_distance: np.ndarray
    threshold: float
    flagged: np.ndarray
    percentile: float
    feature_synthetic_distance: np.ndarray | None = None
    feature_holdout_distance: np.ndarray | None = None
    feature_threshold: float | None = None
    feature_flagged: np.ndarray | None = None
    figure_path: Path | None = field(default=None)

    @property
    def n_flagged(self) -> int:
        """Number of synthetic images flagged in pixel space."""
        return int(self.flagged.sum())

    @property
    def flagged_fraction(self) -> float:
        """Fraction flagged in pixel space (about ``percentile / 100`` if none copy)."""
        return float(self.flagged.mean()) if len(self.flagged) else 0.0

    def summary(self) -> str:
        """A few lines for a terminal or a log."""
        lines = [
            "Memorisation report (nearest training image, 1 - Pearson r of pixels)",
            f"  synthetic images: {len(self.synthetic_distance)}; "
            f"held-out real images: {len(self.holdout_distance)}",
            f"  median distance, synthetic -> train: "
            f"{np.median(self.synthetic_distance):.4f}; held-out -> train: "
            f"{np.median(self.holdout_distance):.4f}",
            f"  threshold (percentile {self.percentile:g} of held-out distances): "
            f"{self.threshold:.4f}",
            f"  flagged as possible copies: {self.n_flagged} "
            f"({100 * self.flagged_fraction:.1f}%; about {self.percentile:g}% "
            "expected without memorisation)",
        ]
        if len(self.holdout_distance) < 100:
            lines.append(
                f"  caution: only {len(self.holdout_distance)} held-out images; the "
                "threshold is a rough estimate"
            )
        if self.feature_flagged is not None:
            lines.append(
                f"  in classifier features: {int(self.feature_flagged.sum())} flagged "
                f"({100 * float(self.feature_flagged.mean()):.1f}%)"
            )
        if self.figure_path is not None:
            lines.append(f"  closest pairs for visual audit: {self.figure_path}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _as_images(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 4:
        return array[:, 0] if array.shape[1] == 1 else np.moveaxis(array, 1, -1)
    return array


def _save_pairs_figure(
    path: Path,
    synthetic: np.ndarray,
    train: np.ndarray,
    report: MemorizationReport,
    n_pairs: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from gancore.io import atomic_write

    order = np.argsort(report.synthetic_distance)[:n_pairs]
    synthetic_images, train_images = _as_images(synthetic), _as_images(train)
    figure, axes = plt.subplots(
        2, len(order), figsize=(1.6 * len(order) + 0.6, 3.6), squeeze=False
    )
    for column, index in enumerate(order):
        partner = report.nearest_train_index[index]
        for row, (image, title) in enumerate(
            (
                (
                    synthetic_images[index],
                    f"syn {index}\nd={report.synthetic_distance[index]:.3f}",
                ),
                (train_images[partner], f"train {partner}"),
            )
        ):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            axis.set_title(title, fontsize=7)
            axis.axis("off")
    figure.suptitle(
        f"closest synthetic/training pairs (flag threshold d < {report.threshold:.3f})",
        fontsize=9,
    )
    figure.tight_layout()
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)


def memorization_report(
    synthetic: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray,
    *,
    feature_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    percentile: float = 1.0,
    figure_path: str | os.PathLike | None = None,
    n_pairs: int = 8,
) -> MemorizationReport:
    """Flag synthetic images that are closer to a training image than new patients are.

    Parameters
    ----------
    synthetic : array of shape (n_synthetic, ...)
        Generated images (any layout; flattened per image).
    train : array of shape (n_train, ...)
        The real images the generator was trained on.
    holdout : array of shape (n_holdout, ...)
        Real images the generator never saw (the reference for "new patient").
    feature_fn : callable, optional
        Maps an image array to features ``(n, k)`` (e.g. a classifier's
        penultimate layer); the same comparison is then also made there.
    percentile : float, default=1.0
        A synthetic image is flagged when its distance is below this percentile
        of the held-out distances.
    figure_path : path-like, optional
        Write the ``n_pairs`` closest synthetic/training pairs there as a PNG.
    n_pairs : int, default=8

    Returns
    -------
    MemorizationReport

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(size=(50, 8, 8))
    >>> holdout = rng.normal(size=(30, 8, 8))
    >>> copies = train[:5] + rng.normal(scale=0.01, size=(5, 8, 8))
    >>> report = memorization_report(copies, train, holdout)
    >>> report.n_flagged
    5
    """
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    for name, array in (
        ("synthetic", synthetic),
        ("train", train),
        ("holdout", holdout),
    ):
        if len(array) == 0:
            raise ValueError(f"{name} images are empty; the report needs some of each")
    correlation, index = nearest_correlation(synthetic, train)
    holdout_correlation, _ = nearest_correlation(holdout, train)
    synthetic_distance = 1.0 - correlation
    holdout_distance = 1.0 - holdout_correlation
    threshold = float(np.percentile(holdout_distance, percentile))
    report = MemorizationReport(
        synthetic_distance=synthetic_distance,
        nearest_train_index=index,
        holdout_distance=holdout_distance,
        threshold=threshold,
        flagged=synthetic_distance < threshold,
        percentile=percentile,
    )
    if feature_fn is not None:
        train_features = np.asarray(feature_fn(train))
        feature_correlation, _ = nearest_correlation(
            np.asarray(feature_fn(synthetic)), train_features
        )
        feature_holdout, _ = nearest_correlation(
            np.asarray(feature_fn(holdout)), train_features
        )
        report.feature_synthetic_distance = 1.0 - feature_correlation
        report.feature_holdout_distance = 1.0 - feature_holdout
        report.feature_threshold = float(
            np.percentile(report.feature_holdout_distance, percentile)
        )
        report.feature_flagged = (
            report.feature_synthetic_distance < report.feature_threshold
        )
    if figure_path is not None:
        report.figure_path = Path(figure_path)
        _save_pairs_figure(
            report.figure_path,
            np.asarray(synthetic),
            np.asarray(train),
            report,
            n_pairs,
        )
    return report
