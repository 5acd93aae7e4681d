"""GANomaly inference in numpy: from preprocessed rows to scores and explanations.

The anomaly score is a pure function of the model file: the members' weights, the
preprocessing, and calibration constants fixed at fit time.  This module holds that
function once, for every way of scoring on the CPU: the estimator
(:class:`ganomaly.GANomalyDetector` scores through a :class:`Scorer`), the streaming
scorer (``ganomaly score``, :func:`ganomaly.scoring.score_file`, the Dask paths), and
the check of the ONNX export.  :func:`load_scorer` reads a model file without
importing torch or scikit-learn (seconds of start-up saved per process).

The score (issue 18; benchmarks/RESULTS.md).  For each of the ``M`` members, two
terms: its reconstruction error ``rec_m(x)``, the mean over encoded features of
``(x_j - G_m(x)_j)^2 / s_mj`` (``s_mj``: the mean of that squared error on held-out
normal rows, per input column, :func:`feature_error_scale`), and its nearest-prototype
distance ``near_m(x)``, the squared distance from the latent code ``G_E,m(x)`` to the
nearest of the member's prototypes (k-means centres of the training rows' codes).
Where the model keeps references (``n_references > 0``), a third term, once for
the model: ``neigh(x)``, the squared distance from the encoded row to the nearest
training row it keeps, searched in coarse cells (:mod:`ganomaly.neighbours`).
Where the model was fitted with known anomalies (``use_labels=True``), one more:
``known(x)``, the squared distance to the nearest known anomaly it keeps, searched
the same way.  It multiplies the score rather than joining its mean
(:data:`BOOST_TERMS`): a row closer to a known anomaly than the typical normal row
has its score multiplied by how much closer; a row farther keeps its score, so that
anomalies unlike any known one lose nothing.
Each term is divided by its median on held-out normal rows, and the score is the
geometric mean over the terms of each term's geometric mean over its members
(:func:`combine_scores`): 1 for a typical normal row, 2 for a row twice as far
from normal on every term.

Precision: a Scorer defaults to float64, the estimator's arithmetic; the streaming
scorer takes float32 networks where they are position-free (``precision="auto"`` in
:func:`ganomaly.scoring.as_scorer`).  Either way a row's score does not depend on the
rows around it (block, partition, file), to the last bit: BLAS kernels compute some
places of a product (the last row of an odd block, the ends of a float32 block) with
other instructions, and the scorer keeps rows out of those places
(:meth:`Scorer.errors`, :meth:`Scorer._errors_by_feature`).  float32 networks are
about twice as fast; their scores differ from the estimator's by up to about 1e-4
relative, for rows close to a prototype (benchmarks/RESULTS.md).  The prototype
distances are float64 always.  The float32 layout was measured on OpenBLAS's
Haswell/Zen kernels; each Scorer checks it on its own weights and says in
``position_free`` whether it holds.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from .model_file import MODEL_KIND, ModelConfig
from .neighbours import NeighbourIndex
from .threads import one_blas_thread

__all__ = [
    "SCORES",
    "SCORE_TERMS",
    "BOOST_TERMS",
    "RATIO_FLOOR",
    "Scorer",
    "combine_scores",
    "feature_attribution",
    "feature_error_scale",
    "feature_errors",
    "load_scorer",
    "nearest_squared_distances",
    "score_terms",
    "term_logs",
    "top_contributions",
]

# "combined": reconstruction, nearest-prototype and, where the model keeps
# references (n_references > 0), nearest-neighbour terms; "reconstruction": the
# reconstruction terms alone (GANomaly's contextual error).
SCORES = ("combined", "reconstruction")
SCORE_TERMS = {
    "combined": ("reconstruction", "nearest", "neighbour", "known"),
    "reconstruction": ("reconstruction",),
}
# Terms that multiply the score instead of joining its geometric mean: closeness to
# the known anomalies, median / value, kept within [1, 1 / RATIO_FLOOR].
BOOST_TERMS = ("known",)
# Terms with one column (a search in the encoded rows), not one per member.
INDEX_TERMS = ("neighbour", "known")
# Rows per matrix product: small enough to stay in cache (benchmarks/RESULTS.md).
_BLOCK = 2048
# float32 products run feature-major, on blocks of exactly _COLUMNS rows (columns
# there) whose first and last _MARGIN are zeros.  OpenBLAS's float32 kernels
# (Haswell/Zen) compute the 8 columns at either end of such a product with other
# instructions than those in between, whose last bits differ; in between, every
# row gets the same bits wherever it is.  Scorer checks this on its own weights
# (_same_bits_everywhere) and says so in `position_free`.
_COLUMNS = 320
_MARGIN = 8
_STACK = 8  # blocks per matmul call
_NEGATIVE_SLOPE = 0.2  # the LeakyReLU of ganomaly._model
_PARTS = ("encoder", "decoder")  # what scoring runs of each member
# Each term's ratio to its median is floored here: a row a thousand times closer
# to a prototype than the typical normal row is no more normal for it, and float32
# codes do not resolve smaller distances (a training row on its own prototype).
RATIO_FLOOR = 1e-3


def feature_errors(
    difference: np.ndarray,
    feature_error_scale: np.ndarray,
    out: np.ndarray | None = None,
) -> None:
    """Per-feature errors of the score from ``x - G(x)``, in place, and copied to
    ``out`` when given: ``(x_j - G(x)_j)^2 / feature_error_scale[j]``, the squared
    error in units of its mean on held-out normal rows (per input column).

    Parameters
    ----------
    difference : ndarray of shape (n_samples, n_features)
        ``x - G(x)``; overwritten with the errors.  Rows may be columns (the
        float32 scorer's blocks) if ``feature_error_scale`` is shaped to match.
    feature_error_scale : ndarray of shape (n_features,)
        Or any shape that broadcasts against ``difference`` feature by feature.
    out : ndarray of shape (n_samples, n_features), optional
        Usually float32.

    Examples
    --------
    >>> out = np.empty((1, 2), dtype=np.float32)
    >>> feature_errors(np.array([[2.0, -1.0]]), np.array([4.0, 0.5]), out)
    >>> out.tolist()
    [[1.0, 2.0]]
    """
    np.square(difference, out=difference)
    difference /= feature_error_scale.astype(difference.dtype, copy=False)
    if out is not None:
        np.copyto(out, difference, casting="same_kind")


def feature_error_scale(errors: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per-feature divisors that give every input column the same weight in the score.

    A column's error is the sum of the squared errors of its encoded features (a
    number and its missing indicator, or the one-hot features of a category),
    measured in units of its mean on held-out normal rows; the score averages these
    over the input columns.  Folded into one divisor per encoded feature, so that
    the score stays the mean of the scaled per-feature errors.  A tiny floor keeps
    columns reconstructed exactly (constants) finite.

    Parameters
    ----------
    errors : ndarray of shape (n_rows, n_encoded_features)
        Squared reconstruction errors of held-out normal rows.
    sources : ndarray of shape (n_encoded_features,)
        Input column of every encoded feature.

    Returns
    -------
    ndarray of shape (n_encoded_features,)

    Examples
    --------
    >>> errors = np.array([[2.0, 0.1, 0.2, 0.3], [6.0, 0.3, 0.2, 0.1]])
    >>> feature_error_scale(errors, np.array([0, 1, 1, 1])).round(6).tolist()
    [2.0, 0.3, 0.3, 0.3]
    """
    sources = np.asarray(sources, dtype=np.intp)
    n_columns = int(sources.max()) + 1 if sources.size else 0
    column_error = np.bincount(
        sources, weights=errors.mean(axis=0, dtype=np.float64), minlength=n_columns
    )
    floor = 1e-9 * max(float(column_error.mean()), 1e-12) if n_columns else 1e-12
    column_error = np.maximum(column_error, floor)
    return column_error[sources] * n_columns / max(sources.size, 1)


def nearest_squared_distances(
    codes: np.ndarray, prototypes: np.ndarray, prototype_norms: np.ndarray | None = None
) -> np.ndarray:
    """The squared Euclidean distance from each code to its nearest prototype.

    The nearest prototype is found with one product of the codes (rows) with the
    prototypes (``|p|^2 - 2 z.p``, float64); its distance is then computed as
    ``sum((z - p)^2)``, without the cancellation of the expanded form, so that a
    code on a prototype gets 0, and a code's distance does not depend on the codes
    around it when their number is even (see the module docstring).

    Parameters
    ----------
    codes : ndarray of shape (n, latent_dim), float64
    prototypes : ndarray of shape (n_prototypes, latent_dim), float64
    prototype_norms : ndarray of shape (n_prototypes,), optional
        ``(prototypes ** 2).sum(1)``, computed if not given.

    Examples
    --------
    >>> nearest_squared_distances(np.array([[0.0, 0.0], [3.0, 4.0]]),
    ...                           np.array([[0.0, 1.0], [3.0, 3.0]])).tolist()
    [1.0, 1.0]
    """
    if prototype_norms is None:
        prototype_norms = np.einsum("ij,ij->i", prototypes, prototypes)
    products = codes @ prototypes.T
    products *= -2.0
    products += prototype_norms
    difference = codes - prototypes[products.argmin(axis=1)]
    np.square(difference, out=difference)
    return difference.sum(axis=1)


def combine_scores(
    terms: dict[str, np.ndarray],
    score_type: str,
    calibration: dict[str, Any],
) -> np.ndarray:
    """Anomaly scores from the members' terms: each term divided by its median on
    held-out normal rows (each ratio at least :data:`RATIO_FLOOR`), the geometric
    mean of a term's ratios over its members, then the geometric mean over the
    terms (each term weighs the same, however many members it has); times, for
    the :data:`BOOST_TERMS`, the median divided by the term, within ``[1, 1 /
    RATIO_FLOOR]``.

    The score type's terms that ``calibration`` holds are used: the
    ``"neighbour"`` term only where the model keeps references, ``"known"`` only
    where it keeps known anomalies.

    Parameters
    ----------
    terms : dict of str to ndarray of shape (n_samples, n_members) or (n_samples, 1)
        ``"reconstruction"`` (mean scaled squared error) and, for
        ``"combined"``, ``"nearest"`` (squared distance to the nearest prototype,
        per member), ``"neighbour"`` (squared distance to the nearest
        reference row: one column, the encoded input space has no members) and
        ``"known"`` (squared distance to the nearest known anomaly, one column).
    score_type : {"combined", "reconstruction"}
    calibration : dict of str to sequence
        The medians of the terms on held-out normal rows, one per column.

    Returns
    -------
    ndarray of shape (n_samples,), float64, positive

    Examples
    --------
    >>> terms = {"reconstruction": np.array([[2.0, 8.0]]),
    ...          "nearest": np.array([[1.0, 4.0]])}
    >>> calibration = {"reconstruction": [2.0, 2.0], "nearest": [1.0, 1.0]}
    >>> combine_scores(terms, "combined", calibration).round(6).tolist()
    [2.0]
    """
    return _score_from_logs(term_logs(terms, score_type, calibration))


def _score_from_logs(logs: dict[str, np.ndarray]) -> np.ndarray:
    """The score from :func:`term_logs`: the terms' mean logarithm plus the
    :data:`BOOST_TERMS`' logarithms, exponentiated."""
    mean = [value for name, value in logs.items() if name not in BOOST_TERMS]
    log_score = sum(mean) / len(mean)
    for name in BOOST_TERMS:
        if name in logs:
            log_score = log_score + logs[name]
    return np.exp(log_score)


def term_logs(
    terms: dict[str, np.ndarray],
    score_type: str,
    calibration: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Per term of the score, the logarithm of its members' geometric mean ratio
    to the term's median (each ratio at least :data:`RATIO_FLOOR`; for the
    :data:`BOOST_TERMS`, median over term, within ``[1, 1 / RATIO_FLOOR]``),
    ``(n,)``: :func:`combine_scores` averages them (and adds the boosts),
    :func:`feature_attribution` weighs the terms by them.  Arguments as
    :func:`combine_scores`.

    Examples
    --------
    >>> terms = {"reconstruction": np.array([[2.0, 8.0]])}
    >>> logs = term_logs(terms, "reconstruction", {"reconstruction": [2.0, 2.0]})
    >>> np.exp(logs["reconstruction"]).round(6).tolist()
    [2.0]
    """
    if score_type not in SCORES:
        raise ValueError(f"score_type must be one of {SCORES}, got {score_type!r}")
    logs = {}
    for name in score_terms(score_type, calibration):
        ratio = terms[name] / np.asarray(calibration[name], dtype=np.float64)
        if name in BOOST_TERMS:
            ratio = 1.0 / np.clip(ratio, RATIO_FLOOR, 1.0)
        logs[name] = np.log(np.maximum(ratio, RATIO_FLOOR)).mean(axis=1)
    return logs


def feature_attribution(
    errors: np.ndarray,
    gaps: np.ndarray | None,
    logs: dict[str, np.ndarray],
) -> np.ndarray:
    """Per feature, its part in what sets a row apart: what the explanations rank.

    Two of the score's terms have a part per feature: the reconstruction error
    (``errors``, the members' mean scaled squared error per feature) and the
    nearest-row distance (``gaps``, ``(x - r)^2`` per feature to the reference
    ``r`` that counts).  Each is split over the features in proportion to its
    parts, and the two splits are added, each weighted by how far its term lies
    above a typical normal row: ``max(ratio - 1, 0)``, ``ratio`` the term's
    geometric mean ratio to its median (:func:`term_logs`).  A row flagged for
    being far from every training row then names the columns that set it apart
    from the nearest one, a row flagged for a poor reconstruction the columns the
    networks get wrong.  Where neither term is above its median, both weigh the
    same.  The nearest-prototype term (a distance between latent codes) has no
    part per feature and is left out.  Without ``gaps`` (no nearest-row term),
    ``errors`` themselves, as before the term.

    Parameters
    ----------
    errors : ndarray of shape (n, n_features), float32
    gaps : ndarray of shape (n, n_features), float32, or None
    logs : dict of str to ndarray of shape (n,)
        :func:`term_logs` of the row's terms; ``"reconstruction"`` and
        ``"neighbour"`` are read.

    Returns
    -------
    ndarray of shape (n, n_features), float32, in ``errors``' memory order
        Not normalised: :func:`top_contributions` divides by the row's total.

    Examples
    --------
    >>> errors = np.array([[3.0, 1.0]], np.float32)
    >>> gaps = np.array([[0.0, 4.0]], np.float32)
    >>> logs = {"reconstruction": np.log([1.5]), "neighbour": np.log([2.5])}
    >>> feature_attribution(errors, gaps, logs).round(4).tolist()
    [[0.375, 1.625]]
    """
    if gaps is None:
        return errors
    excess = {
        name: np.maximum(np.exp(logs[name]) - 1.0, 0.0)
        for name in ("reconstruction", "neighbour")
    }
    neither = (excess["reconstruction"] == 0) & (excess["neighbour"] == 0)
    out = np.zeros_like(errors)
    for name, parts in (("reconstruction", errors), ("neighbour", gaps)):
        weight = np.where(neither, 1.0, excess[name])
        total = parts.sum(axis=1, dtype=np.float64)
        factor = np.divide(weight, total, out=np.zeros_like(total), where=total > 0)
        out += parts * factor.astype(np.float32)[:, None]
    return out


def score_terms(score_type: str, calibration: dict[str, Any]) -> tuple[str, ...]:
    """The terms of ``score_type`` that a model with this calibration has.

    Examples
    --------
    >>> score_terms("combined", {"reconstruction": [1.0], "nearest": [1.0]})
    ('reconstruction', 'nearest')
    """
    return tuple(name for name in SCORE_TERMS[score_type] if name in calibration)


def top_contributions(
    errors: np.ndarray,
    top_k: int,
    n_columns: int,
    sources: np.ndarray,
    overwrite_errors: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``top_k`` original columns per row and their error shares.

    Per-feature errors are summed per original column (the one-hot columns of a
    category count together) and divided by the row's total.  Ties go to the first
    column.

    Parameters
    ----------
    errors : ndarray of shape (n_samples, n_features)
        Fastest in Fortran order, as :meth:`Scorer.errors` gives them.
    top_k : int
    n_columns : int
        Number of original (input) columns.
    sources : ndarray of shape (n_features,)
        Original column of every encoded feature, in column order.
    overwrite_errors : bool, default=False
        Whether ``errors`` may be overwritten (saves a copy of them).

    Returns
    -------
    top : ndarray of shape (n_samples, min(top_k, n_columns)), intp
    shares : ndarray of the same shape, in [0, 1]

    Examples
    --------
    >>> errors = np.array([[1.0, 3.0, 0.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    >>> top, shares = top_contributions(errors, 2, 3, np.array([0, 1, 2, 2]))
    >>> top.tolist(), shares.tolist()
    ([[2, 1], [2, 0]], [[0.5, 0.375], [0.5, 0.25]])
    """
    if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    # Column-major work: every step below is a pass over contiguous rows of
    # `per_column`, about 20x faster than reductions along rows of 30 values.
    sources = np.asarray(sources, dtype=np.intp)
    if n_columns == errors.shape[1]:  # numeric columns only: one-to-one
        per_column = errors.T
        if not (overwrite_errors and per_column.flags.c_contiguous):
            per_column = np.array(per_column, order="C")
    else:
        by_feature = np.ascontiguousarray(errors.T)
        per_column = np.zeros((n_columns, errors.shape[0]), dtype=errors.dtype)
        starts = np.flatnonzero(np.r_[True, sources[1:] != sources[:-1]])
        if (np.diff(sources) >= 0).all():
            per_column[sources[starts]] = np.add.reduceat(by_feature, starts, axis=0)
        else:  # pragma: no cover - the preprocessor keeps a column's features together
            for column in range(n_columns):
                per_column[column] = by_feature[sources == column].sum(axis=0)
    n = per_column.shape[1]
    total = per_column.sum(axis=0)
    total[~(total > 0)] = 1.0
    top_k = min(int(top_k), n_columns)
    top = np.empty((top_k, n), dtype=np.intp)
    shares = np.empty((top_k, n), dtype=per_column.dtype)
    # The first column that holds a row's maximum: the largest of
    # (n_columns - column) where the value equals the maximum.
    code_type = np.uint8 if n_columns < 256 else np.int32
    countdown = np.arange(n_columns, 0, -1, dtype=code_type)[:, None]
    equal = np.empty(per_column.shape, dtype=bool)
    coded = np.empty(per_column.shape, dtype=code_type)
    # per_column[first, everywhere] as one index into the flat array (3x faster).
    flat, everywhere = per_column.reshape(-1), np.arange(n)
    for k in range(top_k):
        best = per_column.max(axis=0)
        np.equal(per_column, best, out=equal)
        np.multiply(equal.view(np.uint8), countdown, out=coded)
        first = n_columns - coded.max(axis=0).astype(np.intp)
        unordered = np.flatnonzero(first == n_columns)  # a NaN: argmax's choice
        if unordered.size:
            first[unordered] = per_column[:, unordered].argmax(axis=0)
            best[unordered] = per_column[first[unordered], unordered]
        top[k] = first
        np.divide(best, total, out=shares[k])
        flat[first * n + everywhere] = -np.inf
    return top.T, shares.T


def _mlp_layers(
    state: dict[str, np.ndarray], part: str, n_in: int, n_out: int
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per member, ``(W.T, b)`` of a member MLP's linear layers (weights stored
    ``(M, out, in)``), checked to chain up."""
    prefix = f"{part}.net."
    keys = [k for k in state if k.startswith(prefix)]
    indices = sorted({int(k[len(prefix) :].split(".")[0]) for k in keys})
    expected = {f"{prefix}{i}.{p}" for i in indices for p in ("weight", "bias")}
    if set(keys) != expected or not indices:
        raise ValueError(
            f"{part}: expected only linear layers (weight and bias), got {sorted(keys)}"
        )
    n_members = np.asarray(state[f"{prefix}{indices[0]}.weight"]).shape[0]
    members: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(n_members)]
    width = n_in
    for i in indices:
        weight = np.asarray(state[f"{prefix}{i}.weight"])
        bias = np.asarray(state[f"{prefix}{i}.bias"])
        chained = weight.ndim == 3 and weight.shape[::2] == (n_members, width)
        if not chained or bias.shape != weight.shape[:2]:
            raise ValueError(
                f"{part}: layer {i} has shape {weight.shape}, expected "
                f"({n_members}, *, {width})"
            )
        for member, layers in enumerate(members):
            layers.append((weight[member].T, bias[member]))
        width = weight.shape[1]
    if width != n_out:
        raise ValueError(f"{part}: output width {width}, expected {n_out}")
    return members


class Scorer:
    """A fitted GANomaly model as numpy arrays: scores, flags and explanations.

    Build one with :func:`load_scorer` (from a model file, without torch) or
    :meth:`from_model` (what ``GANomalyDetector`` scores with).

    Parameters
    ----------
    preprocessor : TabularPreprocessor
        Fitted.
    state : dict of str to ndarray
        The members' generators' ``state_dict`` (``encoder.net.0.weight`` of shape
        ``(M, out, in)``, ...).
    latent_dim : int
    score_type : {"combined", "reconstruction"}
    calibration : dict
        Per member, the medians of the score terms on held-out normal rows
        (:func:`combine_scores`).
    threshold : float
        Scores above it are anomalies.
    feature_error_scale : ndarray of shape (n_members, n_features)
        Per-feature units of each member's squared errors.
    prototypes : ndarray of shape (n_members, n_prototypes, latent_dim)
    dtype : numpy dtype, default=float64
        Precision of the networks' matrix products (see the module docstring).
    metadata : dict, optional
        The model's free-form metadata (``GANomalyDetector.metadata_``).
    neighbours : NeighbourIndex, optional
        The reference rows of the nearest-neighbour term
        (:mod:`ganomaly.neighbours`); the model has that term exactly when it has
        references and ``calibration`` a ``"neighbour"`` median.
    known : NeighbourIndex, optional
        The known anomalies of the known-anomaly term, likewise with a
        ``"known"`` median.

    Attributes
    ----------
    position_free : bool
        Whether a row's scores are the same to the last bit wherever it falls in a
        block.  Always for float64; for float32, where this BLAS computes every
        place between the margins of a block alike (checked at construction);
        never for other dtypes.
    source : Path or None
        The model file it was read from (:func:`load_scorer`): a run never writes
        over it.
    metadata : dict
    """

    source: Path | None = None

    def __init__(
        self,
        preprocessor: Any,
        state: dict[str, np.ndarray],
        latent_dim: int,
        score_type: str,
        calibration: dict[str, Any],
        threshold: float,
        feature_error_scale: np.ndarray,
        prototypes: np.ndarray,
        dtype: Any = np.float64,
        metadata: dict | None = None,
        neighbours: NeighbourIndex | None = None,
        known: NeighbourIndex | None = None,
    ):
        if score_type not in SCORES:
            raise ValueError(f"score_type must be one of {SCORES}, got {score_type!r}")
        self.preprocessor_ = preprocessor
        self.metadata = dict(metadata or {})
        self.score_type = score_type
        self.threshold_ = float(threshold)
        self.dtype = np.dtype(dtype)
        n_features = int(preprocessor.n_features_out_)
        sizes = {
            "encoder": (n_features, latent_dim),
            "decoder": (latent_dim, n_features),
        }
        members = {part: _mlp_layers(state, part, *sizes[part]) for part in _PARTS}
        self.n_members = len(members["encoder"])
        for term, index in (("neighbour", neighbours), ("known", known)):
            if (term in calibration) != (index is not None):
                raise ValueError(
                    f"the {term!r} term needs both its rows and its calibration"
                )
            if index is not None and index.references.shape[1] != n_features:
                raise ValueError(
                    f"{term} rows have {index.references.shape[1]} features, "
                    f"expected {n_features}"
                )
        self.neighbours_ = neighbours
        self.known_ = known
        self.calibration_ = {
            name: np.asarray(calibration[name], dtype=np.float64)
            for name in score_terms(score_type, calibration)
        }
        for name, medians in self.calibration_.items():
            columns = 1 if name in INDEX_TERMS else self.n_members
            if medians.shape != (columns,) or not (medians > 0).all():
                raise ValueError(f"calibration {name!r}: {columns} positive value(s)")
        self.feature_error_scale_ = np.asarray(feature_error_scale, dtype=np.float64)
        if self.feature_error_scale_.shape != (self.n_members, n_features):
            raise ValueError(
                f"feature_error_scale has shape {self.feature_error_scale_.shape}, "
                f"expected ({self.n_members}, {n_features})"
            )
        self.prototypes_ = np.asarray(prototypes, dtype=np.float64)
        if self.prototypes_.ndim != 3 or self.prototypes_.shape[::2] != (
            self.n_members,
            latent_dim,
        ):
            raise ValueError(
                f"prototypes have shape {self.prototypes_.shape}, expected "
                f"({self.n_members}, *, {latent_dim})"
            )
        self._prototype_norms = np.einsum(
            "mij,mij->mi", self.prototypes_, self.prototypes_
        )
        self._layers = {
            (member, part): [
                (w.astype(self.dtype), b.astype(self.dtype)) for w, b in layers
            ]
            for part in _PARTS
            for member, layers in enumerate(members[part])
        }
        # float32: (weight, bias repeated over a block's columns), for products
        # with rows as columns.  A bias column broadcast along a block's rows would
        # make numpy copy it into a buffer for every add: a third slower.
        self._by_feature = {}
        self.position_free = self.dtype == np.float64
        if self.dtype == np.float32:
            self._by_feature = {
                key: [
                    (np.ascontiguousarray(w.T), np.repeat(b[:, None], _COLUMNS, 1))
                    for w, b in layers
                ]
                for key, layers in self._layers.items()
            }
            self.position_free = _same_bits_everywhere(self._by_feature, self.dtype)
        self._n_columns = len(preprocessor.input_columns_)
        self._sources = np.asarray(preprocessor.source_columns_, dtype=np.intp)

    @classmethod
    def from_model(
        cls, arrays: dict[str, np.ndarray], config: dict, dtype: Any = np.float64
    ) -> Scorer:
        """A scorer from what a GANomalyDetector model file holds.

        The one mapping from a model's contents to a scorer: :func:`load_scorer`
        (from a file) and ``GANomalyDetector`` (from memory) both use it, so a
        detector scores the same before and after a save.

        Parameters
        ----------
        arrays : dict of str to ndarray
            The model's tensors by name (``ganomaly.model_file``).
        config : dict
            The model's JSON configuration (:class:`~ganomaly.model_file.
            ModelConfig`).
        dtype : numpy dtype, default=float64
        """
        from .preprocessing import TabularPreprocessor

        model = ModelConfig.from_dict(config)
        preprocessor = TabularPreprocessor.from_dict(model.preprocessor)
        shapes = {name: np.shape(value) for name, value in arrays.items()}
        model.check_shapes(shapes, preprocessor.n_features_out_)
        prefix = "generator."
        state = {
            k[len(prefix) :]: np.asarray(v)
            for k, v in arrays.items()
            if k.startswith(prefix)
        }
        return cls(
            preprocessor,
            state,
            latent_dim=model.latent_dim,
            score_type=model.params["score_type"],
            calibration=model.calibration,
            threshold=model.threshold,
            feature_error_scale=np.asarray(arrays["calibration.feature_error_scale"]),
            prototypes=np.asarray(arrays["calibration.prototypes"]),
            neighbours=NeighbourIndex.from_arrays(arrays),
            known=NeighbourIndex.from_arrays(arrays, "known"),
            dtype=dtype,
            metadata=model.metadata,
        )

    def digest(self) -> str:
        """SHA-256 of all that the scores depend on: weights, preprocessing,
        calibration and precision (hex)."""
        import hashlib
        import json

        digest = hashlib.sha256()
        settings = {
            "preprocessor": self.preprocessor_.to_dict(),
            "score_type": self.score_type,
            "calibration": {k: v.tolist() for k, v in self.calibration_.items()},
            "threshold": self.threshold_,
            "dtype": self.dtype.name,
        }
        digest.update(json.dumps(settings, sort_keys=True).encode())
        for key in sorted(self._layers):
            for weight, bias in self._layers[key]:
                digest.update(np.ascontiguousarray(weight).tobytes())
                digest.update(np.ascontiguousarray(bias).tobytes())
        digest.update(self.feature_error_scale_.tobytes())
        digest.update(self.prototypes_.tobytes())
        for index in (self.neighbours_, self.known_):
            if index is not None:
                for array in index.arrays().values():
                    digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def member_layers(self, part: str) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per member, ``(W.T, b)`` of each linear layer of its ``"encoder"`` or
        ``"decoder"``, in this scorer's dtype (what the ONNX export writes)."""
        return [self._layers[(member, part)] for member in range(self.n_members)]

    @property
    def input_order(self) -> str:
        """The memory layout of encoded rows that :meth:`errors` reads fastest:
        ``"F"`` (feature-major) for the float32 products, else ``"C"``."""
        return "F" if self._by_feature else "C"

    @property
    def _need_nearest(self) -> bool:
        return "nearest" in self.calibration_

    @property
    def _need_neighbour(self) -> bool:
        return "neighbour" in self.calibration_

    def _mlp(self, x: np.ndarray, key: tuple[int, str]) -> np.ndarray:
        layers = self._layers[key]
        for i, (weight, bias) in enumerate(layers):
            x = x @ weight
            x += bias
            if i < len(layers) - 1:  # LeakyReLU between layers, none after the last
                np.maximum(x, _NEGATIVE_SLOPE * x, out=x)
        return x

    def errors(
        self, encoded: np.ndarray, gaps: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Per-feature reconstruction errors (float32, the members' mean) and the
        score terms (``{"reconstruction": (n, M), "nearest": (n, M), "neighbour":
        (n, 1), "known": (n, 1)}``, float64; :func:`combine_scores`).

        The nearest-neighbour and known-anomaly terms are searched in the encoded
        rows themselves (:class:`~ganomaly.neighbours.NeighbourIndex`, float64),
        whatever the networks' precision or device.  With ``gaps`` and the
        nearest-neighbour term, the terms
        also hold ``"gaps"``: ``(x - r)^2`` per feature to the reference that
        counts (float32, the errors' memory order), for
        :func:`feature_attribution`.
        """
        errors, terms = self._network_errors(encoded)
        if self._need_neighbour:
            found = None
            if gaps:
                found = np.empty(errors.shape, np.float32, order=_order_of(errors))
                terms["gaps"] = found
            terms["neighbour"][:, 0] = self.neighbours_.squared_distances(
                encoded, found
            )
        if "known" in self.calibration_:
            terms["known"][:, 0] = self.known_.squared_distances(encoded)
        return errors, terms

    def _network_errors(
        self, encoded: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The members' terms of :meth:`errors`.

        The per-feature errors come feature-major (Fortran order), as
        :func:`top_contributions` reads them.  A row's float64 results do not
        depend on its block: blocks of an odd number of rows get a row of zeros,
        because OpenBLAS computes the last row of an odd block with another kernel,
        whose products differ in the last bits.  float32 products run
        feature-major, see :meth:`_errors_by_feature`.
        """
        if self.dtype == np.float32:
            return self._errors_by_feature(encoded)
        n, n_features = encoded.shape
        errors = np.empty((n, n_features), dtype=np.float32, order="F")
        terms = self._empty_terms(n)
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            rows = stop - start
            x = np.zeros((rows + rows % 2, n_features), dtype=self.dtype)
            x[:rows] = encoded[start:stop]
            total = np.zeros((rows, n_features), dtype=np.float64)
            for member in range(self.n_members):
                codes = self._mlp(x, (member, "encoder"))
                difference = x - self._mlp(codes, (member, "decoder"))
                feature_errors(difference, self.feature_error_scale_[member])
                total += difference[:rows]
                terms["reconstruction"][start:stop, member] = difference[:rows].mean(
                    axis=1, dtype=np.float64
                )
                if self._need_nearest:
                    nearest = self._nearest(codes.astype(np.float64), member)
                    terms["nearest"][start:stop, member] = nearest[:rows]
            np.multiply(total, 1.0 / self.n_members, out=total)
            errors[start:stop] = total
        return errors, terms

    def _empty_terms(self, n: int) -> dict[str, np.ndarray]:
        return {
            name: np.empty((n, len(medians)))
            for name, medians in self.calibration_.items()
        }

    def _nearest(self, codes: np.ndarray, member: int) -> np.ndarray:
        """Squared distances of float64 codes (an even number of rows) to the
        member's nearest prototype."""
        return nearest_squared_distances(
            codes, self.prototypes_[member], self._prototype_norms[member]
        )

    def _errors_by_feature(
        self, encoded: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`errors` with rows as columns, in products of ``_COLUMNS`` columns
        whose first and last ``_MARGIN`` are zeros and the others rows.

        With OpenBLAS's float32 kernels for Haswell/Zen, a row then gets the same
        bits wherever it is (``position_free``).  ``_STACK`` such blocks go through
        each layer together (one matmul call, one product each), so that Python
        costs no more per row than with the float64 blocks.  The prototype
        distances take the codes back to rows, in float64 (an even number of rows
        a stack: ``_COLUMNS - 2 * _MARGIN`` is even).
        """
        n, n_features = encoded.shape
        errors = np.empty((n, n_features), dtype=np.float32, order="F")
        terms = self._empty_terms(n)
        width = _COLUMNS - 2 * _MARGIN
        step = width * _STACK
        x = np.zeros((_STACK, n_features, _COLUMNS), dtype=self.dtype)
        inside = x[:, :, _MARGIN : _MARGIN + width]
        # (features, width): repeated along a block's rows, as the biases are.
        scales = [
            np.repeat(scale.astype(self.dtype)[:, None], width, 1)
            for scale in self.feature_error_scale_
        ]
        total = np.empty((_STACK, n_features, width), dtype=self.dtype)
        for start in range(0, n, step):
            stop = min(start + step, n)
            used = _STACK  # blocks that hold rows: all but in the last stack
            if stop - start < step:
                used = -(-(stop - start) // width)
                inside[used - 1] = 0
            _put_rows(inside[:used], encoded[start:stop])
            # The last stack of a piece goes through the networks without its
            # empty blocks (in a 15,000-row piece, they were a seventh of the work).
            total[:used] = 0
            for member in range(self.n_members):
                codes = self._mlp_by_feature(x[:used], (member, "encoder"))
                reconstruction = self._mlp_by_feature(codes, (member, "decoder"))
                np.subtract(x[:used], reconstruction, out=reconstruction)
                difference = reconstruction[:, :, _MARGIN : _MARGIN + width]
                feature_errors(difference, scales[member])
                total[:used] += difference
                means = difference.mean(axis=1, dtype=np.float64)
                terms["reconstruction"][start:stop, member] = means.reshape(-1)[
                    : stop - start
                ]
                if self._need_nearest:
                    rows = codes[:, :, _MARGIN : _MARGIN + width].transpose(0, 2, 1)
                    rows = rows.reshape(-1, rows.shape[-1]).astype(np.float64)
                    nearest = self._nearest(rows, member)
                    terms["nearest"][start:stop, member] = nearest[: stop - start]
            total[:used] *= self.dtype.type(1.0 / self.n_members)
            _take_rows(total[:used], errors[start:stop])
        return errors, terms

    def _mlp_by_feature(self, x: np.ndarray, key: tuple[int, str]) -> np.ndarray:
        layers = self._by_feature[key]
        for i, (weight, bias) in enumerate(layers):
            x = weight @ x  # a product of _COLUMNS columns per stacked block
            x += bias
            if i < len(layers) - 1:
                np.maximum(x, _NEGATIVE_SLOPE * x, out=x)
        return x

    def score_and_explain(
        self, encoded: np.ndarray, top_k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores, the ``top_k`` columns per row and their shares of what sets the
        row apart (:func:`feature_attribution`)."""
        with one_blas_thread():
            errors, terms = self.errors(encoded, gaps=True)
        logs = term_logs(terms, self.score_type, self.calibration_)
        scores = _score_from_logs(logs)
        parts = feature_attribution(errors, terms.get("gaps"), logs)
        top, shares = top_contributions(
            parts, top_k, self._n_columns, self._sources, overwrite_errors=True
        )
        return scores, top, shares

    def anomaly_score(self, encoded: np.ndarray) -> np.ndarray:
        """Scores of preprocessed rows (higher = more suspicious)."""
        with one_blas_thread():
            _, terms = self.errors(encoded)
        return combine_scores(terms, self.score_type, self.calibration_)


def _order_of(array: np.ndarray) -> str:
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def _put_rows(blocks: np.ndarray, rows: np.ndarray) -> None:
    """Rows ``(n, features)`` into stacked blocks ``(stack, features, width)``:
    row ``i`` to block ``i // width``, column ``i % width``.

    Fastest when ``rows`` keeps each feature's values together (a slice of a
    Fortran-ordered array, as ``transform(..., order="F")`` gives): runs of
    ``width`` values are then copied as they are.
    """
    _, n_features, width = blocks.shape
    full, rest = divmod(rows.shape[0], width)
    cut = full * width
    if rows.strides[0] < rows.strides[1]:  # feature-major
        by_feature = rows.T
        blocks[:full] = (
            by_feature[:, :cut].reshape(n_features, full, width).transpose(1, 0, 2)
        )
    else:
        blocks[:full] = rows[:cut].reshape(full, width, n_features).transpose(0, 2, 1)
    if rest:
        blocks[full, :, :rest] = rows[cut:].T


def _take_rows(blocks: np.ndarray, rows: np.ndarray) -> None:
    """The inverse of :func:`_put_rows`, for the first ``len(rows)`` rows."""
    _, n_features, width = blocks.shape
    full, rest = divmod(rows.shape[0], width)
    cut = full * width
    by_feature = rows.T  # (features, n), contiguous for Fortran-ordered rows
    by_feature[:, :cut].reshape(n_features, full, width)[...] = blocks[:full].transpose(
        1, 0, 2
    )
    if rest:
        by_feature[:, cut:] = blocks[full, :, :rest]


def _same_bits_everywhere(
    layers: dict[Any, list[tuple[np.ndarray, np.ndarray]]], dtype: Any
) -> bool:
    """Whether every product of :meth:`Scorer._errors_by_feature` gives a row the
    same bits at every place between the margins of a block.

    Checked with the layers' own shapes: a row repeated in every column
    must come out the same in every column, under the one BLAS thread that
    scoring uses.  True with OpenBLAS's Haswell/Zen kernels; other BLAS builds
    may block their products otherwise.
    """

    # A row of values of both signs and of sizes from 0.01 to 10, repeated in every
    # column (numpy.random would add 7 ms to the start of every scoring run).
    def pattern(n: int, seed: int) -> np.ndarray:
        signs_and_digits = np.sin(np.arange(1, n + 1) * (1.7 + seed))
        return (signs_and_digits * np.geomspace(0.01, 10.0, n))[:, None]

    # One weight of each shape: the kernels depend on shapes, not on values (the
    # encoders share theirs: 4 shapes for 9 layers by default).
    by_shape = {w.shape: w for part in layers.values() for w, _ in part}
    rows = slice(_MARGIN, _COLUMNS - _MARGIN)
    with one_blas_thread():
        for weight in by_shape.values():
            x = np.zeros((_STACK, weight.shape[1], _COLUMNS), dtype=dtype)
            for seed in range(2):
                x[:, :, rows] = pattern(weight.shape[1], seed)
                inside = (weight @ x)[:, :, rows]
                if not (inside == inside[:1, :, :1]).all():
                    return False
    return True


def load_scorer(path: str | Path, dtype: Any = np.float64) -> Scorer:
    """A :class:`Scorer` from a GANomalyDetector model file, without torch.

    The file gets the same checks as ``GANomalyDetector.load`` (format, version,
    kind, checksum over weights and configuration).

    Parameters
    ----------
    path : str or Path
    dtype : numpy dtype, default=float64

    Returns
    -------
    Scorer

    Raises
    ------
    gancore.ModelFileError
        Not a GANomalyDetector model file, or a damaged one.
    """
    from gancore.io import ModelFileError, load_arrays

    arrays, config = load_arrays(path, kind=MODEL_KIND)
    try:
        scorer = Scorer.from_model(arrays, config, dtype=dtype)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ModelFileError.damaged(path, "GANomalyDetector", exc) from exc
    scorer.source = Path(path)
    return scorer
