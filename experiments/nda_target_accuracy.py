"""How often is the L_nda search's target right? Cross-modal vs mono-modal.

For each dataset and misalignment, the test pairs are misaligned in memory
(``bsr.datasets.simulate``, seed 0) and ``bsr.study.diagnostics.nda_target_accuracy`` scores
the training data's targets (``LossConfig`` defaults: search + left-right
check; ``--search`` overrides, e.g. ``window=7,lr_check=none``) against the ground truth: IR onto the visible image (what training sees) and
IR onto the aligned IR (the control). Prints one line per (data, kind,
reference) with means over pairs.

    .venv/bin/python experiments/nda_target_accuracy.py                 # synthetic
    BSR_DATA=../shared/datasets .venv/bin/python experiments/nda_target_accuracy.py --dataset roadscene
"""
import argparse
import time

import torch
import yaml

from bsr.datasets.readers import Pair, load_pairs
from bsr.study.diagnostics import nda_target_accuracy
from bsr.datasets import simulate
from bsr.objective import LossConfig

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--dataset", default="synthetic", help="synthetic (default) or a dataset under $BSR_DATA")
ap.add_argument("--n", type=int, default=12, help="pairs (default 12)")
ap.add_argument("--kinds", default="shift:5,dilate_crop:10,random_smooth:5")
ap.add_argument("--search", default="", help="overrides, e.g. window=7,lr_check=none")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
search = LossConfig().precompute_options()
for kv in filter(None, a.search.split(",")):
    k, v = kv.split("=")
    search[k] = None if v.lower() in ("none", "null") else yaml.safe_load(v)

if a.dataset == "synthetic":
    pairs = load_pairs("synthetic", split="test", synthetic={"n": a.n, "size": [128, 160]})
else:
    pairs = load_pairs(a.dataset, split="test", limit=a.n)
print(f"{a.dataset}: {len(pairs)} test pairs, first {pairs[0].ir.shape[0]}x{pairs[0].ir.shape[1]}; "
      f"target options {search}")
print(f"{'kind':>16} {'reference':>11} {'valid':>6} {'err mean':>8} {'median':>7} {'<=1px':>6} {'<=3px':>6} "
      f"{'|gt|':>5} {'s':>5}")
for spec in a.kinds.split(","):
    kind, level = spec.split(":")
    g = torch.Generator().manual_seed(0)
    sim = []
    for p in pairs:
        mis, flow = simulate.apply(torch.from_numpy(p.ir)[None, None], kind, float(level), generator=g)
        sim.append(Pair(p.name, mis[0, 0].numpy(), p.vis, ir_aligned=p.ir, flow_gt=flow[0].numpy()))
    t0 = time.perf_counter()
    table = nda_target_accuracy(sim, options=search)
    dt = time.perf_counter() - t0
    for ref, s in table.groupby("reference", sort=False):
        m = s.mean(numeric_only=True)
        print(f"{spec:>16} {ref:>11} {m.valid:6.2f} {m.err_mean:8.2f} {m.err_median:7.2f} "
              f"{m.within_1px:6.2f} {m.within_3px:6.2f} {m.gt_mean:5.2f} {dt:5.0f}", flush=True)
