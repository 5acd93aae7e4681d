"""What is refused, and why: the one home of every reject reason.

Columns a file must have (:func:`check_columns`), Parquet types, and the values of
a block: numbers that are not numbers, NaN, infinities, missing values where the
model says so, bytes that are not UTF-8, rows without any value, labels that are
neither normal nor anomalous.  Each bad cell is ``(index, column, reason)``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..labels import LabelRule
from ..values import BOOLEAN_WORDS, MISSING_REFUSED, not_a_number, number_faults
from .arrow import (
    as_float,
    bool_values,
    float_values,
    keep_only,
    null_mask,
    take_rows,
    to_arrow,
    true_mask,
)
from .errors import BadInputError
from .formats import is_parquet, parquet_module


def check_columns(
    path: Path, header: list[str], needed: Sequence[str], named: Sequence[str] = ()
) -> None:
    """BadInputError unless ``header`` has the model's columns (``needed``) and the
    columns the caller names (an id, label or dropped column); the message names
    what is missing, what the file has, and a delimiter that is not a comma."""
    absent = [c for c in [*needed, *named] if c not in header]
    if not absent:
        return
    where = "schema" if is_parquet(path) else "line 1 (header)"
    message = f"{path}: {where}: missing column(s) {', '.join(map(repr, absent))}"
    if needed:
        message += f"; the model needs {', '.join(map(repr, needed))}"
    if needed and any(c in absent for c in named):
        message += f", and {', '.join(map(repr, named))} was named as a column"
    if not needed:
        shown = ", ".join(map(repr, header[:12])) + (
            ", ..." if len(header) > 12 else ""
        )
        message += f"; the file has {shown}"
    if len(header) == 1 and not is_parquet(path):
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                message += (
                    f"; the header has a single column containing {delimiter!r}: "
                    "the file seems to use another delimiter than ',' (save it as "
                    "comma-separated)"
                )
                break
    raise BadInputError(message)


def check_unique_columns(path: Path, header: list[str], wanted: list[str]) -> None:
    """BadInputError if a column to read appears more than once in ``header``:
    which of the two holds the values is anyone's guess."""
    for name in dict.fromkeys(wanted):
        places = [i + 1 for i, c in enumerate(header) if c == name]
        if len(places) > 1:
            where = "schema" if is_parquet(path) else "line 1 (header)"
            raise BadInputError(
                f"{path}: {where}: column {name!r} appears {len(places)} times "
                f"(columns {', '.join(map(str, places))}); name each column once"
            )


def check_parquet_types(path: Path, numeric: list[str], wanted: list[str]) -> None:
    """BadInputError naming the file and column if a Parquet column to read has a
    type that is not one value per row, or a number column no numbers."""
    schema = parquet_module().read_schema(path)
    for name in dict.fromkeys(wanted):
        kind = schema.field(name).type
        nested = (
            pa.types.is_nested(kind)
            or pa.types.is_dictionary(kind)
            and (pa.types.is_nested(kind.value_type))
        )
        if nested:
            raise BadInputError(
                f"{path}: schema: column {name!r} has type {kind}: expected one value "
                "per row (a number or a text)"
            )
        if name in numeric and not _number_type(kind):
            raise BadInputError(
                f"{path}: schema: column {name!r} has type {kind}; the model reads it "
                "as numbers"
            )


def _number_type(kind: pa.DataType) -> bool:
    """Whether a Parquet column of this type can hold a model's number column:
    numbers, booleans, decimals, or text (whose values are checked one by one)."""
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def describe_row(
    path: Path, line: int | None, row: int, column: str, reason: str
) -> str:
    where = f"line {line}" if line is not None else f"row {row}"
    column_text = f", column {column!r}" if column else ""
    return f"{path}: {where}{column_text}: {reason}"


def validate_batch(
    batch: pa.RecordBatch,
    numeric: list[str],
    missing_is_bad: list[str],
    dirty: set[str] | None = None,
    booleans: Sequence[str] | set[str] = (),
) -> tuple[dict[str, np.ndarray], list[tuple[int, str, str]]]:
    """Float values of numeric columns and the bad cells ``(index, column, reason)``,
    by the rules of :mod:`ganomaly.values` (the estimator's too).

    ``missing_is_bad``: the columns, of any kind, where a missing value is refused
    (all of the model's under its ``missing="error"`` policy).  ``dirty``: the
    number columns read as text whose last block held values that are not
    numbers (updated here), for :func:`_text_numbers`.  ``booleans``: the number
    columns fitted on booleans, for the messages.
    """
    values: dict[str, np.ndarray] = {}
    bad: list[tuple[int, str, str]] = []
    for name in numeric:
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        numbers = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if column.null_count == 0 and numbers:
            # The common case (a clean number column): one pass, no copies.
            array = float_values(column)
            if np.isfinite(array).all():
                values[name] = array
                continue
        null = null_mask(column)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            likely = dirty is not None and name in dirty
            array, blank, not_numbers = _text_numbers(column, likely)
            if dirty is not None:
                (dirty.add if not_numbers.size else dirty.discard)(name)
            null |= blank
            shown = take_rows(column, not_numbers).to_pylist()
            boolean = name in booleans
            for index, value in zip(not_numbers.tolist(), shown, strict=True):
                bad.append((index, name, not_a_number(value, boolean)))
            array[not_numbers] = 0.0
        elif numbers:
            array = float_values(column)  # any value under a null is masked below
        elif pa.types.is_decimal(column.type):
            import pyarrow.compute as pc

            array = float_values(pc.cast(column, pa.float64()))
        elif pa.types.is_boolean(column.type) or pa.types.is_null(column.type):
            array = bool_values(column)
        else:
            raise BadInputError(
                f"column {name!r} has type {column.type}; expected numbers"
            )
        refuse_missing = name in missing_is_bad
        for index, reason in number_faults(array, null, refuse_missing):
            bad.append((index, name, reason))
        values[name] = np.where(null, np.nan, array)
    for name in missing_is_bad:  # the columns of categories
        if name not in values and name not in numeric:
            for index in np.flatnonzero(null_mask(batch.column(name))):
                bad.append((int(index), name, MISSING_REFUSED))
    return values, bad


# What pyarrow's string-to-float conversion takes (checked against it in the tests);
# a value it does not match is asked of pyarrow itself, alone.
_NUMBER = re.compile(
    r"^[+-]?(?:(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$",
    re.IGNORECASE,
)


def _text_numbers(
    column: pa.Array, likely_dirty: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numbers in a text column, converted as the typed CSV read converts them.

    A number column holding a value that is not a number is read as text (see
    ``Job._parse_carefully``); its other values must get the same floats, to the
    last bit, as they would in a piece of the file without that value.  So they go
    through pyarrow's own conversion (the one the typed read uses), after the
    same trimming of spaces and tabs.  A piece where every value is a number (the
    pieces after a bad value, mostly) costs one cast, 0.04 s per 1M values; where
    one is not, a pattern picks the candidates (0.07 s more per 1M values) and
    pyarrow is asked about each distinct text the pattern does not take.  With
    ``likely_dirty`` (the column's last piece was not clean) the pattern comes
    first, without the cast that would fail.

    Returns
    -------
    values : ndarray of float64
        Anything under a blank or a non-number.
    blank : ndarray of bool
        Empty (or only spaces and tabs): a missing value.
    not_numbers : ndarray of int
        Indices of the values that are not numbers.
    """
    import pyarrow.compute as pc

    text = pc.utf8_trim(column, characters=" \t")
    # Empty after trimming: from the offsets (``pc.equal(text, "")`` would make a
    # scalar of "", which imports pandas).
    start = text.offset
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    bounds = np.frombuffer(text.buffers()[1], width)[start : start + len(text) + 1]
    null = null_mask(column)  # the trimmed text has the same nulls
    blank = (np.diff(bounds) == 0) & ~null
    present = ~null & ~blank
    not_numbers = np.zeros(0, dtype=np.intp)
    numbers = None
    if not likely_dirty:  # the usual piece: every value present is a number
        with contextlib.suppress(pa.ArrowInvalid):
            numbers = pc.cast(keep_only(text, present), pa.float64())
    if numbers is None:
        text = _boolean_words_as_numbers(text)
        looks = pc.match_substring_regex(text, _NUMBER.pattern, ignore_case=True)
        # Values the pattern does not take are asked of pyarrow, one distinct value
        # at a time (the same few texts, such as "N/A", tend to come back).
        unlike = np.flatnonzero(present & ~true_mask(looks))
        not_numbers = unlike
        if unlike.size:
            candidates = take_rows(text, unlike)
            distinct = pc.unique(candidates)
            refused = [as_float(value) is None for value in distinct]
            refused_texts = distinct.filter(to_arrow(np.array(refused), pa.bool_()))
            refused_here = pc.is_in(candidates, value_set=refused_texts)
            not_numbers = unlike[true_mask(refused_here)]
        take = present.copy()
        take[not_numbers] = False
        kept = keep_only(text, take)
        try:
            numbers = pc.cast(kept, pa.float64())
        except pa.ArrowInvalid:  # pragma: no cover - a value _NUMBER took wrongly
            numbers = pa.array([as_float(v) for v in kept], pa.float64())
    values = np.array(float_values(numbers))  # a copy, to write into
    return values, blank, not_numbers


def check_labels(column: pa.Array, name: str, rule: LabelRule, bad: list) -> np.ndarray:
    """Whether each label of a label column is an anomaly; missing and unknown
    labels (those ``rule`` knows as neither normal nor anomalous) added to ``bad``
    as ``(index, column, reason)``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    missing = null_mask(column)
    texts = np.array(column.to_pylist(), dtype=object)
    texts[missing] = ""
    anomalous, unknown = rule.classify(texts)
    for index in np.flatnonzero(missing):
        bad.append((int(index), name, "missing label"))
    unknown &= ~missing
    for index in np.flatnonzero(unknown):
        reason = (
            f"label {texts[index]!r} is neither normal nor an anomaly "
            f"({rule.describe()})"
        )
        bad.append((int(index), name, reason))
    return anomalous


def empty_rows(
    batch: pa.RecordBatch, columns: list[str], values: dict[str, np.ndarray]
) -> list[tuple[int, str, str]]:
    """The rows with no value in any of ``columns`` (a line of bare commas), as bad
    cells: imputed, such a row would score as the most normal row there is.

    ``values``: the numbers of the number columns, NaN where missing.  Only a
    block in which every column has a missing value is looked at row by row.
    """
    for name in columns:
        column = batch.column(name)
        if not column.null_count and not pa.types.is_string(column.type):
            return []
    empty = np.ones(batch.num_rows, dtype=bool)
    for name in columns:
        if name in values:
            empty &= np.isnan(values[name])
        else:
            empty &= null_mask(batch.column(name))
    reason = "no value in any of the model's columns"
    return [(int(index), "", reason) for index in np.flatnonzero(empty)]


def decode_bytes(
    batch: pa.RecordBatch,
) -> tuple[pa.RecordBatch, list[tuple[int, str, str]]]:
    """``batch`` with its columns read as bytes (see ``Job._parse_carefully``) as
    text, and the cells that are not UTF-8 text ``(index, column, reason)``: those
    become missing values, and their rows are rejected."""
    bad: list[tuple[int, str, str]] = []
    if not any(pa.types.is_binary(field.type) for field in batch.schema):
        return batch, bad
    columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_binary(column.type):
            keep = ~null_mask(column)
            for index, value in enumerate(column.to_pylist()):
                if value is None:
                    continue
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    keep[index] = False
                    reason = (
                        f"not UTF-8 text (byte 0x{value[exc.start]:02x} at offset "
                        f"{exc.start} of the value); save the file as UTF-8"
                    )
                    bad.append((index, name, reason))
            column = keep_only(column, keep, pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), bad


def _boolean_words_as_numbers(text: pa.Array) -> pa.Array:
    """``text`` with the boolean words (true, false, in any case) as "1" and "0":
    numbers, as :data:`ganomaly.values.BOOLEAN_WORDS` says."""
    import pyarrow.compute as pc

    # (Options, not scalars: a scalar made from a Python string imports pandas.)
    for word, number in BOOLEAN_WORDS.items():
        text = pc.replace_substring_regex(
            text, pattern=f"(?i)^{word}$", replacement=f"{number:g}"
        )
    return text
