"""ganaug: GAN augmentation of small, imbalanced medical imaging datasets.

:class:`GANAugmenter` is an imbalanced-learn over-sampler that trains a
class-conditional GAN and adds synthetic images; :class:`GANTranslator` makes the
rare classes' images by translating the common classes' (StarGAN);
:mod:`ganaug.io` reads DICOM, NIfTI, PNG and JPEG and writes synthetic images
marked as such (PNG, NPZ, NIfTI, DICOM Secondary Capture); :mod:`ganaug.privacy`
audits synthetic images for copies of training images and of their sources. The
``ganaug`` command line wraps them all.
"""

from __future__ import annotations

from ._sampler import GANAugmenter
from ._translator import GANTranslator

__version__ = "0.1.0"

__all__ = ["GANAugmenter", "GANTranslator", "__version__"]
