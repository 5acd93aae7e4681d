"""The score's nearest-neighbour term: the cell search, its index, and the model
files that hold it (ganomaly.neighbours)."""

from __future__ import annotations

import numpy as np
import pytest

from gancore import ModelFileError, load_model, save_model
from ganomaly import GANomalyDetector
from ganomaly._scorer import load_scorer
from ganomaly.model_file import INDEX_TENSORS, INDEX_VERSIONS, MODEL_KIND
from ganomaly.neighbours import CELLS, NeighbourIndex, build_index


def _brute_force(index: NeighbourIndex, rows: np.ndarray) -> np.ndarray:
    """Exact squared distances to the nearest reference in the probed cells, a
    reference equal to the row skipped (when another was searched)."""
    probed = index.probed_cells(rows)
    out = []
    for row, cells in zip(rows, probed, strict=True):
        parts = [index.references[index.starts[c] : index.starts[c + 1]] for c in cells]
        distances = ((np.concatenate(parts) - row) ** 2).sum(axis=1)
        others = distances[distances > 0]
        out.append(others.min() if others.size else 0.0)
    return np.array(out)


@pytest.fixture(scope="module")
def clusters():
    """2,000 training rows in 40 clusters, and 300 new rows near and far."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(40, 6))
    train = centres[rng.integers(40, size=2000)] + rng.normal(size=(2000, 6))
    new = np.vstack(
        [
            centres[rng.integers(40, size=200)] + rng.normal(size=(200, 6)),
            rng.normal(scale=12.0, size=(100, 6)),
        ]
    )
    return train.astype(np.float32), new.astype(np.float32)


def test_search_is_exact_within_the_probed_cells(clusters):
    train, new = clusters
    index = build_index(train, 16384, np.random.default_rng(0))
    assert index.n_cells == CELLS and index.probes == 2
    np.testing.assert_allclose(
        index.squared_distances(new), _brute_force(index, new), rtol=1e-12
    )


def test_search_is_near_the_exact_nearest_neighbour(clusters):
    """Two cells of 128 find the true nearest training row for most rows, and
    never report a distance below it (they search a subset)."""
    train, new = clusters
    index = build_index(train, 16384, np.random.default_rng(0))
    found = index.squared_distances(new)
    references = index.references
    exact = (((new[:, None, :] - references[None]) ** 2).sum(axis=2)).min(axis=1)
    assert (found >= exact * (1 - 1e-12)).all()
    assert np.mean(np.isclose(found, exact, rtol=1e-9)) > 0.9


def test_a_kept_training_row_is_not_its_own_neighbour(clusters):
    """A row equal to a reference gets the distance to the next nearest one: a
    training row scores as a new row would."""
    train, _ = clusters
    index = build_index(train, 16384, np.random.default_rng(0))
    rows = index.references[:50]
    distances = index.squared_distances(rows)
    assert (distances > 0).all()
    np.testing.assert_allclose(distances, _brute_force(index, rows), rtol=1e-12)
    # Alone, a single reference is the only candidate: distance 0.
    single = NeighbourIndex(rows[:1], rows[:1], np.array([0, 1]))
    assert single.squared_distances(rows[:1]).tolist() == [0.0]


def test_gaps_are_the_squares_of_the_distance_that_counts(clusters):
    """The per-feature gaps sum to the distance, and are (x - r)^2 for the
    reference r that counts: the nearest in the probed cells, or the next one
    for a row that is itself a reference."""
    train, new = clusters
    index = build_index(train, 16384, np.random.default_rng(0))
    rows = np.vstack([new, index.references[:20]]).astype(np.float64)
    gaps = np.full(rows.shape, np.nan, dtype=np.float32)
    distances = index.squared_distances(rows, gaps)
    np.testing.assert_allclose(gaps.sum(axis=1), distances, rtol=1e-5)
    for row, cells, found in zip(rows, index.probed_cells(rows), gaps, strict=True):
        searched = np.concatenate(
            [index.references[index.starts[c] : index.starts[c + 1]] for c in cells]
        )
        squares = (searched - row) ** 2
        totals = squares.sum(axis=1)
        totals[totals == 0] = np.inf  # the row itself
        np.testing.assert_allclose(found, squares[totals.argmin()], rtol=1e-6)
    assert (gaps[len(new) :].sum(axis=1) > 0).all()


def test_a_rows_distance_does_not_depend_on_the_rows_around_it(clusters):
    train, new = clusters
    index = build_index(train, 16384, np.random.default_rng(0))
    rows = np.vstack([new, index.references[:99]])
    every = index.squared_distances(rows)
    for start, stop in [(0, 1), (3, 4), (5, 250), (17, 399)]:
        np.testing.assert_array_equal(
            index.squared_distances(rows[start:stop]), every[start:stop]
        )


def test_index_keeps_distinct_rows_up_to_the_cap_and_no_empty_cell():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(500, 3)).astype(np.float32)
    repeated = np.vstack([rows, rows[:200]])
    index = build_index(repeated, 16384, rng)
    assert index.references.shape == (500, 3)  # the repeats once
    assert (np.diff(index.starts) > 0).all()
    capped = build_index(repeated, 100, np.random.default_rng(2))
    assert capped.references.shape[0] <= 100
    few = build_index(rows[:20], 16384, rng)  # fewer rows than cells: one each
    assert few.n_cells == 20
    assert build_index(rows, 0, rng) is None
    # The same generator state, the same index.
    one, two = (build_index(rows, 300, np.random.default_rng(5)) for _ in range(2))
    for name, array in one.arrays().items():
        np.testing.assert_array_equal(array, two.arrays()[name])


@pytest.mark.parametrize(
    "starts",
    [[0, 2, 2, 4], [0, 1, 3], [1, 2, 3, 4], [0, 3, 2, 4]],
    ids=["empty cell", "too few cells", "not from 0", "decreasing"],
)
def test_index_refuses_cells_that_do_not_cover_the_references(starts):
    references = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match="do not cover"):
        NeighbourIndex(references, references[:3], np.array(starts))


@pytest.fixture(scope="module")
def small(transactions):
    X, y = transactions
    return GANomalyDetector(n_epochs=2, random_state=0, device="cpu").fit(X[y == 0])


def test_model_file_holds_the_references_and_scores_the_same(
    small, transactions, tmp_path
):
    X, _ = transactions
    path = tmp_path / "model.safetensors"
    small.save(path)
    tensors, config = load_model(path, kind=MODEL_KIND)
    assert config["version"] == 3 and "neighbour" in config["calibration"]
    assert (
        tensors["calibration.references"].shape[1]
        == small.preprocessor_.n_features_out_
    )
    expected = small.anomaly_score(X.iloc[:300])
    np.testing.assert_array_equal(
        GANomalyDetector.load(path).anomaly_score(X.iloc[:300]), expected
    )
    encoded = small.preprocessor_.transform(X.iloc[:300])
    np.testing.assert_array_equal(load_scorer(path).anomaly_score(encoded), expected)


def test_n_references_0_keeps_training_rows_out_of_the_file(transactions, tmp_path):
    X, y = transactions
    detector = GANomalyDetector(n_epochs=2, n_references=0, random_state=0).fit(
        X[y == 0]
    )
    assert detector.neighbours_ is None and "neighbour" not in detector.calibration_
    path = tmp_path / "model.safetensors"
    detector.save(path)
    tensors, _ = load_model(path, kind=MODEL_KIND)
    assert not [name for name in tensors if "reference" in name]


def test_no_held_out_rows_no_neighbour_term(transactions):
    """Training rows cannot calibrate their own neighbour distances."""
    X, y = transactions
    detector = GANomalyDetector(n_epochs=1, validation_fraction=0, random_state=0)
    detector.fit(X[y == 0].iloc[:300])
    assert detector.neighbours_ is None and "neighbour" not in detector.calibration_


def test_version_2_files_still_score_without_the_term(transactions, tmp_path):
    """A model file written before the term (version 2: no references) loads and
    scores as it did; version 2 with references is a damaged file."""
    X, y = transactions
    detector = GANomalyDetector(n_epochs=2, n_references=0, random_state=0).fit(
        X[y == 0]
    )
    path = tmp_path / "model.safetensors"
    detector.save(path)
    tensors, config = load_model(path, kind=MODEL_KIND)
    config["version"] = 2
    save_model(path, tensors, config, kind=MODEL_KIND)
    expected = detector.anomaly_score(X.iloc[:100])
    np.testing.assert_array_equal(
        GANomalyDetector.load(path).anomaly_score(X.iloc[:100]), expected
    )


@pytest.mark.parametrize(
    "term, fixture", [("neighbour", "small"), ("known", "labelled")]
)
@pytest.mark.parametrize(
    "damage, message",
    [
        ("drop", "'{term}' term without its tensors"),
        ("shape", "{term} tensors have shapes"),
        ("version", "'{term}' term in a version {version} model"),
        ("calibration", "without the '{term}' term"),
    ],
)
def test_damaged_index_tensors_are_refused(
    term, fixture, damage, message, request, tmp_path
):
    """The tensors of the nearest-row and known-anomaly terms: all or none, in a
    file of a version that has the term, and only with the term's calibration."""
    detector = request.getfixturevalue(fixture)
    if isinstance(detector, tuple):  # labelled: (detector, unseen frauds)
        detector = detector[0]
    path = tmp_path / "model.safetensors"
    detector.save(path)
    tensors, config = load_model(path, kind=MODEL_KIND)
    names = INDEX_TENSORS[term]
    version = INDEX_VERSIONS[term] - 1
    if damage == "drop":
        for name in names:
            del tensors[name]
    elif damage == "shape":
        tensors[names[0]] = tensors[names[0]][:, :2]
    elif damage == "version":
        config["version"] = version
    else:
        del config["calibration"][term]
    save_model(path, tensors, config, kind=MODEL_KIND)
    expected = message.format(term=term, version=version)
    with pytest.raises(ModelFileError, match=expected):
        GANomalyDetector.load(path)
    with pytest.raises(ModelFileError, match=expected):
        load_scorer(path)
