"""The global stage of a global-local registration: one affine map per pair, before the U-Net.

The paper calls B-SR global-local. A U-Net trained on a CPU budget refines
well within a few pixels but cannot be trusted with a 25 px zoom or an 8
degree rotation; an affine map fitted to the whole image can. The released
model therefore runs the package's ECC (:func:`bsr.baselines.registration.ecc_affine`,
an enhanced-correlation-coefficient affine fit on edge images; no learned
parameters) on a copy of the pair reduced to at most ``max_side`` pixels, and
hands the U-Net the IR warped by that map. ``docs/method.md`` ("The released
model") gives the measurements behind this choice.

Model config: ``global: null`` (the paper's model: the U-Net alone) or
``global: {method: ecc, max_side: 640}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .warp import identity_grid

__all__ = ["GlobalStage", "fit_affine", "affine_field", "invert_affine", "compose_affine", "METHODS"]

METHODS = ("ecc",)


def fit_affine(flow: torch.Tensor) -> torch.Tensor:
    """Least-squares 2 x 3 matrices M (B, 2, 3) with ``p + flow(p) ~= M @ [x, y, 1]``."""
    b, _, h, w = flow.shape
    p = identity_grid(h, w, dtype=torch.float64).reshape(1, 2, -1)
    q = (p + flow.to(torch.float64).reshape(b, 2, -1))
    x = torch.cat((p, torch.ones(1, 1, h * w, dtype=torch.float64)), 1)[0].T        # (N, 3)
    sol = torch.linalg.lstsq(x.expand(b, -1, -1), q.transpose(1, 2)).solution      # (B, 3, 2)
    return sol.transpose(1, 2)


def affine_field(m: torch.Tensor, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    """The field ``M @ [x, y, 1] - p`` (B, 2, h, w) of matrices M (B, 2, 3)."""
    p = identity_grid(h, w, dtype=torch.float64).reshape(1, 2, -1)
    x = torch.cat((p, torch.ones(1, 1, h * w, dtype=torch.float64)), 1)
    q = m.to(torch.float64) @ x[0]                                                 # (B, 2, N)
    return (q - p).reshape(-1, 2, h, w).to(dtype)


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """The matrices (B, 2, 3) of the inverse maps of ``m`` (B, 2, 3)."""
    a_inv = torch.linalg.inv(m[:, :, :2])
    return torch.cat((a_inv, -a_inv @ m[:, :, 2:]), 2)


def compose_affine(m_first: torch.Tensor, m_second: torch.Tensor) -> torch.Tensor:
    """The matrices (B, 2, 3) of ``p -> m_first @ [m_second @ [p, 1], 1]``: their fields composed as
    ``bsr.warp.compose(affine_field(m_first), affine_field(m_second))`` (warp by the first, then the second)."""
    return torch.cat((m_first[:, :, :2] @ m_second[:, :, :2],
                      m_first[:, :, :2] @ m_second[:, :, 2:] + m_first[:, :, 2:]), 2)


def _rescale(m: torch.Tensor, fx: float, fy: float) -> torch.Tensor:
    """A matrix fitted on an image reduced by (fx, fy) (pixel centres: x_full = fx (x + 0.5) - 0.5), at full size.

    With D = diag(fx, fy): ``q_f = D (A (D^-1 (p_f + 0.5) - 0.5) + t + 0.5) - 0.5``.
    """
    d = torch.diag(torch.tensor([fx, fy], dtype=m.dtype))
    d_inv = torch.diag(torch.tensor([1 / fx, 1 / fy], dtype=m.dtype))
    a, t = m[:, :, :2], m[:, :, 2:]
    half = torch.full((2, 1), 0.5, dtype=m.dtype)
    a_f = d @ a @ d_inv
    t_f = a_f @ half - d @ a @ half + d @ t + d @ half - half
    return torch.cat((a_f, t_f), 2)


class GlobalStage:
    """An affine map per pair; :meth:`fields` returns it and its inverse as fields."""

    def __init__(self, method: str = "ecc", max_side: int = 640):
        if method not in METHODS:
            raise ValueError(f"global stage method must be one of {', '.join(METHODS)}; got {method!r}")
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 32:
            raise ValueError(f"global stage max_side must be a whole number >= 32; got {max_side!r}")
        self.method, self.max_side = method, max_side

    @classmethod
    def from_config(cls, cfg) -> "GlobalStage | None":
        if cfg is None:
            return None
        if not isinstance(cfg, dict):
            raise ValueError(f"model option 'global' must be null or a mapping; got {cfg!r}")
        unknown = set(cfg) - {"method", "max_side"}
        if unknown:
            raise ValueError(f"unknown global stage option(s) {sorted(unknown)}; known: method, max_side")
        return cls(**cfg)

    def matrices(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3): IR position ``M @ [x, y, 1]`` of each visible pixel (x, y)."""
        from .baselines.ecc import ecc_affine

        h, w = ir.shape[-2:]
        f = max(h, w) / self.max_side
        if f <= 1:
            return fit_affine(ecc_affine(ir.float().cpu(), vis.float().cpu()))
        size = (max(int(round(h / f)), 8), max(int(round(w / f)), 8))
        ir_s = F.interpolate(ir.float().cpu(), size=size, mode="area")
        vis_s = F.interpolate(vis.float().cpu(), size=size, mode="area")
        return _rescale(fit_affine(ecc_affine(ir_s, vis_s)), w / size[1], h / size[0])

    @torch.no_grad()
    def fields(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(phi_g, inv_g)``: ``warp(ir, phi_g)`` lies on ``vis``; ``inv_g`` undoes it."""
        h, w = ir.shape[-2:]
        m = self.matrices(ir, vis)
        return (affine_field(m, h, w).to(ir.device), affine_field(invert_affine(m), h, w).to(ir.device))
