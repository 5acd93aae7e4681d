"""One read of one input file, block by block: parse, check, score, write."""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from .._scorer import Scorer
from ..labels import LabelRule
from ..threads import one_blas_thread
from .arrow import float_values, strings_array, take_rows, to_arrow, true_mask
from .checks import (
    check_columns,
    check_labels,
    check_parquet_types,
    check_unique_columns,
    decode_bytes,
    describe_row,
    empty_rows,
    validate_batch,
)
from .csv_pieces import (
    PARSE_BYTES,
    PIECE_BLOCKS,
    Piece,
    failed_column,
    parse_piece,
    physical_lines,
    read_pieces,
    read_table_header,
)
from .errors import BadInputError
from .formats import is_parquet, parquet_module
from .outputs import BackgroundWriter, CsvWriter, Rejects, open_writer, output_schema
from .progress import ScoreCheckpoint

# Bytes of CSV per block (a piece is PIECE_BLOCKS blocks; measured when a block was
# also what pyarrow parsed at a time: a 1M-row file streamed in 1.9 s with 1 MiB
# blocks, 3.0 s with 8 MiB).  Parquet batches are regrouped into
# GROUP_ROWS-row groups so that per-group Python overhead stays small; about as many
# rows as a CSV piece, since up to 2 x threads groups are in flight (1M rows from
# Parquet: 65,536-row groups peaked at 510 MiB, 16,384-row groups at 315 MiB, in the
# same time).
DEFAULT_BLOCK_SIZE = 1 << 20
GROUP_ROWS = 1 << 14


def default_threads() -> int:
    """Scoring threads by default: the CPUs this process may use, at most 4."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        available = os.cpu_count() or 1
    return max(1, min(4, available))


class LabelCollector:
    """A sink for :class:`Job`: keeps the scores and which rows are anomalies
    (the column :func:`_with_labels` adds)."""

    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []
        self.anomalous: list[np.ndarray] = []

    def write_table(self, table: pa.Table) -> None:
        scores = table.column("anomaly_score").combine_chunks()
        self.scores.append(float_values(scores))
        flags = table.column(_LABEL_FLAGS).combine_chunks()
        self.anomalous.append(true_mask(flags))

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
        table = table.append_column(_LABEL_FLAGS, to_arrow(flags, pa.bool_()))
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
        Float values of the numeric columns, from ``validate_batch``.
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
        ids = ids if every else ids.filter(to_arrow(good, pa.bool_()))
        out[id_col] = ids if ids.type == pa.string() else ids.cast(pa.string())
    else:
        out["row"] = to_arrow(rows if every else rows[good], pa.int64())
    # Rounded: exact enough for ranking and alerting, and much faster to write.
    out["anomaly_score"] = to_arrow(np.round(scores, 6), pa.float64())
    out["is_anomaly"] = to_arrow(flagged, pa.bool_())
    names = strings_array(scorer.preprocessor_.input_columns_)
    for k in range(top.shape[1]):
        out[f"feature_{k + 1}"] = take_rows(names, top[:, k])
        out[f"contribution_{k + 1}"] = to_arrow(
            np.round(shares[:, k].astype(np.float64), 4), pa.float64()
        )
    return pa.table(out), int(flagged.sum())


class _InvalidRow(NamedTuple):
    """A row with the wrong number of fields (pyarrow's, with a file line number)."""

    expected_columns: int
    actual_columns: int
    number: int | None


def open_job(
    scorer: Scorer,
    path: Path,
    *,
    id_col: str | None,
    on_bad_rows: str,
    top_k: int,
    block_size: int,
    progress: bool | None,
    **settings: Any,
) -> Job:
    """A job that scores ``path`` with ``scorer``, once its header holds the model's
    columns (and ``id_col``); ``settings`` go to :class:`Job`."""
    pre = scorer.preprocessor_
    needed = list(pre.input_columns_)
    numeric = [s["name"] for s in pre.specs_ if s["kind"] == "numeric"]
    booleans = [s["name"] for s in pre.specs_ if s.get("boolean")]
    header = read_table_header(path)
    named = [c for c in (id_col, settings.get("label_col")) if c]
    check_columns(path, header, needed, named)
    check_unique_columns(path, header, [*needed, *named])
    if is_parquet(path):
        check_parquet_types(path, numeric, [*needed, *named])
    return Job(
        scorer,
        path,
        needed=needed,
        numeric=numeric,
        missing_is_bad=needed if pre.missing == "error" else [],
        booleans=booleans,
        id_col=id_col,
        on_bad_rows=on_bad_rows,
        top_k=top_k,
        block_size=block_size,
        progress=sys.stderr.isatty() if progress is None else progress,
        header=header,
        **settings,
    )


class Job:
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
        The columns in which an empty value is a bad row (all of ``needed``
        under the model's ``missing="error"`` policy).
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
    checkpoint : ScoreCheckpoint, optional
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
        checkpoint: ScoreCheckpoint | None = None,
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
        # Where rejected rows are kept during a run (see Rejects).
        self.rejects_spill: Path | None = None
        self.rejects_dir: Path | None = None
        self.rejects = Rejects()
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
        parquet = parquet_module().ParquetFile(
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

        The file is cut at line ends into pieces (:func:`read_pieces`) that ``pool``
        parses side by side, with typed columns; pieces come back in file order.
        A piece with a row that does not parse (a wrong number of fields, text in a
        number column) is parsed again, alone (:meth:`_parse_carefully`): its rows
        with a wrong number of fields come back as invalid rows, and a number
        column with text in it comes back as text, for validation to name the
        values that are not numbers.  Line numbers are pyarrow's (empty lines not
        counted; see :func:`physical_lines`).
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
            pieces = read_pieces(self.path, self.block_size * PIECE_BLOCKS, start)
            for piece in pieces:
                args = (piece, self.header, self._column_types(), self._parse_bytes)
                pending.append((pool.submit(parse_piece, *args), piece))
                if len(pending) > self.threads:  # parse at most `threads` ahead
                    yield parsed()
            while pending:
                yield parsed()
        finally:
            for future, _ in pending:
                future.cancel()
        yield None, None, None, []

    def _parse_carefully(
        self, piece: Piece, done: int
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
        only, for validation to reject those rows (:func:`decode_bytes`).
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
                batch = parse_piece(
                    piece, self.header, types, self._parse_bytes, on_invalid_row
                )
                break
            except pa.ArrowInvalid as exc:
                column = failed_column(exc, self.header)
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
        self.rejects = Rejects(self.rejects_spill, at, self.rejects_dir)
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
                    writer = self.sink or BackgroundWriter(
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
            if is_parquet(self.path):
                batches = _prefetch(_regroup(self._parquet_batches(), GROUP_ROWS))
            else:
                parsers = ThreadPoolExecutor(
                    self.threads, thread_name_prefix="ganomaly-parse"
                )
                batches = self._pieces_in_parallel(parsers)
            with one_blas_thread():  # once for all workers (a global setting)
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
                schema = output_schema(self.id_col, self.top_k, len(self.needed))
                writer = self.sink or self._open_output(output, schema)
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
            return CsvWriter(output, schema, append_at=append_at)
        return open_writer(output, schema, self.parquet_out, self.compress_out)

    def _validate(self, batch, rows, lines):
        """Good-row mask, float values, ids and labels (whether each row is an
        anomaly, or None) of a block; bad rows rejected."""
        batch, bad = decode_bytes(batch)
        values, more = validate_batch(
            batch, self.numeric, self.missing_is_bad, self.dirty_columns, self.booleans
        )
        bad += more
        bad += empty_rows(batch, self.needed, values)
        ids = batch.column(self.id_col) if self.id_col else None
        labels = None
        if self.label_col:
            column = batch.column(self.label_col)
            labels = check_labels(column, self.label_col, self.label_rule, bad)
        self.n_input += batch.num_rows
        good = np.ones(batch.num_rows, dtype=bool)
        if not bad:
            return good, values, ids, labels
        bad.sort()
        if self.on_bad_rows == "error":
            index, column, reason = bad[0]
            line = int(lines[index]) if lines is not None else None
            line = physical_lines(self.path, [line]).get(line, line)
            raise BadInputError(
                describe_row(self.path, line, int(rows[index]), column, reason)
                + "; use --on-bad-rows skip to score the other rows"
            )
        first = {}  # a row's first bad cell
        for index, column, reason in bad:
            first.setdefault(index, (column, reason))
        indices = np.fromiter(first, dtype=np.intp, count=len(first))
        good[indices] = False
        idents = take_rows(ids, indices).to_pylist() if ids is not None else None
        row_numbers = rows[indices].tolist()
        line_numbers = lines[indices].tolist() if lines is not None else None
        for k, (column, reason) in enumerate(first.values()):
            line = line_numbers[k] if line_numbers is not None else None
            ident = idents[k] if idents is not None else None
            self.rejects.add(row_numbers[k], line, column, reason, ident)
        return good, values, ids, labels

    def _name_values_before(self, batch, rows, lines, invalid) -> None:
        """Under ``on_bad_rows="error"``: a bad value on a line before the piece's
        first row with a wrong number of fields is the first bad row, the one to
        name (raises :class:`BadInputError`)."""
        first = min((r.number for r in invalid if r.number is not None), default=None)
        n = 0 if first is None else int(np.searchsorted(lines, first))
        if n:
            head = batch.slice(0, n)
            if validate_batch(head, self.numeric, self.missing_is_bad)[1]:
                self._validate(head, rows[:n], lines[:n])  # names the first

    def _reject_invalid_rows(self, invalid: list) -> None:
        for row in invalid:
            line = int(row.number) if row.number is not None else None
            reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
            if self.on_bad_rows == "error":
                line = physical_lines(self.path, [line]).get(line, line)
                raise BadInputError(
                    describe_row(self.path, line, (line or 0) - 1, "", reason)
                    + "; use --on-bad-rows skip to score the other rows"
                )
            self.n_input += 1
            self.rejects.add((line or 0) - 1, line, "", reason)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _regroup(items, min_rows: int):
    """Join consecutive small blocks into one of at least ``min_rows`` rows.

    For items of :meth:`Job._parquet_batches` (no invalid rows); the final item
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
