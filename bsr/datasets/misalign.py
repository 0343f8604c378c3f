"""Random misalignments drawn per training sample, for real-data training.

:mod:`bsr.datasets.simulate` applies one named misalignment to a whole image, for the
study's test sets. Training a model that must register any pair needs the
opposite: a fresh misalignment for every sample, from a family wide enough
that no constant offset pays. This module draws it.

A draw is a map ``A`` from misaligned-image coordinates to aligned-image
coordinates, ``mis(p) = ir(A(p))``, on the *whole* image (so zooms and
rotations are about the image centre, as in the test sets), composed of:

* ``shift``: a translation of up to ``max_shift`` px in any direction;
* ``dilate``: the dilate-crop zoom of :func:`bsr.datasets.simulate.dilate_crop`, with d
  drawn in ``[0, max_dilate]`` px (continuous);
* ``affine``: a rotation (``max_rotation_deg``), isotropic scale
  (``max_scale``) and translation (``max_translation``) about the centre, plus
  a smooth elastic field of peak ``max_elastic`` px (spatial scale
  ``elastic_sigma``);
* ``small``: the affine kind at a fifth of its ranges (the residuals a global
  stage leaves).

:func:`misaligned_crop` evaluates ``A`` only on a crop window and samples the
aligned image there, so a step costs one ``grid_sample`` per sample whatever
the image size. The ground-truth field ``phi_p(q) = A^-1(q) - q`` is never
needed for training (the objective is self-supervised); :func:`ground_truth`
computes it numerically for validation only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..warp import identity_grid, invert_flow

__all__ = ["Family", "draw", "sampling_field", "misaligned_crop", "ground_truth", "KINDS"]

KINDS = ("shift", "dilate", "affine", "small")


@dataclass
class Family:
    """Ranges and mixing weights of the per-sample misalignment family."""

    weights: tuple = (0.25, 0.25, 0.3, 0.2)   # probability of each kind of KINDS
    max_shift: float = 10.0
    max_dilate: float = 50.0
    max_rotation_deg: float = 5.0
    max_scale: float = 0.05
    max_translation: float = 12.0
    max_elastic: float = 4.0
    elastic_sigma: float = 48.0

    def __post_init__(self):
        w = [float(x) for x in self.weights]
        if len(w) != len(KINDS) or any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"misalignment weights must be {len(KINDS)} non-negative numbers "
                             f"({', '.join(KINDS)}); got {self.weights!r}")
        self.weights = tuple(x / sum(w) for x in w)
        for name in ("max_shift", "max_dilate", "max_rotation_deg", "max_scale", "max_translation",
                     "max_elastic", "elastic_sigma"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"misalignment {name} must be a finite number >= 0; got {v!r}")
        if self.max_scale >= 0.5:
            raise ValueError(f"misalignment max_scale must be < 0.5; got {self.max_scale}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "Family":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown misalignment option(s) {sorted(unknown)}; known: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        if "weights" in d:
            d["weights"] = tuple(d["weights"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = list(d["weights"])
        return d


def draw(family: Family, h: int, w: int, rng: np.random.Generator) -> dict:
    """One misalignment of a ``h`` x ``w`` image: ``{"kind", "matrix" (2x3), "elastic"}``.

    ``matrix`` M gives ``A(p) = M @ [x, y, 1]`` before the elastic part;
    ``elastic`` is None or a (2, gh, gw) coarse grid of displacements (px),
    upsampled bicubically over the whole image.
    """
    kind = KINDS[int(rng.choice(len(KINDS), p=family.weights))]
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = np.eye(2)
    t = np.zeros(2)
    elastic = None
    if kind == "shift":
        r = family.max_shift * math.sqrt(rng.uniform())
        ang = rng.uniform(0, 2 * math.pi)
        t = -r * np.array([math.cos(ang), math.sin(ang)])         # content moves by +r: A(p) = p - r
    elif kind == "dilate":
        d = rng.uniform(0, family.max_dilate)
        # A(x) = (x + d/2 + 0.5) * n / (n + d) - 0.5 per axis (bsr.datasets.simulate.dilate_crop, continuous d)
        sx, sy = w / (w + d), h / (h + d)
        m = np.array([[sx, 0, (d / 2 + 0.5) * sx - 0.5], [0, sy, (d / 2 + 0.5) * sy - 0.5]])
        return {"kind": kind, "matrix": m, "elastic": None}
    else:
        f = 0.2 if kind == "small" else 1.0
        ang = math.radians(rng.uniform(-1, 1) * family.max_rotation_deg * f)
        s = 1 + rng.uniform(-1, 1) * family.max_scale * f
        a = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]) / s
        t = rng.uniform(-1, 1, size=2) * family.max_translation * f
        if family.max_elastic > 0:
            step = max(family.elastic_sigma, 4.0)
            gh, gw = int(h // step) + 3, int(w // step) + 3
            e = rng.standard_normal((2, gh, gw))
            e *= family.max_elastic * f * rng.uniform() / max(np.abs(e).max(), 1e-6)
            elastic = e
    m = np.concatenate((a, (c + t - a @ c)[:, None]), axis=1)
    return {"kind": kind, "matrix": m, "elastic": elastic}


def sampling_field(params: dict, h: int, w: int, window: tuple[int, int, int, int] | None = None,
                   dtype=torch.float32) -> torch.Tensor:
    """``v(p) = A(p) - p`` (1, 2, ch, cw) on ``window`` = (y0, x0, ch, cw) of the h x w image."""
    y0, x0, ch, cw = window if window is not None else (0, 0, h, w)
    p = identity_grid(ch, cw, dtype=torch.float64)
    p[:, 0] += x0
    p[:, 1] += y0
    m = torch.as_tensor(params["matrix"], dtype=torch.float64)
    ax = m[0, 0] * p[:, 0] + m[0, 1] * p[:, 1] + m[0, 2]
    ay = m[1, 0] * p[:, 0] + m[1, 1] * p[:, 1] + m[1, 2]
    v = torch.stack((ax, ay), 1) - p
    if params.get("elastic") is not None:
        e = torch.as_tensor(params["elastic"], dtype=torch.float64)[None]
        full = F.interpolate(e, size=(h, w), mode="bicubic", align_corners=True)
        v = v + full[:, :, y0:y0 + ch, x0:x0 + cw]
    return v.to(dtype)


def misaligned_crop(ir: torch.Tensor, params: dict, window: tuple[int, int, int, int]) -> torch.Tensor:
    """The misaligned IR on ``window`` (y0, x0, ch, cw): ``ir(A(p))``, (1, 1, ch, cw).

    ``ir`` is the whole aligned image (1, 1, H, W); outside it, border padding.
    """
    h, w = ir.shape[-2:]
    v = sampling_field(params, h, w, window, dtype=ir.dtype)
    y0, x0, ch, cw = window
    pos = identity_grid(ch, cw, dtype=ir.dtype) + v
    pos[:, 0] += x0
    pos[:, 1] += y0
    grid = torch.stack((pos[:, 0] * (2.0 / max(w - 1, 1)) - 1.0, pos[:, 1] * (2.0 / max(h - 1, 1)) - 1.0), -1)
    return F.grid_sample(ir, grid, mode="bilinear", padding_mode="border", align_corners=True)


def ground_truth(params: dict, h: int, w: int, iterations: int = 40) -> torch.Tensor:
    """The field ``phi_p`` with ``warp(mis, phi_p) ~= ir`` on the whole image (1, 2, h, w), numerically."""
    return invert_flow(sampling_field(params, h, w, dtype=torch.float32), iterations=iterations)
