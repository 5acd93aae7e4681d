"""GANAugmenter: layouts, counts, reproducibility, persistence, pipelines."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from imblearn.pipeline import make_pipeline
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from ganaug import GANAugmenter
from gancore import ModelFileError

FAST = dict(n_epochs=1, base_channels=4, latent_dim=8, batch_size=16, device="cpu")
# The classic GAN over-sampler (synthetic images only where sampling_strategy asks),
# whose counts are imbalanced-learn's: most tests below count on them.  The
# defaults (copies, plus as many synthetic images as real ones) have their own test.
CLASSIC = dict(FAST, rebalance="synthetic", augment_ratio=0.0)


def two_class_images(n0=30, n1=10, size=8, seed=0, dtype=np.uint8):
    """Class 0 bright at the top, class 1 bright at the bottom, with noise."""
    rng = np.random.default_rng(seed)
    images = rng.normal(60, 15, size=(n0 + n1, size, size))
    images[:n0, : size // 2] += 140
    images[n0:, size // 2 :] += 140
    images = np.clip(images, 0, 255)
    y = np.array([0] * n0 + [1] * n1)
    return images.astype(dtype), y


# ----------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "shape, image_shape",
    [
        ((40, 8, 8), None),
        ((40, 1, 8, 8), None),
        ((40, 64), (1, 8, 8)),
        ((40, 64), None),
    ],
)
def test_output_keeps_layout_dtype_and_range(shape, image_shape):
    X, y = two_class_images()
    X = X.reshape(shape)
    sampler = GANAugmenter(image_shape=image_shape, random_state=0, **CLASSIC)
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape == (60, *shape[1:])
    assert X_res.dtype == np.uint8
    np.testing.assert_array_equal(X_res[:40], X)  # originals first, untouched
    assert X_res.min() >= X.min() and X_res.max() <= X.max()
    assert sampler.image_shape_ == (1, 8, 8)
    assert sampler.n_features_in_ == 64


def test_float_hounsfield_range_and_odd_sizes():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1024, 3071, size=(20, 1, 10, 14)).astype(np.float32)
    y = np.repeat(["air", "bone"], 10)
    sampler = GANAugmenter(
        sampling_strategy={"air": 14, "bone": 12}, random_state=0, **CLASSIC
    )
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape == (26, 1, 10, 14) and X_res.dtype == np.float32
    assert Counter(y_res.tolist()) == {"air": 14, "bone": 12}
    synthetic = X_res[20:]
    assert synthetic.min() >= -1024 and synthetic.max() <= 3071
    assert synthetic.std() > 0  # not a constant image


def test_dataframe_in_dataframe_out():
    X, y = two_class_images()
    frame = pd.DataFrame(X.reshape(40, -1), columns=[f"p{i}" for i in range(64)])
    X_res, y_res = GANAugmenter(random_state=0, **CLASSIC).fit_resample(
        frame, pd.Series(y)
    )
    assert isinstance(X_res, pd.DataFrame) and list(X_res.columns) == list(
        frame.columns
    )
    assert len(X_res) == len(y_res) == 60


# --------------------------------------------------------- class counts floor


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("auto", {0: 30, 1: 30, 2: 30}),
        ("minority", {0: 30, 1: 20, 2: 30}),
        ("not majority", {0: 30, 1: 30, 2: 30}),
        ("all", {0: 30, 1: 30, 2: 30}),
        ({1: 25, 2: 12}, {0: 30, 1: 25, 2: 12}),
        (lambda y: {2: 40}, {0: 30, 1: 20, 2: 40}),
    ],
)
def test_class_counts_for_every_strategy_form(strategy, expected):
    X, _ = two_class_images(n0=30, n1=30)
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)
    sampler = GANAugmenter(sampling_strategy=strategy, random_state=0, **CLASSIC)
    _, y_res = sampler.fit_resample(X[:60], y)
    assert Counter(y_res.tolist()) == expected


def test_float_strategy_and_augment_ratio():
    X, y = two_class_images(n0=30, n1=10)
    _, y_res = GANAugmenter(
        sampling_strategy=0.5, random_state=0, **CLASSIC
    ).fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 30, 1: 15}
    sampler = GANAugmenter(random_state=0, **{**CLASSIC, "augment_ratio": 0.5})
    _, y_res = sampler.fit_resample(X, y)
    # balanced to 30/30, then half as many again for every class
    assert Counter(y_res.tolist()) == {0: 45, 1: 45}
    assert sampler.n_synthetic_ == {0: 15, 1: 35}


def test_rebalance_by_duplicates_then_synthetic_augmentation():
    """rebalance="duplicate": copies of real minority images fill the gap and the
    synthetic images come on top, for every class."""
    X, y = two_class_images(n0=30, n1=10)
    balanced = dict(FAST, augment_ratio=0.5, augment_basis="balanced")
    sampler = GANAugmenter(random_state=0, **balanced)
    X_res, y_res = sampler.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 45, 1: 45}
    assert sampler.n_duplicated_ == {0: 0, 1: 20}
    assert sampler.n_synthetic_ == {0: 15, 1: 15}
    copies = X_res[40:60].reshape(20, -1)
    minority = X[y == 1].reshape(10, -1)
    # every copy is one of the 10 real minority images, and most of them are used
    matches = (copies[:, None, :] == minority[None]).all(axis=2)
    assert matches.any(axis=1).all() and matches.any(axis=0).sum() >= 7
    assert (y_res[40:60] == 1).all()
    synthetic = X_res[60:].reshape(30, -1)
    assert not (synthetic[:, None, :] == X.reshape(1, 40, -1)).all(axis=2).any()
    again = GANAugmenter(random_state=0, **balanced).fit_resample(X, y)
    np.testing.assert_array_equal(X_res, again[0])
    classic = GANAugmenter(random_state=0, **CLASSIC)
    classic.fit_resample(X, y)
    assert classic.n_duplicated_ == {0: 0, 1: 0}


def test_defaults_add_synthetic_images_in_proportion_to_the_real_ones():
    """GANAugmenter()'s way (issue 20): every class doubles the largest class's
    count with as many synthetic images as it has real ones, and copies of its
    real images (RandomOverSampler's) for the rest."""
    X, y = two_class_images(n0=30, n1=10)
    sampler = GANAugmenter(random_state=0, **FAST)
    assert (sampler.rebalance, sampler.augment_ratio) == ("duplicate", 1.0)
    assert sampler.augment_basis == "real"
    assert (GANAugmenter().n_epochs, GANAugmenter().batch_size) == ("auto", 32)
    X_res, y_res = sampler.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 60, 1: 60}
    assert sampler.n_synthetic_ == {0: 30, 1: 10}
    assert sampler.n_duplicated_ == {0: 0, 1: 40}
    np.testing.assert_array_equal(X_res[:40], X)
    minority = X[y == 1].reshape(10, -1)
    copies = X_res[40:80].reshape(40, -1)
    assert (copies[:, None, :] == minority[None]).all(axis=2).any(axis=1).all()
    assert (y_res[40:80] == 1).all()
    synthetic = X_res[80:].reshape(40, -1)
    assert not (synthetic[:, None, :] == X.reshape(1, 40, -1)).all(axis=2).any()
    assert Counter(y_res[80:].tolist()) == {0: 30, 1: 10}
    # a class sampling_strategy leaves alone grows with augment_ratio all the same
    three = np.array([0] * 20 + [1] * 12 + [2] * 8)
    sampler = GANAugmenter(sampling_strategy={2: 20}, random_state=0, **FAST)
    _, y_res = sampler.fit_resample(X, three)
    assert Counter(y_res.tolist()) == {0: 40, 1: 24, 2: 40}
    assert sampler.n_synthetic_ == {0: 20, 1: 12, 2: 8}
    assert sampler.n_duplicated_ == {0: 0, 1: 0, 2: 24}
    # with rebalance="synthetic" every added image is synthetic, whatever the basis
    synthetic_only = GANAugmenter(rebalance="synthetic", random_state=0, **FAST)
    synthetic_only.fit_resample(X, y)
    assert synthetic_only.n_synthetic_ == {0: 30, 1: 50}
    assert synthetic_only.n_duplicated_ == {0: 0, 1: 0}


# ---------------------------------------------------------- reproducibility


def test_same_random_state_gives_identical_output():
    X, y = two_class_images()
    params = dict(FAST, n_epochs=2)
    first = GANAugmenter(random_state=3, **params).fit_resample(X, y)[0]
    second = GANAugmenter(random_state=3, **params).fit_resample(X, y)[0]
    other = GANAugmenter(random_state=4, **params).fit_resample(X, y)[0]
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[40:], other[40:])


def test_global_torch_rng_untouched():
    X, y = two_class_images()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    GANAugmenter(random_state=0, **FAST).fit_resample(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


# ------------------------------------------------------- behavioural floor


def test_conditional_gan_learns_the_classes():
    """Synthetic images of each class are recognised as that class by a
    classifier trained on real images only: the conditioning works, the labels
    are not swapped and the generator did not collapse onto one class."""
    X, y = two_class_images(n0=60, n1=60, size=16, seed=1)
    sampler = GANAugmenter(
        n_epochs=40,
        base_channels=8,
        latent_dim=16,
        batch_size=32,
        device="cpu",
        random_state=0,
    )
    sampler.fit_resample(X, y)
    real_clf = LogisticRegression(max_iter=1000).fit(X.reshape(len(X), -1) / 255, y)
    synthetic, labels = sampler.sample(200, y=np.repeat([0, 1], 100), random_state=1)
    accuracy = (real_clf.predict(synthetic.reshape(200, -1) / 255) == labels).mean()
    assert accuracy >= 0.9, accuracy
    assert synthetic.reshape(200, -1).std(axis=0).mean() > 5  # diverse samples
    assert np.isfinite([r["d_loss"] for r in sampler.history_]).all()
    assert len(sampler.history_) == 40


# ---------------------------------------------------- sample / save / load


def test_sample_forms_and_errors():
    X, y = two_class_images()
    with pytest.raises(NotFittedError):
        GANAugmenter(**FAST).sample(2)
    sampler = GANAugmenter(random_state=0, **FAST)
    sampler.fit_resample(X, y)
    X_new, y_new = sampler.sample(5)
    assert X_new.shape == (5, 8, 8) and set(y_new.tolist()) <= {0, 1}
    assert sampler.sample(3, y=[0, 1, 1])[1].tolist() == [0, 1, 1]
    np.testing.assert_array_equal(
        sampler.sample(4, random_state=9)[0], sampler.sample(4, random_state=9)[0]
    )
    with pytest.raises(ValueError, match="unknown class"):
        sampler.sample(2, y=7)


def test_save_load_round_trip(tmp_path):
    X, y = two_class_images()
    sampler = GANAugmenter(random_state=0, **FAST)
    sampler.fit_resample(X, y)
    path = tmp_path / "gan.safetensors"
    sampler.save(path, metadata={"note": "test"})
    loaded = GANAugmenter.load(path)
    np.testing.assert_array_equal(
        loaded.sample(6, y=1, random_state=2)[0],
        sampler.sample(6, y=1, random_state=2)[0],
    )
    assert loaded.history_ == sampler.history_ and loaded.metadata_ == {"note": "test"}
    (tmp_path / "evil.safetensors").write_bytes(b"\x80\x04K\x01." * 10)
    with pytest.raises(ModelFileError):
        GANAugmenter.load(tmp_path / "evil.safetensors")


def test_sample_after_load_restarts_the_stream_of_random_state(tmp_path):
    # Float images: a one-epoch generator's uint8 output can be the same for any
    # noise, and would hide which stream was drawn.
    X, y = two_class_images(dtype=np.float32)
    sampler = GANAugmenter(random_state=5, **FAST)
    sampler.fit_resample(X, y)
    path = tmp_path / "gan.safetensors"
    sampler.save(path)
    fresh_X, fresh_y = sampler.sample(7, random_state=5)  # a fresh stream of 5
    loaded = GANAugmenter.load(path)
    assert loaded.random_state == 5
    X_new, y_new = loaded.sample(7)
    np.testing.assert_array_equal(X_new, fresh_X)
    np.testing.assert_array_equal(y_new, fresh_y)
    # Within one sampler the stream goes on; each load starts it again.
    assert not np.array_equal(loaded.sample(7)[0], fresh_X)
    np.testing.assert_array_equal(GANAugmenter.load(path).sample(7)[0], fresh_X)


def test_a_random_state_instance_is_not_saved(tmp_path):
    X, y = two_class_images()
    sampler = GANAugmenter(random_state=np.random.RandomState(0), **FAST)
    sampler.fit_resample(X, y)
    sampler.save(tmp_path / "gan.safetensors")
    assert GANAugmenter.load(tmp_path / "gan.safetensors").random_state is None


def test_finished_checkpoint_resumes_with_other_sampling_options(tmp_path):
    """A checkpoint pins the training options only: a finished training run is
    reused (no more training, same GAN) when only sampling options change, and a
    change that alters training is refused."""
    X, y = two_class_images()
    path = str(tmp_path / "gan.ckpt")
    first = GANAugmenter(random_state=0, checkpoint_path=path, **CLASSIC)
    first.fit_resample(X, y)
    again = GANAugmenter(random_state=0, checkpoint_path=path, **FAST)
    X_again, y_again = again.fit_resample(X, y)
    assert Counter(y_again.tolist()) == {0: 60, 1: 60}
    assert again.history_ == first.history_
    fresh = GANAugmenter(random_state=0, **FAST).fit_resample(X, y)
    np.testing.assert_array_equal(X_again, fresh[0])
    with pytest.raises(ValueError, match="checkpoint"):
        GANAugmenter(
            random_state=0, checkpoint_path=path, **{**FAST, "n_epochs": 2}
        ).fit_resample(X, y)


def test_one_gan_per_class(tmp_path):
    X, y = two_class_images()
    sampler = GANAugmenter(conditional=False, random_state=0, **CLASSIC)
    X_res, y_res = sampler.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 30, 1: 30}
    assert set(sampler.generator_) == {1} and set(sampler.history_) == {1}
    with pytest.raises(ValueError, match="no generator"):
        sampler.sample(2, y=0)
    sampler.save(tmp_path / "m.safetensors")
    assert GANAugmenter.load(tmp_path / "m.safetensors").sample(2, y=1)[0].shape == (
        2,
        8,
        8,
    )


@pytest.mark.parametrize(
    "params",
    [
        dict(loss="wgan-gp", batch_size=8),  # 5 critic steps per generator step
        dict(loss="bce", ema=False),
        dict(architecture="mlp", ema=0.9),
        dict(architecture="mlp", diffaugment="translation"),
        dict(diffaugment=None),
        dict(diffaugment="cutout"),
        dict(architecture="resnet"),
        dict(diffaugment="ada", r1_gamma=1.0),
        dict(balance_classes=True),
    ],
)
def test_options_train(params):
    X, y = two_class_images()
    sampler = GANAugmenter(random_state=0, **{**CLASSIC, **params})
    X_res, _ = sampler.fit_resample(X, y)
    assert X_res.shape == (60, 8, 8)
    assert all(np.isfinite(r["g_loss"]) for r in sampler.history_)


def test_auto_epochs_follow_the_pixel_budget(monkeypatch):
    import ganaug._sampler as sampler_module

    X, y = two_class_images()  # 40 images of 8x8
    monkeypatch.setattr(sampler_module, "_AUTO_BUDGET_PIXELS", 3 * 40 * 64)
    sampler = GANAugmenter(random_state=0, **{**FAST, "n_epochs": "auto"})
    sampler.fit_resample(X, y)
    assert sampler.n_epochs_ == 3 and len(sampler.history_) == 3
    sampler.fit_resample(X[:20], y[:20].clip(0, 0) + np.arange(20) % 2)
    assert sampler.n_epochs_ == 6  # half the images, twice the epochs
    # balance_classes: an epoch is a pass over the balanced set (30 + 30 rows)
    sampler.set_params(balance_classes=True).fit_resample(X, y)
    assert sampler.n_epochs_ == 2


def test_filter_keeps_what_the_real_image_classifier_accepts(tmp_path):
    """filter_synthetic: a classifier trained on the real images screens the
    synthetic ones; counts stay as promised, the accepted fraction is recorded,
    and every kept image is one the classifier assigns to its class (unless a
    class fell short)."""
    X, y = two_class_images(n0=40, n1=12, size=16)
    sampler = GANAugmenter(
        filter_synthetic=True,
        augment_ratio=0.5,
        augment_basis="balanced",
        random_state=0,
        **{**FAST, "n_epochs": 3},
    )
    X_res, y_res = sampler.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 60, 1: 60}
    assert set(sampler.filter_acceptance_) == {0, 1}
    synthetic = X_res[80:].reshape(40, 1, 16, 16)
    low, high = sampler.data_range_  # the judge sees images scaled as the GAN does
    verdict = sampler.judge_.predict((synthetic - low) / (high - low) * 2 - 1)
    for label, accepted in sampler.filter_acceptance_.items():
        assert 0 <= accepted <= 1
        if accepted * 8 >= 1:  # enough candidates were accepted
            assert (verdict[y_res[80:] == label] == label).all()
    again = GANAugmenter(**sampler.get_params()).fit_resample(X, y)[0]
    np.testing.assert_array_equal(X_res, again)
    # the classifier travels with the model: a loaded sampler filters alike
    sampler.save(tmp_path / "m.safetensors")
    loaded = GANAugmenter.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(
        loaded.sample(6, y=1, random_state=5)[0],
        sampler.sample(6, y=1, random_state=5)[0],
    )


def test_bad_parameters_and_shapes():
    X, y = two_class_images()
    with pytest.raises(ValueError, match="image_shape"):
        GANAugmenter(**FAST).fit_resample(X.reshape(40, -1)[:, :60], y)
    with pytest.raises(ValueError, match="does not match"):
        GANAugmenter(image_shape=(1, 4, 16), **FAST).fit_resample(X, y)
    with pytest.raises(ValueError, match="DiffAugment"):
        GANAugmenter(diffaugment="rotate", **FAST).fit_resample(X, y)
    with pytest.raises(ValueError, match="loss"):
        GANAugmenter(loss="lsgan", **FAST).fit_resample(X, y)
    with pytest.raises(ValueError, match="n_epochs"):
        GANAugmenter(**{**FAST, "n_epochs": "long"}).fit_resample(X, y)
    with pytest.raises(ValueError, match="filter_synthetic needs images"):
        GANAugmenter(architecture="mlp", filter_synthetic=True, **FAST).fit_resample(
            X.reshape(40, -1)[:, :60], y
        )


# ------------------------------------------------------------- pipelines


class SpyAugmenter(GANAugmenter):
    """Records the real rows it is given and the synthetic rows it makes."""

    seen: list = []

    def _fit_resample(self, X, y):
        X_res, y_res = super()._fit_resample(X, y)
        SpyAugmenter.seen.append(
            (X.copy(), X_res[len(X) :].reshape(len(X_res) - len(X), -1))
        )
        return X_res, y_res


class RecordingClassifier(ClassifierMixin, BaseEstimator):
    fitted: list = []
    predicted: list = []

    def fit(self, X, y):
        RecordingClassifier.fitted.append(np.asarray(X).copy())
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        RecordingClassifier.predicted.append(np.asarray(X).copy())
        return np.full(len(X), self.classes_[0])


def _rows(array) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(array).reshape(len(array), -1)}


def test_cross_val_score_never_leaks_into_test_folds():
    X, y = two_class_images(n0=30, n1=12)
    X = X.reshape(len(X), -1)
    SpyAugmenter.seen.clear()
    RecordingClassifier.fitted.clear()
    RecordingClassifier.predicted.clear()
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    pipeline = make_pipeline(
        SpyAugmenter(image_shape=(1, 8, 8), random_state=0, **FAST),
        RecordingClassifier(),
    )
    cross_val_score(pipeline, X, y, cv=folds, scoring="accuracy")
    assert len(SpyAugmenter.seen) == len(folds)
    for (train, test), (seen, synthetic), fitted, predicted in zip(
        folds,
        SpyAugmenter.seen,
        RecordingClassifier.fitted,
        RecordingClassifier.predicted,
        strict=True,
    ):
        # The GAN was trained on exactly the training fold ...
        assert _rows(seen) == _rows(X[train]) and len(seen) == len(train)
        # ... its synthetic rows went to the classifier's fit only ...
        assert len(synthetic) > 0 and len(fitted) == len(train) + len(synthetic)
        assert _rows(synthetic) <= _rows(fitted)
        # ... and the test fold was scored as it is: no synthetic row, no resampling.
        assert _rows(predicted) == _rows(X[test]) and len(predicted) == len(test)
        assert not _rows(synthetic) & _rows(predicted)


def test_pipeline_with_a_real_classifier_and_clone():
    X, y = two_class_images(n0=30, n1=12)
    pipeline = make_pipeline(
        GANAugmenter(image_shape=(1, 8, 8), random_state=0, **FAST),
        LogisticRegression(max_iter=500),
    )
    scores = cross_val_score(clone(pipeline), X.reshape(len(X), -1) / 255, y, cv=3)
    assert scores.shape == (3,) and np.all(scores >= 0.5)


def test_verbose_shows_progress(capsys):
    X, y = two_class_images()
    GANAugmenter(verbose=True, random_state=0, **FAST).fit_resample(X, y)
    assert "ganaug training" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    X, y = two_class_images()
    with pytest.raises(ValueError, match="CUDA"):
        GANAugmenter(**{**FAST, "device": "cuda"}).fit_resample(X, y)


@pytest.mark.gpu
def test_trains_and_samples_on_cuda():
    X, y = two_class_images()
    sampler = GANAugmenter(**{**FAST, "device": "cuda"}, random_state=0)
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape == (60, 8, 8) and X_res.dtype == np.uint8
    assert sampler.sample(3, y=1)[0].shape == (3, 8, 8)


def test_fitted_sampler_pickles_and_continues_its_stream():
    import pickle

    X, y = two_class_images(dtype=np.float32)
    sampler = GANAugmenter(random_state=0, **FAST)
    sampler.fit_resample(X, y)
    copy = pickle.loads(pickle.dumps(sampler))
    np.testing.assert_array_equal(copy.sample(4)[0], sampler.sample(4)[0])
    assert not np.array_equal(sampler.sample(4, y=0)[0], sampler.sample(4, y=0)[0])
