"""What the ONNX exports of ganomaly and ganaug share: the check for the optional
``onnx`` extra, the metadata every exported file carries, and the atomic write.

An exported file names what it came from in its ONNX ``metadata_props``:

* ``gankit.kind`` -- the kind of model it was exported from
  (``"ganomaly.GANomalyDetector"``, ``"ganaug.GANAugmenter"``);
* ``gankit.format_version`` -- the gankit model-file format version of that model
  (:data:`gancore.io.FORMAT_VERSION`);
* ``gankit.onnx_interface`` -- the version of the exported graph's interface (its
  inputs and outputs), raised whenever they change;
* ``gankit.version`` -- the gankit version that exported it;

and each package adds what a caller needs to use the graph (columns, classes,
threshold...).  Neither ``onnx`` nor ``onnxruntime`` is imported here until an
export asks for them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from .files import atomic_write
from .io import FORMAT_VERSION

__all__ = [
    "EXTRA_MESSAGE",
    "MissingExtraError",
    "gankit_version",
    "require_onnx",
    "save_onnx",
    "set_metadata",
]

EXTRA_MESSAGE = (
    "exporting to ONNX needs the optional 'onnx' extra (onnx, onnxruntime, "
    "onnxscript): pip install 'gankit[onnx]'"
)


class MissingExtraError(ImportError):
    """The ``onnx`` extra is not installed; the message says how to install it."""


def require_onnx(*modules: str) -> list[ModuleType]:
    """Import the modules of the ``onnx`` extra, or say in one line how to get them.

    Parameters
    ----------
    *modules : str
        Module names, such as ``"onnx"`` and ``"onnxruntime"``.

    Returns
    -------
    list of module

    Raises
    ------
    MissingExtraError
        One of them is not installed; the message is :data:`EXTRA_MESSAGE`.

    Examples
    --------
    >>> [m.__name__ for m in require_onnx("onnx")]
    ['onnx']
    """
    found = []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError as exc:
            raise MissingExtraError(EXTRA_MESSAGE) from exc
    return found


def gankit_version() -> str:
    """The installed gankit version, or ``"unknown"`` in a source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gankit")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def set_metadata(
    model: Any, kind: str, interface_version: int, extra: dict[str, str]
) -> None:
    """Write the gankit entries into an ONNX model's ``metadata_props`` (replacing
    any of the same keys), and name gankit as its producer.

    Parameters
    ----------
    model : onnx.ModelProto
    kind : str
        The kind of model exported (``"ganomaly.GANomalyDetector"``, ...).
    interface_version : int
        Version of the exported graph's inputs and outputs.
    extra : dict of str to str
        Further entries, keys conventionally starting with ``gankit.``.

    Examples
    --------
    >>> import onnx
    >>> model = onnx.ModelProto()
    >>> set_metadata(model, "demo", 1, {"gankit.note": "hello"})
    >>> {p.key: p.value for p in model.metadata_props}["gankit.kind"]
    'demo'
    """
    entries = {
        "gankit.kind": kind,
        "gankit.format_version": str(FORMAT_VERSION),
        "gankit.onnx_interface": str(interface_version),
        "gankit.version": gankit_version(),
        **extra,
    }
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    model.producer_name = "gankit"
    model.producer_version = gankit_version()


def save_onnx(model: Any, path: str | os.PathLike) -> None:
    """Write an ONNX model to ``path`` atomically (one file, weights inside).

    Parameters
    ----------
    model : onnx.ModelProto
    path : str or path-like
    """
    data = model.SerializeToString()
    with atomic_write(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
