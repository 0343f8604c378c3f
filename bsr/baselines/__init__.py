"""Classical baselines for misaligned infrared-visible fusion.

Inputs everywhere are torch tensors (B, 1, H, W) in [0, 1]: the IR image and
the visible luminance (Y).

* :data:`REGISTRATION`: name -> ``f(ir, vis)`` returning a field (B, 2, H, W)
  with ``bsr.warp.warp(ir, field)`` aligned to ``vis`` -- ``"phase"`` (phase
  correlation translation), ``"ECC"`` (affine ECC), ``"TV-L1"`` (dense flow).
* :data:`FUSION`: name -> ``f(ir, vis)`` returning the fused (B, 1, H, W) image
  in [0, 1] -- ``"average"``, ``"max"``, ``"LP"`` (Laplacian pyramid),
  ``"GFF"`` (guided-filtering fusion).
* :func:`register_then_fuse`: register (or not: ``"none"``) and fuse.
* :data:`COMBINATIONS`: the named pipelines "REG + FUSION" that the
  benchmarks run: every fusion rule alone ("none + X") and after every
  registration method.

Sources and parameters: see the module docstrings and ``docs/baselines.md``.
"""

from __future__ import annotations

import torch

from ..warp import warp
from .fusion import FUSION, average, gff, guided_filter, laplacian_pyramid, maximum
from .registration import REGISTRATION, ecc_affine, phase_correlation, tvl1

__all__ = [
    "REGISTRATION", "FUSION", "COMBINATIONS", "NO_REGISTRATION", "register_then_fuse",
    "combination_name", "parse_combination", "average", "maximum", "laplacian_pyramid",
    "gff", "guided_filter", "phase_correlation", "ecc_affine", "tvl1",
]

NO_REGISTRATION = "none"


def combination_name(reg_name: str, fusion_name: str) -> str:
    """``"ECC + GFF"`` style name of a pipeline."""
    return f"{reg_name} + {fusion_name}"


def parse_combination(name: str) -> tuple[str, str]:
    """Inverse of :func:`combination_name`: ``"ECC + GFF"`` -> ``("ECC", "GFF")``."""
    parts = [p.strip() for p in name.split(" + ")]
    if len(parts) != 2:
        raise ValueError(f"not a combination name (expected 'REG + FUSION'): {name!r}")
    return parts[0], parts[1]


COMBINATIONS = [combination_name(r, f)
                for r in (NO_REGISTRATION, *REGISTRATION) for f in FUSION]


def register_then_fuse(reg_name: str, fusion_name: str, ir: torch.Tensor, vis: torch.Tensor):
    """Align ``ir`` to ``vis`` with ``REGISTRATION[reg_name]``, then fuse with ``FUSION[fusion_name]``.

    ``reg_name="none"`` skips registration (zero field). Returns
    ``(fused, field)``: fused (B, 1, H, W) in [0, 1] and the field (B, 2, H, W)
    used to warp the IR.
    """
    if fusion_name not in FUSION:
        raise KeyError(f"unknown fusion method {fusion_name!r}; choose from {sorted(FUSION)}")
    if reg_name == NO_REGISTRATION:
        b, _, h, w = ir.shape
        field = torch.zeros(b, 2, h, w, dtype=ir.dtype, device=ir.device)
        registered = ir
    elif reg_name in REGISTRATION:
        field = REGISTRATION[reg_name](ir, vis)
        registered = warp(ir, field).clamp(0.0, 1.0)
    else:
        raise KeyError(f"unknown registration method {reg_name!r}; choose from "
                       f"{[NO_REGISTRATION, *REGISTRATION]}")
    return FUSION[fusion_name](registered, vis), field
