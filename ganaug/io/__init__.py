"""Medical images in and out: DICOM, NIfTI, PNG/JPEG and NPZ.

Readers return channel-first float32 arrays ``(n, C, H, W)`` in the images' own
intensity units (Hounsfield units for CT after the modality LUT, 0-255 for 8-bit
PNG), so that :class:`ganaug.GANAugmenter` can give synthetic images back in the
same units. Every reader checks a file's declared size against
:data:`PIXEL_BUDGET` before decoding it, reads only DICOM objects that are images
(not segmentations, structure sets, reports, ...) and refuses NaN or infinite
values. Writers mark every file they write as synthetic; the DICOM writer
produces a Secondary Capture object that carries no identifier or date from any
input file, and class labels are screened for identifiers
(:func:`ganaug.privacy.check_labels`) before they name a file or fill a tag.

One module per job:

- :mod:`.folders`: :func:`load_images` and :func:`read_dicomdir`, many files into
  one array, in order, with labels; files that cannot be read are skipped;
- :mod:`.formats`: the one table of file kinds (how a file is recognised, read and
  told apart from synthetic output) and :func:`write_images`;
- :mod:`.dicom` (with :mod:`.deflated`), :mod:`.nifti`, :mod:`.pictures` (PNG and
  JPEG), :mod:`.npz`: one format each, read and written;
- :mod:`.labels`: labels from a CSV or sub-folders, screened for identifiers;
- :mod:`.transforms`: resizing and intensity scaling;
- :mod:`.checks`: the pixel budget, finite values and :class:`ImageReadError`;
- :mod:`.outputs`: what every writer shares (layout, 8-bit values, file names).

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> from ganaug.io import write_images, load_images
>>> images = np.random.default_rng(0).integers(0, 255, (4, 1, 16, 16)).astype("uint8")
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> paths = write_images(images, out, fmt="png", labels=["a", "a", "b", "b"])
>>> loaded = load_images(out)
>>> loaded.images.shape, sorted(set(loaded.labels.tolist()))
((4, 1, 16, 16), ['a', 'b'])
"""

from __future__ import annotations

import sys
import types

from . import checks
from .checks import ImageReadError
from .dicom import DICOM_SUFFIXES, read_dicom, write_dicom
from .folders import LoadedImages, load_images, read_dicomdir
from .formats import FORMATS, find_real_image, is_synthetic, write_images
from .labels import read_labels_csv
from .nifti import NIFTI_SUFFIXES, read_nifti, write_nifti
from .npz import write_npz
from .pictures import PICTURE_SUFFIXES, read_picture, write_png
from .transforms import resize_images, scale_intensity

__all__ = [
    "DICOM_SUFFIXES",
    "FORMATS",
    "NIFTI_SUFFIXES",
    "PICTURE_SUFFIXES",
    "PIXEL_BUDGET",
    "ImageReadError",
    "LoadedImages",
    "find_real_image",
    "is_synthetic",
    "load_images",
    "read_dicom",
    "read_dicomdir",
    "read_labels_csv",
    "read_nifti",
    "read_picture",
    "resize_images",
    "scale_intensity",
    "write_dicom",
    "write_images",
    "write_nifti",
    "write_npz",
    "write_png",
]


class _Package(types.ModuleType):
    """``ganaug.io`` itself, with :data:`PIXEL_BUDGET` kept in one place.

    The readers look the budget up in :mod:`.checks`; setting
    ``ganaug.io.PIXEL_BUDGET`` (as its documentation invites) sets it there, instead
    of leaving a copy here that nothing reads.
    """

    @property
    def PIXEL_BUDGET(self) -> int:
        return checks.PIXEL_BUDGET

    @PIXEL_BUDGET.setter
    def PIXEL_BUDGET(self, value: int) -> None:
        checks.PIXEL_BUDGET = value


sys.modules[__name__].__class__ = _Package
