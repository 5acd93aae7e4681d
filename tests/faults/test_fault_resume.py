"""``ganomaly fit --checkpoint``: SIGKILL it, then ``--resume``: training ends at the
requested epoch and, on the CPU, scores equal those of an uninterrupted fit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ganomaly import GANomalyDetector
from ganomaly.datasets import make_transactions

pytestmark = pytest.mark.slow

N_EPOCHS = 12


def run_cli(tool: str, *args: str, timeout: float = 300, **kwargs):
    """Run ``python -m <tool> args`` in a subprocess on one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", tool, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def _fit_args(train: Path, model: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        "fit",
        str(train),
        "-o",
        str(model),
        "--label-col",
        "is_fraud",
        "--id-col",
        "transaction_id",
        "--n-epochs",
        str(N_EPOCHS),
        "--batch-size",
        "64",
        "--random-state",
        "3",
        "--checkpoint",
        str(checkpoint),
        "--quiet",
        *extra,
    ]


def _scores(model: Path, new: Path, out: Path) -> bytes:
    done = run_cli("ganomaly", "score", str(model), str(new), "-o", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def test_ganomaly_fit_killed_then_resumed_equals_uninterrupted(tmp_path):
    table = make_transactions(3000, random_state=4)
    train, new = tmp_path / "train.csv", tmp_path / "new.csv"
    table.iloc[:2500].to_csv(train, index=False)
    table.iloc[2500:].to_csv(new, index=False)
    reference = tmp_path / "reference.safetensors"
    done = run_cli("ganomaly", *_fit_args(train, reference, tmp_path / "ref.ckpt"))
    assert done.returncode == 0, done.stderr
    expected = _scores(reference, new, tmp_path / "reference.csv")

    rng = random.Random(1)
    n_trials, resumed_from = 2, []
    for trial in range(n_trials):
        model = tmp_path / f"model{trial}.safetensors"
        checkpoint = tmp_path / f"trial{trial}.ckpt"
        process = subprocess.Popen(
            [sys.executable, "-m", "ganomaly", *_fit_args(train, model, checkpoint)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not model.exists(), "a killed fit wrote its model"
        from gancore.train import load_checkpoint

        epoch = int(load_checkpoint(checkpoint)["epoch"])
        resumed_from.append(epoch)
        # Without --resume an existing checkpoint is refused, not overwritten.
        refused = run_cli("ganomaly", *_fit_args(train, model, checkpoint))
        assert refused.returncode == 2 and "--resume" in refused.stderr
        done = run_cli("ganomaly", *_fit_args(train, model, checkpoint, "--resume"))
        assert done.returncode == 0, done.stderr
        fitted = GANomalyDetector.load(model)
        assert fitted.n_epochs_ == N_EPOCHS and len(fitted.history_) == N_EPOCHS
        got = _scores(model, new, tmp_path / f"scores{trial}.csv")
        assert got == expected, f"trial {trial} (resumed after epoch {epoch})"
    print(f"\nganomaly fit resumed after epochs {resumed_from} of {N_EPOCHS}: equal")
    assert any(e < N_EPOCHS for e in resumed_from), "no kill landed mid-training"


def _ganaug_fit_args(data: Path, model: Path, checkpoint: Path, *extra: str):
    return [
        "fit",
        str(data),
        "-o",
        str(model),
        "--epochs",
        "30",
        "--base-channels",
        "8",
        "--latent-dim",
        "8",
        "--batch-size",
        "16",
        "--seed",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--checkpoint",
        str(checkpoint),
        *extra,
    ]


def _samples(model: Path, out: Path) -> np.ndarray:
    done = run_cli(
        "ganaug",
        "generate",
        str(model),
        "-n",
        "8",
        "-o",
        str(out),
        "--format",
        "npz",
        "--seed",
        "0",
    )
    assert done.returncode == 0, done.stderr
    found = list(out.parent.glob(out.name + "*")) + list(out.rglob("*.npz"))
    with np.load([p for p in found if p.suffix == ".npz"][0]) as archive:
        return archive["images"]


def test_ganaug_fit_killed_then_resumed_equals_uninterrupted(tmp_path):
    from ganaug.io import write_png
    from gancore.train import load_checkpoint

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (48, 1, 16, 16)).astype(np.uint8)
    write_png(images, tmp_path / "data", labels=["a"] * 32 + ["b"] * 16)
    data = tmp_path / "data"
    reference = tmp_path / "reference.safetensors"
    done = run_cli("ganaug", *_ganaug_fit_args(data, reference, tmp_path / "r.ckpt"))
    assert done.returncode == 0, done.stderr
    expected = _samples(reference, tmp_path / "reference-out")

    rng_kill = random.Random(2)
    resumed_from = []
    for trial in range(2):
        model = tmp_path / f"model{trial}.safetensors"
        checkpoint = tmp_path / f"trial{trial}.ckpt"
        args = _ganaug_fit_args(data, model, checkpoint)
        process = subprocess.Popen(
            [sys.executable, "-m", "ganaug", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng_kill.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        resumed_from.append(int(load_checkpoint(checkpoint)["epoch"]))
        if process.returncode == 0:
            continue  # finished before the kill landed
        assert not model.exists(), "a killed fit wrote its model"
        refused = run_cli("ganaug", *_ganaug_fit_args(data, model, checkpoint))
        assert refused.returncode == 2 and "--resume" in refused.stderr
        done = run_cli("ganaug", *_ganaug_fit_args(data, model, checkpoint, "--resume"))
        assert done.returncode == 0, done.stderr
        got = _samples(model, tmp_path / f"out{trial}")
        np.testing.assert_array_equal(got, expected)
    print(f"\nganaug fit resumed after epochs {resumed_from} of 30: equal samples")
    assert any(e < 30 for e in resumed_from), "no kill landed mid-training"
