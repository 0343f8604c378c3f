"""Large images through the networks in overlapping tiles, with flat memory.

:func:`fuse_tiled` runs ``model.fuse`` on a large pair: the global stage (if
any) fits its affine map on the whole image, the U-Net's local field and the
fused image are computed per tile (:func:`tile_plan`) and blended with cosine
ramps over the overlaps (:func:`axis_weights`), and the IR is warped once by
the full-size field, a strip of rows at a time (:func:`warp_strips`).
``bsr fuse`` (:mod:`bsr.fuse`) uses it for images over ``--tile`` px.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .warp import identity_grid

__all__ = ["fuse_tiled", "check_tiling", "tile_plan", "axis_weights", "warp_strips", "affine_rows",
           "sample_rows", "strip_rows"]


def strip_rows(w: int) -> int:
    """Rows per strip of ~1 Mpx: whole-image elementwise work goes by strips, without full-size temporaries."""
    return max(1, (1 << 20) // max(w, 1))


def check_tiling(tile: int, overlap: int) -> None:
    for v, what in ((tile, "tile"), (overlap, "tile overlap")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{what} must be a whole number >= 0; got {v!r}")
    if tile and tile < 32:
        raise ValueError(f"tile must be 0 (off) or at least 32 px; got {tile}")
    if tile and 2 * overlap > tile:
        raise ValueError(f"tile overlap must be at most half the tile; got overlap {overlap} for tile {tile}")


def tile_plan(n: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """``(starts, size)`` of tiles covering ``[0, n)``: the fewest tiles of at most ``tile`` px that
    overlap by at least ``overlap`` px, each as short as that count allows, spread evenly."""
    if n <= tile:
        return [0], n
    k = -(-(n - overlap) // (tile - overlap))                       # ceil
    size = -(-(n - overlap) // k) + overlap
    return [int(round(i * (n - size) / (k - 1))) for i in range(k)], size


def axis_weights(n: int, starts: list[int], size: int, overlap: int) -> list[torch.Tensor]:
    """Blend weights (float32, ``size`` each) of the tiles at ``starts``; they sum to one at every pixel.

    Each tile ramps up (raised cosine) over ``overlap`` px from an edge it shares
    with a neighbour and keeps weight 1 at the image border.
    """
    d = np.arange(overlap, dtype=np.float64)
    up = 0.5 - 0.5 * np.cos(np.pi * (d + 0.5) / overlap) if overlap else d
    raw = []
    for i in range(len(starts)):
        w = np.ones(size)
        if i > 0:
            w[:overlap] = up
        if i < len(starts) - 1:
            w[size - overlap:] = np.minimum(w[size - overlap:], up[::-1])
        raw.append(w)
    total = np.zeros(n)
    for a, w in zip(starts, raw):
        total[a:a + size] += w
    return [torch.from_numpy((w / total[a:a + size]).astype(np.float32)) for a, w in zip(starts, raw)]


def sample_rows(image: torch.Tensor, flow_rows: torch.Tensor, r0: int) -> torch.Tensor:
    """Rows ``r0 .. r0 + len`` of ``bsr.warp.warp(image, flow)``, given those rows of ``flow`` (same values)."""
    h, w = image.shape[-2:]
    pos = identity_grid(flow_rows.shape[-2], w, device=image.device, dtype=image.dtype)
    pos = pos + torch.tensor([0.0, float(r0)], device=image.device, dtype=image.dtype).view(1, 2, 1, 1)
    pos = pos + flow_rows.to(image.dtype)
    sx, sy = 2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)
    grid = torch.stack((pos[:, 0] * sx - 1.0, pos[:, 1] * sy - 1.0), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp_strips(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``bsr.warp.warp(image, flow)`` (batch 1) a strip of rows at a time: no full-size temporaries."""
    h, w = image.shape[-2:]
    out = torch.empty_like(image)
    step = strip_rows(w)
    for r0 in range(0, h, step):
        out[..., r0:r0 + step, :] = sample_rows(image, flow[..., r0:r0 + step, :], r0)
    return out


def affine_rows(m: torch.Tensor, r0: int, r1: int, w: int) -> torch.Tensor:
    """Rows ``r0 .. r1`` of ``bsr.global_stage.affine_field(m, h, w)``: ``M @ [x, y, 1] - p`` (float32)."""
    ys = torch.arange(r0, r1, dtype=torch.float64)
    xs = torch.arange(w, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    m = m.to(torch.float64)
    fx = m[:, 0, 0, None, None] * gx + m[:, 0, 1, None, None] * gy + m[:, 0, 2, None, None] - gx
    fy = m[:, 1, 0, None, None] * gx + m[:, 1, 1, None, None] * gy + m[:, 1, 2, None, None] - gy
    return torch.stack((fx, fy), 1).to(torch.float32)


def fuse_tiled(model, ir: torch.Tensor, vis: torch.Tensor, tile: int, overlap: int):
    """``model.fuse(ir, vis)`` (batch 1) with the networks run on overlapping tiles.

    Global stage (if any) on the whole image; U-Net local fields per tile on the
    globally warped IR, blended; the full field ``compose(phi_g, local)``; the IR
    warped once by it; the fusion per tile on the registered IR, blended. The
    per-pair refinement (model option ``refine``), if on, runs on the whole image.
    """
    h, w = ir.shape[-2:]
    dev = ir.device
    (ys, th), (xs, tw) = tile_plan(h, tile, overlap), tile_plan(w, tile, overlap)
    wy = [a.to(dev) for a in axis_weights(h, ys, th, overlap)]
    wx = [a.to(dev) for a in axis_weights(w, xs, tw, overlap)]
    tiles = [(y0, x0, wa, wb) for y0, wa in zip(ys, wy) for x0, wb in zip(xs, wx)]
    step = strip_rows(w)

    phi_g = None
    if model.global_stage is not None:
        m = model.global_stage.matrices(ir, vis)                    # (1, 2, 3), on a reduced copy
        phi_g = torch.empty(1, 2, h, w, dtype=torch.float32, device=dev)
        for r0 in range(0, h, step):
            phi_g[..., r0:r0 + step, :] = affine_rows(m, r0, min(r0 + step, h), w).to(dev)
        ir_g = warp_strips(ir, phi_g)
    else:
        ir_g = ir

    flow = torch.zeros(1, 2, h, w, dtype=torch.float32, device=dev)
    for y0, x0, wa, wb in tiles:
        sl = (..., slice(y0, y0 + th), slice(x0, x0 + tw))
        loc, _ = model.register_local(ir_g[sl], vis[sl])
        flow[sl] += loc * (wa[:, None] * wb[None, :])
    del ir_g
    if phi_g is not None:                                           # compose(phi_g, local), by strips
        for r0 in range(0, h, step):
            rows = flow[..., r0:r0 + step, :]
            rows += sample_rows(phi_g, rows, r0)
        del phi_g

    if model.refiner is not None:                                  # the per-pair refinement, whole image
        flow, _ = model.refiner(ir, vis, flow)
    ir_reg = warp_strips(ir, flow)
    fused = torch.zeros(1, 1, h, w, dtype=torch.float32, device=dev)
    for y0, x0, wa, wb in tiles:
        sl = (..., slice(y0, y0 + th), slice(x0, x0 + tw))
        f, _, _ = model.fuse_aligned(ir_reg[sl], vis[sl])
        fused[sl] += f * (wa[:, None] * wb[None, :])
    return fused, ir_reg, flow
