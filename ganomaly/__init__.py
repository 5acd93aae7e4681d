"""ganomaly: GANomaly fraud and anomaly detection for tables, with a streaming CLI.

Examples
--------
>>> from ganomaly import GANomalyDetector, make_transactions
>>> X, y = make_transactions(1000, random_state=0, return_X_y=True)
>>> GANomalyDetector(n_epochs=2, random_state=0).fit(X[y == 0]).n_features_in_
8
"""

from __future__ import annotations

from ._detector import GANomalyDetector
from .datasets import make_transactions
from .distributed import score_dask, score_files
from .preprocessing import InputDataError, TabularPreprocessor

__all__ = [
    "GANomalyDetector",
    "InputDataError",
    "TabularPreprocessor",
    "make_transactions",
    "score_dask",
    "score_files",
]
