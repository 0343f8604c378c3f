"""How well does a fusion auto-encoder fuse pairs that are already aligned?

The released model's fusion trails "ECC + GFF" on every metric of the fusion
section although its registration is the same affine ECC
(``results/released/other/fusion.md``): the difference is the fusion network.
This probe isolates it: each auto-encoder fuses the ALIGNED pairs
(``model.fuse_aligned``; no registration), beside GFF of the same pairs, and
the eight metrics of :func:`bsr.metrics.fusion_metrics` are computed on 8-bit
grey levels against the two inputs.

Pairs (never RoadScene's test split, which the released figures report):

* ``roadscene-val``: the 16 validation pairs of RoadScene's train split
  (:func:`bsr.training.pretrain._split`, the same pairs as the U-Net's
  validation). The released auto-encoder was trained on all 171 train pairs,
  these included, so this set favours it;
* ``tno``: all 25 TNO pairs, which no auto-encoder here was trained on.

Usage::

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 python experiments/probe_fusion_ae.py \
        [--model NAME=CHECKPOINT ...] [--out per_pair.csv]   # default: the shipped model only
    python experiments/probe_fusion_ae.py --compare per_pair.csv   # each model against the shipped, per pair

``CHECKPOINT`` is a :mod:`bsr.training` checkpoint (``final.pt``) or a shipped
model's file; ``shipped`` names :func:`bsr.load_pretrained`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import bsr  # noqa: E402
from bsr.baselines import FUSION  # noqa: E402
from bsr.checkpoint import load_checkpoint  # noqa: E402
from bsr.datasets.readers import load_pairs  # noqa: E402
from bsr.io import to_uint8  # noqa: E402
from bsr.metrics import METRICS, fusion_metrics  # noqa: E402
from bsr.networks import count_parameters  # noqa: E402
from bsr.training.pretrain import DEFAULTS, _split  # noqa: E402


def pair_sets() -> dict:
    _, val = _split(DEFAULTS)
    return {"roadscene-val": val, "tno": load_pairs("tno")}


def fuse_with(model, ir, vis):
    """The model's auto-encoder on an aligned pair (no registration)."""
    return model.fuse_aligned(ir, vis)[0]


def fused_metrics(fuse, pair) -> dict:
    ir = torch.from_numpy(pair.ir)[None, None]
    vis = torch.from_numpy(pair.vis)[None, None]
    t0 = time.perf_counter()
    with torch.no_grad():
        fused = fuse(ir, vis)
    sec = time.perf_counter() - t0
    f8 = to_uint8(fused[0, 0].clamp(0, 1).numpy())
    return {**fusion_metrics(f8, to_uint8(pair.ir), to_uint8(pair.vis)), "seconds": sec}


def against(df: pd.DataFrame, base: str = "shipped") -> pd.DataFrame:
    """Per set and method (GFF and ``base`` left out): the mean per-pair difference
    to ``base`` and the number of pairs above it, per metric."""
    rows = []
    for (set_name, method), g in df.groupby(["set", "method"], sort=False):
        if method in ("GFF", base):
            continue
        ref = df[(df["set"] == set_name) & (df["method"] == base)].set_index("pair")[list(METRICS)]
        diff = g.set_index("pair")[list(METRICS)] - ref
        for k in METRICS:
            rows.append({"set": set_name, "method": method, "metric": k, "mean_diff": diff[k].mean(),
                         "pairs_higher": f"{int((diff[k] > 0).sum())}/{len(diff)}"})
    return pd.DataFrame(rows)


def _print_against(df: pd.DataFrame) -> None:
    cmp = against(df)
    if cmp.empty:
        return
    print("\nagainst shipped, per pair: mean difference (pairs higher)")
    cmp["cell"] = [f"{d:+.4f} ({h})" for d, h in zip(cmp["mean_diff"], cmp["pairs_higher"])]
    wide = cmp.pivot_table(index=["set", "method"], columns="metric", values="cell", aggfunc="first", sort=False)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(wide[list(METRICS)])


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="also write the per-pair metrics to this CSV")
    ap.add_argument("--compare", metavar="CSV", help="only print the per-pair comparison of a CSV that --out wrote")
    args = ap.parse_args(argv)
    if args.compare:
        df = pd.read_csv(args.compare)
        _print_against(df)
        return df
    torch.set_num_threads(args.threads)
    models = {"shipped": bsr.load_pretrained()}
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--model {spec!r}: expected NAME=CHECKPOINT")
        models[name] = load_checkpoint(path)
    fusers = {"GFF": FUSION["GFF"]}
    for name, m in models.items():
        m.eval()
        print(f"{name}: auto-encoder {count_parameters(m.ae):,} parameters")
        fusers[name] = functools.partial(fuse_with, m)
    rows = []
    for set_name, pairs in pair_sets().items():
        for p in tqdm(pairs, desc=set_name):
            for name, fn in fusers.items():
                rows.append({"set": set_name, "pair": p.name, "method": name, **fused_metrics(fn, p)})
    df = pd.DataFrame(rows)
    table = df.groupby(["set", "method"], sort=False)[[*METRICS, "seconds"]].mean()
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.precision", 4):
        print(table)
    _print_against(df)
    if args.out:
        df.to_csv(args.out, index=False)
    return df


if __name__ == "__main__":
    main()
