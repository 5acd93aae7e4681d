"""What ``ganaug`` writes, and where it must not: one-line errors instead of
tracebacks (a file where a folder is expected, a read-only folder, a full disk,
argparse's exits), outputs that would overwrite or mix with the inputs, the Burned
In Annotation of synthetic DICOM files, and where the audit figure goes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from ganaug.cli import main as ganaug_main
from ganaug.io import load_images, write_dicom, write_png

CT_SMALL = get_testdata_file("CT_small.dcm")
FAST = ["--epochs", "1", "--base-channels", "4", "--latent-dim", "4"]
FAST += ["--device", "cpu", "--holdout-fraction", "0.2"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ganaug_main(argv)
    return code, out.getvalue(), err.getvalue()


def _expect_one_line_error(argv: list[str], *fragments: str) -> str:
    code, _, err = _run(argv)
    assert code == 2, err
    # Progress lines may come first; the error is one line, the last.
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1, err
    assert err.endswith("\n") and err.splitlines()[-1] == errors[0], err
    assert errors[0].startswith(f"ganaug {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, err)
    return errors[0]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) and its content's hash."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file() and not path.is_symlink()
        else "special"
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """PNG training data in class folders, a labels CSV, and a fitted model."""
    root = tmp_path_factory.mktemp("outputs")
    images = np.random.default_rng(0).integers(0, 255, (16, 1, 16, 16))
    write_png(
        images.astype(np.uint8), root / "data", labels=["normal"] * 10 + ["rare"] * 6
    )
    # Training data are real images: strip the synthetic mark write_png gave them.
    for path in (root / "data").rglob("*.png"):
        with Image.open(path) as picture:
            picture.load()
            plain = picture.copy()
        plain.save(path)
    rows = ["file,label"] + [
        f"{p.relative_to(root / 'data')},{p.parent.name}"
        for p in sorted((root / "data").rglob("*.png"))
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    model = root / "models" / "model.safetensors"
    code, _, err = _run(["fit", str(root / "data"), "-o", str(model), *FAST])
    assert code == 0, err
    return root, model


# ------------------------------------------------ one line instead of tracebacks


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--help"], 0), ([], 2), (["fit"], 2), (["bogus"], 2), (["generate", "m"], 2)],
)
def test_argparse_exits_become_return_codes(argv, code):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert ganaug_main(argv) == code  # no SystemExit escapes
    assert "Traceback" not in err.getvalue()


@pytest.mark.parametrize(
    ("command", "option", "fragment"),
    [
        ("fit", ["--threads", "0"], "--threads"),
        ("generate", ["--threads", "-2"], "--threads"),
        ("fit", ["--image-size", "0"], "--image-size"),
        ("fit", ["--image-size", "-1"], "--image-size"),
        ("fit", ["--holdout-fraction", "2"], "--holdout-fraction"),
        ("fit", ["--holdout-fraction", "-0.1"], "--holdout-fraction"),
    ],
)
def test_bad_option_values_are_one_line_errors(
    fitted, tmp_path, command, option, fragment
):
    root, model = fitted
    if command == "fit":
        argv = ["fit", str(root / "data"), "-o", str(tmp_path / "m.st"), *FAST]
    else:
        argv = ["generate", str(model), "-n", "2", "-o", str(tmp_path / "out")]
    _expect_one_line_error([*argv, *option], fragment)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["png", "dicom", "nifti", "npz"])
def test_generate_into_an_existing_file(fitted, tmp_path, fmt):
    _, model = fitted
    target = tmp_path / "existing"
    target.write_text("keep me")
    _expect_one_line_error(
        ["generate", str(model), "-n", "2", "-o", str(target), "--format", fmt],
        "must be a folder, but it is a file",
    )
    assert target.read_text() == "keep me"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores directory permissions",
)
@pytest.mark.parametrize("fmt", ["png", "dicom", "nifti", "npz", "model"])
def test_read_only_output_folder(fitted, tmp_path, fmt):
    root, model = fitted
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if fmt == "model":
            argv = ["fit", str(root / "data"), "-o", str(locked / "m.st"), *FAST]
        else:
            argv = ["generate", str(model), "-n", "2", "--format", fmt]
            argv += ["-o", str(locked / "out")]
        _expect_one_line_error(argv, "Permission denied")
    finally:
        locked.chmod(0o700)


def _failing_writer(code: int):
    """Stands in for atomic_write on a disk that refuses: full (ENOSPC), over
    quota (EDQUOT), read-only (EROFS) or not ours (EACCES)."""

    class Failing:
        def __init__(self, path):
            self.path = Path(path)

        def __enter__(self):
            raise OSError(code, os.strerror(code), str(self.path))

        def __exit__(self, *exc_info):
            return False

    return Failing


def _fail_image_writes(monkeypatch, failing) -> None:
    """Make every image writer of ganaug.io fail as ``failing`` does."""
    import ganaug.io.dicom
    import ganaug.io.nifti
    import ganaug.io.npz
    import ganaug.io.pictures

    for module in (ganaug.io.dicom, ganaug.io.nifti, ganaug.io.npz, ganaug.io.pictures):
        monkeypatch.setattr(module, "atomic_write", failing)


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_full_disk_while_generating(fitted, tmp_path, monkeypatch, fmt):
    _, model = fitted
    _fail_image_writes(monkeypatch, _failing_writer(errno.ENOSPC))
    _expect_one_line_error(
        ["generate", str(model), "-n", "3", "--format", fmt]
        + ["-o", str(tmp_path / "out")],
        "No space left on device",
        "disk is full",
    )


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_unwritable_output_while_generating(fitted, tmp_path, monkeypatch, code):
    """The read-only folder above, simulated: it runs as root too."""
    _, model = fitted
    _fail_image_writes(monkeypatch, _failing_writer(code))
    _expect_one_line_error(
        ["generate", str(model), "-n", "2", "-o", str(tmp_path / "out")],
        os.strerror(code),
        str(tmp_path / "out"),
    )


@pytest.mark.parametrize("where", ["model", "figures", "label mapping"])
def test_full_disk_while_fitting(fitted, tmp_path, monkeypatch, where):
    import gancore.files
    import gancore.io

    root, _ = fitted
    module = gancore.io if where == "model" else gancore.files
    monkeypatch.setattr(module, "atomic_write", _failing_writer(errno.ENOSPC))
    argv = ["fit", str(root / "data"), "-o", str(tmp_path / "m.st"), *FAST]
    if where == "label mapping":
        argv += ["--pseudonymise-labels", str(tmp_path / "keys" / "map.csv")]
    _expect_one_line_error(argv, "No space left on device")


# ------------------------------------------------------- outputs over inputs


def _fit_cases(root: Path, scratch: Path) -> dict[str, tuple[list[str], str]]:
    data = root / "data"
    a_png = sorted((data / "normal").glob("*.png"))[0]
    os.link(a_png, scratch / "hard_link.png")
    (scratch / "sym_link.png").symlink_to(a_png)
    os.mkfifo(scratch / "fifo")
    np.savez(scratch / "d.npz", images=np.zeros((4, 8, 8)), labels=[0, 0, 1, 1])
    model = str(scratch / "m.st")
    return {
        "a training image": (["-o", str(a_png)], "training"),
        "a training image, spelled otherwise": (
            ["-o", f"{data}/../data/./normal/{a_png.name}"],
            "training",
        ),
        "a hard link to a training image": (
            ["-o", str(scratch / "hard_link.png")],
            "training image",
        ),
        "a symbolic link to a training image": (
            ["-o", str(scratch / "sym_link.png")],
            "training image",
        ),
        "the labels CSV": (
            ["--labels", str(root / "labels.csv"), "-o", str(root / "labels.csv")],
            "labels CSV",
        ),
        "a new file inside the data folder": (
            ["-o", str(data / "model.safetensors")],
            "inside the folder of real images",
        ),
        "the data folder": (["-o", str(data)], "training data"),
        "the checkpoint": (["-o", model, "--checkpoint", model], "checkpoint"),
        "a named pipe": (["-o", str(scratch / "fifo")], "fifo"),
        "the npz it trains on": (
            ["-o", str(scratch / "d.npz")],
            "training data",
        ),
    }


FIT_CASES = [
    "a training image",
    "a training image, spelled otherwise",
    "a hard link to a training image",
    "a symbolic link to a training image",
    "the labels CSV",
    "a new file inside the data folder",
    "the data folder",
    "the checkpoint",
    "a named pipe",
    "the npz it trains on",
]


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_never_writes_over_its_inputs(fitted, tmp_path, case):
    root, _ = fitted
    argv, fragment = _fit_cases(root, tmp_path)[case]
    data = tmp_path / "d.npz" if case == "the npz it trains on" else root / "data"
    before = _snapshot(root / "data"), (root / "labels.csv").read_bytes()
    _expect_one_line_error(["fit", str(data), *argv, *FAST], fragment)
    assert (_snapshot(root / "data"), (root / "labels.csv").read_bytes()) == before
    assert not (tmp_path / "m.st").exists()


GENERATE_CASES = [
    "the data folder",
    "a class folder of the data",
    "a symbolic link to the data folder",
    "the folder holding the model",
    "a folder of real images (without --data)",
    "a NIfTI file inside the data folder",
    "a NIfTI file among real volumes",
    "the model file",
    "a named pipe",
    "a folder where the audit figure goes",
]


def _generate_case(root: Path, model: Path, scratch: Path, case: str) -> list[str]:
    data = root / "data"
    with_data = ["--data", str(data)]
    if case == "the data folder":
        return ["-o", str(data), *with_data]
    if case == "a class folder of the data":
        return ["-o", str(data / "rare"), *with_data]
    if case == "a symbolic link to the data folder":
        (scratch / "link").symlink_to(data)
        return ["-o", str(scratch / "link"), *with_data]
    if case == "the folder holding the model":
        return ["-o", str(model.parent)]
    if case == "a folder of real images (without --data)":
        (scratch / "photos").mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(scratch / "photos" / "x.jpg")
        return ["-o", str(scratch / "photos")]
    if case == "a NIfTI file inside the data folder":
        return ["--format", "nifti", "-o", str(data / "x.nii.gz"), *with_data]
    if case == "a NIfTI file among real volumes":
        import nibabel as nib

        (scratch / "volumes").mkdir()
        volume = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
        nib.save(volume, scratch / "volumes" / "real.nii.gz")
        return ["--format", "nifti", "-o", str(scratch / "volumes" / "syn.nii.gz")]
    if case == "the model file":
        return ["--format", "npz", "-o", str(model)]
    if case == "a named pipe":
        os.mkfifo(scratch / "fifo.npz")
        return ["--format", "npz", "-o", str(scratch / "fifo.npz")]
    if case == "a folder where the audit figure goes":
        (scratch / "out_memorization.png").mkdir()
        return ["-o", str(scratch / "out"), *with_data]
    raise AssertionError(case)


@pytest.mark.parametrize("case", GENERATE_CASES)
def test_generate_never_writes_over_or_among_inputs(fitted, tmp_path, case):
    root, model = fitted
    argv = _generate_case(root, model, tmp_path, case)
    before = _snapshot(root), _snapshot(tmp_path)
    _expect_one_line_error(["generate", str(model), "-n", "2", *argv])
    assert (_snapshot(root), _snapshot(tmp_path)) == before


def test_generate_may_rewrite_its_own_output_and_sit_beside_real_images(
    fitted, tmp_path
):
    root, model = fitted
    out = tmp_path / "synthetic"
    for _ in range(2):  # the second run finds only synthetic images there
        code, _, err = _run(["generate", str(model), "-n", "3", "-o", str(out)])
        assert code == 0, err
    # An .npz is never read as an image: beside real pictures it harms nothing.
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "photo.jpg")
    code, _, err = _run(
        ["generate", str(model), "-n", "2", "--format", "npz"]
        + ["-o", str(tmp_path / "s.npz")]
    )
    assert code == 0, err


# --------------------------------------------------- Burned In Annotation


def _ct_folder(root: Path, values: dict[str, list[str | None]]) -> Path:
    rng = np.random.default_rng(0)
    for offset, (label, flags) in enumerate(values.items()):
        (root / label).mkdir(parents=True)
        for index, flag in enumerate(flags):
            ds = pydicom.dcmread(CT_SMALL)
            if flag is None:
                ds.pop("BurnedInAnnotation", None)
            else:
                ds.BurnedInAnnotation = flag
            pixels = ds.pixel_array.astype(np.int32) + rng.integers(0, 40, (128, 128))
            ds.PixelData = (pixels + 300 * offset).astype(np.int16).tobytes()
            ds.save_as(root / label / f"{index}.dcm")
    return root


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["NO", "NO", "NO"], "NO"),
        (["NO", "YES", "NO"], "YES"),
        (["NO", None, "NO"], None),
        (["NO", "no ", "NO"], "NO"),
    ],
)
def test_loaded_images_say_what_their_headers_say(tmp_path, flags, expected):
    _ct_folder(tmp_path / "scans", {"a": flags, "b": ["NO", "NO"]})
    assert load_images(tmp_path / "scans").burned_in_annotation == expected


def test_pictures_say_nothing_about_burned_in_text(fitted):
    root, _ = fitted
    assert load_images(root / "data").burned_in_annotation is None


@pytest.mark.parametrize(
    ("given", "written"), [("NO", "NO"), ("YES", "YES"), (None, "YES")]
)
def test_dicom_writer_claims_no_only_when_told(tmp_path, given, written):
    [path] = write_dicom(
        np.zeros((1, 8, 8), np.uint8), tmp_path, burned_in_annotation=given
    )
    assert pydicom.dcmread(path).BurnedInAnnotation == written


@pytest.mark.parametrize(
    ("flags", "written"),
    [(["NO"] * 4, "NO"), (["NO", "NO", "YES", "NO"], "YES"), ([None] * 4, "YES")],
)
def test_synthetic_dicom_carries_the_training_images_burned_in_annotation(
    tmp_path, flags, written
):
    scans = _ct_folder(tmp_path / "scans", {"a": flags, "b": ["NO"] * 4})
    model = tmp_path / "m.st"
    code, _, err = _run(
        ["fit", str(scans), "-o", str(model), "--image-size", "16", *FAST]
    )
    assert code == 0, err
    out = tmp_path / "synthetic"
    code, _, err = _run(
        ["generate", str(model), "-n", "3", "-o", str(out), "--format", "dicom"]
    )
    assert code == 0, err
    values = {pydicom.dcmread(p).BurnedInAnnotation for p in out.rglob("*.dcm")}
    assert values == {written}


def test_png_trained_model_writes_yes(fitted, tmp_path):
    _, model = fitted
    out = tmp_path / "synthetic"
    code, _, err = _run(
        ["generate", str(model), "-n", "2", "-o", str(out), "--format", "dicom"]
    )
    assert code == 0, err
    assert {pydicom.dcmread(p).BurnedInAnnotation for p in out.rglob("*.dcm")} == {
        "YES"
    }


# ------------------------------------------------------ the audit figure


@pytest.mark.parametrize(
    ("output", "fmt", "figure"),
    [
        (".", "png", "work_memorization.png"),
        ("./", "dicom", "work_memorization.png"),
        ("out/", "png", "work/out_memorization.png"),
        ("s.npz", "npz", "work/s_memorization.png"),
        ("v.nii.gz", "nifti", "work/v_memorization.png"),
    ],
)
def test_audit_figure_goes_beside_the_output(
    fitted, tmp_path, monkeypatch, output, fmt, figure
):
    root, model = fitted
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, err = _run(
        ["generate", str(model), "-n", "4", "-o", output, "--format", fmt]
        + ["--data", str(root / "data")]
    )
    assert code == 0, err
    assert (tmp_path / figure).is_file()
    assert not list(work.glob(".*"))  # the old "._memorization.png" in the cwd
