"""Fixtures for the ganaug tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run the tiny test networks on one thread, restoring the setting after.

    On a small shared CI machine two OpenMP threads that compete with other
    processes spin-wait and make these networks up to 100x slower; one thread
    is always fast for nets this small.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
