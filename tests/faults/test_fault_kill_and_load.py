"""Killed runs, concurrent runs and a 4,000,000-row input for ``ganomaly score``.

All slow (``-m slow``): they start real processes on inputs of 100,000 rows and
more.  Each test prints what it measured (run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from ganomaly.datasets import make_transactions

pytestmark = pytest.mark.slow

# Peak RSS from VmHWM: getrusage's ru_maxrss survives exec and would report the
# (larger) pytest process that forked the child.
_PEAK = (
    "import sys\n"
    "from ganomaly.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read()\n"
    "peak = status.split('VmHWM:')[1].split()[0]\n"
    "print(f'PEAK_RSS_KIB {peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _score_command(model: Path, source: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        _PEAK,
        "score",
        str(model),
        str(source),
        "-o",
        str(output),
        "--quiet",
    ]


def _score(model: Path, source: Path, output: Path) -> tuple[float, int]:
    """Run to completion; returns (seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    done = subprocess.run(
        _score_command(model, source, output),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    peak = int(done.stderr.split("PEAK_RSS_KIB ")[1].split()[0]) // 1024
    return seconds, peak


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults-load")
    for index, n_rows in enumerate([200_000, 100_000, 100_000, 100_000, 100_000]):
        frame = make_transactions(n_rows, random_state=10 + index)
        frame.drop(columns=["is_fraud"]).to_csv(folder / f"in{index}.csv", index=False)
    return folder


def test_sigkill_leaves_nothing_or_the_previous_output(tiny_model, inputs, tmp_path):
    """SIGKILL at random moments: the target holds nothing or the previous complete
    output, never a truncated file; a rerun then completes."""
    source = inputs / "in0.csv"
    reference = tmp_path / "reference.csv"
    seconds, _ = _score(tiny_model, source, reference)
    complete = reference.read_bytes()
    previous = b"row,anomaly_score\n1,0.5\n"  # an older complete output
    rng = random.Random(0)
    outcomes = []
    n_trials = 10
    for trial in range(n_trials):
        target = tmp_path / f"out{trial}.csv"
        had_previous = trial % 2 == 1
        if had_previous:
            target.write_bytes(previous)
        process = subprocess.Popen(
            _score_command(tiny_model, source, target),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        if trial < n_trials // 2:  # any moment, start-up included
            delay = rng.uniform(0.3, seconds * 1.05)
            time.sleep(delay)
        else:  # while the output is being written: its partial file exists
            started = time.monotonic()
            while process.poll() is None and not list(
                tmp_path.glob(f".{target.name}.partial")
            ):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.8))
            delay = time.monotonic() - started
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished = process.returncode == 0
        if target.exists():
            content = target.read_bytes()
            assert content in (complete, previous if had_previous else complete), (
                f"trial {trial}: a truncated output ({len(content)} bytes)"
            )
            state = "complete" if content == complete else "previous"
        else:
            assert not had_previous, f"trial {trial}: the previous output vanished"
            state = "nothing"
        outcomes.append((round(delay, 2), finished, state))
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    # A rerun into each target completes and removes the killed runs' partial
    # outputs, progress files and temporaries.
    for trial in range(n_trials):
        target = tmp_path / f"out{trial}.csv"
        _score(tiny_model, source, target)
        assert target.read_bytes() == complete
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    print(
        f"\nkill trials ({n_trials}, full run {seconds:.1f} s): {outcomes}; "
        f"{len(leftovers)} partial or temporary files left by killed runs"
    )


def test_sigkill_then_resume_completes_the_same_output(tiny_model, inputs, tmp_path):
    """``--resume`` after SIGKILL at several moments: the output equals an
    uninterrupted run's, and the resumed run does less than the whole file."""
    source = inputs / "in0.csv"
    reference = tmp_path / "reference.csv"
    seconds, _ = _score(tiny_model, source, reference)
    complete = reference.read_bytes()
    target = tmp_path / "out.csv"
    progress = tmp_path / ".out.csv.partial.json"
    resumed_from = []

    def recorded() -> int:
        try:
            return json.loads(progress.read_text())["n_input"]
        except (FileNotFoundError, ValueError):  # none yet, or the run finished
            return 0

    for _ in range(3):  # kill, resume, kill the resumed run...
        command = [*_score_command(tiny_model, source, target), "--resume"]
        command += ["--score-threads", "1"]
        # Progress recorded every 50 ms instead of every 10 s, and pieces of
        # 64 KiB instead of 4 MiB (a record is made between two pieces).
        command[2] = (
            "import ganomaly.scoring as s; s.progress.CHECKPOINT_SECONDS = 0.05\n"
            "s.score_file.__kwdefaults__['block_size'] = 1 << 14\n" + command[2]
        )
        before = recorded()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
        )
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if recorded() > before:  # a new record: kill right after it
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "finished before the kill"
        assert not target.exists()
        resumed_from.append(recorded())
    assert resumed_from == sorted(resumed_from) and resumed_from[0] > 0
    started = time.perf_counter()
    done = subprocess.run(
        [*_score_command(tiny_model, source, target), "--resume"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "reference.csv"]
    print(
        f"\nkilled at rows {resumed_from} of 200,000; the last resume took "
        f"{time.perf_counter() - started:.1f} s against {seconds:.1f} s for the run"
    )


def test_four_concurrent_runs_equal_single_runs(tiny_model, inputs, tmp_path):
    sources = [inputs / f"in{i}.csv" for i in range(1, 5)]
    single = []
    for index, source in enumerate(sources):
        _score(tiny_model, source, tmp_path / f"single{index}.csv")
        single.append((tmp_path / f"single{index}.csv").read_bytes())
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            _score_command(tiny_model, source, tmp_path / f"together{index}.csv"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for index, source in enumerate(sources)
    ]
    peaks = []
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        peaks.append(int(err.split("PEAK_RSS_KIB ")[1].split()[0]) // 1024)
    seconds = time.perf_counter() - start
    for index in range(len(sources)):
        together = (tmp_path / f"together{index}.csv").read_bytes()
        assert together == single[index], f"run {index} differs when concurrent"
        assert together.count(b"\n") == 100_000 + 1  # nothing lost
    print(f"\n4 concurrent runs of 100,000 rows: {seconds:.1f} s, peak RSS {peaks} MiB")


def test_four_million_rows_streamed(tiny_model, inputs, tmp_path):
    """4,000,000 rows end to end in flat memory; every row scored as in a small run."""
    base = inputs / "in0.csv"  # 200,000 rows
    lines = base.read_bytes().split(b"\n", 1)
    header, body = lines[0] + b"\n", lines[1]
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.write(header)
        for _ in range(20):
            handle.write(body)
    small_out = tmp_path / "small.csv"
    small_seconds, small_peak = _score(tiny_model, base, small_out)
    out = tmp_path / "big_out.csv"
    seconds, peak = _score(tiny_model, big, out)
    scored = pacsv.read_csv(
        out,
        convert_options=pacsv.ConvertOptions(include_columns=["row", "anomaly_score"]),
    )
    rows = scored.column("row").to_numpy()
    assert len(rows) == 4_000_000
    assert np.array_equal(rows, np.arange(1, 4_000_001))
    small = pacsv.read_csv(small_out).column("anomaly_score").to_numpy()
    scores = scored.column("anomaly_score").to_numpy().reshape(20, -1)
    assert np.array_equal(scores, np.broadcast_to(small, scores.shape))
    assert peak < 1024, f"peak RSS {peak} MiB"
    print(
        f"\n4,000,000 rows ({big.stat().st_size / 2**20:.0f} MiB): {seconds:.1f} s "
        f"({4e6 / seconds:,.0f} rows/s incl. start-up), peak RSS {peak} MiB; "
        f"200,000 rows: {small_seconds:.1f} s, peak RSS {small_peak} MiB"
    )
