"""GANomalyDetector's defaults, in a module without torch or scikit-learn.

The estimator's signature and ``ganomaly fit``'s options both take their defaults
from here, so that ``ganomaly --help`` shows them without importing torch, and they
cannot drift apart.  How they were chosen: benchmarks/RESULTS.md (issue 18).
"""

from __future__ import annotations

__all__ = ["DEFAULTS"]

DEFAULTS = {
    "n_members": "auto",
    "n_epochs": "auto",
    "batch_size": 128,
    "learning_rate": 1e-3,
    "score_type": "combined",
    "n_prototypes": 256,
    "n_references": 16384,
    "numeric_scaling": "standard_log",
}
