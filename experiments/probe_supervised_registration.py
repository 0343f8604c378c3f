"""Diagnostic: can the registration U-Net learn registration *from content*?

Supervised probe: synthetic pairs, a 5 px shift in a random direction per
sample (so no constant offset helps: a zero field scores 5 px), the
ground-truth endpoint error as the loss. Prints the running EPE (px) of the
last 50 steps. ``--cross`` registers the IR onto the visible image (the real
task); otherwise IR onto IR. ``--corr R,L,W`` adds the edge-NCC cost volume
(radius R, level L, window W; bsr.networks.correlation).

    .venv/bin/python experiments/probe_supervised_registration.py --cross --corr 3,2,3

``--train KIND:LEVEL`` trains instead on the training data's own fixed
misalignment (``bsr.datasets.crops.MisalignedCrops``: one field per whole image, 48 px
crops, IR onto the visible image) and ``--eval`` scores the net on simulated
test sets (whole pairs, 10 px margin): the supervised ceiling of a U-Net for
the self-supervised runs (docs/method.md#what-limits-the-quick-u-net). ``--unet mid`` is the larger
U-Net of the model size ``mid`` (``bsr.model.SIZES``, the U-Net of the `quick` profile's run
``bsr_dilate10_mid``: 4 levels, 16-32-32-32 channels, two convolutions per block).

    .venv/bin/python experiments/probe_supervised_registration.py --train dilate_crop:10 --corr 3,2,7 \
        --steps 1500 --unet mid --eval results/quick/data/synthetic_dilate_crop10
"""
import argparse
import math
import time

import torch

from bsr.datasets.readers import load_pairs
from bsr.model import SIZES
from bsr.networks import RegUNet
from bsr.warp import warp

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--crop", type=int, default=64)
ap.add_argument("--cross", action="store_true", help="IR onto VIS (default: IR onto IR)")
ap.add_argument("--corr", default=None, help="R,L,W[,BETA]: cost volume radius, level, window[, soft-argmax beta]")
ap.add_argument("--descriptor", default="edge_ncc", choices=["edge_ncc", "mind"])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--time-limit", type=float, default=600)
ap.add_argument("--train", default=None, metavar="KIND:LEVEL",
                help="train on MisalignedCrops with this fixed misalignment (IR onto VIS) instead")
ap.add_argument("--unet", default="quick", choices=["quick", "mid"], help="the U-Net of this model size")
ap.add_argument("--eval", nargs="*", default=[], help="simulated test sets to score after training")
a = ap.parse_args()

torch.manual_seed(0)
torch.set_num_threads(a.threads)
pairs = load_pairs("synthetic", synthetic={"n": 32, "size": [128, 160]})
irs = torch.stack([torch.from_numpy(p.ir)[None] for p in pairs])
viss = torch.stack([torch.from_numpy(p.vis)[None] for p in pairs])
cfg = dict(SIZES[a.unet]["unet"])
if a.corr:
    v = a.corr.split(",")
    cfg["corr"] = {"descriptor": a.descriptor, "radius": int(v[0]), "level": int(v[1]), "window": int(v[2]),
                   "readout": float(v[3]) if len(v) > 3 else None}   # optional soft-argmax beta
net = RegUNet(**cfg)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
if a.train:
    from bsr.datasets.crops import MisalignedCrops
    from bsr.datasets.readers import load_simulated
    from bsr.metrics import registration_metrics

    kind, _, level = a.train.partition(":")
    if not level:
        ap.error(f"--train expects KIND:LEVEL, e.g. dilate_crop:10; got {a.train!r}")
    ds = MisalignedCrops(pairs, (48, 48), kind=kind, level=float(level), seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    t0, hist, step = time.time(), [], 0
    while step < a.steps:
        ds.set_epoch(step)                      # new crop positions every epoch
        for b in loader:
            epe = (net(b["ir"], b["vis"])[:, :2] - b["flow_gt"]).norm(dim=1).mean()
            opt.zero_grad()
            epe.backward()
            opt.step()
            hist.append(epe.item())
            step += 1
            if step % 250 == 0 or step == a.steps:
                print(f"step {step:5d}  training EPE(last 50) {sum(hist[-50:]) / len(hist[-50:]):.3f}  "
                      f"{time.time() - t0:.0f} s", flush=True)
            if step == a.steps or time.time() - t0 > a.time_limit:
                break
        if time.time() - t0 > a.time_limit:
            print("time limit at step", step)
            break
    net.eval()
    for folder in a.eval:
        errs, ids = [], []
        for p in load_simulated(folder):
            with torch.no_grad():
                f = net(torch.from_numpy(p.ir)[None, None], torch.from_numpy(p.vis.reshape(p.ir.shape))[None, None])
            errs.append(registration_metrics(f[0, :2].numpy(), p.flow_gt, margin=10)["EPE_mean"])
            ids.append(registration_metrics(0 * p.flow_gt, p.flow_gt, margin=10)["EPE_mean"])
        print(f"{folder}: EPE {sum(errs) / len(errs):.2f} px (identity {sum(ids) / len(ids):.2f}), "
              f"{len(errs)} pairs", flush=True)
    raise SystemExit(0)
g = torch.Generator().manual_seed(1)
t0 = time.time()
hist = []
c = a.crop
H, W = irs.shape[-2:]
for step in range(a.steps):
    idx = torch.randint(0, len(irs), (8,), generator=g)
    ang = torch.rand(8, generator=g) * 2 * math.pi
    d = torch.stack([5 * torch.cos(ang), 5 * torch.sin(ang)], 1)[:, :, None, None]
    fixed = (viss if a.cross else irs)[idx]
    # the IR content moved by -d: warp(moving, d) = IR at p + d - d = aligned
    moving = warp(irs[idx], -d.expand(-1, -1, H, W))
    y = torch.randint(8, H - c - 8, (1,), generator=g).item()
    x = torch.randint(8, W - c - 8, (1,), generator=g).item()
    m, f = moving[..., y:y + c, x:x + c], fixed[..., y:y + c, x:x + c]
    flow = net(m, f)[:, :2]
    epe = (flow - d).norm(dim=1).mean()
    opt.zero_grad()
    epe.backward()
    opt.step()
    hist.append(epe.item())
    if step % 100 == 0 or step == a.steps - 1:
        print(f"step {step:5d}  EPE(last 50) {sum(hist[-50:]) / len(hist[-50:]):.3f}  "
              f"{time.time() - t0:.0f} s", flush=True)
    if time.time() - t0 > a.time_limit:
        print("time limit at step", step)
        break
