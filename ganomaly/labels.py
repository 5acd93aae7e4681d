"""Which labels of a labelled file mark normal rows and which mark anomalies.

One rule for every command that reads labels: ``ganomaly fit --label-col`` (which
rows to train on), ``ganomaly evaluate`` (which rows are anomalies), on pandas
columns and on Arrow columns alike.  Labels are compared as text (spaces around
them ignored) and as numbers when both sides are numbers, booleans being numbers
(``"0"`` matches ``"0.0"`` and ``"False"``, ``"1"`` matches ``"1.0"`` and
``"True"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LabelRule", "UnknownLabelError"]

# At most this many anomaly labels are kept in a model file: a label column has a
# few values; more means an id or a score was named as the label.
MAX_LABELS = 100
_BOOLEANS = {"true": 1.0, "false": 0.0}


class UnknownLabelError(ValueError):
    """A label that is neither normal nor an anomaly."""


def _as_number(text: str) -> float | None:
    lowered = text.strip().lower()
    if lowered in _BOOLEANS:
        return _BOOLEANS[lowered]
    try:
        number = float(lowered)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def _key(text: str) -> str | float:
    """What a label is compared by: its number, or its text."""
    number = _as_number(text)
    return number if number is not None else text.strip()


@dataclass(frozen=True)
class LabelRule:
    """The labels of normal rows and of anomalies.

    Parameters
    ----------
    normal : sequence of str
        Labels of normal rows.
    anomalous : sequence of str or None, default=None
        Labels of anomalies.  ``None``: every label that is not normal (how ``fit``
        reads a label column); otherwise a label in neither list is unknown.

    Examples
    --------
    >>> rule = LabelRule(normal=["0"], anomalous=["1"])
    >>> is_anomaly, unknown = rule.classify(["0", "1.0", "True", "?", " 0 "])
    >>> is_anomaly.tolist(), unknown.tolist()
    ([False, True, True, False, False], [False, False, False, True, False])
    >>> rule.describe()
    "normal '0', anomalous '1'"
    """

    normal: tuple[str, ...]
    anomalous: tuple[str, ...] | None = None
    _normal_keys: frozenset = field(init=False, repr=False, compare=False)
    _anomalous_keys: frozenset | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", tuple(str(v) for v in self.normal))
        if self.anomalous is not None:
            object.__setattr__(self, "anomalous", tuple(str(v) for v in self.anomalous))
        object.__setattr__(self, "_normal_keys", frozenset(map(_key, self.normal)))
        keys = None if self.anomalous is None else frozenset(map(_key, self.anomalous))
        object.__setattr__(self, "_anomalous_keys", keys)
        both = (keys or frozenset()) & self._normal_keys
        if both:
            raise ValueError(
                f"label(s) {', '.join(map(repr, sorted(map(str, both))))} given as "
                "both normal and anomalous"
            )

    def classify(self, labels: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Whether each label is an anomaly, and whether it is unknown.

        Distinct labels are classified once each, so a column of millions of rows
        with a few labels costs one pass.

        Parameters
        ----------
        labels : iterable of str
            Missing labels must be removed first.

        Returns
        -------
        is_anomaly, unknown : ndarray of bool
        """
        if not isinstance(labels, np.ndarray):
            labels = np.asarray(list(labels), dtype=object)
        if labels.size == 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        distinct, inverse = np.unique(labels.astype(str), return_inverse=True)
        keys = [_key(text) for text in distinct]
        normal = np.array([k in self._normal_keys for k in keys])
        if self._anomalous_keys is None:
            anomalous = ~normal
        else:
            anomalous = np.array([k in self._anomalous_keys for k in keys])
        unknown = ~normal & ~anomalous
        return anomalous[inverse.ravel()], unknown[inverse.ravel()]

    def describe(self) -> str:
        """The rule in words, for messages."""
        normal = ", ".join(map(repr, self.normal))
        if self.anomalous is None:
            return f"normal {normal}, anything else anomalous"
        return f"normal {normal}, anomalous {', '.join(map(repr, self.anomalous))}"

    @staticmethod
    def others(labels: Sequence[str], normal: Sequence[str]) -> list[str]:
        """The distinct labels of ``labels`` that are not ``normal``, sorted, at most
        :data:`MAX_LABELS` (what a model file keeps as its anomaly labels)."""
        rule = LabelRule(normal=tuple(normal))
        distinct = sorted({str(v).strip() for v in labels})
        is_anomaly, _ = rule.classify(distinct)
        return [v for v, a in zip(distinct, is_anomaly, strict=True) if a][:MAX_LABELS]

    def to_dict(self) -> dict:
        """A JSON-able form, for a model file."""
        anomalous = None if self.anomalous is None else list(self.anomalous)
        return {"normal": list(self.normal), "anomalous": anomalous}

    @classmethod
    def from_dict(cls, state: dict) -> LabelRule:
        """The rule of :meth:`to_dict`."""
        anomalous = state.get("anomalous")
        return cls(
            normal=tuple(map(str, state["normal"])),
            anomalous=None if anomalous is None else tuple(map(str, anomalous)),
        )
