from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ganomaly.preprocessing import InputDataError, TabularPreprocessor


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1.2, 500),
            "hour": rng.integers(0, 24, 500),
            "flag": rng.integers(0, 2, 500),
            "merchant": rng.choice(["food", "fuel", "travel"], 500),
        }
    )


def test_encodes_numeric_and_categorical_columns():
    frame = _frame()
    pre = TabularPreprocessor().fit(frame)
    encoded = pre.transform(frame)
    assert encoded.dtype == np.float32
    assert pre.feature_names_out_ == [
        "amount",
        "hour",
        "flag",
        "merchant=food",
        "merchant=fuel",
        "merchant=travel",
    ]
    assert pre.source_columns_.tolist() == [0, 1, 2, 3, 3, 3]
    # one-hot rows sum to one; the binary flag stays 0/1
    np.testing.assert_allclose(encoded[:, 3:].sum(axis=1), 1.0)
    assert set(np.unique(encoded[:, 2])) == {0.0, 1.0}


def test_auto_scaling_uses_quantiles_for_skewed_amounts():
    pre = TabularPreprocessor(numeric_scaling="auto").fit(_frame())
    scalings = {s["name"]: s.get("scaling") for s in pre.specs_}
    assert scalings["amount"] == "quantile"
    assert scalings["hour"] == "robust"
    robust = TabularPreprocessor(numeric_scaling="robust").fit(_frame())
    assert robust.specs_[0]["scaling"] == "robust"


def test_standard_log_scaling_logs_only_skewed_columns():
    frame = _frame()
    pre = TabularPreprocessor().fit(frame)  # the default, "standard_log"
    specs = {s["name"]: s for s in pre.specs_}
    assert specs["amount"]["scaling"] == "standard" and specs["amount"]["log"]
    assert specs["hour"]["scaling"] == "standard" and not specs["hour"]["log"]
    amount = frame["amount"].fillna(specs["amount"]["fill"])
    z = (amount - amount.mean()) / amount.std(ddof=0)
    expected = np.sign(z) * np.log1p(np.abs(z))
    encoded = pre.transform(frame)[:, pre.feature_names_out_.index("amount")]
    np.testing.assert_allclose(encoded, expected, rtol=1e-5, atol=1e-6)
    # Monotonic, and extreme amounts stay the most extreme.
    values = pd.DataFrame({"amount": [-10.0, 0.5, 20.0, 100.0, 1e4, 1e6]})
    restored = TabularPreprocessor.from_dict(pre.to_dict())
    column = restored.transform(
        values.assign(**{c: frame[c].iloc[0] for c in frame.columns if c != "amount"})[
            frame.columns
        ]
    )[:, pre.feature_names_out_.index("amount")]
    assert np.all(np.diff(column) > 0)


def test_quantile_transform_is_monotonic_and_extrapolates():
    pre = TabularPreprocessor(numeric_scaling="quantile").fit(_frame()[["amount"]])
    values = pd.DataFrame({"amount": [-10.0, 0.5, 20.0, 100.0, 1e4, 1e6]})
    encoded = pre.transform(values)[:, 0]
    assert np.all(np.diff(encoded) > 0)  # extreme amounts stay extreme, not clipped


def test_unknown_category_encodes_as_zeros():
    pre = TabularPreprocessor().fit(_frame())
    row = _frame().iloc[:1].assign(merchant="casino")
    assert pre.transform(row)[0, 3:].tolist() == [0.0, 0.0, 0.0]


def test_missing_values_impute_with_indicator():
    frame = _frame()
    frame.loc[[3, 7], "hour"] = np.nan
    frame.loc[[5], "merchant"] = None
    pre = TabularPreprocessor().fit(frame)
    assert "hour__missing" in pre.feature_names_out_
    assert "merchant=<missing>" in pre.feature_names_out_
    encoded = pre.transform(frame)
    assert np.isfinite(encoded).all()
    indicator = pre.feature_names_out_.index("hour__missing")
    assert encoded[[3, 7], indicator].tolist() == [1.0, 1.0]


def test_missing_policy_error_names_column_and_row():
    frame = _frame()
    frame.loc[4, "hour"] = np.nan
    with pytest.raises(InputDataError, match=r"column 'hour', row 4: missing"):
        TabularPreprocessor(missing="error").fit(frame)


def test_bad_values_name_column_and_row():
    pre = TabularPreprocessor().fit(_frame())
    bad = _frame().iloc[:5].copy()
    bad["hour"] = bad["hour"].astype(object)
    bad.loc[2, "hour"] = "noon"
    with pytest.raises(
        InputDataError, match=r"column 'hour', row 2: expected a number"
    ):
        pre.transform(bad)
    infinite = _frame().iloc[:5].assign(amount=[1.0, 2.0, np.inf, 3.0, 4.0])
    with pytest.raises(InputDataError, match=r"column 'amount', row 2: infinite"):
        pre.transform(infinite)
    with pytest.raises(InputDataError, match="missing column"):
        pre.transform(_frame().drop(columns=["hour"]))


def test_numeric_column_with_typos_is_an_error_not_a_category():
    frame = _frame()
    frame["hour"] = frame["hour"].astype(object)
    frame.loc[10, "hour"] = "n/a?"
    with pytest.raises(InputDataError, match=r"row 10"):
        TabularPreprocessor().fit(frame)


def test_json_round_trip_reproduces_the_encoding():
    frame = _frame()
    frame.loc[[1, 2], "amount"] = np.nan
    pre = TabularPreprocessor().fit(frame)
    state = json.loads(json.dumps(pre.to_dict()))  # JSON-able, no pickle
    restored = TabularPreprocessor.from_dict(state)
    np.testing.assert_array_equal(restored.transform(frame), pre.transform(frame))
    assert restored.feature_names_out_ == pre.feature_names_out_


def test_arrays_are_matched_by_position():
    X = np.random.default_rng(0).normal(size=(50, 3))
    pre = TabularPreprocessor().fit(X)
    assert pre.input_columns_ == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(pre.transform(pd.DataFrame(X)), pre.transform(X))
    with pytest.raises(ValueError, match="columns"):
        pre.transform(X[:, :2])


@pytest.mark.parametrize("kwargs", [{"numeric_scaling": "log"}, {"missing": "drop"}])
def test_rejects_unknown_options(kwargs):
    with pytest.raises(ValueError):
        TabularPreprocessor(**kwargs).fit(_frame())


def test_transform_of_columns_while_another_thread_imports_pandas(monkeypatch):
    """The streaming scorer encodes dicts of columns in worker threads while the
    main thread may be importing pandas (to validate a text column): a pandas
    module without ``DataFrame`` yet is no DataFrame."""
    import sys
    import types

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.2, 0.3]})
    pre = TabularPreprocessor().fit(frame)
    half_imported = types.ModuleType("pandas")
    monkeypatch.setitem(sys.modules, "pandas", half_imported)
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    encoded = pre.transform(columns)
    monkeypatch.undo()
    np.testing.assert_array_equal(encoded, pre.transform(frame))
