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
# # 06 · Ablation (Table 4, Fig. 5)
#
# Exp. I (L_nda replaced by a plain Sobel edge loss), II (no L_nda), III (no
# joint registration-reconstruction optimisation), IV (one direction only, no
# L_epr), V (no PDG/IPDG branch) and the full model, all on the 5 px shift,
# same budget and seed. Table 4 of the paper reports SD, AG, MG, EI; all eight
# metrics and the registration error are shown here.

# %% tags=["parameters"]
profile = "interactive"
data_dir = None
checkpoint_dir = None
out_dir = None
seeds = [0]
runs = {"Exp. I": "demo", "Exp. II": "demo", "Exp. III": "demo", "Exp. IV": "demo", "Exp. V": "demo",
        "B-SR": "demo"}     # ablation label -> run
set_name = None            # None -> the 5 px shift set
limit = None
n_qualitative = 2

# %%
import tempfile
from pathlib import Path

from bsr import plots, study

data_dir, checkpoint_dir, info = study.inputs(data_dir, checkpoint_dir)
out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bsr_ablation_"))
set_name = set_name or next(n for n, i in info.items() if i["kind"] == "shift" and i["level"] == 5)
sets = study.load_sets(data_dir, [set_name], limit=limit)
methods = study.build_methods(checkpoints={label: study.checkpoint_paths(checkpoint_dir, run, seeds)
                                           for label, run in runs.items()})
scores = study.score(sets, methods, out_dir / "images" / "ablation")

# %% [markdown]
# ## Table 4: measured (this package) above reported (Li et al. 2025)

# %%
t4 = study.paper_table(scores, set_name, 4, metrics=["SD", "AG", "MG", "EI"])
study.write_table(t4, out_dir / "tables" / "table4", "Table 4: ablation (SD, AG, MG, EI)")
t4

# %%
allm = study.measured_wide(scores[scores["group"] == "fusion"], ["Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"])
reg = study.registration_summary(scores)[["method", "EPE_mean", "EPE>1px", "SSIM", "edge_chamfer_px"]].round(3)
full = allm.merge(reg, on="method", how="left")
study.write_table(full, out_dir / "tables" / "ablation_all_metrics",
                   "Ablation: all eight fusion metrics and the registration error (measured)")
full

# %% [markdown]
# ## Fig. 5: fused images of each variant

# %%
rows = study.qualitative_rows(sets, out_dir / "images" / "ablation", list(runs), n_qualitative)
fig = plots.method_grid(rows, ["IR (input)", "VIS"] + [m for m in runs if m in rows[0]])
plots.save_figure(fig, out_dir / "figures" / "ablation_qualitative.png")
