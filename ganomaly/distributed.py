"""Scaling out: batch scoring on a Dask cluster, training under ``torchrun``.

Scoring
-------
Both entry points reuse the single-machine code of :mod:`ganomaly.scoring` -- the
same validation, preprocessing, networks, explanations and output columns -- so a
row scores the same on a laptop and on a cluster.

* :func:`score_files` scores many CSV or Parquet files, one Dask task per file.
  Each worker streams its file with :func:`ganomaly.scoring.score_file` and writes
  ``OUTPUT_DIR/<input stem>.csv`` (``.parquet`` for Parquet inputs) itself, so the
  output files, row numbers, bad-row messages and rejects files are exactly those of
  ``ganomaly score`` on each file, memory stays flat on every worker, and no row
  travels through the client.  Parallelism is per file: give a cluster at least as
  many files as worker threads.  This is what
  ``ganomaly score MODEL 'data/*.csv' -o out/ --scheduler ADDRESS`` runs.
* :func:`score_dask` scores a :class:`dask.dataframe.DataFrame` partition by
  partition and returns a lazy DataFrame of the output columns, with the input's
  index, for pipelines that already hold their data in Dask.

The model travels to the workers as the bytes of its safetensors model file and is
loaded there with :meth:`GANomalyDetector.load` (once per worker process), never as
a pickle of a live torch module: a worker executes no code from the model.  The
files named must be readable by the workers (a shared file system or object store).

Training
--------
``gancore.train_gan`` trains data-parallel when ``torch.distributed`` is
initialised.  ``torchrun --nproc_per_node=N -m ganomaly fit ...`` does that for you;
from Python, join the process group before fitting and save on rank 0 only::

    # torchrun --nproc_per_node=4 train.py
    import gancore
    from ganomaly import GANomalyDetector

    device = gancore.init_distributed("auto")  # NCCL on CUDA, gloo on the CPU
    detector = GANomalyDetector(device=str(device), random_state=0).fit(X)
    if gancore.is_main_process():
        detector.save("model.safetensors")

Every process reads the whole training table and trains on its
``DistributedSampler`` shard; ``batch_size`` stays the global batch (each process
takes ``batch_size / N`` rows per step), so N processes make the same optimiser
steps as one and the same parameters train the same model, N times faster at best.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from gancore.files import check_outputs

from .scoring import (
    BadInputError,
    ScoringSummary,
    as_scorer,
    default_rejects_path,
    model_for_device,
    score_batch,
    score_file,
)
from .scoring.checks import validate_batch
from .scoring.formats import is_parquet, resumable, table_stem
from .scoring.outputs import output_schema
from .scoring.progress import FolderProgress

if TYPE_CHECKING:  # pandas only where a Dask DataFrame is scored (0.35 s to import)
    import pandas as pd

__all__ = [
    "dask_client",
    "expand_inputs",
    "load_detector",
    "model_bytes",
    "score_dask",
    "scoring_model",
    "score_files",
]

# Models loaded in this (worker) process, by the SHA-256 of their model file.
_LOADED: dict[str, Any] = {}
_MAX_LOADED = 4


# ------------------------------------------------------------------- the model
def model_bytes(model: Any) -> bytes:
    """The bytes of a safetensors model file, which is how a model travels.

    Parameters
    ----------
    model : GANomalyDetector, str, Path or bytes
        A fitted detector (saved to a temporary file), a model file, or its bytes.

    Returns
    -------
    bytes
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return Path(model).read_bytes()
    with tempfile.TemporaryDirectory(prefix="ganomaly-model-") as folder:
        path = Path(folder) / "model.safetensors"
        model.save(path)
        return path.read_bytes()


@contextlib.contextmanager
def _model_file(data: bytes) -> Iterator[Path]:
    """Model-file bytes as a temporary file, so that they get exactly the checks
    of a model file on disk (format, kind, version, digest)."""
    with tempfile.TemporaryDirectory(prefix="ganomaly-model-") as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(data)
        yield path


def scoring_model(data: bytes, device: str = "cpu", precision: str = "auto") -> Any:
    """What scores on ``device``, from model-file bytes, once per process: the numpy
    :class:`~ganomaly.Scorer` on the CPU (no torch), else the detector on its
    device (:func:`ganomaly.scoring.model_for_device`, which the CLI uses too).

    Parameters
    ----------
    data : bytes
        From :func:`model_bytes`.
    device : str, default="cpu"
    precision : {"auto", "float32", "float64"}, default="auto"
        Of the CPU scorer (:func:`ganomaly.scoring.as_scorer`).

    Raises
    ------
    gancore.ModelFileError
        The bytes are not a GANomalyDetector model file.
    """
    return _loaded(
        data,
        f"scoring|{device}|{precision}",
        lambda path: model_for_device(path, device, precision),
    )


def _loaded(data: bytes, what: str, load: Callable[[Path], Any]) -> Any:
    """``load`` of the model file holding ``data``, kept per process (the last
    ``_MAX_LOADED``) under the bytes' digest and ``what``."""
    key = f"{hashlib.sha256(data).hexdigest()}|{what}"
    model = _LOADED.get(key)
    if model is None:
        with _model_file(data) as path:
            model = load(path)
        if len(_LOADED) >= _MAX_LOADED:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = model
    return model


def load_detector(data: bytes, device: str = "cpu") -> Any:
    """A detector from model-file bytes, loaded once per process and then reused.

    The bytes go to a temporary file read by :meth:`GANomalyDetector.load`, so they
    get exactly the checks of a model file on disk (format, kind, version, digest).

    Parameters
    ----------
    data : bytes
        From :func:`model_bytes`.
    device : str, default="cpu"

    Returns
    -------
    GANomalyDetector

    Raises
    ------
    gancore.ModelFileError
        The bytes are not a GANomalyDetector model file.
    """
    from ._detector import GANomalyDetector

    return _loaded(
        data,
        f"detector|{device}",
        lambda path: GANomalyDetector.load(path, device=device),
    )


_MALLOC_TUNED = False


def _tune_worker_malloc() -> None:
    """Undo, in this worker process, the malloc setting that halves scoring speed.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``.  Setting that
    variable also switches off glibc's adaptive mmap threshold, so every array
    above 128 KiB -- each block's columns, encodings and errors -- is a fresh mmap
    with page faults: scoring ran at half the speed of one plain process
    (``benchmarks/scale_scoring.py``).  Fixing the thresholds where glibc's
    adaptive rule would put them at most (mmap above 32 MiB, trim above 64 MiB)
    restores the speed and keeps at most 64 MiB of freed heap untrimmed.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith(
        "linux"
    ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 64 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass


# ---------------------------------------------------------------- the cluster
@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None, n_workers: int = 1, threads_per_worker: int = 1
) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler``, or to a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    n_workers : int, default=1
        Without ``scheduler``: worker processes of a ``distributed.LocalCluster``
        started here (and closed on exit).
    threads_per_worker : int, default=1

    Yields
    ------
    distributed.Client
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the dask extra is not installed
        raise ImportError(
            "scoring on Dask needs dask and distributed: pip install 'gankit[dask]'"
        ) from exc
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


# ------------------------------------------------------------------- files
def expand_inputs(patterns: str | Sequence[str]) -> list[Path]:
    """Input files from paths, glob patterns (``'data/*.csv'``) or folders.

    Parameters
    ----------
    patterns : str or sequence of str
        A folder stands for its ``*.csv``, ``*.csv.gz``, ``*.csv.bz2``,
        ``*.csv.zst``, ``*.parquet`` and ``*.pq`` files.

    Returns
    -------
    list of Path
        Sorted within each pattern, without duplicates.

    Raises
    ------
    BadInputError
        A pattern matches no file.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [str(patterns)]
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(
                p
                for suffix in ("*.csv", "*.csv.gz", "*.csv.bz2", "*.csv.zst")
                + ("*.parquet", "*.pq")
                for p in path.glob(suffix)
            )
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(pattern)))
            matches = [p for p in matches if p.is_file()]
        if not matches:
            raise BadInputError(f"{pattern}: no such file(s)")
        found.extend(matches)
    return list(dict.fromkeys(found))


def _output_paths(
    inputs: list[Path], output_dir: Path, model: Any, on_bad_rows: str
) -> list[Path]:
    """The output file of each input, once no output of the run (outputs, rejects
    files, the progress record) would overwrite an input, the model file, another
    output or a special file (:func:`gancore.files.check_outputs`)."""
    outputs = [
        output_dir / (table_stem(p) + (".parquet" if is_parquet(p) else ".csv"))
        for p in inputs
    ]
    planned = [("output folder", output_dir)]
    for source, target in zip(inputs, outputs, strict=True):
        planned.append((f"output of {source}", target))
        if on_bad_rows == "skip":
            planned.append((f"rejects file of {source}", default_rejects_path(target)))
    planned.append(("run's progress record", output_dir / FolderProgress.NAME))
    model_file = Path(model) if isinstance(model, (str, os.PathLike)) else None
    check_outputs(
        planned,
        [("input file", p) for p in inputs] + [("model file", model_file)],
        directories=["output folder"],
    )
    return outputs


def _score_file_task(
    model: bytes, input_path: str, output_path: str, options: dict
) -> ScoringSummary:
    """One file on one worker: the single-machine streaming path (the numpy scorer
    on the CPU: a CPU worker never imports torch)."""
    _tune_worker_malloc()
    threads = options.pop("threads", None)
    device = options.pop("device", "cpu")
    if threads and device != "cpu":
        import torch

        torch.set_num_threads(threads)
    model = scoring_model(model, device, options.get("precision", "auto"))
    # A worker is one of several on its machine: one scoring thread unless told.
    options["threads"] = threads or 1
    return score_file(model, input_path, output_path, progress=False, **options)


def _score_here(
    model: Any,
    paths: list[Path],
    outputs: list[Path],
    output_dir: Path,
    options: dict,
    *,
    device: str,
    precision: str,
    score_threads: int | None,
    progress: bool | None,
    resume: bool,
) -> list[ScoringSummary]:
    """:func:`score_files` without a client: the files one after the other, each
    streamed by ``score_file`` (``options``: its ``id_col``, ``on_bad_rows`` and
    ``top_k``) with ``score_threads`` threads (a Dask task gets one), on the numpy
    scorer when the device is the CPU.

    The files done are recorded in ``output_dir/.ganomaly-score.json`` (removed
    when all are); ``resume`` skips those whose input, model, options and output
    are still the recorded ones, and resumes an interrupted file from its own
    progress record (see ``score_file``).
    """
    if device != "cpu" or isinstance(model, (bytes, bytearray, memoryview)):
        scorer = scoring_model(model_bytes(model), device, precision)
    else:  # a model file, a fitted detector or a Scorer
        scorer = as_scorer(
            Path(model) if isinstance(model, os.PathLike) else model, precision
        )
    record = FolderProgress(output_dir, as_scorer(scorer, precision), options)
    if not resume:
        record.discard()
    summaries, failure = [], None
    for src, dst in zip(paths, outputs, strict=True):
        done = record.done(src, dst) if resume else None
        if done is not None:
            summaries.append(done)
            continue
        can_resume = resumable(src, dst)
        try:
            summary = score_file(
                scorer,
                src,
                dst,
                progress=progress,
                precision=precision,
                threads=score_threads,
                resume=resume and can_resume,
                **options,
            )
        except BadInputError as exc:  # the other files are still scored
            failure = failure or exc
            continue
        record.add(src, dst, summary)
        summaries.append(summary)
    if failure is not None:
        raise failure
    record.discard()
    return summaries


def score_files(
    model: Any,
    inputs: str | Sequence[str],
    output_dir: str | Path,
    *,
    client: Any = None,
    id_col: str | None = None,
    on_bad_rows: str = "error",
    top_k: int = 3,
    device: str = "cpu",
    threads: int | None = 1,
    precision: str = "auto",
    score_threads: int | None = None,
    progress: bool | None = False,
    resume: bool = False,
) -> list[ScoringSummary]:
    """Score many files, one Dask task per file, each streamed as ``score_file`` does.

    Without a client the files are scored one after the other in this process,
    each with all of its cores (``score_threads``); on the CPU the model is read
    once, without torch.

    Parameters
    ----------
    model : GANomalyDetector, str, Path or bytes
        See :func:`model_bytes`.
    inputs : str or sequence of str
        Files, glob patterns or folders (:func:`expand_inputs`); the workers must be
        able to read these paths.
    output_dir : str or Path
        Created if needed; receives ``<input stem>.csv`` (``.parquet`` for Parquet
        inputs) and, with ``on_bad_rows="skip"``, ``<input stem>.rejects.csv``.
    client : distributed.Client, optional
        Without one, the files are scored one after the other in this process.
    id_col, on_bad_rows, top_k :
        As for :func:`ganomaly.scoring.score_file`.
    device : str, default="cpu"
        Where the workers score.
    threads : int, optional, default=1
        With a client: torch threads and scoring threads per task (1: the networks
        are small; the cluster gives the parallelism).
    precision : {"auto", "float32", "float64"}, default="auto"
        See :func:`ganomaly.scoring.as_scorer`.
    score_threads : int, optional
        Without a client: threads scoring each file, and as many parsing it, as
        ``score_file``'s ``threads`` (default: the CPUs available, at most 4).
    progress : bool or None, default=False
        Without a client: a progress bar per file (None: on a terminal only).
    resume : bool, default=False
        Continue an interrupted run into ``output_dir``.  The files it finished are
        not scored again if their input, the model, the options and their outputs
        are still those recorded in ``output_dir/.ganomaly-score.json`` (with a
        client, by this process, as each task finishes); the files it was scoring
        resume from their own progress (see :func:`ganomaly.scoring.score_file`;
        with a client, on whichever worker gets them); the others are scored.
        Without it a run scores every file.

    Returns
    -------
    list of ScoringSummary
        One per input file, in input order.

    Raises
    ------
    BadInputError
        From the first file that failed, once the other files are scored (each
        output is written atomically, so a failed file leaves no output).

    Examples
    --------
    >>> import os, tempfile
    >>> from ganomaly import GANomalyDetector, make_transactions
    >>> from ganomaly.distributed import score_files
    >>> folder = tempfile.mkdtemp()
    >>> frame = make_transactions(400, random_state=0)
    >>> for part in range(2):
    ...     frame.iloc[part::2].to_csv(os.path.join(folder, f"day{part}.csv"),
    ...                                index=False)
    >>> detector = GANomalyDetector(n_epochs=1, random_state=0).fit(
    ...     frame.drop(columns=["transaction_id", "is_fraud"]))
    >>> summaries = score_files(detector, os.path.join(folder, "day*.csv"),
    ...                         os.path.join(folder, "out"))
    >>> [s.n_scored for s in summaries], sorted(os.listdir(os.path.join(folder, "out")))
    ([200, 200], ['day0.csv', 'day1.csv'])
    """
    paths = expand_inputs(inputs)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise BadInputError(
            f"{output_dir}: is a file; with several inputs the output is a folder "
            "(one file per input)"
        )
    outputs = _output_paths(paths, output_dir, model, on_bad_rows)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = {"id_col": id_col, "on_bad_rows": on_bad_rows, "top_k": top_k}
    if client is None:
        return _score_here(
            model,
            paths,
            outputs,
            output_dir,
            options,
            device=device,
            precision=precision,
            score_threads=score_threads,
            progress=progress,
            resume=resume,
        )
    data = model_bytes(model)
    # A bad model fails here, before any task.
    local = scoring_model(data, "cpu", precision)
    record = FolderProgress(output_dir, local, options)
    if not resume:
        record.discard()
    options.update(device=device, threads=threads, precision=precision)
    run = uuid.uuid4().hex[:8]  # task names readable on the dashboard, and unique
    # One copy of the model per worker, not one per task.
    shared = client.scatter(data, broadcast=True, hash=False)
    summaries: list[ScoringSummary | None] = [None] * len(paths)
    futures = {}
    for index, (src, dst) in enumerate(zip(paths, outputs, strict=True)):
        done = record.done(src, dst) if resume else None
        if done is not None:
            summaries[index] = done
            continue
        can_resume = resumable(src, dst)
        future = client.submit(
            _score_file_task,
            shared,
            str(src),
            str(dst),
            {**options, "resume": resume and can_resume},
            key=f"ganomaly-score-{run}-{index}-{src.name}",
            pure=False,
        )
        futures[future] = index
    from distributed import as_completed

    # Each file is recorded as it finishes, so that a run stopped half-way (the
    # client killed, the cluster lost) can resume without scoring it again.
    failed = []
    for future in as_completed(list(futures)):
        index = futures[future]
        if future.status == "error":
            failed.append(index)
            continue
        summaries[index] = future.result()
        record.add(paths[index], outputs[index], summaries[index])
    if failed:
        first = next(f for f, i in futures.items() if i == min(failed))
        first.result()  # re-raises the worker's exception here
    record.discard()
    return summaries


# -------------------------------------------------------------- dataframes
def _ones(partition: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.Series(np.ones(len(partition), dtype=np.int64), index=partition.index)


def _score_partition(
    partition: pd.DataFrame,
    positions: pd.Series | None,
    model: bytes,
    id_col: str | None,
    top_k: int,
    device: str,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    """One pandas partition through the single-machine validation and scoring."""
    import pyarrow.compute as pc

    _tune_worker_malloc()
    scorer = as_scorer(scoring_model(model, device))
    pre = scorer.preprocessor_
    needed = list(pre.input_columns_)
    numeric = [s["name"] for s in pre.specs_ if s["kind"] == "numeric"]
    missing_is_bad = needed if pre.missing == "error" else []
    schema = output_schema(id_col, top_k, len(pre.input_columns_))
    if len(partition) == 0:
        return schema.empty_table().to_pandas().set_index(partition.index[:0])
    columns = list(dict.fromkeys(needed + ([id_col] if id_col else [])))
    # One chunk per column: pandas' Arrow-backed strings may come in several.
    table = pa.Table.from_pandas(partition[columns], preserve_index=False)
    batch = table.combine_chunks().to_batches()[0]
    # Text columns as score_file reads them: strings, and "" is a missing value.
    for name in columns:
        if name in numeric:
            continue
        text = batch.column(name)
        if not pa.types.is_string(text.type):
            text = text.cast(pa.string(), safe=False)
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        batch = batch.set_column(batch.schema.get_field_index(name), name, text)
    values, bad = validate_batch(batch, numeric, missing_is_bad)
    if bad:
        index, column, reason = sorted(bad)[0]
        number = partition_info["number"] if partition_info else "?"
        raise BadInputError(
            f"partition {number}, index {partition.index[index]!r}, column "
            f"{column!r}: {reason}"
        )
    rows = (
        positions.to_numpy(dtype=np.int64)
        if positions is not None
        else np.arange(1, len(partition) + 1)
    )
    ids = batch.column(id_col) if id_col else None
    good = np.ones(len(partition), dtype=bool)
    table, _ = score_batch(scorer, batch, values, good, rows, ids, id_col, top_k)
    return table.to_pandas().set_index(partition.index)


def score_dask(
    model: Any,
    ddf: Any,
    *,
    id_col: str | None = None,
    top_k: int = 3,
    device: str = "cpu",
) -> Any:
    """Score a Dask DataFrame partition by partition, lazily.

    Every partition goes through exactly the single-machine path: the validation of
    :func:`ganomaly.scoring.score_file` (text that is no number, ``NaN`` text or
    infinite values are refused), the stored preprocessing, the networks and the
    explanations, with the same output columns.

    Parameters
    ----------
    model : GANomalyDetector, str, Path or bytes
        Sent to the workers as model-file bytes (:func:`model_bytes`).
    ddf : dask.dataframe.DataFrame
        Holds the model's columns (by name); numeric columns may be numbers or text
        (read with ``dtype=str`` to have every value checked the way ``score_file``
        checks a CSV field).
    id_col : str, optional
        Column copied to the output (as text).  Without it the output has ``row``:
        the 1-based position of the row in ``ddf``, which for a DataFrame read from
        one CSV file is that file's data row number, as ``score_file`` writes it.
    top_k : int, default=3
    device : str, default="cpu"

    Returns
    -------
    dask.dataframe.DataFrame
        ``id_col`` or ``row``, ``anomaly_score``, ``is_anomaly``, ``feature_i``,
        ``contribution_i``; one partition per input partition, with its index.
        Computing it raises :class:`~ganomaly.scoring.BadInputError` on a bad value.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from ganomaly import GANomalyDetector, make_transactions
    >>> from ganomaly.distributed import score_dask
    >>> frame = make_transactions(600, random_state=0)
    >>> detector = GANomalyDetector(n_epochs=1, random_state=0).fit(
    ...     frame.drop(columns=["transaction_id", "is_fraud"]))
    >>> scores = score_dask(detector, dd.from_pandas(frame, npartitions=3),
    ...                     id_col="transaction_id")
    >>> scores.npartitions, len(scores.compute())
    (3, 600)
    """
    import dask

    data = model_bytes(model)
    pre = scoring_model(data, "cpu").preprocessor_  # a bad model fails here
    needed = list(pre.input_columns_)
    absent = [c for c in needed + ([id_col] if id_col else []) if c not in ddf.columns]
    if absent:
        raise BadInputError(
            f"missing column(s) {', '.join(map(repr, absent))}; the model needs "
            f"{', '.join(map(repr, needed))}"
        )
    import pandas as pd

    meta = output_schema(id_col, top_k, len(needed)).empty_table().to_pandas()
    meta.index = ddf._meta.index[:0]
    positions = None
    if not id_col:
        positions = ddf.map_partitions(
            _ones, meta=pd.Series(dtype=np.int64, index=ddf._meta.index[:0])
        ).cumsum()
    # One graph key for the model, shared by all partitions' tasks.
    shared = dask.delayed(data, pure=True)
    return ddf.map_partitions(
        _score_partition,
        positions,
        shared,
        id_col,
        top_k,
        device,
        meta=meta,
    )
