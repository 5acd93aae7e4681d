"""A learning rate that blows training up ends in an error naming the epoch, and no
model file of NaN (or inf) weights is ever written."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest

from ganaug import GANAugmenter
from ganaug.cli import main as ganaug_main
from ganaug.io import write_png
from gancore import TrainingDivergedError
from ganomaly import GANomalyDetector

EPOCH = re.compile(r"diverged in epoch (\d+) of (\d+)")


@pytest.mark.parametrize("learning_rate", [1e6, 1e12])
def test_ganomaly_detector_divergence_names_the_epoch(learning_rate, tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 6))
    detector = GANomalyDetector(
        n_epochs=5, learning_rate=learning_rate, random_state=0, device="cpu"
    )
    with pytest.raises(TrainingDivergedError) as info:
        detector.fit(X)
    match = EPOCH.search(str(info.value))
    assert match and 1 <= int(match.group(1)) <= 5, info.value
    assert not hasattr(detector, "threshold_")  # nothing half-fitted to save


@pytest.mark.parametrize("loss", ["hinge", "bce"])
def test_ganaug_divergence_with_finite_losses_is_caught(loss):
    """Here every loss stays finite but batch-norm running variances overflow to
    inf: before the fix the sampler fitted "successfully" with inf weights."""
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8)).astype(np.uint8)
    labels = np.array([0] * 20 + [1] * 20)
    sampler = GANAugmenter(
        n_epochs=5,
        learning_rate=1e12,
        base_channels=4,
        latent_dim=4,
        random_state=0,
        device="cpu",
        loss=loss,
    )
    with pytest.raises(TrainingDivergedError) as info:
        sampler.fit_resample(images, labels)
    assert EPOCH.search(str(info.value)), info.value
    assert "non-finite" in str(info.value)


def test_ganaug_fit_cli_divergence_writes_no_model(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 1, 8, 8)).astype(np.uint8)
    write_png(images, tmp_path / "data", labels=["a"] * 12 + ["b"] * 12)
    model = tmp_path / "model.safetensors"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = ganaug_main(
            [
                "fit",
                str(tmp_path / "data"),
                "-o",
                str(model),
                "--epochs",
                "4",
                "--learning-rate",
                "1e12",
                "--base-channels",
                "4",
                "--latent-dim",
                "4",
                "--device",
                "cpu",
            ]
        )
    assert code == 2, err.getvalue()
    assert "ganaug fit: error: training diverged in epoch" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not model.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]
