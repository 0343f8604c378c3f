"""Does a B-spline field driven by mutual information follow the elastic part after ECC?

Sections 2, 5 and 8 of ``experiments/NOTES.md`` drove a local stage after the
global (affine ECC) stage with edge-based similarities (MIND, local NCC of
edges, learned descriptors, tile-wise ECC) and found at most 0.05 px to gain.
The practitioner's classical deformable multimodal registration uses another
signal: Mattes mutual information of the intensities with a B-spline free-form
deformation (Mattes et al., IEEE TMI 22(1), 2003; Rueckert et al., IEEE TMI
18(8), 1999), as in elastix and ITK. This probe runs ITK's implementation
(SimpleITK, not a dependency of the package: ``pip install SimpleITK``) on the
IR warped by the global stage, composes its field after the global one, and
scores both against the ground truth.

With ``--control`` the IR of every pair is replaced by its visible image,
blurred (Gaussian, sigma 1.5) and contrast-reversed (the control of
``probe_own_zoom.py``): a pair with no misalignment of its own and no
cross-modal gap beyond what blur and inversion make. What a local stage gains
there, and not on the real pairs, is what the real pairs' signal withholds.
``--mind`` adds the MIND residual of ``probe_post_ecc_refinement.py`` (grid 16,
diffusion 0.5, 80 Adam steps at lr 0.2 unless set) as a second local stage.
``--rel`` prints the mean EPE / rel table of ``probe_global_stage.py`` instead:
rel scores against the ground truth composed with the same method's field on
the unmisaligned pair, so a local stage that follows the pair's content finds
the same field before and after a misalignment and keeps rel small. ITK's
metric sampling is seeded (``--seed``); a seed of 0 would draw from the clock.

Pairs: the validation pairs held out of RoadScene's train split (never the test
split); sets from ``bsr.datasets.benchsets``; ``none`` is the unmisaligned pair
(zero ground truth: the floor). Mean EPE in px, 10 px border left out.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_mi_bspline.py \\
        [--pairs 8] [--sets none,shift5_right,dilate10,affine_elastic] [--spacing 128] [--iters 20] \\
        [--edges] [--control] [--rel] [--seed 1] [--mask whole|residual] \\
        [--mind [--mind-grid 16] [--mind-smooth 0.5] [--mind-steps 80]]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from bsr.datasets.benchsets import make_set
from bsr.global_stage import GlobalStage
from bsr.metrics.registration import endpoint_error
from bsr.similarity import inside_mask
from bsr.warp import compose, warp
from probe_global_stage import MARGIN, print_scores, validation_pairs   # (same folder)
from probe_post_ecc_refinement import refine              # (same folder)

SEED = 1   # ITK's metric sampling; SimpleITK reads a seed of 0 as "seed from the wall clock"


def bspline_mi(fixed: np.ndarray, moving: np.ndarray, spacing: int, bins: int, iters: int,
               sample: float, edges: bool = False, seed: int = SEED,
               fixed_mask: np.ndarray | None = None) -> torch.Tensor | None:
    """(1, 2, H, W) field r with ``moving(p + r(p))`` on ``fixed`` (ITK B-spline, Mattes MI, L-BFGS-B).

    ``fixed_mask`` (H, W, nonzero = use) restricts the metric's samples to those pixels of ``fixed``.

    None where ITK stops with an error (the caller keeps the global field and counts it).
    """
    import SimpleITK as sitk

    f = sitk.GetImageFromArray(fixed.astype(np.float32))
    m = sitk.GetImageFromArray(moving.astype(np.float32))
    if edges:
        f, m = sitk.GradientMagnitudeRecursiveGaussian(f, 1.0), sitk.GradientMagnitudeRecursiveGaussian(m, 1.0)
    h, w = fixed.shape
    mesh = [max(1, int(round(w / spacing))), max(1, int(round(h / spacing)))]
    tx = sitk.BSplineTransformInitializer(f, mesh, order=3)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sample, seed=seed)   # 0 would be the wall clock
    reg.SetInterpolator(sitk.sitkLinear)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(sitk.GetImageFromArray(fixed_mask.astype(np.uint8)))
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iters,
                             maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * iters)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetInitialTransform(tx, inPlace=True)
    try:
        reg.Execute(f, m)
    except RuntimeError:             # e.g. "All samples map outside moving image buffer": keep the global field
        return None
    disp = sitk.TransformToDisplacementField(tx, sitk.sitkVectorFloat64, f.GetSize(), f.GetOrigin(),
                                             f.GetSpacing(), f.GetDirection())
    d = sitk.GetArrayFromImage(disp)                    # (H, W, 2): x, y
    return torch.from_numpy(np.ascontiguousarray(d.transpose(2, 0, 1))[None].astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--sets", default="none,shift5_right,dilate10,affine_elastic")
    ap.add_argument("--spacing", type=int, default=128, help="B-spline control point spacing, px")
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--sample", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=SEED, help="ITK's sampling seed (not 0: the wall clock)")
    ap.add_argument("--edges", action="store_true", help="MI of gradient magnitudes, not intensities")
    ap.add_argument("--control", action="store_true", help="IR := visible, blurred and contrast-reversed")
    ap.add_argument("--rel", action="store_true",
                    help="mean EPE / rel table of probe_global_stage (rel: from each method's own alignment)")
    ap.add_argument("--mind", action="store_true", help="also the MIND residual of probe_post_ecc_refinement")
    ap.add_argument("--mind-grid", type=int, default=16)
    ap.add_argument("--mind-smooth", type=float, default=0.5)
    ap.add_argument("--mind-steps", type=int, default=80)
    ap.add_argument("--mind-lr", type=float, default=0.2)
    ap.add_argument("--mask", choices=("whole", "residual"), default="whole",
                    help="sample where the global field lands inside the IR (default), or everywhere, "
                         "the band that the global warp fills by repeating the IR's border included")
    a = ap.parse_args()
    torch.set_num_threads(1)
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    pairs = validation_pairs(a.pairs)
    if a.control:
        pairs = [dataclasses.replace(p, ir=(1.0 - gaussian_filter(p.vis, 1.5)).astype(np.float32)) for p in pairs]
    stage = GlobalStage()
    t0 = time.time()

    def fields_of(mis, vis):
        """(global field, B-spline residual composed after it, whether ITK failed: then the global field)."""
        mis, vis = mis.float(), vis.float()
        phi_g, _ = stage.fields(mis, vis)
        mask = inside_mask(phi_g, 2)[0, 0].numpy() if a.mask == "whole" else None
        r = bspline_mi(vis[0, 0].numpy(), warp(mis, phi_g)[0, 0].numpy(), a.spacing, a.bins, a.iters,
                       a.sample, a.edges, a.seed, mask)
        return phi_g, (phi_g if r is None else compose(phi_g, r)), r is None

    if a.rel:
        print(f"{len(pairs)} validation pairs; spacing {a.spacing}, edges {a.edges}, seed {a.seed}; "
              "mean EPE / rel (px)")
        print_scores(pairs, a.sets.split(","), lambda mis, vis: dict(zip(("ECC", "ECC + MI"), fields_of(mis, vis))))
        print(f"{time.time() - t0:.0f} s")
        return
    print(f"{len(pairs)} validation pairs{' (control: IR = blurred, reversed visible)' if a.control else ''}; "
          f"spacing {a.spacing}, bins {a.bins}, iters {a.iters}, sample {a.sample}, edges {a.edges}, seed {a.seed}, "
          f"mask: {a.mask} field")
    print(f"{'set':>16} {'ECC':>6} {'+ MI':>6} {'diff':>6}" + (f" {'+ MIND':>6}" if a.mind else "")
          + "  per pair, MI - ECC")
    for name in a.sets.split(","):
        if name == "none":
            items = [{"mis": torch.from_numpy(p.ir)[None, None].float(), "gt": None} for p in pairs]
        else:
            items = make_set(pairs, name, 0)
        rows, failed = [], 0
        for it, p in zip(items, pairs):
            mis = it["mis"].float()
            vis = torch.from_numpy(p.vis)[None, None].float()
            gt = it["gt"] if it["gt"] is not None else torch.zeros(1, 2, *mis.shape[-2:])
            phi_g, phi_mi, fail = fields_of(mis, vis)
            failed += fail
            row = [endpoint_error(phi_g, gt, MARGIN)["EPE_mean"], endpoint_error(phi_mi, gt, MARGIN)["EPE_mean"]]
            if a.mind:
                rm = refine(warp(mis, phi_g), vis, a.mind_grid, a.mind_smooth, a.mind_steps, a.mind_lr,
                            phi_g=phi_g if a.mask == "whole" else None)[0]
                row.append(endpoint_error(compose(phi_g, rm), gt, MARGIN)["EPE_mean"])
            rows.append(row)
        r = np.array(rows)
        per = " ".join(f"{d:+.2f}" for d in r[:, 1] - r[:, 0])
        mind = f" {r[:, 2].mean():6.2f}" if a.mind else ""
        print(f"{name:>16} {r[:, 0].mean():6.2f} {r[:, 1].mean():6.2f} {r[:, 1].mean() - r[:, 0].mean():+6.2f}{mind}"
              f"  {per}" + (f"  (ITK failed on {failed}: global field kept)" if failed else ""), flush=True)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
