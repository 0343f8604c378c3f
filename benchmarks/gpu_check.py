"""One short `bsr.training` run on a GPU: the CUDA path, mixed precision, throughput.

Trains the `paper` configuration (paper-size networks, quarter-image crops,
batch 8, the full objective) for a few hundred steps of each phase through
:func:`bsr.training.train`, exactly as `python -m bsr.training` does, then prints:

* steps/s of phase 1 and phase 2 (medians over the logged steps after a warm-up),
* peak GPU memory (allocated and reserved),
* the projected wall time of the paper's schedule (60 + 80 epochs) on the full
  training split, from the measured rates,
* that the checkpoint loads and fuses a 640 x 480 pair (time per pair).

The L_nda targets are precomputed on the CPU before the first step (about 5 s
per RoadScene pair on one core; cached in ~/.cache/bsr/nda), so ``--limit``
trains on the first pairs only: the rates do not depend on how many pairs
there are, the projection uses the split's full size.

    python benchmarks/gpu_check.py                               # RoadScene under $BSR_DATA, CUDA
    python benchmarks/gpu_check.py --synthetic                   # no dataset needed
    python benchmarks/gpu_check.py --device cpu --size quick --steps 4 --phase2-steps 2 --synthetic   # smoke test

Prints a table and writes the figures as JSON (``--json``, default
``$OUT/gpu_check.json`` when ``$OUT`` is set).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bsr.paths import REPO_ROOT


def rates(log, phase: int, warmup: int) -> tuple[float, int]:
    """Median steps/s of one phase from the cumulative ``time_s`` column."""
    rows = log[log["phase"] == phase]
    t = rows["time_s"].to_numpy()
    dt = np.diff(t)[warmup:]
    if len(dt) == 0:
        return float("nan"), 0
    return 1.0 / float(statistics.median(dt)), len(dt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO_ROOT / "config" / "train" / "paper.yaml"))
    ap.add_argument("--size", default=None, help="model size (default: the config's, paper)")
    ap.add_argument("--steps", type=int, default=300, help="phase-1 steps")
    ap.add_argument("--phase2-steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10, help="steps per phase left out of the rates")
    ap.add_argument("--limit", type=int, default=16, help="training pairs used (0: all)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", default="auto", help="auto | true | false")
    ap.add_argument("--amp-dtype", default="bfloat16")
    ap.add_argument("--data-root", default=None, help="default: $BSR_DATA")
    ap.add_argument("--synthetic", action="store_true", help="train on the embedded generator (256 x 320)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from bsr.study.methods import checkpoint_method
    from bsr.datasets.readers import load_pairs
    from bsr.training import TrainConfig, train
    from bsr.training.config import resolve_crop
    from bsr.training.loop import read_log

    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.size:
        cfg["model"] = {"size": args.size}
    if args.synthetic:
        cfg["data"] = {"name": "synthetic", "synthetic": {"n": 64, "size": [256, 320], "seed": 0},
                       "misalignment": {"kind": "shift", "level": 5}}
    elif args.data_root:
        cfg["data"]["root"] = args.data_root
    full = TrainConfig.from_dict(cfg)
    d = full.data
    n_full = len(load_pairs(d["name"], root=d.get("root"), split=d.get("split", "train"),
                            synthetic=d.get("synthetic"))) if d["name"] != "synthetic" else d["synthetic"]["n"]
    per_epoch_full = n_full // full.batch_size
    paper_steps = (math.ceil(full.phase1.epochs * per_epoch_full) if full.phase1.epochs else full.phase1.steps,
                   math.ceil(full.phase2.epochs * per_epoch_full) if full.phase2.epochs else full.phase2.steps)

    out_dir = Path(tempfile.mkdtemp(prefix="bsr_gpu_check_"))
    cfg.update(device=args.device, amp={"true": True, "false": False}.get(args.amp, args.amp),
               amp_dtype=args.amp_dtype, out_dir=str(out_dir), progress=True, ckpt_every=10 ** 9,
               log_every=1)   # the rates assume one log row per step
    cfg["phase1"] = dict(cfg.get("phase1", {}), steps=args.steps, epochs=None)
    cfg["phase2"] = dict(cfg.get("phase2", {}), steps=args.phase2_steps, epochs=None)
    if args.limit:
        cfg["data"] = dict(cfg["data"], limit=args.limit)
    run = TrainConfig.from_dict(cfg)

    cuda = run.device.startswith("cuda") or (run.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU (torch %s); use --device cpu for a smoke test"
                         % torch.__version__)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    final = train(run, resume=False)
    wall = time.perf_counter() - t0
    log = read_log(out_dir / "log.csv")
    r1, n1 = rates(log, 1, args.warmup)
    r2, n2 = rates(log, 2, args.warmup)
    res = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "amp": bool(cuda) if run.amp == "auto" else bool(run.amp),
        "amp_dtype": run.amp_dtype,
        "model_size": run.model.size, "crop": list(map(int, resolve_crop(run))), "batch": run.batch_size,
        "steps": [args.steps, args.phase2_steps], "wall_s": round(wall, 1),
        "phase1_steps_per_s": round(r1, 3), "phase2_steps_per_s": round(r2, 3), "rate_samples": [n1, n2],
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 2) if cuda else None,
        "train_pairs_full": n_full, "steps_per_epoch_full": per_epoch_full,
        "paper_schedule_steps": list(paper_steps),
        "paper_schedule_projected_min": round((paper_steps[0] / r1 + paper_steps[1] / r2) / 60, 1),
        "final_losses": {k: round(float(v), 5) for k, v in log.groupby("phase").tail(1).iloc[-1].items()
                         if k not in ("step", "phase", "phase_step", "epoch", "lr", "time_s") and v == v},
    }
    method = checkpoint_method(final, device="cuda" if cuda else "cpu")
    g = np.random.default_rng(0)
    ir, vis = g.random((480, 640), dtype=np.float32), g.random((480, 640), dtype=np.float32)
    method(ir, vis)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        out = method(ir, vis)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    res["fuse_640x480_s"] = round(statistics.median(times), 4)
    res["fused_finite"] = bool(np.isfinite(out["fused"]).all())

    print()
    for k, v in res.items():
        print(f"{k:30s} {v}")
    path = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if path:
        Path(path).write_text(json.dumps(res, indent=2))
        print("written", path)
    return res


if __name__ == "__main__":
    main()
