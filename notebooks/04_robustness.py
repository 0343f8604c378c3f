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
# # 04 · Robustness (Table 6, Fig. 10)
#
# B-SR trained on the 5 px dilate-crop misalignment, tested at every
# dilate-crop level of the profile (paper: 5, 10, 20, 30, 50 px), beside the
# classical registration baselines (and any extra B-SR runs of the profile,
# labelled with what they were trained on). What the paper lacks is added: the
# registration error against the ground truth at each level, one line per method.

# %% tags=["parameters"]
profile = "interactive"
data_dir = None            # simulated sets (notebook 01); None -> a tiny demo set-up
checkpoint_dir = None
out_dir = None
seeds = [0]
run = "demo"               # the run trained on dilate-crop 5 px
extra_runs = {}            # label -> run: more B-SR lines (e.g. a model trained at another level)
registration = [["ECC", "GFF"], ["TV-L1", "GFF"]]
limit = None
device = "cpu"

# %%
import tempfile
from pathlib import Path

from bsr import plots, study

data_dir, checkpoint_dir, info = study.inputs(data_dir, checkpoint_dir)
out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bsr_robust_"))
levels = {n: i["level"] for n, i in info.items() if i["kind"] == "dilate_crop"}
sets = study.load_sets(data_dir, sorted(levels, key=levels.get), limit=limit)
learned = {study.BSR_LABEL: study.checkpoint_paths(checkpoint_dir, run, seeds)}
learned.update({label: study.checkpoint_paths(checkpoint_dir, r, seeds) for label, r in extra_runs.items()})
methods = study.build_methods([], registration, learned, device=device)
scores = study.score(sets, methods, out_dir / "images" / "robustness")
scores["level"] = scores["set"].map(levels)

# %% [markdown]
# ## Table 6: measured at each level, above the paper's reported rows

# %%
fus = scores[scores["group"] == "fusion"].copy()
fus["setting"] = "dilate_crop " + fus["level"].astype(str) + " px"    # the paper's setting names
measured = study.measured_wide(fus, study.METRICS6, by=("setting", "method"))
t6 = study.side_by_side(measured, 6)
study.write_table(t6, out_dir / "tables" / "table6", "Table 6: robustness to dilate-crop levels")
t6

# %% [markdown]
# ## Registration error against the ground truth at each level (not in the paper)

# %%
reg = scores[(scores["group"] == "registration") & (scores["metric"] == "EPE_mean")]
epe = reg.groupby(["method", "level"], sort=False)["value"].mean().reset_index()
fig = plots.metric_lines(epe, "level", "value", "method", "Registration error vs dilate-crop level",
                         "mean endpoint error (px)")
plots.save_figure(fig, out_dir / "figures" / "robustness_epe.png")
table = epe.pivot_table(index="method", columns="level", values="value", sort=False).round(3)
study.write_table(table.reset_index(), out_dir / "tables" / "robustness_epe",
                   "Mean endpoint error (px) per dilate-crop level (measured)")
table

# %% [markdown]
# ## Fig. 10: the same pair at every level

# %%
rows = study.qualitative_rows(sets, out_dir / "images" / "robustness", [study.BSR_LABEL], 1,
                              titles={name: f"{levels[name]} px" for name in sets})
fig = plots.method_grid(rows, [c for c in ("IR (input)", "VIS", study.BSR_LABEL) if c in rows[0]])
plots.save_figure(fig, out_dir / "figures" / "robustness_levels.png")
