"""The translating over-sampler: rare-class images made from common-class images."""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from ._images import (
    PAD_MULTIPLE,
    ImageSampler,
    balanced_rows,
    hidden_dims,
)

__all__ = ["GANTranslator"]

_MODEL_KIND = "ganaug.GANTranslator"
# n_epochs="auto": train until the networks have seen this many pixels (about
# 12,000 images at 64x64, 63,000 at 28x28), in at most _AUTO_MAX_EPOCHS epochs.
# A translation step costs about three generator passes.  The budget keeps a
# 64-px fit near a quarter of an hour on one CPU thread (fit times in
# benchmarks/RESULTS.md, issue 21); it was not tuned for quality.
_AUTO_BUDGET_PIXELS = 12_000 * 64 * 64
_AUTO_MAX_EPOCHS = 200
# Images translated per forward pass.
_CHUNK = 64
_TRAINING_PARAMS = frozenset(
    {
        "image_shape",
        "loss",
        "diffaugment",
        "class_weight",
        "cycle_weight",
        "identity_weight",
        "balance_classes",
        "ema",
        "n_epochs",
        "batch_size",
        "learning_rate",
        "base_channels",
        "n_blocks",
        "random_state",
    }
)


class GANTranslator(ImageSampler):
    """Over-sample image classes by translating other classes' images (StarGAN).

    With 60 images of a rare class, a generator that starts from noise has
    little to learn from, while the common classes hold thousands of images of
    the same anatomy, framing and scanner.  ``fit_resample(X, y)`` trains one
    generator ``G(x, class)`` (:mod:`gancore.translation`: adversarial,
    domain-classification, cycle and identity losses; Choi et al. 2018, Zhu et
    al. 2017).  By default each class that ``sampling_strategy`` asks for is
    filled with copies of its real images, as ``RandomOverSampler`` does, and
    every class gets as many images of the other classes translated into it as
    it has real images (``augment_ratio``, ``augment_basis``; copies make up the
    rest of its share; M2m, Kim et al. 2020), their sources drawn at
    random from all other classes' images; ``rebalance="synthetic"`` translates
    in place of the copies.  With two classes this is a CycleGAN with one
    shared, conditioned generator.  Output: the originals, then the copies,
    then the translated images, in the input's layout, dtype and range.

    A translated image is derived from one real patient's image: it stays
    closer to that patient than an image born from noise does
    (``source_similarity`` in :func:`ganaug.privacy.memorization_report`), and
    the model file holds no image.

    Parameters
    ----------
    image_shape : tuple of int (C, H, W), optional
        As in :class:`GANAugmenter`; flattened data that is not an image is
        translated by MLPs.
    sampling_strategy : float, str, dict or callable, default="auto"
        imbalanced-learn's meaning: which classes get how many images.
    augment_ratio : float, default=1.0
        Every class grows by ``round(augment_ratio * n_after_balancing)`` more
        images, classes that ``sampling_strategy`` leaves alone included (0
        keeps those as they are, imbalanced-learn's usual contract); how many
        of them are translated is ``augment_basis``'s choice.
    augment_basis : {"real", "balanced"}, default="real"
        With ``rebalance="duplicate"``: a class gets ``augment_ratio`` times its
        real images in translated images ("real") or times its count after
        balancing ("balanced"), and copies of its real images for the rest of
        its share, as in :class:`GANAugmenter`.  "real" gave the benchmark's
        classifier more on two of the three dev sets and on their mean
        (``benchmarks/RESULTS.md``, issue 21).
    rebalance : {"duplicate", "synthetic"}, default="duplicate"
        "duplicate": the images ``sampling_strategy`` asks for are copies of
        real images (as ``RandomOverSampler`` makes), and the translated images
        (``augment_ratio``'s) come on top, so the real rare-class images stay
        at least half of their class; "synthetic": ``sampling_strategy``'s images are
        translated.  Why this default: on the three dev sets, translated images
        in place of the copies cost the classifier balanced accuracy
        (benchmarks/RESULTS.md, issue 21).
    loss : {"hinge", "bce"}, default="hinge"
        Adversarial loss on the discriminator's patch scores.
    diffaugment : str, "auto" or None, default="auto"
        DiffAugment policy for the discriminator's inputs ("auto": the full
        policy for images below 5,000, none otherwise).
    class_weight, cycle_weight, identity_weight : float, default=1, 10, 1
        Weights of the domain-classification, cycle-reconstruction and identity
        terms (:mod:`gancore.translation`).  More cycle and identity: outputs
        closer to their sources.
    balance_classes : bool, default=True
        Train on a class-balanced set (each class's images repeated to the
        largest class's count), so that the discriminator's class head and its
        realism score do not learn that the rare class is rare.
    ema : bool or float, default=True
        Translate with an exponential moving average of the generator's
        weights (True: decay ``1 - 10 / steps`` clipped to [0.9, 0.999]).
    n_epochs : int or "auto", default="auto"
        Passes over the (balanced) training set; "auto" trains until the
        networks have seen a fixed number of pixels (about 12,000 images at
        64x64, at most 200 epochs).
    batch_size : int, default=16
    learning_rate : float, default=2e-4
        Adam's (betas 0.5, 0.999), both networks.
    base_channels : int, default=16
        Width of the networks at full resolution (wider: slower to train).
    n_blocks : int, default=3
        Residual blocks of the generator at a quarter of the resolution.
    filter_synthetic : bool, default=False
        Keep only translations that a small classifier trained on the real
        images (:class:`ganaug.reference.RealImageClassifier`) assigns to their
        target class (M2m's acceptance test, Kim et al. 2020), translating up
        to 8 sources per kept image (a class that falls short gets the
        rejected translations the classifier found most like it).  The
        classifier is saved with the model, so :meth:`sample` filters too.
    device : str, default="auto"
    random_state : int, RandomState instance or None, default=None
        The same int gives identical output on the CPU.
    verbose : bool, default=False
        Progress bars while training and translating.
    checkpoint_path : str, optional
        A checkpoint after every epoch, resumed from if it exists (as in
        :class:`GANAugmenter`).

    Attributes
    ----------
    classes_ : ndarray
    sampling_strategy_ : dict
    n_synthetic_ : dict
        Translated images per class made by ``fit_resample``.
    n_duplicated_ : dict
        Copies of real images per class (``rebalance="duplicate"``).
    source_indices_ : ndarray of int
        For each translated image of ``fit_resample``'s output, in order, the
        row of ``X`` it was translated from.
    generator_ : torch.nn.Module
        The trained translation generator (EMA weights with ``ema``).
    history_ : list of dict
        Per-epoch means of ``d_loss``, ``g_loss``, ``d_class``, ``g_class``,
        ``cycle`` and ``identity``.
    judge_ : ganaug.reference.RealImageClassifier
        With ``filter_synthetic``: the classifier that screens translations.
    filter_acceptance_ : dict or None
        With ``filter_synthetic``: the fraction of translations accepted per
        class in ``fit_resample``; None without it.
    image_shape_, data_range_, n_features_in_, n_epochs_
        As in :class:`GANAugmenter`.

    Examples
    --------
    >>> import numpy as np
    >>> from ganaug import GANTranslator
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(40, 16, 16), dtype=np.uint8)
    >>> y = np.array([0] * 30 + [1] * 10)
    >>> sampler = GANTranslator(n_epochs=1, base_channels=4, random_state=0)
    >>> X_res, y_res = sampler.fit_resample(X, y)
    >>> X_res.shape, np.bincount(y_res).tolist()  # 40 real, 40 copies, 40 translated
    ((120, 16, 16), [60, 60])
    >>> np.bincount(y[sampler.source_indices_]).tolist()  # each from the other class
    [10, 30]
    >>> sampler.translate(X[:2], to=1).shape
    (2, 16, 16)
    """

    _parameter_constraints: dict = {
        **ImageSampler._parameter_constraints,
        "loss": [StrOptions({"hinge", "bce"})],
        "class_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "cycle_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "identity_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "n_blocks": [Interval(numbers.Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int] | None = None,
        sampling_strategy="auto",
        augment_ratio: float = 1.0,
        augment_basis: str = "real",
        rebalance: str = "duplicate",
        loss: str = "hinge",
        diffaugment: str | None = "auto",
        class_weight: float = 1.0,
        cycle_weight: float = 10.0,
        identity_weight: float = 1.0,
        balance_classes: bool = True,
        ema: bool | float = True,
        n_epochs: int | str = "auto",
        batch_size: int = 16,
        learning_rate: float = 2e-4,
        base_channels: int = 16,
        n_blocks: int = 3,
        filter_synthetic: bool = False,
        device: str = "auto",
        random_state=None,
        verbose: bool = False,
        checkpoint_path: str | None = None,
    ):
        super().__init__(sampling_strategy=sampling_strategy)
        self.image_shape = image_shape
        self.augment_ratio = augment_ratio
        self.augment_basis = augment_basis
        self.rebalance = rebalance
        self.loss = loss
        self.diffaugment = diffaugment
        self.class_weight = class_weight
        self.cycle_weight = cycle_weight
        self.identity_weight = identity_weight
        self.balance_classes = balance_classes
        self.ema = ema
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.base_channels = base_channels
        self.n_blocks = n_blocks
        self.filter_synthetic = filter_synthetic
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_path = checkpoint_path

    # --------------------------------------------------------------- networks

    def _build_networks(self):
        from gancore import (
            MLPTranslationDiscriminator,
            MLPTranslationGenerator,
            TranslationDiscriminator,
            TranslationGenerator,
        )

        n_classes = len(self.classes_)
        if self.image_shape_ is None:
            hidden = hidden_dims(self.n_features_in_)
            return (
                MLPTranslationGenerator(self.n_features_in_, n_classes, hidden),
                MLPTranslationDiscriminator(self.n_features_in_, n_classes, hidden),
            )
        return (
            TranslationGenerator(
                self.train_shape_,
                n_classes,
                base_channels=self.base_channels,
                n_blocks=self.n_blocks,
            ),
            TranslationDiscriminator(
                self.train_shape_, n_classes, base_channels=self.base_channels
            ),
        )

    def _tensor(self, X_unit: np.ndarray) -> torch.Tensor:
        """Flat [-1, 1] rows as the networks' input (padded images)."""
        from gancore import pad_to_multiple

        tensor = torch.from_numpy(np.ascontiguousarray(X_unit, dtype=np.float32))
        if self.image_shape_ is None:
            return tensor
        return pad_to_multiple(tensor.view(-1, *self.image_shape_), PAD_MULTIPLE)

    def _augment(self, n_rows: int):
        from gancore import DiffAugment

        policy = self._augment_policy(n_rows)
        if not policy or self.image_shape_ is None:
            return None
        return DiffAugment(policy)

    def _train(self, X_unit: np.ndarray, encoded: np.ndarray, rngs, device):
        from gancore import GANLoss, train_gan, translation_steps

        # Weight initialisation draws from torch's global RNG: a fork seeded from
        # our stream (the caller's state is restored), as in GANAugmenter.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rngs.numpy.integers(0, 2**62)))
            generator, discriminator = self._build_networks()
        rows = (
            balanced_rows(encoded, rngs.numpy)
            if self.balance_classes
            else np.arange(len(encoded))
        )
        data = [
            self._tensor(X_unit[rows]),
            torch.from_numpy(encoded[rows].astype(np.int64)),
        ]
        self.n_epochs_ = self._budget_epochs(
            len(rows), _AUTO_BUDGET_PIXELS, _AUTO_MAX_EPOCHS
        )
        batch_size = min(self.batch_size, len(rows))
        steps = self.n_epochs_ * max(1, len(rows) // batch_size)
        ema = self._ema(generator, steps)
        d_loss_fn, g_loss_fn = translation_steps(
            generator,
            discriminator,
            GANLoss(self.loss),
            n_classes=len(self.classes_),
            rngs=rngs,
            augment=self._augment(len(encoded)),
            class_weight=float(self.class_weight),
            cycle_weight=float(self.cycle_weight),
            identity_weight=float(self.identity_weight),
        )
        betas = (0.5, 0.999)
        history = train_gan(
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
            data=data,
            n_epochs=self.n_epochs_,
            batch_size=batch_size,
            ema=ema,
            device=device,
            rngs=rngs,
            verbose=bool(self.verbose),
            desc="ganaug translator",
            **self._checkpointing(data, _MODEL_KIND, "", _TRAINING_PARAMS),
        )
        final = ema.module if ema is not None else generator
        return final.to("cpu").eval(), history

    # ------------------------------------------------------------- resampling

    def _fit_resample(self, X, y):
        from gancore import make_rngs, resolve_device

        encoded = self._learn_data(X, y)
        n_new = self._plan_counts(y)
        device = resolve_device(self.device)
        rngs = make_rngs(self.random_state, device)
        self.generator_, self.history_ = self._train(
            self._to_unit(X), encoded, rngs, device
        )
        labels = np.concatenate(
            [np.full(count, label, dtype=y.dtype) for label, count in n_new.items()]
            or [np.empty(0, dtype=y.dtype)]
        ).astype(y.dtype)
        self._sources = (X, y)  # for sample(); never saved
        if self.filter_synthetic:
            self.judge_ = self._train_judge(self._to_unit(X), encoded, rngs)
        X_new, self.source_indices_, self.filter_acceptance_ = self._translated(
            X, y, labels, rngs.numpy
        )
        self._keep_stream(rngs.torch_cpu, None)  # sample() continues this stream
        duplicated = self._duplicate_rows(y, rngs.numpy)
        X_resampled = np.concatenate([X, X[duplicated], X_new.astype(X.dtype)])
        y_resampled = np.concatenate([y, y[duplicated], labels])
        return self._layout(X_resampled), y_resampled

    @staticmethod
    def _pick_sources(
        n_sources: int, source_labels: np.ndarray | None, labels: np.ndarray, rng
    ) -> np.ndarray:
        """For each wanted label, one of ``n_sources`` rows drawn uniformly from
        the rows of other classes (from all rows when ``source_labels`` is None,
        or when no row of another class exists)."""
        picked = np.empty(len(labels), dtype=np.intp)
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            pool = (
                np.flatnonzero(source_labels != label)
                if source_labels is not None
                else np.arange(n_sources)
            )
            if pool.size == 0:
                pool = np.arange(n_sources)
            picked[rows] = rng.choice(pool, len(rows), replace=True)
        return picked

    def _translated(self, sources: np.ndarray, source_labels, labels, rng):
        """Images for ``labels``, each translated from a random row of ``sources``
        of another class (:meth:`_pick_sources`), screened by the judge when
        there is one; the rows they came from; the acceptance per class (None
        without a judge)."""
        if getattr(self, "judge_", None) is None:
            rows = self._pick_sources(len(sources), source_labels, labels, rng)
            return self._translate_flat(sources[rows], labels), rows, None

        def draw(label, size):
            wanted = np.full(size, label, dtype=labels.dtype)
            rows = self._pick_sources(len(sources), source_labels, wanted, rng)
            return self._translate_flat(sources[rows], wanted), rows

        return self._screened(labels, draw)

    # ---------------------------------------------------------- translating

    @torch.no_grad()
    def _translate_flat(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Flat images in the input's dtype and range, translated into ``labels``."""
        from tqdm.auto import tqdm

        from gancore import crop_to

        out = np.empty((len(X), self.n_features_in_), dtype=np.dtype(self.dtype_))
        codes = np.searchsorted(self.classes_, labels).astype(np.int64)
        chunks = range(0, len(X), _CHUNK)
        for start in tqdm(
            chunks, desc="translating", unit="batch", disable=not self.verbose
        ):
            x = self._tensor(self._to_unit(X[start : start + _CHUNK]))
            fake = self.generator_(x, torch.from_numpy(codes[start : start + _CHUNK]))
            if self.image_shape_ is not None:
                fake = crop_to(fake, self.image_shape_[1:])
            out[start : start + _CHUNK] = self._from_unit(
                fake.reshape(len(x), -1).numpy()
            )
        return out

    def _flatten(self, X) -> np.ndarray:
        """Images given to :meth:`translate` or :meth:`sample`, flattened and
        checked against the fitted shape."""
        X = check_array(X, allow_nd=True, dtype="numeric", input_name="X")
        flat = X.reshape(len(X), -1)
        if flat.shape[1] != self.n_features_in_:
            shape = self.image_shape_ or (self.n_features_in_,)
            raise ValueError(
                f"X has images of {X.shape[1:]} ({flat.shape[1]} values); the "
                f"translator was fitted on {tuple(shape)} ({self.n_features_in_})"
            )
        return flat

    def translate(self, X, to) -> np.ndarray:
        """Translate images into a class.

        Parameters
        ----------
        X : array of shape (n, H, W), (n, C, H, W) or (n, C*H*W)
            Images of the fitted shape, in the training data's intensity range.
        to : label or array-like of shape (n,)
            The class of every output, or one per image.

        Returns
        -------
        ndarray
            The translated images, in ``X``'s layout and the training data's
            dtype and range.
        """
        check_is_fitted(self, "generator_")
        flat = self._flatten(X)
        labels = (
            np.full(len(flat), to, dtype=self.classes_.dtype)
            if np.ndim(to) == 0
            else np.asarray(to)
        )
        if len(labels) != len(flat):
            raise ValueError(f"to has {len(labels)} labels for {len(flat)} images")
        self._check_known(labels)
        return self._translate_flat(flat, labels).reshape(np.shape(X))

    def sample(
        self,
        n_samples: int,
        y=None,
        *,
        source=None,
        source_labels=None,
        random_state=None,
        return_sources: bool = False,
    ):
        """Translate randomly chosen images into the classes asked for.

        Parameters
        ----------
        n_samples : int
        y : label, array-like of shape (n_samples,) or None, default=None
            One class for all, one per image, or None for classes drawn
            uniformly.
        source : array of images, optional
            The images to translate from.  Default: the training images of the
            last ``fit_resample``, kept in memory (so a pickle of the fitted
            translator holds them, as one of a KNN classifier holds its data;
            :meth:`save` never writes them, and a loaded translator needs
            ``source``).
        source_labels : array-like, optional
            Their classes: each output's source is then drawn from the other
            classes' images.  Default: the training labels with the training
            images; with ``source`` and no labels, from all of ``source``.
        random_state : int or None, default=None
            Seed for this call; None continues the sampler's own stream (as in
            :meth:`GANAugmenter.sample`).
        return_sources : bool, default=False
            Also return the row of ``source`` each image was made from.

        Returns
        -------
        X : ndarray
            Images in the training data's layout, dtype and range.
        y : ndarray of shape (n_samples,)
        sources : ndarray of int, with ``return_sources``
        """
        check_is_fitted(self, "generator_")
        if source is None:
            if not hasattr(self, "_sources"):
                raise ValueError(
                    "a loaded GANTranslator holds no image to translate from (the "
                    "model file keeps none): pass source=images"
                )
            source, stored_labels = self._sources
            source_labels = stored_labels if source_labels is None else source_labels
        flat = self._flatten(source)
        if source_labels is not None:
            source_labels = np.asarray(source_labels)
            if len(source_labels) != len(flat):
                raise ValueError(
                    f"source_labels has {len(source_labels)} labels for "
                    f"{len(flat)} images"
                )
        rng = self._sample_rng(random_state)
        labels = self._wanted_labels(n_samples, y, rng)
        numpy_rng = np.random.default_rng(
            int(torch.randint(0, 2**62, (1,), generator=rng))
        )
        X, rows, _ = self._translated(flat, source_labels, labels, numpy_rng)
        X = self._layout(X)
        self._keep_stream(rng, random_state)
        return (X, labels, rows) if return_sources else (X, labels)

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> None:
        """Save the fitted generator to a safe gankit model file (safetensors
        weights plus JSON; no image, no pickle).  Class labels that look like a
        patient's name, ID or date are refused, as in :meth:`GANAugmenter.save`.
        """
        from gancore import module_tensors

        check_is_fitted(self, "generator_")
        tensors = module_tensors("generator", self.generator_)
        self._write_model(
            path, _MODEL_KIND, tensors, {"history": self.history_}, metadata
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> GANTranslator:
        """Load a translator saved with :meth:`save`, ready for :meth:`translate`.

        Raises
        ------
        gancore.ModelFileError
            When the file is not a readable GANTranslator model.
        """
        return cls._read_model(path, _MODEL_KIND)

    def _restore_networks(self, config: dict, tensors: dict) -> None:
        from gancore import module_state

        generator, _ = self._build_networks()
        generator.load_state_dict(module_state("generator", tensors))
        self.generator_ = generator.eval()
