"""Every file format in one table: how a file is recognised, read and told apart
from ganaug's own synthetic output, and the one switch over the output formats.

:data:`FILE_KINDS` is the only place that maps a file to a format: the folder reader,
a single file given to :func:`~ganaug.io.load_images`, :func:`is_synthetic` and
:func:`find_real_image` all go through :func:`classify_file` and the table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dicom import (
    DICOM_SUFFIXES,
    has_dicom_preamble,
    is_synthetic_dicom,
    read_dicom_pixels,
    write_dicom,
)
from .nifti import NIFTI_SUFFIXES, is_synthetic_nifti, read_nifti, write_nifti
from .npz import NPZ_SUFFIXES, is_synthetic_npz, write_npz
from .outputs import safe_name, screen_output_labels
from .pictures import (
    PICTURE_SUFFIXES,
    is_synthetic_picture,
    read_picture,
    write_png,
)

__all__ = [
    "FILE_KINDS",
    "FORMATS",
    "FileKind",
    "ReadOptions",
    "classify_file",
    "find_real_image",
    "is_synthetic",
    "write_images",
]


@dataclass(frozen=True)
class ReadOptions:
    """How the image files of one read are decoded.

    Attributes
    ----------
    window : None, "dicom" or (center, width)
        DICOM VOI window, see :func:`~ganaug.io.read_dicom`.
    axis : int
        Axis along which NIfTI volumes are cut into 2-D slices.
    """

    window: str | tuple[float, float] | None = None
    axis: int = 2


@dataclass(frozen=True)
class FileKind:
    """One kind of input file.

    Attributes
    ----------
    name : str
        "dicom", "nifti", "picture", "npz" or "dicomdir".
    suffixes : tuple of str
        Lower-case endings of the file's name.
    read : callable or None
        ``read(path, options) -> (n, C, H, W) float32`` for a file that holds images
        and nothing else, read one by one in a folder; None for a file that holds a
        data set (an ``.npz`` with its labels, a DICOMDIR), read only when named.
        DICOM headers are read and checked first by the folder reader, which needs
        them for the slice order and the identifiers.
    is_synthetic : callable or None
        ``is_synthetic(path) -> bool``: whether the file carries the synthetic mark
        of ganaug's writer of the format.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path, ReadOptions], np.ndarray] | None = None
    is_synthetic: Callable[[Path], bool] | None = None


FILE_KINDS: dict[str, FileKind] = {
    kind.name: kind
    for kind in (
        FileKind(
            "dicom",
            DICOM_SUFFIXES,
            lambda path, options: read_dicom_pixels(path, options.window),
            is_synthetic_dicom,
        ),
        FileKind(
            "nifti",
            NIFTI_SUFFIXES,
            lambda path, options: read_nifti(path, axis=options.axis),
            is_synthetic_nifti,
        ),
        FileKind(
            "picture",
            PICTURE_SUFFIXES,
            lambda path, options: read_picture(path),
            is_synthetic_picture,
        ),
        FileKind("npz", NPZ_SUFFIXES, None, is_synthetic_npz),
        FileKind("dicomdir", ()),
    )
}


def classify_file(path: Path) -> str | None:
    """The kind of an image file (a key of :data:`FILE_KINDS`), or None.

    By name: ``DICOMDIR``, then the suffixes of the table.  Any other file is DICOM
    when it has the DICOM preamble: PACS exports name files by their UID
    (``1.2.840.113619.2.55.3``, whose "suffix" is ``.3``) or without a suffix.

    Examples
    --------
    >>> [classify_file(Path(name)) for name in ("a.PNG", "v.nii.gz", "notes.txt")]
    ['picture', 'nifti', None]
    """
    name = path.name.lower()
    if name == "dicomdir":
        return "dicomdir"
    for kind in FILE_KINDS.values():
        if kind.suffixes and name.endswith(kind.suffixes):
            return kind.name
    if has_dicom_preamble(path):
        return "dicom"
    return None


def is_synthetic(path: str | os.PathLike) -> bool:
    """Whether an image file carries the synthetic mark of ganaug's writers.

    DICOM: Synthetic Data (0008,001C) = YES; PNG: the ``Software: gankit ganaug``
    text chunk; NIfTI: a description beginning with SYNTHETIC; NPZ: a true
    ``synthetic`` array. A JPEG, or a file that cannot be read, is not synthetic.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> [path] = write_png(np.zeros((1, 4, 4), "uint8"), folder)
    >>> is_synthetic(path)
    True
    """
    path = Path(path)
    kind = classify_file(path)
    check = FILE_KINDS[kind].is_synthetic if kind is not None else None
    if check is None:
        return False
    try:
        return check(path)
    except Exception:  # a file that cannot be read was not written by ganaug
        return False


def find_real_image(
    folder: str | os.PathLike, *, recursive: bool = True
) -> Path | None:
    """The first image file in ``folder`` that is not synthetic
    (:func:`is_synthetic`), or None: where synthetic images must not be written.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_png(np.zeros((2, 4, 4), "uint8"), folder)
    >>> find_real_image(folder) is None
    True
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        if path.is_file() and classify_file(path) is not None:
            if not is_synthetic(path):
                return path
    return None


#: The formats :func:`write_images` writes.
FORMATS = ("png", "npz", "nifti", "dicom")


def write_images(
    images: np.ndarray,
    out: str | os.PathLike,
    *,
    fmt: str,
    labels: Sequence | None = None,
    value_range: tuple[float, float] | None = None,
    model_description: str = "unnamed model",
    burned_in_annotation: str | None = None,
    translated: bool = False,
) -> list[Path]:
    """Write synthetic images in one of ``png``, ``npz``, ``nifti``, ``dicom``.

    ``out`` is a folder for png/dicom (class sub-folders when labels are
    given) and for nifti (one volume per class); for npz it is the file
    when it ends in ``.npz``, else the folder of ``synthetic.npz``.
    Labels that look identifying are refused
    (:class:`ganaug.privacy.IdentifyingLabelError`) before anything is written;
    ``burned_in_annotation`` goes to the DICOM writer; ``translated``: the images
    were translated from real ones (:class:`ganaug.GANTranslator`), which every
    format's description says.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> [p.name for p in write_images(np.zeros((2, 1, 4, 4)), out, fmt="npz")]
    ['synthetic.npz']
    """
    out = Path(out)
    labels = screen_output_labels(labels)
    how = "translated from real images" if translated else "generated"
    description = f"synthetic images {how} by gankit ganaug from {model_description}"
    if fmt == "png":
        return write_png(
            images, out, labels=labels, value_range=value_range, description=description
        )
    if fmt == "dicom":
        return write_dicom(
            images,
            out,
            labels=labels,
            value_range=value_range,
            model_description=model_description,
            burned_in_annotation=burned_in_annotation,
            translated=translated,
        )
    if fmt == "npz":
        path = out if out.suffix == ".npz" else out / "synthetic.npz"
        return [write_npz(images, path, labels=labels, description=description)]
    if fmt == "nifti":
        if out.name.endswith(NIFTI_SUFFIXES):
            return [write_nifti(images, out)]
        if labels is None:
            return [write_nifti(images, out / "synthetic.nii.gz")]
        labels = np.asarray(labels)
        return [
            write_nifti(
                images[labels == label], out / f"synthetic_{safe_name(label)}.nii.gz"
            )
            for label in np.unique(labels)
        ]
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
