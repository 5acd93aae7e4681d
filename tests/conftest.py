"""Shared fixtures: the real data folder (skipped when absent), a two-process
torchrun launcher, and the GPU marker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the project; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def torchrun():
    """Run ``python -m torch.distributed.run`` with 2 local processes (gloo).

    ``torchrun(*args, timeout=...)``: ``args`` follow the launcher's options (a
    script and its arguments, or ``-m module ...``); one torch thread per process.
    Returns the completed process, after checking that it succeeded.
    """

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                "--master_port=0",
                "--rdzv-backend=c10d",
                "--rdzv-endpoint=127.0.0.1:0",
                *map(str, args),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
