"""Misalignment simulation with ground-truth displacement fields.

Every function takes an aligned IR batch ``ir`` (B, C, H, W) in [0, 1] and
returns ``(misaligned_ir, flow_gt)`` with ``flow_gt`` (B, 2, H, W) in pixels,
such that ``bsr.warp.warp(misaligned_ir, flow_gt)`` reproduces ``ir`` away from
the borders (where content left the frame). So ``flow_gt`` is exactly the
field a registration method must predict to align the misaligned IR to the
visible image.

Kinds (the paper's two, plus one for augmentation and harder tests):

* :func:`shift` (Table 1): translation; a positive ``dx`` moves the content to
  the right, and ``flow_gt`` is the constant ``(dx, dy)``.
* :func:`dilate_crop` (Tables 5, 6): resize W x H -> (W + d) x (H + d)
  bilinearly (half-pixel centres, as OpenCV and ``F.interpolate``), then crop
  W x H about the centre (offset ``d // 2``): a zoom about the centre.
* :func:`random_smooth`: a random affine map plus a smooth elastic field.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ..warp import identity_grid, invert_flow, warp

__all__ = ["shift", "dilate_crop", "random_smooth", "apply", "check_level", "KINDS"]


def _check_ir(ir: torch.Tensor) -> None:
    if not isinstance(ir, torch.Tensor) or ir.ndim != 4:
        raise ValueError(f"ir must be a (B, C, H, W) tensor; got {getattr(ir, 'shape', type(ir))}")


def _px(value, what: str) -> float:
    """``value`` as a finite float (pixels); a bool, text or NaN/inf is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number of pixels; got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number of pixels; got {v}")
    return v


def check_level(kind: str, level, size=None):
    """Validate a misalignment ``level`` for ``kind`` (see :func:`apply`) and,
    when ``size`` = (H, W) is given, against an image of that size.

    Returns the level as an ``int`` when it is whole, else a ``float``.
    Raises ``ValueError`` with a one-line message for a level that cannot be
    applied as stated: not a finite number; a negative, non-integer (the crop
    offset is whole pixels) or image-sized dilate-crop; a shift not smaller
    than the image width; a negative or image-sized random translation.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown misalignment kind {kind!r}; expected one of {sorted(KINDS)}")
    v = _px(level, f"{kind} level")
    if kind == "dilate_crop":
        if not v.is_integer():
            raise ValueError(f"dilate_crop level must be a whole number of pixels; got {v:g}")
        if v < 0:
            raise ValueError(f"dilate_crop level must be >= 0; got {v:g}")
    if kind == "random_smooth" and v < 0:
        raise ValueError(f"random_smooth level (maximum translation) must be >= 0; got {v:g}")
    if size is not None:
        h, w = int(size[-2]), int(size[-1])
        if kind == "shift" and abs(v) >= w:
            raise ValueError(f"shift level {v:g} px moves the content out of the {w} px wide image; "
                             f"|level| must be < {w}")
        if kind in ("dilate_crop", "random_smooth") and v >= min(h, w):
            raise ValueError(f"{kind} level {v:g} px is not smaller than the {w}x{h} px image; "
                             f"it must be < {min(h, w)}")
    return int(v) if v.is_integer() else v


def shift(ir: torch.Tensor, dx: float, dy: float = 0.0):
    """Translate the content by (dx, dy) pixels (positive dx: to the right).

    The uncovered border repeats the edge pixels (border padding). Returns
    ``(misaligned_ir, flow_gt)`` with ``flow_gt`` = (dx, dy) everywhere.
    """
    _check_ir(ir)
    b, _, h, w = ir.shape
    dx, dy = _px(dx, "dx"), _px(dy, "dy")
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"shift ({dx:g}, {dy:g}) px is not smaller than the image ({w}x{h} px)")
    flow = torch.empty(b, 2, h, w, dtype=ir.dtype, device=ir.device)
    flow[:, 0] = float(dx)
    flow[:, 1] = float(dy)
    # misaligned(p) = ir(p - d)  <=>  warp by -d
    return warp(ir, -flow), flow


def _dilate_source_coords(n: int, d: int, dtype, device) -> torch.Tensor:
    """Source coordinate (in the original image) of each output pixel, 1-D."""
    scale = n / (n + d)          # output-of-resize pixel -> source pixel
    off = d // 2                 # centre-crop offset in the resized image
    y = torch.arange(n, dtype=dtype, device=device)
    return (y + off + 0.5) * scale - 0.5


def dilate_crop(ir: torch.Tensor, d: int):
    """Enlarge by ``d`` px in each dimension, then centre-crop to the original size.

    Returns ``(misaligned_ir, flow_gt)``. The misaligned image is produced by
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` and a crop, as
    the paper describes; ``flow_gt`` is the analytic inverse of that zoom:
    ``flow_x(x) = (x + 0.5) / s - 0.5 - d//2 - x`` with ``s = W / (W + d)``
    (likewise for y with H).
    """
    _check_ir(ir)
    v = _px(d, "d")
    if not v.is_integer():   # int() would apply 2.5 as 2 while the caller records 2.5
        raise ValueError(f"d must be a whole number of pixels; got {v:g}")
    d = int(v)
    if d < 0:
        raise ValueError(f"d must be >= 0; got {d}")
    b, c, h, w = ir.shape
    if d >= min(h, w):
        raise ValueError(f"d must be smaller than the image ({w}x{h} px); got {d}")
    if d == 0:
        return ir.clone(), torch.zeros(b, 2, h, w, dtype=ir.dtype, device=ir.device)
    big = F.interpolate(ir, size=(h + d, w + d), mode="bilinear", align_corners=False)
    off = d // 2
    mis = big[:, :, off:off + h, off:off + w].contiguous()
    # mis(y) = ir(s(y)), s(y) = (y + off + 0.5) * n/(n+d) - 0.5. Inverse of s:
    xs = torch.arange(w, dtype=ir.dtype, device=ir.device)
    ys = torch.arange(h, dtype=ir.dtype, device=ir.device)
    fx = (xs + 0.5) * (w + d) / w - 0.5 - off - xs
    fy = (ys + 0.5) * (h + d) / h - 0.5 - off - ys
    flow = torch.empty(b, 2, h, w, dtype=ir.dtype, device=ir.device)
    flow[:, 0] = fx[None, None, :]
    flow[:, 1] = fy[None, :, None]
    return mis, flow


def _smooth_noise(b, h, w, sigma, generator, dtype, device):
    """Gaussian-smoothed white noise (B, 2, H, W), unit peak-ish amplitude."""
    # draw on a coarse grid and upsample bicubically: cheap and smooth
    step = max(int(sigma), 1)
    gh, gw = max(h // step + 3, 3), max(w // step + 3, 3)
    noise = torch.randn(b, 2, gh, gw, generator=generator, dtype=dtype)
    field = F.interpolate(noise.to(device), size=(h, w), mode="bicubic", align_corners=True)
    return field


def random_smooth(ir: torch.Tensor, max_shift: float = 5.0, max_rotation_deg: float = 2.0,
                  max_scale: float = 0.03, elastic_px: float = 2.0, elastic_sigma: float = 32.0,
                  generator: torch.Generator | None = None):
    """A random affine transform (about the centre) plus a smooth elastic field.

    Args:
        max_shift: translation drawn uniformly in [-max_shift, max_shift] px.
        max_rotation_deg: rotation in [-r, r] degrees.
        max_scale: isotropic scale in [1 - s, 1 + s].
        elastic_px: peak magnitude of the elastic part (px).
        elastic_sigma: spatial scale of the elastic part (px).
        generator: a ``torch.Generator`` for repeatable draws.

    Returns ``(misaligned_ir, flow_gt)``; ``flow_gt`` is the numerical inverse
    of the sampling field used to make the misaligned image.
    """
    _check_ir(ir)
    b, _, h, w = ir.shape
    if not 0 <= _px(max_shift, "max_shift") < min(h, w):
        raise ValueError(f"max_shift must be >= 0 and smaller than the image ({w}x{h} px); got {max_shift}")
    dt, dev = ir.dtype, ir.device

    def u(*shape):
        return torch.rand(*shape, generator=generator, dtype=dt).to(dev) * 2 - 1

    t = u(b, 2) * max_shift
    ang = u(b) * math.radians(max_rotation_deg)
    sc = 1 + u(b) * max_scale
    grid = identity_grid(h, w, device=dev, dtype=dt)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    x = grid[:, 0] - cx
    y = grid[:, 1] - cy
    cos, sin = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
    s = sc[:, None, None]
    # sampling field of the misaligned image: mis(p) = ir(p + v(p))
    vx = (cos * x - sin * y) / s - x - t[:, 0, None, None]
    vy = (sin * x + cos * y) / s - y - t[:, 1, None, None]
    v = torch.stack((vx, vy), dim=1)
    if elastic_px > 0:
        e = _smooth_noise(b, h, w, elastic_sigma, generator, dt, dev)
        e = e / e.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * elastic_px
        v = v + e
    mis = warp(ir, v)
    return mis, invert_flow(v)


KINDS = {"shift", "dilate_crop", "random_smooth", "none"}


def apply(ir: torch.Tensor, kind: str, level: float = 0.0, generator: torch.Generator | None = None):
    """Dispatch by name: ``kind`` in ``KINDS``; ``level`` is s (px) for
    ``shift`` (horizontal), d (px) for ``dilate_crop`` and the maximum
    translation for ``random_smooth``. The level is checked first
    (:func:`check_level`, against the image size)."""
    _check_ir(ir)
    level = check_level(kind, level, ir.shape[-2:])
    if kind == "shift":
        return shift(ir, level, 0.0)
    if kind == "dilate_crop":
        return dilate_crop(ir, level)
    if kind == "random_smooth":
        return random_smooth(ir, max_shift=level, generator=generator)
    if kind == "none":
        b, _, h, w = ir.shape
        return ir.clone(), torch.zeros(b, 2, h, w, dtype=ir.dtype, device=ir.device)
    raise ValueError(f"unknown misalignment kind {kind!r}; expected one of {sorted(KINDS)}")
