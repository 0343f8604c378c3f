"""Local cross-modal cost volume for the registration U-Net (a deviation, off by default).

The paper's U-Net sees only the concatenated (IR, VIS) pair, so it must learn
to *find* correspondences itself. On CPU budgets it never does: it learns the
training set's mean offset instead (``docs/method.md#cost-volume``). Optical-flow
networks solve this with an explicit correlation layer (FlowNetC, Dosovitskiy et
al., ICCV 2015; PWC-Net, Sun et al., CVPR 2018): the matching scores of every
pixel against a window of candidate displacements are given to the network,
which then only has to read them.

Here the matching score is cross-modal by construction: normalised
cross-correlation (NCC) of Sobel edge magnitudes, as in the L_nda target
search (:func:`bsr.nda.nda_search`), computed at ``1 / 2**level`` of the
input resolution over ``(2 * radius + 1)**2`` integer displacements. Channel
``k = (dy + radius) * (2 * radius + 1) + (dx + radius)`` holds

    NCC_window( E_vis around p , E_ir around p + 2**level * (dx, dy) )

so a peak in channel ``(dx, dy)`` at ``p`` says ``phi_p(p) ~ 2**level * (dx, dy)``
(``warp(ir, phi_p)`` samples the IR at ``p + phi_p(p)``; :mod:`bsr.warp`).
The volume has no learnable parameters. The same volume serves ``phi_n``: a
match of VIS at p with IR at p + d is a match of IR at q = p + d with VIS at
q - d, so the network reads ``phi_n(q) ~ -d`` off a neighbouring pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..filters import box_filter, gaussian_blur, sobel_magnitude

__all__ = ["edge_cost_volume", "mind_descriptor", "mind_cost_volume", "cost_volume",
           "cost_volume_channels", "soft_argmax"]


def cost_volume_channels(radius: int) -> int:
    return (2 * int(radius) + 1) ** 2


def _check(ir: torch.Tensor, vis: torch.Tensor, radius: int, level: int, window: int) -> None:
    if ir.shape != vis.shape or ir.dim() != 4 or ir.shape[1] != 1:
        raise ValueError(f"expected two (B, 1, H, W) tensors of one shape; got {tuple(ir.shape)} "
                         f"and {tuple(vis.shape)}")
    if radius < 0 or level < 0 or window < 1 or window % 2 == 0:
        raise ValueError(f"need radius >= 0, level >= 0 and an odd window >= 1; got radius={radius}, "
                         f"level={level}, window={window}")
    s = 2 ** level
    h, w = ir.shape[-2:]
    if h % s or w % s:
        raise ValueError(f"size {h}x{w} is not divisible by 2**level = {s}")


def _shifted_copies(x: torch.Tensor, r: int) -> torch.Tensor:
    """Every ``x(p + (dx, dy))``, |dx|, |dy| <= r, replicate border: (B, K, C, H, W),
    offset index ``k = (dy + r) * (2r + 1) + (dx + r)``."""
    h, w = x.shape[-2:]
    pad = F.pad(x, (r, r, r, r), mode="replicate")
    return torch.stack([pad[..., dy:dy + h, dx:dx + w] for dy in range(2 * r + 1) for dx in range(2 * r + 1)], 1)


def _pooled(x: torch.Tensor, level: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 ** level) if level > 0 else x


def edge_cost_volume(ir: torch.Tensor, vis: torch.Tensor, radius: int = 3, level: int = 2,
                     window: int = 3, eps: float = 1e-6) -> torch.Tensor:
    """NCC cost volume of edge magnitudes, (B, (2r+1)^2, H / 2**level, W / 2**level).

    ``ir``, ``vis``: (B, 1, H, W) with H and W divisible by ``2**level``.
    Displacements that leave the image see the replicate-padded border.
    Values lie in [-1, 1]; flat windows score 0.
    """
    _check(ir, vis, radius, level, window)
    with torch.autocast(device_type=ir.device.type, enabled=False):
        e_ir, e_vis = _pooled(sobel_magnitude(torch.cat((ir, vis), 0).float()), level).chunk(2, 0)
        shifted = _shifted_copies(e_ir, int(radius))[:, :, 0]          # (B, K, h, w)
        mu_v = box_filter(e_vis, window)
        var_v = (box_filter(e_vis * e_vis, window) - mu_v * mu_v).clamp_min(0)
        mu_s = box_filter(shifted, window)
        var_s = (box_filter(shifted * shifted, window) - mu_s * mu_s).clamp_min(0)
        cov = box_filter(shifted * e_vis, window) - mu_s * mu_v
        return (cov / torch.sqrt(var_v * var_s + eps * eps)).clamp(-1.0, 1.0)


def mind_descriptor(x: torch.Tensor, sigma: float = 1.5, dist: int = 2) -> torch.Tensor:
    """MIND (Heinrich et al., Medical Image Analysis 2012), 4-neighbourhood: (B, 4, H, W).

    ``D_i(p)`` = Gaussian-weighted SSD between the patch at p and the patch at
    ``p + r_i`` (``r_i`` = (+-dist, 0), (0, +-dist)); ``MIND_i = exp(-D_i / V)``
    with V the mean of the four, then divided by the max over i. Self-similarity
    is shared by the two modalities where their structures are, whatever the
    intensities or the contrast polarity.
    """
    h, w = x.shape[-2:]
    pad = F.pad(x, (dist, dist, dist, dist), mode="replicate")
    # x(p + r_i), replicate border, r_i = (dx, dy): (+dist, 0), (-dist, 0), (0, +dist), (0, -dist)
    copies = torch.cat([pad[..., dist + dy:dist + dy + h, dist + dx:dist + dx + w]
                        for dx, dy in ((dist, 0), (-dist, 0), (0, dist), (0, -dist))], 1)   # (B, 4, H, W)
    d = gaussian_blur((x - copies) ** 2, sigma)
    v = d.mean(1, keepdim=True).clamp_min(1e-6)
    m = torch.exp(-d / v)
    return m / m.amax(1, keepdim=True)


def mind_cost_volume(ir: torch.Tensor, vis: torch.Tensor, radius: int = 4, level: int = 1,
                     window: int = 13) -> torch.Tensor:
    """Matching scores of MIND descriptors, the same layout as :func:`edge_cost_volume`.

    Score = minus the mean absolute difference of the (``2**level``-pooled)
    descriptors, averaged over a ``window`` box at that level; in [-1, 0],
    0 = identical.
    """
    _check(ir, vis, radius, level, window)
    with torch.autocast(device_type=ir.device.type, enabled=False):
        m_ir, m_vis = _pooled(mind_descriptor(torch.cat((ir, vis), 0).float()), level).chunk(2, 0)
        diff = (_shifted_copies(m_ir, int(radius)) - m_vis[:, None]).abs().mean(2)   # (B, K, h, w)
        return -box_filter(diff, window)


def cost_volume(ir: torch.Tensor, vis: torch.Tensor, descriptor: str = "edge_ncc", radius: int = 3,
                level: int = 2, window: int = 3) -> torch.Tensor:
    """Dispatch: ``descriptor`` ``"edge_ncc"`` or ``"mind"``."""
    if descriptor == "edge_ncc":
        return edge_cost_volume(ir, vis, radius, level, window)
    if descriptor == "mind":
        return mind_cost_volume(ir, vis, radius, level, window)
    raise ValueError(f"descriptor must be 'edge_ncc' or 'mind'; got {descriptor!r}")


def soft_argmax(cost: torch.Tensor, radius: int, beta: float = 10.0) -> torch.Tensor:
    """Read a cost volume: (B, 3, h, w) = expected (dx, dy) under ``softmax(beta * cost)``
    in units of ``radius`` (so in [-1, 1]), and the best score.

    Multiply the first two channels by ``radius * 2**level`` for pixels.
    """
    r = int(radius)
    k = cost_volume_channels(r)
    if cost.shape[1] != k:
        raise ValueError(f"a radius-{r} cost volume has {k} channels; got {cost.shape[1]}")
    if r == 0:
        z = torch.zeros_like(cost)
        return torch.cat((z, z, cost), 1)
    offs = torch.arange(-r, r + 1, dtype=cost.dtype, device=cost.device) / r
    dy, dx = torch.meshgrid(offs, offs, indexing="ij")           # channel k = iy * (2r+1) + ix
    p = torch.softmax(beta * cost, dim=1)
    ex = (p * dx.reshape(1, k, 1, 1)).sum(1, keepdim=True)
    ey = (p * dy.reshape(1, k, 1, 1)).sum(1, keepdim=True)
    return torch.cat((ex, ey, cost.amax(1, keepdim=True)), 1)
