"""Simulated test sets on disk, so that every method is scored on identical pairs.

Layout of one set (``<out>/<dataset>_<kind><level>/``)::

    manifest.json        parameters, package version, per-pair files + sha256
    ir/<name>.png        misaligned IR (8-bit)
    ir_aligned/<name>.png  the original, aligned IR (8-bit)
    vi/<name>.png        the visible image (RGB if colour, else grey)
    flow/<name>.npz      ``flow`` (2, H, W) float32, pixels, x first, with
                         warp(ir, flow) ~= ir_aligned

The set is written into a temporary sibling folder and renamed into place at
the end, so an interrupted run leaves nothing half-written; a folder left by a
killed run (SIGKILL) is removed by the next run into the same place. Levels
are checked (finite, applicable, smaller than every image) and existing sets
refused before anything is written. Files and folders get the umask's
permissions, as an ordinary write would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from . import simulate
from .readers import Pair, file_sha256, load_pairs, load_simulated
from ..io import save_npz, umask_mode, write_image, ycbcr_to_rgb

__all__ = ["set_name", "write_test_set", "simulate_dataset", "synthetic_test_options", "summarize_sets", "sample_rows", "main"]


def set_name(dataset: str, kind: str, level) -> str:
    """Folder name of a simulated set, e.g. ``roadscene_shift5``."""
    lv = f"{float(level):g}".replace(".", "p").replace("-", "m")
    return f"{dataset}_{kind}{lv}"


# A set is written into ``.<set>.bsrtmp-<host>-<pid>-<random>`` beside it. The
# host and process id say whose it is, so a later run can remove the leftovers
# of a killed one (that process is gone) and never those of a running one.
_TMP_TAG = ".bsrtmp-"
_TMP_RE = re.compile(r"^\.(?P<set>.+)\.bsrtmp-(?P<host>[A-Za-z0-9._-]*?)-(?P<pid>\d+)-[a-z0-9_]{8}$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def _tmp_prefix(name: str) -> str:
    return f".{name}{_TMP_TAG}{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True     # someone else's process (or unknowable): leave its folder alone
    return True


def remove_stale_temporaries(out_dir) -> list[Path]:
    """Remove the temporary set folders that a killed run left in ``out_dir``.

    Only folders named by this module's pattern (``.<set>.bsrtmp-<host>-<pid>-
    <random>``), made on this host by a process that no longer exists, are
    removed; anything else (another host's, a running writer's, the user's own
    hidden folders) is left alone. Returns the removed folders.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    removed, host = [], _host()
    for entry in out_dir.iterdir():
        m = _TMP_RE.match(entry.name)
        if not m or entry.is_symlink() or not entry.is_dir() or m["host"] != host:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _check_level_on(pairs: list[Pair], kind: str, level):
    """The level, normalised (:func:`bsr.datasets.simulate.check_level`), checked
    against every pair's image size; ValueError naming the first misfit pair."""
    lv = simulate.check_level(kind, level)
    for p in pairs:
        try:
            simulate.check_level(kind, lv, p.ir.shape)
        except ValueError as e:
            raise ValueError(f"{e} (pair {p.name!r})") from None
    return lv


def _vis_rgb(p: Pair) -> np.ndarray:
    if p.vis_cbcr is None:
        return p.vis
    return ycbcr_to_rgb(np.concatenate([p.vis[..., None], p.vis_cbcr], axis=-1))


def write_test_set(pairs: list[Pair], kind: str, level, out_dir, dataset: str, seed: int = 0,
                   split: str | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """Misalign every pair and write the set (see the module docstring).

    Returns the set's folder. Refuses to overwrite an existing set unless
    ``overwrite``.
    """
    if kind not in simulate.KINDS:
        raise ValueError(f"unknown misalignment kind {kind!r}; expected one of {sorted(simulate.KINDS)}")
    if not pairs:
        raise ValueError("no pairs to simulate")
    level = _check_level_on(pairs, kind, level)   # before anything is written
    out_dir = Path(out_dir)
    final = out_dir / set_name(dataset, kind, level)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True (--overwrite) to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final.name), dir=out_dir))
    try:
        os.chmod(tmp, umask_mode(0o777))   # mkdtemp's 0o700 would make the set private
        g = torch.Generator().manual_seed(int(seed))
        items = []
        for p in tqdm(pairs, desc=f"simulate {final.name}", disable=not progress, leave=False):
            ir = torch.from_numpy(p.ir)[None, None]
            mis, flow = simulate.apply(ir, kind, level, generator=g)
            files = {"ir": f"ir/{p.name}.png", "vi": f"vi/{p.name}.png"}
            write_image(tmp / files["ir"], mis[0, 0].numpy())
            write_image(tmp / files["vi"], _vis_rgb(p))
            if kind != "none":   # "none": the pair as it is (real misalignment, no ground truth)
                files.update(ir_aligned=f"ir_aligned/{p.name}.png", flow=f"flow/{p.name}.npz")
                write_image(tmp / files["ir_aligned"], p.ir)
                save_npz(tmp / files["flow"], flow=flow[0].numpy().astype(np.float32))
            items.append({"name": p.name, "shape": list(p.ir.shape), "files": files,
                          "sha256": {k: file_sha256(tmp / v) for k, v in files.items()}})
        manifest = {"dataset": dataset, "kind": kind, "level": level, "seed": int(seed), "split": split,
                    "ground_truth": kind != "none",
                    "n_pairs": len(items), "bsr_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "convention": "warp(ir, flow) ~= ir_aligned; out(p) = in(p + flow(p)); flow[0] = x",
                    "pairs": items}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def synthetic_test_options(profile_synthetic: dict | None) -> dict | None:
    """Generator options of a profile's simulated *test* sets: the profile's
    ``synthetic`` block (``n_test``, ``size``, ``seed``) as ``load_pairs``
    options; None (the generator's defaults) when the profile has none, as
    profiles of real datasets do."""
    if not profile_synthetic:
        return None
    out = {}
    if "n_test" in profile_synthetic:
        out["n"] = int(profile_synthetic["n_test"])
    for k in ("size", "seed"):
        if k in profile_synthetic:
            out[k] = profile_synthetic[k]
    return out or None


def simulate_dataset(dataset: str, kind: str, levels, out_dir, root=None, split: str | None = None,
                     limit: int | None = None, synthetic: dict | None = None, seed: int = 0,
                     overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Load ``dataset`` once and write one set per level.

    Every level is checked first (a finite number the kind can apply, smaller
    than every image, no two naming the same set), and so is every output
    folder (none may exist unless ``overwrite``): a bad level or an existing
    set fails before any set is written, not half way through.
    """
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise ValueError(f"levels must be a list of numbers; got {levels!r}")
    levels = [simulate.check_level(kind, lv) for lv in levels]
    if not levels:
        raise ValueError("no levels given: nothing to simulate")
    out_dir = Path(out_dir)
    names: dict[str, object] = {}
    for lv in levels:
        name = set_name(dataset, kind, lv)
        if name in names:
            same = f"level {lv!r} is given twice" if names[name] == lv else f"levels {names[name]!r} and {lv!r} both"
            raise ValueError(f"{same} (set {name}); give each level once")
        names[name] = lv
    if not overwrite:
        exist = [str(out_dir / n) for n in names if (out_dir / n).exists()]
        if exist:
            raise FileExistsError(f"{', '.join(exist)} exist{'s' if len(exist) == 1 else ''}; "
                                  "pass overwrite=True (--overwrite) to replace, or drop those levels")
    pairs = load_pairs(dataset, root=root, split=split, limit=limit, synthetic=synthetic)
    if not pairs:
        raise ValueError("no pairs to simulate")
    for lv in levels:
        _check_level_on(pairs, kind, lv)
    return [write_test_set(pairs, kind, lv, out_dir, dataset, seed=seed, split=split,
                           overwrite=overwrite, progress=progress) for lv in levels]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bsr simulate",
        description="Write simulated misaligned test sets (images, ground-truth fields, manifest).")
    ap.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic)")
    ap.add_argument("--kind", default="shift", choices=sorted(simulate.KINDS))
    ap.add_argument("--levels", default="5", help="comma-separated levels in px, e.g. 5,10,20,30,50")
    ap.add_argument("--split", default=None, help="split to use (e.g. test); default: all pairs")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many pairs")
    ap.add_argument("--root", default=None, help="data root (default: $BSR_DATA)")
    ap.add_argument("--synthetic-n", type=int, default=8, help="synthetic: number of pairs")
    ap.add_argument("--synthetic-size", default="256,256", help="synthetic: H,W")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("-o", "--out", required=True, help="output folder (one subfolder per set)")
    args = ap.parse_args(argv)
    parts = [x.strip() for x in args.levels.split(",")]
    if not any(parts):
        raise ValueError("--levels is empty; give comma-separated levels in px, e.g. 5,10,20")
    try:
        levels = [float(x) for x in parts]
    except ValueError:
        raise ValueError(f"bad --levels {args.levels!r}: expected comma-separated numbers, e.g. 5,10,20") from None
    try:
        size = [int(x) for x in args.synthetic_size.split(",")]
    except ValueError:
        raise ValueError(f"bad --synthetic-size {args.synthetic_size!r}: expected H,W, e.g. 256,256") from None
    try:
        levels = [simulate.check_level(args.kind, v) for v in levels]
    except ValueError as e:
        raise ValueError(f"--levels {args.levels!r}: {e}") from None
    synth = {"n": args.synthetic_n, "size": size, "seed": args.seed}
    for path in simulate_dataset(args.dataset, args.kind, levels, args.out, root=args.root, split=args.split,
                                 limit=args.limit, synthetic=synth, seed=args.seed, overwrite=args.overwrite):
        print(path)
    return 0


def summarize_sets(folders):
    """One row per written set: parameters, pair count, and the ground-truth
    displacement (mean and max |flow_gt|, px): the endpoint error of doing
    nothing. Returns a pandas DataFrame."""
    import pandas as pd

    rows = []
    for f in folders:
        f = Path(f)
        man = json.loads((f / "manifest.json").read_text())
        mags = []
        for item in man["pairs"]:
            if "flow" in item["files"]:
                with np.load(f / item["files"]["flow"]) as z:
                    mags.append(np.hypot(z["flow"][0], z["flow"][1]))
        rows.append({"set": f.name, "dataset": man["dataset"], "kind": man["kind"], "level": man["level"],
                     "pairs": man["n_pairs"],
                     "mean |flow_gt| px": float(np.mean([m.mean() for m in mags])) if mags else float("nan"),
                     "max |flow_gt| px": float(max(m.max() for m in mags)) if mags else float("nan")})
    return pd.DataFrame(rows)


def sample_rows(folders, n: int) -> list[dict]:
    """First pair of ``n`` sets spread evenly over ``folders``, as rows for
    :func:`bsr.plots.plot_sample_pairs`."""
    folders = [Path(f) for f in folders]
    idx = sorted(set(np.linspace(0, len(folders) - 1, min(n, len(folders))).round().astype(int)))
    rows = []
    for i in idx:
        p = load_simulated(folders[i])[0]
        flow = p.flow_gt if p.flow_gt is not None else np.zeros((2, *p.ir.shape), np.float32)
        rows.append({"title": f"{folders[i].name} / {p.name}", "ir": p.ir, "vis": p.vis, "flow": flow})
    return rows
