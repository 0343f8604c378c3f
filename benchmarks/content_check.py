"""Does a checkpoint register from content? Flip and off-centre-window checks on a simulated set.

Prints, per method, the mean EPE (px) with each test pair as given and under
whole-image flips (``bsr.study.diagnostics.transformed_epe``), then on off-centre
windows next to the identity's EPE on the same windows
(``bsr.study.diagnostics.windowed_epe``), then the field's gain on the ground truth
(``bsr.study.diagnostics.field_gain``: 1 = the full displacement) over all pixels, at
the pixels that get an L_nda training target (``LossConfig`` defaults) and
elsewhere. Phase correlation is the reference.

    .venv/bin/python benchmarks/content_check.py results/quick/data/synthetic_dilate_crop10 \\
        results/quick/checkpoints/bsr_dilate5/seed0/final.pt [--limit 20] [--no-phase]
"""
import argparse

import numpy as np
import torch

from bsr import study
from bsr.datasets.readers import load_simulated
from bsr.nda import cached_nda_targets
from bsr.study.diagnostics import field_gain, summarize_transformed, transformed_epe, windowed_epe
from bsr.objective import LossConfig

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("set_dir", help="a simulated test set (bsr simulate)")
ap.add_argument("checkpoints", nargs="+")
ap.add_argument("--limit", type=int, default=None, help="first N pairs")
ap.add_argument("--no-phase", action="store_true", help="skip the phase-correlation reference")
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)

pairs = load_simulated(a.set_dir)[:a.limit]
methods = study.build_methods(registration=[] if a.no_phase else [["phase", "average"]],
                              checkpoints={c: [c] for c in a.checkpoints})
methods["identity"] = [lambda ir, vis: {"flow": np.zeros((2, *ir.shape), np.float32)}]
print(f"{a.set_dir}: {len(pairs)} pairs")
options = LossConfig().precompute_options()
target_px = [cached_nda_targets(torch.from_numpy(p.ir), torch.from_numpy(p.vis.reshape(p.ir.shape)),
                                options)["nda_p"][1][0].numpy() for p in pairs]
for name, (fn,) in methods.items():
    flips = summarize_transformed(transformed_epe(fn, pairs))["EPE_mean"]
    win = windowed_epe(fn, pairs).groupby("window", sort=False)[["EPE_mean", "identity"]].mean()
    print(f"{name}\n  flips:   " + "  ".join(f"{k} {v:.3f}" for k, v in flips.items()))
    print("  windows: " + "  ".join(f"{k} {r.EPE_mean:.3f} (identity {r.identity:.3f})" for k, r in win.iterrows()))
    fields = [np.asarray(fn(p.ir, p.vis)["flow"]) for p in pairs]
    gain = {where: np.mean([field_gain(f, p.flow_gt, m) for f, p, m in zip(fields, pairs, masks)])
            for where, masks in (("all", [None] * len(pairs)), ("at targets", target_px),
                                 ("elsewhere", [~m for m in target_px]))}
    print("  gain:    " + "  ".join(f"{k} {v:.3f}" for k, v in gain.items()), flush=True)
