"""Diagnostic: can the registration U-Net learn registration *from content*?

Supervised, mono-modal probe: random-direction 5 px shifts of synthetic IR
crops (64x64, batch 8), the ground-truth endpoint error as the loss. Prints
the running EPE (px). A constant-offset solution cannot go below ~5 px here.

    .venv/bin/python benchmarks/probe_supervised_registration.py
"""
import time, torch, math
torch.manual_seed(0); torch.set_num_threads(2)
from bsr.models import RegUNet
from bsr.model import SIZES
from bsr.data import load_pairs
from bsr.warp import warp
pairs = load_pairs("synthetic", synthetic={"n": 32, "size": [128, 160]})
imgs = torch.stack([torch.from_numpy(p.ir)[None] for p in pairs])
net = RegUNet(**SIZES["quick"]["unet"])
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(1)
t0 = time.time(); hist = []
for step in range(3000):
    idx = torch.randint(0, len(imgs), (8,), generator=g)
    ang = torch.rand(8, generator=g) * 2 * math.pi
    d = torch.stack([5 * torch.cos(ang), 5 * torch.sin(ang)], 1)[:, :, None, None]
    fixed = imgs[idx]
    moving = warp(fixed, -d.expand(-1, -1, 128, 160))          # content moved by d
    y, x = torch.randint(16, 128 - 64 - 16, (1,), generator=g).item(), torch.randint(16, 160 - 64 - 16, (1,), generator=g).item()
    m, f = moving[..., y:y+64, x:x+64], fixed[..., y:y+64, x:x+64]
    flow = net(m, f)[:, :2]
    epe = (flow - d).norm(dim=1).mean()
    opt.zero_grad(); epe.backward(); opt.step()
    hist.append(epe.item())
    if step % 250 == 0 or step == 2999:
        print(step, round(sum(hist[-50:]) / len(hist[-50:]), 3), round(time.time() - t0), flush=True)
    if time.time() - t0 > 420: print("time limit at step", step); break
