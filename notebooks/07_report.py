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
# # 07 · Report
#
# Gathers every table of the run (`tables/*.md`, written by notebooks 01-06
# as CSV, Markdown and LaTeX) and every figure into `REPORT.md`, with links
# to the executed notebooks, the profile and the git commit.

# %% tags=["parameters"]
profile = "interactive"
root = None                # results/<profile>; None -> a small demo folder
profile_config = {}        # the profile (dict), recorded in the report

# %%
import tempfile
from pathlib import Path

import pandas as pd

from bsr import study

if root is None:   # demo: one table beside the paper's, so the notebook runs on its own
    root = Path(tempfile.mkdtemp(prefix="bsr_report_"))
    demo = study.side_by_side(pd.DataFrame({"method": ["demo"], "SD": ["1.00"], "AG": ["1.00"],
                                             "MG": ["1.00"], "EI": ["1.00"]}), 4)
    study.write_table(demo, root / "tables" / "table4", "demo table")
    profile_config = profile_config or {"profile": profile}
path = study.write_report(root, profile_config)
print(path)
print(path.read_text()[:3000])
