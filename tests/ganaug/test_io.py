"""ganaug.io: DICOM / NIfTI / PNG readers and synthetic-marked writers."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from ganaug.io import (
    ImageReadError,
    load_images,
    read_dicom,
    read_dicomdir,
    read_labels_csv,
    read_nifti,
    read_picture,
    resize_images,
    scale_intensity,
    write_dicom,
    write_images,
    write_nifti,
    write_npz,
    write_png,
)

CT_SMALL = get_testdata_file("CT_small.dcm")


# ------------------------------------------------------------------- DICOM


def test_modality_lut_gives_hounsfield_units():
    ds = pydicom.dcmread(CT_SMALL)
    frames = read_dicom(CT_SMALL)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert frames.shape == (1, 1, 128, 128) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[0, 0], expected)


def test_modality_lut_sequence_is_applied():
    path = get_testdata_file("mlut_18.dcm")  # from pydicom-data
    if path is None:
        pytest.skip("pydicom-data is not installed")
    ds = pydicom.dcmread(path)
    assert "ModalityLUTSequence" in ds and "RescaleSlope" not in ds
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    assert not np.array_equal(expected, ds.pixel_array)  # the LUT changes values
    np.testing.assert_array_equal(read_dicom(path)[0, 0], expected)


@pytest.mark.parametrize(
    "groups", ["PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"]
)
def test_rescale_of_enhanced_objects_comes_from_functional_groups(tmp_path, groups):
    ds = pydicom.dcmread(CT_SMALL)
    stored = ds.pixel_array.astype(np.float64)
    del ds.RescaleSlope, ds.RescaleIntercept
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = "0.5", "-100"
    transform.RescaleType = "HU"
    item = Dataset()
    item.PixelValueTransformationSequence = [transform]
    setattr(ds, groups, [item])
    ds.save_as(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(
        read_dicom(tmp_path / "enhanced.dcm")[0, 0],
        (stored * 0.5 - 100).astype(np.float32),
    )


def test_voi_windows(tmp_path):
    hounsfield = read_dicom(CT_SMALL)[0, 0]
    windowed = read_dicom(CT_SMALL, window=(40, 400))[0, 0]
    np.testing.assert_allclose(windowed, np.clip(hounsfield, -160, 240))
    ds = pydicom.dcmread(CT_SMALL)
    ds.WindowCenter, ds.WindowWidth = 40, 400
    path = tmp_path / "windowed.dcm"
    ds.save_as(path)
    np.testing.assert_allclose(read_dicom(path, window="dicom")[0, 0], windowed)
    ds.WindowCenter, ds.WindowWidth = [40, 500], [400, 2000]  # first one is used
    ds.save_as(path)
    np.testing.assert_allclose(read_dicom(path, window="dicom")[0, 0], windowed)
    with pytest.raises(ValueError, match="window"):
        read_dicom(CT_SMALL, window="bone")


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    plain = read_dicom(CT_SMALL)[0, 0]
    inverted = read_dicom(path)[0, 0]
    np.testing.assert_allclose(inverted, plain.max() + plain.min() - plain)


def test_multiframe_expands_into_frames():
    frames = read_dicom(get_testdata_file("emri_small.dcm"))
    assert frames.shape == (10, 1, 64, 64)
    assert not np.array_equal(frames[0], frames[5])


def test_rgb_dicom_is_channel_first():
    assert read_dicom(get_testdata_file("SC_rgb.dcm")).shape == (1, 3, 100, 100)


def test_real_ct_series_sorted_by_position(shared_data, tmp_path):
    series = shared_data / "ct_dicom_series"
    # Copy under names whose order contradicts the slice order.
    names = {}
    for index, source in enumerate(sorted(series.iterdir(), reverse=True)):
        target = tmp_path / f"slice_{index}"
        shutil.copy(source, target)
        names[str(target)] = pydicom.dcmread(source)
    loaded = load_images(tmp_path)
    assert loaded.images.shape == (4, 1, 16, 16)
    z = [float(names[source].ImagePositionPatient[2]) for source in loaded.sources]
    assert z == sorted(z)
    numbers = [int(names[source].InstanceNumber) for source in loaded.sources]
    assert numbers == [18, 180, 181, 182]  # numeric, not string, order
    assert loaded.images.min() < -500  # Hounsfield units (air)


def test_series_without_position_sorted_by_instance_number(tmp_path):
    for number in (10, 2, 1):
        ds = pydicom.dcmread(CT_SMALL)
        del ds.ImagePositionPatient
        ds.InstanceNumber = number
        ds.save_as(tmp_path / f"n{number}.dcm")
    loaded = load_images(tmp_path)
    assert [s.split("/")[-1] for s in loaded.sources] == ["n1.dcm", "n2.dcm", "n10.dcm"]


def test_dicomdir():
    path = get_testdata_file("DICOMDIR")
    loaded = load_images(path, image_size=32)
    assert loaded.images.shape[1:] == (1, 32, 32) and len(loaded.images) > 10
    direct = read_dicomdir(path)
    assert direct.images.ndim == 4 and len(direct.sources) == len(direct.images)


def test_dicomdir_reader_sorts_each_series_by_position():
    loaded = read_dicomdir(get_testdata_file("DICOMDIR"))
    headers = [pydicom.dcmread(s, stop_before_pixels=True) for s in loaded.sources]
    series = [str(header.SeriesInstanceUID) for header in headers]
    assert series == sorted(series)  # one run per series

    def along_normal(header):
        orientation = np.asarray(header.ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        return float(normal @ np.asarray(header.ImagePositionPatient, dtype=float))

    for uid in set(series):
        run = [h for h in headers if h.SeriesInstanceUID == uid]
        if all("ImagePositionPatient" in h for h in run):
            positions = [along_normal(h) for h in run]
            assert positions == sorted(positions)
    # The headers' identifiers come with the images, as from load_images.
    assert loaded.identifiers.match(str(headers[0].PatientID)) is not None


def test_one_table_classifies_every_kind(tmp_path):
    from ganaug.io.formats import FILE_KINDS, classify_file

    for kind in FILE_KINDS.values():
        for suffix in kind.suffixes:
            assert classify_file(tmp_path / f"x{suffix.upper()}") == kind.name
    assert classify_file(tmp_path / "DICOMDIR") == "dicomdir"
    shutil.copy(CT_SMALL, tmp_path / "1234")  # PACS exports: no suffix
    (tmp_path / "notes").write_text("not an image")
    assert classify_file(tmp_path / "1234") == "dicom"
    assert classify_file(tmp_path / "notes") is None
    assert classify_file(tmp_path / "notes.txt") is None
    assert load_images(tmp_path).sources == [str(tmp_path / "1234")]


def test_pixel_budget_raised_on_the_package_is_the_one_readers_use(
    tmp_path, monkeypatch
):
    import ganaug.io
    import ganaug.io.checks

    Image.fromarray(np.zeros((20, 20), "uint8")).save(tmp_path / "x.png")
    monkeypatch.setattr(ganaug.io, "PIXEL_BUDGET", 100)
    assert ganaug.io.checks.PIXEL_BUDGET == 100
    with pytest.raises(ImageReadError, match="more than the 100 pixel values"):
        read_picture(tmp_path / "x.png")
    monkeypatch.undo()
    assert read_picture(tmp_path / "x.png").shape == (1, 1, 20, 20)


def test_compressed_without_decoder_names_the_package():
    if any(importlib.util.find_spec(name) for name in ("jpeg_ls", "libjpeg", "gdcm")):
        pytest.skip("a JPEG-LS decoder is installed")
    with pytest.raises(ImageReadError, match="pip install") as info:
        read_dicom(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    assert "JPEG-LS" in str(info.value) and "MR_small_jpeg_ls_lossless" in str(
        info.value
    )


def test_corrupt_file_warns_or_raises(tmp_path):
    shutil.copy(CT_SMALL, tmp_path / "good.dcm")
    (tmp_path / "broken.dcm").write_bytes(b"not a dicom file at all")
    with pytest.warns(UserWarning, match="broken.dcm"):
        loaded = load_images(tmp_path)
    assert len(loaded.images) == 1
    with pytest.raises(ImageReadError, match="broken.dcm"):
        load_images(tmp_path, strict=True)


# -------------------------------------------------------- NIfTI, PNG, CSV


def test_nifti_slices_along_each_axis(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    assert read_nifti(path, axis=2).shape == (6, 1, 4, 5)
    assert read_nifti(path, axis=0).shape == (4, 1, 5, 6)
    np.testing.assert_array_equal(read_nifti(path, axis=2)[3, 0], volume[:, :, 3])
    with pytest.raises(ValueError, match="axis"):
        read_nifti(path, axis=3)
    assert load_images(tmp_path, axis=1).images.shape == (5, 1, 4, 6)


def test_png_and_jpeg(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.jpg", quality=95)
    np.testing.assert_array_equal(read_picture(tmp_path / "g.png")[0, 0], grey)
    assert read_picture(tmp_path / "c.jpg").shape == (1, 3, 6, 8)


def test_labels_from_csv_and_subfolders(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (4, 8, 8)).astype(np.uint8)
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"img{index}.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nimg0.png,a\nimg1.png,b\nimg2.png,a\n")
    assert read_labels_csv(csv) == {"img0.png": "a", "img1.png": "b", "img2.png": "a"}
    loaded = load_images(tmp_path, labels=csv)
    assert loaded.labels.tolist() == ["a", "b", "a"]  # img3 is not listed
    csv.write_text("img0.png,a\nmissing.png,b\n")
    with pytest.raises(ValueError, match="missing.png"):
        load_images(tmp_path, labels=csv)

    folders = tmp_path / "by_class"
    write_png(images, folders, labels=["x", "y", "y", "x"])
    by_folder = load_images(folders)
    assert sorted(by_folder.labels.tolist()) == ["x", "x", "y", "y"]


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        load_images(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_images(tmp_path)
    assert load_images(tmp_path, image_size=4).images.shape == (2, 1, 4, 4)


def test_npz_and_transforms(tmp_path, shared_data):
    loaded = load_images(shared_data / "pneumoniamnist_28.npz")
    assert loaded.images.shape == (4708, 1, 28, 28)
    assert set(np.unique(loaded.labels).tolist()) == {0, 1}
    resized = resize_images(loaded.images[:3], 16)
    assert resized.shape == (3, 1, 16, 16)
    scaled = scale_intensity(loaded.images[:3])
    assert scaled.min() == 0 and scaled.max() == 1


# ------------------------------------------------------------------ writers


def test_dicom_writer_marks_synthetic_and_copies_no_identifiers(tmp_path):
    source = pydicom.dcmread(CT_SMALL)
    hounsfield = read_dicom(CT_SMALL)
    paths = write_dicom(
        np.concatenate([hounsfield, hounsfield]),
        tmp_path,
        labels=["ct", "ct"],
        model_description="lung.safetensors",
        burned_in_annotation="NO",
    )
    assert len(paths) == 2
    written = [pydicom.dcmread(path) for path in paths]
    for ds in written:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
        assert ds.SyntheticData == "YES"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.ConversionType == "SYN"
        assert ds.BurnedInAnnotation == "NO"
        assert "gankit" in ds.DerivationDescription
        assert "lung.safetensors" in ds.DerivationDescription
        for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert ds[uid].value != source.get(uid)
        assert ds.StudyDate == "" and ds.PatientBirthDate == ""
    assert written[0].SOPInstanceUID != written[1].SOPInstanceUID
    assert written[0].StudyInstanceUID == written[1].StudyInstanceUID
    raw = b"".join(path.read_bytes() for path in paths)
    for value in (
        source.PatientName,
        source.PatientID,
        source.StudyDate,
        source.StudyInstanceUID,
        source.get("InstitutionName", "CT_small-institution"),
    ):
        if str(value):
            assert str(value).encode() not in raw
    # Pixel values come back in Hounsfield units (16-bit with rescale).
    back = read_dicom(paths[0])
    np.testing.assert_allclose(back, hounsfield, atol=0.05 * np.ptp(hounsfield) / 255)


# dcm3tools releases before the 2022 standard do not know Synthetic Data
# (0008,001C), which the issue requires; that one message is tolerated.
_UNKNOWN_SYNTHETIC_TAG = (
    "Error - Attribute with an even group number is not a recognized standard "
    "attribute - (0x0008,0x001c)"
)


@pytest.mark.parametrize(
    "images",
    [
        np.random.default_rng(0).normal(0, 400, (2, 1, 16, 16)).astype(np.float32),
        np.random.default_rng(1).integers(0, 255, (1, 1, 16, 12)).astype(np.uint8),
        np.random.default_rng(2).integers(0, 255, (1, 3, 8, 8)).astype(np.uint8),
    ],
    ids=["float16bit", "uint8", "rgb"],
)
def test_dicom_output_passes_dciodvfy(tmp_path, images):
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    for path in write_dicom(images, tmp_path, model_description="test model"):
        result = subprocess.run(
            [dciodvfy, str(path)], capture_output=True, text=True, timeout=60
        )
        output = result.stdout + result.stderr
        errors = [
            line
            for line in output.splitlines()
            if line.startswith("Error") and not line.startswith(_UNKNOWN_SYNTHETIC_TAG)
        ]
        assert not errors, output
        assert "SCImage" in output  # validated against the Secondary Capture IOD


def test_png_npz_nifti_writers(tmp_path):
    images = np.random.default_rng(0).uniform(-1000, 1000, (3, 1, 8, 8))
    pngs = write_png(images, tmp_path / "png", value_range=(-1000, 1000))
    with Image.open(pngs[0]) as picture:
        assert picture.size == (8, 8) and "gankit" in picture.info["Description"]
    npz = write_npz(images, tmp_path / "s.npz", labels=[0, 1, 1])
    with np.load(npz) as archive:
        np.testing.assert_array_equal(archive["images"], images)
        assert bool(archive["synthetic"])
    nifti = write_nifti(images, tmp_path / "s")
    assert nifti.name == "s.nii.gz" and nib.load(nifti).shape == (8, 8, 3)
    assert b"SYNTHETIC" in bytes(nib.load(nifti).header["descrip"])
    per_class = write_images(
        images, tmp_path / "nii", fmt="nifti", labels=["a", "b", "b"]
    )
    assert sorted(p.name for p in per_class) == [
        "synthetic_a.nii.gz",
        "synthetic_b.nii.gz",
    ]
    with pytest.raises(ValueError, match="format"):
        write_images(images, tmp_path, fmt="tiff")
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_dicom_files_named_by_uid_are_read(tmp_path):
    """PACS exports name files by their UID: ``1.2.840...55.3`` has the "suffix"
    ``.3``, and was skipped without a word; the DICOM preamble decides."""
    import shutil

    from pydicom.data import get_testdata_file

    from ganaug.io import load_images

    folder = tmp_path / "export" / "ct"
    folder.mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "1.2.840.113619.2.55.3")
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "IM0001")
    (folder / "notes.3").write_text("not an image")
    loaded = load_images(tmp_path / "export")
    assert len(loaded.images) == 2
