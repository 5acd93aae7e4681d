"""Every thread setting of ganomaly, in one place.

* :func:`quiet_openblas`: ``ganomaly score`` runs its networks in numpy on one BLAS
  thread (small products) while its parse and scoring threads keep every core busy.
  OpenBLAS's own worker thread, started when numpy is imported, then has nothing to
  do but wait, and it waits spinning (benchmarks/RESULTS.md, "OpenBLAS's idle
  thread").  So, for ``score`` only, OpenBLAS is told to start no threads
  (``OPENBLAS_NUM_THREADS=1``, unless already set) before numpy is imported.
* :func:`one_blas_thread`: the context in which the numpy scorer runs its products.
* :func:`set_threads`: a command's ``--threads`` (torch's threads, if torch is in
  use, and numpy's BLAS).

This module imports neither numpy nor torch at import time: the launcher calls
:func:`quiet_openblas` before numpy is imported.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

__all__ = ["one_blas_thread", "quiet_openblas", "set_threads"]

_CONTROLLER: Any = None


def quiet_openblas() -> None:
    """Ask OpenBLAS to start no threads of its own, if numpy is not loaded yet and
    the environment does not say otherwise."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context in which numpy's BLAS runs on one thread.

    The scorer's products are small: threads cost more than they bring, and on a
    busy machine OpenBLAS's spinning threads made the networks ten times slower
    (benchmarks/RESULTS.md).
    """
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        return _CONTROLLER.limit(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()


def set_threads(threads: int, *, torch_too: bool) -> None:
    """``threads`` for numpy's BLAS, and for torch when ``torch_too`` or torch is
    already imported (importing it only to set threads costs seconds)."""
    threads = max(1, int(threads))
    if torch_too or "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        pass
