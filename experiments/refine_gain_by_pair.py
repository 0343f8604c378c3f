"""Where the released model's refinement gains over ECC, pair by pair (experiments/NOTES.md, section 17).

Reads the committed per-pair scores of the released benchmark (``results/released/accuracy/accuracy_per_pair.csv``,
50 RoadScene test pairs) and prints, per set, the Pearson correlation of ECC's per-pair mean EPE with B-SR's
difference to it, the mean difference over the half of the pairs where ECC is best and over the other half,
and over the first 12 pairs of the split (those the ``pretrained`` profile scores). No data needed.

    .venv/bin/python experiments/refine_gain_by_pair.py [--csv results/released/accuracy/accuracy_per_pair.csv]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(ROOT / "results/released/accuracy/accuracy_per_pair.csv"))
    ap.add_argument("--first", type=int, default=12)
    a = ap.parse_args()
    d = pd.read_csv(a.csv)
    p = d.pivot_table(index=["set", "pair"], columns="method", values="EPE_mean").reset_index()
    p["diff"] = p["B-SR"] - p["ECC"]
    print(f"{'set':>15} {'pairs':>5} {'pearson':>8} {'ECC-best half':>14} {'other half':>11} {'first ' + str(a.first):>9}")
    for name, x in p.groupby("set", sort=False):
        x = x.sort_values("pair")   # the split's order (its names are sorted)
        best = x["ECC"] <= x["ECC"].median()
        print(f"{name:>15} {len(x):5d} {np.corrcoef(x['ECC'], x['diff'])[0, 1]:+8.2f} "
              f"{x.loc[best, 'diff'].mean():+14.3f} {x.loc[~best, 'diff'].mean():+11.3f} "
              f"{x['diff'].iloc[:a.first].mean():+9.3f}")


if __name__ == "__main__":
    main()
