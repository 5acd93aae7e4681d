"""Scaling out: scoring on a Dask cluster, training under torchrun.

The Dask tests share one ``LocalCluster`` of 2 worker processes on loopback; every
output is compared row by row with the single-process path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ganomaly import GANomalyDetector, make_transactions
from ganomaly.cli import main
from ganomaly.distributed import load_detector, model_bytes, score_dask, score_files
from ganomaly.scoring import BadInputError, score_file

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

ID = "transaction_id"


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def scoring_case(tmp_path_factory, fitted):
    """The session detector saved to a file, and three input files to score."""
    root = tmp_path_factory.mktemp("scale")
    model = root / "model.safetensors"
    fitted.save(model)
    inputs = root / "in"
    inputs.mkdir()
    for day, n_rows in enumerate((1500, 900)):
        frame = make_transactions(n_rows, fraud_fraction=0.03, random_state=10 + day)
        frame[ID] = [f"d{day}-{i}" for i in range(n_rows)]
        frame.drop(columns=["is_fraud"]).to_csv(inputs / f"day{day}.csv", index=False)
    frame = make_transactions(700, fraud_fraction=0.03, random_state=12)
    frame[ID] = frame[ID].astype(str)
    frame.drop(columns=["is_fraud"]).to_parquet(inputs / "day2.parquet")
    return root, model, inputs


def _single(model, source, target, **options) -> pd.DataFrame:
    """What ``ganomaly score`` writes for one file, in one process."""
    score_file(GANomalyDetector.load(model), source, target, **options)
    return (
        pd.read_parquet(target) if target.suffix == ".parquet" else pd.read_csv(target)
    )


def test_score_dask_equals_single_process_row_by_row(cluster, scoring_case, tmp_path):
    _, model, inputs = scoring_case
    reference = _single(model, inputs / "day0.csv", tmp_path / "day0.csv")
    ddf = dd.read_csv(
        inputs / "day0.csv", blocksize=16_000, keep_default_na=False, na_values=[""]
    )
    assert ddf.npartitions >= 2
    scores = score_dask(model, ddf).compute()
    assert len(scores) == len(reference) == 1500
    assert list(scores.columns) == list(reference.columns)
    np.testing.assert_array_equal(scores["row"], reference["row"])
    # Other blocks than the single process's, the same scores to the last digit
    # (float32 too: see Scorer.position_free).
    pd.testing.assert_frame_equal(
        scores.reset_index(drop=True), reference, check_dtype=False, check_exact=True
    )


def test_score_dask_many_files_with_ids(cluster, scoring_case, tmp_path):
    _, model, inputs = scoring_case
    sources = [inputs / "day0.csv", inputs / "day1.csv"]
    reference = pd.concat(
        [_single(model, s, tmp_path / s.name, id_col=ID) for s in sources]
    ).set_index(ID)
    ddf = dd.read_csv(sources, blocksize=16_000, keep_default_na=False, na_values=[""])
    scores = score_dask(model, ddf, id_col=ID, top_k=2).compute().set_index(ID)
    assert len(scores) == len(reference) == 2400
    assert scores.index.is_unique
    scores = scores.loc[reference.index]
    np.testing.assert_array_equal(scores["anomaly_score"], reference["anomaly_score"])
    np.testing.assert_array_equal(scores["is_anomaly"], reference["is_anomaly"])
    np.testing.assert_array_equal(scores["feature_1"], reference["feature_1"])
    assert "feature_3" not in scores.columns


def test_model_travels_as_safetensors_bytes_not_a_pickle(scoring_case, fitted):
    import cloudpickle

    _, model, inputs = scoring_case
    ddf = dd.read_csv(inputs / "day1.csv", keep_default_na=False, na_values=[""])
    graph = cloudpickle.dumps(dict(score_dask(fitted, ddf).__dask_graph__()))
    assert b"gankit.format" in graph  # the safetensors header of the model file
    assert b"GANomalyNet" not in graph and b"torch.nn" not in graph
    data = model_bytes(model)
    assert load_detector(data) is load_detector(data)  # loaded once per process
    X = pd.read_csv(inputs / "day1.csv").drop(columns=ID)
    np.testing.assert_array_equal(
        load_detector(data).anomaly_score(X), fitted.anomaly_score(X)
    )


def test_a_cpu_worker_scores_with_numpy_and_never_imports_torch(scoring_case, tmp_path):
    """One inference path per device: a CPU task gets the numpy Scorer (the one a
    local run uses), read from the model's bytes; torch is for other devices."""
    import json
    import subprocess
    import sys

    _, model, inputs = scoring_case
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from ganomaly.distributed import _score_file_task, scoring_model\n"
        f"data = Path({str(model)!r}).read_bytes()\n"
        "kind = type(scoring_model(data)).__name__\n"
        f"summary = _score_file_task(data, {str(inputs / 'day1.csv')!r}, "
        f"{str(tmp_path / 'out.csv')!r}, {{'id_col': {ID!r}, 'threads': 2}})\n"
        "print(json.dumps([kind, summary.n_scored, 'torch' in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["Scorer", 900, False]
    expected = _single(model, inputs / "day1.csv", tmp_path / "one.csv", id_col=ID)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), expected)


def test_score_dask_takes_arrow_strings_in_several_chunks(scoring_case, fitted):
    _, _, inputs = scoring_case
    frame = pd.read_csv(inputs / "day1.csv", keep_default_na=False, na_values=[""])
    text = {ID: "string[pyarrow]", "merchant_category": "string[pyarrow]"}
    chunked = pd.concat([frame.iloc[:400], frame.iloc[400:]]).astype(text)
    assert chunked[ID].array._pa_array.num_chunks == 2
    scores = score_dask(fitted, dd.from_pandas(chunked, npartitions=1), id_col=ID)
    scores = scores.compute(scheduler="sync")
    assert scores[ID].tolist() == frame[ID].tolist()
    np.testing.assert_allclose(  # float32 networks where position-free ("auto")
        scores["anomaly_score"],
        fitted.anomaly_score(frame.drop(columns=ID)),
        rtol=2e-5,
        atol=1e-6,
    )


def test_score_dask_refuses_bad_values_and_missing_columns(cluster, scoring_case):
    _, model, inputs = scoring_case
    frame = pd.read_csv(inputs / "day1.csv", dtype=str, keep_default_na=False)
    frame.loc[5, "amount"] = "12,50"
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(BadInputError, match="column 'amount': expected a number"):
        score_dask(model, ddf).compute()
    with pytest.raises(BadInputError, match="missing column"):
        score_dask(model, ddf.drop(columns="amount"))


def test_cli_scheduler_writes_what_single_process_writes(
    cluster, scoring_case, tmp_path, capsys
):
    _, model, inputs = scoring_case
    out = tmp_path / "out"
    code = main(
        [
            "score",
            str(model),
            str(inputs),
            "-o",
            str(out),
            "--id-col",
            ID,
            "--quiet",
            "--scheduler",
            cluster.scheduler.address,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "scored 3100 of 3100 rows in 3 file(s)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "day0.csv",
        "day1.csv",
        "day2.parquet",
    ]
    for name in ("day0.csv", "day1.csv", "day2.parquet"):
        reference = _single(model, inputs / name, tmp_path / name, id_col=ID)
        written = (
            pd.read_parquet(out / name)
            if name.endswith(".parquet")
            else pd.read_csv(out / name)
        )
        pd.testing.assert_frame_equal(written, reference)


def test_cli_glob_in_one_process_and_bad_rows_on_workers(
    cluster, scoring_case, tmp_path, capsys
):
    _, model, inputs = scoring_case
    bad = tmp_path / "in"
    bad.mkdir()
    lines = (inputs / "day1.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",", ",oops,", 1)  # line 4: a field too many
    (bad / "broken.csv").write_text("\n".join(lines) + "\n")
    (bad / "fine.csv").write_text((inputs / "day0.csv").read_text())
    args = ["score", str(model), str(bad / "*.csv"), "--id-col", ID, "--quiet"]

    assert main([*args, "-o", str(tmp_path / "local")]) == 2
    assert "broken.csv: line 4" in capsys.readouterr().err
    assert not (tmp_path / "local" / "broken.csv").exists()  # nothing half-written
    assert len(pd.read_csv(tmp_path / "local" / "fine.csv")) == 1500  # still scored

    on_cluster = ["--scheduler", cluster.scheduler.address, "--on-bad-rows", "skip"]
    assert main([*args, "-o", str(tmp_path / "out"), *on_cluster]) == 0
    assert "scored 2399 of 2400 rows" in capsys.readouterr().err
    rejects = pd.read_csv(tmp_path / "out" / "broken.rejects.csv")
    assert rejects["line"].tolist() == [4]
    assert len(pd.read_csv(tmp_path / "out" / "broken.csv")) == 899


def test_a_folder_run_on_dask_resumes(cluster, scoring_case, tmp_path, monkeypatch):
    """On Dask too, each file is recorded as its task finishes: once a bad file is
    fixed, --resume scores that file only; and a file interrupted half-way resumes
    from its own progress on a worker, to the output of an uninterrupted run."""
    import ganomaly.scoring as scoring

    _, model, inputs = scoring_case
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.csv").write_text((inputs / "day0.csv").read_text())
    good = (inputs / "day1.csv").read_text()
    (folder / "c.csv").write_text(good.replace("\n", "\n12,", 1))  # bad line 2
    options = {"id_col": ID, "client": cluster}
    reference = tmp_path / "reference"
    with pytest.raises(BadInputError, match="c.csv: line 2"):
        score_files(model, folder, tmp_path / "out", **options)
    assert (tmp_path / "out" / ".ganomaly-score.json").exists()  # a.csv and b.csv
    (folder / "c.csv").write_text(good)
    resumed = score_files(model, folder, tmp_path / "out", resume=True, **options)
    assert [s.n_resumed == s.n_input for s in resumed] == [True, True, False]
    assert not (tmp_path / "out" / ".ganomaly-score.json").exists()  # all done
    expected = score_files(model, folder, reference, **options)
    for summary, name in zip(expected, "abc", strict=True):
        assert summary.n_resumed == 0
        written = (tmp_path / "out" / f"{name}.csv").read_bytes()
        assert written == (reference / f"{name}.csv").read_bytes()

    # a.csv interrupted half-way here, then resumed on a worker.
    out = tmp_path / "out2"
    out.mkdir()
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    calls = {"n": 0}
    original = scoring.outputs.CsvWriter.write_table

    def write_table(self, table):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        original(self, table)

    with monkeypatch.context() as patched:
        patched.setattr(scoring.outputs.CsvWriter, "write_table", write_table)
        with pytest.raises(KeyboardInterrupt):
            score_file(
                model, folder / "a.csv", out / "a.csv", id_col=ID, block_size=4096
            )
    assert (out / ".a.csv.partial.json").exists()
    resumed = score_files(model, folder / "a.csv", out, resume=True, **options)
    assert 0 < resumed[0].n_resumed < resumed[0].n_input
    assert (out / "a.csv").read_bytes() == (reference / "a.csv").read_bytes()


@pytest.mark.parametrize("form", ["path", "bytes", "detector"])
def test_score_files_in_this_process_use_every_core_and_no_torch(
    scoring_case, fitted, tmp_path, monkeypatch, form
):
    """Without a client each file gets the numpy scorer, read once, and the
    scoring threads asked for (a Dask task gets one), and the same rows as a
    single-file run."""
    import ganomaly.distributed as dist
    from ganomaly._scorer import Scorer

    _, model, inputs = scoring_case
    calls = []
    original = dist.score_file

    def recorded(detector, source, target, **options):
        calls.append((type(detector), options["threads"], options["progress"]))
        return original(detector, source, target, **options)

    monkeypatch.setattr(dist, "score_file", recorded)
    given = {"path": model, "bytes": model.read_bytes(), "detector": fitted}[form]
    out = tmp_path / "out"
    summaries = score_files(given, inputs, out, id_col=ID, score_threads=3)
    assert [s.n_scored for s in summaries] == [1500, 900, 700]
    assert calls == [(Scorer, 3, False)] * 3
    expected = _single(model, inputs / "day1.csv", tmp_path / "one.csv", id_col=ID)
    pd.testing.assert_frame_equal(pd.read_csv(out / "day1.csv"), expected)


def test_score_files_refuses_a_model_that_is_not_one(scoring_case, tmp_path):
    from gancore import ModelFileError

    _, _, inputs = scoring_case
    with pytest.raises(ModelFileError):
        score_files(b"not a model", inputs / "day0.csv", tmp_path)
    with pytest.raises(BadInputError, match="no such file"):
        score_files(scoring_case[1], tmp_path / "nothing-*.csv", tmp_path)


@pytest.mark.slow
def test_cli_workers_starts_a_local_cluster(scoring_case, tmp_path, capsys):
    _, model, inputs = scoring_case
    out = tmp_path / "out"
    args = ["score", str(model), str(inputs / "*.csv"), "-o", str(out), "--quiet"]
    assert main([*args, "--workers", "2"]) == 0
    for name in ("day0.csv", "day1.csv"):
        reference = _single(model, inputs / name, tmp_path / name)
        pd.testing.assert_frame_equal(pd.read_csv(out / name), reference)


# ------------------------------------------------------------------ torchrun
def _fit_args(train, model) -> list[str]:
    return [
        "fit",
        str(train),
        "-o",
        str(model),
        "--label-col",
        "is_fraud",
        "--id-col",
        ID,
        "--n-epochs",
        "10",
        "--random-state",
        "0",
        "--quiet",
    ]


def test_torchrun_two_processes_fit_like_one(tmp_path, capsys, torchrun):
    from sklearn.metrics import roc_auc_score

    train = tmp_path / "train.csv"
    make_transactions(4000, fraud_fraction=0.02, random_state=0).to_csv(
        train, index=False
    )
    X, y = make_transactions(3000, fraud_fraction=0.05, random_state=1, return_X_y=True)
    result = torchrun(
        "-m", "ganomaly", *_fit_args(train, tmp_path / "ddp.safetensors"), timeout=300
    )
    # Only rank 0 reports (and writes the model).
    assert result.stderr.count("fitted GANomaly on 3920 rows") == 1
    assert result.stderr.count("training on 3920 of 4000 rows") == 1

    assert main(_fit_args(train, tmp_path / "single.safetensors")) == 0
    auroc = {
        name: roc_auc_score(
            y, GANomalyDetector.load(tmp_path / f"{name}.safetensors").anomaly_score(X)
        )
        for name in ("single", "ddp")
    }
    assert auroc["single"] > 0.9, auroc
    assert abs(auroc["ddp"] - auroc["single"]) <= 0.02, auroc


def test_a_folder_with_compressed_csv_files(scoring_case, tmp_path, capsys):
    """A folder's .csv.gz files are scored too, each to <name>.csv."""
    import gzip

    _, model, inputs = scoring_case
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "day0.csv.gz").write_bytes(
        gzip.compress((inputs / "day0.csv").read_bytes())
    )
    (folder / "day1.csv").write_bytes((inputs / "day1.csv").read_bytes())
    out = tmp_path / "out"
    args = ["score", str(model), str(folder), "-o", str(out), "--id-col", ID]
    assert main([*args, "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["day0.csv", "day1.csv"]
    expected = _single(model, inputs / "day0.csv", tmp_path / "plain.csv", id_col=ID)
    pd.testing.assert_frame_equal(pd.read_csv(out / "day0.csv"), expected)
