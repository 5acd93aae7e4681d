"""What a GANomalyDetector model file holds, read and written in one place.

A model file (gancore's safetensors + JSON format, kind :data:`MODEL_KIND`) holds the
tensors below and a JSON configuration, :class:`ModelConfig`.  The estimator's
``save`` and ``load``, the numpy scorer (:func:`ganomaly._scorer.load_scorer`), the
Dask workers and the ONNX export all read it through :meth:`ModelConfig.from_dict`,
which checks the version and every field, and :meth:`ModelConfig.check_shapes`,
which compares the stored tensors' shapes with the configuration before any network
is built from it.

Tensors (``M`` members, ``F`` encoded features, ``L`` latent size, ``R``
prototypes):

* ``generator.{encoder,decoder,second_encoder}.net.{i}.{weight,bias}``: ``(M, out,
  in)`` and ``(M, out)``, the members' generators (:class:`~ganomaly._model.
  GANomalyEnsemble`);
* ``discriminator.body.net.{i}.*``, ``discriminator.head.*``: their discriminators;
* ``calibration.feature_error_scale`` ``(M, F)``: per-feature units of each member's
  squared reconstruction errors;
* ``calibration.prototypes`` ``(M, R, L)``: each member's prototypes of the training
  rows' latent codes;
* ``calibration.references`` ``(N, F)`` (float32), ``calibration.reference_centres``
  ``(C, F)`` and ``calibration.reference_starts`` ``(C + 1,)``, where the model has
  the nearest-neighbour term (version 3, ``n_references > 0``): up to
  ``n_references`` encoded training rows, sorted into ``C`` cells
  (:class:`~ganomaly.neighbours.NeighbourIndex`);
* ``calibration.known_anomalies``, ``calibration.known_centres`` and
  ``calibration.known_starts``, the same for the known-anomaly term (version 4,
  ``use_labels=True`` with labelled anomalies): up to ``n_references`` encoded
  known anomalies;
* ``calibration.validation_anomaly_scores``: the held-out normal rows' scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "INDEX_TENSORS",
    "MODEL_KIND",
    "MODEL_VERSION",
    "READABLE_VERSIONS",
    "ModelConfig",
    "version_for",
]

MODEL_KIND = "ganomaly.GANomalyDetector"
# 2: members, the nearest-prototype term and a geometric-mean score (gankit 0.1.0
# after issue 18); 3: the nearest-neighbour term's references, optional; 4: the
# known-anomaly term (use_labels), which only version 4 files hold: a model
# without it is written as version 3, which earlier readers score alike.  Version 2
# and 3 files are read as they are (they score without the terms they lack);
# version 1 files (one network, "absolute" or scaled errors, a latent term) are
# refused with a message to fit the model again.  A reader of an earlier version
# refuses a later one rather than score it without a term.
MODEL_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
# The tensors of the terms searched in an index of encoded rows, by term, in
# NeighbourIndex's argument order, and the version that brought each term.
INDEX_TENSORS = {
    "neighbour": (
        "calibration.references",
        "calibration.reference_centres",
        "calibration.reference_starts",
    ),
    "known": (
        "calibration.known_anomalies",
        "calibration.known_centres",
        "calibration.known_starts",
    ),
}
INDEX_VERSIONS = {"neighbour": 3, "known": 4}
_PARTS = ("encoder", "decoder", "second_encoder")


@dataclass
class ModelConfig:
    """The JSON configuration of a model file.

    Attributes
    ----------
    params : dict
        ``GANomalyDetector.get_params()`` at fit time.
    preprocessor : dict
        ``TabularPreprocessor.to_dict()``.
    n_members, latent_dim : int
    hidden_dims : list of int
    threshold : float
        Anomaly scores above it are anomalies.
    calibration : dict
        ``{"reconstruction": [...], "nearest": [...]}``: per member, the median of
        each score term on held-out normal rows; ``"neighbour": [median]`` where
        the model has the nearest-neighbour term, ``"known": [median]`` where it
        has the known-anomaly term.
    """

    params: dict
    preprocessor: dict
    fitted_on_frame: bool
    n_features_in: int
    feature_names_in: list[str] | None
    n_members: int
    hidden_dims: list[int]
    latent_dim: int
    n_epochs: int
    threshold: float
    calibration: dict[str, list[float]]
    ema_decay: float
    history: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    version: int = MODEL_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the model file's configuration)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ModelConfig:
        """The configuration of a model file, checked.

        Raises
        ------
        ValueError
            Another version, or a missing or malformed field (the caller names the
            file: ``gancore.ModelFileError.damaged``).
        """
        if not isinstance(config, dict):
            raise ValueError("the configuration is not a map")
        version = config.get("version", 1)
        if version not in READABLE_VERSIONS:
            versions = " and ".join(map(str, READABLE_VERSIONS))
            raise ValueError(
                f"a GANomalyDetector of model version {version!r}, but this gankit "
                f"reads versions {versions}: fit the model again with this version "
                "(ganomaly fit)"
            )
        names = {f for f in cls.__dataclass_fields__}
        missing = sorted(names - set(config) - {"history", "metadata"})
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        made = cls(**{k: config[k] for k in names if k in config})
        made._check_types()
        return made

    def _check_types(self) -> None:
        checks = {
            "params": isinstance(self.params, dict),
            "preprocessor": isinstance(self.preprocessor, dict),
            "n_members": _positive_int(self.n_members),
            "latent_dim": _positive_int(self.latent_dim),
            "hidden_dims": isinstance(self.hidden_dims, list)
            and bool(self.hidden_dims)
            and all(_positive_int(h) for h in self.hidden_dims),
            "n_features_in": _positive_int(self.n_features_in),
            "threshold": isinstance(self.threshold, (int, float)),
            "calibration": isinstance(self.calibration, dict)
            and all(
                isinstance(self.calibration.get(k), list)
                and len(self.calibration[k]) == self.n_members
                for k in ("reconstruction", "nearest")
            )
            and all(
                term not in self.calibration
                or (
                    isinstance(self.calibration[term], list)
                    and len(self.calibration[term]) == 1
                )
                for term in INDEX_TENSORS
            ),
            "metadata": isinstance(self.metadata, dict),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"malformed field(s) {', '.join(bad)}")

    @property
    def offset(self) -> float:
        """``decision_function = score_samples - offset``."""
        return -float(self.threshold)

    def expected_shapes(self, n_features: int) -> dict[str, tuple[int, ...]]:
        """The shape every generator tensor must have, from the configuration."""
        m, hidden = self.n_members, [int(h) for h in self.hidden_dims]
        widths = {
            "encoder": [n_features, *hidden, self.latent_dim],
            "decoder": [self.latent_dim, *hidden[::-1], n_features],
            "second_encoder": [n_features, *hidden, self.latent_dim],
        }
        shapes = {}
        for part in _PARTS:
            for i, (n_in, n_out) in enumerate(
                zip(widths[part][:-1], widths[part][1:], strict=False)
            ):
                shapes[f"generator.{part}.net.{2 * i}.weight"] = (m, n_out, n_in)
                shapes[f"generator.{part}.net.{2 * i}.bias"] = (m, n_out)
        shapes["calibration.feature_error_scale"] = (m, n_features)
        return shapes

    def check_shapes(self, shapes: dict[str, tuple[int, ...]], n_features: int):
        """ValueError unless the stored tensors (name -> shape) are those the
        configuration describes: called before anything is built from it, so that
        sizes in the configuration never allocate what the file does not hold."""
        for name, expected in self.expected_shapes(n_features).items():
            found = tuple(shapes.get(name, ()))
            if found != expected:
                raise ValueError(
                    f"tensor {name} has shape {found or 'none'}, the configuration "
                    f"says {expected}"
                )
        prototypes = tuple(shapes.get("calibration.prototypes", ()))
        if len(prototypes) != 3 or prototypes[::2] != (
            self.n_members,
            self.latent_dim,
        ):
            raise ValueError(
                f"tensor calibration.prototypes has shape {prototypes or 'none'}, "
                f"expected ({self.n_members}, *, {self.latent_dim})"
            )
        self._check_reference_shapes(shapes, n_features)

    def _check_reference_shapes(
        self, shapes: dict[str, tuple[int, ...]], n_features: int
    ) -> None:
        """The tensors of each term searched in an index (:data:`INDEX_TENSORS`):
        all three or none, none in a file older than the term, and all three
        exactly when the calibration has the term."""
        for term, names in INDEX_TENSORS.items():
            present = [name for name in names if name in shapes]
            wanted = term in self.calibration
            if wanted and self.version < INDEX_VERSIONS[term]:
                raise ValueError(f"the {term!r} term in a version {self.version} model")
            if present and (len(present) < 3 or not wanted):
                raise ValueError(
                    f"tensor(s) {', '.join(present)} without the {term!r} term "
                    "they belong to"
                )
            if not wanted:
                continue
            if not present:
                raise ValueError(f"the {term!r} term without its tensors")
            rows, centres, starts = (tuple(shapes[name]) for name in names)
            if (
                len(rows) != 2
                or rows[0] < 1
                or rows[1] != n_features
                or len(centres) != 2
                or centres[1] != n_features
                or not 1 <= centres[0] <= rows[0]
                or starts != (centres[0] + 1,)
            ):
                raise ValueError(
                    f"{term} tensors have shapes {rows}, {centres}, {starts}; "
                    f"expected (N, {n_features}), (C, {n_features}), (C + 1,) with "
                    "1 <= C <= N"
                )


def version_for(calibration: dict) -> int:
    """The model version a model with these score terms is written as: the
    earliest that holds every one of them."""
    return max(
        [3] + [INDEX_VERSIONS[term] for term in INDEX_TENSORS if term in calibration]
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
