"""The ganaug command line, called as ``main([...])`` on files in tmp_path."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image

from ganaug.cli import main
from ganaug.io import write_png

FAST = ["--epochs", "2", "--base-channels", "4", "--latent-dim", "8", "--device", "cpu"]


def _images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, 1, size, size)).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted by the CLI on PNGs in class sub-folders."""
    root = tmp_path_factory.mktemp("cli")
    write_png(_images(16), root / "data", labels=["normal"] * 10 + ["rare"] * 6)
    model = root / "model.safetensors"
    assert main(["fit", str(root / "data"), "-o", str(model), *FAST]) == 0
    return root, model


def test_fit_writes_model_grid_and_loss_curve(fitted, capsys):
    root, model = fitted
    assert model.is_file()
    for suffix in ("_samples.png", "_losses.png", "_memorization.png"):
        with Image.open(root / f"model{suffix}") as picture:
            assert picture.size[0] > 100


@pytest.mark.parametrize("fmt", ["png", "dicom", "nifti", "npz"])
def test_generate_every_format(fitted, tmp_path, fmt, capsys):
    _, model = fitted
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            str(model),
            "-n",
            "5",
            "--class",
            "rare",
            "-o",
            str(out),
            "--format",
            fmt,
            "--seed",
            "1",
        ]
    )
    assert code == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    expected = {"png": 5, "dicom": 5, "nifti": 1, "npz": 1}[fmt]
    assert len(files) == expected
    if fmt == "dicom":
        ds = pydicom.dcmread(files[0])
        assert (
            ds.SyntheticData == "YES"
            and "model.safetensors" in ds.DerivationDescription
        )
    if fmt == "npz":
        with np.load(files[0]) as archive:
            assert archive["images"].shape == (5, 1, 16, 16)
            assert set(archive["labels"].tolist()) == {"rare"}


def test_rgb_fit_reports_quality_and_generate_keeps_colour(tmp_path, capsys):
    """RGB pictures give an RGB model and RGB output; fit reports the quality
    metrics of its synthetic images on the held-out images, beside real vs. real."""
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 255, (24, 3, 16, 16)).astype(np.uint8)
    pictures[12:, 0] //= 4  # the second class has little red
    write_png(pictures, tmp_path / "data", labels=["red"] * 12 + ["blue"] * 12)
    model = tmp_path / "rgb.safetensors"
    argv = ["fit", str(tmp_path / "data"), "-o", str(model), *FAST]
    assert main([*argv, "--holdout-fraction", "0.25", "--architecture", "resnet"]) == 0
    printed = capsys.readouterr().out
    assert "real vs. real" in printed and "coverage" in printed
    assert "all | 6/" in printed  # 3 held-out images of each class
    out = tmp_path / "out"
    assert main(["generate", str(model), "-n", "3", "-o", str(out), "--seed", "0"]) == 0
    for path in out.rglob("*.png"):
        with Image.open(path) as picture:
            assert picture.mode == "RGB" and picture.size == (16, 16)
    npz = tmp_path / "s.npz"
    assert (
        main(["generate", str(model), "-n", "2", "-o", str(npz), "--format", "npz"])
        == 0
    )
    with np.load(npz) as archive:
        assert archive["images"].shape == (2, 3, 16, 16)


def test_fit_defaults_are_the_samplers(fitted):
    """Options left out of fit take GANAugmenter's own defaults."""
    from ganaug import GANAugmenter

    _, model = fitted
    params = GANAugmenter.load(model).get_params()
    defaults = GANAugmenter().get_params()
    for name in (
        "architecture",
        "loss",
        "diffaugment",
        "r1_gamma",
        "filter_synthetic",
        "batch_size",
        "learning_rate",
    ):
        assert params[name] == defaults[name], name


def test_fit_training_options_reach_the_model(tmp_path):
    """--n-epochs auto, --diffaugment none, --r1-gamma and --filter are the
    sampler's n_epochs="auto", diffaugment=None, r1_gamma and filter_synthetic."""
    from ganaug import GANAugmenter

    write_png(_images(12, size=8), tmp_path / "data", labels=["a"] * 8 + ["b"] * 4)
    model = tmp_path / "m.safetensors"
    argv = ["fit", str(tmp_path / "data"), "-o", str(model), *FAST]
    argv += ["--n-epochs", "auto", "--diffaugment", "none", "--r1-gamma", "0.5"]
    assert main([*argv, "--filter", "--holdout-fraction", "0"]) == 0
    loaded = GANAugmenter.load(model)
    params = loaded.get_params()
    assert params["n_epochs"] == "auto"
    assert len(loaded.history_) == 400  # the budget's cap for 12 images of 8x8
    assert params["diffaugment"] is None and params["r1_gamma"] == 0.5
    assert params["filter_synthetic"] and loaded.judge_ is not None


def test_generate_draws_fresh_noise_without_random_state(fitted, tmp_path):
    """The model keeps the fit's --random-state (0); generate still takes fresh
    entropy unless given one."""
    _, model = fitted

    def generate(out, *seed):
        argv = ["generate", str(model), "-n", "4", "-o", str(tmp_path / out)]
        assert main([*argv, "--format", "npz", *seed]) == 0
        with np.load(tmp_path / out / "synthetic.npz") as archive:
            return archive["images"]

    assert not np.array_equal(generate("a"), generate("b"))
    seeded = generate("c", "--random-state", "3")
    np.testing.assert_array_equal(seeded, generate("d", "--random-state", "3"))


def test_generate_prints_memorization_report(fitted, tmp_path, capsys):
    root, model = fitted
    out = tmp_path / "synthetic"
    code = main(
        [
            "generate",
            str(model),
            "-n",
            "8",
            "-o",
            str(out),
            "--data",
            str(root / "data"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Memorisation report" in printed and "flagged" in printed
    assert (tmp_path / "synthetic_memorization.png").is_file()
    assert not list(out.rglob("memorization*"))  # never among the synthetic images


def test_fit_from_npz_and_labels_csv(tmp_path):
    np.savez(tmp_path / "d.npz", images=_images(12, 12)[:, 0], labels=[0] * 8 + [1] * 4)
    assert (
        main(["fit", str(tmp_path / "d.npz"), "-o", str(tmp_path / "a.st"), *FAST]) == 0
    )
    folder = tmp_path / "flat"
    folder.mkdir()
    for index, image in enumerate(_images(6, 12)):
        Image.fromarray(image[0]).save(folder / f"i{index}.png")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "file,label\n" + "".join(f"i{i}.png,{'ab'[i % 2]}\n" for i in range(6))
    )
    code = main(
        [
            "fit",
            str(folder),
            "--labels",
            str(csv),
            "-o",
            str(tmp_path / "b.st"),
            "--image-size",
            "8",
            *FAST,
        ]
    )
    assert code == 0


def _expect_error(argv, capsys, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_inputs_exit_non_zero_with_a_message(tmp_path, capsys):
    out = str(tmp_path / "m.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(["fit", str(empty), "-o", out, *FAST], capsys, "no images")

    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    (mixed / "b").mkdir()
    for index in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a" / f"{index}.png")
        Image.fromarray(np.zeros((12, 8), np.uint8)).save(mixed / "b" / f"{index}.png")
    _expect_error(["fit", str(mixed), "-o", out, *FAST], capsys, "--image-size")

    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\na/0.png,x\nnot_there.png,y\n")
    _expect_error(
        ["fit", str(mixed), "--labels", str(csv), "-o", out, *FAST],
        capsys,
        "not_there.png",
    )

    single = tmp_path / "single" / "only"
    single.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(single / "0.png")
    _expect_error(["fit", str(single.parent), "-o", out, *FAST], capsys, "1 image")

    lonely = tmp_path / "lonely"
    shutil.copytree(mixed / "a", lonely / "many")
    (lonely / "one").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(lonely / "one" / "0.png")
    _expect_error(["fit", str(lonely), "-o", out, *FAST], capsys, "one", "single image")

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(mixed / "a", unlabelled)
    _expect_error(["fit", str(unlabelled), "-o", out, *FAST], capsys, "no labels")

    _expect_error(["fit", str(tmp_path / "nope"), "-o", out], capsys, "nope")
    for epochs in ("many", "0"):
        _expect_error(
            ["fit", str(mixed), "-o", out, "--n-epochs", epochs], capsys, "'auto'"
        )
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 20)
    _expect_error(
        ["generate", str(tmp_path / "bad.safetensors"), "-n", "2", "-o", str(tmp_path)],
        capsys,
        "bad.safetensors",
    )


def test_generate_unknown_class(fitted, tmp_path, capsys):
    _, model = fitted
    _expect_error(
        ["generate", str(model), "-n", "2", "--class", "cat", "-o", str(tmp_path)],
        capsys,
        "cat",
        "normal, rare",
    )


def test_demo_runs_offline(tmp_path, capsys):
    code = main(["demo", "--output-dir", str(tmp_path / "demo"), "--epochs", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "RandomOverSampler" in printed and "gain" in printed
    assert "real vs. real" in printed
    assert (tmp_path / "demo" / "samples.png").is_file()
    assert (tmp_path / "demo" / "losses.png").is_file()


def test_python_dash_m(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ganaug",
            "generate",
            str(tmp_path / "x"),
            "-n",
            "1",
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "no such model file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["generate", "translate"])
def test_device_is_a_training_option_only(command, capsys):
    # generate and translate run on the CPU: an option that did nothing is refused.
    argv = [command, "model.safetensors", "-o", "out", "--device", "cuda"]
    argv[2:2] = ["images", "--to", "normal"] if command == "translate" else ["-n", "1"]
    assert main(argv) == 2
    assert "unrecognized arguments: --device cuda" in capsys.readouterr().err
