"""A local-consensus filter of L_nda targets (not in the paper; ``docs/method.md``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def nda_consistency(delta: torch.Tensor, valid: torch.Tensor, tau: float = 1.5, window: int = 33,
                    stride: int = 8, min_count: int = 8, dense: bool = False):
    """Drop L_nda targets that disagree with the targets around them (a local-consensus filter).

    Cross-modal matches fail in clusters of a few pixels (an IR edge matched to
    the wrong visible edge), while the true displacement varies slowly. So
    each target is compared with the component-wise median of the valid
    targets in a ``window`` x ``window`` neighbourhood and kept only where
    ``|delta(p) - median(p)| <= tau`` px. The medians are taken on a grid
    every ``stride`` px and interpolated bilinearly (exact medians at every
    pixel cost ``window**2`` times the image in memory); a grid point with
    fewer than ``min_count`` valid targets in its window has no median, and
    every pixel that interpolates from it (a band up to ``stride`` px wide
    around it) keeps no target. Near the image border the window is cut off,
    so the median leans toward the interior: for a zoom with 6 px at the
    corners, the dense median is off by about 0.4 px on average in the
    outer 10 px (up to 1 px). This is not in the paper
    (``docs/method.md#consensus-filter``).

    Args:
        delta: (B, 2, H, W) targets (px). valid: (B, 1, H, W) bool.

    Returns the filtered ``valid`` (a subset of ``valid``). With ``dense``,
    returns ``(field, support)`` instead: the median of the *filtered*
    targets around every pixel (B, 2, H, W) and where it exists (B, 1, H, W),
    a sparse-to-dense interpolation of the matches (in the spirit of
    EpicFlow, Revaud et al., CVPR 2015) usable as targets in flat regions.
    """
    if delta.dim() != 4 or delta.shape[1] != 2 or valid.shape != (delta.shape[0], 1, *delta.shape[2:]):
        raise ValueError(f"expected delta (B, 2, H, W) and valid (B, 1, H, W); got {tuple(delta.shape)} "
                         f"and {tuple(valid.shape)}")
    if tau <= 0 or window < 3 or window % 2 == 0 or stride < 1 or min_count < 1:
        raise ValueError(f"need tau > 0, an odd window >= 3, stride >= 1, min_count >= 1; got tau={tau}, "
                         f"window={window}, stride={stride}, min_count={min_count}")
    keep = _consensus_keep(delta, valid, tau, window, stride, min_count)
    if not dense:
        return keep
    median, support = _local_median(delta, keep, window, stride, min_count)
    return median.to(delta.dtype), support


def _consensus_keep(delta, valid, tau, window, stride, min_count):
    median, support = _local_median(delta, valid, window, stride, min_count)
    near = (delta.float() - median).norm(dim=1, keepdim=True) <= tau
    return valid & near & support


def _local_median(delta, valid, window, stride, min_count):
    """Component-wise median of the valid targets in a window around every
    pixel, on a ``stride`` grid, interpolated bilinearly; and where it exists."""
    b, _, h, w = delta.shape
    r = window // 2
    d = torch.where(valid, delta.float(), torch.full_like(delta, float("nan"), dtype=torch.float32))
    cols = F.unfold(F.pad(d, (r, r, r, r), value=float("nan")), window, stride=stride)
    gh, gw = (h - 1) // stride + 1, (w - 1) // stride + 1       # grid cell centres at 0, stride, ...
    cols = cols.reshape(b, 2, window * window, gh, gw)
    med = torch.nanmedian(cols, dim=2).values                   # (B, 2, gh, gw); NaN where none valid
    enough = ((~torch.isnan(cols[:, 0])).sum(1) >= min_count)[:, None].float()
    med = torch.nan_to_num(med) * enough
    # bilinear interpolation between grid centres (pixel y sits at y / stride on the grid)
    gy = torch.arange(h, dtype=torch.float32, device=delta.device) / stride
    gx = torch.arange(w, dtype=torch.float32, device=delta.device) / stride
    gy = gy / max(gh - 1, 1) * 2 - 1
    gx = gx / max(gw - 1, 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None].expand(b, -1, -1, -1)
    up = F.grid_sample(torch.cat((med, enough), 1), grid, mode="bilinear", padding_mode="border",
                       align_corners=True)
    return up[:, :2], up[:, 2:] > 0.999
