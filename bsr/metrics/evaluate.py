"""Score many (fused, ir, vis) image files in parallel; summarise with bootstrap CIs.

Images are read with :func:`bsr.io.read_image`; colour images are reduced to
the Y channel of YCbCr (BT.601, as the field's code does with OpenCV) and all
three are put on the 0-255 scale. By default they are then rounded to integer
grey levels (``quantize=True``), which is what the field's evaluators see
when they read 8-bit files (and makes the computed values exact for 8-bit
sources).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import IMAGE_SUFFIXES, read_image, rgb_to_ycbcr
from .fusion import METRICS, fusion_metrics

__all__ = ["evaluate_pairs", "summarize", "pair_files", "load_grey"]


def load_grey(path, quantize: bool = True) -> np.ndarray:
    """One image file as float64 grey levels on 0-255 (Y of YCbCr for colour files)."""
    img = read_image(path)
    if img.ndim == 3:
        img = rgb_to_ycbcr(img)[..., 0]
    x = img.astype(np.float64) * 255.0
    return np.rint(x) if quantize else x


def _images_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in found:
                raise ValueError(f"{folder}: two images share the stem {p.stem!r} "
                                 f"({found[p.stem].name}, {p.name}); cannot pair by name")
            found[p.stem] = p
    return found


def _as_list(x, role: str):
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if p.is_dir():
            return p
        raise FileNotFoundError(f"{role}: {p} is not a directory")
    return [Path(q) for q in x]


def pair_files(fused, ir, vis) -> list[tuple[str, Path, Path, Path]]:
    """Resolve the inputs into ``(name, fused, ir, vis)`` tuples.

    Each of ``fused``, ``ir``, ``vis`` is a directory or a list of files. The fused
    images define the set: from a directory every image file; sources given as
    directories are matched by file stem (any image extension), sources given as
    lists are matched by position. Missing files raise ``FileNotFoundError`` naming them.
    """
    f = _as_list(fused, "fused")
    fused_files = list(_images_in(f).values()) if isinstance(f, Path) else f
    if not fused_files:
        raise FileNotFoundError(f"no fused images found in {fused}")
    names = [p.stem for p in fused_files]
    if len(set(names)) != len(names):
        raise ValueError("fused images must have distinct file stems (they name the rows)")
    sources = {}
    missing: list[str] = []
    for role, src in (("ir", ir), ("vis", vis)):
        s = _as_list(src, role)
        if isinstance(s, Path):
            table = _images_in(s)
            sources[role] = [table.get(n) for n in names]
            missing += [f"{role}: no image named {n}.* in {s} (for {fp})"
                        for n, fp, q in zip(names, fused_files, sources[role]) if q is None]
        else:
            if len(s) != len(fused_files):
                raise ValueError(f"{len(fused_files)} fused files but {len(s)} {role} files")
            sources[role] = s
    for p in fused_files + [q for role in sources for q in sources[role] if q is not None]:
        if not p.is_file():
            missing.append(f"no such file: {p}")
    if missing:
        shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(f"{len(missing)} input file(s) missing:\n  {shown}")
    return list(zip(names, fused_files, sources["ir"], sources["vis"]))


def _score(job) -> dict:
    (name, pf, pa, pb), quantize, kwargs = job
    f, a, b = (load_grey(p, quantize) for p in (pf, pa, pb))
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"size mismatch for {name!r}: fused {pf} is {f.shape[1]}x{f.shape[0]}, "
                         f"ir {pa} is {a.shape[1]}x{a.shape[0]}, vis {pb} is {b.shape[1]}x{b.shape[0]} (WxH)")
    try:
        scores = fusion_metrics(f, a, b, **kwargs)
    except ValueError as e:
        raise ValueError(f"{name!r} ({pf}): {e}") from None
    return {"name": name, **scores}


def _context():
    # fork is fast and safe here (workers only run numpy/scipy); elsewhere spawn.
    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return mp.get_context("spawn")


def evaluate_pairs(fused, ir, vis, *, workers: int | None = None, progress: bool = True,
                   quantize: bool = True, metrics: Sequence[str] | None = None,
                   **definitions) -> pd.DataFrame:
    """Score every fused image against its sources; one row per image.

    Parameters
    ----------
    fused, ir, vis : directory or list of files (see :func:`pair_files`).
    workers : processes (default ``os.cpu_count()``; 1 runs in this process).
    progress : show a tqdm progress bar on stderr.
    quantize : round grey levels to integers (default, as 8-bit readers do).
    metrics, **definitions : passed to :func:`bsr.metrics.fusion_metrics`
        (e.g. ``mg="forward_diff"``).

    Returns a DataFrame with column ``name`` (the fused file's stem) and one column
    per metric, in input order.
    """
    from tqdm import tqdm

    pairs = pair_files(fused, ir, vis)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    kwargs = dict(definitions)
    if metrics is not None:
        kwargs["metrics"] = tuple(metrics)
    jobs = [(p, quantize, kwargs) for p in pairs]
    workers = min(workers, len(jobs))
    bar = tqdm(total=len(jobs), desc="evaluate", unit="img", disable=not progress, file=sys.stderr)
    rows = []
    try:
        if workers == 1:
            for job in jobs:
                rows.append(_score(job))
                bar.update()
        else:
            with _context().Pool(workers) as pool:
                for row in pool.imap(_score, jobs, chunksize=1):
                    rows.append(row)
                    bar.update()
    finally:
        bar.close()
    cols = ["name"] + [m for m in METRICS if m in rows[0]]
    return pd.DataFrame(rows, columns=cols)


def summarize(df: pd.DataFrame, n_boot: int = 10000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1) and a percentile-bootstrap interval of the
    mean for every numeric column of ``df``.

    The bootstrap resamples the rows ``n_boot`` times with replacement
    (``numpy.random.default_rng(seed)``, restarted per metric so each interval is
    reproducible on its own); NaNs are dropped per metric (``n`` counts the rest).
    Returns a DataFrame indexed by metric with columns ``mean, std, ci_low, ci_high, n``.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    out = {}
    lo_q, hi_q = (1.0 - ci) / 2.0, 1.0 - (1.0 - ci) / 2.0
    for col in df.columns:
        if col == "name" or not pd.api.types.is_numeric_dtype(df[col]):
            continue
        v = df[col].to_numpy(dtype=np.float64)
        v = v[~np.isnan(v)]
        n = v.size
        if n == 0:
            out[col] = dict(mean=np.nan, std=np.nan, ci_low=np.nan, ci_high=np.nan, n=0)
            continue
        rng = np.random.default_rng(seed)
        means = np.empty(n_boot)
        step = max(1, 2_000_000 // n)  # bound memory: ~16 MB of indices per chunk
        for s in range(0, n_boot, step):
            k = min(step, n_boot - s)
            means[s:s + k] = v[rng.integers(0, n, size=(k, n))].mean(axis=1)
        lo, hi = np.quantile(means, [lo_q, hi_q])
        out[col] = dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if n > 1 else np.nan,
                        ci_low=float(lo), ci_high=float(hi), n=n)
    return pd.DataFrame.from_dict(out, orient="index", columns=["mean", "std", "ci_low", "ci_high", "n"])
