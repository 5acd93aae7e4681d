"""Safe model files: round trip and every refusal message."""

from __future__ import annotations

import pickle
import struct

import pytest
import torch

import gancore.io as gio
from gancore import ModelFileError, load_arrays, load_model, save_model
from gancore.io import module_state, module_tensors

# Every refusal holds for both readers: torch tensors, and numpy without torch.
LOADERS = pytest.mark.parametrize("loader", [load_model, load_arrays])


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    net = torch.nn.Linear(3, 2)
    save_model(
        path, module_tensors("net", net), {"in": 3, "names": ["a", "b"]}, kind="test"
    )
    return path, net


def test_round_trip(model_file):
    path, net = model_file
    tensors, config = load_model(path, kind="test")
    assert config == {"in": 3, "names": ["a", "b"]}
    other = torch.nn.Linear(3, 2)
    other.load_state_dict(module_state("net", tensors))
    assert torch.equal(other.weight, net.weight) and torch.equal(other.bias, net.bias)
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_numpy_reader_matches_the_torch_reader(model_file, tmp_path):
    path, _ = model_file
    tensors, config = load_model(path, kind="test")
    arrays, same_config = load_arrays(path, kind="test")
    assert same_config == config and set(arrays) == set(tensors)
    for name, tensor in tensors.items():
        assert arrays[name].dtype.name == str(tensor.dtype).removeprefix("torch.")
        assert (arrays[name] == tensor.numpy()).all()
    # Every dtype hashes the same way from numpy as from torch.
    mixed = {
        "f64": torch.arange(3, dtype=torch.float64),
        "i64": torch.arange(4),
        "u8": torch.ones(2, 2, dtype=torch.uint8),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }
    save_model(tmp_path / "mixed.safetensors", mixed, {"a": 1}, kind="t")
    arrays, _ = load_arrays(tmp_path / "mixed.safetensors", kind="t")
    assert {k: v.shape for k, v in arrays.items()} == {
        k: tuple(v.shape) for k, v in mixed.items()
    }


def test_reading_model_files_into_numpy_does_not_import_torch(model_file):
    import subprocess
    import sys

    path, _ = model_file
    code = (
        "import sys; from gancore.io import load_arrays; "
        f"arrays, config = load_arrays({str(path)!r}, kind='test'); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(config['in'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_zero_dim_tensors_round_trip(tmp_path):
    net = torch.nn.BatchNorm1d(3)  # num_batches_tracked is a 0-dim tensor
    save_model(tmp_path / "bn.safetensors", module_tensors("bn", net), {}, kind="t")
    tensors, _ = load_model(tmp_path / "bn.safetensors")
    assert tensors["bn.num_batches_tracked"].shape == ()


@LOADERS
def test_missing_file(loader, tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        loader(tmp_path / "absent.safetensors")


@LOADERS
def test_truncated_file(loader, model_file):
    path, _ = model_file
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(ModelFileError, match="truncated"):
        loader(path)
    path.write_bytes(data[:5])
    with pytest.raises(ModelFileError, match="too short"):
        loader(path)


@LOADERS
def test_bit_flip_in_the_weights_is_caught(loader, model_file):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        loader(path)


@LOADERS
def test_bit_flip_in_the_header_is_caught(loader, model_file):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        loader(path)


@LOADERS
def test_other_format_version(loader, model_file, monkeypatch):
    path, net = model_file
    monkeypatch.setattr(gio, "FORMAT_VERSION", 99)
    save_model(path, module_tensors("net", net), {}, kind="test")
    monkeypatch.setattr(gio, "FORMAT_VERSION", 1)
    with pytest.raises(ModelFileError, match="format version 99.*reads version 1"):
        loader(path)


@LOADERS
def test_wrong_kind(loader, model_file):
    path, _ = model_file
    with pytest.raises(ModelFileError, match="not a 'other'"):
        loader(path, kind="other")


@LOADERS
def test_foreign_safetensors_file(loader, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelFileError, match="not a gankit model"):
        loader(path)


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@LOADERS
def test_pickle_payload_is_refused_and_never_executed(loader, tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelFileError, match="not a gankit model"):
        loader(path)
    assert not marker.exists()
    # A torch.save zip file is refused the same way.
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match="not a gankit model"):
        loader(path)


@LOADERS
def test_header_that_is_not_json(loader, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{}" + b"\0" * 8)
    with pytest.raises(ModelFileError, match="unreadable header"):
        loader(path)


def test_config_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "m", {}, {"x": object()}, kind="test")
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "m", {}, {"x": float("nan")}, kind="test")
