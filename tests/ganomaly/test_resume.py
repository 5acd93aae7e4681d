"""``score_file(resume=True)`` / ``ganomaly score --resume``: an interrupted run
continues from its recorded progress to the output an uninterrupted run writes."""

from __future__ import annotations

import json
import os

import pytest

import ganomaly.scoring as scoring
from ganomaly import GANomalyDetector, make_transactions
from ganomaly.cli import main

BLOCK = 1024  # 4 KiB pieces: about 60 in these 6,000 rows


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A CSV file with ids and two rows that the fast read rejects (inf values)."""
    folder = tmp_path_factory.mktemp("resume")
    frame = make_transactions(6000, random_state=3).drop(columns="is_fraud")
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[[700, 4100], "amount"] = "inf"
    path = folder / "in.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("resume-model") / "model.safetensors"
    fitted.save(path)
    return path


def _score(model, source, output, **options):
    return scoring.score_file(
        model,
        source,
        output,
        id_col="transaction_id",
        on_bad_rows="skip",
        block_size=BLOCK,
        progress=False,
        **options,
    )


@pytest.fixture(scope="module")
def reference(model, source, tmp_path_factory):
    output = tmp_path_factory.mktemp("resume-reference") / "out.csv"
    summary = _score(model, source, output)
    rejects = output.with_name("out.rejects.csv")
    return summary, output.read_bytes(), rejects.read_bytes()


def _interrupt_after(monkeypatch, n_tables: int) -> None:
    """Make the output writer raise KeyboardInterrupt at its n-th table."""
    original = scoring.outputs.CsvWriter.write_table
    calls = {"n": 0}

    def write_table(self, table):
        calls["n"] += 1
        if calls["n"] == n_tables:
            raise KeyboardInterrupt
        original(self, table)

    monkeypatch.setattr(scoring.outputs.CsvWriter, "write_table", write_table)


def _interrupted(model, source, output, n_tables: int = 30, **options) -> dict:
    """``_score`` interrupted at the writer's ``n_tables``-th table: the progress
    it recorded."""
    with pytest.MonkeyPatch.context() as patched:
        _interrupt_after(patched, n_tables)
        with pytest.raises(KeyboardInterrupt):
            _score(model, source, output, **options)
    return json.loads(_progress(output).read_text())


def _careful_parses(monkeypatch) -> list:
    """For every piece parsed again as text: the lines before it (header aside)."""
    starts = []
    original = scoring.job.Job._parse_carefully

    def parse_carefully(self, piece, done):
        starts.append(done)
        return original(self, piece, done)

    monkeypatch.setattr(scoring.job.Job, "_parse_carefully", parse_carefully)
    return starts


def _progress(output):
    return output.with_name(f".{output.name}.partial.json")


@pytest.mark.parametrize("threads", [1, 3])
def test_an_interrupted_run_resumes_to_the_uninterrupted_output(
    model, source, reference, tmp_path, monkeypatch, threads
):
    summary, expected, expected_rejects = reference
    output = tmp_path / "out.csv"
    monkeypatch.setattr(
        scoring.progress, "CHECKPOINT_SECONDS", 0.0
    )  # after every piece
    state = _interrupted(model, source, output, threads=threads)
    assert not output.exists()  # never a half output at the target
    assert 0 < state["n_input"] < summary.n_input
    assert state["n_rejected"] == 1  # the row before the interruption
    partial = output.with_name(".out.csv.partial")
    assert partial.stat().st_size >= state["output_bytes"] > 0

    parsed = []
    original = scoring.job.parse_piece
    monkeypatch.setattr(
        scoring.job,
        "parse_piece",
        lambda data, *a: parsed.append(1) or original(data, *a),
    )
    resumed = _score(model, source, output, threads=threads, resume=True)
    assert output.read_bytes() == expected
    assert output.with_name("out.rejects.csv").read_bytes() == expected_rejects
    counts = (resumed.n_input, resumed.n_scored, resumed.n_rejected)
    assert counts == (summary.n_input, summary.n_scored, summary.n_rejected)
    assert resumed.n_anomalies == summary.n_anomalies
    n_pieces = sum(
        1
        for _ in scoring.csv_pieces.read_pieces(
            source, BLOCK * scoring.csv_pieces.PIECE_BLOCKS
        )
    )
    assert 0 < len(parsed) < n_pieces - 20  # the scored part was not read again
    assert not partial.exists() and not _progress(output).exists()


def test_rejected_rows_after_the_record_are_dropped_on_resume(
    model, source, reference, tmp_path, monkeypatch
):
    """Rejected rows are kept in a file next to the output as the run goes (not
    in memory, not in the progress record): what was written after the last
    record (pieces validated, not yet written out) is cut off on resume, and a
    missing file is named."""
    _, expected, expected_rejects = reference
    output = tmp_path / "out.csv"
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    state = _interrupted(model, source, output, threads=1)
    assert "rejects" not in state and state["n_rejected"] == 1
    spill = tmp_path / ".out.csv.rejects.partial"
    assert spill.stat().st_size == state["rejects_bytes"] > 0
    with open(spill, "a") as handle:  # as if later pieces had been validated
        handle.write("5000,5001,amount,infinite value inf,tx-later\n")
    _score(model, source, output, resume=True)
    assert output.read_bytes() == expected
    assert output.with_name("out.rejects.csv").read_bytes() == expected_rejects
    assert not spill.exists()

    _interrupted(model, source, output, threads=1)
    spill.unlink()
    with pytest.raises(scoring.ResumeError, match="rejected rows of the interrupted"):
        _score(model, source, output, resume=True)
    _score(model, source, output)  # starting over needs no spill
    assert output.with_name("out.rejects.csv").read_bytes() == expected_rejects


@pytest.mark.parametrize("resume", [False, True])
def test_the_output_is_synced_while_it_is_written(
    model, source, reference, tmp_path, monkeypatch, resume
):
    """Synced every SYNC_BYTES (the last sync, before the rename, then waits for
    little), with the same bytes in the end; a file that cannot be synced midway
    is still written whole."""
    if not hasattr(os, "fdatasync"):
        pytest.skip("no os.fdatasync here (the writer falls back on os.fsync)")
    _, expected, _ = reference
    monkeypatch.setattr(scoring.outputs, "SYNC_BYTES", 4096)
    synced = []
    original = os.fdatasync

    def fdatasync(fd):
        synced.append(os.fstat(fd).st_size)
        original(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    output = tmp_path / "out.csv"
    _score(model, source, output, resume=resume)
    assert output.read_bytes() == expected
    # ~9 KB tables: a sync after each, the last one near the end
    assert len(synced) >= 30 and synced == sorted(synced)
    assert len(expected) - 20_000 < synced[-1] <= len(expected)

    def cannot(fd):
        synced.append(None)
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "fdatasync", cannot)
    synced.clear()
    output.unlink()
    _score(model, source, output, resume=resume)
    assert output.read_bytes() == expected
    assert synced == [None]  # tried once, then not again


def test_resume_refuses_progress_of_another_model_or_input(
    model, source, tmp_path, monkeypatch
):
    output = tmp_path / "out.csv"
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    _interrupted(model, source, output, n_tables=10)
    recorded = _progress(output).read_bytes()

    other = GANomalyDetector(n_epochs=1, random_state=1)
    other.fit(make_transactions(500, random_state=1).drop(columns="is_fraud"))
    with pytest.raises(scoring.ResumeError, match="the model"):
        _score(other, source, output, resume=True)
    with pytest.raises(scoring.ResumeError, match="--id-col"):
        scoring.score_file(model, source, output, block_size=BLOCK, resume=True)
    used = scoring.as_scorer(model).dtype.name  # "auto": float32 here, most likely
    other_precision = "float64" if used == "float32" else "float32"
    with pytest.raises(scoring.ResumeError, match="the model"):  # precision counts
        _score(model, source, output, resume=True, precision=other_precision)
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(scoring.ResumeError, match="modification time"):
            _score(model, source, output, resume=True)
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _progress(output).read_bytes() == recorded  # refusing keeps the progress

    older = json.loads(recorded)
    older["format"] = "ganomaly-score-progress-1"  # stop 13's, rejects inside
    _progress(output).write_text(json.dumps(older))
    with pytest.raises(scoring.ResumeError, match="another version of ganomaly"):
        _score(model, source, output, resume=True)
    _progress(output).write_text("{not json")
    with pytest.raises(scoring.ResumeError, match="damaged progress file"):
        _score(model, source, output, resume=True)


def test_without_resume_a_run_starts_over(model, source, reference, tmp_path, capsys):
    """A new run discards an interrupted run's progress (and the CLI says so);
    --resume with nothing to resume simply runs."""
    _, expected, _ = reference
    output = tmp_path / "out.csv"
    _progress(output).write_text("{}")
    output.with_name(".out.csv.partial").write_bytes(b"stale rows\n")
    args = ["score", str(model), str(source), "-o", str(output), "--quiet"]
    args += ["--id-col", "transaction_id", "--on-bad-rows", "skip"]
    assert main(args) == 0
    assert "starting over (--resume would continue it)" in capsys.readouterr().err
    assert output.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.rejects.csv"]
    output.unlink()
    assert main([*args, "--resume"]) == 0
    assert output.read_bytes() == expected


def test_bad_input_leaves_no_progress_behind(model, source, tmp_path, monkeypatch):
    """A row that stops the run (on_bad_rows="error") is met again by a rerun:
    nothing is kept to resume."""
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    output = tmp_path / "out.csv"
    with pytest.raises(scoring.BadInputError, match="line 702"):
        scoring.score_file(model, source, output, block_size=BLOCK, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_resume_needs_a_csv_input_and_a_plain_csv_output(
    model, source, tmp_path, capsys
):
    with pytest.raises(scoring.ResumeError, match="uncompressed CSV output"):
        _score(model, source, tmp_path / "out.parquet", resume=True)
    with pytest.raises(scoring.ResumeError, match="uncompressed CSV output"):
        _score(model, source, tmp_path / "out.csv.gz", resume=True)
    args = ["score", str(model), str(source), "-o", str(tmp_path / "out.parquet")]
    assert main([*args, "--resume"]) == 2
    assert "uncompressed CSV output" in capsys.readouterr().err


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_input_resumes_after_its_recorded_offset(
    model, source, reference, tmp_path, monkeypatch, codec
):
    """A .csv.gz / .csv.zst input: the resumed run decompresses up to the recorded
    (decompressed) offset, parses and scores only what follows, and writes the
    output and rejects of an uninterrupted run."""
    import pyarrow as pa

    summary, expected, expected_rejects = reference
    packed = tmp_path / f"in.csv.{'gz' if codec == 'gzip' else 'zst'}"
    with pa.output_stream(str(packed), compression=codec) as sink:
        sink.write(source.read_bytes())
    output = tmp_path / "out.csv"
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    state = _interrupted(model, packed, output, threads=2)
    assert 0 < state["n_input"] < summary.n_input
    # The recorded offset is that of the plain file's line after the last row.
    lines = source.read_bytes().split(b"\n")[: 1 + state["n_input"]]
    assert state["input_offset"] == sum(len(line) + 1 for line in lines)

    parsed = []
    original = scoring.job.parse_piece
    monkeypatch.setattr(
        scoring.job,
        "parse_piece",
        lambda data, *a: parsed.append(1) or original(data, *a),
    )
    resumed = _score(model, packed, output, threads=2, resume=True)
    assert output.read_bytes() == expected
    assert output.with_name("out.rejects.csv").read_bytes() == expected_rejects
    counts = (resumed.n_input, resumed.n_scored, resumed.n_rejected)
    assert counts == (summary.n_input, summary.n_scored, summary.n_rejected)
    assert resumed.n_resumed == state["n_input"]
    n_pieces = sum(
        1
        for _ in scoring.csv_pieces.read_pieces(
            source, BLOCK * scoring.csv_pieces.PIECE_BLOCKS
        )
    )
    assert 0 < len(parsed) < n_pieces - 20  # the scored part was not parsed again


def test_a_compressed_input_cut_before_the_recorded_offset_is_named(tmp_path):
    import gzip

    packed = tmp_path / "in.csv.gz"
    packed.write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n"))
    pieces = scoring.csv_pieces.read_pieces(packed, 4096, start=8)
    assert [(p.data.to_pybytes(), p.end) for p in pieces] == [(b"3,4\n", 12)]
    with pytest.raises(scoring.BadInputError, match="ends before byte 100"):
        list(scoring.csv_pieces.read_pieces(packed, 4096, start=100))


def test_a_row_that_does_not_parse_keeps_the_run_resumable(
    fitted, tmp_path, monkeypatch
):
    """A row that does not parse with typed columns (quoted text in a number
    column) is read again as text with its piece only: the progress records go on,
    and a run interrupted after that piece resumes to the output and rejects of an
    uninterrupted run."""
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    frame = make_transactions(3000, random_state=4).drop(columns="is_fraud")
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[1000, "amount"] = "12,5"  # written quoted: text in a number column
    frame.to_csv(tmp_path / "in.csv", index=False)

    def score(output, **options):
        return scoring.score_file(
            fitted,
            tmp_path / "in.csv",
            output,
            on_bad_rows="skip",
            block_size=BLOCK,
            progress=False,
            threads=1,
            **options,
        )

    expected = score(tmp_path / "reference.csv")
    assert (expected.n_input, expected.n_rejected) == (3000, 1)
    with monkeypatch.context() as patched:
        _interrupt_after(patched, 20)  # 31 pieces, the bad row in the 11th
        with pytest.raises(KeyboardInterrupt):
            score(tmp_path / "out.csv")
    state = json.loads(_progress(tmp_path / "out.csv").read_text())
    assert state["n_input"] > 1001 and state["n_rejected"] == 1
    careful = _careful_parses(monkeypatch)
    resumed = score(tmp_path / "out.csv", resume=True)
    assert careful == []  # the bad piece was behind the progress
    assert (tmp_path / "out.csv").read_bytes() == (
        tmp_path / "reference.csv"
    ).read_bytes()
    assert (tmp_path / "out.rejects.csv").read_bytes() == (
        tmp_path / "reference.rejects.csv"
    ).read_bytes()
    assert (resumed.n_input, resumed.n_rejected) == (3000, 1)


def test_cli_resume_says_where_it_resumed(
    model, source, reference, tmp_path, monkeypatch, capsys
):
    _, expected, _ = reference
    output = tmp_path / "out.csv"
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setitem(scoring.score_file.__kwdefaults__, "block_size", BLOCK)
    args = ["score", str(model), str(source), "-o", str(output), "--quiet"]
    args += ["--id-col", "transaction_id", "--on-bad-rows", "skip"]
    with monkeypatch.context() as patched:
        _interrupt_after(patched, 25)
        assert main(args) == 130
    assert "ganomaly score: interrupted" in capsys.readouterr().err
    rows = json.loads(_progress(output).read_text())["n_input"]
    assert main([*args, "--resume"]) == 0
    assert f"resuming after row {rows} (" in capsys.readouterr().err
    assert output.read_bytes() == expected
    # Several inputs go to a folder, not to a file.
    assert main([*args[:2], str(source.parent), *args[3:], "--resume"]) == 2
    assert f"{output}: is a file; with several inputs" in capsys.readouterr().err


def test_a_second_run_into_the_same_output_is_refused(
    model, source, reference, tmp_path
):
    """While a run writes an output, another run into it fails at once (it would
    share the partial file), and leaves the first run's files alone."""
    _, expected, _ = reference
    output = tmp_path / "out.csv"
    identity = {"input": "whatever"}
    with scoring.progress.ScoreCheckpoint(output, identity).locked() as first:
        first.partial.write_bytes(b"rows of the first run\n")
        with pytest.raises(scoring.OutputBusyError, match="another process"):
            _score(model, source, output)
        with pytest.raises(scoring.OutputBusyError):
            _score(model, source, output, resume=True)
        assert first.partial.read_bytes() == b"rows of the first run\n"
    _score(model, source, output)  # the lock went with the first run
    assert output.read_bytes() == expected


@pytest.mark.parametrize("id_col", [None, "transaction_id"])
def test_only_the_pieces_with_rows_that_do_not_parse_are_read_as_text(
    fitted, tmp_path, monkeypatch, id_col
):
    """Rows that do not parse, far into a file: only their pieces are parsed again
    as text, and the output, rejects, line and row numbers are those of a text
    read of the whole file as one piece."""
    frame = make_transactions(5000, random_state=8).drop(columns="is_fraud")
    frame[["amount", "hour"]] = frame[["amount", "hour"]].astype(object)
    frame.loc[2000, "amount"] = "nan"  # a bad value: the fast read rejects it
    frame.loc[3500, "amount"] = "12,5"  # written quoted: text in a number column
    frame.loc[4700, "hour"] = "x"
    text = frame.to_csv(index=False).splitlines(keepends=True)
    text[4001] = text[4001].rstrip("\n") + ",1\n"  # one field too many
    text.insert(1200, "\n")  # an empty line: lines and rows differ after it
    source = tmp_path / "in.csv"
    source.write_text("".join(text))

    careful = _careful_parses(monkeypatch)
    results = {}
    for name, block in [("whole", 1 << 22), ("pieces", 1024)]:
        careful.clear()
        output = tmp_path / f"{name}.csv"
        summary = scoring.score_file(
            fitted,
            source,
            output,
            id_col=id_col,
            on_bad_rows="skip",
            block_size=block,
            progress=False,
        )
        rejects = output.with_name(f"{name}.rejects.csv").read_text()
        results[name] = (output.read_bytes(), rejects, summary)
        if name == "whole":
            assert careful == [0]  # one piece, from line 2
        else:  # the pieces of data rows 3500, 4000 and 4700 (after the empty line)
            assert len(careful) == 3
            assert careful[0] < 3501 < careful[1] < 4002 < careful[2] < 4702
    whole, pieces = results["whole"], results["pieces"]
    assert pieces[0] == whole[0]
    assert pieces[1] == whole[1]
    assert (pieces[2].n_input, pieces[2].n_rejected) == (5000, 4)
    lines = [row.split(",")[1] for row in whole[1].splitlines()[1:]]
    assert lines == ["2003", "3503", "4003", "4703"]  # after the empty line: +1


def test_a_resumed_run_that_meets_a_bad_row_at_once(fitted, tmp_path, monkeypatch):
    """The piece right after the recorded progress holds a row that does not
    parse: that piece is read as text, after the rows of the interrupted run, and
    the output is that of an uninterrupted run."""
    monkeypatch.setattr(scoring.progress, "CHECKPOINT_SECONDS", 0.0)
    frame = make_transactions(4000, random_state=9).drop(columns="is_fraud")
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    ends = [piece.end for piece in scoring.csv_pieces.read_pieces(source, BLOCK * 4)]
    data = source.read_bytes()
    # Piece 19 gets a line with one field too many, and table 19 fails to be
    # written: the progress is that after piece 18, and the resumed run's first
    # piece does not parse.
    first_line = data.index(b"\n", ends[17]) + 1
    source.write_bytes(data[:first_line] + b"1," + data[first_line:])

    def score(output, **options):
        return scoring.score_file(
            fitted,
            source,
            output,
            on_bad_rows="skip",
            block_size=BLOCK,
            threads=1,
            **options,
        )

    reference = tmp_path / "reference.csv"
    expected = score(reference)
    with monkeypatch.context() as patched:
        _interrupt_after(patched, 19)
        with pytest.raises(KeyboardInterrupt):
            score(tmp_path / "out.csv")
    state = json.loads(_progress(tmp_path / "out.csv").read_text())
    assert state["input_offset"] == ends[17]
    careful = _careful_parses(monkeypatch)
    resumed = score(tmp_path / "out.csv", resume=True)
    assert careful == [state["n_input"]]
    assert (tmp_path / "out.csv").read_bytes() == reference.read_bytes()
    assert (tmp_path / "out.rejects.csv").read_bytes() == (
        tmp_path / "reference.rejects.csv"
    ).read_bytes()
    assert (resumed.n_input, resumed.n_rejected) == (expected.n_input, 1)


def test_an_interruption_before_any_record_leaves_nothing(model, source, tmp_path):
    """Interrupted before its first progress record (10 s), a run has nothing to
    resume: its partial output goes, as the temporary file of other runs does."""
    output = tmp_path / "out.csv"
    with pytest.MonkeyPatch.context() as patched:
        _interrupt_after(patched, 3)
        with pytest.raises(KeyboardInterrupt):
            _score(model, source, output)
    assert list(tmp_path.iterdir()) == []


def _folder_of_three(source, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.csv").write_bytes(source.read_bytes())
    return folder


def test_a_folder_run_resumes_where_it_stopped(model, source, tmp_path, monkeypatch):
    """Files done are not scored again, the interrupted one resumes from its own
    progress, the rest are scored: the outputs of an uninterrupted run."""
    import functools

    import ganomaly.distributed as dist

    folder = _folder_of_three(source, tmp_path)
    options = {"id_col": "transaction_id", "on_bad_rows": "skip"}
    small = functools.partial(scoring.score_file, block_size=BLOCK)  # ~60 tables
    monkeypatch.setattr(dist, "score_file", small)
    reference = dist.score_files(model, folder, tmp_path / "ref", **options)
    out = tmp_path / "out"
    monkeypatch.setattr(
        scoring.progress, "CHECKPOINT_SECONDS", 0.0
    )  # after every piece
    per_file = sum(
        1
        for _ in scoring.csv_pieces.read_pieces(
            source, BLOCK * scoring.csv_pieces.PIECE_BLOCKS
        )
    )
    with monkeypatch.context() as patched:
        _interrupt_after(patched, per_file + per_file // 2)  # half-way through b.csv
        with pytest.raises(KeyboardInterrupt):
            dist.score_files(model, folder, out, **options)
    assert sorted(p.name for p in out.iterdir()) == [
        ".b.csv.partial",
        ".b.csv.partial.json",
        ".b.csv.rejects.partial",  # the rejected rows so far
        ".ganomaly-score.json",
        "a.csv",
        "a.rejects.csv",
    ]
    scored = []

    def recorded(scorer, src, *args, **options):
        scored.append(src.name)
        return small(scorer, src, *args, **options)

    monkeypatch.setattr(dist, "score_file", recorded)
    resumed = dist.score_files(model, folder, out, resume=True, **options)
    assert scored == ["b.csv", "c.csv"]
    assert resumed[0].n_resumed == resumed[0].n_input  # a.csv: done before
    assert 0 < resumed[1].n_resumed < resumed[1].n_input  # b.csv: from its progress
    for before, after in zip(reference, resumed, strict=True):
        assert (after.n_input, after.n_scored, after.n_rejected, after.n_anomalies) == (
            before.n_input,
            before.n_scored,
            before.n_rejected,
            before.n_anomalies,
        )
    for name in ("a.csv", "a.rejects.csv", "b.csv", "b.rejects.csv", "c.csv"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    assert not (out / ".ganomaly-score.json").exists()  # all done: no record left


def test_a_folder_record_skips_an_output_it_cannot_see(model, source, tmp_path):
    """A file scored where this process cannot see its output (a Dask worker's own
    disk) is not recorded, and the run goes on: a resumed run scores it again."""
    from ganomaly.scoring import as_scorer
    from ganomaly.scoring.progress import FolderProgress

    options = {"id_col": None, "on_bad_rows": "error", "top_k": 3}
    record = FolderProgress(tmp_path, as_scorer(model), options)
    summary = scoring.ScoringSummary(
        input_path=str(source),
        output_path=str(tmp_path / "elsewhere.csv"),
        rejects_path=None,
        n_input=1,
        n_scored=1,
        n_rejected=0,
        n_anomalies=0,
        seconds=0.0,
    )
    record.add(source, tmp_path / "elsewhere.csv", summary)
    assert not record.path.exists()
    assert record.done(source, tmp_path / "elsewhere.csv") is None


def test_a_folder_resume_scores_again_what_changed(
    model, source, tmp_path, monkeypatch, capsys
):
    """A file done whose input, or whose output, changed since is scored again;
    without resume every file is."""
    import ganomaly.distributed as dist
    from ganomaly.cli import main

    folder = _folder_of_three(source, tmp_path)
    out = tmp_path / "out"
    args = ["score", str(model), str(folder), "-o", str(out), "--quiet"]
    args += ["--id-col", "transaction_id", "--on-bad-rows", "skip"]
    record = out / ".ganomaly-score.json"
    # A run that stopped at c.csv (a file that is not CSV at all): a and b done.
    good_c = (folder / "c.csv").read_bytes()
    (folder / "c.csv").write_bytes(b"\x00\xff not a csv")
    assert main(args) == 2
    header, *lines = record.read_text().splitlines()
    assert json.loads(header) == {"format": "ganomaly-folder-progress-2"}
    assert [json.loads(line)["output"] for line in lines] == [
        str((out / name).resolve()) for name in ("a.csv", "b.csv")
    ]
    expected = (out / "b.csv").read_bytes()  # a, b and c have the same rows
    (folder / "c.csv").write_bytes(good_c)
    with open(folder / "a.csv", "a") as handle:  # a.csv changed: one row more
        handle.write(source.read_text().splitlines()[1] + "\n")
    (out / "b.csv").write_bytes(b"edited")  # b.csv's output changed
    scored = []
    original = dist.score_file

    def recorded(scorer, src, *args, **options):
        scored.append(src.name)
        return original(scorer, src, *args, **options)

    monkeypatch.setattr(dist, "score_file", recorded)
    assert main([*args, "--resume"]) == 0
    assert scored == ["a.csv", "b.csv", "c.csv"]
    assert len((out / "a.csv").read_bytes()) > len(expected)
    assert (out / "b.csv").read_bytes() == expected
    assert (out / "c.csv").read_bytes() == expected
    assert not record.exists()
    scored.clear()
    assert main([*args, "--resume"]) == 0  # nothing recorded: all again
    assert scored == ["a.csv", "b.csv", "c.csv"]
    (folder / "c.csv").write_bytes(b"\x00\xff not a csv")
    assert main(args) == 2  # a and b recorded again
    (folder / "c.csv").write_bytes(good_c)
    scored.clear()
    assert main(args) == 0  # without --resume: every file, and a note
    assert scored == ["a.csv", "b.csv", "c.csv"]
    assert "starting over (--resume would skip" in capsys.readouterr().err
    # A last line cut short by a killed run: its file is scored again, and the
    # next line recorded stays apart from it.
    (folder / "c.csv").write_bytes(b"\x00\xff not a csv")
    assert main(args) == 2  # a and b recorded
    text = record.read_text()
    record.write_text(text[: text.rindex("{") + 20])  # b.csv's line cut short
    options = {"id_col": "transaction_id", "on_bad_rows": "skip"}
    scored.clear()
    with pytest.raises(scoring.BadInputError):  # c.csv still fails, after b.csv
        dist.score_files(model, folder, out, resume=True, **options)
    assert scored == ["b.csv", "c.csv"]
    assert len(record.read_text().splitlines()) == 4  # header, a, cut b, b
    (folder / "c.csv").write_bytes(good_c)
    scored.clear()
    dist.score_files(model, folder, out, resume=True, **options)
    assert scored == ["c.csv"] and not record.exists()

    record.write_text("{not json")
    with pytest.raises(scoring.ResumeError, match="damaged progress file"):
        dist.score_files(model, folder, out, resume=True)
    record.write_text('{"format": "ganomaly-folder-progress-1", "files": {}}')
    with pytest.raises(scoring.ResumeError, match="another version of ganomaly"):
        dist.score_files(model, folder, out, resume=True)
    dist.score_files(model, folder, out, on_bad_rows="skip")  # starts over
    assert not record.exists()
