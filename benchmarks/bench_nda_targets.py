"""Benchmark: the one-off L_nda target search of a whole training pair, as the data loader runs it.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nda_targets.py \\
        [--profile cpu] [--pairs 4] [--threads 1]

Training precomputes the L_nda targets of every misaligned training image in
both directions (:func:`bsr.nda.cache.pair_targets`: two neighbourhood
searches plus the left-right check, with the options of the profile's loss
config) and caches them on disk. This times that search uncached, per pair,
on the first ``--pairs`` RoadScene train pairs misaligned as the profile's
training data (the synthetic generator's pairs when the data is absent), and
prints the median and the range over the pairs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bsr.config import load_profile
from bsr.datasets import simulate
from bsr.datasets.readers import DataError, load_pairs
from bsr.nda.cache import pair_targets
from bsr.training import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = TrainConfig.from_dict(load_profile(a.profile)["train"])
    opts = cfg.loss_config().precompute_options()
    if opts is None:
        raise SystemExit(f"profile {a.profile!r} does not precompute L_nda targets")
    data = cfg.data
    try:
        pairs, source = load_pairs(data["name"], split=data.get("split"), limit=a.pairs), data["name"]
    except DataError as e:
        print(f"({e}; timing the synthetic generator's pairs instead)")
        pairs, source = load_pairs("synthetic", limit=a.pairs), "synthetic"
    mis_cfg = data.get("misalignment") or {"kind": "shift", "level": 5}
    g = torch.Generator().manual_seed(0)
    times = []
    for p in pairs:     # misaligned as the training loader does (bsr.datasets.crops.MisalignedCrops)
        mis, _ = simulate.apply(torch.from_numpy(p.ir)[None, None], mis_cfg["kind"], mis_cfg["level"], generator=g)
        vis = torch.from_numpy(p.vis)[None, None]
        t = time.perf_counter()
        pair_targets(mis, vis, opts)
        times.append(time.perf_counter() - t)
        print(f"  {p.name:>20} {p.ir.shape[1]} x {p.ir.shape[0]}: {times[-1]:.2f} s", flush=True)
    print(f"L_nda targets of one pair ({source}, {a.threads} thread(s), options {opts}): "
          f"median {statistics.median(times):.2f} s, {min(times):.2f}-{max(times):.2f} s over {len(times)} pairs")


if __name__ == "__main__":
    main()
