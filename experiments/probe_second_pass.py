"""Does a second affine ECC pass, on the IR warped by the first, come closer to the truth?

ECC correlates edge features of the misaligned IR; after a zoom (dilate-crop)
those features differ from the unmisaligned IR's. A second pass computes them
again on the IR resampled by the first estimate, so it sees nearly the
unmisaligned geometry; the matrices compose exactly (``p -> m1(m2(p))``). A
third pass repeats that once more. Scored as ``probe_global_stage.py`` (mean
EPE / rel, px, 10 px border left out) on the 16 validation pairs.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_second_pass.py
"""
from __future__ import annotations

import time

import numpy as np
import torch

from bsr.baselines.ecc import _compose, _warp_affine, ecc_affine_opencv
from bsr.baselines.fields import affine_to_field
from probe_global_stage import print_scores, validation_pairs   # (same folder)

SETS = ("none", "shift5_right", "dilate10", "dilate30", "dilate50", "affine_elastic")


def passes(ir: np.ndarray, vis: np.ndarray, n: int = 3) -> list[np.ndarray]:
    """The 2 x 3 matrices after 1 .. ``n`` passes of affine ECC."""
    out, m = [], np.eye(2, 3)
    for _ in range(n):
        moved = ir if not out else _warp_affine(ir.astype(np.float32), m)[0].astype(np.float64)
        m = _compose(m, ecc_affine_opencv(moved, vis, return_matrix=True))
        out.append(m)
    return out


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.time()

    def fields_of(ir, vis):
        a, b = ir[0, 0].numpy().astype(np.float64), vis[0, 0].numpy().astype(np.float64)
        h, w = a.shape
        return {f"{k} pass{'es' if k > 1 else ''}": torch.from_numpy(affine_to_field(m, h, w)[None].astype(np.float32))
                for k, m in enumerate(passes(a, b), start=1)}

    print_scores(validation_pairs(16), SETS, fields_of)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
