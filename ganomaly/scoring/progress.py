"""The records that let an interrupted run resume, and the lock on an output."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gancore.files import atomic_write

from .._scorer import Scorer
from .errors import OutputBusyError, ResumeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock on partial outputs
    fcntl = None  # type: ignore[assignment]


_PROGRESS_FORMAT = "ganomaly-score-progress-2"  # 2: rejected rows in a file
# Seconds between two records of a run's progress (the output so far synced to disk,
# then a small JSON file): a resumed run redoes about this much work at most.  Runs
# shorter than this record nothing.
CHECKPOINT_SECONDS = 10.0


def run_identity(
    scorer: Scorer, path: Path, id_col: str | None, on_bad_rows: str, top_k: int
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    stat = path.stat()
    return {
        "input": str(path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "input_sample": _content_sample(path, stat.st_size),
        "model": scorer.digest(),
        "options": {"id_col": id_col, "on_bad_rows": on_bad_rows, "top_k": top_k},
    }


# What :func:`_content_sample` reads of a file: its first and last SAMPLE_EDGE
# bytes and SAMPLE_BLOCKS blocks of SAMPLE_BLOCK bytes spread evenly in between.
SAMPLE_EDGE, SAMPLE_BLOCKS, SAMPLE_BLOCK = 1 << 20, 1024, 1 << 12


def _content_sample(path: Path, size: int) -> str:
    """A digest of a sample of a file's bytes (about 6 MiB whatever its size).

    Size and modification time miss an edit that keeps the size and puts the time
    back; a digest of every byte would cost a read of the whole file at every
    resume (and a hash of it during every run).  This sample catches any edit in
    the first or last MiB or in a sampled block, and any that moves the bytes
    after it (a row made longer or shorter).
    """
    import hashlib

    digest = hashlib.sha256()
    starts = np.linspace(0, max(0, size - SAMPLE_BLOCK), SAMPLE_BLOCKS).astype(np.int64)
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_EDGE))
        for start in np.unique(starts).tolist():
            handle.seek(start)
            digest.update(handle.read(SAMPLE_BLOCK))
        handle.seek(max(0, size - SAMPLE_EDGE))
        digest.update(handle.read(SAMPLE_EDGE))
    return digest.hexdigest()


_IDENTITY_NAMES = {
    "input": "the input file's path",
    "input_size": "the input file's size",
    "input_mtime_ns": "the input file's modification time",
    "input_sample": "the input file's content",
    "model": "the model (or --precision)",
    "options": "the options (--id-col, --on-bad-rows, --top-k)",
}


def check_record_format(path: Path, found: Any, expected: str, start_over: str):
    """ResumeError unless a progress record is of the ``expected`` format: one of
    another ganomaly version (the format's name with another number) is said to
    be so, anything else is damaged."""
    family = expected.rsplit("-", 1)[0] + "-"
    if found != expected and isinstance(found, str) and found.startswith(family):
        raise ResumeError(
            f"{path}: progress recorded by another version of ganomaly ({found}; "
            f"this one reads {expected})" + start_over
        )
    if found != expected:
        raise ResumeError(
            f"{path}: damaged progress file (format {found!r})" + start_over
        )


@dataclass
class ScoringSummary:
    """What :func:`score_file` did.  ``n_input == n_scored + n_rejected`` always."""

    input_path: str
    output_path: str
    rejects_path: str | None
    n_input: int
    n_scored: int
    n_rejected: int
    n_anomalies: int
    seconds: float
    n_resumed: int = 0
    """Input rows scored by the interrupted run that this one resumed."""


class ScoreCheckpoint:
    """The progress of a run from a CSV file to a CSV file, for resuming it.

    The run writes its rows to ``.NAME.partial`` next to the output ``NAME``;
    :meth:`save` records in ``.NAME.partial.json`` the byte offset in the input
    after the last line scored, the bytes of the partial output that hold those
    lines' rows, the counts up to there and the bytes of the rejected rows kept so
    far (:class:`Rejects`, in ``.NAME.rejects.partial``), and
    the run's identity (input, model, options).  :meth:`finish` renames the partial
    output to ``NAME``.
    """

    def __init__(self, output: Path, identity: dict[str, Any]):
        self.output = output
        paths = self.paths(output)
        self.partial = paths["partial output"]
        self.state_path = paths["progress record"]
        self.identity = identity
        self.every = self.wait = CHECKPOINT_SECONDS
        self.last = time.monotonic()

    @staticmethod
    def paths(output: Path) -> dict[str, Path]:
        """The files a resumable run into ``output`` keeps next to it."""
        return {
            "partial output": output.with_name(f".{output.name}.partial"),
            "progress record": output.with_name(f".{output.name}.partial.json"),
            "kept rejects": output.with_name(f".{output.name}.rejects.partial"),
        }

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.wait

    def saver(self, state: dict[str, Any], sync_rejects: Any = None):
        """:meth:`save` as a writer action, once the writer has written the rows:
        they (and the rejected rows, with ``sync_rejects``) are synced to disk
        before the record that counts them."""
        self.last = time.monotonic()

        def save(writer) -> None:
            output_bytes = writer.position()
            os.fsync(self.fd)
            if sync_rejects is not None:
                sync_rejects()
            self.save(state, output_bytes)

        return save

    def save(self, state: dict[str, Any], output_bytes: int) -> None:
        started = self.last = time.monotonic()
        record = {"format": _PROGRESS_FORMAT, **self.identity, **state}
        record["output_bytes"] = output_bytes
        text = json.dumps(record)
        # Should records be slow to write (a slow disk), they get rarer, so that
        # writing them never takes more than ~5 % of the run.
        if self.every > 0:  # (0: a record after every piece, for tests)
            self.wait = max(self.every, 20 * (time.monotonic() - started))
        with atomic_write(self.state_path) as tmp:
            Path(tmp).write_text(text)

    def load(self) -> dict[str, Any] | None:
        """The recorded progress, or None if there is none.

        Raises
        ------
        ResumeError
            It is damaged, or from a run of another input, model or options.
        """
        try:
            text = self.state_path.read_text()
        except FileNotFoundError:
            return None
        start_over = f"; delete {self.state_path} and {self.partial} to start over"
        try:
            record = json.loads(text)
            again = "; run without --resume to start over"
            check_record_format(
                self.state_path, record.get("format"), _PROGRESS_FORMAT, again
            )
            int(record["input_offset"]), int(record["output_bytes"])
        except ResumeError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ResumeError(
                f"{self.state_path}: damaged progress file ({exc})" + start_over
            ) from exc
        for key, value in self.identity.items():
            if record.get(key) != value:
                raise ResumeError(
                    f"{self.state_path}: cannot resume: {_IDENTITY_NAMES[key]} "
                    "differs from the interrupted run's" + start_over
                )
        size = self.partial.stat().st_size if self.partial.exists() else -1
        if size < record["output_bytes"]:
            raise ResumeError(
                f"{self.partial}: the partial output is missing or shorter than "
                f"recorded ({size} < {record['output_bytes']} bytes)" + start_over
            )
        return record

    def discard(self) -> None:
        """Forget this run: its progress record and its partial output."""
        self.state_path.unlink(missing_ok=True)
        self.partial.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self):
        """Hold the partial output (:func:`locked_output`)."""
        with locked_output(self.output) as fd:
            self.fd = fd
            yield self

    def start(self) -> None:
        """Start from nothing: no progress, an empty partial output."""
        self.state_path.unlink(missing_ok=True)
        os.ftruncate(self.fd, 0)

    def finish(self) -> None:
        """The complete partial output becomes the output; the progress file goes."""
        os.fsync(self.fd)
        os.replace(self.partial, self.output)
        self.state_path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked_output(output: Path):
    """The descriptor of ``.NAME.partial`` beside the output ``NAME``, created if
    absent (with the permissions the umask gives), locked against other processes.

    Every run into an output holds it, whatever the output's format: two runs into
    one output would otherwise both write it, and the one to finish last would
    silently replace the other's (a resumable run's rows are written there, too).
    The lock goes with the process, however it ends.

    Raises
    ------
    OutputBusyError
        Another process holds it.
    """
    partial = ScoreCheckpoint.paths(output)["partial output"]
    partial.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputBusyError(
                    f"{output}: another process is writing this output (it holds "
                    f"{partial})"
                ) from None
            except OSError:  # a file system without locks: go on without
                pass
        yield fd
    finally:
        os.close(fd)


class FolderProgress:
    """The files of a folder run already scored: ``.ganomaly-score.json`` in the
    output folder.

    JSON lines: a first line with the format, then one line per file done,
    appended (and synced) as it finishes, so that recording the n-th file costs
    one line, not a rewrite of all n (a folder of 10,000 files would otherwise
    write about 24 GB of records).  A line that does not read back (the last one
    of a killed run may be cut short) is ignored: its file is scored again.
    """

    NAME = ".ganomaly-score.json"
    FORMAT = "ganomaly-folder-progress-2"  # 2: JSON lines, appended

    def __init__(self, output_dir: Path, scorer: Any, options: dict) -> None:
        self.path = output_dir / self.NAME
        self.scorer, self.options = scorer, options
        self.entries: dict[str, Any] | None = None

    def _identity(self, src: Path) -> dict[str, Any]:
        identity = run_identity(
            self.scorer,
            src,
            self.options["id_col"],
            self.options["on_bad_rows"],
            self.options["top_k"],
        )
        return json.loads(json.dumps(identity))  # as it reads back

    def _load(self) -> dict[str, Any]:
        if self.entries is None:
            try:
                lines = self.path.read_bytes().decode(errors="replace").split("\n")
            except FileNotFoundError:
                self.entries = {}
                return self.entries
            start_over = "; delete it to start over"
            try:
                found = json.loads(lines[0]).get("format")
            except (ValueError, AttributeError) as exc:
                raise ResumeError(
                    f"{self.path}: damaged progress file ({exc})" + start_over
                ) from exc
            check_record_format(self.path, found, self.FORMAT, start_over)
            entries = {}
            for line in lines[1:]:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    entries[str(entry["output"])] = entry
            self.entries = entries
        return self.entries

    def done(self, src: Path, dst: Path) -> ScoringSummary | None:
        """The summary of ``src`` if it was scored to ``dst`` by a run of this
        input, model and options, and ``dst`` (and its rejects) are as written."""
        entry = self._load().get(str(dst.resolve()))
        if entry is None or entry["identity"] != self._identity(src):
            return None
        counts = entry["summary"]
        written = [(dst, entry["output_size"])]
        if counts["rejects_path"]:
            written.append((Path(counts["rejects_path"]), entry["rejects_size"]))
        for path, size in written:
            if not path.is_file() or path.stat().st_size != size:
                return None
        return ScoringSummary(**counts, seconds=0.0, n_resumed=counts["n_input"])

    def add(self, src: Path, dst: Path, summary: ScoringSummary) -> None:
        counts = {
            k: getattr(summary, k)
            for k in ("input_path", "output_path", "rejects_path")
            + ("n_input", "n_scored", "n_rejected", "n_anomalies")
        }
        rejects = summary.rejects_path
        try:
            entry = {
                "output": str(dst.resolve()),
                "identity": self._identity(src),
                "output_size": dst.stat().st_size,
                "rejects_size": Path(rejects).stat().st_size if rejects else None,
                "summary": counts,
            }
        except OSError:  # written where this process cannot see it (a worker's disk)
            return  # not recorded: a resumed run scores it again
        text = json.dumps(entry) + "\n"
        self._load()
        with open(self.path, "a+b") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                text = json.dumps({"format": self.FORMAT}) + "\n" + text
            else:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line cut short: keep it apart
                    text = "\n" + text
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self.entries[entry["output"]] = entry

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.entries = {}
