"""The GAN over-sampler: an imbalanced-learn sampler that adds synthetic images."""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._images import (
    PAD_MULTIPLE,
    ImageSampler,
    as_python,
    balanced_rows,
    hidden_dims,
)

__all__ = ["GANAugmenter"]

_MODEL_KIND = "ganaug.GANAugmenter"
# n_epochs="auto": train until the discriminator has seen this many pixels (about
# 40,000 images at 64x64, 200,000 at 28x28), in at most _AUTO_MAX_EPOCHS epochs.
# Why this budget: benchmarks/RESULTS.md (issue 20).
_AUTO_BUDGET_PIXELS = 40_000 * 64 * 64
_AUTO_MAX_EPOCHS = 400
# The parameters that change what training does (a checkpoint pins these); the
# others only change what is generated from the trained networks, or how.
_TRAINING_PARAMS = frozenset(
    {
        "image_shape",
        "architecture",
        "loss",
        "r1_gamma",
        "conditional",
        "balance_classes",
        "diffaugment",
        "ema",
        "n_epochs",
        "batch_size",
        "latent_dim",
        "learning_rate",
        "base_channels",
        "random_state",
    }
)


_CONV_ARCHITECTURES = frozenset({"dcgan", "resnet"})


class GANAugmenter(ImageSampler):
    """Over-sample image classes with a class-conditional GAN.

    ``fit_resample(X, y)`` trains a GAN on the images and returns the originals,
    then copies of real images, then synthetic images, with their labels. By
    default every class ends with twice the largest class's count: its real
    images, as many synthetic images again, and copies of its real images (as
    ``RandomOverSampler`` makes) for the rest (``augment_ratio``,
    ``augment_basis``; ``rebalance="synthetic"`` makes every added image
    synthetic). Images keep the input's
    layout, dtype and intensity range: scaling to the GAN's [-1, 1] and back is
    internal. Being an imbalanced-learn sampler it is a step of
    ``imblearn.pipeline.make_pipeline(GANAugmenter(...), classifier)``, where it
    only ever sees the training part of each split.

    Parameters
    ----------
    image_shape : tuple of int (C, H, W), optional
        Shape of one image when ``X`` is flattened to ``(n, C*H*W)``. Inferred
        from ``X`` of shape ``(n, H, W)`` or ``(n, C, H, W)``; for flattened
        ``X`` without it a square one-channel image is assumed when the number
        of features is a square, otherwise ``architecture="mlp"`` is needed.
    sampling_strategy : float, str, dict or callable, default="auto"
        Which classes to over-sample and to how many, with imbalanced-learn's
        meaning ("auto", "minority", "not minority", "not majority", "all", a
        float for binary problems, a dict ``{class: n_after}`` or a callable).
    augment_ratio : float, default=1.0
        Augmentation beyond re-balancing: every class grows by
        ``round(augment_ratio * n_after_balancing)`` more images, so the
        classes stay balanced; how many of them are synthetic is
        ``augment_basis``'s choice. 0 with ``rebalance="synthetic"`` is the
        classic GAN over-sampler: synthetic images only where
        ``sampling_strategy`` asks for them.
    augment_basis : {"real", "balanced"}, default="real"
        With ``rebalance="duplicate"``: a class gets ``augment_ratio`` times
        its *real* images in synthetic images ("real"), or ``augment_ratio``
        times its count after balancing ("balanced"), and copies of its real
        images for the rest of its share. "real" keeps synthetic images few
        where the GAN had few images to learn the class from: a class of 15
        images gets 15 synthetic ones, not as many as the largest class. On
        the three imaging dev sets "real" gave the classifier more than
        "balanced" on every set (``benchmarks/RESULTS.md``, issue 20). With
        ``rebalance="synthetic"`` every added image is synthetic either way.
    rebalance : {"duplicate", "synthetic"}, default="duplicate"
        How the images that ``sampling_strategy`` asks for are made.
        "duplicate" draws random copies of the class's real images, as
        ``RandomOverSampler`` does, so that the synthetic images
        (``augment_ratio``, which should then be > 0) are an addition to a
        re-balanced set instead of a replacement for the real minority images:
        with few real minority images the classifier then still sees them as
        at least half of their class. "synthetic" generates them, in place of the
        copies. On the three imaging dev sets, synthetic images in place of
        the copies cost a classifier far more balanced accuracy than they
        gave (``benchmarks/RESULTS.md``, issue 20).
    architecture : {"dcgan", "resnet", "mlp"}, default="dcgan"
        Convolutional DCGAN nets (images), the residual nets of
        :mod:`gancore.resnets` (SNGAN/BigGAN: class-conditional batch norm in the
        generator, projection and spectral norm in the discriminator; several
        times slower per image on a CPU) or MLPs (any flattened data).
    loss : {"hinge", "wgan-gp", "bce"}, default="hinge"
        Adversarial loss (see :mod:`gancore.losses`).
    conditional : bool, default=True
        One class-conditional GAN (projection discriminator) for all classes;
        ``False`` trains one unconditional GAN per class that needs samples.
    balance_classes : bool, default=False
        Train the conditional GAN on a class-balanced set: each class's images
        repeated (as ``RandomOverSampler`` does) to the largest class's count,
        so that the generator learns the rare classes as often as the common
        ones. An epoch is then a pass over the balanced set.
    diffaugment : str, "auto" or None, default="auto"
        DiffAugment policy applied to real and fake images before the
        discriminator (``"color,translation,cutout"`` or a subset). "auto"
        uses the full policy for image data below 5000 images and none
        otherwise; "ada" uses adaptive augmentation instead
        (:class:`gancore.AdaptiveAugment`, its ramp scaled to the run); None or
        "" disables it.
    r1_gamma : float, default=0.0
        Weight of the R1 penalty on real images (:func:`gancore.r1_penalty`,
        lazily every 16 discriminator steps); 0 turns it off.
    ema : bool or float, default=True
        Sample from an exponential moving average of the generator's weights.
        True picks the decay from the number of generator steps
        (``1 - 10 / steps``, clipped to [0.9, 0.999]); a float is the decay.
    n_epochs : int or "auto", default="auto"
        Passes over the training images. "auto" trains until the discriminator
        has seen a fixed number of pixels, about 40,000 images at 64x64 (10,000
        at 128x128, 200,000 at 28x28; at most 400 epochs), so that training
        time depends on the image size, not on the number of images.
    batch_size : int, default=32
    latent_dim : int, default=64
    learning_rate : float, default=2e-4
        Adam learning rate of both networks (betas 0.5, 0.999).
    base_channels : int, default=32
        Width of the convolutional nets (channels of the last generator map).
        64 is slower to train and gave the larger classifier gain on our
        PneumoniaMNIST benchmark; figures in ``benchmarks/RESULTS.md`` (issue 4).
    filter_synthetic : bool, default=False
        Keep only the synthetic images that a small classifier trained on the
        real images (:class:`ganaug.reference.RealImageClassifier`) assigns to
        their intended class, drawing up to 8 candidates per kept image (a
        class that falls short gets the rejected candidates that class found
        most like it). The classifier is kept (``judge_``) and saved with the
        model, so :meth:`sample` filters too.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds every random draw through local generators; the same int gives
        identical output on the CPU.
    verbose : bool, default=False
        Show a progress bar while training.
    checkpoint_path : str, optional
        Write a training checkpoint (weights, optimisers, EMA, RNG states) here
        after every epoch, atomically (one GAN per class: ``PATH.class<i>``).  If it
        exists when fitting starts, training resumes from it, so a killed fit
        continues where it stopped; on the CPU the result equals an uninterrupted
        fit.  A checkpoint of other data or another configuration is refused.

    Attributes
    ----------
    sampling_strategy_ : dict
        Number of synthetic samples per class (before ``augment_ratio``).
    classes_ : ndarray
        Class labels seen during fit.
    n_synthetic_ : dict
        Number of synthetic samples generated per class by ``fit_resample``.
    n_duplicated_ : dict
        Number of copies of real samples added per class by ``fit_resample``
        (non-zero only with ``rebalance="duplicate"``).
    image_shape_ : tuple of int
        (C, H, W) of one image.
    generator_ : torch.nn.Module or dict
        The trained generator (EMA weights when ``ema``); one per class when
        ``conditional=False``.
    history_ : list of dict or dict
        Per-epoch mean losses (``epoch``, ``d_loss``, ``g_loss``); a dict of
        such lists, by class, when ``conditional=False``.
    data_range_ : tuple of float
        (min, max) of the training pixel values; generated values lie inside.
    n_features_in_ : int
        Number of values per image (C*H*W).
    n_epochs_ : int
        Epochs trained (``n_epochs``, resolved when "auto").
    judge_ : ganaug.reference.RealImageClassifier
        With ``filter_synthetic``: the classifier of the real images (scaled to
        [-1, 1] by ``data_range_``) that screens synthetic ones.
    filter_acceptance_ : dict or None
        With ``filter_synthetic``: the fraction of candidates accepted per class
        in ``fit_resample``; None without it.

    See Also
    --------
    imblearn.over_sampling.RandomOverSampler : duplicates minority samples.

    Examples
    --------
    >>> import numpy as np
    >>> from ganaug import GANAugmenter
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(40, 16, 16), dtype=np.uint8)
    >>> y = np.array([0] * 30 + [1] * 10)
    >>> sampler = GANAugmenter(n_epochs=2, base_channels=8, random_state=0)
    >>> X_res, y_res = sampler.fit_resample(X, y)
    >>> X_res.shape, X_res.dtype, np.bincount(y_res).tolist()
    ((120, 16, 16), dtype('uint8'), [60, 60])
    >>> X_new, y_new = sampler.sample(4, y=1)
    >>> X_new.shape, y_new.tolist()
    ((4, 16, 16), [1, 1, 1, 1])
    """

    _parameter_constraints: dict = {
        **ImageSampler._parameter_constraints,
        "architecture": [StrOptions({"dcgan", "resnet", "mlp"})],
        "loss": [StrOptions({"hinge", "wgan-gp", "bce"})],
        "conditional": ["boolean"],
        "r1_gamma": [Interval(numbers.Real, 0, None, closed="left")],
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int] | None = None,
        sampling_strategy="auto",
        augment_ratio: float = 1.0,
        augment_basis: str = "real",
        rebalance: str = "duplicate",
        architecture: str = "dcgan",
        loss: str = "hinge",
        conditional: bool = True,
        balance_classes: bool = False,
        diffaugment: str | None = "auto",
        r1_gamma: float = 0.0,
        ema: bool | float = True,
        n_epochs: int | str = "auto",
        batch_size: int = 32,
        latent_dim: int = 64,
        learning_rate: float = 2e-4,
        base_channels: int = 32,
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
        self.architecture = architecture
        self.loss = loss
        self.conditional = conditional
        self.balance_classes = balance_classes
        self.diffaugment = diffaugment
        self.r1_gamma = r1_gamma
        self.ema = ema
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.learning_rate = learning_rate
        self.base_channels = base_channels
        self.filter_synthetic = filter_synthetic
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_path = checkpoint_path

    def _images_required(self) -> bool:
        return self.architecture in _CONV_ARCHITECTURES

    # --------------------------------------------------------------- networks

    def _build_networks(self, n_classes: int | None):
        from gancore import (
            DCGANDiscriminator,
            DCGANGenerator,
            MLPDiscriminator,
            MLPGenerator,
            ResNetDiscriminator,
            ResNetGenerator,
        )

        if self.architecture == "resnet":
            generator = ResNetGenerator(
                self.latent_dim,
                self.train_shape_,
                n_classes=n_classes,
                base_channels=self.base_channels,
            )
            discriminator = ResNetDiscriminator(
                self.train_shape_, n_classes=n_classes, base_channels=self.base_channels
            )
        elif self.architecture == "dcgan":
            generator = DCGANGenerator(
                self.latent_dim,
                self.train_shape_,
                base_channels=self.base_channels,
                n_classes=n_classes,
            )
            discriminator = DCGANDiscriminator(
                self.train_shape_,
                base_channels=self.base_channels,
                n_classes=n_classes,
                spectral_norm=True,
                normalization=None,
            )
        else:
            hidden = hidden_dims(self.n_features_in_)
            generator = MLPGenerator(
                self.latent_dim,
                self.n_features_in_,
                hidden,
                n_classes=n_classes,
                batch_norm=True,
                out_activation="tanh",
            )
            discriminator = MLPDiscriminator(
                self.n_features_in_, hidden, n_classes=n_classes, spectral_norm=True
            )
        return generator, discriminator

    def _to_train_tensor(self, X_unit: np.ndarray) -> torch.Tensor:
        from gancore import pad_to_multiple

        tensor = torch.from_numpy(np.ascontiguousarray(X_unit))
        if self.architecture in _CONV_ARCHITECTURES:
            tensor = pad_to_multiple(tensor.view(-1, *self.image_shape_), PAD_MULTIPLE)
        return tensor

    def _augment_fn(self, n_rows: int, n_images_seen: int):
        """The augmentation of the discriminator's inputs (None for none)."""
        from gancore import AdaptiveAugment, DiffAugment

        policy = self._augment_policy(n_rows)
        if not policy:
            return None
        if self.image_shape_ is None:
            raise ValueError(
                "diffaugment needs images; pass image_shape or diffaugment=None"
            )
        if policy == "ada":
            # ADA's ramp (500k images in the paper, a few percent of its runs)
            # scaled to this run: p can climb from 0 to 1 in a quarter of it.
            augment = AdaptiveAugment(ramp_images=max(1000, n_images_seen // 4))
        else:
            augment = DiffAugment(policy)
        if self.architecture in _CONV_ARCHITECTURES:
            return augment
        shape = self.image_shape_

        def flat_augment(x: torch.Tensor, generator=None) -> torch.Tensor:
            return augment(x.view(-1, *shape), generator).flatten(1)

        return flat_augment

    def _train_one(self, X_unit, labels, n_classes, rngs, device, desc, part=""):
        """Train one GAN; return its generator (EMA weights) and loss history."""
        from gancore import GANLoss, adversarial_steps, train_gan

        # Weight initialisation draws from torch's global RNG. Fork it (the
        # caller's global state is restored on exit) and seed the fork from our
        # local stream, so that the same random_state builds the same networks.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rngs.numpy.integers(0, 2**62)))
            generator, discriminator = self._build_networks(n_classes)
        data = [self._to_train_tensor(X_unit)]
        if n_classes is not None:
            data.append(torch.from_numpy(labels.astype(np.int64)))
        batch_size = min(self.batch_size, len(X_unit))
        steps = self.n_epochs_ * max(1, len(X_unit) // batch_size)
        ema = self._ema(generator, steps)
        augment = self._augment_fn(len(X_unit), self.n_epochs_ * len(X_unit))
        betas = (0.5, 0.999)
        g_optimizer = torch.optim.Adam(
            generator.parameters(), lr=self.learning_rate, betas=betas
        )
        d_optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=self.learning_rate, betas=betas
        )
        d_loss_fn, g_loss_fn = adversarial_steps(
            generator,
            discriminator,
            GANLoss(self.loss),
            latent_dim=self.latent_dim,
            rngs=rngs,
            diffaugment=augment,
            conditional=n_classes is not None,
            r1_gamma=float(self.r1_gamma),
        )
        history = train_gan(
            generator=generator,
            discriminator=discriminator,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            d_loss_fn=d_loss_fn,
            g_loss_fn=g_loss_fn,
            data=data,
            n_epochs=self.n_epochs_,
            batch_size=batch_size,
            n_critic=5 if self.loss == "wgan-gp" else 1,
            ema=ema,
            device=device,
            rngs=rngs,
            verbose=bool(self.verbose),
            desc=desc,
            **self._checkpointing(data, _MODEL_KIND, part, _TRAINING_PARAMS),
        )
        final = ema.module if ema is not None else generator
        return final.to("cpu").eval(), history

    # ------------------------------------------------------------- resampling

    def _fit_resample(self, X, y):
        from gancore import make_rngs, resolve_device

        n_rows = len(X)
        encoded = self._learn_data(X, y)
        n_new = self._plan_counts(y)

        device = resolve_device(self.device)
        rngs = make_rngs(self.random_state, device)
        X_unit = self._to_unit(X)
        self.n_epochs_ = self._budget_epochs(
            n_rows, _AUTO_BUDGET_PIXELS, _AUTO_MAX_EPOCHS
        )
        if self.conditional:
            rows = np.arange(n_rows)
            if self.balance_classes:
                rows = balanced_rows(encoded, rngs.numpy)
                self.n_epochs_ = self._budget_epochs(
                    len(rows), _AUTO_BUDGET_PIXELS, _AUTO_MAX_EPOCHS
                )
            generator, history = self._train_one(
                X_unit[rows],
                encoded[rows],
                len(self.classes_),
                rngs,
                device,
                "ganaug training",
            )
            self.generator_, self.history_ = generator, history
        else:
            self.generator_, self.history_ = {}, {}
            for index, label in enumerate(self.classes_):
                if n_new.get(as_python(label), 0) == 0:
                    continue
                rows = encoded == index
                if rows.sum() < 2:
                    raise ValueError(
                        f"class {label!r} has {int(rows.sum())} image; one GAN per "
                        "class needs at least 2 (use conditional=True)"
                    )
                generator, history = self._train_one(
                    X_unit[rows],
                    None,
                    None,
                    rngs,
                    device,
                    f"ganaug class {label}",
                    part=f".class{index}",
                )
                self.generator_[index] = generator
                self.history_[as_python(label)] = history
        labels = np.concatenate(
            [np.full(count, label, dtype=y.dtype) for label, count in n_new.items()]
            or [np.empty(0, dtype=y.dtype)]
        )
        labels = labels.astype(y.dtype)
        if self.filter_synthetic:
            self.judge_ = self._train_judge(X_unit, encoded, rngs)
        X_synthetic, self.filter_acceptance_ = self._synthesise(labels, rngs.torch_cpu)
        self._keep_stream(rngs.torch_cpu, None)  # sample() continues this stream
        duplicated = self._duplicate_rows(y, rngs.numpy)
        X_resampled = np.concatenate(
            [X, X[duplicated], X_synthetic.astype(X.dtype)], axis=0
        )
        y_resampled = np.concatenate([y, y[duplicated], labels])
        return self._layout(X_resampled), y_resampled

    # ---------------------------------------------------------------- filtering

    def _synthesise(self, labels: np.ndarray, rng: torch.Generator):
        """Synthetic samples for ``labels``, screened by the judge when there is
        one (:meth:`ImageSampler._screened`); and the acceptance per class (None
        without a judge)."""
        if getattr(self, "judge_", None) is None:
            return self._generate(labels, rng), None

        def draw(label, size):
            return self._generate(np.full(size, label), rng), None

        out, _, acceptance = self._screened(labels, draw)
        return out, acceptance

    # ---------------------------------------------------------------- sampling

    @torch.no_grad()
    def _generate(self, labels: np.ndarray, rng: torch.Generator) -> np.ndarray:
        """Flat synthetic samples in the input's dtype and range, one per label."""
        from gancore import crop_to

        out = np.empty((len(labels), self.n_features_in_), dtype=np.dtype(self.dtype_))
        if len(labels) == 0:
            return out
        encoded = np.searchsorted(self.classes_, labels)
        chunk = 256
        for start in range(0, len(labels), chunk):
            codes = torch.from_numpy(encoded[start : start + chunk].astype(np.int64))
            z = torch.randn(len(codes), self.latent_dim, generator=rng)
            if self.conditional:
                fake = self.generator_(z, codes)
            else:
                shape = (
                    self.train_shape_
                    if self.architecture in _CONV_ARCHITECTURES
                    else (self.n_features_in_,)
                )
                fake = torch.empty((len(codes), *shape))
                for code in codes.unique().tolist():
                    rows = codes == code
                    fake[rows] = self.generator_[code](z[rows])
            if self.architecture in _CONV_ARCHITECTURES:
                fake = crop_to(fake, self.image_shape_[1:])
            fake = fake.reshape(len(codes), -1).numpy()
            out[start : start + chunk] = self._from_unit(fake)
        return out

    def sample(self, n_samples: int, y=None, *, random_state=None):
        """Generate more synthetic images without retraining.

        Parameters
        ----------
        n_samples : int
            Number of images.
        y : label, array-like of shape (n_samples,) or None, default=None
            One class for all images, one label per image, or None for classes
            drawn uniformly.
        random_state : int or None, default=None
            Seed for this call; None continues the sampler's own stream: where
            fitting left it or, in a sampler just loaded from a file, from the start
            of the stream of its int ``random_state`` (fresh entropy when it was
            fitted without one).

        Returns
        -------
        X : ndarray
            Images in the layout, dtype and intensity range of the training data.
        y : ndarray of shape (n_samples,)
            Their labels.
        """
        check_is_fitted(self, "generator_")
        rng = self._sample_rng(random_state)
        labels = self._wanted_labels(n_samples, y, rng)
        if not self.conditional:
            trained = {self.classes_[i].item() for i in self.generator_}
            missing = sorted(set(np.unique(labels).tolist()) - trained)
            if missing:
                raise ValueError(
                    f"no generator for class(es) {missing}: with conditional=False "
                    "only classes that were over-sampled get one"
                )
        X = self._layout(self._synthesise(labels, rng)[0])
        self._keep_stream(rng, random_state)
        return X, labels

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> None:
        """Save the fitted generator(s) to a safe gankit model file.

        The file is safetensors weights plus a JSON configuration (no pickle):
        loading it never executes code. Training images are not stored. An int
        ``random_state`` is kept (a RandomState is not), so that :meth:`sample` of
        the loaded sampler starts the same stream each time.

        Parameters
        ----------
        path : path-like
            Target file, conventionally ``*.safetensors``; written atomically.
        metadata : dict, optional
            JSON-serialisable extra information, returned as ``metadata_`` by
            :meth:`load`.

        Raises
        ------
        ganaug.privacy.IdentifyingLabelError
            When a class label looks like a patient's name, ID or date
            (:func:`ganaug.privacy.check_labels`): pseudonymise the labels first.

        Examples
        --------
        >>> import tempfile, os, numpy as np
        >>> X = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
        >>> sampler = GANAugmenter(n_epochs=1, base_channels=4, random_state=0)
        >>> _ = sampler.fit_resample(X, np.repeat([0, 1], 10))
        >>> path = os.path.join(tempfile.mkdtemp(), "gan.safetensors")
        >>> sampler.save(path)
        >>> GANAugmenter.load(path).sample(3, y=1)[0].shape
        (3, 1, 8, 8)
        """
        from gancore import module_tensors

        check_is_fitted(self, "generator_")
        if self.conditional:
            tensors = module_tensors("generator", self.generator_)
        else:
            tensors = {}
            for index, net in self.generator_.items():
                tensors.update(module_tensors(f"generator{index}", net))
        config = {
            "trained_classes": sorted(int(i) for i in self.generator_)
            if not self.conditional
            else None,
            "history": self.history_
            if self.conditional
            else {str(k): v for k, v in self.history_.items()},
        }
        self._write_model(path, _MODEL_KIND, tensors, config, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GANAugmenter:
        """Load a sampler saved with :meth:`save`, ready for :meth:`sample`.

        Raises
        ------
        gancore.ModelFileError
            When the file is not a readable GANAugmenter model.
        """
        return cls._read_model(path, _MODEL_KIND)

    def _restore_networks(self, config: dict, tensors: dict) -> None:
        from gancore import module_state

        if self.conditional:
            net, _ = self._build_networks(len(self.classes_))
            net.load_state_dict(module_state("generator", tensors))
            self.generator_ = net.eval()
            return
        self.generator_ = {}
        for index in config["trained_classes"]:
            net, _ = self._build_networks(None)
            net.load_state_dict(module_state(f"generator{index}", tensors))
            self.generator_[index] = net.eval()
