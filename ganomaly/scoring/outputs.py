"""Where scored rows go: the CSV, compressed CSV and Parquet writers, the rejects
file, and the columns of an output."""

from __future__ import annotations

import csv
import io
import itertools
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .csv_pieces import past_skipped_lines, records_before, skipped_lines
from .errors import ResumeError
from .formats import is_parquet, parquet_module, table_stem

# Rows per row group of a Parquet output: the scored blocks (a CSV piece, ~15,000
# rows) are gathered into row groups of this size, as Parquet readers prefer.
OUTPUT_ROW_GROUP_ROWS = 1 << 17
# Rows that pyarrow's CSV writer formats at a time: its default, 1,024, costs 10 %
# more (1M output rows: 0.395 s against 0.354 s, the same bytes).
WRITE_BATCH_ROWS = 1 << 14
# zlib level of a .csv.gz output (gzip's default; see CsvWriter).
GZIP_LEVEL = 6
# A CSV output is synced to disk every SYNC_BYTES as it is written (CsvWriter).
SYNC_BYTES = 16 << 20


def default_rejects_path(output_path: str | Path) -> Path:
    """Where a run into ``output_path`` lists its rejected rows by default:
    ``scores.rejects.csv`` for ``scores.csv`` (or ``scores.parquet``, ...)."""
    output_path = Path(output_path)
    return output_path.with_name(table_stem(output_path) + ".rejects.csv")


class Rejects:
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
        if self.count and not is_parquet(source):
            skipped = skipped_lines(source, until=self.last_line)
        before = records_before(skipped)
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
                    lines = past_skipped_lines(lines, before)
                    for r, line in zip(rows, lines.tolist(), strict=True):
                        r[1] = line if r[1] else ""
                    writer.writerows(rows if id_col else [r[:4] for r in rows])

    def close(self, remove: bool = False) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if remove and self.spill is not None:
            self.spill.unlink(missing_ok=True)


def output_schema(
    id_col: str | None, top_k: int, n_columns: int | None = None
) -> pa.Schema:
    """The columns of a scored file, in order: the id (or ``row``, the data row
    number), ``anomaly_score``, ``is_anomaly`` and ``top_k`` explanations
    ``feature_k`` / ``contribution_k`` (at most ``n_columns``, the model's)."""
    n_explained = top_k if n_columns is None else min(top_k, n_columns)
    fields = [
        (id_col, pa.string()) if id_col else ("row", pa.int64()),
        ("anomaly_score", pa.float64()),
        ("is_anomaly", pa.bool_()),
    ]
    for k in range(1, n_explained + 1):
        fields += [(f"feature_{k}", pa.string()), (f"contribution_{k}", pa.float64())]
    return pa.schema(fields)


class BackgroundWriter:
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


class ParquetWriter:
    """A Parquet output whose row groups hold ``OUTPUT_ROW_GROUP_ROWS`` rows (the
    last one fewer), whatever the size of the tables written."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.writer = parquet_module().ParquetWriter(str(path), schema)
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


class CsvWriter:
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


def open_writer(path: Path, schema: pa.Schema, parquet: bool, compression=None):
    if parquet:
        return ParquetWriter(path, schema)
    return CsvWriter(path, schema, compression)
