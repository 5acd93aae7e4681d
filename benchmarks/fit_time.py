"""Fit time of GANomalyDetector on 250,000 normal rows of 30 features.

Target (issue 3): under 2 minutes on a 2-core CPU with default parameters.  Peers
in the same run, on the same rows: scikit-learn IsolationForest (defaults) and
PyOD AutoEncoder for one epoch (its default is 10 epochs of batch 32, i.e. ten
times the single-epoch time shown).  Torch uses ``--threads`` threads (default 1,
as the ``ganomaly`` CLI does).

Usage::

    python benchmarks/fit_time.py                 # 250,000 rows
    python benchmarks/fit_time.py --rows 50000    # quick look
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_throughput import card_like  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from sklearn.ensemble import IsolationForest

    from ganomaly import GANomalyDetector

    X = card_like(args.rows, seed=0)
    results = []
    start = time.perf_counter()
    detector = GANomalyDetector(random_state=0, device="cpu").fit(X)
    results.append(
        (
            "GANomalyDetector (defaults)",
            time.perf_counter() - start,
            f"{detector.n_epochs_} epochs",
        )
    )
    if not args.skip_peers:
        start = time.perf_counter()
        IsolationForest(random_state=0).fit(X)
        results.append(("sklearn IsolationForest", time.perf_counter() - start, ""))
        from pyod.models.auto_encoder import AutoEncoder

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            AutoEncoder(epoch_num=1, verbose=0, device="cpu").fit(X.to_numpy())
        results.append(("PyOD AutoEncoder (1 epoch)", time.perf_counter() - start, ""))
    reference = results[0][1]
    print(
        f"\nfit on {args.rows:,} rows x {X.shape[1]} columns, "
        f"torch threads {args.threads}\n"
    )
    print("| detector | seconds | relative to GANomaly | note |")
    print("|---|---|---|---|")
    for name, seconds, note in results:
        print(f"| {name} | {seconds:.1f} | {seconds / reference:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
