"""Search-free cross-modal similarity of a warped image, for training on per-sample misalignments.

The paper's L_nda needs a correspondence search per image pair (about 2 s per
RoadScene pair), which fits a misalignment fixed per image but not a fresh
one per sample. Here the warped image is compared with the fixed one directly
at every step, as VoxelMorph does with NCC (Balakrishnan et al., IEEE TMI
2019), through MIND self-similarity descriptors (Heinrich et al., Medical
Image Analysis 2012), which infrared and visible images share at their
structures whatever their intensities. Coarse scales widen the capture range:
at 1/4 resolution a 16 px error is a 4 px one.

Loss terms (all means over valid pixels):

* :func:`mind_loss`: ``sum_s |MIND(pool_s(warped)) - MIND(pool_s(fixed))|``;
* :func:`warped_mind_loss`: the same with the moving image's descriptors computed
  once and warped, ``sum_s |warp(MIND(pool_s(moving)), pool_s(flow) / s) - MIND(pool_s(fixed))|``,
  equal to :func:`mind_loss` of the warped image where the field is locally a
  translation by a multiple of ``s`` px, and about 7x cheaper inside an
  optimisation loop (it needs no blur, exponential or normalisation per step);
* :func:`diffusion`: squared forward differences of a field (px per px);
* :func:`inverse_consistency`: ``|phi_n + phi_p o (id + phi_n)|``, zero when
  the two directions are inverses (B-SR's bi-directional fields).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .networks.correlation import mind_descriptor
from .warp import compose, identity_grid, warp

__all__ = ["inside_mask", "mind_descriptors", "mind_loss", "warped_mind_loss", "diffusion", "inverse_consistency"]


def inside_mask(flow: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """(B, 1, H, W) float: 1 where ``p + flow(p)`` lies inside the image (less ``margin`` px)."""
    h, w = flow.shape[-2:]
    pos = identity_grid(h, w, device=flow.device, dtype=flow.dtype) + flow
    ok = ((pos[:, 0] >= margin) & (pos[:, 0] <= w - 1 - margin)
          & (pos[:, 1] >= margin) & (pos[:, 1] <= h - 1 - margin))
    return ok[:, None].to(flow.dtype)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / (mask.sum() * x.shape[1]).clamp_min(1.0)


def _pool(x: torch.Tensor, s: int) -> torch.Tensor:
    return x if s == 1 else F.avg_pool2d(x, s)


def mind_descriptors(x: torch.Tensor, scales=(1, 2, 4), sigma: float = 1.5, dist: int = 2) -> list[torch.Tensor]:
    """MIND of ``x`` at each of ``scales`` (average-pool factors): the fixed image's side of
    :func:`mind_loss`, computed once where the fixed image does not change (``fixed_descriptors``)."""
    return [mind_descriptor(_pool(x, s), sigma=sigma, dist=dist) for s in scales]


def mind_loss(warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor | None = None,
              scales=(1, 2, 4), sigma: float = 1.5, dist: int = 2,
              fixed_descriptors: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Mean absolute MIND difference, summed over ``scales`` (average-pool factors).

    ``fixed_descriptors``: :func:`mind_descriptors` of ``fixed`` with the same settings, if at hand.
    """
    if warped.shape != fixed.shape or warped.ndim != 4:
        raise ValueError(f"warped {tuple(warped.shape)} and fixed {tuple(fixed.shape)} must be equal 4-D shapes")
    if fixed_descriptors is None:
        fixed_descriptors = mind_descriptors(fixed, scales, sigma, dist)
    elif len(fixed_descriptors) != len(scales):
        raise ValueError(f"{len(fixed_descriptors)} fixed descriptors for {len(scales)} scales")
    if mask is None:
        mask = torch.ones_like(warped[:, :1])
    total = warped.new_zeros(())
    for s, db in zip(scales, fixed_descriptors):
        m = (_pool(mask, s) > 0.999).to(warped.dtype)
        da = mind_descriptor(_pool(warped, s), sigma=sigma, dist=dist)
        total = total + _masked_mean((da - db).abs(), m)
    return total


def warped_mind_loss(moving_descriptors: list[torch.Tensor], fixed_descriptors: list[torch.Tensor],
                     flow: torch.Tensor, mask: torch.Tensor | None = None, scales=(1, 2, 4)) -> torch.Tensor:
    """:func:`mind_loss` with the moving image's :func:`mind_descriptors` warped instead of recomputed.

    ``flow`` (B, 2, H, W, px at full size) is average-pooled to each scale and divided by it (an
    average-pooled pixel ``j`` covers full-size pixels ``s*j .. s*j+s-1``, so a displacement of ``u``
    px there is ``u / s`` pooled px); ``mask`` as in :func:`mind_loss`.
    """
    if not len(moving_descriptors) == len(fixed_descriptors) == len(scales):
        raise ValueError(f"{len(moving_descriptors)} moving and {len(fixed_descriptors)} fixed descriptors "
                         f"for {len(scales)} scales")
    if mask is None:
        mask = torch.ones_like(flow[:, :1])
    total = flow.new_zeros(())
    for s, mv, fx in zip(scales, moving_descriptors, fixed_descriptors):
        m = (_pool(mask, s) > 0.999).to(flow.dtype)
        total = total + _masked_mean((warp(mv, _pool(flow, s) / s) - fx).abs(), m)
    return total


def diffusion(flow: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of a field (both components, both axes)."""
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return (dx.pow(2).mean() + dy.pow(2).mean()) / 2


def inverse_consistency(phi_p: torch.Tensor, phi_n: torch.Tensor, mask: torch.Tensor | None = None,
                        eps: float = 0.1) -> torch.Tensor:
    """Charbonnier norm of ``compose(phi_p, phi_n)`` (px): warping by phi_p then phi_n is the identity."""
    r = compose(phi_p, phi_n)
    err = torch.sqrt(r.pow(2).sum(1, keepdim=True) + eps * eps) - eps
    if mask is None:
        return err.mean()
    return _masked_mean(err, mask)
