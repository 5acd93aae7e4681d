"""The ganomaly command line, called as main([...]) on files in tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ganomaly.cli import main
from ganomaly.datasets import make_transactions


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A training CSV, a new CSV and a model fitted by `ganomaly fit`."""
    folder = tmp_path_factory.mktemp("cli")
    table = make_transactions(1500, fraud_fraction=0.03, random_state=0)
    table.iloc[:1000].to_csv(folder / "train.csv", index=False)
    table.iloc[1000:].to_csv(folder / "new.csv", index=False)
    code = main(
        [
            "fit",
            str(folder / "train.csv"),
            "-o",
            str(folder / "model.safetensors"),
            "--label-col",
            "is_fraud",
            "--id-col",
            "transaction_id",
            "--n-epochs",
            "3",
            "--quiet",
        ]
    )
    assert code == 0
    return folder


def _score(files, source, *extra):
    return main(
        [
            "score",
            str(files / "model.safetensors"),
            str(source),
            "-o",
            str(files / "out.csv"),
            "--id-col",
            "transaction_id",
            "--quiet",
            *extra,
        ]
    )


def _evaluate(files, labelled, *extra):
    return main(
        [
            "evaluate",
            str(files / "model.safetensors"),
            str(labelled),
            "--label-col",
            "is_fraud",
            *extra,
        ]
    )


def test_fit_reports_rows_used(tmp_path, capsys):
    table = make_transactions(400, fraud_fraction=0.05, random_state=1)
    table.to_csv(tmp_path / "t.csv", index=False)
    code = main(
        [
            "fit",
            str(tmp_path / "t.csv"),
            "-o",
            str(tmp_path / "m.safetensors"),
            "--label-col",
            "is_fraud",
            "--drop-cols",
            "transaction_id",
            "--n-epochs",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "training on 380 of 400 rows" in err
    # 380 normal rows, a tenth held out: the rest kept for the nearest-row term.
    assert "(8 members, 1 epochs, 342 training rows kept)" in err


def test_fit_use_labels_learns_from_the_known_anomalies(tmp_path, capsys):
    """--use-labels: the rows labelled anomalous train the model too (they are
    pushed away from a good reconstruction), instead of being left out."""
    from ganomaly import GANomalyDetector

    table = make_transactions(1000, fraud_fraction=0.05, random_state=1)
    table.to_csv(tmp_path / "t.csv", index=False)
    frauds = table[table["is_fraud"] == 1].drop(columns=["is_fraud", "transaction_id"])
    argv = ["fit", str(tmp_path / "t.csv"), "--label-col", "is_fraud"]
    argv += ["--drop-cols", "transaction_id", "--quiet"]  # "auto": 1500 steps
    scores = {}
    for name, extra in [("normal-only", []), ("labels", ["--use-labels"])]:
        model = tmp_path / f"{name}.safetensors"
        assert main([*argv, "-o", str(model), *extra]) == 0
        detector = GANomalyDetector.load(model)
        assert detector.use_labels == (name == "labels")
        scores[name] = np.median(detector.anomaly_score(frauds))
    err = capsys.readouterr().err
    assert "50 known anomalies, used to sharpen the model" in err
    assert "50 other rows left out" in err
    assert "50 known anomalies kept" in err  # for the known-anomaly term
    assert scores["labels"] > 2 * scores["normal-only"]
    code = main([*argv[:2], "-o", str(tmp_path / "x.safetensors"), "--use-labels"])
    assert code == 2
    assert "--use-labels needs --label-col" in capsys.readouterr().err


@pytest.mark.parametrize("scaling", ["standard_log", "robust", "auto"])
def test_fit_numeric_scaling_option(tmp_path, scaling):
    from ganomaly import GANomalyDetector

    table = make_transactions(400, fraud_fraction=0.05, random_state=1)
    table.to_csv(tmp_path / "t.csv", index=False)
    argv = ["fit", str(tmp_path / "t.csv"), "-o", str(tmp_path / "m.safetensors")]
    argv += ["--label-col", "is_fraud", "--drop-cols", "transaction_id"]
    assert main([*argv, "--n-epochs", "1", "--numeric-scaling", scaling]) == 0
    detector = GANomalyDetector.load(tmp_path / "m.safetensors")
    assert detector.numeric_scaling == scaling
    kinds = {s["name"]: s.get("scaling") for s in detector.preprocessor_.specs_}
    # The log-normal amount is skewed: "auto" maps it through its quantiles,
    # "standard_log" compresses its tail after standardising.
    expected = {"auto": "quantile", "robust": "robust", "standard_log": "standard"}
    assert kinds["amount"] == expected[scaling]
    if scaling == "standard_log":
        logs = {s["name"]: s.get("log") for s in detector.preprocessor_.specs_}
        assert logs["amount"] is True and logs["hour"] is False


def test_score_writes_every_row(files):
    assert _score(files, files / "new.csv") == 0
    out = pd.read_csv(files / "out.csv")
    new = pd.read_csv(files / "new.csv")
    assert out["transaction_id"].tolist() == new["transaction_id"].tolist()
    assert list(out.columns[:3]) == ["transaction_id", "anomaly_score", "is_anomaly"]
    assert {"feature_1", "contribution_1", "feature_3"} <= set(out.columns)
    assert (out["anomaly_score"] >= 0).all()


def test_score_small_blocks_match_one_block(files):
    from ganomaly import GANomalyDetector
    from ganomaly.scoring import score_file

    detector = GANomalyDetector.load(files / "model.safetensors")
    score_file(detector, files / "new.csv", files / "a.csv", block_size=1 << 20)
    score_file(detector, files / "new.csv", files / "b.csv", block_size=4096)
    a, b = pd.read_csv(files / "a.csv"), pd.read_csv(files / "b.csv")
    assert a["row"].tolist() == list(range(1, 501))
    pd.testing.assert_frame_equal(a, b)


def test_parquet_in_and_out(files):
    pd.read_csv(files / "new.csv").to_parquet(files / "new.parquet")
    code = main(
        [
            "score",
            str(files / "model.safetensors"),
            str(files / "new.parquet"),
            "-o",
            str(files / "out.parquet"),
            "--quiet",
        ]
    )
    assert code == 0
    out = pq.read_table(files / "out.parquet").to_pandas()
    assert len(out) == 500 and out["row"].iloc[-1] == 500
    # The same rows as from the CSV file.
    assert (
        main(
            [
                "score",
                str(files / "model.safetensors"),
                str(files / "new.csv"),
                "-o",
                str(files / "from_csv.csv"),
                "--quiet",
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(out, pd.read_csv(files / "from_csv.csv"))


def test_parquet_output_row_groups_gather_the_blocks(files, monkeypatch):
    """Scored blocks (a CSV piece each) are gathered into row groups of
    OUTPUT_ROW_GROUP_ROWS rows, not one small row group per block."""
    import ganomaly.scoring as scoring

    monkeypatch.setattr(scoring.outputs, "OUTPUT_ROW_GROUP_ROWS", 200)
    scoring.score_file(
        files / "model.safetensors",
        files / "new.csv",
        files / "groups.parquet",
        block_size=1024,  # blocks of a few rows
        progress=False,
    )
    metadata = pq.ParquetFile(files / "groups.parquet").metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes == [200, 200, 100]
    out = pq.read_table(files / "groups.parquet").to_pandas()
    assert out["row"].tolist() == list(range(1, 501))


def _bad_copy(files, name, edit):
    lines = (files / "new.csv").read_text().splitlines()
    lines = edit(lines)
    path = files / name
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def _replace_field(lines, line_number, column, value):
    header = lines[0].split(",")
    fields = lines[line_number - 1].split(",")
    fields[header.index(column)] = value
    lines[line_number - 1] = ",".join(fields)
    return lines


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "expected a number, got 'abc'"), ("inf", "infinite"), ("NaN", "NaN")],
)
def test_bad_value_names_file_line_and_column(files, capsys, value, message):
    path = _bad_copy(
        files, "bad.csv", lambda ls: _replace_field(ls, 7, "amount", value)
    )
    (files / "out.csv").unlink(missing_ok=True)
    assert _score(files, path) == 2
    err = capsys.readouterr().err
    assert "bad.csv: line 7, column 'amount'" in err and message in err
    assert not (files / "out.csv").exists()  # nothing half-written at the target
    assert not list(files.glob(".out.csv.*"))  # no temporary left behind


def test_skip_bad_rows_writes_rejects(files):
    def edit(lines):
        lines = _replace_field(lines, 3, "amount", "abc")
        lines = _replace_field(lines, 10, "hour", "inf")
        lines[20] = "T9,1,2"  # line 21: wrong number of fields
        return lines

    path = _bad_copy(files, "bad.csv", edit)
    assert _score(files, path, "--on-bad-rows", "skip") == 0
    out = pd.read_csv(files / "out.csv")
    rejects = pd.read_csv(files / "out.rejects.csv")
    assert len(out) + len(rejects) == 500  # input rows = scored + rejected
    assert rejects["line"].tolist() == [3, 10, 21]
    assert rejects["column"].tolist()[:2] == ["amount", "hour"]
    assert "fields" in rejects["reason"].iloc[2]
    new_ids = pd.read_csv(files / "new.csv")["transaction_id"]
    kept = [i for i in range(500) if i not in (1, 8, 19)]  # lines 3, 10, 21
    assert out["transaction_id"].tolist() == new_ids.iloc[kept].tolist()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        (None, "no data rows"),  # header only
        ("a;b;c\n1;2;3\n", "another delimiter"),
    ],
)
def test_unusable_files(files, capsys, content, message):
    path = files / "odd.csv"
    if content is None:
        content = (files / "new.csv").read_text().splitlines()[0] + "\n"
    path.write_text(content)
    assert _score(files, path) == 2
    assert message in capsys.readouterr().err


def test_missing_or_renamed_column(files, capsys):
    frame = pd.read_csv(files / "new.csv").rename(columns={"hour": "Hour"})
    frame.to_csv(files / "renamed.csv", index=False)
    assert _score(files, files / "renamed.csv") == 2
    err = capsys.readouterr().err
    assert "renamed.csv: line 1 (header): missing column(s) 'hour'" in err
    assert "was named as a column" not in err  # the id column is there


def test_missing_id_column_is_not_called_a_model_column(files, capsys):
    frame = pd.read_csv(files / "new.csv").drop(columns="transaction_id")
    frame.to_csv(files / "no_ids.csv", index=False)
    assert _score(files, files / "no_ids.csv") == 2
    err = capsys.readouterr().err
    assert "missing column(s) 'transaction_id'; the model needs 'amount'" in err
    model_columns = err.split("the model needs")[1].split(", and")[0]
    assert "'transaction_id'" not in model_columns
    assert "and 'transaction_id' was named as a column" in err


def test_model_that_is_not_a_model(files, tmp_path, capsys):
    fake = tmp_path / "fake.safetensors"
    fake.write_text("hello, I am a CSV\n")
    code = main(
        ["score", str(fake), str(files / "new.csv"), "-o", str(tmp_path / "o.csv")]
    )
    assert code == 2
    assert "not a gankit model file" in capsys.readouterr().err


def test_fit_bad_training_value_names_line(tmp_path, capsys):
    table = make_transactions(200, random_state=0).astype({"hour": object})
    table.loc[5, "hour"] = "noon"
    table.to_csv(tmp_path / "t.csv", index=False)
    code = main(
        [
            "fit",
            str(tmp_path / "t.csv"),
            "-o",
            str(tmp_path / "m"),
            "--drop-cols",
            "transaction_id,is_fraud",
            "--n-epochs",
            "1",
            "--quiet",
        ]
    )
    assert code == 2
    assert "t.csv: line 7, column 'hour': expected a number, got 'noon'" in (
        capsys.readouterr().err
    )


def test_fit_unknown_label_column(files, capsys):
    code = main(
        [
            "fit",
            str(files / "train.csv"),
            "-o",
            str(files / "m2"),
            "--label-col",
            "Class",
        ]
    )
    assert code == 2
    assert "missing column(s) 'Class'; the file has" in capsys.readouterr().err


def test_evaluate_streams_the_same_metrics_as_in_memory(files, tmp_path):
    import json

    from ganomaly import GANomalyDetector
    from ganomaly.evaluation import evaluate

    new = pd.read_csv(files / "new.csv", keep_default_na=False, na_values=[""])
    detector = GANomalyDetector.load(files / "model.safetensors")
    features = new.drop(columns=["transaction_id", "is_fraud"])
    expected = evaluate(
        detector, features, new["is_fraud"].to_numpy() != 0, tmp_path / "a.png"
    )
    # Labels written as floats ("0.0") still match --normal-label 0.
    labelled = new.assign(is_fraud=new["is_fraud"].astype(float))
    labelled.to_csv(tmp_path / "labelled.csv", index=False)
    code = _evaluate(
        files,
        tmp_path / "labelled.csv",
        "--plot",
        str(tmp_path / "b.png"),
        "--json",
        str(tmp_path / "m.json"),
    )
    assert code == 0
    streamed = json.loads((tmp_path / "m.json").read_text())
    assert streamed["n_rows"] == expected["n_rows"] == 500
    assert streamed["flagged"] == expected["flagged"]
    for key in ("prevalence", "precision", "recall", "threshold"):
        assert streamed[key] == pytest.approx(expected[key], abs=1e-12)
    # Scores are the streamed (6-decimal) ones: the ranking metrics agree closely.
    assert streamed["auroc"] == pytest.approx(expected["auroc"], abs=1e-4)
    assert streamed["auprc"] == pytest.approx(expected["auprc"], abs=1e-4)


def test_evaluate_names_the_line_of_a_missing_label(files, tmp_path, capsys):
    new = pd.read_csv(files / "new.csv", keep_default_na=False, na_values=[""])
    new["is_fraud"] = new["is_fraud"].astype("Int64")
    new.loc[41, "is_fraud"] = pd.NA
    new.to_csv(tmp_path / "labelled.csv", index=False)
    plot = str(tmp_path / "p.png")
    code = _evaluate(files, tmp_path / "labelled.csv", "--plot", plot)
    assert code == 2
    assert "line 43, column 'is_fraud': missing label" in capsys.readouterr().err


def test_evaluate_prints_metrics_and_writes_plot(files, capsys):
    plot = files / "eval.png"
    code = _evaluate(
        files, files / "new.csv", "--id-col", "transaction_id", "--plot", str(plot)
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "AUPRC" in out and "prevalence" in out
    assert "precision" in out and "recall" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_runs_end_to_end(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--output-dir",
            str(tmp_path),
            "--n-samples",
            "3000",
            "--n-epochs",
            "3",
        ]
    )
    assert code == 0
    assert (tmp_path / "evaluation.png").exists()
    assert (tmp_path / "scores.csv").exists() and (tmp_path / "metrics.json").exists()


def test_usage_errors_exit_non_zero(capsys):
    assert main([]) == 2
    assert main(["score"]) == 2


def test_fit_divergence_is_a_clear_error_without_traceback(
    tmp_path, capsys, monkeypatch
):
    from gancore import TrainingDivergedError
    from ganomaly import GANomalyDetector

    def diverge(self, X, y=None):
        raise TrainingDivergedError("training diverged in epoch 3 of 4: d_loss=nan")

    monkeypatch.setattr(GANomalyDetector, "fit", diverge)
    make_transactions(100, random_state=1).to_csv(tmp_path / "t.csv", index=False)
    model = tmp_path / "m.safetensors"
    code = main(["fit", str(tmp_path / "t.csv"), "-o", str(model), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "diverged in epoch 3" in err and "Traceback" not in err
    assert not model.exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--n-members", "0"), ("--n-epochs", "two")]
)
def test_counts_take_a_positive_number_or_auto(option, value, tmp_path, capsys):
    argv = ["fit", str(tmp_path / "x.csv"), "-o", str(tmp_path / "m"), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{option}: expected a positive whole number or 'auto', got '{value}'" in err


def test_fit_n_references(tmp_path, capsys):
    """--n-references 0 keeps every training row out of the model file; a
    negative count is refused by the option."""
    from gancore import load_model
    from ganomaly.model_file import MODEL_KIND

    table = make_transactions(400, fraud_fraction=0.05, random_state=1)
    table.to_csv(tmp_path / "t.csv", index=False)
    argv = ["fit", str(tmp_path / "t.csv"), "-o", str(tmp_path / "m.safetensors")]
    argv += ["--label-col", "is_fraud", "--drop-cols", "transaction_id"]
    assert main([*argv, "--n-epochs", "1", "--n-references", "0"]) == 0
    assert "no training rows kept" in capsys.readouterr().err
    tensors, config = load_model(tmp_path / "m.safetensors", kind=MODEL_KIND)
    assert not [name for name in tensors if "reference" in name]
    assert "neighbour" not in config["calibration"]
    assert main([*argv, "--n-epochs", "1", "--n-references", "-1"]) == 2
    assert "expected a whole number of rows (0 or more), got '-1'" in (
        capsys.readouterr().err
    )
