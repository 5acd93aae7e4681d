"""Metrics and a plot of anomaly scores against known labels: what ``ganomaly
evaluate`` reports (the streaming read of the labelled file is
:func:`ganomaly.scoring.score_labelled`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate", "evaluate_scores", "plot_evaluation"]


def evaluate(
    detector: Any, features: pd.DataFrame, anomalous: np.ndarray, plot_path: Path
) -> dict[str, float]:
    """Metrics of ``detector`` on labelled rows, and a ROC / PR / histogram PNG.

    Parameters
    ----------
    detector : GANomalyDetector
    features : DataFrame
    anomalous : ndarray of bool
        True for anomalies (fraud).
    plot_path : Path
        PNG to write.

    Returns
    -------
    dict
        ``auroc``, ``auprc``, ``prevalence``, ``precision``, ``recall``,
        ``flagged``, ``n_rows``, ``threshold``.
    """
    scores = detector.anomaly_score(features)
    return evaluate_scores(scores, anomalous, detector.threshold_, plot_path)


def evaluate_scores(
    scores: np.ndarray, anomalous: np.ndarray, threshold: float, plot_path: Path
) -> dict[str, float]:
    """:func:`evaluate` from scores already computed (rows above ``threshold``
    are flagged)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    flagged = scores > threshold
    true_positives = int((flagged & anomalous).sum())
    both = anomalous.any() and (~anomalous).any()
    metrics = {
        "n_rows": int(len(scores)),
        "prevalence": float(anomalous.mean()),
        "auroc": float(roc_auc_score(anomalous, scores)) if both else float("nan"),
        "auprc": float(average_precision_score(anomalous, scores))
        if both
        else float("nan"),
        "threshold": float(threshold),
        "flagged": int(flagged.sum()),
        "precision": true_positives / max(1, int(flagged.sum())),
        "recall": true_positives / max(1, int(anomalous.sum())),
    }
    plot_evaluation(scores, anomalous, threshold, metrics, plot_path)
    return metrics


def plot_evaluation(scores, anomalous, threshold, metrics, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    from gancore import atomic_write

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if anomalous.any() and (~anomalous).any():
        fpr, tpr, _ = roc_curve(anomalous, scores)
        axes[0].plot(fpr, tpr, label=f"AUROC {metrics['auroc']:.3f}")
        precision, recall, _ = precision_recall_curve(anomalous, scores)
        axes[1].plot(recall, precision, label=f"AUPRC {metrics['auprc']:.3f}")
        axes[1].axhline(
            metrics["prevalence"],
            ls=":",
            color="grey",
            label=f"prevalence {metrics['prevalence']:.3f}",
        )
        axes[1].scatter(
            [metrics["recall"]],
            [metrics["precision"]],
            color="red",
            zorder=3,
            label="at threshold",
        )
    axes[0].plot([0, 1], [0, 1], ls=":", color="grey")
    axes[0].set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    axes[1].set(xlabel="recall", ylabel="precision", title="Precision-recall")
    upper = np.quantile(scores, 0.999) if len(scores) else 1.0
    bins = np.linspace(0, max(upper, threshold) * 1.05, 60)
    clipped = np.minimum(scores, bins[-1])
    axes[2].hist(
        clipped[~anomalous], bins=bins, alpha=0.6, label="normal", density=True
    )
    if anomalous.any():
        axes[2].hist(
            clipped[anomalous], bins=bins, alpha=0.6, label="anomaly", density=True
        )
    axes[2].axvline(threshold, color="red", ls="--", label="threshold")
    axes[2].set(xlabel="anomaly score", ylabel="density", title="Score histogram")
    for ax in axes:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
