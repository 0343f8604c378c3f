"""Small differentiable image filters shared by the losses (no kornia needed).

All functions take (B, C, H, W) tensors and work channel by channel.

* :func:`sobel` - Sobel derivatives (gx, gy), replicate (or zero) padding. With
  ``normalized=True`` (default) the 3x3 kernels are divided by 8, so a ramp
  of slope ``s`` per pixel gives exactly ``s``: the value is a derivative
  estimate in intensity units per pixel. ``normalized=False`` gives the raw
  integer kernel (8x larger), as OpenCV's ``Sobel`` and CDDFuse's code.
* :func:`sobel_magnitude` - ``|grad|`` as the Euclidean norm ("l2",
  ``sqrt(gx^2 + gy^2 + eps)``) or the L1 norm ``|gx| + |gy|``.
* :func:`gaussian_kernel1d`, :func:`gaussian_window` - normalised Gaussian;
  :func:`gaussian_blur` - separable Gaussian blur, replicate border.
* :func:`box_filter` - local mean over a k x k window (border windows are
  truncated: the mean is over the pixels inside the image).
* :func:`ssim` - SSIM of Wang et al. (IEEE TIP 13(4), 2004), Gaussian window
  11 / sigma 1.5, K1 = 0.01, K2 = 0.03, computed on 'valid' windows only
  (the same numbers as ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["sobel", "sobel_magnitude", "gaussian_kernel1d", "gaussian_window", "gaussian_blur",
           "box_filter", "ssim"]

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def check4(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor; got {getattr(x, 'shape', type(x))}")


@lru_cache(maxsize=32)
def _sobel_kernels(dtype: torch.dtype, device: torch.device, normalized: bool) -> torch.Tensor:
    kx = torch.tensor(_SOBEL_X, dtype=dtype, device=device)
    if normalized:
        kx = kx / 8.0
    ky = kx.t().contiguous()
    return torch.stack((kx, ky))[:, None]          # (2, 1, 3, 3)


def sobel(x: torch.Tensor, normalized: bool = True,
          padding: str = "replicate") -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives of every channel.

    Args:
        x: (B, C, H, W).
        normalized: divide the kernels by 8 (derivative per pixel).
        padding: ``"replicate"`` (a constant image gives 0) or ``"zeros"``
            (as the fusion metrics' Sobel, :mod:`bsr.metrics.qabf`).

    Returns:
        ``(gx, gy)``, each (B, C, H, W): gx along the width (x, positive when
        intensity grows to the right), gy along the height (positive when it
        grows downwards).
    """
    check4(x)
    b, c, h, w = x.shape
    k = _sobel_kernels(x.dtype, x.device, bool(normalized))
    if padding not in ("replicate", "zeros"):
        raise ValueError(f"padding must be 'replicate' or 'zeros'; got {padding!r}")
    mode = "constant" if padding == "zeros" else padding
    xp = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode=mode)
    g = F.conv2d(xp, k)                              # (B*C, 2, H, W)
    g = g.reshape(b, c, 2, h, w)
    return g[:, :, 0], g[:, :, 1]


def sobel_magnitude(x: torch.Tensor, norm: str = "l2", normalized: bool = True,
                    eps: float = 1e-12) -> torch.Tensor:
    """Per-channel gradient magnitude (B, C, H, W).

    ``norm="l2"``: ``sqrt(gx^2 + gy^2 + eps)`` (``eps`` keeps the gradient
    finite on flat regions; the floor it adds is ``sqrt(eps)`` = 1e-6).
    ``norm="l1"``: ``|gx| + |gy|``.
    """
    gx, gy = sobel(x, normalized=normalized)
    if norm == "l2":
        return torch.sqrt(gx * gx + gy * gy + eps)
    if norm == "l1":
        return gx.abs() + gy.abs()
    raise ValueError(f"norm must be 'l2' or 'l1'; got {norm!r}")


def gaussian_kernel1d(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``size`` (sums to 1)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer; got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    r = (size - 1) / 2.0
    t = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 2-D Gaussian window (size, size), the outer product of two 1-D ones."""
    g = gaussian_kernel1d(size, sigma, dtype=dtype, device=device)
    return g[:, None] * g[None, :]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel (size ``2 ceil(3 sigma) + 1``), replicate border."""
    check4(x)
    k = gaussian_kernel1d(2 * int(math.ceil(3 * sigma)) + 1, sigma, dtype=x.dtype, device=x.device)
    r = k.numel() // 2
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def _sep_conv_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' convolution of every channel with the 1-D kernel g."""
    b, c, h, w = x.shape
    k = g.numel()
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(y, g.view(1, 1, 1, k))
    y = F.conv2d(y, g.view(1, 1, k, 1))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def box_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size`` x ``size`` window centred on each pixel (odd size).

    Windows that cross the border are truncated (mean over the pixels inside),
    so the output has the input's shape.
    """
    check4(x)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer; got {size}")
    if size == 1:
        return x
    r = size // 2
    y = F.avg_pool2d(x, (1, size), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(y, (size, 1), stride=1, padding=(r, 0), count_include_pad=False)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03,
         reduction: str = "mean") -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), differentiable in both inputs.

    Args:
        x, y: (B, C, H, W) images with values in ``[0, data_range]``.
        window: odd Gaussian window size; shrunk (to the largest odd size that
            fits) for images smaller than the window.
        sigma: Gaussian standard deviation.
        reduction: ``"mean"`` (a scalar), ``"none"`` (per sample, (B,)) or
            ``"map"`` (the (B, C, H - window + 1, W - window + 1) SSIM map).

    Returns:
        SSIM in [-1, 1]; ``ssim(x, x) == 1``.
    """
    check4(x, "x")
    check4(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    h, w = x.shape[-2:]
    win = min(int(window), h, w)
    if win % 2 == 0:
        win -= 1
    if win < 1:
        raise ValueError("images are empty")
    g = gaussian_kernel1d(win, sigma, dtype=x.dtype, device=x.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x = _sep_conv_valid(x, g)
    mu_y = _sep_conv_valid(y, g)
    sxx = _sep_conv_valid(x * x, g) - mu_x * mu_x
    syy = _sep_conv_valid(y * y, g) - mu_y * mu_y
    sxy = _sep_conv_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    smap = num / den
    if reduction == "map":
        return smap
    if reduction == "none":
        return smap.flatten(1).mean(1)
    if reduction == "mean":
        return smap.mean()
    raise ValueError(f"reduction must be 'mean', 'none' or 'map'; got {reduction!r}")

