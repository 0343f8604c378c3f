"""Fields of the registration baselines: a translation or an affine map as a dense
(2, H, W) field in the package convention (:mod:`bsr.warp`: x first, backward
warping), and batching of a numpy (ir, vis) -> field function over torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from .fusion import _check_pair


def _per_pair(fn, ir: torch.Tensor, vis: torch.Tensor, **kw) -> torch.Tensor:
    """Run a numpy (ir, vis) -> (2, H, W) field function over a batch."""
    _check_pair(ir, vis)
    a = ir.detach().to("cpu", torch.float64).numpy()
    b = vis.detach().to("cpu", torch.float64).numpy()
    fields = [fn(a[k, 0], b[k, 0], **kw) for k in range(a.shape[0])]
    out = torch.from_numpy(np.stack(fields).astype(np.float32))
    dtype = ir.dtype if ir.dtype.is_floating_point else torch.float32
    return out.to(device=ir.device, dtype=dtype)


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
