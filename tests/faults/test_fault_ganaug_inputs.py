"""Inputs that are not what they seem: DICOM objects that are not images, files
that declare more pixels than they are worth reading (decompression bombs), and
volumes of NaN or infinite values. Each is skipped with a warning naming it, or
refused under ``strict``, before it costs memory or poisons training."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from ganaug.cli import main as ganaug_main
from ganaug.io import (
    PIXEL_BUDGET,
    ImageReadError,
    load_images,
    read_dicom,
    read_nifti,
    read_picture,
)

CT_SMALL = get_testdata_file("CT_small.dcm")


def _good_ct(folder: Path, n: int = 3) -> set[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = set()
    for index in range(n):
        ds = pydicom.dcmread(CT_SMALL)
        ds.InstanceNumber = index + 1
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(folder / f"good{index}.dcm")
        names.add(f"good{index}.dcm")
    return names


def _load_warned(folder: Path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_images(folder, **kwargs)
    return loaded, [str(w.message) for w in caught if "skipping" in str(w.message)]


# ------------------------------------------------------- not images at all

# pydicom's own test files of SOP classes that carry no image of the patient.
NON_IMAGE_FILES = {
    "liver.dcm": "Segmentation Storage",  # the reported case: 3 "CT" frames
    "liver_1frame.dcm": "Segmentation Storage",
    "rtdose.dcm": "RT Dose Storage",
    "rtplan.dcm": "RT Plan Storage",
    "test-SR.dcm": "Comprehensive SR Storage",
    "reportsi.dcm": "Basic Text SR Storage",
    "waveform_ecg.dcm": "12-lead ECG Waveform Storage",
}
# CT_small relabelled as other non-image SOP classes: the rule is on the class,
# not on what the pixel data look like.
RELABELLED = {
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State Storage",
    "1.2.840.10008.5.1.4.1.1.88.59": "Key Object Selection Document Storage",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data Storage",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF Storage",
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map Storage",
    "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration Storage",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
}
# A private SOP class says nothing: the Modality decides.
PRIVATE_MODALITIES = ["SEG", "RTSTRUCT", "SR", "PR", "KO", "RTDOSE"]


def _non_image_cases(folder: Path) -> dict[str, str]:
    """Write every non-image case into ``folder``; file name -> what it is."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for name, what in NON_IMAGE_FILES.items():
        shutil.copy(get_testdata_file(name), folder / name)
        cases[name] = what
    for uid, what in RELABELLED.items():
        ds = pydicom.dcmread(CT_SMALL)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid
        name = f"as_{uid.rsplit('.', 2)[-2]}_{uid.rsplit('.', 1)[-1]}.dcm"
        ds.save_as(folder / name)
        cases[name] = what
    for modality in PRIVATE_MODALITIES:
        ds = pydicom.dcmread(CT_SMALL)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.3.6.1.4.1.9590.7"
        ds.Modality = modality
        ds.save_as(folder / f"private_{modality}.dcm")
        cases[f"private_{modality}.dcm"] = f"Modality {modality}"
    return cases


def test_non_image_objects_are_skipped_with_a_warning_naming_each(tmp_path):
    good = _good_ct(tmp_path / "scans")
    cases = _non_image_cases(tmp_path / "scans")
    loaded, messages = _load_warned(tmp_path / "scans")
    assert {Path(source).name for source in loaded.sources} == good
    for name, what in cases.items():
        said = [m for m in messages if name in m]
        assert said and what in said[0] and "not an image" in said[0], (name, said)


@pytest.mark.parametrize("name", ["liver.dcm", "rtdose.dcm", "as_88_59.dcm"])
def test_non_image_object_is_an_error_under_strict(tmp_path, name):
    _good_ct(tmp_path / "scans", 1)
    cases = _non_image_cases(tmp_path / "all")
    shutil.copy(tmp_path / "all" / name, tmp_path / "scans" / name)
    with pytest.raises(ImageReadError, match="not an image") as info:
        load_images(tmp_path / "scans", strict=True)
    assert name in str(info.value) and cases[name] in str(info.value)
    with pytest.raises(ImageReadError, match="not an image"):
        read_dicom(tmp_path / "scans" / name)


def test_series_folder_skips_non_images_too(tmp_path):
    good = _good_ct(tmp_path / "series")
    shutil.copy(get_testdata_file("liver.dcm"), tmp_path / "series" / "seg.dcm")
    with pytest.warns(UserWarning, match="seg.dcm.*Segmentation Storage"):
        loaded = load_images(tmp_path / "series")
    assert {Path(source).name for source in loaded.sources} == good


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "image_dfl.dcm"],
)
def test_images_of_every_kind_still_read(name):
    assert read_dicom(get_testdata_file(name)).ndim == 4


def test_private_sop_class_of_an_image_modality_is_read(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.3.6.1.4.1.9590.8"
    ds.save_as(tmp_path / "private_ct.dcm")
    assert read_dicom(tmp_path / "private_ct.dcm").shape == (1, 1, 128, 128)


def test_fit_trains_on_the_images_only(tmp_path):
    """The reported case end to end: a SEG beside CT slices in a class folder."""
    for label in ("a", "b"):
        _good_ct(tmp_path / "scans" / label, 4)
        shutil.copy(get_testdata_file("liver.dcm"), tmp_path / "scans" / label)
    err = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("always")
        code = ganaug_main(
            ["fit", str(tmp_path / "scans"), "-o", str(tmp_path / "m.st")]
            + ["--image-size", "16", "--epochs", "1", "--base-channels", "4"]
            + ["--latent-dim", "4", "--device", "cpu"]
        )
    assert code == 0, err.getvalue()
    assert "8 images" in err.getvalue()  # not 8 + 2 x 3 segmentation frames
    said = [str(w.message) for w in caught if "liver.dcm" in str(w.message)]
    assert len(said) == 2 and "Segmentation Storage" in said[0]


# -------------------------------------------------------------- bombs


def _dataset_offset(raw: bytes) -> int:
    """End of the file meta group of a DICOM file's bytes."""
    group_length = struct.unpack("<I", raw[140:144])[0]  # (0002,0000) UL
    return 144 + group_length


def _deflated_dicom(
    path: Path, rows: int, columns: int, *, frames: int = 1, padding: int = 0
) -> None:
    """A Deflated Explicit VR Little Endian CT file declaring rows x columns x frames
    16-bit pixels of zeros (and ``padding`` bytes of trailing padding), written by
    streaming the deflate: a 16000 x 16000 image is about 500 KB on disk."""
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelData
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    offset = _dataset_offset(raw)
    body = zlib.decompress(raw[offset:], -zlib.MAX_WBITS)
    n_bytes = rows * columns * frames * 2
    squash = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 22)
    with open(path, "wb") as handle:
        handle.write(raw[:offset])
        handle.write(squash.compress(body))
        handle.write(squash.compress(b"\xe0\x7f\x10\x00OW\x00\x00"))
        handle.write(squash.compress(struct.pack("<I", n_bytes)))
        for tail, tag in ((n_bytes, None), (padding, b"\xfc\xff\xfc\xffOB\x00\x00")):
            if tag is not None and tail:
                handle.write(squash.compress(tag + struct.pack("<I", tail)))
            while tail > 0:
                handle.write(squash.compress(zeros[: min(tail, len(zeros))]))
                tail -= len(zeros)
        handle.write(squash.flush())


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A small PNG whose header declares ``width`` x ``height`` pixels."""
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _jpeg_declaring(path: Path, width: int, height: int) -> None:
    """A small JPEG whose frame header (SOF0) declares ``width`` x ``height``."""
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


def _nifti_declaring(path: Path, shape: tuple[int, ...]) -> None:
    """A NIfTI file whose header declares ``shape`` (float32) over a few voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    data = header.binaryblock + b"\x00" * 4 + np.zeros(64, np.float32).tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def _dicom_declaring(path: Path, rows: int, columns: int, frames: int = 1) -> None:
    """An uncompressed CT file whose header declares more than its pixel data."""
    ds = pydicom.dcmread(CT_SMALL)
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.save_as(path)


# name -> (writer, what its warning must say)
BOMBS = {
    "deflated_16000.dcm": (
        lambda p: _deflated_dicom(p, 16000, 16000),
        "16000 x 16000 pixels",
    ),
    "deflated_frames.dcm": (
        lambda p: _deflated_dicom(p, 2048, 2048, frames=40),
        "x 40 frames",
    ),
    "header_only.dcm": (lambda p: _dicom_declaring(p, 30000, 30000), "30000 x 30000"),
    "multiframe.dcm": (lambda p: _dicom_declaring(p, 4096, 4096, 16), "16 frames"),
    "pil_limit.png": (lambda p: _png_declaring(p, 20000, 20000), "400,000,000 pixels"),
    "over_budget.png": (lambda p: _png_declaring(p, 12000, 12000), "12000 x 12000"),
    "wide.jpg": (lambda p: _jpeg_declaring(p, 60000, 3000), "pixel values"),
    "huge.jpg": (lambda p: _jpeg_declaring(p, 30000, 30000), "pixels"),
    "volume.nii": (lambda p: _nifti_declaring(p, (4096, 4096, 64)), "(4096, 4096, 64)"),
    "volume.nii.gz": (
        lambda p: _nifti_declaring(p, (16000, 16000, 1)),
        "(16000, 16000, 1)",
    ),
}


@pytest.fixture(scope="module")
def bomb_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bombs") / "scans"
    _good_ct(folder)
    for name, (write, _) in BOMBS.items():
        write(folder / name)
    return folder


def test_bombs_are_small_on_disk(bomb_folder):
    for name in BOMBS:
        assert (bomb_folder / name).stat().st_size < 2_000_000, name


def test_bombs_are_skipped_before_they_cost_memory(bomb_folder):
    # Imports and caches are not the bombs' cost: loaded first.
    import monai.transforms  # noqa: F401
    import PIL.JpegImagePlugin  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401

    load_images(bomb_folder / "good0.dcm")
    tracemalloc.start()
    try:
        loaded, messages = _load_warned(bomb_folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert {Path(s).name for s in loaded.sources} == {f"good{i}.dcm" for i in range(3)}
    # Reading the 16000 x 16000 file took 4.8 GB; the three good files take ~1 MB,
    # and the headers of the bombs a few inflated KiB each.
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    for name, (_, said) in BOMBS.items():
        found = [m for m in messages if name in m]
        assert found, (name, messages)
        assert said in found[0] and f"{PIXEL_BUDGET:,}" in found[0], found[0]


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_each_bomb_is_an_error_under_strict_and_alone(bomb_folder, tmp_path, name):
    shutil.copy(bomb_folder / name, tmp_path / name)
    with pytest.raises(ImageReadError, match="pixel values") as info:
        load_images(tmp_path / name)
    assert name in str(info.value)


def test_readers_check_the_budget_each(bomb_folder):
    for reader, name in (
        (read_dicom, "deflated_16000.dcm"),
        (read_picture, "pil_limit.png"),
        (read_picture, "over_budget.png"),
        (read_nifti, "volume.nii.gz"),
    ):
        with pytest.raises(ImageReadError, match="decompression bomb"):
            reader(bomb_folder / name)


def test_deflated_file_inflating_beyond_its_header_is_refused(tmp_path):
    """A small image followed by 300 MB of trailing padding, 300 KB on disk."""
    _good_ct(tmp_path / "scans", 1)
    _deflated_dicom(tmp_path / "scans" / "padded.dcm", 64, 64, padding=300 * 2**20)
    loaded, messages = _load_warned(tmp_path / "scans")
    assert len(loaded.images) == 1
    assert any("padded.dcm" in m and "inflate to more" in m for m in messages)


def test_files_within_the_budget_still_read(tmp_path):
    _deflated_dicom(tmp_path / "ok.dcm", 600, 500)
    assert read_dicom(tmp_path / "ok.dcm").shape == (1, 1, 600, 500)
    Image.fromarray(np.zeros((3000, 2000), np.uint8)).save(tmp_path / "big.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert read_picture(tmp_path / "big.png").shape == (1, 1, 3000, 2000)


def test_fit_skips_a_bomb_instead_of_aborting(bomb_folder, tmp_path):
    scans = tmp_path / "scans"
    for label in ("a", "b"):
        _good_ct(scans / label, 3)
        shutil.copy(bomb_folder / "pil_limit.png", scans / label / "bomb.png")
    err = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("always")
        code = ganaug_main(
            ["fit", str(scans), "-o", str(tmp_path / "m.st"), "--image-size", "16"]
            + ["--epochs", "1", "--base-channels", "4", "--latent-dim", "4"]
            + ["--device", "cpu"]
        )
    assert code == 0, err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert sum("bomb.png" in str(w.message) for w in caught) == 2


# ------------------------------------------------------------- NaN, inf


def _volume(path: Path, bad: float | None) -> None:
    volume = np.random.default_rng(0).random((8, 8, 2)).astype(np.float32)
    if bad is not None:
        volume[3, 4, 1] = bad
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_with_nan_or_inf_is_named(tmp_path, bad, suffix):
    for index in range(2):
        _volume(tmp_path / f"ok{index}{suffix}", None)
    _volume(tmp_path / f"bad{suffix}", bad)
    loaded, messages = _load_warned(tmp_path)
    assert len(loaded.images) == 4 and np.isfinite(loaded.images).all()
    assert any(f"bad{suffix}" in m and "NaN or infinite" in m for m in messages)
    with pytest.raises(ImageReadError, match=f"bad{suffix}.*NaN or infinite"):
        load_images(tmp_path, strict=True)
    with pytest.raises(ImageReadError, match=f"bad{suffix}.*1 of 128"):
        read_nifti(tmp_path / f"bad{suffix}")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_names_the_volume_with_nan_or_inf(tmp_path, bad):
    """The reported case: the fit aborted with numpy's "Input X contains NaN"."""
    for label in ("a", "b"):
        (tmp_path / "scans" / label).mkdir(parents=True)
        for index in range(2):
            _volume(tmp_path / "scans" / label / f"ok{index}.nii.gz", None)
    _volume(tmp_path / "scans" / "a" / "bad.nii.gz", bad)
    fit = ["fit", str(tmp_path / "scans"), "-o", str(tmp_path / "m.st")]
    fit += ["--epochs", "1", "--base-channels", "4", "--latent-dim", "4"]
    err = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("always")
        assert ganaug_main([*fit, "--device", "cpu"]) == 0, err.getvalue()
        assert ganaug_main([*fit, "--device", "cpu", "--strict"]) == 2
    said = [str(w.message) for w in caught if "bad.nii.gz" in str(w.message)]
    assert said and "NaN or infinite" in said[0]
    error = err.getvalue().splitlines()[-1]
    assert error.startswith("ganaug fit: error: ") and "bad.nii.gz" in error


def test_dicom_whose_rescale_makes_infinity_is_named(tmp_path):
    _good_ct(tmp_path, 2)
    ds = pydicom.dcmread(CT_SMALL)
    ds.RescaleSlope = "1e999"  # a valid DS string; float("1e999") is inf
    ds.save_as(tmp_path / "inf.dcm")
    loaded, messages = _load_warned(tmp_path)
    assert len(loaded.images) == 2
    assert any("inf.dcm" in m and "NaN or infinite" in m for m in messages)


def test_npz_with_nan_is_named(tmp_path):
    images = np.zeros((4, 8, 8), np.float32)
    images[2, 1, 1] = np.nan
    np.savez(tmp_path / "d.npz", images=images, labels=[0, 0, 1, 1])
    with pytest.raises(ImageReadError, match="d.npz.*NaN or infinite"):
        load_images(tmp_path / "d.npz")
