"""The misaligned sets on which the released model and the classical methods are compared.

Each set misaligns the IR image of every given aligned pair in memory, with
its ground-truth field (``warp(mis, gt) ~= ir``, :mod:`bsr.datasets.simulate`):

* ``shift5_right``, ``shift5_left``, ``shift5_down``, ``shift5_up``: 5 px
  translations in the four directions;
* ``dilate5`` ... ``dilate50``: the paper's dilate-crop zoom at d px;
* ``affine_elastic``: a seeded random affine map plus an elastic field whose
  ranges reach beyond the released model's training family: rotation up to
  8 degrees, translation up to 25 px per axis, scale 5 %, elastic peak 5 px
  (the training family: 5 degrees, 12 px, 4 px; ``config/pretrain/roadscene.yaml``).

The draws depend only on ``seed`` and the pair's position, so every method
sees the same pairs.
"""

from __future__ import annotations

import torch

from . import simulate

__all__ = ["SETS", "make_set"]

SHIFTS = {"shift5_right": (5.0, 0.0), "shift5_left": (-5.0, 0.0), "shift5_down": (0.0, 5.0),
          "shift5_up": (0.0, -5.0)}
DILATES = {f"dilate{d}": d for d in (5, 10, 20, 30, 50)}
AFFINE_ELASTIC = {"max_shift": 25.0, "max_rotation_deg": 8.0, "max_scale": 0.05, "elastic_px": 5.0,
                  "elastic_sigma": 48.0}
SETS = [*SHIFTS, *DILATES, "affine_elastic"]


def _misalign(ir: torch.Tensor, name: str, generator: torch.Generator):
    if name in SHIFTS:
        return simulate.shift(ir, *SHIFTS[name])
    if name in DILATES:
        return simulate.dilate_crop(ir, DILATES[name])
    if name == "affine_elastic":
        return simulate.random_smooth(ir, generator=generator, **AFFINE_ELASTIC)
    raise ValueError(f"unknown set {name!r}; expected one of {', '.join(SETS)}")


def make_set(pairs, name: str, seed: int = 0) -> list[dict]:
    """Misalign every pair of ``pairs`` (:class:`bsr.datasets.readers.Pair`, aligned) for set ``name``.

    Returns dicts with ``name``, ``mis``, ``vis``, ``ir_aligned`` ((1, 1, H, W)
    tensors) and ``gt`` ((1, 2, H, W), px).
    """
    if name not in SETS:
        raise ValueError(f"unknown set {name!r}; expected one of {', '.join(SETS)}")
    out = []
    for i, p in enumerate(pairs):
        g = torch.Generator().manual_seed(int(seed) * 100003 + i)
        ir = torch.from_numpy(p.ir)[None, None]
        mis, gt = _misalign(ir, name, g)
        out.append({"name": p.name, "mis": mis.clamp(0, 1), "vis": torch.from_numpy(p.vis)[None, None],
                    "ir_aligned": ir, "gt": gt})
    return out
