"""The package's own ECC (forward-additive iterations in numpy after an exhaustive
zoom + translation search), kept beside the OpenCV-based :mod:`bsr.baselines.ecc`.

It is not registered in :data:`bsr.baselines.registration.REGISTRATION`;
``ecc_affine(..., motion="scale")`` (an axis-aligned zoom, which OpenCV has no
model for) runs it. Measured against the OpenCV-based ECC in
``benchmarks/ecc_strength.py`` (docs/baselines.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .edges import _local_normalise, _pyr_down, _zncc, gradient_magnitude
from .fields import affine_to_field


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
