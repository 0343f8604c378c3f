"""Single-image fusion metrics: SF, AG, MG, EI, SD and EN, and the Sobel and
gradient filters they use (definitions and sources in ``bsr.metrics.fusion``)."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

from .common import _choose, _gray, _one_blas_thread

_SMOOTH = np.array([1.0, 2.0, 1.0])
_DIFF = np.array([-1.0, 0.0, 1.0])  # correlation weights: right minus left

_STRIP = 32  # rows per strip in element-wise chains (temporaries stay in L2)


# ----------------------------------------------------------------------------
# gradients

def sobel(img, mode: str = "mirror", normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sobel responses ``(Sx, Sy)`` by two separable 1-D passes each.

    ``Sx`` is right minus left (smoothed [1, 2, 1] down the columns), ``Sy``
    bottom minus top. ``mode`` is a ``scipy.ndimage`` border mode ('mirror' =
    OpenCV's BORDER_REFLECT_101, 'reflect' = half-sample symmetric as
    scikit-image, 'nearest' = MATLAB 'replicate', 'constant' = zero fill).
    With ``normalize`` the kernel is divided by 4 (scikit-image's sobel_h/v).
    """
    x = np.asarray(img, dtype=np.float64)
    sx = correlate1d(correlate1d(x, _SMOOTH, axis=0, mode=mode), _DIFF, axis=1, mode=mode)
    sy = correlate1d(correlate1d(x, _DIFF, axis=0, mode=mode), _SMOOTH, axis=1, mode=mode)
    if normalize:
        sx *= 0.25
        sy *= 0.25
    return sx, sy


def _sobel_mag(x: np.ndarray, mode: str) -> np.ndarray:
    sx, sy = sobel(x, mode=mode)
    return np.sqrt(sx * sx + sy * sy)


def _gradient_mag(x: np.ndarray) -> np.ndarray:
    """sqrt((gx^2 + gy^2) / 2) with numpy.gradient (needs >= 2 rows and columns)."""
    gy, gx = np.gradient(x)
    return np.sqrt((gx * gx + gy * gy) * 0.5)


def _ring_sum(x: np.ndarray, per_pixel) -> float:
    """Sum of ``per_pixel(sub)`` over the one-pixel border ring of ``x``.

    ``per_pixel`` maps a sub-image to a per-pixel array whose border-ring values only
    depend on the pixels within distance 1; it is called on 3-pixel-wide bands, so the
    ring of a large image costs next to nothing. Needs H, W >= 3.
    """
    return float(per_pixel(x[:3])[0].sum() + per_pixel(x[-3:])[-1].sum()
                 + per_pixel(x[:, :3])[1:-1, 0].sum() + per_pixel(x[:, -3:])[1:-1, -1].sum())


def _forward_diff_mean(x: np.ndarray) -> float:
    if x.shape[0] < 2 or x.shape[1] < 2:
        return 0.0
    dx = x[1:, 1:] - x[1:, :-1]
    dy = x[1:, 1:] - x[:-1, 1:]
    return float(np.mean(np.sqrt((dx * dx + dy * dy) * 0.5)))


# ----------------------------------------------------------------------------
# single-image metrics (the underscore forms take validated float64 arrays)

def _fused_stats(x: np.ndarray, want: set[str]) -> dict[str, float]:
    with _one_blas_thread():  # np.dot would otherwise start BLAS threads
        return _fused_stats_impl(x, want)


def _fused_stats_impl(x: np.ndarray, want: set[str]) -> dict[str, float]:
    """SF, AG (central differences), SD and EN of one image in a single pass over row
    strips (each strip's arrays stay in cache). ``want`` is a subset of those names.

    SF: RF^2 = mean over (H, W-1) of (x[i, j+1] - x[i, j])^2, CF^2 likewise down the
    columns. AG: numpy.gradient values sqrt((gx^2 + gy^2) / 2); inside, with the central
    differences Dx = x[j+1] - x[j-1] (= 2 gx) formed as the sum of two neighbouring first
    differences, the value is sqrt(Dx^2 + Dy^2) / sqrt(8); the one-pixel border ring
    (one-sided differences) is added separately. SD: population form from the sums of x
    and x^2, recomputed in two passes when that would lose precision (SD below 1e-3 of
    the mean). EN: 256-bin histogram of the rounded, clipped grey levels.
    """
    h, w = x.shape
    rf = cf = inner = s1 = s2 = 0.0
    hist = np.zeros(256, dtype=np.int64)
    do_ag = "AG" in want and h >= 3 and w >= 3
    for r0 in range(0, h, _STRIP):
        r1 = min(r0 + _STRIP, h)
        xs = x[r0:r1]
        if "SF" in want or do_ag:
            dxr = xs[:, 1:] - xs[:, :-1]
            if "SF" in want:
                d = dxr.ravel()
                rf += float(np.dot(d, d))
                if r0 < h - 1:
                    e = min(r1, h - 1)
                    dyr = x[r0 + 1:e + 1] - x[r0:e]
                    d = dyr.ravel()
                    cf += float(np.dot(d, d))
            if do_ag:
                a0, a1 = max(r0, 1), min(r1, h - 1)  # interior rows of this strip
                if a0 < a1:
                    dx = dxr[a0 - r0:a1 - r0, 1:] + dxr[a0 - r0:a1 - r0, :-1]
                    dy = x[a0 + 1:a1 + 1, 1:-1] - x[a0 - 1:a1 - 1, 1:-1]
                    dx *= dx
                    dy *= dy
                    dx += dy
                    np.sqrt(dx, out=dx)
                    inner += float(dx.sum())
        if "SD" in want:
            flat = xs.ravel()
            s1 += float(flat.sum())
            s2 += float(np.dot(flat, flat))
        if "EN" in want:
            lv = np.rint(xs)
            np.clip(lv, 0, 255, out=lv)
            hist += np.bincount(lv.astype(np.intp).ravel(), minlength=256)
    out: dict[str, float] = {}
    n = x.size
    if "SF" in want:
        rf = rf / (h * (w - 1)) if w > 1 else 0.0
        cf = cf / ((h - 1) * w) if h > 1 else 0.0
        out["SF"] = math.sqrt(rf + cf)
    if "AG" in want:
        if do_ag:
            out["AG"] = (inner / math.sqrt(8.0) + _ring_sum(x, _gradient_mag)) / n
        else:
            out["AG"] = float(_gradient_mag(x).mean()) if min(h, w) >= 2 else 0.0
    if "SD" in want:
        mean = s1 / n
        var = s2 / n - mean * mean
        if var < 1e-6 * mean * mean:  # cancellation: redo in two passes
            d = (x - x.mean()).ravel()
            var = float(np.dot(d, d)) / n
        out["SD"] = math.sqrt(max(var, 0.0))
    if "EN" in want:
        p = hist[hist > 0] / n
        out["EN"] = float(-np.sum(p * np.log2(p)) + 0.0)
    return out


def _mg_sobel(x: np.ndarray) -> float:
    return float(_sobel_mag(x, "mirror").mean()) / math.sqrt(2.0)


def _ei_sobel(x: np.ndarray, plain: bool) -> float:
    mag = _sobel_mag(x, "nearest" if plain else "reflect")
    return float(mag.mean()) if plain else float(mag.mean()) / 4.0


def sf(img) -> float:
    """Spatial frequency sqrt(RF^2 + CF^2), RF/CF the RMS of horizontal/vertical first
    differences (each averaged over its own (H, W-1) / (H-1, W) grid). Range [0, 255*sqrt(2)]."""
    return _fused_stats(_gray(img, "image"), {"SF"})["SF"]


def ag(img, definition: str | None = None) -> float:
    """Average gradient; default mean sqrt((Gx^2+Gy^2)/2) with central differences
    (one-sided at the borders), as ``numpy.gradient``. Range [0, 255]."""
    x = _gray(img, "image")
    if _choose("AG", definition) == "forward_diff":
        return _forward_diff_mean(x)
    return _fused_stats(x, {"AG"})["AG"]


def mg(img, definition: str | None = None) -> float:
    """Mean gradient; default mean sqrt((Sx^2+Sy^2)/2) with the unnormalised Sobel and
    OpenCV's default border (reflect-101). About 7.3 x AG on natural images."""
    x = _gray(img, "image")
    if _choose("MG", definition) == "forward_diff":
        return _forward_diff_mean(x)
    return _mg_sobel(x)


def ei(img, definition: str | None = None) -> float:
    """Edge intensity; default mean Sobel magnitude with the kernel divided by 4
    (scikit-image convention, 'reflect' border). About 2.6 x AG on natural images."""
    x = _gray(img, "image")
    return _ei_sobel(x, plain=_choose("EI", definition) == "sobel_plain")


def sd(img) -> float:
    """Standard deviation of the grey levels (population form, ddof=0). Range [0, 127.5]."""
    return _fused_stats(_gray(img, "image"), {"SD"})["SD"]


def en(img) -> float:
    """Shannon entropy (bits) of the 256-bin histogram of the grey levels rounded to
    integers (half to even, as numpy.round; values outside [0, 255] are clipped).
    Range [0, 8]."""
    return _fused_stats(_gray(img, "image"), {"EN"})["EN"]
