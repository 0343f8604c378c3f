"""Every loss of Sec. 3.4 and supplement 6.4, as plain functions.

Conventions: images are (B, C, H, W) in [0, 1]; fields are (B, 2, H, W) in
pixels, x component first, used for backward warping
``warped(p) = moving(p + flow(p))`` (see :mod:`bsr.warp`). Each function
returns unweighted terms; the weights the paper does not give are the
caller's. Choices and their reasons are in ``docs/method.md`` (PDG/losses part).

=====================  ==========================================================
function               paper
=====================  ==========================================================
:func:`nda_loss`       L_nda = L_di + L_an, Eq. 5-6 (returns the two terms)
:func:`nda_search`     the non-differentiable neighbourhood search inside L_nda
:func:`nda_consistency`  optional local-consensus filter of the targets (not in the paper)
:func:`nda_from_targets`  the differentiable part of L_nda
:func:`sobel_edge_loss`   Exp. I's plain Sobel edge loss (Table 4)
:func:`epr_loss`       L_epr, supplement 6.4 reading of Eq. 7
:func:`ss_loss`        L_ss, Eq. 8: w1 * L1 + w2 * L2 between two branches
:func:`smooth_loss`    L_smooth, Eq. 9-10 (VoxelMorph's gradient loss)
:func:`recon_loss`     L_recp, Eq. 11: 1 - SSIM + MSE
:func:`decomposition_loss`  L_dec / L_recf, Eq. 12 (CDDFuse's form)
:func:`fusion_loss`    L_fusion, Eq. 13 without L_dec: (intensity, gradient)
=====================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .filters import sobel, sobel_magnitude, ssim

__all__ = ["edge_map", "NDATargets", "nda_search", "nda_consistency", "nda_from_targets", "nda_loss",
           "sobel_edge_loss", "epr_loss", "ss_loss", "smooth_loss", "recon_loss",
           "correlation", "decomposition_loss", "fusion_loss"]


def _check4(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor; got {getattr(x, 'shape', type(x))}")


def _check_flow(flow: torch.Tensor) -> None:
    if not isinstance(flow, torch.Tensor) or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W); got {getattr(flow, 'shape', type(flow))}")


def edge_map(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Sobel edge magnitude E (B, 1, H, W), channels pooled: ``sqrt(sum_c gx^2 + gy^2 + eps)``.

    Normalised Sobel (a derivative per pixel), so for images in [0, 1] the
    magnitude is at most ~1.4; the paper's effective-edge test is ``E > mu``.
    """
    _check4(x, "x")
    gx, gy = sobel(x, normalized=True)
    return torch.sqrt((gx * gx + gy * gy).sum(1, keepdim=True) + eps)


# ----------------------------------------------------------------------------
# L_nda: neighbourhood dynamic alignment loss (Eq. 5-6)
# ----------------------------------------------------------------------------

@dataclass
class NDATargets:
    """Result of :func:`nda_search`, all (B, ., H, W) at the fixed image's pixels.

    Attributes:
        delta: (B, 2, H, W) target displacement (px, x first): the matched
            moving-image edge sits at ``p + delta(p)``, so an aligned backward
            field has ``flow(p) = delta(p)``.
        valid: (B, 1, H, W) bool, the pixels that contribute (M = valid.sum()).
        score: (B, 1, H, W) the match score of the chosen candidate (NCC in
            [-1, 1] for ``match="ncc"``; minus the distance for "nearest").
    """

    delta: torch.Tensor
    valid: torch.Tensor
    score: torch.Tensor

    def masked(self, mask: torch.Tensor) -> "NDATargets":
        """The same targets with ``valid &= mask > 0`` (e.g. a seam mask)."""
        return NDATargets(self.delta, self.valid & (mask > 0), self.score)

    def through_pdg(self, pdg, ops, mask: torch.Tensor | None = None) -> "NDATargets":
        """Targets for the PDG branch from the plain branch's search.

        The search is equivariant under the PDG ops away from seams (NCC
        windows and the square neighbourhood are D4-symmetric), so instead of
        searching the PDG images again the caller may move these targets with
        ``pdg.apply(..., kind="flow")`` (a field: values moved, vectors
        rotated) and drop pixels whose search could see across a patch edge
        with ``mask``, e.g. ``seam_mask(h, w, n, radius + 2 * (window // 2) + 1,
        include_border=True)`` (neighbourhood + centring and NCC windows +
        Sobel). Saves one search per step; the paper searches again.
        """
        delta = pdg.apply(self.delta, ops, kind="flow")
        valid = pdg.apply(self.valid.to(self.delta.dtype), ops) > 0.5
        score = pdg.apply(self.score, ops)
        if mask is not None:
            valid = valid & (mask > 0)
        return NDATargets(delta, valid, score)


def _normalise_edges(e: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return e
    if how == "max":
        return e / e.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    if how == "mean":
        return e / e.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    raise ValueError(f"edge_norm must be 'none', 'max' or 'mean'; got {how!r}")


def _pad(x: torch.Tensor, r: int, value: float = 0.0) -> torch.Tensor:
    return torch.nn.functional.pad(x, (r, r, r, r), value=value)


@torch.no_grad()
def nda_search(moving: torch.Tensor, fixed: torch.Tensor, radius: int = 8, mu: float = 1e-4,
               match: str = "ncc", window: int = 7, min_score: float = 0.5,
               subpixel: bool = True, edge_norm: str = "none",
               reject_boundary: bool = True, stride: int = 1) -> NDATargets:
    """The non-differentiable neighbourhood search of L_nda.

    For every effective edge pixel p of ``fixed`` (``E_fixed(p) > mu``), the
    candidates are the effective edge pixels ``p + o`` of ``moving`` with
    ``|o_x|, |o_y| <= radius`` (a (2r+1)^2 neighbourhood, inside the image).

    ``match="ncc"`` (default, robust cross-modally): the candidate whose
    ``window`` x ``window`` neighbourhood of the moving edge map best matches
    that of the fixed edge map around p, by normalised cross-correlation
    (NCC). Edge magnitudes are polarity-free, and NCC ignores a local gain and
    offset, so the match survives the contrast differences between
    modalities; a patch (not a single pixel) resolves the aperture problem at
    corners and curved edges. The NCC runs on locally centred edge maps
    (each pixel minus the mean of its own window: a mild high-pass that
    removes slow trends, which NCC discounts anyway, and avoids float32
    cancellation in the variances of smooth edge maps). A pixel contributes when the best NCC is at least
    ``min_score``, both windows have structure (non-zero variance) and, with
    ``reject_boundary``, the best offset is not on the neighbourhood's rim
    (a peak there is likely a truncated one). ``subpixel`` refines the integer
    offset by a parabola through the NCC at the offset and its 4 neighbours.

    ``match="nearest"`` (the literal reading of the paper): the nearest
    effective moving edge (smallest |o|, ties broken in raster order); no
    score threshold, no sub-pixel step. Suitable for sparse edge maps only
    (with ``mu = 1e-4`` nearly every pixel is an "edge", so the nearest one is
    usually at o = 0; use a high relative threshold, e.g.
    ``edge_norm="max", mu=0.5``, so that only edge ridges remain).

    Args:
        moving, fixed: (B, C, H, W) images (C may differ). In L_nda for
            phi_p, moving = IR (T) and fixed = visible (V).
        radius: neighbourhood radius r in pixels (default 8: a few px more
            than the paper's 5 px shift).
        mu: effective-edge threshold on the (optionally normalised) Sobel
            magnitude (paper: 1e-4).
        edge_norm: ``"none"`` (paper), ``"max"`` or ``"mean"``: divide each
            edge map by its per-sample max/mean before thresholding.
        window: NCC window (odd, >= 3, default 7).
        min_score: smallest accepted NCC (default 0.5).
        stride: search only every ``stride``-th fixed pixel in x and y (the
            others get ``valid = False``); ``stride=2`` is ~3x cheaper and
            samples a quarter of the edge pixels. Default 1 (all pixels).

    Cost: (2r+1)^2 windowed correlations per pixel, processed one row of
    offsets at a time ((B, 2r+1, H, W) temporaries); the search is meant for
    the GPU. Targets depend only on the two images, so one search per image
    pair and direction suffices (see :meth:`NDATargets.through_pdg`).

    Returns:
        :class:`NDATargets`.
    """
    _check4(moving, "moving")
    _check4(fixed, "fixed")
    if moving.shape[0] != fixed.shape[0] or moving.shape[-2:] != fixed.shape[-2:]:
        raise ValueError(f"moving {tuple(moving.shape)} and fixed {tuple(fixed.shape)} differ in B/H/W")
    r = int(radius)
    if r < 1:
        raise ValueError(f"radius must be >= 1; got {radius}")
    ef = _normalise_edges(edge_map(fixed.detach()), edge_norm)
    em = _normalise_edges(edge_map(moving.detach()), edge_norm)
    if match == "ncc":
        # on a CPU the row-of-offsets temporaries are kept cache-sized by
        # searching a few samples at a time (about 2x faster at 128 x 128)
        b, _, h, w = ef.shape
        per_sample = 4 * (2 * r + 1) * (h + window) * (w + window)
        chunk = b if ef.is_cuda else max(1, min(b, int(4e6 // per_sample)))
        parts = [_search_ncc(ef[i:i + chunk], em[i:i + chunk], r, mu, window, min_score, subpixel,
                             reject_boundary, stride) for i in range(0, b, chunk)]
        if len(parts) == 1:
            return parts[0]
        return NDATargets(*(torch.cat(t) for t in zip(*((q.delta, q.valid, q.score) for q in parts))))
    if match == "nearest":
        return _search_nearest(ef, em, r, mu)
    raise ValueError(f"match must be 'ncc' or 'nearest'; got {match!r}")


def _offsets_to_targets(ox: torch.Tensor, oy: torch.Tensor) -> torch.Tensor:
    return torch.cat((ox, oy), dim=1)


def _search_nearest(ef, em, r, mu) -> NDATargets:
    b, _, h, w = ef.shape
    fmask = ef > mu
    cand = _pad(em > mu, r, value=False)
    found = torch.zeros_like(fmask)
    dx = torch.zeros_like(ef)
    dy = torch.zeros_like(ef)
    dist = torch.full_like(ef, float("inf"))
    offs = [(ox, oy) for oy in range(-r, r + 1) for ox in range(-r, r + 1)]
    offs.sort(key=lambda o: o[0] * o[0] + o[1] * o[1])      # stable: raster order on ties
    for ox, oy in offs:
        c = cand[..., r + oy:r + oy + h, r + ox:r + ox + w]
        take = c & ~found
        dx = torch.where(take, float(ox), dx)
        dy = torch.where(take, float(oy), dy)
        dist = torch.where(take, math.hypot(ox, oy), dist)
        found |= c
    valid = fmask & found
    return NDATargets(_offsets_to_targets(dx, dy), valid, -dist)


def _offset_view(xp: torch.Tensor, iy: int, n: int, h: int, w: int, step: int = 1) -> torch.Tensor:
    """View (B, n, ceil(h/step), ceil(w/step)) of a padded (B, 1, h + 2r, w + 2r)
    map: ``[b, ix, i, j] = xp[b, 0, iy + step * i, ix + step * j]``, i.e. the
    map shifted by the offsets (ix - r, iy - r), ix = 0..n-1, at every
    ``step``-th pixel. No copy."""
    sb, _, sy, sx = xp.stride()
    hh, ww = -(-h // step), -(-w // step)
    return xp.as_strided((xp.shape[0], n, hh, ww), (sb, sx, step * sy, step * sx),
                         xp.storage_offset() + iy * sy)


def _sum_valid(x: torch.Tensor, k: int, dim: int, step: int = 1) -> torch.Tensor:
    """Sums of k consecutive entries along ``dim`` ('valid': length L - k + 1),
    every ``step``-th one, by binary doubling (log2(k) + popcount(k) adds).
    Unlike integral images, the rounding error scales with the window sum,
    not with the sum over the whole row."""
    n_out = x.shape[dim] - k + 1
    pw = [x]                                   # pw[i][j] = sum of x[j : j + 2^i]
    while (2 << (len(pw) - 1)) <= k:
        prev, half = pw[-1], 1 << (len(pw) - 1)
        m = prev.shape[dim] - half
        pw.append(prev.narrow(dim, 0, m) + prev.narrow(dim, half, m))
    out, off = None, 0
    for i in reversed(range(len(pw))):
        if k >> i & 1:
            t = pw[i].narrow(dim, off, (n_out - 1) // step * step + 1 if step > 1 else n_out)
            if step > 1:
                idx = [slice(None)] * t.ndim
                idx[dim] = slice(None, None, step)
                t = t[tuple(idx)]
            out = t if out is None else out + t
            off += 1 << i
    return out


def _box_sum(x: torch.Tensor, k: int, step: int = 1, padded: bool = False) -> torch.Tensor:
    """Sum over the k x k window centred on every ``step``-th pixel, zeros
    outside the image. ``padded=True``: ``x`` already carries k // 2 zero
    pixels on every side (the output then has the unpadded size)."""
    if not padded:
        p = k // 2
        x = F.pad(x, (p, p, p, p))
    return _sum_valid(_sum_valid(x, k, -2, step), k, -1, step)


def _search_ncc(ef, em, r, mu, window, min_score, subpixel, reject_boundary, stride) -> NDATargets:
    b, _, h, w = ef.shape
    k, st = int(window), int(stride)
    if k < 3 or k % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3; got {window}")
    if st < 1:
        raise ValueError(f"stride must be >= 1; got {stride}")
    ones = torch.ones(1, 1, h, w, dtype=ef.dtype, device=ef.device)
    cnt = _box_sum(ones, k)                          # pixels inside each (truncated) window
    f_edge, m_edge = ef > mu, em > mu                # the paper's effective edges
    # NCC is computed on locally centred edge maps (each pixel minus the mean of
    # its own window, a mild high-pass): it avoids the float32 cancellation of
    # E[x^2] - E[x]^2 on smooth edge maps (near-ties flipped the argmax).
    ef = ef - _box_sum(ef, k) / cnt
    em = em - _box_sum(em, k) / cnt
    mu_f = _box_sum(ef, k) / cnt
    var_f = _box_sum(ef * ef, k) / cnt - mu_f * mu_f
    mu_m = _box_sum(em, k) / cnt
    var_m = _box_sum(em * em, k) / cnt - mu_m * mu_m
    # windows without structure have no defined NCC: a local std below 1e-3 of
    # the image's RMS (of the centred edge map) counts as flat
    floor = 1e-6 * torch.maximum((ef * ef).mean(dim=(1, 2, 3), keepdim=True),
                                 (em * em).mean(dim=(1, 2, 3), keepdim=True))
    f_ok = (f_edge & (var_f > floor))[..., ::st, ::st]
    inv_sf = torch.rsqrt(var_f.clamp_min(1e-30))
    # NCC(p, o) = (S_FM(p, o) / cnt(p) - mu_f(p) mu_m(p + o)) / (sd_f(p) sd_m(p + o))
    #           = (S_FM * a(p) - c(p) * mu_m(p + o)) * inv_sd_m(p + o)
    a_s = (inv_sf / cnt)[..., ::st, ::st]
    c_s = (mu_f * inv_sf)[..., ::st, ::st]
    # moving-side maps, zero-padded by r so that an offset is a strided view
    kp = k // 2
    ef_kp = _pad(ef, kp)                             # fixed map with the window's zero margin
    em_p = _pad(em, r + kp)
    mu_m_p = _pad(mu_m, r)
    inv_sm_p = _pad(torch.rsqrt(var_m.clamp_min(1e-30)), r)
    not_cand_p = _pad(~(m_edge & (var_m > floor)), r, value=True)

    n = 2 * r + 1
    shape_s = f_ok.shape
    nan = torch.full(shape_s, float("nan"), dtype=ef.dtype, device=ef.device)
    best = torch.full(shape_s, float("-inf"), dtype=ef.dtype, device=ef.device)
    bix = torch.zeros(shape_s, dtype=torch.long, device=ef.device)
    biy = torch.full(shape_s, -1, dtype=torch.long, device=ef.device)
    s_l, s_r, s_u, s_d = nan, nan, nan, nan
    prev = None
    for iy in range(n):                      # one row of offsets (n of them) at a time
        prod = ef_kp * _offset_view(em_p, iy, n, h + 2 * kp, w + 2 * kp)
        sc = _box_sum(prod, k, st, padded=True)                        # S_FM, (B, n, H', W')
        sc.mul_(a_s).sub_(c_s * _offset_view(mu_m_p, iy, n, h, w, st))
        sc.mul_(_offset_view(inv_sm_p, iy, n, h, w, st))
        sc.masked_fill_(_offset_view(not_cand_p, iy, n, h, w, st), float("-inf"))
        row_best, row_arg = sc.max(1, keepdim=True)
        if subpixel and iy > 0:              # the row below the current best is this one
            s_d = torch.where(biy == iy - 1, sc.gather(1, bix), s_d)
        better = row_best > best
        best = torch.where(better, row_best, best)
        bix = torch.where(better, row_arg, bix)
        biy = torch.where(better, iy, biy)
        if subpixel:
            left = sc.gather(1, (row_arg - 1).clamp_min(0))
            right = sc.gather(1, (row_arg + 1).clamp_max(n - 1))
            left = torch.where(row_arg > 0, left, nan)
            right = torch.where(row_arg < n - 1, right, nan)
            up = prev.gather(1, row_arg) if prev is not None else nan
            s_l = torch.where(better, left, s_l)
            s_r = torch.where(better, right, s_r)
            s_u = torch.where(better, up, s_u)
            s_d = torch.where(better, nan, s_d)
            prev = sc
    ox = (bix - r).to(ef.dtype)
    oy = (biy - r).to(ef.dtype)
    valid = f_ok & torch.isfinite(best) & (best >= min_score)
    if reject_boundary:
        valid &= (ox.abs() < r) & (oy.abs() < r)
    if subpixel:
        ox = ox + _parabola(s_l, best, s_r)
        oy = oy + _parabola(s_u, best, s_d)
    zero = torch.zeros_like(ox)
    delta_s = torch.cat((torch.where(valid, ox, zero), torch.where(valid, oy, zero)), dim=1)
    if st == 1:
        return NDATargets(delta_s, valid, best)
    delta = torch.zeros(b, 2, h, w, dtype=ef.dtype, device=ef.device)
    vfull = torch.zeros(b, 1, h, w, dtype=torch.bool, device=ef.device)
    score = torch.full((b, 1, h, w), float("-inf"), dtype=ef.dtype, device=ef.device)
    delta[..., ::st, ::st] = delta_s
    vfull[..., ::st, ::st] = valid
    score[..., ::st, ::st] = best
    return NDATargets(delta, vfull, score)


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
    (``docs/method_model_train.md``, "Consensus-filtered L_nda targets").

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


def _parabola(sm: torch.Tensor, s0: torch.Tensor, sp: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through (-1, sm), (0, s0), (1, sp), clamped to +-0.5;
    0 where a neighbour is missing or the peak is not strict."""
    den = sm - 2.0 * s0 + sp
    ok = torch.isfinite(sm) & torch.isfinite(sp) & torch.isfinite(s0) & (den < 0)
    off = 0.5 * (sm - sp) / torch.where(ok, den, torch.ones_like(den))
    return torch.where(ok, off.clamp(-0.5, 0.5), torch.zeros_like(off))


def nda_from_targets(flow: torch.Tensor, targets: NDATargets, angle_min: float = 0.5,
                     mask: torch.Tensor | None = None, form: str = "polar",
                     eps: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The differentiable part of L_nda: ``(l_di, l_an)`` (two scalars).

    With ``f = flow(p)`` (the displacement the registration applied at the
    fixed pixel p) and ``d = delta(p)`` (the target), summed over the M
    contributing pixels and divided by M (Eq. 6):

    * ``l_di = (|f| - |d|)^2``: distances, squared (the "L2" of Eq. 6 on a
      scalar);
    * ``l_an = w * |wrap(angle(f) - angle(d))|``: angles, L1, in radians,
      the wrapped difference computed as ``atan2(d x f, d . f)`` (in
      (-pi, pi]). The angle of a near-zero vector is undefined, so the term
      is skipped where ``|d| < angle_min`` and weighted by
      ``w = min(1, |f| / angle_min)`` (w is not differentiated): as |f| -> 0
      its gradient stays bounded (<= 1 / angle_min per px) instead of growing
      as 1/|f|, and it is exactly 0 at f = 0.

    Neither term has a gradient at exactly ``f = 0`` (the polar form is
    singular there): do not initialise a flow head to exact zeros.
    ``mask`` (broadcastable to (B, 1, H, W)) removes pixels (e.g. a seam margin).
    M = 0 gives zero losses (still attached to ``flow``).

    ``form`` selects the penalty (``docs/method_model_train.md``, "Making
    the full objective register"):

    * ``"polar"`` (default, the literal Eq. 6): as above.
    * ``"polar_l1"``: Eq. 6 with the ``||.||_2`` of the scalar distance
      difference read as its absolute value, ``l_di = | |f| - |d| |``; L_an
      as in ``"polar"``. Bounded gradient, so wrong (noisy) targets pull
      less.
    * ``"vector"``: a robust penalty on the vector difference,
      ``l_di = sqrt(|f - d|^2 + eps^2) - eps`` (Charbonnier, as in optical
      flow: Sun, Roth & Black, CVPR 2010), ``l_an = 0``. It has a direction
      at ``f = 0`` (the polar form has none) and an outlier-robust,
      bounded gradient.
    """
    _check_flow(flow)
    d = targets.delta.to(flow.dtype)
    valid = targets.valid
    if mask is not None:
        valid = valid & (mask > 0)
    m = valid.to(flow.dtype)
    count = m.sum()
    denom = count.clamp_min(1.0)
    fx, fy = flow[:, 0:1], flow[:, 1:2]
    dx, dy = d[:, 0:1], d[:, 1:2]
    if form == "vector":
        ex, ey = fx - dx, fy - dy
        l_di = ((torch.sqrt(ex * ex + ey * ey + eps * eps) - eps) * m).sum() / denom
        return l_di, flow.sum() * 0.0
    if form not in ("polar", "polar_l1"):
        raise ValueError(f"form must be 'polar', 'polar_l1' or 'vector'; got {form!r}")
    nf = torch.sqrt(fx * fx + fy * fy + 1e-12)
    nd = torch.sqrt(dx * dx + dy * dy)
    l_di = (((nf - nd) ** 2 if form == "polar" else (nf - nd).abs()) * m).sum() / denom
    act = valid & (nd >= angle_min) & (nf > 1e-4)
    cross = dx * fy - dy * fx
    dot = dx * fx + dy * fy
    ang = torch.atan2(torch.where(act, cross, torch.zeros_like(cross)),
                      torch.where(act, dot, torch.ones_like(dot)))
    wgt = (nf.detach() / angle_min).clamp(max=1.0) * act.to(flow.dtype)
    l_an = (wgt * ang.abs()).sum() / denom
    return l_di, l_an


def nda_loss(moving: torch.Tensor, fixed: torch.Tensor, flow: torch.Tensor, radius: int = 8,
             mu: float = 1e-4, match: str = "ncc", window: int = 7, min_score: float = 0.5,
             subpixel: bool = True, edge_norm: str = "none", reject_boundary: bool = True,
             stride: int = 1, angle_min: float = 0.5, mask: torch.Tensor | None = None,
             targets: NDATargets | None = None, form: str = "polar",
             eps: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """L_nda = L_di + L_an (Eq. 5, 6); returns ``(l_di, l_an)``.

    ``flow`` (B, 2, H, W) is the field that aligns ``moving`` to ``fixed``
    (``warp(moving, flow)`` ~ fixed): for phi_p call
    ``nda_loss(ir, vis, phi_p)``, for phi_n ``nda_loss(vis, ir, phi_n)``.
    The search (:func:`nda_search`, arguments as there) depends only on the
    two images, so it runs under ``no_grad``; pass precomputed ``targets`` to
    skip it. The loss is differentiable in ``flow`` only
    (:func:`nda_from_targets`, whose ``form``/``eps`` choose the penalty).
    """
    _check_flow(flow)
    if flow.shape[-2:] != fixed.shape[-2:]:
        raise ValueError(f"flow size {tuple(flow.shape[-2:])} differs from image size {tuple(fixed.shape[-2:])}")
    if targets is None:
        targets = nda_search(moving, fixed, radius=radius, mu=mu, match=match, window=window,
                             min_score=min_score, subpixel=subpixel, edge_norm=edge_norm,
                             reject_boundary=reject_boundary, stride=stride)
    return nda_from_targets(flow, targets, angle_min=angle_min, mask=mask, form=form, eps=eps)


# ----------------------------------------------------------------------------
# Edge losses
# ----------------------------------------------------------------------------

def sobel_edge_loss(warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Exp. I's plain edge loss: ``mean |E(warped) - E(fixed)|`` (Sobel magnitudes)."""
    _check4(warped, "warped")
    _check4(fixed, "fixed")
    return (edge_map(warped) - edge_map(fixed)).abs().mean()


def epr_loss(moving: torch.Tensor, fixed: torch.Tensor, warped: torch.Tensor,
             form: str = "global", eps: float = 1e-12) -> torch.Tensor:
    """Edge pixel retention loss L_epr (supplement 6.4 reading of Eq. 7).

    With E the Sobel edge magnitude: O1 = distance between the edges of the
    pre-alignment moving image and the fixed image, ``E(moving) - E(fixed)``;
    O2 = distance between the edges of the post-alignment image and the
    pre-alignment one, ``E(warped) - E(moving)``. The loss is ``|O1 - O2|``,
    bounded below by 0.

    * ``form="global"`` (default): O1, O2 are per-sample Euclidean distances
      (root mean square over pixels, so independent of the image size);
      the loss is their absolute difference, averaged over the batch.
    * ``form="pixel"``: per-pixel distances ``|E(moving) - E(fixed)|`` and
      ``|E(warped) - E(moving)|``; the loss is the mean absolute difference.

    The caller applies it in both directions (T -> V with phi_p, V -> T with phi_n).
    """
    for t, nm in ((moving, "moving"), (fixed, "fixed"), (warped, "warped")):
        _check4(t, nm)
    e_m, e_f, e_w = edge_map(moving), edge_map(fixed), edge_map(warped)
    if form == "global":
        o1 = torch.sqrt(((e_m - e_f) ** 2).flatten(1).mean(1) + eps)
        o2 = torch.sqrt(((e_w - e_m) ** 2).flatten(1).mean(1) + eps)
        return (o1 - o2).abs().mean()
    if form == "pixel":
        return ((e_m - e_f).abs() - (e_w - e_m).abs()).abs().mean()
    raise ValueError(f"form must be 'global' or 'pixel'; got {form!r}")


# ----------------------------------------------------------------------------
# Self-supervised consistency, smoothness, reconstruction
# ----------------------------------------------------------------------------

def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype).expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def ss_loss(a: torch.Tensor, b: torch.Tensor, w1: float = 5.0, w2: float = 1.0,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_ss (Eq. 8) for one pair: ``w1 * mean|a - b| + w2 * mean (a - b)^2``.

    ``a`` is a plain-branch output and ``b`` the IPDG-restored PDG-branch one
    (fields, aligned images or reconstructions, any (B, C, H, W)). ``mask``
    (broadcastable, e.g. :func:`bsr.pdg.seam_mask`) restricts both means to
    the pixels where it is non-zero.
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = a - b
    return w1 * _masked_mean(d.abs(), mask) + w2 * _masked_mean(d * d, mask)


def smooth_loss(flow: torch.Tensor) -> torch.Tensor:
    """L_smooth (Eq. 9-10): ``(mean dx^2 + mean dy^2) / 2`` of forward differences.

    dx, dy are ``flow[..., :, 1:] - flow[..., :, :-1]`` and
    ``flow[..., 1:, :] - flow[..., :-1, :]`` over both components (VoxelMorph's
    "l2" gradient loss, Balakrishnan et al., IEEE TMI 2019). Exactly 0 for a
    constant field. Eq. 9 sums over the fields; the caller adds phi_p and phi_n.
    """
    _check_flow(flow)
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return 0.5 * ((dx * dx).mean() + (dy * dy).mean())


def recon_loss(target: torch.Tensor, recon: torch.Tensor, l2: str = "mse",
               window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """L_recp (Eq. 11): ``1 - SSIM(target, recon) + L2(target, recon)``.

    ``l2="mse"`` (default): the mean squared error, as L_2 in Eq. 8;
    ``l2="rmse"``: its square root (the literal Euclidean norm, size-normalised).
    Images in [0, 1]; 0 when ``recon == target``.
    """
    _check4(target, "target")
    _check4(recon, "recon")
    mse = ((target - recon) ** 2).mean()
    if l2 == "mse":
        e = mse
    elif l2 == "rmse":
        e = torch.sqrt(mse + 1e-12) - 1e-6
    else:
        raise ValueError(f"l2 must be 'mse' or 'rmse'; got {l2!r}")
    return 1.0 - ssim(target, recon, window=window, sigma=sigma) + e


# ----------------------------------------------------------------------------
# Feature decomposition and fusion
# ----------------------------------------------------------------------------

def correlation(a: torch.Tensor, b: torch.Tensor, per_channel: bool = False,
                eps: float = 1e-12) -> torch.Tensor:
    """Pearson correlation, batch mean (a scalar in [-1, 1]).

    Computed per sample over (C, H, W), or with ``per_channel`` per (sample,
    channel) over (H, W) as CDDFuse's code does, then averaged.
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if per_channel:
        a2, b2 = a.flatten(2), b.flatten(2)
    else:
        a2, b2 = a.flatten(1), b.flatten(1)
    a2 = a2 - a2.mean(-1, keepdim=True)
    b2 = b2 - b2.mean(-1, keepdim=True)
    cc = (a2 * b2).sum(-1) / torch.sqrt((a2 * a2).sum(-1) * (b2 * b2).sum(-1) + eps)
    return cc.clamp(-1.0, 1.0).mean()


def decomposition_loss(g_a: torch.Tensor, g_b: torch.Tensor, l_a: torch.Tensor, l_b: torch.Tensor,
                       eps: float = 1.01, per_channel: bool = False) -> torch.Tensor:
    """L_dec (Eq. 12 as the text describes it, CDDFuse's decomposition loss):
    ``cc(l_a, l_b)^2 / (cc(g_a, g_b) + eps)``.

    g_*: global (base) features of the two modalities, l_*: local (detail)
    features, any matching shapes (B, C, H, W). Minimising it correlates the
    global features and decorrelates the local ones. ``eps`` > 1 keeps the
    denominator positive (cc >= -1). Eq. 12 as printed swaps g and l.
    """
    cc_l = correlation(l_a, l_b, per_channel=per_channel)
    cc_g = correlation(g_a, g_b, per_channel=per_channel)
    return cc_l ** 2 / (cc_g + eps)


def fusion_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor,
                grad: str = "l1") -> tuple[torch.Tensor, torch.Tensor]:
    """L_fusion (Eq. 13) without L_dec: returns ``(l_int, l_grad)``.

    ``l_int = mean |F - max(T, V)|``;
    ``l_grad = mean | |grad F| - max(|grad T|, |grad V|) |``, grad by normalised
    Sobel, ``|grad| = |gx| + |gy|`` (``grad="l1"``, CDDFuse's form) or
    ``sqrt(gx^2 + gy^2)`` (``grad="l2"``). Per-pixel means (the 1 / (H W) of
    Eq. 13, also over B and C). All three images (B, C, H, W), same shape
    (C = 1: the luminance). The caller adds L_dec and any weights.
    """
    for t, nm in ((fused, "fused"), (ir, "ir"), (vis, "vis")):
        _check4(t, nm)
    if not (fused.shape == ir.shape == vis.shape):
        raise ValueError(f"shapes differ: fused {tuple(fused.shape)}, ir {tuple(ir.shape)}, vis {tuple(vis.shape)}")
    l_int = (fused - torch.maximum(ir, vis)).abs().mean()
    gf = sobel_magnitude(fused, norm=grad)
    gt = sobel_magnitude(ir, norm=grad)
    gv = sobel_magnitude(vis, norm=grad)
    l_grad = (gf - torch.maximum(gt, gv)).abs().mean()
    return l_int, l_grad
