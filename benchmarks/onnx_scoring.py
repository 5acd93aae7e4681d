"""ONNX Runtime scoring of an exported GANomaly model beside ``ganomaly score``'s
numpy scorer: bulk rows per second, and single-row latency for a real-time caller.

Fits a small model on normal rows of :func:`ganomaly.make_transactions` (numbers, a
categorical column with missing values), exports it (:mod:`ganomaly.export`) and
scores the same in-memory rows two ways, each on one thread:

* ``numpy scorer``: what ``ganomaly score`` does to every block once the CSV is
  parsed: ``TabularPreprocessor.transform`` of the block's columns, then
  ``Scorer.score_and_explain`` (networks in float32 where position-free, as the
  CLI's default ``--precision auto``), top 3 columns;
* ``onnxruntime``: ``InferenceSession.run`` of the exported graph on the block's
  columns (doubles, and strings with "" for missing), all five outputs.  The
  graph's networks run in float64, as the estimator's scorer does
  (``--precision float64``): the agreement printed is with that scorer, and with
  the default one beside it.

Bulk: ``--rows`` rows (default 1M) in blocks of ``--block-rows``, best of
``--repeats``.  Latency: ``--calls`` calls with one row each (rows taken in turn),
after a warm-up, p50 / p99 / mean per call, for both.  CSV parsing and writing,
which ``ganomaly score`` also does, are left out of both: see
``scoring_throughput.py`` for the CLI end to end.

Usage::

    python benchmarks/onnx_scoring.py                       # 1M rows, 5,000 calls
    python benchmarks/onnx_scoring.py --rows 200000 --calls 1000   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

# One BLAS thread for numpy, as ganomaly score's launcher sets it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _columns(frame, specs) -> dict[str, np.ndarray]:
    """The model's columns as the graph takes them: doubles (NaN missing) and
    strings ("" missing)."""
    columns = {}
    for spec in specs:
        values = frame[spec["name"]]
        if spec["kind"] == "categorical":
            columns[spec["name"]] = values.fillna("").astype(str).to_numpy(object)
        else:
            columns[spec["name"]] = values.to_numpy(dtype=np.float64)
    return columns


def _scorer_columns(columns: dict, specs) -> dict[str, np.ndarray]:
    """The same columns as ``ganomaly score`` hands them to ``transform``: text
    with None for missing."""
    out = {}
    for spec in specs:
        values = columns[spec["name"]]
        if spec["kind"] == "categorical":
            values = np.where(values == "", None, values).astype(object)
        out[spec["name"]] = values
    return out


def _blocks(columns: dict, size: int):
    n = len(next(iter(columns.values())))
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in columns.items()}


def _percentiles(seconds: list[float]) -> dict[str, float]:
    micro = np.asarray(seconds) * 1e6
    return {
        "p50_us": float(np.percentile(micro, 50)),
        "p99_us": float(np.percentile(micro, 99)),
        "mean_us": float(micro.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--block-rows", type=int, default=16_384)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--n-epochs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from ganomaly import GANomalyDetector, make_transactions
    from ganomaly.scoring import as_scorer

    torch.set_num_threads(1)
    X, y = make_transactions(args.train_rows, random_state=0, return_X_y=True)
    detector = GANomalyDetector(
        n_epochs=args.n_epochs, random_state=0, device="cpu"
    ).fit(X[y == 0])
    folder = Path(tempfile.mkdtemp())
    model_path, onnx_path = folder / "model.safetensors", folder / "model.onnx"
    detector.save(model_path)
    start = time.perf_counter()
    detector.to_onnx(onnx_path)
    export_seconds = time.perf_counter() - start

    scorer = as_scorer(model_path)  # ganomaly score's engine, --precision auto
    specs = scorer.preprocessor_.specs_
    rows = make_transactions(args.rows, random_state=1, return_X_y=True)[0]
    columns = _columns(rows, specs)
    text_columns = _scorer_columns(columns, specs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(onnx_path), options, providers=["CPUExecutionProvider"]
    )

    def numpy_block(block):
        encoded = scorer.preprocessor_.transform(block, order=scorer.input_order)
        return scorer.score_and_explain(encoded, 3)

    def onnx_block(block):
        return session.run(None, block)

    bulk = {}
    for name, run, data in (
        ("numpy scorer", numpy_block, text_columns),
        ("onnxruntime", onnx_block, columns),
    ):
        best = np.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            for block in _blocks(data, args.block_rows):
                run(block)
            best = min(best, time.perf_counter() - start)
        bulk[name] = {"seconds": best, "rows_per_s": args.rows / best}

    # The same scores both ways (a check that the benchmark compares like with
    # like): with the float64 scorer (the graph's arithmetic) and the default one.
    first = next(_blocks(columns, 4096))
    onnx_scores = session.run(["anomaly_score"], first)[0]
    first_text = next(_blocks(text_columns, 4096))
    numpy_scores = numpy_block(first_text)[0]
    agreement = float(np.max(np.abs(onnx_scores - numpy_scores) / numpy_scores))
    exact = as_scorer(model_path, "float64")
    exact_scores = exact.anomaly_score(exact.preprocessor_.transform(first_text))
    agreement_float64 = float(np.max(np.abs(onnx_scores - exact_scores) / exact_scores))

    latency = {}
    n_rows = len(rows)
    singles = {
        name: [
            {k: v[i : i + 1] for k, v in data.items()}
            for i in range(min(args.calls, n_rows))
        ]
        for name, data in (("numpy scorer", text_columns), ("onnxruntime", columns))
    }
    for name, run in (("numpy scorer", numpy_block), ("onnxruntime", onnx_block)):
        calls = singles[name]
        for row in calls[:500]:  # warm-up
            run(row)
        timings = []
        for i in range(args.calls):
            row = calls[i % len(calls)]
            start = time.perf_counter()
            run(row)
            timings.append(time.perf_counter() - start)
        latency[name] = _percentiles(timings)

    load = os.getloadavg()[0]
    print(
        f"{args.rows:,} rows of make_transactions ({len(specs)} columns, "
        f"{scorer.preprocessor_.n_features_out_} encoded features), blocks of "
        f"{args.block_rows:,} rows, one thread, best of {args.repeats}; "
        f"load average {load:.2f}; export {export_seconds:.2f} s; numpy scorer "
        f"in {scorer.dtype.name}; ONNX scores agree with the float64 scorer's to "
        f"{agreement_float64:.1e} relative, with the default one's to "
        f"{agreement:.1e}\n"
    )
    print("| engine | bulk rows/s | single row p50 | p99 | mean |")
    print("|---|---:|---:|---:|---:|")
    for name in bulk:
        figures = latency[name]
        print(
            f"| {name} | {bulk[name]['rows_per_s']:,.0f} | "
            f"{figures['p50_us']:.0f} us | {figures['p99_us']:.0f} us | "
            f"{figures['mean_us']:.0f} us |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": args.rows,
                    "block_rows": args.block_rows,
                    "calls": args.calls,
                    "load_average": load,
                    "export_seconds": export_seconds,
                    "agreement": agreement,
                    "agreement_float64": agreement_float64,
                    "numpy_dtype": scorer.dtype.name,
                    "bulk": bulk,
                    "latency": latency,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
