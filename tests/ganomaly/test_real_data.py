"""Behavioural floor on real card transactions (skips without ../shared/data)."""

from __future__ import annotations

import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from ganomaly import GANomalyDetector


def test_creditcard_auroc_floor(shared_data):
    frame = pd.read_csv(shared_data / "creditcard_day1.csv")
    y = frame.pop("Class").to_numpy()
    X = frame.drop(columns=["Time"])
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    detector = GANomalyDetector(n_epochs=30, random_state=0, device="cpu")
    detector.fit(X_train[y_train == 0])
    assert roc_auc_score(y_test, detector.anomaly_score(X_test)) > 0.9
