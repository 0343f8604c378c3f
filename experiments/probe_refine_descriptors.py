"""Refinement that warps the IR's MIND descriptors instead of recomputing MIND on the warped IR (NOTES, 17).

Until this probe ``bsr.refine.Refiner`` recomputed the MIND descriptors of ``warp(ir, field)`` at every Adam step and
scale. With ``warp_descriptors`` (the default since this probe) the IR's descriptors are computed
once per scale and warped by the (pooled) field, as descriptor-based registration commonly does
(Heinrich et al., MICCAI 2013, deeds; :func:`bsr.similarity.warped_mind_loss`). The two agree
where the field is locally a translation; the second needs no blur, exponential or normalisation
inside the loop. Both fit the residual to the shipped global field on the 16 validation pairs of
RoadScene's train split (never the test split), one thread; per item the mean EPE (px, 10 px
border left out) and the seconds of the fit.

    BSR_DATA=../shared/datasets .venv/bin/python experiments/probe_refine_descriptors.py --out runs/refine_desc.csv
"""
from __future__ import annotations

import argparse
import csv
import time

import numpy as np
import torch

import bsr
from bsr.datasets.benchsets import make_set
from bsr.metrics.registration import endpoint_error
from bsr.refine import Refiner
from bsr.warp import compose
from probe_global_stage import MARGIN, validation_pairs   # (same folder)


VARIANTS = {
    "image": Refiner(warp_descriptors=False),          # sections 15-16: MIND recomputed at every step
    "descriptor": Refiner(),                           # the IR's descriptors warped (the default since section 17)
    "descriptor60": Refiner(steps=60, lr=0.5),
    "descriptor_g24": Refiner(grid=24),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--sets", default="shift5_right,dilate10,dilate30,dilate50,affine_elastic")
    ap.add_argument("--variants", default="image,descriptor")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    variants = a.variants.split(",")
    plain = bsr.load_pretrained(refine=False)   # the global stage alone
    rows = []
    for name in a.sets.split(","):
        for i, it in enumerate(make_set(validation_pairs(a.pairs), name, seed=0)):
            ir, vis = it["mis"], it["vis"]
            with torch.no_grad():
                phi, _ = plain.register(ir, vis)
            rows.append(dict(set=name, item=i, variant="global", seconds=0.0,
                             epe=endpoint_error(phi, it["gt"], MARGIN)["EPE_mean"]))
            for v in variants:
                t = time.perf_counter()
                r = VARIANTS[v].residual(ir, vis, phi)
                rows.append(dict(set=name, item=i, variant=v, seconds=time.perf_counter() - t,
                                 epe=endpoint_error(compose(phi, r), it["gt"], MARGIN)["EPE_mean"]))
            print(name, i, " ".join(f"{r_['variant']} {r_['epe']:.3f} ({r_['seconds']:.1f}s)"
                                    for r_ in rows[-1 - len(variants):]), flush=True)
        with open(a.out, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    print(f"{'set':>15} " + " ".join(f"{v:>16}" for v in ["global", *variants]))
    for name in a.sets.split(","):
        sel = [r for r in rows if r["set"] == name]
        print(f"{name:>15} " + " ".join(
            f"{np.mean([r['epe'] for r in sel if r['variant'] == v]):8.3f} {np.mean([r['seconds'] for r in sel if r['variant'] == v]):5.1f}s"
            for v in ["global", *variants]))


if __name__ == "__main__":
    main()
