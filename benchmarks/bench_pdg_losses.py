"""Micro-benchmark of PDG/IPDG and the losses at 128 x 128, batch 8, one thread.

Usage::

    python benchmarks/bench_pdg_losses.py [--size 128] [--batch 8] [--repeats 7] [--device cpu]

Prints a Markdown table of median wall and process-CPU times (ms): PDG forward + inverse for images and
fields, each loss forward + backward, and the L_nda search alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bsr.losses import (decomposition_loss, epr_loss, fusion_loss, recon_loss, smooth_loss, sobel_edge_loss,
                        ss_loss)
from bsr.nda import nda_from_targets, nda_search
from bsr.pdg import ProxyDataGenerator
from bsr.datasets.simulate import shift
from bsr.warp import warp


def _median_ms(fn, repeats: int, device: str) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (ms). On a shared
    machine the CPU time is the steadier number; on a GPU only wall time counts."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    fn()                                   # warm-up (caches, allocator)
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--radius", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev, b, s = args.device, args.batch, args.size
    g = torch.Generator().manual_seed(0)

    def smooth(c):
        x = torch.rand(b, c, s // 8, s // 8, generator=g)
        return F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1).to(dev)

    vis = smooth(1)
    ir, _ = shift(0.9 - 0.6 * vis + 0.2 * vis * vis, 3.0, -2.0)
    flow = (torch.randn(b, 2, s, s, generator=g) * 0.5).to(dev)
    feats = [torch.randn(b, 16, s // 2, s // 2, generator=g).to(dev) for _ in range(4)]
    pdg = ProxyDataGenerator(2)

    rows = []

    def bench(name, fn):
        rows.append((name, _median_ms(fn, args.repeats, dev)))

    def pdg_images():
        i2, v2, ops = pdg(ir, vis, generator=g)
        pdg.inverse(i2, ops)
        pdg.inverse(v2, ops)

    def pdg_fields():
        _, _, ops = pdg(ir, None, generator=g)
        pdg.inverse(pdg.apply(flow, ops, kind="flow"), ops, kind="flow")

    def pdg_all():
        i2, v2, ops = pdg(ir, vis, generator=g)
        pdg.inverse(i2, ops)
        pdg.inverse(v2, ops)
        f2 = pdg.apply(flow, ops, kind="flow")
        pdg.inverse(f2, ops, kind="flow")
        pdg.inverse(f2, ops, kind="flow")

    bench("PDG fwd+inv, IR+VIS images", pdg_images)
    bench("PDG fwd+inv, one field", pdg_fields)
    bench("PDG+IPDG step (2 img, 1 field, 2 inv fields)", pdg_all)

    def fb(loss_fn, *leaves):
        def run():
            ps = [x.detach().clone().requires_grad_() for x in leaves]
            out = loss_fn(*ps)
            (sum(out) if isinstance(out, tuple) else out).backward()
        return run

    targets = nda_search(ir, vis, radius=args.radius)
    bench(f"L_nda search (r={args.radius}, window 7)", lambda: nda_search(ir, vis, radius=args.radius))
    bench(f"L_nda search (r={args.radius}, stride 2)",
          lambda: nda_search(ir, vis, radius=args.radius, stride=2))
    bench("L_nda search (r=5)", lambda: nda_search(ir, vis, radius=5))
    bench("L_nda given targets, fwd+bwd", fb(lambda f: nda_from_targets(f, targets), flow))
    bench("sobel_edge_loss fwd+bwd (incl. warp)", fb(lambda f: sobel_edge_loss(warp(ir, f), vis), flow))
    bench("epr_loss fwd+bwd (incl. warp)", fb(lambda f: epr_loss(ir, vis, warp(ir, f)), flow))
    bench("ss_loss fwd+bwd (field)", fb(lambda a: ss_loss(a, flow.flip(-1)), flow))
    bench("smooth_loss fwd+bwd", fb(smooth_loss, flow))
    bench("recon_loss fwd+bwd", fb(lambda r: recon_loss(vis, r), ir))
    bench("decomposition_loss fwd+bwd (B,16,64,64)", fb(decomposition_loss, *feats))
    bench("fusion_loss fwd+bwd", fb(lambda f: fusion_loss(f, ir, vis), vis))

    print(f"device={dev} threads={torch.get_num_threads()} batch={b} size={s}x{s} "
          f"repeats={args.repeats} torch={torch.__version__}")
    w = max(len(n) for n, _ in rows)
    print(f"| {'operation':<{w}} | wall ms | CPU ms |")
    print(f"|{'-' * (w + 2)}|--------:|-------:|")
    for n, (wall, cpu) in rows:
        print(f"| {n:<{w}} | {wall:7.1f} | {cpu:6.1f} |")


if __name__ == "__main__":
    main()
