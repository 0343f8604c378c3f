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
  Applied to Hann-windowed gradient-magnitude images.
* :func:`ecc_affine` -- affine transform maximising the enhanced correlation
  coefficient (G. D. Evangelidis and E. Z. Psarakis, "Parametric image
  alignment using enhanced correlation coefficient maximization", IEEE TPAMI
  30(10), 2008), forward-additive iterations written here in numpy, on
  gradient-magnitude images, coarse to fine over a Gaussian pyramid after an
  exhaustive integer-translation search at the coarsest level.
* :func:`tvl1` -- dense TV-L1 optical flow (C. Zach, T. Pock and H. Bischof,
  "A duality based approach for realtime TV-L1 optical flow", DAGM 2007;
  J. Sanchez, E. Meinhardt-Llopis and G. Facciolo, "TV-L1 optical flow
  estimation", IPOL 2013) as ``skimage.registration.optical_flow_tvl1``, on
  locally normalised gradient-magnitude images.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "gradient_magnitude", "phase_correlation", "ecc_affine", "tvl1",
    "affine_to_field", "translation_to_field", "ecc_affine_numpy",
    "phase_correlation_numpy", "tvl1_numpy", "REGISTRATION",
]


# --------------------------------------------------------------------------- helpers

def _check_pair(ir: torch.Tensor, vis: torch.Tensor) -> None:
    for name, t in (("ir", ir), ("vis", vis)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 1:
            raise ValueError(f"{name} must be a (B, 1, H, W) tensor; got "
                             f"{tuple(getattr(t, 'shape', ())) or type(t).__name__}")
    if ir.shape != vis.shape:
        raise ValueError(f"ir {tuple(ir.shape)} and vis {tuple(vis.shape)} differ in shape")


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
                            sigma: float = 1.0, feature: str = "gradient") -> np.ndarray:
    """Global translation by phase correlation of windowed edge images; (2, H, W) field.

    ``feature``: ``"gradient"`` (Sobel magnitude, the default) or
    ``"orientation"`` (the doubled-angle unit gradient ``(gx + i gy)^2 / |g|``
    weighted by magnitude, which is insensitive to contrast reversal between
    modalities -- after A. J. Fitch, A. Kadyrov, W. J. Christmas and J. Kittler,
    "Orientation correlation", BMVC 2002).
    """
    from skimage.registration import phase_cross_correlation

    h, w = ir.shape
    if feature == "gradient":
        a = gradient_magnitude(vis, sigma, 0.0)
        b = gradient_magnitude(ir, sigma, 0.0)
        a = a - a.mean()
        b = b - b.mean()
    elif feature == "orientation":
        def orient(img):
            x = ndimage.gaussian_filter(np.asarray(img, np.float64), sigma, mode="nearest")
            g = ndimage.sobel(x, axis=1, mode="nearest") + 1j * ndimage.sobel(x, axis=0, mode="nearest")
            return g * g / (np.abs(g) + 1e-12)
        a, b = orient(vis), orient(ir)
    else:
        raise ValueError(f"feature must be 'gradient' or 'orientation'; got {feature!r}")
    win = _hann2d(h, w)
    shift, _, _ = phase_cross_correlation(a * win, b * win, upsample_factor=upsample,
                                          normalization="phase")
    # skimage: moving shifted by ``shift`` (row, col) matches the reference, i.e.
    # ir(p - shift) ~ vis(p); our field samples ir at p + field, so field = -shift.
    return translation_to_field(-float(shift[1]), -float(shift[0]), h, w)


def phase_correlation(ir: torch.Tensor, vis: torch.Tensor, upsample: int = 20,
                      sigma: float = 1.0, feature: str = "gradient") -> torch.Tensor:
    """Phase-correlation translation (see :func:`phase_correlation_numpy`), batched."""
    return _per_pair(phase_correlation_numpy, ir, vis, upsample=upsample, sigma=sigma,
                     feature=feature)


# --------------------------------------------------------------------------- ECC

def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur (sigma 1) and keep every second sample: coarse pixel i sits at fine 2i."""
    return ndimage.gaussian_filter(x, 1.0, mode="nearest")[::2, ::2]


def _zncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def _coarse_translation_search(tmpl: np.ndarray, img: np.ndarray, radius: int) -> tuple[int, int]:
    """Integer (tx, ty) maximising ZNCC of tmpl(p) and img(p + t) on their overlap."""
    h, w = tmpl.shape
    best, best_t = -np.inf, (0, 0)
    for ty in range(-radius, radius + 1):
        for tx in range(-radius, radius + 1):
            y0, y1 = max(0, -ty), min(h, h - ty)
            x0, x1 = max(0, -tx), min(w, w - tx)
            if (y1 - y0) < h // 2 or (x1 - x0) < w // 2:
                continue
            c = _zncc(tmpl[y0:y1, x0:x1], img[y0 + ty:y1 + ty, x0 + tx:x1 + tx])
            # tiny preference for small shifts breaks ties on featureless input
            c -= 1e-6 * (tx * tx + ty * ty)
            if c > best:
                best, best_t = c, (tx, ty)
    return best_t


def _ecc_level(tmpl: np.ndarray, img: np.ndarray, a: np.ndarray, t: np.ndarray, c: np.ndarray,
               iters: int, tol: float, motion: str, margin: int):
    """Forward-additive ECC iterations at one pyramid level.

    Warp: IR position ``q = A (p - c) + c + t`` of template pixel ``p``.
    Returns updated (A, t) and the final correlation coefficient.
    """
    h, w = tmpl.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xs - c[0], ys - c[1]
    gy_img, gx_img = np.gradient(img)
    inner = np.zeros((h, w), bool)
    inner[margin:h - margin, margin:w - margin] = True
    rho = 0.0
    for _ in range(iters):
        qx = a[0, 0] * u + a[0, 1] * v + c[0] + t[0]
        qy = a[1, 0] * u + a[1, 1] * v + c[1] + t[1]
        valid = inner & (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        if valid.sum() < 0.1 * h * w:
            break
        coords = np.stack((qy[valid], qx[valid]))
        iw = ndimage.map_coordinates(img, coords, order=1, mode="nearest")
        gx = ndimage.map_coordinates(gx_img, coords, order=1, mode="nearest")
        gy = ndimage.map_coordinates(gy_img, coords, order=1, mode="nearest")
        tv = tmpl[valid]
        tv = tv - tv.mean()
        iw = iw - iw.mean()
        if motion == "affine":
            uu, vv = u[valid], v[valid]
            jac = np.stack((gx * uu, gy * uu, gx * vv, gy * vv, gx, gy), axis=1)
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
        tnorm = np.linalg.norm(tv)
        inorm = np.linalg.norm(iw)
        corr = float(tv @ iw)
        rho = corr / (tnorm * inorm + 1e-300)
        num = inorm ** 2 - ip @ hinv @ ip
        den = corr - tp @ hinv @ ip
        if den > 0:
            lam = num / den
        else:
            # Evangelidis & Psarakis' second case: choose lambda so the update
            # raises the correlation (it is the ratio of projected norms).
            lam1 = np.sqrt(max(ip @ hinv @ ip, 0.0) / max(tp @ hinv @ tp, 1e-300))
            lam2 = (ip @ hinv @ tp - corr) / max(tp @ hinv @ tp, 1e-300)
            lam = max(lam1, lam2)
        dp = hinv @ (jac.T @ (lam * tv - iw))
        if motion == "affine":
            a = a + np.array([[dp[0], dp[2]], [dp[1], dp[3]]])
            t = t + dp[4:6]
            step = np.abs(dp[4:6]).max() + np.abs(dp[:4]).max() * max(h, w) / 2
        else:
            t = t + dp
            step = np.abs(dp).max()
        if step < tol:
            break
    return a, t, rho


def ecc_affine_numpy(ir: np.ndarray, vis: np.ndarray, motion: str = "affine",
                     levels: int | None = None, iters: int = 60, tol: float = 1e-3,
                     sigma: float = 1.0, post_sigma: float = 1.5, search_radius: int = 3,
                     affine_levels: int = 1, normalise: float = 0.0,
                     return_matrix: bool = False):
    """ECC alignment of the IR edge image to the visible edge image.

    Pyramid: features (``gradient_magnitude(., sigma, post_sigma)``) are
    computed at full resolution and reduced by blur-and-decimate; ``levels``
    defaults to the number of halvings that leave the short side >= 40 px.
    At the coarsest level, an exhaustive integer translation search within
    ``search_radius`` px (so +-radius * 2^levels at full size) initialises
    the iterations; each finer level starts from the coarser result with the
    translation doubled. ``motion``: ``"affine"`` (6 parameters) or
    ``"translation"``.

    Returns the (2, H, W) field, or the 2 x 3 matrix ``M`` (IR position
    ``M @ [x, y, 1]`` of visible pixel (x, y)) when ``return_matrix``.
    """
    if motion not in ("affine", "translation"):
        raise ValueError(f"motion must be 'affine' or 'translation'; got {motion!r}")
    h, w = ir.shape
    if levels is None:
        levels = max(0, int(np.floor(np.log2(min(h, w) / 40.0))))
    fi = [gradient_magnitude(ir, sigma, post_sigma)]
    fv = [gradient_magnitude(vis, sigma, post_sigma)]
    if normalise > 0:
        fi = [_local_normalise(fi[0], normalise)]
        fv = [_local_normalise(fv[0], normalise)]
    for _ in range(levels):
        fi.append(_pyr_down(fi[-1]))
        fv.append(_pyr_down(fv[-1]))
    c0 = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = np.eye(2)
    tx, ty = _coarse_translation_search(fv[-1], fi[-1], search_radius) if search_radius > 0 else (0, 0)
    t = np.array([tx, ty], dtype=np.float64)
    for lev in range(levels, -1, -1):
        c = c0 / 2 ** lev
        margin = 2 if lev > 0 else 4
        mot = motion if lev < affine_levels else "translation"
        a, t, _ = _ecc_level(fv[lev], fi[lev], a, t, c, iters, tol / 2 ** lev, mot, margin)
        if lev > 0:
            t = 2.0 * t
    # q = A (p - c0) + c0 + t  ->  M = [A | c0 + t - A c0]
    m = np.concatenate((a, (c0 + t - a @ c0)[:, None]), axis=1)
    if return_matrix:
        return m
    return affine_to_field(m, h, w)


def ecc_affine(ir: torch.Tensor, vis: torch.Tensor, motion: str = "affine", **kw) -> torch.Tensor:
    """ECC affine registration (see :func:`ecc_affine_numpy`), batched."""
    return _per_pair(ecc_affine_numpy, ir, vis, motion=motion, **kw)


# --------------------------------------------------------------------------- TV-L1

def tvl1_numpy(ir: np.ndarray, vis: np.ndarray, sigma: float = 1.0, post_sigma: float = 1.0,
               norm_sigma: float = 8.0, attachment: float = 15.0, tightness: float = 0.3,
               num_warp: int = 5, num_iter: int = 10, median: int = 0) -> np.ndarray:
    """TV-L1 flow between locally normalised gradient-magnitude images; (2, H, W) field.

    The IR feature image is the moving image and the visible one the
    reference. skimage returns (row, col) displacements ``d`` with
    ``moving(p + d) ~ reference(p)``, the same backward convention as
    :func:`bsr.warp.warp`; only the channel order is swapped. ``median`` > 0
    applies a median filter of that size to each component (robust clean-up
    of outliers); 0 disables it.
    """
    from skimage.registration import optical_flow_tvl1

    def feat(img):
        g = gradient_magnitude(img, sigma, post_sigma)
        g = _local_normalise(g, norm_sigma)
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
