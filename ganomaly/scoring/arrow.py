"""Arrow arrays to numpy and back, without pandas (``to_numpy`` and scalars made
from Python values import it: 0.4 s a process)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def keep_only(text: pa.Array, keep: np.ndarray, type_: pa.DataType = None) -> pa.Array:
    """``text`` with nulls where ``keep`` is False: a new validity bitmap over the
    same buffers (``pc.if_else`` with a null scalar would import pandas, 0.4 s), as
    ``type_`` (a type with the same buffers: text for bytes) if given."""
    start = text.offset
    bits = np.concatenate([np.zeros(start, dtype=bool), keep])
    validity = pa.py_buffer(np.packbits(bits, bitorder="little"))
    _, offsets, data = text.buffers()
    return pa.Array.from_buffers(
        type_ or text.type, len(text), [validity, offsets, data], offset=start
    )


def as_float(value: pa.Scalar) -> float | None:
    """pyarrow's float of one text value, or None if it is not a number."""
    import pyarrow.compute as pc

    if not value.is_valid:
        return None
    try:
        return pc.cast(value, pa.float64()).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def true_mask(column: pa.Array) -> np.ndarray:
    """True where a boolean array is true (null: False), from its bitmaps."""
    data = np.frombuffer(column.buffers()[1], np.uint8)
    bits = np.unpackbits(data, bitorder="little")
    true = bits[column.offset : column.offset + len(column)].astype(bool)
    return true & ~null_mask(column)


def null_mask(column: pa.Array) -> np.ndarray:
    """True where ``column`` is null, from its validity bitmap (see below)."""
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    if pa.types.is_null(column.type):
        return np.ones(len(column), dtype=bool)
    validity = np.frombuffer(column.buffers()[0], np.uint8)
    bits = np.unpackbits(validity, bitorder="little")
    return bits[column.offset : column.offset + len(column)] == 0


def float_values(column: pa.Array) -> np.ndarray:
    """An integer or float column as float64, read from its data buffer.

    Values under nulls are whatever the buffer holds: the caller masks them.
    (``Array.to_numpy`` would import pandas, 0.4 s, which scoring does not need.)
    """
    width = column.type.bit_width // 8
    kind = "f" if pa.types.is_floating(column.type) else "i"
    if pa.types.is_unsigned_integer(column.type):
        kind = "u"
    dtype = np.dtype(f"<{kind}{width}")
    buffer = column.buffers()[1]
    data = np.frombuffer(buffer, dtype, count=len(column), offset=column.offset * width)
    return data.astype(np.float64, copy=False)


def bool_values(column: pa.Array) -> np.ndarray:
    """Booleans (or an all-null column) as floats 1 and 0, NaN for missing."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    values = true_mask(column).astype(np.float64)
    values[null_mask(column)] = np.nan
    return values


_NUMPY_TYPES = {pa.float64(): np.float64, pa.int64(): np.int64}


def strings_array(texts: list[str]) -> pa.Array:
    """A list of str as an Arrow string array (see :func:`to_arrow`)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def take_rows(values: pa.Array, indices: np.ndarray) -> pa.Array:
    """``values.take(indices)``, without importing ``pyarrow.compute``.

    That import wraps every compute function in Python: 60 ms at the start of
    every run, for one function.  ``pyarrow._compute`` is its compiled half.
    """
    try:
        from pyarrow._compute import call_function
    except ImportError:  # pragma: no cover - if pyarrow moves it
        from pyarrow.compute import call_function
    return call_function("take", [values, to_arrow(indices, pa.int64())])


def to_arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A null-free numpy column as an Arrow array, without ``pa.array``.

    ``pa.array`` imports pandas (0.4 s) to inspect its argument; scoring has no
    other use for pandas.
    """
    if type_ == pa.bool_():
        data = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    else:
        data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[type_])
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(data)])
