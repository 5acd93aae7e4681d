"""Safe model files: safetensors weights with a JSON configuration and a version.

A gankit model file is one ``.safetensors`` file. Its tensors are the weights; its
string metadata holds

* ``gankit.format`` -- the literal ``"gankit"``, so that foreign files are recognised;
* ``gankit.format_version`` -- :data:`FORMAT_VERSION`, checked on load;
* ``gankit.kind`` -- what the file holds (``"ganomaly.GANomalyDetector"``, ...);
* ``gankit.config`` -- the JSON configuration needed to rebuild the object;
* ``gankit.sha256`` -- a digest of every tensor's name, dtype, shape and bytes and
  of the kind and configuration, so a bit flip anywhere in the weights or in the
  configuration (thresholds, scaling statistics) is caught instead of silently
  changing scores;
* ``gankit.version`` -- the gankit version that wrote it (for messages only).

Nothing in this format can execute code when loaded: safetensors is a JSON header
plus raw buffers, and the configuration is parsed with :func:`json.loads`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .files import atomic_write

if TYPE_CHECKING:  # torch is imported where tensors are made: load_arrays needs none
    import torch

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "load_arrays",
    "load_model",
    "save_model",
]

FORMAT_VERSION = 1
_MAGIC = "gankit"


class ModelFileError(ValueError):
    """A model file is missing, damaged, foreign, or of another format version."""

    @classmethod
    def damaged(cls, path: str | os.PathLike, what: str, exc: Exception):
        """A file whose ``what`` could not be rebuilt from its contents, with the
        cause in one line (torch's shape errors span several)."""
        cause = " ".join(str(exc).split())
        if len(cause) > 300:
            cause = cause[:300] + " ..."
        return cls(f"{path}: damaged {what} model ({type(exc).__name__}: {cause})")


def _gankit_version() -> str:
    try:
        from importlib.metadata import version

        return version("gankit")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _digest(tensors: dict, kind: str, config_json: str) -> str:
    """SHA-256 over kind, configuration and every tensor (torch or numpy, the same).

    A numpy array hashes exactly like the torch tensor it was read as: dtypes are
    named the torch way (``torch.float32``), so :func:`load_arrays` verifies files
    without importing torch.
    """
    sha = hashlib.sha256()
    # The configuration holds fitted numbers too (thresholds, scaling statistics).
    sha.update(f"{len(kind)}|{kind}|{len(config_json)}|{config_json}|".encode())
    for name in sorted(tensors):
        value = tensors[name]
        if isinstance(value, np.ndarray):
            dtype = _TORCH_DTYPE_NAMES.get(value.dtype.str.lstrip("<|="))
            if dtype is None:
                raise ModelFileError(f"{name!r}: unsupported dtype {value.dtype}")
            # (np.ascontiguousarray would turn a 0-d array into a 1-d one.)
            shape = tuple(value.shape)
            data = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        else:  # a torch tensor
            tensor = value.detach().cpu().contiguous()
            dtype, shape = str(tensor.dtype), tuple(tensor.shape)
            flat = tensor.reshape(-1)
            data = flat.view(_torch().uint8).numpy() if tensor.numel() else b""
        sha.update(f"{name}|{dtype}|{shape}|".encode())
        sha.update(data.tobytes() if len(data) else b"")
    return sha.hexdigest()


# numpy dtype codes -> torch dtype names, as hashed by _digest.
_TORCH_DTYPE_NAMES = {
    "f2": "torch.float16",
    "f4": "torch.float32",
    "f8": "torch.float64",
    "i1": "torch.int8",
    "i2": "torch.int16",
    "i4": "torch.int32",
    "i8": "torch.int64",
    "u1": "torch.uint8",
    "b1": "torch.bool",
}


def _torch():
    import torch

    return torch


def save_model(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    config: dict,
    kind: str,
) -> None:
    """Write tensors and a JSON configuration to a safe model file, atomically.

    Parameters
    ----------
    path : str or path-like
        Target file (conventionally ``*.safetensors``).
    tensors : dict of str to torch.Tensor
        Weights and any other arrays; they are copied to the CPU and made contiguous.
    config : dict
        JSON-serialisable configuration needed to rebuild the object.
    kind : str
        What the file holds, checked by :func:`load_model`.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> save_model(path, {"w": torch.ones(2)}, {"latent_dim": 8}, kind="demo")
    >>> tensors, config = load_model(path, kind="demo")
    >>> tensors["w"].tolist(), config["latent_dim"]
    ([1.0, 1.0], 8)
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        config_json = json.dumps(config, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"model configuration is not JSON-serialisable: {exc}") from exc
    metadata = {
        "gankit.format": _MAGIC,
        "gankit.format_version": str(FORMAT_VERSION),
        "gankit.kind": kind,
        "gankit.config": config_json,
        "gankit.sha256": _digest(tensors, kind, config_json),
        "gankit.version": _gankit_version(),
    }
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_header(path: Path) -> dict:
    """Parse the safetensors header ourselves, to tell 'foreign' from 'damaged'."""
    size = path.stat().st_size
    if size < 8:
        raise ModelFileError(
            f"{path}: not a gankit model file ({size} bytes; too short to be one)"
        )
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len <= 0 or header_len > min(size - 8, 100 * 2**20):
            raise ModelFileError(
                f"{path}: not a gankit model file (no safetensors header; a pickle "
                "or other format is refused, it could run code when loaded)"
            )
        raw = handle.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(
            f"{path}: not a gankit model file (unreadable header: {exc})"
        ) from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a gankit model file (header is not a map)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelFileError(
            f"{path}: damaged model file (its metadata is not a map of texts)"
        )
    end = max(
        (_tensor_end(path, k, v) for k, v in header.items() if k != "__metadata__"),
        default=0,
    )
    if 8 + header_len + end > size:
        raise ModelFileError(
            f"{path}: the model file is truncated ({size} bytes, "
            f"{8 + header_len + end} expected); it was damaged or not fully copied"
        )
    return header


# Bytes per element of the safetensors dtypes a gankit file may hold.
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


def _tensor_end(path: Path, name: str, entry: object) -> int:
    """Where a tensor's bytes end, once its header entry is checked: a dtype, a
    shape of sizes and offsets that hold exactly that shape (so that nothing is
    allocated from sizes the data does not back)."""
    ok = isinstance(entry, dict) and entry.get("dtype") in _DTYPE_BYTES
    shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (0, 0)
    ok = ok and isinstance(shape, list) and isinstance(offsets, list)
    ok = ok and all(type(n) is int and n >= 0 for n in [*shape, *offsets])
    ok = ok and len(offsets) == 2 and offsets[0] <= offsets[1]
    if ok:
        count = 1
        for n in shape:
            count *= n
        ok = offsets[1] - offsets[0] == count * _DTYPE_BYTES[entry["dtype"]]
    if not ok:
        raise ModelFileError(
            f"{path}: damaged model file (the header entry of tensor {name!r} is not "
            "a dtype, a shape and the offsets of its bytes)"
        )
    return offsets[1]


def _check_metadata(path: Path, kind: str | None) -> dict:
    """The file's gankit metadata, after the existence, format and kind checks."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    header = _read_header(path)
    metadata = header.get("__metadata__") or {}
    if metadata.get("gankit.format") != _MAGIC:
        raise ModelFileError(
            f"{path}: a safetensors file, but not a gankit model (no gankit metadata)"
        )
    found_version = metadata.get("gankit.format_version")
    if found_version != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{path}: model file format version {found_version} (written by gankit "
            f"{metadata.get('gankit.version', 'unknown')}), but this gankit "
            f"({_gankit_version()}) reads version {FORMAT_VERSION}; re-train the model "
            "or use a matching gankit version"
        )
    if kind is not None and metadata.get("gankit.kind") != kind:
        raise ModelFileError(
            f"{path}: holds a {metadata.get('gankit.kind')!r}, not a {kind!r}"
        )
    return metadata


def _verified_config(path: Path, metadata: dict, tensors: dict) -> dict:
    """The parsed configuration, once the checksum over tensors and config holds."""
    digest = _digest(
        tensors, str(metadata.get("gankit.kind")), str(metadata.get("gankit.config"))
    )
    if digest != metadata.get("gankit.sha256"):
        raise ModelFileError(
            f"{path}: the weights or configuration do not match their checksum; "
            "the file is damaged"
        )
    try:
        config = json.loads(metadata["gankit.config"])
    except (KeyError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: damaged model configuration ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: damaged model configuration (not a map)")
    return config


def load_model(
    path: str | os.PathLike, kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_model`, refusing anything else.

    Parameters
    ----------
    path : str or path-like
    kind : str, optional
        If given, the file must hold this kind of object.

    Returns
    -------
    tensors : dict of str to torch.Tensor
        On the CPU.
    config : dict

    Raises
    ------
    ModelFileError
        The file is missing, truncated, not a gankit model (a pickle, say), of another
        format version or kind, or its weights do not match their checksum.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    metadata = _check_metadata(path, kind)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged model file ({exc})") from exc
    return tensors, _verified_config(path, metadata, tensors)


def load_arrays(
    path: str | os.PathLike, kind: str | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """:func:`load_model` with numpy arrays, without importing torch.

    The same checks (format, version, kind, checksum); for programs that only run
    inference in numpy and should not pay torch's start-up time.

    Parameters
    ----------
    path : str or path-like
    kind : str, optional

    Returns
    -------
    arrays : dict of str to ndarray
    config : dict

    Raises
    ------
    ModelFileError
        As :func:`load_model`.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> save_model(path, {"w": torch.ones(2)}, {"latent_dim": 8}, kind="demo")
    >>> arrays, config = load_arrays(path, kind="demo")
    >>> arrays["w"].tolist(), arrays["w"].dtype.name
    ([1.0, 1.0], 'float32')
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    metadata = _check_metadata(path, kind)
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: damaged model file ({exc})") from exc
    return arrays, _verified_config(path, metadata, arrays)


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every key prefixed by ``prefix + '.'``."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def module_state(prefix: str, tensors: dict[str, torch.Tensor]) -> dict:
    """The sub-dict of ``tensors`` under ``prefix + '.'``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
