"""No-reference and source-referenced fusion metrics on 8-bit grey levels.

All functions take 2-D arrays on the 0-255 scale (uint8 or float; they are
converted to float64) and return Python floats. The conventions follow the
Python evaluators common in infrared-visible fusion papers (e.g. the
``Evaluator`` shipped with CDDFuse, CVPR 2023), so numbers are comparable
with published tables; where the field has several definitions in use, the
alternatives are available by name (see :data:`DEFINITIONS` and
``docs/metrics.md``, which also lists value ranges and toolbox differences).

Sources of the formulas
-----------------------
* Qabf: C. S. Xydeas and V. Petrovic, "Objective image fusion performance
  measure", Electronics Letters 36(4):308-309, 2000.
* VIF (pixel domain): H. R. Sheikh and A. C. Bovik, "Image information and
  visual quality", IEEE TIP 15(2):430-444, 2006. VIFF here is the sum of
  VIF(ir -> fused) and VIF(vis -> fused), as the common evaluators report it
  (not the fusion-specific VIFF of Y. Han et al., Information Fusion 14(2),
  2013).
* SF: A. M. Eskicioglu and P. S. Fisher, "Image quality measures and their
  performance", IEEE Trans. Commun. 43(12):2959-2965, 1995.
* AG, MG, EI, SD, EN: J. Ma, Y. Ma and C. Li, "Infrared and visible image
  fusion methods and applications: A survey", Information Fusion 45:153-178,
  2019; the VIFB benchmark (X. Zhang, P. Ye and G. Xiao, CVPR Workshops 2020)
  for the MATLAB edge-intensity code.

Implementation
--------------
Everything is float64 and vectorised. The 17x17 (and smaller) Gaussian
windows of VIF are applied separably as products with small banded matrices
(BLAS), the 3x3 Sobel filters by array slicing; element-wise chains run on
row strips or column blocks small enough to stay in cache, and masked
updates are replaced by arithmetic (masked numpy operations are slow). The
values equal a direct ``scipy.signal.convolve2d`` transcription of the usual
code to rounding (``benchmarks/bench_metrics.py`` checks 1e-6 relative and
reports the speed-up).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
from scipy.ndimage import correlate1d
from threadpoolctl import ThreadpoolController

__all__ = [
    "METRICS", "DEFINITIONS", "DEFAULTS", "fusion_metrics",
    "qabf", "viff", "vif", "sf", "ag", "mg", "ei", "sd", "en", "sobel",
    "QABF_CONSTANTS", "qabf_max", "qabf_field_max", "VIF_MIN_SIZE",
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
        "forward_diff": "sum over the (M-1)x(N-1) grid of sqrt((dx^2+dy^2)/2) with backward "
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

_STRIP = 32  # rows per strip in element-wise chains (temporaries stay in L2)


# ----------------------------------------------------------------------------
# input handling

def _gray(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grey image on the 0-255 scale; got shape {a.shape}")
    if a.dtype.kind not in "uifb":
        raise ValueError(f"{name} must be numeric; got dtype {a.dtype}")
    kind = a.dtype.kind
    a = a.astype(np.float64, copy=False)
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    # a sum is non-finite if any element is (or, rarely, on overflow: then check exactly)
    if kind == "f" and not math.isfinite(float(a.sum())) and not np.isfinite(a).all():
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
# BLAS threads

_BLAS: ThreadpoolController | None = None


@contextmanager
def _one_blas_thread():
    """Run BLAS single-threaded inside the block. The banded products here are small;
    OpenBLAS' own threads only add overhead, and oversubscribe the cores when
    evaluate_pairs already runs one process per core (4x slower wall time measured).
    threadpoolctl finds the BLAS libraries once (they are loaded with numpy)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    with _BLAS.limit(limits=1, user_api="blas"):
        yield


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


# ----------------------------------------------------------------------------
# Qabf



_QSTRIP = 16  # image rows per Qabf strip (three images at once)


def _strip_sobel(p: np.ndarray):
    """Field-convention Sobel of the inner rows of zero-padded strips ``p`` (C, R+2, L),
    L = W + 2 (Sx = left - right, Sy = bottom - top, as convolve2d with the field's
    kernels). Returns (magnitude, angle), each (C, R*L) in the padded-column layout:
    entry r*L + c is image pixel (r, c - 1), and columns 0 and L-1 hold junk (finite)
    values that the callers leave out of their sums. Working on whole flattened rows
    keeps every operation a single contiguous loop.

    The angle is arctan(Sy / Sx), and exactly pi/2 where Sx == 0: there the ratio is made
    +inf by fmax with (Sx == 0) * inf, which is inf where Sx == 0 and NaN elsewhere (fmax
    ignores NaN); this also replaces the NaN of 0/0 and the -inf of negative/0."""
    ch, n, width = p.shape
    m = (n - 2) * width
    u = p[:, :-1] + p[:, 1:]
    sm = (u[:, :-1] + u[:, 1:]).reshape(ch, m)  # rows: top + 2 mid + bottom
    dv = (p[:, 2:] - p[:, :-2]).reshape(ch, m)  # bottom - top
    sx = np.empty((ch, m))
    sy = np.empty((ch, m))
    sx[:, 0] = sx[:, -1] = sy[:, 0] = sy[:, -1] = 0.0
    np.subtract(sm[:, :-2], sm[:, 2:], out=sx[:, 1:-1])
    w1 = dv[:, :-1] + dv[:, 1:]
    np.add(w1[:, :-1], w1[:, 1:], out=sy[:, 1:-1])  # columns: left + 2 mid + right
    g = np.multiply(sx, sx)
    g += np.multiply(sy, sy, out=sm)
    np.sqrt(g, out=g)
    fix = np.multiply(sx == 0, np.inf, out=dv)
    np.divide(sy, sx, out=sy)
    np.fmax(sy, fix, out=sy)
    np.arctan(sy, out=sy)
    return g, sy


def _strip_edge_transfer(gs, as_, gf, af, tie_gf: bool) -> np.ndarray:
    """g_S * Q^{SF} / (Tg * Ta) for strips of both sources (gs, as_: (2, M); gf, af:
    (M,)), in place of a temporary that is returned; the constant factor is applied once.

    Q^{SF} = Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (A - Da))), with
    G = min(g_S, g_F) / max(g_S, g_F) (ties: g_F for the field rule, else 1) and
    A = 1 - |alpha_S - alpha_F| / (pi / 2)."""
    c = QABF_CONSTANTS
    G = np.minimum(gs, gf)
    mx = np.maximum(gs, gf)
    if tie_gf:
        # field rule: G = g_F where g_S == g_F, i.e. divide by 1 there instead of by g_F
        # (this also turns 0/0 into 0)
        eq = gs == gf
        t = np.subtract(1.0, mx)
        t *= eq
        mx += t
    else:
        # strict rule: ratio 1 at nonzero ties already; zero ties (weight 0) give 0/tiny = 0
        np.maximum(mx, 1e-300, out=mx)
    G /= mx
    G *= c["kg"]
    G -= c["kg"] * c["Dg"]
    np.exp(G, out=G)
    G += 1.0
    d = np.subtract(as_, af, out=mx)
    np.abs(d, out=d)
    d *= -2.0 * c["ka"] / math.pi
    d += c["ka"] * (1.0 - c["Da"])
    np.exp(d, out=d)
    d += 1.0
    G *= d
    np.divide(gs, G, out=G)
    return G


def _qabf_core(f: np.ndarray, a: np.ndarray, b: np.ndarray, variant: str) -> tuple[float, float]:
    """(Qabf, sum of the fused image's zero-padded Sobel magnitude), by row strips of the
    three images at once (zero-padded copies in one reused buffer)."""
    c = QABF_CONSTANTS
    h, w = f.shape
    rows = min(_QSTRIP, h)
    buf = np.zeros((3, rows + 2, w + 2))
    tie_gf = variant == "field"
    num = wsum = fsum = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for i0 in range(0, h, rows):
            i1 = min(i0 + rows, h)
            p = buf[:, :i1 - i0 + 2]
            lo, hi = max(i0 - 1, 0), min(i1 + 1, h)
            top = lo - (i0 - 1)  # 1 when the strip starts at image row 0
            if top:
                p[:, 0] = 0.0
            if i1 + 1 > h:
                p[:, -1] = 0.0
            for ch, img in enumerate((f, a, b)):
                p[ch, top:top + hi - lo, 1:-1] = img[lo:hi]
            g, ang = _strip_sobel(p)
            q = _strip_edge_transfer(g[1:], ang[1:], g[0], ang[0], tie_gf)
            r = i1 - i0
            num += float(q.reshape(2, r, w + 2)[:, :, 1:-1].sum())  # drop the junk columns
            g = g.reshape(3, r, w + 2)[:, :, 1:-1]
            wsum += float(g[1:].sum())
            fsum += float(g[0].sum())
    q = 0.0 if wsum == 0.0 else c["Tg"] * c["Ta"] * num / wsum
    return q, fsum


def qabf_max() -> float:
    """Q_g(G=1) * Q_a(A=1) = 0.97479... with the usual constants (the sigmoids are not
    normalised to reach 1): the score of a fused image equal to both sources under the
    'strict' variant, and its upper bound."""
    c = QABF_CONSTANTS
    return (c["Tg"] / (1 + math.exp(c["kg"] * (1 - c["Dg"])))) * (c["Ta"] / (1 + math.exp(c["ka"] * (1 - c["Da"]))))


def qabf_field_max() -> float:
    """Upper bound of the 'field' variant, Tg * Q_a(A=1) = 0.97533...: its tie rule
    G = g_F feeds strengths > 1 into the sigmoid, which then exceeds Q_g(1)."""
    c = QABF_CONSTANTS
    return c["Tg"] * c["Ta"] / (1 + math.exp(c["ka"] * (1 - c["Da"])))


def qabf(fused, ir, vis, variant: str | None = None) -> float:
    """Xydeas-Petrovic edge-transfer measure Q^{AB/F}.

    Q = sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B), w = g^L (L = 1), with
    Q^{SF} = Q_g Q_a the sigmoid-mapped strength ratio and orientation agreement
    of Sobel gradients. Range [0, 0.9748] ('strict', see :func:`qabf_max`) or
    [0, 0.9753] ('field', :func:`qabf_field_max`). If neither source has any
    gradient (only possible for all-zero sources, since borders are zero-filled)
    the value is defined as 0.
    """
    f, a, b = _triple(fused, ir, vis)
    return _qabf_core(f, a, b, _choose("Qabf", variant))[0]


# ----------------------------------------------------------------------------
# VIF (pixel domain) and VIFF

_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10
VIF_MIN_SIZE = 41  # smallest side for which all four scales have a non-empty 'valid' window
_BLOCK = 32  # output rows/columns per banded-matrix block


def _gauss_taps(n: int) -> np.ndarray:
    # 1-D factor of MATLAB's fspecial('gaussian', n, n/5): the 2-D window is its outer
    # product (the fspecial cut-off at eps*max never triggers for these sizes).
    sd = n / 5.0
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    h = np.exp(-(t * t) / (2.0 * sd * sd))
    return h / h.sum()


_BANDS: dict[tuple, np.ndarray] = {}


def _band(taps: np.ndarray, b: int, step: int, transpose: bool = False) -> np.ndarray:
    """(b, step*(b-1)+n) banded matrix whose row i holds ``taps`` from column step*i
    (or its transpose, stored C-contiguous: BLAS runs markedly faster on it)."""
    key = (taps.tobytes(), b, step, transpose)
    band = _BANDS.get(key)
    if band is None:
        n = len(taps)
        band = np.zeros((b, step * (b - 1) + n))
        for i in range(b):
            band[i, step * i:step * i + n] = taps
        if transpose:
            band = np.ascontiguousarray(band.T)
        _BANDS[key] = band
    return band


def _filter_valid_blocks(x: np.ndarray, taps: np.ndarray, step: int = 1):
    """2-D 'valid' correlation of each channel of ``x`` (H, M, W) with outer(taps, taps),
    keeping every ``step``-th row and column, in blocks of output columns.

    Yields channel-major (M, Ho, b) arrays, left to right. Both passes are products with
    small banded matrices (BLAS), several times faster than direct 1-D correlations:
    the vertical pass on all channels at once, written column-major so that the
    horizontal pass reads contiguous column blocks of each channel. The result equals
    scipy's 'valid' convolution up to float64 rounding.
    """
    h, m, w = x.shape
    n = len(taps)
    if h < n or w < n:
        raise ValueError(f"image {h}x{w} smaller than the {n}x{n} window")
    ho, wo = (h - n) // step + 1, (w - n) // step + 1
    xr = x.reshape(h, m * w)
    bh, bw = min(_BLOCK, ho), min(_BLOCK, wo)
    kv = _band(taps, bh, step)
    v = np.empty((ho, m * w), order="F")
    for i0 in range(0, ho, bh):
        bb = min(bh, ho - i0)
        sp = step * (bb - 1) + n
        np.matmul(kv[:bb, :sp], xr[step * i0:step * i0 + sp], out=v[i0:i0 + bb])
    kh = _band(taps, bw, step, transpose=True)
    for j0 in range(0, wo, bw):
        b = min(bw, wo - j0)
        span = step * (b - 1) + n
        out = np.empty((m, ho, b))
        for c in range(m):
            c0 = c * w + step * j0
            np.matmul(v[:, c0:c0 + span], kh[:span, :b], out=out[c])
        yield out


def _filter_valid(x: np.ndarray, taps: np.ndarray, step: int = 1) -> np.ndarray:
    """Whole-array form of :func:`_filter_valid_blocks`: (H, M, W) -> (M, Ho, Wo)."""
    return np.concatenate(list(_filter_valid_blocks(x, taps, step)), axis=2)


def _vif_terms(o: np.ndarray, k: int, nums: np.ndarray, dens: np.ndarray) -> None:
    """Add one band's VIF sums (natural logs; only the ratio matters) to nums/dens.

    ``o`` (h, 3k+2, w) holds the local means of the k references and of the distorted
    image, then E[ref^2] (k), E[dist^2], E[ref*dist] (k); the k references are handled
    together. The field code's sequence of masked updates reduces to: den sums
    log(1 + s11/sn) where s11 >= eps; num sums log(1 + g^2 s11 / (max(s22 - g s12, eps)
    + sn)), g = s12 / (s11 + eps), where s11 >= eps and s22 >= eps (s12 < 0 gives g = 0
    in the field code: clamping s12 at 0 does the same). Here g s12 = s12^2 / D and
    g^2 s11 = g s12 * s11 / D, D = s11 + eps. Masks enter as 0/1 weights of the sums
    (masked numpy operations are slow); every term is finite since s11 >= 0.
    """
    eps, sn = _VIF_EPS, _VIF_SIGMA_NSQ
    mu2 = o[:, k:k + 1]
    s22 = mu2 * mu2
    np.subtract(o[:, 2 * k + 1:2 * k + 2], s22, out=s22)
    w2 = (s22 >= eps).astype(np.float64)
    mu1 = o[:, :k]
    s11 = mu1 * mu1
    np.subtract(o[:, k + 1:2 * k + 1], s11, out=s11)
    np.maximum(s11, 0.0, out=s11)
    s12 = mu1 * mu2
    np.subtract(o[:, 2 * k + 2:], s12, out=s12)
    np.maximum(s12, 0.0, out=s12)
    w = (s11 >= eps).astype(np.float64)
    t = s11 * (1.0 / sn)
    np.log1p(t, out=t)
    dens += np.einsum("ikj,ikj->k", t, w)
    d = s11 + eps
    q = np.multiply(s12, s12, out=s12)
    q /= d
    sv = np.subtract(s22, q, out=t)
    np.maximum(sv, eps, out=sv)
    sv += sn
    q *= s11
    q /= d
    q /= sv
    np.log1p(q, out=q)
    w *= w2
    nums += np.einsum("ikj,ikj->k", q, w)


_BAND_ROWS = 32  # output rows per band in _vif_scale (working set of a few MB)


def _vif_scale(base: list[np.ndarray], shift: list[float], taps: np.ndarray,
               nums: np.ndarray, dens: np.ndarray) -> None:
    """One VIF scale: local moments over the 'valid' Gaussian windows, band by band.

    ``base`` holds the k references and then the distorted image (H, W); ``shift`` a
    constant per image subtracted before the products (it leaves every variance and
    covariance unchanged and avoids cancellation in E[x^2] - E[x]^2). For each band of
    output rows the channels (refs, dist, squares, ref*dist) are formed for the input
    rows it needs, filtered vertically (one product with a banded matrix for all
    channels) and horizontally (column blocks), and reduced at once, so the working set
    stays in cache.
    """
    k = len(base) - 1
    m = 3 * k + 2
    h, w = base[0].shape
    n = len(taps)
    ho, wo = h - n + 1, w - n + 1
    rows, bw = min(_BAND_ROWS, ho), min(_BLOCK, wo)
    nb = -(-wo // bw)
    xb = np.empty((rows + n - 1, m, w))
    v = np.empty((rows, m * w))
    # block q of the horizontal pass lands in ob[:, q]; the columns past wo stay 0 and
    # add exactly 0 to both sums (zero moments give log(1 + 0) and a zero weight)
    ob = np.zeros((rows * m, nb, bw))
    kv = _band(taps, rows, 1)
    kh = _band(taps, bw, 1, transpose=True)
    for i0 in range(0, ho, rows):
        r = min(rows, ho - i0)
        sp = r + n - 1
        x = xb[:sp]
        for i, img in enumerate(base):
            np.subtract(img[i0:i0 + sp], shift[i], out=x[:, i])
        np.multiply(x[:, :k + 1], x[:, :k + 1], out=x[:, k + 1:2 * k + 2])
        np.multiply(x[:, :k], x[:, k:k + 1], out=x[:, 2 * k + 2:])
        np.matmul(kv[:r, :sp], x.reshape(sp, m * w), out=v[:r])
        v2 = v[:r].reshape(r * m, w)
        for q in range(nb):
            j0 = q * bw
            b = min(bw, wo - j0)
            np.matmul(v2[:, j0:j0 + b + n - 1], kh[:b + n - 1, :b], out=ob[:r * m, q, :b])
        _vif_terms(ob[:r * m].reshape(r, m, nb * bw), k, nums, dens)


def _vif_many(refs: list[np.ndarray], dist: np.ndarray) -> list[float]:
    """VIF(ref_k -> dist) for several references sharing one distorted image."""
    h, w = dist.shape
    if min(h, w) < VIF_MIN_SIZE:
        raise ValueError(f"VIF needs images of at least {VIF_MIN_SIZE}x{VIF_MIN_SIZE} pixels; got {h}x{w}")
    k = len(refs)
    nums, dens = np.zeros(k), np.zeros(k)
    base = list(refs) + [dist]
    shift = [float(img.mean()) for img in base]
    with _one_blas_thread():
        for scale in range(1, 5):
            _vif_scale(base, shift, _gauss_taps(2 ** (4 - scale + 1) + 1), nums, dens)
            if scale < 4:
                # the next scale filters with its own window, then keeps every second sample
                nxt = _gauss_taps(2 ** (4 - scale) + 1)
                base = [_filter_valid(img[:, None, :], nxt, step=2)[0] for img in base]
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

def fusion_metrics(fused, ir, vis, *, metrics: Iterable[str] | None = None,
                   qabf: str | None = None, ag: str | None = None,
                   mg: str | None = None, ei: str | None = None) -> dict[str, float]:
    """The eight fusion metrics of one image triple.

    Parameters
    ----------
    fused, ir, vis : 2-D arrays of equal shape, grey levels on the 0-255 scale
        (the visible image as the Y channel).
    metrics : subset of :data:`METRICS` to compute (default: all).
    qabf, ag, mg, ei : definition names from :data:`DEFINITIONS` (default:
        :data:`DEFAULTS`), e.g. ``mg="forward_diff", ei="sobel_plain"``.

    Returns ``{"Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"}`` (in that order,
    restricted to ``metrics``) -> float.
    """
    with _one_blas_thread():
        return _fusion_metrics(fused, ir, vis, metrics, qabf, ag, mg, ei)


def _fusion_metrics(fused, ir, vis, metrics, qabf, ag, mg, ei) -> dict[str, float]:
    f, a, b = _triple(fused, ir, vis)
    wanted = set(METRICS if metrics is None else metrics)
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    d_q, d_ag, d_mg, d_ei = _choose("Qabf", qabf), _choose("AG", ag), _choose("MG", mg), _choose("EI", ei)
    out: dict[str, float] = {}
    if "Qabf" in wanted:
        # Qabf computes the fused image's Sobel magnitude (zero border) anyway; the
        # Sobel-based MG / EI differ from it only on the one-pixel border ring.
        out["Qabf"], fsum = _qabf_core(f, a, b, d_q)
        if min(f.shape) >= 3:
            fsum -= _ring_sum(f, lambda s: _sobel_mag(s, "constant"))
            n = f.size
            if "MG" in wanted and d_mg == "sobel_mirror":
                out["MG"] = (fsum + _ring_sum(f, lambda s: _sobel_mag(s, "mirror"))) / (math.sqrt(2.0) * n)
            if "EI" in wanted:
                if d_ei == "sobel_normalized":
                    out["EI"] = (fsum + _ring_sum(f, lambda s: _sobel_mag(s, "reflect"))) / (4.0 * n)
                else:
                    out["EI"] = (fsum + _ring_sum(f, lambda s: _sobel_mag(s, "nearest"))) / n
    if "VIFF" in wanted:
        va, vb = _vif_many([a, b], f)
        out["VIFF"] = va + vb
    stats = {"SF", "SD", "EN"} & wanted
    if "AG" in wanted and d_ag == "central_diff":
        stats.add("AG")
    if stats:
        out.update(_fused_stats(f, stats))
    if "AG" in wanted and "AG" not in out:
        out["AG"] = _forward_diff_mean(f)
    if "MG" in wanted and "MG" not in out:
        out["MG"] = _forward_diff_mean(f) if d_mg == "forward_diff" else _mg_sobel(f)
    if "EI" in wanted and "EI" not in out:
        out["EI"] = _ei_sobel(f, plain=d_ei == "sobel_plain")
    return {m: float(out[m]) for m in METRICS if m in wanted}
