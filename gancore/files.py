"""The files a command writes: written atomically, never over what the run reads.

Two rules every gankit command follows, kept here so that there is one of each:

* :func:`check_outputs` is called once, before a command writes anything.  It
  resolves every path the run reads and writes (symbolic links, ``./`` spellings,
  hard links) and refuses an output that is one of the run's inputs (a data file, a
  model), that is another output of the same run, or that exists and is not a
  regular file (a device, a FIFO, a directory where a file is meant).
* :class:`atomic_write` is how a file is written: into a temporary file beside the
  target, synced and renamed over it only when complete, with the permissions the
  user's umask gives a new file (or those of the file it replaces).
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "UnsafeOutputError",
    "atomic_write",
    "check_outputs",
    "same_file",
    "special_file",
]


class UnsafeOutputError(ValueError):
    """An output path that would destroy something: an input of the run, another of
    its outputs, or a file that is not a regular file."""


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def special_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is if it exists and is not a regular file (``"a directory"``,
    ``"a named pipe (FIFO)"``, ...), else None.  For messages."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _file_kind(mode)


def _identity(path: Path) -> tuple:
    """What makes two spellings the same file: (device, inode) where it exists, else
    the resolved path (an output that does not exist yet)."""
    try:
        info = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", info.st_dev, info.st_ino)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (symbolic or hard links and
    relative spellings included; for paths that do not exist, the same resolved
    path)."""
    return _identity(Path(a)) == _identity(Path(b))


def check_outputs(
    outputs: Iterable[tuple[str, str | os.PathLike | None]],
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
    *,
    directories: Iterable[str] = (),
) -> None:
    """Refuse a run whose outputs would overwrite its inputs, each other or a
    non-regular file; call it before anything is written.

    Parameters
    ----------
    outputs : iterable of (role, path)
        What the run writes, each with the words that name it in a message
        (``("output (-o)", "scores.csv")``); ``None`` paths are skipped.
    inputs : iterable of (role, path)
        What the run reads (data files, the model); ``None`` paths are skipped.
    directories : iterable of str
        Roles of ``outputs`` that are folders: they may exist as directories.

    Raises
    ------
    UnsafeOutputError
        With a one-line message naming the path and what it collides with.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> data = pathlib.Path(tempfile.mkdtemp()) / "day1.csv"
    >>> _ = data.write_text("a\\n1\\n")
    >>> check_outputs([("output (-o)", data.parent / "scores.csv")], [("input", data)])
    >>> check_outputs([("output (-o)", f"{data.parent}/./day1.csv")], [("input", data)])
    Traceback (most recent call last):
    ...
    gancore.files.UnsafeOutputError: ...day1.csv: the output (-o) would overwrite \
the input; choose another path
    """
    folder_roles = set(directories)
    seen: dict[tuple, tuple[str, str]] = {}
    for role, path in inputs:
        if path is not None:
            seen.setdefault(_identity(Path(path)), (role, str(path)))
    for role, path in outputs:
        if path is None:
            continue
        path = Path(path)
        key = _identity(path)
        if key in seen:
            other_role, other = seen[key]
            spelt = f" ({other})" if other != str(path) else ""
            raise UnsafeOutputError(
                f"{path}: the {role} would overwrite the {other_role}{spelt}; "
                "choose another path"
            )
        seen[key] = (role, str(path))
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # does not exist (yet): nothing to destroy
        if role in folder_roles:
            if not stat.S_ISDIR(mode):
                raise UnsafeOutputError(
                    f"{path}: the {role} exists and is {_file_kind(mode)}, not a folder"
                    if not stat.S_ISREG(mode)
                    else f"{path}: the {role} must be a folder, but it is a file"
                )
        elif not stat.S_ISREG(mode):
            raise UnsafeOutputError(
                f"{path}: the {role} exists and is {_file_kind(mode)}; gankit "
                "replaces only regular files: choose a file path"
            )


_umask_lock = threading.Lock()
_umask: int | None = None


def _new_file_mode() -> int:
    """The permissions a new file gets under the process's umask (read once: reading
    it means setting it, which must not race another thread's file creation)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0o022)
            os.umask(_umask)
    return 0o666 & ~_umask


class atomic_write:  # noqa: N801 - used like open()
    """Context manager giving a temporary path next to ``path``, renamed on success.

    A crash or an exception inside the block removes the temporary file, so the
    target path holds either its previous content or the complete new file, never a
    truncated one.  A process killed outright (SIGKILL, power loss) cannot remove
    its temporary file; it is named ``.NAME.HOST.PID.RANDOM.tmp`` so that the next
    write to the same target on the same host removes those of dead processes.

    A symbolic link is written through (the file it points to is replaced, the link
    stays).  An existing target that is not a regular file (a device, a FIFO, a
    directory) is never replaced: :class:`UnsafeOutputError`.  The new file has the
    permission bits of the file it replaces, or those the umask gives a new file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_write(target) as tmp:
    ...     _ = pathlib.Path(tmp).write_text("complete")
    >>> target.read_text()
    'complete'
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        # The path as given is looked at first: the kernel follows links that
        # realpath cannot (/proc/self/fd/1 to a pipe or a terminal).
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            mode = _new_file_mode()
        else:
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeOutputError(
                    f"{self.path}: exists and is {_file_kind(info.st_mode)}; gankit "
                    "replaces only regular files"
                )
            mode = stat.S_IMODE(info.st_mode)
        self.path = Path(os.path.realpath(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host = _host()
        _remove_stale_temporaries(self.path, host)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.{host}.{os.getpid()}.",
            suffix=".tmp",
            dir=self.path.parent,
        )
        os.close(fd)
        self.tmp, self.mode = Path(tmp), mode
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                # Set last: a writer may have made the file anew (safetensors does).
                os.chmod(self.tmp, self.mode)
                with open(self.tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(self.tmp, self.path)
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                raise
        else:
            self.tmp.unlink(missing_ok=True)


def _host() -> str:
    """This machine's name, as it may appear in a file name."""
    import socket

    name = socket.gethostname() or "host"
    return "".join(c if c.isalnum() or c == "-" else "_" for c in name)


def _remove_stale_temporaries(path: Path, host: str) -> None:
    """Remove ``path``'s temporary files left by dead processes of this host.

    Only this host's: on a shared file system another machine's process may be
    alive and writing.  A live process (or a reused process id) keeps its file.
    """
    prefix = f".{path.name}.{host}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for candidate in candidates:
        pid_text = candidate.name[len(prefix) :].split(".", 1)[0]
        if not candidate.name.endswith(".tmp") or not pid_text.isdigit():
            continue
        if not _process_alive(int(pid_text)):
            candidate.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or unknowable): keep its file
    return True
