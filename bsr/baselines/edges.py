"""Edge images, the common ground of the registration baselines.

Infrared and visible intensities are not related by any fixed function, so the
baselines compare edge images: the magnitude of a smoothed Sobel gradient
(:func:`gradient_magnitude`), locally normalised so an edge counts about the same
in both modalities (:func:`_local_normalise`), compared by zero-mean normalised
cross-correlation (:func:`_zncc`) over a Gaussian pyramid (:func:`_pyr_down`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def gradient_magnitude(img: np.ndarray, sigma: float = 1.0, post_sigma: float = 1.0) -> np.ndarray:
    """Sobel gradient magnitude of a Gaussian-smoothed image, lightly smoothed again.

    ``sigma`` suppresses noise and texture before differentiation;
    ``post_sigma`` widens the edge ridges so that iterative methods see a
    smooth objective (0 disables either smoothing).
    """
    x = np.asarray(img, dtype=np.float64)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma, mode="nearest")
    gx = ndimage.sobel(x, axis=1, mode="nearest")
    gy = ndimage.sobel(x, axis=0, mode="nearest")
    mag = np.hypot(gx, gy)
    if post_sigma > 0:
        mag = ndimage.gaussian_filter(mag, post_sigma, mode="nearest")
    return mag


def _local_normalise(x: np.ndarray, sigma: float = 8.0, floor: float = 0.05) -> np.ndarray:
    """Divide by the local (Gaussian-weighted) mean, plus a floor relative to the global mean.

    Equalises edge strength between modalities (an edge that is weak in one
    image and strong in the other gets a comparable magnitude), while the
    floor keeps flat, noisy regions small.
    """
    m = ndimage.gaussian_filter(x, sigma, mode="nearest")
    return x / (m + floor * x.mean() + 1e-12)


def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur (sigma 1) and keep every second sample: coarse pixel i sits at fine 2i."""
    return ndimage.gaussian_filter(x, 1.0, mode="nearest")[::2, ::2]


def _zncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0
