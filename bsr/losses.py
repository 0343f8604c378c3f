"""Every loss of Sec. 3.4 and supplement 6.4, as plain functions.

Conventions: images are (B, C, H, W) in [0, 1]; fields are (B, 2, H, W) in
pixels, x component first, used for backward warping
``warped(p) = moving(p + flow(p))`` (see :mod:`bsr.warp`). Each function
returns unweighted terms; the weights the paper does not give are the
caller's. Choices and their reasons are in ``docs/method.md`` (PDG/losses part).

=====================  ==========================================================
function               paper
=====================  ==========================================================
L_nda                  Eq. 5-6: its search and loss are :mod:`bsr.nda`
:func:`sobel_edge_loss`   Exp. I's plain Sobel edge loss (Table 4)
:func:`epr_loss`       L_epr, supplement 6.4 reading of Eq. 7
:func:`ss_loss`        L_ss, Eq. 8: w1 * L1 + w2 * L2 between two branches
:func:`smooth_loss`    L_smooth, Eq. 9-10 (VoxelMorph's gradient loss)
:func:`recon_loss`     L_recp, Eq. 11: 1 - SSIM + MSE
:func:`decomposition_loss`  L_dec / L_recf, Eq. 12 (CDDFuse's form)
:func:`fusion_loss`    L_fusion, Eq. 13 without L_dec: (intensity, gradient)
:func:`saliency_weight`   not in the paper: the infrared share of an optional intensity target
:func:`edge_transfer`  not in the paper: a differentiable Q^{AB/F}, for an optional fusion term
=====================  ==========================================================
"""

from __future__ import annotations


import math

import torch

from .filters import check4, gaussian_blur, sobel, sobel_magnitude, ssim
from .metrics.qabf import QABF_CONSTANTS
from .warp import check_flow

__all__ = ["edge_map", "sobel_edge_loss", "epr_loss", "ss_loss", "smooth_loss", "recon_loss",
           "correlation", "decomposition_loss", "saliency_weight", "fusion_loss", "FUSION_TARGETS", "edge_transfer"]


def edge_map(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Sobel edge magnitude E (B, 1, H, W), channels pooled: ``sqrt(sum_c gx^2 + gy^2 + eps)``.

    Normalised Sobel (a derivative per pixel), so for images in [0, 1] the
    magnitude is at most ~1.4; the paper's effective-edge test is ``E > mu``.
    """
    check4(x, "x")
    gx, gy = sobel(x, normalized=True)
    return torch.sqrt((gx * gx + gy * gy).sum(1, keepdim=True) + eps)


# ----------------------------------------------------------------------------
# Edge losses
# ----------------------------------------------------------------------------

def sobel_edge_loss(warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Exp. I's plain edge loss: ``mean |E(warped) - E(fixed)|`` (Sobel magnitudes)."""
    check4(warped, "warped")
    check4(fixed, "fixed")
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
        check4(t, nm)
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
    check_flow(flow)
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
    check4(target, "target")
    check4(recon, "recon")
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


FUSION_TARGETS = ("max", "saliency", "two_scale")


def _check_same_shape(**images: torch.Tensor) -> None:
    """Each image is (B, C, H, W) and all have one shape (the fusion terms' inputs)."""
    for nm, t in images.items():
        check4(t, nm)
    if len({tuple(t.shape) for t in images.values()}) > 1:
        raise ValueError("shapes differ: " + ", ".join(f"{nm} {tuple(t.shape)}" for nm, t in images.items()))


def saliency_weight(ir: torch.Tensor, vis: torch.Tensor, sigma: float = 5.0,
                    eps: float = 1e-8) -> torch.Tensor:
    """Infrared share ``w = S_T^2 / (S_T^2 + S_V^2)`` in [0, 1], (B, C, H, W).

    ``S`` is the Sobel magnitude blurred by a Gaussian of ``sigma`` px
    (:func:`bsr.filters.gaussian_blur`): each input's local edge energy. Where
    both are flat, ``w`` is 1/2. Not in the paper: the ``"saliency"`` intensity
    and ``"two_scale"`` targets of :func:`fusion_loss` (``experiments/NOTES.md``, section 20).
    """
    _check_same_shape(ir=ir, vis=vis)
    e_t = gaussian_blur(sobel_magnitude(ir), sigma) ** 2
    e_v = gaussian_blur(sobel_magnitude(vis), sigma) ** 2
    return (e_t + 0.5 * eps) / (e_t + e_v + eps)


def fusion_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor,
                grad: str = "l1", target: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """L_fusion (Eq. 13) without L_dec: returns ``(l_int, l_grad)``.

    ``l_int = mean |F - max(T, V)|`` (``target="max"``, the paper), or
    ``mean |F - (w T + (1 - w) V)|`` with ``w`` = :func:`saliency_weight`
    (``target="saliency"``, computed without gradient; not in the paper), or
    two scales, ``max(B_T, B_V) + w D_T + (1 - w) D_V`` with ``B`` a Gaussian
    blur of sigma 5 px and ``D = I - B`` (``target="two_scale"``: the brighter
    base, each input's detail by its share; not in the paper);
    ``l_grad = mean | |grad F| - max(|grad T|, |grad V|) |``, grad by normalised
    Sobel, ``|grad| = |gx| + |gy|`` (``grad="l1"``, CDDFuse's form) or
    ``sqrt(gx^2 + gy^2)`` (``grad="l2"``). Per-pixel means (the 1 / (H W) of
    Eq. 13, also over B and C). All three images (B, C, H, W), same shape
    (C = 1: the luminance). The caller adds L_dec and any weights.
    """
    _check_same_shape(fused=fused, ir=ir, vis=vis)
    if target == "max":
        tgt = torch.maximum(ir, vis)
    elif target in ("saliency", "two_scale"):
        with torch.no_grad():
            w = saliency_weight(ir, vis)
        if target == "saliency":
            tgt = w * ir + (1 - w) * vis
        else:
            b_t, b_v = gaussian_blur(ir, 5.0), gaussian_blur(vis, 5.0)
            tgt = torch.maximum(b_t, b_v) + w * (ir - b_t) + (1 - w) * (vis - b_v)
    else:
        raise ValueError(f"target must be one of {FUSION_TARGETS}; got {target!r}")
    l_int = (fused - tgt).abs().mean()
    gf = sobel_magnitude(fused, norm=grad)
    gt = sobel_magnitude(ir, norm=grad)
    gv = sobel_magnitude(vis, norm=grad)
    l_grad = (gf - torch.maximum(gt, gv)).abs().mean()
    return l_int, l_grad


def _orientation(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """``arctan(gy / gx)`` in (-pi/2, pi/2], and pi/2 where ``gx == 0`` (as the metric
    has it), with a finite gradient everywhere: atan2 of the vector turned into the
    right half-plane."""
    s = torch.where(gx < 0, -1.0, 1.0).to(gx.dtype)
    alpha = torch.atan2(gy * s, gx * s + 1e-12)
    return torch.where(gx == 0, math.pi / 2, alpha)


def edge_transfer(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor,
                  padding: str = "zeros", eps: float = 1e-6) -> torch.Tensor:
    """A differentiable Xydeas-Petrovic Q^{AB/F}, the batch mean (a scalar).

    The formula of :func:`bsr.metrics.qabf` with its constants
    (:data:`bsr.metrics.qabf.QABF_CONSTANTS`): per source S, the strength ratio
    ``G = (min(g_S, g_F) + eps) / (max(g_S, g_F) + eps)`` and the orientation
    agreement ``A = 1 - |alpha_S - alpha_F| / (pi / 2)`` of Sobel gradients, mapped
    by the two sigmoids and weighted by ``g_S``. With ``padding="zeros"`` it equals
    the metric's 'strict' variant up to ``eps``. ``padding="replicate"`` puts no edge
    on the image border, which on training crops is not an edge of the scene. Images
    (B, 1, H, W); the sources carry no gradient. Not in the paper: phase 2's optional
    ``fusion_qabf`` term is ``qabf_max() - edge_transfer(...)`` (``docs/method.md``).
    """
    c = QABF_CONSTANTS
    _check_same_shape(fused=fused, ir=ir, vis=vis)
    fx, fy = sobel(fused, padding=padding)
    g_f = torch.sqrt(fx * fx + fy * fy + eps * eps)
    a_f = _orientation(fx, fy)
    num = den = 0.0
    for src in (ir, vis):
        with torch.no_grad():
            sx, sy = sobel(src.detach(), padding=padding)
            g_s = torch.sqrt(sx * sx + sy * sy)
            a_s = _orientation(sx, sy)
        ratio = (torch.minimum(g_s, g_f) + eps) / (torch.maximum(g_s, g_f) + eps)
        agree = 1.0 - (a_s - a_f).abs() / (math.pi / 2)
        q_g = c["Tg"] / (1.0 + torch.exp(c["kg"] * (ratio - c["Dg"])))
        q_a = c["Ta"] / (1.0 + torch.exp(c["ka"] * (agree - c["Da"])))
        num = num + (g_s * q_g * q_a).flatten(1).sum(1)
        den = den + g_s.flatten(1).sum(1)
    return (num / den.clamp_min(1e-12)).mean()
