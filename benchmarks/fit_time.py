"""Fit time of GANomalyDetector against IsolationForest and KNN, same rows, same run.

Target (issue 18): 10,000 rows in under 20 s and 250,000 rows in under 60 s on a
2-core CPU with default parameters, reported as ratios to scikit-learn's
IsolationForest (defaults) and PyOD's KNN (defaults; its fit builds the neighbour
index and scores the training rows) fitted on the same rows in the same run.  The
rows are ``card_like`` (30 numeric columns, as the card data).  Torch and BLAS use
``--threads`` threads (default 1, as the ``ganomaly`` CLI does).  Each size runs
the three detectors ``--repeats`` times, interleaved, after one warm-up fit (lazy
imports); wall and CPU seconds are the median over the repeats.

Usage::

    python benchmarks/fit_time.py                        # 10,000 and 250,000 rows
    python benchmarks/fit_time.py --rows 50000 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_throughput import card_like  # noqa: E402


def _detectors(threads: int) -> dict:
    from pyod.models.knn import KNN
    from sklearn.ensemble import IsolationForest

    from ganomaly import GANomalyDetector

    return {
        "GANomalyDetector (defaults)": lambda: GANomalyDetector(
            random_state=0, device="cpu"
        ),
        "sklearn IsolationForest": lambda: IsolationForest(random_state=0),
        "PyOD KNN": lambda: KNN(n_jobs=threads),
    }


def _timed(make, X) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make().fit(X)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 250_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    detectors = _detectors(args.threads)
    print("| rows | detector | wall s (median) | CPU s | GANomaly / this (wall) |")
    print("|---|---|---:|---:|---:|")
    with threadpool_limits(limits=args.threads):
        _timed(detectors["GANomalyDetector (defaults)"], card_like(1000, seed=1))
        for rows in args.rows:
            X = card_like(rows, seed=0).to_numpy()
            times = {name: [] for name in detectors}
            for _ in range(args.repeats):
                for name, make in detectors.items():
                    times[name].append(_timed(make, X))
            medians = {
                name: tuple(statistics.median(t[i] for t in runs) for i in (0, 1))
                for name, runs in times.items()
            }
            ours = medians["GANomalyDetector (defaults)"][0]
            for name, (wall, cpu) in medians.items():
                print(
                    f"| {rows:,} | {name} | {wall:.1f} | {cpu:.1f} | "
                    f"{ours / wall:.1f} |",
                    flush=True,
                )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
