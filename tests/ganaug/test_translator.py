"""GANTranslator: counts, sources, translation, reproducibility, persistence."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from imblearn.pipeline import make_pipeline
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ganaug import GANTranslator
from gancore import ModelFileError, TranslationGenerator

from .test_sampler import two_class_images

FAST = dict(n_epochs=1, base_channels=4, batch_size=16, device="cpu")
# Translated images only where the classes are short (not the default): the
# counts and sources of these tests are those of the translations alone.
ONLY = dict(rebalance="synthetic", augment_ratio=0.0)


def test_generator_starts_as_the_identity_and_stays_in_range():
    x = torch.rand(3, 2, 8, 8) * 2 - 1
    net = TranslationGenerator((2, 8, 8), n_classes=3, base_channels=4)
    out = net(x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out, x * 0.999, atol=1e-6, rtol=0)
    with torch.no_grad():
        net.change.bias.fill_(50.0)
    assert net(x, torch.tensor([0, 1, 2])).abs().max() <= 1


@pytest.mark.parametrize("shape", [(40, 8, 8), (40, 1, 8, 8), (40, 64), (40, 3, 8, 8)])
def test_output_counts_layout_and_sources(shape):
    X, y = two_class_images()
    if shape[1] == 3:
        X = np.repeat(X[:, None], 3, axis=1)
    X = X.reshape(shape)
    sampler = GANTranslator(random_state=0, **FAST, **ONLY)
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape == (60, *shape[1:]) and X_res.dtype == np.uint8
    np.testing.assert_array_equal(X_res[:40], X)
    assert Counter(y_res.tolist()) == {0: 30, 1: 30}
    # Every minority image was translated from a majority one.
    assert len(sampler.source_indices_) == 20
    assert (y[sampler.source_indices_] == 0).all()


@pytest.mark.parametrize("ratio", [1.0, 0.5])
@pytest.mark.parametrize("basis", ["real", "balanced"])
def test_duplicate_rebalancing_then_translated_extras(ratio, basis):
    """The default (ratio 1, basis "real"): every class gets as many translated
    images as it has real ones, and copies fill the rest of its share;
    "balanced": as many translated images as the class has after balancing."""
    X, y = two_class_images()
    params = {} if ratio == 1.0 else {"augment_ratio": ratio}
    if basis == "balanced":
        params["augment_basis"] = basis
    sampler = GANTranslator(random_state=0, **FAST, **params)
    X_res, y_res = sampler.fit_resample(X, y)
    n = int(30 * ratio)
    synthetic = {0: n, 1: n} if basis == "balanced" else {0: n, 1: int(10 * ratio)}
    assert sampler.n_synthetic_ == synthetic
    assert sampler.n_duplicated_ == {0: 0, 1: 20 + n - synthetic[1]}
    assert len(X_res) == 40 + 20 + 2 * n
    np.testing.assert_array_equal(X_res[:40], X)
    copies = X_res[40:60].reshape(20, -1)
    real_rare = {row.tobytes() for row in X[y == 1].reshape(10, -1)}
    assert {row.tobytes() for row in copies} <= real_rare
    # Class 0's extras come from class 1's images and the other way round.
    sources = y[sampler.source_indices_]
    assert (sources == np.repeat([1, 0], [synthetic[0], synthetic[1]])).all()


def test_same_random_state_gives_identical_output():
    X, y = two_class_images(dtype=np.float32)
    params = dict(FAST, n_epochs=2)
    first = GANTranslator(random_state=3, **params).fit_resample(X, y)[0]
    second = GANTranslator(random_state=3, **params).fit_resample(X, y)[0]
    other = GANTranslator(random_state=4, **params).fit_resample(X, y)[0]
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[40:], other[40:])


def test_global_torch_rng_untouched():
    X, y = two_class_images()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    GANTranslator(random_state=0, **FAST).fit_resample(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def test_translator_learns_to_change_the_class_and_keep_the_rest():
    """Class 0 is bright at the top, class 1 at the bottom.  Translated images
    are recognised as their target class by a classifier of real images, and
    each stays closer to its own source than to most other sources."""
    X, y = two_class_images(n0=40, n1=40, size=16, seed=1)
    sampler = GANTranslator(
        n_epochs=40, base_channels=8, batch_size=8, device="cpu", random_state=0
    )
    sampler.fit_resample(X, y)
    real = LogisticRegression(max_iter=1000).fit(X.reshape(len(X), -1) / 255, y)
    sources = X[y == 0]
    out = sampler.translate(sources, to=1)
    assert out.shape == sources.shape
    accuracy = (real.predict(out.reshape(40, -1) / 255) == 1).mean()
    assert accuracy >= 0.75, accuracy  # 0 before training: the identity
    flat_out = out.reshape(40, -1).astype(float)
    flat_src = sources.reshape(40, -1).astype(float)
    distances = ((flat_out[:, None] - flat_src[None]) ** 2).sum(-1)
    own = np.diag(distances)
    others = np.nanmedian(np.where(np.eye(40, dtype=bool), np.nan, distances), axis=1)
    assert (own < others).mean() >= 0.9
    assert np.isfinite([r["cycle"] for r in sampler.history_]).all()


def test_translate_and_sample_forms_and_errors(tmp_path):
    X, y = two_class_images()
    with pytest.raises(NotFittedError):
        GANTranslator(**FAST).translate(X, to=1)
    sampler = GANTranslator(random_state=0, **FAST)
    sampler.fit_resample(X, y)
    assert sampler.translate(X[:3], to=[0, 1, 1]).shape == (3, 8, 8)
    assert sampler.translate(X[:3].reshape(3, -1), to=1).shape == (3, 64)
    with pytest.raises(ValueError, match="unknown class"):
        sampler.translate(X[:2], to=5)
    with pytest.raises(ValueError, match="fitted on"):
        sampler.translate(np.zeros((2, 9, 9)), to=1)
    with pytest.raises(ValueError, match="2 labels for 3"):
        sampler.translate(X[:3], to=[0, 1])
    X_new, y_new, rows = sampler.sample(6, y=1, return_sources=True)
    assert X_new.shape == (6, 8, 8) and (y_new == 1).all() and (y[rows] == 0).all()
    np.testing.assert_array_equal(
        sampler.sample(4, random_state=2)[0], sampler.sample(4, random_state=2)[0]
    )
    path = tmp_path / "translator.safetensors"
    sampler.save(path, metadata={"note": "t"})
    loaded = GANTranslator.load(path)
    assert loaded.metadata_ == {"note": "t"} and loaded.history_ == sampler.history_
    np.testing.assert_array_equal(
        loaded.translate(X[:5], to=1), sampler.translate(X[:5], to=1)
    )
    with pytest.raises(ValueError, match="pass source=images"):
        loaded.sample(2)
    np.testing.assert_array_equal(
        loaded.sample(4, y=1, source=X, source_labels=y, random_state=3)[0],
        sampler.sample(4, y=1, source=X, source_labels=y, random_state=3)[0],
    )
    from ganaug import GANAugmenter

    with pytest.raises(ModelFileError):
        GANAugmenter.load(path)  # a translator is not a noise GAN


def test_checkpoint_resume_equals_an_uninterrupted_fit(tmp_path, monkeypatch):
    import gancore

    X, y = two_class_images(dtype=np.float32)
    params = dict(FAST, n_epochs=3, random_state=0)
    expected = GANTranslator(**params).fit_resample(X, y)[0]
    checkpoint = str(tmp_path / "ckpt")
    train_gan = gancore.train_gan

    def stopped_after_two_epochs(**kwargs):
        train_gan(**{**kwargs, "n_epochs": 2})
        raise KeyboardInterrupt

    monkeypatch.setattr(gancore, "train_gan", stopped_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        GANTranslator(**params, checkpoint_path=checkpoint).fit_resample(X, y)
    monkeypatch.setattr(gancore, "train_gan", train_gan)
    resumed = GANTranslator(**params, checkpoint_path=checkpoint).fit_resample(X, y)[0]
    np.testing.assert_array_equal(resumed, expected)


def test_pipeline_with_a_classifier():
    X, y = two_class_images(n0=30, n1=12)
    pipeline = make_pipeline(
        GANTranslator(image_shape=(1, 8, 8), random_state=0, **FAST),
        LogisticRegression(max_iter=500),
    )
    scores = cross_val_score(pipeline, X.reshape(len(X), -1) / 255, y, cv=3)
    assert scores.shape == (3,) and np.all(scores >= 0.5)


def test_verbose_shows_progress(capsys):
    X, y = two_class_images()
    GANTranslator(verbose=True, random_state=0, **FAST).fit_resample(X, y)
    err = capsys.readouterr().err
    assert "ganaug translator" in err and "translating" in err


def test_labels_that_identify_a_patient_are_not_saved(tmp_path):
    from ganaug.privacy import IdentifyingLabelError

    X, y = two_class_images()
    labels = np.where(y == 0, "DOE^JOHN", "SMITH^JANE")
    sampler = GANTranslator(random_state=0, **FAST)
    sampler.fit_resample(X, labels)
    with pytest.raises(IdentifyingLabelError):
        sampler.save(tmp_path / "t.safetensors")
    assert not (tmp_path / "t.safetensors").exists()


def test_filter_keeps_translations_the_real_image_classifier_accepts(tmp_path):
    X, y = two_class_images(n0=40, n1=20, size=8)
    sampler = GANTranslator(
        filter_synthetic=True, random_state=0, **{**FAST, "n_epochs": 3}, **ONLY
    )
    X_res, y_res = sampler.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 40, 1: 40}
    assert set(sampler.filter_acceptance_) == {1}
    assert 0 <= sampler.filter_acceptance_[1] <= 1
    assert (y[sampler.source_indices_] == 0).all()
    path = tmp_path / "t.safetensors"
    sampler.save(path)
    loaded = GANTranslator.load(path)
    assert loaded.judge_ is not None
    np.testing.assert_array_equal(
        loaded.sample(5, y=1, source=X, source_labels=y, random_state=1)[0],
        sampler.sample(5, y=1, source=X, source_labels=y, random_state=1)[0],
    )
