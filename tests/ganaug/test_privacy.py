"""ganaug.privacy: the memorisation report catches copies and only copies."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganaug.privacy import memorization_report, nearest_correlation


def _population(n: int, seed: int) -> np.ndarray:
    """Smooth random 16x16 'scans': a few Gaussian blobs each."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(16), np.arange(16), indexing="ij"), -1)
    images = np.zeros((n, 16, 16))
    for image in images:
        for _ in range(3):
            centre = rng.uniform(0, 16, 2)
            image += np.exp(-((grid - centre) ** 2).sum(-1) / rng.uniform(4, 20))
    return images + rng.normal(scale=0.05, size=images.shape)


def test_copies_are_flagged_and_new_samples_are_not(tmp_path):
    train, holdout, fresh = _population(200, 0), _population(200, 1), _population(60, 2)
    rng = np.random.default_rng(3)
    copies = train[:10] + rng.normal(scale=0.01, size=(10, 16, 16))
    synthetic = np.concatenate([fresh, copies])
    report = memorization_report(
        synthetic, train, holdout, figure_path=tmp_path / "pairs.png", n_pairs=6
    )
    assert report.flagged[60:].all()  # every near-copy is caught ...
    assert report.flagged[:60].mean() <= 0.1  # ... and few new images are
    np.testing.assert_array_equal(report.nearest_train_index[60:], np.arange(10))
    assert report.threshold == pytest.approx(np.percentile(report.holdout_distance, 1))
    with Image.open(tmp_path / "pairs.png") as picture:
        assert picture.size[0] > 300
    assert "flagged as possible copies: " in report.summary()


def test_feature_space_and_layouts():
    train, holdout = _population(50, 0), _population(40, 1)
    synthetic = train[:5, None]  # (n, 1, H, W) layout, exact copies
    report = memorization_report(
        synthetic,
        train,
        holdout,
        feature_fn=lambda x: np.asarray(x).reshape(len(x), -1)[:, :64],
    )
    assert report.n_flagged == 5 and report.feature_flagged.all()
    assert report.flagged_fraction == 1.0
    assert "classifier features" in str(report)


def test_nearest_correlation_and_errors():
    refs = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [5.0, 5.0, 5.0]])
    corr, index = nearest_correlation(np.array([[3.0, 2.0, 0.0]]), refs)
    assert index.tolist() == [1] and corr[0] > 0.9
    with pytest.raises(ValueError, match="values per row"):
        nearest_correlation(np.zeros((1, 4)), refs)
    with pytest.raises(ValueError, match="empty"):
        memorization_report(np.zeros((0, 3)), refs, refs)
    with pytest.raises(ValueError, match="percentile"):
        memorization_report(refs, refs, refs, percentile=0)
