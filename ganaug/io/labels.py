"""Class labels of the files read: from a CSV, a dict or sub-folder names, screened
for identifiers before they leave the reader."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..privacy import IdentifierSet, check_labels, pseudonymise_labels

__all__ = ["labels_by_file", "read_labels_csv", "screened_labels"]


def read_labels_csv(path: str | os.PathLike) -> dict[str, str]:
    """Read a CSV of ``file,label`` rows (a header row is optional).

    Recognised header names for the file column: file, filename, path, image;
    for the label column: label, class, target, y. Without a header the first
    two columns are used.

    Returns
    -------
    dict
        File name (as written in the CSV) -> label.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(path, "w").write("file,label\\na.png,normal\\nb.png,pneumonia\\n")
    >>> read_labels_csv(path)
    {'a.png': 'normal', 'b.png': 'pneumonia'}
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [
                row for row in csv.reader(handle) if any(cell.strip() for cell in row)
            ]
    except OSError as err:
        raise ValueError(f"{path}: cannot read the label CSV ({err})") from err
    if not rows:
        raise ValueError(f"{path}: the label CSV is empty; expected rows of file,label")
    header = [cell.strip().lower() for cell in rows[0]]
    file_names = ("file", "filename", "path", "image", "file_name")
    label_names = ("label", "class", "target", "y")
    file_col, label_col = 0, 1
    if any(name in header for name in file_names + label_names):
        file_col = next((header.index(n) for n in file_names if n in header), 0)
        label_col = next((header.index(n) for n in label_names if n in header), 1)
        rows = rows[1:]
    labels = {}
    for line, row in enumerate(rows, start=2):
        if len(row) <= max(file_col, label_col):
            raise ValueError(
                f"{path}: row {line} has {len(row)} columns; expected file,label"
            )
        labels[row[file_col].strip()] = row[label_col].strip()
    return labels


def labels_by_file(
    labels: str | os.PathLike | dict[str, str] | None,
    root: Path,
    source: Path,
    paths: list[Path],
) -> dict[Path, str] | None:
    """The label of each of ``paths`` that has one, or None when there are no labels.

    Parameters
    ----------
    labels : path-like, dict or None
        A label CSV (:func:`read_labels_csv`) or a dict of file name -> label, the
        names relative to the CSV's folder or to ``root``. None: a folder whose
        files all sit in sub-folders takes each sub-folder's name as the label.
    root : Path
        The folder the files were found in (a DICOMDIR's or single file's folder).
    source : Path
        What was read: a folder, or a file.
    paths : list of Path
        The image files found.

    Raises
    ------
    ValueError
        When the CSV or dict names files that do not exist.
    """
    if labels is None:
        if source.is_dir():
            parents = {path.relative_to(source).parts[:-1] for path in paths}
            if parents and all(len(parts) >= 1 for parts in parents):
                return {path: path.relative_to(source).parts[0] for path in paths}
        return None
    if isinstance(labels, dict):
        table, base = labels, root
        csv_name = "the label mapping"
    else:
        table, base = read_labels_csv(labels), Path(labels).parent
        csv_name = str(labels)
    resolved, missing = {}, []
    for name, label in table.items():
        candidates = [Path(name), base / name, root / name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(name)
        else:
            resolved[found.resolve()] = label
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{csv_name} names {len(missing)} file(s) that do not exist "
            f"(looked in {base} and {root}): {shown}"
        )
    return {
        path: resolved[path.resolve()] for path in paths if path.resolve() in resolved
    }


def screened_labels(
    labels: np.ndarray | None,
    identifiers: IdentifierSet,
    origin: str,
    pseudonymise: bool,
) -> tuple[np.ndarray | None, dict[str, str] | None]:
    """The labels as they may leave the reader: refused when one looks identifying,
    or all replaced by ``class_0, class_1, ...`` with ``pseudonymise``.

    Returns
    -------
    labels : ndarray or None
    mapping : dict or None
        Pseudonym -> original label, with ``pseudonymise``.

    Examples
    --------
    >>> screened_labels(np.array(["b", "a"]), IdentifierSet(), "label", True)[1]
    {'class_0': 'a', 'class_1': 'b'}
    """
    if labels is None:
        return None, None
    if pseudonymise:
        return pseudonymise_labels(labels)
    check_labels(labels, identifiers, origin=origin)
    return labels, None
