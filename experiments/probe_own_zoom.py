"""Is the zoom that affine ECC finds on RoadScene's own pairs in the pairs, or in the features?

On the unmisaligned RoadScene pairs the affine ECC of the global stage moves the
IR by about 1.7 px on average on the 16 validation pairs, largely through a zoom slightly below 1
(experiments/NOTES.md, section 6). This probe decomposes ECC's matrix on every unmisaligned pair of a set
into x and y zoom, rotation and shear, and runs three controls:

* ``tno`` and ``m3fd``: other datasets, aligned by other means, scored with the
  same features. A bias of the features across the modalities would show there too.
* ``mono blur``: the visible image against a copy of itself blurred (Gaussian,
  sigma 1.5) and contrast-reversed, so the edge features differ as the modalities'
  do, with no geometric difference: any zoom found is the features' own.
* ``flipped``: the RoadScene pairs mirrored left-right. A zoom of the content
  stays a zoom (sx is unchanged by a mirror); it is listed to show the estimate
  does not depend on which side of the image holds the content.

A fourth check asks a second, independent method: TV-L1 (a dense flow on other
edge features, :func:`bsr.baselines.registration.tvl1_numpy`) on the first
``--tvl1`` RoadScene pairs (default: all), with an affine map fitted to its field by least
squares. If the zoom is in the content, the two methods find it pair by pair
(their per-pair sx and sy correlate); a bias of one method's features would not
repeat in the other's.

For RoadScene it also reads the sizes of ``vi_hr/`` (the high-resolution visible
crops that ``vi/`` was resized from, with different x and y factors per pair) and
reports the correlation between that per-pair resize anisotropy and ECC's
sx / sy: the features cannot know how each pair was resized.

Sets: RoadScene's train split (never the test split), all of TNO and M3FD.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_own_zoom.py [--limit N] [--tvl1 N]

(NOTES section 7: every pair, 8 min 22 s on one thread.)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from bsr.baselines.ecc import ecc_affine_opencv
from bsr.baselines.registration import tvl1_numpy
from bsr.datasets.readers import dataset_dir, list_images, load_pairs
from bsr.global_stage import affine_field, fit_affine


def decompose(m: np.ndarray) -> dict:
    """x / y zoom, rotation (degrees) and shear of the 2 x 3 matrix's linear part (QR: A = R(theta) @ [[sx, k], [0, sy]])."""
    a = m[:, :2]
    sx = float(np.hypot(a[0, 0], a[1, 0]))
    theta = float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))
    r = np.array([[a[0, 0], a[1, 0]], [-a[1, 0], a[0, 0]]]) / sx     # R(theta)^T
    u = r @ a
    return {"sx": sx, "sy": float(u[1, 1]), "rot": theta, "shear": float(u[0, 1] / u[1, 1])}


def displacement(m: np.ndarray, h: int, w: int, margin: int = 10) -> float:
    """Mean length of the field of the 2 x 3 matrix ``m`` inside the margin (px)."""
    f = affine_field(torch.from_numpy(m)[None], h, w, dtype=torch.float64)[0, :, margin:-margin, margin:-margin]
    return float(f.norm(dim=0).mean())


def fit_inside(field: np.ndarray, margin: int = 10) -> np.ndarray:
    """The 2 x 3 matrix fitted to ``field`` inside the margin; its linear part is that of the whole
    image's coordinates (cropping moves only the origin, so only the translation differs)."""
    return fit_affine(torch.from_numpy(field[None, :, margin:-margin, margin:-margin].copy()))[0].numpy()


def score(pairs, transform=None) -> list[dict]:
    rows = []
    for p in pairs:
        ir, vis = p.ir.astype(np.float64), p.vis.astype(np.float64)
        if transform is not None:
            ir, vis = transform(ir, vis)
        m = ecc_affine_opencv(ir, vis, return_matrix=True)
        h, w = ir.shape
        rows.append({"name": p.name, "w": w, "h": h, "moved": displacement(m, h, w),
                     "identity": bool(np.allclose(m, np.eye(2, 3))), **decompose(m)})
    return rows


def summary(label: str, rows: list[dict]) -> None:
    ok = [r for r in rows if not r["identity"]]
    sx = np.array([r["sx"] for r in ok])
    sy = np.array([r["sy"] for r in ok])
    rot = np.array([r["rot"] for r in ok])
    moved = np.array([r["moved"] for r in ok])
    xpx = np.array([(r["sx"] - 1) * r["w"] for r in ok])
    print(f"{label:>22} {len(rows):4d} {len(rows) - len(ok):4d} "
          f"{np.median(sx):8.4f} {np.mean(sx < 1) * 100:6.0f}% {np.median(sy):8.4f} {np.mean(sy < 1) * 100:6.0f}% "
          f"{np.median(xpx):+7.2f} {np.median(np.abs(rot)):7.3f} {moved.mean():7.2f}", flush=True)


def hr_anisotropy(pairs) -> np.ndarray:
    """Per RoadScene pair: (vi_hr/ width / vi/ width) / (vi_hr/ height / vi/ height), the anisotropy of the resize."""
    hr = list_images(dataset_dir("roadscene") / "vi_hr")
    out = []
    for p in pairs:
        wh, hh = Image.open(hr[p.name]).size
        h, w = p.ir.shape
        out.append((wh / w) / (hh / h))
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each set")
    ap.add_argument("--tvl1", type=int, default=None, help="RoadScene pairs for the TV-L1 check (2 s each; default all)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    road = load_pairs("roadscene", split="train", limit=a.limit)
    print("affine ECC (the global stage's) on unmisaligned pairs; medians over the pairs where ECC moved "
          "(the identity fallback left out); x px = (sx - 1) * width, the stretch across the image")
    print(f"{'set':>22} {'n':>4} {'id':>4} {'sx':>8} {'sx<1':>7} {'sy':>8} {'sy<1':>7} {'x px':>7} "
          f"{'|rot|°':>7} {'moved':>7}")
    rows = score(road)
    summary("roadscene train", rows)
    summary("roadscene flipped", score(road, lambda i, v: (i[:, ::-1].copy(), v[:, ::-1].copy())))
    summary("mono blur (vis/vis)", score(road, lambda i, v: (1.0 - gaussian_filter(v, 1.5), v)))
    for name in ("tno", "m3fd"):
        summary(name, score(load_pairs(name, limit=a.limit)))
    ok = [i for i, r in enumerate(rows) if not rows[i]["identity"]]
    if (dataset_dir("roadscene") / "vi_hr").is_dir():
        aniso = hr_anisotropy([road[i] for i in ok])
        ratio = np.array([rows[i]["sx"] / rows[i]["sy"] for i in ok])
        c = np.corrcoef(aniso, ratio)[0, 1]
        rank = np.corrcoef(np.argsort(np.argsort(aniso)), np.argsort(np.argsort(ratio)))[0, 1]
        print(f"roadscene: vi_hr-to-vi resize anisotropy (x/y size ratio) median {np.median(aniso):.3f}, "
              f"range {aniso.min():.3f}-{aniso.max():.3f}; correlation with ECC's sx/sy: Pearson {c:+.2f}, "
              f"Spearman {rank:+.2f} ({len(ok)} pairs)")
    else:
        print("roadscene: no vi_hr/ folder under the data root; the resize-anisotropy check is skipped")
    n = len(road) if a.tvl1 is None else min(a.tvl1, len(road))
    both = [(rows[i], decompose(fit_inside(tvl1_numpy(road[i].ir.astype(np.float64), road[i].vis.astype(np.float64)))))
            for i in range(n) if not rows[i]["identity"]]
    for k in ("sx", "sy"):
        e = np.array([r[k] for r, _ in both])
        t = np.array([q[k] for _, q in both])
        print(f"roadscene, first {n} pairs: TV-L1's affine fit {k} median {np.median(t):.4f} ({np.mean(t < 1) * 100:.0f}% < 1); "
              f"per-pair correlation with ECC's {k}: Pearson {np.corrcoef(e, t)[0, 1]:+.2f}; "
              f"median |difference| {np.median(np.abs(e - t)):.4f}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
