"""The ``ganomaly`` console command, started before numpy is imported.

``ganomaly score`` runs its networks in numpy on one BLAS thread (small products,
see :func:`ganomaly._scorer._one_blas_thread`), while its parse and scoring threads
keep every core busy.  OpenBLAS's own worker thread, started when numpy is
imported, then has nothing to do but wait, and it waits spinning, which costs CPU
time the other threads could use (measured in benchmarks/RESULTS.md, "OpenBLAS's
idle thread").  So, for ``score`` only, OpenBLAS is told to start no threads
(``OPENBLAS_NUM_THREADS=1``, unless already set) before numpy is imported.  Library
use (``import ganomaly``) leaves the environment alone.
"""

from __future__ import annotations

import os
import sys

_COMMANDS = ("fit", "score", "evaluate", "export", "demo")


def main(argv: list[str] | None = None) -> int:
    """Run the ``ganomaly`` command line (see :func:`ganomaly.cli.main`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    # The command is the first of its names (options such as --threads N may
    # come before it).
    command = next((a for a in args if a in _COMMANDS), None)
    if command == "score" and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main as cli_main

    return cli_main(args)
