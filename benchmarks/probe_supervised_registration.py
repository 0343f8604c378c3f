"""Diagnostic: can the registration U-Net learn registration *from content*?

Supervised probe: synthetic pairs, a 5 px shift in a random direction per
sample (so no constant offset helps: a zero field scores 5 px), the
ground-truth endpoint error as the loss. Prints the running EPE (px) of the
last 50 steps. ``--cross`` registers the IR onto the visible image (the real
task); otherwise IR onto IR. ``--corr R,L,W`` adds the edge-NCC cost volume
(radius R, level L, window W; bsr.models.correlation).

    .venv/bin/python benchmarks/probe_supervised_registration.py --cross --corr 3,2,3
"""
import argparse
import math
import time

import torch

from bsr.data import load_pairs
from bsr.model import SIZES
from bsr.models import RegUNet
from bsr.warp import warp

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--crop", type=int, default=64)
ap.add_argument("--cross", action="store_true", help="IR onto VIS (default: IR onto IR)")
ap.add_argument("--corr", default=None, help="R,L,W[,BETA]: cost volume radius, level, window[, soft-argmax beta]")
ap.add_argument("--descriptor", default="edge_ncc", choices=["edge_ncc", "mind"])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--time-limit", type=float, default=600)
a = ap.parse_args()

torch.manual_seed(0)
torch.set_num_threads(a.threads)
pairs = load_pairs("synthetic", synthetic={"n": 32, "size": [128, 160]})
irs = torch.stack([torch.from_numpy(p.ir)[None] for p in pairs])
viss = torch.stack([torch.from_numpy(p.vis)[None] for p in pairs])
cfg = dict(SIZES["quick"]["unet"])
if a.corr:
    v = a.corr.split(",")
    cfg["corr"] = {"descriptor": a.descriptor, "radius": int(v[0]), "level": int(v[1]), "window": int(v[2]),
                   "readout": float(v[3]) if len(v) > 3 else None}   # optional soft-argmax beta
net = RegUNet(**cfg)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
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
