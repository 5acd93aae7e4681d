"""Anomaly-detection quality: GANomalyDetector against seven peers on 26 real tables.

Protocol (issue 18; ``../shared/data/README.md``):

* **Pool**: every ``adbench_<n>_<name>.npz`` table of the shared data folder (keys
  ``X``, ``y``; 25 tables) and ``creditcard_day1.csv`` (``Time`` dropped, label
  ``Class``): 26 tables, named by ``<name>`` and ``creditcard``.
* **Halves**, fixed before any result was seen: the names sorted case-insensitively,
  alternately A (1st, 3rd, ...) and B (2nd, 4th, ...).  Defaults are chosen on A and
  confirmed on B; the summary reports both halves and the whole pool.
* **Splits**, for every table and seed (0, 1, 2): a table of more than 20,000 rows
  is first stratified-sampled to 20,000 rows (as ADBench does; seed
  ``crc32(name) + seed``), then split 70/30, stratified, with ``random_state=seed``.
  Every detector trains on the *normal* rows of the 70 % part only and scores the
  whole 30 % part; the detectors' own ``random_state`` is the seed as well.
* **Detectors**, all on the same splits: GANomalyDetector (raw columns: its own
  preprocessing is fitted inside ``fit``) or a candidate (``--candidate``), and the
  peers scikit-learn IsolationForest, PyOD KNN, LOF, ECOD, AutoEncoder, VAE and
  DeepSVDD, which get a StandardScaler fitted on the training normals.  The peers
  run with their defaults except for epoch caps (``PEER_EPOCHS``: DeepSVDD 30 of
  its default 100; AutoEncoder and VAE at their defaults of 10 and 30).  Torch and
  BLAS run on one thread for every detector (``--threads``).
* **Reported**, per table and as the mean over tables, per half and overall: AUROC,
  AUPRC (average precision; the prevalence is in the per-table table), the mean
  rank by AUROC and by AUPRC (per table, among the detectors of the run), the seed
  spread (max - min AUROC over the seeds, per table), the worst AUROC gap to
  IsolationForest and the mean fit time.  The seed spread mixes split noise with
  the model's; ``--model-spread`` separates the model's: on the split of the first
  seed, the GANomaly detector is also fitted with ``random_state`` = the other
  seeds, and the max - min AUROC over those fits is reported per table.
* ``--transactions``: the demo's synthetic data (``make_transactions(20000,
  fraud_fraction=0.01, random_state=0)``: normal rows of the first 70 % to train,
  the last 30 % to test; seeds change the detectors' ``random_state`` only),
  reported on its own, outside the pool's means.  Peers there get categories
  one-hot encoded and gaps filled with training medians before the StandardScaler.

* ``--labelled F [F ...]``: the semi-supervised setting of ADBench: a share ``F`` of
  the 70 % part's anomalies (at least one; drawn with the seed) is known.  Two more
  arms per share, on the training normals plus those anomalies: GANomalyDetector with
  ``use_labels=True`` and scikit-learn's HistGradientBoostingClassifier (its
  probability as the score; defaults but early stopping, which needs two anomalies).
  Reported apart ("Known anomalies"), beside the normal-only GANomaly.

Peer results depend on nothing but the protocol, so ``--peers-cache FILE`` keeps
them in a CSV (read if present, appended to as peers finish) and GANomaly variants
are compared without re-running the peers; without it every peer runs.

Candidates: ``--candidate FILE.py:FACTORY`` imports ``FACTORY`` from ``FILE.py``;
``FACTORY(random_state)`` returns an unfitted detector with ``fit(X)`` and either
``anomaly_score(X)`` (higher = more anomalous) or ``score_samples(X)`` (higher =
more normal).  It replaces GANomalyDetector in the run, under ``--name``.

Usage::

    python benchmarks/anomaly_quality.py                        # everything, no cache
    python benchmarks/anomaly_quality.py --peers-cache /tmp/aq/peers.csv \
        --detectors IsolationForest KNN LOF ECOD AutoEncoder VAE DeepSVDD
    python benchmarks/anomaly_quality.py --peers-cache /tmp/aq/peers.csv --half A \
        --candidate /tmp/aq/candidate.py:make_detector --name cand1 --model-spread
    python benchmarks/anomaly_quality.py --datasets cardio thyroid --seeds 0 \
        --ganomaly-params '{"numeric_scaling": "auto"}'

Writes ``results.csv`` and ``summary.md`` to ``--output-dir`` (default
``./anomaly_quality_out``) and prints the summary.  On 2 busy CPU cores the peers
take about 35 minutes (VAE most of it) and GANomalyDetector's defaults about 25
more (40 with ``--model-spread``); see ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MAX_ROWS = 20_000
TEST_SIZE = 0.3
# Epochs of PyOD's deep detectors: DeepSVDD capped (default 100) for run time.
PEER_EPOCHS = {"AutoEncoder": 10, "VAE": 30, "DeepSVDD": 30}
PEERS = ("IsolationForest", "KNN", "LOF", "ECOD", "AutoEncoder", "VAE", "DeepSVDD")
# Part of the peers-cache key: cached rows of another protocol are not reused.
PROTOCOL = "issue18-v1"
TRANSACTIONS = "transactions"
Scores = Callable[[Any, Any, np.ndarray, np.ndarray], tuple[np.ndarray, float]]


# ------------------------------------------------------------------------ data
def pool() -> dict[str, Path]:
    """Table name -> file, for every table of the pool."""
    tables = {"creditcard": DATA / "creditcard_day1.csv"}
    for path in DATA.glob("adbench_*_*.npz"):
        tables[path.stem.split("_", 2)[2]] = path
    return dict(sorted(tables.items(), key=lambda item: item[0].casefold()))


def halves(names: list[str]) -> dict[str, str]:
    """Table name -> "A" or "B": sorted case-insensitively, alternately."""
    ordered = sorted(names, key=str.casefold)
    return {name: "AB"[i % 2] for i, name in enumerate(ordered)}


def load_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64) and 0/1 labels; creditcard without ``Time``."""
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        y = frame.pop("Class").to_numpy().astype(int)
        return frame.drop(columns=["Time"]).to_numpy(dtype=np.float64), y
    with np.load(path) as archive:
        return archive["X"].astype(np.float64), archive["y"].astype(int).ravel()


def split(
    name: str, X: np.ndarray, y: np.ndarray, seed: int, labelled: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training normals, test rows, test labels and the known anomalies of one
    table and seed: ``labelled`` of the 70 % part's anomalies (at least one when
    positive; chosen with ``seed``), as ADBench's semi-supervised setting."""
    if X.shape[0] > MAX_ROWS:
        sample_seed = (zlib.crc32(name.encode()) + seed) % 2**32
        keep, _ = train_test_split(
            np.arange(X.shape[0]),
            train_size=MAX_ROWS,
            stratify=y,
            random_state=sample_seed,
        )
        X, y = X[np.sort(keep)], y[np.sort(keep)]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, stratify=y, random_state=seed
    )
    anomalies = X_train[y_train == 1]
    n_known = max(1, round(labelled * len(anomalies))) if labelled > 0 else 0
    picked = np.random.default_rng(seed).permutation(len(anomalies))[:n_known]
    return X_train[y_train == 0], X_test, y_test, anomalies[np.sort(picked)]


def transactions() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The demo's data: normal rows of the first 70 %, the last 30 % with labels."""
    from ganomaly.datasets import make_transactions

    table = make_transactions(20_000, fraud_fraction=0.01, random_state=0)
    y = table.pop("is_fraud").to_numpy().astype(int)
    table = table.drop(columns=["transaction_id"])
    n_train = int(0.7 * len(table))
    train = table.iloc[:n_train][y[:n_train] == 0]
    return train, table.iloc[n_train:], y[n_train:]


def numeric_for_peers(
    train: pd.DataFrame, test: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """One-hot categories and median-filled gaps, fitted on ``train``."""
    categorical = [
        c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])
    ]
    both = pd.get_dummies(
        pd.concat([train, test]), columns=categorical, dummy_na=True, dtype=float
    )
    seen = [c for c in both.columns if c not in categorical]
    both = both[seen]
    train_part, test_part = both.iloc[: len(train)], both.iloc[len(train) :]
    medians = train_part.median()
    return (
        train_part.fillna(medians).to_numpy(dtype=np.float64),
        test_part.fillna(medians).to_numpy(dtype=np.float64),
    )


# ------------------------------------------------------------------- detectors
def peer(name: str, seed: int, n_features: int) -> Any:
    """An unfitted PyOD peer (anomaly scores from ``decision_function``)."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.ecod import ECOD
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.vae import VAE

    if name == "KNN":
        return KNN()
    if name == "LOF":
        return LOF()
    if name == "ECOD":
        return ECOD()
    if name == "AutoEncoder":
        return AutoEncoder(
            epoch_num=PEER_EPOCHS[name], random_state=seed, verbose=0, device="cpu"
        )
    if name == "VAE":
        return VAE(
            epoch_num=PEER_EPOCHS[name], random_state=seed, verbose=0, device="cpu"
        )
    if name == "DeepSVDD":
        return DeepSVDD(
            n_features=n_features,
            epochs=PEER_EPOCHS[name],
            random_state=seed,
            verbose=0,
        )
    raise ValueError(f"unknown peer {name!r}")


def run_peer(name: str, seed: int, train: np.ndarray, test: np.ndarray):
    """Fit a peer on scaled training normals; anomaly scores of ``test``, seconds."""
    start = time.perf_counter()
    if name == "IsolationForest":
        model = IsolationForest(random_state=seed).fit(train)
        fitted = time.perf_counter()
        return -model.score_samples(test), fitted - start, time.perf_counter() - fitted
    model = peer(name, seed, train.shape[1])
    model.fit(train)
    fitted = time.perf_counter()
    return model.decision_function(test), fitted - start, time.perf_counter() - fitted


def load_candidate(spec: str) -> Callable[[int], Any]:
    """``FILE.py:FACTORY`` -> the factory function."""
    file, _, factory = spec.rpartition(":")
    if not file or not factory:
        raise ValueError(f"--candidate must be FILE.py:FACTORY, got {spec!r}")
    module_spec = importlib.util.spec_from_file_location(Path(file).stem, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return getattr(module, factory)


def run_ganomaly(factory: Callable[[int], Any], random_state: int, train, test):
    """Fit a GANomaly detector on raw training normals; scores of ``test``, seconds."""
    start = time.perf_counter()
    model = factory(random_state).fit(train)
    fitted = time.perf_counter()
    if hasattr(model, "anomaly_score"):
        scores = model.anomaly_score(test)
    else:
        scores = -model.score_samples(test)
    return np.asarray(scores, dtype=float), fitted - start, time.perf_counter() - fitted


# ------------------------------------------------------------------------- run
def measure(y_test: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    finite = np.isfinite(scores)
    if not finite.all():  # a diverged detector: its NaNs rank as normal
        low = np.min(scores[finite]) if finite.any() else 0.0
        scores = np.where(finite, scores, low)
    return {
        "auroc": float(roc_auc_score(y_test, scores)),
        "auprc": float(average_precision_score(y_test, scores)),
        "prevalence": float(y_test.mean()),
    }


def read_cache(path: Path | None) -> pd.DataFrame:
    if path is None or not path.exists():
        return pd.DataFrame()
    cache = pd.read_csv(path)
    return cache[cache["protocol"] == PROTOCOL]


def run(args: argparse.Namespace) -> pd.DataFrame:
    tables = pool()
    half = halves(list(tables))
    peers = [d for d in args.detectors if d in PEERS]
    ganomaly = args.name in args.detectors
    cache = read_cache(args.peers_cache)
    cached = {
        (r.dataset, int(r.seed), r.detector): r._asdict()
        for r in cache.itertuples(index=False)
    }
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any], to_cache: bool) -> None:
        rows.append(row)
        print(
            f"{row['dataset']:16s} seed {row['seed']} rs {row['random_state']} "
            f"{row['detector']:15s} AUROC {row['auroc']:.3f} AUPRC {row['auprc']:.3f}"
            f" fit {row['fit_s']:.1f} s{' (cached)' if row.get('cached') else ''}",
            file=sys.stderr,
            flush=True,
        )
        if to_cache and args.peers_cache is not None:
            new = not args.peers_cache.exists()
            pd.DataFrame([row]).drop(columns=["cached"], errors="ignore").to_csv(
                args.peers_cache, mode="a", header=new, index=False
            )

    names = list(args.datasets) + ([TRANSACTIONS] if args.transactions else [])
    for dataset in names:
        if dataset == TRANSACTIONS:
            frame_train, frame_test, y_test = transactions()
            train, test = numeric_for_peers(frame_train, frame_test)
        else:
            X, y = load_table(tables[dataset])
        for seed in args.seeds:
            if dataset != TRANSACTIONS:
                frame_train, frame_test, y_test, _ = split(dataset, X, y, seed)
                train, test = frame_train, frame_test
            scaler = StandardScaler().fit(train)
            scaled_train, scaled_test = scaler.transform(train), scaler.transform(test)
            base = {
                "protocol": PROTOCOL,
                "dataset": dataset,
                "half": half.get(dataset, "-"),
                "seed": seed,
                "n_train": len(frame_train),
                "n_test": len(frame_test),
            }
            for name in peers:
                key = (dataset, seed, name)
                if key in cached:
                    record({**cached[key], "cached": True}, to_cache=False)
                    continue
                # PyOD's deep detectors draw from the global RNGs.
                np.random.seed(seed)  # noqa: NPY002
                torch.manual_seed(seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scores, fit_s, score_s = run_peer(
                        name, seed, scaled_train, scaled_test
                    )
                row = {**base, "detector": name, "random_state": seed}
                row |= measure(y_test, scores) | {"fit_s": fit_s, "score_s": score_s}
                record(row, to_cache=True)
            if not ganomaly:
                continue
            states = [seed]
            if args.model_spread and seed == args.seeds[0]:
                states += [s for s in args.seeds if s != seed]
            for state in states:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scores, fit_s, score_s = run_ganomaly(
                        args.factory, state, frame_train, frame_test
                    )
                row = {**base, "detector": args.name, "random_state": state}
                row |= measure(y_test, scores) | {"fit_s": fit_s, "score_s": score_s}
                record(row, to_cache=False)
            for fraction in args.labelled if dataset != TRANSACTIONS else ():
                known = split(dataset, X, y, seed, fraction)[3]
                for arm, fit_s, scores in run_labelled(
                    args.factory, seed, frame_train, known, frame_test
                ):
                    row = {**base, "detector": f"{arm} {fraction:.0%}"}
                    row |= {"random_state": seed, "fit_s": fit_s, "score_s": np.nan}
                    row |= measure(y_test, scores) | {"n_known": len(known)}
                    record(row, to_cache=False)
    return pd.DataFrame(rows)


def run_labelled(factory, seed: int, normal, known, test):
    """With ``known`` anomalies labelled: GANomaly (``use_labels``) and a
    HistGradientBoostingClassifier on the same rows; (arm, fit seconds, scores)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.vstack([normal, known])
    y = np.r_[np.zeros(len(normal), dtype=int), np.ones(len(known), dtype=int)]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factory(seed).set_params(use_labels=True).fit(X, y)
    yield "GANomaly+labels", time.perf_counter() - start, model.anomaly_score(test)
    start = time.perf_counter()
    # Early stopping off: its stratified validation split needs two labelled
    # anomalies, and 1 % of a small table's is one.
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=seed)
    model.fit(X, y)
    seconds = time.perf_counter() - start
    yield "HistGradientBoosting", seconds, model.predict_proba(test)[:, 1]


# --------------------------------------------------------------------- summary
def per_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (detector, dataset): means over seeds, spreads, ranks."""
    main = results[results["random_state"] == results["seed"]]
    grouped = main.groupby(["detector", "dataset"])
    table = grouped.agg(
        half=("half", "first"),
        auroc=("auroc", "mean"),
        auprc=("auprc", "mean"),
        prevalence=("prevalence", "first"),
        fit_s=("fit_s", "mean"),
        n_train=("n_train", "mean"),
    )
    table["spread"] = grouped["auroc"].max() - grouped["auroc"].min()
    first = results[results["seed"] == results["seed"].min()]
    fits = first.groupby(["detector", "dataset"])
    model = fits["auroc"].max() - fits["auroc"].min()
    table["model_spread"] = model.where(fits["auroc"].count() > 1)
    for metric in ("auroc", "auprc"):
        table[f"{metric}_rank"] = table.groupby("dataset")[metric].rank(ascending=False)
    reference = table.xs("IsolationForest", level="detector")["auroc"]
    if len(reference):
        table["gap_if"] = (
            table["auroc"]
            - reference.reindex(table.index.get_level_values("dataset")).to_numpy()
        )
    else:
        table["gap_if"] = np.nan
    return table


def overview(table: pd.DataFrame) -> pd.DataFrame:
    """One row per detector: means over the tables given, worst gap and spread."""
    grouped = table.groupby(level="detector")
    frame = pd.DataFrame(
        {
            "tables": grouped.size(),
            "AUROC": grouped["auroc"].mean(),
            "AUPRC": grouped["auprc"].mean(),
            "AUROC rank": grouped["auroc_rank"].mean(),
            "AUPRC rank": grouped["auprc_rank"].mean(),
            "worst vs IF": grouped["gap_if"].min(),
            "worst at": grouped["gap_if"].apply(
                lambda g: g.idxmin()[1] if g.notna().any() else "-"
            ),
            "max spread": grouped["spread"].max(),
            "spread at": grouped["spread"].apply(lambda g: g.idxmax()[1]),
            "max model spread": grouped["model_spread"].max(),
            "mean fit s": grouped["fit_s"].mean(),
        }
    )
    return frame.sort_values("AUROC", ascending=False)


def wide(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Tables as rows (with half and prevalence), detectors as columns."""
    frame = table[column].unstack("detector")
    info = table.groupby(level="dataset")[["half", "prevalence", "n_train"]].first()
    info["n_train"] = info["n_train"].round().astype(int)
    frame = info.join(frame)
    return frame.sort_values(["half", "dataset"], key=_casefold)


def _casefold(series: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(series) or series.dtype == object:
        return series.astype(str).str.casefold()
    return series


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} torch thread(s), load "
        f"average at the end {load}"
    )


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def summarise(results: pd.DataFrame, header: str) -> str:
    labelled = results["detector"].str.endswith("%")
    known, results = results[labelled], results[~labelled]
    pooled = results[results["dataset"] != TRANSACTIONS]
    lines = [header, ""]
    if len(pooled):
        table = per_table(pooled)
        for title, part in [
            ("Whole pool", table),
            ("Half A", table[table["half"] == "A"]),
            ("Half B", table[table["half"] == "B"]),
        ]:
            if len(part):
                lines += [f"## {title}", "", _markdown(overview(part)), ""]
        for column, title in [
            ("auroc", "AUROC, mean over seeds"),
            ("auprc", "AUPRC, mean over seeds"),
            ("gap_if", "AUROC minus IsolationForest's"),
            ("spread", "Seed spread: max - min AUROC over seeds"),
            ("model_spread", "Model spread: max - min AUROC over random_state"),
            ("fit_s", "Fit seconds, mean over seeds"),
        ]:
            frame = wide(table, column).dropna(axis=1, how="all")
            if frame.shape[1] > 3:
                lines += [f"### {title}", "", _markdown(frame), ""]
    if len(known):
        lines += known_anomalies(results, known)
    demo = results[results["dataset"] == TRANSACTIONS]
    if len(demo):
        frame = demo.groupby("detector")[["auroc", "auprc", "fit_s"]].agg(
            ["mean", "min", "max"]
        )
        frame.columns = [" ".join(c) for c in frame.columns]
        lines += [
            "## make_transactions(20000, fraud_fraction=0.01, random_state=0)",
            "",
            f"prevalence {demo['prevalence'].iloc[0]:.4f}; over the seeds",
            "",
            _markdown(frame.sort_values("auprc mean", ascending=False)),
            "",
        ]
    return "\n".join(lines)


def known_anomalies(unsupervised: pd.DataFrame, known: pd.DataFrame) -> list[str]:
    """The semi-supervised arms beside the normal-only GANomaly: AUPRC and AUROC
    over the pool, per half and on the card data (means over seeds)."""
    pooled = unsupervised[unsupervised["dataset"] != TRANSACTIONS]
    both = pd.concat([known, pooled[pooled["detector"] == "GANomaly"]])
    both = both[both["random_state"] == both["seed"]]
    per = both.groupby(["detector", "dataset"]).agg(
        half=("half", "first"),
        auroc=("auroc", "mean"),
        auprc=("auprc", "mean"),
        auprc_sd=("auprc", "std"),
    )
    card = per.index.get_level_values("dataset") == "creditcard"
    columns = {}
    for title, part in [
        ("pool", per),
        ("A", per[per["half"] == "A"]),
        ("B", per[per["half"] == "B"]),
        ("creditcard", per[card]),
    ]:
        grouped = part.groupby(level="detector")
        columns[f"{title} AUPRC"] = grouped["auprc"].mean()
        columns[f"{title} AUROC"] = grouped["auroc"].mean()
    frame = pd.DataFrame(columns).dropna(axis=1, how="all")
    if card.any():
        sd = per[card].droplevel("dataset")["auprc_sd"]
        frame["creditcard AUPRC sd"] = sd
    return [
        "## Known anomalies (a share of the training anomalies labelled)",
        "",
        _markdown(frame.sort_values("pool AUPRC", ascending=False)),
        "",
        "### AUPRC per table",
        "",
        _markdown(per["auprc"].unstack("detector")),
        "",
    ]


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join([frame.index.name or ""] + list(map(str, frame.columns)))
    lines = [header + " |", "|" + "---|" * (len(frame.columns) + 1)]
    for index, row in frame.iterrows():
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("" if np.isnan(value) else f"{value:.3f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join([str(index)] + cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help=f"default: the whole pool; {TRANSACTIONS!r} for the demo's data",
    )
    parser.add_argument("--half", choices=["A", "B"], help="only this half")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--detectors", nargs="+", default=None, help="default: GANomaly and all peers"
    )
    parser.add_argument(
        "--ganomaly-params",
        type=json.loads,
        default={},
        help="JSON dict of GANomalyDetector parameters",
    )
    parser.add_argument("--candidate", help="FILE.py:FACTORY, instead of GANomaly")
    parser.add_argument("--name", help="the candidate's name in the results")
    parser.add_argument("--peers-cache", type=Path, help="CSV of peer results")
    parser.add_argument(
        "--model-spread",
        action="store_true",
        help="also fit GANomaly with the other seeds' random_state on the first split",
    )
    parser.add_argument(
        "--transactions", action="store_true", help="also the demo's synthetic data"
    )
    parser.add_argument(
        "--labelled",
        nargs="+",
        type=float,
        default=[],
        metavar="FRACTION",
        help="also, per fraction of the training anomalies labelled (e.g. 0.01 "
        "0.05): GANomaly with use_labels and a HistGradientBoostingClassifier",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=Path("anomaly_quality_out"))
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"error: real data folder {DATA} is absent", file=sys.stderr)
        return 1
    tables = pool()
    half = halves(list(tables))
    args.datasets = args.datasets or list(tables)
    unknown = sorted(set(args.datasets) - {*tables, TRANSACTIONS})
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {list(tables)}")
    if TRANSACTIONS in args.datasets:
        args.datasets.remove(TRANSACTIONS)
        args.transactions = True
    if args.half:
        args.datasets = [d for d in args.datasets if half[d] == args.half]
    if args.candidate:
        args.factory = load_candidate(args.candidate)
        args.name = args.name or "candidate"
    else:
        from ganomaly import GANomalyDetector

        params = {"device": "cpu", **args.ganomaly_params}
        args.factory = lambda seed: GANomalyDetector(random_state=seed, **params)
        args.name = args.name or "GANomaly"
    args.detectors = args.detectors or [args.name, *PEERS]
    unknown = sorted(set(args.detectors) - {args.name, *PEERS})
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {[args.name, *PEERS]}")
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        results = run(args)
    elapsed = time.perf_counter() - start
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.output_dir / "results.csv", index=False)
    header = "\n".join(
        [
            f"# anomaly_quality ({PROTOCOL})",
            "",
            f"{datetime.datetime.now():%Y-%m-%d %H:%M}, commit {commit()}, "
            f"{elapsed / 60:.1f} min (cached peers not re-run)",
            f"machine: {machine()}",
            f"command: {' '.join(sys.argv[1:] if argv is None else argv)}",
            f"detector {args.name}: "
            + (args.candidate or f"GANomalyDetector({args.ganomaly_params})"),
            f"seeds {args.seeds}; halves: "
            + "; ".join(
                f"{h}: " + ", ".join(n for n in tables if half[n] == h) for h in "AB"
            ),
        ]
    )
    summary = summarise(results, header)
    (args.output_dir / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
