"""The in-memory and the streaming path refuse the same cells for the same
reasons (ganomaly.values holds the rules for both)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ganomaly.preprocessing import InputDataError, TabularPreprocessor
from ganomaly.scoring.checks import validate_batch


def _fitted(missing: str) -> TabularPreprocessor:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, 200),
            "channel": rng.choice(["web", "pos"], 200),
        }
    )
    return TabularPreprocessor(missing=missing).fit(train)


@pytest.mark.parametrize(
    ("missing", "column", "value", "reason"),
    [
        ("impute", "amount", "abc", "expected a number, got 'abc'"),
        ("impute", "amount", "inf", "infinite value inf; expected a finite number"),
        ("error", "amount", None, "missing value, and the model's missing-value"),
        ("error", "channel", None, "missing value, and the model's missing-value"),
    ],
)
def test_both_paths_refuse_a_cell_for_the_same_reason(missing, column, value, reason):
    pre = _fitted(missing)
    amounts = ["12.5", "40", "7"]
    channels = ["web", "pos", "web"]
    (amounts if column == "amount" else channels)[1] = value
    frame = pd.DataFrame({"amount": amounts, "channel": channels})
    with pytest.raises(InputDataError) as raised:
        pre.transform(frame)
    assert f"column {column!r}, row 1: {reason}" in str(raised.value)

    batch = pa.RecordBatch.from_pydict(
        {"amount": pa.array(amounts, pa.string()), "channel": channels}
    )
    needed = ["amount", "channel"]
    _, bad = validate_batch(batch, ["amount"], needed if missing == "error" else [])
    assert len(bad) == 1
    index, name, said = bad[0]
    assert (index, name) == (1, column) and said.startswith(reason)


def test_nan_is_missing_in_memory_and_refused_in_a_file():
    pre = _fitted("impute")
    frame = pd.DataFrame({"amount": [1.0, np.nan], "channel": ["web", "web"]})
    assert np.isfinite(pre.transform(frame)).all()  # imputed
    batch = pa.RecordBatch.from_pydict({"amount": ["1", "NaN"], "channel": ["web"] * 2})
    _, bad = validate_batch(batch, ["amount"], [])
    assert bad == [
        (1, "amount", "NaN is not a value; leave the field empty if missing")
    ]
