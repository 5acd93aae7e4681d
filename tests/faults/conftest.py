"""Fixtures for the fault tests: one tiny ganomaly model per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganomaly.cli import main as ganomaly_main
from ganomaly.datasets import make_transactions

# The columns a transactions file has, in order (make_transactions).
ID_COL = "transaction_id"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: the test networks are tiny and the CI machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A GANomaly model fitted by ``ganomaly fit`` on 300 rows for 2 epochs."""
    folder = tmp_path_factory.mktemp("faults-model")
    make_transactions(300, random_state=0).to_csv(folder / "train.csv", index=False)
    model = folder / "model.safetensors"
    code = ganomaly_main(
        [
            "fit",
            str(folder / "train.csv"),
            "-o",
            str(model),
            "--label-col",
            "is_fraud",
            "--id-col",
            ID_COL,
            "--n-epochs",
            "2",
            "--batch-size",
            "64",
            "--quiet",
        ]
    )
    assert code == 0
    return model
