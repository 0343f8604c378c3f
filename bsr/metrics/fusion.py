"""No-reference and source-referenced fusion metrics on 8-bit grey levels.

All functions take 2-D arrays on the 0-255 scale (uint8 or float; they are
converted to float64) and return Python floats. The conventions follow the
Python evaluators common in infrared-visible fusion papers (e.g. the
``Evaluator`` shipped with CDDFuse, CVPR 2023), so numbers are comparable
with published tables; where the field has several definitions in use, the
alternatives are available by name (see :data:`DEFINITIONS` and
``docs/metrics.md``).

Sources of the formulas
-----------------------
* Qabf: C. S. Xydeas and V. Petrovic, "Objective image fusion performance
  measure", Electronics Letters 36(4):308-309, 2000.
* VIF (pixel domain): H. R. Sheikh and A. C. Bovik, "Image information and
  visual quality", IEEE TIP 15(2):430-444, 2006. VIFF here is the sum of
  VIF(ir -> fused) and VIF(vis -> fused), as the common evaluators report it
  (not the fusion-specific VIFF of Han et al., Inf. Fusion 14(2), 2013).
* SF: A. M. Eskicioglu and P. S. Fisher, "Image quality measures and their
  performance", IEEE Trans. Commun. 43(12), 1995.
* AG, MG, EI, SD, EN: see the survey of J. Ma, Y. Ma and C. Li, "Infrared
  and visible image fusion methods and applications: A survey", Information
  Fusion 45:153-178, 2019, and the VIFB benchmark (X. Zhang, P. Ye and G.
  Xiao, CVPRW 2020) for the edge-intensity code.

Implementation: separable filters (``scipy.ndimage.correlate1d``) in
float64, fully vectorised; ``benchmarks/bench_metrics.py`` checks the values
against a direct ``scipy.signal.convolve2d`` transcription of the usual code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.ndimage import correlate1d

__all__ = [
    "METRICS", "DEFINITIONS", "DEFAULTS", "fusion_metrics",
    "qabf", "viff", "vif", "sf", "ag", "mg", "ei", "sd", "en", "sobel",
    "QABF_CONSTANTS", "qabf_max",
]

METRICS = ("Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN")

# Xydeas-Petrovic constants as used by every common implementation.
QABF_CONSTANTS = dict(L=1.0, Tg=0.9994, kg=-15.0, Dg=0.5, Ta=0.9879, ka=-22.0, Da=0.8)

_SMOOTH = np.array([1.0, 2.0, 1.0])
_DIFF = np.array([-1.0, 0.0, 1.0])  # correlation weights: right minus left

# Named definitions. Defaults first; every entry is documented in docs/metrics.md.
DEFINITIONS: dict[str, dict[str, str]] = {
    "Qabf": {
        "field": "Xydeas-Petrovic with Sobel gradients, zero-padded 'same' borders, "
                 "and the field code's tie rule G = g_F where g_S == g_F (CDDFuse/VIFB port)",
        "strict": "as 'field' but G = 1 where g_S == g_F (the ratio of equal strengths)",
    },
    "AG": {
        "central_diff": "mean sqrt((Gx^2+Gy^2)/2), central differences, one-sided at borders "
                        "(numpy.gradient; CDDFuse)",
        "forward_diff": "sum over the (M-1)x(N-1) interior of sqrt((dx^2+dy^2)/2) with backward "
                        "first differences, divided by (M-1)(N-1) (survey form)",
    },
    "MG": {
        "sobel_mirror": "mean sqrt((Sx^2+Sy^2)/2), unnormalised Sobel, border BORDER_REFLECT_101 "
                        "(OpenCV default; scipy 'mirror')",
        "forward_diff": "same formula as AG 'forward_diff' (survey form of the mean gradient)",
    },
    "EI": {
        "sobel_normalized": "mean sqrt(Sx^2+Sy^2), Sobel kernel / 4 (skimage sobel_h/sobel_v), "
                            "border 'reflect'",
        "sobel_plain": "mean sqrt(Sx^2+Sy^2), unnormalised Sobel, replicate border "
                       "(VIFB / MATLAB imfilter 'replicate'; scipy 'nearest')",
    },
}
DEFAULTS = {"Qabf": "field", "AG": "central_diff", "MG": "sobel_mirror", "EI": "sobel_normalized"}


# ----------------------------------------------------------------------------
# input handling

def _gray(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grey image on the 0-255 scale; got shape {a.shape}")
    if a.dtype.kind not in "uif" and a.dtype != np.bool_:
        raise ValueError(f"{name} must be numeric; got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _triple(fused, ir, vis):
    f, a, b = _gray(fused, "fused"), _gray(ir, "ir"), _gray(vis, "vis")
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"shape mismatch: fused {f.shape}, ir {a.shape}, vis {b.shape}")
    return f, a, b


def _choose(metric: str, name: str | None) -> str:
    name = DEFAULTS[metric] if name is None else name
    if name not in DEFINITIONS[metric]:
        raise ValueError(f"unknown {metric} definition {name!r}; choose from {sorted(DEFINITIONS[metric])}")
    return name


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


def _forward_diff_mean(x: np.ndarray) -> float:
    if x.shape[0] < 2 or x.shape[1] < 2:
        return 0.0
    dx = x[1:, 1:] - x[1:, :-1]
    dy = x[1:, 1:] - x[:-1, 1:]
    return float(np.mean(np.sqrt((dx * dx + dy * dy) * 0.5)))


# ----------------------------------------------------------------------------
# single-image metrics

def sf(img) -> float:
    """Spatial frequency sqrt(RF^2 + CF^2), RF/CF the RMS of horizontal/vertical first
    differences (each averaged over its own (H, W-1) / (H-1, W) grid). Range [0, 255*sqrt(2)]."""
    x = _gray(img, "image")
    rf2 = np.mean(np.square(np.diff(x, axis=1))) if x.shape[1] > 1 else 0.0
    cf2 = np.mean(np.square(np.diff(x, axis=0))) if x.shape[0] > 1 else 0.0
    return float(math.sqrt(rf2 + cf2))


def ag(img, definition: str | None = None) -> float:
    """Average gradient; default mean sqrt((Gx^2+Gy^2)/2) with ``numpy.gradient``
    (central differences inside, one-sided at the borders)."""
    x = _gray(img, "image")
    name = _choose("AG", definition)
    if name == "forward_diff":
        return _forward_diff_mean(x)
    if min(x.shape) < 2:
        return 0.0
    gy, gx = np.gradient(x)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) * 0.5)))


def mg(img, definition: str | None = None) -> float:
    """Mean gradient; default mean sqrt((Sx^2+Sy^2)/2) with the unnormalised Sobel and
    OpenCV's default border (reflect-101). About 7.3 x AG on natural images."""
    x = _gray(img, "image")
    name = _choose("MG", definition)
    if name == "forward_diff":
        return _forward_diff_mean(x)
    if min(x.shape) < 2:
        return 0.0  # a single row/column cannot be mirrored; no 2-D gradient
    sx, sy = sobel(x, mode="mirror")
    return float(np.mean(np.sqrt((sx * sx + sy * sy) * 0.5)))


def ei(img, definition: str | None = None) -> float:
    """Edge intensity; default mean Sobel magnitude with the kernel divided by 4
    (scikit-image convention, 'reflect' border). About 2.6 x AG on natural images."""
    x = _gray(img, "image")
    name = _choose("EI", definition)
    if name == "sobel_plain":
        sx, sy = sobel(x, mode="nearest")
    else:
        sx, sy = sobel(x, mode="reflect", normalize=True)
    return float(np.mean(np.sqrt(sx * sx + sy * sy)))


def sd(img) -> float:
    """Standard deviation of the grey levels (population form, ddof=0)."""
    return float(np.std(_gray(img, "image")))


def en(img) -> float:
    """Shannon entropy (bits) of the 256-bin histogram of the grey levels rounded to
    integers (values outside [0, 255] are clipped). Range [0, 8]."""
    x = _gray(img, "image")
    levels = np.clip(np.rint(x), 0, 255).astype(np.intp).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)) + 0.0)


# ----------------------------------------------------------------------------
# Qabf

def _qabf_strength_angle(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Field convention: convolve2d(img, h, 'same') with zero fill, h3 = x-Sobel, h1 = y-Sobel.
    # convolve2d flips the kernel, so the field's Sx is left - right and Sy bottom - top;
    # the joint sign matters for the angle where Sx == 0 (set to +pi/2), so it is kept.
    sx = -correlate1d(correlate1d(x, _SMOOTH, axis=0, mode="constant"), _DIFF, axis=1, mode="constant")
    sy = correlate1d(correlate1d(x, _DIFF, axis=0, mode="constant"), _SMOOTH, axis=1, mode="constant")
    g = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.arctan(sy / np.where(zero, 1.0, sx))
    alpha[zero] = math.pi / 2
    return g, alpha


def _qabf_edge_preservation(gs, as_, gf, af, variant: str) -> np.ndarray:
    c = QABF_CONSTANTS
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(gs, gf) / np.maximum(gs, gf)
    equal = gs == gf
    ratio[equal] = gf[equal] if variant == "field" else 1.0
    orient = 1.0 - np.abs(as_ - af) * (2.0 / math.pi)
    qg = c["Tg"] / (1.0 + np.exp(c["kg"] * (ratio - c["Dg"])))
    qa = c["Ta"] / (1.0 + np.exp(c["ka"] * (orient - c["Da"])))
    return qg * qa


def qabf_max() -> float:
    """The largest value Qabf can take: Q_g(G=1) * Q_a(A=1) ~ 0.9748 with the usual
    constants (the sigmoids are not normalised to reach 1). A fused image equal to
    both sources scores this under the 'strict' variant."""
    c = QABF_CONSTANTS
    return (c["Tg"] / (1 + math.exp(c["kg"] * (1 - c["Dg"])))) * (c["Ta"] / (1 + math.exp(c["ka"] * (1 - c["Da"]))))


def qabf(fused, ir, vis, variant: str | None = None) -> float:
    """Xydeas-Petrovic edge-transfer measure Q^{AB/F}.

    Q = sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B), w = g^L (L = 1), with
    Q^{SF} = Q_g Q_a the sigmoid-mapped strength ratio and orientation agreement
    of Sobel gradients. Range [0, ~0.9748] (see :func:`qabf_max`). If neither
    source has any gradient (only possible for all-zero sources, since borders
    are zero-filled) the value is defined as 0.
    """
    f, a, b = _triple(fused, ir, vis)
    variant = _choose("Qabf", variant)
    ga, aa = _qabf_strength_angle(a)
    gb, ab = _qabf_strength_angle(b)
    gf, af = _qabf_strength_angle(f)
    qaf = _qabf_edge_preservation(ga, aa, gf, af, variant)
    qbf = _qabf_edge_preservation(gb, ab, gf, af, variant)
    den = float(np.sum(ga) + np.sum(gb))  # L = 1
    if den == 0.0:
        return 0.0
    return float((np.sum(qaf * ga) + np.sum(qbf * gb)) / den)


# ----------------------------------------------------------------------------
# VIF (pixel domain) and VIFF

_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10
VIF_MIN_SIZE = 41  # smallest side for which all four scales have a non-empty 'valid' window


def _gauss_taps(n: int) -> np.ndarray:
    # 1-D factor of MATLAB's fspecial('gaussian', n, n/5): the 2-D window is its outer
    # product (the fspecial cut-off at eps*max never triggers for these sizes).
    sd = n / 5.0
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    h = np.exp(-(t * t) / (2.0 * sd * sd))
    return h / h.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray, step: int = 1) -> np.ndarray:
    """2-D 'valid' correlation of the last two axes with outer(taps, taps), then every
    ``step``-th row/column (the subsampling done after each filter pass)."""
    r = len(taps) // 2
    y = correlate1d(x, taps, axis=-1, mode="nearest")[..., r:x.shape[-1] - r][..., ::step]
    y = correlate1d(y, taps, axis=-2, mode="nearest")[..., r:x.shape[-2] - r, :][..., ::step, :]
    return y


def _vif_terms(mu1, mu2, e11, e22, e12):
    """Per-scale numerator and denominator sums (natural logs; the ratio is what counts)."""
    eps = _VIF_EPS
    s11 = np.maximum(e11 - mu1 * mu1, 0.0)
    s22 = np.maximum(e22 - mu2 * mu2, 0.0)
    s12 = e12 - mu1 * mu2
    g = s12 / (s11 + eps)
    sv = s22 - g * s12
    flat1 = s11 < eps
    g[flat1] = 0.0
    sv[flat1] = s22[flat1]
    s11[flat1] = 0.0
    flat2 = s22 < eps
    g[flat2] = 0.0
    sv[flat2] = 0.0
    neg = g < 0
    sv[neg] = s22[neg]
    g[neg] = 0.0
    np.maximum(sv, eps, out=sv)
    num = np.sum(np.log1p(g * g * s11 / (sv + _VIF_SIGMA_NSQ)))
    den = np.sum(np.log1p(s11 / _VIF_SIGMA_NSQ))
    return num, den


def _vif_many(refs: list[np.ndarray], dist: np.ndarray) -> list[float]:
    """VIF(ref_k -> dist) for several references sharing one distorted image."""
    h, w = dist.shape
    if min(h, w) < VIF_MIN_SIZE:
        raise ValueError(f"VIF needs images of at least {VIF_MIN_SIZE}x{VIF_MIN_SIZE} pixels; got {h}x{w}")
    k = len(refs)
    # Removing each image's mean leaves every variance/covariance unchanged and
    # avoids cancellation in E[x^2] - E[x]^2.
    imgs = np.stack([r - r.mean() for r in refs] + [dist - dist.mean()])
    nums, dens = np.zeros(k), np.zeros(k)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        taps = _gauss_taps(n)
        if scale > 1:
            imgs = _filter_valid(imgs, taps, step=2)
        rs, d = imgs[:k], imgs[k]
        stack = np.concatenate([imgs, rs * rs, (d * d)[None], rs * d])
        m = _filter_valid(stack, taps)
        mu_r, mu_d = m[:k], m[k]
        e_rr, e_dd, e_rd = m[k + 1:2 * k + 1], m[2 * k + 1], m[2 * k + 2:]
        for i in range(k):
            nu, de = _vif_terms(mu_r[i], mu_d, e_rr[i], e_dd, e_rd[i])
            nums[i] += nu
            dens[i] += de
    # A reference without any variance above the noise floor gives 0/0; the field
    # code maps that NaN to 1.
    return [1.0 if dens[i] == 0.0 else float(nums[i] / dens[i]) for i in range(k)]


def vif(ref, dist) -> float:
    """Pixel-domain VIF of ``dist`` against ``ref`` (Sheikh & Bovik 2006): four scales,
    Gaussian windows of N = 2^(5-s)+1 taps (sigma N/5), 'valid' borders, downsampling by
    2 after filtering, sigma_n^2 = 2. Range [0, inf) (1 for identical images, > 1 for
    contrast enhancement). A reference with no variance scores 1 (the field's NaN rule)."""
    r, d = _gray(ref, "ref"), _gray(dist, "dist")
    if r.shape != d.shape:
        raise ValueError(f"shape mismatch: ref {r.shape}, dist {d.shape}")
    return _vif_many([r], d)[0]


def viff(fused, ir, vis) -> float:
    """VIF(ir -> fused) + VIF(vis -> fused), as the common Python evaluators report VIFF.
    Range [0, inf); 2 for a fused image equal to both sources."""
    f, a, b = _triple(fused, ir, vis)
    va, vb = _vif_many([a, b], f)
    return va + vb


# ----------------------------------------------------------------------------
# all at once

# aliases: fusion_metrics' keyword arguments shadow these names
_qabf, _ag, _mg, _ei = qabf, ag, mg, ei

def fusion_metrics(fused, ir, vis, *, metrics: Iterable[str] | None = None,
                   qabf: str | None = None, ag: str | None = None,
                   mg: str | None = None, ei: str | None = None) -> dict[str, float]:
    """The eight fusion metrics of one image triple.

    Parameters
    ----------
    fused, ir, vis : 2-D arrays of equal shape, grey levels on the 0-255 scale
        (the visible image as the Y channel).
    metrics : subset of :data:`METRICS` to compute (default: all, in that order).
    qabf, ag, mg, ei : definition names from :data:`DEFINITIONS` (default:
        :data:`DEFAULTS`).

    Returns ``{"Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"}`` -> float.
    """
    f, a, b = _triple(fused, ir, vis)
    wanted = METRICS if metrics is None else tuple(metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    defs = {"Qabf": _choose("Qabf", qabf), "AG": _choose("AG", ag),
            "MG": _choose("MG", mg), "EI": _choose("EI", ei)}
    funcs = {
        "Qabf": lambda: _qabf(f, a, b, variant=defs["Qabf"]),
        "VIFF": lambda: viff(f, a, b),
        "SF": lambda: sf(f),
        "AG": lambda: _ag(f, definition=defs["AG"]),
        "MG": lambda: _mg(f, definition=defs["MG"]),
        "EI": lambda: _ei(f, definition=defs["EI"]),
        "SD": lambda: sd(f),
        "EN": lambda: en(f),
    }
    return {m: funcs[m]() for m in METRICS if m in wanted}
