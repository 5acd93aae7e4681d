"""What every writer of synthetic images shares: the labels it may use, the images'
layout, 8-bit values and file names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..privacy import check_labels

__all__ = [
    "as_nchw",
    "file_names",
    "safe_name",
    "screen_output_labels",
    "to_uint8",
]


def screen_output_labels(labels: Sequence | None) -> Sequence | None:
    """Labels about to name files and folders or fill tags and arrays: refused when
    one looks identifying (the same test as when they were read).

    Raises
    ------
    ganaug.privacy.IdentifyingLabelError
        When a label looks like a patient's name, ID or date.

    Examples
    --------
    >>> screen_output_labels(["normal", "pneumonia"])
    ['normal', 'pneumonia']
    """
    if labels is not None:
        check_labels(
            labels,
            origin="label of a synthetic image",
            how="pseudonymise the labels first (ganaug.privacy.pseudonymise_labels, "
            "or refit with ganaug fit --pseudonymise-labels MAPPING.csv)",
        )
    return labels


def as_nchw(images: np.ndarray) -> np.ndarray:
    """Images as ``(n, C, H, W)`` with one (grey) or three (RGB) channels.

    Examples
    --------
    >>> as_nchw(np.zeros((2, 4, 5))).shape
    (2, 1, 4, 5)
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(
            f"expected images of shape (n, H, W) or (n, C, H, W), got {images.shape}"
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected 1 (grey) or 3 (RGB) channels, got {images.shape[1]} "
            f"in images of shape {images.shape}"
        )
    return images


def to_uint8(images: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Map values linearly from ``value_range`` (default: their min and max) to
    0-255; uint8 images are returned as they are.

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.5, 1.0]), (0.0, 1.0)).tolist()
    [0, 128, 255]
    """
    if images.dtype == np.uint8:
        return images
    low, high = value_range if value_range is not None else (images.min(), images.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.rint((images.astype(np.float64) - low) * scale), 0, 255).astype(
        np.uint8
    )


def safe_name(label) -> str:
    """A label as it may name a file or folder: letters, digits, ``-`` and ``_``.

    Examples
    --------
    >>> safe_name("left lung/upper")
    'left_lung_upper'
    """
    text = str(label)
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text) or "class"


def file_names(n: int, labels, prefix: str, suffix: str) -> list[str]:
    """Names of ``n`` output files: ``PREFIX[_LABEL]_00000SUFFIX``.

    Examples
    --------
    >>> file_names(2, ["a", "b"], "synthetic", ".png")
    ['synthetic_a_00000.png', 'synthetic_b_00001.png']
    """
    width = max(5, len(str(n)))
    if labels is None:
        return [f"{prefix}_{i:0{width}d}{suffix}" for i in range(n)]
    return [
        f"{prefix}_{safe_name(lab)}_{i:0{width}d}{suffix}"
        for i, lab in enumerate(labels)
    ]
