"""Interrupted ``ganomaly score`` runs: what ``--resume`` saves; what a bad line costs.

Builds a CSV file shaped like the card data (as ``scoring_throughput.py`` does) and
fits the same small model, then measures, each a fresh ``ganomaly score`` process:

* ``full``: the whole file, uninterrupted (the reference output);
* ``killed``: the same run, killed (SIGKILL) once its recorded progress passes
  ``--kill-at`` of the rows, then ``--resume``: the resumed run's seconds, and
  whether its output equals the reference byte for byte;
* the same two with the file gzip-compressed (``--gzip``): a resumed run
  decompresses up to its recorded offset, then parses and scores;
* ``bad line``: a copy of the file with one line given an extra field at
  ``--bad-at`` of the rows (near the start and near the end by default), scored
  with ``--on-bad-rows skip``: the piece (4 MiB) that holds the line is parsed
  again as text, and the output must be the reference without that row.

Usage::

    python benchmarks/resume_scoring.py                 # 4M rows
    python benchmarks/resume_scoring.py --rows 500000 --record-every 0.5
    python benchmarks/resume_scoring.py --gzip          # also a .csv.gz input

Files go to ``--work-dir`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring_throughput import card_like, write_csv  # noqa: E402

# `ganomaly score` with its progress recorded every RECORD_EVERY seconds
# (--record-every).
_SCORE = (
    "import sys, ganomaly.scoring.progress as s\n"
    "s.CHECKPOINT_SECONDS = float(sys.argv.pop(1))\n"
    "from ganomaly.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
RECORD_EVERY = 2.0


def score(model: Path, source: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        _SCORE,
        str(RECORD_EVERY),
        "score",
        str(model),
        str(source),
        "-o",
        str(output),
        "--id-col",
        "id",
        "--quiet",
        *extra,
    ]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def kill_when(command: list[str], progress: Path, rows: int) -> tuple[float, int]:
    """Start ``command``; SIGKILL it once ``progress`` records more than ``rows``.

    Returns (seconds until the kill, rows of the last record).
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    recorded = 0
    while process.poll() is None:
        try:
            recorded = json.loads(progress.read_text())["n_input"]
        except (OSError, ValueError, KeyError):
            recorded = 0
        if recorded > rows:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        raise RuntimeError("the run finished before it could be killed: more rows")
    return time.perf_counter() - start, recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--bad-at", type=float, nargs="+", default=[0.000025, 0.975])
    parser.add_argument(
        "--record-every",
        type=float,
        default=2.0,
        help="seconds between progress records "
        "(ganomaly.scoring.progress.CHECKPOINT_SECONDS, 10 in ganomaly score; "
        "less here, so that a run of a few seconds has records to resume from)",
    )
    parser.add_argument("--gzip", action="store_true", help="also a .csv.gz input")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    global RECORD_EVERY
    RECORD_EVERY = args.record_every

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ganomaly-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = work / "model.safetensors"
        card_like(20_000, seed=10**9).to_csv(work / "train.csv", index=False)
        fit = [sys.executable, "-m", "ganomaly", "fit", str(work / "train.csv")]
        subprocess.run(
            [*fit, "-o", str(model), "--n-epochs", "5", "--quiet"], check=True
        )
        source = work / "card.csv"
        write_csv(source, args.rows)

        reference = work / "reference.csv"
        full = timed(score(model, source, reference))
        output = work / "out.csv"

        def killed_and_resumed(source: Path) -> tuple[float, int, float, bool]:
            """(seconds to the kill, rows recorded, seconds to resume, output =
            reference)."""
            progress = work / ".out.csv.partial.json"
            rows = int(args.kill_at * args.rows)
            killed = kill_when(score(model, source, output), progress, rows)
            resumed = timed(score(model, source, output, "--resume"))
            return (*killed, resumed, output.read_bytes() == reference.read_bytes())

        killed_after, recorded, resumed, same = killed_and_resumed(source)
        packed_runs = None
        if args.gzip:
            import pyarrow as pa

            packed = work / "card.csv.gz"
            with pa.output_stream(str(packed), compression="gzip") as sink:
                with open(source, "rb") as plain:
                    while chunk := plain.read(1 << 24):
                        sink.write(chunk)
            packed_full = timed(score(model, packed, output))
            full_same = output.read_bytes() == reference.read_bytes()
            *packed_killed, packed_same = killed_and_resumed(packed)
            packed_runs = (packed_full, *packed_killed, full_same and packed_same)
            packed.unlink()

        bad_lines = []  # (data row, seconds, output = reference without the row)
        for share in args.bad_at:
            bad, bad_out = work / "bad.csv", work / "bad-out.csv"
            bad_row = max(1, int(share * args.rows))
            with open(source, "rb") as original, open(bad, "wb") as copy:
                for number, line in enumerate(original):  # line 0 is the header
                    if number == bad_row:
                        line = line.rstrip(b"\n") + b",1\n"
                    copy.write(line)
            seconds = timed(score(model, bad, bad_out, "--on-bad-rows", "skip"))
            with open(reference, "rb") as full_output, open(bad_out, "rb") as out:
                expected = (ln for i, ln in enumerate(full_output) if i != bad_row)
                whole = all(a == b for a, b in zip(expected, out, strict=True))
            bad_lines.append((bad_row, seconds, whole))

        print(f"\n{args.rows:,} rows ({source.stat().st_size / 2**20:.0f} MiB)\n")
        print("| run | seconds |")
        print("|---|---:|")
        print(f"| full run | {full:.1f} |")
        print(
            f"| killed after {killed_after:.1f} s (last record: row {recorded:,}), "
            f"then `--resume` | {resumed:.1f} |"
        )
        if packed_runs:
            full_gz, killed_gz, recorded_gz, resumed_gz, _ = packed_runs
            print(f"| full run, .csv.gz input | {full_gz:.1f} |")
            print(
                f"| .csv.gz input killed after {killed_gz:.1f} s (last record: row "
                f"{recorded_gz:,}), then `--resume` | {resumed_gz:.1f} |"
            )
        for bad_row, seconds, _ in bad_lines:
            print(
                f"| one line with an extra field at row {bad_row:,}, "
                f"`--on-bad-rows skip` | {seconds:.1f} |"
            )
        print(f"\nresumed output identical to the full run's: {same}")
        if packed_runs:
            print(f".csv.gz outputs identical to the full run's: {packed_runs[-1]}")
        for bad_row, _, whole in bad_lines:
            print(f"bad line at row {bad_row:,}: the full run's other rows: {whole}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
