"""Hostile DICOM folders, and identifiers that must never reach synthetic output."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ganaug.cli import main as ganaug_main
from ganaug.io import load_images

CT_SMALL = get_testdata_file("CT_small.dcm")
JPEG_LS = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
NO_DECODER = not any(
    importlib.util.find_spec(name) for name in ("jpeg_ls", "libjpeg", "gdcm")
)

IDENTIFIERS = {
    "PatientName": "Doe^Jane^Fuzzcase",
    "PatientID": "PID-938172",
    "PatientBirthDate": "19510203",
    "StudyDate": "20190412",
    "SeriesDate": "20190412",
    "AcquisitionDate": "20190413",
    "ContentDate": "20190414",
    "InstitutionName": "St Example Hospital",
    "InstitutionAddress": "12 Nowhere Street",
    "ReferringPhysicianName": "Who^Doctor",
    "AccessionNumber": "ACC778199",
    "StudyID": "STUDY4471",
    "StationName": "SCANNER-B7",
}


def _hostile_folder(root: Path) -> tuple[set[str], set[str]]:
    """Good and bad files mixed; returns (good names, bad names)."""
    root.mkdir(parents=True, exist_ok=True)
    good, bad = set(), set()
    for index in range(3):
        ds = pydicom.dcmread(CT_SMALL)
        ds.InstanceNumber = index + 1
        name = f"good{index}.dcm"
        ds.save_as(root / name)
        good.add(name)
    data = Path(CT_SMALL).read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (root / "truncated_header.dcm").write_bytes(data[:200])
    rng = np.random.default_rng(0)
    (root / "random.dcm").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    (root / "empty.dcm").write_bytes(b"")
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelData
    ds.save_as(root / "no_pixels.dcm")
    bad |= {
        "truncated.dcm",
        "truncated_header.dcm",
        "random.dcm",
        "empty.dcm",
        "no_pixels.dcm",
    }
    if NO_DECODER:
        shutil.copy(JPEG_LS, root / "jpeg_ls.dcm")
        bad.add("jpeg_ls.dcm")
    return good, bad


def test_hostile_folder_skips_each_bad_file_by_name(tmp_path):
    good, bad = _hostile_folder(tmp_path / "scans")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_images(tmp_path / "scans", image_size=32)
    messages = [str(w.message) for w in caught]
    for name in sorted(bad):
        assert any(name in m for m in messages), (name, messages)
    assert {Path(s).name for s in loaded.sources} == good
    assert loaded.images.shape == (len(good), 1, 32, 32)
    assert np.isfinite(loaded.images).all()
    if NO_DECODER:
        hint = [m for m in messages if "jpeg_ls.dcm" in m]
        assert "pip install" in hint[0], hint


def test_hostile_folder_strict_names_the_first_bad_file(tmp_path):
    _, bad = _hostile_folder(tmp_path / "scans")
    with pytest.raises(ValueError) as info:
        load_images(tmp_path / "scans", image_size=32, strict=True)
    assert any(name in str(info.value) for name in bad)


def test_ganaug_fit_runs_through_a_hostile_folder(tmp_path):
    """The command line reports every bad file and trains on the good ones."""
    scans = tmp_path / "scans"
    for label in ("a", "b"):
        _hostile_folder(scans / label)
    err = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("always")
        code = ganaug_main(_fit_args(scans, tmp_path / "m.safetensors"))
    assert code == 0, err.getvalue()
    shown = err.getvalue() + "\n".join(str(w.message) for w in caught)
    assert "6 images" in shown, shown
    for name in ("truncated.dcm", "random.dcm", "no_pixels.dcm", "empty.dcm"):
        assert shown.count(name) >= 2, name  # once per class folder


def _fit_args(data: Path, model: Path) -> list[str]:
    return [
        "fit",
        str(data),
        "-o",
        str(model),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--base-channels",
        "4",
        "--latent-dim",
        "4",
        "--holdout-fraction",
        "0.2",
        "--device",
        "cpu",
    ]


def _identified_folder(root: Path) -> list[str]:
    """Two classes of CT images carrying identifiers; returns the input UIDs."""
    uids = []
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(5):
            ds = pydicom.dcmread(CT_SMALL)
            for keyword, value in IDENTIFIERS.items():
                setattr(ds, keyword, value)
            pixels = ds.pixel_array.astype(np.int32)
            pixels += rng.integers(0, 40, pixels.shape) + (300 if label == "b" else 0)
            dtype = ds.pixel_array.dtype
            ds.PixelData = np.clip(pixels, 0, 4000).astype(dtype).tobytes()
            ds.InstanceNumber = index + 1
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            uids += [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID]
            ds.save_as(root / label / f"{index}.dcm")
    return uids


def test_synthetic_dicom_carries_no_identifier_or_date(tmp_path):
    uids = _identified_folder(tmp_path / "scans")
    model = tmp_path / "m.safetensors"
    out = tmp_path / "synthetic"
    with contextlib.redirect_stdout(io.StringIO()):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert ganaug_main(_fit_args(tmp_path / "scans", model)) == 0, err
            code = ganaug_main(
                [
                    "generate",
                    str(model),
                    "-n",
                    "4",
                    "-o",
                    str(out),
                    "--format",
                    "dicom",
                    "--seed",
                    "0",
                    "--data",
                    str(tmp_path / "scans"),
                ]
            )
    assert code == 0
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 4
    forbidden = [*IDENTIFIERS.values(), *uids, "Doe", "Fuzzcase"]
    # Neither the synthetic files nor the model that made them hold any of them.
    for path in [*written, model]:
        raw = path.read_bytes()
        for value in forbidden:
            assert value.encode() not in raw, (path.name, value)
    input_dates = {v for k, v in IDENTIFIERS.items() if k.endswith("Date")}
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.SyntheticData == "YES"
        for element in ds.iterall():
            if element.VR in ("DA", "DT", "PN", "LO", "SH", "CS", "UI", "ST", "LT"):
                value = str(element.value)
                assert not any(d in value for d in input_dates), element
                assert value not in IDENTIFIERS.values(), element
