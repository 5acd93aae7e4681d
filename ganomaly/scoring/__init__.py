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

import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gancore.files import atomic_write, check_outputs

from .._scorer import Scorer, load_scorer
from ..labels import LabelRule
from .checks import check_unique_columns
from .csv_pieces import read_table_header
from .errors import BadInputError, OutputBusyError, ResumeError
from .formats import codec_of, is_parquet, resumable
from .job import (
    DEFAULT_BLOCK_SIZE,
    LabelCollector,
    default_threads,
    open_job,
    score_batch,
)
from .outputs import default_rejects_path, output_schema
from .progress import ScoreCheckpoint, ScoringSummary, locked_output, run_identity

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
    "model_for_device",
    "read_table_header",
    "score_batch",
    "score_file",
    "score_labelled",
]
PRECISIONS = ("auto", "float32", "float64")


def model_for_device(
    path: str | Path, device: str = "cpu", precision: str = "auto"
) -> Any:
    """What scores a model file on ``device``: the numpy :class:`Scorer` on the
    CPU (no torch import), else the GANomalyDetector on that device.  The one
    choice of inference path, for the CLI and for Dask workers.

    Raises
    ------
    gancore.ModelFileError
        Not a GANomalyDetector model file.
    """
    if device == "cpu":
        return as_scorer(path, precision)
    from .._detector import GANomalyDetector

    return GANomalyDetector.load(path, device=device)


def as_scorer(model: Any, precision: str = "auto") -> Scorer:
    """A :class:`Scorer` from a Scorer, a fitted GANomalyDetector or a model path.

    Parameters
    ----------
    model : Scorer, GANomalyDetector, str or Path
    precision : {"auto", "float32", "float64"}, default="auto"
        Of the networks' matrix products (ignored for a Scorer).  ``"float64"``:
        the scores of :meth:`GANomalyDetector.anomaly_score`.  ``"float32"``: the
        networks in less time (benchmarks/RESULTS.md), for scores
        within about 1e-4 relative of those.  Either way a row's score does
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
                "about 1e-6 relative between runs that cut the input otherwise "
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
    can_resume = resumable(input_path, output_path)
    _check_run_paths(detector, input_path, output_path, rejects_path, can_resume)
    output_columns = output_schema(None, top_k).names
    if id_col is not None and id_col in output_columns:
        raise BadInputError(
            f"the id column {id_col!r} is also the name of an output column "
            f"({', '.join(output_columns)}); the ids would be lost"
        )
    if resume and not can_resume:
        raise ResumeError(
            "resume needs a CSV input (plain or compressed) and an uncompressed CSV "
            "output, got "
            f"{input_path.name} -> {output_path.name}"
        )
    job = open_job(
        detector,
        input_path,
        id_col=id_col,
        on_bad_rows=on_bad_rows,
        top_k=top_k,
        block_size=block_size,
        progress=progress,
        threads=default_threads() if threads is None else threads,
        parquet_out=is_parquet(output_path),
        compress_out=codec_of(output_path),
    )

    if rejects_path is not None:
        rejects_path = Path(rejects_path)
        job.rejects_dir = rejects_path.parent
        if can_resume:  # kept with the partial output (and its lock), for resume
            job.rejects_spill = ScoreCheckpoint.paths(output_path)["kept rejects"]

    def run(output: Path) -> None:
        job.run(output)
        if job.n_input == 0:
            raise BadInputError(
                f"{input_path}: no data rows"
                + ("" if is_parquet(input_path) else " after the header (line 1)")
            )
        if rejects_path is not None:
            with atomic_write(rejects_path) as tmp_rejects:
                job.rejects.write(Path(tmp_rejects), id_col, input_path)
        if job.n_scored == 0:  # a run that scores nothing has failed
            raise BadInputError(
                f"{input_path}: every one of its {job.n_input} rows was rejected, "
                f"nothing was scored; the reasons are in {rejects_path}"
            )

    if can_resume:
        identity = run_identity(detector, input_path, id_col, on_bad_rows, top_k)
        with ScoreCheckpoint(output_path, identity).locked() as checkpoint:
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
        partial = ScoreCheckpoint.paths(output_path)["partial output"]
        try:
            with locked_output(output_path):
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
        record = ScoreCheckpoint.paths(output_path)
        outputs += [(f"run's {role}", path) for role, path in record.items()]
    inputs = [("input file", input_path), ("model file", scorer.source)]
    check_outputs(outputs, inputs)


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
    job = open_job(
        scorer,
        input_path,
        id_col=None,
        on_bad_rows=on_bad_rows,
        top_k=1,
        block_size=block_size,
        progress=progress,
        label_col=label_col,
        label_rule=labels,
        sink_factory=LabelCollector,
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
