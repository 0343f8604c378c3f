"""Classical pixel-level fusion rules for an (IR, visible) pair.

Every public function takes ``ir`` and ``vis`` as torch tensors of shape
(B, 1, H, W) with values in [0, 1] (the visible image as its luminance Y) and
returns the fused image with the same shape, dtype and device, clipped to
[0, 1]. None of them registers the inputs: pair them with a function of
:mod:`bsr.baselines.registration` (see :func:`bsr.baselines.register_then_fuse`).

Methods and sources:

* :func:`average` -- the pixel-wise mean.
* :func:`maximum` -- the pixel-wise maximum.
* :func:`laplacian_pyramid` -- Laplacian-pyramid fusion. Pyramid of
  P. J. Burt and E. H. Adelson, "The Laplacian pyramid as a compact image
  code", IEEE Trans. Communications 31(4), 1983; the selection rule (largest
  absolute coefficient on the band-pass levels, mean on the low-pass residual)
  is the basic "choose-max" rule of P. J. Burt and R. J. Kolczynski, "Enhanced
  image capture through fusion", ICCV 1993.
* :func:`gff` -- guided-filtering fusion: S. Li, X. Kang and J. Hu, "Image
  fusion with guided filtering", IEEE Trans. Image Processing 22(7), 2013,
  with the guided filter of K. He, J. Sun and X. Tang, "Guided image
  filtering", ECCV 2010 / TPAMI 2013.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = [
    "average", "maximum", "laplacian_pyramid", "gff", "guided_filter", "box_mean",
    "FUSION",
]


def _check_pair(ir: torch.Tensor, vis: torch.Tensor) -> None:
    for name, t in (("ir", ir), ("vis", vis)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 1:
            raise ValueError(f"{name} must be a (B, 1, H, W) tensor; got "
                             f"{tuple(getattr(t, 'shape', ())) or type(t).__name__}")
    if ir.shape != vis.shape:
        raise ValueError(f"ir {tuple(ir.shape)} and vis {tuple(vis.shape)} differ in shape")


def _finish(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return out.clamp(0.0, 1.0).to(dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------- simple rules

def average(ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Pixel-wise mean ``(ir + vis) / 2``."""
    _check_pair(ir, vis)
    return _finish(0.5 * (ir + vis), ir)


def maximum(ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Pixel-wise maximum (keeps hot IR targets and bright visible detail)."""
    _check_pair(ir, vis)
    return _finish(torch.maximum(ir, vis), ir)


# --------------------------------------------------------------------------- Laplacian pyramid

# Burt & Adelson's 5-tap generating kernel with a = 0.375: [1, 4, 6, 4, 1] / 16
_BURT = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


def _blur5(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable 5-tap Burt blur with symmetric (reflect) borders."""
    k = (_BURT * gain).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (2, 2, 0, 0), mode="reflect" if x.shape[-1] > 2 else "replicate")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = F.pad(x, (0, 0, 2, 2), mode="reflect" if x.shape[-2] > 2 else "replicate")
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def _reduce(x: torch.Tensor) -> torch.Tensor:
    return _blur5(x)[..., ::2, ::2]


def _expand(x: torch.Tensor, size) -> torch.Tensor:
    """Zero-insertion upsampling to ``size`` followed by the blur (gain 2 per axis)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, size[0], size[1])
    up[..., ::2, ::2] = x[..., : (size[0] + 1) // 2, : (size[1] + 1) // 2]
    return _blur5(up, gain=2.0)


def _levels_for(h: int, w: int, levels: int | None) -> int:
    auto = max(1, int(np.floor(np.log2(max(min(h, w), 1) / 8.0))))
    return auto if levels is None else max(0, min(int(levels), auto))


def laplacian_pyramid(ir: torch.Tensor, vis: torch.Tensor, levels: int | None = 4) -> torch.Tensor:
    """Laplacian-pyramid fusion (Burt & Adelson 1983; Burt & Kolczynski 1993).

    Each input is decomposed into ``levels`` band-pass images plus a low-pass
    residual; on each band-pass level the coefficient of larger magnitude is
    kept, the residuals are averaged, and the pyramid is collapsed. The
    decomposition reconstructs exactly, so fusing an image with itself returns
    it (to rounding). ``levels`` is capped so the coarsest level keeps at least
    8 px; ``None`` uses the cap.
    """
    _check_pair(ir, vis)
    h, w = ir.shape[-2:]
    n = _levels_for(h, w, levels)
    a = ir.to(torch.float64)
    b = vis.to(torch.float64)
    bands = []
    for _ in range(n):
        a_small, b_small = _reduce(a), _reduce(b)
        la = a - _expand(a_small, a.shape[-2:])
        lb = b - _expand(b_small, b.shape[-2:])
        bands.append(torch.where(la.abs() >= lb.abs(), la, lb))
        a, b = a_small, b_small
    out = 0.5 * (a + b)
    for band in reversed(bands):
        out = band + _expand(out, band.shape[-2:])
    return _finish(out, ir)


# --------------------------------------------------------------------------- guided filter

def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1) x (2r+1) window clipped to the image, via cumulative sums.

    ``x`` is (..., H, W); each output pixel divides the window sum by the
    number of pixels of the window that lie inside the image (as He et al.'s
    reference implementation), so constants are preserved at the borders.
    O(1) per pixel whatever ``r``.
    """
    x = np.asarray(x, dtype=np.float64)
    h, w = x.shape[-2:]

    def along(a: np.ndarray, axis: int, n: int) -> np.ndarray:
        c = np.cumsum(a, axis=axis)
        pad = [(0, 0)] * a.ndim
        pad[axis] = (1, 0)
        c = np.pad(c, pad)                       # c[i] = sum of a[:i]
        idx = np.arange(n)
        hi = np.minimum(idx + r + 1, n)
        lo = np.maximum(idx - r, 0)
        return np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)

    s = along(along(x, x.ndim - 2, h), x.ndim - 1, w)
    ny = np.minimum(np.arange(h) + r + 1, h) - np.maximum(np.arange(h) - r, 0)
    nx = np.minimum(np.arange(w) + r + 1, w) - np.maximum(np.arange(w) - r, 0)
    return s / (ny[:, None] * nx[None, :])


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter of He, Sun and Tang (ECCV 2010), box-filter form.

    Fits ``q = a * guide + b`` in every (2r+1)^2 window by ridge regression
    (regulariser ``eps``), then averages the coefficients over the windows
    covering each pixel. Arrays are (..., H, W); returns float64.
    """
    i = np.asarray(guide, dtype=np.float64)
    p = np.asarray(src, dtype=np.float64)
    mean_i = box_mean(i, r)
    mean_p = box_mean(p, r)
    cov_ip = box_mean(i * p, r) - mean_i * mean_p
    var_i = box_mean(i * i, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * i + box_mean(b, r)


# --------------------------------------------------------------------------- GFF

_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _gaussian_kernel(radius: int, sigma: float) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def gff_numpy(images: list[np.ndarray], avg_size: int = 31, r1: int = 45, eps1: float = 0.3,
              r2: int = 7, eps2: float = 1e-6, rg: int = 5, sigma_g: float = 5.0) -> np.ndarray:
    """Guided-filtering fusion of N registered grey images (H, W) in [0, 1].

    Li, Kang & Hu (TIP 2013), Sec. II-III:

    1. two-scale decomposition: base ``B = I * Z`` with Z a ``avg_size``^2
       average filter (31 x 31), detail ``D = I - B``;
    2. saliency ``S = |I * L| * g`` (3 x 3 Laplacian L, Gaussian g of size
       (2 rg + 1)^2 and std ``sigma_g``; rg = sigma_g = 5);
    3. binary weight maps ``P_n = [S_n == max_k S_k]``;
    4. refined weights ``W^B_n = GF_{r1,eps1}(P_n, I_n)``,
       ``W^D_n = GF_{r2,eps2}(P_n, I_n)``, each normalised to sum to one over n
       (negatives from the filter's overshoot are clipped to 0 first);
    5. ``F = sum_n W^B_n B_n + sum_n W^D_n D_n``.
    """
    imgs = np.stack([np.asarray(x, dtype=np.float64) for x in images])   # (N, H, W)
    base = np.stack([ndimage.uniform_filter(x, size=avg_size, mode="reflect") for x in imgs])
    detail = imgs - base
    g = _gaussian_kernel(rg, sigma_g)
    sal = []
    for x in imgs:
        hp = np.abs(ndimage.convolve(x, _LAPLACIAN, mode="reflect"))
        sal.append(ndimage.correlate1d(ndimage.correlate1d(hp, g, axis=0, mode="reflect"),
                                       g, axis=1, mode="reflect"))
    sal = np.stack(sal)
    p = (sal >= sal.max(axis=0, keepdims=True)).astype(np.float64)

    def refine(r: int, eps: float) -> np.ndarray:
        wts = np.clip(guided_filter(imgs, p, r, eps), 0.0, None)
        tot = wts.sum(axis=0, keepdims=True)
        uniform = np.full_like(wts, 1.0 / len(imgs))
        return np.where(tot > 1e-12, wts / np.maximum(tot, 1e-12), uniform)

    wb = refine(r1, eps1)
    wd = refine(r2, eps2)
    return (wb * base).sum(axis=0) + (wd * detail).sum(axis=0)


def gff(ir: torch.Tensor, vis: torch.Tensor, r1: int = 45, eps1: float = 0.3,
        r2: int = 7, eps2: float = 1e-6) -> torch.Tensor:
    """Guided-filtering fusion (Li, Kang & Hu, TIP 2013) with the paper's parameters.

    See :func:`gff_numpy` for the steps. Fusing an image with itself returns it
    (equal saliency gives equal weights, and ``B + D = I``).
    """
    _check_pair(ir, vis)
    a = ir.detach().to("cpu", torch.float64).numpy()
    b = vis.detach().to("cpu", torch.float64).numpy()
    out = np.stack([gff_numpy([a[k, 0], b[k, 0]], r1=r1, eps1=eps1, r2=r2, eps2=eps2)
                    for k in range(a.shape[0])])[:, None]
    return _finish(torch.from_numpy(out), ir)


FUSION = {
    "average": average,
    "max": maximum,
    "LP": laplacian_pyramid,
    "GFF": gff,
}
