"""Metrics of three trivial fusions on RoadScene's 50-image test split.

    .venv/bin/python benchmarks/trivial_fusions.py [--workers N] [-o table.csv]

Fusions (on 8-bit grey levels, the visible image as the Y of YCbCr, results
rounded to integers as a saved 8-bit image would be):

* ``average``: (IR + Y) / 2
* ``max``:     max(IR, Y) per pixel
* ``ir``:      the infrared image alone

They anchor the scale of every metric: any learned fusion should beat
``average`` on the edge-based metrics, and ``ir`` shows what copying one
source scores. Prints the mean of each metric over the split.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bsr.metrics import METRICS, fusion_metrics  # noqa: E402
from bsr.metrics.evaluate import load_grey  # noqa: E402

FUSIONS = {
    "average": lambda a, b: np.rint((a + b) / 2),
    "max": lambda a, b: np.maximum(a, b),
    "ir": lambda a, b: a.copy(),
}


def data_root() -> Path:
    env = os.environ.get("BSR_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return root / "roadscene"


def score(job):
    root, name = job
    a, b = load_grey(root / "ir" / name), load_grey(root / "vi" / name)
    return [{"fusion": k, "name": name, **fusion_metrics(fuse(a, b), a, b)} for k, fuse in FUSIONS.items()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("-o", "--output", help="write the per-image scores as CSV")
    args = p.parse_args(argv)
    root = data_root()
    split = root / "splits" / "test.txt"
    if not split.is_file():
        print(f"RoadScene test split not found at {split} (set BSR_DATA)", file=sys.stderr)
        return 1
    names = split.read_text().split()
    jobs = [(root, n) for n in names]
    if args.workers > 1:
        with mp.get_context("fork").Pool(args.workers) as pool:
            rows = [r for rs in pool.imap(score, jobs) for r in rs]
    else:
        rows = [r for job in jobs for r in score(job)]
    df = pd.DataFrame(rows)
    if args.output:
        df.to_csv(args.output, index=False)
    table = df.groupby("fusion", sort=False)[list(METRICS)].mean()
    print(f"RoadScene test split, {len(names)} pairs (IR vs Y of visible); mean per metric")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
