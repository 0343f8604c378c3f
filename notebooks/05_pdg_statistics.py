# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · PDG feature statistics (Figs. 7, 11)
#
# One model per PDG grid N in {x (no PDG), 0, 1, 2, 3, 4}, same data, budget
# and seed (the profile's `study.pdg`; the paper and cpu profiles train them on
# the 5 px dilate-crop, `quick` on its ablation runs' 5 px shift, with N = x and
# N = 2 the ablation runs Exp. V and B-SR). The features are read on the 5 px
# dilate-crop test set, the input of the paper's Fig. 7. For each, the
# shallow and deep feature maps of the registration U-Net and the percentage
# of "high-response" area. The paper does not define layers, normalisation or
# threshold; `bsr.study.features` does (first encoder block / bottleneck; mean
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

from bsr import plots, study

data_dir, checkpoint_dir, info = study.inputs(data_dir, checkpoint_dir)
out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bsr_pdg_"))
set_name = set_name or next(n for n, i in info.items() if i["kind"] == "dilate_crop" and i["level"] == 5)
pairs = study.load_sets(data_dir, [set_name], limit=limit)[set_name]

# %%
order = study.grid_order(runs)   # x (no PDG), 0, 1, ...
stats, maps = study.feature_statistics(pairs, runs, checkpoint_dir, seeds, threshold, n_panels)
summary = study.high_response_summary(stats)
study.write_table(summary.round(3), out_dir / "tables" / "pdg_high_response",
                  f"Percentage of high-response area (normalised response >= {threshold}), measured; "
                  f"mean and std over the {len(pairs)} test pairs x {len(seeds)} seed(s); the model of each N "
                  f"(training run): " + ", ".join(f"N = {n}: {r}" for n, r in runs.items()))
summary.round(2)

# %% [markdown]
# ## Fig. 11: percentage of high-response area

# %%
fig = plots.high_response_bars(summary, order, threshold)
plots.save_figure(fig, out_dir / "figures" / "pdg_high_response.png")

# %% [markdown]
# ## Fig. 7: shallow and deep feature maps per N

# %%
fig = plots.feature_map_grid(maps, order, n_panels)
plots.save_figure(fig, out_dir / "figures" / "pdg_feature_maps.png")
