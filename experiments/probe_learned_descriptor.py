"""Does a learned cross-modal descriptor let a local field improve on ECC? A probe.

``probe_post_ecc_refinement.py`` found MIND's optimum within 0.03 px of the
ECC result on RoadScene, so no local stage trained on MIND can beat ECC. This
probe asks whether a descriptor learned from the aligned training pairs does
better. Two small CNNs (one per modality, 3 convolutions, 8-dim unit
descriptors) are trained by InfoNCE: at sampled pixels the IR descriptor must
match the visible descriptor at the same place against the visible
descriptors 1-6 px away (``--inner``, ``--radius``). No field, ground truth or simulated, enters the
loss: only the pairs' own alignment (RoadScene is aligned to about a pixel,
so the descriptor inherits that floor). Then, per validation pair, a smooth
residual field after ECC is optimised on the descriptors (1 - cosine), as in
the MIND probe, and scored against the simulated ground truth.

Train pairs: RoadScene's train split less the 16 validation pairs of
``bsr.training.pretrain._split``; scored on those 16 (never the test split).

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_learned_descriptor.py \\
        [--steps 1500] [--pairs 8] [--sets shift5_right,dilate10,affine_elastic]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bsr.datasets.benchsets import make_set
from bsr.global_stage import GlobalStage
from bsr.training.pretrain import _split, resolve
from bsr.warp import compose, warp
from probe_post_ecc_refinement import epe, refine


class Descriptor(nn.Module):
    """Small: 3 convolutions, 16 channels, a 17 px receptive field. Wide: 5 convolutions with
    dilations up to 8, 32 channels, 16-dim descriptors, a 49 px receptive field."""

    def __init__(self, wide: bool = False):
        super().__init__()
        ch, dim, dil = (32, 16, (2, 4, 8, 8)) if wide else (16, 8, (2, 4))
        layers = [nn.Conv2d(1, ch, 5, padding=2), nn.ReLU()]
        for d in dil:
            layers += [nn.Conv2d(ch, ch, 3, padding=d, dilation=d), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(ch, dim, 1))

    def forward(self, x):
        x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True).clamp_min(1e-3)
        return F.normalize(self.net(x), dim=1)


def offsets(radius: int = 6, inner: float = 0.0) -> list[tuple[int, int]]:
    """Negative offsets: integer displacements with ``inner < |d| <= radius`` px."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if max(inner * inner, 0) < dy * dy + dx * dx <= radius * radius]


def batch(pairs, rng, crop: int = 96, n: int = 8):
    ir, vis = [], []
    for _ in range(n):
        p = pairs[int(rng.integers(len(pairs)))]
        h, w = p.ir.shape
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        a = torch.from_numpy(np.ascontiguousarray(p.ir[y:y + crop, x:x + crop]))[None]
        b = torch.from_numpy(np.ascontiguousarray(p.vis[y:y + crop, x:x + crop]))[None]
        k = int(rng.integers(4))
        a, b = torch.rot90(a, k, (1, 2)), torch.rot90(b, k, (1, 2))
        if rng.uniform() < 0.5:
            a, b = a.flip(-1), b.flip(-1)
        ir.append(a)
        vis.append(b)
    return torch.stack(ir), torch.stack(vis)


def info_nce(d_ir, d_vis, offs, rng, samples: int = 512, tau: float = 0.1):
    """Per sampled pixel: the same place is the positive, the offsets the negatives."""
    b, c, h, w = d_ir.shape
    r = max(max(abs(dy), abs(dx)) for dy, dx in offs)
    ys = torch.from_numpy(rng.integers(r, h - r, samples))
    xs = torch.from_numpy(rng.integers(r, w - r, samples))
    bs = torch.from_numpy(rng.integers(0, b, samples))
    q = d_ir[bs, :, ys, xs]                                      # (S, C)
    keys = [d_vis[bs, :, ys, xs]] + [d_vis[bs, :, ys + dy, xs + dx] for dy, dx in offs]
    logits = torch.stack([(q * k).sum(1) for k in keys], 1) / tau
    return F.cross_entropy(logits, torch.zeros(samples, dtype=torch.long))


def descriptor_similarity(f_ir, f_vis, vis):
    """``1 - cos`` of the two descriptors, averaged where the mask is set (the visible side computed once)."""
    with torch.no_grad():
        dv = f_vis(vis)

    def similarity(warped, _vis, mask):
        return ((1 - (f_ir(warped) * dv).sum(1, keepdim=True)) * mask).sum() / mask.sum().clamp_min(1)
    return similarity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--sets", default="shift5_right,dilate10,affine_elastic")
    ap.add_argument("--smooth", type=float, default=0.5)
    ap.add_argument("--radius", type=int, default=6, help="negatives up to this many px away (default 6)")
    ap.add_argument("--wide", action="store_true", help="the wide descriptor network (see Descriptor)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--inner", type=float, default=0.0,
                    help="negatives farther than this (px; default 0: every offset from 1 px)")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    train, val = _split(resolve({"data": {"name": "roadscene", "split": "train", "val_count": 16}}))
    f_ir, f_vis = Descriptor(a.wide), Descriptor(a.wide)
    opt = torch.optim.Adam([*f_ir.parameters(), *f_vis.parameters()], lr=2e-3)
    offs = offsets(a.radius, a.inner)
    t0 = time.perf_counter()
    for step in range(a.steps):
        ir, vis = batch(train, rng)
        loss = info_nce(f_ir(ir), f_vis(vis), offs, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == a.steps - 1:
            print(f"step {step}: InfoNCE {loss.item():.3f} (chance {np.log(len(offs) + 1):.3f}), "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    f_ir.eval()
    f_vis.eval()
    for p in [*f_ir.parameters(), *f_vis.parameters()]:
        p.requires_grad_(False)
    gs = GlobalStage("ecc", 640)
    print(f"{'set':>15} {'identity':>8} {'ECC':>6} {'+r learned':>10}  pairs better than ECC")
    for name in a.sets.split(","):
        items = make_set(val[: a.pairs], name, seed=0)
        ident, ecc, ref = [], [], []
        for it in items:
            phi_g, _ = gs.fields(it["mis"], it["vis"])
            r, _, _ = refine(warp(it["mis"], phi_g), it["vis"], grid=16, smooth=a.smooth, steps=80, lr=0.2,
                             similarity=descriptor_similarity(f_ir, f_vis, it["vis"]))
            ident.append(epe(torch.zeros_like(it["gt"]), it["gt"]))
            ecc.append(epe(phi_g, it["gt"]))
            ref.append(epe(compose(phi_g, r), it["gt"]))
        print(f"{name:>15} {np.mean(ident):8.2f} {np.mean(ecc):6.2f} {np.mean(ref):10.2f}  "
              f"{sum(x < y for x, y in zip(ref, ecc))}/{len(ecc)}", flush=True)


if __name__ == "__main__":
    main()
