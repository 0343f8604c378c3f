# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · PDG feature statistics (Figs. 7, 11)
#
# One model per PDG grid N in {x (no PDG), 0, 1, 2, 3, 4}, same budget and
# seed, trained on the 5 px dilate-crop data (as in the paper). For each, the
# shallow and deep feature maps of the registration U-Net and the percentage
# of "high-response" area. The paper does not define layers, normalisation or
# threshold; `bsr.features` does (first encoder block / bottleneck; mean
# |activation| over channels, min-max normalised per image; threshold below).

# %% tags=["parameters"]
profile = "interactive"
data_dir = None
checkpoint_dir = None
out_dir = None
seeds = [0]
runs = {"x": "demo", "0": "demo", "1": "demo", "2": "demo", "3": "demo", "4": "demo"}  # N -> run
set_name = None            # set to analyse; None -> the dilate-crop 5 px set
threshold = 0.6            # high response: normalised response >= threshold
limit = None
n_panels = 1               # pairs shown in the feature panels

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bsr import features, plots, report, study
from bsr.model import load_checkpoint

data_dir, checkpoint_dir, info = study.inputs(data_dir, checkpoint_dir)
out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bsr_pdg_"))
set_name = set_name or next(n for n, i in info.items() if i["kind"] == "dilate_crop" and i["level"] == 5)
pairs = study.load_sets(data_dir, [set_name], limit=limit)[set_name]

# %%
order = sorted(runs, key=lambda n: (n != "x", int(n) if n.isdigit() else -1))   # x (no PDG), 0, 1, ...
rows, maps = [], {}
for n, run in ((n, runs[n]) for n in order):
    for seed, ck in zip(seeds, study.checkpoint_paths(checkpoint_dir, run, seeds)):
        model = load_checkpoint(ck)
        for k, p in enumerate(pairs):
            f = features.unet_features(model, p.ir, p.vis)
            if seed == seeds[0] and k < n_panels:
                maps[(n, k)] = f
            for level, resp in f.items():
                rows.append({"N": n, "seed": seed, "pair": p.name, "features": level,
                             "high_response_pct": features.high_response_percent(resp, threshold)})
stats = pd.DataFrame(rows)
summary = stats.groupby(["features", "N"], sort=False)["high_response_pct"].agg(["mean", "std"]).reset_index()
report.write_table(summary.round(3), out_dir / "tables" / "pdg_high_response",
                   f"Percentage of high-response area (normalised response >= {threshold}), measured; "
                   f"mean and std over the {len(pairs)} test pairs x {len(seeds)} seed(s)")
summary.round(2)

# %% [markdown]
# ## Fig. 11: percentage of high-response area

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
for i, level in enumerate(["shallow", "deep"]):
    s = summary[summary["features"] == level].set_index("N").reindex(order)
    ax.bar([j + 0.4 * i for j in range(len(order))], s["mean"], width=0.4, yerr=s["std"].fillna(0), label=level)
ax.set_xticks([j + 0.2 for j in range(len(order))], [f"N={n}" for n in order])
ax.set_ylabel(f"% area with response >= {threshold}")
ax.legend()
fig.tight_layout()
plots.save_figure(fig, out_dir / "figures" / "pdg_high_response.png")

# %% [markdown]
# ## Fig. 7: shallow and deep feature maps per N

# %%
fig, axes = plt.subplots(2 * n_panels, len(order), figsize=(2.2 * len(order), 4.4 * n_panels), squeeze=False)
for k in range(n_panels):
    for j, n in enumerate(order):
        for i, level in enumerate(["shallow", "deep"]):
            ax = axes[2 * k + i, j]
            ax.imshow(maps[(n, k)][level], cmap="jet", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if k == 0 and i == 0:
                ax.set_title(f"N={n}")
            if j == 0:
                ax.set_ylabel(level)
fig.tight_layout()
plots.save_figure(fig, out_dir / "figures" / "pdg_feature_maps.png")
