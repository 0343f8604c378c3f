"""Benchmark: time of each classical baseline per 640 x 480 pair, one CPU thread.

    .venv/bin/python benchmarks/bench_baselines.py [--repeat 3]

The pair is a RoadScene test pair resized to 640 x 480 (PIL bicubic) when the
data is present (``$BSR_DATA`` or ../shared/datasets), else a synthetic
textured pair; the IR is shifted by 5 px so that the registration methods
have work to do. Each method runs once to warm up, then ``--repeat`` times;
the table gives the median and minimum wall time per pair.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bsr.baselines import FUSION, REGISTRATION  # noqa: E402
from bsr.io import read_image, rgb_to_ycbcr  # noqa: E402
from bsr.datasets.simulate import shift  # noqa: E402

W, H = 640, 480


def _pair():
    root = Path(os.environ.get("BSR_DATA", REPO.parent / "shared" / "datasets")) / "roadscene"
    split = root / "splits" / "test.txt"
    if split.is_file():
        name = split.read_text().split()[0]
        ir = read_image(root / "ir" / name)
        vi = read_image(root / "vi" / name)
        ir = ir if ir.ndim == 2 else rgb_to_ycbcr(ir)[..., 0]
        vi = vi if vi.ndim == 2 else rgb_to_ycbcr(vi)[..., 0]

        def rs(a):
            im = Image.fromarray(np.asarray(a, np.float32), mode="F").resize((W, H), Image.BICUBIC)
            return np.clip(np.asarray(im), 0, 1)

        return rs(ir), rs(vi), f"RoadScene {name} resized"
    rng = np.random.default_rng(0)
    from scipy import ndimage
    base = ndimage.gaussian_filter(rng.random((H, W)), 3)
    base = (base - base.min()) / (base.max() - base.min())
    return base, 1.0 - base, "synthetic"


def _time(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ir, vi, src = _pair()
    ir_t = torch.from_numpy(ir.astype(np.float32))[None, None]
    vi_t = torch.from_numpy(vi.astype(np.float32))[None, None]
    mis, _ = shift(ir_t, 5.0, 0.0)
    print(f"pair: {src}, {W} x {H}, IR shifted 5 px; 1 thread; {args.repeat} runs after a warm-up")
    print(f"{'method':<22}{'kind':<14}{'median s':>10}{'min s':>10}")
    rows = []
    for name, fn in REGISTRATION.items():
        med, mn = _time(lambda fn=fn: fn(mis, vi_t), args.repeat)
        rows.append((name, "registration", med, mn))
    for name, fn in FUSION.items():
        med, mn = _time(lambda fn=fn: fn(mis, vi_t), args.repeat)
        rows.append((name, "fusion", med, mn))
    for name, kind, med, mn in rows:
        print(f"{name:<22}{kind:<14}{med:>10.3f}{mn:>10.3f}")
    return rows


if __name__ == "__main__":
    main()
