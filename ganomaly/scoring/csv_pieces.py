"""A CSV file as pieces of whole records, parsed side by side; the header; line
numbers.

A record ends at a line end outside quoted fields: quotes are read as pyarrow and
Python's ``csv`` module read them (:func:`line_ends`), so that a quoted field
holding line ends is one value wherever the pieces fall."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from gancore.files import special_file

from .errors import BadInputError
from .formats import (
    codec_of,
    is_parquet,
    open_bytes,
    parquet_module,
    refuse_other_formats,
    unreadable,
)

# Empty fields are missing values; "NaN", "nan", "inf" are *not* treated as missing:
# they parse as floats and are rejected, so a typo never becomes a silent imputation.
NULL_VALUES = [""]
# The fast read cuts a CSV file at line ends into pieces of PIECE_BLOCKS blocks
# (4 MiB, ~15,000 rows of 31 numbers) that `threads` threads parse side by side:
# pyarrow's streaming reader parses on one thread (~1.6 s per million rows of 31
# numbers), a ceiling for any number of scoring threads.
PIECE_BLOCKS = 4
# pyarrow parses a piece in parts of at most PARSE_BYTES: they stay in a core's
# cache beside the other threads' work (1M rows, 22 interleaved rounds: 256 KiB 1.5-2 %
# faster than 1 MiB, the same bytes out).  A line longer than that is read whole
# (parse_piece).
PARSE_BYTES = 1 << 18


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
    if is_parquet(path):
        try:
            return list(parquet_module().ParquetFile(path).schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            raise BadInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    try:
        with open_bytes(path) as handle:
            first = _header_record(path, handle)[0]
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise unreadable(path, exc) from exc
    refuse_other_formats(path, first)
    if not first.strip():
        raise BadInputError(
            f"{path}: the file is empty; expected a CSV header line (line 1) and rows"
        )
    # (A name that is not UTF-8 matches no model column, and is reported as such.)
    text = first.decode("utf-8", errors="replace").removeprefix("\ufeff")
    text = text.removesuffix("\n").removesuffix("\r")
    return next(csv.reader(io.StringIO(text, newline="")))


def physical_lines(path: Path, logical: list[int]) -> dict[int, int]:
    """Physical line numbers of pyarrow's line numbers, which count records.

    pyarrow skips empty lines and reads a quoted field across its line ends, so
    its line numbers (and ours, counted from its rows) count the records, which
    fall behind the file's lines after a blank line or a quoted line end.  Only
    when there is something to report: one pass over the file, with numpy, up to
    the last record asked for.
    """
    wanted = sorted({n for n in logical if n is not None})
    if not wanted or is_parquet(path):
        return {n: n for n in wanted}
    before = records_before(skipped_lines(path, until=wanted[-1]))
    physical = past_skipped_lines(np.array(wanted, dtype=np.int64), before)
    return dict(zip(wanted, physical.tolist(), strict=True))


def records_before(skipped: np.ndarray) -> np.ndarray:
    """For each of a file's lines that start no record (:func:`skipped_lines`),
    the records before it: ``skipped - 1 - j`` for the j-th."""
    return skipped - 1 - np.arange(len(skipped))


def past_skipped_lines(records: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Record numbers (pyarrow's line numbers) as the file's line numbers, with
    ``before`` from :func:`records_before`: each line that starts no record, at or
    before a record's place, moves it one on."""
    return records + np.searchsorted(before, records, side="left")


def skipped_lines(path: Path, until: int, chunk: int = 1 << 22) -> np.ndarray:
    """Numbers of the lines of a CSV file that start no record, up to its
    ``until``-th record (line 1, the header, is the first): empty lines ("\\n" or
    "\\r\\n" alone), which pyarrow skips, and the lines that go on with a quoted
    field after a line end inside it."""
    skipped: list[np.ndarray] = []
    lines = records = 0  # before the part read
    rest = b""
    with open_bytes(path) as handle:
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


def _convert_options(column_types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=column_types,
        include_columns=list(column_types),
        null_values=NULL_VALUES,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )


class Piece(NamedTuple):
    """Whole records of a CSV file, as :func:`read_pieces` cuts them."""

    data: pa.Buffer
    end: int
    """The byte offset just after it in the file (decompressed, if compressed)."""
    newlines_in_values: bool
    """Whether it has quoted fields, which may hold line ends: pyarrow then looks
    for record ends with the quotes in mind (``ParseOptions.newlines_in_values``)."""


def read_pieces(path: Path, size: int, start: int | None = None):
    """The data records of a CSV file (line 1, the header, left out) as
    :class:`Piece` s of about ``size`` bytes, each ending at the end of a record.

    A piece is cut at its last line end outside quoted fields
    (:func:`_after_last_record_end`): a line end inside a quoted field is a
    character of a value, not the end of a row.  Every byte of an uncompressed file
    is copied once, from the file into its piece; the part of a record cut by the
    end of a piece is read again at the start of the next one.  ``start``: the
    offset of a record to start at, instead of the first after the header (a
    compressed file is decompressed up to it).
    """
    if codec_of(path) is not None:
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
            yield Piece(pa.py_buffer(piece).slice(0, cut), offset, quoted)


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


def _last_records(path: Path, data: np.ndarray, offset: int) -> Piece:
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
    return Piece(pa.py_buffer(data), offset + data.size, quoted)


def _line_at(path: Path, offset: int) -> int:
    """The number of the line at byte ``offset`` of a file (decompressed)."""
    newlines, done = 0, 0
    with open_bytes(path) as handle:
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
    """:func:`read_pieces` of a compressed file, which cannot seek: offsets count
    decompressed bytes, and a ``start`` is reached by decompressing up to it."""

    def read(handle, n: int) -> bytes:
        try:
            return handle.read(n)
        except (OSError, pa.ArrowException, EOFError) as exc:
            raise unreadable(path, exc) from exc

    with open_bytes(path) as handle:
        try:
            header, rest = _header_record(path, handle)
        except (OSError, pa.ArrowException, EOFError) as exc:
            raise unreadable(path, exc) from exc
        offset = len(header)
        if start is not None:
            skip = min(len(rest), start - offset)
            rest, offset = rest[skip:], offset + skip
        while start is not None and offset < start:
            skipped = len(read(handle, min(size, start - offset)))
            if not skipped:
                raise unreadable(path, EOFError(f"ends before byte {start}"))
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
                yield Piece(pa.py_buffer(data[:cut]), offset, quoted)
            elif len(rest) >= MAX_RECORD_BYTES:
                _longer(path, len(rest), offset)


def parse_piece(
    piece: Piece,
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


def failed_column(exc: pa.ArrowInvalid, header: list[str]) -> str | None:
    """The column named by pyarrow's conversion error ("In CSV column #3: ..."),
    or None."""
    found = re.match(r"In CSV column #(\d+)", str(exc))
    if found and int(found.group(1)) < len(header):
        return header[int(found.group(1))]
    return None
