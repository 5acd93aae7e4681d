"""What is done to images after they are read: resizing and intensity scaling, both
with MONAI transforms, one image at a time."""

from __future__ import annotations

import numpy as np

__all__ = ["resize_images", "scale_intensity"]


def resize_images(images: np.ndarray, image_size: int | tuple[int, int]) -> np.ndarray:
    """Resize ``(n, C, H, W)`` images with MONAI ``Resize`` (area interpolation).

    Examples
    --------
    >>> resize_images(np.ones((2, 1, 8, 8), "float32"), 4).shape
    (2, 1, 4, 4)
    """
    from monai.transforms import Resize

    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if images.shape[-2:] == size:
        return images.astype(np.float32, copy=False)
    resize = Resize(spatial_size=size, mode="area")
    return np.stack([np.asarray(resize(image)) for image in images]).astype(np.float32)


def scale_intensity(images: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Scale each ``(C, H, W)`` image to [0, 1] with MONAI ``ScaleIntensity``.

    Examples
    --------
    >>> scaled = scale_intensity(np.array([[[[0.0, 50.0], [100.0, 200.0]]]]))
    >>> float(scaled.min()), float(scaled.max())
    (0.0, 1.0)
    """
    from monai.transforms import ScaleIntensity

    if method != "minmax":
        raise ValueError(f"normalize must be None or 'minmax', got {method!r}")
    scale = ScaleIntensity(minv=0.0, maxv=1.0)
    return np.stack([np.asarray(scale(image)) for image in images]).astype(np.float32)
