"""Classical registration baselines: align a misaligned IR image to the visible one.

Every public registration function takes ``ir`` and ``vis`` as torch tensors
(B, 1, H, W) in [0, 1] and returns a field (B, 2, H, W) in pixels, in the
package convention (:mod:`bsr.warp`: channel 0 = x, backward warping), such
that ``bsr.warp.warp(ir, field)`` is the IR aligned to the visible image.
The visible image is the fixed reference throughout.

Infrared and visible intensities are not related by any fixed function, so
no method compares raw intensities; each works on edge images (the
magnitude of a smoothed Sobel gradient, or its orientation), which the two
modalities share at object boundaries.

Methods and sources:

* :func:`phase_correlation` -- global translation by phase correlation
  (C. D. Kuglin and D. C. Hines, "The phase correlation image alignment
  method", IEEE Conf. Cybernetics and Society, 1975) with sub-pixel refinement
  by upsampled matrix-multiply DFTs (M. Guizar-Sicairos, S. T. Thurman and
  J. R. Fienup, "Efficient subpixel image registration algorithms", Optics
  Letters 33(2), 2008) as in ``skimage.registration.phase_cross_correlation``.
  Applied to Hann-windowed, locally normalised gradient-magnitude images,
  with the spectra half-whitened (a generalised phase correlation: full
  whitening is dominated by IR noise on RoadScene).
* :func:`ecc_affine` -- affine transform maximising the enhanced correlation
  coefficient (G. D. Evangelidis and E. Z. Psarakis, "Parametric image
  alignment using enhanced correlation coefficient maximization", IEEE TPAMI
  30(10), 2008) with OpenCV's implementation (``cv2.findTransformECC``;
  OpenCV documentation, module ``video``, "findTransformECC"), on locally
  normalised gradient-magnitude images, coarse to fine over a Gaussian
  pyramid (``cv2.pyrDown``). It is initialised by a search over rotation,
  zoom (isotropic, and axis-aligned anisotropic) and translation at the
  coarsest level (normalised cross-correlation of the rotated and zoomed IR
  edges with the visible edges, ``cv2.matchTemplate``); several starts are
  refined through all levels and the best coefficient at full size wins. It
  is guarded against divergence: a level's result is kept only if OpenCV
  raised no error and the result is finite, plausible and does not lower the
  correlation coefficient; a final coefficient below ``min_rho`` gives the
  identity (:func:`ecc_affine_opencv`). The earlier numpy
  implementation (its own forward-additive iterations after an exhaustive
  zoom + translation search, no rotation at the coarse levels) remains as
  :func:`ecc_affine_numpy`, not registered in :data:`REGISTRATION`;
  ``motion="scale"`` (an axis-aligned zoom, which OpenCV has no model for)
  still runs it.
* :func:`tvl1` -- dense TV-L1 optical flow (C. Zach, T. Pock and H. Bischof,
  "A duality based approach for realtime TV-L1 optical flow", DAGM 2007;
  J. Sanchez, E. Meinhardt-Llopis and G. Facciolo, "TV-L1 optical flow
  estimation", IPOL 2013) as ``skimage.registration.optical_flow_tvl1``, on
  saturated (contrast-equalised) gradient-magnitude images.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .fusion import _check_pair

__all__ = [
    "gradient_magnitude", "phase_correlation", "ecc_affine", "tvl1",
    "affine_to_field", "translation_to_field", "ecc_affine_numpy", "ecc_affine_opencv",
    "phase_correlation_numpy", "tvl1_numpy", "REGISTRATION",
]


# --------------------------------------------------------------------------- helpers

def _per_pair(fn, ir: torch.Tensor, vis: torch.Tensor, **kw) -> torch.Tensor:
    """Run a numpy (ir, vis) -> (2, H, W) field function over a batch."""
    _check_pair(ir, vis)
    a = ir.detach().to("cpu", torch.float64).numpy()
    b = vis.detach().to("cpu", torch.float64).numpy()
    fields = [fn(a[k, 0], b[k, 0], **kw) for k in range(a.shape[0])]
    out = torch.from_numpy(np.stack(fields).astype(np.float32))
    dtype = ir.dtype if ir.dtype.is_floating_point else torch.float32
    return out.to(device=ir.device, dtype=dtype)


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


def translation_to_field(dx: float, dy: float, h: int, w: int) -> np.ndarray:
    """Constant field (2, H, W): ``warp(ir, field)(p) = ir(p + (dx, dy))``."""
    f = np.empty((2, h, w), dtype=np.float64)
    f[0] = dx
    f[1] = dy
    return f


def affine_to_field(matrix: np.ndarray, h: int, w: int) -> np.ndarray:
    """Dense field of an affine map ``q = M @ [x, y, 1]`` (template pixel p -> IR position q).

    Returns (2, H, W) with ``field(p) = M p - p``, so that
    ``warp(ir, field)(p) = ir(M p)``.
    """
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    qx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    qy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    return np.stack((qx - xs, qy - ys))


def _hann2d(h: int, w: int) -> np.ndarray:
    return np.outer(np.hanning(h), np.hanning(w))


# --------------------------------------------------------------------------- phase correlation

def phase_correlation_numpy(ir: np.ndarray, vis: np.ndarray, upsample: int = 20,
                            sigma: float = 1.0, feature: str = "edges",
                            whiten: float = 0.5) -> np.ndarray:
    """Global translation by (generalised) phase correlation of windowed edge images.

    Returns the constant (2, H, W) field.

    ``feature``: ``"edges"`` (default: Sobel magnitude, smoothed by 1 px and
    divided by its local mean, as ECC uses), ``"gradient"`` (the plain Sobel
    magnitude) or ``"orientation"`` (the doubled-angle gradient
    ``(gx + i gy)^2 / |g|``, insensitive to contrast reversal -- after A. J.
    Fitch, A. Kadyrov, W. J. Christmas and J. Kittler, "Orientation
    correlation", BMVC 2002). Features are made zero-mean and Hann-windowed.

    ``whiten``: each spectrum is divided by its magnitude to this power before
    the product, so 1 is classical phase correlation (the cross-power spectrum
    normalised to unit magnitude), 0 plain cross-correlation. Full whitening
    lets the high-frequency noise of the IR frames dominate: on 80 RoadScene
    training pairs (no shift) the error was 5.8 px mean with 13 failures
    (> 3 px) for whiten = 1 on Sobel magnitudes against 1.3 px and 3
    failures for whiten = 0.5 on the default features. The peak and its
    upsampled-DFT refinement are skimage's (``space="fourier"``,
    ``normalization=None`` on the pre-whitened spectra).
    """
    from skimage.registration import phase_cross_correlation

    ir = np.asarray(ir, dtype=np.float64)
    vis = np.asarray(vis, dtype=np.float64)
    h, w = ir.shape
    if feature == "edges":
        a = _local_normalise(gradient_magnitude(vis, sigma, 1.0), 8.0)
        b = _local_normalise(gradient_magnitude(ir, sigma, 1.0), 8.0)
    elif feature == "gradient":
        a = gradient_magnitude(vis, sigma, 0.0)
        b = gradient_magnitude(ir, sigma, 0.0)
    elif feature == "orientation":
        def orient(img):
            x = ndimage.gaussian_filter(img, sigma, mode="nearest")
            g = ndimage.sobel(x, axis=1, mode="nearest") + 1j * ndimage.sobel(x, axis=0, mode="nearest")
            return g * g / (np.abs(g) + 1e-12)
        a, b = orient(vis), orient(ir)
    else:
        raise ValueError(f"feature must be 'edges', 'gradient' or 'orientation'; got {feature!r}")
    win = _hann2d(h, w)
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    if whiten:
        fa = fa / (np.abs(fa) + 1e-12) ** whiten
        fb = fb / (np.abs(fb) + 1e-12) ** whiten
    shift, _, _ = phase_cross_correlation(fa, fb, upsample_factor=upsample, space="fourier",
                                          normalization=None)
    # skimage: moving shifted by ``shift`` (row, col) matches the reference, i.e.
    # ir(p - shift) ~ vis(p); our field samples ir at p + field, so field = -shift.
    return translation_to_field(-float(shift[1]), -float(shift[0]), h, w)


def phase_correlation(ir: torch.Tensor, vis: torch.Tensor, **kw) -> torch.Tensor:
    """Phase-correlation translation (see :func:`phase_correlation_numpy`), batched."""
    return _per_pair(phase_correlation_numpy, ir, vis, **kw)


# --------------------------------------------------------------------------- ECC

def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur (sigma 1) and keep every second sample: coarse pixel i sits at fine 2i."""
    return ndimage.gaussian_filter(x, 1.0, mode="nearest")[::2, ::2]


def _zncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def _coarse_search(tmpl: np.ndarray, img: np.ndarray, c: np.ndarray, radius: int,
                   scales) -> tuple[float, np.ndarray]:
    """Exhaustive search of an isotropic zoom about ``c`` and a translation.

    Maximises the ZNCC of ``tmpl(p)`` and ``img(s (p - c) + c + t)`` over the
    pixels mapping inside ``img`` (at least half of the template must), for
    each ``s`` in ``scales`` and ``t = s k`` with integer ``k`` in
    ``[-radius, radius]^2``. For each ``s`` the zoomed image is resampled
    once on a grid enlarged by ``radius`` and the translations are slices of
    it. A tiny penalty on ``|k|`` and ``|log s|`` breaks ties towards the
    identity. Returns (s, t).
    """
    h, w = tmpl.shape
    r = int(radius)
    ys, xs = np.mgrid[-r:h + r, -r:w + r].astype(np.float64)
    best, best_st = -np.inf, (1.0, np.zeros(2))
    for s in scales:
        qx = s * (xs - c[0]) + c[0]
        qy = s * (ys - c[1]) + c[1]
        inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        zoomed = ndimage.map_coordinates(img, (qy, qx), order=1, mode="nearest")
        for ky in range(-r, r + 1):
            for kx in range(-r, r + 1):
                sl = (slice(r + ky, r + ky + h), slice(r + kx, r + kx + w))
                valid = inside[sl]
                if valid.sum() < 0.5 * h * w:
                    continue
                score = _zncc(tmpl[valid], zoomed[sl][valid])
                score -= 1e-6 * (kx * kx + ky * ky) + 1e-3 * abs(np.log(s))
                if score > best:
                    best, best_st = score, (float(s), s * np.array([kx, ky], dtype=np.float64))
    return best_st


def _ecc_level(tmpl: np.ndarray, img: np.ndarray, a: np.ndarray, t: np.ndarray, c: np.ndarray,
               iters: int, tol: float, motion: str, margin: int):
    """Forward-additive ECC iterations at one pyramid level.

    Warp: IR position ``q = A (p - c) + c + t`` of template pixel ``p``.
    Each iteration is Evangelidis & Psarakis' closed-form step (their Eq. 19-20
    with the lambda of Eq. 21/22). As a safeguard the parameters with the
    highest correlation coefficient seen are returned, and iterations stop if
    the overlap shrinks below half of the initial one.
    Returns (A, t, rho).
    """
    h, w = tmpl.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xs - c[0], ys - c[1]
    gy_img, gx_img = np.gradient(img)
    inner = np.zeros((h, w), bool)
    inner[margin:h - margin, margin:w - margin] = True
    n0 = None
    done = False
    best = (a, t, -np.inf)
    for it in range(iters + 1):
        qx = a[0, 0] * u + a[0, 1] * v + c[0] + t[0]
        qy = a[1, 0] * u + a[1, 1] * v + c[1] + t[1]
        valid = inner & (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        nv = int(valid.sum())
        n0 = nv if n0 is None else n0
        if nv < max(0.5 * n0, 16):
            break
        coords = np.stack((qy[valid], qx[valid]))
        iw = ndimage.map_coordinates(img, coords, order=1, mode="nearest")
        tv = tmpl[valid]
        tv = tv - tv.mean()
        iw = iw - iw.mean()
        tnorm = np.linalg.norm(tv)
        inorm = np.linalg.norm(iw)
        corr = float(tv @ iw)
        rho = corr / (tnorm * inorm + 1e-300)
        if rho > best[2]:
            best = (a, t, rho)
        if done or it == iters:
            break
        gx = ndimage.map_coordinates(gx_img, coords, order=1, mode="nearest")
        gy = ndimage.map_coordinates(gy_img, coords, order=1, mode="nearest")
        if motion == "affine":
            uu, vv = u[valid], v[valid]
            jac = np.stack((gx * uu, gy * uu, gx * vv, gy * vv, gx, gy), axis=1)
        elif motion == "scale":
            jac = np.stack((gx * u[valid], gy * v[valid], gx, gy), axis=1)
        else:  # translation
            jac = np.stack((gx, gy), axis=1)
        hess = jac.T @ jac
        hess += 1e-9 * np.trace(hess) / len(hess) * np.eye(len(hess))
        try:
            hinv = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            break
        ip = jac.T @ iw
        tp = jac.T @ tv
        num = inorm ** 2 - ip @ hinv @ ip
        den = corr - tp @ hinv @ ip
        if den > 0:
            lam = num / den
        else:
            # second case of the paper: the template projection dominates;
            # pick the larger of the two admissible scalings
            tpt = max(tp @ hinv @ tp, 1e-300)
            lam = max(np.sqrt(max(ip @ hinv @ ip, 0.0) / tpt), (ip @ hinv @ tp - corr) / tpt)
        dp = hinv @ (jac.T @ (lam * tv - iw))
        if motion == "affine":
            a = a + np.array([[dp[0], dp[2]], [dp[1], dp[3]]])
            t = t + dp[4:6]
            step = np.abs(dp[4:6]).max() + np.abs(dp[:4]).max() * max(h, w) / 2
        elif motion == "scale":
            a = a + np.diag(dp[:2])
            t = t + dp[2:4]
            step = np.abs(dp[2:4]).max() + np.abs(dp[:2]).max() * max(h, w) / 2
        else:
            t = t + dp
            step = np.abs(dp).max()
        if step < tol:
            done = True           # evaluate the final parameters, then stop
    return best


_ECC_SCALES = tuple(np.geomspace(1 / 1.2, 1.2, 9))


def _ecc_inputs(ir, vis, levels):
    """Both images as float64 2-D arrays of one shape, and the pyramid depth: by default the
    number of halvings that leave the short side >= 40 px."""
    ir = np.asarray(ir, dtype=np.float64)
    vis = np.asarray(vis, dtype=np.float64)
    if ir.shape != vis.shape or ir.ndim != 2:
        raise ValueError(f"ir {ir.shape} and vis {vis.shape} must be equal 2-D shapes")
    if levels is None:
        levels = max(0, int(np.floor(np.log2(max(min(ir.shape), 1) / 40.0))))
    return ir, vis, levels


def ecc_affine_numpy(ir: np.ndarray, vis: np.ndarray, motion: str = "affine",
                     levels: int | None = None, iters: int = 60, tol: float = 0.01,
                     sigma: float = 1.0, post_sigma: float = 3.0, normalise: float = 8.0,
                     search_radius: int | None = None, search_scales=_ECC_SCALES,
                     affine_levels: int = 1, return_matrix: bool = False):
    """ECC alignment of the IR edge image to the visible edge image.

    Features: ``gradient_magnitude(., sigma, post_sigma)`` divided by its
    local mean (Gaussian of std ``normalise`` px; 0 disables), which evens out
    edge contrast between the modalities. Pyramid: the features are reduced by
    blur-and-decimate; ``levels`` defaults to the number of halvings that
    leave the short side >= 40 px.

    Initialisation: at the coarsest level an exhaustive search over an
    isotropic zoom about the centre (``search_scales``, default 9 steps in
    [1/1.2, 1.2]) and integer translations within ``search_radius`` px
    (+-radius * 2^levels px at full size; default 8 % of the coarse short
    side, at least 3, e.g. +-24 px for 640 x 480) maximises the ZNCC.

    Iterations: ECC (Evangelidis & Psarakis 2008) at each level, coarse to
    fine, the translation doubling between levels. For ``motion="affine"``
    the coarse levels fit a 4-parameter axis-aligned zoom + translation
    (better conditioned on 40-80 px images) and the ``affine_levels`` finest
    levels the full 6-parameter affine map; ``motion="scale"`` fits the
    4-parameter model throughout; ``motion="translation"`` a translation
    throughout (and searches no zoom). ``tol``: stop when an
    update moves no pixel of the level by more than ``tol`` full-size px.

    Returns the (2, H, W) field, or the 2 x 3 matrix ``M`` (IR position
    ``M @ [x, y, 1]`` of visible pixel (x, y)) when ``return_matrix``.
    """
    if motion not in ("affine", "scale", "translation"):
        raise ValueError(f"motion must be 'affine', 'scale' or 'translation'; got {motion!r}")
    ir, vis, levels = _ecc_inputs(ir, vis, levels)
    h, w = ir.shape
    fi = [gradient_magnitude(ir, sigma, post_sigma)]
    fv = [gradient_magnitude(vis, sigma, post_sigma)]
    if normalise > 0:
        fi = [_local_normalise(fi[0], normalise)]
        fv = [_local_normalise(fv[0], normalise)]
    for _ in range(levels):
        fi.append(_pyr_down(fi[-1]))
        fv.append(_pyr_down(fv[-1]))
    c0 = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    scales = (1.0,) if motion == "translation" else tuple(search_scales)
    if search_radius is None:
        search_radius = max(3, int(round(0.08 * min(fi[-1].shape))))
    if search_radius > 0 or len(scales) > 1:
        s0, t = _coarse_search(fv[-1], fi[-1], c0 / 2 ** levels, search_radius, scales)
    else:
        s0, t = 1.0, np.zeros(2)
    a = s0 * np.eye(2)
    for lev in range(levels, -1, -1):
        if motion == "affine" and lev < affine_levels:
            mot = "affine"
        else:
            mot = "translation" if motion == "translation" else "scale"
        a, t, _ = _ecc_level(fv[lev], fi[lev], a, t, c0 / 2 ** lev, iters, tol / 2 ** lev,
                             mot, margin=2 if lev > 0 else 4)
        if lev > 0:
            t = 2.0 * t
    # q = A (p - c0) + c0 + t  ->  M = [A | c0 + t - A c0]
    m = np.concatenate((a, (c0 + t - a @ c0)[:, None]), axis=1)
    if return_matrix:
        return m
    return affine_to_field(m, h, w)


def _edge_features(img: np.ndarray, sigma: float, post_sigma: float, normalise: float) -> np.ndarray:
    """float32 ECC feature: ``gradient_magnitude`` divided by its local mean (``normalise`` > 0)."""
    g = gradient_magnitude(img, sigma, post_sigma)
    if normalise > 0:
        g = _local_normalise(g, normalise)
    return np.ascontiguousarray(g, dtype=np.float32)


def _compose(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of ``p -> m(n(p))``."""
    a = m[:, :2] @ n[:, :2]
    t = m[:, :2] @ n[:, 2] + m[:, 2]
    return np.concatenate((a, t[:, None]), axis=1)


def _similarity(angle_deg: float, scale, c: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of a rotation by ``angle_deg`` after a zoom about ``c``.

    ``scale``: a number (isotropic zoom) or a pair (sx, sy) (axis-aligned zoom).
    """
    th = np.deg2rad(angle_deg)
    sx, sy = (scale, scale) if np.ndim(scale) == 0 else scale
    a = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ np.diag([sx, sy])
    return np.concatenate((a, (c - a @ c)[:, None]), axis=1)


def _warp_affine(img: np.ndarray, m: np.ndarray):
    """``img(m @ [x, y, 1])`` on the template grid and the mask of samples inside ``img``."""
    import cv2

    h, w = img.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(img, m.astype(np.float64), (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones((h, w), np.float32)
    inside = cv2.warpAffine(ones, m.astype(np.float64), (w, h), flags=flags,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) > 0.999
    return out, inside


def _ecc_score(tmpl: np.ndarray, img: np.ndarray, m: np.ndarray) -> float:
    """Correlation coefficient of ``tmpl`` and ``img`` warped by ``m`` over their overlap.

    -inf when ``m`` is not finite, the overlap is under a quarter of the
    template or either side is constant there.
    """
    if not np.all(np.isfinite(m)):
        return -np.inf
    iw, inside = _warp_affine(img, m)
    if inside.sum() < 0.25 * inside.size:
        return -np.inf
    r = _zncc(tmpl[inside].astype(np.float64), iw[inside].astype(np.float64))
    return r if r != 0.0 else -np.inf


def _plausible(m: np.ndarray, h: int, w: int, lim_scale: float = 2.0, lim_aniso: float = 1.6,
               lim_shift: float = 0.35) -> bool:
    """Whether a 2 x 3 map looks like an alignment rather than a divergence.

    Finite; singular values of the linear part within [1 / lim_scale,
    lim_scale] and their ratio below ``lim_aniso``; the image centre moved by
    less than ``lim_shift`` of the width (x) and height (y). The sets of
    :mod:`bsr.benchsets` stay well inside (zooms up to 1.31 in one axis and
    1.21 anisotropy for ``dilate50`` on a 597 x 161 pair; shifts of 25 px); the
    RoadScene divergences seen in tuning (a 0.5 zoom in one axis, a 220 px
    shift) do not.
    """
    if not np.all(np.isfinite(m)):
        return False
    sv = np.linalg.svd(m[:, :2], compute_uv=False)
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    moved = np.abs(m[:, :2] @ c + m[:, 2] - c)
    return (sv[1] > 1 / lim_scale and sv[0] < lim_scale and sv[0] < lim_aniso * sv[1]
            and bool(np.all(moved < lim_shift * np.array([w, h]))))


def _rotation_zoom_search(tmpl: np.ndarray, img: np.ndarray, angles, scales, radius: int,
                          keep: int) -> list[tuple[float, np.ndarray]]:
    """Best rotation + zoom + translation starts by normalised cross-correlation.

    For each rotation angle and zoom about the centre (each of ``scales`` a
    number, isotropic, or a pair (sx, sy)), the IR
    feature image is resampled once and ``cv2.matchTemplate``
    (``TM_CCOEFF_NORMED``: zero-mean normalised cross-correlation) scores
    every integer translation within ``+-radius`` of the visible feature
    image cropped by ``radius`` on each side. Returns the ``keep`` best as
    (score, 2 x 3 matrix), best first.
    """
    import cv2

    h, w = tmpl.shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    crop = np.ascontiguousarray(tmpl[radius:h - radius, radius:w - radius])
    found = []
    for ang in angles:
        for s in scales:
            m = _similarity(ang, s, c)
            iw, _ = _warp_affine(img, m)
            res = np.nan_to_num(cv2.matchTemplate(iw, crop, cv2.TM_CCOEFF_NORMED), nan=-1.0,
                                posinf=-1.0, neginf=-1.0)
            ky, kx = np.unravel_index(int(np.argmax(res)), res.shape)
            # crop(u) = tmpl(u + r) ~ iw(u + k)  ->  tmpl(p) ~ img(m(p + k - r))
            shift = np.array([[1.0, 0.0, kx - radius], [0.0, 1.0, ky - radius]])
            # tiny tie-break towards the identity
            score = float(res[ky, kx]) - 1e-4 * (abs(ang) / 10.0 + np.abs(np.log(s)).mean())
            found.append((score, _compose(m, shift)))
    found.sort(key=lambda x: -x[0])
    return found[:keep]


_CV_MOTION = {"affine": "MOTION_AFFINE", "euclidean": "MOTION_EUCLIDEAN",
              "translation": "MOTION_TRANSLATION"}
_ECC_ANGLES = tuple(float(a) for a in range(-9, 10, 3))
_ECC_CV_SCALES = tuple(np.geomspace(1 / 1.2, 1.2, 7))


def ecc_affine_opencv(ir: np.ndarray, vis: np.ndarray, motion: str = "affine",
                      levels: int | None = None, iters: int = 100, eps: float = 1e-4,
                      sigma: float = 0.5, post_sigma: float = 2.0, normalise: float = 8.0,
                      gauss_size: int = 5, search_angles=_ECC_ANGLES, search_scales=_ECC_CV_SCALES,
                      search_frac: float = 0.1, search_aniso: bool = True, keep: int = 3,
                      carry: int = 3, min_rho: float = 0.11, return_matrix: bool = False):
    """ECC alignment of the IR edge image to the visible one with ``cv2.findTransformECC``.

    Evangelidis & Psarakis, IEEE TPAMI 30(10) 2008; OpenCV's implementation
    (documentation of ``cv2.findTransformECC``, module ``video``), run with
    one thread (the caller's thread count is restored).

    Features: ``gradient_magnitude(., sigma, post_sigma)`` divided by its
    local mean (Gaussian of std ``normalise`` px; 0 disables; the
    normalisation is what makes ECC work across modalities: without it the
    mean EPE on RoadScene rose from about 1.7 to 3.3 px in tuning; sigma 0.5
    was slightly better than 1 and 2, post_sigma 1-2 better than 3, and the
    result was insensitive to ``gauss_size`` 3-7, 2-4 levels and
    ``eps`` 1e-3 - 1e-5).
    Pyramid: ``cv2.pyrDown`` (coarse pixel i at fine 2i, so the translation
    doubles between levels); ``levels`` (halvings) defaults to the number
    that leaves the short side >= 40 px.

    Initialisation (coarsest level): :func:`_rotation_zoom_search` over
    ``search_angles`` (default -9 ... 9 degrees in steps of 3) x
    ``search_scales`` (7 isotropic zooms in [1/1.2, 1.2]) and, with
    ``search_aniso``, the 42 axis-aligned anisotropic zooms (sx != sy) of the
    same values without rotation; translations within ``search_frac`` of the
    coarse short side (about +-30 px at full size for RoadScene). Starts: the
    best translation alone (the conservative start) and the ``keep`` best
    rotation/zoom starts. Each is refined by ECC at the coarsest level; the
    conservative one and the ``carry - 1`` best others are carried through
    all finer levels, and the one with the highest correlation coefficient at
    full size wins. (Choosing at the coarsest level, or not searching
    anisotropic zooms, left RoadScene test pairs with 30-60 px errors in
    tuning, where a better optimum existed.) ``motion="translation"``
    searches no rotation or zoom, ``"euclidean"`` no zoom.

    Iterations: ``findTransformECC`` at every level with the given motion
    model (``"affine"``, ``"euclidean"``, ``"translation"``), at most
    ``iters`` iterations or until the coefficient changes by < ``eps``;
    ``gauss_size`` is its internal Gaussian pre-filter. Guards: a level's
    result replaces its start only if OpenCV raised no ``cv2.error`` (it
    raises on non-convergence and NaNs), the matrix is plausible
    (:func:`_plausible`) and the correlation coefficient over the overlap
    (:func:`_ecc_score`) did not drop; otherwise the start is kept, so a
    failure falls back to the search's initialisation. If the winner's
    coefficient is below ``min_rho`` the edges agree nowhere and the identity
    is returned (no registration rather than a doubtful one): on the
    RoadScene test split the correct alignments scored >= 0.19 with these
    features, while every estimate below 0.11 (one pair whose fence pattern
    matches itself at many offsets; similar cases on TNO and M3FD) was off
    by 10-125 px. Flat or non-finite inputs give the identity.

    Returns the (2, H, W) field, or the 2 x 3 matrix ``M`` (IR position
    ``M @ [x, y, 1]`` of visible pixel (x, y); OpenCV's warp matrix) when
    ``return_matrix``.
    """
    import cv2

    if motion not in _CV_MOTION:
        raise ValueError(f"motion must be one of {', '.join(_CV_MOTION)}; got {motion!r}")
    ir, vis, levels = _ecc_inputs(ir, vis, levels)
    h, w = ir.shape
    mode = getattr(cv2, _CV_MOTION[motion])
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, int(iters), float(eps))
    identity = np.eye(2, 3)

    def finish(m):
        return m if return_matrix else affine_to_field(m, h, w)

    if not (np.all(np.isfinite(ir)) and np.all(np.isfinite(vis))):
        return finish(identity)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        fv = [_edge_features(vis, sigma, post_sigma, normalise)]
        fi = [_edge_features(ir, sigma, post_sigma, normalise)]
        for _ in range(levels):
            if min(fv[-1].shape) < 16:
                break
            fv.append(cv2.pyrDown(fv[-1]))
            fi.append(cv2.pyrDown(fi[-1]))
        top = len(fv) - 1
        if fv[top].std() < 1e-9 or fi[top].std() < 1e-9:
            return finish(identity)

        def refine(lev, m0, score0):
            try:
                # (OpenCV rejects a non-C-contiguous warp matrix)
                _, m = cv2.findTransformECC(fv[lev], fi[lev], np.ascontiguousarray(m0, np.float32), mode,
                                            criteria, None, int(gauss_size))
            except cv2.error:
                return m0, score0
            m = m.astype(np.float64)
            hl, wl = fv[lev].shape
            if not _plausible(m, hl, wl):
                return m0, score0
            score = _ecc_score(fv[lev], fi[lev], m)
            return (m, score) if score >= score0 - 1e-6 else (m0, score0)

        # initialisation at the coarsest level
        hc, wc = fv[top].shape
        radius = min(max(3, int(round(search_frac * min(hc, wc)))), (min(hc, wc) - 8) // 2)
        angles = (0.0,) if motion == "translation" else tuple(search_angles)
        scales = (1.0,) if motion in ("translation", "euclidean") else tuple(search_scales)
        conservative = identity
        if radius >= 1:
            conservative = _rotation_zoom_search(fv[top], fi[top], (0.0,), (1.0,), radius, 1)[0][1]
        starts = [(_ecc_score(fv[top], fi[top], conservative), conservative)]
        if radius >= 1:
            found = _rotation_zoom_search(fv[top], fi[top], angles, scales, radius, keep)
            if search_aniso and motion == "affine":
                pairs = [(sx, sy) for sx in scales for sy in scales if sx != sy]
                found += _rotation_zoom_search(fv[top], fi[top], (0.0,), pairs, radius, keep)
            found = sorted(found, key=lambda x: -x[0])[:keep]
            starts += [(_ecc_score(fv[top], fi[top], m), m) for _, m in found]
        # refine every start at the coarsest level; carry the translation-only start's
        # result and the best carry - 1 others to full size, where the best one wins
        hyps = [refine(top, m0, s0)[::-1] for s0, m0 in starts]
        hyps = hyps[:1] + sorted(hyps[1:], key=lambda x: -x[0])[:max(0, carry - 1)]
        for lev in range(top - 1, -1, -1):
            nxt = []
            for _, m in hyps:
                m = m.copy()
                m[:, 2] *= 2.0
                nxt.append(refine(lev, m, _ecc_score(fv[lev], fi[lev], m))[::-1])
            hyps = nxt
        rho, m = max(hyps, key=lambda x: x[0])
        if rho < min_rho or not _plausible(m, h, w):
            m = identity
    finally:
        cv2.setNumThreads(threads)
    return finish(m)


def ecc_affine(ir: torch.Tensor, vis: torch.Tensor, motion: str = "affine", **kw) -> torch.Tensor:
    """ECC registration, batched: :func:`ecc_affine_opencv` (OpenCV's ``findTransformECC``).

    ``motion``: ``"affine"`` (default), ``"euclidean"`` or ``"translation"``;
    ``"scale"`` (an axis-aligned zoom + translation, which OpenCV has no model
    for) runs the earlier numpy implementation :func:`ecc_affine_numpy`.
    Keyword arguments go to the function that runs.
    """
    if motion == "scale":
        return _per_pair(ecc_affine_numpy, ir, vis, motion=motion, **kw)
    return _per_pair(ecc_affine_opencv, ir, vis, motion=motion, **kw)


# --------------------------------------------------------------------------- TV-L1

def _saturated_edges(img: np.ndarray, sigma: float, post_sigma: float, norm_sigma: float,
                     k: float) -> np.ndarray:
    """Edge map in [0, 1): ``g / (g + k * local_mean(g) + 0.05 * mean(g))``.

    ``g`` is the smoothed Sobel magnitude. The ratio saturates, so an edge
    counts about the same whether it is strong in one modality and weak in
    the other; the global floor keeps flat, noisy regions near 0.
    """
    g = gradient_magnitude(img, sigma, post_sigma)
    m = ndimage.gaussian_filter(g, norm_sigma, mode="nearest")
    return g / (g + k * m + 0.05 * g.mean() + 1e-12)


def tvl1_numpy(ir: np.ndarray, vis: np.ndarray, sigma: float = 1.0, post_sigma: float = 2.0,
               norm_sigma: float = 8.0, saturate: float = 2.0, attachment: float = 5.0,
               tightness: float = 0.3, num_warp: int = 5, num_iter: int = 10,
               median: int = 0) -> np.ndarray:
    """TV-L1 flow between edge images of the IR and the visible image; (2, H, W) field.

    Edge images: :func:`_saturated_edges` with ``k = saturate`` (if
    ``saturate`` is 0, the locally normalised magnitude scaled by its 99.5th
    percentile instead). The IR edge image is the moving image, the visible
    one the reference. skimage returns (row, col) displacements ``d`` with
    ``moving(p + d) ~ reference(p)``, the same backward convention as
    :func:`bsr.warp.warp`; only the channel order is swapped.
    ``attachment`` (lambda: data weight; skimage's default 15 is tuned for
    intensity images, 5 suits these [0, 1) edge maps), ``tightness``,
    ``num_warp`` and ``num_iter`` are skimage's. ``median`` > 1 median-filters
    each component with that window (0: off).
    """
    from skimage.registration import optical_flow_tvl1

    def feat(img):
        img = np.asarray(img, dtype=np.float64)
        if saturate > 0:
            return _saturated_edges(img, sigma, post_sigma, norm_sigma, saturate).astype(np.float32)
        g = _local_normalise(gradient_magnitude(img, sigma, post_sigma), norm_sigma)
        return (g / (np.percentile(g, 99.5) + 1e-12)).clip(0, 1).astype(np.float32)

    ref, mov = feat(vis), feat(ir)
    d = optical_flow_tvl1(ref, mov, attachment=attachment, tightness=tightness,
                          num_warp=num_warp, num_iter=num_iter)
    field = np.stack((d[1], d[0])).astype(np.float64)
    if median and median > 1:
        field = np.stack([ndimage.median_filter(f, size=median, mode="nearest") for f in field])
    return field


def tvl1(ir: torch.Tensor, vis: torch.Tensor, **kw) -> torch.Tensor:
    """TV-L1 dense registration (see :func:`tvl1_numpy`), batched."""
    return _per_pair(tvl1_numpy, ir, vis, **kw)


REGISTRATION = {
    "phase": phase_correlation,
    "ECC": ecc_affine,
    "TV-L1": tvl1,
}
