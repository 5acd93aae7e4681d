"""Streaming scoring throughput and memory: ``ganomaly score`` against its peers.

Builds CSV files shaped like the card data (``Time, V1..V28, Amount`` plus an id),
fits a small GANomaly model and a PyOD IForest on 20,000 rows of the same
distribution, then measures, each in a fresh subprocess (so peak RSS is its own):

* ``pyarrow``: ``pyarrow.csv.read_csv`` of the whole file, nothing else -- the
  practical speed limit of reading the file;
* ``ganomaly score``: the CLI end to end (read, validate, preprocess, score, explain,
  write the output CSV);
* ``pandas+pyod``: ``pandas.read_csv`` then PyOD IForest ``decision_function``.

Reported: rows per second, the ratio of ``ganomaly score`` to the pyarrow read, and
peak RSS at every file size (flat memory means the same RSS at 1M and 4M rows).

Usage::

    python benchmarks/scoring_throughput.py                      # 1M and 4M rows
    python benchmarks/scoring_throughput.py --rows 200000        # quick look

Files go to ``--work-dir`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

COLUMNS = ["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount"]


def card_like(n_rows: int, seed: int) -> pd.DataFrame:
    """Rows shaped like the card data: PCA-like Gaussians, a time, a skewed amount."""
    rng = np.random.default_rng(seed)
    data = {"Time": np.round(rng.uniform(0, 172_800, n_rows), 0)}
    scales = np.linspace(2.0, 0.3, 28)
    for i in range(28):
        data[f"V{i + 1}"] = np.round(rng.normal(0, scales[i], n_rows), 6)
    data["Amount"] = np.round(rng.lognormal(3.0, 1.4, n_rows), 2)
    return pd.DataFrame(data)


def write_csv(path: Path, n_rows: int, chunk: int = 500_000) -> None:
    with pacsv.CSVWriter(
        str(path),
        pa.schema([("id", pa.string())] + [(c, pa.float64()) for c in COLUMNS]),
    ) as writer:
        for start in range(0, n_rows, chunk):
            size = min(chunk, n_rows - start)
            frame = card_like(size, seed=start)
            frame.insert(0, "id", [f"tx{start + i}" for i in range(size)])
            writer.write_table(pa.Table.from_pandas(frame, preserve_index=False))


def timed_child(code: str) -> tuple[float, float]:
    """Run Python code in a fresh process: (seconds, peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"child failed:\n{result.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the maximum over all children so far: measure in
    # increasing-memory order or trust the child's own report (printed as JSON).
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    return seconds, reported.get("peak_mib", max(peak, before) / 1024)


_PEAK = (
    "import resource, json; "
    "print(json.dumps({'peak_mib': "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[1_000_000, 4_000_000])
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ganomaly-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        train = card_like(20_000, seed=10**9)
        model = work / "model.safetensors"
        iforest = work / "iforest.joblib"
        train.to_csv(work / "train.csv", index=False)
        from ganomaly.cli import main as ganomaly_main

        assert (
            ganomaly_main(
                [
                    "fit",
                    str(work / "train.csv"),
                    "-o",
                    str(model),
                    "--n-epochs",
                    "5",
                    "--quiet",
                ]
            )
            == 0
        )
        import joblib
        from pyod.models.iforest import IForest

        joblib.dump(IForest(random_state=0).fit(train.to_numpy()), iforest)

        rows_out = []
        for n_rows in args.rows:
            path = work / f"card_{n_rows}.csv"
            write_csv(path, n_rows)
            size_mib = path.stat().st_size / 2**20
            children = {
                "pyarrow read_csv": (
                    "import pyarrow.csv as c; "
                    f"t = c.read_csv({str(path)!r}); assert t.num_rows == {n_rows}; "
                    + _PEAK
                ),
                "ganomaly score": (
                    "from ganomaly.cli import main; "
                    f"assert main(['score', {str(model)!r}, {str(path)!r}, "
                    f"'-o', {str(work / 'scores.csv')!r}, '--id-col', 'id', "
                    "'--quiet']) == 0; "
                    + _PEAK
                ),
                "pandas + PyOD IForest": (
                    "import joblib, pandas as pd; "
                    f"f = pd.read_csv({str(path)!r}); "
                    f"m = joblib.load({str(iforest)!r}); "
                    f"s = m.decision_function(f[{COLUMNS!r}].to_numpy()); " + _PEAK
                ),
            }
            for name, code in children.items():
                best = None
                for _ in range(args.repeats):
                    seconds, peak = timed_child(code)
                    if best is None or seconds < best[0]:
                        best = (seconds, peak)
                rows_out.append(
                    {
                        "rows": n_rows,
                        "file MiB": round(size_mib),
                        "method": name,
                        "seconds": best[0],
                        "rows/s": n_rows / best[0],
                        "peak RSS MiB": best[1],
                    }
                )
                print(
                    f"{n_rows:>9} rows {name:22s} {best[0]:7.1f} s "
                    f"{n_rows / best[0]:>10.0f} rows/s  peak RSS {best[1]:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            path.unlink()
        table = pd.DataFrame(rows_out)
        reference = table[table["method"] == "pyarrow read_csv"].set_index("rows")
        table["ratio to pyarrow read"] = [
            r["rows/s"] / reference.loc[r["rows"], "rows/s"]
            for _, r in table.iterrows()
        ]
        print(
            "\n| rows | file MiB | method | seconds | rows/s | ratio to pyarrow read "
            "| peak RSS MiB |"
        )
        print("|---|---|---|---|---|---|---|")
        for _, r in table.iterrows():
            print(
                f"| {r['rows']:,} | {r['file MiB']} | {r['method']} | "
                f"{r['seconds']:.1f} | {r['rows/s']:,.0f} | "
                f"{r['ratio to pyarrow read']:.2f} | {r['peak RSS MiB']:.0f} |"
            )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
