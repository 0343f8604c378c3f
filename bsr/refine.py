"""Per-pair refinement of a registration field by MIND: the optional last stage of :class:`bsr.model.BSR`.

After the global stage (and the U-Net, where it is on), a smooth residual
field ``r`` is fitted to the one pair being registered (instance
optimisation): a grid of displacements every ``grid`` px, bilinearly
upsampled, minimising

    mind_loss(warp(ir, compose(phi, r)), vis, mask) + smooth * diffusion(grid)

by Adam (MIND at scales 1, 2, 4). The field is ``compose(phi, r)``. By
default the IR's descriptors are computed once and warped at each step
(:func:`bsr.similarity.warped_mind_loss`, option ``warp_descriptors``) rather
than recomputed on the warped IR (:func:`bsr.similarity.mind_loss`): on the
released recipe's 16 validation pairs that is 0.6 s per item instead of 4.6 s,
and 0.007-0.021 px lower on every set (experiments/NOTES.md, section 17).

``mask`` keeps the pixels whose whole field samples inside the IR. The IR
warped by ``phi`` alone is filled, where ``phi`` samples outside it, by
repeating its border (a band about d/2 px wide on a dilate-crop of d px, and
up to the translation on an affine map); compared there with the visible
image, that band pulls ``r`` and, through the smoothness, the field inside:
on the released recipe's 16 validation pairs a mask on ``r`` alone raised the
dilate-crop 30 / 50 EPE from 1.97 / 2.14 to 2.18 / 2.67 px, the mask on the
whole field takes them to 1.94 / 2.13 (experiments/NOTES.md, section 11).

No library in the stack fits a dense field to one pair under a MIND loss
(SimpleITK's B-spline registration offers mutual information, which section
10 of the notes finds worse than no refinement on these pairs), so it is
written here on the package's own warp and similarity.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from .similarity import diffusion, inside_mask, mind_descriptors, mind_loss, warped_mind_loss
from .warp import compose, invert_flow, warp

__all__ = ["Refiner"]


@dataclasses.dataclass(frozen=True)
class Refiner:
    """Settings of the refinement (model option ``refine``); call it as ``refiner(ir, vis, phi)``.

    Defaults: grid 32 px, diffusion weight 0.1, 30 Adam steps at lr 1.0 (px per step), margin 2 px,
    MIND scales 1, 2, 4: on the validation pairs the best of the settings compared in
    experiments/NOTES.md, section 15 (section 11 had a grid of 16 px and 60 steps at lr 0.5).
    ``warp_descriptors``: warp the IR's MIND descriptors (default, section 17) or recompute MIND on
    the warped IR at each step (``False``: the setting of sections 11-16).
    ``max_side``: a pair whose longer side exceeds it is fitted on a copy reduced by the smallest
    whole factor that brings it within (``None``: always at full size), with the same control points
    and the steps, margin and smoothness kept in px of the image; the fit's time and memory grow with
    the pixel count (1920 x 1080, within 2048 px: 9-12 s and a 1.1 GB process on one thread, NOTES section 17).
    """

    grid: int = 32
    smooth: float = 0.1
    steps: int = 30
    lr: float = 1.0
    margin: float = 2.0
    scales: tuple[int, ...] = (1, 2, 4)
    warp_descriptors: bool = True
    max_side: int | None = 2048

    def __post_init__(self):
        m = self.max_side
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 16):
            raise ValueError(f"refine option 'max_side' must be null or a whole number of px, at least 16; got {m!r}")
        if not isinstance(self.warp_descriptors, bool):
            raise ValueError(f"refine option 'warp_descriptors' must be true or false; got {self.warp_descriptors!r}")
        for name, low, what in (("grid", 2, "a whole number of px, at least 2"), ("steps", 1, "a positive whole number")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"refine option {name!r} must be {what}; got {v!r}")
        for name in ("smooth", "lr", "margin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (name == "lr" and v == 0):
                raise ValueError(f"refine option {name!r} must be a number {'> 0' if name == 'lr' else '>= 0'}; "
                                 f"got {v!r}")
        scales = tuple(self.scales)
        if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
            raise ValueError(f"refine option 'scales' must be positive whole numbers; got {self.scales!r}")
        object.__setattr__(self, "scales", scales)

    @classmethod
    def from_config(cls, cfg) -> "Refiner | None":
        """``None``/``False`` -> no refinement; ``True`` -> the defaults; a dict -> those settings."""
        if cfg is None or cfg is False:
            return None
        if cfg is True:
            return cls()
        if not isinstance(cfg, dict):
            raise ValueError(f"model option 'refine' must be true, false, null or a mapping; got {cfg!r}")
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown refine option(s) {', '.join(sorted(unknown))}; expected "
                             f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**cfg)

    def to_config(self) -> dict:
        return {**dataclasses.asdict(self), "scales": list(self.scales)}

    def residual(self, ir: torch.Tensor, vis: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """The residual ``r`` (B, 2, H, W), px, with ``warp(ir, compose(phi, r))`` on ``vis``; one fit per item."""
        if ir.ndim != 4 or ir.shape != vis.shape or phi.shape != (ir.shape[0], 2, *ir.shape[-2:]):
            raise ValueError(f"expected ir, vis (B, 1, H, W) and phi (B, 2, H, W); got {tuple(ir.shape)}, "
                             f"{tuple(vis.shape)}, {tuple(phi.shape)}")
        # the fit needs autograd also when the caller runs under no_grad or inference_mode
        with torch.inference_mode(False), torch.enable_grad():
            ir, vis, phi = (x.detach().clone().float() for x in (ir, vis, phi))
            return torch.cat([self._fit(ir[i:i + 1], vis[i:i + 1], phi[i:i + 1]) for i in range(ir.shape[0])])

    def _fit(self, ir, vis, phi) -> torch.Tensor:
        h, w = ir.shape[-2:]
        cells = (max(h // self.grid, 2), max(w // self.grid, 2))
        f = 1 if self.max_side is None else math.ceil(max(h, w) / self.max_side)
        if f == 1:
            return self._upsample(self._fit_grid(ir, vis, phi, cells, 1.0), (h, w))
        # a reduced copy; align_corners=True keeps the corner pixels' centres (and so the control points) in place
        hr, wr = max(math.ceil(h / f), 2), max(math.ceil(w / f), 2)
        scale = torch.tensor([(w - 1) / (wr - 1), (h - 1) / (hr - 1)], device=ir.device).view(1, 2, 1, 1)

        def reduce(x):
            return F.interpolate(x, size=(hr, wr), mode="bilinear", align_corners=True, antialias=True)

        g = self._fit_grid(reduce(ir), reduce(vis), reduce(phi) / scale, cells, float(scale.mean()))
        return self._upsample(g * scale, (h, w))

    @staticmethod
    def _upsample(grid, size):
        return F.interpolate(grid, size=size, mode="bilinear", align_corners=True)

    def _fit_grid(self, ir, vis, phi, cells, s: float) -> torch.Tensor:
        """The control grid (1, 2, *cells), px of ``ir``, fitted at a resolution ``s`` times below the pair's."""
        size = ir.shape[-2:]
        g = torch.zeros(1, 2, *cells, device=ir.device, requires_grad=True)
        opt = torch.optim.Adam([g], lr=self.lr / s)
        fixed = mind_descriptors(vis, self.scales)
        moving = mind_descriptors(ir, self.scales) if self.warp_descriptors else None
        for _ in range(self.steps):
            opt.zero_grad()
            full = compose(phi, self._upsample(g, size))
            mask = inside_mask(full.detach(), self.margin / s)
            if moving is not None:
                loss = warped_mind_loss(moving, fixed, full, mask, self.scales)
            else:
                loss = mind_loss(warp(ir, full), vis, mask, scales=self.scales, fixed_descriptors=fixed)
            loss = loss + self.smooth * s * s * diffusion(g)   # diffusion of g / s is that of g over s^2
            loss.backward()
            opt.step()
        return g.detach()

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor, phi_p: torch.Tensor,
                 phi_n: torch.Tensor | None = None):
        """``(compose(phi_p, r), compose(r^-1, phi_n))``; the second is None when ``phi_n`` is."""
        r = self.residual(ir, vis, phi_p)
        out_p = compose(phi_p.float(), r)
        return out_p, (None if phi_n is None else compose(invert_flow(r), phi_n.float()))
