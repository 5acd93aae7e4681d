"""Safe model files: round trip and every refusal message."""

from __future__ import annotations

import pickle
import struct

import pytest
import torch

import gancore.io as gio
from gancore import ModelFileError, atomic_write, load_model, save_model
from gancore.io import module_state, module_tensors


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


def test_zero_dim_tensors_round_trip(tmp_path):
    net = torch.nn.BatchNorm1d(3)  # num_batches_tracked is a 0-dim tensor
    save_model(tmp_path / "bn.safetensors", module_tensors("bn", net), {}, kind="t")
    tensors, _ = load_model(tmp_path / "bn.safetensors")
    assert tensors["bn.num_batches_tracked"].shape == ()


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent.safetensors")


def test_truncated_file(model_file):
    path, _ = model_file
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(path)
    path.write_bytes(data[:5])
    with pytest.raises(ModelFileError, match="too short"):
        load_model(path)


def test_bit_flip_in_the_weights_is_caught(model_file):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(path)


def test_bit_flip_in_the_header_is_caught(model_file):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_other_format_version(model_file, monkeypatch):
    path, net = model_file
    monkeypatch.setattr(gio, "FORMAT_VERSION", 99)
    save_model(path, module_tensors("net", net), {}, kind="test")
    monkeypatch.setattr(gio, "FORMAT_VERSION", 1)
    with pytest.raises(ModelFileError, match="format version 99.*reads version 1"):
        load_model(path)


def test_wrong_kind(model_file):
    path, _ = model_file
    with pytest.raises(ModelFileError, match="not a 'other'"):
        load_model(path, kind="other")


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelFileError, match="not a gankit model"):
        load_model(path)


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_payload_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelFileError, match="not a gankit model"):
        load_model(path)
    assert not marker.exists()
    # A torch.save zip file is refused the same way.
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match="not a gankit model"):
        load_model(path)


def test_header_that_is_not_json(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{}" + b"\0" * 8)
    with pytest.raises(ModelFileError, match="unreadable header"):
        load_model(path)


def test_config_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "m", {}, {"x": object()}, kind="test")
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "m", {}, {"x": float("nan")}, kind="test")


def test_atomic_write_keeps_the_previous_file_on_error(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("previous complete output")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "previous complete output"
    assert list(tmp_path.iterdir()) == [target]
