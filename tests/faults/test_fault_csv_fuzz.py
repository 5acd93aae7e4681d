"""Hypothesis fuzzing of ``ganomaly score`` with malformed transaction CSVs.

Every generated file is scored twice, with the default ``--on-bad-rows error`` and
with ``--on-bad-rows skip``.  Invariants, for every file:

* ``main`` returns an exit code; nothing escapes as an exception (a traceback);
* a failed run (exit 2) prints one message naming the file and a line, and leaves
  nothing at the output path (no temporary file either);
* a successful run accounts for every record: scored rows + rejected rows = the
  records of the file (a reference count from Python's ``csv`` module), each row
  number exactly once, each rejected row with a reason;
* the default mode succeeds exactly when skip mode rejects nothing;
* where the file has no line breaks inside quoted fields, the line named in an
  error or a rejects row is one of the lines that a mutation touched.

The example count is modest so that this runs in the normal test run; set
``GANKIT_FUZZ_EXAMPLES`` to run more (the reliability numbers were taken so).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ganomaly.cli import main
from ganomaly.datasets import make_transactions

N_EXAMPLES = int(os.environ.get("GANKIT_FUZZ_EXAMPLES", "150"))
N_ROWS = 12
csv.field_size_limit(sys.maxsize)  # the reference parser must take long fields

_BASE = make_transactions(N_ROWS, random_state=1).drop(columns=["is_fraud"])
HEADER = list(_BASE.columns)
ROWS = [[str(v) for v in row] for row in _BASE.itertuples(index=False)]
NUMERIC = [c for c in HEADER if c not in ("transaction_id", "merchant_category")]

_CELL_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=',"\r\n'),
    max_size=12,
)
_ODD_NUMBERS = st.sampled_from(
    ["NaN", "nan", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e400", "0x1F"]
)


@dataclass
class Fuzzed:
    header: list[str]
    rows: list[list[str]]  # fields as written (already quoted where wanted)
    blank_before: set[int] = field(default_factory=set)  # row indices
    touched_rows: set[int] = field(default_factory=set)
    header_touched: bool = False
    multiline: bool = False
    bom: bool = False
    newline: str = "\n"
    final_newline: bool = True

    def __repr__(self) -> str:  # failing examples print short
        text, _ = self.text()
        shown = re.sub(r"([^,\n]{40})[^,\n]{20,}", r"\1...", text)
        return f"Fuzzed(touched={sorted(self.touched_rows)}, text={shown!r})"

    def text(self) -> tuple[str, dict[int, int]]:
        """The file's text and the physical line of each data row (1-based)."""
        lines = [",".join(self.header)]
        line_of: dict[int, int] = {}
        for index, row in enumerate(self.rows):
            if index in self.blank_before:
                lines.append("")
            lines.append(",".join(row))
            line_of[index] = len(lines)
        text = self.newline.join(lines) + (self.newline if self.final_newline else "")
        return ("\ufeff" if self.bom else "") + text, line_of


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@st.composite
def fuzzed_files(draw) -> Fuzzed:
    """A transactions CSV with a few random faults."""
    fuzzed = Fuzzed(list(HEADER), [list(r) for r in ROWS])
    n_rows = len(fuzzed.rows)
    # Header-level faults (at most one): reorder, duplicate, drop a column.
    header_fault = draw(st.sampled_from(["none"] * 4 + ["reorder", "dup", "drop"]))
    if header_fault == "reorder":
        order = draw(st.permutations(range(len(HEADER))))
        fuzzed.header = [fuzzed.header[i] for i in order]
        fuzzed.rows = [[row[i] for i in order] for row in fuzzed.rows]
    elif header_fault == "dup":
        column = draw(st.integers(0, len(HEADER) - 1))
        fuzzed.header.append(fuzzed.header[column])
        for row in fuzzed.rows:
            row.append(row[column])
        fuzzed.header_touched = True
    elif header_fault == "drop":
        column = draw(st.integers(0, len(HEADER) - 1))
        del fuzzed.header[column]
        for row in fuzzed.rows:
            del row[column]
        fuzzed.header_touched = True
    names = fuzzed.header
    numeric_at = [i for i, name in enumerate(names) if name in NUMERIC]

    n_faults = draw(st.integers(0, 4))
    for _ in range(n_faults):
        kind = draw(
            st.sampled_from(
                [
                    "delete_cell",
                    "add_cell",
                    "text_in_numeric",
                    "odd_number",
                    "empty_cell",
                    "unicode_category",
                    "quoted_cell",
                    "stray_quote",
                    "unterminated_quote",
                    "long_field",
                    "blank_line",
                    "whitespace_line",
                ]
            )
        )
        index = draw(st.integers(0, n_rows - 1))
        row = fuzzed.rows[index]
        column = draw(st.integers(0, max(0, len(row) - 1)))
        numeric_here = [i for i in numeric_at if i < len(row)]
        category_here = (
            names.index("merchant_category")
            if "merchant_category" in names
            and names.index("merchant_category") < len(row)
            else None
        )
        if kind == "delete_cell" and row:
            del row[column]
        elif kind == "add_cell":
            row.insert(column, draw(_CELL_TEXT))
        elif kind == "text_in_numeric" and numeric_here:
            row[draw(st.sampled_from(numeric_here))] = draw(_CELL_TEXT)
        elif kind == "odd_number" and numeric_here:
            row[draw(st.sampled_from(numeric_here))] = draw(_ODD_NUMBERS)
        elif kind == "empty_cell" and row:
            row[column] = ""
        elif kind == "unicode_category" and category_here is not None:
            row[category_here] = draw(
                st.sampled_from(["café", "日本", "\u200b", "emoji-🎉", "Ω" * 40])
            )
        elif kind == "quoted_cell" and row:
            value = draw(st.sampled_from(["", "a,b", 'say "hi"', "two\nlines"]))
            if draw(st.booleans()):
                value = row[column]  # a legitimately quoted ordinary value
            fuzzed.multiline |= "\n" in value
            row[column] = _quote(value)
        elif kind == "stray_quote" and row:
            row[column] = row[column][:1] + '"' + row[column][1:]
        elif kind == "unterminated_quote" and row:
            row[column] = '"' + row[column]
            fuzzed.multiline = True  # the parser reads on past the line end
        elif kind == "long_field" and row:
            row[column] = draw(st.sampled_from(["9", "x", "1"])) * 100_000
        elif kind == "blank_line":
            fuzzed.blank_before.add(index)
            continue  # blank lines are not records: no row is touched
        elif kind == "whitespace_line":
            fuzzed.rows.insert(index, ["   "])
            fuzzed.touched_rows = {
                r + 1 if r >= index else r for r in fuzzed.touched_rows
            }
            fuzzed.blank_before = {
                r + 1 if r >= index else r for r in fuzzed.blank_before
            }
            n_rows += 1
        else:
            continue
        fuzzed.touched_rows.add(index)
    fuzzed.bom = draw(st.booleans())
    fuzzed.newline = draw(st.sampled_from(["\n", "\r\n"]))
    fuzzed.final_newline = draw(st.booleans())
    return fuzzed


def _reference_records(text: str) -> int:
    """Records in the file after the header, by Python's csv module."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    records = [r for r in reader]
    return sum(1 for r in records[1:] if r)


def _score(model: Path, source: Path, output: Path, *extra: str) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(
            ["score", str(model), str(source), "-o", str(output), "--quiet", *extra]
        )
    assert isinstance(code, int)
    return code, stderr.getvalue()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fuzzed=fuzzed_files())
def test_score_malformed_csv(tiny_model, tmp_path_factory, fuzzed):
    folder = tmp_path_factory.mktemp("fuzz")
    text, line_of = fuzzed.text()
    source = folder / "input.csv"
    source.write_bytes(text.encode("utf-8"))
    touched_lines = {line_of[r] for r in fuzzed.touched_rows}
    exact_lines = not fuzzed.multiline

    results = {}
    for mode in ("error", "skip"):
        output = folder / f"out-{mode}.csv"
        code, err = _score(tiny_model, source, output, "--on-bad-rows", mode)
        assert "Traceback" not in err
        results[mode] = code
        event(f"{mode}: exit {code}")
        if code != 0:
            assert code == 2, err
            assert err.startswith("ganomaly score: error: "), err
            assert str(source) in err, err
            match = re.search(r"\bline (\d+)", err)
            assert match, f"no line named in: {err}"
            if exact_lines:
                named = int(match.group(1))
                assert named == 1 or named in touched_lines, (named, err)
            assert not output.exists(), "a failed run left an output"
            rejects = folder / f"out-{mode}.rejects.csv"
            assert not rejects.exists(), "a failed run left a rejects file"
            assert _leftovers(folder) == [], "a failed run left a temporary file"
            continue
        n_records = _reference_records(text)
        scored = pd.read_csv(output)
        rows = scored["row"].tolist()
        if mode == "skip":
            rejects = pd.read_csv(folder / f"out-{mode}.rejects.csv")
            assert rejects["reason"].notna().all() and (rejects["reason"] != "").all()
            rows += rejects["row"].tolist()
            event(f"skip: {'some' if len(rejects) else 'no'} rows rejected")
            if exact_lines:
                assert set(rejects["line"].tolist()) <= touched_lines, rejects
        assert len(rows) == n_records, (len(scored), n_records)
        assert sorted(rows) == list(range(1, n_records + 1)), "row numbers"
        assert scored["anomaly_score"].notna().all()
        assert (scored["anomaly_score"] >= 0).all()
    if results["skip"] == 0:
        n_rejected = len(pd.read_csv(folder / "out-skip.rejects.csv"))
        assert (results["error"] == 0) == (n_rejected == 0), (results, n_rejected)


def test_blank_lines_do_not_shift_line_numbers(tiny_model, tmp_path):
    """Regression (found by the fuzzing): pyarrow skips blank lines without counting
    them, and messages after one named the line above the bad one."""
    lines = [",".join(HEADER)] + [",".join(row) for row in ROWS]
    lines[2] = ",".join(ROWS[1][:-1])  # line 3: a field short
    lines[4] = lines[4].replace(ROWS[3][1], "abc", 1)  # line 5: text as amount
    lines.insert(1, "")  # now lines 4 and 6
    source = tmp_path / "blank.csv"
    source.write_text("\n".join(lines) + "\n")
    code, err = _score(tiny_model, source, tmp_path / "out.csv")
    assert code == 2 and "line 4: expected 9 fields, got 8" in err, err
    code, err = _score(
        tiny_model, source, tmp_path / "out.csv", "--on-bad-rows", "skip"
    )
    assert code == 0, err
    rejects = pd.read_csv(tmp_path / "out.rejects.csv")
    assert rejects["line"].tolist() == [4, 6]
    assert rejects["row"].tolist() == [2, 4]
