"""Settings of the per-pair MIND refinement (``bsr.refine``) compared on validation pairs (experiments/NOTES.md, 15, 17, 18).

The released model's global field is computed once per item; each refinement variant then fits its
residual to it (``bsr.refine.Refiner``). Per item it records the mean EPE (px, 10 px border left out),
the seconds of the fit on one thread, the MIND loss of the pair before and after the fit (scales
1, 2, 4 at full size, over the pixels whose whole field samples inside the IR) and the mean size of
the residual, so that a gate on those can be scored afterwards from the CSV. Validation pairs held
out of RoadScene's train split only (never the test split).

Section 15's variants recompute MIND on the warped IR at every step (``warp_descriptors=False``, the
computation of that time); section 17's warp the IR's descriptors instead (``Refiner()``'s default):

    ... probe_refine_speed.py --variants image,descriptor,descriptor60,descriptor_g24 --out runs/refine_desc.csv

Section 18's coarser fields and projections of the shipped residual onto its affine part (``--own`` adds
the EPE from each variant's own alignment, column ``epe_own``):

    ... probe_refine_speed.py --variants descriptor,bilinear,bilinear60,grid128 --out runs/refine_coarse.csv
    ... probe_refine_speed.py --variants descriptor,descriptor_affine --own --out runs/refine_affown.csv

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_refine_speed.py \\
        [--pairs 16] [--sets shift5_right,dilate10] --out runs/refine_speed_a.csv
"""
from __future__ import annotations

import argparse
import csv
import time

import numpy as np
import torch

import bsr
from bsr.datasets.benchsets import make_set
from bsr.global_stage import affine_field, fit_affine
from bsr.metrics.registration import endpoint_error
from bsr.refine import Refiner
from bsr.similarity import inside_mask, mind_loss
from bsr.warp import compose, warp
from probe_global_stage import MARGIN, validation_pairs   # (same folder)

_RECOMPUTED = {"warp_descriptors": False}


class AffinePart:
    """The shipped refinement's residual replaced by its least-squares affine part plus ``local`` times the rest
    (section 18; ``local=0``: the affine part alone)."""

    def __init__(self, refiner: Refiner, local: float = 0.0):
        self.refiner, self.local = refiner, local

    def residual(self, ir, vis, phi):
        r = self.refiner.residual(ir, vis, phi)
        fit = affine_field(fit_affine(r), *r.shape[-2:])
        return fit + self.local * (r - fit)


VARIANTS = {
    # section 15
    "full": Refiner(grid=16, steps=60, lr=0.5, **_RECOMPUTED),         # section 11's settings
    "steps30": Refiner(grid=16, steps=30, lr=1.0, **_RECOMPUTED),
    "grid32_30": Refiner(grid=32, steps=30, lr=1.0, **_RECOMPUTED),
    "grid24_30": Refiner(grid=24, steps=30, lr=1.0, **_RECOMPUTED),
    "grid32_60": Refiner(grid=32, steps=60, lr=0.5, **_RECOMPUTED),
    "grid48_30": Refiner(grid=48, steps=30, lr=1.0, **_RECOMPUTED),
    # section 17: "image" is grid32_30 again, beside the warped descriptors
    "image": Refiner(**_RECOMPUTED),
    "descriptor": Refiner(),
    "descriptor60": Refiner(steps=60, lr=0.5),
    "descriptor_g24": Refiner(grid=24),
    # section 18: coarser fields. A grid wider than the image leaves 2 x 2 control points, a bilinear field
    # (an affine map plus one xy term), fitted without smoothness
    "bilinear": Refiner(grid=4096, smooth=0.0),
    "bilinear60": Refiner(grid=4096, smooth=0.0, steps=60, lr=0.5),
    "grid128": Refiner(grid=128),
    "descriptor_affine": AffinePart(Refiner()),
    "descriptor_affine25": AffinePart(Refiner(), local=0.25),
    "descriptor_affine50": AffinePart(Refiner(), local=0.5),
}


def own_epe(field, gt, field_aligned) -> float:
    """EPE against the ground truth composed with the same method's field on the unmisaligned pair."""
    return endpoint_error(field, compose(gt, field_aligned.to(gt.dtype)), MARGIN)["EPE_mean"]


def pair_loss(ir, vis, field) -> float:
    with torch.no_grad():
        return float(mind_loss(warp(ir, field), vis, inside_mask(field, 2.0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--sets", default="shift5_right,dilate10,dilate30,dilate50,affine_elastic")
    ap.add_argument("--variants", default="full,steps30,grid32_30")
    ap.add_argument("--own", action="store_true",
                    help="also score each field against the ground truth composed with that variant's field on "
                         "the unmisaligned pair (column epe_own; section 18)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    pairs = validation_pairs(a.pairs)
    plain = bsr.load_pretrained(refine=False)   # the global stage alone
    variants = a.variants.split(",")
    own = {}   # (pair index, variant) -> that variant's field on the aligned pair
    if a.own:
        for i, p in enumerate(pairs):
            ir, vis = (torch.from_numpy(x)[None, None] for x in (p.ir, p.vis))
            with torch.no_grad():
                phi, _ = plain.register(ir, vis)
            own[i, "global"] = phi
            for v in variants:
                own[i, v] = compose(phi, VARIANTS[v].residual(ir, vis, phi))
    rows = []
    for name in a.sets.split(","):
        for i, it in enumerate(make_set(pairs, name, seed=0)):
            ir, vis = it["mis"], it["vis"]
            with torch.no_grad():
                phi, _ = plain.register(ir, vis)
            base = dict(set=name, item=i, variant="global", epe=endpoint_error(phi, it["gt"], MARGIN)["EPE_mean"],
                        seconds=0.0, loss_before=pair_loss(ir, vis, phi), loss_after=np.nan, r_mean=0.0)
            if a.own:
                base["epe_own"] = own_epe(phi, it["gt"], own[i, "global"])
            rows.append(base)
            for v in variants:
                t = time.perf_counter()
                r = VARIANTS[v].residual(ir, vis, phi)
                secs = time.perf_counter() - t
                field = compose(phi, r)
                rows.append(dict(set=name, item=i, variant=v, epe=endpoint_error(field, it["gt"], MARGIN)["EPE_mean"],
                                 seconds=secs, loss_before=base["loss_before"], loss_after=pair_loss(ir, vis, field),
                                 r_mean=float(r.norm(dim=1).mean())))
                if a.own:
                    rows[-1]["epe_own"] = own_epe(field, it["gt"], own[i, v])
            done = rows[-1 - len(variants):]
            print(name, i, " ".join(f"{r_['variant']} {r_['epe']:.3f} ({r_['seconds']:.1f}s)" for r_ in done), flush=True)
        with open(a.out, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    for name in a.sets.split(","):
        sel = [r for r in rows if r["set"] == name]
        print(name, " ".join(f"{v} {np.mean([r['epe'] for r in sel if r['variant'] == v]):.3f}/"
                             f"{np.mean([r['seconds'] for r in sel if r['variant'] == v]):.1f}s"
                             + (f" own {np.mean([r['epe_own'] for r in sel if r['variant'] == v]):.3f}" if a.own else "")
                             for v in ["global", *variants]))


if __name__ == "__main__":
    main()
