"""How much of the error on ``affine_elastic`` can any affine registration remove?

The set's ground truth is an affine map plus a smooth elastic field (peak 5 px,
48 px scale; :mod:`bsr.datasets.benchsets`). Its least-squares affine fit
(:func:`bsr.global_stage.fit_affine`, over the scored region) is the best an
affine registration can do: the "oracle" EPE left by it is the elastic part
alone, and it depends on the ground truth only, not on the images. For the
global stage (affine ECC, :func:`bsr.baselines.ecc.ecc_affine_opencv`) the probe
prints, pair by pair, the oracle EPE, the plain EPE, the EPE from ECC's own
alignment of the unmisaligned pair ("rel", as ``probe_global_stage.py``) and
the size of that own alignment ("own").

ECC runs on every fourth pair of RoadScene's train split outside the 16
validation pairs (``--pairs`` of them); the oracle alone is also computed on
the validation pairs and on the test split, which needs no image content.
Mean EPE in px, 10 px border left out.

With ``--both-ways`` it then runs ECC in both directions (IR onto visible, and
visible onto IR inverted) on every train-split pair outside validation, under
the set's draws for seeds 1 and 2 (the benchmark uses seed 0), and scores four
ways to use the second run: neither (one way), the backward run alone, the
average of the two matrices, and the one of the two with the higher forward
correlation coefficient (a second start that the criterion may take).

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_affine_oracle.py \\
        [--pairs 40] [--both-ways]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bsr.baselines.ecc import _ecc_score, _edge_features, ecc_affine_opencv
from bsr.baselines.fields import affine_to_field
from bsr.datasets.benchsets import make_set
from bsr.datasets.readers import load_pairs
from bsr.global_stage import affine_field, fit_affine
from bsr.metrics.registration import endpoint_error
from bsr.training.pretrain import _split, resolve
from bsr.warp import compose
from probe_global_stage import FEATURES, MARGIN, _inv   # (same folder)


def oracle_epe(gt: torch.Tensor, margin: int = MARGIN) -> float:
    """EPE of the least-squares affine fit of ``gt`` (1, 2, H, W) over the scored region."""
    h, w = gt.shape[-2:]
    inner = gt[..., margin:h - margin, margin:w - margin]
    fit = torch.zeros_like(gt)
    fit[..., margin:h - margin, margin:w - margin] = affine_field(
        fit_affine(inner), h - 2 * margin, w - 2 * margin)
    return endpoint_error(fit, gt, margin)["EPE_mean"]


def _ecc(ir: np.ndarray, vis: np.ndarray) -> torch.Tensor:
    f = ecc_affine_opencv(ir.astype(np.float64), vis.astype(np.float64))
    return torch.from_numpy(f[None].astype(np.float32))


def both_ways(pairs, seeds=(1, 2)) -> None:
    """Mean EPE of one-way ECC and of three uses of the backward run (module docstring)."""
    rows = []
    for seed in seeds:
        for it, p in zip(make_set(pairs, "affine_elastic", seed), pairs):
            ir, vis = it["mis"][0, 0].numpy().astype(np.float64), p.vis.astype(np.float64)
            h, w = ir.shape
            fwd = ecc_affine_opencv(ir, vis, return_matrix=True)
            bwd = _inv(ecc_affine_opencv(vis, ir, return_matrix=True))
            fv, fi = _edge_features(vis, *FEATURES), _edge_features(ir, *FEATURES)
            pick = bwd if _ecc_score(fv, fi, bwd) > _ecc_score(fv, fi, fwd) else fwd

            def epe(m):
                f = torch.from_numpy(affine_to_field(m, h, w)[None].astype(np.float32))
                return endpoint_error(f, it["gt"], MARGIN)["EPE_mean"]

            rows.append((oracle_epe(it["gt"]), epe(fwd), epe(bwd), epe(0.5 * (fwd + bwd)), epe(pick)))
    r = np.array(rows)
    print(f"\nboth ways, {len(pairs)} train-split pairs x seeds {', '.join(map(str, seeds))} ({len(r)} items)")
    for name, col in zip(("oracle", "one way", "backward", "average", "higher coefficient"), r.T):
        print(f"{name:>20}: mean {col.mean():.2f}, median {np.median(col):.2f}, "
              f"over oracle + 3 px: {int((col - r[:, 0] > 3).sum())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--both-ways", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    train, val = _split(resolve({"data": {"name": "roadscene", "split": "train", "val_count": 16}}))
    for label, pairs in (("validation", val), ("test split", load_pairs("roadscene", split="test"))):
        e = [oracle_epe(it["gt"]) for it in make_set(pairs, "affine_elastic", 0)]
        print(f"oracle affine EPE, {label} ({len(e)} pairs): mean {np.mean(e):.2f}, "
              f"median {np.median(e):.2f}, max {np.max(e):.2f}")
    pairs = train[::4][:a.pairs]
    rows = []
    print(f"\naffine ECC on {len(pairs)} train-split pairs (not validation, not test)")
    print(f"{'pair':>18} {'oracle':>7} {'EPE':>7} {'rel':>7} {'own':>7}")
    for it, p in zip(make_set(pairs, "affine_elastic", 0), pairs):
        base = _ecc(p.ir, p.vis)
        f = _ecc(it["mis"][0, 0].numpy(), p.vis)
        row = (oracle_epe(it["gt"]), endpoint_error(f, it["gt"], MARGIN)["EPE_mean"],
               endpoint_error(f, compose(it["gt"], base), MARGIN)["EPE_mean"],
               endpoint_error(base, torch.zeros_like(base), MARGIN)["EPE_mean"])
        rows.append(row)
        print(f"{p.name:>18} " + " ".join(f"{v:7.2f}" for v in row), flush=True)
    r = np.array(rows)
    print(f"{'mean':>18} " + " ".join(f"{v:7.2f}" for v in r.mean(0)))
    print(f"pairs with rel more than 1 px above the oracle: {int(((r[:, 2] - r[:, 0]) > 1).sum())} of {len(r)}; "
          f"Pearson(own, EPE - rel) {np.corrcoef(r[:, 3], r[:, 1] - r[:, 2])[0, 1]:+.2f}")
    if a.both_ways:
        both_ways(train)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
