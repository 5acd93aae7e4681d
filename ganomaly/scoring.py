"""Streaming batch scoring of CSV and Parquet files, in constant memory.

:func:`score_file` reads the input in blocks with pyarrow (pieces of a CSV file
parsed side by side, or ``ParquetFile.iter_batches``), scores every block and
appends it to the output, so memory stays flat whatever the file size.  The output
is written to a temporary file next to the target and renamed at the end: a killed
run never leaves a partial file at the target path.  From a CSV file to a CSV file,
that temporary file is ``.NAME.partial``, locked by the run, and every
``CHECKPOINT_SECONDS`` the run records its progress in ``.NAME.partial.json``: a
killed or interrupted run continues from there with ``resume=True`` (``ganomaly
score --resume``).

Bad input is never silently dropped.  By default the first bad row stops the run
with an error naming the file, the line and the column (:class:`BadInputError`).
With ``on_bad_rows="skip"`` every bad row goes to a rejects file with its reason and
all other rows are scored; input rows = scored rows + rejected rows, always.  The
rejected rows are kept on disk as the run goes (``.NAME.rejects.partial`` next to
the output, or an unnamed temporary file), so memory stays flat however many rows
a file rejects.

What counts as bad, for a model's column: text that is no number, ``NaN`` or an
infinite value in a numeric column, and a row with the wrong number of fields.  Only
the piece of the file (4 MiB) that holds such a row is read again, to find and name
it; a number column with text in it is read as text from there on, and its numbers
get the same floats as in the typed read.  An empty field is a *missing* value,
handled by the model's missing-value policy (rejected only if the model was trained
with ``missing="error"``).  Unknown categories are fine (they encode as "none of the
known ones").

Line numbers count physical lines, the header being line 1; they are exact for files
without line breaks inside quoted fields.  Parquet files have no lines: their
messages name the row (1-based).

CSV files whose name ends in ``.gz``, ``.bz2`` or ``.zst`` are read (and output files
so named written) compressed with gzip, bzip2 or Zstandard, streaming as well.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import queue
import re
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from gancore.files import atomic_write, check_outputs, special_file

from ._scorer import Scorer, _one_blas_thread, load_scorer
from .labels import LabelRule
from .preprocessing import BOOLEAN_WORDS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock on partial outputs
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BadInputError",
    "LabelledScores",
    "OutputBusyError",
    "ResumeError",
    "Scorer",
    "ScoringSummary",
    "check_unique_columns",
    "default_rejects_path",
    "load_scorer",
    "read_table_header",
    "score_batch",
    "score_file",
    "score_labelled",
]

# Empty fields are missing values; "NaN", "nan", "inf" are *not* treated as missing:
# they parse as floats and are rejected, so a typo never becomes a silent imputation.
NULL_VALUES = [""]
# Bytes of CSV per block (a piece is PIECE_BLOCKS blocks; measured when a block was
# also what pyarrow parsed at a time: a 1M-row file streamed in 1.9 s with 1 MiB
# blocks, 3.0 s with 8 MiB).  Parquet batches are regrouped into
# GROUP_ROWS-row groups so that per-group Python overhead stays small; about as many
# rows as a CSV piece, since up to 2 x threads groups are in flight (1M rows from
# Parquet: 65,536-row groups peaked at 510 MiB, 16,384-row groups at 315 MiB, in the
# same time).
DEFAULT_BLOCK_SIZE = 1 << 20
GROUP_ROWS = 1 << 14
# Rows per row group of a Parquet output: the scored blocks (a CSV piece, ~15,000
# rows) are gathered into row groups of this size, as Parquet readers prefer.
OUTPUT_ROW_GROUP_ROWS = 1 << 17
# The fast read cuts a CSV file at line ends into pieces of PIECE_BLOCKS blocks
# (4 MiB, ~15,000 rows of 31 numbers) that `threads` threads parse side by side:
# pyarrow's streaming reader parses on one thread (~1.6 s per million rows of 31
# numbers), a ceiling for any number of scoring threads.
PIECE_BLOCKS = 4
# pyarrow parses a piece in parts of at most PARSE_BYTES: they stay in a core's
# cache beside the other threads' work (1M rows, 22 interleaved rounds: 256 KiB 1.5-2 %
# faster than 1 MiB, the same bytes out).  A line longer than that is read whole
# (_parse_piece).
PARSE_BYTES = 1 << 18
# Rows that pyarrow's CSV writer formats at a time: its default, 1,024, costs 10 %
# more (1M output rows: 0.395 s against 0.354 s, the same bytes).
WRITE_BATCH_ROWS = 1 << 14
# zlib level of a .csv.gz output (gzip's default; see _CsvWriter).
GZIP_LEVEL = 6
# A CSV output is synced to disk every SYNC_BYTES as it is written (_CsvWriter).
SYNC_BYTES = 16 << 20
PRECISIONS = ("auto", "float32", "float64")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# CSV files compressed as their last suffix says (pyarrow's codec names).
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


class BadInputError(ValueError):
    """Bad input: the message names the file, the line (or row) and the column."""


@dataclass
class ScoringSummary:
    """What :func:`score_file` did.  ``n_input == n_scored + n_rejected`` always."""

    input_path: str
    output_path: str
    rejects_path: str | None
    n_input: int
    n_scored: int
    n_rejected: int
    n_anomalies: int
    seconds: float
    n_resumed: int = 0
    """Input rows scored by the interrupted run that this one resumed."""


def _parquet():
    """``pyarrow.parquet``, imported when a Parquet file comes: with its file
    systems it adds 30 ms to the start of every run."""
    import pyarrow.parquet

    return pyarrow.parquet


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in _PARQUET_SUFFIXES


def _compression(path: Path) -> str | None:
    """pyarrow's codec for a CSV file named ``*.csv.gz`` and such, else None."""
    return _COMPRESSIONS.get(Path(path).suffix.lower())


def _resumable(input_path: Path, output_path: Path) -> bool:
    """Whether a run from ``input_path`` to ``output_path`` can record its progress
    and resume: a CSV input (plain or compressed), an uncompressed CSV output."""
    return not (
        _is_parquet(input_path) or _is_parquet(output_path) or _compression(output_path)
    )


def _table_stem(path: Path) -> str:
    """A table file's name without its suffixes: ``day1`` for ``day1.csv.gz``."""
    path = Path(path)
    return Path(path.stem).stem if _compression(path) else path.stem


def default_rejects_path(output_path: str | Path) -> Path:
    """Where a run into ``output_path`` lists its rejected rows by default:
    ``scores.rejects.csv`` for ``scores.csv`` (or ``scores.parquet``, ...)."""
    output_path = Path(output_path)
    return output_path.with_name(_table_stem(output_path) + ".rejects.csv")


def _unreadable(path: Path, exc: BaseException) -> BadInputError:
    codec = _compression(path)
    what = f"damaged or truncated {codec} file" if codec else "unreadable file"
    return BadInputError(f"{path}: {what} ({exc})")


def _open_bytes(path: Path):
    """The bytes of a CSV file as a binary file object, decompressed if its name
    says so (:data:`_COMPRESSIONS`)."""
    codec = _compression(path)
    if codec is None:
        return open(path, "rb")
    return io.BufferedReader(pa.input_stream(str(path), compression=codec))


def read_table_header(path: str | Path) -> list[str]:
    """Column names of a CSV or Parquet file, with clear errors for unreadable files.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of str

    Raises
    ------
    BadInputError
        Missing, empty or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        kind = special_file(path)
        if kind is None:
            raise BadInputError(f"{path}: no such file")
        raise BadInputError(
            f"{path}: is {kind}, not a file: ganomaly reads a file twice (its header, "
            "then its rows); save the stream to a file first"
        )
    if _is_parquet(path):
        try:
            return list(_parquet().ParquetFile(path).schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            raise BadInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    try:
        with _open_bytes(path) as handle:
            first = _header_record(path, handle)[0]
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise _unreadable(path, exc) from exc
    _refuse_other_formats(path, first)
    if not first.strip():
        raise BadInputError(
            f"{path}: the file is empty; expected a CSV header line (line 1) and rows"
        )
    # (A name that is not UTF-8 matches no model column, and is reported as such.)
    text = first.decode("utf-8", errors="replace").removeprefix("\ufeff")
    text = text.removesuffix("\n").removesuffix("\r")
    return next(csv.reader(io.StringIO(text, newline="")))


# The first bytes of files that are not CSV text, and what they are.
_MAGIC_BYTES = {
    b"\x1f\x8b": "gzip-compressed (name it .csv.gz)",
    b"BZh": "bzip2-compressed (name it .csv.bz2)",
    b"\x28\xb5\x2f\xfd": "Zstandard-compressed (name it .csv.zst)",
    b"PAR1": "a Parquet file (name it .parquet)",
    b"PK\x03\x04": "a ZIP archive (an Excel workbook?); export it as CSV",
}


def _refuse_other_formats(path: Path, first: bytes) -> None:
    """BadInputError if a CSV file's first bytes say it is something else."""
    for magic, what in _MAGIC_BYTES.items():
        if first.startswith(magic):
            raise BadInputError(f"{path}: not CSV text: the file is {what}")


def _check_columns(
    path: Path, header: list[str], needed: list[str], named: Sequence[str] = ()
) -> None:
    """BadInputError unless ``header`` has the model's columns (``needed``) and the
    columns the caller names (an id or label column)."""
    absent = [c for c in [*needed, *named] if c not in header]
    if not absent:
        return
    where = "schema" if _is_parquet(path) else "line 1 (header)"
    message = (
        f"{path}: {where}: missing column(s) {', '.join(map(repr, absent))}; the model "
        f"needs {', '.join(map(repr, needed))}"
    )
    if any(c in absent for c in named):
        message += f", and {', '.join(map(repr, named))} was named as a column"
    if len(header) == 1 and not _is_parquet(path):
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                message += (
                    f"; the header has a single column containing {delimiter!r}: "
                    "the file seems to use another delimiter than ',' (save it as "
                    "comma-separated)"
                )
                break
    raise BadInputError(message)


def check_unique_columns(path: Path, header: list[str], wanted: list[str]) -> None:
    """BadInputError if a column to read appears more than once in ``header``:
    which of the two holds the values is anyone's guess."""
    for name in dict.fromkeys(wanted):
        places = [i + 1 for i, c in enumerate(header) if c == name]
        if len(places) > 1:
            where = "schema" if _is_parquet(path) else "line 1 (header)"
            raise BadInputError(
                f"{path}: {where}: column {name!r} appears {len(places)} times "
                f"(columns {', '.join(map(str, places))}); name each column once"
            )


def _check_parquet_types(path: Path, numeric: list[str], wanted: list[str]) -> None:
    """BadInputError naming the file and column if a Parquet column to read has a
    type that is not one value per row, or a number column no numbers."""
    schema = _parquet().read_schema(path)
    for name in dict.fromkeys(wanted):
        kind = schema.field(name).type
        nested = (
            pa.types.is_nested(kind)
            or pa.types.is_dictionary(kind)
            and (pa.types.is_nested(kind.value_type))
        )
        if nested:
            raise BadInputError(
                f"{path}: schema: column {name!r} has type {kind}: expected one value "
                "per row (a number or a text)"
            )
        if name in numeric and not _number_type(kind):
            raise BadInputError(
                f"{path}: schema: column {name!r} has type {kind}; the model reads it "
                "as numbers"
            )


def _number_type(kind: pa.DataType) -> bool:
    """Whether a Parquet column of this type can hold a model's number column:
    numbers, booleans, decimals, or text (whose values are checked one by one)."""
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


class _Rejects:
    """Rejected rows, ``(row, line, column, reason, id)``, kept in a file as they
    come, so that memory stays flat however many rows a file rejects.

    The rows of a piece are added (:meth:`add`), then written to the spill file in
    row order (:meth:`flush`), as CSV lines with pyarrow's line numbers;
    :meth:`write` turns them into the rejects file, with the file's line numbers.

    Parameters
    ----------
    spill : Path, optional
        The file to keep them in, created at the first reject (readable by its owner
        only).  An unnamed temporary file in ``directory`` if None.
    at : tuple of (int, int, int), optional
        ``(bytes, count, last line)`` of a resumed run's spill file: what comes
        after is cut off.
    directory : Path, optional
    """

    def __init__(
        self,
        spill: Path | None = None,
        at: tuple[int, int, int] | None = None,
        directory: Path | None = None,
    ) -> None:
        self.spill, self.directory = spill, directory
        self.size, self.count, self.last_line = at or (0, 0, 0)
        self.pending: list[tuple[int, int | None, str, str, Any]] = []
        self.fd: int | None = None
        if at is not None or (spill is not None and spill.exists()):
            self._open()

    def _open(self) -> None:
        if self.spill is None:
            handle = tempfile.TemporaryFile(dir=self.directory)
            self.fd = os.dup(handle.fileno())
            handle.close()
        else:
            self.fd = os.open(self.spill, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self.fd).st_size < self.size:
                raise ResumeError(
                    f"{self.spill}: the rejected rows of the interrupted run are "
                    "missing or shorter than recorded; run without --resume to "
                    "start over"
                )
        os.ftruncate(self.fd, self.size)
        os.lseek(self.fd, self.size, os.SEEK_SET)

    def add(self, row: int, line: int | None, column: str, reason: str, ident=None):
        self.pending.append((row, line, column, reason, ident))

    def flush(self) -> None:
        """The rows added since the last flush, to the spill file in row order."""
        if not self.pending:
            return
        if self.fd is None:
            self._open()
        self.pending.sort(key=lambda r: r[0])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(self.pending)
        data = text.getvalue().encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)
        self.count += len(self.pending)
        lines = [r[1] for r in self.pending if r[1] is not None]
        self.last_line = max([self.last_line, *lines])
        self.pending.clear()

    def position(self) -> tuple[int, int, int]:
        """``(bytes, count, last line)`` so far: the ``at`` of a resumed run."""
        return self.size, self.count, self.last_line

    def sync(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)

    def write(self, path: Path, id_col: str | None, source: Path) -> None:
        """The rejects file: the rows in row order, with the line numbers of
        ``source`` (pyarrow's skip empty lines), read back in slices."""
        self.flush()
        skipped = np.zeros(0, dtype=np.intp)
        if self.count and not _is_parquet(source):
            skipped = _skipped_lines(source, until=self.last_line)
        before = _records_before(skipped)
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            header = ["row", "line", "column", "reason"]
            writer.writerow(header + [id_col] if id_col else header)
            if self.fd is None:
                return
            os.lseek(self.fd, 0, os.SEEK_SET)
            with open(os.dup(self.fd), newline="", encoding="utf-8") as spilled:
                reader = csv.reader(spilled)
                while rows := list(itertools.islice(reader, 1 << 13)):
                    lines = np.array([int(r[1] or 0) for r in rows], dtype=np.int64)
                    lines = _past_skipped_lines(lines, before)
                    for r, line in zip(rows, lines.tolist(), strict=True):
                        r[1] = line if r[1] else ""
                    writer.writerows(rows if id_col else [r[:4] for r in rows])

    def close(self, remove: bool = False) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if remove and self.spill is not None:
            self.spill.unlink(missing_ok=True)


def _physical_lines(path: Path, logical: list[int]) -> dict[int, int]:
    """Physical line numbers of pyarrow's line numbers, which count records.

    pyarrow skips empty lines and reads a quoted field across its line ends, so
    its line numbers (and ours, counted from its rows) count the records, which
    fall behind the file's lines after a blank line or a quoted line end.  Only
    when there is something to report: one pass over the file, with numpy, up to
    the last record asked for.
    """
    wanted = sorted({n for n in logical if n is not None})
    if not wanted or _is_parquet(path):
        return {n: n for n in wanted}
    before = _records_before(_skipped_lines(path, until=wanted[-1]))
    physical = _past_skipped_lines(np.array(wanted, dtype=np.int64), before)
    return dict(zip(wanted, physical.tolist(), strict=True))


def _records_before(skipped: np.ndarray) -> np.ndarray:
    """For each of a file's lines that start no record (:func:`_skipped_lines`),
    the records before it: ``skipped - 1 - j`` for the j-th."""
    return skipped - 1 - np.arange(len(skipped))


def _past_skipped_lines(records: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Record numbers (pyarrow's line numbers) as the file's line numbers, with
    ``before`` from :func:`_records_before`: each line that starts no record, at or
    before a record's place, moves it one on."""
    return records + np.searchsorted(before, records, side="left")


def _skipped_lines(path: Path, until: int, chunk: int = 1 << 22) -> np.ndarray:
    """Numbers of the lines of a CSV file that start no record, up to its
    ``until``-th record (line 1, the header, is the first): empty lines ("\\n" or
    "\\r\\n" alone), which pyarrow skips, and the lines that go on with a quoted
    field after a line end inside it."""
    skipped: list[np.ndarray] = []
    lines = records = 0  # before the part read
    rest = b""
    with _open_bytes(path) as handle:
        while records < until:
            more = handle.read(chunk)
            data = np.frombuffer(rest + more, np.uint8)
            if not data.size:
                break
            # Parts end at the end of a record, so that each starts outside quotes.
            cut = _after_last_record_end(data)[0] if more else data.size
            if cut == 0:
                rest = data.tobytes()
                if len(rest) > MAX_RECORD_BYTES:  # no end: the read stopped there
                    break
                continue
            part, rest = data[:cut], data[cut:].tobytes()
            ends, inside = _line_ends(part)
            if not ends.size or ends[-1] != cut - 1:  # the last line, with no end
                ends, inside = np.append(ends, cut), np.append(inside, False)
            starts = np.concatenate(([0], ends[:-1] + 1))
            going_on = np.concatenate(([False], inside[:-1]))
            length = ends - starts
            crlf = (length == 1) & (part[np.maximum(ends - 1, 0)] == _RETURN)
            skip = going_on | (length == 0) | crlf
            skipped.append(lines + 1 + np.flatnonzero(skip))
            lines += ends.size
            records += int(ends.size - np.count_nonzero(skip))
    return np.concatenate(skipped) if skipped else np.zeros(0, dtype=np.intp)


def _describe(path: Path, line: int | None, row: int, column: str, reason: str) -> str:
    where = f"line {line}" if line is not None else f"row {row}"
    column_text = f", column {column!r}" if column else ""
    return f"{path}: {where}{column_text}: {reason}"


def _validate_batch(
    batch: pa.RecordBatch,
    numeric: list[str],
    missing_is_bad: list[str],
    dirty: set[str] | None = None,
    booleans: Sequence[str] | set[str] = (),
) -> tuple[dict[str, np.ndarray], list[tuple[int, str, str]]]:
    """Float values of numeric columns and the bad cells ``(index, column, reason)``.

    ``dirty``: the number columns read as text whose last block held values that
    are not numbers (updated here), for :func:`_text_numbers`.  ``booleans``: the
    number columns fitted on booleans, for the messages.
    """
    values: dict[str, np.ndarray] = {}
    bad: list[tuple[int, str, str]] = []
    for name in numeric:
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        numbers = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if column.null_count == 0 and numbers:
            # The common case (a clean number column): one pass, no copies.
            array = _float_values(column)
            if np.isfinite(array).all():
                values[name] = array
                continue
        null = _null_mask(column)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            likely = dirty is not None and name in dirty
            array, blank, not_numbers = _text_numbers(column, likely)
            if dirty is not None:
                (dirty.add if not_numbers.size else dirty.discard)(name)
            null |= blank
            shown = _take(column, not_numbers).to_pylist()
            wanted = "true/false or a number" if name in booleans else "a number"
            for index, value in zip(not_numbers.tolist(), shown, strict=True):
                bad.append((index, name, f"expected {wanted}, got {value!r}"))
            array[not_numbers] = 0.0
        elif numbers:
            array = _float_values(column)  # any value under a null is masked below
        elif pa.types.is_decimal(column.type):
            import pyarrow.compute as pc

            array = _float_values(pc.cast(column, pa.float64()))
        elif pa.types.is_boolean(column.type) or pa.types.is_null(column.type):
            array = _bool_values(column)
        else:
            raise BadInputError(
                f"column {name!r} has type {column.type}; expected numbers"
            )
        # (Booleans are NaN only where null.)
        for index in np.flatnonzero(np.isnan(array) & ~null):
            reason = "NaN is not a value; leave the field empty if missing"
            bad.append((int(index), name, reason))
        infinite = np.isinf(array)
        for index in np.flatnonzero(infinite):
            bad.append((int(index), name, f"infinite value {array[index]}"))
        if name in missing_is_bad:
            for index in np.flatnonzero(null):
                bad.append(
                    (int(index), name, "missing value (the model's policy is 'error')")
                )
        array = np.where(null, np.nan, array)
        values[name] = array
    return values, bad


# What pyarrow's string-to-float conversion takes (checked against it in the tests);
# a value it does not match is asked of pyarrow itself, alone.
_NUMBER = re.compile(
    r"^[+-]?(?:(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$",
    re.IGNORECASE,
)


def _text_numbers(
    column: pa.Array, likely_dirty: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numbers in a text column, converted as the typed CSV read converts them.

    A number column holding a value that is not a number is read as text (see
    ``_Job._parse_carefully``); its other values must get the same floats, to the
    last bit, as they would in a piece of the file without that value.  So they go
    through pyarrow's own conversion (the one the typed read uses), after the
    same trimming of spaces and tabs.  A piece where every value is a number (the
    pieces after a bad value, mostly) costs one cast, 0.04 s per 1M values; where
    one is not, a pattern picks the candidates (0.07 s more per 1M values) and
    pyarrow is asked about each distinct text the pattern does not take.  With
    ``likely_dirty`` (the column's last piece was not clean) the pattern comes
    first, without the cast that would fail.

    Returns
    -------
    values : ndarray of float64
        Anything under a blank or a non-number.
    blank : ndarray of bool
        Empty (or only spaces and tabs): a missing value.
    not_numbers : ndarray of int
        Indices of the values that are not numbers.
    """
    import pyarrow.compute as pc

    text = pc.utf8_trim(column, characters=" \t")
    # Empty after trimming: from the offsets (``pc.equal(text, "")`` would make a
    # scalar of "", which imports pandas).
    start = text.offset
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    bounds = np.frombuffer(text.buffers()[1], width)[start : start + len(text) + 1]
    null = _null_mask(column)  # the trimmed text has the same nulls
    blank = (np.diff(bounds) == 0) & ~null
    present = ~null & ~blank
    not_numbers = np.zeros(0, dtype=np.intp)
    numbers = None
    if not likely_dirty:  # the usual piece: every value present is a number
        with contextlib.suppress(pa.ArrowInvalid):
            numbers = pc.cast(_only(text, present), pa.float64())
    if numbers is None:
        text = _boolean_words_as_numbers(text)
        looks = pc.match_substring_regex(text, _NUMBER.pattern, ignore_case=True)
        # Values the pattern does not take are asked of pyarrow, one distinct value
        # at a time (the same few texts, such as "N/A", tend to come back).
        unlike = np.flatnonzero(present & ~_true_mask(looks))
        not_numbers = unlike
        if unlike.size:
            candidates = _take(text, unlike)
            distinct = pc.unique(candidates)
            refused = [_as_float(value) is None for value in distinct]
            refused_texts = distinct.filter(_arrow(np.array(refused), pa.bool_()))
            refused_here = pc.is_in(candidates, value_set=refused_texts)
            not_numbers = unlike[_true_mask(refused_here)]
        take = present.copy()
        take[not_numbers] = False
        kept = _only(text, take)
        try:
            numbers = pc.cast(kept, pa.float64())
        except pa.ArrowInvalid:  # pragma: no cover - a value _NUMBER took wrongly
            numbers = pa.array([_as_float(v) for v in kept], pa.float64())
    values = np.array(_float_values(numbers))  # a copy, to write into
    return values, blank, not_numbers


def _empty_rows(
    batch: pa.RecordBatch, columns: list[str], values: dict[str, np.ndarray]
) -> list[tuple[int, str, str]]:
    """The rows with no value in any of ``columns`` (a line of bare commas), as bad
    cells: imputed, such a row would score as the most normal row there is.

    ``values``: the numbers of the number columns, NaN where missing.  Only a
    block in which every column has a missing value is looked at row by row.
    """
    for name in columns:
        column = batch.column(name)
        if not column.null_count and not pa.types.is_string(column.type):
            return []
    empty = np.ones(batch.num_rows, dtype=bool)
    for name in columns:
        if name in values:
            empty &= np.isnan(values[name])
        else:
            empty &= _null_mask(batch.column(name))
    reason = "no value in any of the model's columns"
    return [(int(index), "", reason) for index in np.flatnonzero(empty)]


def _decode_bytes(
    batch: pa.RecordBatch,
) -> tuple[pa.RecordBatch, list[tuple[int, str, str]]]:
    """``batch`` with its columns read as bytes (see ``_Job._parse_carefully``) as
    text, and the cells that are not UTF-8 text ``(index, column, reason)``: those
    become missing values, and their rows are rejected."""
    bad: list[tuple[int, str, str]] = []
    if not any(pa.types.is_binary(field.type) for field in batch.schema):
        return batch, bad
    columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_binary(column.type):
            keep = ~_null_mask(column)
            for index, value in enumerate(column.to_pylist()):
                if value is None:
                    continue
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    keep[index] = False
                    reason = (
                        f"not UTF-8 text (byte 0x{value[exc.start]:02x} at offset "
                        f"{exc.start} of the value); save the file as UTF-8"
                    )
                    bad.append((index, name, reason))
            column = _only(column, keep, pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), bad


def _boolean_words_as_numbers(text: pa.Array) -> pa.Array:
    """``text`` with the boolean words (true, false, in any case) as "1" and "0":
    numbers, as the pandas path reads them (``preprocessing.BOOLEAN_WORDS``)."""
    import pyarrow.compute as pc

    # (Options, not scalars: a scalar made from a Python string imports pandas.)
    for word, number in BOOLEAN_WORDS.items():
        text = pc.replace_substring_regex(
            text, pattern=f"(?i)^{word}$", replacement=f"{number:g}"
        )
    return text


def _only(text: pa.Array, keep: np.ndarray, type_: pa.DataType = None) -> pa.Array:
    """``text`` with nulls where ``keep`` is False: a new validity bitmap over the
    same buffers (``pc.if_else`` with a null scalar would import pandas, 0.4 s), as
    ``type_`` (a type with the same buffers: text for bytes) if given."""
    start = text.offset
    bits = np.concatenate([np.zeros(start, dtype=bool), keep])
    validity = pa.py_buffer(np.packbits(bits, bitorder="little"))
    _, offsets, data = text.buffers()
    return pa.Array.from_buffers(
        type_ or text.type, len(text), [validity, offsets, data], offset=start
    )


def _as_float(value: pa.Scalar) -> float | None:
    """pyarrow's float of one text value, or None if it is not a number."""
    import pyarrow.compute as pc

    if not value.is_valid:
        return None
    try:
        return pc.cast(value, pa.float64()).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _true_mask(column: pa.Array) -> np.ndarray:
    """True where a boolean array is true (null: False), from its bitmaps."""
    data = np.frombuffer(column.buffers()[1], np.uint8)
    bits = np.unpackbits(data, bitorder="little")
    true = bits[column.offset : column.offset + len(column)].astype(bool)
    return true & ~_null_mask(column)


def _null_mask(column: pa.Array) -> np.ndarray:
    """True where ``column`` is null, from its validity bitmap (see below)."""
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    if pa.types.is_null(column.type):
        return np.ones(len(column), dtype=bool)
    validity = np.frombuffer(column.buffers()[0], np.uint8)
    bits = np.unpackbits(validity, bitorder="little")
    return bits[column.offset : column.offset + len(column)] == 0


def _float_values(column: pa.Array) -> np.ndarray:
    """An integer or float column as float64, read from its data buffer.

    Values under nulls are whatever the buffer holds: the caller masks them.
    (``Array.to_numpy`` would import pandas, 0.4 s, which scoring does not need.)
    """
    width = column.type.bit_width // 8
    kind = "f" if pa.types.is_floating(column.type) else "i"
    if pa.types.is_unsigned_integer(column.type):
        kind = "u"
    dtype = np.dtype(f"<{kind}{width}")
    buffer = column.buffers()[1]
    data = np.frombuffer(buffer, dtype, count=len(column), offset=column.offset * width)
    return data.astype(np.float64, copy=False)


def _bool_values(column: pa.Array) -> np.ndarray:
    """Booleans (or an all-null column) as floats 1 and 0, NaN for missing."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    values = _true_mask(column).astype(np.float64)
    values[_null_mask(column)] = np.nan
    return values


def default_threads() -> int:
    """Scoring threads by default: the CPUs this process may use, at most 4."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        available = os.cpu_count() or 1
    return max(1, min(4, available))


def as_scorer(model: Any, precision: str = "auto") -> Scorer:
    """A :class:`Scorer` from a Scorer, a fitted GANomalyDetector or a model path.

    Parameters
    ----------
    model : Scorer, GANomalyDetector, str or Path
    precision : {"auto", "float32", "float64"}, default="auto"
        Of the networks' matrix products (ignored for a Scorer).  ``"float64"``:
        the scores of :meth:`GANomalyDetector.anomaly_score`.  ``"float32"``: the
        networks in half the time (a CSV run in 6-27 % less CPU time), for scores
        within about 1e-7 relative of those.  Either way a row's score does
        not depend on the rows around it: for float32, where the BLAS at hand
        allows it (``Scorer.position_free``, checked on loading; a warning says
        when it does not).  ``"auto"``: float32 where it is position-free,
        float64 elsewhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(model, Scorer):
        return model

    def build(dtype: str) -> Scorer:
        if isinstance(model, (str, Path)):
            return load_scorer(model, dtype=dtype)
        return model._scorer(dtype=dtype)

    scorer = build("float32" if precision == "auto" else precision)
    if not scorer.position_free:
        if precision == "auto":
            scorer = build("float64")
        elif precision == "float32":
            warnings.warn(
                "float32 products of this BLAS differ in the last bits with a "
                "row's place in its block: a row's float32 score may differ by "
                "about 1e-7 relative between runs that cut the input otherwise "
                "(float64 does not)",
                stacklevel=2,
            )
    return scorer


def score_file(
    detector: Any,
    input_path: str | Path,
    output_path: str | Path,
    *,
    id_col: str | None = None,
    on_bad_rows: str = "error",
    rejects_path: str | Path | None = None,
    top_k: int = 3,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool | None = None,
    precision: str = "auto",
    threads: int | None = None,
    resume: bool = False,
) -> ScoringSummary:
    """Score a CSV or Parquet file of any size with a fitted GANomalyDetector.

    Parameters
    ----------
    detector : GANomalyDetector, Scorer, str or Path
        Fitted (on a DataFrame: the file must have its columns, by name), or its
        model file (read without torch, see :func:`load_scorer`).
    input_path, output_path : str or Path
        ``.parquet``/``.pq`` files are Parquet, anything else CSV.
    id_col : str, optional
        Column copied to the output to identify rows; without it the output has a
        ``row`` column (1-based data row number, the header not counted).
    on_bad_rows : {"error", "skip"}, default="error"
        ``"error"``: stop at the first bad row with :class:`BadInputError` (and leave
        no output).  ``"skip"``: write bad rows to ``rejects_path`` with reasons.
    rejects_path : str or Path, optional
        Default: ``<output stem>.rejects.csv`` next to the output.
    top_k : int, default=3
        Explanation columns ``feature_i``, ``contribution_i`` per row.
    block_size : int, default=1 MiB
        Bytes of CSV per block: a CSV file is read in pieces of ``PIECE_BLOCKS``
        blocks, parsed in parts of at most ``PARSE_BYTES`` (Parquet: batches of
        about ``block_size / 8`` values).
    progress : bool, optional
        Progress bar; default when stderr is a terminal.
    precision : {"auto", "float32", "float64"}, default="auto"
        See :func:`as_scorer`.
    threads : int, optional
        Threads that score blocks side by side, and as many that parse a CSV
        file's pieces side by side (the writer has its own).  Default: the CPUs
        this process may use, at most 4.
    resume : bool, default=False
        Continue the interrupted run that scored this input to this output (killed,
        interrupted or out of disk space) from its last recorded progress, instead
        of starting over; with no such run, start.  A run from a CSV file (plain
        or compressed) to an uncompressed CSV file writes its rows to
        ``.NAME.partial`` next to the output and records its progress every
        ``CHECKPOINT_SECONDS`` (10 s) in ``.NAME.partial.json``; the output
        appears at its path only when complete.  The input file, the model and
        the options must be those of the interrupted run (checked;
        :class:`ResumeError` otherwise).  A resumed run reads a plain input from
        the recorded offset; a compressed one is decompressed up to it, and
        parsed and scored only after it.

    Returns
    -------
    ScoringSummary

    Examples
    --------
    >>> import os, tempfile
    >>> from ganomaly import GANomalyDetector, make_transactions
    >>> from ganomaly.scoring import score_file
    >>> frame = make_transactions(600, random_state=0)
    >>> folder = tempfile.mkdtemp()
    >>> frame.to_csv(os.path.join(folder, "in.csv"), index=False)
    >>> detector = GANomalyDetector(n_epochs=1, random_state=0).fit(
    ...     frame.drop(columns=["transaction_id", "is_fraud"]))
    >>> summary = score_file(detector, os.path.join(folder, "in.csv"),
    ...                      os.path.join(folder, "out.csv"), id_col="transaction_id")
    >>> summary.n_input, summary.n_scored, summary.n_rejected
    (600, 600, 0)
    """
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    start = time.perf_counter()
    detector = as_scorer(detector, precision)
    input_path, output_path = Path(input_path), Path(output_path)
    if rejects_path is None and on_bad_rows == "skip":
        rejects_path = default_rejects_path(output_path)
    resumable = _resumable(input_path, output_path)
    _check_run_paths(detector, input_path, output_path, rejects_path, resumable)
    if id_col is not None and id_col in _output_columns(None, top_k):
        raise BadInputError(
            f"the id column {id_col!r} is also the name of an output column "
            f"({', '.join(_output_columns(None, top_k))}); the ids would be lost"
        )
    if resume and not resumable:
        raise ResumeError(
            "resume needs a CSV input (plain or compressed) and an uncompressed CSV "
            "output, got "
            f"{input_path.name} -> {output_path.name}"
        )
    job = _open_job(
        detector,
        input_path,
        id_col=id_col,
        on_bad_rows=on_bad_rows,
        top_k=top_k,
        block_size=block_size,
        progress=progress,
        threads=default_threads() if threads is None else threads,
        parquet_out=_is_parquet(output_path),
        compress_out=_compression(output_path),
    )

    if rejects_path is not None:
        rejects_path = Path(rejects_path)
        job.rejects_dir = rejects_path.parent
        if resumable:  # kept with the partial output (and its lock), for resume
            job.rejects_spill = _ScoreCheckpoint.paths(output_path)["kept rejects"]

    def run(output: Path) -> None:
        job.run(output)
        if job.n_input == 0:
            raise BadInputError(
                f"{input_path}: no data rows"
                + ("" if _is_parquet(input_path) else " after the header (line 1)")
            )
        if rejects_path is not None:
            with atomic_write(rejects_path) as tmp_rejects:
                job.rejects.write(Path(tmp_rejects), id_col, input_path)
        if job.n_scored == 0:  # a run that scores nothing has failed
            raise BadInputError(
                f"{input_path}: every one of its {job.n_input} rows was rejected, "
                f"nothing was scored; the reasons are in {rejects_path}"
            )

    if resumable:
        identity = _run_identity(detector, input_path, id_col, on_bad_rows, top_k)
        with _ScoreCheckpoint(output_path, identity).locked() as checkpoint:
            job.resume_state = checkpoint.load() if resume else None
            if job.resume_state is None:
                checkpoint.start()  # an older run's progress is not resumed
            job.checkpoint = checkpoint
            try:
                run(checkpoint.partial)
            except ValueError:  # bad input: a rerun would meet it again
                checkpoint.discard()
                job.rejects.close(remove=True)
                raise
            except BaseException:
                # Interrupted (KeyboardInterrupt, a full disk...): the partial
                # output, the rejected rows so far and the progress stay for
                # resume=True, if there is any progress (SIGKILL leaves them too).
                kept = checkpoint.state_path.exists()
                if not kept:
                    checkpoint.discard()
                job.rejects.close(remove=not kept)
                raise
            checkpoint.finish()
            job.rejects.close(remove=True)
    else:
        partial = _ScoreCheckpoint.paths(output_path)["partial output"]
        try:
            with _locked_output(output_path):
                try:
                    with atomic_write(output_path) as tmp_output:
                        run(tmp_output)
                finally:
                    partial.unlink(missing_ok=True)  # the lock's file, while held
        finally:
            job.rejects.close(remove=True)
    if job.n_scored + job.rejects.count != job.n_input:  # pragma: no cover
        raise RuntimeError("internal error: scored + rejected rows != input rows")
    return ScoringSummary(
        input_path=str(input_path),
        output_path=str(output_path),
        rejects_path=str(rejects_path) if rejects_path is not None else None,
        n_input=job.n_input,
        n_scored=job.n_scored,
        n_rejected=job.rejects.count,
        n_anomalies=job.n_anomalies,
        seconds=time.perf_counter() - start,
        n_resumed=job.resume_state["n_input"] if job.resume_state else 0,
    )


def _check_run_paths(
    scorer: Scorer,
    input_path: Path,
    output_path: Path,
    rejects_path: Path | None,
    resumable: bool,
) -> None:
    """UnsafeOutputError before anything is written if an output of the run (the
    output, its rejects file, its progress files) is its input or model, another
    of its outputs, or a special file (see :func:`gancore.files.check_outputs`)."""
    outputs = [("output", output_path), ("rejects file", rejects_path)]
    if resumable:
        record = _ScoreCheckpoint.paths(output_path)
        outputs += [(f"run's {role}", path) for role, path in record.items()]
    inputs = [("input file", input_path), ("model file", scorer.source)]
    check_outputs(outputs, inputs)


def _output_columns(id_col: str | None, top_k: int, n_columns: int | None = None):
    """The columns of a scored file, in order: the id (or ``row``), the score, the
    flag and ``top_k`` explanations (at most ``n_columns``)."""
    n_explained = top_k if n_columns is None else min(top_k, n_columns)
    names = [id_col or "row", "anomaly_score", "is_anomaly"]
    for k in range(1, n_explained + 1):
        names += [f"feature_{k}", f"contribution_{k}"]
    return names


class LabelledScores(NamedTuple):
    """What :func:`score_labelled` returns."""

    scores: np.ndarray
    """Anomaly scores of the rows kept, as :func:`score_file` writes them."""
    anomalous: np.ndarray
    """Whether each row kept is labelled an anomaly."""
    n_rejected: int
    """Rows rejected (``on_bad_rows="skip"``), listed in ``rejects_path``."""
    rejects_path: str | None


def score_labelled(
    detector: Any,
    input_path: str | Path,
    label_col: str,
    labels: LabelRule | str = "0",
    *,
    on_bad_rows: str = "error",
    rejects_path: str | Path | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool | None = None,
    precision: str = "auto",
) -> LabelledScores:
    """Anomaly scores and true labels of every row of a labelled file, streaming.

    For evaluation: the file is read in blocks exactly as :func:`score_file` reads
    it (same checks, same messages), the label column being checked as well: a
    missing label, or one that is neither normal nor an anomaly, is a bad row.
    Only each row's score and whether it is labelled anomalous are kept, 9 bytes
    per row whatever the number of columns.

    Parameters
    ----------
    detector : GANomalyDetector, Scorer, str or Path
    input_path : str or Path
    label_col : str
    labels : LabelRule or str, default="0"
        Which labels are normal and which anomalous; a string is the normal label,
        every other label being an anomaly.
    on_bad_rows : {"error", "skip"}, default="error"
        As for :func:`score_file`; skipped rows count in no metric.
    rejects_path : str or Path, optional
        Where skipped rows are listed (``on_bad_rows="skip"``); default
        ``<input stem>.rejects.csv`` next to the input.
    block_size : int, default=1 MiB
    progress : bool, optional
    precision : {"auto", "float32", "float64"}, default="auto"

    Returns
    -------
    LabelledScores

    Raises
    ------
    BadInputError
        As :func:`score_file`, and for a bad label (naming its line).
    """
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    input_path = Path(input_path)
    if isinstance(labels, str):
        labels = LabelRule(normal=(labels,))
    if on_bad_rows == "skip" and rejects_path is None:
        rejects_path = default_rejects_path(input_path)
    scorer = as_scorer(detector, precision)
    check_outputs(
        [("rejects file", rejects_path)],
        [("labelled file", input_path), ("model file", scorer.source)],
    )
    job = _open_job(
        scorer,
        input_path,
        id_col=None,
        on_bad_rows=on_bad_rows,
        top_k=1,
        block_size=block_size,
        progress=progress,
        label_col=label_col,
        label_rule=labels,
        sink_factory=_LabelCollector,
    )
    if rejects_path is not None:
        job.rejects_dir = Path(rejects_path).parent
    try:
        job.run(Path())
        if job.n_input == 0:
            raise BadInputError(f"{input_path}: no data rows")
        if rejects_path is not None:
            with atomic_write(rejects_path) as tmp_rejects:
                job.rejects.write(Path(tmp_rejects), None, input_path)
    finally:
        job.rejects.close(remove=True)
    if job.n_scored == 0:
        raise BadInputError(
            f"{input_path}: every one of its {job.n_input} rows was rejected, "
            f"nothing was scored; the reasons are in {rejects_path}"
        )
    scores, anomalous = job.sink.result()
    return LabelledScores(
        scores,
        anomalous,
        job.rejects.count,
        None if rejects_path is None else str(rejects_path),
    )


class _LabelCollector:
    """A sink for :class:`_Job`: keeps the scores and which rows are anomalies
    (the column :func:`_with_labels` adds)."""

    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []
        self.anomalous: list[np.ndarray] = []

    def write_table(self, table: pa.Table) -> None:
        scores = table.column("anomaly_score").combine_chunks()
        self.scores.append(_float_values(scores))
        flags = table.column(_LABEL_FLAGS).combine_chunks()
        self.anomalous.append(_true_mask(flags))

    def close(self) -> None:
        pass

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.scores:
            return np.zeros(0), np.zeros(0, dtype=bool)
        return np.concatenate(self.scores), np.concatenate(self.anomalous)


# The column of a labelled job's tables that says which rows are anomalies.
_LABEL_FLAGS = "__labelled_anomaly"


def _with_labels(flags: np.ndarray, *work: Any) -> tuple[pa.Table | None, int]:
    """:func:`score_batch`, with the labels of the good rows as one more column."""
    table, n_flagged = score_batch(*work)
    if table is not None:
        table = table.append_column(_LABEL_FLAGS, _arrow(flags, pa.bool_()))
    return table, n_flagged


def score_batch(
    scorer: Scorer,
    batch: pa.RecordBatch,
    values: dict[str, np.ndarray],
    good: np.ndarray,
    rows: np.ndarray,
    ids: pa.Array | None,
    id_col: str | None,
    top_k: int,
) -> tuple[pa.Table | None, int]:
    """Score the good rows of one validated block: the output table and its flags.

    The one place where a block becomes output rows, shared by :func:`score_file`
    and the Dask path (:mod:`ganomaly.distributed`).

    Parameters
    ----------
    scorer : Scorer
    batch : pyarrow.RecordBatch
        The block, with the model's columns (and ``id_col``).
    values : dict of str to ndarray
        Float values of the numeric columns, from ``_validate_batch``.
    good : ndarray of bool
        Rows to score (the others were rejected).
    rows : ndarray of int
        1-based data row numbers, written as ``row`` when there is no ``id_col``.
    ids : pyarrow.Array, optional
        Values of ``id_col``.
    id_col : str, optional
    top_k : int

    Returns
    -------
    table : pyarrow.Table or None
        ``id_col`` or ``row``, ``anomaly_score``, ``is_anomaly``, ``feature_i``,
        ``contribution_i``; None when no row is good.
    n_flagged : int
        Rows above the threshold.
    """
    if not good.any():
        return None, 0
    every = bool(good.all())
    columns: dict[str, Any] = {}
    for name in scorer.preprocessor_.input_columns_:
        if name in values:
            columns[name] = values[name] if every else values[name][good]
        else:
            text = batch.column(name).to_numpy(zero_copy_only=False)
            columns[name] = text if every else text[good]
    # Columns were checked above: encode directly, without a DataFrame.
    encoded = scorer.preprocessor_.transform(columns, order=scorer.input_order)
    scores, top, shares = scorer.score_and_explain(encoded, top_k)
    flagged = scores > scorer.threshold_
    out: dict[str, Any] = {}
    if id_col:
        ids = ids if every else ids.filter(_arrow(good, pa.bool_()))
        out[id_col] = ids if ids.type == pa.string() else ids.cast(pa.string())
    else:
        out["row"] = _arrow(rows if every else rows[good], pa.int64())
    # Rounded: exact enough for ranking and alerting, and much faster to write.
    out["anomaly_score"] = _arrow(np.round(scores, 6), pa.float64())
    out["is_anomaly"] = _arrow(flagged, pa.bool_())
    names = _strings(scorer.preprocessor_.input_columns_)
    for k in range(top.shape[1]):
        out[f"feature_{k + 1}"] = _take(names, top[:, k])
        out[f"contribution_{k + 1}"] = _arrow(
            np.round(shares[:, k].astype(np.float64), 4), pa.float64()
        )
    return pa.table(out), int(flagged.sum())


_NUMPY_TYPES = {pa.float64(): np.float64, pa.int64(): np.int64}


def _strings(texts: list[str]) -> pa.Array:
    """A list of str as an Arrow string array (see :func:`_arrow`)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def _take(values: pa.Array, indices: np.ndarray) -> pa.Array:
    """``values.take(indices)``, without importing ``pyarrow.compute``.

    That import wraps every compute function in Python: 60 ms at the start of
    every run, for one function.  ``pyarrow._compute`` is its compiled half.
    """
    try:
        from pyarrow._compute import call_function
    except ImportError:  # pragma: no cover - if pyarrow moves it
        from pyarrow.compute import call_function
    return call_function("take", [values, _arrow(indices, pa.int64())])


def _arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A null-free numpy column as an Arrow array, without ``pa.array``.

    ``pa.array`` imports pandas (0.4 s) to inspect its argument; scoring has no
    other use for pandas.
    """
    if type_ == pa.bool_():
        data = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    else:
        data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[type_])
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(data)])


class _InvalidRow(NamedTuple):
    """A row with the wrong number of fields (pyarrow's, with a file line number)."""

    expected_columns: int
    actual_columns: int
    number: int | None


def _open_job(
    scorer: Scorer,
    path: Path,
    *,
    id_col: str | None,
    on_bad_rows: str,
    top_k: int,
    block_size: int,
    progress: bool | None,
    **settings: Any,
) -> _Job:
    """A job that scores ``path`` with ``scorer``, once its header holds the model's
    columns (and ``id_col``); ``settings`` go to :class:`_Job`."""
    pre = scorer.preprocessor_
    needed = list(pre.input_columns_)
    numeric = [s["name"] for s in pre.specs_ if s["kind"] == "numeric"]
    booleans = [s["name"] for s in pre.specs_ if s.get("boolean")]
    header = read_table_header(path)
    named = [c for c in (id_col, settings.get("label_col")) if c]
    _check_columns(path, header, needed, named)
    check_unique_columns(path, header, [*needed, *named])
    if _is_parquet(path):
        _check_parquet_types(path, numeric, [*needed, *named])
    return _Job(
        scorer,
        path,
        needed=needed,
        numeric=numeric,
        missing_is_bad=numeric if pre.missing == "error" else [],
        booleans=booleans,
        id_col=id_col,
        on_bad_rows=on_bad_rows,
        top_k=top_k,
        block_size=block_size,
        progress=sys.stderr.isatty() if progress is None else progress,
        header=header,
        **settings,
    )


class _Job:
    """One read of one input file, block by block: checks, scores, output.

    Parameters
    ----------
    scorer : Scorer or None
        None for a job that only reads (``_pieces_in_parallel``, ``_parquet_batches``).
    path : Path
    needed : list of str
        The columns to read: the model's (and none other but ``id_col``).
    numeric : list of str
        Those of ``needed`` read as numbers; the others as text.
    missing_is_bad : list of str, default=()
        Numeric columns in which an empty value is a bad row.
    id_col : str, optional
    on_bad_rows : {"error", "skip"}, default="error"
    top_k : int, default=3
    block_size : int, default=DEFAULT_BLOCK_SIZE
    progress : bool, default=False
    threads : int, default=1
        Scoring threads, and as many parsing threads.
    header : list of str, optional
        The file's column names (line 1), read from the file if not given.
    parquet_out : bool, default=False
    compress_out : str, optional
        Codec of a CSV output.
    sink_factory : callable, optional
        Instead of an output file: makes a fresh object with ``write_table`` for
        each run.
    checkpoint : _ScoreCheckpoint, optional
        Where the read of a CSV file records its progress, so that an
        interrupted run can be resumed.
    resume_state : dict, optional
        A state from ``checkpoint``: the run continues after it.
    label_col : str, optional
        A label column, checked with ``label_rule`` (a missing or unknown label is
        a bad row); the tables then say which rows are anomalies
        (:func:`_with_labels`).
    label_rule : LabelRule, optional
    booleans : sequence of str, default=()
        Those of ``numeric`` fitted on booleans, read as booleans.
    """

    def __init__(
        self,
        scorer: Scorer | None,
        path: Path,
        *,
        needed: list[str],
        numeric: list[str],
        missing_is_bad: list[str] | tuple = (),
        id_col: str | None = None,
        on_bad_rows: str = "error",
        top_k: int = 3,
        block_size: int = DEFAULT_BLOCK_SIZE,
        progress: bool = False,
        threads: int = 1,
        header: list[str] | None = None,
        parquet_out: bool = False,
        compress_out: str | None = None,
        sink_factory: Any = None,
        checkpoint: _ScoreCheckpoint | None = None,
        resume_state: dict[str, Any] | None = None,
        label_col: str | None = None,
        label_rule: LabelRule | None = None,
        booleans: Sequence[str] = (),
    ):
        self.scorer, self.path, self.needed = scorer, path, needed
        self.label_col, self.label_rule = label_col, label_rule
        self.numeric, self.missing_is_bad = numeric, list(missing_is_bad)
        self.id_col, self.on_bad_rows = id_col, on_bad_rows
        self.top_k, self.block_size, self.progress = top_k, block_size, progress
        self._parse_bytes = min(block_size, PARSE_BYTES)
        self.threads = max(1, int(threads))
        self.header = header
        self.parquet_out, self.compress_out = parquet_out, compress_out
        self.sink_factory = sink_factory
        self.checkpoint, self.resume_state = checkpoint, resume_state
        self.piece_ends: deque = deque()
        self.emitted: tuple | None = None
        # Where rejected rows are kept during a run (see _Rejects).
        self.rejects_spill: Path | None = None
        self.rejects_dir: Path | None = None
        self.rejects = _Rejects()
        self.categorical = [c for c in needed if c not in numeric]
        # Number columns fitted on booleans: read as true/false (or 1/0), as
        # pandas writes them.
        self.booleans = set(booleans)
        self.text_columns: set[str] = set()  # number columns found to hold text
        self.dirty_columns: set[str] = set()  # of those, not clean in the last piece
        self.sink = None

    def _progress(self) -> dict[str, Any]:
        """Where a read can go on after the last piece written to the output: the
        input offset after it, the counts and the rejects up to it."""
        offset, n_input, n_scored, n_anomalies, rejected = self.emitted
        rejects_bytes, n_rejected, last_line = rejected
        return {
            "input_offset": offset,
            "n_input": n_input,
            "n_scored": n_scored,
            "n_anomalies": n_anomalies,
            "rejects_bytes": rejects_bytes,
            "n_rejected": n_rejected,
            "rejects_last_line": last_line,
        }

    def _parquet_batches(self):
        """Yield (batch, data row numbers, None, []) of a Parquet file, then a last
        item with no batch (as :meth:`_pieces_in_parallel` does)."""
        named = [c for c in (self.id_col, self.label_col) if c]
        columns = list(dict.fromkeys(self.needed + named))
        # Read through a 1 MiB buffer, not whole column chunks at once (1M rows in
        # one row group: 710 MiB peak before, 520 MiB after; the same bytes out).
        parquet = _parquet().ParquetFile(
            self.path, buffer_size=1 << 20, pre_buffer=False
        )
        rows_per_batch = max(1024, self.block_size // max(1, 8 * len(columns)))
        done = 0
        for batch in parquet.iter_batches(batch_size=rows_per_batch, columns=columns):
            rows = np.arange(done + 1, done + batch.num_rows + 1)
            done += batch.num_rows
            yield batch, rows, None, []
        yield None, None, None, []

    def _column_types(self, careful: bool = False) -> dict[str, pa.DataType]:
        """Arrow types to read the needed columns as: numbers, or text to check
        (every numeric column if ``careful``, else those in ``text_columns``)."""
        text_type = pa.string()
        column_types = {
            c: (
                text_type
                if careful or c in self.text_columns
                else pa.bool_()
                if c in self.booleans
                else pa.float64()
            )
            for c in self.numeric
        }
        for c in self.categorical:
            column_types[c] = text_type
        for c in (self.id_col, self.label_col):
            if c:
                column_types[c] = text_type
        return column_types

    def _pieces_in_parallel(self, pool: ThreadPoolExecutor):
        """Yield (batch, data row numbers, line numbers, invalid rows) of a CSV
        file, then a last item with no batch.

        The file is cut at line ends into pieces (:func:`_csv_pieces`) that ``pool``
        parses side by side, with typed columns; pieces come back in file order.
        A piece with a row that does not parse (a wrong number of fields, text in a
        number column) is parsed again, alone (:meth:`_parse_carefully`): its rows
        with a wrong number of fields come back as invalid rows, and a number
        column with text in it comes back as text, for validation to name the
        values that are not numbers.  Line numbers are pyarrow's (empty lines not
        counted; see :func:`_physical_lines`).
        """
        if self.header is None:
            self.header = read_table_header(self.path)
        pending: deque = deque()
        resumed = self.resume_state
        done = resumed["n_input"] if resumed else 0  # lines read so far, header aside
        start = resumed["input_offset"] if resumed else None

        def parsed():
            nonlocal done
            future, piece = pending.popleft()
            try:
                batch, invalid = future.result(), []
                lines = 2 + np.arange(done, done + batch.num_rows)
            except pa.ArrowInvalid:
                batch, lines, invalid = self._parse_carefully(piece, done)
            done += batch.num_rows + len(invalid)
            self.piece_ends.append((piece.end, done))
            return batch, lines - 1, lines, invalid

        try:
            pieces = _csv_pieces(self.path, self.block_size * PIECE_BLOCKS, start)
            for piece in pieces:
                args = (piece, self.header, self._column_types(), self._parse_bytes)
                pending.append((pool.submit(_parse_piece, *args), piece))
                if len(pending) > self.threads:  # parse at most `threads` ahead
                    yield parsed()
            while pending:
                yield parsed()
        finally:
            for future, _ in pending:
                future.cancel()
        yield None, None, None, []

    def _parse_carefully(
        self, piece: _Piece, done: int
    ) -> tuple[pa.RecordBatch, np.ndarray, list[_InvalidRow]]:
        """A piece that did not parse with typed columns, parsed again: its batch,
        the line numbers of its rows, and its rows with a wrong number of fields.
        ``done``: the lines before the piece, header aside.

        A number column that holds something else is read as text, in this piece
        and the pieces after it (``text_columns``: text in one piece often means
        text in others), so that validation can name the values; the other columns
        stay typed.  The text read of a column costs about twice its typed read;
        each column that turns out to hold text costs one more read of the piece.
        If pyarrow's error does not name a column, every number column is read as
        text.  A column with bytes that are not UTF-8 text is read as bytes, here
        only, for validation to reject those rows (:func:`_decode_bytes`).
        """
        invalid: list[_InvalidRow] = []
        as_bytes: set[str] = set()

        def on_invalid_row(row) -> str:
            # pyarrow numbers the piece's lines from 1 (empty lines not counted).
            number = None if row.number is None else 1 + done + row.number
            expected, actual = row.expected_columns, row.actual_columns
            invalid.append(_InvalidRow(expected, actual, number))
            return "skip"

        careful = False
        while True:
            invalid.clear()
            types = self._column_types(careful)
            types.update((c, pa.binary()) for c in as_bytes)
            try:
                batch = _parse_piece(
                    piece, self.header, types, self._parse_bytes, on_invalid_row
                )
                break
            except pa.ArrowInvalid as exc:
                column = _failed_column(exc, self.header)
                typed = types.get(column) in (pa.float64(), pa.bool_())
                if "invalid UTF8" in str(exc) and column in types:
                    if column in as_bytes:  # pragma: no cover - bytes always read
                        raise BadInputError(f"{self.path}: {exc}") from exc
                    as_bytes.add(column)
                elif not careful and typed:
                    self.text_columns.add(column)
                elif not careful:
                    careful = True
                else:  # not a matter of values
                    raise BadInputError(f"{self.path}: {exc}") from exc
        index = np.arange(batch.num_rows)
        # A row's line: the lines before the piece, then its place among the valid
        # rows, then the invalid rows before it (the j-th invalid line has
        # `number - 2 - done - j` valid rows before it; an unknown number, first).
        numbers = [-1 if r.number is None else r.number for r in invalid]
        before = np.sort(np.array(numbers, dtype=np.int64)) - 2 - done
        before -= np.arange(len(invalid))
        lines = 2 + done + index + np.searchsorted(before, index, side="right")
        return batch, lines, invalid

    def run(self, output: Path) -> None:
        """Read the file into ``output``: from line 2, or after the rows already
        in ``output`` when resuming (``resume_state``)."""
        self.n_input = self.n_scored = self.n_anomalies = 0
        self.piece_ends = deque()  # (byte offset, rows) after each piece, in order
        # (offset, rows, scored, anomalies, rejects position) after the last piece
        self.emitted = None
        at = None
        if self.resume_state:
            state = self.resume_state
            self.n_input, self.n_scored = state["n_input"], state["n_scored"]
            self.n_anomalies = state["n_anomalies"]
            at = (
                state["rejects_bytes"],
                state["n_rejected"],
                state["rejects_last_line"],
            )
        self.rejects = _Rejects(self.rejects_spill, at, self.rejects_dir)
        self.sink = self.sink_factory() if self.sink_factory else None
        writer = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                desc=f"scoring {self.path.name}", unit=" rows", initial=self.n_input
            )
        else:  # importing tqdm.auto alone takes 0.13 s
            bar = _NoProgress()
        # Blocks are validated here, in order (first bad row, rejects), then scored
        # by `threads` workers (numpy releases the GIL in its products), and their
        # tables written in input order.
        pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="ganomaly-score")
            if self.threads > 1
            else None
        )
        parsers = None
        pending: deque = deque()

        def emit(table: pa.Table | None, n_flagged: int, n_rows: int, rejected) -> None:
            nonlocal writer
            if table is not None:
                self.n_scored += table.num_rows
                self.n_anomalies += n_flagged
                if writer is None:
                    writer = self.sink or _BackgroundWriter(
                        self._open_output(output, table.schema)
                    )
                writer.write_table(table)
            bar.update(n_rows)
            if self.piece_ends:  # the fast read of a CSV file: one entry a piece
                offset, n_input = self.piece_ends.popleft()
                counts = (self.n_scored, self.n_anomalies, rejected)
                self.emitted = (offset, n_input, *counts)
                if self.checkpoint is not None and self.checkpoint.due():
                    state = self._progress()
                    if writer is None:  # nothing written yet
                        self.rejects.sync()
                        self.checkpoint.save(state, output_bytes=0)
                    else:
                        saver = self.checkpoint.saver(state, self.rejects.sync)
                        writer.after_writes(saver)

        def drain(keep: int) -> None:
            while len(pending) > keep:
                future, n_rows, rejected = pending.popleft()
                emit(*future.result(), n_rows, rejected)

        try:
            if _is_parquet(self.path):
                batches = _prefetch(_regroup(self._parquet_batches(), GROUP_ROWS))
            else:
                parsers = ThreadPoolExecutor(
                    self.threads, thread_name_prefix="ganomaly-parse"
                )
                batches = self._pieces_in_parallel(parsers)
            with _one_blas_thread():  # once for all workers (a global setting)
                for batch, rows, lines, invalid in batches:
                    if invalid and batch is not None and self.on_bad_rows == "error":
                        self._name_values_before(batch, rows, lines, invalid)
                    self._reject_invalid_rows(invalid)
                    if batch is None:
                        continue
                    good, values, ids, labels = self._validate(batch, rows, lines)
                    self.rejects.flush()  # this piece's, before it is recorded
                    rejected = self.rejects.position()
                    work = (self.scorer, batch, values, good, rows, ids)
                    work = (score_batch, *work, self.id_col, self.top_k)
                    if labels is not None:
                        work = (_with_labels, labels[good], *work[1:])
                    if pool is None:
                        emit(*work[0](*work[1:]), batch.num_rows, rejected)
                    else:
                        future = pool.submit(*work)
                        pending.append((future, batch.num_rows, rejected))
                        drain(keep=2 * self.threads)
                drain(keep=0)
            if writer is None:
                writer = self.sink or self._open_output(output, self._empty_schema())
            self.rejects.flush()  # invalid rows of the last piece
        finally:
            for executor in (pool, parsers):
                if executor is not None:
                    executor.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if writer is not None:
                writer.close()

    def _open_output(self, output: Path, schema: pa.Schema):
        if self.resume_state:  # after the rows written by the interrupted run
            append_at = self.resume_state["output_bytes"]
            return _CsvWriter(output, schema, append_at=append_at)
        return _open_writer(output, schema, self.parquet_out, self.compress_out)

    def _validate(self, batch, rows, lines):
        """Good-row mask, float values, ids and labels (whether each row is an
        anomaly, or None) of a block; bad rows rejected."""
        batch, bad = _decode_bytes(batch)
        values, more = _validate_batch(
            batch, self.numeric, self.missing_is_bad, self.dirty_columns, self.booleans
        )
        bad += more
        bad += _empty_rows(batch, self.needed, values)
        ids = batch.column(self.id_col) if self.id_col else None
        labels = None
        if self.label_col:
            labels = self._check_labels(batch.column(self.label_col), bad)
        self.n_input += batch.num_rows
        good = np.ones(batch.num_rows, dtype=bool)
        if not bad:
            return good, values, ids, labels
        bad.sort()
        if self.on_bad_rows == "error":
            index, column, reason = bad[0]
            line = int(lines[index]) if lines is not None else None
            line = _physical_lines(self.path, [line]).get(line, line)
            raise BadInputError(
                _describe(self.path, line, int(rows[index]), column, reason)
                + "; use --on-bad-rows skip to score the other rows"
            )
        first = {}  # a row's first bad cell
        for index, column, reason in bad:
            first.setdefault(index, (column, reason))
        indices = np.fromiter(first, dtype=np.intp, count=len(first))
        good[indices] = False
        idents = _take(ids, indices).to_pylist() if ids is not None else None
        row_numbers = rows[indices].tolist()
        line_numbers = lines[indices].tolist() if lines is not None else None
        for k, (column, reason) in enumerate(first.values()):
            line = line_numbers[k] if line_numbers is not None else None
            ident = idents[k] if idents is not None else None
            self.rejects.add(row_numbers[k], line, column, reason, ident)
        return good, values, ids, labels

    def _check_labels(self, column: pa.Array, bad: list) -> np.ndarray:
        """Whether each label is an anomaly; missing and unknown labels (those
        the rule knows as neither normal nor anomalous) added to ``bad``."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        missing = _null_mask(column)
        texts = np.array(column.to_pylist(), dtype=object)
        texts[missing] = ""
        anomalous, unknown = self.label_rule.classify(texts)
        for index in np.flatnonzero(missing):
            bad.append((int(index), self.label_col, "missing label"))
        unknown &= ~missing
        for index in np.flatnonzero(unknown):
            bad.append(
                (
                    int(index),
                    self.label_col,
                    f"label {texts[index]!r} is neither normal nor an anomaly "
                    f"({self.label_rule.describe()})",
                )
            )
        return anomalous

    def _name_values_before(self, batch, rows, lines, invalid) -> None:
        """Under ``on_bad_rows="error"``: a bad value on a line before the piece's
        first row with a wrong number of fields is the first bad row, the one to
        name (raises :class:`BadInputError`)."""
        first = min((r.number for r in invalid if r.number is not None), default=None)
        n = 0 if first is None else int(np.searchsorted(lines, first))
        if n:
            head = batch.slice(0, n)
            if _validate_batch(head, self.numeric, self.missing_is_bad)[1]:
                self._validate(head, rows[:n], lines[:n])  # names the first

    def _reject_invalid_rows(self, invalid: list) -> None:
        for row in invalid:
            line = int(row.number) if row.number is not None else None
            reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
            if self.on_bad_rows == "error":
                line = _physical_lines(self.path, [line]).get(line, line)
                raise BadInputError(
                    _describe(self.path, line, (line or 0) - 1, "", reason)
                    + "; use --on-bad-rows skip to score the other rows"
                )
            self.n_input += 1
            self.rejects.add((line or 0) - 1, line, "", reason)

    def _empty_schema(self) -> pa.Schema:
        fields = [
            (self.id_col, pa.string()) if self.id_col else ("row", pa.int64()),
            ("anomaly_score", pa.float64()),
            ("is_anomaly", pa.bool_()),
        ]
        for k in range(1, min(self.top_k, len(self.needed)) + 1):
            fields += [
                (f"feature_{k}", pa.string()),
                (f"contribution_{k}", pa.float64()),
            ]
        return pa.schema(fields)


class ResumeError(BadInputError):
    """An interrupted scoring run cannot be resumed: its progress file belongs to
    another input, model or options, or is damaged; or the files are not what a
    resumable run reads and writes (a CSV input, an uncompressed CSV output)."""


class OutputBusyError(BadInputError):
    """Another process is writing the same output file."""


_PROGRESS_FORMAT = "ganomaly-score-progress-2"  # 2: rejected rows in a file
# Seconds between two records of a run's progress (the output so far synced to disk,
# then a small JSON file): a resumed run redoes about this much work at most.  Runs
# shorter than this record nothing.
CHECKPOINT_SECONDS = 10.0


def _run_identity(
    scorer: Scorer, path: Path, id_col: str | None, on_bad_rows: str, top_k: int
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    stat = path.stat()
    return {
        "input": str(path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "input_sample": _content_sample(path, stat.st_size),
        "model": scorer.digest(),
        "options": {"id_col": id_col, "on_bad_rows": on_bad_rows, "top_k": top_k},
    }


# What :func:`_content_sample` reads of a file: its first and last SAMPLE_EDGE
# bytes and SAMPLE_BLOCKS blocks of SAMPLE_BLOCK bytes spread evenly in between.
SAMPLE_EDGE, SAMPLE_BLOCKS, SAMPLE_BLOCK = 1 << 20, 1024, 1 << 12


def _content_sample(path: Path, size: int) -> str:
    """A digest of a sample of a file's bytes (about 6 MiB whatever its size).

    Size and modification time miss an edit that keeps the size and puts the time
    back; a digest of every byte would cost a read of the whole file at every
    resume (and a hash of it during every run).  This sample catches any edit in
    the first or last MiB or in a sampled block, and any that moves the bytes
    after it (a row made longer or shorter).
    """
    import hashlib

    digest = hashlib.sha256()
    starts = np.linspace(0, max(0, size - SAMPLE_BLOCK), SAMPLE_BLOCKS).astype(np.int64)
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_EDGE))
        for start in np.unique(starts).tolist():
            handle.seek(start)
            digest.update(handle.read(SAMPLE_BLOCK))
        handle.seek(max(0, size - SAMPLE_EDGE))
        digest.update(handle.read(SAMPLE_EDGE))
    return digest.hexdigest()


_IDENTITY_NAMES = {
    "input": "the input file's path",
    "input_size": "the input file's size",
    "input_mtime_ns": "the input file's modification time",
    "input_sample": "the input file's content",
    "model": "the model (or --precision)",
    "options": "the options (--id-col, --on-bad-rows, --top-k)",
}


def _refuse_other_version(path: Path, found: Any, expected: str, start_over: str):
    """Raise :class:`ResumeError` for a progress file that another ganomaly version
    wrote: the ``expected`` format's name with another number."""
    family = expected.rsplit("-", 1)[0] + "-"
    if found != expected and isinstance(found, str) and found.startswith(family):
        raise ResumeError(
            f"{path}: progress recorded by another version of ganomaly ({found}; "
            f"this one reads {expected})" + start_over
        )


class _ScoreCheckpoint:
    """The progress of a run from a CSV file to a CSV file, for resuming it.

    The run writes its rows to ``.NAME.partial`` next to the output ``NAME``;
    :meth:`save` records in ``.NAME.partial.json`` the byte offset in the input
    after the last line scored, the bytes of the partial output that hold those
    lines' rows, the counts up to there and the bytes of the rejected rows kept so
    far (:class:`_Rejects`, in ``.NAME.rejects.partial``), and
    the run's identity (input, model, options).  :meth:`finish` renames the partial
    output to ``NAME``.
    """

    def __init__(self, output: Path, identity: dict[str, Any]):
        self.output = output
        paths = self.paths(output)
        self.partial = paths["partial output"]
        self.state_path = paths["progress record"]
        self.identity = identity
        self.every = self.wait = CHECKPOINT_SECONDS
        self.last = time.monotonic()

    @staticmethod
    def paths(output: Path) -> dict[str, Path]:
        """The files a resumable run into ``output`` keeps next to it."""
        return {
            "partial output": output.with_name(f".{output.name}.partial"),
            "progress record": output.with_name(f".{output.name}.partial.json"),
            "kept rejects": output.with_name(f".{output.name}.rejects.partial"),
        }

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.wait

    def saver(self, state: dict[str, Any], sync_rejects: Any = None):
        """:meth:`save` as a writer action, once the writer has written the rows:
        they (and the rejected rows, with ``sync_rejects``) are synced to disk
        before the record that counts them."""
        self.last = time.monotonic()

        def save(writer) -> None:
            output_bytes = writer.position()
            os.fsync(self.fd)
            if sync_rejects is not None:
                sync_rejects()
            self.save(state, output_bytes)

        return save

    def save(self, state: dict[str, Any], output_bytes: int) -> None:
        started = self.last = time.monotonic()
        record = {"format": _PROGRESS_FORMAT, **self.identity, **state}
        record["output_bytes"] = output_bytes
        text = json.dumps(record)
        # Should records be slow to write (a slow disk), they get rarer, so that
        # writing them never takes more than ~5 % of the run.
        if self.every > 0:  # (0: a record after every piece, for tests)
            self.wait = max(self.every, 20 * (time.monotonic() - started))
        with atomic_write(self.state_path) as tmp:
            Path(tmp).write_text(text)

    def load(self) -> dict[str, Any] | None:
        """The recorded progress, or None if there is none.

        Raises
        ------
        ResumeError
            It is damaged, or from a run of another input, model or options.
        """
        try:
            text = self.state_path.read_text()
        except FileNotFoundError:
            return None
        start_over = f"; delete {self.state_path} and {self.partial} to start over"
        try:
            record = json.loads(text)
            found = record.get("format")
            again = "; run without --resume to start over"
            _refuse_other_version(self.state_path, found, _PROGRESS_FORMAT, again)
            if found != _PROGRESS_FORMAT:
                raise ValueError(f"format {found!r}")
            int(record["input_offset"]), int(record["output_bytes"])
        except ResumeError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ResumeError(
                f"{self.state_path}: damaged progress file ({exc})" + start_over
            ) from exc
        for key, value in self.identity.items():
            if record.get(key) != value:
                raise ResumeError(
                    f"{self.state_path}: cannot resume: {_IDENTITY_NAMES[key]} "
                    "differs from the interrupted run's" + start_over
                )
        size = self.partial.stat().st_size if self.partial.exists() else -1
        if size < record["output_bytes"]:
            raise ResumeError(
                f"{self.partial}: the partial output is missing or shorter than "
                f"recorded ({size} < {record['output_bytes']} bytes)" + start_over
            )
        return record

    def discard(self, keep_partial: bool = False) -> None:
        self.state_path.unlink(missing_ok=True)
        if not keep_partial:
            self.partial.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self):
        """Hold the partial output (:func:`_locked_output`)."""
        with _locked_output(self.output) as fd:
            self.fd = fd
            yield self

    def start(self) -> None:
        """Start from nothing: no progress, an empty partial output."""
        self.state_path.unlink(missing_ok=True)
        os.ftruncate(self.fd, 0)

    def finish(self) -> None:
        """The complete partial output becomes the output; the progress file goes."""
        os.fsync(self.fd)
        os.replace(self.partial, self.output)
        self.state_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked_output(output: Path):
    """The descriptor of ``.NAME.partial`` beside the output ``NAME``, created if
    absent (with the permissions the umask gives), locked against other processes.

    Every run into an output holds it, whatever the output's format: two runs into
    one output would otherwise both write it, and the one to finish last would
    silently replace the other's (a resumable run's rows are written there, too).
    The lock goes with the process, however it ends.

    Raises
    ------
    OutputBusyError
        Another process holds it.
    """
    partial = _ScoreCheckpoint.paths(output)["partial output"]
    partial.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputBusyError(
                    f"{output}: another process is writing this output (it holds "
                    f"{partial})"
                ) from None
            except OSError:  # a file system without locks: go on without
                pass
        yield fd
    finally:
        os.close(fd)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _convert_options(column_types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=column_types,
        include_columns=list(column_types),
        null_values=NULL_VALUES,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )


class _Piece(NamedTuple):
    """Whole records of a CSV file, as :func:`_csv_pieces` cuts them."""

    data: pa.Buffer
    end: int
    """The byte offset just after it in the file (decompressed, if compressed)."""
    newlines_in_values: bool
    """Whether it has quoted fields, which may hold line ends: pyarrow then looks
    for record ends with the quotes in mind (``ParseOptions.newlines_in_values``)."""


def _csv_pieces(path: Path, size: int, start: int | None = None):
    """The data records of a CSV file (line 1, the header, left out) as
    :class:`_Piece` s of about ``size`` bytes, each ending at the end of a record.

    A piece is cut at its last line end outside quoted fields
    (:func:`_after_last_record_end`): a line end inside a quoted field is a
    character of a value, not the end of a row.  Every byte of an uncompressed file
    is copied once, from the file into its piece; the part of a record cut by the
    end of a piece is read again at the start of the next one.  ``start``: the
    offset of a record to start at, instead of the first after the header (a
    compressed file is decompressed up to it).
    """
    if _compression(path) is not None:
        yield from _stream_pieces(path, size, start)
        return
    if start is None:
        with open(path, "rb") as handle:
            start = len(_header_record(path, handle)[0])
    offset = start
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        want = size
        while True:
            piece = np.empty(want, dtype=np.uint8)  # not zeroed, as a bytearray is
            view = memoryview(piece)
            filled = 0
            while filled < want:
                got = handle.readinto(view[filled:])
                if not got:
                    break
                filled += got
            view.release()
            if filled < want:  # the end of the file
                if filled:
                    yield _last_records(path, piece[:filled], offset)
                return
            cut, quoted = _after_last_record_end(piece)
            if cut == 0:  # a record longer than the piece: read it again, whole
                handle.seek(-filled, os.SEEK_CUR)
                want = _longer(path, want, offset)
                continue
            handle.seek(cut - filled, os.SEEK_CUR)
            want = size
            offset += cut
            yield _Piece(pa.py_buffer(piece).slice(0, cut), offset, quoted)


_QUOTE, _NEWLINE, _RETURN, _COMMA = b'"'[0], b"\n"[0], b"\r"[0], b","[0]
# A record (a line, with the line ends inside its quoted fields) longer than this is
# refused rather than read into memory: it is an unclosed quote, or not a CSV file.
MAX_RECORD_BYTES = 1 << 28


def _longer(path: Path, size: int, offset: int) -> int:
    """The next size to read a record too long for ``size`` bytes in, up to
    :data:`MAX_RECORD_BYTES`; past it, a BadInputError naming the line."""
    if size >= MAX_RECORD_BYTES:
        raise BadInputError(
            f"{path}: line {_line_at(path, offset)}: no end of the row within "
            f'{MAX_RECORD_BYTES >> 20} MiB: a quote (") that opens a field and '
            "never closes it, or not a CSV file"
        )
    return min(2 * size, MAX_RECORD_BYTES)


def _after_last_line_end(data: np.ndarray) -> int:
    """The offset just after the last newline byte in ``data`` (bytes as uint8), 0
    if there is none.  Searched from the end, in growing windows: most lines are
    shorter than 4 KiB."""
    window = 1 << 12
    while True:
        start = max(0, data.size - window)
        found = np.flatnonzero(data[start:] == _NEWLINE)
        if found.size:
            return start + int(found[-1]) + 1
        if start == 0:
            return 0
        window *= 8


def _after_last_record_end(data: np.ndarray) -> tuple[int, bool]:
    """The offset just after the last line end of ``data`` that ends a record, 0 if
    none does, and whether pyarrow must read its quoted fields as possibly holding
    line ends.

    ``data`` (bytes as uint8) starts at the start of a record.  A piece without a
    quote character, the common case, costs a look for one on top of the search
    for the last line end.  With quotes, the line ends are tried from the last one
    back, each by the quotes just before it (:func:`_open_quote`), and the piece is
    parsed quote-aware (5 % more parse time, so not for pieces without quotes).
    """
    cut = _after_last_line_end(data)
    if cut == 0 or not _has_quote(data[:cut]):
        return cut, False
    while cut:
        opened = _open_quote(data, cut - 1)
        if opened < 0:
            return cut, True
        cut = _after_last_line_end(data[:opened])  # before the record's open field
    return 0, True


def _has_quote(data: np.ndarray, step: int = 1 << 18) -> bool:
    """Whether ``data`` holds a quote character, looked for in cache-sized steps
    (a comparison of the whole piece at once costs a fresh 4 MiB array)."""
    scratch = np.empty(min(step, data.size), dtype=bool)
    for start in range(0, data.size, step):
        part = data[start : start + step]
        found = scratch[: part.size]
        np.equal(part, _QUOTE, out=found)
        if found.any():
            return True
    return False


def _last_records(path: Path, data: np.ndarray, offset: int) -> _Piece:
    """The last piece of a file: ``data``, which ends where the file ends, read
    from ``offset``.  A quoted field still open there is refused: its quote would
    make every line after it one value, and those rows would be lost."""
    quoted = _has_quote(data)
    if quoted:
        opened = _open_quote(data, data.size)
        if opened >= 0:
            raise BadInputError(
                f'{path}: line {_line_at(path, offset + opened)}: a quote (") opens '
                "a field that is never closed: every line after it would be one "
                "value; close or remove the quote"
            )
    return _Piece(pa.py_buffer(data), offset + data.size, quoted)


def _line_at(path: Path, offset: int) -> int:
    """The number of the line at byte ``offset`` of a file (decompressed)."""
    newlines, done = 0, 0
    with _open_bytes(path) as handle:
        while done < offset:
            data = handle.read(min(1 << 22, offset - done))
            if not data:
                break
            newlines += data.count(b"\n")
            done += len(data)
    return newlines + 1


def _quote_runs(
    data: np.ndarray, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of quote characters in ``data[start:stop]``: where each starts (in
    ``data``), whether its length is odd, and whether it starts a field.

    The one place that says how quotes are read (see :func:`_line_ends`).  A run at
    ``start`` starts a field if ``start`` is 0; the caller does not cut a run.
    """
    quotes = start + np.flatnonzero(data[start:stop] == _QUOTE)
    first = np.ones(quotes.size, dtype=bool)
    first[1:] = np.diff(quotes) != 1
    starts = quotes[first]
    odd = (np.diff(np.append(np.flatnonzero(first), quotes.size)) & 1).astype(bool)
    before = data[np.maximum(starts - 1, 0)]
    field_start = (
        (starts == 0) | (before == _COMMA) | (before == _NEWLINE) | (before == _RETURN)
    )
    return starts, odd, field_start


def _open_quote(data: np.ndarray, stop: int, window: int = 1 << 12) -> int:
    """The offset of the quote that opened the quoted field still open just before
    ``stop`` in ``data`` (which starts at the start of a record), or -1 if none is.

    Only the quotes after the last run that leaves a field unquoted matter (see
    :func:`_line_ends`), so they are looked for back from ``stop`` in growing
    windows (the first of ``window`` bytes): in most files a closing quote is a
    few bytes back.
    """
    while True:
        start = max(0, stop - window)
        while start > 0 and data[start - 1] == _QUOTE:  # never cut a run of quotes
            start -= 1
        starts, odd, field_start = _quote_runs(data, start, stop)
        resets = np.flatnonzero(odd & ~field_start)
        if resets.size or start == 0:
            after = int(resets[-1]) + 1 if resets.size else 0
            switches = np.flatnonzero(odd[after:] & field_start[after:])
            return int(starts[after + switches[-1]]) if switches.size & 1 else -1
        window *= 8


def _line_ends(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The offsets of the newline bytes of ``data`` and, for each, whether it is
    inside a quoted field (a character of a value) rather than a line end.

    ``data`` (bytes as uint8) starts at the start of a record.  Quotes are read as
    pyarrow's CSV parser and Python's ``csv`` module read them (RFC 4180, and what
    both do with text outside it): a quote opens a quoted field only at the start
    of a field (after a comma, a line end, or at the start); inside one, two quotes
    are a quote character and a single one closes the field; a quote anywhere else
    is a character.  So only runs of quotes matter (:func:`_quote_runs`), and each
    acts on "inside a quoted field" in one of three ways: a run of even length
    changes nothing; a run of odd length at the start of a field switches it (opens
    an unquoted field's quotes, or closes a quoted field); a run of odd length
    elsewhere leaves the field unquoted (it closes a quoted field, or is text in an
    unquoted one).  Whether a line end is inside is then the parity of the
    switches since the last such reset, all computed with numpy.

    Examples
    --------
    >>> data = np.frombuffer(b'1,"a\\nb""\\nc"\\n2,x"\\n3,"\\n"\\n', np.uint8)
    >>> ends, inside = _line_ends(data)
    >>> inside.tolist()  # records 1,"a..c" and 3,"\\n" hold line ends; x" is text
    [True, True, False, False, True, False]
    """
    ends = np.flatnonzero(data == _NEWLINE)
    starts, odd, field_start = _quote_runs(data)
    if not starts.size:
        return ends, np.zeros(ends.size, dtype=bool)
    switches = np.cumsum(odd & field_start)
    resets = odd & ~field_start
    # Switches counted up to the last reset at or before each run.
    last_reset = np.maximum.accumulate(np.where(resets, np.arange(starts.size), -1))
    at_reset = np.where(last_reset >= 0, switches[np.maximum(last_reset, 0)], 0)
    open_after = ((switches - at_reset) & 1).astype(bool)
    run = np.searchsorted(starts, ends) - 1  # the last run before each line end
    inside = np.zeros(ends.size, dtype=bool)
    seen = run >= 0
    inside[seen] = open_after[run[seen]]
    return ends, inside


def _header_record(path: Path, handle) -> tuple[bytes, bytes]:
    """The header record of a CSV file (line 1, with any quoted line ends in it),
    read from ``handle`` at the start of the file, and the bytes read after it.

    Bounded by :data:`MAX_RECORD_BYTES`, not by a line length: a header of any
    width is read whole.
    """
    data = b""
    chunk = 1 << 16
    while True:
        more = handle.read(chunk)
        data += more
        array = np.frombuffer(data, np.uint8)
        ends, inside = _line_ends(array)
        outside = ends[~inside]
        if outside.size:
            cut = int(outside[0]) + 1
            return data[:cut], data[cut:]
        lone_return = re.search(b"\r[^\n]", data)
        if lone_return and not ends.size:
            raise BadInputError(
                f"{path}: line 1 (header): the lines end with a carriage return "
                "alone (classic Mac line ends); save the file with LF or CRLF line "
                "ends"
            )
        if not more:
            return data, b""
        if len(data) >= MAX_RECORD_BYTES:
            _longer(path, len(data), 0)
        chunk = min(2 * chunk, MAX_RECORD_BYTES)


def _stream_pieces(path: Path, size: int, start: int | None = None):
    """:func:`_csv_pieces` of a compressed file, which cannot seek: offsets count
    decompressed bytes, and a ``start`` is reached by decompressing up to it."""

    def read(handle, n: int) -> bytes:
        try:
            return handle.read(n)
        except (OSError, pa.ArrowException, EOFError) as exc:
            raise _unreadable(path, exc) from exc

    with _open_bytes(path) as handle:
        try:
            header, rest = _header_record(path, handle)
        except (OSError, pa.ArrowException, EOFError) as exc:
            raise _unreadable(path, exc) from exc
        offset = len(header)
        if start is not None:
            skip = min(len(rest), start - offset)
            rest, offset = rest[skip:], offset + skip
        while start is not None and offset < start:
            skipped = len(read(handle, min(size, start - offset)))
            if not skipped:
                raise _unreadable(path, EOFError(f"ends before byte {start}"))
            offset += skipped
        while True:
            data = read(handle, size)
            if not data:
                if rest:
                    yield _last_records(path, np.frombuffer(rest, np.uint8), offset)
                return
            data = rest + data if rest else data
            cut, quoted = _after_last_record_end(np.frombuffer(data, np.uint8))
            rest = data[cut:]
            if cut:
                offset += cut
                yield _Piece(pa.py_buffer(data[:cut]), offset, quoted)
            elif len(rest) >= MAX_RECORD_BYTES:
                _longer(path, len(rest), offset)


def _parse_piece(
    piece: _Piece,
    names: list[str],
    column_types: dict[str, pa.DataType],
    block_size: int,
    invalid_row_handler: Any = None,
) -> pa.RecordBatch:
    """One piece of a CSV file as one batch, parsed on this thread, in blocks of
    ``block_size`` bytes (see PARSE_BYTES; ``read_csv`` beats ``open_csv`` here by
    ~10%).  Without ``invalid_row_handler`` a row with the wrong number of fields
    raises ``ArrowInvalid``.  A piece with a line end inside a quoted field is cut
    into blocks with the quotes in mind: pyarrow's fast cut at any line end would
    split that field into rows that do not exist.

    Parsed as one block, a piece's columns would need no joining copy; alone that
    is 0.03 s faster per million rows of 31 numbers, but in a scoring run, beside
    the other threads, 1 MiB blocks were faster (1.66 s against 1.68 s, 3.00
    against 3.04 CPU s, 16 rounds) and peaked 17 MiB lower.
    """

    data = piece.data
    parse_options = pacsv.ParseOptions(
        invalid_row_handler=invalid_row_handler,
        newlines_in_values=piece.newlines_in_values,
    )

    def read(size: int) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=size, use_threads=False
            ),
            parse_options=parse_options,
            convert_options=_convert_options(column_types),
        )

    # pyarrow refuses a line longer than about two blocks (a large text field):
    # "straddling object straddles two block boundaries".  A piece holds whole
    # lines, so one block of its size takes any line in it.
    whole = max(block_size, data.size + 1)
    if invalid_row_handler is not None:
        # Rows go to the handler as they are read: read once, as one block (this
        # careful read is rare: a piece with a bad row).
        table = read(whole)
    else:
        try:
            table = read(block_size)
        except pa.ArrowInvalid as exc:
            if "straddling" not in str(exc):
                raise
            table = read(whole)
    batches = table.combine_chunks().to_batches()  # one batch, no row copied twice
    if batches:
        return batches[0]
    return pa.RecordBatch.from_arrays(  # no rows: only empty lines
        [column.combine_chunks() for column in table.columns], schema=table.schema
    )


def _failed_column(exc: pa.ArrowInvalid, header: list[str]) -> str | None:
    """The column named by pyarrow's conversion error ("In CSV column #3: ..."),
    or None."""
    found = re.match(r"In CSV column #(\d+)", str(exc))
    if found and int(found.group(1)) < len(header):
        return header[int(found.group(1))]
    return None


def _regroup(items, min_rows: int):
    """Join consecutive small blocks into one of at least ``min_rows`` rows.

    For items of :meth:`_Job._parquet_batches` (no invalid rows); the final item
    (no batch) passes through.
    """
    pending: list = []
    count = 0

    def joined():
        if len(pending) == 1:
            return pending[0]
        table = pa.Table.from_batches([p[0] for p in pending]).combine_chunks()
        batch = table.to_batches()[0]
        rows = np.concatenate([p[1] for p in pending])
        lines = (
            None if pending[0][2] is None else np.concatenate([p[2] for p in pending])
        )
        return batch, rows, lines, []

    for item in items:
        batch, _, _, invalid = item
        if batch is None or invalid or batch.num_rows == 0:
            if pending:
                yield joined()
                pending, count = [], 0
            yield item
            continue
        pending.append(item)
        count += batch.num_rows
        if count >= min_rows:
            yield joined()
            pending, count = [], 0
    if pending:
        yield joined()


def _prefetch(items, depth: int = 2):
    """Iterate ``items`` in a background thread, ``depth`` items ahead.

    pyarrow parses CSV without holding the GIL, so reading the next block overlaps
    with scoring the current one; at most ``depth`` blocks wait in memory.
    """
    box: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                put(item)
                if stop.is_set():
                    return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)

    thread = threading.Thread(target=work, name="ganomaly-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class _BackgroundWriter:
    """Writes tables in a thread, so formatting the output overlaps with scoring.

    pyarrow formats and writes without the GIL.  At most two tables wait; an error
    in the thread is raised by the next :meth:`write_table` or by :meth:`close`.
    """

    def __init__(self, writer) -> None:
        self.writer = writer
        self.box: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="ganomaly-writer")
        self.thread.daemon = True
        self.thread.start()

    def _work(self) -> None:
        while True:
            item = self.box.get()
            if item is None:
                return
            if self.error is None:
                try:
                    if callable(item):
                        item(self.writer)
                    else:
                        self.writer.write_table(item)
                except BaseException as exc:  # re-raised in the caller
                    self.error = exc

    def after_writes(self, action) -> None:
        """Call ``action(writer)`` in the thread once the tables given so far are
        written."""
        if self.error is not None:
            raise self.error
        self.box.put(action)

    def write_table(self, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.box.put(table)

    def close(self) -> None:
        self.box.put(None)
        self.thread.join()
        try:
            self.writer.close()
        finally:
            if self.error is not None:
                raise self.error


class _ParquetWriter:
    """A Parquet output whose row groups hold ``OUTPUT_ROW_GROUP_ROWS`` rows (the
    last one fewer), whatever the size of the tables written."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.writer = _parquet().ParquetWriter(str(path), schema)
        self.pending: list[pa.Table] = []
        self.rows = 0

    def write_table(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= OUTPUT_ROW_GROUP_ROWS:
            gathered = pa.concat_tables(self.pending)
            size = OUTPUT_ROW_GROUP_ROWS
            self.writer.write_table(gathered.slice(0, size), row_group_size=size)
            rest = gathered.slice(size)
            self.pending, self.rows = [rest], rest.num_rows

    def close(self) -> None:
        if self.rows:
            self.writer.write_table(
                pa.concat_tables(self.pending), row_group_size=OUTPUT_ROW_GROUP_ROWS
            )
        self.writer.close()


class _CsvWriter:
    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        compression: str | None = None,
        append_at: int | None = None,
    ):
        """``append_at``: keep the file's first ``append_at`` bytes (its header and
        rows written by an interrupted run) and write after them."""
        self.raw = None  # under a gzip stream of Python's own
        if append_at is None and compression == "gzip":
            # pyarrow's gzip streams compress at zlib's level 9, with no way to ask
            # for another: 16 s for a 1M-row output (64 MB), twelve times the
            # scoring.  gzip's own default, 6: 3.6 s, for 3 % more bytes.  (No file
            # name and no time in the header, as pyarrow's: the same rows give the
            # same bytes.)
            import gzip

            self.raw = open(path, "wb")
            self.handle = gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=self.raw,
                compresslevel=GZIP_LEVEL,
                mtime=0,
            )
        elif append_at is None:
            self.handle = pa.output_stream(str(path), compression=compression)
        else:
            os.truncate(path, append_at)
            self.handle = pa.OSFile(str(path), mode="ab")
        options = pacsv.WriteOptions(
            include_header=append_at is None or append_at == 0,
            batch_size=WRITE_BATCH_ROWS,
        )
        self.writer = pacsv.CSVWriter(self.handle, schema, write_options=options)
        self.path = path
        self.synced = self.handle.tell()  # bytes written when last synced
        self.sync_fd: int | None = None
        self.can_sync = True

    def position(self) -> int:
        """Bytes written to the file so far (flushed, not synced)."""
        self.handle.flush()
        return self.handle.tell()

    def write_table(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        if self.can_sync and self.handle.tell() - self.synced >= SYNC_BYTES:
            self._sync()

    def _sync(self) -> None:
        """Have the rows written so far put on disk now, while scoring goes on.

        The file is synced once more before it is renamed into place; that sync
        then has only the last ``SYNC_BYTES`` to wait for, instead of the whole
        output (0.05-0.07 s for 64 MB here, at the end of every run).
        """
        self.handle.flush()
        self.synced = self.handle.tell()
        try:
            if self.sync_fd is None:
                self.sync_fd = os.open(self.path, os.O_WRONLY)
            getattr(os, "fdatasync", os.fsync)(self.sync_fd)
        except OSError:  # not here (a special file...): the final sync, before
            self.can_sync = False  # the rename, reports any real error

    def close(self) -> None:
        try:
            self.writer.close()
            self.handle.close()
            if self.raw is not None:
                self.raw.close()
        finally:
            if self.sync_fd is not None:
                os.close(self.sync_fd)


def _open_writer(path: Path, schema: pa.Schema, parquet: bool, compression=None):
    if parquet:
        return _ParquetWriter(path, schema)
    return _CsvWriter(path, schema, compression)
