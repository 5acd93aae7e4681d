"""DICOM in and out: which objects are images, their pixels in modality units, the
slice order of a series, the files of a DICOMDIR, and Secondary Capture objects
marked synthetic.

Every header is read without its pixel data and checked (an image SOP class, a size
within :data:`~ganaug.io.checks.PIXEL_BUDGET`) before any pixel is decoded; deflated
files are read by :mod:`ganaug.io.deflated`, which never inflates more than they
declare.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gancore.files import atomic_write

from .checks import ImageReadError, check_finite, check_pixel_budget
from .deflated import deflated_meta, read_deflated_dataset, read_deflated_header
from .outputs import as_nchw, file_names, safe_name, screen_output_labels, to_uint8

__all__ = [
    "DICOM_SUFFIXES",
    "check_dicom_header",
    "dicomdir_files",
    "has_dicom_preamble",
    "is_synthetic_dicom",
    "read_dicom",
    "read_dicom_header",
    "read_dicom_pixels",
    "slice_order_key",
    "write_dicom",
]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")

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


# ------------------------------------------------------------------ headers


def has_dicom_preamble(path: Path) -> bool:
    """Whether a file starts with the 128-byte preamble and ``DICM`` of PS3.10.

    For files named otherwise, as PACS exports often name them (by UID, or without
    a suffix).
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_header(path: Path):
    """The header of a DICOM file, without its pixel data (never inflated).

    Raises
    ------
    ImageReadError
        When the file is not a readable DICOM file.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> read_dicom_header(get_testdata_file("CT_small.dcm")).Modality
    'CT'
    """
    import pydicom

    try:
        meta = deflated_meta(path)
        if meta is not None:
            return read_deflated_header(path, meta)
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # pydicom raises many kinds on damaged files
        raise ImageReadError(f"{path}: not a readable DICOM file ({err})") from err


def check_dicom_header(header, source) -> None:
    """Refuse a DICOM object that is not an image, or too large to decode.

    Raises
    ------
    ImageReadError
        For another kind of object (a segmentation, a structure set, a report, ...),
        an unreadable image size or one over the pixel budget.
    """
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
        check_pixel_budget(source, described, math.prod(dims.values()))


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


def _declared_bytes(header) -> int:
    """Bytes of pixel data a header declares (0 when it declares no image)."""
    dims = _declared_dims(header)
    bits = int(header.get("BitsAllocated", 16) or 16)
    return math.prod(dims.values()) * max(1, -(-bits // 8)) if dims else 0


def slice_order_key(header) -> tuple:
    """Where a slice sits in its series: by position along the slice normal (Image
    Position and Orientation Patient), else by Instance Number, numerically.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> slice_order_key(read_dicom_header(get_testdata_file("CT_small.dcm")))[0]
    0
    """
    position = header.get("ImagePositionPatient")
    orientation = header.get("ImageOrientationPatient")
    if position is not None and orientation is not None and len(orientation) == 6:
        row = np.asarray(orientation[:3], dtype=float)
        column = np.asarray(orientation[3:], dtype=float)
        normal = np.cross(row, column)
        return (0, float(np.dot(normal, np.asarray(position, dtype=float))))
    number = header.get("InstanceNumber")
    if number is not None and str(number) != "":
        return (1, float(number))
    return (2, 0.0)


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR references, in its own order.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> len(dicomdir_files(get_testdata_file("DICOMDIR")))
    31
    """
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(path)
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable DICOMDIR ({err})") from err
    return [Path(instance.path) for instance in fileset]


# ------------------------------------------------------------------- pixels


def read_dicom(
    path: str | os.PathLike, *, window: str | tuple[float, float] | None = None
) -> np.ndarray:
    """Read one DICOM file as float32 frames ``(n_frames, C, H, W)``.

    The modality LUT (a Modality LUT Sequence or Rescale Slope/Intercept, also
    from the functional groups of enhanced multi-frame objects) is applied with
    :func:`pydicom.pixels.apply_modality_lut`, so CT comes out in Hounsfield
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
        :data:`~ganaug.io.checks.PIXEL_BUDGET` pixel values, holds NaN or infinite
        values, or its compressed pixel data has no installed decoder (the message
        names the package to install).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> read_dicom(get_testdata_file("CT_small.dcm")).shape
    (1, 1, 128, 128)
    """
    path = Path(path)
    check_dicom_header(read_dicom_header(path), path)
    return read_dicom_pixels(path, window)


def read_dicom_pixels(path: Path, window=None) -> np.ndarray:
    """Frames of a DICOM file whose header has passed :func:`check_dicom_header`.

    The folder reader reads and checks every header first (for the slice order and
    the identifiers), then calls this; :func:`read_dicom` does both for one file.
    """
    return _dataset_frames(_read_dataset(path), str(path), window)


def _read_dataset(path: Path):
    """The whole dataset of a file whose header passed :func:`check_dicom_header`."""
    import pydicom

    try:
        meta = deflated_meta(path)
        if meta is not None:
            header = read_deflated_header(path, meta)
            return read_deflated_dataset(path, meta, _declared_bytes(header))
        return pydicom.dcmread(path)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"{path}: not a readable DICOM file ({err})") from err


def _decoder_hint(transfer_syntax_name: str) -> str:
    for key in sorted(_DECODER_HINTS, key=len, reverse=True):
        if key.lower() in transfer_syntax_name.lower():
            return _DECODER_HINTS[key]
    return "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def _modality_lut_of(ds, frame: int):
    """The dataset that holds one frame's modality LUT, for
    :func:`pydicom.pixels.apply_modality_lut`.

    The object itself when it has a Modality LUT Sequence or Rescale Slope and
    Intercept; else, for enhanced multi-frame objects, the frame's Pixel Value
    Transformation item from the per-frame or shared functional groups (pydicom
    looks only at the top level); else the object, which then has no modality LUT.
    """
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return ds
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
            return transform[0]
    return ds


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
    if samples != 1:
        # Colour pixels are used as stored: a modality LUT is for grey images.
        frames = np.moveaxis(pixels, -1, 1).astype(np.float32)  # (frames, C, H, W)
        check_finite(frames, source)
        return frames
    from pydicom.pixels import apply_modality_lut

    frames = np.empty((len(pixels), 1, *pixels.shape[1:]), dtype=np.float32)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    for index in range(frames.shape[0]):
        # Frame by frame: pydicom computes in float64, a second copy of a large
        # multi-frame object if done at once.
        frames[index, 0] = apply_modality_lut(
            pixels[index], _modality_lut_of(ds, index)
        )
        frames[index, 0] = _apply_window(frames[index, 0], ds, window)
        if photometric == "MONOCHROME1":
            # Low values are displayed white: flip so bright means dense,
            # as in MONOCHROME2 images of the same kind.
            frame = frames[index]
            frames[index] = frame.max() + frame.min() - frame
    check_finite(frames, source)
    return frames


# ------------------------------------------------------------------ writing


def write_dicom(
    images: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence | None = None,
    value_range: tuple[float, float] | None = None,
    model_description: str = "unnamed model",
    prefix: str = "synthetic",
    burned_in_annotation: str | None = None,
    translated: bool = False,
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
        (:attr:`ganaug.io.LoadedImages.burned_in_annotation`); None when unknown.
    translated : bool, default=False
        The images were translated from real images (:class:`ganaug.GANTranslator`),
        not generated from noise: the Derivation Description and Series
        Description say so.  Still new objects: new UIDs, no attribute of the
        source files.

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

    labels = screen_output_labels(labels)
    images = as_nchw(images)
    out_dir = Path(out_dir)
    study_uid, series_uid = generate_uid(), generate_uid()
    # A GAN reproduces what its training images show, burned-in names and dates
    # included. NO is written only when every training image's header said NO;
    # otherwise YES, the value that makes a de-identification pipeline look at the
    # pixels (leaving the attribute out would be read as NO by many filters, and a
    # PNG or NIfTI input says nothing either way).
    burned_in = "NO" if str(burned_in_annotation).upper() == "NO" else "YES"
    names = file_names(len(images), labels, prefix, ".dcm")
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
        ds.SeriesDescription = (
            "SYNTHETIC - translated from real images by a GAN"
            if translated
            else "SYNTHETIC - generated by a GAN"
        )
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
            (
                "Synthetic image translated by gankit ganaug from a real image of "
                f"another class, with model {model_description}; no attribute of "
                "the source image is carried"
            )
            if translated
            else f"Synthetic image generated by gankit ganaug from model "
            f"{model_description}"
        )[:1024]
        if labels is not None:
            ds.ImageComments = f"SYNTHETIC; class {labels[index]}"[:10240]
        else:
            ds.ImageComments = "SYNTHETIC"
        ds.Rows, ds.Columns = int(image.shape[1]), int(image.shape[2])
        ds.PixelRepresentation = 0
        if image.shape[0] == 3:
            pixels = np.moveaxis(to_uint8(image[None], (low, high))[0], 0, -1)
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
        elif eight_bit:
            pixels = to_uint8(image[None], (low, high))[0, 0]
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
        folder = out_dir / safe_name(labels[index]) if labels is not None else out_dir
        path = folder / name
        with atomic_write(path) as temp:
            ds.save_as(temp, enforce_file_format=True)
        paths.append(path)
    return paths


def is_synthetic_dicom(path: Path) -> bool:
    """Whether a DICOM file says Synthetic Data (0008,001C) = YES, as
    :func:`write_dicom` writes it.

    Raises
    ------
    ImageReadError
        When the file is not a readable DICOM file.

    Examples
    --------
    >>> import tempfile
    >>> [path] = write_dicom(np.zeros((1, 4, 4), "uint8"), tempfile.mkdtemp())
    >>> is_synthetic_dicom(path)
    True
    """
    return str(read_dicom_header(path).get("SyntheticData", "")).upper() == "YES"
