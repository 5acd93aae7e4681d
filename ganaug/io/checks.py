"""What every reader refuses before it hands images on, and the error it raises.

A file that declares more pixel values than :data:`PIXEL_BUDGET` is refused before
anything is decoded (:func:`check_pixel_budget`), and pixel values that are NaN or
infinite after decoding (:func:`check_finite`). Both raise :class:`ImageReadError`,
which the folder reader turns into a warning that skips the file.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PIXEL_BUDGET",
    "ImageReadError",
    "check_finite",
    "check_pixel_budget",
    "over_budget_error",
]

#: The most pixel values (rows x columns x frames x samples per pixel) that ganaug
#: decodes from one file; a file that declares more is skipped with a warning (an
#: error under ``strict``) before anything is decoded. Each value becomes a 4-byte
#: float, so this bounds one file at 512 MiB in memory. It holds the largest
#: radiographs (a 4096 x 4096 mammogram is 16.8 M), RGB photographs up to 6600 x
#: 6600 and CT or MR volumes of 512 x 512 x 512 in one multi-frame file, while a
#: decompression bomb (a 500 KB deflated DICOM declaring 16000 x 16000 pixels:
#: 256 M values, 1 GiB as float32) is refused. Larger scans are better split or
#: down-sampled before training a GAN at 64-256 pixels; in Python
#: ``ganaug.io.PIXEL_BUDGET`` can be raised.
PIXEL_BUDGET = 512 * 512 * 512


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and why."""


def check_pixel_budget(source, described: str, n_values: int) -> None:
    """Refuse a file that declares more than :data:`PIXEL_BUDGET` pixel values.

    Every reader calls this with the size from the file's header, before decoding.

    Parameters
    ----------
    source : path-like or str
        The file, as the message names it.
    described : str
        The declared size in words ("512 x 512 pixels x 300 frames").
    n_values : int
        The number of pixel values that size means.

    Raises
    ------
    ImageReadError
        When ``n_values`` is over the budget.

    Examples
    --------
    >>> check_pixel_budget("small.png", "8 x 8 pixels", 64)
    """
    if n_values > PIXEL_BUDGET:
        raise over_budget_error(source, f"{described} = {n_values:,} values")


def over_budget_error(source, declared: str) -> ImageReadError:
    """The error for a file that declares more than :data:`PIXEL_BUDGET` values.

    For a reader whose library refuses the file before its size can be checked
    (PIL's own decompression-bomb limit), so that the message is the same.

    Examples
    --------
    >>> "pixel values" in str(over_budget_error("x.png", "too many pixels"))
    True
    """
    return ImageReadError(
        f"{source}: declares {declared}, more than the {PIXEL_BUDGET:,} pixel values "
        "ganaug decodes from one file (a decompression bomb, or a scan to split or "
        "down-sample first)"
    )


def check_finite(values: np.ndarray, source) -> None:
    """Refuse pixel values that are NaN or infinite (a GAN cannot train on them).

    Raises
    ------
    ImageReadError
        Naming ``source`` and how many values are not finite.

    Examples
    --------
    >>> check_finite(np.zeros(4), "ok.npz")
    """
    if not np.isfinite(values).all():
        n_bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise ImageReadError(
            f"{source}: {n_bad:,} of {values.size:,} pixel values are NaN or "
            "infinite; ganaug trains only on finite values"
        )
