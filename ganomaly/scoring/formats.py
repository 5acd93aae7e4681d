"""Table files by name and first bytes: Parquet or CSV, compressed or not, and how
to open them."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa

from .errors import BadInputError

_PARQUET_SUFFIXES = (".parquet", ".pq")
# CSV files compressed as their last suffix says (pyarrow's codec names).
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def parquet_module():
    """``pyarrow.parquet``, imported when a Parquet file comes: with its file
    systems it adds 30 ms to the start of every run."""
    import pyarrow.parquet

    return pyarrow.parquet


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in _PARQUET_SUFFIXES


def codec_of(path: Path) -> str | None:
    """pyarrow's codec for a CSV file named ``*.csv.gz`` and such, else None."""
    return _COMPRESSIONS.get(Path(path).suffix.lower())


def resumable(input_path: Path, output_path: Path) -> bool:
    """Whether a run from ``input_path`` to ``output_path`` can record its progress
    and resume: a CSV input (plain or compressed), an uncompressed CSV output."""
    return not (
        is_parquet(input_path) or is_parquet(output_path) or codec_of(output_path)
    )


def table_stem(path: Path) -> str:
    """A table file's name without its suffixes: ``day1`` for ``day1.csv.gz``."""
    path = Path(path)
    return Path(path.stem).stem if codec_of(path) else path.stem


def unreadable(path: Path, exc: BaseException) -> BadInputError:
    codec = codec_of(path)
    what = f"damaged or truncated {codec} file" if codec else "unreadable file"
    return BadInputError(f"{path}: {what} ({exc})")


def open_bytes(path: Path):
    """The bytes of a CSV file as a binary file object, decompressed if its name
    says so (:data:`_COMPRESSIONS`)."""
    codec = codec_of(path)
    if codec is None:
        return open(path, "rb")
    return io.BufferedReader(pa.input_stream(str(path), compression=codec))


# The first bytes of files that are not CSV text, and what they are.
_MAGIC_BYTES = {
    b"\x1f\x8b": "gzip-compressed (name it .csv.gz)",
    b"BZh": "bzip2-compressed (name it .csv.bz2)",
    b"\x28\xb5\x2f\xfd": "Zstandard-compressed (name it .csv.zst)",
    b"PAR1": "a Parquet file (name it .parquet)",
    b"PK\x03\x04": "a ZIP archive (an Excel workbook?); export it as CSV",
}


def refuse_other_formats(path: Path, first: bytes) -> None:
    """BadInputError if a CSV file's first bytes say it is something else."""
    for magic, what in _MAGIC_BYTES.items():
        if first.startswith(magic):
            raise BadInputError(f"{path}: not CSV text: the file is {what}")
