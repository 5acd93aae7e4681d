"""What the ``ganaug`` and ``ganomaly`` command lines share: one error type, one help
layout, one spelling of each common option, one way to say an operating-system
error in a line, the parse of a count that may be "auto", and ``--version``.

No torch here: the command lines import it only for the commands that need it.
"""

from __future__ import annotations

import argparse
import errno

__all__ = [
    "CliError",
    "HelpFormatter",
    "add_hidden_alias",
    "count_or_auto",
    "os_error",
    "version",
]


class CliError(Exception):
    """An error reported as one line on stderr with exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, where it has one worth saying (not
    for flags, options without a default, or help that already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = any(action.default is v for v in (None, False, argparse.SUPPRESS))
        if nothing or "default" in text or not action.option_strings:
            return text
        return super()._get_help_string(action)


def add_hidden_alias(
    parser: argparse.ArgumentParser, name: str, dest: str, **kwargs
) -> None:
    """Accept an older spelling of an option (``--epochs`` for ``--n-epochs``)
    without showing it in ``--help``; call after the option itself."""
    parser.add_argument(
        name, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs
    )


def count_or_auto(text: str) -> int | str:
    """An option's value as a positive whole number, or "auto" (``--n-epochs``,
    ``--n-members``): argparse's ``type``."""
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number or 'auto', got {text!r}"
        )
    return count


def os_error(exc: OSError) -> str:
    """An operating-system error in one line: the file, what went wrong, and for a
    full disk what to do."""
    if isinstance(exc, FileNotFoundError) and not exc.filename and exc.args:
        return " ".join(str(exc).split())  # a message of our own
    text = exc.strerror or str(exc)
    if exc.filename is not None:
        text = f"{exc.filename}: {text}"
    if exc.errno == errno.ENOSPC:
        text += " (the disk is full: free some space or write elsewhere)"
    return " ".join(text.split())


def version(tool: str) -> str:
    """``TOOL (gankit X.Y.Z)``, for ``--version``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return f"{tool} (gankit {installed('gankit')})"
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return f"{tool} (gankit, not installed)"
