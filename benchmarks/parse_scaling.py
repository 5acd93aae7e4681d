"""How ``ganomaly score``'s CSV parse scales with threads, against pyarrow's readers.

``ganomaly score`` used to parse with pyarrow's streaming reader
(``pyarrow.csv.open_csv``), which parses on one thread whatever ``use_threads``
says, so parsing alone capped a run at about 600,000 rows/s of 31 numbers on any
number of cores.  It now cuts the file at record ends into pieces
(``ganomaly.scoring.csv_pieces.read_pieces``) parsed side by side
(``parse_piece``).  This script times the parse alone, in this process, best of
``--repeats``:

* ``open_csv``: the streaming reader, 1 MiB blocks (the old way);
* ``pieces, N threads``: the new way, for N = 1, 2, ... up to the CPUs;
* ``read_csv``: ``pyarrow.csv.read_csv`` of the whole file (multi-threaded, the
  whole table in memory), the reference of ``scoring_throughput.py``.

Usage::

    python benchmarks/parse_scaling.py                 # 1M card-like rows
    python benchmarks/parse_scaling.py --csv FILE.csv  # numbers, and an ``id`` column

``pieces`` times ``ganomaly.scoring``'s own reader (``Job._pieces_in_parallel``),
not a copy of it; ``open_csv`` reads with the same column types.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganomaly.scoring import read_table_header  # noqa: E402
from ganomaly.scoring.csv_pieces import _convert_options  # noqa: E402
from ganomaly.scoring.job import DEFAULT_BLOCK_SIZE, Job  # noqa: E402


def reading_job(path: Path, threads: int) -> Job:
    """A scoring job that only reads: numbers for every column but ``id`` (text)."""
    header = read_table_header(path)
    numeric = [name for name in header if name != "id"]
    id_col = "id" if "id" in header else None
    return Job(
        None,
        path,
        needed=numeric,
        numeric=numeric,
        id_col=id_col,
        threads=threads,
        header=header,
    )


def rows_read(batches) -> int:
    return sum(batch.num_rows for batch, *_ in batches if batch is not None)


def parse_open_csv(path: Path) -> int:
    job = reading_job(path, 1)
    reader = pacsv.open_csv(
        str(path),
        read_options=pacsv.ReadOptions(block_size=DEFAULT_BLOCK_SIZE),
        convert_options=_convert_options(job._column_types(careful=False)),
    )
    return sum(batch.num_rows for batch in reader)


def parse_pieces(path: Path, threads: int) -> int:
    with ThreadPoolExecutor(threads) as pool:
        return rows_read(reading_job(path, threads)._pieces_in_parallel(pool))


def parse_read_csv(path: Path) -> int:
    types = reading_job(path, 1)._column_types(careful=False)
    return pacsv.read_csv(path, convert_options=_convert_options(types)).num_rows


def best_of(repeats: int, fn, *args) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, help="default: 1M card-like rows")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ganomaly-parse-") as work:
        path = args.csv
        if path is None:
            from scoring_throughput import write_csv

            path = Path(work) / "card.csv"
            write_csv(path, args.rows)
        cpus = len(os.sched_getaffinity(0))
        runs = [("open_csv (streaming, old)", parse_open_csv, (path,))]
        for threads in sorted({1, 2, cpus}):
            label = f"pieces, {threads} thread{'s' * (threads > 1)}"
            runs.append((label, parse_pieces, (path, threads)))
        runs.append(("read_csv (whole file)", parse_read_csv, (path,)))
        results = [(label, *best_of(args.repeats, fn, *a)) for label, fn, a in runs]
    reference = results[-1][1]
    print(f"\n{cpus} CPUs; {results[0][2]:,} rows; best of {args.repeats}\n")
    print("| parse | s | rows/s | ratio to read_csv |")
    print("|---|---:|---:|---:|")
    for label, seconds, rows in results:
        print(
            f"| {label} | {seconds:.2f} | {rows / seconds:,.0f} | "
            f"{reference / seconds:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
