"""What could tie synthetic output back to a patient, and the checks against it.

Two ways out for a patient's identity, one home for the rules against each:

* **Text.** A class label becomes folder names, file names, DICOM Image Comments,
  NIfTI/NPZ contents and the model's configuration. A PACS export whose folders are
  named ``DOE^JANE_PID-55501`` would carry the patient's name and ID into all of
  them. :func:`identifying_reason` is the one test of whether a text looks
  identifying: it compares it with the identifying values of the images' own
  headers (:class:`IdentifierSet`) and with the shapes of names, dates and ID
  numbers. :func:`check_labels` refuses identifying labels with that test, and
  :func:`pseudonymise_labels` replaces labels by ``class_0, class_1, ...``.
* **Pixels.** A GAN trained on a few hundred scans can reproduce some of them
  almost exactly, and a copied chest X-ray re-identifies its patient.
  :func:`memorization_report` compares, for every synthetic image, the distance to
  its nearest training image with the same nearest-training distance of *held-out*
  real images: a held-out image is a new patient, so a synthetic image much closer
  to a training image than (almost) any new patient is suspect.
"""

from __future__ import annotations

import csv
import datetime
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "IdentifierSet",
    "IdentifyingLabelError",
    "MemorizationReport",
    "check_labels",
    "identifying_reason",
    "memorization_report",
    "nearest_correlation",
    "pseudonymise_labels",
    "safe_display_name",
    "source_similarity",
    "write_label_mapping",
]


# ------------------------------------------------------------ identifying text


class IdentifyingLabelError(ValueError):
    """A label, or another text headed for an output, looks like it identifies a
    patient; the message says which text, why, and how to proceed."""


# Every person name (VR PN) and date (DA, DT) of a header counts, wherever it is;
# these are the other text attributes of the de-identification profile (DICOM PS3.15
# Table E.1-1) whose value names a patient, a visit or the place it happened.
_IDENTIFYING_VRS = frozenset({"PN", "DA", "DT"})
_ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "AccessionNumber",
        "StudyID",
        "MedicalRecordLocator",
        "AdmissionID",
        "ServiceEpisodeID",
        "RequestedProcedureID",
        "PerformedProcedureStepID",
        "ScheduledProcedureStepID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "DeviceSerialNumber",
        "PatientTelephoneNumbers",
    }
)
_PLACE_KEYWORDS = frozenset(
    {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "PatientAddress",
        "RegionOfResidence",
    }
)
# Words that, followed by a number, make it a patient's or a visit's number.
_ID_WORDS = frozenset(
    {
        "id",
        "pid",
        "mrn",
        "patid",
        "patientid",
        "patient",
        "pat",
        "pt",
        "acc",
        "accession",
        "accno",
        "acn",
        "ssn",
        "nhs",
        "dob",
        "birth",
        "born",
        "case",
    }
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TOKEN = re.compile(r"[^\W\d_]+|\d+")
# A value this short (joined letters and digits) matches only as whole words: "li"
# would otherwise be found in "malignant". Longer ones also match inside words.
_MIN_VALUE = 3
_MIN_SUBSTRING = 5


def _tokens(text: str) -> tuple[str, ...]:
    """The words and numbers of a text, case-folded: ``DoeJane_PID-55501`` gives
    ``('doe', 'jane', 'pid', '55501')``."""
    return tuple(t.casefold() for t in _TOKEN.findall(_CAMEL.sub(" ", str(text))))


def _date_forms(value: str) -> list[str]:
    """A DICOM date (YYYYMMDD, or the start of a date-time) in the spellings a
    folder name might use."""
    digits = value.strip()[:8]
    if len(digits) != 8 or not digits.isdigit():
        return [value]
    year, month, day = digits[:4], digits[4:6], digits[6:]
    return [
        digits,
        f"{year}-{month}-{day}",
        f"{day}-{month}-{year}",
        f"{month}-{day}-{year}",
    ]


def _name_forms(value: str) -> list[str]:
    """A DICOM person name (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``, groups split by
    ``=``) as written in its forms: ``DOE^JANE``, ``DOE JANE``, ``Jane Doe`` and
    each component."""
    forms = []
    for group in value.split("="):
        parts = [part.strip() for part in group.split("^")]
        named = [part for part in parts if part]
        if not named:
            continue
        forms.append(" ".join(named))
        if len(parts) > 1 and parts[0] and parts[1]:
            forms += [f"{parts[0]} {parts[1]}", f"{parts[1]} {parts[0]}"]
        forms += named
    return forms


def _valid_date(year: str, month: str, day: str) -> bool:
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return 1850 <= int(year) <= 2150


_DIGIT_RUN = re.compile(r"\d+")
_SEPARATED_DATE = re.compile(r"(?<!\d)(\d{1,4})[-._/ ](\d{1,2})[-._/ ](\d{1,4})(?!\d)")
_GROUPED_NUMBER = re.compile(r"\d+(?:[-./ ]\d+)+")
_EMAIL = re.compile(r"[^\W_]@[^\W_]")


def _shape_reason(text: str) -> str | None:
    """Why ``text`` has the shape of a person name, a date or an ID number, or None."""
    if "^" in text:
        return "it has the form of a DICOM person name (FAMILY^GIVEN)"
    if _EMAIL.search(text):
        return "it looks like an e-mail address"
    for match in _SEPARATED_DATE.finditer(text):
        first, middle, last = match.groups()
        if (len(first) == 4 and _valid_date(first, middle, last)) or (
            len(last) == 4
            and (_valid_date(last, middle, first) or _valid_date(last, first, middle))
        ):
            return f"it holds a date ({match.group(0)})"
    for run in _DIGIT_RUN.findall(text):
        if len(run) == 8 and _valid_date(run[:4], run[4:6], run[6:]):
            return f"it holds a date ({run}, YYYYMMDD)"
        if len(run) >= 6:
            return (
                f"it holds a {len(run)}-digit number, the shape of a patient, "
                "accession or record number"
            )
    for match in _GROUPED_NUMBER.finditer(text):
        digits = sum(ch.isdigit() for ch in match.group(0))
        if digits >= 7:
            return (
                f"it holds a {digits}-digit number in groups ({match.group(0)}), the "
                "shape of a phone, record or UID number"
            )
    words = _tokens(text)
    for word, following in zip(words, words[1:], strict=False):
        if word in _ID_WORDS and following.isdigit() and len(following) >= 2:
            return f"it holds an identifier ({word.upper()} {following})"
    return None


class IdentifierSet:
    """Identifying values read from image headers, to screen labels and names with.

    Collects every person name, date and date-time of a DICOM header (nested
    sequences included) and its patient, visit and place identifiers (Patient ID,
    Other Patient IDs, Accession Number, Study ID, Institution Name, ...).
    :meth:`match` tells whether a text contains one of them, as words (``DOE JANE``
    and ``jane_doe`` both contain the name ``DOE^JANE``) or, for values of five or
    more letters and digits, anywhere (``doejane``).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> import pydicom
    >>> ids = IdentifierSet()
    >>> header = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    >>> ids.add_dicom(header, "CT_small.dcm")
    >>> ids.match("CompressedSamples_ct1")
    'the PatientName of CT_small.dcm'
    >>> ids.match("normal") is None
    True
    """

    def __init__(self) -> None:
        # token tuple -> where it was seen ("the PatientName of FILE")
        self._by_tokens: dict[tuple[str, ...], str] = {}
        self._by_first: dict[str, list[tuple[str, ...]]] = {}

    def __len__(self) -> int:
        return len(self._by_tokens)

    def add(self, value: str, field_name: str, source: str) -> None:
        """Add one value (with the forms of its kind, see :meth:`add_dicom`)."""
        tokens = _tokens(value)
        if len("".join(tokens)) < _MIN_VALUE and not (
            field_name.endswith("Name") and len("".join(tokens)) >= 2
        ):
            return
        if tokens not in self._by_tokens:
            self._by_tokens[tokens] = f"the {field_name} of {source}"
            self._by_first.setdefault(tokens[0], []).append(tokens)

    def add_dicom(self, dataset, source: str) -> None:
        """Add the identifying values of a pydicom dataset read from ``source``."""
        from pydicom.multival import MultiValue

        for element in dataset.iterall():
            keyword = element.keyword or str(element.tag)
            if element.VR in _IDENTIFYING_VRS:
                kind = element.VR
            elif keyword in _ID_KEYWORDS:
                kind = "ID"
            elif keyword in _PLACE_KEYWORDS:
                kind = "place"
            else:
                continue
            values = element.value
            if values is None or isinstance(values, bytes | bytearray):
                continue
            # A value of VM > 1 is a MultiValue (a list); a person name, though
            # iterable, is one value.
            if not isinstance(values, list | tuple | MultiValue):
                values = [values]
            for value in values:
                text = str(value).strip()
                if not text:
                    continue
                if kind == "PN":
                    forms = _name_forms(text)
                elif kind in ("DA", "DT"):
                    forms = _date_forms(text)
                elif kind == "ID":
                    # The number inside an ID ("ACC778199") identifies on its own.
                    forms = [text] + [
                        run for run in _DIGIT_RUN.findall(text) if len(run) >= 4
                    ]
                else:
                    forms = [text]
                for form in forms:
                    self.add(form, keyword, source)

    def match(self, text: str) -> str | None:
        """Where a value contained in ``text`` was found, or None."""
        words = _tokens(text)
        for start, word in enumerate(words):
            for tokens in self._by_first.get(word, ()):
                if words[start : start + len(tokens)] == tokens:
                    return self._by_tokens[tokens]
        joined = "".join(words)
        for tokens, where in self._by_tokens.items():
            value = "".join(tokens)
            if len(value) >= _MIN_SUBSTRING and value in joined:
                return where
        return None


def identifying_reason(text, identifiers: IdentifierSet | None = None) -> str | None:
    """Why ``text`` looks like it identifies a patient, or None when it does not.

    The one test for every text that ganaug writes from its inputs (class labels,
    file names shown in figures, the model's name in DICOM tags): it contains an
    identifying value of the images' own headers (``identifiers``), or it has the
    shape of one: a DICOM person name (``^``), a date (``20180917``,
    ``2018-09-17``, ``17.09.2018``), a number of six or more digits (a record,
    accession or UID number), an ID word followed by a number (``PID 55501``,
    ``MRN-0042``) or an e-mail address.

    Examples
    --------
    >>> identifying_reason("pneumonia") is None
    True
    >>> identifying_reason("DOE^JANE")
    'it has the form of a DICOM person name (FAMILY^GIVEN)'
    >>> identifying_reason("scan_2018-09-17")
    'it holds a date (2018-09-17)'
    """
    text = str(text)
    if identifiers is not None:
        where = identifiers.match(text)
        if where is not None:
            return f"it contains {where}"
    return _shape_reason(text)


_HOW_TO_PROCEED = (
    "rename the classes, or pseudonymise them (ganaug fit --pseudonymise-labels "
    "MAPPING.csv; in Python load_images(..., pseudonymise_labels=True) or "
    "ganaug.privacy.pseudonymise_labels) to use class_0, class_1, ... and keep the "
    "mapping apart"
)


def check_labels(
    labels: Iterable,
    identifiers: IdentifierSet | None = None,
    *,
    origin: str = "class label",
    how: str = _HOW_TO_PROCEED,
) -> None:
    """Refuse labels that look identifying (:func:`identifying_reason`).

    Parameters
    ----------
    labels : iterable
        Class labels (any type; their text is screened).
    identifiers : IdentifierSet, optional
        Identifying values of the images' headers.
    origin : str
        What the labels are, for the message ("class label (sub-folder of scans)").
    how : str
        What the user can do instead, for the message.

    Raises
    ------
    IdentifyingLabelError
        One line naming the first identifying label, why, and how to proceed.

    Examples
    --------
    >>> check_labels(["normal", "pneumonia"])
    >>> check_labels(["normal", "20180917"])
    Traceback (most recent call last):
    ...
    ganaug.privacy.IdentifyingLabelError: class label '20180917' looks \
identifying: it holds a date (20180917, YYYYMMDD); rename the classes, ...
    """
    for label in sorted({str(label) for label in labels}):
        reason = identifying_reason(label, identifiers)
        if reason is not None:
            raise IdentifyingLabelError(
                f"{origin} {label!r} looks identifying: {reason}; {how}"
            )


def pseudonymise_labels(labels: Sequence) -> tuple[np.ndarray, dict[str, str]]:
    """Replace labels by ``class_0, class_1, ...`` (in the sorted order of the
    labels, so that splits by class come out the same).

    Returns
    -------
    pseudonyms : ndarray of str, shape (n,)
    mapping : dict
        Pseudonym -> original label (as text). Keep it apart from the model and the
        synthetic images: it is the key back to the original labels.

    Examples
    --------
    >>> pseudonyms, mapping = pseudonymise_labels(["DOE^JANE", "ROE^RIC", "DOE^JANE"])
    >>> pseudonyms.tolist(), mapping
    (['class_0', 'class_1', 'class_0'], {'class_0': 'DOE^JANE', 'class_1': 'ROE^RIC'})
    """
    originals, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    width = len(str(max(len(originals) - 1, 0)))
    names = [f"class_{index:0{width}d}" for index in range(len(originals))]
    return np.asarray(names)[codes.ravel()], dict(
        zip(names, originals.tolist(), strict=True)
    )


def write_label_mapping(mapping: dict[str, str], path: str | os.PathLike) -> Path:
    """Write ``pseudonym,original`` rows to a CSV readable by the user only (0600).

    Examples
    --------
    >>> import tempfile
    >>> path = write_label_mapping({"class_0": "a"}, Path(tempfile.mkdtemp()) / "m.csv")
    >>> path.read_text().splitlines()
    ['pseudonym,original', 'class_0,a']
    """
    from gancore.files import atomic_write

    path = Path(path)
    # The key back to the labels is not for the group or the world. atomic_write
    # gives the new file the permissions of the one it replaces: make that 0600
    # first, so that the mapping is never readable by others, not even briefly.
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    elif path.is_file():
        os.chmod(path, 0o600)
    with atomic_write(path) as temp:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["pseudonym", "original"])
            writer.writerows(sorted(mapping.items()))
    return path


def safe_display_name(
    name: str, fallback: str, identifiers: IdentifierSet | None = None
) -> str:
    """``name``, or ``fallback`` when ``name`` looks identifying.

    Examples
    --------
    >>> safe_display_name("scan_017.png", "train 3")
    'scan_017.png'
    >>> safe_display_name("DOE^JANE_20180917.dcm", "train 3")
    'train 3'
    """
    return fallback if identifying_reason(name, identifiers) is not None else name


# ------------------------------------------------------------ memorisation


def _standardize(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A constant image has no defined correlation; a zero row gives r = 0.
    return rows / np.where(norms > 0, norms, 1.0)


def source_similarity(outputs: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Pixel Pearson correlation of each translated image with its own source.

    Examples
    --------
    >>> source = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0]])
    >>> source_similarity(source * 2 + 1, source).round(6).tolist()
    [1.0, 1.0]
    """
    if len(outputs) != len(sources):
        raise ValueError(f"{len(sources)} sources for {len(outputs)} images")
    return np.sum(_standardize(outputs) * _standardize(sources), axis=1)


def nearest_correlation(
    queries: np.ndarray, references: np.ndarray, *, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Highest Pearson correlation of each query with any reference, and which.

    Parameters
    ----------
    queries : array of shape (n, ...)
    references : array of shape (m, ...)
        Flattened to vectors; both must have the same number of values per row.
    chunk_size : int, default=1024
        Queries compared at a time (bounds memory to chunk_size x m).

    Returns
    -------
    correlation : ndarray of shape (n,)
    index : ndarray of shape (n,)
        Index of the nearest reference.

    Examples
    --------
    >>> refs = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    >>> corr, idx = nearest_correlation(np.array([[0.0, 2.0, 4.0]]), refs)
    >>> round(float(corr[0]), 6), int(idx[0])
    (1.0, 0)
    """
    query_rows, reference_rows = _standardize(queries), _standardize(references)
    if query_rows.shape[1] != reference_rows.shape[1]:
        raise ValueError(
            f"queries have {query_rows.shape[1]} values per row but references "
            f"have {reference_rows.shape[1]}"
        )
    best = np.empty(len(query_rows))
    index = np.empty(len(query_rows), dtype=np.int64)
    for start in range(0, len(query_rows), chunk_size):
        similarity = query_rows[start : start + chunk_size] @ reference_rows.T
        index[start : start + chunk_size] = similarity.argmax(axis=1)
        best[start : start + chunk_size] = similarity.max(axis=1)
    return best, index


@dataclass
class MemorizationReport:
    """Result of :func:`memorization_report`.

    Attributes
    ----------
    synthetic_distance : ndarray of shape (n_synthetic,)
        ``1 - r`` to the nearest training image (pixel Pearson correlation r).
    nearest_train_index : ndarray of shape (n_synthetic,)
    holdout_distance : ndarray of shape (n_holdout,)
        The same distance for held-out real images.
    threshold : float
        The ``percentile``-th percentile of ``holdout_distance``.
    flagged : ndarray of shape (n_synthetic,), bool
        Synthetic images closer to a training image than ``threshold``.
    percentile : float
    feature_synthetic_distance, feature_holdout_distance, feature_threshold,
    feature_flagged : optional
        The same in the feature space of ``feature_fn`` when it was given.
    figure_path : Path or None
        The PNG of the closest synthetic/training pairs, when written.
    source_similarity : ndarray of shape (n_synthetic,) or None
        For translated images (``sources`` given): the pixel Pearson correlation
        of each with the real image it was translated from.
    """

    synthetic_distance: np.ndarray
    nearest_train_index: np.ndarray
    holdout_distance: np.ndarray
    threshold: float
    flagged: np.ndarray
    percentile: float
    feature_synthetic_distance: np.ndarray | None = None
    feature_holdout_distance: np.ndarray | None = None
    feature_threshold: float | None = None
    feature_flagged: np.ndarray | None = None
    figure_path: Path | None = field(default=None)
    source_similarity: np.ndarray | None = None

    @property
    def n_flagged(self) -> int:
        """Number of synthetic images flagged in pixel space."""
        return int(self.flagged.sum())

    @property
    def flagged_fraction(self) -> float:
        """Fraction flagged in pixel space (about ``percentile / 100`` if none copy)."""
        return float(self.flagged.mean()) if len(self.flagged) else 0.0

    def summary(self) -> str:
        """A few lines for a terminal or a log."""
        lines = [
            "Memorisation report (nearest training image, 1 - Pearson r of pixels)",
            f"  synthetic images: {len(self.synthetic_distance)}; "
            f"held-out real images: {len(self.holdout_distance)}",
            f"  median distance, synthetic -> train: "
            f"{np.median(self.synthetic_distance):.4f}; held-out -> train: "
            f"{np.median(self.holdout_distance):.4f}",
            f"  threshold (percentile {self.percentile:g} of held-out distances): "
            f"{self.threshold:.4f}",
            f"  flagged as possible copies: {self.n_flagged} "
            f"({100 * self.flagged_fraction:.1f}%; about {self.percentile:g}% "
            "expected without memorisation)",
        ]
        if len(self.holdout_distance) < 100:
            lines.append(
                f"  caution: only {len(self.holdout_distance)} held-out images; the "
                "threshold is a rough estimate"
            )
        if self.feature_flagged is not None:
            lines.append(
                f"  in classifier features: {int(self.feature_flagged.sum())} flagged "
                f"({100 * float(self.feature_flagged.mean()):.1f}%)"
            )
        if self.source_similarity is not None:
            median = float(np.median(self.source_similarity))
            lines.append(
                "  translated images: median correlation with their own source "
                f"{median:.3f} (a held-out image with its nearest training image: "
                f"{1 - float(np.median(self.holdout_distance)):.3f}); each is "
                "derived from one real patient's image and stays close to it"
            )
        if self.figure_path is not None:
            lines.append(f"  closest pairs for visual audit: {self.figure_path}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _as_images(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 4:
        return array[:, 0] if array.shape[1] == 1 else np.moveaxis(array, 1, -1)
    return array


def _shown_name(name: str, index, identifiers: IdentifierSet | None) -> str:
    """A training image's file name for a figure title (shortened), or its index
    when the name looks identifying."""
    name = safe_display_name(name, str(index), identifiers)
    return name if len(name) <= 22 else f"{name[:10]}...{name[-9:]}"


def _save_pairs_figure(
    path: Path,
    synthetic: np.ndarray,
    train: np.ndarray,
    report: MemorizationReport,
    n_pairs: int,
    train_names: Sequence[str] | None = None,
    identifiers: IdentifierSet | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from gancore.files import atomic_write

    order = np.argsort(report.synthetic_distance)[:n_pairs]
    synthetic_images, train_images = _as_images(synthetic), _as_images(train)
    figure, axes = plt.subplots(
        2, len(order), figsize=(1.6 * len(order) + 0.6, 3.6), squeeze=False
    )
    for column, index in enumerate(order):
        partner = report.nearest_train_index[index]
        if train_names is None:
            train_title = f"train {partner}"
        else:
            shown = _shown_name(train_names[partner], partner, identifiers)
            train_title = f"train\n{shown}"
        for row, (image, title) in enumerate(
            (
                (
                    synthetic_images[index],
                    f"syn {index}\nd={report.synthetic_distance[index]:.3f}",
                ),
                (train_images[partner], train_title),
            )
        ):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            axis.set_title(title, fontsize=7)
            axis.axis("off")
    figure.suptitle(
        f"closest synthetic/training pairs (flag threshold d < {report.threshold:.3f})",
        fontsize=9,
    )
    figure.tight_layout()
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)


def memorization_report(
    synthetic: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray,
    *,
    feature_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    percentile: float = 1.0,
    figure_path: str | os.PathLike | None = None,
    n_pairs: int = 8,
    train_names: Sequence[str] | None = None,
    identifiers: IdentifierSet | None = None,
    sources: np.ndarray | None = None,
) -> MemorizationReport:
    """Flag synthetic images that are closer to a training image than new patients are.

    Parameters
    ----------
    synthetic : array of shape (n_synthetic, ...)
        Generated images (any layout; flattened per image).
    train : array of shape (n_train, ...)
        The real images the generator was trained on.
    holdout : array of shape (n_holdout, ...)
        Real images the generator never saw (the reference for "new patient").
    feature_fn : callable, optional
        Maps an image array to features ``(n, k)`` (e.g. a classifier's
        penultimate layer); the same comparison is then also made there.
    percentile : float, default=1.0
        A synthetic image is flagged when its distance is below this percentile
        of the held-out distances.
    figure_path : path-like, optional
        Write the ``n_pairs`` closest synthetic/training pairs there as a PNG.
    n_pairs : int, default=8
    train_names : sequence of str, optional
        The training images' file names, to title them in the figure instead of
        their index; a name that looks identifying
        (:func:`identifying_reason`, with ``identifiers``) is shown as its index.
    identifiers : IdentifierSet, optional
        Identifying values of the training images' headers.
    sources : array of shape (n_synthetic, ...), optional
        For translated images (:class:`ganaug.GANTranslator`): the real image
        each was made from, in order; adds ``source_similarity``.

    Returns
    -------
    MemorizationReport

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(size=(50, 8, 8))
    >>> holdout = rng.normal(size=(30, 8, 8))
    >>> copies = train[:5] + rng.normal(scale=0.01, size=(5, 8, 8))
    >>> report = memorization_report(copies, train, holdout)
    >>> report.n_flagged
    5
    """
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    for name, array in (
        ("synthetic", synthetic),
        ("train", train),
        ("holdout", holdout),
    ):
        if len(array) == 0:
            raise ValueError(f"{name} images are empty; the report needs some of each")
    correlation, index = nearest_correlation(synthetic, train)
    holdout_correlation, _ = nearest_correlation(holdout, train)
    synthetic_distance = 1.0 - correlation
    holdout_distance = 1.0 - holdout_correlation
    threshold = float(np.percentile(holdout_distance, percentile))
    report = MemorizationReport(
        synthetic_distance=synthetic_distance,
        nearest_train_index=index,
        holdout_distance=holdout_distance,
        threshold=threshold,
        flagged=synthetic_distance < threshold,
        percentile=percentile,
    )
    if sources is not None:
        report.source_similarity = source_similarity(synthetic, sources)
    if feature_fn is not None:
        train_features = np.asarray(feature_fn(train))
        feature_correlation, _ = nearest_correlation(
            np.asarray(feature_fn(synthetic)), train_features
        )
        feature_holdout, _ = nearest_correlation(
            np.asarray(feature_fn(holdout)), train_features
        )
        report.feature_synthetic_distance = 1.0 - feature_correlation
        report.feature_holdout_distance = 1.0 - feature_holdout
        report.feature_threshold = float(
            np.percentile(report.feature_holdout_distance, percentile)
        )
        report.feature_flagged = (
            report.feature_synthetic_distance < report.feature_threshold
        )
    if figure_path is not None:
        report.figure_path = Path(figure_path)
        if train_names is not None and len(train_names) != len(train):
            raise ValueError(
                f"{len(train_names)} train_names for {len(train)} training images"
            )
        _save_pairs_figure(
            report.figure_path,
            np.asarray(synthetic),
            np.asarray(train),
            report,
            n_pairs,
            train_names,
            identifiers,
        )
    return report
