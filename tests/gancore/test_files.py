"""gancore.files: atomic writes and the guard that keeps outputs off inputs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import gancore.files as gfiles
from gancore.files import UnsafeOutputError, atomic_write, check_outputs, same_file


def test_atomic_write_keeps_the_previous_file_on_error(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("previous complete output")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "previous complete output"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_removes_temporaries_of_dead_processes_only(tmp_path):
    host = gfiles._host()
    target = tmp_path / "scores.csv"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(finished.stdout)  # a process that has exited: its file is stale
    stale = tmp_path / f".scores.csv.{host}.{dead}.abc123.tmp"
    alive = tmp_path / f".scores.csv.{host}.{os.getppid()}.def456.tmp"
    elsewhere = tmp_path / f".scores.csv.otherhost.{dead}.ghi789.tmp"
    unrelated = tmp_path / f".other.csv.{host}.{dead}.jkl012.tmp"
    for path in (stale, alive, elsewhere, unrelated):
        path.write_text("half")
    with atomic_write(target) as tmp:
        tmp.write_text("complete")
    assert target.read_text() == "complete"
    assert not stale.exists()
    assert alive.exists() and elsewhere.exists() and unrelated.exists()


def test_atomic_write_gives_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    gfiles._umask = None  # read again under this test's umask
    try:
        with atomic_write(tmp_path / "new.csv") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
        gfiles._umask = None
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o640


def test_atomic_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "shared.csv"
    target.write_text("old")
    target.chmod(0o664)
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o664


def test_atomic_write_writes_through_a_symbolic_link(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with atomic_write(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_atomic_write_never_replaces_a_special_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "to_pipe"
    link.symlink_to(fifo)
    for target in (fifo, link, tmp_path):
        with pytest.raises(UnsafeOutputError, match="regular files"):
            with atomic_write(target) as tmp:
                tmp.write_text("x")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["pipe", "to_pipe"]


def test_check_outputs_refuses_an_input_by_any_spelling(tmp_path, monkeypatch):
    data = tmp_path / "day1.csv"
    data.write_text("a\n1\n")
    link = tmp_path / "alias.csv"
    link.symlink_to(data)
    hard = tmp_path / "hard.csv"
    os.link(data, hard)
    monkeypatch.chdir(tmp_path)
    for spelling in (
        "day1.csv",
        "./day1.csv",
        f"{tmp_path}/../{tmp_path.name}/day1.csv",
        "alias.csv",
        "hard.csv",
    ):
        with pytest.raises(UnsafeOutputError, match="would overwrite the input"):
            check_outputs([("output (-o)", spelling)], [("input", data)])
    check_outputs([("output (-o)", "scores.csv")], [("input", data)])


def test_check_outputs_refuses_two_outputs_on_one_path(tmp_path):
    match = "rejects file would overwrite the output"
    with pytest.raises(UnsafeOutputError, match=match):
        check_outputs(
            [("output (-o)", tmp_path / "x.csv"), ("rejects file", tmp_path / "x.csv")]
        )


def test_check_outputs_refuses_special_files_and_folders(tmp_path):
    with pytest.raises(UnsafeOutputError, match="character device"):
        check_outputs([("output (-o)", "/dev/null")])
    with pytest.raises(UnsafeOutputError, match="a directory"):
        check_outputs([("output (-o)", tmp_path)])
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeOutputError, match="must be a folder"):
        check_outputs(
            [("output folder", tmp_path / "file")], directories=["output folder"]
        )
    check_outputs([("output folder", tmp_path)], directories=["output folder"])


def test_same_file(tmp_path):
    a = tmp_path / "a"
    a.write_text("")
    assert same_file(a, tmp_path / "." / "a")
    assert not same_file(a, tmp_path / "b")
