"""A fitted GANAugmenter's generator as one ONNX graph, for Triton or ONNX Runtime.

:func:`export_generator` (``ganaug export MODEL -o generator.onnx``) writes the
generator that :meth:`GANAugmenter.sample <ganaug.GANAugmenter.sample>` draws from
(the exponential moving average of its weights when the sampler was fitted with
``ema``), together with what ``sample`` does to its output, so that a caller gets the
same images from the same noise without gankit:

Inputs:

* ``noise`` ``tensor(float)[N, latent_dim]``: standard normal noise, one row per
  image;
* ``class`` ``tensor(int64)[N]``: each image's class, as its position in the list
  of classes of the metadata entry ``gankit.classes`` (an index outside it is an
  error, as is a class that an unconditional sampler has no generator for).

Output:

* ``images`` ``[N, *layout]`` in the training images' layout (``(H, W)``,
  ``(C, H, W)`` or flat), data type (``gankit.dtype``: float32, uint8...) and
  intensity range (``gankit.data_range``): the generator's output cropped to the
  image size, mapped from [-1, 1] to that range in float64, and for integer types
  rounded to the nearest integer, as ``sample`` gives it.

The images are synthetic: the metadata entry ``gankit.synthetic_data`` and the
graph's documentation say so (:data:`SYNTHETIC_CAVEAT`).

The graph is exported from a small torch module (:class:`ImageGenerator`) with
``torch.onnx.export`` (the dynamo exporter, opset 18, a dynamic batch dimension):
the generators are torch networks with convolutions, (conditional) batch norm and
spectral norm, which torch's exporter knows and a hand-written graph would have to
re-implement.  Every export is checked against that module on random noise before
it is returned.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gancore.exporting import require_onnx, save_onnx, set_metadata

__all__ = [
    "INTERFACE_VERSION",
    "SYNTHETIC_CAVEAT",
    "ImageGenerator",
    "export_generator",
    "export_onnx",
]

INTERFACE_VERSION = 1
MODEL_KIND = "ganaug.GANAugmenter"
OPSET = 18
SYNTHETIC_CAVEAT = (
    "SYNTHETIC DATA: every image this model generates is made by a generative "
    "adversarial network (gankit ganaug), not acquired from a patient. Synthetic "
    "images can look plausible and still be wrong, and can reproduce training "
    "images; use them only to augment training data, never for diagnosis or "
    "clinical decisions, and keep them marked as synthetic wherever they are "
    "stored or shown (DICOM Synthetic Data = YES)."
)
# Output data types that ONNX and torch both have, by numpy name.
_TORCH_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
}


class ImageGenerator(nn.Module):
    """What :meth:`GANAugmenter.sample` computes from noise and class codes.

    ``forward(noise, label)``: the generator's images (per-class generators of an
    unconditional sampler selected row by row), cropped to the image size, mapped
    from [-1, 1] to the training range in float64, rounded for integer types, in the
    training data's type and layout.

    Parameters
    ----------
    sampler : GANAugmenter
        Fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from ganaug import GANAugmenter
    >>> X = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    >>> sampler = GANAugmenter(n_epochs=1, base_channels=4, random_state=0)
    >>> _ = sampler.fit_resample(X, np.repeat([0, 1], 10))
    >>> ImageGenerator(sampler)(torch.zeros(3, 64), torch.tensor([0, 1, 1])).shape
    torch.Size([3, 1, 8, 8])
    """

    def __init__(self, sampler: Any):
        super().__init__()
        self.n_classes = len(sampler.classes_)
        self.conditional = bool(sampler.conditional)
        if self.conditional:
            self.nets = nn.ModuleList([sampler.generator_])
            slots = np.zeros(self.n_classes, dtype=np.int64)
        else:
            codes = sorted(sampler.generator_)
            self.nets = nn.ModuleList([sampler.generator_[c] for c in codes])
            # A class without a generator gets a slot past the last one: an error.
            slots = np.full(self.n_classes, len(codes), dtype=np.int64)
            slots[codes] = np.arange(len(codes))
        self.register_buffer("slots", torch.from_numpy(slots))
        self.register_buffer("positions", torch.arange(len(self.nets)))
        self.image_shape = sampler.image_shape_
        self.layout = tuple(sampler.input_layout_ or (sampler.n_features_in_,))
        low, high = (float(v) for v in sampler.data_range_)
        self.low, self.high = low, high
        self.span = high - low if high > low else 1.0
        name = np.dtype(sampler.dtype_).name
        if name not in _TORCH_DTYPES:
            raise ValueError(
                f"images of type {name} cannot be exported; ONNX outputs of "
                f"{sorted(_TORCH_DTYPES)} can"
            )
        self.dtype = _TORCH_DTYPES[name]
        self.integer = np.dtype(sampler.dtype_).kind in "iu"

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Images ``[N, *layout]`` from noise ``[N, latent_dim]`` and class codes."""
        # A negative code would count from the end in a gather: out of range instead.
        label = torch.where(label < 0, self.n_classes, label)
        if self.conditional:  # the class embeddings refuse codes out of range
            fake = self.nets[0](noise, label)
        else:
            slot = self.positions[self.slots[label]]
            outputs = torch.stack([net(noise) for net in self.nets], dim=1)
            index = slot.view(-1, 1, *([1] * (outputs.dim() - 2)))
            fake = outputs.gather(1, index.expand(-1, 1, *outputs.shape[2:]))[:, 0]
        if fake.dim() == 4:  # convolutional nets work on padded images
            fake = fake[..., : self.image_shape[1], : self.image_shape[2]]
        values = fake.reshape(fake.shape[0], -1).double()
        # As GANAugmenter maps [-1, 1] back to the training range.
        values = (values.clamp(-1.0, 1.0) + 1.0) / 2.0 * self.span + self.low
        if self.integer:
            values = values.round().clamp(self.low, self.high)
        return values.to(self.dtype).reshape(-1, *self.layout)


def export_generator(
    sampler: Any, path: str | os.PathLike | None = None, *, verify: bool = True
) -> Any:
    """A fitted GANAugmenter's generator as one ONNX graph, written to ``path``.

    Parameters
    ----------
    sampler : GANAugmenter
        Fitted (or loaded with :meth:`GANAugmenter.load`).
    path : str or path-like, optional
        Where to write the graph (atomically), conventionally ``*.onnx``.
    verify : bool, default=True
        Check the graph against :class:`ImageGenerator` on random noise with ONNX
        Runtime (a ValueError if they differ by more than 1e-4 of the range).

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ImportError
        Without the ``onnx`` extra (one line naming it).

    Examples
    --------
    >>> import numpy as np
    >>> from ganaug import GANAugmenter
    >>> X = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    >>> sampler = GANAugmenter(n_epochs=1, base_channels=4, random_state=0)
    >>> _ = sampler.fit_resample(X, np.repeat([0, 1], 10))
    >>> model = export_generator(sampler)
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    (['noise', 'class'], ['images'])
    """
    onnx, _, _ = require_onnx("onnx", "onnxruntime", "onnxscript")
    if not hasattr(sampler, "generator_"):
        raise ValueError("the sampler is not fitted; fit it or load a model file")
    module = ImageGenerator(sampler).eval()
    n = min(len(sampler.classes_), 4) + 1
    noise = torch.randn(
        n, sampler.latent_dim, generator=torch.Generator().manual_seed(0)
    )
    label = torch.arange(n) % len(sampler.classes_)
    batch = torch.export.Dim("batch")
    # The exporter reports its steps on stdout, and warns and logs about its own
    # internals (torchvision's operators, deprecations): none of it is ours to act on.
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (noise, label),
            dynamo=True,
            input_names=["noise", "class"],
            output_names=["images"],
            dynamic_shapes={"noise": {0: batch}, "label": {0: batch}},
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    model = program.model_proto
    model.doc_string = (
        "Generator of a gankit ganaug GANAugmenter. Inputs: noise (float32 [N, "
        f"{sampler.latent_dim}], standard normal), class (int64 [N], the position "
        "of the class in metadata gankit.classes). Output: images in the training "
        "data's layout, type and intensity range. " + SYNTHETIC_CAVEAT
    )
    model.graph.output[0].doc_string = SYNTHETIC_CAVEAT
    set_metadata(
        model,
        MODEL_KIND,
        INTERFACE_VERSION,
        {
            "gankit.synthetic_data": SYNTHETIC_CAVEAT,
            "gankit.classes": json.dumps([str(c) for c in sampler.classes_.tolist()]),
            "gankit.latent_dim": str(int(sampler.latent_dim)),
            "gankit.noise": "standard normal, float32 [N, latent_dim]",
            "gankit.dtype": np.dtype(sampler.dtype_).name,
            "gankit.data_range": json.dumps([float(v) for v in sampler.data_range_]),
            "gankit.image_layout": json.dumps(list(module.layout)),
            "gankit.architecture": str(sampler.architecture),
            "gankit.conditional": str(bool(sampler.conditional)).lower(),
        },
    )
    onnx.checker.check_model(model)
    if verify:
        _check_graph(model, module, sampler)
    if path is not None:
        save_onnx(model, path)
    return model


@contextlib.contextmanager
def _quiet_exporter():
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _check_graph(model: Any, module: ImageGenerator, sampler: Any) -> None:
    """A ValueError unless ONNX Runtime's images are those of ``module``, within
    1e-4 of the intensity range (plus rounding for integer types)."""
    import onnxruntime

    n = 2 * len(sampler.classes_) + 3
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((n, sampler.latent_dim)).astype(np.float32)
    codes = np.arange(n, dtype=np.int64) % len(sampler.classes_)
    if not sampler.conditional:
        trained = np.asarray(sorted(sampler.generator_), dtype=np.int64)
        codes = trained[np.arange(n) % len(trained)]
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    images = session.run(["images"], {"noise": noise, "class": codes})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(noise), torch.from_numpy(codes)).numpy()
    tolerance = 1e-4 * module.span + (1.0 if module.integer else 0.0)
    difference = np.abs(images.astype(np.float64) - expected.astype(np.float64))
    if images.shape != expected.shape or not (difference <= tolerance).all():
        raise ValueError(
            "the exported generator does not reproduce the sampler's images "
            f"(largest difference {float(difference.max()):.3g})"
        )


def export_onnx(model: str | os.PathLike, path: str | os.PathLike) -> Any:
    """Write a GANAugmenter model file's generator as one ONNX file
    (``ganaug export``).

    Parameters
    ----------
    model : str or path-like
        A model file written by ``ganaug fit`` or :meth:`GANAugmenter.save`.
    path : str or path-like
        The ONNX file to write (atomically).

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    gancore.ModelFileError
        Not a readable GANAugmenter model file.
    ImportError
        Without the ``onnx`` extra.
    """
    from . import GANAugmenter

    require_onnx("onnx", "onnxruntime", "onnxscript")
    sampler = GANAugmenter.load(Path(model))
    return export_generator(sampler, path)
