"""What a cell of a number column may hold: the one set of rules, and their words.

Two paths read number columns: the estimator's in-memory tables
(:mod:`ganomaly.preprocessing`, pandas or numpy) and the streaming scorer's Arrow
blocks (:mod:`ganomaly.scoring.checks`).  Both convert a column to floats their own
way (a DataFrame is not an Arrow block), then ask this module what is wrong with
it, so a value refused by one is refused by the other, for the same reason, in the
same words.  The paths differ only in where they say it: the estimator raises on
the first bad cell (``column 'x', row 3: ...``); the scorer rejects each bad row
and scores the others (``file.csv: line 5, column 'x': ...``).

The rules:

* a number, or a boolean (``True``/``False`` in any case: see :data:`BOOLEAN_WORDS`);
* an empty field is a missing value (imputed, or refused under the model's
  ``missing="error"`` policy);
* infinities are refused, and so is the text ``NaN`` in a file: it is not a value,
  and an empty field says "missing" without ambiguity.  (In an in-memory table NaN
  *is* pandas' and numpy's missing value, so there it counts as missing.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["BOOLEAN_WORDS", "MISSING_REFUSED", "not_a_number", "number_faults"]

# Words read as numbers in a number column: how pandas writes booleans, in any case.
BOOLEAN_WORDS = {"true": 1.0, "false": 0.0}

_NAN = "NaN is not a value; leave the field empty if missing"
# The reason for a missing value, in a column of any kind, under missing="error".
MISSING_REFUSED = "missing value, and the model's missing-value policy is 'error'"


def not_a_number(value: object, boolean: bool = False) -> str:
    """The reason for a value of a number column that is not a number;
    ``boolean``: the column was fitted on booleans."""
    wanted = "true/false or a number" if boolean else "a number"
    return f"expected {wanted}, got {value!r}"


def _infinite(value: float) -> str:
    return (
        f"infinite value {value}; expected a finite number (leave the field empty "
        "if missing)"
    )


def number_faults(
    values: np.ndarray, missing: np.ndarray | None, missing_is_bad: bool
) -> list[tuple[int, str]]:
    """The bad cells of a number column converted to floats, as ``(index, reason)``.

    ``values``: float64, anything under a missing value.  ``missing``: where the
    field was empty; None where NaN itself marks a missing value (in-memory
    tables).  ``missing_is_bad``: the model's policy is ``missing="error"``.
    Ordered by rule (NaN, infinities, missing values), then by index.
    """
    if missing is None and np.isfinite(values).all():  # the usual case, one pass
        return []
    faults: list[tuple[int, str]] = []
    nan = np.isnan(values)
    if missing is None:
        missing = nan
    else:
        faults.extend((int(i), _NAN) for i in np.flatnonzero(nan & ~missing))
    infinite = np.isinf(values) & ~missing
    faults.extend((int(i), _infinite(values[i])) for i in np.flatnonzero(infinite))
    if missing_is_bad:
        faults.extend((int(i), MISSING_REFUSED) for i in np.flatnonzero(missing))
    return faults
