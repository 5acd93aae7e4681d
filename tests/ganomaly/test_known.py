"""The known-anomaly term of ``use_labels=True``: rows close to the anomalies you
already know score higher, by how much closer they are than a typical normal row,
and rows unlike them keep their score (ganomaly._scorer.BOOST_TERMS)."""

from __future__ import annotations

import numpy as np

from gancore import load_model
from ganomaly import GANomalyDetector
from ganomaly._scorer import RATIO_FLOOR, combine_scores, load_scorer
from ganomaly.model_file import MODEL_KIND


def test_the_model_keeps_the_known_anomalies(labelled, transactions):
    detector, _ = labelled
    X, y = transactions
    n_shown = int((y == 1).sum() + 1) // 2
    assert detector.known_.references.shape == (
        n_shown,
        detector.preprocessor_.n_features_out_,
    )
    assert "known" in detector.calibration_
    # Without labels there is no such term.
    unlabelled = GANomalyDetector(n_epochs=1, random_state=0).fit(X[y == 0])
    assert unlabelled.known_ is None and "known" not in unlabelled.calibration_


def test_closeness_to_a_known_anomaly_multiplies_the_score(labelled, transactions):
    """score = (the other terms' geometric mean) x clip(median / distance, 1, 1000),
    and the frauds not shown gain more than the normal rows do."""
    detector, unseen = labelled
    X, y = transactions
    rows = X.iloc[:600]
    scorer = detector._scorer()
    _, terms = scorer.errors(detector._encode(rows))
    without = {k: v for k, v in scorer.calibration_.items() if k != "known"}
    base = combine_scores(terms, "combined", without)
    median = scorer.calibration_["known"][0]
    boost = np.clip(median / terms["known"][:, 0], 1.0, 1.0 / RATIO_FLOOR)
    np.testing.assert_allclose(detector.anomaly_score(rows), base * boost, rtol=1e-12)
    assert (boost > 1).any() and (boost == 1).any()

    def mean_log_boost(frame):
        _, found = scorer.errors(detector._encode(frame))
        ratio = np.clip(median / found["known"][:, 0], 1.0, 1.0 / RATIO_FLOOR)
        return np.log(ratio).mean()

    normal = X[y == 0].iloc[-300:]
    assert mean_log_boost(unseen) > mean_log_boost(normal) + 0.5


def test_a_labelled_model_file_is_version_4_and_scores_the_same(
    labelled, transactions, tmp_path
):
    detector, _ = labelled
    X, _ = transactions
    path = tmp_path / "model.safetensors"
    detector.save(path)
    tensors, config = load_model(path, kind=MODEL_KIND)
    assert config["version"] == 4
    kept = tensors["calibration.known_anomalies"]
    assert kept.shape == detector.known_.references.shape
    expected = detector.anomaly_score(X.iloc[:300])
    loaded = GANomalyDetector.load(path)
    np.testing.assert_array_equal(loaded.anomaly_score(X.iloc[:300]), expected)
    encoded = detector.preprocessor_.transform(X.iloc[:300])
    np.testing.assert_array_equal(load_scorer(path).anomaly_score(encoded), expected)
