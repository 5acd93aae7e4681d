"""Small fitted detectors shared by the ganomaly tests (module-scoped: fit once)."""

from __future__ import annotations

import numpy as np
import pytest

from ganomaly import GANomalyDetector, make_transactions


@pytest.fixture(scope="session")
def transactions():
    """(X, y) of 3000 synthetic transactions with 3 % fraud."""
    return make_transactions(3000, fraud_fraction=0.03, random_state=0, return_X_y=True)


@pytest.fixture(scope="session")
def fitted(transactions):
    """A detector fitted on the normal rows of ``transactions``."""
    X, y = transactions
    return GANomalyDetector(n_epochs=10, random_state=0, device="cpu").fit(X[y == 0])


@pytest.fixture(scope="session")
def labelled(transactions):
    """A detector fitted with half of the transactions' frauds labelled
    (``use_labels``), and the frauds it was not shown."""
    X, y = transactions
    frauds = np.flatnonzero(y == 1)
    shown = np.zeros(len(y), dtype=bool)
    shown[frauds[::2]] = True
    rows = (y == 0) | shown
    detector = GANomalyDetector(n_epochs=2, random_state=0, use_labels=True)
    detector.fit(X[rows], y[rows])
    return detector, X.iloc[frauds[1::2]]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The networks are tiny: one thread is fastest and avoids oversubscribing CI."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
