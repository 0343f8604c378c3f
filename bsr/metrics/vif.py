"""Pixel-domain VIF (Sheikh & Bovik 2006) and VIFF, the sum of VIF from each
source to the fused image (``bsr.metrics.fusion`` gives the sources)."""

from __future__ import annotations

import numpy as np

from .common import _gray, _one_blas_thread, _triple

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
