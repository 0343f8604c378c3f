"""The neighbourhood search of L_nda: where each edge pixel of the fixed image finds
its match in the moving image (nearest edge or NCC), as :class:`NDATargets`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..filters import check4
from ..losses import edge_map


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
    check4(moving, "moving")
    check4(fixed, "fixed")
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


def _parabola(sm: torch.Tensor, s0: torch.Tensor, sp: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through (-1, sm), (0, s0), (1, sp), clamped to +-0.5;
    0 where a neighbour is missing or the peak is not strict."""
    den = sm - 2.0 * s0 + sp
    ok = torch.isfinite(sm) & torch.isfinite(sp) & torch.isfinite(s0) & (den < 0)
    off = 0.5 * (sm - sp) / torch.where(ok, den, torch.ones_like(den))
    return torch.where(ok, off.clamp(-0.5, 0.5), torch.zeros_like(off))
