"""Patient identifiers through class labels: folder names of a PACS export, labels
of a CSV, labels given in Python; none may reach a file name, a folder name, a tag,
an array, the model or a figure."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from ganaug import GANAugmenter
from ganaug.cli import main as ganaug_main
from ganaug.io import (
    load_images,
    write_dicom,
    write_images,
    write_npz,
    write_png,
)
from ganaug.privacy import (
    IdentifierSet,
    IdentifyingLabelError,
    identifying_reason,
    memorization_report,
)

CT_SMALL = get_testdata_file("CT_small.dcm")

# Two patients of a PACS-style export: PATIENT^NAME_PID-ID/STUDYDATE/*.dcm
PATIENTS = {
    "DOE^JANE_PID-55501": {
        "PatientName": "DOE^JANE",
        "PatientID": "PID-55501",
        "StudyDate": "20180917",
        "PatientBirthDate": "19630411",
    },
    "ROE^RICHARD_PID-55502": {
        "PatientName": "ROE^RICHARD",
        "PatientID": "PID-55502",
        "StudyDate": "20190105",
        "PatientBirthDate": "19710822",
    },
}
COMMON = {
    "AccessionNumber": "ACC778199",
    "StudyID": "STUDY4471",
    "InstitutionName": "St Example Hospital",
    "ReferringPhysicianName": "WHO^DOCTOR",
    "OtherPatientIDs": "MRN0099123",
}
FORBIDDEN = [
    "DOE",
    "JANE",
    "ROE",
    "RICHARD",
    "55501",
    "55502",
    "20180917",
    "20190105",
    "Doe",
    "Jane",
]
FAST = [
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


def _header(**values) -> pydicom.Dataset:
    ds = pydicom.dcmread(CT_SMALL, stop_before_pixels=True)
    for keyword, value in {**COMMON, **values}.items():
        setattr(ds, keyword, value)
    return ds


def _pacs_export(root: Path, n_per_patient: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for offset, (folder, tags) in enumerate(PATIENTS.items()):
        study = root / folder / tags["StudyDate"]
        study.mkdir(parents=True)
        for index in range(n_per_patient):
            ds = pydicom.dcmread(CT_SMALL)
            for keyword, value in {**COMMON, **tags}.items():
                setattr(ds, keyword, value)
            pixels = ds.pixel_array.astype(np.int32) + rng.integers(0, 40, (128, 128))
            pixels += 300 * offset
            ds.PixelData = np.clip(pixels, 0, 4000).astype(np.int16).tobytes()
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.InstanceNumber = index + 1
            ds.save_as(study / f"{index}.dcm")
    return root


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ganaug_main(argv)
    return code, out.getvalue(), err.getvalue()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _assert_no_identifier(path: Path, root: Path) -> None:
    """No FORBIDDEN value in the file's path below ``root`` or in its bytes.  A
    DICOM file's UIDs are left out of the byte search: generate_uid writes 39
    random decimal digits, where a 5-digit patient ID turns up by chance (about
    once in 500 files); they carry nothing of a patient."""
    relative = str(path.relative_to(root)).lower()
    raw = path.read_bytes()
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        for element in [*ds.file_meta.iterall(), *ds.iterall()]:
            if element.VR == "UI" and element.value:
                raw = raw.replace(str(element.value).encode(), b"")
    for value in FORBIDDEN:
        assert value.lower() not in relative, (relative, value)
        assert value.encode() not in raw, (relative, value)


# ------------------------------------------------------------ the reported case


def test_pacs_export_folder_names_are_refused_before_anything_is_written(tmp_path):
    scans = _pacs_export(tmp_path / "export")
    model = tmp_path / "models" / "m.safetensors"
    code, _, err = _run(["fit", str(scans), "-o", str(model), *FAST])
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "DOE^JANE_PID-55501" in err and "looks identifying" in err
    assert "--pseudonymise-labels" in err
    assert not (tmp_path / "models").exists()  # no model, no figure


@pytest.fixture(scope="module")
def pseudonymised(tmp_path_factory):
    """A model fitted with --pseudonymise-labels on the PACS export."""
    root = tmp_path_factory.mktemp("pacs")
    scans = _pacs_export(root / "export")
    model = root / "models" / "m.safetensors"
    mapping = root / "keys" / "labels.csv"
    code, _, err = _run(
        ["fit", str(scans), "-o", str(model), "--pseudonymise-labels", str(mapping)]
        + FAST
    )
    assert code == 0, err
    return root, scans, model, mapping


def test_pseudonymised_fit_keeps_identifiers_out_of_the_model(pseudonymised):
    root, _, model, mapping = pseudonymised
    assert sorted(GANAugmenter.load(model).classes_.tolist()) == ["class_0", "class_1"]
    for path in _files(root / "models"):  # the model and its three figures
        _assert_no_identifier(path, root)
    rows = mapping.read_text().splitlines()
    assert rows == [
        "pseudonym,original",
        "class_0,DOE^JANE_PID-55501",
        "class_1,ROE^RICHARD_PID-55502",
    ]
    assert mapping.stat().st_mode & 0o077 == 0  # the key: for the user only


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_pseudonymised_model_generates_without_identifiers(pseudonymised, fmt):
    root, scans, model, _ = pseudonymised
    out = root / f"synthetic_{fmt}"
    code, _, err = _run(
        ["generate", str(model), "-n", "4", "-o", str(out), "--format", fmt]
        + ["--seed", "0", "--data", str(scans)]
    )
    assert code == 0, err
    written = _files(out) + [root / f"synthetic_{fmt}_memorization.png"]
    for path in written:
        _assert_no_identifier(path, root)
    if fmt == "dicom":
        comments = {pydicom.dcmread(p).ImageComments for p in _files(out)}
        assert comments <= {"SYNTHETIC; class class_0", "SYNTHETIC; class class_1"}


@pytest.mark.parametrize("fmt", ["png", "npz", "dicom"])
def test_translated_images_carry_nothing_of_their_sources(pseudonymised, fmt):
    """A translator fitted on the PACS export (pseudonymised), then translate on
    one patient's folder: no name, ID or date of the source files reaches a file
    name, a folder name, a tag, an array or the before/after grid; DICOM outputs
    are new objects that say they are translations."""
    root, scans, _, mapping = pseudonymised
    model = root / "models" / "translator.safetensors"
    keys = root / "keys2" / "labels.csv"
    code, _, err = _run(
        ["fit", str(scans), "-o", str(model), "--method", "translate"]
        + ["--pseudonymise-labels", str(keys)]
        + ["--image-size", "16", "--n-epochs", "1", "--base-channels", "4"]
        + ["--holdout-fraction", "0.2", "--device", "cpu"]
    )
    assert code == 0, err
    source = scans / "DOE^JANE_PID-55501"
    out = root / f"translated_{fmt}"
    code, _, err = _run(
        ["translate", str(model), str(source), "--to", "class_1", "-o", str(out)]
        + ["--format", fmt]
    )
    assert code == 0, err
    written = _files(out) + [root / f"translated_{fmt}_translation.png"]
    for path in [*written, *_files(root / "models")]:
        _assert_no_identifier(path, root)
    if fmt == "dicom":
        originals = {pydicom.dcmread(p).SOPInstanceUID for p in _files(source)}
        for path in _files(out):
            ds = pydicom.dcmread(path)
            assert ds.SyntheticData == "YES" and ds.SOPInstanceUID not in originals
            assert "translated" in ds.DerivationDescription
            assert ds.StudyDate == "" and ds.PatientBirthDate == ""
            assert "InstitutionName" not in ds and "OtherPatientIDs" not in ds


@pytest.mark.parametrize(
    "where",
    ["beside the model", "the model itself", "inside the data"],
)
def test_label_mapping_must_stay_apart_from_the_model(tmp_path, where):
    scans = _pacs_export(tmp_path / "export", n_per_patient=3)
    model = tmp_path / "models" / "m.safetensors"
    mapping = {
        "beside the model": model.parent / "labels.csv",
        "the model itself": model,
        "inside the data": scans / "labels.csv",
    }[where]
    code, _, err = _run(
        ["fit", str(scans), "-o", str(model), "--pseudonymise-labels", str(mapping)]
        + FAST
    )
    if where == "inside the data":
        # Nothing is written among the real images, the key included.
        assert code == 2 and "folder of real images" in err, err
    else:
        assert code == 2 and "label mapping" in err, err
    assert not model.exists() and not mapping.exists()


# ------------------------------------------------- labels from every source


@pytest.mark.parametrize(
    "label",
    [
        "DOE^JANE",  # DICOM person-name form
        "DOE JANE",  # the header's name, spaces
        "Jane Doe",  # given name first
        "jane_doe",
        "JaneDoe",
        "doejane",
        "Doe",  # a component
        "RICHARD",
        "PID-55501",  # Patient ID
        "55502",  # the number inside it
        "ACC778199",  # Accession Number
        "STUDY4471",  # Study ID
        "MRN0099123",  # Other Patient IDs
        "St Example Hospital",  # Institution Name
        "who_doctor",  # Referring Physician Name
        "20180917",  # Study Date
        "2019-01-05",  # Study Date, ISO form
        "11.04.1963",  # Birth Date, European form
    ],
)
def test_csv_labels_matching_header_identifiers_are_refused(tmp_path, label):
    scans = _pacs_export(tmp_path / "export", n_per_patient=2)
    files = sorted(scans.rglob("*.dcm"))
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "file,label\n"
        + "".join(
            f"{path.relative_to(scans)},{label if i % 2 else 'normal'}\n"
            for i, path in enumerate(files)
        )
    )
    with pytest.raises(IdentifyingLabelError) as info:
        load_images(scans, labels=csv)
    message = str(info.value)
    assert label in message and "\n" not in message
    assert "it contains the" in message or "it has the form" in message, message
    loaded = load_images(scans, labels=csv, pseudonymise_labels=True)
    assert set(loaded.labels.tolist()) == {"class_0", "class_1"}
    assert set(loaded.label_mapping.values()) == {label, "normal"}


@pytest.mark.parametrize(
    "label",
    [
        "DOE^JANE",
        "20180917",
        "2018-09-17",
        "17.09.2018",
        "09/17/2018",
        "MRN 12345",
        "PID-55501",
        "patient_0042",
        "1234567",
        "1.2.840.113619.2.55",
        "jane.doe@example.org",
        "+44 20 7946 0958",
    ],
)
def test_labels_with_identifier_shapes_are_refused_without_any_header(tmp_path, label):
    images = np.random.default_rng(0).integers(0, 255, (4, 8, 8)).astype(np.uint8)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index}.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("".join(f"{i}.png,{label if i % 2 else 'ok'}\n" for i in range(4)))
    with pytest.raises(IdentifyingLabelError, match="looks identifying"):
        load_images(folder, labels=csv)
    # npz labels (a file of its own) go through the same screen
    np.savez(tmp_path / "d.npz", images=images, labels=[label, "ok", "ok", label])
    with pytest.raises(IdentifyingLabelError):
        load_images(tmp_path / "d.npz")


@pytest.mark.parametrize(
    "label",
    ["normal", "pneumonia", "akiec", "class_10", "covid-19", "T1w", "grade 2", "2019"],
)
def test_ordinary_labels_pass(label):
    assert identifying_reason(label) is None
    ids = IdentifierSet()
    ids.add_dicom(_header(PatientName="DOE^JANE", PatientID="PID-55501"), "x.dcm")
    assert ids.match(label) is None


# ------------------------------------------- every other way out for label text


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_writers_refuse_identifying_labels_before_writing(tmp_path, fmt):
    images = np.zeros((2, 1, 8, 8), np.uint8)
    with pytest.raises(IdentifyingLabelError):
        write_images(images, tmp_path / "out", fmt=fmt, labels=["DOE^JANE", "ok"])
    assert not (tmp_path / "out").exists()


def test_each_writer_screens_on_its_own(tmp_path):
    images = np.zeros((1, 1, 8, 8), np.uint8)
    for write, target in (
        (write_png, tmp_path / "png"),
        (write_dicom, tmp_path / "dcm"),
        (write_npz, tmp_path / "x.npz"),
    ):
        with pytest.raises(IdentifyingLabelError):
            write(images, target, labels=["PID-55501"])
        assert not target.exists()


def test_model_file_refuses_identifying_classes(tmp_path):
    X = np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)
    sampler = GANAugmenter(n_epochs=1, base_channels=4, latent_dim=4, random_state=0)
    sampler.fit_resample(X, np.array(["20180917"] * 6 + ["normal"] * 6))
    with pytest.raises(IdentifyingLabelError, match="20180917"):
        sampler.save(tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def legacy_model(tmp_path, monkeypatch):
    """A model file written before labels were screened: its classes are a
    patient's name (without the ^ form) and a plain class."""
    import ganaug.privacy

    X = np.random.default_rng(0).random((12, 1, 16, 16), dtype=np.float32) * 1000
    sampler = GANAugmenter(n_epochs=1, base_channels=4, latent_dim=4, random_state=0)
    sampler.fit_resample(X, np.array(["Jane Doe"] * 6 + ["normal"] * 6))
    with monkeypatch.context() as patch:
        patch.setattr(ganaug.privacy, "check_labels", lambda *a, **k: None)
        sampler.save(tmp_path / "legacy.safetensors")
    return tmp_path / "legacy.safetensors"


def test_generate_screens_a_models_classes_against_the_data(tmp_path, legacy_model):
    scans = _pacs_export(tmp_path / "export", n_per_patient=2)
    out = tmp_path / "synthetic"
    code, _, err = _run(
        ["generate", str(legacy_model), "-n", "2", "-o", str(out), "--data", str(scans)]
    )
    assert code == 2 and "'Jane Doe' looks identifying" in err, err
    assert "PatientName" in err and not out.exists()


def test_generate_refuses_a_models_class_with_an_identifier_shape(
    tmp_path, monkeypatch
):
    import ganaug.privacy

    X = np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)
    sampler = GANAugmenter(n_epochs=1, base_channels=4, latent_dim=4, random_state=0)
    sampler.fit_resample(X, np.array(["DOE^JANE"] * 6 + ["normal"] * 6))
    with monkeypatch.context() as patch:
        patch.setattr(ganaug.privacy, "check_labels", lambda *a, **k: None)
        sampler.save(tmp_path / "legacy.safetensors")
    for fmt in ("png", "npz", "nifti", "dicom"):
        out = tmp_path / fmt
        code, _, err = _run(
            ["generate", str(tmp_path / "legacy.safetensors"), "-n", "2"]
            + ["-o", str(out), "--format", fmt]
        )
        assert code == 2 and "DOE^JANE" in err and not out.exists(), err


def test_memorisation_figure_names_training_images_but_not_identifying_names(
    monkeypatch,
):
    import matplotlib.axes

    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_title",
        lambda self, label, *a, **k: titles.append(label) or original(self, label),
    )
    rng = np.random.default_rng(0)
    train = rng.normal(size=(4, 8, 8))
    names = ["scan_a.png", "DOE^JANE_1.dcm", "jane_doe.png", "IM000123.dcm"]
    ids = IdentifierSet()
    ids.add_dicom(_header(PatientName="DOE^JANE"), "x.dcm")
    memorization_report(
        train + rng.normal(scale=0.01, size=train.shape),
        train,
        rng.normal(size=(5, 8, 8)),
        figure_path=Path(__import__("tempfile").mkdtemp()) / "f.png",
        n_pairs=4,
        train_names=names,
        identifiers=ids,
    )
    shown = " ".join(titles)
    assert "scan_a.png" in shown
    for hidden in ("DOE", "jane", "IM000123"):
        assert hidden not in shown, shown
    assert "train\n1" in titles and "train\n2" in titles and "train\n3" in titles


@pytest.mark.parametrize("identifying", [True, False])
def test_fit_figure_titles_training_images_by_a_safe_name(
    tmp_path, monkeypatch, identifying
):
    """The fit's own memorisation figure, from the command line: training files
    are shown by name, except names that carry the patient's (by index)."""
    import matplotlib.axes

    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_title",
        lambda self, label, *a, **k: titles.append(label) or original(self, label),
    )
    scans = tmp_path / "scans"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (scans / label).mkdir(parents=True)
        for index in range(5):
            ds = pydicom.dcmread(CT_SMALL)
            ds.PatientName = "DOE^JANE"
            name = f"DOE_JANE_{label}{index}.dcm" if identifying else f"s{index}.dcm"
            pixels = ds.pixel_array.astype(np.int32) + rng.integers(0, 40, (128, 128))
            ds.PixelData = pixels.astype(np.int16).tobytes()
            ds.save_as(scans / label / name)
    code, _, err = _run(["fit", str(scans), "-o", str(tmp_path / "m.st"), *FAST])
    assert code == 0, err
    shown = [title.split("\n", 1)[1] for title in titles if title.startswith("train")]
    assert shown, titles
    if identifying:
        assert all(name.isdigit() for name in shown), shown
    else:
        assert all(name.startswith("s") and name.endswith(".dcm") for name in shown)
