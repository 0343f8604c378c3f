"""The released B-SR model beside the classical registration methods, in one run.

    BSR_DATA=/work/shared/datasets OMP_NUM_THREADS=1 .venv/bin/python benchmarks/released_model.py \\
        [--checkpoint PATH | --untrained] [--refine | --no-refine] [--pairs N] [--sets shift5_right,dilate10] \\
        [--sections accuracy,content,nogt,fusion,speed] [--out results/released]

Methods: ``identity`` (zero field: no registration), ``phase``, ``ECC``, ``TV-L1``
(``bsr.baselines.REGISTRATION``), ``ECC translation`` (the same ECC with a
translation model: ``bsr.baselines.ecc_affine(..., motion="translation")``) and
``B-SR`` (the model's ``phi_p``; default the shipped ``bsr.load_pretrained()``,
or ``--checkpoint`` / ``--untrained``; ``--refine`` / ``--no-refine`` switch its per-pair MIND
refinement, ``bsr.refine``, on or off; default the model's own setting, on for the shipped one). Every score drops a 10 px margin on each
side.

Sections (``--sections``):

* ``accuracy`` -- RoadScene test split, every set of ``bsr.datasets.benchsets.SETS``
  (``--sets``): endpoint error against the simulated ground truth
  (``bsr.metrics.registration_metrics``): mean EPE, median EPE, share of pixels
  with EPE > 3 px, the registered-vs-visible edge alignment
  (``bsr.metrics.registration.edge_alignment``, px), the mean EPE from the
  method's own alignment (below) and seconds per pair. Each
  figure is the mean over pairs of the per-pair value (the median is the mean
  of the per-pair medians; the >3 px share the mean of the per-pair shares).
  Plus the ``aligned`` floor: the unmisaligned pairs, where each method's mean
  field norm says what it does to aligned input (an upper estimate of how far
  RoadScene's own pairs are off), and a per-set summary: the lowest mean EPE
  and whether B-SR beats every classical method.
  The EPE "from own alignment" scores a method against the ground truth
  composed with its own field on the unmisaligned pair
  (``bsr.warp.compose(gt, field_aligned)``): it leaves out the pairs' own
  misalignment, which the plain EPE counts as error for every method that
  registers it, and measures whether the method finds the same content
  alignment before and after the simulated misalignment.
* ``content`` -- the model on ``shift5_right`` and ``dilate10`` pairs as given
  and flipped left-right, up-down and rotated 180 degrees (images and the
  ground-truth field transformed together: :func:`transform_pair`); the ratio
  of each op's mean EPE to the as-given one (ratio of means; target within
  10 %). A model that outputs a learned offset fails ``flip_lr`` / ``rot180``
  on the shift set.
* ``nogt`` -- TNO and M3FD (no ground truth): edge alignment of the registered
  IR against the visible image before (``identity``) and after each method, on
  the pairs as given and misaligned by the ``dilate10`` and ``shift5_right``
  sets.
* ``fusion`` -- RoadScene ``shift5_right`` and ``dilate10``: ``model.fuse``
  beside ``ECC + GFF``, ``TV-L1 + GFF``, ``none + GFF``
  (``bsr.baselines.register_then_fuse``) and, as a reference, GFF of the truly
  aligned IR; the eight metrics of ``bsr.metrics.fusion_metrics`` (Qabf, VIFF,
  SF, AG, MG, EI, SD, EN) on 8-bit grey levels against the ALIGNED IR and the
  visible image.
* ``speed`` -- a 640 x 480 pair (the first RoadScene test pair resized, then
  misaligned by ``shift5_right``), one CPU thread: median of 3 timed runs
  (after one untimed warm-up) of B-SR register, B-SR register + fuse, ECC, and
  ECC + GFF.

Writes under ``--out`` one ``.csv`` + ``.md`` (+ ``.tex``, ``bsr.study.tables.write_table``)
per table, per-pair CSVs, PNG plots, ``run_info.json`` and ``REPORT.md`` (all
tables in one page). ``--synthetic`` replaces every dataset by small synthetic
pairs (a smoke test; the numbers mean nothing).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import bsr  # noqa: E402
from bsr.datasets import benchsets  # noqa: E402
from bsr.datasets import readers as bsr_data  # noqa: E402
from bsr.baselines import FUSION, NO_REGISTRATION, REGISTRATION, ecc_affine, register_then_fuse  # noqa: E402
from bsr.io import to_uint8  # noqa: E402
from bsr.metrics import METRICS as FUSION_METRICS  # noqa: E402
from bsr.metrics import fusion_metrics  # noqa: E402
from bsr.metrics.registration import edge_alignment, registration_metrics  # noqa: E402
from bsr.checkpoint import load_checkpoint  # noqa: E402
from bsr.model import BSR  # noqa: E402
from bsr.study.report import git_commit  # noqa: E402
from bsr.study.tables import write_table  # noqa: E402
from bsr.warp import compose, warp  # noqa: E402

MARGIN = 10
MODEL = "B-SR"
IDENTITY = "identity"
ECC_TRANSLATION = "ECC translation"
CLASSICAL = ("phase", ECC_TRANSLATION, "ECC", "TV-L1")
METHODS = (IDENTITY, *CLASSICAL, MODEL)
FLOOR = "aligned"
SECTIONS = ("accuracy", "content", "nogt", "fusion", "speed")
CONTENT_SETS = ("shift5_right", "dilate10")
NOGT_DATASETS = ("tno", "m3fd")
NOGT_CONDITIONS = ("as_given", "dilate10", "shift5_right")
FUSION_SETS = ("shift5_right", "dilate10")
FUSION_RULE = "GFF"
FUSION_REGS = ("ECC", "TV-L1", NO_REGISTRATION)
ALIGNED_REFERENCE = f"aligned + {FUSION_RULE} (reference)"
SPEED_SIZE = (640, 480)  # W x H
SPEED_RUNS = 3
CONTENT_TOLERANCE = 0.10
SYNTHETIC_SIZE = [96, 128]

# op -> tensor dims flipped; flipping the x (last) axis negates the x component
# of a field, flipping y negates y; rot180 is both flips.
OPS = {"as_given": (), "flip_lr": (-1,), "flip_ud": (-2,), "rot180": (-2, -1)}


# --------------------------------------------------------------------------- helpers

def transform_pair(item: dict, op: str) -> dict:
    """``item`` (a :func:`bsr.datasets.benchsets.make_set` dict) with the images and the field flipped by ``op``.

    ``op``: ``as_given``, ``flip_lr`` (x), ``flip_ud`` (y) or ``rot180``. With ``F``
    the flip of the pixel grid and ``R`` its linear part (diag(-1, 1) for
    ``flip_lr``), ``x_t(p) = x(F p)`` for every image, and since
    ``mis(q + gt(q)) = ir(q)``: ``mis_t(p + gt_t(p)) = ir_t(p)`` holds with
    ``gt_t(p) = R gt(F p)`` -- the field array is flipped and its flipped
    components negated. Other keys are copied; ``op`` is added.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    dims = OPS[op]
    out = dict(item)
    out["op"] = op
    if not dims:
        return out
    for k in ("mis", "vis", "ir_aligned"):
        out[k] = torch.flip(item[k], dims)
    gt = torch.flip(item["gt"], dims).clone()
    if -1 in dims:
        gt[:, 0] = -gt[:, 0]
    if -2 in dims:
        gt[:, 1] = -gt[:, 1]
    out["gt"] = gt
    return out


def aligned_set(pairs) -> list[dict]:
    """The pairs as given (no misalignment), in :func:`bsr.datasets.benchsets.make_set`'s form, zero field."""
    out = []
    for p in pairs:
        ir = torch.from_numpy(p.ir)[None, None]
        out.append({"name": p.name, "mis": ir, "vis": torch.from_numpy(p.vis)[None, None],
                    "ir_aligned": ir, "gt": torch.zeros(1, 2, *ir.shape[-2:])})
    return out


def make_items(pairs, name: str) -> list[dict]:
    return aligned_set(pairs) if name in (FLOOR, "as_given") else benchsets.make_set(pairs, name)


def registration_methods(model) -> dict:
    """name -> ``f(ir, vis)`` returning the (1, 2, H, W) field that aligns ``ir`` to ``vis``."""
    def identity(ir, vis):
        return torch.zeros(ir.shape[0], 2, *ir.shape[-2:], dtype=ir.dtype)

    def bsr_field(ir, vis):
        with torch.no_grad():
            return model.register(ir, vis)[0]

    classical = {**REGISTRATION, ECC_TRANSLATION: functools.partial(ecc_affine, motion="translation")}
    return {IDENTITY: identity, **{k: classical[k] for k in CLASSICAL}, MODEL: bsr_field}


def score(mis, vis, field, gt=None) -> dict:
    """EPE keys (when ``gt`` is given) and ``edge_align``: warped IR vs visible, px."""
    out = {}
    if gt is not None:
        out.update(registration_metrics(flow_pred=field, flow_gt=gt, margin=MARGIN))
    out["edge_align"] = edge_alignment(warp(mis, field).clamp(0.0, 1.0), vis, margin=MARGIN)
    return out


def _timed(fn, *a):
    t0 = time.perf_counter()
    r = fn(*a)
    return r, time.perf_counter() - t0


def _bar(items, desc, progress):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="pair", disable=not progress, file=sys.stderr, leave=False)


# --------------------------------------------------------------------------- sections

def run_accuracy(methods: dict, pairs, sets, progress=True) -> pd.DataFrame:
    """One row per (set, pair, method); the first set is the unmisaligned floor.

    ``EPE_own``: mean EPE against ``compose(gt, f0)``, ``f0`` the method's field on the
    unmisaligned pair (NaN on the floor set itself).
    """
    rows, own = [], {}
    for set_name in (FLOOR, *sets):
        for it in _bar(make_items(pairs, set_name), set_name, progress):
            for m, fn in methods.items():
                field, sec = _timed(fn, it["mis"], it["vis"])
                row = {"set": set_name, "pair": it["name"], "method": m, "seconds": sec,
                       **score(it["mis"], it["vis"], field, it["gt"]), "EPE_own": float("nan")}
                if set_name == FLOOR:
                    own[it["name"], m] = field
                else:
                    ref = compose(it["gt"], own[it["name"], m].to(it["gt"].dtype))
                    row["EPE_own"] = registration_metrics(flow_pred=field, flow_gt=ref, margin=MARGIN)["EPE_mean"]
                rows.append(row)
    return pd.DataFrame(rows)


TIE_PX = 0.01   # mean EPEs closer than this (px) are a tie


def paired_interval(per_set: pd.DataFrame, a: str, b: str, resamples: int = 2000,
                    value: str = "EPE_mean") -> tuple[float, float]:
    """95 % percentile-bootstrap interval (scipy.stats.bootstrap, seed 0) of the mean over pairs of method
    ``a``'s ``value`` (default its mean EPE) minus method ``b``'s on the same pair; (nan, nan) under 2 pairs.
    An interval that holds 0 says that the test pairs do not resolve the difference of the means."""
    from scipy.stats import bootstrap

    x = per_set.pivot_table(index="pair", columns="method", values=value)[[a, b]].dropna()
    diff = (x[a] - x[b]).to_numpy(dtype=float)
    if len(diff) < 2:
        return float("nan"), float("nan")
    if np.ptp(diff) == 0:    # every pair differs by the same amount: the interval is that amount
        return float(diff[0]), float(diff[0])
    ci = bootstrap((diff,), np.mean, n_resamples=resamples, method="percentile", random_state=0).confidence_interval
    return float(ci.low), float(ci.high)


def summarize_accuracy(per_pair: pd.DataFrame):
    """(accuracy table, floor table, per-set summary)."""
    g = per_pair.groupby(["set", "method"], sort=False)
    t = g.agg(pairs=("pair", "size"), EPE_mean=("EPE_mean", "mean"), EPE_median=("EPE_median", "mean"),
              gt3=("EPE>3px", "mean"), edge=("edge_align", "mean"), own=("EPE_own", "mean"),
              sec=("seconds", "mean")).reset_index()
    t["gt3"] *= 100.0
    acc = t[t["set"] != FLOOR].rename(columns={
        "EPE_mean": "mean EPE (px)", "EPE_median": "median EPE (px)", "gt3": "EPE>3px (%)",
        "edge": "edge align (px)", "own": "mean EPE from own alignment (px)",
        "sec": "s/pair"}).reset_index(drop=True)
    floor = t[t["set"] == FLOOR].drop(columns=["set", "own"]).rename(columns={
        "EPE_mean": "mean field norm (px)", "EPE_median": "median field norm (px)", "gt3": "field norm>3px (%)",
        "edge": "edge align (px)", "sec": "s/pair"}).reset_index(drop=True)
    summary = []
    for s, d in acc.groupby("set", sort=False):
        e = dict(zip(d["method"], d["mean EPE (px)"]))
        low = min(e.values())
        # methods within TIE_PX of the lowest share the place: the model's global stage alone is the
        # package's ECC, whose result it reproduces up to float rounding, which is no win
        best = " = ".join(k for k in e if e[k] <= low + TIE_PX)
        cl = {k: e[k] for k in CLASSICAL if k in e}
        best_cl = min(cl, key=cl.get) if cl else None
        row = {"set": s, "lowest mean EPE": best, "its EPE (px)": low}
        if MODEL in e and best_cl is not None:
            lo, hi = paired_interval(per_pair[per_pair["set"] == s], MODEL, best_cl)
            row.update({"B-SR EPE (px)": e[MODEL], "best classical": best_cl,
                        "best classical EPE (px)": cl[best_cl], "B-SR / best classical": e[MODEL] / cl[best_cl],
                        "B-SR - best classical, 95 % low (px)": lo, "B-SR - best classical, 95 % high (px)": hi,
                        "B-SR beats every classical": "yes" if all(e[MODEL] < v - TIE_PX for v in cl.values()) else "no"})
        summary.append(row)
    return acc, floor, pd.DataFrame(summary)


def run_content(model_fn, pairs, sets=CONTENT_SETS, progress=True) -> pd.DataFrame:
    rows = []
    for set_name in sets:
        for it in _bar(benchsets.make_set(pairs, set_name), f"content {set_name}", progress):
            for op in OPS:
                t = transform_pair(it, op)
                field = model_fn(t["mis"], t["vis"])
                e = registration_metrics(flow_pred=field, flow_gt=t["gt"], margin=MARGIN)["EPE_mean"]
                e0 = registration_metrics(flow_pred=torch.zeros_like(t["gt"]), flow_gt=t["gt"],
                                          margin=MARGIN)["EPE_mean"]
                rows.append({"set": set_name, "pair": it["name"], "op": op, "EPE_mean": e, "identity": e0})
    return pd.DataFrame(rows)


def summarize_content(per_pair: pd.DataFrame) -> pd.DataFrame:
    t = per_pair.groupby(["set", "op"], sort=False).agg(
        pairs=("pair", "size"), EPE=("EPE_mean", "mean"), ident=("identity", "mean")).reset_index()
    base = t[t["op"] == "as_given"].set_index("set")["EPE"]
    t["ratio"] = t["EPE"] / t["set"].map(base)
    t["within 10 %"] = np.where((t["ratio"] - 1.0).abs() <= CONTENT_TOLERANCE, "yes", "no")
    return t.rename(columns={"EPE": "B-SR mean EPE (px)", "ident": "identity EPE (px)",
                             "ratio": "ratio to as given"})


def run_nogt(methods: dict, datasets: dict, progress=True) -> pd.DataFrame:
    """``datasets``: name -> aligned pairs. One row per (dataset, condition, pair, method)."""
    rows = []
    for ds, pairs in datasets.items():
        for cond in NOGT_CONDITIONS:
            for it in _bar(make_items(pairs, cond), f"{ds} {cond}", progress):
                for m, fn in methods.items():
                    field, sec = _timed(fn, it["mis"], it["vis"])
                    rows.append({"dataset": ds, "condition": cond, "pair": it["name"], "method": m,
                                 "seconds": sec, **score(it["mis"], it["vis"], field)})
    return pd.DataFrame(rows)


def summarize_nogt(per_pair: pd.DataFrame):
    """(wide edge-alignment table: one column per method, ``identity`` = before; seconds table)."""
    keys = ["dataset", "condition"]
    ea = per_pair.pivot_table(index=keys, columns="method", values="edge_align", aggfunc="mean", sort=False)
    ea = ea[[m for m in METHODS if m in ea.columns]].rename(columns={IDENTITY: "before (identity)"})
    n = per_pair[per_pair["method"] == IDENTITY].groupby(keys, sort=False).size().rename("pairs")
    ea = pd.concat([n, ea], axis=1).reset_index()
    sec = per_pair.pivot_table(index="dataset", columns="method", values="seconds", aggfunc="mean", sort=False)
    sec = sec[[m for m in METHODS if m in sec.columns]].reset_index()
    return ea, sec


def _fused_rows(it, model, set_name):
    ir8, vis8 = to_uint8(it["ir_aligned"][0, 0].numpy()), to_uint8(it["vis"][0, 0].numpy())
    outs = {}
    with torch.no_grad():
        (fused, _, _), sec = _timed(model.fuse, it["mis"], it["vis"])
    outs[MODEL] = (fused, sec)
    for reg in FUSION_REGS:
        (fused, _), sec = _timed(register_then_fuse, reg, FUSION_RULE, it["mis"], it["vis"])
        outs[f"{reg} + {FUSION_RULE}"] = (fused, sec)
    outs[ALIGNED_REFERENCE] = _timed(FUSION[FUSION_RULE], it["ir_aligned"], it["vis"])
    rows = []
    for m, (fused, sec) in outs.items():
        f8 = to_uint8(fused[0, 0].clamp(0, 1).numpy())
        rows.append({"set": set_name, "pair": it["name"], "method": m, "seconds": sec,
                     **fusion_metrics(f8, ir8, vis8)})
    return rows


def run_fusion(model, pairs, sets=FUSION_SETS, progress=True) -> pd.DataFrame:
    rows = []
    for set_name in sets:
        for it in _bar(benchsets.make_set(pairs, set_name), f"fusion {set_name}", progress):
            rows.extend(_fused_rows(it, model, set_name))
    return pd.DataFrame(rows)


def summarize_fusion(per_pair: pd.DataFrame) -> pd.DataFrame:
    cols = [*FUSION_METRICS, "seconds"]
    t = per_pair.groupby(["set", "method"], sort=False)[cols].mean().reset_index()
    return t.rename(columns={"seconds": "s/pair"})


def fusion_against(per_pair: pd.DataFrame, base: str = f"ECC + {FUSION_RULE}") -> pd.DataFrame:
    """Per set and metric: the model's mean minus ``base``'s over the same pairs, the pairs where the model
    is higher, and the 95 % bootstrap interval of the difference (:func:`paired_interval`)."""
    rows = []
    for s, d in per_pair.groupby("set", sort=False):
        x = d.pivot_table(index="pair", columns="method", values=list(FUSION_METRICS))
        for m in FUSION_METRICS:
            diff = (x[m][MODEL] - x[m][base]).dropna()
            lo, hi = paired_interval(d, MODEL, base, value=m)
            rows.append({"set": s, "metric": m, MODEL: x[m][MODEL].mean(), base: x[m][base].mean(),
                         "difference": diff.mean(), "pairs higher": f"{int((diff > 0).sum())} / {len(diff)}",
                         "95 % low": lo, "95 % high": hi})
    return pd.DataFrame(rows)


def speed_pair(pair, size=SPEED_SIZE) -> dict:
    """``pair`` resized to ``size`` (W, H) and misaligned by ``shift5_right``."""
    w, h = size

    def rs(a):
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
        return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)

    p = bsr_data.Pair(name=f"{pair.name}@{w}x{h}", ir=rs(pair.ir)[0, 0].numpy(), vis=rs(pair.vis)[0, 0].numpy())
    return benchsets.make_set([p], "shift5_right")[0]


def _median_time(fn, runs=SPEED_RUNS):
    fn()  # warm-up (allocations, lazy inits), not timed
    ts = []
    for _ in range(runs):
        ts.append(_timed(fn)[1])
    return float(np.median(ts)), ts


def run_speed(model, item, runs=SPEED_RUNS) -> pd.DataFrame:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    mis, vis = item["mis"], item["vis"]

    def bsr_register():
        with torch.no_grad():
            return model.register(mis, vis)

    def bsr_fuse():
        with torch.no_grad():
            return model.fuse(mis, vis)

    jobs = {"B-SR register": bsr_register, "B-SR register + fuse": bsr_fuse,
            "ECC register": lambda: REGISTRATION["ECC"](mis, vis),
            f"ECC + {FUSION_RULE}": lambda: register_then_fuse("ECC", FUSION_RULE, mis, vis)}
    rows = []
    try:
        for name, fn in jobs.items():
            med, ts = _median_time(fn, runs)
            rows.append({"what": name, "median s": med, "runs (s)": " ".join(f"{t:.3f}" for t in ts)})
    finally:
        torch.set_num_threads(old)
    h, w = mis.shape[-2:]
    for r in rows:
        r.update({"size (WxH)": f"{w}x{h}", "threads": 1})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- plots

def _grouped_bars(ax, table, x, hue, y, order_hue, log=False):
    xs = list(dict.fromkeys(table[x]))
    hues = [h for h in order_hue if h in set(table[hue])]
    width = 0.8 / max(len(hues), 1)
    for i, h in enumerate(hues):
        d = table[table[hue] == h].set_index(x).reindex(xs)
        ax.bar(np.arange(len(xs)) + (i - (len(hues) - 1) / 2) * width, d[y].to_numpy(float), width, label=h)
    ax.set_xticks(np.arange(len(xs)))
    ax.set_xticklabels(xs, rotation=30, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def plot_accuracy(acc: pd.DataFrame, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bsr.plots import save_figure

    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * acc["set"].nunique() + 2), 3.8))
    _grouped_bars(ax, acc, "set", "method", "mean EPE (px)", METHODS, log=True)
    ax.set_ylabel("mean EPE (px, log scale)")
    ax.set_title(f"RoadScene test: mean EPE per set ({int(acc['pairs'].max())} pairs, margin {MARGIN} px)")
    ax.legend(fontsize=8, ncol=len(METHODS), loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_nogt(per_pair: pd.DataFrame, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bsr.plots import save_figure

    t = per_pair.groupby(["dataset", "condition", "method"], sort=False)["edge_align"].mean().reset_index()
    dss = list(dict.fromkeys(t["dataset"]))
    fig, axes = plt.subplots(1, len(dss), figsize=(4.5 * len(dss), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], dss):
        _grouped_bars(ax, t[t["dataset"] == ds], "condition", "method", "edge_align", METHODS)
        ax.set_title(f"{ds}: edge alignment (px, lower = better)", fontsize=9)
    axes[0, 0].set_ylabel("Chamfer distance of edges (px)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles, labels, fontsize=8, ncol=len(labels), loc="lower center", frameon=False)
    save_figure(fig, path)
    plt.close(fig)


def plot_content(table: pd.DataFrame, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bsr.plots import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    _grouped_bars(ax, table, "set", "op", "ratio to as given", list(OPS))
    ax.axhspan(1 - CONTENT_TOLERANCE, 1 + CONTENT_TOLERANCE, color="green", alpha=0.12, label="target +-10 %")
    ax.set_ylabel("B-SR mean EPE / as given")
    ax.set_title("Content check: flipped pairs", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- main

def load_model(args):
    """(model, info dict)."""
    if args.untrained:
        torch.manual_seed(0)
        model = BSR().eval()
        info = {"model": "untrained: random bsr.model.BSR() (quick size, torch seed 0)", "path": None,
                "sha256": None}
    else:
        from bsr import pretrained

        if args.checkpoint:
            path = Path(args.checkpoint)
            model = load_checkpoint(path)
            what = "checkpoint (bsr.checkpoint.load_checkpoint)"
        else:
            try:
                path = pretrained.weights_path()
                model = bsr.load_pretrained()
            except (FileNotFoundError, ValueError) as e:
                sys.exit(f"cannot load the shipped model: {e}\n(give --checkpoint PATH or --untrained)")
            what = "shipped model (bsr.load_pretrained)"
        sha_fn = getattr(pretrained, "sha256", None)
        info = {"model": what, "path": str(path.resolve()), "sha256": sha_fn(path) if sha_fn else None}
    model.eval()
    if args.refine is not None:
        model.set_refine(args.refine)
    cfg = getattr(model, "config", {}) or {}
    info.update({"size": cfg.get("size"), "global_stage": cfg.get("global") is not None,
                 "refine": cfg.get("refine"),
                 "parameters": model.parameter_counts()})
    return model, info


def _csv_list(s: str, allowed, what):
    items = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad}; choose from {', '.join(allowed)}")
    return items


def _size(s: str):
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x480; got {s!r}") from None
    return w, h


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a B-SR checkpoint (bsr.checkpoint.load_checkpoint) instead of the shipped one")
    src.add_argument("--untrained", action="store_true", help="a random bsr.model.BSR() (to try the script)")
    ap.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                    help="switch the model's per-pair MIND refinement (bsr.refine; model option refine) on or off; "
                         "default: the model's own setting (on for the shipped model)")
    ap.add_argument("--pairs", type=int, default=None,
                    help="first N pairs of every dataset (RoadScene test split, TNO, M3FD); default all")
    ap.add_argument("--sets", type=lambda s: _csv_list(s, benchsets.SETS, "set"), default=list(benchsets.SETS),
                    help="comma-separated subset of bsr.datasets.benchsets.SETS for the accuracy section (default all)")
    ap.add_argument("--sections", type=lambda s: _csv_list(s, SECTIONS, "section"), default=list(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default all)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "released")
    ap.add_argument("--threads", type=int, default=1, help="torch threads outside the speed section (default 1)")
    ap.add_argument("--speed-size", type=_size, default=SPEED_SIZE, help="WxH of the speed pair (default 640x480)")
    ap.add_argument("--synthetic", action="store_true",
                    help="smoke test: small synthetic pairs in place of every dataset")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    a = ap.parse_args(argv)
    if a.pairs is not None and a.pairs < 1:
        ap.error("--pairs must be >= 1")
    return a


def load_dataset(name: str, args, split=None):
    if args.synthetic:
        seed = {"roadscene": 0, "tno": 1000, "m3fd": 2000}[name]
        n = args.pairs or 2
        return bsr_data.load_pairs("synthetic", split=split, limit=n,
                                   synthetic={"n": n, "size": SYNTHETIC_SIZE, "seed": seed})
    return bsr_data.load_pairs(name, split=split, limit=args.pairs)


def _fmt(df: pd.DataFrame) -> str:
    with pd.option_context("display.width", 220, "display.max_columns", 50):
        return df.to_string(index=False, float_format=lambda v: f"{v:.3f}")


class Writer:
    """Prints tables, writes them (csv/md/tex) and gathers REPORT.md."""

    def __init__(self, out: Path):
        self.out = out
        self.md: list[str] = []
        self.files: list[Path] = []

    def table(self, df: pd.DataFrame, stem: str, title: str, note: str = ""):
        print(f"\n== {title}" + (f"\n   {note}" if note else ""))
        print(_fmt(df), flush=True)
        self.files += write_table(df.round(4), self.out / stem, caption=f"{title}. {note}".strip())
        self.md += [f"### {title}", "", note, "", (self.out / f"{stem}.md").read_text().split("\n\n", 1)[-1], ""]

    def csv(self, df: pd.DataFrame, name: str):
        p = self.out / name
        df.to_csv(p, index=False)
        self.files.append(p)

    def plot(self, fn, df, name: str):
        p = self.out / name
        try:
            fn(df, p)
        except Exception as e:  # noqa: BLE001 - a failed plot must not lose the tables
            print(f"(plot {name} failed: {type(e).__name__}: {e})")
            return
        self.files.append(p)
        self.md += [f"![{name}]({name})", ""]

    def text(self, s: str):
        print(s)
        self.md += [s, ""]


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w = Writer(out)
    model, info = load_model(args)
    info.update({"git_commit": git_commit(REPO), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                          for k, v in vars(args).items()}})
    head = ["# Released model benchmark", "",
            f"- model: {info['model']}", f"- file: {info['path'] or '(none)'}",
            f"- sha256: {info['sha256'] or 'n/a'}",
            f"- config: size {info['size']}, global stage {'on' if info['global_stage'] else 'off'}, "
            f"refinement {info['refine'] or 'off'}, parameters {info['parameters']}",
            f"- git commit: {info['git_commit']}",
            f"- data: {'synthetic (smoke test)' if args.synthetic else os.environ.get('BSR_DATA', '(BSR_DATA unset)')}"
            f", pairs per dataset: {args.pairs or 'all'}, margin {MARGIN} px"]
    print("\n".join(head), flush=True)
    w.md += head + [""]
    methods = registration_methods(model)
    times: dict[str, float] = {}
    skipped: dict[str, str] = {}
    roadscene = None

    def rs_pairs():
        nonlocal roadscene
        if roadscene is None:
            roadscene = load_dataset("roadscene", args, split="test")
        return roadscene

    for section in [s for s in SECTIONS if s in args.sections]:
        t0 = time.perf_counter()
        try:
            if section == "accuracy":
                per = run_accuracy(methods, rs_pairs(), args.sets, progress)
                w.csv(per, "accuracy_per_pair.csv")
                acc, floor, summary = summarize_accuracy(per)
                w.text("## 1. Registration accuracy (RoadScene test split)")
                w.table(acc, "accuracy", "Registration accuracy per set",
                        "Means over pairs of per-pair values: mean EPE; median EPE = mean of per-pair medians; "
                        "EPE>3px = mean of per-pair shares of pixels; edge align = Chamfer distance of Sobel edges "
                        "of the registered IR and the visible image (px); EPE from own alignment = mean EPE "
                        "against the ground truth composed with the method's own field on the unmisaligned pair "
                        "(the pairs' own misalignment left out); s/pair = registration time.")
                w.table(floor, "floor", "Floor: the unmisaligned pairs",
                        "Field norm (px) of each method on the pairs as given (zero ground truth): what it does to "
                        "aligned input / an upper estimate of RoadScene's own misalignment.")
                w.table(summary, "accuracy_summary", "Summary: lowest mean EPE per set",
                        f"Classical = {', '.join(CLASSICAL)}.")
                w.plot(plot_accuracy, acc, "accuracy_epe.png")
            elif section == "content":
                per = run_content(methods[MODEL], rs_pairs(), CONTENT_SETS, progress)
                w.csv(per, "content_per_pair.csv")
                t = summarize_content(per)
                w.text("## 2. Content check (flipped pairs)")
                w.table(t, "content_check", "B-SR EPE under flips",
                        "Ratio of the op's mean EPE to the as-given mean EPE (target within 10 %); "
                        "identity EPE is the misalignment itself.")
                w.plot(plot_content, t, "content_check.png")
            elif section == "nogt":
                sets = {ds: load_dataset(ds, args) for ds in NOGT_DATASETS}
                per = run_nogt(methods, sets, progress)
                w.csv(per, "nogt_per_pair.csv")
                ea, sec = summarize_nogt(per)
                w.text("## 3. TNO and M3FD (no ground truth)")
                w.table(ea, "nogt_edge", "Edge alignment before and after registration",
                        "Mean over pairs of the Chamfer distance (px) between the Sobel edges of the registered "
                        "IR and the visible image; 'before (identity)' = unregistered; as_given = the real pairs.")
                w.table(sec, "nogt_seconds", "Registration seconds per pair (TNO, M3FD)")
                w.plot(plot_nogt, per, "nogt_edge.png")
            elif section == "fusion":
                per = run_fusion(model, rs_pairs(), FUSION_SETS, progress)
                w.csv(per, "fusion_per_pair.csv")
                w.text("## 4. Fusion (RoadScene)")
                w.table(summarize_fusion(per), "fusion", "Fusion metrics",
                        f"Means over pairs of bsr.metrics.fusion_metrics ({', '.join(FUSION_METRICS)}) on 8-bit "
                        "grey levels, against the ALIGNED IR and the visible image (Y).")
                w.table(fusion_against(per), "fusion_against_ecc_gff", f"{MODEL} against ECC + {FUSION_RULE}",
                        "Per set and metric: the difference of the means over the same pairs, the pairs where "
                        f"{MODEL} is higher, and the 95 % percentile-bootstrap interval of the difference.")
            elif section == "speed":
                pair = rs_pairs()[0]
                t = run_speed(model, speed_pair(pair, args.speed_size))
                w.text("## 5. Speed")
                w.table(t, "speed", "Seconds per pair, one CPU thread",
                        f"{pair.name} resized to {args.speed_size[0]}x{args.speed_size[1]} and shifted 5 px; "
                        f"median of {SPEED_RUNS} runs after one warm-up.")
        except bsr_data.DataError as e:
            skipped[section] = str(e)
            w.text(f"## {section}: skipped ({e})")
        times[section] = time.perf_counter() - t0
        print(f"[{section}: {times[section]:.1f} s]", flush=True)

    w.text("## Runtime per section\n\n" + "\n".join(f"- {k}: {v:.1f} s" for k, v in times.items()))
    info.update({"section_seconds": times, "skipped": skipped})
    (out / "run_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    (out / "REPORT.md").write_text("\n".join(w.md) + "\n")
    print(f"\nwrote {len(w.files) + 2} files under {out} (REPORT.md, run_info.json, ...)")
    return {"info": info, "files": w.files, "out": out}


if __name__ == "__main__":
    main()
