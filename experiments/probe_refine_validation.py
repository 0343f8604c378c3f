"""The released model with and without its per-pair MIND refinement (``bsr.refine``), on validation pairs.

``bsr.load_pretrained(refine=False)`` against the refinement of the settings given, on the
validation pairs held out of RoadScene's train split (never the test split), for sets of
``bsr.datasets.benchsets``. Prints the mean EPE (px, 10 px border left out) of both, and the seconds per
pair of the refined model's ``register``.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_refine_validation.py \\
        [--pairs 16] [--sets affine_elastic,dilate30] [--steps 60] [--lr 0.5] [--grid 16] [--smooth 0.1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import bsr
from bsr.datasets.benchsets import make_set
from bsr.metrics.registration import endpoint_error
from probe_global_stage import MARGIN, validation_pairs   # (same folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--sets", default="affine_elastic,dilate30")
    for k, v in (("steps", 60), ("lr", 0.5), ("grid", 16), ("smooth", 0.1)):
        ap.add_argument(f"--{k}", type=type(v), default=v)
    a = ap.parse_args()
    torch.set_num_threads(1)
    pairs = validation_pairs(a.pairs)
    plain = bsr.load_pretrained(refine=False)   # the global stage alone
    refined = bsr.load_pretrained(refine={"steps": a.steps, "lr": a.lr, "grid": a.grid, "smooth": a.smooth})
    print(f"{len(pairs)} validation pairs; refine {refined.config['refine']}; mean EPE px, released -> refined")
    for name in a.sets.split(","):
        before, after, secs = [], [], []
        for it in make_set(pairs, name, seed=0):
            with torch.no_grad():
                p0, _ = plain.register(it["mis"], it["vis"])
                t = time.perf_counter()
                p1, _ = refined.register(it["mis"], it["vis"])
                secs.append(time.perf_counter() - t)
            before.append(endpoint_error(p0, it["gt"], MARGIN)["EPE_mean"])
            after.append(endpoint_error(p1, it["gt"], MARGIN)["EPE_mean"])
        better = sum(b < a_ for a_, b in zip(before, after))
        print(f"{name:>15} {np.mean(before):.2f} -> {np.mean(after):.2f}  (better on {better}/{len(before)}; "
              f"{np.mean(secs):.1f} s/pair)", flush=True)


if __name__ == "__main__":
    main()
