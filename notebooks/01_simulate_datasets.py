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
# # 01 · Simulated test sets
#
# Writes the misaligned test sets of a profile (misaligned IR, aligned IR,
# visible image, ground-truth displacement field, manifest with checksums), so
# that every method is scored on identical pairs, and draws a few pairs with
# their misalignment made visible. Logic lives in `bsr.datasets.testsets` and
# `bsr.plots`; this notebook only calls it.

# %% tags=["parameters"]
# Parameters (papermill overrides these; the defaults make a small run that
# writes into a fresh temporary folder).
profile = "interactive"          # profile name, for titles only
out_dir = None                   # folder for the sets; None -> a new temp folder
figure_path = None               # where to save the sample figure; None -> inside out_dir
data_root = None                 # data root for real datasets; None -> $BSR_DATA
test_sets = [                    # what to simulate (see config/*.yaml)
    {"dataset": "synthetic", "kind": "shift", "levels": [5]},
    {"dataset": "synthetic", "kind": "dilate_crop", "levels": [10]},
]
synthetic = {"n_train": 4, "n_test": 2, "size": [128, 160], "seed": 0}
seed = 0                         # seed of random misalignments
n_pairs_figure = 2               # rows of the sample figure
tiles = 8                        # checkerboard tiles

# %%
import tempfile
from pathlib import Path

from bsr import plots
from bsr.datasets import testsets

out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bsr_sim_"))
figure_path = Path(figure_path or out_dir / "simulated_pairs.png")
synth_opts = testsets.synthetic_test_options(synthetic)   # None for profiles of real datasets
print("writing test sets to", out_dir)

# %%
written = []
for spec in test_sets:
    written += testsets.simulate_dataset(
        spec["dataset"], spec["kind"], spec["levels"], out_dir, root=data_root,
        split=spec.get("split", "test"), limit=spec.get("limit"), synthetic=synth_opts,
        seed=seed, overwrite=True)

# %% [markdown]
# ## What was written
# `|flow_gt|` is the endpoint error of doing nothing (identity registration),
# the bar every registration method must clear.

# %%
summary = testsets.summarize_sets(written)
summary

# %% [markdown]
# ## Sample pairs
# Checkerboard tiles alternate IR and visible: misalignment breaks edges at the
# tile borders. In the edge overlay, aligned edges would be white.

# %%
rows = testsets.sample_rows(written, n_pairs_figure)
fig = plots.plot_sample_pairs(rows, tiles=tiles)
plots.save_figure(fig, figure_path)
print("figure:", figure_path)
