"""Tables as fraud analysts export them: booleans, timestamps, text labels, bytes
that are not UTF-8, Parquet types, duplicated names, empty rows.

Each family once gave a wrong answer with exit 0 (every row rejected and "success",
times one-hot encoded, a ``?`` label counted as fraud) or a traceback.
"""

from __future__ import annotations

import gzip
import os
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ganomaly import GANomalyDetector
from ganomaly.cli import main
from ganomaly.datasets import make_transactions
from ganomaly.preprocessing import InputDataError

from .conftest import ID_COL


def _fit(tmp_path, frame: pd.DataFrame, name: str = "train.csv", *extra: str):
    source = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(source)
    else:
        frame.to_csv(source, index=False)
    model = tmp_path / f"{name}.safetensors"
    args = ["fit", str(source), "-o", str(model), "--n-epochs", "1", "--quiet"]
    code = main([*args, "--label-col", "is_fraud", "--id-col", ID_COL, *extra])
    return code, model


@pytest.fixture(scope="module")
def booleans(tmp_path_factory):
    """A transactions table whose 0/1 columns are booleans, and its model."""
    tmp_path = tmp_path_factory.mktemp("booleans")
    frame = make_transactions(400, random_state=7)
    for column in ("card_present", "foreign"):
        frame[column] = frame[column].astype(bool)
    code, model = _fit(tmp_path, frame)
    assert code == 0
    return frame, model


@pytest.mark.parametrize(
    "spelling",
    [
        {True: "True", False: "False"},
        {True: "true", False: "false"},
        {True: "TRUE", False: "FALSE"},
        {True: "1", False: "0"},
    ],
)
def test_boolean_columns_round_trip_in_every_spelling(
    capsys, booleans, tmp_path, spelling
):
    frame, model = booleans
    table = frame.copy()
    for column in ("card_present", "foreign"):
        table[column] = table[column].map(spelling)
    source = tmp_path / "new.csv"
    table.to_csv(source, index=False)
    out = tmp_path / "o.csv"
    args = ["score", str(model), str(source), "-o", str(out), "--id-col", ID_COL]
    assert main(args) == 0, capsys.readouterr().err
    assert len(pd.read_csv(out)) == len(frame)
    # The training file itself, as pandas wrote it, scores and evaluates.
    train = tmp_path / "train.csv"
    frame.to_csv(train, index=False)
    args = ["evaluate", str(model), str(train), "--plot", str(tmp_path / "e.png")]
    assert main(args) == 0
    assert "AUROC" in capsys.readouterr().out


def test_a_value_that_is_no_boolean_is_named(capsys, booleans, tmp_path):
    frame, model = booleans
    table = frame.copy()
    table["card_present"] = table["card_present"].astype(str)
    table.loc[5, "card_present"] = "maybe"
    source = tmp_path / "new.csv"
    table.to_csv(source, index=False)
    out = tmp_path / "o.csv"
    args = ["score", str(model), str(source), "-o", str(out)]
    assert main(args) == 2
    expected = "line 7, column 'card_present': expected true/false or a number"
    assert f"{expected}, got 'maybe'" in capsys.readouterr().err
    assert main([*args, "--on-bad-rows", "skip"]) == 0
    assert len(pd.read_csv(out)) == len(frame) - 1


def test_a_parquet_boolean_column_scores_as_the_csv_one(booleans, tmp_path):
    frame, model = booleans
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        args = ["score", str(model), str(tmp_path / name), "-o"]
        assert main([*args, str(tmp_path / f"{name}.out.csv"), "--quiet"]) == 0
    scores = [pd.read_csv(tmp_path / f"{n}.out.csv") for n in ("a.csv", "a.parquet")]
    pd.testing.assert_frame_equal(scores[0], scores[1])


@pytest.mark.parametrize(
    "stamps",
    [
        "iso_text",
        "space_text",
        "day_first_text",
        "datetime64_parquet",
        "datetime64_api",
    ],
)
def test_time_columns_are_refused_naming_the_column(capsys, tmp_path, stamps):
    frame = make_transactions(200, random_state=1)
    times = pd.date_range("2024-03-01", periods=len(frame), freq="17min")
    frame["booked_at"] = {
        "iso_text": times.strftime("%Y-%m-%dT%H:%M:%S"),
        "space_text": times.strftime("%Y-%m-%d %H:%M"),
        "day_first_text": times.strftime("%d/%m/%Y %H:%M"),
        "datetime64_parquet": times,
        "datetime64_api": times,
    }[stamps]
    if stamps == "datetime64_api":
        with pytest.raises(InputDataError, match="column 'booked_at' holds dates"):
            GANomalyDetector(n_epochs=1).fit(frame.drop(columns=[ID_COL, "is_fraud"]))
        return
    name = "t.parquet" if stamps.endswith("parquet") else "t.csv"
    code, _ = _fit(tmp_path, frame, name)
    err = capsys.readouterr().err
    assert code == 2
    assert "column 'booked_at' holds dates/times" in err and "--drop-cols" in err
    code, _ = _fit(tmp_path, frame, name, "--drop-cols", "booked_at")
    assert code == 0


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A model fitted with text labels ("legit" normal), and a labelled file."""
    tmp_path = tmp_path_factory.mktemp("labels")
    frame = make_transactions(500, fraud_fraction=0.05, random_state=3)
    frame["is_fraud"] = frame["is_fraud"].map({0: "legit", 1: "fraud"})
    code, model = _fit(tmp_path, frame, "train.csv", "--normal-label", "legit")
    assert code == 0
    return frame, model


def test_evaluate_reads_labels_as_fit_did(capsys, labelled, tmp_path):
    frame, model = labelled
    source = tmp_path / "eval.csv"
    frame.to_csv(source, index=False)
    args = ["evaluate", str(model), str(source), "--json", str(tmp_path / "m.json")]
    assert main([*args, "--plot", str(tmp_path / "e.png")]) == 0
    metrics = pd.read_json(tmp_path / "m.json", typ="series")
    assert metrics["prevalence"] == pytest.approx((frame["is_fraud"] == "fraud").mean())
    assert 0.5 < metrics["auroc"] <= 1.0


def test_evaluate_refuses_a_label_neither_normal_nor_anomalous(
    capsys, labelled, tmp_path
):
    frame, model = labelled
    table = frame.copy()
    table.loc[[4, 40], "is_fraud"] = "?"
    source = tmp_path / "eval.csv"
    table.to_csv(source, index=False)
    args = ["evaluate", str(model), str(source), "--plot", str(tmp_path / "e.png")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "line 6, column 'is_fraud': label '?' is neither normal nor" in err
    assert "--on-bad-rows skip" in err
    rejects = tmp_path / "r.csv"
    assert main([*args, "--on-bad-rows", "skip", "--rejects", str(rejects)]) == 0
    assert "rows 498" in capsys.readouterr().out
    assert pd.read_csv(rejects)["line"].tolist() == [6, 42]


def test_evaluate_with_a_model_fitted_on_0_1_labels_refuses_others(capsys, tmp_path):
    frame = make_transactions(300, fraud_fraction=0.05, random_state=4)
    code, model = _fit(tmp_path, frame)
    assert code == 0
    frame.loc[3, "is_fraud"] = 7
    source = tmp_path / "eval.csv"
    frame.to_csv(source, index=False)
    args = ["evaluate", str(model), str(source), "--plot", str(tmp_path / "e.png")]
    assert main(args) == 2
    assert "label '7' is neither normal nor an anomaly" in capsys.readouterr().err


@pytest.mark.parametrize("column", ["amount", "merchant_category", ID_COL])
def test_bytes_that_are_not_utf8_reject_their_row_only(
    capsys, tiny_model, tmp_path, column
):
    frame = make_transactions(200, random_state=9)
    frame.to_csv(tmp_path / "clean.csv", index=False)
    lines = (tmp_path / "clean.csv").read_bytes().split(b"\n")
    cells = lines[11].split(b",")
    at = list(frame.columns).index(column)
    cells[at] = cells[at][:2] + b"\xff\xfe" + cells[at][2:]
    lines[11] = b",".join(cells)
    source = tmp_path / "latin.csv"
    source.write_bytes(b"\n".join(lines))
    out = tmp_path / "o.csv"
    args = ["score", str(tiny_model), str(source), "-o", str(out), "--id-col", ID_COL]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"line 12, column '{column}': not UTF-8 text" in err
    assert main([*args, "--on-bad-rows", "skip"]) == 0
    rejects = pd.read_csv(tmp_path / "o.rejects.csv")
    assert rejects["line"].tolist() == [12] and len(pd.read_csv(out)) == 199


def test_parquet_decimal_amounts_score_as_floats(tiny_model, tmp_path):
    frame = make_transactions(100, random_state=2)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    amounts = pa.array(
        [Decimal(f"{v:.2f}") for v in frame["amount"]], pa.decimal128(12, 2)
    )
    index = table.schema.get_field_index("amount")
    pq.write_table(table.set_column(index, "amount", amounts), tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "f.csv", index=False)
    for name in ("d.parquet", "f.csv"):
        args = ["score", str(tiny_model), str(tmp_path / name), "-o"]
        assert main([*args, str(tmp_path / f"{name}.csv"), "--quiet"]) == 0
    a, b = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("d.parquet", "f.csv"))
    np.testing.assert_allclose(a["anomaly_score"], b["anomaly_score"], rtol=1e-6)


@pytest.mark.parametrize("case", ["list_id", "struct_amount", "timestamp_amount"])
def test_parquet_types_that_are_no_values_are_named(capsys, tiny_model, tmp_path, case):
    frame = make_transactions(50, random_state=2)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    column, values = {
        "list_id": (ID_COL, pa.array([[i] for i in range(50)])),
        "struct_amount": ("amount", pa.array([{"v": 1.0}] * 50)),
        "timestamp_amount": ("amount", pa.array(pd.date_range("2024", periods=50))),
    }[case]
    index = table.schema.get_field_index(column)
    source = tmp_path / "t.parquet"
    pq.write_table(table.set_column(index, column, values), source)
    args = ["score", str(tiny_model), str(source), "-o", str(tmp_path / "o.csv")]
    assert main([*args, "--id-col", ID_COL]) == 2
    err = capsys.readouterr().err
    assert f"t.parquet: schema: column '{column}' has type" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_duplicated_column_name_is_refused(capsys, tiny_model, tmp_path, suffix):
    frame = make_transactions(50, random_state=2)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("amount", pa.array(np.zeros(50)))
    source = tmp_path / f"dup.{suffix}"
    if suffix == "csv":
        pacsv_write(table, source)
    else:
        pq.write_table(table, source)
    args = ["score", str(tiny_model), str(source), "-o", str(tmp_path / "o.csv")]
    assert main(args) == 2
    assert "column 'amount' appears 2 times" in capsys.readouterr().err
    fit = ["fit", str(source), "-o", str(tmp_path / "m.safetensors")]
    assert main(fit) == 2
    assert "column 'amount' appears 2 times" in capsys.readouterr().err


def pacsv_write(table: pa.Table, path) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, path)


def test_rows_of_bare_commas_are_rejected_not_scored_as_normal(
    capsys, tiny_model, tmp_path
):
    frame = make_transactions(60, random_state=2)
    frame.to_csv(tmp_path / "clean.csv", index=False)
    lines = (tmp_path / "clean.csv").read_text().split("\n")
    lines[3] = "," * (frame.shape[1] - 1)
    lines[8] = "T9," + "," * (frame.shape[1] - 2)
    source = tmp_path / "bare.csv"
    source.write_text("\n".join(lines))
    out = tmp_path / "o.csv"
    args = ["score", str(tiny_model), str(source), "-o", str(out), "--id-col", ID_COL]
    assert main([*args, "--on-bad-rows", "skip"]) == 0
    rejects = pd.read_csv(tmp_path / "o.rejects.csv")
    assert rejects["line"].tolist() == [4, 9]
    assert set(rejects["reason"]) == {"no value in any of the model's columns"}


@pytest.mark.parametrize(
    "content",
    ["gzip", "bzip2", "zstd", "parquet", "zip", "cr_only"],
)
def test_files_that_are_no_csv_text_are_named(capsys, tiny_model, tmp_path, content):
    import bz2

    frame = make_transactions(30, random_state=2)
    text = frame.to_csv(index=False).encode()
    source = tmp_path / "t.csv"
    if content == "gzip":
        source.write_bytes(gzip.compress(text))
    elif content == "bzip2":
        source.write_bytes(bz2.compress(text))
    elif content == "zstd":
        source.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    elif content == "parquet":
        frame.to_parquet(source)
    elif content == "zip":
        source.write_bytes(b"PK\x03\x04" + b"\0" * 20)
    else:
        source.write_bytes(text.replace(b"\n", b"\r"))
    for command in (["score", str(tiny_model)], ["fit"]):
        args = [*command, str(source), "-o", str(tmp_path / "o")]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert "t.csv" in err and ("not CSV text" in err or "carriage return" in err)


def test_resume_refuses_an_input_edited_with_its_size_and_time_kept(
    tiny_model, tmp_path, monkeypatch
):
    import ganomaly.scoring as scoring
    from ganomaly.scoring import ResumeError, score_file

    frame = make_transactions(3000, random_state=2)
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "o.csv"
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    original = scoring.job.Job.run

    def interrupted(self, output):
        self.rejects.close()
        original(self, output)
        raise KeyboardInterrupt  # after the rows were recorded

    monkeypatch.setattr(scoring.job.Job, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_file(tiny_model, source, out, block_size=1024)
    monkeypatch.setattr(scoring.job.Job, "run", original)
    info = source.stat()
    data = bytearray(source.read_bytes())
    middle = data.index(b"\n", len(data) // 2) + 1
    data[middle : middle + 1] = b"X" if data[middle : middle + 1] != b"X" else b"Y"
    source.write_bytes(bytes(data))
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert source.stat().st_size == info.st_size
    with pytest.raises(ResumeError, match="the input file's content differs"):
        score_file(tiny_model, source, out, resume=True)
    time.sleep(0)  # (the record stays for a run without --resume)


def test_fits_without_data_say_so(tmp_path):
    with pytest.raises(ValueError, match="every value .* is missing"):
        GANomalyDetector(n_epochs=1).fit(np.full((20, 3), np.nan))
    frame = make_transactions(30, random_state=2)
    with pytest.raises(ValueError, match="0 columns"):
        GANomalyDetector(n_epochs=1).fit(frame[[]])
