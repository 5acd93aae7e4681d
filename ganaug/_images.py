"""What ganaug's two samplers share: images in, images out.

:class:`ImageSampler` is the base of :class:`ganaug.GANAugmenter` (images from
noise) and :class:`ganaug.GANTranslator` (images from other classes' images).  It
holds what is the same for both: accepting ``(n, H, W)``, ``(n, C, H, W)`` and
flattened images, the shape the networks work in, scaling pixels to the
networks' [-1, 1] and back to the input's dtype and range, how many images each
class gets, the epoch budget and the weight average, the screening of synthetic
images by a classifier of the real ones, the labels and random stream of a
``sample`` call, the checkpoint options, the common part of a model file and its
reader, and the estimator tags.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections import Counter

import numpy as np
import torch
from imblearn.over_sampling.base import BaseOverSampler
from imblearn.utils import check_target_type
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, validate_data

# diffaugment="auto": below this many training images the full DiffAugment policy is
# on (Zhao et al. 2020 show the benefit up to a few thousand images; above that it
# costs little but also helps little).
SMALL_DATA = 5000
DEFAULT_POLICY = "color,translation,cutout"

# filter_synthetic: candidates drawn per wanted image before giving up on a class.
FILTER_MAX_DRAWS = 8

# gancore's convolutional nets take sides that are multiples of 4: images are padded
# to them before training (gancore.pad_to_multiple) and cropped back after.
PAD_MULTIPLE = 4


def padded_shape(image_shape: tuple[int, int, int] | None) -> tuple | None:
    """``image_shape`` with height and width padded up to multiples of
    :data:`PAD_MULTIPLE` (None for flat data)."""
    if image_shape is None:
        return None
    channels, *sides = image_shape
    return (channels, *(-(-side // PAD_MULTIPLE) * PAD_MULTIPLE for side in sides))


def saved_random_state(random_state) -> int | None:
    """``random_state`` as a model file keeps it: an int, from which ``sample``
    restarts its stream after loading; None for None or a RandomState (whose
    position a JSON configuration cannot hold)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool
    ):
        return int(random_state)
    return None


def hidden_dims(n_features: int) -> tuple[int, int]:
    """Widths of the MLPs for flattened data of ``n_features`` values."""
    width = int(min(512, max(64, 2 ** math.ceil(math.log2(max(n_features, 2))))))
    return (width, width)


def balanced_rows(encoded: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of a class-balanced training set: every class's rows, topped up with
    random repeats to the largest class's count."""
    counts = np.bincount(encoded)
    rows = []
    for code, count in enumerate(counts):
        own = np.flatnonzero(encoded == code)
        rows += [own, rng.choice(own, counts.max() - count, replace=True)]
    return np.concatenate(rows)


def as_python(label):
    """A numpy scalar label as the Python value dict keys and JSON use."""
    return label.item() if hasattr(label, "item") else label


class ImageSampler(BaseOverSampler):
    """Base of the image samplers (module docstring); not for direct use."""

    # The parameters both samplers have, and what they accept.
    _parameter_constraints: dict = {
        **BaseOverSampler._parameter_constraints,
        "image_shape": [tuple, list, None],
        "augment_ratio": [Interval(numbers.Real, 0, None, closed="left")],
        "rebalance": [StrOptions({"synthetic", "duplicate"})],
        "augment_basis": [StrOptions({"real", "balanced"})],
        "diffaugment": [str, None],
        "balance_classes": ["boolean"],
        "ema": ["boolean", Interval(numbers.Real, 0, 1, closed="left")],
        "n_epochs": [
            Interval(numbers.Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "base_channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "filter_synthetic": ["boolean"],
        "device": [str],
        "verbose": ["verbose"],
        "checkpoint_path": [str, None],
    }

    def _images_required(self) -> bool:
        """Whether flattened data must be images (conv nets only take images)."""
        return False

    # ------------------------------------------------------------ validation

    def _check_X_y(self, X, y, accept_sparse=None):
        """Accept (n, H, W) and (n, C, H, W) images besides 2-D arrays.

        Images are flattened for scikit-learn's validation and the layout is
        remembered, so that ``_fit_resample`` can give its output the input's
        layout.
        """
        y, binarize_y = check_target_type(y, indicate_one_vs_all=True)
        self._input_layout = None
        if not hasattr(X, "columns") and np.ndim(X) > 2:
            X = check_array(X, allow_nd=True, dtype="numeric", input_name="X")
            if X.ndim > 4:
                raise ValueError(
                    f"X must be (n, H, W), (n, C, H, W) or (n, features); got {X.shape}"
                )
            self._input_layout = X.shape[1:]
            X = X.reshape(len(X), -1)
        X, y = validate_data(self, X=X, y=y, reset=True, accept_sparse=False)
        return X, y, binarize_y

    def _resolve_image_shape(self, n_features: int) -> tuple[int, int, int] | None:
        if self._input_layout is not None:
            layout = tuple(int(s) for s in self._input_layout)
            shape = (1, *layout) if len(layout) == 2 else layout
            if self.image_shape is not None and tuple(self.image_shape) != shape:
                raise ValueError(
                    f"image_shape={tuple(self.image_shape)} does not match the "
                    f"images' shape {shape}"
                )
            return shape
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if len(shape) != 3 or math.prod(shape) != n_features:
                raise ValueError(
                    f"image_shape must be (C, H, W) with C*H*W = {n_features} "
                    f"features, got {tuple(self.image_shape)}"
                )
            return shape
        side = math.isqrt(n_features)
        if side * side == n_features and side >= 4:
            return (1, side, side)
        if self._images_required():
            raise ValueError(
                f"X has {n_features} features, not a square image: pass "
                "image_shape=(C, H, W) or use architecture='mlp'"
            )
        return None

    def _learn_data(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Remember the data's shape, dtype, classes and range; the class codes."""
        self.image_shape_ = self._resolve_image_shape(X.shape[1])
        self.train_shape_ = padded_shape(self.image_shape_)
        self.dtype_ = str(X.dtype)
        self.input_layout_ = self._input_layout
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self.data_range_ = (float(np.min(X)), float(np.max(X)))
        return encoded

    # ----------------------------------------------------------- what to add

    def _plan_counts(self, y: np.ndarray) -> dict:
        """New images per class.  Each class grows to its balanced count (what
        ``sampling_strategy`` asks for) plus ``augment_ratio`` times that.  With
        ``rebalance="synthetic"`` every new image is synthetic; with
        ``"duplicate"``, ``augment_ratio`` times the class's balanced count
        (``augment_basis="balanced"``) or its real count (``"real"``) are
        synthetic and copies of real images make up the rest.  Sets
        ``n_synthetic_`` and ``n_duplicated_``."""
        counts = Counter(y.tolist())
        ratio = self.augment_ratio
        balanced = {
            label: count + int(self.sampling_strategy_.get(label, 0))
            for label, count in counts.items()
        }
        added = {
            label: balanced[label] - counts[label] + int(round(ratio * balanced[label]))
            for label in counts
        }
        if self.rebalance == "duplicate":
            basis = balanced if self.augment_basis == "balanced" else counts
            n_new = {label: int(round(ratio * basis[label])) for label in counts}
        else:
            n_new = added
        self.n_duplicated_ = {label: added[label] - n_new[label] for label in counts}
        self.n_synthetic_ = n_new
        return n_new

    def _duplicate_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rows of real samples to copy (``n_duplicated_``), drawn with replacement
        within each class."""
        rows = [
            rng.choice(np.flatnonzero(y == label), count, replace=True)
            for label, count in self.n_duplicated_.items()
            if count
        ]
        return np.concatenate(rows) if rows else np.empty(0, dtype=np.intp)

    # --------------------------------------------------------------- training

    def _budget_epochs(self, n_rows: int, budget_pixels: float, max_epochs: int) -> int:
        """``n_epochs``, or for "auto" the epochs in which the networks see
        ``budget_pixels`` pixels (images times height times width; values for
        flat data), between 1 and ``max_epochs``."""
        if self.n_epochs != "auto":
            return int(self.n_epochs)
        pixels = (
            self.image_shape_[1] * self.image_shape_[2]
            if self.image_shape_ is not None
            else self.n_features_in_
        )
        images = budget_pixels / pixels
        return int(np.clip(math.ceil(images / n_rows), 1, max_epochs))

    def _augment_policy(self, n_rows: int) -> str | None:
        """The DiffAugment policy ``diffaugment`` asks for ("auto": the full
        policy for images below :data:`SMALL_DATA`, none otherwise)."""
        if self.diffaugment != "auto":
            return self.diffaugment or None
        small_images = self.image_shape_ is not None and n_rows < SMALL_DATA
        return DEFAULT_POLICY if small_images else None

    def _ema(self, generator: torch.nn.Module, steps: int):
        """The weight average of ``generator`` that ``ema`` asks for (None for
        False; True: decay ``1 - 10 / steps`` clipped to [0.9, 0.999])."""
        from gancore import EMA

        if self.ema is False:
            return None
        decay = (
            float(np.clip(1.0 - 10.0 / max(steps, 1), 0.9, 0.999))
            if self.ema is True
            else float(self.ema)
        )
        return EMA(generator, decay=decay)

    # ------------------------------------------------------------- screening

    def _train_judge(self, X_unit: np.ndarray, encoded: np.ndarray, rngs):
        """The classifier of the real images that screens synthetic ones
        (``filter_synthetic``)."""
        from .reference import RealImageClassifier

        if self.image_shape_ is None:
            raise ValueError(
                "filter_synthetic needs images; pass image_shape or "
                "filter_synthetic=False"
            )
        judge = RealImageClassifier(random_state=int(rngs.numpy.integers(0, 2**62)))
        return judge.fit(X_unit.reshape(-1, *self.image_shape_), encoded)

    def _screened(self, labels: np.ndarray, draw):
        """Synthetic images for ``labels`` that the judge (``judge_``) assigns to
        their intended class.

        ``draw(label, size)`` makes ``size`` candidates of one class: flat
        images and an array of something to keep with each (or None).
        Candidates are drawn class by class and kept when the judge gives their
        class the highest probability, until the class has its count or
        :data:`FILTER_MAX_DRAWS` candidates per image were drawn; a shortfall is
        made up with the rejected candidates the judge found most like the
        class.  Returns the images, what was kept with them (None when ``draw``
        keeps nothing) and the fraction accepted per class.
        """
        out = np.empty((len(labels), self.n_features_in_), dtype=np.dtype(self.dtype_))
        kept_with = None
        acceptance = {}
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            code = int(np.searchsorted(self.classes_, label))
            drawn, extras, accepted, scores = [], [], [], []
            n_kept = n_drawn = 0
            while n_kept < len(rows) and n_drawn < FILTER_MAX_DRAWS * len(rows):
                size = max(len(rows) - n_kept, 64)
                candidates, extra = draw(label, size)
                proba = self.judge_.predict_proba(
                    self._to_unit(candidates).reshape(-1, *self.image_shape_)
                )
                drawn.append(candidates)
                extras.append(extra)
                accepted.append(proba.argmax(axis=1) == code)
                scores.append(proba[:, code])
                n_kept += int(accepted[-1].sum())
                n_drawn += size
            accepted, scores = np.concatenate(accepted), np.concatenate(scores)
            # The accepted in the order drawn, then the rejected, most alike first.
            rejected = np.flatnonzero(~accepted)
            rejected = rejected[np.argsort(-scores[rejected], kind="stable")]
            order = np.r_[np.flatnonzero(accepted), rejected][: len(rows)]
            out[rows] = np.concatenate(drawn)[order]
            if extras[0] is not None:
                chosen = np.concatenate(extras)[order]
                if kept_with is None:
                    kept_with = np.empty(len(labels), dtype=chosen.dtype)
                kept_with[rows] = chosen
            acceptance[as_python(label)] = n_kept / n_drawn
        return out, kept_with, acceptance

    # --------------------------------------------------------------- scaling

    def _to_unit(self, X: np.ndarray) -> np.ndarray:
        low, high = self.data_range_
        span = high - low if high > low else 1.0
        return ((X.astype(np.float64) - low) / span * 2.0 - 1.0).astype(np.float32)

    def _from_unit(self, Z: np.ndarray) -> np.ndarray:
        low, high = self.data_range_
        span = high - low if high > low else 1.0
        values = (np.clip(Z.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0 * span + low
        dtype = np.dtype(self.dtype_)
        if dtype.kind in "iu":
            values = np.clip(np.rint(values), low, high)
        return values.astype(dtype)

    def _layout(self, flat: np.ndarray) -> np.ndarray:
        if self._input_layout is None:
            return flat
        return flat.reshape(len(flat), *self._input_layout)

    # ------------------------------------------------------- sampling streams

    def _sample_rng(self, random_state) -> torch.Generator:
        """The generator a ``sample`` call draws from: seeded by ``random_state``,
        or (None) the sampler's own stream, where fitting or the last such call
        left it or, in a sampler just loaded from a file, from the start of the
        stream of its int ``random_state`` (fresh entropy without one)."""
        from gancore import make_rngs

        if random_state is not None:
            return make_rngs(random_state).torch_cpu
        state = getattr(self, "_sample_state", None)
        if state is None:
            return make_rngs(self.random_state).torch_cpu
        rng = torch.Generator()
        rng.set_state(state)
        return rng

    def _keep_stream(self, rng: torch.Generator, random_state) -> None:
        """After a ``sample`` call: the next call without ``random_state``
        continues where this one left the sampler's stream.  (A state tensor,
        unlike a Generator, keeps the sampler picklable.)"""
        if random_state is None:
            self._sample_state = rng.get_state()

    # ---------------------------------------------------------------- labels

    def _wanted_labels(self, n_samples: int, y, rng: torch.Generator) -> np.ndarray:
        """The labels ``sample(n_samples, y)`` asks for: one class for all, one
        per image, or (``y`` None) classes drawn uniformly from ``rng``."""
        if not isinstance(n_samples, numbers.Integral) or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative int, got {n_samples!r}")
        if y is None:
            numpy_rng = np.random.default_rng(
                int(torch.randint(0, 2**62, (1,), generator=rng))
            )
            labels = self.classes_[numpy_rng.integers(0, len(self.classes_), n_samples)]
        elif np.ndim(y) == 0:
            labels = np.full(n_samples, y, dtype=self.classes_.dtype)
        else:
            labels = np.asarray(y)
            if len(labels) != n_samples:
                raise ValueError(f"y has {len(labels)} labels for {n_samples} samples")
        self._check_known(labels)
        return labels.astype(self.classes_.dtype)

    def _check_known(self, labels) -> None:
        unknown = sorted(set(np.unique(labels).tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise ValueError(
                f"unknown class(es) {unknown}; the sampler knows "
                f"{self.classes_.tolist()}"
            )

    # ------------------------------------------------------------ checkpoints

    def _checkpointing(
        self, data: list[torch.Tensor], kind: str, part: str, training_params
    ) -> dict:
        """train_gan's checkpoint options; the meta pins the data and the options
        in ``training_params`` (those that shape training: a checkpoint of a
        finished run can be resumed with other sampling options).  ``part``: the
        suffix of one of several networks' checkpoints (``.class<i>``)."""
        if self.checkpoint_path is None:
            return {}
        digest = hashlib.sha256()
        for tensor in data:
            digest.update(tensor.contiguous().numpy().tobytes())
        meta = {
            "kind": kind + part,
            "data_sha256": digest.hexdigest(),
            "shape": [int(n) for n in data[0].shape],
            "options": repr(
                sorted(
                    (k, v) for k, v in self.get_params().items() if k in training_params
                )
            ),
        }
        return {
            "checkpoint_path": f"{self.checkpoint_path}{part}",
            "checkpoint_every": 1,
            "resume": True,
            "checkpoint_meta": meta,
        }

    # ------------------------------------------------------------ model files

    def _data_config(self) -> dict:
        """What a model file says about the data (no image of it)."""
        return {
            "image_shape": list(self.image_shape_) if self.image_shape_ else None,
            "input_layout": list(self.input_layout_) if self.input_layout_ else None,
            "dtype": self.dtype_,
            "classes": self.classes_.tolist(),
            "classes_dtype": str(self.classes_.dtype),
            "data_range": list(self.data_range_),
            "n_features_in": int(self.n_features_in_),
        }

    def _write_model(
        self, path, kind: str, tensors: dict, config: dict, metadata: dict | None
    ) -> None:
        """Save ``tensors`` (the generators') and ``config`` (what only this
        sampler has) with what both samplers keep: the parameters, the data's
        description, the judge (``filter_synthetic``) and ``metadata``.  Class
        labels that look identifying are refused first: they travel with the
        weights."""
        from pathlib import Path

        from gancore import module_tensors, save_model

        from .privacy import check_labels

        check_labels(self.classes_)
        judge = getattr(self, "judge_", None)
        if judge is not None:  # so that a loaded sampler filters as this one does
            tensors = {**tensors, **module_tensors("judge", judge.network_)}
        config = {
            "params": self._params_config(),
            **self._data_config(),
            **config,
            "judge": judge.to_config() if judge is not None else None,
            "metadata": metadata or {},
        }
        # Scalars (batch norm's num_batches_tracked) are stored as 1-element
        # vectors: byte-level checksums need at least one dimension.
        tensors = {k: v.reshape(1) if v.dim() == 0 else v for k, v in tensors.items()}
        save_model(Path(path), tensors, config, kind=kind)

    @classmethod
    def _read_model(cls, path, kind: str):
        """A sampler from a file of :meth:`_write_model`: built from its
        parameters, data description, judge and metadata, then handed to
        ``_restore_networks(config, tensors)`` for the generators.  Anything
        inconsistent is a :class:`gancore.ModelFileError` naming the file."""
        from pathlib import Path

        from gancore import ModelFileError, load_model, module_state

        tensors, config = load_model(Path(path), kind=kind)
        try:
            sampler = cls(**config["params"])
            sampler._restore_data(config)
            sampler._restore_networks(config, tensors)
            sampler.history_ = config["history"]
            if config.get("judge"):
                from .reference import RealImageClassifier

                sampler.judge_ = RealImageClassifier.from_config(
                    config["judge"], module_state("judge", tensors)
                )
            sampler.metadata_ = config.get("metadata", {})
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise ModelFileError(
                f"{path}: the {cls.__name__} model is inconsistent ({err})"
            ) from err
        return sampler

    def _params_config(self) -> dict:
        """The constructor's parameters as a model file keeps them."""
        return {
            **{
                key: value
                for key, value in self.get_params().items()
                if key not in ("random_state", "sampling_strategy", "image_shape")
            },
            "random_state": saved_random_state(self.random_state),
        }

    def _restore_data(self, config: dict) -> None:
        """The inverse of :meth:`_data_config`."""
        self.image_shape_ = (
            tuple(config["image_shape"]) if config["image_shape"] else None
        )
        self.train_shape_ = padded_shape(self.image_shape_)
        layout = config["input_layout"]
        self._input_layout = self.input_layout_ = tuple(layout) if layout else None
        self.dtype_ = config["dtype"]
        self.classes_ = np.asarray(config["classes"], dtype=config["classes_dtype"])
        self.data_range_ = tuple(config["data_range"])
        self.n_features_in_ = int(config["n_features_in"])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags
