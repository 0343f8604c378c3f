"""Is the fusion auto-encoder's gap to GFF in what it can represent, or in what L_fusion asks of it?
(experiments/NOTES.md, section 21)

Two measurements on the released recipe's auto-encoder (``config/pretrain/roadscene_ae.yaml``):

``--capacity CHECKPOINT``: the auto-encoder after phase 1 (reconstruction only) reconstructs the IR, the
visible image and GFF's fusion of each aligned pair; PSNR / SSIM of each, and the eight fusion metrics of
the reconstructed GFF fusion beside GFF's own. If the reconstruction of GFF keeps most of GFF's Qabf, the
network can carry a fusion of that quality.

``--train BSR_TRAIN_ARGS``: ``bsr train`` with those arguments, phase 2 of the recipe with GFF's fusion
of each training crop as the target of L_fusion in place of Eq. 13's maxima (intensity ``|F - GFF|``,
gradient ``| |grad F| - |grad GFF| |``, the same weights). This is a diagnostic, not a method: it asks
whether the decoder, fed the summed features of the two inputs, can learn a fusion of GFF's quality when
told what it is. Score the result with ``probe_fusion_ae.py --model gff_teacher=OUT/final.pt``. Phase 1
does not use L_fusion, so the run may start from another run of the recipe: copy its ``phase1.pt`` to
``OUT/last.pt`` (and ``OUT/phase1.pt``), its first 801 lines of ``log.csv`` to ``OUT/log.csv``, and pass
``--resume`` (section 21 did so).

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 python experiments/probe_gff_teacher.py --capacity runs/ae_roadscene/phase1.pt
    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 python experiments/probe_gff_teacher.py --train \\
        --config config/pretrain/roadscene_ae.yaml --out runs/ae_gff_teacher [--resume]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

import bsr.objective
from bsr.baselines import FUSION
from bsr.checkpoint import load_checkpoint
from bsr.filters import check4, sobel_magnitude, ssim
from bsr.io import to_uint8
from bsr.metrics import METRICS, fusion_metrics
from bsr.training.cli import main as train_cli
from probe_fusion_ae import pair_sets   # (same folder)


def gff_target_loss(fused, ir, vis, grad="l1", target="max"):
    """L_fusion's two terms against GFF's fusion of the pair (the ``target`` argument is ignored)."""
    for t, nm in ((fused, "fused"), (ir, "ir"), (vis, "vis")):
        check4(t, nm)
    with torch.no_grad():
        tgt = FUSION["GFF"](ir, vis)
    l_int = (fused - tgt).abs().mean()
    l_grad = (sobel_magnitude(fused, norm=grad) - sobel_magnitude(tgt, norm=grad)).abs().mean()
    return l_int, l_grad


def capacity(path: str) -> None:
    model = load_checkpoint(path).eval()
    rows = []
    for set_name, pairs in pair_sets().items():
        for p in pairs:
            ir, vis = (torch.from_numpy(x)[None, None] for x in (p.ir, p.vis))
            with torch.no_grad():
                gff = FUSION["GFF"](ir, vis)
                row = {"set": set_name, "pair": p.name}
                for k, x in (("ir", ir), ("vis", vis), ("gff", gff)):
                    rec = model.reconstruct(x)[0].clamp(0, 1)
                    row[f"psnr_{k}"] = float(10 * torch.log10(1 / ((rec - x) ** 2).mean()))
                    row[f"ssim_{k}"] = float(ssim(rec, x))
                    if k == "gff":
                        rec_gff = rec
            for k, f in (("GFF", gff), ("reconstructed GFF", rec_gff)):
                m = fusion_metrics(to_uint8(f[0, 0].numpy()), to_uint8(p.ir), to_uint8(p.vis))
                rows.append({**row, "fusion": k, **m})
    df = pd.DataFrame(rows)
    quality = [c for c in df.columns if c.startswith(("psnr", "ssim"))]
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.precision", 4):
        print(df[df.fusion == "GFF"].groupby("set")[quality].mean())
        print(df.groupby(["set", "fusion"], sort=False)[list(METRICS)].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--capacity", metavar="CHECKPOINT", help="a phase-1 checkpoint of the auto-encoder")
    g.add_argument("--train", action="store_true",
                   help="run `bsr train` with the arguments that follow; phase 2 learns GFF's fusion")
    a, rest = ap.parse_known_args()
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    if a.capacity:
        if rest:
            ap.error(f"unrecognized arguments: {' '.join(rest)}")
        capacity(a.capacity)
    else:
        bsr.objective.losses.fusion_loss = gff_target_loss   # the objective calls it through this module
        raise SystemExit(train_cli(rest))


if __name__ == "__main__":
    main()
