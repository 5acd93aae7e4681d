"""Records whose quoted fields hold line ends, wherever the pieces of a file fall.

The parallel reader cuts a CSV file into pieces that threads parse side by side.
A cut at a line end inside a quoted field would turn the rest of that field into
rows that do not exist (phantom rows), or into rows with the wrong number of
fields.  Invariant for every valid RFC 4180 file, whatever the piece size: the
rows scored plus the rows rejected are the records that Python's ``csv`` module
reads, each once, with the output of a run in one piece.
"""

from __future__ import annotations

import csv
import gzip
import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganomaly.cli import main
from ganomaly.datasets import make_transactions
from ganomaly.scoring import score_file
from ganomaly.scoring.csv_pieces import (
    _after_last_record_end,
    _line_ends,
    _open_quote,
)

ID_COL = "transaction_id"


def _records(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _transactions_with_notes(
    n_rows: int,
    notes: dict[int, str],
    quoting: int = csv.QUOTE_MINIMAL,
    newline: str = "\n",
) -> str:
    """A transactions CSV with a ``note`` column, quoted by the csv module (which,
    as pandas, quotes a carriage return only where lines end with one)."""
    frame = make_transactions(n_rows, random_state=2).drop(columns=["is_fraud"])
    frame["note"] = [notes.get(i, "") for i in range(n_rows)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=newline, quoting=quoting)
    writer.writerow(frame.columns)
    cells = frame.astype(object).where(frame.notna(), "")  # missing: empty fields
    writer.writerows(cells.itertuples(index=False))
    return text.getvalue()


def _score_text(tiny_model, tmp_path, text: str, name: str, **options):
    source = tmp_path / name
    if name.endswith(".gz"):
        source.write_bytes(gzip.compress(text.encode()))
    else:
        source.write_bytes(text.encode())
    output = tmp_path / f"{name}.out.csv"
    summary = score_file(
        tiny_model, source, output, id_col=ID_COL, threads=2, **options
    )
    return summary, output


@pytest.mark.parametrize("name", ["notes.csv", "notes.csv.gz"])
def test_a_field_of_row_like_lines_across_a_piece_boundary_is_one_value(
    tiny_model, tmp_path, name
):
    # The case: a note of 2,000 lines that look like rows (one field fewer
    # too), placed so that pieces of a few KiB end inside it.
    fake_rows = "\n".join(f"T{i:07d},1.0,grocery,3,1.0,1,10,1,0" for i in range(2000))
    short_rows = "\n".join(f"T{i:07d},1.0,grocery,3,1.0,1,10,1" for i in range(2000))
    text = _transactions_with_notes(3000, {700: fake_rows, 2100: short_rows})
    expected = len(_records(text)) - 1
    assert expected == 3000 and text.count("\n") > 6990
    outputs = []
    for block_size in (1 << 10, 1 << 20):
        summary, output = _score_text(
            tiny_model, tmp_path, text, name, block_size=block_size
        )
        assert (summary.n_input, summary.n_scored, summary.n_rejected) == (
            expected,
            expected,
            0,
        )
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]
    scored = pd.read_csv(io.BytesIO(outputs[0]))
    assert scored[ID_COL].tolist() == [f"T{i:07d}" for i in range(1, 3001)]


_NOTE = st.text(alphabet=st.sampled_from(list('ab ,"\n\r')), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    notes=st.dictionaries(st.integers(0, 59), _NOTE, max_size=25),
    block_size=st.sampled_from([64, 200, 1000]),
    name=st.sampled_from(["n.csv", "n.csv.gz"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_every_record_is_scored_once_whatever_the_piece_size(
    tiny_model, tmp_path_factory, notes, block_size, name, quoting, newline
):
    tmp_path = tmp_path_factory.mktemp("quoted")
    if newline == "\n":  # valid RFC 4180 only: an unquoted "\r" would end a line
        notes = {row: note.replace("\r", "") for row, note in notes.items()}
    text = _transactions_with_notes(60, notes, quoting, newline)
    expected = _records(text)[1:]
    summary, output = _score_text(
        tiny_model, tmp_path, text, name, block_size=block_size, on_bad_rows="skip"
    )
    assert summary.n_input == summary.n_scored + summary.n_rejected == len(expected)
    assert summary.n_rejected == 0
    scored = pd.read_csv(output, keep_default_na=False)
    assert scored[ID_COL].tolist() == [r[0] for r in expected]
    whole, whole_output = _score_text(
        tiny_model, tmp_path, text, "whole.csv", on_bad_rows="skip"
    )
    assert output.read_bytes() == whole_output.read_bytes()


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('a,"\n')), max_size=80))
def test_line_ends_inside_quotes_are_those_of_the_csv_module(text):
    """The record ends found with numpy are the csv module's (and pyarrow's,
    which reads quotes the same way) on any text, valid or not."""
    text += "\n"
    data = np.frombuffer(text.encode(), np.uint8)
    ends, inside = _line_ends(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    lines_read = []
    for _ in reader:
        lines_read.append(reader.line_num)
    newline_lines = np.cumsum(data == 10)[ends]  # the line each newline ends
    ours = newline_lines[~inside].tolist()
    if inside[-1]:  # a quote open at the end: the csv module ends it there
        lines_read.pop()
    # The csv module skips empty lines without a record; those end records for us
    # too (empty ones, which pyarrow skips); compare where a record was read.
    assert [line for line in ours if line in lines_read] == lines_read
    # Looked at from the end only, each line end gets the same answer.
    for end, is_inside in zip(ends.tolist(), inside.tolist(), strict=True):
        for window in (1, 3, 4096):
            assert (_open_quote(data, end, window) >= 0) == is_inside
    outside = ends[~inside]
    expected_cut = int(outside[-1]) + 1 if outside.size else 0
    assert _after_last_record_end(data)[0] == expected_cut


def test_a_quote_that_never_closes_is_named_not_read_whole(tiny_model, tmp_path):
    import ganomaly.scoring as scoring

    text = _transactions_with_notes(50, {3: "unclosed"})
    assert ",unclosed\n" in text
    text = text.replace(",unclosed\n", ',"unclosed\n')  # a quote that never closes
    rows = ["T9999999,1.0,grocery,3,1.0,1,10,1,0,x"] * 20_000
    source = tmp_path / "open.csv"
    source.write_text(text + "\n".join(rows) + "\n")
    # Where the file ends inside the quote (a file smaller than a piece)...
    with pytest.raises(scoring.BadInputError, match="line 5: a quote .* never closed"):
        score_file(tiny_model, source, tmp_path / "o.csv", on_bad_rows="skip")
    # ... and where the pieces grow past the largest record read.
    old = scoring.csv_pieces.MAX_RECORD_BYTES
    scoring.csv_pieces.MAX_RECORD_BYTES = 1 << 16
    try:
        with pytest.raises(scoring.BadInputError, match="line 5: no end of the row"):
            score_file(tiny_model, source, tmp_path / "o.csv", block_size=1024)
        code = main(
            ["score", str(tiny_model), str(source), "-o", str(tmp_path / "o.csv")]
        )
    finally:
        scoring.csv_pieces.MAX_RECORD_BYTES = old
    assert code == 2
    assert not (tmp_path / "o.csv").exists()


def test_a_header_longer_than_a_megabyte_is_read_whole(tiny_model, tmp_path):
    text = _transactions_with_notes(40, {})
    header, body = text.split("\n", 1)
    # 2 MiB of extra columns before the model's columns.
    extra = [f"unused_{i:06d}_{'x' * 60}" for i in range(30_000)]
    rows = body.splitlines()
    source = tmp_path / "wide.csv"
    source.write_text(
        ",".join(extra + [header])
        + "\n"
        + "\n".join(",".join([""] * len(extra) + [r]) for r in rows)
        + "\n"
    )
    summary = score_file(tiny_model, source, tmp_path / "o.csv", id_col=ID_COL)
    assert summary.n_scored == 40


def test_a_column_name_with_a_line_end_round_trips(tmp_path):
    frame = make_transactions(200, random_state=0).drop(columns=["is_fraud"])
    frame = frame.rename(columns={"amount": "amount\n(EUR)"})
    frame.to_csv(tmp_path / "train.csv", index=False)
    model = tmp_path / "m.safetensors"
    assert (
        main(
            ["fit", str(tmp_path / "train.csv"), "-o", str(model), "--n-epochs", "1"]
            + ["--id-col", ID_COL, "--quiet"]
        )
        == 0
    )
    out = tmp_path / "o.csv"
    args = ["score", str(model), str(tmp_path / "train.csv"), "-o", str(out)]
    assert main(args + ["--id-col", ID_COL]) == 0
    assert len(pd.read_csv(out)) == 200
