"""Reading many files into one array: a folder, a DICOMDIR, or one file by the same
road, with the reading order, the labels and the files that are skipped.

Every DICOM header is read first, before any pixel: for the slice order, for the
identifiers that labels are screened against, and to skip what is not an image or
is too large. Then each file is read through :data:`~ganaug.io.formats.FILE_KINDS`;
one that cannot be read is skipped with a warning naming it (raised under
``strict``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..privacy import IdentifierSet, check_labels
from .checks import ImageReadError
from .dicom import (
    check_dicom_header,
    dicomdir_files,
    read_dicom_header,
    slice_order_key,
)
from .formats import FILE_KINDS, ReadOptions, classify_file
from .labels import labels_by_file, screened_labels
from .npz import read_npz
from .transforms import resize_images, scale_intensity

__all__ = ["LoadedImages", "load_images", "read_dicomdir"]


@dataclass
class LoadedImages:
    """Images read from files, with their labels and where each came from.

    Attributes
    ----------
    images : ndarray of shape (n, C, H, W), float32
        Pixel values in the files' own units.
    labels : ndarray of shape (n,) or None
        Class labels (strings) when known.
    sources : list of str
        The file (and frame or slice) each image came from.

    identifiers : ganaug.privacy.IdentifierSet
        The identifying values (names, IDs, dates, places) of the files' headers,
        to screen any other text taken from the inputs (file names, say) before it
        goes into an output.
    label_mapping : dict or None
        Pseudonym -> original label, when the labels were pseudonymised.
    burned_in_annotation : {"YES", "NO"} or None
        What the DICOM headers of the read images say about text burned into the
        pixels: "NO" only if every image came from a header saying NO, "YES" if any
        said YES, None when unknown (a PNG, a NIfTI, a header without the
        attribute).
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    identifiers: IdentifierSet = field(default_factory=IdentifierSet)
    label_mapping: dict[str, str] | None = None
    burned_in_annotation: str | None = None


def load_images(
    source: str | os.PathLike,
    *,
    labels: str | os.PathLike | dict[str, str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    window: str | tuple[float, float] | None = None,
    axis: int = 2,
    normalize: str | None = None,
    strict: bool = False,
    pseudonymise_labels: bool = False,
) -> LoadedImages:
    """Read a folder, file, DICOMDIR or .npz into one array of images.

    Parameters
    ----------
    source : path-like
        A folder (searched recursively for DICOM, NIfTI, PNG and JPEG files), a
        single image file, a DICOMDIR, or an ``.npz`` with ``images`` (or ``X``,
        ``train_images``) and optional ``labels`` (or ``y``, ``train_labels``).
    labels : path-like or dict, optional
        A CSV of ``file,label`` rows (paths relative to the CSV's folder or to
        ``source``) or a dict. Without it, a folder whose images sit in
        sub-folders takes each sub-folder's name as the label.
    image_size : int or (H, W), optional
        Resize every image (MONAI ``Resize``, area interpolation). Required
        when the images differ in size.
    window : None, "dicom" or (center, width), default=None
        DICOM VOI window, see :func:`~ganaug.io.read_dicom`.
    axis : int, default=2
        Axis along which NIfTI volumes are cut into 2-D slices.
    normalize : None or "minmax", default=None
        ``"minmax"`` scales each image to [0, 1] (MONAI ``ScaleIntensity``);
        ``None`` keeps the files' units (e.g. Hounsfield units).
    strict : bool, default=False
        Raise on the first file that cannot be used (unreadable, not an image, over
        :data:`~ganaug.io.PIXEL_BUDGET`, NaN or infinite values); otherwise it is
        skipped with a warning that names it.
    pseudonymise_labels : bool, default=False
        Labels become folder and file names, DICOM tags and the model's
        configuration, so a label that looks identifying (it contains a name, ID
        or date of the files' own headers, or has the shape of one; see
        :func:`ganaug.privacy.identifying_reason`) is refused. With True every
        label is replaced by ``class_0, class_1, ...`` (in sorted order) and
        ``label_mapping`` holds the way back: keep it apart from the outputs.

    Returns
    -------
    LoadedImages

    Raises
    ------
    ValueError
        Empty folder, mixed sizes without ``image_size``, a label CSV that
        names missing files, or images without a label.
    ganaug.privacy.IdentifyingLabelError
        A label looks identifying (and ``pseudonymise_labels`` is False).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> loaded = load_images(get_testdata_file("CT_small.dcm"), image_size=32)
    >>> loaded.images.shape
    (1, 1, 32, 32)
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    kind = classify_file(source) if source.is_file() else "folder"
    if kind == "npz":
        return _load_npz(source, labels, image_size, normalize, pseudonymise_labels)
    if kind == "dicomdir":
        files = [(path, "dicom") for path in dicomdir_files(source)]
        root = source.parent
    elif kind == "folder":
        files = _image_files(source)
        root = source
    elif kind is None:
        raise ValueError(
            f"{source}: unsupported file; expected a folder, DICOM, NIfTI, PNG, JPEG, "
            "DICOMDIR or .npz"
        )
    else:
        files = [(source, kind)]
        root = source.parent
    if not files:
        raise ValueError(
            f"{source}: no images found; expected DICOM, NIfTI, PNG or JPEG files"
        )

    identifiers = IdentifierSet()
    facts = _read_headers(files, identifiers)
    if kind == "folder":
        files = sorted(files, key=lambda item: _folder_order(item, facts))
    label_map = labels_by_file(labels, root, source, [path for path, _ in files])
    if labels is None:
        origin = f"class label (the name of a sub-folder of {source})"
    else:
        where = "the label mapping" if isinstance(labels, dict) else labels
        origin = f"class label (in {where})"
    if label_map is not None and not pseudonymise_labels:
        # Before any pixel is read: a refusal should not wait for a large folder.
        check_labels(label_map.values(), identifiers, origin=origin)
    if label_map is not None:
        # A file the CSV does not list is not part of the data set.
        files = [(path, file_kind) for path, file_kind in files if path in label_map]
    images, image_labels, sources, burned_in = [], [], [], []
    options = ReadOptions(window=window, axis=axis)
    for path, frames in _read_files(files, facts, options, strict):
        if image_size is not None:
            frames = resize_images(frames, image_size)
        fact = facts.get(path)
        burned_in.append(fact.burned_in_annotation if fact is not None else None)
        images.extend(frames)
        sources.extend(_frame_sources(path, len(frames)))
        if label_map is not None:
            image_labels.extend([label_map[path]] * len(frames))
    if not images:
        raise ValueError(f"{source}: no readable images found")
    stacked = _stack_same_size(images, sources)
    final_labels, mapping = screened_labels(
        np.asarray(image_labels) if label_map is not None else None,
        identifiers,
        origin,
        pseudonymise_labels,
    )
    result = LoadedImages(
        stacked,
        final_labels,
        sources,
        identifiers=identifiers,
        label_mapping=mapping,
        burned_in_annotation=_burned_in_annotation(burned_in),
    )
    return _finish(result, None, normalize)


def read_dicomdir(
    path: str | os.PathLike,
    *,
    window: str | tuple[float, float] | None = None,
    strict: bool = False,
) -> LoadedImages:
    """Read every image instance that a DICOMDIR references, each series sorted.

    Unlike :func:`load_images` on a DICOMDIR (which keeps the DICOMDIR's order),
    images are ordered by Series Instance UID and, within a series, by position
    along the slice normal, else by Instance Number.

    Parameters
    ----------
    path : path-like
        The DICOMDIR file.
    window : None, "dicom" or (center, width), default=None
        VOI window, see :func:`~ganaug.io.read_dicom`.
    strict : bool, default=False
        Raise on an unreadable referenced file instead of warning.

    Returns
    -------
    LoadedImages
        Images must share one size; use :func:`load_images` with
        ``image_size`` to resize mixed sizes.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> read_dicomdir(get_testdata_file("DICOMDIR")).images.shape
    (31, 1, 16, 16)
    """
    files = [(file_path, "dicom") for file_path in dicomdir_files(Path(path))]
    identifiers = IdentifierSet()
    facts = _read_headers(files, identifiers)
    files = sorted(files, key=lambda item: _series_order(item, facts))
    images, sources, burned_in = [], [], []
    options = ReadOptions(window=window)
    for file_path, frames in _read_files(files, facts, options, strict):
        burned_in.append(facts[file_path].burned_in_annotation)
        images.extend(frames)
        sources.extend(_frame_sources(file_path, len(frames)))
    return LoadedImages(
        _stack_same_size(images, sources),
        None,
        sources,
        identifiers=identifiers,
        burned_in_annotation=_burned_in_annotation(burned_in),
    )


# ------------------------------------------------------------ which files


def _image_files(folder: Path) -> list[tuple[Path, str]]:
    """The image files under ``folder`` with their kind, by name; hidden files and
    files that hold a data set (an ``.npz``, a DICOMDIR) are left out."""
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        kind = classify_file(path)
        if kind is not None and FILE_KINDS[kind].read is not None:
            files.append((path, kind))
    return files


class _HeaderFacts(NamedTuple):
    """What a read keeps of a DICOM header: a few bytes, where the parsed header
    holds every element (for a large folder, headers kept whole would add up)."""

    series: str
    position: tuple
    burned_in_annotation: str | None
    problem: ImageReadError | None  # unreadable, not an image, over the budget


def _read_headers(
    files: list[tuple[Path, str]], identifiers: IdentifierSet
) -> dict[Path, _HeaderFacts]:
    """Read each DICOM file's header once, before any pixel: for the slice order,
    the identifiers (added to ``identifiers``) and the checks."""
    facts = {}
    for path, kind in files:
        if kind != "dicom":
            continue
        try:
            header = read_dicom_header(path)
        except ImageReadError as err:
            facts[path] = _HeaderFacts("", (3, 0.0), None, err)
            continue
        identifiers.add_dicom(header, str(path))
        try:
            check_dicom_header(header, path)
            problem = None
        except ImageReadError as err:
            problem = err
        try:
            position = slice_order_key(header)
        except (TypeError, ValueError):  # a damaged position: by name
            position = (3, 0.0)
        facts[path] = _HeaderFacts(
            str(header.get("SeriesInstanceUID", "")),
            position,
            header.get("BurnedInAnnotation"),
            problem,
        )
    return facts


def _folder_order(item: tuple[Path, str], facts: dict[Path, _HeaderFacts]) -> tuple:
    """Files by folder; DICOM slices of one series by position / Instance Number."""
    path, _ = item
    fact = facts.get(path)
    if fact is None or fact.problem is not None:
        return (str(path.parent), "", (3, 0.0), path.name)
    return (str(path.parent), fact.series, fact.position, path.name)


def _series_order(item: tuple[Path, str], facts: dict[Path, _HeaderFacts]) -> tuple:
    """DICOM files by series, then position / Instance Number, wherever they are."""
    path, _ = item
    fact = facts[path]
    if fact.problem is not None:
        return ("", (3, 0.0), str(path))
    return (fact.series, fact.position, str(path))


# ----------------------------------------------------------------- reading


def _read_files(
    files: Iterable[tuple[Path, str]],
    facts: dict[Path, _HeaderFacts],
    options: ReadOptions,
    strict: bool,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Each file with its frames ``(n, C, H, W)``, in the order given.

    A file that cannot be read is skipped with a warning naming it, or raised under
    ``strict``: one bad file must not stop a folder. When no file can be read, the
    first error is raised (the first "no decoder" one before any other), so that the
    user learns why, and which package to install.
    """
    first_error = None
    read_any = False
    for path, kind in files:
        fact = facts.get(path)
        try:
            if fact is not None and fact.problem is not None:
                raise fact.problem
            frames = FILE_KINDS[kind].read(path, options)
        except ImageReadError as err:
            if strict:
                raise
            if first_error is None or (
                "decoder" in str(err) and "decoder" not in str(first_error)
            ):
                first_error = err
            # stacklevel 3: the warning points at the code that called the reader
            # (this generator <- load_images or read_dicomdir <- their caller).
            warnings.warn(f"skipping {err}", UserWarning, stacklevel=3)
            continue
        read_any = read_any or len(frames) > 0
        yield path, frames
    if not read_any and first_error is not None:
        raise first_error


def _frame_sources(path: Path, n_frames: int) -> list[str]:
    """Where each frame of a file came from: the file, or ``file[index]``."""
    if n_frames == 1:
        return [str(path)]
    return [f"{path}[{index}]" for index in range(n_frames)]


def _burned_in_annotation(values: Iterable[str | None]) -> str | None:
    """What the images' Burned In Annotation values add up to: YES if any says YES,
    NO only if all say NO, None (unknown) otherwise."""
    values = [str(v).strip().upper() if v is not None else None for v in values]
    if "YES" in values:
        return "YES"
    return "NO" if values and all(v == "NO" for v in values) else None


def _stack_same_size(
    images: Sequence[np.ndarray], sources: Sequence[str]
) -> np.ndarray:
    if not images:
        return np.zeros((0, 1, 1, 1), dtype=np.float32)
    first = images[0].shape
    for image, source in zip(images, sources, strict=True):
        if image.shape != first:
            raise ValueError(
                f"images have different sizes: {sources[0]} is {first[1:]} "
                f"(C={first[0]}) but {source} is {image.shape[1:]} "
                f"(C={image.shape[0]}); "
                "pass image_size (CLI: --image-size) to resize them to one size"
            )
    return np.stack(images).astype(np.float32, copy=False)


def _load_npz(
    source: Path, labels, image_size, normalize: str | None, pseudonymise: bool
) -> LoadedImages:
    """An ``.npz`` data set: its images, and its labels screened."""
    if labels is not None:
        raise ValueError(f"{source}: an .npz carries its own labels; drop --labels")
    images, npz_labels = read_npz(source)
    npz_labels, mapping = screened_labels(
        npz_labels,
        IdentifierSet(),
        f"class label (in {source})",
        pseudonymise,
    )
    result = LoadedImages(
        images,
        npz_labels,
        [f"{source}[{i}]" for i in range(len(images))],
        label_mapping=mapping,
    )
    return _finish(result, image_size, normalize)


def _finish(result: LoadedImages, image_size, normalize: str | None) -> LoadedImages:
    images = result.images
    if image_size is not None:
        images = resize_images(images, image_size)
    if normalize is not None:
        images = scale_intensity(images, normalize)
    result.images = images
    return result
