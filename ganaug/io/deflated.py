"""Deflated DICOM files, read without inflating more than they declare.

pydicom inflates a Deflated Explicit VR Little Endian file whole before it reads its
first element, pixel data included even with ``stop_before_pixels``: a 500 KB file
can inflate to gigabytes. Here the header is inflated only until the pixel data's tag
(at most :data:`DEFLATED_HEADER_BYTES`), and the whole dataset only up to the pixel
data its header declares.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from .checks import ImageReadError

__all__ = [
    "DEFLATED_HEADER_BYTES",
    "deflated_meta",
    "read_deflated_dataset",
    "read_deflated_header",
]

#: How much of a deflated DICOM file is inflated to read its header: far more than
#: any header (an enhanced multi-frame header with per-frame groups for thousands of
#: frames is a few MiB), far less than a bomb.
DEFLATED_HEADER_BYTES = 64 * 2**20

# (7FE0,0010) Pixel Data, as it starts an element in little endian.
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def deflated_meta(path: Path):
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


def read_deflated_header(path: Path, meta):
    """The dataset of a deflated file without its pixel data, inflating no more
    than the header (at most :data:`DEFLATED_HEADER_BYTES`).

    ``meta`` is the file's meta information, from :func:`deflated_meta`.
    """
    import pydicom

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    data = bytearray()
    with open(path, "rb") as handle:
        handle.seek(_dataset_offset(handle))
        limit = 2**16
        while not _inflate(handle, inflater, data, limit):
            if _PIXEL_DATA_TAG in data or limit >= DEFLATED_HEADER_BYTES:
                break
            limit *= 4
    dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
    dataset.file_meta = meta
    return dataset


def read_deflated_dataset(path: Path, meta, pixel_bytes: int):
    """The whole dataset of a deflated file whose header declares ``pixel_bytes``
    bytes of pixel data.

    Raises
    ------
    ImageReadError
        When the data inflate to more than the header and those bytes (a bomb whose
        header understates its pixel data), or end too early.
    """
    import pydicom

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    data = bytearray()
    with open(path, "rb") as handle:
        handle.seek(_dataset_offset(handle))
        limit = DEFLATED_HEADER_BYTES + pixel_bytes
        if not _inflate(handle, inflater, data, limit):
            raise ImageReadError(
                f"{path}: the deflated data inflate to more than the header "
                f"declares ({limit:,} bytes), or end too early"
            )
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    dataset.file_meta = meta
    return dataset


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
