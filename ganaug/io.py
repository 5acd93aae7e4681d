"""Medical images in and out: DICOM, NIfTI, PNG/JPEG and NPZ.

Readers return channel-first float32 arrays ``(n, C, H, W)`` in the images' own
intensity units (Hounsfield units for CT after the modality LUT, 0-255 for 8-bit
PNG), so that :class:`ganaug.GANAugmenter` can give synthetic images back in the
same units. Every reader checks a file's declared size against
:data:`PIXEL_BUDGET` before decoding it, reads only DICOM objects that are images
(not segmentations, structure sets, reports, ...) and refuses NaN or infinite
values. Writers mark every file they write as synthetic; the DICOM writer
produces a Secondary Capture object that carries no identifier or date from any
input file, and class labels are screened for identifiers
(:func:`ganaug.privacy.check_labels`) before they name a file or fill a tag.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> from ganaug.io import write_images, load_images
>>> images = np.random.default_rng(0).integers(0, 255, (4, 1, 16, 16)).astype("uint8")
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> paths = write_images(images, out, fmt="png", labels=["a", "a", "b", "b"])
>>> loaded = load_images(out)
>>> loaded.images.shape, sorted(set(loaded.labels.tolist()))
((4, 1, 16, 16), ['a', 'b'])
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import math
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gancore.files import atomic_write

from .privacy import IdentifierSet, check_labels, pseudonymise_labels

__all__ = [
    "PIXEL_BUDGET",
    "ImageReadError",
    "LoadedImages",
    "find_real_image",
    "is_synthetic",
    "load_images",
    "read_dicom",
    "read_dicom_series",
    "read_dicomdir",
    "read_nifti",
    "read_picture",
    "read_labels_csv",
    "resize_images",
    "scale_intensity",
    "write_images",
    "write_png",
    "write_npz",
    "write_nifti",
    "write_dicom",
]

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

# Transfer syntaxes whose pixel data need an optional decoder, and the
# packages that provide one (pydicom's own plugin requirements).
_DECODER_HINTS = {
    "JPEG-LS": "pip install pylibjpeg pylibjpeg-libjpeg  (or: pip install pyjpegls)",
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg  (or: pip install python-gdcm)",
    "High-Throughput JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "RLE": "pip install pylibjpeg pylibjpeg-rle",
}

# Secondary Capture Image Storage
_SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"

#: The most pixel values (rows x columns x frames x samples per pixel) that ganaug
#: decodes from one file; a file that declares more is skipped with a warning (an
#: error under ``strict``) before anything is decoded. Each value becomes a 4-byte
#: float, so this bounds one file at 512 MiB in memory. It holds the largest
#: radiographs (a 4096 x 4096 mammogram is 16.8 M), RGB photographs up to 6600 x
#: 6600 and CT or MR volumes of 512 x 512 x 512 in one multi-frame file, while a
#: decompression bomb (a 500 KB deflated DICOM declaring 16000 x 16000 pixels is
#: 256 M, and took 4.8 GB to read) is refused. Larger scans are better split or
#: down-sampled before training a GAN at 64-256 pixels; in Python the module
#: attribute can be raised.
PIXEL_BUDGET = 512 * 512 * 512

# How much of a deflated DICOM file is inflated to read its header: far more than
# any header (an enhanced multi-frame header with per-frame groups for thousands of
# frames is a few MiB), far less than a bomb.
_DEFLATED_HEADER_BYTES = 64 * 2**20

# (7FE0,0010) Pixel Data, as it starts an element in little endian.
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"

# SOP classes that hold images although their name does not say "Image Storage".
_OTHER_IMAGE_SOP_CLASSES = frozenset({"Enhanced US Volume Storage"})
# Modalities of objects that are not images of the patient, for files whose SOP
# Class UID is private or missing (DICOM PS3.3 C.7.3.1.1.1).
_NON_IMAGE_MODALITIES = frozenset(
    {
        "SEG",
        "RTSTRUCT",
        "RTPLAN",
        "RTDOSE",
        "RTRECORD",
        "RTSEGANN",
        "SR",
        "PR",
        "KO",
        "REG",
        "FID",
        "RWV",
        "DOC",
        "PLAN",
        "AU",
        "ECG",
        "EPS",
        "HD",
        "RESP",
        "M3D",
    }
)


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and why."""


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


# --------------------------------------------------------------------- DICOM


def _is_dicom_file(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return False
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _decoder_hint(transfer_syntax_name: str) -> str:
    for key in sorted(_DECODER_HINTS, key=len, reverse=True):
        if key.lower() in transfer_syntax_name.lower():
            return _DECODER_HINTS[key]
    return "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def _pixel_transform(ds, frame: int) -> tuple[float, float]:
    """Rescale slope and intercept of one frame (plain or enhanced objects)."""
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0))
    for groups_name in (
        "PerFrameFunctionalGroupsSequence",
        "SharedFunctionalGroupsSequence",
    ):
        groups = ds.get(groups_name)
        if not groups:
            continue
        per_frame = groups_name.startswith("PerFrame")
        if per_frame and frame >= len(groups):
            continue
        item = groups[frame] if per_frame else groups[0]
        transform = item.get("PixelValueTransformationSequence")
        if transform:
            return (
                float(transform[0].get("RescaleSlope", 1.0)),
                float(transform[0].get("RescaleIntercept", 0.0)),
            )
    return 1.0, 0.0


def _multi_value_type() -> type:
    from pydicom.multival import MultiValue

    return MultiValue


def _apply_window(
    frame: np.ndarray, ds, window: str | tuple[float, float] | None
) -> np.ndarray:
    if window is None:
        return frame
    if isinstance(window, str):
        if window != "dicom":
            raise ValueError(
                f"window must be None, 'dicom' or (center, width), got {window!r}"
            )
        if "WindowCenter" in ds and "WindowWidth" in ds:
            # The file's first linear window, applied in modality units (values
            # stay in e.g. Hounsfield units, clipped to the window).
            center, width = ds.WindowCenter, ds.WindowWidth
            center = center[0] if isinstance(center, _multi_value_type()) else center
            width = width[0] if isinstance(width, _multi_value_type()) else width
            window = (float(center), float(width))
        elif "VOILUTSequence" in ds:
            from pydicom.pixels import apply_voi_lut

            return np.asarray(apply_voi_lut(frame, ds, index=0), dtype=np.float32)
        else:
            return frame
    center, width = (float(v) for v in window)
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return np.clip(frame, center - width / 2.0, center + width / 2.0)


# ------------------------------------------------- what a file may cost and hold


def _check_pixel_budget(source, described: str, n_values: int) -> None:
    """Refuse a file that declares more than :data:`PIXEL_BUDGET` pixel values.

    Every reader calls this with the size from the file's header, before decoding.
    """
    if n_values > PIXEL_BUDGET:
        raise _over_budget(source, f"{described} = {n_values:,} values")


def _over_budget(source, declared: str) -> ImageReadError:
    return ImageReadError(
        f"{source}: declares {declared}, more than the {PIXEL_BUDGET:,} pixel values "
        "ganaug decodes from one file (a decompression bomb, or a scan to split or "
        "down-sample first)"
    )


def _check_finite(values: np.ndarray, source) -> None:
    """Refuse pixel values that are NaN or infinite (a GAN cannot train on them)."""
    if not np.isfinite(values).all():
        n_bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise ImageReadError(
            f"{source}: {n_bad:,} of {values.size:,} pixel values are NaN or "
            "infinite; ganaug trains only on finite values"
        )


def _dataset_offset(handle) -> int:
    """Where the dataset starts in a DICOM file: after the preamble, ``DICM`` and
    the file meta group (always explicit VR little endian, PS3.10 7.1)."""
    handle.seek(128)
    if handle.read(4) != b"DICM":
        raise ValueError("no DICM prefix")
    long_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC"}
    long_vrs |= {b"UN", b"UR", b"UT", b"UV"}
    while True:
        start = handle.tell()
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError("the file ends inside its meta information")
        group = struct.unpack("<H", head[:2])[0]
        if group != 0x0002:
            return start
        if head[4:6] in long_vrs:
            length = struct.unpack("<I", handle.read(4))[0]
        else:
            length = struct.unpack("<H", head[6:8])[0]
        handle.seek(length, 1)


def _inflate(handle, inflater, data: bytearray, limit: int) -> bool:
    """Inflate more of a deflated stream into ``data``, up to ``limit`` bytes in all.

    Returns whether the stream ended within the limit.
    """
    while not inflater.eof and len(data) <= limit:
        compressed = inflater.unconsumed_tail or handle.read(1 << 20)
        before = len(data)
        # Never more than the limit at once: what a bomb inflates to stays unmade.
        data += inflater.decompress(compressed, limit + 1 - len(data))
        if not compressed and len(data) == before:
            break  # the file ended, and zlib holds nothing more
    return inflater.eof and len(data) <= limit


def _read_deflated(path: Path, meta, *, pixels: bool, header=None):
    """Read a Deflated Explicit VR Little Endian file without inflating more than
    it declares.

    pydicom inflates the whole file before it reads the first element, pixel data
    included even with ``stop_before_pixels``: a 500 KB file can inflate to
    gigabytes. Here the header is inflated until the pixel data's tag (at most
    ``_DEFLATED_HEADER_BYTES``); with ``pixels`` the rest is inflated only up to
    what ``header`` declares.
    """
    import pydicom

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    data = bytearray()
    with open(path, "rb") as handle:
        handle.seek(_dataset_offset(handle))
        if not pixels:
            limit = 2**16
            while not _inflate(handle, inflater, data, limit):
                if _PIXEL_DATA_TAG in data or limit >= _DEFLATED_HEADER_BYTES:
                    break
                limit *= 4
            dataset = pydicom.dcmread(
                io.BytesIO(data), force=True, stop_before_pixels=True
            )
        else:
            limit = _DEFLATED_HEADER_BYTES + _declared_bytes(header)
            if not _inflate(handle, inflater, data, limit):
                raise ImageReadError(
                    f"{path}: the deflated data inflate to more than the header "
                    f"declares ({limit:,} bytes), or end too early"
                )
            dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    dataset.file_meta = meta
    return dataset


def _declared_bytes(header) -> int:
    """Bytes of pixel data a header declares (0 when it declares no image)."""
    dims = _declared_dims(header)
    bits = int(header.get("BitsAllocated", 16) or 16)
    return math.prod(dims.values()) * max(1, -(-bits // 8)) if dims else 0


def _declared_dims(header) -> dict[str, int]:
    """Rows, columns, frames and samples per pixel that a header declares."""
    if header.get("Rows") is None or header.get("Columns") is None:
        return {}
    return {
        "rows": int(header.Rows),
        "columns": int(header.Columns),
        "frames": int(header.get("NumberOfFrames", 1) or 1),
        "samples": int(header.get("SamplesPerPixel", 1) or 1),
    }


def _deflated_meta(path: Path):
    """The file meta information of a deflated file, or None for any other file
    (pydicom reads those itself without inflating anything)."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # no preamble or meta: dcmread says why, if it must
        return None
    syntax = meta.get("TransferSyntaxUID")
    return meta if syntax == DeflatedExplicitVRLittleEndian else None


def _dicom_header(path: Path):
    """The header of a DICOM file, without its pixel data (never inflated).

    Raises
    ------
    ImageReadError
        When the file is not a readable DICOM file.
    """
    import pydicom

    try:
        meta = _deflated_meta(path)
        if meta is not None:
            return _read_deflated(path, meta, pixels=False)
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # pydicom raises many kinds on damaged files
        raise ImageReadError(f"{path}: not a readable DICOM file ({err})") from err


def _not_an_image(header) -> str | None:
    """What a DICOM object is when it is not an image we can train on, or None.

    A registered SOP class is an image when its name is an image storage class
    ("CT Image Storage", "Enhanced MR Image Storage", "Digital Mammography X-Ray
    Image Storage - For Presentation", ...); every other storage class (Segmentation,
    RT Structure Set, RT Dose and Plan, structured reports, presentation states,
    key object selections, raw data, encapsulated documents, waveforms, parametric
    maps) is not. A private or missing SOP class is judged by its Modality.
    """
    from pydicom.uid import UID

    modality = str(header.get("Modality", "") or "").strip().upper()
    meta = getattr(header, "file_meta", None)
    sop_class = header.get("SOPClassUID") or (
        meta.get("MediaStorageSOPClassUID") if meta is not None else None
    )
    if sop_class:
        uid = UID(str(sop_class))
        if uid.type == "SOP Class":
            name = uid.name
            if "Image Storage" in name or name in _OTHER_IMAGE_SOP_CLASSES:
                return None
            shown = f" (Modality {modality})" if modality else ""
            return f"a {name} object{shown}"
    if modality in _NON_IMAGE_MODALITIES:
        return f"a DICOM object of Modality {modality}"
    return None


def _check_dicom(header, source) -> None:
    """Refuse a DICOM object that is not an image, or too large to decode."""
    what = _not_an_image(header)
    if what is not None:
        raise ImageReadError(f"{source}: {what}, not an image")
    try:
        dims = _declared_dims(header)
    except (TypeError, ValueError) as err:
        raise ImageReadError(f"{source}: unreadable image size ({err})") from err
    if dims:
        described = f"{dims['rows']} x {dims['columns']} pixels"
        if dims["frames"] > 1:
            described += f" x {dims['frames']} frames"
        if dims["samples"] > 1:
            described += f" x {dims['samples']} samples"
        _check_pixel_budget(source, described, math.prod(dims.values()))


def _dicom_dataset(path: Path):
    """The whole dataset of a file whose header passed :func:`_check_dicom`."""
    import pydicom

    try:
        meta = _deflated_meta(path)
        if meta is not None:
            header = _read_deflated(path, meta, pixels=False)
            return _read_deflated(path, meta, pixels=True, header=header)
        return pydicom.dcmread(path)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable DICOM file ({err})") from err


def _dataset_frames(
    ds, source: str, window: str | tuple[float, float] | None
) -> np.ndarray:
    """Pixel data of one dataset as (frames, C, H, W) float32 in modality units."""
    if "PixelData" not in ds:
        raise ImageReadError(f"{source}: DICOM object has no pixel data (not an image)")
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises RuntimeError/NotImplementedError
        syntax_name = getattr(syntax, "name", str(syntax))
        compressed = syntax is not None and getattr(syntax, "is_compressed", False)
        if compressed:
            raise ImageReadError(
                f"{source}: cannot decode pixel data in transfer syntax "
                f"'{syntax_name}': no working decoder is installed. Install one with: "
                f"{_decoder_hint(syntax_name)}  "
                f"(pydicom said: {str(err).splitlines()[0]})"
            ) from err
        raise ImageReadError(f"{source}: cannot read pixel data: {err}") from err
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    pixels = np.asarray(pixels)
    if n_frames == 1:
        pixels = pixels[None]
    if samples == 1:
        pixels = pixels[:, None]  # (frames, 1, H, W)
    else:
        pixels = np.moveaxis(pixels, -1, 1)  # (frames, C, H, W)
    frames = pixels.astype(np.float32)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    for index in range(frames.shape[0]):
        if samples == 1:
            slope, intercept = _pixel_transform(ds, index)
            frames[index] = frames[index] * slope + intercept
            frames[index, 0] = _apply_window(frames[index, 0], ds, window)
            if photometric == "MONOCHROME1":
                # Low values are displayed white: flip so bright means dense,
                # as in MONOCHROME2 images of the same kind.
                frame = frames[index]
                frames[index] = frame.max() + frame.min() - frame
    _check_finite(frames, source)
    return frames


def read_dicom(
    path: str | os.PathLike, *, window: str | tuple[float, float] | None = None
) -> np.ndarray:
    """Read one DICOM file as float32 frames ``(n_frames, C, H, W)``.

    The modality LUT (Rescale Slope/Intercept, also from functional groups of
    enhanced multi-frame objects) is applied, so CT comes out in Hounsfield
    units. MONOCHROME1 images are inverted so that bright means dense.

    Parameters
    ----------
    path : path-like
        A DICOM file.
    window : None, "dicom" or (center, width), default=None
        VOI window: none, the file's own first window/VOI LUT, or an explicit
        window that clips values to ``center +- width / 2``.

    Returns
    -------
    ndarray of shape (n_frames, C, H, W)

    Raises
    ------
    ImageReadError
        When the file is not a readable DICOM image, is another kind of DICOM
        object (a segmentation, a structured report, ...), declares more than
        :data:`PIXEL_BUDGET` pixel values, holds NaN or infinite values, or its
        compressed pixel data has no installed decoder (the message names the
        package to install).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> read_dicom(get_testdata_file("CT_small.dcm")).shape
    (1, 1, 128, 128)
    """
    return _read_dicom_file(Path(path), window)


def _read_dicom_file(path: Path, window, checked: bool = False) -> np.ndarray:
    """Frames of one DICOM file: header, checks, then pixels (``checked`` when the
    caller has read the header and checked it already)."""
    if not checked:
        _check_dicom(_dicom_header(path), path)
    return _dataset_frames(_dicom_dataset(path), str(path), window)


def _series_sort_key(ds) -> tuple:
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    if position is not None and orientation is not None and len(orientation) == 6:
        row = np.asarray(orientation[:3], dtype=float)
        column = np.asarray(orientation[3:], dtype=float)
        normal = np.cross(row, column)
        return (0, float(np.dot(normal, np.asarray(position, dtype=float))))
    number = ds.get("InstanceNumber")
    if number is not None and str(number) != "":
        return (1, float(number))
    return (2, 0.0)


def _read_dicom_datasets(
    paths: Iterable[Path], strict: bool, on_error: Callable[[str], None]
) -> list:
    datasets = []
    for path in paths:
        try:
            _check_dicom(_dicom_header(path), path)
            datasets.append((path, _dicom_dataset(path)))
        except ImageReadError as err:
            if strict:
                raise
            on_error(str(err))
    return datasets


def _skip_unreadable(
    err: ImageReadError, strict: bool, undecodable: ImageReadError | None
) -> ImageReadError | None:
    """Skip a file that cannot be read (warning naming it), or raise under strict.

    One bad file must not stop a folder; the first error is kept (the first "no
    decoder" one before any other) so that, if nothing can be read, the caller
    raises it: the user learns why, and which package to install.
    """
    if strict:
        raise err
    if undecodable is None or (
        "decoder" in str(err) and "decoder" not in str(undecodable)
    ):
        undecodable = err
    # stacklevel 3: the warning points at the code that called the reader.
    warnings.warn(f"skipping {err}", UserWarning, stacklevel=3)
    return undecodable


def _warn_skip(message: str) -> None:
    warnings.warn(f"skipping {message}", UserWarning, stacklevel=3)


def read_dicom_series(
    folder: str | os.PathLike,
    *,
    window: str | tuple[float, float] | None = None,
    strict: bool = False,
) -> LoadedImages:
    """Read the DICOM files of a folder as series, each sorted along its axis.

    Files are grouped by Series Instance UID; within a series they are sorted
    by position along the slice normal (Image Position/Orientation Patient),
    else by Instance Number (numerically).

    Parameters
    ----------
    folder : path-like
        Folder searched recursively for DICOM files (by suffix or by the
        ``DICM`` preamble for files without one).
    window : None, "dicom" or (center, width), default=None
        VOI window, see :func:`read_dicom`.
    strict : bool, default=False
        Raise on an unreadable file instead of skipping it with a warning.

    Returns
    -------
    LoadedImages
        ``images`` of shape (n_slices, C, H, W); ``sources`` name file and frame.

    Examples
    --------
    >>> from pathlib import Path
    >>> from pydicom.data import get_testdata_file
    >>> folder = Path(get_testdata_file("DICOMDIR")).parent / "98892003"
    >>> series = read_dicom_series(folder / "MR700")
    >>> series.images.shape[1:]
    (1, 16, 16)
    """
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and _is_dicom_file(p))
    datasets = _read_dicom_datasets(paths, strict, _warn_skip)
    if not datasets:
        raise ImageReadError(f"{folder}: no DICOM image files found")
    return _stack_datasets(datasets, window, strict)


def _stack_datasets(datasets: list, window, strict: bool) -> LoadedImages:
    datasets = sorted(
        datasets,
        key=lambda item: (
            (str(item[1].get("SeriesInstanceUID", "")),)
            + _series_sort_key(item[1])
            + (str(item[0]),)
        ),
    )
    images, sources = [], []
    undecodable = None
    for path, ds in datasets:
        try:
            frames = _dataset_frames(ds, str(path), window)
        except ImageReadError as err:
            undecodable = _skip_unreadable(err, strict, undecodable)
            continue
        images.extend(frames)
        sources.extend(
            f"{path}" if len(frames) == 1 else f"{path}[frame {i}]"
            for i in range(len(frames))
        )
    if not images and undecodable is not None:
        raise undecodable
    return LoadedImages(_stack_same_size(images, sources), None, sources)


def read_dicomdir(
    path: str | os.PathLike,
    *,
    window: str | tuple[float, float] | None = None,
    strict: bool = False,
) -> LoadedImages:
    """Read every image instance that a DICOMDIR references.

    Parameters
    ----------
    path : path-like
        The DICOMDIR file.
    window : None, "dicom" or (center, width), default=None
        VOI window, see :func:`read_dicom`.
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
    >>> from pydicom.fileset import FileSet
    >>> len(FileSet(get_testdata_file("DICOMDIR")))
    31
    """
    files = _dicomdir_files(Path(path))
    datasets = _read_dicom_datasets(files, strict, _warn_skip)
    return _stack_datasets(datasets, window, strict)


def _dicomdir_files(path: Path) -> list[Path]:
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(path)
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable DICOMDIR ({err})") from err
    return [Path(instance.path) for instance in fileset]


# -------------------------------------------------------------- NIfTI, PNG


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
    _check_pixel_budget(path, f"a volume of shape {shape}", math.prod(shape))
    try:
        volume = LoadImage(
            image_only=True, reader="NibabelReader", ensure_channel_first=True
        )(str(path))
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable NIfTI file ({err})") from err
    volume = np.asarray(volume, dtype=np.float32)  # (C, X, Y, Z)
    _check_finite(volume, path)
    if volume.ndim == 3:  # a 2-D image: one slice
        return volume[None]
    if volume.ndim != 4:
        raise ImageReadError(
            f"{path}: expected a 2-D or 3-D volume, got shape {volume.shape}"
        )
    slices = np.moveaxis(volume, axis + 1, 0)  # (n, C, H, W)
    return np.ascontiguousarray(slices)


def read_picture(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG or JPEG file as ``(1, C, H, W)`` float32 (grey gives C=1).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((5, 7), "uint8")).save(path)
    >>> read_picture(path).shape
    (1, 1, 5, 7)
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            # The size is checked against ganaug's own budget below; PIL's warning
            # for images over its lower threshold would only repeat that.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(path)
    except Image.DecompressionBombError as err:
        # PIL refuses before ganaug sees the size (its message carries it); its
        # limit, 179 M pixels, is above ganaug's budget.
        declared = re.search(r"\((\d+) pixels\)", str(err))
        raise _over_budget(
            path,
            f"{int(declared.group(1)):,} pixels" if declared else "too many pixels",
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable PNG/JPEG file ({err})") from err
    try:
        with picture:
            width, height = picture.size
            bands = len(picture.getbands())
            _check_pixel_budget(
                path,
                f"{width} x {height} pixels x {bands} channels",
                width * height * bands,
            )
            picture.load()
            if picture.mode in ("1", "P", "LA", "PA"):
                picture = picture.convert("RGBA" if "A" in picture.mode else "L")
            if picture.mode == "RGBA":
                picture = picture.convert("RGB")
            pixels = np.asarray(picture)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageReadError):
            raise
        raise ImageReadError(f"{path}: not a readable PNG/JPEG file ({err})") from err
    pixels = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    return pixels.astype(np.float32)[None]


# -------------------------------------------------------------------- labels


def read_labels_csv(path: str | os.PathLike) -> dict[str, str]:
    """Read a CSV of ``file,label`` rows (a header row is optional).

    Recognised header names for the file column: file, filename, path, image;
    for the label column: label, class, target, y. Without a header the first
    two columns are used.

    Returns
    -------
    dict
        File name (as written in the CSV) -> label.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(path, "w").write("file,label\\na.png,normal\\nb.png,pneumonia\\n")
    >>> read_labels_csv(path)
    {'a.png': 'normal', 'b.png': 'pneumonia'}
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [
                row for row in csv.reader(handle) if any(cell.strip() for cell in row)
            ]
    except OSError as err:
        raise ValueError(f"{path}: cannot read the label CSV ({err})") from err
    if not rows:
        raise ValueError(f"{path}: the label CSV is empty; expected rows of file,label")
    header = [cell.strip().lower() for cell in rows[0]]
    file_names = ("file", "filename", "path", "image", "file_name")
    label_names = ("label", "class", "target", "y")
    file_col, label_col = 0, 1
    if any(name in header for name in file_names + label_names):
        file_col = next((header.index(n) for n in file_names if n in header), 0)
        label_col = next((header.index(n) for n in label_names if n in header), 1)
        rows = rows[1:]
    labels = {}
    for line, row in enumerate(rows, start=2):
        if len(row) <= max(file_col, label_col):
            raise ValueError(
                f"{path}: row {line} has {len(row)} columns; expected file,label"
            )
        labels[row[file_col].strip()] = row[label_col].strip()
    return labels


# ------------------------------------------------------------------ folders


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


def _classify_file(path: Path) -> str | None:
    name = path.name.lower()
    if name == "dicomdir":
        return "dicomdir"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(PICTURE_SUFFIXES):
        return "picture"
    if name.endswith(".npz"):
        return "npz"
    if _is_dicom_file(path):
        return "dicom"
    return None


_NPZ_IMAGE_KEYS = ("images", "X", "x", "train_images")
_NPZ_LABEL_KEYS = ("labels", "y", "train_labels")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            image_key = next((k for k in _NPZ_IMAGE_KEYS if k in archive.files), None)
            if image_key is None:
                raise ValueError(
                    f"{path}: expected an array named one of {_NPZ_IMAGE_KEYS}, "
                    f"found {archive.files}"
                )
            images = np.asarray(archive[image_key])
            label_key = next((k for k in _NPZ_LABEL_KEYS if k in archive.files), None)
            labels = np.asarray(archive[label_key]).ravel() if label_key else None
    except (OSError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise ImageReadError(f"{path}: not a readable .npz file ({err})") from err
    if images.ndim == 3:
        images = images[:, None]
    elif (
        images.ndim == 4
        and images.shape[-1] in (1, 3)
        and images.shape[1] not in (1, 3)
    ):
        images = np.moveaxis(images, -1, 1)
    if images.ndim != 4:
        raise ValueError(
            f"{path}: '{image_key}' has shape {images.shape}; expected (n, H, W), "
            "(n, C, H, W) or (n, H, W, C)"
        )
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    images = images.astype(np.float32)
    _check_finite(images, path)
    return images, labels


class _HeaderFacts(NamedTuple):
    """What a folder read keeps of a DICOM header (a parsed header is ~90 KiB;
    these are a few bytes)."""

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
            header = _dicom_header(path)
        except ImageReadError as err:
            facts[path] = _HeaderFacts("", (3, 0.0), None, err)
            continue
        identifiers.add_dicom(header, str(path))
        try:
            _check_dicom(header, path)
            problem = None
        except ImageReadError as err:
            problem = err
        try:
            position = _series_sort_key(header)
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


def _read_one(
    path: Path, kind: str, window, axis: int, facts: _HeaderFacts | None = None
) -> np.ndarray:
    if kind == "dicom":
        if facts is not None and facts.problem is not None:
            raise facts.problem
        return _read_dicom_file(path, window, checked=facts is not None)
    if kind == "nifti":
        return read_nifti(path, axis=axis)
    if kind == "picture":
        return read_picture(path)
    raise ImageReadError(f"{path}: unsupported file type")


def _burned_in_annotation(values: Iterable[str | None]) -> str | None:
    """What the images' Burned In Annotation values add up to: YES if any says YES,
    NO only if all say NO, None (unknown) otherwise."""
    values = [str(v).strip().upper() if v is not None else None for v in values]
    if "YES" in values:
        return "YES"
    return "NO" if values and all(v == "NO" for v in values) else None


def _screened_labels(
    labels: np.ndarray | None,
    identifiers: IdentifierSet,
    origin: str,
    pseudonymise: bool,
) -> tuple[np.ndarray | None, dict[str, str] | None]:
    """The labels as they may leave the reader: refused when one looks identifying,
    or all replaced by ``class_0, class_1, ...`` with ``pseudonymise``."""
    if labels is None:
        return None, None
    if pseudonymise:
        return pseudonymise_labels(labels)
    check_labels(labels, identifiers, origin=origin)
    return labels, None


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
        DICOM VOI window, see :func:`read_dicom`.
    axis : int, default=2
        Axis along which NIfTI volumes are cut into 2-D slices.
    normalize : None or "minmax", default=None
        ``"minmax"`` scales each image to [0, 1] (MONAI ``ScaleIntensity``);
        ``None`` keeps the files' units (e.g. Hounsfield units).
    strict : bool, default=False
        Raise on the first file that cannot be used (unreadable, not an image, over
        :data:`PIXEL_BUDGET`, NaN or infinite values); otherwise it is skipped with
        a warning that names it.
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
    kind = _classify_file(source) if source.is_file() else "folder"
    if kind == "npz":
        if labels is not None:
            raise ValueError(f"{source}: an .npz carries its own labels; drop --labels")
        images, npz_labels = _read_npz(source)
        npz_labels, mapping = _screened_labels(
            npz_labels,
            IdentifierSet(),
            f"class label (in {source})",
            pseudonymise_labels,
        )
        result = LoadedImages(
            images,
            npz_labels,
            [f"{source}[{i}]" for i in range(len(images))],
            label_mapping=mapping,
        )
        return _finish(result, image_size, normalize)
    if kind == "dicomdir":
        files = [(path, "dicom") for path in _dicomdir_files(source)]
        root = source.parent
    elif kind == "folder":
        files = []
        for path in sorted(source.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            file_kind = _classify_file(path)
            if file_kind in ("dicom", "nifti", "picture"):
                files.append((path, file_kind))
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
    label_map = _label_map(labels, root, source, [path for path, _ in files])
    if labels is None:
        origin = f"class label (the name of a sub-folder of {source})"
    else:
        where = "the label mapping" if isinstance(labels, dict) else labels
        origin = f"class label (in {where})"
    if label_map is not None and not pseudonymise_labels:
        # Before any pixel is read: a refusal should not wait for a large folder.
        check_labels(label_map.values(), identifiers, origin=origin)
    images, image_labels, sources, burned_in = [], [], [], []
    undecodable = None
    for path, file_kind in files:
        if label_map is not None and path not in label_map:
            continue  # not listed in the CSV: not part of the data set
        try:
            frames = _read_one(path, file_kind, window, axis, facts.get(path))
        except ImageReadError as err:
            undecodable = _skip_unreadable(err, strict, undecodable)
            continue
        if image_size is not None:
            frames = resize_images(frames, image_size)
        fact = facts.get(path)
        burned_in.append(fact.burned_in_annotation if fact is not None else None)
        for index, frame in enumerate(frames):
            images.append(frame)
            sources.append(str(path) if len(frames) == 1 else f"{path}[{index}]")
            if label_map is not None:
                image_labels.append(label_map[path])
    if not images and undecodable is not None:
        raise undecodable
    if not images:
        raise ValueError(f"{source}: no readable images found")
    stacked = _stack_same_size(images, sources)
    final_labels, mapping = _screened_labels(
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


def _label_map(labels, root: Path, source: Path, paths: list[Path]) -> dict | None:
    if labels is None:
        if source.is_dir():
            parents = {path.relative_to(source).parts[:-1] for path in paths}
            if parents and all(len(parts) >= 1 for parts in parents):
                return {path: path.relative_to(source).parts[0] for path in paths}
        return None
    if isinstance(labels, dict):
        table, base = labels, root
        csv_name = "the label mapping"
    else:
        table, base = read_labels_csv(labels), Path(labels).parent
        csv_name = str(labels)
    resolved, missing = {}, []
    for name, label in table.items():
        candidates = [Path(name), base / name, root / name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(name)
        else:
            resolved[found.resolve()] = label
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{csv_name} names {len(missing)} file(s) that do not exist "
            f"(looked in {base} and {root}): {shown}"
        )
    return {
        path: resolved[path.resolve()] for path in paths if path.resolve() in resolved
    }


def _finish(result: LoadedImages, image_size, normalize: str | None) -> LoadedImages:
    images = result.images
    if image_size is not None:
        images = resize_images(images, image_size)
    if normalize is not None:
        images = scale_intensity(images, normalize)
    result.images = images
    return result


# ------------------------------------------------------------ transforms


def resize_images(images: np.ndarray, image_size: int | tuple[int, int]) -> np.ndarray:
    """Resize ``(n, C, H, W)`` images with MONAI ``Resize`` (area interpolation).

    Examples
    --------
    >>> resize_images(np.ones((2, 1, 8, 8), "float32"), 4).shape
    (2, 1, 4, 4)
    """
    from monai.transforms import Resize

    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if images.shape[-2:] == size:
        return images.astype(np.float32, copy=False)
    resize = Resize(spatial_size=size, mode="area")
    return np.stack([np.asarray(resize(image)) for image in images]).astype(np.float32)


def scale_intensity(images: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Scale each ``(C, H, W)`` image to [0, 1] with MONAI ``ScaleIntensity``.

    Examples
    --------
    >>> scaled = scale_intensity(np.array([[[[0.0, 50.0], [100.0, 200.0]]]]))
    >>> float(scaled.min()), float(scaled.max())
    (0.0, 1.0)
    """
    from monai.transforms import ScaleIntensity

    if method != "minmax":
        raise ValueError(f"normalize must be None or 'minmax', got {method!r}")
    scale = ScaleIntensity(minv=0.0, maxv=1.0)
    return np.stack([np.asarray(scale(image)) for image in images]).astype(np.float32)


# ------------------------------------------------------------------ writers


def _output_labels(labels: Sequence | None) -> Sequence | None:
    """Labels about to name files and folders or fill tags and arrays: refused when
    one looks identifying (the same test as when they were read)."""
    if labels is not None:
        check_labels(
            labels,
            origin="label of a synthetic image",
            how="pseudonymise the labels first (ganaug.privacy.pseudonymise_labels, "
            "or refit with ganaug fit --pseudonymise-labels MAPPING.csv)",
        )
    return labels


def _as_nchw(images: np.ndarray) -> np.ndarray:
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


def _to_uint8(
    images: np.ndarray, value_range: tuple[float, float] | None
) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    low, high = value_range if value_range is not None else (images.min(), images.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.rint((images.astype(np.float64) - low) * scale), 0, 255).astype(
        np.uint8
    )


def _safe_name(label) -> str:
    text = str(label)
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text) or "class"


def _file_names(n: int, labels, prefix: str, suffix: str) -> list[str]:
    width = max(5, len(str(n)))
    if labels is None:
        return [f"{prefix}_{i:0{width}d}{suffix}" for i in range(n)]
    return [
        f"{prefix}_{_safe_name(lab)}_{i:0{width}d}{suffix}"
        for i, lab in enumerate(labels)
    ]


def write_png(
    images: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence | None = None,
    value_range: tuple[float, float] | None = None,
    prefix: str = "synthetic",
    description: str = "synthetic image generated by gankit ganaug",
) -> list[Path]:
    """Write images as 8-bit PNG files, one per image, in class sub-folders.

    Values are mapped linearly from ``value_range`` (default: the images' min
    and max) to 0-255; uint8 input is written as is. Each PNG carries a text
    chunk saying that it is synthetic.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_png(np.zeros((2, 8, 8), "uint8"), tempfile.mkdtemp())
    >>> [p.name for p in paths]
    ['synthetic_00000.png', 'synthetic_00001.png']
    """
    from PIL import Image, PngImagePlugin

    labels = _output_labels(labels)
    images = _to_uint8(_as_nchw(images), value_range)
    out_dir = Path(out_dir)
    names = _file_names(len(images), labels, prefix, ".png")
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", description)
    info.add_text("Software", "gankit ganaug")
    paths = []
    for index, (image, name) in enumerate(zip(images, names, strict=True)):
        folder = out_dir / _safe_name(labels[index]) if labels is not None else out_dir
        path = folder / name
        picture = Image.fromarray(
            image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
        )
        with atomic_write(path) as temp:
            picture.save(temp, format="PNG", pnginfo=info)
        paths.append(path)
    return paths


def write_npz(
    images: np.ndarray,
    path: str | os.PathLike,
    *,
    labels: Sequence | None = None,
    description: str = "synthetic images generated by gankit ganaug",
) -> Path:
    """Write images (and labels) to one compressed ``.npz``.

    Keys: ``images``, ``labels`` (when given), ``synthetic`` (True) and
    ``description``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "s.npz")
    >>> path = write_npz(np.zeros((2, 1, 4, 4)), path)
    >>> sorted(np.load(path).files)
    ['description', 'images', 'synthetic']
    """
    path = Path(path)
    labels = _output_labels(labels)
    arrays = {
        "images": np.asarray(images),
        "synthetic": np.array(True),
        "description": np.array(description),
    }
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    with atomic_write(path) as temp, open(temp, "wb") as handle:
        # A file object: given a name without ".npz", numpy would add one.
        np.savez_compressed(handle, **arrays)
    return path


def write_nifti(
    images: np.ndarray,
    path: str | os.PathLike,
    *,
    description: str = "SYNTHETIC gankit ganaug",
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

    images = _as_nchw(images)
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


def write_dicom(
    images: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence | None = None,
    value_range: tuple[float, float] | None = None,
    model_description: str = "unnamed model",
    prefix: str = "synthetic",
    burned_in_annotation: str | None = None,
) -> list[Path]:
    """Write images as DICOM Secondary Capture objects marked synthetic.

    One new Study and Series (fresh UIDs) hold all images of a call; each image
    gets a fresh SOP Instance UID. Every object has Synthetic Data (0008,001C)
    = YES, Image Type DERIVED\\SECONDARY, Conversion Type SYN, the Burned In
    Annotation of the training images (NO only when every one of them said NO)
    and a Derivation Description naming gankit and the model.
    Patient and study identifiers are fixed placeholders and dates are left
    empty: nothing is copied from any input file.

    Grey images are stored as 16-bit unsigned values with Rescale Slope and
    Intercept that map them back to ``value_range`` (e.g. Hounsfield units);
    uint8 input is stored as 8-bit. RGB images are stored as 8-bit RGB.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, C, H, W)
    out_dir : path-like
    labels : sequence, optional
        Class of each image (written to Image Comments and file names).
    value_range : (low, high), optional
        Range of the pixel values; default the images' min and max.
    model_description : str
        Name of the generating model, written to the Derivation Description.
    prefix : str
        File name prefix.
    burned_in_annotation : {"NO", "YES"} or None
        What the training images' headers said about text burned into their pixels
        (:attr:`LoadedImages.burned_in_annotation`); None when unknown.

    Returns
    -------
    list of Path

    Examples
    --------
    >>> import tempfile, pydicom
    >>> paths = write_dicom(np.zeros((1, 8, 8), "uint8"), tempfile.mkdtemp())
    >>> pydicom.dcmread(paths[0]).SyntheticData
    'YES'
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    import ganaug

    labels = _output_labels(labels)
    images = _as_nchw(images)
    out_dir = Path(out_dir)
    study_uid, series_uid = generate_uid(), generate_uid()
    # A GAN reproduces what its training images show, burned-in names and dates
    # included. NO is written only when every training image's header said NO;
    # otherwise YES, the value that makes a de-identification pipeline look at the
    # pixels (leaving the attribute out would be read as NO by many filters, and a
    # PNG or NIfTI input says nothing either way).
    burned_in = "NO" if str(burned_in_annotation).upper() == "NO" else "YES"
    names = _file_names(len(images), labels, prefix, ".dcm")
    if value_range is None:
        value_range = (float(images.min()), float(images.max()))
    low, high = float(value_range[0]), float(value_range[1])
    eight_bit = images.dtype == np.uint8 or images.shape[1] == 3
    now = datetime.datetime.now(datetime.timezone.utc)
    paths = []
    for index, (image, name) in enumerate(zip(images, names, strict=True)):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _SECONDARY_CAPTURE_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = _SECONDARY_CAPTURE_SOP_CLASS
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SyntheticData = "YES"
        # Patient and study modules: type 2 attributes, filled with obvious
        # placeholders or left empty; never taken from an input file.
        ds.PatientName = "SYNTHETIC^GANKIT"
        ds.PatientID = "SYNTHETIC"
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "SYNTHETIC"
        ds.AccessionNumber = ""
        ds.StudyDescription = "SYNTHETIC images - gankit ganaug - not patient data"
        ds.Modality = "OT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.SeriesDescription = "SYNTHETIC - generated by a GAN"
        ds.Laterality = ""
        ds.ConversionType = "SYN"
        ds.Manufacturer = "gankit"
        ds.SoftwareVersions = f"ganaug {getattr(ganaug, '__version__', '0')}"
        ds.InstanceNumber = index + 1
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S")
        ds.PatientOrientation = ""
        ds.BurnedInAnnotation = burned_in
        ds.DerivationDescription = (
            f"Synthetic image generated by gankit ganaug from model {model_description}"
        )[:1024]
        if labels is not None:
            ds.ImageComments = f"SYNTHETIC; class {labels[index]}"[:10240]
        else:
            ds.ImageComments = "SYNTHETIC"
        ds.Rows, ds.Columns = int(image.shape[1]), int(image.shape[2])
        ds.PixelRepresentation = 0
        if image.shape[0] == 3:
            pixels = np.moveaxis(_to_uint8(image[None], (low, high))[0], 0, -1)
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
        elif eight_bit:
            pixels = _to_uint8(image[None], (low, high))[0, 0]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
        else:
            slope = (high - low) / 65535.0 if high > low else 1.0
            stored = np.rint((image[0].astype(np.float64) - low) / slope)
            pixels = np.clip(stored, 0, 65535).astype(np.uint16)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.RescaleIntercept = f"{low:.6g}"[:16]
            ds.RescaleSlope = f"{slope:.8g}"[:16]
            ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        folder = out_dir / _safe_name(labels[index]) if labels is not None else out_dir
        path = folder / name
        with atomic_write(path) as temp:
            ds.save_as(temp, enforce_file_format=True)
        paths.append(path)
    return paths


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
    kind = _classify_file(path)
    try:
        if kind == "dicom":
            return str(_dicom_header(path).get("SyntheticData", "")).upper() == "YES"
        if kind == "picture":
            from PIL import Image

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as picture:
                    return picture.info.get("Software") == "gankit ganaug"
        if kind == "nifti":
            import nibabel as nib

            description = bytes(nib.load(path).header["descrip"])
            return description.upper().startswith(b"SYNTHETIC")
        if kind == "npz":
            with np.load(path, allow_pickle=False) as archive:
                return "synthetic" in archive.files and bool(archive["synthetic"])
    except Exception:  # a file that cannot be read was not written by ganaug
        return False
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
        if path.is_file() and _classify_file(path) is not None:
            if not is_synthetic(path):
                return path
    return None


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
) -> list[Path]:
    """Write synthetic images in one of ``png``, ``npz``, ``nifti``, ``dicom``.

    ``out`` is a folder for png/dicom (class sub-folders when labels are
    given) and for nifti (one volume per class); for npz it is the file
    when it ends in ``.npz``, else the folder of ``synthetic.npz``.
    Labels that look identifying are refused
    (:class:`ganaug.privacy.IdentifyingLabelError`) before anything is written;
    ``burned_in_annotation`` goes to the DICOM writer.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> [p.name for p in write_images(np.zeros((2, 1, 4, 4)), out, fmt="npz")]
    ['synthetic.npz']
    """
    out = Path(out)
    labels = _output_labels(labels)
    description = (
        f"synthetic images generated by gankit ganaug from {model_description}"
    )
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
        )
    if fmt == "npz":
        path = out if out.suffix == ".npz" else out / "synthetic.npz"
        return [write_npz(images, path, labels=labels, description=description)]
    if fmt == "nifti":
        if out.name.endswith(NIFTI_SUFFIXES):
            return [write_nifti(images, out, description="SYNTHETIC gankit ganaug")]
        if labels is None:
            return [write_nifti(images, out / "synthetic.nii.gz")]
        labels = np.asarray(labels)
        return [
            write_nifti(
                images[labels == label], out / f"synthetic_{_safe_name(label)}.nii.gz"
            )
            for label in np.unique(labels)
        ]
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
