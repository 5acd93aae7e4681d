"""ganaug export: the ONNX generator gives ``sample``'s images for the same noise."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from ganaug import GANAugmenter
from ganaug.cli import main
from ganaug.export import SYNTHETIC_CAVEAT, export_generator
from gancore import make_rngs

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _sample_and_noise(sampler, labels, seed: int):
    """``sample``'s images for ``labels`` and the noise it drew them from (the
    first ``len(labels)`` normal draws of its stream: ``sample`` draws 256 at a
    time)."""
    assert len(labels) <= 256
    images, _ = sampler.sample(len(labels), y=labels, random_state=seed)
    noise = torch.randn(
        len(labels), sampler.latent_dim, generator=make_rngs(seed).torch_cpu
    )
    codes = np.searchsorted(sampler.classes_, labels).astype(np.int64)
    return images, noise.numpy(), codes


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A conditional DCGAN sampler on float images, saved, and exported by the CLI."""
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    X = rng.random((24, 1, 8, 8), dtype=np.float32)
    y = np.repeat(["benign", "malignant"], [16, 8])
    sampler = GANAugmenter(
        n_epochs=1, base_channels=4, latent_dim=16, random_state=0, device="cpu"
    )
    sampler.fit_resample(X, y)
    model = folder / "model.safetensors"
    sampler.save(model)
    onnx_path = folder / "generator.onnx"
    assert main(["export", str(model), "-o", str(onnx_path)]) == 0
    return GANAugmenter.load(model), model, onnx_path


def test_generator_matches_sample_for_the_same_noise(exported):
    sampler, _, onnx_path = exported
    labels = np.array(["benign", "malignant"] * 20)
    images, noise, codes = _sample_and_noise(sampler, labels, seed=7)
    session = _session(str(onnx_path))
    [generated] = session.run(None, {"noise": noise, "class": codes})
    assert generated.shape == images.shape == (40, 1, 8, 8)
    assert generated.dtype == images.dtype
    np.testing.assert_allclose(generated, images, rtol=0, atol=1e-4)
    one = session.run(None, {"noise": noise[3:4], "class": codes[3:4]})[0]
    np.testing.assert_array_equal(one[0], generated[3])  # batch-independent


def test_metadata_says_what_the_file_is(exported):
    import onnx

    sampler, _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gankit.synthetic_data"] == SYNTHETIC_CAVEAT
    assert "SYNTHETIC" in model.doc_string and "SYNTHETIC" in SYNTHETIC_CAVEAT
    assert meta["gankit.kind"] == "ganaug.GANAugmenter"
    assert meta["gankit.format_version"] == "1"
    assert meta["gankit.version"] and meta["gankit.onnx_interface"] == "1"
    assert json.loads(meta["gankit.classes"]) == ["benign", "malignant"]
    assert json.loads(meta["gankit.data_range"]) == list(sampler.data_range_)
    assert meta["gankit.dtype"] == "float32" and meta["gankit.latent_dim"] == "16"
    assert [i.name for i in model.graph.input] == ["noise", "class"]
    with pytest.raises(Exception, match="out of"):  # an unknown class code
        _session(str(onnx_path)).run(
            None, {"noise": np.zeros((1, 16), np.float32), "class": np.array([2])}
        )


def test_integer_images_in_their_layout():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (24, 8, 8)).astype(np.uint8)  # (n, H, W)
    y = np.repeat([0, 1], 12)
    sampler = GANAugmenter(
        architecture="mlp", n_epochs=1, latent_dim=8, random_state=0, device="cpu"
    )
    sampler.fit_resample(X, y)
    labels = np.repeat([0, 1], 30)
    images, noise, codes = _sample_and_noise(sampler, labels, seed=3)
    [generated] = _session(export_generator(sampler)).run(
        None, {"noise": noise, "class": codes}
    )
    assert generated.shape == images.shape == (60, 8, 8)
    assert generated.dtype == images.dtype == np.uint8
    # Rounded as sample rounds; a value within 1e-4 of a half may round apart.
    difference = np.abs(generated.astype(int) - images.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_unconditional_sampler_has_one_generator_per_class():
    rng = np.random.default_rng(2)
    X = rng.random((22, 1, 8, 8), dtype=np.float32)
    y = np.repeat([0, 1], [16, 6])  # only the minority class gets a generator
    sampler = GANAugmenter(
        conditional=False, rebalance="synthetic", augment_ratio=0.0, n_epochs=1,
        base_channels=4, latent_dim=8, random_state=0, device="cpu",
    )  # fmt: skip
    sampler.fit_resample(X, y)
    session = _session(export_generator(sampler))
    images, noise, codes = _sample_and_noise(sampler, np.ones(10, int), seed=5)
    generated = session.run(None, {"noise": noise, "class": codes})[0]
    np.testing.assert_allclose(generated, images, rtol=0, atol=1e-4)
    with pytest.raises(Exception, match="index"):  # class 0 has no generator
        session.run(None, {"noise": noise[:1], "class": np.array([0])})


def test_export_command_refuses_and_explains(exported, tmp_path, capsys, monkeypatch):
    _, model, _ = exported
    assert main(["export", str(model), "-o", str(model)]) == 2
    assert "would overwrite the model file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # the extra is missing
    assert main(["export", str(model), "-o", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'gankit[onnx]'" in err
    assert not (tmp_path / "g.onnx").exists()
