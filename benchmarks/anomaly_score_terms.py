"""Which score terms would lift GANomaly past KNN?  A screen on the default networks.

For every table and seed of ``anomaly_quality.py``'s protocol (same pool, halves and
splits), this fits ``GANomalyDetector(random_state=seed)`` with its defaults once
and ranks the test rows by several scores built from *those* networks, so that the
score formula is compared with the training held fixed:

* ``default``: the reconstruction and nearest-prototype terms (the library's score
  until 47830b3; ``library``, with ``--approximate``: its score since, with the
  nearest-row term of :mod:`ganomaly.neighbours`);
* ``rec``: the members' mean log reconstruction ratio alone;
* ``+latent``: the log squared distance from the row's latent code to its nearest
  training code (all training rows, or ``R`` sampled ones: ``latentR``), in place
  of the 256 k-means prototypes;
* ``+disc``: the same nearest-neighbour distance in the discriminator's feature
  space (the output of its body, per member), added as a third term;
* ``+input``: the same in the encoded input space (1-NN, as KNN with k=1 on the
  detector's own preprocessing), added as a third term.

Terms are summed in log space with equal weights (a geometric mean: the library's
rule; dividing a term by its held-out median shifts every row alike, so ranks do
not need the calibration).  The search over all training rows is what a detector
storing every training row would pay per scored row; ``R`` is the cap a model file
would hold.  Peers are read from ``anomaly_quality.py``'s ``--peers-cache`` file for
the comparison; results and the cost of the searches are in benchmarks/RESULTS.md.
``--approximate`` screens instead the searches a model file could hold and a scorer
could afford: k-means prototypes of the discriminator's features, and coarse cells
(``C`` k-means cells, the ``p`` nearest searched exactly: ``{C}c{p}p``) in the
discriminator's features or the encoded input space.
``--search-cost`` times instead what a nearest-neighbour term would add to
scoring: the scorer's own search (:func:`ganomaly._scorer.nearest_squared_distances`,
float64, one thread, blocks of 2048 rows) of 200,000 codes against ``R`` references.

Usage::

    python benchmarks/anomaly_score_terms.py --peers-cache /tmp/aq/peers.csv
    python benchmarks/anomaly_score_terms.py --approximate --peers-cache ...
    python benchmarks/anomaly_score_terms.py --search-cost
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_quality as aq  # noqa: E402

from ganomaly import GANomalyDetector  # noqa: E402


def nearest_log_distance(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """log squared Euclidean distance from each query to its nearest reference."""
    ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float64))
    out = []
    for start in range(0, len(queries), 2048):
        block = np.ascontiguousarray(queries[start : start + 2048], dtype=np.float64)
        out.append(torch.cdist(torch.from_numpy(block), ref).min(dim=1).values.numpy())
    return np.log(np.concatenate(out) ** 2 + 1e-12)


def members_nearest(reference, queries, cap, rng) -> np.ndarray:
    """Mean over members of :func:`nearest_log_distance`, ``cap`` references each."""
    logs = []
    for ref, query in zip(reference, queries, strict=True):
        if cap is not None and ref.shape[0] > cap:
            ref = ref[np.sort(rng.choice(ref.shape[0], cap, replace=False))]
        logs.append(nearest_log_distance(ref, query))
    return np.mean(logs, axis=0)


def kmeans_centres(reference: np.ndarray, n_centres: int, seed: int) -> np.ndarray:
    """k-means centres of ``reference`` (at most 2,048 sampled rows, as the
    detector's prototypes), or the rows themselves when there are too few."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    if reference.shape[0] > 2048:
        reference = reference[np.sort(rng.choice(reference.shape[0], 2048, False))]
    if reference.shape[0] <= n_centres:
        return reference
    return (
        KMeans(n_centres, n_init=1, max_iter=50, random_state=seed)
        .fit(reference)
        .cluster_centers_
    )


def cell_log_distance(
    reference: np.ndarray, queries: np.ndarray, n_cells: int, probes: int, seed: int
) -> np.ndarray:
    """Approximate :func:`nearest_log_distance`: the references are cut into
    ``n_cells`` k-means cells, and each query searches exactly only the
    ``probes`` cells whose centres are nearest to it."""
    reference = np.asarray(reference, np.float64)
    queries = np.asarray(queries, np.float64)
    centres = kmeans_centres(reference, n_cells, seed)
    cell_of = torch.cdist(torch.from_numpy(reference), torch.from_numpy(centres))
    cell_of = cell_of.argmin(dim=1).numpy()
    to_centres = torch.cdist(torch.from_numpy(queries), torch.from_numpy(centres))
    probed = to_centres.topk(min(probes, len(centres)), largest=False).indices.numpy()
    best = np.full(len(queries), np.inf)
    for cell in range(len(centres)):
        members = reference[cell_of == cell]
        asked = np.flatnonzero((probed == cell).any(axis=1))
        if len(members) == 0 or len(asked) == 0:
            continue
        found = torch.cdist(torch.from_numpy(queries[asked]), torch.from_numpy(members))
        best[asked] = np.minimum(best[asked], found.min(dim=1).values.numpy())
    return np.log(best**2 + 1e-12)


def members_cells(reference, queries, n_cells, probes, seed) -> np.ndarray:
    """Mean over members of :func:`cell_log_distance`."""
    return np.mean(
        [
            cell_log_distance(ref, query, n_cells, probes, seed)
            for ref, query in zip(reference, queries, strict=True)
        ],
        axis=0,
    )


def members_prototypes(reference, queries, n_centres, seed) -> np.ndarray:
    """Mean over members of the log squared distance to the nearest of
    ``n_centres`` k-means centres (the detector's prototype rule)."""
    return np.mean(
        [
            nearest_log_distance(kmeans_centres(ref, n_centres, seed), query)
            for ref, query in zip(reference, queries, strict=True)
        ],
        axis=0,
    )


def approximate_scores(
    detector: GANomalyDetector, train, test, seed: int
) -> dict[str, np.ndarray]:
    """The ``--approximate`` screen: nearest-neighbour terms a model file could
    hold and a scorer could afford (k-means prototypes, coarse cells)."""
    enc_train = detector.preprocessor_.transform(train)
    enc_test = detector.preprocessor_.transform(test)
    _, terms = detector._scorer().errors(enc_test)
    rec = np.log(np.maximum(terms["reconstruction"], 1e-300)).mean(axis=1)
    proto = np.log(np.maximum(terms["nearest"], 1e-300)).mean(axis=1)
    with torch.no_grad():
        feats_train, feats_test = (
            detector.discriminator_.features(detector._member_batch(e)).double().numpy()
            for e in (enc_train, enc_test)
        )
    out = {"default": rec + proto}
    if "neighbour" in terms:  # the library's own third term (since 47830b3)
        out["library"] = np.log(detector.anomaly_score(test))
    out["rec+discproto256"] = rec + members_prototypes(
        feats_train, feats_test, 256, seed
    )
    out["default+discproto256"] = out["rec+discproto256"] + proto
    out["default+discproto1024"] = (
        rec + proto + members_prototypes(feats_train, feats_test, 1024, seed)
    )
    for cells, probes in ((64, 1), (64, 4), (128, 2), (128, 8)):
        term = members_cells(feats_train, feats_test, cells, probes, seed)
        out[f"default+disc{cells}c{probes}p"] = rec + proto + term
    out["rec+disc128c8p"] = out["default+disc128c8p"] - proto
    out["default+input128c8p"] = (
        rec + proto + members_cells(enc_train[None], enc_test[None], 128, 8, seed)
    )
    out["default+input128c2p"] = (
        rec + proto + members_cells(enc_train[None], enc_test[None], 128, 2, seed)
    )
    out["default+disc"] = (
        rec + proto + members_nearest(feats_train, feats_test, None, None)
    )
    out["default+input"] = (
        rec + proto + members_nearest(enc_train[None], enc_test[None], None, None)
    )
    return out


def scores(detector: GANomalyDetector, train, test, seed: int) -> dict[str, np.ndarray]:
    """Every screened score of the test rows (higher = more anomalous)."""
    rng = np.random.default_rng(seed)
    enc_train = detector.preprocessor_.transform(train)
    enc_test = detector.preprocessor_.transform(test)
    _, terms = detector._scorer().errors(enc_test)
    rec = np.log(np.maximum(terms["reconstruction"], 1e-300)).mean(axis=1)
    proto = np.log(np.maximum(terms["nearest"], 1e-300)).mean(axis=1)
    codes_train, codes_test = detector._codes(enc_train), detector._codes(enc_test)
    with torch.no_grad():
        feats_train, feats_test = (
            detector.discriminator_.features(detector._member_batch(e)).double().numpy()
            for e in (enc_train, enc_test)
        )
    latent = members_nearest(codes_train, codes_test, None, rng)
    latent2048 = members_nearest(codes_train, codes_test, 2048, rng)
    disc = members_nearest(feats_train, feats_test, None, rng)
    disc2048 = members_nearest(feats_train, feats_test, 2048, rng)
    disc512 = members_nearest(feats_train, feats_test, 512, rng)
    inputs = members_nearest(enc_train[None], enc_test[None], None, rng)
    inputs2048 = members_nearest(enc_train[None], enc_test[None], 2048, rng)
    return {
        "default": np.log(detector.anomaly_score(test)),
        "rec": rec,
        "rec+latent": rec + latent,
        "rec+latent2048": rec + latent2048,
        "default+disc": rec + proto + disc,
        "default+disc2048": rec + proto + disc2048,
        "default+disc512": rec + proto + disc512,
        "rec+latent+disc": rec + latent + disc,
        "rec+latent2048+disc2048": rec + latent2048 + disc2048,
        "default+input": rec + proto + inputs,
        "default+input2048": rec + proto + inputs2048,
    }


def summary(results: pd.DataFrame, peers: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds, then over tables (all, A, B); ranks among variants and
    peers by AUROC; the worst gap to IsolationForest and the tables >0.01 below."""
    ours = results.groupby(["dataset", "detector"])[["auroc", "auprc"]].mean()
    theirs = (
        peers[
            peers["dataset"].isin(results["dataset"].unique())
            & peers["seed"].isin(results["seed"].unique())
            & (peers["seed"] == peers["random_state"])
        ]
        .groupby(["dataset", "detector"])[["auroc", "auprc"]]
        .mean()
    )
    table = pd.concat([ours, theirs]).reset_index()
    table["half"] = table["dataset"].map(aq.halves(list(aq.pool())))
    table["rank"] = table.groupby("dataset")["auroc"].rank(ascending=False)
    out = table.groupby("detector").agg(
        auroc=("auroc", "mean"), auprc=("auprc", "mean"), rank=("rank", "mean")
    )
    for half in "AB":
        part = table[table["half"] == half].groupby("detector")
        out[f"auroc {half}"] = part["auroc"].mean()
        out[f"auprc {half}"] = part["auprc"].mean()
    if "IsolationForest" in set(table["detector"]):
        reference = table[table["detector"] == "IsolationForest"].set_index("dataset")
        gap = table["auroc"] - table["dataset"].map(reference["auroc"])
        out["worst vs IF"] = gap.groupby(table["detector"]).min()
        out["tables < IF-0.01"] = (
            (gap < -0.01).groupby(table["detector"]).sum().astype(int)
        )
    return out.sort_values("auroc", ascending=False)


def search_cost(rows: int = 200_000, repeats: int = 3) -> str:
    """Seconds (best of ``repeats``) to find, for ``rows`` codes, the nearest of
    ``R`` references, as the scorer does per member."""
    from ganomaly._scorer import nearest_squared_distances
    from ganomaly.threads import one_blas_thread

    rng = np.random.default_rng(0)
    lines = ["| width | R | s per 200,000 rows | vs R=256 |", "|---|---:|---:|---:|"]
    for width in (20, 40):
        codes = rng.normal(size=(rows, width))
        base = None
        for n_ref in (256, 2048, 8192, 14_000):
            references = rng.normal(size=(n_ref, width))
            norms = np.einsum("ij,ij->i", references, references)
            best = np.inf
            with one_blas_thread():
                for _ in range(repeats):
                    start = time.perf_counter()
                    for first in range(0, rows, 2048):
                        block = codes[first : first + 2048]
                        nearest_squared_distances(block, references, norms)
                    best = min(best, time.perf_counter() - start)
            base = base or best
            lines.append(f"| {width} | {n_ref} | {best:.2f} | {best / base:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("A", "B"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--peers-cache", type=Path, help="anomaly_quality.py's CSV")
    parser.add_argument("--output-dir", type=Path, default=Path("score_terms_out"))
    parser.add_argument(
        "--search-cost", action="store_true", help="time the searches instead"
    )
    parser.add_argument(
        "--approximate",
        action="store_true",
        help="screen prototype and coarse-cell searches instead",
    )
    parser.add_argument("--datasets", nargs="+", help="only these tables")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.search_cost:
        print(f"{aq.machine()}\n\n{search_cost()}")
        return 0
    tables = aq.pool()
    half_of = aq.halves(list(tables))
    rows = []
    for name, path in tables.items():
        if args.half and half_of[name] != args.half:
            continue
        if args.datasets and name not in args.datasets:
            continue
        X, y = aq.load_table(path)
        for seed in args.seeds:
            train, test, y_test, _ = aq.split(name, X, y, seed)
            start = time.perf_counter()
            detector = GANomalyDetector(random_state=seed, device="cpu").fit(train)
            fit_s = time.perf_counter() - start
            screen = approximate_scores if args.approximate else scores
            for variant, score in screen(detector, train, test, seed).items():
                rows.append(
                    {
                        "dataset": name,
                        "half": half_of[name],
                        "seed": seed,
                        "detector": variant,
                        "auroc": roc_auc_score(y_test, score),
                        "auprc": average_precision_score(y_test, score),
                        "fit_s": fit_s,
                    }
                )
            print(f"{name:16s} seed {seed} fitted in {fit_s:.1f} s", flush=True)
    results = pd.DataFrame(rows)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.output_dir / "score_terms.csv", index=False)
    peers = aq.read_cache(args.peers_cache)
    text = f"commit {aq.commit()}; {aq.machine()}\n\n" + aq._markdown(
        summary(results, peers)
    )
    (args.output_dir / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
