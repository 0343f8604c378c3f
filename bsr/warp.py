"""Dense warping in pixel units: the package's one spatial transformer.

Convention (used everywhere in ``bsr``):

* a field ``flow`` has shape (B, 2, H, W), in pixels; channel 0 is the x
  (width) component, channel 1 the y (height) component;
* warping is *backward*: ``out(p) = image(p + flow(p))``, sampled bilinearly
  with border padding. Pixel centres sit at integer coordinates
  (``align_corners=True`` in torch terms), so a zero field is an exact identity
  and an integer constant field is an exact shift.

Consequence of the sign: content at position ``y`` in ``image`` appears at
``y - flow`` in ``out``. A constant field ``(+3, 0)`` moves content 3 px to
the *left*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["warp", "identity_grid", "invert_flow", "compose", "coarse_field", "Warp"]


def _check(image: torch.Tensor, flow: torch.Tensor) -> None:
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W); got shape {tuple(image.shape)}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W); got shape {tuple(flow.shape)}")
    if flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"flow size {tuple(flow.shape[-2:])} differs from image size {tuple(image.shape[-2:])}"
        )
    if flow.shape[0] != image.shape[0] and flow.shape[0] != 1 and image.shape[0] != 1:
        raise ValueError(f"batch sizes differ: image {image.shape[0]}, flow {flow.shape[0]}")


def check_flow(flow: torch.Tensor) -> None:
    """A (B, 2, H, W) field tensor, or a one-line ValueError."""
    if not isinstance(flow, torch.Tensor) or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W); got {getattr(flow, 'shape', type(flow))}")


def identity_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinates as a (1, 2, H, W) tensor: channel 0 = x, channel 1 = y."""
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy))[None]


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear",
         padding_mode: str = "border") -> torch.Tensor:
    """Backward-warp ``image`` by ``flow``: ``out(p) = image(p + flow(p))``.

    Args:
        image: (B, C, H, W) tensor.
        flow: (B, 2, H, W) displacement in pixels (x first). A batch of 1 in
            either argument broadcasts against the other.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"border"`` (default), ``"zeros"`` or ``"reflection"``.

    Returns:
        (B, C, H, W) tensor, differentiable in both ``image`` and ``flow``.
    """
    _check(image, flow)
    b = max(image.shape[0], flow.shape[0])
    h, w = image.shape[-2:]
    flow = flow.to(image.dtype)
    pos = identity_grid(h, w, device=image.device, dtype=image.dtype) + flow
    # normalise to [-1, 1] with pixel centres at the extremes (align_corners=True)
    sx = 2.0 / max(w - 1, 1)
    sy = 2.0 / max(h - 1, 1)
    grid = torch.stack((pos[:, 0] * sx - 1.0, pos[:, 1] * sy - 1.0), dim=-1)
    if grid.shape[0] != b:
        grid = grid.expand(b, -1, -1, -1)
    if image.shape[0] != b:
        image = image.expand(b, -1, -1, -1)
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def compose(flow_a: torch.Tensor, flow_b: torch.Tensor) -> torch.Tensor:
    """Field equivalent to warping by ``flow_a`` and then by ``flow_b``.

    ``warp(warp(x, flow_a), flow_b) ~= warp(x, compose(flow_a, flow_b))``, i.e.
    ``c(p) = flow_b(p) + flow_a(p + flow_b(p))``.
    """
    return flow_b + warp(flow_a, flow_b)


def invert_flow(flow: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Numerical inverse of a smooth field by fixed-point iteration.

    Returns ``g`` with ``compose(flow, g) ~= 0``, i.e. ``g(p) = -flow(p + g(p))``;
    then ``warp(warp(x, flow), g) ~= x`` away from borders. Converges when the
    field's Jacobian norm is below one (any smooth, moderate deformation).
    """
    inv = -flow
    for _ in range(iterations):
        inv = -warp(flow, inv)
    return inv


def coarse_field(flow: torch.Tensor, grid: int, coarse: bool = False):
    """``flow`` averaged onto a grid of about ``grid`` px (``H // grid`` x ``W // grid`` cells, at least 2)
    and upsampled bilinearly: a smooth field with the parametrisation of :class:`bsr.refine.Refiner`.

    ``grid`` 1 returns ``flow``. With ``coarse=True``, returns ``(field, grid_values)``.
    """
    h, w = flow.shape[-2:]
    if grid <= 1:
        return (flow, flow) if coarse else flow
    g = F.adaptive_avg_pool2d(flow, (max(h // grid, 2), max(w // grid, 2)))
    full = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=True)
    return (full, g) if coarse else full


class Warp(torch.nn.Module):
    """Module form of :func:`warp` (a spatial transformer with no parameters)."""

    def __init__(self, mode: str = "bilinear", padding_mode: str = "border"):
        super().__init__()
        self.mode = mode
        self.padding_mode = padding_mode

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return warp(image, flow, self.mode, self.padding_mode)
