"""How the refinement's residual is built: its share that is one affine map per pair, and its share
common to all pairs (experiments/NOTES.md, section 18).

Sections 12, 14 and 16 trained a U-Net on 160 px crops to predict what ``bsr.refine`` fits to the whole
pair, and it learned a tenth of it. This script asks what a crop-sized, translation-equivariant network
would have to see. One misalignment per train pair (the family of the distillation configs, seed 0),
the released model's global stage, then ``bsr.refine.Refiner()`` (the shipped settings) on the whole
pair. For each residual (10 px border left out) it reports

* its rms size (px);
* the share of its sum of squares that a least-squares affine field of that pair explains;
* the share that one field common to all pairs explains (the mean over pairs on a 32 x 48 grid of
  normalised coordinates), which is the most a network without the pair's own evidence could learn.

Training pairs only (the 16 validation pairs and the test split are left out). About 2-3 min on one thread:

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/teacher_residual_structure.py
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from bsr.global_stage import affine_field, fit_affine
from bsr.training.after_global import build_pool, resolve
from bsr.training.pretrain import _split

BORDER = 10
GRID = (32, 48)


def affine_share(r: torch.Tensor) -> float:
    """Share of the sum of squares of ``r`` (2, h, w) explained by a least-squares affine field."""
    r = r[None].double()
    fit = affine_field(fit_affine(r), *r.shape[-2:], dtype=torch.float64)
    return float(1 - ((r - fit) ** 2).sum() / (r ** 2).sum().clamp_min(1e-12))


def main() -> None:
    torch.set_num_threads(1)
    with open("experiments/configs/roadscene_distill_grid32.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["stage"].update(pool_per_pair=1, teacher=True)
    cfg["progress"] = True
    cfg = resolve(cfg)
    train, _ = _split(cfg)
    pool = build_pool(train, cfg, np.random.default_rng(cfg["seed"]))
    rms, aff, kinds, small = [], [], [], []
    for e in pool:
        r = e["teacher"].float()[:, BORDER:-BORDER, BORDER:-BORDER]
        rms.append(float(r.pow(2).mean().sqrt()))
        aff.append(affine_share(r))
        kinds.append(e["kind"])
        small.append(F.interpolate(r[None], size=GRID, mode="area")[0])
    small = torch.stack(small)
    common = small.mean(0)
    common_share = float(1 - ((small - common) ** 2).sum() / (small ** 2).sum())
    aff = np.array(aff)
    print(f"{len(pool)} residuals; rms {np.mean(rms):.3f} px (median {np.median(rms):.3f})")
    print(f"share explained by one affine field per pair: median {np.median(aff):.3f}, mean {aff.mean():.3f}")
    for k in sorted(set(kinds)):
        sel = aff[[i for i, kk in enumerate(kinds) if kk == k]]
        print(f"  {k}: {len(sel)} residuals, median share {np.median(sel):.3f}")
    print(f"share explained by one field common to all pairs: {common_share:.3f} "
          f"(that field's rms {float(common.pow(2).mean().sqrt()):.3f} px)")


if __name__ == "__main__":
    main()
