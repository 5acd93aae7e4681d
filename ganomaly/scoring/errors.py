"""What scoring raises: bad input, a run that cannot resume, a busy output."""

from __future__ import annotations


class BadInputError(ValueError):
    """Bad input: the message names the file, the line (or row) and the column."""


class ResumeError(BadInputError):
    """An interrupted scoring run cannot be resumed: its progress file belongs to
    another input, model or options, or is damaged; or the files are not what a
    resumable run reads and writes (a CSV input, an uncompressed CSV output)."""


class OutputBusyError(BadInputError):
    """Another process is writing the same output file."""
