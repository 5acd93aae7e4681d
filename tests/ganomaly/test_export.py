"""ganomaly export: the ONNX graph scores as ``ganomaly score`` does, without gankit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganomaly import GANomalyDetector
from ganomaly.cli import main
from ganomaly.scoring import as_scorer

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOP = ["feature_1", "feature_2", "feature_3"]
# The graph's scores against the float64 numpy scorer's (the estimator's): the
# same arithmetic, but other BLAS products.
RTOL = 1e-9


def _session(model):
    """An ONNX Runtime session on one thread, of a file or an onnx.ModelProto."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _column_names(session) -> np.ndarray:
    """The input columns' names, in the order top_columns counts them."""
    columns = json.loads(session.get_modelmeta().custom_metadata_map["gankit.columns"])
    return np.array([column["name"] for column in columns], dtype=object)


def _feeds(session, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The graph's inputs from a table, using only what the ONNX file says (as a
    caller without gankit would): strings with "" for missing, doubles with NaN."""
    columns = json.loads(session.get_modelmeta().custom_metadata_map["gankit.columns"])
    feeds = {}
    for column in columns:
        values = frame[column["name"]]
        if column["type"] == "string":
            feeds[column["name"]] = values.fillna("").astype(str).to_numpy(object)
        else:
            feeds[column["name"]] = values.astype(np.float64).to_numpy()
    return feeds


def _score_with_both(model: Path, frame: pd.DataFrame, tmp_path: Path):
    """``ganomaly export`` then ``ganomaly score --precision float64`` (the graph's
    arithmetic) of ``frame`` as a CSV file, and ONNX Runtime on the same file:
    (scored CSV, ONNX outputs, numpy scorer's)."""
    exported = tmp_path / "model.onnx"
    assert main(["export", str(model), "-o", str(exported)]) == 0
    table = tmp_path / "rows.csv"
    frame.to_csv(table, index=False)
    scored_path = tmp_path / "scores.csv"
    score = ["score", str(model), str(table), "-o", str(scored_path)]
    assert main([*score, "--precision", "float64"]) == 0
    scored = pd.read_csv(scored_path)
    rows = pd.read_csv(table, keep_default_na=False, na_values=[""])
    session = _session(exported)
    names = _column_names(session)
    outputs = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, _feeds(session, rows)),
            strict=True,
        )
    )
    outputs["top_names"] = names[outputs["top_columns"]]
    # The unrounded scores of ganomaly score's engine in float64.
    scorer = as_scorer(model, "float64")
    columns = {name: rows[name] for name in scorer.preprocessor_.input_columns_}
    encoded = scorer.preprocessor_.transform(pd.DataFrame(columns))
    engine = scorer.score_and_explain(encoded, 3)
    return scored, outputs, engine


def _assert_parity(scored, outputs, engine) -> None:
    scores, flags = outputs["anomaly_score"], outputs["is_anomaly"]
    # The float64 scorer's up to the rounding of float64 products; the CSV rounds
    # to 6 decimals.
    np.testing.assert_allclose(scores, engine[0], rtol=RTOL, atol=0)
    np.testing.assert_allclose(scores, scored["anomaly_score"], rtol=RTOL, atol=5e-7)
    np.testing.assert_array_equal(flags, scored["is_anomaly"].to_numpy())
    np.testing.assert_array_equal(outputs["top_names"], scored[TOP].to_numpy())
    np.testing.assert_array_equal(outputs["top_columns"], engine[1])
    # Shares: the CSV rounds them to 4 decimals; the scorer's unrounded ones.
    np.testing.assert_allclose(outputs["top_contributions"], engine[2], atol=1e-6)
    contributions = outputs["contributions"]
    np.testing.assert_allclose(contributions.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        np.sort(contributions, axis=1)[:, ::-1][:, :3], outputs["top_contributions"]
    )


@pytest.fixture(scope="module")
def awkward_rows(transactions):
    """Transactions with an unseen category, missing values of both kinds and a
    boolean column, for fitting (normal rows) and scoring (all rows)."""
    X, y = transactions
    X = X.copy()
    X["card_present"] = X["card_present"].astype(bool)
    return X, y


@pytest.fixture(scope="module")
def quantile_model(awkward_rows, tmp_path_factory):
    """A model whose skewed columns go through the quantile transform."""
    X, y = awkward_rows
    detector = GANomalyDetector(
        n_epochs=5, numeric_scaling="auto", random_state=0, device="cpu"
    ).fit(X[y == 0])
    assert "quantile" in [s.get("scaling") for s in detector.preprocessor_.specs_]
    path = tmp_path_factory.mktemp("quantile") / "model.safetensors"
    detector.save(path)
    return path


def _scoring_rows(X: pd.DataFrame) -> pd.DataFrame:
    rows = X.copy()
    rows.loc[rows.index[::97], "merchant_category"] = "crypto_exchange"  # unseen
    rows.loc[rows.index[5::89], "amount"] = np.nan
    assert rows["merchant_category"].isna().any()
    assert rows["distance_from_home_km"].isna().any()
    return rows


def test_parity_with_ganomaly_score_on_transactions(fitted, transactions, tmp_path):
    model = tmp_path / "model.safetensors"
    fitted.save(model)
    rows = _scoring_rows(transactions[0])
    _assert_parity(*_score_with_both(model, rows, tmp_path))


def test_parity_with_quantile_scaling_and_booleans(
    quantile_model, awkward_rows, tmp_path
):
    rows = _scoring_rows(awkward_rows[0])
    rows.loc[rows.index[::13], "amount"] *= 1e4  # far beyond the quantiles
    _assert_parity(*_score_with_both(quantile_model, rows, tmp_path))


def test_parity_on_real_card_transactions(shared_data, tmp_path):
    data = shared_data / "creditcard_day1.csv"
    model = tmp_path / "card.safetensors"
    fit = ["fit", str(data), "-o", str(model), "--label-col", "Class"]
    assert main([*fit, "--drop-cols", "Time", "--n-epochs", "5", "--quiet"]) == 0
    rows = pd.read_csv(data)
    _assert_parity(*_score_with_both(model, rows, tmp_path))


def test_to_onnx_matches_the_estimator(fitted, transactions, tmp_path):
    path = tmp_path / "detector.onnx"
    model = fitted.to_onnx(path, top_k=2)
    assert path.is_file()
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gankit.kind"] == "ganomaly.GANomalyDetector"
    assert meta["gankit.format_version"] == "1"
    assert meta["gankit.version"] and meta["gankit.onnx_interface"] == "1"
    assert float(meta["gankit.threshold"]) == fitted.threshold_
    X = transactions[0].iloc[:500]
    session = _session(path)
    scores, flags, _, top, shares = session.run(None, _feeds(session, X))
    expected, explanations = fitted.score_and_explain(X, top_k=2)
    np.testing.assert_allclose(scores, expected, rtol=RTOL)
    np.testing.assert_array_equal(flags, fitted.predict(X) == -1)
    named = _column_names(session)[top]
    np.testing.assert_array_equal(named, explanations[["feature_1", "feature_2"]])
    assert shares.shape == (500, 2)


def test_the_known_anomaly_term_scores_alike(labelled, transactions):
    """A use_labels model: the graph multiplies by the known-anomaly factor as the
    scorer does, for rows near the known frauds (the unseen ones) and the others."""
    detector, unseen = labelled
    rows = pd.concat([transactions[0].iloc[:400], unseen])
    session = _session(detector.to_onnx())
    scores = session.run(["anomaly_score"], _feeds(session, rows))[0]
    np.testing.assert_allclose(scores, detector.anomaly_score(rows), rtol=RTOL)


@pytest.mark.parametrize(
    ("score_type", "n_members"), [("reconstruction", 1), ("combined", 3)]
)
def test_every_score_type_and_array_input(transactions, score_type, n_members):
    X, y = transactions
    numbers = X.select_dtypes("number").fillna(0.0).to_numpy()[y == 0]
    detector = GANomalyDetector(
        n_epochs=2,
        n_members=n_members,
        score_type=score_type,
        random_state=0,
        device="cpu",
    ).fit(numbers)
    model = detector.to_onnx()
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gankit.score_type"] == score_type
    assert meta["gankit.n_members"] == str(n_members)
    session = _session(model)
    assert [i.name for i in session.get_inputs()][:2] == ["x0", "x1"]
    feeds = {f"x{j}": numbers[:300, j] for j in range(numbers.shape[1])}
    scores = session.run(["anomaly_score"], feeds)[0]
    np.testing.assert_allclose(scores, detector.anomaly_score(numbers[:300]), rtol=RTOL)


def test_signed_log_of_a_heavy_tailed_column_with_members(tmp_path):
    """standard_log scaling with the log flag on a heavy-tailed column (and one
    without it), three members: the graph's encoded rows are transform's to the
    bit, and its scores are the scorer's, on values far beyond the training rows
    and right at the mean (where log1p's small arguments are)."""
    rng = np.random.default_rng(0)
    n = 1500
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.5, n),  # heavy-tailed: the log flag
            "hour": rng.integers(0, 24, n).astype(np.float64),
            "channel": rng.choice(["web", "pos", "atm"], n),
        }
    )
    detector = GANomalyDetector(
        n_epochs=2, n_members=3, random_state=0, device="cpu"
    ).fit(frame)
    specs = {s["name"]: s for s in detector.preprocessor_.specs_}
    assert specs["amount"]["scaling"] == "standard" and specs["amount"]["log"]
    assert not specs["hour"]["log"]
    model_path = tmp_path / "model.safetensors"
    detector.save(model_path)
    rows = frame.iloc[:400].copy()
    mean, std = specs["amount"]["center"], specs["amount"]["scale"]
    rows.loc[rows.index[::7], "amount"] *= 1e3
    near = rows.index[1::7]
    rows.loc[near, "amount"] = mean * (1 + rng.uniform(-1e-9, 1e-9, len(near)))
    rows.loc[rows.index[2::7], "amount"] = mean - 1e4 * std  # far below: negative
    rows.loc[rows.index[3::11], "amount"] = np.nan
    exported = tmp_path / "model.onnx"
    assert main(["export", str(model_path), "-o", str(exported)]) == 0
    session = _session(exported)
    feeds = _feeds(session, rows)
    probe = _onnx_model(exported)
    encoded_name = next(
        n.output[0]
        for n in probe.graph.node
        if n.output[0].startswith("gankit/encoded_")
    )
    probe.graph.output.append(_value_info(encoded_name))
    encoded = _session(probe).run([encoded_name], feeds)[0]
    scorer = as_scorer(model_path, "float64")
    np.testing.assert_array_equal(encoded, scorer.preprocessor_.transform(rows))
    scores, _, _, top, shares = session.run(None, feeds)
    expected, expected_top, expected_shares = scorer.score_and_explain(
        scorer.preprocessor_.transform(rows), 3
    )
    np.testing.assert_allclose(scores, expected, rtol=RTOL)
    np.testing.assert_allclose(scores, detector.anomaly_score(rows), rtol=RTOL)
    np.testing.assert_array_equal(top, expected_top)
    np.testing.assert_allclose(shares, expected_shares, atol=1e-6)
    for i in (1, 2, 399):  # near the mean, far below it, the last row
        alone = session.run(None, _feeds(session, rows.iloc[i : i + 1]))[0]
        assert alone[0] == scores[i]


def test_refuses_a_model_of_another_version(fitted, tmp_path, capsys):
    """A version 1 model file (one network, a latent term) is refused in one line
    that says to fit again, and no ONNX file is written."""
    import torch

    from gancore.io import load_arrays, save_model
    from ganomaly.export import ExportError, build_onnx
    from ganomaly.model_file import MODEL_KIND

    fitted.save(tmp_path / "model.safetensors")
    arrays, config = load_arrays(tmp_path / "model.safetensors", kind=MODEL_KIND)
    old = config | {"version": 1}
    with pytest.raises(ExportError, match="model version 1.*fit the model again"):
        build_onnx(arrays, old)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    save_model(tmp_path / "old.safetensors", tensors, old, kind=MODEL_KIND)
    target = tmp_path / "old.onnx"
    assert main(["export", str(tmp_path / "old.safetensors"), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "model version 1" in err and "fit the model again" in err
    assert not target.exists()


def _onnx_model(path: Path):
    import onnx

    return onnx.load(str(path))


def _value_info(name: str):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def test_a_row_scores_alike_alone_and_in_a_batch(fitted, transactions):
    session = _session(fitted.to_onnx())
    rows = _scoring_rows(transactions[0]).iloc[:200]
    together = session.run(None, _feeds(session, rows))
    for start in (0, 37, 199):
        alone = session.run(None, _feeds(session, rows.iloc[start : start + 1]))
        for one, many in zip(alone, together, strict=True):
            assert np.array_equal(one[0], many[start])


def test_bad_rows_score_nan(transactions):
    X, y = transactions
    normal = X[y == 0].dropna()
    detector = GANomalyDetector(
        n_epochs=1, missing="error", random_state=0, device="cpu"
    ).fit(normal)
    session = _session(detector.to_onnx())
    rows = normal.iloc[:4].copy()
    rows.iloc[1, rows.columns.get_loc("amount")] = np.inf  # rejected by score too
    rows.iloc[2, rows.columns.get_loc("hour")] = np.nan  # missing: refused
    feeds = _feeds(session, rows)
    feeds["merchant_category"][3] = ""  # a missing category: refused
    scores, flags, shares, top, _ = session.run(None, feeds)
    assert np.isfinite(scores[0]) and np.isnan(scores[1:]).all()
    assert not flags[1:].any()
    assert np.isnan(shares[1:]).all() and (top[1:] == -1).all()
    np.testing.assert_allclose(
        scores[0], detector.anomaly_score(rows.iloc[:1]), rtol=RTOL
    )


def test_export_command_refuses_and_explains(fitted, tmp_path, capsys, monkeypatch):
    model = tmp_path / "model.safetensors"
    fitted.save(model)
    assert main(["export", str(model), "-o", str(model)]) == 2
    assert "would overwrite the model file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "no such model file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the extra is missing
    assert main(["export", str(model), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'gankit[onnx]'" in err
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ImportError, match=r"gankit\[onnx\]"):
        fitted.to_onnx()


def _clean_python_path(folder: Path) -> Path:
    """A folder holding only onnxruntime, numpy and onnxruntime's own requirements
    (links to the installed packages), for a Python started without site-packages."""
    wanted = {"numpy", "onnxruntime"}
    for requirement in requires("onnxruntime") or []:
        if ";" not in requirement:  # no markers: always needed
            name = requirement.replace(">", " ").replace("=", " ").replace("<", " ")
            wanted.add(name.split()[0].split("[")[0].lower().replace("_", "-"))
    folder.mkdir()
    for module, distributions in packages_distributions().items():
        names = {d.lower().replace("_", "-") for d in distributions}
        if not names & wanted or module.startswith("_"):
            continue
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin in (None, "built-in"):
            continue
        source = Path(spec.origin)
        source = source.parent if source.name == "__init__.py" else source
        (folder / source.name).symlink_to(source)
        libraries = source.parent / f"{module}.libs"  # auditwheel's shared libraries
        if libraries.is_dir() and not (folder / libraries.name).exists():
            (folder / libraries.name).symlink_to(libraries)
    return folder


_CHILD = """
import importlib.util, sys
import numpy as np, onnxruntime
leaked = [m for m in ("ganomaly", "gancore", "ganaug", "torch", "onnx", "pandas")
          if importlib.util.find_spec(m) is not None]
assert not leaked, leaked
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
inputs = dict(np.load(sys.argv[2]))
scores, flags, _, top, _ = session.run(None, inputs)
np.savez(sys.argv[3], scores=scores, flags=flags, top=top)
print(meta["gankit.version"], meta["gankit.format_version"])
"""


def test_scored_by_onnx_runtime_without_gankit(fitted, transactions, tmp_path):
    """A Python without site-packages (``-S``, ``-s``; ``-P`` keeps the current
    folder off the path) sees only a folder with onnxruntime and numpy: no gankit,
    torch, onnx or pandas (the child checks), yet it scores the exported file."""
    try:
        deps = _clean_python_path(tmp_path / "deps")
    except PackageNotFoundError:  # pragma: no cover - onnxruntime without metadata
        pytest.skip("onnxruntime's distribution metadata is missing")
    exported = tmp_path / "model.onnx"
    fitted.to_onnx(exported)
    rows = _scoring_rows(transactions[0]).iloc[:300]
    session = _session(exported)
    feeds = _feeds(session, rows)
    np.savez(
        tmp_path / "inputs.npz",
        **{k: v.astype(str) if v.dtype == object else v for k, v in feeds.items()},
    )
    flags = ["-S", "-s"] + (["-P"] if sys.version_info >= (3, 11) else [])
    child = subprocess.run(
        [
            getattr(sys, "_base_executable", sys.executable),
            *flags,
            "-c",
            _CHILD,
            str(exported),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "out.npz"),
        ],
        env={"PYTHONPATH": str(deps), "PATH": os.defpath, "PYTHONNOUSERSITE": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    version, format_version = child.stdout.split()
    assert format_version == "1" and version
    out = np.load(tmp_path / "out.npz")
    scores, expected_flags, _, top, _ = session.run(None, feeds)
    np.testing.assert_array_equal(out["scores"], scores)
    np.testing.assert_array_equal(out["flags"], expected_flags)
    np.testing.assert_array_equal(out["top"], top)
    expected, _ = fitted.score_and_explain(rows)
    np.testing.assert_allclose(out["scores"], expected, rtol=RTOL)


def test_a_cell_table_too_large_for_a_graph_is_refused(fitted, monkeypatch):
    """The nearest-row term's padded cells must fit an ONNX file: above the limit
    the export says what to do instead of writing a graph of gigabytes."""
    from ganomaly import export

    monkeypatch.setattr(export, "MAX_CELL_TABLE_BYTES", 1024)
    with pytest.raises(export.ExportError, match="smaller --n-references"):
        fitted.to_onnx()
