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
# # 02 · Train B-SR
#
# Trains the registration U-Net and the auto-encoder (phase 1: registration +
# reconstruction; phase 2: fusion with the encoder and registration frozen),
# plots every loss term from the training log and says where the checkpoint is.
# All logic lives in `bsr.training` (config, loop, resume), `bsr.checkpoint`
# (the checkpoint file), `bsr.objective` (loss composition and ablation
# switches) and `bsr.plots_train`; this notebook only calls them.
#
# The defaults make a tiny CPU run into a fresh temporary folder. The base
# config is `config/train/<profile>.yaml`; the parameters below override it.

# %% tags=["parameters"]
# Parameters (papermill overrides these; the defaults give a small run that
# writes into a new temporary folder).
profile = "quick"            # base config config/train/<profile>.yaml and model size
dataset = "synthetic"        # synthetic | roadscene | tno | m3fd | dronevehicle | any folder under the data root
data_root = None             # data root for real datasets; None -> $BSR_DATA
misalignment = "shift"       # shift | dilate_crop | random_smooth | none
level = 5                    # px (shift: s, dilate_crop: d)
# generator options (dataset = synthetic)
synthetic = {"n": 8, "size": [64, 64], "seed": 0}
pdg_n = 2                    # PDG grid N
seed = 0
variant = "full"             # full | I | II | III | IV | V (ablations of Table 4)
loss = {}                    # extra loss overrides, e.g. {"nda": 0.5}
crop = 32                    # training crop: int, [h, w] or "quarter"
batch_size = 4
steps1 = 8                   # phase-1 steps (None: use the base config's epochs/steps)
steps2 = 4                   # phase-2 steps
lr = 1e-4
device = "auto"
threads = 1
out_dir = None               # None -> a new temporary folder
train_config = None         # a complete training config (dict; the workflow passes one): when given,
                            # it is used as is, and only out_dir/progress above apply


# %%
import tempfile
from pathlib import Path

from bsr.checkpoint import load_checkpoint
from bsr.paths import REPO_ROOT
from bsr.plots_train import plot_losses
from bsr.training import TrainConfig, train
from bsr.training.config import with_overrides
from bsr.training.loop import read_log

out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bsr_train_"))
if train_config is not None:      # the workflow's complete config
    cfg_dict = with_overrides(train_config, {"out_dir": str(out_dir), "progress": False})
else:                             # the base config with the parameters above
    base = TrainConfig.from_yaml(REPO_ROOT / "config" / "train" / f"{profile}.yaml").to_dict()
    data = {"name": dataset, "misalignment": {"kind": misalignment, "level": level}}
    if dataset == "synthetic":
        data["synthetic"] = synthetic
    else:
        data["root"] = data_root
    overrides = {"variant": variant, "pdg_n": pdg_n, "seed": seed, "data": data, "crop": crop,
                 "batch_size": batch_size, "device": device, "threads": threads, "out_dir": str(out_dir),
                 "progress": False, "phase1.lr": lr, "phase2.lr": lr,
                 **{f"loss.{k}": v for k, v in loss.items()}}
    for name, steps in (("phase1", steps1), ("phase2", steps2)):
        if steps is not None:
            overrides.update({f"{name}.steps": int(steps), f"{name}.epochs": None})
    cfg_dict = with_overrides(base, overrides)
cfg = TrainConfig.from_dict(cfg_dict)
print("training into", out_dir)

# %%
# resume an interrupted run of this very config; start over if the config changed
checkpoint = train(cfg, resume="if_same")
print("final checkpoint:", checkpoint)

# %% [markdown]
# ## Loss curves
# Every logged term is unweighted (the weights are in `config.yaml` next to the
# log); `total` is the weighted sum that was minimised. `epe` is the endpoint
# error of the predicted IR -> visible field against the simulated ground truth.

# %%
log = read_log(out_dir / "log.csv")
fig = plot_losses(log)
log.groupby("phase").tail(1).T

# %%
model = load_checkpoint(checkpoint)
print("parameters:", model.parameter_counts())
print("checkpoint:", checkpoint)
print("load it with: bsr.checkpoint.load_checkpoint(path); fuse with: bsr fuse --checkpoint", checkpoint, "IR VIS -o OUT")
