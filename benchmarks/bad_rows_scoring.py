"""``ganomaly score --on-bad-rows skip`` on a file with text in a number column.

Daily files are not always clean: an export puts "N/A" in a number column, every
so often.  This builds a CSV file shaped like the card data (as
``scoring_throughput.py`` does), fits the same small model, and makes a copy of
the file in which one row in ``--bad-every`` has ``N/A`` in ``V3``.  Then, each in a
fresh process, interleaved over ``--repeats`` rounds (the best counts):

* ``pyarrow read_csv``: reading the clean file, the practical limit;
* ``clean``: ``ganomaly score`` of the clean file;
* ``with N/A``: ``ganomaly score --on-bad-rows skip`` of the copy.

Reported: seconds, the ratio of each run's speed to the clean run's, peak RSS,
and whether every row scored in the copy has the bytes of its clean run's row
(the rejected rows aside).

Usage::

    python benchmarks/bad_rows_scoring.py                      # 1M rows, 1 in 10
    python benchmarks/bad_rows_scoring.py --bad-every 1000 --repeats 3

Files go to ``--work-dir`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring_throughput import card_like, timed_child, write_csv  # noqa: E402


def spoil(source: Path, target: Path, every: int) -> int:
    """Copy ``source`` with ``N/A`` in V3 (field 4) of every ``every``-th data row;
    the number of rows spoiled."""
    spoiled = 0
    with open(source, "rb") as read, open(target, "wb") as write:
        write.write(read.readline())
        for number, line in enumerate(read, start=1):
            if number % every == 0:
                fields = line.split(b",")
                fields[3] = b"N/A"
                line = b",".join(fields)
                spoiled += 1
            write.write(line)
    return spoiled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ganomaly-bad-rows-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        import compileall

        import gancore
        import ganomaly

        for package in (gancore, ganomaly):
            compileall.compile_dir(Path(package.__file__).parent, quiet=1)
        from ganomaly.cli import main as ganomaly_main

        card_like(20_000, seed=10**9).to_csv(work / "train.csv", index=False)
        model = work / "model.safetensors"
        fit = ["fit", str(work / "train.csv"), "-o", str(model), "--n-epochs", "5"]
        assert ganomaly_main([*fit, "--quiet"]) == 0
        clean = work / "clean.csv"
        write_csv(clean, args.rows)
        dirty = work / "dirty.csv"
        n_bad = spoil(clean, dirty, args.bad_every)

        def score(source: Path, output: Path, *extra: str) -> str:
            call = ["score", str(model), str(source), "-o", str(output)]
            call += ["--id-col", "id", "--quiet", *extra]
            return f"from ganomaly._launch import main\nassert main({call!r}) == 0"

        children = {
            "pyarrow read_csv": (
                f"import pyarrow.csv as c\nc.read_csv({str(clean)!r})"
            ),
            "clean": score(clean, work / "clean_out.csv"),
            f"with N/A (1 row in {args.bad_every})": score(
                dirty, work / "dirty_out.csv", "--on-bad-rows", "skip"
            ),
        }
        outputs = [None, work / "clean_out.csv", work / "dirty_out.csv"]
        runs: dict[str, list] = {name: [] for name in children}
        for _ in range(args.repeats):
            for (name, code), output in zip(children.items(), outputs, strict=True):
                if output is not None:
                    output.unlink(missing_ok=True)
                    output.with_name(output.stem + ".rejects.csv").unlink(
                        missing_ok=True
                    )
                runs[name].append(timed_child(code))

        clean_rows = (work / "clean_out.csv").read_bytes().splitlines()
        kept = [
            line
            for number, line in enumerate(clean_rows)
            if number == 0 or number % args.bad_every
        ]
        same = kept == (work / "dirty_out.csv").read_bytes().splitlines()
        rejects = work / "dirty_out.rejects.csv"
        n_rejects = len(rejects.read_bytes().splitlines()) - 1

        best = {name: min(r[0] for r in runs[name]) for name in children}
        print(f"{args.rows:,} rows, {n_bad:,} with N/A; rejects file: {n_rejects:,}")
        print(f"rows scored in both runs have the same bytes: {same}\n")
        print("| run | seconds | speed / clean run's | CPU s | peak RSS MiB |")
        print("|---|---|---|---|---|")
        for name in children:
            wall, _, _, cpu = min(runs[name])
            peak = max(r[2] for r in runs[name])
            ratio = best["clean"] / wall
            print(f"| {name} | {wall:.1f} | {ratio:.2f} | {cpu:.1f} | {peak:.0f} |")
        return 0 if same and n_rejects == n_bad else 1
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
