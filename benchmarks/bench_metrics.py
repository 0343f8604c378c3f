"""Benchmark: bsr.metrics.fusion against a straightforward transcription of the usual code.

    .venv/bin/python benchmarks/bench_metrics.py [--repeat 5] [--pairs 16] [--no-scaling]

The baseline below is written out in the form the common Python evaluators use
(2-D ``scipy.signal.convolve2d`` in float64 for every Sobel and Gaussian
filter, VIF's four scales in a Python loop with 'valid' convolutions, one
reference at a time, boolean-mask updates for Qabf). It is compared on one
640 x 480 pair (a RoadScene pair resized with PIL bicubic when the data is
present, else a synthetic textured pair): values must agree to 1e-6 relative,
and the time ratio is printed per metric. Everything runs on one thread.

Then ``evaluate_pairs`` is timed with 1 and 2 worker processes on N pairs
written to a temporary folder.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.signal import convolve2d  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bsr.metrics import fusion as ours  # noqa: E402
from bsr.metrics.evaluate import evaluate_pairs  # noqa: E402

W, H = 640, 480


# ----------------------------------------------------------------------------
# baseline: the direct form

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)  # as written in the field's code
SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)


def base_en(img):
    a = np.uint8(np.round(img)).flatten()
    h = np.bincount(a, minlength=256) / a.shape[0]
    return -np.sum(h * np.log2(h + (h == 0)))


def base_sd(img):
    return np.std(img)


def base_sf(img):
    return np.sqrt(np.mean((img[:, 1:] - img[:, :-1]) ** 2) + np.mean((img[1:, :] - img[:-1, :]) ** 2))


def base_ag(img):
    gx, gy = np.zeros_like(img), np.zeros_like(img)
    gx[:, 0] = img[:, 1] - img[:, 0]
    gx[:, -1] = img[:, -1] - img[:, -2]
    gx[:, 1:-1] = (img[:, 2:] - img[:, :-2]) / 2
    gy[0, :] = img[1, :] - img[0, :]
    gy[-1, :] = img[-1, :] - img[-2, :]
    gy[1:-1, :] = (img[2:, :] - img[:-2, :]) / 2
    return np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2))


def _sobel2d(img, pad_mode, scale=1.0):
    # correlation with the x/y Sobel = convolution with the flipped kernels, on a padded copy
    p = np.pad(img, 1, mode=pad_mode)
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) * scale
    ky = kx.T
    sx = convolve2d(p, kx[::-1, ::-1], mode="valid")
    sy = convolve2d(p, ky[::-1, ::-1], mode="valid")
    return sx, sy


def base_mg(img):  # OpenCV Sobel, BORDER_REFLECT_101 == numpy pad 'reflect'
    sx, sy = _sobel2d(img, "reflect")
    return np.mean(np.sqrt((sx ** 2 + sy ** 2) / 2))


def base_ei(img):  # skimage sobel_h/sobel_v: kernel / 4, ndimage 'reflect' == numpy pad 'symmetric'
    sx, sy = _sobel2d(img, "symmetric", 0.25)
    return np.mean(np.sqrt(sx ** 2 + sy ** 2))


def _qabf_arrays(img):
    sx = convolve2d(img, SOBEL_X, mode="same")
    sy = convolve2d(img, SOBEL_Y, mode="same")
    g = np.sqrt(sx * sx + sy * sy)
    a = np.zeros_like(img)
    a[sx == 0] = math.pi / 2
    a[sx != 0] = np.arctan(sy[sx != 0] / sx[sx != 0])
    return g, a


def _qabf_q(aA, gA, aF, gF):
    Tg, kg, Dg, Ta, ka, Da = 0.9994, -15, 0.5, 0.9879, -22, 0.8
    G = np.zeros_like(aA)
    G[gA > gF] = gF[gA > gF] / gA[gA > gF]
    G[gA == gF] = gF[gA == gF]
    G[gA < gF] = gA[gA < gF] / gF[gA < gF]
    A = 1 - np.abs(aA - aF) / (math.pi / 2)
    return Tg / (1 + np.exp(kg * (G - Dg))) * Ta / (1 + np.exp(ka * (A - Da)))


def base_qabf(f, a, b):
    gA, aA = _qabf_arrays(a)
    gB, aB = _qabf_arrays(b)
    gF, aF = _qabf_arrays(f)
    qa, qb = _qabf_q(aA, gA, aF, gF), _qabf_q(aB, gB, aF, gF)
    return np.sum(qa * gA + qb * gB) / np.sum(gA + gB)


def base_vif(ref, dist):
    sigma_nsq, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        m = (n - 1.0) / 2.0
        y, x = np.ogrid[-m:m + 1, -m:m + 1]
        h = np.exp(-(x * x + y * y) / (2.0 * sd * sd))
        h[h < np.finfo(h.dtype).eps * h.max()] = 0
        win = h / h.sum()
        k = np.rot90(win, 2)
        if scale > 1:
            ref = convolve2d(ref, k, mode="valid")[::2, ::2]
            dist = convolve2d(dist, k, mode="valid")[::2, ::2]
        mu1 = convolve2d(ref, k, mode="valid")
        mu2 = convolve2d(dist, k, mode="valid")
        s1 = convolve2d(ref * ref, k, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, k, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, k, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    v = num / den
    return 1.0 if np.isnan(v) else v


def base_viff(f, a, b):
    return base_vif(a, f) + base_vif(b, f)


BASE = {
    "Qabf": lambda f, a, b: base_qabf(f, a, b), "VIFF": lambda f, a, b: base_viff(f, a, b),
    "SF": lambda f, a, b: base_sf(f), "AG": lambda f, a, b: base_ag(f), "MG": lambda f, a, b: base_mg(f),
    "EI": lambda f, a, b: base_ei(f), "SD": lambda f, a, b: base_sd(f), "EN": lambda f, a, b: base_en(f),
}


# ----------------------------------------------------------------------------
# data

def data_root() -> Path | None:
    env = os.environ.get("BSR_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return root / "roadscene" if (root / "roadscene" / "ir").is_dir() else None


def _grey_u8(path) -> Image.Image:
    im = Image.open(path)
    if im.mode != "L":  # Y of BT.601, as bsr.io / OpenCV
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
        y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        im = Image.fromarray(np.clip(np.rint(y), 0, 255).astype(np.uint8))
    return im


def test_names(root: Path) -> list[str]:
    split = root / "splits" / "test.txt"
    if split.is_file():
        return split.read_text().split()
    return sorted(p.name for p in (root / "ir").iterdir())


def pair_640x480(root: Path | None, name: str | None = None, seed: int = 0):
    """(ir, vis) as float64 grey levels, 480 x 640."""
    if root is not None:
        name = name or test_names(root)[0]
        a = np.asarray(_grey_u8(root / "ir" / name).resize((W, H), Image.BICUBIC), dtype=np.float64)
        b = np.asarray(_grey_u8(root / "vi" / name).resize((W, H), Image.BICUBIC), dtype=np.float64)
        return a, b, f"RoadScene {name} resized to {W}x{H}"
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = 128 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0)
    a = base + 40 * (((x // 40) + (y // 40)) % 2) + rng.normal(0, 8, (H, W))
    b = 0.7 * base[:, ::-1] + 30 * np.sin((x + y) / 7.0) + rng.normal(0, 5, (H, W))
    return np.clip(np.rint(a), 0, 255), np.clip(np.rint(b), 0, 255), f"synthetic textured pair {W}x{H}"


def timings(fn, repeat):
    """(CPU seconds of each call, wall seconds of each call, value) over ``repeat`` calls.

    CPU time of this process (``time.process_time``) is the figure reported: on a
    shared machine it is not inflated by waiting for a core, and with one thread it
    equals wall time on an idle machine."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        v = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return np.array(cpu), np.array(wall), v


def bench_values(repeat: int, rounds: int = 5) -> bool:
    a, b, what = pair_640x480(data_root())
    f = np.rint((a + b) / 2)  # average fusion, 8-bit
    rb = max(3, repeat // 2)
    print(f"pair: {what}; fused = average; one thread; CPU time, best of {repeat} (baseline best of {rb})")
    print(f"{'metric':<6} {'baseline ms':>12} {'ours ms':>9} {'ratio':>7} {'max rel diff':>13}  value")
    tb_sum = to_sum = 0.0
    ok = True
    for m in ours.METRICS:
        tb, _, vb = timings(lambda: BASE[m](f, a, b), rb)
        to, _, vo = timings(lambda: ours.fusion_metrics(f, a, b, metrics=[m])[m], repeat)
        rel = abs(vo - vb) / max(abs(vb), 1e-300)
        ok &= rel <= 1e-6
        tb_sum += tb.min()
        to_sum += to.min()
        print(f"{m:<6} {tb.min() * 1e3:12.1f} {to.min() * 1e3:9.2f} {tb.min() / to.min():7.1f} {rel:13.2e}  {vo:.6f}")
    print(f"{'sum':<6} {tb_sum * 1e3:12.1f} {to_sum * 1e3:9.2f} {tb_sum / to_sum:7.1f}   (metrics one at a time)")
    # The whole call, in interleaved rounds so that both sides see the same load on a
    # shared machine: each round times the baseline's eight metrics once and our single
    # fusion_metrics call five times (best of five).
    ratios, base_ms, ours_ms = [], [], []
    for _ in range(rounds):
        tb, _, _ = timings(lambda: [BASE[m](f, a, b) for m in ours.METRICS], 1)
        to, _, _ = timings(lambda: ours.fusion_metrics(f, a, b), 5)
        base_ms.append(tb[0] * 1e3)
        ours_ms.append(to.min() * 1e3)
        ratios.append(tb[0] / to.min())
    print("all eight metrics, interleaved rounds (baseline ms / one fusion_metrics call ms = ratio):")
    print("  " + ";  ".join(f"{b:.0f} / {o:.1f} = {r:.1f}" for b, o, r in zip(base_ms, ours_ms, ratios)))
    print(f"speed-up of fusion_metrics (all eight): median {np.median(ratios):.1f} x over the rounds; "
          f"best vs best {min(base_ms) / min(ours_ms):.1f} x (baseline {min(base_ms):.0f} ms, "
          f"ours {min(ours_ms):.1f} ms CPU)")
    print("values agree to 1e-6 relative:", "yes" if ok else "NO")
    return ok


def bench_scaling(n_pairs: int) -> None:
    root = data_root()
    names = test_names(root)[:n_pairs] if root is not None else [None] * n_pairs
    n_pairs = len(names)  # RoadScene's test split has 50 pairs
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for d in ("fused", "ir", "vis"):
            (tmp / d).mkdir()
        for i, name in enumerate(names):
            a, b, _ = pair_640x480(root, name, seed=i)
            for d, img in (("ir", a), ("vis", b), ("fused", np.rint((a + b) / 2))):
                Image.fromarray(img.astype(np.uint8)).save(tmp / d / f"{i:03d}.png")
        times, cpus = {}, {}
        for workers in (1, 2, 1, 2):  # alternate, keep the best of two
            r0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            df = evaluate_pairs(tmp / "fused", tmp / "ir", tmp / "vis", workers=workers, progress=False)
            wall = time.perf_counter() - t
            r1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1))
            assert len(df) == n_pairs
            if wall < times.get(workers, float("inf")):
                times[workers], cpus[workers] = wall, cpu
        print(f"evaluate_pairs on {n_pairs} pairs of {W}x{H} PNGs (read + 8 metrics): "
              f"1 worker {times[1]:.2f} s wall ({cpus[1]:.2f} s CPU), "
              f"2 workers {times[2]:.2f} s wall ({cpus[2]:.2f} s CPU): speed-up {times[1] / times[2]:.2f} x; "
              f"os.cpu_count() = {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=6)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the speed-up")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--no-scaling", action="store_true")
    args = p.parse_args(argv)
    ok = bench_values(args.repeat, args.rounds)
    if not args.no_scaling:
        bench_scaling(args.pairs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
