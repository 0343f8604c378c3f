"""The differentiable part of L_nda (L_di and L_an of a field, Eq. 5-6) and the
search-and-loss call."""

from __future__ import annotations

import torch

from ..warp import check_flow
from .search import NDATargets, nda_search


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

    ``form`` selects the penalty (``docs/method.md#penalty-form``):

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
    check_flow(flow)
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
    check_flow(flow)
    if flow.shape[-2:] != fixed.shape[-2:]:
        raise ValueError(f"flow size {tuple(flow.shape[-2:])} differs from image size {tuple(fixed.shape[-2:])}")
    if targets is None:
        targets = nda_search(moving, fixed, radius=radius, mu=mu, match=match, window=window,
                             min_score=min_score, subpixel=subpixel, edge_norm=edge_norm,
                             reject_boundary=reject_boundary, stride=stride)
    return nda_from_targets(flow, targets, angle_min=angle_min, mask=mask, form=form, eps=eps)
