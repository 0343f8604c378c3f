"""Which global stage comes closest to the ground truth on RoadScene, and how far is each from the floor?

Candidates, all classical (OpenCV's ``findTransformECC`` through
:func:`bsr.baselines.ecc.ecc_affine_opencv`, and phase correlation):

* ``affine``: the released model's global stage (6 degrees of freedom);
* ``euclid``: ECC with a rotation + translation (3);
* ``transl``: ECC with a translation (2);
* ``phase``: phase correlation (2);
* ``bidir``: affine ECC run both ways (IR onto visible and visible onto IR), the
  second inverted, the two matrices averaged;
* ``select d``: the fewest degrees of freedom among transl / euclid / affine whose
  correlation coefficient at full size (the ECC criterion) is within ``d`` of the
  best of the three (Occam's razor on ECC's own score; no ground truth used).

Two errors per method, mean EPE in px with a 10 px border left out:

* ``EPE``: against the synthetic ground truth, as the benchmark scores;
* ``rel``: against the synthetic ground truth composed with the method's own
  field on the unmisaligned pair. It removes the pairs' own misalignment (the
  floor under ``EPE``): a method that finds the same content alignment before
  and after the synthetic warp scores 0.

Pairs: the 16 validation pairs held out of RoadScene's train split (never the
test split).

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_global_stage.py \\
        [--pairs 16] [--sets none,shift5_right,shift5_up,dilate10,dilate30,dilate50,affine_elastic]
"""
from __future__ import annotations

import argparse
import inspect

import numpy as np
import torch

from bsr.baselines.ecc import _ecc_score, _edge_features, ecc_affine_opencv
from bsr.baselines.fields import affine_to_field
from bsr.baselines.registration import phase_correlation_numpy
from bsr.datasets.benchsets import make_set
from bsr.global_stage import invert_affine
from bsr.metrics.registration import endpoint_error
from bsr.training.pretrain import _split, resolve
from bsr.warp import compose

MARGIN = 10
DOF_ORDER = ("translation", "euclidean", "affine")
# the features ECC itself correlates (ecc_affine_opencv's defaults)
_ECC_DEFAULTS = inspect.signature(ecc_affine_opencv).parameters
FEATURES = tuple(_ECC_DEFAULTS[k].default for k in ("sigma", "post_sigma", "normalise"))


def _inv(m: np.ndarray) -> np.ndarray:
    return invert_affine(torch.from_numpy(m)[None])[0].numpy()


def fields(ir: np.ndarray, vis: np.ndarray, deltas) -> dict:
    """Every candidate's (2, H, W) field on one pair."""
    h, w = ir.shape
    mats = {motion: ecc_affine_opencv(ir, vis, motion=motion, return_matrix=True) for motion in DOF_ORDER}
    out = {"affine": affine_to_field(mats["affine"], h, w),
           "euclid": affine_to_field(mats["euclidean"], h, w),
           "transl": affine_to_field(mats["translation"], h, w),
           "phase": phase_correlation_numpy(ir, vis)}
    back = ecc_affine_opencv(vis, ir, return_matrix=True)
    out["bidir"] = affine_to_field(0.5 * (mats["affine"] + _inv(back)), h, w)
    fv, fi = _edge_features(vis, *FEATURES), _edge_features(ir, *FEATURES)
    rho = {k: _ecc_score(fv, fi, m) for k, m in mats.items()}
    best = max(rho.values())
    for d in deltas:
        pick = next(k for k in DOF_ORDER if rho[k] >= best - d)
        out[f"select {d:g}"] = affine_to_field(mats[pick], h, w)
    return out


def _train_split():
    return _split(resolve({"data": {"name": "roadscene", "split": "train", "val_count": 16}}))


def validation_pairs(n: int = 16):
    """The first ``n`` of the 16 validation pairs held out of RoadScene's train split."""
    return _train_split()[1][:n]


def train_pairs():
    """RoadScene's train split less those 16 validation pairs (155 pairs)."""
    return _train_split()[0]


def print_scores(val, sets, fields_of, base: dict | None = None) -> None:
    """One row per set of mean EPE / rel (px) for every field that ``fields_of(ir, vis)`` returns.

    ``fields_of`` takes (1, 1, H, W) tensors and returns a dict of (1, 2, H, W)
    fields; ``base`` (pair name -> that dict on the unmisaligned pair) is
    computed when not given. ``rel`` scores against the ground truth composed
    with the same method's field on the unmisaligned pair.
    """
    if base is None:
        base = {p.name: fields_of(torch.from_numpy(p.ir)[None, None], torch.from_numpy(p.vis)[None, None])
                for p in val}
    names = list(next(iter(base.values())))
    print(f"{'set':>15} " + " ".join(f"{n:>13}" for n in names))
    for name in sets:
        res = {n: ([], []) for n in names}
        if name == "none":   # the unmisaligned pairs: the base fields, against a zero ground truth
            for p in val:
                for n in names:
                    phi = base[p.name][n]
                    res[n][0].append(endpoint_error(phi, torch.zeros_like(phi), MARGIN)["EPE_mean"])
                    res[n][1].append(0.0)
        for it in ([] if name == "none" else make_set(val, name, 0)):
            f = fields_of(it["mis"], it["vis"])
            for n in names:
                res[n][0].append(endpoint_error(f[n], it["gt"], MARGIN)["EPE_mean"])
                res[n][1].append(endpoint_error(f[n], compose(it["gt"], base[it["name"]][n]), MARGIN)["EPE_mean"])
        print(f"{name:>15} " + " ".join(f"{np.mean(res[n][0]):6.2f}/{np.mean(res[n][1]):<6.2f}" for n in names),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--sets", default="none,shift5_right,shift5_up,dilate10,dilate30,dilate50,affine_elastic")
    ap.add_argument("--deltas", default="0.002,0.005,0.01,0.02")
    a = ap.parse_args()
    torch.set_num_threads(1)
    deltas = [float(d) for d in a.deltas.split(",")]
    val = validation_pairs(a.pairs)

    def fields_of(ir, vis):
        f = fields(ir[0, 0].numpy().astype(np.float64), vis[0, 0].numpy().astype(np.float64), deltas)
        return {k: torch.from_numpy(v[None].astype(np.float32)) for k, v in f.items()}

    print(f"{len(val)} validation pairs (train split); mean EPE / rel (px), 10 px border left out")
    print_scores(val, a.sets.split(","), fields_of)

if __name__ == "__main__":
    main()
