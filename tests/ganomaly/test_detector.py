from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from gancore import ModelFileError, load_model, save_model
from gancore.train import load_checkpoint
from ganomaly import GANomalyDetector
from ganomaly._detector import auto_epochs, auto_members
from ganomaly.model_file import MODEL_KIND

# Checks that GANomalyDetector cannot pass, with the reason.  Empty: it passes all.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [GANomalyDetector(n_epochs=2, batch_size=64, device="cpu")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_auroc_floor_on_synthetic_fraud(fitted, transactions):
    """Behavioural floor: inverted or untrained scores fail loudly."""
    X, y = transactions
    assert roc_auc_score(y, fitted.anomaly_score(X)) > 0.85


def test_isolation_forest_conventions(fitted, transactions):
    X, _ = transactions
    scores = fitted.score_samples(X)
    anomaly = fitted.anomaly_score(X)
    np.testing.assert_allclose(anomaly, -scores)
    assert (anomaly >= 0).all()
    np.testing.assert_allclose(fitted.decision_function(X), scores - fitted.offset_)
    predicted = fitted.predict(X)
    assert set(np.unique(predicted)) <= {-1, 1}
    np.testing.assert_array_equal(predicted == -1, fitted.decision_function(X) < 0)
    assert fitted.threshold_ == pytest.approx(-fitted.offset_)
    assert fitted.n_features_in_ == X.shape[1]
    assert list(fitted.feature_names_in_) == list(X.columns)


def test_target_fpr_is_calibrated_on_held_out_normals(transactions):
    X, y = transactions
    normal = X[y == 0]
    detector = GANomalyDetector(
        n_epochs=3, target_fpr=0.05, validation_fraction=0.3, random_state=0
    ).fit(normal)
    held_out = detector.validation_anomaly_scores_
    assert held_out.size == int(0.3 * len(normal))
    assert np.mean(held_out > detector.threshold_) == pytest.approx(0.05, abs=0.01)


def test_contamination_float_follows_isolation_forest(transactions):
    X, y = transactions
    normal = X[y == 0]
    detector = GANomalyDetector(n_epochs=2, contamination=0.1, random_state=0)
    detector.fit(normal)
    assert np.mean(detector.predict(normal) == -1) == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("score", ["reconstruction", "combined"])
def test_every_score_works(transactions, score):
    X, y = transactions
    detector = GANomalyDetector(n_epochs=2, score_type=score, random_state=0)
    scores = detector.fit(X[y == 0]).anomaly_score(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    assert (scores > 0).all()
    # About 1 for a typical normal row: the terms are in units of their medians.
    held_out = detector.validation_anomaly_scores_
    assert 0.5 < np.median(held_out) < 2


def test_the_latent_score_of_version_1_is_refused(transactions):
    X, y = transactions
    with pytest.raises(ValueError, match="score_type"):
        GANomalyDetector(n_epochs=1, score_type="latent").fit(X[y == 0].iloc[:100])


def test_deterministic_for_a_fixed_random_state(transactions):
    X, y = transactions
    normal = X[y == 0].iloc[:500]
    a = GANomalyDetector(n_epochs=2, random_state=3).fit(normal).anomaly_score(X)
    b = GANomalyDetector(n_epochs=2, random_state=3).fit(normal).anomaly_score(X)
    np.testing.assert_array_equal(a, b)


def test_global_torch_rng_untouched(transactions):
    X, y = transactions
    state = torch.random.get_rng_state()
    GANomalyDetector(n_epochs=1, random_state=0).fit(X[y == 0].iloc[:300])
    assert torch.equal(state, torch.random.get_rng_state())


def test_explain_names_columns_and_shares(fitted, transactions):
    X, y = transactions
    frauds = X[y == 1].iloc[:10]
    explained = fitted.explain(frauds, top_k=3)
    assert list(explained.columns) == [
        "feature_1",
        "contribution_1",
        "feature_2",
        "contribution_2",
        "feature_3",
        "contribution_3",
    ]
    assert explained.index.equals(frauds.index)
    assert set(explained["feature_1"]) <= set(X.columns)
    shares = explained[["contribution_1", "contribution_2", "contribution_3"]]
    assert (np.diff(shares.to_numpy(), axis=1) <= 1e-12).all()  # largest first
    assert (shares.sum(axis=1) <= 1 + 1e-9).all()
    with pytest.raises(ValueError):
        fitted.explain(frauds, top_k=0)


def test_categorical_and_missing_values_at_scoring(fitted, transactions):
    X, _ = transactions
    rows = X.iloc[:4].copy()
    rows["merchant_category"] = ["casino", None, "grocery", "space_travel"]
    rows.loc[rows.index[0], "distance_from_home_km"] = np.nan
    assert np.isfinite(fitted.anomaly_score(rows)).all()
    rows.loc[rows.index[1], "amount"] = np.inf
    with pytest.raises(ValueError, match="amount.*infinite"):
        fitted.anomaly_score(rows)


def test_save_load_round_trip(fitted, transactions, tmp_path):
    X, _ = transactions
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    loaded = GANomalyDetector.load(path)
    np.testing.assert_allclose(loaded.anomaly_score(X), fitted.anomaly_score(X))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.threshold_ == fitted.threshold_
    pd.testing.assert_frame_equal(
        loaded.explain(X.iloc[:5]), fitted.explain(X.iloc[:5])
    )


def test_load_refuses_files_that_are_not_models(tmp_path):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ModelFileError, match="not a gankit model"):
        GANomalyDetector.load(fake)


def test_pickle_round_trip(fitted, transactions):
    X, _ = transactions
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.anomaly_score(X), fitted.anomaly_score(X))


def test_pipeline_and_grid_search(transactions):
    X, y = transactions
    numeric = X.select_dtypes("number")
    pipeline = Pipeline(
        [
            ("identity", FunctionTransformer()),
            ("detector", GANomalyDetector(n_epochs=1, random_state=0)),
        ]
    )
    auroc = make_scorer(roc_auc_score, response_method="decision_function")
    search = GridSearchCV(
        pipeline,
        {"detector__score_type": ["reconstruction", "combined"]},
        scoring=auroc,
        cv=2,
    )
    search.fit(numeric, (y == 0).astype(int))  # labels only for the scorer
    assert search.best_params_["detector__score_type"] in {"reconstruction", "combined"}
    assert search.predict(numeric.iloc[:5]).shape == (5,)


def test_network_options(transactions):
    X, y = transactions
    detector = GANomalyDetector(
        n_epochs=1,
        hidden_dims=(16, 8, 4),
        latent_dim=3,
        batch_size=32,
        learning_rate=1e-4,
        w_adv=0.5,
        w_con=10,
        w_enc=2,
        numeric_scaling="quantile",
        missing="impute",
        validation_fraction=0.0,
        verbose=1,
        random_state=0,
    ).fit(X[y == 0].iloc[:200])
    assert detector.latent_dim_ == 3 and detector.hidden_dims_ == (16, 8, 4)
    assert detector.generator_.encoder.net[-1].out_features == 3
    assert detector.n_epochs_ == 1 and len(detector.history_) == 1
    with pytest.raises(ValueError, match="hidden_dims"):
        GANomalyDetector(n_epochs=1, hidden_dims=(8, 0)).fit(X[y == 0].iloc[:50])


def test_missing_policy_error(transactions):
    X, y = transactions
    with pytest.raises(ValueError, match="missing value"):
        GANomalyDetector(n_epochs=1, missing="error").fit(X[y == 0])


def test_auto_members_give_small_tables_more_networks(transactions, tmp_path):
    X, y = transactions
    normal = X[y == 0]
    assert [auto_members(n) for n in (50, 1000, 1001, 10**6)] == [8, 8, 2, 2]
    small = GANomalyDetector(n_epochs=1, device="cpu", random_state=0)
    small.fit(normal.iloc[:300])
    assert small.n_members == "auto" and small.n_members_ == 8
    assert small.prototypes_.shape[0] == small.feature_error_scale_.shape[0] == 8
    small.save(tmp_path / "small.safetensors")
    loaded = GANomalyDetector.load(tmp_path / "small.safetensors")
    assert loaded.n_members_ == 8
    assert np.array_equal(loaded.anomaly_score(X), small.anomaly_score(X))
    large = GANomalyDetector(n_epochs=1, device="cpu", random_state=0)
    assert large.fit(normal.iloc[:1001]).n_members_ == 2
    fixed = GANomalyDetector(n_members=3, n_epochs=1, device="cpu", random_state=0)
    assert fixed.fit(normal.iloc[:300]).n_members_ == 3


def test_auto_epochs_target_a_fixed_number_of_steps():
    assert auto_epochs(250_000, 128) == 1  # big tables: one pass is enough steps
    assert auto_epochs(2_000, 128) == 94  # 16 steps per epoch: ~1500 steps
    assert auto_epochs(100, 128) == 300  # one step per epoch: capped
    assert auto_epochs(100_000, 1000) == 15


def _member_terms(detector, X):
    """Each member's mean scaled squared error and squared distance to its nearest
    prototype, computed here in torch float64 (not by the scorer under test)."""
    net = detector.generator_.double()
    try:
        x = torch.from_numpy(detector.preprocessor_.transform(X)).double()
        x = x.unsqueeze(0).expand(detector.n_members_, -1, -1)
        with torch.no_grad():
            codes = net.encoder(x)
            squares = (x - net.decoder(codes)) ** 2
        scale = torch.from_numpy(detector.feature_error_scale_)[:, None, :]
        reconstruction = (squares / scale).mean(2).T.numpy()
        prototypes = torch.from_numpy(detector.prototypes_).double()
        nearest = (torch.cdist(codes, prototypes) ** 2).min(2).values.T.numpy()
        return reconstruction, nearest
    finally:
        detector.generator_.float()


@pytest.mark.parametrize("score", ["reconstruction", "combined"])
def test_score_is_the_geometric_mean_of_calibrated_terms(transactions, score):
    """Per member: the mean squared error in per-feature units (and the squared
    distance to the nearest prototype), each over its held-out median; with the
    nearest-neighbour term's ratio (one for the model), the score is the
    geometric mean over terms of each term's geometric mean over members."""
    X, y = transactions
    detector = GANomalyDetector(
        n_epochs=3, n_members=3, score_type=score, random_state=0
    ).fit(X[y == 0])
    reconstruction, nearest = _member_terms(detector, X.iloc[:50])
    logs = [np.log(reconstruction / detector.calibration_["reconstruction"])]
    if score == "combined":
        logs.append(np.log(nearest / detector.calibration_["nearest"]))
        neighbour = detector.neighbours_.squared_distances(
            detector.preprocessor_.transform(X.iloc[:50])
        )
        logs.append(np.log(neighbour / detector.calibration_["neighbour"])[:, None])
    # (No ratio here is below RATIO_FLOOR, which would clip it.)
    expected = np.exp(np.mean([term.mean(axis=1) for term in logs], axis=0))
    np.testing.assert_allclose(detector.anomaly_score(X.iloc[:50]), expected, rtol=1e-5)
    # Every input column gets one unit, whatever the number of its encoded features:
    # the one-hot features of a category share their column's divisor.
    sources = detector.preprocessor_.source_columns_
    for scale in detector.feature_error_scale_:
        for column in np.unique(sources):
            assert np.ptp(scale[sources == column]) == 0
        assert len(np.unique(scale)) > 1  # not a constant (an unscaled error)
    assert detector.prototypes_.shape[:2] == (3, detector.n_prototypes)


def test_model_files_of_version_1_ask_for_a_new_fit(fitted, tmp_path):
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    tensors, config = load_model(path, kind=MODEL_KIND)
    config["version"] = 1
    save_model(path, tensors, config, kind=MODEL_KIND)
    with pytest.raises(ModelFileError, match="version 1.*fit the model again"):
        GANomalyDetector.load(path)


def test_generator_is_the_weight_average(transactions, tmp_path):
    """The scored generator is the EMA of the weights, not the last iterate."""
    X, y = transactions
    checkpoint = tmp_path / "fit.ckpt"
    detector = GANomalyDetector(
        n_epochs=3, random_state=0, checkpoint_path=str(checkpoint)
    ).fit(X[y == 0].iloc[:1000])
    assert 0 < detector.ema_decay_ < 1
    state = load_checkpoint(checkpoint)
    scored = detector.generator_.state_dict()
    for name, value in state["ema"].items():
        torch.testing.assert_close(scored[name], value)
    assert any(
        not torch.equal(scored[name], value)
        for name, value in state["generator"].items()
    )


def test_use_labels_checks_its_labels(transactions):
    X, y = transactions
    rows = X.iloc[:200]
    labels = y[:200]
    detector = GANomalyDetector(n_epochs=1, use_labels=True)
    with pytest.raises(ValueError, match="needs labels"):
        detector.fit(rows)
    with pytest.raises(ValueError, match="0 .normal. or 1"):
        detector.fit(rows, np.where(labels == 1, 2, 0))
    with pytest.raises(ValueError, match="labels for 200 rows"):
        detector.fit(rows, labels[:10])
    # Without use_labels, y is ignored (scikit-learn's convention for detectors).
    a = GANomalyDetector(n_epochs=1, random_state=0).fit(rows, labels)
    b = GANomalyDetector(n_epochs=1, random_state=0).fit(rows)
    np.testing.assert_array_equal(a.anomaly_score(rows), b.anomaly_score(rows))
