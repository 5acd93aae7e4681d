"""The numpy Scorer: same scores and explanations as the estimator, without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from gancore import ModelFileError
from ganomaly import GANomalyDetector, make_transactions
from ganomaly._scorer import feature_attribution, term_logs
from ganomaly.scoring import as_scorer, load_scorer


@pytest.fixture(scope="module")
def model_file(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("scorer") / "model.safetensors"
    fitted.save(path)
    return path


@pytest.mark.parametrize("score_type", ["combined", "reconstruction"])
def test_scorer_matches_the_estimator(transactions, score_type):
    X, y = transactions
    detector = GANomalyDetector(n_epochs=2, score_type=score_type, random_state=0)
    detector.fit(X[y == 0])
    expected = detector.anomaly_score(X)
    encoded = detector.preprocessor_.transform(X)
    # float64: the same arithmetic as torch, up to summation order.
    exact = as_scorer(detector, "float64").anomaly_score(encoded)
    np.testing.assert_allclose(exact, expected, rtol=1e-9)
    fast = as_scorer(detector, "float32").anomaly_score(encoded)
    np.testing.assert_allclose(fast, expected, rtol=1e-4)
    assert not np.array_equal(fast, expected)  # it really is the float32 path


def test_scorer_explains_like_the_estimator(fitted, transactions):
    X, _ = transactions
    scores, top, shares = as_scorer(fitted).score_and_explain(
        fitted.preprocessor_.transform(X), top_k=3
    )
    explained = fitted.explain(X, top_k=3)
    names = np.asarray(fitted.preprocessor_.input_columns_, dtype=object)
    for k in range(3):
        agree = names[top[:, k]] == explained[f"feature_{k + 1}"].to_numpy()
        assert agree.mean() > 0.999  # float32 may swap two near-equal columns
    np.testing.assert_allclose(shares[:, 0], explained["contribution_1"], atol=1e-4)


def test_attribution_without_the_nearest_row_term_is_the_reconstruction():
    errors = np.array([[1.0, 3.0]], np.float32)
    assert feature_attribution(errors, None, {}) is errors


@pytest.mark.parametrize(
    "ratios, errors, gaps, expected",
    [
        # neither term above its median: the two splits weigh the same
        ((1.0, 1.0), [1.0, 3.0], [2.0, 2.0], [0.75, 1.25]),
        # far from every kept row only: the gaps decide
        ((0.5, 3.0), [4.0, 0.0], [0.0, 1.0], [0.0, 2.0]),
        # badly reconstructed only: the errors decide
        ((5.0, 0.9), [1.0, 0.0], [2.0, 2.0], [4.0, 0.0]),
        # each term twice its median: each split weighs 1
        ((2.0, 2.0), [1.0, 3.0], [4.0, 0.0], [1.25, 0.75]),
    ],
)
def test_attribution_weighs_each_term_by_its_excess(ratios, errors, gaps, expected):
    logs = {"reconstruction": np.log([ratios[0]]), "neighbour": np.log([ratios[1]])}
    parts = feature_attribution(
        np.array([errors], np.float32), np.array([gaps], np.float32), logs
    )
    np.testing.assert_allclose(parts, [expected], rtol=1e-6)


def test_attribution_of_a_row_without_errors_or_gaps_is_zero():
    zeros = np.zeros((1, 3), np.float32)
    logs = {"reconstruction": np.log([2.0]), "neighbour": np.log([2.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert feature_attribution(zeros, zeros, logs).tolist() == [[0.0, 0.0, 0.0]]


def test_rows_far_from_every_kept_row_name_the_columns_that_set_them_apart(
    fitted, transactions
):
    """Where only the nearest-row term is above its median, a row's top column is
    the one farthest from its nearest kept training row, not the reconstruction
    error's (what the explanations gave before the term was in them)."""
    X, _ = transactions
    scorer = as_scorer(fitted, "float64")
    encoded = fitted.preprocessor_.transform(X)
    errors, terms = scorer.errors(encoded, gaps=True)
    logs = term_logs(terms, scorer.score_type, scorer.calibration_)
    only_far = (logs["reconstruction"] <= 0) & (logs["neighbour"] > 0)
    assert only_far.sum() >= 20
    _, top, _ = scorer.score_and_explain(encoded[only_far], top_k=1)
    sources = fitted.preprocessor_.source_columns_
    n_columns = len(fitted.preprocessor_.input_columns_)
    by_column = np.zeros((only_far.sum(), n_columns))
    np.add.at(by_column.T, sources, terms["gaps"][only_far].T)
    np.testing.assert_array_equal(top[:, 0], by_column.argmax(axis=1))
    by_error = np.zeros_like(by_column)
    np.add.at(by_error.T, sources, errors[only_far].T)
    assert (top[:, 0] != by_error.argmax(axis=1)).mean() > 0.3


def _openblas_kernels() -> str | None:
    from threadpoolctl import threadpool_info

    for library in threadpool_info():
        if library.get("internal_api") == "openblas" and "numpy" in library["filepath"]:
            return library.get("architecture")
    return None


def _assert_rows_keep_their_bits(scorer, encoded, skips, spans) -> np.ndarray:
    """Errors of ``encoded``, checked equal to the last bit to those of the same
    rows scored without the first ``skip`` rows, and of the rows in each span
    alone; returns the per-feature errors."""
    errors, terms = scorer.errors(encoded)
    assert set(terms) == {"reconstruction", "nearest", "neighbour"}
    for skip in skips:
        shifted_errors, shifted_terms = scorer.errors(encoded[skip:])
        np.testing.assert_array_equal(shifted_errors, errors[skip:])
        for name, values in terms.items():
            np.testing.assert_array_equal(shifted_terms[name], values[skip:])
    for start, stop in spans:
        e, t = scorer.errors(encoded[start:stop])
        np.testing.assert_array_equal(e, errors[start:stop])
        for name, values in terms.items():
            np.testing.assert_array_equal(t[name], values[start:stop])
    return errors


@pytest.mark.skipif(
    _openblas_kernels() not in ("Haswell", "Zen"),
    reason="position independence measured for OpenBLAS's Haswell/Zen float64 kernels",
)
def test_float64_errors_do_not_depend_on_the_rows_around(
    fitted, transactions, monkeypatch
):
    # A row's errors, to the last bit, whatever block and place it falls in:
    # small blocks give many tails, of odd and even lengths.
    from ganomaly import _scorer

    X, _ = transactions
    encoded = fitted.preprocessor_.transform(X.iloc[:700])
    scorer = as_scorer(fitted, "float64")
    monkeypatch.setattr(_scorer, "_BLOCK", 64)
    errors = _assert_rows_keep_their_bits(
        scorer,
        encoded,
        skips=(1, 2, 3, 63, 64, 65, 698, 699),
        spans=((0, 1), (5, 6), (699, 700)),
    )
    assert errors.flags.f_contiguous  # feature-major, for top_contributions


@pytest.mark.skipif(
    _openblas_kernels() not in ("Haswell", "Zen"),
    reason="the float32 block layout was measured on OpenBLAS's Haswell/Zen kernels",
)
def test_float32_errors_do_not_depend_on_the_rows_around(
    fitted, transactions, monkeypatch
):
    # Feature-major products of 320 columns with zero margins: a row's float32
    # errors, to the last bit, wherever it falls (across blocks and stacks).
    from ganomaly import _scorer

    X, _ = transactions
    encoded = fitted.preprocessor_.transform(X.iloc[:900])
    monkeypatch.setattr(_scorer, "_STACK", 2)  # stacks of 608 rows: 900 spans two
    monkeypatch.setattr(fitted, "_scorers", {})  # the detector caches its scorers
    scorer = as_scorer(fitted, "float32")
    assert scorer.position_free
    assert as_scorer(fitted).dtype == np.float32  # what "auto" picks then
    errors = _assert_rows_keep_their_bits(
        scorer,
        encoded,
        skips=(1, 2, 7, 8, 9, 303, 304, 305, 607, 608, 609, 899),
        spans=((0, 0), (0, 1), (5, 6), (899, 900), (10, 314), (0, 608)),
    )
    assert errors.dtype == np.float32 and errors.flags.f_contiguous
    # Without the zero margins, the end columns take other kernels: the check at
    # construction sees it.
    monkeypatch.setattr(_scorer, "_MARGIN", 0)
    monkeypatch.setattr(fitted, "_scorers", {})  # the detector caches its scorers
    with pytest.warns(UserWarning, match="place in its block"):
        assert not as_scorer(fitted, "float32").position_free
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_scorer(fitted).dtype == np.float64  # "auto", quietly


def test_feature_major_rows_give_the_same_errors(fitted, transactions, monkeypatch):
    # transform(order="F") is the layout that the float32 scorer reads fastest:
    # the same values, and the same errors to the last bit as rows in C order.
    from ganomaly import _scorer

    X, _ = transactions
    rows = fitted.preprocessor_.transform(X.iloc[:900])
    by_feature = fitted.preprocessor_.transform(X.iloc[:900], order="F")
    assert by_feature.flags.f_contiguous and np.array_equal(by_feature, rows)
    monkeypatch.setattr(_scorer, "_STACK", 2)  # a full stack, then a part of one
    monkeypatch.setattr(fitted, "_scorers", {})
    scorer = as_scorer(fitted, "float32")
    assert scorer.input_order == "F" and as_scorer(fitted, "float64").input_order == "C"
    (got, got_terms), (expected, terms) = scorer.errors(by_feature), scorer.errors(rows)
    np.testing.assert_array_equal(got, expected)
    for name, values in terms.items():
        np.testing.assert_array_equal(got_terms[name], values)
    with pytest.raises(ValueError, match="order must be 'C' or 'F'"):
        fitted.preprocessor_.transform(X.iloc[:5], order="A")


def test_float32_errors_are_close_to_float64(fitted, transactions):
    X, _ = transactions
    encoded = fitted.preprocessor_.transform(X)
    exact, fast = as_scorer(fitted, "float64"), as_scorer(fitted, "float32")
    assert exact.position_free  # by the odd-block padding, tested above
    e64, t64 = exact.errors(encoded)
    e32, t32 = fast.errors(encoded)
    np.testing.assert_allclose(e32, e64, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        t32["reconstruction"], t64["reconstruction"], rtol=1e-4, atol=1e-7
    )
    # Distances to the nearest prototype from float32 codes: exact to about 1e-7
    # of a code's length; scores floor each term at RATIO_FLOOR of its median.
    from ganomaly._scorer import RATIO_FLOOR

    floor = RATIO_FLOOR * exact.calibration_["nearest"]
    np.testing.assert_allclose(
        np.maximum(t32["nearest"], floor),
        np.maximum(t64["nearest"], floor),
        rtol=1e-3,
    )


def test_load_scorer_reads_the_saved_detector(fitted, transactions, model_file):
    X, _ = transactions
    scorer = load_scorer(model_file, dtype="float64")
    assert scorer.threshold_ == fitted.threshold_
    assert scorer.preprocessor_.input_columns_ == fitted.preprocessor_.input_columns_
    np.testing.assert_allclose(
        scorer.anomaly_score(scorer.preprocessor_.transform(X)),
        fitted.anomaly_score(X),
        rtol=1e-9,
    )


def test_load_scorer_refuses_what_load_refuses(model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0x01  # a weight bit
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_scorer(damaged)
    with pytest.raises(ModelFileError, match="checksum"):
        GANomalyDetector.load(damaged)
    with pytest.raises(ValueError, match="precision"):
        as_scorer(model_file, precision="float16")


def test_scorer_refuses_layers_it_does_not_know(fitted):
    from ganomaly import Scorer

    state = {k: v.detach().numpy() for k, v in fitted.generator_.state_dict().items()}
    state["encoder.net.1.running_mean"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="only linear layers"):
        Scorer(
            fitted.preprocessor_,
            state,
            latent_dim=fitted.latent_dim_,
            score_type="combined",
            calibration=fitted.calibration_,
            threshold=fitted.threshold_,
            feature_error_scale=fitted.feature_error_scale_,
            prototypes=fitted.prototypes_,
        )


def _heavy_modules_after_scoring(model, source, output, *extra) -> list[str]:
    argv = ["score", str(model), str(source), "-o", str(output)]
    argv += ["--id-col", "transaction_id", "--quiet", *extra]
    code = (
        "import json, sys\n"
        "from ganomaly.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        "heavy = ('torch', 'sklearn', 'pandas', 'pyarrow.compute', 'pyarrow.parquet')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(json.dumps(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cli_score_imports_neither_torch_nor_sklearn(model_file, tmp_path):
    frame = make_transactions(300, random_state=1).drop(columns="is_fraud")
    frame.to_csv(tmp_path / "new.csv", index=False)
    heavy = _heavy_modules_after_scoring(
        model_file, tmp_path / "new.csv", tmp_path / "out.csv"
    )
    # pandas only for the categorical column (pandas may import pyarrow.compute)
    assert "pandas" in heavy and set(heavy) <= {"pandas", "pyarrow.compute"}
    assert len(pd.read_csv(tmp_path / "out.csv")) == 300


def test_cli_score_of_a_folder_imports_neither_torch_nor_sklearn(model_file, tmp_path):
    """A folder scored in this process reads the model as a single file does."""
    folder = tmp_path / "in"
    folder.mkdir()
    for day in range(2):
        frame = make_transactions(300, random_state=day).drop(columns="is_fraud")
        frame.to_csv(folder / f"day{day}.csv", index=False)
    heavy = _heavy_modules_after_scoring(model_file, folder, tmp_path / "out")
    assert not {"torch", "sklearn"} & set(heavy)
    assert len(pd.read_csv(tmp_path / "out" / "day1.csv")) == 300


def test_cli_score_of_numbers_only_imports_no_pandas_either(tmp_path):
    # Nor pyarrow.compute or pyarrow.parquet: 90 ms of start-up for a CSV file.
    frame = make_transactions(600, random_state=2).drop(columns="is_fraud")
    numbers = frame.drop(columns="merchant_category")
    detector = GANomalyDetector(n_epochs=1, random_state=0)
    detector.fit(numbers.drop(columns="transaction_id"))
    detector.save(tmp_path / "model.safetensors")
    numbers.to_csv(tmp_path / "new.csv", index=False)
    heavy = _heavy_modules_after_scoring(
        tmp_path / "model.safetensors", tmp_path / "new.csv", tmp_path / "out.csv"
    )
    assert heavy == []
    out = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(
        out["anomaly_score"],
        detector.anomaly_score(numbers.drop(columns="transaction_id")),
        rtol=2e-5,
        atol=1e-6,
    )
    # Text in a number column: pyarrow.compute reads it, pandas still not needed.
    numbers["amount"] = numbers["amount"].astype(object)
    numbers.loc[100, "amount"] = "N/A"
    numbers.to_csv(tmp_path / "dirty.csv", index=False)
    heavy = _heavy_modules_after_scoring(
        tmp_path / "model.safetensors",
        tmp_path / "dirty.csv",
        tmp_path / "dirty_out.csv",
        "--on-bad-rows",
        "skip",
    )
    assert heavy == ["pyarrow.compute"]
    rejects = pd.read_csv(tmp_path / "dirty_out.rejects.csv")
    assert rejects[["row", "line", "column"]].values.tolist() == [[101, 102, "amount"]]
    assert rejects["reason"].tolist() == ["expected a number, got 'N/A'"]
    dirty_out = pd.read_csv(tmp_path / "dirty_out.csv")
    pd.testing.assert_frame_equal(dirty_out, out.drop(index=100).reset_index(drop=True))


@pytest.mark.parametrize(
    "command", [["score"], ["fit"], ["--threads", "2", "score"]], ids=str
)
def test_the_score_command_starts_no_openblas_threads(tmp_path, command):
    """``ganomaly score`` runs BLAS on one thread: OpenBLAS starts none of its own
    (they would spin beside the parse and scoring threads); other commands, and
    ``import ganomaly``, leave the environment alone."""
    code = (
        "import json, os, sys\n"
        "import ganomaly\n"
        "before = os.environ.get('OPENBLAS_NUM_THREADS')\n"
        "from ganomaly._launch import main\n"
        f"main({[*command, '--help']!r})\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = [i['num_threads'] for i in threadpool_info()"
        " if i['internal_api'] == 'openblas']\n"
        "print(json.dumps([before, os.environ.get('OPENBLAS_NUM_THREADS'), blas]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    before, after, blas = json.loads(done.stdout.strip().splitlines()[-1])
    assert before is None
    if command[-1] == "score":
        assert after == "1" and set(blas) <= {1}
    else:
        assert after is None


def test_torch_scorer_matches_the_numpy_scorer(fitted, transactions):
    """The CUDA path's scorer (torch, float32), run on the CPU: same scores and
    explanations as the numpy one, so the GPU-only test is not its only check."""
    from ganomaly._detector import _TorchScorer

    X, _ = transactions
    tensors, config = fitted._model_contents()
    arrays = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
    scorer = _TorchScorer.from_model(arrays, config)
    scorer.generator = fitted.generator_
    encoded = scorer.preprocessor_.transform(X)
    scores, top, shares = scorer.score_and_explain(encoded, 3)
    expected, expected_top, expected_shares = as_scorer(fitted).score_and_explain(
        encoded, 3
    )
    np.testing.assert_allclose(scores, expected, rtol=2e-5, atol=1e-7)
    assert (top[:, 0] == expected_top[:, 0]).mean() > 0.99
    np.testing.assert_allclose(shares, expected_shares, atol=1e-3)


@pytest.mark.gpu
def test_cuda_scoring_matches_the_cpu(transactions, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from ganomaly.scoring import score_file

    X, y = transactions
    detector = GANomalyDetector(n_epochs=2, random_state=0, device="cuda")
    detector.fit(X[y == 0])
    X.to_csv(tmp_path / "in.csv", index=False)
    score_file(detector, tmp_path / "in.csv", tmp_path / "out.csv")
    gpu = pd.read_csv(tmp_path / "out.csv")["anomaly_score"].to_numpy()
    detector.save(tmp_path / "model.safetensors")
    cpu = load_scorer(tmp_path / "model.safetensors")
    expected = cpu.anomaly_score(cpu.preprocessor_.transform(X))
    np.testing.assert_allclose(gpu, expected, rtol=1e-4, atol=1e-6)


def test_scoring_threads_keep_the_order_and_every_row(fitted, tmp_path, monkeypatch):
    import ganomaly.scoring as scoring

    monkeypatch.setattr(scoring.job, "GROUP_ROWS", 100)  # many groups in flight
    frame = make_transactions(3000, random_state=3).drop(columns="is_fraud")
    frame["amount"] = frame["amount"].astype(object)
    for row in (5, 777, 2999):
        frame.loc[row, "amount"] = "n/a"  # bad rows, rejected with their reasons
    frame.to_csv(tmp_path / "in.csv", index=False)
    outputs = {}
    for threads in (1, 3):
        out = tmp_path / f"out{threads}.csv"
        summary = scoring.score_file(
            fitted,
            tmp_path / "in.csv",
            out,
            id_col="transaction_id",
            on_bad_rows="skip",
            block_size=4096,
            threads=threads,
        )
        counts = (summary.n_input, summary.n_scored, summary.n_rejected)
        assert counts == (3000, 2997, 3)
        outputs[threads] = out.read_bytes()
    assert outputs[1] == outputs[3]
    rejects = pd.read_csv(tmp_path / "out3.rejects.csv")
    assert rejects["row"].tolist() == [6, 778, 3000]


def test_parallel_pieces_read_like_one_stream(fitted, tmp_path, monkeypatch):
    """The fast read parses pieces of the file on several threads: the output, the
    rejects and their line numbers are those of one reader, whatever the threads
    and piece sizes, with CRLF line ends, a byte-order mark, empty lines and no
    final line end."""
    import ganomaly.scoring as scoring

    def no_text_read(self, piece, done):
        raise AssertionError("the typed parse gave up")

    monkeypatch.setattr(scoring.job.Job, "_parse_carefully", no_text_read)

    frame = make_transactions(2000, random_state=4).drop(columns="is_fraud")
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[10, "amount"] = "inf"  # numbers to pyarrow: only validation rejects them
    frame.loc[1500, "amount"] = "nan"
    text = frame.to_csv(index=False, lineterminator="\r\n")
    lines = text.split("\r\n")
    lines.insert(700, "")  # an empty line, before data row 699 (line 701 of the file)
    data = ("\ufeff" + "\r\n".join(lines)).rstrip("\r\n").encode()
    (tmp_path / "in.csv").write_bytes(data)
    outputs = []
    for block_size, threads in ((1 << 20, 1), (4096, 1), (4096, 3), (1000, 2)):
        out = tmp_path / f"out_{block_size}_{threads}.csv"
        summary = scoring.score_file(
            fitted,
            tmp_path / "in.csv",
            out,
            id_col="transaction_id",
            on_bad_rows="skip",
            block_size=block_size,
            threads=threads,
        )
        assert (summary.n_input, summary.n_scored, summary.n_rejected) == (
            2000,
            1998,
            2,
        )
        rejects = pd.read_csv(tmp_path / f"out_{block_size}_{threads}.rejects.csv")
        assert rejects["row"].tolist() == [11, 1501]
        assert rejects["line"].tolist() == [12, 1503]  # after the empty line: +1
        assert (
            rejects["transaction_id"].tolist()
            == frame.loc[[10, 1500], "transaction_id"].tolist()
        )
        outputs.append(out.read_bytes())
    assert all(output == outputs[0] for output in outputs[1:])
    scored = pd.read_csv(tmp_path / "out_1000_2.csv")
    expected_ids = frame["transaction_id"].drop(index=[10, 1500])
    assert scored["transaction_id"].tolist() == expected_ids.tolist()
    pieces = list(scoring.csv_pieces.read_pieces(tmp_path / "in.csv", 4000))
    pieces, ends = [p.data for p in pieces], [p.end for p in pieces]
    assert len(pieces) > 20
    assert b"".join(p.to_pybytes() for p in pieces) == data.split(b"\n", 1)[1]
    # Each piece ends where the next starts, at a line end; the last at the end.
    starts = [len(data.split(b"\n", 1)[0]) + 1, *ends[:-1]]
    assert [s + p.size for s, p in zip(starts, pieces, strict=True)] == list(ends)
    assert ends[-1] == len(data)
    assert all(data[end - 1 : end] == b"\n" for end in ends[:-1])
    # A line longer than a piece is read whole, into a larger piece.
    pieces = [p.data for p in scoring.csv_pieces.read_pieces(tmp_path / "in.csv", 16)]
    assert b"".join(p.to_pybytes() for p in pieces) == data.split(b"\n", 1)[1]
    assert all(p.to_pybytes().endswith(b"\n") for p in pieces[:-1])
    # Started at a line's offset, the pieces hold the rest of the file.
    middle = ends[len(ends) // 2]
    rest = [
        p.data
        for p in scoring.csv_pieces.read_pieces(tmp_path / "in.csv", 4000, middle)
    ]
    assert b"".join(p.to_pybytes() for p in rest) == data[middle:]


@pytest.mark.parametrize("last_end", [None, 0, 5, 170_000, 199_999])
def test_the_last_line_end_is_found_in_any_window(last_end):
    import ganomaly.scoring as scoring

    data = np.full(200_000, ord("x"), dtype=np.uint8)  # windows of 4, 32, 256 KiB
    if last_end is not None:
        data[[0, last_end]] = ord("\n")
    expected = 0 if last_end is None else last_end + 1
    assert scoring.csv_pieces._after_last_line_end(data) == expected
    assert scoring.csv_pieces._after_last_line_end(data[:0]) == 0


def test_a_line_longer_than_two_blocks_is_read(fitted, tmp_path):
    # pyarrow refuses a line that straddles two block boundaries ("try to increase
    # block size"); a piece holds whole lines, and is then read as one block.
    import ganomaly.scoring as scoring

    frame = make_transactions(600, random_state=7).drop(columns="is_fraud")
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame["note"] = "ok"
    frame.loc[300, "note"] = "x" * 50_000  # a dozen 4 KiB blocks
    frame.to_csv(tmp_path / "long.csv", index=False)
    kwargs = dict(block_size=4096, threads=2)
    scoring.score_file(fitted, tmp_path / "plain.csv", tmp_path / "plain.out.csv")
    summary = scoring.score_file(
        fitted, tmp_path / "long.csv", tmp_path / "long.out.csv", **kwargs
    )
    assert summary.n_scored == 600
    expected = (tmp_path / "plain.out.csv").read_bytes()
    assert (tmp_path / "long.out.csv").read_bytes() == expected
    # In a piece with a bad row too (read again, carefully).
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[301, "amount"] = "n/a"
    frame.to_csv(tmp_path / "long_bad.csv", index=False)
    out = tmp_path / "long_bad.out.csv"
    summary = scoring.score_file(
        fitted, tmp_path / "long_bad.csv", out, on_bad_rows="skip", **kwargs
    )
    assert (summary.n_scored, summary.n_rejected) == (599, 1)
    assert pd.read_csv(tmp_path / "long_bad.out.rejects.csv")["line"].tolist() == [303]


def test_a_bad_row_in_a_later_piece_is_named_by_its_line(fitted, tmp_path):
    import ganomaly.scoring as scoring

    frame = make_transactions(1500, random_state=5).drop(columns="is_fraud")
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[1234, "amount"] = "12,5"  # written quoted: text in a number column
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(scoring.BadInputError, match="line 1236"):
        scoring.score_file(
            fitted,
            tmp_path / "in.csv",
            tmp_path / "out.csv",
            block_size=4096,
            threads=2,
        )
    assert not (tmp_path / "out.csv").exists()


def test_the_first_bad_row_of_a_piece_is_named_whatever_its_kind(fitted, tmp_path):
    """One piece, two bad rows: text in a number column and a line with one field
    too many.  The piece is read as text; the error names whichever comes first."""
    import ganomaly.scoring as scoring

    frame = make_transactions(300, random_state=5).drop(columns="is_fraud")
    frame["amount"] = frame["amount"].astype(object)
    for value_row, long_line in ((100, 201), (250, 201)):
        bad = frame.copy()
        bad.loc[value_row, "amount"] = "n/a"
        lines = bad.to_csv(index=False).splitlines(keepends=True)
        lines[long_line] = lines[long_line].rstrip("\n") + ",1\n"
        (tmp_path / "in.csv").write_text("".join(lines))
        first = (
            f"line {value_row + 2}, column 'amount'"
            if value_row + 2 < long_line + 1
            else f"line {long_line + 1}: expected"
        )
        with pytest.raises(scoring.BadInputError, match=first):
            scoring.score_file(fitted, tmp_path / "in.csv", tmp_path / "out.csv")


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_compressed_csv_in_and_out(fitted, tmp_path, suffix):
    """A compressed CSV scores as the plain file does, with or without a piece
    read again as text, and an output named so is written compressed."""
    import pyarrow as pa

    import ganomaly.scoring as scoring

    frame = make_transactions(1200, random_state=6).drop(columns="is_fraud")
    frame.to_csv(tmp_path / "plain.csv", index=False)
    codec = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}[suffix]
    packed = tmp_path / f"in.csv{suffix}"
    with pa.output_stream(str(packed), compression=codec) as sink:
        sink.write((tmp_path / "plain.csv").read_bytes())
    plain = scoring.score_file(
        fitted, tmp_path / "plain.csv", tmp_path / "plain.out.csv"
    )
    kwargs = dict(block_size=4096, threads=2)
    summary = scoring.score_file(
        fitted, packed, tmp_path / f"out.csv{suffix}", **kwargs
    )
    assert summary.n_scored == plain.n_scored == 1200
    with pa.input_stream(str(tmp_path / f"out.csv{suffix}"), compression=codec) as f:
        assert f.read() == (tmp_path / "plain.out.csv").read_bytes()
    if suffix == ".gz":  # written by Python's gzip at level 6, not pyarrow's at 9
        import gzip

        packed_out = (tmp_path / "out.csv.gz").read_bytes()
        # One stream, no file name (flags 0) and no time: the same rows, the same
        # bytes.
        assert packed_out[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
        assert gzip.decompress(packed_out) == (tmp_path / "plain.out.csv").read_bytes()
        scoring.score_file(fitted, packed, tmp_path / "again.csv.gz", **kwargs)
        assert (tmp_path / "again.csv.gz").read_bytes() == packed_out
    # A bad row: its piece (decompressed) is read again as text.
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[900, "amount"] = "n/a"
    with pa.output_stream(str(packed), compression=codec) as sink:
        sink.write(frame.to_csv(index=False).encode())
    out = tmp_path / f"out2.csv{suffix}"
    summary = scoring.score_file(fitted, packed, out, on_bad_rows="skip", **kwargs)
    assert (summary.n_scored, summary.n_rejected) == (1199, 1)
    rejects = pd.read_csv(tmp_path / "out2.rejects.csv")  # named without .csv.gz
    assert rejects["line"].tolist() == [902]


def test_a_damaged_compressed_file_is_named(fitted, tmp_path):
    """Not gzip at all, or cut short (an interrupted download): a clear error,
    also after a piece read again as text, and no output."""
    import gzip

    import ganomaly.scoring as scoring

    target = tmp_path / "in.csv.gz"
    target.write_bytes(b"this is not gzip data\n" * 10)
    with pytest.raises(scoring.BadInputError, match=r"in\.csv\.gz: damaged or trunc"):
        scoring.score_file(fitted, target, tmp_path / "out.csv")
    frame = make_transactions(3000, random_state=7).drop(columns="is_fraud")
    packed = gzip.compress(frame.to_csv(index=False).encode())
    target.write_bytes(packed[: len(packed) // 2])
    for block_size in (1 << 20, 4096):
        with pytest.raises(scoring.BadInputError, match="damaged or truncated gzip"):
            scoring.score_file(
                fitted, target, tmp_path / "out.csv", block_size=block_size
            )
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[5, "amount"] = "n/a"  # a bad row first, then the damaged end
    packed = gzip.compress(frame.to_csv(index=False).encode())
    target.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(scoring.BadInputError, match="damaged or truncated gzip"):
        scoring.score_file(fitted, target, tmp_path / "out.csv", on_bad_rows="skip")
    assert not (tmp_path / "out.csv").exists()


def test_progress_bar_when_asked_and_no_tqdm_import_when_not(fitted, tmp_path, capsys):
    import ganomaly.scoring as scoring

    frame = make_transactions(500, random_state=8).drop(columns="is_fraud")
    frame.to_csv(tmp_path / "in.csv", index=False)
    scoring.score_file(fitted, tmp_path / "in.csv", tmp_path / "a.csv", progress=True)
    assert "scoring in.csv" in capsys.readouterr().err
    scoring.score_file(fitted, tmp_path / "in.csv", tmp_path / "b.csv", progress=False)
    assert capsys.readouterr().err == ""
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    # ganomaly score --quiet does not pay for importing tqdm (0.13 s).
    code = (
        "import sys; from ganomaly.cli import main; "
        f"main(['score', {str(tmp_path / 'model.st')!r}, {str(tmp_path / 'in.csv')!r},"
        f" '-o', {str(tmp_path / 'c.csv')!r}, '--quiet']); "
        "print('tqdm' in sys.modules)"
    )
    fitted.save(tmp_path / "model.st")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def _typed_read(texts: list[str]) -> list:
    """pyarrow's typed CSV read of one number column: floats, or None for a value
    it refuses or an empty one."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out = []
    for text in texts:
        data = f"x\n{text}\n".encode() if text.strip() else b"x\n\n"
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                convert_options=pacsv.ConvertOptions(
                    column_types={"x": pa.float64()}, null_values=[""]
                ),
            )
            column = table.column("x")
            out.append(column[0].as_py() if len(column) else None)
        except pa.ArrowInvalid:
            out.append(None)
    return out


def test_text_in_a_number_column_is_converted_as_the_typed_read_converts():
    """A number column read as text (it holds a value that is not a number) gives
    its numbers the typed read's floats, to the last bit, and names the others."""
    import pyarrow as pa

    from ganomaly.scoring.checks import _NUMBER, _text_numbers

    rng = np.random.default_rng(0)
    values = rng.normal(0, 10, 400) * 10.0 ** rng.integers(-8, 8, 400)
    texts = [repr(float(v)) for v in values[:100]]
    texts += [f"{v:.6f}" for v in values[100:200]]
    texts += [f"{v:.17g}" for v in values[200:300]] + [f"{v:e}" for v in values[300:]]
    texts += ["1.", ".5", "+1", "-0", "1E+05", "00012", " 7.5", "8\t", "inf", "-INF"]
    texts += ["Infinity", "nan", "NaN", "nan(1)", "1e400", "1e-400"]
    refused = ["N/A", "1_0", "0x10", "1,5", "1d5", ".", "+", "e5", "1e", "infinit", "?"]
    blank = ["", "  ", "\t"]
    column = pa.array(texts + refused + blank + [None])
    numbers, blanks, not_numbers = _text_numbers(column)
    # A column whose last piece was not clean skips the first cast: same result.
    again = _text_numbers(column, likely_dirty=True)
    assert np.array_equal(again[0], numbers, equal_nan=True)
    assert again[1].tolist() == blanks.tolist()
    assert again[2].tolist() == not_numbers.tolist()
    # A clean column: one cast, the same floats as with the pattern.
    clean = pa.array(texts)
    fast, _, none = _text_numbers(clean)
    slow, _, _ = _text_numbers(clean, likely_dirty=True)
    assert none.size == 0
    assert np.array_equal(fast.view(np.int64), slow.view(np.int64))

    n = len(texts)
    typed = _typed_read([t.strip(" \t") for t in texts])
    got = numbers[:n]
    assert np.array_equal(got, np.array(typed, dtype=np.float64), equal_nan=True)
    assert np.array_equal(
        got.view(np.int64)[~np.isnan(got)],
        np.array(typed, dtype=np.float64).view(np.int64)[~np.isnan(got)],
    )
    assert not_numbers.tolist() == list(range(n, n + len(refused)))
    assert _typed_read(refused) == [None] * len(refused)
    assert blanks.tolist() == [False] * (n + len(refused)) + [True] * 3 + [False]

    # The pattern takes nothing that pyarrow refuses (a value it does not take
    # is asked of pyarrow alone, so it may take less).
    alphabet = list("0123456789.eE+-infaINFAty ")
    for _ in range(3000):
        text = "".join(rng.choice(alphabet, size=rng.integers(1, 8)))
        if _NUMBER.match(text):
            assert _typed_read([text]) != [None], text


def test_blank_lines_are_found_across_chunks(tmp_path):
    """Empty lines ("\\n" or "\\r\\n" alone) are found wherever chunks cut the
    file, and pyarrow's line numbers (which skip them) become the file's."""
    from ganomaly.scoring.csv_pieces import physical_lines, skipped_lines

    lines = ["h\n", "\n", "a\n", "\r\n", "\r\n", "b\r\n", "\r\r\n", " \n", "c\n"]
    lines += ["\n", "d"]  # no line end at the end
    path = tmp_path / "blank.csv"
    path.write_bytes("".join(lines).encode())
    for chunk in (1, 2, 3, 5, 1 << 20):
        assert skipped_lines(path, until=99, chunk=chunk).tolist() == [2, 4, 5, 10]
    # Not empty: h a b \r\r\n " " c d, at lines 1 3 6 7 8 9 11.
    assert physical_lines(path, [1, 2, 3, 4, 5, 6, 7, None]) == {
        1: 1,
        2: 3,
        3: 6,
        4: 7,
        5: 8,
        6: 9,
        7: 11,
    }


def test_lines_inside_quoted_fields_are_not_records(tmp_path):
    """A quoted field's line ends (and the empty lines inside it) start no record:
    record numbers become the file's line numbers past them, wherever chunks cut."""
    from ganomaly.scoring.csv_pieces import physical_lines, skipped_lines

    text = 'h,n\n1,"x\n\ny"\n\n2,"""\n"\n3,z"\n4,"a""b"\n'
    path = tmp_path / "quoted.csv"
    path.write_bytes(text.encode())
    # Lines: 1 h,n | 2 1,"x | 3 (in quotes) | 4 y" | 5 blank | 6 2,""" | 7 " |
    # 8 3,z" | 9 4,"a""b"
    for chunk in (1, 2, 3, 7, 1 << 20):
        assert skipped_lines(path, until=99, chunk=chunk).tolist() == [3, 4, 5, 7]
    assert physical_lines(path, [1, 2, 3, 4, 5]) == {1: 1, 2: 2, 3: 6, 4: 8, 5: 9}
