"""How ``ganomaly score``'s CSV parse scales with threads, against pyarrow's readers.

``ganomaly score`` used to parse with pyarrow's streaming reader
(``pyarrow.csv.open_csv``), which parses on one thread whatever ``use_threads``
says, so parsing alone capped a run at about 600,000 rows/s of 31 numbers on any
number of cores.  It now cuts the file at line ends into pieces
(``ganomaly.scoring._csv_pieces``) parsed side by side (``_parse_piece``).  This
script times the parse alone, in this process, best of ``--repeats``:

* ``open_csv``: the streaming reader, 1 MiB blocks (the old way);
* ``pieces, N threads``: the new way, for N = 1, 2, ... up to the CPUs;
* ``read_csv``: ``pyarrow.csv.read_csv`` of the whole file (multi-threaded, the
  whole table in memory), the reference of ``scoring_throughput.py``.

Usage::

    python benchmarks/parse_scaling.py                 # 1M card-like rows
    python benchmarks/parse_scaling.py --csv FILE.csv  # any CSV; all columns as text
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganomaly.scoring import (  # noqa: E402
    DEFAULT_BLOCK_SIZE,
    PIECE_BLOCKS,
    _convert_options,
    _csv_pieces,
    _parse_piece,
    read_table_header,
)


def column_types(names: list[str]) -> dict[str, pa.DataType]:
    """Text for ids, numbers for everything else (the card-like layout)."""
    return {n: (pa.string() if n == "id" else pa.float64()) for n in names}


def parse_open_csv(path: Path, types: dict) -> int:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=DEFAULT_BLOCK_SIZE),
        convert_options=_convert_options(types),
    )
    return sum(batch.num_rows for batch in reader)


def parse_pieces(path: Path, types: dict, names: list[str], threads: int) -> int:
    size = DEFAULT_BLOCK_SIZE * PIECE_BLOCKS
    with ThreadPoolExecutor(threads) as pool:
        pending, rows = [], 0
        for piece in _csv_pieces(path, size):
            pending.append(pool.submit(_parse_piece, piece, names, types, 1 << 20))
            if len(pending) > threads:  # as ganomaly score: `threads` pieces ahead
                rows += pending.pop(0).result().num_rows
        return rows + sum(f.result().num_rows for f in pending)


def parse_read_csv(path: Path, types: dict) -> int:
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
        names = read_table_header(path)
        types = column_types(names)
        cpus = len(os.sched_getaffinity(0))
        runs = [("open_csv (streaming, old)", parse_open_csv, (path, types))]
        for threads in sorted({1, 2, cpus}):
            label = f"pieces, {threads} thread{'s' * (threads > 1)}"
            runs.append((label, parse_pieces, (path, types, names, threads)))
        runs.append(("read_csv (whole file)", parse_read_csv, (path, types)))
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
