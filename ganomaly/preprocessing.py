"""Turn a table of transactions into the float32 matrix the GANomaly networks see.

:class:`TabularPreprocessor` is fitted inside :meth:`GANomalyDetector.fit` and stored
in the model file as plain JSON (never pickle), so a model scores new files exactly as
it was trained.  It

* robust-scales numeric columns (median and interquartile range), or maps strongly
  skewed ones such as amounts through a quantile transform to normal scores, with
  linear extrapolation beyond the training range so that extreme values stay extreme;
* one-hot encodes categorical columns (the ``max_categories`` most frequent values);
  a category never seen in training encodes as all zeros instead of failing;
* applies an explicit missing-value policy: ``"impute"`` fills numeric gaps with the
  training median and adds a ``<column>__missing`` indicator when the training data had
  gaps in that column (a missing category is a category of its own), ``"error"``
  rejects missing values with a message naming the column and row;
* rejects infinite values and non-numeric text in numeric columns, naming the column,
  the row and the offending value;
* remembers which original column every encoded column came from
  (:attr:`TabularPreprocessor.source_columns_`), so per-feature reconstruction errors
  can be summed back into explanations in terms of the user's columns.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from .values import BOOLEAN_WORDS, MISSING_REFUSED, not_a_number, number_faults

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NUMERIC_SCALINGS", "InputDataError", "TabularPreprocessor"]

_FORMAT_VERSION = 1
_N_QUANTILES = 201
# Quantile references are normal scores of probabilities in [_P_EDGE, 1 - _P_EDGE];
# beyond the training range values are extrapolated linearly instead of clipped.
_P_EDGE = 1e-3
# Keeps float32 finite whatever the input: values beyond this many IQRs are all
# "extremely unusual" anyway.
_SAFETY_CLIP = 1e6
_MISSING_CATEGORY = "<missing>"
# How numeric columns are scaled (TabularPreprocessor's numeric_scaling).
NUMERIC_SCALINGS = ("standard_log", "robust", "auto", "quantile")


class InputDataError(ValueError):
    """Bad input data: the message names the column, the row and what was expected.

    Attributes
    ----------
    column : str or None
        The offending column.
    row : int or None
        0-based position of the first offending row in the data passed in.
    """

    def __init__(
        self, message: str, *, column: str | None = None, row: int | None = None
    ):
        super().__init__(message)
        self.column = column
        self.row = row


def _normal_ppf(p: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's approximation, |error| < 1.2e-9)."""
    a = [
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    ]
    b = [
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155022803e01,
    ]
    c = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    ]
    d = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e00,
        3.754408661907416e00,
    ]
    p = np.asarray(p, dtype=float)
    out = np.empty_like(p)
    low, high = p < 0.02425, p > 1 - 0.02425
    mid = ~(low | high)
    q = np.sqrt(-2 * np.log(p[low]))
    out[low] = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
        (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
    )
    q = np.sqrt(-2 * np.log(1 - p[high]))
    out[high] = -(
        ((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]
    ) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )
    return out


def _skewness(values: np.ndarray) -> float:
    std = values.std()
    if values.size < 3 or std == 0:
        return 0.0
    return float(np.mean(((values - values.mean()) / std) ** 3))


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _is_frame(X: Any) -> bool:
    """Whether ``X`` is a DataFrame, without importing pandas (0.4 s) to find out.

    Another thread may be importing pandas: until its module has ``DataFrame``, no
    DataFrame exists.
    """
    frame_type = getattr(sys.modules.get("pandas"), "DataFrame", None)
    return frame_type is not None and isinstance(X, frame_type)


def _as_frame(X: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame view of ``X``; arrays get ``columns`` or ``x0, x1, ...`` as names."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        if all(isinstance(c, str) for c in X.columns):
            return X
        return X.rename(columns=str)
    array = np.asarray(X)
    if array.ndim == 1:
        raise ValueError(
            "Expected a 2-D table (rows x columns), got a 1-D array; reshape it with "
            "X.reshape(-1, 1) for a single column or X.reshape(1, -1) for a single row."
        )
    if array.ndim != 2:
        raise ValueError(f"Expected a 2-D table (rows x columns), got {array.ndim}-D.")
    if columns is None:
        columns = [f"x{i}" for i in range(array.shape[1])]
    elif len(columns) != array.shape[1]:
        raise ValueError(
            f"X has {array.shape[1]} columns, but the preprocessor was fitted with "
            f"{len(columns)} ({', '.join(columns[:5])}"
            f"{', ...' if len(columns) > 5 else ''})."
        )
    return pd.DataFrame(array, columns=columns, copy=False)


def _series(values: Any) -> pd.Series:
    import pandas as pd

    return pd.Series(values)


def _numeric_values(series: pd.Series | np.ndarray, name: str) -> np.ndarray:
    """Float values of a column, NaN for missing; clear error for non-numbers.
    Booleans are numbers (True 1, False 0), as words too (see BOOLEAN_WORDS)."""
    if isinstance(series, np.ndarray):
        return series
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float, na_value=np.nan)
    series = series.map(_boolean_word, na_action="ignore")
    coerced = pd.to_numeric(series, errors="coerce")
    bad = coerced.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        row = _first_bad(bad)
        raise InputDataError(
            f"column {name!r}, row {row}: {not_a_number(series.iloc[row])}",
            column=name,
            row=row,
        )
    return coerced.to_numpy(dtype=float, na_value=np.nan)


def _boolean_word(value: Any) -> Any:
    """A boolean, or a boolean word in any case, as its number; anything else as it
    is."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        return BOOLEAN_WORDS.get(value.strip().lower(), value)
    return value


def _is_boolean(series: pd.Series) -> bool:
    """Whether a column holds booleans only (missing values aside): a bool dtype,
    or Python booleans or boolean words (pandas reads True/False with gaps so)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series):
        return False
    present = series.dropna()
    if present.empty:
        return False
    distinct = present.unique()[:3]
    if len(distinct) > 2:
        return False
    return all(
        isinstance(v, (bool, np.bool_))
        or (isinstance(v, str) and v.strip().lower() in BOOLEAN_WORDS)
        for v in distinct
    )


# A date, or a date and a time (ISO 8601 and the usual day/month forms): columns
# whose values are such texts are times, not categories.
_DATE_TIME = (
    r"^\s*(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}"
    r"|\d{4}/\d{1,2}/\d{1,2})"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"\s*(?:Z|[+-]\d{2}:?\d{2}|[AaPp][Mm])?)?\s*$"
)


def _refuse_times(name: str, series: pd.Series) -> None:
    """InputDataError for a column of dates or times.

    An absolute time is not a feature: every row of a later period would lie
    beyond the training range and look anomalous (a raw datetime64 flagged 64.5 %
    of a later month's rows; as text, one-hot categories of 50 arbitrary times).
    """
    import pandas as pd

    kind = None
    if pd.api.types.is_datetime64_any_dtype(series) or isinstance(
        series.dtype, pd.PeriodDtype
    ):
        kind = "dates/times"
    elif pd.api.types.is_timedelta64_dtype(series):
        kind = "durations"
    elif not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(
        series
    ):
        present = series.dropna()
        sample = present.iloc[:: max(1, len(present) // 1000)].astype(str)
        if len(sample) and sample.str.match(_DATE_TIME).mean() >= 0.95:
            kind = f"dates/times (such as {sample.iloc[0]!r})"
    if kind is None:
        return
    raise InputDataError(
        f"column {name!r} holds {kind}: an absolute time is no feature, since every "
        "row of a later period would look anomalous; leave the column out "
        "(ganomaly fit --drop-cols), or derive from it what fraud models use, such "
        "as the hour of day and the day of week, as number columns",
        column=name,
    )


def _looks_numeric(series: pd.Series) -> bool:
    """True for numeric columns and text columns that are (almost) all numbers."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return True
    if isinstance(series.dtype, pd.CategoricalDtype):
        return False
    if _is_boolean(series):
        return True
    present = series.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present, errors="coerce")
    share = float(parsed.notna().mean())
    # A column that is 95 % numbers is a numeric column with typos, not a category.
    return share >= 0.95


class TabularPreprocessor:
    """Encode a DataFrame or array as a float32 matrix, and back-map encoded columns.

    Parameters
    ----------
    numeric_scaling : {"standard_log", "robust", "auto", "quantile"}, \
default="standard_log"
        ``"standard_log"``: ``(x - mean) / std``, then, for strongly skewed columns
        (``|skewness| > 2`` with more than 20 distinct values, such as amounts), the
        signed logarithm ``sign(z) * log(1 + |z|)`` of that: extreme values stay
        extreme but no longer dwarf every other column.  ``"robust"``: ``(x -
        median) / IQR``.  ``"quantile"``: map each numeric column through its
        training quantiles to normal scores (extrapolated linearly beyond the
        training range).  ``"auto"``: quantile for strongly skewed columns, robust
        for the others.  Binary columns stay 0/1 whatever the choice.
    missing : {"impute", "error"}, default="impute"
        Missing-value policy, see the module docstring.
    max_categories : int, default=50
        Most frequent categories kept per categorical column; rarer ones encode like
        unknown categories (all zeros).

    Attributes
    ----------
    input_columns_ : list of str
        Columns expected at transform time (``x0, x1, ...`` for arrays).
    feature_names_out_ : list of str
        Names of the encoded columns.
    source_columns_ : ndarray of int
        For every encoded column, the index in ``input_columns_`` it came from.

    Examples
    --------
    >>> import pandas as pd
    >>> from ganomaly.preprocessing import TabularPreprocessor
    >>> df = pd.DataFrame({"amount": [10.0, 12.5, None, 300.0],
    ...                    "merchant": ["food", "travel", "food", "food"]})
    >>> pre = TabularPreprocessor().fit(df)
    >>> pre.feature_names_out_
    ['amount', 'amount__missing', 'merchant=food', 'merchant=travel']
    >>> pre.transform(pd.DataFrame({"amount": [11.0], "merchant": ["casino"]})).shape
    (1, 4)
    >>> restored = TabularPreprocessor.from_dict(pre.to_dict())
    >>> restored.feature_names_out_ == pre.feature_names_out_
    True
    """

    def __init__(
        self,
        *,
        numeric_scaling: str = "standard_log",
        missing: str = "impute",
        max_categories: int = 50,
    ):
        self.numeric_scaling = numeric_scaling
        self.missing = missing
        self.max_categories = max_categories

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any) -> TabularPreprocessor:
        """Learn scaling, categories and missing-value fills from training rows.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            Training rows.  Non-numeric DataFrame columns are categorical.

        Returns
        -------
        self : TabularPreprocessor
        """
        if self.numeric_scaling not in NUMERIC_SCALINGS:
            raise ValueError(
                f"numeric_scaling must be one of {NUMERIC_SCALINGS}, "
                f"got {self.numeric_scaling!r}"
            )
        if self.missing not in ("impute", "error"):
            raise ValueError(
                f"missing must be 'impute' or 'error', got {self.missing!r}"
            )
        self.from_array_ = not _is_frame(X)
        frame = _as_frame(X)
        if frame.shape[0] == 0:
            raise ValueError("Cannot fit on 0 rows.")
        if frame.shape[1] == 0:
            raise ValueError("Cannot fit on 0 columns: X has no features.")
        specs = []
        for name in frame.columns:
            series = frame[name]
            _refuse_times(name, series)
            if _looks_numeric(series):
                spec = self._fit_numeric(name, _numeric_values(series, name))
                if _is_boolean(series):
                    spec["boolean"] = True  # read as true/false by the scorer
                specs.append(spec)
            else:
                specs.append(self._fit_categorical(name, series))
        if not frame.notna().to_numpy().any():
            raise ValueError(
                f"Cannot fit: every value of the {len(specs)} training column(s) is "
                "missing."
            )
        self._set_specs(specs)
        return self

    def _fit_numeric(self, name: str, values: np.ndarray) -> dict[str, Any]:
        missing = self._check_numeric(name, values)
        present = values[~missing]
        if present.size == 0:
            present = np.zeros(1)
        median = float(np.median(present))
        spec: dict[str, Any] = {
            "name": name,
            "kind": "numeric",
            "fill": median,
            "missing_indicator": bool(missing.any()),
        }
        skewed = abs(_skewness(present)) > 2 and np.unique(present).size > 20
        if self.numeric_scaling == "quantile" or (
            self.numeric_scaling == "auto" and skewed
        ):
            probabilities = np.linspace(_P_EDGE, 1 - _P_EDGE, _N_QUANTILES)
            quantiles = np.quantile(present, probabilities)
            references = _normal_ppf(probabilities)
            # Repeated quantiles (point masses) would make interpolation ambiguous.
            quantiles, first = np.unique(quantiles, return_index=True)
            if quantiles.size >= 2:
                references = references[first]
                tail = max(2, quantiles.size // 10)
                spec.update(
                    scaling="quantile",
                    quantiles=quantiles.tolist(),
                    references=references.tolist(),
                    low_slope=float(
                        (references[tail] - references[0])
                        / (quantiles[tail] - quantiles[0])
                    ),
                    high_slope=float(
                        (references[-1] - references[-1 - tail])
                        / (quantiles[-1] - quantiles[-1 - tail])
                    ),
                )
                return spec
        if np.unique(present).size <= 2:
            # Binary indicators stay 0/1: dividing by a tiny spread would make every
            # rare-but-normal 1 look extreme.
            low, high = float(present.min()), float(present.max())
            spec.update(scaling="robust", center=low, scale=(high - low) or 1.0)
            return spec
        if self.numeric_scaling == "standard_log":
            scale = float(present.std())
            spec.update(
                scaling="standard",
                center=float(present.mean()),
                scale=scale if scale > 0 else 1.0,
                log=bool(skewed),
            )
            return spec
        q1, q3 = np.quantile(present, [0.25, 0.75])
        scale = float(q3 - q1)
        if not scale > 0:
            scale = float(present.std())
        if not scale > 0:
            scale = 1.0
        spec.update(scaling="robust", center=median, scale=scale)
        return spec

    def _check_numeric(self, name: str, values: np.ndarray) -> np.ndarray:
        """The missing-value mask of a numeric column (NaN); an error for the first
        bad cell by the rules of :mod:`ganomaly.values` (the scorer's too)."""
        faults = number_faults(values, None, self.missing == "error")
        if faults:
            row, reason = min(faults)
            raise InputDataError(
                f"column {name!r}, row {row}: {reason}", column=name, row=row
            )
        return np.isnan(values)

    def _check_missing(self, name: str, series: pd.Series) -> np.ndarray:
        """The column's missing-value mask; an error under ``missing="error"``."""
        missing = series.isna().to_numpy()
        if missing.any() and self.missing == "error":
            row = _first_bad(missing)
            raise InputDataError(
                f"column {name!r}, row {row}: {MISSING_REFUSED}",
                column=name,
                row=row,
            )
        return missing

    def _fit_categorical(self, name: str, series: pd.Series) -> dict[str, Any]:
        missing = self._check_missing(name, series)
        counts = series.dropna().astype(str).value_counts(sort=False)
        # Most frequent first, ties broken by name so the encoding is deterministic.
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        categories = sorted(c for c, _ in ordered[: self.max_categories])
        return {
            "name": name,
            "kind": "categorical",
            "categories": categories,
            "missing_category": bool(missing.any()),
        }

    def _set_specs(self, specs: list[dict[str, Any]]) -> None:
        self.specs_ = specs
        self.input_columns_ = [spec["name"] for spec in specs]
        names: list[str] = []
        sources: list[int] = []
        for index, spec in enumerate(specs):
            if spec["kind"] == "numeric":
                block = [spec["name"]]
                if spec["missing_indicator"]:
                    block.append(f"{spec['name']}__missing")
            else:
                block = [f"{spec['name']}={c}" for c in spec["categories"]]
                if spec["missing_category"]:
                    block.append(f"{spec['name']}={_MISSING_CATEGORY}")
            names.extend(block)
            sources.extend([index] * len(block))
        self.feature_names_out_ = names
        self.source_columns_ = np.asarray(sources, dtype=np.int64)
        self.n_features_out_ = len(names)

    # ---------------------------------------------------------------- transform
    def transform(self, X: Any, *, order: str = "C") -> np.ndarray:
        """Encode rows; bad data raises :class:`InputDataError` naming column and row.

        Parameters
        ----------
        X : DataFrame, dict or array-like of shape (n_samples, n_columns)
            DataFrames and dicts of 1-D arrays are matched by column name (extra
            columns are ignored); arrays by position.
        order : {"C", "F"}, default="C"
            Memory layout of the result.  ``"F"`` keeps each feature's values
            together: they are written a third faster, and it is the layout in
            which the float32 scorer reads them.

        Returns
        -------
        encoded : ndarray of shape (n_samples, n_features_out_), dtype float32
        """
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', got {order!r}")
        if not hasattr(self, "specs_"):
            raise AttributeError(
                "This TabularPreprocessor is not fitted yet; call fit."
            )
        if _is_frame(X) and self.from_array_:
            # Fitted on an array: columns are matched by position.
            frame = _as_frame(X.to_numpy(), columns=self.input_columns_)
        elif _is_frame(X):
            frame = _as_frame(X)
            absent = [c for c in self.input_columns_ if c not in frame.columns]
            if absent:
                raise InputDataError(
                    f"missing column(s) {', '.join(map(repr, absent))}; expected "
                    f"columns {', '.join(map(repr, self.input_columns_))}",
                    column=absent[0],
                )
        elif isinstance(X, dict):
            # Column name -> 1-D array (the streaming scorer's fast path, no pandas).
            frame = {
                name: X[name]
                if isinstance(X[name], np.ndarray) and X[name].dtype.kind == "f"
                else _series(X[name])
                for name in self.input_columns_
            }
            n_rows = len(next(iter(frame.values()))) if frame else 0
        else:
            frame = _as_frame(X, columns=self.input_columns_)
        if not isinstance(frame, dict):
            n_rows = frame.shape[0]
        out = np.empty((n_rows, self.n_features_out_), dtype=np.float32, order=order)
        position = 0
        for spec in self.specs_:
            block = self._transform_column(spec, frame[spec["name"]])
            out[:, position : position + block.shape[1]] = block
            position += block.shape[1]
        return out

    def _transform_column(self, spec: dict[str, Any], series: pd.Series) -> np.ndarray:
        name = spec["name"]
        if spec["kind"] == "categorical":
            import pandas as pd

            categories = spec["categories"]
            missing = self._check_missing(name, series)
            if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object:
                as_text = series.astype(str).where(~missing, None)
            else:
                as_text = series.astype(str)
            codes = pd.Index(categories, dtype=object).get_indexer(as_text)
            width = len(categories) + int(spec["missing_category"])
            block = np.zeros((series.shape[0], width), dtype=np.float32)
            known = codes >= 0
            block[np.flatnonzero(known), codes[known]] = 1.0
            if spec["missing_category"]:
                block[missing, -1] = 1.0
            return block
        values = _numeric_values(series, name)
        missing = self._check_numeric(name, values)
        if missing.any():
            values = np.where(missing, spec["fill"], values)
        if spec["scaling"] in ("robust", "standard"):
            scaled = values - spec["center"]
            scaled /= spec["scale"]
            if spec.get("log"):  # the signed logarithm of a skewed column
                np.copysign(np.log1p(np.abs(scaled)), scaled, out=scaled)
        else:
            quantiles = np.asarray(spec["quantiles"])
            references = np.asarray(spec["references"])
            scaled = np.interp(values, quantiles, references)
            below, above = values < quantiles[0], values > quantiles[-1]
            scaled[below] = (
                references[0] + (values[below] - quantiles[0]) * spec["low_slope"]
            )
            scaled[above] = (
                references[-1] + (values[above] - quantiles[-1]) * spec["high_slope"]
            )
        np.clip(scaled, -_SAFETY_CLIP, _SAFETY_CLIP, out=scaled)
        # float64: `transform` rounds to float32 as it writes the block.
        if spec["missing_indicator"]:
            return np.column_stack([scaled, missing])
        return scaled[:, None]

    def fit_transform(self, X: Any) -> np.ndarray:
        """Fit, then transform the same rows."""
        return self.fit(X).transform(X)

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description of the fitted preprocessor (no pickle)."""
        if not hasattr(self, "specs_"):
            raise AttributeError(
                "This TabularPreprocessor is not fitted yet; call fit."
            )
        return {
            "format_version": _FORMAT_VERSION,
            "from_array": self.from_array_,
            "params": {
                "numeric_scaling": self.numeric_scaling,
                "missing": self.missing,
                "max_categories": self.max_categories,
            },
            "columns": [dict(spec) for spec in self.specs_],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output."""
        version = state.get("format_version")
        if version != _FORMAT_VERSION:
            raise ValueError(
                f"Unsupported preprocessor format version {version!r}; "
                f"this ganomaly reads version {_FORMAT_VERSION}."
            )
        pre = cls(**state["params"])
        pre.from_array_ = bool(state["from_array"])
        specs = [dict(spec) for spec in state["columns"]]
        for spec in specs:
            for key in ("fill", "center", "scale", "low_slope", "high_slope"):
                if key in spec and not math.isfinite(spec[key]):
                    raise ValueError(
                        f"Corrupt preprocessor state for column {spec['name']!r}."
                    )
        pre._set_specs(specs)
        return pre
