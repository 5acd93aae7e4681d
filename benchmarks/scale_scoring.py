"""Scoring on Dask: rows per second with 1 and 2 workers against one process.

Writes a multi-file input shaped like the card data (``id`` plus ``Time, V1..V28,
Amount``: 30 numeric features; default 8 files x 500,000 = 4,000,000 rows), fits a
small GANomaly model on 20,000 rows of the same distribution, then scores all files
with

* ``single process``: ``ganomaly score MODEL 'data/*.csv' -o out/`` without Dask --
  :func:`ganomaly.distributed.score_files` in this process, one file after another
  (each file streamed by :func:`ganomaly.scoring.score_file`, as a single file is);
* ``dask files``: the same with ``--workers N`` -- one task per file on a
  ``LocalCluster`` of N worker processes (1 thread each), each writing its output;
* ``dask dataframe``: ``dd.read_csv`` (pandas' parser, 64 MiB blocks) ->
  :func:`ganomaly.distributed.score_dask` -> ``to_parquet``, with N workers.

Cluster start-up (processes, imports of torch and the model's first load) is
measured separately and left out of the rows/s, since a running cluster pays it
once.  Then one file is scored again in this process with a timer around each step
-- parse, validate, preprocess, networks, explanations, assembling the output, write
-- to show where the time goes, and pandas' parse of the same file is timed for the
dataframe path.

Usage::

    python benchmarks/scale_scoring.py                                 # 4M rows
    python benchmarks/scale_scoring.py --files 4 --rows-per-file 50000  # quick look

Print a markdown table; files go to ``--work-dir`` (default: a temporary folder,
removed at the end).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

# The same card-shaped rows as the single-file throughput benchmark.
from scoring_throughput import COLUMNS, card_like  # noqa: E402


def write_inputs(folder: Path, n_files: int, rows_per_file: int) -> list[Path]:
    """``n_files`` CSV files of distinct rows, with an ``id`` column."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string())] + [(c, pa.float64()) for c in COLUMNS])
    paths = []
    for index in range(n_files):
        path = folder / f"day{index:02d}.csv"
        with pacsv.CSVWriter(str(path), schema) as writer:
            for start in range(0, rows_per_file, 250_000):
                size = min(250_000, rows_per_file - start)
                frame = card_like(size, seed=index * 10**7 + start)
                frame.insert(0, "id", [f"f{index}-{start + i}" for i in range(size)])
                writer.write_table(pa.Table.from_pandas(frame, preserve_index=False))
        paths.append(path)
    return paths


def fit_model(work: Path) -> Path:
    from ganomaly.cli import main as ganomaly_main

    card_like(20_000, seed=10**9).to_csv(work / "train.csv", index=False)
    model = work / "model.safetensors"
    code = ganomaly_main(
        ["fit", str(work / "train.csv"), "-o", str(model), "--n-epochs", "5", "--quiet"]
    )
    if code:
        raise RuntimeError("fitting the benchmark model failed")
    return model


def _warm_up() -> None:
    """Imports and one model load on a worker, before the clock starts."""
    import ganomaly.distributed  # noqa: F401


def run_single(model: Path, pattern: str, out: Path) -> float:
    from ganomaly.distributed import score_files

    start = time.perf_counter()
    score_files(model, pattern, out, id_col="id", threads=1)
    return time.perf_counter() - start


def run_dask_files(client, model: Path, pattern: str, out: Path) -> float:
    from ganomaly.distributed import score_files

    start = time.perf_counter()
    summaries = score_files(model, pattern, out, client=client, id_col="id")
    seconds = time.perf_counter() - start
    busy = sum(s.seconds for s in summaries)
    print(f"    task seconds {busy:.1f} in {seconds:.1f} s of wall", file=sys.stderr)
    return seconds


def run_dask_dataframe(client, model: Path, pattern: str, out: Path) -> float:
    import dask.dataframe as dd

    from ganomaly.distributed import score_dask

    start = time.perf_counter()
    ddf = dd.read_csv(
        pattern,
        blocksize=64 << 20,
        keep_default_na=False,
        na_values=[""],
        dtype={"id": str},
    )
    score_dask(model, ddf, id_col="id").to_parquet(out, write_index=False)
    return time.perf_counter() - start


class _Inline:
    """An executor that runs what it is given at once, on this thread."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def phases(model: Path, path: Path, out: Path) -> dict[str, float]:
    """Seconds of each step of ``score_file`` on one file, run one after another."""
    from ganomaly._scorer import feature_attribution, term_logs, top_contributions
    from ganomaly.scoring import load_scorer, score_batch
    from ganomaly.scoring.checks import validate_batch
    from ganomaly.scoring.job import Job
    from ganomaly.threads import one_blas_thread

    detector = load_scorer(model)  # what ganomaly score uses
    pre = detector.preprocessor_
    needed = list(pre.input_columns_)
    numeric = [s["name"] for s in pre.specs_ if s["kind"] == "numeric"]
    job = Job(detector, path, needed=needed, numeric=numeric, id_col="id")
    spent = dict.fromkeys(
        ["parse", "validate", "preprocess", "networks", "explain", "assemble", "write"],
        0.0,
    )
    writer = None
    batches = job._pieces_in_parallel(_Inline())  # pieces parsed as they are asked for
    while True:
        clock = time.perf_counter()
        batch, rows, _, _ = next(batches)
        spent["parse"] += time.perf_counter() - clock
        if batch is None:
            break
        clock = time.perf_counter()
        values, _ = validate_batch(batch, numeric, [])
        ids = batch.column("id")
        spent["validate"] += time.perf_counter() - clock
        columns = {name: values[name] for name in needed}
        clock = time.perf_counter()
        encoded = pre.transform(columns)
        preprocess = time.perf_counter() - clock
        clock = time.perf_counter()
        with one_blas_thread():  # as in score_and_explain
            errors, terms = detector.errors(encoded, gaps=True)
        networks = time.perf_counter() - clock
        clock = time.perf_counter()
        logs = term_logs(terms, detector.score_type, detector.calibration_)
        parts = feature_attribution(errors, terms.get("gaps"), logs)
        top_contributions(parts, 3, len(needed), detector._sources)
        explain = time.perf_counter() - clock
        # score_batch does the three steps above, then assembles the output table:
        # the difference is the assembling.
        good = np.ones(batch.num_rows, dtype=bool)
        clock = time.perf_counter()
        table, _ = score_batch(detector, batch, values, good, rows, ids, "id", 3)
        whole = time.perf_counter() - clock
        spent["preprocess"] += preprocess
        spent["networks"] += networks
        spent["explain"] += explain
        spent["assemble"] += max(0.0, whole - preprocess - networks - explain)
        clock = time.perf_counter()
        if writer is None:
            handle = open(out, "wb")
            writer = pacsv.CSVWriter(handle, table.schema)
        writer.write_table(table)
        spent["write"] += time.perf_counter() - clock
    if writer is not None:
        writer.close()
        handle.close()
    clock = time.perf_counter()
    pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"id": str})
    spent["pandas parse (dataframe path)"] = time.perf_counter() - clock
    return spent


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows-per-file", type=int, default=500_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ganomaly.distributed import dask_client

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ganomaly-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    n_rows = args.files * args.rows_per_file
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {_cpu_name()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    try:
        model = fit_model(work)
        clock = time.perf_counter()
        paths = write_inputs(work / "data", args.files, args.rows_per_file)
        size_mib = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"wrote {args.files} files, {n_rows:,} rows, {size_mib:.0f} MiB in "
            f"{time.perf_counter() - clock:.0f} s",
            file=sys.stderr,
        )
        pattern = str(work / "data" / "*.csv")
        results = []

        def record(method: str, workers: int, seconds: float, startup: float = 0.0):
            results.append((method, workers, seconds, startup))
            print(
                f"  {method:16s} {workers} worker(s): {seconds:6.1f} s, "
                f"{n_rows / seconds:>9,.0f} rows/s (start-up {startup:.1f} s)",
                file=sys.stderr,
                flush=True,
            )

        record("single process", 1, run_single(model, pattern, work / "out-single"))
        for n_workers in args.workers:
            clock = time.perf_counter()
            with dask_client(None, n_workers) as client:
                client.run(_warm_up)
                startup = time.perf_counter() - clock
                seconds = run_dask_files(
                    client, model, pattern, work / f"out-files-{n_workers}"
                )
                record("dask files", n_workers, seconds, startup)
                seconds = run_dask_dataframe(
                    client, model, pattern, work / f"out-frame-{n_workers}"
                )
                record("dask dataframe", n_workers, seconds)
            shutil.rmtree(work / f"out-files-{n_workers}", ignore_errors=True)
            shutil.rmtree(work / f"out-frame-{n_workers}", ignore_errors=True)

        spent = phases(model, paths[0], work / "phases.csv")
        single = results[0][2]
        print(
            f"\n{n_rows:,} rows in {args.files} CSV files ({size_mib:.0f} MiB); "
            f"load average at the end {os.getloadavg()[0]:.1f}\n"
        )
        print("| method | workers | seconds | rows/s | ratio to single process |")
        print("|---|---|---|---|---|")
        for method, workers, seconds, _ in results:
            print(
                f"| {method} | {workers} | {seconds:.1f} | {n_rows / seconds:,.0f} "
                f"| {single / seconds:.2f} |"
            )
        steps = {k: v for k, v in spent.items() if not k.startswith("pandas")}
        total = sum(steps.values())
        print(
            f"\nWhere the time goes (one file, {args.rows_per_file:,} rows, "
            "one process, steps run one after another):\n"
        )
        print("| step | seconds | share |")
        print("|---|---|---|")
        for step, seconds in steps.items():
            print(f"| {step} | {seconds:.2f} | {seconds / total:.0%} |")
        pandas_parse = spent["pandas parse (dataframe path)"]
        print(
            f"\npandas.read_csv of the same file (the dataframe path's parser): "
            f"{pandas_parse:.2f} s, {pandas_parse / spent['parse']:.1f} x pyarrow's"
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
