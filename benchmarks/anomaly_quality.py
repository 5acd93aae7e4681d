"""Anomaly-detection quality: GANomalyDetector against eight peers on real tables.

Protocol (``../shared/data/README.md``): for every data set and seed (0, 1, 2), a
stratified 70/30 split; every detector trains on the *normal* rows of the 70 % part
only and scores the whole 30 % part; scalers are fitted on the training part only.
Reported: AUROC and AUPRC (average precision; the prevalence is printed next to it)
as the mean over seeds, the mean AUROC over data sets and the mean AUROC rank.

Peers, all in the same run on the same splits: PyOD IForest, KNN, ECOD, AutoEncoder,
VAE, DeepSVDD, ALAD and scikit-learn's IsolationForest.  The peers get standardised
inputs (a StandardScaler fitted on the training rows), GANomalyDetector the raw
columns (its own preprocessing is fitted inside ``fit`` on the training rows).  PyOD
detectors run with their defaults except for epoch counts, capped so that the whole
benchmark finishes in about 20 minutes on 2 CPU cores (see ``PEER_EPOCHS``).  Torch
runs single-threaded for every detector (``--threads``), which is both fair and
fastest on a small shared CPU.

Usage::

    python benchmarks/anomaly_quality.py                      # full: 5 sets x 3 seeds
    python benchmarks/anomaly_quality.py --quick              # 1 seed, smaller epochs
    python benchmarks/anomaly_quality.py --datasets cardio thyroid --seeds 0
    python benchmarks/anomaly_quality.py --detectors GANomaly IForest \
        --ganomaly-params '{"score_type": "combined"}'

Writes ``results.csv``, ``summary.md`` and ``anomaly_quality.png`` to
``--output-dir`` (default ``./anomaly_quality_out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "creditcard": "creditcard_day1.csv",
    "cardio": "adbench_6_cardio.npz",
    "thyroid": "adbench_38_thyroid.npz",
    "satellite": "adbench_30_satellite.npz",
    "annthyroid": "adbench_2_annthyroid.npz",
}
# Epochs for PyOD's deep detectors (their defaults in brackets): capped for run time.
PEER_EPOCHS = {"AutoEncoder": 10, "VAE": 30, "DeepSVDD": 30, "ALAD": 30}
QUICK_PEER_EPOCHS = {"AutoEncoder": 5, "VAE": 10, "DeepSVDD": 10, "ALAD": 10}


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels of one benchmark set (creditcard without ``Time``)."""
    path = DATA / DATASETS[name]
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        y = frame.pop("Class").to_numpy().astype(int)
        return frame.drop(columns=["Time"]).to_numpy(dtype=np.float64), y
    with np.load(path) as archive:
        return archive["X"].astype(np.float64), archive["y"].astype(int).ravel()


def make_detectors(
    seed: int, quick: bool, ganomaly_params: dict
) -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]]:
    """name -> fn(X_train_raw, X_train_scaled..., ) returning test anomaly scores."""
    from pyod.models.alad import ALAD
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.vae import VAE

    from ganomaly import GANomalyDetector

    epochs = QUICK_PEER_EPOCHS if quick else PEER_EPOCHS

    def pyod(factory):
        def run(raw_train, raw_test, train, test):
            model = factory(train.shape[1])
            model.fit(train)
            return model.decision_function(test)

        return run

    def ganomaly(raw_train, raw_test, train, test):
        params = {"random_state": seed, "device": "cpu", **ganomaly_params}
        model = GANomalyDetector(**params).fit(raw_train)
        return model.anomaly_score(raw_test)

    def sk_iforest(raw_train, raw_test, train, test):
        model = IsolationForest(random_state=seed).fit(train)
        return -model.score_samples(test)

    return {
        "GANomaly": ganomaly,
        "IsolationForest": sk_iforest,
        "IForest": pyod(lambda d: IForest(random_state=seed)),
        "KNN": pyod(lambda d: KNN()),
        "ECOD": pyod(lambda d: ECOD()),
        "AutoEncoder": pyod(
            lambda d: AutoEncoder(
                epoch_num=epochs["AutoEncoder"],
                random_state=seed,
                verbose=0,
                device="cpu",
            )
        ),
        "VAE": pyod(
            lambda d: VAE(
                epoch_num=epochs["VAE"], random_state=seed, verbose=0, device="cpu"
            )
        ),
        "DeepSVDD": pyod(
            lambda d: DeepSVDD(
                n_features=d, epochs=epochs["DeepSVDD"], random_state=seed, verbose=0
            )
        ),
        "ALAD": pyod(lambda d: ALAD(epochs=epochs["ALAD"], verbose=0, device="cpu")),
    }


def run(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            X_train, X_test, y_train, y_test = train_test_split(
                X, y, test_size=0.3, stratify=y, random_state=seed
            )
            raw_train = X_train[y_train == 0]
            scaler = StandardScaler().fit(raw_train)
            train, test = scaler.transform(raw_train), scaler.transform(X_test)
            # Seed the global RNGs for the peers that draw from them (PyOD's ALAD).
            np.random.seed(seed)  # noqa: NPY002 - PyOD ALAD draws from it
            torch.manual_seed(seed)
            detectors = make_detectors(seed, args.quick, args.ganomaly_params)
            for name in args.detectors:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scores = np.asarray(
                        detectors[name](raw_train, X_test, train, test), dtype=float
                    )
                seconds = time.perf_counter() - start
                finite = np.isfinite(scores)
                if not finite.all():  # a diverged peer: rank its NaNs as normal
                    scores = np.where(finite, scores, np.nanmin(scores[finite]))
                rows.append(
                    {
                        "dataset": dataset,
                        "seed": seed,
                        "detector": name,
                        "auroc": roc_auc_score(y_test, scores),
                        "auprc": average_precision_score(y_test, scores),
                        "prevalence": float(y_test.mean()),
                        "fit_score_s": seconds,
                    }
                )
                last = rows[-1]
                print(
                    f"{dataset:11s} seed {seed} {name:15s} AUROC {last['auroc']:.3f} "
                    f"AUPRC {last['auprc']:.3f} ({seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> str:
    mean = results.groupby(["detector", "dataset"])[["auroc", "auprc"]].mean()
    auroc = mean["auroc"].unstack("dataset")
    auprc = mean["auprc"].unstack("dataset")
    ranks = auroc.rank(ascending=False, axis=0)
    table = auroc.copy()
    table["mean AUROC"] = auroc.mean(axis=1)
    table["mean rank"] = ranks.mean(axis=1)
    table = table.sort_values("mean AUROC", ascending=False)
    prevalence = results.groupby("dataset")["prevalence"].first()
    auprc_table = auprc.copy()
    auprc_table["mean AUPRC"] = auprc.mean(axis=1)
    auprc_table = auprc_table.loc[table.index]
    seconds = results.groupby("detector")["fit_score_s"].mean().loc[table.index]
    lines = ["### AUROC (mean over seeds)", "", _markdown(table), ""]
    lines += [
        "### AUPRC (mean over seeds; prevalence: "
        + ", ".join(f"{d} {p:.3f}" for d, p in prevalence.items())
        + ")",
        "",
        _markdown(auprc_table),
        "",
        "### Mean fit + score time per split (s)",
        "",
        _markdown(seconds.to_frame("seconds")),
    ]
    return "\n".join(lines)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join([frame.index.name or ""] + list(map(str, frame.columns)))
    lines = [header + " |", "|" + "---|" * (len(frame.columns) + 1)]
    for index, row in frame.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(index)] + cells) + " |")
    return "\n".join(lines)


def plot(results: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    auroc = results.groupby(["dataset", "detector"])["auroc"].mean().unstack()
    order = auroc.mean(axis=0).sort_values(ascending=False).index
    auroc = auroc[order]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(order)
    x = np.arange(len(auroc.index))
    for i, detector in enumerate(order):
        ax.bar(x + i * width, auroc[detector], width, label=detector)
    ax.set_xticks(x + 0.4 - width / 2, auroc.index)
    ax.set_ylabel("AUROC (mean over seeds)")
    ax.set_ylim(0.4, 1.0)
    ax.legend(ncol=5, fontsize=8, loc="lower right")
    ax.set_title("Anomaly detection quality (normal-only training, 70/30 splits)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--detectors", nargs="+", default=None)
    parser.add_argument(
        "--quick", action="store_true", help="seed 0 only and fewer peer epochs"
    )
    parser.add_argument(
        "--ganomaly-params",
        type=json.loads,
        default={},
        help="JSON dict of GANomalyDetector parameters",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for every detector",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("anomaly_quality_out"))
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"error: real data folder {DATA} is absent", file=sys.stderr)
        return 1
    if args.quick and args.seeds == [0, 1, 2]:
        args.seeds = [0]
    all_detectors = list(make_detectors(0, args.quick, {}))
    args.detectors = args.detectors or all_detectors
    unknown = set(args.detectors) - set(all_detectors)
    if unknown:
        parser.error(
            f"unknown detectors {sorted(unknown)}; choose from {all_detectors}"
        )
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = run(args)
    summary = summarise(results)
    elapsed = time.perf_counter() - start
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.output_dir / "results.csv", index=False)
    header = (
        f"anomaly_quality: datasets {args.datasets}, seeds {args.seeds}, "
        f"quick={args.quick}, GANomaly params {args.ganomaly_params}, "
        f"{elapsed / 60:.1f} min\n\n"
    )
    (args.output_dir / "summary.md").write_text(header + summary + "\n")
    plot(results, args.output_dir / "anomaly_quality.png")
    print(header + summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
