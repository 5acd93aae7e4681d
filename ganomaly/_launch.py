"""The ``ganomaly`` console command, started before numpy is imported, so that
``score`` can keep OpenBLAS from starting threads (:func:`ganomaly.threads.
quiet_openblas`).  Library use (``import ganomaly``) leaves the environment alone.
"""

from __future__ import annotations

import sys

_COMMANDS = ("fit", "score", "evaluate", "export", "demo")


def main(argv: list[str] | None = None) -> int:
    """Run the ``ganomaly`` command line (see :func:`ganomaly.cli.main`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    # The command is the first of its names (options such as --threads N may
    # come before it).
    command = next((a for a in args if a in _COMMANDS), None)
    if command == "score":
        from .threads import quiet_openblas

        quiet_openblas()
    from .cli import main as cli_main

    return cli_main(args)
