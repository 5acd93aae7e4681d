from __future__ import annotations

import pandas as pd
import pytest

from ganomaly.datasets import make_transactions


def test_shape_labels_and_missing_values():
    frame = make_transactions(5000, fraud_fraction=0.02, random_state=1)
    assert frame.shape == (5000, 10)
    assert int(frame["is_fraud"].sum()) == 100
    assert frame["distance_from_home_km"].isna().any()
    assert frame["merchant_category"].isna().any()
    assert frame["transaction_id"].is_unique


def test_fraud_pattern_is_as_documented():
    frame = make_transactions(20000, fraud_fraction=0.05, random_state=0)
    fraud = frame[frame["is_fraud"] == 1]
    risky = {"electronics", "jewelry", "gambling", "online_retail"}
    assert set(fraud["merchant_category"].dropna()) <= risky
    signals = (
        (fraud["card_present"] == 0).astype(int)
        + (fraud["hour"] < 6).astype(int)
        + (fraud["distance_from_home_km"].fillna(0) >= 200).astype(int)
        + (fraud["n_transactions_24h"] >= 8).astype(int)
    )
    # At least two signals; a missing distance can hide one of them.
    assert (signals >= 1).all() and (signals >= 2).mean() > 0.9


def test_reproducible_and_return_X_y():
    a = make_transactions(300, random_state=3)
    b = make_transactions(300, random_state=3)
    pd.testing.assert_frame_equal(a, b)
    X, y = make_transactions(300, random_state=3, return_X_y=True)
    assert "is_fraud" not in X and "transaction_id" not in X
    assert y.tolist() == a["is_fraud"].tolist()


@pytest.mark.parametrize("kwargs", [{"n_samples": 0}, {"fraud_fraction": 1.0}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_transactions(**{"n_samples": 10, **kwargs})
