"""GANomaly inference in numpy: from preprocessed rows to scores and explanations.

The anomaly score is a pure function of the model file: the generator's weights,
the preprocessing, and calibration constants fixed at fit time.  This module holds
that function once, for every way of scoring:

* :func:`feature_errors` turns reconstruction differences into the per-feature
  errors of the score, and :func:`combine_scores` and :func:`top_contributions`
  turn per-feature errors and latent errors into scores and explanations; the
  estimator (:class:`ganomaly.GANomalyDetector`) calls them too.
* :class:`Scorer` runs the generator's three MLPs with numpy.  Streaming scoring
  (``ganomaly score``, :func:`ganomaly.scoring.score_file`, the Dask paths) uses it:
  :func:`load_scorer` reads a model file without importing torch or scikit-learn
  (about 2.5 s of start-up saved per process).

Precision: a Scorer defaults to float64, the estimator's arithmetic; the streaming
scorer takes float32 where it is position-free (``precision="auto"`` in
:func:`ganomaly.scoring.as_scorer`).  Either way a row's score does not depend on the
rows around it (block, partition, file), to the last bit:
BLAS kernels compute some places of a product (the last row of an odd block, the
ends of a float32 block) with other instructions, and the scorer keeps rows out of
those places (:meth:`Scorer.errors`, :meth:`Scorer._errors_by_feature`).  float32
is about twice as fast in the networks (6-27 % of a CSV run's CPU time), and its
scores differ from the estimator's by about 1e-7 relative.  The float32 layout
was measured on OpenBLAS's Haswell/Zen kernels; each Scorer checks it on its own
weights and says in ``position_free`` whether it holds.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Scorer",
    "combine_scores",
    "feature_errors",
    "load_scorer",
    "top_contributions",
]

MODEL_KIND = "ganomaly.GANomalyDetector"
SCORES = ("reconstruction", "latent", "combined")
# How per-feature reconstruction errors enter the score.  Model files without the
# "reconstruction_errors" key were written before per-feature scaling: "absolute".
RECONSTRUCTION_ERRORS = ("scaled_squared", "absolute")
# Rows per matrix product: small enough to stay in cache (measured on one core,
# float64: 2048 rows 1.35 s per million rows, 8192 rows 1.52 s, 32768 rows 2.63 s).
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
_NEGATIVE_SLOPE = 0.2  # gancore's MLPGenerator with activation="leaky_relu"
_PARTS = ("encoder", "decoder", "second_encoder")
_CONTROLLER: Any = None


def _one_blas_thread():
    """A context in which numpy's BLAS runs on one thread.

    The products here are small (2048 x 60 x 30): threads cost more than they
    bring, and on a busy machine OpenBLAS's spinning threads made the networks ten
    times slower (measured: 5.9 s instead of 0.56 s for 200,000 rows at load 3).
    """
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        return _CONTROLLER.limit(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()


def feature_errors(
    difference: np.ndarray,
    reconstruction_errors: str,
    feature_error_scale: np.ndarray,
    out: np.ndarray | None = None,
) -> None:
    """Per-feature errors of the score from ``x - G(x)``, in place, and copied to
    ``out`` when given.

    ``"scaled_squared"``: ``(x_j - G(x)_j)^2 / feature_error_scale[j]``, the squared
    error in units of its mean on held-out normal rows (per input column).
    ``"absolute"`` (model files from before that scaling): ``|x_j - G(x)_j|``.

    Parameters
    ----------
    difference : ndarray of shape (n_samples, n_features)
        ``x - G(x)``; overwritten with the errors.  Rows may be columns (the
        float32 scorer's blocks) if ``feature_error_scale`` is shaped to match.
    reconstruction_errors : {"scaled_squared", "absolute"}
    feature_error_scale : ndarray of shape (n_features,)
        Or any shape that broadcasts against ``difference`` feature by feature.
    out : ndarray of shape (n_samples, n_features), optional
        Usually float32.

    Examples
    --------
    >>> out = np.empty((1, 2), dtype=np.float32)
    >>> feature_errors(np.array([[2.0, -1.0]]), "scaled_squared", np.array([4.0, 0.5]),
    ...                out)
    >>> out.tolist()
    [[1.0, 2.0]]
    """
    if reconstruction_errors == "absolute":
        np.abs(difference, out=difference)
    elif reconstruction_errors == "scaled_squared":
        np.square(difference, out=difference)
        difference /= feature_error_scale.astype(difference.dtype, copy=False)
    else:
        raise ValueError(
            f"reconstruction_errors must be one of {RECONSTRUCTION_ERRORS}, "
            f"got {reconstruction_errors!r}"
        )
    if out is not None:
        np.copyto(out, difference, casting="same_kind")


def combine_scores(
    errors: np.ndarray,
    latent: np.ndarray,
    score_type: str,
    score_scale: dict[str, float] | None,
) -> np.ndarray:
    """Anomaly scores from per-feature errors and latent errors.

    Parameters
    ----------
    errors : ndarray of shape (n_samples, n_features)
        Reconstruction error of every encoded feature (:func:`feature_errors`).
    latent : ndarray of shape (n_samples,)
        Mean squared difference between ``G_E(x)`` and ``E(G(x))``.
    score_type : {"reconstruction", "latent", "combined"}
    score_scale : dict
        ``{"reconstruction": r, "latent": l}``, the medians on held-out normal rows
        (needed for ``"combined"``).

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    if score_type not in SCORES:
        raise ValueError(f"score_type must be one of {SCORES}, got {score_type!r}")
    if score_type == "latent":
        return np.asarray(latent, dtype=np.float64)
    reconstruction = errors.mean(axis=1, dtype=np.float64)
    if score_type == "reconstruction":
        return reconstruction
    return 0.5 * (
        reconstruction / score_scale["reconstruction"] + latent / score_scale["latent"]
    )


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
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W.T, b)`` of an MLPGenerator's linear layers, checked to chain up."""
    prefix = f"{part}.net."
    keys = [k for k in state if k.startswith(prefix)]
    indices = sorted({int(k[len(prefix) :].split(".")[0]) for k in keys})
    expected = {f"{prefix}{i}.{p}" for i in indices for p in ("weight", "bias")}
    if set(keys) != expected or not indices:
        raise ValueError(
            f"{part}: expected only linear layers (weight and bias), got {sorted(keys)}"
        )
    layers = []
    width = n_in
    for i in indices:
        weight = np.asarray(state[f"{prefix}{i}.weight"])
        bias = np.asarray(state[f"{prefix}{i}.bias"])
        chained = weight.ndim == 2 and weight.shape[1] == width
        if not chained or bias.shape != weight.shape[:1]:
            raise ValueError(
                f"{part}: layer {i} has shape {weight.shape}, expected (*, {width})"
            )
        layers.append((weight.T, bias))
        width = weight.shape[0]
    if width != n_out:
        raise ValueError(f"{part}: output width {width}, expected {n_out}")
    return layers


class Scorer:
    """A fitted GANomaly model as numpy arrays: scores, flags and explanations.

    Build one with :func:`load_scorer` (from a model file, without torch) or
    ``GANomalyDetector._scorer()``.

    Parameters
    ----------
    preprocessor : TabularPreprocessor
        Fitted.
    state : dict of str to ndarray
        The generator's ``state_dict`` (``encoder.net.0.weight``, ...).
    latent_dim : int
    score_type : {"reconstruction", "latent", "combined"}
    score_scale : dict
    threshold : float
        Scores above it are anomalies.
    dtype : numpy dtype, default=float64
        Precision of the matrix products (see the module docstring).
    feature_error_scale : ndarray of shape (n_features,), optional
        Per-feature units of the squared errors (ones if omitted).
    reconstruction_errors : {"scaled_squared", "absolute"}, default="absolute"
        See :func:`feature_errors`; the default is that of old model files.
    metadata : dict, optional
        The model's free-form metadata (``GANomalyDetector.metadata_``).

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
        score_scale: dict[str, float],
        threshold: float,
        dtype: Any = np.float64,
        feature_error_scale: np.ndarray | None = None,
        reconstruction_errors: str = "absolute",
        metadata: dict | None = None,
    ):
        if score_type not in SCORES:
            raise ValueError(f"score_type must be one of {SCORES}, got {score_type!r}")
        if reconstruction_errors not in RECONSTRUCTION_ERRORS:
            raise ValueError(
                f"reconstruction_errors must be one of {RECONSTRUCTION_ERRORS}, "
                f"got {reconstruction_errors!r}"
            )
        self.preprocessor_ = preprocessor
        self.metadata = dict(metadata or {})
        self.score_type = score_type
        self.score_scale_ = dict(score_scale)
        self.threshold_ = float(threshold)
        self.dtype = np.dtype(dtype)
        n_features = int(preprocessor.n_features_out_)
        self.reconstruction_errors_ = reconstruction_errors
        if feature_error_scale is None:
            feature_error_scale = np.ones(n_features)
        self.feature_error_scale_ = np.asarray(feature_error_scale, dtype=np.float64)
        if self.feature_error_scale_.shape != (n_features,):
            raise ValueError(
                f"feature_error_scale has shape {self.feature_error_scale_.shape}, "
                f"expected ({n_features},)"
            )
        sizes = {
            "encoder": (n_features, latent_dim),
            "decoder": (latent_dim, n_features),
            "second_encoder": (n_features, latent_dim),
        }
        self._layers = {
            part: [
                (w.astype(self.dtype), b.astype(self.dtype))
                for w, b in _mlp_layers(state, part, *sizes[part])
            ]
            for part in _PARTS
        }
        # float32: (weight, bias repeated over a block's columns), for products
        # with rows as columns.  A bias column broadcast along a block's rows would
        # make numpy copy it into a buffer for every add: a third slower.
        self._by_feature = {}
        self.position_free = self.dtype == np.float64
        if self.dtype == np.float32:
            self._by_feature = {
                part: [
                    (np.ascontiguousarray(w.T), np.repeat(b[:, None], _COLUMNS, 1))
                    for w, b in layers
                ]
                for part, layers in self._layers.items()
            }
            self.position_free = _same_bits_everywhere(self._by_feature, self.dtype)
        columns = preprocessor.input_columns_
        self._n_columns = len(columns)
        self._sources = np.asarray(preprocessor.source_columns_, dtype=np.intp)

    @classmethod
    def from_model(
        cls, arrays: dict[str, np.ndarray], config: dict, dtype: Any = np.float64
    ) -> Scorer:
        """A scorer from what a GANomalyDetector model file holds.

        The one mapping from a model's contents to a scorer: :func:`load_scorer`
        (from a file) and ``GANomalyDetector._scorer`` (from memory) both use it,
        so a detector scores a file the same before and after a save.

        Parameters
        ----------
        arrays : dict of str to ndarray
            The model's tensors by name (``generator.encoder.net.0.weight``, ...,
            ``calibration.feature_error_scale``).
        config : dict
            The model's JSON configuration.
        dtype : numpy dtype, default=float64
        """
        from .preprocessing import TabularPreprocessor

        prefix = "generator."
        state = {
            k[len(prefix) :]: np.asarray(v)
            for k, v in arrays.items()
            if k.startswith(prefix)
        }
        return cls(
            TabularPreprocessor.from_dict(config["preprocessor"]),
            state,
            latent_dim=int(config["latent_dim"]),
            score_type=config["params"]["score_type"],
            score_scale={k: float(v) for k, v in config["score_scale"].items()},
            threshold=float(config["threshold"]),
            dtype=dtype,
            feature_error_scale=np.asarray(arrays["calibration.feature_error_scale"]),
            reconstruction_errors=config.get("reconstruction_errors", "absolute"),
            metadata=config.get("metadata") or {},
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
            "score_scale": self.score_scale_,
            "threshold": self.threshold_,
            "reconstruction_errors": self.reconstruction_errors_,
            "dtype": self.dtype.name,
        }
        digest.update(json.dumps(settings, sort_keys=True).encode())
        for part in _PARTS:
            for weight, bias in self._layers[part]:
                digest.update(np.ascontiguousarray(weight).tobytes())
                digest.update(np.ascontiguousarray(bias).tobytes())
        digest.update(self.feature_error_scale_.tobytes())
        return digest.hexdigest()

    @property
    def input_order(self) -> str:
        """The memory layout of encoded rows that :meth:`errors` reads fastest:
        ``"F"`` (feature-major) for the float32 products, else ``"C"``."""
        return "F" if self._by_feature else "C"

    def _mlp(self, x: np.ndarray, part: str) -> np.ndarray:
        layers = self._layers[part]
        for i, (weight, bias) in enumerate(layers):
            x = x @ weight
            x += bias
            if i < len(layers) - 1:  # LeakyReLU between layers, none after the last
                np.maximum(x, _NEGATIVE_SLOPE * x, out=x)
        return x

    def errors(
        self, encoded: np.ndarray, need_latent: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature reconstruction errors (float32) and latent errors.

        The errors come feature-major (Fortran order), as :func:`top_contributions`
        reads them.  Without ``need_latent`` the second encoder is skipped and the
        latent errors are zeros.

        A row's float64 results do not depend on its block: blocks of an odd number
        of rows get a row of zeros, because OpenBLAS computes the last row of an odd
        block with another kernel, whose products differ in the last bits.  float32
        products run feature-major, see :meth:`_errors_by_feature`.
        """
        if self.dtype == np.float32:
            return self._errors_by_feature(encoded, need_latent)
        n, n_features = encoded.shape
        errors = np.empty((n, n_features), dtype=np.float32, order="F")
        latent_errors = np.zeros(n, dtype=np.float64)
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            rows = stop - start
            x = np.zeros((rows + rows % 2, n_features), dtype=self.dtype)
            x[:rows] = encoded[start:stop]
            residual, latent_squares = self._residuals(x, self._mlp, need_latent)
            if need_latent:
                latent_errors[start:stop] = latent_squares[:rows].mean(
                    axis=1, dtype=np.float64
                )
            feature_errors(
                residual[:rows],
                self.reconstruction_errors_,
                self.feature_error_scale_,
                errors[start:stop],
            )
        return errors, latent_errors

    def _errors_by_feature(
        self, encoded: np.ndarray, need_latent: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`errors` with rows as columns, in products of ``_COLUMNS`` columns
        whose first and last ``_MARGIN`` are zeros and the others rows.

        With OpenBLAS's float32 kernels for Haswell/Zen, a row then gets the same
        bits wherever it is (``position_free``).  ``_STACK`` such blocks go through
        each layer together (one matmul call, one product each), so that Python
        costs no more per row than with the float64 blocks.
        """
        n, n_features = encoded.shape
        errors = np.empty((n, n_features), dtype=np.float32, order="F")
        latent_errors = np.zeros(n, dtype=np.float64)
        width = _COLUMNS - 2 * _MARGIN
        step = width * _STACK
        x = np.zeros((_STACK, n_features, _COLUMNS), dtype=self.dtype)
        inside = x[:, :, _MARGIN : _MARGIN + width]
        # (features, width): repeated along a block's rows, as the biases are.
        scale = np.repeat(
            self.feature_error_scale_.astype(self.dtype)[:, None], width, 1
        )
        for start in range(0, n, step):
            stop = min(start + step, n)
            used = _STACK  # blocks that hold rows: all but in the last stack
            if stop - start < step:
                used = -(-(stop - start) // width)
                inside[used - 1] = 0
            _put_rows(inside[:used], encoded[start:stop])
            # The last stack of a piece goes through the networks without its
            # empty blocks (in a 15,000-row piece, they were a seventh of the work).
            residual, latent_squares = self._residuals(
                x[:used], self._mlp_by_feature, need_latent
            )
            if need_latent:
                means = latent_squares[:, :, _MARGIN : _MARGIN + width].mean(
                    axis=1, dtype=np.float64
                )
                latent_errors[start:stop] = means.reshape(-1)[: stop - start]
            difference = residual[:, :, _MARGIN : _MARGIN + width]
            feature_errors(difference, self.reconstruction_errors_, scale)
            _take_rows(difference, errors[start:stop])
        return errors, latent_errors

    @staticmethod
    def _residuals(
        x: np.ndarray, mlp: Any, need_latent: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The generator's pass over a block ``x`` (``mlp``: :meth:`_mlp` for rows,
        :meth:`_mlp_by_feature` for feature-major blocks): the residual ``x -
        G(x)`` and, if ``need_latent``, the squared latent differences
        ``(G_E(x) - E(G(x)))**2``, both in ``x``'s layout."""
        latent = mlp(x, "encoder")
        reconstruction = mlp(latent, "decoder")
        latent_squares = None
        if need_latent:
            latent_squares = mlp(reconstruction, "second_encoder")
            np.subtract(latent, latent_squares, out=latent_squares)
            np.square(latent_squares, out=latent_squares)
        np.subtract(x, reconstruction, out=reconstruction)
        return reconstruction, latent_squares

    def _mlp_by_feature(self, x: np.ndarray, part: str) -> np.ndarray:
        layers = self._by_feature[part]
        for i, (weight, bias) in enumerate(layers):
            x = weight @ x  # a product of _COLUMNS columns per stacked block
            x += bias
            if i < len(layers) - 1:
                np.maximum(x, _NEGATIVE_SLOPE * x, out=x)
        return x

    def score_and_explain(
        self, encoded: np.ndarray, top_k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores, the ``top_k`` columns per row and their shares of the error."""
        with _one_blas_thread():
            errors, latent = self.errors(
                encoded, need_latent=self.score_type != "reconstruction"
            )
        scores = combine_scores(errors, latent, self.score_type, self.score_scale_)
        top, shares = top_contributions(
            errors, top_k, self._n_columns, self._sources, overwrite_errors=True
        )
        return scores, top, shares

    def anomaly_score(self, encoded: np.ndarray) -> np.ndarray:
        """Scores of preprocessed rows (higher = more suspicious)."""
        with _one_blas_thread():
            errors, latent = self.errors(
                encoded, need_latent=self.score_type != "reconstruction"
            )
        return combine_scores(errors, latent, self.score_type, self.score_scale_)


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
    layers: dict[str, list[tuple[np.ndarray, np.ndarray]]], dtype: Any
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
    with _one_blas_thread():
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
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError.damaged(path, "GANomalyDetector", exc) from exc
    scorer.source = Path(path)
    return scorer
