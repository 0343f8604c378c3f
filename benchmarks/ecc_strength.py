"""How strong is the package's ECC? Old numpy ECC, a plain OpenCV ECC and the package's, side by side.

    .venv/bin/python benchmarks/ecc_strength.py [--pairs 50] [--sets shift5_right affine_elastic ...]

On the first ``--pairs`` RoadScene test pairs (``bsr.datasets.readers.load_pairs("roadscene",
split="test")``, data root ``$BSR_DATA`` or ../shared/datasets), misaligned by each set
of :data:`bsr.datasets.benchsets.SETS` (default: all), three registration methods run on
(misaligned IR, visible):

* ``old numpy``: :func:`bsr.baselines.ecc_numpy.ecc_affine_numpy`, the package's
  earlier ECC (own numpy iterations, exhaustive zoom + translation search);
* ``OpenCV ref``: what a practitioner would write -- ``cv2.findTransformECC`` with
  ``MOTION_AFFINE`` on Sobel gradient magnitudes (3x3 ``cv2.Sobel``,
  ``cv2.magnitude``), a 3-level ``cv2.pyrDown`` pyramid, coarse to fine from the
  identity (translation doubled between levels), 100 iterations / eps 1e-5 per
  level, OpenCV's default 5x5 Gaussian pre-filter, one thread; a level that raises
  ``cv2.error`` keeps its start (:func:`opencv_reference`, written here);
* ``package``: ``bsr.baselines.REGISTRATION["ECC"]`` (OpenCV ECC on the package's
  normalised edges, rotation + zoom + translation search, divergence guard).

Per pair, the endpoint error of the field against the set's ground truth is
averaged over the image less a 10 px margin (``bsr.metrics.registration_metrics``,
``EPE_mean``). The table gives, per set and method, the mean and the median over
pairs of that per-pair EPE, the worst pair, the number of pairs over 3 px and the
wall time per pair (one thread).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bsr.baselines import REGISTRATION  # noqa: E402
from bsr.baselines.ecc_numpy import ecc_affine_numpy  # noqa: E402
from bsr.baselines.fields import affine_to_field  # noqa: E402
from bsr.datasets.benchsets import SETS, make_set  # noqa: E402
from bsr.datasets.readers import load_pairs  # noqa: E402
from bsr.metrics import registration_metrics  # noqa: E402

MARGIN = 10


def opencv_reference(ir: np.ndarray, vis: np.ndarray, levels: int = 3, iters: int = 100,
                     eps: float = 1e-5) -> np.ndarray:
    """Plain OpenCV ECC: affine, ``levels``-level pyramid of Sobel magnitudes, identity start.

    Returns the 2 x 3 matrix (IR position of each visible pixel), OpenCV's warp
    matrix for ``findTransformECC(template=vis, input=ir)``.
    """
    import cv2

    cv2.setNumThreads(1)

    def sobel_mag(x):
        x = np.asarray(x, np.float32)
        return cv2.magnitude(cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3),
                             cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3))

    pv, pi = [sobel_mag(vis)], [sobel_mag(ir)]
    for _ in range(levels - 1):
        pv.append(cv2.pyrDown(pv[-1]))
        pi.append(cv2.pyrDown(pi[-1]))
    m = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iters, eps)
    for lev in range(levels - 1, -1, -1):
        if lev < levels - 1:
            m[:, 2] *= 2.0
        try:
            _, m = cv2.findTransformECC(pv[lev], pi[lev], m, cv2.MOTION_AFFINE, criteria, None, 5)
        except cv2.error:
            pass
    return m.astype(np.float64)


def _np_field(fn):
    def run(mis, vis):
        a = mis[0, 0].double().numpy()
        b = vis[0, 0].double().numpy()
        return affine_to_field(fn(a, b), *a.shape)
    return run


METHODS = {
    "old numpy": _np_field(lambda a, b: ecc_affine_numpy(a, b, return_matrix=True)),
    "OpenCV ref": _np_field(opencv_reference),
    "package": lambda mis, vis: REGISTRATION["ECC"](mis, vis)[0].double().numpy(),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=50, help="first N RoadScene test pairs (default 50)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS), metavar="SET",
                    help=f"sets of bsr.datasets.benchsets.SETS (default all: {' '.join(SETS)})")
    ap.add_argument("--data", default=None, help="data root (default $BSR_DATA or ../shared/datasets)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = args.data or os.environ.get("BSR_DATA") or str(REPO.parent / "shared" / "datasets")
    pairs = load_pairs("roadscene", root=root, split="test", limit=args.pairs)
    print(f"RoadScene test, {len(pairs)} pairs; per-pair EPE mean (margin {MARGIN} px), one thread\n")
    head = "| set | method | EPE mean | EPE median | worst | pairs > 3 px | s / pair |"
    print(head)
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for name in args.sets:
        items = make_set(pairs, name)
        for method, fn in METHODS.items():
            epe, secs = [], 0.0
            for it in items:
                t0 = time.perf_counter()
                field = fn(it["mis"], it["vis"])
                secs += time.perf_counter() - t0
                epe.append(registration_metrics(flow_pred=field, flow_gt=it["gt"][0].double().numpy(),
                                                margin=MARGIN)["EPE_mean"])
            e = np.asarray(epe)
            summary[name, method] = e.mean()
            print(f"| {name} | {method} | {e.mean():.2f} | {np.median(e):.2f} | {e.max():.2f} | "
                  f"{int((e > 3).sum())} | {secs / len(e):.3f} |", flush=True)
    worse = [(s, summary[s, "package"] - summary[s, "OpenCV ref"]) for s in args.sets
             if summary[s, "package"] > summary[s, "OpenCV ref"]]
    print()
    if worse:
        print("package mean EPE above the OpenCV reference on: "
              + ", ".join(f"{s} (+{d:.2f} px)" for s, d in worse))
    else:
        print("package mean EPE <= the OpenCV reference on every set")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
