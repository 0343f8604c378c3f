"""A learned affine correction of the whole pair after the global stage (experiments/NOTES.md, section 25).

Section 18 of the notes found that most of what the per-pair refinement
(:mod:`bsr.refine`) adds to the global stage is one affine correction per
pair, which a network that sees a crop cannot infer. This network sees the
whole pair, reduced so that its longer side is about ``work_side`` px:

1. two small encoders (one per modality) read the image and its MIND
   descriptor and give unit-length features at half the working size;
2. a correlation of the two feature maps over ``(2 * radius + 1)**2``
   displacements (the layout of :mod:`bsr.networks.correlation`) is read by a
   soft arg-max into a displacement per feature pixel;
3. a confidence head turns the correlation and the visible features into
   weights (a softmax over the pixels, zero where the IR holds no content);
4. a weighted least-squares fit of an affine map to the displacements gives
   the correction, scaled by a learned gain that starts at 0 (so an untrained
   network leaves the global stage as it is).

The correlation, the arg-max and the fit are fixed computations: the
network learns only the features, the confidences, the temperature and the
gain. Trained in ``experiments/probe_whole_pair_affine.py``, on the MIND loss
of the whole pair or on the refinement's affine part; neither gained on the
validation pairs, and the shipped model does not use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .correlation import _shifted_copies, mind_descriptor, soft_argmax

__all__ = ["AffineCorrection", "weighted_affine_fit", "reduced", "read_correlation"]


def weighted_affine_fit(pos: torch.Tensor, disp: torch.Tensor, weight: torch.Tensor, size: tuple[int, int],
                        ridge: float = 0.0) -> torch.Tensor:
    """The correction matrices (B, 2, 3) with ``p + disp(p) ~= m @ [x, y, 1]``, least squares weighted by ``weight``.

    ``pos`` (1, 2, N) pixel positions (x, y) of the full ``size`` (h, w) image, ``disp`` (B, 2, N) px,
    ``weight`` (B, N) >= 0. The fit is solved in coordinates centred and scaled to [-1, 1] over the image,
    where ``ridge`` (relative to the total weight) pulls the linear part towards the identity.
    """
    h, w = size
    cx, cy = (w - 1) / 2, (h - 1) / 2
    sx, sy = max(cx, 0.5), max(cy, 0.5)
    u = (pos[:, 0] - cx) / sx
    v = (pos[:, 1] - cy) / sy
    x = torch.stack((u, v, torch.ones_like(u)), -1).to(disp.dtype).expand(disp.shape[0], -1, -1)   # (B, N, 3)
    wt = weight / weight.sum(1, keepdim=True).clamp_min(1e-12)
    xtw = x.transpose(1, 2) * wt[:, None]                               # (B, 3, N)
    reg = torch.diag(torch.tensor([ridge, ridge, 0.0], dtype=disp.dtype, device=disp.device))
    a = xtw @ x + reg + 1e-9 * torch.eye(3, dtype=disp.dtype, device=disp.device)
    theta = torch.linalg.solve(a, xtw @ disp.transpose(1, 2))           # (B, 3, 2): d = theta^T [u, v, 1]
    th = theta.transpose(1, 2)                                           # (B, 2, 3)
    lin = torch.stack((th[:, :, 0] / sx, th[:, :, 1] / sy), -1)          # (B, 2, 2) px per px
    off = th[:, :, 2] - th[:, :, 0] * (cx / sx) - th[:, :, 1] * (cy / sy)
    eye = torch.eye(2, dtype=disp.dtype, device=disp.device)
    return torch.cat((eye + lin, off[..., None]), 2)


def reduced(x: torch.Tensor, side: int, multiple: int = 1, antialias: bool = True) -> torch.Tensor:
    """``x`` resized (bilinear, corner pixels kept) by the smallest whole factor that brings its longer side
    within ``side``, each side rounded up to a multiple of ``multiple`` (at least 2 of them)."""
    h, w = x.shape[-2:]
    f = max(1, math.ceil(max(h, w) / side))
    size = (multiple * max(math.ceil(h / f / multiple), 2), multiple * max(math.ceil(w / f / multiple), 2))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True, antialias=antialias)


def read_correlation(fa: torch.Tensor, fb: torch.Tensor, radius: int, beta, size: tuple[int, int],
                     working: tuple[int, int], stride: int, offset: float = 0.0):
    """Correlate unit-length features ``fa`` (IR) and ``fb`` (visible) over ``(2 * radius + 1)**2`` displacements
    and read the volume by a soft arg-max at temperature ``beta``.

    The features lie on a grid of ``stride`` working px whose cell ``k`` is centred on working pixel
    ``stride * k + offset``, the working image (``working``, (h, w)) being the pair (``size``) reduced with its
    corners kept. Returns the volume (B, K, h', w'), the displacements (B, 2, N) and their positions (1, 2, N),
    both in px of the pair.
    """
    (h, w), (hr, wr) = size, working
    cost = (_shifted_copies(fa, radius) * fb[:, None]).sum(2)
    d = soft_argmax(cost, radius, beta)[:, :2] * radius                       # feature px
    scale = torch.tensor([stride * (w - 1) / (wr - 1), stride * (h - 1) / (hr - 1)], dtype=d.dtype, device=d.device)
    disp = d * scale.view(1, 2, 1, 1)
    hf, wf = d.shape[-2:]
    ys = (torch.arange(hf, dtype=d.dtype, device=d.device) * stride + offset) * (h - 1) / (hr - 1)
    xs = (torch.arange(wf, dtype=d.dtype, device=d.device) * stride + offset) * (w - 1) / (wr - 1)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return cost, disp.flatten(2), torch.stack((gx, gy))[None].reshape(1, 2, -1)


def _encoder(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(5, c, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(2 * c, 2 * c, 3, padding=1))


class AffineCorrection(nn.Module):
    """``net(ir_g, vis, valid)`` -> correction matrices (B, 2, 3), px of the input pair.

    ``ir_g``: the IR after the global stage, ``vis``: the visible image, (B, 1, H, W);
    ``valid`` (B, 1, H, W) or None: 1 where ``ir_g`` holds content. The field of the whole
    registration is then ``affine_field(compose_affine(M_global, net(...)))`` (:mod:`bsr.global_stage`).
    """

    def __init__(self, channels: int = 16, radius: int = 3, work_side: int = 256, ridge: float = 1e-3,
                 beta: float = 10.0):
        super().__init__()
        self.config = {"channels": int(channels), "radius": int(radius), "work_side": int(work_side),
                       "ridge": float(ridge), "beta": float(beta)}
        self.radius, self.work_side, self.ridge = int(radius), int(work_side), float(ridge)
        self.enc_ir, self.enc_vis = _encoder(channels), _encoder(channels)
        k = (2 * self.radius + 1) ** 2
        self.conf = nn.Sequential(nn.Conv2d(k + 2 * channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, 1, 3, padding=1))
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, ir_g: torch.Tensor, vis: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if ir_g.ndim != 4 or ir_g.shape[1] != 1 or ir_g.shape != vis.shape:
            raise ValueError(f"expected ir_g and vis (B, 1, H, W) of one shape; got {tuple(ir_g.shape)}, "
                             f"{tuple(vis.shape)}")
        h, w = ir_g.shape[-2:]
        if valid is None:
            valid = torch.ones_like(ir_g)
        a, b, val = (reduced(x, self.work_side, 2) for x in (ir_g, vis, valid))
        fa = F.normalize(self.enc_ir(torch.cat((a, mind_descriptor(a)), 1)), dim=1)
        fb = F.normalize(self.enc_vis(torch.cat((b, mind_descriptor(b)), 1)), dim=1)
        # a stride-2 feature pixel k is centred on working pixel 2k
        cost, disp, pos = read_correlation(fa, fb, self.radius, self.log_beta.exp(), (h, w), a.shape[-2:], 2)
        logit = self.conf(torch.cat((cost, fb), 1))
        ok = (val[..., ::2, ::2] > 0.999).to(disp.dtype)
        wt = torch.softmax(logit.flatten(1), 1) * ok.flatten(1)
        m = weighted_affine_fit(pos, disp, wt, (h, w), self.ridge)
        eye = torch.eye(2, 3, dtype=m.dtype, device=m.device)[None]
        return eye + self.gain * (m - eye)
