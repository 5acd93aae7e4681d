"""``ganaug fit --method translate`` and ``ganaug translate``."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from ganaug import GANAugmenter, GANTranslator
from ganaug.cli import main
from ganaug.io import write_png

FAST = ["--n-epochs", "2", "--base-channels", "4", "--device", "cpu"]


def _images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, 1, size, size)).astype(np.uint8)


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    """A translator fitted by the CLI on PNGs in class sub-folders."""
    root = tmp_path_factory.mktemp("translate")
    write_png(_images(16), root / "data", labels=["normal"] * 10 + ["rare"] * 6)
    model = root / "model.safetensors"
    code = main(
        ["fit", str(root / "data"), "-o", str(model), "--method", "translate", *FAST]
    )
    assert code == 0
    return root, model


def test_fit_translate_writes_a_translator_with_its_own_defaults(translator, capsys):
    root, model = translator
    loaded = GANTranslator.load(model)
    params, defaults = loaded.get_params(), GANTranslator().get_params()
    for name in ("batch_size", "learning_rate", "loss", "diffaugment"):
        assert params[name] == defaults[name], name
    assert params["n_epochs"] == 2 and params["base_channels"] == 4
    for suffix in ("_samples.png", "_losses.png", "_memorization.png"):
        with Image.open(root / f"model{suffix}") as picture:
            assert picture.size[0] > 100


def test_fit_translate_reports_source_similarity(tmp_path, capsys):
    write_png(_images(20, size=8), tmp_path / "d", labels=["a"] * 14 + ["b"] * 6)
    model = tmp_path / "m.safetensors"
    argv = ["fit", str(tmp_path / "d"), "-o", str(model), "--method", "translate"]
    assert main([*argv, *FAST, "--holdout-fraction", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "median correlation with their own source" in out


@pytest.mark.parametrize("fmt", ["png", "dicom", "npz"])
def test_translate_writes_marked_images_and_a_grid(translator, tmp_path, fmt, capsys):
    root, model = translator
    out = tmp_path / "out"
    sources = root / "data" / "normal"
    argv = ["translate", str(model), str(sources), "--to", "rare", "-o", str(out)]
    assert main([*argv, "--format", fmt]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == {"png": 10, "dicom": 10, "npz": 1}[fmt]
    for path in files:  # nothing of the source names reaches the outputs
        assert "normal" not in path.name
    if fmt == "dicom":
        ds = pydicom.dcmread(files[0])
        assert ds.SyntheticData == "YES" and ds.ImageComments == "SYNTHETIC; class rare"
        assert "translated" in ds.DerivationDescription
        assert ds.PatientID == "SYNTHETIC" and ds.StudyDate == ""
    if fmt == "npz":
        with np.load(files[0]) as archive:
            assert archive["images"].shape == (10, 1, 16, 16)
    with Image.open(tmp_path / "out_translation.png") as picture:
        assert picture.size[0] > 100
    printed = capsys.readouterr().out
    assert "translated 10 images to rare" in printed
    assert "median correlation of a translated image with its own source" in printed


def test_translate_refusals(translator, tmp_path, capsys):
    root, model = translator
    data = root / "data" / "normal"
    out = str(tmp_path / "o")
    assert main(["translate", str(model), str(data), "--to", "other", "-o", out]) == 2
    assert "is not a class of the model" in capsys.readouterr().err
    # Into the folder of real images it reads: refused, nothing written.
    inside = str(data / "out")
    assert main(["translate", str(model), str(data), "--to", "rare", "-o", inside]) == 2
    assert not (data / "out").exists()
    assert "inside the folder of real images" in capsys.readouterr().err
    # A GAN model is not a translator, and the other way round.
    gan = tmp_path / "gan.safetensors"
    sampler = GANAugmenter(n_epochs=1, base_channels=4, device="cpu", random_state=0)
    sampler.fit_resample(_images(8, size=8), np.repeat(["a", "b"], 4))
    sampler.save(gan)
    assert main(["translate", str(gan), str(data), "--to", "a", "-o", out]) == 2
    assert "is a GAN" in capsys.readouterr().err
    assert main(["generate", str(model), "-n", "2", "-o", out]) == 2
    assert "is a translator" in capsys.readouterr().err
    # Options of the noise GAN only.
    argv = ["fit", str(root / "data"), "-o", str(tmp_path / "m"), "--method"]
    assert main([*argv, "translate", "--latent-dim", "3"]) == 2
    assert "--latent-dim applies to --method gan only" in capsys.readouterr().err
    assert main([*argv, "translate", "--loss", "wgan-gp"]) == 2


def test_translate_images_of_another_size_are_resized(translator, tmp_path):
    _, model = translator
    write_png(_images(3, size=24), tmp_path / "big")
    out = tmp_path / "o"
    code = main(
        ["translate", str(model), str(tmp_path / "big"), "--to", "rare", "-o", str(out)]
    )
    assert code == 0
    files = sorted(out.rglob("*.png"))
    with Image.open(files[0]) as picture:
        assert picture.size == (16, 16)
