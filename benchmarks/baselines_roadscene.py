"""Classical baselines on RoadScene's test split with simulated misalignment.

    .venv/bin/python benchmarks/baselines_roadscene.py [--out /tmp/baselines_roadscene]
        [--workers 2] [--limit N] [--settings shift5 dilate10]

For every test pair (IR grey, visible as Y) and each setting -- ``shift5``:
the IR translated 5 px to the right (``bsr.datasets.simulate.shift``, the paper's
Table 1 protocol); ``dilate10``: a 10 px dilate-crop zoom
(``bsr.datasets.simulate.dilate_crop``) -- it runs:

* every registration baseline (``bsr.baselines.REGISTRATION``), "none" (zero
  field) and, for reference, "ECC-zoom" (the same ECC restricted to an
  axis-aligned zoom + translation, ``motion="scale"``); registration metrics
  (``bsr.metrics.registration_metrics``, margin 10 px): endpoint error of the
  field against the simulation's ground truth (mean, median, share of pixels
  over 1 and 3 px), and SSIM / NCC of the registered IR against the original
  aligned IR; plus the time per pair;
* every combination in ``bsr.baselines.COMBINATIONS`` ("none + X" is fusion
  without registration); fusion metrics Qabf, VIFF, SF, AG, MG, EI
  (``bsr.metrics.fusion_metrics`` on 8-bit values) of the fused image
  against the inputs the method received (misaligned IR, visible), as in
  :mod:`bsr.study.scoring`; Qabf and VIFF also against the original *aligned* IR
  and the visible image (columns ``Qabf(al)``, ``VIFF(al)``). The reference
  metrics against the misaligned input reward keeping the IR where it was,
  i.e. they penalise registration; the aligned-reference columns show
  whether registration helps.

Prints mean tables and writes, under ``--out``: ``per_image.csv`` (long
form), ``registration_<setting>.csv`` and ``fusion_<setting>.csv`` (means).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bsr.baselines import FUSION, NO_REGISTRATION, REGISTRATION, combination_name  # noqa: E402
from bsr.baselines.ecc import ecc_affine  # noqa: E402
from bsr.io import read_image, rgb_to_ycbcr, to_uint8  # noqa: E402
from bsr.datasets.simulate import dilate_crop, shift  # noqa: E402
from bsr.warp import warp  # noqa: E402

FUSION_METRICS = ["Qabf", "VIFF", "SF", "AG", "MG", "EI"]
REF_METRICS = ["Qabf", "VIFF"]          # the ones that compare with the source images
FUSION_COLUMNS = FUSION_METRICS + [f"{k}(al)" for k in REF_METRICS]
REG_COLUMNS = ["EPE_mean", "EPE_median", "EPE>1px", "EPE>3px", "SSIM", "NCC", "seconds"]
SETTINGS = {
    "shift5": lambda ir: shift(ir, 5.0, 0.0),
    "dilate10": lambda ir: dilate_crop(ir, 10),
}
EXTRA_REGISTRATION = {"ECC-zoom": lambda ir, vis: ecc_affine(ir, vis, motion="scale")}
MARGIN = 10


def _grey(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 2 else rgb_to_ycbcr(a)[..., 0]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


def _init_worker():
    torch.set_num_threads(1)


def run_pair(job):
    """All registration and fusion rows for one (pair, setting)."""
    from bsr.metrics import fusion_metrics, registration_metrics

    root, name, setting = job
    ir = _t(_grey(read_image(Path(root) / "ir" / name)))
    vis = _t(_grey(read_image(Path(root) / "vi" / name)))
    mis, gt = SETTINGS[setting](ir)
    mis = mis.clamp(0, 1)
    rows = []
    registered = {}
    regs = {NO_REGISTRATION: None, **REGISTRATION, **EXTRA_REGISTRATION}
    for rname, fn in regs.items():
        t0 = time.perf_counter()
        field = torch.zeros_like(gt) if fn is None else fn(mis, vis)
        sec = time.perf_counter() - t0
        reg = mis if fn is None else warp(mis, field).clamp(0, 1)
        if rname in REGISTRATION or rname == NO_REGISTRATION:
            registered[rname] = reg
        m = registration_metrics(field[0].numpy(), gt[0].numpy(), reg[0, 0].numpy(),
                                 ir[0, 0].numpy(), margin=MARGIN)
        m["seconds"] = sec
        for k in REG_COLUMNS:
            rows.append({"setting": setting, "name": name, "table": "registration",
                         "method": rname, "metric": k, "value": float(m[k])})
    mis8, vis8 = to_uint8(mis[0, 0].numpy()), to_uint8(vis[0, 0].numpy())
    ir8 = to_uint8(ir[0, 0].numpy())
    for rname, reg in registered.items():
        for fname, ffn in FUSION.items():
            fused = ffn(reg, vis)[0, 0].numpy()
            f8 = to_uint8(fused)
            fm = fusion_metrics(f8, mis8, vis8, metrics=FUSION_METRICS)
            fa = fusion_metrics(f8, ir8, vis8, metrics=REF_METRICS)
            fm.update({f"{k}(al)": v for k, v in fa.items()})
            for k in FUSION_COLUMNS:
                rows.append({"setting": setting, "name": name, "table": "fusion",
                             "method": combination_name(rname, fname), "metric": k,
                             "value": float(fm[k])})
    return rows


def _table(df: pd.DataFrame, table: str, setting: str, columns) -> pd.DataFrame:
    d = df[(df["table"] == table) & (df["setting"] == setting)]
    wide = d.pivot_table(index="method", columns="metric", values="value", aggfunc="mean", sort=False)
    return wide[[c for c in columns if c in wide.columns]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(os.environ.get("BSR_DATA", REPO.parent / "shared" / "datasets"))
    ap.add_argument("--data", type=Path, default=default_data, help="folder holding roadscene/")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, default=Path("/tmp/baselines_roadscene"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N pairs only")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    root = args.data / "roadscene"
    split = root / "splits" / f"{args.split}.txt"
    if not split.is_file():
        sys.exit(f"RoadScene split not found: {split} (set --data or BSR_DATA)")
    names = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()][:args.limit]
    jobs = [(str(root), n, s) for s in args.settings for n in names]
    t0 = time.time()
    rows = []
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, initializer=_init_worker) as ex:
            for r in ex.map(run_pair, jobs, chunksize=1):
                rows.extend(r)
    else:
        for j in jobs:
            rows.extend(run_pair(j))
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "per_image.csv", index=False)
    pd.set_option("display.width", 200)
    print(f"RoadScene {args.split}: {len(names)} pairs, settings {args.settings}, "
          f"{time.time() - t0:.0f} s with {args.workers} worker(s)")
    for s in args.settings:
        reg = _table(df, "registration", s, REG_COLUMNS)
        fus = _table(df, "fusion", s, FUSION_COLUMNS)
        reg.to_csv(args.out / f"registration_{s}.csv")
        fus.to_csv(args.out / f"fusion_{s}.csv")
        print(f"\n== {s}: registration (mean over pairs; EPE px, EPE>k = share of pixels; margin {MARGIN})")
        print(reg.round(3).to_string())
        print(f"\n== {s}: fusion (mean over pairs; Qabf/VIFF against the inputs given, "
              f"(al) against the aligned IR)")
        print(fus.round(3).to_string())
    print(f"\nCSV files in {args.out}")
    return df


if __name__ == "__main__":
    main()
