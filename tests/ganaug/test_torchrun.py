"""``torchrun -m ganaug fit``: one model trained across 2 gloo processes on the CPU."""

from __future__ import annotations

import numpy as np

from ganaug import GANAugmenter
from ganaug.io import write_png


def test_torchrun_two_processes_fit_one_model(tmp_path, torchrun):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 1, 16, 16)).astype(np.uint8)
    write_png(images, tmp_path / "data", labels=["normal"] * 10 + ["rare"] * 6)
    model = tmp_path / "model.safetensors"
    result = torchrun(
        "-m",
        "ganaug",
        "fit",
        str(tmp_path / "data"),
        "-o",
        str(model),
        "--epochs",
        "2",
        "--base-channels",
        "4",
        "--latent-dim",
        "8",
        "--device",
        "cpu",
        "--threads",
        "1",
    )
    # Only rank 0 reports and writes the model, the sample grid and the loss curve.
    assert result.stdout.count("model written to") == 1, result.stdout
    assert result.stderr.count("memorisation audit") == 1
    # rank 0 computes the quality metrics alone, without waiting for rank 1
    assert result.stdout.count("real vs. real") == 1, result.stdout
    sampler = GANAugmenter.load(model)
    assert [r["epoch"] for r in sampler.history_] == [1, 2]
    synthetic, labels = sampler.sample(4, y=np.array(["rare"] * 4), random_state=0)
    assert synthetic.shape[0] == 4 and set(labels.tolist()) == {"rare"}
