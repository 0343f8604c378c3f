"""Time one B-SR phase-1 training step and one 640 x 480 fusion on this machine.

The step (full objective, PDG N = 2, batch 8 at 128 x 128 by default) is split
into network passes (U-Net forward, auto-encoder forward, backward, optimizer
step) and everything else (PDG/IPDG, warps, losses including the L_nda
neighbourhood search). Printed: medians over the repeats, and the fraction
"everything else / step" (goal: <= 30 %).

    python benchmarks/bench_train_step.py [--sizes quick paper] [--repeats 5] [--threads 2]

A size ``NAME+corr`` (e.g. ``quick+corr``) adds the `quick` profile's cost volume
to the U-Net (``bsr.networks.correlation``); its time is part of ``unet_fwd`` and
printed on its own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

import bsr.objective as objective_module
from bsr.model import BSR, model_config
from bsr.objective import LossConfig, Objective
from bsr.pdg import ProxyDataGenerator
from bsr.datasets.simulate import shift


class Timer:
    def __init__(self):
        self.acc = defaultdict(float)

    @contextmanager
    def __call__(self, key):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.acc[key] += time.perf_counter() - t

    def wrap(self, obj, name, key):
        orig = getattr(obj, name)

        def wrapped(*a, **k):
            with self(key):
                return orig(*a, **k)

        setattr(obj, name, wrapped)
        return orig


def smooth_images(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, h // 8, w // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    vis = (0.7 * x + 0.3 * torch.rand(b, 1, h, w, generator=g) * 0.2).clamp(0, 1)
    ir, _ = shift(1.0 - x, 5.0)
    return ir, vis


def build(size: str) -> BSR:
    """``NAME`` or ``NAME+corr`` (the quick profile's cost volume added)."""
    base, _, extra = size.partition("+")
    if extra not in ("", "corr"):
        raise SystemExit(f"unknown size suffix {extra!r} (only +corr)")
    over = {}
    if extra:
        from bsr.config import load_profile

        over = {"unet": {"corr": load_profile("quick")["train"]["model"]["unet"]["corr"]}}
    return BSR(model_config(base, **over))


def bench_step(size: str, batch: int, hw: int, repeats: int, loss_overrides: dict | None = None,
               grad_checkpoint: bool = False):
    import bsr.networks.unet as unet_module

    torch.manual_seed(0)
    model = build(size)
    model.set_grad_checkpoint(grad_checkpoint)
    pdg = ProxyDataGenerator(2)
    objective = Objective(LossConfig.from_dict(loss_overrides), pdg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ir, vis = smooth_images(batch, hw, hw)
    gen = torch.Generator().manual_seed(0)
    pre = objective.cfg.precompute_options()
    targets = {}
    if pre is not None:   # the default: L_nda targets come with the batch (searched once by the loader)
        from bsr.nda.cache import pair_targets

        per = [pair_targets(ir[i], vis[i], pre) for i in range(batch)]
        for key in ("nda_p", "nda_n"):
            targets[f"{key}_delta"] = torch.stack([p[key][0] for p in per])
            targets[f"{key}_valid"] = torch.stack([p[key][1] for p in per])
    timer = Timer()
    timer.wrap(model.unet, "forward", "unet_fwd")
    timer.wrap(model.ae, "forward", "ae_fwd")
    orig_cost = timer.wrap(unet_module, "cost_volume", "cost_volume")
    orig_search = timer.wrap(objective_module, "nda_search", "nda_search")
    rows = []
    try:
        for i in range(repeats + 1):
            timer.acc.clear()
            t0 = time.perf_counter()
            with timer("forward_all"):
                d = model.phase1(ir, vis, pdg, gen)
                d.update(targets)
            with timer("losses"):
                loss, _ = objective.phase1(d)
            with timer("backward"):
                opt.zero_grad(set_to_none=True)
                loss.backward()
            with timer("optimizer"):
                opt.step()
            total = time.perf_counter() - t0
            if i == 0:
                continue          # warm-up
            a = dict(timer.acc)
            net = a["unet_fwd"] + a["ae_fwd"] + a["backward"] + a["optimizer"]
            rows.append({"step": total, "unet_fwd": a["unet_fwd"], "ae_fwd": a["ae_fwd"],
                         "backward": a["backward"], "optimizer": a["optimizer"],
                         "pdg_warps_other_fwd": a["forward_all"] - a["unet_fwd"] - a["ae_fwd"],
                         "losses": a["losses"], "nda_search": a.get("nda_search", 0.0),
                         "cost_volume": a.get("cost_volume", 0.0),
                         "else": total - net})
    finally:
        objective_module.nda_search = orig_search
        unet_module.cost_volume = orig_cost
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return med, model.parameter_counts()


def bench_fuse(size: str, h: int, w: int, repeats: int):
    torch.manual_seed(0)
    model = build(size).eval()
    ir, vis = smooth_images(1, h, w)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        model.fuse(ir, vis)
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["quick", "paper"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paper-repeats", type=int, default=2, help="repeats for the paper size (slow on CPU)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--paper-batch", type=int, default=None,
                    help="batch for the paper size (default --batch; the paper AE needs ~38 GB at 8 x 128^2)")
    ap.add_argument("--paper-size", type=int, default=None, help="crop side for the paper size (default --size)")
    ap.add_argument("--grad-checkpoint", action="store_true", help="activation checkpointing of the AE blocks")
    ap.add_argument("--fuse-hw", type=int, nargs=2, default=[480, 640])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loss", nargs="*", default=[], metavar="KEY=VALUE",
                    help="LossConfig overrides, e.g. nda_pdg_targets=transfer")
    ap.add_argument("--no-fuse", action="store_true", help="skip the 640x480 fusion timing")
    args = ap.parse_args(argv)
    import yaml

    loss_over = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.loss)}
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; step: batch {args.batch} at "
          f"{args.size}x{args.size}, full objective, PDG N=2; medians over repeats (after 1 warm-up)"
          + (f"; loss overrides {loss_over}" if loss_over else ""))
    for size in args.sizes:
        paper = size.partition("+")[0] == "paper"
        reps = args.paper_repeats if paper else args.repeats
        batch = (args.paper_batch or args.batch) if paper else args.batch
        hw = (args.paper_size or args.size) if paper else args.size
        med, counts = bench_step(size, batch, hw, reps, loss_over, args.grad_checkpoint)
        print(f"\n[{size}] batch {batch} at {hw}x{hw}; parameters: U-Net {counts['unet']:,}, AE {counts['ae']:,}, "
              f"total {counts['total']:,}")
        print(f"  step                     {med['step']:8.3f} s")
        for k in ("unet_fwd", "ae_fwd", "backward", "optimizer"):
            print(f"    {k:<22} {med[k]:8.3f} s  ({med[k] / med['step']:5.1%})")
            if k == "unet_fwd" and med["cost_volume"]:
                print(f"      of which cost volume {med['cost_volume']:8.3f} s  ({med['cost_volume'] / med['step']:5.1%})")
        print(f"    everything else        {med['else']:8.3f} s  ({med['else'] / med['step']:5.1%})  goal <= 30%")
        print(f"      of which losses      {med['losses']:8.3f} s  (L_nda search {med['nda_search']:.3f} s)")
        print(f"      PDG/IPDG + warps     {med['pdg_warps_other_fwd']:8.3f} s")
        if not args.no_fuse:
            ft = bench_fuse(size, *args.fuse_hw, reps)
            print(f"  fuse {args.fuse_hw[1]}x{args.fuse_hw[0]} pair (register + fuse) {ft:8.3f} s")


if __name__ == "__main__":
    main()
