"""Damaged and hostile model files, end to end through both command lines.

gancore's own tests cover ``load_model``; these check what a user sees: ``ganomaly
score`` and ``ganaug generate`` given a truncated, bit-flipped, wrong-version or
pickled "model" exit with status 2 and a one-line message naming the file, write no
output, and never run the pickle's payload.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ganaug.cli import main as ganaug_main
from ganaug.io import write_png
from ganomaly.cli import main as ganomaly_main
from ganomaly.datasets import make_transactions


class _Payload:
    """Unpickling this creates a folder: the side effect that must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def ganaug_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults-ganaug")
    images = np.random.default_rng(0).integers(0, 255, (12, 1, 8, 8)).astype("uint8")
    write_png(images, root / "data", labels=["a"] * 6 + ["b"] * 6)
    model = root / "model.safetensors"
    fast = ["--epochs", "1", "--base-channels", "4", "--latent-dim", "4"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = ganaug_main(
            ["fit", str(root / "data"), "-o", str(model), "--device", "cpu", *fast]
        )
    assert code == 0
    return model


@pytest.fixture(scope="module")
def new_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults-new") / "new.csv"
    make_transactions(50, random_state=3).to_csv(path, index=False)
    return path


def _truncated(source: Path, target: Path) -> str:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])
    return "truncated"


def _bit_flipped(source: Path, target: Path) -> str:
    data = bytearray(source.read_bytes())
    data[-7] ^= 0x10  # inside the last tensor's bytes
    target.write_bytes(bytes(data))
    return "checksum"


def _wrong_version(source: Path, target: Path) -> str:
    with safe_open(str(source), "pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    metadata["gankit.format_version"] = "99"
    save_file(tensors, str(target), metadata=metadata)
    return "format version 99"


def _pickled(marker: Path):
    def make(source: Path, target: Path) -> str:
        target.write_bytes(pickle.dumps({"model": _Payload(marker)}))
        return "not a gankit model file"

    return make


def _torch_pickled(marker: Path):
    def make(source: Path, target: Path) -> str:
        torch.save({"model": _Payload(marker)}, target)
        return "not a gankit model file"

    return make


DAMAGES = ["truncated", "bit_flipped", "wrong_version", "pickle", "torch_pickle"]


def _damage(name: str, source: Path, target: Path, marker: Path) -> str:
    makers = {
        "truncated": _truncated,
        "bit_flipped": _bit_flipped,
        "wrong_version": _wrong_version,
        "pickle": _pickled(marker),
        "torch_pickle": _torch_pickled(marker),
    }
    return makers[name](source, target)


def _run(main, argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("damage", DAMAGES)
def test_ganomaly_score_refuses_damaged_model(tiny_model, new_csv, tmp_path, damage):
    marker = tmp_path / "PAYLOAD-RAN"
    bad = tmp_path / "model.safetensors"
    expected = _damage(damage, tiny_model, bad, marker)
    out = tmp_path / "scores.csv"
    code, err = _run(
        ganomaly_main, ["score", str(bad), str(new_csv), "-o", str(out), "--quiet"]
    )
    assert code == 2, err
    assert err.startswith("ganomaly score: error: ") and str(bad) in err, err
    assert expected in err, err
    assert "Traceback" not in err
    assert not out.exists()
    assert not marker.exists(), "the pickle payload was executed"


@pytest.mark.parametrize("damage", DAMAGES)
def test_ganomaly_evaluate_refuses_damaged_model(tiny_model, new_csv, tmp_path, damage):
    marker = tmp_path / "PAYLOAD-RAN"
    bad = tmp_path / "model.safetensors"
    expected = _damage(damage, tiny_model, bad, marker)
    code, err = _run(
        ganomaly_main,
        ["evaluate", str(bad), str(new_csv), "--label-col", "is_fraud"],
    )
    assert code == 2 and expected in err and str(bad) in err, err
    assert not marker.exists(), "the pickle payload was executed"


@pytest.mark.parametrize("damage", DAMAGES)
def test_ganaug_generate_refuses_damaged_model(ganaug_model, tmp_path, damage):
    marker = tmp_path / "PAYLOAD-RAN"
    bad = tmp_path / "model.safetensors"
    expected = _damage(damage, ganaug_model, bad, marker)
    out = tmp_path / "synthetic"
    code, err = _run(
        ganaug_main, ["generate", str(bad), "-n", "2", "-o", str(out), "--seed", "0"]
    )
    assert code == 2, err
    assert err.startswith("ganaug generate: error: ") and str(bad) in err, err
    assert expected in err, err
    assert not out.exists() or not any(out.iterdir())
    assert not marker.exists(), "the pickle payload was executed"


def _header_span(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return 8, 8 + int.from_bytes(data[:8], "little")


def test_every_header_bit_flip_is_refused_or_harmless(tiny_model, new_csv, tmp_path):
    """A flip in the JSON header (configuration, threshold...) must not change scores
    silently: either the file is refused, or it scores exactly as the intact one."""
    reference = tmp_path / "reference.csv"
    code, err = _run(
        ganomaly_main,
        ["score", str(tiny_model), str(new_csv), "-o", str(reference), "--quiet"],
    )
    assert code == 0, err
    expected = reference.read_bytes()
    start, end = _header_span(tiny_model)
    data = tiny_model.read_bytes()
    header = json.loads(data[start:end])
    config = header["__metadata__"]["gankit.config"]
    # Flip one bit in each digit of the stored configuration (the threshold, the
    # scaling statistics...): a digit stays a digit, the JSON stays valid.
    text = data[start:end].decode()
    config_at = text.index(json.dumps(config)[1:20])
    positions = [
        start + config_at + i
        for i, ch in enumerate(text[config_at : config_at + len(config)])
        if ch in "123456789"
    ][::7][:25]
    assert positions
    silent = []
    for index, position in enumerate(positions):
        flipped = bytearray(data)
        flipped[position] ^= 0x01  # '1' <-> '0', '2' <-> '3', ...
        bad = tmp_path / f"flip{index}.safetensors"
        bad.write_bytes(bytes(flipped))
        out = tmp_path / f"out{index}.csv"
        code, err = _run(
            ganomaly_main, ["score", str(bad), str(new_csv), "-o", str(out), "--quiet"]
        )
        assert "Traceback" not in err
        if code == 0 and out.read_bytes() != expected:
            silent.append(position)
        elif code != 0:
            assert code == 2 and str(bad) in err, err
    assert not silent, f"{len(silent)} of {len(positions)} flips changed scores"


def _raw_safetensors(path: Path, header: bytes, data: bytes = b"\0" * 4) -> None:
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)


HOSTILE_HEADERS = {
    "nested_lists": b"[" * 100_000 + b"]" * 100_000,
    "nested_maps": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "list_metadata": json.dumps({"__metadata__": ["gankit"]}).encode(),
    "number_entry": json.dumps({"w": 5}).encode(),
    "no_offsets": json.dumps({"w": {"dtype": "F32", "shape": [1]}}).encode(),
    "text_offsets": json.dumps(
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": "x"}}
    ).encode(),
    "huge_shape": json.dumps(
        {"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 4]}}
    ).encode(),
    "negative_offsets": json.dumps(
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
@pytest.mark.parametrize("command", ["score", "evaluate", "score_cuda_path"])
def test_hostile_headers_are_one_line_refusals(new_csv, tmp_path, name, command):
    bad = tmp_path / "model.safetensors"
    _raw_safetensors(bad, HOSTILE_HEADERS[name])
    args = {
        "score": ["score", str(bad), str(new_csv), "-o", str(tmp_path / "o.csv")],
        "evaluate": ["evaluate", str(bad), str(new_csv), "--label-col", "is_fraud"],
        # The torch loader (GANomalyDetector.load, as --device cuda uses it).
        "score_cuda_path": None,
    }[command]
    if args is None:
        from gancore import ModelFileError
        from ganomaly import GANomalyDetector

        with pytest.raises(ModelFileError, match="model"):
            GANomalyDetector.load(bad)
        return
    code, err = _run(ganomaly_main, args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and str(bad) in err, err


def test_configured_sizes_are_checked_against_the_weights_first(tiny_model, tmp_path):
    """hidden_dims of 10**9 in the configuration would ask for terabytes if the
    networks were built before the stored weights' shapes were compared."""
    import resource

    from gancore import ModelFileError, load_model, save_model
    from ganomaly import GANomalyDetector

    tensors, config = load_model(tiny_model)
    config["hidden_dims"] = [10**9, 10**9]
    config["latent_dim"] = 10**9
    bad = tmp_path / "huge.safetensors"
    save_model(bad, tensors, config, kind="ganomaly.GANomalyDetector")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelFileError, match="has shape .* configuration says"):
        GANomalyDetector.load(bad)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000
    message = str(pytest.raises(ModelFileError, GANomalyDetector.load, bad).value)
    assert "\n" not in message
    out = str(tmp_path / "o.csv")
    code, err = _run(ganomaly_main, ["score", str(bad), str(tiny_model), "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
