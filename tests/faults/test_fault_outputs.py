"""What ``ganomaly`` writes, and what it must never write over.

One guard (``gancore.files.check_outputs``) runs before any command writes: no
output may be an input (by any spelling: ``./``, a symbolic or hard link, a
compressed name), the model, or another output of the same run, and an existing
output that is not a regular file (a device, a pipe, a folder) is refused, never
replaced.  Each case checks exit code 2, a one-line message, and that every input
is byte for byte as it was.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from ganomaly.cli import main
from ganomaly.datasets import make_transactions

from .conftest import ID_COL


def _digests(*paths: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _refused(capsys, args: list[str], *unchanged: Path, match: str) -> str:
    before = _digests(*unchanged)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert match in err, err
    assert _digests(*unchanged) == before
    return err


@pytest.fixture
def files(tmp_path, tiny_model):
    """A labelled transactions file as CSV, Parquet and .csv.gz, and a model."""
    frame = make_transactions(120, random_state=5)
    csv_path = tmp_path / "day.csv"
    frame.to_csv(csv_path, index=False)
    parquet = tmp_path / "day.parquet"
    frame.to_parquet(parquet)
    packed = tmp_path / "day.csv.gz"
    packed.write_bytes(gzip.compress(csv_path.read_bytes()))
    model = tmp_path / "model.safetensors"
    model.write_bytes(tiny_model.read_bytes())
    return {"csv": csv_path, "parquet": parquet, "gz": packed, "model": model}


@pytest.mark.parametrize("kind", ["csv", "parquet", "gz"])
@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_score_never_writes_over_its_input(capsys, files, tmp_path, kind, spelling):
    source = files[kind]
    target = {
        "same": str(source),
        "dot": f"{tmp_path}/./{source.name}",
        "symlink": str(tmp_path / f"alias_{source.name}"),
        "hardlink": str(tmp_path / f"hard_{source.name}"),
    }[spelling]
    if spelling == "symlink":
        Path(target).symlink_to(source)
    elif spelling == "hardlink":
        os.link(source, target)
    args = ["score", str(files["model"]), str(source), "-o", target]
    _refused(capsys, args, source, files["model"], match="would overwrite the input")


def test_score_never_writes_over_the_model(capsys, files):
    args = ["score", str(files["model"]), str(files["csv"]), "-o", str(files["model"])]
    _refused(capsys, args, files["csv"], files["model"], match="the model file")


def test_score_rejects_never_go_over_the_input_or_the_output(capsys, files, tmp_path):
    base = ["score", str(files["model"]), str(files["csv"]), "--on-bad-rows", "skip"]
    out = str(tmp_path / "out.csv")
    _refused(
        capsys,
        [*base, "-o", out, "--rejects", str(files["csv"])],
        files["csv"],
        match="rejects file would overwrite the input",
    )
    _refused(
        capsys,
        [*base, "-o", out, "--rejects", out],
        files["csv"],
        match="rejects file would overwrite the output",
    )
    assert not Path(out).exists()


def test_fit_never_writes_its_model_over_the_training_file(capsys, files, tmp_path):
    train = files["csv"]
    base = ["fit", str(train), "--n-epochs", "1", "--quiet"]
    _refused(capsys, [*base, "-o", str(train)], train, match="training file")
    _refused(
        capsys,
        [*base, "-o", str(tmp_path / "m.safetensors"), "--checkpoint", str(train)],
        train,
        match="training file",
    )
    _refused(
        capsys,
        [*base, "-o", str(tmp_path / "m"), "--checkpoint", str(tmp_path / "m")],
        train,
        match="checkpoint would overwrite the model file",
    )


@pytest.mark.parametrize("option", ["--plot", "--json"])
def test_evaluate_never_writes_over_its_inputs(capsys, files, option):
    for target in (files["csv"], files["model"]):
        args = ["evaluate", str(files["model"]), str(files["csv"]), "--label-col"]
        args += ["is_fraud", option, str(target)]
        _refused(capsys, args, files["csv"], files["model"], match="would overwrite")


def test_a_folder_run_never_writes_into_its_inputs(capsys, files):
    folder = files["csv"].parent
    args = ["score", str(files["model"]), str(folder), "-o", str(folder)]
    _refused(capsys, args, files["csv"], files["parquet"], match="would overwrite")


def test_a_folder_run_refuses_two_files_with_one_rejects_file(capsys, files, tmp_path):
    # day.csv and day.parquet are scored to day.csv and day.parquet, but both
    # would list their rejected rows in day.rejects.csv.
    folder = tmp_path / "in"
    folder.mkdir()
    for kind in ("csv", "parquet"):
        os.link(files[kind], folder / files[kind].name)
    args = ["score", str(files["model"]), str(folder), "-o", str(tmp_path / "out")]
    _refused(
        capsys,
        [*args, "--on-bad-rows", "skip"],
        files["csv"],
        match="rejects file of",
    )
    assert not (tmp_path / "out").exists()


def _character_device(folder: Path) -> Path:
    """A character device like /dev/null, made in ``folder`` (never the real one:
    a regression here must not take /dev/null from the machine)."""
    path = folder / "null"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot make a character device here (not root, or nodev)")
    return path


@pytest.mark.parametrize("target", ["device", "symlink_to_fd", "fifo", "dir"])
@pytest.mark.parametrize("command", ["score", "fit", "evaluate"])
def test_special_files_are_refused_never_replaced(
    capsys, files, tmp_path, target, command
):
    if target == "device":
        path = _character_device(tmp_path)
    elif target == "symlink_to_fd":  # as /proc/self/fd/1 on a terminal or a pipe
        read_end, write_end = os.pipe()
        path = tmp_path / "stdout"
        path.symlink_to(f"/proc/self/fd/{write_end}")
    elif target == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = tmp_path / "folder"
        path.mkdir()
    mode = os.stat(path).st_mode
    args = {
        "score": ["score", str(files["model"]), str(files["csv"]), "-o", str(path)],
        "fit": ["fit", str(files["csv"]), "-o", str(path), "--n-epochs", "1"],
        "evaluate": ["evaluate", str(files["model"]), str(files["csv"])]
        + ["--label-col", "is_fraud", "--plot", str(path)],
    }[command]
    _refused(capsys, args, files["csv"], match="exists and is")
    assert os.stat(path).st_mode == mode
    assert not stat.S_ISREG(os.stat(path).st_mode)
    if target == "symlink_to_fd":
        assert path.is_symlink()
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize(
    "column", ["anomaly_score", "is_anomaly", "row", "feature_1", "contribution_3"]
)
def test_an_id_column_named_like_an_output_column_is_refused(
    capsys, files, tmp_path, column
):
    frame = pd.read_csv(files["csv"]).rename(columns={ID_COL: column})
    source = tmp_path / "renamed.csv"
    frame.to_csv(source, index=False)
    args = ["score", str(files["model"]), str(source), "-o", str(tmp_path / "o.csv")]
    _refused(
        capsys, [*args, "--id-col", column], source, match="name of an output column"
    )


def test_a_run_that_rejects_every_row_fails_and_says_why(capsys, files, tmp_path):
    frame = pd.read_csv(files["csv"])
    frame["amount"] = "N/A"
    source = tmp_path / "all_bad.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "o.csv"
    args = ["score", str(files["model"]), str(source), "-o", str(out)]
    _refused(
        capsys,
        [*args, "--on-bad-rows", "skip"],
        source,
        match="every one of its 120 rows was rejected",
    )
    assert not out.exists()
    rejects = pd.read_csv(tmp_path / "o.rejects.csv")
    assert len(rejects) == 120 and set(rejects["column"]) == {"amount"}


@pytest.mark.parametrize("output", ["o.csv", "o.parquet", "o.csv.gz", "rejects"])
def test_a_full_disk_is_one_line_and_leaves_no_half_output(
    capsys, files, tmp_path, monkeypatch, output
):
    import ganomaly.scoring as scoring

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if output == "rejects":
        monkeypatch.setattr(scoring.outputs.Rejects, "write", full)
        output = "o.csv"
    elif output == "o.parquet":
        monkeypatch.setattr(scoring.outputs.ParquetWriter, "write_table", full)
    else:
        monkeypatch.setattr(scoring.outputs.CsvWriter, "write_table", full)
    out = tmp_path / "out" / output
    args = ["score", str(files["model"]), str(files["csv"]), "-o", str(out)]
    _refused(
        capsys, [*args, "--on-bad-rows", "skip"], files["csv"], match="No space left"
    )
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir()] if out.parent.exists() else []
    assert not [n for n in leftovers if n.endswith(".tmp")], leftovers


def test_a_full_disk_while_saving_a_model_is_one_line(
    capsys, files, tmp_path, monkeypatch
):
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    model = tmp_path / "m.safetensors"
    args = ["fit", str(files["csv"]), "-o", str(model), "--n-epochs", "1", "--quiet"]
    _refused(capsys, args, files["csv"], match="No space left")
    assert not model.exists()
    assert not list(tmp_path.glob(".m.safetensors*"))


def test_an_unwritable_folder_is_one_line(capsys, files, tmp_path, monkeypatch):
    import tempfile

    def denied(*args, dir=None, **kwargs):  # noqa: A002 - mkstemp's own name
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = tmp_path / "o.parquet"
    args = ["score", str(files["model"]), str(files["csv"]), "-o", str(out)]
    _refused(capsys, args, files["csv"], match="Permission denied")


def test_outputs_get_the_permissions_of_the_umask(files, tmp_path):
    import gancore.files as gfiles

    old = os.umask(0o007)
    gfiles._umask = None
    try:
        for name in ("o.csv", "o.parquet", "o.csv.gz"):
            args = ["score", str(files["model"]), str(files["csv"])]
            assert main([*args, "-o", str(tmp_path / name), "--quiet"]) == 0
        model = tmp_path / "m.safetensors"
        args = ["fit", str(files["csv"]), "-o", str(model), "--n-epochs", "1"]
        assert main([*args, "--quiet"]) == 0
    finally:
        os.umask(old)
        gfiles._umask = None
    for name in ("o.csv", "o.parquet", "o.csv.gz", "m.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o660, name


@pytest.mark.parametrize("output", ["o.parquet", "o.csv.gz", "o.csv"])
def test_every_output_is_locked_against_a_second_run(files, tmp_path, output):
    import fcntl

    from ganomaly.scoring import OutputBusyError, score_file

    out = tmp_path / output
    partial = tmp_path / f".{output}.partial"
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run's lock
        with pytest.raises(OutputBusyError, match="another process"):
            score_file(files["model"], files["csv"], out)
        assert partial.exists() and not out.exists()
    finally:
        os.close(fd)
    partial.unlink()
    score_file(files["model"], files["csv"], out)
    assert out.exists() and not partial.exists()


def test_a_pipe_as_input_is_named_as_such(capsys, files, tmp_path):
    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    args = ["score", str(files["model"]), str(fifo), "-o", str(tmp_path / "o.csv")]
    _refused(capsys, args, files["csv"], match="is a named pipe (FIFO), not a file")
