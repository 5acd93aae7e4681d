"""NIfTI volumes: read as 2-D slices (MONAI ``LoadImage``), written with nibabel and
marked synthetic in their description."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np

from gancore.files import atomic_write

from .checks import ImageReadError, check_finite, check_pixel_budget
from .outputs import as_nchw

__all__ = ["NIFTI_SUFFIXES", "is_synthetic_nifti", "read_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")

# How the description of a volume written by ganaug begins.
_MARK = "SYNTHETIC"


def read_nifti(path: str | os.PathLike, *, axis: int = 2) -> np.ndarray:
    """Read a NIfTI volume with MONAI ``LoadImage`` as 2-D slices.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file (3-D, or 4-D with channels last).
    axis : int, default=2
        Spatial axis to slice along (0, 1 or 2).

    Returns
    -------
    ndarray of shape (n_slices, C, H, W), float32

    Examples
    --------
    >>> import numpy as np, nibabel as nib, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.nii.gz")
    >>> nib.save(nib.Nifti1Image(np.zeros((8, 6, 5), "float32"), np.eye(4)), path)
    >>> read_nifti(path, axis=2).shape
    (5, 1, 8, 6)
    """
    import nibabel as nib
    from monai.transforms import LoadImage

    path = Path(path)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    try:
        # nibabel reads the header only; the voxels wait for the budget check.
        shape = tuple(int(n) for n in nib.load(path).header.get_data_shape())
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable NIfTI file ({err})") from err
    check_pixel_budget(path, f"a volume of shape {shape}", math.prod(shape))
    try:
        volume = LoadImage(
            image_only=True, reader="NibabelReader", ensure_channel_first=True
        )(str(path))
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable NIfTI file ({err})") from err
    volume = np.asarray(volume, dtype=np.float32)  # (C, X, Y, Z)
    check_finite(volume, path)
    if volume.ndim == 3:  # a 2-D image: one slice
        return volume[None]
    if volume.ndim != 4:
        raise ImageReadError(
            f"{path}: expected a 2-D or 3-D volume, got shape {volume.shape}"
        )
    slices = np.moveaxis(volume, axis + 1, 0)  # (n, C, H, W)
    return np.ascontiguousarray(slices)


def write_nifti(
    images: np.ndarray,
    path: str | os.PathLike,
    *,
    description: str = f"{_MARK} gankit ganaug",
) -> Path:
    """Write images as one NIfTI volume ``(H, W, n)`` (channels last if C > 1).

    Examples
    --------
    >>> import tempfile, os, nibabel as nib
    >>> path = os.path.join(tempfile.mkdtemp(), "s.nii.gz")
    >>> path = write_nifti(np.zeros((3, 1, 4, 5)), path)
    >>> nib.load(path).shape
    (4, 5, 3)
    """
    import nibabel as nib

    images = as_nchw(images)
    volume = np.moveaxis(images, 0, -1)  # (C, H, W, n)
    volume = volume[0] if volume.shape[0] == 1 else np.moveaxis(volume, 0, -1)
    dtype = np.float32 if images.dtype.kind == "f" else images.dtype
    nifti = nib.Nifti1Image(np.ascontiguousarray(volume, dtype=dtype), np.eye(4))
    nifti.header["descrip"] = description[:79].encode("ascii", "replace")
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        path = path.with_name(path.name + ".nii.gz")
    # Bytes, not nib.save: nibabel picks the format from the name, and the
    # temporary file's name is not the target's.
    data = nifti.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with atomic_write(path) as temp:
        temp.write_bytes(data)
    return path


def is_synthetic_nifti(path: Path) -> bool:
    """Whether a volume's description begins with SYNTHETIC, as
    :func:`write_nifti` writes it.

    Examples
    --------
    >>> import tempfile, os
    >>> path = write_nifti(np.zeros((1, 4, 4)), os.path.join(tempfile.mkdtemp(), "s"))
    >>> is_synthetic_nifti(path)
    True
    """
    import nibabel as nib

    description = bytes(nib.load(path).header["descrip"])
    return description.upper().startswith(_MARK.encode())
