"""Benchmark: time and peak memory of `bsr fuse` on large pairs, whole image vs tiled.

    .venv/bin/python benchmarks/bench_fuse_large.py [--model quick|shipped-arch|pretrained]
        [--sizes 1,5,24] [--max-whole-mp 5] [--tile 1024] [--tile-overlap 64] [--threads 1]

Each row is one `bsr fuse IR VIS -o OUT` run in a fresh Python process (so
its peak resident memory, ``ru_maxrss``, is its own): ``fuse s`` is the time
of :func:`bsr.fuse.fuse_pair` alone, ``total s`` the whole command (PNG read
and write included), ``peak RSS MB`` the process's peak. The whole-image mode
(``--tile 0``) is skipped above ``--max-whole-mp`` megapixels.

The pair (3:2, colour visible) is a RoadScene test pair upsampled (PIL
bicubic) to each size when the data is present (``$BSR_DATA`` or
../shared/datasets), else a smooth synthetic scene; the IR is shifted by
0.3 % of the width. Models: ``quick`` (``bsr.model.BSR()``, random weights:
the cost does not depend on the weights), ``shipped-arch`` (the shipped
model's architecture: ECC global stage + the 4-level U-Net with the edge-NCC
cost volume of config/pretrain/roadscene.yaml + the quick auto-encoder, random
weights) and ``pretrained`` (``bsr.load_pretrained()``; needs the weights file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[1]))
from bsr import fuse
inner, spent = fuse.fuse_pair, []
def timed(*a, **k):
    t = time.perf_counter()
    out = inner(*a, **k)
    spent.append(time.perf_counter() - t)
    return out
fuse.fuse_pair = timed
rc = fuse.main(sys.argv[2:])
print("RESULT " + json.dumps({"rc": rc, "fuse_s": sum(spent), "total_s": time.perf_counter() - t0,
                             "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _size(mp: float) -> tuple[int, int]:
    w = int(round(math.sqrt(mp * 1e6 * 1.5) / 8) * 8)
    return w, int(round(w / 1.5 / 8) * 8)


def _source() -> tuple[np.ndarray, np.ndarray, str]:
    """(ir uint8 (H, W), vis uint8 (H, W, 3), description) at the source size."""
    from PIL import Image

    root = Path(os.environ.get("BSR_DATA", REPO.parent / "shared" / "datasets")) / "roadscene"
    split = root / "splits" / "test.txt"
    if split.is_file():
        name = split.read_text().split()[0]
        ir = np.asarray(Image.open(root / "ir" / name).convert("L"))
        vis = np.asarray(Image.open(root / "vi" / name).convert("RGB"))
        return ir, vis, f"RoadScene {name} upsampled"
    from scipy import ndimage
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random((400, 600)), 3)
    base = (base - base.min()) / (base.max() - base.min())
    vis = np.stack((base, base ** 2, np.sqrt(base)), -1)
    return ((1 - base) * 255).astype(np.uint8), (vis * 255).astype(np.uint8), "synthetic"


def _write_pair(folder: Path, mp: float, ir0, vis0) -> tuple[Path, Path]:
    from PIL import Image

    w, h = _size(mp)
    ir_p, vis_p = folder / f"ir_{mp:g}.png", folder / f"vis_{mp:g}.png"
    if not ir_p.is_file():
        dx = max(1, round(0.003 * w))
        ir = np.asarray(Image.fromarray(ir0).resize((w, h), Image.BICUBIC))
        Image.fromarray(np.ascontiguousarray(np.roll(ir, dx, axis=1))).save(ir_p, compress_level=1)
        del ir
        Image.fromarray(vis0).resize((w, h), Image.BICUBIC).save(vis_p, compress_level=1)
    return ir_p, vis_p


def _checkpoint(folder: Path, kind: str) -> Path | None:
    if kind == "pretrained":
        return None
    import torch
    import yaml

    sys.path.insert(0, str(REPO))
    from bsr.checkpoint import save_checkpoint
    from bsr.model import BSR, model_config
    from bsr.training import TrainConfig

    torch.manual_seed(0)
    if kind == "quick":
        cfg = model_config("quick")
    else:
        recipe = yaml.safe_load((REPO / "config" / "train" / "roadscene.yaml").read_text())["model"]
        cfg = model_config(recipe.get("size", "quick"), unet=recipe.get("unet") or {},
                           **{"global": {"method": "ecc", "max_side": 640}})
    path = folder / f"{kind}.pt"
    save_checkpoint(path, BSR(cfg), TrainConfig(), step=0, phase=1)
    return path


def _run(args, ck, ir_p, vis_p, out: Path, tile: int) -> dict:
    argv = [str(ir_p), str(vis_p), "-o", str(out), "--device", "cpu", "--tile", str(tile),
            "--tile-overlap", str(args.tile_overlap)]
    if ck is not None:
        argv = ["--checkpoint", str(ck), *argv]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), PYTHONPATH=str(REPO))
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), *argv], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {args.timeout} s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            return res if res["rc"] == 0 else {"error": f"rc {res['rc']}: {p.stderr.strip()[-200:]}"}
    return {"error": f"exit {p.returncode}: {p.stderr.strip()[-200:]}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["quick", "shipped-arch", "pretrained"], default="quick")
    ap.add_argument("--pretrained", action="store_true", help="same as --model pretrained")
    ap.add_argument("--sizes", default="1,5,24", help="megapixels, comma-separated")
    ap.add_argument("--max-whole-mp", type=float, default=5.0, help="skip the whole-image mode above this")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--tile-overlap", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    ap.add_argument("--keep", default=None, help="folder for the inputs/outputs (default: a temporary one)")
    args = ap.parse_args(argv)
    kind = "pretrained" if args.pretrained else args.model
    if kind == "pretrained":
        sys.path.insert(0, str(REPO))
        from bsr.pretrained import weights_path
        try:
            weights_path()
        except (FileNotFoundError, ValueError) as e:
            print(f"bench_fuse_large: {e}", file=sys.stderr)
            return 1
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bsr_bench_fuse_") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        ir0, vis0, what = _source()
        ck = _checkpoint(folder, kind)
        print(f"# bsr fuse, model {kind}, {args.threads} thread(s), pair: {what}, "
              f"tiles {args.tile} px / overlap {args.tile_overlap} px")
        print(f"{'MP':>6} {'W x H':>11} {'mode':<14} {'fuse s':>8} {'total s':>8} {'peak RSS MB':>12}")
        for mp in sizes:
            ir_p, vis_p = _write_pair(folder, mp, ir0, vis0)
            w, h = _size(mp)
            modes = [(f"tiled {args.tile}", args.tile)]
            if mp <= args.max_whole_mp:
                modes.insert(0, ("whole", 0))
            for label, tile in modes:
                res = _run(args, ck, ir_p, vis_p, folder / f"fused_{mp:g}_{tile}.png", tile)
                if "error" in res:
                    print(f"{w * h / 1e6:6.1f} {f'{w}x{h}':>11} {label:<14} {res['error']}", flush=True)
                else:
                    print(f"{w * h / 1e6:6.1f} {f'{w}x{h}':>11} {label:<14} {res['fuse_s']:8.1f} "
                          f"{res['total_s']:8.1f} {res['rss_mb']:12.0f}", flush=True)
                (folder / f"fused_{mp:g}_{tile}.png").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
