"""Quality metrics (FID, KID, precision / recall / density / coverage) and the
classifier of the real images that supplies their features."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ganaug.quality import feature_metrics, quality_report
from ganaug.reference import RealImageClassifier


def test_metrics_order_good_and_bad_generators():
    """A generator that reproduces the real distribution scores near real vs. real;
    one that collapses to a mode loses recall and coverage but keeps precision;
    one that is off the data loses precision and density."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    good = feature_metrics(real, rng.normal(size=(300, 8)))
    collapsed = feature_metrics(real, rng.normal(scale=0.2, size=(300, 8)))
    off = feature_metrics(real, rng.normal(loc=4.0, size=(300, 8)))
    assert good["fid"] < collapsed["fid"] < off["fid"]
    assert good["kid"] < off["kid"]
    assert collapsed["precision"] > 0.9 and collapsed["coverage"] < good["coverage"]
    assert collapsed["recall"] < good["recall"]
    assert off["precision"] < 0.1 and off["density"] < good["density"]


def test_small_classes_give_nan_not_an_error():
    rng = np.random.default_rng(0)
    assert all(
        math.isnan(v)
        for v in feature_metrics(np.ones((1, 3)), np.ones((5, 3))).values()
    )
    reference = rng.normal(size=(30, 3))
    labels = np.array([0] * 29 + [1])
    report = quality_report(
        lambda x: x, reference, labels, reference, labels, reference, labels
    )
    assert math.isnan(report.rows[1]["fid"]) and report.rows[0]["fid"] < 1e-6
    assert "real vs. real" in report.summary()


def test_classifier_finds_a_rare_class_and_is_reproducible():
    """Class-balanced batches: 8 images of a rare class among 120 are still learnt."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(128, 1, 16, 16)).astype(np.float32)
    y = np.array([0] * 120 + [1] * 8)
    X[y == 1, :, 8:] += 1.5  # the rare class is brighter at the bottom
    test = rng.normal(size=(40, 1, 16, 16)).astype(np.float32)
    test_y = np.repeat([0, 1], 20)
    test[test_y == 1, :, 8:] += 1.5
    judge = RealImageClassifier(n_steps=80, random_state=0).fit(X, y)
    recall = (judge.predict(test)[test_y == 1] == 1).mean()
    assert recall >= 0.8 and (judge.predict(test)[test_y == 0] == 0).mean() >= 0.8
    again = RealImageClassifier(n_steps=80, random_state=0).fit(X, y)
    np.testing.assert_array_equal(judge.predict_proba(test), again.predict_proba(test))


def test_classifier_rejects_bad_input():
    with pytest.raises(ValueError, match="one label each"):
        RealImageClassifier().fit(np.zeros((4, 8, 8)), np.zeros(4))
