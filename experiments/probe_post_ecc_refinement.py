"""Can a local field after the global (ECC) stage lower the EPE on RoadScene? An upper-bound probe.

A learned local stage is trained to minimise a self-supervised similarity. Here
that similarity is minimised directly, per pair (instance optimisation), on what
the global stage leaves: a smooth residual field ``r`` (a coarse grid, bilinearly
upsampled), ``phi = compose(phi_ecc, r)``, Adam on MIND at three scales plus a
diffusion term on the grid. What a network trained on the same objective can
reach on a pair is bounded, roughly, by what optimising that very pair reaches;
if the optimum is not better than ECC, no amount of training on this objective
will be.

Pairs: the 16 validation pairs held out of RoadScene's train split
(``bsr.training.pretrain._split``, the released recipe's split), never the test
split; sets: ``bsr.datasets.benchsets`` (the benchmark's misalignments).

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_post_ecc_refinement.py \\
        [--pairs 8] [--sets shift5_right,dilate10,affine_elastic] [--grid 16] [--smooth 0.5,2] [--steps 80] \\
        [--scales 1,2,4] [--mask whole|residual]
"""
from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
import torch.nn.functional as F

from bsr.datasets.benchsets import make_set
from bsr.global_stage import GlobalStage
from bsr.metrics.registration import endpoint_error
from bsr.similarity import diffusion, inside_mask, mind_loss
from bsr.training.pretrain import _split, resolve
from bsr.warp import compose, warp

MARGIN = 10


def epe(phi: torch.Tensor, gt: torch.Tensor) -> float:
    return endpoint_error(phi, gt, MARGIN)["EPE_mean"]


def refine(mis_g: torch.Tensor, vis: torch.Tensor, grid: int, smooth: float, steps: int, lr: float,
           similarity=mind_loss, phi_g: torch.Tensor | None = None) -> tuple[torch.Tensor, float, float]:
    """A smooth field ``r`` (a grid every ``grid`` px, bilinearly upsampled) with ``warp(mis_g, r)`` on
    ``vis`` under ``similarity(warped, vis, mask)``; returns r and the loss before and after.

    ``mis_g`` is the misaligned image warped by the global field ``phi_g``. With ``phi_g`` given, the
    mask keeps the pixels whose whole field ``compose(phi_g, r)`` samples inside the misaligned image;
    without it, those whose residual ``r`` samples inside ``mis_g``, which counts the band that the
    global warp fills by repeating the image's border (about d/2 px wide on a dilate-crop of d px)."""
    h, w = mis_g.shape[-2:]
    g = torch.zeros(1, 2, max(h // grid, 2), max(w // grid, 2), requires_grad=True)
    opt = torch.optim.Adam([g], lr=lr)

    def loss_of(gg):
        r = F.interpolate(gg, size=(h, w), mode="bilinear", align_corners=True)
        mask = inside_mask(r if phi_g is None else compose(phi_g, r), 2)
        return similarity(warp(mis_g, r), vis, mask) + smooth * diffusion(gg), r

    with torch.no_grad():
        first = loss_of(g)[0].item()
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = loss_of(g)
        loss.backward()
        opt.step()
    with torch.no_grad():
        last, r = loss_of(g)
    return r.detach(), first, last.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--sets", default="shift5_right,dilate10,affine_elastic")
    ap.add_argument("--grid", type=int, default=16, help="grid spacing of the residual field (px)")
    ap.add_argument("--smooth", default="0.5,2", help="diffusion weights to try, comma-separated")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--scales", default="1,2,4", help="MIND scales (average-pool factors), comma-separated")
    ap.add_argument("--mask", choices=("whole", "residual"), default="whole",
                    help="compare where the whole field samples inside the IR (default), or where the "
                         "residual samples inside the globally warped IR (its border band included)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    _, val = _split(resolve({"data": {"name": "roadscene", "split": "train", "val_count": 16}}))
    val = val[: a.pairs]
    smooths = [float(s) for s in a.smooth.split(",")]
    scales = tuple(int(k) for k in a.scales.split(","))
    similarity = functools.partial(mind_loss, scales=scales)
    gs = GlobalStage("ecc", 640)
    print(f"{len(val)} validation pairs (train split), grid {a.grid} px, {a.steps} Adam steps at lr {a.lr}, "
          f"MIND scales {scales}, mask: {a.mask} field")
    print(f"{'set':>15} {'identity':>8} {'ECC':>6} " + " ".join(f"{'+r s=' + str(s):>9}" for s in smooths)
          + "  (mean EPE px; loss drop %; s/pair)")
    for name in a.sets.split(","):
        items = make_set(val, name, seed=0)
        ident, ecc, ref, drops, secs = [], [], {s: [] for s in smooths}, {s: [] for s in smooths}, []
        for it in items:
            phi_g, _ = gs.fields(it["mis"], it["vis"])
            ident.append(epe(torch.zeros_like(it["gt"]), it["gt"]))
            ecc.append(epe(phi_g, it["gt"]))
            mis_g = warp(it["mis"], phi_g)
            for s in smooths:
                t = time.perf_counter()
                r, l0, l1 = refine(mis_g, it["vis"], a.grid, s, a.steps, a.lr, similarity,
                                   phi_g if a.mask == "whole" else None)
                secs.append(time.perf_counter() - t)
                ref[s].append(epe(compose(phi_g, r), it["gt"]))
                drops[s].append(100 * (l0 - l1) / max(l0, 1e-9))
        print(f"{name:>15} {np.mean(ident):8.2f} {np.mean(ecc):6.2f} "
              + " ".join(f"{np.mean(ref[s]):9.2f}" for s in smooths)
              + "  (" + ", ".join(f"{np.mean(drops[s]):.1f} %" for s in smooths) + f"; {np.mean(secs):.1f} s)")
        better = {s: int(sum(e < c for e, c in zip(ref[s], ecc))) for s in smooths}
        print(f"{'':>15} pairs better than ECC: " + ", ".join(f"s={s}: {better[s]}/{len(ecc)}" for s in smooths))


if __name__ == "__main__":
    main()
