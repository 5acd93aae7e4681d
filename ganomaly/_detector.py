"""GANomalyDetector: the scikit-learn outlier detector around GANomaly's networks."""

from __future__ import annotations

import math
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    check_is_fitted,
    validate_data,
)

from gancore import (
    EMA,
    GANLoss,
    ModelFileError,
    load_model,
    make_rngs,
    module_state,
    module_tensors,
    resolve_device,
    save_model,
    train_gan,
)

from ._losses import generator_loss, known_anomaly_loss
from ._model import EnsembleDiscriminator, GANomalyEnsemble, default_sizes, init_weights
from ._scorer import SCORES, Scorer, combine_scores, feature_error_scale
from .defaults import DEFAULTS
from .model_file import MODEL_KIND, ModelConfig, version_for
from .neighbours import NeighbourIndex, build_index
from .preprocessing import NUMERIC_SCALINGS, TabularPreprocessor
from .threads import one_blas_thread

__all__ = ["GANomalyDetector"]
# Without a target_fpr, contamination="auto" flags this share of held-out normals.
AUTO_FPR = 0.01
# n_epochs="auto" trains for about this many generator steps (at least 1 epoch).
AUTO_STEPS = 1500
_MAX_AUTO_EPOCHS = 300
# n_members="auto": more members where a fit is cheap and a single network's
# result depends most on its random state, i.e. on few training rows (see
# `auto_members`).
AUTO_SMALL_ROWS = 1000
AUTO_MEMBERS_SMALL = 8
AUTO_MEMBERS = 2
# The generator is scored with an exponential moving average of its weights over
# about the last 1 / (1 - EMA_DECAY) = 500 generator steps, or the last EMA_SHARE of
# them in shorter runs (see `ema_decay`).
EMA_DECAY = 0.998
EMA_SHARE = 0.3
# Prototypes are k-means centres of the latent codes of at most this many training
# rows (per member).
_PROTOTYPE_SAMPLE = 2048


class GANomalyDetector(OutlierMixin, BaseEstimator):
    """GANomaly (Akcay et al., ACCV 2018) as a scikit-learn outlier detector for tables.

    Trained on normal rows only.  Each of ``n_members`` GANomaly generators (an
    encoder-decoder-encoder, with its own discriminator keeping reconstructions
    realistic; trained side by side from their own initialisations and shuffling)
    encodes a row, decodes it and encodes the reconstruction again.  A row unlike
    the training rows reconstructs badly, and its code lies far from the codes of
    training rows; the anomaly score measures both, per member, each term in units
    of its median on held-out normal rows (see ``score_type``).

    The conventions are those of :class:`sklearn.ensemble.IsolationForest`:
    :meth:`score_samples` is higher for more normal rows, :meth:`decision_function`
    is negative for anomalies, :meth:`predict` returns -1 for anomalies and +1 for
    normal rows.  :meth:`anomaly_score` is the positive "higher = more suspicious"
    number fraud teams want (and the CLI writes): about 1 for a typical normal row.

    The defaults were chosen on half of a pool of 26 real tables and checked on the
    other half (benchmarks/anomaly_quality.py; figures in benchmarks/RESULTS.md).

    Parameters
    ----------
    n_members : int or "auto", default="auto"
        GANomaly networks trained side by side; the score averages them.  More
        members make scores steadier across random states and a little better, and
        cost as many times the networks' scoring time.  ``"auto"``: 8 when ``fit``
        gets at most 1,000 normal rows, where one network's result depends most on
        its random state and a fit takes seconds, else 2 (:func:`auto_members`).
    n_epochs : int or "auto", default="auto"
        Passes over the training rows.  ``"auto"``: about 1500 generator steps (at
        least one epoch, at most 300).
    batch_size : int, default=128
        Rows per step, for each member.
    learning_rate : float, default=1e-3
        Adam learning rate (betas 0.5, 0.999) for both networks.
    latent_dim : int, optional
        Bottleneck size; default about two thirds of the encoded width (4 to 64).
    hidden_dims : tuple of int, optional
        Encoder hidden widths (the decoder mirrors them); default two layers of about
        twice and once the encoded width.
    w_adv, w_con, w_enc : float, default=1, 50, 1
        Weights of the feature-matching, contextual (L1) and encoder losses; the
        paper's defaults.
    score_type : {"combined", "reconstruction"}, default="combined"
        ``"combined"``: for every member, the mean over features of the squared
        reconstruction error ``(x_j - G(x)_j)^2`` (each feature in units of its mean
        on held-out normal rows) and the squared distance from the row's latent code
        ``G_E(x)`` to the nearest of ``n_prototypes`` prototypes of the training
        rows' codes; and, once for the model, the squared distance from the
        encoded row to the nearest of ``n_references`` training rows (see
        ``n_references``).  Each is divided by its median on held-out normal rows
        (and is at least ``RATIO_FLOOR`` = 1e-3 of it); the score is the geometric
        mean over the three terms of each term's geometric mean over members.
        With ``use_labels`` and labelled anomalies, the score is then multiplied
        by the known-anomaly term: the median on held-out normal rows of the
        squared distance to the nearest known anomaly divided by the row's own,
        where above 1 (at most 1,000), so that rows like the frauds you know
        score higher and rows unlike all of them keep their score.
        ``"reconstruction"``: the reconstruction ratios alone.  (Called ``score``
        in the CLI; renamed because scikit-learn reserves ``score`` for the
        ``score(X, y)`` method.)
    n_prototypes : int, default=256
        k-means centres, per member, of the latent codes of (at most 2048 of) the
        training rows; the nearest-prototype term measures the distance to them.
    n_references : int, default=16384
        Training rows (sampled when there are more; repeated rows once) that the
        model keeps for the score's nearest-neighbour term, searched in 128
        coarse cells (:mod:`ganomaly.neighbours`; what it adds to the detection
        and costs: benchmarks/RESULTS.md).  A row's neighbour is the nearest
        reference not equal to it, so that a training row is scored as a new row
        would be.  The model file then holds these rows, preprocessed: 0 leaves
        the term out and keeps every training row out of the file (and, with
        ``use_labels``, the known anomalies and their term too).  Without
        held-out rows (``validation_fraction=0``, or too few rows) the term is
        left out: its median would come from the rows it searches.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Float: the share of the training rows expected to be anomalies; the
        threshold is that quantile of the scores of the rows passed to ``fit``
        (IsolationForest's convention).  ``"auto"``: flag 1 % of held-out normal rows.
    target_fpr : float in (0, 1), optional
        If given, overrides ``contamination``: the threshold flags this share of the
        held-out normal rows, i.e. the false-positive rate (alert budget) on normal
        traffic.
    validation_fraction : float in [0, 1), default=0.1
        Share of the training rows held out (never trained on) to calibrate the
        score terms and set the threshold.  With 0, or too few rows to hold out,
        the training rows are used.
    numeric_scaling : {"standard_log", "robust", "auto", "quantile"}, \
default="standard_log"
        See :class:`ganomaly.preprocessing.TabularPreprocessor`.
    missing : {"impute", "error"}, default="impute"
        Missing-value policy, see :class:`~ganomaly.preprocessing.TabularPreprocessor`.
    use_labels : bool, default=False
        Use the anomalies you already know (confirmed frauds, chargebacks): with
        ``fit(X, y)``, the rows with ``y == 1`` are kept out of the normal rows and
        every member is trained to reconstruct them badly, with Deep SAD's inverse
        error term (Ruff et al., ICLR 2020), see
        :func:`ganomaly._losses.known_anomaly_loss`; and the score gains a
        factor for closeness to them (see ``score_type``): the model keeps up to
        ``n_references`` of them, preprocessed, searched as the
        nearest-neighbour term's references are (a known anomaly itself is
        measured to the next one; what it adds: benchmarks/RESULTS.md).  Without
        it ``y`` is ignored, as scikit-learn's outlier detectors do, and ``X``
        must hold normal rows.
    device : str, default="auto"
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int, RandomState instance or None, default=None
        Seeds weights, shuffling, the held-out split and the prototypes; results
        are reproducible on the CPU for a fixed int.
    verbose : bool or int, default=False
        Show a training progress bar.
    checkpoint_path : str, optional
        Write a training checkpoint (weights, optimisers, RNG states) here after
        every epoch, atomically.  If the file exists when ``fit`` starts, training
        resumes from it, so a killed fit continues where it stopped; on the CPU the
        result equals an uninterrupted fit.  A checkpoint of other data or another
        configuration is refused.

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    threshold_ : float
        Anomaly-score threshold (``-offset_``): rows scoring above it are anomalies.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    preprocessor_ : TabularPreprocessor
    generator_ : GANomalyEnsemble
        The members' generators: an exponential moving average of their weights
        over about the last 500 steps of training (see :func:`ema_decay`), which
        scores more reliably than the last iterate of the adversarial game.
    discriminator_ : EnsembleDiscriminator
    prototypes_ : ndarray of shape (n_members, n_prototypes, latent_dim)
    neighbours_ : NeighbourIndex or None
        The nearest-neighbour term's reference rows and cells, None without that
        term.
    known_ : NeighbourIndex or None
        The known anomalies of the known-anomaly term (``use_labels``), None
        without that term.
    calibration_ : dict
        Per member, the medians of the score terms on held-out normal rows.
    feature_error_scale_ : ndarray of shape (n_members, n_encoded_features)
        Per-feature unit of each member's reconstruction errors: the mean squared
        error, on held-out normal rows, of the input column the feature encodes
        (see :func:`ganomaly._scorer.feature_error_scale`).
    validation_anomaly_scores_ : ndarray
        Anomaly scores of the held-out normal rows (for thresholds and plots).
    history_ : list of dict
        Per-epoch mean losses from :func:`gancore.train_gan`.
    n_members_ : int
        Members actually trained.
    n_epochs_ : int
        Epochs actually trained.
    metadata_ : dict
        Free-form JSON metadata kept with the model file (empty after ``fit``).
        ``ganomaly fit --label-col`` records there how the training file's labels
        read (``{"labels": {"column": ..., "normal": [...], "anomalous": [...]}}``),
        and ``ganomaly evaluate`` reads them back.

    Examples
    --------
    >>> from ganomaly import GANomalyDetector
    >>> from ganomaly.datasets import make_transactions
    >>> X, y = make_transactions(2000, fraud_fraction=0.02, random_state=0,
    ...                          return_X_y=True)
    >>> detector = GANomalyDetector(n_epochs=5, random_state=0).fit(X[y == 0])
    >>> detector.predict(X.iloc[:3]).tolist()
    [1, 1, 1]
    >>> detector.explain(X.iloc[:1], top_k=2).columns.tolist()
    ['feature_1', 'contribution_1', 'feature_2', 'contribution_2']
    """

    _parameter_constraints: dict = {
        "n_members": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "latent_dim": [Interval(Integral, 1, None, closed="left"), None],
        "hidden_dims": ["array-like", None],
        "w_adv": [Interval(Real, 0, None, closed="left")],
        "w_con": [Interval(Real, 0, None, closed="left")],
        "w_enc": [Interval(Real, 0, None, closed="left")],
        "score_type": [StrOptions(set(SCORES))],
        "n_prototypes": [Interval(Integral, 1, None, closed="left")],
        "n_references": [Interval(Integral, 0, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "target_fpr": [Interval(Real, 0, 1, closed="neither"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "numeric_scaling": [StrOptions(set(NUMERIC_SCALINGS))],
        "missing": [StrOptions({"impute", "error"})],
        "use_labels": ["boolean"],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_path": [str, None],
    }

    def __init__(
        self,
        *,
        n_members: int | str = DEFAULTS["n_members"],
        n_epochs: int | str = DEFAULTS["n_epochs"],
        batch_size: int = DEFAULTS["batch_size"],
        learning_rate: float = DEFAULTS["learning_rate"],
        latent_dim: int | None = None,
        hidden_dims: tuple[int, ...] | None = None,
        w_adv: float = 1.0,
        w_con: float = 50.0,
        w_enc: float = 1.0,
        score_type: str = DEFAULTS["score_type"],
        n_prototypes: int = DEFAULTS["n_prototypes"],
        n_references: int = DEFAULTS["n_references"],
        contamination: float | str = "auto",
        target_fpr: float | None = None,
        validation_fraction: float = 0.1,
        numeric_scaling: str = DEFAULTS["numeric_scaling"],
        missing: str = "impute",
        use_labels: bool = False,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool | int = False,
        checkpoint_path: str | None = None,
    ):
        self.n_members = n_members
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.w_adv = w_adv
        self.w_con = w_con
        self.w_enc = w_enc
        self.score_type = score_type
        self.n_prototypes = n_prototypes
        self.n_references = n_references
        self.contamination = contamination
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.numeric_scaling = numeric_scaling
        self.missing = missing
        self.use_labels = use_labels
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_path = checkpoint_path

    def _checkpoint_meta(self, encoded: np.ndarray, known: np.ndarray | None) -> dict:
        """What a checkpoint must match to be resumed: the data and configuration."""
        import hashlib

        digest = hashlib.sha256(np.ascontiguousarray(encoded))
        if known is not None:
            digest.update(np.ascontiguousarray(known))
        return {
            "kind": MODEL_KIND,
            "data_sha256": digest.hexdigest(),
            "shape": [int(n) for n in encoded.shape],
            "n_members": int(self.n_members_),
            "n_epochs": int(self.n_epochs_),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "latent_dim": int(self.latent_dim_),
            "hidden_dims": [int(d) for d in self.hidden_dims_],
            "weights": [float(self.w_adv), float(self.w_con), float(self.w_enc)],
            "ema_decay": float(self.ema_decay_),
            "random_state": (
                int(self.random_state)
                if isinstance(self.random_state, Integral)
                else None
            ),
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Missing values are handled by the preprocessing (the `missing` policy).
        tags.input_tags.allow_nan = True
        return tags

    # ----------------------------------------------------------------- input
    def _validate_input(self, X: Any, *, reset: bool) -> pd.DataFrame | np.ndarray:
        """A DataFrame (any column types), or a float64 array (NaN allowed) when
        fitted on one: the check returns what it checked and stores nothing but
        scikit-learn's feature names and count."""
        table = isinstance(X, pd.DataFrame)
        if table and (reset or getattr(self, "fitted_on_frame_", False)):
            _check_feature_names(self, X, reset=reset)
            _check_n_features(self, X, reset=reset)
            if X.shape[0] < (2 if reset else 1):
                raise ValueError(
                    f"Found a table with {X.shape[0]} sample(s) while a minimum of "
                    f"{2 if reset else 1} is required."
                )
            return X
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=np.float64,
            ensure_all_finite="allow-nan",
            ensure_min_samples=2 if reset else 1,
        )

    def _known_anomalies(self, y: Any, n_rows: int) -> np.ndarray | None:
        """With ``use_labels``, which rows are known anomalies (``y == 1``)."""
        if not self.use_labels:
            return None
        if y is None:
            raise ValueError("use_labels=True needs labels: fit(X, y), y == 1 anomaly")
        labels = np.asarray(y).ravel()
        if labels.shape[0] != n_rows:
            raise ValueError(f"y has {labels.shape[0]} labels for {n_rows} rows")
        known = pd.isna(labels)
        if known.any():
            raise ValueError(f"y: missing label at row {int(np.flatnonzero(known)[0])}")
        values = set(np.unique(labels).tolist())
        if not values <= {0, 1}:  # (True == 1 and False == 0 in a set)
            raise ValueError(
                f"y must be 0 (normal) or 1 (known anomaly), got {sorted(values)}"
            )
        anomalous = labels.astype(bool)
        if (~anomalous).sum() < 2:
            raise ValueError("use_labels=True: fewer than 2 rows are labelled normal")
        return anomalous

    # ----------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> GANomalyDetector:
        """Train on normal rows (and, with ``use_labels``, the known anomalies).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Normal rows (with ``use_labels``: labelled rows).  DataFrames may hold
            categorical columns and missing values.
        y : array-like of shape (n_samples,), optional
            Ignored unless ``use_labels``: then 0 for normal rows, 1 for known
            anomalies.

        Returns
        -------
        self : GANomalyDetector
        """
        fitted_on_frame = isinstance(X, pd.DataFrame)
        X = self._validate_input(X, reset=True)
        self.fitted_on_frame_ = fitted_on_frame
        known = self._known_anomalies(y, X.shape[0])
        hidden_dims = self._check_hidden_dims()
        device = resolve_device(self.device)
        rngs = make_rngs(self.random_state, device)

        anomalies = None
        if known is not None:
            anomalies, X = (
                _take(X, np.flatnonzero(known)),
                _take(X, np.flatnonzero(~known)),
            )
        n_rows = X.shape[0]
        order = rngs.numpy.permutation(n_rows)
        n_val = int(math.floor(self.validation_fraction * n_rows))
        held_out = not (n_val < 1 or n_rows - n_val < 2)
        if held_out:
            train_rows, val_rows = order[n_val:], order[:n_val]
        else:
            train_rows, val_rows = order, order
        X_train, X_val = _take(X, np.sort(train_rows)), _take(X, np.sort(val_rows))

        self.preprocessor_ = TabularPreprocessor(
            numeric_scaling=self.numeric_scaling, missing=self.missing
        ).fit(X_train)
        encoded = self.preprocessor_.transform(X_train)
        encoded_known = None
        if anomalies is not None and anomalies.shape[0]:
            encoded_known = self.preprocessor_.transform(anomalies)
        n_encoded = encoded.shape[1]
        default_hidden, default_latent = default_sizes(n_encoded)
        self.hidden_dims_ = hidden_dims or default_hidden
        self.latent_dim_ = int(self.latent_dim or default_latent)
        if self.n_members == "auto":
            self.n_members_ = auto_members(n_rows)
        else:
            self.n_members_ = int(self.n_members)
        members = self.n_members_

        # Built on the meta device (no global-RNG draws), then initialised from
        # the local generator: random_state alone determines the weights.
        with torch.device("meta"):
            generator = GANomalyEnsemble(
                members, n_encoded, self.latent_dim_, self.hidden_dims_
            )
            discriminator = EnsembleDiscriminator(members, n_encoded, self.hidden_dims_)
        generator = generator.to_empty(device="cpu")
        discriminator = discriminator.to_empty(device="cpu")
        init_weights(generator, rngs.torch_cpu)
        init_weights(discriminator, rngs.torch_cpu)
        if self.n_epochs == "auto":
            self.n_epochs_ = auto_epochs(encoded.shape[0], self.batch_size)
        else:
            self.n_epochs_ = int(self.n_epochs)

        n_steps = self.n_epochs_ * math.ceil(encoded.shape[0] / self.batch_size)
        self.ema_decay_ = ema_decay(n_steps)
        ema = EMA(generator, decay=self.ema_decay_)
        # Each member reads the rows of a batch through its own permutation, so
        # that members see the rows in their own groupings (the loop draws the
        # batches of row numbers).
        orders = np.stack(
            [rngs.numpy.permutation(encoded.shape[0]) for _ in range(members)]
        )
        rows = torch.from_numpy(encoded).to(device)
        member_rows = torch.from_numpy(orders).to(device)
        known_rows = None if encoded_known is None else torch.from_numpy(encoded_known)
        d_loss_fn, g_loss_fn = self._loss_functions(
            generator, discriminator, rows, member_rows, known_rows
        )
        meta = (
            self._checkpoint_meta(encoded, encoded_known)
            if self.checkpoint_path
            else None
        )
        betas = (0.5, 0.999)
        self.history_ = train_gan(
            generator=generator,
            discriminator=discriminator,
            g_optimizer=torch.optim.Adam(
                generator.parameters(), lr=self.learning_rate, betas=betas
            ),
            d_optimizer=torch.optim.Adam(
                discriminator.parameters(), lr=self.learning_rate, betas=betas
            ),
            d_loss_fn=d_loss_fn,
            g_loss_fn=g_loss_fn,
            data=(torch.arange(encoded.shape[0]),),
            ema=ema,
            n_epochs=self.n_epochs_,
            batch_size=self.batch_size,
            device=device,
            rngs=rngs,
            verbose=bool(self.verbose),
            desc="GANomaly",
            checkpoint_path=self.checkpoint_path,
            checkpoint_every=1 if self.checkpoint_path else 0,
            resume=self.checkpoint_path is not None,
            checkpoint_meta=meta,
        )
        # The adversarial game leaves the last iterate wherever it oscillated to;
        # the weight average scores more stably.
        generator.load_state_dict(ema.module.state_dict())
        self.generator_ = generator.eval()
        self.discriminator_ = discriminator.eval()
        self.device_ = str(device)
        encoded_val = self.preprocessor_.transform(X_val) if held_out else encoded
        terms = self._calibrate(encoded, encoded_val, held_out, rngs, encoded_known)
        self.metadata_ = {}

        # The threshold, from held-out normal rows scored as every later row is
        # (their terms are the calibration's: the networks run once on them).
        val_scores = combine_scores(terms, self.score_type, self.calibration_)
        self.validation_anomaly_scores_ = np.sort(val_scores)
        if self.target_fpr is not None:
            threshold = np.quantile(val_scores, 1 - self.target_fpr)
        elif self.contamination == "auto":
            threshold = np.quantile(val_scores, 1 - AUTO_FPR)
        else:
            # IsolationForest's convention: a quantile of the training scores.
            threshold = np.percentile(
                self.anomaly_score(X), 100.0 * (1 - self.contamination)
            )
        self.offset_ = -float(threshold)
        self.threshold_ = float(threshold)
        self._scorers = {}  # built again with the threshold
        return self

    def _calibrate(
        self,
        encoded: np.ndarray,
        encoded_val: np.ndarray,
        held_out: bool,
        rngs,
        encoded_known: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """Prototypes from the training rows' codes; the units of the errors and
        the medians of the score terms from the held-out normal rows, whose terms
        it returns (:meth:`Scorer.errors`)."""
        from sklearn.cluster import KMeans

        members = self.n_members_
        n_train = encoded.shape[0]
        sample = min(_PROTOTYPE_SAMPLE, n_train)
        picked = np.sort(rngs.numpy.choice(n_train, sample, replace=False))
        codes = self._codes(encoded[picked])  # (M, sample, L)
        # Without rows held out, the training rows calibrate: their own codes as
        # prototypes would put them at distance 0, so k-means keeps fewer centres.
        n_centres = (
            self.n_prototypes
            if held_out
            else max(1, min(self.n_prototypes, sample // 2))
        )
        if sample <= n_centres:
            prototypes = codes
        else:
            seeds = rngs.numpy.integers(2**31, size=members)
            prototypes = np.stack(
                [
                    KMeans(n_centres, n_init=1, max_iter=50, random_state=int(seed))
                    .fit(member_codes)
                    .cluster_centers_
                    for member_codes, seed in zip(codes, seeds, strict=True)
                ]
            )
        self.prototypes_ = prototypes.astype(np.float32)
        # Training rows as the nearest-neighbour term's references, kept only
        # when rows are held out: its median, like the other terms', comes from
        # rows the model was not built from.
        self.neighbours_ = (
            build_index(encoded, self.n_references, rngs.numpy) if held_out else None
        )
        # The known anomalies: their distances to normal rows, held out or not,
        # never search the rows they are measured from.
        self.known_ = None
        if encoded_known is not None:
            self.known_ = build_index(encoded_known, self.n_references, rngs.numpy)
        sources = self.preprocessor_.source_columns_
        residuals = self._residuals(encoded_val)  # (M, n_val, F)
        self.feature_error_scale_ = np.stack(
            [feature_error_scale(r**2, sources) for r in residuals]
        )
        # The terms' medians, from a scorer whose calibration is still neutral.
        self.calibration_ = {
            "reconstruction": [1.0] * members,
            "nearest": [1.0] * members,
        }
        if self.neighbours_ is not None:
            self.calibration_["neighbour"] = [1.0]
        if self.known_ is not None:
            self.calibration_["known"] = [1.0]
        self.threshold_ = np.inf
        self._scorers = {}
        # Every term, whatever score_type: a model file holds every calibration.
        # (One BLAS thread, as every later scoring of these rows.)
        with one_blas_thread():
            _, terms = self._scorer(score_type="combined").errors(encoded_val)
        self.calibration_ = {
            name: [_positive(v) for v in np.median(values, axis=0)]
            for name, values in terms.items()
        }
        self._scorers = {}  # the neutral one is not this model
        return terms

    @torch.no_grad()
    def _codes(self, encoded: np.ndarray) -> np.ndarray:
        """The members' latent codes of encoded rows, (M, n, L), float64."""
        x = self._member_batch(encoded)
        return self.generator_.encoder(x).double().cpu().numpy()

    @torch.no_grad()
    def _residuals(self, encoded: np.ndarray) -> np.ndarray:
        """``x - G_m(x)`` of encoded rows for every member, (M, n, F), float64."""
        x = self._member_batch(encoded)
        return (x - self.generator_(x)[0]).double().cpu().numpy()

    def _member_batch(self, encoded: np.ndarray) -> torch.Tensor:
        device = next(self.generator_.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(encoded, dtype=np.float32))
        return x.to(device).unsqueeze(0).expand(self.n_members_, -1, -1)

    def _check_hidden_dims(self) -> tuple[int, ...] | None:
        if self.hidden_dims is None:
            return None
        dims = tuple(self.hidden_dims)
        if not dims or not all(
            isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in dims
        ):
            raise ValueError(
                f"hidden_dims must be a non-empty tuple of positive ints, got "
                f"{self.hidden_dims!r}"
            )
        return tuple(int(d) for d in dims)

    def _loss_functions(
        self,
        generator: GANomalyEnsemble,
        discriminator: EnsembleDiscriminator,
        rows: torch.Tensor,
        member_rows: torch.Tensor,
        known: torch.Tensor | None,
    ):
        """The losses of one step, on a batch of row numbers: member ``m`` reads
        rows ``member_rows[m, numbers]``."""
        adversarial = GANLoss("bce")
        known = None if known is None else known.to(rows.device)

        def members_batch(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return rows[member_rows[:, batch[0]]]  # (M, B, F)

        def d_loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            x = members_batch(batch)
            with torch.no_grad():
                reconstruction = generator(x)[0]
            return adversarial.discriminator_loss(
                discriminator(x), discriminator(reconstruction)
            )

        def g_loss_fn(batch: tuple[torch.Tensor, ...]):
            x = members_batch(batch)
            reconstruction, latent, latent_of_reconstruction = generator(x)
            loss = generator_loss(
                real_features=discriminator.features(x),
                fake_features=discriminator.features(reconstruction),
                x=x,
                reconstruction=reconstruction,
                latent=latent,
                latent_of_reconstruction=latent_of_reconstruction,
                w_adv=self.w_adv,
                w_con=self.w_con,
                w_enc=self.w_enc,
            )
            if known is None:
                return loss
            anomalies = known.unsqueeze(0).expand(generator.n_members, -1, -1)
            pushed = known_anomaly_loss(anomalies, generator(anomalies)[0])
            return loss + pushed, {"known_anomaly_loss": pushed.detach()}

        return d_loss_fn, g_loss_fn

    # ------------------------------------------------------------- scoring
    def _scorer(self, dtype: Any = np.float64, score_type: str | None = None) -> Scorer:
        """This fitted model as a :class:`~ganomaly._scorer.Scorer`, the one way it
        scores: numpy on the CPU; on a CUDA device, the networks run there in
        torch (the same terms and combination).  ``score_type`` overrides the
        model's (calibration needs every term)."""
        check_is_fitted(self)
        cache = self.__dict__.setdefault("_scorers", {})
        key = (np.dtype(dtype).name, score_type)
        if key not in cache:
            tensors, config = self._model_contents()
            if score_type is not None:
                config["params"]["score_type"] = score_type
            arrays = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
            if self.device_ == "cpu":
                cache[key] = Scorer.from_model(arrays, config, dtype=dtype)
            else:
                scorer = _TorchScorer.from_model(arrays, config, dtype=dtype)
                scorer.generator = self.generator_
                scorer.position_free = False  # float32 products in torch's blocks
                cache[key] = scorer
        return cache[key]

    def _encode(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self.preprocessor_.transform(
            self._validate_input(X, reset=False), order=self._scorer().input_order
        )

    def anomaly_score(self, X: Any) -> np.ndarray:
        """Positive anomaly score: higher means more suspicious.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Equal to ``-score_samples(X)``; about 1 for a typical normal row; rows
            above ``threshold_`` are anomalies.
        """
        return self._scorer().anomaly_score(self._encode(X))

    def score_samples(self, X: Any) -> np.ndarray:
        """Opposite of the anomaly score: the lower, the more abnormal.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return -self.anomaly_score(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for anomalies.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """-1 for anomalies, +1 for normal rows.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
        """
        decision = self.decision_function(X)
        labels = np.ones(decision.shape[0], dtype=int)
        labels[decision < 0] = -1
        return labels

    def score_and_explain(
        self, X: Any, top_k: int = 3
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Anomaly scores and explanations from one pass of the networks.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
        top_k : int, default=3

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            As :meth:`anomaly_score`.
        explanations : DataFrame
            As :meth:`explain`.
        """
        scores, top, shares = self._scorer().score_and_explain(self._encode(X), top_k)
        names = np.asarray(self.preprocessor_.input_columns_, dtype=object)
        result: dict[str, Any] = {}
        for k in range(top.shape[1]):
            result[f"feature_{k + 1}"] = names[top[:, k]]
            result[f"contribution_{k + 1}"] = shares[:, k].astype(np.float64)
        return scores, pd.DataFrame(result)

    def explain(self, X: Any, top_k: int = 3) -> pd.DataFrame:
        """The columns that contribute most to what sets each row apart.

        Two of the score's terms have a part per column: the reconstruction error
        (squared, in units of its mean on held-out normal rows, averaged over the
        members) and, where the model keeps training rows, the distance to the
        nearest of them (``(x - r)^2`` per encoded feature).  Each is split over
        the columns in proportion to its parts, the two splits weighted by how
        far each term lies above a typical normal row
        (:func:`ganomaly._scorer.feature_attribution`), summed per original
        column (the one-hot columns of a category count together) and reported
        as a share of the row's total, largest first.  A row flagged for being far
        from every normal row names the columns where it differs from the nearest
        one.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
        top_k : int, default=3
            Columns reported per row (at most the number of input columns).

        Returns
        -------
        DataFrame
            ``feature_1, contribution_1, ..., feature_k, contribution_k``; features
            are column names (``x0, x1, ...`` for arrays), contributions shares in
            [0, 1].  Same index as ``X`` for DataFrames.
        """
        explanations = self.score_and_explain(X, top_k)[1]
        if isinstance(X, pd.DataFrame):
            explanations.index = X.index
        return explanations

    # ------------------------------------------------------------ model files
    def save(self, path: str | Path) -> None:
        """Write the fitted detector to a safe model file (safetensors + JSON).

        Loading it never executes code, unlike a pickle.

        Parameters
        ----------
        path : str or Path
            Conventionally ``*.safetensors``; written atomically.
        """
        save_model(path, *self._model_contents(), kind=MODEL_KIND)

    def to_onnx(self, path: str | Path | None = None, *, top_k: int = 3) -> Any:
        """The fitted detector as one ONNX graph: preprocessing, networks, score,
        threshold and explanations (see :mod:`ganomaly.export`).

        Needs the ``onnx`` extra (``pip install 'gankit[onnx]'``).

        Parameters
        ----------
        path : str or Path, optional
            Write the graph there (atomically), conventionally ``*.onnx``.
        top_k : int, default=3
            Columns in the ``top_features`` output.

        Returns
        -------
        onnx.ModelProto
        """
        from .export import build_onnx

        tensors, config = self._model_contents()
        arrays = {name: t.detach().cpu().numpy() for name, t in tensors.items()}
        return build_onnx(arrays, config, path, top_k=top_k)

    def _model_contents(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What a model file holds: the tensors by name and the JSON configuration
        (:mod:`ganomaly.model_file`)."""
        check_is_fitted(self)
        params = self.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None  # a RandomState has no JSON form
        if params["hidden_dims"] is not None:
            params["hidden_dims"] = [int(d) for d in params["hidden_dims"]]
        config = ModelConfig(
            params=params,
            preprocessor=self.preprocessor_.to_dict(),
            fitted_on_frame=bool(self.fitted_on_frame_),
            n_features_in=int(self.n_features_in_),
            feature_names_in=(
                [str(c) for c in self.feature_names_in_]
                if hasattr(self, "feature_names_in_")
                else None
            ),
            n_members=int(self.n_members_),
            hidden_dims=[int(d) for d in self.hidden_dims_],
            latent_dim=int(self.latent_dim_),
            n_epochs=int(self.n_epochs_),
            threshold=float(self.threshold_),
            calibration={
                k: [float(x) for x in v] for k, v in self.calibration_.items()
            },
            ema_decay=float(self.ema_decay_),
            history=list(self.history_),
            metadata=dict(getattr(self, "metadata_", {})),
            version=version_for(self.calibration_),
        )
        tensors = {
            **module_tensors("generator", self.generator_),
            **module_tensors("discriminator", self.discriminator_),
            "calibration.validation_anomaly_scores": torch.from_numpy(
                np.ascontiguousarray(
                    getattr(self, "validation_anomaly_scores_", np.zeros(0))
                )
            ),
            "calibration.feature_error_scale": torch.from_numpy(
                np.ascontiguousarray(self.feature_error_scale_)
            ),
            "calibration.prototypes": torch.from_numpy(
                np.ascontiguousarray(self.prototypes_)
            ),
        }
        for term, index in (
            ("neighbour", getattr(self, "neighbours_", None)),
            ("known", getattr(self, "known_", None)),
        ):
            if index is not None:
                for name, array in index.arrays(term).items():
                    tensors[name] = torch.from_numpy(np.ascontiguousarray(array))
        return tensors, config.to_dict()

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> GANomalyDetector:
        """Read a detector written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
        device : str, default="cpu"
            Where to score.

        Returns
        -------
        GANomalyDetector

        Raises
        ------
        gancore.ModelFileError
            Not a GANomalyDetector model file, or a damaged one.
        """
        tensors, config = load_model(path, kind=MODEL_KIND)
        try:
            model = ModelConfig.from_dict(config)
            preprocessor = TabularPreprocessor.from_dict(model.preprocessor)
            n_encoded = preprocessor.n_features_out_
            shapes = {name: tuple(t.shape) for name, t in tensors.items()}
            model.check_shapes(shapes, n_encoded)
            detector = cls(**model.params)
            detector.preprocessor_ = preprocessor
            detector.fitted_on_frame_ = bool(model.fitted_on_frame)
            detector.n_features_in_ = int(model.n_features_in)
            if model.feature_names_in is not None:
                detector.feature_names_in_ = np.asarray(
                    model.feature_names_in, dtype=object
                )
            detector.hidden_dims_ = tuple(model.hidden_dims)
            detector.latent_dim_ = model.latent_dim
            detector.n_members_ = int(model.n_members)
            detector.n_epochs_ = int(model.n_epochs)
            detector.offset_ = model.offset
            detector.threshold_ = float(model.threshold)
            detector.calibration_ = dict(model.calibration)
            detector.history_ = list(model.history)
            detector.metadata_ = dict(model.metadata)
            detector.ema_decay_ = float(model.ema_decay)
            # Built without storage: the configuration's sizes were checked against
            # the stored weights above, and the weights read from the file become
            # the parameters.
            with torch.device("meta"):
                generator = GANomalyEnsemble(
                    model.n_members, n_encoded, model.latent_dim, model.hidden_dims
                )
                discriminator = EnsembleDiscriminator(
                    model.n_members, n_encoded, model.hidden_dims
                )
            state = module_state("generator", tensors)
            generator.load_state_dict(state, assign=True)
            state = module_state("discriminator", tensors)
            discriminator.load_state_dict(state, assign=True)
            detector.validation_anomaly_scores_ = tensors[
                "calibration.validation_anomaly_scores"
            ].numpy()
            detector.feature_error_scale_ = (
                tensors["calibration.feature_error_scale"].numpy().astype(np.float64)
            )
            detector.prototypes_ = tensors["calibration.prototypes"].numpy()
            detector.neighbours_ = NeighbourIndex.from_arrays(tensors)
            detector.known_ = NeighbourIndex.from_arrays(tensors, "known")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError.damaged(path, "GANomalyDetector", exc) from exc
        resolved = resolve_device(device)
        detector.generator_ = generator.to(resolved).eval()
        detector.discriminator_ = discriminator.to(resolved).eval()
        detector.device_ = str(resolved)
        return detector


class _TorchScorer(Scorer):
    """A Scorer whose networks run in torch, on the detector's (CUDA) device."""

    generator: torch.nn.Module
    input_order = "C"  # torch copies the rows to the device as they come

    def _network_errors(
        self, encoded: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        device = next(self.generator.parameters()).device
        n, n_features = encoded.shape
        errors = np.empty((n, n_features), dtype=np.float32, order="F")
        terms = self._empty_terms(n)
        scale = torch.from_numpy(self.feature_error_scale_).to(device)[:, None, :]
        prototypes = torch.from_numpy(self.prototypes_).to(device)
        with torch.inference_mode():
            for start in range(0, n, 1 << 16):
                x = torch.from_numpy(
                    np.ascontiguousarray(encoded[start : start + (1 << 16)])
                )
                x = x.to(device=device, dtype=torch.float32)
                x = x.unsqueeze(0).expand(self.n_members, -1, -1)
                codes = self.generator.encoder(x)
                squares = (x - self.generator.decoder(codes)).double() ** 2 / scale
                stop = start + x.shape[1]
                errors[start:stop] = squares.mean(0).float().cpu().numpy()
                terms["reconstruction"][start:stop] = squares.mean(2).T.cpu().numpy()
                if self._need_nearest:
                    codes = codes.double()
                    nearest = torch.cdist(codes, prototypes).argmin(dim=2)
                    picked = torch.stack(
                        [p[i] for p, i in zip(prototypes, nearest, strict=True)]
                    )
                    squares = ((codes - picked) ** 2).sum(dim=2).T
                    terms["nearest"][start:stop] = squares.cpu().numpy()
        return errors, terms


def auto_epochs(n_rows: int, batch_size: int) -> int:
    """Epochs for about ``AUTO_STEPS`` generator steps: at least 1, at most 300.

    Examples
    --------
    >>> auto_epochs(250_000, 128), auto_epochs(10_000, 128), auto_epochs(100, 128)
    (1, 19, 300)
    """
    steps_per_epoch = math.ceil(n_rows / batch_size)
    return int(min(_MAX_AUTO_EPOCHS, max(1, math.ceil(AUTO_STEPS / steps_per_epoch))))


def auto_members(n_rows: int) -> int:
    """Members for ``n_members="auto"``: ``AUTO_MEMBERS_SMALL`` (8) for at most
    ``AUTO_SMALL_ROWS`` (1,000) normal training rows, else ``AUTO_MEMBERS`` (2).

    With few rows, one network's ranking depends most on its random state, and
    the members, trained as one batched network on small batches, cost little
    more than 2: on the pool's tables of at most 1,000 training rows, 8 members
    made the AUROC much less dependent on the random state at the same mean
    quality, for a little more fit time (benchmarks/RESULTS.md).  Above, members
    cost fit and scoring time in proportion, and 2 keep ``ganomaly score``'s
    throughput.

    Examples
    --------
    >>> auto_members(500), auto_members(1000), auto_members(1001)
    (8, 8, 2)
    """
    return AUTO_MEMBERS_SMALL if n_rows <= AUTO_SMALL_ROWS else AUTO_MEMBERS


def ema_decay(n_steps: int) -> float:
    """Decay of the generator's weight average for a run of ``n_steps`` steps.

    The average spans about the last 500 steps (decay 0.998), or the last 30 % of
    a shorter run, so that the initial weights keep a weight of at most
    ``exp(-1 / 0.3)`` (4 %); three steps or fewer keep the last weights.  Longer
    and shorter spans each hurt on some tables (benchmarks/RESULTS.md).

    Examples
    --------
    >>> ema_decay(3000), round(ema_decay(1000), 5), ema_decay(3)
    (0.998, 0.99667, 0.0)
    """
    if n_steps * EMA_SHARE <= 1:
        return 0.0
    return min(EMA_DECAY, 1.0 - 1.0 / (EMA_SHARE * n_steps))


def _take(X: pd.DataFrame | np.ndarray, rows: np.ndarray) -> pd.DataFrame | np.ndarray:
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]


def _positive(value: float) -> float:
    value = float(value)
    return value if value > 1e-12 else 1e-12
