"""ganomaly: GANomaly fraud and anomaly detection for tables, with a streaming CLI.

Names are imported on first use (PEP 562): ``ganomaly score`` reads model files into
numpy and never imports torch or scikit-learn, which saves seconds per process.

Examples
--------
>>> from ganomaly import GANomalyDetector, make_transactions
>>> X, y = make_transactions(1000, random_state=0, return_X_y=True)
>>> GANomalyDetector(n_epochs=2, random_state=0).fit(X[y == 0]).n_features_in_
8
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_SOURCE = {
    "GANomalyDetector": "_detector",
    "InputDataError": "preprocessing",
    "Scorer": "_scorer",
    "TabularPreprocessor": "preprocessing",
    "load_scorer": "_scorer",
    "make_transactions": "datasets",
    "score_dask": "distributed",
    "score_file": "scoring",
    "score_files": "distributed",
}

__all__ = sorted(_SOURCE)

if TYPE_CHECKING:  # static analysers see the eager imports
    from ._detector import GANomalyDetector  # noqa: F401
    from ._scorer import Scorer, load_scorer  # noqa: F401
    from .datasets import make_transactions  # noqa: F401
    from .distributed import score_dask, score_files  # noqa: F401
    from .preprocessing import InputDataError, TabularPreprocessor  # noqa: F401
    from .scoring import score_file  # noqa: F401


def __getattr__(name: str):
    module = _SOURCE.get(name)
    if module is None:
        raise AttributeError(f"module 'ganomaly' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
