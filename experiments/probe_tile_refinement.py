"""Does a tile-wise ECC after the global stage follow what an affine map cannot (elastic parts, ECC's errors)?

Sections 2 and 5 of experiments/NOTES.md found that a free residual field under MIND, or
under learned descriptors, does not move from the global ECC solution: the local
evidence of one cross-modal pixel neighbourhood is too weak. This probe pools the
evidence over larger regions instead. After the global stage
(:class:`bsr.global_stage.GlobalStage`, the released model's), the warped IR and
the visible image are cut into overlapping square tiles (side ``T``, stride
``T / 2``, starting at the top left, so a strip narrower than the stride at the
right and bottom may have no tile of its own and a residual shrunk towards zero);
translation ECC (:func:`bsr.baselines.ecc.ecc_affine_opencv`, the same
edge features) registers each tile; tiles whose correlation falls under ECC's own
``min_rho`` (the identity fallback) or whose shift exceeds ``--max-shift`` are
dropped. The residual field is a Gaussian-weighted mean of the tile shifts
(weights = correlation coefficient, width = the stride), shrunk towards zero by a
prior of weight ``--prior`` (the weight of one perfectly correlated tile at its
centre is 1), and composed after the global field.

Scores, mean EPE / rel in px with a 10 px border left out (rel: against the ground
truth composed with the same method's field on the unmisaligned pair, as in
experiments/probe_global_stage.py). Pairs: the 16 validation pairs held out of
RoadScene's train split, never the test split.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_tile_refinement.py \\
        [--pairs 16] [--tiles 96,128,192] [--sets none,shift5_right,dilate10,dilate30,dilate50,affine_elastic]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bsr.baselines.ecc import _ecc_score, _edge_features, ecc_affine_opencv
from bsr.global_stage import GlobalStage
from bsr.warp import compose, warp
from probe_global_stage import FEATURES, print_scores, validation_pairs   # (same folder)


def tile_shifts(ir: np.ndarray, vis: np.ndarray, tile: int, max_shift: float) -> list[tuple]:
    """(cy, cx, dx, dy, rho) per kept tile: translation ECC of the IR tile onto the visible tile."""
    h, w = ir.shape
    step = tile // 2
    out = []
    for y0 in range(0, max(h - tile, 0) + 1, step):
        for x0 in range(0, max(w - tile, 0) + 1, step):
            ti, tv = ir[y0:y0 + tile, x0:x0 + tile], vis[y0:y0 + tile, x0:x0 + tile]
            m = ecc_affine_opencv(ti, tv, motion="translation", return_matrix=True)
            d = m[:, 2]
            if np.allclose(m, np.eye(2, 3)) or np.hypot(*d) > max_shift:
                continue
            rho = _ecc_score(_edge_features(tv, *FEATURES), _edge_features(ti, *FEATURES), m)
            out.append((y0 + tile / 2, x0 + tile / 2, d[0], d[1], rho))
    return out


def residual(shape, shifts, width: float, prior: float) -> torch.Tensor:
    """(1, 2, H, W) Gaussian-weighted mean of the tile shifts, shrunk towards 0 by ``prior``."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    num = np.zeros((2, h, w))
    den = np.full((h, w), float(prior))
    for cy, cx, dx, dy, rho in shifts:
        k = max(rho, 0.0) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width ** 2))
        num[0] += k * dx
        num[1] += k * dy
        den += k
    return torch.from_numpy((num / np.maximum(den, 1e-9))[None].astype(np.float32))


def fields(gs: GlobalStage, mis: torch.Tensor, vis: torch.Tensor, tiles, max_shift, prior) -> dict:
    phi_g, _ = gs.fields(mis, vis)
    out = {"global": phi_g}
    mis_g = warp(mis, phi_g)[0, 0].numpy().astype(np.float64)
    v = vis[0, 0].numpy().astype(np.float64)
    for t in tiles:
        r = residual(v.shape, tile_shifts(mis_g, v, t, max_shift), t / 2, prior)
        out[f"+tiles {t}"] = compose(phi_g, r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--tiles", default="96,128,192")
    ap.add_argument("--max-shift", type=float, default=6.0)
    ap.add_argument("--prior", type=float, default=0.5)
    ap.add_argument("--sets", default="none,shift5_right,dilate10,dilate30,dilate50,affine_elastic")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tiles = [int(t) for t in a.tiles.split(",")]
    val = validation_pairs(a.pairs)
    gs = GlobalStage("ecc", 640)
    t0 = time.perf_counter()
    print(f"{len(val)} validation pairs (train split); max shift {a.max_shift} px, prior {a.prior}; "
          f"mean EPE / rel (px), 10 px border left out")
    print_scores(val, a.sets.split(","), lambda ir, vis: fields(gs, ir, vis, tiles, a.max_shift, a.prior))
    print(f"({time.perf_counter() - t0:.0f} s)")

if __name__ == "__main__":
    main()
